//! Hybrid coordination: transitions on the log, `wait_for` completed by events.

use std::time::Duration;

use baton_engine::store::{RunStatus, TaskStatus};
use baton_events::{Event, EventLog};
use serde_json::{Value, json};

use crate::{id, spec, start, steps, task_reaches};

const GATED: &str = r#"
coordination: { type: hybrid, event_driven: [approved] }
tasks:
  - { id: prepare }
  - { id: approval, depends_on: [prepare], wait_for: { type: approved, match: { ok: true }, timeout: 1h } }
  - { id: ship, depends_on: [approval], condition: "approval.output.payload.by == 'ada'" }
"#;

#[tokio::test]
async fn a_wait_for_task_completes_when_a_matching_event_arrives() {
    let (engine, log) = start();
    let spec = spec(GATED);
    let run = engine.submit(spec.clone(), Value::Null).await.unwrap();
    task_reaches(
        &engine,
        run,
        id(&spec, "approval") as usize,
        TaskStatus::Ready,
    )
    .await;
    let publish = |payload: Value| {
        let log = log.clone();
        async move {
            let event = Event::new("approved", "order-1", payload.to_string());
            log.publish("baton.signals", vec![event]).await.unwrap();
        }
    };
    // An event that does not match is passed over: the gate's output below is
    // the second event's, published after it.
    publish(json!({"ok": false, "by": "bob"})).await;
    publish(json!({"ok": true, "by": "ada"})).await;
    let summary = tokio::time::timeout(Duration::from_secs(10), engine.wait(run))
        .await
        .expect("the event completes the gate")
        .unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    let view = engine.status(run).await.unwrap();
    let approval = &view.task_states[id(&spec, "approval") as usize];
    assert_eq!(approval.output.as_ref().unwrap()["payload"]["by"], "ada");
    assert_eq!(
        view.task_states[id(&spec, "ship") as usize].status,
        TaskStatus::Succeeded
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_for_without_its_event_times_out() {
    let (engine, _log) = start();
    let spec = spec(
        "tasks: [{ id: gate, wait_for: { type: never, timeout: 30s } }, { id: after, depends_on: [gate] }]",
    );
    let run = engine.submit(spec, Value::Null).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    let reason = summary.reason.clone().unwrap();
    assert!(
        reason.contains("no `never` event arrived within 30s"),
        "{reason}"
    );
}

#[tokio::test]
async fn every_transition_is_published_in_order() {
    let (engine, log) = start();
    let spec = spec("tasks: [{ id: a }, { id: b, depends_on: [a] }]");
    let run = engine.submit(spec, Value::Null).await.unwrap();
    engine.wait(run).await.unwrap();
    engine.shutdown().await.unwrap();
    let got: Vec<(u32, String, u32)> = steps(&log, run)
        .await
        .into_iter()
        .map(|s| (s.task, s.status, s.attempt))
        .collect();
    let want: Vec<(u32, String, u32)> = [
        (0, "ready"),
        (0, "dispatched"),
        (0, "running"),
        (0, "succeeded"),
        (1, "ready"),
        (1, "dispatched"),
        (1, "running"),
        (1, "succeeded"),
    ]
    .into_iter()
    .map(|(t, s)| (t, s.to_string(), 1))
    .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_run_is_announced_before_its_transitions_and_ended_after_them() {
    let (engine, log) = start();
    let spec = spec("tasks: [{ id: a }, { id: b, depends_on: [a] }]");
    let run = engine.submit(spec, Value::Null).await.unwrap();
    engine.wait(run).await.unwrap();
    engine.shutdown().await.unwrap();
    let key = run.to_string();
    let mut kinds = Vec::new();
    for p in 0..log.topics().await.unwrap()[0].partitions.len() as u32 {
        for r in log.read("baton.runs", p, 0, usize::MAX).await.unwrap() {
            if r.event.key.as_ref() == key.as_bytes() {
                let body: Value = serde_json::from_slice(&r.event.payload).unwrap();
                kinds.push(match body.get("status") {
                    Some(s) => s.as_str().unwrap().to_string(),
                    None => "transitions".to_string(),
                });
            }
        }
    }
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("created"),
        "{kinds:?}"
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("completed"),
        "{kinds:?}"
    );
    assert!(
        kinds[1..kinds.len() - 1].iter().all(|k| k == "transitions"),
        "{kinds:?}"
    );
}

/// A worker's progress reports reach the run's events as `baton.progress`,
/// coalesced: the first at once, then at most one per 100 ms window, the
/// newest of the window; a report after the call ended is dropped. None is
/// recorded.
#[tokio::test(start_paused = true)]
async fn progress_reports_are_coalesced_onto_the_runs_events() {
    use std::sync::Arc;

    use baton_engine::store::Embedded;
    use baton_engine::{Engine, Options};
    use baton_events::MemoryLog;

    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let options = Options::default();
    let workers = options.workers.clone();
    let (engine, handle) =
        Engine::build::<_, Embedded>(options.clone(), log.clone(), None).unwrap();
    tokio::spawn(engine.run());
    // The spec's worker agent waits in the engine's pool.
    let flow = crate::spec_with(
        r#"
agents:
  w: { type: worker }
tasks:
  - { id: transcribe, agent: w }
"#,
        &options.agents(),
    );
    let run = handle.submit(flow, json!({})).await.unwrap();
    let lease = Duration::from_secs(30);
    let got = workers
        .poll("w", "tester", 1, Duration::from_secs(10), lease)
        .await;
    let id = got[0].id.clone();
    // Sent at one instant (time is paused): one window takes the three.
    for pct in [10, 20, 30] {
        workers.progress(&id, json!({"pct": pct})).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The report and the call's end reach the engine in this order.
    workers.progress(&id, json!({"pct": 90})).unwrap();
    workers.complete(&id, json!({"text": "done"})).unwrap();
    let summary = handle.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    handle.shutdown().await.unwrap();
    let progress: Vec<Value> = crate::dynamic::run_events(&log, &run.to_string())
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "baton.progress")
        .map(|(_, v)| v["progress"]["pct"].clone())
        .collect();
    assert_eq!(
        progress,
        [json!(10), json!(30), json!(90)],
        "10 at once, 30 the newest of its window, 90 at once in a window of its own; the 20 coalesced away"
    );
}
