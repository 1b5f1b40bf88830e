//! A workflow prepared for execution: the plan plus, per task, what the scheduler
//! needs on its hot path (agent candidates, dependency counts), shared by every run
//! of the workflow.

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use baton_model::{Checked, Compensation, SubWorkflow, Task, Workflow};
use baton_plan::Plan;

use crate::agent::{self, Runner};

/// An agent declared by a workflow, with its runner.
pub struct AgentDecl {
    /// The declaration.
    pub agent: baton_model::Agent,
    /// What runs its calls.
    pub runner: Arc<dyn Runner>,
}

/// What undoes a task, resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undo {
    /// Run this compensation task.
    Task(u32),
    /// Run the task's `compensation` action on agent candidates of the task (or the
    /// named agent).
    Action,
}

/// [`TaskSpec::flags`]: the task has a `condition`.
pub const CONDITION: u8 = 1;
/// [`TaskSpec::flags`]: the task has a `wait_for`.
pub const WAIT_FOR: u8 = 2;
/// [`TaskSpec::flags`]: the task has a `for_each` (or `parallel: true` over one
/// dependency), or a `loop`: it runs as instances.
pub const FAN_OUT: u8 = 4;
/// [`TaskSpec::flags`]: a dependency of the task chooses among `routes` that name it.
pub const ON_ROUTE: u8 = 8;
/// [`TaskSpec::flags`]: the task runs a sub-workflow as a child run.
pub const CHILD: u8 = 16;

/// Per task, what the scheduler reads on every step (the workflow's own `Task`
/// is large and read only when a flag says so).
pub struct TaskSpec {
    /// [`CONDITION`], [`WAIT_FOR`], [`FAN_OUT`], [`ON_ROUTE`], [`CHILD`].
    pub flags: u8,
    /// Agents that may run the task (indices into the spec's agents); never empty.
    pub candidates: Box<[u16]>,
    /// Number of dependencies.
    pub deps: u32,
    /// How the task is undone, if it is.
    pub undo: Option<Undo>,
}

/// A workflow ready to run: validated, planned, agents resolved.
pub struct Spec {
    /// Unique in the process: tells specs apart without hashing them.
    pub(crate) id: u64,
    /// The document and its key, made when a state store first needs them.
    stored: OnceLock<(u128, Arc<str>)>,
    /// The agents whose settings are the operator's (`[agents.NAME]`, applied
    /// by [`Spec::with_overrides`]): the stored document holds `***` for their
    /// `env` and `headers` values, which a resume takes from the operator's
    /// agents again ([`crate::Options::operator_agents`]).
    pub(crate) sealed: Arc<[String]>,
    pub(crate) workflow: Arc<Workflow>,
    pub(crate) plan: Arc<Plan>,
    pub(crate) agents: Box<[AgentDecl]>,
    pub(crate) tasks: Box<[TaskSpec]>,
    pub(crate) ids: Box<[Arc<str>]>,
    pub(crate) roots: Box<[u32]>,
    pub(crate) planned: u32,
    /// The workflows of tasks that run a child run, by task.
    /// The child workflows, by task and by place in the task
    /// ([`baton_model::Task::sub_workflows`]: 0 its `workflow`, or a
    /// hierarchical supervisor's teams in order).
    pub(crate) children: std::collections::HashMap<(u32, u16), Arc<Spec>>,
}

/// How deeply sub-workflows may nest in a workflow (a run's child's child … at
/// most this far); an engine's [`Options::max_depth`](crate::Options::max_depth)
/// bounds the runs it starts, at most this.
pub const MAX_DEPTH: usize = 16;

/// Why a workflow cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An agent cannot be built (unknown type, missing settings).
    #[error(transparent)]
    Agent(#[from] agent::Error),
    /// A task has no agent that can run it.
    #[error("task `{task}` has no agent that can run it{}", if .requires.is_empty() { String::new() } else { format!(" (requires: {})", .requires.join(", ")) })]
    NoAgent {
        /// The task.
        task: String,
        /// What it requires.
        requires: Vec<String>,
    },
    /// More agents than the engine can address.
    #[error("a workflow may declare at most 65,535 agents, this one declares {0}")]
    TooManyAgents(usize),
    /// A task's sub-workflow cannot run.
    #[error("task `{task}`: {message}")]
    Child {
        /// The task.
        task: String,
        /// Why.
        message: String,
    },
}

