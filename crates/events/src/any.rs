//! [`AnyLog`]: one type over every backend, for programs that pick the backend at
//! run time (`baton serve --events URL`), and [`AnyLog::open`], the one place a URL
//! becomes a backend.

use std::path::PathBuf;
use std::time::Duration;

use crate::{
    DiskLog, DiskOptions, Error, Event, EventLog, GroupInfo, MemoryLog, Offset, PendingEntry,
    Polled, Record, Result, SeekTo, TopicInfo, TopicOptions,
};

/// A backend as an event log URL names it, before anything is opened.
///
/// | URL | backend |
/// |---|---|
/// | `memory` | [`MemoryLog`] |
/// | `disk` | [`DiskLog`] in [`OpenOptions::dir`] |
/// | `redis://HOST:PORT`, `redis+cluster://HOST:PORT,…` | `RedisLog` (feature `redis`) |
/// | `nats://HOST:PORT` | `NatsLog` (feature `nats`) |
///
/// Only the scheme (the text before `://`, or the whole URL) is looked at here;
/// the server backends read the rest when they connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// `memory`.
    Memory,
    /// `disk`.
    Disk,
    /// `redis://…` or `redis+cluster://…`, with the URL to connect to.
    Redis(String),
    /// `nats://…`, with the URL to connect to.
    Nats(String),
}

impl Backend {
    /// The backend `url` names.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownBackend`] for a URL that names none (the message lists the
    /// accepted forms), [`Error::NotBuilt`] for a backend whose cargo feature this
    /// build lacks.
    pub fn parse(url: &str) -> Result<Backend> {
        let scheme = url.split_once("://").map_or(url, |(s, _)| s);
        let backend = match scheme {
            "memory" => Backend::Memory,
            "disk" => Backend::Disk,
            "redis" | "redis+cluster" => Backend::Redis(url.to_owned()),
            "nats" => Backend::Nats(url.to_owned()),
            _ => return Err(Error::UnknownBackend(url.to_owned())),
        };
        match backend {
            Backend::Redis(_) if !cfg!(feature = "redis") => Err(Error::NotBuilt {
                backend: "Redis",
                feature: "redis",
            }),
            Backend::Nats(_) if !cfg!(feature = "nats") => Err(Error::NotBuilt {
                backend: "NATS",
                feature: "nats",
            }),
            backend => Ok(backend),
        }
    }

    /// The backend's name (`memory`, `disk`, `redis`, `nats`).
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Disk => "disk",
            Backend::Redis(_) => "redis",
            Backend::Nats(_) => "nats",
        }
    }
}

/// What [`AnyLog::open`] needs besides the URL.
#[derive(Debug, Clone)]
pub struct OpenOptions {
    /// Where the `disk` log keeps its files; the `disk` URL needs it.
    pub dir: Option<PathBuf>,
    /// The log's options (`disk.log`, used by every backend) and the disk
    /// backend's own (fsync policy, segment size).
    pub disk: DiskOptions,
    /// Names this deployment on a shared server: the prefix of Redis keys and of
    /// NATS streams (where `_`, which NATS names do not take, becomes `-`).
    pub namespace: String,
}

impl Default for OpenOptions {
    fn default() -> Self {
        OpenOptions {
            dir: None,
            disk: DiskOptions::default(),
            namespace: "baton".to_owned(),
        }
    }
}

/// Any backend's log, chosen at run time. Each call is forwarded to the backend
/// (a `match`, no boxing), so it keeps that backend's guarantees and figures.
#[derive(Clone)]
pub enum AnyLog {
    /// In memory.
    Memory(MemoryLog),
    /// On local disk.
    Disk(DiskLog),
    /// On Redis Streams.
    #[cfg(feature = "redis")]
    Redis(crate::RedisLog),
    /// On NATS JetStream.
    #[cfg(feature = "nats")]
    Nats(crate::NatsLog),
}

#[cfg(feature = "redis")]
impl From<crate::RedisLog> for AnyLog {
    fn from(log: crate::RedisLog) -> Self {
        AnyLog::Redis(log)
    }
}

