//! Property tests on random DAGs: every task runs after all its dependencies, and
//! on the success path every task runs exactly once; with fan-outs and loops,
//! every instance runs exactly once, within its bounds.

use std::collections::HashMap;

use proptest::prelude::*;
use serde_json::Value;

use crate::{spec, start, steps};

fn workflow(deps: &[Vec<usize>]) -> String {
    let mut yaml = String::from(
        "agents: { a: { type: noop }, b: { type: simulate, latency: { distribution: uniform, min: 0ms, max: 2ms } } }\ntasks:\n",
    );
    for (i, d) in deps.iter().enumerate() {
        let list: Vec<String> = d.iter().map(|p| format!("t{p}")).collect();
        let agent = if i % 3 == 0 { "b" } else { "a" };
        yaml.push_str(&format!(
            "  - {{ id: t{i}, agent: {agent}, depends_on: [{}] }}\n",
            list.join(", ")
        ));
    }
    yaml
}

fn dags() -> impl Strategy<Value = Vec<Vec<usize>>> {
    (1usize..40).prop_flat_map(|n| {
        (0..n)
            .map(|i| {
                if i == 0 {
                    Just(Vec::new()).boxed()
                } else {
                    proptest::collection::btree_set(0..i, 0..4.min(i + 1))
                        .prop_map(|s| s.into_iter().collect())
                        .boxed()
                }
            })
            .collect::<Vec<_>>()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn tasks_run_once_and_after_their_dependencies(deps in dags(), runs in 1usize..4) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let (engine, log) = start();
            let spec = spec(&workflow(&deps));
            let mut ids = Vec::new();
            for _ in 0..runs {
                ids.push(engine.submit(spec.clone(), Value::Null).await.unwrap());
            }
            for &run in &ids {
                let summary = engine.wait(run).await.unwrap();
                prop_assert_eq!(summary.tasks.succeeded, deps.len() as u64);
            }
            engine.shutdown().await.unwrap();
            for &run in &ids {
                let steps = steps(&log, run).await;
                let mut done_at = HashMap::new();
                let mut dispatched = HashMap::new();
                for (at, s) in steps.iter().enumerate() {
                    match s.status.as_str() {
                        "succeeded" => prop_assert!(done_at.insert(s.task, at).is_none(), "t{} succeeded twice", s.task),
                        "dispatched" => prop_assert!(dispatched.insert(s.task, at).is_none(), "t{} dispatched twice", s.task),
                        _ => {}
                    }
                }
                prop_assert_eq!(done_at.len(), deps.len());
                for (task, d) in deps.iter().enumerate() {
                    let started = dispatched[&(task as u32)];
                    for &p in d {
                        prop_assert!(done_at[&(p as u32)] < started, "t{task} dispatched before t{p} finished");
                    }
                }
            }
            Ok(())
        })?;
    }

    #[test]
    fn dynamic_instances_run_once_within_their_bounds(deps in dags()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        rt.block_on(async {
            let (engine, log) = start();
            let spec = spec(&dynamic_workflow(&deps));
            let run = engine.submit(spec.clone(), Value::Null).await.unwrap();
            let summary = engine.wait(run).await.unwrap();
            prop_assert_eq!(summary.tasks.succeeded, deps.len() as u64, "{:?}", summary);
            let view = engine.status(run).await.unwrap();
            engine.shutdown().await.unwrap();
            let kinds = kinds(&deps);
            let mut expected = HashMap::new();
            for (i, d) in deps.iter().enumerate() {
                let n = match kinds[i] {
                    Kind::Plain => continue,
                    Kind::FanOut => out_len(d[0], &deps, &kinds),
                    Kind::Loop => loop_len(i),
                };
                expected.insert(i as u32, n);
                let items = view.task_states[i].items.unwrap();
                prop_assert_eq!((items.total as usize, items.succeeded as usize), (n, n), "t{}", i);
            }
            prop_assert_eq!(summary.instances, expected.values().sum::<usize>() as u64);
            // Each instance ended once, as the published instance events tell.
            let mut ended: HashMap<(u64, u64), usize> = HashMap::new();
            for (kind, v) in crate::dynamic::run_events(&log, &run.to_string()).await {
                if kind != "baton.items" {
                    continue;
                }
                let task = v["task"].as_u64().unwrap();
                for entry in v["items"].as_array().unwrap() {
                    if entry[1] == "succeeded" {
                        *ended.entry((task, entry[0].as_u64().unwrap())).or_default() += 1;
                    }
                }
            }
            prop_assert!(ended.values().all(|&c| c == 1), "an instance ended twice: {:?}", ended);
            prop_assert_eq!(ended.len(), expected.values().sum::<usize>());
            // Each task, dynamic or not, started after its dependencies ended.
            let steps = steps(&log, run).await;
            let mut done_at = HashMap::new();
            let mut dispatched = HashMap::new();
            for (at, s) in steps.iter().enumerate() {
                match s.status.as_str() {
                    "succeeded" => { done_at.insert(s.task, at); }
                    "dispatched" => { dispatched.entry(s.task).or_insert(at); }
                    _ => {}
                }
            }
            for (task, d) in deps.iter().enumerate() {
                let started = dispatched[&(task as u32)];
                for &p in d {
                    prop_assert!(done_at[&(p as u32)] < started, "t{task} dispatched before t{p} finished");
                }
            }
            Ok(())
        })?;
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Plain,
    FanOut,
    Loop,
}

