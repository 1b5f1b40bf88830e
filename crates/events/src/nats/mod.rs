//! The NATS JetStream backend (cargo feature `nats`).
//!
//! **Durability promise:** what the streams' storage and replication give. Streams use
//! file storage with [`NatsOptions::replicas`] copies: with one replica an acknowledged
//! publish survives a restart of the server and of the client process (the server
//! writes before it acknowledges; it syncs to disk on its own interval, two minutes by
//! default, so a machine crash of the server can lose that much unless the server is
//! configured with `sync_interval: always`); with three on a cluster, the loss of a
//! minority of servers. Delivery state (who holds what, delivery counts, acknowledged
//! offsets) lives in the server's durable consumers and survives both restarts too.
//!
//! # How the trait maps onto JetStream
//!
//! | Baton | JetStream |
//! |---|---|
//! | partition `p` of topic `t` | stream `<prefix>_<t>_<p>` on subject `<prefix>.<t>.<p>` (`.` in names escaped as `_2E`, `_` as `_5F`) |
//! | offset `o` of a partition | stream sequence `o + 1`: contiguous from 0 because nothing but retention removes messages |
//! | topic options | every partition stream's description (JSON), so every process sees the same options |
//! | retention | the stream's `max_msgs`, `max_bytes` (split evenly over partitions) and `max_age`, discarding the oldest |
//! | dedup window | the `Nats-Msg-Id` header (the event id) and the stream's duplicate window |
//! | consumer group | a durable pull consumer named after the group on every partition stream |
//! | visibility timeout, `max_deliveries` | the consumer's `ack_wait` and `max_deliver` |
//! | `ack`, `nack(delay)` | `+ACK`, `-NAK {"delay": ..}` on the delivery's reply subject, awaited |
//! | dead letters | the `MAX_DELIVERIES` advisory, see below |
//! | `read`, `offsets_at` | direct gets by sequence (streams allow direct access); `offsets_at` bisects by the stored time |
//! | `seek` | the group's consumers recreated at a start sequence, or for new messages only |
//!
//! A publish sends every event of the batch with a reply subject (up to
//! [`NatsOptions::publish_window`] in flight) and then collects the publish
//! acknowledgements, so one batch costs about one round trip plus the server's time.
//! A retried event id inside the duplicate window gets the server's duplicate
//! acknowledgement, which on this server carries the original sequence: that offset is
//! returned, as the trait requires.
//!
//! A poll asks each partition's consumer for a share of `max` with no-wait pull
//! requests (one round trip for all partitions), then gives what is left to the
//! partitions that had more. A poll that found nothing and may wait subscribes to the
//! topic's subjects, so a publish from any process wakes it, and sleeps until the next
//! visibility deadline it knows of (or [`NatsOptions::recheck_interval`], for deadlines
//! set by other processes).
//!
//! **Dead letters.** When JetStream would deliver a message for the `max_deliver + 1`-th
//! time it sends the advisory `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.<stream>.<consumer>`
//! and stops delivering it. Every `NatsLog` subscribes to these advisories; for one of
//! its prefix it fetches the message by sequence, publishes it to
//! [`dead_letter_topic`] with the `dlq.*` headers, then
//! acknowledges it in the group (so the consumer's acknowledgement floor moves past
//! it). A poll also moves the events this process delivered that have used up their
//! deliveries and whose visibility timeout has passed, before asking the server for
//! more, so the dead letter is visible as soon as that poll returns. Both paths give
//! the dead letter an id derived from topic, group and offset, so the stream's dedup
//! window stores it once however many processes handle it.
//!
//! # Where it differs from the in-process backends
//!
//! - **Key stickiness is per process.** JetStream hands a pull consumer's messages to
//!   whoever pulls. Within one `NatsLog` (and its clones) a member does not receive a
//!   partition's events while another member holds unacknowledged, unexpired events of
//!   it; members in different processes may interleave one partition.
//! - **Pending lists and member lists are this process's view.** JetStream does not list
//!   a consumer's unacknowledged messages. [`pending`](crate::EventLog::pending) lists the
//!   deliveries this process made that are not yet acknowledged (less any the group's
//!   acknowledgement floor has passed); [`groups`](crate::EventLog::groups) takes
//!   `pending`, `lag` and `committed` from the server (group-wide) and members from this
//!   process. `ack` and `nack` count only deliveries this process made; `ack` of another
//!   process's delivery is still applied on the server, `nack` of one is ignored.
//! - **Dedup is bounded by age only.** The duplicate window has no count bound, so
//!   `Dedup::max_ids` only switches dedup off (0). The window is at least 100 ms and at
//!   most the retention age (JetStream's bounds), so a retention age under 100 ms is
//!   refused with `Error::InvalidOptions`. Dedup is per partition: an id republished with
//!   another key lands in another stream and is stored again.
//! - **Retention counts JetStream's bytes and drops single messages.** `max_bytes` bounds
//!   the stream's own accounting (subject, headers and body of each message), and the
//!   oldest messages are dropped one by one, not whole publish batches.
//! - **A dead letter needs a listening process.** An advisory sent while no `NatsLog` of
//!   the prefix is connected is lost: the event is then neither delivered again nor in
//!   the dead-letter topic (the consumer's acknowledgement floor stays below it until a
//!   `seek`).
//! - **Delivery counts survive restarts** (the server keeps them), so after a restart a
//!   member's unacknowledged events come back once their visibility timeout has passed,
//!   not at once.
//! - **Clocks.** Visibility timeouts, nack delays, retention ages and dedup windows run
//!   on the server's clock, not tokio's; they cannot be driven by `tokio::time::pause`.
//! - **Polls without a wait** can take up to 20 ms: the server holds a no-wait pull
//!   request while messages wait out a nack delay (or used up their deliveries), so
//!   such requests carry a 20 ms expiry.
//! - **Limits.** The server's `max_payload` (1 MiB by default) bounds one encoded event
//!   too; raise it on the server for `Limits::max_event_bytes` above about 1 MiB.

mod api;
mod codec;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::{Client, HeaderMap, Message, StatusCode, Subject, Subscriber};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::future::join_all;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::event::now_ms;
use crate::rules::{self, check_name};
use crate::{
    Chunk, Event, EventId, EventLog, GroupInfo, MemberInfo, Offset, Options, PartitionInfo,
    PendingEntry, Polled, Record, Result, SeekTo, Slice, TopicInfo, TopicOptions,
    dead_letter_topic, key_hash,
};

pub use self::api::ApiError;
use self::api::{
    Advisory, ConsumerInfo, ConsumerList, Empty, PubAck, Response, Start, StreamInfo, StreamList,
    StreamNames, StreamState, code, consumer_config, dedup_enabled, describe, parse_description,
    stream_config,
};
use self::codec::{
    decode_event, decode_name, encode_event, encode_name, encoded_len, parse_ack_subject,
};

/// How long the server keeps a no-wait pull request. It answers at once when nothing
/// at all is queued, but holds the request while messages wait for a nack delay or
/// have used up their deliveries; this bounds that wait, so that a poll without a wait
/// does not take events that only become due later.
const NO_WAIT_EXPIRY: Duration = Duration::from_millis(20);

/// How often a poll drops records of deliveries acknowledged by other processes.
const PRUNE_INTERVAL: Duration = Duration::from_secs(30);

/// How long past its expiry a no-wait pull request may stay unanswered before the
/// poll counts it as over. The server (2.9) drops a request that expired while it was
/// busy delivering to others without answering it, and it never delivers to an expired
/// request, so past this margin nothing more can arrive for it.
const PULL_ANSWER_TIMEOUT: Duration = Duration::from_millis(200);

