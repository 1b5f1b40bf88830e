//! Fixtures for tests against a real PostgreSQL, shared by this crate's inline
//! tests and its integration tests (feature `test-util`): the database's URL
//! from the environment, and a schema of the test's own that is dropped with
//! everything in it when the test ends, passed or not.

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AssertSqlSafe, Connection as _};

use super::PostgresOptions;

/// The test database's URL from `BATON_TEST_POSTGRES_URL`; `None` (after saying
/// on stderr which test is skipped) when it is unset outside CI. In CI (`CI`
/// set) a missing URL fails the test: the suite must not pass by skipping.
///
/// # Panics
///
/// When `CI` is set and the URL is not.
pub fn postgres_url() -> Option<String> {
    baton_events::testing::server_url(
        "BATON_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

/// A schema of the test's own, dropped (with everything in it) when dropped.
pub struct Schema {
    /// The database's URL.
    pub url: String,
    /// The schema's name (unique to this process, this moment and this test).
    pub name: String,
}

impl Schema {
    /// A fresh schema for `test` in the database of [`postgres_url`], or `None`
    /// when the PostgreSQL tests are skipped. Nothing is created until a store
    /// opens in it.
    pub fn new(test: &str) -> Option<Schema> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let url = postgres_url()?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let mut name = format!(
            "t_{}_{nanos}_{}_",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        name.extend(
            test.chars()
                .map(|c| c.to_ascii_lowercase())
                .filter(|c| c.is_ascii_alphanumeric() || *c == '_'),
        );
        name.truncate(63);
        Some(Schema { url, name })
    }

    /// Options for an instance named `instance` in this schema (a pool of two).
    pub fn options(&self, instance: &str) -> PostgresOptions {
        PostgresOptions {
            schema: self.name.clone(),
            instance_name: instance.into(),
            pool_size: 2,
            ..PostgresOptions::new(&self.url)
        }
    }

    /// Runs `sql` in this schema, on a connection of its own.
    ///
    /// # Panics
    ///
    /// If the database cannot be reached or refuses the statement.
    pub async fn execute(&self, sql: &str) {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .expect("the test database answers");
        let sql = format!("SET search_path TO \"{}\"; {sql}", self.name);
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect("the test statement runs");
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        // Also when the test panicked: on a thread and runtime of its own, since
        // the test's runtime may be the one unwinding.
        let (url, name) = (self.url.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                let sql = format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE");
                sqlx::raw_sql(AssertSqlSafe(sql)).execute(&mut conn).await?;
                conn.close().await
            })
            .map_err(std::io::Error::other)
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}", self.name);
        }
    }
}
