//! Values the [`EventLog`](crate::EventLog) trait takes and returns.

use std::ops::Range;
use std::sync::Arc;

use crate::{Event, Offset};

/// Consecutive events of one partition appended by one publish, shared by reference
/// between the log and every consumer that polls them, so a poll copies no event.
#[derive(Debug)]
pub struct Chunk {
    base: u64,
    appended_ms: u64,
    bytes: u64,
    events: Vec<Event>,
}

impl Chunk {
    /// A chunk whose first event has offset `base`.
    pub fn new(base: u64, appended_ms: u64, events: Vec<Event>) -> Self {
        let bytes = events.iter().map(|e| e.size() as u64).sum();
        Chunk {
            base,
            appended_ms,
            bytes,
            events,
        }
    }

    /// Offset of the first event.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// One past the offset of the last event.
    pub fn end(&self) -> u64 {
        self.base + self.events.len() as u64
    }

    /// When the log appended it, in ms since the Unix epoch.
    pub fn appended_ms(&self) -> u64 {
        self.appended_ms
    }

    /// Encoded size of its events.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The events.
    pub fn events(&self) -> &[Event] {
        &self.events
    }
}

/// Consecutive delivered events of one partition.
#[derive(Clone, Debug)]
pub struct Slice {
    partition: u32,
    deliveries: u32,
    chunk: Arc<Chunk>,
    range: Range<usize>,
}

impl Slice {
    /// Events `range` (indexes into `chunk.events()`) of `chunk`, delivered for the
    /// `deliveries`-th time. Panics if `range` is out of bounds, which only a backend
    /// bug can cause.
    pub fn new(partition: u32, deliveries: u32, chunk: Arc<Chunk>, range: Range<usize>) -> Self {
        assert!(range.start <= range.end && range.end <= chunk.events.len());
        Slice {
            partition,
            deliveries,
            chunk,
            range,
        }
    }

    /// The partition.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// How many times these events have been delivered, this time included.
    pub fn deliveries(&self) -> u32 {
        self.deliveries
    }

    /// Offset of the first event.
    pub fn first_offset(&self) -> u64 {
        self.chunk.base + self.range.start as u64
    }

    /// The events, in offset order.
    pub fn events(&self) -> &[Event] {
        &self.chunk.events[self.range.clone()]
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.range.len()
    }

    /// Whether it holds no event.
    pub fn is_empty(&self) -> bool {
        self.range.is_empty()
    }
}

/// One delivered event.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    /// Where it is; pass it to `ack` or `nack`.
    pub offset: Offset,
    /// How many times it has been delivered, this time included.
    pub deliveries: u32,
    /// The event.
    pub event: &'a Event,
}

/// What one `poll` delivered: events grouped in per-partition slices, each in offset order.
#[derive(Clone, Debug, Default)]
pub struct Polled {
    slices: Vec<Slice>,
    len: usize,
}

impl Polled {
    /// An empty result.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a slice (backends call this).
    pub fn push(&mut self, slice: Slice) {
        if !slice.is_empty() {
            self.len += slice.len();
            self.slices.push(slice);
        }
    }

    /// Number of events.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was delivered.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The slices.
    pub fn slices(&self) -> &[Slice] {
        &self.slices
    }

    /// Every delivered event.
    pub fn iter(&self) -> impl Iterator<Item = Delivery<'_>> + '_ {
        self.slices.iter().flat_map(|s| {
            let first = s.first_offset();
            s.events()
                .iter()
                .enumerate()
                .map(move |(i, event)| Delivery {
                    offset: Offset::new(s.partition, first + i as u64),
                    deliveries: s.deliveries,
                    event,
                })
        })
    }

    /// The offsets of every delivered event, ready for `ack`.
    pub fn offsets(&self) -> Vec<Offset> {
        let mut out = Vec::with_capacity(self.len);
        for s in &self.slices {
            let first = s.first_offset();
            out.extend((0..s.len() as u64).map(|i| Offset::new(s.partition, first + i)));
        }
        out
    }
}

/// An event read back from a topic, outside any consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where it is.
    pub offset: Offset,
    /// When the log appended it (ms since the Unix epoch).
    pub appended_ms: u64,
    /// The event.
    pub event: Event,
}

/// A delivered, not yet acknowledged event of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    /// The event.
    pub offset: Offset,
    /// The member holding it.
    pub member: String,
    /// When it was (last) delivered, ms since the Unix epoch.
    pub since_ms: u64,
    /// Times delivered.
    pub deliveries: u32,
    /// When another member may claim it, ms since the Unix epoch.
    pub claimable_at_ms: u64,
}

/// A member of a consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its name.
    pub name: String,
    /// Its last poll, ms since the Unix epoch.
    pub last_seen_ms: u64,
    /// Events it holds unacknowledged.
    pub pending: u64,
}

/// A consumer group of a topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// Its name.
    pub name: String,
    /// Members seen since the log was opened.
    pub members: Vec<MemberInfo>,
    /// Delivered, unacknowledged events.
    pub pending: u64,
    /// Published events not yet delivered to the group.
    pub lag: u64,
    /// Per partition, the lowest offset not yet acknowledged: where the group resumes
    /// after a restart.
    pub committed: Vec<Offset>,
}

/// One partition of a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Oldest retained offset.
    pub start: u64,
    /// One past the newest offset.
    pub end: u64,
    /// Retained bytes.
    pub bytes: u64,
}

/// A topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicInfo {
    /// Its name.
    pub name: String,
    /// Its partitions.
    pub partitions: Vec<PartitionInfo>,
    /// Its consumer groups.
    pub groups: Vec<String>,
}

impl TopicInfo {
    /// Retained events over all partitions.
    pub fn events(&self) -> u64 {
        self.partitions.iter().map(|p| p.end - p.start).sum()
    }
}

/// Where `seek` moves a consumer group. Pending deliveries are dropped: the group
/// receives everything from the new position again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SeekTo {
    /// The oldest retained event of every partition.
    Earliest,
    /// After the newest event of every partition: only new events.
    Latest,
    /// The first event of every partition appended at or after this time (ms since the
    /// Unix epoch).
    Time(u64),
    /// These offsets; partitions not listed keep their position.
    Offsets(Vec<Offset>),
}
