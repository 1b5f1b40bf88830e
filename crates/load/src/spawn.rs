//! `--spawn-server`: a `baton serve` on an ephemeral loopback port with a
//! temporary data directory, for one load run.
//!
//! The server binds `127.0.0.1:0` and prints `listening on http://ADDR` on
//! stderr; that line gives the address (no port race). Then `/healthz` is
//! polled until it answers. [`Server::stop`] sends SIGTERM (a graceful
//! shutdown: the log and the store are flushed), waits, and kills after a
//! timeout; dropping a `Server` kills it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, StatusCode};

use crate::Error;
use crate::client::{Conn, Target};

/// A running `baton serve`.
pub struct Server {
    child: Child,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `exe serve` (the `baton` binary) and waits until it is healthy.
    pub async fn start(exe: &Path) -> Result<Server, Error> {
        let fail = |why: String| Error::Server(format!("--spawn-server: {why}"));
        let dir = tempfile::Builder::new()
            .prefix("baton-load-")
            .tempdir()
            .map_err(|e| fail(format!("cannot create a temporary data directory: {e}")))?;
        let mut child = Command::new(exe)
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| fail(format!("cannot start `{} serve`: {e}", exe.display())))?;
        let stderr = child.stderr.take().expect("piped");
        let (tx, rx) = mpsc::channel();
        // Read the address, then keep draining so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(sender) = &tx {
                    let addr = line
                        .split("listening on ")
                        .nth(1)
                        .and_then(|r| r.split_whitespace().next())
                        .map(|a| a.trim_end_matches('/').to_string());
                    let done = addr.is_some();
                    let _ = sender.send(addr.ok_or(line));
                    if done {
                        tx.take();
                    }
                }
            }
        });
        let mut server = Server {
            child,
            url: String::new(),
            dir: Some(dir),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Ok(url)) => {
                    server.url = url;
                    break;
                }
                Ok(Err(line)) => seen.push(line),
                Err(_) => {
                    return Err(fail(format!(
                        "`baton serve` did not report its address within 30 s; it said: {}",
                        seen.join(" | ")
                    )));
                }
            }
        }
        server.wait_healthy(Duration::from_secs(10)).await?;
        Ok(server)
    }

    async fn wait_healthy(&self, within: Duration) -> Result<(), Error> {
        let target = Target::parse(&self.url).map_err(Error::Server)?;
        let deadline = Instant::now() + within;
        loop {
            let mut conn = Conn::new(&target, Duration::from_secs(1));
            if let Ok((StatusCode::OK, _)) = conn.send(Method::GET, "/healthz", Bytes::new()).await
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::Server(format!(
                    "--spawn-server: {}/healthz did not answer 200 within {within:?}",
                    self.url
                )));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its data directory.
    pub fn data_dir(&self) -> Option<std::path::PathBuf> {
        self.dir.as_ref().map(|d| d.path().join("data"))
    }

    /// Stops it: SIGTERM, up to `grace` for a clean exit, then SIGKILL; then
    /// removes its data directory. Returns how long it took to exit after
    /// SIGTERM, or `None` when it had to be killed or did not exit cleanly.
    pub fn stop(mut self, grace: Duration) -> Option<Duration> {
        let asked = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = asked + grace;
        let exited = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break status.success().then(|| asked.elapsed()),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        // One file per stored workflow: after a long orchestration run this
        // takes longer than the server's own shutdown.
        self.dir.take();
        exited
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
