//! The Redis Streams backend: an event log several processes share through one Redis
//! server (or Redis Cluster).
//!
//! **Durability promise: the server's.** `publish` returns once Redis has applied the
//! batch; whether it survives a crash of the Redis server depends on its persistence
//! settings: with `appendonly yes` and `appendfsync always` a machine crash loses
//! nothing acknowledged, with `appendfsync everysec` (the usual setting) up to about a
//! second, without persistence everything. Replicas are asynchronous: a failover can
//! lose the latest writes. Delivery state (pending lists, delivery counts, positions)
//! lives in Redis too, so it survives a restart of the processes that use the log. The
//! server must not evict keys (`maxmemory-policy noeviction`).
//!
//! ```no_run
//! use baton_events::{EventLog, Event, RedisLog, RedisOptions};
//!
//! # async fn demo() -> baton_events::Result<()> {
//! let log = RedisLog::open(RedisOptions {
//!     url: "redis://127.0.0.1:6379".into(),
//!     prefix: "baton".into(),
//!     ..RedisOptions::default()
//! })
//! .await?;
//! log.publish("tasks", vec![Event::new("task.ready", "run-1", "{}")]).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//!
//! Every key starts with the prefix, and every key of a topic carries the topic as its
//! [hash tag], so that a topic's partitions and state sit in one Redis Cluster slot and
//! one Lua script can work on all of them atomically. For prefix `baton` and topic `t`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `baton:topics` | set | every topic's name |
//! | `baton:{t}:meta` | string | the topic's options (JSON), written once |
//! | `baton:{t}:groups` | set | the consumer groups' names |
//! | `baton:{t}:p3` | stream | partition 3: one entry per event |
//! | `baton:{t}:p3:i` | sorted set | partition 3's publish batches: `base:appended_ms:bytes` by base offset |
//! | `baton:{t}:p3:s` | hash | partition 3's end offset and retained bytes |
//! | `baton:{t}:d` | hash | the topic's dedup window: which generation is current, since when |
//! | `baton:{t}:d0`, `:d1` | hash | the dedup window's two generations: event id → `partition:offset` |
//! | `baton:{t}:g:G:o` | hash | group G: partition → member that last took events from it |
//! | `baton:{t}:g:G:h` | hash | group G: `partition:offset` → time before which a nacked event stays put |
//! | `baton:{t}:g:G:m` | hash | group G: member → last poll |
//!
//! Offset `o` of a partition is stream entry ID `0-(o+1)`: IDs grow with offsets, a
//! read from an offset is an `XRANGE` from its ID, and offsets are never reused because
//! a stream remembers its last ID after trimming. The time an event was appended is not
//! in the ID but in the batch index (one member per publish and partition, not per
//! event), which retention by age, `offsets_at` and `Record::appended_ms` use.
//!
//! Each call is one `EVALSHA` (the scripts are loaded at open) or a few commands:
//! `publish` sends the whole batch in one script call that does dedup, assigns offsets,
//! `XADD`s, indexes and trims, atomically. `poll` is one script that claims expired
//! deliveries (`XPENDING … IDLE` + `XCLAIM`), then reads new events (`XREADGROUP`);
//! when it finds nothing and the caller wants to wait, the wait is a blocking `XREAD`
//! on a separate connection, so it does not hold up other calls of the same log.
//!
//! Timeouts, ages and appended times are measured on the Redis server's clock
//! (`TIME`), so the processes that share a log agree on them; tokio's paused time does
//! not apply.
//!
//! # Differences from the in-process backends
//!
//! - **Dedup covers the whole topic.** One window for all partitions, so an id
//!   published again under another key returns its original offset; the in-process
//!   logs keep a window per partition (one topic-wide structure there made concurrent
//!   producers take turns on its lock, which Redis, running scripts one at a time,
//!   does anyway).
//! - **Pending times.** [`PendingEntry::since_ms`](crate::PendingEntry::since_ms) is
//!   the server's time minus the entry's idle time. A `nack` with a delay shorter than
//!   the visibility timeout works by setting that idle time (to timeout − delay), so
//!   after a nack `since_ms` is moved back accordingly; `claimable_at_ms` is exact.
//! - **Waking a waiting poll.** A poll that waits is woken at once by a publish to a
//!   partition it may read, and otherwise looks again when the first pending delivery
//!   becomes claimable (computed from the first 1,000 pending deliveries of each
//!   partition), when the wait ends, or after at most a second (100 ms while another
//!   member holds a partition with new events), whichever comes first.
//! - **Delivery state survives a restart.** After the processes restart, a member's
//!   unacknowledged events stay with it until the visibility timeout passes (the
//!   in-process backends deliver them again at once, with counts starting over).
//! - **Members.** [`GroupInfo::members`](crate::GroupInfo::members) lists every member
//!   that ever polled the group (not only since the log was opened), with its last poll
//!   on the server's clock.
//! - **Seek** re-creates the group on each partition it moves, which also forgets the
//!   group's consumers there (the member list above is kept).
//! - **Dead letters** are published, then acknowledged: if the process dies between
//!   the two, the event is dead-lettered again after another visibility timeout.
//! - **Limits of one call.** A poll, `pending` or `read` returns at most 1,048,576
//!   entries; durations are capped at about 317 years.
//! - **Retention** by count trims exactly (`XTRIM MAXLEN`), by bytes and age whole
//!   batches (`XTRIM MINID`) at each publish to the partition; age is also applied
//!   when a partition is read or reported.
//!
//! [hash tag]: https://redis.io/docs/latest/operate/oss_and_stack/reference/cluster-spec/#hash-tags

