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
//! - **network**: agents message each other (`{"send": [{"to": AGENT,
//!   "message": …}]}`) in rounds: the messages a round sends, in iteration
//!   order, are the next round's turns, run side by side once the whole round
//!   has ended (so the order of turns follows from the recorded outputs, not
//!   from when calls happened to end). `finish` ends the task; so does a round
//!   that sends nothing, or reaching `max_messages`.
//! - **swarm**: rounds like a network's, whose turns are handoffs (one or
//!   several at once), and a blackboard the agents share: each round's
//!   writes are applied when it ends, in iteration order, with
//!   compare-and-set (a write whose expected version is not the key's is
//!   refused, and the next round is told). It also ends when `until` holds
//!   over the blackboard.

use std::sync::Arc;

use baton_model::Pattern;
use baton_model::expr::{Field, Reference, lookup};
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::{Detail, Run, Scheduler, resolve};
use crate::spec::Spec;
use crate::store::TaskStatus;

/// Where a network's turn came from.
#[derive(Debug, Clone, Copy)]
struct Sent {
    /// The spec-local agent that takes it.
    agent: u16,
    /// The iteration that sent the message (`u32::MAX` for the first turn).
    from: u32,
    /// Which of that iteration's messages.
    k: u32,
}

/// A network's or swarm's turns so far, decided a round at a time.
pub(super) struct Rounds {
    turns: Vec<Sent>,
    /// The first iteration of the round in progress.
    start: u32,
    round: u32,
    /// Messages sent (a network) or handoffs made (a swarm).
    messages: u32,
    /// A swarm's blackboard.
    board: Option<Board>,
}

/// A swarm's shared context: each key's value and version (the number of
/// writes applied to it), and the writes the last round had refused.
#[derive(Default)]
struct Board {
    values: Map<String, Value>,
    versions: Map<String, Value>,
    conflicts: Vec<Value>,
}

impl Board {
    fn version(&self, key: &str) -> u64 {
        self.versions.get(key).and_then(Value::as_u64).unwrap_or(0)
    }

    /// Applies one turn's `context` write, whole or not at all: refused when
    /// a version it `expect`s is not the key's (each such key becomes a
    /// conflict, told to the next round).
    fn write(&mut self, agent: &str, iteration: u32, context: &Value) {
        let mut refused = false;
        if let Some(expect) = context.get("expect").and_then(Value::as_object) {
            for (key, expected) in expect {
                let actual = self.version(key);
                if expected.as_u64() != Some(actual) {
                    refused = true;
                    self.conflicts.push(json!({
                        "agent": agent,
                        "iteration": iteration,
                        "key": key,
                        "expected": expected,
                        "actual": actual,
                    }));
                }
            }
        }
        if refused {
            return;
        }
        if let Some(set) = context.get("set").and_then(Value::as_object) {
            for (key, value) in set {
                let version = self.version(key) + 1;
                self.values.insert(key.clone(), value.clone());
                self.versions.insert(key.clone(), version.into());
            }
        }
    }

    /// What `until` and the task's output read: `{"context", "versions"}`.
    fn view(&self) -> Value {
        json!({ "context": self.values, "versions": self.versions })
    }
}

impl Rounds {
    /// A network's or swarm's first round: its `start` agent's turn. `None`
    /// for another task.
    pub(super) fn of(spec: &Spec, task: u32) -> Option<Rounds> {
        let pattern = spec.workflow.tasks[task as usize].pattern.as_deref()?;
        let board = match pattern {
            Pattern::Network { .. } => None,
            Pattern::Swarm { .. } => Some(Board::default()),
            _ => return None,
        };
        let start = pattern.start()?;
        let agent = spec.agents.iter().position(|a| a.agent.name == start)? as u16;
        Some(Rounds {
            turns: vec![Sent {
                agent,
                from: u32::MAX,
                k: 0,
            }],
            start: 0,
            round: 0,
            messages: 0,
            board,
        })
    }
}

