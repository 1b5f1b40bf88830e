//! A run's workflow is stored as JSON (`serde_json::to_string(&workflow)`)
//! and loaded again to resume the run after a crash: what is loaded back
//! must equal what was stored, field for field.

use std::time::Duration;

use baton_model::{Error, Format, Limits, Source, Workflow, load};

use crate::repo_file;

/// Serializes a workflow as the engine stores it and loads it back.
fn reload(wf: &Workflow) -> Workflow {
    let json = serde_json::to_string(wf).unwrap();
    match load(&Source::from_str("stored.json", &json, Format::Json)) {
        Ok(c) => c.workflow,
        Err(Error::Invalid { report, .. }) => panic!("{json}\ndoes not load back: {report:#?}"),
        Err(e) => panic!("{json}\ndoes not load back: {e}"),
    }
}

fn yaml(text: &str) -> Workflow {
    load(&Source::from_str("wf.yaml", text, Format::Yaml))
        .unwrap()
        .workflow
}

#[test]
fn the_examples_round_trip() {
    for file in [
        "examples/release_pipeline.yaml",
        "examples/research_and_analysis.yaml",
        "examples/fan_out.yaml",
        "examples/routes.yaml",
        "examples/sub_workflow.yaml",
        "examples/review_loop.yaml",
        "examples/research_review.yaml",
        "examples/patterns/handoff.yaml",
        "examples/patterns/supervisor.yaml",
        "examples/patterns/supervisor_python.yaml",
        "examples/patterns/network.yaml",
        "examples/patterns/negotiation.yaml",
        "examples/patterns/swarm.yaml",
        "examples/patterns/hierarchical.yaml",
        "examples/patterns/llm_supervisor.yaml",
        "examples/teams/research_team.yaml",
        "examples/teams/review_team.yaml",
    ] {
        let src = Source::read(&repo_file(file), Limits::default()).unwrap();
        let wf = load(&src).unwrap().workflow;
        assert_eq!(reload(&wf), wf, "{file}");
    }
}

/// Every agent field, and every task field in each of its forms.
const EVERYTHING: &str = r#"
name: everything
version: 1.0
orchestration_pattern: pipeline
agents:
  idle: { type: noop, breaker: {} }
  fast: { type: simulate, latency: 1.5µs, failure_rate: 0.30000000000000004, seed: 18446744073709551615 }
  spread: { type: simulate, latency: { distribution: uniform, min: 0.1234567s, max: 100s } }
  tail: { type: simulate, latency: { distribution: exponential, mean: 3h1s } }
  bell: { type: simulate, latency: { distribution: normal, mean: 20ms, stddev: 1.0000001s } }
  flat: { type: simulate, latency: { distribution: constant, mean: 0.000000001 } }
  scripted: { type: simulate, outputs: { f: [1, "two", { three: 3 }], g: approve } }
  model: { type: llm, base_url: "http://127.0.0.1:11434/v1", model: llama3.2, system: "Be brief.", temperature: 0.25, max_tokens: 300, api_key_env: OPENAI_API_KEY }
  shell:
    type: command
    shell: true
    command: "./build.sh --release 2>&1"
    env: { RUST_LOG: debug, ZED: "1", ALPHA: "two words" }
    concurrency: 4
    capabilities: [build]
    breaker: { failure_rate: 0.9856906946328695, window: 7, cooldown: 2.5ms }
  argv: { type: command, command: [cargo, build, --release, 3] }
  remote:
    type: http
    url: https://agents.example.com:8443/a2a?x=1
    headers: { Authorization: Bearer abc, X-Trace: "on" }
    breaker: { failure_rate: 1, window: 100, min_calls: 100, cooldown: 1d }
  custom: { type: research_agent, capabilities: [search], breaker: { window: 3 } }
