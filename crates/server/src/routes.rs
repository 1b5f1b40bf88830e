//! The routes and their handlers, and the middleware (auth, metrics, timeouts).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use baton_api as api;
use baton_engine::agent::worker;
use baton_engine::store::{RunId, RunStatus, TaskStatus};
use baton_engine::{RunView, Spec};
use baton_events::{Event, EventId, EventLog as _, Offset};
use baton_model::Format;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AppState;
use crate::body::{self, Json};
use crate::catalog::{Entry, Execution, now_ms};
use crate::error::ApiError;

type St = State<Arc<AppState>>;
type ApiResult<T> = Result<T, ApiError>;

/// JSON with a status.
fn reply<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            Bytes::from(body),
        )
            .into_response(),
        Err(e) => ApiError::Internal(format!("serializing a response: {e}")).into_response(),
    }
}

pub(crate) fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route(
            "/api/v1/workflows",
            post(create_workflow).get(list_workflows),
        )
        .route("/api/v1/workflows/{id}", get(get_workflow))
        .route("/api/v1/workflows/{id}/plan", get(get_plan))
        .route("/api/v1/workflows/{id}/execute", post(execute))
        .route("/api/v1/executions/{id}", get(get_execution))
        .route("/api/v1/executions/{id}/pause", post(pause))
        .route("/api/v1/executions/{id}/resume", post(resume))
        .route("/api/v1/executions/{id}/cancel", post(cancel))
        .route("/api/v1/executions/{id}/events", get(crate::sse::stream))
        .route("/api/v1/events", post(publish))
        .route("/api/v1/topics/{topic}/groups/{group}/poll", get(poll))
        .route("/api/v1/topics/{topic}/groups/{group}/ack", post(ack))
        .route("/api/v1/agents/{name}/poll", post(worker_poll))
        .route("/api/v1/tasks/{id}/heartbeat", post(heartbeat))
        .route("/api/v1/tasks/{id}/complete", post(complete))
        .route("/api/v1/tasks/{id}/fail", post(fail))
        .route_layer(middleware::from_fn_with_state(state.clone(), auth));
    let mut metrics = Router::new().route("/metrics", get(crate::metrics::render));
    if state.options.metrics_requires_auth {
        metrics = metrics.route_layer(middleware::from_fn_with_state(state.clone(), auth));
    }
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi));
    Router::new()
        .merge(api)
        .merge(metrics)
        .merge(open)
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.options.body_limit))
        .with_state(state)
}

async fn not_found(State(state): St, method: Method, uri: axum::http::Uri) -> ApiError {
    state.metrics.request("unmatched", 404, Duration::ZERO);
    ApiError::NotFound(format!("no route {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!(
        "{method} is not allowed on {}; see /openapi.json for the methods it takes",
        uri.path()
    ))
}

/// Compares in time that depends only on the lengths, not on where bytes differ.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn auth(State(state): St, req: Request, next: Next) -> Response {
    if let Some(token) = &state.options.auth_token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
            let mut res = ApiError::Unauthorized.into_response();
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            return res;
        }
    }
    next.run(req).await
}

/// Counts and times every matched request; applies the request timeout.
async fn track(State(state): St, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let long = crate::openapi::is_long(method.as_str(), &route);
    let res = if long {
        next.run(req).await
    } else {
        let limit = state.options.request_timeout;
        match tokio::time::timeout(limit, next.run(req)).await {
            Ok(res) => res,
            Err(_) => ApiError::Timeout(limit).into_response(),
        }
    };
    let key = format!("{method} {route}");
    state
        .metrics
        .request(&key, res.status().as_u16(), started.elapsed());
    res
}

async fn healthz() -> Response {
    reply(StatusCode::OK, &json!({"status": "ok"}))
}

async fn readyz(State(state): St) -> ApiResult<Response> {
    match tokio::time::timeout(Duration::from_secs(2), state.engine.stats()).await {
        Ok(Ok(_)) => Ok(reply(StatusCode::OK, &json!({"status": "ready"}))),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!(
            "the engine is not answering: {e}"
        ))),
        Err(_) => Err(ApiError::Unavailable(
            "the engine did not answer within 2 s".into(),
        )),
    }
}

