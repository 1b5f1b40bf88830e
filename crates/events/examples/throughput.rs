//! Prints events/s through publish → poll → ack for each backend and fsync policy.
//!
//! ```text
//! cargo run --release -p baton-events --example throughput -- [SECONDS] [FILTER]
//! ```
//!
//! Each scenario runs producers and consumer-group members as tokio tasks on a
//! runtime with two worker threads, for SECONDS (default 3) after a short warm-up.
//! Events are 100-byte payloads with one of 64 keys, published in batches of 1,000 to
//! a topic of 8 partitions; each producer makes its events as a real one would (a fresh
//! id per event, payload bytes shared). The figure is events acknowledged per second
//! by the group. Then, for the memory backend and disk with `fsync=always`, publish
//! latency is measured with producers paced at 50% of the measured peak (p50/p99).
//! FILTER, if given, runs only scenarios whose name contains it.

#![allow(clippy::unwrap_used, reason = "an example stops at the first failure")]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use baton_events::{
    DiskLog, DiskOptions, Event, EventId, EventLog, Fsync, MemoryLog, Options, Retention,
    TopicOptions,
};
use bytes::Bytes;

const BATCH: usize = 1000;

fn options() -> Options {
    Options {
        topic_defaults: TopicOptions {
            partitions: 8,
            // Bounded memory under sustained load.
            retention: Retention {
                max_events: Some(2_000_000),
                ..Retention::default()
            },
            // `BATON_DEDUP_IDS=0` measures the log without duplicate suppression.
            dedup: baton_events::Dedup {
                max_ids: std::env::var("BATON_DEDUP_IDS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(baton_events::Dedup::default().max_ids),
                ..baton_events::Dedup::default()
            },
            ..TopicOptions::default()
        },
        ..Options::default()
    }
}

struct Template {
    keys: Vec<Bytes>,
    payload: Bytes,
    kind: Arc<str>,
}

impl Template {
    fn new() -> Self {
        Template {
            keys: (0..64)
                .map(|k| Bytes::from(format!("key-{k:03}")))
                .collect(),
            payload: Bytes::from(vec![b'x'; 100]),
            kind: "bench.event".into(),
        }
    }

    fn batch(&self, seq: &mut u64) -> Vec<Event> {
        (0..BATCH)
            .map(|_| {
                *seq += 1;
                Event {
                    id: EventId::generate(),
                    key: self.keys[(*seq % 64) as usize].clone(),
                    kind: self.kind.clone(),
                    timestamp_ms: 0,
                    headers: Vec::new(),
                    payload: self.payload.clone(),
                }
            })
            .collect()
    }
}

/// Runs `producers` and `members` for `secs`; returns acknowledged events/s.
async fn run<L: EventLog + Clone>(log: L, producers: usize, members: usize, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let template = Arc::new(Template::new());
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let (log, stop, template) = (log.clone(), stop.clone(), template.clone());
        tasks.push(tokio::spawn(async move {
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) {
                log.publish("bench", template.batch(&mut seq))
                    .await
                    .unwrap();
            }
        }));
    }
    for m in 0..members {
        let (log, stop, acked, measuring) =
            (log.clone(), stop.clone(), acked.clone(), measuring.clone());
        tasks.push(tokio::spawn(async move {
            let member = format!("m{m}");
            while !stop.load(Ordering::Relaxed) {
                let p = log
                    .poll("bench", "g", &member, BATCH, Duration::from_millis(50))
                    .await
                    .unwrap();
                let n = log.ack("bench", "g", &p.offsets()).await.unwrap();
                if measuring.load(Ordering::Relaxed) {
                    acked.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let n = acked.load(Ordering::Relaxed);
    let rate = n as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    log.close().await.unwrap();
    rate
}

/// Publish latency with one producer paced at `rate` events/s and one consumer.
async fn latency<L: EventLog + Clone>(log: L, rate: f64, secs: f64) -> (f64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (log, stop) = (log.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let p = log
                    .poll("bench", "g", "m", BATCH, Duration::from_millis(50))
                    .await
                    .unwrap();
                log.ack("bench", "g", &p.offsets()).await.unwrap();
            }
        })
    };
    let template = Template::new();
    let mut hist = hdrhistogram::Histogram::<u64>::new(3).unwrap();
    let every = Duration::from_secs_f64(BATCH as f64 / rate);
    let start = Instant::now();
    let mut next = tokio::time::Instant::now();
    let mut seq = 0;
    while start.elapsed().as_secs_f64() < secs {
        // Open loop: the schedule does not slip when a publish is slow. Latency is the
        // publish call itself (tokio's timer has 1 ms granularity, so timing from the
        // scheduled instant would mostly measure the timer).
        tokio::time::sleep_until(next).await;
        let batch = template.batch(&mut seq);
        let t0 = Instant::now();
        log.publish("bench", batch).await.unwrap();
        hist.record(t0.elapsed().as_micros() as u64).unwrap();
        next += every;
    }
    stop.store(true, Ordering::Relaxed);
    consumer.await.unwrap();
    log.close().await.unwrap();
    (
        hist.value_at_quantile(0.5) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
    )
}

async fn disk(fsync: Fsync) -> (DiskLog, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let log = DiskLog::open(
        dir.path(),
        DiskOptions {
            log: options(),
            fsync,
            ..DiskOptions::default()
        },
    )
    .await
    .unwrap();
    (log, dir)
}

/// Median time to write and fdatasync 150 KB (about one 1,000-event batch) here: the
/// disk's own ceiling for `fsync=always`, to read the figures against.
fn sync_calibration() -> f64 {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let mut f = std::fs::File::create(dir.path().join("calibrate")).unwrap();
    let buf = vec![7u8; 150_000];
    let mut ms: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            f.write_all(&buf).unwrap();
            f.sync_data().unwrap();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

#[tokio::main(worker_threads = 2)]
async fn main() {
    println!(
        "write + fdatasync of 150 KB on this disk: {:.2} ms (median of 20)",
        sync_calibration()
    );
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let filter = args.next().unwrap_or_default();
    let policies = [
        ("always", Fsync::Always),
        ("interval-10ms", Fsync::Interval(Duration::from_millis(10))),
        ("never", Fsync::Never),
    ];
    println!("{:<28} {:>14}", "scenario", "events/s");
    let mut peaks = Vec::new();
    for (p, m) in [(1, 1), (4, 4)] {
        let name = format!("memory {p}P/{m}C");
        if name.contains(&filter) {
            let rate = run(MemoryLog::new(options()).unwrap(), p, m, secs).await;
            println!("{name:<28} {rate:>14.0}");
            peaks.push((name, rate));
        }
        for (policy, fsync) in policies {
            let name = format!("disk {policy} {p}P/{m}C");
            if name.contains(&filter) {
                let (log, _dir) = disk(fsync).await;
                let rate = run(log, p, m, secs).await;
                println!("{name:<28} {rate:>14.0}");
                peaks.push((name, rate));
            }
        }
    }
    println!();
    println!(
        "{:<28} {:>12} {:>10} {:>10}",
        "publish latency @50% peak", "events/s", "p50 ms", "p99 ms"
    );
    for (name, peak) in peaks.iter().filter(|(n, _)| n.contains("1P/1C")) {
        if !(name.starts_with("memory") || name.contains("always")) {
            continue;
        }
        let rate = peak / 2.0;
        let (p50, p99) = if name.starts_with("memory") {
            latency(MemoryLog::new(options()).unwrap(), rate, secs).await
        } else {
            let (log, _dir) = disk(Fsync::Always).await;
            latency(log, rate, secs).await
        };
        println!("{name:<28} {rate:>12.0} {p50:>10.3} {p99:>10.3}");
    }
}
