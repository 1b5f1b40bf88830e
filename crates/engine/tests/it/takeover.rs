//! Runs changing hands between engines, as instances sharing a state store do:
//! `adopt` resumes another engine's runs from their records, `release` drops runs
//! whose ownership moved away.

use std::sync::Arc;

use baton_engine::store::{
    Embedded, EmbeddedOptions, Record, RunId, RunStatus, StateStore, TaskStatus,
};
use baton_engine::{Engine, Error, Options};
use baton_events::MemoryLog;

use crate::{spec, task_reaches};

const SLOW: &str = r#"
agents:
  w: { type: command, command: ["sh", "-c", "sleep 0.3"] }
  s: { type: command, command: ["sleep", "30"] }
tasks:
  - { id: a, agent: w }
  - { id: b, agent: w, depends_on: [a] }
  - { id: c, agent: s, depends_on: [b] }
"#;

const QUICK: &str = r#"
agents:
  w: { type: command, command: ["true"] }
tasks:
  - { id: a, agent: w }
  - { id: b, agent: w, depends_on: [a] }
  - { id: c, agent: w, depends_on: [b] }
"#;

#[tokio::test]
async fn a_run_adopted_from_another_engines_records_resumes_and_completes() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    // The first engine records a run and stops with its first task done.
    let store = Embedded::open(dir.path(), EmbeddedOptions::default()).unwrap();
    let (engine, first) =
        Engine::build(Options::default(), log.clone(), Some(Arc::new(store))).unwrap();
    let task = tokio::spawn(engine.run());
    let run = first
        .submit(spec(SLOW), serde_json::json!({}))
        .await
        .unwrap();
    task_reaches(&first, run, 0, TaskStatus::Succeeded).await;
    first.shutdown().await.unwrap();
    task.await.unwrap();
    let records = Embedded::open(dir.path(), EmbeddedOptions::default())
        .unwrap()
        .load()
        .unwrap();

    // A second engine, numbered as one instance of several, takes the run over.
    let options = Options {
        node: Some(5),
        ..Options::default()
    };
    let (engine, second) = Engine::build::<_, Embedded>(options, log, None).unwrap();
    tokio::spawn(engine.run());
    assert_eq!(second.adopt(records.clone()).await.unwrap(), [run]);
    // Adopting what it already drives changes nothing.
    assert!(second.adopt(records).await.unwrap().is_empty());
    let view = second.status(run).await.unwrap();
    assert_eq!(view.task_states[0].status, TaskStatus::Succeeded);
    assert_eq!(view.task_states[0].attempt, 1);
    // Its own runs carry its instance number.
    let own = second
        .submit(spec(QUICK), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!((own.0 >> 12) & 0x3ff, 5);
    assert_eq!(second.wait(own).await.unwrap().status, RunStatus::Completed);
    // The adopted run goes on where it stopped: `c` sleeps, so cancel to end it.
    task_reaches(&second, run, 2, TaskStatus::Running).await;
    let view = second.status(run).await.unwrap();
    assert_eq!(view.task_states[0].attempt, 1, "a did not run again");
    second.cancel(run).await.unwrap();
    assert_eq!(second.wait(run).await.unwrap().status, RunStatus::Cancelled);
    second.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_released_run_is_forgotten_and_its_waiters_are_told_it_moved() {
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let (engine, handle) = Engine::build::<_, Embedded>(Options::default(), log, None).unwrap();
    tokio::spawn(engine.run());
    let run = handle
        .submit(spec(SLOW), serde_json::json!({}))
        .await
        .unwrap();
    let waiting = {
        let handle = handle.clone();
        tokio::spawn(async move { handle.wait(run).await })
    };
    task_reaches(&handle, run, 0, TaskStatus::Running).await;
    assert_eq!(handle.release(vec![run]).await.unwrap(), 1);
    assert!(matches!(waiting.await.unwrap(), Err(Error::Moved(r)) if r == run));
    assert!(matches!(
        handle.status(run).await,
        Err(Error::UnknownRun(_))
    ));
    assert!(handle.active().await.unwrap().is_empty());
    // Releasing again, or an unknown run, is a no-op.
    assert_eq!(handle.release(vec![run]).await.unwrap(), 0);
    // The engine goes on with other work (the released run's agent call ends unnoticed).
    let next = handle
        .submit(spec(QUICK), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(
        handle.wait(next).await.unwrap().status,
        RunStatus::Completed
    );
    handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_run_that_ended_elsewhere_is_reported_from_its_records() {
    // The history another instance left: three tasks succeeded, then the run.
    let spec = spec(QUICK);
    let run = RunId(1_700_000_000_000 << 22);
    let mut records = vec![
        Record::Workflow {
            key: spec.key(),
            document: spec.document().to_owned(),
        },
        Record::RunCreated {
            run,
            workflow: spec.key(),
            input: "{}".into(),
            at_ms: 1_700_000_000_000,
            rerun_of: None,
        },
    ];
    for task in 0..3 {
        for status in [TaskStatus::Dispatched, TaskStatus::Succeeded] {
            records.push(Record::Task {
                run,
                task,
                status,
                attempt: 1,
                agent: 0,
                at_us: u64::from(task) * 1000,
                detail: (status == TaskStatus::Succeeded).then(|| format!("{{\"n\":{task}}}")),
            });
        }
    }
    records.push(Record::Run {
        run,
        status: RunStatus::Completed,
        at_ms: 1_700_000_000_003,
        reason: None,
    });

    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let (engine, handle) = Engine::build::<_, Embedded>(Options::default(), log, None).unwrap();
    tokio::spawn(engine.run());
    assert!(matches!(
        handle.status(run).await,
        Err(Error::UnknownRun(_))
    ));
    // Finished runs are not taken over by `adopt`, only learned by `remember`.
    assert!(handle.adopt(records.clone()).await.unwrap().is_empty());
    assert_eq!(handle.remember(records.clone()).await.unwrap(), [run]);
    assert!(handle.remember(records).await.unwrap().is_empty());
    let view = handle.status(run).await.unwrap();
    assert_eq!(view.summary.status, RunStatus::Completed);
    assert_eq!(view.summary.tasks.succeeded, 3);
    assert_eq!(
        view.task_states[2].output,
        Some(serde_json::json!({"n": 2}))
    );
    assert!(handle.active().await.unwrap().is_empty());
    assert_eq!(handle.wait(run).await.unwrap().status, RunStatus::Completed);
    handle.shutdown().await.unwrap();
}

/// Three tasks of a second each, for runs that are still going when a test
/// moves them.
#[cfg(feature = "postgres")]
const STEPS: &str = r#"
agents:
  w: { type: command, command: ["sleep", "1"] }
tasks:
  - { id: a, agent: w }
  - { id: b, agent: w, depends_on: [a] }
  - { id: c, agent: w, depends_on: [b] }
"#;

/// A cluster member on `store` with its engine started.
#[cfg(feature = "postgres")]
async fn member(
    store: baton_engine::store::PostgresOptions,
    options: baton_engine::cluster::Options,
    log: Arc<MemoryLog>,
) -> (baton_engine::cluster::Member, baton_engine::Handle) {
    use baton_engine::store::Postgres;
    let member =
        baton_engine::cluster::Member::new(Arc::new(Postgres::open(store).await.unwrap()), options);
    let (engine, handle) = Engine::build(
        member.engine_options(Options::default()),
        log,
        Some(member.store().clone()),
    )
    .unwrap();
    tokio::spawn(engine.run());
    (member, handle)
}

/// The options of a member that does not take runs over and stops when it
/// loses one: the instance that is made to fail.
#[cfg(feature = "postgres")]
fn failing() -> baton_engine::cluster::Options {
    baton_engine::cluster::Options {
        on_loss: baton_engine::cluster::OnLoss::Stop,
        take_over: false,
        ..baton_engine::cluster::Options::default()
    }
}

/// A member that takes runs over, serving until the returned `Notify` is told.
#[cfg(feature = "postgres")]
async fn taking_over(
    store: baton_engine::store::PostgresOptions,
    log: Arc<MemoryLog>,
) -> (
    baton_engine::Handle,
    Arc<tokio::sync::Notify>,
    tokio::task::JoinHandle<Result<(), baton_engine::cluster::Lost>>,
) {
    let (member, handle) = member(store, baton_engine::cluster::Options::default(), log).await;
    let stop = Arc::new(tokio::sync::Notify::new());
    let serving = {
        let (handle, stop) = (handle.clone(), stop.clone());
        tokio::spawn(async move { member.run(&handle, stop.notified()).await })
    };
    (handle, stop, serving)
}

/// What the failed member reports, and that the run ended on the other.
#[cfg(feature = "postgres")]
async fn moved(
    lost: Result<(), baton_engine::cluster::Lost>,
    run: RunId,
    first: baton_engine::Handle,
    second: baton_engine::Handle,
) {
    use std::time::Duration;

    use baton_engine::cluster::Lost;
    assert!(
        matches!(&lost, Err(Lost::Runs(runs)) if runs == &[run])
            || matches!(&lost, Err(Lost::Lease(_))),
        "{lost:?}"
    );
    let _ = first.shutdown().await;
    let summary = tokio::time::timeout(Duration::from_secs(60), second.wait(run))
        .await
        .expect("the run ends on the second instance")
        .unwrap();
    assert_eq!(summary.status, RunStatus::Completed);
    assert_eq!(summary.tasks.succeeded, 3, "{summary:?}");
}

/// Two engines as instances of a cluster on one PostgreSQL schema: the first
/// (with `baton run`'s rules) stops renewing its lease, as if frozen; the second
/// (a server's rules) takes its run over and finishes it; the first, back, learns
/// that it lost it.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_takes_over_the_runs_of_an_instance_whose_lease_expired() {
    use std::time::Duration;

    use baton_engine::store::PostgresOptions;
    use baton_engine::store::testing::Schema;

    let Some(schema) = Schema::new("member") else {
        return;
    };
    let options = |name: &str| PostgresOptions {
        lease_ttl: Duration::from_secs(3),
        ..schema.options(name)
    };
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let (first_member, first) = member(options("first"), failing(), log.clone()).await;
    let run = first
        .submit(spec(STEPS), serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!((run.0 >> 12) & 0x3ff, u64::from(first_member.node()));
    task_reaches(&first, run, 0, TaskStatus::Running).await;

    // The first instance's lease ends, as if it had frozen.
    schema
        .execute(&format!(
            "UPDATE instances SET lease_until = now() - interval '1 second' WHERE id = {}",
            first_member.store().instance()
        ))
        .await;
    let (second, stop, serving) = taking_over(options("second"), log).await;
    crate::eventually("the run taken over", Duration::from_secs(30), || async {
        second.status(run).await.ok()
    })
    .await;
    let lost = tokio::time::timeout(
        Duration::from_secs(30),
        first_member.run(&first, std::future::pending()),
    )
    .await
    .expect("the first instance learns that it lost its run");
    moved(lost, run, first, second.clone()).await;
    stop.notify_one();
    serving.await.unwrap().unwrap();
    second.shutdown().await.unwrap();
}

/// PostgreSQL stops answering one instance (its connections stay open, as through
/// a network partition or a frozen proxy) for longer than its lease, while it
/// drives a run: the other instance takes the run over and finishes it. When the
/// first hears from the database again, its writes are refused (fencing) and it
/// learns that it lost the run: the run is never driven by both.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_moves_when_postgres_stops_answering_its_instance() {
    use std::time::Duration;

    use baton_engine::store::PostgresOptions;
    use baton_engine::store::testing::Schema;
    use baton_events::testing::proxy::{Proxy, upstream};

    let Some(schema) = Schema::new("partition") else {
        return;
    };
    let proxy = Proxy::start(upstream(&schema.url)).await;
    let options = |name: &str| PostgresOptions {
        lease_ttl: Duration::from_secs(3),
        ..schema.options(name)
    };
    let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
    let through_proxy = PostgresOptions {
        url: proxy.url(&schema.url),
        ..options("first")
    };
    let (first_member, first) = member(through_proxy, failing(), log.clone()).await;
    let first_serving = {
        let first = first.clone();
        tokio::spawn(async move { first_member.run(&first, std::future::pending()).await })
    };
    let run = first
        .submit(spec(STEPS), serde_json::json!({}))
        .await
        .unwrap();
    task_reaches(&first, run, 0, TaskStatus::Running).await;

    proxy.pause();
    let (second, stop, serving) = taking_over(options("second"), log).await;
    crate::eventually("the run taken over", Duration::from_secs(30), || async {
        second.status(run).await.ok()
    })
    .await;
    // The partition heals: the first instance's pending writes reach the database,
    // which refuses them, and it stops driving the run.
    proxy.resume();
    let lost = tokio::time::timeout(Duration::from_secs(60), first_serving)
        .await
        .expect("the first instance learns that it lost its run")
        .unwrap();
    moved(lost, run, first, second.clone()).await;
    stop.notify_one();
    serving.await.unwrap().unwrap();
    second.shutdown().await.unwrap();
}
