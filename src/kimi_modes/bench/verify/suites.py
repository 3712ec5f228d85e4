"""The pre-flight suites of Moonshot's Kimi-Vendor-Verifier (KVV), spelled our way, for any
OpenAI-compatible endpoint over HTTP (``kimi-modes verify tools --suite ...``).

Suites (each a list of :class:`Check`; a suite passes when every check passes, since KVV
publishes no numeric bar for them: "run formal benchmarks only after all tests pass"):

- ``params`` (KVV ``tests/params``): a request without sampling parameters, and with each fixed
  parameter at Kimi's default, is accepted; a wrong value (temperature 1.1/2.0/-0.1, top_p
  0.8, presence/frequency penalty 0.5, n 2) is refused with HTTP 400, thinking off and on.
- ``schema`` (KVV ``tests/tool_call_json_schema``): each schema (one per line: a KVV checkout's
  ``walle_validator_cases/validator_cases/*/valid.jsonl`` under ``--data``, else our bundled
  sample) is a tool's ``parameters``; the call is forced, sent non-streamed and streamed (the
  deltas reassembled), and the arguments are validated with ``jsonschema``.
- ``k3`` (KVV ``tests/k3_features``, K3 only): ``tool_choice`` ``required`` forces a call,
  ``none`` forbids one, ``required`` with no ``tools`` or with ``tools: []`` and a value that
  is not auto/none/required are refused with 400; ``response_format`` ``text``,
  ``json_object`` and a strict ``json_schema`` are honoured.
- ``prompt-tokens`` (KVV ``tests/prompt_tokens``): each case of a JSONL file (``{"id",
  "request", "expected_prompt_tokens"}``; ``prompt_token_cases/cases.jsonl`` under
  ``--data``) is sent streamed with ``stream_options.include_usage``; ``usage.prompt_tokens``
  must lie in ``[expected, expected + 3]``. KVV's constants come from Kimi's tokenizer.

Not implemented: KVV's image prompt-token cases (they need Pillow to resize the fixtures),
its dynamic-tools and thinking-effort K3 tests, and its prompt-driven ``tool_choice: auto``
tests (marked flaky there).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import jsonschema

from kimi_modes.bench._http import client_session, exception_text, first_model
from kimi_modes.bench.verify.client import Endpoint
from kimi_modes.protocol.families import Family

SUITES = ("params", "schema", "k3", "prompt-tokens")
#: KVV's tolerance on ``usage.prompt_tokens``: the expected count up to three above it.
MAX_PROMPT_TOKEN_OVERCOUNT = 3
TOOL_NAME = "submit_arguments"
_BAR = "every check passes (KVV publishes no numeric threshold for this suite)"


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """A fixed sampling parameter: the values Kimi accepts thinking on/off, and a wrong one."""

    name: str
    think_default: Any
    non_think_default: Any
    wrong_value: Any


#: KVV's ``IMMUTABLE_PARAMS`` table.
IMMUTABLE_PARAMS = (
    ParamSpec("temperature", 0.6, 0.6, 1.1),
    ParamSpec("temperature", 0.0, 0.6, 2.0),
    ParamSpec("temperature", 1.0, 0.6, -0.1),
    ParamSpec("top_p", 0.95, 0.95, 0.8),
    ParamSpec("presence_penalty", 0, 0, 0.5),
    ParamSpec("frequency_penalty", 0, 0, 0.5),
    ParamSpec("n", 1, 1, 2),
)

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}}
WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"},
                                                   "temperature": {"type": "number"}},
                  "required": ["city", "temperature"], "additionalProperties": False}


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

    def describe(self) -> str:
        if self.error is not None:
            return self.error
        return f"HTTP {self.status}"


def thinking_body(thinking: bool, think_mode: str) -> dict[str, Any]:
    """The request fields that switch thinking, as KVV's ``--think-mode`` spells them:
    ``kimi`` (Moonshot's API), ``opensource`` (vLLM/SGLang chat-template kwargs), ``none``."""
    if think_mode == "none":
        return {}
    if think_mode == "opensource":
        return {"chat_template_kwargs": {"thinking": thinking}}
    return {"thinking": {"type": "enabled" if thinking else "disabled"}}


def suite_bar(suite: str, family: Family) -> str:
    """What ``suite`` must reach for ``family`` (or why it does not apply)."""
    if suite == "k3" and family is not Family.K3:
        return "not applicable: KVV's k3_features apply to K3 only"
    if suite == "prompt-tokens":
        return (f"every case within [expected, expected+{MAX_PROMPT_TOKEN_OVERCOUNT}] "
                "(KVV's tolerance; no per-model threshold published)")
    return _BAR


def load_schemas(data: Path | None) -> list[tuple[str, Any]]:
    """(case id, schema) of every ``valid.jsonl`` line under ``data`` (a KVV ``testdata``
    folder or its ``validator_cases``), else of the bundled sample."""
    if data is None:
        text = resources.files("kimi_modes.bench").joinpath("data", "kvv_schemas.jsonl")
        return [(f"sample:{n}", json.loads(line))
                for n, line in enumerate(text.read_text().splitlines(), 1) if line.strip()]
    cases: list[tuple[str, Any]] = []
    for path in sorted(data.rglob("valid.jsonl")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                cases.append((f"{path.parent.name}:{n}", json.loads(line)))
    return cases


def load_prompt_token_cases(data: Path | None) -> list[dict[str, Any]]:
    """The cases of ``data`` (a JSONL file, or a folder holding
    ``prompt_token_cases/cases.jsonl`` or ``cases.jsonl``); none without ``data``."""
    if data is None:
        return []
    path = data
    if data.is_dir():
        nested = data / "prompt_token_cases" / "cases.jsonl"
        path = nested if nested.is_file() else data / "cases.jsonl"
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    if lines and lines[0].startswith("version https://git-lfs"):
        raise ValueError(f"{path} is a Git LFS pointer: run `git lfs pull` in the checkout")
    return [json.loads(line) for line in lines if line.strip()]


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
    """A streamed answer as one non-streamed body: content, tool calls (arguments joined by
    index), finish reason and the last usage seen."""
    content: list[str] = []
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
            finish = choice.get("finish_reason") or finish
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                content.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                slot = calls.setdefault(int(call.get("index", 0)),
                                        {"type": "function", "function": {"name": "",
                                                                          "arguments": ""}})
                fn = call.get("function") or {}
                slot["function"]["name"] += fn.get("name") or ""
                slot["function"]["arguments"] += fn.get("arguments") or ""
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content) or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return {"choices": [{"message": message, "finish_reason": finish}], "usage": usage}


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _accepted(answer: Answer) -> bool:
    return answer.status == 200 and bool((answer.body or {}).get("choices"))


async def params_suite(p: Prober, think_mode: str) -> list[Check]:
    """KVV ``tests/params``: defaults accepted, wrong values refused, thinking off and on."""
    checks: list[Check] = []
    for thinking in (False, True):
        mode = "thinking" if thinking else "non-thinking"
        base = {"messages": _user("Say 'OK' and nothing else."),
                **thinking_body(thinking, think_mode)}
        answer = await p.post(base)
        checks.append(Check("params", f"no params [{mode}]", _accepted(answer),
                            answer.describe()))
        for spec in IMMUTABLE_PARAMS:
            default = spec.think_default if thinking else spec.non_think_default
            answer = await p.post({**base, spec.name: default})
            checks.append(Check("params", f"{spec.name}={default} accepted [{mode}]",
                                _accepted(answer), answer.describe()))
            if spec.wrong_value == default:
                continue
            answer = await p.post({**base, spec.name: spec.wrong_value})
            checks.append(Check("params", f"{spec.name}={spec.wrong_value} refused [{mode}]",
                                answer.status == 400, answer.describe()))
    return checks


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


async def schema_suite(p: Prober, schemas: Sequence[tuple[str, Any]],
                       max_tokens: int) -> list[Check]:
    """KVV ``tests/tool_call_json_schema``: a forced call per schema, non-streamed and
    streamed, its arguments validated."""
    checks: list[Check] = []
    for case_id, schema in schemas:
        body = {
            "messages": _user(f"Call the {TOOL_NAME} tool exactly once with minimal arguments "
                              "that satisfy its parameter schema. Do not answer with text."),
            "tools": [{"type": "function", "function": {
                "name": TOOL_NAME, "description": "Submit minimal JSON arguments that "
                "validate against this JSON Schema.", "parameters": schema}}],
            "tool_choice": {"type": "function", "function": {"name": TOOL_NAME}},
            "max_tokens": max_tokens,
        }
        for stream in (False, True):
            mode = "stream" if stream else "non-stream"
            answer = await p.post(body, stream=stream)
            if not _accepted(answer):
                checks.append(Check("schema", f"{case_id} [{mode}]", False,
                                    "schema refused: " + answer.describe()))
                continue
            calls = answer.message.get("tool_calls") or [{}]
            fn = calls[0].get("function") or {}
            problem = validate_arguments(schema, fn.get("arguments"))
            if problem is None and fn.get("name") != TOOL_NAME:
                problem = f"called {fn.get('name')!r}, not {TOOL_NAME!r}"
            checks.append(Check("schema", f"{case_id} [{mode}]", problem is None,
                                problem or "arguments valid"))
    return checks


async def k3_suite(p: Prober) -> list[Check]:
    """KVV ``tests/k3_features``: ``tool_choice`` and ``response_format``."""
    checks: list[Check] = []

    def add(name: str, passed: bool, detail: str) -> None:
        checks.append(Check("k3", name, passed, detail))

    ask = _user("What is the weather in Beijing? Please look it up.")
    answer = await p.post({"messages": ask, "tools": [WEATHER_TOOL],
                           "tool_choice": "required"})
    add("tool_choice=required forces a call",
        _accepted(answer) and bool(answer.message.get("tool_calls"))
        and answer.finish_reason == "tool_calls",
        f"{answer.describe()}, finish_reason {answer.finish_reason!r}")
    answer = await p.post({"messages": ask, "tools": [WEATHER_TOOL], "tool_choice": "none"})
    add("tool_choice=none forbids a call",
        _accepted(answer) and not answer.message.get("tool_calls")
        and answer.finish_reason == "stop",
        f"{answer.describe()}, finish_reason {answer.finish_reason!r}")
    for name, extra in (("required without tools refused", {"tool_choice": "required"}),
                        ("required with tools=[] refused",
                         {"tools": [], "tool_choice": "required"}),
                        ("tool_choice='bogus' refused",
                         {"tools": [WEATHER_TOOL], "tool_choice": "bogus"})):
        answer = await p.post({"messages": ask, **extra})
        add(name, answer.status == 400, answer.describe())
    for choice in ("none", "auto"):
        answer = await p.post({"messages": _user("Hello."), "tool_choice": choice})
        add(f"tool_choice={choice} without tools accepted",
            _accepted(answer) and not answer.message.get("tool_calls")
            and bool(answer.message.get("content")), answer.describe())

    answer = await p.post({"messages": _user("Describe Beijing in one sentence."),
                           "response_format": {"type": "text"}})
    add("response_format text", _accepted(answer) and bool(answer.message.get("content")),
        answer.describe())
    answer = await p.post({"messages": _user("Return the weather of Beijing as JSON. The "
                                             "response must contain a key named 'city'."),
                           "response_format": {"type": "json_object"}})
    parsed = _json(answer.message.get("content"))
    add("response_format json_object", isinstance(parsed, dict) and "city" in parsed,
        f"{answer.describe()}, content {str(answer.message.get('content'))[:80]!r}")
    answer = await p.post({
        "messages": _user("Return the weather of Beijing as JSON following the schema."),
        "response_format": {"type": "json_schema", "json_schema": {
            "name": "weather", "strict": True, "schema": WEATHER_SCHEMA}}})
    content = answer.message.get("content")
    problem = validate_arguments(WEATHER_SCHEMA, content) if _accepted(answer) else (
        answer.describe())
    add("response_format json_schema strict", problem is None,
        problem or "content matches the schema")
    return checks


def _json(text: Any) -> Any:
    try:
        return json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return None


async def prompt_tokens_suite(p: Prober, cases: Sequence[Mapping[str, Any]]) -> list[Check]:
    """KVV ``tests/prompt_tokens``: streamed ``usage.prompt_tokens`` within the tolerance."""
    checks: list[Check] = []
    for case in cases:
        request = {k: v for k, v in dict(case["request"]).items()
                   if k not in ("stream", "model")}
        expected = int(case["expected_prompt_tokens"])
        answer = await p.post(request, stream=True)
        usage = (answer.body or {}).get("usage") if answer.status == 200 else None
        actual = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if not isinstance(actual, int):
            checks.append(Check("prompt-tokens", str(case["id"]), False,
                                f"{answer.describe()}, no usage.prompt_tokens in the stream"))
            continue
        ok = expected <= actual <= expected + MAX_PROMPT_TOKEN_OVERCOUNT
        checks.append(Check("prompt-tokens", str(case["id"]), ok,
                            f"got {actual}, expected [{expected}, "
                            f"{expected + MAX_PROMPT_TOKEN_OVERCOUNT}]"))
    return checks


@dataclass(frozen=True, slots=True)
class SuiteOptions:
    """What the suites need beyond the endpoint."""

    family: Family
    data: Path | None = None
    think_mode: str = "opensource"
    max_tokens: int = 2048
    timeout: float = 120.0


async def run_suites(endpoint: Endpoint, suites: Sequence[str],
                     options: SuiteOptions) -> dict[str, Any]:
    """Run ``suites`` (names of :data:`SUITES`) and return the summary: per suite its checks,
    counts, bar and verdict (``passed`` ``None`` when the suite does not apply or has no
    cases), and ``passed`` overall."""
    async with client_session() as session:
        model = endpoint.model or await first_model(session, endpoint.root, endpoint.headers)
        p = Prober(session, Endpoint(endpoint.base_url, model, endpoint.api_key),
                   options.timeout)
        result: dict[str, Any] = {"model": model, "model_family": options.family.value,
                                  "suites": {}}
        for suite in suites:
            bar = suite_bar(suite, options.family)
            checks: list[Check] = []
            note = None
            if suite == "params":
                checks = await params_suite(p, options.think_mode)
            elif suite == "schema":
                checks = await schema_suite(p, load_schemas(_sub(options.data)),
                                            options.max_tokens)
            elif suite == "k3" and options.family is Family.K3:
                checks = await k3_suite(p)
            elif suite == "prompt-tokens":
                cases = load_prompt_token_cases(options.data)
                checks = await prompt_tokens_suite(p, cases)
                if not cases:
                    note = "no cases: give --data with KVV's prompt_token_cases"
            passed = sum(c.passed for c in checks)
            result["suites"][suite] = {
                "bar": bar, "note": note, "total": len(checks), "passed_checks": passed,
                "passed": (passed == len(checks)) if checks else None,
                "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail}
                           for c in checks]}
    result["passed"] = all(s["passed"] is not False for s in result["suites"].values())
    return result


def _sub(data: Path | None) -> Path | None:
    if data is None:
        return None
    nested = data / "walle_validator_cases"
    return nested if nested.is_dir() else data


def run(endpoint: Endpoint, suites: Sequence[str], options: SuiteOptions) -> dict[str, Any]:
    """:func:`run_suites` from synchronous code."""
    return asyncio.run(run_suites(endpoint, suites, options))


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """The human summary: one block per suite, failed checks listed, the verdict."""
    lines = [f"Kimi-Vendor-Verifier suites: {result['model']} "
             f"(family {result['model_family']})"]
    for name, s in result["suites"].items():
        verdict = {True: "PASS", False: "FAIL", None: "SKIP"}[s["passed"]]
        lines.append(f"[{name}] {s['passed_checks']}/{s['total']} checks passed  {verdict}")
        lines.append(f"  bar: {s['bar']}")
        if s["note"]:
            lines.append(f"  note: {s['note']}")
        lines += [f"  failed: {c['name']}: {c['detail']}" for c in s["checks"]
                  if not c["passed"]]
    lines.append("Verdict: " + ("PASS" if result["passed"] else "FAIL"))
    return lines
