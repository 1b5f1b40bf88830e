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
//! | `baton:{t}:p3:s` | hash | partition 3's end offset, retained bytes, dedup generation |
//! | `baton:{t}:p3:d0`, `:d1` | hash | partition 3's dedup window: event id → offset |
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

mod codec;
mod conn;

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

/// Topic options as stored in `…:meta` (every duration exact, in nanoseconds).
#[derive(Serialize, Deserialize)]
struct Stored {
    partitions: u32,
    visibility_timeout_ns: u64,
    max_deliveries: u32,
    dedup_max_ids: usize,
    dedup_max_age_ns: u64,
    retention_max_events: Option<u64>,
    retention_max_bytes: Option<u64>,
    retention_max_age_ns: Option<u64>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl From<&TopicOptions> for Stored {
    fn from(o: &TopicOptions) -> Self {
        Stored {
            partitions: o.partitions,
            visibility_timeout_ns: nanos(o.visibility_timeout),
            max_deliveries: o.max_deliveries,
            dedup_max_ids: o.dedup.max_ids,
            dedup_max_age_ns: nanos(o.dedup.max_age),
            retention_max_events: o.retention.max_events,
            retention_max_bytes: o.retention.max_bytes,
            retention_max_age_ns: o.retention.max_age.map(nanos),
        }
    }
}

impl From<Stored> for TopicOptions {
    fn from(s: Stored) -> Self {
        TopicOptions {
            partitions: s.partitions,
            retention: Retention {
                max_events: s.retention_max_events,
                max_bytes: s.retention_max_bytes,
                max_age: s.retention_max_age_ns.map(Duration::from_nanos),
            },
            dedup: Dedup {
                max_ids: s.dedup_max_ids,
                max_age: Duration::from_nanos(s.dedup_max_age_ns),
            },
            visibility_timeout: Duration::from_nanos(s.visibility_timeout_ns),
            max_deliveries: s.max_deliveries,
        }
    }
}

/// The longest duration the scripts handle, in ms (about 317 years): Lua prints
/// numbers of 14 digits or more in exponent form, which Redis commands refuse.
const MAX_MS: u64 = 10_000_000_000_000;

/// Events per partition from which a publish without dedup goes as a transaction of
/// plain `XADD`s (see [`RedisLog::append`]).
const APPEND_MIN_SHARE: usize = 32;

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
    dedup: [String; 2],
}

