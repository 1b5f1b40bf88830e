//! The state-store contract, one suite run against every backend: the embedded
//! journal always, PostgreSQL with the `postgres` feature (its URL in
//! `BATON_TEST_POSTGRES_URL`; each test in a schema of its own, dropped at the end).
//!
//! What the contract leaves to the backend is checked loosely: the embedded store
//! returns every retained record in global append order, PostgreSQL groups them
//! by run and leaves finished runs out; both keep each run's records in append
//! order, after the workflow documents they refer to.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use baton_engine::store::{
    Embedded, EmbeddedOptions, Error, Record, RunId, RunStatus, StateStore, TaskStatus,
};

// ----- records ----------------------------------------------------------------------

pub fn workflow(key: u128) -> Record {
    Record::Workflow {
        key,
        document: format!("{{\"tasks\":[],\"key\":{key},\"z\":1,\"a\":2}}"),
    }
}

pub fn created(run: u64, workflow: u128) -> Record {
    Record::RunCreated {
        run: RunId(run),
        workflow,
        input: format!("{{\"run\":{run},\"text\":\"naïve ☃\"}}"),
        at_ms: 1_700_000_000_000 + run,
        rerun_of: None,
    }
}

pub fn task(run: u64, task: u32, status: TaskStatus) -> Record {
    let detail = match status {
        TaskStatus::Succeeded => Some(format!("{{\"task\":{task}}}")),
        TaskStatus::Failed => Some(format!("task {task} failed: exit 1")),
        _ => None,
    };
    Record::Task {
        run: RunId(run),
        task,
        status,
        attempt: 1,
        agent: (task % 3) as u16,
        at_us: u64::from(task) * 1_000,
        detail,
    }
}

pub fn run_status(run: u64, status: RunStatus) -> Record {
    Record::Run {
        run: RunId(run),
        status,
        at_ms: 1_700_000_001_000 + run,
        reason: (status == RunStatus::Failed).then(|| "task t1 failed".to_owned()),
    }
}

/// A run's whole life: created, its tasks ready → running → succeeded.
fn life(run: u64, key: u128, tasks: u32) -> Vec<Record> {
    let mut records = vec![created(run, key)];
    for t in 0..tasks {
        for status in [
            TaskStatus::Ready,
            TaskStatus::Running,
            TaskStatus::Succeeded,
        ] {
            records.push(task(run, t, status));
        }
    }
    records
}

/// Checks `loaded` against everything `appended` (in append order), as the
/// contract allows: an unfinished run comes back whole and in order; a finished
/// one whole, reduced to its creation and final status, or not at all; every
/// workflow before the first run that uses it; nothing that was not appended.
pub fn assert_history(loaded: &[Record], appended: &[Record]) {
    let mut by_run: HashMap<RunId, Vec<&Record>> = HashMap::new();
    for record in appended {
        if let Some(run) = record.run() {
            by_run.entry(run).or_default().push(record);
        }
    }
    let mut loaded_by_run: HashMap<RunId, Vec<&Record>> = HashMap::new();
    let mut documents = HashSet::new();
    for record in loaded {
        match record {
            Record::Workflow { key, .. } => {
                assert!(
                    appended.contains(record),
                    "workflow {key:x} was never appended"
                );
                documents.insert(*key);
            }
            Record::RunCreated { run, workflow, .. } => {
                assert!(
                    documents.contains(workflow),
                    "run {run} comes before its workflow {workflow:x}"
                );
                loaded_by_run.entry(*run).or_default().push(record);
            }
            _ => {
                let run = record.run().expect("a run's record");
                loaded_by_run.entry(run).or_default().push(record);
            }
        }
    }
    for (run, records) in &by_run {
        let got = loaded_by_run.remove(run).unwrap_or_default();
        let finished = records
            .iter()
            .rev()
            .find_map(|r| match r {
                Record::Run { status, .. } => Some(status.is_final()),
                _ => None,
            })
            .unwrap_or(false);
        if !finished {
            assert_eq!(&got, records, "unfinished run {run}");
        } else if got.len() != records.len() && !got.is_empty() {
            // Compacted: its creation, each task's last record, its end.
            let last = records.len() - 1;
            let reduced: Vec<_> = records
                .iter()
                .enumerate()
                .filter(|&(i, r)| {
                    i == 0
                        || i == last
                        || matches!(r, Record::Task { task, .. } if !records[i + 1..].iter().any(
                            |later| matches!(later, Record::Task { task: t, .. } if t == task)
                        ))
                })
                .map(|(_, r)| *r)
                .collect();
            assert_eq!(got, reduced, "finished run {run}, reduced");
        } else if !got.is_empty() {
            assert_eq!(&got, records, "finished run {run}");
        }
    }
    assert!(
        loaded_by_run.is_empty(),
        "loaded runs that were never appended: {:?}",
        loaded_by_run.keys()
    );
}

