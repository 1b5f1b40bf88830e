//! Rerun from a task: a new run of a finished run that keeps the outputs of
//! the tasks that succeeded, except the chosen task and what depends on it.

use baton_engine::Error;
use baton_engine::store::{RunStatus, TaskStatus};
use serde_json::json;

use crate::{id, sorted_lines, spec, start};

/// `a → b → c → d` and `a → e`: each task appends its id to `marks`; `c`
/// fails while `broken` exists.
fn chain(dir: &std::path::Path) -> String {
    let marks = dir.join("marks");
    let broken = dir.join("broken");
    format!(
        r#"
agents:
  w: {{ type: command, command: ["sh", "-c", "cat > /dev/null; echo $BATON_TASK >> {marks}; [ $BATON_TASK = c ] && [ -e {broken} ] && exit 3; echo \"{{\\\"from\\\": \\\"$BATON_TASK\\\"}}\""] }}
tasks:
  - {{ id: a, agent: w }}
  - {{ id: b, agent: w, depends_on: [a] }}
  - {{ id: c, agent: w, depends_on: [b] }}
  - {{ id: d, agent: w, depends_on: [c] }}
  - {{ id: e, agent: w, depends_on: [a] }}
"#,
        marks = marks.display(),
        broken = broken.display()
    )
}

fn marks(dir: &std::path::Path) -> Vec<String> {
    sorted_lines(&dir.join("marks"))
}

#[tokio::test]
async fn a_rerun_runs_the_task_and_its_downstream_again_and_reuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken"), "").unwrap();
    let (engine, _log) = start();
    let spec = spec(&chain(dir.path()));
    let first = engine
        .submit(spec.clone(), json!({"topic": "x"}))
        .await
        .unwrap();
    let summary = engine.wait(first).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!(marks(dir.path()), ["a", "b", "c", "e"]);

    std::fs::remove_file(dir.path().join("broken")).unwrap();
    std::fs::remove_file(dir.path().join("marks")).unwrap();
    let second = engine.rerun(first, "c").await.unwrap();
    assert_ne!(second, first);
    let summary = engine.wait(second).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.rerun_of, Some(first));
    assert_eq!(marks(dir.path()), ["c", "d"], "a, b and e were reused");
    let view = engine.status(second).await.unwrap();
    let c = &view.task_states[id(&spec, "c") as usize];
    let upstream = &c.output.as_ref().unwrap();
    assert_eq!(upstream["from"], "c");
    let d = &view.task_states[id(&spec, "d") as usize];
    assert_eq!(d.status, TaskStatus::Succeeded);
    let b = &view.task_states[id(&spec, "b") as usize];
    assert_eq!(
        b.output,
        Some(json!({"from": "b"})),
        "b's output is the first run's"
    );

    // From the root: everything runs again, with the first run's input.
    std::fs::remove_file(dir.path().join("marks")).unwrap();
    let third = engine.rerun(second, "a").await.unwrap();
    let summary = engine.wait(third).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(marks(dir.path()), ["a", "b", "c", "d", "e"]);
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_rerun_needs_a_finished_run_and_a_task_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _log) = start();
    let run = engine
        .submit(spec(&chain(dir.path())), json!({}))
        .await
        .unwrap();
    engine.wait(run).await.unwrap();
    match engine.rerun(run, "cc").await {
        Err(Error::UnknownTask { task, hint, .. }) => {
            assert_eq!(task, "cc");
            assert_eq!(hint.as_deref(), Some("did you mean `c`?"));
        }
        other => panic!("{other:?}"),
    }
    let unknown = baton_engine::store::RunId(12345);
    assert!(matches!(
        engine.rerun(unknown, "a").await,
        Err(Error::UnknownRun(_))
    ));
    let slow = spec(
        r#"
agents:
  slow: { type: simulate, latency: 30s }
tasks:
  - { id: a, agent: slow }
"#,
    );
    let running = engine.submit(slow, json!({})).await.unwrap();
    let e = engine.rerun(running, "a").await.unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("cannot rerun"), "{e}");
    engine.shutdown().await.unwrap();
}

/// The link from a rerun to the run it reran is recorded with the rerun's
/// creation: a later engine on the same store still shows it.
#[tokio::test]
async fn a_rerun_names_the_run_it_reran_after_a_restart() {
    use std::sync::Arc;

    use baton_engine::store::{Embedded, EmbeddedOptions};
    use baton_engine::{Engine, Options};
    use baton_events::MemoryLog;

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let engine = || {
        let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
        let store = Embedded::open(&state, EmbeddedOptions::default()).unwrap();
        let options = Options {
            remember_finished: true,
            ..Options::default()
        };
        let (engine, handle) = Engine::build(options, log, Some(Arc::new(store))).unwrap();
        (handle, tokio::spawn(engine.run()))
    };
    let (first_engine, task) = engine();
    let first = first_engine
        .submit(spec(&chain(dir.path())), json!({}))
        .await
        .unwrap();
    first_engine.wait(first).await.unwrap();
    let second = first_engine.rerun(first, "c").await.unwrap();
    first_engine.wait(second).await.unwrap();
    first_engine.shutdown().await.unwrap();
    task.await.unwrap();

    let (later, task) = engine();
    assert_eq!(
        later.status(second).await.unwrap().summary.rerun_of,
        Some(first)
    );
    assert_eq!(later.status(first).await.unwrap().summary.rerun_of, None);
    later.shutdown().await.unwrap();
    task.await.unwrap();
}
