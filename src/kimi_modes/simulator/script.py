"""Scripted replies: an ordered list of rules read from a JSON file; the first match wins.

Format (every key optional except ``rules``; see docs/simulated.md for the full reference)::

    {"rules": [
      {"name": "weather",
       "match": {"user": "(?i)weather in (?P<city>\\\\w+)", "tools": true, "after_tool": false},
       "reply": {"reasoning": "I need the weather for ${city}.",
                 "tool_calls": [{"name": "get_weather", "arguments": {"city": "${city}"}}]},
       "ttft": 0.5, "tpot": 0.01, "fault": "503", "times": 1}
    ]}

``match`` conditions (all must hold): ``user``, ``system``, ``tool_result`` (regular
expressions searched in the last user message, the system text, the last tool result),
``tools`` (whether tools are declared), ``tool`` (this function is declared), ``after_tool``
(the last message is a tool result), ``thinking``, ``turn`` and ``step`` (an integer or a list
of integers: see :class:`~kimi_modes.simulator.conversation.Conversation`),
``endpoint`` (``chat`` or ``completions``). In reply strings and argument values, ``$1`` …
``$9`` and ``${name}`` are the regex groups, ``$user`` is the last user message, ``$$`` a
dollar. ``times`` limits how often a rule may match (until ``/sim/control`` resets it).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kimi_modes.simulator.conversation import Conversation
from kimi_modes.simulator.faults import parse_fault
from kimi_modes.simulator.replies import Reply, ToolCall


class ScriptError(ValueError):
    """The script file cannot be used; the message names the rule and the field."""


_PATTERN_KEYS = ("user", "system", "tool_result")
_BOOL_KEYS = ("tools", "after_tool", "thinking")
_INT_KEYS = ("turn", "step")
_MATCH_KEYS = {*_PATTERN_KEYS, *_BOOL_KEYS, *_INT_KEYS, "tool", "endpoint"}
_RULE_KEYS = {"name", "match", "reply", "ttft", "tpot", "fault", "times"}
_REPLY_KEYS = {"reasoning", "content", "tool_calls", "raw"}
_VARIABLE_RE = re.compile(r"\$(\$|\d|\{\w+\}|user\b)")


@dataclass(slots=True)
class Rule:
    name: str
    match: dict[str, Any]
    reply: dict[str, Any]
    ttft: float | None = None
    tpot: float | None = None
    fault: str | None = None
    times: int | None = None
    used: int = 0

    def groups(self, conv: Conversation, endpoint: str) -> dict[str, str] | None:
        """The variables of a match (``None``: no match). Does not count the use."""
        if self.times is not None and self.used >= self.times:
            return None
        m = self.match
        results = conv.tool_results
        checks = {
            "tools": bool(conv.tools), "after_tool": bool(results), "thinking": conv.thinking,
        }
        if any(key in m and m[key] != value for key, value in checks.items()):
            return None
        if "tool" in m and m["tool"] not in {t.name for t in conv.tools}:
            return None
        if "endpoint" in m and m["endpoint"] != endpoint:
            return None
        for key, value in (("turn", conv.turn), ("step", conv.step)):
            if key in m and value not in m[key]:
                return None
        texts = {"user": conv.last_user_text, "system": conv.system_text,
                 "tool_result": results[-1].text if results else ""}
        variables = {"user": conv.last_user_text}
        for key in reversed(_PATTERN_KEYS):  # the user pattern's groups win
            if key in m:
                found = m[key].search(texts[key])
                if found is None:
                    return None
                variables.update({str(i): g or "" for i, g in enumerate(found.groups(), 1)})
                variables.update({k: v or "" for k, v in found.groupdict().items()})
        return variables

    def build(self, variables: dict[str, str]) -> Reply:
        r = self.reply
        calls = [
            ToolCall(_expand(c["name"], variables), _arguments(c.get("arguments", {}), variables),
                     _expand(c["id"], variables) if "id" in c else None)
            for c in r.get("tool_calls", ())
        ]
        return Reply(
            reasoning=_expand(r.get("reasoning", ""), variables),
            content=_expand(r.get("content", ""), variables),
            tool_calls=calls,
            raw=_expand(r["raw"], variables) if "raw" in r else None,
            ttft=self.ttft, tpot=self.tpot, fault=self.fault, rule=self.name,
        )


@dataclass(slots=True)
class Script:
    """Rules in order. :meth:`reply_for` counts the use of the rule it picks."""

    rules: list[Rule] = field(default_factory=list)

    def reply_for(self, conv: Conversation, endpoint: str) -> Reply | None:
        for rule in self.rules:
            variables = rule.groups(conv, endpoint)
            if variables is not None:
                rule.used += 1
                return rule.build(variables)
        return None

    def reset(self) -> None:
        for rule in self.rules:
            rule.used = 0

    @classmethod
    def from_dict(cls, data: Any) -> Script:
        if not isinstance(data, dict) or not isinstance(data.get("rules"), list):
            raise ScriptError('a script is an object with a "rules" list')
        return cls([_rule(raw, i) for i, raw in enumerate(data["rules"])])


def load_script(path: str | Path) -> Script:
    """Read and check a script file; :class:`ScriptError` says what is wrong and where."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScriptError(f"cannot read script {str(path)!r}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise ScriptError(f"script {str(path)!r} is not valid JSON: {exc}") from None
    return Script.from_dict(data)


