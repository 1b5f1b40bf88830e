//! The memory backend: the fastest path, for tests, benchmarks and ephemeral runs.
//!
//! **Durability promise: none.** An acknowledged publish survives only as long as the
//! process. Everything else the [`EventLog`] trait promises holds.
//!
//! Events are stored in per-partition chunks (one per publish and partition) shared by
//! `Arc` with the consumers that poll them, so a publish → poll → ack cycle takes a
//! lock per partition and batch, not per event, and copies no event.

use std::sync::Arc;
use std::time::Duration;

use crate::core::{Core, NoJournal};
use crate::{
    Event, EventLog, GroupInfo, Offset, Options, PendingEntry, Polled, Record, Result, SeekTo,
    TopicInfo, TopicOptions,
};

/// An event log held in memory. Cloning gives another handle to the same log.
#[derive(Clone)]
pub struct MemoryLog {
    core: Arc<Core<NoJournal>>,
}

impl MemoryLog {
    /// A log with the given options.
    pub fn new(options: Options) -> Result<Self> {
        Ok(MemoryLog {
            core: Arc::new(Core::new(options, NoJournal)?),
        })
    }
}

impl Default for MemoryLog {
    fn default() -> Self {
        Self::new(Options::default()).unwrap_or_else(|_| unreachable!("default options are valid"))
    }
}

impl EventLog for MemoryLog {
    async fn create_topic(&self, topic: &str, options: TopicOptions) -> Result<()> {
        self.core.create_topic(topic, Some(options)).map(drop)
    }
    async fn publish(&self, topic: &str, batch: Vec<Event>) -> Result<Vec<Offset>> {
        self.core.publish(topic, batch).await
    }
    async fn poll(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Polled> {
        self.core.poll(topic, group, member, max, wait).await
    }
    async fn ack(&self, topic: &str, group: &str, ids: &[Offset]) -> Result<usize> {
        self.core.ack(topic, group, ids).await
    }
    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ids: &[Offset],
        delay: Duration,
    ) -> Result<usize> {
        self.core.nack(topic, group, ids, delay).await
    }
    async fn pending(&self, topic: &str, group: &str, limit: usize) -> Result<Vec<PendingEntry>> {
        self.core.pending(topic, group, limit)
    }
    async fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        self.core.groups(topic)
    }
    async fn topics(&self) -> Result<Vec<TopicInfo>> {
        Ok(self.core.topics())
    }
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        self.core.read(topic, partition, from, max)
    }
    async fn offsets_at(&self, topic: &str, time_ms: u64) -> Result<Vec<Offset>> {
        self.core.offsets_at(topic, time_ms)
    }
    async fn seek(&self, topic: &str, group: &str, to: SeekTo) -> Result<()> {
        self.core.seek(topic, group, to).await
    }
    async fn close(&self) -> Result<()> {
        self.core.close();
        Ok(())
    }
}
