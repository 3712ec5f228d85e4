"""The :class:`EnginePool` engine: several members behind one ``stream()``. The rules it
follows are in the package docstring (:mod:`kimi_modes.engines.pool`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from kimi_modes.engines.base import (
    ChatRequest,
    EngineError,
    Event,
    Finish,
    Snapshotting,
    UpstreamOverloaded,
    UpstreamRejected,
    UpstreamUnavailable,
)
from kimi_modes.engines.pool.dispatch import AllMembersOut, Dispatcher, Lease
from kimi_modes.engines.pool.member import BreakerPolicy, MemberState, PoolMember
from kimi_modes.engines.pool.metrics import MetricsReader

log = logging.getLogger("kimi_modes.engines.pool")

#: Scraping pauses after this many intervals with nothing in flight and nothing queued.
_IDLE_ROUNDS = 10
#: An engine figure older than this many intervals (and at least 5 s) is no longer used.
_STALE_ROUNDS = 5
#: A /metrics GET gives up after this long; a slow endpoint only makes its figure stale.
_SCRAPE_TIMEOUT = 2.0


class EnginePool(Snapshotting):
    """Several engines behind the one :class:`~kimi_modes.engines.base.Engine` interface,
    with load-aware routing, per-member caps, retries before the first event, and a
    circuit breaker per member. Create it inside a running event loop or outside any; it
    starts no task until it is used."""

    def __init__(
        self,
        name: str,
        members: Sequence[PoolMember],
        *,
        max_attempts: int = 6,
        failure_threshold: int = 3,
        cooldown: float = 2.0,
        max_cooldown: float = 60.0,
        metrics_interval: float = 1.0,
        backoff: float = 0.25,
        max_backoff: float = 10.0,
        queue_timeout: float | None = None,
    ) -> None:
        _check(name, members, max_attempts=max_attempts, failure_threshold=failure_threshold,
               cooldown=cooldown, max_cooldown=max_cooldown, metrics_interval=metrics_interval,
               backoff=backoff, max_backoff=max_backoff, queue_timeout=queue_timeout)
        self.name = name
        self.max_attempts = max_attempts
        self.metrics_interval = metrics_interval
        self.queue_timeout = queue_timeout
        policy = BreakerPolicy(failure_threshold, cooldown, max_cooldown, backoff, max_backoff)
        stale_after = max(_STALE_ROUNDS * metrics_interval, 5.0)
        self._members = [MemberState(m, policy, stale_after) for m in members]
        self._dispatcher = Dispatcher(self._members, max_wait_out=max_backoff)
        self._reader = MetricsReader(_SCRAPE_TIMEOUT)
        self._scraper: asyncio.Task[None] | None = None
        self._busy_at = 0.0

    @property
    def members(self) -> list[PoolMember]:
        return [state.member for state in self._members]

    @property
    def queued(self) -> int:
        """Requests waiting for a member (all at their cap, or out of service)."""
        return self._dispatcher.queued

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        self._start_scraping()
        attempts = 0
        last: EngineError | None = None
        avoid: MemberState | None = None
        while True:
            lease = await self._acquire(avoid, retry=attempts > 0, last=last)
            attempts += 1
            member = lease.member
            events = member.engine.stream(request)
            yielded = succeeded = False
            try:
                async for event in events:
                    if isinstance(event, Finish) and not succeeded:
                        # Before the yield: a consumer that stops at Finish got a whole answer
                        # (the first choice's, when there are several: counted once).
                        succeeded = True
                        member.succeeded(lease.trial)
                    yielded = True
                    yield event
            except UpstreamRejected:
                raise  # the request itself is at fault: no member would take it
            except EngineError as exc:
                member.failed_with(exc, lease.trial, time.monotonic())
                if yielded or attempts >= self.max_attempts:
                    raise
                log.info("pool %r: %s; trying again (attempt %d of %d)",
                         self.name, exc, attempts + 1, self.max_attempts)
                last, avoid = exc, member
                continue
            finally:
                try:
                    await events.aclose()
                finally:
                    self._dispatcher.release(lease)
            return

    async def _acquire(
        self, avoid: MemberState | None, *, retry: bool, last: EngineError | None
    ) -> Lease:
        try:
            async with asyncio.timeout(self.queue_timeout):
                return await self._dispatcher.acquire(avoid, first=retry)
        except TimeoutError:
            raise UpstreamOverloaded(
                self.name,
                f"no member could take the request within {self.queue_timeout:g} s "
                "(all at their max_concurrency or out of service)",
            ) from None
        except AllMembersOut as out:
            if last is not None:
                raise last from None
            errors = "; ".join(
                str(m.last_error) for m in self._members if m.last_error is not None
            )
            raise UpstreamUnavailable(
                self.name, f"{out}" + (f" (last errors: {errors})" if errors else "")
            ) from None

    def snapshot(self) -> list[dict[str, Any]]:
        """Each member's figures now (see docs/pool.md for the fields)."""
        now = time.monotonic()
        return [member.snapshot(now) for member in self._members]

    # -- engine load from /metrics --------------------------------------------------------

    async def refresh_metrics(self) -> None:
        """Read every member's ``/metrics`` now. The pool does this by itself in the
        background while it is in use; a failure leaves that member's figure to go stale."""
        await asyncio.gather(*(self._scrape(m) for m in self._members if m.member.metrics_url))

    async def _scrape(self, member: MemberState) -> None:
        url = member.member.metrics_url
        assert url is not None
        try:
            member.set_load(await self._reader.read(url))
        except Exception as exc:  # any failure only leaves the figure to go stale
            level = logging.DEBUG if member.metrics_failing else logging.WARNING
            log.log(level, "pool %r: cannot read the metrics of %r at %s (%s: %s); routing "
                    "by our own counts until it can", self.name, member.name, url,
                    type(exc).__name__, exc)
            member.metrics_failing = True
        else:
            if member.metrics_failing:
                log.info("pool %r: metrics of %r readable again", self.name, member.name)
            member.metrics_failing = False

    def _start_scraping(self) -> None:
        self._busy_at = time.monotonic()
        if self._scraper is None and any(m.member.metrics_url for m in self._members):
            self._scraper = asyncio.get_running_loop().create_task(
                self._scrape_loop(), name=f"pool {self.name} metrics"
            )

    async def _scrape_loop(self) -> None:
        try:
            while True:
                await self.refresh_metrics()
                await asyncio.sleep(self.metrics_interval)
                now = time.monotonic()
                if self.queued or any(m.in_flight for m in self._members):
                    self._busy_at = now
                elif now - self._busy_at > _IDLE_ROUNDS * self.metrics_interval:
                    return  # idle: the next request starts it again
        finally:
            self._scraper = None

    async def aclose(self) -> None:
        """Stop scraping metrics and close its connections. The member engines are left
        open: their owner closes them. Idempotent; the pool can still be used after it."""
        task = self._scraper
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._dispatcher.close()
        await self._reader.aclose()


