//! The validated workflow: what the planner and the engine consume.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::expr::Expr;

/// A validated workflow. Build one with [`crate::load`], or construct it in
/// code and check it with [`crate::validate`].
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Workflow {
    /// Human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The workflow's own version string.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Free-form orchestration pattern (`supervisor`, `pipeline`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub orchestration_pattern: Option<String>,
    /// Agents, in declaration order.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "agents_as_map"
    )]
    pub agents: Vec<Agent>,
    /// Tasks, in declaration order.
    pub tasks: Vec<Task>,
    /// How the run is coordinated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub coordination: Option<Coordination>,
    /// The tenant the workflow belongs to (see [`check_tenant`]): `baton serve`
    /// sets it to the tenant of the token that posted the workflow, keeps its
    /// runs, topics and `worker` agents apart from other tenants', and its
    /// children inherit it. A local `baton run` ignores it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// The longest tenant name.
pub const MAX_TENANT: usize = 32;

/// Whether `name` can name a tenant: 1 to [`MAX_TENANT`] lowercase ASCII
/// letters, digits and `-`, starting with a letter or a digit, and not
/// `baton` (the server's own namespace). A tenant's topics are those named
/// `<tenant>.…`, so a tenant name holds no `.`.
pub fn check_tenant(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TENANT
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if !ok {
        return Err(format!(
            "`{name}` is not a tenant name: 1 to {MAX_TENANT} lowercase letters, digits and `-`, starting with a letter or a digit"
        ));
    }
    if name == "baton" {
        return Err("`baton` is the server's own namespace, not a tenant name".into());
    }
    Ok(())
}

impl Workflow {
    /// Replaces the agents that `overrides` names (a `baton.toml`'s agents):
    /// type and settings come from the override; capabilities and concurrency
    /// too, unless the override leaves them out. Agents not named are kept.
    pub fn override_agents(&mut self, overrides: &[Agent]) {
        for agent in &mut self.agents {
            if let Some(over) = overrides.iter().find(|a| a.name == agent.name) {
                let capabilities = std::mem::take(&mut agent.capabilities);
                let concurrency = agent.concurrency;
                *agent = over.clone();
                if agent.capabilities.is_empty() {
                    agent.capabilities = capabilities;
                }
                agent.concurrency = agent.concurrency.or(concurrency);
            }
        }
        // Children run on the same agents: an operator's agent replaces a
        // child's of the same name too.
        for task in &mut self.tasks {
            for (_, sub) in task.sub_workflows_mut() {
                if let SubWorkflow::Inline(child) = sub {
                    child.override_agents(overrides);
                }
            }
        }
    }
}

