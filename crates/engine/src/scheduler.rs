//! The scheduler: one loop that owns every run, the ready queue, the agent
//! registry and the timers. Messages (submissions, agent results, controls,
//! events) arrive on one channel, so their order is kept; each turn of the loop
//! handles what has arrived, fires due timers, dispatches ready tasks, and flushes
//! the turn's transitions to the state store and the event log in one batch.
//!
//! Hot-path rules: tasks are integers; finishing a task touches only its
//! successors; agents that finish at once (`noop`) complete inline, without a
//! spawned task or a channel hop.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use baton_events::{Event, EventLog, Offset, Polled, SeekTo};
use baton_model::expr::{Field, Reference};
use baton_model::generate::Rng;
use baton_model::{Compensation, EventFilter, Format, Source};
use hdrhistogram::Histogram;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::agent::{Call, Failure, Outcome, Started};
use crate::breaker::Breaker;
use crate::engine::{
    AgentStats, Error, Options, Percentiles, Progress, RunView, Stats, Summary, TaskCounts,
    TaskView,
};
use crate::retry;
use crate::spec::{CONDITION, Spec, Undo, WAIT_FOR};
use crate::store::{self, Record, RunId, RunStatus, StateStore, TaskStatus};

type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The reason recorded for a run cancelled on request (recovery reads it back).
const CANCELLED: &str = "cancelled by request";
/// No compensation: a forward job.
const FORWARD: u32 = u32::MAX;
/// No agent.
const NO_AGENT: u16 = u16::MAX;
/// The consumer group the engine reads `wait_for` topics with.
const SIGNAL_GROUP: &str = "baton-engine";
/// Signals kept per topic for tasks that become ready after their event arrived.
const SIGNAL_BUFFER: usize = 10_000;
/// Jobs dispatched in one turn of the loop before it yields.
const PUMP_BUDGET: usize = 65_536;
/// Transitions buffered before a flush in the middle of a turn.
const FLUSH_EVERY: usize = 8192;
/// Bytes of transitions per published event (more go into further events).
const EVENT_BYTES: usize = 256 << 10;

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
    Wait {
        run: RunId,
        reply: oneshot::Sender<Result<Arc<Summary>, Error>>,
    },
    Active {
        reply: oneshot::Sender<Vec<RunId>>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
    Signals {
        topic: Arc<str>,
        events: Vec<Event>,
    },
    StoreFailed(String),
    /// Runs taken over from another instance.
    Adopt {
        records: Vec<Record>,
        remember: bool,
        reply: oneshot::Sender<Result<Vec<RunId>, Error>>,
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
    agent: u16,
    spawned: bool,
    finished: Instant,
    outcome: Outcome,
}

/// A unit of dispatch: a task attempt, or a compensation attempt (`comp_of` is the
/// task being undone; `task` is then the compensation task, or `comp_of` itself for
/// an action).
#[derive(Debug, Clone, Copy)]
struct Job {
    run: RunId,
    slot: u32,
    task: u32,
    attempt: u32,
    comp_of: u32,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Timer {
    at: Instant,
    seq: u64,
    kind: TimerKind,
    run: u64,
    slot: u32,
    task: u32,
    attempt: u32,
    comp_of: u32,
}

struct Waiter {
    run: RunId,
    slot: u32,
    task: u32,
    attempt: u32,
    topic: Arc<str>,
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
    },
    Task(Transition),
    Run {
        run: RunId,
        status: RunStatus,
        at_ms: u64,
        reason: Option<String>,
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

/// A turn's output on its way to the sink.
struct Batch {
    out: Vec<Out>,
    acks: Vec<(usize, Ack)>,
}

/// Writes batches to the store and publishes them to the log, off the scheduler's
/// thread and in order; answers what waited for durability.
async fn sink(
    mut rx: mpsc::UnboundedReceiver<Batch>,
    store: Option<Arc<dyn DynStore>>,
    log: Option<(Arc<dyn DynLog>, String)>,
    scheduler: mpsc::UnboundedSender<Msg>,
) {
    let mut failed: Option<String> = None;
    while let Some(first) = rx.recv().await {
        // Whatever else has queued up goes out with it: one append, one publish.
        let mut batches = vec![first];
        while batches.len() < 64 {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        let mut first_seq = None;
        if let Some(store) = &store
            && failed.is_none()
        {
            let records: Vec<Record> = batches
                .iter()
                .flat_map(|b| b.out.iter().map(record))
                .collect();
            let n = records.len() as u64;
            match store.append(records) {
                Ok(last) => first_seq = Some(last + 1 - n),
                Err(e) => {
                    tracing::error!(error = %e, "the state store failed; no new runs are accepted");
                    failed = Some(e.to_string());
                    let _ = scheduler.send(Msg::StoreFailed(e.to_string()));
                }
            }
        }
        let mut offset = 0u64;
        for batch in &mut batches {
            for (index, ack) in batch.acks.drain(..) {
                match (&store, first_seq) {
                    (Some(store), Some(first)) => {
                        let store = store.clone();
                        let seq = first + offset + index as u64;
                        let scheduler = scheduler.clone();
                        tokio::spawn(async move {
                            let synced = store.sync(seq).await.map_err(Error::from);
                            if let (Ok(()), Ack::Submitted(_, run, slot)) = (&synced, &ack) {
                                let _ = scheduler.send(Msg::Admit {
                                    run: *run,
                                    slot: *slot,
                                });
                            }
                            answer(ack, synced);
                        });
                    }
                    (Some(_), None) => {
                        answer(ack, Err(Error::Store(store::Error::Closed(failed.clone()))))
                    }
                    (None, _) => answer(ack, Ok(())),
                }
            }
            offset += batch.out.len() as u64;
        }
        if let Some((log, topic)) = &log {
            let events: Vec<Event> = batches.iter().flat_map(|b| events(&b.out)).collect();
            if !events.is_empty()
                && let Err(e) = log.publish(topic, events).await
            {
                tracing::warn!(error = %e, topic, "cannot publish run transitions");
            }
        }
    }
}

/// Replies that wait for their records to be durable.
enum Ack {
    Submitted(oneshot::Sender<Result<RunId, Error>>, RunId, u32),
    Finished(
        Vec<oneshot::Sender<Result<Arc<Summary>, Error>>>,
        Arc<Summary>,
    ),
}

trait DynStore: Send + Sync {
    fn append(&self, records: Vec<Record>) -> Result<u64, store::Error>;
    fn sync(&self, seq: u64) -> BoxFut<'_, Result<(), store::Error>>;
    fn close(&self) -> BoxFut<'_, Result<(), store::Error>>;
}

impl<S: StateStore> DynStore for S {
    fn append(&self, records: Vec<Record>) -> Result<u64, store::Error> {
        StateStore::append(self, records)
    }
    fn sync(&self, seq: u64) -> BoxFut<'_, Result<(), store::Error>> {
        Box::pin(StateStore::sync(self, seq))
    }
    fn close(&self) -> BoxFut<'_, Result<(), store::Error>> {
        Box::pin(StateStore::close(self))
    }
}

trait DynLog: Send + Sync {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        batch: Vec<Event>,
    ) -> BoxFut<'a, baton_events::Result<Vec<Offset>>>;
    fn poll<'a>(
        &'a self,
        topic: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFut<'a, baton_events::Result<Polled>>;
    fn ack<'a>(
        &'a self,
        topic: &'a str,
        ids: &'a [Offset],
    ) -> BoxFut<'a, baton_events::Result<usize>>;
    fn seek<'a>(&'a self, topic: &'a str, to: SeekTo) -> BoxFut<'a, baton_events::Result<()>>;
}

