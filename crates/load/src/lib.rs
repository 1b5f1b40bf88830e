#![doc = include_str!("../README.md")]

pub mod chart;
pub mod client;
pub mod cpu;
pub mod report;
pub mod resources;
pub mod scenario;
pub mod spawn;
pub mod stats;
pub mod threshold;
mod user;

use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use baton_model::Rng;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use client::Target;
pub use scenario::{Batch, Scenario, TaskKind};
pub use stats::{EndpointReport, Latency, Sample};
pub use threshold::Threshold;

/// What can stop a load run from starting.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Neither a run time nor an iteration count: the run would never end.
    #[error(
        "a load run needs a bound: give --run-time (e.g. 60s) and/or --iterations (e.g. 10000)"
    )]
    Unbounded,
    /// Options that cannot work together.
    #[error("{0}")]
    Invalid(String),
    /// Starting or reaching a server failed.
    #[error("{0}")]
    Server(String),
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `http://host:port` of a Baton server; several, comma-separated (instances
    /// sharing a state store), get the users in turn: user `i` talks to target
    /// `i mod n`.
    pub target: String,
    /// What users do.
    pub scenario: Scenario,
    /// Simulated users.
    pub users: usize,
    /// Users started per second (all at once when 0 or infinite).
    pub spawn_rate: f64,
    /// Stop after this long (counted from the first user's start).
    pub run_time: Option<Duration>,
    /// Stop after this many task iterations (all users together).
    pub iterations: Option<u64>,
    /// Open loop: start this many task iterations per second (users are the
    /// concurrency available to run them).
    pub rate: Option<f64>,
    /// Seed of every user's random choices and payloads.
    pub seed: u64,
    /// A request with no whole response after this long fails (`timeout`);
    /// a run followed for longer counts as failed.
    pub timeout: Duration,
    /// How often `execute` polls its run's status; zero (the default): each
    /// status request waits on the server for the run's end (`?wait_ms=`).
    pub poll_interval: Duration,
    /// Whether `execute` follows its run to the end (`false`: it only starts
    /// runs, to measure how fast executions are accepted).
    pub follow_runs: bool,
    /// A user's pause between iterations: uniform in `[min, max]`.
    pub wait: (Duration, Duration),
    /// The spawned server's process id, to report its CPU use, memory and
    /// descriptors.
    pub server_pid: Option<u32>,
    /// The spawned server's data directory, to report its size.
    pub server_dir: Option<std::path::PathBuf>,
    /// Bearer token for a server with `auth_token` set.
    pub token: Option<String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            target: "http://127.0.0.1:8080".into(),
            scenario: Scenario::orchestration(),
            users: 1,
            spawn_rate: 0.0,
            run_time: None,
            iterations: None,
            rate: None,
            seed: 0,
            timeout: Duration::from_secs(30),
            poll_interval: Duration::ZERO,
            follow_runs: true,
            wait: (Duration::ZERO, Duration::ZERO),
            server_pid: None,
            server_dir: None,
            token: None,
        }
    }
}

/// What the live progress line shows (about once a second).
#[derive(Debug, Clone)]
pub struct Progress {
    /// Seconds since the start.
    pub elapsed: f64,
    /// Users running.
    pub users: usize,
    /// Users asked for.
    pub target_users: usize,
    /// Requests so far.
    pub requests: u64,
    /// Failures so far.
    pub failures: u64,
    /// The last interval's figures.
    pub last: Sample,
}

/// State the users share.
pub(crate) struct Shared {
    pub(crate) cancel: CancellationToken,
    /// Iterations left to claim (`i64::MAX` when unbounded).
    remaining: AtomicI64,
    pub(crate) iterations_done: AtomicU64,
    pub(crate) rate: Option<f64>,
    pub(crate) ticket: AtomicU64,
    pub(crate) start: Instant,
}

impl Shared {
    /// Takes one iteration from the budget; false when it is spent.
    pub(crate) fn claim_iteration(&self) -> bool {
        self.remaining.fetch_sub(1, Ordering::Relaxed) > 0
    }
}

