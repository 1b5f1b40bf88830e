//! Bounded loops: a task runs as iterations until `until` holds over the
//! iteration's output or `max_iterations` ran; its body is an agent call or a
//! sub-workflow; a resumed loop goes on from the iteration that had not ended
//! and waits for the child an iteration had started.

use std::sync::Arc;
use std::time::Duration;

use baton_engine::store::{Embedded, RunId, RunStatus};
use baton_engine::{Engine, Handle, Options, RunQuery};
use baton_events::MemoryLog;
use serde_json::json;

use crate::dynamic::decisions;
use crate::{durable, eventually, id, spec, start};

/// A workflow whose `review` task loops with `cat` (each iteration's output
/// is what it was given), under the loop fields `fields`.
fn review(fields: &str) -> String {
    format!(
        r#"
agents:
  cat: {{ type: command, command: cat }}
tasks:
  - {{ id: draft, agent: cat }}
  - {{ id: review, agent: cat, depends_on: [draft], loop: {{ {fields} }} }}
  - {{ id: publish, agent: cat, depends_on: [review] }}
"#
    )
}

#[tokio::test]
async fn a_loop_runs_until_its_condition_holds_each_iteration_given_the_previous_output() {
    let (engine, log) = start();
    let spec = spec(&review(
        r#"until: "review.output.iteration >= 2", max_iterations: 10"#,
    ));
    let run = engine.submit(spec.clone(), json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    let task = &view.task_states[id(&spec, "review") as usize];
    let out = task.output.clone().unwrap();
    assert_eq!(out["iteration"], 2, "the last iteration's output: {out}");
    assert_eq!(out["previous"]["iteration"], 1);
    assert_eq!(out["previous"]["previous"]["iteration"], 0);
    assert_eq!(out["previous"]["previous"]["previous"], json!(null));
    assert_eq!(
        out["upstream"]["draft"]["task"], "draft",
        "every iteration sees its dependencies"
    );
    let publish = view.task_states[id(&spec, "publish") as usize]
        .output
        .clone()
        .unwrap();
    assert_eq!(publish["upstream"]["review"]["iteration"], 2);
    engine.shutdown().await.unwrap();
    let decisions = decisions(&log, run).await;
    let iterations: Vec<_> = decisions
        .iter()
        .filter(|d| d["decision"] == "iteration")
        .map(|d| d["iteration"].as_u64().unwrap())
        .collect();
    assert_eq!(iterations, [0, 1, 2]);
    let end = decisions
        .iter()
        .find(|d| d["decision"] == "loop_end")
        .unwrap();
    assert_eq!(
        (end["iterations"].clone(), end["until"].clone()),
        (json!(3), json!(true))
    );
}

#[tokio::test]
async fn the_bound_fails_the_task_continues_with_the_last_output_or_is_the_count() {
    let (engine, _log) = start();
    let until = r#"until: "review.output.iteration >= 50", max_iterations: 3"#;
    let failing = spec(&review(until));
    let run = engine.submit(failing, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    let reason = summary.reason.clone().unwrap();
    assert!(
        reason.contains("task `review` failed: the loop ran `max_iterations` (3) and `until` (review.output.iteration >= 50) still does not hold"),
        "{reason}"
    );

    for fields in [
        format!("{until}, on_limit: continue"),
        "max_iterations: 3".to_string(),
    ] {
        let spec = spec(&review(&fields));
        let run = engine.submit(spec.clone(), json!({})).await.unwrap();
        let summary = engine.wait(run).await.unwrap();
        assert_eq!(
            summary.status,
            RunStatus::Completed,
            "{fields}: {summary:?}"
        );
        let view = engine.status(run).await.unwrap();
        let task = &view.task_states[id(&spec, "review") as usize];
        assert_eq!(task.output.as_ref().unwrap()["iteration"], 2, "{fields}");
        assert_eq!(task.items.unwrap().succeeded, 3, "{fields}");
    }
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failed_iteration_fails_the_loop_after_its_retries() {
    let (engine, _log) = start();
    let spec = spec(
        r#"
agents:
  w: { type: command, command: ["sh", "-c", "cat > /dev/null; [ $BATON_ITERATION = 1 ] && exit 3; echo '{\"ok\": false}'"] }
tasks:
  - { id: review, agent: w, retry: { max_attempts: 2, backoff: { initial: 1ms } }, loop: { until: "review.output.ok == true", max_iterations: 5 } }
"#,
    );
    let run = engine.submit(spec, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    let reason = summary.reason.clone().unwrap();
    assert!(reason.contains("iteration 1 of review failed"), "{reason}");
    assert_eq!(
        summary.retries, 1,
        "the iteration was retried once: {summary:?}"
    );
    engine.shutdown().await.unwrap();
}

/// A loop over a group of tasks: each iteration is a child run of the inline
/// workflow, given the iteration and the previous child's outputs.
fn group(marks: &std::path::Path, sleep_in: u32) -> String {
    format!(
        r#"
tasks:
  - id: refine
    loop: {{ until: "refine.output.check.run_input.iteration >= 2", max_iterations: 4 }}
    workflow:
      inline:
        agents:
          cat: {{ type: command, command: cat }}
          mark: {{ type: command, command: ["sh", "-c", "i=$(grep -o '\"iteration\":[0-9]*' | head -n1 | cut -d: -f2); echo $i >> {marks}; [ \"$i\" = {sleep_in} ] && sleep 2; echo 1"] }}
        tasks:
          - {{ id: edit, agent: mark }}
          - {{ id: check, agent: cat, depends_on: [edit] }}
  - {{ id: after, depends_on: [refine] }}
"#,
        marks = marks.display()
    )
}

/// The child runs of `run` this engine knows, newest first.
async fn children(engine: &Handle, run: RunId) -> Vec<RunId> {
    let query = RunQuery {
        parent: Some(run),
        limit: 100,
        ..RunQuery::default()
    };
    let entries = engine.list(query).await.unwrap();
    entries.into_iter().map(|e| e.run).collect()
}

#[tokio::test]
async fn a_loop_over_a_sub_workflow_runs_one_child_per_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let (engine, log) = start();
    let spec = spec(&group(&marks, 99));
    let run = engine.submit(spec.clone(), json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    let out = view.task_states[0].output.clone().unwrap();
    assert_eq!(out["check"]["run_input"]["iteration"], 2, "{out}");
    assert_eq!(
        out["check"]["run_input"]["previous"]["check"]["run_input"]["iteration"], 1,
        "an iteration's child gets the previous child's outputs"
    );
    assert_eq!(children(&engine, run).await.len(), 3);
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "0\n1\n2\n");
    engine.shutdown().await.unwrap();
    // Each child's start and end are decisions of the parent, by iteration.
    let decisions: Vec<(String, u64)> = decisions(&log, run)
        .await
        .into_iter()
        .filter(|v| v["decision"].as_str().unwrap().starts_with("child"))
        .map(|v| {
            (
                v["decision"].as_str().unwrap().to_string(),
                v["iteration"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(String, u64)> = (0..3)
        .flat_map(|i| [("child".to_string(), i), ("child_end".to_string(), i)])
        .collect();
    assert_eq!(decisions, expected);
}

#[tokio::test]
async fn a_resumed_loop_goes_on_from_the_iteration_that_had_not_ended() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let marks = dir.path().join("marks");
    let spec = spec(&format!(
        r#"
agents:
  w: {{ type: command, command: ["sh", "-c", "cat > /dev/null; echo $BATON_ITERATION >> {}; [ $BATON_ITERATION = 2 ] && sleep 3; echo \"{{\\\"n\\\": $BATON_ITERATION}}\""] }}
tasks:
  - {{ id: count, agent: w, loop: {{ until: "count.output.n >= 3", max_iterations: 10 }} }}
"#,
        marks.display()
    ));
    let (first, task) = durable(&state);
    let run = first.submit(spec, json!({})).await.unwrap();
    eventually("iteration 2 to start", Duration::from_secs(30), || async {
        let marks = std::fs::read_to_string(&marks).ok()?;
        (marks == "0\n1\n2\n").then_some(())
    })
    .await;
    first.shutdown().await.unwrap();
    task.await.unwrap();
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "0\n1\n2\n");

    let (second, task) = durable(&state);
    let summary = second.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "0\n1\n2\n2\n3\n",
        "iterations 0 and 1 did not run again; 2 was interrupted"
    );
    let view = second.status(run).await.unwrap();
    assert_eq!(view.task_states[0].output, Some(json!({"n": 3})));
    second.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn a_resumed_loop_waits_for_the_child_its_iteration_had_started() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let marks = dir.path().join("marks");
    let spec = spec(&group(&marks, 1));
    let (first, task) = durable(&state);
    let run = first.submit(spec, json!({})).await.unwrap();
    eventually(
        "iteration 1's child to run",
        Duration::from_secs(30),
        || async {
            let marks = std::fs::read_to_string(&marks).ok()?;
            (marks == "0\n1\n").then_some(())
        },
    )
    .await;
    let before = children(&first, run).await;
    assert_eq!(before.len(), 2, "iteration 0's child and iteration 1's");
    first.shutdown().await.unwrap();
    task.await.unwrap();

    let (second, task) = durable(&state);
    let summary = second.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    // Iteration 1's child resumed (its `edit` ran again, interrupted), and no
    // second child started for it: this engine knows it, iteration 2's, and
    // iteration 0's (finished before the restart, kept to be undone).
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "0\n1\n1\n2\n");
    let after = children(&second, run).await;
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(
        after[1], before[0],
        "iteration 1's child is the one that resumed"
    );
    assert_eq!(after[2], before[1], "iteration 0's child, read back");
    second.shutdown().await.unwrap();
    task.await.unwrap();
}

/// An engine's `max_instances` bounds the fan-out items and iterations one run
/// starts: beyond it the task fails, naming the setting.
#[tokio::test]
async fn the_engines_max_instances_fails_a_run_that_would_start_more() {
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let options = Options {
        max_instances: 4,
        ..Options::default()
    };
    let (engine, handle) = Engine::build(options, log, None::<Arc<Embedded>>).unwrap();
    let task = tokio::spawn(engine.run());
    let fan_out = |n: usize| {
        spec(&format!(
            "agents: {{ s: {{ type: simulate, outputs: {{ split: {:?} }} }} }}\ntasks:\n  - {{ id: split, agent: s }}\n  - {{ id: each, agent: s, depends_on: [split], for_each: split.output }}\n",
            (0..n).collect::<Vec<_>>()
        ))
    };
    let run = handle.submit(fan_out(4), json!({})).await.unwrap();
    assert_eq!(handle.wait(run).await.unwrap().status, RunStatus::Completed);
    let too_many = [fan_out(5), spec(&review("max_iterations: 5"))];
    for spec in too_many {
        let run = handle.submit(spec, json!({})).await.unwrap();
        let summary = handle.wait(run).await.unwrap();
        assert_eq!(summary.status, RunStatus::Failed);
        let reason = summary.reason.clone().unwrap();
        assert!(
            reason.contains("the run would start 5 task instances")
                && reason.contains("`max_instances` (4)"),
            "{reason}"
        );
    }
    handle.shutdown().await.unwrap();
    task.await.unwrap();
}

/// The engine's figures for decisions: each loop iteration after the first,
/// each task a route chose and each child run's start is measured once.
#[tokio::test]
async fn decisions_and_child_starts_are_measured() {
    let (engine, _log) = start();
    let looped = spec(&review("max_iterations: 4"));
    let run = engine.submit(looped, json!({})).await.unwrap();
    engine.wait(run).await.unwrap();
    let stats = engine.stats().await.unwrap();
    assert_eq!(stats.decision_latency.count, 3, "iterations 1 to 3");
    assert_eq!(stats.child_start_latency.count, 0);
    let dir = tempfile::tempdir().unwrap();
    let run = engine
        .submit(spec(&group(&dir.path().join("marks"), 99)), json!({}))
        .await
        .unwrap();
    engine.wait(run).await.unwrap();
    let stats = engine.stats().await.unwrap();
    assert_eq!(
        stats.child_start_latency.count, 3,
        "one child per iteration"
    );
    assert_eq!(stats.decision_latency.count, 3 + 2);
    assert!(stats.child_start_latency.p99_us > 0.0);
    engine.shutdown().await.unwrap();
}
