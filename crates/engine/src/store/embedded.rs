//! The embedded [`StateStore`], [`Embedded`]: one checksummed journal file under
//! the data directory, appended by a writer thread with group commit.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use super::durable::{self, Durable, State};
use super::{Error, Record, RunId, RunStatus, StateStore, TaskStatus};

/// The journal's first 8 bytes: the format and its version.
const MAGIC: &[u8; 8] = b"BATNST01";
const JOURNAL: &str = "journal.log";
const REWRITE: &str = "journal.log.tmp";
const LOCK: &str = "lock";
/// `len: u32 | crc: u32` before each body.
const HEADER: usize = 8;
/// See [`Embedded::MAX_BODY`].
const MAX_BODY: usize = 1 << 30;
/// The length written for an absent optional string.
const NONE: u32 = u32::MAX;

const WORKFLOW: u8 = 1;
const RUN_CREATED: u8 = 2;
const TASK: u8 = 3;
const RUN: u8 = 4;
const ITEM: u8 = 5;

/// How an [`Embedded`] store behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// `fdatasync` after each group of records (default `true`). With `false`,
    /// [`StateStore::sync`] resolves once the records are written to the page
    /// cache: they survive a process crash but not a machine crash. Only for tests
    /// and benchmarks.
    pub fsync: bool,
    /// Compact the journal at open when there is something to drop (default `true`).
    pub compact_at_open: bool,
    /// Finished runs to keep at compaction, newest first (default 10,000); older
    /// finished runs are dropped entirely.
    pub keep_finished_runs: usize,
    /// Compact the journal while the store is open, in the background, once it has
    /// grown by this many bytes since it was last compacted and to twice that size
    /// (default 64 MiB; `0`: only at open). See "Compaction" on [`Embedded`].
    pub compact_after_bytes: u64,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            fsync: true,
            compact_at_open: true,
            keep_finished_runs: 10_000,
            compact_after_bytes: 64 << 20,
        }
    }
}

/// The embedded state store: a checksummed, group-committed journal in a directory.
///
/// Opening blocks on disk (it reads, checks and maybe rewrites the journal);
/// everything else is cheap for the caller: [`StateStore::append`] only queues, and
/// [`StateStore::sync`] and [`StateStore::close`] wait without blocking the runtime.
/// Dropping the store without [`StateStore::close`] still writes what was
/// appended, but blocks the dropping thread until it is written.
///
/// # Files
///
/// `DIR/lock` is held (an exclusive `flock`) while the store is open, so a second
/// process gets [`Error::Locked`]. `DIR/journal.log` is the journal:
///
/// ```text
/// magic   b"BATNST01"                          8 bytes, once
/// record  len: u32 | crc: u32 | body: [u8; len]  repeated; little-endian,
///                                               crc = CRC-32 (IEEE) of body
/// body    kind: u8, then by kind:
///   1 Workflow    key u128 | document str
///   2 RunCreated  run u64 | workflow u128 | at_ms u64 | input str
///                 | rerun_of u64                        (only on a rerun)
///   3 Task        run u64 | task u32 | status u8 | attempt u32 | agent u16 | at_us u64
///                 | detail opt-str                      (32 bytes + detail)
///   4 Run         run u64 | status u8 | at_ms u64 | reason opt-str
/// str      len u32 | UTF-8 bytes
/// opt-str  len u32 | UTF-8 bytes, or len = 0xFFFF_FFFF (and no bytes) for none
/// ```
///
/// A body holds at most [`Embedded::MAX_BODY`] bytes: [`StateStore::append`]
/// refuses larger records. `DIR/journal.log.tmp` exists only while a new journal
/// is being written (creation, compaction); a leftover one is a crash's and is
/// deleted at open.
///
/// # Durability
///
/// [`StateStore::append`] queues the caller's vector as it is and returns; the
/// writer thread takes everything queued, encodes it, writes it with one `write` and makes
/// it durable with one `fdatasync` (group commit), then publishes the new durable
/// sequence number that [`StateStore::sync`] waits for. Records reach the file in
/// sequence order, so what survives a crash is always a prefix of the history.
/// With [`EmbeddedOptions::fsync`] off, `sync` only means "written to the page
/// cache": a process crash loses nothing, a machine crash may lose the tail.
///
/// # Recovery
///
/// At open every record is read and checked. The first record that is incomplete
/// or fails its checksum is a torn write if nothing valid follows it: the file is
/// cut there (and fsynced), since a record is acknowledged only after everything
/// before it is durable. If a valid record does follow, the damage is not a torn
/// write: opening fails with [`Error::Corrupt`] naming the byte offset, and nothing
/// is dropped. A record whose checksum holds but whose body cannot be decoded is
/// always [`Error::Corrupt`].
///
/// # Compaction
///
/// With [`EmbeddedOptions::compact_at_open`], a finished run (its last
/// [`Record::Run`] has a final status) keeps only its first [`Record::RunCreated`],
/// the last [`Record::Task`] of each of its tasks (how it ended, with its output
/// or error: what a status query and a rerun read), the records that named a
/// child run its tasks started (so a parent that fails later still finds the
/// children to undo) and that final [`Record::Run`]; finished runs older than the newest
/// [`EmbeddedOptions::keep_finished_runs`] (by the position of their first record,
/// normally their `RunCreated`) are dropped entirely, and [`Record::Workflow`]s no
/// retained `RunCreated` refers to are dropped too. Unfinished runs keep every
/// record. Retained records keep their relative order. The new journal is written
/// to `journal.log.tmp`, fsynced, renamed over `journal.log`, and the directory is
/// fsynced: a crash at any point leaves the old or the new journal, whole.
///
/// A store that stays open compacts too ([`EmbeddedOptions::compact_after_bytes`]),
/// without stopping its writes: a background thread compacts the journal as it was
/// when the threshold was crossed into `journal.log.tmp`, while the writer goes on
/// appending to `journal.log`; then the writer, between two writes, appends what was
/// written meanwhile to the new file (with the [`Record::Workflow`]s its runs name
/// that the compaction dropped), syncs it and renames it over the journal. What the
/// prefix's compaction could not know (a finished run whose later records follow)
/// only keeps more than compaction at open would.
///
/// # Sequence numbers
///
/// The records retained at open are numbered `1..=n` in journal order (so after a
/// compaction the numbers of old records change); the first record appended gets
/// `n + 1`. Only their order and `sync` use them.
///
/// # Example
///
/// ```
/// use baton_engine::store::{Embedded, EmbeddedOptions, Record, RunId, RunStatus, StateStore};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), baton_engine::store::Error> {
/// let dir = tempfile::tempdir().unwrap();
/// let store = Embedded::open(dir.path(), EmbeddedOptions::default())?;
/// let run = Record::Run { run: RunId(7), status: RunStatus::Running, at_ms: 1, reason: None };
/// let seq = store.append(vec![run.clone()])?;
/// store.sync(seq).await?; // durable from here on
/// store.close().await?;
///
/// let store = Embedded::open(dir.path(), EmbeddedOptions::default())?;
/// assert_eq!(store.load()?, vec![run]);
/// # store.close().await
/// # }
/// ```
pub struct Embedded {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
    lock: Mutex<Option<File>>,
    journal: PathBuf,
    /// The records retained at open, until [`StateStore::load`] takes them.
    recovered: Mutex<Option<Vec<Record>>>,
    /// Where the records retained at open end in the journal.
    recovered_end: u64,
}

/// What the caller and the writer thread share.
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer when it is idle and records arrive, or the store closes.
    wake: Condvar,
    /// The durable sequence number, and whether the writer has stopped.
    durable: watch::Sender<Durable>,
    #[cfg(test)]
    fail_writes: std::sync::atomic::AtomicBool,
    /// Writes fail as on a full disk, writing nothing.
    #[cfg(test)]
    no_space: std::sync::atomic::AtomicBool,
    #[cfg(test)]
    writes: std::sync::atomic::AtomicU64,
}

struct Queue {
    /// Appended, not yet taken by the writer: the callers' vectors as they were
    /// given (queuing a batch moves no record, and the writer frees them).
    batches: Vec<Vec<Record>>,
    /// The sequence number of the last record appended.
    last_seq: u64,
    state: State,
    /// The writer waits on [`Shared::wake`]: only then is notifying worth a syscall.
    writer_idle: bool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // No code panics while holding the lock; if it ever does, the queue is still
        // consistent (every update is a single assignment), so go on with it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Asks the writer to drain the queue and stop.
    fn stop(&self) {
        let mut queue = self.queue();
        if queue.state == State::Open {
            queue.state = State::Closing;
        }
        drop(queue);
        self.wake.notify_one();
    }
}

impl Embedded {
    /// Opens (creating if needed) the store in `dir`: locks it, recovers the
    /// journal (cutting a torn tail), compacts it if the options say so and starts
    /// the writer thread.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another process (or another `Embedded` in this one) has
    /// the directory open, [`Error::Corrupt`] if the journal is damaged other than
    /// by a torn write at its tail, [`Error::Io`] if a file cannot be read or written.
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<Embedded, Error> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let lock_path = dir.join(LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io_error(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: lock_path.display().to_string(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(io_error(&lock_path, e)),
        }

        let journal = dir.join(JOURNAL);
        let rewrite = dir.join(REWRITE);
        match fs::remove_file(&rewrite) {
            Ok(()) => tracing::warn!(
                path = %rewrite.display(),
                "removed an unfinished journal rewrite left by a crash; the journal itself is whole"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&rewrite, e)),
        }

        let data = match fs::read(&journal) {
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_error(&journal, e)),
        };
        let (mut records, mut end) = if data.len() < MAGIC.len() && MAGIC.starts_with(&data) {
            // New, or created by a crashed writer that never wrote a record.
            (Vec::new(), write_journal(dir, &[])?)
        } else {
            let (records, valid_end) = recover(&data, &journal)?;
            if valid_end < data.len() {
                cut_torn_tail(&journal, valid_end, data.len())?;
            }
            (records, valid_end as u64)
        };
        drop(data);

