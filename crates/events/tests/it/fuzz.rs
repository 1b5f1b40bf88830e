//! Fuzzing the disk log's record decoder and its recovery on stable Rust:
//! a real log is written and closed, then its segment files get bytes
//! flipped, deleted, inserted or cut, as a bad disk or a stray write would
//! leave them. `check` and `open` must answer (a report, a log, or an error
//! naming the damage), never panic, and a log that opens must read back
//! whole. `PROPTEST_CASES` sets the cases (docs/operations.md).

use std::path::{Path, PathBuf};

use baton_events::disk::check;
use baton_events::testing::mutate::{Edit, apply, cases, edit};
use baton_events::{DiskLog, DiskOptions, Event, EventLog as _, Fsync};
use proptest::prelude::*;
use proptest::sample::Index;

fn options() -> DiskOptions {
    DiskOptions {
        fsync: Fsync::Never,
        // Small segments: damage lands in older and newest segments alike.
        segment_bytes: 4 << 10,
        maintenance_interval: None,
        ..DiskOptions::default()
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = walk(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn damage(path: &Path, edits: &[Edit]) {
    let mut bytes = std::fs::read(path).unwrap();
    apply(&mut bytes, edits);
    std::fs::write(path, bytes).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case writes and reopens a log: fewer than the default 256.
        cases: cases(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn damaged_segments_are_reported_or_refused_never_a_panic(
        which in any::<Index>(),
        edits in prop::collection::vec(edit(&[0, 0xff]), 1..6),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        runtime.block_on(async {
            let log = DiskLog::open(dir.path(), options()).await.unwrap();
            for batch in 0..6u32 {
                let events = (0..20u32)
                    .map(|i| Event::new("t", format!("k{}", i % 5), format!("{{\"n\": {}}}", batch * 20 + i)))
                    .collect();
                log.publish("fuzz", events).await.unwrap();
            }
            log.close().await.unwrap();
        });
        let files = segments(dir.path());
        prop_assert!(files.len() >= 2, "{files:?}");
        damage(&files[which.index(files.len())], &edits);
        match check(dir.path()) {
            Ok(reports) => prop_assert!(!reports.is_empty()),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        runtime.block_on(async {
            match DiskLog::open(dir.path(), options()).await {
                Ok(log) => {
                    // What opens reads back, every partition to its end.
                    for topic in log.topics().await.unwrap() {
                        for (i, p) in topic.partitions.iter().enumerate() {
                            let mut from = p.start;
                            while from < p.end {
                                let records = log.read(&topic.name, i as u32, from, 1000).await.unwrap();
                                let Some(last) = records.last() else { break };
                                from = last.offset.offset + 1;
                            }
                        }
                    }
                    log.close().await.unwrap();
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        });
    }
}
