"""The live web view (``/ui``) served by the real gateway.

Plain HTTP: the pages and static files, their types and headers, no way out of ui_static.
In headless Chromium (Debian's, driven by Playwright): runs written into the gateway's run
database by this test process (a second :class:`RunStore` on the same file; the gateway
follows them by polling) show up live: a swarm's sub-agents, their statuses, the timeline and
the metrics; an Agent run's steps; the list with its filter, paging and links; the API-key
form; a dropped event stream resumed after the last seq; the SSE parser on split chunks.
"""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from kimi_modes.runs import RunStore
from kimi_modes.server.auth import tenant_id
from kimi_modes.server.runs_api import sse_frame
from kimi_modes.server.ui import STATIC_DIR

try:
    from playwright.async_api import Browser, Page, Route, async_playwright, expect
except ImportError:  # the plain HTTP test still runs
    MISSING = "the browser tests need the playwright package (pip install playwright)"
else:
    MISSING = ""
    expect.set_options(timeout=15_000)  # a loaded machine; the happy path takes under 1 s

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
if not MISSING and not CHROMIUM.exists():
    MISSING = ("the browser tests drive Debian's /usr/bin/chromium (apt-get install chromium), "
               "which is not installed; Playwright never downloads a browser here")
needs_chromium = pytest.mark.skipif(bool(MISSING), reason=MISSING or "-")

Proc = Any  # tests/conftest.py's Proc


@pytest.fixture
def gateway(start_simulator: Callable[..., Proc], start_gateway: Callable[..., Proc],
            upstream_toml: Callable[..., str]) -> Proc:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    return start_gateway(upstream_toml(sim.v1))


def runs_db(gw: Proc) -> Path:
    """The gateway's run database (conftest puts it next to the gateway's log)."""
    return Path(gw.log).with_suffix(".runs.sqlite3")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    tab = await context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    await context.close()
    assert errors == [], f"the page raised: {errors}"


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "You are helpful."}, {"role": "user", "content": text}]


def by_testid(page: Page, testid: str) -> Any:
    return page.get_by_test_id(testid)


# -- plain HTTP --------------------------------------------------------------------------


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (httpx would resolve the dot segments)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_pages_and_static_files(gateway: Proc) -> None:
    with httpx.Client(base_url=gateway.url, timeout=10) as client:
        for path in ("/ui", "/ui/"):
            response = client.get(path)
            assert response.status_code == 307
            assert response.headers["location"] == "/ui/runs"
        for path, script in (("/ui/runs", "runs.js"), ("/ui/runs/", "runs.js"),
                             ("/ui/runs/run_0123abcd", "run.js"),
                             ("/ui/runs/no-such-run", "run.js")):
            response = client.get(path)
            assert response.status_code == 200, path
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert f'src="/ui/static/{script}"' in response.text
            assert "script-src 'self'" in response.headers["content-security-policy"]
            assert response.headers["x-content-type-options"] == "nosniff"
        types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".html": "text/html; charset=utf-8"}
        served = sorted(p for p in STATIC_DIR.iterdir() if p.suffix in types)
        assert {p.name for p in served} >= {"runs.html", "run.html", "style.css", "run.js",
                                            "runs.js", "api.js", "sse.js"}
        for path in served:
            response = client.get(f"/ui/static/{path.name}")
            assert response.status_code == 200
            assert response.headers["content-type"] == types[path.suffix]
            assert response.headers["cache-control"] == "no-cache"
            assert response.content == path.read_bytes()
            # every module a script imports is served too (nothing left out of ui_static)
            for name in re.findall(r'from "\./([\w.-]+)"', path.read_text()):
                assert client.get(f"/ui/static/{name}").status_code == 200, (path.name, name)
        assert client.get("/ui/static/nope.js").status_code == 404
        # the runs API answers the page's question about an unknown run
        assert client.get("/v1/runs/no-such-run").status_code == 404

    secret = (STATIC_DIR.parent / "ui.py").read_bytes()
    for path in ("/ui/static/../ui.py", "/ui/static/%2e%2e/ui.py", "/ui/static/..%2fui.py",
                 "/ui/static/%2e%2e%2fui.py", "/ui/static/./run.js",
                 "/ui/static/ui_static/../../ui.py", "/ui/static//etc/passwd",
                 "/ui/static/%2fetc%2fpasswd", "/ui/static/..%5cui.py"):
        status, body = _raw_get(gateway.url, path)
        assert status == 404, path
        assert secret not in body and b"root:" not in body


