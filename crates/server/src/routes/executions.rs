//! `/api/v1/workflows/{id}/execute` and `/api/v1/executions/{id}`: start runs,
//! their status, pause, resume, cancel and rerun, and the deadlines of runs.

use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use baton_api as api;
use baton_engine::store::{RunId, RunStatus, TaskStatus};
use baton_engine::{RunQuery, RunView, Spec};
use baton_model::Format;
use serde_json::{Value, json};

use crate::AppState;
use crate::body::Json;
use crate::catalog::{Entry, Execution, now_ms};
use crate::error::ApiError;
use crate::tokens::Caller;

use super::tenancy::{self, own_run};
use super::workflows::{admit, plan_detail, resolved, workflow};
use super::{ApiResult, St, limit, parse_id, query, reply};
use crate::forward::{Origin, on_owner};

fn timeout_of(v: &Value) -> ApiResult<Duration> {
    let bad = || {
        ApiError::invalid(
            "$.execution_options.timeout",
            "`timeout` must be a duration such as \"30s\" or \"5m\", or a positive number of seconds",
        )
    };
    let d = match v {
        Value::String(s) => baton_model::duration::parse(s).map_err(|_| bad())?,
        Value::Number(n) => {
            let secs = n.as_f64().ok_or_else(bad)?;
            if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
                return Err(bad());
            }
            Duration::from_secs_f64(secs)
        }
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

/// A `retry` policy checked by the workflow language itself (so its errors and
/// defaults are the same as in a workflow file).
fn retry_of(v: &Value) -> ApiResult<baton_model::RetryPolicy> {
    let doc = json!({"tasks": [{"id": "t", "retry": v}]}).to_string();
    let source = baton_model::Source::from_str("retry_policy", &doc, Format::Json);
    match baton_model::load(&source) {
        Ok(mut c) => c.workflow.tasks[0].retry.take().map(|b| *b).ok_or_else(|| {
            ApiError::invalid(
                "$.execution_options.retry_policy",
                "expected a retry policy",
            )
        }),
        Err(baton_model::Error::Invalid { report, .. }) => Err(ApiError::InvalidRequest {
            detail: "execution_options.retry_policy is invalid".into(),
            errors: report
                .diagnostics
                .iter()
                .map(|d| {
                    let mut f = crate::catalog::field_error(d);
                    f.path = f
                        .path
                        .replace("$.tasks[0].retry", "$.execution_options.retry_policy");
                    f.location = None;
                    f
                })
                .collect(),
        }),
        Err(e) => Err(ApiError::invalid(
            "$.execution_options.retry_policy",
            e.to_string(),
        )),
    }
}

fn build_spec(
    state: &AppState,
    entry: &Entry,
    options: &api::ExecutionOptions,
) -> ApiResult<Arc<Spec>> {
    let compiled = state.catalog.compiled(entry)?;
    // Checked on every execution, not only at creation: the catalog may hold
    // workflows from before the policy (or another instance's).
    admit(state, &compiled.checked)?;
    let plain = options.retry_policy.is_none() && options.resource_constraints.is_none();
    if plain && let Some(spec) = compiled.spec.get() {
        return Ok(spec.clone());
    }
    // Parsed only when building: a cached spec was built from the same options.
    let build = || {
        let retry = options.retry_policy.as_ref().map(retry_of).transpose()?;
        let max_concurrency = match options
            .resource_constraints
            .as_ref()
            .and_then(|r| r.max_concurrency)
        {
            None => None,
            Some(n) => Some(std::num::NonZeroU32::new(n).ok_or_else(|| {
                ApiError::invalid(
                    "$.execution_options.resource_constraints.max_concurrency",
                    "`max_concurrency` must be at least 1",
                )
            })?),
        };
        let overrides = baton_engine::Overrides {
            agents: &state.options.agents,
            retry: retry.as_ref(),
            max_concurrency,
        };
        // Sub-workflows named from the catalog run as they are now.
        let checked = match resolved(state, &compiled.checked.workflow)? {
            Some(workflow) => std::borrow::Cow::Owned(baton_model::Checked {
                workflow,
                ..compiled.checked.clone()
            }),
            None => std::borrow::Cow::Borrowed(&compiled.checked),
        };
        Spec::with_overrides(
            &checked,
            compiled.plan.clone(),
            &overrides,
            &state.options.engine.agents(),
        )
        .map_err(cannot_run)
    };
    if plain {
        let spec = Arc::new(build()?);
        let _ = compiled.spec.set(spec.clone());
        return Ok(spec);
    }
    let key = (
        entry.id,
        serde_json::to_string(&(&options.retry_policy, &options.resource_constraints))
            .unwrap_or_default(),
    );
    state.specs.get_or_build(&key, build)
}

/// The answer when a workflow's agents cannot be built on this server.
fn cannot_run(e: baton_engine::SpecError) -> ApiError {
    let hint = match &e {
        baton_engine::SpecError::Agent(baton_engine::agent::Error::UnknownKind { .. }) => {
            Some(format!(
                "give the agent a type the engine runs ({}) in the server's `--config` file ([agents.NAME] type = ...)",
                baton_engine::agent::KINDS.join(", ")
            ))
        }
        _ => None,
    };
    ApiError::InvalidRequest {
        detail: format!("the workflow cannot run here: {e}"),
        errors: vec![api::FieldError {
            code: "cannot-run".into(),
            message: e.to_string(),
            path: "$.agents".into(),
            location: None,
            hint,
        }],
    }
}

pub(super) async fn execute(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    Json(req): Json<api::ExecuteRequest>,
) -> ApiResult<Response> {
    let entry = workflow(&state, tenancy::tenant(&caller), &id).await?;
    let timeout = req
        .execution_options
        .timeout
        .as_ref()
        .map(timeout_of)
        .transpose()?;
    let spec = build_spec(&state, &entry, &req.execution_options)?;
    // A tenant with a run quota counts its runs and starts one under its lock.
    let quota = entry
        .tenant
        .as_deref()
        .and_then(|t| Some((t, state.limits.run_quota(t)?)));
    let _starting = match &quota {
        Some((tenant, (max, lock))) => {
            let held = lock.clone().lock_owned().await;
            let executing = state
                .engine
                .list(RunQuery {
                    statuses: vec![
                        RunStatus::Running,
                        RunStatus::Paused,
                        RunStatus::Compensating,
                    ],
                    tenant: Some(tenant.to_string()),
                    // Every one: child runs come back too and are not counted.
                    limit: usize::MAX,
                    ..RunQuery::default()
                })
                .await?;
            // Child runs are their parent's work, not runs of their own.
            let tops = executing.iter().filter(|r| r.parent.is_none()).count();
            if tops >= *max as usize {
                return Err(crate::limits::Over::Runs {
                    tenant: tenant.to_string(),
                    max: *max,
                }
                .into());
            }
            Some(held)
        }
        None => None,
    };
    let created_ms = now_ms();
    let run = state.engine.submit(spec, req.input_data).await?;
    let deadline_ms = timeout.map(|t| created_ms + t.as_millis() as u64);
    state.executions.record(
        run,
        Execution {
            run: run.to_string(),
            workflow: id.clone(),
            created_ms,
            deadline_ms,
        },
    );
    if let Some(t) = timeout {
        arm(&state, run, t);
    }
    let mut res = reply(
        StatusCode::ACCEPTED,
        &api::ExecuteResponse {
            execution_id: run.to_string(),
            status: "executing".into(),
            workflow_id: id,
        },
    );
    if let Ok(v) = header::HeaderValue::from_str(&format!("/api/v1/executions/{run}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InstanceQuery {
    offset: Option<u32>,
    limit: Option<usize>,
}

/// `GET /api/v1/executions/{id}/tasks/{task}/instances`: a page of a fan-out's
/// items or a loop's iterations, in index order.
pub(super) async fn instances(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path((id, task)): Path<(String, String)>,
    q: Result<Query<InstanceQuery>, QueryRejection>,
    origin: Origin,
) -> ApiResult<Response> {
    let run = run_id(&id)?;
    if let Some(forwarded) = own_run(&state, tenancy::tenant(&caller), run, &origin).await? {
        return Ok(forwarded);
    }
    let q = query(q)?;
    let limit = limit(q.limit.or(Some(100)))? as u32;
    let offset = q.offset.unwrap_or(0);
    let page = on_owner(&state, run, origin, || {
        state.engine.instances(run, &task, offset, limit)
    })
    .await?;
    match page {
        Ok(page) => Ok(reply(StatusCode::OK, &page)),
        Err(forwarded) => Ok(forwarded),
    }
}

/// A new execution of a finished one from a task on: the tasks that
/// succeeded upstream (and beside) keep their outputs.
pub(super) async fn rerun(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    Json(req): Json<api::RerunRequest>,
) -> ApiResult<Response> {
    let of = run_id(&id)?;
    let tenant = tenancy::tenant(&caller);
    // Not forwarded (below): another tenant's run is as unknown as one
    // this instance does not hold.
    if let Some(tenant) = tenant
        && state.engine.status(of).await?.summary.tenant.as_deref() != Some(tenant)
    {
        return Err(ApiError::NotFound(format!("no execution {of}")));
    }
    let original = state.executions.get(of);
    // The workflow is admitted again: the server's policy may have changed
    // since the execution ran.
    if let Some(exec) = &original
        && let Ok(entry) = workflow(&state, tenant, &exec.workflow).await
    {
        admit(&state, &state.catalog.compiled(&entry)?.checked)?;
    }
    // Not forwarded: the execution must be known here (run here, or
    // remembered after it ended elsewhere).
    let run = match state.engine.rerun(of, &req.from).await {
        Err(baton_engine::Error::UnknownTask { run, task, hint }) => {
            let message = format!("execution {run} has no task `{task}`");
            return Err(ApiError::InvalidRequest {
                detail: format!("{message} (at $.from)"),
                errors: vec![api::FieldError {
                    code: "unknown-task".into(),
                    message,
                    path: "$.from".into(),
                    location: None,
                    hint,
                }],
            });
        }
        other => other?,
    };
    let workflow_id = original.map(|e| e.workflow).unwrap_or_default();
    state.executions.record(
        run,
        Execution {
            run: run.to_string(),
            workflow: workflow_id.clone(),
            created_ms: now_ms(),
            deadline_ms: None,
        },
    );
    let mut res = reply(
        StatusCode::ACCEPTED,
        &api::ExecuteResponse {
            execution_id: run.to_string(),
            status: "executing".into(),
            workflow_id,
        },
    );
    if let Ok(v) = header::HeaderValue::from_str(&format!("/api/v1/executions/{run}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Cancels `run` after `after` unless it ended.
fn arm(state: &Arc<AppState>, run: RunId, after: Duration) {
    let state = state.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(after) => {}
            _ = state.stopping.cancelled() => return,
        }
        state.executions.mark_timed_out(run);
        match state.engine.cancel(run).await {
            Ok(()) => tracing::info!(%run, "execution timed out: cancelled"),
            Err(baton_engine::Error::Conflict { .. } | baton_engine::Error::UnknownRun(_)) => {}
            Err(e) => tracing::warn!(%run, error = %e, "cancelling a timed-out execution"),
        }
    });
}

/// Re-arms the timeouts of executions that were running when the server stopped.
pub(crate) fn arm_deadlines(state: &Arc<AppState>) {
    let now = now_ms();
    let deadlines = state.executions.with_deadlines();
    if deadlines.is_empty() {
        return;
    }
    let state2 = state.clone();
    tokio::spawn(async move {
        let Ok(active) = state2.engine.active().await else {
            return;
        };
        for (run, deadline) in deadlines {
            if active.contains(&run) {
                arm(
                    &state2,
                    run,
                    Duration::from_millis(deadline.saturating_sub(now)),
                );
            }
        }
    });
}

pub(super) fn run_id(id: &str) -> ApiResult<RunId> {
    parse_id("execution", id).map(RunId)
}

/// A run id given as a query parameter: exactly 16 hex digits, else a 422
/// naming the parameter.
fn id_param(name: &str, value: Option<&str>, what: &str) -> ApiResult<Option<RunId>> {
    let Some(v) = value else { return Ok(None) };
    match v.parse::<RunId>() {
        Ok(id) if v.len() == 16 => Ok(Some(id)),
        _ => Err(ApiError::invalid(name, format!("`{name}` {what}"))),
    }
}

fn status_name(s: RunStatus) -> (&'static str, &'static str) {
    match s {
        RunStatus::Running => ("executing", "running"),
        RunStatus::Compensating => ("executing", "compensating"),
        RunStatus::Paused => ("paused", "paused"),
        RunStatus::Completed => ("completed", "done"),
        RunStatus::Failed => ("failed", "done"),
        RunStatus::Cancelled => ("cancelled", "done"),
    }
}

pub(crate) fn view(state: &AppState, run: RunId, v: RunView) -> api::ExecutionStatus {
    let s = &v.summary;
    let exec = state.executions.get(run);
    let (status, phase) = status_name(s.status);
    // A run admitted but with nothing started yet is still being planned.
    let status = if status == "executing"
        && s.tasks.pending + s.tasks.ready == v.task_states.len() as u64
        && s.makespan_ms == 0.0
    {
        "planning"
    } else {
        status
    };
    let timed_out = s.status == RunStatus::Cancelled
        && (state.executions.timed_out(run)
            || exec
                .as_ref()
                .and_then(|e| e.deadline_ms)
                .is_some_and(|d| d <= now_ms()));
    let reason = if timed_out {
        Some("timed out".to_string())
    } else {
        s.reason.clone()
    };
    // Agents in order of first use; busy while one of their tasks is in flight.
    let mut agents: Vec<api::AgentState> = Vec::new();
    let mut counts: Vec<(u64, u64)> = Vec::new();
    for t in &v.task_states {
        let Some(name) = &t.agent else { continue };
        let i = match agents.iter().position(|a| &a.agent_id == name) {
            Some(i) => i,
            None => {
                agents.push(api::AgentState {
                    agent_id: name.clone(),
                    status: "idle".into(),
                    current_task: None,
                    progress: 0.0,
                });
                counts.push((0, 0));
                agents.len() - 1
            }
        };
        counts[i].1 += 1;
        if t.status.is_final() {
            counts[i].0 += 1;
        } else if matches!(t.status, TaskStatus::Dispatched | TaskStatus::Running) {
            agents[i].status = "busy".into();
            agents[i].current_task.get_or_insert_with(|| t.id.clone());
        }
    }
    for (a, (done, all)) in agents.iter_mut().zip(&counts) {
        a.progress = *done as f64 / (*all).max(1) as f64;
    }
    api::ExecutionStatus {
        execution_id: run.to_string(),
        workflow_id: exec.map(|e| e.workflow),
        workflow: s.workflow.clone(),
        tenant: s.tenant.clone(),
        status: status.into(),
        current_phase: phase.into(),
        reason,
        rerun_of: s.rerun_of.map(|r| r.to_string()),
        parent_id: s.parent.map(|r| r.to_string()),
        performance_metrics: api::PerformanceMetrics {
            total_runtime: s.makespan_ms / 1e3,
            agents_allocated: agents.len(),
            tasks_completed: s.tasks.succeeded,
            coordination_overhead: s.coordination_overhead_ms / 1e3,
            dispatch_latency_us: serde_json::to_value(s.coordination_overhead)
                .unwrap_or(Value::Null),
            retries: s.retries,
            critical_path: s.critical_path.clone(),
            tokens: s.tokens.map(|t| api::Tokens {
                prompt: t.prompt,
                completion: t.completion,
            }),
        },
        agents,
        task_counts: serde_json::to_value(s.tasks).unwrap_or(Value::Null),
        tasks: v
            .task_states
            .into_iter()
            .map(|t| api::TaskState {
                id: t.id,
                status: t.status.to_string(),
                attempt: t.attempt,
                agent: t.agent,
                output: t.output,
                error: t.error,
                reason: t.reason,
                items: t.items.and_then(|i| serde_json::to_value(i).ok()),
                child: t.child.map(|c| c.to_string()),
            })
            .collect(),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExecutionQuery {
    limit: Option<usize>,
    cursor: Option<String>,
    status: Option<String>,
    workflow: Option<String>,
    since_ms: Option<u64>,
    until_ms: Option<u64>,
    parent: Option<String>,
}

/// `GET /api/v1/executions`: this instance's runs (those it drives and the
/// newest that ended), newest first, filtered, a page at a time.
pub(super) async fn list_executions(
    State(state): St,
    caller: Option<Extension<Caller>>,
    q: Result<Query<ExecutionQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let limit = limit(q.limit)?;
    let before = id_param("cursor", q.cursor.as_deref(), "is not one this server gave")?;
    let parent = id_param(
        "parent",
        q.parent.as_deref(),
        "is an execution id: 16 hex digits",
    )?;
    let statuses = match q.status.as_deref() {
        None => Vec::new(),
        Some("executing") => vec![RunStatus::Running, RunStatus::Compensating],
        Some("paused") => vec![RunStatus::Paused],
        Some("completed") => vec![RunStatus::Completed],
        Some("failed") => vec![RunStatus::Failed],
        Some("cancelled") => vec![RunStatus::Cancelled],
        Some(other) => {
            return Err(ApiError::invalid(
                "status",
                format!(
                    "unknown status `{other}`: use executing, paused, completed, failed or cancelled"
                ),
            ));
        }
    };
    let mut runs = state
        .engine
        .list(RunQuery {
            statuses,
            workflow: q.workflow,
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            before,
            parent,
            tenant: tenancy::tenant(&caller).map(str::to_string),
            limit: limit + 1,
        })
        .await?;
    let more = runs.len() > limit;
    runs.truncate(limit);
    let next_cursor = more
        .then(|| runs.last().map(|r| r.run.to_string()))
        .flatten();
    let items = runs
        .into_iter()
        .map(|r| api::ExecutionEntry {
            execution_id: r.run.to_string(),
            workflow_id: state.executions.get(r.run).map(|e| e.workflow),
            workflow: r.workflow,
            tenant: r.tenant,
            status: status_name(r.status).0.into(),
            created_at_ms: r.created_ms,
            reason: r.reason,
            task_counts: serde_json::to_value(r.tasks).unwrap_or(Value::Null),
            parent_id: r.parent.map(|p| p.to_string()),
            rerun_of: r.rerun_of.map(|p| p.to_string()),
        })
        .collect();
    Ok(reply(StatusCode::OK, &api::Page { items, next_cursor }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StatusQuery {
    wait_ms: Option<u64>,
}

/// `GET /api/v1/executions/{id}`: a run's status; with `wait_ms`, answered
/// when the run ends or the wait is over, whichever comes first (capped by
/// `long_poll_max_ms` and half the request timeout), so a client following a
/// run learns of its end at once without polling.
pub(super) async fn get_execution(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    origin: Origin,
    q: Result<Query<StatusQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let wait = Duration::from_millis(query(q)?.wait_ms.unwrap_or(0))
        .min(state.options.long_poll_max)
        .min(state.options.request_timeout / 2);
    let run = run_id(&id)?;
    // Before any wait: how long another tenant's run takes to end is not
    // this caller's to learn.
    if !wait.is_zero()
        && let Some(forwarded) = own_run(&state, tenancy::tenant(&caller), run, &origin).await?
    {
        return Ok(forwarded);
    }
    let status = || async {
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::timeout(wait, state.engine.wait(run)) => {}
                _ = state.stopping.cancelled() => {}
            }
        }
        state.engine.status(run).await
    };
    match on_owner(&state, run, origin, status).await? {
        // Checked on the status itself: no second call, and a wait on
        // another tenant's run learns nothing but 404 at its end.
        Ok(v) if !tenancy::sees(tenancy::tenant(&caller), v.summary.tenant.as_deref()) => {
            Err(ApiError::NotFound(format!("no execution {run}")))
        }
        Ok(v) => Ok(reply(StatusCode::OK, &view(&state, run, v))),
        Err(forwarded) => Ok(forwarded),
    }
}

/// `GET /api/v1/executions/{id}/workflow`: the workflow a run runs and its
/// plan, for runs whose workflow is not in the catalog (child runs: a
/// parent's sub-workflow) as for the others.
pub(super) async fn get_run_workflow(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    origin: Origin,
) -> ApiResult<Response> {
    let run = run_id(&id)?;
    if let Some(forwarded) = own_run(&state, tenancy::tenant(&caller), run, &origin).await? {
        return Ok(forwarded);
    }
    match on_owner(&state, run, origin, || state.engine.spec(run)).await? {
        Ok(spec) => {
            // As run: the operator's agents included, their secrets not.
            let document = serde_json::to_value(spec.workflow())
                .map(super::workflows::redacted)
                .map_err(|e| ApiError::Internal(format!("serializing a workflow: {e}")))?;
            Ok(reply(
                StatusCode::OK,
                &api::RunWorkflow {
                    document,
                    plan: plan_detail(spec.plan(), crate::catalog::summarize(spec.plan()), false),
                },
            ))
        }
        Err(forwarded) => Ok(forwarded),
    }
}

async fn control(
    state: &AppState,
    caller: Option<Extension<Caller>>,
    id: &str,
    action: &'static str,
    origin: Origin,
) -> ApiResult<Response> {
    let run = run_id(id)?;
    if let Some(forwarded) = own_run(state, tenancy::tenant(&caller), run, &origin).await? {
        return Ok(forwarded);
    }
    let done = on_owner(state, run, origin, || async move {
        match action {
            "pause" => state.engine.pause(run).await,
            "resume" => state.engine.resume(run).await,
            _ => state.engine.cancel(run).await,
        }
    })
    .await?;
    if let Err(forwarded) = done {
        return Ok(forwarded);
    }
    Ok(reply(
        StatusCode::OK,
        &api::ControlResponse {
            execution_id: run.to_string(),
            action: action.into(),
        },
    ))
}

pub(super) async fn pause(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    origin: Origin,
) -> ApiResult<Response> {
    control(&state, caller, &id, "pause", origin).await
}

pub(super) async fn resume(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    origin: Origin,
) -> ApiResult<Response> {
    control(&state, caller, &id, "resume", origin).await
}

pub(super) async fn cancel(
    State(state): St,
    caller: Option<Extension<Caller>>,
    Path(id): Path<String>,
    origin: Origin,
) -> ApiResult<Response> {
    control(&state, caller, &id, "cancel", origin).await
}
