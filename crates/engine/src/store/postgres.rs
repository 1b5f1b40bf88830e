//! The PostgreSQL [`StateStore`], [`Postgres`]: the event-sourced history in a
//! database that several engine instances share, with leases and fencing so that
//! a run is written by one instance at a time and the runs of a dead instance are
//! taken over by the living.
//!
//! # Durability
//!
//! [`StateStore::append`] queues records and returns at once; a background task
//! (the writer) takes everything queued and writes it in one transaction (several
//! when more than [`PostgresOptions::max_batch`] records are waiting), then
//! publishes the new durable sequence number that [`StateStore::sync`] waits for.
//! A synced record is in a committed transaction: it survives what PostgreSQL's
//! own settings make a commit survive (with the default `synchronous_commit = on`
//! and `fsync = on`, a crash of the database server or its machine; with
//! replication, what `synchronous_standby_names` adds). Transactions commit in
//! sequence order, so what survives a crash of this process is always a prefix of
//! what it appended.
//!
//! Every statement runs under [`PostgresOptions::statement_timeout`], so a
//! database that stops answering fails the store instead of leaving `sync`
//! waiting, and the server ends any transaction of ours left idle longer than the
//! lease (`idle_in_transaction_session_timeout`), so the row locks of a frozen
//! instance do not hold up those taking over its runs.
//!
//! A database error fails the store like a write error fails the embedded one:
//! later calls return [`Error::Closed`] with the error's message, and what was not
//! committed is lost (a restart with the same instance name resumes from what
//! was). The writer does not retry: a transaction whose commit went unanswered may
//! have committed, and replaying it would write its records twice.
//!
//! # Schema
//!
//! Everything lives in one PostgreSQL schema ([`PostgresOptions::schema`],
//! `baton` by default), which is the connections' `search_path`, so the pool
//! handed out by [`Postgres::pool`] sees it too:
//!
//! ```text
//! schema_migrations(version bigint pk, description text, applied_at timestamptz)
//! instances(id bigint identity pk   -- also the instance's fencing epoch
//!           name text, address text, started_at timestamptz, lease_until timestamptz)
//! workflows(key text pk             -- the structural key, 32 hex digits
//!           document json, created_at timestamptz)
//! runs(run_id bigint pk             -- RunId's bits (it fits: 42 bits of ms + 22)
//!      workflow text, input json, created_at_ms bigint, status text, reason text,
//!      finished_at_ms bigint, owner bigint, updated_at timestamptz)
//! history(id bigint identity, run_id bigint, kind smallint (1 task, 2 run),
//!         task bigint, status smallint (the status's code), attempt bigint,
//!         agent integer, at bigint (µs since the run started for a task, Unix ms
//!         for a run), detail bytea, primary key (run_id, id))
//! task_states                       -- a view: each task's latest history row
//! ```
//!
//! `history` holds every [`Record::Task`] and [`Record::Run`] in append order
//! (`id` comes from a sequence without a cache, so it grows with every insert,
//! across connections and instances); [`Record::RunCreated`] is the `runs` row and
//! [`Record::Workflow`] the `workflows` row. Documents and inputs are `json`, not
//! `jsonb`: `json` keeps the text exactly as written (key order, which the
//! engine's documents depend on, and duplicates), and is still checked and
//! queryable with `->`. Task outputs and error messages are `bytea` holding the
//! UTF-8 text, because `text` cannot hold the NUL characters an agent's error
//! output may contain; `runs.reason` is a readable copy with NUL replaced by
//! U+FFFD (the exact one is in `history`).
//!
//! Current task states are a view (`task_states`, `DISTINCT ON (run_id, task)`
//! over `history`), not a table kept in the same transaction: the writer's hot
//! path then inserts one row per transition instead of inserting one and
//! upserting another, and the view is cheap for the one-run reads it serves (the
//! history's primary key starts with `run_id`).
//!
//! # Migrations
//!
//! The schema is created by an ordered list of versioned migrations compiled into
//! the binary. [`Postgres::open`] applies those the database lacks in one
//! transaction under `pg_advisory_xact_lock`, so instances starting together do
//! not race, and records each in `schema_migrations`. A schema at a version newer
//! than this binary knows is refused with [`Error::SchemaTooNew`]: an old binary
//! must not write into tables it does not understand.
//!
//! # Leases and fencing
//!
//! Each open registers an instance: a row of `instances` whose `id` (from a
//! sequence) is this process's fencing epoch, with a lease until `now() +`
//! [`PostgresOptions::lease_ttl`] by the database's clock (no two machines' clocks
//! are compared). [`Postgres::heartbeat`] renews it. An instance owns the runs it
//! created (`runs.owner`). Opening with the [`PostgresOptions::instance_name`] of
//! a previous instance takes over that instance's unfinished runs at once and
//! deletes its row: a process restarted after a crash does not wait for its old
//! lease to expire (two live processes must therefore never share a name).
//! [`Postgres::claim_expired`] takes over the unfinished runs of instances whose
//! lease expired, for survivors.
//!
//! Every transaction of the writer locks the rows of the runs it writes
//! (`SELECT ... FOR UPDATE` where `owner` is this instance) and writes only the
//! records of runs it still owns. The records of a run that another instance has
//! taken over are dropped, as are all its later records, and the run is reported
//! once by [`Postgres::lost`]: the engine must stop driving it. [`StateStore::sync`]
//! still resolves for such records (they were handled: the run is no longer
//! this instance's to write). A [`Record::RunCreated`] whose run id already exists
//! is lost in the same way.
//!
//! # Loading
//!
//! [`StateStore::load`] returns what [`Postgres::open`] read: the records of every
//! unfinished run this instance owns after the takeover, each run's in append
//! order, after the [`Record::Workflow`]s they refer to. Finished runs are not
//! returned. Sequence numbers continue from the number of records loaded, as the
//! embedded store's do.
//!
//! # Retention
//!
//! History is kept: nothing is deleted by the store. To prune finished runs, for
//! example those finished more than 30 days ago:
//!
//! ```sql
//! DELETE FROM baton.history h USING baton.runs r
//!  WHERE h.run_id = r.run_id AND r.finished_at_ms < (extract(epoch FROM now() - interval '30 days') * 1000);
//! DELETE FROM baton.runs WHERE finished_at_ms < (extract(epoch FROM now() - interval '30 days') * 1000);
//! DELETE FROM baton.workflows w WHERE NOT EXISTS (SELECT 1 FROM baton.runs r WHERE r.workflow = w.key);
//! ```
//!
//! [`Postgres::prune_finished`] does the same from code.

