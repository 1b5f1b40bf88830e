//! The disk backend, Baton's embedded default: an append-only segmented log.
//!
//! # Durability promise
//!
//! `publish`, `ack` and `seek` return once their records are written to the active
//! segment and, depending on [`Fsync`]:
//!
//! - [`Fsync::Always`] (default): `fdatasync`ed. An acknowledged publish or ack survives
//!   a process crash and a machine crash (power loss), given a disk that honours flushes.
//! - [`Fsync::Interval`]: in the page cache, synced at least every interval. Survives a
//!   process crash; a machine crash loses at most the last interval.
//! - [`Fsync::Never`]: in the page cache; the kernel writes it back when it likes.
//!   Survives a process crash only.
//!
//! Events become visible to consumers only after that point, so nothing is delivered
//! that a crash could take back. A write that finds the disk full is cut back and
//! tried again until space returns; meanwhile new writes are refused with
//! [`Error::Stalled`] and the log goes on by itself afterwards (see
//! [`DiskLog::failure`]). Delivery state (who holds what, delivery counts) is not
//! persisted: after a restart a group resumes at its committed offsets and every event
//! that was delivered but not acknowledged is delivered again, with its count reset.
//!
//! # Layout
//!
//! `DIR/LOCK` (held while open) and `DIR/<20-digit sequence>.log` segments. Every state
//! change (topic and group creation, event batches, acks, seeks) is a record in the
//! same write-ahead log, so one `fdatasync` covers the publishes and acks of every
//! caller that arrived during the previous sync (group commit). Records are framed as
//! `len | crc32 | body` (see `codec.rs`).
//!
//! # Recovery
//!
//! On open every segment is read and checked. In the newest segment, a record that is
//! incomplete or fails its checksum with nothing valid after it is a torn tail: it was
//! never acknowledged, and is cut off. A bad record followed by valid ones, or one in
//! an older segment, is damage, not a torn write: opening fails with
//! [`Error::Corrupt`] naming the file, the byte position and the records that follow,
//! and no record is served from a damaged log. [`check`] and [`repair`] (`baton events
//! check|repair`) inspect such a log and truncate it at the damage, keeping what they
//! cut off.
//!
//! Retained events are held in memory (bounded by each topic's [`Retention`]) and
//! served from there; segments are the durable copy. A background task deletes the
//! segments whose events retention has removed and rewrites those it thinned, after
//! writing the group and topic state they contained at the log's tail (`compact.rs`).
//!
//! [`Retention`]: crate::Retention

mod check;
mod codec;
mod compact;
mod follow;
mod writer;

pub use self::check::{Damage, Repaired, SegmentReport, check, repair};
pub use self::compact::Compaction;
pub use self::follow::Follower;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use self::codec::{Kinds, Rec, Scan};
use self::writer::{SegmentInfo, Writer};
use crate::core::{Core, Group, Journal, NoJournal, Topic};
use crate::{
    Error, Event, EventLog, GroupInfo, Offset, Options, PendingEntry, Polled, Record, Result,
    SeekTo, TopicInfo, TopicOptions,
};

/// When the disk backend calls `fdatasync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fsync {
    /// Before acknowledging any write.
    Always,
    /// At least this often; acknowledgements do not wait for it.
    Interval(Duration),
    /// Never explicitly.
    Never,
}

impl std::str::FromStr for Fsync {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s {
            "always" => Ok(Fsync::Always),
            "never" => Ok(Fsync::Never),
            _ => s
                .strip_prefix("interval:")
                .and_then(|ms| ms.trim_end_matches("ms").parse().ok())
                .map(|ms| Fsync::Interval(Duration::from_millis(ms)))
                .ok_or_else(|| format!("expected always, never or interval:MS, got {s:?}")),
        }
    }
}

/// Options of the disk backend.
#[derive(Clone, Debug)]
pub struct DiskOptions {
    /// Options common to every backend.
    pub log: Options,
    /// When to sync.
    pub fsync: Fsync,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    /// How often retention by age is applied and obsolete segments are deleted; `None`
    /// runs no background task (call [`DiskLog::compact`] yourself).
    pub maintenance_interval: Option<Duration>,
}

