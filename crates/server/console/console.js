// The Baton console: a client of the public HTTP API (docs/api.md), no build
// step, no dependency. Everything a caller sent is inserted as text (never as
// HTML). The bearer token lives in sessionStorage and goes only in the
// Authorization header.
"use strict";

const STATUSES = ["pending", "ready", "dispatched", "running", "succeeded", "failed",
  "skipped", "cancelled", "compensated"];
const RUN_STATUSES = ["executing", "paused", "completed", "failed", "cancelled"];
const FINAL = new Set(["completed", "failed", "cancelled"]);
const DAG_NODE_LIMIT = 1500; // beyond this, each stage is drawn as one box with counts
const TIMELINE_ROWS = 400;

// -- the API -----------------------------------------------------------------

class ApiError extends Error {
  constructor(status, problem) {
    super(problem && problem.detail ? problem.detail : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

const api = {
  token() { return sessionStorage.getItem("baton.token") || ""; },
  headers(extra) {
    const h = Object.assign({ accept: "application/json" }, extra || {});
    const t = api.token();
    if (t) h.authorization = "Bearer " + t;
    return h;
  },
  async call(method, path, body, contentType) {
    const init = { method, headers: api.headers() };
    if (body !== undefined) {
      init.headers["content-type"] = contentType || "application/json";
      init.body = typeof body === "string" ? body : JSON.stringify(body);
    }
    const res = await fetch(path, init);
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
    if (!res.ok) {
      if (res.status === 401) askForToken(true);
      throw new ApiError(res.status, data);
    }
    return data;
  },
  get(path) { return api.call("GET", path); },
  post(path, body, contentType) { return api.call("POST", path, body === undefined ? {} : body, contentType); },
};

// A run's Server-Sent Events through fetch (EventSource cannot send an
// Authorization header). Reconnects with Last-Event-ID until the run's final
// event or until `signal` aborts.
async function followEvents(runId, onEvent, signal, onState) {
  let last = null;
  for (let attempt = 0; !signal.aborted; attempt++) {
    try {
      const headers = api.headers({ accept: "text/event-stream" });
      if (last !== null) headers["last-event-id"] = String(last);
      const res = await fetch(`/api/v1/executions/${encodeURIComponent(runId)}/events`, { headers, signal });
      if (!res.ok) throw new ApiError(res.status, null);
      onState(true);
      const reader = res.body.getReader();
      const decoder = new TextDecoder();
      let buf = "", type = "message", data = [], id = null;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, "");
          buf = buf.slice(nl + 1);
          if (line === "") {
            if (data.length) {
              if (id !== null) last = Number(id);
              const event = { type, offset: last, data: JSON.parse(data.join("\n")) };
              if (onEvent(event) === false) return;
            }
            type = "message"; data = []; id = null;
          } else if (!line.startsWith(":")) {
            const at = line.indexOf(":");
            const name = at < 0 ? line : line.slice(0, at);
            const val = at < 0 ? "" : line.slice(at + 1).replace(/^ /, "");
            if (name === "event") type = val; else if (name === "data") data.push(val); else if (name === "id") id = val;
          }
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      if (e instanceof ApiError && e.status !== 503) { onState(false); return; }
    }
    onState(false);
    await sleep(Math.min(5000, 250 * 2 ** Math.min(attempt, 5)));
  }
}

// -- small helpers -------------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children.flat()) if (c) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const badge = (status) => h("span", { class: `badge s-${status}` }, status);
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleString() : "");
const fmtSecs = (s) => (s === undefined || s === null ? "" : s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(2)} s`);
const link = (href, text) => h("a", { href }, text);

function errorBox(e) {
  const p = (e && e.problem) || {};
  const items = (p.errors || []).map((x) => h("li", {},
    x.path ? h("code", {}, x.path) : "", x.location ? ` line ${x.location.line}:${x.location.column}` : "",
    ` ${x.message}`, x.hint ? h("span", { class: "muted" }, ` (hint: ${x.hint})`) : ""));
  return h("div", { class: "error-box", role: "alert" },
    h("b", {}, p.title || "Error"), " ", e.message || String(e),
    p.request_id ? h("span", { class: "muted" }, ` (request ${p.request_id})`) : "",
    items.length ? h("ul", {}, items) : "");
}

// JSON with token classes, built from text nodes only.
function highlight(value) {
  const pre = h("pre", { class: "doc" });
  const text = JSON.stringify(value, null, 2) || "null";
  const re = /("(?:[^"\\]|\\.)*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)/g;
  let at = 0, m;
  while ((m = re.exec(text))) {
    pre.append(text.slice(at, m.index));
    if (m[1]) pre.append(h("span", { class: m[2] ? "k" : "str" }, m[1]), m[2] || "");
    else if (m[3]) pre.append(h("span", { class: "lit" }, m[3]));
    else pre.append(h("span", { class: "num" }, m[4]));
    at = re.lastIndex;
  }
  pre.append(text.slice(at));
  return pre;
}

// -- the token ----------------------------------------------------------------------

function askForToken(rejected) {
  if (document.querySelector(".modal")) return;
  const input = h("input", { type: "password", id: "token-input", autocomplete: "off", placeholder: "the server's auth_token" });
  const close = () => modal.remove();
  const save = (ev) => {
    ev.preventDefault();
    sessionStorage.setItem("baton.token", input.value.trim());
    close();
    route();
  };
  const modal = h("div", { class: "modal" }, h("form", { class: "panel", onsubmit: save },
    h("h2", {}, rejected ? "This server needs a token" : "API token"),
    h("p", { class: "muted" }, rejected
      ? "The server answered 401. Paste the bearer token it was started with: [server] auth_token in its baton.toml, or BATON_AUTH_TOKEN in its environment. It is kept in this tab only and sent in the Authorization header."
      : "The bearer token sent with every call (kept in this tab only)."),
    h("label", { for: "token-input" }, "Token"), input,
    h("div", { class: "row", style: "margin-top:12px;justify-content:flex-end" },
      h("button", { type: "button", onclick: () => { sessionStorage.removeItem("baton.token"); close(); route(); } }, "Forget"),
      h("button", { type: "button", onclick: close }, "Cancel"),
      h("button", { type: "submit", class: "primary" }, "Use token"))));
  document.body.append(modal);
  input.focus();
}

// -- views -----------------------------------------------------------------------

let teardown = () => {};

async function route() {
  teardown();
  teardown = () => {};
  const app = document.getElementById("app");
  const path = location.hash.replace(/^#\/?/, "").split("?")[0] || "runs";
  const [, page, id] = path.match(/^([^/]*)\/?(.*)$/) || [];
  for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === page);
  const views = { runs: id ? runView : runsView, workflows: id ? workflowView : workflowsView, events: id ? topicView : eventsView, new: newWorkflowView };
  const view = views[page] || runsView;
  app.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    await view(app, decodeURIComponent(id || ""));
  } catch (e) {
    app.replaceChildren(errorBox(e));
  }
}

async function runsView(app) {
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const status = h("select", { "aria-label": "status" }, h("option", { value: "" }, "any status"),
    RUN_STATUSES.map((s) => h("option", { value: s, selected: params.get("status") === s }, s)));
  const workflow = h("input", { placeholder: "workflow name", value: params.get("workflow") || "", "aria-label": "workflow" });
  const since = h("select", { "aria-label": "since" }, [["", "any time"], ["3600000", "last hour"], ["86400000", "last day"], ["604800000", "last week"]]
    .map(([v, t]) => h("option", { value: v, selected: params.get("since") === v }, t)));
  const search = h("input", { placeholder: "go to a run id", "aria-label": "run id" });
  const counts = h("div", { class: "counts" });
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const cursors = [null];
  const apply = () => {
    const q = new URLSearchParams();
    if (status.value) q.set("status", status.value);
    if (workflow.value) q.set("workflow", workflow.value);
    if (since.value) q.set("since", since.value);
    location.hash = "#/runs" + (q.toString() ? "?" + q : "");
  };
  const form = h("form", { class: "row", onsubmit: (e) => { e.preventDefault(); apply(); } },
    status, workflow, since, h("button", { type: "submit" }, "Filter"), h("span", { class: "spacer" }),
    h("span", {}, search), h("button", { type: "button", onclick: () => { if (search.value.trim()) location.hash = "#/runs/" + encodeURIComponent(search.value.trim()); } }, "Open"));
  status.addEventListener("change", apply);
  since.addEventListener("change", apply);
  app.replaceChildren(h("h1", {}, "Runs"), counts, form, h("div", { class: "table-wrap", style: "margin-top:12px" },
    h("table", {}, h("thead", {}, h("tr", {}, ["Run", "Workflow", "Status", "Tasks", "Created"].map((t) => h("th", {}, t)))), body)), pager);

  let page = 0;
  const query = (cursor) => {
    const q = new URLSearchParams({ limit: "50" });
    if (params.get("status")) q.set("status", params.get("status"));
    if (params.get("workflow")) q.set("workflow", params.get("workflow"));
    if (params.get("since")) q.set("since_ms", String(Date.now() - Number(params.get("since"))));
    if (cursor) q.set("cursor", cursor);
    return "/api/v1/executions?" + q;
  };
  const load = async () => {
    const list = await api.get(query(cursors[page]));
    body.replaceChildren(...list.items.map((r) => {
      const c = r.task_counts || {};
      const total = STATUSES.reduce((n, s) => n + (c[s] || 0), 0);
      return h("tr", { class: "clickable", onclick: () => { location.hash = "#/runs/" + r.execution_id; } },
        h("td", { class: "mono" }, link("#/runs/" + r.execution_id, r.execution_id)), h("td", {}, r.workflow || r.workflow_id),
        h("td", {}, badge(r.status)), h("td", {}, `${c.succeeded || 0} / ${total}`), h("td", {}, fmtTime(r.created_at_ms)));
    }));
    if (!list.items.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No runs match. Start one from a workflow's page.")));
    cursors[page + 1] = list.next_cursor || null;
    pager.replaceChildren(
      h("button", { disabled: page === 0, onclick: () => { page--; load(); } }, "Previous"),
      h("button", { disabled: !list.next_cursor, onclick: () => { page++; load(); } }, "Next"));
  };
  const loadCounts = async () => {
    const lists = await Promise.all(RUN_STATUSES.map((s) => api.get(`/api/v1/executions?status=${s}&limit=1000`)));
    counts.replaceChildren(...RUN_STATUSES.map((s, i) => h("a", { class: "count", href: "#/runs?status=" + s, style: "text-decoration:none;color:inherit" },
      h("b", {}, lists[i].items.length + (lists[i].next_cursor ? "+" : "")), badge(s))));
  };
  await Promise.all([load(), loadCounts()]);
  const timer = setInterval(() => { if (!document.hidden) { load().catch(() => {}); loadCounts().catch(() => {}); } }, 2000);
  teardown = () => clearInterval(timer);
}

// A run: the DAG by stages (live), the timeline, the tasks' details, actions.
async function runView(app, runId) {
  const status = await api.get(`/api/v1/executions/${encodeURIComponent(runId)}`);
  const [wf, plan] = await Promise.all([
    api.get(`/api/v1/workflows/${status.workflow_id}`),
    api.get(`/api/v1/workflows/${status.workflow_id}/plan`),
  ]);
  const doc = wf.document || {};
  const declared = (doc.tasks || []).map((t) => String(t.id));
  const taskDoc = new Map((doc.tasks || []).map((t) => [String(t.id), t]));
  const state = new Map(status.tasks.map((t) => [t.id, t]));
  const timeline = new Map(); // task -> [[status, at_us], ...] (µs since the run began)
  const clock = { at: 0, seen: performance.now() }; // the newest at_us, and when it arrived
  const critical = new Set((plan.summary && plan.summary.critical_path) || []);
  const abort = new AbortController();
  let current = status, selected = null, dirty = false;

  const header = h("h1", {});
  const actions = h("div", { class: "row" });
  const figures = h("div", { class: "figures" });
  const dagBox = h("div", { class: "dag", id: "dag" });
  const detail = h("div", { class: "panel detail", id: "task-detail" }, h("p", { class: "muted" }, "Select a task to see its input, output and attempts."));
  const timelineBox = h("div", { class: "timeline" });
  const liveDot = h("span", { class: "live off", title: "live updates" });
  const notice = h("div");
  app.replaceChildren(header, notice, actions, h("h2", {}, "Figures"), figures,
    h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Tasks by stage ", h("span", { class: "muted" }, "(critical path outlined)")), legend(), dagBox),
      h("div", {}, h("h2", {}, "Task"), detail)),
    h("h2", {}, "Timeline ", h("span", { class: "muted" }, "(waiting light, running dark, one bar per attempt)")), timelineBox);

  const act = (what) => h("button", { class: what === "cancel" ? "danger" : "", id: "action-" + what, onclick: async () => {
    notice.replaceChildren();
    try { await api.post(`/api/v1/executions/${runId}/${what}`); await refresh(); } catch (e) { notice.replaceChildren(errorBox(e)); }
  } }, what[0].toUpperCase() + what.slice(1));

  const drawHeader = () => {
    // Counted from the tasks' states, which the stream keeps current between
    // two status reads.
    const c = {};
    for (const t of state.values()) c[t.status] = (c[t.status] || 0) + 1;
    header.replaceChildren(liveDot, "Run ", h("span", { class: "mono" }, runId), badge(current.status),
      h("span", { class: "muted", style: "font-size:13px;font-weight:400" }, "of ", link("#/workflows/" + current.workflow_id, current.workflow || current.workflow_id),
        current.rerun_of ? [" · rerun of ", link("#/runs/" + current.rerun_of, current.rerun_of)] : ""));
    const ended = FINAL.has(current.status);
    actions.replaceChildren(...(ended ? [] : [current.status === "paused" ? act("resume") : act("pause"), act("cancel")]),
      current.reason ? h("span", { class: "muted" }, "Reason: " + current.reason) : "");
    const m = current.performance_metrics || {};
    const d = m.dispatch_latency_us || {};
    figures.replaceChildren(...[
      ["succeeded", `${c.succeeded || 0} of ${declared.length}`], ["running", (c.running || 0) + (c.dispatched || 0)],
      ["failed", c.failed || 0], ["phase", current.current_phase], ["runtime", fmtSecs(m.total_runtime)],
      ["coordination", fmtSecs(m.coordination_overhead)], ["dispatch p50 / p99", d.count ? `${d.p50_us.toFixed(1)} / ${d.p99_us.toFixed(1)} µs` : ""],
      ["retries", m.retries || 0], ["planned critical path", fmtSecs(plan.summary.critical_path_seconds)], ["planned parallelism", plan.summary.parallelism.toFixed(2)],
    ].map(([k, v]) => h("div", {}, h("span", {}, k), String(v))));
  };

  const dag = drawDag(dagBox, plan, doc, critical, (id) => { selected = id; drawDetail(); dag.select(id); });
  const drawDetail = () => {
    if (!selected) return;
    const t = state.get(selected) || { id: selected, status: "pending" };
    const d = taskDoc.get(selected) || {};
    const rows = [["status", badge(t.status)], ["agent", t.agent || d.agent || ""], ["attempt", t.attempt || 0]];
    if (t.items) rows.push(["items", Object.entries(t.items).map(([k, v]) => `${k} ${v}`).join(", ")]);
    if (t.child) rows.push(["child run", link("#/runs/" + t.child, t.child)]);
    if (t.reason) rows.push(["reason", t.reason]);
    if (d.depends_on && d.depends_on.length) rows.push(["depends on", [].concat(d.depends_on).join(", ")]);
    const blocks = [];
    if (d.input !== undefined) blocks.push(h("dt", {}, "input"), h("dd", {}, h("pre", {}, JSON.stringify(d.input, null, 2))));
    if (t.output !== undefined && t.output !== null) blocks.push(h("dt", {}, "output"), h("dd", {}, h("pre", { id: "task-output" }, JSON.stringify(t.output, null, 2))));
    if (t.error) blocks.push(h("dt", {}, "error"), h("dd", {}, h("pre", {}, t.error)));
    const steps = (timeline.get(selected) || []).map(([s, at]) => `${s} at +${((at - t0()) / 1000).toFixed(1)} ms`);
    if (steps.length) blocks.push(h("dt", {}, "transitions"), h("dd", {}, h("pre", {}, steps.join("\n"))));
    const rerun = FINAL.has(current.status) ? h("button", { id: "rerun", onclick: async () => {
      try { const r = await api.post(`/api/v1/executions/${runId}/rerun`, { from: selected }); location.hash = "#/runs/" + r.execution_id; }
      catch (e) { detail.append(errorBox(e)); }
    } }, "Rerun from this task") : "";
    detail.replaceChildren(h("h3", { class: "mono", style: "margin:0 0 8px" }, selected),
      h("dl", {}, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]), blocks), h("div", { style: "margin-top:10px" }, rerun));
  };
  const t0 = () => { let m = Infinity; for (const v of timeline.values()) if (v.length && v[0][1] < m) m = v[0][1]; return m === Infinity ? 0 : m; };

  const big = declared.length > DAG_NODE_LIMIT;
  const endedAtLoad = FINAL.has(status.status);
  const timelineDone = () => {
    for (const [id, v] of timeline) if (v[v.length - 1][0] !== (state.get(id) || {}).status) return false;
    return true;
  };
  let drawnTimeline = 0;
  const render = () => {
    dirty = false;
    drawHeader();
    dag.update(state);
    if (big && performance.now() - drawnTimeline < 1000 && !FINAL.has(current.status)) { drawDetail(); return; }
    drawnTimeline = performance.now();
    const live = !FINAL.has(current.status) && current.status !== "paused";
    const now = live ? clock.at + (performance.now() - clock.seen) * 1000 : clock.at;
    drawTimeline(timelineBox, timeline, state, t0(), now);
    drawDetail();
  };
  const schedule = () => { if (!dirty) { dirty = true; requestAnimationFrame(render); } };
  const refresh = async () => {
    current = await api.get(`/api/v1/executions/${encodeURIComponent(runId)}`);
    for (const t of current.tasks) state.set(t.id, t);
    schedule();
  };
  render();
  let refreshing = null;
  // A big run's status is megabytes: asked for at most every 2 s.
  const refreshSoon = () => { if (!refreshing) refreshing = setTimeout(() => { refreshing = null; refresh().catch(() => {}); }, big ? 2000 : 250); };

  followEvents(runId, (event) => {
    const p = event.data.payload || {};
    if (event.type === "baton.transitions") {
      for (const [index, st, attempt, , at] of p.transitions || []) {
        const id = declared[index];
        if (id === undefined) continue;
        // A run that had ended when the page opened has its final states
        // already; its stream is read for the timeline only.
        if (!endedAtLoad) {
          const t = state.get(id);
          if (t) { t.status = st; t.attempt = attempt; } else state.set(id, { id, status: st, attempt });
        }
        // The timeline shows the first TIMELINE_ROWS tasks to start, which
        // are the first the stream names.
        let steps = timeline.get(id);
        if (!steps && timeline.size < TIMELINE_ROWS) timeline.set(id, (steps = []));
        if (steps) steps.push([st, at]);
        if (at > clock.at) { clock.at = at; clock.seen = performance.now(); }
      }
      schedule();
      // Outputs come with the status; a big run's is megabytes, read again
      // only when the run's status changes.
      if (!big) refreshSoon();
      // A run that had ended when the page opened: once the timeline's tasks
      // have all ended, the rest of the stream adds nothing to show.
      if (endedAtLoad && timeline.size >= Math.min(TIMELINE_ROWS, declared.length) && timelineDone()) return false;
    } else if (event.type === "baton.run") {
      refreshSoon();
      if (FINAL.has(p.status)) { refreshSoon(); return false; }
    } else {
      refreshSoon();
    }
    return true;
  }, abort.signal, (on) => liveDot.classList.toggle("off", !on));
  const tick = setInterval(() => { if (!FINAL.has(current.status)) schedule(); }, 500);
  teardown = () => { abort.abort(); clearInterval(tick); if (refreshing) clearTimeout(refreshing); };
}

function legend() {
  return h("div", { class: "legend" }, STATUSES.map((s) => h("span", {}, h("i", { style: `background:var(--${s})` }), s)));
}

// Stages as columns, declaration order within a stage. Above DAG_NODE_LIMIT
// tasks each stage is one box with its counts, so a 100,000-task run opens
// at once and stays responsive.
function drawDag(box, plan, doc, critical, onSelect) {
  const stages = plan.stages || [];
  const total = stages.reduce((n, s) => n + s.length, 0);
  const W = 168, H = 26, GX = 56, GY = 8, TOP = 22;
  const nodes = new Map();
  if (total > DAG_NODE_LIMIT) {
    const tallies = stages.map(() => h("div", { class: "mono" }));
    box.replaceChildren(h("div", { style: "display:flex;gap:12px;padding:12px;overflow:auto" },
      stages.map((s, i) => h("div", { class: "panel", style: "min-width:150px" }, h("b", {}, `Stage ${i + 1}`), h("div", { class: "muted" }, `${s.length} tasks`), tallies[i]))));
    const stageOf = new Map();
    stages.forEach((s, i) => s.forEach((id) => stageOf.set(id, i)));
    return {
      select() {},
      update(state) {
        const per = stages.map(() => ({}));
        for (const [id, t] of state) { const i = stageOf.get(id); if (i !== undefined) per[i][t.status] = (per[i][t.status] || 0) + 1; }
        per.forEach((c, i) => tallies[i].replaceChildren(...Object.entries(c).map(([s, n]) => h("div", {}, badge(s), ` ${n}`))));
      },
    };
  }
  const pos = new Map();
  stages.forEach((s, x) => s.forEach((id, y) => pos.set(id, [20 + x * (W + GX), TOP + y * (H + GY)])));
  const width = 40 + stages.length * (W + GX), height = TOP + 20 + Math.max(1, ...stages.map((s) => s.length)) * (H + GY);
  const root = svg("svg", { width, height, role: "img", "aria-label": "tasks by stage" });
  const cp = [...critical];
  const onPath = new Set(cp.slice(1).map((id, i) => cp[i] + "\u0000" + id));
  stages.forEach((s, x) => root.append(svg("text", { x: 20 + x * (W + GX), y: 14, class: "stage-label" }, `stage ${x + 1}`)));
  for (const t of doc.tasks || []) {
    const to = pos.get(String(t.id));
    if (!to) continue;
    for (const dep of [].concat(t.depends_on || [])) {
      const from = pos.get(String(dep));
      if (!from) continue;
      const x1 = from[0] + W, y1 = from[1] + H / 2, x2 = to[0], y2 = to[1] + H / 2, mx = (x1 + x2) / 2;
      root.append(svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge" + (onPath.has(dep + "\u0000" + t.id) ? " critical" : "") }));
    }
  }
  for (const [id, [x, y]] of pos) {
    const rect = svg("rect", { x, y, width: W, height: H, rx: 5, fill: "var(--pending)" });
    const label = svg("text", { x: x + 8, y: y + 17, class: "dark" }, id.length > 22 ? id.slice(0, 21) + "…" : id);
    const g = svg("g", { class: "node" + (critical.has(id) ? " critical" : ""), "data-task": id, tabindex: 0 }, svg("title", {}, id), rect, label);
    g.addEventListener("click", () => onSelect(id));
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") onSelect(id); });
    nodes.set(id, { g, rect, label });
    root.append(g);
  }
  box.replaceChildren(root);
  const darkText = new Set(["pending", "skipped"]);
  return {
    select(id) { for (const [k, n] of nodes) n.g.classList.toggle("selected", k === id); },
    update(state) {
      for (const [id, n] of nodes) {
        const s = (state.get(id) || {}).status || "pending";
        if (n.g.dataset.status === s) continue;
        n.g.dataset.status = s;
        n.rect.setAttribute("fill", `var(--${s})`);
        n.label.setAttribute("class", darkText.has(s) ? "dark" : "");
      }
    },
  };
}

// One row per task (the first TIMELINE_ROWS by start), one bar per attempt:
// waiting (ready, dispatched) light, running dark, ending in its status' color.
function drawTimeline(box, timeline, state, t0, clockNow) {
  const rows = [...timeline.entries()].filter(([, v]) => v.length).sort((a, b) => a[1][0][1] - b[1][0][1]);
  if (!rows.length) { box.replaceChildren(h("p", { class: "muted", style: "padding:10px" }, "No transitions yet.")); return; }
  let end = t0 + 1;
  for (const [, v] of rows) end = Math.max(end, v[v.length - 1][1]);
  const now = Math.max(end, clockNow);
  const LABEL = box.clientWidth < 500 ? 110 : 170, RH = 18;
  const span = Math.max(1, now - t0), WIDTH = Math.max(340, box.clientWidth - 20) - LABEL;
  const x = (at) => LABEL + ((at - t0) / span) * WIDTH;
  const root = svg("svg", { width: LABEL + WIDTH + 10, height: rows.length * RH + 24 });
  root.append(svg("text", { x: LABEL, y: 12 }, "0"), svg("text", { x: LABEL + WIDTH - 60, y: 12 }, `${(span / 1000).toFixed(1)} ms`));
  rows.forEach(([id, steps], i) => {
    const y = 20 + i * RH;
    const room = LABEL === 110 ? 15 : 24;
    root.append(svg("text", { x: 4, y: y + 12 }, id.length > room ? id.slice(0, room - 1) + "…" : id));
    let waitFrom = null, runFrom = null;
    for (const [s, at] of steps) {
      if (s === "ready" || s === "dispatched") { if (waitFrom === null) waitFrom = at; }
      else if (s === "running") {
        if (waitFrom !== null) root.append(svg("rect", { x: x(waitFrom), y: y + 3, width: Math.max(1, x(at) - x(waitFrom)), height: RH - 6, fill: "var(--ready)" }));
        waitFrom = null; runFrom = at;
      } else {
        const from = runFrom !== null ? runFrom : waitFrom !== null ? waitFrom : at;
        root.append(svg("rect", { x: x(from), y: y + 2, width: Math.max(2, x(at) - x(from)), height: RH - 4, fill: `var(--${s})` }, svg("title", {}, `${id}: ${s}`)));
        waitFrom = runFrom = null;
      }
    }
    const open = runFrom !== null ? runFrom : waitFrom;
    if (open !== null) root.append(svg("rect", { x: x(open), y: y + 2, width: Math.max(2, x(now) - x(open)), height: RH - 4, fill: runFrom !== null ? "var(--running)" : "var(--ready)" }));
  });
  box.replaceChildren(root);
}

// Topics, their partitions and consumer groups (lag, pending, members), and
// a topic's newest events: a dead-letter topic (`X.dlq`) shows each letter's
// reason, group and deliveries from its `dlq.*` headers.
async function eventsView(app) {
  const body = h("tbody");
  app.replaceChildren(h("h1", {}, "Events"),
    h("p", { class: "muted" }, "Topics of the event log; ", h("code", {}, "X.dlq"), " holds the dead letters of ", h("code", {}, "X"),
      ". Lag: published, not yet delivered to the group; pending: delivered, not acknowledged."),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Topic", "Partitions", "Events", "Size", "Groups (lag / pending)"].map((t) => h("th", {}, t)))), body)));
  const load = async () => {
    const { topics } = await api.get("/api/v1/topics");
    body.replaceChildren(...topics.map((t) => h("tr", { class: "clickable", onclick: () => { location.hash = "#/events/" + encodeURIComponent(t.name); } },
      h("td", { class: "mono" }, link("#/events/" + encodeURIComponent(t.name), t.name), t.name.endsWith(".dlq") ? [" ", h("span", { class: "badge s-failed" }, "dead letters")] : ""),
      h("td", {}, t.partitions.length), h("td", {}, t.events), h("td", {}, fmtBytes(t.bytes)),
      h("td", { style: "white-space:normal" }, t.groups.length ? t.groups.map((g) => `${g.name}: ${g.lag} / ${g.pending}`).join(", ") : h("span", { class: "muted" }, "none")))));
    if (!topics.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 5, class: "muted" }, "No topics yet.")));
  };
  await load();
  const timer = setInterval(() => { if (!document.hidden) load().catch(() => {}); }, 2000);
  teardown = () => clearInterval(timer);
}

async function topicView(app, name) {
  const { topics } = await api.get("/api/v1/topics");
  const topic = topics.find((t) => t.name === name);
  if (!topic) throw new ApiError(404, { title: "Not found", detail: `no topic ${name}` });
  const dlq = name.endsWith(".dlq");
  const latest = await Promise.all(topic.partitions.filter((p) => p.end > p.start).map((p) =>
    api.get(`/api/v1/topics/${encodeURIComponent(name)}/events?partition=${p.partition}&from=${Math.max(p.start, p.end - 20)}&max=20`)));
  const events = latest.flatMap((r) => r.events).sort((a, b) => b.timestamp_ms - a.timestamp_ms).slice(0, 50);
  const detail = h("div", { class: "panel detail", id: "event-detail" }, h("p", { class: "muted" }, "Select an event to see its headers and payload."));
  const show = (e) => detail.replaceChildren(h("h3", { class: "mono", style: "margin:0 0 8px" }, `${e.partition}:${e.offset}`),
    h("dl", {}, [["type", e.type], ["key", e.key], ["id", e.id], ["published", fmtTime(e.timestamp_ms)]].flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
      h("dt", {}, "headers"), h("dd", {}, h("pre", {}, JSON.stringify(e.headers || {}, null, 2))),
      h("dt", {}, "payload"), h("dd", {}, h("pre", {}, JSON.stringify(e.payload, null, 2)))));
  const head = dlq ? ["Where", "Type", "Key", "Reason", "From", "Deliveries", "Published"] : ["Where", "Type", "Key", "Published"];
  app.replaceChildren(h("h1", {}, "Topic ", h("span", { class: "mono" }, name), dlq ? h("span", { class: "badge s-failed" }, "dead letters") : ""),
    h("div", { class: "figures" }, [["events", topic.events], ["size", fmtBytes(topic.bytes)], ["partitions", topic.partitions.length], ["groups", topic.groups.length]].map(([k, v]) => h("div", {}, h("span", {}, k), String(v)))),
    h("h2", {}, "Consumer groups"),
    topic.groups.length ? h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Group", "Lag", "Pending", "Members (pending, last poll)"].map((t) => h("th", {}, t)))),
      h("tbody", {}, topic.groups.map((g) => h("tr", {}, h("td", { class: "mono" }, g.name), h("td", {}, g.lag), h("td", {}, g.pending),
        h("td", { style: "white-space:normal" }, g.members.map((m) => `${m.name} (${m.pending}, ${fmtTime(m.last_seen_ms)})`).join(", "))))))) : h("p", { class: "muted" }, "No consumer group reads this topic."),
    h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Newest events"), h("div", { class: "table-wrap" }, h("table", { id: "events-table" }, h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
        h("tbody", {}, events.length ? events.map((e) => {
          const hd = e.headers || {};
          const cells = dlq ? [hd["dlq.reason"] || "", `${hd["dlq.topic"] || ""} / ${hd["dlq.group"] || ""}`, hd["dlq.deliveries"] || ""] : [];
          return h("tr", { class: "clickable", onclick: () => show(e) }, h("td", { class: "mono" }, `${e.partition}:${e.offset}`), h("td", {}, e.type), h("td", { class: "mono" }, e.key),
            cells.map((c, i) => h("td", i === 0 ? { style: "white-space:normal" } : {}, c)), h("td", {}, fmtTime(e.timestamp_ms)));
        }) : h("tr", {}, h("td", { colspan: head.length, class: "muted" }, "No events retained.")))))),
      h("div", {}, h("h2", {}, "Event"), detail)));
}

const fmtBytes = (n) => (n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`);

