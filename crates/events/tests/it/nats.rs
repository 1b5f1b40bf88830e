//! The NATS JetStream backend against a real server: the conformance suite's factory
//! and the behaviour only this backend has (advisory-driven dead letters, dedup across
//! processes, several processes in one group, options shared through the server).
//!
//! The server's URL comes from `BATON_TEST_NATS_URL` (e.g. `nats://127.0.0.1:4222`).
//! Without it the tests say they were skipped and pass, unless `CI` is set. Each test
//! uses its own stream prefix and deletes its streams at the end, so tests can run in
//! parallel on one server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use baton_events::{
    Error, Event, EventLog, NatsLog, NatsOptions, Offset, Options, TopicOptions, dead_letter_topic,
};

use crate::Factory;

const URL_VAR: &str = "BATON_TEST_NATS_URL";

/// The server's URL, or `None` (with a note on stderr) when the tests should skip.
/// Panics in CI, where a missing server is a configuration error.
pub fn server_url() -> Option<String> {
    baton_events::testing::server_url(URL_VAR, "nats://127.0.0.1:4222")
}

/// A stream prefix no other test (in this or another process) uses.
pub fn unique_prefix() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    format!(
        "bt-{:x}-{:x}-{}",
        std::process::id(),
        nanos & 0xffff_ffff,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// One prefix on the test server per test; its streams are deleted on drop.
pub struct Nats {
    url: Option<String>,
    prefix: String,
}

impl Nats {
    /// A factory with a fresh prefix.
    pub fn new() -> Self {
        Nats {
            url: std::env::var(URL_VAR).ok().filter(|u| !u.is_empty()),
            prefix: unique_prefix(),
        }
    }

    /// A factory on the server at `url` (the fault tests' proxy).
    pub fn at(url: String) -> Self {
        Nats {
            url: Some(url),
            prefix: unique_prefix(),
        }
    }

    fn options(&self, log: Options) -> NatsOptions {
        NatsOptions {
            url: self.url.clone().unwrap_or_default(),
            prefix: self.prefix.clone(),
            log,
            recheck_interval: Duration::from_millis(200),
            ..NatsOptions::default()
        }
    }
}

impl Factory for Nats {
    type Log = NatsLog;
    const DURABLE: bool = true;
    const PAUSED_TIME: bool = false;
    const KEEPS_DELIVERY_STATE: bool = true;
    const DEDUP_BY_COUNT: bool = false;

    async fn open(&mut self, options: Options) -> NatsLog {
        NatsLog::open(self.options(options))
            .await
            .expect("open NATS log")
    }

    fn available(&self) -> bool {
        self.url.is_some() || server_url().is_some()
    }

    fn scale(&self, d: Duration) -> Duration {
        d / 20
    }

    fn slack(&self) -> Duration {
        Duration::from_millis(150)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if self.url.is_none() {
            return;
        }
        let options = self.options(Options::default());
        // Drop cannot await, and the test's runtime may be the current thread: clean up
        // on a thread with a runtime of its own.
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let log = NatsLog::open(options).await?;
                log.delete_all_topics().await
            })
        });
        match cleanup.join() {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => eprintln!("could not delete the test's streams: {e}"),
            Err(_) => eprintln!("the cleanup of the test's streams panicked"),
        }
    }
}

fn topic(partitions: u32, visibility_ms: u64, max_deliveries: u32) -> TopicOptions {
    TopicOptions {
        partitions,
        visibility_timeout: Duration::from_millis(visibility_ms),
        max_deliveries,
        ..TopicOptions::default()
    }
}

fn ev(key: &str, n: u64) -> Event {
    Event::new("test.event", key.to_owned(), n.to_string())
}

fn num(e: &Event) -> u64 {
    std::str::from_utf8(&e.payload).unwrap().parse().unwrap()
}

/// A poll that waits up to `wait` for at least one event.
async fn poll_until(log: &NatsLog, topic: &str, group: &str, wait: Duration) -> Vec<Event> {
    let p = log.poll(topic, group, "m", 100, wait).await.unwrap();
    p.iter().map(|d| d.event.clone()).collect()
}

