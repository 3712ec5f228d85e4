"""The runs live in this process: their event order, buffered text, cancel callbacks, and
the watchers following them.

:class:`LiveRuns` is the in-memory half of :class:`~kimi_modes.runs.store.RunStore`: the
store writes to the database, this module decides what to write when. It gives each event
of a live run its seq, coalesces ``message_delta`` text (see the store's module docstring),
keeps the run's cancel callback, and hands stored events to the run's subscriptions through a
:class:`~kimi_modes.runs.events.LiveBroker`. Nothing here does I/O: events go to the database
through the ``store_event`` callable given to :class:`LiveRuns`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kimi_modes.runs.events import (
    FINISHED,
    MESSAGE_DELTA,
    RESERVED_KEYS,
    TOOL_RESULT,
    Fetch,
    LiveBroker,
    RunEvent,
    StatusOf,
    Subscription,
)

log = logging.getLogger("kimi_modes.runs")

#: A cancel callback: called with no arguments; may return an awaitable (it is then run as
#: a task).
CancelCallback = Callable[[], object]
#: ``store_event(event)``: write a sequenced event, then publish it; returns at once.
StoreEvent = Callable[[RunEvent], None]


@dataclass
class PendingText:
    """``message_delta`` text of one step and kind, not stored yet."""

    step: Any
    kind: str
    time: float
    extra: dict[str, Any]
    parts: list[str] = field(default_factory=list)
    chars: int = 0


@dataclass
class LiveRun:
    """What is kept in memory about a run live in this process."""

    run_id: str
    seq: int = 0
    finishing: bool = False
    cancel: CancelCallback | None = None
    cancel_requested: bool = False
    pending: PendingText | None = None
    timer: asyncio.TimerHandle | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def sequence(self, event_type: str, data: dict[str, Any], at: float) -> RunEvent:
        """The run's next event: its seq is the one after the last handed out."""
        self.seq += 1
        return RunEvent(self.run_id, self.seq, at, event_type, data)


