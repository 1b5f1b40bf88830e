//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong in the event log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// One event is larger than [`Limits::max_event_bytes`](crate::Limits::max_event_bytes).
    #[error(
        "event #{index} in the batch is {size} bytes, over the limit of {limit} bytes; \
         split the payload or raise `Limits::max_event_bytes`"
    )]
    EventTooLarge {
        /// Position of the event in the published batch.
        index: usize,
        /// Encoded size of the event.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A batch has more events or bytes than the limits allow.
    #[error(
        "batch of {events} events / {bytes} bytes is over the limit of {max_events} events / \
         {max_bytes} bytes; publish it in smaller batches or raise `Limits`"
    )]
    BatchTooLarge {
        /// Events in the batch.
        events: usize,
        /// Encoded bytes in the batch.
        bytes: usize,
        /// The configured event limit.
        max_events: usize,
        /// The configured byte limit.
        max_bytes: usize,
    },
    /// A topic or group name is empty, too long or uses characters outside `[A-Za-z0-9._-]`.
    #[error(
        "invalid {what} name {name:?}: expected 1 to 200 characters from [A-Za-z0-9._-], \
         not starting with '.'"
    )]
    InvalidName {
        /// `"topic"`, `"group"` or `"member"`.
        what: &'static str,
        /// The rejected name.
        name: String,
    },
    /// Options are out of range (for example zero partitions).
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The topic was created earlier with different options.
    #[error(
        "topic {topic:?} already exists with different options ({detail}); options are fixed at creation"
    )]
    TopicMismatch {
        /// The topic.
        topic: String,
        /// What differs.
        detail: String,
    },
    /// A topic that must exist does not.
    #[error("no topic named {0:?}")]
    UnknownTopic(String),
    /// A group that must exist does not.
    #[error("topic {topic:?} has no consumer group named {group:?}")]
    UnknownGroup {
        /// The topic.
        topic: String,
        /// The group.
        group: String,
    },
    /// An offset names a partition the topic does not have.
    #[error("topic {topic:?} has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// The topic.
        topic: String,
        /// The requested partition.
        partition: u32,
        /// Partitions the topic has.
        partitions: u32,
    },
    /// A payload could not be encoded or decoded as JSON.
    #[error("event payload is not the expected JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// An I/O operation on the data directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "writing segment".
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A record in the middle of the log failed its checksum or does not decode.
    #[error(
        "corrupt log record in {path} at byte {position}: {reason}; the log refuses to serve it. \
         Restore the file from a backup, or move the segment away to drop its records"
    )]
    Corrupt {
        /// The segment or state file.
        path: PathBuf,
        /// Byte position of the damaged record in that file.
        position: u64,
        /// What is wrong.
        reason: String,
    },
    /// An earlier write or fsync failed, so the log refuses further writes: after a
    /// failed fsync the kernel may have dropped the dirty pages, and writing on would
    /// acknowledge data that is not on disk. Reopen the log to recover.
    #[error("the log stopped accepting writes after an earlier failure: {0}; reopen it to recover")]
    Failed(String),
    /// A write found the disk full: the log tries it again until space returns,
    /// refusing new writes meanwhile, and then goes on by itself. Nothing
    /// acknowledged is lost. (A refused publish may have stored the events of the
    /// partitions it reached before the stall; publishing it again with the same ids
    /// stores them once.)
    #[error(
        "the event log is waiting for disk space and refuses writes until it has some \
         ({0}); it resumes by itself"
    )]
    Stalled(String),
    /// Another process holds the data directory.
    #[error("data directory {0} is in use by another process (lock file `LOCK` is held)")]
    Locked(PathBuf),
    /// The log was closed.
    #[error("the event log is closed")]
    Closed,
    /// An event log URL names no backend.
    #[error(
        "unknown event log `{0}`: expected `disk`, `memory`, `redis://HOST:PORT` or `nats://HOST:PORT`"
    )]
    UnknownBackend(String),
    /// An event log URL names a backend this build does not include.
    #[error("this build has no {backend} event log: build with `--features {feature}`")]
    NotBuilt {
        /// The backend (`Redis`, `NATS`).
        backend: &'static str,
        /// The cargo feature that compiles it in.
        feature: &'static str,
    },
    /// The Redis Streams backend failed (connection, server reply or a stored entry).
    #[cfg(feature = "redis")]
    #[error(transparent)]
    Redis(#[from] crate::redis::Error),
    /// The NATS JetStream backend failed (connection, server API or a stored message).
    #[cfg(feature = "nats")]
    #[error(transparent)]
    Nats(#[from] crate::nats::Error),
}

/// Shorthand for results in this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