async fn openapi() -> Response {
    reply(StatusCode::OK, &crate::openapi::document())
}

// ---- workflows -------------------------------------------------------------

fn parse_id(kind: &str, id: &str) -> ApiResult<u64> {
    if id.len() != 16 {
        return Err(ApiError::NotFound(format!(
            "no {kind} {id}: ids are 16 hex digits"
        )));
    }
    u64::from_str_radix(id, 16)
        .map_err(|_| ApiError::NotFound(format!("no {kind} {id}: ids are 16 hex digits")))
}

async fn workflow(state: &AppState, id: &str) -> ApiResult<Arc<Entry>> {
    let n = parse_id("workflow", id)?;
    if let Some(entry) = state.catalog.get(n) {
        return Ok(entry);
    }
    #[cfg(feature = "postgres")]
    if let Some(cluster) = &state.cluster
        && let Some(entry) = cluster.fetch_workflow(&state.catalog, n).await?
    {
        return Ok(entry);
    }
    Err(ApiError::NotFound(format!("no workflow {id}")))
}

fn info(e: &Entry) -> api::WorkflowInfo {
    api::WorkflowInfo {
        id: format!("{:016x}", e.id),
        version: e.version,
        name: e.name.clone(),
        created_ms: e.created_ms,
        plan: e.summary.clone(),
    }
}

async fn create_workflow(
    State(state): St,
    headers: HeaderMap,
    req: Request,
) -> ApiResult<Response> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let format = match media.as_str() {
        "application/json" | "text/json" => Some(Format::Json),
        m if m.ends_with("+json") => Some(Format::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Some(Format::Yaml)
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "expected `Content-Type: application/json` or `application/yaml`, got `{ct}`"
            )));
        }
    };
    let body = body::bytes(req, &()).await?;
    let state2 = state.clone();
    let entry = tokio::task::spawn_blocking(move || {
        state2
            .catalog
            .create(body.to_vec(), format, |checked| admit(&state2, checked))
    })
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))??;
    #[cfg(feature = "postgres")]
    if let Some(cluster) = &state.cluster {
        cluster.share_workflow(&entry).await?;
    }
    let warnings = entry
        .checked
        .warnings
        .diagnostics
        .iter()
        .map(crate::catalog::field_error)
        .collect();
    let created = api::WorkflowCreated {
        id: format!("{:016x}", entry.id),
        version: entry.version,
        name: entry.name.clone(),
        plan: entry.summary.clone(),
        warnings,
    };
    let mut res = reply(StatusCode::CREATED, &created);
    if let Ok(v) = header::HeaderValue::from_str(&format!("/api/v1/workflows/{}", created.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
}

async fn list_workflows(
    State(state): St,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "`limit` must be between 1 and 1000",
        ));
    }
    let cursor = match &q.cursor {
        None => None,
        // Only what `next_cursor` holds: lowercase hex digits (no sign, no case games).
        Some(c) => Some(
            c.bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                .then(|| usize::from_str_radix(c, 16).ok())
                .flatten()
                .filter(|_| c.len() <= 15)
                .ok_or_else(|| {
                    ApiError::invalid("cursor", "`cursor` is not one this server gave")
                })?,
        ),
    };
    #[cfg(feature = "postgres")]
    if let Some(cluster) = &state.cluster {
        cluster.sync_catalog(&state.catalog).await?;
    }
    let (items, next) = state.catalog.list(limit, cursor);
    Ok(reply(
        StatusCode::OK,
        &api::Page {
            items: items.iter().map(|e| info(e)).collect(),
            next_cursor: next.map(|n| format!("{n:x}")),
        },
    ))
}

async fn get_workflow(State(state): St, Path(id): Path<String>) -> ApiResult<Response> {
    let e = workflow(&state, &id).await?;
    Ok(reply(
        StatusCode::OK,
        &api::WorkflowDetail {
            info: info(&e),
            document: e.document.clone(),
        },
    ))
}

