//! Reading runs back from the tables: at open (this instance's unfinished
//! runs), when claiming an expired instance's runs, and for showing one run.

use std::collections::{HashMap, HashSet};

use sqlx::Row as _;
use sqlx::postgres::{PgConnection, PgRow};

use super::database;
use super::schema::{KIND_ITEM, KIND_RUN, KIND_TASK};
use crate::store::{Error, Record, RunId, RunStatus, TaskStatus};

/// The records of `runs` (sorted), workflow documents first, then each run's
/// creation and history in append order.
pub(super) async fn read_runs(conn: &mut PgConnection, runs: &[i64]) -> Result<Vec<Record>, Error> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let what = "reading runs";
    let created = sqlx::query(
        "SELECT run_id, workflow, input::text, created_at_ms, rerun_of FROM runs
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
            rerun_of: row
                .try_get::<Option<i64>, _>(4)
                .map_err(database(what))?
                .map(|of| RunId(of as u64)),
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
            KIND_ITEM => {
                let packed = row.try_get::<i64, _>(2)? as u64;
                Ok(Record::Item {
                    run,
                    task: packed as u32,
                    item: (packed >> 32) as u32,
                    status: TaskStatus::from_u8(code)
                        .ok_or_else(|| bad(format!("item status code {status}")))?,
                    attempt: u32::try_from(row.try_get::<i64, _>(4)?)
                        .map_err(|e| bad(format!("attempt: {e}")))?,
                    agent: u16::try_from(row.try_get::<i32, _>(5)?)
                        .map_err(|e| bad(format!("agent: {e}")))?,
                    at_us: at,
                    detail,
                })
            }
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

pub(super) fn run_status(name: &str) -> Result<RunStatus, Error> {
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
