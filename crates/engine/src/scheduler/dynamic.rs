//! What a run decides as it goes: fan-outs (`for_each`: a task run once per item
//! of an upstream output list, its output the instances' outputs in item order)
//! and routes (the successors a task's output chooses; the others are skipped).
//!
//! Decisions are made from durable data only: a fan-out's list is its upstream
//! task's recorded output, a route is the choosing task's recorded output. A
//! resumed run therefore makes the same decisions without asking an agent
//! again; an instance that ended is recorded ([`Record::Item`](crate::store::Record::Item))
//! and keeps its result, so it is not run twice.

use std::sync::Arc;

use baton_model::expr::{Field, Segment, lookup};
use baton_model::{ForEach, OnItemFailure};
use serde_json::Value;
use tokio::time::Instant;

use super::{Detail, FORWARD, Job, NO_AGENT, Out, Run, Scheduler};
use crate::agent::{Failure, Outcome};
use crate::store::{RunId, RunStatus, TaskStatus};

/// Where an instance is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ItemState {
    /// Not started, or waiting for its next attempt.
    Waiting,
    /// In the ready queue or with an agent.
    Running,
    Succeeded,
    Failed,
}

/// A fan-out in progress: one per task whose instances are running. A loop is
/// one too, its instances the iterations, added one at a time.
pub(super) struct FanOut {
    /// The upstream output that holds the list.
    source: Arc<Value>,
    pub(super) len: u32,
    /// The next item never started.
    next: u32,
    pub(super) running: u32,
    pub(super) ended: u32,
    limit: u32,
    policy: OnItemFailure,
    pub(super) state: Vec<ItemState>,
    pub(super) attempts: Vec<u32>,
    pub(super) results: Vec<Option<Arc<Value>>>,
    pub(super) failures: Vec<(u32, Arc<str>)>,
    /// A loop's iterations, not a fan-out's items.
    repeat: bool,
    /// When a loop decided its next iteration, until that iteration is
    /// dispatched.
    pub(super) decided: Option<Instant>,
}

impl FanOut {
    /// A loop's iterations: the first one, waiting.
    pub(super) fn sequence() -> FanOut {
        FanOut {
            source: Arc::default(),
            len: 1,
            next: 0,
            running: 0,
            ended: 0,
            limit: 1,
            policy: OnItemFailure::FailFast,
            state: vec![ItemState::Waiting],
            attempts: vec![0],
            results: vec![None],
            failures: Vec::new(),
            repeat: true,
            decided: None,
        }
    }

    /// The instances of a task that had ended before a restart, as their
    /// records tell (a loop's outputs with them; a fan-out's are in the task's
    /// output).
    pub(super) fn recorded(ends: Vec<ItemEnd>, repeat: bool) -> FanOut {
        let len = ends.iter().map(|e| e.item + 1).max().unwrap_or(0);
        let mut f = FanOut {
            next: len,
            ended: 0,
            limit: 0,
            repeat,
            state: vec![ItemState::Waiting; len as usize],
            attempts: vec![0; len as usize],
            results: vec![None; len as usize],
            len,
            ..FanOut::sequence()
        };
        for end in ends {
            let i = end.item as usize;
            f.attempts[i] = end.attempt;
            match end.status {
                TaskStatus::Succeeded => {
                    f.state[i] = ItemState::Succeeded;
                    if repeat {
                        f.results[i] = end
                            .detail
                            .as_deref()
                            .map(|d| Arc::new(serde_json::from_str(d).unwrap_or(Value::Null)));
                    }
                }
                TaskStatus::Failed => {
                    f.state[i] = ItemState::Failed;
                    f.failures
                        .push((end.item, end.detail.unwrap_or_default().into()));
                }
                _ => {}
            }
        }
        f.ended = f
            .state
            .iter()
            .filter(|s| matches!(s, ItemState::Succeeded | ItemState::Failed))
            .count() as u32;
        f
    }