# -- in the browser ----------------------------------------------------------------------


class SwarmFeed:
    """Writes a swarm-shaped run as the swarm would: the orchestrator's run with its
    fanout / subagent_* / swarm_metrics events, and each sub-agent's own run."""

    def __init__(self, store: RunStore) -> None:
        self.store = store
        self.outcomes: dict[str, dict[str, Any]] = {}
        self.run_id = ""
        self.subagents: list[str] = []

    async def start(self, task: str) -> str:
        run = await self.store.create_run("swarm", "kimi-k2.5-swarm", user(task))
        self.run_id = run.id
        await self.store.emit(run.id, "run_started", {"workspace": "/tmp/w"})
        await self.store.emit(run.id, "step", {"step": 1})
        await self.store.emit(run.id, "message_delta", {"step": 1, "kind": "reasoning",
                                                        "text": "Split it into five parts."})
        return run.id

    async def fan_out(self, tasks: list[str]) -> list[str]:
        args = json.dumps({"tasks": tasks})
        await self.store.emit(self.run_id, "tool_call", {
            "step": 1, "id": "functions.spawn_subagents:0", "name": "spawn_subagents",
            "arguments": args, "client": False})
        subs = []
        for index, task in enumerate(tasks):
            run = await self.store.create_run(
                "subagent", "kimi-k2.5-instant", user(task), {"index": index, "task": task},
                parent_id=self.run_id)
            subs.append({"id": run.id, "index": index, "task": task})
            self.outcomes[run.id] = {"index": index, "steps": 0, "tool_calls": 0}
        self.subagents = [s["id"] for s in subs]
        await self.store.emit(self.run_id, "fanout", {"step": 1,
                                                      "call_id": "functions.spawn_subagents:0",
                                                      "subagents": subs})
        return self.subagents

    async def sub_start(self, sub_id: str) -> None:
        o = self.outcomes[sub_id]
        o["started_at"] = time.time()
        await self.store.emit(self.run_id, "subagent_started",
                              {"id": sub_id, "index": o["index"], "started_at": o["started_at"]})
        await self.store.emit(sub_id, "run_started", {"workspace": "/tmp/s"})

    async def sub_step(self, sub_id: str, tool: str | None = None) -> None:
        o = self.outcomes[sub_id]
        o["steps"] += 1
        step = o["steps"]
        await self.store.emit(sub_id, "step", {"step": step})
        await self.store.emit(sub_id, "message_delta", {"step": step, "kind": "content",
                                                        "text": f"Working on step {step}."})
        if tool is not None:
            o["tool_calls"] += 1
            call_id = f"functions.{tool}:{o['tool_calls']}"
            await self.store.emit(sub_id, "tool_call", {"step": step, "id": call_id,
                                                        "name": tool, "arguments": "{}"})
            await self.store.emit(sub_id, "tool_result", {
                "step": step, "id": call_id, "name": tool, "output": "ok", "is_error": False,
                "duration": 0.1, "meta": {}})
        await self.store.emit(self.run_id, "subagent_progress", {
            "id": sub_id, "index": o["index"], "steps": o["steps"],
            "tool_calls": o["tool_calls"], "last_tool": tool})

    async def sub_finish(self, sub_id: str, status: str = "completed") -> None:
        o = self.outcomes[sub_id]
        finished_at = time.time()
        answer = f"Answer of sub-agent {o['index']}." if status == "completed" else None
        error = "upstream failed after 6 attempts" if status == "failed" else None
        usage = {"prompt_tokens": 100, "completion_tokens": 20, "reasoning_tokens": 0}
        await self.store.finish(sub_id, status, "answer" if answer else "error",
                                answer and {"role": "assistant", "content": answer}, usage,
                                error=error)
        await self.store.emit(self.run_id, "subagent_finished", {
            "id": sub_id, "index": o["index"], "status": status,
            "stop_reason": "answer" if answer else "error", "steps": o["steps"],
            "tool_calls": o["tool_calls"], "started_at": o["started_at"],
            "finished_at": finished_at, "duration": finished_at - o["started_at"],
            "usage": usage, "answer": answer, "error": error})

    async def finish(self, metrics: dict[str, Any]) -> None:
        await self.store.emit(self.run_id, "tool_result", {
            "step": 1, "id": "functions.spawn_subagents:0", "name": "spawn_subagents",
            "output": "5 sub-agents finished: 4 completed, 1 failed or cancelled.",
            "is_error": False, "duration": 2.0, "meta": {}})
        await self.store.emit(self.run_id, "step", {"step": 2})
        await self.store.emit(self.run_id, "message_delta", {
            "step": 2, "kind": "content", "text": "The synthesis of four answers."})
        await self.store.emit(self.run_id, "swarm_metrics", metrics)
        await self.store.finish(self.run_id, "completed", "answer",
                                {"role": "assistant", "content": "The synthesis of four answers."},
                                {"prompt_tokens": 500, "completion_tokens": 50,
                                 "reasoning_tokens": 10}, metrics=metrics)


