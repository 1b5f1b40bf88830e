//! Multi-agent patterns, run as bounded loops (see `loops.rs`) whose
//! iterations are the agents' turns; each turn's agent and input follow from
//! the outputs recorded before it, so a resumed run replays its decisions
//! without asking an agent again.
//!
//! - **handoff**: each turn runs on the agent the previous turn handed
//!   control to (`{"handoff": {"to": AGENT, "input": …}}`); the first answer
//!   ends the task.
//! - **supervisor**: the supervisor's turn answers with the calls to make
//!   next (`{"delegate": [{"agent": WORKER, "input": …}, …]}`), which run side
//!   by side as the following iterations; once all have ended the supervisor
//!   takes the next turn, given the conversation so far; its answer
//!   (`{"finish": …}`, or any other output) ends the task.

use std::sync::Arc;

use baton_model::Pattern;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{Detail, Run, Scheduler};
use crate::store::TaskStatus;

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

/// The calls a supervisor's turn delegates (`{"delegate": [...]}`), `None`
/// when the output is an answer.
fn delegated(output: Option<&Value>) -> Option<&Value> {
    output.and_then(|o| o.get("delegate"))
}

/// What an iteration of a supervisor pattern is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Turn<'a> {
    /// The supervisor's `turn`-th turn (0, 1, …).
    Supervisor { turn: u32 },
    /// One call its turn `turn` delegated: `call` is `{"agent", "input"}`.
    Worker { turn: u32, call: &'a Value },
}

/// What iteration `i` of a supervisor pattern is, read from the iterations
/// before it (a supervisor's turn, then the calls it delegated, then its next
/// turn…); `None` when an earlier turn's output is not known yet.
pub(super) fn supervisor_turn(results: &[Option<Arc<Value>>], i: u32) -> Option<Turn<'_>> {
    let (mut at, mut turn) = (0u32, 0u32);
    loop {
        if i == at {
            return Some(Turn::Supervisor { turn });
        }
        let calls = delegated(results.get(at as usize)?.as_deref())?.as_array()?;
        let k = calls.len() as u32;
        if i <= at + k {
            return Some(Turn::Worker {
                turn,
                call: &calls[(i - at - 1) as usize],
            });
        }
        at += k + 1;
        turn += 1;
    }
}

/// The spec-local agent whose turn iteration `iteration` of a pattern task
/// is. `None` for a task without a pattern.
pub(super) fn turn_agent(run: &Run, task: u32, iteration: u32) -> Option<u16> {
    let spec = &run.spec;
    let pattern = spec.workflow.tasks[task as usize].pattern.as_deref()?;
    let results = || {
        let f = run
            .fanouts
            .get(&task)
            .or_else(|| run.ended_fanouts.get(&task));
        f.map(|f| f.results.as_slice())
    };
    let name = match pattern {
        Pattern::Handoff { .. } => match iteration.checked_sub(1) {
            None => pattern.start()?,
            Some(before) => handed_to(results()?.get(before as usize)?.as_deref()).ok()??,
        },
        Pattern::Supervisor { supervisor, .. } => match supervisor_turn(results()?, iteration)? {
            Turn::Supervisor { .. } => supervisor.as_str(),
            Turn::Worker { call, .. } => call.get("agent")?.as_str()?,
        },
    };
    spec.agents
        .iter()
        .position(|a| a.agent.name == name)
        .map(|i| i as u16)
}

/// What a supervisor pattern's iteration is given beside the task's usual
/// input: the supervisor its `turn` and the `conversation` so far (every
/// earlier turn and call with its output, in order); a worker its `turn`
/// and, as `input`, what the supervisor gave it. Neither gets `previous`.
pub(super) fn supervisor_input(run: &Run, task: u32, iteration: u32, m: &mut Map<String, Value>) {
    let Some(f) = run.fanouts.get(&task) else {
        return;
    };
    let Some(pattern) = run.spec.workflow.tasks[task as usize].pattern.as_deref() else {
        return;
    };
    let Pattern::Supervisor { supervisor, .. } = pattern else {
        return;
    };
    // The conversation says what came before, better than one output of it.
    m.remove("previous");
    match supervisor_turn(&f.results, iteration) {
        Some(Turn::Supervisor { turn }) => {
            let mut conversation = Vec::with_capacity(iteration as usize);
            for i in 0..iteration {
                let output = f.results[i as usize].as_deref().cloned();
                let entry = match supervisor_turn(&f.results, i) {
                    Some(Turn::Supervisor { turn }) => {
                        json!({ "turn": turn, "agent": supervisor, "output": output })
                    }
                    Some(Turn::Worker { turn, call }) => json!({
                        "turn": turn,
                        "agent": call.get("agent"),
                        "input": call.get("input"),
                        "output": output,
                    }),
                    None => continue,
                };
                conversation.push(entry);
            }
            m.insert("turn".into(), turn.into());
            m.insert("conversation".into(), Value::Array(conversation));
        }
        Some(Turn::Worker { turn, call }) => {
            m.insert("turn".into(), turn.into());
            m.insert(
                "input".into(),
                call.get("input").cloned().unwrap_or(Value::Null),
            );
        }
        None => {}
    }
}