    /// Up to `limit` of its instances run at once (a loop's run one by one).
    pub(super) fn side_by_side(mut self, limit: u32) -> FanOut {
        self.limit = limit.max(1);
        self
    }

    /// A loop's next iteration, waiting.
    pub(super) fn push_waiting(&mut self) {
        self.len += 1;
        self.state.push(ItemState::Waiting);
        self.attempts.push(0);
        self.results.push(None);
    }

    /// Counts by state: waiting, running, succeeded, failed.
    pub(super) fn counts(&self) -> [u32; 4] {
        let done_ok = self.ended - self.failures.len() as u32;
        let running = self.running;
        [
            self.len - running - self.ended,
            running,
            done_ok,
            self.failures.len() as u32,
        ]
    }
}

impl Run {
    /// A task's instances ended: its fan-out (or loop) moves to the ended
    /// ones, for status and instance pages.
    pub(super) fn end_instances(&mut self, task: u32) -> Option<&mut FanOut> {
        let f = self.fanouts.remove(&task)?;
        Some(self.ended_fanouts.entry(task).insert_entry(f).into_mut())
    }
}

/// An instance's last record (a run resumed): how it ended, or, for a loop's
/// iteration, that it runs a child.
pub(super) struct ItemEnd {
    pub item: u32,
    pub status: TaskStatus,
    pub attempt: u32,
    pub detail: Option<String>,
}

/// What an instance sees as its `item`, and its index.
pub(super) fn item_value(run: &Run, task: u32, item: u32) -> Value {
    let Some(f) = run.fanouts.get(&task) else {
        return Value::Null;
    };
    list(&run.spec.workflow.tasks[task as usize].for_each, &f.source)
        .and_then(|l| l.as_array())
        .and_then(|a| a.get(item as usize))
        .cloned()
        .unwrap_or(Value::Null)
}

fn path(for_each: &Option<Box<ForEach>>) -> &[Segment] {
    match for_each.as_deref().map(|f| &f.items.field) {
        Some(Field::Output(path)) => path,
        _ => &[],
    }
}

fn list<'v>(for_each: &Option<Box<ForEach>>, source: &'v Value) -> Option<&'v Value> {
    lookup(source, path(for_each))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// The route a task's output names: the output itself when it is a string, or
/// its `route` when it is a map.
pub(super) fn route_of(output: Option<&Value>) -> Option<&str> {
    match output? {
        Value::String(s) => Some(s),
        Value::Object(m) => m.get("route").and_then(Value::as_str),
        _ => None,
    }
}

