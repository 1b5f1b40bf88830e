//! How an engine behaves: [`Options`].

/// Turns of records and events the sink may have queued before the scheduler
/// stops taking requests (see [`Options::queue`]).
pub const SINK_BACKLOG: usize = 1024;

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
    /// At start, also read the finished runs the state store holds (the
    /// newest `keep_finished` are kept), so that status queries, lists and
    /// reruns answer for them after a restart (`baton serve` does; `baton
    /// run` reads one only for `--rerun`).
    pub remember_finished: bool,
    /// Requests to the scheduler (submit, status, control, wait, ...) and batches
    /// of signals that may queue for it. When the queue is full, callers wait for
    /// room (`Handle::submit` and the others await), so a flood of submissions
    /// slows its senders instead of growing memory. The scheduler also stops
    /// taking requests while its sink (store and log) is more than
    /// [`SINK_BACKLOG`](crate::SINK_BACKLOG) turns behind, so a slow store pushes
    /// back on submissions the same way. Outcomes of calls in flight never wait:
    /// there is at most one per call.
    pub queue: usize,
    /// This instance's number among several sharing one state store (its low 10
    /// bits go into every run id it creates, so instances never mint the same id);
    /// `None` for a single instance.
    pub node: Option<u16>,
    /// How deeply child runs may nest: a sub-workflow that would start a run at
    /// a deeper level (the top run is level 1) fails its task. At most
    /// [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub max_depth: usize,
    /// The most task instances (fan-out items and loop iterations) one run may
    /// start: a fan-out or an iteration beyond it fails its task, so one
    /// runaway workflow cannot take the server's memory.
    pub max_instances: u64,
    /// Where `http` agents may connect, in runs it starts and resumes.
    pub egress: crate::agent::Egress,
    /// Where its `worker` agents' calls wait for workers to poll (each default
    /// `Options` has a pool of its own, so two engines never share calls).
    pub workers: std::sync::Arc<crate::agent::worker::Workers>,
    /// The operator's agents (`[agents.NAME]`), which the runs it starts were
    /// built with ([`Spec::with_overrides`](crate::Spec::with_overrides)): a
    /// resumed run takes them again, with the secrets its stored document
    /// does not hold.
    pub operator_agents: std::sync::Arc<[baton_model::Agent]>,
}

impl Options {
    /// How the agents of its runs are built: a [`Spec`](crate::Spec) whose
    /// `worker` agents this engine runs must be built with these.
    pub fn agents(&self) -> crate::agent::Options {
        crate::agent::Options {
            seed: self.seed,
            egress: self.egress.clone(),
            workers: self.workers.clone(),
        }
    }
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
            remember_finished: false,
            queue: 4096,
            node: None,
            max_depth: 8,
            max_instances: 1_000_000,
            egress: crate::agent::Egress::Open,
            workers: Default::default(),
            operator_agents: std::sync::Arc::from([]),
        }
    }
}
