//! Multi-agent patterns: a handoff task's turns run on the agent the previous
//! turn handed control to, until one answers, within `max_handoffs`; a
//! supervisor's turns delegate calls to its workers, run side by side, until
//! it answers, within `max_turns`.

use std::sync::Arc;
use std::time::Duration;

use baton_engine::store::RunStatus;
use serde_json::{Value, json};

use crate::dynamic::decisions;
use crate::{durable, eventually, sorted_lines, spec, start};

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
    let chain: Vec<_> = turns.items.iter().map(|i| i.agent.as_deref()).collect();
    assert_eq!(
        chain,
        [Some("triage"), Some("billing")],
        "the chain, in order"
    );
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

/// A supervisor written in Python that decides from what it is given: on its
/// first turn it asks `researcher` about each topic of the task's input (side
/// by side) and `critic` to wait for them; on the next it finishes with what
/// the researchers said, in the conversation's order. Each call appends the
/// turn to `marks`.
fn supervisor_script(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("supervisor.py");
    let marks = dir.join("marks");
    std::fs::write(
        &script,
        format!(
            r#"
import json, sys
call = json.load(sys.stdin)
with open({marks:?}, "a") as f:
    f.write("supervisor %d\n" % call["turn"])
if call["turn"] == 0:
    calls = [{{"agent": "researcher", "input": {{"topic": t}}}} for t in call["input"]["topics"]]
    print(json.dumps({{"delegate": calls}}))
else:
    said = [c["output"]["input"]["topic"] for c in call["conversation"] if c["agent"] == "researcher"]
    print(json.dumps({{"finish": {{"found": said, "turns": call["turn"] + 1}}}}))
"#,
            marks = marks.display().to_string()
        ),
    )
    .unwrap();
    script
}

fn team(script: &std::path::Path, researcher: &str, max_turns: u32) -> String {
    format!(
        r#"
agents:
  planner: {{ type: command, command: ["python3", "{script}"] }}
  researcher: {researcher}
  writer: {{ type: command, command: cat }}
tasks:
  - id: study
    input: {{ topics: [rust, go, zig] }}
    pattern: {{ type: supervisor, supervisor: planner, workers: [researcher, writer], max_turns: {max_turns} }}
  - {{ id: report, agent: writer, depends_on: [study] }}
"#,
        script = script.display()
    )
}

#[tokio::test]
async fn a_supervisor_delegates_calls_and_finishes_from_the_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let script = supervisor_script(dir.path());
    let (engine, log) = start();
    let spec = spec(&team(&script, "{ type: command, command: cat }", 4));
    let run = engine.submit(spec, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(
        view.task_states[0].output,
        Some(json!({"found": ["rust", "go", "zig"], "turns": 2})),
        "the supervisor's answer, from the workers' outputs in order"
    );
    let turns = engine.instances(run, "study", 0, 10).await.unwrap();
    assert_eq!(turns.total, 5, "two supervisor turns and three calls");
    let agents: Vec<_> = turns.items.iter().map(|i| i.agent.as_deref()).collect();
    assert_eq!(
        agents,
        [
            Some("planner"),
            Some("researcher"),
            Some("researcher"),
            Some("researcher"),
            Some("planner")
        ]
    );
    let worker = turns.items[2].output.as_ref().unwrap();
    assert_eq!(worker["input"], json!({"topic": "go"}), "{worker}");
    assert_eq!(worker["turn"], 0);
    assert!(worker.get("previous").is_none(), "{worker}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("marks")).unwrap(),
        "supervisor 0\nsupervisor 1\n"
    );
    engine.shutdown().await.unwrap();
    let decisions = decisions(&log, run).await;
    let delegate = decisions
        .iter()
        .find(|d| d["decision"] == "delegate")
        .unwrap();
    assert_eq!(
        delegate["agents"],
        json!(["researcher", "researcher", "researcher"])
    );
    assert!(
        decisions
            .iter()
            .any(|d| d["decision"] == "turn" && d["turn"] == 1)
    );
    let answer = decisions
        .iter()
        .find(|d| d["decision"] == "answer")
        .unwrap();
    assert_eq!(
        (answer["agent"].clone(), answer["turns"].clone()),
        (json!("planner"), json!(2))
    );
}

