"""One pool member: its configuration (:class:`PoolMember`) and its live state
(:class:`MemberState`: our in-flight count, the engine's load from ``/metrics``, back-off and
circuit breaker).

Everything here is touched from the pool's event loop only, so nothing locks. Times are
``time.monotonic()`` seconds.
"""

from __future__ import annotations

import enum
import logging
import time
from dataclasses import dataclass
from typing import Any

from kimi_modes.engines.base import Engine, EngineError, UpstreamOverloaded
from kimi_modes.engines.pool.metrics import EngineLoad

log = logging.getLogger("kimi_modes.engines.pool")


@dataclass(frozen=True)
class PoolMember:
    """An engine in a pool. Its name is ``engine.name``.

    ``max_concurrency``: how many of our requests it gets at once at most (``None``: no
    limit). ``metrics_url``: its Prometheus text endpoint (vLLM, SGLang, the simulated engine;
    see :func:`kimi_modes.endpoint.metrics_url`), or ``None`` to route by our own
    in-flight count only. ``router``: it is a router that balances many replicas itself, so
    the pool does not balance on top of it (see docs/pool.md, "Router members"); it has no
    ``metrics_url``.
    """

    engine: Engine
    max_concurrency: int | None = None
    metrics_url: str | None = None
    router: bool = False

    def __post_init__(self) -> None:
        if self.max_concurrency is not None and self.max_concurrency < 1:
            raise ValueError(
                f"pool member {self.engine.name!r}: max_concurrency must be >= 1 or None"
            )
        if self.router and self.metrics_url is not None:
            raise ValueError(
                f"pool member {self.engine.name!r} is a router: it balances its own "
                "replicas, and its metrics_url would not be read"
            )


