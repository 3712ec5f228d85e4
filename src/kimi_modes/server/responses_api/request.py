"""A ``POST /v1/responses`` body: its fields, and the request it becomes.

:class:`ResponsesBody` validates the fields we read (others are allowed and ignored, as
OpenAI's clients send many); :meth:`ResponsesBody.to_wire` makes the engine request: the
``instructions`` as the system message, the ``input`` items folded into chat messages
(:mod:`.items`), function ``tools`` and ``tool_choice`` in chat shape, ``text.format`` as
``response_format``, ``max_output_tokens`` as ``max_tokens``, and ``reasoning.effort`` as the
thinking switch (``none``: off) and an effort hint in K3's words, as ``reasoning_effort`` on
chat completions (:data:`~kimi_modes.server.openai_api.EFFORTS`: a family without efforts
ignores it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kimi_modes.engines.base import ChatRequest
from kimi_modes.modes.options import AgentOptions, ModeOptions, SwarmOptions
from kimi_modes.server.errors import APIError
from kimi_modes.server.openai_api import EFFORTS, PASSTHROUGH, ReasoningEffort
from kimi_modes.server.responses_api.items import messages_from_items
from kimi_modes.server.wire import WireRequest

#: What ``include`` names to get the logprobs of the output text.
LOGPROBS_INCLUDE = "message.output_text.logprobs"


class Reasoning(BaseModel):
    """``reasoning``: ``effort`` (``none`` turns thinking off) and ``summary`` (any value
    but ``null``: the reasoning is also streamed and returned as the item's summary)."""

    model_config = ConfigDict(extra="allow")
    effort: ReasoningEffort | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None


class TextFormat(BaseModel):
    """``text.format``: ``text``, ``json_object`` or ``json_schema`` (name, schema,
    strict)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text", "json_object", "json_schema"] = "text"
    name: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="allow")
    format: TextFormat | None = None


class FunctionTool(BaseModel):
    """A function tool, flat as the Responses API has it."""

    model_config = ConfigDict(extra="allow")
    type: Literal["function"]
    name: str = Field(min_length=1)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ResponsesBody(BaseModel):
    """The fields of a ``POST /v1/responses`` body we read; others are allowed."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1)
    input: str | list[dict[str, Any]] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: Literal["none", "auto", "required"] | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning: Reasoning | None = None
    text: TextConfig | None = None
    max_output_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    metadata: dict[str, str] | None = None
    store: bool = True
    background: bool = False
    stream: bool = False
    previous_response_id: str | None = None
    include: list[str] | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    agent: AgentOptions | None = None
    swarm: SwarmOptions | None = None

    def to_wire(self) -> ResponsesRequest:
        """The request as the gateway takes it."""
        if self.background and not self.store:
            raise APIError(400, "a background response must be stored: drop 'store: false'",
                           param="store")
        items = ([{"type": "message", "role": "user", "content": self.input}]
                 if isinstance(self.input, str) else self.input)
        conversation = messages_from_items(items)
        system = ([{"role": "system", "content": self.instructions}]
                  if self.instructions else [])
        if not conversation and self.previous_response_id is None:
            raise APIError(400, "'input' is empty: send a string or at least one item",
                           param="input")
        others = self.model_extra or {}
        # vLLM's sampling extras (top_k, min_p, ignore_eos...), as on chat completions
        extra: dict[str, Any] = {k: others[k] for k in PASSTHROUGH
                                 if others.get(k) is not None}
        tools = self.functions()
        if self.parallel_tool_calls is not None and tools:
            extra["parallel_tool_calls"] = self.parallel_tool_calls
        response_format = self._response_format()
        if response_format is not None:
            extra["response_format"] = response_format
        effort = self.reasoning.effort if self.reasoning is not None else None
        request = ChatRequest(
            messages=[*system, *conversation],
            tools=[_chat_tool(t) for t in tools] if tools else None,
            tool_choice=_chat_tool_choice(self.tool_choice),
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_output_tokens,
            effort_hint=EFFORTS.get(effort or ""),
            extra=extra,
            logprobs=self._logprobs(),
        )
        options = ModeOptions(agent=self.agent or AgentOptions(),
                              swarm=self.swarm or SwarmOptions())
        return ResponsesRequest(
            self.model, request, False if effort == "none" else None, options,
            stream=self.stream, background=self.background, body=self,
            conversation=conversation)

    def functions(self) -> list[FunctionTool]:
        """The function tools; tools of other types (OpenAI's hosted ``web_search``,
        ``file_search``, a ``custom`` or ``local_shell`` tool...) are left out: Kimi cannot
        call them through this gateway. Raises pydantic's ``ValidationError`` for a malformed
        function tool."""
        return [FunctionTool.model_validate(t) for t in self.tools or ()
                if isinstance(t, dict) and t.get("type") == "function"]

    def _logprobs(self) -> int | None:
        """The logprobs asked for: ``include`` naming ``message.output_text.logprobs`` or a
        ``top_logprobs`` (that many alternatives; 0 without)."""
        if LOGPROBS_INCLUDE in (self.include or ()) or self.top_logprobs is not None:
            return self.top_logprobs or 0
        return None

    def _response_format(self) -> dict[str, Any] | None:
        fmt = self.text.format if self.text is not None else None
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return {"type": "json_object"}
        if fmt.schema_ is None:
            raise APIError(400, "text.format of type json_schema needs a 'schema'",
                           param="text.format.schema")
        schema: dict[str, Any] = {"name": fmt.name or "response", "schema": fmt.schema_}
        if fmt.strict is not None:
            schema["strict"] = fmt.strict
        if fmt.description is not None:
            schema["description"] = fmt.description
        return {"type": "json_schema", "json_schema": schema}

    def echo(self) -> dict[str, Any]:
        """The request's settings a response object repeats."""
        return {
            "instructions": self.instructions,
            "metadata": self.metadata or {},
            "tools": [t.model_dump(exclude_none=True) for t in self.functions()],
            "tool_choice": self.tool_choice if self.tool_choice is not None else "auto",
            "parallel_tool_calls": (self.parallel_tool_calls
                                    if self.parallel_tool_calls is not None else True),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_output_tokens": self.max_output_tokens,
            "previous_response_id": self.previous_response_id,
            "reasoning": ({"effort": self.reasoning.effort, "summary": self.reasoning.summary}
                          if self.reasoning is not None else {"effort": None, "summary": None}),
            "text": {"format": (self.text.format.model_dump(by_alias=True, exclude_none=True)
                                if self.text is not None and self.text.format is not None
                                else {"type": "text"})},
            "store": self.store,
            "background": self.background,
            "top_logprobs": self.top_logprobs,
        }


@dataclass(slots=True)
class ResponsesRequest(WireRequest):
    """A Responses request: the body it came from, and ``conversation``: its input as chat
    messages, without the instructions (what a stored response keeps and a follow-up with
    ``previous_response_id`` continues; the history is put in front by
    :meth:`~kimi_modes.server.responses_api.wire.ResponsesWire.prepare`)."""

    body: ResponsesBody = field(default_factory=lambda: ResponsesBody(model="-"))
    conversation: list[dict[str, Any]] = field(default_factory=list)


def _chat_tool(tool: FunctionTool) -> dict[str, Any]:
    function: dict[str, Any] = {"name": tool.name}
    if tool.description is not None:
        function["description"] = tool.description
    function["parameters"] = tool.parameters or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
    if choice is None or isinstance(choice, str):
        return choice
    if choice.get("type") == "function" and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise APIError(400, "tool_choice must be none, auto, required or "
                   "{\"type\": \"function\", \"name\": ...}", param="tool_choice")
