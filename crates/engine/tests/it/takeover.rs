//! Runs changing hands between engines, as instances sharing a state store do:
//! `adopt` resumes another engine's runs from their records, `release` drops runs
//! whose ownership moved away.

use std::sync::Arc;
use std::time::Duration;

use baton_engine::store::{
    Embedded, EmbeddedOptions, Record, RunId, RunStatus, StateStore, TaskStatus,
};
use baton_engine::{Engine, Error, Options};
use baton_events::MemoryLog;

use crate::spec;

const SLOW: &str = r#"
agents:
  w: { type: command, command: ["sh", "-c", "sleep 0.3"] }
  s: { type: command, command: ["sleep", "30"] }
tasks:
  - { id: a, agent: w }
  - { id: b, agent: w, depends_on: [a] }
  - { id: c, agent: s, depends_on: [b] }
"#;

const QUICK: &str = r#"
agents:
  w: { type: command, command: ["true"] }
tasks:
  - { id: a, agent: w }
  - { id: b, agent: w, depends_on: [a] }
  - { id: c, agent: w, depends_on: [b] }
"#;

#[tokio::test]
async fn a_run_adopted_from_another_engines_records_resumes_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    // The first engine records a run and stops with its first task done.
    let store = Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let (engine, first) =
        Engine::build(Options::default(), log.clone(), Some(Arc::new(store))).unwrap();
    let task = tokio::spawn(engine.run());
    let run = first
        .submit(spec(SLOW), serde_json::json!({}))
        .await
        .unwrap();
    loop {
        let view = first.status(run).await.unwrap();
        if view.task_states[0].status == TaskStatus::Succeeded {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.shutdown().await.unwrap();
    task.await.unwrap();
    let records = Embedded::open(dir.path(), EmbeddedOptions::default())
        .unwrap()
        .load()
        .unwrap();

    // A second engine, numbered as one instance of several, takes the run over.
    let options = Options {
        node: Some(5),
        ..Options::default()
    };
    let (engine, second) = Engine::build::<_, Embedded>(options, log, None).unwrap();
    tokio::spawn(engine.run());
    assert_eq!(second.adopt(records.clone()).await.unwrap(), [run]);
    // Adopting what it already drives changes nothing.
    assert!(second.adopt(records).await.unwrap().is_empty());
    let view = second.status(run).await.unwrap();
    assert_eq!(view.task_states[0].status, TaskStatus::Succeeded);
    assert_eq!(view.task_states[0].attempt, 1);
    // Its own runs carry its instance number.
    let own = second
        .submit(spec(QUICK), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!((own.0 >> 12) & 0x3ff, 5);
    assert_eq!(second.wait(own).await.unwrap().status, RunStatus::Completed);
    // The adopted run goes on where it stopped: `c` sleeps, so cancel to end it.
    loop {
        let view = second.status(run).await.unwrap();
        if view.task_states[2].status == TaskStatus::Running {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let view = second.status(run).await.unwrap();
    assert_eq!(view.task_states[0].attempt, 1, "a did not run again");
    second.cancel(run).await.unwrap();
    assert_eq!(second.wait(run).await.unwrap().status, RunStatus::Cancelled);
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_released_run_is_forgotten_and_its_waiters_are_told_it_moved() {
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let (engine, handle) = Engine::build::<_, Embedded>(Options::default(), log, None).unwrap();
    tokio::spawn(engine.run());
    let run = handle
        .submit(spec(SLOW), serde_json::json!({}))
        .await
        .unwrap();
    let waiting = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.wait(run).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(handle.release(vec![run]).await.unwrap(), 1);
    assert!(matches!(waiting.await.unwrap(), Err(Error::Moved(r)) if r == run));
    assert!(matches!(
        handle.status(run).await,
        Err(Error::UnknownRun(_))
    ));
    assert!(handle.active().await.unwrap().is_empty());
    // Releasing again, or an unknown run, is a no-op.
    assert_eq!(handle.release(vec![run]).await.unwrap(), 0);
    // The engine goes on with other work (the released run's agent call ends unnoticed).
    let next = handle
        .submit(spec(QUICK), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        handle.wait(next).await.unwrap().status,
        RunStatus::Completed
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_run_that_ended_elsewhere_is_reported_from_its_records() {
    // The history another instance left: three tasks succeeded, then the run.
    let spec = spec(QUICK);
    let run = RunId(1_700_000_000_000 << 22);
    let mut records = vec![
        Record::Workflow {
            key: spec.key(),
            document: spec.document().to_owned(),
        },
        Record::RunCreated {
            run,
            workflow: spec.key(),
            input: "{}".into(),
            at_ms: 1_700_000_000_000,
        },
    ];
    for task in 0..3 {
        for status in [TaskStatus::Dispatched, TaskStatus::Succeeded] {
            records.push(Record::Task {
                run,
                task,
                status,
                attempt: 1,
                agent: 0,
                at_us: u64::from(task) * 1000,
                detail: (status == TaskStatus::Succeeded).then(|| format!("{{\"n\":{task}}}")),
            });
        }
    }
    records.push(Record::Run {
        run,
        status: RunStatus::Completed,
        at_ms: 1_700_000_000_003,
        reason: None,
    });

    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let (engine, handle) = Engine::build::<_, Embedded>(Options::default(), log, None).unwrap();
    tokio::spawn(engine.run());
    assert!(matches!(
        handle.status(run).await,
        Err(Error::UnknownRun(_))
    ));
    // Finished runs are not taken over by `adopt`, only learned by `remember`.
    assert!(handle.adopt(records.clone()).await.unwrap().is_empty());
    assert_eq!(handle.remember(records.clone()).await.unwrap(), [run]);
    assert!(handle.remember(records).await.unwrap().is_empty());
    let view = handle.status(run).await.unwrap();
    assert_eq!(view.summary.status, RunStatus::Completed);
    assert_eq!(view.summary.tasks.succeeded, 3);
    assert_eq!(
        view.task_states[2].output,
        Some(serde_json::json!({"n": 2}))
    );
    assert!(handle.active().await.unwrap().is_empty());
    assert_eq!(handle.wait(run).await.unwrap().status, RunStatus::Completed);
    handle.shutdown().await.unwrap();
}
