//! A topic's partitions: the chunk log of each (`PartLog`: retained chunks, the
//! visible end, retention, the dedup window) and the topic that holds them with
//! its groups. Restoring a partition from disk goes through here too, so the
//! disk backend rebuilds exactly the state publishing builds.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;

use super::dedup::DedupWindow;
use super::group::Group;
use super::{FastMap, PartLimits, lock};
use crate::rules;
use crate::types::{Chunk, Slice};
use crate::{Error, Event, Polled, Result, TopicOptions};

/// One partition of a topic.
pub(crate) struct PartLog {
    pub(crate) chunks: VecDeque<Arc<Chunk>>,
    /// Oldest retained offset.
    pub(crate) start: u64,
    /// Next offset to assign.
    pub(crate) end: u64,
    /// Offsets below this are durable and may be served.
    pub(crate) visible: u64,
    pub(crate) bytes: u64,
    pub(crate) dedup: DedupWindow,
}

impl PartLog {
    pub(super) fn new() -> Self {
        PartLog {
            chunks: VecDeque::new(),
            start: 0,
            end: 0,
            visible: 0,
            bytes: 0,
            dedup: DedupWindow::default(),
        }
    }

    /// Index of the chunk holding `offset`, if retained.
    pub(super) fn chunk_index(&self, offset: u64) -> Option<usize> {
        if offset < self.start || offset >= self.end {
            return None;
        }
        // Consumers mostly read near the tail: look at the newest chunks first.
        let n = self.chunks.len();
        for i in (n.saturating_sub(4)..n).rev() {
            if self.chunks[i].base() <= offset {
                return (offset < self.chunks[i].end()).then_some(i);
            }
        }
        let i = self.chunks.partition_point(|c| c.base() <= offset);
        (i > 0 && offset < self.chunks[i - 1].end()).then(|| i - 1)
    }

    /// Pushes slices covering `[from, to)` (clamped to what is retained).
    pub(super) fn slices(
        &self,
        partition: u32,
        deliveries: u32,
        from: u64,
        to: u64,
        out: &mut Polled,
    ) {
        let from = from.max(self.start);
        let Some(mut i) = self.chunk_index(from) else {
            return;
        };
        let mut at = from;
        while at < to && i < self.chunks.len() {
            let c = &self.chunks[i];
            let a = (at - c.base()) as usize;
            let b = (to.min(c.end()) - c.base()) as usize;
            out.push(Slice::new(partition, deliveries, c.clone(), a..b));
            at = c.end();
            i += 1;
        }
    }

    pub(super) fn event(&self, offset: u64) -> Option<&Event> {
        let i = self.chunk_index(offset)?;
        let c = &self.chunks[i];
        c.events().get((offset - c.base()) as usize)
    }

    /// Removes what retention no longer allows and returns it, so that the caller can
    /// free it after releasing the partition's lock (freeing thousands of events is
    /// the slow part, and consumers of the partition would wait for it).
    #[must_use]
    pub(super) fn trim(&mut self, limits: &PartLimits, now_ms: u64) -> Vec<Arc<Chunk>> {
        let mut removed = Vec::new();
        let min_ms = limits
            .max_age
            .map_or(0, |a| now_ms.saturating_sub(a.as_millis() as u64));
        while let Some(front) = self.chunks.front() {
            let count = self.end - self.start;
            if let Some(max) = limits.max_events.filter(|&m| count > m) {
                let drop = (count - max).min(front.end() - self.start);
                self.start += drop;
            } else if (self.chunks.len() > 1 && limits.max_bytes.is_some_and(|m| self.bytes > m))
                || front.appended_ms() < min_ms
            {
                self.start = front.end();
            } else {
                break;
            }
            if self.start >= front.end() {
                self.bytes -= front.bytes();
                removed.extend(self.chunks.pop_front());
            }
        }
        if self.chunks.is_empty() {
            self.start = self.end;
        }
        removed
    }
}

