// Server-Sent Events over fetch(): EventSource cannot send an Authorization header, so the
// pages read the event stream themselves.
//
// SSEParser follows the WHATWG event-stream rules: lines end in CRLF, LF or CR (also when a
// CRLF is split between two chunks), "field: value" with one optional space removed, several
// "data:" lines joined with "\n", comment lines (":...") ignored, "id:" kept across messages,
// an event dispatched at the blank line that ends it, an unfinished one at the end of the
// stream dropped. followRun() reads a run's events and re-attaches with ?after=<last seq>
// whenever the connection ends before the run's "finished" event.

import {apiFetch} from "./api.js";
import {errorMessage, runPath} from "./dom.js";

export class SSEParser {
  /** onMessage({type, data, id}) is called for every complete message. */
  constructor(onMessage) {
    this.onMessage = onMessage;
    this.buffer = "";
    this.skipLF = false;  // the last chunk ended in CR: a leading LF belongs to it
    this.started = false;
    this.data = [];
    this.hasData = false;
    this.type = "";
    this.lastEventId = "";
    this.retry = null;
  }

  /** Feed decoded text (any chunking). */
  push(text) {
    if (this.skipLF && text.length > 0) {
      if (text[0] === "\n") text = text.slice(1);
      this.skipLF = false;
    }
    if (!this.started && text.length > 0) {
      this.started = true;
      if (text[0] === "\uFEFF") text = text.slice(1);
    }
    const buffer = this.buffer + text;
    const terminator = /\r\n|\r|\n/g;
    let start = 0;
    let match;
    while ((match = terminator.exec(buffer)) !== null) {
      if (match[0] === "\r" && match.index === buffer.length - 1) this.skipLF = true;
      this.line(buffer.slice(start, match.index));
      start = terminator.lastIndex;
    }
    this.buffer = buffer.slice(start);
  }

  line(line) {
    if (line === "") {
      this.dispatch();
      return;
    }
    if (line[0] === ":") return;  // a comment (keep-alive)
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.hasData = true;
    } else if (field === "event") {
      this.type = value;
    } else if (field === "id") {
      if (!value.includes("\0")) this.lastEventId = value;
    } else if (field === "retry") {
      if (/^\d+$/.test(value)) this.retry = Number(value);
    }
  }

  dispatch() {
    const {hasData, data, type} = this;
    this.data = [];
    this.hasData = false;
    this.type = "";
    if (!hasData) return;
    this.onMessage({type: type || "message", data: data.join("\n"), id: this.lastEventId});
  }
}

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, {once: true});
});

/**
 * Follow a run's events: replay from `after`, then live, until its "finished" event.
 *
 * onEvents(events) gets the parsed events of each network chunk, in seq order, each once
 * (a re-sent seq is skipped). onState(state, detail) says where the stream stands:
 * "connecting", "live", "reconnecting" (detail: why), "ended", "not_found" (detail: the API's
 * message; the stream stops), "error" (detail: an error the server sent in the stream; it
 * then reconnects). Resolves when the stream ended or `signal` aborted.
 */
export async function followRun(runId, {after = 0, onEvents, onState = () => {}, signal} = {}) {
  let last = after;
  let failures = 0;
  while (!signal?.aborted) {
    onState(failures === 0 ? "connecting" : "reconnecting", "");
    let finished = false;
    try {
      const response = await apiFetch(runPath(runId, `/events?after=${last}`),
        {accept: "text/event-stream", signal});
      if (response.status === 404) {
        onState("not_found", await errorMessage(response));
        return;
      }
      if (!response.ok || !response.body) {
        throw new Error(await errorMessage(response));
      }
      onState("live", "");
      const batch = [];
      const parser = new SSEParser((message) => {
        if (message.type === "error") {
          let text = message.data;
          try { text = JSON.parse(message.data).error.message || text; } catch { /* raw */ }
          onState("error", text);
          return;
        }
        let event;
        try {
          event = JSON.parse(message.data);
        } catch {
          return;  // not an event of ours
        }
        const seq = Number(message.id || event.seq);
        if (Number.isFinite(seq) && seq <= last) return;
        if (Number.isFinite(seq)) last = seq;
        if (event.type === "finished") finished = true;
        batch.push(event);
      });
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        parser.push(decoder.decode(value, {stream: true}));
        if (batch.length) {
          failures = 0;  // it works: a later cut starts the back-off afresh
          onEvents(batch.splice(0));
        }
      }
      parser.push(decoder.decode());
      if (batch.length) onEvents(batch.splice(0));
      if (finished) {
        onState("ended", "");
        return;
      }
      failures += 1;
      onState("reconnecting", "the stream ended before the run did");
    } catch (err) {
      if (signal?.aborted) return;
      if (finished) {
        onState("ended", "");
        return;
      }
      failures += 1;
      onState("reconnecting", err && err.message ? err.message : String(err));
    }
    // 0.5 s after the first cut, then doubling up to 15 s while it keeps failing.
    await sleep(Math.min(15000, 250 * 2 ** Math.min(failures, 6)), signal);
  }
}
