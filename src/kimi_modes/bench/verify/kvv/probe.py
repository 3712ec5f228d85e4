"""What every KVV suite shares: one check's outcome, one HTTP answer (streamed answers
reassembled as KVV's ``_StreamAccumulator`` does), the prober that sends requests, and the
request fields that switch thinking per ``--think-mode``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import jsonschema

from kimi_modes.bench._http import exception_text
from kimi_modes.bench.verify.client import Endpoint

THINK_MODES = ("kimi", "opensource", "none")


@dataclass(frozen=True, slots=True)
class Check:
    """One check's outcome: ``detail`` says what was seen, in one line."""

    suite: str
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: the status, the parsed body (a non-streamed answer) or the reassembled
    message and usage (a streamed one), or the transport error."""

    status: int | None
    body: dict[str, Any] | None = None
    error: str | None = None

    @property
    def message(self) -> dict[str, Any]:
        choices = (self.body or {}).get("choices") or [{}]
        message = choices[0].get("message") if isinstance(choices[0], dict) else None
        return message if isinstance(message, dict) else {}

    @property
    def finish_reason(self) -> Any:
        choices = (self.body or {}).get("choices") or [{}]
        return choices[0].get("finish_reason") if isinstance(choices[0], dict) else None

    @property
    def content(self) -> str:
        content = self.message.get("content")
        return content if isinstance(content, str) else ""

    @property
    def reasoning(self) -> str:
        """``reasoning_content`` (Moonshot, SGLang) or ``reasoning`` (newer vLLM)."""
        for key in ("reasoning_content", "reasoning"):
            value = self.message.get(key)
            if isinstance(value, str) and value:
                return value
        return ""

    @property
    def accepted(self) -> bool:
        return self.status == 200 and bool((self.body or {}).get("choices"))

    @property
    def call_names(self) -> list[str]:
        calls = self.message.get("tool_calls") or []
        return [str((c.get("function") or {}).get("name")) for c in calls if isinstance(c, dict)]

    def describe(self) -> str:
        if self.error is not None:
            return self.error
        error = (self.body or {}).get("error")
        if self.status != 200 and isinstance(error, dict):
            return f"HTTP {self.status}: {str(error.get('message'))[:120]}"
        return f"HTTP {self.status}"


def thinking_body(thinking: bool, think_mode: str) -> dict[str, Any]:
    """The request fields that switch thinking, as KVV's ``--think-mode`` spells them:
    ``kimi`` (Moonshot's API), ``opensource`` (vLLM/SGLang chat-template kwargs), ``none``."""
    if think_mode == "none":
        return {}
    if think_mode == "opensource":
        return {"chat_template_kwargs": {"thinking": thinking}}
    return {"thinking": {"type": "enabled" if thinking else "disabled"}}


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def parse_json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None


def validate_arguments(schema: Any, arguments: Any) -> str | None:
    """``None`` when ``arguments`` (a JSON text) is valid for ``schema``, else why not."""
    if not isinstance(arguments, str):
        return "no tool call"
    try:
        value = json.loads(arguments)
    except ValueError:
        return f"arguments are not JSON: {arguments[:80]!r}"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        return f"schema violation: {exc.message}"
    except jsonschema.SchemaError as exc:
        return f"schema not usable locally: {exc.message}"
    return None


class Prober:
    """Sends the suites' requests to one endpoint (``model`` set)."""

    def __init__(self, session: aiohttp.ClientSession, endpoint: Endpoint,
                 timeout: float) -> None:
        self.session, self.endpoint, self.timeout = session, endpoint, timeout

    async def post(self, body: Mapping[str, Any], *, stream: bool = False) -> Answer:
        """POST ``body`` (the model added); a streamed answer is reassembled."""
        payload = {"model": self.endpoint.model, **body}
        if stream:
            payload["stream"] = True
            payload["stream_options"] = {"include_usage": True}
        try:
            async with self.session.post(
                self.endpoint.chat_url, json=payload, headers=self.endpoint.headers,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as resp:
                if resp.status != 200 or not stream:
                    raw = await resp.read()
                    try:
                        parsed = json.loads(raw)
                    except ValueError:
                        parsed = None
                    return Answer(resp.status, parsed if isinstance(parsed, dict) else None)
                return Answer(200, await _reassemble(resp))
        except TimeoutError:
            return Answer(None, error=f"no answer within {self.timeout:g} s")
        except aiohttp.ClientError as exc:
            return Answer(None, error=exception_text(exc))


async def _reassemble(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """A streamed answer as one non-streamed body: content, reasoning (as
    ``reasoning_content``), tool calls (arguments joined by index), finish reason and the last
    usage seen (top-level or, Kimi-style, in a choice)."""
    content: list[str] = []
    reasoning: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    finish: Any = None
    usage: Any = None
    async for raw_line in resp.content:
        line = raw_line.decode("utf-8", "replace").strip()
        if not line.startswith("data:") or line[5:].strip() == "[DONE]":
            continue
        chunk = json.loads(line[5:])
        usage = chunk.get("usage") or usage
        for choice in chunk.get("choices") or ():
            usage = choice.get("usage") or usage
            finish = choice.get("finish_reason") or finish
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str):
                reasoning.append(thought)
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(int(call.get("index", 0)),
                                        {"type": "function", "function": {"name": "",
                                                                          "arguments": ""}})
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"choices": [{"message": message, "finish_reason": finish}], "usage": usage}
