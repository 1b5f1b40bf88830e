//! Integration tests of the server: handlers through the `Router`, end to end on port 0.

#![allow(clippy::unwrap_used, reason = "a test's panic is its failure report")]

mod e2e;
mod fuzz;
mod fuzz_findings;
mod handlers;
mod security;
mod tenants;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_server::{AppState, ServerOptions};
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

/// A router on a fresh data directory, its engine running.
pub(crate) struct App {
    pub(crate) router: Router,
    #[allow(dead_code)]
    pub(crate) state: Arc<AppState>,
    pub(crate) _dir: tempfile::TempDir,
}

pub(crate) async fn app_with(f: impl FnOnce(&mut ServerOptions)) -> App {
    let dir = tempfile::tempdir().unwrap();
    let mut options = ServerOptions {
        data_dir: dir.path().to_path_buf(),
        ..ServerOptions::default()
    };
    f(&mut options);
    let (state, engine) = baton_server::state(options).await.unwrap();
    tokio::spawn(engine.run());
    App {
        router: baton_server::router(state.clone()),
        state,
        _dir: dir,
    }
}

/// A request with a JSON content type, sent as `token`'s bearer (no
/// `Authorization` without one); add headers, then the body.
pub(crate) fn as_caller(
    method: &str,
    path: &str,
    token: Option<&str>,
) -> axum::http::request::Builder {
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    match token {
        Some(token) => req.header("authorization", format!("Bearer {token}")),
        None => req,
    }
}

pub(crate) async fn app() -> App {
    app_with(|_| {}).await
}

pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) content_type: String,
    pub(crate) text: String,
    /// The answer's `x-request-id`.
    pub(crate) request_id: Option<String>,
}

impl Reply {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

impl App {
    pub(crate) async fn send(&self, req: Request<Body>) -> Reply {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let request_id = res
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            content_type,
            text: String::from_utf8_lossy(&bytes).into_owned(),
            request_id,
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Reply {
        self.send(Request::get(path).body(Body::empty()).unwrap())
            .await
    }

    pub(crate) async fn post(&self, path: &str, body: &str) -> Reply {
        self.send(
            Request::post(path)
                .header("content-type", "application/json")
                .body(Body::from(body.to_string()))
                .unwrap(),
        )
        .await
    }

    /// Posts a workflow; returns its id.
    pub(crate) async fn create(&self, doc: &str) -> String {
        let r = self.post("/api/v1/workflows", doc).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_string()
    }

    /// Starts an execution of workflow `id`; returns its id.
    pub(crate) async fn execute(&self, id: &str) -> String {
        let r = self
            .post(&format!("/api/v1/workflows/{id}/execute"), "{}")
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
        r.json()["execution_id"].as_str().unwrap().to_string()
    }

    /// Polls the execution until it ends; returns its status.
    pub(crate) async fn finish(&self, exec: &str) -> Value {
        for _ in 0..500 {
            let s = self.get(&format!("/api/v1/executions/{exec}")).await.json();
            if matches!(
                s["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("execution {exec} did not end");
    }
}

pub(crate) const DIAMOND: &str = r#"{"name": "diamond", "tasks": [
  {"id": "a"}, {"id": "b", "depends_on": ["a"]}, {"id": "c", "depends_on": ["a"]},
  {"id": "d", "depends_on": ["b", "c"]}]}"#;

/// Tasks that take a while (simulated), so a run can be paused or cancelled.
pub(crate) const SLOW: &str = r#"{"name": "slow",
  "agents": {"sim": {"type": "simulate", "latency": "300ms"}},
  "tasks": [{"id": "a", "agent": "sim"}, {"id": "b", "agent": "sim", "depends_on": ["a"]},
            {"id": "c", "agent": "sim", "depends_on": ["b"]}]}"#;
