// /ui/runs/{id}: one run, live. The run's record comes from GET /v1/runs/{id}; then its whole
// event log is replayed and followed from GET /v1/runs/{id}/events, and every event updates the
// page in place. Events are queued as they arrive and applied once per animation frame (within
// a time budget, so a long replay never freezes the page).

import {ApiError, getJSON} from "./api.js";
import {el, FrameBatcher, formatTime, runHref, runPath, setAttr, setText,
  updateBadge} from "./dom.js";
import {followRun} from "./sse.js";
import {StepsView} from "./steps.js";
import {SwarmView} from "./swarm.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);
const FRAME_BUDGET_MS = 12;

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

function runIdFromPath() {
  const parts = location.pathname.split("/").filter(Boolean);
  return decodeURIComponent(parts[parts.length - 1] || "");
}

function lastUserText(messages) {
  let text = "";
  for (const message of Array.isArray(messages) ? messages : []) {
    if (message.role !== "user") continue;
    if (typeof message.content === "string") text = message.content;
    else if (Array.isArray(message.content)) {
      text = message.content.filter((p) => p && typeof p.text === "string")
        .map((p) => p.text).join("");
    }
  }
  return text;
}

class RunPage {
  constructor(record) {
    this.record = record;
    this.status = record.status;
    this.queue = [];
    this.head = 0;
    this.skew = 0;  // server clock − this browser's clock, seconds
    this.latestTime = 0;
    this.batcher = new FrameBatcher(() => this.flush());
    this.steps = new StepsView($("steps"));
    this.swarm = record.mode === "swarm"
      ? new SwarmView(document.getElementById("swarm"), () => this.now()) : null;
    if (this.swarm) {
      this.swarm.runStart = record.started_at ?? null;
      this.swarm.runEnd = TERMINAL.has(record.status) ? record.finished_at : null;
    }
    this.showRecord();
  }

  now() {
    return Math.max(Date.now() / 1000 + this.skew, this.latestTime);
  }

  showRecord() {
    const r = this.record;
    document.title = `${r.mode} run ${r.id} · kimi-modes`;
    setText($("run-id"), r.id);
    setText($("run-mode"), r.mode);
    setText($("run-model"), r.model);
    setText($("run-created"), formatTime(r.created_at));
    setText($("task"), lastUserText(r.messages) || r.task || "");
    if (r.parent_id) {
      const link = $("parent-link");
      link.href = runHref(r.parent_id);
      setText(link, `parent run ${r.parent_id}`);
      link.hidden = false;
    }
    if (r.params && Number.isInteger(r.params.index)) {
      setText($("run-index"), `sub-agent #${r.params.index + 1}`);
    }
    this.setStatus(r.status, r.stop_reason, r.error);
    this.showCounts(r.step_count, r.tool_call_count);
    if (r.final_answer) this.showAnswer(r.final_answer);
    if (r.usage) this.showUsage(r.usage);
    document.getElementById("run").hidden = false;
  }

  setStatus(status, stopReason, error) {
    this.status = status;
    updateBadge($("run-status"), status);
    setText($("run-stop-reason"), stopReason ? `stop: ${stopReason}` : "");
    const errorNode = $("run-error");
    setText(errorNode, error || "");
    errorNode.hidden = !error;
  }

  showCounts(steps, toolCalls) {
    setText($("run-steps"), Math.max(steps || 0, this.steps.stepCount));
    setText($("run-tool-calls"), Math.max(toolCalls || 0, this.steps.toolCallCount));
  }

  showAnswer(text) {
    const node = $("final-answer");
    setText(node, text);
    node.closest("section").hidden = false;
  }

  showUsage(usage) {
    setText($("run-usage"), `tokens: ${usage.prompt_tokens ?? 0} prompt, `
      + `${usage.completion_tokens ?? 0} completion, ${usage.reasoning_tokens ?? 0} reasoning`);
  }