/// The calls of one turn run at the same time: each researcher waits (up to
/// 20 s) until all three have started, so calls made one by one would fail.
#[tokio::test]
async fn a_supervisors_calls_run_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let script = supervisor_script(dir.path());
    let started = dir.path().join("started");
    let researcher = format!(
        r#"{{ type: command, command: ["sh", "-c", "cat > /dev/null; echo x >> {0}; for i in $(seq 200); do [ $(wc -l < {0}) -ge 3 ] && exec echo '{{\"input\": {{\"topic\": \"t\"}}}}'; sleep 0.1; done; exit 1"] }}"#,
        started.display()
    );
    let (engine, _log) = start();
    let run = engine
        .submit(spec(&team(&script, &researcher, 4)), json!({}))
        .await
        .unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_supervisors_decisions_outside_its_bounds_fail_clearly() {
    let (engine, _log) = start();
    let flow = |first: &str, max_turns: u32| {
        spec(&format!(
            r#"
agents:
  boss: {{ type: simulate, outputs: {{ "work[0]": {first} }} }}
  a: {{ type: noop }}
tasks:
  - id: work
    pattern: {{ type: supervisor, supervisor: boss, workers: [a], max_turns: {max_turns}, max_delegates: 2 }}
"#
        ))
    };
    for (first, max_turns, expected) in [
        (
            r#"{ delegate: [{ agent: b }] }"#,
            3,
            "turn 0 (boss): `delegate[0]` calls `b`, which is not one of the supervisor's workers (a)",
        ),
        (
            r#"{ delegate: [{ agent: a }, { agent: a }, { agent: a }] }"#,
            3,
            "more than `max_delegates` (2)",
        ),
        (
            r#"{ delegate: { agent: a } }"#,
            3,
            "`delegate` must be a non-empty list of calls",
        ),
        (
            r#"{ handoff: { to: a } }"#,
            3,
            "a supervisor delegates (`delegate`) or answers (`finish`), it does not hand off",
        ),
        (
            r#"{ delegate: [{ agent: a }] }"#,
            1,
            "the supervisor (`boss`) delegated on its last turn (`max_turns` is 1)",
        ),
    ] {
        let run = engine
            .submit(flow(first, max_turns), json!({}))
            .await
            .unwrap();
        let summary = engine.wait(run).await.unwrap();
        assert_eq!(summary.status, RunStatus::Failed, "{first}");
        let reason = summary.reason.clone().unwrap();
        assert!(reason.contains(expected), "{first}: {reason}");
    }
    engine.shutdown().await.unwrap();
}

/// Killed while one of a turn's calls runs (the others ended), a resumed
/// supervisor is not asked its first turn again, the calls that ended do not
/// run again, and the interrupted one does.
#[tokio::test]
async fn a_resumed_supervisor_is_not_asked_again_and_ended_calls_do_not_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let script = supervisor_script(dir.path());
    let state = dir.path().join("state");
    let calls = dir.path().join("calls");
    // `zig` takes 30 s the first time; the others answer at once.
    let researcher = format!(
        r#"{{ type: command, command: ["sh", "-c", "read -r line; echo \"$line\" | grep -o 'topic\":\"[a-z]*' >> {0}; case \"$line\" in *zig*) [ $(grep -c zig {0}) -eq 1 ] && sleep 30;; esac; echo \"$line\""] }}"#,
        calls.display()
    );
    let flow = spec(&team(&script, &researcher, 4));
    let (first, task) = durable(&state);
    let run = first.submit(flow, json!({})).await.unwrap();
    eventually(
        "rust and go answered, zig running",
        Duration::from_secs(30),
        || async {
            let page = first.instances(run, "study", 0, 10).await.ok()?;
            let zig = std::fs::read_to_string(&calls).ok()?.contains("zig");
            let ended = page.items.iter().filter(|i| i.output.is_some()).count();
            (zig && ended == 3).then_some(())
        },
    )
    .await;
    first.shutdown().await.unwrap();
    task.await.unwrap();

    let (second, task) = durable(&state);
    let summary = second.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = second.status(run).await.unwrap();
    assert_eq!(
        view.task_states[0].output,
        Some(json!({"found": ["rust", "go", "zig"], "turns": 2}))
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("marks")).unwrap(),
        "supervisor 0\nsupervisor 1\n",
        "the supervisor's first turn was not asked again"
    );
    let asked = sorted_lines(&calls);
    assert_eq!(
        asked,
        [
            "topic\":\"go",
            "topic\":\"rust",
            "topic\":\"zig",
            "topic\":\"zig"
        ],
        "only the interrupted call ran again"
    );
    second.shutdown().await.unwrap();
    task.await.unwrap();
}

