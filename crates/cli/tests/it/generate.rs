use serde_json::Value;

use crate::{baton, stderr, stdout};

#[test]
fn generated_workflows_are_deterministic_and_valid() {
    let a = baton(
        &[
            "gen", "workflow", "--tasks", "500", "--shape", "layered", "--seed", "3",
        ],
        None,
    );
    let b = baton(
        &[
            "gen", "workflow", "--tasks", "500", "--shape", "layered", "--seed", "3",
        ],
        None,
    );
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(a.stdout, b.stdout);
    let c = baton(
        &[
            "gen", "workflow", "--tasks", "500", "--shape", "layered", "--seed", "4",
        ],
        None,
    );
    assert_ne!(a.stdout, c.stdout);
    for shape in ["chain", "fanout", "layered", "random", "diamond", "dense"] {
        for format in ["json", "yaml"] {
            let g = baton(
                &[
                    "gen", "workflow", "--tasks", "60", "--shape", shape, "--format", format,
                ],
                None,
            );
            assert!(g.status.success(), "{shape}: {}", stderr(&g));
            let p = baton(&["plan", "-", "--format", "json"], Some(&stdout(&g)));
            assert_eq!(p.status.code(), Some(0), "{shape}/{format}: {}", stderr(&p));
            let v: Value = serde_json::from_str(&stdout(&p)).unwrap();
            assert_eq!(v["tasks"], 60, "{shape}");
        }
    }
}

#[test]
fn shapes_plan_as_expected() {
    let plan = |shape: &str| -> Value {
        let g = baton(
            &["gen", "workflow", "--tasks", "10", "--shape", shape],
            None,
        );
        serde_json::from_str(&stdout(&baton(
            &["plan", "-", "--format", "json"],
            Some(&stdout(&g)),
        )))
        .unwrap()
    };
    assert_eq!(plan("chain")["stage_count"], 10);
    assert_eq!(plan("fanout")["stage_widths"], serde_json::json!([1, 9]));
    assert_eq!(
        plan("diamond")["stage_widths"],
        serde_json::json!([1, 8, 1])
    );
}

#[test]
fn out_writes_the_file_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wf.yaml");
    let o = baton(
        &[
            "gen",
            "workflow",
            "--tasks",
            "5",
            "--shape",
            "chain",
            "--out",
            path.to_str().unwrap(),
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("depends_on:"), "{text}");
    let p = baton(&["plan", path.to_str().unwrap()], None);
    assert_eq!(p.status.code(), Some(0));
}

#[test]
fn bad_parameters_are_usage_errors() {
    for args in [
        &["gen", "workflow", "--tasks", "0"][..],
        &["gen", "workflow", "--shape", "blob"],
        &["gen", "workflow", "--shape", "dense", "--density", "2"],
    ] {
        let o = baton(args, None);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let o = baton(
        &[
            "gen",
            "workflow",
            "--out",
            dir.path().join("no/such/dir/x.json").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
}