  setStream(state, detail) {
    const node = $("stream-state");
    setAttr(node, "data-state", state);
    const labels = {connecting: "connecting…", live: "live", reconnecting: "reconnecting…",
      ended: "ended", not_found: "not found", error: "stream error"};
    setText(node, labels[state] || state);
    node.title = detail || "";
    if (state === "ended") this.stopTicking();
  }

  /** Events from the stream: queued, applied in the next frame. */
  enqueue(events) {
    for (const event of events) this.queue.push(event);
    this.batcher.schedule();
  }

  flush() {
    const deadline = performance.now() + FRAME_BUDGET_MS;
    while (this.head < this.queue.length && performance.now() < deadline) {
      this.apply(this.queue[this.head]);
      this.head += 1;
    }
    if (this.head >= this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else {
      this.batcher.schedule();
    }
    this.showCounts(this.record.step_count, this.record.tool_call_count);
    if (this.swarm) this.swarm.render();
  }

  apply(event) {
    if (typeof event.time === "number" && event.time > this.latestTime) {
      this.latestTime = event.time;
    }
    if (this.swarm && this.swarm.apply(event)) {
      if (event.type === "fanout") this.steps.apply(event);
      this.startTicking();
      return;
    }
    if (this.steps.apply(event)) return;
    switch (event.type) {
      case "run_started":
        if (!TERMINAL.has(this.status)) this.setStatus("running", null, null);
        if (this.swarm && this.swarm.runStart === null) this.swarm.runStart = event.time;
        break;
      case "finished":
        this.setStatus(event.status, event.stop_reason, event.error);
        if (event.final_answer) this.showAnswer(event.final_answer);
        if (event.usage) this.showUsage(event.usage);
        if (this.swarm) {
          this.swarm.runEnd = event.time;
          if (event.metrics && Object.keys(event.metrics).length) {
            this.swarm.showMetrics(event.metrics);
          }
          this.reconcileSubagents();
        }
        this.stopTicking();
        break;
      default:
        break;  // events this page does not show (checkpoint, types added later)
    }
  }

  /** While sub-agents run, the timeline's running bars grow: redraw a few times a second. */
  startTicking() {
    if (this.ticker || TERMINAL.has(this.status)) return;
    this.ticker = setInterval(() => this.batcher.schedule(), 250);
  }

  stopTicking() {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    this.batcher.schedule();
  }

  async reconcileSubagents() {
    if (!this.swarm || !this.swarm.unfinished()) return;
    try {
      for (let offset = 0; offset < 10000; offset += 100) {
        const page = await getJSON(`/v1/runs?parent_id=${encodeURIComponent(this.record.id)}`
          + `&limit=100&offset=${offset}`);
        this.swarm.reconcile(page.data);
        if (!page.has_more) break;
      }
      this.batcher.schedule();
    } catch {
      // the rows keep what the events said
    }
  }
}

function showError(message) {
  const node = $("error");
  setText(node, message);
  node.hidden = false;
}

async function main() {
  const runId = runIdFromPath();
  let record;
  try {
    record = await getJSON(runPath(runId));
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) {
      showError(`Not found: ${err.message}`);
      setAttr($("error"), "data-kind", "not_found");
    } else {
      showError(`Could not load the run: ${err.message}`);
    }
    return;
  }
  const page = new RunPage(record);
  // The server's clock, to grow running bars in its time: the Date header (1 s resolution).
  const response = await fetch("/health", {cache: "no-store"}).catch(() => null);
  const date = response && Date.parse(response.headers.get("date") || "");
  if (Number.isFinite(date)) page.skew = (date - Date.now()) / 1000;
  if (Math.abs(page.skew) < 2) page.skew = 0;  // within the header's resolution: same clock
  await followRun(record.id, {
    after: 0,
    onEvents: (events) => page.enqueue(events),
    onState: (state, detail) => page.setStream(state, detail),
  });
}

main().catch((err) => showError(`The page failed: ${err && err.message ? err.message : err}`));
