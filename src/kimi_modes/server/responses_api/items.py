"""Responses items and chat messages, both ways: the one translation between the two shapes.

:func:`messages_from_items` folds a request's ``input`` items (messages, ``function_call``,
``function_call_output`` and ``reasoning`` items) into chat messages: a reasoning item, the
assistant message and the function calls that follow it become one assistant message with
``reasoning_content`` and ``tool_calls``, so Kimi sees its own reasoning again.
:func:`items_from_messages` goes back (``GET /v1/responses/{id}/input_items``), and
:func:`output_items` turns a folded answer into the output items of a response.

Item ids derive from the response's key, so a stored response shows the same ids every time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kimi_modes.server.errors import APIError

_ROLES = {"user": "user", "system": "system", "developer": "system", "assistant": "assistant"}


def messages_from_items(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chat messages from Responses input items, in order; raises :class:`APIError` (400,
    naming the item) for an item type the gateway cannot take."""
    messages: list[dict[str, Any]] = []
    assistant: dict[str, Any] | None = None

    def flush() -> None:
        nonlocal assistant
        if assistant is not None:
            messages.append(assistant)
            assistant = None

    for i, item in enumerate(items):
        kind = item.get("type") or ("message" if "role" in item else None)
        if kind == "message":
            role = _ROLES.get(str(item.get("role")))
            if role is None:
                raise APIError(400, f"input[{i}]: role must be user, system, developer or "
                               f"assistant, not {item.get('role')!r}", param=f"input[{i}].role")
            if role == "assistant":
                text = _text(item.get("content"), i)
                if assistant is None or assistant.get("tool_calls") or assistant["content"]:
                    flush()
                    assistant = _new_assistant()
                assistant["content"] = text
            else:
                flush()
                messages.append({"role": role, "content": _user_content(item.get("content"), i)})
        elif kind == "reasoning":
            if assistant is not None and (assistant["content"] or assistant.get("tool_calls")):
                flush()
            if assistant is None:
                assistant = _new_assistant()
            text = reasoning_text(item)
            if text:
                before = assistant.get("reasoning_content")
                assistant["reasoning_content"] = before + "\n" + text if before else text
        elif kind == "function_call":
            if assistant is None:
                assistant = _new_assistant()
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise APIError(400, f"input[{i}]: a function_call needs its call_id",
                               param=f"input[{i}].call_id")
            assistant.setdefault("tool_calls", []).append({
                "id": call_id, "type": "function",
                "function": {"name": str(item.get("name") or ""),
                             "arguments": str(item.get("arguments") or "")}})
        elif kind == "function_call_output":
            flush()
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise APIError(400, f"input[{i}]: a function_call_output needs its call_id",
                               param=f"input[{i}].call_id")
            output = item.get("output")
            messages.append({"role": "tool", "tool_call_id": call_id,
                             "content": output if isinstance(output, str)
                             else _text(output, i)})
        else:
            raise APIError(400, f"input[{i}]: items of type {kind!r} are not supported here "
                           "(messages, function_call, function_call_output and reasoning "
                           "are)", param=f"input[{i}].type")
    flush()
    return messages


def reasoning_text(item: Mapping[str, Any]) -> str:
    """The text of a reasoning item: its ``reasoning_text`` content, else its summary, else
    ``encrypted_content`` (which this gateway fills with the plain reasoning)."""
    for key, kind in (("content", "reasoning_text"), ("summary", "summary_text")):
        parts = item.get(key) or []
        texts = [p.get("text", "") for p in parts if isinstance(p, Mapping)
                 and p.get("type", kind) == kind]
        if any(texts):
            return "".join(t for t in texts if isinstance(t, str))
    encrypted = item.get("encrypted_content")
    return encrypted if isinstance(encrypted, str) else ""


def _new_assistant() -> dict[str, Any]:
    return {"role": "assistant", "content": None}