mod admin;
mod codec;
mod conn;
mod poll;
mod publish;
mod topics;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use redis::{Script, Value};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::time::Instant;

use self::codec::reply;
use self::conn::{BLOCK_CAP, Connections, eval_cmd};
use crate::rules::{self, check_name};
use crate::{
    Chunk, Dedup, Event, EventId, EventLog, GroupInfo, MemberInfo, Offset, Options, PartitionInfo,
    PendingEntry, Polled, Record, Result, Retention, SeekTo, Slice, TopicInfo, TopicOptions,
    key_hash,
};

/// What can go wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not one this backend understands.
    #[error("invalid Redis URL {url:?}: {detail}")]
    Url {
        /// The URL (without credentials).
        url: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The prefix would break the key layout.
    #[error(
        "invalid key prefix {0:?}: expected 1 to 100 characters from [A-Za-z0-9._:-] \
         (no braces: they would change the keys' hash slot)"
    )]
    Prefix(String),
    /// The server could not be reached.
    #[error("cannot connect to Redis at {address}: {detail}; is the server running?")]
    Connect {
        /// The server (without credentials).
        address: String,
        /// The client's error.
        detail: String,
    },
    /// A request failed.
    #[error("Redis at {address}: {op} failed: {detail}")]
    Request {
        /// The server (without credentials).
        address: String,
        /// What was being done.
        op: &'static str,
        /// The server's or client's error.
        detail: String,
    },
    /// A script answered something this version does not understand: the keys were
    /// written by another program or version.
    #[error(
        "Redis at {address}: unexpected reply while {op}: {detail}; are other programs \
         or versions writing under the same prefix?"
    )]
    Reply {
        /// The server (without credentials).
        address: String,
        /// What was being done.
        op: &'static str,
        /// What was expected and what came.
        detail: String,
    },
    /// An event cannot be stored in this backend's entry format.
    #[error("event #{index} in the batch cannot be stored in Redis: {what}")]
    Encode {
        /// Position of the event in the published batch.
        index: usize,
        /// What is too large.
        what: &'static str,
    },
}

/// How to reach Redis, and the log's options.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://[user:password@]host:port[/db]` for one server,
    /// `redis+cluster://[user:password@]host:port,host:port,...` for a Redis Cluster
    /// (any reachable nodes; the rest are discovered).
    pub url: String,
    /// Starts every key, so that several logs (deployments, tests) share a server.
    /// Characters from `[A-Za-z0-9._:-]`.
    pub prefix: String,
    /// Limits and topic defaults.
    pub log: Options,
    /// How long a request may take before it fails (a publish of a large batch is one
    /// request).
    pub response_timeout: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        RedisOptions {
            url: "redis://127.0.0.1:6379".into(),
            prefix: "baton".into(),
            log: Options::default(),
            response_timeout: Duration::from_secs(30),
        }
    }
}

/// The scripts, with their shared helpers in front.
struct Scripts {
    publish: Script,
    poll: Script,
    ack: Script,
    nack: Script,
    pending: Script,
    group_info: Script,
    topic_info: Script,
    read: Script,
    offsets: Script,
    seek: Script,
    /// The body of `append.lua` without comments and indentation, sent with `EVAL`
    /// inside a transaction (see [`RedisLog::append`]).
    append: String,
}