/// The buyer and the seller of examples/patterns/negotiation.yaml (Python
/// programs) negotiate by messages: the buyer offers, the seller counters,
/// until the buyer accepts and finishes.
#[tokio::test]
async fn a_network_runs_until_an_agent_finishes() {
    let agents = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/patterns/agents"
    );
    let flow = spec(&format!(
        r#"
agents:
  buyer: {{ type: command, command: ["python3", "{agents}/buyer.py"] }}
  seller: {{ type: command, command: ["python3", "{agents}/seller.py"] }}
tasks:
  - id: haggle
    pattern: {{ type: network, agents: [buyer, seller], max_messages: 20 }}
"#
    ));
    let (engine, log) = start();
    let run = engine.submit(flow, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    // 50 → 100, 60 → 90, 70 → 80: accepted on the seventh turn.
    assert_eq!(
        view.task_states[0].output,
        Some(json!({"deal": 80, "round": 6}))
    );
    let turns = engine.instances(run, "haggle", 0, 10).await.unwrap();
    let agents: Vec<_> = turns
        .items
        .iter()
        .map(|i| i.agent.as_deref().unwrap())
        .collect();
    assert_eq!(
        agents,
        [
            "buyer", "seller", "buyer", "seller", "buyer", "seller", "buyer"
        ]
    );
    engine.shutdown().await.unwrap();
    let rounds = decisions(&log, run)
        .await
        .into_iter()
        .filter(|d| d["decision"] == "round")
        .count();
    assert_eq!(rounds, 6);
}

fn broadcast(hub_says: &str, max_messages: u32, on_limit: &str) -> String {
    format!(
        r#"
agents:
  hub: {{ type: simulate, outputs: {{ talk: {hub_says} }} }}
  a: {{ type: command, command: cat }}
  b: {{ type: command, command: cat }}
tasks:
  - id: talk
    input: {{ topic: rust }}
    pattern: {{ type: network, agents: [hub, a, b], max_messages: {max_messages}, on_limit: {on_limit} }}
"#
    )
}

