use serde_json::Value;

use crate::{baton, stderr, stdout};

#[test]
fn the_readme_quick_start_plans_the_spec_example() {
    let o = baton(&["plan", "examples/research_and_analysis.yaml"], None);
    assert!(o.status.success(), "{}", stderr(&o));
    insta::assert_snapshot!(stdout(&o));
}

#[test]
fn json_output_follows_the_documented_contract() {
    let o = baton(
        &[
            "plan",
            "examples/release_pipeline.yaml",
            "--format",
            "json",
            "--stages",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["valid"], true);
    assert_eq!(v["name"], "release_pipeline");
    assert_eq!(v["tasks"], 7);
    assert_eq!(v["edges"], 6);
    assert_eq!(v["stage_count"], 5);
    assert_eq!(v["stage_widths"], serde_json::json!([1, 2, 1, 1, 1]));
    assert_eq!(v["max_width"], 2);
    // build 3m + integration 5m + review 30s + approval 1 unit (1s) + deploy 1m
    assert_eq!(v["critical_path"]["length"], 571.0);
    assert_eq!(
        v["critical_path"]["tasks"],
        serde_json::json!(["build", "integration_tests", "review", "approval", "deploy"])
    );
    assert_eq!(v["total_work"], 691.0);
    assert!((v["parallelism"].as_f64().unwrap() - 691.0 / 571.0).abs() < 1e-9);
    assert_eq!(v["redundant_edges"], serde_json::json!([]));
    assert_eq!(v["compensation_tasks"], serde_json::json!(["rollback"]));
    assert_eq!(
        v["stages"][1],
        serde_json::json!(["unit_tests", "integration_tests"])
    );
    for k in ["parse", "validate", "plan"] {
        assert!(v["timings_ms"][k].as_f64().unwrap() >= 0.0, "{k}");
    }
}

#[test]
fn the_schedule_gives_each_task_its_window_and_slack() {
    let o = baton(
        &[
            "plan",
            "examples/release_pipeline.yaml",
            "--format",
            "json",
            "--schedule",
        ],
        None,
    );
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let schedule = v["schedule"].as_array().unwrap();
    // Compensation tasks are not scheduled.
    assert_eq!(schedule.len(), 6);
    let task = |id: &str| schedule.iter().find(|t| t["id"] == id).unwrap().clone();
    // unit_tests (2m) runs beside integration_tests (5m): 3 minutes of slack.
    let unit = task("unit_tests");
    assert_eq!(unit["stage"], 2);
    assert_eq!(unit["earliest_start"], 180.0);
    assert_eq!(unit["slack"], 180.0);
    assert_eq!(task("integration_tests")["slack"], 0.0);
    assert_eq!(task("deploy")["earliest_start"], 511.0);
    let o = baton(
        &["plan", "examples/release_pipeline.yaml", "--schedule"],
        None,
    );
    assert!(
        stdout(&o).contains("schedule (earliest start, latest start, slack):"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn redundant_edges_are_reported_and_removable() {
    let wf =
        r#"{"tasks":[{"id":"a"},{"id":"b","depends_on":["a"]},{"id":"c","depends_on":["a","b"]}]}"#;
    let o = baton(&["plan", "-", "--format", "json"], Some(wf));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["redundant_edges"], serde_json::json!([["a", "c"]]));
    assert_eq!(v["edges"], 3);
    let o = baton(
        &["plan", "-", "--format", "json", "--remove-redundant"],
        Some(wf),
    );
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["edges"], 2);
    let o = baton(
        &["plan", "-", "--format", "dot", "--remove-redundant"],
        Some(wf),
    );
    assert!(!stdout(&o).contains("\"a\" -> \"c\""), "{}", stdout(&o));
}

#[test]
fn invalid_workflows_exit_1_with_located_errors() {
    let wf = "tasks:\n  - { id: a }\n  - { id: b, depends_on: [aa, c] }\n";
    let o = baton(&["plan", "-"], Some(wf));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("<stdin>:3:27"), "{err}");
    assert!(err.contains("did you mean `a`?"), "{err}");
    assert!(stdout(&o).is_empty());
    // JSON output carries the diagnostics for tools.
    let o = baton(&["plan", "-", "--format", "json"], Some(wf));
    assert_eq!(o.status.code(), Some(1));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["code"], "unknown-dependency");
    assert_eq!(v["errors"][0]["location"]["line"], 3);
    assert_eq!(v["errors"][0]["path"], "$.tasks[1].depends_on[0]");
}

