// The steps of one agent loop (an Agent run, a swarm's orchestrator, a sub-agent): per step its
// reasoning and text (streamed in as message_delta events), its tool calls with their
// arguments and results, fan-outs, retries and compactions. Built from the run's events, in
// place: a step's element is made once and then only appended to.

import {el, formatDuration, formatTime, runHref, setAttr, setText} from "./dom.js";

/** How much of a tool's arguments / output is put in the page (the rest: "N more chars"). */
const SHOWN_CHARS = 20000;

function clipped(text) {
  const value = typeof text === "string" ? text : JSON.stringify(text ?? "", null, 2);
  if (value.length <= SHOWN_CHARS) return value;
  return `${value.slice(0, SHOWN_CHARS)}\n… (${value.length - SHOWN_CHARS} more characters)`;
}

function prettyArguments(raw) {
  if (typeof raw !== "string") return clipped(raw);
  try {
    return clipped(JSON.stringify(JSON.parse(raw), null, 2));
  } catch {
    return clipped(raw);
  }
}

class StepBlock {
  constructor(number, time) {
    this.number = number;
    this.reasoningText = document.createTextNode("");
    this.contentText = document.createTextNode("");
    this.reasoning = el("details", {class: "reasoning", "data-testid": "step-reasoning",
      open: true, hidden: true},
    el("summary", {text: "Reasoning"}), el("pre", {class: "text"}, this.reasoningText));
    this.content = el("div", {class: "content text", "data-testid": "step-content",
      hidden: true}, this.contentText);
    this.notes = el("ul", {class: "notes"});
    this.calls = el("ol", {class: "calls"});
    this.root = el("section", {class: "step", "data-testid": "step", "data-step": number},
      el("h3", {}, `Step ${number}`, el("span", {class: "muted", text: ` ${formatTime(time)}`})),
      this.reasoning, this.content, this.calls, this.notes);
  }

  append(kind, text) {
    const reasoning = kind === "reasoning";
    (reasoning ? this.reasoningText : this.contentText).appendData(text);
    (reasoning ? this.reasoning : this.content).hidden = false;
  }

  /** A step_retry: what the step streamed so far is void. */
  voidText(note) {
    this.reasoningText.data = "";
    this.contentText.data = "";
    this.reasoning.hidden = true;
    this.content.hidden = true;
    this.note(note, "retry");
  }

  note(text, kind, testid) {
    const item = el("li", {class: `note note-${kind}`, "data-testid": testid || `note-${kind}`},
      text);
    this.notes.append(item);
    return item;
  }
}

class CallBlock {
  constructor(data, time) {
    this.started = time;
    this.status = el("span", {class: "call-status", "data-testid": "tool-call-status",
      text: data.client ? "returned to the client" : "running…"});
    this.output = el("pre", {class: "output", "data-testid": "tool-call-output", hidden: true});
    this.root = el("li", {class: "call", "data-testid": "tool-call",
      "data-call-id": data.id ?? "", "data-name": data.name ?? ""},
    el("div", {class: "call-head"},
      el("span", {class: "call-name", "data-testid": "tool-call-name", text: data.name ?? "?"}),
      this.status),
    el("details", {class: "arguments"}, el("summary", {text: "arguments"}),
      el("pre", {"data-testid": "tool-call-arguments", text: prettyArguments(data.arguments)})),
    this.output);
  }

  result(data) {
    const failed = Boolean(data.is_error);
    setText(this.status, `${failed ? "error" : "done"} · ${formatDuration(data.duration)}`);
    setAttr(this.root, "data-is-error", failed);
    this.root.classList.toggle("is-error", failed);
    let text = clipped(data.output ?? "");
    if (data.output_truncated) {
      text += `\n… (stored shortened: ${data.output_chars} characters in all)`;
    }
    setText(this.output, text);
    this.output.hidden = false;
  }
}

export class StepsView {
  constructor(container) {
    this.container = container;
    this.steps = new Map();
    this.calls = new Map();  // "step|id" → CallBlock
    this.latestCall = new Map();  // id → the latest CallBlock with it
    this.stepCount = 0;
    this.toolCallCount = 0;
  }

  step(number, time) {
    let block = this.steps.get(number);
    if (!block) {
      block = new StepBlock(number, time);
      this.steps.set(number, block);
      this.container.append(block.root);
    }
    return block;
  }

  /** Apply one event of the run; returns true if it was one of the loop's events. */
  apply(event) {
    const number = Number.isInteger(event.step) ? event.step : null;
    switch (event.type) {
      case "step":
        if (number !== null && !this.steps.has(number)) this.stepCount += 1;
        if (number !== null) this.step(number, event.time);
        return true;
      case "message_delta":
        if (number !== null && typeof event.text === "string") {
          this.step(number, event.time).append(event.kind, event.text);
        }
        return true;
      case "tool_call": {
        if (number === null) return true;
        this.toolCallCount += 1;
        const call = new CallBlock(event, event.time);
        this.step(number, event.time).calls.append(call.root);
        this.calls.set(`${number}|${event.id}`, call);
        this.latestCall.set(String(event.id), call);
        return true;
      }
      case "tool_result": {
        const call = this.calls.get(`${number}|${event.id}`)
          || this.latestCall.get(String(event.id));
        if (call) call.result(event);
        return true;
      }
      case "step_retry":
        if (number !== null) {
          this.step(number, event.time).voidText(
            `The model's stream broke (attempt ${event.attempt}): ${event.error ?? ""}; `
            + "the step runs again and its text so far is void.");
        }
        return true;
      case "compaction":
        if (number !== null) {
          this.step(number, event.time).note(
            `Context compacted (${event.strategy ?? "?"}): ${event.compacted ?? 0} tool results, `
            + `${event.removed_chars ?? 0} characters removed.`, "compaction");
        }
        return true;
      case "fanout": {
        if (number === null) return true;
        const subagents = Array.isArray(event.subagents) ? event.subagents : [];
        const item = this.step(number, event.time).note(
          `Fan-out: ${subagents.length} sub-agent${subagents.length === 1 ? "" : "s"} `, "fanout",
          "fanout");
        subagents.slice(0, 100).forEach((sub, i) => {
          item.append(i === 0 ? "" : " ", el("a", {href: runHref(sub.id), text: `#${sub.index}`}));
        });
        return true;
      }
      default:
        return false;
    }
  }
}