        if options.compact_at_open {
            let before = records.len();
            records = compact(records, options.keep_finished_runs);
            if records.len() < before {
                tracing::info!(
                    path = %journal.display(),
                    before,
                    after = records.len(),
                    "compacted the state journal"
                );
                end = write_journal(dir, &records)?;
            }
        }

        let file = OpenOptions::new()
            .append(true)
            .open(&journal)
            .map_err(|e| io_error(&journal, e))?;
        let seq = records.len() as u64;
        let (durable, _) = watch::channel(Durable {
            seq,
            state: State::Open,
        });
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                batches: Vec::new(),
                last_seq: seq,
                state: State::Open,
                writer_idle: false,
            }),
            wake: Condvar::new(),
            durable,
            #[cfg(test)]
            fail_writes: Default::default(),
            #[cfg(test)]
            no_space: Default::default(),
            #[cfg(test)]
            writes: Default::default(),
        });
        let writer = {
            let shared = Arc::clone(&shared);
            let path = journal.clone();
            std::thread::Builder::new()
                .name("baton-state-writer".into())
                .spawn(move || write_loop(&shared, file, &path, options))
                .map_err(|e| io_error(&journal, e))?
        };
        Ok(Embedded {
            shared,
            writer: Mutex::new(Some(writer)),
            lock: Mutex::new(Some(lock)),
            journal,
            recovered: Mutex::new(Some(records)),
            recovered_end: end,
        })
    }

    /// The largest record body, in bytes; [`StateStore::append`] refuses bigger
    /// records. Task outputs and documents that large belong in a blob store, with
    /// a reference in the record.
    pub const MAX_BODY: usize = MAX_BODY;

    /// The journal file.
    pub fn journal_path(&self) -> &Path {
        &self.journal
    }
}

impl StateStore for Embedded {
    /// Queues `records` (the caller pays for a size check and a lock, not for
    /// copying, encoding or I/O) and returns the sequence number of the last one; with no records,
    /// the last sequence number assigned so far.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the store is closed or its writer failed (with the
    /// failure's message); [`Error::Io`] (`InvalidInput`) if a record's body would
    /// exceed [`Embedded::MAX_BODY`], in which case nothing is queued.
    fn append(&self, records: Vec<Record>) -> Result<u64, Error> {
        for record in &records {
            let size = body_size(record);
            if size > MAX_BODY {
                return Err(too_large(&self.journal, record, size));
            }
        }
        let mut queue = self.shared.queue();
        if queue.state != State::Open {
            return Err(queue.state.error());
        }
        if records.is_empty() {
            return Ok(queue.last_seq);
        }
        queue.last_seq += records.len() as u64;
        let seq = queue.last_seq;
        queue.batches.push(records);
        let wake = std::mem::take(&mut queue.writer_idle);
        drop(queue);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(seq)
    }

    /// Resolves once every record up to `seq` is durable (immediately if it is).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the store stops before then: closed (a `seq` never
    /// appended), or failed (with the failure's message).
    async fn sync(&self, seq: u64) -> Result<(), Error> {
        durable::wait(&self.shared.durable, seq).await
    }

    /// The records retained at open (after the torn tail is cut and compaction),
    /// in order; not those appended since. The first call hands over the records
    /// decoded at open; later calls read them from the journal again.
    fn load(&self) -> Result<Vec<Record>, Error> {
        let taken = self
            .recovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(records) = taken {
            return Ok(records);
        }
        let mut data = Vec::new();
        File::open(&self.journal)
            .and_then(|file| file.take(self.recovered_end).read_to_end(&mut data))
            .map_err(|e| io_error(&self.journal, e))?;
        let (records, end) = recover(&data, &self.journal)?;
        if end != data.len() {
            return Err(Error::Corrupt {
                path: self.journal.display().to_string(),
                offset: end as u64,
                message: "a record checked at open no longer reads back; \
                          the file was changed by something else while the store was open"
                    .into(),
            });
        }
        Ok(records)
    }

    /// Writes and syncs everything appended, stops the writer and releases the
    /// directory. Calling it again is harmless.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] with the message of the write error if the writer failed
    /// (what was appended after the last durable record is then lost).
    async fn close(&self) -> Result<(), Error> {
        self.shared.stop();
        let mut durable = self.shared.durable.subscribe();
        let state = durable
            .wait_for(|d| d.state != State::Open)
            .await
            .map(|d| d.state.clone())
            .unwrap_or(State::Closed);
        // The writer has published its end as its last act: the join is immediate.
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer
            && writer.join().is_err()
        {
            return Err(Error::Closed(Some(
                "the state writer thread panicked".into(),
            )));
        }
        let lock = self
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(lock) = lock {
            // Closing the file releases the lock anyway; unlocking first is explicit.
            let _ = lock.unlock();
        }
        match state {
            State::Failed(message) => Err(Error::Closed(Some(message))),
            _ => Ok(()),
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.shared.stop();
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            // A panic in the writer was already reported by the default hook.
            let _ = writer.join();
        }
    }
}

/// The writer thread: takes everything queued, writes it with one `write` and one
/// `fdatasync`, publishes the durable sequence number, repeats until closed.
fn write_loop(shared: &Shared, mut file: File, path: &Path, options: EmbeddedOptions) {
    let fsync = options.fsync;
    let _unwind = OnUnwind(shared);
    let mut online = Online::default();
    let mut batches: Vec<Vec<Record>> = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut len = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            let end = State::Failed(io_error(path, e).to_string());
            shared.queue().state = end.clone();
            shared.durable.send_modify(|d| d.state = end);
            return;
        }
    };
    online.base = len;
    let end = loop {
        let seq = {
            let mut queue = shared.queue();
            while queue.batches.is_empty() {
                if queue.state != State::Open {
                    break;
                }
                queue.writer_idle = true;
                queue = shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            queue.writer_idle = false;
            if queue.batches.is_empty() {
                break State::Closed;
            }
            std::mem::swap(&mut queue.batches, &mut batches);
            queue.last_seq
        };
        buf.clear();
        for batch in &batches {
            for record in batch {
                encode(record, &mut buf);
            }
        }
        // The records were the callers' allocations: freeing them is our work too.
        batches.clear();
        if let Err(e) = write_until_space(shared, &mut file, &mut len, &buf, fsync) {
            let message = io_error(path, e).to_string();
            tracing::error!(%message, "state journal write failed; the store is closed");
            break State::Failed(message);
        }
        shared.durable.send_modify(|d| d.seq = seq);
        if let Err(e) = online.step(&mut file, &mut len, path, options) {
            let message = e.to_string();
            tracing::error!(%message, "state journal compaction failed after its rename; the store is closed");
            break State::Failed(message);
        }
        // Don't hold on to the memory of an exceptional burst.
        if buf.capacity() > 16 << 20 {
            buf = Vec::new();
        }
        if batches.capacity() > 1 << 12 {
            batches = Vec::new();
        }
    };
    drop(file);
    online.abandon(path);
    let mut queue = shared.queue();
    queue.state = end.clone();
    // Appended after the failure was known to no caller, never acknowledged.
    let discarded = std::mem::take(&mut queue.batches);
    drop(queue);
    drop(discarded);
    shared.durable.send_modify(|d| d.state = end);
}

/// The writer's side of compacting the journal while the store is open.
#[derive(Default)]
struct Online {
    /// The journal's size after its last compaction (or at open).
    base: u64,
    /// A compaction in progress: the journal's size it compacts, and the thread.
    running: Option<(u64, JoinHandle<Result<Prefix, Error>>)>,
}

/// A compacted journal prefix, written and synced to the rewrite file.
struct Prefix {
    file: File,
    len: u64,
    /// The workflows it kept, and those it dropped (a run appended meanwhile may
    /// name one).
    kept: HashSet<u128>,
    dropped: HashMap<u128, Record>,
}

impl Online {
    /// Starts a compaction when the journal has grown enough, and finishes one whose
    /// thread is done. `Err` only when the journal was renamed but the writer could
    /// not go on with it.
    fn step(
        &mut self,
        file: &mut File,
        len: &mut u64,
        path: &Path,
        options: EmbeddedOptions,
    ) -> Result<(), Error> {
        let grown = options.compact_after_bytes;
        if self.running.is_none()
            && grown > 0
            && *len >= self.base.saturating_add(grown)
            && *len >= self.base.saturating_mul(2)
        {
            let (at, journal, keep) = (*len, path.to_owned(), options.keep_finished_runs);
            match std::thread::Builder::new()
                .name("baton-state-compact".into())
                .spawn(move || compact_prefix(&journal, at, keep))
            {
                Ok(thread) => self.running = Some((at, thread)),
                Err(e) => {
                    tracing::warn!(error = %e, "could not start compacting the state journal")
                }
            }
        }
        if !self.running.as_ref().is_some_and(|(_, t)| t.is_finished()) {
            return Ok(());
        }
        let Some((at, thread)) = self.running.take() else {
            return Ok(());
        };
        let prefix = match thread.join() {
            Ok(Ok(prefix)) => prefix,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "compacting the state journal failed; it goes on uncompacted");
                self.base = *len;
                return Ok(());
            }
            Err(_) => {
                tracing::warn!(
                    "the state journal's compaction thread panicked; it goes on uncompacted"
                );
                self.base = *len;
                return Ok(());
            }
        };
        let before = *len;
        match finish_prefix(prefix, path, at, *len)? {
            Some((new, new_len)) => {
                *file = new;
                *len = new_len;
                self.base = new_len;
                tracing::info!(path = %path.display(), before, after = new_len, "compacted the state journal");
            }
            None => self.base = *len,
        }
        Ok(())
    }

    /// Waits for a compaction in progress and throws its file away (the store is
    /// closing).
    fn abandon(&mut self, path: &Path) {
        if let Some((_, thread)) = self.running.take() {
            let _ = thread.join();
            let _ = fs::remove_file(rewrite_path(path));
        }
    }
}

