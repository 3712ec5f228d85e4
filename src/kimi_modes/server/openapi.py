"""The gateway's OpenAPI document, built from the models its handlers validate with.

A route table contributes its routes as :class:`Endpoint` s: a Starlette handler and the
:class:`Operation` that describes it (the pydantic models of its body, query, answer and
errors). The same list makes the app's routes (:meth:`Endpoint.route`) and the document
(:func:`openapi_document`), so no route is served without being described, nor described
without being served. A chat API contributes through its
:class:`~kimi_modes.server.wire.WireFormat` (:func:`wire_operation` reads its
``request_model``, ``answer_model`` and ``error_model``); the runs API through
:meth:`~kimi_modes.server.runs_api.RunsAPI.endpoints`.

What a caller may rely on: the document is OpenAPI 3.1 (its schemas are pydantic's JSON
Schema 2020-12, under ``components/schemas``); every operation lists each status it answers
with, and every 4xx/5xx has the error schema of the API the route belongs to; an operation
that needs an API key says so in ``security`` (bearer, or Anthropic's ``x-api-key``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kimi_modes.server.wire import WireFormat

__all__ = ["Endpoint", "Operation", "openapi_document", "wire_operation"]

Handler = Callable[[Request], Awaitable[Response]]

_REF: Final = "#/components/schemas/{model}"
#: What each status means, for the document's ``description`` fields.
_STATUS_TEXT: Final = {
    200: "OK", 202: "Accepted", 400: "The request is invalid (the message says what to fix)",
    401: "No or an invalid API key", 404: "Not found", 405: "Method not allowed",
    408: "The request body arrived too slowly", 409: "Conflict with the resource's state",
    413: "The request body is too large", 422: "The upstream refused the request",
    429: "An upstream is busy (see Retry-After)",
    499: "The client disconnected", 500: "A bug in the gateway", 501: "Not available here",
    502: "An upstream failed", 503: "Starting, shutting down, or an upstream is overloaded",
    504: "An upstream did not answer in time",
}
#: The statuses every chat answer may have besides 200: a bad request, a key, an unknown
#: model, a slow or large body, and the upstream's failures passed on.
CHAT_ERRORS: Final = (400, 401, 404, 408, 413, 422, 429, 500, 502, 503, 504)
#: Either way of sending a key.
SECURED: Final[tuple[dict[str, list[str]], ...]] = ({"bearer": []}, {"x-api-key": []})
#: One Server-Sent Event as a client parses it (the ``data`` of each is the API's JSON).
_SSE_EVENT: Final = {"type": "object", "properties": {
    "event": {"type": "string"}, "data": {"type": "string"}, "id": {"type": "string"},
    "retry": {"type": "integer"}}}


@dataclass(frozen=True, slots=True)
class Operation:
    """One method on one path, as the document shows it.

    ``body``/``query``: the models the handler validates the body and the query string
    with; ``answer``: the model of the success body (``None``: not JSON, see ``media``);
    ``media``: the success body's media types (a chat route answers JSON or, streamed,
    ``text/event-stream``); ``error``: the model of the error body on every status in
    ``errors``; ``headers``: request headers read, name → JSON schema; ``also``: other
    statuses answered with the success body (``/health``'s 503); ``security``: the
    alternatives a caller may authenticate with (empty: none needed; with ``{}`` among them:
    optional)."""

    method: str
    path: str
    summary: str
    tag: str
    error: type[BaseModel]
    errors: tuple[int, ...]
    answer: type[BaseModel] | None = None
    status: int = 200
    media: tuple[str, ...] = ("application/json",)
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    headers: dict[str, dict[str, Any]] = field(default_factory=dict)
    also: tuple[int, ...] = ()
    security: tuple[dict[str, list[str]], ...] = SECURED
    description: str = ""

    @property
    def operation_id(self) -> str:
        """``get_v1_runs_run_id``: the method and the path's words."""
        words = "".join(c if c.isalnum() else "_" for c in self.path).strip("_")
        return f"{self.method.lower()}_{'_'.join(w for w in words.split('_') if w)}"


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A handler and the operation that describes it."""

    operation: Operation
    handler: Handler

    def route(self) -> Route:
        """The Starlette route serving this operation."""
        return Route(self.operation.path, self.handler, methods=[self.operation.method.upper()])


def wire_operation(path: str, wire: WireFormat, summary: str, *, tag: str,
                   description: str = "") -> Operation:
    """The operation of a chat route served by ``wire``: its request body, its whole answer
    (or ``text/event-stream`` when the body asks to stream), its errors in its own shape."""
    return Operation("post", path, summary, tag, error=wire.error_model, errors=CHAT_ERRORS,
                     answer=wire.answer_model, media=("application/json", "text/event-stream"),
                     body=wire.request_model, description=description)


def openapi_document(operations: Sequence[Operation], *, title: str, version: str,
                     description: str = "") -> dict[str, Any]:
    """The OpenAPI 3.1 document describing ``operations``."""
    inputs: list[tuple[type[BaseModel], JsonSchemaMode, TypeAdapter[Any]]] = []
    seen: set[tuple[type[BaseModel], JsonSchemaMode]] = set()

    def want(model: type[BaseModel] | None, mode: JsonSchemaMode) -> None:
        if model is not None and (model, mode) not in seen:
            seen.add((model, mode))
            inputs.append((model, mode, TypeAdapter(model)))

    for op in operations:
        want(op.body, "validation")
        want(op.answer, "serialization")
        want(op.error, "serialization")
    refs, defs = TypeAdapter.json_schemas(inputs, ref_template=_REF)
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, refs)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Authorization: Bearer KEY (OpenAI's way)"},
                "x-api-key": {"type": "apiKey", "in": "header", "name": "x-api-key",
                              "description": "x-api-key: KEY (Anthropic's way)"},
            },
        },
    }


def _operation(op: Operation, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op.operation_id, "summary": op.summary,
                           "tags": [op.tag]}
    if op.description:
        out["description"] = op.description
    parameters = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _path_params(op.path)]
    if op.query is not None:
        parameters += _query_parameters(op.query)
    parameters += [{"name": name, "in": "header", "required": False, "schema": schema}
                   for name, schema in op.headers.items()]
    if parameters:
        out["parameters"] = parameters
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": refs[(op.body, "validation")]}}}
    content: dict[str, Any] = {}
    for media in op.media:
        if media == "application/json":
            content[media] = {"schema": refs[(op.answer, "serialization")]
                              if op.answer is not None else {"type": "object"}}
        elif media == "text/event-stream":
            content[media] = {"schema": _SSE_EVENT}
        else:
            content[media] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {str(op.status): {"description": _STATUS_TEXT[op.status],
                                                  "content": content}}
    for status in op.also:
        responses[str(status)] = {"description": _STATUS_TEXT[status], "content": content}
    error = {"application/json": {"schema": refs[(op.error, "serialization")]}}
    for status in op.errors:
        responses[str(status)] = {"description": _STATUS_TEXT.get(status, "Error"),
                                  "content": error}
    out["responses"] = responses
    out["security"] = list(op.security)
    return out


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{")]


def _query_parameters(model: type[BaseModel]) -> list[dict[str, Any]]:
    """One query parameter per field of ``model`` (flat fields only: a query string has no
    nesting)."""
    schema = model.model_json_schema(ref_template=_REF)
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required,
             "description": prop.get("description", ""), "schema": _query_value(prop)}
            for name, prop in schema["properties"].items()]


def _query_value(prop: dict[str, Any]) -> dict[str, Any]:
    """A field's schema as a query value: absent is how a query says null."""
    value = {k: v for k, v in prop.items() if k not in ("title", "description")}
    branches = value.pop("anyOf", None)
    if branches is not None:
        kept = [b for b in branches if b.get("type") != "null"]
        value = {**(kept[0] if len(kept) == 1 else {"anyOf": kept}), **value}
        if value.get("default", 0) is None:
            del value["default"]
    return value
