//! The routes: one module per section of the API (workflows, executions and their
//! event stream, events, workers, what the server is doing now), the
//! middleware, and the helpers they share.

mod events;
mod executions;
mod live;
mod middleware;
mod stream;
mod tenancy;
mod workers;
mod workflows;

pub(crate) use executions::arm_deadlines;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::json;

use crate::AppState;
use crate::error::{ApiError, ApiResult};

pub(super) type St = State<Arc<AppState>>;

/// JSON with a status.
pub(super) fn reply<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
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
            post(workflows::create_workflow).get(workflows::list_workflows),
        )
        .route("/api/v1/workflows/{id}", get(workflows::get_workflow))
        .route("/api/v1/workflows/{id}/plan", get(workflows::get_plan))
        .route("/api/v1/workflows/{id}/execute", post(executions::execute))
        .route("/api/v1/executions", get(executions::list_executions))
        .route("/api/v1/executions/{id}", get(executions::get_execution))
        .route(
            "/api/v1/executions/{id}/workflow",
            get(executions::get_run_workflow),
        )
        .route("/api/v1/executions/{id}/pause", post(executions::pause))
        .route("/api/v1/executions/{id}/resume", post(executions::resume))
        .route("/api/v1/executions/{id}/cancel", post(executions::cancel))
        .route("/api/v1/executions/{id}/rerun", post(executions::rerun))
        .route(
            "/api/v1/executions/{id}/tasks/{task}/instances",
            get(executions::instances),
        )
        .route("/api/v1/executions/{id}/events", get(stream::stream))
        .route("/api/v1/events", post(events::publish))
        .route("/api/v1/topics", get(events::topics))
        .route("/api/v1/audit", get(events::audit))
        .route("/api/v1/topics/{topic}/events", get(events::read))
        .route("/api/v1/topics/{topic}/redrive", post(events::redrive))
        .route(
            "/api/v1/topics/{topic}/groups/{group}/pending",
            get(events::pending),
        )
        .route(
            "/api/v1/topics/{topic}/groups/{group}/poll",
            get(events::poll),
        )
        .route(
            "/api/v1/topics/{topic}/groups/{group}/ack",
            post(events::ack),
        )
        .route("/api/v1/agents", get(live::agents))
        .route("/api/v1/stats", get(live::stats))
        .route("/api/v1/agents/{name}/poll", post(workers::worker_poll))
        .route("/api/v1/tasks/report", post(workers::report))
        .route("/api/v1/tasks/{id}/heartbeat", post(workers::heartbeat))
        .route("/api/v1/tasks/{id}/progress", post(workers::progress))
        .route("/api/v1/tasks/{id}/complete", post(workers::complete))
        .route("/api/v1/tasks/{id}/fail", post(workers::fail))
        .route_layer(from_fn_with_state(state.clone(), middleware::auth));
    let mut metrics = Router::new().route("/metrics", get(crate::metrics::render));
    if state.options.metrics_requires_auth {
        metrics = metrics.route_layer(from_fn_with_state(state.clone(), middleware::auth));
    }
    let open = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi));
    Router::new()
        .merge(api)
        .merge(metrics)
        .merge(open)
        .merge(crate::console::router())
        .route_layer(from_fn_with_state(state.clone(), middleware::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.options.body_limit))
        .layer(from_fn_with_state(state.clone(), middleware::request_id))
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

async fn healthz() -> Response {
    reply(StatusCode::OK, &json!({"status": "ok"}))
}

async fn readyz(State(state): St) -> ApiResult<Response> {
    // Storage that refuses writes is not ready: a load balancer should send
    // the traffic elsewhere.
    if let Some(e) = state.log.failure() {
        return Err(e.into());
    }
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

pub(super) fn parse_id(kind: &str, id: &str) -> ApiResult<u64> {
    if id.len() != 16 {
        return Err(ApiError::NotFound(format!(
            "no {kind} {id}: ids are 16 hex digits"
        )));
    }
    u64::from_str_radix(id, 16)
        .map_err(|_| ApiError::NotFound(format!("no {kind} {id}: ids are 16 hex digits")))
}

/// A list's `limit`: 50 unless given, from 1 to 1000.
pub(super) fn limit(given: Option<usize>) -> ApiResult<usize> {
    let limit = given.unwrap_or(50);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            "`limit` must be between 1 and 1000",
        ));
    }
    Ok(limit)
}

pub(super) fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(q)| q)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
}