#[test]
fn cycles_are_printed_as_their_full_path() {
    let wf = "tasks:\n  - {id: a, depends_on: [c]}\n  - {id: b, depends_on: [a]}\n  - {id: c, depends_on: [b]}\n  - {id: d}\n";
    let o = baton(&["plan", "-"], Some(wf));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("a → b → c → a"), "{err}");
    assert!(err.contains("<stdin>:2:"), "{err}");
}

#[test]
fn io_and_usage_errors_exit_2() {
    let o = baton(&["plan", "does/not/exist.yaml"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("cannot read does/not/exist.yaml"),
        "{}",
        stderr(&o)
    );
    let o = baton(
        &[
            "plan",
            "examples/research_and_analysis.yaml",
            "--format",
            "xml",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let o = baton(&["plan"], None);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn garbage_input_is_an_invalid_workflow_not_a_crash() {
    for input in ["", "\u{0}\u{1}\u{2}", "{{{{", "- - - -", "tasks: [[[["] {
        let o = baton(&["plan", "-"], Some(input));
        assert_eq!(o.status.code(), Some(1), "input {input:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    }
}

#[test]
fn wfformat_traces_are_detected() {
    let o = baton(
        &[
            "plan",
            "examples/traces/srasearch-chameleon-10a-001.json",
            "--format",
            "json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["tasks"], 22);
}

#[test]
fn dot_and_mermaid_draw_stages_as_ranks() {
    let o = baton(
        &[
            "plan",
            "examples/research_and_analysis.yaml",
            "--format",
            "dot",
        ],
        None,
    );
    let dot = stdout(&o);
    assert!(
        dot.starts_with("digraph \"research_and_analysis\" {"),
        "{dot}"
    );
    assert!(
        dot.contains("{ rank=same; /* stage 2 */ \"research\"; }"),
        "{dot}"
    );
    assert!(dot.contains("\"decompose\" -> \"research\""), "{dot}");
    let o = baton(
        &[
            "plan",
            "examples/research_and_analysis.yaml",
            "--format",
            "mermaid",
        ],
        None,
    );
    let m = stdout(&o);
    assert!(m.starts_with("flowchart LR\n"), "{m}");
    assert!(m.contains("subgraph s3 [\"stage 4\"]"), "{m}");
    assert!(m.contains("n0 --> n1"), "{m}");
}

#[test]
fn the_seed_target_holds_with_room_to_spare() {
    // The seed promised < 1 s to plan 1,000 tasks; 100k must also be < 1 s.
    // These are generous gates that hold by orders of magnitude (debug
    // build included); the real figures come from `cargo bench` and `baton bench`.
    for n in ["1000", "100000"] {
        let g = baton(
            &[
                "gen", "workflow", "--tasks", n, "--shape", "random", "--seed", "7",
            ],
            None,
        );
        assert!(g.status.success());
        let o = baton(&["plan", "-", "--format", "json"], Some(&stdout(&g)));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: Value = serde_json::from_str(&stdout(&o)).unwrap();
        assert_eq!(v["tasks"].as_u64().unwrap().to_string(), n);
        assert!(v["timings_ms"]["plan"].as_f64().unwrap() < 1000.0, "{v}");
    }
}

/// `--color always` colors the diagnostics (the level, the locations, the
/// caret); `never` and output that is not a terminal do not; JSON output
/// never has colors.
#[test]
fn diagnostics_are_colored_on_demand_only() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "tasks:\n  - { id: a, depends_on: [zz] }\n").unwrap();
    let bad = bad.to_str().unwrap();
    let colored = crate::baton(&["plan", bad, "--color", "always"], None);
    assert!(
        crate::stderr(&colored).contains("\u{1b}[1;31merror[unknown-dependency]"),
        "{}",
        crate::stderr(&colored)
    );
    for args in [vec!["plan", bad, "--color", "never"], vec!["plan", bad]] {
        let plain = crate::baton(&args, None);
        assert!(!crate::stderr(&plain).contains('\u{1b}'), "{args:?}");
        assert!(crate::stderr(&plain).contains("error[unknown-dependency]"));
    }
    let json = crate::baton(
        &["plan", bad, "--color", "always", "--format", "json"],
        None,
    );
    assert!(
        !crate::stdout(&json).contains('\u{1b}'),
        "{}",
        crate::stdout(&json)
    );
}
