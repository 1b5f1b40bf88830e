//! What runs decide as they go: fan-outs (`for_each`, and `parallel: true`
//! over one dependency) and routes; resuming a fan-out without running an
//! instance that ended again.

use std::sync::Arc;

use baton_engine::store::{RunStatus, TaskStatus};
use baton_events::MemoryLog;
use serde_json::{Value, json};

use crate::{durable, id, spec, start, steps};

/// A command agent that prints `{"item": …, "index": …}` back for an instance.
const ECHO_ITEM: &str = r#"echo: { type: command, command: ["sh", "-c", "cat > /dev/null; echo \"{\\\"index\\\": $BATON_ITEM}\""] }"#;

fn list(n: usize) -> String {
    let items: Vec<String> = (0..n).map(|i| format!("\"q{i}\"")).collect();
    format!("[{}]", items.join(", "))
}

#[tokio::test]
async fn a_fan_out_runs_once_per_item_and_collects_the_outputs_in_item_order() {
    let (engine, log) = start();
    let spec = spec(&format!(
        r#"
agents:
  plan: {{ type: simulate, outputs: {{ split: {{ questions: {} }} }} }}
  cat: {{ type: command, command: cat }}
tasks:
  - {{ id: split, agent: plan }}
  - {{ id: research, agent: cat, depends_on: [split], for_each: split.output.questions, input: {{ depth: 2 }} }}
  - {{ id: merge, agent: cat, depends_on: [research] }}
"#,
        list(12)
    ));
    let run = engine.submit(spec.clone(), json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    let research = &view.task_states[id(&spec, "research") as usize];
    let outputs = research.output.as_ref().unwrap().as_array().unwrap();
    assert_eq!(outputs.len(), 12);
    for (i, out) in outputs.iter().enumerate() {
        // `cat` echoes what the instance was given: its item, its index, the task's input.
        assert_eq!(out["item"], json!(format!("q{i}")), "{out}");
        assert_eq!(out["index"], json!(i));
        assert_eq!(out["input"], json!({"depth": 2}));
        assert_eq!(out["task"], "research");
    }
    let merge = view.task_states[id(&spec, "merge") as usize]
        .output
        .clone()
        .unwrap();
    assert_eq!(
        merge["upstream"]["research"].as_array().unwrap().len(),
        12,
        "the next task gets the collected list"
    );
    engine.shutdown().await.unwrap();
    // The decision and each instance's end are published.
    let events = run_events(&log, &run.to_string()).await;
    let decision = events
        .iter()
        .find(|(kind, _)| kind == "baton.decision")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(decision["decision"], "for_each");
    assert_eq!(decision["items"], 12);
    let items: usize = events
        .iter()
        .filter(|(kind, _)| kind == "baton.items")
        .map(|(_, v)| v["items"].as_array().unwrap().len())
        .sum();
    assert_eq!(items, 12);
    // The task itself moved through running to succeeded once.
    let task = id(&spec, "research");
    let ends: Vec<String> = steps(&log, run)
        .await
        .into_iter()
        .filter(|s| s.task == task)
        .map(|s| s.status)
        .collect();
    assert_eq!(ends, ["ready", "dispatched", "running", "succeeded"]);
}

/// The payloads of a run's `baton.decision` events, in order.
pub(crate) async fn decisions(log: &MemoryLog, run: baton_engine::store::RunId) -> Vec<Value> {
    run_events(log, &run.to_string())
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "baton.decision")
        .map(|(_, v)| v)
        .collect()
}

