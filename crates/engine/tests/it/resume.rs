//! Durability: a run interrupted by a shutdown (work in flight abandoned) resumes
//! on a new engine over the same store (embedded, and PostgreSQL with the
//! `postgres` feature); what succeeded does not run again. The
//! kill -9 version of this test is in the CLI's tests (a real child process).

use std::sync::Arc;

use baton_engine::store::{
    Embedded, EmbeddedOptions, Record, RunId, RunStatus, StateStore, TaskStatus,
};
use baton_engine::{Engine, Options};
use baton_events::MemoryLog;

use crate::spec;

fn workflow(marks: &std::path::Path) -> String {
    // Each task appends its id to `marks` when it finishes; `t2` takes a while.
    format!(
        r#"
agents:
  w: {{ type: command, command: ["sh", "-c", "sleep $(cat | grep -q '\"task\":\"t2\"' && echo 3 || echo 0); echo $BATON_TASK >> {0}"] }}
tasks:
  - {{ id: t0, agent: w }}
  - {{ id: t1, agent: w, depends_on: [t0] }}
  - {{ id: t2, agent: w, depends_on: [t1] }}
  - {{ id: t3, agent: w, depends_on: [t2] }}
"#,
        marks.display()
    )
}

fn engine<S: StateStore>(store: S) -> (baton_engine::Handle, tokio::task::JoinHandle<()>) {
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let (engine, handle) = Engine::build(Options::default(), log, Some(Arc::new(store))).unwrap();
    (handle, tokio::spawn(engine.run()))
}

#[tokio::test]
async fn an_interrupted_run_resumes_without_rerunning_what_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let open = || async { Embedded::open(&state, EmbeddedOptions::default()).unwrap() };
    interrupted_run_resumes(dir.path(), open).await;
}

/// The same over PostgreSQL: each engine is a new instance of the same name, so
/// it takes over the runs of the one before at once.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn an_interrupted_run_resumes_on_postgres() {
    use baton_engine::store::Postgres;

    let Some(schema) = crate::store::Schema::new("resume") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let open = || async { Postgres::open(schema.options("resume")).await.unwrap() };
    interrupted_run_resumes(dir.path(), open).await;
}

async fn interrupted_run_resumes<S, F, Fut>(dir: &std::path::Path, open: F)
where
    S: StateStore,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let marks = dir.join("marks");
    let spec = spec(&workflow(&marks));

    let (first, task) = engine(open().await);
    let run = first
        .submit(spec, serde_json::json!({"n": 1}))
        .await
        .unwrap();
    // Wait until t2 is running, then stop the engine under it.
    crate::task_reaches(&first, run, 2, TaskStatus::Running).await;
    first.shutdown().await.unwrap();
    task.await.unwrap();
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "t0\nt1\n");

    let (second, task) = engine(open().await);
    assert_eq!(second.active().await.unwrap(), [run]);
    let summary = second.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.tasks.succeeded, 4);
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "t0\nt1\nt2\nt3\n");
    // Outputs recorded before the interruption are still there after it.
    let view = second.status(run).await.unwrap();
    assert_eq!(view.task_states[0].status, TaskStatus::Succeeded);
    second.shutdown().await.unwrap();
    task.await.unwrap();

    // A third engine finds nothing to resume.
    let (third, task) = engine(open().await);
    assert!(third.active().await.unwrap().is_empty());
    third.shutdown().await.unwrap();
    task.await.unwrap();
}

/// A run whose every task had succeeded when its process stopped, before the
/// run's end was recorded, ends in the resuming engine's first turn, before the
/// engine answers any message: `active` cannot tell it was resumed, `resumed` can.
#[tokio::test]
async fn a_resumed_run_that_ends_at_once_is_listed_as_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let run = RunId(1 << 22);
    let store = Embedded::open(&state, EmbeddedOptions::default()).unwrap();
    let document = r#"{"agents":{"idle":{"type":"noop"}},"tasks":[{"id":"a","agent":"idle"}]}"#;
    let seq = store
        .append(vec![
            Record::Workflow {
                key: 1,
                document: document.into(),
            },
            Record::RunCreated {
                run,
                workflow: 1,
                input: "null".into(),
                at_ms: 1,
                rerun_of: None,
            },
            Record::Task {
                run,
                task: 0,
                status: TaskStatus::Succeeded,
                attempt: 1,
                agent: 0,
                at_us: 10,
                detail: Some("null".into()),
            },
        ])
        .unwrap();
    store.sync(seq).await.unwrap();
    store.close().await.unwrap();
    drop(store);

    let store = Embedded::open(&state, EmbeddedOptions::default()).unwrap();
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let (engine, handle) = Engine::build(Options::default(), log, Some(Arc::new(store))).unwrap();
    assert_eq!(engine.resumed(), [run]);
    let task = tokio::spawn(engine.run());
    let summary = handle.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.tasks.succeeded, 1);
    assert!(handle.active().await.unwrap().is_empty(), "it has ended");
    handle.shutdown().await.unwrap();
    task.await.unwrap();
}

#[tokio::test]
async fn the_store_is_exclusive() {
    let dir = tempfile::tempdir().unwrap();
    let _held = Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let err = Embedded::open(dir.path(), EmbeddedOptions::default())
        .err()
        .unwrap();
    assert!(err.to_string().contains("in use"), "{err}");
}
