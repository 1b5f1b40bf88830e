//! Every kind of validation error, located and explained. The rendered text
//! is the contract people read, so it is snapshot-tested.

use baton_model::{Format, MAX_DIAGNOSTICS, Severity};

use crate::{codes, rendered_errors, report};

#[test]
fn all_errors_are_reported_at_once_with_locations_and_hints() {
    let text = r#"workflow:
  name: broken
  agents:
    researcher: { type: research_agent, capabilities: [web_search] }
  tasks:
    - { id: decompose, agent: researcher }
    - { id: research, agent: researchr, depends_on: [decompose] }
    - { id: analyze, agent: researcher, depends_on: [reserch], requires: [data_processing] }
    - { id: analyze, agent: researcher, dependson: [research] }
    - { id: report, agent: researcher, depends_on: [report], estimate: 3 parsecs }
"#;
    insta::assert_snapshot!(rendered_errors("broken.yaml", text, Format::Yaml));
}

#[test]
fn json_errors_point_into_the_json() {
    let text = r#"{
  "tasks": [
    {"id": "a", "depends_on": []},
    {"id": "b", "depends_on": ["a", "c"], "timeout": "soon"}
  ]
}"#;
    insta::assert_snapshot!(rendered_errors("flow.json", text, Format::Json));
}

#[test]
fn syntax_errors_have_a_location() {
    insta::assert_snapshot!(rendered_errors(
        "bad.yaml",
        "tasks:\n  - id: a\n   depends_on: [\n",
        Format::Yaml
    ));
    insta::assert_snapshot!(rendered_errors(
        "bad.json",
        "{\"tasks\": [{\"id\": \"a\",}]}",
        Format::Json
    ));
    insta::assert_snapshot!(rendered_errors(
        "bad.json",
        "{\"tasks\": [{\"id\": \"a\", \"depends_on\": 5}]}",
        Format::Json
    ));
}

#[test]
fn conditions_and_events_are_validated_now() {
    let text = r#"
coordination: { type: hybrid, event_driven: [data_updates] }
tasks:
  - { id: fetch }
  - { id: other }
  - { id: use, depends_on: [fetch], condition: "fetch.output.rows > 0 && other.status == 'succeeded'" }
  - { id: bad, depends_on: [fetch], condition: "fetch.output.rows = 0" }
  - { id: wait, wait_for: { type: data_update, timeout: 5m } }
  - { id: wait2, wait_for: { key: x } }
"#;
    insta::assert_snapshot!(rendered_errors("cond.yaml", text, Format::Yaml));
}

#[test]
fn agents_capabilities_and_compensations() {
    let text = r#"
agents:
  a: { type: noop, capabilities: [x] }
  b: { type: noop, capabilities: [y], concurrency: 0 }
  c: { capabilities: [] }
tasks:
  - { id: t1, agent: a, requires: [y] }
  - { id: t2, requires: [x, y] }
  - { id: t3 }
  - { id: t4, agent: a, compensation: undo }
  - { id: t5, agent: a, compensation: t5 }
  - { id: t6, agent: a, compensation: t7 }
  - { id: t7, agent: a, depends_on: [t1] }
  - { id: t8, agent: a, depends_on: [t7], retry: { max_attempts: 0, backoff: { initial: 10s, max: 1s, jitter: 2 } } }
"#;
    insta::assert_snapshot!(rendered_errors("agents.yaml", text, Format::Yaml));
}

#[test]
fn error_kinds_have_stable_codes() {
    let r = report(
        "tasks:\n  - { id: a, depends_on: [a] }\n  - { id: a }\n  - { depends_on: [] }\n  - { id: b, depends_on: [zz] }\n",
        Format::Yaml,
    );
    assert_eq!(
        codes(&r),
        [
            "self-dependency",
            "duplicate-task",
            "missing-id",
            "unknown-dependency"
        ]
    );
    assert!(r.diagnostics.iter().all(|d| d.location.is_some()));
    assert_eq!(r.error_count, 4);
}

