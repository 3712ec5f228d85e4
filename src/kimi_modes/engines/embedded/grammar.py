"""JSON schema → GBNF for llama.cpp, on top of llama-cpp-python's converter, made stricter.

Additions to ``llama_cpp.llama_grammar.SchemaConverter``:

- strings never contain raw control characters (its builtin string rule allows them, which is
  not JSON);
- integers honour ``minimum``/``maximum``/``exclusiveMinimum``/``exclusiveMaximum`` (it ignores
  them), with a digit-by-digit grammar, so bounded integers are enforced while sampling;
- a schema without constraints (``{}``, ``{"description": ...}``) accepts any JSON value, and
  ``"items": {}`` any items (the converter rejects the first and chokes on the second).

What a grammar still cannot enforce is listed in :data:`UNENFORCED`; callers validate those
after the fact.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

#: Schema keywords the grammar does not enforce (integer bounds are enforced; number bounds not).
UNENFORCED = frozenset(
    {
        "multipleOf",
        "uniqueItems",
        "minProperties",
        "maxProperties",
        "not",
        "if",
        "then",
        "else",
        "dependentRequired",
        "dependentSchemas",
        "patternProperties",
        "propertyNames",
        "contains",
        "oneOf",  # treated as anyOf: a value may match two alternatives
    }
)
_CONSTRAINING = (
    "type",
    "$ref",
    "anyOf",
    "oneOf",
    "allOf",
    "const",
    "enum",
    "properties",
    "additionalProperties",
    "items",
    "prefixItems",
    "pattern",
    "format",
)
_BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
_KNOWN_FORMATS = ("date", "time", "date-time", "uuid")
_MAX_DIGITS = 16  # the converter's own limit for unbounded integers

# llama.cpp's own (C++) converter's string character rule: no raw control characters.
_STRICT_CHAR = (
    r'[^"\\\x7F\x00-\x1F] | [\\] (["\\/bfnrt] | "u" [0-9a-fA-F] [0-9a-fA-F] [0-9a-fA-F] '
    r"[0-9a-fA-F])"
)


def schema_grammar(schema: Mapping[str, Any]) -> str:
    """GBNF whose root matches the JSON values that satisfy ``schema`` (see module docstring).

    Raises whatever the converter raises (``AssertionError``, ``ValueError``) for a schema it
    does not understand.
    """
    converter = _converter()
    resolved = converter.resolve_refs(copy.deepcopy(dict(schema)), "schema")
    converter.visit(resolved, "")
    rules: dict[str, str] = converter._rules
    if "char" in rules:
        rules["char"] = _STRICT_CHAR
    return str(converter.format_grammar())


def response_format_grammar(response_format: Any) -> tuple[str | None, str | None]:
    """The grammar and the instruction for a request's ``response_format`` (``None`` for
    each when it asks for nothing to enforce). Raises ``ValueError`` for a ``json_schema``
    without a usable schema."""
    if not isinstance(response_format, dict):
        return None, None
    kind = response_format.get("type")
    if kind == "json_object":
        return schema_grammar({"type": "object"}), "Reply with a JSON object only."
    if kind != "json_schema":
        return None, None
    spec = response_format.get("json_schema") or {}
    schema = spec.get("schema") if isinstance(spec, dict) else None
    if not isinstance(schema, dict):
        raise ValueError("response_format json_schema needs a schema")
    try:
        grammar = schema_grammar(schema)
    except Exception as exc:
        raise ValueError(f"cannot build a grammar from response_format's schema: {exc}") from exc
    return grammar, ("Reply with a JSON value only, following this JSON schema: "
                     + json.dumps(schema, ensure_ascii=False))


def unenforced(schema: Any) -> bool:
    """Whether ``schema`` uses a keyword the grammar of :func:`schema_grammar` cannot enforce."""
    if isinstance(schema, Mapping):
        if any(key in UNENFORCED for key in schema):
            return True
        if schema.get("format") not in (None, *_KNOWN_FORMATS) and "pattern" not in schema:
            return True
        if schema.get("type") != "integer" and any(key in schema for key in _BOUNDS):
            return True
        return any(unenforced(v) for k, v in schema.items() if k not in ("enum", "const"))
    if isinstance(schema, list):
        return any(unenforced(v) for v in schema)
    return False


def integer_rule(minimum: int | None, maximum: int | None) -> str:
    """A GBNF expression (without trailing space) for the integers in [minimum, maximum].

    Either bound may be ``None``; unbounded sides stop at 16 digits like the converter's own
    integer rule. Raises ``ValueError`` for an empty range.
    """
    if minimum is not None and maximum is not None and minimum > maximum:
        raise ValueError(f"empty integer range [{minimum}, {maximum}]")
    alternatives: list[str] = []
    # negative part: -(a..b) for the magnitudes a..b
    if minimum is None or minimum < 0:
        low_mag = 1 if maximum is None or maximum >= 0 else -maximum
        high_mag = None if minimum is None else -minimum
        alternatives += [f'"-" {seq}' for seq in _magnitudes(low_mag, high_mag)]
    # non-negative part
    if maximum is None or maximum >= 0:
        low = 0 if minimum is None or minimum < 0 else minimum
        alternatives += _magnitudes(low, maximum)
    return "(" + " | ".join(alternatives) + ")"


def _magnitudes(low: int, high: int | None) -> list[str]:
    """GBNF sequences for the non-negative integers low..high (``None``: up to 16 digits)."""
    if high is None:
        digits = len(str(low))
        sequences = _range_sequences(low, 10**digits - 1)
        if digits < _MAX_DIGITS:  # every longer number is above ``low``
            tail = " ".join(["[0-9]"] * digits)
            optional = "".join(" [0-9]?" for _ in range(_MAX_DIGITS - digits - 1))
            sequences.append(f"[1-9] {tail}{optional}")
        return sequences
    return _range_sequences(low, high)


def _range_sequences(low: int, high: int) -> list[str]:
    """GBNF sequences for low..high (0 ≤ low ≤ high), numbers written without leading zeros.

    The range is cut greedily into pieces of the form PREFIX [x-y] [0-9]…[0-9] (k free
    digits): from ``start``, k is the largest with ``start`` a multiple of 10^k, fewer free
    digits than ``start`` has, and at least one full block within ``high``; then y is as large
    as ``high`` allows.
    """
    pieces: list[str] = []
    start = low
    while start <= high:
        text = str(start)
        k = 0
        while (
            k + 1 < len(text) and start % 10 ** (k + 1) == 0 and start + 10 ** (k + 1) - 1 <= high
        ):
            k += 1
        block = 10**k
        base = start - start % (block * 10)  # PREFIX followed by zeros
        x = (start // block) % 10
        y = min(9, (high + 1 - base) // block - 1)
        prefix = text[: len(text) - k - 1]
        digit = str(x) if x == y else f"[{x}-{y}]"
        parts = [f'"{prefix}"'] if prefix else []
        parts.append(f'"{digit}"' if x == y else digit)
        parts += ["[0-9]"] * k
        pieces.append(" ".join(parts))
        start = base + (y + 1) * block
    return pieces


def _converter() -> Any:
    from llama_cpp import llama_grammar

    base: Any = llama_grammar.SchemaConverter  # untyped in llama-cpp-python

    class _Converter(base):  # type: ignore[misc, valid-type]
        def visit(self, schema: Any, name: str) -> Any:
            if isinstance(schema, Mapping) and not any(k in schema for k in _CONSTRAINING):
                # {} or {"description": ...}: any JSON value (the converter asserts, or
                # allows objects only).
                value = self._add_primitive("value", llama_grammar.PRIMITIVE_RULES["value"])
                return value if name else self._add_rule("root", value)
            if isinstance(schema, Mapping) and schema.get("items") == {}:
                # "items": {} means any items; the converter chokes on the empty dict.
                schema = {k: v for k, v in schema.items() if k != "items"}
            if isinstance(schema, Mapping) and schema.get("type") == "integer":
                bounds = _integer_bounds(schema)
                if bounds is not None and "enum" not in schema and "const" not in schema:
                    reserved = llama_grammar.RESERVED_NAMES
                    rule_name = name + "-" if name in reserved else name or "root"
                    return self._add_rule(rule_name, integer_rule(*bounds) + " space")
            return super().visit(schema, name)

    return _Converter(prop_order={}, allow_fetch=False, dotall=False, raw_pattern=False)


def _integer_bounds(schema: Mapping[str, Any]) -> tuple[int | None, int | None] | None:
    import math

    low: int | None = None
    high: int | None = None
    if isinstance(schema.get("minimum"), int | float):
        low = math.ceil(schema["minimum"])
    if isinstance(schema.get("exclusiveMinimum"), int | float):
        value = math.floor(schema["exclusiveMinimum"]) + 1
        low = value if low is None else max(low, value)
    if isinstance(schema.get("maximum"), int | float):
        high = math.floor(schema["maximum"])
    if isinstance(schema.get("exclusiveMaximum"), int | float):
        value = math.ceil(schema["exclusiveMaximum"]) - 1
        high = value if high is None else min(high, value)
    if low is None and high is None:
        return None
    return low, high
