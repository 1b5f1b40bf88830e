//! The engine's public face: [`Options`], [`Engine::build`], the cloneable
//! [`Handle`], and what it reports ([`Summary`], [`RunView`], [`Stats`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use baton_events::EventLog;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::scheduler::{Msg, Op, Scheduler};
use crate::spec::Spec;
use crate::store::{self, RunId, RunStatus, StateStore, TaskStatus};

/// How the engine behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Seeds jitter and simulated agents, so runs repeat exactly.
    pub seed: u64,
    /// Publish every task transition to the event log (topic [`Options::topic`]).
    pub publish: bool,
    /// The topic transitions are published to.
    pub topic: String,
    /// The topic `wait_for` filters watch when they name none.
    pub signals_topic: String,
    /// Runs waiting to start are admitted while fewer than this many tasks are
    /// ready for dispatch. The default, 1, starts a new run only when no task
    /// waits for dispatch: work in progress goes first, so ready → dispatched stays
    /// in microseconds when thousands of runs arrive at once (their wait to start
    /// is reported as `queue_ms` instead). Runs whose tasks wait on agents leave
    /// the queue empty, so they still run concurrently.
    pub admit_below: usize,
    /// Finished runs kept in memory for status queries.
    pub keep_finished: usize,
    /// This instance's number among several sharing one state store (its low 10
    /// bits go into every run id it creates, so instances never mint the same id);
    /// `None` for a single instance.
    pub node: Option<u16>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seed: 0x0ba7_0000,
            publish: true,
            topic: "baton.runs".into(),
            signals_topic: "baton.signals".into(),
            admit_below: 1,
            keep_finished: 10_000,
            node: None,
        }
    }
}

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
    /// The engine has stopped.
    #[error("the engine has stopped")]
    Stopped,
    /// The run was handed to another instance (its lease here was lost): ask again,
    /// any instance routes the call to the run's owner.
    #[error("run {0} is now driven by another instance")]
    Moved(RunId),
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Number of samples.
    pub count: u64,
    /// Median.
    pub p50_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

/// What a run did, when it ended (or so far).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The run.
    #[serde(serialize_with = "display")]
    pub run: RunId,
    /// The workflow's name.
    pub workflow: Option<String>,
    /// The run's status.
    #[serde(serialize_with = "display")]
    pub status: RunStatus,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Task counts by status (every status present, zeros included).
    pub tasks: TaskCounts,
    /// From the run's start to its last task's end, milliseconds.
    pub makespan_ms: f64,
    /// Time from submission to the start (admission), milliseconds.
    pub queue_ms: f64,
    /// The chain of tasks that determined the makespan, as run: from the last task
    /// to finish, back through the dependency that finished last each time.
    pub critical_path: Vec<String>,
    /// Agent time (dispatch to finish) summed along that chain, milliseconds.
    pub critical_path_agent_ms: f64,
    /// `makespan − critical-path agent time`: what coordination added, milliseconds.
    pub coordination_overhead_ms: f64,
    /// Ready → dispatched latency over the run's tasks.
    pub coordination_overhead: Percentiles,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Compensations that ran successfully.
    pub compensations: u64,
    /// Compensations that failed for good, with their errors.
    pub compensation_failures: Vec<String>,
}

/// Task counts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TaskCounts {
    /// Not yet ready.
    pub pending: u64,
    /// Waiting for an agent or an event.
    pub ready: u64,
    /// Handed to an agent.
    pub dispatched: u64,
    /// Being worked on.
    pub running: u64,
    /// Done.
    pub succeeded: u64,
    /// Failed for good.
    pub failed: u64,
    /// Not run (condition false, or upstream skipped).
    pub skipped: u64,
    /// Stopped or never run because the run ended.
    pub cancelled: u64,
    /// Undone by compensation.
    pub compensated: u64,
}

impl TaskCounts {
    pub(crate) fn add(&mut self, status: TaskStatus) {
        *self.slot(status) += 1;
    }