/// Options of a [`NatsLog`].
#[derive(Clone, Debug)]
pub struct NatsOptions {
    /// The server, `nats://host:port`.
    pub url: String,
    /// Namespace of every stream (`<prefix>_...`) and subject (`<prefix>.`...), so that
    /// deployments and tests can share one server: 1 to 32 characters from
    /// `[A-Za-z0-9-]`.
    pub prefix: String,
    /// Limits and topic defaults, as for every backend.
    pub log: Options,
    /// Copies of each stream (1 on a single server; 3 on a cluster).
    pub replicas: usize,
    /// How long one request to the server may take.
    pub request_timeout: Duration,
    /// How often a waiting poll asks again when it knows of no deadline (redeliveries
    /// of deliveries made by other processes are not announced).
    pub recheck_interval: Duration,
    /// Most publishes in flight per `publish` call.
    pub publish_window: usize,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            url: "nats://127.0.0.1:4222".into(),
            prefix: "baton".into(),
            log: Options::default(),
            replicas: 1,
            request_timeout: Duration::from_secs(10),
            recheck_interval: Duration::from_secs(1),
            publish_window: 8192,
        }
    }
}

/// What can go wrong talking to NATS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server could not be reached or refused the connection.
    #[error(
        "cannot connect to NATS at {url}: {reason}; check that nats-server runs with \
         JetStream enabled (`nats-server -js`) and that the URL is nats://host:port"
    )]
    Connect {
        /// The URL tried.
        url: String,
        /// What the client reported.
        reason: String,
    },
    /// The prefix cannot be part of stream names and subjects.
    #[error("invalid NATS prefix {0:?}: expected 1 to 32 characters from [A-Za-z0-9-]")]
    InvalidPrefix(String),
    /// The JetStream API refused a request.
    #[error("JetStream refused {what}: {} (status {}, error code {})", error.description, error.code, error.err_code)]
    Api {
        /// What was being done.
        what: String,
        /// The server's answer.
        error: ApiError,
    },
    /// A request could not be sent or its answer not read.
    #[error("NATS request failed while {what}: {reason}")]
    Request {
        /// What was being done.
        what: String,
        /// Why.
        reason: String,
    },
    /// The server did not answer in time.
    #[error(
        "no answer from NATS within {timeout:?} while {what}; the server may be overloaded \
         or unreachable (raise `NatsOptions::request_timeout` if it is only slow)"
    )]
    Timeout {
        /// What was being done.
        what: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// A stream of the prefix holds something Baton did not write.
    #[error(
        "stream {stream} is in Baton's namespace but {reason}; it was not created by Baton. \
         Use another prefix or delete the stream"
    )]
    Foreign {
        /// The stream.
        stream: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// An event log on NATS JetStream. Cloning gives another handle to the same connection
/// and process-local state.
#[derive(Clone)]
pub struct NatsLog {
    inner: Arc<Inner>,
}

struct Inner {
    client: Client,
    opts: NatsOptions,
    closed: AtomicBool,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    advisories: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.advisories).take() {
            task.abort();
        }
    }
}

/// A topic as this process knows it.
struct Topic {
    name: String,
    options: TopicOptions,
    streams: Vec<String>,
    subjects: Vec<Subject>,
    /// Matches every partition's subject (waiting polls listen to it).
    wildcard: String,
    groups: Mutex<HashMap<String, Arc<Group>>>,
}

/// A consumer group as this process knows it.
struct Group {
    name: String,
    consumer: String,
    /// Whether this process has checked that the group's consumers exist.
    ready: AtomicBool,
    /// Held while checking them: concurrent creations of one durable consumer make the
    /// server drop pull requests already waiting on it.
    ensuring: tokio::sync::Mutex<()>,
    /// Rotates the partition a poll asks first, for fairness when `max` is small.
    next: AtomicUsize,
    state: Mutex<GroupState>,
}

struct GroupState {
    parts: Vec<Part>,
    /// Members seen by this process, with their last poll (ms since the epoch).
    members: BTreeMap<String, u64>,
    /// When deliveries the group's acknowledgement floor has passed were last dropped.
    pruned: Option<Instant>,
}

impl GroupState {
    /// Drops the records of deliveries at or below each partition's acknowledgement
    /// floor: acknowledged, possibly by another process after a redelivery.
    fn prune(&mut self, infos: &[Option<ConsumerInfo>]) {
        for (part, info) in self.parts.iter_mut().zip(infos) {
            if let Some(info) = info {
                let floor = info.ack_floor.stream_seq;
                part.held.retain(|&seq, _| seq > floor);
                if part.held.is_empty() {
                    part.owner = None;
                }
            }
        }
        self.pruned = Some(Instant::now());
    }
}

/// Deliveries of one partition this process made and that are not yet acknowledged.
#[derive(Default)]
struct Part {
    held: BTreeMap<u64, Held>,
    /// The member that last received events of this partition, and until when its
    /// newest delivery keeps the partition (key stickiness within the process).
    owner: Option<(String, Instant)>,
}

impl Part {
    fn held_by_other(&self, member: &str, now: Instant) -> bool {
        match &self.owner {
            Some((m, until)) => m != member && *until > now && !self.held.is_empty(),
            None => false,
        }
    }
}

struct Held {
    reply: Subject,
    member: String,
    since_ms: u64,
    deliveries: u32,
    claimable: Instant,
    claimable_ms: u64,
}

/// One message a poll received.
struct Fetched {
    partition: u32,
    seq: u64,
    deliveries: u32,
    stored_ms: u64,
    reply: Subject,
    event: Event,
}

/// One message read by sequence.
struct Stored {
    seq: u64,
    stored_ms: u64,
    payload: Bytes,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn check_prefix(prefix: &str) -> Result<()> {
    let ok = !prefix.is_empty()
        && prefix.len() <= 32
        && prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidPrefix(prefix.to_owned()).into())
    }
}

fn api_error(what: impl Into<String>, error: ApiError) -> crate::Error {
    Error::Api {
        what: what.into(),
        error,
    }
    .into()
}

fn request_error(what: impl Into<String>, reason: impl ToString) -> crate::Error {
    Error::Request {
        what: what.into(),
        reason: reason.to_string(),
    }
    .into()
}

/// The id of the dead letter of one event in one group: the same in every process,
/// so that the dead-letter topic's dedup window stores it once.
fn dead_letter_id(topic: &str, group: &str, partition: u32, seq: u64) -> EventId {
    let key = format!("{topic}\0{group}\0{partition}\0{seq}");
    let hi = key_hash(key.as_bytes());
    let lo = key_hash(format!("dlq\0{key}").as_bytes());
    EventId((u128::from(hi) << 64) | u128::from(lo))
}

/// The partition a reply subject `<inbox>.<partition or index>` names.
fn reply_index(subject: &Subject) -> Option<usize> {
    subject.as_str().rsplit('.').next()?.parse().ok()
}

impl NatsLog {
    /// Connects to the server and starts listening for max-deliveries advisories.
    pub async fn open(options: NatsOptions) -> Result<Self> {
        check_prefix(&options.prefix)?;
        options.log.topic_defaults.validate()?;
        let client = async_nats::ConnectOptions::new()
            .name("baton-events")
            .request_timeout(Some(options.request_timeout))
            .connect(options.url.as_str())
            .await
            .map_err(|e| Error::Connect {
                url: options.url.clone(),
                reason: e.to_string(),
            })?;
        let inner = Arc::new(Inner {
            client,
            opts: options,
            closed: AtomicBool::new(false),
            topics: Mutex::new(HashMap::new()),
            advisories: Mutex::new(None),
        });
        let log = NatsLog { inner };
        log.api::<Empty>("INFO", &json!({}), "checking that JetStream is enabled")
            .await?
            .map_err(|e| api_error("checking that JetStream is enabled", e))?;
        let sub = log
            .inner
            .client
            .subscribe("$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.*.*")
            .await
            .map_err(|e| request_error("subscribing to max-deliveries advisories", e))?;
        log.inner
            .client
            .flush()
            .await
            .map_err(|e| request_error("subscribing to max-deliveries advisories", e))?;
        let task = tokio::spawn(advisory_loop(Arc::downgrade(&log.inner), sub));
        *lock(&log.inner.advisories) = Some(task);
        Ok(log)
    }

    /// The namespace of this log's streams and subjects.
    pub fn prefix(&self) -> &str {
        &self.inner.opts.prefix
    }

