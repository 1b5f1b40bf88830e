//! The scheduler: one loop that owns every run, the ready queue, the agent
//! registry and the timers. Messages (submissions, agent results, controls,
//! events) arrive on one channel, so their order is kept; each turn of the loop
//! handles what has arrived, fires due timers, dispatches ready tasks, and flushes
//! the turn's transitions to the state store and the event log in one batch.
//!
//! Hot-path rules: tasks are integers; finishing a task touches only its
//! successors; agents that finish at once (`noop`) complete inline, without a
//! spawned task or a channel hop.
//!
//! This file holds the scheduler's data (runs, task states, agent slots,
//! timers, what a turn produced) and the loop with a run's life (submit,
//! admit, ready, finish, end, control); each other concern has a file:
//! `dispatch.rs` (the ready queue to agents, outcomes, retries on timers),
//! `allocation.rs` (which agent takes a job: a pure function), `children.rs`
//! (tasks that run a sub-workflow as a child run), `dynamic.rs`
//! (fan-outs and routes: what a run decides as it goes), `signals.rs`
//! (`wait_for`), `saga.rs` (compensation), `sink.rs` (records and events off
//! the loop), `recovery.rs` (runs rebuilt from records), `input.rs` (what a
//! call and a condition see) and `report.rs` (views, summaries, statistics).

mod allocation;
mod children;
mod dispatch;
mod dynamic;
mod input;
mod loops;
mod patterns;
mod progress;
mod recovery;
mod report;
mod rerun;
mod saga;
mod signals;
mod sink;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use baton_events::{Event, EventLog};
use baton_model::Rng;
use baton_model::expr::{Field, Reference};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use self::dynamic::{FanOut, ItemEnd, off_route};
use self::report::{histogram, summarize};
use self::sink::{DynLog, DynStore};
use crate::Error;
use crate::agent::Outcome;
use crate::breaker::Breaker;
use crate::clock::now_ms;
use crate::options::Options;
use crate::spec::{CONDITION, FAN_OUT, ON_ROUTE, Spec, WAIT_FOR};
use crate::store::{self, Record, RunId, RunStatus, StateStore, TaskStatus};
use crate::view::{InstancePage, Progress, RunEntry, RunQuery, RunView, Stats, Summary};

/// The reason recorded for a run cancelled on request (recovery reads it back).
const CANCELLED: &str = "cancelled by request";
/// No compensation: a forward job.
const FORWARD: u32 = u32::MAX;
/// No agent.
const NO_AGENT: u16 = u16::MAX;
/// Not an instance of a fan-out: the task itself.
const NO_ITEM: u32 = u32::MAX;
/// Jobs dispatched in one turn of the loop before it yields.
const PUMP_BUDGET: usize = 65_536;
/// Transitions buffered before a flush in the middle of a turn.
const FLUSH_EVERY: usize = 8192;
/// How often a scheduler holding requests back looks whether its sink caught up.
const SINK_WAIT: Duration = Duration::from_millis(1);

pub(crate) enum Op {
    Pause,
    Resume,
    Cancel,
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Cancel => "cancel",
        }
    }
}

pub(crate) enum Msg {
    Submit {
        spec: Arc<Spec>,
        input: Value,
        reply: oneshot::Sender<Result<RunId, Error>>,
    },
    Done(Done),
    Control {
        run: RunId,
        op: Op,
        reply: oneshot::Sender<Result<(), Error>>,
    },
    Status {
        run: RunId,
        reply: oneshot::Sender<Result<RunView, Error>>,
    },
    Spec {
        run: RunId,
        reply: oneshot::Sender<Result<Arc<Spec>, Error>>,
    },
    Wait {
        run: RunId,
        reply: oneshot::Sender<Result<Arc<Summary>, Error>>,
    },
    Active {
        reply: oneshot::Sender<Vec<RunId>>,
    },
    List {
        query: RunQuery,
        reply: oneshot::Sender<Vec<RunEntry>>,
    },
    Stats {
        /// Whether to add the ready → dispatched histogram (a copy of a few
        /// hundred KiB: for samplers, not for every probe).
        with_latencies: bool,
        reply: oneshot::Sender<Stats>,
    },
    Signals {
        topic: Arc<str>,
        events: Vec<Event>,
    },
    StoreFailed(String),
    /// What an agent reported for a call (progress, tokens used).
    Report {
        job: Job,
        report: crate::agent::Report,
    },
    /// Runs taken over from another instance.
    Adopt {
        records: Vec<Record>,
        remember: bool,
        reply: oneshot::Sender<Result<Vec<RunId>, Error>>,
    },
    /// A page of a fan-out's or loop's instances.
    Instances {
        run: RunId,
        task: String,
        offset: u32,
        limit: u32,
        reply: oneshot::Sender<Result<InstancePage, Error>>,
    },
    /// A new run of a finished one from a task on.
    Rerun {
        run: RunId,
        from: String,
        reply: oneshot::Sender<Result<RunId, Error>>,
    },
    /// Runs another instance now owns.
    Release {
        runs: Vec<RunId>,
        reply: oneshot::Sender<usize>,
    },
    /// A submitted run's creation is durable: it may start.
    Admit {
        run: RunId,
        slot: u32,
    },
    Shutdown {
        reply: oneshot::Sender<Result<(), Error>>,
    },
}

