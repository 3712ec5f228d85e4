// A swarm run's own parts: its sub-agents (a row each, updated in place from the fanout /
// subagent_* events), the timeline (a bar per sub-agent from its start to its end, growing
// while it runs) and the swarm_metrics figures.

import {el, formatDuration, formatNumber, runHref, setAttr, setText, shortId, statusBadge,
  updateBadge} from "./dom.js";

const TERMINAL = new Set(["completed", "failed", "cancelled", "interrupted"]);

class Subagent {
  constructor(data, time) {
    this.id = String(data.id);
    this.index = data.index;
    this.task = data.task ?? "";
    this.status = "queued";
    this.steps = 0;
    this.toolCalls = 0;
    this.lastTool = null;
    this.startedAt = null;
    this.finishedAt = null;
    this.fannedOutAt = time;
    this.makeRow(data);
    this.makeBar();
  }

  makeRow(data) {
    this.cells = {
      status: statusBadge("queued", "subagent-status"),
      steps: el("td", {class: "num", "data-testid": "subagent-steps", text: "0"}),
      toolCalls: el("td", {class: "num", "data-testid": "subagent-tool-calls", text: "0"}),
      lastTool: el("td", {"data-testid": "subagent-last-tool"}),
      duration: el("td", {class: "num nowrap", "data-testid": "subagent-duration"}),
      outcome: el("td", {class: "outcome", "data-testid": "subagent-outcome"}),
    };
    const resumed = data.resumed_from
      ? el("div", {class: "muted"}, "resumed from ",
        el("a", {href: runHref(data.resumed_from), text: String(data.resumed_from)}))
      : null;
    this.row = el("tr", {"data-testid": "subagent-row", "data-subagent-id": this.id,
      "data-index": this.index, "data-status": "queued"},
    el("td", {class: "num", text: `#${this.index + 1}`}),
    el("td", {class: "nowrap"}, el("a", {href: runHref(this.id), "data-testid": "subagent-link",
      title: this.id, text: shortId(this.id)})),
    el("td", {class: "task", title: this.task}, el("div", {class: "clip", text: this.task}),
      resumed),
    el("td", {}, this.cells.status),
    this.cells.steps, this.cells.toolCalls, this.cells.lastTool, this.cells.duration,
    this.cells.outcome);
  }

  makeBar() {
    this.bar = el("a", {class: "bar status-queued", "data-testid": "timeline-bar",
      "data-subagent-id": this.id, "data-status": "queued", href: runHref(this.id),
      title: `#${this.index + 1} ${this.task}`});
    this.track = el("div", {class: "track"},
      el("span", {class: "track-label", text: `#${this.index + 1}`}),
      el("div", {class: "lane"}, this.bar));
  }

  setStatus(status) {
    this.status = status;
    setAttr(this.row, "data-status", status);
    updateBadge(this.cells.status, status);
    setAttr(this.bar, "data-status", status);
    const cls = `bar status-${status}`;
    if (this.bar.className !== cls) this.bar.className = cls;
  }

  render() {
    setText(this.cells.steps, this.steps);
    setText(this.cells.toolCalls, this.toolCalls);
    setText(this.cells.lastTool, this.lastTool ?? "");
    if (this.startedAt !== null && this.finishedAt !== null) {
      setText(this.cells.duration, formatDuration(this.finishedAt - this.startedAt));
    }
  }
}

const METRICS = [
  ["wall_time", "Wall time", (v) => formatDuration(v)],
  ["critical_steps", "Critical steps", formatNumber],
  ["total_steps", "Total steps", formatNumber],
  ["tool_calls", "Tool calls", formatNumber],
  ["subagents", "Sub-agents", formatNumber],
  ["subagents_failed", "Failed", formatNumber],
  ["parallelism", "Parallelism", (v) => `${formatNumber(v)}×`],
];
const TOKENS = ["prompt_tokens", "completion_tokens", "reasoning_tokens"];

export class SwarmView {
  /** `root`: the element the swarm's sections go into; `clock()`: the server's "now". */
  constructor(root, clock) {
    this.clock = clock;
    this.subagents = new Map();
    this.runStart = null;
    this.runEnd = null;
    this.counts = el("p", {class: "counts", "data-testid": "subagent-counts",
      text: "No sub-agents yet."});
    this.metrics = el("dl", {class: "metrics", "data-testid": "metrics", hidden: true});
    this.metricValues = {};
    for (const [key, label] of METRICS) {
      this.metricValues[key] = el("dd", {"data-testid": `metric-${key}`, text: "–"});
      this.metrics.append(el("div", {}, el("dt", {text: label}), this.metricValues[key]));
    }
    for (const key of TOKENS) {
      const name = key.replace("_tokens", "");
      this.metricValues[`tokens_${name}`] = el("dd", {"data-testid": `metric-tokens_${name}`,
        text: "–"});
      this.metrics.append(el("div", {}, el("dt", {text: `Tokens (${name})`}),
        this.metricValues[`tokens_${name}`]));
    }
    this.stages = el("p", {class: "muted", "data-testid": "metric-stages"});
    this.axisEnd = el("span", {class: "axis-end", "data-testid": "timeline-span"});
    this.timeline = el("div", {class: "timeline", "data-testid": "timeline"});
    this.tbody = el("tbody");
    root.append(
      el("section", {class: "panel", "data-testid": "swarm-metrics"},
        el("h2", {text: "Swarm metrics"}), this.metrics, this.stages,
        el("p", {class: "muted", "data-testid": "metrics-pending",
          text: "The figures come when the run ends."})),
      el("section", {class: "panel"}, el("h2", {text: "Timeline"}),
        el("div", {class: "axis"}, el("span", {text: "0 s"}), this.axisEnd), this.timeline),
      el("section", {class: "panel", "data-testid": "subagents"},
        el("h2", {text: "Sub-agents"}), this.counts,
        el("div", {class: "table-wrap"}, el("table", {class: "subagents"},
          el("thead", {}, el("tr", {}, ...["", "run", "task", "status", "steps", "tool calls",
            "last tool", "time", "answer / error"].map((h) => el("th", {text: h})))),
          this.tbody))));
    this.pending = root.querySelector("[data-testid=metrics-pending]");
  }

