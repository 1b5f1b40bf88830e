//! Bounded loops: a task with `loop` runs as iterations `0, 1, …`, one at a
//! time, each given its number (`iteration`) and the previous iteration's
//! output (`previous`). After each iteration `until` is evaluated (the task's
//! own id in it names the iteration that just ended); the loop ends when it
//! holds, or when `max_iterations` ran (`on_limit` says whether that fails
//! the task). The task's output is the last iteration's.
//!
//! An iteration is an instance of its task (a [`FanOut`] that grows one item
//! at a time), recorded like a fan-out's instances when it ends and, when the
//! loop's body is a sub-workflow, when its child starts. The next iteration is
//! decided from the recorded output alone, so a resumed run replays its
//! decisions, waits for the child an iteration had started, and goes on from
//! the first iteration that had not ended: no iteration that ended runs again.
//! A multi-agent pattern (`patterns.rs`) is a loop whose iterations are its
//! agents' turns.

use std::collections::HashMap;
use std::sync::Arc;

use baton_model::expr::{Field, Reference, lookup};
use baton_model::{OnLimit, Pattern};
use serde_json::Value;
use tokio::time::Instant;

use super::dynamic::{FanOut, ItemEnd, ItemState};
use super::{Detail, Job, Scheduler, resolve};
use crate::store::{RunId, TaskStatus};

/// The child an iteration's last record names, if that record says it runs.
fn running_child(end: &ItemEnd) -> Option<RunId> {
    (end.status == TaskStatus::Running)
        .then(|| super::children::named_child(end.detail.as_deref()))
        .flatten()
}