class LiveRuns:
    """The live runs of one store. ``delta_interval`` / ``delta_max_chars``: when buffered
    text is handed to ``store_event``."""

    def __init__(self, *, delta_interval: float, delta_max_chars: int,
                 store_event: StoreEvent) -> None:
        self.delta_interval = delta_interval
        self.delta_max_chars = delta_max_chars
        self._store_event = store_event
        self._runs: dict[str, LiveRun] = {}
        self._broker = LiveBroker()
        self._subs: set[Subscription] = set()
        self._waiters: dict[str, set[asyncio.Event]] = {}

    # -- the runs -----------------------------------------------------------------------------

    def add(self, run_id: str) -> LiveRun:
        """Make ``run_id`` live here."""
        live = self._runs[run_id] = LiveRun(run_id)
        return live

    def get(self, run_id: str) -> LiveRun | None:
        """The live run ``run_id`` (finishing or not), or ``None``."""
        return self._runs.get(run_id)

    def is_live(self, run_id: str) -> bool:
        """True while the run is live here and not finishing."""
        live = self._runs.get(run_id)
        return live is not None and not live.finishing

    def ids(self) -> list[str]:
        """The ids of the runs live here and not finishing."""
        return [r for r, live in self._runs.items() if not live.finishing]

    def unfinished(self) -> list[LiveRun]:
        """The runs live here and not finishing."""
        return [live for live in self._runs.values() if not live.finishing]

    def ended(self, live: LiveRun, finished: RunEvent) -> None:
        """``live`` has ended with its ``finished`` event: watchers get it, nothing more will
        come, the run is forgotten and whoever waits on ``live.done`` wakes up."""
        self._broker.publish(finished)
        self._broker.end_run(live.run_id)
        self._runs.pop(live.run_id, None)
        live.cancel = None
        live.done.set()

    def publish(self, event: RunEvent) -> None:
        """Hand a stored event to the subscriptions of its run."""
        self._broker.publish(event)

    def poke(self, run_id: str) -> None:
        """Another process stored an event of ``run_id``: its watchers here re-read it."""
        for sub in self._subs:
            if sub.run_id == run_id:
                sub.poke()
        for wake in self._waiters.get(run_id, ()):
            wake.set()

    @contextlib.contextmanager
    def waking(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event :meth:`poke` sets for ``run_id`` while the block runs."""
        wake = asyncio.Event()
        self._waiters.setdefault(run_id, set()).add(wake)
        try:
            yield wake
        finally:
            waiters = self._waiters[run_id]
            waiters.discard(wake)
            if not waiters:
                del self._waiters[run_id]

    # -- streamed text --------------------------------------------------------------------------

    def buffer_text(self, live: LiveRun, data: dict[str, Any]) -> None:
        """Add a validated ``message_delta`` to the run's pending text; a change of step or
        kind, the interval or the size hands the pending text on first."""
        text: str = data["text"]
        if not text:
            return
        step, kind = data.get("step"), data["kind"]
        pending = live.pending
        if pending is not None and (pending.step, pending.kind) != (step, kind):
            self.flush_text(live)
            pending = None
        if pending is None:
            extra = {k: v for k, v in data.items() if k != "text"}
            pending = live.pending = PendingText(step, kind, time.time(), extra)
            live.timer = asyncio.get_running_loop().call_later(
                self.delta_interval, self.flush_text, live)
        pending.parts.append(text)
        pending.chars += len(text)
        if pending.chars >= self.delta_max_chars:
            self.flush_text(live)

    def flush_text(self, live: LiveRun) -> None:
        """Hand the run's pending text (if any) to ``store_event`` as one event."""
        if live.timer is not None:
            live.timer.cancel()
            live.timer = None
        pending, live.pending = live.pending, None
        if pending is None:
            return
        self._store_event(live.sequence(
            MESSAGE_DELTA, {**pending.extra, "text": "".join(pending.parts)}, pending.time))

    # -- cancelling -----------------------------------------------------------------------------

    def set_cancel(self, live: LiveRun, callback: CancelCallback) -> None:
        """Register the run's cancel callback; call it now if a cancel came first."""
        live.cancel = callback
        if live.cancel_requested:
            self.call_cancel(live)

    def request_cancel(self, live: LiveRun) -> None:
        """Ask the run to stop: now, or as soon as its callback is registered."""
        live.cancel_requested = True
        self.call_cancel(live)

    def call_cancel(self, live: LiveRun) -> None:
        """Call the run's cancel callback, if it has one (its errors are logged)."""
        callback = live.cancel
        if callback is None:
            return
        try:
            result = callback()
        except Exception:
            log.exception("run %s: cancel callback failed", live.run_id)
            return
        if inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            task.add_done_callback(_log_task_error)

    # -- watchers -------------------------------------------------------------------------------

    def watch(self, run_id: str, after_seq: int, *, fetch: Fetch, status: StatusOf,
              queue_limit: int, poll_interval: float) -> Subscription:
        """A subscription to ``run_id`` (fed live when the run is live here, else polling)."""
        live = run_id in self._runs
        sub = Subscription(run_id, after_seq, fetch=fetch, status=status, live=live,
                           queue_limit=queue_limit, poll_interval=poll_interval,
                           on_close=self._forget)
        if live:
            self._broker.attach(sub)
        self._subs.add(sub)
        return sub

    def subscriber_count(self, run_id: str | None = None) -> int:
        """How many subscriptions are open (on ``run_id``, or in all)."""
        if run_id is None:
            return len(self._subs)
        return sum(1 for s in self._subs if s.run_id == run_id)

    def end_watchers(self) -> None:
        """The store is closing: every subscription hands out what it holds, then ends."""
        self._broker.detach_all()
        for sub in list(self._subs):
            sub.detach()
        self._subs.clear()

    def _forget(self, sub: Subscription) -> None:
        self._broker.detach(sub)
        self._subs.discard(sub)


def checked_data(event_type: str, data: Mapping[str, Any] | None,
                 output_limit: int) -> dict[str, Any]:
    """A copy of an emitted event's ``data`` as it will be stored: :class:`ValueError` for
    a malformed event (no type, ``finished``, reserved keys, a ``message_delta`` without
    ``kind``/``text``); a ``tool_result`` output past ``output_limit`` characters shortened,
    with ``output_truncated`` and ``output_chars`` added."""
    if not isinstance(event_type, str) or not event_type:
        raise ValueError("an event type is a non-empty string")
    if event_type == FINISHED:
        raise ValueError("'finished' is written by RunStore.finish(), not emitted")
    payload = dict(data or {})
    clash = RESERVED_KEYS & payload.keys()
    if clash:
        raise ValueError(f"event data may not use the keys {sorted(clash)}")
    if event_type == MESSAGE_DELTA:
        if payload.get("kind") not in ("reasoning", "content"):
            raise ValueError("a message_delta has kind 'reasoning' or 'content'")
        if not isinstance(payload.get("text"), str):
            raise ValueError("a message_delta has a string 'text'")
    elif event_type == TOOL_RESULT:
        output = payload.get("output")
        if isinstance(output, str) and len(output) > output_limit:
            payload["output"] = (output[:output_limit]
                                 + f"\n[… {len(output) - output_limit} more characters not "
                                   "stored]")
            payload["output_truncated"] = True
            payload["output_chars"] = len(output)
    return payload


def _log_task_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a cancel callback failed: %r", task.exception())
