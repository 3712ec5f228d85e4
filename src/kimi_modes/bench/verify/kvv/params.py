"""KVV ``tests/params``: the fixed sampling parameters. A request without them and one with
each at Kimi's value is accepted; a wrong value is refused with HTTP 400.

Two tables, as KVV has two: ``tests/params`` (written with K3, 2026-07: temperature 0, 0.6
and 1.0 accepted with thinking on, outside [0, 1] refused) and ``verify_params.py`` (K2.5:
temperature only 1.0 thinking / 0.6 instant). K2.5, K2.6 and K2.7-Code take the second (their
temperature is pinned, :class:`~kimi_modes.protocol.families.OfficialSampling`), K3 the
first; K2-Instruct and K2-Thinking have none (Moonshot fixes none of their sampling fields).
A family that always thinks is checked with thinking on only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kimi_modes.bench.verify.kvv.probe import Check, Prober, thinking_body, user
from kimi_modes.protocol.families import Family, family_info


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """A fixed sampling parameter: the values Kimi accepts thinking on/off, and a wrong one."""

    name: str
    think_default: Any
    non_think_default: Any
    wrong_value: Any


#: KVV ``tests/params`` ``IMMUTABLE_PARAMS``.
K3_PARAMS = (
    ParamSpec("temperature", 0.6, 0.6, 1.1),
    ParamSpec("temperature", 0.0, 0.6, 2.0),
    ParamSpec("temperature", 1.0, 0.6, -0.1),
    ParamSpec("top_p", 0.95, 0.95, 0.8),
    ParamSpec("presence_penalty", 0, 0, 0.5),
    ParamSpec("frequency_penalty", 0, 0, 0.5),
    ParamSpec("n", 1, 1, 2),
)
#: KVV ``verify_params.py`` ``IMMUTABLE_PARAMS`` (K2.5).
K2_5_PARAMS = (
    ParamSpec("temperature", 1.0, 0.6, 0.5),
    ParamSpec("top_p", 0.95, 0.95, 0.8),
    ParamSpec("presence_penalty", 0, 0, 0.5),
    ParamSpec("frequency_penalty", 0, 0, 0.5),
    ParamSpec("n", 1, 1, 2),
)


def params_table(family: Family) -> tuple[ParamSpec, ...] | None:
    """KVV's table for ``family`` (``None``: Moonshot fixes none of its parameters)."""
    if family is Family.K3:
        return K3_PARAMS
    return K2_5_PARAMS if family_info(family).official_sampling.temperature_pinned else None


async def params_suite(p: Prober, family: Family, think_mode: str) -> list[Check]:
    """Defaults accepted, wrong values refused, thinking off and on (on only for a family
    that always thinks)."""
    table = params_table(family) or ()
    info = family_info(family)
    modes = (False, True) if info.thinking == "switchable" else (info.thinks(),)
    checks: list[Check] = []
    for thinking in modes:
        mode = "thinking" if thinking else "non-thinking"
        base = {"messages": user("Say 'OK' and nothing else."),
                **thinking_body(thinking, think_mode)}
        answer = await p.post(base)
        checks.append(Check("params", f"no params [{mode}]", answer.accepted,
                            answer.describe()))
        for spec in table:
            default = spec.think_default if thinking else spec.non_think_default
            answer = await p.post({**base, spec.name: default})
            checks.append(Check("params", f"{spec.name}={default} accepted [{mode}]",
                                answer.accepted, answer.describe()))
            if spec.wrong_value == default:
                continue
            answer = await p.post({**base, spec.name: spec.wrong_value})
            checks.append(Check("params", f"{spec.name}={spec.wrong_value} refused [{mode}]",
                                answer.status == 400, answer.describe()))
    return checks
