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
//!      finished_at_ms bigint, owner bigint, updated_at timestamptz,
//!      rerun_of bigint              -- the run a rerun was made from)
//! history(id bigint identity, run_id bigint, kind smallint (1 task, 2 run),
//!         task bigint, status smallint (the status's code), attempt bigint,
//!         agent integer, at bigint (µs since the run started for a task, Unix ms
//!         for a run), detail bytea, primary key (run_id, id))
//! task_states                       -- a view: each task's latest history row
//! catalog(id bigint pk, version integer, created_ms bigint,
//!         document json)           -- workflows shared by `baton serve` instances
//! ```
//!
//! `history` holds every [`Record::Task`], [`Record::Item`] and [`Record::Run`] in append order
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

mod catalog;
mod read;
mod schema;
#[cfg(any(test, feature = "test-util"))]
pub mod testing;
#[cfg(test)]
mod tests;
mod writer;

use std::collections::HashSet;
use std::str::FromStr as _;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use sqlx::Row as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use tokio::sync::{Notify, watch};

pub use self::catalog::SharedWorkflow;
use self::read::{read_runs, run_status};
use self::schema::{MIGRATIONS, migrate};
use self::writer::write_loop;
use super::durable::{self, Durable, State};
use super::{Error, Record, RunId, RunStatus, StateStore};

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
    /// past it the statement fails instead of hanging (a write is then tried
    /// again, see `write_retry`). Zero means no limit.
    pub statement_timeout: Duration,
    /// How long a write that failed on the connection (the database
    /// restarted, a connection cut, a statement timed out) is tried again,
    /// with backoff, before the store gives up and fails (default 60 s).
    /// Nothing is acknowledged while it is retried; a commit whose answer
    /// was lost is found out (`instances.written_seq`) rather than written
    /// twice.
    pub write_retry: Duration,
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
            write_retry: Duration::from_secs(60),
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
            options.write_retry,
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

    /// How long this instance's lease lasts without a [`Postgres::heartbeat`].
    pub fn lease_ttl(&self) -> Duration {
        self.lease_ttl
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
        Record::Task { .. } | Record::Item { .. } | Record::Run { .. } => return Ok(()),
    };
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map(drop)
        .map_err(|e| Error::Invalid {
            what,
            message: format!("it is not JSON ({e})"),
        })
}