    fn slot(&mut self, status: TaskStatus) -> &mut u64 {
        match status {
            TaskStatus::Pending => &mut self.pending,
            TaskStatus::Ready => &mut self.ready,
            TaskStatus::Dispatched => &mut self.dispatched,
            TaskStatus::Running => &mut self.running,
            TaskStatus::Succeeded => &mut self.succeeded,
            TaskStatus::Failed => &mut self.failed,
            TaskStatus::Skipped => &mut self.skipped,
            TaskStatus::Cancelled => &mut self.cancelled,
            TaskStatus::Compensated => &mut self.compensated,
        }
    }
}

/// One task of a run, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// The task's id.
    pub id: String,
    /// Its status.
    #[serde(serialize_with = "display")]
    pub status: TaskStatus,
    /// Attempts so far.
    pub attempt: u32,
    /// The agent of its last attempt.
    pub agent: Option<String>,
    /// Its output (succeeded tasks).
    pub output: Option<Value>,
    /// Its last error.
    pub error: Option<String>,
}

/// A run's state with every task.
#[derive(Debug, Clone, Serialize)]
pub struct RunView {
    /// The figures so far.
    #[serde(flatten)]
    pub summary: Summary,
    /// Every task, in declaration order (compensation tasks included).
    pub task_states: Vec<TaskView>,
}

/// Engine-wide figures.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Runs by status.
    pub runs_running: u64,
    /// Paused runs.
    pub runs_paused: u64,
    /// Runs running compensations.
    pub runs_compensating: u64,
    /// Runs waiting for admission.
    pub runs_queued: u64,
    /// Runs that completed since start.
    pub runs_completed: u64,
    /// Runs that failed since start.
    pub runs_failed: u64,
    /// Runs cancelled since start.
    pub runs_cancelled: u64,
    /// Task transitions since start.
    pub transitions: u64,
    /// Tasks ready and waiting for an agent.
    pub ready_queue: u64,
    /// Ready → dispatched, over every task since start.
    pub dispatch_latency: Percentiles,
    /// A task's end → its successors ready, over every such edge since start.
    pub release_latency: Percentiles,
    /// Agents: name, calls in flight, breaker state.
    pub agents: Vec<AgentStats>,
}

/// One agent's figures.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStats {
    /// The agent.
    pub name: String,
    /// Its type.
    pub kind: String,
    /// Calls in flight.
    pub in_flight: u32,
    /// Calls started since start.
    pub calls: u64,
    /// Calls that failed.
    pub failures: u64,
    /// `closed`, `open` or `half_open`.
    pub breaker: &'static str,
}

/// Live task counters, readable without asking the scheduler (progress bars).
#[derive(Debug, Default)]
pub struct Progress {
    /// Tasks of submitted runs (forward plan).
    pub total: AtomicU64,
    /// Tasks that succeeded.
    pub succeeded: AtomicU64,
    /// Tasks that failed for good.
    pub failed: AtomicU64,
    /// Tasks skipped or cancelled.
    pub skipped: AtomicU64,
    /// Tasks dispatched or running now.
    pub running: AtomicU64,
    /// Attempts beyond the first.
    pub retries: AtomicU64,
}

impl Progress {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// The engine: build it, spawn [`Engine::run`], talk to it through [`Handle`]s.
pub struct Engine {
    scheduler: Scheduler,
    resumed: Vec<RunId>,
}

/// A cheap, cloneable handle to a running engine.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Msg>,
    progress: Arc<Progress>,
    durable: bool,
}

impl Engine {
    /// Builds an engine on an event log and, for durability, a state store. With a
    /// store, the runs it holds that had not finished are resumed when the engine
    /// starts (at-least-once: tasks that were in flight run again).
    pub fn build<L: EventLog, S: StateStore>(
        options: Options,
        log: Arc<L>,
        store: Option<Arc<S>>,
    ) -> Result<(Engine, Handle), Error> {
        let (tx, rx) = mpsc::unbounded_channel();
        let durable = store.is_some();
        let progress = Arc::new(Progress::default());
        let (scheduler, resumed) =
            Scheduler::new(options, rx, tx.clone(), log, store, progress.clone())?;
        Ok((
            Engine { scheduler, resumed },
            Handle {
                tx,
                progress,
                durable,
            },
        ))
    }