impl Scheduler {
    /// A fan-out task became ready: reads its list and starts its instances, or
    /// ends the task at once (an empty list succeeds, a missing or oversized one
    /// fails). `false` when the task runs as a plain task (`parallel: true` over
    /// an output that is not a list).
    pub(super) fn expand(&mut self, slot: u32, task: u32, now: Instant) -> bool {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let spec = run.spec.clone();
        if spec.workflow.tasks[task as usize].looping().is_some() {
            self.start_loop(slot, task, now);
            return true;
        }
        let Some(for_each) = spec.workflow.tasks[task as usize].for_each.as_deref() else {
            return false;
        };
        let source = spec
            .plan
            .id(&for_each.items.task)
            .and_then(|up| run.outputs[up as usize].clone());
        let found = source
            .as_deref()
            .and_then(|s| list(&spec.workflow.tasks[task as usize].for_each, s));
        let len = match found {
            Some(Value::Array(items)) => items.len(),
            _ if for_each.implied => return false,
            other => {
                let what = other.map_or("missing", kind);
                let message = format!(
                    "`for_each` of `{}`: `{}` is {what}, not a list",
                    spec.ids[task as usize], for_each.text
                );
                self.fail_task(slot, task, message, now);
                return true;
            }
        };
        if len > for_each.max_items as usize {
            let message = format!(
                "`for_each` of `{}`: `{}` has {len} items, more than `max_items` ({}); raise `max_items` (up to {}) or split the list",
                spec.ids[task as usize],
                for_each.text,
                for_each.max_items,
                ForEach::MAX_ITEMS
            );
            self.fail_task(slot, task, message, now);
            return true;
        }
        let len = len as u32;
        if !self.book_instances(slot, task, len, now) {
            return true;
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let at = Self::at_ns(run, now);
        let state = &mut run.tasks[task as usize];
        state.attempt = 1;
        state.dispatched_at = at;
        let mut fan = FanOut {
            source: source.unwrap_or_default(),
            len,
            next: 0,
            running: 0,
            ended: 0,
            limit: for_each.max_parallel.unwrap_or(u32::MAX),
            policy: for_each.on_failure,
            state: vec![ItemState::Waiting; len as usize],
            attempts: vec![0; len as usize],
            results: vec![None; len as usize],
            failures: Vec::new(),
            repeat: false,
            decided: None,
        };
        for end in run.recovered.remove(&task).unwrap_or_default() {
            let i = end.item as usize;
            if i >= fan.state.len() || fan.state[i] != ItemState::Waiting || !end.status.is_final()
            {
                continue;
            }
            fan.attempts[i] = end.attempt;
            fan.ended += 1;
            if end.status == TaskStatus::Succeeded {
                fan.state[i] = ItemState::Succeeded;
                fan.results[i] = end
                    .detail
                    .as_deref()
                    .map(|d| Arc::new(serde_json::from_str(d).unwrap_or(Value::Null)));
            } else {
                fan.state[i] = ItemState::Failed;
                fan.failures
                    .push((end.item, end.detail.unwrap_or_default().into()));
            }
        }
        run.fanouts.insert(task, fan);
        self.decide(
            slot,
            Some(task),
            "for_each",
            serde_json::json!({ "items": len }),
        );
        self.transition(slot, task, TaskStatus::Dispatched, None, now);
        self.transition(slot, task, TaskStatus::Running, None, now);
        if !self.fan_in(slot, task, now) {
            self.queue_items(slot, task);
        }
        true
    }

    /// Counts `n` more instances against the engine's `max_instances` for the
    /// run; beyond it the task fails (`false`).
    pub(super) fn book_instances(&mut self, slot: u32, task: u32, n: u32, now: Instant) -> bool {
        let max = self.options.max_instances;
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let total = run.started_instances + u64::from(n);
        if total <= max {
            run.started_instances = total;
            self.counts.instances += u64::from(n);
            return true;
        }
        let message = format!(
            "the run would start {total} task instances (fan-out items and loop iterations), more than this engine's `max_instances` ({max}); the server's `[server] max_instances_per_run` raises it"
        );
        self.fail_task(slot, task, message, now);
        false
    }

    /// Queues instances while the fan-out's `max_parallel` allows.
    pub(super) fn queue_items(&mut self, slot: u32, task: u32) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let id = run.id;
        let Some(fan) = run.fanouts.get_mut(&task) else {
            return;
        };
        while fan.running < fan.limit && fan.next < fan.len {
            let i = fan.next;
            fan.next += 1;
            if fan.state[i as usize] != ItemState::Waiting {
                continue;
            }
            fan.state[i as usize] = ItemState::Running;
            fan.running += 1;
            self.ready.push_back(Job {
                run: id,
                slot,
                task,
                attempt: fan.attempts[i as usize] + 1,
                comp_of: FORWARD,
                item: i,
            });
        }
    }

    /// Whether an instance's job is still wanted (its run goes on, the attempt
    /// is the one expected).
    pub(super) fn item_wanted(run: &Run, job: &Job) -> bool {
        run.fanouts.get(&job.task).is_some_and(|f| {
            f.state[job.item as usize] == ItemState::Running
                && f.attempts[job.item as usize] + 1 == job.attempt
        }) && run.tasks[job.task as usize].status == TaskStatus::Running
    }

