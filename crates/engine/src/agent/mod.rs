//! Agents: what runs a task. Built-in kinds: `noop`, `simulate`, `command`,
//! `http` and `llm`; the registry (in the scheduler) adds capabilities,
//! concurrency limits and circuit breakers on top.

mod card;
mod command;
mod endpoint;
mod http;
mod llm;
mod policy;
pub mod worker;

pub use card::{discover, is_card_url};
pub use command::INHERITED;
pub use endpoint::{Egress, is_public};
pub use policy::{Policy, Refusal};

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use baton_model::{Agent, Latency};
use serde_json::Value;

use crate::store::RunId;

/// What one call of an agent ends with: the task's output, or why it failed.
pub type Outcome = Result<Value, Failure>;

/// Why an agent call failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// What went wrong, for people.
    pub message: String,
    /// Whether another attempt may succeed (a timeout, a crashed process or a 5xx
    /// response may; a rejected request will not).
    pub retryable: bool,
    /// How long the agent asked to be left alone before another attempt (an
    /// HTTP `Retry-After`): the next attempt waits at least that long (at
    /// most [`Failure::MAX_RETRY_AFTER`]), whatever the task's backoff says.
    pub retry_after: Option<Duration>,
}

impl Failure {
    /// The longest `retry_after` honoured.
    pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

    /// A failure that another attempt may not repeat.
    pub fn retryable(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure that would happen again.
    pub fn permanent(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }
}

/// One call of an agent: a task attempt (or a compensation).
#[derive(Debug, Clone)]
pub struct Call {
    /// The run.
    pub run: RunId,
    /// The task's id.
    pub task: Arc<str>,
    /// The attempt (1 for the first).
    pub attempt: u32,
    /// What the agent is given: `{"run", "task", "attempt", "input", "upstream", "run_input"}`
    /// (see the engine's docs); `null` for agents that read no input.
    pub input: Value,
    /// The task's estimate, if it has one.
    pub estimate: Option<Duration>,
    /// The iteration the call belongs to: its task's own (a loop's, a
    /// pattern's turn), else that of the loop whose child run it is in (the
    /// run input's `iteration`); what the `input` says too, known without
    /// building it.
    pub iteration: Option<u64>,
    /// What the call may decide besides answering, for agents that offer
    /// decisions themselves ([`Runner::offers_decisions`]); `None` otherwise.
    pub decisions: Option<Decisions>,
    /// Where the agent may report what it has so far while the call runs
    /// (`None` where nobody listens).
    pub progress: Option<Progress>,
}

/// Where an agent reports progress and partial output while a call runs:
/// carried on the run's event stream (`baton.progress` on `baton.runs`,
/// coalesced so that a chatty agent cannot flood it), never recorded: the
/// call's final output is what is durable.
/// It also takes the tokens a model used for the call (an `llm` agent's).
#[derive(Clone)]
pub struct Progress(Arc<dyn Fn(Report) + Send + Sync>);

/// What an agent reports while (or as) a call runs.
#[derive(Debug)]
pub enum Report {
    /// What the call has so far.
    Progress(Value),
    /// Tokens a model used for the call.
    Tokens {
        /// Tokens of the prompt.
        prompt: u64,
        /// Tokens of the answer.
        completion: u64,
    },
    /// The call needs a person's input to go on (an A2A task's
    /// `input-required`): `question` is published on the run's event stream
    /// and the answer, a `baton.input` event, is sent on `reply`.
    Input {
        /// What the agent asks.
        question: Value,
        /// Where the answer goes; dropped if the call is no longer wanted.
        reply: tokio::sync::oneshot::Sender<Value>,
    },
}

impl Progress {
    /// A reporter that hands each report to `report`.
    pub fn new(report: impl Fn(Report) + Send + Sync + 'static) -> Progress {
        Progress(Arc::new(report))
    }

    /// Reports what the call has so far.
    pub fn report(&self, progress: Value) {
        (self.0)(Report::Progress(progress))
    }