def _check(name: str, members: Sequence[PoolMember], **numbers: float | None) -> None:
    """Refuse a configuration that cannot work, with a one-line reason."""
    if not members:
        raise ValueError(f"pool {name!r} has no members")
    names = [m.engine.name for m in members]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ValueError(f"pool {name!r}: member names must differ ({', '.join(doubled)})")
    at_least = {"max_attempts": 1, "failure_threshold": 1, "cooldown": 0.0,
                "max_cooldown": 0.0, "backoff": 0.0, "max_backoff": 0.0}
    for key, low in at_least.items():
        value = numbers[key]
        if value is None or value < low:
            raise ValueError(f"pool {name!r}: {key} must be >= {low:g}, not {value}")
    interval = numbers["metrics_interval"]
    if interval is None or interval <= 0:
        raise ValueError(f"pool {name!r}: metrics_interval must be > 0, not {interval}")
    timeout = numbers["queue_timeout"]
    if timeout is not None and timeout <= 0:
        raise ValueError(f"pool {name!r}: queue_timeout must be > 0 or None, not {timeout}")
    cooldown, max_cooldown = numbers["cooldown"], numbers["max_cooldown"]
    if cooldown is not None and max_cooldown is not None and max_cooldown < cooldown:
        raise ValueError(f"pool {name!r}: max_cooldown must be >= cooldown")