async fn get_plan(State(state): St, Path(id): Path<String>) -> ApiResult<Response> {
    let e = workflow(&state, &id).await?;
    let plan = &e.plan;
    let name = |t: u32| plan.name(t).to_string();
    Ok(reply(
        StatusCode::OK,
        &api::PlanDetail {
            summary: e.summary.clone(),
            stages: plan
                .stages()
                .map(|s| s.iter().map(|&t| name(t)).collect())
                .collect(),
            redundant_edges: plan
                .redundancy()
                .edges()
                .iter()
                .map(|&(a, b)| [name(a), name(b)])
                .collect(),
        },
    ))
}

// ---- executions ------------------------------------------------------------

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

/// Refuses a workflow that defines agents the server's policy does not let
/// callers define (`command`, `http`): 403 `agent-not-allowed`, each agent with
/// the setting that would allow it.
fn admit(state: &AppState, checked: &baton_model::Checked) -> ApiResult<()> {
    let refused = state
        .options
        .workflow_agents
        .check(&checked.workflow, &state.options.agents);
    if refused.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = refused.iter().map(|r| format!("`{}`", r.agent)).collect();
    Err(ApiError::AgentNotAllowed {
        detail: format!(
            "the workflow defines agents this server does not let callers define: {}",
            names.join(", ")
        ),
        errors: refused
            .into_iter()
            .map(|r| api::FieldError {
                code: "agent-not-allowed".into(),
                path: format!("$.agents.{}.type", r.agent),
                hint: Some(match r.kind {
                    "command" => format!(
                        "use an agent the operator defined (`[agents.{}]` in the server's config replaces this one), or ask the operator to set `[server] allow_workflow_command_agents = true`",
                        r.agent
                    ),
                    _ => format!(
                        "use an agent the operator defined (`[agents.{}]` in the server's config replaces this one), or ask the operator to list the URL's prefix in `[server] allow_workflow_http_urls`",
                        r.agent
                    ),
                }),
                message: r.message,
                location: None,
            })
            .collect(),
    })
}

