//! Fault injection on the real servers: the log reaches its server (Redis,
//! NATS) through a proxy on loopback whose connections are all cut, again and
//! again, while a producer publishes and a consumer group reads. What must
//! hold: a publish either returns offsets or an error; a batch sent again with
//! the same ids after an error is stored once (dedup), so in the end every
//! event is stored exactly once; every event is delivered (again, when an
//! acknowledgement was lost with its connection) until it is acknowledged;
//! nothing stays pending.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_events::{Event, EventId, EventLog, Options, TopicOptions};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::Factory;

/// A TCP proxy to `upstream` whose open connections can all be cut at once;
/// new connections are accepted again right after.
struct Proxy {
    addr: SocketAddr,
    accepted: Arc<AtomicU64>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = tokio::spawn({
            let (accepted, links) = (accepted.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    let link = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    links.lock().unwrap().push(link);
                }
            }
        });
        Proxy {
            addr,
            accepted,
            links,
            accept,
        }
    }

    /// Closes every open connection (both sides), mid-request or not.
    fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    /// `url` with its host and port replaced by the proxy's.
    fn url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let user = authority.rsplit_once('@').map_or("", |(u, _)| u);
        let at = if user.is_empty() { "" } else { "@" };
        format!("{scheme}://{user}{at}{}{path}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// The address in `url` (`scheme://[user@]host:port[/…]`).
fn upstream(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .unwrap()
        .next()
        .unwrap()
}

const EVENTS: u64 = 2_000;
const BATCH: u64 = 50;
const CUTS: u32 = 8;

/// Publishes and consumes `EVENTS` events through `CUTS` cuts of every
/// connection; see the module's documentation for what is checked.
async fn through_cuts<F: Factory>(mut f: F, proxy: Arc<Proxy>) {
    let log = f.open(Options::default()).await;
    let topic = TopicOptions {
        partitions: 4,
        visibility_timeout: Duration::from_secs(2),
        max_deliveries: 0,
        ..TopicOptions::default()
    };
    log.create_topic("t", topic).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let before = proxy.accepted.load(Ordering::Relaxed);

    let batches = EVENTS / BATCH;
    let producer = {
        let (log, proxy) = (log.clone(), proxy.clone());
        tokio::spawn(async move {
            let mut failed = 0u32;
            for b in 0..batches {
                // The cuts interleave with the batches, and with the polls.
                if b % (batches / u64::from(CUTS)) == 1 {
                    proxy.cut();
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
    assert!(
        proxy.accepted.load(Ordering::Relaxed) > before,
        "the cuts made the log connect again"
    );
    eprintln!(
        "{CUTS} cuts: {publish_errors} publish errors and {poll_errors} poll errors, all recovered"
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

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_through_cut_connections() {
    let Some(url) = crate::redis::url() else {
        return;
    };
    let proxy = Arc::new(Proxy::start(upstream(&url)).await);
    // The proxy outlives the factory, which cleans up through it.
    through_cuts(crate::redis::Redis::at(proxy.url(&url)), proxy.clone()).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_through_cut_connections() {
    let Some(url) = crate::nats::server_url() else {
        return;
    };
    let proxy = Arc::new(Proxy::start(upstream(&url)).await);
    // The proxy outlives the factory, which cleans up through it.
    through_cuts(crate::nats::Nats::at(proxy.url(&url)), proxy.clone()).await;
}