/// A script's text without comment lines and indentation: shorter to send with
/// `EVAL` (the scripts have no multi-line strings, so this keeps their meaning).
fn compact(code: &str) -> String {
    let mut out = String::with_capacity(code.len() / 2);
    for line in code
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
    {
        out.push_str(line);
        out.push('\n');
    }
    out
}

macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/common.lua"),
            "\n",
            include_str!(concat!("lua/", $file))
        ))
    };
}

impl Scripts {
    fn new() -> Self {
        Scripts {
            publish: script!("publish.lua"),
            poll: script!("poll.lua"),
            ack: script!("ack.lua"),
            nack: script!("nack.lua"),
            pending: script!("pending.lua"),
            group_info: script!("group_info.lua"),
            topic_info: script!("topic_info.lua"),
            read: script!("read.lua"),
            offsets: script!("offsets.lua"),
            seek: script!("seek.lua"),
            append: compact(concat!(
                include_str!("lua/common.lua"),
                "\n",
                include_str!("lua/append.lua")
            )),
        }
    }

    fn all(&self) -> [&Script; 10] {
        [
            &self.publish,
            &self.poll,
            &self.ack,
            &self.nack,
            &self.pending,
            &self.group_info,
            &self.topic_info,
            &self.read,
            &self.offsets,
            &self.seek,
        ]
    }
}

/// The longest duration the scripts handle, in ms (about 317 years): Lua prints
/// numbers of 14 digits or more in exponent form, which Redis commands refuse.
const MAX_MS: u64 = 10_000_000_000_000;

/// Most entries one poll, pending or read call returns.
const MAX_PER_CALL: usize = 1 << 20;

/// Whole milliseconds, at most [`MAX_MS`].
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).min(MAX_MS)
}

/// Whole milliseconds, at least 1 (Redis counts idle times in ms).
fn ms_at_least_1(d: Duration) -> u64 {
    ms(d).max(1)
}

/// The keys of one partition.
struct Part {
    stream: String,
    index: String,
    state: String,
}

/// A topic as this process knows it: options (fixed at creation) and key names.
struct Topic {
    name: String,
    options: TopicOptions,
    /// `prefix:{name}`: every key of the topic starts with it.
    tag: String,
    groups: String,
    parts: Vec<Part>,
    /// The dedup window's state and its two generations, for all partitions.
    dedup: [String; 3],
    /// Retention bounds per partition, in the scripts' units (0: none).
    max_events: u64,
    max_bytes: u64,
    max_age_ms: u64,
    dedup_ids: u64,
    dedup_age_ms: u64,
    visibility_ms: u64,
}

impl Topic {
    fn new(prefix: &str, name: &str, options: TopicOptions) -> Self {
        let tag = format!("{prefix}:{{{name}}}");
        let n = u64::from(options.partitions);
        let parts = (0..options.partitions)
            .map(|p| {
                let stream = format!("{tag}:p{p}");
                Part {
                    index: format!("{stream}:i"),
                    state: format!("{stream}:s"),
                    stream,
                }
            })
            .collect();
        let r = &options.retention;
        Topic {
            name: name.to_owned(),
            groups: format!("{tag}:groups"),
            parts,
            dedup: ["d", "d0", "d1"].map(|w| format!("{tag}:{w}")),
            max_events: r.max_events.map_or(0, |m| m.div_ceil(n)),
            max_bytes: r.max_bytes.map_or(0, |m| m.div_ceil(n)),
            max_age_ms: r.max_age.map_or(0, ms_at_least_1),
            dedup_ids: options.dedup.max_ids as u64,
            dedup_age_ms: ms(options.dedup.max_age),
            visibility_ms: ms_at_least_1(options.visibility_timeout),
            tag,
            options,
        }
    }

    fn group_key(&self, group: &str, what: &str) -> String {
        format!("{}:g:{group}:{what}", self.tag)
    }

    fn partitions(&self) -> u32 {
        self.options.partitions
    }

    fn check_partition(&self, partition: u32) -> Result<()> {
        rules::check_partition(&self.name, partition, self.partitions())
    }
}

/// The ID of the stream entry at `offset`.
fn entry_id(offset: u64) -> String {
    format!("0-{}", offset + 1)
}

/// An event log in Redis Streams. Cloning gives another handle to the same log; all
/// handles share one multiplexed connection.
#[derive(Clone)]
pub struct RedisLog {
    inner: Arc<Inner>,
}

struct Inner {
    conns: Connections,
    prefix: String,
    options: Options,
    scripts: Scripts,
    topics: RwLock<HashMap<String, Arc<Topic>>>,
    closed: AtomicBool,
    closing: watch::Sender<bool>,
    /// Spreads the partition a poll starts with.
    rr: AtomicUsize,
}

