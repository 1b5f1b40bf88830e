//! Saga compensation: when a run fails, completed tasks are undone newest first.

use baton_engine::store::{RunStatus, TaskStatus};
use serde_json::Value;

use crate::{id, spec, start, steps};

const TRIP: &str = r#"
name: trip
agents:
  ok: { type: simulate }
  bad: { type: simulate, failure_rate: 1.0 }
tasks:
  - { id: book_flight, agent: ok, compensation: cancel_flight }
  - { id: book_hotel, agent: ok, depends_on: [book_flight], compensation: { action: cancel_hotel, input: { reason: rollback } } }
  - { id: notify, agent: ok, depends_on: [book_flight] }
  - { id: charge, agent: bad, depends_on: [book_hotel] }
  - { id: receipt, agent: ok, depends_on: [charge] }
  - { id: cancel_flight, agent: ok }
"#;

#[tokio::test]
async fn a_failed_run_compensates_completed_tasks_in_reverse_order() {
    let (engine, log) = start();
    let spec = spec(TRIP);
    let run = engine.submit(spec.clone(), Value::Null).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    assert!(
        summary
            .reason
            .as_deref()
            .unwrap()
            .contains("task `charge` failed")
    );
    assert_eq!(summary.compensations, 2);
    assert!(summary.compensation_failures.is_empty());
    let view = engine.status(run).await.unwrap();
    let state = |name: &str| view.task_states[id(&spec, name) as usize].status;
    assert_eq!(state("book_flight"), TaskStatus::Compensated);
    assert_eq!(state("book_hotel"), TaskStatus::Compensated);
    assert_eq!(state("notify"), TaskStatus::Succeeded, "nothing undoes it");
    assert_eq!(state("charge"), TaskStatus::Failed);
    assert_eq!(state("receipt"), TaskStatus::Cancelled);
    assert_eq!(state("cancel_flight"), TaskStatus::Succeeded);
    engine.shutdown().await.unwrap();

    let compensated: Vec<u32> = steps(&log, run)
        .await
        .into_iter()
        .filter(|s| s.status == "compensated")
        .map(|s| s.task)
        .collect();
    assert_eq!(
        compensated,
        [id(&spec, "book_hotel"), id(&spec, "book_flight")],
        "newest first"
    );
}

#[tokio::test]
async fn a_failing_compensation_is_recorded_and_the_others_still_run() {
    let (engine, _log) = start();
    let spec = spec(
        r#"
agents:
  ok: { type: simulate }
  bad: { type: simulate, failure_rate: 1.0, breaker: { window: 100, min_calls: 100 } }
tasks:
  - { id: a, agent: ok, compensation: undo_a }
  - { id: b, agent: ok, depends_on: [a], compensation: { action: undo_b, agent: bad } }
  - { id: c, agent: bad, depends_on: [b] }
  - { id: undo_a, agent: ok }
"#,
    );
    let run = engine.submit(spec.clone(), Value::Null).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!(summary.compensations, 1);
    assert_eq!(summary.compensation_failures.len(), 1);
    assert!(summary.compensation_failures[0].contains("compensation of `b` failed"));
    let view = engine.status(run).await.unwrap();
    assert_eq!(
        view.task_states[id(&spec, "a") as usize].status,
        TaskStatus::Compensated
    );
    assert_eq!(
        view.task_states[id(&spec, "b") as usize].status,
        TaskStatus::Succeeded
    );
}
