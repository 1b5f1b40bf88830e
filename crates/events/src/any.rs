//! [`AnyLog`]: one type over every backend, for programs that pick the backend at
//! run time (`baton serve --events URL`).

use std::time::Duration;

use crate::{
    DiskLog, Event, EventLog, GroupInfo, MemoryLog, Offset, PendingEntry, Polled, Record, Result,
    SeekTo, TopicInfo, TopicOptions,
};

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
