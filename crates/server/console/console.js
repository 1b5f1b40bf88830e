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
  const input = h("input", { type: "password", id: "token-input", autocomplete: "off", placeholder: "a token from baton token create, or the auth_token" });
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
      ? "The server answered 401. Paste a bearer token: one made with baton token create (a tenant's token shows that tenant's workflows and runs only), or the admin token the server was started with ([server] auth_token in its baton.toml, or BATON_AUTH_TOKEN). It is kept in this tab only and sent in the Authorization header."
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
  // On a narrow window the links scroll sideways: keep the current one in view.
  const active = document.querySelector("[data-nav].active");
  if (active) active.scrollIntoView({ block: "nearest", inline: "nearest" });
  const views = { runs: id ? runView : runsView, workflows: id ? workflowView : workflowsView, events: id ? topicView : eventsView,
    agents: agentsView, live: liveView, bench: benchView, new: newWorkflowView };
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
  // The run's own workflow: a child run's is not in the catalog.
  const { document: doc, plan } = await api.get(`/api/v1/executions/${encodeURIComponent(runId)}/workflow`);
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
  const instances = instancesPanel(runId);
  const partial = new Map(); // task -> its latest progress report (not durable)
  const decisions = new Map(); // task -> its decisions, newest last (the last 50)
  const children = childRuns(runId);
  const notice = h("div");
  app.replaceChildren(header, notice, actions, h("h2", {}, "Figures"), figures,
    h("div", { class: "grid2" },
      h("div", {}, h("h2", {}, "Tasks by stage ", h("span", { class: "muted" }, "(critical path: planned outlined, as run dashed)")), legend(), dagBox),
      h("div", {}, h("h2", {}, "Task"), detail)),
    h("h2", {}, "Timeline ", h("span", { class: "muted" }, "(waiting light, running dark, one bar per attempt)")), timelineBox,
    children.box);

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
      h("span", { class: "muted", style: "font-size:13px;font-weight:400" }, "of ", current.workflow_id ? link("#/workflows/" + current.workflow_id, current.workflow || current.workflow_id) : current.workflow || "",
        current.rerun_of ? [" · rerun of ", link("#/runs/" + current.rerun_of, current.rerun_of)] : "",
        current.parent_id ? [" · child of ", link("#/runs/" + current.parent_id, current.parent_id)] : ""));
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
    const p = partial.get(selected);
    if (p) blocks.push(h("dt", {}, "partial output"), h("dd", {}, h("div", { class: "muted" }, `attempt ${p.attempt}${p.instance !== undefined ? `, instance ${p.instance}` : ""}, ${new Date(p.at).toLocaleTimeString()}`),
      h("pre", { id: "task-progress" }, typeof p.progress === "string" ? p.progress : JSON.stringify(p.progress, null, 2))));
    const made = decisions.get(selected);
    if (made) blocks.push(h("dt", {}, "decisions"), h("dd", {}, h("pre", { id: "task-decisions" }, made.map((d) => JSON.stringify(d)).join("\n"))));
    const steps = (timeline.get(selected) || []).map(([s, at]) => `${s} at +${((at - t0()) / 1000).toFixed(1)} ms`);
    if (steps.length) blocks.push(h("dt", {}, "transitions"), h("dd", {}, h("pre", {}, steps.join("\n"))));
    const rerun = FINAL.has(current.status) ? h("button", { id: "rerun", onclick: async () => {
      try { const r = await api.post(`/api/v1/executions/${runId}/rerun`, { from: selected }); location.hash = "#/runs/" + r.execution_id; }
      catch (e) { detail.append(errorBox(e)); }
    } }, "Rerun from this task") : "";
    if (t.items) instances.show(selected); else instances.hide();
    detail.replaceChildren(h("h3", { class: "mono", style: "margin:0 0 8px" }, selected),
      h("dl", {}, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]), blocks), instances.box, h("div", { style: "margin-top:10px" }, rerun));
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
    dag.actual((current.performance_metrics || {}).critical_path);
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
    } else if (event.type === "baton.progress") {
      partial.set(p.task, { attempt: p.attempt, instance: p.instance, progress: p.progress, at: Date.now() });
      schedule();
    } else if (event.type === "baton.decision" && p.task) {
      const list = decisions.get(p.task) || [];
      const { task, ...rest } = p;
      list.push(rest);
      if (list.length > 50) list.shift();
      decisions.set(task, list);
      schedule();
      refreshSoon();
    } else {
      refreshSoon();
    }
    return true;
  }, abort.signal, (on) => liveDot.classList.toggle("off", !on));
  const tick = setInterval(() => { if (!FINAL.has(current.status)) schedule(); }, 500);
  // While the run is live: the selected task's instances, and the child runs
  // (unless a branch of their tree is open), read again every 2 s.
  children.load().catch(() => {});
  let wasFinal = FINAL.has(current.status);
  const slow = setInterval(() => {
    if (document.hidden || wasFinal) return;
    wasFinal = FINAL.has(current.status);
    const t = selected && state.get(selected);
    if (t && t.items) instances.refresh();
    if (!children.box.querySelector('[aria-expanded="true"]')) children.load().catch(() => {});
  }, 2000);
  teardown = () => { abort.abort(); clearInterval(tick); clearInterval(slow); if (refreshing) clearTimeout(refreshing); };
}

// A fan-out's items, a loop's or a pattern's iterations: a page at a time
// (`GET …/tasks/{task}/instances`), kept while the task stays selected.
function instancesPanel(runId) {
  const box = h("div", { id: "instances" });
  const PAGE = 50;
  let task = null, offset = 0, loading = false;
  const load = async () => {
    if (!task || loading) return;
    loading = true;
    try {
      const p = await api.get(`/api/v1/executions/${encodeURIComponent(runId)}/tasks/${encodeURIComponent(task)}/instances?offset=${offset}&limit=${PAGE}`);
      const pager = h("div", { class: "pager" },
        h("span", { class: "muted" }, p.items.length ? `${offset + 1}–${offset + p.items.length} of ${p.total}` : `0 of ${p.total}`),
        h("button", { type: "button", id: "instances-prev", disabled: offset === 0, onclick: () => { offset = Math.max(0, offset - PAGE); load(); } }, "Previous"),
        h("button", { type: "button", id: "instances-next", disabled: p.next_offset === null || p.next_offset === undefined, onclick: () => { offset = p.next_offset; load(); } }, "Next"));
      const shown = (v) => { const s = JSON.stringify(v); return s.length > 80 ? s.slice(0, 79) + "…" : s; };
      const agents = p.items.some((i) => i.agent);
      box.replaceChildren(h("h4", { style: "margin:12px 0 6px" }, p.kind === "for_each" ? "Items" : "Iterations"),
        h("div", { class: "table-wrap" }, h("table", { id: "instances-table" },
          h("thead", {}, h("tr", {}, ["#", "Status", "Attempt", agents ? "Agent" : null, "Output or error"].filter(Boolean).map((c) => h("th", {}, c)))),
          h("tbody", {}, p.items.map((i) => h("tr", {}, h("td", {}, i.index), h("td", {}, i.status === "waiting" ? h("span", { class: "badge s-pending" }, "waiting") : badge(i.status)), h("td", {}, i.attempt),
            agents ? h("td", { class: "mono" }, i.agent || "") : null,
            h("td", { class: "mono", title: i.error || (i.output === undefined ? "" : JSON.stringify(i.output)) }, i.error ? i.error.slice(0, 80) : i.output === undefined ? "" : shown(i.output))))))),
        pager);
    } catch (e) {
      box.replaceChildren(errorBox(e));
    } finally {
      loading = false;
    }
  };
  return {
    box,
    show(id) { if (id !== task) { task = id; offset = 0; box.replaceChildren(h("p", { class: "muted" }, "Loading…")); load(); } },
    hide() { task = null; box.replaceChildren(); },
    refresh() { load(); },
  };
}

