//! `/api/v1/agents/{name}/poll` and `/api/v1/tasks/...`: remote workers lease
//! tasks, heartbeat, and report results.

use std::time::Duration;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use baton_api as api;
use baton_engine::agent::worker;

use crate::body::Json;
use crate::error::ApiError;
use crate::tokens::Caller;

use super::{ApiResult, St, reply, tenancy};

/// Refuses a lease of another tenant's call as unknown (its id is no
/// secret a tenant's worker can be trusted with: ids leak into logs).
fn theirs(state: &crate::AppState, caller: &Option<Extension<Caller>>, id: &str) -> ApiResult<()> {
    match tenancy::tenant(caller) {
        Some(t) if !state.options.engine.workers.of_tenant(id, t) => {
            Err(lease_error(worker::Error::UnknownLease(id.to_string())))
        }
        _ => Ok(()),
    }
}

fn lease_error(e: worker::Error) -> ApiError {
    match e {
        worker::Error::UnknownLease(_) => ApiError::NotFound(e.to_string()),
        worker::Error::Expired(_) => ApiError::Conflict(e.to_string()),
    }
}

fn lease_of(ms: u64, path: &str) -> ApiResult<Duration> {
    if !(100..=3_600_000).contains(&ms) {
        return Err(ApiError::invalid(
            path,
            "`lease_ms` must be between 100 and 3600000",
        ));
    }
    Ok(Duration::from_millis(ms))
}

pub(super) async fn worker_poll(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(name): Path<String>,
    Json(req): Json<api::WorkerPoll>,
) -> ApiResult<Response> {
    // A tenant's workers serve its workflows' agents of that name.
    let queue = worker::queue(tenancy::tenant(&caller), &name);
    if !(1..=1000).contains(&req.max) {
        return Err(ApiError::invalid(
            "$.max",
            "`max` must be between 1 and 1000",
        ));
    }
    let lease = lease_of(req.lease_ms, "$.lease_ms")?;
    let worker = match &req.worker {
        Some(w) if w.is_empty() || w.chars().count() > 200 || w.chars().any(char::is_control) => {
            return Err(ApiError::invalid(
                "$.worker",
                "`worker` must be 1 to 200 characters, without control characters",
            ));
        }
        Some(w) => w.as_str(),
        None => "(unnamed)",
    };
    let wait = Duration::from_millis(req.wait_ms.min(60_000)).min(state.options.long_poll_max);
    let got = tokio::select! {
        got = state.options.engine.workers.poll(&queue, worker, req.max, wait, lease) => got,
        _ = state.stopping.cancelled() => Vec::new(),
    };
    let assignments = got
        .into_iter()
        .map(|a| api::Assignment {
            id: a.id,
            run: a.run,
            task: a.task,
            attempt: a.attempt,
            input: a.input,
            lease_expires_ms: a.lease_expires_ms,
        })
        .collect();
    Ok(reply(StatusCode::OK, &api::Assignments { assignments }))
}

fn leased(id: String, status: &str) -> Response {
    reply(
        StatusCode::OK,
        &api::LeaseResponse {
            id,
            status: status.into(),
        },
    )
}

pub(super) async fn heartbeat(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    Json(req): Json<api::Heartbeat>,
) -> ApiResult<Response> {
    theirs(&state, &caller, &id)?;
    let lease = lease_of(req.lease_ms.unwrap_or(30_000), "$.lease_ms")?;
    state
        .options
        .engine
        .workers
        .heartbeat(&id, lease)
        .map_err(lease_error)?;
    Ok(leased(id, "extended"))
}

pub(super) async fn progress(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    Json(req): Json<api::ProgressReport>,
) -> ApiResult<Response> {
    theirs(&state, &caller, &id)?;
    state
        .options
        .engine
        .workers
        .progress(&id, req.progress)
        .map_err(lease_error)?;
    Ok(leased(id, "reported"))
}

pub(super) async fn complete(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    Json(req): Json<api::Complete>,
) -> ApiResult<Response> {
    theirs(&state, &caller, &id)?;
    state
        .options
        .engine
        .workers
        .complete(&id, req.output)
        .map_err(lease_error)?;
    Ok(leased(id, "completed"))
}

pub(super) async fn fail(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    Json(req): Json<api::Fail>,
) -> ApiResult<Response> {
    theirs(&state, &caller, &id)?;
    state
        .options
        .engine
        .workers
        .fail(&id, req.message, req.retryable)
        .map_err(lease_error)?;
    Ok(leased(id, "failed"))
}

/// Many reports in one request, so that a worker finishing thousands of
/// calls a second does not pay a round trip for each. Every report is
/// checked before any is applied: a 422 applies none.
pub(super) async fn report(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Json(req): Json<api::TaskReports>,
) -> ApiResult<Response> {
    if !(1..=1000).contains(&req.reports.len()) {
        return Err(ApiError::invalid(
            "$.reports",
            "`reports` must hold between 1 and 1000 reports",
        ));
    }
    let mut leases = Vec::with_capacity(req.reports.len());
    for (i, r) in req.reports.iter().enumerate() {
        let given = [
            r.complete.is_some(),
            r.fail.is_some(),
            r.heartbeat.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(ApiError::invalid(
                &format!("$.reports[{i}]"),
                "a report has exactly one of `complete`, `fail` and `heartbeat`",
            ));
        }
        let ms = r
            .heartbeat
            .as_ref()
            .and_then(|h| h.lease_ms)
            .unwrap_or(30_000);
        leases.push(lease_of(ms, &format!("$.reports[{i}].heartbeat.lease_ms"))?);
    }
    let workers = &state.options.engine.workers;
    let results = req
        .reports
        .into_iter()
        .zip(leases)
        .map(|(r, lease)| {
            if theirs(&state, &caller, &r.id).is_err() {
                return api::LeaseResponse {
                    id: r.id,
                    status: "unknown".into(),
                };
            }
            let (done, status) = if let Some(c) = r.complete {
                (workers.complete(&r.id, c.output), "completed")
            } else if let Some(f) = r.fail {
                (workers.fail(&r.id, f.message, f.retryable), "failed")
            } else {
                (workers.heartbeat(&r.id, lease), "extended")
            };
            let status = match done {
                Ok(()) => status,
                Err(worker::Error::Expired(_)) => "expired",
                Err(worker::Error::UnknownLease(_)) => "unknown",
            };
            api::LeaseResponse {
                id: r.id,
                status: status.into(),
            }
        })
        .collect();
    Ok(reply(StatusCode::OK, &api::TaskReportResults { results }))
}
