"""The run event vocabulary, and the live side of watching a run.

Every event a run produces is a :class:`RunEvent`: ``run_id``, ``seq`` (per run, strictly
increasing from 1, in the order the events were emitted), ``time`` (Unix seconds), ``type``
and the type's fields. On the wire (SSE, JSON) an event is one flat object, the fields next to
``run_id``/``seq``/``time``/``type``; the ``*Event`` TypedDicts below spell out each shape.

The whole vocabulary is here, one TypedDict per type, and :data:`EVENT_TYPES` is derived
from them. Every run: ``run_started``, ``step``, ``message_delta``, ``tool_call``,
``tool_result``, ``compaction``, ``step_retry``, ``checkpoint``; a swarm's orchestrator run
adds ``fanout``, ``subagent_started``, ``subagent_progress``, ``subagent_finished`` and
``swarm_metrics``; the store writes ``finished`` (always the last event of a run). The modes
emit only these (:func:`check_emitted`); clients should still ignore types they do not know,
so that new ones can be added.

:class:`Subscription` is what :meth:`~kimi_modes.runs.store.RunStore.subscribe` returns: it
replays the stored events after a seq, then follows the live ones, and ends after
``finished``. :class:`LiveBroker` fans events out to the subscriptions of runs that are live
in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, NotRequired, TypedDict, get_args, get_type_hints

import orjson

from kimi_modes.runs.records import TERMINAL_STATUSES

log = logging.getLogger("kimi_modes.runs")

RUN_STARTED: Final = "run_started"
STEP: Final = "step"
MESSAGE_DELTA: Final = "message_delta"
TOOL_CALL: Final = "tool_call"
TOOL_RESULT: Final = "tool_result"
COMPACTION: Final = "compaction"
STEP_RETRY: Final = "step_retry"
CHECKPOINT: Final = "checkpoint"
FANOUT: Final = "fanout"
SUBAGENT_STARTED: Final = "subagent_started"
SUBAGENT_PROGRESS: Final = "subagent_progress"
SUBAGENT_FINISHED: Final = "subagent_finished"
SWARM_METRICS: Final = "swarm_metrics"
FINISHED: Final = "finished"

#: Keys an event's data may not use: they are the envelope's.
RESERVED_KEYS: Final = frozenset({"run_id", "seq", "time", "type"})


class RunStartedEvent(TypedDict):
    """The run began working (status ``queued`` → ``running``). The owner may add fields
    (the agent adds ``workspace``)."""

    run_id: str
    seq: int
    time: float
    type: Literal["run_started"]
    workspace: NotRequired[str]


class StepEvent(TypedDict):
    """Model call number ``step`` (1-based) starts."""

    run_id: str
    seq: int
    time: float
    type: Literal["step"]
    step: int


class MessageDeltaEvent(TypedDict):
    """Text the model produced in ``step``: ``kind`` ``reasoning`` or ``content``. The store
    joins consecutive deltas of one step and kind into one event (see
    :class:`~kimi_modes.runs.store.RunStore`), so ``text`` may be many tokens long."""

    run_id: str
    seq: int
    time: float
    type: Literal["message_delta"]
    step: int
    kind: Literal["reasoning", "content"]
    text: str


class ToolCallEvent(TypedDict):
    """The model called ``name`` with ``arguments`` (a JSON string, as the model wrote it);
    ``id`` pairs it with its result. ``client``: a tool the client declared (not run by us)."""

    run_id: str
    seq: int
    time: float
    type: Literal["tool_call"]
    step: int
    id: str
    name: str
    arguments: str
    client: NotRequired[bool]


class ToolResultEvent(TypedDict):
    """The result of call ``id``: ``output`` (shortened by the store past its
    ``output_limit``: then ``output_truncated`` is true and ``output_chars`` is the original
    length), ``is_error``, ``duration`` in seconds and the tool's ``meta``."""

    run_id: str
    seq: int
    time: float
    type: Literal["tool_result"]
    step: int
    id: str
    name: str
    output: str
    is_error: bool
    duration: float
    meta: dict[str, Any]
    output_truncated: NotRequired[bool]
    output_chars: NotRequired[int]


class CompactionEvent(TypedDict):
    """Older context was compacted before ``step``: ``strategy`` says how, ``compacted`` how
    many tool results; the loop adds ``removed_chars``, ``kept_latest``,
    ``estimated_tokens`` and ``window``."""

    run_id: str
    seq: int
    time: float
    type: Literal["compaction"]
    step: int
    strategy: str
    compacted: int
    removed_chars: NotRequired[int]
    kept_latest: NotRequired[int]
    estimated_tokens: NotRequired[int]
    window: NotRequired[int]