// ----- backends ---------------------------------------------------------------------

/// Where a backend's stores live; every `open` opens the same place again (for
/// PostgreSQL: the same schema, as the same instance name).
pub trait Backend: Send + Sync {
    /// The store.
    type Store: StateStore;
    /// Opens the store.
    fn open(&self) -> impl std::future::Future<Output = Self::Store> + Send;
}

pub struct EmbeddedBackend(tempfile::TempDir);

impl EmbeddedBackend {
    pub fn new() -> EmbeddedBackend {
        EmbeddedBackend(tempfile::tempdir().unwrap())
    }
}

impl Backend for EmbeddedBackend {
    type Store = Embedded;
    async fn open(&self) -> Embedded {
        let options = EmbeddedOptions {
            fsync: false,
            ..EmbeddedOptions::default()
        };
        Embedded::open(self.0.path(), options).unwrap()
    }
}

#[cfg(feature = "postgres")]
pub use pg::{PgBackend, Schema};

#[cfg(feature = "postgres")]
mod pg {
    use std::time::Duration;

    pub use baton_engine::store::testing::Schema;
    use baton_engine::store::{Postgres, PostgresOptions};

    use super::Backend;

    pub struct PgBackend {
        pub schema: Schema,
    }

    impl PgBackend {
        pub fn new(test: &str) -> Option<PgBackend> {
            Some(PgBackend {
                schema: Schema::new(test)?,
            })
        }
    }

    impl Backend for PgBackend {
        type Store = Postgres;
        async fn open(&self) -> Postgres {
            let options = PostgresOptions {
                lease_ttl: Duration::from_secs(30),
                ..self.schema.options("contract")
            };
            Postgres::open(options).await.unwrap()
        }
    }
}

/// Runs each named contract test against every backend.
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(&super::EmbeddedBackend::new()).await;
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = super::PgBackend::new(stringify!($name)) else {
                        return;
                    };
                    super::$name(&backend).await;
                }
            )*
        }
    };
}

contract!(
    an_empty_store_loads_nothing_and_numbers_from_zero,
    records_come_back_in_order_after_a_reopen,
    numbering_continues_after_a_reopen,
    sequence_numbers_are_gapless_across_threads,
    sync_resolves_once_written_and_the_record_survives_a_reopen,
    after_close_append_fails_and_sync_fails_beyond_what_was_written,
    close_wakes_waiters_for_numbers_never_appended,
);

async fn an_empty_store_loads_nothing_and_numbers_from_zero<B: Backend>(backend: &B) {
    let store = backend.open().await;
    assert_eq!(store.load().unwrap(), vec![]);
    assert_eq!(store.append(vec![]).unwrap(), 0);
    store.sync(0).await.unwrap();
    store.close().await.unwrap();
    let store = backend.open().await;
    assert_eq!(store.load().unwrap(), vec![]);
    store.close().await.unwrap();
}