/// Request bodies made once, up front (seeded), so users spend their time
/// sending, not building JSON.
pub(crate) struct Workload {
    pub(crate) scenario: Scenario,
    workflows: Vec<Bytes>,
    batches: Vec<(usize, Bytes)>,
    pub(crate) publish_path: String,
    pub(crate) poll_interval: Duration,
    pub(crate) follow_runs: bool,
    /// How long `execute` follows a run before counting it failed.
    pub(crate) run_timeout: Duration,
    pub(crate) wait: (Duration, Duration),
}

impl Workload {
    fn prepare(o: &Options) -> Workload {
        let s = &o.scenario;
        let weight = |k: TaskKind| s.weights.iter().any(|&(t, w)| t == k && w > 0);
        let mut rng = Rng(o.seed ^ 0x10ad);
        let workflows = if weight(TaskKind::Create) || weight(TaskKind::Execute) {
            (0..16)
                .map(|i| {
                    let mut spec = baton_model::generate::Spec::new(s.tasks, s.shape);
                    spec.seed = rng.next_u64();
                    let mut w = baton_model::generate::workflow(&spec);
                    w.name = Some(format!("load-{}-{i}", s.shape));
                    Bytes::from(serde_json::to_vec(&w).expect("a workflow serializes"))
                })
                .collect()
        } else {
            Vec::new()
        };
        let batches = if weight(TaskKind::Publish) {
            let variants = if s.batch.min == s.batch.max { 4 } else { 16 };
            (0..variants)
                .map(|_| {
                    let span = (s.batch.max - s.batch.min) as u64 + 1;
                    let n = s.batch.min + rng.below(span) as usize;
                    (n, batch_body(n, s.payload_bytes, &mut rng))
                })
                .collect()
        } else {
            Vec::new()
        };
        Workload {
            scenario: s.clone(),
            workflows,
            batches,
            publish_path: format!("/api/v1/events?topic={}", s.topic),
            poll_interval: o.poll_interval,
            follow_runs: o.follow_runs,
            run_timeout: o.timeout,
            wait: o.wait,
        }
    }

    pub(crate) fn workflow(&self, rng: &mut Rng) -> Bytes {
        self.workflows[rng.below(self.workflows.len() as u64) as usize].clone()
    }

    pub(crate) fn batch(&self, rng: &mut Rng) -> (usize, Bytes) {
        self.batches[rng.below(self.batches.len() as u64) as usize].clone()
    }
}

/// A publish body of `n` events with seeded keys and `payload` bytes of payload each.
fn batch_body(n: usize, payload: usize, rng: &mut Rng) -> Bytes {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = Vec::with_capacity(n * (payload + 60) + 16);
    out.extend_from_slice(br#"{"events":["#);
    for i in 0..n {
        if i > 0 {
            out.push(b',');
        }
        let key = rng.below(1024);
        out.extend_from_slice(
            format!(r#"{{"type":"load.event","key":"k{key}","payload":""#).as_bytes(),
        );
        for _ in 0..payload {
            out.push(ALPHABET[rng.below(ALPHABET.len() as u64) as usize]);
        }
        out.extend_from_slice(br#""}"#);
    }
    out.extend_from_slice(b"]}");
    Bytes::from(out)
}

/// Runs are what `execute` followed to their end.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Runs {
    /// Runs that reached `completed`.
    pub completed: u64,
    /// Runs that ended `failed` or `cancelled`, or did not end within the
    /// request timeout (`--timeout`) of their execute.
    pub failed: u64,
    /// Completed runs per second.
    pub per_s: f64,
    /// Execute sent → a status first reporting `completed` (± the poll interval).
    pub end_to_end: Latency,
    /// `performance_metrics.coordination_overhead` of completed runs, as the server reports it.
    pub coordination_overhead: Latency,
}

/// CPU time used during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    /// Cores on this machine.
    pub cores: usize,
    /// The load generator's CPU time / wall time (1.0 = one core busy).
    pub client_cores: f64,
    /// The spawned server's, when there is one.
    pub server_cores: Option<f64>,
    /// 1-minute load average at the end.
    pub load_average: Option<f64>,
}

/// What a run is, for the report's header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    /// The scenario's name.
    pub scenario: String,
    /// The target's base URL.
    pub target: String,
    /// `closed` (Locust's users) or `open` (`--rate`).
    pub mode: String,
    /// Users asked for.
    pub users: usize,
    /// Users started per second.
    pub spawn_rate: f64,
    /// Iterations per second, open loop.
    pub rate: Option<f64>,
    /// The seed.
    pub seed: u64,
    /// Unix time of the start, seconds.
    pub started: u64,
    /// Whether the target is on this machine (client and server share its cores).
    pub loopback: bool,
}