fn rewrite_path(journal: &Path) -> PathBuf {
    journal.with_file_name(REWRITE)
}

/// Compacts the journal's first `at` bytes (whole records: the writer appends only
/// after them) into the rewrite file, synced.
fn compact_prefix(journal: &Path, at: u64, keep_finished_runs: usize) -> Result<Prefix, Error> {
    let mut data = vec![0; at as usize];
    File::open(journal)
        .and_then(|mut f| f.read_exact(&mut data))
        .map_err(|e| io_error(journal, e))?;
    let (records, end) = recover(&data, journal)?;
    drop(data);
    if end as u64 != at {
        return Err(Error::Corrupt {
            path: journal.display().to_string(),
            offset: end as u64,
            message: "the journal's prefix being compacted does not end on a record".into(),
        });
    }
    let mut dropped: HashMap<u128, Record> = records
        .iter()
        .filter_map(|r| match r {
            Record::Workflow { key, .. } => Some((*key, r.clone())),
            _ => None,
        })
        .collect();
    let records = compact(records, keep_finished_runs);
    let mut kept = HashSet::new();
    let mut buf = MAGIC.to_vec();
    for record in &records {
        if let Record::Workflow { key, .. } = record {
            dropped.remove(key);
            kept.insert(*key);
        }
        encode(record, &mut buf);
    }
    let rewrite = rewrite_path(journal);
    let file = (|| {
        let _ = fs::remove_file(&rewrite);
        let mut file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(&rewrite)?;
        file.write_all(&buf)?;
        file.sync_data()?;
        Ok(file)
    })()
    .map_err(|e| io_error(&rewrite, e))?;
    Ok(Prefix {
        file,
        len: buf.len() as u64,
        kept,
        dropped,
    })
}

/// Appends to the compacted prefix what the journal got after `at` (up to `len`),
/// syncs it and renames it over the journal; returns the new journal's file and
/// length. `Ok(None)` when it gave up before the rename (the journal is as it was);
/// `Err` when the rename happened but the directory could not be synced.
fn finish_prefix(
    mut prefix: Prefix,
    journal: &Path,
    at: u64,
    len: u64,
) -> Result<Option<(File, u64)>, Error> {
    let rewrite = rewrite_path(journal);
    let appended = (|| -> Result<u64, Error> {
        let mut tail = vec![0; (len - at) as usize];
        File::open(journal)
            .and_then(|mut f| {
                f.seek(io::SeekFrom::Start(at))?;
                f.read_exact(&mut tail)
            })
            .map_err(|e| io_error(journal, e))?;
        // Workflows the runs appended meanwhile name, and the compaction dropped.
        let mut buf = Vec::new();
        let mut at_tail = 0;
        while at_tail < tail.len() {
            let Frame::Record(body, end) = frame(&tail, at_tail) else {
                return Err(Error::Corrupt {
                    path: journal.display().to_string(),
                    offset: at + at_tail as u64,
                    message: "a record appended during compaction does not read back".into(),
                });
            };
            if let Ok(Record::RunCreated { workflow, .. }) = decode(body)
                && !prefix.kept.contains(&workflow)
                && let Some(record) = prefix.dropped.remove(&workflow)
            {
                encode(&record, &mut buf);
                prefix.kept.insert(workflow);
            }
            at_tail = end;
        }
        buf.extend_from_slice(&tail);
        prefix
            .file
            .write_all(&buf)
            .and_then(|()| prefix.file.sync_data())
            .map_err(|e| io_error(&rewrite, e))?;
        Ok(prefix.len + buf.len() as u64)
    })();
    let new_len = match appended {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "compacting the state journal failed; it goes on uncompacted");
            let _ = fs::remove_file(&rewrite);
            return Ok(None);
        }
    };
    if let Err(e) = fs::rename(&rewrite, journal) {
        tracing::warn!(error = %e, "could not replace the state journal with its compaction; it goes on uncompacted");
        let _ = fs::remove_file(&rewrite);
        return Ok(None);
    }
    let dir = journal.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))?;
    Ok(Some((prefix.file, new_len)))
}

/// Should the writer ever panic, fails the store instead of leaving `sync` and
/// `close` waiting forever.
struct OnUnwind<'a>(&'a Shared);

impl Drop for OnUnwind<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let end = State::Failed("the state writer thread panicked".into());
            self.0.queue().state = end.clone();
            self.0.durable.send_modify(|d| d.state = end);
        }
    }
}

/// Writes a batch at `len`, the journal's end. A write that found no space
/// (`ENOSPC`, `EDQUOT`) is cut back to `len` and tried again every 500 ms until it
/// goes through or the store is closed: meanwhile records queue and every `sync`
/// waits, so runs pause rather than fail, and go on by themselves once space is
/// freed. A failed `fdatasync` is final: after one the kernel may have dropped the
/// dirty pages, so a later sync could succeed without the data.
fn write_until_space(
    shared: &Shared,
    file: &mut File,
    len: &mut u64,
    buf: &[u8],
    fsync: bool,
) -> io::Result<()> {
    let mut stalled = false;
    loop {
        match write_batch(shared, file, buf) {
            Ok(()) => break,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                ) && file.set_len(*len).is_ok() =>
            {
                if !stalled {
                    tracing::error!(error = %e, "state journal write failed for lack of space; runs wait, retrying every 500 ms");
                    stalled = true;
                }
                let queue = shared.queue();
                if queue.state != State::Open {
                    return Err(e);
                }
                drop(
                    shared
                        .wake
                        .wait_timeout(queue, Duration::from_millis(500))
                        .unwrap_or_else(PoisonError::into_inner),
                );
            }
            Err(e) => return Err(e),
        }
    }
    if stalled {
        tracing::info!("disk space is back; the state journal is written again");
    }
    *len += buf.len() as u64;
    if fsync {
        file.sync_data()?;
    }
    Ok(())
}

fn write_batch(shared: &Shared, file: &mut File, buf: &[u8]) -> io::Result<()> {
    #[cfg(test)]
    {
        use std::sync::atomic::Ordering::Relaxed;
        shared.writes.fetch_add(1, Relaxed);
        if shared.fail_writes.load(Relaxed) {
            return Err(io::Error::other("injected write failure"));
        }
        if shared.no_space.load(Relaxed) {
            return Err(io::ErrorKind::StorageFull.into());
        }
    }
    #[cfg(not(test))]
    let _ = shared;
    file.write_all(buf)
}

/// Writes a journal holding `records` to the rewrite file, syncs it and renames it
/// over the journal: a crash leaves the old journal or the new one. Returns its size.
fn write_journal(dir: &Path, records: &[Record]) -> Result<u64, Error> {
    let rewrite = dir.join(REWRITE);
    let journal = dir.join(JOURNAL);
    let mut buf = MAGIC.to_vec();
    for record in records {
        encode(record, &mut buf);
    }
    File::create(&rewrite)
        .and_then(|mut file| {
            file.write_all(&buf)?;
            file.sync_all()
        })
        .map_err(|e| io_error(&rewrite, e))?;
    fs::rename(&rewrite, &journal).map_err(|e| io_error(&journal, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, e))?;
    Ok(buf.len() as u64)
}

fn cut_torn_tail(journal: &Path, valid_end: usize, len: usize) -> Result<(), Error> {
    tracing::warn!(
        path = %journal.display(),
        offset = valid_end,
        dropped_bytes = len - valid_end,
        "cutting off the torn tail of the state journal (a crash mid-write; never acknowledged)"
    );
    OpenOptions::new()
        .write(true)
        .open(journal)
        .and_then(|file| {
            file.set_len(valid_end as u64)?;
            file.sync_all()
        })
        .map_err(|e| io_error(journal, e))
}

fn io_error(path: &Path, source: io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        source,
    }
}

fn too_large(journal: &Path, record: &Record, size: usize) -> Error {
    let kind = match record {
        Record::Workflow { .. } => "workflow",
        Record::RunCreated { .. } => "run-created",
        Record::Task { .. } => "task",
        Record::Item { .. } => "item",
        Record::Run { .. } => "run",
    };
    io_error(
        journal,
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a {kind} record of {size} bytes exceeds the limit of {MAX_BODY} bytes; \
                 keep large documents and outputs elsewhere and store a reference"
            ),
        ),
    )
}

// ---------------------------------------------------------------------------
// Recovery

/// Decodes every record of a journal. Returns them and the offset where the valid
/// records end: `data.len()`, or the start of a torn tail to cut.
fn recover(data: &[u8], path: &Path) -> Result<(Vec<Record>, usize), Error> {
    let corrupt = |offset: usize, message: String| Error::Corrupt {
        path: path.display().to_string(),
        offset: offset as u64,
        message,
    };
    if data.len() < MAGIC.len() || data[..MAGIC.len()] != MAGIC[..] {
        return Err(corrupt(
            0,
            format!(
                "expected the magic {:?} of a Baton state journal (this version); \
                 if the file is not Baton's, move it out of the directory",
                String::from_utf8_lossy(MAGIC)
            ),
        ));
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    loop {
        match frame(data, at) {
            Frame::End => return Ok((records, at)),
            Frame::Record(body, next) => {
                let record = decode(body).map_err(|m| {
                    corrupt(
                        at,
                        format!("{m}, in a record whose checksum holds (a bug, or a newer format)"),
                    )
                })?;
                records.push(record);
                at = next;
            }
            Frame::Bad(reason) => {
                return match next_valid(data, at + 1) {
                    None => Ok((records, at)),
                    Some(valid) => Err(corrupt(
                        at,
                        format!(
                            "{reason}; a valid record follows at byte {valid}, so this is \
                             damage, not a torn write at the tail. Restore the directory from \
                             a backup, or to give up the records from this point on, truncate \
                             the file to {at} bytes"
                        ),
                    )),
                };
            }
        }
    }
}

enum Frame<'a> {
    /// No bytes left.
    End,
    /// A record with a valid checksum: its body and where the next record starts.
    Record(&'a [u8], usize),
    /// Incomplete, implausible or failing its checksum.
    Bad(String),
}

fn frame(data: &[u8], at: usize) -> Frame<'_> {
    let Some(rest) = data.get(at..) else {
        return Frame::Bad(format!("offset {at} is past the end"));
    };
    if rest.is_empty() {
        return Frame::End;
    }
    let Some((header, rest)) = rest.split_first_chunk::<HEADER>() else {
        return Frame::Bad(format!(
            "incomplete record header ({} of {HEADER} bytes)",
            rest.len()
        ));
    };
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *header;
    let len = u32::from_le_bytes([l0, l1, l2, l3]) as usize;
    let crc = u32::from_le_bytes([c0, c1, c2, c3]);
    if len == 0 || len > MAX_BODY {
        return Frame::Bad(format!("implausible record length {len}"));
    }
    let Some(body) = rest.get(..len) else {
        return Frame::Bad(format!(
            "incomplete record ({} of {len} body bytes)",
            rest.len()
        ));
    };
    let actual = crc32fast::hash(body);
    if actual != crc {
        return Frame::Bad(format!(
            "checksum mismatch (stored {crc:#010x}, computed {actual:#010x})"
        ));
    }
    Frame::Record(body, at + HEADER + len)
}