class StepRetryEvent(TypedDict):
    """The stream of ``step`` broke (an engine failed mid-answer): what the step streamed so
    far is void and it runs again; ``attempt`` counts from 1, ``error`` says what broke."""

    run_id: str
    seq: int
    time: float
    type: Literal["step_retry"]
    step: int
    attempt: int
    error: str


class CheckpointEvent(TypedDict):
    """``step`` finished: ``messages`` are what it added to the conversation (the assistant
    message and the tool results). Sub-agents write these; a resumed run starts from them."""

    run_id: str
    seq: int
    time: float
    type: Literal["checkpoint"]
    step: int
    messages: list[dict[str, Any]]


class FanoutSubagent(TypedDict):
    """One sub-agent of a ``fanout``: its run ``id``, ``index`` (from 0 over the swarm run),
    ``task``, its ``agent_id`` (the id it keeps over its continuations: its first run's), and
    the run it continues when it was resumed."""

    id: str
    index: int
    task: str
    agent_id: str
    resumed_from: NotRequired[str]


class FanoutEvent(TypedDict):
    """An orchestrator's ``step`` started ``subagents`` (their runs exist, queued)."""

    run_id: str
    seq: int
    time: float
    type: Literal["fanout"]
    step: int
    subagents: list[FanoutSubagent]


class SubagentStartedEvent(TypedDict):
    """Sub-agent ``id`` got a slot and started at ``started_at`` (Unix seconds)."""

    run_id: str
    seq: int
    time: float
    type: Literal["subagent_started"]
    id: str
    index: int
    started_at: float


class SubagentProgressEvent(TypedDict):
    """Sub-agent ``id`` began a step or called a tool: its counts so far, and the tool it
    just called (``None`` after a step began)."""

    run_id: str
    seq: int
    time: float
    type: Literal["subagent_progress"]
    id: str
    index: int
    steps: int
    tool_calls: int
    last_tool: str | None


class SubagentFinishedEvent(TypedDict):
    """Sub-agent ``id`` ended: its status and stop reason, counts, times (Unix seconds;
    ``duration`` in seconds), token ``usage``, the first 500 characters of its ``answer``,
    and ``error`` for a failure."""

    run_id: str
    seq: int
    time: float
    type: Literal["subagent_finished"]
    id: str
    index: int
    status: str
    stop_reason: str | None
    steps: int
    tool_calls: int
    started_at: float | None
    finished_at: float | None
    duration: float
    usage: dict[str, int]
    answer: str | None
    error: str | None


class SwarmMetricsEvent(TypedDict):
    """A swarm run's figures (docs/swarm.md § Metrics), written just before ``finished``
    and stored as the run's ``metrics`` too."""

    run_id: str
    seq: int
    time: float
    type: Literal["swarm_metrics"]
    wall_time: float
    critical_steps: int
    total_steps: int
    orchestrator_steps: int
    tool_calls: int
    subagents: int
    subagents_failed: int
    parallelism: float
    subagent_time: float
    stages: list[dict[str, int]]
    tokens: dict[str, dict[str, int]]


class FinishedEvent(TypedDict):
    """The run ended: the last event of every run. ``final`` is what it ended with (the last
    assistant message), ``final_answer`` its text; ``usage`` the token counts
    (``prompt_tokens``, ``completion_tokens``, ``reasoning_tokens``) when known."""

    run_id: str
    seq: int
    time: float
    type: Literal["finished"]
    status: str
    stop_reason: str | None
    final: Any
    final_answer: str | None
    usage: dict[str, Any] | None
    error: str | None
    metrics: dict[str, Any]


#: Every event shape, as a union (one member per type).
AnyEvent = (
    RunStartedEvent | StepEvent | MessageDeltaEvent | ToolCallEvent | ToolResultEvent
    | CompactionEvent | StepRetryEvent | CheckpointEvent | FanoutEvent | SubagentStartedEvent
    | SubagentProgressEvent | SubagentFinishedEvent | SwarmMetricsEvent | FinishedEvent
)

#: Every event type there is, from the ``type`` literal of each shape in :data:`AnyEvent`.
EVENT_TYPES: Final[frozenset[str]] = frozenset(
    value for shape in get_args(AnyEvent) for value in get_args(get_type_hints(shape)["type"])
)