/// Why a supervisor's delegation cannot run, if it cannot: it must be a
/// non-empty list of `{"agent": WORKER, "input": …}`, at most
/// `max_delegates` long, each agent one of `workers`.
fn check_delegation(calls: &Value, workers: &[String], max_delegates: u32) -> Result<(), String> {
    let shape = "`{\"delegate\": [{\"agent\": WORKER, \"input\": …}, …]}`";
    let Some(list) = calls.as_array().filter(|l| !l.is_empty()) else {
        return Err(format!(
            "`delegate` must be a non-empty list of calls ({shape}), found {calls}"
        ));
    };
    if list.len() > max_delegates as usize {
        return Err(format!(
            "`delegate` asks for {} calls, more than `max_delegates` ({max_delegates})",
            list.len()
        ));
    }
    for (k, call) in list.iter().enumerate() {
        match call.get("agent").and_then(Value::as_str) {
            None => {
                return Err(format!(
                    "`delegate[{k}]` needs `agent`, the worker to call ({shape}), found {call}"
                ));
            }
            Some(agent) if !workers.iter().any(|w| w == agent) => {
                return Err(format!(
                    "`delegate[{k}]` calls `{agent}`, which is not one of the supervisor's workers ({})",
                    workers.join(", ")
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Scheduler {
    /// A pattern's turn ended with `output`: the task ends (an answer, or a
    /// decision it cannot follow) or the next turns are added, waiting.
    /// `true` when the task ended. `live` is false while a resumed run
    /// replays its records (the decisions were published then).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn pattern_turn(
        &mut self,
        slot: u32,
        task: u32,
        iteration: u32,
        pattern: &Pattern,
        output: Option<Arc<Value>>,
        now: Instant,
        live: bool,
    ) -> bool {
        match pattern {
            Pattern::Handoff {
                agents,
                max_handoffs,
                ..
            } => self.handoff_turn(
                slot,
                task,
                iteration,
                (agents, *max_handoffs),
                output,
                now,
                live,
            ),
            Pattern::Supervisor {
                workers,
                max_turns,
                max_delegates,
                ..
            } => self.supervisor_step(
                slot,
                task,
                iteration,
                (workers, *max_turns, *max_delegates),
                output,
                now,
                live,
            ),
        }
    }

    /// A handoff's turn ended: its agent answered or handed control to
    /// another of the pattern's agents (the next turn is theirs).
    #[allow(clippy::too_many_arguments)]
    fn handoff_turn(
        &mut self,
        slot: u32,
        task: u32,
        iteration: u32,
        (agents, max_handoffs): (&[String], u32),
        output: Option<Arc<Value>>,
        now: Instant,
        live: bool,
    ) -> bool {
        let from = self.turn_name(slot, task, iteration);
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
            self.answer(slot, task, &from, iteration + 1, output, now, live);
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
        if iteration >= max_handoffs {
            let message = format!(
                "control was handed off `max_handoffs` ({max_handoffs}) times without an answer (last to `{to}`); raise `max_handoffs`, or have an agent answer"
            );
            self.fail_task(slot, task, message, now);
            return true;
        }
        if !self.next_turns(slot, task, 1, now, live) {
            return true;
        }
        if live {
            let extra = json!({ "from": from, "to": to, "iteration": iteration + 1 });
            self.decide(slot, Some(task), "handoff", extra);
        }
        false
    }

    /// A supervisor pattern's iteration ended: a delegated call (the
    /// supervisor's next turn comes once every call of its turn has ended),
    /// or the supervisor's turn (it delegates, or answers).
    #[allow(clippy::too_many_arguments)]
    fn supervisor_step(
        &mut self,
        slot: u32,
        task: u32,
        iteration: u32,
        (workers, max_turns, max_delegates): (&[String], u32, u32),
        output: Option<Arc<Value>>,
        now: Instant,
        live: bool,
    ) -> bool {
        let run = self.runs[slot as usize].as_ref().expect("live run");
        let f = run.fanouts.get(&task).expect("pattern");
        let turn = match supervisor_turn(&f.results, iteration) {
            Some(Turn::Worker { turn, .. }) => {
                if f.ended < f.len {
                    return false;
                }
                let next = turn + 1;
                if !self.next_turns(slot, task, 1, now, live) {
                    return true;
                }
                if live {
                    self.decide(slot, Some(task), "turn", json!({ "turn": next }));
                }
                return false;
            }
            Some(Turn::Supervisor { turn }) => turn,
            None => return false,
        };
        let from = self.turn_name(slot, task, iteration);
        let Some(calls) = delegated(output.as_deref()) else {
            if let Some(handoff) = output.as_deref().and_then(|o| o.get("handoff")) {
                let message = format!(
                    "turn {turn} ({from}): a supervisor delegates (`delegate`) or answers (`finish`), it does not hand off, found {{\"handoff\": {handoff}}}"
                );
                self.fail_task(slot, task, message, now);
                return true;
            }
            self.answer(slot, task, &from, turn + 1, output, now, live);
            return true;
        };
        if let Err(message) = check_delegation(calls, workers, max_delegates) {
            self.fail_task(slot, task, format!("turn {turn} ({from}): {message}"), now);
            return true;
        }
        if turn + 1 >= max_turns {
            let message = format!(
                "the supervisor (`{from}`) delegated on its last turn (`max_turns` is {max_turns}) instead of finishing; raise `max_turns`, or have it answer with `finish`"
            );
            self.fail_task(slot, task, message, now);
            return true;
        }
        let agents: Vec<Value> = calls
            .as_array()
            .map(|l| l.iter().filter_map(|c| c.get("agent").cloned()).collect())
            .unwrap_or_default();
        if !self.next_turns(slot, task, agents.len() as u32, now, live) {
            return true;
        }
        if live {
            let extra = json!({ "turn": turn, "agents": agents });
            self.decide(slot, Some(task), "delegate", extra);
        }
        false
    }

    /// The name of the agent whose turn iteration `iteration` is.
    fn turn_name(&self, slot: u32, task: u32, iteration: u32) -> String {
        let run = self.runs[slot as usize].as_ref().expect("live run");
        turn_agent(run, task, iteration)
            .map(|a| run.spec.agents[usize::from(a)].agent.name.clone())
            .unwrap_or_default()
    }

    /// `n` more turns, waiting (counted against the run's budget); `false`
    /// when the budget ended the task.
    fn next_turns(&mut self, slot: u32, task: u32, n: u32, now: Instant, live: bool) -> bool {
        if !self.book_instances(slot, task, n, now) {
            return false;
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let f = run.fanouts.get_mut(&task).expect("pattern");
        for _ in 0..n {
            f.push_waiting();
        }
        if live {
            f.decided = Some(now);
        }
        true
    }

    /// A pattern's answer: the task succeeds with the output's `finish`, or
    /// the output itself.
    #[allow(clippy::too_many_arguments)]
    fn answer(
        &mut self,
        slot: u32,
        task: u32,
        from: &str,
        turns: u32,
        output: Option<Arc<Value>>,
        now: Instant,
        live: bool,
    ) {
        let answer = output.map(|o| match o.get("finish") {
            Some(f) => Arc::new(f.clone()),
            None => o,
        });
        let run = self.runs[slot as usize].as_mut().expect("live run");
        run.end_instances(task);
        if live {
            let extra = json!({ "agent": from, "turns": turns });
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(outputs: &[Value]) -> Vec<Option<Arc<Value>>> {
        outputs.iter().map(|o| Some(Arc::new(o.clone()))).collect()
    }

    #[test]
    fn a_supervisors_iterations_are_its_turns_and_the_calls_each_delegated() {
        let r = results(&[
            json!({"delegate": [{"agent": "a", "input": 1}, {"agent": "b"}]}),
            json!("from a"),
            json!("from b"),
            json!({"delegate": [{"agent": "b", "input": 2}]}),
            json!("from b again"),
        ]);
        assert_eq!(supervisor_turn(&r, 0), Some(Turn::Supervisor { turn: 0 }));
        let Some(Turn::Worker { turn: 0, call }) = supervisor_turn(&r, 2) else {
            panic!("iteration 2 is turn 0's second call");
        };
        assert_eq!(call["agent"], "b");
        assert_eq!(supervisor_turn(&r, 3), Some(Turn::Supervisor { turn: 1 }));
        let Some(Turn::Worker { turn: 1, call }) = supervisor_turn(&r, 4) else {
            panic!("iteration 4 is turn 1's call");
        };
        assert_eq!(call["input"], 2);
        assert_eq!(supervisor_turn(&r, 5), Some(Turn::Supervisor { turn: 2 }));
        // Beyond what the recorded outputs tell: unknown.
        assert_eq!(supervisor_turn(&r[..0], 1), None);
    }

    #[test]
    fn a_delegation_names_workers_within_the_bound() {
        let workers = ["a".to_string(), "b".to_string()];
        assert!(check_delegation(&json!([{"agent": "a"}]), &workers, 2).is_ok());
        for (calls, says) in [
            (json!([]), "non-empty list"),
            (json!({"agent": "a"}), "non-empty list"),
            (json!([{"input": 1}]), "`delegate[0]` needs `agent`"),
            (
                json!([{"agent": "a"}, {"agent": "c"}]),
                "`delegate[1]` calls `c`",
            ),
            (
                json!([{"agent": "a"}, {"agent": "a"}, {"agent": "b"}]),
                "more than `max_delegates` (2)",
            ),
        ] {
            let message = check_delegation(&calls, &workers, 2).unwrap_err();
            assert!(message.contains(says), "{calls}: {message}");
        }
    }
}