/// A control character in a task id (a NUL, an escape sequence) is refused:
/// ids reach logs, terminals and URLs.
#[test]
fn control_characters_in_task_ids_are_refused() {
    let r = report(
        r#"{"tasks": [{"id": "a\u0000b"}, {"id": "x\u001b[2J"}, {"id": "ok-1 é"}]}"#,
        Format::Json,
    );
    assert_eq!(codes(&r), ["bad-id", "bad-id"]);
    assert_eq!(r.diagnostics[0].path.to_string(), "$.tasks[0].id");
}

#[test]
fn many_errors_are_capped_and_counted() {
    let mut text = String::from("tasks:\n");
    for i in 0..200 {
        text.push_str(&format!("  - {{ id: t{i}, depends_on: [missing{i}] }}\n"));
    }
    let r = report(&text, Format::Yaml);
    assert_eq!(r.diagnostics.len(), MAX_DIAGNOSTICS);
    assert_eq!(r.omitted, 200 - MAX_DIAGNOSTICS);
    assert_eq!(r.error_count, 200);
    let rendered = rendered_errors("many.yaml", &text, Format::Yaml);
    assert!(
        rendered.ends_with("... and 150 more not shown\n"),
        "{rendered}"
    );
}

#[test]
fn warnings_do_not_fail_validation() {
    let text = "tasks:\n  - { id: a }\n  - { id: b, depends_on: [a, a] }\n";
    let c = baton_model::load(&baton_model::Source::from_str("w", text, Format::Yaml)).unwrap();
    let w: Vec<_> = c.warnings.warnings().collect();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].code, "duplicate-dependency");
    assert_eq!(w[0].severity, Severity::Warning);
    assert_eq!(w[0].location.unwrap().line, 3);
    assert_eq!(c.graph.preds(1), &[0]);
}

#[test]
fn fan_outs_and_routes_are_validated_with_their_locations() {
    let text = r#"
tasks:
  - { id: split }
  - { id: other }
  - { id: a, depends_on: [split], for_each: split.status }
  - { id: b, depends_on: [split], for_each: other.output.list }
  - { id: c, depends_on: [split], for_each: { items: nope.output, max_parallel: 0, max_items: 20000000, on_failure: later, batch: 3 } }
  - { id: d, depends_on: [split], for_each: { max_parallel: 2 } }
  - { id: e, depends_on: [split], for_each: split.output, wait_for: ready }
  - { id: r, depends_on: [split], routes: { yes: [t1, t2, t3], "": [t1] } }
  - { id: t1, depends_on: [r] }
  - { id: t2, depends_on: [split] }
  - { id: s, routes: {} }
"#;
    insta::assert_snapshot!(rendered_errors("dynamic.yaml", text, Format::Yaml));
}

#[test]
fn sub_workflows_are_validated_and_an_inline_childs_errors_point_into_the_parent() {
    let text = r#"
agents:
  w: { type: noop }
tasks:
  - { id: a, agent: w }
  - { id: none, workflow: {} }
  - { id: both, workflow: { file: x.yaml, name: x } }
  - { id: with_agent, agent: w, workflow: { name: x } }
  - { id: version_alone, workflow: { file: x.yaml, version: 2 } }
  - id: inline
    workflow:
      inline:
        tasks:
          - { id: c1 }
          - { id: c2, depends_on: [c9], timeout: soon }
"#;
    insta::assert_snapshot!(rendered_errors("sub.yaml", text, Format::Yaml));
}

#[test]
fn loops_are_validated_with_their_locations() {
    let text = r#"
tasks:
  - { id: split }
  - { id: other }
  - { id: a, depends_on: [split], loop: { until: "a.output.done == true" } }
  - { id: b, depends_on: [split], loop: { until: "other.output.ok", max_iterations: 3 } }
  - { id: c, depends_on: [split], loop: { until: "c.output.ok ==", max_iterations: 0, on_limit: stop, every: 2 } }
  - { id: d, depends_on: [split], loop: { until: "nope.output", max_iterations: 20000 } }
  - { id: e, depends_on: [split], for_each: split.output, loop: { max_iterations: 2 } }
  - { id: f, depends_on: [split], routes: { x: [g] }, wait_for: ready, loop: { max_iterations: 2 } }
  - { id: g, depends_on: [f] }
  - { id: h, loop: 3 }
"#;
    insta::assert_snapshot!(rendered_errors("loops.yaml", text, Format::Yaml));
}