use std::collections::{HashMap, HashSet};
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Row as _};
use tokio::sync::{Notify, watch};

use super::durable::{self, Durable, State};
use super::{Error, Record, RunId, RunStatus, StateStore, TaskStatus};

/// How a [`Postgres`] store connects and behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The database, as a URL: `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`.
    pub url: String,
    /// The PostgreSQL schema holding the tables (default `baton`): lowercase ASCII
    /// letters, digits and `_`, not starting with a digit, at most 63 bytes.
    pub schema: String,
    /// This process's name among the instances (default `baton`). A new process
    /// with the name of an earlier one takes over that one's runs at once, so
    /// give every live process its own name and a restarted one its old name.
    pub instance_name: String,
    /// Where other instances can reach this one (for example its HTTP address),
    /// shown by [`Postgres::locate`] and [`Postgres::instances`].
    pub address: Option<String>,
    /// How long a lease lasts without a [`Postgres::heartbeat`] (default 10 s).
    pub lease_ttl: Duration,
    /// The most records written in one transaction (default 10,000).
    pub max_batch: usize,
    /// Connections in the pool (default 4, at least 2: the writer holds one
    /// while it writes).
    pub pool_size: u32,
    /// How long to wait for a connection (default 10 s).
    pub connect_timeout: Duration,
    /// The longest any statement may run, lock waits included (default 30 s):
    /// past it the statement fails instead of hanging (a write then fails the
    /// store). Zero means no limit.
    pub statement_timeout: Duration,
}

impl PostgresOptions {
    /// The default options for the database at `url`.
    pub fn new(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            url: url.into(),
            ..PostgresOptions::default()
        }
    }
}

impl Default for PostgresOptions {
    /// The defaults, with an empty `url` that must be set before opening.
    fn default() -> Self {
        PostgresOptions {
            url: String::new(),
            schema: "baton".into(),
            instance_name: "baton".into(),
            address: None,
            lease_ttl: Duration::from_secs(10),
            max_batch: 10_000,
            pool_size: 4,
            connect_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// Where a run is held, as [`Postgres::locate`] finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The owning instance's id (its fencing epoch); `None` if that instance is
    /// gone (its row was deleted: an unfinished run then waits for a survivor's
    /// [`Postgres::claim_expired`]).
    pub owner: Option<i64>,
    /// The owner's instance name, if it is not gone.
    pub name: Option<String>,
    /// The owner's address, if it registered one and is not gone.
    pub address: Option<String>,
    /// Whether the owner's lease is live by the database's clock.
    pub live: bool,
    /// The run's final status once it ended, `None` while it is unfinished.
    pub status: Option<RunStatus>,
}

/// One registered instance, as [`Postgres::instances`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Its id, which is also its fencing epoch.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its address, if it registered one.
    pub address: Option<String>,
    /// When it registered, Unix milliseconds (database clock).
    pub started_at_ms: i64,
    /// Milliseconds its lease has left (negative once expired), database clock.
    pub lease_left_ms: i64,
    /// Unfinished runs it owns.
    pub runs: u64,
}

/// The PostgreSQL state store. See the [module documentation](self) for the
/// schema, durability, leases and fencing.
///
/// [`Postgres::open`] must run inside a tokio runtime: the writer is a task on it.
/// [`StateStore::append`] only queues (a JSON syntax check of documents and
/// inputs, a lock, a push). Dropping the store without [`StateStore::close`] asks
/// the writer to write what was queued and stop, without waiting for it (it needs
/// the runtime to still be running).
///
/// # Example
///
/// ```no_run
/// use baton_engine::store::{Postgres, PostgresOptions, Record, RunId, StateStore};
///
/// # async fn example() -> Result<(), baton_engine::store::Error> {
/// let store = Postgres::open(PostgresOptions {
///     instance_name: "node-1".into(),
///     ..PostgresOptions::new("postgres://postgres@127.0.0.1:5432/baton")
/// })
/// .await?;
/// let resume = store.load()?; // this instance's unfinished runs
/// let seq = store.append(vec![Record::Workflow { key: 1, document: "{}".into() }])?;
/// store.sync(seq).await?; // committed from here on
/// store.heartbeat().await?; // every lease_ttl / 3 or so
/// let adopted = store.claim_expired(100).await?; // runs of dead instances
/// store.close().await?;
/// # Ok(()) }
/// ```
pub struct Postgres {
    pool: PgPool,
    instance: i64,
    name: String,
    schema: String,
    lease_ttl: Duration,
    shared: Arc<Shared>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What open read, for [`StateStore::load`].
    loaded: Vec<Record>,
}

/// What the callers and the writer task share.
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer when records arrive or the store closes.
    wake: Notify,
    /// The durable sequence number, and whether the writer has stopped.
    durable: watch::Sender<Durable>,
    lost: Mutex<Lost>,
}

struct Queue {
    /// Appended, not yet taken by the writer.
    batches: Vec<Vec<Record>>,
    last_seq: u64,
    state: State,
}

#[derive(Default)]
struct Lost {
    /// Lost runs not yet handed out by [`Postgres::lost`].
    reported: Vec<RunId>,
    /// Runs whose records the writer drops without asking the database.
    dropped: HashSet<RunId>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Every update under the lock is a single assignment or push: a panic
        // elsewhere cannot leave it half done.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lost(&self) -> MutexGuard<'_, Lost> {
        self.lost.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn stop(&self) {
        let mut queue = self.queue();
        if queue.state == State::Open {
            queue.state = State::Closing;
        }
        drop(queue);
        self.wake.notify_one();
    }
}

/// One versioned step of the schema.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// The schema's history, oldest first; versions grow by one. Never edit an
/// applied migration: add the next one.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    description: "instances, workflows, runs, history and the task_states view",
    sql: r#"
CREATE TABLE instances (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        text        NOT NULL,
    address     text,
    started_at  timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL
);
CREATE INDEX instances_name ON instances (name);

