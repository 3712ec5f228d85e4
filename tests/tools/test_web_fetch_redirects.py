"""SSRF through web_fetch with real servers on loopback: a "public" server (127.0.0.1, the one
address the tool is told to allow, standing in for a site on the internet) that redirects, and
"internal" servers the tool must never reach (127.0.0.2 and ::1, the gateway's own loopback).
Names are answered by a made-up DNS through the event loop's ``getaddrinfo``, the function the
tool's production resolver calls, so nothing here needs a network.

Each test says what it tries and asserts that the internal server saw no connection at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import pytest
from aiohttp import web

from kimi_modes.tools import RunContext
from kimi_modes.tools.web import WebFetchTool

if TYPE_CHECKING:
    from tests.tools.conftest import Attempts

PUBLIC = "127.0.0.1"
INTERNAL = "127.0.0.2"


@dataclass
class Site:
    """A running server: its address, port and every connection and request it saw."""

    host: str
    port: int
    connections: int = 0
    requests: list[str] = field(default_factory=list)

    def url(self, host: str | None = None) -> str:
        h = host or self.host
        return f"http://{'[' + h + ']' if ':' in h else h}:{self.port}"

    def redirect(self, target: str, status: int = 302) -> str:
        """This server's URL answering ``status`` with ``Location: target``."""
        return f"{self.url()}/to?{urlencode({'status': status, 'url': target})}"


async def _start(host: str, port: int = 0) -> tuple[Site, web.AppRunner]:
    site = Site(host, port)

    @web.middleware
    async def record(request: web.Request, handler: Any) -> Any:
        site.requests.append(request.path_qs)
        return await handler(request)

    async def to(request: web.Request) -> web.Response:
        status = int(request.query.get("status", "302"))
        return web.Response(status=status, headers={"Location": request.query["url"]})

    async def text(request: web.Request) -> web.Response:
        return web.Response(text=f"served by {site.host}")

    app = web.Application(middlewares=[record])
    app.router.add_get("/to", to)
    app.router.add_get("/text", text)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    tcp = web.TCPSite(runner, host, port)
    await tcp.start()
    server = tcp._server
    assert isinstance(server, asyncio.base_events.Server)
    site.port = server.sockets[0].getsockname()[1]
    real_accept = server._protocol_factory

    def counting() -> Any:
        site.connections += 1
        return real_accept()

    server._protocol_factory = counting
    return site, runner


@contextlib.asynccontextmanager
async def _serving(host: str, port: int = 0) -> AsyncIterator[Site]:
    try:
        site, runner = await _start(host, port)
    except OSError as exc:
        pytest.skip(f"cannot listen on {host}: {exc}")
    try:
        yield site
    finally:
        await runner.cleanup()


@pytest.fixture
async def public(loopback_only: Attempts) -> AsyncIterator[Site]:
    async with _serving(PUBLIC) as site:
        yield site


@pytest.fixture
async def internal(public: Site) -> AsyncIterator[Site]:
    """On 127.0.0.2, at the public server's port (what a rebinding attacker aims at)."""
    async with _serving(INTERNAL, public.port) as site:
        yield site


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    return RunContext("run-ssrf", tmp_path)


def _tool() -> WebFetchTool:
    """web_fetch allowing only the public server's address (the rest: the default rules)."""
    return WebFetchTool(allow_networks=[f"{PUBLIC}/32"])


def _numeric_forms(port: int) -> Iterator[str]:
    """127.0.0.2 written every way a resolver or a browser accepts."""
    for host in (INTERNAL, "127.2", "127.0.2", "2130706434", "0x7f000002", "0177.0.0.2",
                 "0x7f.0.0.2", "[::ffff:127.0.0.2]", "[::ffff:7f00:2]", "[2002:7f00:2::]"):
        yield f"http://{host}:{port}/text"


async def test_the_public_stand_in_is_reachable(public: Site, internal: Site,
                                                ctx: RunContext) -> None:
    # The control: without it the refusals below could pass for a broken setup.
    r = await _tool().run({"url": public.url() + "/text"}, ctx)
    assert not r.is_error and "served by 127.0.0.1" in r.output, r.output
    r = await WebFetchTool(allow_private=True).run({"url": internal.url() + "/text"}, ctx)
    assert not r.is_error and "served by 127.0.0.2" in r.output, r.output


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_to_loopback_is_never_followed(
        public: Site, internal: Site, ctx: RunContext, loopback_only: Attempts,
        status: int) -> None:
    # Tries: a public page answering 30x with Location: the internal server, in every
    # numeric spelling of its address. Must not happen: any connection to it.
    for target in _numeric_forms(internal.port):
        r = await _tool().run({"url": public.redirect(target, status)}, ctx)
        assert r.is_error and r.meta["error"] == "refused", r.output
        assert "loopback" in r.output and "refused to fetch a redirect to" in r.output
    await asyncio.sleep(0.05)
    assert internal.connections == 0 and internal.requests == []
    assert len(public.requests) == len(list(_numeric_forms(0)))
    assert loopback_only.connects == [] and loopback_only.lookups == []


