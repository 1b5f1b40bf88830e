//! Regressions for what schemathesis found against `/openapi.json` (`.ci/run`):
//! each test is one distinct bug, driven through the `Router`.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use serde_json::json;

use crate::{DIAMOND, app, app_with};

const PROBLEM: &str = "application/problem+json";

/// Acknowledging on a topic or group that does not exist was a 500 (the event
/// log's `UnknownTopic`/`UnknownGroup` fell through to `internal`).
#[tokio::test]
async fn ack_on_an_unknown_topic_or_group_is_404() {
    let app = app().await;
    let r = app
        .post("/api/v1/topics/0/groups/0/ack", r#"{"offsets": []}"#)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.content_type, PROBLEM);
    assert_eq!(r.json()["code"], "not-found");

    // A known topic, an unknown group.
    let r = app
        .post("/api/v1/events?topic=t", r#"{"events": [{"type": "x"}]}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .post(
            "/api/v1/topics/t/groups/nobody/ack",
            r#"{"offsets": [{"partition": 0, "offset": 0}]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    assert_eq!(r.json()["code"], "not-found");
}

/// A bad group or member name is reported against that name, not `$.topic`.
#[tokio::test]
async fn bad_names_are_422_where_they_are() {
    let app = app().await;
    let r = app.get("/api/v1/topics/t/groups/g/poll?member=").await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json()["errors"][0]["path"], "member");
}

/// JSON has one number type: `5692.0` is the integer 5692 (JSON Schema's
/// `integer` admits it), and was refused with 422.
#[tokio::test]
async fn integers_with_a_zero_fraction_are_integers() {
    let app = app().await;
    let id = app.create(DIAMOND).await;
    let r = app
        .post(
            &format!("/api/v1/workflows/{id}/execute"),
            r#"{"execution_options": {"resource_constraints": {"max_concurrency": 2.0}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let r = app
        .post(
            "/api/v1/tasks/nope/heartbeat",
            &json!({"lease_ms": 1000.0}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let r = app
        .post("/api/v1/tasks/nope/heartbeat", r#"{"lease_ms": 1000.5}"#)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

/// `cursor` is what `next_cursor` gave: lowercase hex, no sign.
#[tokio::test]
async fn cursors_are_only_what_the_server_gives() {
    let app = app().await;
    for bad in ["+1", "A", "1234567890abcdef0"] {
        let r = app.get(&format!("/api/v1/workflows?cursor={bad}")).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad}: {}",
            r.text
        );
    }
    let r = app.get("/api/v1/workflows?cursor=1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// `server.long_poll_max_ms` bounds every long poll, whatever `wait_ms` asks.
#[tokio::test]
async fn long_polls_are_capped() {
    let app = app_with(|o| o.long_poll_max = Duration::from_millis(50)).await;
    let started = Instant::now();
    let r = app
        .post(
            "/api/v1/agents/nobody-polls-this/poll",
            r#"{"wait_ms": 60000}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["assignments"], json!([]));
    let r = app
        .get("/api/v1/topics/baton.signals/groups/g/poll?wait_ms=30000")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
