//! The Redis Streams backend: its conformance factory and what only it does (several
//! processes sharing one log, the key layout, waits on a separate connection).
//!
//! Needs a server: `BATON_TEST_REDIS_URL=redis://127.0.0.1:6379`. Without it the tests
//! say they were skipped, unless `CI` is set, where a missing server is a failure.
//! Each test works under its own key prefix and deletes its keys at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use baton_events::{Error, Event, EventLog, Options, RedisLog, RedisOptions, TopicOptions, redis};

use crate::Factory;

/// The server's URL, or `None` (after saying so) when the tests should skip.
/// Panics in CI, where a missing server is a configuration error.
pub fn url() -> Option<String> {
    baton_events::testing::server_url("BATON_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// A prefix no other test (in this or another process) uses.
fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "baton-test:{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Logs under one fresh prefix; its keys are deleted when the factory is dropped,
/// even if the test failed.
pub struct Redis {
    url: Option<String>,
    prefix: String,
}

impl Redis {
    /// A factory, or one that skips (see [`url`]).
    pub fn new() -> Self {
        Redis {
            url: url(),
            prefix: unique_prefix(),
        }
    }

    /// A factory on the server at `url` (the fault tests' proxy).
    pub fn at(url: String) -> Self {
        Redis {
            url: Some(url),
            prefix: unique_prefix(),
        }
    }

    fn options(&self, log: Options) -> RedisOptions {
        RedisOptions {
            url: self.url.clone().unwrap_or_default(),
            prefix: self.prefix.clone(),
            log,
            ..RedisOptions::default()
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        if self.url.is_none() {
            return;
        }
        let options = self.options(Options::default());
        // Drop cannot wait for async work: a thread with a runtime of its own does it.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let log = RedisLog::open(options).await?;
                log.delete_all_topics().await
            })
        });
        match cleanup.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("could not delete the test's keys: {e}"),
            Err(_) => eprintln!("could not delete the test's keys: the cleanup panicked"),
        }
    }
}

impl Factory for Redis {
    type Log = RedisLog;
    const DURABLE: bool = true;
    const PAUSED_TIME: bool = false;
    const KEEPS_DELIVERY_STATE: bool = true;
    const DEDUP_ACROSS_PARTITIONS: bool = true;

    async fn open(&mut self, options: Options) -> RedisLog {
        RedisLog::open(self.options(options))
            .await
            .expect("open redis log")
    }

    fn available(&self) -> bool {
        self.url.is_some()
    }

    /// A tenth: a 10 s visibility timeout becomes 1 s, so the tightest check of the
    /// suite (nothing claimable 1 s before the timeout) keeps 100 ms of margin.
    fn scale(&self, d: Duration) -> Duration {
        d / 10
    }

    fn slack(&self) -> Duration {
        Duration::from_millis(300)
    }
}

fn topic(partitions: u32, visibility: Duration) -> TopicOptions {
    TopicOptions {
        partitions,
        visibility_timeout: visibility,
        max_deliveries: 3,
        ..TopicOptions::default()
    }
}

fn ev(key: &str, n: u64) -> Event {
    Event::new("test.event", key.to_owned(), n.to_string())
}

fn num(e: &Event) -> u64 {
    std::str::from_utf8(&e.payload).unwrap().parse().unwrap()
}

