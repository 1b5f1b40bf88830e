use std::time::Duration;

use baton_model::{Compensation, Format, Graph, Limits, Source, load};

use crate::repo_file;

#[test]
fn the_spec_example_parses_as_written() {
    let src = Source::read(
        &repo_file("examples/research_and_analysis.yaml"),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(src.format, Format::Yaml);
    let c = load(&src).unwrap();
    let wf = &c.workflow;
    assert_eq!(wf.name.as_deref(), Some("research_and_analysis"));
    assert_eq!(wf.version.as_deref(), Some("1.0"));
    assert_eq!(wf.orchestration_pattern.as_deref(), Some("supervisor"));
    let agents: Vec<_> = wf.agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(agents, ["supervisor", "researcher", "analyzer"]);
    assert_eq!(wf.agents[1].capabilities, ["web_search", "data_collection"]);
    let ids: Vec<_> = wf.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["decompose", "research", "analyze", "synthesize"]);
    assert!(wf.tasks[1].parallel);
    assert_eq!(c.graph.preds(3), &[2]);
    let coord = wf.coordination.as_ref().unwrap();
    assert_eq!(coord.kind, "hybrid");
    assert_eq!(coord.event_driven, ["agent_status", "data_updates"]);
    assert!(c.warnings.diagnostics.is_empty());
}

#[test]
fn every_field_of_the_language_is_read() {
    let src = Source::read(
        &repo_file("examples/release_pipeline.yaml"),
        Limits::default(),
    )
    .unwrap();
    let c = load(&src).unwrap();
    let t = |id: &str| c.workflow.tasks.iter().find(|t| t.id == id).unwrap();
    let build = t("build");
    assert_eq!(build.estimate, Some(Duration::from_secs(180)));
    assert_eq!(build.timeout, Some(Duration::from_secs(600)));
    let retry = build.retry.as_ref().unwrap();
    assert_eq!(retry.max_attempts, 3);
    assert_eq!(retry.backoff.max, Duration::from_secs(30));
    assert_eq!(build.input.as_ref().unwrap()["target"], "release");
    assert!(
        t("review")
            .condition
            .as_ref()
            .unwrap()
            .text
            .contains("failures == 0")
    );
    let wait = t("approval").wait_for.as_ref().unwrap();
    assert_eq!(wait.event_type, "approvals");
    assert_eq!(wait.timeout, Some(Duration::from_secs(4 * 3600)));
    assert_eq!(
        t("deploy").compensation,
        Some(Box::new(Compensation::Task("rollback".into())))
    );
    // The compensation task is marked, and unestimated tasks weigh one unit.
    let rollback = c
        .workflow
        .tasks
        .iter()
        .position(|t| t.id == "rollback")
        .unwrap();
    assert!(c.graph.handler[rollback]);
    let approval = c
        .workflow
        .tasks
        .iter()
        .position(|t| t.id == "approval")
        .unwrap();
    assert_eq!(c.graph.weights[approval], Graph::UNIT);
}

