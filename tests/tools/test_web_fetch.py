"""web_fetch against a real HTTP server started in the test (on 127.0.0.1, reached with
``allow_private`` or an ``allow_networks`` entry), and its refusals with the default config.

No test sends traffic anywhere but loopback: the ``loopback_only`` fixture makes every
socket connect and every name lookup to anything else fail and records it, and the refusal
tests assert that nothing was even attempted (and, for loopback servers, that the server saw
no connection).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from kimi_modes.tools import RunContext, Toolset
from kimi_modes.tools.web import FetchLimits, WebFetchTool

if TYPE_CHECKING:
    from tests.tools.conftest import Attempts

# --------------------------------------------------------------------------- servers


@dataclass
class Server:
    url: str
    port: int
    requests: list[str] = field(default_factory=list)


PAGE = b"""<!doctype html><html><head><title>  The  Page </title>
<style>body { color: red }</style><script>var secret = "do-not-show";</script></head>
<body><nav><a href="/">Home</a></nav>
<h1>Main heading</h1><p>Some <b>bold</b> text and a <a href="sub/page.html">relative link</a>
and an <a href="javascript:alert(1)">evil link</a>.</p>
<img src="pic.png" alt="a cat"><ul><li>one</li><li>two</li></ul>
<noscript>enable js</noscript><iframe src="https://ads.example/"></iframe>
</body></html>"""


async def _handler_redirect(request: web.Request) -> web.Response:
    n = int(request.match_info["n"])
    raise web.HTTPFound("/text" if n == 0 else f"/redirect/{n - 1}")


async def _handler_loop(request: web.Request) -> web.Response:
    return web.Response(status=301, headers={"Location": "/loop"})


async def _handler_to(request: web.Request) -> web.Response:
    status = int(request.query.get("status", "302"))
    return web.Response(status=status, headers={"Location": request.query["url"]})


async def _handler_big(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    line = b"0123456789" * 10 + b"\n"
    try:
        for _ in range(50_000):  # ~5 MB
            await resp.write(line * 10)
    except (ConnectionResetError, ConnectionError):
        pass
    return resp


async def _handler_bomb(request: web.Request) -> web.Response:
    body = gzip.compress(b"A" * 50_000_000, compresslevel=9)
    return web.Response(body=body, headers={"Content-Type": "text/plain",
                                            "Content-Encoding": "gzip"})


async def _handler_slow(request: web.Request) -> web.Response:
    await asyncio.sleep(30)
    return web.Response(text="late")


async def _handler_trickle(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    await resp.prepare(request)
    for _ in range(300):
        await resp.write(b"x")
        await asyncio.sleep(0.1)
    return resp


@pytest.fixture
async def server(loopback_only: Attempts) -> AsyncIterator[Server]:
    requests: list[str] = []

    @web.middleware
    async def record(request: web.Request, handler: Any) -> Any:
        requests.append(request.path_qs)
        return await handler(request)

    app = web.Application(middlewares=[record])
    routes = {
        "/html": lambda r: web.Response(body=PAGE, content_type="text/html",
                                        charset="utf-8"),
        "/latin1": lambda r: web.Response(body="<p>café</p>".encode("latin-1"),
                                          headers={"Content-Type":
                                                   "text/html; charset=iso-8859-1"}),
        "/json": lambda r: web.json_response({"b": [1, 2], "a": {"x": "é"}}),
        "/text": lambda r: web.Response(text="plain text body\n"),
        "/png": lambda r: web.Response(body=b"\x89PNG\r\n\x1a\n" + bytes(1000),
                                       content_type="image/png"),
        "/missing": lambda r: web.Response(status=404, text="<h1>Not here</h1>",
                                           content_type="text/html"),
        "/untyped": lambda r: web.Response(body=b'{"sniffed": true}'),
        "/octets": lambda r: web.Response(body=b"\x00\x01binary", content_type=
                                          "application/octet-stream"),
        "/empty": lambda r: web.Response(status=204),
    }
    for path, fn in routes.items():
        async def handle(request: web.Request, fn: Any = fn) -> web.StreamResponse:
            resp: web.StreamResponse = fn(request)
            return resp
        app.router.add_get(path, handle)
    app.router.add_get("/redirect/{n}", _handler_redirect)
    app.router.add_get("/to", _handler_to)
    app.router.add_get("/loop", _handler_loop)
    app.router.add_get("/big", _handler_big)
    app.router.add_get("/bomb", _handler_bomb)
    app.router.add_get("/slow", _handler_slow)
    app.router.add_get("/trickle", _handler_trickle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Server(f"http://127.0.0.1:{port}", port, requests)
    await runner.cleanup()


@dataclass
class Listener:
    """A bare TCP listener that counts the connections it accepts."""

    port: int
    accepted: int = 0


async def _listen(host: str) -> tuple[Listener, asyncio.Server]:
    listener = Listener(0)

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        listener.accepted += 1
        writer.close()

    srv = await asyncio.start_server(on_connect, host, 0)
    listener.port = srv.sockets[0].getsockname()[1]
    return listener, srv


@pytest.fixture
def ctx(tmp_path: Path) -> RunContext:
    return RunContext("run-web", tmp_path)


def open_tool(**kwargs: Any) -> WebFetchTool:
    return WebFetchTool(allow_private=True, **kwargs)


async def fetch(tool: WebFetchTool, ctx: RunContext, url: str, **extra: Any) -> Any:
    return await tool.run({"url": url, **extra}, ctx)


# --------------------------------------------------------------------------- content


async def test_html_becomes_markdown(server: Server, ctx: RunContext) -> None:
    r = await fetch(open_tool(), ctx, server.url + "/html")
    assert not r.is_error, r.output
    assert r.output.startswith(f"URL: {server.url}/html\nStatus: 200 OK\n"
                               "Content-Type: text/html\nTitle: The Page\n\n")
    assert "# Main heading" in r.output
    assert "Some **bold** text" in r.output
    assert f"[relative link]({server.url}/sub/page.html)" in r.output
    assert "evil link" in r.output and "javascript:" not in r.output
    assert "[image: a cat]" in r.output
    assert "- one\n- two" in r.output
    for hidden in ("do-not-show", "color: red", "enable js", "ads.example"):
        assert hidden not in r.output
    assert r.meta["kind"] == "html" and r.meta["status"] == 200


async def test_charset_from_header(server: Server, ctx: RunContext) -> None:
    r = await fetch(open_tool(), ctx, server.url + "/latin1")
    assert "café" in r.output


async def test_json_is_pretty_printed(server: Server, ctx: RunContext) -> None:
    r = await fetch(open_tool(), ctx, server.url + "/json")
    assert not r.is_error
    body = r.output.split("\n\n", 1)[1]
    assert json.loads(body) == {"b": [1, 2], "a": {"x": "é"}}
    assert '  "b": [' in body and "é" in body


async def test_text_passes_through(server: Server, ctx: RunContext) -> None:
    r = await fetch(open_tool(), ctx, server.url + "/text")
    assert r.output.endswith("\n\nplain text body\n")


async def test_binary_is_described_not_dumped(server: Server, ctx: RunContext) -> None:
    r = await fetch(open_tool(), ctx, server.url + "/png")
    assert not r.is_error
    assert "[Binary content (image/png, 1008 bytes) is not shown" in r.output
    assert "PNG" not in r.output.split("\n\n", 1)[1].replace("image/png", "")


async def test_octet_stream_is_sniffed(server: Server, ctx: RunContext) -> None:
    # aiohttp's server always sends a type (application/octet-stream when none is set);
    # an untyped body takes the same path.
    r = await fetch(open_tool(), ctx, server.url + "/untyped")
    assert '"sniffed": true' in r.output and r.meta["kind"] == "json"
    r = await fetch(open_tool(), ctx, server.url + "/octets")
    assert "[Binary content (application/octet-stream, 8 bytes)" in r.output


async def test_http_error_is_an_error_result_with_the_page(server: Server,
                                                           ctx: RunContext) -> None:
    r = await fetch(open_tool(), ctx, server.url + "/missing")
    assert r.is_error
    assert r.output.startswith("Error: HTTP 404 Not Found")
    assert "# Not here" in r.output and r.meta["status"] == 404


async def test_empty_body(server: Server, ctx: RunContext) -> None:
    r = await fetch(open_tool(), ctx, server.url + "/empty")
    assert not r.is_error and "(empty body)" in r.output


# --------------------------------------------------------------------------- redirects


async def test_redirect_chain_is_followed(server: Server, ctx: RunContext) -> None:
    r = await fetch(open_tool(), ctx, server.url + "/redirect/3")
    assert not r.is_error, r.output
    assert f"URL: {server.url}/text" in r.output
    assert f"Redirected from: {server.url}/redirect/3" in r.output
    assert r.meta["redirects"] == 4
    assert server.requests == ["/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0",
                               "/text"]


async def test_too_many_redirects(server: Server, ctx: RunContext) -> None:
    tool = open_tool(limits=FetchLimits(max_redirects=3))
    r = await fetch(tool, ctx, server.url + "/loop")
    assert r.is_error and "too many redirects (more than 3)" in r.output
    assert len(server.requests) == 4


async def test_redirect_to_another_scheme_is_refused(server: Server,
                                                     ctx: RunContext) -> None:
    r = await fetch(open_tool(), ctx, server.url + "/to?url=file:///etc/passwd")
    assert r.is_error and "only http:// and https://" in r.output and "root:" not in r.output


# --------------------------------------------------------------------------- limits


async def test_body_is_capped_while_streaming(server: Server, ctx: RunContext) -> None:
    tool = open_tool(limits=FetchLimits(max_bytes=100_000, max_chars=1_000))
    r = await fetch(tool, ctx, server.url + "/big")
    assert not r.is_error
    assert r.meta["bytes"] == 100_000 and r.meta["body_truncated"]
    assert "[The response was larger than 100000 bytes" in r.output
    assert "[Characters 0-1000 of 100000. Call web_fetch with start=1000 for more.]" in r.output
    assert len(r.output) < 1_500


async def test_start_pages_through_without_refetching(server: Server,
                                                      ctx: RunContext) -> None:
    tool = open_tool(limits=FetchLimits(max_bytes=50_000, max_chars=2_000))
    first = await fetch(tool, ctx, server.url + "/big")
    second = await fetch(tool, ctx, server.url + "/big", start=2_000)
    assert "[Characters 2000-4000 of 50000." in second.output
    assert server.requests == ["/big"]
    text = ("0123456789" * 10 + "\n") * 1000
    assert first.output.split("\n\n", 1)[1].startswith(text[:2000] + "\n\n[Characters 0-2000")
    assert second.output.split("\n\n", 1)[1].startswith(text[2000:4000] + "\n\n[")
    past = await fetch(tool, ctx, server.url + "/big", start=60_000)
    assert "past the end" in past.output


async def test_decompression_bomb_is_capped(server: Server, ctx: RunContext) -> None:
    tool = open_tool(limits=FetchLimits(max_bytes=200_000))
    r = await fetch(tool, ctx, server.url + "/bomb")
    assert not r.is_error
    assert r.meta["bytes"] == 200_000 and r.meta["body_truncated"]


async def test_slow_response_times_out(server: Server, ctx: RunContext) -> None:
    tool = open_tool(limits=FetchLimits(timeout=0.5))
    loop = asyncio.get_running_loop()
    started = loop.time()
    r = await fetch(tool, ctx, server.url + "/slow")
    assert loop.time() - started < 3
    assert r.is_error and "timed out after 0.5 s" in r.output and r.meta["error"] == "timeout"


async def test_trickling_body_times_out(server: Server, ctx: RunContext) -> None:
    tool = open_tool(limits=FetchLimits(timeout=0.7))
    r = await fetch(tool, ctx, server.url + "/trickle")
    assert r.is_error and "timed out after 0.7 s" in r.output


async def test_through_the_toolset(server: Server, ctx: RunContext) -> None:
    toolset = Toolset([open_tool()])
    decl = toolset.declarations()[0]["function"]
    assert decl["name"] == "web_fetch" and decl["parameters"]["required"] == ["url"]
    r = await toolset.call("web_fetch", json.dumps({"url": server.url + "/text"}), ctx)
    assert "plain text body" in r.output
    r = await toolset.call("web_fetch", json.dumps({"url": server.url, "start": -1}), ctx)
    assert r.is_error and "invalid arguments" in r.output


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1:70/", "data:text/plain,hi",
    "javascript:alert(1)", "http://", "not a url", "//example.com/x",
    "http://user:pw@example.com/", "http://%31%32%37.0.0.1/", "http://1.2.3.4.5/",
    "http://999.0.0.1/",
])
async def test_only_http_urls(ctx: RunContext, loopback_only: Attempts, url: str) -> None:
    r = await fetch(WebFetchTool(), ctx, url)
    assert r.is_error and r.meta["error"] == "invalid_url", r.output
    assert loopback_only.connects == [] and loopback_only.lookups == []


@pytest.mark.parametrize(("host", "reason"), [
    ("127.0.0.1", "loopback"),
    ("localhost", "loopback"),
    ("LOCALHOST.", "loopback"),
    ("api.localhost", "loopback"),
    ("0x7f000001", "loopback"),
    ("2130706433", "loopback"),
    ("0177.0.0.1", "loopback"),
    ("127.1", "loopback"),
])
async def test_loopback_server_is_refused_without_a_connection(
        ctx: RunContext, loopback_only: Attempts, host: str, reason: str) -> None:
    listener, srv = await _listen("127.0.0.1")
    try:
        r = await fetch(WebFetchTool(), ctx, f"http://{host}:{listener.port}/")
        assert r.is_error and r.meta["error"] == "refused", r.output
        assert f"a {reason} address" in r.output and "127.0.0.1" in r.output
        await asyncio.sleep(0.05)
        assert listener.accepted == 0
    finally:
        srv.close()
        await srv.wait_closed()
    assert loopback_only.connects == []


async def test_ipv6_loopback_is_refused_without_a_connection(
        ctx: RunContext, loopback_only: Attempts) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        listener, srv = await _listen("::1")
    except OSError:
        pytest.skip("::1 is not available here")
    try:
        for host in ("[::1]", "[::ffff:127.0.0.1]", "[0:0:0:0:0:0:0:1]"):
            r = await fetch(WebFetchTool(), ctx, f"http://{host}:{listener.port}/")
            assert r.is_error and "loopback" in r.output, r.output
        await asyncio.sleep(0.05)
        assert listener.accepted == 0
    finally:
        srv.close()
        await srv.wait_closed()


@pytest.mark.parametrize(("url", "reason"), [
    ("http://10.0.0.1/", "private"),
    ("http://10.255.255.254:8080/admin", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://0xa9fea9fe/latest/meta-data/", "link-local"),
    ("http://[fd00::1]/", "private"),
    ("http://[fe80::1%25eth0]/", "link-local"),
    ("http://[::ffff:169.254.169.254]/", "link-local (embedded in IPv6)"),
    ("http://[::ffff:a9fe:a9fe]/", "link-local (embedded in IPv6)"),
    ("http://0.0.0.0:80/", "unspecified"),
    ("http://[::]/", "unspecified"),
    ("http://224.0.0.1/", "multicast"),
    ("http://100.64.0.1/", "non-global"),
    ("https://192.168.0.10:8443/", "private"),
])
async def test_private_addresses_are_refused_before_any_traffic(
        ctx: RunContext, loopback_only: Attempts, url: str, reason: str) -> None:
    r = await fetch(WebFetchTool(), ctx, url)
    assert r.is_error and r.meta["error"] == "refused", r.output
    assert f"a {reason} address" in r.output
    assert loopback_only.connects == [] and loopback_only.lookups == []


class FakeDNS:
    """A resolver answering from a table (a list of answers per name, one per lookup)."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[dict[str, Any]]:
        self.calls.append(host)
        answers = self.table[host]
        current = answers[0] if len(answers) == 1 else answers.pop(0)
        return [{"hostname": host, "host": a, "port": port,
                 "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                 "proto": 0, "flags": 0} for a in current]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(("answers", "reason"), [
    (["10.0.0.7"], "private"),
    (["169.254.169.254"], "link-local"),
    (["203.0.113.9"], "private"),
    (["93.184.216.34", "192.168.0.2"], "private"),
    (["::ffff:127.0.0.1"], "loopback (embedded in IPv6)"),
])
async def test_names_resolving_to_private_addresses_are_refused(
        ctx: RunContext, loopback_only: Attempts, answers: list[str], reason: str) -> None:
    dns = FakeDNS({"intranet.example": [answers]})
    tool = WebFetchTool(dns_resolver=dns)  # type: ignore[arg-type]
    r = await fetch(tool, ctx, "http://intranet.example/secret")
    assert r.is_error and r.meta["error"] == "refused", r.output
    assert "intranet.example resolves to" in r.output and f"a {reason} address" in r.output
    assert dns.calls == ["intranet.example"]
    assert loopback_only.connects == [] and loopback_only.lookups == []