/// A finished run: what `--json` writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The JSON schema's version.
    pub schema: u32,
    /// The run's parameters.
    pub meta: Meta,
    /// Wall time the users ran, seconds.
    pub seconds: f64,
    /// Task iterations run.
    pub iterations: u64,
    /// One row per endpoint that was called, in a fixed order.
    pub endpoints: Vec<EndpointReport>,
    /// Every request (Locust's `Aggregated` row).
    pub total: EndpointReport,
    /// Events accepted by the server.
    pub events: u64,
    /// Events accepted per second.
    pub events_per_s: f64,
    /// Runs followed to their end.
    pub runs: Runs,
    /// CPU use.
    pub cpu: Cpu,
    /// About one sample per second.
    pub history: Vec<Sample>,
    /// Thresholds checked (filled in by the caller).
    #[serde(default)]
    pub thresholds: Vec<threshold::Outcome>,
    /// How the server's memory, descriptors and disk moved after the
    /// warm-up (a server whose process is known: `--spawn-server`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<resources::Growth>,
}

impl Report {
    /// The report of `w`, measured over `seconds`.
    pub fn from_window(w: &stats::Window, seconds: f64, meta: Meta) -> Report {
        let secs = seconds.max(1e-9);
        let endpoints = stats::Endpoint::ALL
            .iter()
            .zip(&w.endpoints)
            .filter(|(_, s)| s.requests > 0)
            .map(|(e, s)| EndpointReport::of(e.method(), e.route(), s, seconds))
            .collect();
        Report {
            schema: 1,
            meta,
            seconds,
            iterations: 0,
            endpoints,
            total: EndpointReport::of("", "Aggregated", &w.aggregated(), seconds),
            events: w.events,
            events_per_s: w.events as f64 / secs,
            runs: Runs {
                completed: w.runs_completed,
                failed: w.runs_failed,
                per_s: w.runs_completed as f64 / secs,
                end_to_end: Latency::of(&w.run_us),
                coordination_overhead: Latency::of(&w.overhead_us),
            },
            cpu: Cpu::default(),
            history: Vec::new(),
            thresholds: Vec::new(),
            server: None,
        }
    }

