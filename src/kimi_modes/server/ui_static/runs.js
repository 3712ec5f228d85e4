// /ui/runs: the runs, newest first, one page at a time, refreshed every few seconds. Rows are
// kept by run id and updated in place; the filters and the page live in the address
// (?mode=&status=&offset=), so a view can be linked to.

import {getJSON} from "./api.js";
import {el, formatDuration, formatTime, runHref, setAttr, setText, shortId, statusBadge,
  updateBadge} from "./dom.js";

const PAGE_SIZE = 25;
const REFRESH_MS = 3000;

const $ = (testid) => document.querySelector(`[data-testid="${testid}"]`);

const view = {
  mode: "",
  status: "",
  offset: 0,
  hasMore: false,
  rows: new Map(),  // run id → {row, cells}
};

function readAddress() {
  const query = new URLSearchParams(location.search);
  view.mode = query.get("mode") || "";
  view.status = query.get("status") || "";
  view.offset = Math.max(0, Number.parseInt(query.get("offset") || "0", 10) || 0);
  $("mode-filter").value = view.mode;
  $("status-filter").value = view.status;
}

function writeAddress() {
  const query = new URLSearchParams();
  if (view.mode) query.set("mode", view.mode);
  if (view.status) query.set("status", view.status);
  if (view.offset) query.set("offset", String(view.offset));
  const search = query.toString();
  history.replaceState(null, "", search ? `?${search}` : location.pathname);
}

function makeRow(run) {
  const cells = {
    created: el("td", {class: "nowrap"}),
    status: statusBadge(run.status, "run-status"),
    task: el("div", {class: "clip", "data-testid": "run-task"}),
    steps: el("td", {class: "num", "data-testid": "run-steps"}),
    toolCalls: el("td", {class: "num", "data-testid": "run-tool-calls"}),
    duration: el("td", {class: "num nowrap"}),
    parent: el("td", {}),
  };
  const row = el("tr", {"data-testid": "run-row", "data-run-id": run.id},
    cells.created,
    el("td", {class: "nowrap"}, el("a", {href: runHref(run.id), "data-testid": "run-link",
      title: run.id, text: shortId(run.id)})),
    el("td", {"data-testid": "run-mode", text: run.mode}),
    el("td", {}, cells.status),
    el("td", {class: "task"}, cells.task),
    cells.steps, cells.toolCalls, cells.duration, cells.parent);
  if (run.parent_id) {
    cells.parent.append(el("a", {href: runHref(run.parent_id), "data-testid": "run-parent",
      text: "parent"}));
  }
  return {row, cells};
}

function updateRow({row, cells}, run) {
  setAttr(row, "data-status", run.status);
  setAttr(row, "data-mode", run.mode);
  setText(cells.created, formatTime(run.created_at));
  updateBadge(cells.status, run.status);
  setText(cells.task, run.task);
  cells.task.title = run.task;
  setText(cells.steps, run.step_count);
  setText(cells.toolCalls, run.tool_call_count);
  const end = run.finished_at ?? (run.started_at !== null ? run.updated_at : null);
  setText(cells.duration, run.started_at !== null && end !== null
    ? formatDuration(end - run.started_at) : "");
}

function show(runs) {
  const tbody = $("runs-table").querySelector("tbody");
  const keep = new Set(runs.map((r) => r.id));
  for (const [id, entry] of view.rows) {
    if (!keep.has(id)) {
      entry.row.remove();
      view.rows.delete(id);
    }
  }
  let cursor = tbody.firstElementChild;
  for (const run of runs) {
    let entry = view.rows.get(run.id);
    if (!entry) {
      entry = makeRow(run);
      view.rows.set(run.id, entry);
    }
    updateRow(entry, run);
    if (entry.row !== cursor) tbody.insertBefore(entry.row, cursor);
    else cursor = cursor.nextElementSibling;
  }
  $("runs-empty").hidden = runs.length > 0;
  const first = runs.length ? view.offset + 1 : view.offset;
  setText($("page-info"), `${first}–${view.offset + runs.length}`);
  $("prev-page").disabled = view.offset === 0;
  $("next-page").disabled = !view.hasMore;
}

let generation = 0;  // answers to an older query (before a filter changed) are dropped
let timer = null;

async function refresh() {
  clearTimeout(timer);
  const mine = ++generation;
  const query = new URLSearchParams({limit: String(PAGE_SIZE), offset: String(view.offset)});
  if (view.mode) query.set("mode", view.mode);
  if (view.status) query.set("status", view.status);
  const state = $("refresh-state");
  try {
    const page = await getJSON(`/v1/runs?${query}`);
    if (mine !== generation) return;
    view.hasMore = Boolean(page.has_more);
    show(page.data);
    $("error").hidden = true;
    setAttr(state, "data-state", "live");
    setText(state, `updated ${formatTime(Date.now() / 1000).slice(11)}`);
  } catch (err) {
    if (mine !== generation) return;
    setText($("error"), `Could not load the runs: ${err.message}`);
    $("error").hidden = false;
    setAttr(state, "data-state", "error");
    setText(state, "retrying…");
  }
  if (mine === generation) timer = setTimeout(refresh, REFRESH_MS);
}

function changed() {
  writeAddress();
  refresh();
}

readAddress();
$("mode-filter").addEventListener("change", (e) => {
  view.mode = e.target.value;
  view.offset = 0;
  changed();
});
$("status-filter").addEventListener("change", (e) => {
  view.status = e.target.value;
  view.offset = 0;
  changed();
});
$("prev-page").addEventListener("click", () => {
  view.offset = Math.max(0, view.offset - PAGE_SIZE);
  changed();
});
$("next-page").addEventListener("click", () => {
  view.offset += PAGE_SIZE;
  changed();
});
$("filters").addEventListener("submit", (e) => e.preventDefault());
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) refresh();
});
refresh();