async def test_a_redirect_to_ipv6_loopback_is_never_followed(
        public: Site, ctx: RunContext, loopback_only: Attempts) -> None:
    # Tries: Location: http://[::1]:PORT/ (a server listening there). Must not happen: a
    # connection to it.
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    async with _serving("::1") as v6:
        for host in ("[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:0:1]"):
            target = f"http://{host}:{v6.port}/text"
            r = await _tool().run({"url": public.redirect(target)}, ctx)
            assert r.is_error and "loopback" in r.output, r.output
        await asyncio.sleep(0.05)
        assert v6.connections == 0 and v6.requests == []
    assert loopback_only.connects == []


@pytest.mark.parametrize("target", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.0.1/", "http://100.64.0.1/",
    "http://0.0.0.0/", "http://[::]/", "http://[fe80::1%25lo]/",
])
async def test_a_redirect_to_metadata_or_a_private_range_is_never_followed(
        public: Site, ctx: RunContext, loopback_only: Attempts, target: str) -> None:
    # Tries: a redirect to the cloud metadata address and the private ranges. Must not
    # happen: any connection attempt or lookup (the guard records every one).
    r = await _tool().run({"url": public.redirect(target, 307)}, ctx)
    assert r.is_error and r.meta["error"] == "refused", r.output
    assert f"refused to fetch a redirect to {target}" in r.output
    assert len(public.requests) == 1
    assert loopback_only.connects == [] and loopback_only.lookups == []


@pytest.mark.parametrize("answers", [
    [INTERNAL], ["::1"], ["::ffff:127.0.0.2"], [PUBLIC, INTERNAL], ["169.254.169.254"],
    ["10.1.2.3"],
])
async def test_a_name_resolving_to_loopback_is_refused(
        public: Site, internal: Site, ctx: RunContext, loopback_only: Attempts,
        answers: list[str]) -> None:
    # Tries: a host name whose DNS answer is an internal address (or holds one among public
    # ones), directly and as a redirect target. Must not happen: a connection to it.
    loopback_only.dns["internal.test"] = [answers]
    for url in (f"http://internal.test:{internal.port}/text",
                public.redirect(f"http://internal.test:{internal.port}/text")):
        r = await _tool().run({"url": url}, ctx)
        assert r.is_error and r.meta["error"] == "refused", r.output
        assert "internal.test resolves to" in r.output
    await asyncio.sleep(0.05)
    assert internal.connections == 0 and internal.requests == []
    assert loopback_only.connects == [] and loopback_only.lookups == []


def _hosts_file_loopback_name() -> str | None:
    """A name of the system's hosts file, other than ``localhost``, for a loopback address."""
    with contextlib.suppress(OSError), open("/etc/hosts", encoding="utf-8") as hosts:
        for line in hosts:
            fields = line.split("#", 1)[0].split()
            if fields and (fields[0].startswith("127.") or fields[0] == "::1"):
                for name in fields[1:]:
                    if name != "localhost" and not name.endswith(".localhost"):
                        return name
    return None


async def test_a_hosts_file_name_for_loopback_is_refused(ctx: RunContext) -> None:
    # Tries: a name the system resolver maps to 127.0.0.1 with no DNS at all (the machine's
    # own hosts file), through the real resolver, no guard. Must not happen: a connection.
    name = _hosts_file_loopback_name()
    if name is None:
        pytest.skip("/etc/hosts names no loopback address but localhost")
    async with _serving(PUBLIC) as target:
        r = await WebFetchTool().run({"url": f"http://{name}:{target.port}/text"}, ctx)
        assert r.is_error and r.meta["error"] == "refused", r.output
        assert f"{name} resolves to" in r.output and "loopback" in r.output
        await asyncio.sleep(0.05)
        assert target.connections == 0 and target.requests == []


async def test_dns_rebinding_cannot_move_the_connection(
        public: Site, internal: Site, ctx: RunContext, loopback_only: Attempts) -> None:
    # Tries: DNS rebinding. The name first resolves to the allowed address, every later
    # lookup to the internal one (same port). Must not happen: a second lookup for the same
    # connection, or a request reaching the internal server.
    loopback_only.dns["rebind.test"] = [[PUBLIC], [INTERNAL]]
    r = await _tool().run({"url": f"http://rebind.test:{public.port}/text"}, ctx)
    assert not r.is_error and "served by 127.0.0.1" in r.output, r.output
    assert loopback_only.resolved == ["rebind.test"]
    # A redirect to the same name is a new hop: resolved and checked again, and refused.
    loopback_only.dns["rebind.test"] = [[PUBLIC], [INTERNAL]]
    second = f"http://rebind.test:{public.port}/text"
    url = f"http://rebind.test:{public.port}/to?{urlencode({'url': second})}"
    r = await _tool().run({"url": url}, ctx)
    assert r.is_error and "rebind.test resolves to 127.0.0.2" in r.output, r.output
    assert loopback_only.resolved == ["rebind.test"] * 3
    await asyncio.sleep(0.05)
    assert internal.connections == 0 and internal.requests == []
    assert len(public.requests) == 2 and public.requests[0] == "/text"