def check_emitted(event_type: str) -> None:
    """Raise :class:`ValueError` unless ``event_type`` is one a run's owner emits: any of
    :data:`EVENT_TYPES` but ``finished``, which :meth:`~kimi_modes.runs.store.RunStore.finish`
    writes."""
    if event_type not in EVENT_TYPES or event_type == FINISHED:
        raise ValueError(f"{event_type!r} is not an event a run emits; the vocabulary is "
                         f"{sorted(EVENT_TYPES - {FINISHED})} (kimi_modes.runs.events)")


@dataclass(frozen=True, slots=True)
class RunEvent:
    """One persisted event of a run (see the module docstring). ``data`` holds the
    type's fields; :meth:`to_dict` gives the flat wire shape."""

    run_id: str
    seq: int
    time: float
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The flat wire shape: ``{"run_id", "seq", "time", "type", **data}``."""
        return {"run_id": self.run_id, "seq": self.seq, "time": self.time,
                "type": self.type, **self.data}

    def to_json(self) -> bytes:
        """:meth:`to_dict` as compact JSON on one line (values JSON cannot hold become
        strings)."""
        return dumps(self.to_dict())

    @classmethod
    def from_dict(cls, value: Mapping[str, Any]) -> RunEvent:
        """The inverse of :meth:`to_dict`."""
        data = {k: v for k, v in value.items() if k not in RESERVED_KEYS}
        return cls(str(value["run_id"]), int(value["seq"]), float(value["time"]),
                   str(value["type"]), data)


def dumps(value: Any) -> bytes:
    """JSON as the runs package writes it: compact, non-string keys allowed, anything else
    JSON cannot hold written as its ``str()``."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)


# -- watching ---------------------------------------------------------------------------------

#: ``fetch(after_seq, limit)``: stored events of the run with seq > after_seq, in order.
Fetch = Callable[[int, int], Awaitable[list[RunEvent]]]
#: ``status()``: the run's stored status, ``None`` if the run is gone.
StatusOf = Callable[[], Awaitable[str | None]]

_PAGE = 500