fn check_prefix(prefix: &str) -> Result<(), Error> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 100
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(Error::Prefix(prefix.to_owned()))
    }
}

/// Groups `(partition, offset)` pairs by partition, in partition order, each list
/// sorted and without repeats.
fn by_partition(t: &Topic, ids: &[Offset]) -> Result<Vec<(u32, Vec<u64>)>> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out: Vec<(u32, Vec<u64>)> = Vec::new();
    for o in sorted {
        t.check_partition(o.partition)?;
        match out.last_mut() {
            Some((p, list)) if *p == o.partition => list.push(o.offset),
            _ => out.push((o.partition, vec![o.offset])),
        }
    }
    Ok(out)
}

impl RedisLog {
    /// Connects, checks the options and loads the scripts.
    pub async fn open(options: RedisOptions) -> Result<Self> {
        options.log.topic_defaults.validate()?;
        check_prefix(&options.prefix)?;
        let conns = Connections::connect(&options.url, options.response_timeout).await?;
        let scripts = Scripts::new();
        for s in scripts.all() {
            conns.load(s).await?;
        }
        Ok(RedisLog {
            inner: Arc::new(Inner {
                conns,
                prefix: options.prefix,
                options: options.log,
                scripts,
                topics: RwLock::new(HashMap::new()),
                closed: AtomicBool::new(false),
                closing: watch::channel(false).0,
                rr: AtomicUsize::new(0),
            }),
        })
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The name of a partition's stream key (for tools such as `redis-cli`).
    pub fn stream_key(&self, topic: &str, partition: u32) -> String {
        format!("{}:{{{topic}}}:p{partition}", self.inner.prefix)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(crate::Error::Closed)
        } else {
            Ok(())
        }
    }

    fn reply_err(&self, op: &'static str, detail: String) -> crate::Error {
        Error::Reply {
            address: self.inner.conns.address.clone(),
            op,
            detail,
        }
        .into()
    }
}

impl EventLog for RedisLog {
    async fn create_topic(&self, topic: &str, options: TopicOptions) -> Result<()> {
        topics::create_topic(self, topic, options).await
    }

    async fn publish(&self, topic: &str, batch: Vec<Event>) -> Result<Vec<Offset>> {
        publish::publish(self, topic, batch).await
    }

    async fn poll(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Polled> {
        poll::poll(self, topic, group, member, max, wait).await
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[Offset]) -> Result<usize> {
        poll::ack(self, topic, group, ids).await
    }

    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ids: &[Offset],
        delay: Duration,
    ) -> Result<usize> {
        poll::nack(self, topic, group, ids, delay).await
    }

    async fn pending(&self, topic: &str, group: &str, limit: usize) -> Result<Vec<PendingEntry>> {
        admin::pending(self, topic, group, limit).await
    }

    async fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        admin::groups(self, topic).await
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>> {
        admin::topics(self).await
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        admin::read(self, topic, partition, from, max).await
    }

    async fn offsets_at(&self, topic: &str, time_ms: u64) -> Result<Vec<Offset>> {
        admin::offsets_at(self, topic, time_ms).await
    }

    async fn seek(&self, topic: &str, group: &str, to: SeekTo) -> Result<()> {
        admin::seek(self, topic, group, to).await
    }

    async fn close(&self) -> Result<()> {
        admin::close(self).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_topic_share_its_hash_tag() {
        let t = Topic::new("baton", "runs.events", TopicOptions::default());
        let tag = "{runs.events}";
        assert_eq!(t.parts[3].stream, "baton:{runs.events}:p3");
        for key in t
            .parts
            .iter()
            .flat_map(|p| [&p.stream, &p.index, &p.state])
            .chain(&t.dedup)
            .chain([&t.groups, &t.group_key("g", "o"), &t.group_key("g", "h")])
        {
            assert!(key.starts_with("baton:"), "{key}");
            // The first {...} of a key decides its cluster slot.
            let open = key.find('{').unwrap();
            let close = key[open..].find('}').unwrap() + open;
            assert_eq!(&key[open..=close], tag, "{key}");
        }
    }

    #[test]
    fn prefixes_cannot_move_keys_to_other_slots() {
        assert!(check_prefix("baton").is_ok());
        assert!(check_prefix("test:run-1.a_b").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a{b}").is_err());
        assert!(check_prefix("a b").is_err());
    }
}