def _metrics() -> dict[str, Any]:
    usage = {"prompt_tokens": 500, "completion_tokens": 100, "reasoning_tokens": 10}
    return {"wall_time": 3.25, "critical_steps": 5, "total_steps": 11, "orchestrator_steps": 2,
            "tool_calls": 8, "subagents": 5, "subagents_failed": 1, "parallelism": 2.75,
            "subagent_time": 8.9,
            "stages": [{"step": 1, "subagents": 5, "max_subagent_steps": 3, "critical": 4}],
            "tokens": {"orchestrator": usage, "subagents": usage,
                       "total": {"prompt_tokens": 1000, "completion_tokens": 200,
                                 "reasoning_tokens": 20}}}


def row(page: Page, sub_id: str) -> Any:
    return page.locator(f'[data-testid="subagent-row"][data-subagent-id="{sub_id}"]')


def bar(page: Page, sub_id: str) -> Any:
    return page.locator(f'[data-testid="timeline-bar"][data-subagent-id="{sub_id}"]')


@needs_chromium
async def test_a_swarm_run_live(gateway: Proc, page: Page) -> None:
    async with RunStore(runs_db(gateway), delta_interval=0.05) as store:
        feed = SwarmFeed(store)
        run_id = await feed.start("Compare five frameworks.")
        await page.goto(f"{gateway.url}/ui/runs/{run_id}")
        await expect(by_testid(page, "run-status")).to_have_attribute("data-status", "running")
        await expect(by_testid(page, "run-mode")).to_have_text("swarm")
        await expect(by_testid(page, "task")).to_have_text("Compare five frameworks.")
        await expect(by_testid(page, "stream-state")).to_have_attribute("data-state", "live")
        await expect(page.locator('[data-testid="step-reasoning"] pre')).to_have_text(
            "Split it into five parts.")
        await expect(by_testid(page, "metrics")).to_be_hidden()

        subs = await feed.fan_out([f"Framework {i}" for i in range(5)])
        await expect(by_testid(page, "subagent-row")).to_have_count(5)
        await expect(by_testid(page, "timeline-bar")).to_have_count(5)
        await expect(page.locator('[data-testid="subagent-row"][data-status="queued"]')
                     ).to_have_count(5)
        await expect(by_testid(page, "fanout")).to_contain_text("5 sub-agents")
        await expect(by_testid(page, "tool-call-name")).to_have_text("spawn_subagents")

        for sub in subs[:3]:
            await feed.sub_start(sub)
        await expect(page.locator('[data-testid="subagent-row"][data-status="running"]')
                     ).to_have_count(3)
        await expect(bar(page, subs[0])).to_have_attribute("data-status", "running")
        await expect(bar(page, subs[4])).to_have_attribute("data-status", "queued")
        # a running sub-agent's bar grows while the page watches it
        width = (await bar(page, subs[0]).bounding_box() or {"width": 0})["width"]
        await page.wait_for_function(
            "([id, w]) => document.querySelector(`[data-testid=timeline-bar]"
            "[data-subagent-id='${id}']`).getBoundingClientRect().width > w + 1",
            arg=[subs[0], width])

        await feed.sub_step(subs[0], "python")
        await feed.sub_step(subs[0], "web_search")
        await feed.sub_step(subs[1])
        await expect(row(page, subs[0]).get_by_test_id("subagent-steps")).to_have_text("2")
        await expect(row(page, subs[0]).get_by_test_id("subagent-tool-calls")).to_have_text("2")
        await expect(row(page, subs[0]).get_by_test_id("subagent-last-tool")
                     ).to_have_text("web_search")

        await feed.sub_finish(subs[0])
        await feed.sub_finish(subs[1], "failed")
        for sub in subs[3:]:
            await feed.sub_start(sub)
        for sub in subs[2:]:
            await feed.sub_step(sub, "python")
            await feed.sub_finish(sub)
        await expect(page.locator('[data-testid="subagent-row"][data-status="completed"]')
                     ).to_have_count(4)
        await expect(row(page, subs[1])).to_have_attribute("data-status", "failed")
        await expect(bar(page, subs[1])).to_have_attribute("data-status", "failed")
        await expect(row(page, subs[1]).get_by_test_id("subagent-outcome")).to_contain_text(
            "upstream failed after 6 attempts")
        await expect(row(page, subs[0]).get_by_test_id("subagent-outcome")).to_have_text(
            "Answer of sub-agent 0.")
        await expect(by_testid(page, "subagent-counts")).to_contain_text("4 completed, 1 failed")

        await feed.finish(_metrics())
        await expect(by_testid(page, "run-status")).to_have_attribute("data-status", "completed")
        await expect(by_testid(page, "metrics")).to_be_visible()
        await expect(by_testid(page, "metric-critical_steps")).to_have_text("5")
        await expect(by_testid(page, "metric-total_steps")).to_have_text("11")
        await expect(by_testid(page, "metric-tool_calls")).to_have_text("8")
        await expect(by_testid(page, "metric-subagents_failed")).to_have_text("1")
        await expect(by_testid(page, "metric-parallelism")).to_have_text("2.75×")
        await expect(by_testid(page, "metric-wall_time")).to_have_text("3.25 s")
        await expect(by_testid(page, "metric-tokens_prompt")).to_have_text("1000")
        await expect(by_testid(page, "final-answer")).to_have_text("The synthesis of four answers.")
        await expect(by_testid(page, "stream-state")).to_have_attribute("data-state", "ended")
        await expect(by_testid(page, "step")).to_have_count(2)
        await expect(by_testid(page, "timeline-bar")).to_have_count(5)

        # a sub-agent's own page, and the way back
        await row(page, subs[0]).get_by_test_id("subagent-link").click()
        await expect(page).to_have_url(f"{gateway.url}/ui/runs/{subs[0]}")
        await expect(by_testid(page, "run-mode")).to_have_text("subagent")
        await expect(by_testid(page, "run-index")).to_have_text("sub-agent #1")
        await expect(by_testid(page, "step")).to_have_count(2)
        await expect(by_testid(page, "tool-call")).to_have_count(2)
        await expect(by_testid(page, "final-answer")).to_have_text("Answer of sub-agent 0.")
        await expect(by_testid(page, "subagent-row")).to_have_count(0)
        await expect(by_testid(page, "timeline")).to_have_count(0)
        await by_testid(page, "parent-link").click()
        await expect(page).to_have_url(f"{gateway.url}/ui/runs/{run_id}")
        # reloaded after the end: the same picture, replayed
        await expect(page.locator('[data-testid="subagent-row"][data-status="completed"]')
                     ).to_have_count(4)
        await expect(by_testid(page, "metric-critical_steps")).to_have_text("5")

        # the list shows the swarm and its sub-agents; filtering by mode keeps the swarm
        await page.goto(f"{gateway.url}/ui/runs")
        await expect(by_testid(page, "run-row")).to_have_count(6)
        await by_testid(page, "mode-filter").select_option("swarm")
        await expect(by_testid(page, "run-row")).to_have_count(1)
        await expect(page).to_have_url(f"{gateway.url}/ui/runs?mode=swarm")
        swarm_row = page.locator(f'[data-testid="run-row"][data-run-id="{run_id}"]')
        await expect(swarm_row).to_have_attribute("data-status", "completed")
        await expect(swarm_row.get_by_test_id("run-steps")).to_have_text("2")
        await swarm_row.get_by_test_id("run-link").click()
        await expect(page).to_have_url(f"{gateway.url}/ui/runs/{run_id}")
        await expect(by_testid(page, "subagent-row")).to_have_count(5)