impl Default for DiskOptions {
    fn default() -> Self {
        DiskOptions {
            log: Options::default(),
            fsync: Fsync::Always,
            segment_bytes: 64 << 20,
            maintenance_interval: Some(Duration::from_secs(1)),
        }
    }
}

/// The bytes the log writes for `events` published together to one partition: one
/// framed batch record. What `baton bench` writes and syncs to measure the disk's
/// own limit at the log's record size.
pub fn batch_record_bytes(events: Vec<crate::Event>) -> usize {
    let mut buf = Vec::new();
    codec::put_batch(&mut buf, 0, 0, &crate::Chunk::new(0, 0, events));
    buf.len()
}

pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.log"))
}

/// The disk-backed event log. Cloning gives another handle to the same log.
#[derive(Clone)]
pub struct DiskLog {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core<Writer>>,
    dir: PathBuf,
    _lock: File,
}

impl DiskLog {
    /// Opens (creating if needed) the log in `dir`, recovering what is on disk.
    ///
    /// Must be called inside a tokio runtime: it starts the maintenance task there.
    pub async fn open(dir: impl AsRef<Path>, options: DiskOptions) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        let d = dir.clone();
        let opts = options.clone();
        let (core, lock) = tokio::task::spawn_blocking(move || recover(&d, opts))
            .await
            .map_err(|e| Error::Failed(format!("recovery task panicked: {e}")))??;
        let core = Arc::new(core);
        if let Some(every) = options.maintenance_interval {
            tokio::spawn(compact::maintain(Arc::downgrade(&core), every));
        }
        Ok(DiskLog {
            inner: Arc::new(Inner {
                core,
                dir,
                _lock: lock,
            }),
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Why the log refuses writes, if it does: [`Error::Stalled`] while a write
    /// waits for disk space (it goes on by itself once there is some), or
    /// [`Error::Failed`] after a write or sync failed otherwise (an I/O error),
    /// which stays until the log is opened again: after a failed sync what is on
    /// disk cannot be trusted.
    pub fn failure(&self) -> Option<Error> {
        let journal = &self.inner.core.journal;
        match journal.failure() {
            Some(f) => Some(Error::Failed(f.to_string())),
            None => journal.stalled().map(|s| Error::Stalled(s.to_string())),
        }
    }

    /// Runs one maintenance pass now: applies retention, deletes the segments it
    /// emptied and rewrites those it thinned (see [`Compaction`]).
    pub async fn compact(&self) -> Result<Compaction> {
        compact::compact(&self.inner.core).await
    }
}

fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut segs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let entry = entry.map_err(|e| Error::io("listing", dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_suffix(".log")
            .filter(|s| s.len() == 20)
            .and_then(|s| s.parse::<u64>().ok())
        {
            segs.push((seq, entry.path()));
        }
    }
    segs.sort();
    Ok(segs)
}

/// How long opening waits for a `LOCK` held elsewhere before it says so.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);

/// Takes the directory's `LOCK` (held while the returned file is open): one
/// process at a time opens, checks or repairs a log. A lock just let go can
/// still be held for a moment: by a child process forked (by any thread)
/// while it was open and not yet past its `exec`, which shares the lock
/// until then. So a held lock is tried again for [`LOCK_PATIENCE`] before
/// the log counts as open elsewhere.
fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join("LOCK");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("opening lock file", &path, e))?;
    let deadline = std::time::Instant::now() + LOCK_PATIENCE;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(lock),
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked(dir.to_owned())),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("locking", &path, e)),
        }
    }
}

