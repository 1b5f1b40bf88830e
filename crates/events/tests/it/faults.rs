//! Fault injection on the real servers: the log reaches its server (Redis,
//! NATS) through a proxy on loopback ([`baton_events::testing::proxy`]) whose
//! connections are all cut, again and again, or which stops answering for
//! seconds at a time (as a stopped server does), while a producer publishes
//! and a consumer group reads. What must hold: a publish either returns
//! offsets or an error; a batch sent again with the same ids after an error
//! is stored once (dedup), so in the end every event is stored exactly once;
//! every event is delivered (again, when an acknowledgement was lost with its
//! connection) until it is acknowledged; nothing stays pending.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_events::testing::proxy::{Proxy, upstream};
use baton_events::{Event, EventId, EventLog, Options, TopicOptions};

use crate::Factory;

const EVENTS: u64 = 2_000;
const BATCH: u64 = 50;
const FAULTS: u32 = 8;

/// What the proxy does to the connections, `FAULTS` times.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Every connection cut.
    Cut,
    /// No answer for this long, connections kept open.
    Pause(Duration),
}

impl Fault {
    async fn inflict(self, proxy: &Proxy) {
        match self {
            Fault::Cut => proxy.cut(),
            Fault::Pause(d) => {
                proxy.pause();
                tokio::time::sleep(d).await;
                proxy.resume();
            }
        }
    }
}

/// Publishes and consumes `EVENTS` events through `FAULTS` faults; see the
/// module's documentation for what is checked.
async fn through<F: Factory>(mut f: F, proxy: Arc<Proxy>, fault: Fault) {
    let log = f.open(Options::default()).await;
    let topic = TopicOptions {
        partitions: 4,
        visibility_timeout: Duration::from_secs(2),
        max_deliveries: 0,
        ..TopicOptions::default()
    };
    log.create_topic("t", topic).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let before = proxy.accepted();

    let batches = EVENTS / BATCH;
    let producer = {
        let (log, proxy) = (log.clone(), proxy.clone());
        tokio::spawn(async move {
            let mut failed = 0u32;
            for b in 0..batches {
                // The faults interleave with the batches, and with the polls
                // (a pause holds the producer here while the consumer waits).
                if b % (batches / u64::from(FAULTS)) == 1 {
                    fault.inflict(&proxy).await;
                }
                let batch: Vec<Event> = (b * BATCH..(b + 1) * BATCH)
                    .map(|n| {
                        Event::new("fault.test", format!("k{}", n % 7), n.to_string())
                            .with_id(EventId(u128::from(n) + 1))
                    })
                    .collect();
                // At least once from the producer: the same ids again after
                // an error, which the server's dedup turns into exactly once.
                while let Err(e) = log.publish("t", batch.clone()).await {
                    failed += 1;
                    assert!(Instant::now() < deadline, "publish kept failing: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            failed
        })
    };
    let mut seen: HashSet<u64> = HashSet::new();
    let mut poll_errors = 0u32;
    while seen.len() < EVENTS as usize {
        assert!(
            Instant::now() < deadline,
            "{} of {EVENTS} events delivered",
            seen.len()
        );
        let polled = match log
            .poll("t", "g", "m", 100, Duration::from_millis(100))
            .await
        {
            Ok(p) => p,
            Err(_) => {
                poll_errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        for d in polled.iter() {
            seen.insert(
                std::str::from_utf8(&d.event.payload)
                    .unwrap()
                    .parse()
                    .unwrap(),
            );
        }
        // A lost acknowledgement only means a later redelivery.
        let _ = log.ack("t", "g", &polled.offsets()).await;
    }
    let publish_errors = producer.await.unwrap();
    // Once more with nothing in flight: the next calls find dead connections.
    proxy.cut();
    if matches!(fault, Fault::Cut) {
        assert!(
            proxy.accepted() > before,
            "the cuts made the log connect again"
        );
    }
    eprintln!(
        "{FAULTS} faults ({fault:?}): {publish_errors} publish errors and {poll_errors} poll errors, all recovered"
    );

    // Stored exactly once, whatever was sent again. (The calls right after
    // the last cut may fail on a dead connection: an error, never a wrong
    // answer; they are asked again.)
    let stored: u64 = again("topics", || async {
        let topics = log.topics().await?;
        Ok(topics
            .iter()
            .filter(|t| t.name == "t")
            .map(|t| t.events())
            .sum())
    })
    .await;
    assert_eq!(stored, EVENTS, "every event stored once");
    assert_eq!(seen.len() as u64, EVENTS);
    // Acknowledgements lost with a connection come back as deliveries, which
    // are acknowledged in turn: nothing stays pending.
    let settle = Instant::now() + Duration::from_secs(30);
    loop {
        let polled = again("poll", || {
            log.poll("t", "g", "m", 1000, Duration::from_millis(200))
        })
        .await;
        let offsets = polled.offsets();
        again("ack", || log.ack("t", "g", &offsets)).await;
        let pending = again("pending", || log.pending("t", "g", 10)).await;
        let groups = again("groups", || log.groups("t")).await;
        let lag: u64 = groups.iter().map(|g| g.lag).sum();
        if pending.is_empty() && lag == 0 {
            break;
        }
        assert!(
            Instant::now() < settle,
            "still pending: {pending:?}, lag {lag}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `call`'s answer, asked again while it fails (for 30 s at most).
async fn again<T, F, Fut>(what: &str, mut call: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = baton_events::Result<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match call().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(Instant::now() < deadline, "{what} kept failing: {e}");
                eprintln!("{what} failed after a cut, asked again: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A pause long enough to outlast a blocking poll's wait, short enough to
/// stay within the clients' request timeouts.
const PAUSE: Duration = Duration::from_millis(1500);

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_through_cut_connections() {
    let Some(url) = crate::redis::url() else {
        return;
    };
    let proxy = Arc::new(Proxy::start(upstream(&url)).await);
    // The proxy outlives the factory, which cleans up through it.
    through(
        crate::redis::Redis::at(proxy.url(&url)),
        proxy.clone(),
        Fault::Cut,
    )
    .await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_through_a_server_that_stops_answering() {
    let Some(url) = crate::redis::url() else {
        return;
    };
    let proxy = Arc::new(Proxy::start(upstream(&url)).await);
    let fault = Fault::Pause(PAUSE);
    through(
        crate::redis::Redis::at(proxy.url(&url)),
        proxy.clone(),
        fault,
    )
    .await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_through_cut_connections() {
    let Some(url) = crate::nats::server_url() else {
        return;
    };
    let proxy = Arc::new(Proxy::start(upstream(&url)).await);
    // The proxy outlives the factory, which cleans up through it.
    through(
        crate::nats::Nats::at(proxy.url(&url)),
        proxy.clone(),
        Fault::Cut,
    )
    .await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_through_a_server_that_stops_answering() {
    let Some(url) = crate::nats::server_url() else {
        return;
    };
    let proxy = Arc::new(Proxy::start(upstream(&url)).await);
    let fault = Fault::Pause(PAUSE);
    through(crate::nats::Nats::at(proxy.url(&url)), proxy.clone(), fault).await;
}