/// An agent that tasks can be assigned to.
///
/// The settings after `concurrency` configure the built-in kinds: `breaker`
/// applies to every type; the others only to their own (`command`/`env` to
/// `command`, `url`/`headers` to `http`, `latency`/`failure_rate`/`seed` to
/// `simulate`), which validation enforces.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Agent {
    /// The agent's name (its key in the `agents` map).
    #[serde(skip)]
    pub name: String,
    /// The agent's type, as written (`research_agent`, `noop`, `command`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// What the agent can do; matched against a task's `requires`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
    /// How many tasks the agent runs at once (unbounded when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// When to stop calling a failing agent (no breaker when absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerPolicy>,
    /// The process a `command` agent runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Command>,
    /// Whether a `command` agent's command line runs through `sh -c`
    /// ([`Command::Shell`]); without it a string is split into words and run
    /// directly.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shell: bool,
    /// Environment variables set for a `command` agent's process, in
    /// declaration order. The process gets these, Baton's `BATON_*` variables
    /// and a few harmless ones of the engine's (`PATH`, `HOME`, locale, `TZ`,
    /// `TMPDIR`), nothing else.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "pairs_as_map")]
    pub env: Vec<(String, String)>,
    /// The working directory of a `command` agent's process (absent: the
    /// engine's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// The longest a `command` agent's call may take, whatever the task's own
    /// `timeout`: past it the process and everything it started are killed and
    /// the call fails (retryable).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    /// Where an `http` agent sends its requests (an `http://` or `https://`
    /// URL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Headers an `http` agent adds to each request, in declaration order.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "pairs_as_map")]
    pub headers: Vec<(String, String)>,
    /// How long a `simulate` agent takes per call (absent: the task's
    /// `estimate`, or no time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// The probability (0 to 1) that a `simulate` agent's call fails (absent: 0).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Seeds a `simulate` agent's random draws (absent: derived from the run's
    /// seed and the agent's name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// `simulate`: scripted outputs by task id (a task not listed gets
    /// `{"latency_us": …}`).
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "values_as_map"
    )]
    pub outputs: Vec<(String, Value)>,
    /// An `llm` agent's OpenAI-compatible API: the base URL its
    /// `/chat/completions` is under (`http://127.0.0.1:11434/v1`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The model an `llm` agent asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The system prompt of an `llm` agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// An `llm` agent's sampling temperature (0 to 2).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// The most tokens an `llm` agent's answer may take.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// The environment variable holding an `llm` agent's API key (the key
    /// itself never appears in a workflow).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Whether an `http` or `llm` agent asks for its answer as a stream
    /// (`message/stream`; `stream: true`), whose parts are reported as
    /// progress while the call runs.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
}

/// A circuit breaker's policy: the breaker opens when, among the last
/// `window` calls (and at least `min_calls` of them), the share that failed
/// reaches `failure_rate`; after `cooldown` one probe call decides whether it
/// closes again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BreakerPolicy {
    /// The share of failed calls that opens the breaker (in (0, 1]).
    pub failure_rate: f64,
    /// How many recent calls are counted (≥ 1).
    pub window: u32,
    /// No tripping before this many calls are in the window (1 to `window`).
    pub min_calls: u32,
    /// How long the breaker stays open before a half-open probe (> 0).
    #[serde(serialize_with = "duration")]
    pub cooldown: Duration,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        BreakerPolicy {
            failure_rate: 0.5,
            window: 20,
            min_calls: 10,
            cooldown: Duration::from_secs(30),
        }
    }
}

/// The process a `command` agent runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Command {
    /// A command line run through `sh -c` (the agent says `shell: true`).
    Shell(String),
    /// A program and its arguments, run directly (never empty).
    Argv(Vec<String>),
}

/// How long a `simulate` agent's call takes: a constant or a distribution
/// to draw from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Latency {
    /// Always the same.
    Constant(Duration),
    /// Uniform between `min` and `max` (`min` ≤ `max`).
    Uniform {
        /// The shortest latency.
        min: Duration,
        /// The longest latency.
        max: Duration,
    },
    /// Exponential with the given mean.
    Exponential {
        /// The mean latency.
        mean: Duration,
    },
    /// Normal with the given mean and standard deviation (negative draws
    /// count as zero).
    Normal {
        /// The mean latency.
        mean: Duration,
        /// The standard deviation.
        stddev: Duration,
    },
}

/// Written as the language reads it: a constant as a bare duration, a
/// distribution as `{distribution, ...its fields}`.
impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let (name, fields): (&str, &[(&str, Duration)]) = match *self {
            Latency::Constant(d) => return duration(&d, s),
            Latency::Uniform { min, max } => ("uniform", &[("min", min), ("max", max)]),
            Latency::Exponential { mean } => ("exponential", &[("mean", mean)]),
            Latency::Normal { mean, stddev } => ("normal", &[("mean", mean), ("stddev", stddev)]),
        };
        let mut map = s.serialize_map(Some(1 + fields.len()))?;
        map.serialize_entry("distribution", name)?;
        for (key, d) in fields {
            map.serialize_entry(key, &crate::duration::format_exact(*d))?;
        }
        map.end()
    }
}