async function workflowsView(app) {
  const body = h("tbody");
  const pager = h("div", { class: "pager" });
  const cursors = [null];
  let page = 0;
  app.replaceChildren(h("h1", {}, "Workflows ", h("a", { class: "button", href: "#/new", style: "font-size:13px;font-weight:400;text-decoration:none" }, "New workflow")),
    h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, ["Name", "Version", "Id", "Tasks", "Stages", "Critical path", "Created"].map((t) => h("th", {}, t)))), body)), pager);
  const load = async () => {
    const q = new URLSearchParams({ limit: "50" });
    if (cursors[page]) q.set("cursor", cursors[page]);
    const list = await api.get("/api/v1/workflows?" + q);
    body.replaceChildren(...list.items.map((w) => h("tr", { class: "clickable", onclick: () => { location.hash = "#/workflows/" + w.id; } },
      h("td", {}, link("#/workflows/" + w.id, w.name || "(unnamed)")), h("td", {}, w.version), h("td", { class: "mono" }, w.id),
      h("td", {}, w.plan.tasks), h("td", {}, w.plan.stage_count), h("td", {}, fmtSecs(w.plan.critical_path_seconds)), h("td", {}, fmtTime(w.created_ms)))));
    if (!list.items.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No workflows yet: create one.")));
    cursors[page + 1] = list.next_cursor || null;
    pager.replaceChildren(h("button", { disabled: page === 0, onclick: () => { page--; load(); } }, "Previous"),
      h("button", { disabled: !list.next_cursor, onclick: () => { page++; load(); } }, "Next"));
  };
  await load();
}

