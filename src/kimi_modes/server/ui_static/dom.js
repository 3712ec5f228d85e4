// Small DOM helpers shared by the pages. Everything that comes from a run (the model's text,
// tool output, tasks, errors) goes into the page as text: el() and setText() only ever set
// textContent / text nodes and attributes, never HTML.

/** el("div", {class: "x", "data-testid": "y", text: "..."}, child...): a new element. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

/** Set a node's text only when it changed (no needless DOM writes on refresh). */
export function setText(node, value) {
  const text = value === null || value === undefined ? "" : String(value);
  if (node.textContent !== text) node.textContent = text;
}

/** Set an attribute only when it changed. */
export function setAttr(node, name, value) {
  const text = String(value);
  if (node.getAttribute(name) !== text) node.setAttribute(name, text);
}

/** The page link of a run. */
export function runHref(id) {
  return `/ui/runs/${encodeURIComponent(id)}`;
}

/** A run id for a table cell: "run_" and its first 12 hex digits (the page shows it whole). */
export function shortId(id) {
  const text = String(id);
  return text.length > 20 ? `${text.slice(0, 16)}…` : text;
}

/** The API path of a run (and of its sub-resources). */
export function runPath(id, rest = "") {
  return `/v1/runs/${encodeURIComponent(id)}${rest}`;
}

const pad = (n) => String(n).padStart(2, "0");

/** Unix seconds as local "YYYY-MM-DD HH:MM:SS" ("" for none). */
export function formatTime(seconds) {
  if (typeof seconds !== "number") return "";
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} `
    + `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Seconds as "0.42 s", "12.3 s", "4 m 05 s" ("" for none). */
export function formatDuration(seconds) {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) return "";
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const m = Math.floor(seconds / 60);
  return `${m} m ${pad(Math.floor(seconds - m * 60))} s`;
}

/** A number for display: integers as they are, others with up to `digits` decimals. */
export function formatNumber(value, digits = 2) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "–";
  return Number.isInteger(value) ? String(value) : String(Number(value.toFixed(digits)));
}

/** Run `work` at most once per animation frame, however often `schedule()` is called. */
export class FrameBatcher {
  constructor(work) {
    this.work = work;
    this.pending = false;
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.work();
    });
  }
}

/** The message of an error body in the API's shape, or a line about the HTTP status. */
export async function errorMessage(response) {
  try {
    const body = await response.json();
    if (body && body.error && typeof body.error.message === "string") return body.error.message;
  } catch {
    // not JSON: fall through to the status line
  }
  return `HTTP ${response.status} ${response.statusText}`.trim();
}

/** A status badge: <span class="badge status-X" data-status="X">X</span>. */
export function statusBadge(status, testid) {
  const badge = el("span", {class: "badge", "data-testid": testid});
  updateBadge(badge, status);
  return badge;
}

export function updateBadge(badge, status) {
  const value = status || "unknown";
  setText(badge, value);
  setAttr(badge, "data-status", value);
  const cls = `badge status-${value}`;
  if (badge.className !== cls) badge.className = cls;
}