#[cfg(feature = "nats")]
impl From<crate::NatsLog> for AnyLog {
    fn from(log: crate::NatsLog) -> Self {
        AnyLog::Nats(log)
    }
}

impl From<MemoryLog> for AnyLog {
    fn from(log: MemoryLog) -> Self {
        AnyLog::Memory(log)
    }
}

impl From<DiskLog> for AnyLog {
    fn from(log: DiskLog) -> Self {
        AnyLog::Disk(log)
    }
}

impl AnyLog {
    /// Why the log refuses writes, if it does (the disk log waiting for disk
    /// space, or after a failed write or sync; see [`DiskLog::failure`]). Other
    /// backends report their errors call by call.
    pub fn failure(&self) -> Option<Error> {
        match self {
            AnyLog::Disk(d) => d.failure(),
            _ => None,
        }
    }

    /// Opens the log `url` names (see [`Backend`]): `memory`, `disk` (in
    /// `options.dir`), `redis://HOST:PORT` or `nats://HOST:PORT`.
    ///
    /// # Example
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> baton_events::Result<()> {
    /// use baton_events::{AnyLog, OpenOptions};
    ///
    /// let log = AnyLog::open("memory", &OpenOptions::default()).await?;
    /// assert_eq!(log.backend(), "memory");
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// Those of [`Backend::parse`]; [`Error::InvalidOptions`] for `disk` without
    /// a directory; otherwise the backend's own.
    pub async fn open(url: &str, options: &OpenOptions) -> Result<AnyLog> {
        match Backend::parse(url)? {
            Backend::Memory => Ok(MemoryLog::new(options.disk.log.clone())?.into()),
            Backend::Disk => {
                let dir = options.dir.as_deref().ok_or_else(|| {
                    Error::InvalidOptions(
                        "the `disk` event log needs a directory (`OpenOptions::dir`)".to_owned(),
                    )
                })?;
                Ok(DiskLog::open(dir, options.disk.clone()).await?.into())
            }
            #[cfg(feature = "redis")]
            Backend::Redis(url) => {
                let log = crate::RedisLog::open(crate::RedisOptions {
                    url,
                    prefix: options.namespace.clone(),
                    log: options.disk.log.clone(),
                    ..crate::RedisOptions::default()
                })
                .await?;
                Ok(log.into())
            }
            #[cfg(feature = "nats")]
            Backend::Nats(url) => {
                let log = crate::NatsLog::open(crate::NatsOptions {
                    url,
                    prefix: options.namespace.replace('_', "-"),
                    log: options.disk.log.clone(),
                    ..crate::NatsOptions::default()
                })
                .await?;
                Ok(log.into())
            }
            // `Backend::parse` refuses the backends this build lacks.
            #[allow(unreachable_patterns)]
            _ => unreachable!("Backend::parse accepted a backend this build lacks"),
        }
    }

    /// The backend's name (`memory`, `disk`, ...).
    pub fn backend(&self) -> &'static str {
        match self {
            AnyLog::Memory(_) => "memory",
            AnyLog::Disk(_) => "disk",
            #[cfg(feature = "redis")]
            AnyLog::Redis(_) => "redis",
            #[cfg(feature = "nats")]
            AnyLog::Nats(_) => "nats",
        }
    }
}

/// Forwards one call to the backend.
macro_rules! each {
    ($self:ident, $log:ident => $call:expr) => {
        match $self {
            AnyLog::Memory($log) => $call.await,
            AnyLog::Disk($log) => $call.await,
            #[cfg(feature = "redis")]
            AnyLog::Redis($log) => $call.await,
            #[cfg(feature = "nats")]
            AnyLog::Nats($log) => $call.await,
        }
    };
}

impl EventLog for AnyLog {
    async fn create_topic(&self, topic: &str, options: TopicOptions) -> Result<()> {
        each!(self, l => l.create_topic(topic, options))
    }

    async fn publish(&self, topic: &str, batch: Vec<Event>) -> Result<Vec<Offset>> {
        each!(self, l => l.publish(topic, batch))
    }

