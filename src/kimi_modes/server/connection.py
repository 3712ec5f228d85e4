"""uvicorn's httptools protocol with a deadline for a request's header block.

uvicorn bounds only the idle time between two requests on a connection (``timeout_keep_alive``);
a client that opens a connection and sends its headers a byte at a time holds it (and a file
descriptor) forever: the slow-loris attack. The ASGI app cannot help, since it is only called
once the headers are complete. :func:`header_deadline_protocol` closes a connection whose
header block is not complete ``seconds`` after the connection was made, or after the first
byte of a later request on it. The body's own deadline is the app's (``server.body_timeout``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["header_deadline_protocol"]

log = logging.getLogger("kimi_modes.server")


class _HeaderDeadlineProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` that closes a connection slower than ``header_timeout``
    to complete a header block. It hooks only the parser's callbacks and the transport's
    ``connection_made``/``connection_lost``."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_deadline()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        # The first byte of a request on a kept-alive connection (for the first request the
        # deadline runs since the connection was made).
        if self._header_deadline is None:
            self._arm_header_deadline()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._cancel_header_deadline()
        super().on_headers_complete()

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _cancel_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self.transport.is_closing():
            client = "{}:{}".format(*self.client) if self.client else "a client"
            log.info("closed the connection of %s: no complete request headers within %g s",
                     client, self.header_timeout)
            self.transport.close()


def header_deadline_protocol(seconds: float) -> type[HttpToolsProtocol]:
    """The protocol class to give ``uvicorn.Config(http=...)``: httptools (as ``http="auto"``
    picks when installed, which ``uvicorn[standard]`` does) with a ``seconds`` header
    deadline."""
    return type("HeaderDeadlineProtocol", (_HeaderDeadlineProtocol,), {"header_timeout": seconds})
