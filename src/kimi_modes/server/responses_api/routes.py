"""The stored-response routes: ``GET /v1/responses/{id}``, ``DELETE /v1/responses/{id}``,
``POST /v1/responses/{id}/cancel`` and ``GET /v1/responses/{id}/input_items``.

Scoped to the caller like the runs API (:mod:`kimi_modes.server.runs_api`): a response of
another API key answers exactly like an unknown id, 404 ``response_not_found``. Errors come in
OpenAI's shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from kimi_modes.runs import TERMINAL_STATUSES
from kimi_modes.server.auth import Caller
from kimi_modes.server.errors import APIError, openai_error_body
from kimi_modes.server.openai_answer import OpenAIError
from kimi_modes.server.openapi import Endpoint, Operation
from kimi_modes.server.responses_api.body import DeletedResponse, InputItems, ResponseObject
from kimi_modes.server.responses_api.stored import StoredResponses, response_from

#: ``authorize(request)``: the caller, or the response to refuse the request with.
Authorize = Callable[[Request], Caller | Response]

_MAX_LIMIT = 100


_TAG = "responses"


class InputItemsQuery(BaseModel):
    """The query string of ``GET /v1/responses/{id}/input_items`` (as the document shows it;
    the handler checks it and answers 400 naming the parameter)."""

    order: str | None = Field(None, pattern="^(asc|desc)$")
    limit: int | None = Field(None, ge=1, le=100)
    after: str | None = None


class ResponsesRoutes:
    """The handlers over ``stored``. ``cancel_wait``: how long a cancel waits for the run
    to record its end before answering (the answer then says ``cancelled``)."""

    def __init__(self, stored: StoredResponses, authorize: Authorize, *,
                 cancel_wait: float = 5.0) -> None:
        self.stored = stored
        self._authorize = authorize
        self.cancel_wait = cancel_wait

    def endpoints(self, prefix: str = "/v1") -> list[Endpoint]:
        """The four routes under ``prefix``, each with its OpenAPI operation."""
        base = f"{prefix}/responses/{{response_id}}"
        errors = (400, 401, 404, 409, 503)
        return [
            Endpoint(Operation("get", base, "A stored response", _TAG, OpenAIError, errors,
                               ResponseObject), self.get),
            Endpoint(Operation("delete", base, "Delete a stored response", _TAG, OpenAIError,
                               errors, DeletedResponse), self.delete),
            Endpoint(Operation("post", base + "/cancel", "Cancel a background response",
                               _TAG, OpenAIError, errors, ResponseObject), self.cancel),
            Endpoint(Operation("get", base + "/input_items", "The items a response saw",
                               _TAG, OpenAIError, errors, InputItems,
                               query=InputItemsQuery), self.input_items),
        ]

    async def get(self, request: Request) -> Response:
        """The response object (``status`` follows a background run as it goes)."""
        return await self._handle(request, self.stored.get)

    async def delete(self, request: Request) -> Response:
        """Delete a finished response: ``{"id", "object": "response.deleted", "deleted":
        true}``; 409 while it is in progress."""
        async def delete(response_id: str, scope: str | None) -> dict[str, Any]:
            await self.stored.delete(response_id, scope)
            return {"id": response_id, "object": "response.deleted", "deleted": True}
        return await self._handle(request, delete)

    async def cancel(self, request: Request) -> Response:
        """Cancel a background response in progress; the response object once its run has
        recorded the end (``cancelled``). 409 when it has already finished."""
        async def cancel(response_id: str, scope: str | None) -> dict[str, Any]:
            record = await self.stored.record(response_id, scope)
            store = self.stored.store()
            if record.status in TERMINAL_STATUSES or not await store.cancel(record.id):
                raise APIError(409, f"response {response_id!r} is not in progress (it is "
                               f"{record.status}): only a background response in progress "
                               "can be cancelled", code="response_not_cancellable")
            await store.wait(record.id, self.cancel_wait)
            return response_from(await self.stored.record(response_id, scope), response_id)
        return await self._handle(request, cancel)

    async def input_items(self, request: Request) -> Response:
        """``{"object": "list", "data", "first_id", "last_id", "has_more"}``: the items the
        model saw, ``order`` ``desc`` (the default, as OpenAI) or ``asc``, ``limit`` (1 to
        100, default 20) of them after the item ``after``."""
        query = request.query_params

        async def items(response_id: str, scope: str | None) -> dict[str, Any]:
            order = query.get("order") or "desc"
            if order not in ("asc", "desc"):
                raise APIError(400, "order must be asc or desc", param="order")
            raw = query.get("limit") or "20"
            if not raw.isdigit() or not 1 <= int(raw) <= _MAX_LIMIT:
                raise APIError(400, f"limit must be an integer from 1 to {_MAX_LIMIT}",
                               param="limit")
            data = await self.stored.input_items(response_id, scope)
            if order == "desc":
                data.reverse()
            after = query.get("after")
            if after:
                ids = [item["id"] for item in data]
                if after not in ids:
                    raise APIError(400, f"no input item {after!r} in this response",
                                   param="after")
                data = data[ids.index(after) + 1:]
            page = data[: int(raw)]
            return {"object": "list", "data": page,
                    "first_id": page[0]["id"] if page else None,
                    "last_id": page[-1]["id"] if page else None,
                    "has_more": len(data) > len(page)}
        return await self._handle(request, items)

    async def _handle(self, request: Request,
                      work: Callable[[str, str | None], Awaitable[dict[str, Any]]]) -> Response:
        caller = self._authorize(request)
        if isinstance(caller, Response):
            return caller
        try:
            body = await work(request.path_params["response_id"], caller.scope)
        except APIError as err:
            return _json(openai_error_body(err), err.status)
        return _json(body)


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")
