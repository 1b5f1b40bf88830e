//! The [`EventLog`] trait every backend implements.

use std::future::Future;
use std::time::Duration;

use crate::{
    Event, GroupInfo, Offset, PendingEntry, Polled, Record, Result, SeekTo, TopicInfo, TopicOptions,
};

/// A partitioned, replayable log with consumer groups.
///
/// # Guarantees every backend keeps
///
/// - **Order per key**: events with the same key go to the same partition
///   ([`key_hash`](crate::key_hash) modulo the partition count) and keep their publish
///   order there; a poll returns each partition's events in offset order. While a
///   member holds unacknowledged events of a partition, new events of that partition go
///   to the same member, so one key is not processed by two members at once (unless a
///   visibility timeout hands the partition over).
/// - **Durability**: `publish` returns offsets only once the backend's promise holds
///   (see the backend's docs), and a poll never serves an event before that.
/// - **At-least-once delivery** within a group: an event is delivered until it is
///   acknowledged, moved to the dead-letter topic, or dropped by retention.
/// - **Redelivery**: an event not acknowledged within the topic's visibility timeout
///   (or `nack`ed, after its delay) is handed to the next member that polls, with its
///   delivery count increased (like Redis `XAUTOCLAIM`).
/// - **Dead letters**: an event that would be delivered more than `max_deliveries`
///   times is published instead to [`dead_letter_topic`](crate::dead_letter_topic) with
///   headers `dlq.reason`, `dlq.topic`, `dlq.group`, `dlq.offset`, `dlq.deliveries` and
///   `dlq.event_id`, and acknowledged in the group.
/// - **Dedup**: an event whose id was published to the same topic within the dedup
///   window is not stored again; its original offset is returned. The in-process
///   logs and NATS remember an id within its key's partition, Redis within the
///   whole topic.
/// - **Limits**: an oversized event or batch is rejected whole, before anything is
///   stored.
///
/// Timeouts run on tokio's clock, so tests can drive them with `tokio::time::pause`.
pub trait EventLog: Send + Sync + 'static {
    /// Creates a topic with explicit options. Creating it again with the same options
    /// is a no-op; with different ones, [`Error::TopicMismatch`](crate::Error::TopicMismatch).
    /// Topics used without being created get the backend's defaults.
    fn create_topic(
        &self,
        topic: &str,
        options: TopicOptions,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Appends a batch and returns each event's offset (in batch order) once durable.
    fn publish(
        &self,
        topic: &str,
        batch: Vec<Event>,
    ) -> impl Future<Output = Result<Vec<Offset>>> + Send;

    /// Delivers up to `max` events to `member` of `group`, waiting up to `wait` for
    /// some to arrive. Expired deliveries of other members are claimed first. The group
    /// is created at the oldest retained event if it does not exist.
    fn poll(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Polled>> + Send;

    /// Acknowledges delivered events; returns how many were pending. Unknown or
    /// already acknowledged offsets are ignored.
    fn ack(
        &self,
        topic: &str,
        group: &str,
        ids: &[Offset],
    ) -> impl Future<Output = Result<usize>> + Send;

    /// Gives delivered events back, to be redelivered after `delay`; returns how many
    /// were pending. Each redelivery counts towards `max_deliveries`.
    fn nack(
        &self,
        topic: &str,
        group: &str,
        ids: &[Offset],
        delay: Duration,
    ) -> impl Future<Output = Result<usize>> + Send;

    /// Up to `limit` of the group's delivered, unacknowledged events.
    fn pending(
        &self,
        topic: &str,
        group: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<PendingEntry>>> + Send;

    /// The topic's consumer groups.
    fn groups(&self, topic: &str) -> impl Future<Output = Result<Vec<GroupInfo>>> + Send;

    /// Every topic.
    fn topics(&self) -> impl Future<Output = Result<Vec<TopicInfo>>> + Send;

    /// Reads up to `max` retained events of one partition from offset `from`, outside
    /// any group (replay). Starts at the oldest retained event if `from` is older.
    fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Record>>> + Send;

    /// Per partition, the first offset appended at or after `time_ms` (replay by time).
    fn offsets_at(
        &self,
        topic: &str,
        time_ms: u64,
    ) -> impl Future<Output = Result<Vec<Offset>>> + Send;

    /// Moves a group (replay from an offset or a time, or skip to the end).
    fn seek(&self, topic: &str, group: &str, to: SeekTo)
    -> impl Future<Output = Result<()>> + Send;

    /// Flushes and stops: later calls fail with [`Error::Closed`](crate::Error::Closed).
    fn close(&self) -> impl Future<Output = Result<()>> + Send;
}