CREATE TABLE workflows (
    key        text        PRIMARY KEY,
    document   json        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE runs (
    run_id         bigint      PRIMARY KEY,
    workflow       text        NOT NULL,
    input          json        NOT NULL,
    created_at_ms  bigint      NOT NULL,
    status         text        NOT NULL,
    reason         text,
    finished_at_ms bigint,
    owner          bigint      NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX runs_unfinished_owner ON runs (owner)
    WHERE status IN ('running', 'paused', 'compensating');
CREATE INDEX runs_workflow ON runs (workflow);

-- No cache on the sequence: ids must grow in insertion order across connections.
CREATE TABLE history (
    id      bigint GENERATED ALWAYS AS IDENTITY (CACHE 1),
    run_id  bigint   NOT NULL,
    kind    smallint NOT NULL,
    task    bigint,
    status  smallint NOT NULL,
    attempt bigint,
    agent   integer,
    at      bigint   NOT NULL,
    detail  bytea,
    PRIMARY KEY (run_id, id)
);

CREATE VIEW task_states AS
SELECT DISTINCT ON (run_id, task)
       run_id, task, status, attempt, agent, at AS at_us, detail, id AS history_id
  FROM history
 WHERE kind = 1
 ORDER BY run_id, task, id DESC;
"#,
}];

/// `history.kind` of a [`Record::Task`].
const KIND_TASK: i16 = 1;
/// `history.kind` of a [`Record::Run`].
const KIND_RUN: i16 = 2;