/// Three runs interleaved over several appends, one of which finishes and one
/// fails over to compensation: back after a reopen, each run in order.
async fn records_come_back_in_order_after_a_reopen<B: Backend>(backend: &B) {
    let store = backend.open().await;
    let mut appended = vec![workflow(1), workflow(2)];
    let (a, b, c) = (life(10, 1, 4), life(11, 2, 3), life(12, 1, 2));
    let mut seq = store.append(appended.clone()).unwrap();
    assert_eq!(seq, 2);
    // Interleave the runs' records in batches of various sizes.
    let mut cursors = [a.iter(), b.iter(), c.iter()];
    let mut size = 1;
    loop {
        let mut batch = Vec::new();
        for cursor in &mut cursors {
            batch.extend(cursor.by_ref().take(size).cloned());
        }
        if batch.is_empty() {
            break;
        }
        size = size % 4 + 1;
        seq = store.append(batch.clone()).unwrap();
        appended.extend(batch);
        assert_eq!(seq, appended.len() as u64);
    }
    let ends = vec![
        run_status(10, RunStatus::Completed),
        run_status(11, RunStatus::Compensating),
        run_status(12, RunStatus::Paused),
        task(11, 0, TaskStatus::Compensated),
    ];
    seq = store.append(ends.clone()).unwrap();
    appended.extend(ends);
    assert_eq!(seq, appended.len() as u64);
    store.sync(seq).await.unwrap();
    store.close().await.unwrap();

    let store = backend.open().await;
    let loaded = store.load().unwrap();
    assert_history(&loaded, &appended);
    // Both unfinished runs are there in full.
    for run in [11, 12] {
        assert!(loaded.contains(&created(run, if run == 11 { 2 } else { 1 })));
    }
    // And load gives the same again.
    assert_eq!(store.load().unwrap(), loaded);
    store.close().await.unwrap();
}

async fn numbering_continues_after_a_reopen<B: Backend>(backend: &B) {
    let store = backend.open().await;
    let mut appended = vec![workflow(3)];
    appended.extend(life(20, 3, 2));
    store.append(appended.clone()).unwrap();
    store.close().await.unwrap();

    let store = backend.open().await;
    let loaded = store.load().unwrap();
    assert_eq!(loaded, appended);
    let more = vec![
        task(20, 2, TaskStatus::Ready),
        task(20, 2, TaskStatus::Running),
    ];
    assert_eq!(
        store.append(more.clone()).unwrap(),
        loaded.len() as u64 + 2,
        "the first record appended after a reopen follows those loaded"
    );
    appended.extend(more);
    store.close().await.unwrap();

    let store = backend.open().await;
    assert_eq!(store.load().unwrap(), appended);
    assert_eq!(store.append(vec![]).unwrap(), appended.len() as u64);
    store.close().await.unwrap();
}

