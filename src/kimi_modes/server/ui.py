"""The live web view of runs: ``/ui/runs`` (the list) and ``/ui/runs/{id}`` (one run, live).

The pages are static files (:data:`STATIC_DIR`): plain HTML and ES-module JavaScript, no build
step, nothing loaded from elsewhere. The server hands out no run data here; the pages read the
runs API (:mod:`kimi_modes.server.runs_api`) themselves, with the API key the user types in
when the API answers 401 (kept in the browser's ``localStorage``). So these routes need no
auth, and the data stays behind the same keys as the API. docs/ui.md describes the pages.

What a caller may rely on:

- :meth:`RunsUI.routes` gives ``GET`` (and ``HEAD``) routes for ``/ui`` and ``/ui/`` (a
  redirect to ``/ui/runs``), ``/ui/runs``, ``/ui/runs/{run_id}`` (the same page for every id:
  the page itself asks the API whether the run exists) and ``/ui/static/{name}``.
- ``/ui/static/`` serves only the files that are directly in the static directory with a
  known suffix, looked up by exact name: no path with a ``/`` or ``..`` reaches the disk.
- Responses say their type (``text/html``, ``text/javascript``, ``text/css``, each
  ``charset=utf-8``), ``Cache-Control: no-cache`` (the browser asks again each time, so an
  upgraded gateway never runs stale scripts; the files are small) and
  ``X-Content-Type-Options: nosniff``; the pages carry a Content-Security-Policy that allows
  scripts, styles and fetches from this origin only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

#: Where the pages, scripts and styles live (inside the package, shipped in the wheel).
STATIC_DIR: Final = Path(__file__).with_name("ui_static")

_MEDIA_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# The pages fetch the API of their own origin and load nothing else; data is only ever put
# in the page as text, and this policy is the second line if that were ever got wrong.
_PAGE_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON_HEADERS: Final = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


class RunsUI:
    """The web view's routes, serving the files in ``static_dir`` (default
    :data:`STATIC_DIR`). The set of servable files is read once, here."""

    def __init__(self, static_dir: Path | None = None) -> None:
        self.static_dir = static_dir or STATIC_DIR
        self._files: dict[str, Path] = {
            path.name: path
            for path in self.static_dir.iterdir()
            if path.is_file() and path.suffix in _MEDIA_TYPES
        }
        for page in ("runs.html", "run.html"):
            if page not in self._files:
                raise FileNotFoundError(f"the web view's {page} is missing from {self.static_dir}")

    def routes(self, prefix: str = "/ui") -> list[BaseRoute]:
        """The routes under ``prefix`` (see the module docstring)."""

        async def to_list(request: Request) -> Response:
            return RedirectResponse(f"{prefix}/runs", status_code=307)

        async def runs_page(request: Request) -> Response:
            return self._page("runs.html")

        async def run_page(request: Request) -> Response:
            return self._page("run.html")

        return [
            Route(prefix, to_list, methods=["GET"]),
            Route(f"{prefix}/", to_list, methods=["GET"]),
            Route(f"{prefix}/runs", runs_page, methods=["GET"]),
            Route(f"{prefix}/runs/", runs_page, methods=["GET"]),
            Route(f"{prefix}/runs/{{run_id}}", run_page, methods=["GET"]),
            Route(f"{prefix}/static/{{name:path}}", self.static, methods=["GET"]),
        ]

    async def static(self, request: Request) -> Response:
        """``GET /ui/static/{name}``: one of the static files, or a plain 404."""
        path = self._files.get(request.path_params["name"])
        if path is None:
            return Response("not found\n", status_code=404, media_type="text/plain",
                            headers=_COMMON_HEADERS)
        return self._file(path)

    def _page(self, name: str) -> Response:
        response = self._file(self._files[name])
        response.headers["Content-Security-Policy"] = _PAGE_CSP
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    def _file(self, path: Path) -> Response:
        return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix],
                            headers=dict(_COMMON_HEADERS))
