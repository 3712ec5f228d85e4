"""The Kimi model families and every fact that differs between them (kimi-protocol.md §1, §8, §9).

The family list and the per-family facts live here and only here: the rest of
:mod:`kimi_modes.protocol` takes the family as a plain string (``"k2.5"``, ``"k3"``...),
resolves it with :func:`family_info` and asks the resulting :class:`FamilyInfo`; it never
compares family names. An unknown name fails early with the list of known ones.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Literal

from kimi_modes.protocol import tokens as T
from kimi_modes.protocol.errors import PromptError

ThinkingSupport = Literal["none", "always", "switchable"]
#: ``"k2"``: the ``<|im_*|>`` template with ``<think>`` tags and the tool-call section
#: markers (K2 to K2.7-Code); ``"xtml"``: K3's ``<|open|>``/``<|close|>``/``<|sep|>`` elements.
WireFormat = Literal["k2", "xtml"]
#: Whether the reasoning of earlier turns stays in the prompt: never (only the current
#: turn's tool-calling steps keep theirs), per request (``preserve_thinking``), or always.
PreserveThinking = Literal["never", "switchable", "always"]
#: How the tools are declared: compact JSON in the client's key order, compact JSON with keys
#: sorted at every depth, or K2.5's TypeScript-style declaration.
ToolDeclaration = Literal["json", "json_sorted", "typescript"]


class Family(StrEnum):
    """A Kimi model family. A ``StrEnum``: members compare equal to their names."""

    K2_INSTRUCT = "k2-instruct"
    K2_THINKING = "k2-thinking"
    K2_5 = "k2.5"
    K2_6 = "k2.6"
    K2_7_CODE = "k2.7-code"
    K3 = "k3"


@dataclass(frozen=True, slots=True)
class Sampling:
    """Moonshot's recommended sampling; ``top_p`` is ``None`` where none is recommended."""

    temperature: float
    top_p: float | None = None


@dataclass(frozen=True, slots=True)
class OfficialSampling:
    """Which sampling values Moonshot's official API accepts for a family (any other is an
    HTTP 400 ``invalid_request_error``). ``temperature`` is always within [0, 1]; a pinned
    field accepts only the mode's recommended value (:meth:`FamilyInfo.default_sampling`;
    the penalties: only 0; ``n``: only 1).

    Sources: Moonshot's parameter table (platform.kimi.ai/docs/api/models-overview: kimi-k2.5
    pins all of them, the kimi-k2 and kimi-k2-thinking series pin none) and
    Kimi-Vendor-Verifier's ``tests/params`` for K3 (temperature 0, 0.6 and 1.0 accepted with
    thinking on, 1.1, 2.0 and -0.1 refused; top_p only 0.95; the penalties only 0).
    """

    temperature_pinned: bool = False
    top_p_pinned: bool = False
    penalties_pinned: bool = False
    n_pinned: bool = False


#: Moonshot's K2.5 policy: every sampling field fixed ("invalid temperature: only 1 is
#: allowed for this model").
PINNED = OfficialSampling(temperature_pinned=True, top_p_pinned=True, penalties_pinned=True,
                          n_pinned=True)


@dataclass(frozen=True, slots=True)
class FamilyInfo:
    """Static facts about one family.

    ``thinking_sampling`` is ``None`` for a family that cannot reason (``thinking="none"``),
    ``instant_sampling`` is ``None`` for one that always reasons (``thinking="always"``).
    ``think_prefill``: the generation prompt opens the reasoning block, so the output begins
    inside it (otherwise a thinking model writes the opener itself). ``thinking_efforts``:
    the accepted ``thinking_effort`` values, empty where the family has none, with
    ``default_thinking_effort`` the one used when thinking is on and none is asked for.
    ``stop_strings``: what an engine must stop on. ``engine_parser``: the name of the tool
    and reasoning parser of vLLM and SGLang for this family. ``reasoning_begin`` and
    ``reasoning_end``: the text that opens and closes the reasoning (K2.x: ``<think>`` and
    ``</think>``; K3: the think channel's ``<|open|>think<|sep|>`` and ``<|close|>think<|sep|>``).
    ``official_sampling``: what Moonshot's own API accepts (:class:`OfficialSampling`).
    """

    name: Family
    context_window: int
    thinking: ThinkingSupport
    thinking_sampling: Sampling | None
    instant_sampling: Sampling | None
    wire_format: WireFormat = "k2"
    tool_declaration: ToolDeclaration = "json"
    think_prefill: bool = False
    legacy_media_tokens: bool = False
    preserve_thinking: PreserveThinking = "never"
    thinking_efforts: tuple[str, ...] = ()
    default_thinking_effort: str | None = None
    stop_strings: tuple[str, ...] = T.STOP_STRINGS
    engine_parser: str = "kimi_k2"
    reasoning_begin: str = T.THINK_BEGIN
    reasoning_end: str = T.THINK_END
    official_sampling: OfficialSampling = OfficialSampling()

    def thinks(self, thinking: bool | None = None) -> bool:
        """Whether a request with this ``thinking`` switch gets a reasoning block.

        ``None`` means the family's default. The switch only matters for ``"switchable"``
        families; the others ignore it.
        """
        if self.thinking == "switchable":
            return thinking is not False
        return self.thinking == "always"

    def preserves_thinking(
        self, thinking: bool | None = None, preserve_thinking: bool | None = None
    ) -> bool:
        """Whether earlier turns keep their reasoning in the prompt for this request.

        Only with thinking on. ``preserve_thinking`` is the K2.6 switch (``None``: off); the
        families that never or always preserve ignore it.
        """
        if not self.thinks(thinking):
            return False
        if self.preserve_thinking == "switchable":
            return preserve_thinking is True
        return self.preserve_thinking == "always"

    def thinking_effort(self, thinking: bool | None, effort: str | None) -> str | None:
        """The ``thinking_effort`` a prompt for this request carries (``None``: none).

        ``None`` with thinking off. With thinking on: ``effort`` if the family accepts it,
        else the family's default when ``effort`` is ``None``. Raises :class:`PromptError`
        for a value the family rejects (K3's encoder rejects ``"medium"``, which its own
        effort message mentions) and for any effort on a family that has none.
        """
        if effort is not None and effort not in self.thinking_efforts:
            if not self.thinking_efforts:
                raise PromptError(f"the {self.name} family takes no thinking_effort")
            accepted = ", ".join(self.thinking_efforts)
            raise PromptError(
                f"thinking_effort {effort!r} is not supported by {self.name}; use one of {accepted}"
            )
        if not self.thinks(thinking):
            return None
        return effort if effort is not None else self.default_thinking_effort

    def default_sampling(self, thinking: bool | None = None) -> Sampling:
        """The recommended sampling for a request with this ``thinking`` switch."""
        sampling = self.thinking_sampling if self.thinks(thinking) else self.instant_sampling
        assert sampling is not None  # every family has the one its modes need
        return sampling