    /// Deletes one topic: its partition streams and with them its groups. Returns
    /// whether it existed.
    pub async fn delete_topic(&self, topic: &str) -> Result<bool> {
        self.check_open()?;
        check_name("topic", topic)?;
        lock(&self.inner.topics).remove(topic);
        let mut found = false;
        for stream in self.stream_names().await? {
            if self
                .parse_stream_name(&stream)
                .is_some_and(|(t, _)| t == topic)
            {
                found |= self.delete_stream(&stream).await?;
            }
        }
        Ok(found)
    }

    /// Deletes every topic of the prefix (their partition streams, and with them
    /// their groups); returns how many topics were deleted. Meant for tests and for
    /// tearing a deployment down.
    pub async fn delete_all_topics(&self) -> Result<usize> {
        self.check_open()?;
        lock(&self.inner.topics).clear();
        let mut deleted = std::collections::HashSet::new();
        for stream in self.stream_names().await? {
            if let Some((topic, _)) = self.parse_stream_name(&stream)
                && self.delete_stream(&stream).await?
            {
                deleted.insert(topic);
            }
        }
        Ok(deleted.len())
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(crate::Error::Closed)
        } else {
            Ok(())
        }
    }

    // ----- names -------------------------------------------------------------------

    fn stream_name(&self, topic: &str, partition: u32) -> String {
        format!(
            "{}_{}_{partition}",
            self.inner.opts.prefix,
            encode_name(topic)
        )
    }

    /// The topic and partition of one of this prefix's streams.
    fn parse_stream_name(&self, stream: &str) -> Option<(String, u32)> {
        let rest = stream
            .strip_prefix(self.inner.opts.prefix.as_str())?
            .strip_prefix('_')?;
        let (topic, partition) = rest.rsplit_once('_')?;
        Some((decode_name(topic)?, partition.parse().ok()?))
    }

    fn new_topic(&self, name: &str, options: TopicOptions) -> Arc<Topic> {
        let prefix = &self.inner.opts.prefix;
        let enc = encode_name(name);
        let n = options.partitions;
        Arc::new(Topic {
            name: name.to_owned(),
            streams: (0..n).map(|p| self.stream_name(name, p)).collect(),
            subjects: (0..n)
                .map(|p| Subject::from(format!("{prefix}.{enc}.{p}")))
                .collect(),
            wildcard: format!("{prefix}.{enc}.*"),
            options,
            groups: Mutex::new(HashMap::new()),
        })
    }

    // ----- requests ----------------------------------------------------------------

    /// One JetStream API request; the outer error is the transport's, the inner the
    /// server's answer.
    async fn api<T: DeserializeOwned>(
        &self,
        subject: &str,
        body: &Value,
        what: &str,
    ) -> Result<std::result::Result<T, ApiError>> {
        let payload = Bytes::from(serde_json::to_vec(body)?);
        let msg = self
            .inner
            .client
            .request(format!("$JS.API.{subject}"), payload)
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::TimedOut => Error::Timeout {
                    what: what.to_owned(),
                    timeout: self.inner.opts.request_timeout,
                }
                .into(),
                RequestErrorKind::NoResponders => request_error(
                    what,
                    "no responders: JetStream is not enabled on this server (start it with -js)",
                ),
                _ => request_error(what, e),
            })?;
        match serde_json::from_slice::<Response<T>>(&msg.payload) {
            Ok(Response::Ok(v)) => Ok(Ok(v)),
            Ok(Response::Err { error }) => Ok(Err(error)),
            Err(e) => Err(request_error(what, format!("unexpected answer: {e}"))),
        }
    }

    async fn stream_info(&self, stream: &str) -> Result<Option<StreamInfo>> {
        let what = format!("reading stream {stream}");
        match self
            .api::<StreamInfo>(&format!("STREAM.INFO.{stream}"), &json!({}), &what)
            .await?
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.err_code == code::STREAM_NOT_FOUND => Ok(None),
            Err(e) => Err(api_error(what, e)),
        }
    }

    async fn delete_stream(&self, stream: &str) -> Result<bool> {
        let what = format!("deleting stream {stream}");
        match self
            .api::<Empty>(&format!("STREAM.DELETE.{stream}"), &json!({}), &what)
            .await?
        {
            Ok(_) => Ok(true),
            Err(e) if e.err_code == code::STREAM_NOT_FOUND => Ok(false),
            Err(e) => Err(api_error(what, e)),
        }
    }

    /// Names of the streams on this prefix's subjects.
    async fn stream_names(&self) -> Result<Vec<String>> {
        let mut out = Vec::new();
        loop {
            let body = json!({"offset": out.len(), "subject": format!("{}.>", self.prefix())});
            let page: StreamNames = self
                .api("STREAM.NAMES", &body, "listing streams")
                .await?
                .map_err(|e| api_error("listing streams", e))?;
            let names = page.streams.unwrap_or_default();
            let done = names.is_empty() || out.len() + names.len() >= page.total as usize;
            out.extend(names);
            if done {
                return Ok(out);
            }
        }
    }

    /// A message of a stream by sequence, or the first at or after it on `subject`.
    async fn direct_get(
        &self,
        stream: &str,
        seq: u64,
        next_on: Option<&Subject>,
    ) -> Result<Option<Stored>> {
        let body = match next_on {
            None => json!({ "seq": seq }),
            Some(s) => json!({ "seq": seq, "next_by_subj": s.as_str() }),
        };
        let what = || format!("reading message {seq} of stream {stream}");
        let msg = self
            .inner
            .client
            .request(
                format!("$JS.API.DIRECT.GET.{stream}"),
                Bytes::from(body.to_string()),
            )
            .await
            .map_err(|e| match e.kind() {
                RequestErrorKind::TimedOut => Error::Timeout {
                    what: what(),
                    timeout: self.inner.opts.request_timeout,
                }
                .into(),
                _ => request_error(what(), e),
            })?;
        if let Some(status) = msg.status
            && status.as_u16() != 200
        {
            if status == StatusCode::NOT_FOUND {
                return Ok(None);
            }
            return Err(request_error(
                what(),
                format!(
                    "status {}: {}",
                    status.as_u16(),
                    msg.description.as_deref().unwrap_or("")
                ),
            ));
        }
        let header = |name: &str| {
            msg.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_owned())
        };
        let found = header("Nats-Sequence").and_then(|s| s.parse().ok());
        let stored_ms = header("Nats-Time-Stamp").and_then(|s| codec::parse_rfc3339_ms(&s));
        match (found, stored_ms) {
            (Some(seq), Some(stored_ms)) => Ok(Some(Stored {
                seq,
                stored_ms,
                payload: msg.payload,
            })),
            _ => Err(request_error(
                what(),
                "the answer lacks the Nats-Sequence or Nats-Time-Stamp header",
            )),
        }
    }

    /// Sends `body` to an acknowledgement subject and waits until the server has
    /// applied it.
    async fn ack_sync(&self, subject: String, body: &'static str) -> Result<()> {
        let what = || format!("acknowledging via {subject}");
        match self
            .inner
            .client
            .request(subject.clone(), Bytes::from_static(body.as_bytes()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == RequestErrorKind::TimedOut => Err(Error::Timeout {
                what: what(),
                timeout: self.inner.opts.request_timeout,
            }
            .into()),
            Err(e) => Err(request_error(what(), e)),
        }
    }

    // ----- topics and groups -------------------------------------------------------

    /// The topic, loaded from the server if this process has not seen it; created if
    /// `create` (with `explicit` options, or the defaults).
    async fn topic(
        &self,
        name: &str,
        explicit: Option<&TopicOptions>,
        create: bool,
    ) -> Result<Arc<Topic>> {
        check_name("topic", name)?;
        if let Some(o) = explicit {
            o.validate()?;
        }
        let cached = lock(&self.inner.topics).get(name).cloned();
        if let Some(t) = cached {
            check_same(&t, explicit)?;
            return Ok(t);
        }
        let t = self.load_topic(name, explicit, create).await?;
        let t = lock(&self.inner.topics)
            .entry(name.to_owned())
            .or_insert(t)
            .clone();
        check_same(&t, explicit)?;
        Ok(t)
    }

    async fn load_topic(
        &self,
        name: &str,
        explicit: Option<&TopicOptions>,
        create: bool,
    ) -> Result<Arc<Topic>> {
        let first = self.stream_name(name, 0);
        let mut attempts = 0;
        loop {
            attempts += 1;
            if let Some(info) = self.stream_info(&first).await? {
                let (_, options) = info
                    .config
                    .description
                    .as_deref()
                    .and_then(parse_description)
                    .ok_or_else(|| Error::Foreign {
                        stream: first.clone(),
                        reason: "its description is not Baton topic metadata".into(),
                    })?;
                let t = self.new_topic(name, options);
                check_same(&t, explicit)?;
                if create {
                    // A process that crashed while creating the topic may have left
                    // partitions missing; streams that exist are left as they are.
                    self.create_streams(&t, 1..t.options.partitions, true)
                        .await?;
                }
                return Ok(t);
            }
            if !create {
                return Err(crate::Error::UnknownTopic(name.to_owned()));
            }
            let options = explicit.cloned().unwrap_or_else(|| {
                rules::topic_defaults(&self.inner.opts.log.topic_defaults, name)
            });
            let t = self.new_topic(name, options);
            // Partition 0 last: its stream is what marks the topic as complete.
            let created = match self
                .create_streams(&t, 1..t.options.partitions, false)
                .await
            {
                Ok(()) => self.create_streams(&t, 0..1, false).await,
                Err(e) => Err(e),
            };
            match created {
                Ok(()) => return Ok(t),
                // Another process is creating it with other options: look again.
                Err(crate::Error::Nats(Error::Api { error, .. }))
                    if error.err_code == code::STREAM_NAME_IN_USE && attempts < 20 =>
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn create_streams(
        &self,
        t: &Topic,
        partitions: std::ops::Range<u32>,
        keep_existing: bool,
    ) -> Result<()> {
        let description = describe(&t.name, &t.options);
        let replicas = self.inner.opts.replicas;
        let results = join_all(partitions.map(|p| {
            let stream = &t.streams[p as usize];
            let config = stream_config(
                stream,
                t.subjects[p as usize].as_str(),
                &description,
                &t.options,
                replicas,
            );
            async move {
                let config = config.map_err(crate::Error::InvalidOptions)?;
                let what = format!("creating stream {stream}");
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match self
                        .api::<Empty>(&format!("STREAM.CREATE.{stream}"), &config, &what)
                        .await?
                    {
                        Ok(_) => return Ok(()),
                        Err(e) if keep_existing && e.err_code == code::STREAM_NAME_IN_USE => {
                            return Ok(());
                        }
                        // The server removes its streams directory when the last stream
                        // goes, and a creation racing with that fails; it is transient.
                        Err(e) if e.err_code == code::STREAM_STORE_FAILED && attempt < 5 => {
                            tracing::debug!(%stream, error = %e.description, "retrying stream creation");
                            tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                        }
                        Err(e) => return Err(api_error(what, e)),
                    }
                }
            }
        }))
        .await;
        results.into_iter().collect()
    }

    /// The group, with its consumers checked (and created at the oldest retained
    /// event) once per process.
    async fn group(&self, t: &Topic, name: &str) -> Result<Arc<Group>> {
        let g = self.group_entry(t, name)?;
        if !g.ready.load(Ordering::Acquire) {
            let _only_one = g.ensuring.lock().await;
            if !g.ready.load(Ordering::Acquire) {
                let results = join_all(
                    (0..t.options.partitions).map(|p| self.ensure_consumer(t, &g, p, Start::All)),
                )
                .await;
                results.into_iter().collect::<Result<Vec<()>>>()?;
                g.ready.store(true, Ordering::Release);
            }
        }
        Ok(g)
    }

    /// The group's local state, without asking the server.
    fn group_entry(&self, t: &Topic, name: &str) -> Result<Arc<Group>> {
        check_name("group", name)?;
        let mut groups = lock(&t.groups);
        Ok(groups
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Group {
                    name: name.to_owned(),
                    consumer: encode_name(name),
                    ready: AtomicBool::new(false),
                    ensuring: tokio::sync::Mutex::new(()),
                    next: AtomicUsize::new(0),
                    state: Mutex::new(GroupState {
                        parts: (0..t.options.partitions).map(|_| Part::default()).collect(),
                        members: BTreeMap::new(),
                        pruned: None,
                    }),
                })
            })
            .clone())
    }

    async fn consumer_info(
        &self,
        t: &Topic,
        consumer: &str,
        p: u32,
    ) -> Result<Option<ConsumerInfo>> {
        let stream = &t.streams[p as usize];
        let what = format!("reading consumer {consumer} of stream {stream}");
        match self
            .api::<ConsumerInfo>(
                &format!("CONSUMER.INFO.{stream}.{consumer}"),
                &json!({}),
                &what,
            )
            .await?
        {
            Ok(info) => Ok(Some(info)),
            Err(e) if e.err_code == code::CONSUMER_NOT_FOUND => Ok(None),
            Err(e) => Err(api_error(what, e)),
        }
    }

    async fn ensure_consumer(&self, t: &Topic, g: &Group, p: u32, start: Start) -> Result<()> {
        if self.consumer_info(t, &g.consumer, p).await?.is_some() {
            return Ok(());
        }
        self.create_consumer(t, g, p, start).await
    }

    async fn create_consumer(&self, t: &Topic, g: &Group, p: u32, start: Start) -> Result<()> {
        let stream = &t.streams[p as usize];
        let what = format!("creating consumer {} on stream {stream}", g.consumer);
        let body = json!({
            "stream_name": stream,
            "config": consumer_config(&g.consumer, &g.name, &t.options, start),
        });
        match self
            .api::<Empty>(
                &format!("CONSUMER.DURABLE.CREATE.{stream}.{}", g.consumer),
                &body,
                &what,
            )
            .await?
        {
            Ok(_) => Ok(()),
            // Created meanwhile by another process: that one is the group's.
            Err(_)
                if start == Start::All
                    && self.consumer_info(t, &g.consumer, p).await?.is_some() =>
            {
                Ok(())
            }
            Err(e) => Err(api_error(what, e)),
        }
    }

    async fn delete_consumer(&self, t: &Topic, consumer: &str, p: u32) -> Result<()> {
        let stream = &t.streams[p as usize];
        let what = format!("deleting consumer {consumer} of stream {stream}");
        match self
            .api::<Empty>(
                &format!("CONSUMER.DELETE.{stream}.{consumer}"),
                &json!({}),
                &what,
            )
            .await?
        {
            Ok(_) => Ok(()),
            Err(e) if e.err_code == code::CONSUMER_NOT_FOUND => Ok(()),
            Err(e) => Err(api_error(what, e)),
        }
    }

    /// Every partition's consumer info of a group that must exist.
    async fn group_infos(&self, t: &Topic, group: &str) -> Result<Vec<Option<ConsumerInfo>>> {
        check_name("group", group)?;
        let consumer = encode_name(group);
        let infos =
            join_all((0..t.options.partitions).map(|p| self.consumer_info(t, &consumer, p)))
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()?;
        if infos.iter().all(Option::is_none) {
            return Err(crate::Error::UnknownGroup {
                topic: t.name.clone(),
                group: group.to_owned(),
            });
        }
        Ok(infos)
    }

    // ----- publishing ----------------------------------------------------------------

    async fn publish_to(&self, t: &Topic, batch: Vec<Event>) -> Result<Vec<Offset>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let what = || format!("publishing to topic {:?}", t.name);
        let client = &self.inner.client;
        let n = u64::from(t.options.partitions);
        let dedup = dedup_enabled(&t.options);
        let inbox = client.new_inbox();
        let mut acks = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| request_error(what(), e))?;
        let parts: Vec<u32> = batch
            .iter()
            .map(|e| (key_hash(&e.key) % n) as u32)
            .collect();
        let mut offsets: Vec<Option<Offset>> = vec![None; batch.len()];
        let window = self.inner.opts.publish_window.max(1);
        // One buffer for the bodies of the whole batch, each split off it.
        let mut buf = BytesMut::with_capacity(batch.iter().map(encoded_len).sum());
        let (mut sent, mut acked) = (0, 0);
        while acked < batch.len() {
            while sent < batch.len() && sent - acked < window {
                let e = &batch[sent];
                let subject = t.subjects[parts[sent] as usize].clone();
                let reply = format!("{inbox}.{sent}");
                let body = encode_event(&mut buf, e);
                let result = if dedup {
                    let mut headers = HeaderMap::new();
                    headers.insert("Nats-Msg-Id", e.id.to_string().as_str());
                    client
                        .publish_with_reply_and_headers(subject, reply, headers, body)
                        .await
                } else {
                    client.publish_with_reply(subject, reply, body).await
                };
                result.map_err(|e| request_error(what(), e))?;
                sent += 1;
            }
            let msg = match tokio::time::timeout(self.inner.opts.request_timeout, acks.next()).await
            {
                Ok(Some(msg)) => msg,
                Ok(None) => return Err(request_error(what(), "the connection was closed")),
                Err(_) => {
                    return Err(Error::Timeout {
                        what: format!(
                            "{} ({acked} of {} events acknowledged; publish the batch again \
                             with the same ids, dedup keeps what was stored)",
                            what(),
                            batch.len()
                        ),
                        timeout: self.inner.opts.request_timeout,
                    }
                    .into());
                }
            };
            let Some(i) = reply_index(&msg.subject).filter(|&i| i < batch.len()) else {
                continue;
            };
            if offsets[i].is_some() {
                continue;
            }
            if let Some(status) = msg.status
                && status.as_u16() != 200
            {
                let reason = if status == StatusCode::NO_RESPONDERS {
                    format!(
                        "no stream stores subject {} (was stream {} deleted?)",
                        t.subjects[parts[i] as usize], t.streams[parts[i] as usize]
                    )
                } else {
                    format!(
                        "status {}: {}",
                        status.as_u16(),
                        msg.description.as_deref().unwrap_or("")
                    )
                };
                return Err(request_error(what(), reason));
            }
            match serde_json::from_slice::<Response<PubAck>>(&msg.payload) {
                Ok(Response::Ok(ack)) if ack.sequence > 0 => {
                    if ack.duplicate {
                        tracing::debug!(topic = %t.name, seq = ack.sequence, "duplicate publish");
                    }
                    offsets[i] = Some(Offset::new(parts[i], ack.sequence - 1));
                }
                Ok(Response::Ok(_)) => {
                    return Err(request_error(
                        what(),
                        "publish acknowledged with sequence 0",
                    ));
                }
                Ok(Response::Err { error }) => return Err(api_error(what(), error)),
                Err(e) => return Err(request_error(what(), format!("unexpected answer: {e}"))),
            }
            acked += 1;
        }
        Ok(offsets.into_iter().flatten().collect())
    }

    // ----- polling -----------------------------------------------------------------

    /// Asks the group's consumers for up to `max` messages without waiting.
    async fn fetch(&self, t: &Topic, g: &Group, member: &str, max: usize) -> Result<Vec<Fetched>> {
        let now = Instant::now();
        let mut candidates: VecDeque<u32> = {
            let st = lock(&g.state);
            (0..t.options.partitions)
                .filter(|&p| !st.parts[p as usize].held_by_other(member, now))
                .collect()
        };
        if candidates.is_empty() {
            return Ok(Vec::new());
        }
        let first = g.next.fetch_add(1, Ordering::Relaxed) % candidates.len();
        candidates.rotate_left(first);
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let what = || format!("polling topic {:?} for group {:?}", t.name, g.name);
        let mut sub = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| request_error(what(), e))?;
        let mut out = Vec::new();
        // Partitions that filled their share and may have more.
        let mut more: Vec<u32> = Vec::new();
        loop {
            let remaining = max - out.len();
            if remaining == 0 {
                break;
            }
            let mut round: Vec<u32> = std::mem::take(&mut more);
            while round.len() < remaining {
                match candidates.pop_front() {
                    Some(p) => round.push(p),
                    None => break,
                }
            }
            round.truncate(remaining);
            if round.is_empty() {
                break;
            }
            let mut asked: HashMap<u32, (usize, usize)> = HashMap::new();
            for (i, &p) in round.iter().enumerate() {
                let share = remaining / round.len() + usize::from(i < remaining % round.len());
                let body = json!({
                    "batch": share,
                    "no_wait": true,
                    "expires": NO_WAIT_EXPIRY.as_nanos() as u64,
                });
                client
                    .publish_with_reply(
                        format!(
                            "$JS.API.CONSUMER.MSG.NEXT.{}.{}",
                            t.streams[p as usize], g.consumer
                        ),
                        format!("{inbox}.{p}"),
                        Bytes::from(body.to_string()),
                    )
                    .await
                    .map_err(|e| request_error(what(), e))?;
                asked.insert(p, (share, 0));
            }
            while !asked.is_empty() {
                // The server ends each request within its expiry, or drops it silently
                // (see PULL_ANSWER_TIMEOUT).
                let msg = match tokio::time::timeout(
                    NO_WAIT_EXPIRY + self.inner.opts.request_timeout.min(PULL_ANSWER_TIMEOUT),
                    sub.next(),
                )
                .await
                {
                    Ok(Some(msg)) => msg,
                    Ok(None) => return Err(request_error(what(), "the connection was closed")),
                    Err(_) => {
                        tracing::debug!(
                            topic = %t.name, group = %g.name, partitions = ?asked.keys(),
                            "expired pull requests left unanswered by the server"
                        );
                        break;
                    }
                };
                let Some(p) = reply_index(&msg.subject).map(|p| p as u32) else {
                    continue;
                };
                let Some(&(share, got)) = asked.get(&p) else {
                    continue;
                };
                match self.receive(t, g, p, msg).await {
                    Received::Message(f) => {
                        out.push(*f);
                        if got + 1 >= share {
                            asked.remove(&p);
                            more.push(p);
                        } else {
                            asked.insert(p, (share, got + 1));
                        }
                    }
                    Received::Skipped => {
                        asked.insert(p, (share, got + 1));
                    }
                    Received::End => {
                        asked.remove(&p);
                    }
                    Received::Ignored => {}
                }
            }
        }
        Ok(out)
    }

    /// Interprets one answer to a pull request.
    async fn receive(&self, t: &Topic, g: &Group, p: u32, msg: Message) -> Received {
        if let Some(status) = msg.status
            && status.as_u16() != 200
        {
            return match status.as_u16() {
                100 => Received::Ignored,
                404 | 408 => Received::End,
                code => {
                    // 409 (consumer deleted, too many waiting requests) or 503 (no
                    // consumer): check the consumers again on the next poll.
                    tracing::debug!(
                        topic = %t.name, group = %g.name, partition = p, code,
                        description = msg.description.as_deref().unwrap_or(""),
                        "pull request ended"
                    );
                    g.ready.store(false, Ordering::Release);
                    Received::End
                }
            };
        }
        let Some(reply) = msg.reply else {
            return Received::Ignored;
        };
        let Some(info) = parse_ack_subject(reply.as_str()) else {
            tracing::warn!(subject = %reply, "delivery without a JetStream reply subject");
            return Received::Ignored;
        };
        match decode_event(msg.payload) {
            Ok(event) => Received::Message(Box::new(Fetched {
                partition: p,
                seq: info.stream_seq,
                deliveries: info.deliveries,
                stored_ms: info.stored_ms,
                reply,
                event,
            })),
            Err(reason) => {
                tracing::error!(
                    stream = %t.streams[p as usize], seq = info.stream_seq, %reason,
                    "message is not a Baton event; terminating its delivery"
                );
                if let Err(e) = self.ack_sync(reply.to_string(), "+TERM").await {
                    tracing::warn!(error = %e, "could not terminate the delivery");
                }
                Received::Skipped
            }
        }
    }

    /// Records what a poll delivered and shapes it into slices.
    fn deliver(&self, t: &Topic, g: &Group, member: &str, mut fetched: Vec<Fetched>) -> Polled {
        fetched.sort_by_key(|f| (f.partition, f.seq));
        let now = Instant::now();
        let since_ms = now_ms();
        let vis = t.options.visibility_timeout;
        let claimable = now + vis;
        let claimable_ms = since_ms + vis.as_millis() as u64;
        let mut polled = Polled::new();
        let mut st = lock(&g.state);
        let mut run: Vec<Event> = Vec::new();
        let mut head: Option<(u32, u64, u32, u64)> = None; // partition, first seq, deliveries, stored
        let flush = |polled: &mut Polled, head: Option<(u32, u64, u32, u64)>, run: Vec<Event>| {
            if let Some((p, seq, deliveries, stored)) = head {
                let len = run.len();
                let chunk = Chunk::new(seq - 1, stored, run);
                polled.push(Slice::new(p, deliveries, Arc::new(chunk), 0..len));
            }
        };
        for f in fetched {
            let part = &mut st.parts[f.partition as usize];
            part.held.insert(
                f.seq,
                Held {
                    reply: f.reply,
                    member: member.to_owned(),
                    since_ms,
                    deliveries: f.deliveries,
                    claimable,
                    claimable_ms,
                },
            );
            part.owner = Some((member.to_owned(), claimable));
            let continues = head.is_some_and(|(p, first, d, _)| {
                p == f.partition && d == f.deliveries && first + run.len() as u64 == f.seq
            });
            if !continues {
                flush(&mut polled, head.take(), std::mem::take(&mut run));
                head = Some((f.partition, f.seq, f.deliveries, f.stored_ms));
            }
            run.push(f.event);
        }
        flush(&mut polled, head, run);
        polled
    }

    /// When a waiting poll should look again, before its own deadline.
    fn next_wake(&self, g: &Group, now: Instant) -> Instant {
        let mut wake = now + self.inner.opts.recheck_interval;
        let st = lock(&g.state);
        for part in &st.parts {
            for h in part.held.values() {
                if h.claimable > now {
                    // Just after the server's own deadline for it.
                    wake = wake.min(h.claimable + Duration::from_millis(2));
                } else if now.duration_since(h.claimable) < Duration::from_secs(2) {
                    // Expired here but not redelivered yet: the server's timer may run a
                    // little behind ours.
                    wake = wake.min(now + Duration::from_millis(20));
                }
            }
        }
        wake
    }

    /// Now and then, drops the records of expired deliveries that were acknowledged
    /// elsewhere, so a long-running process does not keep them.
    async fn prune_if_due(&self, t: &Topic, g: &Group) -> Result<()> {
        let now = Instant::now();
        let due = {
            let st = lock(&g.state);
            st.pruned
                .is_none_or(|at| now.duration_since(at) >= PRUNE_INTERVAL)
                && st
                    .parts
                    .iter()
                    .any(|part| part.held.values().any(|h| h.claimable <= now))
        };
        if !due {
            return Ok(());
        }
        let infos =
            join_all((0..t.options.partitions).map(|p| self.consumer_info(t, &g.consumer, p)))
                .await
                .into_iter()
                .collect::<Result<Vec<_>>>()?;
        lock(&g.state).prune(&infos);
        Ok(())
    }

    // ----- dead letters --------------------------------------------------------------

    /// Dead-letters the deliveries this process made that have used up their
    /// deliveries and expired.
    async fn dead_letter_exhausted(&self, t: &Topic, g: &Group) -> Result<()> {
        let max = t.options.max_deliveries;
        if max == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let due: Vec<(u32, u64, u32, Subject)> = {
            let mut st = lock(&g.state);
            let mut due = Vec::new();
            for (p, part) in st.parts.iter_mut().enumerate() {
                let seqs: Vec<u64> = part
                    .held
                    .iter()
                    .filter(|(_, h)| h.deliveries >= max && h.claimable <= now)
                    .map(|(&s, _)| s)
                    .collect();
                for s in seqs {
                    if let Some(h) = part.held.remove(&s) {
                        due.push((p as u32, s, h.deliveries, h.reply));
                    }
                }
            }
            due
        };
        for (p, seq, deliveries, reply) in due {
            self.dead_letter(t, &g.name, p, seq, deliveries, Some(reply))
                .await?;
        }
        Ok(())
    }

    /// Publishes message `seq` of partition `p` to the dead-letter topic, then
    /// acknowledges it in the group.
    async fn dead_letter(
        &self,
        t: &Topic,
        group: &str,
        p: u32,
        seq: u64,
        deliveries: u32,
        reply: Option<Subject>,
    ) -> Result<()> {
        let stream = &t.streams[p as usize];
        let offset = Offset::new(p, seq - 1);
        match self.direct_get(stream, seq, None).await? {
            Some(stored) => match decode_event(stored.payload) {
                Ok(mut e) => {
                    tracing::warn!(
                        topic = %t.name, group, %offset, deliveries,
                        "event exhausted its deliveries; moving it to the dead-letter topic"
                    );
                    let original = e.id;
                    e.id = dead_letter_id(&t.name, group, p, seq);
                    let reason = format!(
                        "not acknowledged after {} deliveries",
                        t.options.max_deliveries
                    );
                    e.headers.extend([
                        ("dlq.reason".to_owned(), Bytes::from(reason)),
                        ("dlq.topic".to_owned(), Bytes::from(t.name.clone())),
                        ("dlq.group".to_owned(), Bytes::from(group.to_owned())),
                        ("dlq.offset".to_owned(), Bytes::from(offset.to_string())),
                        (
                            "dlq.deliveries".to_owned(),
                            Bytes::from(deliveries.to_string()),
                        ),
                        ("dlq.event_id".to_owned(), Bytes::from(original.to_string())),
                    ]);
                    let dlq = self.topic(&dead_letter_topic(&t.name), None, true).await?;
                    self.publish_to(&dlq, vec![e]).await?;
                }
                Err(reason) => tracing::error!(
                    %stream, seq, %reason, "exhausted message is not a Baton event; dropping it"
                ),
            },
            None => tracing::warn!(
                topic = %t.name, group, %offset,
                "event exhausted its deliveries but retention dropped it first"
            ),
        }
        let subject = match reply {
            Some(r) => r.to_string(),
            None => constructed_ack(stream, &encode_name(group), seq),
        };
        self.ack_sync(subject, "+ACK").await
    }

    async fn on_max_deliveries(&self, body: &[u8]) -> Result<()> {
        let a: Advisory = serde_json::from_slice(body)?;
        let Some((topic, p)) = self.parse_stream_name(&a.stream) else {
            return Ok(()); // another prefix's
        };
        let Some(group) = decode_name(&a.consumer) else {
            return Ok(());
        };
        let t = match self.topic(&topic, None, false).await {
            Ok(t) => t,
            Err(crate::Error::UnknownTopic(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if p >= t.options.partitions || a.stream_seq == 0 {
            return Ok(());
        }
        let g = lock(&t.groups).get(&group).cloned();
        let reply = g.and_then(|g| {
            lock(&g.state).parts[p as usize]
                .held
                .remove(&a.stream_seq)
                .map(|h| h.reply)
        });
        let deliveries = u32::try_from(a.deliveries).unwrap_or(u32::MAX);
        self.dead_letter(&t, &group, p, a.stream_seq, deliveries, reply)
            .await
    }

    // ----- replay --------------------------------------------------------------------

    async fn partition_state(&self, t: &Topic, p: u32) -> Result<StreamState> {
        Ok(self
            .stream_info(&t.streams[p as usize])
            .await?
            .map(|i| i.state)
            .unwrap_or_default())
    }

    /// The first offset of partition `p` stored at or after `time_ms`.
    async fn offset_at(&self, t: &Topic, p: u32, time_ms: u64) -> Result<u64> {
        let state = self.partition_state(t, p).await?;
        if state.messages == 0 {
            return Ok(state.last_seq);
        }
        let (mut lo, mut hi) = (state.first_seq, state.last_seq + 1);
        let stream = &t.streams[p as usize];
        let subject = &t.subjects[p as usize];
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.direct_get(stream, mid, Some(subject)).await? {
                Some(m) if m.stored_ms < time_ms => lo = m.seq + 1,
                _ => hi = mid,
            }
        }
        Ok((lo - 1).clamp(state.start(), state.last_seq))
    }
}

/// An acknowledgement subject for a message this process has no delivery of. The
/// server finds the pending message by its stream sequence; a consumer sequence of 0
/// never moves the acknowledgement floor by itself.
fn constructed_ack(stream: &str, consumer: &str, seq: u64) -> String {
    format!("$JS.ACK.{stream}.{consumer}.1.{seq}.0.0.0")
}

enum Received {
    Message(Box<Fetched>),
    /// A delivery that counts against the request but yields no event.
    Skipped,
    /// The request is over.
    End,
    Ignored,
}

fn check_same(t: &Topic, requested: Option<&TopicOptions>) -> Result<()> {
    rules::check_same(&t.name, &t.options, requested)
}

async fn advisory_loop(inner: Weak<Inner>, mut sub: Subscriber) {
    while let Some(msg) = sub.next().await {
        let Some(inner) = inner.upgrade() else {
            break;
        };
        if inner.closed.load(Ordering::Acquire) {
            break;
        }
        let log = NatsLog { inner };
        if let Err(e) = log.on_max_deliveries(&msg.payload).await {
            tracing::warn!(error = %e, "could not dead-letter after a max-deliveries advisory");
        }
    }
}

impl EventLog for NatsLog {
    async fn create_topic(&self, topic: &str, options: TopicOptions) -> Result<()> {
        self.check_open()?;
        self.topic(topic, Some(&options), true).await.map(drop)
    }

    async fn publish(&self, topic: &str, batch: Vec<Event>) -> Result<Vec<Offset>> {
        self.check_open()?;
        check_name("topic", topic)?;
        rules::check_batch(&self.inner.opts.log.limits, &batch)?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let t = self.topic(topic, None, true).await?;
        self.publish_to(&t, batch).await
    }

    async fn poll(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Polled> {
        self.check_open()?;
        check_name("member", member)?;
        let t = self.topic(topic, None, true).await?;
        let g = self.group(&t, group).await?;
        lock(&g.state).members.insert(member.to_owned(), now_ms());
        if max == 0 {
            return Ok(Polled::new());
        }
        let deadline = Instant::now() + wait;
        // Listening before the first look, so a publish in between is not missed.
        let mut wake = if wait.is_zero() {
            None
        } else {
            Some(
                self.inner
                    .client
                    .subscribe(t.wildcard.clone())
                    .await
                    .map_err(|e| request_error(format!("waiting on topic {topic:?}"), e))?,
            )
        };
        loop {
            self.check_open()?;
            if !g.ready.load(Ordering::Acquire) {
                self.group(&t, group).await?;
            }
            self.prune_if_due(&t, &g).await?;
            self.dead_letter_exhausted(&t, &g).await?;
            let fetched = self.fetch(&t, &g, member, max).await?;
            if !fetched.is_empty() {
                return Ok(self.deliver(&t, &g, member, fetched));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Polled::new());
            }
            let until = self.next_wake(&g, now).min(deadline);
            match wake.as_mut() {
                Some(sub) => {
                    tokio::select! {
                        got = sub.next() => if got.is_none() { wake = None },
                        () = tokio::time::sleep_until(until) => {}
                    }
                }
                None => tokio::time::sleep_until(until).await,
            }
        }
    }

    async fn ack(&self, topic: &str, group: &str, ids: &[Offset]) -> Result<usize> {
        self.check_open()?;
        let t = self.topic(topic, None, false).await?;
        let g = self.group_entry(&t, group)?;
        let n = t.options.partitions;
        // Per partition, the subjects to acknowledge on.
        let mut subjects: Vec<Vec<String>> = vec![Vec::new(); n as usize];
        let mut counted = 0;
        {
            let mut st = lock(&g.state);
            for id in ids.iter().filter(|id| id.partition < n) {
                let part = &mut st.parts[id.partition as usize];
                let seq = id.offset + 1;
                match part.held.remove(&seq) {
                    Some(h) => {
                        counted += 1;
                        subjects[id.partition as usize].push(h.reply.to_string());
                    }
                    None => subjects[id.partition as usize].push(constructed_ack(
                        &t.streams[id.partition as usize],
                        &g.consumer,
                        seq,
                    )),
                }
                if part.held.is_empty() {
                    part.owner = None;
                }
            }
        }
        self.send_acks(subjects, Bytes::from_static(b"+ACK"))
            .await?;
        Ok(counted)
    }

    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ids: &[Offset],
        delay: Duration,
    ) -> Result<usize> {
        self.check_open()?;
        let t = self.topic(topic, None, false).await?;
        let g = self.group_entry(&t, group)?;
        let n = t.options.partitions;
        let body = if delay.is_zero() {
            Bytes::from_static(b"-NAK")
        } else {
            Bytes::from(format!("-NAK {{\"delay\": {}}}", delay.as_nanos()))
        };
        let now = Instant::now();
        let mut subjects: Vec<Vec<String>> = vec![Vec::new(); n as usize];
        let mut counted = 0;
        {
            let mut st = lock(&g.state);
            for id in ids.iter().filter(|id| id.partition < n) {
                if let Some(h) = st.parts[id.partition as usize]
                    .held
                    .get_mut(&(id.offset + 1))
                {
                    counted += 1;
                    h.claimable = now + delay;
                    h.claimable_ms = now_ms() + delay.as_millis() as u64;
                    subjects[id.partition as usize].push(h.reply.to_string());
                }
            }
        }
        self.send_acks(subjects, body).await?;
        Ok(counted)
    }

    async fn pending(&self, topic: &str, group: &str, limit: usize) -> Result<Vec<PendingEntry>> {
        self.check_open()?;
        let t = self.topic(topic, None, false).await?;
        let infos = self.group_infos(&t, group).await?;
        let g = self.group_entry(&t, group)?;
        let mut out = Vec::new();
        let mut st = lock(&g.state);
        st.prune(&infos);
        for (p, part) in st.parts.iter().enumerate() {
            for (&seq, h) in &part.held {
                out.push(PendingEntry {
                    offset: Offset::new(p as u32, seq - 1),
                    member: h.member.clone(),
                    since_ms: h.since_ms,
                    deliveries: h.deliveries,
                    claimable_at_ms: h.claimable_ms,
                });
            }
        }
        out.sort_by_key(|e| e.offset);
        out.truncate(limit);
        Ok(out)
    }

    async fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        self.check_open()?;
        let t = self.topic(topic, None, false).await?;
        let lists = join_all((0..t.options.partitions).map(|p| self.consumers(&t, p)))
            .await
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        let mut by_group: BTreeMap<String, Vec<Option<ConsumerInfo>>> = BTreeMap::new();
        for (p, list) in lists.into_iter().enumerate() {
            for info in list {
                let Some(name) = decode_name(&info.name) else {
                    continue;
                };
                by_group
                    .entry(name)
                    .or_insert_with(|| (0..t.options.partitions).map(|_| None).collect())[p] =
                    Some(info);
            }
        }
        let mut out = Vec::new();
        for (name, infos) in by_group {
            let mut members = Vec::new();
            if let Some(g) = lock(&t.groups).get(&name).cloned() {
                let st = lock(&g.state);
                for (m, &last_seen_ms) in &st.members {
                    let pending = st
                        .parts
                        .iter()
                        .flat_map(|part| part.held.values())
                        .filter(|h| &h.member == m)
                        .count() as u64;
                    members.push(MemberInfo {
                        name: m.clone(),
                        last_seen_ms,
                        pending,
                    });
                }
            }
            let flat = infos.iter().flatten();
            out.push(GroupInfo {
                pending: flat.clone().map(|i| i.num_ack_pending).sum(),
                lag: flat.map(|i| i.num_pending).sum(),
                committed: infos
                    .iter()
                    .enumerate()
                    .map(|(p, i)| {
                        Offset::new(p as u32, i.as_ref().map_or(0, |i| i.ack_floor.stream_seq))
                    })
                    .collect(),
                name,
                members,
            });
        }
        Ok(out)
    }

    async fn topics(&self) -> Result<Vec<TopicInfo>> {
        self.check_open()?;
        let mut streams: Vec<StreamInfo> = Vec::new();
        loop {
            let body = json!({"offset": streams.len(), "subject": format!("{}.>", self.prefix())});
            let page: StreamList = self
                .api("STREAM.LIST", &body, "listing streams")
                .await?
                .map_err(|e| api_error("listing streams", e))?;
            let list = page.streams.unwrap_or_default();
            let done = list.is_empty() || streams.len() + list.len() >= page.total as usize;
            streams.extend(list);
            if done {
                break;
            }
        }
        let mut topics: BTreeMap<String, (TopicOptions, Vec<PartitionInfo>)> = BTreeMap::new();
        for s in streams {
            let Some((name, p)) = self.parse_stream_name(&s.config.name) else {
                continue;
            };
            let Some((_, options)) = s.config.description.as_deref().and_then(parse_description)
            else {
                continue;
            };
            let n = options.partitions;
            let entry = topics.entry(name).or_insert_with(|| {
                let empty = PartitionInfo {
                    start: 0,
                    end: 0,
                    bytes: 0,
                };
                (options, vec![empty; n as usize])
            });
            if let Some(slot) = entry.1.get_mut(p as usize) {
                *slot = PartitionInfo {
                    start: s.state.start(),
                    end: s.state.last_seq,
                    bytes: s.state.bytes,
                };
            }
        }
        let mut out = Vec::with_capacity(topics.len());
        for (name, (options, partitions)) in topics {
            let t = self.new_topic(&name, options);
            let mut groups: Vec<String> = self
                .consumers(&t, 0)
                .await?
                .into_iter()
                .filter_map(|c| decode_name(&c.name))
                .collect();
            groups.sort();
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
        self.check_open()?;
        let t = self.topic(topic, None, false).await?;
        rules::check_partition(topic, partition, t.options.partitions)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let state = self.partition_state(&t, partition).await?;
        let first = from.max(state.start()) + 1;
        let last = state.last_seq.min(first.saturating_add(max as u64 - 1));
        if first > last {
            return Ok(Vec::new());
        }
        let stream = &t.streams[partition as usize];
        let gets = futures_util::stream::iter(first..=last)
            .map(|seq| self.direct_get(stream, seq, None))
            .buffered(64)
            .collect::<Vec<_>>()
            .await;
        let mut out = Vec::with_capacity(gets.len());
        for got in gets {
            // Retention may drop the oldest while we read.
            let Some(m) = got? else { continue };
            let event = decode_event(m.payload).map_err(|reason| Error::Foreign {
                stream: stream.clone(),
                reason: format!("message {} does not decode: {reason}", m.seq),
            })?;
            out.push(Record {
                offset: Offset::new(partition, m.seq - 1),
                appended_ms: m.stored_ms,
                event,
            });
        }
        Ok(out)
    }

    async fn offsets_at(&self, topic: &str, time_ms: u64) -> Result<Vec<Offset>> {
        self.check_open()?;
        let t = self.topic(topic, None, false).await?;
        join_all((0..t.options.partitions).map(|p| {
            let t = &t;
            async move { Ok(Offset::new(p, self.offset_at(t, p, time_ms).await?)) }
        }))
        .await
        .into_iter()
        .collect()
    }

    async fn seek(&self, topic: &str, group: &str, to: SeekTo) -> Result<()> {
        self.check_open()?;
        let t = self.topic(topic, None, true).await?;
        let g = self.group_entry(&t, group)?;
        let n = t.options.partitions;
        let targets: Vec<(u32, Start)> = match to {
            SeekTo::Earliest => (0..n).map(|p| (p, Start::All)).collect(),
            SeekTo::Latest => (0..n).map(|p| (p, Start::New)).collect(),
            SeekTo::Time(ms) => self
                .offsets_at(topic, ms)
                .await?
                .into_iter()
                .map(|o| (o.partition, Start::Seq(o.offset + 1)))
                .collect(),
            SeekTo::Offsets(offsets) => {
                if let Some(bad) = offsets.iter().find(|o| o.partition >= n) {
                    return Err(rules::unknown_partition(topic, bad.partition, n));
                }
                offsets
                    .iter()
                    .map(|o| (o.partition, Start::Seq(o.offset + 1)))
                    .collect()
            }
        };
        let results = join_all(targets.iter().map(|&(p, start)| {
            let (t, g) = (&t, &g);
            async move {
                // A concurrent poll elsewhere may recreate the consumer between the
                // delete and the create; then try again.
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    self.delete_consumer(t, &g.consumer, p).await?;
                    match self.create_consumer(t, g, p, start).await {
                        Ok(()) => return Ok(()),
                        Err(e) if attempt >= 3 => return Err(e),
                        Err(_) => {}
                    }
                }
            }
        }))
        .await;
        {
            let mut st = lock(&g.state);
            for &(p, _) in &targets {
                let part = &mut st.parts[p as usize];
                part.held.clear();
                part.owner = None;
            }
        }
        // Partitions not moved may have no consumer yet (a new group).
        g.ready.store(false, Ordering::Release);
        results.into_iter().collect()
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(task) = lock(&self.inner.advisories).take() {
            task.abort();
        }
        self.inner
            .client
            .flush()
            .await
            .map_err(|e| request_error("closing", e))?;
        Ok(())
    }
}