// The run's children (sub-workflows, teams), as a tree: each level read with
// `GET /api/v1/executions?parent=…`, opened on a click.
function childRuns(runId) {
  const box = h("div", { id: "child-runs" });
  const level = async (parent, into) => {
    const page = await api.get(`/api/v1/executions?parent=${encodeURIComponent(parent)}&limit=100`);
    into.replaceChildren(...page.items.map((r) => {
      const below = h("ul", { class: "tree" });
      let open = false;
      const toggle = h("button", { type: "button", class: "tree-toggle", "aria-expanded": "false", title: "its child runs", onclick: async () => {
        open = !open;
        toggle.textContent = open ? "▾" : "▸";
        toggle.setAttribute("aria-expanded", String(open));
        if (open) { below.replaceChildren(h("li", { class: "muted" }, "Loading…")); await level(r.execution_id, below).catch((e) => below.replaceChildren(errorBox(e))); if (!below.children.length) below.replaceChildren(h("li", { class: "muted" }, "No child runs.")); }
        else below.replaceChildren();
      } }, "▸");
      return h("li", {}, toggle, " ", link("#/runs/" + r.execution_id, r.execution_id), " ", badge(r.status), " ",
        h("span", { class: "muted" }, `${r.workflow || r.workflow_id} · ${fmtTime(r.created_at_ms)}`), below);
    }));
    if (page.next_cursor) into.append(h("li", { class: "muted" }, "The first 100 are shown."));
    return page.items.length;
  };
  return {
    box,
    async load() {
      const list = h("ul", { class: "tree" });
      const n = await level(runId, list);
      box.replaceChildren(...(n ? [h("h2", {}, "Child runs"), list] : []));
    },
  };
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
      actual() {},
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
  const edges = new Map(); // "dep\0task" -> its path
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
      const edge = svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge" + (onPath.has(dep + "\u0000" + t.id) ? " critical" : "") });
      edges.set(dep + "\u0000" + t.id, edge);
      root.append(edge);
    }
  }
  for (const [id, [x, y]] of pos) {
    const rect = svg("rect", { x, y, width: W, height: H, rx: 5, fill: "var(--pending)" });
    // Around the node when it is on the critical path as it ran.
    const mark = svg("rect", { x: x - 3, y: y - 3, width: W + 6, height: H + 6, rx: 7, class: "actual-mark" });
    const label = svg("text", { x: x + 8, y: y + 17, class: "dark" }, id.length > 22 ? id.slice(0, 21) + "…" : id);
    // A fan-out's or a loop's instances, ended of total, at the node's end.
    const count = svg("text", { x: x + W - 6, y: y + 17, "text-anchor": "end", class: "dark count" });
    const g = svg("g", { class: "node" + (critical.has(id) ? " critical" : ""), "data-task": id, tabindex: 0 }, svg("title", {}, id), mark, rect, label, count);
    g.addEventListener("click", () => onSelect(id));
    g.addEventListener("keydown", (e) => { if (e.key === "Enter") onSelect(id); });
    nodes.set(id, { g, rect, label, count, id });
    root.append(g);
  }
  box.replaceChildren(root);
  const darkText = new Set(["pending", "skipped"]);
  return {
    select(id) { for (const [k, n] of nodes) n.g.classList.toggle("selected", k === id); },
    // The critical path as it ran (last task first), marked beside the planned one.
    actual(path) {
      const on = new Set(path || []);
      const pairs = new Set((path || []).slice(1).map((id, i) => id + "\u0000" + path[i]));
      for (const [k, n] of nodes) n.g.classList.toggle("actual", on.has(k));
      for (const [k, e] of edges) e.classList.toggle("actual", pairs.has(k));
    },
    update(state) {
      for (const [id, n] of nodes) {
        const t = state.get(id) || {};
        const s = t.status || "pending";
        if (t.items) {
          const it = t.items, text = `${it.succeeded + it.failed}/${it.total}`;
          if (n.count.textContent !== text) {
            n.count.textContent = text;
            // The label makes room for the count.
            const room = Math.max(6, 21 - text.length);
            n.label.textContent = id.length > room + 1 ? id.slice(0, room) + "…" : id;
          }
        }
        if (n.g.dataset.status === s) continue;
        n.g.dataset.status = s;
        n.rect.setAttribute("fill", `var(--${s})`);
        n.label.setAttribute("class", darkText.has(s) ? "dark" : "");
        n.count.setAttribute("class", (darkText.has(s) ? "dark" : "") + " count");
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
  // A group's pending list: which member holds which event, since when, and
  // when another member may take it (GET …/groups/{group}/pending).
  const pendingBox = h("div", { id: "pending" });
  const showPending = async (group) => {
    try {
      const { pending } = await api.get(`/api/v1/topics/${encodeURIComponent(name)}/groups/${encodeURIComponent(group)}/pending?limit=200`);
      pendingBox.replaceChildren(h("h3", {}, "Pending in ", h("span", { class: "mono" }, group), h("span", { class: "muted" }, ` (${pending.length}${pending.length === 200 ? ", the 200 oldest" : ""})`)),
        pending.length ? h("div", { class: "table-wrap" }, h("table", { id: "pending-table" },
          h("thead", {}, h("tr", {}, ["Where", "Member", "Deliveries", "Delivered", "Another member may take it"].map((t) => h("th", {}, t)))),
          h("tbody", {}, pending.map((p) => h("tr", {}, h("td", { class: "mono" }, `${p.partition}:${p.offset}`), h("td", { class: "mono" }, p.member), h("td", {}, p.deliveries),
            h("td", {}, fmtTime(p.since_ms)), h("td", {}, fmtTime(p.claimable_at_ms)))))))
          : h("p", { class: "muted" }, "Nothing is pending: every delivered event was acknowledged."));
    } catch (e) { pendingBox.replaceChildren(errorBox(e)); }
  };
  // A dead-letter topic's letters go back to their topic through the group
  // `baton.redrive`: what it has not read or acknowledged is still to redrive.
  let redrive = "";
  if (dlq) {
    const g = topic.groups.find((x) => x.name === "baton.redrive");
    const left = g ? g.lag + g.pending : topic.events;
    const target = name.slice(0, -".dlq".length);
    const status = h("span", { class: "muted", id: "redrive-status" }, left ? `${left} not redriven yet` : "Every letter has been redriven.");
    const button = h("button", { type: "button", id: "redrive", disabled: !left, onclick: async () => {
      if (!confirm(`Move ${left} dead letters back to ${target}? Every consumer group of ${target} receives them again.`)) return;
      button.disabled = true;
      try {
        const r = await api.post(`/api/v1/topics/${encodeURIComponent(name)}/redrive`, { max: 100000 });
        status.textContent = `${r.moved} moved back to ${r.topic}; ${r.remaining} left.`;
      } catch (e) { status.replaceChildren(errorBox(e)); button.disabled = false; }
    } }, `Redrive to ${target}`);
    redrive = h("div", { class: "row", style: "margin:0 0 12px" }, button, status);
  }
  app.replaceChildren(h("h1", {}, "Topic ", h("span", { class: "mono" }, name), dlq ? h("span", { class: "badge s-failed" }, "dead letters") : ""),
    redrive,
    h("div", { class: "figures" }, [["events", topic.events], ["size", fmtBytes(topic.bytes)], ["partitions", topic.partitions.length], ["groups", topic.groups.length]].map(([k, v]) => h("div", {}, h("span", {}, k), String(v)))),
    h("h2", {}, "Consumer groups"),
    topic.groups.length ? h("div", { class: "table-wrap" }, h("table", { id: "groups-table" }, h("thead", {}, h("tr", {}, ["Group", "Lag", "Pending", "Members (pending, last poll)"].map((t) => h("th", {}, t)))),
      h("tbody", {}, topic.groups.map((g) => h("tr", { class: "clickable", title: "its pending events", onclick: () => showPending(g.name) }, h("td", { class: "mono" }, g.name), h("td", {}, g.lag), h("td", {}, g.pending),
        h("td", { style: "white-space:normal" }, g.members.map((m) => `${m.name} (${m.pending}, ${fmtTime(m.last_seen_ms)})`).join(", "))))))) : h("p", { class: "muted" }, "No consumer group reads this topic."),
    pendingBox,
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

// -- agents and workers --------------------------------------------------------
//
// `GET /api/v1/agents`: each agent's load (in flight against its concurrency,
// calls waiting for a slot), its circuit breaker, and for `worker` agents the
// calls waiting for a worker and leased; the remote workers by the name they
// poll with, and their leases; with several instances, the instances.
async function agentsView(app) {
  const body = h("div");
  app.replaceChildren(h("h1", {}, "Agents and workers"),
    h("p", { class: "muted" }, "Load and health of every agent the engine has called; remote workers seen in the last five minutes and the calls they hold. Refreshed every 2 s."), body);
  const breaker = (b) => h("span", { class: `badge ${b === "closed" ? "s-succeeded" : b === "open" ? "s-failed" : "s-paused"}` }, b.replace("_", "-"));
  const load = async () => {
    const d = await api.get("/api/v1/agents");
    const now = Date.now();
    const ago = (ms) => { const s = Math.max(0, Math.round((now - ms) / 1000)); return s < 60 ? `${s} s ago` : `${Math.round(s / 60)} min ago`; };
    const left = (ms) => { const s = Math.round((ms - now) / 1000); return s >= 0 ? `in ${s} s` : `${-s} s ago`; };
    const parts = [
      h("h2", {}, "Agents"),
      d.agents.length ? h("div", { class: "table-wrap" }, h("table", { id: "agents-table" },
        h("thead", {}, h("tr", {}, ["Agent", "Type", "In flight", "Waiting for a slot", "Calls", "Failures", "Breaker", "Worker queue / leased"].map((t) => h("th", {}, t)))),
        h("tbody", {}, d.agents.map((a) => h("tr", {},
          h("td", { class: "mono" }, a.name, a.operator ? [" ", h("span", { class: "badge s-ready", title: "defined in the server's config" }, "operator")] : ""),
          h("td", {}, a.kind),
          h("td", {}, a.concurrency ? `${a.in_flight} / ${a.concurrency}` : String(a.in_flight)),
          h("td", {}, a.queued), h("td", {}, a.calls),
          h("td", { class: a.failures ? "bad" : "" }, a.calls ? `${a.failures} (${((a.failures / a.calls) * 100).toFixed(1)}%)` : "0"),
          h("td", {}, breaker(a.breaker)),
          h("td", {}, a.kind === "worker" ? `${a.waiting} / ${a.leased}` : h("span", { class: "muted" }, "—"))))))) : h("p", { class: "muted" }, "No agent has been called since the server started."),
      d.truncated ? h("p", { class: "muted" }, "The first 1,000 agents by name are shown.") : "",
      h("h2", {}, "Workers"),
      d.workers.length ? h("div", { class: "table-wrap" }, h("table", { id: "workers-table" },
        h("thead", {}, h("tr", {}, ["Worker", "Agents", "Connected", "Leases", "Last poll"].map((t) => h("th", {}, t)))),
        h("tbody", {}, d.workers.map((w) => h("tr", {}, h("td", { class: "mono" }, w.name), h("td", { class: "mono", style: "white-space:normal" }, w.agents.join(", ")),
          h("td", {}, h("span", { class: "live" + (w.polling ? "" : " off") }), w.polling ? `polling (${w.polling})` : "idle"),
          h("td", {}, w.leases), h("td", {}, ago(w.last_seen_ms))))))) : h("p", { class: "muted" }, "No worker has polled in the last five minutes (workers poll POST /api/v1/agents/{name}/poll; see docs/api.md)."),
      h("h2", {}, `Leases (${d.leased})`),
      d.leases.length ? h("div", { class: "table-wrap" }, h("table", { id: "leases-table" },
        h("thead", {}, h("tr", {}, ["Run", "Task", "Attempt", "Agent", "Worker", "Expires"].map((t) => h("th", {}, t)))),
        h("tbody", {}, d.leases.map((l) => h("tr", {}, h("td", { class: "mono" }, link("#/runs/" + l.run, l.run)), h("td", { class: "mono" }, l.task), h("td", {}, l.attempt),
          h("td", { class: "mono" }, l.agent), h("td", { class: "mono" }, l.worker), h("td", {}, left(l.expires_ms))))))) : h("p", { class: "muted" }, "No call is leased."),
      d.leased > d.leases.length ? h("p", { class: "muted" }, `The ${d.leases.length} soonest to expire are shown.`) : "",
    ];
    if (d.instances) {
      parts.push(h("h2", {}, "Instances"), h("div", { class: "table-wrap" }, h("table", { id: "instances-table" },
        h("thead", {}, h("tr", {}, ["Instance", "Address", "Started", "Lease", "Runs owned"].map((t) => h("th", {}, t)))),
        h("tbody", {}, d.instances.map((i) => h("tr", {}, h("td", { class: "mono" }, i.name, i.this ? [" ", h("span", { class: "badge s-running" }, "this one")] : ""),
          h("td", { class: "mono" }, i.address || ""), h("td", {}, fmtTime(i.started_at_ms)),
          h("td", {}, i.lease_left_ms >= 0 ? `${(i.lease_left_ms / 1000).toFixed(1)} s left` : h("span", { class: "badge s-failed" }, "expired")),
          h("td", {}, i.runs)))))));
    }
    body.replaceChildren(...parts);
  };
  await load();
  const timer = setInterval(() => { if (!document.hidden) load().catch(() => {}); }, 2000);
  teardown = () => clearInterval(timer);
}

// -- live metrics ----------------------------------------------------------------
//
// `GET /api/v1/stats`: the server samples its figures every `interval_ms`
// and keeps the last minutes; rates come from two samples in a row.
async function liveView(app) {
  const body = h("div", { class: "live-grid" });
  const figures = h("div", { class: "figures" });
  app.replaceChildren(h("h1", {}, h("span", { class: "live" }), "Live"),
    h("p", { class: "muted" }, "The server's figures over the last minutes, sampled by the server (so the history is there when the page opens). Refreshed every 2 s."),
    figures, body);
  const load = async () => {
    const { interval_ms: every, samples } = await api.get("/api/v1/stats");
    if (samples.length < 2) {
      body.replaceChildren(h("p", { class: "muted", id: "live-empty" }, `Collecting: the server samples every ${every / 1000} s; rates need two samples.`));
      return;
    }
    const t = samples.map((s) => s.t_ms);
    const rate = (key) => samples.map((s, i) => (i ? ((s[key] - samples[i - 1][key]) * 1000) / Math.max(1, s.t_ms - samples[i - 1].t_ms) : NaN));
    const events = rate("events_published"), transitions = rate("transitions");
    const finished = samples.map((s, i) => (i ? ((s.runs_completed + s.runs_failed + s.runs_cancelled) - (samples[i - 1].runs_completed + samples[i - 1].runs_failed + samples[i - 1].runs_cancelled)) * 1000 / Math.max(1, s.t_ms - samples[i - 1].t_ms) : NaN));
    const last = samples[samples.length - 1];
    const recent = (xs) => xs[xs.length - 1];
    const withData = samples.filter((s) => s.dispatch.count);
    const lastOverhead = withData.length ? withData[withData.length - 1].dispatch : null;
    figures.replaceChildren(...[
      ["events/s", fmtRate(recent(events))], ["transitions/s", fmtRate(recent(transitions))],
      ["runs running", last.runs_running], ["runs queued", last.runs_queued], ["ready tasks", last.ready_queue],
      ["overhead p50", lastOverhead ? fmtUs(lastOverhead.p50_us) : "—"], ["overhead p99", lastOverhead ? fmtUs(lastOverhead.p99_us) : "—"],
    ].map(([k, v]) => h("div", {}, h("span", {}, k), String(v))));
    const nan = (s, f) => (s.dispatch.count ? f(s.dispatch) : NaN);
    body.replaceChildren(
      liveChart("Events published /s", t, [{ name: "events/s", color: "#2f5bd3", points: events }], fmtRate),
      liveChart("Task transitions /s", t, [{ name: "transitions/s", color: "#27a35f", points: transitions }], fmtRate),
      liveChart("Runs", t, [
        { name: "running", color: "#2f5bd3", points: samples.map((s) => s.runs_running), fmt: String },
        { name: "paused", color: "#a15c00", points: samples.map((s) => s.runs_paused), fmt: String },
        { name: "queued", color: "#8a8f99", points: samples.map((s) => s.runs_queued), fmt: String },
        { name: "finished /s", color: "#27a35f", points: finished, dashed: true },
      ], fmtRate),
      liveChart("Coordination overhead (ready → dispatched)", t, [
        { name: "p50", color: "#2f5bd3", points: samples.map((s) => nan(s, (d) => d.p50_us)) },
        { name: "p99", color: "#d8452f", points: samples.map((s) => nan(s, (d) => d.p99_us)) },
      ], fmtUs));
  };
  await load();
  const timer = setInterval(() => { if (!document.hidden) load().catch(() => {}); }, 2000);
  teardown = () => clearInterval(timer);
}

const fmtRate = (v) => (!Number.isFinite(v) ? "—" : v >= 1e6 ? `${(v / 1e6).toFixed(2)}M` : v >= 1e3 ? `${(v / 1e3).toFixed(1)}k` : v >= 10 ? v.toFixed(0) : v.toFixed(1));
const fmtUs = (v) => (!Number.isFinite(v) ? "—" : v >= 1e6 ? `${(v / 1e6).toFixed(2)} s` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} ms` : `${v.toFixed(v >= 10 ? 0 : 1)} µs`);

// A line chart of series over time: the y axis from 0, the x axis in minutes
// before the last sample, a legend with each series' latest value.
function liveChart(title, times, series, fmt) {
  const W = 560, H = 190, L = 58, R = 10, T = 10, B = 24;
  const t0 = times[0], t1 = times[times.length - 1], span = Math.max(1, t1 - t0);
  const values = series.flatMap((s) => s.points).filter(Number.isFinite);
  const hi = Math.max(1e-9, ...values) * 1.1;
  const x = (t) => L + ((t - t0) / span) * (W - L - R);
  const y = (v) => T + (1 - v / hi) * (H - T - B);
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": title });
  for (const f of [0, 0.5, 1]) {
    root.append(svg("line", { x1: L, x2: W - R, y1: y(hi * f / 1.1).toFixed(1), y2: y(hi * f / 1.1).toFixed(1), class: "bench-grid" }),
      svg("text", { x: L - 6, y: (y(hi * f / 1.1) + 4).toFixed(1), "text-anchor": "end" }, fmt(hi * f / 1.1)));
  }
  const minutes = span / 60000;
  const step = minutes > 6 ? 2 : minutes > 2 ? 1 : 0.5;
  for (let m = 0; m <= minutes + 1e-9; m += step) {
    const tx = x(t1 - m * 60000);
    root.append(svg("text", { x: tx.toFixed(1), y: H - 6, "text-anchor": m === 0 ? "end" : "middle" }, m === 0 ? "now" : `−${m} min`));
  }
  for (const s of series) {
    const pts = s.points.map((v, i) => [times[i], v]).filter(([, v]) => Number.isFinite(v));
    if (pts.length) root.append(svg("polyline", { points: pts.map(([tt, v]) => `${x(tt).toFixed(1)},${y(v).toFixed(1)}`).join(" "), fill: "none", stroke: s.color, "stroke-width": 1.8, "stroke-dasharray": s.dashed ? "5 3" : null }));
  }
  const latest = (s) => { const v = s.points.filter(Number.isFinite); return v.length ? (s.fmt || fmt)(v[v.length - 1]) : "—"; };
  return h("div", { class: "panel live-chart" }, h("h3", {}, title),
    h("div", { class: "legend" }, series.map((s) => h("span", {}, h("i", { style: `background:${s.color}` }), `${s.name} `, h("b", {}, latest(s))))), root);
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
  // The schedule (each task's slack) comes with the plan: for a big workflow
  // only the first SCHEDULE_ROWS tasks are shown, so it is not asked for.
  const SCHEDULE_ROWS = 500;
  const wf = await api.get(`/api/v1/workflows/${encodeURIComponent(id)}`);
  const plan = await api.get(`/api/v1/workflows/${encodeURIComponent(id)}/plan${wf.plan.tasks <= 20000 ? "?schedule=true" : ""}`);
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
        plan.schedule ? [h("h2", {}, "Schedule ", h("span", { class: "muted" }, "(unbounded parallelism; zero slack is the critical path)")),
          h("div", { class: "table-wrap schedule" }, h("table", { id: "schedule-table" },
            h("thead", {}, h("tr", {}, ["Task", "Stage", "Earliest start", "Latest start", "Slack"].map((t) => h("th", {}, t)))),
            h("tbody", {}, plan.schedule.slice(0, SCHEDULE_ROWS).map((t) => h("tr", { class: t.slack === 0 ? "critical-row" : "" },
              h("td", { class: "mono" }, t.id), h("td", {}, t.stage), h("td", {}, fmtSecs(t.earliest_start)), h("td", {}, fmtSecs(t.latest_start)), h("td", {}, t.slack === 0 ? "0" : fmtSecs(t.slack))))))),
          plan.schedule.length > SCHEDULE_ROWS ? h("p", { class: "muted" }, `The first ${SCHEDULE_ROWS} of ${plan.schedule.length} tasks are shown; baton plan --schedule prints them all.`) : ""] : "",
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
// -- benchmarks ----------------------------------------------------------------------
//
// Reports saved on disk, opened in this tab only: nothing is sent to the
// server, and the files are kept in memory until the tab closes (or "Clear").
// Four kinds are read, each by its shape (docs/performance.md):
//  - a bench report, `baton bench … --json FILE` (baton_bench::report::Report);
//  - a baseline, `.baton/baselines/NAME.json` from `--save-baseline NAME`: the
//    same document whose records also keep `baseline_medians` (and
//    `baseline_references`) of the last saves, oldest first;
//  - a comparison, `baton bench compare A B --json FILE` (compare::Comparison);
//  - a load report, `baton load … --json FILE` (baton_load::Report).
// Everything a file contains is inserted as text.

// Only function declarations at the top level: console.js calls route() while
// it loads, so this code works wherever it sits in the file (a top-level const
// appended after that call would not be initialized yet).
function benchState() {
  if (!benchState.s) {
    benchState.s = {
      schema: 1, // the reports' schema this page reads
      neutralPct: 5, // a change within ±5 % is shown as neither worse nor better
      expected: "a `baton bench --json` report (schema, suite, records), a baseline (.baton/baselines/NAME.json), " +
        "a `baton bench compare --json` comparison (changes, missing, added) or a `baton load --json` report (schema, meta, endpoints, total)",
      // Kept while the tab lives, so that leaving the page and coming back keeps the files.
      files: [], a: null, b: null, shown: null, loadA: null, loadB: null, trendFile: null, trendRecord: null, filter: "", fromZero: true,
    };
  }
  return benchState.s;
}

// A value in its unit, scaled for reading (report.rs `format_value`).
function benchFmt(v, unit) {
  if (typeof v !== "number" || !Number.isFinite(v)) return v === null || v === undefined ? "—" : String(v);
  if (unit === "s" || unit === "us") {
    const s = unit === "us" ? v / 1e6 : v, a = Math.abs(s);
    return a >= 1 ? `${s.toFixed(3)} s` : a >= 1e-3 ? `${(s * 1e3).toFixed(3)} ms` : a >= 1e-6 ? `${(s * 1e6).toFixed(2)} µs` : `${(s * 1e9).toFixed(0)} ns`;
  }
  if (unit === "bytes") return v >= 1e9 ? `${(v / 1e9).toFixed(2)} GB` : v >= 1e6 ? `${(v / 1e6).toFixed(1)} MB` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} KB` : `${v.toFixed(0)} B`;
  if (unit === "ratio") return v.toFixed(3);
  if (unit && unit.endsWith("/s")) {
    const short = unit.slice(0, -2) === "events" ? "ev" : unit.slice(0, -2);
    return v >= 1e6 ? `${(v / 1e6).toFixed(2)} M${short}/s` : v >= 1e3 ? `${(v / 1e3).toFixed(1)} k${short}/s` : `${v.toFixed(0)} ${short}/s`;
  }
  return `${v.toFixed(3)} ${unit || ""}`.trim();
}

// Milliseconds as the load table prints them (load/src/report.rs `ms`).
function benchMs(v) {
  return typeof v !== "number" || !Number.isFinite(v) ? "—" : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}
function benchSigned(v, digits = 1) {
  return Number.isFinite(v) ? `${v > 0 ? "+" : v < 0 ? "-" : "±"}${Math.abs(v).toFixed(digits)}` : "—";
}
function benchCount(n) {
  return typeof n === "number" ? n.toLocaleString("en-US", { maximumFractionDigits: 1 }) : "—";
}
function benchShortSha(s) {
  return String(s || "unknown").slice(0, 12);
}

// Whether a larger value is better: the record says so (`higher_is_better`);
// a record without the field is judged by its unit (rates and ratios up).
function benchHigherIsBetter(r) {
  if (typeof r.higher_is_better === "boolean") return r.higher_is_better;
  return /\/s$/.test(r.unit || "") || r.unit === "ratio";
}

// How much worse `after` is than `before`, in percent, whatever the unit's
// direction (compare.rs `worse`): + is worse.
function benchWorsePct(before, after, higherIsBetter) {
  if (!Number.isFinite(before) || !Number.isFinite(after) || before === 0) return NaN;
  const raw = ((after - before) / Math.abs(before)) * 100;
  return higherIsBetter ? -raw : raw;
}

// The class and badge of a change: worse / better beyond ±benchState().neutralPct.
function benchVerdict(worse) {
  if (!Number.isFinite(worse)) return { cls: "", badge: h("span", { class: "badge s-skipped" }, "n/a") };
  if (worse > benchState().neutralPct) return { cls: "bench-worse", badge: h("span", { class: "badge s-failed" }, "worse") };
  if (worse < -benchState().neutralPct) return { cls: "bench-better", badge: h("span", { class: "badge s-succeeded" }, "better") };
  return { cls: "", badge: h("span", { class: "badge s-pending" }, `within ±${benchState().neutralPct}%`) };
}

// Whether a record's figure follows the machine's CPU speed (compare.rs
// `speed_bound`): `baton bench compare` scales those by the references.
function benchSpeedBound(r) {
  return ["planning/", "cache/", "scaling/planning/"].some((p) => String(r.name).startsWith(p)) && r.unit !== "bytes" && r.unit !== "ratio";
}

// -- reading the files ---------------------------------------------------------------

function benchClassify(name, text) {
  const bad = (why) => ({ name, kind: null, error: `${name}: ${why}. Expected ${benchState().expected}.` });
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    const t = text.trimStart();
    if (/^<(!doctype|html)/i.test(t)) return bad("an HTML page (an --html report?), not JSON");
    if (/^(Type,Name|name,suite|Timestamp,|Method,Name)/.test(t)) return bad("a CSV file (a --csv report?), not JSON");
    return bad(`not JSON (${e.message})`);
  }
  if (!data || typeof data !== "object" || Array.isArray(data)) return bad(`JSON, but a ${Array.isArray(data) ? "list" : typeof data}, not an object`);
  const isBench = Array.isArray(data.records) && "suite" in data;
  const isLoad = data.meta && typeof data.meta === "object" && Array.isArray(data.endpoints) && data.total && typeof data.total === "object";
  const isCompare = Array.isArray(data.changes) && Array.isArray(data.missing) && Array.isArray(data.added);
  if ((isBench || isLoad) && data.schema !== benchState().schema) {
    return { name, kind: null, error: `${name}: a ${isBench ? "bench" : "load"} report of schema ${JSON.stringify(data.schema === undefined ? null : data.schema)}; this console reads schema ${benchState().schema}: re-run the ${isBench ? "benchmark" : "load test"} to refresh it.` };
  }
  if (isBench) {
    const i = data.records.findIndex((r) => !r || typeof r.name !== "string" || typeof r.unit !== "string" || !r.statistics || typeof r.statistics !== "object");
    if (i >= 0) return bad(`record ${i + 1} of ${data.records.length} lacks its name, unit or statistics`);
    const baseline = data.records.some((r) => Array.isArray(r.baseline_medians) && r.baseline_medians.length > 0);
    return { name, kind: baseline ? "baseline" : "bench", data };
  }
  if (isLoad) {
    const i = data.endpoints.findIndex((e) => !e || typeof e.name !== "string" || !e.latency);
    if (i >= 0 || !data.total.latency) return bad(`endpoint ${i + 1} lacks its name or latency`);
    return { name, kind: "load", data };
  }
  if (isCompare) {
    // serde_json writes a NaN as null: a change's figures may be null.
    const i = data.changes.findIndex((c) => !c || typeof c.name !== "string");
    if (i >= 0) return bad(`change ${i + 1} lacks its name`);
    return { name, kind: "comparison", data };
  }
  const keys = Object.keys(data).slice(0, 6).join(", ");
  return bad(`a JSON object with ${keys ? `the keys ${keys}${Object.keys(data).length > 6 ? ", …" : ""}` : "no keys"}, not a report`);
}

async function benchRead(fileList) {
  const read = await Promise.all([...fileList].map(async (f) => {
    try {
      return Object.assign(benchClassify(f.name, await f.text()), { size: f.size, modified: f.lastModified });
    } catch (e) {
      return { name: f.name, kind: null, error: `${f.name}: could not be read (${e.message}).` };
    }
  }));
  for (const r of read) {
    // The same file opened again replaces the first.
    const at = benchState().files.findIndex((x) => x.name === r.name && x.size === r.size && x.modified === r.modified);
    if (at >= 0) benchState().files[at] = r; else benchState().files.push(r);
  }
}

function benchOfKind(...kinds) {
  return benchState().files.filter((f) => kinds.includes(f.kind));
}
function benchLabel(f) {
  return `${f.name} (${f.kind})`;
}

// A benchmark's name, breakable after each `/` on a narrow screen.
function benchName(name) {
  return String(name).split("/").flatMap((part, i, all) => (i < all.length - 1 ? [part + "/", h("wbr")] : [part]));
}

// Numeric columns' headings aligned like their cells (those of the first row
// that has a cell per heading).
function benchAlign(root) {
  for (const table of root.querySelectorAll("table.bench-table")) {
    const heads = table.tHead ? [...table.tHead.rows[0].cells] : [];
    const row = [...(table.tBodies[0] || { rows: [] }).rows].find((r) => r.cells.length === heads.length);
    if (row) heads.forEach((th, i) => th.classList.toggle("bench-num", row.cells[i].classList.contains("bench-num")));
  }
}

// A <select> of `files`, `current` selected; `onpick(file)`.
function benchPicker(label, files, current, onpick, id) {
  const sel = h("select", { "aria-label": label, id }, files.map((f, i) => h("option", { value: String(i), selected: f === current }, benchLabel(f))));
  sel.addEventListener("change", () => onpick(files[Number(sel.value)]));
  return h("label", { class: "bench-pick" }, h("span", { class: "muted" }, label + " "), sel);
}

// Whether `text` (name, suite, unit, description) matches every word of the filter.
function benchMatches(...fields) {
  const words = benchState().filter.toLowerCase().split(/\s+/).filter(Boolean);
  const hay = fields.filter((x) => typeof x === "string").join(" ").toLowerCase();
  return words.every((w) => hay.includes(w));
}

// -- the page ------------------------------------------------------------------------

async function benchView(app) {
  const input = h("input", { type: "file", id: "bench-files", multiple: true, accept: ".json,application/json", "aria-label": "report files" });
  const filter = h("input", { id: "bench-filter", type: "search", placeholder: "filter benchmarks (name, suite, unit)", value: benchState().filter, "aria-label": "filter benchmarks" });
  const body = h("div", { id: "bench-body" });
  const drop = h("div", { class: "panel bench-drop" },
    h("div", { class: "row" }, h("label", { for: "bench-files" }, h("b", {}, "Open reports")), input,
      h("button", { type: "button", id: "bench-clear", onclick: () => { benchState().files = []; render(); } }, "Clear")),
    h("p", { class: "muted", style: "margin:8px 0 0" }, "Or drop them here. The files are read in this tab only: nothing is uploaded."));
  app.replaceChildren(h("h1", {}, "Benchmarks"),
    h("p", { class: "muted" }, "Saved reports of ", h("code", {}, "baton bench … --json FILE"), ", baselines (",
      h("code", {}, ".baton/baselines/NAME.json"), " from ", h("code", {}, "--save-baseline NAME"), "), ",
      h("code", {}, "baton bench compare A B --json FILE"), " and ", h("code", {}, "baton load … --json FILE"),
      ". Two bench reports (or a report and a baseline) are compared; a baseline saved several times shows its trend."),
    drop, body);

  const open = async (list) => {
    if (!list || !list.length) return;
    await benchRead(list);
    render();
  };
  input.addEventListener("change", () => { open(input.files).finally(() => { input.value = ""; }); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); open(e.dataTransfer && e.dataTransfer.files); });
  let typing = null;
  filter.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { benchState().filter = filter.value; renderTables(); }, 120);
  });

  // Sections that depend on the filter are redrawn alone while typing.
  let renderTables = () => {};
  let drawTrend = () => {};
  const render = () => {
    const benches = benchOfKind("bench", "baseline");
    const loads = benchOfKind("load");
    const baselines = benchOfKind("baseline");
    const comparisons = benchOfKind("comparison");
    // Default pairs: A a baseline (what the other is judged against) or the first opened, B the last opened.
    if (!benches.includes(benchState().a)) benchState().a = baselines[0] || benches[0] || null;
    if (!benches.includes(benchState().b) || benchState().b === benchState().a) benchState().b = [...benches].reverse().find((f) => f !== benchState().a) || null;
    if (!benches.includes(benchState().shown)) benchState().shown = benchState().b || benchState().a;
    if (!loads.includes(benchState().loadA)) benchState().loadA = loads[0] || null;
    if (!loads.includes(benchState().loadB) || benchState().loadB === benchState().loadA) benchState().loadB = [...loads].reverse().find((f) => f !== benchState().loadA) || null;
    if (!baselines.includes(benchState().trendFile)) benchState().trendFile = baselines[0] || null;

    const parts = [benchFileList(render)];
    if (!benchState().files.length) {
      parts.push(h("div", { class: "panel muted", id: "bench-empty" },
        h("p", { style: "margin-top:0" }, "No report open yet. To make some:"),
        h("pre", { class: "doc" }, [
          "baton bench all --quick --json all.json",
          "baton bench planning --quick --save-baseline main      # .baton/baselines/main.json",
          "baton bench compare .baton/baselines/main.json all.json --json compare.json",
          "baton load --spawn-server --scenario mixed --users 4 --run-time 10s --json load.json",
        ].join("\n"))));
    }
    const compareBox = h("div"), resultsBox = h("div"), trendBox = h("div"), savedBox = h("div"), loadCmpBox = h("div");
    if (benches.length || comparisons.length) parts.push(h("div", { class: "row bench-toolbar" }, filter));
    if (benches.length >= 2) {
      const swap = h("button", { type: "button", id: "bench-swap", onclick: () => { [benchState().a, benchState().b] = [benchState().b, benchState().a]; render(); } }, "Swap");
      parts.push(h("h2", {}, "Comparison ", h("span", { class: "muted" }, "(B against A)")),
        h("div", { class: "row" }, benchPicker("A", benches, benchState().a, (f) => { benchState().a = f; render(); }, "bench-a"),
          benchPicker("B", benches, benchState().b, (f) => { benchState().b = f; render(); }, "bench-b"), swap),
        compareBox);
    }
    if (baselines.length) {
      parts.push(h("h2", {}, "Baseline trend ", h("span", { class: "muted" }, "(the medians of its last saves, oldest first)")), trendBox);
    }
    if (benches.length) {
      parts.push(h("h2", {}, "Results"),
        benches.length > 1 ? h("div", { class: "row" }, benchPicker("Report", benches, benchState().shown, (f) => { benchState().shown = f; render(); }, "bench-shown")) : "",
        resultsBox);
    }
    if (comparisons.length) parts.push(h("h2", {}, "Saved comparisons ", h("span", { class: "muted" }, "(baton bench compare --json)")), savedBox);
    if (loads.length) {
      parts.push(h("h2", {}, "Load tests"));
      if (loads.length >= 2) parts.push(benchLoadOverview(loads));
      for (const f of loads) parts.push(benchLoadReport(f));
      if (loads.length >= 2) {
        const swap = h("button", { type: "button", id: "load-swap", onclick: () => { [benchState().loadA, benchState().loadB] = [benchState().loadB, benchState().loadA]; render(); } }, "Swap");
        parts.push(h("h2", {}, "Load comparison ", h("span", { class: "muted" }, "(B against A)")),
          h("div", { class: "row" }, benchPicker("A", loads, benchState().loadA, (f) => { benchState().loadA = f; render(); }, "load-a"),
            benchPicker("B", loads, benchState().loadB, (f) => { benchState().loadB = f; render(); }, "load-b"), swap),
          loadCmpBox);
      }
    }
    body.replaceChildren(...parts);

    renderTables = () => {
      if (benches.length >= 2) compareBox.replaceChildren(benchComparison(benchState().a, benchState().b));
      if (benches.length) resultsBox.replaceChildren(benchResults(benchState().shown));
      if (comparisons.length) savedBox.replaceChildren(...comparisons.map(benchSavedComparison));
      if (baselines.length) drawTrend();
      if (loads.length >= 2) loadCmpBox.replaceChildren(benchLoadComparison(benchState().loadA, benchState().loadB));
      benchAlign(body);
    };
    drawTrend = baselines.length ? () => { trendBox.replaceChildren(benchTrend(baselines, () => drawTrend())); benchAlign(trendBox); } : () => {};
    renderTables();
  };
  render();

  // The chart is drawn to its box's width: drawn again when the window resizes.
  let frame = 0;
  const onResize = () => { cancelAnimationFrame(frame); frame = requestAnimationFrame(() => drawTrend()); };
  window.addEventListener("resize", onResize);
  teardown = () => { window.removeEventListener("resize", onResize); clearTimeout(typing); cancelAnimationFrame(frame); };
}