tasks:
  - { id: a, agent: idle, estimate: 100s, timeout: 1.0000001s }
  - { id: b, agent: fast, depends_on: [a], estimate: 1500ns, timeout: 3h1s, retry: 5 }
  - id: c
    agent: shell
    depends_on: a
    parallel: true
    estimate: 0.1234567
    retry: { max_attempts: 2, backoff: { initial: 1.5µs, max: 90s, multiplier: 1.1, jitter: 0.1 } }
    compensation: { action: undo, agent: remote, input: { why: [1, 2.5, null] } }
    input: { x: 0.30000000000000004, y: 1.7976931348623157e308, z: 5e-324, n: -7, big: 18446744073709551615 }
  - id: d
    requires: [search]
    depends_on: [b, c]
    condition: c.output.x > 0.3 && b.status == "succeeded"
    wait_for: { type: data_updates, key: k, topic: t, match: { ok: true, n: 0.1 }, timeout: 4h }
    compensation: undo_d
  - { id: undo_d, agent: remote }
  - { id: e, agent: argv, depends_on: [d], wait_for: approvals }
  - { id: f, agent: scripted, depends_on: [e] }
  - { id: each, agent: idle, depends_on: [f], for_each: f.output }
  - id: each_bounded
    agent: idle
    depends_on: [f]
    for_each: { items: "f.output[2].three", max_parallel: 3, max_items: 12, on_failure: collect }
  - { id: g, agent: scripted, depends_on: [each], routes: { approve: [h], revise: [] } }
  - { id: h, agent: idle, depends_on: [g] }
  - { id: child_file, depends_on: [h], workflow: { file: teams/x.yaml } }
  - { id: child_name, depends_on: [h], workflow: { name: team, version: 3 } }
  - id: child_inline
    depends_on: [h]
    workflow: { inline: { name: inner, agents: { q: { type: noop } }, tasks: [{ id: i1, agent: q }, { id: i2, agent: q, depends_on: [i1], for_each: i1.output }] } }
  - { id: looped, agent: scripted, depends_on: [h], loop: { until: "looped.output.ok == true && h.status == \"succeeded\"", max_iterations: 7, on_limit: continue } }
  - { id: counted, depends_on: [h], loop: { max_iterations: 2 }, workflow: { inline: { tasks: [{ id: k }] } } }
  - { id: handed, depends_on: [h], pattern: { type: handoff, agents: [idle, fast], start: fast, max_handoffs: 9 } }
  - { id: supervised, depends_on: [h], pattern: { type: supervisor, supervisor: scripted, workers: [idle, fast], max_turns: 5, max_delegates: 3 } }
  - { id: networked, depends_on: [h], pattern: { type: network, agents: [idle, fast], start: fast, max_messages: 40, on_limit: continue } }
  - { id: org, depends_on: [h], pattern: { type: hierarchical, supervisor: scripted, workers: [idle], max_turns: 3, teams: { t1: { file: teams/t1.yaml }, t2: { inline: { tasks: [{ id: x }] } } } } }
  - { id: swarmed, depends_on: [h], pattern: { type: swarm, agents: [idle, fast], max_handoffs: 8, until: "swarmed.output.context.done == true && h.status == \"succeeded\"" } }
coordination: { type: hybrid, event_driven: [data_updates, approvals], graph_based: [task_flow] }
"#;

#[test]
fn every_field_round_trips() {
    let wf = yaml(EVERYTHING);
    assert_eq!(wf.agents.len(), 12);
    assert_eq!(reload(&wf), wf);
    // Reloading is a fixed point: the stored text is stable too.
    let json = serde_json::to_string(&wf).unwrap();
    assert_eq!(serde_json::to_string(&reload(&wf)).unwrap(), json);
}

#[test]
fn durations_are_stored_exactly() {
    // `duration::format` rounds for people (100s is "1.67m"); storage must not.
    let wf = yaml(EVERYTHING);
    let json = serde_json::to_value(&wf).unwrap();
    assert_eq!(json["tasks"][0]["estimate"], "100s");
    assert_eq!(json["tasks"][0]["timeout"], "1.0000001s");
    assert_eq!(json["tasks"][1]["estimate"], "1.5µs");
    assert_eq!(json["tasks"][1]["timeout"], "10801s");
    assert_eq!(json["agents"]["flat"]["latency"], "1ns");
    let d = &reload(&wf).tasks[2];
    assert_eq!(d.estimate, Some(Duration::from_nanos(123_456_700)));
    assert_eq!(
        d.retry.as_ref().unwrap().backoff.initial,
        Duration::from_nanos(1_500)
    );
}

#[test]
fn workflows_read_from_wfformat_round_trip() {
    let src = Source::read(
        &repo_file("examples/traces/blast-chameleon-small-001.json"),
        Limits::default(),
    )
    .unwrap();
    let wf = load(&src).unwrap().workflow;
    assert_eq!(reload(&wf), wf);
}

#[test]
fn coordination_without_a_type_round_trips() {
    // Used to be stored as `"type": ""`, which does not load.
    let wf = yaml("coordination: { event_driven: [x] }\ntasks:\n  - { id: a }\n");
    assert_eq!(reload(&wf), wf);
}