/// Four threads append at once, each for its own run: the numbers handed out
/// are 1..=n without a gap, and each run's records come back in number order.
async fn sequence_numbers_are_gapless_across_threads<B: Backend>(backend: &B) {
    let store = Arc::new(backend.open().await);
    let mut setup = vec![workflow(4)];
    setup.extend((0..4).map(|t| created(30 + t, 4)));
    let base = store.append(setup.clone()).unwrap();
    let mut numbered: Vec<(u64, Record)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|thread| {
                let store = &store;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..150u32 {
                        let records: Vec<Record> = (0..=i % 3)
                            .map(|j| task(30 + thread, i * 4 + j, TaskStatus::Ready))
                            .collect();
                        let last = store.append(records.clone()).unwrap();
                        let first = last + 1 - records.len() as u64;
                        mine.extend((first..=last).zip(records));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    numbered.sort_by_key(|(seq, _)| *seq);
    let seqs: Vec<u64> = numbered.iter().map(|(seq, _)| *seq).collect();
    let want: Vec<u64> = (base + 1..=base + numbered.len() as u64).collect();
    assert_eq!(seqs, want);
    store.sync(*want.last().unwrap()).await.unwrap();
    store.close().await.unwrap();

    let mut appended = setup;
    appended.extend(numbered.into_iter().map(|(_, r)| r));
    let store = backend.open().await;
    assert_history(&store.load().unwrap(), &appended);
    store.close().await.unwrap();
}

async fn sync_resolves_once_written_and_the_record_survives_a_reopen<B: Backend>(backend: &B) {
    let store = backend.open().await;
    store.sync(0).await.unwrap();
    let mut appended = vec![workflow(5), created(40, 5)];
    let seq = store.append(appended.clone()).unwrap();
    store.sync(seq).await.unwrap();
    for i in 0..20 {
        let record = task(40, i, TaskStatus::Dispatched);
        appended.push(record.clone());
        let seq = store.append(vec![record]).unwrap();
        store.sync(seq).await.unwrap();
        // Already there: resolves at once.
        store.sync(seq).await.unwrap();
    }
    store.close().await.unwrap();
    let store = backend.open().await;
    assert_eq!(store.load().unwrap(), appended);
    store.close().await.unwrap();
}

async fn after_close_append_fails_and_sync_fails_beyond_what_was_written<B: Backend>(backend: &B) {
    let store = backend.open().await;
    let appended = vec![workflow(6), created(50, 6)];
    let seq = store.append(appended.clone()).unwrap();
    store.close().await.unwrap();
    assert!(matches!(
        store.append(vec![task(50, 0, TaskStatus::Ready)]),
        Err(Error::Closed(None))
    ));
    // Close wrote it.
    store.sync(seq).await.unwrap();
    assert!(matches!(
        store.sync(seq + 1).await,
        Err(Error::Closed(None))
    ));
    store.close().await.unwrap();
    let store = backend.open().await;
    assert_eq!(store.load().unwrap(), appended);
    store.close().await.unwrap();
}

async fn close_wakes_waiters_for_numbers_never_appended<B: Backend>(backend: &B) {
    let store = Arc::new(backend.open().await);
    let waiter = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.sync(5).await }
    });
    tokio::task::yield_now().await;
    store.close().await.unwrap();
    assert!(matches!(waiter.await.unwrap(), Err(Error::Closed(None))));
}

// ----- crashes ----------------------------------------------------------------------

/// The process dies mid-stream (here: its runtime stops, abandoning the writer and
/// its connections, without `close`): what the store then holds is a prefix of
/// the history that contains everything synced.
fn a_crash_keeps_a_prefix_holding_everything_synced<B: Backend>(
    backend: &B,
    rt: &tokio::runtime::Runtime,
) {
    let crashed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let store = crashed.block_on(backend.open());
    let mut appended = vec![workflow(7), created(60, 7)];
    store.append(appended.clone()).unwrap();
    let mut synced = 0;
    for batch in 0..400u32 {
        let records: Vec<Record> = (0..25)
            .map(|i| task(60, batch * 25 + i, TaskStatus::Running))
            .collect();
        appended.extend(records.iter().cloned());
        let seq = store.append(records).unwrap();
        if batch == 40 {
            crashed.block_on(store.sync(seq)).unwrap();
            synced = seq;
        }
    }
    drop(crashed);
    drop(store);

    let store = rt.block_on(backend.open());
    let loaded = store.load().unwrap();
    assert!(
        loaded.len() as u64 >= synced,
        "{} records survived, {synced} were synced",
        loaded.len()
    );
    assert_eq!(loaded[..], appended[..loaded.len()], "not a prefix");
    eprintln!(
        "{} of {} records survived the crash, {synced} synced",
        loaded.len(),
        appended.len()
    );
    rt.block_on(store.close()).unwrap();
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn embedded_a_crash_keeps_a_prefix_holding_everything_synced() {
    a_crash_keeps_a_prefix_holding_everything_synced(&EmbeddedBackend::new(), &runtime());
}

#[cfg(feature = "postgres")]
#[test]
fn postgres_a_crash_keeps_a_prefix_holding_everything_synced() {
    let Some(backend) = PgBackend::new("crash_prefix") else {
        return;
    };
    a_crash_keeps_a_prefix_holding_everything_synced(&backend, &runtime());
}