  /** Apply one event; returns true if it was a swarm event. */
  apply(event) {
    switch (event.type) {
      case "fanout":
        for (const data of Array.isArray(event.subagents) ? event.subagents : []) {
          if (this.subagents.has(String(data.id))) continue;
          const sub = new Subagent(data, event.time);
          this.subagents.set(sub.id, sub);
          this.tbody.append(sub.row);
          this.timeline.append(sub.track);
        }
        return true;
      case "subagent_started": {
        const sub = this.subagents.get(String(event.id));
        if (sub) {
          sub.startedAt = event.started_at ?? event.time;
          if (!TERMINAL.has(sub.status)) sub.setStatus("running");
          sub.render();
        }
        return true;
      }
      case "subagent_progress": {
        const sub = this.subagents.get(String(event.id));
        if (sub) {
          sub.steps = event.steps ?? sub.steps;
          sub.toolCalls = event.tool_calls ?? sub.toolCalls;
          sub.lastTool = event.last_tool ?? sub.lastTool;
          if (sub.status === "queued") sub.setStatus("running");
          if (sub.startedAt === null) sub.startedAt = event.time;
          sub.render();
        }
        return true;
      }
      case "subagent_finished": {
        const sub = this.subagents.get(String(event.id));
        if (sub) this.finishSubagent(sub, event);
        return true;
      }
      case "swarm_metrics":
        this.showMetrics(event);
        return true;
      default:
        return false;
    }
  }

  finishSubagent(sub, data) {
    sub.steps = data.steps ?? sub.steps;
    sub.toolCalls = data.tool_calls ?? sub.toolCalls;
    sub.startedAt = data.started_at ?? sub.startedAt;
    sub.finishedAt = data.finished_at ?? data.time ?? this.clock();
    sub.setStatus(data.status || "completed");
    const outcome = data.error ? `${data.stop_reason ?? "error"}: ${data.error}`
      : (data.answer ?? data.stop_reason ?? "");
    setText(sub.cells.outcome, outcome);
    sub.cells.outcome.title = outcome;
    sub.render();
  }

  /** Bring rows the stream left unfinished up to date from GET /v1/runs?parent_id= (after the
   * swarm ended: a sub-agent cut off by a restart has no subagent_finished event). */
  reconcile(children) {
    for (const child of children) {
      const sub = this.subagents.get(child.id);
      if (!sub || TERMINAL.has(sub.status) || !TERMINAL.has(child.status)) continue;
      this.finishSubagent(sub, {status: child.status, stop_reason: child.stop_reason,
        error: child.error, steps: child.step_count, tool_calls: child.tool_call_count,
        started_at: child.started_at, finished_at: child.finished_at});
    }
  }

  unfinished() {
    for (const sub of this.subagents.values()) if (!TERMINAL.has(sub.status)) return true;
    return false;
  }

  showMetrics(metrics) {
    for (const [key, , format] of METRICS) {
      setText(this.metricValues[key], format(metrics[key]));
    }
    const total = (metrics.tokens && metrics.tokens.total) || {};
    for (const key of TOKENS) {
      setText(this.metricValues[`tokens_${key.replace("_tokens", "")}`], formatNumber(total[key]));
    }
    const stages = Array.isArray(metrics.stages) ? metrics.stages : [];
    setText(this.stages, stages.map((s) => `step ${s.step}: ${s.subagents} sub-agents, `
      + `longest ${s.max_subagent_steps} steps`).join(" · "));
    this.metrics.hidden = false;
    if (this.pending) this.pending.hidden = true;
  }

  /** Counters and the timeline's geometry (cheap: one style write per bar). */
  render() {
    const counts = {queued: 0, running: 0, completed: 0, failed: 0, other: 0};
    let first = null;
    let last = null;
    for (const sub of this.subagents.values()) {
      counts[sub.status in counts ? sub.status : "other"] += 1;
      const start = sub.startedAt;
      if (start !== null && (first === null || start < first)) first = start;
      const end = sub.finishedAt;
      if (end !== null && (last === null || end > last)) last = end;
    }
    const n = this.subagents.size;
    if (n) {
      setText(this.counts, `${n} sub-agent${n === 1 ? "" : "s"}: ${counts.running} running, `
        + `${counts.queued} queued, ${counts.completed} completed, ${counts.failed} failed`
        + (counts.other ? `, ${counts.other} cancelled or interrupted` : ""));
    }
    const now = this.clock();
    const t0 = this.runStart ?? first ?? now;
    const t1 = Math.max(this.runEnd ?? (this.unfinished() ? now : last ?? now), t0 + 0.001);
    const span = t1 - t0;
    setText(this.axisEnd, formatDuration(span));
    for (const sub of this.subagents.values()) {
      if (sub.startedAt === null) {
        sub.bar.style.width = "0";
        continue;
      }
      const end = sub.finishedAt ?? Math.max(now, sub.startedAt);
      const left = Math.min(1, Math.max(0, (sub.startedAt - t0) / span));
      const width = Math.min(1 - left, Math.max(0, (end - sub.startedAt) / span));
      sub.bar.style.left = `${(left * 100).toFixed(3)}%`;
      sub.bar.style.width = `${(width * 100).toFixed(3)}%`;
    }
  }
}