    /// An instance's attempt starts (its agent is booked by the caller).
    pub(super) fn item_started(run: &mut Run, job: &Job) {
        if let Some(f) = run.fanouts.get_mut(&job.task) {
            f.attempts[job.item as usize] = job.attempt;
        }
        if job.attempt > 1 {
            run.retries += 1;
        }
    }

    /// An instance's attempt ended.
    pub(super) fn item_done(&mut self, job: Job, agent: u16, outcome: Outcome, now: Instant) {
        let Some(run) = self.run_mut(job.slot, job.run) else {
            return;
        };
        let wanted = run.fanouts.get(&job.task).is_some_and(|f| {
            f.state[job.item as usize] == ItemState::Running
                && f.attempts[job.item as usize] == job.attempt
        });
        if !wanted || run.tasks[job.task as usize].status != TaskStatus::Running {
            return;
        }
        match outcome {
            Ok(value) => {
                let value = (!value.is_null()).then(|| Arc::new(value));
                self.item_ended(job, agent, value.map(Detail::Output), now);
            }
            Err(failure) => self.item_failed(job, agent, failure, now),
        }
    }

    /// An instance's attempt failed: retried under the task's policy, or ends.
    pub(super) fn item_failed(&mut self, job: Job, agent: u16, failure: Failure, now: Instant) {
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        let spec = run.spec.clone();
        let (max, backoff) = Self::max_attempts(&spec, job.task);
        let live = matches!(run.status, RunStatus::Running | RunStatus::Paused);
        if failure.retryable && job.attempt < max && live {
            if let Some(f) = run.fanouts.get_mut(&job.task) {
                f.state[job.item as usize] = ItemState::Waiting;
                f.running -= 1;
            }
            let delay = self.retry_delay(backoff, job.attempt + 1, &failure);
            let retry = Job {
                attempt: job.attempt + 1,
                ..job
            };
            self.add_timer(super::TimerKind::Retry, now + delay, retry);
            return;
        }
        let message: Arc<str> = failure.message.as_str().into();
        self.item_ended(job, agent, Some(Detail::Error(message)), now);
    }

    /// A retry's time came: the instance runs again if it still waits.
    pub(super) fn item_retry(&mut self, job: Job) {
        let Some(run) = self.run_mut(job.slot, job.run) else {
            return;
        };
        if run.tasks[job.task as usize].status != TaskStatus::Running {
            return;
        }
        let Some(f) = run.fanouts.get_mut(&job.task) else {
            return;
        };
        let i = job.item as usize;
        if f.state[i] != ItemState::Waiting || f.attempts[i] + 1 != job.attempt {
            return;
        }
        f.state[i] = ItemState::Running;
        f.running += 1;
        self.ready.push_back(job);
    }

    /// An instance ended for good (an output, or an error): recorded; the next
    /// instance starts, or the fan-out ends.
    fn item_ended(&mut self, job: Job, agent: u16, detail: Option<Detail>, now: Instant) {
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        let at = Self::at_ns(run, now);
        let id = run.id;
        let Some(f) = run.fanouts.get_mut(&job.task) else {
            return;
        };
        let i = job.item as usize;
        f.running -= 1;
        f.ended += 1;
        let failed = matches!(detail, Some(Detail::Error(_)));
        match &detail {
            Some(Detail::Error(e)) => {
                f.state[i] = ItemState::Failed;
                f.failures.push((job.item, e.clone()));
            }
            Some(Detail::Output(v)) => {
                f.state[i] = ItemState::Succeeded;
                f.results[i] = Some(v.clone());
            }
            None => f.state[i] = ItemState::Succeeded,
        }
        let fail_fast = failed && f.policy == OnItemFailure::FailFast;
        let repeat = f.repeat;
        self.transitions += 1;
        self.counts.instances_done += 1;
        self.out.push(Out::Item {
            run: id,
            task: job.task,
            item: job.item,
            status: if failed {
                TaskStatus::Failed
            } else {
                TaskStatus::Succeeded
            },
            attempt: job.attempt,
            agent,
            at_us: at / 1000,
            detail,
        });
        if fail_fast {
            self.stop_items(job.slot, id, job.task);
            let run = self.runs[job.slot as usize].as_mut().expect("live run");
            let spec = run.spec.clone();
            let f = run.fanouts.get(&job.task).expect("fan-out");
            let (_, message) = f.failures.last().expect("a failure").clone();
            let message = format!(
                "{} {} of {} failed: {message}",
                if repeat { "iteration" } else { "item" },
                job.item,
                spec.ids[job.task as usize]
            );
            self.fail_task(job.slot, job.task, message, now);
            return;
        }
        if repeat {
            if !self.iterate(job.slot, job.task, job.item, now, true) {
                self.queue_items(job.slot, job.task);
            }
            return;
        }
        if !self.fan_in(job.slot, job.task, now) {
            self.queue_items(job.slot, job.task);
        }
    }