/// A topic as this process knows it: options (fixed at creation) and key names.
struct Topic {
    name: String,
    options: TopicOptions,
    /// `prefix:{name}`: every key of the topic starts with it.
    tag: String,
    groups: String,
    parts: Vec<Part>,
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
                    dedup: [format!("{stream}:d0"), format!("{stream}:d1")],
                    stream,
                }
            })
            .collect();
        let r = &options.retention;
        Topic {
            name: name.to_owned(),
            groups: format!("{tag}:groups"),
            parts,
            max_events: r.max_events.map_or(0, |m| m.div_ceil(n)),
            max_bytes: r.max_bytes.map_or(0, |m| m.div_ceil(n)),
            max_age_ms: r.max_age.map_or(0, ms_at_least_1),
            dedup_ids: (options.dedup.max_ids as u64).div_ceil(n),
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

/// Builds the slices of a poll from `(partition, offset, deliveries, event)` in the
/// order the script delivered them: runs of consecutive offsets of one partition with
/// one delivery count share a chunk.
fn slices(delivered: Vec<(u32, u64, u32, Event)>) -> Polled {
    let mut out = Polled::new();
    let mut run: Vec<Event> = Vec::new();
    let mut head: Option<(u32, u64, u32)> = None;
    let flush = |out: &mut Polled, head: Option<(u32, u64, u32)>, run: &mut Vec<Event>| {
        if let Some((p, base, d)) = head {
            let events = std::mem::take(run);
            let len = events.len();
            out.push(Slice::new(
                p,
                d,
                Arc::new(Chunk::new(base, 0, events)),
                0..len,
            ));
        }
    };
    for (p, o, d, e) in delivered {
        let continues =
            head.is_some_and(|(hp, base, hd)| hp == p && hd == d && base + run.len() as u64 == o);
        if !continues {
            flush(&mut out, head, &mut run);
            head = Some((p, o, d));
        }
        run.push(e);
    }
    flush(&mut out, head, &mut run);
    out
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

    /// Deletes every topic under the prefix: events, groups, dedup windows and the
    /// topic list; returns how many topics were deleted. Other processes using the
    /// prefix see the topics vanish (and re-create them with their defaults on next
    /// use), so stop them first. Meant for tests and for tearing a deployment down.
    pub async fn delete_all_topics(&self) -> Result<usize> {
        const OP: &str = "deleting the log";
        self.check_open()?;
        let c = &self.inner.conns;
        let err = |d| self.reply_err(OP, d);
        let registry = format!("{}:topics", self.inner.prefix);
        let mut smembers = redis::cmd("SMEMBERS");
        smembers.arg(&registry);
        let names = reply::array(c.query(OP, &smembers).await?, "topic names").map_err(err)?;
        let deleted = names.len();
        for name in names {
            let name = reply::string(name, "a topic name").map_err(err)?;
            let tag = format!("{}:{{{name}}}", self.inner.prefix);
            let mut smembers = redis::cmd("SMEMBERS");
            smembers.arg(format!("{tag}:groups"));
            let groups = reply::array(c.query(OP, &smembers).await?, "group names").map_err(err)?;
            let mut keys = vec![format!("{tag}:meta"), format!("{tag}:groups")];
            for g in groups {
                let g = reply::string(g, "a group name").map_err(err)?;
                keys.extend(["o", "h", "m"].map(|w| format!("{tag}:g:{g}:{w}")));
            }
            // The partition count may be unknown (options never stored): every
            // partition a topic can have is tried, in slices.
            let partitions = match self.existing(&name).await {
                Ok(t) => t.partitions(),
                Err(crate::Error::UnknownTopic(_)) => 4096,
                Err(e) => return Err(e),
            };
            for p in 0..partitions {
                let s = format!("{tag}:p{p}");
                keys.extend(["i", "s", "d0", "d1"].map(|w| format!("{s}:{w}")));
                keys.push(s);
                if keys.len() >= 500 || p + 1 == partitions {
                    let mut unlink = redis::cmd("UNLINK");
                    unlink.arg(&keys);
                    c.query(OP, &unlink).await?;
                    keys.clear();
                }
            }
            let mut srem = redis::cmd("SREM");
            srem.arg(&registry).arg(&name);
            c.query(OP, &srem).await?;
            self.inner
                .topics
                .write()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&name);
        }
        Ok(deleted)
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

    fn cached(&self, name: &str) -> Option<Arc<Topic>> {
        self.inner
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn remember(&self, t: Topic) -> Arc<Topic> {
        let mut topics = self.inner.topics.write().unwrap_or_else(|e| e.into_inner());
        topics
            .entry(t.name.clone())
            .or_insert_with(|| Arc::new(t))
            .clone()
    }

    fn meta_key(&self, name: &str) -> String {
        format!("{}:{{{name}}}:meta", self.inner.prefix)
    }

    fn decode_meta(&self, raw: Value) -> Result<TopicOptions> {
        let raw = reply::bytes(raw, "the topic's options")
            .map_err(|d| self.reply_err("reading a topic", d))?;
        let stored: Stored = serde_json::from_slice(&raw)
            .map_err(|e| self.reply_err("reading a topic", format!("topic options: {e}")))?;
        Ok(stored.into())
    }

    /// Creates the topic in Redis unless it exists; returns it as stored. With
    /// `explicit`, different stored options are an error.
    async fn create(&self, name: &str, options: Option<TopicOptions>) -> Result<Arc<Topic>> {
        check_name("topic", name)?;
        let explicit = options.is_some();
        let options = options
            .unwrap_or_else(|| rules::topic_defaults(&self.inner.options.topic_defaults, name));
        options.validate()?;
        let existing = match self.cached(name) {
            Some(t) => t,
            None => {
                self.check_open()?;
                let c = &self.inner.conns;
                let json = serde_json::to_vec(&Stored::from(&options))?;
                // Registered first: a topic whose options never got stored is skipped
                // by `topics`, while the opposite would hide a topic.
                let mut sadd = redis::cmd("SADD");
                sadd.arg(format!("{}:topics", self.inner.prefix)).arg(name);
                c.query("registering a topic", &sadd).await?;
                let mut set = redis::cmd("SET");
                set.arg(self.meta_key(name)).arg(json).arg("NX").arg("GET");
                let stored = match c.query("creating a topic", &set).await? {
                    Value::Nil => options.clone(),
                    raw => self.decode_meta(raw)?,
                };
                self.remember(Topic::new(&self.inner.prefix, name, stored))
            }
        };
        rules::check_same(name, &existing.options, explicit.then_some(&options))?;
        Ok(existing)
    }

    /// A topic that must exist.
    async fn existing(&self, name: &str) -> Result<Arc<Topic>> {
        if let Some(t) = self.cached(name) {
            return Ok(t);
        }
        self.check_open()?;
        let mut get = redis::cmd("GET");
        get.arg(self.meta_key(name));
        match self.inner.conns.query("reading a topic", &get).await? {
            Value::Nil => Err(crate::Error::UnknownTopic(name.to_owned())),
            raw => {
                let options = self.decode_meta(raw)?;
                Ok(self.remember(Topic::new(&self.inner.prefix, name, options)))
            }
        }
    }

    async fn topic_or_create(&self, name: &str) -> Result<Arc<Topic>> {
        match self.cached(name) {
            Some(t) => Ok(t),
            None => self.create(name, None).await,
        }
    }

    fn check_batch(&self, batch: &[Event]) -> Result<()> {
        rules::check_batch_with(&self.inner.options.limits, batch, |index, e| {
            Ok(codec::check(e, index)?)
        })
    }

    async fn publish_to(&self, t: &Topic, batch: &[Event]) -> Result<Vec<Offset>> {
        self.check_open()?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        const OP: &str = "publishing";
        let n = t.partitions();
        let mut shares: Vec<Vec<usize>> = vec![Vec::new(); n as usize];
        // With dedup, an id repeated in the batch (within a partition) is sent once and
        // gets the offset of its first occurrence: `(position, first position)`.
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        let mut firsts: HashMap<(u32, u128), usize, foldhash::fast::RandomState> =
            HashMap::default();
        let dedup = t.dedup_ids > 0 && batch.len() > 1;
        for (i, e) in batch.iter().enumerate() {
            let p = (key_hash(&e.key) % u64::from(n)) as u32;
            if dedup {
                match firsts.entry((p, e.id.0)) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        repeats.push((i, *first.get()));
                        continue;
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(i);
                    }
                }
            }
            shares[p as usize].push(i);
        }
        let touched: Vec<u32> = (0..n).filter(|&p| !shares[p as usize].is_empty()).collect();
        if t.dedup_ids == 0 && batch.len() >= APPEND_MIN_SHARE * touched.len() {
            return self.append(t, batch, &shares, &touched).await;
        }
        let mut keys = Vec::with_capacity(touched.len() * 5);
        for &p in &touched {
            let part = &t.parts[p as usize];
            keys.extend([
                part.stream.as_str(),
                part.index.as_str(),
                part.state.as_str(),
                part.dedup[0].as_str(),
                part.dedup[1].as_str(),
            ]);
        }
        let mut cmd = eval_cmd(&self.inner.scripts.publish, &keys);
        cmd.arg(t.max_events)
            .arg(t.max_bytes)
            .arg(t.max_age_ms)
            .arg(t.dedup_ids)
            .arg(t.dedup_age_ms)
            .arg(codec::SIZE_DELTA);
        let mut buf = Vec::with_capacity(256);
        for &p in &touched {
            let share = &shares[p as usize];
            cmd.arg(share.len());
            for &i in share {
                codec::encode(&batch[i], &mut buf);
                cmd.arg(&buf[..]);
            }
        }
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.publish, &cmd)
            .await?;
        let err = |d| self.reply_err(OP, d);
        let per_part = reply::array(reply, "one reply per partition").map_err(err)?;
        if per_part.len() != touched.len() {
            return Err(err(format!(
                "{} partition replies for {} partitions",
                per_part.len(),
                touched.len()
            )));
        }
        let mut offsets = vec![Offset::default(); batch.len()];
        for (&p, res) in touched.iter().zip(per_part) {
            let res = reply::array(res, "base offset and duplicates").map_err(err)?;
            let base = res
                .first()
                .ok_or_else(|| err("an empty partition reply".into()))
                .and_then(|v| reply::uint(v, "the base offset").map_err(err))?;
            let mut dups = res[1..].chunks_exact(2).peekable();
            let mut next = base;
            for (j, &i) in shares[p as usize].iter().enumerate() {
                let dup = match dups.peek() {
                    Some(pair) if reply::uint(&pair[0], "a position").map_err(err)? == j as u64 => {
                        let o = reply::uint(&pair[1], "an offset").map_err(err)?;
                        dups.next();
                        Some(o)
                    }
                    _ => None,
                };
                offsets[i] = Offset::new(
                    p,
                    dup.unwrap_or_else(|| {
                        next += 1;
                        next - 1
                    }),
                );
            }
        }
        for (i, first) in repeats {
            offsets[i] = offsets[first];
        }
        Ok(offsets)
    }

    /// Publishes without dedup as one transaction: per partition the entries as plain
    /// `XADD … 0-*` (the server numbers them, so they are contiguous within the
    /// transaction) and an `EVAL` of `append.lua` that indexes them, updates the
    /// partition's state and applies retention. Plain `XADD`s cost the server about a
    /// quarter less than the same appends made from Lua, where each argument is copied
    /// twice more; the script, sent whole each time (a missing script would fail
    /// after the entries were added), pays off once a partition's share of the batch
    /// is [`APPEND_MIN_SHARE`] events or more.
    async fn append(
        &self,
        t: &Topic,
        batch: &[Event],
        shares: &[Vec<usize>],
        touched: &[u32],
    ) -> Result<Vec<Offset>> {
        const OP: &str = "publishing";
        // The XADD replies are not marked ignored (the pipeline would keep a hash set
        // of them): the script replies are picked out by position instead.
        let mut pipe = redis::Pipeline::with_capacity(batch.len() + touched.len());
        pipe.atomic();
        let mut buf = Vec::with_capacity(256);
        for &p in touched {
            let part = &t.parts[p as usize];
            let share = &shares[p as usize];
            let mut bytes = 0usize;
            for &i in share {
                codec::encode(&batch[i], &mut buf);
                bytes += buf.len();
                let mut xadd = redis::Cmd::with_capacity(5, part.stream.len() + buf.len() + 8);
                xadd.arg("XADD")
                    .arg(&part.stream)
                    .arg("0-*")
                    .arg("e")
                    .arg(&buf[..]);
                pipe.add_command(xadd);
            }
            pipe.cmd("EVAL")
                .arg(&self.inner.scripts.append)
                .arg(3)
                .arg(&part.stream)
                .arg(&part.index)
                .arg(&part.state)
                .arg(share.len())
                .arg(bytes)
                .arg(codec::SIZE_DELTA)
                .arg(t.max_events)
                .arg(t.max_bytes)
                .arg(t.max_age_ms);
        }
        let reply = self.inner.conns.query_pipe(OP, &pipe).await?;
        let err = |d| self.reply_err(OP, d);
        let replies = reply::array(reply, "the transaction's replies").map_err(err)?;
        if replies.len() != batch.len() + touched.len() {
            return Err(err(format!(
                "{} replies for {} commands",
                replies.len(),
                batch.len() + touched.len()
            )));
        }
        // Each partition's replies: its entries' IDs, then the script's base offset,
        // which must be the first entry's.
        let mut at = 0;
        let mut bases = Vec::with_capacity(touched.len());
        for &p in touched {
            let n = shares[p as usize].len();
            let first = reply::string(replies[at].clone(), "an entry ID").map_err(err)?;
            let base = &replies[at + n];
            if reply::uint(base, "a base offset").map_err(err)? + 1
                != first
                    .strip_prefix("0-")
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
            {
                return Err(err(format!(
                    "partition {p}: first entry {first} does not match base offset {base:?}"
                )));
            }
            bases.push(base);
            at += n + 1;
        }
        let mut offsets = vec![Offset::default(); batch.len()];
        for ((&p, base), share) in touched
            .iter()
            .zip(&bases)
            .zip(touched.iter().map(|&p| &shares[p as usize]))
        {
            let base = reply::uint(base, "a base offset").map_err(err)?;
            for (k, &i) in share.iter().enumerate() {
                offsets[i] = Offset::new(p, base + k as u64);
            }
        }
        Ok(offsets)
    }

    /// One pass of a poll. Returns what was delivered, what ran out of deliveries,
    /// how long until something held becomes claimable, whether a partition was
    /// skipped because another member holds it, and where to wait for new events.
    async fn poll_once(
        &self,
        t: &Topic,
        group: &str,
        member: &str,
        max: usize,
        scan: bool,
    ) -> Result<PollPass> {
        const OP: &str = "polling";
        let mut keys = vec![
            t.groups.clone(),
            t.group_key(group, "o"),
            t.group_key(group, "h"),
            t.group_key(group, "m"),
        ];
        keys.extend(t.parts.iter().map(|p| p.stream.clone()));
        let first = self.inner.rr.fetch_add(1, Ordering::Relaxed) % t.parts.len();
        let mut cmd = eval_cmd(&self.inner.scripts.poll, &keys);
        cmd.arg(group)
            .arg(member)
            .arg(max.min(MAX_PER_CALL))
            .arg(t.visibility_ms)
            .arg(t.options.max_deliveries)
            .arg(first)
            .arg(if scan { "1" } else { "0" });
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.poll, &cmd)
            .await?;
        let err = |d| self.reply_err(OP, d);
        let mut parts = reply::array(reply, "the poll's five results").map_err(err)?;
        if parts.len() != 5 {
            return Err(err(format!("{} results instead of 5", parts.len())));
        }
        let waits =
            reply::array(parts.pop().unwrap_or_default(), "the streams to wait on").map_err(err)?;
        let blocked = reply::int(&parts[3], "the blocked flag").map_err(err)? == 1;
        let wake = reply::int(&parts[2], "the wake time").map_err(err)?;
        let dead = self
            .deliveries(std::mem::take(&mut parts[1]), t)
            .map_err(err)?;
        let delivered = self
            .delivered(std::mem::take(&mut parts[0]), t)
            .map_err(err)?;
        let mut wait_on = Vec::with_capacity(waits.len() / 2);
        let mut it = waits.into_iter();
        while let (Some(k), Some(id)) = (it.next(), it.next()) {
            wait_on.push((
                reply::string(k, "a stream key").map_err(err)?,
                reply::string(id, "an entry ID").map_err(err)?,
            ));
        }
        Ok(PollPass {
            delivered,
            dead,
            wake: u64::try_from(wake).ok().map(Duration::from_millis),
            blocked,
            wait_on,
        })
    }

    /// Parses `{partition, deliveries, entries}` groups, entries as `XREADGROUP`
    /// returns them: `{ID, {field, encoded event}}`.
    fn delivered(
        &self,
        v: Value,
        t: &Topic,
    ) -> std::result::Result<Vec<(u32, u64, u32, Event)>, String> {
        let groups = reply::array(v, "delivered groups")?;
        let mut out = Vec::new();
        for g in groups {
            let mut g = reply::array(g, "partition, deliveries and entries")?.into_iter();
            let (Some(p), Some(d), Some(entries)) = (g.next(), g.next(), g.next()) else {
                return Err("a delivered group of fewer than 3 items".into());
            };
            let p = reply::uint(&p, "a partition")?;
            let p = u32::try_from(p)
                .ok()
                .filter(|&p| p < t.partitions())
                .ok_or_else(|| format!("partition {p} out of range"))?;
            let d = u32::try_from(reply::uint(&d, "a delivery count")?).unwrap_or(u32::MAX);
            let entries = reply::array(entries, "entries")?;
            out.reserve(entries.len());
            for e in entries {
                let mut e = reply::array(e, "an entry")?.into_iter();
                let (Some(id), Some(fields)) = (e.next(), e.next()) else {
                    return Err("an entry without ID or fields".into());
                };
                let id = reply::string(id, "an entry ID")?;
                let o = id
                    .strip_prefix("0-")
                    .and_then(|s| s.parse::<u64>().ok())
                    .and_then(|s| s.checked_sub(1))
                    .ok_or_else(|| format!("entry ID {id:?} is not one of this log's"))?;
                let blob = reply::array(fields, "an entry's fields")?
                    .into_iter()
                    .nth(1)
                    .ok_or_else(|| format!("entry {id} has no event field"))?;
                let event = codec::decode(reply::bytes(blob, "an entry")?)
                    .map_err(|e| format!("entry {p}:{o} of topic {:?}: {e}", t.name))?;
                out.push((p, o, d, event));
            }
        }
        Ok(out)
    }

    /// Parses flat `{partition, offset, deliveries, encoded event}` quadruples.
    fn deliveries(
        &self,
        v: Value,
        t: &Topic,
    ) -> std::result::Result<Vec<(u32, u64, u32, Event)>, String> {
        let flat = reply::array(v, "deliveries")?;
        let mut out = Vec::with_capacity(flat.len() / 4);
        let mut it = flat.into_iter();
        while let (Some(p), Some(o), Some(d), Some(e)) =
            (it.next(), it.next(), it.next(), it.next())
        {
            let p = reply::uint(&p, "a partition")?;
            let p = u32::try_from(p)
                .ok()
                .filter(|&p| p < t.partitions())
                .ok_or_else(|| format!("partition {p} out of range"))?;
            let o = reply::uint(&o, "an offset")?;
            let d = u32::try_from(reply::uint(&d, "a delivery count")?).unwrap_or(u32::MAX);
            let event = codec::decode(reply::bytes(e, "an entry")?)
                .map_err(|e| format!("entry {p}:{o} of topic {:?}: {e}", t.name))?;
            out.push((p, o, d, event));
        }
        Ok(out)
    }

    /// Moves events that ran out of deliveries to the dead-letter topic, then
    /// acknowledges them in the group.
    async fn dead_letter(
        &self,
        t: &Topic,
        group: &str,
        dead: Vec<(u32, u64, u32, Event)>,
    ) -> Result<()> {
        let dlq_name = crate::dead_letter_topic(&t.name);
        let dlq = self.topic_or_create(&dlq_name).await?;
        let reason = Bytes::from(format!(
            "not acknowledged after {} deliveries",
            t.options.max_deliveries
        ));
        let mut batch = Vec::with_capacity(dead.len());
        let mut offsets = Vec::with_capacity(dead.len());
        for (p, o, deliveries, mut e) in dead {
            let offset = Offset::new(p, o);
            tracing::warn!(
                topic = %t.name, group, offset = %offset, deliveries,
                "event exhausted its deliveries; moving it to the dead-letter topic"
            );
            let original = e.id;
            // A fresh id: two groups dead-lettering one event must both be recorded.
            e.id = EventId::generate();
            e.headers.extend([
                ("dlq.reason".to_owned(), reason.clone()),
                ("dlq.topic".to_owned(), Bytes::from(t.name.clone())),
                ("dlq.group".to_owned(), Bytes::from(group.to_owned())),
                ("dlq.offset".to_owned(), Bytes::from(offset.to_string())),
                (
                    "dlq.deliveries".to_owned(),
                    Bytes::from(deliveries.to_string()),
                ),
                ("dlq.event_id".to_owned(), Bytes::from(original.to_string())),
            ]);
            batch.push(e);
            offsets.push(offset);
        }
        self.publish_to(&dlq, &batch).await?;
        self.ack_in(t, group, &offsets).await?;
        Ok(())
    }

    async fn ack_in(&self, t: &Topic, group: &str, ids: &[Offset]) -> Result<usize> {
        const OP: &str = "acknowledging";
        let parts = by_partition(t, ids)?;
        let mut keys = vec![t.groups.clone(), t.group_key(group, "h")];
        keys.extend(
            parts
                .iter()
                .map(|(p, _)| t.parts[*p as usize].stream.clone()),
        );
        let mut cmd = eval_cmd(&self.inner.scripts.ack, &keys);
        cmd.arg(group);
        for (p, offsets) in &parts {
            cmd.arg(p).arg(offsets.len());
            for &o in offsets {
                cmd.arg(entry_id(o));
            }
        }
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.ack, &cmd)
            .await?;
        self.count_or_unknown_group(OP, &reply, t, group)
    }

    fn count_or_unknown_group(
        &self,
        op: &'static str,
        reply: &Value,
        t: &Topic,
        group: &str,
    ) -> Result<usize> {
        match reply::int(reply, "a count").map_err(|d| self.reply_err(op, d))? {
            -1 => Err(crate::Error::UnknownGroup {
                topic: t.name.clone(),
                group: group.to_owned(),
            }),
            n => Ok(usize::try_from(n).unwrap_or(0)),
        }
    }

    /// Waits up to `d` for a new entry in one of `streams` (blocking `XREAD` on a
    /// connection of its own), or just `d` if there is none to watch; returns early
    /// with [`Error::Closed`](crate::Error::Closed) when the log is closed.
    async fn wait_for(&self, streams: &[(String, String)], d: Duration) -> Result<()> {
        let mut closing = self.inner.closing.subscribe();
        if *closing.borrow_and_update() {
            return Err(crate::Error::Closed);
        }
        let closed = async move {
            // An error means the log was dropped: as good as closed.
            let _ = closing.changed().await;
        };
        if streams.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(d) => return Ok(()),
                _ = closed => return Err(crate::Error::Closed),
            }
        }
        let conns = &self.inner.conns;
        let mut c = conns.blocker().await?;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(ms_at_least_1(d))
            .arg("STREAMS");
        for (k, _) in streams {
            cmd.arg(k);
        }
        for (_, id) in streams {
            cmd.arg(id);
        }
        let res = tokio::select! {
            r = cmd.query_async::<Value>(&mut c) => Some(r),
            _ = closed => None,
        };
        match res {
            Some(Ok(_)) => {
                conns.give_back(c);
                Ok(())
            }
            Some(Err(e)) => Err(conns.failed("waiting for new events", e).into()),
            // The connection is dropped: its read may still be in flight.
            None => Err(crate::Error::Closed),
        }
    }

    async fn run_offsets_at(&self, t: &Topic, time_ms: u64) -> Result<Vec<u64>> {
        const OP: &str = "finding offsets by time";
        let keys: Vec<&str> = t
            .parts
            .iter()
            .flat_map(|p| [p.stream.as_str(), p.index.as_str(), p.state.as_str()])
            .collect();
        let mut cmd = eval_cmd(&self.inner.scripts.offsets, &keys);
        cmd.arg(time_ms);
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.offsets, &cmd)
            .await?;
        let err = |d| self.reply_err(OP, d);
        let list = reply::array(reply, "one offset per partition").map_err(err)?;
        if list.len() != t.parts.len() {
            return Err(err(format!(
                "{} offsets for {} partitions",
                list.len(),
                t.parts.len()
            )));
        }
        list.iter()
            .map(|v| reply::uint(v, "an offset").map_err(err))
            .collect()
    }
}