@needs_chromium
async def test_an_agent_run_page(gateway: Proc, page: Page) -> None:
    hostile = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
    async with RunStore(runs_db(gateway), delta_interval=0.05) as store:
        run = await store.create_run("agent", "kimi-k2.5-agent", user(f"Add 2 and 2 {hostile}"))
        await page.goto(f"{gateway.url}/ui/runs/{run.id}")
        await expect(by_testid(page, "run-status")).to_have_attribute("data-status", "queued")
        await store.emit(run.id, "run_started", {"workspace": "/tmp/w"})
        await store.emit(run.id, "step", {"step": 1})
        for part in ("I should ", "use the ", "python tool."):
            await store.emit(run.id, "message_delta", {"step": 1, "kind": "reasoning",
                                                       "text": part})
        await store.emit(run.id, "tool_call", {"step": 1, "id": "functions.python:0",
                                               "name": "python",
                                               "arguments": '{"code": "print(2+2)"}'})
        await expect(by_testid(page, "run-status")).to_have_attribute("data-status", "running")
        await expect(by_testid(page, "tool-call-status")).to_have_text("running…")
        await store.emit(run.id, "tool_result", {"step": 1, "id": "functions.python:0",
                                                 "name": "python", "output": f"4\n{hostile}",
                                                 "is_error": False, "duration": 0.42,
                                                 "meta": {"exit_code": 0}})
        await store.emit(run.id, "step", {"step": 2})
        await store.emit(run.id, "message_delta", {"step": 2, "kind": "content",
                                                   "text": f"It is 4. {hostile}"})
        await store.finish(run.id, "completed", "answer",
                           {"role": "assistant", "content": f"It is 4. {hostile}"},
                           {"prompt_tokens": 50, "completion_tokens": 9, "reasoning_tokens": 4})

        await expect(by_testid(page, "run-status")).to_have_attribute("data-status", "completed")
        await expect(by_testid(page, "step")).to_have_count(2)
        await expect(page.locator('[data-step="1"] [data-testid="step-reasoning"] pre')
                     ).to_have_text("I should use the python tool.")
        await expect(page.locator('[data-step="2"] [data-testid="step-reasoning"]')).to_be_hidden()
        await expect(by_testid(page, "tool-call-name")).to_have_text("python")
        await expect(by_testid(page, "tool-call-status")).to_have_text("done · 0.42 s")
        await expect(by_testid(page, "tool-call-output")).to_have_text(f"4\n{hostile}")
        await expect(by_testid(page, "tool-call-arguments")).to_contain_text('"print(2+2)"')
        await expect(by_testid(page, "final-answer")).to_have_text(f"It is 4. {hostile}")
        await expect(by_testid(page, "task")).to_have_text(f"Add 2 and 2 {hostile}")
        await expect(by_testid(page, "run-usage")).to_contain_text("50 prompt")
        await expect(by_testid(page, "run-steps")).to_have_text("2")
        await expect(by_testid(page, "run-tool-calls")).to_have_text("1")
        # an Agent run has no swarm parts, and model text never became markup
        await expect(by_testid(page, "subagents")).to_have_count(0)
        await expect(by_testid(page, "metrics")).to_have_count(0)
        await expect(by_testid(page, "parent-link")).to_be_hidden()
        assert await page.locator("main img, main script").count() == 0
        assert await page.evaluate("window.__pwned") is None

    await page.goto(f"{gateway.url}/ui/runs/run_missing")
    await expect(by_testid(page, "error")).to_contain_text("Not found")
    await expect(by_testid(page, "error")).to_contain_text("run_missing")
    await expect(by_testid(page, "error")).to_have_attribute("data-kind", "not_found")


