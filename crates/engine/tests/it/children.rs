//! Sub-workflows: a task runs another workflow as a child run; its end ends
//! the task; pause, cancel and failure reach children; a resumed parent waits
//! for the child it had started instead of starting another.

use std::sync::Arc;
use std::time::Duration;

use baton_engine::store::{Embedded, RunStatus, TaskStatus};
use baton_engine::{Engine, Options, RunQuery};
use baton_events::MemoryLog;
use serde_json::json;

use crate::{durable, eventually, id, spec, start};

fn parent(child_tasks: &str) -> String {
    format!(
        r#"
name: parent
agents:
  w: {{ type: noop }}
tasks:
  - {{ id: prepare, agent: w, input: {{ topic: rust }} }}
  - id: team
    depends_on: [prepare]
    input: {{ depth: 2 }}
    workflow:
      inline:
        name: team
        agents:
          cat: {{ type: command, command: cat }}
          slow: {{ type: command, command: ["sh", "-c", "cat > /dev/null; sleep 30"] }}
          bad: {{ type: command, command: ["sh", "-c", "echo nope >&2; exit 4"] }}
        tasks:
{child_tasks}
  - {{ id: after, agent: w, depends_on: [team] }}
"#
    )
}

#[tokio::test]
async fn a_child_run_gets_the_tasks_input_and_returns_its_last_outputs() {
    let (engine, _log) = start();
    let spec = spec(&parent(
        "          - { id: look, agent: cat }\n          - { id: write, agent: cat, depends_on: [look] }",
    ));
    let run = engine
        .submit(spec.clone(), json!({"user": "ada"}))
        .await
        .unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    let team = &view.task_states[id(&spec, "team") as usize];
    assert_eq!(team.status, TaskStatus::Succeeded);
    // The output is the child's last tasks' outputs by id; `write` echoed its
    // input, whose `run_input` is what the parent's task was given.
    let output = team.output.clone().unwrap();
    let given = &output["write"]["upstream"]["look"]["run_input"];
    assert_eq!(given["input"], json!({"depth": 2}));
    assert_eq!(given["task"], "team");
    assert_eq!(given["run_input"], json!({"user": "ada"}));
    // `prepare` (noop) had no output to pass on.
    assert_eq!(given["upstream"], json!({}));
    // The child is a run of its own, listed with its parent.
    let children = engine
        .list(RunQuery {
            parent: Some(run),
            limit: 10,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].workflow.as_deref(), Some("team"));
    assert_eq!(children[0].status, RunStatus::Completed);
    assert_eq!(children[0].parent, Some(run));
    let parent_view = engine.status(run).await.unwrap();
    let team = parent_view
        .task_states
        .iter()
        .find(|t| t.id == "team")
        .unwrap();
    assert_eq!(
        team.child,
        Some(children[0].run),
        "the completed task names its child"
    );
    let child = engine.status(children[0].run).await.unwrap();
    assert_eq!(child.summary.tasks.succeeded, 2);
}

#[tokio::test]
async fn a_failed_child_fails_the_task_with_its_reason_and_a_retry_starts_a_new_child() {
    let (engine, _log) = start();
    let spec = spec(
        &parent("          - { id: broken, agent: bad }")
            .replace("    input: { depth: 2 }", "    input: { depth: 2 }\n    retry: { max_attempts: 2, backoff: { initial: 1ms, max: 1ms } }"),
    );
    let run = engine.submit(spec.clone(), json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    let reason = summary.reason.clone().unwrap();
    assert!(
        reason.contains("task `team` failed after 2 attempts: child run"),
        "{reason}"
    );
    assert!(reason.contains("failed: task `broken` failed"), "{reason}");
    assert!(reason.contains("nope"), "{reason}");
    let children = engine
        .list(RunQuery {
            parent: Some(run),
            limit: 10,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 2, "one child per attempt");
    assert!(children.iter().all(|c| c.status == RunStatus::Failed));
}

#[tokio::test]
async fn pausing_and_cancelling_the_parent_reach_the_child() {
    let (engine, _log) = start();
    let spec = spec(&parent("          - { id: wait, agent: slow }"));
    let run = engine.submit(spec.clone(), json!({})).await.unwrap();
    let team = id(&spec, "team") as usize;
    let child = eventually("the child to start", Duration::from_secs(30), || async {
        engine.status(run).await.unwrap().task_states[team].child
    })
    .await;
    engine.pause(run).await.unwrap();
    assert_eq!(
        engine.status(child).await.unwrap().summary.status,
        RunStatus::Paused
    );
    engine.resume(run).await.unwrap();
    assert_eq!(
        engine.status(child).await.unwrap().summary.status,
        RunStatus::Running
    );
    engine.cancel(run).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Cancelled);
    let child = engine.wait(child).await.unwrap();
    assert_eq!(child.status, RunStatus::Cancelled);
    let reason = child.reason.clone().unwrap();
    assert!(
        reason.contains(&format!("parent run {run} cancelled")),
        "{reason}"
    );
}

#[tokio::test]
async fn a_resumed_parent_waits_for_its_child_instead_of_starting_another() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let marks = dir.path().join("marks");
    let spec = spec(&format!(
        r#"
tasks:
  - id: team
    workflow:
      inline:
        agents:
          w: {{ type: command, command: ["sh", "-c", "cat > /dev/null; echo $BATON_TASK >> {0}; [ $BATON_TASK = two ] && sleep 2; echo 1"] }}
        tasks:
          - {{ id: one, agent: w }}
          - {{ id: two, agent: w, depends_on: [one] }}
  - {{ id: after, depends_on: [team] }}
"#,
        marks.display()
    ));
    let (first, task) = durable(&state);
    let run = first.submit(spec, json!({})).await.unwrap();
    let child = eventually(
        "the child's second task",
        Duration::from_secs(30),
        || async {
            let child = first.status(run).await.unwrap().task_states[0].child?;
            let view = first.status(child).await.ok()?;
            // Running, and its process has started (it marks first).
            let marked = std::fs::read_to_string(&marks).ok()? == "one\ntwo\n";
            (view.task_states[1].status == TaskStatus::Running && marked).then_some(child)
        },
    )
    .await;
    first.shutdown().await.unwrap();
    task.await.unwrap();

    let (second, task) = durable(&state);
    let mut active = second.active().await.unwrap();
    active.sort();
    assert_eq!(active, [run, child], "both resume");
    let summary = second.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    // `one` ran once, `two` twice (interrupted), and no second child started.
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "one\ntwo\ntwo\n");
    let children = second
        .list(RunQuery {
            parent: Some(run),
            limit: 10,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].run, child);
    second.shutdown().await.unwrap();
    task.await.unwrap();
}