#[test]
fn patterns_are_validated_with_their_locations() {
    let text = r#"
agents:
  triage: { type: noop }
  billing: { type: noop }
tasks:
  - { id: a, pattern: { type: handoff, agents: [triage, biling, triage], start: tech, max_handoffs: 3 } }
  - { id: b, pattern: { type: handof, agents: [triage] } }
  - { id: c, pattern: { type: handoff, agents: [], max_handoffs: 2 } }
  - { id: d, pattern: { type: handoff, agents: [triage], max_handoffs: 0, turns: 3 } }
  - { id: e, pattern: { type: handoff, agents: [triage] } }
  - { id: f, agent: billing, loop: { max_iterations: 2 }, pattern: { type: handoff, agents: [triage], max_handoffs: 1 } }
  - { id: g, pattern: handoff }
"#;
    insta::assert_snapshot!(rendered_errors("patterns.yaml", text, Format::Yaml));
}

#[test]
fn supervisor_patterns_are_validated_with_their_locations() {
    let text = r#"
agents:
  planner: { type: noop }
  researcher: { type: noop }
tasks:
  - { id: a, pattern: { type: supervisor, supervisor: planer, workers: [researcher, reseacher], max_turns: 3 } }
  - { id: b, pattern: { type: supervisor, supervisor: planner, workers: [], max_turns: 3 } }
  - { id: c, pattern: { type: supervisor, supervisor: planner, workers: [researcher] } }
  - { id: d, pattern: { type: supervisor, workers: [researcher], max_turns: 3 } }
  - { id: e, pattern: { type: supervisor, supervisor: planner, workers: [planner, researcher], max_turns: 2 } }
  - { id: f, pattern: { type: supervisor, supervisor: planner, workers: [researcher], max_turns: 1001, max_delegates: 0, agents: [x] } }
"#;
    insta::assert_snapshot!(rendered_errors("supervisor.yaml", text, Format::Yaml));
}

#[test]
fn network_patterns_are_validated_with_their_locations() {
    let text = r#"
agents:
  buyer: { type: noop }
  seller: { type: noop }
tasks:
  - { id: a, pattern: { type: network, agents: [buyer, seler], start: broker, max_messages: 10 } }
  - { id: b, pattern: { type: network, agents: [buyer, seller] } }
  - { id: c, pattern: { type: network, agents: [buyer], max_messages: 10000001, on_limit: stop } }
"#;
    insta::assert_snapshot!(rendered_errors("network.yaml", text, Format::Yaml));
}

#[test]
fn swarm_patterns_are_validated_with_their_locations() {
    let text = r#"
agents:
  triage: { type: noop }
  coder: { type: noop }
tasks:
  - { id: up, agent: triage }
  - { id: a, pattern: { type: swarm, agents: [triage, coder], start: tester, max_handoffs: 5, until: "b.output.ok" } }
  - { id: b, depends_on: [up], pattern: { type: swarm, agents: [triage, coder], max_handoffs: 5, until: "b.output.context.done == true && up.output.ok" } }
  - { id: c, pattern: { type: swarm, agents: [triage], until: "c.output.context.x ==" } }
"#;
    insta::assert_snapshot!(rendered_errors("swarm.yaml", text, Format::Yaml));
}

#[test]
fn hierarchical_patterns_are_validated_with_their_locations() {
    let text = r#"
agents:
  lead: { type: noop }
  writer: { type: noop }
tasks:
  - id: a
    pattern:
      type: hierarchical
      supervisor: lead
      workers: [writer]
      max_turns: 3
      teams:
        writer: { file: writer.yaml }
        research: { inline: { tasks: [{ id: dig, agent: digger }] } }
        review: { name: "" }
  - { id: b, pattern: { type: hierarchical, supervisor: lead, max_turns: 3 } }
"#;
    insta::assert_snapshot!(rendered_errors("hierarchical.yaml", text, Format::Yaml));
}