@needs_chromium
async def test_the_list_pages_and_refreshes(gateway: Proc, page: Page) -> None:
    async with RunStore(runs_db(gateway)) as store:
        ids = []
        for i in range(27):
            run = await store.create_run("agent", "kimi-k2.5-agent", user(f"task {i:02d}"))
            ids.append(run.id)
        await page.goto(f"{gateway.url}/ui/runs")
        rows = by_testid(page, "run-row")
        await expect(rows).to_have_count(25)
        await expect(rows.first).to_have_attribute("data-run-id", ids[-1])  # newest first
        await expect(rows.first.get_by_test_id("run-task")).to_have_text("task 26")
        await expect(by_testid(page, "prev-page")).to_be_disabled()
        await by_testid(page, "next-page").click()
        await expect(rows).to_have_count(2)
        await expect(page).to_have_url(f"{gateway.url}/ui/runs?offset=25")
        await expect(rows.last).to_have_attribute("data-run-id", ids[0])
        await expect(by_testid(page, "next-page")).to_be_disabled()
        await by_testid(page, "prev-page").click()
        await expect(rows).to_have_count(25)

        # auto-refresh: a new run appears on top and a status change shows, without a reload
        await store.emit(ids[-1], "run_started", {})
        newest = await store.create_run("swarm", "kimi-k2.5-swarm", user("a new one"))
        await expect(rows.first).to_have_attribute("data-run-id", newest.id)
        await expect(rows.nth(1)).to_have_attribute("data-status", "running")
        await expect(rows).to_have_count(25)

        await by_testid(page, "status-filter").select_option("running")
        await expect(rows).to_have_count(1)
        await by_testid(page, "status-filter").select_option("")
        await by_testid(page, "mode-filter").select_option("swarm")
        await expect(rows).to_have_count(1)
        await rows.first.get_by_test_id("run-link").click()
        await expect(page).to_have_url(f"{gateway.url}/ui/runs/{newest.id}")
        await expect(by_testid(page, "task")).to_have_text("a new one")
        await by_testid(page, "back-to-list").click()
        await expect(rows).to_have_count(25)


