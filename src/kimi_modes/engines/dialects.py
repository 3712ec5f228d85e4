"""How each kind of upstream takes the thinking switch and its companions (kimi-protocol.md
§6, §8, §9), as data.

A dialect says where in the request body the switch goes and which value means on and off,
and where K3's ``thinking_effort`` and K2.6's ``preserve_thinking`` go when the upstream takes
them. Whether they are sent is the family's fact (:class:`~kimi_modes.protocol.FamilyInfo`):
an effort for the families that have efforts, ``preserve_thinking`` for the family where it is
a per-request switch. Engines merge :meth:`Dialect.body_fragment` into the request body;
nothing else in the code branches on the upstream's kind.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from kimi_modes.protocol import family_info


@dataclass(frozen=True, slots=True)
class Dialect:
    """``path`` is a dotted location in the request body (``chat_template_kwargs.thinking``);
    ``on``/``off`` are the values written there. ``path=None``: the upstream has no switch.

    ``effort_path``: where ``thinking_effort`` goes (``None``: the upstream takes none).
    ``preserve_path``: where ``preserve_thinking`` goes, with ``preserve_on``/``preserve_off``
    the values written (``None`` as a value: nothing is written).

    ``n``: the upstream gives several choices in one request (else the engine asks ``n``
    times); ``logprobs``: it gives ``choices[].logprobs.content`` when asked (``logprobs``,
    ``top_logprobs``; else a request for them is refused); ``least_top_logprobs``: the
    fewest alternatives to ask for (llama-server sends no logprobs at all for
    ``top_logprobs: 0``; the engine cuts what comes back to what the client asked).
    """

    name: str
    path: str | None
    on: Any = True
    off: Any = False
    note: str = ""
    effort_path: str | None = None
    preserve_path: str | None = None
    preserve_on: Any = True
    preserve_off: Any = False
    n: bool = False
    logprobs: bool = False
    least_top_logprobs: int = 0

    def efforts(self, family: str) -> tuple[str, ...]:
        """The ``thinking_effort`` values this upstream takes for ``family`` (none when the
        dialect has no place for one)."""
        return family_info(family).thinking_efforts if self.effort_path is not None else ()

    def body_fragment(
        self,
        thinking: bool,
        family: str,
        *,
        thinking_effort: str | None = None,
        preserve_thinking: bool | None = None,
    ) -> dict[str, Any]:
        """The part of the body that carries the switch for an upstream serving ``family``,
        e.g. ``{"chat_template_kwargs": {"thinking": True, "thinking_effort": "max"}}``.

        With thinking on, a family with efforts gets ``thinking_effort`` (the family's default
        when ``None``) and K2.6 gets ``preserve_thinking`` (off when ``None``); nothing of
        either with thinking off or for the other families. Raises ``ValueError`` (a
        :class:`~kimi_modes.protocol.PromptError` for an effort the family rejects) when an
        effort or ``preserve_thinking=True`` is asked of a family or an upstream that cannot
        take it, rather than dropping it.
        """
        info = family_info(family)
        fragment: dict[str, Any] = {}
        if self.path is not None:
            merge_into(fragment, _at(self.path, self.on if thinking else self.off))
        effort = info.thinking_effort(thinking, thinking_effort)  # validates
        if effort is not None:
            if self.effort_path is not None:
                merge_into(fragment, _at(self.effort_path, effort))
            elif thinking_effort is not None:
                raise ValueError(f"the {self.name!r} dialect cannot send thinking_effort")
        if info.preserve_thinking == "switchable" and info.thinks(thinking):
            preserve = info.preserves_thinking(thinking, preserve_thinking)
            if self.preserve_path is not None:
                value = self.preserve_on if preserve else self.preserve_off
                if value is not None:
                    merge_into(fragment, _at(self.preserve_path, value))
            elif preserve:
                raise ValueError(f"the {self.name!r} dialect cannot send preserve_thinking")
        return fragment


def _at(path: str, value: Any) -> dict[str, Any]:
    """``{"a": {"b": value}}`` for ``"a.b"``; ``value`` copied (callers merge into it)."""
    value = copy.deepcopy(value)
    for key in reversed(path.split(".")):
        value = {key: value}
    result: dict[str, Any] = value
    return result


_TEMPLATE_KWARGS = "chat_template_kwargs."


def _template_kwargs(name: str, note: str, *, n: bool = False, logprobs: bool = False,
                     least_top_logprobs: int = 0) -> Dialect:
    """An upstream that hands ``chat_template_kwargs`` to the template (or K3's encoder)."""
    return Dialect(
        name,
        _TEMPLATE_KWARGS + "thinking",
        note=note,
        effort_path=_TEMPLATE_KWARGS + "thinking_effort",
        preserve_path=_TEMPLATE_KWARGS + "preserve_thinking",
        n=n,
        logprobs=logprobs,
        least_top_logprobs=least_top_logprobs,
    )


DIALECTS: dict[str, Dialect] = {
    d.name: d
    for d in (
        _template_kwargs("vllm", "vLLM >= 0.15 with the kimi_k2 (K3: kimi_k3) parsers",
                         n=True, logprobs=True),
        _template_kwargs("sglang", "SGLang and KTransformers", n=True, logprobs=True),
        # llama-server answers 400 to n != 1 ("Only one completion choice is allowed").
        _template_kwargs("llama-server", "llama.cpp llama-server --jinja", logprobs=True,
                         least_top_logprobs=1),
        _template_kwargs("trtllm", "TensorRT-LLM trtllm-serve"),
        Dialect("lmdeploy", "enable_thinking", note="LMDeploy (not verified for Kimi)"),
        Dialect("exo", "enable_thinking"),
        Dialect(
            "moonshot",
            "thinking",
            on={"type": "enabled"},
            off={"type": "disabled"},
            note="Moonshot's API",
            # K2.6's preserve_thinking, spelled the hosted API's way (kimi-protocol.md §8).
            preserve_path="thinking.keep",
            preserve_on="all",
            preserve_off=None,
        ),
        Dialect("none", None, note="the upstream has no thinking switch"),
    )
}


def merge_into(body: dict[str, Any], fragment: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge ``fragment`` into ``body`` in place (dicts merge, other values replace)."""
    for key, value in fragment.items():
        current = body.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merge_into(current, value)
        else:
            body[key] = value
    return body
