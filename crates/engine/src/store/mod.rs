//! Run state, event-sourced: every change of a run is a [`Record`] appended to a
//! [`StateStore`]; replaying a store's records rebuilds every run.
//!
//! The store is a trait so other databases can plug in; [`Embedded`] (a
//! checksummed, group-committed journal under the data directory) is the default,
//! and `Postgres` (feature `postgres`) keeps the history in a PostgreSQL database
//! that several instances share, with leases and fencing.

mod durable;
mod embedded;
#[cfg(feature = "postgres")]
mod postgres;

use std::fmt;

pub use embedded::{Embedded, EmbeddedOptions};
#[cfg(all(feature = "postgres", feature = "test-util"))]
pub use postgres::testing;
#[cfg(feature = "postgres")]
pub use postgres::{Instance, Location, Postgres, PostgresOptions, SharedWorkflow};

/// A run's identity: 42 bits of creation time in milliseconds and 22 bits that
/// tell apart runs created in the same millisecond. Displayed as 16 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId(pub u64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl std::str::FromStr for RunId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16).map(RunId)
    }
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum TaskStatus {
    /// Waiting for its dependencies (or for a retry's backoff).
    Pending = 0,
    /// Dependencies done; waiting for an agent.
    Ready = 1,
    /// Handed to an agent.
    Dispatched = 2,
    /// The agent is working on it (or it waits for its `wait_for` event).
    Running = 3,
    /// Finished successfully.
    Succeeded = 4,
    /// Failed for good (retries exhausted, or not retryable).
    Failed = 5,
    /// Not run: its condition was false, or an upstream task was skipped.
    Skipped = 6,
    /// Not run, or stopped, because the run was cancelled or failed.
    Cancelled = 7,
    /// Succeeded, then undone by its compensation when the run failed.
    Compensated = 8,
}

impl TaskStatus {
    /// Every status, in declaration order.
    pub const ALL: [TaskStatus; 9] = [
        TaskStatus::Pending,
        TaskStatus::Ready,
        TaskStatus::Dispatched,
        TaskStatus::Running,
        TaskStatus::Succeeded,
        TaskStatus::Failed,
        TaskStatus::Skipped,
        TaskStatus::Cancelled,
        TaskStatus::Compensated,
    ];

