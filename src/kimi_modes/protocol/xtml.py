"""K3's XTML envelope (kimi-protocol.md §9): elements, attributes, typed argument values.

An element is ``<|open|>TAG[ key="value"]*<|sep|>BODY<|close|>TAG<|sep|>``. Only the control
tokens are special; tags, attributes and bodies are text. The writer here never escapes
bodies (as Moonshot's encoder); callers neutralize client text first
(:func:`~kimi_modes.protocol.neutralize.neutralize_xtml_tokens`). Shared by the K3 encoder,
:func:`~kimi_modes.protocol.k3_format.format_xtml_output` and the K3 parser.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.neutralize import neutralize_xtml_tokens

_ATTRIBUTE_RE = re.compile(r'([A-Za-z_][\w-]*)="([^"]*)"')


def escape_attribute(value: str) -> str:
    """``&`` → ``&amp;`` first, then ``"`` → ``&quot;`` (the encoder's order)."""
    return value.replace("&", "&amp;").replace('"', "&quot;")


def unescape_attribute(value: str) -> str:
    """The inverse of :func:`escape_attribute` (``&quot;`` first, then ``&amp;``)."""
    return value.replace("&quot;", '"').replace("&amp;", "&")


def open_tag(tag: str, attributes: Iterable[tuple[str, object]] = ()) -> str:
    """``<|open|>TAG key="value"...<|sep|>``; values are ``str()``-ed, escaped and
    neutralized (a client-supplied name cannot hold a control token)."""
    attrs = "".join(
        f' {key}="{neutralize_xtml_tokens(escape_attribute(str(value)))}"'
        for key, value in attributes
    )
    return f"{T.XTML_OPEN}{tag}{attrs}{T.XTML_SEP}"


def close_tag(tag: str) -> str:
    """``<|close|>TAG<|sep|>``."""
    return f"{T.XTML_CLOSE}{tag}{T.XTML_SEP}"


def element(tag: str, body: str, attributes: Iterable[tuple[str, object]] = ()) -> str:
    """A whole element; ``body`` is written as it is."""
    return open_tag(tag, attributes) + body + close_tag(tag)


def parse_header(header: str) -> tuple[str, dict[str, str]]:
    """Split an opening header (the text between ``<|open|>`` and ``<|sep|>``) into its tag
    and its unescaped attributes; surrounding whitespace is tolerated, text that is not
    ``key="value"`` is ignored, and the first of two equal keys wins."""
    parts = header.split(maxsplit=1)
    tag = parts[0] if parts else ""
    rest = parts[1] if len(parts) > 1 else ""
    attributes: dict[str, str] = {}
    for key, value in _ATTRIBUTE_RE.findall(rest):
        attributes.setdefault(key, unescape_attribute(value))
    return tag, attributes


def value_type(value: object) -> str:
    """The ``type`` attribute of an argument: boolean, null, number, string, object, array."""
    if isinstance(value, bool):
        return "boolean"
    if value is None:
        return "null"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "object"
    return "array"


def value_text(value: object) -> str:
    """An argument's body: a string as it is, anything else ``json.dumps`` (default
    separators, non-ASCII kept)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def call_element(name: str, index: int, arguments: object) -> str:
    """One ``call`` element for ``arguments`` as a client or the model sent them.

    A JSON object (parsed, or as text) becomes one ``argument`` element per key, in its own
    order; ``None`` or a blank string gives no arguments; text that is not JSON is written
    whole as a raw ``json`` block. Raises ``ValueError`` for JSON that is not an object, and
    for arguments that are neither text nor an object (the encoder refuses both). Argument
    bodies and the raw block are neutralized.
    """
    body: list[str] = []
    parsed: object = {}
    if isinstance(arguments, str) and arguments.strip():
        try:
            parsed = json.loads(arguments)
        except ValueError:
            raw = neutralize_xtml_tokens(arguments)
            body.append(element("json", raw, [("type", "object")]))
    elif isinstance(arguments, dict):
        parsed = arguments
    elif arguments is not None and not isinstance(arguments, str):
        raise ValueError("tool call arguments must be a JSON object or a JSON string")
    if not isinstance(parsed, dict):
        raise ValueError("tool call arguments must be a JSON object")
    for key, value in parsed.items():
        text = neutralize_xtml_tokens(value_text(value))
        body.append(element("argument", text, [("key", key), ("type", value_type(value))]))
    return element("call", "".join(body), [("tool", name), ("index", index)])