#[tokio::test]
async fn two_processes_share_topics_groups_and_dedup() {
    let mut f = Redis::new();
    if !f.available() {
        return;
    }
    let a = f.open(Options::default()).await;
    let b = f.open(Options::default()).await;
    a.create_topic("jobs", topic(4, Duration::from_secs(30)))
        .await
        .unwrap();
    // B learns the options from Redis, not from its own defaults (8 partitions).
    assert!(matches!(
        b.create_topic("jobs", TopicOptions::default()).await,
        Err(Error::TopicMismatch { .. })
    ));
    let batch: Vec<Event> = (0..400).map(|i| ev(&format!("k{}", i % 23), i)).collect();
    let offsets = b.publish("jobs", batch.clone()).await.unwrap();
    assert!(offsets.iter().all(|o| o.partition < 4));
    // A retried publish through the other process is recognised.
    let again = a.publish("jobs", batch[..10].to_vec()).await.unwrap();
    assert_eq!(again, offsets[..10]);

    // One member in each process: the group's work is split, nothing twice.
    let mut seen = std::collections::HashMap::new();
    let mut by_member = [0usize; 2];
    for round in 0.. {
        let mut empty = true;
        for (i, (log, member)) in [(&a, "a"), (&b, "b")].into_iter().enumerate() {
            let p = log
                .poll("jobs", "workers", member, 37, Duration::ZERO)
                .await
                .unwrap();
            if !p.is_empty() {
                empty = false;
            }
            for d in p.iter() {
                assert!(
                    seen.insert(num(d.event), member).is_none(),
                    "delivered twice"
                );
                by_member[i] += 1;
            }
            // Each acknowledges through the other process.
            let other = if i == 0 { &b } else { &a };
            assert_eq!(
                other.ack("jobs", "workers", &p.offsets()).await.unwrap(),
                p.len()
            );
        }
        if empty {
            break;
        }
        assert!(round < 100);
    }
    assert_eq!(seen.len(), 400);
    assert!(by_member[0] > 0 && by_member[1] > 0, "{by_member:?}");
    for log in [&a, &b] {
        let groups = log.groups("jobs").await.unwrap();
        assert_eq!(groups.len(), 1);
        let names: Vec<&str> = groups[0].members.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!((groups[0].pending, groups[0].lag), (0, 0));
        let topics = log.topics().await.unwrap();
        assert_eq!(topics.len(), 1);
        assert_eq!(topics[0].partitions.len(), 4);
        assert_eq!(topics[0].events(), 400);
    }
}

