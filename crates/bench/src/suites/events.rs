//! `events`: publish → poll → ack through the `EventLog` trait.
//!
//! Each sample: a fresh log (a fresh temporary directory for `disk`), P
//! producers publishing COUNT events in total (100-byte payloads unless
//! stated, 64 keys, 8 partitions, batches of 1,000 unless stated) and a
//! consumer group of C members polling and acknowledging until every event
//! is acknowledged. Timed: from the first publish to the last
//! acknowledgement, making each event (a fresh id, as a real producer would)
//! included. Excluded: opening and closing the log.
//!
//! Latencies come from HDR histograms filled during the same samples:
//! `publish` is one `publish` call (a whole batch, until the backend's
//! durability promise holds); `consume` is one poll that delivered events
//! plus its ack; `end_to_end` is from just before the batch's
//! publish to the moment a consumer holds the event (closed loop: producers
//! go as fast as they can, so it includes queueing behind them).
//!
//! `--backend` picks one backend's scenarios: `memory` or `disk` (both by
//! default), or `redis` (feature `redis`; the server at
//! `BATON_BENCH_REDIS_URL`, default `redis://127.0.0.1:6379`, each sample under
//! a fresh key prefix deleted afterwards), or `nats` (feature `nats`; the server at
//! `BATON_BENCH_NATS_URL`, default `nats://127.0.0.1:4222`, each sample under a
//! fresh stream prefix deleted afterwards). Server backends add publish-only
//! scenarios (`events/publish/...`: producers only, no group), since a shared
//! log's publish rate matters on its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use baton_events::{
    AnyLog, DiskOptions, EventLog, Fsync, Limits, OpenOptions, Options, Retention, TopicOptions,
};
use hdrhistogram::Histogram;

use super::batches::Batches;
use super::ceiling;
use crate::{Config, Error, Record, Sink};

/// A backend and its durability setting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Backend {
    Memory,
    Disk(Fsync),
    Redis,
    Nats,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Disk(Fsync::Always) => "disk-always",
            Backend::Disk(Fsync::Never) => "disk-never",
            Backend::Disk(_) => "disk-interval-10ms",
            Backend::Redis => "redis",
            Backend::Nats => "nats",
        }
    }

    /// The URL [`AnyLog::open`] opens it with: a server backend's from
    /// `BATON_BENCH_REDIS_URL` / `BATON_BENCH_NATS_URL`, or one on this machine.
    fn url(self) -> String {
        let server = |var: &str, default: &str| {
            std::env::var(var)
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| default.to_owned())
        };
        match self {
            Backend::Memory => "memory".to_owned(),
            Backend::Disk(_) => "disk".to_owned(),
            Backend::Redis => server("BATON_BENCH_REDIS_URL", "redis://127.0.0.1:6379"),
            Backend::Nats => server("BATON_BENCH_NATS_URL", "nats://127.0.0.1:4222"),
        }
    }

    /// Whether the log lives on a server, shared with whoever else uses it.
    fn on_server(self) -> bool {
        matches!(self, Backend::Redis | Backend::Nats)
    }
}

const INTERVAL: Backend = Backend::Disk(Fsync::Interval(Duration::from_millis(10)));
const ALWAYS: Backend = Backend::Disk(Fsync::Always);

/// One workload.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scenario {
    pub backend: Backend,
    pub producers: usize,
    pub consumers: usize,
    pub batch: usize,
    pub count: usize,
    pub payload: usize,
    /// Whether the topic keeps its dedup window (the default) or has none.
    pub dedup: bool,
}

impl Scenario {
    fn new(backend: Backend, count: usize) -> Scenario {
        Scenario {
            backend,
            producers: 1,
            consumers: 1,
            batch: 1_000,
            count,
            payload: 100,
            dedup: true,
        }
    }
}

/// What one sample measured.
pub(crate) struct Outcome {
    pub seconds: f64,
    pub publish_us: Histogram<u64>,
    pub consume_us: Histogram<u64>,
    pub end_to_end_us: Histogram<u64>,
}

