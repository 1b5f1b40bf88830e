//! Tasks that run a sub-workflow: each attempt starts a child run of the
//! task's workflow with what an agent would have been given as its input; the
//! child's end ends the attempt (success with the outputs of the child's last
//! tasks, or a failure carrying the child's reason, retried under the task's
//! policy with a new child). Pausing, resuming, cancelling and failing a run
//! reach its children.
//!
//! Durability: the child's creation is recorded before the parent's task
//! names it (`running`, detail `{"child": ID}`; for a loop's iteration, the
//! iteration's record), and the parent's task ends before the child's end is
//! recorded. A run resumed after a crash therefore finds its task's child
//! among the resumed runs and waits for it again; it never starts a second
//! child for an attempt that had one.

use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::dynamic::ItemEnd;
use super::input::call_input;
use super::{Detail, FORWARD, Job, NO_AGENT, NO_ITEM, Op, Out, Run, Scheduler, saga};
use crate::agent::Failure;
use crate::store::{RunId, RunStatus, TaskStatus};

/// What a child's end hands to its parent's task.
pub(super) struct ChildEnd {
    pub child: RunId,
    pub status: RunStatus,
    pub reason: Option<String>,
    /// The outputs of the child's tasks that nothing depends on, by task id.
    pub outputs: Value,
    /// Its compensations that failed for good.
    pub compensation_failures: Vec<String>,
}

/// The child run a task's record names (`{"child": ID}`).
pub(super) fn named_child(detail: Option<&str>) -> Option<RunId> {
    let v: Value = serde_json::from_str(detail?).ok()?;
    v.get("child")?.as_str()?.parse().ok()
}

/// What a finished child hands back: the outputs of its last tasks.
pub(super) fn child_end(run: &Run, status: RunStatus) -> ChildEnd {
    let spec = &run.spec;
    let mut outputs = Map::new();
    for &t in spec.plan.order() {
        if spec.plan.succs(t).is_empty() && run.tasks[t as usize].status == TaskStatus::Succeeded {
            let out = run.outputs[t as usize].as_deref().cloned();
            outputs.insert(spec.ids[t as usize].to_string(), out.unwrap_or(Value::Null));
        }
    }
    ChildEnd {
        child: run.id,
        status,
        reason: run.reason.clone(),
        outputs: Value::Object(outputs),
        compensation_failures: run.compensation_failures.clone(),
    }
}

impl Scheduler {
    /// Starts the child run of a task's attempt (or of a loop's iteration).
    pub(super) fn start_child(&mut self, job: Job, now: Instant) {
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        let spec = run.spec.clone();
        // The task's own workflow, or the team a supervisor's call names.
        let place = (job.item != NO_ITEM)
            .then(|| super::patterns::team_of(run, job.task, job.item))
            .flatten()
            .unwrap_or(0);
        let Some(child_spec) = spec.children.get(&(job.task, place)).cloned() else {
            return;
        };
        let level = self.level(job.slot) + 1;
        if level > self.options.max_depth {
            let failure = Failure::permanent(format!(
                "the child run would be at level {level}, deeper than this engine's `max_depth` ({}): the top run is level 1; the server's `[server] max_depth` raises it (up to {})",
                self.options.max_depth,
                crate::MAX_DEPTH
            ));
            return self.fail_unstarted(job, failure, now);
        }
        self.dispatched(&job, now);
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        let input = call_input(run, &job);
        let at = Self::at_ns(run, now);
        if job.item == NO_ITEM {
            let state = &mut run.tasks[job.task as usize];
            state.attempt = job.attempt;
            state.agent = NO_AGENT;
            state.dispatched_at = at;
            self.dispatch_hist
                .saturating_record(at.saturating_sub(state.ready_at).max(1));
            if job.attempt > 1 {
                run.retries += 1;
            }
        } else {
            Self::item_started(run, &job);
        }
        let parent = run.id;
        // Nobody waits for the child's creation: its parent learns of its end.
        let (reply, _) = oneshot::channel();
        let Some((child, child_slot)) = self.create(child_spec, input, None, reply) else {
            let failure = Failure::retryable("cannot start the child run: the state store failed");
            if job.item != NO_ITEM {
                return self.item_failed(job, NO_AGENT, failure, now);
            }
            return self.attempt_failed(job, failure, now);
        };
        let c = self.runs[child_slot as usize].as_mut().expect("live run");
        c.parent = Some(job);
        c.child_from = Some(now);
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        run.children.insert((job.task, job.item), child);
        let named = Detail::Output(Arc::new(serde_json::json!({ "child": child.to_string() })));
        if job.item == NO_ITEM {
            self.transition(job.slot, job.task, TaskStatus::Dispatched, None, now);
            self.transition(job.slot, job.task, TaskStatus::Running, Some(named), now);
        } else {
            self.transitions += 1;
            self.out.push(Out::Item {
                run: parent,
                task: job.task,
                item: job.item,
                status: TaskStatus::Running,
                attempt: job.attempt,
                agent: NO_AGENT,
                at_us: at / 1000,
                detail: Some(named),
            });
        }
        let mut extra = serde_json::json!({ "child": child.to_string() });
        if job.item != NO_ITEM {
            extra["iteration"] = job.item.into();
        }
        self.decide(job.slot, Some(job.task), "child", extra);
        // Part of a run already admitted: it starts now, not behind the runs
        // waiting for admission (its records follow its creation's either way).
        self.start(child_slot);
    }

