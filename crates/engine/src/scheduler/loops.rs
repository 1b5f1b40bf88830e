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

use std::collections::HashMap;
use std::sync::Arc;

use baton_model::expr::{Field, Reference, lookup};
use baton_model::{OnLimit, Pattern};
use serde_json::Value;
use tokio::time::Instant;

use super::dynamic::{FanOut, ItemEnd, ItemState};
use super::input::resolve;
use super::{Detail, Job, Run, Scheduler};
use crate::store::{RunId, TaskStatus};

/// The agent a handoff names in a turn's output: `{"handoff": {"to": AGENT}}`.
/// `Err` for a `handoff` that names none.
fn handed_to(output: Option<&Value>) -> Result<Option<&str>, String> {
    let Some(handoff) = output.and_then(|o| o.get("handoff")) else {
        return Ok(None);
    };
    match handoff.get("to").and_then(Value::as_str) {
        Some(to) => Ok(Some(to)),
        None => Err(format!(
            "a handoff needs `to`, the agent to hand control to (`{{\"handoff\": {{\"to\": AGENT, \"input\": …}}}}`), found {handoff}"
        )),
    }
}

/// The spec-local agent whose turn iteration `iteration` of a pattern task
/// is: its `start` first, then the one the previous turn handed off to.
/// `None` for a task without a pattern.
pub(super) fn turn_agent(run: &Run, task: u32, iteration: u32) -> Option<u16> {
    let spec = &run.spec;
    let pattern = spec.workflow.tasks[task as usize].pattern.as_deref()?;
    let name = match iteration.checked_sub(1) {
        None => pattern.start()?.to_string(),
        Some(before) => {
            let f = run.fanouts.get(&task)?;
            let previous = f.results.get(before as usize)?.as_deref();
            handed_to(previous).ok()??.to_string()
        }
    };
    spec.agents
        .iter()
        .position(|a| a.agent.name == name)
        .map(|i| i as u16)
}

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
        run.fanouts.insert(task, FanOut::sequence());
        self.transition(slot, task, TaskStatus::Dispatched, None, now);
        self.transition(slot, task, TaskStatus::Running, None, now);
        let replaying = !last.is_empty();
        if !self.book_instances(slot, task, 1, now) {
            return;
        }
        loop {
            let run = self.runs[slot as usize].as_mut().expect("live run");
            let f = run.fanouts.get_mut(&task).expect("loop");
            let i = f.len - 1;
            let Some(end) = last.remove(&i) else { break };
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
                        run.children.insert(task, child);
                        let job = Job {
                            item: i,
                            ..Job::forward(run.id, slot, task, end.attempt)
                        };
                        self.link_child(child, job);
                        return;
                    }
                    break;
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
            return self.handoff_turn(slot, task, iteration, pattern, output, now, live);
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

    /// A handoff pattern's turn ended: its agent answered (the task succeeds
    /// with the answer: the output's `finish`, or the output itself) or
    /// handed control to another of the pattern's agents (the next turn is
    /// theirs). `true` when the task ended.
    #[allow(clippy::too_many_arguments)]
    fn handoff_turn(
        &mut self,
        slot: u32,
        task: u32,
        iteration: u32,
        pattern: &Pattern,
        output: Option<std::sync::Arc<Value>>,
        now: Instant,
        live: bool,
    ) -> bool {
        let Pattern::Handoff {
            agents,
            max_handoffs,
            ..
        } = pattern;
        let run = self.runs[slot as usize].as_ref().expect("live run");
        let from = turn_agent(run, task, iteration)
            .map(|a| run.spec.agents[usize::from(a)].agent.name.clone())
            .unwrap_or_default();
        let to = match handed_to(output.as_deref()) {
            Err(message) => {
                self.fail_task(
                    slot,
                    task,
                    format!("turn {iteration} ({from}): {message}"),
                    now,
                );
                return true;
            }
            Ok(to) => to.map(str::to_string),
        };
        let Some(to) = to else {
            // The answer: `finish` when the output says so, else the output.
            let answer = output.map(|o| match o.get("finish") {
                Some(f) => std::sync::Arc::new(f.clone()),
                None => o,
            });
            let run = self.runs[slot as usize].as_mut().expect("live run");
            run.end_instances(task);
            if live {
                let extra = serde_json::json!({ "agent": from, "turns": iteration + 1 });
                self.decide(slot, Some(task), "answer", extra);
            }
            self.finish(
                slot,
                task,
                TaskStatus::Succeeded,
                answer.map(Detail::Output),
                now,
            );
            self.drain_newly_ready();
            self.check_done(slot);
            return true;
        };
        if !agents.contains(&to) {
            let message = format!(
                "turn {iteration} ({from}) hands control to `{to}`, which is not one of the handoff's agents ({})",
                agents.join(", ")
            );
            self.fail_task(slot, task, message, now);
            return true;
        }
        if iteration >= *max_handoffs {
            let message = format!(
                "control was handed off `max_handoffs` ({max_handoffs}) times without an answer (last to `{to}`); raise `max_handoffs`, or have an agent answer"
            );
            self.fail_task(slot, task, message, now);
            return true;
        }
        if !self.book_instances(slot, task, 1, now) {
            return true;
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let f = run.fanouts.get_mut(&task).expect("loop");
        f.push_waiting();
        if live {
            f.decided = Some(now);
            let extra = serde_json::json!({ "from": from, "to": to, "iteration": iteration + 1 });
            self.decide(slot, Some(task), "handoff", extra);
        }
        false
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