// The files opened: their kind and what they hold, or why they were not read.
function benchFileList(rerender) {
  const files = benchState().files;
  if (!files.length) return h("div", { id: "bench-file-list" });
  const kindBadge = { bench: "s-running", baseline: "s-compensated", comparison: "s-dispatched", load: "s-succeeded" };
  const summary = (f) => {
    const d = f.data;
    if (f.kind === "bench" || f.kind === "baseline") {
      const e = d.environment || {};
      const saves = Math.max(0, ...d.records.map((r) => (r.baseline_medians || []).length));
      return `suite ${d.suite}, ${d.records.length} benchmarks, git ${benchShortSha(e.git_sha)}, ${e.profile || "?"} build${d.quick ? ", quick sizes" : ""}` +
        (f.kind === "baseline" ? `, ${saves} save${saves === 1 ? "" : "s"} kept` : "");
    }
    if (f.kind === "comparison") {
      const n = d.changes.filter((c) => c.regression).length;
      return `${d.changes.length} compared, ${n} regression${n === 1 ? "" : "s"} (threshold ${d.max_regression}%)`;
    }
    const m = d.meta;
    return `scenario ${m.scenario}, ${m.users} users (${m.mode}), ${Number(d.seconds).toFixed(1)} s, ${benchCount(d.total.requests)} requests` +
      (m.started ? `, started ${fmtTime(m.started * 1000)}` : "");
  };
  const remove = (f) => h("button", { type: "button", class: "bench-remove", title: `close ${f.name}`, "aria-label": `close ${f.name}`,
    onclick: () => { benchState().files = benchState().files.filter((x) => x !== f); rerender(); } }, "×");
  const good = files.filter((f) => f.kind);
  const bad = files.filter((f) => !f.kind);
  return h("div", { id: "bench-file-list" },
    bad.map((f) => h("div", { class: "row bench-rejected" },
      errorBox({ message: f.error, problem: { title: "Not a report:" } }), remove(f))),
    good.length ? h("div", { class: "table-wrap", style: "margin-top:12px" }, h("table", {},
      h("thead", {}, h("tr", {}, ["File", "Kind", "Holds", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, good.map((f) => h("tr", { "data-kind": f.kind },
        h("td", { class: "mono" }, f.name), h("td", {}, h("span", { class: `badge ${kindBadge[f.kind]}` }, f.kind)),
        h("td", { class: "bench-wrap" }, summary(f)), h("td", {}, remove(f))))))) : "");
}

// -- one bench report ----------------------------------------------------------------

function benchEnvironment(label, f) {
  const d = f.data, e = d.environment || {};
  const lb = (e.load_before || [])[0], la = (e.load_after || [])[0];
  return h("p", { class: "bench-env" }, h("b", {}, label), " ", h("span", { class: "mono" }, f.name), ": baton ", e.baton_version || "?",
    ` (${e.profile || "?"} build) on ${e.cpu || "?"} (${e.cores || "?"} cores, ${e.os || "?"}), git `, h("code", {}, benchShortSha(e.git_sha)),
    `, load ${Number.isFinite(lb) ? lb.toFixed(2) : "?"} → ${Number.isFinite(la) ? la.toFixed(2) : "?"}, ${d.repeats} repeats${d.quick ? ", quick sizes" : ""}.`);
}

function benchResults(f) {
  const d = f.data;
  const bySuite = new Map();
  for (const r of d.records) {
    if (!benchMatches(r.name, r.suite, r.unit, r.description)) continue;
    const suite = r.suite || String(r.name).split("/")[0];
    if (!bySuite.has(suite)) bySuite.set(suite, []);
    bySuite.get(suite).push(r);
  }
  const shown = [...bySuite.values()].reduce((n, l) => n + l.length, 0);
  const head = ["Benchmark", "Median", "Min", "p95", "Max", "Noise", "n", "Unit", "Better"];
  const rows = [];
  for (const [suite, records] of bySuite) {
    rows.push(h("tr", { class: "bench-suite" }, h("th", { colspan: head.length, scope: "rowgroup" }, `${suite} `, h("span", { class: "muted" }, `(${records.length})`))));
    for (const r of records) {
      const s = r.statistics, hib = benchHigherIsBetter(r);
      const params = r.parameters && Object.keys(r.parameters).length ? `\nparameters: ${JSON.stringify(r.parameters)}` : "";
      const derived = r.derived && Object.keys(r.derived).length ? `\nderived: ${Object.entries(r.derived).map(([k, v]) => `${k} ${v}`).join(", ")}` : "";
      const name = String(r.name).startsWith(suite + "/") ? String(r.name).slice(suite.length + 1) : r.name;
      rows.push(h("tr", { title: `${r.name}\n${r.description || ""}${params}${derived}`, "data-name": r.name },
        h("td", { class: "mono" }, benchName(name)), h("td", { class: "bench-num" }, h("b", {}, benchFmt(s.median, r.unit))),
        h("td", { class: "bench-num" }, benchFmt(s.min, r.unit)), h("td", { class: "bench-num" }, benchFmt(s.p95, r.unit)), h("td", { class: "bench-num" }, benchFmt(s.max, r.unit)),
        h("td", { class: "bench-num" }, Number.isFinite(s.noise) ? `${(s.noise * 100).toFixed(1)}%` : "—", s.noisy ? [" ", h("span", { class: "badge s-paused", title: "MAD over median above 10 %: do not draw conclusions from it" }, "noisy")] : ""),
        h("td", { class: "bench-num" }, s.n ?? (r.samples || []).length), h("td", {}, r.unit), h("td", { class: "muted" }, hib ? "↑ higher" : "↓ lower")));
    }
  }
  if (!rows.length) rows.push(h("tr", {}, h("td", { colspan: head.length, class: "muted" }, d.records.length ? "No benchmark matches the filter." : "This report holds no benchmark.")));
  const e = d.environment || {};
  const extra = [...(d.fits || []).map((x) => `fit ${x.name}: slope ${Number(x.slope).toFixed(2)}, R² ${Number(x.r2).toFixed(3)}: ${x.verdict}`), ...(d.notes || []).map((n) => `note ${n}`)];
  return h("div", {},
    benchEnvironment(f.kind === "baseline" ? "Baseline (its latest save)" : "Report", f),
    e.profile === "debug" ? h("div", { class: "error-box" }, "A debug build: figures are 10–50× slower than release.") : "",
    h("p", { class: "muted" }, `${shown} of ${d.records.length} benchmarks, grouped by suite. Noise: median absolute deviation over the median; hover a row for its description and parameters.`),
    h("div", { class: "table-wrap" }, h("table", { id: "bench-results", class: "bench-table" },
      h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))), h("tbody", {}, rows))),
    extra.length ? [h("h3", {}, "Verdicts and notes"), h("ul", { class: "bench-notes" }, extra.map((t) => h("li", {}, t)))] : "");
}