    /// Whether every threshold passed.
    pub fn passed(&self) -> bool {
        self.thresholds.iter().all(|t| t.passed)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Runs the load until its bound, calling `progress` about once a second.
pub async fn run(o: Options, mut progress: impl FnMut(&Progress)) -> Result<Report, Error> {
    let targets: Arc<[Target]> = check(&o)?.into();
    let loopback = targets.iter().all(|t| t.loopback);
    let work = Arc::new(Workload::prepare(&o));
    let start = Instant::now();
    let shared = Arc::new(Shared {
        cancel: CancellationToken::new(),
        remaining: AtomicI64::new(
            o.iterations
                .map_or(i64::MAX, |n| n.min(i64::MAX as u64) as i64),
        ),
        iterations_done: AtomicU64::new(0),
        rate: o.rate,
        ticket: AtomicU64::new(0),
        start,
    });
    let meta = Meta {
        scenario: o.scenario.name.clone(),
        target: targets
            .iter()
            .map(|t| t.base.as_str())
            .collect::<Vec<_>>()
            .join(","),
        mode: if o.rate.is_some() { "open" } else { "closed" }.into(),
        users: o.users,
        spawn_rate: o.spawn_rate,
        rate: o.rate,
        seed: o.seed,
        started: unix_now(),
        loopback,
    };
    let cpu_start = cpu::process_seconds();
    let server_start = o.server_pid.and_then(cpu::pid_seconds);
    let watched = o.server_pid.map(|pid| resources::Watched {
        pid,
        dir: o.server_dir.clone(),
    });
    // The data directory is walked every fifth sample (a `stat` per file).
    let watch = |n: usize| watched.as_ref().and_then(|w| w.sample(n.is_multiple_of(5)));

    let crowd = Arc::new(Crowd::default());
    let spawner = tokio::spawn(
        crowd
            .clone()
            .spawn(&o, targets, shared.clone(), work, start),
    );

    let mut total = stats::Window::default();
    let mut history: Vec<Sample> = Vec::new();
    let mut last_sample = start;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = Instant::now();
        let timed_out = o.run_time.is_some_and(|rt| now >= start + rt);
        let all_done = spawner.is_finished() && crowd.running() == 0;
        if timed_out || all_done {
            break;
        }
        if now.duration_since(last_sample) >= Duration::from_secs(1) {
            let interval = crowd.collect(&mut total);
            let dt = now.duration_since(last_sample).as_secs_f64();
            let mut s = sample(
                &interval,
                &total,
                now.duration_since(start).as_secs_f64(),
                dt,
                crowd.running(),
            );
            s.server = watch(history.len());
            last_sample = now;
            let all = total.aggregated();
            progress(&Progress {
                elapsed: s.t,
                users: s.users,
                target_users: o.users,
                requests: all.requests,
                failures: all.failed(),
                last: s.clone(),
            });
            history.push(s);
        }
    }
    // Stop: users stop between requests; requests in flight are abandoned
    // (not counted), as Locust does when its run time is up.
    shared.cancel.cancel();
    let end = Instant::now();
    let users_at_end = crowd.running();
    spawner.abort();
    crowd.abort();
    let interval = crowd.collect(&mut total);
    let seconds = end.duration_since(start).as_secs_f64();
    if end.duration_since(last_sample) >= Duration::from_millis(200) || history.is_empty() {
        history.push(sample(
            &interval,
            &total,
            seconds,
            end.duration_since(last_sample).as_secs_f64(),
            users_at_end,
        ));
    }
    // The last sample always has the data directory's size.
    if let Some(last) = history.last_mut() {
        last.server = watch(0);
    }
    let mut report = Report::from_window(&total, seconds, meta);
    report.iterations = shared.iterations_done.load(Ordering::Relaxed);
    let watched: Vec<(f64, resources::ServerSample)> = history
        .iter()
        .filter_map(|s| Some((s.t, s.server?)))
        .collect();
    report.server = resources::Growth::of(&watched);
    report.history = history;
    report.cpu = Cpu {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        client_cores: cpu::process_seconds()
            .zip(cpu_start)
            .map_or(0.0, |(b, a)| (b - a) / seconds.max(1e-9)),
        server_cores: o
            .server_pid
            .and_then(cpu::pid_seconds)
            .zip(server_start)
            .map(|(b, a)| (b - a) / seconds.max(1e-9)),
        load_average: cpu::load_average(),
    };
    Ok(report)
}

/// The options' bound, users, rate and scenario checked; the targets parsed.
fn check(o: &Options) -> Result<Vec<Target>, Error> {
    if o.run_time.is_none() && o.iterations.is_none() {
        return Err(Error::Unbounded);
    }
    if o.users == 0 {
        return Err(Error::Invalid("--users must be at least 1".into()));
    }
    if o.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(Error::Invalid("--rate must be above 0".into()));
    }
    o.scenario.check().map_err(Error::Invalid)?;
    o.target
        .split(',')
        .map(|t| Target::parse(t.trim()))
        .collect::<Result<Vec<Target>, _>>()
        .map_err(Error::Invalid)
}