pub(crate) async fn run_events(log: &MemoryLog, key: &str) -> Vec<(String, Value)> {
    use baton_events::EventLog;
    let mut out = Vec::new();
    let topic = log
        .topics()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "baton.runs")
        .unwrap();
    for p in 0..topic.partitions.len() as u32 {
        for r in log.read("baton.runs", p, 0, usize::MAX).await.unwrap() {
            if r.event.key.as_ref() == key.as_bytes() {
                out.push((
                    r.event.kind.to_string(),
                    serde_json::from_slice(&r.event.payload).unwrap(),
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn max_parallel_bounds_the_instances_running_at_once() {
    let (engine, _log) = start();
    let spec = spec(&format!(
        r#"
agents:
  plan: {{ type: simulate, outputs: {{ split: {} }} }}
  slow: {{ type: command, command: ["sh", "-c", "cat > /dev/null; sleep 0.2"] }}
tasks:
  - {{ id: split, agent: plan }}
  - id: each
    agent: slow
    depends_on: [split]
    for_each: {{ items: split.output, max_parallel: 2 }}
"#,
        list(6)
    ));
    let started = std::time::Instant::now();
    let run = engine.submit(spec.clone(), json!({})).await.unwrap();
    // While it runs, never more than two instances are out.
    let mut most = 0;
    loop {
        let view = engine.status(run).await.unwrap();
        if let Some(items) = view.task_states[1].items {
            most = most.max(items.running);
            assert_eq!(items.total, 6);
        }
        if view.summary.status.is_final() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    assert!((1..=2).contains(&most), "{most} instances at once");
    // Six 200 ms instances two at a time take at least three rounds.
    assert!(started.elapsed() >= std::time::Duration::from_millis(600));
}

fn failing(policy: &str) -> String {
    format!(
        r#"
agents:
  plan: {{ type: simulate, outputs: {{ split: [ok, bad, ok, ok] }} }}
  check: {{ type: command, command: ["sh", "-c", "if grep -q '\"item\":\"bad\"'; then echo broken >&2; exit 3; fi; echo '\"fine\"'"] }}
tasks:
  - {{ id: split, agent: plan }}
  - {{ id: each, agent: check, depends_on: [split], for_each: {{ items: split.output, on_failure: {policy}, max_parallel: 1 }} }}
  - {{ id: after, agent: check, depends_on: [each] }}
"#
    )
}

#[tokio::test]
async fn fail_fast_stops_at_the_first_failed_item() {
    let (engine, log) = start();
    let spec = spec(&failing("fail_fast"));
    let run = engine.submit(spec.clone(), json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    let reason = summary.reason.clone().unwrap();
    assert!(
        reason.contains("item 1 of each failed") && reason.contains("broken"),
        "{reason}"
    );
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[1].status, TaskStatus::Failed);
    assert_eq!(view.task_states[2].status, TaskStatus::Cancelled);
    engine.shutdown().await.unwrap();
    // One at a time: item 0 ran, item 1 failed, items 2 and 3 never started.
    let ended: usize = run_events(&log, &run.to_string())
        .await
        .iter()
        .filter(|(kind, _)| kind == "baton.items")
        .map(|(_, v)| v["items"].as_array().unwrap().len())
        .sum();
    assert_eq!(ended, 2);
}

#[tokio::test]
async fn collect_runs_every_item_and_names_the_ones_that_failed() {
    let (engine, log) = start();
    let spec = spec(&failing("collect"));
    let run = engine.submit(spec.clone(), json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    let reason = summary.reason.clone().unwrap();
    assert!(
        reason.contains("1 of 4 items of each failed (item 1: "),
        "{reason}"
    );
    engine.shutdown().await.unwrap();
    let ended: usize = run_events(&log, &run.to_string())
        .await
        .iter()
        .filter(|(kind, _)| kind == "baton.items")
        .map(|(_, v)| v["items"].as_array().unwrap().len())
        .sum();
    assert_eq!(ended, 4, "every item ran");
}

#[tokio::test]
async fn lists_that_cannot_be_run_over_fail_clearly_and_an_empty_one_succeeds() {
    let (engine, _log) = start();
    let case = |output: &str, extra: &str| {
        spec(&format!(
            r#"
agents:
  plan: {{ type: simulate, outputs: {{ split: {output} }} }}
  w: {{ type: noop }}
tasks:
  - {{ id: split, agent: plan }}
  - {{ id: each, agent: w, depends_on: [split], for_each: {{ items: split.output.list{extra} }} }}
  - {{ id: after, agent: w, depends_on: [each] }}
"#
        ))
    };
    let outcome = |spec: Arc<baton_engine::Spec>| {
        let engine = engine.clone();
        async move {
            let run = engine.submit(spec, json!({})).await.unwrap();
            let summary = engine.wait(run).await.unwrap();
            let view = engine.status(run).await.unwrap();
            (summary, view)
        }
    };
    let (s, _) = outcome(case("{ list: 7 }", "")).await;
    assert_eq!(s.status, RunStatus::Failed);
    assert!(
        s.reason
            .as_deref()
            .unwrap()
            .contains("`split.output.list` is a number, not a list"),
        "{s:?}"
    );
    let (s, _) = outcome(case("{ other: [] }", "")).await;
    assert!(
        s.reason
            .as_deref()
            .unwrap()
            .contains("`split.output.list` is missing"),
        "{s:?}"
    );
    let (s, _) = outcome(case("{ list: [1, 2, 3, 4] }", ", max_items: 3")).await;
    let reason = s.reason.clone().unwrap();
    assert!(
        reason.contains("has 4 items, more than `max_items` (3)"),
        "{reason}"
    );
    let (s, v) = outcome(case("{ list: [] }", "")).await;
    assert_eq!(s.status, RunStatus::Completed);
    assert_eq!(v.task_states[1].output, Some(json!([])));
    assert_eq!(v.task_states[2].status, TaskStatus::Succeeded);
}

#[tokio::test]
async fn parallel_true_fans_out_over_a_list_and_runs_once_over_anything_else() {
    let (engine, _log) = start();
    let case = |output: &str, agent: &str| {
        spec(&format!(
            r#"
agents:
  plan: {{ type: simulate, outputs: {{ split: {output} }} }}
  {ECHO_ITEM}
  cat: {{ type: command, command: cat }}
tasks:
  - {{ id: split, agent: plan }}
  - {{ id: each, agent: {agent}, depends_on: [split], parallel: true }}
"#
        ))
    };
    let run = engine
        .submit(case("[a, b, c]", "echo"), json!({}))
        .await
        .unwrap();
    assert_eq!(engine.wait(run).await.unwrap().status, RunStatus::Completed);
    let view = engine.status(run).await.unwrap();
    assert_eq!(
        view.task_states[1].output,
        Some(json!([{"index": 0}, {"index": 1}, {"index": 2}]))
    );
    // Not a list: one plain call, as before fan-outs existed.
    let run = engine
        .submit(case("{ a: 1 }", "cat"), json!({}))
        .await
        .unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    let given = view.task_states[1].output.clone().unwrap();
    assert_eq!(given["upstream"]["split"], json!({"a": 1}));
    assert!(given.get("index").is_none(), "{given}");
}

fn routed(choice: &str) -> String {
    format!(
        r#"
agents:
  judge: {{ type: simulate, outputs: {{ review: {choice} }} }}
  w: {{ type: noop }}
tasks:
  - id: review
    agent: judge
    routes: {{ approve: [publish], revise: [edit, recheck] }}
  - {{ id: publish, agent: w, depends_on: [review] }}
  - {{ id: edit, agent: w, depends_on: [review] }}
  - {{ id: recheck, agent: w, depends_on: [review] }}
  - {{ id: audit, agent: w, depends_on: [review] }}
  - {{ id: after_edit, agent: w, depends_on: [edit] }}
  - {{ id: notify, agent: w, depends_on: [publish, edit], condition: "publish.status == 'succeeded' || edit.status == 'succeeded'" }}
"#
    )
}

#[tokio::test]
async fn routes_run_the_chosen_branch_and_skip_the_others_with_a_reason() {
    let (engine, _log) = start();
    for (choice, ran, skipped) in [
        ("approve", &["publish"][..], &["edit", "recheck"][..]),
        (
            "{ route: revise, notes: [tone] }",
            &["edit", "recheck"][..],
            &["publish"][..],
        ),
    ] {
        let spec = spec(&routed(choice));
        let run = engine.submit(spec.clone(), json!({})).await.unwrap();
        let summary = engine.wait(run).await.unwrap();
        assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
        let view = engine.status(run).await.unwrap();
        let task = |name: &str| &view.task_states[id(&spec, name) as usize];
        for name in ran.iter().chain(&["audit", "notify"]) {
            assert_eq!(
                task(name).status,
                TaskStatus::Succeeded,
                "{name} after {choice}"
            );
        }
        for name in skipped {
            assert_eq!(
                task(name).status,
                TaskStatus::Skipped,
                "{name} after {choice}"
            );
            let reason = task(name).reason.clone().unwrap();
            assert!(reason.contains("chosen by `review`"), "{reason}");
            assert!(task(name).error.is_none());
        }
        // A skip propagates past the branch, as skips always do.
        let after_edit = task("after_edit").status;
        assert_eq!(
            after_edit == TaskStatus::Skipped,
            skipped.contains(&"edit"),
            "{choice}"
        );
    }
}

#[tokio::test]
async fn an_output_that_names_no_declared_route_fails_the_task_with_the_routes() {
    let (engine, _log) = start();
    for (choice, expected) in [
        (
            "reject",
            "chose route `reject`, which it does not declare (routes: approve, revise)",
        ),
        ("{ score: 3 }", "must choose a route: its output is a map"),
    ] {
        let spec = spec(&routed(choice));
        let run = engine.submit(spec.clone(), json!({})).await.unwrap();
        let summary = engine.wait(run).await.unwrap();
        assert_eq!(summary.status, RunStatus::Failed);
        let reason = summary.reason.clone().unwrap();
        assert!(reason.contains(expected), "{reason}");
    }
}

#[tokio::test]
async fn a_fan_out_resumes_without_running_an_item_that_ended_again() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let marks = dir.path().join("marks");
    // Each instance appends its index to `marks`; item 3 takes long.
    let spec = spec(&format!(
        r#"
agents:
  plan: {{ type: simulate, outputs: {{ split: {} }} }}
  w: {{ type: command, command: ["sh", "-c", "cat > /dev/null; [ $BATON_ITEM = 3 ] && sleep 3; echo $BATON_ITEM >> {}; echo $BATON_ITEM"] }}
tasks:
  - {{ id: split, agent: plan }}
  - {{ id: each, agent: w, depends_on: [split], for_each: {{ items: split.output, max_parallel: 1 }} }}
"#,
        list(5),
        marks.display()
    ));
    let (first, task) = durable(&state);
    let run = first.submit(spec, json!({})).await.unwrap();
    crate::eventually(
        "item 3 to start",
        std::time::Duration::from_secs(30),
        || async {
            let view = first.status(run).await.unwrap();
            view.task_states[1]
                .items
                .filter(|i| i.succeeded == 3 && i.running == 1)
                .map(drop)
        },
    )
    .await;
    first.shutdown().await.unwrap();
    task.await.unwrap();
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "0\n1\n2\n");

    let (second, task) = durable(&state);
    let summary = second.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "0\n1\n2\n3\n4\n",
        "items 0-2 did not run again"
    );
    let view = second.status(run).await.unwrap();
    assert_eq!(view.task_states[1].output, Some(json!([0, 1, 2, 3, 4])));
    second.shutdown().await.unwrap();
    task.await.unwrap();
}

/// A fan-out's or loop's instances, a page at a time: status, attempts,
/// outputs (a finished fan-out's from its collected output) and errors.
#[tokio::test]
async fn instances_are_paged_with_their_outputs_and_errors() {
    let (engine, _log) = start();
    let spec = spec(&format!(
        r#"
agents:
  plan: {{ type: simulate, outputs: {{ split: {} }} }}
  w: {{ type: command, command: ["sh", "-c", "cat > /dev/null; [ $BATON_ITEM = 3 ] && {{ echo three is bad >&2; exit 4; }}; echo $BATON_ITEM"] }}
  cat: {{ type: command, command: cat }}
tasks:
  - {{ id: split, agent: plan }}
  - {{ id: some, agent: w, depends_on: [split], for_each: {{ items: split.output, on_failure: collect }} }}
"#,
        list(5)
    ));

    let run = engine.submit(spec.clone(), json!({})).await.unwrap();
    engine.wait(run).await.unwrap();

    let page = engine.instances(run, "some", 0, 2).await.unwrap();
    assert_eq!(
        (page.kind, page.total, page.next_offset),
        ("for_each", 5, Some(2))
    );
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.items[1].index, 1);
    let page = engine.instances(run, "some", 2, 10).await.unwrap();
    assert_eq!(page.next_offset, None);
    let three = &page.items[1];
    assert_eq!((three.index, three.status, three.attempt), (3, "failed", 1));
    assert!(
        three.error.as_deref().unwrap().contains("three is bad"),
        "{three:?}"
    );
    assert_eq!(page.items[0].output, Some(json!(2)));

    let looping = crate::spec(
        "agents: { cat: { type: command, command: cat } }\ntasks: [{ id: again, agent: cat, loop: { max_iterations: 3 } }]",
    );
    let run2 = engine.submit(looping, json!({})).await.unwrap();
    engine.wait(run2).await.unwrap();
    let looped = engine.instances(run2, "again", 0, 10).await.unwrap();
    assert_eq!((looped.kind, looped.total), ("loop", 3));
    assert_eq!(looped.items[2].output.as_ref().unwrap()["iteration"], 2);
    assert_eq!(
        looped.items[2].output.as_ref().unwrap()["previous"]["iteration"],
        1
    );

    assert!(matches!(
        engine.instances(run, "split", 0, 10).await,
        Err(baton_engine::Error::NoInstances { .. })
    ));
    assert!(matches!(
        engine.instances(run, "som", 0, 10).await,
        Err(baton_engine::Error::UnknownTask { hint: Some(_), .. })
    ));
    engine.shutdown().await.unwrap();
}