// -- two bench reports ---------------------------------------------------------------

function benchComparison(fa, fb) {
  if (!fa || !fb) return h("p", { class: "muted" }, "Open two bench reports (or a report and a baseline) to compare them.");
  if (fa === fb) return h("p", { class: "muted" }, "A and B are the same file: pick another.");
  const A = fa.data, B = fb.data;
  const inB = new Map(B.records.map((r) => [r.name, r]));
  const inA = new Set(A.records.map((r) => r.name));
  const rows = [];
  for (const ra of A.records) {
    const rb = inB.get(ra.name);
    if (!rb || !benchMatches(ra.name, ra.suite, ra.unit, ra.description)) continue;
    const hib = benchHigherIsBetter(ra);
    const before = ra.statistics.median, after = rb.statistics.median;
    const raw = Number.isFinite(before) && Number.isFinite(after) && before !== 0 ? ((after - before) / Math.abs(before)) * 100 : NaN;
    const noise = 2 * Math.max(ra.statistics.noise || 0, rb.statistics.noise || 0) * 100;
    const machine = ra.reference_s > 0 && rb.reference_s > 0 && benchSpeedBound(ra) ? rb.reference_s / ra.reference_s : null;
    const judged = Math.min(ra.statistics.n ?? 0, rb.statistics.n ?? 0) >= 2;
    rows.push({ r: ra, hib, before, after, raw, worse: benchWorsePct(before, after, hib), noise, machine, judged });
  }
  // Largest regressions first; changes that cannot be computed last.
  rows.sort((x, y) => (Number.isFinite(y.worse) ? y.worse : -Infinity) - (Number.isFinite(x.worse) ? x.worse : -Infinity) || x.r.name.localeCompare(y.r.name));
  const onlyA = A.records.filter((r) => !inB.has(r.name) && benchMatches(r.name, r.suite, r.unit, r.description)).map((r) => r.name);
  const onlyB = B.records.filter((r) => !inA.has(r.name) && benchMatches(r.name, r.suite, r.unit, r.description)).map((r) => r.name);
  const worse = rows.filter((x) => x.worse > benchState().neutralPct).length, better = rows.filter((x) => x.worse < -benchState().neutralPct).length;
  const ea = A.environment || {}, eb = B.environment || {};
  const differs = [["CPU", ea.cpu, eb.cpu], ["cores", ea.cores, eb.cores], ["build profile", ea.profile, eb.profile], ["sizes (--quick)", A.quick, B.quick]]
    .filter(([, x, y]) => x !== y).map(([k]) => k);
  // The change first: on a narrow screen it is what shows without scrolling.
  const head = ["Benchmark", "Change", "", "A median", "B median", "Unit", "Noise", "Machine"];
  const body = rows.map((x) => {
    const v = benchVerdict(x.worse);
    return h("tr", { class: v.cls, "data-name": x.r.name, title: x.r.description || "" },
      h("td", { class: "mono" }, benchName(x.r.name)),
      h("td", { class: "bench-num bench-change" }, Number.isFinite(x.raw) ? `${benchSigned(x.raw)}%` : "—"),
      h("td", {}, v.badge, x.judged ? "" : h("span", { class: "muted", title: "one sample in a run: shown, not judged by baton bench compare" }, " one sample")),
      h("td", { class: "bench-num" }, benchFmt(x.before, x.r.unit)), h("td", { class: "bench-num" }, benchFmt(x.after, x.r.unit)),
      h("td", {}, x.r.unit, h("span", { class: "muted" }, x.hib ? " ↑ higher is better" : " ↓ lower is better")),
      h("td", { class: "bench-num muted", title: "twice the larger within-run MAD/median" }, `±${x.noise.toFixed(1)}%`),
      h("td", { class: "bench-num muted", title: "how much slower a fixed piece of CPU work ran for B than for A (reference_s)" }, x.machine ? `${x.machine.toFixed(2)}×` : ""));
  });
  for (const n of onlyA) body.push(h("tr", { class: "muted" }, h("td", { class: "mono" }, benchName(n)), h("td", { colspan: head.length - 1 }, "only in A")));
  for (const n of onlyB) body.push(h("tr", { class: "muted" }, h("td", { class: "mono" }, benchName(n)), h("td", { colspan: head.length - 1 }, "only in B (new)")));
  if (!body.length) body.push(h("tr", {}, h("td", { colspan: head.length, class: "muted" }, "No benchmark in common matches the filter.")));
  return h("div", {},
    h("div", { class: "figures", id: "bench-compare-figures" }, [["compared", rows.length], ["worse", worse], ["better", better],
      [`within ±${benchState().neutralPct}%`, rows.length - worse - better], ["only in A", onlyA.length], ["only in B", onlyB.length]].map(([k, v]) => h("div", {}, h("span", {}, k), String(v)))),
    benchEnvironment("A", fa), benchEnvironment("B", fb),
    differs.length ? h("div", { class: "error-box" }, `A and B differ in ${differs.join(", ")}: a change may be the machine's or the build's, not the code's.`) : "",
    h("p", { class: "muted" }, `Change: B's median against A's, as measured. Red is worse and green better by more than ${benchState().neutralPct}% in the unit's direction (times, latencies and bytes: lower is better; rates and ratios: higher is better, as each record's higher_is_better says). `,
      "This is not the regression gate: ", h("code", {}, "baton bench compare A B"), " also weighs the noise between runs, a bootstrap interval and the machine's speed (the Machine column)."),
    h("div", { class: "table-wrap" }, h("table", { id: "bench-compare", class: "bench-table" },
      h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))), h("tbody", {}, body))));
}

