//! The writer task: takes what was appended and writes it in transactions,
//! fencing every run it writes (only the runs this instance still owns are
//! written; the others are reported lost).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::Row as _;
use sqlx::postgres::PgPool;

use super::schema::{KIND_ITEM, KIND_RUN, KIND_TASK};
use super::{Shared, State};
use crate::store::{Record, RunId, RunStatus};

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
/// `max_batch` records (each tried again for `retry` when the connection
/// fails), publishes the durable sequence number, until closed.
pub(super) async fn write_loop(
    shared: Arc<Shared>,
    pool: PgPool,
    instance: i64,
    max_batch: usize,
    retry: Duration,
) {
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
            let end = durable + chunk.len() as u64;
            if let Err(message) = write_retrying(&pool, instance, chunk, end, &shared, retry).await
            {
                tracing::error!(%message, "state store write failed; the store is closed");
                break 'run State::Failed(message);
            }
            durable = end;
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

/// Why a write failed.
#[derive(Debug)]
struct WriteError {
    /// What was being done, and the database's answer.
    message: String,
    /// A failure of the connection or the server (cut, restart, timeout,
    /// a transaction the server aborted), not of the records: worth trying
    /// again.
    transient: bool,
    /// It failed while committing: the transaction may have been committed
    /// before the answer was lost.
    at_commit: bool,
}

/// Whether `e` is the connection's or the server's, not the records'.
fn transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions (08…), the server shutting down or starting
        // (57P01–57P03), a statement cancelled by its timeout (57014),
        // serialization failures and deadlocks (40001, 40P01).
        sqlx::Error::Database(db) => db.code().is_some_and(|c| {
            c.starts_with("08")
                || matches!(
                    &*c,
                    "57P01" | "57P02" | "57P03" | "57014" | "40001" | "40P01"
                )
        }),
        _ => false,
    }
}

/// Writes `chunk` (whose last record is the writer's `end`th), trying again
/// with backoff while the failure is the connection's, for `retry` at most.
/// After a failed commit it first asks whether the commit went through
/// (`instances.written_seq`), so that a chunk is never written twice.
async fn write_retrying(
    pool: &PgPool,
    instance: i64,
    chunk: &[&Record],
    end: u64,
    shared: &Shared,
    retry: Duration,
) -> Result<(), String> {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(50);
    let mut attempts = 0u32;
    let mut unsure = false;
    loop {
        if unsure {
            match committed(pool, instance, end).await {
                Ok(true) => return Ok(()),
                // Not committed: written again below.
                Ok(false) => {}
                Err(e) if transient(&e) && started.elapsed() < retry => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                    continue;
                }
                Err(e) => return Err(format!("checking whether a commit went through: {e}")),
            }
        }
        attempts += 1;
        match write_chunk(pool, instance, chunk, end, shared).await {
            Ok(()) => {
                if attempts > 1 {
                    tracing::info!(attempts, "state store write succeeded after retrying");
                }
                return Ok(());
            }
            Err(e) if e.transient && started.elapsed() < retry => {
                tracing::warn!(message = %e.message, attempts, "state store write failed; trying again");
                unsure = e.at_commit;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e.message),
        }
    }
}

/// Whether this instance's writer committed the chunk ending at `end`.
async fn committed(pool: &PgPool, instance: i64, end: u64) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT written_seq FROM instances WHERE id = $1")
        .bind(instance)
        .fetch_optional(pool)
        .await?;
    match row {
        Some(row) => Ok(row.try_get::<i64, _>(0)? >= end as i64),
        // The instance's row is gone (expired and removed): whether its
        // commit went through cannot be known.
        None => Err(sqlx::Error::RowNotFound),
    }
}