#[test]
fn json_and_yaml_and_the_bare_form_are_one_language() {
    let yaml =
        "workflow:\n  tasks:\n    - { id: a }\n    - { id: b, depends_on: [a], estimate: 2s }\n";
    let bare_yaml = "tasks:\n  - id: a\n  - id: b\n    depends_on: a\n    estimate: 2\n";
    let json = r#"{"tasks":[{"id":"a","depends_on":[]},{"id":"b","depends_on":["a"],"estimate":"2000ms"}]}"#;
    let wrapped_json = format!(r#"{{"workflow":{json}}}"#);
    let results: Vec<_> = [
        (yaml, Format::Yaml),
        (bare_yaml, Format::Yaml),
        (json, Format::Json),
        (wrapped_json.as_str(), Format::Json),
    ]
    .into_iter()
    .map(|(text, f)| load(&Source::from_str("wf", text, f)).unwrap())
    .collect();
    for c in &results {
        assert_eq!(c.graph, results[0].graph);
        assert_eq!(c.workflow.tasks, results[0].workflow.tasks);
    }
    assert_eq!(results[0].graph.weights[1], 2_000_000);
}

#[test]
fn format_is_chosen_by_extension_then_content() {
    let detect = |text: &str| {
        Source::from_bytes("-", text.as_bytes().to_vec(), None, Limits::default())
            .unwrap()
            .format
    };
    assert_eq!(detect(r#"{"tasks": []}"#), Format::Json);
    assert_eq!(detect("tasks: []"), Format::Yaml);
    assert_eq!(
        detect(r#"{"schemaVersion": "1.5", "workflow": {}}"#),
        Format::WfFormat
    );
    let hinted = Source::from_bytes(
        "x.json",
        b"{}".to_vec(),
        Some(Format::Json),
        Limits::default(),
    )
    .unwrap();
    assert_eq!(hinted.format, Format::Json);
}

#[test]
fn wfformat_traces_import_with_runtimes_as_estimates() {
    for (file, tasks) in [
        ("examples/traces/blast-chameleon-small-001.json", 43),
        ("examples/traces/srasearch-chameleon-10a-001.json", 22),
    ] {
        let src = Source::read(&repo_file(file), Limits::default()).unwrap();
        assert_eq!(src.format, Format::WfFormat, "{file}");
        let c = load(&src).unwrap();
        assert_eq!(c.workflow.tasks.len(), tasks, "{file}");
        assert!(c.graph.edge_count() > 0, "{file}");
        // Runtimes come from workflow.execution.tasks[].runtimeInSeconds.
        assert!(
            c.graph
                .weights
                .iter()
                .all(|&w| w != baton_model::Graph::UNIT),
            "{file}"
        );
    }
    let src = Source::read(
        &repo_file("examples/traces/blast-chameleon-small-001.json"),
        Limits::default(),
    )
    .unwrap();
    let c = load(&src).unwrap();
    let split = &c.workflow.tasks[0];
    assert_eq!(split.id, "split_fasta_ID000001");
    assert_eq!(split.estimate, Some(Duration::from_micros(54_023)));
}

#[test]
fn old_wfformat_keeps_tasks_under_workflow_with_runtime() {
    let text = r#"{"name": "old", "schemaVersion": "1.4", "workflow": {"tasks": [
        {"name": "a", "parents": [], "runtime": 1.5},
        {"name": "b", "parents": ["a"], "runtime": 2}
    ]}}"#;
    let c = load(&Source::from_str("old.json", text, Format::WfFormat)).unwrap();
    assert_eq!(c.graph.weights, [1_500_000, 2_000_000]);
    assert_eq!(c.graph.preds(1), &[0]);
}

#[test]
fn unknown_wfformat_versions_are_imported_with_a_warning() {
    let text = r#"{"schemaVersion": "2.0", "workflow": {"tasks": [{"name": "a", "parents": []}]}}"#;
    let c = load(&Source::from_str("new.json", text, Format::WfFormat)).unwrap();
    let w: Vec<_> = c.warnings.warnings().collect();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].code, "wfformat-version");
    assert_eq!(w[0].location.unwrap().line, 1);
    let text = r#"{"schemaVersion": "1.5", "workflow": {"tasks": [{"name": "a", "parents": []}]}}"#;
    assert!(
        load(&Source::from_str("ok.json", text, Format::WfFormat))
            .unwrap()
            .warnings
            .diagnostics
            .is_empty()
    );
}

#[test]
fn workflows_built_in_code_validate_too() {
    let wf = baton_model::Workflow {
        tasks: vec![
            baton_model::Task::new("a", &[]),
            baton_model::Task::new("b", &["a"]),
        ],
        ..Default::default()
    };
    let c = baton_model::validate(wf).unwrap();
    assert_eq!(c.graph.preds(1), &[0]);
}

#[test]
fn a_tenant_is_read_and_a_bad_one_is_located() {
    let ok = load(&Source::from_str(
        "wf",
        "tenant: acme-2\ntasks: [{ id: a }]\n",
        Format::Yaml,
    ))
    .unwrap();
    assert_eq!(ok.workflow.tenant.as_deref(), Some("acme-2"));
    for bad in ["Acme", "a.b", "baton", "-x"] {
        let text = format!("tenant: \"{bad}\"\ntasks: [{{ id: a }}]\n");
        let Err(baton_model::Error::Invalid { report, .. }) =
            load(&Source::from_str("wf", &text, Format::Yaml))
        else {
            panic!("{bad} was taken");
        };
        let d = &report.diagnostics[0];
        assert_eq!(
            (d.code, d.path.to_string().as_str()),
            ("invalid-tenant", "$.tenant"),
            "{bad}"
        );
        assert_eq!(d.location.map(|l| l.line), Some(1), "{bad}");
    }
}
