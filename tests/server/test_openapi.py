"""The OpenAPI document describes exactly the routes the app serves (the live view's HTML
pages aside), with each API's own models: the request bodies the wire formats validate with,
their answers and their error bodies."""

from __future__ import annotations

from typing import Any

from starlette.routing import Route

from kimi_modes.config import Settings
from kimi_modes.server.app import Gateway, create_app
from kimi_modes.server.openapi import openapi_document


def _document() -> tuple[dict[str, Any], set[tuple[str, str]]]:
    gateway = Gateway(Settings())
    app = create_app(Settings(), gateway=gateway)
    served = {(route.path, method.lower()) for route in app.routes if isinstance(route, Route)
              for method in route.methods or () if method != "HEAD"}
    served = {(path, method) for path, method in served if not path.startswith("/ui")}
    document = openapi_document([e.operation for e in gateway.endpoints()], title="t",
                                version="0")
    return document, served


def test_every_served_route_is_described_and_nothing_else() -> None:
    document, served = _document()
    described = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert served - {("/openapi.json", "get")} == described
    assert document["openapi"].startswith("3.1")


def test_the_chat_routes_use_their_wire_formats_models() -> None:
    document, _ = _document()
    paths, schemas = document["paths"], document["components"]["schemas"]

    def ref(op: dict[str, Any], status: str) -> str:
        schema = op["responses"][status]["content"]["application/json"]["schema"]
        return str(schema["$ref"]).rsplit("/", 1)[-1]

    chat, messages = paths["/v1/chat/completions"]["post"], paths["/v1/messages"]["post"]
    assert ref(chat, "200") == "ChatCompletion" and ref(chat, "400") == "OpenAIError"
    assert ref(messages, "200") == "Message" and ref(messages, "400") == "AnthropicError"
    assert set(chat["responses"]["200"]["content"]) == {"application/json",
                                                        "text/event-stream"}
    body = schemas["ChatCompletionBody"]
    # The served ids depend on the upstreams (read at start-up): the field points at them.
    assert "GET /v1/models" in body["properties"]["model"]["description"]
    responses = paths["/v1/responses"]["post"]
    assert ref(responses, "200") == "ResponseObject" and ref(responses, "400") == "OpenAIError"
    assert body["additionalProperties"] is True  # other OpenAI fields are accepted
    effort = body["properties"]["reasoning_effort"]["anyOf"][0]["enum"]
    assert effort == ["none", "minimal", "low", "medium", "high", "xhigh", "max"]
    assert set(schemas["MessagesBody"]["required"]) == {"model", "max_tokens", "messages"}
    assert ref(paths["/v1/runs"]["get"], "400") == "OpenAIError"


def test_query_parameters_come_from_the_runs_api_models() -> None:
    document, _ = _document()
    params = {p["name"]: p for p in document["paths"]["/v1/runs"]["get"]["parameters"]}
    assert params["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 100,
                                         "default": 20}
    assert "running" in params["status"]["schema"]["enum"]
    assert params["parent_id"]["schema"] == {"type": "string"}  # absent, never null
    health = document["paths"]["/health"]["get"]
    assert {} in health["security"] and set(health["responses"]) == {"200", "503"}
