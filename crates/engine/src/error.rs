//! Why an engine call failed.

use crate::store::{self, RunId, RunStatus};

/// Why an engine call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No run with this id (never created, or finished and forgotten).
    #[error("no run {0}")]
    UnknownRun(RunId),
    /// The operation does not apply to the run in its state.
    #[error("run {run} is {status}: cannot {op}")]
    Conflict {
        /// The run.
        run: RunId,
        /// Its status.
        status: RunStatus,
        /// What was asked.
        op: &'static str,
    },
    /// The state store failed; the engine stops accepting work.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// A stored workflow could not be prepared again on resume.
    #[error("cannot resume run {run}: {message}")]
    Resume {
        /// The run.
        run: RunId,
        /// Why.
        message: String,
    },
    /// A task the run's workflow does not have.
    #[error("run {run} has no task `{task}`{}", hint.as_deref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownTask {
        /// The run.
        run: RunId,
        /// The task asked for.
        task: String,
        /// The closest task id.
        hint: Option<String>,
    },
    /// The task has no instances to list: it neither fans out nor loops.
    #[error("task `{task}` of run {run} is neither a fan-out nor a loop: it has no instances")]
    NoInstances {
        /// The run.
        run: RunId,
        /// The task.
        task: String,
    },
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
    /// The run was handed to another instance (its lease here was lost): ask again,
    /// any instance routes the call to the run's owner.
    #[error("run {0} is now driven by another instance")]
    Moved(RunId),
}