    /// Stops a fan-out's instances in flight (the task failed fast).
    pub(super) fn stop_items(&mut self, slot: u32, id: RunId, task: u32) {
        let stopped: Vec<_> = self
            .inflight
            .iter()
            .filter(|((r, t, comp, _), _)| *r == id && *t == task && *comp == FORWARD)
            .map(|(&key, &(_, agent))| (key, agent))
            .collect();
        for (key, agent) in stopped {
            if let Some((abort, _)) = self.inflight.remove(&key) {
                abort.abort();
                self.release_agent(agent);
            }
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        if let Some(f) = run.fanouts.get_mut(&task) {
            f.running = 0;
            f.next = f.len;
        }
    }

    /// When every instance ended: the task succeeds with the outputs in item
    /// order, or fails naming the items that failed. `true` when it ended.
    fn fan_in(&mut self, slot: u32, task: u32, now: Instant) -> bool {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let Some(f) = run.fanouts.get(&task) else {
            return false;
        };
        if f.ended < f.len {
            return false;
        }
        let name = run.spec.ids[task as usize].clone();
        let f = run.end_instances(task).expect("fan-out");
        if f.failures.is_empty() {
            let outputs = std::mem::take(&mut f.results)
                .into_iter()
                .map(|r| r.map_or(Value::Null, Arc::unwrap_or_clone))
                .collect();
            self.finish(
                slot,
                task,
                TaskStatus::Succeeded,
                Some(Detail::Output(Arc::new(Value::Array(outputs)))),
                now,
            );
            self.drain_newly_ready();
            self.check_done(slot);
        } else {
            f.failures.sort_by_key(|(i, _)| *i);
            let shown: Vec<String> = f
                .failures
                .iter()
                .take(5)
                .map(|(i, e)| format!("item {i}: {e}"))
                .collect();
            let more = f.failures.len().saturating_sub(shown.len());
            let message = format!(
                "{} of {} items of {name} failed ({}{})",
                f.failures.len(),
                f.len,
                shown.join("; "),
                if more > 0 {
                    format!("; and {more} more")
                } else {
                    String::new()
                }
            );
            self.fail_task(slot, task, message, now);
        }
        true
    }

    /// A task fails for good without an agent call of its own (a fan-out, or a
    /// list it cannot run over); the run fails.
    pub(super) fn fail_task(&mut self, slot: u32, task: u32, message: String, now: Instant) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        run.end_instances(task);
        let state = &mut run.tasks[task as usize];
        state.attempt = state.attempt.max(1);
        state.agent = NO_AGENT;
        let reason = format!("task `{}` failed: {message}", run.spec.ids[task as usize]);
        self.finish(
            slot,
            task,
            TaskStatus::Failed,
            Some(Detail::Error(message.into())),
            now,
        );
        self.fail_run(slot, reason, false);
    }

