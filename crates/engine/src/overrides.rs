//! What one execution may change of a workflow ([`Overrides`]: the operator's
//! agents, a retry policy for tasks without one, a cap on every agent's
//! concurrency), and a bounded cache of the specs built that way
//! ([`SpecCache`]), so that executions with the same overrides share one spec.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, PoisonError};

use baton_model::{Agent, Checked, RetryPolicy};
use baton_plan::Plan;

use crate::agent;
use crate::spec::{Error, Spec};

/// Changes to a workflow for one execution.
#[derive(Debug, Clone, Copy, Default)]
pub struct Overrides<'a> {
    /// Agents defined by the operator: each replaces the workflow's agent of the
    /// same name, keeping that one's capabilities and concurrency where it sets
    /// none ([`baton_model::Workflow::override_agents`]).
    pub agents: &'a [Agent],
    /// The retry policy of the tasks that have none.
    pub retry: Option<&'a RetryPolicy>,
    /// The most calls in flight per agent (an agent's own lower limit holds).
    pub max_concurrency: Option<NonZeroU32>,
}

impl Spec {
    /// Prepares `checked` (and its plan) for one execution with `overrides`
    /// applied, its agents built with `options`.
    ///
    /// # Errors
    ///
    /// As [`Spec::build`]: an agent that cannot be built here.
    pub fn with_overrides(
        checked: &Checked,
        plan: Arc<Plan>,
        overrides: &Overrides<'_>,
        options: &agent::Options,
    ) -> Result<Spec, Error> {
        let mut checked = checked.clone();
        checked.workflow.override_agents(overrides.agents);
        apply(&mut checked.workflow, overrides);
        let sealed = sealed(overrides.agents);
        Spec::build_sealed(checked, plan, options, sealed)
    }
}

/// The names of the operator's agents that carry settings to keep out of a
/// stored document (`env` or `headers`).
pub(crate) fn sealed(operator: &[baton_model::Agent]) -> Arc<[String]> {
    operator
        .iter()
        .filter(|a| !a.env.is_empty() || !a.headers.is_empty())
        .map(|a| a.name.clone())
        .collect()
}

/// The retry policy and the concurrency cap, on a workflow and on the inline
/// children its tasks run (an execution's options reach its child runs).
fn apply(workflow: &mut baton_model::Workflow, overrides: &Overrides<'_>) {
    for task in &mut workflow.tasks {
        if let Some(policy) = overrides.retry
            && task.retry.is_none()
        {
            task.retry = Some(Box::new(policy.clone()));
        }
        for (_, sub) in task.sub_workflows_mut() {
            if let baton_model::SubWorkflow::Inline(child) = sub {
                apply(child, overrides);
            }
        }
    }
    if let Some(n) = overrides.max_concurrency {
        let n = n.get();
        for agent in &mut workflow.agents {
            agent.concurrency = Some(agent.concurrency.map_or(n, |c| c.min(n)));
        }
    }
}

/// A bounded cache of specs: at most `capacity`, the least recently used
/// evicted first.
pub struct SpecCache<K> {
    capacity: usize,
    inner: Mutex<Lru<K>>,
}

struct Lru<K> {
    /// Each spec, with the tick of its last use.
    entries: HashMap<K, (Arc<Spec>, u64)>,
    tick: u64,
}

impl<K: Hash + Eq + Clone> SpecCache<K> {
    /// An empty cache of at most `capacity` specs (at least one).
    pub fn new(capacity: usize) -> SpecCache<K> {
        SpecCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Lru {
                entries: HashMap::new(),
                tick: 0,
            }),
        }
    }

    /// How many specs it holds.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The spec under `key`, built with `build` (outside the lock) if absent.
    /// When two callers build the same key at once, the first stored wins and
    /// both get it.
    ///
    /// # Errors
    ///
    /// What `build` returns; nothing is stored then.
    pub fn get_or_build<E>(
        &self,
        key: &K,
        build: impl FnOnce() -> Result<Spec, E>,
    ) -> Result<Arc<Spec>, E> {
        if let Some(spec) = self.lock().touch(key) {
            return Ok(spec);
        }
        let spec = Arc::new(build()?);
        let mut lru = self.lock();
        if let Some(spec) = lru.touch(key) {
            return Ok(spec);
        }
        if lru.entries.len() >= self.capacity {
            // A scan on a miss at capacity: no list to keep on every hit.
            let oldest = lru
                .entries
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                lru.entries.remove(&oldest);
            }
        }
        lru.tick += 1;
        let tick = lru.tick;
        lru.entries.insert(key.clone(), (spec.clone(), tick));
        Ok(spec)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru<K>> {
        // Every update under the lock is a single insert, remove or assignment.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl<K: Hash + Eq> Lru<K> {
    fn touch(&mut self, key: &K) -> Option<Arc<Spec>> {
        self.tick += 1;
        let tick = self.tick;
        self.entries.get_mut(key).map(|(spec, used)| {
            *used = tick;
            spec.clone()
        })
    }
}