    /// Reports the tokens a model used for the call.
    pub fn tokens(&self, prompt: u64, completion: u64) {
        (self.0)(Report::Tokens { prompt, completion })
    }

    /// Asks a person for what the call needs to go on, and waits for the
    /// answer (a `baton.input` event; docs/patterns.md). Fails (retryable)
    /// when the call is no longer wanted; the task's `timeout` bounds the
    /// wait.
    pub async fn ask(&self, question: Value) -> Result<Value, Failure> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        (self.0)(Report::Input { question, reply });
        answer
            .await
            .map_err(|_| Failure::retryable("the question was withdrawn: the call is over"))
    }
}

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

/// What a call may decide besides answering: the decisions of its task's
/// pattern at this turn, and its task's routes (docs/patterns.md). An `llm`
/// agent offers them to the model as tools.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Agents control may be handed to (a handoff's, a swarm's).
    pub handoff: Vec<String>,
    /// Whether several may be handed control at once (a swarm).
    pub handoff_many: bool,
    /// Workers and teams a supervisor's turn may delegate to.
    pub delegate: Vec<String>,
    /// Agents a network's turn may message.
    pub send: Vec<String>,
    /// Routes the task's output may choose.
    pub routes: Vec<String>,
    /// Whether the turn may write a swarm's blackboard.
    pub context: bool,
}

impl Decisions {
    /// Whether there is nothing to decide but the answer.
    pub fn is_empty(&self) -> bool {
        *self == Decisions::default()
    }
}

/// A call that has not finished when `start` returns.
pub type Pending = Pin<Box<dyn Future<Output = Outcome> + Send + 'static>>;

/// How a call started: finished already (no await, no task spawned) or running.
pub enum Started {
    /// The outcome is known at once (`noop`, zero-latency `simulate`).
    Done(Outcome),
    /// The outcome arrives later.
    Later(Pending),
}

/// An agent implementation.
pub trait Runner: Send + Sync + 'static {
    /// Whether calls need their `input` built (agents that ignore it save the work).
    fn reads_input(&self) -> bool {
        true
    }

    /// An outcome known without looking at the call (`noop`): the scheduler then
    /// skips building the call altogether.
    fn immediate(&self) -> Option<Outcome> {
        None
    }

    /// Whether calls should carry their [`Decisions`] (agents that offer
    /// them, as an `llm` agent does as tools).
    fn offers_decisions(&self) -> bool {
        false
    }

    /// Whether calls should carry a [`Progress`] reporter (agents that may
    /// report partial output while a call runs).
    fn reports_progress(&self) -> bool {
        false
    }

    /// Starts a call. Called on the scheduler's thread: must not block.
    fn start(&self, call: Call) -> Started;
}

/// Why an agent cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The agent's type is none of the built-in kinds.
    #[error(
        "agent `{name}` has type `{kind}`, which Baton cannot run by itself (built-in types: noop, simulate, command, http, llm, worker)"
    )]
    UnknownKind {
        /// The agent.
        name: String,
        /// Its type.
        kind: String,
    },
    /// The agent's settings are incomplete for its type.
    #[error("agent `{name}`: {message}")]
    Settings {
        /// The agent.
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// The built-in agent kinds.
pub const KINDS: [&str; 6] = ["noop", "simulate", "command", "http", "llm", "worker"];

/// How agents are built.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Seeds simulated randomness (an agent's own `seed` wins).
    pub seed: u64,
    /// Where `http` agents may connect.
    pub egress: Egress,
    /// Where `worker` agents' calls wait for workers: the engine's pool (see
    /// [`crate::Options::agents`]), or a pool of its own by default.
    pub workers: Arc<worker::Workers>,
}