/// A chunk's records sorted by table, before the database is asked anything.
#[derive(Debug, Default, PartialEq)]
struct Sorted<'a> {
    /// `workflows` rows: keys (32 hex digits) and documents, each key once.
    workflow_keys: Vec<String>,
    workflow_documents: Vec<&'a str>,
    /// `runs` rows to insert: run ids, workflow keys, inputs, creation times.
    created_runs: Vec<i64>,
    created_workflows: Vec<String>,
    created_inputs: Vec<&'a str>,
    created_at_ms: Vec<i64>,
    created_rerun_of: Vec<Option<i64>>,
    /// The runs with task or run records, each once, in order of appearance.
    written: Vec<i64>,
}

/// Sorts `chunk` by table, leaving out the records of `dropped` runs (lost
/// before: they stay lost unless claimed back).
fn sort<'a>(chunk: &[&'a Record], dropped: &HashSet<RunId>) -> Sorted<'a> {
    let mut sorted = Sorted::default();
    let mut seen_workflows = HashSet::new();
    let mut seen_written = HashSet::new();
    for record in chunk {
        match record {
            Record::Workflow { key, document } if seen_workflows.insert(*key) => {
                sorted.workflow_keys.push(format!("{key:032x}"));
                sorted.workflow_documents.push(document);
            }
            Record::RunCreated {
                run,
                workflow,
                input,
                at_ms,
                rerun_of,
            } if !dropped.contains(run) => {
                sorted.created_runs.push(run.0 as i64);
                sorted.created_workflows.push(format!("{workflow:032x}"));
                sorted.created_inputs.push(input);
                sorted.created_at_ms.push(*at_ms as i64);
                sorted.created_rerun_of.push(rerun_of.map(|of| of.0 as i64));
            }
            Record::Task { run, .. } | Record::Item { run, .. } | Record::Run { run, .. }
                if !dropped.contains(run) && seen_written.insert(*run) =>
            {
                sorted.written.push(run.0 as i64);
            }
            _ => {}
        }
    }
    sorted
}

/// The columns of `history` rows, one vector each (bound as arrays and unnested).
#[derive(Debug, Default, PartialEq)]
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
#[derive(Debug, PartialEq)]
struct RunUpdate<'a> {
    status: RunStatus,
    at_ms: u64,
    /// The last reason given in the transaction, if any.
    reason: Option<&'a str>,
}

