//! Property tests on random DAGs: every task runs after all its dependencies, and
//! on the success path every task runs exactly once.

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
}
