//! Connections to one Redis server or a Redis Cluster, and running the scripts.

use std::sync::Mutex;
use std::time::Duration;

use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, Pipeline, RedisFuture, Script, Value};

use crate::redis::Error;

/// Longest single blocking read; a poll that waits longer issues several. Keeps the
/// response timeout of the blocking connections finite.
pub(crate) const BLOCK_CAP: Duration = Duration::from_secs(1);

/// Idle blocking connections kept for reuse.
const IDLE_BLOCKERS: usize = 16;

/// A connection: the auto-reconnecting manager (one server), a plain multiplexed
/// connection (blocking reads on one server) or a cluster connection.
#[derive(Clone)]
pub(crate) enum Conn {
    Manager(ConnectionManager),
    Plain(MultiplexedConnection),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Manager(c) => c.req_packed_command(cmd),
            Conn::Plain(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Manager(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Plain(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Manager(c) => c.get_db(),
            Conn::Plain(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Where the log's server is, and how to open more connections to it.
pub(crate) enum Server {
    Single(Client),
    Cluster {
        /// For blocking reads: a response timeout above [`BLOCK_CAP`].
        blocking: Box<ClusterClient>,
    },
}

/// The connections of one log.
pub(crate) struct Connections {
    /// Shared by every non-blocking call (requests are pipelined on it).
    pub(crate) main: Conn,
    server: Server,
    /// The server's address without credentials, for messages.
    pub(crate) address: String,
    /// Idle connections for blocking reads, which must not stall `main`.
    idle: Mutex<Vec<Conn>>,
}

/// Whether `e` says the connection broke (or could not be made) before an
/// answer came. The request is then sent once more, on the connection the
/// manager makes again: every request of the log may run twice. Acks, nacks
/// and group changes are idempotent; a publish is deduplicated by its events'
/// ids (at least once on a topic without dedup, as a caller's own retry would
/// be); a poll delivers at least once (what the lost answer delivered comes
/// back after the visibility timeout).
pub(crate) fn dropped(e: &redis::RedisError) -> bool {
    e.is_connection_dropped() || e.is_io_error() || e.is_connection_refusal()
}

/// Runs `cmd` (a script's `EVALSHA`), loading the script first if the server
/// does not know it.
async fn eval_on(c: &mut Conn, script: &Script, cmd: &Cmd) -> redis::RedisResult<Value> {
    match cmd.query_async(c).await {
        Err(e) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
            script.load_async(c).await?;
            cmd.query_async(c).await
        }
        done => done,
    }
}

/// The URL without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}{}", &url[..s + 3], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

impl Connections {
    /// Connects to `url`: `redis://[user:password@]host:port[/db]` for one server, or
    /// `redis+cluster://[user:password@]host:port,host:port,...` for a cluster.
    pub(crate) async fn connect(url: &str, response_timeout: Duration) -> Result<Self, Error> {
        let address = redact(url);
        let fail = |e: redis::RedisError| Error::Connect {
            address: address.clone(),
            detail: e.to_string(),
        };
        if let Some(rest) = url.strip_prefix("redis+cluster://") {
            let (auth, hosts) = match rest.rfind('@') {
                Some(at) => (&rest[..=at], &rest[at + 1..]),
                None => ("", rest),
            };
            let nodes: Vec<String> = hosts
                .trim_end_matches('/')
                .split(',')
                .filter(|h| !h.is_empty())
                .map(|h| format!("redis://{auth}{h}"))
                .collect();
            if nodes.is_empty() {
                return Err(Error::Url {
                    url: address,
                    detail: "no host:port after redis+cluster://".into(),
                });
            }
            let main = ClusterClientBuilder::new(nodes.clone())
                .response_timeout(response_timeout)
                .build()
                .map_err(fail)?
                .get_async_connection()
                .await
                .map_err(fail)?;
            let blocking = ClusterClientBuilder::new(nodes)
                .response_timeout(BLOCK_CAP + response_timeout)
                .build()
                .map_err(fail)?;
            return Ok(Connections {
                main: Conn::Cluster(main),
                server: Server::Cluster {
                    blocking: Box::new(blocking),
                },
                address,
                idle: Mutex::new(Vec::new()),
            });
        }
        if !url.starts_with("redis://") && !url.starts_with("redis+unix://") {
            return Err(Error::Url {
                url: address,
                detail: "expected redis://host:port[/db] or redis+cluster://host:port,host:port"
                    .into(),
            });
        }
        let client = Client::open(url).map_err(|e| Error::Url {
            url: address.clone(),
            detail: e.to_string(),
        })?;
        let config = ConnectionManagerConfig::new().set_response_timeout(Some(response_timeout));
        let main = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(fail)?;
        Ok(Connections {
            main: Conn::Manager(main),
            server: Server::Single(client),
            address,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// A connection for one blocking read (reused from the idle ones if possible).
    pub(crate) async fn blocker(&self) -> Result<Conn, Error> {
        if let Some(c) = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop() {
            return Ok(c);
        }
        let fail = |e: redis::RedisError| Error::Connect {
            address: self.address.clone(),
            detail: e.to_string(),
        };
        match &self.server {
            Server::Single(client) => {
                let config = AsyncConnectionConfig::new()
                    .set_response_timeout(Some(BLOCK_CAP + Duration::from_secs(10)));
                let c = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(fail)?;
                Ok(Conn::Plain(c))
            }
            Server::Cluster { blocking } => Ok(Conn::Cluster(
                blocking.get_async_connection().await.map_err(fail)?,
            )),
        }
    }

    /// Returns a blocking connection after a completed read.
    pub(crate) fn give_back(&self, c: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < IDLE_BLOCKERS {
            idle.push(c);
        }
    }

    /// Drops the idle blocking connections.
    pub(crate) fn drop_idle(&self) {
        self.idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Runs a command on the main connection (sent again once if the
    /// connection broke: see [`dropped`]).
    pub(crate) async fn query(&self, op: &'static str, cmd: &Cmd) -> Result<Value, Error> {
        let mut c = self.main.clone();
        match cmd.query_async(&mut c).await {
            Err(e) if dropped(&e) => cmd.query_async(&mut c).await,
            done => done,
        }
        .map_err(|e| self.failed(op, e))
    }

    /// Runs a pipeline (a transaction if it is atomic) on the main connection
    /// (sent again once if the connection broke: see [`dropped`]).
    pub(crate) async fn query_pipe(
        &self,
        op: &'static str,
        pipe: &Pipeline,
    ) -> Result<Value, Error> {
        let mut c = self.main.clone();
        match pipe.query_async(&mut c).await {
            Err(e) if dropped(&e) => pipe.query_async(&mut c).await,
            done => done,
        }
        .map_err(|e| self.failed(op, e))
    }

    /// Runs a script prepared with [`eval_cmd`] on the main connection, loading it
    /// first if the server does not know it (after a restart or `SCRIPT FLUSH`);
    /// sent again once if the connection broke (see [`dropped`]).
    pub(crate) async fn eval(
        &self,
        op: &'static str,
        script: &Script,
        cmd: &Cmd,
    ) -> Result<Value, Error> {
        let mut c = self.main.clone();
        match eval_on(&mut c, script, cmd).await {
            Err(e) if dropped(&e) => eval_on(&mut c, script, cmd).await,
            done => done,
        }
        .map_err(|e| self.failed(op, e))
    }

    /// Loads a script (at open, so the first calls do not pay for it).
    pub(crate) async fn load(&self, script: &Script) -> Result<(), Error> {
        let mut c = self.main.clone();
        script
            .load_async::<Conn>(&mut c)
            .await
            .map(drop)
            .map_err(|e| self.failed("loading a script", e))
    }

    pub(crate) fn failed(&self, op: &'static str, e: redis::RedisError) -> Error {
        Error::Request {
            address: self.address.clone(),
            op,
            detail: e.to_string(),
        }
    }
}

/// An `EVALSHA` of `script` with `keys`; the caller adds the arguments.
pub(crate) fn eval_cmd<K: AsRef<str>>(script: &Script, keys: &[K]) -> Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for k in keys {
        cmd.arg(k.as_ref());
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_not_shown() {
        assert_eq!(redact("redis://user:secret@db:6379/2"), "redis://db:6379/2");
        assert_eq!(redact("redis://db:6379"), "redis://db:6379");
    }
}