/// A round that sends nothing ends the network: its output is what each
/// agent said last. Every message of a round is a turn given the message and
/// its sender.
#[tokio::test]
async fn a_network_ends_when_a_round_sends_nothing() {
    let (engine, _log) = start();
    let hub = r#"{ send: [{ to: a, message: { part: 1 } }, { to: b, message: { part: 2 } }] }"#;
    let run = engine
        .submit(spec(&broadcast(hub, 10, "fail")), json!({}))
        .await
        .unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let output = engine.status(run).await.unwrap().task_states[0]
        .output
        .clone()
        .unwrap();
    assert_eq!(output["rounds"], 2);
    assert_eq!(output["messages"], 2);
    // `cat` answers with what it was given.
    assert_eq!(output["outputs"]["a"]["message"], json!({"part": 1}));
    assert_eq!(output["outputs"]["b"]["from"], "hub");
    assert_eq!(output["outputs"]["b"]["round"], 1);
    assert!(output["outputs"]["a"].get("previous").is_none(), "{output}");
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_networks_bound_and_malformed_messages_are_clear_outcomes() {
    let (engine, _log) = start();
    // The hub messages itself forever: one message a round.
    let forever = r#"{ send: [{ to: hub }] }"#;
    for (hub, on_limit, expected) in [
        (
            forever,
            "fail",
            Err("round 4 would send 1 more message(s), beyond `max_messages` (3; 3 sent so far)"),
        ),
        (forever, "continue", Ok(json!(3))),
        (
            r#"{ send: [{ to: c }] }"#,
            "fail",
            Err(
                "turn 0 (hub): `send[0]` is to `c`, which is not one of the network's agents (hub, a, b)",
            ),
        ),
        (
            r#"{ send: { to: a } }"#,
            "fail",
            Err("`send` must be a list of messages"),
        ),
    ] {
        let run = engine
            .submit(spec(&broadcast(hub, 3, on_limit)), json!({}))
            .await
            .unwrap();
        let summary = engine.wait(run).await.unwrap();
        match expected {
            Ok(messages) => {
                assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
                let view = engine.status(run).await.unwrap();
                let output = view.task_states[0].output.clone().unwrap();
                assert_eq!(output["messages"], messages, "{output}");
            }
            Err(says) => {
                assert_eq!(summary.status, RunStatus::Failed, "{hub}");
                let reason = summary.reason.clone().unwrap();
                assert!(reason.contains(says), "{hub}: {reason}");
            }
        }
    }
    engine.shutdown().await.unwrap();
}

/// Killed while one message of a round is being answered, a resumed network
/// does not ask the turns that ended again and answers only the interrupted
/// message again.
#[tokio::test]
async fn a_resumed_network_asks_no_ended_turn_again() {
    let output = killed_mid_round(
        "network",
        "max_messages",
        r#"{\"send\": [{\"to\": \"a\"}, {\"to\": \"b\"}]}"#,
        r#"\"done\""#,
    )
    .await;
    assert_eq!(output["messages"], 2, "{output}");
}

/// A round of two turns (`a` and `b`, sent by `hub`, each answering
/// `answer`) whose `b` is killed with the engine; a second engine on the
/// same store resumes it: only `b` is asked again. Returns the task's output.
async fn killed_mid_round(kind: &str, bound: &str, hub_says: &str, answer: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let calls = dir.path().join("calls");
    // Each call notes who it is; `b` takes 30 s the first time.
    let worker = format!(
        r#"{{ type: command, command: ["sh", "-c", "cat > /dev/null; echo $0 >> {0}; [ $0 = b ] && [ $(grep -cx b {0}) -eq 1 ] && sleep 30; echo '{answer}'", "WHO"] }}"#,
        calls.display()
    );
    let flow = spec(&format!(
        r#"
agents:
  hub: {{ type: command, command: ["sh", "-c", "cat > /dev/null; echo hub >> {calls}; echo '{hub_says}'"] }}
  a: {a}
  b: {b}
tasks:
  - id: talk
    pattern: {{ type: {kind}, agents: [hub, a, b], {bound}: 10 }}
"#,
        calls = calls.display(),
        a = worker.replace("WHO", "a"),
        b = worker.replace("WHO", "b"),
    ));
    let (first, task) = durable(&state);
    let run = first.submit(flow, json!({})).await.unwrap();
    eventually("a answered, b running", Duration::from_secs(30), || async {
        let page = first.instances(run, "talk", 0, 10).await.ok()?;
        let b = sorted_lines(&calls).iter().any(|l| l == "b");
        let ended = page.items.iter().filter(|i| i.output.is_some()).count();
        (b && ended == 2).then_some(())
    })
    .await;
    first.shutdown().await.unwrap();
    task.await.unwrap();

    let (second, task) = durable(&state);
    let summary = second.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(
        sorted_lines(&calls),
        ["a", "b", "b", "hub"],
        "only b answered again"
    );
    let view = second.status(run).await.unwrap();
    second.shutdown().await.unwrap();
    task.await.unwrap();
    view.task_states[0].output.clone().unwrap()
}

/// A swarm's agents, one Python program playing each by name: `triage`
/// writes the ticket to the blackboard and hands off to `coder` with a hint;
/// `coder` reads both, writes a patch (compare-and-set on its version) and
/// hands off to `reviewer`, who approves; `until` ends the swarm.
#[tokio::test]
async fn a_swarm_shares_a_blackboard_until_its_condition_holds() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("agent.py");
    std::fs::write(
        &script,
        r#"
import json, sys
call, me = json.load(sys.stdin), sys.argv[1]
if me == "triage":
    out = {"context": {"set": {"ticket": "bug 7"}}, "handoff": {"to": "coder", "input": {"hint": "null check"}}}
elif me == "coder":
    patch = "fix %s: %s" % (call["context"]["ticket"], call["input"]["hint"])
    out = {"context": {"set": {"patch": patch}, "expect": {"patch": call["versions"].get("patch", 0)}},
           "handoff": {"to": "reviewer"}}
else:
    out = {"context": {"set": {"approved": "patch" in call["context"]}}}
print(json.dumps(out))
"#,
    )
    .unwrap();
    let agent = |name: &str| {
        format!(
            r#"{{ type: command, command: ["python3", "{}", "{name}"] }}"#,
            script.display()
        )
    };
    let flow = spec(&format!(
        r#"
agents:
  triage: {}
  coder: {}
  reviewer: {}
  w: {{ type: noop }}
tasks:
  - id: fix
    pattern: {{ type: swarm, agents: [triage, coder, reviewer], max_handoffs: 10, until: "fix.output.context.approved == true" }}
  - {{ id: ship, agent: w, depends_on: [fix] }}
"#,
        agent("triage"),
        agent("coder"),
        agent("reviewer")
    ));
    let (engine, log) = start();
    let run = engine.submit(flow, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let output = engine.status(run).await.unwrap().task_states[0]
        .output
        .clone()
        .unwrap();
    assert_eq!(
        output["context"],
        json!({"ticket": "bug 7", "patch": "fix bug 7: null check", "approved": true})
    );
    assert_eq!(
        output["versions"],
        json!({"ticket": 1, "patch": 1, "approved": 1})
    );
    assert_eq!(
        (output["rounds"].clone(), output["handoffs"].clone()),
        (json!(3), json!(2))
    );
    engine.shutdown().await.unwrap();
    let ended = decisions(&log, run).await;
    assert!(ended.iter().any(|d| d["decision"] == "until"), "{ended:?}");
}

/// Two agents handed control at once write the same key, each expecting the
/// version both saw: the first in iteration order wins, the second's write
/// is refused whole and the next round is told of the conflict.
#[tokio::test]
async fn a_swarms_compare_and_set_refuses_the_second_of_two_concurrent_writes() {
    let dir = tempfile::tempdir().unwrap();
    let judge = dir.path().join("judge.py");
    std::fs::write(
        &judge,
        "import json, sys\ncall = json.load(sys.stdin)\nprint(json.dumps({\"saw\": call[\"conflicts\"], \"owner\": call[\"context\"].get(\"owner\")}))\n",
    )
    .unwrap();
    let claim = |me: &str| {
        format!(
            r#"{{ type: simulate, outputs: {{ claim: {{ context: {{ set: {{ owner: {me}, note: {me} }}, expect: {{ owner: 0 }} }}, handoff: {{ to: judge }} }} }} }}"#
        )
    };
    let flow = spec(&format!(
        r#"
agents:
  hub: {{ type: simulate, outputs: {{ claim: {{ handoff: [{{ to: a }}, {{ to: b }}] }} }} }}
  a: {}
  b: {}
  judge: {{ type: command, command: ["python3", "{}"] }}
tasks:
  - id: claim
    pattern: {{ type: swarm, agents: [hub, a, b, judge], max_handoffs: 10 }}
"#,
        claim("a"),
        claim("b"),
        judge.display()
    ));
    let (engine, _log) = start();
    let run = engine.submit(flow, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let output = engine.status(run).await.unwrap().task_states[0]
        .output
        .clone()
        .unwrap();
    assert_eq!(
        output["context"],
        json!({"owner": "a", "note": "a"}),
        "b's write refused whole"
    );
    assert_eq!(output["versions"], json!({"owner": 1, "note": 1}));
    let judged = &output["outputs"]["judge"];
    assert_eq!(judged["owner"], "a");
    assert_eq!(
        judged["saw"],
        json!([{"agent": "b", "iteration": 2, "key": "owner", "expected": 0, "actual": 1}])
    );
    engine.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_swarms_malformed_decisions_and_bound_fail_clearly() {
    let (engine, _log) = start();
    for (first, expected) in [
        (
            r#"{ handoff: { to: nobody } }"#,
            "turn 0 (a): handoff 0 is to `nobody`, which is not one of the swarm's agents (a, b)",
        ),
        (
            r#"{ context: { set: 1 } }"#,
            "turn 0 (a): `context.set` must be a map",
        ),
        (
            r#"{ context: { expect: { k: "one" } } }"#,
            "`context.expect` must be a map of versions",
        ),
        (
            r#"{ context: { put: {} } }"#,
            "`context` takes `set` and `expect`, found `put`",
        ),
        (
            r#"{ handoff: { to: a } }"#,
            "round 3 would hand off 1 more time(s), beyond `max_handoffs` (2; 2 so far)",
        ),
    ] {
        let flow = spec(&format!(
            r#"
agents:
  a: {{ type: simulate, outputs: {{ s: {first} }} }}
  b: {{ type: noop }}
tasks:
  - id: s
    pattern: {{ type: swarm, agents: [a, b], max_handoffs: 2 }}
"#
        ));
        let run = engine.submit(flow, json!({})).await.unwrap();
        let summary = engine.wait(run).await.unwrap();
        assert_eq!(summary.status, RunStatus::Failed, "{first}");
        let reason = summary.reason.clone().unwrap();
        assert!(reason.contains(expected), "{first}: {reason}");
    }
    engine.shutdown().await.unwrap();
}

/// Killed while one of a round's turns runs, a resumed swarm makes its
/// blackboard again from the recorded turns: the same write wins, the turns
/// that ended are not asked again, and only the interrupted one runs again.
#[tokio::test]
async fn a_resumed_swarm_makes_the_same_blackboard_without_asking_again() {
    // Each writes `owner` if nobody has.
    let output = killed_mid_round(
        "swarm",
        "max_handoffs",
        r#"{\"handoff\": [{\"to\": \"a\"}, {\"to\": \"b\"}]}"#,
        r#"{\"context\": {\"set\": {\"owner\": \"'$0'\"}, \"expect\": {\"owner\": 0}}}"#,
    )
    .await;
    assert_eq!(output["context"], json!({"owner": "a"}), "{output}");
    assert_eq!(output["versions"], json!({"owner": 1}), "{output}");
}

/// A lead (Python, deciding from the conversation) delegates to a team twice
/// and to a worker, side by side; each call to the team is a child run of
/// the team's workflow, itself a supervisor. The lead finishes with what the
/// team's runs returned.
fn hierarchy(dir: &std::path::Path, team_worker: &str) -> Arc<baton_engine::Spec> {
    let lead = dir.join("lead.py");
    std::fs::write(
        &lead,
        r#"
import json, sys
call = json.load(sys.stdin)
if call["turn"] == 0:
    print(json.dumps({"delegate": [
        {"agent": "research", "input": {"q": 1}},
        {"agent": "research", "input": {"q": 2}},
        {"agent": "writer", "input": {"draft": True}}]}))
else:
    print(json.dumps({"finish": [c["output"] for c in call["conversation"] if c["agent"] == "research"]}))
"#,
    )
    .unwrap();
    spec(&format!(
        r#"
agents:
  lead: {{ type: command, command: ["python3", "{}"] }}
  writer: {{ type: command, command: cat }}
tasks:
  - id: org
    pattern:
      type: hierarchical
      supervisor: lead
      workers: [writer]
      max_turns: 3
      teams:
        research:
          inline:
            agents:
              boss: {{ type: simulate, outputs: {{ "s[0]": {{ delegate: [{{ agent: w }}] }}, "s[2]": {{ finish: {{ found: 42 }} }} }} }}
              w: {team_worker}
            tasks:
              - id: s
                pattern: {{ type: supervisor, supervisor: boss, workers: [w], max_turns: 2 }}
"#,
        lead.display()
    ))
}

#[tokio::test]
async fn a_hierarchical_supervisors_calls_to_a_team_are_child_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _log) = start();
    let run = engine
        .submit(hierarchy(dir.path(), "{ type: noop }"), json!({}))
        .await
        .unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(
        view.task_states[0].output,
        Some(json!([{"s": {"found": 42}}, {"s": {"found": 42}}])),
        "each team run's last outputs, in the conversation's order"
    );
    let children = engine
        .list(baton_engine::RunQuery {
            parent: Some(run),
            limit: 10,
            ..baton_engine::RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(children.len(), 2, "one child run per call to the team");
    assert!(children.iter().all(|c| c.status == RunStatus::Completed));
    let turns = engine.instances(run, "org", 0, 10).await.unwrap();
    let who: Vec<_> = turns.items.iter().map(|i| i.agent.as_deref()).collect();
    assert_eq!(
        who,
        [
            Some("lead"),
            Some("research"),
            Some("research"),
            Some("writer"),
            Some("lead")
        ]
    );
    engine.shutdown().await.unwrap();
}

/// Killed while one call to the team runs (the other call and the worker had
/// ended), a resumed hierarchy waits for that team's child run, does not
/// start another, and runs none of the ended calls again.
#[tokio::test]
async fn a_resumed_hierarchy_waits_for_the_team_run_it_had_started() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let calls = dir.path().join("calls");
    // The team's worker notes each call; the one for `q: 2` takes 30 s the
    // first time.
    let worker = format!(
        r#"{{ type: command, command: ["sh", "-c", "read -r line; q=$(echo \"$line\" | grep -o '\"q\":[0-9]' | head -n1); echo $q >> {0}; [ \"$q\" = '\"q\":2' ] && [ $(grep -c 2 {0}) -eq 1 ] && sleep 30; echo 1"] }}"#,
        calls.display()
    );
    let flow = hierarchy(dir.path(), &worker);
    let (first, task) = durable(&state);
    let run = first.submit(flow, json!({})).await.unwrap();
    eventually(
        "q 1 and the writer answered, q 2 running",
        Duration::from_secs(30),
        || async {
            let page = first.instances(run, "org", 0, 10).await.ok()?;
            let two = std::fs::read_to_string(&calls).ok()?.contains('2');
            let ended = page.items.iter().filter(|i| i.output.is_some()).count();
            (two && ended == 3).then_some(())
        },
    )
    .await;
    first.shutdown().await.unwrap();
    task.await.unwrap();

    let (second, task) = durable(&state);
    let summary = second.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let asked = sorted_lines(&calls);
    assert_eq!(
        asked,
        ["\"q\":1", "\"q\":2", "\"q\":2"],
        "only the interrupted team call's worker ran again"
    );
    let children = second
        .list(baton_engine::RunQuery {
            parent: Some(run),
            limit: 10,
            ..baton_engine::RunQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(
        children.len(),
        2,
        "no second child for the interrupted call"
    );
    second.shutdown().await.unwrap();
    task.await.unwrap();
}