impl Scheduler {
    /// A loop's task became ready: replays the iterations its records hold,
    /// then starts the next one (or ends the task, when the records already
    /// decide it).
    pub(super) fn start_loop(&mut self, slot: u32, task: u32, now: Instant) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let at = Self::at_ns(run, now);
        let state = &mut run.tasks[task as usize];
        state.attempt = 1;
        state.dispatched_at = at;
        let mut last: HashMap<u32, ItemEnd> = HashMap::new();
        for end in run.recovered.remove(&task).unwrap_or_default() {
            last.insert(end.item, end);
        }
        // A supervisor's delegated calls run side by side, as do a network
        // round's messages.
        let side_by_side = match run.spec.workflow.tasks[task as usize].pattern.as_deref() {
            Some(Pattern::Supervisor { max_delegates, .. }) => *max_delegates,
            Some(Pattern::Network { .. }) => u32::MAX,
            _ => 1,
        };
        if let Some(rounds) = super::patterns::Rounds::of(&run.spec, task) {
            run.rounds.insert(task, rounds);
        }
        run.fanouts
            .insert(task, FanOut::sequence().side_by_side(side_by_side));
        self.transition(slot, task, TaskStatus::Dispatched, None, now);
        self.transition(slot, task, TaskStatus::Running, None, now);
        let replaying = !last.is_empty();
        if !self.book_instances(slot, task, 1, now) {
            return;
        }
        // Each recorded end in order, as it happened: a decision made from it
        // adds the instances that follow (a supervisor's calls may have ended
        // in any order; one not ended is left waiting, and runs again).
        let mut next = 0;
        loop {
            let run = self.runs[slot as usize].as_mut().expect("live run");
            let f = run.fanouts.get_mut(&task).expect("loop");
            if next >= f.len {
                break;
            }
            let i = next;
            next += 1;
            let Some(end) = last.remove(&i) else {
                continue;
            };
            f.attempts[i as usize] = end.attempt;
            match end.status {
                TaskStatus::Succeeded => {
                    f.state[i as usize] = ItemState::Succeeded;
                    f.ended += 1;
                    f.results[i as usize] = end
                        .detail
                        .as_deref()
                        .map(|d| Arc::new(serde_json::from_str(d).unwrap_or(Value::Null)));
                    if self.iterate(slot, task, i, now, false) {
                        return;
                    }
                }
                TaskStatus::Failed => {
                    let message = format!(
                        "iteration {i} of {} failed: {}",
                        run.spec.ids[task as usize],
                        end.detail.unwrap_or_default()
                    );
                    return self.fail_task(slot, task, message, now);
                }
                _ => {
                    // The iteration's child still runs: wait for it.
                    let child = running_child(&end).filter(|c| self.by_id.contains_key(c));
                    if let Some(child) = child {
                        let run = self.runs[slot as usize].as_mut().expect("live run");
                        let f = run.fanouts.get_mut(&task).expect("loop");
                        f.state[i as usize] = ItemState::Running;
                        f.running += 1;
                        run.children.insert((task, i), child);
                        let job = Job {
                            item: i,
                            ..Job::forward(run.id, slot, task, end.attempt)
                        };
                        self.link_child(child, job);
                    }
                    // Without a child still running, it runs again. Either way
                    // the iterations after it are replayed too (a supervisor's
                    // other calls may have ended).
                }
            }
        }
        if !replaying {
            self.iteration_started(slot, task, 0);
        }
        self.queue_items(slot, task);
    }

    /// An iteration succeeded: the loop ends (`until` holds, or the bound is
    /// reached) or the next iteration is added, waiting. `true` when the task
    /// ended. `live` is false while a resumed run replays its records (the
    /// decisions were published then).
    pub(super) fn iterate(
        &mut self,
        slot: u32,
        task: u32,
        iteration: u32,
        now: Instant,
        live: bool,
    ) -> bool {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let spec = run.spec.clone();
        let declared = &spec.workflow.tasks[task as usize];
        let l = declared.looping().expect("a loop");
        let output = run.fanouts.get(&task).expect("loop").results[iteration as usize].clone();
        if let Some(pattern) = declared.pattern.as_deref() {
            return self.pattern_turn(slot, task, iteration, pattern, output, now, live);
        }
        let holds = l.until.as_ref().map(|u| {
            u.expr.eval(&|r: &Reference| {
                if spec.plan.id(&r.task) != Some(task) {
                    return resolve(run, r);
                }
                match &r.field {
                    Field::Status => Some(Value::String("succeeded".into())),
                    Field::Output(path) => lookup(output.as_deref()?, path).cloned(),
                }
            })
        });
        let ran = iteration + 1;
        let at_bound = ran >= l.max_iterations;
        if holds != Some(true) && !at_bound {
            if !self.book_instances(slot, task, 1, now) {
                return true;
            }
            let run = self.runs[slot as usize].as_mut().expect("live run");
            let f = run.fanouts.get_mut(&task).expect("loop");
            f.push_waiting();
            if live {
                f.decided = Some(now);
            }
            if live {
                self.iteration_started(slot, task, ran);
            }
            return false;
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        run.end_instances(task);
        if live {
            let extra = serde_json::json!({ "iterations": ran, "until": holds });
            self.decide(slot, Some(task), "loop_end", extra);
        }
        if holds == Some(false) && l.on_limit == OnLimit::Fail {
            let until = l.until.as_ref().map_or("", |u| u.text.as_str());
            let message = format!(
                "the loop ran `max_iterations` ({}) and `until` ({until}) still does not hold; raise `max_iterations`, or set `on_limit: continue` to go on with the last iteration's output",
                l.max_iterations
            );
            self.fail_task(slot, task, message, now);
            return true;
        }
        self.finish(
            slot,
            task,
            TaskStatus::Succeeded,
            output.map(Detail::Output),
            now,
        );
        self.drain_newly_ready();
        self.check_done(slot);
        true
    }

    /// The decision that starts an iteration, on `baton.runs`.
    fn iteration_started(&mut self, slot: u32, task: u32, iteration: u32) {
        let extra = serde_json::json!({ "iteration": iteration });
        self.decide(slot, Some(task), "iteration", extra);
    }

    /// A resumed run's loop whose iteration had started a child: the child's
    /// end reaches that iteration.
    pub(super) fn link_child(&mut self, child: RunId, job: Job) {
        if let Some(&child_slot) = self.by_id.get(&child) {
            let c = self.runs[child_slot as usize].as_mut().expect("live run");
            c.parent = Some(job);
        }
    }

    /// After a restart, before the loops start again: the children their
    /// iterations had started report to them (an end that comes before the
    /// loop starts again is kept for it, see [`Scheduler::child_ended`]).
    pub(super) fn relink_iterations(&mut self, slot: u32) {
        let run = self.runs[slot as usize].as_ref().expect("live run");
        let id = run.id;
        let mut links = Vec::new();
        for (&task, ends) in &run.recovered {
            let mut last: HashMap<u32, &ItemEnd> = HashMap::new();
            for end in ends {
                last.insert(end.item, end);
            }
            for end in last.values() {
                if let Some(child) = running_child(end) {
                    let job = Job {
                        item: end.item,
                        ..Job::forward(id, slot, task, end.attempt)
                    };
                    links.push((child, job));
                }
            }
        }
        for (child, job) in links {
            self.link_child(child, job);
        }
    }
}