impl Postgres {
    /// Connects, creates or migrates the schema, registers this process as an
    /// instance, takes over the unfinished runs of earlier instances of the same
    /// name, reads the unfinished runs it now owns (for [`StateStore::load`]) and
    /// starts the writer task.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a malformed URL or schema name,
    /// [`Error::SchemaTooNew`] if the schema was migrated by a newer Baton,
    /// [`Error::Database`] if the database cannot be reached or refuses a step.
    pub async fn open(options: PostgresOptions) -> Result<Postgres, Error> {
        check_schema_name(&options.schema)?;
        if !(options.url.starts_with("postgres://") || options.url.starts_with("postgresql://")) {
            return Err(Error::Invalid {
                what: "the PostgreSQL URL".into(),
                message: "expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE".into(),
            });
        }
        if options.instance_name.is_empty() {
            return Err(Error::Invalid {
                what: "the instance name".into(),
                message: "it is empty; give each process a name of its own".into(),
            });
        }
        let connect = PgConnectOptions::from_str(&options.url)
            .map_err(|e| Error::Invalid {
                what: "the PostgreSQL URL".into(),
                message: format!("{e}; expected postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE"),
            })?
            .application_name("baton")
            .options([
                ("search_path", options.schema.clone()),
                (
                    "statement_timeout",
                    options.statement_timeout.as_millis().to_string(),
                ),
                // A transaction of ours left open by a process that froze or lost
                // its network is ended by the server, so its row locks do not hold
                // up the instances taking over its runs.
                (
                    "idle_in_transaction_session_timeout",
                    options.lease_ttl.as_millis().max(1).to_string(),
                ),
            ]);
        let target = format!(
            "{}:{}/{}",
            connect.get_host(),
            connect.get_port(),
            connect.get_database().unwrap_or_default()
        );
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            .min_connections(0)
            .acquire_timeout(options.connect_timeout)
            .connect_with(connect)
            .await
            .map_err(database(format!("connecting to {target}")))?;

        migrate(&pool, &options.schema).await?;

        let mut tx = pool
            .begin()
            .await
            .map_err(database("registering the instance"))?;
        let instance: i64 = sqlx::query(
            "INSERT INTO instances (name, address, lease_until)
             VALUES ($1, $2, now() + make_interval(secs => $3))
             RETURNING id",
        )
        .bind(&options.instance_name)
        .bind(&options.address)
        .bind(options.lease_ttl.as_secs_f64())
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(database("registering the instance"))?;
        let taken = sqlx::query(
            "UPDATE runs SET owner = $1, updated_at = now()
              WHERE owner IN (SELECT id FROM instances WHERE name = $2 AND id <> $1)
                AND status IN ('running', 'paused', 'compensating')",
        )
        .bind(instance)
        .bind(&options.instance_name)
        .execute(&mut *tx)
        .await
        .map_err(database("taking over the runs of an earlier instance"))?
        .rows_affected();
        sqlx::query("DELETE FROM instances WHERE name = $1 AND id <> $2")
            .bind(&options.instance_name)
            .bind(instance)
            .execute(&mut *tx)
            .await
            .map_err(database("removing earlier instances of the same name"))?;
        let runs: Vec<i64> = sqlx::query(
            "SELECT run_id FROM runs
              WHERE owner = $1 AND status IN ('running', 'paused', 'compensating')
              ORDER BY run_id",
        )
        .bind(instance)
        .fetch_all(&mut *tx)
        .await
        .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
        .map_err(database("listing the runs to resume"))?;
        let loaded = read_runs(&mut tx, &runs).await?;
        tx.commit()
            .await
            .map_err(database("registering the instance"))?;
        tracing::info!(
            instance,
            name = %options.instance_name,
            schema = %options.schema,
            taken_over = taken,
            runs = runs.len(),
            records = loaded.len(),
            "state store opened"
        );

        let seq = loaded.len() as u64;
        let (durable, _) = watch::channel(Durable {
            seq,
            state: State::Open,
        });
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                batches: Vec::new(),
                last_seq: seq,
                state: State::Open,
            }),
            wake: Notify::new(),
            durable,
            lost: Mutex::new(Lost::default()),
        });
        let writer = tokio::spawn(write_loop(
            Arc::clone(&shared),
            pool.clone(),
            instance,
            options.max_batch.max(1),
        ));
        Ok(Postgres {
            pool,
            instance,
            name: options.instance_name,
            schema: options.schema,
            lease_ttl: options.lease_ttl,
            shared,
            writer: Mutex::new(Some(writer)),
            loaded,
        })
    }

    /// This instance's id: its row in `instances` and its fencing epoch.
    pub fn instance(&self) -> i64 {
        self.instance
    }

    /// This instance's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PostgreSQL schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// The connection pool (its `search_path` is the store's schema), for other
    /// tables that belong in the same database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The runs this instance lost since the last call: another instance took
    /// them over, so their records are no longer written and the engine must stop
    /// driving them. Each lost run is reported once; the queue is drained.
    pub fn lost(&self) -> Vec<RunId> {
        std::mem::take(&mut self.shared.lost().reported)
    }

    /// Renews this instance's lease for [`PostgresOptions::lease_ttl`] from now
    /// (database clock). Call it well within the TTL (a third of it, say).
    ///
    /// # Errors
    ///
    /// [`Error::LeaseLost`] if this instance's row is gone: a process of the same
    /// name started, or survivors took over every run after the lease expired.
    /// [`Error::Database`] if the database cannot be reached.
    pub async fn heartbeat(&self) -> Result<(), Error> {
        let renewed = sqlx::query(
            "UPDATE instances SET lease_until = now() + make_interval(secs => $2) WHERE id = $1",
        )
        .bind(self.instance)
        .bind(self.lease_ttl.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(database("renewing the lease"))?
        .rows_affected();
        if renewed == 0 {
            return Err(Error::LeaseLost {
                instance: self.instance,
                message: "its row in `instances` is gone: another instance took over its runs"
                    .into(),
            });
        }
        Ok(())
    }

    /// Takes over up to `max_runs` unfinished runs whose owner's lease has
    /// expired (or whose owner is gone), removes expired instances left owning
    /// nothing, and returns the claimed runs' records, [`Record::Workflow`]s
    /// first, each run's records in append order, ready for the engine to resume.
    /// Rows another survivor is claiming at the same moment are skipped (`FOR
    /// UPDATE SKIP LOCKED`), so concurrent survivors split the work.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the database cannot be reached or refuses.
    pub async fn claim_expired(&self, max_runs: usize) -> Result<Vec<Record>, Error> {
        let what = "claiming the runs of expired instances";
        let mut tx = self.pool.begin().await.map_err(database(what))?;
        let mut claimed: Vec<i64> = sqlx::query(
            "WITH claimable AS (
                 SELECT r.run_id FROM runs r
                  WHERE r.status IN ('running', 'paused', 'compensating')
                    AND r.owner <> $1
                    AND NOT EXISTS (SELECT 1 FROM instances i
                                     WHERE i.id = r.owner AND i.lease_until > now())
                  ORDER BY r.run_id
                  LIMIT $2
                  FOR UPDATE OF r SKIP LOCKED)
             UPDATE runs SET owner = $1, updated_at = now()
               FROM claimable
              WHERE runs.run_id = claimable.run_id
             RETURNING runs.run_id",
        )
        .bind(self.instance)
        .bind(i64::try_from(max_runs).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
        .map_err(database(what))?;
        claimed.sort_unstable();
        let removed = sqlx::query(
            "DELETE FROM instances i
              WHERE i.lease_until <= now() AND i.id <> $1
                AND NOT EXISTS (SELECT 1 FROM runs r
                                 WHERE r.owner = i.id
                                   AND r.status IN ('running', 'paused', 'compensating'))",
        )
        .bind(self.instance)
        .execute(&mut *tx)
        .await
        .map_err(database(what))?
        .rows_affected();
        let records = read_runs(&mut tx, &claimed).await?;
        tx.commit().await.map_err(database(what))?;
        if !claimed.is_empty() || removed > 0 {
            tracing::info!(
                instance = self.instance,
                claimed = claimed.len(),
                removed_instances = removed,
                "claimed the runs of expired instances"
            );
        }
        // Runs lost earlier and now ours again: write their records from here on.
        let mut lost = self.shared.lost();
        for run in &claimed {
            lost.dropped.remove(&RunId(*run as u64));
        }
        Ok(records)
    }

    /// Who holds `run`, whether its lease is live, and the run's status; `None`
    /// if the database has no such run.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the database cannot be reached or refuses.
    pub async fn locate(&self, run: RunId) -> Result<Option<Location>, Error> {
        let what = "locating a run";
        let row = sqlx::query(
            "SELECT i.id, i.name, i.address, coalesce(i.lease_until > now(), false), r.status
               FROM runs r LEFT JOIN instances i ON i.id = r.owner
              WHERE r.run_id = $1",
        )
        .bind(run.0 as i64)
        .fetch_optional(&self.pool)
        .await
        .map_err(database(what))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let status = run_status(&row.try_get::<String, _>(4).map_err(database(what))?)?;
        Ok(Some(Location {
            owner: row.try_get(0).map_err(database(what))?,
            name: row.try_get(1).map_err(database(what))?,
            address: row.try_get(2).map_err(database(what))?,
            live: row.try_get(3).map_err(database(what))?,
            status: status.is_final().then_some(status),
        }))
    }

    /// The history of one run, whoever owns it: its [`Record::Workflow`], its
    /// [`Record::RunCreated`] and every other record in append order (empty if
    /// the database has no such run). For showing a run no live instance holds.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the database cannot be reached or refuses.
    pub async fn run_records(&self, run: RunId) -> Result<Vec<Record>, Error> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(database("reading a run"))?;
        read_runs(&mut conn, &[run.0 as i64]).await
    }

    /// Every registered instance, by id.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the database cannot be reached or refuses.
    pub async fn instances(&self) -> Result<Vec<Instance>, Error> {
        let what = "listing instances";
        let rows = sqlx::query(
            "SELECT i.id, i.name, i.address,
                    (extract(epoch FROM i.started_at) * 1000)::bigint,
                    (extract(epoch FROM i.lease_until - now()) * 1000)::bigint,
                    (SELECT count(*) FROM runs r
                      WHERE r.owner = i.id AND r.status IN ('running', 'paused', 'compensating'))
               FROM instances i ORDER BY i.id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(database(what))?;
        rows.iter()
            .map(|row| {
                Ok(Instance {
                    id: row.try_get(0)?,
                    name: row.try_get(1)?,
                    address: row.try_get(2)?,
                    started_at_ms: row.try_get(3)?,
                    lease_left_ms: row.try_get(4)?,
                    runs: u64::try_from(row.try_get::<i64, _>(5)?).unwrap_or(0),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(database(what))
    }

    /// Deletes the runs that finished more than `age` ago (database clock), their
    /// history, and the workflow documents no remaining run refers to. Returns
    /// how many runs were deleted.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the database cannot be reached or refuses.
    pub async fn prune_finished(&self, age: Duration) -> Result<u64, Error> {
        let what = "pruning finished runs";
        let mut tx = self.pool.begin().await.map_err(database(what))?;
        let cutoff: i64 = sqlx::query(
            "SELECT (extract(epoch FROM now() - make_interval(secs => $1)) * 1000)::bigint",
        )
        .bind(age.as_secs_f64())
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(database(what))?;
        sqlx::query(
            "DELETE FROM history h USING runs r
              WHERE h.run_id = r.run_id AND r.finished_at_ms < $1",
        )
        .bind(cutoff)
        .execute(&mut *tx)
        .await
        .map_err(database(what))?;
        let runs = sqlx::query("DELETE FROM runs WHERE finished_at_ms < $1")
            .bind(cutoff)
            .execute(&mut *tx)
            .await
            .map_err(database(what))?
            .rows_affected();
        sqlx::query(
            "DELETE FROM workflows w WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.workflow = w.key)",
        )
        .execute(&mut *tx)
        .await
        .map_err(database(what))?;
        tx.commit().await.map_err(database(what))?;
        Ok(runs)
    }

    /// The newest schema version this build knows.
    pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;
}

impl StateStore for Postgres {
    /// Queues `records` and returns the sequence number of the last one (with no
    /// records, the last number assigned so far).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] once the store is closed or its writer failed;
    /// [`Error::Invalid`] if a document or an input is not JSON, in which case
    /// nothing is queued.
    fn append(&self, records: Vec<Record>) -> Result<u64, Error> {
        for record in &records {
            check_json(record)?;
        }
        let mut queue = self.shared.queue();
        if queue.state != State::Open {
            return Err(queue.state.error());
        }
        if records.is_empty() {
            return Ok(queue.last_seq);
        }
        queue.last_seq += records.len() as u64;
        let seq = queue.last_seq;
        queue.batches.push(records);
        drop(queue);
        self.shared.wake.notify_one();
        Ok(seq)
    }

    /// Resolves once every record up to `seq` is committed (or, for runs this
    /// instance lost, dropped).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the store stops before then.
    async fn sync(&self, seq: u64) -> Result<(), Error> {
        durable::wait(&self.shared.durable, seq).await
    }

    /// The records read at open: this instance's unfinished runs (see the
    /// [module documentation](self)). Every call returns them again (a copy).
    fn load(&self) -> Result<Vec<Record>, Error> {
        Ok(self.loaded.clone())
    }

    /// Commits everything appended, stops the writer, gives up the lease (the
    /// instance's row is deleted if it owns no unfinished run, otherwise its
    /// lease ends now so survivors can claim those runs at once) and closes the
    /// pool. Calling it again is harmless.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] with the database error's message if the writer failed.
    async fn close(&self) -> Result<(), Error> {
        self.shared.stop();
        let mut durable = self.shared.durable.subscribe();
        let state = durable
            .wait_for(|d| d.state != State::Open)
            .await
            .map(|d| d.state.clone())
            .unwrap_or(State::Closed);
        let writer = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(writer) = writer {
            if writer.await.is_err() {
                return Err(Error::Closed(Some("the state writer task panicked".into())));
            }
            if state == State::Closed {
                self.release().await;
            }
            self.pool.close().await;
        }
        match state {
            State::Failed(message) => Err(Error::Closed(Some(message))),
            _ => Ok(()),
        }
    }
}

impl Postgres {
    /// Gives up the lease at close (best effort: a failure only delays takeover
    /// until the lease expires).
    async fn release(&self) {
        let released = sqlx::query(
            "WITH gone AS (
                 DELETE FROM instances i WHERE i.id = $1
                    AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.owner = i.id
                                       AND r.status IN ('running', 'paused', 'compensating'))
                 RETURNING id)
             UPDATE instances SET lease_until = now()
              WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM gone)",
        )
        .bind(self.instance)
        .execute(&self.pool)
        .await;
        if let Err(e) = released {
            tracing::warn!(instance = self.instance, error = %e, "cannot give up the lease at close; it expires by itself");
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.shared.stop();
    }
}

/// A closure turning a database error into [`Error::Database`] about `what`.
fn database(what: impl Into<String>) -> impl FnOnce(sqlx::Error) -> Error {
    let what = what.into();
    move |e| Error::Database {
        what,
        message: e.to_string(),
    }
}

fn check_schema_name(schema: &str) -> Result<(), Error> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && !schema.as_bytes()[0].is_ascii_digit()
        && schema
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: format!("the schema name {schema:?}"),
            message: "use lowercase ASCII letters, digits and `_`, not starting with a digit, at most 63 bytes".into(),
        })
    }
}

