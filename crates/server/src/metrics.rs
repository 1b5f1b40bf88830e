//! `GET /metrics`: Prometheus text exposition, written by hand (a few families,
//! no exporter dependency): requests and latencies by method and route, events
//! published, runs by state, tasks ended and retried, dead letters, dispatch
//! latency, ready-queue depth, the build, and
//! the process (CPU, memory, file descriptors, start time) by the conventions
//! of Prometheus' client libraries.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use baton_events::EventLog as _;

use crate::AppState;

/// The label of the agents workflows declare themselves, summed.
const WORKFLOW_AGENTS: &str = "(workflow)";

/// Upper bounds of the latency buckets, seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Route {
    by_status: BTreeMap<u16, u64>,
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// The server's own counters.
pub struct Metrics {
    routes: Mutex<BTreeMap<String, Route>>,
    published: AtomicU64,
    delivered: AtomicU64,
    redelivered: AtomicU64,
    /// When the server started, seconds since the Unix epoch.
    started_unix: f64,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            routes: Mutex::default(),
            published: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            redelivered: AtomicU64::new(0),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

impl Metrics {
    /// Counts a request to `route` (`METHOD /path/{template}`).
    pub fn request(&self, route: &str, status: u16, took: Duration) {
        let secs = took.as_secs_f64();
        let mut routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        let r = match routes.get_mut(route) {
            Some(r) => r,
            None => routes.entry(route.to_string()).or_default(),
        };
        *r.by_status.entry(status).or_insert(0) += 1;
        r.count += 1;
        r.sum += secs;
        if let Some(i) = BUCKETS.iter().position(|&b| secs <= b) {
            r.buckets[i] += 1;
        }
    }