async def test_redirect_to_a_private_address_is_refused(server: Server, ctx: RunContext,
                                                        loopback_only: Attempts) -> None:
    # The test server stands in for a public site: only its address is allowed.
    tool = WebFetchTool(allow_networks=["127.0.0.1/32"])
    for target, reason in (("http://169.254.169.254/latest/meta-data/", "link-local"),
                           ("http://10.0.0.1/", "private"),
                           ("http://[::1]:1/", "loopback"),
                           ("http://0x0a000001/", "private")):
        r = await fetch(tool, ctx, f"{server.url}/to?url={target}&status=307")
        assert r.is_error and r.meta["error"] == "refused", r.output
        assert f"refused to fetch a redirect to {target}" in r.output
        assert f"a {reason} address" in r.output
    assert loopback_only.connects == [] and loopback_only.lookups == []


async def test_redirect_to_a_name_resolving_private_is_refused(
        server: Server, ctx: RunContext, loopback_only: Attempts) -> None:
    # DNS rebinding across hops: the name is checked (and resolved) again on every hop.
    dns = FakeDNS({"site.example": [["127.0.0.1"], ["10.0.0.9"]]})
    tool = WebFetchTool(allow_networks=["127.0.0.1/32"], dns_resolver=dns)  # type: ignore[arg-type]
    url = f"http://site.example:{server.port}/to?url=http://site.example:{server.port}/text"
    r = await fetch(tool, ctx, url)
    assert r.is_error and "site.example resolves to 10.0.0.9" in r.output
    assert dns.calls == ["site.example", "site.example"]
    assert server.requests == [f"/to?url=http://site.example:{server.port}/text"]
    assert loopback_only.connects == []


async def test_the_connection_goes_to_the_checked_address(
        server: Server, ctx: RunContext, loopback_only: Attempts) -> None:
    # One lookup per hop; the connection uses its answer (no second lookup to rebind).
    dns = FakeDNS({"rebind.example": [["127.0.0.1"], ["10.0.0.9"], ["10.0.0.9"]]})
    tool = WebFetchTool(allow_networks=["127.0.0.1/32"], dns_resolver=dns)  # type: ignore[arg-type]
    r = await fetch(tool, ctx, f"http://rebind.example:{server.port}/text")
    assert not r.is_error, r.output
    assert "plain text body" in r.output
    assert dns.calls == ["rebind.example"]
    assert loopback_only.connects == []


async def test_allow_private_default_is_off_and_on_reaches_loopback(
        server: Server, ctx: RunContext) -> None:
    assert (await fetch(WebFetchTool(), ctx, server.url + "/text")).is_error
    assert not (await fetch(WebFetchTool(allow_private=True), ctx, server.url + "/text")).is_error
    assert server.requests == ["/text"]
