//! Options shared by every backend.

use std::time::Duration;

use crate::{Error, Result};

/// Size limits checked on every publish, before anything is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted event, as measured by [`Event::size`](crate::Event::size).
    pub max_event_bytes: usize,
    /// Most events in one published batch.
    pub max_batch_events: usize,
    /// Most bytes in one published batch.
    pub max_batch_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1 << 20,
            max_batch_events: 100_000,
            max_batch_bytes: 64 << 20,
        }
    }
}

/// How much of a topic is kept. Every bound that is set applies; the oldest events go
/// first. Retention wins over slow consumers: a group that falls behind the retained
/// range skips ahead (with a warning in the logs), so memory and disk stay bounded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Most events kept per topic (split evenly over partitions).
    pub max_events: Option<u64>,
    /// Most bytes kept per topic (split evenly over partitions; whole publish batches are
    /// dropped, and a partition's newest batch is always kept).
    pub max_bytes: Option<u64>,
    /// Oldest event kept, by the time it was appended.
    pub max_age: Option<Duration>,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_events: None,
            max_bytes: Some(256 << 20),
            max_age: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// The window in which a re-published event id is recognised and not stored again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dedup {
    /// Most ids remembered per topic (the in-process logs split them evenly over
    /// partitions, each keeping its own window; Redis keeps one window for the
    /// topic); 0 turns dedup off.
    pub max_ids: usize,
    /// Ids older than this are forgotten.
    pub max_age: Duration,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            max_ids: 16_384,
            max_age: Duration::from_secs(300),
        }
    }
}

/// Options of one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicOptions {
    /// Partitions; events are spread over them by key hash. Fixed once the topic exists.
    pub partitions: u32,
    /// How much is kept.
    pub retention: Retention,
    /// Duplicate suppression.
    pub dedup: Dedup,
    /// How long a delivered event may stay unacknowledged before another member of the
    /// group may claim it.
    pub visibility_timeout: Duration,
    /// Deliveries after which an unacknowledged event moves to the dead-letter topic
    /// instead of being delivered again. `0` means never.
    pub max_deliveries: u32,
}

impl Default for TopicOptions {
    fn default() -> Self {
        TopicOptions {
            partitions: 8,
            retention: Retention::default(),
            dedup: Dedup::default(),
            visibility_timeout: Duration::from_secs(30),
            max_deliveries: 5,
        }
    }
}

impl TopicOptions {
    pub(crate) fn validate(&self) -> Result<()> {
        if self.partitions == 0 || self.partitions > 4096 {
            return Err(Error::InvalidOptions(format!(
                "partitions must be between 1 and 4096, got {}",
                self.partitions
            )));
        }
        if self.visibility_timeout.is_zero() {
            return Err(Error::InvalidOptions(
                "visibility_timeout must be greater than zero".into(),
            ));
        }
        if self.retention.max_events == Some(0) || self.retention.max_bytes == Some(0) {
            return Err(Error::InvalidOptions(
                "retention bounds must be greater than zero (use None for no bound)".into(),
            ));
        }
        Ok(())
    }
}

/// Options common to every backend.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Size limits on publish.
    pub limits: Limits,
    /// Options for topics created implicitly by their first publish or poll.
    pub topic_defaults: TopicOptions,
}

/// Suffix of a topic's dead-letter topic: events that exhausted their deliveries in
/// topic `t` go to `t.dlq`.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";

/// The dead-letter topic of `topic`.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}{DEAD_LETTER_SUFFIX}")
}