impl NatsLog {
    /// Every consumer of partition `p`'s stream.
    async fn consumers(&self, t: &Topic, p: u32) -> Result<Vec<ConsumerInfo>> {
        let stream = &t.streams[p as usize];
        let what = format!("listing consumers of stream {stream}");
        let mut out = Vec::new();
        loop {
            let page = match self
                .api::<ConsumerList>(
                    &format!("CONSUMER.LIST.{stream}"),
                    &json!({"offset": out.len()}),
                    &what,
                )
                .await?
            {
                Ok(page) => page,
                Err(e) if e.err_code == code::STREAM_NOT_FOUND => return Ok(out),
                Err(e) => return Err(api_error(what, e)),
            };
            let list = page.consumers.unwrap_or_default();
            let done = list.is_empty() || out.len() + list.len() >= page.total as usize;
            out.extend(list);
            if done {
                return Ok(out);
            }
        }
    }

    /// Sends per-partition acknowledgements: all but the last of each partition
    /// without waiting, the last as a request, so the answer means the consumer has
    /// applied them all (it applies one connection's acknowledgements in order).
    async fn send_acks(&self, subjects: Vec<Vec<String>>, body: Bytes) -> Result<()> {
        let client = &self.inner.client;
        let results = join_all(subjects.into_iter().filter(|s| !s.is_empty()).map(
            |mut subjects| {
                let body = body.clone();
                async move {
                    let last = subjects.pop().unwrap_or_default();
                    for s in subjects {
                        client
                            .publish(s, body.clone())
                            .await
                            .map_err(|e| request_error("acknowledging", e))?;
                    }
                    match client.request(last.clone(), body).await {
                        Ok(_) => Ok(()),
                        Err(e) if e.kind() == RequestErrorKind::TimedOut => Err(Error::Timeout {
                            what: format!("acknowledging via {last}"),
                            timeout: self.inner.opts.request_timeout,
                        }
                        .into()),
                        Err(e) => Err(request_error(format!("acknowledging via {last}"), e)),
                    }
                }
            },
        ))
        .await;
        results.into_iter().collect()
    }
}