/// Refuses a document or input PostgreSQL's `json` type would reject, before it
/// is queued (afterwards it would fail the whole transaction, and the store).
fn check_json(record: &Record) -> Result<(), Error> {
    let (what, text) = match record {
        Record::Workflow { key, document } => (format!("workflow {key:032x}"), document),
        Record::RunCreated { run, input, .. } => (format!("the input of run {run}"), input),
        Record::Task { .. } | Record::Run { .. } => return Ok(()),
    };
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(drop)
        .map_err(|e| Error::Invalid {
            what,
            message: format!("it is not JSON ({e})"),
        })
}

/// Creates the schema if needed and applies the migrations it lacks, under an
/// advisory lock so that instances starting together take turns.
async fn migrate(pool: &PgPool, schema: &str) -> Result<(), Error> {
    let what = format!("migrating schema {schema}");
    let mut tx = pool.begin().await.map_err(database(&what))?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
        .bind(format!("baton.migrate.{schema}"))
        .execute(&mut *tx)
        .await
        .map_err(database(&what))?;
    // The name was checked (lowercase letters, digits, `_`): quoting is enough.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; SET LOCAL search_path TO \"{schema}\";"
    )))
    .execute(&mut *tx)
    .await
    .map_err(database(&what))?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version     bigint      PRIMARY KEY,
             description text        NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now()
         )",
    )
    .execute(&mut *tx)
    .await
    .map_err(database(&what))?;
    let current: i64 = sqlx::query("SELECT coalesce(max(version), 0) FROM schema_migrations")
        .fetch_one(&mut *tx)
        .await
        .and_then(|row| row.try_get(0))
        .map_err(database(&what))?;
    if current > Postgres::SCHEMA_VERSION {
        return Err(Error::SchemaTooNew {
            schema: schema.to_owned(),
            found: current,
            known: Postgres::SCHEMA_VERSION,
        });
    }
    for migration in MIGRATIONS.iter().filter(|m| m.version > current) {
        let step = format!(
            "migrating schema {schema} to version {} ({})",
            migration.version, migration.description
        );
        sqlx::raw_sql(migration.sql)
            .execute(&mut *tx)
            .await
            .map_err(database(&step))?;
        sqlx::query("INSERT INTO schema_migrations (version, description) VALUES ($1, $2)")
            .bind(migration.version)
            .bind(migration.description)
            .execute(&mut *tx)
            .await
            .map_err(database(&step))?;
        tracing::info!(
            schema,
            version = migration.version,
            "applied a state store migration"
        );
    }
    tx.commit().await.map_err(database(&what))
}