/// One unit of work.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Task {
    /// Unique id within the workflow.
    pub id: String,
    /// The agent that runs it; optional when no agents are declared or when
    /// `requires` lets the engine choose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Ids of the tasks that must finish first.
    pub depends_on: Vec<String>,
    /// A hint that the task may run alongside its siblings.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parallel: bool,
    /// Capabilities the executing agent must have.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Expected duration; weights the critical path (absent = 1 unit = 1 s).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub estimate: Option<Duration>,
    /// Per-attempt time limit.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
    // The fields below are rare in large workflows; boxing them keeps a
    // task at ~170 bytes instead of ~640 (a million-task plan is bounded by
    // memory traffic).
    /// Retry policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry: Option<Box<RetryPolicy>>,
    /// What undoes this task when the run fails after it succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compensation: Option<Box<Compensation>>,
    /// Runs the task only when this holds; otherwise it is skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Box<Condition>>,
    /// Completes the task when a matching event arrives.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<Box<EventFilter>>,
    /// Input handed to the agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Box<Value>>,
    /// Run once per item of an upstream output list (a fan-out).
    #[serde(skip_serializing_if = "ForEach::is_implied")]
    pub for_each: Option<Box<ForEach>>,
    /// The successors this task's output chooses among, by route name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routes: Option<Box<Routes>>,
    /// Another workflow this task runs as a child run (instead of an agent call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<Box<SubWorkflow>>,
    /// Runs the task again, each iteration given the previous one's output,
    /// until a condition holds or a bound is reached.
    #[serde(rename = "loop", skip_serializing_if = "Option::is_none")]
    pub repeat: Option<Box<Loop>>,
    /// A multi-agent pattern the task runs (docs/patterns.md), compiled to a
    /// loop whose iterations the pattern's agents take turns at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Box<Pattern>>,
}

/// A multi-agent pattern: how a task's agents cooperate, run as a bounded
/// loop ([`Pattern::as_loop`]) whose iterations are the agents' turns.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Pattern {
    /// The active agent answers, or hands control to another of `agents`
    /// (`{"handoff": {"to": AGENT, "input": …}}`); at most `max_handoffs`
    /// handoffs.
    Handoff {
        /// The agents that may hold control.
        agents: Vec<String>,
        /// The agent that holds it first (the first of `agents` when absent).
        #[serde(skip_serializing_if = "Option::is_none")]
        start: Option<String>,
        /// The bound: handoffs at most.
        max_handoffs: u32,
    },
    /// A coordinator agent is called each turn with the conversation so far
    /// and answers with the workers to call next, run in parallel
    /// (`{"delegate": [{"agent": WORKER, "input": …}, …]}`), or with the
    /// result (`{"finish": …}`); at most `max_turns` supervisor turns.
    Supervisor {
        /// The coordinator: it takes every other turn.
        supervisor: String,
        /// The agents it may delegate to.
        workers: Vec<String>,
        /// The bound: supervisor turns at most.
        max_turns: u32,
        /// Calls one delegation may ask for at most (they run in parallel).
        max_delegates: u32,
        /// Teams it may delegate to as well (`type: hierarchical`): each call
        /// to one runs the team's workflow as a child run.
        #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "teams_map")]
        teams: Vec<Team>,
    },
    /// Agents message each other directly (`{"send": [{"to": AGENT,
    /// "message": …}, …]}`), in rounds: every message a round sends is a turn
    /// of the next round, all run side by side. The task ends on `finish`,
    /// when a round sends nothing (quiescence), or at `max_messages`
    /// (`on_limit` says whether that fails it).
    Network {
        /// The agents that may send and receive.
        agents: Vec<String>,
        /// The agent that takes the first turn (the first of `agents` when
        /// absent).
        #[serde(skip_serializing_if = "Option::is_none")]
        start: Option<String>,
        /// The bound: messages sent at most.
        max_messages: u32,
        /// What reaching the bound does.
        on_limit: OnLimit,
    },
    /// Agents hand control to one another (`{"handoff": {"to": AGENT,
    /// "input": …}}`, or a list of them: those turns run side by side) and
    /// share a blackboard: keys with versions, written with compare-and-set
    /// (`{"context": {"set": {KEY: VALUE}, "expect": {KEY: VERSION}}}`). Runs
    /// in rounds like a network; ends on `finish`, when `until` holds over
    /// the blackboard after a round, when a round hands off to nobody, or
    /// fails past `max_handoffs`.
    Swarm {
        /// The agents of the swarm.
        agents: Vec<String>,
        /// The agent that takes the first turn (the first of `agents` when
        /// absent).
        #[serde(skip_serializing_if = "Option::is_none")]
        start: Option<String>,
        /// The bound: handoffs at most.
        max_handoffs: u32,
        /// Ends the swarm when it holds after a round; the task's own id in
        /// it reads the blackboard (`TASK.output.context.KEY`).
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<Condition>,
    },
}

