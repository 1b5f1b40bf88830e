//! The group-commit writer: one thread owns the active segment. Publishers, acks and
//! seeks encode their records into one shared buffer; the thread swaps the buffer out,
//! writes it with one `write`, syncs it per the fsync policy and then completes every
//! waiter whose records it contained. While it syncs, the next buffer fills, so
//! concurrent callers share one write and one `fdatasync`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::codec;
use super::{Fsync, segment_path};
use crate::core::{AckRanges, Journal};
use crate::types::Chunk;
use crate::{Error, Result, TopicOptions};

type Waiter = oneshot::Sender<Result<(), Arc<str>>>;

/// A closed or active segment: what each partition has in it, and its size.
#[derive(Debug)]
pub(crate) struct SegmentInfo {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    /// `(topic, partition) →` its batches here.
    pub(crate) spans: HashMap<(u32, u32), Span>,
    /// Bytes of acks and seeks, which the state written at the tail by a
    /// compaction supersedes.
    pub(crate) acks: u64,
    /// The file's length.
    pub(crate) len: u64,
}

impl SegmentInfo {
    pub(crate) fn new(seq: u64, path: PathBuf) -> Self {
        SegmentInfo {
            seq,
            path,
            spans: HashMap::new(),
            acks: 0,
            len: codec::MAGIC.len() as u64,
        }
    }
}

/// A partition's batches in one segment: the end offset of the newest and their
/// framed size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    pub(crate) end: u64,
    pub(crate) bytes: u64,
}

impl Span {
    pub(crate) fn add(&mut self, end: u64, bytes: u64) {
        self.end = self.end.max(end);
        self.bytes += bytes;
    }
}

#[derive(Default)]
struct State {
    buf: Vec<u8>,
    /// `(topic, partition, end offset, framed bytes)` of each batch in `buf`.
    marks: Vec<(u32, u32, u64, u64)>,
    /// Bytes of acks and seeks in `buf`.
    ack_bytes: u64,
    waiters: Vec<Waiter>,
    failed: Option<Arc<str>>,
    /// A write is waiting for disk space (see [`stall`]); new writes are refused.
    stalled: Option<Arc<str>>,
    shutdown: bool,
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    segments: Mutex<Vec<SegmentInfo>>,
    /// With `Fsync::Interval`, a handle on the active segment for the syncer thread, so
    /// that syncing never stalls the writes behind it.
    active: Mutex<Option<(File, PathBuf)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Handle to the writer thread; the disk backend's [`Journal`].
pub(crate) struct Writer {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    syncer: Mutex<Option<JoinHandle<()>>>,
    /// The size at which segments are closed.
    pub(crate) segment_bytes: u64,
    /// Held by a compaction pass: one at a time.
    pub(crate) maintenance: tokio::sync::Mutex<()>,
}

/// The writer thread's own state.
struct Active {
    dir: PathBuf,
    file: File,
    seq: u64,
    len: u64,
    fsync: Fsync,
    segment_bytes: u64,
    last_sync: Instant,
    dirty: bool,
    /// When starting a new segment last failed, if it did.
    roll_failed: Option<Instant>,
}

/// Creates segment `seq` with its magic, durably.
pub(crate) fn create_segment(dir: &Path, seq: u64, sync: bool) -> Result<File> {
    let path = segment_path(dir, seq);
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io("creating segment", &path, e))?;
    let written = f.write_all(codec::MAGIC).and_then(|()| match sync {
        true => f.sync_all(),
        false => Ok(()),
    });
    if let Err(e) = written {
        // A full disk: leave no half-made segment behind, so that the next try can
        // create it.
        let _ = fs::remove_file(&path);
        return Err(Error::io("creating segment", &path, e));
    }
    if sync {
        sync_dir(dir)?;
    }
    Ok(f)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}