fn options() -> Options {
    Options {
        limits: Limits {
            max_event_bytes: 1 << 20,
            max_batch_events: 100_000,
            max_batch_bytes: 256 << 20,
        },
        topic_defaults: TopicOptions {
            partitions: 8,
            // Bounded memory whatever the count (consumers keep up; this only
            // matters if they fall behind).
            retention: Retention {
                max_events: Some(2_000_000),
                max_bytes: None,
                ..Retention::default()
            },
            ..TopicOptions::default()
        },
    }
}

/// [`options`] for a scenario.
fn options_for(sc: &Scenario) -> Options {
    let mut o = options();
    if !sc.dedup {
        o.topic_defaults.dedup.max_ids = 0;
    }
    o
}

fn histogram() -> Histogram<u64> {
    Histogram::new(3).expect("3 significant digits is valid")
}

async fn drive<L: EventLog + Clone>(
    log: L,
    sc: Scenario,
    epoch: Instant,
) -> Result<Outcome, String> {
    let acked = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let total = sc.count as u64;
    let started = Instant::now();
    let mut producers = Vec::new();
    let per = sc.count.div_ceil(sc.producers);
    for p in 0..sc.producers {
        let (log, published) = (log.clone(), published.clone());
        let mine = per.min(sc.count.saturating_sub(p * per));
        producers.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut sent = 0usize;
            let mut batches = Batches::new(sc.payload);
            batches.seq = p as u64;
            while sent < mine {
                let n = sc.batch.min(mine - sent);
                let t0 = Instant::now();
                let batch = batches.next(n, epoch);
                log.publish("bench", batch)
                    .await
                    .map_err(|e| e.to_string())?;
                hist.record(t0.elapsed().as_micros() as u64).ok();
                sent += n;
                published.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok::<_, String>(hist)
        }));
    }
    let mut consumers = Vec::new();
    for m in 0..sc.consumers {
        let (log, acked, published) = (log.clone(), acked.clone(), published.clone());
        consumers.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut consume = histogram();
            let member = format!("m{m}");
            let max = sc.batch.max(1_000);
            let mut idle_since: Option<Instant> = None;
            while acked.load(Ordering::Relaxed) < total {
                let t0 = Instant::now();
                let polled = log
                    .poll("bench", "g", &member, max, Duration::from_millis(5))
                    .await
                    .map_err(|e| e.to_string())?;
                if polled.is_empty() {
                    // Everything published, nothing to poll for 5 s, yet not all
                    // acknowledged: events were lost (or never delivered). Say so
                    // instead of waiting forever.
                    if published.load(Ordering::Relaxed) >= total {
                        let since = *idle_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > Duration::from_secs(5) {
                            return Err(format!(
                                "{} of {total} events acknowledged; nothing more delivered for 5 s after the last publish",
                                acked.load(Ordering::Relaxed)
                            ));
                        }
                    }
                    continue;
                }
                idle_since = None;
                let now = (Instant::now() - epoch).as_nanos() as u64;
                for d in polled.iter() {
                    let p = &d.event.payload;
                    if p.len() >= 8 {
                        let sent = u64::from_le_bytes(p[..8].try_into().expect("8 bytes"));
                        hist.record(now.saturating_sub(sent) / 1_000).ok();
                    }
                }
                let n = log
                    .ack("bench", "g", &polled.offsets())
                    .await
                    .map_err(|e| e.to_string())?;
                consume.record(t0.elapsed().as_micros() as u64).ok();
                acked.fetch_add(n as u64, Ordering::Relaxed);
            }
            Ok::<_, String>((hist, consume))
        }));
    }
    let mut publish_us = histogram();
    for p in producers {
        publish_us.add(p.await.map_err(|e| e.to_string())??).ok();
    }
    let mut end_to_end_us = histogram();
    let mut consume_us = histogram();
    for c in consumers {
        let (e2e, consume) = c.await.map_err(|e| e.to_string())??;
        end_to_end_us.add(e2e).ok();
        consume_us.add(consume).ok();
    }
    let seconds = started.elapsed().as_secs_f64();
    log.close().await.map_err(|e| e.to_string())?;
    Ok(Outcome {
        seconds,
        publish_us,
        consume_us,
        end_to_end_us,
    })
}