@needs_chromium
async def test_the_key_form(start_simulator: Callable[..., Proc],
                            start_gateway: Callable[..., Proc],
                            upstream_toml: Callable[..., str], page: Page) -> None:
    sim = start_simulator("--ttft", "0", "--tpot", "0")
    gw = start_gateway('[server]\napi_keys = ["sk-ui"]\n' + upstream_toml(sim.v1))
    async with RunStore(runs_db(gw)) as store:
        run = await store.create_run("agent", "kimi-k2.5-agent", user("behind a key"),
                                     owner=tenant_id("sk-ui"))  # the key's own run
        await page.goto(f"{gw.url}/ui/runs")
        form = by_testid(page, "key-form")
        await expect(form).to_be_visible()
        await expect(by_testid(page, "key-message")).to_contain_text("missing API key")
        await by_testid(page, "key-input").fill("sk-wrong")
        await by_testid(page, "key-submit").click()
        await expect(by_testid(page, "key-message")).to_contain_text("invalid API key")
        await by_testid(page, "key-input").fill("sk-ui")
        await by_testid(page, "key-submit").click()
        await expect(form).to_have_count(0)
        await expect(by_testid(page, "run-row")).to_have_count(1)
        assert await page.evaluate("localStorage.getItem('kimi-modes.api-key')") == "sk-ui"

        # the run page (record and event stream) goes with the stored key, no form
        await by_testid(page, "run-link").click()
        await expect(by_testid(page, "stream-state")).to_have_attribute("data-state", "live")
        await store.emit(run.id, "run_started", {})
        await store.finish(run.id, "completed", "answer", "done")
        await expect(by_testid(page, "run-status")).to_have_attribute("data-status", "completed")
        await expect(by_testid(page, "final-answer")).to_have_text("done")
        await expect(form).to_have_count(0)