    /// Counts published events.
    pub fn published(&self, n: u64) {
        self.published.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts events delivered to consumer groups through the API,
    /// `redelivered` of them not for the first time.
    pub fn delivered(&self, n: u64, redelivered: u64) {
        if n > 0 {
            self.delivered.fetch_add(n, Ordering::Relaxed);
        }
        if redelivered > 0 {
            self.redelivered.fetch_add(redelivered, Ordering::Relaxed);
        }
    }

    /// Events published through the API since start.
    pub fn published_total(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
}

/// A route's key (`METHOD /path/{template}`) as its two labels, escaped.
fn method_and_route(key: &str) -> (String, String) {
    match key.split_once(' ') {
        Some((method, route)) => (label(method), label(route)),
        None => (String::new(), label(key)),
    }
}

/// The process' figures by Prometheus' conventions (`process_*`), read from
/// `/proc/self` (Linux); a family whose source cannot be read is left out.
fn process(out: &mut String, started_unix: f64) {
    let mut family = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name} {value}");
    };
    family(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch in seconds.",
        started_unix,
    );
    // Fields 14 and 15 of /proc/self/stat (after the command in parentheses):
    // user and system time in clock ticks, which the kernel's ABI fixes at
    // 100 a second for /proc (USER_HZ).
    if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
        && let Some((_, rest)) = stat.rsplit_once(')')
    {
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
        // `rest` starts at field 3 (the state): field N is at index N - 3.
        if let (Some(user), Some(system)) = (ticks(11), ticks(12)) {
            family(
                "process_cpu_seconds_total",
                "counter",
                "Total user and system CPU time spent in seconds.",
                (user + system) / 100.0,
            );
        }
    }
    if let Ok(status) = std::fs::read_to_string("/proc/self/status")
        && let Some(kb) = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
    {
        family(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            kb * 1024.0,
        );
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        family(
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
            dir.count() as f64,
        );
    }
    if let Ok(limits) = std::fs::read_to_string("/proc/self/limits")
        && let Some(max) = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse::<f64>().ok())
    {
        family(
            "process_max_fds",
            "gauge",
            "Maximum number of open file descriptors.",
            max,
        );
    }
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub(crate) async fn render(State(state): State<std::sync::Arc<AppState>>) -> Response {
    let mut out = String::with_capacity(4096);
    let m = &state.metrics;
    {
        let routes = m.routes.lock().unwrap_or_else(|e| e.into_inner());
        out.push_str(
            "# HELP baton_http_requests_total HTTP requests by method, route and status.\n",
        );
        out.push_str("# TYPE baton_http_requests_total counter\n");
        for (key, r) in routes.iter() {
            let (method, route) = method_and_route(key);
            for (status, n) in &r.by_status {
                let _ = writeln!(
                    out,
                    "baton_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{status}\"}} {n}"
                );
            }
        }
        out.push_str(
            "# HELP baton_http_request_duration_seconds HTTP request latency by method and route.\n",
        );
        out.push_str("# TYPE baton_http_request_duration_seconds histogram\n");
        for (key, r) in routes.iter() {
            let (method, route) = method_and_route(key);
            let labels = format!("method=\"{method}\",route=\"{route}\"");
            let mut cumulative = 0;
            for (b, n) in BUCKETS.iter().zip(r.buckets) {
                cumulative += n;
                let _ = writeln!(
                    out,
                    "baton_http_request_duration_seconds_bucket{{{labels},le=\"{b}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "baton_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                r.count
            );
            let _ = writeln!(
                out,
                "baton_http_request_duration_seconds_sum{{{labels}}} {}",
                r.sum
            );
            let _ = writeln!(
                out,
                "baton_http_request_duration_seconds_count{{{labels}}} {}",
                r.count
            );
        }
    }
    for (name, help, value) in [
        (
            "baton_events_published_total",
            "Events published through the API.",
            m.published_total(),
        ),
        (
            "baton_events_delivered_total",
            "Events delivered to consumer groups through the API (polls).",
            m.delivered.load(Ordering::Relaxed),
        ),
        (
            "baton_events_redelivered_total",
            "Deliveries of events delivered before (a visibility timeout expired or a consumer gave it back).",
            m.redelivered.load(Ordering::Relaxed),
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    out.push_str(
        "# HELP baton_audit_dropped_total Audit records dropped because the audit trail's queue was full.\n",
    );
    out.push_str("# TYPE baton_audit_dropped_total counter\n");
    let _ = writeln!(out, "baton_audit_dropped_total {}", state.audit.dropped());
    let progress = state.engine.progress();
    out.push_str("# HELP baton_tasks_ended_total Tasks that ended since start, by outcome (skipped counts cancelled ones too).\n");
    out.push_str("# TYPE baton_tasks_ended_total counter\n");
    for (outcome, counter) in [
        ("succeeded", &progress.succeeded),
        ("failed", &progress.failed),
        ("skipped", &progress.skipped),
    ] {
        let _ = writeln!(
            out,
            "baton_tasks_ended_total{{outcome=\"{outcome}\"}} {}",
            baton_engine::Progress::get(counter)
        );
    }
    out.push_str("# HELP baton_task_retries_total Task attempts beyond the first since start.\n");
    out.push_str("# TYPE baton_task_retries_total counter\n");
    let _ = writeln!(
        out,
        "baton_task_retries_total {}",
        baton_engine::Progress::get(&progress.retries)
    );
    // A shared log's topics are a request away: left out when it does not answer soon.
    let topics = tokio::time::timeout(Duration::from_secs(2), state.log.topics()).await;
    if let Ok(Ok(topics)) = topics {
        let letters: u64 = topics
            .iter()
            .filter(|t| t.name.ends_with(baton_events::DEAD_LETTER_SUFFIX))
            .map(|t| t.events())
            .sum();
        out.push_str("# HELP baton_dead_letters Events retained in dead-letter topics (X.dlq), redriven or not.\n");
        out.push_str("# TYPE baton_dead_letters gauge\n");
        let _ = writeln!(out, "baton_dead_letters {letters}");
    }
    out.push_str("# HELP baton_build_info The server's version.\n");
    out.push_str("# TYPE baton_build_info gauge\n");
    let _ = writeln!(
        out,
        "baton_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    process(&mut out, m.started_unix);
    // Agent labels are the operator's agents' names; the agents workflows
    // declare themselves are summed under `(workflow)`: a caller must not be
    // able to add series (or two workflows print one series twice).
    let operator = |name: &str| state.options.agents.iter().any(|a| a.name == name);
    let bounded = |name: &str| {
        if operator(name) {
            name.to_owned()
        } else {
            WORKFLOW_AGENTS.to_owned()
        }
    };
    let mut depths: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (agent, waiting, leased) in state.options.engine.workers.depths() {
        let d = depths.entry(bounded(&agent)).or_default();
        d.0 += waiting;
        d.1 += leased;
    }
    out.push_str("# HELP baton_worker_queue_depth Task calls waiting for a worker, by agent.\n");
    out.push_str("# TYPE baton_worker_queue_depth gauge\n");
    for (agent, (waiting, _)) in &depths {
        let _ = writeln!(
            out,
            "baton_worker_queue_depth{{agent=\"{}\"}} {waiting}",
            label(agent)
        );
    }
    out.push_str("# HELP baton_worker_leased Task calls leased to workers, by agent.\n");
    out.push_str("# TYPE baton_worker_leased gauge\n");
    for (agent, (_, leased)) in &depths {
        let _ = writeln!(
            out,
            "baton_worker_leased{{agent=\"{}\"}} {leased}",
            label(agent)
        );
    }
    if let Ok(s) = state.engine.stats().await {
        out.push_str("# HELP baton_runs Runs in progress by state.\n");
        out.push_str("# TYPE baton_runs gauge\n");
        for (k, v) in [
            ("running", s.runs_running),
            ("paused", s.runs_paused),
            ("compensating", s.runs_compensating),
            ("queued", s.runs_queued),
        ] {
            let _ = writeln!(out, "baton_runs{{state=\"{k}\"}} {v}");
        }
        out.push_str("# HELP baton_runs_finished_total Runs ended since start, by outcome.\n");
        out.push_str("# TYPE baton_runs_finished_total counter\n");
        for (k, v) in [
            ("completed", s.runs_completed),
            ("failed", s.runs_failed),
            ("cancelled", s.runs_cancelled),
        ] {
            let _ = writeln!(out, "baton_runs_finished_total{{state=\"{k}\"}} {v}");
        }
        out.push_str("# HELP baton_task_transitions_total Task transitions since start.\n");
        out.push_str("# TYPE baton_task_transitions_total counter\n");
        let _ = writeln!(out, "baton_task_transitions_total {}", s.transitions);
        out.push_str("# HELP baton_ready_queue_depth Tasks ready and waiting for an agent.\n");
        out.push_str("# TYPE baton_ready_queue_depth gauge\n");
        let _ = writeln!(out, "baton_ready_queue_depth {}", s.ready_queue);
        for (name, help, p) in [
            (
                "baton_coordination_overhead_seconds",
                "Ready to dispatched latency over every task since start (coordination overhead).",
                s.dispatch_latency,
            ),
            (
                "baton_release_latency_seconds",
                "A task's end to its successors ready, over every edge since start.",
                s.release_latency,
            ),
            (
                "baton_decision_latency_seconds",
                "A decision made at run time (route chosen, loop iteration ended) to what it started dispatched.",
                s.decision_latency,
            ),
            (
                "baton_child_start_latency_seconds",
                "A child run started by its parent's task to its first task dispatched.",
                s.child_start_latency,
            ),
        ] {
            // Histograms, not summaries: buckets add up across instances.
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (le, n) in baton_engine::LATENCY_BUCKETS_S.iter().zip(p.buckets) {
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
            }
            let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", p.count);
            let _ = writeln!(out, "{name}_sum {}", p.sum_us / 1e6);
            let _ = writeln!(out, "{name}_count {}", p.count);
        }
        let mut agents: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for a in &s.agents {
            let key = match operator(&a.name) {
                true => (a.name.clone(), a.kind.clone()),
                false => (WORKFLOW_AGENTS.to_owned(), WORKFLOW_AGENTS.to_owned()),
            };
            let e = agents.entry(key).or_default();
            e.0 += a.in_flight as u64;
            e.1 += a.calls;
        }
        out.push_str("# HELP baton_agent_in_flight Agent calls in flight.\n");
        out.push_str("# TYPE baton_agent_in_flight gauge\n");
        for ((name, kind), (in_flight, _)) in &agents {
            let _ = writeln!(
                out,
                "baton_agent_in_flight{{agent=\"{}\",kind=\"{}\"}} {in_flight}",
                label(name),
                label(kind),
            );
        }
        out.push_str("# HELP baton_agent_calls_total Agent calls since start.\n");
        out.push_str("# TYPE baton_agent_calls_total counter\n");
        let mut calls: BTreeMap<&str, u64> = BTreeMap::new();
        for ((name, _), (_, n)) in &agents {
            *calls.entry(name).or_default() += n;
        }
        for (name, n) in &calls {
            let _ = writeln!(
                out,
                "baton_agent_calls_total{{agent=\"{}\"}} {n}",
                label(name),
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
