//! PostgreSQL-specific behaviour: migrations, leases, fencing, takeover. The
//! store contract shared with the embedded store is in `tests/it/store.rs`.
//! Each test works in a schema of its own, dropped at the end.

use sqlx::Connection as _;

use super::testing::Schema;
use super::*;
use crate::store::TaskStatus;

/// What these tests add to the shared fixture.
trait Fixture {
    /// Options with a lease long enough never to expire during a test (the tests
    /// that need an expired lease end it with [`Fixture::expire`]).
    fn long_lease(&self, instance: &str) -> PostgresOptions;
    /// Opens an instance named `instance` with [`Fixture::long_lease`].
    async fn open(&self, instance: &str) -> Postgres;
    /// Ends `store`'s lease now, as if it had stopped renewing it long ago.
    async fn expire(&self, store: &Postgres);
}

impl Fixture for Schema {
    fn long_lease(&self, instance: &str) -> PostgresOptions {
        PostgresOptions {
            lease_ttl: Duration::from_secs(60),
            ..self.options(instance)
        }
    }

    async fn open(&self, instance: &str) -> Postgres {
        Postgres::open(self.long_lease(instance)).await.unwrap()
    }

    async fn expire(&self, store: &Postgres) {
        self.execute(&format!(
            "UPDATE instances SET lease_until = now() - interval '1 second' WHERE id = {}",
            store.instance()
        ))
        .await;
    }
}

fn workflow(key: u128) -> Record {
    Record::Workflow {
        key,
        document: format!("{{\"b\":1,\"a\":{key}}}"),
    }
}

fn created(run: u64, workflow: u128) -> Record {
    Record::RunCreated {
        run: RunId(run),
        workflow,
        input: format!("{{\"run\":{run}}}"),
        at_ms: run,
        rerun_of: None,
    }
}

fn task(run: u64, task: u32, status: TaskStatus) -> Record {
    Record::Task {
        run: RunId(run),
        task,
        status,
        attempt: 1,
        agent: 0,
        at_us: u64::from(task),
        detail: None,
    }
}

fn ended(run: u64, status: RunStatus) -> Record {
    Record::Run {
        run: RunId(run),
        status,
        at_ms: run + 1,
        reason: None,
    }
}

/// Appends and waits until written.
async fn write(store: &Postgres, records: Vec<Record>) {
    let seq = store.append(records).unwrap();
    store.sync(seq).await.unwrap();
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Postgres>();
}

#[test]
fn migration_versions_start_at_one_and_grow_by_one() {
    for (i, m) in MIGRATIONS.iter().enumerate() {
        assert_eq!(m.version, i as i64 + 1, "{}", m.description);
    }
    assert_eq!(Postgres::SCHEMA_VERSION, MIGRATIONS.len() as i64);
}