#[tokio::test]
async fn a_member_holding_a_partition_keeps_its_keys() {
    let mut f = Redis::new();
    if !f.available() {
        return;
    }
    let a = f.open(Options::default()).await;
    let b = f.open(Options::default()).await;
    a.create_topic("t", topic(1, Duration::from_secs(30)))
        .await
        .unwrap();
    a.publish("t", (0..3).map(|i| ev("k", i)).collect())
        .await
        .unwrap();
    let held = a.poll("t", "g", "a", 2, Duration::ZERO).await.unwrap();
    assert_eq!(held.len(), 2);
    // While a holds unacknowledged events of the partition, b gets none of it.
    assert!(
        b.poll("t", "g", "b", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    a.publish("t", vec![ev("k", 3)]).await.unwrap();
    assert!(
        b.poll("t", "g", "b", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    let rest = a.poll("t", "g", "a", 10, Duration::ZERO).await.unwrap();
    assert_eq!(
        rest.iter().map(|d| num(d.event)).collect::<Vec<_>>(),
        [2, 3]
    );
    a.ack("t", "g", &held.offsets()).await.unwrap();
    a.ack("t", "g", &rest.offsets()).await.unwrap();
    // Released: the next events go to whoever asks.
    b.publish("t", vec![ev("k", 4)]).await.unwrap();
    let got = b.poll("t", "g", "b", 10, Duration::ZERO).await.unwrap();
    assert_eq!(got.iter().map(|d| num(d.event)).collect::<Vec<_>>(), [4]);
}

#[tokio::test]
async fn a_waiting_poll_holds_up_nothing_and_close_ends_it() {
    let mut f = Redis::new();
    if !f.available() {
        return;
    }
    let log = f.open(Options::default()).await;
    log.create_topic("quiet", topic(2, Duration::from_secs(30)))
        .await
        .unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let log = log.clone();
            tokio::spawn(async move {
                log.poll("quiet", "g", &format!("m{i}"), 10, Duration::from_secs(60))
                    .await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Other calls on the same log go through while three polls wait.
    let started = Instant::now();
    for i in 0..20 {
        log.publish("busy", vec![ev("k", i)]).await.unwrap();
    }
    let busy = log.topics().await.unwrap();
    assert_eq!(busy.iter().find(|t| t.name == "busy").unwrap().events(), 20);
    let p = baton_events::key_hash(b"k") % 8;
    assert_eq!(log.read("busy", p as u32, 0, 100).await.unwrap().len(), 20);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Closing wakes them.
    let started = Instant::now();
    log.close().await.unwrap();
    for w in waiters {
        assert!(matches!(w.await.unwrap(), Err(Error::Closed)));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(log.topics().await, Err(Error::Closed)));
}

#[tokio::test]
async fn nack_delay_longer_than_the_visibility_timeout() {
    let mut f = Redis::new();
    if !f.available() {
        return;
    }
    let log = f.open(Options::default()).await;
    let vis = Duration::from_millis(300);
    log.create_topic("t", topic(1, vis)).await.unwrap();
    log.publish("t", vec![ev("k", 1)]).await.unwrap();
    let p = log.poll("t", "g", "a", 10, Duration::ZERO).await.unwrap();
    let nacked_at = Instant::now();
    assert_eq!(
        log.nack("t", "g", &p.offsets(), Duration::from_millis(1200))
            .await
            .unwrap(),
        1
    );
    let pending = log.pending("t", "g", 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let wait = pending[0].claimable_at_ms - pending[0].since_ms;
    assert!((1100..=1300).contains(&wait), "claimable after {wait} ms");
    // Past the visibility timeout, but not the delay: still held.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        log.poll("t", "g", "b", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    // A waiting poll is woken when the delay ends.
    let got = log
        .poll("t", "g", "b", 10, Duration::from_secs(10))
        .await
        .unwrap();
    let waited = nacked_at.elapsed();
    assert_eq!(got.len(), 1);
    assert_eq!(got.iter().next().unwrap().deliveries, 2);
    assert!(
        waited >= Duration::from_millis(1200) && waited < Duration::from_millis(1800),
        "{waited:?}"
    );
}

#[tokio::test]
async fn keys_live_under_the_prefix_and_delete_all_topics_removes_them() {
    let mut f = Redis::new();
    if !f.available() {
        return;
    }
    let log = f.open(Options::default()).await;
    assert_eq!(
        log.stream_key("runs", 3),
        format!("{}:{{runs}}:p3", f.prefix)
    );
    log.publish("runs", vec![ev("k", 1)]).await.unwrap();
    log.poll("runs", "g", "m", 1, Duration::ZERO).await.unwrap();
    // Another prefix on the same server sees nothing of it.
    let other = Redis::new();
    let elsewhere = RedisLog::open(other.options(Options::default()))
        .await
        .unwrap();
    assert!(elsewhere.topics().await.unwrap().is_empty());
    elsewhere.publish("runs", vec![ev("k", 2)]).await.unwrap();
    assert_eq!(log.topics().await.unwrap()[0].events(), 1);
    assert_eq!(log.delete_all_topics().await.unwrap(), 1);
    assert!(log.topics().await.unwrap().is_empty());
    assert!(matches!(
        log.read("runs", 0, 0, 10).await,
        Err(Error::UnknownTopic(_))
    ));
    assert_eq!(elsewhere.topics().await.unwrap()[0].events(), 1);
}

#[tokio::test]
async fn bad_urls_and_prefixes_are_refused() {
    let Some(url) = url() else {
        return;
    };
    let open = |url: &str, prefix: &str| {
        RedisLog::open(RedisOptions {
            url: url.into(),
            prefix: prefix.into(),
            ..RedisOptions::default()
        })
    };
    assert!(matches!(
        open("http://127.0.0.1:6379", "p").await,
        Err(Error::Redis(redis::Error::Url { .. }))
    ));
    assert!(matches!(
        open("redis+cluster://", "p").await,
        Err(Error::Redis(redis::Error::Url { .. }))
    ));
    assert!(matches!(
        open(&url, "a{b}").await,
        Err(Error::Redis(redis::Error::Prefix(_)))
    ));
    let err = open("redis://user:hunter2@127.0.0.1:1", "p")
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, Error::Redis(redis::Error::Connect { .. })),
        "{err}"
    );
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[tokio::test]
async fn dedup_window_larger_than_a_small_hash() {
    let mut f = Redis::new();
    if !f.available() {
        return;
    }
    let log = f.open(Options::default()).await;
    let mut opts = topic(1, Duration::from_secs(30));
    opts.dedup = baton_events::Dedup {
        max_ids: 4000,
        max_age: Duration::from_secs(600),
    };
    log.create_topic("t", opts).await.unwrap();
    let first: Vec<Event> = (0..1500).map(|i| ev("k", i)).collect();
    let offsets = log.publish("t", first.clone()).await.unwrap();
    assert_eq!(offsets.last().unwrap().offset, 1499);
    // All of it again, with new events mixed in and one id twice: only the new ones
    // are stored, and the window turns over (2,000 ids per generation) on the way.
    let mut mixed = first.clone();
    mixed.extend((1500..2100).map(|i| ev("k", i)));
    mixed.push(first[7].clone());
    let again = log.publish("t", mixed).await.unwrap();
    assert_eq!(again[..1500], offsets[..]);
    assert_eq!(again[1500].offset, 1500);
    assert_eq!(again[2099].offset, 2099);
    assert_eq!(again[2100], offsets[7]);
    // The first ids are in the previous generation now, still remembered.
    assert_eq!(
        log.publish("t", first[..5].to_vec()).await.unwrap(),
        offsets[..5]
    );
    assert_eq!(log.topics().await.unwrap()[0].events(), 2100);
}

#[tokio::test]
async fn extreme_counts_and_durations_are_handled() {
    let mut f = Redis::new();
    if !f.available() {
        return;
    }
    let log = f.open(Options::default()).await;
    let mut opts = topic(1, Duration::MAX);
    opts.retention.max_age = Some(Duration::MAX);
    opts.dedup.max_age = Duration::MAX;
    log.create_topic("t", opts).await.unwrap();
    log.publish("t", (0..3).map(|i| ev("k", i)).collect())
        .await
        .unwrap();
    assert_eq!(log.read("t", 0, 0, usize::MAX).await.unwrap().len(), 3);
    assert!(
        log.read("t", 0, u64::MAX, usize::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    let p = log
        .poll("t", "g", "m", usize::MAX, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(p.len(), 3);
    assert_eq!(
        log.nack("t", "g", &p.offsets()[..1], Duration::MAX)
            .await
            .unwrap(),
        1
    );
    let pending = log.pending("t", "g", usize::MAX).await.unwrap();
    assert_eq!(pending.len(), 3);
    assert!(pending.iter().all(|e| e.claimable_at_ms > e.since_ms));
    assert_eq!(
        log.offsets_at("t", u64::MAX).await.unwrap(),
        [baton_events::Offset::new(0, 3)]
    );
    assert_eq!(log.ack("t", "g", &p.offsets()).await.unwrap(), 3);
}

#[tokio::test]
async fn publishes_without_dedup_are_contiguous_under_concurrency() {
    let mut f = Redis::new();
    if !f.available() {
        return;
    }
    let log = f.open(Options::default()).await;
    let mut opts = topic(4, Duration::from_secs(30));
    opts.dedup.max_ids = 0;
    opts.retention = baton_events::Retention {
        max_events: Some(20_000),
        max_bytes: None,
        max_age: None,
    };
    log.create_topic("t", opts).await.unwrap();
    // Large shares (the transaction path) and small ones (the script path), at once.
    let tasks: Vec<_> = (0..4u64)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                for b in 0..10u64 {
                    let size = if b % 2 == 0 { 800 } else { 7 };
                    let batch: Vec<Event> = (0..size)
                        .map(|i| ev(&format!("k{}", i % 13), w * 1_000_000 + b * 1_000 + i))
                        .collect();
                    let offsets = log.publish("t", batch.clone()).await.unwrap();
                    got.extend(batch.into_iter().zip(offsets));
                }
                got
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    assert_eq!(all.len(), 4 * 5 * (800 + 7));
    // Per partition, the offsets are exactly 0..n, and each holds its event.
    let mut by_part: std::collections::BTreeMap<u32, Vec<(u64, u64)>> = Default::default();
    for (e, o) in &all {
        by_part
            .entry(o.partition)
            .or_default()
            .push((o.offset, num(e)));
    }
    for (p, mut list) in by_part {
        list.sort();
        let offsets: Vec<u64> = list.iter().map(|x| x.0).collect();
        assert_eq!(
            offsets,
            (0..list.len() as u64).collect::<Vec<_>>(),
            "partition {p}"
        );
        let records = log.read("t", p, 0, 100_000).await.unwrap();
        assert_eq!(records.len(), list.len());
        for (r, (o, n)) in records.iter().zip(&list) {
            assert_eq!((r.offset.offset, num(&r.event)), (*o, *n));
            assert!(r.appended_ms > 0);
        }
    }
    // Retention applies on this path too: 20,000 per topic is 5,000 per partition.
    log.publish("t", (0..30_000).map(|i| ev("same", i)).collect())
        .await
        .unwrap();
    let p = baton_events::key_hash(b"same") % 4;
    let info = log.topics().await.unwrap();
    let part = info[0].partitions[p as usize];
    assert_eq!(part.end - part.start, 5_000, "{part:?}");
}