/// A topic.
pub(crate) struct Topic {
    pub(crate) id: u32,
    pub(crate) name: Arc<str>,
    pub(crate) options: TopicOptions,
    pub(crate) parts: Box<[Mutex<PartLog>]>,
    pub(crate) groups: RwLock<FastMap<Arc<str>, Arc<Group>>>,
    pub(crate) next_group_id: AtomicU32,
    pub(super) limits: PartLimits,
    /// Woken when events become visible or a group's runs are released, so that
    /// waiting polls look again.
    pub(super) notify: Notify,
}

impl Topic {
    pub(crate) fn new(id: u32, name: &str, options: TopicOptions) -> Self {
        let n = options.partitions as u64;
        let r = &options.retention;
        let limits = PartLimits {
            max_events: r.max_events.map(|m| m.div_ceil(n)),
            max_bytes: r.max_bytes.map(|m| m.div_ceil(n)),
            max_age: r.max_age,
            dedup_ids: options.dedup.max_ids.div_ceil(n as usize),
            dedup_age: options.dedup.max_age,
        };
        Topic {
            id,
            name: name.into(),
            parts: (0..options.partitions)
                .map(|_| Mutex::new(PartLog::new()))
                .collect(),
            groups: RwLock::new(FastMap::default()),
            next_group_id: AtomicU32::new(0),
            limits,
            options,
            notify: Notify::new(),
        }
    }

    pub(crate) fn part(&self, partition: u32) -> Result<&Mutex<PartLog>> {
        self.parts
            .get(partition as usize)
            .ok_or_else(|| rules::unknown_partition(&self.name, partition, self.options.partitions))
    }

    /// The topic's groups as they are now (the lock is not held after).
    pub(crate) fn groups(&self) -> Vec<Arc<Group>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub(crate) fn group(&self, name: &str) -> Option<Arc<Group>> {
        self.groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    /// Appends a recovered chunk (disk backend, on open).
    pub(crate) fn restore_chunk(&self, partition: u32, chunk: Chunk, now_ms: u64) -> Result<()> {
        let mut log = lock(self.part(partition)?);
        if chunk.end() <= log.start {
            return Ok(());
        }
        if log.chunks.is_empty() {
            log.start = log.start.max(chunk.base());
            log.end = chunk.base();
        } else if chunk.end() <= log.end {
            // A copy of a batch restored already: a compaction that merged segments
            // stopped before deleting the older ones.
            return Ok(());
        } else if chunk.base() != log.end {
            return Err(Error::InvalidOptions(format!(
                "partition {partition} of topic {:?} jumps from offset {} to {}",
                self.name,
                log.end,
                chunk.base()
            )));
        }
        if self.limits.dedup_ids > 0 {
            let min_ms = now_ms.saturating_sub(self.limits.dedup_age.as_millis() as u64);
            if chunk.appended_ms() >= min_ms {
                log.dedup.rotate(&self.limits, chunk.appended_ms());
                for (i, e) in chunk.events().iter().enumerate() {
                    let hash = log.dedup.hash(e.id.0);
                    log.dedup.check_insert(
                        e.id.0,
                        hash,
                        chunk.base() + i as u64,
                        &self.limits,
                        chunk.appended_ms(),
                    );
                }
            }
        }
        log.end = chunk.end();
        log.visible = log.end;
        log.bytes += chunk.bytes();
        log.chunks.push_back(Arc::new(chunk));
        drop(log.trim(&self.limits, now_ms));
        Ok(())
    }

    /// Sets where a partition's retained range starts (disk backend, on open).
    pub(crate) fn restore_start(&self, partition: u32, start: u64) -> Result<()> {
        let mut log = lock(self.part(partition)?);
        log.start = log.start.max(start);
        log.end = log.end.max(start);
        log.visible = log.end;
        while log.chunks.front().is_some_and(|c| c.end() <= log.start) {
            if let Some(c) = log.chunks.pop_front() {
                log.bytes -= c.bytes();
            }
        }
        Ok(())
    }
}