    /// The run's level: 1 for a top run, its parent's level + 1 for a child.
    fn level(&self, slot: u32) -> usize {
        let mut level = 1;
        let mut run = self.runs[slot as usize].as_ref();
        while let Some(parent) = run.and_then(|r| r.parent) {
            level += 1;
            run = self
                .by_id
                .get(&parent.run)
                .and_then(|&s| self.runs[s as usize].as_ref());
        }
        level
    }

    /// A child run ended: its parent's task (or loop iteration) ends with it
    /// (before the child's end is recorded).
    pub(super) fn child_ended(&mut self, parent: Job, end: ChildEnd, now: Instant) {
        let Some(&slot) = self.by_id.get(&parent.run) else {
            return;
        };
        let job = Job { slot, ..parent };
        if job.comp_of != FORWARD {
            return self.child_compensated(job, end, now);
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        if run.children.get(&(job.task, job.item)) != Some(&end.child) {
            return self.child_ended_early(job, end, now);
        }
        let state = run.tasks[job.task as usize];
        if job.item == NO_ITEM
            && (state.status != TaskStatus::Running || state.attempt != job.attempt)
        {
            return;
        }
        run.children.remove(&(job.task, job.item));
        let mut extra = serde_json::json!({
            "child": end.child.to_string(),
            "status": end.status.as_str(),
        });
        if job.item != NO_ITEM {
            extra["iteration"] = job.item.into();
        }
        self.decide(slot, Some(job.task), "child_end", extra);
        if end.status == RunStatus::Completed {
            let run = self.runs[slot as usize].as_mut().expect("live run");
            run.done_children
                .entry(job.task)
                .or_default()
                .push(end.child);
            if job.item != NO_ITEM {
                return self.item_done(job, NO_AGENT, Ok(end.outputs), now);
            }
            self.finish(
                slot,
                job.task,
                TaskStatus::Succeeded,
                Some(Detail::Output(Arc::new(end.outputs))),
                now,
            );
            self.drain_newly_ready();
            self.check_done(slot);
        } else {
            let why = end.reason.as_deref().unwrap_or("no reason given");
            let failure =
                Failure::retryable(format!("child run {} {}: {why}", end.child, end.status));
            if job.item != NO_ITEM {
                return self.item_done(job, NO_AGENT, Err(failure), now);
            }
            self.attempt_failed(job, failure, now);
        }
    }

    /// A resumed run's loop iteration whose child ended before the loop
    /// started again: a success is recorded as the iteration's end and kept
    /// for the loop; a failure is dropped, and the iteration runs again.
    fn child_ended_early(&mut self, job: Job, end: ChildEnd, now: Instant) {
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        if job.item == NO_ITEM || run.fanouts.contains_key(&job.task) {
            return;
        }
        if end.status != RunStatus::Completed {
            return;
        }
        let detail = end.outputs.to_string();
        let at = Self::at_ns(run, now);
        run.recovered.entry(job.task).or_default().push(ItemEnd {
            item: job.item,
            status: TaskStatus::Succeeded,
            attempt: job.attempt,
            detail: Some(detail),
        });
        self.transitions += 1;
        self.out.push(Out::Item {
            run: job.run,
            task: job.task,
            item: job.item,
            status: TaskStatus::Succeeded,
            attempt: job.attempt,
            agent: NO_AGENT,
            at_us: at / 1000,
            detail: Some(Detail::Output(Arc::new(end.outputs))),
        });
    }

    /// The parent's compensation of `task` reaches the child runs it
    /// completed (one, or one per loop iteration), newest first: the next one
    /// with something to undo is taken back from the ended runs and runs its
    /// own compensations; its end goes on with the next. `false` when none is
    /// left to run: the rest were no longer known here (each recorded as a
    /// failed compensation) or had nothing to undo.
    pub(super) fn compensate_child(&mut self, slot: u32, task: u32) -> bool {
        loop {
            let run = self.runs[slot as usize].as_mut().expect("live run");
            let Some(child) = run.done_children.get_mut(&task).and_then(Vec::pop) else {
                run.done_children.remove(&task);
                return false;
            };
            let parent = run.id;
            let Some(mut c) = self.finished.remove(&child) else {
                run.compensation_failures.push(format!(
                    "compensation of `{}`: its child run {child} is no longer known here, its compensations did not run",
                    run.spec.ids[task as usize]
                ));
                continue;
            };
            self.finished_order.retain(|&r| r != child);
            c.undo_queue = saga::undo_queue(&c);
            if c.undo_queue.is_empty() {
                self.finished.insert(child, c);
                self.finished_order.push_back(child);
                continue;
            }
            let reason = format!("parent run {parent} failed: its compensations run");
            c.status = RunStatus::Compensating;
            c.failed = true;
            c.cancelled = true;
            c.reason = Some(reason.clone());
            c.ended = None;
            c.summary = None;
            c.parent = Some(Job {
                comp_of: task,
                ..Job::forward(parent, slot, task, 1)
            });
            // It is counted again when it ends.
            self.ended[0] = self.ended[0].saturating_sub(1);
            let child_slot = self.place(c);
            self.out.push(Out::Run {
                run: child,
                status: RunStatus::Compensating,
                at_ms: crate::clock::now_ms(),
                reason: Some(reason),
            });
            self.next_compensation(child_slot);
            return true;
        }
    }

    /// A child reopened to compensate ended: the task's next child
    /// compensates, or, the last one done, the task is compensated (unless a
    /// compensation failed: the child's failures are the task's) and the
    /// parent's next compensation runs.
    fn child_compensated(&mut self, job: Job, end: ChildEnd, now: Instant) {
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        if run.status != RunStatus::Compensating {
            return;
        }
        let task = job.comp_of;
        let name = run.spec.ids[task as usize].clone();
        for f in end.compensation_failures {
            run.compensation_failures.push(format!(
                "compensation of `{name}` (child run {}): {f}",
                end.child
            ));
        }
        if self.compensate_child(job.slot, task) {
            return;
        }
        let run = self.runs[job.slot as usize].as_mut().expect("live run");
        let prefix = format!("compensation of `{name}`");
        if !run
            .compensation_failures
            .iter()
            .any(|f| f.starts_with(&prefix))
        {
            run.compensations += 1;
            self.transition(job.slot, task, TaskStatus::Compensated, None, now);
        }
        self.next_compensation(job.slot);
    }

    /// A run stops: its children in progress are cancelled, and the tasks that
    /// started them end cancelled.
    pub(super) fn stop_children(&mut self, slot: u32, why: &str, now: Instant) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let children: Vec<((u32, u32), RunId)> = run.children.drain().collect();
        let id = run.id;
        for ((task, _), child) in children {
            let run = self.runs[slot as usize].as_ref().expect("live run");
            if !run.tasks[task as usize].status.is_final() {
                self.finish(slot, task, TaskStatus::Cancelled, None, now);
            }
            if let Some(&child_slot) = self.by_id.get(&child) {
                self.fail_run(child_slot, format!("parent run {id} {why}"), true);
            }
        }
    }