fn build_spec(
    state: &AppState,
    entry: &Entry,
    options: &api::ExecutionOptions,
) -> ApiResult<Arc<Spec>> {
    // Checked on every execution, not only at creation: the catalog may hold
    // workflows from before the policy (or another instance's).
    admit(state, &entry.checked)?;
    let plain = options.retry_policy.is_none() && options.resource_constraints.is_none();
    if plain && let Some(spec) = entry.spec.get() {
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
        Spec::with_overrides(
            &entry.checked,
            entry.plan.clone(),
            &overrides,
            &state.options.engine.agents(),
        )
        .map_err(cannot_run)
    };
    if plain {
        let spec = Arc::new(build()?);
        let _ = entry.spec.set(spec.clone());
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

async fn execute(
    State(state): St,
    Path(id): Path<String>,
    Json(req): Json<api::ExecuteRequest>,
) -> ApiResult<Response> {
    let entry = workflow(&state, &id).await?;
    let timeout = req
        .execution_options
        .timeout
        .as_ref()
        .map(timeout_of)
        .transpose()?;
    let spec = build_spec(&state, &entry, &req.execution_options)?;
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

fn run_id(id: &str) -> ApiResult<RunId> {
    parse_id("execution", id).map(RunId)
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
        status: status.into(),
        current_phase: phase.into(),
        reason,
        performance_metrics: api::PerformanceMetrics {
            total_runtime: s.makespan_ms / 1e3,
            agents_allocated: agents.len(),
            tasks_completed: s.tasks.succeeded,
            coordination_overhead: s.coordination_overhead_ms / 1e3,
            dispatch_latency_us: serde_json::to_value(s.coordination_overhead)
                .unwrap_or(Value::Null),
            retries: s.retries,
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
            })
            .collect(),
    }
}

/// A call about one run, kept so that it can be forwarded to the instance that
/// drives the run.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) struct Origin {
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Origin {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        // Routes are not nested: the URI is the one the client sent.
        Ok(Origin {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }
}

/// Asks the local engine about `run`. When it does not hold the run and instances
/// share a state store, the run's owner answers instead (`Err(response)`: the
/// call was forwarded), or the run is taken from its history and asked again.
pub(crate) async fn on_owner<T, F, Fut>(
    state: &AppState,
    run: RunId,
    origin: Origin,
    ask: F,
) -> ApiResult<Result<T, Response>>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, baton_engine::Error>>,
{
    match ask().await {
        Err(baton_engine::Error::UnknownRun(_) | baton_engine::Error::Moved(_)) => {}
        other => return Ok(Ok(other?)),
    }
    #[cfg(feature = "postgres")]
    if let Some(cluster) = &state.cluster {
        use crate::cluster::{Call, Routed};
        let call = Call {
            method: origin.method,
            uri: &origin.uri,
            headers: &origin.headers,
            body: Bytes::new(),
        };
        return match cluster.route(&state.engine, run, call).await? {
            Routed::Response(r) => Ok(Err(r)),
            Routed::Local => Ok(Ok(ask().await?)),
        };
    }
    let _ = (state, origin);
    Err(ApiError::NotFound(format!("no execution {run}")))
}

async fn get_execution(
    State(state): St,
    Path(id): Path<String>,
    origin: Origin,
) -> ApiResult<Response> {
    let run = run_id(&id)?;
    match on_owner(&state, run, origin, || state.engine.status(run)).await? {
        Ok(v) => Ok(reply(StatusCode::OK, &view(&state, run, v))),
        Err(forwarded) => Ok(forwarded),
    }
}

async fn control(
    state: &AppState,
    id: &str,
    action: &'static str,
    origin: Origin,
) -> ApiResult<Response> {
    let run = run_id(id)?;
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

async fn pause(State(state): St, Path(id): Path<String>, origin: Origin) -> ApiResult<Response> {
    control(&state, &id, "pause", origin).await
}

async fn resume(State(state): St, Path(id): Path<String>, origin: Origin) -> ApiResult<Response> {
    control(&state, &id, "resume", origin).await
}

async fn cancel(State(state): St, Path(id): Path<String>, origin: Origin) -> ApiResult<Response> {
    control(&state, &id, "cancel", origin).await
}

// ---- events ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicQuery {
    topic: Option<String>,
}

/// `POST /api/v1/events` as parsed here: payloads stay raw JSON text (no tree is
/// built and serialized again), the shape is [`api::PublishRequest`]'s.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody<'a> {
    topic: Option<String>,
    #[serde(borrow)]
    events: Vec<EventRaw<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventRaw<'a> {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    key: String,
    #[serde(borrow, default)]
    payload: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    id: Option<String>,
}

async fn publish(
    State(state): St,
    q: Result<Query<TopicQuery>, QueryRejection>,
    req: Request,
) -> ApiResult<Response> {
    let q = query(q)?;
    let bytes = body::json_bytes(req, &()).await?;
    let req: PublishBody<'_> = body::parse(&bytes)?;
    let topic = match (q.topic, req.topic) {
        (Some(a), Some(b)) if a != b => {
            return Err(ApiError::invalid(
                "$.topic",
                format!("`?topic={a}` and the body's `topic: {b}` disagree"),
            ));
        }
        (Some(t), _) | (None, Some(t)) => t,
        (None, None) => state.options.engine.signals_topic.clone(),
    };
    let n = req.events.len();
    if n == 0 {
        return Err(ApiError::invalid(
            "$.events",
            "`events` must hold at least one event",
        ));
    }
    if n > state.options.max_batch_events {
        return Err(ApiError::PayloadTooLarge(format!(
            "{n} events in one batch, over the limit of {}; publish in smaller batches",
            state.options.max_batch_events
        )));
    }
    let mut batch = Vec::with_capacity(n);
    for (i, e) in req.events.into_iter().enumerate() {
        let payload = Bytes::copy_from_slice(e.payload.map_or("null", |p| p.get()).as_bytes());
        let mut event = Event::new(e.kind, e.key, payload);
        if let Some(id) = &e.id {
            let id = id.parse::<EventId>().map_err(|_| {
                ApiError::invalid(&format!("$.events[{i}].id"), "an event id is 32 hex digits")
            })?;
            event = event.with_id(id);
        }
        for (k, v) in e.headers {
            event = event.with_header(k, v);
        }
        batch.push(event);
    }
    let offsets = state.log.publish(&topic, batch).await?;
    state.metrics.published(offsets.len() as u64);
    Ok(reply(
        StatusCode::OK,
        &api::PublishResponse {
            topic,
            offsets: offsets
                .into_iter()
                .map(|o| api::OffsetRef {
                    partition: o.partition,
                    offset: o.offset,
                })
                .collect(),
        },
    ))
}

pub(crate) fn event_out(offset: Offset, e: &Event, deliveries: Option<u32>) -> api::EventOut {
    api::EventOut {
        partition: offset.partition,
        offset: offset.offset,
        id: e.id.to_string(),
        kind: e.kind.to_string(),
        key: String::from_utf8_lossy(&e.key).into_owned(),
        timestamp_ms: e.timestamp_ms,
        headers: e
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), String::from_utf8_lossy(v).into_owned()))
            .collect(),
        payload: serde_json::from_slice(&e.payload)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&e.payload).into_owned())),
        deliveries,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PollQuery {
    member: Option<String>,
    max: Option<usize>,
    wait_ms: Option<u64>,
}