impl<L: EventLog> DynLog for L {
    fn publish<'a>(
        &'a self,
        topic: &'a str,
        batch: Vec<Event>,
    ) -> BoxFut<'a, baton_events::Result<Vec<Offset>>> {
        Box::pin(EventLog::publish(self, topic, batch))
    }
    fn poll<'a>(
        &'a self,
        topic: &'a str,
        max: usize,
        wait: Duration,
    ) -> BoxFut<'a, baton_events::Result<Polled>> {
        Box::pin(EventLog::poll(
            self,
            topic,
            SIGNAL_GROUP,
            "engine",
            max,
            wait,
        ))
    }
    fn ack<'a>(
        &'a self,
        topic: &'a str,
        ids: &'a [Offset],
    ) -> BoxFut<'a, baton_events::Result<usize>> {
        Box::pin(EventLog::ack(self, topic, SIGNAL_GROUP, ids))
    }
    fn seek<'a>(&'a self, topic: &'a str, to: SeekTo) -> BoxFut<'a, baton_events::Result<()>> {
        Box::pin(EventLog::seek(self, topic, SIGNAL_GROUP, to))
    }
}

pub(crate) struct Scheduler {
    options: Options,
    rx: mpsc::UnboundedReceiver<Msg>,
    tx: mpsc::UnboundedSender<Msg>,
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
    registry: HashMap<(String, String), u16>,
    spec_agents: HashMap<u64, Arc<[u16]>>,
    written: foldhash::HashSet<u128>,
    timers: BinaryHeap<Reverse<Timer>>,
    timer_seq: u64,
    inflight: HashMap<(RunId, u32, u32), (AbortHandle, u16)>,
    waiters: Vec<Waiter>,
    signals: HashMap<Arc<str>, VecDeque<Signal>>,
    readers: Vec<tokio::task::JoinHandle<()>>,
    out: Vec<Out>,
    acks: Vec<(usize, Ack)>,
    sink: Option<(mpsc::UnboundedSender<Batch>, oneshot::Receiver<()>)>,
    rng: Rng,
    last_id: u64,
    dispatch_hist: Histogram<u64>,
    release_hist: Histogram<u64>,
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
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

fn percentiles(h: &Histogram<u64>) -> Percentiles {
    if h.is_empty() {
        return Percentiles::default();
    }
    Percentiles {
        count: h.len(),
        p50_us: h.value_at_quantile(0.5) as f64 / 1e3,
        p99_us: h.value_at_quantile(0.99) as f64 / 1e3,
        max_us: h.max() as f64 / 1e3,
    }
}

/// What a failed or cancelled run undoes: its succeeded tasks that have a
/// compensation, latest in topological order first.
fn undo_queue(run: &Run) -> VecDeque<u32> {
    let spec = &run.spec;
    spec.plan
        .order()
        .iter()
        .rev()
        .copied()
        .filter(|&t| {
            run.tasks[t as usize].status == TaskStatus::Succeeded
                && spec.tasks[t as usize].undo.is_some()
        })
        .collect()
}

/// Wall-clock time, Unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn ns(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

impl Scheduler {
    pub(crate) fn new<L: EventLog, S: StateStore>(
        options: Options,
        rx: mpsc::UnboundedReceiver<Msg>,
        tx: mpsc::UnboundedSender<Msg>,
        log: Arc<L>,
        store: Option<Arc<S>>,
        progress: Arc<Progress>,
    ) -> Result<(Scheduler, Vec<RunId>), Error> {
        let records = match &store {
            Some(s) => s.load()?,
            None => Vec::new(),
        };
        let rng = Rng(options.seed);
        let mut s = Scheduler {
            options,
            rx,
            tx,
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
            signals: HashMap::new(),
            readers: Vec::new(),
            out: Vec::new(),
            acks: Vec::new(),
            sink: None,
            rng,
            last_id: 0,
            dispatch_hist: histogram(),
            release_hist: histogram(),
            transitions: 0,
            ended: [0; 3],
            store_failed: None,
            counts: Counts::default(),
        };
        let resumed = s.recover(records, false)?;
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
        let (store, scheduler) = (self.store.clone(), self.tx.clone());
        let runtime = tokio::runtime::Handle::current();
        let (ended, ended_rx) = oneshot::channel();
        let work = async move {
            sink(rx, store, log, scheduler).await;
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
                let msg = tokio::select! {
                    m = self.rx.recv() => match m {
                        Some(m) => Some(m),
                        None => break,
                    },
                    _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => None,
                };
                if let Some(m) = msg
                    && let Err(reply) = self.handle(m)
                {
                    shutdown = Some(reply);
                    break;
                }
            }
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
            Msg::Wait { run, reply } => self.wait(run, reply),
            Msg::Active { reply } => {
                let mut ids: Vec<RunId> = self.by_id.keys().copied().collect();
                ids.sort();
                let _ = reply.send(ids);
            }
            Msg::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Msg::Signals { topic, events } => self.signals(topic, events),
            Msg::StoreFailed(message) => self.store_failed = Some(message),
            Msg::Adopt {
                records,
                remember,
                reply,
            } => {
                let _ = reply.send(self.recover(records, remember));
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
        for decl in spec.agents.iter() {
            let identity = (
                decl.agent.name.clone(),
                serde_json::to_string(&decl.agent).unwrap_or_default(),
            );
            let index = match self.registry.get(&identity) {
                Some(&i) => i,
                None => {
                    let i = self.agents.len().min(usize::from(NO_AGENT) - 1) as u16;
                    let breaker = (decl.agent.kind != "noop")
                        .then(|| Breaker::new(decl.agent.breaker.clone().unwrap_or_default()));
                    self.agents.push(AgentSlot {
                        name: decl.agent.name.clone(),
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
        };
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
        if let Some(message) = &self.store_failed {
            let _ = reply.send(Err(Error::Store(store::Error::Closed(Some(
                message.clone(),
            )))));
            return;
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
        });
        let slot = self.new_run(id, spec, input, created_ms);
        self.acks
            .push((self.out.len() - 1, Ack::Submitted(reply, id, slot)));
        if self.store.is_none() {
            self.admit.push_back(slot);
        }
    }

    /// Starts an admitted run: its ready tasks enter the queue.
    fn start(&mut self, slot: u32) {
        let now = Instant::now();
        let Some(run) = self.runs[slot as usize].as_mut() else {
            return;
        };
        if run.status.is_final() {
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
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let attempt = run.tasks[task as usize].attempt + 1;
        let job = Job {
            run: run.id,
            slot,
            task,
            attempt,
            comp_of: FORWARD,
        };
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

    /// A task failed for good, or the run was cancelled: stop what is in flight and
    /// undo what was done, newest first.
    fn fail_run(&mut self, slot: u32, reason: String, cancelled: bool) {
        let now = Instant::now();
        let Some(run) = self.runs[slot as usize].as_mut() else {
            return;
        };
        if run.failed || run.status.is_final() {
            return;
        }
        run.failed = true;
        run.cancelled = cancelled;
        run.reason = Some(reason.clone());
        let id = run.id;
        let started = run.base.is_some();
        // Stop forward calls in flight.
        let stopped: Vec<(u32, u16)> = self
            .inflight
            .iter()
            .filter(|((r, _, comp), _)| *r == id && *comp == FORWARD)
            .map(|((_, t, _), (_, a))| (*t, *a))
            .collect();
        for (task, agent) in stopped {
            if let Some((abort, _)) = self.inflight.remove(&(id, task, FORWARD)) {
                abort.abort();
                self.release_agent(agent);
                self.finish(slot, task, TaskStatus::Cancelled, None, now);
            }
        }
        self.waiters.retain(|w| w.run != id);
        let run = self.runs[slot as usize].as_mut().expect("live run");
        run.undo_queue = undo_queue(run);
        if !run.undo_queue.is_empty() {
            run.status = RunStatus::Compensating;
            self.out.push(Out::Run {
                run: id,
                status: RunStatus::Compensating,
                at_ms: now_ms(),
                reason: Some(reason),
            });
            if started {
                self.next_compensation(slot);
            }
        } else {
            self.end(slot);
        }
    }

    fn next_compensation(&mut self, slot: u32) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        match run.undo_queue.pop_front() {
            Some(orig) => {
                let task = match run.spec.tasks[orig as usize].undo {
                    Some(Undo::Task(h)) => h,
                    _ => orig,
                };
                let job = Job {
                    run: run.id,
                    slot,
                    task,
                    attempt: 1,
                    comp_of: orig,
                };
                self.ready.push_back(job);
            }
            None => self.end(slot),
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
        self.ended[match status {
            RunStatus::Completed => 0,
            RunStatus::Failed => 1,
            _ => 2,
        }] += 1;
        self.out.push(Out::Run {
            run: id,
            status,
            at_ms: now_ms(),
            reason: run.reason.clone(),
        });
        self.acks
            .push((self.out.len() - 1, Ack::Finished(waiters, summary)));
        // Retire the run: free its slot, keep it for status queries.
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

    /// Dispatches ready tasks; `true` when it stopped with work left (its budget
    /// spent), so the loop can yield before going on.
    fn pump(&mut self) -> bool {
        for _ in 0..PUMP_BUDGET {
            while self.ready.len() < self.options.admit_below {
                match self.admit.pop_front() {
                    Some(slot) => self.start(slot),
                    None => break,
                }
            }
            // Bounded batches: memory stays flat and the store and log see a
            // steady stream even when one turn runs a million inline tasks.
            if self.out.len() >= FLUSH_EVERY {
                self.flush();
            }
            match self.ready.pop_front() {
                Some(job) => self.dispatch(job),
                None => {
                    if self.admit.is_empty() {
                        return false;
                    }
                }
            }
        }
        !self.ready.is_empty() || !self.admit.is_empty()
    }

    fn dispatch(&mut self, job: Job) {
        let now = Instant::now();
        let Some(run) = self.run_mut(job.slot, job.run) else {
            return;
        };
        let forward = job.comp_of == FORWARD;
        if forward {
            match run.status {
                RunStatus::Running => {}
                RunStatus::Paused => {
                    run.parked.push(job);
                    return;
                }
                _ => return,
            }
            if run.tasks[job.task as usize].status != TaskStatus::Ready {
                return;
            }
        }
        let spec = run.spec.clone();
        let agents = run.agents.clone();
        // Spec-local agent indices. A compensation action runs on its named agent,
        // or on the candidates of the task it undoes.
        let action =
            !forward && matches!(spec.tasks[job.comp_of as usize].undo, Some(Undo::Action));
        let named = match spec.workflow.tasks[job.comp_of.min(job.task) as usize]
            .compensation
            .as_deref()
        {
            Some(Compensation::Action {
                agent: Some(name), ..
            }) if action => spec
                .agents
                .iter()
                .position(|a| &a.agent.name == name)
                .map(|i| i as u16),
            _ => None,
        };
        let one;
        let candidates: &[u16] = match named {
            Some(i) => {
                one = [i];
                &one
            }
            None if action => &spec.tasks[job.comp_of as usize].candidates,
            None => &spec.tasks[job.task as usize].candidates,
        };
        // Least loaded agent that is allowed to take a call.
        let mut best: Option<(u16, f64)> = None;
        let mut any_allowed = false;
        let mut least_busy: Option<(u16, u32)> = None;
        for &local in candidates {
            let global = agents[usize::from(local)];
            let a = &self.agents[usize::from(global)];
            if a.breaker.as_ref().is_some_and(|b| !b.allows(now)) {
                continue;
            }
            any_allowed = true;
            if least_busy.is_none_or(|(_, n)| a.in_flight < n) {
                least_busy = Some((global, a.in_flight));
            }
            if a.in_flight < a.concurrency {
                let load = f64::from(a.in_flight) / f64::from(a.concurrency);
                if best.is_none_or(|(_, l)| load < l) {
                    best = Some((global, load));
                }
            }
        }
        let Some((agent, _)) = best else {
            if !any_allowed {
                let names: Vec<&str> = candidates
                    .iter()
                    .map(|&l| spec.agents[usize::from(l)].agent.name.as_str())
                    .collect();
                let failure =
                    Failure::retryable(format!("circuit breaker open for {}", names.join(", ")));
                // Failing fast counts as an attempt.
                if forward {
                    let run = self.runs[job.slot as usize].as_mut().expect("live run");
                    run.tasks[job.task as usize].attempt = job.attempt;
                }
                self.attempt_failed(job, failure, now);
            } else if let Some((agent, _)) = least_busy {
                self.agents[usize::from(agent)].waiting.push_back(job);
            }
            return;
        };
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        let a = &mut self.agents[usize::from(agent)];
        a.in_flight += 1;
        a.calls += 1;
        if let Some(b) = a.breaker.as_mut() {
            b.started(now);
        }
        let runner = a.runner.clone();
        let at = Self::at_ns(run, now);
        if forward {
            let state = &mut run.tasks[job.task as usize];
            state.attempt = job.attempt;
            state.agent = agent;
            state.dispatched_at = at;
            self.dispatch_hist
                .saturating_record(at.saturating_sub(state.ready_at).max(1));
            if job.attempt > 1 {
                run.retries += 1;
                self.progress.retries.fetch_add(1, Ordering::Relaxed);
            }
            self.transition(job.slot, job.task, TaskStatus::Dispatched, None, now);
            self.transition(job.slot, job.task, TaskStatus::Running, None, now);
        } else if job.task != job.comp_of {
            let state = &mut run.tasks[job.task as usize];
            state.attempt = job.attempt;
            state.agent = agent;
            state.dispatched_at = at;
            self.transition(job.slot, job.task, TaskStatus::Running, None, now);
        }
        if let Some(outcome) = runner.immediate() {
            return self.complete(Done {
                run: job.run,
                slot: job.slot,
                task: job.task,
                attempt: job.attempt,
                comp_of: job.comp_of,
                agent,
                spawned: false,
                finished: now,
                outcome,
            });
        }
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        let call = Call {
            run: run.id,
            task: spec.ids[job.task as usize].clone(),
            attempt: job.attempt,
            input: if runner.reads_input() {
                call_input(run, &job)
            } else {
                Value::Null
            },
            estimate: spec.workflow.tasks[job.task as usize].estimate,
        };
        match runner.start(call) {
            Started::Done(outcome) => self.complete(Done {
                run: job.run,
                slot: job.slot,
                task: job.task,
                attempt: job.attempt,
                comp_of: job.comp_of,
                agent,
                spawned: false,
                finished: now,
                outcome,
            }),
            Started::Later(future) => {
                let timeout = spec.workflow.tasks[job.task as usize].timeout;
                let tx = self.tx.clone();
                let handle = tokio::spawn(async move {
                    let outcome =
                        match timeout {
                            Some(limit) => tokio::time::timeout(limit, future)
                                .await
                                .unwrap_or_else(|_| {
                                    Err(Failure::retryable(format!(
                                        "timed out after {}",
                                        baton_model::duration::format(limit)
                                    )))
                                }),
                            None => future.await,
                        };
                    let _ = tx.send(Msg::Done(Done {
                        run: job.run,
                        slot: job.slot,
                        task: job.task,
                        attempt: job.attempt,
                        comp_of: job.comp_of,
                        agent,
                        spawned: true,
                        finished: Instant::now(),
                        outcome,
                    }));
                });
                self.inflight.insert(
                    (job.run, job.task, job.comp_of),
                    (handle.abort_handle(), agent),
                );
            }
        }
    }

    fn release_agent(&mut self, agent: u16) {
        let a = &mut self.agents[usize::from(agent)];
        a.in_flight = a.in_flight.saturating_sub(1);
        if let Some(job) = a.waiting.pop_front() {
            self.ready.push_front(job);
        }
    }

    fn complete(&mut self, done: Done) {
        if done.spawned
            && self
                .inflight
                .remove(&(done.run, done.task, done.comp_of))
                .is_none()
        {
            // Stopped already (its agent was released then).
            return;
        }
        let ok = done.outcome.is_ok();
        {
            let a = &mut self.agents[usize::from(done.agent)];
            if !ok {
                a.failures += 1;
            }
            if let Some(b) = a.breaker.as_mut()
                && let Some(state) = b.record(ok, done.finished)
            {
                tracing::info!(agent = %a.name, breaker = state.as_str(), "circuit breaker changed state");
            }
        }
        self.release_agent(done.agent);
        let job = Job {
            run: done.run,
            slot: done.slot,
            task: done.task,
            attempt: done.attempt,
            comp_of: done.comp_of,
        };
        let Some(run) = self.run_mut(done.slot, done.run) else {
            return;
        };
        if done.comp_of != FORWARD {
            self.compensation_done(job, done.outcome, done.finished);
            return;
        }
        let state = run.tasks[done.task as usize];
        if state.attempt != done.attempt
            || !matches!(state.status, TaskStatus::Dispatched | TaskStatus::Running)
        {
            return;
        }
        match done.outcome {
            Ok(value) => {
                let value = match (value, run.events.remove(&done.task)) {
                    (Value::Null, Some(event)) => event,
                    (value, _) => value,
                };
                // A null output is stored as none: no allocation for `noop`.
                let detail = (!value.is_null()).then(|| Detail::Output(Arc::new(value)));
                self.finish(
                    done.slot,
                    done.task,
                    TaskStatus::Succeeded,
                    detail,
                    done.finished,
                );
                self.drain_newly_ready();
                self.check_done(done.slot);
            }
            Err(failure) => self.attempt_failed(job, failure, done.finished),
        }
    }

    fn max_attempts(spec: &Spec, task: u32) -> (u32, Option<&baton_model::Backoff>) {
        match spec.workflow.tasks[task as usize].retry.as_deref() {
            Some(r) => (r.max_attempts, Some(&r.backoff)),
            None => (1, None),
        }
    }

    fn attempt_failed(&mut self, job: Job, failure: Failure, now: Instant) {
        let Some(run) = self.run_mut(job.slot, job.run) else {
            return;
        };
        let spec = run.spec.clone();
        if job.comp_of != FORWARD {
            self.compensation_done(job, Err(failure), now);
            return;
        }
        let (max, backoff) = Self::max_attempts(&spec, job.task);
        let message: Arc<str> = failure.message.as_str().into();
        let live = matches!(run.status, RunStatus::Running | RunStatus::Paused);
        if failure.retryable && job.attempt < max && live {
            let backoff = backoff.cloned().unwrap_or_default();
            let delay = retry::delay(&backoff, job.attempt + 1, &mut self.rng);
            self.transition(
                job.slot,
                job.task,
                TaskStatus::Pending,
                Some(Detail::Error(message)),
                now,
            );
            self.add_timer(
                TimerKind::Retry,
                now + delay,
                job.run,
                job.slot,
                job.task,
                job.attempt + 1,
                FORWARD,
            );
        } else {
            let attempts = if job.attempt > 1 {
                format!(" after {} attempts", job.attempt)
            } else {
                String::new()
            };
            let reason = format!(
                "task `{}` failed{attempts}: {}",
                spec.ids[job.task as usize], failure.message
            );
            self.finish(
                job.slot,
                job.task,
                TaskStatus::Failed,
                Some(Detail::Error(message)),
                now,
            );
            self.fail_run(job.slot, reason, false);
        }
    }

    fn compensation_done(&mut self, job: Job, outcome: Outcome, now: Instant) {
        let run = self.run_mut(job.slot, job.run).expect("live run");
        let spec = run.spec.clone();
        let handler = job.task != job.comp_of;
        match outcome {
            Ok(value) => {
                run.compensations += 1;
                if handler {
                    self.finish(
                        job.slot,
                        job.task,
                        TaskStatus::Succeeded,
                        Some(Detail::Output(Arc::new(value))),
                        now,
                    );
                }
                self.transition(job.slot, job.comp_of, TaskStatus::Compensated, None, now);
                self.next_compensation(job.slot);
            }
            Err(failure) => {
                let (max, backoff) = Self::max_attempts(&spec, job.task);
                if failure.retryable && job.attempt < max {
                    let backoff = backoff.cloned().unwrap_or_default();
                    let delay = retry::delay(&backoff, job.attempt + 1, &mut self.rng);
                    self.add_timer(
                        TimerKind::Retry,
                        now + delay,
                        job.run,
                        job.slot,
                        job.task,
                        job.attempt + 1,
                        job.comp_of,
                    );
                    return;
                }
                let message: Arc<str> = failure.message.as_str().into();
                run.compensation_failures.push(format!(
                    "compensation of `{}` failed: {}",
                    spec.ids[job.comp_of as usize], failure.message
                ));
                if handler {
                    self.finish(
                        job.slot,
                        job.task,
                        TaskStatus::Failed,
                        Some(Detail::Error(message)),
                        now,
                    );
                }
                self.next_compensation(job.slot);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_timer(
        &mut self,
        kind: TimerKind,
        at: Instant,
        run: RunId,
        slot: u32,
        task: u32,
        attempt: u32,
        comp_of: u32,
    ) {
        self.timer_seq += 1;
        self.timers.push(Reverse(Timer {
            at,
            seq: self.timer_seq,
            kind,
            run: run.0,
            slot,
            task,
            attempt,
            comp_of,
        }));
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse(t)) = self.timers.peek().copied() {
            if t.at > now {
                break;
            }
            self.timers.pop();
            let job = Job {
                run: RunId(t.run),
                slot: t.slot,
                task: t.task,
                attempt: t.attempt,
                comp_of: t.comp_of,
            };
            let Some(run) = self.run_mut(t.slot, job.run) else {
                continue;
            };
            match t.kind {
                TimerKind::Retry if t.comp_of != FORWARD => self.ready.push_back(job),
                TimerKind::Retry => {
                    let state = &run.tasks[t.task as usize];
                    if state.status != TaskStatus::Pending || state.attempt + 1 != t.attempt {
                        continue;
                    }
                    if !matches!(run.status, RunStatus::Running | RunStatus::Paused) {
                        continue;
                    }
                    let at = Self::at_ns(run, now);
                    run.tasks[t.task as usize].ready_at = at;
                    self.transition(t.slot, t.task, TaskStatus::Ready, None, now);
                    let run = self.run_mut(t.slot, job.run).expect("live run");
                    let spec = run.spec.clone();
                    match spec.workflow.tasks[t.task as usize].wait_for.as_deref() {
                        Some(filter) => self.wait_for(job, filter),
                        None => self.ready.push_back(job),
                    }
                }
                TimerKind::WaitTimeout => {
                    let Some(at) = self.waiters.iter().position(|w| {
                        w.run == job.run && w.task == t.task && w.attempt == t.attempt
                    }) else {
                        continue;
                    };
                    self.waiters.swap_remove(at);
                    let run = self.runs[t.slot as usize].as_mut().expect("live run");
                    let spec = run.spec.clone();
                    let filter = spec.workflow.tasks[t.task as usize].wait_for.as_deref();
                    let failure = Failure::retryable(format!(
                        "no `{}` event arrived within {}",
                        filter.map_or("", |f| f.event_type.as_str()),
                        filter
                            .and_then(|f| f.timeout)
                            .map_or_else(String::new, baton_model::duration::format)
                    ));
                    // The attempt number is the one the wait was for.
                    run.tasks[t.task as usize].attempt = t.attempt;
                    self.attempt_failed(job, failure, now);
                }
            }
        }
    }

    // ----- events (`wait_for`) ----------------------------------------------

    fn wait_for(&mut self, job: Job, filter: &EventFilter) {
        let topic: Arc<str> = filter
            .topic
            .as_deref()
            .unwrap_or(&self.options.signals_topic)
            .into();
        if !self.signals.contains_key(&topic) {
            self.signals.insert(topic.clone(), VecDeque::new());
            self.spawn_reader(topic.clone());
        }
        let run = self.run_mut(job.slot, job.run).expect("live run");
        let created_ms = run.created_ms;
        let matched = self.signals[&topic]
            .iter()
            .find(|s| matches(filter, s, job.run, created_ms))
            .map(signal_value);
        match matched {
            Some(value) => self.signalled(job, value),
            None => {
                if let Some(timeout) = filter.timeout {
                    self.add_timer(
                        TimerKind::WaitTimeout,
                        Instant::now() + timeout,
                        job.run,
                        job.slot,
                        job.task,
                        job.attempt,
                        FORWARD,
                    );
                }
                self.waiters.push(Waiter {
                    run: job.run,
                    slot: job.slot,
                    task: job.task,
                    attempt: job.attempt,
                    topic,
                });
            }
        }
    }

    fn spawn_reader(&mut self, topic: Arc<str>) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let log = self.log.clone();
        let tx = self.tx.clone();
        let since = self
            .runs
            .iter()
            .flatten()
            .map(|r| r.created_ms)
            .min()
            .unwrap_or_else(now_ms);
        self.readers.push(handle.spawn(async move {
            // Events published since the oldest live run started may be for it.
            if let Err(e) = log.seek(&topic, SeekTo::Time(since)).await {
                tracing::warn!(error = %e, %topic, "cannot position the signal reader");
            }
            loop {
                match log.poll(&topic, 1000, Duration::from_secs(1)).await {
                    Ok(polled) if polled.is_empty() => {}
                    Ok(polled) => {
                        let offsets = polled.offsets();
                        let events = polled.iter().map(|d| d.event.clone()).collect();
                        if tx
                            .send(Msg::Signals {
                                topic: topic.clone(),
                                events,
                            })
                            .is_err()
                        {
                            break;
                        }
                        let _ = log.ack(&topic, &offsets).await;
                    }
                    Err(baton_events::Error::Closed) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, %topic, "cannot read signals");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }));
    }

    fn signals(&mut self, topic: Arc<str>, events: Vec<Event>) {
        for event in events {
            let mut signal = Signal {
                payload: serde_json::from_slice(&event.payload).ok(),
                event,
            };
            // Hand the event to every task waiting for it.
            let mut i = 0;
            while i < self.waiters.len() {
                let w = &self.waiters[i];
                if w.topic != topic {
                    i += 1;
                    continue;
                }
                let Some(run) = self
                    .runs
                    .get(w.slot as usize)
                    .and_then(|r| r.as_ref())
                    .filter(|r| r.id == w.run)
                else {
                    self.waiters.swap_remove(i);
                    continue;
                };
                let filter = run.spec.workflow.tasks[w.task as usize].wait_for.as_deref();
                if filter.is_some_and(|f| matches(f, &signal, run.id, run.created_ms)) {
                    let w = self.waiters.swap_remove(i);
                    let value = signal_value(&signal);
                    self.signalled(
                        Job {
                            run: w.run,
                            slot: w.slot,
                            task: w.task,
                            attempt: w.attempt,
                            comp_of: FORWARD,
                        },
                        value,
                    );
                } else {
                    i += 1;
                }
            }
            let buffer = self.signals.entry(topic.clone()).or_default();
            if buffer.len() == SIGNAL_BUFFER {
                buffer.pop_front();
            }
            signal.payload.get_or_insert(Value::Null);
            buffer.push_back(signal);
        }
    }

    fn signalled(&mut self, job: Job, event: Value) {
        let now = Instant::now();
        let run = self.run_mut(job.slot, job.run).expect("live run");
        run.events.insert(job.task, event);
        // Coordination latency counts from the event, not from the wait's start.
        let at = Self::at_ns(run, now);
        run.tasks[job.task as usize].ready_at = at;
        if run.status == RunStatus::Paused {
            run.parked.push(job);
        } else {
            self.ready.push_back(job);
        }
    }

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

    fn view(&self, id: RunId) -> Result<RunView, Error> {
        let run = match self.by_id.get(&id) {
            Some(&slot) => self.runs[slot as usize].as_ref().expect("live run"),
            None => self.finished.get(&id).ok_or(Error::UnknownRun(id))?,
        };
        let summary = match &run.summary {
            Some(s) => (**s).clone(),
            None => summarize(run),
        };
        let task_states = run
            .tasks
            .iter()
            .enumerate()
            .map(|(i, t)| TaskView {
                id: run.spec.ids[i].to_string(),
                status: t.status,
                attempt: t.attempt,
                agent: (t.agent != NO_AGENT)
                    .then(|| self.agents[usize::from(t.agent)].name.clone()),
                output: run.outputs[i].as_deref().cloned(),
                error: run.errors.get(&(i as u32)).map(|e| e.to_string()),
            })
            .collect();
        Ok(RunView {
            summary,
            task_states,
        })
    }

    fn stats(&self) -> Stats {
        let mut s = Stats {
            runs_completed: self.ended[0],
            runs_failed: self.ended[1],
            runs_cancelled: self.ended[2],
            transitions: self.transitions,
            ready_queue: self.ready.len() as u64,
            runs_queued: self.admit.len() as u64,
            dispatch_latency: percentiles(&self.dispatch_hist),
            release_latency: percentiles(&self.release_hist),
            ..Stats::default()
        };
        for run in self.runs.iter().flatten() {
            match run.status {
                RunStatus::Running => s.runs_running += 1,
                RunStatus::Paused => s.runs_paused += 1,
                RunStatus::Compensating => s.runs_compensating += 1,
                _ => {}
            }
        }
        let now = Instant::now();
        s.agents = self
            .agents
            .iter()
            .map(|a| AgentStats {
                name: a.name.clone(),
                kind: a.kind.clone(),
                in_flight: a.in_flight,
                calls: a.calls,
                failures: a.failures,
                breaker: a
                    .breaker
                    .as_ref()
                    .map_or("closed", |b| b.state(now).as_str()),
            })
            .collect();
        s
    }

    // ----- output -----------------------------------------------------------

    /// Writes the turn's records to the store and its events to the log; answers
    /// what waited for them once they are durable.
    fn flush(&mut self) {
        let c = std::mem::take(&mut self.counts);
        let p = &self.progress;
        p.running.fetch_add(c.running as u64, Ordering::Relaxed);
        p.succeeded.fetch_add(c.succeeded, Ordering::Relaxed);
        p.failed.fetch_add(c.failed, Ordering::Relaxed);
        p.skipped.fetch_add(c.skipped, Ordering::Relaxed);
        if self.out.is_empty() {
            return;
        }
        let batch = Batch {
            out: std::mem::replace(&mut self.out, Vec::with_capacity(FLUSH_EVERY)),
            acks: std::mem::take(&mut self.acks),
        };
        if let Some((tx, _)) = &self.sink {
            let _ = tx.send(batch);
        }
    }

    // ----- recovery ---------------------------------------------------------

    /// Rebuilds runs from their records: unfinished ones resume (`remember` false),
    /// or finished ones are kept for status queries (`remember` true). Runs this
    /// engine already knows are skipped. Returns the ids of the runs rebuilt.
    fn recover(&mut self, records: Vec<Record>, remember: bool) -> Result<Vec<RunId>, Error> {
        struct Past {
            key: u128,
            input: String,
            at_ms: u64,
            status: RunStatus,
            reason: Option<String>,
            tasks: HashMap<u32, (TaskStatus, u32, Option<String>)>,
        }
        let mut documents: HashMap<u128, String> = HashMap::new();
        let mut runs: Vec<(RunId, Past)> = Vec::new();
        let mut index: HashMap<RunId, usize> = HashMap::new();
        for record in records {
            match record {
                Record::Workflow { key, document } => {
                    documents.insert(key, document);
                }
                Record::RunCreated {
                    run,
                    workflow,
                    input,
                    at_ms,
                } => {
                    index.insert(run, runs.len());
                    runs.push((
                        run,
                        Past {
                            key: workflow,
                            input,
                            at_ms,
                            status: RunStatus::Running,
                            reason: None,
                            tasks: HashMap::new(),
                        },
                    ));
                }
                Record::Task {
                    run,
                    task,
                    status,
                    attempt,
                    agent: _,
                    detail,
                    ..
                } => {
                    if let Some(&i) = index.get(&run) {
                        runs[i].1.tasks.insert(task, (status, attempt, detail));
                    }
                }
                Record::Run {
                    run,
                    status,
                    reason,
                    ..
                } => {
                    if let Some(&i) = index.get(&run) {
                        runs[i].1.status = status;
                        if reason.is_some() {
                            runs[i].1.reason = reason;
                        }
                    }
                }
            }
        }
        let mut specs: HashMap<u128, Arc<Spec>> = HashMap::new();
        let mut resumed = Vec::new();
        for (id, past) in runs {
            if self.options.node.is_none() {
                self.last_id = self.last_id.max(id.0);
            }
            if past.status.is_final() != remember
                || self.by_id.contains_key(&id)
                || self.finished.contains_key(&id)
            {
                continue;
            }
            let resume_error = |message: String| Error::Resume { run: id, message };
            let spec = match specs.get(&past.key) {
                Some(s) => s.clone(),
                None => {
                    let document = documents.get(&past.key).ok_or_else(|| {
                        resume_error("its workflow is missing from the state store".into())
                    })?;
                    let spec = Arc::new(
                        prepare_document(document, self.options.seed).map_err(resume_error)?,
                    );
                    specs.insert(past.key, spec.clone());
                    spec
                }
            };
            self.written.insert(past.key);
            let input: Value = serde_json::from_str(&past.input).unwrap_or(Value::Null);
            let slot = self.new_run(id, spec.clone(), Arc::new(input), past.at_ms);
            let run = self.runs[slot as usize].as_mut().expect("live run");
            run.status = past.status;
            run.reason = past.reason;
            let mut failed = false;
            for (&task, (status, attempt, detail)) in &past.tasks {
                let state = &mut run.tasks[task as usize];
                state.attempt = *attempt;
                match status {
                    TaskStatus::Succeeded
                    | TaskStatus::Skipped
                    | TaskStatus::Compensated
                    | TaskStatus::Failed
                    | TaskStatus::Cancelled => {
                        state.status = *status;
                        if *status == TaskStatus::Succeeded {
                            run.outputs[task as usize] = detail
                                .as_deref()
                                .map(|d| Arc::new(serde_json::from_str(d).unwrap_or(Value::Null)));
                        }
                        if *status == TaskStatus::Failed && !spec.plan.is_handler(task) {
                            failed = true;
                        }
                    }
                    // In flight or waiting when the process stopped: run it again.
                    _ => state.status = TaskStatus::Pending,
                }
            }
            if remember {
                // Ended elsewhere: kept for status queries only (timing figures
                // are not in the records, so they read zero).
                let now = Instant::now();
                run.status = past.status;
                run.base = Some(now);
                run.ended = Some(now);
                run.unfinished = 0;
                run.summary = Some(Arc::new(summarize(run)));
                self.progress
                    .total
                    .fetch_sub(u64::from(spec.planned), Ordering::Relaxed);
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
                resumed.push(id);
                continue;
            }
            let mut unfinished = 0;
            for &t in spec.plan.order() {
                let status = run.tasks[t as usize].status;
                let c = &mut self.counts;
                match status {
                    TaskStatus::Succeeded | TaskStatus::Compensated => c.succeeded += 1,
                    TaskStatus::Failed => c.failed += 1,
                    TaskStatus::Skipped | TaskStatus::Cancelled => c.skipped += 1,
                    _ => unfinished += 1,
                }
                if status == TaskStatus::Skipped {
                    run.skipped_any = true;
                }
                run.tasks[t as usize].deps_left = spec
                    .plan
                    .preds(t)
                    .iter()
                    .filter(|&&p| {
                        !matches!(
                            run.tasks[p as usize].status,
                            TaskStatus::Succeeded | TaskStatus::Skipped
                        )
                    })
                    .count() as u32;
            }
            run.unfinished = unfinished;
            if failed
                || past.status == RunStatus::Compensating
                || past.status == RunStatus::Cancelled
            {
                run.failed = true;
                run.cancelled = run.reason.as_deref() == Some(CANCELLED);
                run.undo_queue = undo_queue(run);
                run.status = RunStatus::Compensating;
            }
            tracing::info!(run = %id, unfinished, "resuming run");
            self.admit.push_back(slot);
            resumed.push(id);
        }
        Ok(resumed)
    }
}

/// Prepares a stored workflow document again (on resume).
fn prepare_document(document: &str, seed: u64) -> Result<Spec, String> {
    let source = Source::from_str("stored workflow", document, Format::Json);
    let checked = baton_model::load(&source).map_err(|e| e.to_string())?;
    let plan = baton_plan::plan_checked(&checked, &baton_plan::Options::default())
        .map_err(|d| d.message.clone())?;
    Spec::new(checked, Arc::new(plan), seed).map_err(|e| e.to_string())
}

fn answer(ack: Ack, synced: Result<(), Error>) {
    match ack {
        Ack::Submitted(reply, id, _) => {
            let _ = reply.send(synced.map(|()| id));
        }
        Ack::Finished(waiters, summary) => {
            for w in waiters {
                let _ = w.send(match &synced {
                    Ok(()) => Ok(summary.clone()),
                    Err(e) => Err(Error::Store(store::Error::Closed(Some(e.to_string())))),
                });
            }
        }
    }
}

fn record(out: &Out) -> Record {
    match out {
        Out::Workflow { key, document } => Record::Workflow {
            key: *key,
            document: document.to_string(),
        },
        Out::Created {
            run,
            key,
            input,
            at_ms,
        } => Record::RunCreated {
            run: *run,
            workflow: *key,
            input: input.to_string(),
            at_ms: *at_ms,
        },
        Out::Task(t) => Record::Task {
            run: t.run,
            task: t.task,
            status: t.status,
            attempt: t.attempt,
            agent: t.agent,
            at_us: t.at_us,
            detail: t.detail.as_ref().map(|d| match d {
                Detail::Output(v) => v.to_string(),
                Detail::Error(e) => e.to_string(),
            }),
        },
        Out::Run {
            run,
            status,
            at_ms,
            reason,
        } => Record::Run {
            run: *run,
            status: *status,
            at_ms: *at_ms,
            reason: reason.clone(),
        },
    }
}

/// The turn's transitions as events: per run, `baton.transitions` events whose
/// payload is `{"run": ID, "transitions": [[task, status, attempt, agent, at_us(, detail)], ...]}`
/// (task as its index in the workflow, status as its name), and `baton.run` events
/// for run status changes.
fn events(out: &[Out]) -> Vec<Event> {
    use std::fmt::Write;
    let mut events = Vec::new();
    let mut open: Vec<(RunId, String)> = Vec::new();
    let close = |events: &mut Vec<Event>, run: RunId, mut body: String| {
        body.push_str("]}");
        events.push(Event::new("baton.transitions", run.to_string(), body));
    };
    for o in out {
        match o {
            Out::Task(t) => {
                let at = match open.iter().position(|(r, _)| *r == t.run) {
                    Some(i) => i,
                    None => {
                        open.push((t.run, format!("{{\"run\":\"{}\",\"transitions\":[", t.run)));
                        open.len() - 1
                    }
                };
                let body = &mut open[at].1;
                if !body.ends_with('[') {
                    body.push(',');
                }
                let agent = if t.agent == NO_AGENT {
                    -1
                } else {
                    i32::from(t.agent)
                };
                let _ = write!(
                    body,
                    "[{},\"{}\",{},{},{}",
                    t.task,
                    t.status.as_str(),
                    t.attempt,
                    agent,
                    t.at_us
                );
                match &t.detail {
                    Some(Detail::Output(v)) => {
                        let _ = write!(body, ",{}]", v);
                    }
                    Some(Detail::Error(e)) => {
                        let _ = write!(body, ",{}]", Value::String(e.to_string()));
                    }
                    None => body.push(']'),
                }
                if body.len() >= EVENT_BYTES {
                    let (run, body) = open.swap_remove(at);
                    close(&mut events, run, body);
                }
            }
            Out::Run {
                run,
                status,
                reason,
                ..
            } => {
                // The run's transitions so far go first: consumers see a run end
                // after its tasks.
                if let Some(at) = open.iter().position(|(r, _)| r == run) {
                    let (run, body) = open.swap_remove(at);
                    close(&mut events, run, body);
                }
                let payload = serde_json::json!({"run": run.to_string(), "status": status.as_str(), "reason": reason});
                events.push(Event::new(
                    "baton.run",
                    run.to_string(),
                    payload.to_string(),
                ));
            }
            Out::Created { run, .. } => {
                let payload = serde_json::json!({"run": run.to_string(), "status": "created"});
                events.push(Event::new(
                    "baton.run",
                    run.to_string(),
                    payload.to_string(),
                ));
            }
            Out::Workflow { .. } => {}
        }
    }
    for (run, body) in open {
        close(&mut events, run, body);
    }
    events
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

fn matches(filter: &EventFilter, signal: &Signal, run: RunId, created_ms: u64) -> bool {
    let event = &signal.event;
    if &*event.kind != filter.event_type.as_str() || event.timestamp_ms < created_ms {
        return false;
    }
    if let Some(key) = &filter.key
        && event.key.as_ref() != key.as_bytes()
    {
        return false;
    }
    if let Some(target) = event.header("baton.run")
        && target.as_ref() != run.to_string().as_bytes()
    {
        return false;
    }
    match &filter.matches {
        None => true,
        Some(fields) => {
            let payload = match &signal.payload {
                Some(Value::Object(p)) => p,
                _ => return fields.is_empty(),
            };
            fields.iter().all(|(k, v)| payload.get(k) == Some(v))
        }
    }
}

fn signal_value(signal: &Signal) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), Value::String(signal.event.kind.to_string()));
    m.insert(
        "key".into(),
        Value::String(String::from_utf8_lossy(&signal.event.key).into_owned()),
    );
    m.insert(
        "payload".into(),
        signal.payload.clone().unwrap_or_else(|| {
            Value::String(String::from_utf8_lossy(&signal.event.payload).into_owned())
        }),
    );
    m.insert(
        "timestamp_ms".into(),
        Value::from(signal.event.timestamp_ms),
    );
    Value::Object(m)
}

/// What an agent is given for a call.
fn call_input(run: &Run, job: &Job) -> Value {
    let spec = &run.spec;
    let mut m = Map::new();
    m.insert("run".into(), Value::String(run.id.to_string()));
    m.insert(
        "task".into(),
        Value::String(spec.ids[job.task as usize].to_string()),
    );
    m.insert("attempt".into(), Value::from(job.attempt));
    m.insert(
        "input".into(),
        spec.workflow.tasks[job.task as usize]
            .input
            .as_deref()
            .cloned()
            .unwrap_or(Value::Null),
    );
    let mut upstream = Map::new();
    for &p in spec.plan.preds(job.task) {
        if let Some(o) = run.outputs[p as usize].as_deref() {
            upstream.insert(spec.ids[p as usize].to_string(), o.clone());
        }
    }
    m.insert("upstream".into(), Value::Object(upstream));
    m.insert("run_input".into(), (*run.input).clone());
    if let Some(e) = run.events.get(&job.task) {
        m.insert("event".into(), e.clone());
    }
    if job.comp_of != FORWARD {
        let orig = job.comp_of as usize;
        m.insert(
            "compensate".into(),
            Value::String(spec.ids[orig].to_string()),
        );
        m.insert(
            "output".into(),
            run.outputs[orig].as_deref().cloned().unwrap_or(Value::Null),
        );
        if let Some(Compensation::Action { action, input, .. }) =
            spec.workflow.tasks[orig].compensation.as_deref()
        {
            m.insert("action".into(), Value::String(action.clone()));
            m.insert("input".into(), input.clone().unwrap_or(Value::Null));
        }
    }
    Value::Object(m)
}

fn summarize(run: &Run) -> Summary {
    let spec = &run.spec;
    let mut tasks = TaskCounts::default();
    for (i, t) in run.tasks.iter().enumerate() {
        // A compensation task counts only once it ran.
        if t.attempt > 0 || !spec.plan.is_handler(i as u32) {
            tasks.add(t.status);
        }
    }
    let order = spec.plan.order();
    let mut latencies: Vec<u64> = order
        .iter()
        .map(|&t| &run.tasks[t as usize])
        .filter(|t| t.attempt > 0)
        .map(|t| t.dispatched_at.saturating_sub(t.ready_at))
        .collect();
    let coordination_overhead = if latencies.is_empty() {
        Percentiles::default()
    } else {
        let n = latencies.len();
        let mut at = |q: f64| {
            let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
            *latencies.select_nth_unstable(i).1
        };
        let (p50, p99, max) = (at(0.5), at(0.99), at(1.0));
        Percentiles {
            count: n as u64,
            p50_us: p50 as f64 / 1e3,
            p99_us: p99 as f64 / 1e3,
            max_us: max as f64 / 1e3,
        }
    };
    // The chain that determined the makespan.
    let last = order
        .iter()
        .copied()
        .filter(|&t| run.tasks[t as usize].status.is_final())
        .max_by_key(|&t| run.tasks[t as usize].finished_at);
    let mut path = Vec::new();
    let mut agent_ns = 0u64;
    let mut at = last;
    while let Some(t) = at {
        let s = &run.tasks[t as usize];
        path.push(spec.ids[t as usize].to_string());
        if s.attempt > 0 {
            agent_ns += s.finished_at.saturating_sub(s.dispatched_at);
        }
        at = spec
            .plan
            .preds(t)
            .iter()
            .copied()
            .max_by_key(|&p| run.tasks[p as usize].finished_at);
    }
    path.reverse();
    let makespan_ns = last.map_or(0, |t| run.tasks[t as usize].finished_at);
    let queue = run.base.map_or(Duration::ZERO, |b| {
        b.saturating_duration_since(run.submitted)
    });
    Summary {
        run: run.id,
        workflow: spec.workflow.name.clone(),
        status: run.status,
        reason: run.reason.clone(),
        tasks,
        makespan_ms: makespan_ns as f64 / 1e6,
        queue_ms: queue.as_secs_f64() * 1e3,
        critical_path: path,
        critical_path_agent_ms: agent_ns as f64 / 1e6,
        coordination_overhead_ms: makespan_ns.saturating_sub(agent_ns) as f64 / 1e6,
        coordination_overhead,
        retries: run.retries,
        compensations: run.compensations,
        compensation_failures: run.compensation_failures.clone(),
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
