//! The machine's own limits: bare versions of the suites' workloads, measured
//! in the same run, so that each figure can be read as a share of what the
//! machine itself reaches (`Record::within`). A ceiling does the least work the
//! workload cannot do without and nothing of Baton's:
//!
//! - planning: tokenising the workflow's JSON (serde_json into `IgnoredAny`),
//!   building nothing;
//! - memory log: the same batches of events, built the same way, handed from a
//!   producer task to a consumer task through a bounded channel, the consumer
//!   taking every batch waiting at once and reading each payload's first bytes
//!   as the benchmark's consumer does (so it includes building and dropping the
//!   events: their ids and refcounted keys, kinds and payloads);
//! - disk log: writing the log's batch record for each batch (its size from the
//!   log's own codec) to a file in the same temporary directory, with an
//!   `fdatasync` after each when the log syncs on every publish;
//! - Redis: the same batches as pipelines of raw `XADD` (one pipeline per
//!   batch, spread over 8 streams as the topic's 8 partitions are);
//! - NATS: the same batches as raw JetStream publishes to 8 streams, every
//!   publish acknowledged by the server.
//!
//! The in-process ceilings are for one producer and one consumer; the server
//! ceilings are for publishing alone, with as many producers as the benchmark.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use baton_events::Event;

use super::batches::Batches;
use crate::Error;

/// Seconds to tokenise `bytes` as JSON, building nothing: the floor of any
/// planner that must read the file.
pub(crate) fn tokenise(bytes: &[u8]) -> f64 {
    let started = Instant::now();
    let value = serde_json::from_slice::<serde::de::IgnoredAny>(bytes);
    std::hint::black_box(value).ok();
    started.elapsed().as_secs_f64()
}