async function workflowView(app, id) {
  const [wf, plan] = await Promise.all([api.get(`/api/v1/workflows/${encodeURIComponent(id)}`), api.get(`/api/v1/workflows/${encodeURIComponent(id)}/plan`)]);
  const s = plan.summary;
  const input = h("textarea", { rows: 5, id: "run-input", "aria-label": "run input (JSON)" }, "{}");
  const notice = h("div");
  const execute = async (e) => {
    e.preventDefault();
    notice.replaceChildren();
    let data;
    try { data = input.value.trim() ? JSON.parse(input.value) : null; } catch (err) { notice.replaceChildren(errorBox({ message: "The input is not JSON: " + err.message })); return; }
    try {
      const run = await api.post(`/api/v1/workflows/${id}/execute`, { input_data: data });
      location.hash = "#/runs/" + run.execution_id;
    } catch (err) { notice.replaceChildren(errorBox(err)); }
  };
  app.replaceChildren(
    h("h1", {}, wf.name || "(unnamed)", h("span", { class: "muted", style: "font-size:13px;font-weight:400" }, `version ${wf.version} · `, h("span", { class: "mono" }, wf.id))),
    h("div", { class: "figures" }, [["tasks", s.tasks], ["stages", s.stage_count], ["widest stage", s.max_width], ["critical path", fmtSecs(s.critical_path_seconds)],
      ["total work", fmtSecs(s.total_work_seconds)], ["parallelism", s.parallelism.toFixed(2)], ["edges", s.edges], ["redundant edges", s.redundant_edges]].map(([k, v]) => h("div", {}, h("span", {}, k), String(v)))),
    h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Plan"), h("p", {}, h("b", {}, "Critical path: "), (s.critical_path || []).join(" → ")),
        h("p", { class: "muted" }, "Weighted by each task's estimate; a task without one counts as 1 s."),
        h("div", { class: "table-wrap" }, h("table", {}, h("thead", {}, h("tr", {}, h("th", {}, "Stage"), h("th", {}, "Tasks"))),
          h("tbody", {}, plan.stages.slice(0, 200).map((st, i) => h("tr", {}, h("td", {}, i + 1), h("td", { class: "mono", style: "white-space:normal" }, st.slice(0, 50).join(", ") + (st.length > 50 ? ` … (${st.length})` : ""))))))),
        plan.redundant_edges && plan.redundant_edges.length ? h("p", { class: "muted" }, "Redundant edges (implied by others): " + plan.redundant_edges.map((e) => JSON.stringify(e)).join(", ")) : "",
        h("h2", {}, "Document"), highlight(wf.document)),
      h("div", {}, h("h2", {}, "Execute"), h("form", { class: "panel", onsubmit: execute }, h("label", { for: "run-input" }, "Input (JSON)"), input,
        h("div", { class: "row", style: "margin-top:8px" }, h("button", { type: "submit", class: "primary", id: "execute" }, "Execute"))), notice,
        h("h2", {}, "Recent runs"), h("div", { id: "recent" }))));
  const runs = await api.get(`/api/v1/executions?workflow=${encodeURIComponent(wf.name || "")}&limit=10`);
  document.getElementById("recent").replaceChildren(...(runs.items.length ? runs.items.map((r) => h("div", {}, link("#/runs/" + r.execution_id, r.execution_id), " ", badge(r.status))) : [h("p", { class: "muted" }, "None yet.")]));
}

