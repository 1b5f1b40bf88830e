//! Saga: a run that fails (or is cancelled) stops what is in flight and undoes
//! what succeeded, newest first, one compensation at a time.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::time::Instant;

use super::{Detail, FORWARD, Job, NO_ITEM, Out, Run, Scheduler, TimerKind};
use crate::agent::Outcome;
use crate::clock::now_ms;
use crate::spec::Undo;
use crate::store::{RunStatus, TaskStatus};

/// What a failed or cancelled run undoes: its succeeded tasks that have a
/// compensation, or whose child run completed (the child's compensations undo
/// it), latest in topological order first.
pub(super) fn undo_queue(run: &Run) -> VecDeque<u32> {
    let spec = &run.spec;
    spec.plan
        .order()
        .iter()
        .rev()
        .copied()
        .filter(|&t| {
            run.tasks[t as usize].status == TaskStatus::Succeeded
                && (spec.tasks[t as usize].undo.is_some() || run.done_children.contains_key(&t))
        })
        .collect()
}

impl Scheduler {
    /// A task failed for good, or the run was cancelled: stop what is in flight and
    /// undo what was done, newest first.
    pub(super) fn fail_run(&mut self, slot: u32, reason: String, cancelled: bool) {
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
        let stopped: Vec<_> = self
            .inflight
            .iter()
            .filter(|((r, _, comp, _), _)| *r == id && *comp == FORWARD)
            .map(|(&key, &(_, a))| (key, a))
            .collect();
        for (key, agent) in stopped {
            if let Some((abort, _)) = self.inflight.remove(&key) {
                abort.abort();
                self.release_agent(agent);
                // A fan-out's task ends once, however many instances it had running.
                let task = key.1;
                let run = self.runs[slot as usize].as_ref().expect("live run");
                if !run.tasks[task as usize].status.is_final() {
                    self.finish(slot, task, TaskStatus::Cancelled, None, now);
                }
            }
        }
        self.waiters.retain(|w| w.run != id);
        self.stop_children(slot, if cancelled { "cancelled" } else { "failed" }, now);
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

    pub(super) fn next_compensation(&mut self, slot: u32) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        match run.undo_queue.pop_front() {
            // A task that ran a child (and declares no compensation of its
            // own): the child runs its compensations.
            Some(orig) if run.spec.tasks[orig as usize].undo.is_none() => {
                if !self.compensate_child(slot, orig) {
                    self.next_compensation(slot);
                }
            }
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
                    item: NO_ITEM,
                };
                self.ready.push_back(job);
            }
            None => self.end(slot),
        }
    }

    pub(super) fn compensation_done(&mut self, job: Job, outcome: Outcome, now: Instant) {
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
                    let delay = self.retry_delay(backoff, job.attempt + 1, &failure);
                    let retry = Job {
                        attempt: job.attempt + 1,
                        ..job
                    };
                    self.add_timer(TimerKind::Retry, now + delay, retry);
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
}
