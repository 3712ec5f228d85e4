"""KVV ``tests/k3_features/test_thinking_effort.py``: K3's ``thinking_effort`` (``low``,
``high``, ``max``; ``max`` by default) and ``reasoning_effort``, which applies only when no
explicit effort is given. The effort in force is read two ways, as KVV does: by the length of
the reasoning (higher effort reasons more) and by asking the model, which reads it from its
system prompt ("what is your thinking_effort?").

``--think-mode`` spells the effort: ``kimi`` as ``thinking: {"type": "enabled", "keep":
"all", "effort": ...}``, ``opensource`` as ``chat_template_kwargs: {"thinking": true,
"thinking_effort": ...}``; with ``none`` there is no field for it, so the checks that need an
explicit effort are left out. The two checks KVV reruns (reasoning length is noisy) get up to
:data:`ATTEMPTS` tries.
"""

from __future__ import annotations

from typing import Any

from kimi_modes.bench.verify.kvv.probe import Answer, Check, Prober, user

ATTEMPTS = 3
PUZZLE = user("鸡兔同笼，共有 35 个头，94 条腿。问鸡和兔各有多少只？请逐步推理。")
ASK_EFFORT = user("你当前的 thinking_effort 是什么？只输出 effort 的值，例如 low / high / max / "
                  "unknown，不要输出其他内容。")


def effort_fields(think_mode: str, effort: str | None = None,
                  reasoning_effort: str | None = None, *,
                  typed: bool = True) -> dict[str, Any] | None:
    """The request fields for thinking on with ``effort`` and ``reasoning_effort`` (either
    ``None``: left out; ``typed`` false: the switch itself left out, so the default applies).
    ``None`` when ``think_mode`` cannot say ``effort``."""
    fields: dict[str, Any] = {}
    if think_mode == "kimi":
        thinking: dict[str, Any] = {"type": "enabled", "keep": "all"} if typed else {
            "keep": "all"}
        if effort is not None:
            thinking["effort"] = effort
        fields["thinking"] = thinking
    elif think_mode == "opensource":
        kwargs: dict[str, Any] = {"thinking": True} if typed else {}
        if effort is not None:
            kwargs["thinking_effort"] = effort
        fields["chat_template_kwargs"] = kwargs
    elif effort is not None:
        return None
    if reasoning_effort is not None:
        fields["reasoning_effort"] = reasoning_effort
    return fields


async def effort_checks(p: Prober, think_mode: str, stream: bool,
                        max_tokens: int) -> list[Check]:
    """KVV's effort tests that it does not skip, ``stream`` or not."""
    mode = "stream" if stream else "nostream"
    checks: list[Check] = []

    async def ask(messages: list[dict[str, str]], tokens: int, effort: str | None = None,
                  reasoning_effort: str | None = None, typed: bool = True) -> Answer | None:
        fields = effort_fields(think_mode, effort, reasoning_effort, typed=typed)
        if fields is None:
            return None
        return await p.post({"messages": messages, "max_tokens": tokens, **fields},
                            stream=stream)

    async def length(effort: str | None = None, reasoning_effort: str | None = None) -> int:
        answer = await ask(PUZZLE, max_tokens, effort, reasoning_effort)
        return len(answer.reasoning) if answer is not None else 0

    async def report(effort: str | None = None, reasoning_effort: str | None = None) -> str:
        answer = await ask(ASK_EFFORT, 256, effort, reasoning_effort)
        return answer.content if answer is not None else ""

    def add(name: str, problem: str | None, seen: str) -> None:
        checks.append(Check("k3", f"effort: {name} [{mode}]", problem is None, problem or seen))

    def reasons(answer: Answer | None) -> str | None:
        if answer is None:
            return "not applicable"
        if not answer.accepted:
            return answer.describe()
        if not answer.reasoning or not answer.content:
            return (f"reasoning {len(answer.reasoning)} chars, content "
                    f"{len(answer.content)} chars: both expected")
        return None

    for name, answer in (
        ("enabled with effort high returns reasoning",
         await ask(PUZZLE, max_tokens, "high")),
        ("thinking type omitted is enabled", await ask(PUZZLE, max_tokens, typed=False)),
    ):
        if answer is not None:
            add(name, reasons(answer), answer.describe())
    answer = await ask(PUZZLE, max_tokens)
    problem = reasons(answer)
    said = await report()
    if problem is None and "max" not in said:
        problem = f"effort reported as {said[:40]!r}, not 'max'"
    add("effort omitted reasons at max", problem, f"reported {said[:40]!r}")

    if think_mode != "none":
        problem = "never tried"
        for _ in range(ATTEMPTS):
            ignored, max_only = await length("low", "max"), await length("max")
            said = await report("low", "max")
            problem = (None if ignored < max_only and "low" in said else
                       f"low+reasoning_effort=max reasons {ignored} chars, max {max_only}; "
                       f"reported {said[:40]!r}")
            if problem is None:
                break
        add("reasoning_effort ignored when effort is set", problem, "low wins")

    problem = "never tried"
    for _ in range(ATTEMPTS):
        low, high = await length(reasoning_effort="low"), await length(reasoning_effort="max")
        said = await report(reasoning_effort="max")
        problem = (None if high > low and "max" in said else
                   f"reasoning_effort max reasons {high} chars, low {low}; reported "
                   f"{said[:40]!r}")
        if problem is None:
            break
    add("reasoning_effort applies when no effort is set", problem, "max reasons more")

    if stream:
        answer = await ask(PUZZLE, max_tokens, "high")
        if answer is not None:
            problem = reasons(answer)
            if problem is None and answer.finish_reason != "stop":
                problem = f"finish_reason {answer.finish_reason!r}, not 'stop'"
            add("stream sends reasoning and content chunks", problem, answer.describe())
    return checks