/// The records of `runs` (sorted), workflow documents first, then each run's
/// creation and history in append order.
async fn read_runs(conn: &mut PgConnection, runs: &[i64]) -> Result<Vec<Record>, Error> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let what = "reading runs";
    let created = sqlx::query(
        "SELECT run_id, workflow, input::text, created_at_ms FROM runs
          WHERE run_id = ANY($1) ORDER BY run_id",
    )
    .bind(runs)
    .fetch_all(&mut *conn)
    .await
    .map_err(database(what))?;
    let mut keys: Vec<String> = Vec::new();
    let mut seen = HashSet::new();
    for row in &created {
        let key: String = row.try_get(1).map_err(database(what))?;
        if seen.insert(key.clone()) {
            keys.push(key);
        }
    }
    let documents: HashMap<String, String> =
        sqlx::query("SELECT key, document::text FROM workflows WHERE key = ANY($1)")
            .bind(&keys)
            .fetch_all(&mut *conn)
            .await
            .and_then(|rows| {
                rows.iter()
                    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
                    .collect()
            })
            .map_err(database(what))?;
    let history = sqlx::query(
        "SELECT run_id, kind, task, status, attempt, agent, at, detail FROM history
          WHERE run_id = ANY($1) ORDER BY run_id, id",
    )
    .bind(runs)
    .fetch_all(&mut *conn)
    .await
    .map_err(database(what))?;

    let mut out = Vec::with_capacity(keys.len() + created.len() + history.len());
    for key in keys {
        // A document that is missing stays missing: resuming reports it.
        if let Some(document) = documents.get(&key) {
            out.push(Record::Workflow {
                key: workflow_key(&key)?,
                document: document.clone(),
            });
        }
    }
    let mut history = history.iter().peekable();
    for row in &created {
        let run: i64 = row.try_get(0).map_err(database(what))?;
        let workflow: String = row.try_get(1).map_err(database(what))?;
        out.push(Record::RunCreated {
            run: RunId(run as u64),
            workflow: workflow_key(&workflow)?,
            input: row.try_get(2).map_err(database(what))?,
            at_ms: row.try_get::<i64, _>(3).map_err(database(what))? as u64,
        });
        while let Some(row) = history.next_if(|h| h.try_get::<i64, _>(0).ok() == Some(run)) {
            out.push(history_record(row)?);
        }
    }
    Ok(out)
}

/// Decodes one `history` row.
fn history_record(row: &PgRow) -> Result<Record, Error> {
    let what = "decoding the history";
    let get = database(what);
    let decode = || -> Result<Record, sqlx::Error> {
        let run = RunId(row.try_get::<i64, _>(0)? as u64);
        let kind: i16 = row.try_get(1)?;
        let status: i16 = row.try_get(3)?;
        let at = row.try_get::<i64, _>(6)? as u64;
        let detail = row
            .try_get::<Option<Vec<u8>>, _>(7)?
            .map(String::from_utf8)
            .transpose()
            .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        let bad = |message: String| sqlx::Error::Decode(message.into());
        let code = u8::try_from(status).map_err(|_| bad(format!("status code {status}")))?;
        match kind {
            KIND_TASK => Ok(Record::Task {
                run,
                task: u32::try_from(row.try_get::<i64, _>(2)?)
                    .map_err(|e| bad(format!("task: {e}")))?,
                status: TaskStatus::from_u8(code)
                    .ok_or_else(|| bad(format!("task status code {status}")))?,
                attempt: u32::try_from(row.try_get::<i64, _>(4)?)
                    .map_err(|e| bad(format!("attempt: {e}")))?,
                agent: u16::try_from(row.try_get::<i32, _>(5)?)
                    .map_err(|e| bad(format!("agent: {e}")))?,
                at_us: at,
                detail,
            }),
            KIND_RUN => Ok(Record::Run {
                run,
                status: RunStatus::from_u8(code)
                    .ok_or_else(|| bad(format!("run status code {status}")))?,
                at_ms: at,
                reason: detail,
            }),
            other => Err(bad(format!("record kind {other}"))),
        }
    };
    decode().map_err(get)
}

fn workflow_key(hex: &str) -> Result<u128, Error> {
    u128::from_str_radix(hex, 16).map_err(|e| Error::Database {
        what: "decoding a workflow key".into(),
        message: format!("{hex:?} is not 32 hex digits: {e}"),
    })
}

fn run_status(name: &str) -> Result<RunStatus, Error> {
    [
        RunStatus::Running,
        RunStatus::Paused,
        RunStatus::Compensating,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ]
    .into_iter()
    .find(|s| s.as_str() == name)
    .ok_or_else(|| Error::Database {
        what: "decoding a run's status".into(),
        message: format!("unknown status {name:?}"),
    })
}

// ----- the writer -----------------------------------------------------------------

/// Should the writer stop other than by finishing (a panic, or the runtime
/// shutting down under it), fails the store instead of leaving `sync` and `close`
/// waiting forever.
struct OnAbort<'a> {
    shared: &'a Shared,
    finished: bool,
}

impl Drop for OnAbort<'_> {
    fn drop(&mut self) {
        if !self.finished {
            let end = State::Failed("the state writer task stopped unexpectedly".into());
            self.shared.queue().state = end.clone();
            self.shared.durable.send_modify(|d| d.state = end);
        }
    }
}

/// The writer: takes everything queued, writes it in transactions of at most
/// `max_batch` records, publishes the durable sequence number, until closed.
async fn write_loop(shared: Arc<Shared>, pool: PgPool, instance: i64, max_batch: usize) {
    let mut guard = OnAbort {
        shared: &shared,
        finished: false,
    };
    let mut batches: Vec<Vec<Record>> = Vec::new();
    let end = 'run: loop {
        let last_seq = loop {
            {
                let mut queue = shared.queue();
                if !queue.batches.is_empty() {
                    std::mem::swap(&mut queue.batches, &mut batches);
                    break queue.last_seq;
                }
                if queue.state != State::Open {
                    break 'run State::Closed;
                }
            }
            shared.wake.notified().await;
        };
        let total: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let mut durable = last_seq - total;
        let records: Vec<&Record> = batches.iter().flatten().collect();
        for chunk in records.chunks(max_batch) {
            if let Err(message) = write_chunk(&pool, instance, chunk, &shared).await {
                tracing::error!(%message, "state store write failed; the store is closed");
                break 'run State::Failed(message);
            }
            durable += chunk.len() as u64;
            shared.durable.send_modify(|d| d.seq = durable);
        }
        drop(records);
        batches.clear();
        if batches.capacity() > 1 << 12 {
            batches = Vec::new();
        }
    };
    let mut queue = shared.queue();
    queue.state = end.clone();
    // Appended after the failure was known to no caller, never acknowledged.
    let discarded = std::mem::take(&mut queue.batches);
    drop(queue);
    drop(discarded);
    shared.durable.send_modify(|d| d.state = end);
    guard.finished = true;
}

