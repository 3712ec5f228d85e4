"""``web_fetch``: an HTTP(S) GET turned into text the model can read.

Guarantees (see :mod:`kimi_modes.tools.web.ssrf` for the address rules):

- only ``http`` and ``https`` URLs; every hop of a redirect chain (at most
  ``FetchLimits.max_redirects``) is checked like the first URL, before it is requested;
- no connection is made to a refused address: numeric hosts are refused before anything is
  sent, names when they resolve (once; the connection goes to the checked address), and every
  socket is checked again just before it connects;
- at most ``FetchLimits.max_bytes`` of the (decompressed) body are read, while streaming, and
  the whole fetch, redirects included, is bounded by ``FetchLimits.timeout`` seconds;
- no proxy from the environment, no cookies kept, no credentials sent (a URL with
  ``user:password@`` is refused; ``.netrc`` is not read);
- HTML becomes Markdown (scripts, styles and embedded objects dropped, links made absolute),
  JSON is pretty-printed, other text passes through, anything else is described (type and
  size), never dumped. The model pages through long text with ``start``.

Failures (refused address, bad URL, timeout, HTTP error status) come back as
``ToolResult(is_error=True)`` with a message the model can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver
from bs4 import BeautifulSoup
from markdownify import MarkdownConverter
from yarl import URL

from kimi_modes.tools.base import RunContext, ToolResult
from kimi_modes.tools.text import SNIFF_BYTES, looks_binary
from kimi_modes.tools.web.ssrf import (
    AddressPolicy,
    AddressRefused,
    GuardedResolver,
    InvalidHost,
    IPNetwork,
    check_url_host,
    guarded_socket_factory,
)

__all__ = ["FetchError", "FetchLimits", "FetchedPage", "WebFetchTool"]

DEFAULT_USER_AGENT = "kimi-modes-agent/0.1 (web_fetch)"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DROP_TAGS = ("script", "style", "noscript", "template", "svg", "iframe", "head", "canvas",
              "object", "embed", "frame", "frameset")
_TEXT_TYPES = ("application/xml", "application/javascript", "application/ecmascript",
               "application/x-javascript", "application/yaml", "application/x-yaml",
               "application/toml", "application/x-sh", "application/sql", "application/csv",
               "application/rss+xml", "application/atom+xml", "image/svg+xml")
_CACHE_KEY = "web_fetch.pages"
_CACHE_PAGES = 8


@dataclass(frozen=True, slots=True)
class FetchLimits:
    """``max_bytes``: body bytes read (after decompression); ``timeout``: seconds for the
    whole fetch including redirects; ``connect_timeout``: seconds to connect one hop;
    ``max_redirects``: hops followed; ``max_chars``: characters of text one call returns."""

    max_bytes: int = 2 * 1024 * 1024
    timeout: float = 20.0
    connect_timeout: float = 10.0
    max_redirects: int = 5
    max_chars: int = 12_000


class FetchError(Exception):
    """A fetch that could not be done; the message is meant for the model."""

    def __init__(self, message: str, kind: str = "fetch") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(slots=True)
class FetchedPage:
    """A response: the final ``url``, the ``redirects`` followed to reach it, the status,
    media type and charset, and the ``body`` (at most ``max_bytes``; ``truncated`` when
    there was more)."""

    url: str
    status: int
    reason: str
    content_type: str
    charset: str | None
    body: bytes
    truncated: bool
    has_content_type: bool = True
    redirects: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Rendered:
    text: str
    title: str | None
    kind: str  # "html", "json", "text", "binary"


_WEB_FETCH_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "url": {"type": "string", "description": "An http:// or https:// URL."},
        "start": {"type": "integer", "minimum": 0,
                  "description": "Character offset in the page's text to start from, to read "
                                 "the rest of a long page. Default 0."},
    },
    "required": ["url"],
    "additionalProperties": False,
}


class WebFetchTool:
    """``web_fetch``. ``allow_private`` lets it reach every address (loopback, private,
    link-local...); ``allow_networks`` only the CIDR ranges given. ``dns_resolver`` replaces
    the system resolver (its answers are still checked). Guarantees: the module docstring."""

    name = "web_fetch"
    description = (
        "Fetch a web page or file by URL (http/https GET) and return it as text: HTML is "
        "converted to Markdown, JSON and plain text are returned as is. Long pages are cut; "
        "pass `start` to read further. Only public internet addresses can be reached."
    )

    def __init__(
        self,
        *,
        allow_private: bool = False,
        allow_networks: Iterable[str | IPNetwork] = (),
        limits: FetchLimits | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        dns_resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = AddressPolicy.build(allow_private, allow_networks)
        self.limits = limits or FetchLimits()
        self.user_agent = user_agent
        self.dns_resolver = dns_resolver
        self.parameters: dict[str, Any] = copy.deepcopy(_WEB_FETCH_SCHEMA)
        # Our own deadline answers first; the toolset's is a backstop.
        self.timeout: float | None = self.limits.timeout + 5.0

    # ----------------------------------------------------------------- the tool

    async def run(self, arguments: dict[str, Any], ctx: RunContext) -> ToolResult:
        url = arguments.get("url")
        start = arguments.get("start", 0)
        if not isinstance(url, str) or not url.strip():
            return _error("'url' must be a non-empty string", "invalid_arguments")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            return _error("'start' must be an integer >= 0", "invalid_arguments")
        url = url.strip()
        cache: OrderedDict[str, tuple[FetchedPage, _Rendered]] = ctx.resources.setdefault(
            _CACHE_KEY, OrderedDict())
        cached = cache.get(url) if start > 0 else None
        if cached is not None:
            page, rendered = cached
        else:
            try:
                page = await self.fetch(url)
            except FetchError as exc:
                return _error(str(exc), exc.kind, url)
            rendered = _render(page)
            if 200 <= page.status < 300:
                cache[url] = (page, rendered)
                cache.move_to_end(url)
                while len(cache) > _CACHE_PAGES:
                    cache.popitem(last=False)
        return self._result(page, rendered, start)

    def _result(self, page: FetchedPage, rendered: _Rendered, start: int) -> ToolResult:
        ok = 200 <= page.status < 300
        meta: dict[str, Any] = {
            "url": page.url, "status": page.status, "content_type": page.content_type,
            "bytes": len(page.body), "redirects": len(page.redirects), "kind": rendered.kind,
        }
        header = [f"URL: {page.url}"]
        if page.redirects:
            header.append(f"Redirected from: {page.redirects[0]}")
        header.append(f"Status: {page.status} {page.reason}".rstrip())
        header.append(f"Content-Type: {page.content_type}")
        if rendered.title:
            header.append(f"Title: {rendered.title}")
        text = rendered.text
        window = self.limits.max_chars if ok else min(self.limits.max_chars, 2_000)
        notes: list[str] = []
        if start >= len(text) and text:
            notes.append(f"[start={start} is past the end: the text has {len(text)} "
                         "characters]")
            shown = ""
        else:
            shown = text[start:start + window]
            end = start + len(shown)
            if start > 0 or end < len(text):
                more = f" Call web_fetch with start={end} for more." if end < len(text) else ""
                notes.append(f"[Characters {start}-{end} of {len(text)}.{more}]")
                meta["truncated"] = end < len(text)
        if page.truncated:
            notes.append(f"[The response was larger than {self.limits.max_bytes} bytes; only "
                         "the first part was read.]")
            meta["body_truncated"] = True
        body = shown if shown or rendered.kind == "binary" else "(empty body)"
        output = "\n".join(header) + "\n\n" + body
        if notes:
            output += "\n\n" + "\n".join(notes)
        if not ok:
            output = f"Error: HTTP {page.status} {page.reason}".rstrip() + "\n" + output
            meta["error"] = "http_status"
        return ToolResult(output, not ok, meta)

    # ----------------------------------------------------------------- fetching

    async def fetch(self, url: str) -> FetchedPage:
        """GET ``url`` under the address policy and limits (see the module docstring).
        Raises :class:`FetchError`; an HTTP error status is a page, not an exception."""
        try:
            async with asyncio.timeout(self.limits.timeout):
                return await self._fetch(url)
        except TimeoutError:
            raise FetchError(f"timed out after {self.limits.timeout:g} s fetching {url}",
                             "timeout") from None

    async def _fetch(self, url: str) -> FetchedPage:
        target = self._check_url(url)
        refused: list[AddressRefused] = []
        base_factory = guarded_socket_factory(self.policy)

        def socket_factory(addr_info: tuple[Any, ...]) -> Any:
            try:
                return base_factory(addr_info)
            except AddressRefused as exc:
                refused.append(exc)
                raise

        connector = aiohttp.TCPConnector(
            resolver=GuardedResolver(self.policy, self.dns_resolver),
            socket_factory=socket_factory, use_dns_cache=False, force_close=True)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.limits.connect_timeout,
                                        sock_read=self.limits.timeout)
        headers = {"User-Agent": self.user_agent,
                   "Accept": "text/html,application/xhtml+xml,application/json;q=0.9,"
                             "text/*;q=0.8,*/*;q=0.5"}
        redirects: list[str] = []
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers,
                                         trust_env=False,
                                         cookie_jar=aiohttp.DummyCookieJar()) as session:
            while True:
                try:
                    async with session.get(target, allow_redirects=False) as resp:
                        location = resp.headers.get("Location")
                        if resp.status in _REDIRECTS and location:
                            if len(redirects) >= self.limits.max_redirects:
                                raise FetchError(
                                    f"too many redirects (more than "
                                    f"{self.limits.max_redirects}) starting at {url}",
                                    "redirects")
                            redirects.append(str(target))
                            target = self._check_url(str(target.join(URL(location))),
                                                     hop=True)
                            continue
                        body, truncated = await self._read(resp)
                        return FetchedPage(
                            url=str(target), status=resp.status, reason=resp.reason or "",
                            content_type=resp.content_type, charset=resp.charset, body=body,
                            truncated=truncated,
                            has_content_type="Content-Type" in resp.headers,
                            redirects=redirects)
                except FetchError:
                    raise
                except (aiohttp.ClientError, OSError, ValueError) as exc:
                    found = _refusal_in(exc) or (refused[0] if refused else None)
                    if found is not None:
                        raise _refused(str(target), found) from exc
                    raise FetchError(f"could not fetch {target}: {_describe(exc)}",
                                     "connection") from exc

    def _check_url(self, url: str, *, hop: bool = False) -> URL:
        where = "redirect to " if hop else ""
        try:
            parsed = URL(url)
        except (ValueError, TypeError) as exc:
            raise FetchError(f"invalid URL {where}{url!r}: {exc}", "invalid_url") from None
        if parsed.scheme not in ("http", "https"):
            raise FetchError(f"{where}{url!r}: only http:// and https:// URLs can be fetched",
                             "invalid_url")
        if parsed.raw_user is not None or parsed.raw_password is not None:
            raise FetchError(f"{where}{url!r}: URLs with credentials (user:password@) are not "
                             "fetched", "invalid_url")
        try:
            check_url_host(parsed.raw_host, self.policy)
        except AddressRefused as exc:
            raise _refused(url, exc, hop=hop) from None
        except InvalidHost as exc:
            raise FetchError(f"invalid URL {where}{url!r}: {exc}", "invalid_url") from None
        return parsed.with_fragment(None)

    async def _read(self, resp: aiohttp.ClientResponse) -> tuple[bytes, bool]:
        cap = self.limits.max_bytes
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(64 * 1024):
            room = cap - size
            if len(chunk) > room:
                chunks.append(chunk[:room])
                return b"".join(chunks), True
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks), False


# --------------------------------------------------------------------------- errors


def _error(message: str, kind: str, url: str | None = None) -> ToolResult:
    meta: dict[str, Any] = {"error": kind}
    if url:
        meta["url"] = url
    return ToolResult(f"Error: {message}", True, meta)


def _refused(url: str, exc: AddressRefused, *, hop: bool = False) -> FetchError:
    what = "a redirect to " if hop else ""
    return FetchError(
        f"refused to fetch {what}{url}: {exc.target}, a {exc.reason} address. web_fetch only "
        "reaches public internet addresses; private, loopback and link-local ones are not "
        "allowed by this server's configuration.", "refused")


def _refusal_in(exc: BaseException) -> AddressRefused | None:
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, AddressRefused):
            return e
        stack.extend([e.__cause__, e.__context__, getattr(e, "os_error", None)])
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "the host name could not be resolved"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return f"the response body was malformed ({exc})"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


# --------------------------------------------------------------------------- rendering


def _is_texty(content_type: str) -> bool:
    return (content_type.startswith("text/") or content_type in _TEXT_TYPES
            or content_type.endswith(("+xml", "+json")))


def _render(page: FetchedPage) -> _Rendered:
    ctype = page.content_type.lower()
    body = page.body
    if not page.has_content_type or ctype == "application/octet-stream":  # sniff
        head = body[:1024].lstrip().lower()
        if looks_binary(body[:SNIFF_BYTES]):
            ctype = "application/octet-stream"
        elif head.startswith((b"<!doctype html", b"<html")) or b"<body" in head:
            ctype = "text/html"
        elif head.startswith((b"{", b"[")):
            ctype = "application/json"
        else:
            ctype = "text/plain"
    if ctype in ("text/html", "application/xhtml+xml"):
        return _render_html(body, page.charset, page.url)
    if ctype == "application/json" or ctype.endswith("+json"):
        text = _decode(body, page.charset)
        if not page.truncated:
            with contextlib.suppress(ValueError):
                text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        return _Rendered(text, None, "json")
    if _is_texty(ctype):
        text = _decode(body, page.charset)
        if not looks_binary(body[:SNIFF_BYTES]):
            return _Rendered(text, None, "text")
    size = f"{len(body)}{'+' if page.truncated else ''} bytes"
    return _Rendered(f"[Binary content ({page.content_type}, {size}) is not shown: "
                     "web_fetch returns text only.]", None, "binary")


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8", errors="replace")
    except LookupError:  # unknown charset name
        return body.decode("utf-8", errors="replace")


class _Converter(MarkdownConverter):
    """Markdown with ATX headings and images reduced to their alt text."""

    def convert_img(self, el: Any, text: str, parent_tags: Any) -> str:
        alt = str(el.attrs.get("alt") or "").strip()
        return f"[image: {alt}]" if alt else ""


def _render_html(body: bytes, charset: str | None, base_url: str) -> _Rendered:
    soup = BeautifulSoup(body, "html.parser", from_encoding=charset)
    title = None
    if soup.title is not None and soup.title.string:
        title = " ".join(soup.title.string.split()) or None
    for tag in soup(list(_DROP_TAGS)):
        tag.decompose()
    base = URL(base_url)
    for a in soup.find_all("a", href=True):
        href = str(a.get("href", "")).strip()
        if href.lower().startswith(("javascript:", "data:", "vbscript:")):
            a.unwrap()
            continue
        try:
            a["href"] = str(base.join(URL(href)))
        except (ValueError, TypeError):
            a.unwrap()
    text = _Converter(heading_style="ATX", bullets="-", escape_underscores=False,
                      escape_asterisks=False).convert_soup(soup)
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    return _Rendered(text, title, "html")
