"""The four modes, the model ids that name them, and how a request picks one.

The ids come from what is served: a :class:`Catalog` is built (in the composition root) from
the upstreams and the Kimi family each one serves. For every served family it lists
``kimi-<family>-<mode>`` (``kimi-k2.6-instant``, ``kimi-k3-swarm``...) for the modes the
family has, plus the mode aliases ``kimi-instant``, ``kimi-thinking``, ``kimi-agent`` and
``kimi-swarm`` for the default model. Each entry names the upstreams that serve it, so the
router sends ``kimi-k3-thinking`` to a K3 upstream and ``kimi-k2.6-instant`` to a K2.6 one.

Modes per family (:class:`~kimi_modes.protocol.families.FamilyInfo` ``thinking``):

- switchable (K2.5, K2.6, K3): all four. ``kimi-k3-instant`` is K3 with thinking off in the
  encoder (its generation prompt opens the response channel, not the think channel), which
  Moonshot's product does not offer: K3 launched reasoning-only.
- always (K2-Thinking, K2.7-Code): thinking, agent, swarm; ``-instant`` does not exist (asking
  for it says why), and a request that turns thinking off is refused.
- none (K2-Instruct): instant, agent, swarm; turning thinking on is refused.

Each wire format decodes its own switch fields (server/); :meth:`Catalog.resolve` takes the
result as a plain ``bool | None``. Pure; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from kimi_modes.protocol.families import Family, family_info


class Mode(StrEnum):
    INSTANT = "instant"
    THINKING = "thinking"
    AGENT = "agent"
    SWARM = "swarm"


_CHAT_MODES = (Mode.INSTANT, Mode.THINKING)


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One id listed by ``/v1/models``: its mode, the family that serves it and the names of
    the upstreams serving that family (in configuration order). ``alias_of``: the id this
    mode alias stands for (``None`` for a ``kimi-<family>-<mode>`` id)."""

    id: str
    mode: Mode
    description: str
    family: Family
    upstreams: tuple[str, ...]
    alias_of: str | None = None