/// The users of a run: each one's statistics (a shard, merged when sampled), its
/// task, and how many are running.
#[derive(Default)]
struct Crowd {
    shards: Mutex<Vec<Arc<Mutex<stats::Window>>>>,
    handles: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    running: AtomicUsize,
}

impl Crowd {
    /// Starts the users at the spawn rate (all at once without one); user `i`
    /// talks to target `i mod targets`.
    fn spawn(
        self: Arc<Self>,
        o: &Options,
        targets: Arc<[Target]>,
        shared: Arc<Shared>,
        work: Arc<Workload>,
        start: Instant,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (users, rate, seed, timeout) = (o.users, o.spawn_rate, o.seed, o.timeout);
        let token = o.token.clone();
        async move {
            for id in 0..users {
                if rate > 0.0 && rate.is_finite() {
                    let at = start + Duration::from_secs_f64(id as f64 / rate);
                    tokio::select! {
                        _ = tokio::time::sleep_until(at.into()) => {}
                        _ = shared.cancel.cancelled() => return,
                    }
                }
                if shared.cancel.is_cancelled() {
                    return;
                }
                let window = Arc::new(Mutex::new(stats::Window::default()));
                self.shards.lock().expect("shards").push(window.clone());
                let user = user::User::new(
                    id,
                    client::Conn::new(&targets[id % targets.len()], timeout)
                        .with_token(token.as_deref()),
                    seed,
                    window,
                    shared.clone(),
                    work.clone(),
                );
                self.running.fetch_add(1, Ordering::SeqCst);
                let crowd = self.clone();
                let h = tokio::spawn(async move {
                    user.run().await;
                    crowd.running.fetch_sub(1, Ordering::SeqCst);
                });
                self.handles.lock().expect("handles").push(h);
            }
        }
    }

    fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// What the users measured since the last call, also merged into `total`.
    fn collect(&self, total: &mut stats::Window) -> stats::Window {
        let mut interval = stats::Window::default();
        for shard in self.shards.lock().expect("shards").iter() {
            let mut s = shard.lock().expect("stats");
            interval.merge(&s.take());
        }
        total.merge(&interval);
        interval
    }

    fn abort(&self) {
        for h in self.handles.lock().expect("handles").drain(..) {
            h.abort();
        }
    }
}

/// One history point: the interval's rates over `dt` seconds and the totals.
fn sample(
    interval: &stats::Window,
    total: &stats::Window,
    t: f64,
    dt: f64,
    users: usize,
) -> Sample {
    let dt = dt.max(1e-9);
    let agg = interval.aggregated();
    let all = total.aggregated();
    Sample {
        t,
        timestamp: unix_now(),
        users,
        requests_per_s: agg.requests as f64 / dt,
        failures_per_s: agg.failed() as f64 / dt,
        events_per_s: interval.events as f64 / dt,
        latency: Latency::of(&agg.latency_us),
        total_requests: all.requests,
        total_failures: all.failed(),
        total_latency: Latency::of(&all.latency_us),
        total_avg_bytes: if all.requests == 0 {
            0.0
        } else {
            all.bytes as f64 / all.requests as f64
        },
        server: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_bodies_are_valid_and_seeded() {
        let a = batch_body(3, 10, &mut Rng(1));
        let b = batch_body(3, 10, &mut Rng(1));
        assert_eq!(a, b);
        let v: baton_api::PublishRequest = serde_json::from_slice(&a).unwrap();
        assert_eq!(v.events.len(), 3);
        assert_eq!(v.events[0].payload.as_str().unwrap().len(), 10);
    }

    #[tokio::test]
    async fn refuses_to_run_unbounded() {
        let err = run(Options::default(), |_| {}).await.unwrap_err();
        assert!(matches!(err, Error::Unbounded));
        assert!(err.to_string().contains("--run-time"));
    }
}
