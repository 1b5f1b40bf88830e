use serde_json::Value;

use crate::{baton, stderr, stdout};

#[test]
fn publish_then_tail_groups_and_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("events");
    let d = d.to_str().unwrap();
    let o = baton(
        &[
            "events",
            "publish",
            "--data-dir",
            d,
            "--topic",
            "orders",
            "--key",
            "k1",
            "--type",
            "created",
            "{\"n\":1}",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = baton(
        &[
            "events",
            "publish",
            "--data-dir",
            d,
            "--topic",
            "orders",
            "--key",
            "k1",
        ],
        Some("{\"n\":2}\n{\"n\":3}\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().count(),
        2,
        "one offset per published line"
    );

    let o = baton(
        &[
            "events",
            "tail",
            "--data-dir",
            d,
            "--topic",
            "orders",
            "--from-start",
            "--no-follow",
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let events: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    // One key, one partition: published order is kept.
    let ns: Vec<i64> = events
        .iter()
        .map(|e| e["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [1, 2, 3]);
    assert_eq!(events[0]["type"], "created");
    assert_eq!(events[1]["key"], "k1");

    let o = baton(
        &[
            "events",
            "tail",
            "--data-dir",
            d,
            "--topic",
            "orders",
            "--from-start",
            "--count",
            "2",
        ],
        None,
    );
    assert_eq!(stdout(&o).lines().count(), 2);

    let o = baton(
        &["events", "groups", "--data-dir", d, "--topic", "orders"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = baton(
        &["events", "dlq", "--data-dir", d, "--topic", "orders"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_retried_publish_with_the_same_id_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("events");
    let d = d.to_str().unwrap();
    for _ in 0..2 {
        let o = baton(
            &[
                "events",
                "publish",
                "--data-dir",
                d,
                "--topic",
                "t",
                "--id",
                "00ff",
                "once",
            ],
            None,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let o = baton(
        &[
            "events",
            "tail",
            "--data-dir",
            d,
            "--topic",
            "t",
            "--from-start",
            "--no-follow",
        ],
        None,
    );
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let o = baton(
        &[
            "events",
            "tail",
            "--data-dir",
            dir.path().join("nope").to_str().unwrap(),
            "--topic",
            "x",
            "--no-follow",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not an event log directory"),
        "{}",
        stderr(&o)
    );
    let o = baton(
        &[
            "events",
            "publish",
            "--data-dir",
            dir.path().to_str().unwrap(),
            "--topic",
            "t",
            "--id",
            "zz",
            "x",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a hex event id"), "{}", stderr(&o));
}