/// A team of a hierarchical supervisor: the name its delegations call it by,
/// and the workflow each call runs as a child run (a supervisor of its own,
/// for a deeper hierarchy).
#[derive(Debug, Clone, PartialEq)]
pub struct Team {
    /// Its name, unique among the supervisor's workers and teams.
    pub name: String,
    /// What a call to it runs.
    pub workflow: SubWorkflow,
}

/// Teams are written as a map, name → sub-workflow.
fn teams_map<S: serde::Serializer>(teams: &[Team], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(teams.len()))?;
    for team in teams {
        map.serialize_entry(&team.name, &team.workflow)?;
    }
    map.end()
}

impl Pattern {
    /// The largest `max_handoffs` a workflow may ask for.
    pub const MAX_HANDOFFS: u32 = 1_000;
    /// The largest `max_turns` a workflow may ask for.
    pub const MAX_TURNS: u32 = 1_000;
    /// The largest `max_delegates` a workflow may ask for.
    pub const MAX_DELEGATES: u32 = 1_000;
    /// `max_delegates` when a supervisor does not say.
    pub const DEFAULT_DELEGATES: u32 = 10;
    /// The largest `max_messages` a workflow may ask for.
    pub const MAX_MESSAGES: u32 = 10_000_000;

    /// The bounded loop the pattern runs as: one iteration per turn (a
    /// supervisor's delegated calls are iterations too), failing at the
    /// bound.
    pub fn as_loop(&self) -> Loop {
        let max_iterations = match self {
            Pattern::Handoff { max_handoffs, .. } => max_handoffs + 1,
            Pattern::Supervisor {
                max_turns,
                max_delegates,
                ..
            } => max_turns.saturating_mul(max_delegates.saturating_add(1)),
            Pattern::Network { max_messages, .. } => max_messages.saturating_add(1),
            Pattern::Swarm { max_handoffs, .. } => max_handoffs.saturating_add(1),
        };
        Loop {
            until: None,
            max_iterations,
            on_limit: OnLimit::Fail,
        }
    }

    /// The most turns that follow one another (a supervisor's delegated calls
    /// run side by side): what bounds the pattern's time.
    pub fn longest_turns(&self) -> u32 {
        match self {
            Pattern::Handoff { max_handoffs, .. } => max_handoffs + 1,
            Pattern::Supervisor { max_turns, .. } => max_turns.saturating_mul(2).saturating_sub(1),
            Pattern::Network { max_messages, .. } => max_messages.saturating_add(1),
            Pattern::Swarm { max_handoffs, .. } => max_handoffs.saturating_add(1),
        }
    }

    /// The agent that takes the first turn.
    pub fn start(&self) -> Option<&str> {
        match self {
            Pattern::Handoff { agents, start, .. }
            | Pattern::Network { agents, start, .. }
            | Pattern::Swarm { agents, start, .. } => {
                start.as_deref().or(agents.first().map(String::as_str))
            }
            Pattern::Supervisor { supervisor, .. } => Some(supervisor),
        }
    }

