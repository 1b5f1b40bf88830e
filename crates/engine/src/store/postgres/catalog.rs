//! The catalog of workflow documents shared by the instances of one schema
//! (the table `catalog`, from migration 2): what `baton serve` instances post
//! and fetch so that a workflow created on one runs on all. Documents are kept
//! as written (`json`, not `jsonb`), so one fetched elsewhere is byte for byte
//! the one stored.

use sqlx::Row as _;
use sqlx::postgres::PgRow;

use super::{Postgres, database};
use crate::store::Error;

/// A workflow in the shared catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedWorkflow {
    /// Its id, unique across the instances.
    pub id: u64,
    /// Its version.
    pub version: u32,
    /// When it was created, Unix milliseconds.
    pub created_ms: u64,
    /// Its document, JSON text.
    pub document: String,
}

impl Postgres {
    /// Stores `workflow` in the shared catalog; a workflow with the same id is
    /// kept as it was (ids are unique: the first write wins).
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the document is not JSON; [`Error::Database`] if the
    /// database cannot be reached or refuses.
    pub async fn share_workflow(&self, workflow: &SharedWorkflow) -> Result<(), Error> {
        serde_json::from_str::<serde::de::IgnoredAny>(&workflow.document).map_err(|e| {
            Error::Invalid {
                what: format!("shared workflow {:016x}", workflow.id),
                message: format!("it is not JSON ({e})"),
            }
        })?;
        sqlx::query(
            "INSERT INTO catalog (id, version, created_ms, document)
             VALUES ($1, $2, $3, $4::json)
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(workflow.id as i64)
        .bind(workflow.version as i32)
        .bind(workflow.created_ms as i64)
        .bind(&workflow.document)
        .execute(self.pool())
        .await
        .map(drop)
        .map_err(database("sharing a workflow"))
    }

    /// The shared workflow `id`, if any instance stored it.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the database cannot be reached or refuses.
    pub async fn shared_workflow(&self, id: u64) -> Result<Option<SharedWorkflow>, Error> {
        let what = "reading the shared catalog";
        sqlx::query("SELECT id, version, created_ms, document::text FROM catalog WHERE id = $1")
            .bind(id as i64)
            .fetch_optional(self.pool())
            .await
            .map_err(database(what))?
            .map(|row| shared(&row).map_err(database(what)))
            .transpose()
    }

    /// Every shared workflow, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Database`] if the database cannot be reached or refuses.
    pub async fn shared_workflows(&self) -> Result<Vec<SharedWorkflow>, Error> {
        let what = "reading the shared catalog";
        sqlx::query(
            "SELECT id, version, created_ms, document::text FROM catalog ORDER BY created_ms, id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(database(what))?
        .iter()
        .map(|row| shared(row).map_err(database(what)))
        .collect()
    }
}

fn shared(row: &PgRow) -> Result<SharedWorkflow, sqlx::Error> {
    Ok(SharedWorkflow {
        id: row.try_get::<i64, _>(0)? as u64,
        version: row.try_get::<i32, _>(1)? as u32,
        created_ms: row.try_get::<i64, _>(2)? as u64,
        document: row.try_get(3)?,
    })
}