    async fn poll(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Polled> {
        each!(self, l => l.poll(topic, group, member, max, wait))
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[Offset]) -> Result<usize> {
        each!(self, l => l.ack(topic, group, ids))
    }

    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ids: &[Offset],
        delay: Duration,
    ) -> Result<usize> {
        each!(self, l => l.nack(topic, group, ids, delay))
    }

    async fn pending(&self, topic: &str, group: &str, limit: usize) -> Result<Vec<PendingEntry>> {
        each!(self, l => l.pending(topic, group, limit))
    }

    async fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        each!(self, l => l.groups(topic))
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>> {
        each!(self, l => l.topics())
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        each!(self, l => l.read(topic, partition, from, max))
    }

    async fn offsets_at(&self, topic: &str, time_ms: u64) -> Result<Vec<Offset>> {
        each!(self, l => l.offsets_at(topic, time_ms))
    }

    async fn seek(&self, topic: &str, group: &str, to: SeekTo) -> Result<()> {
        each!(self, l => l.seek(topic, group, to))
    }

    async fn close(&self) -> Result<()> {
        each!(self, l => l.close())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_backends() {
        assert_eq!(Backend::parse("memory").unwrap(), Backend::Memory);
        assert_eq!(Backend::parse("disk").unwrap(), Backend::Disk);
        for url in [
            "",
            "mem",
            "Disk",
            "kafka://h:9092",
            "postgres://u@h/db",
            "://x",
        ] {
            let err = Backend::parse(url).unwrap_err();
            assert!(
                matches!(&err, Error::UnknownBackend(u) if u == url),
                "{url}"
            );
            let text = err.to_string();
            for form in [
                "`disk`",
                "`memory`",
                "`redis://HOST:PORT`",
                "`nats://HOST:PORT`",
            ] {
                assert!(text.contains(form), "{text}");
            }
        }
    }

    #[test]
    fn server_urls_need_their_feature() {
        for (url, backend, feature) in [
            ("redis://127.0.0.1:6379", "Redis", "redis"),
            ("redis+cluster://h:7101,h:7102", "Redis", "redis"),
            ("nats://127.0.0.1:4222", "NATS", "nats"),
        ] {
            let built = cfg!(feature = "redis") && feature == "redis"
                || cfg!(feature = "nats") && feature == "nats";
            match Backend::parse(url) {
                Ok(Backend::Redis(u) | Backend::Nats(u)) if built => assert_eq!(u, url),
                Err(e @ Error::NotBuilt { .. }) if !built => {
                    let text = e.to_string();
                    assert!(text.contains(backend), "{text}");
                    assert!(text.contains(&format!("--features {feature}")), "{text}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn opens_local_backends() {
        let log = AnyLog::open("memory", &OpenOptions::default())
            .await
            .unwrap();
        assert_eq!(log.backend(), "memory");
        let err = AnyLog::open("disk", &OpenOptions::default()).await.err();
        assert!(matches!(err, Some(Error::InvalidOptions(_))), "{err:?}");
        let dir = tempfile::tempdir().unwrap();
        let options = OpenOptions {
            dir: Some(dir.path().join("events")),
            ..OpenOptions::default()
        };
        let log = AnyLog::open("disk", &options).await.unwrap();
        assert_eq!(log.backend(), "disk");
        log.close().await.unwrap();
    }

    #[tokio::test]
    async fn forwards_to_the_backend() {
        let log = AnyLog::from(MemoryLog::default());
        assert_eq!(log.backend(), "memory");
        let offsets = log
            .publish("t", vec![Event::new("x", "k".to_owned(), "1")])
            .await
            .unwrap();
        let polled = log.poll("t", "g", "m", 10, Duration::ZERO).await.unwrap();
        assert_eq!(polled.offsets(), offsets);
        assert_eq!(log.ack("t", "g", &offsets).await.unwrap(), 1);
        log.close().await.unwrap();
        let late = log.publish("t", vec![Event::new("x", "k".to_owned(), "2")]);
        assert!(matches!(late.await, Err(crate::Error::Closed)));
    }
}