    /// The pattern's name in the language.
    pub fn name(&self) -> &'static str {
        match self {
            Pattern::Handoff { .. } => "handoff",
            Pattern::Supervisor { teams, .. } if !teams.is_empty() => "hierarchical",
            Pattern::Supervisor { .. } => "supervisor",
            Pattern::Network { .. } => "network",
            Pattern::Swarm { .. } => "swarm",
        }
    }
}

/// A bounded loop: the task (an agent call, or a sub-workflow: a group of
/// tasks) runs as iterations `0, 1, …`, each given the previous iteration's
/// output, until `until` holds over an iteration's output or `max_iterations`
/// ran. The task's output is the last iteration's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Loop {
    /// Ends the loop when it holds; the task's own id in it refers to the
    /// iteration that just ended (`review.output.approved == true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<Condition>,
    /// The bound: iterations that may run at most.
    pub max_iterations: u32,
    /// What reaching the bound with `until` still false does.
    pub on_limit: OnLimit,
}

impl Loop {
    /// The largest `max_iterations` a workflow may ask for.
    pub const MAX_ITERATIONS: u32 = 10_000;
}

/// What a loop does when it ran `max_iterations` and `until` still does not hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnLimit {
    /// The task fails, saying the bound was reached.
    #[default]
    Fail,
    /// The task succeeds with the last iteration's output.
    Continue,
}

/// The workflow a task runs as a child run. The engine runs only `Inline`
/// ones: `baton run` reads `File`s (relative to the parent's file) and
/// `baton serve` looks `Catalog` names up, each replacing the reference by
/// the workflow it names before the run starts, so a run's stored document
/// holds every child it may start.
#[derive(Debug, Clone, PartialEq)]
pub enum SubWorkflow {
    /// The child, written in the parent (checked with it).
    Inline(Box<Workflow>),
    /// A workflow file, relative to the parent's.
    File(String),
    /// A workflow of the server's catalog, by name (the newest version unless one is given).
    Catalog {
        /// Its name.
        name: String,
        /// Its version.
        version: Option<u32>,
    },
}

impl SubWorkflow {
    /// How the child is referred to in messages (`inline`, `file team.yaml`, `research_team v2`).
    pub fn describe(&self) -> String {
        match self {
            SubWorkflow::Inline(wf) => match &wf.name {
                Some(name) => format!("inline workflow `{name}`"),
                None => "inline workflow".into(),
            },
            SubWorkflow::File(path) => format!("workflow file `{path}`"),
            SubWorkflow::Catalog { name, version } => match version {
                Some(v) => format!("workflow `{name}` version {v}"),
                None => format!("workflow `{name}`"),
            },
        }
    }
}

impl Serialize for SubWorkflow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        match self {
            SubWorkflow::Inline(wf) => map.serialize_entry("inline", wf)?,
            SubWorkflow::File(path) => map.serialize_entry("file", path)?,
            SubWorkflow::Catalog { name, version } => {
                map.serialize_entry("name", name)?;
                if let Some(v) = version {
                    map.serialize_entry("version", v)?;
                }
            }
        }
        map.end()
    }
}

impl Task {
    /// The sub-workflows the task may run as child runs, each with where it
    /// is in the task (`workflow`, `pattern.teams.NAME`): its own `workflow`,
    /// or a hierarchical supervisor's teams, in order.
    pub fn sub_workflows(&self) -> Vec<(String, &SubWorkflow)> {
        let mut found = Vec::new();
        if let Some(sub) = self.workflow.as_deref() {
            found.push(("workflow".to_string(), sub));
        }
        if let Some(Pattern::Supervisor { teams, .. }) = self.pattern.as_deref() {
            for team in teams {
                found.push((format!("pattern.teams.{}", team.name), &team.workflow));
            }
        }
        found
    }