@needs_chromium
async def test_a_dropped_stream_resumes_after_the_last_seq(gateway: Proc, page: Page) -> None:
    async with RunStore(runs_db(gateway), delta_interval=0.05) as store:
        run = await store.create_run("agent", "kimi-k2.5-agent", user("long one"))
        await store.emit(run.id, "run_started", {})
        await store.emit(run.id, "step", {"step": 1})
        await store.emit(run.id, "message_delta", {"step": 1, "kind": "content",
                                                   "text": "first half, "})
        await store.emit(run.id, "step", {"step": 2})  # flushes the delta
        stored = await store.events(run.id)
        cut = b"retry: 3000\n\n" + b"".join(sse_frame(e) for e in stored) + b": cut here\n\n"
        requests: list[str] = []

        async def handle(route: Route) -> None:
            requests.append(route.request.url)
            if len(requests) == 1:  # the first stream ends before the run does
                await route.fulfill(status=200, body=cut,
                                    headers={"content-type": "text/event-stream"})
            else:
                await route.continue_()

        await page.route("**/v1/runs/*/events*", handle)
        await page.goto(f"{gateway.url}/ui/runs/{run.id}")
        await expect(by_testid(page, "step")).to_have_count(2)
        await store.emit(run.id, "message_delta", {"step": 2, "kind": "content",
                                                   "text": "second half."})
        await store.finish(run.id, "completed", "answer", "first half, second half.")
        await expect(by_testid(page, "run-status")).to_have_attribute("data-status", "completed")
        await expect(by_testid(page, "step-content")).to_have_text(["first half, ",
                                                                     "second half."])
        assert len(requests) == 2
        assert requests[0].endswith("/events?after=0")
        assert requests[1].endswith(f"/events?after={stored[-1].seq}")


SPLIT_CHECK = """async () => {
  const {SSEParser} = await import('/ui/static/sse.js');
  const stream = 'retry: 3000\\r\\n\\r\\n: keep-alive\\r\\n\\r\\n'
    + 'id: 1\\r\\nevent: step\\r\\ndata: {"a":\\r\\ndata:  1}\\r\\n\\r\\n'
    + 'id: 2\\revent: message_delta\\rdata:x\\r\\r'
    + 'id:3\\nevent:finished\\ndata\\ndata: é ✓\\n\\n'
    + 'event: ignored-without-data\\n\\n'
    + 'id: 4\\ndata: unfinished at the end';
  const results = [];
  for (let size = 1; size <= stream.length; size++) {
    const got = [];
    const parser = new SSEParser((m) => got.push(m));
    for (let i = 0; i < stream.length; i += size) parser.push(stream.slice(i, i + size));
    results.push(JSON.stringify({got, retry: parser.retry}));
  }
  return results;
}"""