    /// The status's name as used in JSON, events and conditions (`succeeded`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Ready => "ready",
            TaskStatus::Dispatched => "dispatched",
            TaskStatus::Running => "running",
            TaskStatus::Succeeded => "succeeded",
            TaskStatus::Failed => "failed",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Compensated => "compensated",
        }
    }

    /// The status with code `code` (its `repr(u8)` value).
    pub fn from_u8(code: u8) -> Option<TaskStatus> {
        TaskStatus::ALL.get(usize::from(code)).copied()
    }

    /// Whether the task will not change again in this run (compensation aside).
    pub fn is_final(self) -> bool {
        self as u8 >= TaskStatus::Succeeded as u8
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RunStatus {
    /// Executing tasks.
    Running = 0,
    /// Paused: running tasks finish, nothing new is dispatched.
    Paused = 1,
    /// A task failed for good; compensations of completed tasks are running.
    Compensating = 2,
    /// Every task succeeded or was skipped.
    Completed = 3,
    /// A task failed (compensations, if any, have run).
    Failed = 4,
    /// Cancelled by a user (compensations, if any, have run).
    Cancelled = 5,
}

impl RunStatus {
    /// The status's name (`running`, `completed`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Paused => "paused",
            RunStatus::Compensating => "compensating",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    /// The status with code `code` (its `repr(u8)` value).
    pub fn from_u8(code: u8) -> Option<RunStatus> {
        [
            RunStatus::Running,
            RunStatus::Paused,
            RunStatus::Compensating,
            RunStatus::Completed,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .get(usize::from(code))
        .copied()
    }

    /// Whether the run has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One change of state, the unit of the event-sourced history.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A workflow document, stored once per store and referred to by its key
    /// (the plan cache's structural key, so equal workflows share one record).
    Workflow {
        /// The workflow's structural key.
        key: u128,
        /// The workflow as JSON (the language's own serialization).
        document: String,
    },
    /// A run was created.
    RunCreated {
        /// The run.
        run: RunId,
        /// The key of its [`Record::Workflow`].
        workflow: u128,
        /// The run's input, as JSON text.
        input: String,
        /// Wall-clock creation time, Unix milliseconds.
        at_ms: u64,
        /// The finished run this one reruns (see `Handle::rerun`), if any.
        rerun_of: Option<RunId>,
    },
    /// A task changed state.
    Task {
        /// The run.
        run: RunId,
        /// The task (its index in the workflow's `tasks`).
        task: u32,
        /// Its new status.
        status: TaskStatus,
        /// Which attempt this is (1 for the first).
        attempt: u32,
        /// The agent (index in the run's agent table), `u16::MAX` for none.
        agent: u16,
        /// Time since the run was created (or resumed), microseconds.
        at_us: u64,
        /// The task's output as JSON text (on `Succeeded`), or the error message
        /// (on `Failed`, or on `Pending` after a failed attempt).
        detail: Option<String>,
    },
    /// An instance of a fan-out (a task's `for_each`) ended. Instances still
    /// running are not recorded: they run again after a restart, while ended
    /// ones keep their result and are not asked again.
    Item {
        /// The run.
        run: RunId,
        /// The fan-out task.
        task: u32,
        /// The item's index in the list the task runs over.
        item: u32,
        /// `Succeeded` or `Failed`.
        status: TaskStatus,
        /// The attempt that ended (1 for the first).
        attempt: u32,
        /// The agent (index in the run's agent table).
        agent: u16,
        /// Time since the run was created (or resumed), microseconds.
        at_us: u64,
        /// The instance's output as JSON text (on `Succeeded`), or its error.
        detail: Option<String>,
    },
    /// The run changed state.
    Run {
        /// The run.
        run: RunId,
        /// Its new status.
        status: RunStatus,
        /// Wall-clock time, Unix milliseconds.
        at_ms: u64,
        /// Why (for failed and cancelled runs).
        reason: Option<String>,
    },
}

impl Record {
    /// The run a record belongs to, `None` for a workflow document.
    pub fn run(&self) -> Option<RunId> {
        match self {
            Record::Workflow { .. } => None,
            Record::RunCreated { run, .. }
            | Record::Task { run, .. }
            | Record::Item { run, .. }
            | Record::Run { run, .. } => Some(*run),
        }
    }
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error, with the file it concerns.
    #[error("state store {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A record that cannot be decoded, not at the tail (where a torn write is cut).
    #[error("state store {path} is damaged at byte {offset}: {message}")]
    Corrupt {
        /// The file.
        path: String,
        /// Byte offset of the damaged record.
        offset: u64,
        /// What is wrong.
        message: String,
    },
    /// Another process holds the store.
    #[error("state store {path} is in use by another process")]
    Locked {
        /// The lock file.
        path: String,
    },
    /// The store was closed, or its writer stopped after an error.
    #[error("state store is closed{}", .0.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Closed(Option<String>),
    /// The database behind the store failed or refused an operation (the
    /// PostgreSQL store); the message is the database driver's.
    #[error("state store database: {what}: {message}")]
    Database {
        /// What the store was doing.
        what: String,
        /// The database's error.
        message: String,
    },
    /// The database's schema was migrated by a newer version of Baton than this one.
    #[error(
        "state store schema `{schema}` is at version {found}, newer than this build of baton knows (up to {known}): upgrade baton, or use another schema"
    )]
    SchemaTooNew {
        /// The schema.
        schema: String,
        /// Its version.
        found: i64,
        /// The newest version this build knows.
        known: i64,
    },
    /// This instance's lease is gone: another instance took over its runs.
    #[error("instance {instance} lost its lease: {message}")]
    LeaseLost {
        /// The instance (its id, the fencing epoch).
        instance: i64,
        /// How it was lost.
        message: String,
    },
    /// A record or an option the store cannot accept; nothing was queued or opened.
    #[error("state store cannot accept {what}: {message}")]
    Invalid {
        /// What was refused.
        what: String,
        /// Why, and what would be accepted.
        message: String,
    },
}

/// A durable, ordered log of [`Record`]s.
///
/// Records become durable in the order they were appended, so a prefix of the
/// history always survives a crash, never a record without those before it.
pub trait StateStore: Send + Sync + 'static {
    /// Queues records for writing and returns the sequence number of the last one
    /// without waiting for it to be durable. Sequence numbers start at 1 and grow
    /// by one per record.
    fn append(&self, records: Vec<Record>) -> Result<u64, Error>;

    /// Waits until every record up to sequence number `seq` is durable.
    fn sync(&self, seq: u64) -> impl std::future::Future<Output = Result<(), Error>> + Send;

    /// Every retained record, in append order (what [`StateStore::append`] was given,
    /// minus what compaction removed: the history of finished runs is reduced to
    /// their [`Record::RunCreated`] and final [`Record::Run`] records).
    fn load(&self) -> Result<Vec<Record>, Error>;

    /// Flushes what was appended, makes it durable and stops the writer.
    fn close(&self) -> impl std::future::Future<Output = Result<(), Error>> + Send;
}