/// Builds the runner for an agent declaration of a workflow of `tenant`
/// (a tenant's `worker` agents are served by its workers only).
pub fn runner(
    agent: &Agent,
    tenant: Option<&str>,
    options: &Options,
) -> Result<Arc<dyn Runner>, Error> {
    let seed = options.seed;
    let settings = |message: &str| Error::Settings {
        name: agent.name.clone(),
        message: message.to_string(),
    };
    Ok(match agent.kind.as_str() {
        "noop" => Arc::new(Noop),
        "worker" => Arc::new(worker::Worker::new(
            &worker::queue(tenant, &agent.name),
            options.workers.clone(),
        )),
        "simulate" => Arc::new(Simulate::new(agent, seed)),
        "command" => Arc::new(
            command::Command::of(agent)
                .ok_or_else(|| settings("type `command` needs `command`"))?,
        ),
        "http" => Arc::new(
            http::Http::new(
                agent
                    .url
                    .as_deref()
                    .ok_or_else(|| settings("type `http` needs `url`"))?,
                &agent.headers,
                &options.egress,
            )
            .map_err(|m| settings(&m))?
            .streaming(agent.stream),
        ),
        "llm" => Arc::new(llm::Llm::new(agent, &options.egress).map_err(|m| settings(&m))?),
        other => {
            return Err(Error::UnknownKind {
                name: agent.name.clone(),
                kind: other.to_string(),
            });
        }
    })
}

/// Completes every call at once with a `null` output.
pub struct Noop;

impl Runner for Noop {
    fn reads_input(&self) -> bool {
        false
    }

    fn immediate(&self) -> Option<Outcome> {
        Some(Ok(Value::Null))
    }

    fn start(&self, _call: Call) -> Started {
        Started::Done(Ok(Value::Null))
    }
}

/// Sleeps a seeded random latency and fails with a given probability: for demos,
/// tests and load tests. Without a `latency`, a call takes the task's `estimate`
/// (or no time at all).
pub struct Simulate {
    name: Arc<str>,
    /// Scripted outputs by task id, or by `TASK[N]` for iteration `N` of a loop.
    outputs: foldhash::HashMap<Box<str>, Value>,
    /// Some output is scripted per iteration: calls read their input.
    by_iteration: bool,
    latency: Option<Latency>,
    failure_rate: f64,
    /// SplitMix64 state; advancing it atomically keeps `start` lock-free.
    state: AtomicU64,
}

impl Simulate {
    fn new(agent: &Agent, seed: u64) -> Simulate {
        let seed = agent.seed.unwrap_or_else(|| {
            // Distinct agents draw distinct sequences from one engine seed.
            agent.name.bytes().fold(seed ^ 0x51b1_ba70, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            })
        });
        Simulate {
            name: agent.name.as_str().into(),
            outputs: agent
                .outputs
                .iter()
                .map(|(task, v)| (Box::from(task.as_str()), v.clone()))
                .collect(),
            by_iteration: agent.outputs.iter().any(|(task, _)| task.ends_with(']')),
            latency: agent.latency.clone(),
            failure_rate: agent.failure_rate.unwrap_or(0.0),
            state: AtomicU64::new(seed),
        }
    }

    fn next_u64(&self) -> u64 {
        // `Rng::next_u64` advances its state by the same constant, then mixes.
        let state = self
            .state
            .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed);
        baton_model::Rng(state).next_u64()
    }

    /// The scripted output of a call: `TASK[N]` for the loop iteration `N` the
    /// call belongs to (the loop's own task, or a task of an iteration's child
    /// run), else `TASK`.
    fn scripted(&self, call: &Call) -> Option<&Value> {
        let find = |key: &str| self.outputs.get(key);
        if self.by_iteration
            && let Some(found) = call
                .iteration
                .and_then(|n| find(&format!("{}[{n}]", call.task)))
        {
            return Some(found);
        }
        find(&call.task)
    }

    fn unit(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn draw_latency(&self, estimate: Option<Duration>) -> Duration {
        let secs = |d: Duration| d.as_secs_f64();
        match &self.latency {
            None => estimate.unwrap_or(Duration::ZERO),
            Some(Latency::Constant(d)) => *d,
            Some(Latency::Uniform { min, max }) => {
                Duration::from_secs_f64(secs(*min) + (secs(*max) - secs(*min)) * self.unit())
            }
            Some(Latency::Exponential { mean }) => {
                // Inverse transform; 1 - u is in (0, 1], so the logarithm is finite.
                Duration::from_secs_f64(-secs(*mean) * (1.0 - self.unit()).ln())
            }
            Some(Latency::Normal { mean, stddev }) => {
                // Box–Muller; negative draws are clamped to zero.
                let (u1, u2) = (1.0 - self.unit(), self.unit());
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                Duration::from_secs_f64((secs(*mean) + secs(*stddev) * z).max(0.0))
            }
        }
    }
}

