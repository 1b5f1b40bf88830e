//! The schema's versioned migrations, and applying them: the database's tables
//! are created and changed only here, in order, under an advisory lock.

use sqlx::postgres::PgPool;
use sqlx::{AssertSqlSafe, Row as _};

use super::{Postgres, database};
use crate::store::Error;

/// One versioned step of the schema.
pub(super) struct Migration {
    pub(super) version: i64,
    pub(super) description: &'static str,
    pub(super) sql: &'static str,
}

/// The schema's history, oldest first; versions grow by one. Never edit an
/// applied migration: add the next one.
pub(super) const MIGRATIONS: &[Migration] = &[
    Migration {
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
    },
    Migration {
        version: 2,
        description: "the catalog of workflows shared by the instances",
        // Servers before this migration created the table themselves, with a
        // `jsonb` document (which reorders keys): adopt it, and keep documents
        // as written from here on.
        sql: r#"
CREATE TABLE IF NOT EXISTS catalog (
    id         bigint  PRIMARY KEY,
    version    integer NOT NULL,
    created_ms bigint  NOT NULL,
    document   json    NOT NULL
);
ALTER TABLE catalog ALTER COLUMN document TYPE json USING document::json;
CREATE INDEX IF NOT EXISTS catalog_created ON catalog (created_ms);
"#,
    },
    Migration {
        version: 3,
        description: "the run a rerun was made from",
        sql: "ALTER TABLE runs ADD COLUMN IF NOT EXISTS rerun_of bigint;",
    },
    Migration {
        version: 4,
        description: "how far each instance's writer got, so that a commit whose answer was lost is not written twice",
        sql: "ALTER TABLE instances ADD COLUMN IF NOT EXISTS written_seq bigint NOT NULL DEFAULT 0;",
    },
];

/// `history.kind` of a [`Record::Task`].
pub(super) const KIND_TASK: i16 = 1;
/// `history.kind` of a [`Record::Run`].
pub(super) const KIND_RUN: i16 = 2;
/// `history.kind` of a [`Record::Item`]: `task` holds `item << 32 | task`
/// (the column is a `bigint`, both numbers are 32 bits), so the rows need no
/// column of their own and `task_states` (kind 1) does not see them.
pub(super) const KIND_ITEM: i16 = 3;

/// Creates the schema if needed and applies the migrations it lacks, under an
/// advisory lock so that instances starting together take turns.
pub(super) async fn migrate(pool: &PgPool, schema: &str) -> Result<(), Error> {
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