/// Every fourth task with a dependency that is not a loop fans out over that
/// dependency's output; every fourth loops; the rest are plain.
fn kinds(deps: &[Vec<usize>]) -> Vec<Kind> {
    let mut kinds: Vec<Kind> = Vec::with_capacity(deps.len());
    for (i, d) in deps.iter().enumerate() {
        kinds.push(match i % 4 {
            1 if d.first().is_some_and(|&p| !matches!(kinds[p], Kind::Loop)) => Kind::FanOut,
            2 => Kind::Loop,
            _ => Kind::Plain,
        });
    }
    kinds
}

/// The length of the list task `t` returns: a plain task's scripted list, a
/// fan-out's outputs (one per item of its dependency's list).
fn out_len(t: usize, deps: &[Vec<usize>], kinds: &[Kind]) -> usize {
    match kinds[t] {
        Kind::FanOut => out_len(deps[t][0], deps, kinds),
        _ => t % 5,
    }
}

fn loop_len(t: usize) -> usize {
    t % 3 + 1
}

/// Plain tasks return scripted lists; fan-outs run over their first
/// dependency's output; loops run `loop_len` iterations (`until` never holds:
/// noop returns nothing, and the bound ends the loop with `on_limit: continue`).
fn dynamic_workflow(deps: &[Vec<usize>]) -> String {
    let kinds = kinds(deps);
    let outputs: Vec<String> = (0..deps.len())
        .map(|t| format!("t{t}: {:?}", (0..t % 5).collect::<Vec<_>>()))
        .collect();
    let mut yaml = format!(
        "agents: {{ n: {{ type: noop }}, p: {{ type: simulate, latency: {{ distribution: uniform, min: 0ms, max: 1ms }}, outputs: {{ {} }} }} }}\ntasks:\n",
        outputs.join(", ")
    );
    for (i, d) in deps.iter().enumerate() {
        let list: Vec<String> = d.iter().map(|p| format!("t{p}")).collect();
        let extra = match kinds[i] {
            Kind::Plain => "agent: p".to_string(),
            Kind::FanOut => format!(
                "agent: n, for_each: {{ items: t{}.output, max_parallel: {} }}",
                d[0],
                i % 3 + 1
            ),
            Kind::Loop => format!(
                "agent: n, loop: {{ until: \"t{i}.output.done == true\", max_iterations: {}, on_limit: continue }}",
                loop_len(i)
            ),
        };
        yaml.push_str(&format!(
            "  - {{ id: t{i}, {extra}, depends_on: [{}] }}\n",
            list.join(", ")
        ));
    }
    yaml
}