#[test]
fn schema_names_are_checked() {
    for good in ["baton", "_x", "a1_b2", &"a".repeat(63)] {
        assert!(check_schema_name(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "1a",
        "Baton",
        "a-b",
        "a b",
        "a\"b",
        "é",
        &"a".repeat(64),
    ] {
        let err = check_schema_name(bad).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_apply_once_even_to_instances_starting_together() {
    let Some(schema) = Schema::new("migrations") else {
        return;
    };
    // Four instances open a fresh schema at once: the advisory lock serializes them.
    let opened = futures_join_all((0..4).map(|i| {
        let options = schema.long_lease(&format!("node-{i}"));
        tokio::spawn(Postgres::open(options))
    }))
    .await;
    let stores: Vec<Postgres> = opened.into_iter().map(|s| s.unwrap().unwrap()).collect();
    let versions: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, description FROM schema_migrations ORDER BY version")
            .fetch_all(stores[0].pool())
            .await
            .unwrap();
    let want: Vec<(i64, String)> = MIGRATIONS
        .iter()
        .map(|m| (m.version, m.description.to_owned()))
        .collect();
    assert_eq!(versions, want);
    let applied: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, applied_at::text FROM schema_migrations")
            .fetch_all(stores[0].pool())
            .await
            .unwrap();
    for store in stores {
        store.close().await.unwrap();
    }

    // Opening again changes nothing.
    let store = schema.open("again").await;
    let again: Vec<(i64, String)> =
        sqlx::query_as("SELECT version, applied_at::text FROM schema_migrations")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(again, applied);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused() {
    let Some(schema) = Schema::new("newer") else {
        return;
    };
    schema.open("first").await.close().await.unwrap();
    let newer = Postgres::SCHEMA_VERSION + 1;
    schema
        .execute(&format!(
            "INSERT INTO schema_migrations (version, description) VALUES ({newer}, 'from the future')"
        ))
        .await;
    let err = Postgres::open(schema.long_lease("second"))
        .await
        .err()
        .unwrap();
    match &err {
        Error::SchemaTooNew {
            schema: name,
            found,
            known,
        } => {
            assert_eq!(name, &schema.name);
            assert_eq!(*found, newer);
            assert_eq!(*known, Postgres::SCHEMA_VERSION);
        }
        other => panic!("expected SchemaTooNew, got {other}"),
    }
    assert!(err.to_string().contains("upgrade baton"), "{err}");
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers_are_clear_errors() {
    let err = Postgres::open(PostgresOptions::new("mysql://x"))
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    let options = PostgresOptions {
        connect_timeout: Duration::from_secs(2),
        ..PostgresOptions::new("postgres://postgres@127.0.0.1:1/none")
    };
    let err = Postgres::open(options).await.err().unwrap();
    assert!(
        matches!(&err, Error::Database { what, .. } if what.contains("127.0.0.1:1/none")),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_round_trip_exactly_and_bad_json_is_refused_up_front() {
    let Some(schema) = Schema::new("values") else {
        return;
    };
    let store = schema.open("a").await;
    let run = (1 << 63) + 5; // the top bit set: stored as a negative bigint
    let records = vec![
        Record::Workflow {
            key: u128::MAX,
            document: "{ \"z\" : 1,\n \"a\": [\"naïve ☃ 🚀\", \"\\u0000\"], \"z\": 2 }".into(),
        },
        Record::RunCreated {
            run: RunId(run),
            workflow: u128::MAX,
            input: "\"ü\"".into(),
            at_ms: u64::MAX,
            rerun_of: None,
        },
        Record::Task {
            run: RunId(run),
            task: u32::MAX,
            status: TaskStatus::Failed,
            attempt: u32::MAX,
            agent: u16::MAX,
            at_us: u64::MAX,
            detail: Some("stderr: \0\u{1}binary 日本語".into()),
        },
        Record::Task {
            run: RunId(run),
            task: 0,
            status: TaskStatus::Succeeded,
            attempt: 0,
            agent: 0,
            at_us: 0,
            detail: Some(String::new()),
        },
        Record::Run {
            run: RunId(run),
            status: RunStatus::Compensating,
            at_ms: 0,
            reason: Some("why: \0".into()),
        },
    ];
    let seq = store.append(records.clone()).unwrap();
    for bad in [
        Record::Workflow {
            key: 1,
            document: "{not json".into(),
        },
        Record::RunCreated {
            run: RunId(9),
            workflow: 1,
            input: String::new(),
            at_ms: 0,
            rerun_of: None,
        },
        Record::RunCreated {
            run: RunId(9),
            workflow: 1,
            input: "\"a\0\"".into(),
            at_ms: 0,
            rerun_of: None,
        },
    ] {
        let err = store.append(vec![bad]).unwrap_err();
        assert!(
            matches!(&err, Error::Invalid { message, .. } if message.contains("not JSON")),
            "{err}"
        );
    }
    // Nothing of the refused batches was queued.
    assert_eq!(store.append(vec![]).unwrap(), seq);
    store.sync(seq).await.unwrap();
    assert_eq!(store.run_records(RunId(run)).await.unwrap(), records);
    let location = store.locate(RunId(run)).await.unwrap().unwrap();
    assert_eq!(location.owner, Some(store.instance()));
    assert_eq!(location.status, None, "compensating is not final");
    // The readable copy of the reason has no NUL.
    let reason: String = sqlx::query_scalar("SELECT reason FROM runs")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(reason, "why: \u{fffd}");
    store.close().await.unwrap();

    let store = schema.open("a").await;
    assert_eq!(store.load().unwrap(), records);
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_batches_appends_into_few_transactions() {
    let Some(schema) = Schema::new("batches") else {
        return;
    };
    let store = schema.open("a").await;
    write(&store, vec![workflow(1), created(1, 1)]).await;
    let xacts = || async {
        let n: i64 = sqlx::query_scalar(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        n
    };
    let before = xacts().await;
    let mut seq = 0;
    for i in 0..2_000 {
        seq = store.append(vec![task(1, i, TaskStatus::Running)]).unwrap();
    }
    store.sync(seq).await.unwrap();
    let records = store.run_records(RunId(1)).await.unwrap();
    assert_eq!(records.len(), 2 + 2_000);
    // Not a timing assertion: 2,000 appends take 2,000 transactions only if the
    // writer ran between every two, which a cheap append makes unlikely; other
    // tests share the database's counter, so allow for theirs.
    let commits = xacts().await - before;
    assert!(commits < 1_000, "{commits} transactions for 2,000 appends");
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_rejects_the_old_owner_after_a_survivor_claims_its_run() {
    let Some(schema) = Schema::new("fencing") else {
        return;
    };
    // A lease short enough to expire in the test, by the database's clock.
    let a = Postgres::open(PostgresOptions {
        lease_ttl: Duration::from_millis(300),
        ..schema.long_lease("a")
    })
    .await
    .unwrap();
    let b = schema.open("b").await;
    let mut history = vec![
        workflow(7),
        created(70, 7),
        task(70, 0, TaskStatus::Running),
    ];
    write(&a, history.clone()).await;
    write(
        &a,
        vec![workflow(7), created(71, 7), ended(71, RunStatus::Completed)],
    )
    .await;

    // While A's lease is live, nothing is claimable.
    assert_eq!(b.claim_expired(10).await.unwrap(), vec![]);
    let location = b.locate(RunId(70)).await.unwrap().unwrap();
    assert_eq!((location.owner, location.live), (Some(a.instance()), true));

    tokio::time::sleep(Duration::from_millis(600)).await;
    let location = b.locate(RunId(70)).await.unwrap().unwrap();
    assert!(!location.live, "the lease expired");
    // B takes over the unfinished run (not the finished one), records ready to resume.
    assert_eq!(b.claim_expired(10).await.unwrap(), history);
    assert_eq!(b.claim_expired(10).await.unwrap(), vec![]);
    let location = b.locate(RunId(70)).await.unwrap().unwrap();
    assert_eq!((location.owner, location.live), (Some(b.instance()), true));
    // A owned nothing else unfinished: its row is gone, and it learns so.
    assert!(
        matches!(a.heartbeat().await, Err(Error::LeaseLost { instance, .. }) if instance == a.instance())
    );
    b.heartbeat().await.unwrap();

    // A, unaware, goes on writing run 70 (and starts a new run 72): run 70's
    // records are dropped and reported once, run 72 is A's.
    write(
        &a,
        vec![
            task(70, 0, TaskStatus::Succeeded),
            task(70, 1, TaskStatus::Ready),
        ],
    )
    .await;
    write(
        &a,
        vec![
            created(72, 7),
            task(72, 0, TaskStatus::Ready),
            task(70, 2, TaskStatus::Ready),
        ],
    )
    .await;
    assert_eq!(a.lost(), vec![RunId(70)]);
    assert_eq!(a.lost(), vec![], "reported once");
    // B's writes are kept.
    let mine = vec![
        task(70, 0, TaskStatus::Succeeded),
        ended(70, RunStatus::Completed),
    ];
    write(&b, mine.clone()).await;
    assert!(b.lost().is_empty());
    history.extend(mine);
    assert_eq!(b.run_records(RunId(70)).await.unwrap(), history);
    assert_eq!(
        b.locate(RunId(70)).await.unwrap().unwrap().status,
        Some(RunStatus::Completed)
    );
    assert_eq!(
        a.run_records(RunId(72)).await.unwrap(),
        vec![workflow(7), created(72, 7), task(72, 0, TaskStatus::Ready)]
    );
    assert_eq!(
        b.locate(RunId(72)).await.unwrap().unwrap().owner,
        None,
        "run 72's owner (A) has no row any more"
    );
    a.close().await.unwrap();
    b.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_the_same_name_takes_over_at_once() {
    let Some(schema) = Schema::new("restart") else {
        return;
    };
    let old = schema.open("node").await;
    let other = schema.open("other").await;
    let history = vec![
        workflow(8),
        created(80, 8),
        task(80, 0, TaskStatus::Dispatched),
    ];
    write(&old, history.clone()).await;
    write(&other, vec![workflow(8), created(81, 8)]).await;
    // `old` is still live (a long lease), as a killed process's row would be.
    let new = schema.open("node").await;
    assert_ne!(new.instance(), old.instance());
    assert!(new.instance() > old.instance(), "epochs grow");
    assert_eq!(new.load().unwrap(), history, "only the same name's runs");
    assert!(matches!(
        old.heartbeat().await,
        Err(Error::LeaseLost { .. })
    ));
    write(&old, vec![task(80, 0, TaskStatus::Running)]).await;
    assert_eq!(old.lost(), vec![RunId(80)]);
    write(&new, vec![task(80, 0, TaskStatus::Running)]).await;
    assert!(new.lost().is_empty());
    let names: Vec<(String, u64)> = new
        .instances()
        .await
        .unwrap()
        .into_iter()
        .map(|i| (i.name, i.runs))
        .collect();
    assert_eq!(names, vec![("other".into(), 1), ("node".into(), 1)]);
    for store in [old, new, other] {
        store.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivors_claiming_together_split_the_runs_without_overlap() {
    let Some(schema) = Schema::new("split") else {
        return;
    };
    let dead = schema.open("dead").await;
    let mut all = vec![workflow(9)];
    for run in 0..60 {
        all.push(created(900 + run, 9));
        all.push(task(900 + run, 0, TaskStatus::Running));
    }
    write(&dead, all).await;
    schema.expire(&dead).await;

    let survivors: Vec<Arc<Postgres>> = futures_join_all(
        ["s1", "s2", "s3"].map(|name| tokio::spawn(Postgres::open(schema.long_lease(name)))),
    )
    .await
    .into_iter()
    .map(|s| Arc::new(s.unwrap().unwrap()))
    .collect();
    let claims = futures_join_all(survivors.iter().map(|store| {
        let store = Arc::clone(store);
        tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let records = store.claim_expired(4).await.unwrap();
                if records.is_empty() {
                    return mine;
                }
                assert_eq!(records[0], workflow(9), "the document comes first");
                mine.extend(records.iter().filter_map(|r| match r {
                    Record::RunCreated { run, .. } => Some(run.0),
                    _ => None,
                }));
                tokio::task::yield_now().await;
            }
        })
    }))
    .await;
    let claims: Vec<Vec<u64>> = claims.into_iter().map(Result::unwrap).collect();
    let mut every: Vec<u64> = claims.iter().flatten().copied().collect();
    every.sort_unstable();
    assert_eq!(
        every,
        (900..960).collect::<Vec<_>>(),
        "each run claimed exactly once"
    );
    eprintln!(
        "claims per survivor: {:?}",
        claims.iter().map(Vec::len).collect::<Vec<_>>()
    );
    for (store, runs) in survivors.iter().zip(&claims) {
        for run in runs {
            let at = store.locate(RunId(*run)).await.unwrap().unwrap();
            assert_eq!(at.owner, Some(store.instance()));
        }
    }
    // The dead instance owned nothing left, so it was removed.
    let ids: Vec<i64> = survivors[0]
        .instances()
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert!(!ids.contains(&dead.instance()), "{ids:?}");
    for store in survivors {
        store.close().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_gives_up_the_lease_so_survivors_claim_at_once() {
    let Some(schema) = Schema::new("release") else {
        return;
    };
    let leaving = schema.open("leaving").await;
    let idle = schema.open("idle").await;
    let staying = schema.open("staying").await;
    let history = vec![
        workflow(5),
        created(50, 5),
        task(50, 0, TaskStatus::Running),
    ];
    write(&leaving, history.clone()).await;
    let (leaving_id, idle_id) = (leaving.instance(), idle.instance());
    leaving.close().await.unwrap();
    idle.close().await.unwrap();
    let ids: Vec<i64> = staying
        .instances()
        .await
        .unwrap()
        .iter()
        .map(|i| i.id)
        .collect();
    assert!(ids.contains(&leaving_id), "it still owns a run: {ids:?}");
    assert!(!ids.contains(&idle_id), "owning nothing, it left: {ids:?}");
    assert_eq!(staying.claim_expired(10).await.unwrap(), history);
    staying.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_fails_the_store_with_its_message() {
    let Some(schema) = Schema::new("failure") else {
        return;
    };
    let store = schema.open("a").await;
    let durable = store.append(vec![workflow(1), created(1, 1)]).unwrap();
    store.sync(durable).await.unwrap();
    // The tables vanish under the store.
    schema.execute("DROP TABLE history CASCADE").await;
    let seq = store.append(vec![task(1, 0, TaskStatus::Ready)]).unwrap();
    let failed = |e: Result<(), Error>| match e {
        Err(Error::Closed(Some(message))) => {
            assert!(message.contains("history"), "{message}");
        }
        other => panic!("expected Closed(Some(..)), got {other:?}"),
    };
    failed(store.sync(seq).await);
    failed(store.append(vec![task(1, 1, TaskStatus::Ready)]).map(drop));
    // What was written before the failure still counts as written.
    store.sync(durable).await.unwrap();
    failed(store.close().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_blocked_by_a_hung_transaction_time_out_instead_of_hanging() {
    let Some(schema) = Schema::new("timeout") else {
        return;
    };
    let quick = |name: &str| PostgresOptions {
        statement_timeout: Duration::from_millis(300),
        write_retry: Duration::from_secs(1),
        ..schema.long_lease(name)
    };
    let old = Postgres::open(quick("node")).await.unwrap();
    write(&old, vec![workflow(1), created(1, 1)]).await;
    // Another session holds the run's row, as a frozen process's transaction would.
    let mut hung = sqlx::PgConnection::connect(&schema.url).await.unwrap();
    let sql = format!(
        "SET search_path TO \"{}\"; BEGIN; SELECT * FROM runs FOR UPDATE;",
        schema.name
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut hung)
        .await
        .unwrap();

    let started = std::time::Instant::now();
    let err = Postgres::open(quick("node")).await.err().unwrap();
    assert!(
        matches!(&err, Error::Database { what, message }
            if what.contains("taking over") && message.contains("statement timeout")),
        "{err}"
    );
    // The writer, blocked the same way, fails the store rather than hanging.
    let seq = old.append(vec![task(1, 0, TaskStatus::Ready)]).unwrap();
    match old.sync(seq).await {
        Err(Error::Closed(Some(message))) => {
            assert!(message.contains("statement timeout"), "{message}")
        }
        other => panic!("expected Closed(Some(..)), got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    sqlx::raw_sql("ROLLBACK").execute(&mut hung).await.unwrap();
    // The failed open left nothing behind: the old instance is still the owner.
    let owner: i64 = sqlx::query_scalar("SELECT owner FROM runs")
        .fetch_one(old.pool())
        .await
        .unwrap();
    assert_eq!(owner, old.instance());
}

/// The writer through faults of the connection (a proxy between it and the
/// database): every connection cut, again and again, and the server not
/// answering for a second at a time, while runs are written. Every sync
/// returns (a write that failed on the connection is tried again), and the
/// tables hold every record exactly once: a commit whose answer was lost
/// with its connection is found out, not written twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_go_through_cut_connections_and_a_server_that_stops_answering() {
    use baton_events::testing::proxy::{Proxy, upstream};
    let Some(schema) = Schema::new("faults") else {
        return;
    };
    let proxy = std::sync::Arc::new(Proxy::start(upstream(&schema.url)).await);
    let store = Postgres::open(PostgresOptions {
        url: proxy.url(&schema.url),
        ..schema.long_lease("node")
    })
    .await
    .unwrap();
    write(&store, vec![workflow(1)]).await;
    const RUNS: u64 = 250;
    const TASKS: u32 = 4;
    let pauses = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let faults = tokio::spawn({
        let (proxy, pauses) = (proxy.clone(), pauses.clone());
        async move {
            for i in 0u32.. {
                tokio::time::sleep(Duration::from_millis(20 + u64::from(i % 7) * 10)).await;
                if i % 5 == 2 {
                    proxy.pause();
                    tokio::time::sleep(Duration::from_millis(1000)).await;
                    proxy.resume();
                    pauses.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                } else {
                    proxy.cut();
                }
            }
        }
    });
    let started = std::time::Instant::now();
    for run in 1..=RUNS {
        let mut records = vec![created(run, 1)];
        for t in 0..TASKS {
            records.push(task(run, t, TaskStatus::Running));
            records.push(task(run, t, TaskStatus::Succeeded));
        }
        records.push(ended(run, RunStatus::Completed));
        let seq = store.append(records).unwrap();
        // Most writes are waited for one by one, others pile up behind them.
        if run % 4 != 0 {
            store.sync(seq).await.unwrap();
        }
    }
    let last = store.append(vec![]).unwrap();
    store.sync(last).await.unwrap();
    faults.abort();
    proxy.resume();
    assert!(
        proxy.accepted() > 3,
        "the faults made the store connect again"
    );
    eprintln!(
        "{RUNS} runs written through faults in {:.1} s over {} connections",
        started.elapsed().as_secs_f64(),
        proxy.accepted()
    );
    let mut conn = sqlx::PgConnection::connect(&schema.url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET search_path TO \"{}\"",
        schema.name
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
    let runs = count("SELECT count(*) FROM runs WHERE status = 'completed'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(runs, RUNS as i64, "every run, completed");
    let rows = count("SELECT count(*) FROM history")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    // Per run: 2 records per task and the run's end.
    assert_eq!(
        rows,
        (RUNS * (2 * u64::from(TASKS) + 1)) as i64,
        "every record once"
    );
    let twice = count(
        "SELECT count(*) FROM (SELECT 1 FROM history GROUP BY run_id, kind, task, status, attempt
          HAVING count(*) > 1) AS d",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(twice, 0, "no record written twice");
    store.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_states_show_each_tasks_latest_transition_and_pruning_removes_finished_runs() {
    let Some(schema) = Schema::new("states") else {
        return;
    };
    let store = schema.open("a").await;
    write(
        &store,
        vec![
            workflow(1),
            workflow(2),
            created(1, 1),
            task(1, 0, TaskStatus::Ready),
            task(1, 1, TaskStatus::Ready),
            task(1, 0, TaskStatus::Running),
            task(1, 0, TaskStatus::Succeeded),
            created(2, 2),
            Record::Run {
                run: RunId(2),
                status: RunStatus::Cancelled,
                at_ms: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64,
                reason: Some("by a test".into()),
            },
        ],
    )
    .await;
    let states: Vec<(i64, i64, i16)> =
        sqlx::query_as("SELECT run_id, task, status FROM task_states ORDER BY run_id, task")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(
        states,
        vec![
            (1, 0, TaskStatus::Succeeded as i16),
            (1, 1, TaskStatus::Ready as i16)
        ]
    );
    assert_eq!(
        store
            .prune_finished(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.prune_finished(Duration::ZERO).await.unwrap(), 1);
    assert_eq!(store.run_records(RunId(2)).await.unwrap(), vec![]);
    assert_eq!(store.locate(RunId(2)).await.unwrap(), None);
    assert_eq!(store.run_records(RunId(1)).await.unwrap().len(), 6);
    let keys: Vec<String> = sqlx::query_scalar("SELECT key FROM workflows")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(
        keys,
        vec![format!("{:032x}", 1)],
        "workflow 2 went with its run"
    );
    store.close().await.unwrap();
}

/// Awaits every future (no futures crate in this one's dependencies).
async fn futures_join_all<F: std::future::Future>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let mut out = Vec::new();
    for f in futures {
        out.push(f.await);
    }
    out
}

#[tokio::test]
async fn shared_workflows_come_back_byte_for_byte_and_the_first_write_wins() {
    let Some(schema) = Schema::new("catalog") else {
        return;
    };
    let store = schema.open("a").await;
    let document = r#"{"z": 1, "a": {"y": [2, 1], "b": null},  "m": "\u00e9"}"#;
    let first = SharedWorkflow {
        id: 7,
        version: 1,
        created_ms: 5,
        document: document.into(),
    };
    store.share_workflow(&first).await.unwrap();
    let again = SharedWorkflow {
        document: "{}".into(),
        ..first.clone()
    };
    store.share_workflow(&again).await.unwrap();
    let other = schema.open("b").await;
    assert_eq!(other.shared_workflow(7).await.unwrap(), Some(first.clone()));
    assert_eq!(other.shared_workflow(8).await.unwrap(), None);
    assert_eq!(other.shared_workflows().await.unwrap(), vec![first]);
    let bad = SharedWorkflow {
        id: 9,
        document: "{".into(),
        ..again
    };
    assert!(matches!(
        store.share_workflow(&bad).await,
        Err(Error::Invalid { .. })
    ));
}

#[tokio::test]
async fn a_catalog_table_made_by_an_older_server_is_adopted() {
    let Some(schema) = Schema::new("old_catalog") else {
        return;
    };
    // What servers before migration 2 created next to the store's tables.
    schema
        .execute(&format!(
            "CREATE SCHEMA \"{0}\"; SET search_path TO \"{0}\";
             CREATE TABLE catalog (id bigint PRIMARY KEY, version integer NOT NULL,
                                   created_ms bigint NOT NULL, document jsonb NOT NULL);
             INSERT INTO catalog VALUES (1, 1, 2, '{{\"a\": 1}}');",
            schema.name
        ))
        .await;
    let store = schema.open("a").await;
    let old = store.shared_workflow(1).await.unwrap().unwrap();
    assert_eq!(old.document, r#"{"a": 1}"#);
}