    /// [`Task::sub_workflows`], to change them.
    pub fn sub_workflows_mut(&mut self) -> Vec<(String, &mut SubWorkflow)> {
        let mut found = Vec::new();
        if let Some(sub) = self.workflow.as_deref_mut() {
            found.push(("workflow".to_string(), sub));
        }
        if let Some(Pattern::Supervisor { teams, .. }) = self.pattern.as_deref_mut() {
            for team in teams {
                found.push((format!("pattern.teams.{}", team.name), &mut team.workflow));
            }
        }
        found
    }

    /// The loop the task runs as: its `loop`, or its pattern's.
    pub fn looping(&self) -> Option<std::borrow::Cow<'_, Loop>> {
        match (self.repeat.as_deref(), self.pattern.as_deref()) {
            (Some(l), _) => Some(std::borrow::Cow::Borrowed(l)),
            (None, Some(p)) => Some(std::borrow::Cow::Owned(p.as_loop())),
            (None, None) => None,
        }
    }

    /// A task with an id and dependencies, everything else defaulted.
    pub fn new(id: impl Into<String>, depends_on: &[&str]) -> Task {
        Task {
            id: id.into(),
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            ..Task::default()
        }
    }
}

/// A fan-out: the task runs once per item of a list an upstream task produced,
/// and its output is the list of the instances' outputs, in item order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ForEach {
    /// Where the list is: `TASK.output` or a path into it, as conditions write it.
    #[serde(rename = "items")]
    pub text: String,
    /// The parsed reference.
    #[serde(skip)]
    pub items: crate::expr::Reference,
    /// Instances running at once (none: as many as the agents take).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// A longer list fails the task instead of running it.
    pub max_items: u32,
    /// What an instance's failure does.
    pub on_failure: OnItemFailure,
    /// Derived from `parallel: true`: a value that is not a list runs the task
    /// once, as a task without a fan-out (not serialized: `parallel` says it).
    #[serde(skip)]
    pub implied: bool,
}

impl ForEach {
    /// Items a fan-out accepts unless it says otherwise.
    pub const DEFAULT_MAX_ITEMS: u32 = 10_000;
    /// The largest `max_items` a workflow may ask for.
    pub const MAX_ITEMS: u32 = 10_000_000;

    fn is_implied(f: &Option<Box<ForEach>>) -> bool {
        f.as_ref().is_none_or(|f| f.implied)
    }
}

/// What a fan-out does when one of its instances fails for good.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OnItemFailure {
    /// The task fails at once; instances still running are cancelled.
    #[default]
    FailFast,
    /// Every instance runs; the task then fails, naming the items that failed.
    Collect,
}

impl OnItemFailure {
    /// The policy's name in the language.
    pub fn as_str(self) -> &'static str {
        match self {
            OnItemFailure::FailFast => "fail_fast",
            OnItemFailure::Collect => "collect",
        }
    }
}

/// Routes: each name with the successors it runs. The task's output names one
/// (a string, or an object's `route`); successors on other routes are skipped.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routes(pub Vec<(String, Vec<String>)>);

impl Routes {
    /// The route named `name`, with its index.
    pub fn get(&self, name: &str) -> Option<(usize, &[String])> {
        self.0
            .iter()
            .position(|(n, _)| n == name)
            .map(|i| (i, self.0[i].1.as_slice()))
    }

    /// The routes' names, in declaration order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(n, _)| n.as_str())
    }
}

impl Serialize for Routes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// How a failed attempt is retried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (≥ 1).
    pub max_attempts: u32,
    /// Delay between attempts.
    pub backoff: Backoff,
}

/// Exponential backoff with jitter.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Backoff {
    /// Delay before the second attempt.
    #[serde(serialize_with = "duration")]
    pub initial: Duration,
    /// Upper bound of any delay.
    #[serde(serialize_with = "duration")]
    pub max: Duration,
    /// Growth factor per attempt (≥ 1).
    pub multiplier: f64,
    /// Fraction of each delay that is randomized (0 to 1).
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