// A `baton bench compare --json` file (compare::Comparison), as its HTML page shows it.
function benchSavedComparison(f) {
  const c = f.data;
  const verdict = (x) => (x.regression ? "REGRESSION" : x.transient ? "transient (not on a rerun)" : x.judged === false ? "not judged (one sample)"
    : x.improvement ? "improved" : Number.isFinite(x.worse_pct) && Math.abs(x.worse_pct) <= x.noise_pct ? "within noise" : "within threshold");
  const rank = (x) => ({ REGRESSION: 0, improved: 2 })[verdict(x)] ?? (verdict(x).startsWith("transient") ? 1 : 3);
  const changes = c.changes.filter((x) => benchMatches(x.name, x.unit)).sort((x, y) => rank(x) - rank(y) || y.worse_pct - x.worse_pct);
  const n = c.changes.filter((x) => x.regression).length;
  const pair = (p) => (Array.isArray(p) ? `[${benchSigned(p[0])}, ${benchSigned(p[1])}]%` : "");
  const head = ["Benchmark", "Baseline", "Now", "Machine", "Change (+ worse)", "95% interval", "Noise", "Verdict"];
  return h("div", { class: "bench-saved" },
    h("h3", {}, h("span", { class: "mono" }, f.name), " ", h("span", { class: `badge ${n ? "s-failed" : "s-succeeded"}` }, n ? `${n} regression${n === 1 ? "" : "s"} of ${c.changes.length}` : `no regression in ${c.changes.length}`)),
    h("p", { class: "muted" }, `A regression is worse by more than ${c.max_regression}% and than the noise, with the 95% interval agreeing. Now and change are on the baseline's machine.`),
    h("div", { class: "table-wrap" }, h("table", { class: "bench-table" }, h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
      h("tbody", {}, changes.map((x) => {
        const v = verdict(x);
        return h("tr", { class: v === "REGRESSION" ? "bench-worse" : v === "improved" ? "bench-better" : "" },
          h("td", { class: "mono" }, benchName(x.name)), h("td", { class: "bench-num" }, benchFmt(x.before, x.unit)), h("td", { class: "bench-num" }, benchFmt(x.after, x.unit)),
          h("td", { class: "bench-num" }, Number.isFinite(x.machine) ? `${x.machine.toFixed(2)}×` : ""), h("td", { class: "bench-num" }, Number.isFinite(x.worse_pct) ? `${benchSigned(x.worse_pct)}%` : "—"),
          h("td", { class: "bench-num" }, pair(x.interval_pct)),
          h("td", { class: "bench-num" }, Number.isFinite(x.noise_pct) ? `${x.noise_pct.toFixed(1)}%` : "", Array.isArray(x.between_runs) && x.between_runs[1] === false ? h("span", { class: "muted", title: "between-run noise assumed: the baseline holds fewer than 3 saves" }, " *") : ""),
          h("td", {}, v));
      }), (c.missing || []).filter((m) => benchMatches(m)).map((m) => h("tr", { class: "muted" }, h("td", { class: "mono" }, m), h("td", { colspan: 7 }, "only in the baseline"))),
      (c.added || []).filter((m) => benchMatches(m)).map((m) => h("tr", { class: "muted" }, h("td", { class: "mono" }, m), h("td", { colspan: 7 }, "new (no baseline)")))))));
}

