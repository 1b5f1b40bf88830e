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
//!   it, and one poll at a time asks a partition for more; members in different
//!   processes may interleave one partition. A poll stops waiting for answers after
//!   200 ms past its requests' expiry; on a busy machine the server may have sent one
//!   already. The partition then stays out of reach while the poll's inbox keeps
//!   listening (up to 5 s) until it has what the consumer's last delivered sequence
//!   says was sent, and hands that back with `-NAK`: the server delivers it again at
//!   once, before anything newer. What does not arrive in time, and what a poll that
//!   fails midway (a broken connection) may have lost, comes back after the visibility
//!   timeout; the partition waits for it (the visibility timeout and a second), so
//!   later events of its keys never overtake it.
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

mod admin;
mod api;
mod codec;
mod poll;
mod publish;
mod topics;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use async_nats::client::RequestErrorKind;
use async_nats::{Client, HeaderMap, Message, StatusCode, Subject, Subscriber};
use bytes::{Bytes, BytesMut};
use futures_util::future::join_all;
use futures_util::{FutureExt, StreamExt};
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
    /// Counts the client's disconnections: a request or publish in flight
    /// when it changes may have been lost with the connection, and is sent
    /// again at once rather than waited for until its timeout.
    disconnects: tokio::sync::watch::Sender<u64>,
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
    /// Whether a poll of this process has a pull request out on the partition: one at
    /// a time, so two members never take consecutive runs of one key.
    fetching: bool,
    /// The highest stream sequence this process has received from the partition.
    seen: u64,
    /// Set when a pull request went unanswered while the server had delivered past
    /// [`seen`](Self::seen): the delivery was lost in flight (the poll stopped
    /// listening before it arrived). Nobody in this process takes the partition until
    /// the server has redelivered it, so later events of its keys do not overtake it.
    lost_until: Option<Instant>,
}

impl Part {
    /// Whether a member may ask for this partition's events now.
    fn free_for(&self, member: &str, now: Instant) -> bool {
        let held_by_other = match &self.owner {
            Some((m, until)) => m != member && *until > now && !self.held.is_empty(),
            None => false,
        };
        !held_by_other && !self.fetching && self.lost_until.is_none_or(|t| t <= now)
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

/// The partition a reply subject `<inbox>.<partition or index>` names.
fn reply_index(subject: &Subject) -> Option<usize> {
    subject.as_str().rsplit('.').next()?.parse().ok()
}

impl NatsLog {
    /// Connects to the server and starts listening for max-deliveries advisories.
    pub async fn open(options: NatsOptions) -> Result<Self> {
        check_prefix(&options.prefix)?;
        options.log.topic_defaults.validate()?;
        let (disconnects, _) = tokio::sync::watch::channel(0u64);
        let counted = disconnects.clone();
        let client = async_nats::ConnectOptions::new()
            .name("baton-events")
            .request_timeout(Some(options.request_timeout))
            .event_callback(move |event| {
                let counted = counted.clone();
                async move {
                    if matches!(event, async_nats::Event::Disconnected) {
                        counted.send_modify(|n| *n += 1);
                    }
                }
            })
            .connect(options.url.as_str())
            .await
            .map_err(|e| Error::Connect {
                url: options.url.clone(),
                reason: e.to_string(),
            })?;
        let inner = Arc::new(Inner {
            client,
            disconnects,
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
        let task = tokio::spawn(poll::advisory_loop(Arc::downgrade(&log.inner), sub));
        *lock(&log.inner.advisories) = Some(task);
        Ok(log)
    }

    /// The namespace of this log's streams and subjects.
    pub fn prefix(&self) -> &str {
        &self.inner.opts.prefix
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(crate::Error::Closed)
        } else {
            Ok(())
        }
    }

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

    /// One JetStream API request; the outer error is the transport's, the inner the
    /// server's answer.
    async fn api<T: DeserializeOwned>(
        &self,
        subject: &str,
        body: &Value,
        what: &str,
    ) -> Result<std::result::Result<T, ApiError>> {
        let payload = Bytes::from(serde_json::to_vec(body)?);
        // Every JetStream API call the log makes can run twice (reads, and
        // creations and deletions whose second answer says it is done).
        let sent = self.request(format!("$JS.API.{subject}"), payload).await;
        let msg = sent.map_err(|e| match e.kind() {
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

    /// `client.request`, sent once more if the connection drops while it
    /// waits: the request or its answer may be lost with the connection, and
    /// would otherwise be waited for until `request_timeout`. For requests
    /// that may run twice only: JetStream API calls, direct reads and
    /// acknowledgements are.
    async fn request(
        &self,
        subject: String,
        payload: Bytes,
    ) -> std::result::Result<Message, async_nats::RequestError> {
        let mut dropped = self.inner.disconnects.subscribe();
        let client = &self.inner.client;
        tokio::select! {
            answer = client.request(subject.clone(), payload.clone()) => answer,
            _ = dropped.changed() => client.request(subject, payload).await,
        }
    }

    /// Sends `body` to an acknowledgement subject and waits until the server has
    /// applied it.
    async fn ack_sync(&self, subject: String, body: &'static str) -> Result<()> {
        let what = || format!("acknowledging via {subject}");
        match self
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
}

impl EventLog for NatsLog {
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