/// What undoes a task in a saga.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Compensation {
    /// Run another task of the workflow, declared only for this purpose
    /// (a *compensation task*: it takes no part in the forward flow).
    Task(String),
    /// Run a named action on an agent.
    Action {
        /// The action's name.
        action: String,
        /// The agent to run it on (default: the task's own).
        #[serde(skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        /// Input for the action.
        #[serde(skip_serializing_if = "Option::is_none")]
        input: Option<Value>,
    },
}

/// A parsed, validated condition.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Condition {
    /// The condition as written.
    pub text: String,
    /// Its parsed form.
    #[serde(skip)]
    pub expr: Expr,
}

/// A filter on events: the task completes when a matching event arrives.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct EventFilter {
    /// The event type to wait for.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Only events with this key match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The topic to watch (default: the run's own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The payload must contain these fields with these values.
    #[serde(rename = "match", skip_serializing_if = "Option::is_none")]
    pub matches: Option<serde_json::Map<String, Value>>,
    /// How long to wait before the task fails.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_duration"
    )]
    pub timeout: Option<Duration>,
}

/// How a run is coordinated.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Coordination {
    /// `graph`, `event`, or `hybrid` (empty when not given).
    #[serde(rename = "type", skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// Event types that drive the run.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub event_driven: Vec<String>,
    /// Aspects driven by the graph.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub graph_based: Vec<String>,
}

/// Durations are written exactly (not [`crate::duration::format`], which
/// rounds for people): a stored workflow must load back to the same value.
fn duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::duration::format_exact(*d))
}

fn opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => duration(d, s),
        None => s.serialize_none(),
    }
}

fn agents_as_map<S: serde::Serializer>(agents: &[Agent], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(agents.len()))?;
    for agent in agents {
        map.serialize_entry(&agent.name, agent)?;
    }
    map.end()
}

fn values_as_map<S: serde::Serializer>(pairs: &[(String, Value)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

fn pairs_as_map<S: serde::Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_reach_inline_children() {
        let command = Agent {
            name: "builder".into(),
            kind: "command".into(),
            ..Agent::default()
        };
        let child = Workflow {
            agents: vec![command],
            tasks: vec![Task::new("x", &[])],
            ..Workflow::default()
        };
        let mut outer = Task::new("outer", &[]);
        outer.workflow = Some(Box::new(SubWorkflow::Inline(Box::new(child))));
        let mut wf = Workflow {
            tasks: vec![outer],
            ..Workflow::default()
        };
        let operator = Agent {
            name: "builder".into(),
            kind: "worker".into(),
            ..Agent::default()
        };
        wf.override_agents(&[operator]);
        let Some(SubWorkflow::Inline(child)) = wf.tasks[0].workflow.as_deref() else {
            panic!("inline");
        };
        assert_eq!(child.agents[0].kind, "worker");
    }

    #[test]
    fn overrides_replace_kind_and_settings_and_keep_what_they_leave_out() {
        let agent = |name: &str, kind: &str, caps: &[&str], concurrency| Agent {
            name: name.into(),
            kind: kind.into(),
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            concurrency,
            ..Agent::default()
        };
        let mut wf = Workflow {
            agents: vec![
                agent("a", "research_agent", &["search"], Some(4)),
                agent("b", "noop", &[], None),
            ],
            ..Workflow::default()
        };
        let mut over = agent("a", "simulate", &[], None);
        over.failure_rate = Some(0.1);
        wf.override_agents(&[over, agent("z", "noop", &[], None)]);
        assert_eq!(wf.agents[0].kind, "simulate");
        assert_eq!(wf.agents[0].failure_rate, Some(0.1));
        assert_eq!(wf.agents[0].capabilities, ["search"]);
        assert_eq!(wf.agents[0].concurrency, Some(4));
        assert_eq!(wf.agents[1], agent("b", "noop", &[], None));
        assert_eq!(
            wf.agents.len(),
            2,
            "agents the workflow does not declare are not added"
        );
    }
}
