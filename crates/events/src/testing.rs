//! Test support shared by the crates' tests (feature `test-util`): the byte
//! damage of the fuzz targets ([`mutate`]), a small disk that fills ([`Tmpfs`]), and
//! the servers of the
//! distributed backends: Redis, NATS and PostgreSQL tests read the server's URL from a
//! `BATON_TEST_*_URL` variable and skip, visibly, when it is unset, except in CI
//! (`CI` set), where a test that cannot reach its server must fail rather than
//! pass by skipping.

use std::io::Write as _;

/// The URL in `var`, or `None` after printing `skipped: <test>: set <var> (e.g.
/// <example>)` on stderr (past the test harness's capture), when it is unset or empty outside CI. The test is named
/// after the thread it runs on, which the test harness names after the test.
///
/// # Panics
///
/// When `var` is unset and `CI` is set.
pub fn server_url(var: &str, example: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let test = current_test();
            if std::env::var_os("CI").is_some() {
                panic!("{test}: {var} is not set, but CI is: this test needs its server");
            }
            // Written to stderr itself, not with `eprintln!`, which the test
            // harness captures and shows only for failing tests: a skip that
            // passes must still be seen.
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {test}: set {var} (e.g. {example})"
            );
            None
        }
    }
}

/// A tmpfs of a given size mounted on a new directory, for tests of a full disk;
/// unmounted when dropped.
pub struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` on a new directory under the system's temporary
    /// one; `None`, after printing `skipped: <test>: …` on stderr, where this process
    /// may not mount (not root).
    ///
    /// # Panics
    ///
    /// When mounting fails and `CI` is set: CI runs the full-disk tests.
    pub fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = std::env::temp_dir().join(format!(
            "baton-tmpfs-{}-{:x}",
            std::process::id(),
            crate::EventId::generate().0
        ));
        std::fs::create_dir_all(&dir).ok()?;
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(&dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            let _ = std::fs::remove_dir(&dir);
            let test = current_test();
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: cannot mount a tmpfs, but CI is set: this test needs one (run as root)"
            );
            let _ = writeln!(
                std::io::stderr(),
                "skipped: {test}: mounting a tmpfs needs root"
            );
            return None;
        }
        Some(Tmpfs(dir))
    }

    /// Where it is mounted.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazily: a server under test may still hold files there until its runtime
        // stops.
        let unmounted = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status()
            .is_ok_and(|s| s.success());
        if unmounted {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
}

/// The running test's name, as the test harness names its thread.
fn current_test() -> String {
    match std::thread::current().name() {
        // The harness runs tests on the main thread when it runs one at a time.
        Some(name) if name != "main" => name.to_owned(),
        _ => "a test".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_test_it_runs_in() {
        let name = current_test();
        assert!(
            name == "testing::tests::names_the_test_it_runs_in" || name == "a test",
            "{name}"
        );
    }
}

/// A TCP proxy on loopback between a client and its server (Redis, NATS,
/// PostgreSQL), through which a test puts the connection through faults:
/// every open connection cut at once ([`Proxy::cut`]), or the server made
/// to stop answering while connections stay open, as a stopped (`SIGSTOP`)
/// or overloaded server does ([`Proxy::pause`], [`Proxy::resume`]).
pub mod proxy {
    use std::net::SocketAddr;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::watch;
    use tokio::task::JoinHandle;

    /// The proxy; dropping it closes everything.
    pub struct Proxy {
        addr: SocketAddr,
        accepted: Arc<AtomicU64>,
        links: Arc<Mutex<Vec<JoinHandle<()>>>>,
        accept: JoinHandle<()>,
        paused: watch::Sender<bool>,
        replies_held: watch::Sender<bool>,
    }

    /// Copies `from` to `to`, holding the bytes while any of `gates` is closed.
    async fn pipe(
        mut from: OwnedReadHalf,
        mut to: OwnedWriteHalf,
        mut gates: Vec<watch::Receiver<bool>>,
    ) {
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for gate in &mut gates {
                while *gate.borrow_and_update() {
                    if gate.changed().await.is_err() {
                        return;
                    }
                }
            }
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }

    impl Proxy {
        /// A proxy to `upstream`, listening on a free loopback port.
        ///
        /// # Panics
        ///
        /// If no loopback port can be bound.
        pub async fn start(upstream: SocketAddr) -> Proxy {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a loopback port");
            let addr = listener.local_addr().expect("a bound address");
            let accepted = Arc::new(AtomicU64::new(0));
            let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
            let (paused, _) = watch::channel(false);
            let (replies_held, _) = watch::channel(false);
            let accept = tokio::spawn({
                let (accepted, links, paused, held) = (
                    accepted.clone(),
                    links.clone(),
                    paused.clone(),
                    replies_held.clone(),
                );
                async move {
                    while let Ok((client, _)) = listener.accept().await {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        let mut wait = paused.subscribe();
                        let up = vec![paused.subscribe()];
                        let down = vec![paused.subscribe(), held.subscribe()];
                        let link = tokio::spawn(async move {
                            // A paused server accepts (the kernel does) but does not answer.
                            while *wait.borrow_and_update() {
                                if wait.changed().await.is_err() {
                                    return;
                                }
                            }
                            let Ok(server) = TcpStream::connect(upstream).await else {
                                return;
                            };
                            let _ = (client.set_nodelay(true), server.set_nodelay(true));
                            let (client_read, client_write) = client.into_split();
                            let (server_read, server_write) = server.into_split();
                            tokio::join!(
                                pipe(client_read, server_write, up),
                                pipe(server_read, client_write, down)
                            );
                        });
                        let mut links = links.lock().unwrap_or_else(|e| e.into_inner());
                        links.retain(|l| !l.is_finished());
                        links.push(link);
                    }
                }
            });
            Proxy {
                addr,
                accepted,
                links,
                accept,
                paused,
                replies_held,
            }
        }

        /// Where clients connect.
        pub fn addr(&self) -> SocketAddr {
            self.addr
        }

        /// Connections accepted so far.
        pub fn accepted(&self) -> u64 {
            self.accepted.load(Ordering::Relaxed)
        }

        /// Closes every open connection (both sides), mid-request or not;
        /// new connections are accepted again right after.
        pub fn cut(&self) {
            for link in self
                .links
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                link.abort();
            }
        }

        /// The server stops answering: bytes are held in both directions and
        /// new connections wait, until [`Proxy::resume`].
        pub fn pause(&self) {
            self.paused.send_replace(true);
        }

        /// What was held goes through, in order.
        pub fn resume(&self) {
            self.paused.send_replace(false);
        }

        /// The server keeps receiving and acting on requests, but its answers are
        /// held until [`Proxy::release_replies`]: a client that gives up waiting
        /// meanwhile misses what the server did for it.
        pub fn hold_replies(&self) {
            self.replies_held.send_replace(true);
        }

        /// The held answers go through, in order.
        pub fn release_replies(&self) {
            self.replies_held.send_replace(false);
        }

        /// `url` (`scheme://[user[:password]@]host:port[/…]`) with its host and
        /// port replaced by the proxy's.
        ///
        /// # Panics
        ///
        /// If `url` has no `://`.
        pub fn url(&self, url: &str) -> String {
            let (scheme, rest) = url.split_once("://").expect("a URL");
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
    ///
    /// # Panics
    ///
    /// If `url` names no address that resolves.
    pub fn upstream(url: &str) -> SocketAddr {
        let rest = url.split_once("://").expect("a URL").1;
        let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        std::net::ToSocketAddrs::to_socket_addrs(host_port)
            .expect("an address")
            .next()
            .expect("an address")
    }
}

