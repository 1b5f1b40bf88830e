//! Fuzzing the state journal's decoder and recovery on stable Rust: a real
//! journal is written and closed, then gets bytes flipped, deleted, inserted
//! or cut. Opening it must answer (the store, or `Corrupt` naming the
//! damage), never panic, and a store that opens must load. `PROPTEST_CASES`
//! sets the cases (docs/operations.md).

use baton_engine::store::{Embedded, EmbeddedOptions, RunStatus, StateStore as _, TaskStatus};
use baton_events::testing::mutate::{apply, cases, edit};
use proptest::prelude::*;

use super::store::{created, run_status, task, workflow};

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        fsync: false,
        // Recovery is what is fuzzed, not compaction's rewrite of it.
        compact_at_open: false,
        ..EmbeddedOptions::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case writes and reopens a store: fewer than the default 256.
        cases: cases(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_damaged_journal_is_refused_or_recovered_never_a_panic(
        edits in prop::collection::vec(edit(&[0, 0xff]), 1..6),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        runtime.block_on(async {
            let store = Embedded::open(dir.path(), options()).unwrap();
            let mut records = vec![workflow(1)];
            for run in 0..4 {
                records.push(created(run, 1));
                records.extend((0..5).map(|t| task(run, t, TaskStatus::Succeeded)));
                records.push(run_status(run, RunStatus::Completed));
            }
            let seq = store.append(records).unwrap();
            store.sync(seq).await.unwrap();
            store.close().await.unwrap();
        });
        let journal = dir.path().join("journal.log");
        let mut bytes = std::fs::read(&journal).unwrap();
        apply(&mut bytes, &edits);
        std::fs::write(&journal, bytes).unwrap();
        runtime.block_on(async {
            match Embedded::open(dir.path(), options()) {
                Ok(store) => {
                    let loaded = store.load().unwrap();
                    assert!(loaded.len() <= 1 + 4 * 7, "more records than were written");
                    store.close().await.unwrap();
                }
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        });
    }
}
