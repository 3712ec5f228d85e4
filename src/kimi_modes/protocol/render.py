"""Render an OpenAI chat request into the prompt a Kimi model reads (kimi-protocol.md §3, §9).

The prompt is what the model's own chat template (K2.x) or encoder (K3,
:mod:`kimi_modes.protocol.k3_render`) would produce, so an engine's raw ``/v1/completions``
endpoint can serve chats without the template (and without its quirks). Client text never
becomes control tokens: every piece of it goes through
:func:`~kimi_modes.protocol.neutralize.neutralize_control_tokens` (K3: its XTML
counterpart) first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.errors import PromptError
from kimi_modes.protocol.families import FamilyInfo, family_info
from kimi_modes.protocol.ids import normalize_tool_call_ids
from kimi_modes.protocol.k3_render import render_xtml_prompt
from kimi_modes.protocol.neutralize import neutralize_control_tokens
from kimi_modes.protocol.tsdecl import tools_to_typescript

_ROLES = ("system", "developer", "user", "assistant", "tool")
_SYSTEM_ROLES = ("system", "developer")  # OpenAI's newer name for the system role
_IMAGE_PART_TYPES = ("image_url", "image")


def render_prompt(
    request: Mapping[str, Any],
    family: str,
    *,
    thinking: bool | None = None,
    thinking_effort: str | None = None,
    preserve_thinking: bool | None = None,
    add_generation_prompt: bool = True,
) -> str:
    """Return the Kimi prompt for an OpenAI chat-completions body.

    ``request`` needs ``"messages"`` (a list, possibly empty) and may have ``"tools"`` (K3
    also reads ``"tool_choice"`` and ``"response_format"``); other keys are ignored.
    ``thinking`` is the switch of the families that have one (``None``: the family's
    default, which is on); the others ignore it. ``thinking_effort`` is K3's (``low``,
    ``high``, ``max``; ``None``: ``max`` with thinking on); ``preserve_thinking`` is K2.6's
    (``None``: off), keeping the reasoning of earlier turns when thinking is on. With
    ``add_generation_prompt`` the prompt ends with the assistant's header and, where the
    family prefills it, the opened reasoning block (K2.x: ``<think>``, or ``<think></think>``
    with thinking off; K3: the think channel, or the response channel with thinking off).

    K2.x: tool-call ids are normalized with
    :func:`~kimi_modes.protocol.normalize_tool_call_ids`. ``role: "developer"`` is read as
    ``"system"``. Assistant reasoning is read from ``reasoning_content`` (or ``reasoning``,
    as newer vLLM builds send it).

    A chat that ends with an assistant message to continue (:func:`continues_final`) ends
    with that message left open instead, whatever ``add_generation_prompt`` says: the model
    goes on writing its answer from there (K2.x only).

    Raises ``ValueError`` for an unknown family and :class:`PromptError` (a ``ValueError``)
    naming the offending message for a malformed request, an effort the family rejects
    (K3 rejects ``medium``) or an effort given to a family without one.
    """
    info = family_info(family)
    effort = info.thinking_effort(thinking, thinking_effort)
    messages = request.get("messages")
    if not isinstance(messages, list | tuple):
        raise PromptError("the request needs a 'messages' list")
    for index, message in enumerate(messages):
        _check_message(message, index)
    thinks = info.thinks(thinking)
    prefill = continues_final(messages)
    if prefill and info.wire_format == "xtml":
        raise PromptError(f"continuing an assistant message is not supported for {family} yet")
    try:
        if info.wire_format == "xtml":
            return render_xtml_prompt(
                request,
                messages,
                thinks=thinks,
                thinking_effort=effort,
                add_generation_prompt=add_generation_prompt,
            )
        preserve = info.preserves_thinking(thinking, preserve_thinking)
        prompt = _Renderer(info, thinks, preserve).render(
            normalize_tool_call_ids(messages), request.get("tools"),
            add_generation_prompt and not prefill,
        )
        return prompt.removesuffix(T.IM_END) if prefill else prompt
    except RecursionError:
        raise PromptError("the request is nested too deeply to render") from None


def continues_final(messages: Sequence[Any]) -> bool:
    """Whether the chat ends with an assistant message for the model to continue (a prefill):
    Moonshot's partial mode, ``"partial": true`` on a last assistant message without tool
    calls. The answer then holds only what the model adds, and no reasoning."""
    if not messages or not isinstance(messages[-1], Mapping):
        return False
    last = messages[-1]
    return (last.get("role") == "assistant" and last.get("partial") is True
            and not last.get("tool_calls"))


def _check_message(message: object, index: int) -> None:
    if not isinstance(message, Mapping):
        raise PromptError(f"messages[{index}] is not an object")
    role = message.get("role")
    if role not in _ROLES:
        expected = ", ".join(_ROLES)
        raise PromptError(
            f"messages[{index}] has unknown role {role!r}; expected one of {expected}"
        )
    declares_tools = role in _SYSTEM_ROLES and bool(message.get("tools"))  # K3 only
    if role != "assistant" and message.get("content") is None and not declares_tools:
        raise PromptError(f"messages[{index}] ({role}) has no content")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise PromptError(f"messages[{index}] (tool) needs a string 'tool_call_id'")
    calls = message.get("tool_calls")
    if calls is not None and not (role == "assistant" and isinstance(calls, list)):
        raise PromptError(f"messages[{index}]: 'tool_calls' must be a list on an assistant message")


class _Renderer:
    """The K2.x template (kimi-protocol.md §3, §8)."""

    def __init__(self, info: FamilyInfo, thinks: bool, preserve_thinking: bool) -> None:
        self.info = info
        self.thinks = thinks
        self.preserve_thinking = preserve_thinking
        self.uses_think_tags = info.thinking != "none"

    def render(
        self,
        messages: list[dict[str, Any]],
        tools: object,
        add_generation_prompt: bool,
    ) -> str:
        out: list[str] = []
        if tools:
            out.append(_message(T.IM_SYSTEM, T.TOOL_DECLARE, self._declaration(tools)))
        if not messages or messages[0]["role"] not in _SYSTEM_ROLES:
            out.append(_message(T.IM_SYSTEM, "system", T.DEFAULT_SYSTEM_PROMPT))
        last_plain = max(
            (
                i
                for i, m in enumerate(messages)
                if m["role"] == "assistant" and not m.get("tool_calls")
            ),
            default=-1,
        )
        for index, message in enumerate(messages):
            in_history = index <= last_plain and not self.preserve_thinking
            out.append(self._message(message, index, in_history=in_history))
        if add_generation_prompt:
            out.append(T.IM_ASSISTANT + "assistant" + T.IM_MIDDLE)
            if self.info.think_prefill:
                out.append(T.THINK_BEGIN if self.thinks else T.THINK_BEGIN + T.THINK_END)
        return "".join(out)

    def _declaration(self, tools: object) -> str:
        if not isinstance(tools, list | tuple) or not all(isinstance(t, Mapping) for t in tools):
            raise PromptError("'tools' must be a list of objects")
        if self.info.tool_declaration == "typescript":
            text = tools_to_typescript(tools)
        else:
            sort_keys = self.info.tool_declaration == "json_sorted"
            try:
                text = json.dumps(
                    tools, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys
                )
            except (TypeError, ValueError) as exc:
                raise PromptError(f"'tools' cannot be written as JSON: {exc}") from None
        return neutralize_control_tokens(text)

    def _message(self, message: Mapping[str, Any], index: int, *, in_history: bool) -> str:
        role = message["role"]
        name = _header_name(message, index)
        content = self._content(message.get("content"), index)
        if role in _SYSTEM_ROLES:
            return _message(T.IM_SYSTEM, name or "system", content)
        if role == "user":
            return _message(T.IM_USER, name or "user", content)
        if role == "tool":
            call_id = neutralize_control_tokens(message["tool_call_id"])
            return _message(T.IM_SYSTEM, name or "tool", f"## Return of {call_id}\n{content}")
        body = self._think_block(message, index, in_history) + content
        if message.get("tool_calls"):
            body += _tool_calls_section(message["tool_calls"], index)
        return _message(T.IM_ASSISTANT, name or "assistant", body)

    def _think_block(self, message: Mapping[str, Any], index: int, in_history: bool) -> str:
        if not self.uses_think_tags:
            return ""
        if in_history or not self.thinks:
            return T.THINK_BEGIN + T.THINK_END
        reasoning = message.get("reasoning_content")
        if reasoning is None:
            reasoning = message.get("reasoning")
        if reasoning is not None and not isinstance(reasoning, str):
            raise PromptError(f"messages[{index}]: 'reasoning_content' must be a string")
        return T.THINK_BEGIN + neutralize_control_tokens(reasoning or "") + T.THINK_END

    def _content(self, content: object, index: int) -> str:
        if content is None:
            return ""
        if isinstance(content, str):
            return neutralize_control_tokens(content)
        if not isinstance(content, list | tuple):
            raise PromptError(f"messages[{index}]: 'content' must be a string or a list of parts")
        return "".join(self._part(part, index) for part in content)

    def _part(self, part: object, index: int) -> str:
        if not isinstance(part, Mapping) or "type" not in part:
            raise PromptError(f"messages[{index}]: a content part has no 'type'")
        kind = part["type"]
        if kind == "text":
            text = part.get("text")
            if not isinstance(text, str):
                raise PromptError(f"messages[{index}]: a text part needs a string 'text'")
            return neutralize_control_tokens(text)
        if kind in _IMAGE_PART_TYPES:
            begin = T.MEDIA_START_LEGACY if self.info.legacy_media_tokens else T.MEDIA_BEGIN
            return f"{begin}image{T.MEDIA_CONTENT}{T.MEDIA_PAD}{T.MEDIA_END}\n"
        raise PromptError(f"messages[{index}]: unsupported content part type {kind!r}")


def _message(start: str, name: str, body: str) -> str:
    return start + name + T.IM_MIDDLE + body + T.IM_END


def _header_name(message: Mapping[str, Any], index: int) -> str:
    name = message.get("name")
    if name is None or name == "":
        return ""
    if not isinstance(name, str):
        raise PromptError(f"messages[{index}]: 'name' must be a string")
    return neutralize_control_tokens(name)


def _tool_calls_section(calls: Sequence[Mapping[str, Any]], index: int) -> str:
    out = [T.TOOL_CALLS_SECTION_BEGIN]
    for call in calls:
        out += [
            T.TOOL_CALL_BEGIN,
            neutralize_control_tokens(call["id"]),
            T.TOOL_CALL_ARGUMENT_BEGIN,
            neutralize_control_tokens(_arguments(call["function"], index)),
            T.TOOL_CALL_END,
        ]
    out.append(T.TOOL_CALLS_SECTION_END)
    return "".join(out)


def _arguments(function: Mapping[str, Any], index: int) -> str:
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        return arguments
    if isinstance(arguments, Mapping | list):
        # A client that sent parsed arguments gets json.dumps' default separators, as the
        # template's ``tojson`` would write them.
        try:
            return json.dumps(arguments, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise PromptError(
                f"messages[{index}]: tool call arguments are not JSON: {exc}"
            ) from None
    raise PromptError(f"messages[{index}]: tool call arguments must be a JSON string or object")
