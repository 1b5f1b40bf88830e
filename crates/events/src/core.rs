//! The in-memory engine every local backend shares: topics, partitions, consumer
//! groups, pending lists, redelivery, dead letters, dedup and retention.
//!
//! A backend plugs in a [`Journal`] that makes each state change durable. The memory
//! backend's journal does nothing; the disk backend's appends records to its
//! write-ahead segments. Changes are applied in memory and handed to the journal under
//! the same lock, so the journal sees them in the order memory does.
//!
//! Locks: `Core::topics` (rare writes) → `GroupPart` → `PartLog`; never the other way.
//! No lock is held across an `.await`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::event::key_hash;
use crate::rules::{self, check_name};
use crate::types::{Chunk, Slice};
use crate::{
    Error, Event, GroupInfo, MemberInfo, Offset, Options, PartitionInfo, PendingEntry, Polled,
    Record, Result, SeekTo, TopicInfo, TopicOptions,
};

/// Acknowledged offsets of one partition as `(first, count)` runs.
pub(crate) type AckRanges = Vec<(u32, Vec<(u64, u32)>)>;

/// Makes state changes durable. Every method is called with the lock that ordered the
/// change held, so records of one partition or group arrive in order.
pub(crate) trait Journal: Send + Sync + 'static {
    /// Whether [`Journal::barrier`] has to be awaited before a change counts as done.
    const DURABLE: bool;
    fn topic_created(&self, id: u32, name: &str, options: &TopicOptions) -> Result<()>;
    fn group_created(&self, topic: u32, group: u32, name: &str) -> Result<()>;
    fn batch(&self, topic: u32, partition: u32, chunk: &Chunk) -> Result<()>;
    fn acked(&self, topic: u32, group: u32, acks: &AckRanges) -> Result<()>;
    fn seek(&self, topic: u32, group: u32, positions: &[(u32, u64)]) -> Result<()>;
    /// Resolves once everything handed over before the call is as durable as the
    /// backend promises.
    fn barrier(&self) -> impl Future<Output = Result<()>> + Send + 'static;
}

/// The memory backend's journal.
pub(crate) struct NoJournal;

impl Journal for NoJournal {
    const DURABLE: bool = false;
    fn topic_created(&self, _: u32, _: &str, _: &TopicOptions) -> Result<()> {
        Ok(())
    }
    fn group_created(&self, _: u32, _: u32, _: &str) -> Result<()> {
        Ok(())
    }
    fn batch(&self, _: u32, _: u32, _: &Chunk) -> Result<()> {
        Ok(())
    }
    fn acked(&self, _: u32, _: u32, _: &AckRanges) -> Result<()> {
        Ok(())
    }
    fn seek(&self, _: u32, _: u32, _: &[(u32, u64)]) -> Result<()> {
        Ok(())
    }
    fn barrier(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        std::future::ready(Ok(()))
    }
}