/// The columns of `history` rows, one vector each (bound as arrays and unnested).
#[derive(Default)]
struct HistoryRows<'a> {
    run: Vec<i64>,
    kind: Vec<i16>,
    task: Vec<Option<i64>>,
    status: Vec<i16>,
    attempt: Vec<Option<i64>>,
    agent: Vec<Option<i32>>,
    at: Vec<i64>,
    detail: Vec<Option<&'a [u8]>>,
}

/// The last status of a run in one transaction, for its `runs` row.
struct RunUpdate<'a> {
    status: RunStatus,
    at_ms: u64,
    /// The last reason given in the transaction, if any.
    reason: Option<&'a str>,
}

/// Writes one transaction: documents, new runs, then the history of the runs this
/// instance owns (locked), and their `runs` rows. Records of other runs are
/// dropped and their runs reported lost.
async fn write_chunk(
    pool: &PgPool,
    instance: i64,
    chunk: &[&Record],
    shared: &Shared,
) -> Result<(), String> {
    // What was lost before stays lost (unless claimed back, which clears it).
    let dropped: HashSet<RunId> = {
        let lost = shared.lost();
        if lost.dropped.is_empty() {
            HashSet::new()
        } else {
            chunk
                .iter()
                .filter_map(|r| r.run())
                .filter(|run| lost.dropped.contains(run))
                .collect()
        }
    };

    let mut workflows: (Vec<String>, Vec<&str>) = Default::default();
    let mut seen_workflows = HashSet::new();
    let mut created: (Vec<i64>, Vec<String>, Vec<&str>, Vec<i64>) = Default::default();
    let mut written: Vec<i64> = Vec::new();
    let mut seen_written = HashSet::new();
    for record in chunk {
        match record {
            Record::Workflow { key, document } if seen_workflows.insert(*key) => {
                workflows.0.push(format!("{key:032x}"));
                workflows.1.push(document);
            }
            Record::RunCreated {
                run,
                workflow,
                input,
                at_ms,
            } if !dropped.contains(run) => {
                created.0.push(run.0 as i64);
                created.1.push(format!("{workflow:032x}"));
                created.2.push(input);
                created.3.push(*at_ms as i64);
            }
            Record::Task { run, .. } | Record::Run { run, .. }
                if !dropped.contains(run) && seen_written.insert(*run) =>
            {
                written.push(run.0 as i64);
            }
            _ => {}
        }
    }

    let what = |step: &str| format!("writing {} records ({step})", chunk.len());
    let fail = |step: &'static str| move |e: sqlx::Error| format!("{}: {e}", what(step));
    let mut tx = pool.begin().await.map_err(fail("begin"))?;
    if !workflows.0.is_empty() {
        sqlx::query(
            "INSERT INTO workflows (key, document)
             SELECT k, d::json FROM UNNEST($1::text[], $2::text[]) AS t(k, d)
             ON CONFLICT (key) DO NOTHING",
        )
        .bind(&workflows.0)
        .bind(&workflows.1)
        .execute(&mut *tx)
        .await
        .map_err(fail("workflows"))?;
    }
    let mut owned: HashSet<i64> = HashSet::new();
    let mut conflicts: Vec<i64> = Vec::new();
    if !created.0.is_empty() {
        let inserted: Vec<i64> = sqlx::query(
            "INSERT INTO runs (run_id, workflow, input, created_at_ms, status, owner)
             SELECT r, w, i::json, a, 'running', $5
               FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[]) AS t(r, w, i, a)
             ON CONFLICT (run_id) DO NOTHING
             RETURNING run_id",
        )
        .bind(&created.0)
        .bind(&created.1)
        .bind(&created.2)
        .bind(&created.3)
        .bind(instance)
        .fetch_all(&mut *tx)
        .await
        .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
        .map_err(fail("runs"))?;
        owned.extend(inserted);
        conflicts = created
            .0
            .iter()
            .copied()
            .filter(|r| !owned.contains(r))
            .collect();
    }
    let conflicted: HashSet<i64> = conflicts.iter().copied().collect();
    let check: Vec<i64> = written
        .iter()
        .copied()
        .filter(|r| !owned.contains(r) && !conflicted.contains(r))
        .collect();
    if !check.is_empty() {
        let still_mine: Vec<i64> =
            sqlx::query("SELECT run_id FROM runs WHERE run_id = ANY($1) AND owner = $2 FOR UPDATE")
                .bind(&check)
                .bind(instance)
                .fetch_all(&mut *tx)
                .await
                .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
                .map_err(fail("ownership"))?;
        owned.extend(still_mine);
    }

    let mut rows = HistoryRows::default();
    let mut updates: HashMap<i64, RunUpdate<'_>> = HashMap::new();
    for record in chunk {
        match record {
            Record::Task {
                run,
                task,
                status,
                attempt,
                agent,
                at_us,
                detail,
            } if owned.contains(&(run.0 as i64)) => {
                rows.run.push(run.0 as i64);
                rows.kind.push(KIND_TASK);
                rows.task.push(Some(i64::from(*task)));
                rows.status.push(i16::from(*status as u8));
                rows.attempt.push(Some(i64::from(*attempt)));
                rows.agent.push(Some(i32::from(*agent)));
                rows.at.push(*at_us as i64);
                rows.detail.push(detail.as_deref().map(str::as_bytes));
            }
            Record::Run {
                run,
                status,
                at_ms,
                reason,
            } if owned.contains(&(run.0 as i64)) => {
                rows.run.push(run.0 as i64);
                rows.kind.push(KIND_RUN);
                rows.task.push(None);
                rows.status.push(i16::from(*status as u8));
                rows.attempt.push(None);
                rows.agent.push(None);
                rows.at.push(*at_ms as i64);
                rows.detail.push(reason.as_deref().map(str::as_bytes));
                let update = updates.entry(run.0 as i64).or_insert(RunUpdate {
                    status: *status,
                    at_ms: *at_ms,
                    reason: None,
                });
                update.status = *status;
                update.at_ms = *at_ms;
                if let Some(reason) = reason {
                    update.reason = Some(reason);
                }
            }
            _ => {}
        }
    }
    if !rows.run.is_empty() {
        sqlx::query(
            "INSERT INTO history (run_id, kind, task, status, attempt, agent, at, detail)
             SELECT r, k, t, s, n, g, a, d
               FROM UNNEST($1::bigint[], $2::smallint[], $3::bigint[], $4::smallint[],
                           $5::bigint[], $6::integer[], $7::bigint[], $8::bytea[])
                    WITH ORDINALITY AS u(r, k, t, s, n, g, a, d, o)
              ORDER BY o",
        )
        .bind(&rows.run)
        .bind(&rows.kind)
        .bind(&rows.task)
        .bind(&rows.status)
        .bind(&rows.attempt)
        .bind(&rows.agent)
        .bind(&rows.at)
        .bind(&rows.detail)
        .execute(&mut *tx)
        .await
        .map_err(fail("history"))?;
    }
    if !updates.is_empty() {
        let mut run_ids = Vec::with_capacity(updates.len());
        let mut statuses = Vec::with_capacity(updates.len());
        let mut reasons = Vec::with_capacity(updates.len());
        let mut ats = Vec::with_capacity(updates.len());
        for (run, update) in &updates {
            run_ids.push(*run);
            statuses.push(update.status.as_str());
            // `text` holds no NUL; the exact reason is in `history`.
            reasons.push(update.reason.map(|r| r.replace('\0', "\u{fffd}")));
            ats.push(update.at_ms as i64);
        }
        sqlx::query(
            "UPDATE runs
                SET status = u.s,
                    reason = coalesce(u.reason, runs.reason),
                    finished_at_ms = CASE WHEN u.s IN ('completed', 'failed', 'cancelled')
                                          THEN u.a END,
                    updated_at = now()
               FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[])
                    AS u(r, s, reason, a)
              WHERE runs.run_id = u.r",
        )
        .bind(&run_ids)
        .bind(&statuses)
        .bind(&reasons)
        .bind(&ats)
        .execute(&mut *tx)
        .await
        .map_err(fail("run status"))?;
    }
    tx.commit().await.map_err(fail("commit"))?;

    let newly_lost: Vec<RunId> = conflicts
        .iter()
        .chain(written.iter().filter(|r| !owned.contains(r)))
        .map(|&r| RunId(r as u64))
        .collect();
    if !newly_lost.is_empty() {
        let mut lost = shared.lost();
        for run in newly_lost {
            if lost.dropped.insert(run) {
                if conflicted.contains(&(run.0 as i64)) {
                    tracing::warn!(%run, instance, "a run with this id already exists; this one's records are dropped");
                } else {
                    tracing::warn!(%run, instance, "run lost: another instance owns it now; its records are dropped");
                }
                lost.reported.push(run);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    //! PostgreSQL-specific behaviour: migrations, leases, fencing, takeover. The
    //! store contract shared with the embedded store is in `tests/it/store.rs`.
    //! Each test works in a schema of its own, dropped at the end.

    use std::sync::atomic::{AtomicU32, Ordering};

    use sqlx::Connection as _;

    use super::*;

    /// The database's URL from `BATON_TEST_POSTGRES_URL`; skips (returns `None`)
    /// when unset outside CI, fails in CI.
    fn url() -> Option<String> {
        match std::env::var("BATON_TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var_os("CI").is_some() => {
                panic!(
                    "BATON_TEST_POSTGRES_URL is not set, but CI is: the PostgreSQL tests must run"
                )
            }
            _ => {
                eprintln!("skipped: BATON_TEST_POSTGRES_URL is not set");
                None
            }
        }
    }

    /// A schema of the test's own, dropped with everything in it when dropped.
    struct Schema {
        url: String,
        name: String,
    }

    impl Schema {
        fn new(test: &str) -> Option<Schema> {
            static NEXT: AtomicU32 = AtomicU32::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos();
            let mut name = format!(
                "u_{}_{nanos}_{}_{test}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            );
            name.truncate(63);
            Some(Schema { url: url()?, name })
        }

        fn options(&self, instance: &str) -> PostgresOptions {
            PostgresOptions {
                schema: self.name.clone(),
                instance_name: instance.into(),
                pool_size: 2,
                lease_ttl: Duration::from_secs(60),
                ..PostgresOptions::new(&self.url)
            }
        }

        async fn open(&self, instance: &str) -> Postgres {
            Postgres::open(self.options(instance)).await.unwrap()
        }

        /// Runs `sql` on a connection of its own (in the schema).
        async fn execute(&self, sql: &str) {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            let sql = format!("SET search_path TO \"{}\"; {sql}", self.name);
            sqlx::raw_sql(AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .unwrap();
        }

        /// Ends `store`'s lease now, as if it had stopped renewing it long ago.
        async fn expire(&self, store: &Postgres) {
            self.execute(&format!(
                "UPDATE instances SET lease_until = now() - interval '1 second' WHERE id = {}",
                store.instance()
            ))
            .await;
        }
    }

    impl Drop for Schema {
        fn drop(&mut self) {
            let (url, name) = (self.url.clone(), self.name.clone());
            let dropped = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut conn = sqlx::PgConnection::connect(&url).await?;
                    let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                    sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
                    conn.close().await
                })
            })
            .join();
            if !matches!(dropped, Ok(Ok(()))) {
                eprintln!("could not drop test schema {}", self.name);
            }
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
            let options = schema.options(&format!("node-{i}"));
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
        let err = Postgres::open(schema.options("second"))
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
            },
            Record::RunCreated {
                run: RunId(9),
                workflow: 1,
                input: "\"a\0\"".into(),
                at_ms: 0,
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
            ..schema.options("a")
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
            ["s1", "s2", "s3"].map(|name| tokio::spawn(Postgres::open(schema.options(name)))),
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
            ..schema.options(name)
        };
        let old = Postgres::open(quick("node")).await.unwrap();
        write(&old, vec![workflow(1), created(1, 1)]).await;
        // Another session holds the run's row, as a frozen process's transaction would.
        let mut hung = sqlx::PgConnection::connect(&schema.url).await.unwrap();
        let sql = format!(
            "SET search_path TO \"{}\"; BEGIN; SELECT * FROM runs FOR UPDATE;",
            schema.name
        );
        sqlx::raw_sql(AssertSqlSafe(sql))
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
}
