"""``GET /v1/models`` and ``GET /v1/models/{model}``: the model ids the gateway serves, one per
served model and mode (the router's :class:`~kimi_modes.modes.catalog.Catalog`, built from the
upstreams' families), then the mode aliases of the default model, in OpenAI's shape plus
``mode``, ``family`` and ``description``.

``GET /v1/models/{model}`` also takes an unlisted alias (``kimi-k2.5``) and answers with the
model it names (so the answer's ``id`` is the listed id); an unknown id is a 404
``model_not_found``. Both answer 503 before the gateway has started.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

from kimi_modes.modes import ModeError, Router
from kimi_modes.modes.catalog import ModelEntry
from kimi_modes.server.auth import Caller
from kimi_modes.server.errors import APIError, openai_error_body
from kimi_modes.server.openai_answer import OpenAIError
from kimi_modes.server.openapi import Endpoint, Operation

_TAG = "models"


class Model(BaseModel):
    """One model id; ``mode`` is the mode it names."""

    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    mode: Literal["instant", "thinking", "agent", "swarm"]
    family: str
    description: str


class ModelList(BaseModel):
    """Every model id the gateway serves."""

    object: Literal["list"]
    data: list[Model]


def model_body(entry: ModelEntry) -> dict[str, Any]:
    """The ``model`` object of ``entry``."""
    return {"id": entry.id, "object": "model", "created": 0, "owned_by": "kimi-modes",
            "mode": entry.mode.value, "family": entry.family.value,
            "description": entry.description}


class ModelsAPI:
    """The two routes; ``authorize(request)`` gives the caller or the 401 to answer,
    ``router()`` the running modes (``None`` before start-up)."""

    def __init__(self, authorize: Callable[[Request], Caller | Response],
                 router: Callable[[], Router | None]) -> None:
        self._authorize = authorize
        self._router = router

    def endpoints(self, prefix: str = "/v1") -> list[Endpoint]:
        """The routes under ``prefix``, each with its OpenAPI operation."""
        return [
            Endpoint(Operation("get", f"{prefix}/models", "The model ids served", _TAG,
                               OpenAIError, (401, 503), ModelList), self.list_models),
            Endpoint(Operation("get", f"{prefix}/models/{{model}}", "One model id", _TAG,
                               OpenAIError, (401, 404, 503), Model), self.get_model),
        ]

    async def list_models(self, request: Request) -> Response:
        if isinstance(denied := self._authorize(request), Response):
            return denied
        router = self._router()
        if router is None:
            return _starting()
        return _json({"object": "list",
                      "data": [model_body(m) for m in router.catalog.entries]})

    async def get_model(self, request: Request) -> Response:
        if isinstance(denied := self._authorize(request), Response):
            return denied
        router = self._router()
        if router is None:
            return _starting()
        try:
            entry = router.catalog.lookup(request.path_params["model"])
        except ModeError as exc:
            err = APIError.from_exception(exc)
            return _json(openai_error_body(err), err.status)
        return _json(model_body(entry))


def _starting() -> Response:
    err = APIError(503, "the gateway is still starting", code="starting")
    return _json(openai_error_body(err), err.status)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
