//! Integration tests of the engine, on the in-memory event log (and the embedded
//! store where durability is the point). Time-dependent behaviour runs under
//! paused tokio time.

#![allow(clippy::unwrap_used, reason = "a test's panic is its failure report")]

mod children;
mod control;
mod dynamic;
mod events;
mod faults;
mod fuzz;
mod loops;
mod patterns;
mod props;
mod remote;
mod rerun;
mod resume;
mod saga;
mod store;
mod takeover;

use std::sync::Arc;

use baton_engine::store::{Embedded, EmbeddedOptions, RunId, TaskStatus};
use baton_engine::{Engine, Handle, Options, Spec};
use baton_events::{EventLog, MemoryLog};
use baton_model::{Format, Source};
use serde_json::Value;

/// Prepares a workflow written in YAML.
pub fn spec(yaml: &str) -> Arc<Spec> {
    spec_with(
        yaml,
        &baton_engine::agent::Options {
            seed: 7,
            ..Default::default()
        },
    )
}

/// Prepares a workflow written in YAML, its agents built with `agents` (an
/// engine's [`Options::agents`], for `worker` agents it runs).
pub fn spec_with(yaml: &str, agents: &baton_engine::agent::Options) -> Arc<Spec> {
    let source = Source::from_str("test.yaml", yaml, Format::Yaml);
    let checked = baton_model::load(&source).unwrap_or_else(|e| panic!("{e}"));
    let plan = baton_plan::plan_checked(&checked, &Default::default()).expect("acyclic");
    Arc::new(Spec::build(checked, Arc::new(plan), agents).expect("runnable"))
}

/// An engine on an in-memory log, without a store.
pub fn start() -> (Handle, Arc<MemoryLog>) {
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let (engine, handle) =
        Engine::build::<_, Embedded>(Options::default(), log.clone(), None).unwrap();
    tokio::spawn(engine.run());
    (handle, log)
}

/// The lines of a file the agents of a test append to, sorted (empty when
/// none ran).
pub fn sorted_lines(path: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    lines.sort();
    lines
}

/// An engine on an in-memory log and the embedded store in `state`, running:
/// the way the resume tests start one, stop it and start another on the same
/// store.
pub fn durable(state: &std::path::Path) -> (Handle, tokio::task::JoinHandle<()>) {
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let store = Embedded::open(state, EmbeddedOptions::default()).unwrap();
    let (engine, handle) = Engine::build(Options::default(), log, Some(Arc::new(store))).unwrap();
    (handle, tokio::spawn(engine.run()))
}

/// One task transition as published: (task index, status, attempt).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The task's index.
    pub task: u32,
    /// Its new status.
    pub status: String,
    /// The attempt.
    pub attempt: u32,
    /// Output or error, when the transition carries one.
    pub detail: Option<Value>,
}

/// Every transition of `run` published to the log, in order. Call after the
/// engine was shut down (which drains its publisher).
pub async fn steps(log: &MemoryLog, run: RunId) -> Vec<Step> {
    let key = run.to_string();
    let mut out = Vec::new();
    for topic in log.topics().await.unwrap() {
        if topic.name != "baton.runs" {
            continue;
        }
        for p in 0..topic.partitions.len() as u32 {
            for r in log.read("baton.runs", p, 0, usize::MAX).await.unwrap() {
                if r.event.key.as_ref() != key.as_bytes() || &*r.event.kind != "baton.transitions" {
                    continue;
                }
                let body: Value = serde_json::from_slice(&r.event.payload).unwrap();
                for t in body["transitions"].as_array().unwrap() {
                    out.push(Step {
                        task: t[0].as_u64().unwrap() as u32,
                        status: t[1].as_str().unwrap().to_string(),
                        attempt: t[2].as_u64().unwrap() as u32,
                        detail: t.get(5).cloned(),
                    });
                }
            }
        }
    }
    out
}

/// Index of task `id` in the spec.
pub fn id(spec: &Spec, name: &str) -> u32 {
    spec.plan()
        .id(name)
        .unwrap_or_else(|| panic!("no task {name}"))
}

/// Asks `probe` every 10 ms until it answers `Some`, and returns that; fails the
/// test when `within` (real time) passes first. The way tests wait on state: a
/// sleep that is only long enough on a quiet machine is not.
pub async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    within: std::time::Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {within:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

/// Waits (at most 30 s) until task `task` of `run` is in `status`.
pub async fn task_reaches(engine: &Handle, run: RunId, task: usize, status: TaskStatus) {
    eventually(
        &format!("task {task} of run {run} reaching {status:?}"),
        std::time::Duration::from_secs(30),
        || async {
            let view = engine.status(run).await.expect("the run is known");
            (view.task_states[task].status == status).then_some(())
        },
    )
    .await;
}