/// The first offset at or after `from` where a whole, decodable record starts.
fn next_valid(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len())
        .find(|&at| matches!(frame(data, at), Frame::Record(body, _) if decode(body).is_ok()))
}

// ---------------------------------------------------------------------------
// Encoding

/// The body size of `record`, computed without encoding it.
fn body_size(record: &Record) -> usize {
    let opt = |s: &Option<String>| 4 + s.as_ref().map_or(0, String::len);
    match record {
        Record::Workflow { document, .. } => 1 + 16 + 4 + document.len(),
        Record::RunCreated {
            input, rerun_of, ..
        } => 1 + 8 + 16 + 8 + 4 + input.len() + rerun_of.map_or(0, |_| 8),
        Record::Task { detail, .. } => 28 + opt(detail),
        Record::Item { detail, .. } => 32 + opt(detail),
        Record::Run { reason, .. } => 1 + 8 + 1 + 8 + opt(reason),
    }
}

/// Appends `record`, framed, to `buf`. Its body must be at most [`MAX_BODY`] bytes.
fn encode(record: &Record, buf: &mut Vec<u8>) {
    let start = buf.len();
    buf.extend_from_slice(&[0; HEADER]);
    match record {
        Record::Workflow { key, document } => {
            buf.push(WORKFLOW);
            buf.extend_from_slice(&key.to_le_bytes());
            put_str(buf, document);
        }
        Record::RunCreated {
            run,
            workflow,
            input,
            at_ms,
            rerun_of,
        } => {
            buf.push(RUN_CREATED);
            buf.extend_from_slice(&run.0.to_le_bytes());
            buf.extend_from_slice(&workflow.to_le_bytes());
            buf.extend_from_slice(&at_ms.to_le_bytes());
            put_str(buf, input);
            if let Some(of) = rerun_of {
                buf.extend_from_slice(&of.0.to_le_bytes());
            }
        }
        Record::Task {
            run,
            task,
            status,
            attempt,
            agent,
            at_us,
            detail,
        } => {
            let mut fixed = [0u8; 32];
            fixed[0] = TASK;
            fixed[1..9].copy_from_slice(&run.0.to_le_bytes());
            fixed[9..13].copy_from_slice(&task.to_le_bytes());
            fixed[13] = *status as u8;
            fixed[14..18].copy_from_slice(&attempt.to_le_bytes());
            fixed[18..20].copy_from_slice(&agent.to_le_bytes());
            fixed[20..28].copy_from_slice(&at_us.to_le_bytes());
            buf.extend_from_slice(&fixed[..28]);
            put_opt_str(buf, detail.as_deref());
        }
        Record::Item {
            run,
            task,
            item,
            status,
            attempt,
            agent,
            at_us,
            detail,
        } => {
            let mut fixed = [0u8; 32];
            fixed[0] = ITEM;
            fixed[1..9].copy_from_slice(&run.0.to_le_bytes());
            fixed[9..13].copy_from_slice(&task.to_le_bytes());
            fixed[13] = *status as u8;
            fixed[14..18].copy_from_slice(&attempt.to_le_bytes());
            fixed[18..20].copy_from_slice(&agent.to_le_bytes());
            fixed[20..28].copy_from_slice(&at_us.to_le_bytes());
            fixed[28..32].copy_from_slice(&item.to_le_bytes());
            buf.extend_from_slice(&fixed);
            put_opt_str(buf, detail.as_deref());
        }
        Record::Run {
            run,
            status,
            at_ms,
            reason,
        } => {
            buf.push(RUN);
            buf.extend_from_slice(&run.0.to_le_bytes());
            buf.push(*status as u8);
            buf.extend_from_slice(&at_ms.to_le_bytes());
            put_opt_str(buf, reason.as_deref());
        }
    }
    let body = &buf[start + HEADER..];
    debug_assert!(body.len() <= MAX_BODY, "append checks the size");
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32fast::hash(body).to_le_bytes();
    buf[start..start + 4].copy_from_slice(&len);
    buf[start + 4..start + HEADER].copy_from_slice(&crc);
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len() as u32).to_le_bytes());
    buf.extend_from_slice(s.as_bytes());
}

fn put_opt_str(buf: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => put_str(buf, s),
        None => buf.extend_from_slice(&NONE.to_le_bytes()),
    }
}

// ---------------------------------------------------------------------------
// Decoding

/// Decodes a record body. Any input gives a record or an error, never a panic.
fn decode(body: &[u8]) -> Result<Record, String> {
    let mut r = Reader(body);
    let record = match r.u8()? {
        WORKFLOW => Record::Workflow {
            key: r.u128()?,
            document: r.str()?,
        },
        RUN_CREATED => Record::RunCreated {
            run: RunId(r.u64()?),
            workflow: r.u128()?,
            at_ms: r.u64()?,
            input: r.str()?,
            // Present only on a rerun (journals written before it have none).
            rerun_of: if r.0.is_empty() {
                None
            } else {
                Some(RunId(r.u64()?))
            },
        },
        TASK => Record::Task {
            run: RunId(r.u64()?),
            task: r.u32()?,
            status: {
                let code = r.u8()?;
                TaskStatus::from_u8(code).ok_or_else(|| format!("unknown task status {code}"))?
            },
            attempt: r.u32()?,
            agent: r.u16()?,
            at_us: r.u64()?,
            detail: r.opt_str()?,
        },
        ITEM => {
            let run = RunId(r.u64()?);
            let task = r.u32()?;
            let code = r.u8()?;
            let status =
                TaskStatus::from_u8(code).ok_or_else(|| format!("unknown task status {code}"))?;
            let (attempt, agent, at_us, item) = (r.u32()?, r.u16()?, r.u64()?, r.u32()?);
            Record::Item {
                run,
                task,
                item,
                status,
                attempt,
                agent,
                at_us,
                detail: r.opt_str()?,
            }
        }
        RUN => Record::Run {
            run: RunId(r.u64()?),
            status: {
                let code = r.u8()?;
                RunStatus::from_u8(code).ok_or_else(|| format!("unknown run status {code}"))?
            },
            at_ms: r.u64()?,
            reason: r.opt_str()?,
        },
        kind => return Err(format!("unknown record kind {kind}")),
    };
    if !r.0.is_empty() {
        return Err(format!("{} unexpected bytes after the record", r.0.len()));
    }
    Ok(record)
}

/// Reads little-endian fields off the front of a slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self
            .0
            .split_first_chunk::<N>()
            .ok_or_else(|| format!("record ends inside a {N}-byte field"))?;
        self.0 = rest;
        Ok(*head)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if n > self.0.len() {
            return Err(format!(
                "string of {n} bytes, but the record has {} left",
                self.0.len()
            ));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.bytes::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.bytes().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.bytes().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.bytes().map(u64::from_le_bytes)
    }

    fn u128(&mut self) -> Result<u128, String> {
        self.bytes().map(u128::from_le_bytes)
    }

    fn str(&mut self) -> Result<String, String> {
        let len = self.u32()?;
        self.utf8(len)
    }

    fn opt_str(&mut self) -> Result<Option<String>, String> {
        match self.u32()? {
            NONE => Ok(None),
            len => self.utf8(len).map(Some),
        }
    }

    fn utf8(&mut self, len: u32) -> Result<String, String> {
        let bytes = self.take(len as usize)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|e| format!("string is not UTF-8 ({e})"))
    }
}

// ---------------------------------------------------------------------------
// Compaction

/// Whether a task or item record names the child run its attempt started
/// (`{"child": ID}`): compaction keeps it, so a finished child stays linked
/// to its parent (a parent that fails later undoes the child's work).
fn names_child(record: &Record) -> bool {
    match record {
        Record::Task { detail, .. } | Record::Item { detail, .. } => detail
            .as_deref()
            .is_some_and(|d| d.starts_with("{\"child\"")),
        _ => false,
    }
}