@needs_chromium
async def test_the_sse_parser_on_any_chunking(gateway: Proc, page: Page) -> None:
    await page.goto(f"{gateway.url}/ui/runs")
    results = await page.evaluate(SPLIT_CHECK)
    expected = {"got": [{"type": "step", "data": '{"a":\n 1}', "id": "1"},
                        {"type": "message_delta", "data": "x", "id": "2"},
                        {"type": "finished", "data": "\né ✓", "id": "3"}],
                "retry": 3000}
    assert all(json.loads(r) == expected for r in results), results[:3]
    assert len(results) > 100


# -- a real swarm ------------------------------------------------------------------------


@needs_chromium
async def test_a_real_swarm_on_the_simulated_engine(
        start_simulator: Callable[..., Proc], start_gateway: Callable[..., Proc],
        upstream_toml: Callable[..., str], page: Page, tmp_path: Path) -> None:
    """The gateway's own swarm (not a fed one): start it, open its page, watch the sub-agents
    appear, run and finish."""
    import asyncio

    tasks = [f"Topic {i}" for i in range(6)]
    script = tmp_path / "swarm.json"
    script.write_text(json.dumps({"rules": [
        {"match": {"tool": "spawn_subagents", "after_tool": True},
         "reply": {"content": "All six merged."}},
        {"match": {"tool": "spawn_subagents", "after_tool": False},
         "reply": {"reasoning": "Six parts.",
                   "tool_calls": [{"name": "spawn_subagents", "arguments": {"tasks": tasks}}]}},
        {"match": {"system": "sub-agent of an agent swarm", "user": r"Topic (\d+)"},
         "reply": {"content": "Result $1."}, "ttft": 2.0},
    ]}))
    sim = start_simulator("--ttft", "0", "--tpot", "0", "--script", str(script))
    gw = start_gateway(upstream_toml(sim.v1) + "[swarm]\nmax_concurrent_subagents = 3\n")

    async def ask() -> httpx.Response:
        async with httpx.AsyncClient(timeout=120) as client:
            return await client.post(gw.v1 + "/chat/completions", json={
                "model": "kimi-k2.5-swarm",
                "messages": [{"role": "user", "content": "Research six topics."}]})

    request = asyncio.create_task(ask())
    run_id = None
    async with httpx.AsyncClient(timeout=10) as client:
        for _ in range(200):
            listed = (await client.get(gw.v1 + "/runs", params={"mode": "swarm"})).json()
            if listed["data"]:
                run_id = listed["data"][0]["id"]
                break
            await asyncio.sleep(0.05)
    assert run_id is not None
    await page.goto(f"{gw.url}/ui/runs/{run_id}")
    await expect(by_testid(page, "subagent-row")).to_have_count(6)
    await expect(by_testid(page, "timeline-bar")).to_have_count(6)
    # With three slots, three run while three wait.
    await expect(page.locator('[data-testid="subagent-row"][data-status="running"]')
                 ).to_have_count(3)
    await expect(page.locator('[data-testid="subagent-row"][data-status="queued"]')
                 ).to_have_count(3)
    await expect(page.locator('[data-testid="subagent-row"][data-status="completed"]')
                 ).to_have_count(6, timeout=30_000)
    await expect(page.locator('[data-testid="timeline-bar"][data-status="completed"]')
                 ).to_have_count(6)
    await expect(by_testid(page, "metric-subagents")).to_have_text("6")
    await expect(by_testid(page, "final-answer")).to_have_text("All six merged.")
    await expect(by_testid(page, "run-status")).to_have_attribute("data-status", "completed")
    response = await request
    assert response.json()["choices"][0]["message"]["content"] == "All six merged."
    assert response.json()["id"] == "chatcmpl-" + run_id.removeprefix("run_")