impl Writer {
    /// Starts the thread appending to a new segment `seq`.
    pub(crate) fn start(
        dir: &Path,
        seq: u64,
        fsync: Fsync,
        segment_bytes: u64,
        segments: Vec<SegmentInfo>,
    ) -> Result<Self> {
        let file = create_segment(dir, seq, fsync != Fsync::Never)?;
        let mut segments = segments;
        segments.push(SegmentInfo::new(seq, segment_path(dir, seq)));
        let path = segment_path(dir, seq);
        let handle = match fsync {
            Fsync::Interval(_) => Some((
                file.try_clone()
                    .map_err(|e| Error::io("opening segment", &path, e))?,
                path,
            )),
            _ => None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            segments: Mutex::new(segments),
            active: Mutex::new(handle),
        });
        let active = Active {
            dir: dir.to_owned(),
            file,
            seq,
            len: codec::MAGIC.len() as u64,
            fsync,
            segment_bytes,
            last_sync: Instant::now(),
            dirty: false,
            roll_failed: None,
        };
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("baton-events-writer".into())
            .spawn(move || run(s, active))
            .map_err(|e| Error::io("starting writer thread", dir, e))?;
        let syncer = match fsync {
            Fsync::Interval(every) => {
                let s = shared.clone();
                Some(
                    std::thread::Builder::new()
                        .name("baton-events-sync".into())
                        .spawn(move || sync_every(s, every))
                        .map_err(|e| Error::io("starting sync thread", dir, e))?,
                )
            }
            _ => None,
        };
        Ok(Writer {
            shared,
            thread: Mutex::new(Some(thread)),
            syncer: Mutex::new(syncer),
            segment_bytes,
            maintenance: tokio::sync::Mutex::new(()),
        })
    }

    fn append(&self, encode: impl FnOnce(&mut State)) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if let Some(f) = &st.failed {
            return Err(Error::Failed(f.to_string()));
        }
        if let Some(why) = &st.stalled {
            return Err(Error::Stalled(why.to_string()));
        }
        if st.shutdown {
            return Err(Error::Closed);
        }
        encode(&mut st);
        Ok(())
    }

    /// Why the log stopped accepting writes, if it did.
    pub(crate) fn failure(&self) -> Option<Arc<str>> {
        lock(&self.shared.state).failed.clone()
    }

    /// Why the log refuses writes for now, waiting for disk space, if it does.
    pub(crate) fn stalled(&self) -> Option<Arc<str>> {
        lock(&self.shared.state).stalled.clone()
    }

    /// Appends an arbitrary encoded record.
    pub(crate) fn raw(&self, encode: impl FnOnce(&mut Vec<u8>)) -> Result<()> {
        self.append(|st| encode(&mut st.buf))
    }

    /// Every segment, oldest first; the last is the active one.
    pub(crate) fn with_segments<T>(&self, f: impl FnOnce(&mut Vec<SegmentInfo>) -> T) -> T {
        f(&mut lock(&self.shared.segments))
    }

    /// Flushes what is buffered and stops the thread.
    pub(crate) fn shutdown(&self) {
        {
            let mut st = lock(&self.shared.state);
            st.shutdown = true;
        }
        self.shared.wake.notify_all();
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
        if let Some(t) = lock(&self.syncer).take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Journal for Writer {
    const DURABLE: bool = true;

    fn topic_created(&self, id: u32, name: &str, options: &TopicOptions) -> Result<()> {
        self.append(|st| codec::put_topic(&mut st.buf, id, name, options))
    }

    fn group_created(&self, topic: u32, group: u32, name: &str) -> Result<()> {
        self.append(|st| codec::put_group(&mut st.buf, topic, group, name))
    }

    fn batch(&self, topic: u32, partition: u32, chunk: &Chunk) -> Result<()> {
        self.append(|st| {
            let at = st.buf.len();
            codec::put_batch(&mut st.buf, topic, partition, chunk);
            let bytes = (st.buf.len() - at) as u64;
            st.marks.push((topic, partition, chunk.end(), bytes));
        })
    }

    fn acked(&self, topic: u32, group: u32, acks: &AckRanges) -> Result<()> {
        self.append(|st| {
            let at = st.buf.len();
            codec::put_ack(&mut st.buf, topic, group, acks);
            st.ack_bytes += (st.buf.len() - at) as u64;
        })
    }

    fn seek(&self, topic: u32, group: u32, positions: &[(u32, u64)]) -> Result<()> {
        self.append(|st| {
            let at = st.buf.len();
            codec::put_seek(&mut st.buf, topic, group, positions);
            st.ack_bytes += (st.buf.len() - at) as u64;
        })
    }

    fn barrier(&self) -> impl Future<Output = Result<()>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let early = {
            let mut st = lock(&self.shared.state);
            if let Some(f) = &st.failed {
                Some(Error::Failed(f.to_string()))
            } else if st.shutdown {
                Some(Error::Closed)
            } else {
                st.waiters.push(tx);
                None
            }
        };
        if early.is_none() {
            self.shared.wake.notify_one();
        }
        async move {
            if let Some(e) = early {
                return Err(e);
            }
            match rx.await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(f)) => Err(Error::Failed(f.to_string())),
                Err(_) => Err(Error::Closed),
            }
        }
    }
}