/// Replays the segments into memory and starts the writer on a fresh segment.
fn recover(dir: &Path, options: DiskOptions) -> Result<(Core<Writer>, File)> {
    options.log.topic_defaults.validate()?;
    if options.segment_bytes < 4096 {
        return Err(Error::InvalidOptions(
            "segment_bytes must be at least 4096".into(),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| Error::io("creating data directory", dir, e))?;
    let lock = lock_dir(dir)?;
    compact::remove_leftovers(dir)?;

    let staging = Core::new(options.log.clone(), NoJournal)?;
    let mut replay = Replay {
        core: &staging,
        topics: HashMap::new(),
        groups: HashMap::new(),
        kinds: Kinds::default(),
        now_ms: staging.clock.now_ms(),
    };
    let segs = list_segments(dir)?;
    let mut infos = Vec::with_capacity(segs.len());
    let mut scanned = Vec::with_capacity(segs.len());
    let mut groups = Vec::new();
    let mut next_seq = 0;
    for (i, (seq, path)) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        next_seq = seq + 1;
        let data = Bytes::from(fs::read(path).map_err(|e| Error::io("reading segment", path, e))?);
        let mut records = Vec::new();
        if data.len() < codec::MAGIC.len() || &data[..codec::MAGIC.len()] != codec::MAGIC {
            if last && codec::MAGIC.starts_with(&data) {
                // Created but its magic never fully reached the disk: nothing in it.
                tracing::warn!(path = %path.display(), "removing an empty torn segment");
                fs::remove_file(path).map_err(|e| Error::io("removing segment", path, e))?;
                continue;
            }
            return Err(Error::Corrupt {
                path: path.clone(),
                position: 0,
                reason: "not a segment of this format (bad magic)".into(),
            });
        }
        let mut at = codec::MAGIC.len();
        loop {
            match codec::scan(&data, at) {
                Scan::End => break,
                Scan::Record(body, next) => {
                    // Topics, then groups, first (pass one): after a compaction their
                    // records sit at the tail, after the records that use them.
                    if body[0] == codec::TOPIC {
                        replay_now(&mut replay, body, path, at)?;
                    } else if body[0] == codec::GROUP {
                        groups.push((body, path.clone(), at));
                    } else {
                        records.push((body, at, (next - at) as u64));
                    }
                    at = next;
                }
                Scan::Bad(reason) => {
                    let damage = check::damage(&data, at, reason);
                    if !last || !damage.is_torn_tail() {
                        return Err(Error::Corrupt {
                            path: path.clone(),
                            position: at as u64,
                            reason: damaged(&damage, dir),
                        });
                    }
                    tracing::warn!(
                        path = %path.display(), position = at, dropped = data.len() - at,
                        reason = %damage.reason,
                        "cutting off the torn tail of the newest segment (never acknowledged)"
                    );
                    let f = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(|e| Error::io("opening segment", path, e))?;
                    f.set_len(at as u64)
                        .and_then(|()| f.sync_all())
                        .map_err(|e| Error::io("truncating torn segment", path, e))?;
                    break;
                }
            }
        }
        scanned.push((*seq, path.clone(), records, at as u64));
    }
    for (body, path, at) in groups {
        replay_now(&mut replay, body, &path, at)?;
    }
    // Pass two: everything else, in log order.
    for (seq, path, records, len) in scanned {
        let mut info = SegmentInfo::new(seq, path);
        info.len = len;
        for (body, at, size) in records {
            let corrupt = |reason: String| Error::Corrupt {
                path: info.path.clone(),
                position: at as u64,
                reason,
            };
            let rec = codec::decode(body, &mut replay.kinds).map_err(corrupt)?;
            match &rec {
                Rec::Batch {
                    topic,
                    partition,
                    chunk,
                } => info
                    .spans
                    .entry((*topic, *partition))
                    .or_default()
                    .add(chunk.end(), size),
                Rec::Ack { .. } | Rec::Seek { .. } => info.acks += size,
                _ => {}
            }
            replay.apply(rec).map_err(corrupt)?;
        }
        infos.push(info);
    }
    replay.finish();
    let writer = Writer::start(dir, next_seq, options.fsync, options.segment_bytes, infos)?;
    let core = Core::new(options.log, writer)?;
    let topics = std::mem::take(&mut *staging.topics.write().unwrap_or_else(|e| e.into_inner()));
    core.next_topic_id.store(
        staging
            .next_topic_id
            .load(std::sync::atomic::Ordering::Relaxed),
        std::sync::atomic::Ordering::Relaxed,
    );
    *core.topics.write().unwrap_or_else(|e| e.into_inner()) = topics;
    Ok((core, lock))
}

/// Decodes and applies one record now.
fn replay_now(replay: &mut Replay<'_>, body: Bytes, path: &Path, at: usize) -> Result<()> {
    let corrupt = |reason| Error::Corrupt {
        path: path.to_owned(),
        position: at as u64,
        reason,
    };
    let rec = codec::decode(body, &mut replay.kinds).map_err(corrupt)?;
    replay.apply(rec).map_err(corrupt)
}

/// Why a log with `damage` does not open, and what to do.
fn damaged(damage: &Damage, dir: &Path) -> String {
    let dir = dir.display();
    let follows = match damage.next_valid {
        Some(at) => format!(
            "valid records follow at byte {at} ({} records, {} events), so this is damage, \
             not a torn write, and those were acknowledged",
            damage.records_after, damage.events_after
        ),
        None => "this is not the newest segment, so it is damage, not a torn write".into(),
    };
    format!(
        "{}; {follows}. `baton events check {dir}` shows the log's state; \
         `baton events repair {dir}` truncates the log at the damage and keeps \
         what it cuts off in {dir}/damaged/ (or restore the directory from a backup)",
        damage.reason
    )
}

struct Replay<'a> {
    core: &'a Core<NoJournal>,
    topics: HashMap<u32, Arc<Topic>>,
    groups: HashMap<(u32, u32), Arc<Group>>,
    kinds: Kinds,
    now_ms: u64,
}