def _rule(raw: Any, index: int) -> Rule:
    where = f"rule {index}"
    if not isinstance(raw, dict):
        raise ScriptError(f"{where} must be an object")
    where = f"rule {index} ({raw['name']!r})" if isinstance(raw.get("name"), str) else where
    _no_unknown(raw, _RULE_KEYS, where)
    if "name" in raw:
        _str(raw["name"], f"{where} name")
    match = raw.get("match", {})
    reply = raw.get("reply", {})
    if not isinstance(match, dict) or not isinstance(reply, dict):
        raise ScriptError(f"{where}: match and reply must be objects")
    _no_unknown(match, _MATCH_KEYS, f"{where} match")
    _no_unknown(reply, _REPLY_KEYS, f"{where} reply")
    checked: dict[str, Any] = {}
    for key, value in match.items():
        if key in _PATTERN_KEYS:
            try:
                checked[key] = re.compile(_str(value, f"{where} match.{key}"))
            except re.error as exc:
                raise ScriptError(f"{where} match.{key}: bad regex: {exc}") from None
        elif key in _BOOL_KEYS and not isinstance(value, bool):
            raise ScriptError(f"{where} match.{key} must be true or false")
        elif key in _INT_KEYS:
            values = value if isinstance(value, list) else [value]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ScriptError(f"{where} match.{key} must be an integer or a list of them")
            checked[key] = frozenset(values)
        elif key == "endpoint" and value not in ("chat", "completions"):
            raise ScriptError(f'{where} match.endpoint must be "chat" or "completions"')
        else:
            checked[key] = _str(value, f"{where} match.{key}") if key == "tool" else value
    for key in ("reasoning", "content", "raw"):
        if key in reply:
            _str(reply[key], f"{where} reply.{key}")
    calls = reply.get("tool_calls", [])
    call_keys = {"name", "arguments", "id"}
    if not isinstance(calls, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) and set(c) <= call_keys
        for c in calls
    ):
        raise ScriptError(f"{where} reply.tool_calls: a list of {{name, arguments, id}} objects")
    if raw.get("fault") is not None:
        try:
            parse_fault(_str(raw["fault"], f"{where} fault"))
        except ValueError as exc:
            raise ScriptError(f"{where}: {exc}") from None
    for key in ("ttft", "tpot", "times"):
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                  or value < 0):
            raise ScriptError(f"{where} {key} must be a number >= 0")
    return Rule(
        name=raw.get("name") or f"rule {index}", match=checked, reply=reply,
        ttft=raw.get("ttft"), tpot=raw.get("tpot"), fault=raw.get("fault"),
        times=int(raw["times"]) if raw.get("times") is not None else None,
    )


def _no_unknown(data: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ScriptError(f"{where}: unknown key(s) {', '.join(unknown)}")


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ScriptError(f"{where} must be a string")
    return value


def _expand(template: str, variables: dict[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        key = match.group(1)
        return "$" if key == "$" else variables.get(key.strip("{}"), "")

    return _VARIABLE_RE.sub(one, template) if "$" in template else template


def _arguments(value: Any, variables: dict[str, str]) -> str:
    """A string is written as it is (it may be deliberately invalid JSON); anything else is
    dumped as JSON after expanding the variables in its string values."""
    if isinstance(value, str):
        return _expand(value, variables)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return _expand(item, variables)
        if isinstance(item, dict):
            return {k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return json.dumps(walk(value), ensure_ascii=False)