class ModeError(ValueError):
    """A request asked for a mode or switch that cannot be honoured.

    ``status`` is the HTTP status to answer with, ``param`` the offending field.
    """

    def __init__(self, message: str, *, status: int = 400, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.param = param
        self.code = code


@dataclass(frozen=True, slots=True)
class Resolved:
    """The outcome of :meth:`Catalog.resolve`: which entry was asked for and the switch."""

    entry: ModelEntry
    thinking: bool

    @property
    def mode(self) -> Mode:
        """Instant or Thinking after the per-request switch (Agent/Swarm as named)."""
        if self.entry.mode in _CHAT_MODES:
            return Mode.THINKING if self.thinking else Mode.INSTANT
        return self.entry.mode

    @property
    def family(self) -> Family:
        return self.entry.family


def model_id(family: Family | str, mode: Mode | str) -> str:
    """``kimi-<family>-<mode>``: the id of ``family`` in ``mode`` (``kimi-k3-swarm``)."""
    return f"kimi-{Family(family).value}-{Mode(mode).value}"


def modes_of(family: Family | str) -> tuple[Mode, ...]:
    """The modes ``family`` has: no Instant for a family that always reasons, no Thinking for
    one that cannot."""
    thinking = family_info(family).thinking
    return tuple(m for m in Mode if not (
        (m is Mode.INSTANT and thinking == "always")
        or (m is Mode.THINKING and thinking == "none")))


def _describe(family: Family, mode: Mode) -> str:
    name = "Kimi " + family.value.upper().replace("-CODE", "-Code").replace(
        "-THINKING", "-Thinking").replace("-INSTRUCT", "-Instruct")
    if mode is Mode.INSTANT:
        if family_info(family).thinking == "none":
            return f"{name}: direct answers (it does not reason)."
        note = " (thinking off in the encoder; Moonshot ships K3 reasoning-only)" \
            if family is Family.K3 else ""
        return f"{name}, thinking off{note}: fast answers."
    if mode is Mode.THINKING:
        return f"{name}, thinking on: reasons first."
    if mode is Mode.AGENT:
        return f"{name} in a tool loop with sandboxed code, files, web and MCP tools."
    return (f"{name} orchestrating up to 128 parallel sub-agents (AgentSwarm), each an agent "
            "run.")


class Catalog:
    """The model ids this gateway serves, built from ``served``: (upstream name, family)
    pairs in configuration order. ``default`` is the family the mode aliases stand for
    (default: the first upstream's). Immutable once built."""

    def __init__(self, served: Iterable[tuple[str, Family | str]],
                 default: Family | str | None = None) -> None:
        upstreams: dict[Family, list[str]] = {}
        for name, family in served:
            upstreams.setdefault(Family(family), []).append(name)
        if not upstreams:
            raise ValueError("a catalog needs at least one served model")
        self.upstreams: dict[Family, tuple[str, ...]] = {
            f: tuple(names) for f, names in upstreams.items()}
        self.default = Family(default) if default is not None else next(iter(upstreams))
        if self.default not in self.upstreams:
            raise ValueError(f"the default model {self.default.value!r} is not served; "
                             f"served: {', '.join(f.value for f in self.upstreams)}")
        entries = [ModelEntry(model_id(f, m), m, _describe(f, m), f, names)
                   for f, names in self.upstreams.items() for m in modes_of(f)]
        for mode in modes_of(self.default):
            target = model_id(self.default, mode)
            entries.append(ModelEntry(f"kimi-{mode.value}", mode, f"Alias of {target}.",
                                      self.default, self.upstreams[self.default], target))
        #: Every listed id, the ``kimi-<family>-<mode>`` ones first, then the mode aliases.
        self.entries: tuple[ModelEntry, ...] = tuple(entries)
        self._by_id = {e.id: e for e in entries}
        # Unlisted names clients commonly send: the bare family id (its default mode) and
        # K2.5's -instruct spelling.
        self._aliases: dict[str, str] = {}
        for f in self.upstreams:
            bare = Mode.THINKING if Mode.THINKING in modes_of(f) else Mode.INSTANT
            self._aliases[f"kimi-{f.value}"] = model_id(f, bare)
        if Family.K2_5 in self.upstreams:
            self._aliases["kimi-k2.5-instruct"] = model_id(Family.K2_5, Mode.INSTANT)

    @property
    def ids(self) -> list[str]:
        """Every listed id, in listing order."""
        return [e.id for e in self.entries]

    def entry(self, family: Family | str, mode: Mode) -> ModelEntry | None:
        """The ``kimi-<family>-<mode>`` entry, if that family is served and has that mode."""
        return self._by_id.get(model_id(family, mode))

    def lookup(self, model: Any) -> ModelEntry:
        """The entry for a model id (aliases accepted); :class:`ModeError` otherwise: 400
        without an id, 404 ``model_not_found`` for an id not served here (an ``-instant``
        or ``-thinking`` id of a served family that lacks that mode says so)."""
        if not isinstance(model, str) or not model:
            raise ModeError("'model' is required: one of " + ", ".join(self.ids),
                            param="model")
        entry = self._by_id.get(self._aliases.get(model, model))
        if entry is not None:
            return entry
        reason = self._missing_mode(model)
        raise ModeError(
            reason or f"The model {model!r} does not exist here. Use one of: "
                      f"{', '.join(self.ids)}.",
            status=404, param="model", code="model_not_found")

    def _missing_mode(self, model: str) -> str | None:
        for family in self.upstreams:
            for mode in _CHAT_MODES:
                if model == model_id(family, mode) and mode not in modes_of(family):
                    other = model_id(family, Mode.THINKING if mode is Mode.INSTANT
                                     else Mode.INSTANT)
                    why = "always reasons" if mode is Mode.INSTANT else "cannot reason"
                    return (f"The model {model!r} does not exist: Kimi {family.value} "
                            f"{why}, so it has no {mode.value} mode. Use {other}.")
        return None

    def resolve(self, model: Any, thinking: bool | None = None) -> Resolved:
        """Pick the mode for a request: the model id's mode, with the thinking switch the
        wire format decoded from the request (``None``: the id's default: off for Instant,
        else on where the family can reason). Raises :class:`ModeError`: 404 for an unknown
        id (see :meth:`lookup`), 400 for a switch the family cannot follow (thinking off on
        a family that always reasons, on for one that cannot)."""
        entry = self.lookup(model)
        info = family_info(entry.family)
        if thinking is None:
            thinking = entry.mode is not Mode.INSTANT and info.thinking != "none"
        if (thinking and info.thinking == "none") or (not thinking
                                                       and info.thinking == "always"):
            state = "on" if thinking else "off"
            raise ModeError(
                f"{entry.id} cannot run with thinking {state}: Kimi {entry.family.value} "
                f"{'cannot reason' if thinking else 'always reasons'}.", param="thinking",
                code="thinking_not_supported")
        return Resolved(entry, thinking)


def single(family: Family | str = Family.K2_5, upstreams: Sequence[str] = ("default",)
           ) -> Catalog:
    """A catalog of one family served by ``upstreams`` (a convenience for one-model setups
    and tests)."""
    return Catalog([(name, family) for name in upstreams])