impl<K> std::fmt::Debug for SpecCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpecCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checked(yaml: &str) -> (Checked, Arc<Plan>) {
        let source = baton_model::Source::from_str("t.yaml", yaml, baton_model::Format::Yaml);
        let checked = baton_model::load(&source).expect("valid");
        let plan = baton_plan::plan_checked(&checked, &Default::default()).expect("acyclic");
        (checked, Arc::new(plan))
    }

    const FLOW: &str = r#"
agents:
  a: { type: noop, concurrency: 8, capabilities: [x] }
  b: { type: noop }
tasks:
  - { id: one, agent: a, retry: { max_attempts: 5 } }
  - { id: two, agent: b }
"#;

    #[test]
    fn overrides_replace_agents_fill_missing_retries_and_cap_concurrency() {
        let (checked, plan) = checked(FLOW);
        let operator = [Agent {
            name: "b".into(),
            kind: "simulate".into(),
            ..Agent::default()
        }];
        let retry = checked.workflow.tasks[0]
            .retry
            .as_deref()
            .cloned()
            .map(|mut r| {
                r.max_attempts = 2;
                r
            });
        let overrides = Overrides {
            agents: &operator,
            retry: retry.as_ref(),
            max_concurrency: NonZeroU32::new(3),
        };
        let spec =
            Spec::with_overrides(&checked, plan, &overrides, &agent::Options::default()).unwrap();
        let agents: Vec<_> = spec
            .agents()
            .map(|a| (a.kind.as_str(), a.concurrency))
            .collect();
        assert_eq!(agents, [("noop", Some(3)), ("simulate", Some(3))]);
        let tasks = &spec.workflow().tasks;
        assert_eq!(
            tasks[0].retry.as_ref().unwrap().max_attempts,
            5,
            "its own kept"
        );
        assert_eq!(
            tasks[1].retry.as_ref().unwrap().max_attempts,
            2,
            "filled in"
        );
        // The checked workflow itself is unchanged.
        assert_eq!(checked.workflow.agents[1].kind, "noop");
    }

    #[test]
    fn retries_and_the_concurrency_cap_reach_inline_children() {
        let (parent, plan) = checked(
            "agents: { a: { type: noop } }\ntasks:\n  - { id: team, workflow: { inline: { agents: { c: { type: noop, concurrency: 9 } }, tasks: [{ id: inner, agent: c }] } } }\n",
        );
        let policy: RetryPolicy = checked("tasks: [{ id: t, retry: 4 }]").0.workflow.tasks[0]
            .retry
            .as_deref()
            .cloned()
            .unwrap();
        let overrides = Overrides {
            agents: &[],
            retry: Some(&policy),
            max_concurrency: NonZeroU32::new(2),
        };
        let spec =
            Spec::with_overrides(&parent, plan, &overrides, &agent::Options::default()).unwrap();
        let Some(baton_model::SubWorkflow::Inline(child)) =
            spec.workflow().tasks[0].workflow.as_deref()
        else {
            panic!("an inline child");
        };
        assert_eq!(child.tasks[0].retry.as_ref().unwrap().max_attempts, 4);
        assert_eq!(child.agents[0].concurrency, Some(2));
    }

    #[test]
    fn the_cache_is_bounded_and_evicts_the_least_recently_used() {
        let (checked, plan) = checked(FLOW);
        let build = || Spec::new(checked.clone(), plan.clone(), 0);
        let cache = SpecCache::new(2);
        let first = cache.get_or_build(&1, build).unwrap();
        cache.get_or_build(&2, build).unwrap();
        // 1 used again: 2 is now the least recently used.
        assert!(Arc::ptr_eq(&first, &cache.get_or_build(&1, build).unwrap()));
        cache.get_or_build(&3, build).unwrap();
        assert_eq!(cache.len(), 2);
        let mut built = false;
        cache
            .get_or_build(&1, || {
                built = true;
                build()
            })
            .unwrap();
        assert!(!built, "1 stayed");
        cache
            .get_or_build(&2, || {
                built = true;
                build()
            })
            .unwrap();
        assert!(built, "2 was evicted");
        let failed: Result<_, &str> = cache.get_or_build(&9, || Err("no"));
        assert_eq!(failed.err(), Some("no"));
        assert_eq!(cache.len(), 2);
    }
}