/// Adds a commit's batches and size to the active segment's table.
fn note(s: &mut SegmentInfo, len: usize, marks: &[(u32, u32, u64, u64)], ack_bytes: u64) {
    for &(t, p, end, bytes) in marks {
        s.spans.entry((t, p)).or_default().add(end, bytes);
    }
    s.acks += ack_bytes;
    s.len += len as u64;
}

fn run(shared: Arc<Shared>, mut active: Active) {
    let mut spare: Vec<u8> = Vec::new();
    let mut spare_marks = Vec::new();
    loop {
        let (buf, marks, ack_bytes, waiters, stop) = {
            let mut st = lock(&shared.state);
            loop {
                if !st.buf.is_empty() || !st.waiters.is_empty() || st.shutdown {
                    break;
                }
                st = shared.wake.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            if st.failed.is_some() {
                // Nothing more is written after a failure; fail whoever still waits.
                let f = st.failed.clone().unwrap_or_else(|| "write failed".into());
                for w in st.waiters.drain(..) {
                    let _ = w.send(Err(f.clone()));
                }
                st.buf.clear();
                st.marks.clear();
                st.ack_bytes = 0;
                if st.shutdown {
                    return;
                }
                continue;
            }
            let buf = std::mem::replace(&mut st.buf, std::mem::take(&mut spare));
            let marks = std::mem::replace(&mut st.marks, std::mem::take(&mut spare_marks));
            let ack_bytes = std::mem::take(&mut st.ack_bytes);
            (
                buf,
                marks,
                ack_bytes,
                std::mem::take(&mut st.waiters),
                st.shutdown,
            )
        };
        let result = match active.commit(&buf, stop) {
            Err(Failure::Space(e)) => stall(&shared, &mut active, &buf, stop, e),
            Err(Failure::Fatal(e)) => Err(e),
            Ok(()) => Ok(()),
        }
        .map(|()| {
            if !buf.is_empty() {
                let mut segs = lock(&shared.segments);
                if let Some(s) = segs.last_mut() {
                    note(s, buf.len(), &marks, ack_bytes);
                }
            }
            let due = active
                .roll_failed
                .is_none_or(|at| at.elapsed() >= STALL_RETRY);
            if active.len >= active.segment_bytes && due {
                active.roll(&shared)
            } else {
                Ok(())
            }
        })
        .and_then(|rolled| match rolled {
            Err(Failure::Fatal(e)) => Err(e),
            Err(Failure::Space(e)) => {
                // The current segment stays open; a commit tries again later.
                if active.roll_failed.is_none() {
                    tracing::warn!(error = %e, "could not start a new event log segment; the current one goes on");
                }
                active.roll_failed = Some(Instant::now());
                Ok(())
            }
            Ok(()) => Ok(()),
        });
        match result {
            Ok(()) => {
                for w in waiters {
                    let _ = w.send(Ok(()));
                }
            }
            Err(e) => {
                let msg: Arc<str> = e.to_string().into();
                tracing::error!(error = %msg, "event log write failed; refusing further writes");
                lock(&shared.state).failed = Some(msg.clone());
                for w in waiters {
                    let _ = w.send(Err(msg.clone()));
                }
            }
        }
        spare = buf;
        spare.clear();
        spare_marks = marks;
        spare_marks.clear();
        if stop {
            let mut st = lock(&shared.state);
            if st.buf.is_empty() {
                for w in st.waiters.drain(..) {
                    let _ = w.send(Err("the event log is closed".into()));
                }
                return;
            }
        }
    }
}

/// How often a write waiting for disk space is tried again.
const STALL_RETRY: Duration = Duration::from_millis(500);

/// A write that failed for lack of space (`ENOSPC`, `EDQUOT`) and was cut back
/// cleanly is tried again every [`STALL_RETRY`] until it goes through, the log is
/// closed, or another error fails the log for good. Meanwhile new writes are refused
/// with [`Error::Stalled`] (before they change anything in memory) and the callers
/// of the stalled write keep waiting: nothing is acknowledged that is not on disk, and
/// nothing acknowledged is lost. A failed `fdatasync` is not retried: after one the
/// kernel may have dropped the dirty pages, so a later sync could succeed without the
/// data.
fn stall(shared: &Shared, active: &mut Active, buf: &[u8], stop: bool, first: Error) -> Result<()> {
    let why: Arc<str> = first.to_string().into();
    tracing::error!(error = %first, "event log write failed for lack of space; refusing new writes and retrying");
    lock(&shared.state).stalled = Some(why);
    let outcome = loop {
        {
            let st = lock(&shared.state);
            let (st, _) = shared
                .wake
                .wait_timeout(st, STALL_RETRY)
                .unwrap_or_else(|e| e.into_inner());
            if st.shutdown {
                break Err(first);
            }
        }
        match active.commit(buf, stop) {
            Ok(()) => {
                tracing::info!("disk space is back; the event log accepts writes again");
                break Ok(());
            }
            Err(Failure::Space(_)) => {}
            Err(Failure::Fatal(e)) => break Err(e),
        }
    };
    lock(&shared.state).stalled = None;
    outcome
}

/// Why a commit failed.
enum Failure {
    /// A write found no space and was cut back to the last record: it can be tried
    /// again.
    Space(Error),
    /// Anything else: the log stops accepting writes.
    Fatal(Error),
}

impl Active {
    fn path(&self) -> PathBuf {
        segment_path(&self.dir, self.seq)
    }

    /// Writes `buf` and syncs it as the policy says.
    fn commit(&mut self, buf: &[u8], closing: bool) -> std::result::Result<(), Failure> {
        if !buf.is_empty() {
            if let Err(e) = self.file.write_all(buf) {
                // Cut the partial write off so the segment ends on a record boundary
                // (recovery would drop it anyway); nothing acknowledged is touched.
                let cut = self.file.set_len(self.len).is_ok();
                let space = matches!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                );
                let e = Error::io("writing segment", self.path(), e);
                return Err(if cut && space {
                    Failure::Space(e)
                } else {
                    Failure::Fatal(e)
                });
            }
            self.len += buf.len() as u64;
            self.dirty = true;
        }
        let sync = match self.fsync {
            Fsync::Always => self.dirty,
            // The syncer thread syncs on its schedule; the writer only on close.
            Fsync::Interval(_) => self.dirty && closing,
            Fsync::Never => false,
        };
        if sync {
            self.file
                .sync_data()
                .map_err(|e| Failure::Fatal(Error::io("syncing segment", self.path(), e)))?;
            self.dirty = false;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Closes the active segment and starts the next; a segment that could not be
    /// created is [`Failure::Space`]: the current one stays active.
    fn roll(&mut self, shared: &Shared) -> std::result::Result<(), Failure> {
        if self.fsync != Fsync::Never && self.dirty {
            self.file
                .sync_data()
                .map_err(|e| Failure::Fatal(Error::io("syncing segment", self.path(), e)))?;
            self.dirty = false;
        }
        let seq = self.seq + 1;
        self.file =
            create_segment(&self.dir, seq, self.fsync != Fsync::Never).map_err(Failure::Space)?;
        self.seq = seq;
        self.len = codec::MAGIC.len() as u64;
        self.roll_failed = None;
        if let Some(slot) = lock(&shared.active).as_mut() {
            let path = self.path();
            *slot = (
                self.file
                    .try_clone()
                    .map_err(|e| Failure::Fatal(Error::io("opening segment", &path, e)))?,
                path,
            );
        }
        lock(&shared.segments).push(SegmentInfo::new(seq, self.path()));
        tracing::debug!(segment = seq, "rolled to a new segment");
        Ok(())
    }
}

/// The `Fsync::Interval` syncer: syncs the active segment every interval until shutdown.
fn sync_every(shared: Arc<Shared>, every: std::time::Duration) {
    loop {
        std::thread::park_timeout(every);
        let stop = lock(&shared.state).shutdown;
        let result = match lock(&shared.active).as_ref() {
            Some((file, path)) => file
                .sync_data()
                .map_err(|e| Error::io("syncing segment", path, e)),
            None => Ok(()),
        };
        if let Err(e) = result {
            let msg: Arc<str> = e.to_string().into();
            tracing::error!(error = %msg, "event log sync failed; refusing further writes");
            lock(&shared.state).failed = Some(msg);
            return;
        }
        if stop {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose segment is `/dev/full`: every write fails with ENOSPC, as on a
    /// full disk.
    fn full_disk_writer() -> Option<Writer> {
        let file = OpenOptions::new().append(true).open("/dev/full").ok()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            segments: Mutex::new(Vec::new()),
            active: Mutex::new(None),
        });
        let active = Active {
            dir: PathBuf::from("/dev"),
            file,
            seq: 0,
            len: 0,
            fsync: Fsync::Always,
            segment_bytes: u64::MAX,
            last_sync: Instant::now(),
            dirty: false,
            roll_failed: None,
        };
        let s = shared.clone();
        let thread = std::thread::spawn(move || run(s, active));
        Some(Writer {
            shared,
            thread: Mutex::new(Some(thread)),
            syncer: Mutex::new(None),
            segment_bytes: u64::MAX,
            maintenance: tokio::sync::Mutex::new(()),
        })
    }

    #[test]
    fn a_failed_write_fails_the_waiters_and_every_later_write() {
        let Some(w) = full_disk_writer() else {
            return; // no /dev/full on this system
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let chunk = Chunk::new(0, 0, vec![crate::Event::new("t", "k", "v")]);
        assert!(w.failure().is_none());
        w.batch(0, 0, &chunk).unwrap();
        let err = rt.block_on(w.barrier()).unwrap_err();
        // What health checks read (`/readyz`).
        assert!(w.failure().is_some_and(|f| f.contains("writing segment")));
        assert!(matches!(err, Error::Failed(_)), "{err}");
        assert!(err.to_string().contains("writing segment"), "{err}");
        // Nothing is accepted after a failure, so nothing can be acknowledged that is
        // not on disk.
        assert!(matches!(w.batch(0, 0, &chunk), Err(Error::Failed(_))));
        assert!(matches!(rt.block_on(w.barrier()), Err(Error::Failed(_))));
        w.shutdown();
    }
}
