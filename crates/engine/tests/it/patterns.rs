//! Multi-agent patterns: a handoff task's turns run on the agent the previous
//! turn handed control to, until one answers, within `max_handoffs`.

use baton_engine::store::RunStatus;
use serde_json::json;

use crate::dynamic::decisions;
use crate::{spec, start};

fn support(billing_says: &str, max_handoffs: u32) -> String {
    format!(
        r#"
agents:
  triage: {{ type: simulate, outputs: {{ support: {{ handoff: {{ to: billing, input: {{ reason: refund }} }} }} }} }}
  billing: {{ type: simulate, outputs: {{ support: {billing_says} }} }}
  tech: {{ type: command, command: cat }}
tasks:
  - {{ id: ask, agent: tech, input: {{ question: "where is my refund?" }} }}
  - id: support
    depends_on: [ask]
    pattern: {{ type: handoff, agents: [triage, billing, tech], max_handoffs: {max_handoffs} }}
  - {{ id: reply, agent: tech, depends_on: [support] }}
"#
    )
}

#[tokio::test]
async fn control_moves_to_the_agent_handed_to_until_one_answers() {
    let (engine, log) = start();
    let spec = spec(&support(r#"{ finish: { refunded: true } }"#, 3));
    let run = engine.submit(spec, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(
        view.task_states[1].output,
        Some(json!({"refunded": true})),
        "the answer"
    );
    let reply = view.task_states[2].output.clone().unwrap();
    assert_eq!(reply["upstream"]["support"], json!({"refunded": true}));
    let turns = engine.instances(run, "support", 0, 10).await.unwrap();
    assert_eq!(turns.kind, "loop");
    assert_eq!(turns.total, 2);
    assert_eq!(
        turns.items[0].output.as_ref().unwrap()["handoff"]["to"],
        "billing"
    );
    engine.shutdown().await.unwrap();
    let decisions = decisions(&log, run).await;
    let handoff = decisions
        .iter()
        .find(|d| d["decision"] == "handoff")
        .unwrap();
    assert_eq!(
        (handoff["from"].clone(), handoff["to"].clone()),
        (json!("triage"), json!("billing"))
    );
    let answer = decisions
        .iter()
        .find(|d| d["decision"] == "answer")
        .unwrap();
    assert_eq!(
        (answer["agent"].clone(), answer["turns"].clone()),
        (json!("billing"), json!(2))
    );
}

#[tokio::test]
async fn the_next_turn_sees_what_was_handed_over() {
    let (engine, _log) = start();
    // `tech` is `cat`: its answer is what it was given.
    let spec = spec(&support(
        r#"{ handoff: { to: tech, input: { ticket: 7 } } }"#,
        3,
    ));
    let run = engine.submit(spec, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    let answer = view.task_states[1].output.clone().unwrap();
    assert_eq!(answer["iteration"], 2);
    assert_eq!(answer["previous"]["handoff"]["input"], json!({"ticket": 7}));
    assert_eq!(
        answer["upstream"]["ask"]["input"]["question"],
        "where is my refund?"
    );
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn handoffs_beyond_the_bound_or_the_agents_fail_clearly() {
    let (engine, _log) = start();
    for (billing, bound, expected) in [
        (
            r#"{ handoff: { to: triage } }"#,
            3,
            "control was handed off `max_handoffs` (3) times without an answer (last to `triage`)",
        ),
        (
            r#"{ handoff: { to: legal } }"#,
            3,
            "turn 1 (billing) hands control to `legal`, which is not one of the handoff's agents (triage, billing, tech)",
        ),
        (
            r#"{ handoff: { input: 1 } }"#,
            3,
            "turn 1 (billing): a handoff needs `to`",
        ),
    ] {
        let run = engine
            .submit(spec(&support(billing, bound)), json!({}))
            .await
            .unwrap();
        let summary = engine.wait(run).await.unwrap();
        assert_eq!(summary.status, RunStatus::Failed, "{billing}");
        let reason = summary.reason.clone().unwrap();
        assert!(reason.contains(expected), "{billing}: {reason}");
    }
    engine.shutdown().await.unwrap();
}