#[test]
fn sub_workflows_nest_at_most_max_depth_levels() {
    let mut doc = r#"{"tasks": [{"id": "leaf"}]}"#.to_string();
    for _ in 0..baton_engine::MAX_DEPTH {
        doc = format!(r#"{{"tasks": [{{"id": "t", "workflow": {{"inline": {doc}}}}}]}}"#);
    }
    let source = baton_model::Source::from_str("deep.json", &doc, baton_model::Format::Json);
    let checked = baton_model::load(&source).unwrap();
    let plan = baton_plan::plan_checked(&checked, &Default::default()).unwrap();
    let err = baton_engine::Spec::new(checked, Arc::new(plan), 1)
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("nest deeper than 16 levels"),
        "{err}"
    );
}

/// An engine's `max_depth` bounds the levels of runs it starts: the child that
/// would be too deep fails its task, and the failure reaches the top.
#[tokio::test]
async fn the_engines_max_depth_fails_a_child_that_would_be_too_deep() {
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let options = Options {
        max_depth: 2,
        ..Options::default()
    };
    let (engine, handle) = Engine::build(options, log, None::<Arc<Embedded>>).unwrap();
    let task = tokio::spawn(engine.run());
    let two = spec("tasks: [{ id: t, workflow: { inline: { tasks: [{ id: leaf }] } } }]");
    let run = handle.submit(two, json!({})).await.unwrap();
    assert_eq!(handle.wait(run).await.unwrap().status, RunStatus::Completed);
    let three = spec(
        "tasks: [{ id: t, workflow: { inline: { tasks: [{ id: u, workflow: { inline: { tasks: [{ id: leaf }] } } }] } } }]",
    );
    let run = handle.submit(three, json!({})).await.unwrap();
    let summary = handle.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    let reason = summary.reason.clone().unwrap();
    assert!(
        reason.contains(
            "the child run would be at level 3, deeper than this engine's `max_depth` (2)"
        ),
        "{reason}"
    );
    handle.shutdown().await.unwrap();
    task.await.unwrap();
}