def _text(content: Any, i: int) -> str:
    """The text of message content: a string, or parts with ``text``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping)
                       and p.get("type") in ("input_text", "output_text", "text", "refusal"))
    raise APIError(400, f"input[{i}]: content must be a string or a list of parts",
                   param=f"input[{i}].content")


def _user_content(content: Any, i: int) -> str | list[dict[str, Any]]:
    """User/system content in chat shape: a string, or text and image parts."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise APIError(400, f"input[{i}]: content must be a string or a list of parts",
                       param=f"input[{i}].content")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": str(part.get("text", ""))})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise APIError(400, f"input[{i}].content[{j}]: parts of type {kind!r} are not "
                           "supported here (input_text and input_image with an image_url are)",
                           param=f"input[{i}].content[{j}].type")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def items_from_messages(messages: Iterable[Mapping[str, Any]], key: str
                        ) -> list[dict[str, Any]]:
    """Chat messages as Responses items (the input items of a stored response), with ids
    derived from ``key``."""
    items: list[dict[str, Any]] = []
    for n, message in enumerate(messages):
        role = message.get("role")
        if role == "tool":
            items.append({"id": f"fco_{key}_{n}", "type": "function_call_output",
                          "call_id": message.get("tool_call_id"),
                          "output": _plain(message.get("content")), "status": "completed"})
        elif role == "assistant":
            items.extend(output_items(message, f"{key}_{n}"))
        else:
            content = message.get("content")
            parts = ([{"type": "input_text", "text": content}] if isinstance(content, str)
                     else [_input_part(p) for p in content or ()])
            items.append({"id": f"msg_{key}_{n}", "type": "message", "role": role,
                          "status": "completed", "content": parts})
    return items


def output_items(message: Mapping[str, Any], key: str, *, summary: bool = False,
                 status: str = "completed") -> list[dict[str, Any]]:
    """The output items of one assistant message (chat shape): a ``reasoning`` item (its
    text as ``reasoning_text`` content, also as the summary when ``summary``), a
    ``message`` with the text, one ``function_call`` per tool call (``call_id``: Kimi's id).
    Item ids are ``<prefix>_<key>_<position>``, as :class:`~.stream.ResponseEncoder` gives."""
    items: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content")
    if reasoning:
        items.append(reasoning_item(f"rs_{key}_0", reasoning, summary=summary, status=status))
    text = _plain(message.get("content"))
    if text:
        items.append(message_item(f"msg_{key}_{len(items)}", text, status=status))
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        items.append(function_call_item(f"fc_{key}_{len(items)}", call.get("id") or "",
                                        function.get("name") or "",
                                        function.get("arguments") or "", status=status))
    return items


def reasoning_item(item_id: str, text: str, *, summary: bool,
                   status: str = "completed") -> dict[str, Any]:
    """A ``reasoning`` output item. ``encrypted_content`` carries the same text (not
    encrypted): a client that keeps no state sends it back and Kimi gets its reasoning."""
    return {"id": item_id, "type": "reasoning",
            "summary": [{"type": "summary_text", "text": text}] if summary else [],
            "content": [{"type": "reasoning_text", "text": text}],
            "encrypted_content": text, "status": status}


def message_item(item_id: str, text: str, *, status: str = "completed",
                 logprobs: list[Any] | None = None) -> dict[str, Any]:
    """An assistant ``message`` output item holding ``text`` (and its tokens' ``logprobs``)."""
    return {"id": item_id, "type": "message", "role": "assistant", "status": status,
            "content": [output_text(text, logprobs)]}


def output_text(text: str, logprobs: list[Any] | None = None) -> dict[str, Any]:
    """An ``output_text`` content part; ``logprobs``: its tokens' (none: ``[]``)."""
    return {"type": "output_text", "text": text, "annotations": [],
            "logprobs": logprobs if logprobs is not None else []}


def function_call_item(item_id: str, call_id: str, name: str, arguments: str, *,
                       status: str = "completed") -> dict[str, Any]:
    """A ``function_call`` output item."""
    return {"id": item_id, "type": "function_call", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def _plain(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))


def _input_part(part: Mapping[str, Any]) -> dict[str, Any]:
    if part.get("type") == "image_url":
        url = (part.get("image_url") or {}).get("url")
        return {"type": "input_image", "image_url": url, "detail": "auto"}
    return {"type": "input_text", "text": str(part.get("text", ""))}