    /// Pause and resume reach a run's children (and theirs).
    pub(super) fn control_children(&mut self, slot: u32, op: fn() -> Op) {
        let run = self.runs[slot as usize].as_ref().expect("live run");
        let children: Vec<RunId> = run.children.values().copied().collect();
        for child in children {
            let _ = self.control(child, op());
        }
    }

    /// After a restart: each resumed task (or loop iteration) that had started
    /// a child waits for it again; one whose child is gone runs again.
    pub(super) fn relink_children(&mut self, resumed: &[RunId]) {
        for &id in resumed {
            let Some(&slot) = self.by_id.get(&id) else {
                continue;
            };
            self.relink_iterations(slot);
            let run = self.runs[slot as usize].as_mut().expect("live run");
            // Only tasks' own children are named here (iterations' are linked
            // when their loops start again).
            let named: Vec<(u32, RunId)> =
                run.children.iter().map(|(&(t, _), &c)| (t, c)).collect();
            for (task, child) in named {
                let run = self.runs[slot as usize].as_mut().expect("live run");
                let attempt = run.tasks[task as usize].attempt;
                match self.by_id.get(&child) {
                    Some(&child_slot) => {
                        let c = self.runs[child_slot as usize].as_mut().expect("live run");
                        c.parent = Some(Job::forward(id, slot, task, attempt));
                    }
                    None => {
                        run.children.remove(&(task, NO_ITEM));
                        run.tasks[task as usize].status = TaskStatus::Pending;
                        self.counts.running -= 1;
                    }
                }
            }
        }
    }
}
