use std::process::Output;

use serde_json::Value;

use crate::{baton, stderr, stdout};

/// Runs `baton events SUB --data-dir DIR ARGS...`.
fn events(sub: &str, dir: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut all = vec!["events", sub, "--data-dir", dir];
    all.extend_from_slice(args);
    baton(&all, stdin)
}

#[test]
fn publish_then_tail_groups_and_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("events");
    let d = d.to_str().unwrap();
    let o = events(
        "publish",
        d,
        &[
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
    let o = events(
        "publish",
        d,
        &["--topic", "orders", "--key", "k1"],
        Some("{\"n\":2}\n{\"n\":3}\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o).lines().count(),
        2,
        "one offset per published line"
    );

    let o = events(
        "tail",
        d,
        &["--topic", "orders", "--from-start", "--no-follow", "--json"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let all: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(all.len(), 3);
    // One key, one partition: published order is kept.
    let ns: Vec<i64> = all
        .iter()
        .map(|e| e["payload"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [1, 2, 3]);
    assert_eq!(all[0]["type"], "created");
    assert_eq!(all[1]["key"], "k1");

    let o = events(
        "tail",
        d,
        &["--topic", "orders", "--from-start", "--count", "2"],
        None,
    );
    assert_eq!(stdout(&o).lines().count(), 2);

    for sub in ["groups", "dlq"] {
        let o = events(sub, d, &["--topic", "orders"], None);
        assert_eq!(o.status.code(), Some(0), "{sub}: {}", stderr(&o));
    }
}

#[test]
fn a_retried_publish_with_the_same_id_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("events");
    let d = d.to_str().unwrap();
    for _ in 0..2 {
        let o = events(
            "publish",
            d,
            &["--topic", "t", "--id", "00ff", "once"],
            None,
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let o = events(
        "tail",
        d,
        &["--topic", "t", "--from-start", "--no-follow"],
        None,
    );
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let o = events(
        "tail",
        missing.to_str().unwrap(),
        &["--topic", "x", "--no-follow"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("not an event log directory"),
        "{}",
        stderr(&o)
    );
    let o = events(
        "publish",
        dir.path().to_str().unwrap(),
        &["--topic", "t", "--id", "zz", "x"],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not a hex event id"), "{}", stderr(&o));
}

/// A flipped byte with acknowledged events after it (here in an older
/// segment; the newest is the events crate's test): the log does not open
/// (naming `check` and `repair`), `check` shows where and exits 1, `repair`
/// truncates there keeping what it cut off, and the log opens again.
#[test]
fn a_damaged_log_is_checked_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("events");
    let d = d.to_str().unwrap();
    let lines: String = (0..50).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    for _ in 0..4 {
        let o = events("publish", d, &["--topic", "t", "--key", "k"], Some(&lines));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    // Each command writes a segment of its own: damage the first.
    let segment = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .min()
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&segment, &bytes).unwrap();

    let o = events("groups", d, &["--topic", "t"], None);
    assert_ne!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("baton events repair"), "{}", stderr(&o));

    let o = events("check", d, &[], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).contains("DAMAGED"), "{}", stdout(&o));
    assert!(stdout(&o).contains("checksum mismatch"), "{}", stdout(&o));
    let o = events("check", d, &["--json"], None);
    let report: Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(report["damage"]["torn_tail"], false, "{report}");

    let o = events("repair", d, &[], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("kept in"), "{}", stdout(&o));
    assert!(std::path::Path::new(d).join("damaged").is_dir());
    let o = events("check", d, &[], None);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = events("groups", d, &["--topic", "t"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = events("repair", d, &[], None);
    assert!(stderr(&o).contains("nothing to repair"), "{}", stderr(&o));
}

/// `baton events redrive`: a topic's dead letters go back to it, once; the
/// letters stay in `TOPIC.dlq` for the record.
#[test]
fn dead_letters_are_redriven() {
    use baton_events::{DiskLog, DiskOptions, Event, EventLog as _, TopicOptions};
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("events");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = DiskLog::open(&d, DiskOptions::default()).await.unwrap();
        let options = TopicOptions {
            visibility_timeout: Duration::from_millis(20),
            max_deliveries: 1,
            ..TopicOptions::default()
        };
        log.create_topic("orders", options).await.unwrap();
        let batch = (0..3).map(|i| Event::new("order", "k", format!("{i}")));
        log.publish("orders", batch.collect()).await.unwrap();
        assert_eq!(
            log.poll("orders", "billing", "m", 10, Duration::ZERO)
                .await
                .unwrap()
                .len(),
            3
        );
        tokio::time::sleep(Duration::from_millis(40)).await;
        // The second delivery would be one too many: dead letters.
        assert!(
            log.poll("orders", "billing", "m", 10, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
        log.close().await.unwrap();
    });
    let d = d.to_str().unwrap();
    let o = events("redrive", d, &["--topic", "orders", "--json"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let done: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(done, serde_json::json!({"topic": "orders", "moved": 3}));
    let o = events("redrive", d, &["--topic", "orders"], None);
    assert!(
        stderr(&o).contains("no dead letters to redrive"),
        "{}",
        stderr(&o)
    );
    let o = events("dlq", d, &["--topic", "orders"], None);
    assert_eq!(stdout(&o).lines().count(), 3, "{}", stdout(&o));
    let o = events(
        "tail",
        d,
        &["--topic", "orders", "--from-start", "--no-follow", "--json"],
        None,
    );
    let back: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|e: &Value| e["headers"]["redrive.group"] == "billing")
        .collect();
    assert_eq!(back.len(), 3, "{}", stdout(&o));
    // A topic without dead letters has nothing to redrive, and gets no `.dlq`.
    let o = events("redrive", d, &["--topic", "quiet"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = events("groups", d, &["--topic", "quiet.dlq"], None);
    assert!(stderr(&o).contains("no topic named"), "{}", stderr(&o));
}