/// Seconds to hand `count` events, in batches of `batch`, from one task to
/// another through a bounded channel (room for about 16,000 events), the reader
/// taking every batch waiting at once, as a poll takes every event waiting.
pub(crate) async fn channel(count: usize, batch: usize, payload: usize) -> Result<f64, String> {
    let room = (16_000 / batch.max(1)).max(16);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Event>>(room);
    let started = Instant::now();
    let producer = tokio::spawn(async move {
        let mut batches = Batches::new(payload);
        let mut sent = 0;
        while sent < count {
            let n = batch.min(count - sent);
            if tx.send(batches.next(n, started)).await.is_err() {
                break;
            }
            sent += n;
        }
    });
    let mut got = 0;
    let mut sum = 0u64;
    let mut taken = Vec::with_capacity(room);
    while rx.recv_many(&mut taken, room).await > 0 {
        for events in taken.drain(..) {
            for e in &events {
                if let Some(stamp) = e.payload.get(..8) {
                    sum = sum.wrapping_add(u64::from_le_bytes(stamp.try_into().expect("8 bytes")));
                }
            }
            got += events.len();
        }
    }
    std::hint::black_box(sum);
    producer.await.map_err(|e| e.to_string())?;
    if got != count {
        return Err(format!("the channel moved {got} of {count} events"));
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Seconds to write `count` events, in batches of `batch`, as the disk log's
/// batch records to a fresh file in `dir`, with an `fdatasync` after each
/// record when `sync`.
pub(crate) fn disk(
    dir: &Path,
    count: usize,
    batch: usize,
    payload: usize,
    sync: bool,
) -> Result<f64, String> {
    let record = baton_events::disk::batch_record_bytes(
        Batches::new(payload).next(batch.min(count.max(1)), Instant::now()),
    );
    let bytes = vec![0x5a_u8; record];
    let path = dir.join("ceiling.log");
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    let mut file = std::fs::File::create(&path).map_err(io)?;
    let started = Instant::now();
    for _ in 0..count.div_ceil(batch.max(1)) {
        file.write_all(&bytes).map_err(io)?;
        if sync {
            file.sync_data().map_err(io)?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).map_err(io)?;
    Ok(seconds)
}

/// The streams a server ceiling writes to: as many as the topic's partitions.
#[cfg(any(feature = "redis", feature = "nats"))]
const STREAMS: usize = 8;

/// Publishes one batch to a server, with no client library of Baton's between.
#[cfg(any(feature = "redis", feature = "nats"))]
type Publish = std::sync::Arc<
    dyn Fn(Vec<Event>) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>>
        + Send
        + Sync,
>;

/// Seconds for `producers` tasks to publish `count` events in all, in batches
/// of `batch` built by [`Batches`], each batch through `publish`; the first
/// error once every task has ended.
#[cfg(any(feature = "redis", feature = "nats"))]
async fn produce(
    producers: usize,
    count: usize,
    batch: usize,
    payload: usize,
    publish: Publish,
) -> Result<f64, String> {
    let started = Instant::now();
    let per = count.div_ceil(producers.max(1));
    let mut tasks = Vec::new();
    for p in 0..producers.max(1) {
        let publish = publish.clone();
        let mine = per.min(count.saturating_sub(p * per));
        tasks.push(tokio::spawn(async move {
            let mut batches = Batches::new(payload);
            let mut sent = 0;
            while sent < mine {
                let n = batch.min(mine - sent);
                publish(batches.next(n, started)).await?;
                sent += n;
            }
            Ok::<_, String>(())
        }));
    }
    let mut outcome = Ok(());
    for t in tasks {
        if let Err(e) = t.await.map_err(|e| e.to_string()).and_then(|r| r) {
            outcome = Err(e);
        }
    }
    outcome.map(|()| started.elapsed().as_secs_f64())
}

/// Seconds for `producers` tasks to publish `count` events in all, in batches
/// of `batch`, as pipelines of raw `XADD` over [`STREAMS`] streams.
#[cfg(feature = "redis")]
pub(crate) async fn redis_xadd(
    url: &str,
    producers: usize,
    count: usize,
    batch: usize,
    payload: usize,
) -> Result<f64, String> {
    let client = redis::Client::open(url).map_err(|e| e.to_string())?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| e.to_string())?;
    let prefix = format!("baton-bench-ceiling-{}", std::process::id());
    let keys: Vec<String> = (0..STREAMS).map(|s| format!("{prefix}:{s}")).collect();
    let publish: Publish = {
        let (conn, keys) = (conn.clone(), keys.clone());
        std::sync::Arc::new(move |events: Vec<Event>| {
            let mut pipe = redis::pipe();
            for (i, e) in events.iter().enumerate() {
                pipe.cmd("XADD")
                    .arg(&keys[i % STREAMS])
                    .arg("*")
                    .arg("e")
                    .arg(e.payload.as_ref())
                    .ignore();
            }
            let mut conn = conn.clone();
            Box::pin(async move {
                pipe.query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    };
    let seconds = produce(producers, count, batch, payload, publish).await;
    redis::cmd("DEL")
        .arg(&keys)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    seconds
}

/// Seconds for `producers` tasks to publish `count` events in all, in batches
/// of `batch`, to [`STREAMS`] JetStream streams (file storage), awaiting the
/// server's acknowledgement of every publish of a batch before the next.
#[cfg(feature = "nats")]
pub(crate) async fn nats_publish(
    url: &str,
    producers: usize,
    count: usize,
    batch: usize,
    payload: usize,
) -> Result<f64, String> {
    use async_nats::jetstream;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let client = async_nats::connect(url).await.map_err(|e| e.to_string())?;
    // Every producer's whole batch in flight at once (the client's default
    // bound, 5,000 acknowledgements, would block 8 producers mid-batch).
    let js = jetstream::ContextBuilder::new()
        .max_ack_inflight(producers.max(1) * batch.max(1))
        .build(client);
    let run = format!(
        "{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut subjects = Vec::new();
    for s in 0..STREAMS {
        let subject = format!("baton-bench-ceiling.{run}.{s}");
        js.create_stream(jetstream::stream::Config {
            name: format!("BATON_BENCH_CEILING_{run}_{s}"),
            subjects: vec![subject.clone()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
        subjects.push(subject);
    }
    let publish: Publish = {
        let (js, subjects) = (js.clone(), subjects.clone());
        std::sync::Arc::new(move |events: Vec<Event>| {
            let (js, subjects) = (js.clone(), subjects.clone());
            Box::pin(async move {
                let mut acks = Vec::with_capacity(events.len());
                for (i, e) in events.into_iter().enumerate() {
                    let ack = js
                        .publish(subjects[i % STREAMS].clone(), e.payload)
                        .await
                        .map_err(|e| e.to_string())?;
                    acks.push(ack);
                }
                for ack in acks {
                    ack.await.map_err(|e| e.to_string())?;
                }
                Ok(())
            })
        })
    };
    let seconds = produce(producers, count, batch, payload, publish).await;
    for s in 0..STREAMS {
        js.delete_stream(format!("BATON_BENCH_CEILING_{run}_{s}"))
            .await
            .map_err(|e| e.to_string())?;
    }
    seconds
}

/// `count` events over `seconds`, as a rate; a failure names the ceiling.
pub(crate) fn rate(name: &str, count: usize, seconds: Result<f64, String>) -> Result<f64, Error> {
    seconds
        .map(|s| count as f64 / s)
        .map_err(|message| Error::Failed {
            benchmark: name.to_string(),
            message,
        })
}