function newWorkflowView(app) {
  const example = "name: hello\ntasks:\n  - id: fetch\n  - id: summarize\n    depends_on: [fetch]\n";
  const text = h("textarea", { rows: 18, id: "workflow-text", spellcheck: "false", "aria-label": "workflow document (YAML or JSON)" }, example);
  const result = h("div");
  const submit = async (e) => {
    e.preventDefault();
    result.replaceChildren();
    const body = text.value;
    const type = body.trim().startsWith("{") ? "application/json" : "application/yaml";
    try {
      const wf = await api.post("/api/v1/workflows", body, type);
      location.hash = "#/workflows/" + wf.id;
    } catch (err) {
      const bad = new Set(((err.problem && err.problem.errors) || []).map((x) => x.location && x.location.line).filter(Boolean));
      result.replaceChildren(errorBox(err), bad.size ? h("pre", { class: "doc lines", id: "error-lines" }, body.split("\n").map((l, i) => h("div", { class: bad.has(i + 1) ? "bad" : "" }, l || " "))) : "");
    }
  };
  app.replaceChildren(h("h1", {}, "New workflow"),
    h("p", { class: "muted" }, "YAML or JSON, as in docs/workflow-language.md. It is validated and planned; errors are shown at their line."),
    h("form", { onsubmit: submit }, text, h("div", { class: "row", style: "margin-top:8px" }, h("button", { type: "submit", class: "primary", id: "create" }, "Create"))), result);
}

// -- start -----------------------------------------------------------------------

document.getElementById("token-button").addEventListener("click", () => askForToken(false));
window.addEventListener("hashchange", route);
fetch("/healthz").then((r) => r.json()).then((s) => { document.getElementById("server-state").textContent = "server " + s.status; }).catch(() => {});
route();
