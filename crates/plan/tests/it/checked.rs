//! Planning validated workflows, cycles reported as diagnostics.

use baton_model::{Format, Severity, Source, load};
use baton_plan::{Error, Options, Plan, plan_checked};

fn yaml(text: &str) -> baton_model::Checked {
    load(&Source::from_str("flow.yaml", text, Format::Yaml)).unwrap()
}

#[test]
fn spec_example_plans() {
    let checked = yaml(
        r#"
workflow:
  name: "research_and_analysis"
  tasks:
    - { id: "decompose",  depends_on: [] }
    - { id: "research",   depends_on: ["decompose"], parallel: true }
    - { id: "analyze",    depends_on: ["research"] }
    - { id: "synthesize", depends_on: ["analyze"] }
"#,
    );
    let plan = plan_checked(&checked, &Options::default()).unwrap();
    let s = plan.summary();
    assert_eq!((s.tasks, s.edges, s.stage_count, s.max_width), (4, 3, 4, 1));
    assert_eq!(s.critical_path.tasks, &[0, 1, 2, 3]);
    assert_eq!(s.critical_path.length, 4_000_000);
    assert_eq!(s.parallelism, 1.0);
    assert_eq!(plan.id("analyze"), Some(2));
    let json = serde_json::to_value(plan.summary().with_stages(&plan)).unwrap();
    assert_eq!(json["stages"], serde_json::json!([[0], [1], [2], [3]]));
    assert_eq!(json["redundancy"], "exact");
}

#[test]
fn cycle_is_a_located_diagnostic() {
    let text = "workflow:\n  tasks:\n    - { id: start }\n    - { id: a, depends_on: [start, c] }\n    - { id: b, depends_on: [a] }\n    - { id: c, depends_on: [b] }\n";
    let checked = yaml(text);
    let d = plan_checked(&checked, &Options::default()).unwrap_err();
    assert_eq!(d.severity, Severity::Error);
    assert_eq!(d.code, "cycle");
    assert_eq!(d.message, "dependency cycle: a → b → c → a");
    assert_eq!(d.path.to_string(), "$.workflow.tasks[1].depends_on[1]");
    assert!(
        d.hint
            .as_deref()
            .unwrap()
            .contains("`c` from the `depends_on` of `a`")
    );

    let names: Vec<&str> = checked
        .workflow
        .tasks
        .iter()
        .map(|t| t.id.as_str())
        .collect();
    let err = Plan::compile(&checked.graph, names, &Options::default()).unwrap_err();
    assert_eq!(
        err,
        Error::Cycle {
            tasks: vec![1, 2, 3],
            names: vec!["a".into(), "b".into(), "c".into()]
        }
    );
    assert_eq!(err.to_string(), "dependency cycle: a → b → c → a");
}

#[test]
fn compensation_tasks_are_listed_apart() {
    let checked = yaml(
        "tasks:\n  - { id: pay, compensation: refund }\n  - { id: ship, depends_on: [pay] }\n  - { id: refund }\n",
    );
    let plan = plan_checked(&checked, &Options::default()).unwrap();
    assert_eq!(plan.handlers(), &[2]);
    assert_eq!(plan.stages().flatten().copied().collect::<Vec<_>>(), [0, 1]);
    assert_eq!(plan.summary().handlers, 1);
    assert_eq!(plan.timings().count(), 2);
}
