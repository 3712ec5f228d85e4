"""An engine that answers from a script: the test double of the Engine seam (as httpx ships
``MockTransport``), for code above the engines that needs an engine without a server.

Each call to :meth:`ScriptedEngine.stream` plays the next reply of the script (the last one
again once the script is used up) and records the request it was given. It is a real engine
in every other respect: closing the stream stops it, and :meth:`aclose` is idempotent.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from kimi_modes.engines.base import ChatRequest, Event


class ScriptedEngine:
    """Plays ``replies`` (each a list of events) one per call; ``requests`` holds what each
    call was given, in order."""

    def __init__(self, *replies: Sequence[Event], name: str = "scripted") -> None:
        if not replies:
            raise ValueError("a script needs at least one reply")
        self.name = name
        self.replies = [list(reply) for reply in replies]
        self.requests: list[ChatRequest] = []
        self.closed = False

    async def stream(self, request: ChatRequest) -> AsyncGenerator[Event, None]:
        reply = self.replies[min(len(self.requests), len(self.replies) - 1)]
        self.requests.append(request)
        for event in reply:
            yield event

    async def aclose(self) -> None:
        self.closed = True