class Breaker(enum.Enum):
    """Circuit breaker state: ``closed`` serves, ``open`` is out until its cooldown ends,
    ``half_open`` lets one trial request through."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class BreakerPolicy:
    """When a member is taken out and for how long, and how long it backs off after one
    failure (the pool's constructor arguments of the same names)."""

    failure_threshold: int
    cooldown: float
    max_cooldown: float
    backoff: float
    max_backoff: float


class MemberState:
    """The live state of one member. ``load`` is what routing compares."""

    def __init__(self, member: PoolMember, policy: BreakerPolicy, stale_after: float) -> None:
        self.member = member
        self.engine = member.engine
        self.name = member.engine.name
        self.cap = member.max_concurrency
        self._policy = policy
        self._stale_after = stale_after
        self.in_flight = 0
        self.served = 0
        self.failed = 0
        self.consecutive_failures = 0
        self.breaker = Breaker.CLOSED
        #: While OPEN: when the cooldown ends.
        self.out_until = 0.0
        self._cooldown = policy.cooldown
        #: Whether the one request a HALF_OPEN member lets through is under way.
        self.trial_in_flight = False
        #: After a single failure: no new request before this time (retry_after or back-off).
        self.not_before = 0.0
        self.last_error: EngineError | None = None
        self._load = EngineLoad(None, None)
        self._load_at: float | None = None
        self.metrics_failing = False

    # -- availability ---------------------------------------------------------------------

    def state(self, now: float) -> Breaker:
        """The breaker state, moving OPEN to HALF_OPEN once the cooldown is over."""
        if self.breaker is Breaker.OPEN and now >= self.out_until:
            self.breaker = Breaker.HALF_OPEN
            self.trial_in_flight = False
        return self.breaker

    def available(self, now: float) -> bool:
        """Whether a request may be sent to it now."""
        state = self.state(now)
        if state is Breaker.OPEN or now < self.not_before:
            return False
        if state is Breaker.HALF_OPEN and self.trial_in_flight:
            return False
        # The cap holds for a trial too: requests from before it was taken out may still run.
        return self.cap is None or self.in_flight < self.cap

    def ready_at(self, now: float) -> float:
        """When it may be available again without any request ending: ``now`` when it is, or
        when only a request ending (a free slot, a trial's outcome) can make it so."""
        state = self.state(now)
        if state is Breaker.OPEN:
            return max(self.out_until, self.not_before)
        return max(now, self.not_before)

    @property
    def load(self) -> float:
        """Our in-flight requests plus the engine's own queue (when its figure is fresh)."""
        return self.in_flight + (self.waiting or 0)

    # -- engine figures from /metrics -----------------------------------------------------

    def set_load(self, load: EngineLoad) -> None:
        self._load = load
        self._load_at = time.monotonic()

    def _fresh(self) -> EngineLoad:
        age = self.metrics_age
        if age is None or age > self._stale_after:
            return EngineLoad(None, None)
        return self._load

    @property
    def waiting(self) -> float | None:
        return self._fresh().waiting

    @property
    def running(self) -> float | None:
        return self._fresh().running

    @property
    def metrics_age(self) -> float | None:
        return None if self._load_at is None else time.monotonic() - self._load_at

    # -- outcomes -------------------------------------------------------------------------

    def start(self, now: float) -> bool:
        """Count a request sent to it; returns whether it is the half-open trial."""
        self.in_flight += 1
        trial = self.state(now) is Breaker.HALF_OPEN
        if trial:
            self.trial_in_flight = True
        return trial

    def finish(self, trial: bool) -> None:
        """A request ended, whatever its outcome (called exactly once per :meth:`start`)."""
        self.in_flight -= 1
        if trial:
            self.trial_in_flight = False

    def succeeded(self, trial: bool) -> None:
        """A stream ended with its Finish: failures are forgiven; a trial brings it back."""
        self.served += 1
        # ``not_before`` stays: an upstream's Retry-After holds even if another request
        # already under way succeeds.
        self.consecutive_failures = 0
        if trial and self.breaker is Breaker.HALF_OPEN:
            self.breaker = Breaker.CLOSED
            self._cooldown = self._policy.cooldown
            log.warning("pool member %r is back in service", self.name)

    def failed_with(self, error: EngineError, trial: bool, now: float) -> None:
        """A request failed on this member's side (not a rejected request)."""
        policy = self._policy
        self.failed += 1
        self.consecutive_failures += 1
        self.last_error = error
        retry_after = error.retry_after if isinstance(error, UpstreamOverloaded) else None
        if retry_after is None:
            # The exponent is bounded: failures while out keep counting, 2**n must not overflow.
            delay = policy.backoff * 2 ** min(self.consecutive_failures - 1, 32)
        else:
            delay = retry_after
        self.not_before = max(self.not_before, now + min(delay, policy.max_backoff))
        if trial and self.breaker is Breaker.HALF_OPEN:
            self._cooldown = min(self._cooldown * 2, policy.max_cooldown)
            self._take_out(now, error)
        elif (
            self.breaker is Breaker.CLOSED
            and self.consecutive_failures >= policy.failure_threshold
        ):
            self._take_out(now, error)

    def _take_out(self, now: float, error: EngineError) -> None:
        self.breaker = Breaker.OPEN
        self.out_until = now + self._cooldown
        log.warning(
            "pool member %r taken out for %.3g s after %d failures in a row; last: %s",
            self.name, self._cooldown, self.consecutive_failures, error,
        )

    # -- reporting ------------------------------------------------------------------------

    def snapshot(self, now: float) -> dict[str, Any]:
        state = self.state(now)
        waiting, running = self.waiting, self.running
        out_until = (time.time() + self.out_until - now) if state is Breaker.OPEN else None
        return {
            "name": self.name,
            "router": self.member.router,
            "in_flight": self.in_flight,
            "max_concurrency": self.cap,
            "waiting": None if waiting is None else int(waiting),
            "running": None if running is None else int(running),
            "healthy": state is Breaker.CLOSED,
            "state": state.value,
            "consecutive_failures": self.consecutive_failures,
            "out_until": out_until,
            "served": self.served,
            "failed": self.failed,
            "last_error": None if self.last_error is None else str(self.last_error),
            "metrics_age": self.metrics_age,
        }