/// Wall-clock milliseconds derived from tokio's clock, so that paused test time moves
/// retention, dedup windows and timestamps along with timeouts.
#[derive(Clone, Debug)]
pub(crate) struct Clock {
    wall0: u64,
    t0: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            wall0: crate::event::now_ms(),
            t0: Instant::now(),
        }
    }
    pub(crate) fn now_ms(&self) -> u64 {
        self.wall0 + self.t0.elapsed().as_millis() as u64
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock cannot leave these structures half-updated in a way
    // that matters more than losing the process, so poisoning is ignored.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Recently published ids of one partition, in two generations: ids go into `cur`;
/// when it holds half the window or is half the window's age old, it becomes `prev`
/// and the old `prev` is dropped whole. An id is so remembered for at least half and
/// at most all of the window (count and age), at the cost of one table insert per
/// event and no per-event eviction.
#[derive(Default)]
pub(crate) struct DedupWindow {
    cur: IdTable,
    prev: IdTable,
    cur_since_ms: u64,
    /// Randomly seeded, because ids may be chosen by callers.
    hasher: foldhash::fast::RandomState,
}

impl DedupWindow {
    /// Starts a new generation if the current one is full or old.
    fn rotate(&mut self, limits: &PartLimits, now_ms: u64) {
        let age = now_ms.saturating_sub(self.cur_since_ms);
        let max_age = limits.dedup_age.as_millis() as u64;
        if age >= max_age {
            // Both generations are past the window.
            self.cur.clear();
            self.prev.clear();
            self.cur_since_ms = now_ms;
        } else if self.cur.len() >= limits.dedup_ids.div_ceil(2) || age >= max_age / 2 {
            std::mem::swap(&mut self.cur, &mut self.prev);
            self.cur.clear();
            self.cur_since_ms = now_ms;
        }
    }

    /// The hash both generations index `id` by.
    fn hash(&self, id: u128) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Loads the slots that ids with these hashes will probe. The loads do not depend
    /// on each other, so their cache misses overlap; the probes that follow, one after
    /// another, then mostly hit the cache.
    fn warm(&self, hashes: &[u64]) {
        let mut acc = 0;
        for &h in hashes {
            acc ^= self.cur.slot(h) ^ self.prev.slot(h);
        }
        std::hint::black_box(acc);
    }

    /// Records `id` (whose [`DedupWindow::hash`] is `hash`) at `offset` unless it is
    /// already known; returns the known offset. This runs once per published event: a
    /// new id costs one probe of each generation's slots (the previous one only while
    /// it holds ids).
    fn check_insert(
        &mut self,
        id: u128,
        hash: u64,
        offset: u64,
        limits: &PartLimits,
        now_ms: u64,
    ) -> Option<u64> {
        if self.cur.len() >= limits.dedup_ids.div_ceil(2) {
            self.rotate(limits, now_ms);
        }
        if !self.prev.is_empty()
            && let Some(o) = self.prev.get(id, hash)
        {
            return Some(o);
        }
        self.cur.get_or_insert(id, hash, offset)
    }
}

/// A set of ids with the offset each was stored at: an open-addressing index over an
/// append-only list, made for the dedup window's pattern (inserts, lookups of mostly
/// absent ids, clearing all at once; no single removal).
///
/// The slots are 8 bytes (a 24-bit hash tag and a 40-bit position in `entries`), so
/// the part that is probed at random stays small enough for the CPU caches; `entries`
/// is only written in order and read when a tag matches. Hashes come from the caller,
/// so that they can be computed for a whole batch first.
#[derive(Default)]
struct IdTable {
    /// `(id, offset, hash)` in insertion order (the hash fills what would be padding,
    /// and spares rehashing when the slots grow).
    entries: Vec<(u128, u64, u64)>,
    /// Linear probing; 0 is empty, else `tag << 40 | (position + 1)`. The length is a
    /// power of two at least twice `entries.len()` (or zero).
    slots: Vec<u64>,
}

const POS_BITS: u32 = 40;
const POS_MASK: u64 = (1 << POS_BITS) - 1;

impl IdTable {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn clear(&mut self) {
        if !self.entries.is_empty() {
            self.entries.clear();
            self.slots.fill(0);
        }
    }

    /// The first slot an id with this hash probes (0 if there are none).
    fn slot(&self, hash: u64) -> u64 {
        if self.slots.is_empty() {
            return 0;
        }
        self.slots[hash as usize & (self.slots.len() - 1)]
    }

    /// The slot holding `id`, or the empty slot where it would go.
    fn find(&self, id: u128, hash: u64) -> std::result::Result<usize, usize> {
        let mask = self.slots.len() - 1;
        let tag = hash >> POS_BITS;
        let mut i = hash as usize & mask;
        loop {
            let s = self.slots[i];
            if s == 0 {
                return Err(i);
            }
            if s >> POS_BITS == tag && self.entries[((s & POS_MASK) - 1) as usize].0 == id {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    fn offset_at(&self, slot: usize) -> u64 {
        self.entries[((self.slots[slot] & POS_MASK) - 1) as usize].1
    }

    fn get(&self, id: u128, hash: u64) -> Option<u64> {
        if self.entries.is_empty() {
            return None;
        }
        let i = self.find(id, hash).ok()?;
        Some(self.offset_at(i))
    }

    /// The offset `id` is known at, or `None` after recording it at `offset`.
    fn get_or_insert(&mut self, id: u128, hash: u64, offset: u64) -> Option<u64> {
        if (self.entries.len() + 1) * 2 > self.slots.len() {
            self.grow();
        }
        match self.find(id, hash) {
            Ok(i) => Some(self.offset_at(i)),
            Err(i) => {
                self.entries.push((id, offset, hash));
                self.slots[i] = (hash >> POS_BITS) << POS_BITS | self.entries.len() as u64;
                None
            }
        }
    }

    fn grow(&mut self) {
        let len = (self.slots.len() * 2).max(64);
        self.slots.clear();
        self.slots.resize(len, 0);
        for n in 0..self.entries.len() {
            let (id, _, hash) = self.entries[n];
            // Ids in a table are distinct, so each finds an empty slot.
            let (Ok(i) | Err(i)) = self.find(id, hash);
            self.slots[i] = (hash >> POS_BITS) << POS_BITS | (n as u64 + 1);
        }
    }
}

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
    fn new() -> Self {
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
    fn chunk_index(&self, offset: u64) -> Option<usize> {
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
    fn slices(&self, partition: u32, deliveries: u32, from: u64, to: u64, out: &mut Polled) {
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

    fn event(&self, offset: u64) -> Option<&Event> {
        let i = self.chunk_index(offset)?;
        let c = &self.chunks[i];
        c.events().get((offset - c.base()) as usize)
    }

    /// Removes what retention no longer allows and returns it, so that the caller can
    /// free it after releasing the partition's lock (freeing thousands of events is
    /// the slow part, and consumers of the partition would wait for it).
    #[must_use]
    fn trim(&mut self, limits: &PartLimits, now_ms: u64) -> Vec<Arc<Chunk>> {
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

/// Per-partition shares of a topic's bounds.
pub(crate) struct PartLimits {
    max_events: Option<u64>,
    max_bytes: Option<u64>,
    max_age: Option<Duration>,
    dedup_ids: usize,
    dedup_age: Duration,
}

/// A topic.
pub(crate) struct Topic {
    pub(crate) id: u32,
    pub(crate) name: Arc<str>,
    pub(crate) options: TopicOptions,
    pub(crate) parts: Box<[Mutex<PartLog>]>,
    pub(crate) groups: RwLock<FastMap<Arc<str>, Arc<Group>>>,
    pub(crate) next_group_id: AtomicU32,
    limits: PartLimits,
    notify: Notify,
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

/// A delivered, unacknowledged run of consecutive events of one partition.
#[derive(Clone, Debug)]
struct Run {
    len: u32,
    remaining: u32,
    acked: Vec<bool>,
    member: Arc<str>,
    since_ms: u64,
    deadline: Instant,
    deliveries: u32,
}

/// A consumer group's view of one partition.
#[derive(Default)]
pub(crate) struct GroupPart {
    /// Next offset never delivered to the group.
    pub(crate) next: u64,
    runs: BTreeMap<u64, Run>,
    /// Offsets at or after `next` that are already acknowledged (known after a restart).
    pub(crate) skip: BTreeSet<u64>,
    /// The member new events of this partition go to while it has pending events, so
    /// that one key's events are not processed by two members at once.
    owner: Option<Arc<str>>,
    /// No run expires before this (it may be stale-early, never late).
    earliest: Option<Instant>,
}

impl GroupPart {
    /// The lowest offset not acknowledged.
    pub(crate) fn committed(&self) -> u64 {
        self.runs
            .iter()
            .find_map(|(s, r)| r.acked.iter().position(|a| !a).map(|i| s + i as u64))
            .unwrap_or(self.next)
    }

    /// Offsets acknowledged above `committed()`.
    pub(crate) fn acked_above(&self, committed: u64) -> Vec<u64> {
        let mut out: Vec<u64> = self
            .runs
            .iter()
            .flat_map(|(s, r)| {
                r.acked
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| **a)
                    .map(move |(i, _)| s + i as u64)
            })
            .filter(|&o| o > committed)
            .collect();
        out.extend(self.skip.iter().copied());
        out.sort_unstable();
        out
    }

    /// The start of the run holding `offset`.
    fn run_of(&self, offset: u64) -> Option<u64> {
        let (&s, r) = self.runs.range(..=offset).next_back()?;
        (offset < s + r.len as u64).then_some(s)
    }

    /// Splits the run starting at `start` so that a run begins at `at`.
    fn split(&mut self, start: u64, at: u64) {
        let Some(run) = self.runs.get_mut(&start) else {
            return;
        };
        if at <= start || at >= start + run.len as u64 {
            return;
        }
        let k = (at - start) as usize;
        let tail_acked = run.acked.split_off(k);
        let tail_remaining = tail_acked.iter().filter(|a| !**a).count() as u32;
        let tail = Run {
            len: tail_acked.len() as u32,
            remaining: tail_remaining,
            acked: tail_acked,
            member: run.member.clone(),
            since_ms: run.since_ms,
            deadline: run.deadline,
            deliveries: run.deliveries,
        };
        run.len = k as u32;
        run.remaining -= tail_remaining;
        let head_empty = run.remaining == 0;
        if head_empty {
            self.runs.remove(&start);
        }
        if tail.remaining > 0 {
            self.runs.insert(at, tail);
        }
    }

    fn note_deadline(&mut self, d: Instant) {
        self.earliest = Some(self.earliest.map_or(d, |e| e.min(d)));
    }

    fn release_if_idle(&mut self) -> bool {
        if self.runs.is_empty() && self.owner.is_some() {
            self.owner = None;
            self.earliest = None;
            return true;
        }
        false
    }
}

/// A consumer group of a topic.
pub(crate) struct Group {
    pub(crate) id: u32,
    pub(crate) name: Arc<str>,
    pub(crate) parts: Box<[Mutex<GroupPart>]>,
    members: Mutex<FastMap<Arc<str>, u64>>,
    rr: AtomicUsize,
}

impl Group {
    pub(crate) fn new(id: u32, name: &str, partitions: u32) -> Self {
        Group {
            id,
            name: name.into(),
            parts: (0..partitions)
                .map(|_| Mutex::new(GroupPart::default()))
                .collect(),
            members: Mutex::new(FastMap::default()),
            rr: AtomicUsize::new(0),
        }
    }

    pub(crate) fn part(&self, partition: u32) -> Option<MutexGuard<'_, GroupPart>> {
        self.parts.get(partition as usize).map(lock)
    }
}

/// An event that ran out of deliveries.
struct DeadLetter {
    offset: Offset,
    deliveries: u32,
    event: Option<Event>,
}

/// The engine.
pub(crate) struct Core<J> {
    pub(crate) options: Options,
    pub(crate) topics: RwLock<FastMap<Arc<str>, Arc<Topic>>>,
    pub(crate) next_topic_id: AtomicU32,
    pub(crate) clock: Clock,
    pub(crate) journal: J,
    closed: AtomicBool,
}

impl<J: Journal> Core<J> {
    pub(crate) fn new(options: Options, journal: J) -> Result<Self> {
        options.topic_defaults.validate()?;
        Ok(Core {
            options,
            topics: RwLock::new(FastMap::default()),
            next_topic_id: AtomicU32::new(0),
            clock: Clock::new(),
            journal,
            closed: AtomicBool::new(false),
        })
    }

    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        for t in self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            t.notify.notify_waiters();
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    pub(crate) fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    fn existing(&self, name: &str) -> Result<Arc<Topic>> {
        self.topic(name)
            .ok_or_else(|| Error::UnknownTopic(name.to_owned()))
    }

    /// Installs a topic with a known id (disk backend, on open).
    pub(crate) fn restore_topic(&self, id: u32, name: &str, options: TopicOptions) -> Arc<Topic> {
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        self.next_topic_id.fetch_max(id + 1, Ordering::Relaxed);
        topics
            .entry(name.into())
            .or_insert_with(|| Arc::new(Topic::new(id, name, options)))
            .clone()
    }

    pub(crate) fn create_topic(
        &self,
        name: &str,
        options: Option<TopicOptions>,
    ) -> Result<Arc<Topic>> {
        check_name("topic", name)?;
        let explicit = options.is_some();
        let options =
            options.unwrap_or_else(|| rules::topic_defaults(&self.options.topic_defaults, name));
        options.validate()?;
        if let Some(t) = self.topic(name) {
            return check_same(&t, &options, explicit);
        }
        let mut topics = self.topics.write().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = topics.get(name) {
            return check_same(t, &options, explicit);
        }
        self.check_open()?;
        let id = self.next_topic_id.fetch_add(1, Ordering::Relaxed);
        self.journal.topic_created(id, name, &options)?;
        let t = Arc::new(Topic::new(id, name, options));
        topics.insert(t.name.clone(), t.clone());
        Ok(t)
    }

    pub(crate) fn group(&self, topic: &Topic, name: &str) -> Result<Arc<Group>> {
        if let Some(g) = topic.group(name) {
            return Ok(g);
        }
        check_name("group", name)?;
        let mut groups = topic.groups.write().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = groups.get(name) {
            return Ok(g.clone());
        }
        let id = topic.next_group_id.fetch_add(1, Ordering::Relaxed);
        self.journal.group_created(topic.id, id, name)?;
        let g = Arc::new(Group::new(id, name, topic.options.partitions));
        // A new group starts at the oldest retained event.
        for (gp, part) in g.parts.iter().zip(topic.parts.iter()) {
            lock(gp).next = lock(part).start;
        }
        groups.insert(g.name.clone(), g.clone());
        Ok(g)
    }

    /// Installs a group with a known id (disk backend, on open).
    pub(crate) fn restore_group(&self, topic: &Topic, id: u32, name: &str) -> Arc<Group> {
        let mut groups = topic.groups.write().unwrap_or_else(|e| e.into_inner());
        topic.next_group_id.fetch_max(id + 1, Ordering::Relaxed);
        groups
            .entry(name.into())
            .or_insert_with(|| Arc::new(Group::new(id, name, topic.options.partitions)))
            .clone()
    }

    pub(crate) async fn publish(&self, topic: &str, batch: Vec<Event>) -> Result<Vec<Offset>> {
        rules::check_batch(&self.options.limits, &batch)?;
        let t = match self.topic(topic) {
            Some(t) => t,
            None => self.create_topic(topic, None)?,
        };
        self.publish_to(&t, batch).await
    }

    async fn publish_to(&self, t: &Topic, batch: Vec<Event>) -> Result<Vec<Offset>> {
        self.check_open()?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let n = t.options.partitions;
        let mut offsets = vec![Offset::default(); batch.len()];
        let mut touched: Vec<(u32, u64)> = Vec::new();
        if n == 1 {
            let idx: Vec<usize> = (0..batch.len()).collect();
            self.append(t, 0, batch, &idx, &mut offsets, &mut touched)?;
        } else {
            let buckets = split_by_partition(batch, n);
            for (p, (events, idx)) in buckets.into_iter().enumerate() {
                if !events.is_empty() {
                    self.append(t, p as u32, events, &idx, &mut offsets, &mut touched)?;
                }
            }
        }
        if J::DURABLE {
            self.journal.barrier().await?;
            for &(p, end) in &touched {
                let mut log = lock(&t.parts[p as usize]);
                log.visible = log.visible.max(end);
            }
        }
        if !touched.is_empty() {
            t.notify.notify_waiters();
        }
        // Without a real wait (memory backend) a publishing loop would never return
        // to the scheduler and could starve its consumers on the same worker.
        tokio::task::consume_budget().await;
        Ok(offsets)
    }

    /// Appends events of one partition; `idx[i]` is the position of `events[i]` in the
    /// published batch.
    fn append(
        &self,
        t: &Topic,
        p: u32,
        mut events: Vec<Event>,
        idx: &[usize],
        offsets: &mut [Offset],
        touched: &mut Vec<(u32, u64)>,
    ) -> Result<()> {
        let now = self.clock.now_ms();
        let mut log = lock(&t.parts[p as usize]);
        let mut next = log.end;
        if t.limits.dedup_ids > 0 {
            let log = &mut *log;
            log.dedup.rotate(&t.limits, now);
            let hashes: Vec<u64> = events.iter().map(|e| log.dedup.hash(e.id.0)).collect();
            log.dedup.warm(&hashes);
            let mut dup: Option<Vec<bool>> = None;
            for (j, (e, &hash)) in events.iter().zip(&hashes).enumerate() {
                if let Some(o) = log.dedup.check_insert(e.id.0, hash, next, &t.limits, now) {
                    offsets[idx[j]] = Offset::new(p, o);
                    dup.get_or_insert_with(|| vec![false; idx.len()])[j] = true;
                } else {
                    offsets[idx[j]] = Offset::new(p, next);
                    next += 1;
                }
            }
            if let Some(dup) = dup {
                let mut k = 0;
                events.retain(|_| {
                    k += 1;
                    !dup[k - 1]
                });
            }
        } else {
            for (j, &i) in idx.iter().enumerate() {
                offsets[i] = Offset::new(p, next + j as u64);
            }
            next += events.len() as u64;
        }
        if events.is_empty() {
            if J::DURABLE {
                // A duplicate may still be in flight to disk; wait for it like its original.
                touched.push((p, log.end));
            }
            return Ok(());
        }
        let chunk = Chunk::new(log.end, now, events);
        self.journal.batch(t.id, p, &chunk)?;
        log.bytes += chunk.bytes();
        log.chunks.push_back(Arc::new(chunk));
        log.end = next;
        if !J::DURABLE {
            log.visible = next;
        }
        let removed = log.trim(&t.limits, now);
        drop(log);
        drop(removed);
        touched.push((p, next));
        Ok(())
    }

    pub(crate) async fn poll(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Polled> {
        check_name("member", member)?;
        let t = match self.topic(topic) {
            Some(t) => t,
            None => self.create_topic(topic, None)?,
        };
        let g = self.group(&t, group)?;
        let member: Arc<str> = member.into();
        let deadline = Instant::now() + wait;
        loop {
            self.check_open()?;
            let notified = t.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut out = Polled::new();
            let mut dead = Vec::new();
            let mut acks = AckRanges::new();
            let earliest = self.poll_once(&t, &g, &member, max, &mut out, &mut dead, &mut acks);
            if !dead.is_empty() {
                self.dead_letter(&t, &g, dead, &acks).await?;
                if out.is_empty() {
                    continue;
                }
            }
            if !out.is_empty() || max == 0 {
                tokio::task::consume_budget().await;
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            let wake = earliest.map_or(deadline, |e| e.min(deadline)).max(now);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// One pass over the partitions: claims expired runs, then delivers new events.
    /// Returns the earliest time a run held by someone becomes claimable.
    #[allow(clippy::too_many_arguments)]
    fn poll_once(
        &self,
        t: &Topic,
        g: &Group,
        member: &Arc<str>,
        max: usize,
        out: &mut Polled,
        dead: &mut Vec<DeadLetter>,
        acks: &mut AckRanges,
    ) -> Option<Instant> {
        let now = Instant::now();
        let now_ms = self.clock.now_ms();
        lock(&g.members).insert(member.clone(), now_ms);
        let n = t.parts.len();
        let first = g.rr.fetch_add(1, Ordering::Relaxed) % n;
        let vis = t.options.visibility_timeout;
        let max_deliveries = t.options.max_deliveries;
        let mut earliest: Option<Instant> = None;
        for k in 0..n {
            let p = (first + k) % n;
            let mut gp = lock(&g.parts[p]);
            let gp = &mut *gp;
            if gp.earliest.is_some_and(|e| e <= now) && out.len() < max {
                // Claim expired runs (redelivery) before new events.
                let expired: Vec<u64> = gp
                    .runs
                    .iter()
                    .filter(|(_, r)| r.deadline <= now)
                    .map(|(s, _)| *s)
                    .collect();
                let log = lock(&t.parts[p]);
                let mut ranges = Vec::new();
                for s in expired {
                    if out.len() >= max {
                        break;
                    }
                    let run = &gp.runs[&s];
                    if max_deliveries > 0 && run.deliveries >= max_deliveries {
                        let run = gp.runs.remove(&s).unwrap_or_else(|| unreachable!());
                        for (i, a) in run.acked.iter().enumerate() {
                            if !a {
                                let o = s + i as u64;
                                dead.push(DeadLetter {
                                    offset: Offset::new(p as u32, o),
                                    deliveries: run.deliveries,
                                    event: log.event(o).cloned(),
                                });
                                push_range(&mut ranges, o);
                            }
                        }
                        continue;
                    }
                    // Claim only as much as fits in this poll.
                    let room = (max - out.len()) as u32;
                    if run.remaining > room {
                        let mut cut = s;
                        let mut seen = 0;
                        for (i, a) in run.acked.iter().enumerate() {
                            if !a {
                                seen += 1;
                                if seen > room {
                                    cut = s + i as u64;
                                    break;
                                }
                            }
                        }
                        gp.split(s, cut);
                    }
                    let Some(run) = gp.runs.get_mut(&s) else {
                        continue;
                    };
                    run.deliveries += 1;
                    run.member = member.clone();
                    run.since_ms = now_ms;
                    run.deadline = now + vis;
                    let mut i = 0usize;
                    while i < run.acked.len() {
                        if run.acked[i] {
                            i += 1;
                            continue;
                        }
                        let j = run.acked[i..]
                            .iter()
                            .position(|a| *a)
                            .map_or(run.acked.len(), |x| i + x);
                        let before = out.len();
                        log.slices(p as u32, run.deliveries, s + i as u64, s + j as u64, out);
                        let served = out.len() - before;
                        // Events lost to retention cannot be delivered: count them done.
                        for a in &mut run.acked[i + served..j] {
                            *a = true;
                            run.remaining -= 1;
                        }
                        i = j;
                    }
                    if run.remaining == 0 {
                        gp.runs.remove(&s);
                    }
                    gp.owner = Some(member.clone());
                }
                drop(log);
                if !ranges.is_empty() {
                    acks.push((p as u32, ranges));
                }
                gp.earliest = gp.runs.values().map(|r| r.deadline).min();
                gp.release_if_idle();
            }
            if out.len() < max
                && (gp.runs.is_empty() || gp.owner.as_deref().is_none_or(|o| o == &**member))
            {
                let log = lock(&t.parts[p]);
                if gp.next < log.start {
                    tracing::warn!(
                        topic = %t.name, group = %g.name, partition = p,
                        skipped = log.start - gp.next,
                        "consumer group fell behind retention; skipping dropped events"
                    );
                    gp.next = log.start;
                    let keep = gp.skip.split_off(&log.start);
                    gp.skip = keep;
                }
                let avail = log.visible.saturating_sub(gp.next);
                let take = avail.min((max - out.len()) as u64);
                if take > 0 {
                    let s = gp.next;
                    let mut acked = vec![false; take as usize];
                    let mut remaining = take as u32;
                    if !gp.skip.is_empty() {
                        let rest = gp.skip.split_off(&(s + take));
                        for o in std::mem::replace(&mut gp.skip, rest) {
                            if o >= s {
                                acked[(o - s) as usize] = true;
                                remaining -= 1;
                            }
                        }
                    }
                    if remaining == take as u32 {
                        log.slices(p as u32, 1, s, s + take, out);
                    } else {
                        let mut i = 0usize;
                        while i < acked.len() {
                            if acked[i] {
                                i += 1;
                                continue;
                            }
                            let j = acked[i..]
                                .iter()
                                .position(|a| *a)
                                .map_or(acked.len(), |x| i + x);
                            log.slices(p as u32, 1, s + i as u64, s + j as u64, out);
                            i = j;
                        }
                    }
                    gp.next = s + take;
                    if remaining > 0 {
                        let deadline = now + vis;
                        gp.runs.insert(
                            s,
                            Run {
                                len: take as u32,
                                remaining,
                                acked,
                                member: member.clone(),
                                since_ms: now_ms,
                                deadline,
                                deliveries: 1,
                            },
                        );
                        gp.note_deadline(deadline);
                        gp.owner = Some(member.clone());
                    }
                }
            }
            if let Some(e) = gp.earliest {
                earliest = Some(earliest.map_or(e, |x: Instant| x.min(e)));
            }
        }
        earliest
    }

    async fn dead_letter(
        &self,
        t: &Topic,
        g: &Group,
        dead: Vec<DeadLetter>,
        acks: &AckRanges,
    ) -> Result<()> {
        let dlq_name = crate::dead_letter_topic(&t.name);
        let dlq = match self.topic(&dlq_name) {
            Some(d) => d,
            None => self.create_topic(&dlq_name, None)?,
        };
        let reason = Bytes::from(format!(
            "not acknowledged after {} deliveries",
            t.options.max_deliveries
        ));
        let mut batch = Vec::with_capacity(dead.len());
        for d in dead {
            let Some(mut e) = d.event else {
                continue;
            };
            tracing::warn!(
                topic = %t.name, group = %g.name, offset = %d.offset, deliveries = d.deliveries,
                "event exhausted its deliveries; moving it to the dead-letter topic"
            );
            let original = e.id;
            // A fresh id: two groups dead-lettering one event must both be recorded.
            e.id = crate::EventId::generate();
            e.headers.extend([
                ("dlq.reason".to_owned(), reason.clone()),
                ("dlq.topic".to_owned(), Bytes::from(t.name.to_string())),
                ("dlq.group".to_owned(), Bytes::from(g.name.to_string())),
                ("dlq.offset".to_owned(), Bytes::from(d.offset.to_string())),
                (
                    "dlq.deliveries".to_owned(),
                    Bytes::from(d.deliveries.to_string()),
                ),
                ("dlq.event_id".to_owned(), Bytes::from(original.to_string())),
            ]);
            batch.push(e);
        }
        if !batch.is_empty() {
            self.publish_to(&dlq, batch).await?;
        }
        if J::DURABLE && !acks.is_empty() {
            self.journal.acked(t.id, g.id, acks)?;
            self.journal.barrier().await?;
        }
        Ok(())
    }

    pub(crate) async fn ack(&self, topic: &str, group: &str, ids: &[Offset]) -> Result<usize> {
        let (t, g) = self.existing_group(topic, group)?;
        let mut count = 0;
        let mut journaled = false;
        let mut released = false;
        let mut i = 0;
        while i < ids.len() {
            let p = ids[i].partition;
            let mut gp = g
                .part(p)
                .ok_or_else(|| rules::unknown_partition(topic, p, t.options.partitions))?;
            let mut ranges = Vec::new();
            let mut cached: Option<(u64, u64)> = None;
            while i < ids.len() && ids[i].partition == p {
                let o = ids[i].offset;
                i += 1;
                let s = match cached {
                    Some((s, e)) if o >= s && o < e => s,
                    _ => match gp.run_of(o) {
                        Some(s) => {
                            cached = Some((s, s + gp.runs[&s].len as u64));
                            s
                        }
                        None => continue,
                    },
                };
                let run = gp.runs.get_mut(&s).unwrap_or_else(|| unreachable!());
                let a = &mut run.acked[(o - s) as usize];
                if !*a {
                    *a = true;
                    run.remaining -= 1;
                    count += 1;
                    if J::DURABLE {
                        push_range(&mut ranges, o);
                    }
                    if run.remaining == 0 {
                        gp.runs.remove(&s);
                        cached = None;
                    }
                }
            }
            released |= gp.release_if_idle();
            if !ranges.is_empty() {
                // Journaled under the partition's lock so that a concurrent seek is
                // recorded in the same order memory saw it.
                self.journal.acked(t.id, g.id, &vec![(p, ranges)])?;
                journaled = true;
            }
        }
        if J::DURABLE && journaled {
            self.journal.barrier().await?;
        }
        if released {
            t.notify.notify_waiters();
        }
        Ok(count)
    }

    pub(crate) async fn nack(
        &self,
        topic: &str,
        group: &str,
        ids: &[Offset],
        delay: Duration,
    ) -> Result<usize> {
        let (t, g) = self.existing_group(topic, group)?;
        let deadline = Instant::now() + delay;
        let mut sorted = ids.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut count = 0;
        let mut i = 0;
        while i < sorted.len() {
            let p = sorted[i].partition;
            let mut gp = g
                .part(p)
                .ok_or_else(|| rules::unknown_partition(topic, p, t.options.partitions))?;
            while i < sorted.len() && sorted[i].partition == p {
                // A stretch of consecutive offsets inside one run becomes its own run.
                let a = sorted[i].offset;
                i += 1;
                let Some(s) = gp.run_of(a) else {
                    continue;
                };
                let run_end = s + gp.runs[&s].len as u64;
                let mut b = a + 1;
                while i < sorted.len()
                    && sorted[i].partition == p
                    && sorted[i].offset == b
                    && b < run_end
                {
                    b += 1;
                    i += 1;
                }
                gp.split(s, a);
                let start = gp.run_of(a);
                if let Some(start) = start {
                    gp.split(start, b);
                }
                if let Some(run) = gp.run_of(a).and_then(|s| gp.runs.get_mut(&s)) {
                    count += run.remaining as usize;
                    run.deadline = deadline;
                }
                gp.note_deadline(deadline);
            }
        }
        t.notify.notify_waiters();
        Ok(count)
    }

    fn existing_group(&self, topic: &str, group: &str) -> Result<(Arc<Topic>, Arc<Group>)> {
        let t = self.existing(topic)?;
        let g = t.group(group).ok_or_else(|| Error::UnknownGroup {
            topic: topic.to_owned(),
            group: group.to_owned(),
        })?;
        Ok((t, g))
    }

    pub(crate) fn pending(
        &self,
        topic: &str,
        group: &str,
        limit: usize,
    ) -> Result<Vec<PendingEntry>> {
        let (_, g) = self.existing_group(topic, group)?;
        let now = Instant::now();
        let now_ms = self.clock.now_ms();
        let mut out = Vec::new();
        for (p, gp) in g.parts.iter().enumerate() {
            let gp = lock(gp);
            for (s, r) in &gp.runs {
                let claimable_at_ms =
                    now_ms + r.deadline.saturating_duration_since(now).as_millis() as u64;
                for (i, a) in r.acked.iter().enumerate() {
                    if out.len() >= limit {
                        return Ok(out);
                    }
                    if !a {
                        out.push(PendingEntry {
                            offset: Offset::new(p as u32, s + i as u64),
                            member: r.member.to_string(),
                            since_ms: r.since_ms,
                            deliveries: r.deliveries,
                            claimable_at_ms,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    pub(crate) fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        let t = self.existing(topic)?;
        let groups: Vec<Arc<Group>> = t
            .groups
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out = Vec::with_capacity(groups.len());
        for g in groups {
            let mut held: FastMap<Arc<str>, u64> = FastMap::default();
            let mut pending = 0;
            let mut lag = 0;
            let mut committed = Vec::new();
            for (p, gp) in g.parts.iter().enumerate() {
                let gp = lock(gp);
                for r in gp.runs.values() {
                    pending += r.remaining as u64;
                    *held.entry(r.member.clone()).or_default() += r.remaining as u64;
                }
                let visible = lock(&t.parts[p]).visible;
                lag += visible.saturating_sub(gp.next);
                committed.push(Offset::new(p as u32, gp.committed()));
            }
            let mut members: Vec<MemberInfo> = lock(&g.members)
                .iter()
                .map(|(name, seen)| MemberInfo {
                    name: name.to_string(),
                    last_seen_ms: *seen,
                    pending: held.get(name).copied().unwrap_or(0),
                })
                .collect();
            members.sort_by(|a, b| a.name.cmp(&b.name));
            out.push(GroupInfo {
                name: g.name.to_string(),
                members,
                pending,
                lag,
                committed,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) fn topics(&self) -> Vec<TopicInfo> {
        let now = self.clock.now_ms();
        let topics: Vec<Arc<Topic>> = self
            .topics
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut out: Vec<TopicInfo> = topics
            .iter()
            .map(|t| {
                let partitions = t
                    .parts
                    .iter()
                    .map(|p| {
                        let mut log = lock(p);
                        drop(log.trim(&t.limits, now));
                        PartitionInfo {
                            start: log.start,
                            end: log.visible,
                            bytes: log.bytes,
                        }
                    })
                    .collect();
                let mut groups: Vec<String> = t
                    .groups
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .keys()
                    .map(|k| k.to_string())
                    .collect();
                groups.sort();
                TopicInfo {
                    name: t.name.to_string(),
                    partitions,
                    groups,
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub(crate) fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        let t = self.existing(topic)?;
        let mut log = lock(t.part(partition)?);
        drop(log.trim(&t.limits, self.clock.now_ms()));
        let mut out = Polled::new();
        let to = log.visible.min(from.saturating_add(max as u64));
        log.slices(partition, 0, from, to, &mut out);
        let mut records = Vec::with_capacity(out.len());
        for s in out.slices() {
            let idx = log
                .chunk_index(s.first_offset())
                .unwrap_or_else(|| unreachable!());
            let appended_ms = log.chunks[idx].appended_ms();
            for (i, e) in s.events().iter().enumerate() {
                records.push(Record {
                    offset: Offset::new(partition, s.first_offset() + i as u64),
                    appended_ms,
                    event: e.clone(),
                });
            }
        }
        Ok(records)
    }

    pub(crate) fn offsets_at(&self, topic: &str, time_ms: u64) -> Result<Vec<Offset>> {
        let t = self.existing(topic)?;
        Ok(t.parts
            .iter()
            .enumerate()
            .map(|(p, log)| Offset::new(p as u32, offset_at(&lock(log), time_ms)))
            .collect())
    }

    pub(crate) async fn seek(&self, topic: &str, group: &str, to: SeekTo) -> Result<()> {
        let t = match self.topic(topic) {
            Some(t) => t,
            None => self.create_topic(topic, None)?,
        };
        let g = self.group(&t, group)?;
        let mut positions: Vec<(u32, u64)> = Vec::new();
        for (p, log) in t.parts.iter().enumerate() {
            let log = lock(log);
            let pos = match &to {
                SeekTo::Earliest => Some(log.start),
                SeekTo::Latest => Some(log.visible),
                SeekTo::Time(ms) => Some(offset_at(&log, *ms)),
                SeekTo::Offsets(list) => list
                    .iter()
                    .rev()
                    .find(|o| o.partition == p as u32)
                    .map(|o| o.offset.min(log.visible)),
            };
            if let Some(pos) = pos {
                positions.push((p as u32, pos));
            }
        }
        if let SeekTo::Offsets(list) = &to
            && let Some(bad) = list.iter().find(|o| o.partition >= t.options.partitions)
        {
            return Err(rules::unknown_partition(
                topic,
                bad.partition,
                t.options.partitions,
            ));
        }
        // All of the group's partitions are locked (in index order, like everywhere)
        // so the seek is journaled and applied as one step.
        {
            let mut guards: Vec<MutexGuard<'_, GroupPart>> = g.parts.iter().map(lock).collect();
            self.journal.seek(t.id, g.id, &positions)?;
            for &(p, pos) in &positions {
                let gp = &mut guards[p as usize];
                gp.next = pos;
                gp.runs.clear();
                gp.skip.clear();
                gp.owner = None;
                gp.earliest = None;
            }
        }
        if J::DURABLE {
            self.journal.barrier().await?;
        }
        t.notify.notify_waiters();
        Ok(())
    }
}

/// Splits a batch by partition, keeping each event's position in the batch. Two passes
/// so every partition's vector is allocated once, at its size; kept out of the async
/// `publish_to` so that events move straight into their vectors.
fn split_by_partition(batch: Vec<Event>, n: u32) -> Vec<(Vec<Event>, Vec<usize>)> {
    let parts: Vec<u32> = batch
        .iter()
        .map(|e| (key_hash(&e.key) % n as u64) as u32)
        .collect();
    let mut counts = vec![0usize; n as usize];
    for &p in &parts {
        counts[p as usize] += 1;
    }
    let mut buckets: Vec<(Vec<Event>, Vec<usize>)> = counts
        .iter()
        .map(|&c| (Vec::with_capacity(c), Vec::with_capacity(c)))
        .collect();
    for (i, &p) in parts.iter().enumerate() {
        buckets[p as usize].1.push(i);
    }
    for (e, &p) in batch.into_iter().zip(&parts) {
        buckets[p as usize].0.push(e);
    }
    buckets
}

fn check_same(t: &Arc<Topic>, requested: &TopicOptions, explicit: bool) -> Result<Arc<Topic>> {
    rules::check_same(&t.name, &t.options, explicit.then_some(requested))?;
    Ok(t.clone())
}

fn offset_at(log: &PartLog, time_ms: u64) -> u64 {
    let i = log.chunks.partition_point(|c| c.appended_ms() < time_ms);
    log.chunks
        .get(i)
        .map_or(log.visible, |c| c.base().max(log.start))
        .min(log.visible)
}

fn push_range(ranges: &mut Vec<(u64, u32)>, o: u64) {
    if let Some(last) = ranges.last_mut()
        && last.0 + last.1 as u64 == o
        && last.1 < u32::MAX
    {
        last.1 += 1;
        return;
    }
    ranges.push((o, 1));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ids: usize) -> PartLimits {
        PartLimits {
            max_events: None,
            max_bytes: None,
            max_age: None,
            dedup_ids: ids,
            dedup_age: Duration::from_secs(60),
        }
    }

    #[test]
    fn id_table_finds_what_it_holds_across_growth() {
        let mut w = DedupWindow::default();
        let l = limits(1 << 20);
        // Ids that differ only in their high bits, and sequential ones.
        let ids: Vec<u128> = (0..5000u128)
            .map(|i| if i % 2 == 0 { i << 100 } else { i })
            .collect();
        for (o, &id) in ids.iter().enumerate() {
            assert_eq!(w.check_insert(id, w.hash(id), o as u64, &l, 0), None);
        }
        for (o, &id) in ids.iter().enumerate() {
            assert_eq!(w.check_insert(id, w.hash(id), 9999, &l, 0), Some(o as u64));
        }
        assert_eq!(w.cur.len(), ids.len());
        assert!(w.cur.slots.len() >= 2 * ids.len());
    }

    #[test]
    fn window_keeps_two_generations_by_count_and_age() {
        let mut w = DedupWindow::default();
        let l = limits(4);
        for id in 0..4u128 {
            assert_eq!(w.check_insert(id, w.hash(id), id as u64, &l, 0), None);
        }
        // The newest half of the window is remembered, the rest may be forgotten.
        assert_eq!(w.check_insert(3, w.hash(3), 99, &l, 0), Some(3));
        assert_eq!(w.check_insert(2, w.hash(2), 99, &l, 0), Some(2));
        assert_eq!(w.check_insert(0, w.hash(0), 4, &l, 0), None);
        assert_eq!(w.check_insert(0, w.hash(0), 99, &l, 0), Some(4));
        // Past the window's age everything is forgotten.
        w.rotate(&l, 60_000);
        assert!(w.cur.is_empty() && w.prev.is_empty());
        assert_eq!(w.prev.get(5, w.hash(5)), None);
    }
}