    /// The unfinished runs read from the state store that this engine resumes
    /// when it runs, by id (empty without a store). Unlike [`Handle::active`],
    /// asked once the engine runs, this still lists the resumed runs that end
    /// before anyone asks ([`Handle::wait`] answers for those too).
    pub fn resumed(&self) -> &[RunId] {
        &self.resumed
    }

    /// Runs the scheduler until [`Handle::shutdown`] (or every handle is dropped).
    pub async fn run(self) {
        self.scheduler.run().await
    }
}

impl Handle {
    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(msg(reply)).map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Starts a run of `spec` with `input`; returns once the run is recorded (durable
    /// when the engine has a store).
    pub async fn submit(&self, spec: Arc<Spec>, input: Value) -> Result<RunId, Error> {
        if self.durable {
            // Serialize a new workflow here, not on the scheduler's thread.
            spec.key();
        }
        self.ask(|reply| Msg::Submit { spec, input, reply }).await?
    }

    /// Waits for a run to end and returns its summary (at once if it has ended).
    pub async fn wait(&self, run: RunId) -> Result<Arc<Summary>, Error> {
        self.ask(|reply| Msg::Wait { run, reply }).await?
    }

    /// The run's state and every task's.
    pub async fn status(&self, run: RunId) -> Result<RunView, Error> {
        self.ask(|reply| Msg::Status { run, reply }).await?
    }

    /// Pauses a run: tasks in flight finish, nothing new is dispatched.
    pub async fn pause(&self, run: RunId) -> Result<(), Error> {
        self.ask(|reply| Msg::Control {
            run,
            op: Op::Pause,
            reply,
        })
        .await?
    }

    /// Resumes a paused run.
    pub async fn resume(&self, run: RunId) -> Result<(), Error> {
        self.ask(|reply| Msg::Control {
            run,
            op: Op::Resume,
            reply,
        })
        .await?
    }

    /// Cancels a run: tasks in flight are stopped, the compensations of completed
    /// tasks run, and the run ends `cancelled`.
    pub async fn cancel(&self, run: RunId) -> Result<(), Error> {
        self.ask(|reply| Msg::Control {
            run,
            op: Op::Cancel,
            reply,
        })
        .await?
    }

    /// Takes over runs from their history (records of a state store, as
    /// [`StateStore::load`] returns them, for runs another instance drove): each
    /// unfinished run resumes here as after a restart. Runs this engine already
    /// drives are skipped. Returns the ids of the runs taken over.
    pub async fn adopt(&self, records: Vec<store::Record>) -> Result<Vec<RunId>, Error> {
        self.ask(|reply| Msg::Adopt {
            records,
            remember: false,
            reply,
        })
        .await?
    }

    /// Learns how runs that ended elsewhere ended (their records, as
    /// [`StateStore::load`] returns them), so that [`Handle::status`] and
    /// [`Handle::wait`] answer for them; timing figures read zero (the records do
    /// not hold them). Unfinished runs in `records` are ignored. Returns the ids
    /// of the runs learned.
    pub async fn remember(&self, records: Vec<store::Record>) -> Result<Vec<RunId>, Error> {
        self.ask(|reply| Msg::Adopt {
            records,
            remember: true,
            reply,
        })
        .await?
    }

    /// Stops driving runs another instance now owns (fencing rejected our writes):
    /// they are forgotten here without further records; their waiters get
    /// [`Error::Moved`]. Returns how many were live here.
    pub async fn release(&self, runs: Vec<RunId>) -> Result<usize, Error> {
        self.ask(|reply| Msg::Release { runs, reply }).await
    }

    /// Ids of the runs that have not ended (resumed ones included). Runs that
    /// ended before the engine got to the question are not in it: for the runs
    /// resumed at start, see [`Engine::resumed`].
    pub async fn active(&self) -> Result<Vec<RunId>, Error> {
        self.ask(|reply| Msg::Active { reply }).await
    }

    /// Engine-wide figures.
    pub async fn stats(&self) -> Result<Stats, Error> {
        self.ask(|reply| Msg::Stats { reply }).await
    }

    /// Live counters (no round trip to the scheduler).
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Stops the engine: tasks in flight are abandoned (they run again on resume),
    /// what was recorded is flushed to the store, the store is closed.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.ask(|reply| Msg::Shutdown { reply }).await?
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}