// -- a baseline's trend --------------------------------------------------------------

function benchTrend(baselines, redraw) {
  const f = benchState().trendFile;
  if (!f) return h("p", { class: "muted" }, "Open a baseline to see its trend.");
  const records = f.data.records.filter((r) => Array.isArray(r.baseline_medians) && r.baseline_medians.length && benchMatches(r.name, r.suite, r.unit, r.description));
  if (!records.includes(benchState().trendRecord)) {
    benchState().trendRecord = records.reduce((best, r) => (!best || r.baseline_medians.length > best.baseline_medians.length ? r : best), null);
  }
  const r = benchState().trendRecord;
  const pickFile = baselines.length > 1 ? benchPicker("Baseline", baselines, f, (x) => { benchState().trendFile = x; benchState().trendRecord = null; redraw(); }, "trend-file") : "";
  if (!r) return h("div", {}, h("div", { class: "row" }, pickFile), h("p", { class: "muted" }, "No benchmark of this baseline matches the filter."));
  const sel = h("select", { id: "trend-metric", "aria-label": "benchmark" }, records.map((x, i) => h("option", { value: String(i), selected: x === r }, `${x.name} (${x.unit})`)));
  sel.addEventListener("change", () => { benchState().trendRecord = records[Number(sel.value)]; redraw(); });
  const zero = h("input", { type: "checkbox", id: "trend-zero", checked: benchState().fromZero });
  zero.addEventListener("change", () => { benchState().fromZero = zero.checked; redraw(); });

  const medians = r.baseline_medians.map(Number);
  const refs = Array.isArray(r.baseline_references) ? r.baseline_references.map(Number) : [];
  const hib = benchHigherIsBetter(r);
  // On the first save's machine (compare.rs `between_runs`): only for CPU-bound figures with every reference.
  const adjusted = refs.length === medians.length && refs[0] > 0 && benchSpeedBound(r)
    ? medians.map((m, i) => (hib ? m * (refs[i] / refs[0]) : m / (refs[i] / refs[0]))) : null;
  const series = [{ name: "median as saved", color: "#2f5bd3", points: medians, dashed: false }];
  if (adjusted) series.push({ name: "on the first save's machine", color: "#b57b14", points: adjusted, dashed: true });
  const chartBox = h("div", { class: "bench-chart", id: "bench-trend" });
  const finite = medians.filter(Number.isFinite);
  const range = finite.length > 1 ? (Math.max(...finite) - Math.min(...finite)) / Math.abs(finite.reduce((a, b) => a + b, 0) / finite.length) * 100 : NaN;
  const out = h("div", {},
    h("div", { class: "row" }, pickFile, h("label", { class: "bench-pick" }, h("span", { class: "muted" }, "Benchmark "), sel),
      h("label", { for: "trend-zero", class: "bench-pick" }, zero, " y axis from 0")),
    h("p", { class: "muted" }, `${medians.length} save${medians.length === 1 ? "" : "s"} kept (at most 5). `, hib ? "Higher is better." : "Lower is better.",
      Number.isFinite(range) ? ` Range of the saved medians: ${range.toFixed(1)}% of their mean (baton bench compare counts twice that as between-run noise${medians.length < 3 ? " once 3 saves are kept" : ""}).` : " Saved once: save the baseline again to see a trend."),
    h("div", { class: "legend" }, series.map((s) => h("span", {}, h("i", { style: `background:${s.color}` }), s.name))),
    h("div", { class: "bench-trend-wrap" }, chartBox,
    h("div", { class: "table-wrap", style: "margin-top:8px" }, h("table", { class: "bench-table", id: "trend-table" },
      h("thead", {}, h("tr", {}, ["Save", "Median", "Reference (s)", adjusted ? "On the first save's machine" : null].filter(Boolean).map((t) => h("th", {}, t)))),
      h("tbody", {}, medians.map((m, i) => h("tr", {}, h("td", {}, `${i + 1}${i === medians.length - 1 ? " (latest)" : i === 0 ? " (oldest)" : ""}`),
        h("td", { class: "bench-num" }, benchFmt(m, r.unit)), h("td", { class: "bench-num" }, Number.isFinite(refs[i]) ? refs[i].toPrecision(4) : "—"),
        adjusted ? h("td", { class: "bench-num" }, benchFmt(adjusted[i], r.unit)) : null)))))));
  // Drawn once in the page, to the box's width.
  requestAnimationFrame(() => {
    if (!chartBox.isConnected) return;
    chartBox.replaceChildren(benchLineChart(series, { width: chartBox.parentNode.clientWidth, unit: r.unit, title: r.name, xLabel: "save (oldest → latest)", yLabel: `median (${r.unit})`, fromZero: benchState().fromZero }));
  });
  return out;
}