#[tokio::test]
async fn advisory_dead_letters_events_another_process_delivered() {
    let mut f = Nats::new();
    if !f.available() {
        return;
    }
    let a = f.open(Options::default()).await;
    let b = f.open(Options::default()).await;
    a.create_topic("t", topic(1, 300, 2)).await.unwrap();
    let [o] = a.publish("t", vec![ev("poison", 7)]).await.unwrap()[..] else {
        panic!("one offset")
    };
    // Process a receives it twice and never acknowledges, then goes away.
    for n in 1..=2 {
        let p = a
            .poll("t", "g", "a", 10, Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(p.iter().map(|d| d.deliveries).collect::<Vec<_>>(), [n]);
    }
    a.close().await.unwrap();
    // Process b has no record of it: only the server's advisory can dead-letter it,
    // which the server sends when b's poll would deliver it a third time.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(
        b.poll("t", "g", "b", 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    let dlq = dead_letter_topic("t");
    let dead = poll_until(&b, &dlq, "ops", Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let e = &dead[0];
    assert_eq!(num(e), 7);
    assert_eq!(e.header("dlq.topic").unwrap(), "t");
    assert_eq!(e.header("dlq.group").unwrap(), "g");
    assert_eq!(e.header("dlq.offset").unwrap(), o.to_string().as_bytes());
    assert_eq!(e.header("dlq.deliveries").unwrap(), "2");
    // It is not delivered again, and the group's committed offset moved past it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        b.poll("t", "g", "b", 10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    let g = &b.groups("t").await.unwrap()[0];
    assert_eq!(g.committed, vec![Offset::new(0, 1)]);
    assert_eq!((g.pending, g.lag), (0, 0));
    // One dead letter, however many processes saw the advisory.
    let info = b.topics().await.unwrap();
    let dlq_info = info.iter().find(|t| t.name == dlq).unwrap();
    assert_eq!(dlq_info.events(), 1);
}

#[tokio::test]
async fn duplicate_publish_returns_the_original_offset_across_processes() {
    let mut f = Nats::new();
    if !f.available() {
        return;
    }
    let a = f.open(Options::default()).await;
    let b = f.open(Options::default()).await;
    a.create_topic("t", topic(4, 30_000, 3)).await.unwrap();
    let batch: Vec<Event> = (0..50).map(|i| ev(&format!("k{i}"), i)).collect();
    let first = a.publish("t", batch.clone()).await.unwrap();
    // The same events retried by another process, mixed with new ones.
    let mut retry = vec![ev("new-1", 100)];
    retry.extend(batch.iter().cloned());
    retry.push(ev("new-2", 101));
    let again = b.publish("t", retry).await.unwrap();
    assert_eq!(&again[1..51], &first[..]);
    assert!(!first.contains(&again[0]) && !first.contains(&again[51]));
    let stored: u64 = a.topics().await.unwrap()[0].events();
    assert_eq!(stored, 52);
}

#[tokio::test]
async fn two_processes_share_one_group() {
    let mut f = Nats::new();
    if !f.available() {
        return;
    }
    let a = f.open(Options::default()).await;
    let b = f.open(Options::default()).await;
    a.create_topic("t", topic(2, 500, 5)).await.unwrap();
    a.publish(
        "t",
        (0..100).map(|i| ev(&format!("k{}", i % 9), i)).collect(),
    )
    .await
    .unwrap();
    let pa = a.poll("t", "g", "a", 30, Duration::ZERO).await.unwrap();
    let pb = b.poll("t", "g", "b", 1000, Duration::ZERO).await.unwrap();
    assert_eq!(pa.len(), 30);
    assert_eq!(pb.len(), 70, "each event goes to one process");
    let mut all: Vec<u64> = pa.iter().chain(pb.iter()).map(|d| num(d.event)).collect();
    all.sort();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    // Process b acknowledges a's deliveries too: the server applies them, although b
    // cannot count them.
    assert_eq!(b.ack("t", "g", &pb.offsets()).await.unwrap(), 70);
    assert_eq!(b.ack("t", "g", &pa.offsets()).await.unwrap(), 0);
    let g = &a.groups("t").await.unwrap()[0];
    assert_eq!((g.pending, g.lag), (0, 0));
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        a.poll("t", "g", "a", 1000, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "acknowledged in another process, not redelivered"
    );
    // a's stale record of its deliveries is dropped once the group has moved past them.
    assert!(a.pending("t", "g", 100).await.unwrap().is_empty());
}

/// A poll that stops waiting for a pull request's answer while the server has
/// already delivered to it (a busy machine): the late delivery is handed back to the
/// server, which gives it again at once (not after the visibility timeout), and the
/// events after it on that partition do not overtake it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_that_arrives_after_its_poll_comes_back_at_once_and_first() {
    use baton_events::testing::proxy::{Proxy, upstream};
    let Some(url) = server_url() else {
        return;
    };
    let proxy = Proxy::start(upstream(&url)).await;
    let mut f = Nats::at(proxy.url(&url));
    let log = f.open(Options::default()).await;
    // A visibility timeout far beyond the test's deadline: only the hand-back can
    // bring event 0 back in time.
    log.create_topic("t", topic(1, 60_000, 5)).await.unwrap();
    log.publish("t", (0..5).map(|i| ev("k", i)).collect())
        .await
        .unwrap();
    // The group exists before the fault, so the poll's only request is the pull.
    assert!(
        log.poll("t", "g", "m", 0, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    proxy.hold_replies();
    let poll = tokio::spawn({
        let log = log.clone();
        async move { log.poll("t", "g", "m", 1, Duration::ZERO).await }
    });
    // Past the poll's answer timeout (200 ms after the request's 20 ms expiry).
    tokio::time::sleep(Duration::from_millis(500)).await;
    proxy.release_replies();
    let first = poll.await.unwrap().unwrap();
    assert!(first.is_empty(), "its answer came too late to be taken");
    // Event 0 reached the process after its poll had returned: it is handed back and
    // comes again before anything after it.
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < 5 && tokio::time::Instant::now() < deadline {
        let p = log
            .poll("t", "g", "m", 10, Duration::from_millis(500))
            .await
            .unwrap();
        got.extend(p.iter().map(|d| (num(d.event), d.deliveries)));
        log.ack("t", "g", &p.offsets()).await.unwrap();
    }
    assert_eq!(got, [(0, 2), (1, 1), (2, 1), (3, 1), (4, 1)]);
}

#[tokio::test]
async fn topic_options_live_on_the_server() {
    let mut f = Nats::new();
    if !f.available() {
        return;
    }
    let a = f.open(Options::default()).await;
    let b = f.open(Options::default()).await;
    a.create_topic("runs.events", topic(3, 1000, 4))
        .await
        .unwrap();
    assert!(matches!(
        b.create_topic("runs.events", topic(4, 1000, 4)).await,
        Err(Error::TopicMismatch { .. })
    ));
    b.create_topic("runs.events", topic(3, 1000, 4))
        .await
        .unwrap();
    // A publish from a process that never created it uses the stored partition count.
    let offsets = b
        .publish(
            "runs.events",
            (0..30).map(|i| ev(&format!("k{i}"), i)).collect(),
        )
        .await
        .unwrap();
    assert!(offsets.iter().all(|o| o.partition < 3));
    let topics = b.topics().await.unwrap();
    assert_eq!(topics.len(), 1);
    assert_eq!(topics[0].name, "runs.events");
    assert_eq!(topics[0].partitions.len(), 3);
    // Another prefix on the same server sees none of it.
    let other = Nats::new();
    let c = NatsLog::open(other.options(Options::default()))
        .await
        .unwrap();
    assert!(c.topics().await.unwrap().is_empty());
    assert!(matches!(
        c.read("runs.events", 0, 0, 1).await,
        Err(Error::UnknownTopic(_))
    ));
    assert!(a.delete_topic("runs.events").await.unwrap());
    assert!(b.topics().await.unwrap().is_empty());
}

#[tokio::test]
async fn bad_urls_and_prefixes_are_clear_errors() {
    let err = NatsLog::open(NatsOptions {
        url: "nats://127.0.0.1:1".into(),
        ..NatsOptions::default()
    })
    .await
    .err()
    .expect("nothing listens on port 1");
    assert!(err.to_string().contains("cannot connect to NATS"), "{err}");
    for prefix in ["", "a.b", "a_b", "a b", &"x".repeat(33)] {
        let err = NatsLog::open(NatsOptions {
            prefix: prefix.to_owned(),
            ..NatsOptions::default()
        })
        .await
        .err()
        .expect("invalid prefix");
        assert!(err.to_string().contains("invalid NATS prefix"), "{err}");
    }
}
