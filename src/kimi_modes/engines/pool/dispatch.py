"""Which member serves the next request, and the first-come-first-served queue of requests
that wait because no member can take one now.

Invariant after every :meth:`Dispatcher.pump`: the queue is empty, or no member is
available. So a request that finds the queue non-empty waits behind it, and the head of the
queue is always the next one served.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from kimi_modes.engines.pool.member import MemberState


class AllMembersOut(Exception):
    """Every member is out of service for longer than a request should wait: the soonest is
    back in ``wait`` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"every member is out of service; the soonest is back in {wait:.3g} s")
        self.wait = wait


@dataclass(eq=False)
class Lease:
    """One request's slot on a member, from :meth:`Dispatcher.acquire` to
    :meth:`Dispatcher.release`. ``trial``: it is the half-open member's trial request."""

    member: MemberState
    trial: bool
    released: bool = field(default=False)


@dataclass(eq=False)
class _Waiter:
    future: asyncio.Future[Lease]
    avoid: MemberState | None


class Dispatcher:
    """Routes requests to members: a router member first (the first available one, in
    member order: a router balances by itself, and moving a conversation between routers
    would lose its cache affinity), else least load, then fewer of our requests in flight,
    then round-robin; a member to ``avoid`` (the one a retry failed on) only when no other is
    available."""

    def __init__(self, members: Sequence[MemberState], *, max_wait_out: float) -> None:
        self._members = list(members)
        self._max_wait_out = max_wait_out
        self._waiters: deque[_Waiter] = deque()
        self._next = 0  # round-robin position
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    @property
    def queued(self) -> int:
        """Requests waiting for a member."""
        return len(self._waiters)

    async def acquire(
        self, avoid: MemberState | None = None, *, first: bool = False
    ) -> Lease:
        """A slot on the best available member, waiting in the queue (at its end, or at its
        front when ``first``: a retry has waited its turn already) until there is one.

        Raises :class:`AllMembersOut` when every member is out for too long. Cancelling the
        caller takes it out of the queue (or hands back a slot granted in the meantime)."""
        waiter = _Waiter(asyncio.get_running_loop().create_future(), avoid)
        if first:
            self._waiters.appendleft(waiter)
        else:
            self._waiters.append(waiter)
        self.pump()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(waiter.future.result())  # granted just as we were cancelled
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def release(self, lease: Lease) -> None:
        """Give the slot back (idempotent) and serve whoever waits."""
        if not lease.released:
            lease.released = True
            lease.member.finish(lease.trial)
        self.pump()

    def pump(self) -> None:
        """Serve waiting requests while members are available; then, if some still wait,
        arrange to look again when a member comes back (or fail them all when none will
        soon)."""
        now = time.monotonic()
        while self._waiters:
            head = self._waiters[0]
            if head.future.done():  # cancelled: its owner removes it too, do not wait for it
                self._waiters.popleft()
                continue
            member = self._pick(now, head.avoid)
            if member is None:
                break
            self._waiters.popleft()
            head.future.set_result(Lease(member, member.start(now)))
        if self._waiters:
            self._wait_for_members(now)

    def _pick(self, now: float, avoid: MemberState | None) -> MemberState | None:
        best: MemberState | None = None
        best_key: tuple[bool, bool, float, int, int] | None = None
        best_index = 0
        count = len(self._members)
        for index, member in enumerate(self._members):
            if not member.available(now):
                continue
            if member.member.router:
                key = (member is avoid, False, float(index), 0, 0)
            else:
                key = (member is avoid, True, member.load, member.in_flight,
                       (index - self._next) % count)
            if best_key is None or key < best_key:
                best, best_key, best_index = member, key, index
        if best is not None:
            self._next = (best_index + 1) % count
        return best

    def _wait_for_members(self, now: float) -> None:
        # A member at its cap, or with a trial under way, is ready "now": a request ending
        # pumps again. Only times (back-off, cooldown) need a timer.
        soonest = min(member.ready_at(now) for member in self._members)
        if soonest - now > self._max_wait_out:
            error = AllMembersOut(soonest - now)
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.future.done():
                    waiter.future.set_exception(error)
            return
        if soonest > now and soonest < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = soonest
            self._timer = asyncio.get_running_loop().call_later(soonest - now, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self.pump()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._timer_at = None, float("inf")
