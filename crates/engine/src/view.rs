//! What the engine reports: a run's [`Summary`] and [`RunView`], engine-wide
//! [`Stats`], and the live [`Progress`] counters.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use serde_json::Value;

use crate::store::{RunId, RunStatus, TaskStatus};

/// The upper bounds, in seconds, of the buckets [`Percentiles::buckets`]
/// counts (Prometheus' `le`): 1 µs to 10 s, 1–2.5–5 per decade.
pub const LATENCY_BUCKETS_S: [f64; 22] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
    5e-2, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

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
    /// The sum of the samples, microseconds (engine-wide histograms only;
    /// 0 elsewhere).
    #[serde(skip)]
    pub sum_us: f64,
    /// Samples at or under each bound of [`LATENCY_BUCKETS_S`], cumulative
    /// (engine-wide histograms only; zeros elsewhere): what `/metrics`
    /// exports as a Prometheus histogram.
    #[serde(skip)]
    pub buckets: [u64; LATENCY_BUCKETS_S.len()],
}

/// What a run did, when it ended (or so far).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// The run.
    #[serde(serialize_with = "display")]
    pub run: RunId,
    /// The workflow's name.
    pub workflow: Option<String>,
    /// The workflow's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
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
    /// The finished run this one reran.
    #[serde(serialize_with = "opt_display")]
    pub rerun_of: Option<RunId>,
    /// The run whose task started this one as its child.
    #[serde(serialize_with = "opt_display")]
    pub parent: Option<RunId>,
    /// Attempts beyond the first.
    pub retries: u64,
    /// Instances that ended: fan-out items and loop iterations (a task that
    /// is neither counts none).
    pub instances: u64,
    /// Compensations that ran successfully.
    pub compensations: u64,
    /// Compensations that failed for good, with their errors.
    pub compensation_failures: Vec<String>,
    /// Tokens its `llm` agents' models used, when any did (counted by the
    /// process that ran the calls; not recorded, so a run resumed elsewhere
    /// counts from there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Tokens>,
}

/// Tokens models used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    /// Of the prompts.
    pub prompt: u64,
    /// Of the answers.
    pub completion: u64,
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
    /// Its output (succeeded tasks; a fan-out's is the list of its instances' outputs).
    pub output: Option<Value>,
    /// Its last error.
    pub error: Option<String>,
    /// Why it was skipped, when a route decided it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A fan-out's or loop's instances by state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub items: Option<ItemCounts>,
    /// The child run a sub-workflow task's attempt is waiting for, or the one
    /// it completed with.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_display"
    )]
    pub child: Option<RunId>,
}

fn opt_display<S: serde::Serializer>(v: &Option<RunId>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

/// One instance of a fan-out (an item) or of a loop (an iteration).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    /// The item's index, or the iteration's number.
    pub index: u32,
    /// `waiting`, `running`, `succeeded` or `failed`.
    pub status: &'static str,
    /// Its attempts so far (0 when it never started).
    pub attempt: u32,
    /// The agent whose turn it is, for a pattern's iteration (or the team a
    /// hierarchical supervisor's call runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Its output, once it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A page of a task's instances, in index order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstancePage {
    /// The task.
    pub task: String,
    /// `for_each` or `loop`.
    pub kind: &'static str,
    /// Its instances so far (items of the list, iterations started).
    pub total: u32,
    /// Those from the page's offset on.
    pub items: Vec<InstanceView>,
    /// Where the next page starts, when there is one.
    pub next_offset: Option<u32>,
}

/// A fan-out's instances by state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ItemCounts {
    /// Items in the list.
    pub total: u32,
    /// Not started yet, or waiting for a retry.
    pub waiting: u32,
    /// Queued or with an agent.
    pub running: u32,
    /// Ended with an output.
    pub succeeded: u32,
    /// Failed for good.
    pub failed: u32,
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

/// Which runs [`Handle::list`](crate::Handle::list) returns: newest first, at
/// most `limit`, older than `before` (the cursor: the last run of the previous
/// page), matching every filter given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Only runs in one of these statuses (empty: any).
    pub statuses: Vec<RunStatus>,
    /// Only runs of the workflow with this name.
    pub workflow: Option<String>,
    /// Only runs created at or after this time (Unix milliseconds).
    pub since_ms: Option<u64>,
    /// Only runs created before this time (Unix milliseconds).
    pub until_ms: Option<u64>,
    /// Only runs older than this one.
    pub before: Option<RunId>,
    /// Only child runs of this run.
    pub parent: Option<RunId>,
    /// Only runs of this tenant's workflows.
    pub tenant: Option<String>,
    /// At most this many (at least 1).
    pub limit: usize,
}

/// One run in a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEntry {
    /// The run.
    #[serde(serialize_with = "display")]
    pub run: RunId,
    /// The workflow's name.
    pub workflow: Option<String>,
    /// The workflow's tenant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Its status.
    #[serde(serialize_with = "display")]
    pub status: RunStatus,
    /// Creation time, Unix milliseconds.
    pub created_ms: u64,
    /// Why it failed or was cancelled.
    pub reason: Option<String>,
    /// Task counts by status.
    pub tasks: TaskCounts,
    /// The run that started this one as its child.
    #[serde(serialize_with = "opt_display")]
    pub parent: Option<RunId>,
    /// The finished run this one reran (`Handle::rerun`).
    #[serde(serialize_with = "opt_display")]
    pub rerun_of: Option<RunId>,
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
    /// A decision made at run time → what it started dispatched: a routing
    /// task's end → the chosen successor dispatched, a loop's iteration end →
    /// the next iteration dispatched.
    pub decision_latency: Percentiles,
    /// A child run started by its parent's task → the child's first task
    /// dispatched.
    pub child_start_latency: Percentiles,
    /// Agents: name, calls in flight, breaker state.
    pub agents: Vec<AgentStats>,
    /// Ready → dispatched latencies since start, nanoseconds
    /// ([`Handle::sample`](crate::Handle::sample) only).
    #[serde(skip)]
    pub dispatch_histogram: Option<hdrhistogram::Histogram<u64>>,
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
    /// Calls it may have in flight at once (`None`: no limit).
    pub concurrency: Option<u32>,
    /// Calls waiting for one of those slots.
    pub queued: u64,
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
    /// Instances (fan-out items, loop iterations) decided so far.
    pub instances: AtomicU64,
    /// Instances that ended.
    pub instances_done: AtomicU64,
}

impl Progress {
    /// Reads one counter.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

fn display<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}