/// The spec of a sub-workflow: only an inline one can run (files and catalog
/// names are resolved into inline workflows before a run starts).
/// A child belongs to its parent's tenant, whatever it says itself.
fn child_spec(
    sub: &SubWorkflow,
    tenant: Option<&str>,
    options: &agent::Options,
    sealed: &Arc<[String]>,
    depth: usize,
) -> Result<Spec, String> {
    let SubWorkflow::Inline(wf) = sub else {
        return Err(format!(
            "its {} was not resolved: `baton run` reads workflow files next to the parent's, `baton serve` looks names up in its catalog",
            sub.describe()
        ));
    };
    if depth + 1 >= MAX_DEPTH {
        return Err(format!(
            "sub-workflows nest deeper than {MAX_DEPTH} levels (a workflow that runs itself?)"
        ));
    }
    let mut wf = (**wf).clone();
    wf.tenant = tenant.map(str::to_string);
    let checked = baton_model::validate(wf).map_err(|r| {
        format!(
            "its {} is invalid: {} error(s)",
            sub.describe(),
            r.error_count
        )
    })?;
    let plan = baton_plan::plan_checked(&checked, &Default::default())
        .map_err(|d| format!("its {} cannot be planned: {}", sub.describe(), d.message))?;
    Spec::build_at(checked, Arc::new(plan), options, sealed.clone(), depth + 1)
        .map_err(|e| e.to_string())
}

/// The name of the agent tasks run on when a workflow declares none.
pub const DEFAULT_AGENT: &str = "noop";

impl Spec {
    /// Prepares a checked workflow and its plan. `seed` seeds simulated agents;
    /// `http` agents may connect anywhere ([`agent::Egress::Open`]); `worker`
    /// agents get a pool of their own (use [`Spec::build`] with the engine's
    /// [`Options::agents`](crate::Options::agents) for workers to reach them).
    pub fn new(checked: Checked, plan: Arc<Plan>, seed: u64) -> Result<Spec, Error> {
        let options = agent::Options {
            seed,
            ..agent::Options::default()
        };
        Spec::build(checked, plan, &options)
    }

    /// Prepares a checked workflow and its plan, its agents built with `options`.
    pub fn build(
        checked: Checked,
        plan: Arc<Plan>,
        options: &agent::Options,
    ) -> Result<Spec, Error> {
        Spec::build_at(checked, plan, options, Arc::from([]), 0)
    }

    /// [`Spec::build`] of a workflow whose agents named in `sealed` carry the
    /// operator's settings (see [`Spec::sealed`]).
    pub(crate) fn build_sealed(
        checked: Checked,
        plan: Arc<Plan>,
        options: &agent::Options,
        sealed: Arc<[String]>,
    ) -> Result<Spec, Error> {
        Spec::build_at(checked, plan, options, sealed, 0)
    }

    fn build_at(
        checked: Checked,
        plan: Arc<Plan>,
        options: &agent::Options,
        sealed: Arc<[String]>,
        depth: usize,
    ) -> Result<Spec, Error> {
        let workflow = &checked.workflow;
        let mut children = std::collections::HashMap::new();
        for (i, task) in workflow.tasks.iter().enumerate() {
            for (k, (place, sub)) in task.sub_workflows().into_iter().enumerate() {
                let child = child_spec(sub, workflow.tenant.as_deref(), options, &sealed, depth)
                    .map_err(|message| Error::Child {
                        task: task.id.clone(),
                        message: match place.strip_prefix("pattern.teams.") {
                            Some(team) => format!("team `{team}`: {message}"),
                            None => message,
                        },
                    })?;
                children.insert((i as u32, k as u16), Arc::new(child));
            }
        }
        let mut declared = workflow.agents.clone();
        if declared.is_empty() {
            declared.push(baton_model::Agent {
                name: DEFAULT_AGENT.into(),
                kind: "noop".into(),
                ..baton_model::Agent::default()
            });
        }
        if declared.len() >= usize::from(u16::MAX) {
            return Err(Error::TooManyAgents(declared.len()));
        }
        let agents = declared
            .into_iter()
            .map(|agent| {
                Ok(AgentDecl {
                    runner: agent::runner(&agent, workflow.tenant.as_deref(), options)?,
                    agent,
                })
            })
            .collect::<Result<Box<[_]>, Error>>()?;
        let candidates_for = |task: &Task, agent: Option<&str>| -> Result<Box<[u16]>, Error> {
            let list: Box<[u16]> = match agent {
                Some(name) => agents
                    .iter()
                    .position(|a| a.agent.name == name)
                    .map(|i| i as u16)
                    .into_iter()
                    .collect(),
                None => (0..agents.len() as u16)
                    .filter(|&i| {
                        let caps = &agents[usize::from(i)].agent.capabilities;
                        task.requires.iter().all(|r| caps.contains(r))
                    })
                    .collect(),
            };
            if list.is_empty() {
                return Err(Error::NoAgent {
                    task: task.id.clone(),
                    requires: task.requires.clone(),
                });
            }
            Ok(list)
        };
        let on_route: std::collections::HashSet<&str> = workflow
            .tasks
            .iter()
            .filter_map(|t| t.routes.as_deref())
            .flat_map(|r| {
                r.0.iter()
                    .flat_map(|(_, targets)| targets.iter().map(String::as_str))
            })
            .collect();
        let mut tasks = Vec::with_capacity(workflow.tasks.len());
        for (i, task) in workflow.tasks.iter().enumerate() {
            let undo = match task.compensation.as_deref() {
                None => None,
                Some(Compensation::Task(id)) => checked.names.id(id).map(Undo::Task),
                Some(Compensation::Action { .. }) => Some(Undo::Action),
            };
            let flags = if task.condition.is_some() {
                CONDITION
            } else {
                0
            } | if task.wait_for.is_some() { WAIT_FOR } else { 0 }
                | if task.for_each.is_some() || task.looping().is_some() {
                    FAN_OUT
                } else {
                    0
                }
                | if task.workflow.is_some() { CHILD } else { 0 }
                | if on_route.contains(&task.id.as_str()) {
                    ON_ROUTE
                } else {
                    0
                };
            tasks.push(TaskSpec {
                flags,
                candidates: candidates_for(task, task.agent.as_deref())?,
                deps: plan.preds(i as u32).len() as u32,
                undo,
            });
        }
        let roots = plan
            .order()
            .iter()
            .copied()
            .filter(|&t| tasks[t as usize].deps == 0)
            .collect();
        static IDS: AtomicU64 = AtomicU64::new(0);
        let ids = workflow
            .tasks
            .iter()
            .map(|t| Arc::from(t.id.as_str()))
            .collect();
        Ok(Spec {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            stored: OnceLock::new(),
            sealed,
            ids,
            planned: plan.order().len() as u32,
            roots,
            workflow: Arc::new(checked.workflow),
            plan,
            agents,
            tasks: tasks.into_boxed_slice(),
            children,
        })
    }