/// The `history` rows of the runs in `owned`, in append order, and each such
/// run's `runs` row update (its last status, and its last reason if any).
fn history<'a>(
    chunk: &[&'a Record],
    owned: &HashSet<i64>,
) -> (HistoryRows<'a>, HashMap<i64, RunUpdate<'a>>) {
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
            Record::Item {
                run,
                task,
                item,
                status,
                attempt,
                agent,
                at_us,
                detail,
            } if owned.contains(&(run.0 as i64)) => {
                rows.run.push(run.0 as i64);
                rows.kind.push(KIND_ITEM);
                rows.task
                    .push(Some(((u64::from(*item) << 32) | u64::from(*task)) as i64));
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
    (rows, updates)
}

/// Fencing's verdict: the runs of a transaction that are lost to this instance,
/// those whose creation found the id taken (`conflicts`) and those written but
/// not (or no longer) owned here.
fn lost_runs(conflicts: &[i64], written: &[i64], owned: &HashSet<i64>) -> Vec<RunId> {
    conflicts
        .iter()
        .chain(written.iter().filter(|r| !owned.contains(r)))
        .map(|&r| RunId(r as u64))
        .collect()
}

/// Writes one transaction: documents, new runs, then the history of the runs this
/// instance owns (locked), and their `runs` rows. Records of other runs are
/// dropped and their runs reported lost.
async fn write_chunk(
    pool: &PgPool,
    instance: i64,
    chunk: &[&Record],
    end: u64,
    shared: &Shared,
) -> Result<(), WriteError> {
    let sorted = {
        let lost = shared.lost();
        sort(chunk, &lost.dropped)
    };
    let what = |step: &str| format!("writing {} records ({step})", chunk.len());
    let fail = |step: &'static str| {
        move |e: sqlx::Error| WriteError {
            message: format!("{}: {e}", what(step)),
            transient: transient(&e),
            at_commit: step == "commit",
        }
    };
    let mut tx = pool.begin().await.map_err(fail("begin"))?;
    if !sorted.workflow_keys.is_empty() {
        insert_workflows(&mut tx, &sorted)
            .await
            .map_err(fail("workflows"))?;
    }
    let mut owned: HashSet<i64> = HashSet::new();
    let mut conflicts: Vec<i64> = Vec::new();
    if !sorted.created_runs.is_empty() {
        owned.extend(
            insert_runs(&mut tx, &sorted, instance)
                .await
                .map_err(fail("runs"))?,
        );
        conflicts = (sorted.created_runs.iter().copied())
            .filter(|r| !owned.contains(r))
            .collect();
    }
    let check: Vec<i64> = (sorted.written.iter().copied())
        .filter(|r| !owned.contains(r) && !conflicts.contains(r))
        .collect();
    if !check.is_empty() {
        owned.extend(
            lock_owned(&mut tx, &check, instance)
                .await
                .map_err(fail("ownership"))?,
        );
    }
    let (rows, updates) = history(chunk, &owned);
    if !rows.run.is_empty() {
        insert_history(&mut tx, &rows)
            .await
            .map_err(fail("history"))?;
    }
    if !updates.is_empty() {
        update_runs(&mut tx, &updates)
            .await
            .map_err(fail("run status"))?;
    }
    // How far this writer got, in the same transaction: after a commit
    // whose answer was lost, this says whether it went through.
    sqlx::query("UPDATE instances SET written_seq = $2 WHERE id = $1")
        .bind(instance)
        .bind(end as i64)
        .execute(&mut *tx)
        .await
        .map_err(fail("progress"))?;
    tx.commit().await.map_err(fail("commit"))?;

    let newly_lost = lost_runs(&conflicts, &sorted.written, &owned);
    if !newly_lost.is_empty() {
        let mut lost = shared.lost();
        for run in newly_lost {
            if lost.dropped.insert(run) {
                if conflicts.contains(&(run.0 as i64)) {
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

type Tx = sqlx::Transaction<'static, sqlx::Postgres>;

async fn insert_workflows(tx: &mut Tx, sorted: &Sorted<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO workflows (key, document)
         SELECT k, d::json FROM UNNEST($1::text[], $2::text[]) AS t(k, d)
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(&sorted.workflow_keys)
    .bind(&sorted.workflow_documents)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// Inserts the new runs, owned by `instance`; returns those inserted (an id
/// already taken is not).
async fn insert_runs(
    tx: &mut Tx,
    sorted: &Sorted<'_>,
    instance: i64,
) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query(
        "INSERT INTO runs (run_id, workflow, input, created_at_ms, status, owner, rerun_of)
         SELECT r, w, i::json, a, 'running', $5, o
           FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $6::bigint[])
             AS t(r, w, i, a, o)
         ON CONFLICT (run_id) DO NOTHING
         RETURNING run_id",
    )
    .bind(&sorted.created_runs)
    .bind(&sorted.created_workflows)
    .bind(&sorted.created_inputs)
    .bind(&sorted.created_at_ms)
    .bind(instance)
    .bind(&sorted.created_rerun_of)
    .fetch_all(&mut **tx)
    .await
    .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
}

/// Locks the rows of those of `runs` that `instance` still owns, and returns
/// them: the fence.
async fn lock_owned(tx: &mut Tx, runs: &[i64], instance: i64) -> Result<Vec<i64>, sqlx::Error> {
    sqlx::query("SELECT run_id FROM runs WHERE run_id = ANY($1) AND owner = $2 FOR UPDATE")
        .bind(runs)
        .bind(instance)
        .fetch_all(&mut **tx)
        .await
        .and_then(|rows| rows.iter().map(|r| r.try_get(0)).collect())
}

async fn insert_history(tx: &mut Tx, rows: &HistoryRows<'_>) -> Result<(), sqlx::Error> {
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
    .execute(&mut **tx)
    .await
    .map(drop)
}

async fn update_runs(
    tx: &mut Tx,
    updates: &HashMap<i64, RunUpdate<'_>>,
) -> Result<(), sqlx::Error> {
    let mut run_ids = Vec::with_capacity(updates.len());
    let mut statuses = Vec::with_capacity(updates.len());
    let mut reasons = Vec::with_capacity(updates.len());
    let mut ats = Vec::with_capacity(updates.len());
    for (run, update) in updates {
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
    .execute(&mut **tx)
    .await
    .map(drop)
}

#[cfg(test)]
mod tests {
    //! The writer's pure steps: sorting a chunk by table and fencing's verdict
    //! (the SQL is exercised against a real database in `super::super::tests`).

    use super::*;
    use crate::store::TaskStatus;

    fn task(run: u64, status: TaskStatus) -> Record {
        Record::Task {
            run: RunId(run),
            task: 0,
            status,
            attempt: 1,
            agent: 0,
            at_us: 5,
            detail: None,
        }
    }

    fn run(run: u64, status: RunStatus, reason: Option<&str>) -> Record {
        Record::Run {
            run: RunId(run),
            status,
            at_ms: 9,
            reason: reason.map(str::to_owned),
        }
    }

    #[test]
    fn sorting_keeps_each_workflow_and_written_run_once_and_leaves_out_dropped_runs() {
        let records = [
            Record::Workflow {
                key: 1,
                document: "{}".into(),
            },
            Record::Workflow {
                key: 1,
                document: "{}".into(),
            },
            Record::RunCreated {
                run: RunId(7),
                workflow: 1,
                input: "null".into(),
                at_ms: 3,
                rerun_of: None,
            },
            Record::RunCreated {
                run: RunId(8),
                workflow: 1,
                input: "1".into(),
                at_ms: 4,
                rerun_of: None,
            },
            task(7, TaskStatus::Ready),
            task(8, TaskStatus::Ready),
            task(7, TaskStatus::Running),
            run(9, RunStatus::Completed, None),
        ];
        let chunk: Vec<&Record> = records.iter().collect();
        let dropped = HashSet::from([RunId(8)]);
        let sorted = sort(&chunk, &dropped);
        assert_eq!(sorted.workflow_keys, vec![format!("{:032x}", 1)]);
        assert_eq!(sorted.workflow_documents, vec!["{}"]);
        assert_eq!(sorted.created_runs, vec![7]);
        assert_eq!(sorted.created_inputs, vec!["null"]);
        assert_eq!(sorted.created_at_ms, vec![3]);
        assert_eq!(sorted.written, vec![7, 9]);
    }

    #[test]
    fn only_owned_runs_get_history_rows_and_updates_keep_the_last_status_and_reason() {
        let records = [
            task(1, TaskStatus::Running),
            task(2, TaskStatus::Running),
            run(1, RunStatus::Compensating, Some("a task failed")),
            run(1, RunStatus::Failed, None),
            run(2, RunStatus::Completed, None),
        ];
        let chunk: Vec<&Record> = records.iter().collect();
        let (rows, updates) = history(&chunk, &HashSet::from([1]));
        assert_eq!(rows.run, vec![1, 1, 1]);
        assert_eq!(rows.kind, vec![KIND_TASK, KIND_RUN, KIND_RUN]);
        assert_eq!(rows.task, vec![Some(0), None, None]);
        assert_eq!(rows.detail, vec![None, Some(&b"a task failed"[..]), None]);
        assert_eq!(
            updates,
            HashMap::from([(
                1,
                RunUpdate {
                    status: RunStatus::Failed,
                    at_ms: 9,
                    reason: Some("a task failed"),
                }
            )])
        );
    }

    #[test]
    fn fencing_loses_conflicting_creations_and_runs_written_but_not_owned() {
        let owned = HashSet::from([1, 2]);
        assert_eq!(
            lost_runs(&[5], &[1, 2, 3, 4], &owned),
            vec![RunId(5), RunId(3), RunId(4)]
        );
        assert!(lost_runs(&[], &[1, 2], &owned).is_empty());
    }
}