/// Damage done to bytes by the fuzz targets (proptest strategies): a byte
/// flipped, deleted or inserted, or the rest cut off, as a bad disk, a
/// stray write or a broken client leaves them.
pub mod mutate {
    use proptest::prelude::*;
    use proptest::sample::Index;

    /// One edit; positions are fractions of the length at the time.
    #[derive(Debug, Clone)]
    pub enum Edit {
        /// XOR a byte with a non-zero mask.
        Flip(Index, u8),
        /// Remove a byte.
        Delete(Index),
        /// Insert a byte.
        Insert(Index, u8),
        /// Truncate there.
        Cut(Index),
    }

    /// Edits, flips four times as often as the others; inserted bytes drawn
    /// from `inserted` half of the time (the characters that matter to the
    /// format at hand), any byte otherwise.
    pub fn edit(inserted: &'static [u8]) -> impl Strategy<Value = Edit> {
        let byte = prop_oneof![any::<u8>(), prop::sample::select(inserted.to_vec())];
        prop_oneof![
            4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
            1 => any::<Index>().prop_map(Edit::Delete),
            1 => (any::<Index>(), byte).prop_map(|(i, b)| Edit::Insert(i, b)),
            1 => any::<Index>().prop_map(Edit::Cut),
        ]
    }

    /// Applies `edits` in order (an emptied input stays empty).
    pub fn apply(bytes: &mut Vec<u8>, edits: &[Edit]) {
        for e in edits {
            if bytes.is_empty() {
                return;
            }
            match *e {
                Edit::Flip(i, b) => {
                    let at = i.index(bytes.len());
                    bytes[at] ^= b | 1;
                }
                Edit::Delete(i) => {
                    bytes.remove(i.index(bytes.len()));
                }
                Edit::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), b),
                Edit::Cut(i) => bytes.truncate(i.index(bytes.len())),
            }
        }
    }

    /// `PROPTEST_CASES`, or `default` for targets whose cases are costly.
    pub fn cases(default: u32) -> u32 {
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(default)
    }
}