impl Runner for Simulate {
    fn reads_input(&self) -> bool {
        false
    }

    fn start(&self, call: Call) -> Started {
        let latency = self.draw_latency(call.estimate);
        let fails = self.failure_rate > 0.0 && self.unit() < self.failure_rate;
        let outcome = if fails {
            Err(Failure::retryable(format!(
                "simulated failure (agent `{}`, failure_rate {})",
                self.name, self.failure_rate
            )))
        } else {
            Ok(match self.scripted(&call) {
                Some(scripted) => scripted.clone(),
                None => serde_json::json!({ "latency_us": latency.as_micros() as u64 }),
            })
        };
        if latency.is_zero() {
            Started::Done(outcome)
        } else {
            Started::Later(Box::pin(async move {
                tokio::time::sleep(latency).await;
                outcome
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(kind: &str) -> Agent {
        Agent {
            name: "a".into(),
            kind: kind.into(),
            ..Agent::default()
        }
    }

    fn call() -> Call {
        Call {
            run: RunId(1),
            task: "t".into(),
            attempt: 1,
            input: Value::Null,
            estimate: None,
            iteration: None,
            decisions: None,
            progress: None,
        }
    }

    #[test]
    fn unknown_kinds_are_refused_with_the_list_of_built_ins() {
        let err = runner(&agent("research_agent"), None, &Options::default())
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("noop, simulate, command, http, llm, worker")
        );
    }

    #[test]
    fn noop_finishes_at_once() {
        let r = runner(&agent("noop"), None, &Options::default()).unwrap();
        assert!(matches!(r.start(call()), Started::Done(Ok(Value::Null))));
    }

    #[test]
    fn simulate_is_seeded_and_fails_at_about_its_rate() {
        let mut a = agent("simulate");
        a.failure_rate = Some(0.3);
        a.latency = Some(Latency::Uniform {
            min: Duration::from_millis(1),
            max: Duration::from_millis(9),
        });
        let draw = |a: &Agent| {
            let s = Simulate::new(a, 7);
            (0..2000)
                .map(|_| (s.draw_latency(None), s.unit() < 0.3))
                .collect::<Vec<_>>()
        };
        let first = draw(&a);
        assert_eq!(first, draw(&a), "same seed, same draws");
        let failures = first.iter().filter(|(_, f)| *f).count();
        assert!((500..700).contains(&failures), "{failures} of 2000");
        assert!(
            first.iter().all(|(d, _)| {
                (Duration::from_millis(1)..=Duration::from_millis(9)).contains(d)
            })
        );
    }

    #[test]
    fn simulate_exponential_mean_is_close() {
        let mut a = agent("simulate");
        a.latency = Some(Latency::Exponential {
            mean: Duration::from_millis(10),
        });
        let s = Simulate::new(&a, 1);
        let mean = (0..20_000)
            .map(|_| s.draw_latency(None).as_secs_f64())
            .sum::<f64>()
            / 20_000.0;
        assert!((0.0095..0.0105).contains(&mean), "{mean}");
    }

    #[test]
    fn simulate_without_latency_takes_the_estimate() {
        let s = Simulate::new(&agent("simulate"), 1);
        assert_eq!(
            s.draw_latency(Some(Duration::from_millis(3))),
            Duration::from_millis(3)
        );
        assert!(matches!(s.start(call()), Started::Done(Ok(_))));
    }
}