/// One sample on a fresh log: a fresh directory (disk) or a fresh namespace on
/// the server, whose topics are deleted afterwards (not timed).
async fn sample(sc: Scenario) -> Result<Outcome, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let epoch = Instant::now();
    let dir = match sc.backend {
        Backend::Disk(_) => Some(tempfile::tempdir().map_err(|e| e.to_string())?),
        _ => None,
    };
    let options = OpenOptions {
        dir: dir.as_ref().map(|d| d.path().to_owned()),
        disk: DiskOptions {
            log: options_for(&sc),
            fsync: match sc.backend {
                Backend::Disk(fsync) => fsync,
                _ => DiskOptions::default().fsync,
            },
            ..DiskOptions::default()
        },
        namespace: format!(
            "baton-bench-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ),
    };
    let url = sc.backend.url();
    let log = AnyLog::open(&url, &options)
        .await
        .map_err(|e| e.to_string())?;
    let outcome = drive(log, sc, epoch).await;
    if sc.backend.on_server() {
        // `drive` closed its log; another handle deletes what the sample stored.
        let cleanup = AnyLog::open(&url, &options)
            .await
            .map_err(|e| e.to_string())?;
        let deleted: baton_events::Result<usize> = match &cleanup {
            #[cfg(feature = "redis")]
            AnyLog::Redis(log) => log.delete_all_topics().await,
            #[cfg(feature = "nats")]
            AnyLog::Nats(log) => log.delete_all_topics().await,
            _ => Ok(0),
        };
        deleted.map_err(|e| e.to_string())?;
    }
    outcome
}