/// An agent call's end, sent back by its spawned future (or made inline).
pub(crate) struct Done {
    run: RunId,
    slot: u32,
    task: u32,
    attempt: u32,
    comp_of: u32,
    item: u32,
    agent: u16,
    spawned: bool,
    finished: Instant,
    outcome: Outcome,
}

/// A unit of dispatch: a task attempt, or a compensation attempt (`comp_of` is the
/// task being undone; `task` is then the compensation task, or `comp_of` itself for
/// an action). A fan-out's instances are jobs of their task with an `item`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Job {
    run: RunId,
    slot: u32,
    task: u32,
    attempt: u32,
    comp_of: u32,
    item: u32,
}

impl Job {
    /// A task's next forward attempt.
    fn forward(run: RunId, slot: u32, task: u32, attempt: u32) -> Job {
        Job {
            run,
            slot,
            task,
            attempt,
            comp_of: FORWARD,
            item: NO_ITEM,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct TaskState {
    deps_left: u32,
    status: TaskStatus,
    agent: u16,
    attempt: u32,
    /// Nanoseconds since the run's start.
    ready_at: u64,
    dispatched_at: u64,
    finished_at: u64,
}

struct Run {
    id: RunId,
    spec: Arc<Spec>,
    /// Spec-local agent index → registry index.
    agents: Arc<[u16]>,
    status: RunStatus,
    input: Arc<Value>,
    created_ms: u64,
    submitted: Instant,
    base: Option<Instant>,
    tasks: Vec<TaskState>,
    outputs: Vec<Option<Arc<Value>>>,
    errors: HashMap<u32, Arc<str>>,
    events: HashMap<u32, Value>,
    unfinished: u32,
    skipped_any: bool,
    parked: Vec<Job>,
    retries: u64,
    compensations: u64,
    compensation_failures: Vec<String>,
    undo_queue: VecDeque<u32>,
    failed: bool,
    cancelled: bool,
    reason: Option<String>,
    waiters: Vec<oneshot::Sender<Result<Arc<Summary>, Error>>>,
    ended: Option<Instant>,
    summary: Option<Arc<Summary>>,
    /// Fan-outs whose instances are running, by task (empty in static runs).
    fanouts: HashMap<u32, FanOut>,
    /// Fan-outs and loops that ended, by task, kept for status and instance
    /// pages (a fan-out that succeeded keeps its outputs in the task's output).
    ended_fanouts: HashMap<u32, FanOut>,
    /// Instances that had ended when the run was rebuilt from its records, by
    /// task: taken when the fan-out starts again.
    recovered: HashMap<u32, Vec<ItemEnd>>,
    /// The job (task, attempt, and a loop's iteration) of the run that started
    /// this one as its child.
    parent: Option<Job>,
    /// Child runs in progress, by the task that started each and the
    /// instance that did (`NO_ITEM` for the task itself; otherwise a loop's
    /// iteration, or a hierarchical supervisor's call to a team, several of
    /// which may run at once).
    children: HashMap<(u32, u32), RunId>,
    /// Child runs that completed, by the task that started them (one per
    /// loop iteration), oldest first: a compensation of the run reopens them
    /// to run theirs.
    done_children: HashMap<u32, Vec<RunId>>,
    /// The finished run this one reran.
    rerun_of: Option<RunId>,
    /// Fan-out items and loop iterations started (bounded by
    /// `Options::max_instances`).
    started_instances: u64,
    /// For a child run, when its parent started it, until its first task is
    /// dispatched (the child start figure).
    child_from: Option<Instant>,
    /// Network patterns in progress, by task: who takes each turn.
    rounds: HashMap<u32, patterns::Rounds>,
    /// Tokens its calls' models used: prompt, answer.
    tokens: [u64; 2],
}

struct AgentSlot {
    name: String,
    kind: String,
    concurrency: u32,
    in_flight: u32,
    calls: u64,
    failures: u64,
    breaker: Option<Breaker>,
    runner: Arc<dyn crate::agent::Runner>,
    waiting: VecDeque<Job>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    Retry,
    WaitTimeout,
    /// A call's coalescing window for progress ended.
    Progress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    seq: u64,
    kind: TimerKind,
    job: Job,
}

struct Waiter {
    run: RunId,
    slot: u32,
    task: u32,
    attempt: u32,
    topic: Arc<str>,
}

/// A call waiting for a person's answer: a `baton.input` event with its
/// `key` on `topic`, published after the question was asked.
struct Question {
    job: Job,
    topic: Arc<str>,
    key: String,
    asked_ms: u64,
    reply: oneshot::Sender<Value>,
}

struct Signal {
    event: Event,
    payload: Option<Value>,
}

/// What a turn produced, in order: written to the store and published as one batch.
enum Out {
    Workflow {
        key: u128,
        document: Arc<str>,
    },
    Created {
        run: RunId,
        key: u128,
        input: Arc<Value>,
        at_ms: u64,
        rerun_of: Option<RunId>,
    },
    Task(Transition),
    /// A fan-out's instance ended.
    Item {
        run: RunId,
        task: u32,
        item: u32,
        status: TaskStatus,
        attempt: u32,
        agent: u16,
        at_us: u64,
        detail: Option<Detail>,
    },
    Run {
        run: RunId,
        status: RunStatus,
        at_ms: u64,
        reason: Option<String>,
    },
    /// An event about a run that is not a record: what it decided (a
    /// fan-out's size, a route: `baton.decision`), or what an agent has so
    /// far (`baton.progress`).
    Event {
        run: RunId,
        kind: &'static str,
        payload: String,
    },
}

struct Transition {
    run: RunId,
    task: u32,
    status: TaskStatus,
    attempt: u32,
    agent: u16,
    at_us: u64,
    detail: Option<Detail>,
}

enum Detail {
    Output(Arc<Value>),
    Error(Arc<str>),
}

impl Detail {
    /// As stored: the output's JSON text, or the error message.
    fn text(&self) -> String {
        match self {
            Detail::Output(v) => v.to_string(),
            Detail::Error(e) => e.to_string(),
        }
    }
}

/// A turn's output on its way to the sink.
struct Batch {
    out: Vec<Out>,
    acks: Vec<(usize, Ack)>,
}

/// Replies that wait for their records to be durable.
enum Ack {
    Submitted(oneshot::Sender<Result<RunId, Error>>, RunId, u32),
    Finished(
        Vec<oneshot::Sender<Result<Arc<Summary>, Error>>>,
        Arc<Summary>,
    ),
}

pub(crate) struct Scheduler {
    options: Options,
    /// Requests from handles and signal readers: bounded ([`Options::queue`]).
    rx: mpsc::Receiver<Msg>,
    tx: mpsc::Sender<Msg>,
    /// Outcomes of the engine's own work (calls done, runs durable, the store
    /// failing): never waits, at most one per call or submission in flight.
    outcomes: mpsc::UnboundedReceiver<Msg>,
    outcomes_tx: mpsc::UnboundedSender<Msg>,
    /// Calls whose progress reports are being coalesced.
    windows: HashMap<progress::CallKey, progress::Window>,
    /// Batches handed to the sink that it has not taken yet.
    sink_behind: Arc<AtomicUsize>,
    log: Arc<dyn DynLog>,
    store: Option<Arc<dyn DynStore>>,
    progress: Arc<Progress>,
    runs: Vec<Option<Run>>,
    free: Vec<u32>,
    by_id: HashMap<RunId, u32>,
    finished: HashMap<RunId, Run>,
    finished_order: VecDeque<RunId>,
    admit: VecDeque<u32>,
    ready: VecDeque<Job>,
    newly_ready: Vec<(u32, u32, Instant)>,
    agents: Vec<AgentSlot>,
    registry: HashMap<(Option<String>, String, String), u16>,
    spec_agents: HashMap<u64, Arc<[u16]>>,
    written: foldhash::HashSet<u128>,
    timers: BinaryHeap<Reverse<Timer>>,
    timer_seq: u64,
    /// Calls in flight by (run, task, compensated task, item).
    inflight: HashMap<(RunId, u32, u32, u32), (AbortHandle, u16)>,
    waiters: Vec<Waiter>,
    questions: Vec<Question>,
    signals: HashMap<Arc<str>, VecDeque<Signal>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    out: Vec<Out>,
    acks: Vec<(usize, Ack)>,
    sink: Option<(mpsc::UnboundedSender<Batch>, oneshot::Receiver<()>)>,
    rng: Rng,
    last_id: u64,
    dispatch_hist: Histogram<u64>,
    release_hist: Histogram<u64>,
    /// A decision (route chosen, loop iteration decided) → the task or
    /// iteration it started dispatched.
    decision_hist: Histogram<u64>,
    /// A task's child run started → the child's first task dispatched.
    child_hist: Histogram<u64>,
    transitions: u64,
    ended: [u64; 3],
    store_failed: Option<String>,
    counts: Counts,
}

/// Progress counted since the last flush (`running` may go below zero).
#[derive(Default)]
struct Counts {
    running: i64,
    succeeded: u64,
    failed: u64,
    skipped: u64,
    instances: u64,
    instances_done: u64,
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl Scheduler {
    pub(crate) fn new<L: EventLog, S: StateStore>(
        options: Options,
        rx: mpsc::Receiver<Msg>,
        tx: mpsc::Sender<Msg>,
        log: Arc<L>,
        store: Option<Arc<S>>,
        progress: Arc<Progress>,
    ) -> Result<(Scheduler, Vec<RunId>), Error> {
        let records = match &store {
            Some(s) => s.load()?,
            None => Vec::new(),
        };
        let rng = Rng(options.seed);
        let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
        let mut s = Scheduler {
            options,
            rx,
            tx,
            outcomes,
            outcomes_tx,
            windows: HashMap::new(),
            sink_behind: Arc::new(AtomicUsize::new(0)),
            log,
            store: store.map(|s| s as Arc<dyn DynStore>),
            progress,
            runs: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            admit: VecDeque::new(),
            ready: VecDeque::new(),
            newly_ready: Vec::new(),
            agents: Vec::new(),
            registry: HashMap::new(),
            spec_agents: HashMap::new(),
            written: Default::default(),
            timers: BinaryHeap::new(),
            timer_seq: 0,
            inflight: HashMap::new(),
            waiters: Vec::new(),
            questions: Vec::new(),
            signals: HashMap::new(),
            readers: Vec::new(),
            out: Vec::new(),
            acks: Vec::new(),
            sink: None,
            rng,
            last_id: 0,
            dispatch_hist: histogram(),
            release_hist: histogram(),
            decision_hist: histogram(),
            child_hist: histogram(),
            transitions: 0,
            ended: [0; 3],
            store_failed: None,
            counts: Counts::default(),
        };
        let which = if s.options.remember_finished {
            recovery::Rebuild::All
        } else {
            recovery::Rebuild::Unfinished
        };
        let mut resumed = s.recover(records, which)?;
        // Child runs resume with their parents: callers wait for the parents.
        resumed.retain(|id| {
            let run = s
                .by_id
                .get(id)
                .and_then(|&slot| s.runs[slot as usize].as_ref());
            run.is_none_or(|r| r.parent.is_none())
        });
        Ok((s, resumed))
    }

    pub(crate) async fn run(mut self) {
        let (tx, rx) = mpsc::unbounded_channel();
        let log = self
            .options
            .publish
            .then(|| (self.log.clone(), self.options.topic.clone()));
        // On a multi-thread runtime the sink gets a thread of its own: on a busy
        // scheduler's worker it would wait (a task spawned there is not stolen by
        // the other workers at once), and its work (encoding, publishing) is what
        // runs in parallel with scheduling. A current-thread runtime (tests with
        // paused time) keeps everything on its one thread.
        let (store, scheduler) = (self.store.clone(), self.outcomes_tx.clone());
        let behind = self.sink_behind.clone();
        let runtime = tokio::runtime::Handle::current();
        let (ended, ended_rx) = oneshot::channel();
        let work = async move {
            sink::run(rx, store, log, scheduler, behind).await;
            let _ = ended.send(());
        };
        if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
            tokio::spawn(work);
        } else {
            std::thread::Builder::new()
                .name("baton-sink".into())
                .spawn(move || runtime.block_on(work))
                .expect("cannot start the engine's sink thread");
        }
        self.sink = Some((tx, ended_rx));
        let mut shutdown = None;
        'outer: loop {
            let busy = self.pump();
            self.flush();
            if busy {
                // A long turn gives the runtime's other tasks their chance.
                tokio::task::yield_now().await;
            } else {
                let next = self.timers.peek().map(|Reverse(t)| t.at);
                let open = self.taking_requests();
                let msg = tokio::select! {
                    biased;
                    Some(m) = self.outcomes.recv() => Some(m),
                    m = self.rx.recv(), if open => match m {
                        Some(m) => Some(m),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => None,
                    // Requests wait while the sink catches up: look again soon.
                    _ = tokio::time::sleep(SINK_WAIT), if !open => None,
                };
                if let Some(m) = msg
                    && let Err(reply) = self.handle(m)
                {
                    shutdown = Some(reply);
                    break;
                }
            }
            // What the engine's own work produced goes first, then requests.
            while let Ok(m) = self.outcomes.try_recv() {
                if let Err(reply) = self.handle(m) {
                    shutdown = Some(reply);
                    break 'outer;
                }
            }
            if self.taking_requests() {
                for _ in 0..4096 {
                    match self.rx.try_recv() {
                        Ok(m) => {
                            if let Err(reply) = self.handle(m) {
                                shutdown = Some(reply);
                                break 'outer;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            self.fire_timers();
        }
        self.flush();
        for (_, (abort, _)) in self.inflight.drain() {
            abort.abort();
        }
        for reader in self.readers.drain(..) {
            reader.abort();
        }
        if let Some((tx, ended)) = self.sink.take() {
            drop(tx);
            let _ = ended.await;
        }
        let closed = match &self.store {
            Some(store) => store.close().await.map_err(Error::from),
            None => Ok(()),
        };
        if let Some(reply) = shutdown {
            let _ = reply.send(closed);
        }
    }

    /// Whether requests are taken: not while the sink is more than
    /// [`SINK_BACKLOG`](crate::SINK_BACKLOG) turns behind (the bounded request
    /// queue then makes senders wait).
    fn taking_requests(&self) -> bool {
        self.sink_behind.load(Ordering::Relaxed) <= crate::SINK_BACKLOG
    }

    /// Handles one message; `Err` carries the reply of a shutdown request.
    #[allow(clippy::result_large_err)]
    fn handle(&mut self, msg: Msg) -> Result<(), oneshot::Sender<Result<(), Error>>> {
        match msg {
            Msg::Submit { spec, input, reply } => self.submit(spec, input, reply),
            Msg::Done(done) => self.complete(done),
            Msg::Control { run, op, reply } => {
                let _ = reply.send(self.control(run, op));
            }
            Msg::Status { run, reply } => {
                let _ = reply.send(self.view(run));
            }
            Msg::Spec { run, reply } => {
                let spec = match self.by_id.get(&run) {
                    Some(&slot) => self.runs[slot as usize].as_ref().map(|r| r.spec.clone()),
                    None => self.finished.get(&run).map(|r| r.spec.clone()),
                };
                let _ = reply.send(spec.ok_or(Error::UnknownRun(run)));
            }
            Msg::Wait { run, reply } => self.wait(run, reply),
            Msg::Active { reply } => {
                let mut ids: Vec<RunId> = self.by_id.keys().copied().collect();
                ids.sort();
                let _ = reply.send(ids);
            }
            Msg::List { query, reply } => {
                let _ = reply.send(self.list(&query));
            }
            Msg::Stats {
                with_latencies,
                reply,
            } => {
                let mut stats = self.stats();
                if with_latencies {
                    stats.dispatch_histogram = Some(self.dispatch_hist.clone());
                }
                let _ = reply.send(stats);
            }
            Msg::Signals { topic, events } => self.signals(&topic, events),
            Msg::Report { job, report } => self.report(job, report, Instant::now()),
            Msg::StoreFailed(message) => self.store_failed = Some(message),
            Msg::Adopt {
                records,
                remember,
                reply,
            } => {
                let which = if remember {
                    recovery::Rebuild::Finished
                } else {
                    recovery::Rebuild::Unfinished
                };
                let _ = reply.send(self.recover(records, which));
            }
            Msg::Rerun { run, from, reply } => self.rerun(run, &from, reply),
            Msg::Instances {
                run,
                task,
                offset,
                limit,
                reply,
            } => {
                let _ = reply.send(self.instances(run, &task, offset, limit));
            }
            Msg::Release { runs, reply } => {
                let _ = reply.send(self.release(&runs));
            }
            Msg::Admit { run, slot } => {
                if self.run_mut(slot, run).is_some() {
                    self.admit.push_back(slot);
                }
            }
            Msg::Shutdown { reply } => return Err(reply),
        }
        Ok(())
    }

    // ----- runs -------------------------------------------------------------

    /// 42 bits of milliseconds, then 10 bits of instance number (random for a
    /// single instance) and a 12-bit counter for runs of the same millisecond.
    fn next_id(&mut self) -> RunId {
        let middle = match self.options.node {
            Some(node) => u64::from(node & 0x3ff) << 12,
            None => self.rng.next_u64() & 0x3f_f000,
        };
        let mut id = ((now_ms() << 22) | middle).max(self.last_id + 1);
        if self.options.node.is_some() && id & 0x3f_f000 != middle {
            // The counter overflowed into the instance bits: borrow the next millisecond.
            id = (((id >> 22) + 1) << 22) | middle;
        }
        self.last_id = id;
        RunId(id)
    }

    /// Forgets runs another instance now drives. Their agent calls in flight end
    /// unnoticed (a call's end is matched to its run by id); nothing more is
    /// recorded for them.
    fn release(&mut self, ids: &[RunId]) -> usize {
        let mut released = 0;
        for &id in ids {
            let Some(slot) = self.by_id.remove(&id) else {
                continue;
            };
            if let Some(run) = self.runs[slot as usize].take() {
                for w in run.waiters {
                    let _ = w.send(Err(Error::Moved(id)));
                }
                self.admit.retain(|&s| s != slot);
                self.free.push(slot);
                released += 1;
                tracing::warn!(run = %id, "run released: another instance owns it now");
            }
        }
        released
    }

    fn resolve_agents(&mut self, spec: &Spec) -> Arc<[u16]> {
        if let Some(a) = self.spec_agents.get(&spec.id) {
            return a.clone();
        }
        let mut map = Vec::with_capacity(spec.agents.len());
        // Tenants never share an agent's concurrency or breaker: a tenant's
        // agents are named `<tenant>/<agent>` here (and in figures).
        let tenant = spec.workflow.tenant.as_deref();
        for decl in spec.agents.iter() {
            let identity = (
                tenant.map(str::to_string),
                decl.agent.name.clone(),
                serde_json::to_string(&decl.agent).unwrap_or_default(),
            );
            let index = match self.registry.get(&identity) {
                Some(&i) => i,
                None => {
                    let i = self.agents.len().min(usize::from(NO_AGENT) - 1) as u16;
                    let breaker = (decl.agent.kind != "noop")
                        .then(|| Breaker::new(decl.agent.breaker.unwrap_or_default()));
                    self.agents.push(AgentSlot {
                        name: crate::agent::worker::queue(tenant, &decl.agent.name),
                        kind: decl.agent.kind.clone(),
                        concurrency: decl.agent.concurrency.unwrap_or(u32::MAX),
                        in_flight: 0,
                        calls: 0,
                        failures: 0,
                        breaker,
                        runner: decl.runner.clone(),
                        waiting: VecDeque::new(),
                    });
                    self.registry.insert(identity, i);
                    i
                }
            };
            map.push(index);
        }
        let map: Arc<[u16]> = map.into();
        self.spec_agents.insert(spec.id, map.clone());
        map
    }

    fn new_run(&mut self, id: RunId, spec: Arc<Spec>, input: Arc<Value>, created_ms: u64) -> u32 {
        let agents = self.resolve_agents(&spec);
        let n = spec.tasks.len();
        let tasks = spec
            .tasks
            .iter()
            .map(|t| TaskState {
                deps_left: t.deps,
                status: TaskStatus::Pending,
                agent: NO_AGENT,
                attempt: 0,
                ready_at: 0,
                dispatched_at: 0,
                finished_at: 0,
            })
            .collect();
        self.progress
            .total
            .fetch_add(u64::from(spec.planned), Ordering::Relaxed);
        let run = Run {
            id,
            unfinished: spec.planned,
            spec,
            agents,
            status: RunStatus::Running,
            input,
            created_ms,
            submitted: Instant::now(),
            base: None,
            tasks,
            outputs: vec![None; n],
            errors: HashMap::new(),
            events: HashMap::new(),
            skipped_any: false,
            parked: Vec::new(),
            retries: 0,
            compensations: 0,
            compensation_failures: Vec::new(),
            undo_queue: VecDeque::new(),
            failed: false,
            cancelled: false,
            reason: None,
            waiters: Vec::new(),
            ended: None,
            summary: None,
            fanouts: HashMap::new(),
            ended_fanouts: HashMap::new(),
            rerun_of: None,
            started_instances: 0,
            child_from: None,
            recovered: HashMap::new(),
            parent: None,
            children: HashMap::new(),
            done_children: HashMap::new(),
            rounds: HashMap::new(),
            tokens: [0; 2],
        };
        self.place(run)
    }

    /// Puts a run in a free slot (or a new one) and indexes it.
    fn place(&mut self, run: Run) -> u32 {
        let id = run.id;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.runs[slot as usize] = Some(run);
                slot
            }
            None => {
                self.runs.push(Some(run));
                (self.runs.len() - 1) as u32
            }
        };
        self.by_id.insert(id, slot);
        slot
    }

    fn submit(
        &mut self,
        spec: Arc<Spec>,
        input: Value,
        reply: oneshot::Sender<Result<RunId, Error>>,
    ) {
        self.create(spec, input, None, reply);
    }

    /// Creates a run (recorded, then admitted once durable), a rerun of
    /// `rerun_of` when given; `None` when the store failed (the reply says so).
    fn create(
        &mut self,
        spec: Arc<Spec>,
        input: Value,
        rerun_of: Option<RunId>,
        reply: oneshot::Sender<Result<RunId, Error>>,
    ) -> Option<(RunId, u32)> {
        if let Some(message) = &self.store_failed {
            let _ = reply.send(Err(Error::Store(store::Error::Closed(Some(
                message.clone(),
            )))));
            return None;
        }
        let id = self.next_id();
        let created_ms = now_ms();
        let input = Arc::new(input);
        // Without a store, nothing reads the document: do not serialize it.
        let key = match &self.store {
            Some(_) => {
                let (key, document) = spec.stored().clone();
                if self.written.insert(key) {
                    self.out.push(Out::Workflow { key, document });
                }
                key
            }
            None => 0,
        };
        self.out.push(Out::Created {
            run: id,
            key,
            input: input.clone(),
            at_ms: created_ms,
            rerun_of,
        });
        let slot = self.new_run(id, spec, input, created_ms);
        if let Some(run) = self.runs[slot as usize].as_mut() {
            run.rerun_of = rerun_of;
        }
        self.acks
            .push((self.out.len() - 1, Ack::Submitted(reply, id, slot)));
        if self.store.is_none() {
            self.admit.push_back(slot);
        }
        Some((id, slot))
    }

    /// Starts an admitted run: its ready tasks enter the queue.
    fn start(&mut self, slot: u32) {
        let now = Instant::now();
        let Some(run) = self.runs[slot as usize].as_mut() else {
            return;
        };
        // A child run starts at once (see `start_child`); its admission
        // afterwards finds it started.
        if run.status.is_final() || run.base.is_some() {
            return;
        }
        run.base = Some(now);
        let spec = run.spec.clone();
        let resumed = run.tasks.iter().any(|t| t.status != TaskStatus::Pending);
        if run.status == RunStatus::Compensating || (run.failed && run.undo_queue.is_empty()) {
            self.next_compensation(slot);
        } else if resumed {
            for &t in spec.plan.order() {
                let state = &run.tasks[t as usize];
                if state.status == TaskStatus::Pending && state.deps_left == 0 {
                    self.newly_ready.push((slot, t, now));
                }
            }
        } else {
            for &t in spec.roots.iter() {
                self.newly_ready.push((slot, t, now));
            }
        }
        self.drain_newly_ready();
        self.check_done(slot);
    }

    fn run_mut(&mut self, slot: u32, id: RunId) -> Option<&mut Run> {
        self.runs
            .get_mut(slot as usize)?
            .as_mut()
            .filter(|r| r.id == id)
    }

    fn at_ns(run: &Run, now: Instant) -> u64 {
        run.base.map_or(0, |b| ns(now.saturating_duration_since(b)))
    }

    fn transition(
        &mut self,
        slot: u32,
        task: u32,
        status: TaskStatus,
        detail: Option<Detail>,
        now: Instant,
    ) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let at = Self::at_ns(run, now);
        let state = &mut run.tasks[task as usize];
        let before = state.status;
        state.status = status;
        // Counted here, published to the shared `Progress` at each flush: an
        // atomic per transition would cost more than the transition.
        let c = &mut self.counts;
        if matches!(before, TaskStatus::Dispatched | TaskStatus::Running) {
            c.running -= 1;
        }
        match status {
            TaskStatus::Dispatched | TaskStatus::Running => c.running += 1,
            TaskStatus::Succeeded
            | TaskStatus::Failed
            | TaskStatus::Skipped
            | TaskStatus::Cancelled
                if !run.spec.plan.is_handler(task) =>
            {
                match status {
                    TaskStatus::Succeeded => c.succeeded += 1,
                    TaskStatus::Failed => c.failed += 1,
                    _ => c.skipped += 1,
                }
            }
            _ => {}
        }
        if let Some(Detail::Error(e)) = &detail {
            run.errors.insert(task, e.clone());
        }
        self.transitions += 1;
        self.out.push(Out::Task(Transition {
            run: run.id,
            task,
            status,
            // A ready task waits for its next attempt; other states belong to the
            // attempt made (or failed) last.
            attempt: if status == TaskStatus::Ready {
                state.attempt + 1
            } else {
                state.attempt
            },
            agent: state.agent,
            at_us: at / 1000,
            detail,
        }));
    }

    /// Tasks whose dependencies are done: decide skip or ready, until none is left
    /// (a skip may release further tasks; a worklist, not recursion, so a long chain
    /// of skips cannot exhaust the stack).
    fn drain_newly_ready(&mut self) {
        while let Some((slot, task, since)) = self.newly_ready.pop() {
            self.make_ready(slot, task, since);
        }
    }

    fn make_ready(&mut self, slot: u32, task: u32, since: Instant) {
        let now = Instant::now();
        let Some(run) = self.runs[slot as usize].as_mut() else {
            return;
        };
        if run.status != RunStatus::Running && run.status != RunStatus::Paused {
            return;
        }
        let flags = run.spec.tasks[task as usize].flags;
        let off_route = if flags & ON_ROUTE != 0 {
            off_route(run, task)
        } else {
            None
        };
        if let Some(reason) = off_route {
            self.finish(
                slot,
                task,
                TaskStatus::Skipped,
                Some(Detail::Error(reason.into())),
                now,
            );
            return;
        }
        let skip = if flags & CONDITION != 0 {
            let spec = run.spec.clone();
            let cond = spec.workflow.tasks[task as usize].condition.as_deref();
            !cond.is_some_and(|c| c.expr.eval(&|r: &Reference| resolve(run, r)))
        } else {
            run.skipped_any
                && run
                    .spec
                    .plan
                    .preds(task)
                    .iter()
                    .any(|&p| run.tasks[p as usize].status == TaskStatus::Skipped)
        };
        if skip {
            self.finish(slot, task, TaskStatus::Skipped, None, now);
            return;
        }
        let at = Self::at_ns(run, now);
        run.tasks[task as usize].ready_at = at;
        self.release_hist
            .saturating_record(ns(now.saturating_duration_since(since)).max(1));
        self.transition(slot, task, TaskStatus::Ready, None, now);
        if flags & FAN_OUT != 0 && self.expand(slot, task, now) {
            return;
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let attempt = run.tasks[task as usize].attempt + 1;
        let job = Job::forward(run.id, slot, task, attempt);
        if flags & WAIT_FOR != 0 {
            let spec = run.spec.clone();
            if let Some(filter) = spec.workflow.tasks[task as usize].wait_for.as_deref() {
                self.wait_for(job, filter);
            }
        } else if run.status == RunStatus::Paused {
            run.parked.push(job);
        } else {
            self.ready.push_back(job);
        }
    }

    /// Marks a task finished; releases its successors when it succeeded or was
    /// skipped. Only the task's successors are touched.
    fn finish(
        &mut self,
        slot: u32,
        task: u32,
        status: TaskStatus,
        detail: Option<Detail>,
        now: Instant,
    ) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let at = Self::at_ns(run, now);
        let state = &mut run.tasks[task as usize];
        state.finished_at = at;
        if matches!(status, TaskStatus::Skipped) {
            state.dispatched_at = at;
            state.ready_at = state.ready_at.min(at);
        }
        if let Some(Detail::Output(v)) = &detail {
            run.outputs[task as usize] = Some(v.clone());
        }
        let handler = run.spec.plan.is_handler(task);
        self.transition(slot, task, status, detail, now);
        if handler {
            return;
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        run.unfinished -= 1;
        if matches!(status, TaskStatus::Succeeded | TaskStatus::Skipped) {
            if status == TaskStatus::Skipped {
                run.skipped_any = true;
            }
            let (plan, tasks) = (&run.spec.plan, &mut run.tasks);
            for &succ in plan.succs(task) {
                let s = &mut tasks[succ as usize];
                s.deps_left -= 1;
                if s.deps_left == 0 {
                    self.newly_ready.push((slot, succ, now));
                }
            }
        }
    }

    fn check_done(&mut self, slot: u32) {
        let Some(run) = self.runs[slot as usize].as_ref() else {
            return;
        };
        if run.unfinished == 0 && matches!(run.status, RunStatus::Running | RunStatus::Paused) {
            self.end(slot);
        }
    }

    /// Ends a run: what never ran is cancelled, the summary is computed, waiters are
    /// answered once the end is durable.
    fn end(&mut self, slot: u32) {
        let now = Instant::now();
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let status = if run.cancelled {
            RunStatus::Cancelled
        } else if run.failed {
            RunStatus::Failed
        } else {
            RunStatus::Completed
        };
        let spec = run.spec.clone();
        let open: Vec<u32> = spec
            .plan
            .order()
            .iter()
            .copied()
            .filter(|&t| !run.tasks[t as usize].status.is_final())
            .collect();
        for t in open {
            self.finish(slot, t, TaskStatus::Cancelled, None, now);
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        run.status = status;
        run.ended = Some(now);
        if run.base.is_none() {
            run.base = Some(now);
        }
        let summary = Arc::new(summarize(run));
        run.summary = Some(summary.clone());
        let waiters = std::mem::take(&mut run.waiters);
        let id = run.id;
        let reason = run.reason.clone();
        self.ended[match status {
            RunStatus::Completed => 0,
            RunStatus::Failed => 1,
            _ => 2,
        }] += 1;
        // A child's parent task ends first: once the child's end is durable,
        // so is what its parent made of it.
        if let Some(parent) = run.parent {
            let end = children::child_end(run, status);
            self.child_ended(parent, end, now);
        }
        self.out.push(Out::Run {
            run: id,
            status,
            at_ms: now_ms(),
            reason,
        });
        self.acks
            .push((self.out.len() - 1, Ack::Finished(waiters, summary)));
        self.retire(slot, id);
    }

    /// Frees an ended run's slot and keeps the run for status queries (the
    /// newest `keep_finished` of them).
    fn retire(&mut self, slot: u32, id: RunId) {
        let run = self.runs[slot as usize].take().expect("live run");
        self.free.push(slot);
        self.by_id.remove(&id);
        self.finished.insert(id, run);
        self.finished_order.push_back(id);
        while self.finished_order.len() > self.options.keep_finished {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }

    // ----- dispatch ---------------------------------------------------------

    // ----- events (`wait_for`) ----------------------------------------------

    // ----- control and queries ----------------------------------------------

    fn control(&mut self, id: RunId, op: Op) -> Result<(), Error> {
        let Some(&slot) = self.by_id.get(&id) else {
            return match self.finished.get(&id) {
                Some(run) => Err(Error::Conflict {
                    run: id,
                    status: run.status,
                    op: op.name(),
                }),
                None => Err(Error::UnknownRun(id)),
            };
        };
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let name = op.name();
        let conflict = |status| Error::Conflict {
            run: id,
            status,
            op: name,
        };
        match (op, run.status) {
            (Op::Pause, RunStatus::Running) => {
                run.status = RunStatus::Paused;
                self.out.push(Out::Run {
                    run: id,
                    status: RunStatus::Paused,
                    at_ms: now_ms(),
                    reason: None,
                });
                self.control_children(slot, || Op::Pause);
                Ok(())
            }
            (Op::Pause, RunStatus::Paused) | (Op::Resume, RunStatus::Running) => Ok(()),
            (Op::Resume, RunStatus::Paused) => {
                run.status = RunStatus::Running;
                let parked = std::mem::take(&mut run.parked);
                self.ready.extend(parked);
                self.out.push(Out::Run {
                    run: id,
                    status: RunStatus::Running,
                    at_ms: now_ms(),
                    reason: None,
                });
                self.control_children(slot, || Op::Resume);
                self.check_done(slot);
                Ok(())
            }
            (Op::Cancel, RunStatus::Running | RunStatus::Paused) => {
                if run.status == RunStatus::Paused {
                    run.status = RunStatus::Running;
                    run.parked.clear();
                }
                self.fail_run(slot, CANCELLED.into(), true);
                Ok(())
            }
            (_, status) => Err(conflict(status)),
        }
    }

    fn wait(&mut self, id: RunId, reply: oneshot::Sender<Result<Arc<Summary>, Error>>) {
        if let Some(&slot) = self.by_id.get(&id) {
            self.runs[slot as usize]
                .as_mut()
                .expect("live run")
                .waiters
                .push(reply);
            return;
        }
        let _ = reply.send(
            match self.finished.get(&id).and_then(|r| r.summary.clone()) {
                Some(summary) => Ok(summary),
                None => Err(Error::UnknownRun(id)),
            },
        );
    }

    // ----- output -----------------------------------------------------------

    // ----- recovery ---------------------------------------------------------
}

/// A condition's reference: an upstream task's status or (part of) its output.
fn resolve(run: &Run, r: &Reference) -> Option<Value> {
    let id = run.spec.plan.id(&r.task)?;
    match &r.field {
        Field::Status => Some(Value::String(run.tasks[id as usize].status.as_str().into())),
        Field::Output(path) => {
            let output = run.outputs[id as usize].as_deref()?;
            baton_model::expr::lookup(output, path).cloned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_costs_at_most_48_bytes_of_run_state() {
        // The per-task state of a run: its `TaskState` and its output slot.
        let per_task = std::mem::size_of::<TaskState>() + std::mem::size_of::<Option<Arc<Value>>>();
        assert!(per_task <= 48, "{per_task} bytes");
    }
}
