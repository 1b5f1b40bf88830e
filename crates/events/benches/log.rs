//! Criterion benchmarks of the event log.
//!
//! Each measures one publish → poll → ack cycle of a 1,000-event batch (100-byte
//! payloads, 16 distinct keys, 8 partitions) through the public `EventLog` API, on a
//! current-thread tokio runtime. Building the batch is excluded: events are cloned from
//! a prepared batch (reference-count bumps), as a producer that already holds its
//! events would pass them. Dedup is on, as by default. For multi-producer figures and
//! the disk fsync policies with concurrency, run `examples/throughput.rs`.

#![allow(
    clippy::unwrap_used,
    reason = "a benchmark that cannot set up has nothing to measure"
)]

use std::time::Duration;

use baton_events::{
    DiskLog, DiskOptions, Event, EventLog, Fsync, MemoryLog, Options, Retention, TopicOptions,
};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 1000;

fn batch() -> Vec<Event> {
    (0..BATCH)
        .map(|i| Event::new("bench.event", format!("key-{}", i % 16), vec![b'x'; 100]))
        .collect()
}

fn options() -> Options {
    Options {
        topic_defaults: TopicOptions {
            retention: Retention {
                max_events: Some(1_000_000),
                ..Retention::default()
            },
            ..TopicOptions::default()
        },
        ..Options::default()
    }
}

/// Fresh ids per publish, so dedup does not drop the repeats.
fn fresh(template: &[Event]) -> Vec<Event> {
    template
        .iter()
        .map(|e| e.clone().with_id(baton_events::EventId::generate()))
        .collect()
}

async fn cycle<L: EventLog>(log: &L, template: &[Event]) {
    log.publish("bench", fresh(template)).await.unwrap();
    let mut got = 0;
    while got < BATCH {
        let p = log
            .poll("bench", "g", "m", BATCH, Duration::ZERO)
            .await
            .unwrap();
        got += p.len();
        log.ack("bench", "g", &p.offsets()).await.unwrap();
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let template = batch();
    let mut g = c.benchmark_group("publish_poll_ack");
    g.throughput(Throughput::Elements(BATCH as u64));

    let mem = MemoryLog::new(options()).unwrap();
    g.bench_function("memory", |b| b.iter(|| rt.block_on(cycle(&mem, &template))));

    for (name, fsync) in [
        ("disk_always", Fsync::Always),
        (
            "disk_interval_10ms",
            Fsync::Interval(Duration::from_millis(10)),
        ),
        ("disk_never", Fsync::Never),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let log = rt
            .block_on(DiskLog::open(
                dir.path(),
                DiskOptions {
                    log: options(),
                    fsync,
                    ..DiskOptions::default()
                },
            ))
            .unwrap();
        g.bench_function(name, |b| b.iter(|| rt.block_on(cycle(&log, &template))));
        rt.block_on(log.close()).unwrap();
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