/// A parent that fails after a child completed undoes the child: the child is
/// reopened, runs its own compensations, ends cancelled, and the parent's task
/// is compensated.
#[tokio::test]
async fn a_failed_parent_runs_the_compensations_of_a_child_that_completed() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let (engine, _log) = start();
    let spec = spec(&format!(
        r#"
agents:
  bad: {{ type: command, command: ["sh", "-c", "cat > /dev/null; exit 3"] }}
tasks:
  - id: book
    workflow:
      inline:
        agents:
          w: {{ type: noop }}
          undo: {{ type: command, command: ["sh", "-c", "cat >> {}; echo >> {}"] }}
        tasks:
          - {{ id: reserve, agent: w, compensation: {{ action: release, agent: undo }} }}
          - {{ id: confirm, agent: w, depends_on: [reserve] }}
  - {{ id: pay, agent: bad, depends_on: [book] }}
"#,
        marks.display(),
        marks.display()
    ));
    let run = engine.submit(spec, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed, "{summary:?}");
    assert!(summary.compensation_failures.is_empty(), "{summary:?}");
    assert_eq!(summary.compensations, 1);
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[0].status, TaskStatus::Compensated);
    assert_eq!(
        view.task_states[0].child, None,
        "undone: the child is no longer its output"
    );
    let undone = std::fs::read_to_string(&marks).unwrap();
    assert!(undone.contains(r#""compensate":"reserve""#), "{undone}");
    assert!(undone.contains(r#""action":"release""#), "{undone}");
    let children = engine
        .list(RunQuery {
            parent: Some(run),
            limit: 10,
            ..RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 1);
    assert_eq!(children[0].status, RunStatus::Cancelled);
    let child = engine.wait(children[0].run).await.unwrap();
    assert_eq!(child.compensations, 1);
    assert!(
        child
            .reason
            .as_deref()
            .unwrap()
            .contains("failed: its compensations run"),
        "{child:?}"
    );
    engine.shutdown().await.unwrap();
}

/// A loop's iterations each completed a child: a later failure undoes them
/// all, newest first, before the task counts as compensated.
#[tokio::test]
async fn a_failed_parent_undoes_every_child_of_a_loop_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let marks = dir.path().join("marks");
    let (engine, _log) = start();
    let spec = spec(&format!(
        r#"
agents:
  bad: {{ type: command, command: ["sh", "-c", "cat > /dev/null; exit 3"] }}
tasks:
  - id: rounds
    loop: {{ max_iterations: 3 }}
    workflow:
      inline:
        agents:
          w: {{ type: noop }}
          undo: {{ type: command, command: ["sh", "-c", "grep -o '\"iteration\":[0-9]*' | head -n1 >> {}"] }}
        tasks:
          - {{ id: book, agent: w, compensation: {{ action: release, agent: undo }} }}
  - {{ id: pay, agent: bad, depends_on: [rounds] }}
"#,
        marks.display()
    ));
    let run = engine.submit(spec, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed, "{summary:?}");
    assert!(summary.compensation_failures.is_empty(), "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[0].status, TaskStatus::Compensated);
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "\"iteration\":2\n\"iteration\":1\n\"iteration\":0\n",
        "each iteration's child undone, newest first"
    );
    engine.shutdown().await.unwrap();
}

/// A parent resumed after a restart that then fails still undoes the child
/// (and grandchild) runs that had completed before the restart: the finished
/// children are read back from the store (the journal compacted at open keeps
/// the records naming them) and reopened to run their compensations, newest
/// first, and nothing is reported as not run.
#[tokio::test]
async fn a_parent_resumed_after_a_restart_undoes_children_that_completed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let marks = dir.path().join("marks");
    let flag = dir.path().join("fail-now");
    let spec = spec(&format!(
        r#"
agents:
  pay: {{ type: command, command: ["sh", "-c", "cat > /dev/null; [ -f {flag} ] && exit 3; sleep 30"] }}
tasks:
  - id: book
    workflow:
      inline:
        agents:
          w: {{ type: noop }}
          undo: {{ type: command, command: ["sh", "-c", "grep -o '\"compensate\":\"[a-z]*\"' >> {marks}"] }}
        tasks:
          - id: reserve
            workflow:
              inline:
                agents:
                  w: {{ type: noop }}
                  undo: {{ type: command, command: ["sh", "-c", "grep -o '\"compensate\":\"[a-z]*\"' >> {marks}"] }}
                tasks:
                  - {{ id: hold, agent: w, compensation: {{ action: release, agent: undo }} }}
          - {{ id: confirm, agent: w, depends_on: [reserve], compensation: {{ action: unconfirm, agent: undo }} }}
  - {{ id: charge, agent: pay, depends_on: [book] }}
"#,
        flag = flag.display(),
        marks = marks.display(),
    ));
    let (first, task) = durable(&state);
    let run = first.submit(spec, json!({})).await.unwrap();
    eventually("the charge running", Duration::from_secs(30), || async {
        let view = first.status(run).await.ok()?;
        (view.task_states[1].status == TaskStatus::Running).then_some(())
    })
    .await;
    first.shutdown().await.unwrap();
    task.await.unwrap();

    std::fs::write(&flag, "").unwrap();
    let (second, task) = durable(&state);
    let summary = second.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed, "{summary:?}");
    assert!(summary.compensation_failures.is_empty(), "{summary:?}");
    assert_eq!(summary.compensations, 1, "{summary:?}");
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "\"compensate\":\"confirm\"\n\"compensate\":\"hold\"\n",
        "the child's work undone newest first, the grandchild's with it"
    );
    let view = second.status(run).await.unwrap();
    assert_eq!(view.task_states[0].status, TaskStatus::Compensated);
    second.shutdown().await.unwrap();
    task.await.unwrap();
}
