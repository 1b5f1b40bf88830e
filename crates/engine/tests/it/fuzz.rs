//! Fuzzing the state journal's decoder and recovery on stable Rust: a real
//! journal is written and closed, then gets bytes flipped, deleted, inserted
//! or cut. Opening it must answer (the store, or `Corrupt` naming the
//! damage), never panic, and a store that opens must load. `PROPTEST_CASES`
//! sets the cases (docs/operations.md).

use baton_engine::store::{Embedded, EmbeddedOptions, RunStatus, StateStore as _, TaskStatus};
use proptest::prelude::*;
use proptest::sample::Index;

use super::store::{created, run_status, task, workflow};

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        fsync: false,
        // Recovery is what is fuzzed, not compaction's rewrite of it.
        compact_at_open: false,
        ..EmbeddedOptions::default()
    }
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(Index, u8),
    Delete(Index),
    Insert(Index, u8),
    Cut(Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Flip(i, b)),
        1 => any::<Index>().prop_map(Edit::Delete),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => any::<Index>().prop_map(Edit::Cut),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        // Each case writes and reopens a store: fewer than the default 256.
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
        ..ProptestConfig::default()
    })]

    #[test]
    fn a_damaged_journal_is_refused_or_recovered_never_a_panic(
        edits in prop::collection::vec(edit(), 1..6),
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
        for e in &edits {
            if bytes.is_empty() {
                break;
            }
            match *e {
                Edit::Flip(i, b) => {
                    let at = i.index(bytes.len());
                    bytes[at] ^= b | 1;
                }
                Edit::Delete(i) => {
                    bytes.remove(i.index(bytes.len()));
                }
                Edit::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), b),
                Edit::Cut(i) => bytes.truncate(i.index(bytes.len())),
            }
        }
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