    /// A routing task's output must name one of its routes.
    pub(super) fn check_route(run: &Run, task: u32, output: &Value) -> Result<(), Failure> {
        let Some(routes) = run.spec.workflow.tasks[task as usize].routes.as_deref() else {
            return Ok(());
        };
        let allowed = || routes.names().collect::<Vec<_>>().join(", ");
        match route_of(Some(output)) {
            Some(name) if routes.get(name).is_some() => Ok(()),
            Some(name) => Err(Failure::permanent(format!(
                "task `{}` chose route `{name}`, which it does not declare (routes: {})",
                run.spec.ids[task as usize],
                allowed()
            ))),
            None => Err(Failure::permanent(format!(
                "task `{}` must choose a route: its output is {}, not a route name or a map with `route` (routes: {})",
                run.spec.ids[task as usize],
                kind(output),
                allowed()
            ))),
        }
    }

    /// The decision event of a routing task that succeeded.
    pub(super) fn route_taken(&mut self, slot: u32, task: u32) {
        let run = self.runs[slot as usize].as_ref().expect("live run");
        let Some(name) = route_of(run.outputs[task as usize].as_deref()) else {
            return;
        };
        let extra = serde_json::json!({ "route": name });
        self.decide(slot, Some(task), "route", extra);
    }

    /// Publishes a decision of the run in `slot` (about `task`, if given) on
    /// `baton.runs`: `{"run", "task", "decision", …extra}`.
    pub(super) fn decide(&mut self, slot: u32, task: Option<u32>, decision: &str, extra: Value) {
        let run = self.runs[slot as usize].as_ref().expect("live run");
        // Written straight to text (`extra`'s fields, then `run`, `task`,
        // `decision`): one a turn, so no map is built for it.
        let mut payload = String::with_capacity(96);
        payload.push('{');
        if let Value::Object(fields) = &extra {
            for (k, v) in fields {
                push_json(&mut payload, k);
                payload.push(':');
                payload.push_str(&v.to_string());
                payload.push(',');
            }
        }
        payload.push_str("\"run\":\"");
        payload.push_str(&run.id.to_string());
        payload.push('"');
        if let Some(t) = task {
            payload.push_str(",\"task\":");
            push_json(&mut payload, &run.spec.ids[t as usize]);
        }
        payload.push_str(",\"decision\":");
        push_json(&mut payload, decision);
        payload.push('}');
        self.out.push(Out::Event {
            run: run.id,
            kind: "baton.decision",
            payload,
        });
    }
}

/// Appends `text` as a JSON string (quotes, backslashes and control
/// characters escaped).
fn push_json(out: &mut String, text: &str) {
    use std::fmt::Write as _;
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Why a task on a route is skipped: a task that chooses among routes took one
/// this task is not on. `None` when every such choice includes it.
pub(super) fn off_route(run: &Run, task: u32) -> Option<String> {
    let spec = &run.spec;
    let id = &spec.workflow.tasks[task as usize].id;
    spec.plan.preds(task).iter().find_map(|&p| {
        let routes = spec.workflow.tasks[p as usize].routes.as_deref()?;
        if run.tasks[p as usize].status != TaskStatus::Succeeded {
            return None;
        }
        let on_some = routes.0.iter().any(|(_, targets)| targets.contains(id));
        let chosen = route_of(run.outputs[p as usize].as_deref())?;
        let (_, taken) = routes.get(chosen)?;
        (on_some && !taken.contains(id)).then(|| {
            format!(
                "not on route `{chosen}` chosen by `{}`",
                spec.ids[p as usize]
            )
        })
    })
}

#[cfg(test)]
mod json_tests {
    use super::push_json;

    #[test]
    fn strings_are_escaped_as_json_does() {
        for text in [
            "plain",
            "with \"quotes\" and \\",
            "tab\tnew\nline\r",
            "nul\u{0}esc\u{1b}bs\u{8}ff\u{c}",
            "é ✓",
        ] {
            let mut ours = String::new();
            push_json(&mut ours, text);
            assert_eq!(ours, serde_json::Value::from(text).to_string(), "{text:?}");
        }
    }
}
