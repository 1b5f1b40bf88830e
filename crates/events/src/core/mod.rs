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
//!
//! Here: the `Core` and its calls other than polling. `partition` holds a topic's
//! partition logs, `dedup` each partition's dedup window, `group` the consumer
//! groups' pending runs, `poll` the delivery passes (claims, redelivery, dead
//! letters).

mod dedup;
mod group;
mod partition;
mod poll;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use tokio::time::Instant;

pub(crate) use self::group::{Group, GroupPart};
pub(crate) use self::partition::{PartLog, Topic};
use crate::event::key_hash;
use crate::rules::{self, check_name};
use crate::types::Chunk;
use crate::{
    Error, Event, GroupInfo, MemberInfo, Offset, Options, PartitionInfo, PendingEntry, Polled,
    Record, Result, SeekTo, TopicInfo, TopicOptions,
};

/// Per-partition shares of a topic's bounds (retention and dedup), shared by the
/// partition logs and their dedup windows.
pub(crate) struct PartLimits {
    max_events: Option<u64>,
    max_bytes: Option<u64>,
    max_age: Option<Duration>,
    dedup_ids: usize,
    dedup_age: Duration,
}

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
        let mark = (t.limits.dedup_ids > 0).then(|| log.dedup.mark());
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
        if let Err(e) = self.journal.batch(t.id, p, &chunk) {
            // Not stored: the window must not answer for these ids.
            if let Some(mark) = mark {
                log.dedup.undo(mark);
            }
            return Err(e);
        }
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
        let groups = t.groups();
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
        if let SeekTo::Offsets(list) = &to {
            for o in list {
                rules::check_partition(topic, o.partition, t.options.partitions)?;
            }
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