_K2_5_THINKING = Sampling(temperature=1.0, top_p=0.95)
_K2_5_INSTANT = Sampling(temperature=0.6, top_p=0.95)

#: K2.5, which K2.6 and K2.7-Code extend (the same template, markers and sampling).
_K2_5 = FamilyInfo(
    name=Family.K2_5,
    context_window=262144,
    thinking="switchable",
    thinking_sampling=_K2_5_THINKING,
    instant_sampling=_K2_5_INSTANT,
    tool_declaration="typescript",
    think_prefill=True,
    official_sampling=PINNED,
)

_FAMILIES: dict[Family, FamilyInfo] = {
    Family.K2_INSTRUCT: FamilyInfo(
        name=Family.K2_INSTRUCT,
        context_window=131072,
        thinking="none",
        thinking_sampling=None,
        instant_sampling=Sampling(temperature=0.6),
        legacy_media_tokens=True,
    ),
    Family.K2_THINKING: FamilyInfo(
        name=Family.K2_THINKING,
        context_window=262144,
        thinking="always",
        thinking_sampling=Sampling(temperature=1.0),
        instant_sampling=None,
        tool_declaration="json_sorted",
        legacy_media_tokens=True,
    ),
    Family.K2_5: _K2_5,
    # K2.5's template and markers plus the preserve_thinking switch; sampling fixed by Moonshot.
    Family.K2_6: replace(_K2_5, name=Family.K2_6, preserve_thinking="switchable"),
    # Thinking only, preserve_thinking forced on (vLLM recipe Kimi-K2.7-Code.yaml);
    # Kimi-Vendor-Verifier runs it at temperature 1.0, top_p 0.95 (K2.6's thinking values).
    Family.K2_7_CODE: replace(_K2_5, name=Family.K2_7_CODE, thinking="always",
                              instant_sampling=None, preserve_thinking="always"),
    # XTML; reasoning of every turn kept (the encoder does so). Sampling: Kimi-Vendor-Verifier
    # runs K3's benchmarks at temperature 1.0, top_p 0.95 (thinking) and its params suite
    # accepts 0.6 with thinking off: K2.5's values. Moonshot's API pins top_p and the
    # penalties, not the temperature (within [0, 1]).
    Family.K3: FamilyInfo(
        name=Family.K3,
        context_window=1048576,
        thinking="switchable",
        thinking_sampling=_K2_5_THINKING,
        instant_sampling=_K2_5_INSTANT,
        wire_format="xtml",
        tool_declaration="json_sorted",
        think_prefill=True,
        preserve_thinking="always",
        thinking_efforts=("low", "high", "max"),
        default_thinking_effort="max",
        stop_strings=T.K3_STOP_STRINGS,
        engine_parser="kimi_k3",
        reasoning_begin=f"{T.XTML_OPEN}think{T.XTML_SEP}",
        reasoning_end=f"{T.XTML_CLOSE}think{T.XTML_SEP}",
        official_sampling=OfficialSampling(top_p_pinned=True, penalties_pinned=True,
                                           n_pinned=True),
    ),
}


def resolve_family(family: str) -> Family:
    """Return the :class:`Family` named ``family``; raise ``ValueError`` naming the known ones."""
    try:
        return Family(family)
    except ValueError:
        known = ", ".join(repr(f.value) for f in Family)
        raise ValueError(f"unknown Kimi model family {family!r}; known: {known}") from None


def family_info(family: str) -> FamilyInfo:
    """Return the :class:`FamilyInfo` of ``family``; ``ValueError`` for an unknown name."""
    return _FAMILIES[resolve_family(family)]