impl Replay<'_> {
    fn topic(&self, id: u32) -> Result<&Arc<Topic>, String> {
        self.topics
            .get(&id)
            .ok_or_else(|| format!("record for unknown topic id {id}"))
    }

    fn group(&self, topic: u32, group: u32) -> Result<&Arc<Group>, String> {
        self.groups
            .get(&(topic, group))
            .ok_or_else(|| format!("record for unknown group id {group} of topic id {topic}"))
    }

    fn apply(&mut self, rec: Rec) -> Result<(), String> {
        match rec {
            Rec::Topic { id, name, options } => {
                crate::rules::check_name("topic", &name).map_err(|e| e.to_string())?;
                let t = self.core.restore_topic(id, &name, options);
                if t.id != id {
                    return Err(format!("topic {name:?} has two ids, {} and {id}", t.id));
                }
                self.topics.insert(id, t);
            }
            Rec::Batch {
                topic,
                partition,
                chunk,
            } => {
                self.topic(topic)?
                    .restore_chunk(partition, chunk, self.now_ms)
                    .map_err(|e| e.to_string())?;
            }
            Rec::Group { topic, group, name } => {
                crate::rules::check_name("group", &name).map_err(|e| e.to_string())?;
                let t = self.topic(topic)?.clone();
                let fresh = t.group(&name).is_none();
                let g = self.core.restore_group(&t, group, &name);
                if fresh {
                    for (gp, part) in g.parts.iter().zip(t.parts.iter()) {
                        let start = part.lock().unwrap_or_else(|e| e.into_inner()).start;
                        gp.lock().unwrap_or_else(|e| e.into_inner()).next = start;
                    }
                }
                self.groups.insert((topic, group), g);
            }
            Rec::Ack { topic, group, acks } => {
                let g = self.group(topic, group)?;
                let t = self.topic(topic)?.clone();
                for (p, ranges) in acks {
                    let mut gp = g
                        .part(p)
                        .ok_or_else(|| format!("ack for unknown partition {p}"))?;
                    // Offsets before the oldest retained one are settled either way;
                    // starting there keeps `skip` small when old segments are gone.
                    let start = t
                        .part(p)
                        .map_err(|e| e.to_string())?
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .start;
                    if gp.next < start {
                        gp.next = start;
                        let keep = gp.skip.split_off(&start);
                        gp.skip = keep;
                    }
                    for (s, n) in ranges {
                        let end = s.saturating_add(n as u64);
                        if s <= gp.next && end > gp.next {
                            gp.next = end;
                        } else if s > gp.next {
                            gp.skip.extend(s..end);
                        }
                        while gp.skip.first() == Some(&gp.next) {
                            gp.skip.pop_first();
                            gp.next += 1;
                        }
                        let next = gp.next;
                        if gp.skip.first().is_some_and(|&f| f < next) {
                            let keep = gp.skip.split_off(&next);
                            gp.skip = keep;
                        }
                    }
                }
            }
            Rec::Seek {
                topic,
                group,
                positions,
            } => {
                let g = self.group(topic, group)?;
                for (p, pos) in positions {
                    let mut gp = g
                        .part(p)
                        .ok_or_else(|| format!("seek for unknown partition {p}"))?;
                    gp.next = pos;
                    gp.skip.clear();
                }
            }
            Rec::Start {
                topic,
                partition,
                start,
            } => {
                self.topic(topic)?
                    .restore_start(partition, start)
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// Clamps every group into its partitions' retained range.
    fn finish(&self) {
        for t in self.topics.values() {
            for g in t.groups.read().unwrap_or_else(|e| e.into_inner()).values() {
                for (p, part) in t.parts.iter().enumerate() {
                    let (start, end) = {
                        let l = part.lock().unwrap_or_else(|e| e.into_inner());
                        (l.start, l.end)
                    };
                    let Some(mut gp) = g.part(p as u32) else {
                        continue;
                    };
                    if gp.next < start {
                        gp.next = start;
                        let keep = gp.skip.split_off(&start);
                        gp.skip = keep;
                    }
                    if gp.next > end {
                        // Acknowledged past what survived (possible only without fsync).
                        gp.next = end;
                        gp.skip.clear();
                    }
                    while gp.skip.first() == Some(&gp.next) {
                        gp.skip.pop_first();
                        gp.next += 1;
                    }
                }
            }
        }
    }
}

impl EventLog for DiskLog {
    async fn create_topic(&self, topic: &str, options: TopicOptions) -> Result<()> {
        self.inner.core.create_topic(topic, Some(options))?;
        self.inner.core.journal.barrier().await
    }
    async fn publish(&self, topic: &str, batch: Vec<Event>) -> Result<Vec<Offset>> {
        self.inner.core.publish(topic, batch).await
    }
    async fn poll(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Polled> {
        self.inner.core.poll(topic, group, member, max, wait).await
    }
    async fn ack(&self, topic: &str, group: &str, ids: &[Offset]) -> Result<usize> {
        self.inner.core.ack(topic, group, ids).await
    }
    async fn nack(
        &self,
        topic: &str,
        group: &str,
        ids: &[Offset],
        delay: Duration,
    ) -> Result<usize> {
        self.inner.core.nack(topic, group, ids, delay).await
    }
    async fn pending(&self, topic: &str, group: &str, limit: usize) -> Result<Vec<PendingEntry>> {
        self.inner.core.pending(topic, group, limit)
    }
    async fn groups(&self, topic: &str) -> Result<Vec<GroupInfo>> {
        self.inner.core.groups(topic)
    }
    async fn topics(&self) -> Result<Vec<TopicInfo>> {
        Ok(self.inner.core.topics())
    }
    async fn read(
        &self,
        topic: &str,
        partition: u32,
        from: u64,
        max: usize,
    ) -> Result<Vec<Record>> {
        self.inner.core.read(topic, partition, from, max)
    }
    async fn offsets_at(&self, topic: &str, time_ms: u64) -> Result<Vec<Offset>> {
        self.inner.core.offsets_at(topic, time_ms)
    }
    async fn seek(&self, topic: &str, group: &str, to: SeekTo) -> Result<()> {
        self.inner.core.seek(topic, group, to).await
    }
    async fn close(&self) -> Result<()> {
        let core = self.inner.core.clone();
        let flushed = core.journal.barrier().await;
        core.close();
        tokio::task::spawn_blocking(move || core.journal.shutdown())
            .await
            .map_err(|e| Error::Failed(format!("writer shutdown panicked: {e}")))?;
        match flushed {
            Ok(()) | Err(Error::Closed) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