/// The turns a network's or swarm's turn asks for: a network's messages
/// (`{"send": [...]}`), a swarm's handoffs (`{"handoff": {…}}` or a list);
/// empty when none.
fn sent(output: Option<&Value>, swarm: bool) -> Vec<&Value> {
    let field = if swarm { "handoff" } else { "send" };
    match output.and_then(|o| o.get(field)) {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) if swarm => vec![one],
        _ => Vec::new(),
    }
}

/// Why a swarm's turn cannot be followed, if it cannot: each handoff needs
/// `to`, one of the swarm's agents; a `context` write is `{"set": {…},
/// "expect": {KEY: VERSION}}`.
fn check_swarm(output: Option<&Value>, agents: &[String]) -> Result<(), String> {
    let shape = "`{\"handoff\": {\"to\": AGENT, \"input\": …}}` or a list of them";
    if let Some(handoff) = output.and_then(|o| o.get("handoff")) {
        check_to(
            &sent(output, true),
            agents,
            |_, _| {
                format!(
                    "a handoff needs `to`, the agent to hand control to ({shape}), found {handoff}"
                )
            },
            |k, to| format!("handoff {k} is to `{to}`, which is not one of the swarm's agents"),
        )?;
    }
    let Some(context) = output.and_then(|o| o.get("context")) else {
        return Ok(());
    };
    let shape = "`{\"context\": {\"set\": {KEY: VALUE}, \"expect\": {KEY: VERSION}}}`";
    let Some(map) = context.as_object() else {
        return Err(format!(
            "`context` must be a map ({shape}), found {context}"
        ));
    };
    for (key, value) in map {
        match key.as_str() {
            "set" if value.is_object() => {}
            "expect"
                if value
                    .as_object()
                    .is_some_and(|m| m.values().all(|v| v.as_u64().is_some())) => {}
            "set" | "expect" => {
                return Err(format!(
                    "`context.{key}` must be a map{} ({shape}), found {value}",
                    if key == "expect" {
                        " of versions (whole numbers)"
                    } else {
                        ""
                    }
                ));
            }
            other => {
                return Err(format!(
                    "`context` takes `set` and `expect`, found `{other}` ({shape})"
                ));
            }
        }
    }
    Ok(())
}

/// What ends a network or a swarm, besides `finish`.
#[derive(Clone, Copy)]
struct Bound<'a> {
    agents: &'a [String],
    /// Messages (a network) or handoffs (a swarm) at most.
    max: u32,
    on_limit: baton_model::OnLimit,
    until: Option<&'a baton_model::Condition>,
}

/// Why a network turn's `send` cannot be delivered, if it cannot: a list of
/// `{"to": AGENT, "message": …}`, each `to` one of the network's agents.
fn check_sends(output: Option<&Value>, agents: &[String]) -> Result<(), String> {
    let shape = "`{\"send\": [{\"to\": AGENT, \"message\": …}, …]}`";
    let Some(send) = output.and_then(|o| o.get("send")) else {
        return Ok(());
    };
    let Some(list) = send.as_array() else {
        return Err(format!(
            "`send` must be a list of messages ({shape}), found {send}"
        ));
    };
    check_to(
        &list.iter().collect::<Vec<_>>(),
        agents,
        |k, message| {
            format!("`send[{k}]` needs `to`, the agent to message ({shape}), found {message}")
        },
        |k, to| format!("`send[{k}]` is to `{to}`, which is not one of the network's agents"),
    )
}