// Round tick values between lo and hi (about `count` of them).
function benchTicks(lo, hi, count) {
  const span = hi - lo || Math.abs(hi) || 1;
  const raw = span / count, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return ticks;
}

// A line chart of `series` ({name, color, points: [y per x index], dashed})
// over x = 1…N, as inline SVG with labeled axes.
function benchLineChart(series, o) {
  const W = Math.max(300, Math.min(818, (o.width || 640) - 2)), H = W < 480 ? 220 : 260;
  const LEFT = W < 480 ? 66 : 84, RIGHT = 16, TOP = 26, BOTTOM = 44;
  const n = Math.max(...series.map((s) => s.points.length));
  const ys = series.flatMap((s) => s.points).filter(Number.isFinite);
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (!ys.length) { lo = 0; hi = 1; }
  if (o.fromZero) lo = Math.min(0, lo);
  if (hi === lo) { hi = hi === 0 ? 1 : hi * 1.1; lo = o.fromZero ? lo : lo * 0.9; }
  const pad = (hi - lo) * 0.08;
  hi += pad;
  if (!o.fromZero || lo < 0) lo -= pad;
  const pw = W - LEFT - RIGHT, ph = H - TOP - BOTTOM;
  const px = (i) => LEFT + (n <= 1 ? pw / 2 : (i / (n - 1)) * pw);
  const py = (v) => TOP + (1 - (v - lo) / (hi - lo)) * ph;
  const root = svg("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${o.title}: ${o.yLabel} by ${o.xLabel}` },
    svg("title", {}, `${o.title}: ${o.yLabel} by ${o.xLabel}`),
    svg("text", { x: LEFT, y: 16, class: "bench-chart-title" }, o.title.length > W / 7 ? "…" + o.title.slice(-Math.floor(W / 7)) : o.title),
    svg("rect", { x: LEFT, y: TOP, width: pw, height: ph, class: "bench-frame" }));
  for (const t of benchTicks(lo, hi, 4)) {
    if (t < lo || t > hi) continue;
    root.append(svg("line", { x1: LEFT, x2: LEFT + pw, y1: py(t).toFixed(1), y2: py(t).toFixed(1), class: "bench-grid" }),
      svg("text", { x: LEFT - 5, y: (py(t) + 4).toFixed(1), "text-anchor": "end" }, benchFmt(t, o.unit)));
  }
  const every = Math.max(1, Math.ceil(n / Math.floor(pw / 40)));
  for (let i = 0; i < n; i += every) {
    root.append(svg("line", { x1: px(i).toFixed(1), x2: px(i).toFixed(1), y1: TOP + ph, y2: TOP + ph + 4, class: "bench-axis" }),
      svg("text", { x: px(i).toFixed(1), y: TOP + ph + 16, "text-anchor": "middle" }, String(i + 1)));
  }
  root.append(svg("text", { x: (LEFT + pw / 2).toFixed(1), y: H - 8, "text-anchor": "middle", class: "bench-axis-label" }, o.xLabel),
    svg("text", { transform: `translate(13 ${(TOP + ph / 2).toFixed(1)}) rotate(-90)`, "text-anchor": "middle", class: "bench-axis-label" }, o.yLabel));
  for (const s of series) {
    const pts = s.points.map((v, i) => [i, v]).filter(([, v]) => Number.isFinite(v));
    root.append(svg("polyline", { points: pts.map(([i, v]) => `${px(i).toFixed(1)},${py(v).toFixed(1)}`).join(" "), fill: "none", stroke: s.color, "stroke-width": 2, "stroke-dasharray": s.dashed ? "5 3" : null }));
    for (const [i, v] of pts) {
      root.append(svg("circle", { cx: px(i).toFixed(1), cy: py(v).toFixed(1), r: 3.5, fill: s.color }, svg("title", {}, `save ${i + 1}: ${benchFmt(v, o.unit)} (${s.name})`)));
    }
  }
  return root;
}

// -- load reports --------------------------------------------------------------------