class Subscription:
    """Replay-then-follow over one run's events; an async iterator that ends after
    ``finished``.

    Guarantees: events come in seq order, each at most once, starting after the seq given
    to :meth:`~kimi_modes.runs.store.RunStore.subscribe`; nothing between that seq and
    ``finished`` is skipped (a subscriber that falls more than ``queue_limit`` events behind
    the live feed re-reads the gap from the database, where every published event already
    is). Iteration ends after the ``finished`` event, when the run is over without one, or
    after :meth:`aclose` (or the store closing). Use it as ``async with`` or call
    :meth:`aclose`, so the live feed lets go of it.

    For a run that is not live in this process (another process owns it) the subscription
    re-reads the database when :meth:`poke` says an event was stored, and every
    ``poll_interval`` seconds otherwise, until the run is over.
    """

    def __init__(
        self,
        run_id: str,
        after_seq: int,
        *,
        fetch: Fetch,
        status: StatusOf,
        live: bool,
        queue_limit: int = 1000,
        poll_interval: float = 0.5,
        on_close: Callable[[Subscription], None] | None = None,
    ) -> None:
        self.run_id = run_id
        self._last = max(0, after_seq)
        self._fetch = fetch
        self._status = status
        self._live = live
        self._limit = queue_limit
        self._poll_interval = poll_interval
        self._on_close = on_close
        self._queue: deque[RunEvent] = deque()
        self._backlog: deque[RunEvent] = deque()
        self._wake = asyncio.Event()
        self._replay = True
        self._ended = False
        self._closed = False
        self._orphaned = False

    @property
    def last_seq(self) -> int:
        """The seq of the last event handed out (or the starting seq)."""
        return self._last

    @property
    def ended(self) -> bool:
        """True once the run's last event was handed out, or the subscription was closed."""
        return self._ended or self._closed

    # -- fed by the broker ---------------------------------------------------------------

    def push(self, event: RunEvent) -> None:
        """A live event (already stored). Never blocks; a full queue turns into a re-read."""
        if self.ended:
            return
        if len(self._queue) >= self._limit:
            self._queue.clear()
            self._replay = True
        else:
            self._queue.append(event)
        self._wake.set()

    def detach(self) -> None:
        """The store is closing: hand out what is already queued, then end."""
        self._orphaned = True
        self._wake.set()

    def poke(self) -> None:
        """Another process stored an event of this run: re-read the database now rather
        than at the next poll."""
        self._wake.set()

    # -- consumed by the watcher ---------------------------------------------------------

    # ``timeout`` returns None and keeps the subscription's place (for keep-alives); being
    # cancelled is safe too.
    async def next_event(self, timeout: float | None = None) -> RunEvent | None:  # noqa: ASYNC109
        """The next event, or ``None`` when ``timeout`` seconds passed without one (the
        subscription stays usable: use it for keep-alives). Raises
        :class:`StopAsyncIteration` once the subscription has ended."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self.ended:
                raise StopAsyncIteration
            if self._backlog:
                event = self._backlog.popleft()
                if event.seq > self._last:
                    return self._deliver(event)
                continue
            if self._orphaned:
                if self._queue:
                    event = self._queue.popleft()
                    if event.seq > self._last:
                        return self._deliver(event)
                    continue
                self._end()
                raise StopAsyncIteration
            if self._replay:
                if not self._live:
                    # A poke during the read must not be lost.
                    self._wake.clear()
                page = await self._fetch(self._last, _PAGE)
                self._replay = len(page) >= _PAGE
                self._backlog.extend(page)
                if page or self._live:
                    continue
                status = await self._status()
                if status is None or status in TERMINAL_STATUSES:
                    # The run may have ended between the read and the status: read again.
                    last = await self._fetch(self._last, _PAGE)
                    if last:
                        self._backlog.extend(last)
                        self._replay = len(last) >= _PAGE
                        continue
                    self._end()
                    raise StopAsyncIteration
                # The run goes on in another process: poll.
                wait = self._poll_interval
                if deadline is not None:
                    wait = min(wait, max(0.0, deadline - loop.time()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
                self._replay = True
                if deadline is not None and loop.time() >= deadline:
                    return None
                continue
            if self._queue:
                event = self._queue.popleft()
                if event.seq > self._last:
                    return self._deliver(event)
                continue
            if not self._live:
                self._replay = True
                continue
            self._wake.clear()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                await asyncio.wait_for(self._wake.wait(), remaining)
            except TimeoutError:
                return None

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> RunEvent:
        event = await self.next_event()
        assert event is not None  # no timeout: only an event or the end
        return event

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop watching; the live feed lets go of this subscription. Idempotent."""
        self.close()

    def close(self) -> None:
        """:meth:`aclose` for synchronous callers."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._backlog.clear()
        self._wake.set()
        if self._on_close is not None:
            self._on_close(self)

    def _deliver(self, event: RunEvent) -> RunEvent:
        self._last = event.seq
        if event.type == FINISHED:
            self._end()
        return event

    def _end(self) -> None:
        self._ended = True
        self._queue.clear()
        self._backlog.clear()
        if self._on_close is not None:
            self._on_close(self)


class LiveBroker:
    """Fans the live events of each run out to its subscriptions (in this process only).

    The store publishes an event after it has been committed, so a subscription that
    re-reads the database never misses one it was not handed live.
    """

    def __init__(self) -> None:
        self._subs: dict[str, set[Subscription]] = {}

    def attach(self, sub: Subscription) -> None:
        """Start feeding ``sub`` the live events of its run."""
        self._subs.setdefault(sub.run_id, set()).add(sub)

    def detach(self, sub: Subscription) -> None:
        """Stop feeding ``sub``. Idempotent."""
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]

    def publish(self, event: RunEvent) -> None:
        """Hand ``event`` to every subscription of its run."""
        for sub in list(self._subs.get(event.run_id, ())):
            try:
                sub.push(event)
            except Exception:  # a broken watcher must not stop the run
                log.exception("run %s: a subscriber failed", event.run_id)

    def end_run(self, run_id: str) -> None:
        """The run's ``finished`` event was published: nothing more will come. Its
        subscriptions keep what they were handed and end after ``finished``."""
        self._subs.pop(run_id, None)

    def detach_all(self) -> None:
        """The store is closing: every subscription hands out what it holds, then ends."""
        subs, self._subs = self._subs, {}
        for group in subs.values():
            for sub in group:
                sub.detach()

    def count(self, run_id: str | None = None) -> int:
        """How many subscriptions are attached (to ``run_id``, or in all)."""
        if run_id is not None:
            return len(self._subs.get(run_id, ()))
        return sum(len(s) for s in self._subs.values())