/// The outcome of one poll script run.
struct PollPass {
    delivered: Vec<(u32, u64, u32, Event)>,
    dead: Vec<(u32, u64, u32, Event)>,
    wake: Option<Duration>,
    blocked: bool,
    wait_on: Vec<(String, String)>,
}

impl EventLog for RedisLog {
    async fn create_topic(&self, topic: &str, options: TopicOptions) -> Result<()> {
        self.create(topic, Some(options)).await.map(drop)
    }

    async fn publish(&self, topic: &str, batch: Vec<Event>) -> Result<Vec<Offset>> {
        self.check_batch(&batch)?;
        let t = self.topic_or_create(topic).await?;
        self.publish_to(&t, &batch).await
    }

    async fn poll(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Polled> {
        check_name("member", member)?;
        let t = self.topic_or_create(topic).await?;
        check_name("group", group)?;
        let deadline = Instant::now() + wait;
        loop {
            self.check_open()?;
            let pass = self
                .poll_once(&t, group, member, max, !wait.is_zero())
                .await?;
            let had_dead = !pass.dead.is_empty();
            if had_dead {
                self.dead_letter(&t, group, pass.dead).await?;
            }
            if !pass.delivered.is_empty() || max == 0 {
                return Ok(slices(pass.delivered));
            }
            if had_dead {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Polled::new());
            }
            let cap = if pass.blocked {
                Duration::from_millis(100)
            } else {
                BLOCK_CAP
            };
            let mut d = (deadline - now).min(cap);
            if let Some(w) = pass.wake {
                d = d.min(w.max(Duration::from_millis(1)));
            }
            self.wait_for(&pass.wait_on, d).await?;
        }
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[Offset]) -> Result<usize> {
        let t = self.existing(topic).await?;
        self.check_open()?;
        self.ack_in(&t, group, ids).await
    }

    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ids: &[Offset],
        delay: Duration,
    ) -> Result<usize> {
        const OP: &str = "giving deliveries back";
        let t = self.existing(topic).await?;
        self.check_open()?;
        let parts = by_partition(&t, ids)?;
        let mut keys = vec![t.groups.clone(), t.group_key(group, "h")];
        keys.extend(
            parts
                .iter()
                .map(|(p, _)| t.parts[*p as usize].stream.clone()),
        );
        let mut cmd = eval_cmd(&self.inner.scripts.nack, &keys);
        cmd.arg(group).arg(t.visibility_ms).arg(ms(delay));
        for (p, offsets) in &parts {
            cmd.arg(p).arg(offsets.len());
            for &o in offsets {
                cmd.arg(entry_id(o));
            }
        }
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.nack, &cmd)
            .await?;
        self.count_or_unknown_group(OP, &reply, &t, group)
    }

    async fn pending(&self, topic: &str, group: &str, limit: usize) -> Result<Vec<PendingEntry>> {
        const OP: &str = "listing pending deliveries";
        let t = self.existing(topic).await?;
        self.check_open()?;
        let mut keys = vec![t.groups.clone(), t.group_key(group, "h")];
        keys.extend(t.parts.iter().map(|p| p.stream.clone()));
        let mut cmd = eval_cmd(&self.inner.scripts.pending, &keys);
        cmd.arg(group)
            .arg(limit.min(MAX_PER_CALL))
            .arg(t.visibility_ms);
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.pending, &cmd)
            .await?;
        if let Value::Int(_) = reply {
            self.count_or_unknown_group(OP, &reply, &t, group)?;
        }
        let err = |d| self.reply_err(OP, d);
        let flat = reply::array(reply, "pending entries").map_err(err)?;
        let mut out = Vec::with_capacity(flat.len() / 6);
        for e in flat.chunks_exact(6) {
            let p = reply::uint(&e[0], "a partition").map_err(err)?;
            out.push(PendingEntry {
                offset: Offset::new(
                    u32::try_from(p).map_err(|_| err(format!("partition {p}")))?,
                    reply::uint(&e[1], "an offset").map_err(err)?,
                ),
                member: reply::string(e[2].clone(), "a member").map_err(err)?,
                since_ms: reply::uint(&e[3], "a time").map_err(err)?,
                deliveries: u32::try_from(reply::uint(&e[4], "a count").map_err(err)?)
                    .unwrap_or(u32::MAX),
                claimable_at_ms: reply::uint(&e[5], "a time").map_err(err)?,
            });
        }
        Ok(out)
    }

    async fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        const OP: &str = "reporting groups";
        let t = self.existing(topic).await?;
        self.check_open()?;
        let c = &self.inner.conns;
        let err = |d| self.reply_err(OP, d);
        let mut smembers = redis::cmd("SMEMBERS");
        smembers.arg(&t.groups);
        let mut names: Vec<String> = reply::array(c.query(OP, &smembers).await?, "group names")
            .map_err(err)?
            .into_iter()
            .map(|v| reply::string(v, "a group name").map_err(err))
            .collect::<Result<_>>()?;
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let mut keys = vec![t.group_key(&name, "m")];
            for p in &t.parts {
                keys.push(p.stream.clone());
                keys.push(p.state.clone());
            }
            let mut cmd = eval_cmd(&self.inner.scripts.group_info, &keys);
            cmd.arg(&name);
            let reply = c.eval(OP, &self.inner.scripts.group_info, &cmd).await?;
            let mut r = reply::array(reply, "parts, held and members").map_err(err)?;
            if r.len() != 3 {
                return Err(err(format!("{} results instead of 3", r.len())));
            }
            let seen = reply::array(r.pop().unwrap_or_default(), "members").map_err(err)?;
            let held = reply::array(r.pop().unwrap_or_default(), "held counts").map_err(err)?;
            let parts = reply::array(r.pop().unwrap_or_default(), "partitions").map_err(err)?;
            let mut held_by: HashMap<String, u64> = HashMap::new();
            for pair in held.chunks_exact(2) {
                let m = reply::string(pair[0].clone(), "a member").map_err(err)?;
                *held_by.entry(m).or_default() += reply::uint(&pair[1], "a count").map_err(err)?;
            }
            let mut members: Vec<MemberInfo> = Vec::with_capacity(seen.len() / 2);
            for pair in seen.chunks_exact(2) {
                let name = reply::string(pair[0].clone(), "a member").map_err(err)?;
                members.push(MemberInfo {
                    pending: held_by.remove(&name).unwrap_or(0),
                    last_seen_ms: reply::uint(&pair[1], "a time").map_err(err)?,
                    name,
                });
            }
            // Holders the member list does not know (their entry was removed by hand).
            members.extend(held_by.into_iter().map(|(name, pending)| MemberInfo {
                name,
                last_seen_ms: 0,
                pending,
            }));
            members.sort_by(|a, b| a.name.cmp(&b.name));
            let (mut pending, mut lag, mut committed) = (0, 0, Vec::with_capacity(t.parts.len()));
            for (p, v) in parts.chunks_exact(3).enumerate() {
                committed.push(Offset::new(
                    p as u32,
                    reply::uint(&v[0], "an offset").map_err(err)?,
                ));
                pending += reply::uint(&v[1], "a count").map_err(err)?;
                lag += reply::uint(&v[2], "a count").map_err(err)?;
            }
            out.push(GroupInfo {
                name,
                members,
                pending,
                lag,
                committed,
            });
        }
        Ok(out)
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>> {
        const OP: &str = "reporting topics";
        self.check_open()?;
        let c = &self.inner.conns;
        let err = |d| self.reply_err(OP, d);
        let mut smembers = redis::cmd("SMEMBERS");
        smembers.arg(format!("{}:topics", self.inner.prefix));
        let mut names: Vec<String> = reply::array(c.query(OP, &smembers).await?, "topic names")
            .map_err(err)?
            .into_iter()
            .map(|v| reply::string(v, "a topic name").map_err(err))
            .collect::<Result<_>>()?;
        names.sort();
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let t = match self.existing(&name).await {
                Ok(t) => t,
                // Registered by a process that died before storing its options.
                Err(crate::Error::UnknownTopic(_)) => continue,
                Err(e) => return Err(e),
            };
            let mut keys = vec![t.groups.as_str()];
            for p in &t.parts {
                keys.extend([p.stream.as_str(), p.index.as_str(), p.state.as_str()]);
            }
            let mut cmd = eval_cmd(&self.inner.scripts.topic_info, &keys);
            cmd.arg(t.max_events).arg(t.max_bytes).arg(t.max_age_ms);
            let reply = c.eval(OP, &self.inner.scripts.topic_info, &cmd).await?;
            let mut r = reply::array(reply, "partitions and groups").map_err(err)?;
            if r.len() != 2 {
                return Err(err(format!("{} results instead of 2", r.len())));
            }
            let mut groups: Vec<String> = reply::array(r.pop().unwrap_or_default(), "groups")
                .map_err(err)?
                .into_iter()
                .map(|v| reply::string(v, "a group name").map_err(err))
                .collect::<Result<_>>()?;
            groups.sort();
            let parts = reply::array(r.pop().unwrap_or_default(), "partitions").map_err(err)?;
            let partitions = parts
                .chunks_exact(3)
                .map(|v| {
                    Ok(PartitionInfo {
                        start: reply::uint(&v[0], "an offset").map_err(err)?,
                        end: reply::uint(&v[1], "an offset").map_err(err)?,
                        bytes: reply::uint(&v[2], "a size").map_err(err)?,
                    })
                })
                .collect::<Result<_>>()?;
            out.push(TopicInfo {
                name,
                partitions,
                groups,
            });
        }
        Ok(out)
    }

    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        const OP: &str = "reading";
        let t = self.existing(topic).await?;
        t.check_partition(partition)?;
        self.check_open()?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let part = &t.parts[partition as usize];
        let keys = [
            part.stream.as_str(),
            part.index.as_str(),
            part.state.as_str(),
        ];
        let mut cmd = eval_cmd(&self.inner.scripts.read, &keys);
        // Offsets stay far below 2^53 (Lua numbers are doubles).
        cmd.arg(from.min(1 << 53))
            .arg(max.min(MAX_PER_CALL))
            .arg(t.max_events)
            .arg(t.max_bytes)
            .arg(t.max_age_ms);
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.read, &cmd)
            .await?;
        let err = |d| self.reply_err(OP, d);
        let mut r = reply::array(reply, "entries and batches").map_err(err)?;
        if r.len() != 2 {
            return Err(err(format!("{} results instead of 2", r.len())));
        }
        let batches = reply::array(r.pop().unwrap_or_default(), "batches").map_err(err)?;
        let mut times: Vec<(u64, u64)> = Vec::with_capacity(batches.len());
        for b in batches {
            let m = reply::string(b, "a batch").map_err(err)?;
            let mut it = m.split(':').map(str::parse::<u64>);
            match (it.next(), it.next()) {
                (Some(Ok(base)), Some(Ok(ms))) => times.push((base, ms)),
                _ => return Err(err(format!("batch index member {m:?}"))),
            }
        }
        times.sort_unstable();
        let entries = reply::array(r.pop().unwrap_or_default(), "entries").map_err(err)?;
        let mut out = Vec::with_capacity(entries.len() / 2);
        let mut it = entries.into_iter();
        while let (Some(o), Some(e)) = (it.next(), it.next()) {
            let o = reply::uint(&o, "an offset").map_err(err)?;
            let event = codec::decode(reply::bytes(e, "an entry").map_err(err)?)
                .map_err(|e| err(format!("entry {partition}:{o} of topic {topic:?}: {e}")))?;
            let i = times.partition_point(|&(base, _)| base <= o);
            out.push(Record {
                offset: Offset::new(partition, o),
                appended_ms: if i == 0 { 0 } else { times[i - 1].1 },
                event,
            });
        }
        Ok(out)
    }

    async fn offsets_at(&self, topic: &str, time_ms: u64) -> Result<Vec<Offset>> {
        let t = self.existing(topic).await?;
        self.check_open()?;
        let offsets = self.run_offsets_at(&t, time_ms).await?;
        Ok(offsets
            .into_iter()
            .enumerate()
            .map(|(p, o)| Offset::new(p as u32, o))
            .collect())
    }

    async fn seek(&self, topic: &str, group: &str, to: SeekTo) -> Result<()> {
        const OP: &str = "moving a group";
        let t = self.topic_or_create(topic).await?;
        check_name("group", group)?;
        self.check_open()?;
        let n = t.parts.len();
        let targets: Vec<String> = match &to {
            SeekTo::Earliest => vec!["E".into(); n],
            SeekTo::Latest => vec!["L".into(); n],
            SeekTo::Time(ms) => self
                .run_offsets_at(&t, *ms)
                .await?
                .into_iter()
                .map(|o| o.to_string())
                .collect(),
            SeekTo::Offsets(list) => {
                let mut targets = vec!["-".to_owned(); n];
                for o in list {
                    t.check_partition(o.partition)?;
                    targets[o.partition as usize] = o.offset.to_string();
                }
                targets
            }
        };
        let mut keys = vec![
            t.groups.clone(),
            t.group_key(group, "o"),
            t.group_key(group, "h"),
        ];
        for p in &t.parts {
            keys.push(p.stream.clone());
            keys.push(p.state.clone());
        }
        let mut cmd = eval_cmd(&self.inner.scripts.seek, &keys);
        cmd.arg(group);
        for target in &targets {
            cmd.arg(target);
        }
        self.inner
            .conns
            .eval(OP, &self.inner.scripts.seek, &cmd)
            .await?;
        Ok(())
    }

    async fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        self.inner.closing.send_replace(true);
        self.inner.conns.drop_idle();
        Ok(())
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
            .flat_map(|p| [&p.stream, &p.index, &p.state, &p.dedup[0], &p.dedup[1]])
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
    fn stored_options_round_trip_exactly() {
        let o = TopicOptions {
            partitions: 3,
            visibility_timeout: Duration::from_micros(1500),
            retention: Retention {
                max_events: Some(10),
                max_bytes: None,
                max_age: Some(Duration::from_nanos(7)),
            },
            ..TopicOptions::default()
        };
        let json = serde_json::to_vec(&Stored::from(&o)).unwrap();
        let back: TopicOptions = serde_json::from_slice::<Stored>(&json).unwrap().into();
        assert_eq!(back, o);
    }

    #[test]
    fn prefixes_cannot_move_keys_to_other_slots() {
        assert!(check_prefix("baton").is_ok());
        assert!(check_prefix("test:run-1.a_b").is_ok());
        assert!(check_prefix("").is_err());
        assert!(check_prefix("a{b}").is_err());
        assert!(check_prefix("a b").is_err());
    }

    #[test]
    fn slices_split_on_partition_gaps_and_counts() {
        let e = |n: u64| Event::new("t", "k", n.to_string());
        let polled = slices(vec![
            (0, 4, 2, e(1)),
            (0, 5, 2, e(2)),
            (0, 7, 2, e(3)),
            (0, 8, 1, e(4)),
            (1, 9, 1, e(5)),
        ]);
        let shape: Vec<(u32, u64, u32, usize)> = polled
            .slices()
            .iter()
            .map(|s| (s.partition(), s.first_offset(), s.deliveries(), s.len()))
            .collect();
        assert_eq!(
            shape,
            vec![(0, 4, 2, 2), (0, 7, 2, 1), (0, 8, 1, 1), (1, 9, 1, 1)]
        );
        assert_eq!(polled.len(), 5);
    }
}
