//! Cancel, pause and resume; conditions and skips; outputs flowing downstream.

use std::sync::Arc;
use std::time::Duration;

use baton_engine::store::{Embedded, RunStatus, TaskStatus};
use baton_engine::{Engine, Error, Options};
use baton_events::MemoryLog;
use serde_json::{Value, json};

use crate::{id, spec, start};

#[tokio::test(start_paused = true)]
async fn cancel_stops_work_in_flight_and_compensates() {
    let (engine, _log) = start();
    let spec = spec(
        r#"
agents: { fast: { type: simulate }, slow: { type: simulate, latency: 1h } }
tasks:
  - { id: a, agent: fast, compensation: { action: undo } }
  - { id: b, agent: slow, depends_on: [a] }
  - { id: c, agent: fast, depends_on: [b] }
"#,
    );
    let run = engine.submit(spec.clone(), Value::Null).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[1].status, TaskStatus::Running);
    engine.cancel(run).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Cancelled);
    assert_eq!(summary.reason.as_deref(), Some("cancelled by request"));
    let view = engine.status(run).await.unwrap();
    let states: Vec<TaskStatus> = view.task_states.iter().map(|t| t.status).collect();
    assert_eq!(
        states,
        [
            TaskStatus::Compensated,
            TaskStatus::Cancelled,
            TaskStatus::Cancelled
        ]
    );
    let stats = engine.stats().await.unwrap();
    assert!(
        stats.agents.iter().all(|a| a.in_flight == 0),
        "{:?}",
        stats.agents
    );
    // An ended run cannot be cancelled again.
    assert!(matches!(
        engine.cancel(run).await,
        Err(Error::Conflict { .. })
    ));
}

#[tokio::test(start_paused = true)]
async fn pause_holds_new_dispatches_until_resume() {
    let (engine, _log) = start();
    let spec = spec(
        r#"
agents: { w: { type: simulate, latency: 1s } }
tasks:
  - { id: a, agent: w }
  - { id: b, agent: w, depends_on: [a] }
"#,
    );
    let run = engine.submit(spec, Value::Null).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    engine.pause(run).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.summary.status, RunStatus::Paused);
    assert_eq!(
        view.task_states[0].status,
        TaskStatus::Succeeded,
        "in flight finishes"
    );
    assert_eq!(
        view.task_states[1].status,
        TaskStatus::Ready,
        "not dispatched while paused"
    );
    engine.resume(run).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    assert!(matches!(
        engine.pause(run).await,
        Err(Error::Conflict {
            status: RunStatus::Completed,
            ..
        })
    ));
}

#[tokio::test]
async fn conditions_decide_and_skips_propagate_to_dependents() {
    let (engine, _log) = start();
    let spec = spec(
        r#"
agents:
  probe: { type: command, command: "echo '{\"go\": false, \"n\": 3}'" }
  echo: { type: command, command: cat }
tasks:
  - { id: check, agent: probe }
  - { id: yes, agent: echo, depends_on: [check], condition: "check.output.go == true" }
  - { id: after_yes, agent: echo, depends_on: [yes] }
  - { id: no, agent: echo, depends_on: [check], condition: "check.output.go == false", input: { note: hi } }
  - { id: join, agent: echo, depends_on: [after_yes, no], condition: "no.status == 'succeeded'" }
"#,
    );
    let run = engine
        .submit(spec.clone(), json!({"user": "ada"}))
        .await
        .unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    let task = |name: &str| &view.task_states[id(&spec, name) as usize];
    assert_eq!(task("yes").status, TaskStatus::Skipped);
    assert_eq!(
        task("after_yes").status,
        TaskStatus::Skipped,
        "a skip propagates"
    );
    assert_eq!(task("no").status, TaskStatus::Succeeded);
    assert_eq!(
        task("join").status,
        TaskStatus::Succeeded,
        "its condition overrides"
    );
    // `cat` echoes what the agent was given: upstream outputs, the task's and the run's input.
    let given = task("no").output.clone().unwrap();
    assert_eq!(given["upstream"]["check"], json!({"go": false, "n": 3}));
    assert_eq!(given["input"], json!({"note": "hi"}));
    assert_eq!(given["run_input"], json!({"user": "ada"}));
    assert_eq!(given["task"], "no");
    assert_eq!(given["attempt"], 1);
}

#[tokio::test]
async fn unknown_runs_are_reported() {
    let (engine, _log) = start();
    let missing = baton_engine::store::RunId(42);
    assert!(matches!(
        engine.status(missing).await,
        Err(Error::UnknownRun(_))
    ));
    assert!(matches!(
        engine.wait(missing).await,
        Err(Error::UnknownRun(_))
    ));
    assert!(matches!(
        engine.pause(missing).await,
        Err(Error::UnknownRun(_))
    ));
}

#[tokio::test]
async fn worker_tasks_wait_for_a_poll_and_complete_with_the_workers_output() {
    let options = Options::default();
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let (engine, handle) = Engine::build::<_, Embedded>(options.clone(), log, None).unwrap();
    tokio::spawn(engine.run());
    let engine = handle;
    let spec = crate::spec_with(
        r#"
agents: { remote_it: { type: worker } }
tasks:
  - { id: fetch, agent: remote_it, input: { url: "https://example.org" } }
  - { id: after, agent: remote_it, depends_on: [fetch] }
"#,
        &options.agents(),
    );
    let run = engine.submit(spec, json!({"k": 1})).await.unwrap();
    // Another engine's pool never sees this engine's calls (while `fetch` waits).
    let other = Options::default();
    let polled = other
        .workers
        .poll(
            "remote_it",
            "tester",
            10,
            Duration::from_millis(300),
            Duration::from_secs(30),
        )
        .await;
    assert!(polled.is_empty(), "{polled:?}");
    let pool = &options.workers;
    for expected in ["fetch", "after"] {
        let got = pool
            .poll(
                "remote_it",
                "tester",
                10,
                Duration::from_secs(5),
                Duration::from_secs(30),
            )
            .await;
        assert_eq!(
            got.len(),
            1,
            "one task at a time: `after` depends on `fetch`"
        );
        assert_eq!(got[0].task, expected);
        assert_eq!(got[0].input["run_input"], json!({"k": 1}));
        pool.complete(&got[0].id, json!({"done": expected}))
            .unwrap();
    }
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[1].output, Some(json!({"done": "after"})));
}