function benchLoadOverview(loads) {
  const head = ["File", "Scenario", "Users", "Seconds", "Requests", "req/s", "Failures", "p50 ms", "p95 ms", "p99 ms", "Thresholds"];
  return h("div", { class: "table-wrap", style: "margin-bottom:12px" }, h("table", { id: "load-overview", class: "bench-table" },
    h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
    h("tbody", {}, loads.map((f) => {
      const d = f.data, t = d.total, l = t.latency, missed = (d.thresholds || []).filter((x) => !x.passed).length;
      return h("tr", {}, h("td", { class: "mono" }, f.name), h("td", {}, d.meta.scenario), h("td", { class: "bench-num" }, `${d.meta.users} (${d.meta.mode})`),
        h("td", { class: "bench-num" }, Number(d.seconds).toFixed(1)), h("td", { class: "bench-num" }, benchCount(t.requests)), h("td", { class: "bench-num" }, Number(t.requests_per_s).toFixed(1)),
        h("td", { class: "bench-num" + (t.failures ? " bench-worse" : "") }, benchCount(t.failures)),
        h("td", { class: "bench-num" }, benchMs(l.p50_ms)), h("td", { class: "bench-num" }, benchMs(l.p95_ms)), h("td", { class: "bench-num" }, benchMs(l.p99_ms)),
        h("td", {}, (d.thresholds || []).length ? h("span", { class: `badge ${missed ? "s-failed" : "s-succeeded"}` }, missed ? `${missed} missed` : "all held") : h("span", { class: "muted" }, "none")));
    }))));
}

function benchLoadReport(f) {
  const d = f.data, m = d.meta, t = d.total, runs = d.runs || {}, cpu = d.cpu || {};
  const failRate = (e) => (e.requests ? (e.failures / e.requests) * 100 : 0);
  const row = (e, total) => h("tr", total ? { class: "bench-total" } : {},
    h("td", {}, e.method), h("td", { class: "mono" }, e.name), h("td", { class: "bench-num" }, benchCount(e.requests)),
    h("td", { class: "bench-num" + (e.failures ? " bench-worse" : "") }, benchCount(e.failures)), h("td", { class: "bench-num" }, `${failRate(e).toFixed(2)}%`),
    h("td", { class: "bench-num" }, Number(e.requests_per_s).toFixed(1)),
    ["min_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"].map((k) => h("td", { class: "bench-num" }, benchMs(e.latency[k]))));
  const figures = [["scenario", m.scenario], ["users", `${m.users} (${m.mode} loop${m.rate ? `, ${m.rate}/s` : ""})`], ["duration", `${Number(d.seconds).toFixed(1)} s`],
    ["iterations", benchCount(d.iterations)], ["requests/s", Number(t.requests_per_s).toFixed(1)], ["failures", `${benchCount(t.failures)} (${failRate(t).toFixed(2)}%)`]];
  if (d.events) figures.push(["events/s", benchCount(Math.round(d.events_per_s))]);
  if (runs.completed || runs.failed) {
    figures.push(["runs completed / failed", `${benchCount(runs.completed)} / ${benchCount(runs.failed)}`], ["runs/s", Number(runs.per_s).toFixed(1)],
      ["run end to end p50 / p99", `${benchMs(runs.end_to_end && runs.end_to_end.p50_ms)} / ${benchMs(runs.end_to_end && runs.end_to_end.p99_ms)} ms`],
      ["coordination p99", `${benchMs(runs.coordination_overhead && runs.coordination_overhead.p99_ms)} ms`]);
  }
  figures.push(["cpu", `client ${Math.round((cpu.client_cores || 0) * 100)}%${Number.isFinite(cpu.server_cores) ? `, server ${Math.round(cpu.server_cores * 100)}%` : ""} of a core, ${cpu.cores || "?"} cores`]);
  const causes = d.endpoints.flatMap((e) => Object.entries(e.failures_by_cause || {}).map(([c, n]) => `${e.method} ${e.name}: ${c}: ${n}`));
  const head = ["Type", "Name", "# reqs", "# fails", "fail%", "req/s", "min ms", "p50 ms", "p95 ms", "p99 ms", "max ms"];
  return h("section", { class: "bench-load", "data-file": f.name },
    h("h3", {}, h("span", { class: "mono" }, f.name), h("span", { class: "muted" }, ` · ${m.target}${m.started ? ` · ${fmtTime(m.started * 1000)}` : ""}`)),
    h("div", { class: "figures" }, figures.map(([k, v]) => h("div", {}, h("span", {}, k), String(v)))),
    h("div", { class: "table-wrap", style: "margin-top:8px" }, h("table", { class: "bench-table load-table" },
      h("thead", {}, h("tr", {}, head.map((x) => h("th", {}, x)))),
      h("tbody", {}, d.endpoints.map((e) => row(e, false)), row(t, true)))),
    causes.length ? h("ul", { class: "bench-notes" }, causes.map((c) => h("li", { class: "bench-worse" }, c))) : "",
    (d.thresholds || []).length ? h("ul", { class: "bench-notes" }, d.thresholds.map((x) => h("li", {},
      h("span", { class: `badge ${x.passed ? "s-succeeded" : "s-failed"}` }, x.passed ? "ok" : "MISS"), " ", h("code", {}, x.threshold),
      ` measured ${x.measured_text} (bound ${x.bound_text})${x.note ? `: ${x.note}` : ""}`))) : "");
}

function benchLoadComparison(fa, fb) {
  if (!fa || !fb || fa === fb) return h("p", { class: "muted" }, "Pick two different load reports.");
  const A = fa.data, B = fb.data;
  const key = (e) => (e.method ? `${e.method} ${e.name}` : e.name);
  const byKey = (d) => new Map([...d.endpoints, d.total].map((e) => [key(e), e]));
  const ea = byKey(A), eb = byKey(B);
  const rows = [];
  const add = (what, metric, a, b, hib, fmt) => {
    const worse = benchWorsePct(a, b, hib);
    rows.push({ what, metric, a, b, hib, fmt, worse, raw: Number.isFinite(a) && Number.isFinite(b) && a !== 0 ? ((b - a) / Math.abs(a)) * 100 : NaN });
  };
  const ms = (v) => `${benchMs(v)} ms`;
  const rate = (v) => (Number.isFinite(v) ? `${v.toFixed(1)}/s` : "—");
  const names = [...new Set([...ea.keys(), ...eb.keys()])];
  const onlyOne = [];
  for (const k of names) {
    const a = ea.get(k), b = eb.get(k);
    if (!a || !b) { onlyOne.push(`${k}: only in ${a ? "A" : "B"}`); continue; }
    if (!benchMatches(k)) continue;
    add(k, "requests/s", a.requests_per_s, b.requests_per_s, true, rate);
    for (const p of ["p50", "p95", "p99"]) add(k, `${p} latency`, a.latency[`${p}_ms`], b.latency[`${p}_ms`], false, ms);
    // Failure rates compare in points: any rise is worse, from zero too.
    const fa2 = a.requests ? (a.failures / a.requests) * 100 : 0, fb2 = b.requests ? (b.failures / b.requests) * 100 : 0;
    rows.push({ what: k, metric: "failure rate", a: fa2, b: fb2, fmt: (v) => `${v.toFixed(2)}%`, hib: false, points: true,
      raw: fb2 - fa2, worse: fb2 > fa2 ? 1e9 + (fb2 - fa2) : fb2 < fa2 ? -1e9 + (fb2 - fa2) : 0 });
  }
  if ((A.events || B.events) && benchMatches("events")) add("events", "events/s", A.events_per_s, B.events_per_s, true, rate);
  const ra = A.runs || {}, rb = B.runs || {};
  if ((ra.completed || rb.completed) && benchMatches("runs")) {
    add("runs", "runs/s", ra.per_s, rb.per_s, true, rate);
    for (const p of ["p50", "p99"]) add("runs", `end to end ${p}`, (ra.end_to_end || {})[`${p}_ms`], (rb.end_to_end || {})[`${p}_ms`], false, ms);
    add("runs", "coordination p99", (ra.coordination_overhead || {}).p99_ms, (rb.coordination_overhead || {}).p99_ms, false, ms);
  }
  rows.sort((x, y) => (Number.isFinite(y.worse) ? y.worse : -Infinity) - (Number.isFinite(x.worse) ? x.worse : -Infinity) || x.what.localeCompare(y.what) || x.metric.localeCompare(y.metric));
  const differs = [["scenario", A.meta.scenario, B.meta.scenario], ["users", A.meta.users, B.meta.users], ["mode", A.meta.mode, B.meta.mode], ["rate", A.meta.rate, B.meta.rate]]
    .filter(([, x, y]) => x !== y).map(([k, x, y]) => `${k} (${x ?? "none"} vs ${y ?? "none"})`);
  const head = ["Endpoint", "Metric", "Change", "", "A", "B"];
  return h("div", {},
    differs.length ? h("div", { class: "error-box" }, `A and B differ in ${differs.join(", ")}: their rates and latencies are not like for like.`) : "",
    h("p", { class: "muted" }, `Largest regressions first. Requests/s, events/s and runs/s: higher is better; latencies and failure rates: lower is better. Within ±${benchState().neutralPct}% is neutral; a failure rate that rose is worse whatever its size (its change is in points).`),
    h("div", { class: "table-wrap" }, h("table", { id: "load-compare", class: "bench-table" },
      h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))),
      h("tbody", {}, rows.map((x) => {
        const v = benchVerdict(x.points ? Math.sign(x.b - x.a) * 100 : x.worse);
        return h("tr", { class: v.cls }, h("td", { class: "mono" }, x.what), h("td", {}, x.metric, h("span", { class: "muted" }, x.hib ? " ↑" : " ↓")),
          h("td", { class: "bench-num bench-change" }, x.points ? `${benchSigned(x.raw, 2)} pt` : Number.isFinite(x.raw) ? `${benchSigned(x.raw)}%` : "—"), h("td", {}, v.badge),
          h("td", { class: "bench-num" }, x.fmt(x.a)), h("td", { class: "bench-num" }, x.fmt(x.b)));
      }), onlyOne.map((t) => h("tr", { class: "muted" }, h("td", { colspan: head.length }, t)))))));
}