async fn poll(
    State(state): St,
    Path((topic, group)): Path<(String, String)>,
    q: Result<Query<PollQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    let max = q.max.unwrap_or(100);
    if !(1..=10_000).contains(&max) {
        return Err(ApiError::invalid(
            "max",
            "`max` must be between 1 and 10000",
        ));
    }
    let wait =
        Duration::from_millis(q.wait_ms.unwrap_or(0).min(30_000)).min(state.options.long_poll_max);
    let member = q.member.unwrap_or_else(|| "http".into());
    let polled = tokio::select! {
        p = state.log.poll(&topic, &group, &member, max, wait) => p?,
        _ = state.stopping.cancelled() => Default::default(),
    };
    let events = polled
        .iter()
        .map(|d| event_out(d.offset, d.event, Some(d.deliveries)))
        .collect();
    Ok(reply(StatusCode::OK, &api::PollResponse { events }))
}

async fn ack(
    State(state): St,
    Path((topic, group)): Path<(String, String)>,
    Json(req): Json<api::AckRequest>,
) -> ApiResult<Response> {
    let ids: Vec<Offset> = req
        .offsets
        .iter()
        .map(|o| Offset::new(o.partition, o.offset))
        .collect();
    let acknowledged = state.log.ack(&topic, &group, &ids).await?;
    Ok(reply(StatusCode::OK, &api::AckResponse { acknowledged }))
}

// ---- workers ---------------------------------------------------------------

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

async fn worker_poll(
    State(state): St,
    Path(name): Path<String>,
    Json(req): Json<api::WorkerPoll>,
) -> ApiResult<Response> {
    if !(1..=1000).contains(&req.max) {
        return Err(ApiError::invalid(
            "$.max",
            "`max` must be between 1 and 1000",
        ));
    }
    let lease = lease_of(req.lease_ms, "$.lease_ms")?;
    let wait = Duration::from_millis(req.wait_ms.min(60_000)).min(state.options.long_poll_max);
    let got = tokio::select! {
        got = state.options.engine.workers.poll(&name, req.max, wait, lease) => got,
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

async fn heartbeat(
    State(state): St,
    Path(id): Path<String>,
    Json(req): Json<api::Heartbeat>,
) -> ApiResult<Response> {
    let lease = lease_of(req.lease_ms.unwrap_or(30_000), "$.lease_ms")?;
    state
        .options
        .engine
        .workers
        .heartbeat(&id, lease)
        .map_err(lease_error)?;
    Ok(leased(id, "extended"))
}

async fn complete(
    State(state): St,
    Path(id): Path<String>,
    Json(req): Json<api::Complete>,
) -> ApiResult<Response> {
    state
        .options
        .engine
        .workers
        .complete(&id, req.output)
        .map_err(lease_error)?;
    Ok(leased(id, "completed"))
}

async fn fail(
    State(state): St,
    Path(id): Path<String>,
    Json(req): Json<api::Fail>,
) -> ApiResult<Response> {
    state
        .options
        .engine
        .workers
        .fail(&id, req.message, req.retryable)
        .map_err(lease_error)?;
    Ok(leased(id, "failed"))
}