    /// The workflow's key in the state store: a 128-bit hash of its document.
    pub fn key(&self) -> u128 {
        self.stored().0
    }

    /// The document and its key, serialized on first use (only a state store needs
    /// them, so in-memory runs never pay for it).
    pub(crate) fn stored(&self) -> &(u128, Arc<str>) {
        self.stored.get_or_init(|| {
            let document = if self.sealed.is_empty() {
                serde_json::to_string(&*self.workflow)
            } else {
                let mut workflow = (*self.workflow).clone();
                seal(&mut workflow, &self.sealed);
                serde_json::to_string(&workflow)
            };
            let document: Arc<str> = document.expect("a workflow always serializes").into();
            (document_key(&document), document)
        })
    }

    /// The workflow.
    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    /// The plan.
    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    /// The workflow as JSON (what the state store keeps).
    pub fn document(&self) -> &str {
        &self.stored().1
    }

    /// The agents tasks run on.
    pub fn agents(&self) -> impl ExactSizeIterator<Item = &baton_model::Agent> {
        self.agents.iter().map(|a| &a.agent)
    }

    /// Number of tasks in the forward plan (compensation tasks excluded).
    pub fn planned(&self) -> u32 {
        self.planned
    }

    /// Approximate heap bytes held by the spec (plan included).
    pub fn heap_bytes(&self) -> usize {
        self.plan.heap_bytes()
            + self.stored.get().map_or(0, |(_, d)| d.len())
            + self.tasks.len() * std::mem::size_of::<TaskSpec>()
            + self
                .tasks
                .iter()
                .map(|t| t.candidates.len() * 2)
                .sum::<usize>()
            + self.ids.iter().map(|s| s.len() + 16).sum::<usize>()
    }
}

/// Replaces the `env` and `headers` values of the agents named in `sealed`
/// with `***`, in `workflow` and its inline children: the operator's
/// secrets stay in the operator's config.
fn seal(workflow: &mut Workflow, sealed: &[String]) {
    for agent in &mut workflow.agents {
        if sealed.contains(&agent.name) {
            for (_, value) in agent.env.iter_mut().chain(agent.headers.iter_mut()) {
                *value = "***".into();
            }
        }
    }
    for task in &mut workflow.tasks {
        for (_, sub) in task.sub_workflows_mut() {
            if let SubWorkflow::Inline(child) = sub {
                seal(child, sealed);
            }
        }
    }
}

/// Two independently seeded 64-bit hashes of the document.
fn document_key(document: &str) -> u128 {
    let half = |seed: u64| {
        let mut h = foldhash::quality::FixedState::with_seed(seed).build_hasher();
        h.write(document.as_bytes());
        h.finish()
    };
    (u128::from(half(0x0ba7_0d0c)) << 64) | u128::from(half(0x5eed_0d0c))
}