/// Each of `list` names `to`, one of `agents`; else why not, from `missing`
/// (the entry's index and the entry) or `outside` (its index and its `to`,
/// the agents allowed added).
fn check_to(
    list: &[&Value],
    agents: &[String],
    missing: impl Fn(usize, &Value) -> String,
    outside: impl Fn(usize, &str) -> String,
) -> Result<(), String> {
    for (k, entry) in list.iter().enumerate() {
        match entry.get("to").and_then(Value::as_str) {
            None => return Err(missing(k, entry)),
            Some(to) if !agents.iter().any(|a| a == to) => {
                return Err(format!("{} ({})", outside(k, to), agents.join(", ")));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

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
            // A team's call names no agent: `None` below.
            Turn::Worker { call, .. } => call.get("agent")?.as_str()?,
        },
        Pattern::Network { .. } | Pattern::Swarm { .. } => {
            return run
                .rounds
                .get(&task)
                .and_then(|r| r.turns.get(iteration as usize))
                .map(|s| s.agent);
        }
    };
    spec.agents
        .iter()
        .position(|a| a.agent.name == name)
        .map(|i| i as u16)
}

/// What the call of `task` (iteration `iteration` of its pattern, or
/// `NO_ITEM`) may decide besides answering: its pattern's decisions at this
/// turn (a supervisor's workers answer only) and the task's routes.
pub(super) fn decisions(run: &Run, task: u32, iteration: u32) -> crate::agent::Decisions {
    let declared = &run.spec.workflow.tasks[task as usize];
    let mut d = crate::agent::Decisions {
        routes: declared
            .routes
            .as_deref()
            .map(|r| r.0.iter().map(|(name, _)| name.clone()).collect())
            .unwrap_or_default(),
        ..Default::default()
    };
    match declared.pattern.as_deref() {
        Some(Pattern::Handoff { agents, .. }) => d.handoff = agents.clone(),
        Some(Pattern::Swarm { agents, .. }) => {
            d.handoff = agents.clone();
            d.handoff_many = true;
            d.context = true;
        }
        Some(Pattern::Network { agents, .. }) => d.send = agents.clone(),
        Some(Pattern::Supervisor { workers, teams, .. }) => {
            let results = run.fanouts.get(&task).map(|f| f.results.as_slice());
            let turn = results.and_then(|r| supervisor_turn(r, iteration));
            if matches!(turn, Some(Turn::Supervisor { .. })) {
                d.delegate = workers.clone();
                d.delegate.extend(teams.iter().map(|t| t.name.clone()));
            }
        }
        None => {}
    }
    d
}

/// Who takes iteration `iteration` of a pattern task, for people: the
/// agent, or the team a hierarchical supervisor's call runs.
pub(super) fn turn_label(run: &Run, task: u32, iteration: u32) -> Option<String> {
    if let Some(agent) = turn_agent(run, task, iteration) {
        return Some(run.spec.agents[usize::from(agent)].agent.name.clone());
    }
    let k = team_of(run, task, iteration)?;
    match run.spec.workflow.tasks[task as usize].pattern.as_deref()? {
        Pattern::Supervisor { teams, .. } => teams.get(usize::from(k)).map(|t| t.name.clone()),
        _ => None,
    }
}

/// The team (its place among the task's sub-workflows) iteration
/// `iteration` of a hierarchical supervisor calls, if it calls one.
pub(super) fn team_of(run: &Run, task: u32, iteration: u32) -> Option<u16> {
    let pattern = run.spec.workflow.tasks[task as usize].pattern.as_deref()?;
    let Pattern::Supervisor { teams, .. } = pattern else {
        return None;
    };
    if teams.is_empty() {
        return None;
    }
    let f = run
        .fanouts
        .get(&task)
        .or_else(|| run.ended_fanouts.get(&task))?;
    let Turn::Worker { call, .. } = supervisor_turn(&f.results, iteration)? else {
        return None;
    };
    let name = call.get("agent")?.as_str()?;
    teams.iter().position(|t| t.name == name).map(|k| k as u16)
}

/// What a pattern's iteration is given beside the task's usual input. A
/// supervisor: its `turn` and the `conversation` so far (every earlier turn
/// and call with its output, in order); a worker its `turn` and, as `input`,
/// what the supervisor gave it. A network's turn: see [`network_input`].
/// Neither gets `previous`.
pub(super) fn pattern_input(run: &Run, task: u32, iteration: u32, m: &mut Map<String, Value>) {
    let Some(f) = run.fanouts.get(&task) else {
        return;
    };
    let Some(pattern) = run.spec.workflow.tasks[task as usize].pattern.as_deref() else {
        return;
    };
    if let Pattern::Network { .. } | Pattern::Swarm { .. } = pattern {
        return round_input(run, task, iteration, m);
    }
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

/// What a network's or swarm's turn is given: its `round` and who sent it
/// (`from`; `null` for the first turn, which has the task's `input`); a
/// network's turn the `message` it was sent, a swarm's turn the handoff's
/// `input` and the blackboard (`context`, `versions`, and the `conflicts`
/// of the writes the last round had refused).
fn round_input(run: &Run, task: u32, iteration: u32, m: &mut Map<String, Value>) {
    m.remove("previous");
    let (Some(f), Some(rounds)) = (run.fanouts.get(&task), run.rounds.get(&task)) else {
        return;
    };
    let Some(turn) = rounds.turns.get(iteration as usize) else {
        return;
    };
    // Only the round in progress is dispatched.
    m.insert("round".into(), rounds.round.into());
    if let Some(board) = &rounds.board {
        m.insert("context".into(), Value::Object(board.values.clone()));
        m.insert("versions".into(), Value::Object(board.versions.clone()));
        m.insert("conflicts".into(), Value::Array(board.conflicts.clone()));
    }
    if turn.from == u32::MAX {
        m.insert("from".into(), Value::Null);
        return;
    }
    let sender = rounds.turns[turn.from as usize].agent;
    m.insert(
        "from".into(),
        run.spec.agents[usize::from(sender)]
            .agent
            .name
            .clone()
            .into(),
    );
    let swarm = rounds.board.is_some();
    let what = if swarm { "input" } else { "message" };
    let given = sent(f.results[turn.from as usize].as_deref(), swarm)
        .get(turn.k as usize)
        .and_then(|s| s.get(what))
        .cloned()
        .unwrap_or(Value::Null);
    m.insert(what.into(), given);
}

/// Why a supervisor's delegation cannot run, if it cannot: it must be a
/// non-empty list of `{"agent": WORKER, "input": …}`, at most
/// `max_delegates` long, each agent one of `workers`.
fn check_delegation(
    calls: &Value,
    (workers, teams): (&[String], &[baton_model::Team]),
    max_delegates: u32,
) -> Result<(), String> {
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
            Some(agent)
                if !workers.iter().any(|w| w == agent)
                    && !teams.iter().any(|t| t.name == agent) =>
            {
                let known: Vec<&str> = (workers.iter().map(String::as_str))
                    .chain(teams.iter().map(|t| t.name.as_str()))
                    .collect();
                return Err(format!(
                    "`delegate[{k}]` calls `{agent}`, which is not one of the supervisor's workers ({})",
                    known.join(", ")
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
                teams,
                max_turns,
                max_delegates,
                ..
            } => self.supervisor_step(
                slot,
                task,
                iteration,
                ((workers, teams), *max_turns, *max_delegates),
                output,
                now,
                live,
            ),
            Pattern::Network {
                agents,
                max_messages,
                on_limit,
                ..
            } => {
                let bound = Bound {
                    agents,
                    max: *max_messages,
                    on_limit: *on_limit,
                    until: None,
                };
                self.round_step(slot, task, iteration, bound, output, now, live)
            }
            Pattern::Swarm {
                agents,
                max_handoffs,
                until,
                ..
            } => {
                let bound = Bound {
                    agents,
                    max: *max_handoffs,
                    on_limit: baton_model::OnLimit::Fail,
                    until: until.as_ref(),
                };
                self.round_step(slot, task, iteration, bound, output, now, live)
            }
        }
    }

    /// A network's or swarm's turn ended: `finish` ends the task (the
    /// round's other turns are stopped); the round's last turn to end applies
    /// a swarm's blackboard writes, then ends the task (`until` holds, no turn
    /// was asked for, or the next round would pass the bound) or adds the
    /// next round: the turns asked for, in iteration order.
    #[allow(clippy::too_many_arguments)]
    fn round_step(
        &mut self,
        slot: u32,
        task: u32,
        iteration: u32,
        bound: Bound<'_>,
        output: Option<Arc<Value>>,
        now: Instant,
        live: bool,
    ) -> bool {
        let from = self.turn_name(slot, task, iteration);
        let run = self.runs[slot as usize].as_ref().expect("live run");
        let swarm = run.rounds.get(&task).is_some_and(|r| r.board.is_some());
        let checked = if swarm {
            check_swarm(output.as_deref(), bound.agents)
        } else {
            check_sends(output.as_deref(), bound.agents)
        };
        if let Err(message) = checked {
            return self.fail_turn(slot, task, (iteration, &from), message, now);
        }
        if output.as_deref().is_some_and(|o| o.get("finish").is_some()) {
            let id = run.id;
            self.stop_items(slot, id, task);
            self.answer(slot, task, &from, iteration + 1, output, now, live);
            return true;
        }
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let spec = run.spec.clone();
        let Some(f) = run.fanouts.get(&task).filter(|f| f.ended == f.len) else {
            return false;
        };
        let len = f.len;
        // The round ended: a swarm's writes, then the turns asked for, in
        // iteration order.
        let rounds = run.rounds.get_mut(&task).expect("rounds");
        let name = |agent: u16| spec.agents[usize::from(agent)].agent.name.as_str();
        if let Some(board) = &mut rounds.board {
            board.conflicts.clear();
            for i in rounds.start..f.len {
                let context = f.results[i as usize]
                    .as_deref()
                    .and_then(|o| o.get("context"));
                if let Some(context) = context {
                    board.write(name(rounds.turns[i as usize].agent), i, context);
                }
            }
        }
        let mut next = Vec::new();
        for i in rounds.start..f.len {
            for (k, asked) in sent(f.results[i as usize].as_deref(), swarm)
                .iter()
                .enumerate()
            {
                let to = asked.get("to").and_then(Value::as_str).unwrap_or_default();
                let agent = spec.agents.iter().position(|a| a.agent.name == to);
                next.push(Sent {
                    agent: agent.map_or(u16::MAX, |a| a as u16),
                    from: i,
                    k: k as u32,
                });
            }
        }
        let board = rounds.board.as_ref().map(Board::view).unwrap_or_default();
        let run = self.runs[slot as usize].as_ref().expect("live run");
        let holds = bound.until.is_some_and(|until| {
            until.expr.eval(&|r: &Reference| {
                if spec.plan.id(&r.task) != Some(task) {
                    return resolve(run, r);
                }
                match &r.field {
                    Field::Status => Some(Value::String("running".into())),
                    Field::Output(path) => lookup(&board, path).cloned(),
                }
            })
        });
        let run = self.runs[slot as usize].as_mut().expect("live run");
        let rounds = run.rounds.get_mut(&task).expect("rounds");
        let (round, messages) = (rounds.round, rounds.messages);
        let over = u64::from(messages) + next.len() as u64 > u64::from(bound.max);
        if holds || next.is_empty() || over {
            if over && !holds && bound.on_limit == baton_model::OnLimit::Fail {
                let (n, max) = (next.len(), bound.max);
                let message = if swarm {
                    format!(
                        "round {} would hand off {n} more time(s), beyond `max_handoffs` ({max}; {messages} so far); raise `max_handoffs`, or have an agent `finish`",
                        round + 1
                    )
                } else {
                    format!(
                        "round {} would send {n} more message(s), beyond `max_messages` ({max}; {messages} sent so far); raise `max_messages`, have an agent `finish`, or set `on_limit: continue` to end with what the agents said last",
                        round + 1
                    )
                };
                self.fail_task(slot, task, message, now);
                return true;
            }
            let why = match (holds, over) {
                (true, _) => "until",
                (false, true) => "limit",
                (false, false) => "quiescent",
            };
            self.rounds_end(slot, task, why, now, live);
            return true;
        }
        let n = next.len() as u32;
        rounds.turns.extend(next);
        rounds.start = len;
        rounds.round += 1;
        rounds.messages += n;
        let writes = rounds
            .board
            .as_ref()
            .map(|b| (b.versions.clone(), b.conflicts.clone()));
        if !self.next_turns(slot, task, n, now, live) {
            return true;
        }
        if live {
            let mut extra = json!({ "round": round + 1, "turns": n });
            if let Some((versions, conflicts)) = writes {
                extra["versions"] = Value::Object(versions);
                extra["conflicts"] = Value::Array(conflicts);
            }
            self.decide(slot, Some(task), "round", extra);
        }
        false
    }

    /// A network or swarm that ended without `finish`: the task's output is
    /// what each agent said last, with the rounds it took, the messages (or
    /// handoffs) made and a swarm's blackboard.
    fn rounds_end(&mut self, slot: u32, task: u32, why: &str, now: Instant, live: bool) {
        let run = self.runs[slot as usize].as_mut().expect("live run");
        // The rounds stay: instance pages name each turn's agent.
        let (Some(f), Some(rounds)) = (run.fanouts.get(&task), run.rounds.get(&task)) else {
            return;
        };
        // Each agent's last turn, newest first, then in declaration order.
        let mut latest: Vec<Option<usize>> = vec![None; run.spec.agents.len()];
        for (i, turn) in rounds.turns.iter().enumerate().rev() {
            if let Some(l) = latest.get_mut(usize::from(turn.agent)) {
                l.get_or_insert(i);
            }
        }
        let mut last = Map::new();
        for (agent, turn) in latest.iter().enumerate() {
            if let Some(i) = turn {
                let output = f.results[*i].as_deref().cloned().unwrap_or(Value::Null);
                last.insert(run.spec.agents[agent].agent.name.clone(), output);
            }
        }
        let counted = if rounds.board.is_some() {
            "handoffs"
        } else {
            "messages"
        };
        let mut output = json!({ "rounds": rounds.round + 1, counted: rounds.messages });
        if let Some(board) = &rounds.board {
            output["context"] = Value::Object(board.values.clone());
            output["versions"] = Value::Object(board.versions.clone());
        }
        let extra = json!({ "rounds": rounds.round + 1, counted: rounds.messages });
        output["outputs"] = Value::Object(last);
        run.end_instances(task);
        if live {
            self.decide(slot, Some(task), why, extra);
        }
        self.finish(
            slot,
            task,
            TaskStatus::Succeeded,
            Some(Detail::Output(Arc::new(output))),
            now,
        );
        self.drain_newly_ready();
        self.check_done(slot);
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
                return self.fail_turn(slot, task, (iteration, &from), message, now);
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
        (workers, max_turns, max_delegates): ((&[String], &[baton_model::Team]), u32, u32),
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
                    "a supervisor delegates (`delegate`) or answers (`finish`), it does not hand off, found {{\"handoff\": {handoff}}}"
                );
                return self.fail_turn(slot, task, (turn, &from), message, now);
            }
            self.answer(slot, task, &from, turn + 1, output, now, live);
            return true;
        };
        if let Err(message) = check_delegation(calls, workers, max_delegates) {
            return self.fail_turn(slot, task, (turn, &from), message, now);
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

    /// A turn's decision cannot be followed: the task fails (not retried),
    /// the message naming the turn and its agent. Always `true` (ended).
    fn fail_turn(
        &mut self,
        slot: u32,
        task: u32,
        (turn, from): (u32, &str),
        message: String,
        now: Instant,
    ) -> bool {
        self.fail_task(slot, task, format!("turn {turn} ({from}): {message}"), now);
        true
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
        let teams = [baton_model::Team {
            name: "t".into(),
            workflow: baton_model::SubWorkflow::File("t.yaml".into()),
        }];
        let known = (&workers[..], &teams[..]);
        assert!(check_delegation(&json!([{"agent": "a"}, {"agent": "t"}]), known, 2).is_ok());
        for (calls, says) in [
            (json!([]), "non-empty list"),
            (json!({"agent": "a"}), "non-empty list"),
            (json!([{"input": 1}]), "`delegate[0]` needs `agent`"),
            (
                json!([{"agent": "a"}, {"agent": "c"}]),
                "`delegate[1]` calls `c`, which is not one of the supervisor's workers (a, b, t)",
            ),
            (
                json!([{"agent": "a"}, {"agent": "a"}, {"agent": "b"}]),
                "more than `max_delegates` (2)",
            ),
        ] {
            let message = check_delegation(&calls, known, 2).unwrap_err();
            assert!(message.contains(says), "{calls}: {message}");
        }
    }
}