/// Warm-up plus `repeats` samples; the throughput samples (events/s) and the
/// merged histograms.
pub(crate) fn measure(
    rt: &tokio::runtime::Runtime,
    name: &str,
    sc: Scenario,
    repeats: usize,
) -> Result<(Vec<f64>, Vec<Outcome>), Error> {
    let failed = |message: String| Error::Failed {
        benchmark: name.to_string(),
        message,
    };
    rt.block_on(sample(sc)).map_err(failed)?;
    let mut rates = Vec::new();
    let mut outcomes = Vec::new();
    for _ in 0..repeats.max(1) {
        let o = rt.block_on(sample(sc)).map_err(failed)?;
        rates.push(sc.count as f64 / o.seconds);
        outcomes.push(o);
    }
    Ok((rates, outcomes))
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

fn throughput_record(name: String, sc: Scenario, rates: Vec<f64>) -> Record {
    Record::new(
        name,
        "events acknowledged per second: P producers publish COUNT events in batches, a C-member group polls and acks them all; from the first publish to the last ack, on a fresh log",
        "events/s",
        true,
        rates,
    )
    .param("backend", sc.backend.name())
    .param("producers", sc.producers)
    .param("consumers", sc.consumers)
    .param("batch", sc.batch)
    .param("count", sc.count)
    .param("payload_bytes", sc.payload)
    .param("dedup", sc.dedup)
}

/// Latency records (p50, p99, max per sample) of one scenario, with the
/// merged distribution's quantiles for CDF charts.
fn latency_records(prefix: &str, sc: Scenario, outcomes: &[Outcome]) -> Vec<Record> {
    let mut out = Vec::new();
    for (what, get, description) in [
        (
            "publish",
            (|o: &Outcome| &o.publish_us) as fn(&Outcome) -> &Histogram<u64>,
            "one publish call (a whole batch), until the backend's durability promise holds",
        ),
        (
            "consume",
            |o: &Outcome| &o.consume_us,
            "one poll that delivered events plus its ack: what a consumer waits per round",
        ),
        (
            "end_to_end",
            |o: &Outcome| &o.end_to_end_us,
            "from just before the batch's publish to a consumer holding the event (closed loop: includes queueing)",
        ),
    ] {
        let mut merged = histogram();
        for o in outcomes {
            merged.add(get(o)).ok();
        }
        for (q, label) in [(0.5, "p50"), (0.99, "p99"), (1.0, "max")] {
            let samples: Vec<f64> = outcomes
                .iter()
                .map(|o| get(o).value_at_quantile(q) as f64)
                .collect();
            let mut r = Record::new(
                format!("{prefix}/{what}/{label}"),
                description,
                "us",
                false,
                samples,
            )
            .param("backend", sc.backend.name())
            .param("batch", sc.batch)
            .param("count", sc.count)
            .param("quantile", q);
            if label == "p99" {
                for q in [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0] {
                    r = r.derive(&format!("q{q}"), merged.value_at_quantile(q) as f64);
                }
            }
            out.push(r);
        }
    }
    out
}

/// The machine's own limits, measured once per workload shape in a run
/// (`events/ceiling/...`, see [`ceiling`](super::ceiling)).
#[derive(Default)]
struct Ceilings(HashMap<String, Record>);

/// How long one sample of an in-process ceiling runs at least (it repeats its
/// workload until then): a bare channel moves 10,000 events in about a
/// millisecond, too short to time alone.
const MIN_CEILING_SECONDS: f64 = 0.1;

impl Ceilings {
    /// The ceiling of a one-producer, one-member in-process scenario: the same
    /// batches through a bare channel (memory), or written as the log's records
    /// (disk); measured on first use, then pushed to `sink` too.
    fn in_process(
        &mut self,
        rt: &tokio::runtime::Runtime,
        repeats: usize,
        sink: &mut Sink<'_>,
        sc: Scenario,
    ) -> Result<Option<Record>, Error> {
        if sc.producers != 1 || sc.consumers != 1 {
            return Ok(None);
        }
        let name = format!(
            "events/ceiling/{}/batch{}/payload{}",
            sc.backend.name(),
            sc.batch,
            sc.payload
        );
        // Made when the ceiling is measured, not when this run has it already.
        let mut dir: Option<tempfile::TempDir> = None;
        let mut once = || match sc.backend {
            Backend::Memory => rt.block_on(ceiling::channel(sc.count, sc.batch, sc.payload)),
            Backend::Disk(fsync) => {
                let dir = match &mut dir {
                    Some(d) => d,
                    empty => empty.insert(tempfile::tempdir().map_err(|e| e.to_string())?),
                };
                ceiling::disk(
                    dir.path(),
                    sc.count,
                    sc.batch,
                    sc.payload,
                    fsync == Fsync::Always,
                )
            }
            Backend::Redis | Backend::Nats => Err("not an in-process backend".into()),
        };
        let sample = || -> Result<f64, Error> {
            let (mut events, mut seconds) = (0, 0.0);
            while seconds < MIN_CEILING_SECONDS {
                seconds += once().map_err(|message| Error::Failed {
                    benchmark: name.clone(),
                    message,
                })?;
                events += sc.count;
            }
            Ok(events as f64 / seconds)
        };
        let description = match sc.backend {
            Backend::Memory => {
                "the machine's limit for this workload: the same batches handed from one task to another through a bounded channel, no log"
            }
            Backend::Disk(Fsync::Always) => {
                "the machine's limit for this workload: each batch written as the log's batch record to a file, fdatasync after each, no log"
            }
            _ => {
                "the machine's limit for this workload: each batch written as the log's batch record to a file (no sync), no log"
            }
        };
        self.get_or_measure(sink, name.clone(), repeats, sample, |name, rates| {
            Record::new(name, description, "events/s", true, rates)
                .param("backend", sc.backend.name())
                .param("batch", sc.batch)
                .param("payload_bytes", sc.payload)
        })
    }

    /// The ceiling of a server backend's publish scenario: the same batches as
    /// raw pipelined `XADD` (Redis) or raw JetStream publishes with acks (NATS),
    /// by as many producers; measured on first use, then pushed to `sink` too.
    fn server_publish(
        &mut self,
        rt: &tokio::runtime::Runtime,
        repeats: usize,
        sink: &mut Sink<'_>,
        sc: Scenario,
    ) -> Result<Option<Record>, Error> {
        let name = format!(
            "events/ceiling/{}/{}p/batch{}",
            sc.backend.name(),
            sc.producers,
            sc.batch
        );
        let url = sc.backend.url();
        let once = || -> Result<f64, Error> {
            let seconds: Result<f64, String> = match sc.backend {
                #[cfg(feature = "redis")]
                Backend::Redis => rt.block_on(ceiling::redis_xadd(
                    &url,
                    sc.producers,
                    sc.count,
                    sc.batch,
                    sc.payload,
                )),
                #[cfg(feature = "nats")]
                Backend::Nats => rt.block_on(ceiling::nats_publish(
                    &url,
                    sc.producers,
                    sc.count,
                    sc.batch,
                    sc.payload,
                )),
                _ => {
                    let _ = (rt, &url);
                    Err(format!(
                        "no raw client for {} in this build",
                        sc.backend.name()
                    ))
                }
            };
            ceiling::rate(&name, sc.count, seconds)
        };
        let description = match sc.backend {
            Backend::Redis => {
                "the machine's limit for this workload: the same batches as pipelines of raw XADD (no script, no dedup) over 8 streams"
            }
            _ => {
                "the machine's limit for this workload: the same batches as raw JetStream publishes to 8 streams, every one acknowledged"
            }
        };
        self.get_or_measure(sink, name.clone(), repeats, once, |name, rates| {
            Record::new(name, description, "events/s", true, rates)
                .param("backend", sc.backend.name())
                .param("producers", sc.producers)
                .param("batch", sc.batch)
                .param("count", sc.count)
                .param("payload_bytes", sc.payload)
        })
    }

    /// The ceiling `name`: this run's, or measured now (a warm-up, then
    /// `repeats` samples of `sample`, in events/s), made a record by `record`
    /// and pushed to `sink` too.
    fn get_or_measure(
        &mut self,
        sink: &mut Sink<'_>,
        name: String,
        repeats: usize,
        mut sample: impl FnMut() -> Result<f64, Error>,
        record: impl FnOnce(String, Vec<f64>) -> Record,
    ) -> Result<Option<Record>, Error> {
        if let Some(r) = self.0.get(&name) {
            return Ok(Some(r.clone()));
        }
        sample()?;
        let rates = (0..repeats.max(1))
            .map(|_| sample())
            .collect::<Result<Vec<f64>, Error>>()?;
        let r = record(name.clone(), rates);
        sink.push(r.clone());
        self.0.insert(name, r.clone());
        Ok(Some(r))
    }
}

/// `record` within `ceiling`, when there is one.
fn within(record: Record, ceiling: Option<Record>) -> Record {
    match ceiling {
        Some(c) => record.within(&c),
        None => record,
    }
}

pub(crate) fn run(config: &Config, sink: &mut Sink<'_>) -> Result<(), Error> {
    match config.events_backend.as_deref() {
        None => run_in_process(config, sink, |_| true),
        Some("memory") => run_in_process(config, sink, |b| b == Backend::Memory),
        Some("disk") => run_in_process(config, sink, |b| matches!(b, Backend::Disk(_))),
        Some(name @ ("redis" | "nats")) => {
            let backend = if name == "redis" {
                Backend::Redis
            } else {
                Backend::Nats
            };
            // A backend this build lacks is refused before anything runs.
            baton_events::Backend::parse(&backend.url()).map_err(|e| {
                Error::Unavailable(format!(
                    "the events suite's {name} backend: {e} \
                     (e.g. cargo build --release -p baton-cli --features {name})"
                ))
            })?;
            run_server(config, sink, backend)
        }
        Some(other) => Err(Error::Unavailable(format!(
            "unknown events backend `{other}`: expected memory, disk, redis or nats"
        ))),
    }
}

/// The memory and disk scenarios, of the backends `keep` accepts.
fn run_in_process(
    config: &Config,
    sink: &mut Sink<'_>,
    keep: impl Fn(Backend) -> bool,
) -> Result<(), Error> {
    let rt = runtime();
    let repeats = config.repeats;
    let mut ceilings = Ceilings::default();
    // Throughput by backend and count.
    let memory_counts = config.pick(
        &[1_000, 10_000, 100_000, 1_000_000, 10_000_000],
        &[10_000, 100_000],
        &[1_000],
    );
    let disk_counts = config.pick(&[1_000, 10_000, 100_000, 1_000_000], &[100_000], &[1_000]);
    let backends: Vec<Backend> = config.pick(
        &[
            Backend::Memory,
            ALWAYS,
            INTERVAL,
            Backend::Disk(Fsync::Never),
        ],
        &[
            Backend::Memory,
            ALWAYS,
            INTERVAL,
            Backend::Disk(Fsync::Never),
        ],
        &[Backend::Memory, ALWAYS],
    );
    for backend in backends.into_iter().filter(|&b| keep(b)) {
        let counts = if backend == Backend::Memory {
            &memory_counts
        } else {
            &disk_counts
        };
        for &count in counts {
            let sc = Scenario::new(backend, count);
            let name = format!("events/throughput/{}/1p1c/{count}", backend.name());
            let (rates, outcomes) = measure(&rt, &name, sc, repeats)?;
            let ceiling = ceilings.in_process(&rt, repeats, sink, sc)?;
            sink.push(within(throughput_record(name, sc, rates), ceiling));
            // Latencies at the reference workload (100k events; the largest in smoke).
            if count
                == *counts
                    .iter()
                    .min_by_key(|c| c.abs_diff(100_000))
                    .unwrap_or(&count)
            {
                for r in
                    latency_records(&format!("events/latency/{}", backend.name()), sc, &outcomes)
                {
                    sink.push(r);
                }
            }
        }
    }

    // Batch-size sweep, with the recommended batch size.
    let batches = config.pick(&[1, 10, 100, 1_000, 10_000], &[1, 100, 1_000], &[10, 100]);
    for backend in [Backend::Memory, ALWAYS].into_iter().filter(|&b| keep(b)) {
        batch_sweep(&rt, config, sink, backend, &batches, &mut ceilings)?;
    }

    // Payload sizes (memory: the log's own cost, not the disk's bandwidth).
    let payloads = if keep(Backend::Memory) {
        config.pick(&[10, 100, 1_000, 10_000], &[100, 4_096], &[100])
    } else {
        Vec::new()
    };
    for &payload in &payloads {
        let count = match (config.smoke, config.quick || payload >= 10_000) {
            (true, _) => 1_000,
            (false, true) => 20_000,
            (false, false) => 100_000,
        };
        let sc = Scenario {
            payload,
            ..Scenario::new(Backend::Memory, count)
        };
        let name = format!("events/payload/memory/{payload}");
        let (rates, _) = measure(&rt, &name, sc, repeats)?;
        let ceiling = ceilings.in_process(&rt, repeats, sink, sc)?;
        sink.push(within(throughput_record(name, sc, rates), ceiling));
    }

    // Producers and consumers.
    for (backend, count) in config.pick(
        &[(Backend::Memory, 1_000_000), (ALWAYS, 1_000_000)],
        &[(Backend::Memory, 100_000), (ALWAYS, 100_000)],
        &[(Backend::Memory, 1_000)],
    ) {
        if !keep(backend) {
            continue;
        }
        for p in config.pick(&[1, 2, 4], &[1, 2, 4], &[1, 2]) {
            let sc = Scenario {
                producers: p,
                consumers: p,
                ..Scenario::new(backend, count)
            };
            let name = format!("events/producers/{}/{p}p{p}c", backend.name());
            let (rates, _) = measure(&rt, &name, sc, repeats)?;
            sink.push(throughput_record(name, sc, rates));
        }
    }
    Ok(())
}

/// The batch-size sweep of one backend, with the recommended batch size.
fn batch_sweep(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    sink: &mut Sink<'_>,
    backend: Backend,
    batches: &[usize],
    ceilings: &mut Ceilings,
) -> Result<(), Error> {
    let repeats = config.repeats;
    let mut points = Vec::new();
    for &batch in batches {
        let count = match (backend, config.quick) {
            (_, true) if config.smoke => 1_000,
            (Backend::Memory, false) => (batch * 500).clamp(5_000, 1_000_000),
            (Backend::Memory, true) => (batch * 100).clamp(2_000, 100_000),
            (_, false) => (batch * 100).clamp(2_000, 200_000),
            (_, true) => (batch * 50).clamp(500, 100_000),
        };
        let sc = Scenario {
            batch,
            ..Scenario::new(backend, count)
        };
        let prefix = format!("events/batch/{}/{batch}", backend.name());
        let (rates, outcomes) = measure(rt, &prefix, sc, repeats)?;
        let lat = latency_records(&prefix, sc, &outcomes);
        let p99 = lat
            .iter()
            .find(|r| r.name.ends_with("/end_to_end/p99"))
            .map_or(f64::NAN, |r| r.statistics.median);
        let ceiling = if backend.on_server() {
            None
        } else {
            ceilings.in_process(rt, repeats, sink, sc)?
        };
        let rec = within(
            throughput_record(format!("{prefix}/throughput"), sc, rates),
            ceiling,
        );
        points.push((batch, rec.statistics.median, p99));
        sink.push(rec);
        for r in lat.into_iter().filter(|r| r.name.contains("/p99")) {
            sink.push(r);
        }
    }
    if let Some(best) = points.iter().map(|p| p.1).max_by(f64::total_cmp)
        && let Some(&(batch, rate, p99)) = points.iter().find(|p| p.1 >= 0.9 * best)
    {
        sink.note(format!(
            "recommended batch size for {}: {batch} ({} events/s, end-to-end p99 {:.0} µs): the smallest batch within 10% of the best throughput measured ({:.0} events/s); larger batches add latency for little throughput (batches tried: {:?})",
            backend.name(),
            rate.round(),
            p99,
            best,
            batches
        ));
    }
    Ok(())
}

/// A server backend's scenarios: group throughput by count (1 producer, 1
/// member), the batch sweep, producers and members, and publish alone. Sized so
/// that the whole suite takes about two minutes at the rates these servers reach
/// on loopback (100k–500k events/s), each sample still a second or more.
fn run_server(config: &Config, sink: &mut Sink<'_>, backend: Backend) -> Result<(), Error> {
    let rt = runtime();
    let repeats = config.repeats;
    let mut ceilings = Ceilings::default();
    let counts = config.pick(&[10_000, 100_000, 300_000], &[100_000], &[1_000]);
    for &count in &counts {
        let sc = Scenario::new(backend, count);
        let name = format!("events/throughput/{}/1p1c/{count}", backend.name());
        let (rates, outcomes) = measure(&rt, &name, sc, repeats)?;
        sink.push(throughput_record(name, sc, rates));
        if count == 100_000 || counts.len() == 1 {
            for r in latency_records(&format!("events/latency/{}", backend.name()), sc, &outcomes) {
                sink.push(r);
            }
        }
    }
    let batches = config.pick(&[100, 1_000, 10_000], &[1_000, 10_000], &[100]);
    batch_sweep(&rt, config, sink, backend, &batches, &mut ceilings)?;
    let count = config.pick(&[200_000], &[200_000], &[1_000])[0];
    for p in config.pick(&[1, 2, 4], &[1, 4], &[1, 2]) {
        let sc = Scenario {
            producers: p,
            consumers: p,
            ..Scenario::new(backend, count)
        };
        let name = format!("events/producers/{}/{p}p{p}c", backend.name());
        let (rates, _) = measure(&rt, &name, sc, repeats)?;
        sink.push(throughput_record(name, sc, rates));
    }
    // Publish alone: producers only, no group; with the default dedup window and
    // without one.
    for (batch, dedup) in config.pick(
        &[
            (1_000, true),
            (10_000, true),
            (1_000, false),
            (10_000, false),
        ],
        &[
            (1_000, true),
            (10_000, true),
            (1_000, false),
            (10_000, false),
        ],
        &[(100, true), (100, false)],
    ) {
        for p in config.pick(&[1, 4, 8], &[8], &[2]) {
            let sc = Scenario {
                producers: p,
                consumers: 0,
                batch,
                dedup,
                ..Scenario::new(backend, count)
            };
            let name = format!(
                "events/publish/{}/{p}p/batch{batch}{}",
                backend.name(),
                if dedup { "" } else { "/nodedup" }
            );
            let (rates, outcomes) = measure(&rt, &name, sc, repeats)?;
            let ceiling = ceilings.server_publish(&rt, repeats, sink, sc)?;
            sink.push(within(
                Record::new(
                    name.clone(),
                    "events published per second: P producers publish COUNT events in batches, no consumer; from the first publish to the last acknowledged publish, on a fresh log",
                    "events/s",
                    true,
                    rates,
                )
                .param("backend", backend.name())
                .param("producers", p)
                .param("batch", batch)
                .param("count", count)
                .param("payload_bytes", sc.payload)
                .param("dedup", dedup),
                ceiling,
            ));
            for r in latency_records(&name, sc, &outcomes)
                .into_iter()
                .filter(|r| r.name.contains("/publish/p"))
            {
                sink.push(r);
            }
        }
    }
    Ok(())
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_payloads_all_arrive() {
        let rt = runtime();
        let sc = Scenario {
            payload: 10_000,
            ..Scenario::new(Backend::Memory, 20_000)
        };
        let o = rt.block_on(sample(sc)).unwrap();
        assert_eq!(o.end_to_end_us.len(), 20_000);
    }
}
