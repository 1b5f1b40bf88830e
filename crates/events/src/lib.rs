//! Baton's event log: events, topics with key-ordered partitions, consumer groups with
//! pending lists, redelivery, dead letters, dedup and retention.
//!
//! The [`EventLog`] trait is the contract; backends implement it:
//!
//! | backend | open with | an acknowledged publish survives |
//! |---|---|---|
//! | [`MemoryLog`] | `MemoryLog::new(Options)` | nothing beyond the process |
//! | [`DiskLog`] (the embedded default) | `DiskLog::open(dir, DiskOptions)` | a process crash always; a machine crash with `Fsync::Always`, or losing at most the last interval with `Fsync::Interval` |
//! | `RedisLog` (feature `redis`) | `RedisLog::open(RedisOptions { url, prefix, .. })` | what the Redis server's persistence gives: with `appendfsync always` a machine crash of the server, with `everysec` all but about the last second; shared by every process using the same server and prefix |
//! | `NatsLog` (feature `nats`) | `NatsLog::open(NatsOptions { url, prefix, .. })` | what the JetStream streams' file storage and replicas give: server and client restarts; with three replicas, the loss of a minority of servers |
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use baton_events::{Event, EventLog, MemoryLog};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> baton_events::Result<()> {
//! let log = MemoryLog::default();
//! let offsets = log
//!     .publish("tasks", vec![Event::json("task.ready", "run-1", &serde_json::json!({"task": "a"}))?])
//!     .await?;
//! let polled = log.poll("tasks", "workers", "worker-1", 100, Duration::ZERO).await?;
//! for d in polled.iter() {
//!     let body: serde_json::Value = d.event.payload_json()?;
//!     assert_eq!(body["task"], "a");
//! }
//! assert_eq!(log.ack("tasks", "workers", &polled.offsets()).await?, 1);
//! assert_eq!(polled.offsets(), offsets);
//! # Ok(())
//! # }
//! ```
#![doc = include_str!("../README.md")]

mod any;
mod core;
pub mod disk;
mod error;
mod event;
mod log;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
mod options;
#[cfg(feature = "redis")]
pub mod redis;
mod redrive;
mod rules;
#[cfg(feature = "test-util")]
pub mod testing;
mod types;

pub use crate::any::{AnyLog, Backend, OpenOptions};
pub use crate::disk::{Compaction, DiskLog, DiskOptions, Follower, Fsync};
pub use crate::error::{Error, Result};
pub use crate::event::{Event, EventId, Offset, key_hash};
pub use crate::log::EventLog;
pub use crate::memory::MemoryLog;
#[cfg(feature = "nats")]
pub use crate::nats::{NatsLog, NatsOptions};
pub use crate::options::{
    DEAD_LETTER_SUFFIX, Dedup, Limits, Options, Retention, TopicOptions, dead_letter_topic,
};
#[cfg(feature = "redis")]
pub use crate::redis::{RedisLog, RedisOptions};
pub use crate::redrive::{REDRIVE_GROUP, Redriven, redrive};
pub use crate::types::{
    Chunk, Delivery, GroupInfo, MemberInfo, PartitionInfo, PendingEntry, Polled, Record, SeekTo,
    Slice, TopicInfo,
};
