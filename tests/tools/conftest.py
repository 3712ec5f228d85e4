"""Fixtures of the web tools' tests: a guard that keeps every test's traffic on loopback, and
a made-up DNS that answers through the event loop's ``getaddrinfo`` (the function aiohttp's
default resolver, the one ``web_fetch`` uses in production, calls)."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest


@dataclass
class Attempts:
    """What the guard saw. ``connects``/``lookups``: refused attempts to leave loopback.
    ``dns``: made-up answers, per name a list of answers, one per lookup (the last one
    repeats); ``resolved``: the names answered from ``dns``, once per lookup."""

    connects: list[Any] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    dns: dict[str, list[list[str]]] = field(default_factory=dict)
    resolved: list[str] = field(default_factory=list)

    def answer(self, host: str, port: Any, family: int) -> list[Any]:
        """``getaddrinfo``'s result for a name of ``dns``."""
        self.resolved.append(host)
        answers = self.dns[host]
        current = answers.pop(0) if len(answers) > 1 else answers[0]
        infos = []
        for address in current:
            fam = socket.AF_INET6 if ":" in address else socket.AF_INET
            if family not in (0, fam):
                continue
            sockaddr = (address, int(port or 0), 0, 0) if fam == socket.AF_INET6 else (
                address, int(port or 0))
            infos.append((fam, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, f"made-up DNS: no address for {host}")
        return infos


def _loopback(address: Any) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture
async def loopback_only(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Attempts]:
    """Fail (and record) any connect or lookup that is not loopback, at the socket level and
    at the event loop's, so a bug in the code under test cannot send traffic out. Names put
    in ``attempts.dns`` are answered from there, without any DNS traffic."""
    attempts = Attempts()
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        if not _loopback(address):
            attempts.connects.append(address)
            raise ConnectionRefusedError(f"test guard: no traffic to {address}")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not _loopback(address):
            attempts.connects.append(address)
            raise ConnectionRefusedError(f"test guard: no traffic to {address}")
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)

    loop = asyncio.get_running_loop()
    real_sock_connect = loop.sock_connect
    real_getaddrinfo = loop.getaddrinfo

    async def sock_connect(sock: socket.socket, address: Any) -> None:
        if not _loopback(address):
            attempts.connects.append(address)
            raise ConnectionRefusedError(f"test guard: no traffic to {address}")
        await real_sock_connect(sock, address)

    async def getaddrinfo(host: Any, port: Any = None, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host in attempts.dns:
            return attempts.answer(host, port, int(kwargs.get("family", 0)))
        if host not in ("localhost", "127.0.0.1", "::1"):
            attempts.lookups.append(str(host))
            raise socket.gaierror(socket.EAI_NONAME, f"test guard: no lookup of {host}")
        return await real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "sock_connect", sock_connect)
    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    yield attempts