/// What compaction keeps of `records`, in order.
fn compact(records: Vec<Record>, keep_finished_runs: usize) -> Vec<Record> {
    #[derive(Default)]
    struct Run {
        first: usize,
        created: Option<usize>,
        /// The last `Record::Run` and whether its status is final.
        last_status: Option<(usize, bool)>,
    }
    impl Run {
        fn finished(&self) -> bool {
            matches!(self.last_status, Some((_, true)))
        }
    }
    let mut runs: HashMap<RunId, Run> = HashMap::new();
    for (i, record) in records.iter().enumerate() {
        let Some(id) = record.run() else { continue };
        let run = runs.entry(id).or_insert_with(|| Run {
            first: i,
            ..Run::default()
        });
        match record {
            Record::RunCreated { .. } if run.created.is_none() => run.created = Some(i),
            Record::Run { status, .. } => run.last_status = Some((i, status.is_final())),
            _ => {}
        }
    }

    // Finished runs, newest first by creation; beyond the limit they go entirely.
    let mut finished: Vec<(usize, RunId)> = runs
        .iter()
        .filter(|(_, run)| run.finished())
        .map(|(id, run)| (run.created.unwrap_or(run.first), *id))
        .collect();
    finished.sort_unstable_by(|a, b| b.cmp(a));
    let dropped: HashSet<RunId> = finished
        .iter()
        .skip(keep_finished_runs)
        .map(|&(_, id)| id)
        .collect();

    // Backwards, so that the first task record met is the task's last.
    let mut ended_tasks: HashSet<(RunId, u32)> = HashSet::new();
    let mut keep: Vec<bool> = records
        .iter()
        .enumerate()
        .rev()
        .map(|(i, record)| {
            let Some(id) = record.run() else { return true };
            if dropped.contains(&id) {
                return false;
            }
            let run = &runs[&id];
            match (run.last_status, record) {
                (Some(_), Record::Task { task, .. }) if run.finished() => {
                    ended_tasks.insert((id, *task)) || names_child(record)
                }
                (Some((last, true)), _) => {
                    run.created == Some(i) || last == i || names_child(record)
                }
                _ => true,
            }
        })
        .collect();
    keep.reverse();
    let referenced: HashSet<u128> = records
        .iter()
        .zip(&keep)
        .filter_map(|(record, &kept)| match record {
            Record::RunCreated { workflow, .. } if kept => Some(*workflow),
            _ => None,
        })
        .collect();
    for (record, kept) in records.iter().zip(&mut keep) {
        if let Record::Workflow { key, .. } = record {
            *kept = referenced.contains(key);
        }
    }

    if keep.iter().all(|&k| k) {
        return records;
    }
    records
        .into_iter()
        .zip(keep)
        .filter_map(|(record, kept)| kept.then_some(record))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::sync::atomic::Ordering;
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::*;

    fn quick() -> EmbeddedOptions {
        EmbeddedOptions {
            fsync: false,
            compact_at_open: false,
            ..EmbeddedOptions::default()
        }
    }

    fn task(run: u64, task: u32, status: TaskStatus, detail: Option<&str>) -> Record {
        Record::Task {
            run: RunId(run),
            task,
            status,
            attempt: 1,
            agent: 0,
            at_us: u64::from(task) * 10,
            detail: detail.map(str::to_owned),
        }
    }

    fn created(run: u64, workflow: u128) -> Record {
        Record::RunCreated {
            run: RunId(run),
            workflow,
            input: format!("{{\"run\":{run}}}"),
            at_ms: run,
            rerun_of: None,
        }
    }

    fn workflow(key: u128) -> Record {
        Record::Workflow {
            key,
            document: format!("{{\"key\":{key}}}"),
        }
    }

    fn run_status(run: u64, status: RunStatus) -> Record {
        Record::Run {
            run: RunId(run),
            status,
            at_ms: run + 1,
            reason: status.is_final().then(|| status.to_string()),
        }
    }

    const RUN_STATUSES: [RunStatus; 6] = [
        RunStatus::Running,
        RunStatus::Paused,
        RunStatus::Compensating,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// Every record kind, every status, with extreme numbers and awkward strings.
    fn edge_records() -> Vec<Record> {
        let strings = [
            None,
            Some(String::new()),
            Some("naïve ☃ 日本語 🚀 \u{0}\n\"".to_owned()),
        ];
        let mut records = vec![
            Record::Workflow {
                key: 0,
                document: String::new(),
            },
            Record::Workflow {
                key: u128::MAX,
                document: "{\"名前\":\"ワーク\"} 🚀".into(),
            },
            Record::RunCreated {
                run: RunId(u64::MAX),
                workflow: u128::MAX,
                input: String::new(),
                at_ms: u64::MAX,
                rerun_of: None,
            },
            Record::RunCreated {
                run: RunId(0),
                workflow: 0,
                input: "ü\0\n".into(),
                at_ms: 0,
                rerun_of: Some(RunId(u64::MAX)),
            },
        ];
        for (i, status) in TaskStatus::ALL.into_iter().enumerate() {
            for detail in &strings {
                records.push(Record::Task {
                    run: RunId(u64::MAX - i as u64),
                    task: u32::MAX - i as u32,
                    status,
                    attempt: u32::MAX,
                    agent: u16::MAX,
                    at_us: u64::MAX,
                    detail: detail.clone(),
                });
            }
        }
        for status in [TaskStatus::Succeeded, TaskStatus::Failed] {
            for detail in &strings {
                records.push(Record::Item {
                    run: RunId(u64::MAX),
                    task: u32::MAX,
                    item: u32::MAX - 1,
                    status,
                    attempt: u32::MAX,
                    agent: u16::MAX,
                    at_us: u64::MAX,
                    detail: detail.clone(),
                });
            }
        }
        records.push(Record::Task {
            run: RunId(0),
            task: 0,
            status: TaskStatus::Pending,
            attempt: 0,
            agent: 0,
            at_us: 0,
            detail: None,
        });
        for status in RUN_STATUSES {
            for reason in &strings {
                records.push(Record::Run {
                    run: RunId(u64::MAX),
                    status,
                    at_ms: u64::MAX,
                    reason: reason.clone(),
                });
            }
        }
        records
    }

    /// A journal holding `records`, and the offset of each record.
    fn journal_bytes(records: &[Record]) -> (Vec<u8>, Vec<usize>) {
        let mut buf = MAGIC.to_vec();
        let mut offsets = Vec::new();
        for record in records {
            offsets.push(buf.len());
            encode(record, &mut buf);
        }
        (buf, offsets)
    }

    fn write_raw(dir: &Path, bytes: &[u8]) {
        fs::create_dir_all(dir).unwrap();
        fs::write(dir.join(JOURNAL), bytes).unwrap();
    }

    fn read_back(dir: &Path) -> Vec<Record> {
        let data = fs::read(dir.join(JOURNAL)).unwrap();
        let (records, end) = recover(&data, Path::new("journal")).unwrap();
        assert_eq!(end, data.len());
        records
    }

    fn assert_corrupt(result: Result<Embedded, Error>, want_offset: usize) {
        match result {
            Err(Error::Corrupt { path, offset, .. }) => {
                assert!(path.ends_with(JOURNAL), "{path}");
                assert_eq!(offset, want_offset as u64);
            }
            Err(other) => panic!("expected Corrupt at {want_offset}, got {other}"),
            Ok(_) => panic!("expected Corrupt at {want_offset}, but it opened"),
        }
    }

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Embedded>();
    }

    #[test]
    fn codec_round_trips_every_kind_with_edge_values() {
        for record in edge_records() {
            let mut buf = Vec::new();
            encode(&record, &mut buf);
            let Frame::Record(body, next) = frame(&buf, 0) else {
                panic!("{record:?} does not frame");
            };
            assert_eq!(next, buf.len());
            assert_eq!(body.len(), body_size(&record), "{record:?}");
            assert_eq!(decode(body).unwrap(), record);
        }
        // The hot record is compact.
        let mut buf = Vec::new();
        encode(&task(1, 2, TaskStatus::Running, None), &mut buf);
        assert_eq!(buf.len(), HEADER + 32);
    }

    #[tokio::test]
    async fn store_round_trips_every_kind_with_edge_values() {
        let dir = tempfile::tempdir().unwrap();
        let records = edge_records();
        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(store.load().unwrap(), vec![]);
        let seq = store.append(records.clone()).unwrap();
        assert_eq!(seq, records.len() as u64);
        store.sync(seq).await.unwrap();
        store.close().await.unwrap();

        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(store.load().unwrap(), records);
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn reopen_keeps_everything_in_order_and_continues_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let mut all = Vec::new();
        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(store.append(vec![]).unwrap(), 0);
        for batch in 0..5u32 {
            let records: Vec<Record> = (0..=batch)
                .map(|i| task(7, batch * 10 + i, TaskStatus::Running, None))
                .collect();
            all.extend(records.iter().cloned());
            assert_eq!(store.append(records).unwrap(), all.len() as u64);
        }
        store.close().await.unwrap();

        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(store.load().unwrap(), all);
        let more = vec![run_status(7, RunStatus::Paused)];
        assert_eq!(store.append(more.clone()).unwrap(), all.len() as u64 + 1);
        all.extend(more);
        // Dropping flushes too.
        drop(store);

        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(store.load().unwrap(), all);
        assert_eq!(store.append(vec![]).unwrap(), all.len() as u64);
        store.close().await.unwrap();
    }

    #[test]
    fn sequence_numbers_follow_journal_order_across_threads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(dir.path(), quick()).unwrap();
        let mut numbered: Vec<(u64, Record)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4u64)
                .map(|thread| {
                    let store = &store;
                    s.spawn(move || {
                        let mut mine = Vec::new();
                        for i in 0..300u32 {
                            let records: Vec<Record> = (0..=i % 3)
                                .map(|j| task(thread, i * 4 + j, TaskStatus::Ready, None))
                                .collect();
                            let last = store.append(records.clone()).unwrap();
                            let first = last + 1 - records.len() as u64;
                            mine.extend((first..=last).zip(records));
                        }
                        mine
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        drop(store);
        numbered.sort_by_key(|(seq, _)| *seq);
        let seqs: Vec<u64> = numbered.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=numbered.len() as u64).collect::<Vec<_>>());
        let want: Vec<Record> = numbered.into_iter().map(|(_, r)| r).collect();
        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(store.load().unwrap(), want);
    }

    #[tokio::test]
    async fn load_returns_what_was_recovered_each_time() {
        let dir = tempfile::tempdir().unwrap();
        let first = vec![workflow(1), created(1, 1)];
        let store = Embedded::open(dir.path(), quick()).unwrap();
        store.append(first.clone()).unwrap();
        store.close().await.unwrap();

        let store = Embedded::open(dir.path(), quick()).unwrap();
        let seq = store
            .append(vec![task(1, 0, TaskStatus::Ready, None)])
            .unwrap();
        store.sync(seq).await.unwrap();
        assert_eq!(store.load().unwrap(), first);
        // The second call reads the journal again, and stops where open stopped.
        assert_eq!(store.load().unwrap(), first);
        store.close().await.unwrap();
        assert_eq!(store.load().unwrap(), first);
    }

    #[test]
    fn torn_tail_at_every_offset_drops_exactly_the_last_record() {
        let mut records = edge_records();
        records.push(task(3, 9, TaskStatus::Succeeded, Some("{\"out\":\"é\"}")));
        let (bytes, offsets) = journal_bytes(&records);
        let last = *offsets.last().unwrap();
        let base = tempfile::tempdir().unwrap();
        for cut in last..bytes.len() {
            let dir = base.path().join(cut.to_string());
            write_raw(&dir, &bytes[..cut]);
            let store = Embedded::open(&dir, quick()).unwrap();
            assert_eq!(
                store.load().unwrap(),
                records[..records.len() - 1],
                "cut {cut}"
            );
            assert_eq!(fs::metadata(dir.join(JOURNAL)).unwrap().len(), last as u64);
            // The store goes on from the cut.
            let extra = task(4, 1, TaskStatus::Ready, None);
            assert_eq!(
                store.append(vec![extra.clone()]).unwrap(),
                records.len() as u64
            );
            drop(store);
            let mut want = records[..records.len() - 1].to_vec();
            want.push(extra);
            assert_eq!(read_back(&dir), want, "cut {cut}");
        }
    }

    #[test]
    fn garbage_or_a_bad_checksum_at_the_tail_is_cut() {
        let records = vec![
            workflow(1),
            created(1, 1),
            task(1, 0, TaskStatus::Ready, None),
        ];
        let (bytes, offsets) = journal_bytes(&records);
        let base = tempfile::tempdir().unwrap();
        let mut cases: Vec<(Vec<u8>, usize)> = Vec::new();
        for tail in [
            vec![0u8; 1],
            vec![0u8; 8],
            vec![0u8; 4096],
            vec![0xff; 100],
            b"not a record at all".to_vec(),
        ] {
            let mut b = bytes.clone();
            b.extend_from_slice(&tail);
            cases.push((b, records.len()));
        }
        // A whole last record whose checksum fails.
        let mut b = bytes.clone();
        *b.last_mut().unwrap() ^= 0x01;
        cases.push((b, records.len() - 1));
        // A length beyond the limit.
        let mut b = bytes.clone();
        b.extend_from_slice(&(MAX_BODY as u32 + 1).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        cases.push((b, records.len()));
        for (i, (b, keep)) in cases.into_iter().enumerate() {
            let dir = base.path().join(i.to_string());
            write_raw(&dir, &b);
            let store = Embedded::open(&dir, quick()).unwrap();
            assert_eq!(store.load().unwrap(), records[..keep], "case {i}");
            let end = offsets.get(keep).copied().unwrap_or(bytes.len());
            assert_eq!(fs::metadata(dir.join(JOURNAL)).unwrap().len(), end as u64);
        }
    }

    #[test]
    fn damage_followed_by_valid_records_is_corrupt_at_its_offset() {
        let records: Vec<Record> = (0..5)
            .map(|i| task(1, i, TaskStatus::Succeeded, Some("output")))
            .collect();
        let (bytes, offsets) = journal_bytes(&records);
        let base = tempfile::tempdir().unwrap();
        for k in [0, 2, 3] {
            let end = offsets[k + 1];
            for at in offsets[k]..end {
                let mut damaged = bytes.clone();
                damaged[at] ^= 0x5a;
                let dir = base.path().join(format!("{k}-{at}"));
                write_raw(&dir, &damaged);
                assert_corrupt(Embedded::open(&dir, quick()), offsets[k]);
                // Nothing was cut or rewritten.
                assert_eq!(fs::read(dir.join(JOURNAL)).unwrap(), damaged);
            }
        }
        // A bad magic.
        let mut damaged = bytes.clone();
        damaged[3] ^= 1;
        let dir = base.path().join("magic");
        write_raw(&dir, &damaged);
        assert_corrupt(Embedded::open(&dir, quick()), 0);
    }

    #[test]
    fn undecodable_record_with_valid_checksum_is_corrupt_even_at_the_tail() {
        let (mut bytes, _) = journal_bytes(&[workflow(1)]);
        let at = bytes.len();
        for body in [
            &[9u8, 1, 2][..],
            &[TASK, 1][..],
            &[RUN, 0, 0, 0, 0, 0, 0, 0, 0, 77][..],
        ] {
            let mut b = bytes.clone();
            b.extend_from_slice(&(body.len() as u32).to_le_bytes());
            b.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
            b.extend_from_slice(body);
            let dir = tempfile::tempdir().unwrap();
            write_raw(dir.path(), &b);
            assert_corrupt(Embedded::open(dir.path(), quick()), at);
        }
        // Trailing bytes after a valid body.
        let mut body = Vec::new();
        encode(&workflow(2), &mut body);
        let mut body = body[HEADER..].to_vec();
        body.push(0);
        bytes.extend_from_slice(&(body.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        bytes.extend_from_slice(&body);
        let dir = tempfile::tempdir().unwrap();
        write_raw(dir.path(), &bytes);
        assert_corrupt(Embedded::open(dir.path(), quick()), at);
    }

    #[tokio::test]
    async fn empty_or_partial_magic_starts_a_new_journal() {
        for start in [&b""[..], b"B", b"BATNST0"] {
            let dir = tempfile::tempdir().unwrap();
            write_raw(dir.path(), start);
            let store = Embedded::open(dir.path(), quick()).unwrap();
            assert_eq!(store.load().unwrap(), vec![]);
            let seq = store.append(vec![workflow(5)]).unwrap();
            assert_eq!(seq, 1);
            store.close().await.unwrap();
            assert_eq!(read_back(dir.path()), vec![workflow(5)]);
        }
        let dir = tempfile::tempdir().unwrap();
        write_raw(dir.path(), b"{}");
        assert_corrupt(Embedded::open(dir.path(), quick()), 0);
    }

    /// Unfinished run 2 (interleaved with run 1), runs 1, 3, 4 finished (1 oldest),
    /// run 5 finished then resumed; workflow 10 used by run 1 only, 20 by run 2,
    /// 30 by runs 3 and 4, 40 by nobody, 50 by run 5.
    fn history() -> Vec<Record> {
        vec![
            workflow(10),
            workflow(20),
            workflow(40),
            created(1, 10),
            run_status(1, RunStatus::Running),
            created(2, 20),
            task(1, 0, TaskStatus::Ready, None),
            task(2, 0, TaskStatus::Ready, None),
            task(1, 0, TaskStatus::Succeeded, Some("{}")),
            run_status(2, RunStatus::Running),
            run_status(1, RunStatus::Completed),
            workflow(30),
            created(3, 30),
            task(2, 0, TaskStatus::Failed, Some("boom")),
            run_status(2, RunStatus::Paused),
            task(3, 0, TaskStatus::Failed, Some("bad")),
            run_status(3, RunStatus::Compensating),
            run_status(3, RunStatus::Failed),
            created(4, 30),
            run_status(4, RunStatus::Cancelled),
            workflow(50),
            created(5, 50),
            run_status(5, RunStatus::Failed),
            run_status(5, RunStatus::Running),
            task(5, 1, TaskStatus::Running, None),
            task(2, 1, TaskStatus::Pending, None),
        ]
    }

    fn compacting(keep_finished_runs: usize) -> EmbeddedOptions {
        EmbeddedOptions {
            fsync: false,
            compact_at_open: true,
            keep_finished_runs,
            compact_after_bytes: 0,
        }
    }

    #[tokio::test]
    async fn compaction_reduces_finished_runs_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        write_raw(dir.path(), &journal_bytes(&history()).0);
        let want = vec![
            workflow(10),
            workflow(20),
            created(1, 10),
            created(2, 20),
            task(2, 0, TaskStatus::Ready, None),
            task(1, 0, TaskStatus::Succeeded, Some("{}")),
            run_status(2, RunStatus::Running),
            run_status(1, RunStatus::Completed),
            workflow(30),
            created(3, 30),
            task(2, 0, TaskStatus::Failed, Some("boom")),
            run_status(2, RunStatus::Paused),
            task(3, 0, TaskStatus::Failed, Some("bad")),
            run_status(3, RunStatus::Failed),
            created(4, 30),
            run_status(4, RunStatus::Cancelled),
            workflow(50),
            created(5, 50),
            run_status(5, RunStatus::Failed),
            run_status(5, RunStatus::Running),
            task(5, 1, TaskStatus::Running, None),
            task(2, 1, TaskStatus::Pending, None),
        ];
        let store = Embedded::open(dir.path(), compacting(10)).unwrap();
        assert_eq!(store.load().unwrap(), want);
        assert_eq!(read_back(dir.path()), want);
        // Numbering goes on from the retained records.
        assert_eq!(store.append(vec![]).unwrap(), want.len() as u64);
        store.close().await.unwrap();

        // Compacting again changes nothing, not even the file.
        let bytes = fs::read(dir.path().join(JOURNAL)).unwrap();
        let store = Embedded::open(dir.path(), compacting(10)).unwrap();
        assert_eq!(store.load().unwrap(), want);
        store.close().await.unwrap();
        assert_eq!(fs::read(dir.path().join(JOURNAL)).unwrap(), bytes);
    }

    #[tokio::test]
    async fn compaction_drops_the_oldest_finished_runs_beyond_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        write_raw(dir.path(), &journal_bytes(&history()).0);
        // Runs 3 and 4 are the newest finished; run 1 and workflow 10 go.
        let want = vec![
            workflow(20),
            created(2, 20),
            task(2, 0, TaskStatus::Ready, None),
            run_status(2, RunStatus::Running),
            workflow(30),
            created(3, 30),
            task(2, 0, TaskStatus::Failed, Some("boom")),
            run_status(2, RunStatus::Paused),
            task(3, 0, TaskStatus::Failed, Some("bad")),
            run_status(3, RunStatus::Failed),
            created(4, 30),
            run_status(4, RunStatus::Cancelled),
            workflow(50),
            created(5, 50),
            run_status(5, RunStatus::Failed),
            run_status(5, RunStatus::Running),
            task(5, 1, TaskStatus::Running, None),
            task(2, 1, TaskStatus::Pending, None),
        ];
        let store = Embedded::open(dir.path(), compacting(2)).unwrap();
        assert_eq!(store.load().unwrap(), want);
        store.close().await.unwrap();
        let store = Embedded::open(dir.path(), compacting(2)).unwrap();
        assert_eq!(store.load().unwrap(), want);
        store.close().await.unwrap();

        // With none kept, only unfinished runs and their workflows remain.
        let store = Embedded::open(dir.path(), compacting(0)).unwrap();
        let want: Vec<Record> = want
            .into_iter()
            .filter(|r| match r {
                Record::Workflow { key, .. } => [20, 50].contains(key),
                r => [Some(RunId(2)), Some(RunId(5))].contains(&r.run()),
            })
            .collect();
        assert_eq!(store.load().unwrap(), want);
        store.close().await.unwrap();
        assert_eq!(read_back(dir.path()), want);
    }

    #[tokio::test]
    async fn without_compaction_everything_stays() {
        let dir = tempfile::tempdir().unwrap();
        write_raw(dir.path(), &journal_bytes(&history()).0);
        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(store.load().unwrap(), history());
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn unfinished_rewrite_left_by_a_crash_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        write_raw(dir.path(), &journal_bytes(&history()).0);
        // A crash before the rename: the new journal is half written, the old whole.
        let (compacted, _) = journal_bytes(&history()[..4]);
        fs::write(dir.path().join(REWRITE), &compacted[..compacted.len() - 3]).unwrap();
        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(store.load().unwrap(), history());
        assert!(!dir.path().join(REWRITE).exists());
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_second_open_is_locked_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(dir.path(), quick()).unwrap();
        match Embedded::open(dir.path(), quick()) {
            Err(Error::Locked { path }) => assert!(path.ends_with(LOCK), "{path}"),
            Err(other) => panic!("expected Locked, got {other}"),
            Ok(_) => panic!("expected Locked, but it opened"),
        }
        store.close().await.unwrap();
        // Closing releases the lock even while the value lives on.
        let again = Embedded::open(dir.path(), quick()).unwrap();
        drop(store);
        assert!(matches!(
            Embedded::open(dir.path(), quick()),
            Err(Error::Locked { .. })
        ));
        drop(again);
        Embedded::open(dir.path(), quick()).unwrap();
    }

    #[tokio::test]
    async fn sync_waits_until_the_record_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap();
        store.sync(0).await.unwrap();
        let mut want = Vec::new();
        for i in 0..20 {
            let record = task(9, i, TaskStatus::Dispatched, Some("agent-7"));
            want.push(record.clone());
            let seq = store.append(vec![record]).unwrap();
            store.sync(seq).await.unwrap();
            // Read through another handle while the store is open.
            assert_eq!(read_back(dir.path()), want);
            // Durable already: resolves at once.
            store.sync(seq).await.unwrap();
        }
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn many_waiters_share_group_commits() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap());
        let mut waiters = Vec::new();
        for i in 0..200 {
            let seq = store
                .append(vec![task(1, i, TaskStatus::Running, None)])
                .unwrap();
            let store = Arc::clone(&store);
            waiters.push(tokio::spawn(async move { store.sync(seq).await }));
        }
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        assert_eq!(read_back(dir.path()).len(), 200);
        // Not a timing assertion: 200 appends cannot take 200 writes unless the
        // writer ran between every two appends, which a cheap append makes unlikely.
        let writes = store.shared.writes.load(Ordering::Relaxed);
        assert!(writes < 200, "{writes} writes for 200 records");
        store.close().await.unwrap();
    }

    #[tokio::test]
    async fn after_close_append_and_unreached_sync_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(dir.path(), quick()).unwrap();
        let seq = store.append(vec![workflow(1)]).unwrap();
        store.close().await.unwrap();
        assert!(matches!(
            store.append(vec![workflow(2)]),
            Err(Error::Closed(None))
        ));
        // Close flushed it.
        store.sync(seq).await.unwrap();
        assert!(matches!(
            store.sync(seq + 1).await,
            Err(Error::Closed(None))
        ));
        store.close().await.unwrap();
        assert_eq!(read_back(dir.path()), vec![workflow(1)]);
    }

    #[tokio::test]
    async fn close_wakes_waiters_for_numbers_never_appended() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(dir.path(), quick()).unwrap());
        let waiter = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.sync(5).await }
        });
        tokio::task::yield_now().await;
        store.close().await.unwrap();
        assert!(matches!(waiter.await.unwrap(), Err(Error::Closed(None))));
    }

    #[tokio::test]
    async fn a_write_error_fails_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(dir.path(), quick()).unwrap());
        let durable = store.append(vec![workflow(1)]).unwrap();
        store.sync(durable).await.unwrap();

        store.shared.fail_writes.store(true, Ordering::Relaxed);
        let seq = store.append(vec![workflow(2)]).unwrap();
        let waiter = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.sync(seq).await }
        });
        let failed = |e: Result<_, Error>| match e {
            Err(Error::Closed(Some(message))) => {
                assert!(message.contains("injected write failure"), "{message}");
                assert!(message.contains(JOURNAL), "{message}");
            }
            other => panic!("expected Closed(Some(..)), got {other:?}"),
        };
        failed(waiter.await.unwrap());
        failed(store.sync(seq).await);
        failed(store.append(vec![workflow(3)]).map(drop));
        // What was durable before the failure still is.
        store.sync(durable).await.unwrap();
        failed(store.close().await);
        drop(store);
        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(store.load().unwrap(), vec![workflow(1)]);
    }

    /// A run of workflow `wf`: created, three tasks run, and (when `ends`) completed.
    fn a_run(run: u64, wf: u128, ends: bool) -> Vec<Record> {
        let mut records = vec![created(run, wf)];
        for t in 0..3 {
            records.push(task(run, t, TaskStatus::Running, None));
            records.push(task(run, t, TaskStatus::Succeeded, Some("{\"ok\":true}")));
        }
        if ends {
            records.push(run_status(run, RunStatus::Completed));
        }
        records
    }

    /// The journal compacts while the store stays open, without stopping its writes:
    /// the file shrinks, and what it reopens to compacts to what the whole history
    /// compacts to.
    #[tokio::test]
    async fn the_journal_compacts_while_the_store_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let options = EmbeddedOptions {
            keep_finished_runs: 20,
            compact_after_bytes: 32 << 10,
            ..quick()
        };
        let store = Embedded::open(dir.path(), options).unwrap();
        let mut history = vec![workflow(1), workflow(2)];
        let seq = store.append(history.clone()).unwrap();
        store.sync(seq).await.unwrap();
        let mut written = 0;
        let mut run = 0;
        let size = || fs::metadata(dir.path().join(JOURNAL)).unwrap().len();
        let started = Instant::now();
        loop {
            // Every seventh run stays unfinished, so the compaction keeps all of it.
            let records = a_run(run, 1 + u128::from(run % 2 == 0), run % 7 != 0);
            written += records.iter().map(|r| body_size(r) as u64 + 8).sum::<u64>();
            history.extend(records.clone());
            let seq = store.append(records).unwrap();
            store.sync(seq).await.unwrap();
            run += 1;
            if written > 256 << 10 && size() < written / 2 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never compacted: {} of {written} bytes",
                size()
            );
        }
        store.close().await.unwrap();
        drop(store);
        let store = Embedded::open(dir.path(), options).unwrap();
        let reopened = store.load().unwrap();
        assert!(reopened.len() < history.len());
        assert_eq!(compact(reopened, 20), compact(history, 20));
    }

    /// What the writer appended while the prefix was being compacted goes after it,
    /// with the workflows its runs name that the compaction had dropped.
    #[test]
    fn a_compacted_prefix_takes_the_records_written_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join(JOURNAL);
        let mut before = vec![workflow(1), workflow(2)];
        for run in 0..5 {
            before.extend(a_run(run, 1, true));
        }
        before.extend(a_run(5, 2, false));
        let at = write_journal(dir.path(), &before).unwrap();
        // Keeping no finished run: workflow 1 goes.
        let prefix = compact_prefix(&journal, at, 0).unwrap();
        assert!(prefix.dropped.contains_key(&1) && prefix.kept.contains(&2));
        let meanwhile = a_run(9, 1, true);
        let mut buf = Vec::new();
        for r in &meanwhile {
            encode(r, &mut buf);
        }
        let mut f = OpenOptions::new().append(true).open(&journal).unwrap();
        f.write_all(&buf).unwrap();
        let len = at + buf.len() as u64;
        let (_, new_len) = finish_prefix(prefix, &journal, at, len).unwrap().unwrap();
        let data = fs::read(&journal).unwrap();
        assert_eq!(data.len() as u64, new_len);
        let (records, _) = recover(&data, &journal).unwrap();
        let mut want = compact(before, 0);
        want.push(workflow(1));
        want.extend(meanwhile);
        assert_eq!(records, want);
        assert!(!dir.path().join(REWRITE).exists());
    }

    /// A full disk pauses the store instead of closing it: `sync` waits, appends
    /// queue, and everything is written, once and in order, when space returns.
    #[tokio::test]
    async fn a_full_disk_pauses_the_store_until_space_returns() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Embedded::open(dir.path(), quick()).unwrap());
        let durable = store.append(vec![workflow(1)]).unwrap();
        store.sync(durable).await.unwrap();

        store.shared.no_space.store(true, Ordering::Relaxed);
        let seq = store.append(vec![workflow(2)]).unwrap();
        let waiter = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.sync(seq).await }
        });
        tokio::time::sleep(Duration::from_millis(700)).await;
        assert!(!waiter.is_finished(), "acknowledged without being written");
        let tried = store.shared.writes.load(Ordering::Relaxed);
        assert!(tried >= 2, "tried {tried} times");
        let later = store.append(vec![workflow(3)]).unwrap();

        store.shared.no_space.store(false, Ordering::Relaxed);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("written once space returned")
            .unwrap()
            .unwrap();
        store.sync(later).await.unwrap();
        store.close().await.unwrap();
        drop(store);
        let store = Embedded::open(dir.path(), quick()).unwrap();
        assert_eq!(
            store.load().unwrap(),
            vec![workflow(1), workflow(2), workflow(3)]
        );
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        let opt = proptest::option::of(any::<String>());
        prop_oneof![
            (any::<u128>(), any::<String>())
                .prop_map(|(key, document)| Record::Workflow { key, document }),
            (
                any::<u64>(),
                any::<u128>(),
                any::<String>(),
                any::<u64>(),
                proptest::option::of(any::<u64>())
            )
                .prop_map(|(run, workflow, input, at_ms, of)| Record::RunCreated {
                    run: RunId(run),
                    workflow,
                    input,
                    at_ms,
                    rerun_of: of.map(RunId),
                }),
            (
                any::<u64>(),
                any::<u32>(),
                0..9u8,
                any::<u32>(),
                any::<u16>(),
                any::<u64>(),
                opt.clone()
            )
                .prop_map(|(run, task, status, attempt, agent, at_us, detail)| {
                    Record::Task {
                        run: RunId(run),
                        task,
                        status: TaskStatus::from_u8(status).unwrap(),
                        attempt,
                        agent,
                        at_us,
                        detail,
                    }
                }),
            (
                any::<u64>(),
                any::<(u32, u32)>(),
                0..9u8,
                any::<u32>(),
                any::<u16>(),
                any::<u64>(),
                opt.clone()
            )
                .prop_map(
                    |(run, (task, item), status, attempt, agent, at_us, detail)| {
                        Record::Item {
                            run: RunId(run),
                            task,
                            item,
                            status: TaskStatus::from_u8(status).unwrap(),
                            attempt,
                            agent,
                            at_us,
                            detail,
                        }
                    }
                ),
            (any::<u64>(), 0..6u8, any::<u64>(), opt).prop_map(|(run, status, at_ms, reason)| {
                Record::Run {
                    run: RunId(run),
                    status: RunStatus::from_u8(status).unwrap(),
                    at_ms,
                    reason,
                }
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn decoding_any_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = decode(&body);
        }

        #[test]
        fn recovering_any_bytes_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..512),
            magic in any::<bool>(),
        ) {
            let mut data = if magic { MAGIC.to_vec() } else { Vec::new() };
            data.extend_from_slice(&tail);
            if let Ok((_, end)) = recover(&data, Path::new("j")) {
                prop_assert!(end <= data.len());
            }
        }

        #[test]
        fn journals_round_trip(records in proptest::collection::vec(arb_record(), 0..16)) {
            let (bytes, _) = journal_bytes(&records);
            let (got, end) = recover(&bytes, Path::new("j")).unwrap();
            prop_assert_eq!(got, records);
            prop_assert_eq!(end, bytes.len());
        }

        /// Whatever happens to the bytes, recovery either says so or returns a
        /// prefix of what was written: never a changed or reordered record.
        #[test]
        fn damage_is_never_silent(
            records in proptest::collection::vec(arb_record(), 1..12),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 0..4),
            cut in any::<prop::sample::Index>(),
            do_cut in any::<bool>(),
        ) {
            let (mut bytes, _) = journal_bytes(&records);
            let len = bytes.len();
            for (at, mask) in flips {
                bytes[MAGIC.len() + at.index(len - MAGIC.len())] ^= mask;
            }
            if do_cut {
                bytes.truncate(MAGIC.len() + cut.index(len - MAGIC.len()));
            }
            match recover(&bytes, Path::new("j")) {
                Ok((got, _)) => prop_assert_eq!(&got[..], &records[..got.len()]),
                Err(Error::Corrupt { offset, .. }) => prop_assert!(offset < len as u64),
                Err(other) => prop_assert!(false, "unexpected {}", other),
            }
        }
    }

    const CRASH_DIR: &str = "BATON_STORE_CRASH_DIR";

    /// The record at position `i` of the crash test's journal.
    fn crash_record(i: u64) -> Record {
        let detail = "x".repeat((i % 97) as usize);
        task(1, i as u32, TaskStatus::Running, Some(&detail))
    }

    /// The child of `a_killed_writer_loses_nothing_acknowledged`: appends until
    /// killed, printing each acknowledged sequence number. Ignored, so that it
    /// never counts as a passed test; its parent runs it with `--ignored`.
    #[test]
    #[ignore = "the child process of a_killed_writer_loses_nothing_acknowledged, which runs it"]
    fn crash_child() {
        let dir = std::env::var_os(CRASH_DIR).expect(
            "run by a_killed_writer_loses_nothing_acknowledged, which sets the data directory",
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let store = Embedded::open(Path::new(&dir), quick()).unwrap();
            let mut next = store.load().unwrap().len() as u64;
            loop {
                let records: Vec<Record> = (next..next + 200).map(crash_record).collect();
                next += 200;
                let seq = store.append(records).unwrap();
                store.sync(seq).await.unwrap();
                println!("acked {seq}");
            }
        });
    }

    #[test]
    fn a_killed_writer_loses_nothing_acknowledged() {
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut acked = 0;
        for round in 0..4u64 {
            let mut child = std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "--ignored",
                    "store::embedded::tests::crash_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CRASH_DIR, dir.path())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            let mut lines = io::BufReader::new(child.stdout.take().unwrap()).lines();
            let mut seen = 0;
            let mut note = |line: &str| {
                if let Some(seq) = line.strip_prefix("acked ") {
                    acked = acked.max(seq.trim().parse::<u64>().unwrap());
                    true
                } else {
                    false
                }
            };
            // Let it run a while, a different while each round, then kill it.
            while seen < 10 + round * 13 {
                let line = lines.next().expect("the child exited early").unwrap();
                seen += u64::from(note(&line));
            }
            child.kill().unwrap();
            for line in lines {
                note(&line.unwrap());
            }
            child.wait().unwrap();

            let store = Embedded::open(dir.path(), quick()).unwrap();
            let records = store.load().unwrap();
            assert!(records.len() as u64 >= acked, "{} < {acked}", records.len());
            for (i, record) in records.iter().enumerate() {
                assert_eq!(*record, crash_record(i as u64), "record {i}");
            }
        }
    }

    /// Durable throughput with fsync on, and the caller's cost per record.
    /// Not a test: run with
    /// `cargo test -p baton-engine --release -- --ignored --nocapture throughput`.
    /// `TMPDIR` picks the disk. Excludes building the records (the caller does that
    /// anyway); includes everything `append` does.
    #[test]
    #[ignore = "benchmark; run in release with --ignored --nocapture"]
    fn throughput() {
        const N: u64 = 1_000_000;
        const BATCH: u64 = 1_000;
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let batch = |b: u64| -> Vec<Record> {
            (b * BATCH..(b + 1) * BATCH)
                .map(|i| {
                    // A task's life: ready, dispatched, running, succeeded with output.
                    let status = TaskStatus::ALL[1 + (i % 4) as usize];
                    let detail = (status == TaskStatus::Succeeded).then_some("{\"ok\":true}");
                    task(i / 64, (i % 64) as u32, status, detail)
                })
                .collect()
        };

        // 1. Append everything as fast as the caller can, then wait for the last.
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let mut in_append = Duration::ZERO;
        let start = Instant::now();
        let mut last = 0;
        for b in 0..N / BATCH {
            let records = batch(b);
            let t = Instant::now();
            last = store.append(records).unwrap();
            in_append += t.elapsed();
        }
        rt.block_on(store.sync(last)).unwrap();
        let total = start.elapsed();
        let writes = store.shared.writes.load(Ordering::Relaxed);
        rt.block_on(store.close()).unwrap();
        let size = fs::metadata(dir.path().join(JOURNAL)).unwrap().len();
        println!(
            "pipelined: {N} records durable in {total:.2?} = {:.0} records/s; \
             caller {:.1} ns/record in append; {writes} write+fdatasync; {:.1} MB",
            N as f64 / total.as_secs_f64(),
            in_append.as_nanos() as f64 / N as f64,
            size as f64 / 1e6,
        );

        // 2. Wait for each batch before the next: one fdatasync per batch.
        let dir = tempfile::tempdir().unwrap();
        let store = Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap();
        let batches = 200;
        let mut in_append = Duration::ZERO;
        let start = Instant::now();
        for b in 0..batches {
            let records = batch(b);
            let t = Instant::now();
            let seq = store.append(records).unwrap();
            in_append += t.elapsed();
            rt.block_on(store.sync(seq)).unwrap();
        }
        let total = start.elapsed();
        rt.block_on(store.close()).unwrap();
        println!(
            "sync per batch: {} records in {total:.2?} = {:.0} records/s; {:.2?} per batch; \
             caller {:.1} ns/record in append (includes waking the idle writer)",
            batches * BATCH,
            (batches * BATCH) as f64 / total.as_secs_f64(),
            total / batches as u32,
            in_append.as_nanos() as f64 / (batches * BATCH) as f64,
        );

        // 3. What encoding would cost the caller, were it done on its thread.
        let records: Vec<Vec<Record>> = (0..N / BATCH).map(batch).collect();
        let mut buf = Vec::with_capacity(64 << 20);
        let start = Instant::now();
        for b in records {
            for record in &b {
                encode(record, &mut buf);
            }
            drop(b);
        }
        let encoding = start.elapsed();
        println!(
            "encoding (+ dropping) on the caller's thread would add {:.1} ns/record",
            encoding.as_nanos() as f64 / N as f64
        );
        std::hint::black_box(buf);
    }
}
