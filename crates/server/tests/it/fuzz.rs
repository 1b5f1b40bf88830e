//! Fuzzing the request bodies on stable Rust: every route that takes a body
//! gets arbitrary bytes, and valid bodies with bytes flipped, deleted and
//! inserted, as JSON (and YAML where it is read). The answer is never a 500
//! and never a panic: a success, or a problem+json 4xx that says what is
//! wrong. `PROPTEST_CASES` sets the cases (docs/operations.md).

use axum::body::Body;
use axum::http::Request;
use baton_events::testing::mutate::{apply, cases, edit};
use proptest::prelude::*;
use proptest::sample::Index;

use crate::app_with;

/// A valid body for each route that takes one, to mutate.
const BODIES: &[(&str, &str)] = &[
    (
        "/api/v1/workflows",
        r#"{"name": "f", "tasks": [{"id": "a"}, {"id": "b", "depends_on": ["a"], "condition": "a.status == 'succeeded'"}]}"#,
    ),
    (
        "/api/v1/workflows/0000000000000001/execute",
        r#"{"input_data": {"q": 1}, "execution_options": {"timeout": "5m", "retry_policy": {"max_attempts": 3}}}"#,
    ),
    (
        "/api/v1/events",
        r#"{"topic": "orders", "events": [{"type": "t", "key": "k", "payload": {"n": 1}, "headers": {"h": "v"}}]}"#,
    ),
    (
        "/api/v1/topics/orders/groups/g/ack",
        r#"{"offsets": [{"partition": 0, "offset": 0}]}"#,
    ),
    ("/api/v1/agents/w/poll", r#"{"max": 1, "wait_ms": 0}"#),
    (
        "/api/v1/tasks/report",
        r#"{"reports": [{"id": "00000000000000000000000000000001", "output": {"ok": true}}]}"#,
    ),
    (
        "/api/v1/tasks/00000000000000000000000000000001/complete",
        r#"{"output": {"ok": true}}"#,
    ),
    (
        "/api/v1/tasks/00000000000000000000000000000001/fail",
        r#"{"error": "e", "retryable": true}"#,
    ),
    (
        "/api/v1/tasks/00000000000000000000000000000001/heartbeat",
        r#"{}"#,
    ),
    (
        "/api/v1/tasks/00000000000000000000000000000001/progress",
        r#"{"progress": 0.5}"#,
    ),
    (
        "/api/v1/executions/0000000000000001/rerun",
        r#"{"from": "a"}"#,
    ),
];

#[test]
fn no_request_body_gets_a_500_or_a_panic() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Long polls a mutated `wait_ms` asks for end at once.
    let app = runtime.block_on(app_with(|o| {
        o.long_poll_max = std::time::Duration::from_millis(5);
    }));
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(cases(256)));
    // A route, edits of its valid body or random bytes, a content type.
    let strategy = (
        any::<Index>(),
        prop::collection::vec(edit(b"{}[]:,\"\\-0e."), 0..6),
        prop::collection::vec(any::<u8>(), 0..256),
        any::<bool>(),
        prop::sample::select(vec![
            "application/json",
            "application/yaml",
            "application/x-www-form-urlencoded",
            "text/plain",
        ]),
    );
    runner
        .run(&strategy, |(route, edits, random, mutate, content_type)| {
            let (path, valid) = BODIES[route.index(BODIES.len())];
            let bytes = if mutate {
                let mut bytes = valid.as_bytes().to_vec();
                apply(&mut bytes, &edits);
                bytes
            } else {
                random
            };
            let reply = runtime.block_on(
                app.send(
                    Request::post(path)
                        .header("content-type", content_type)
                        .body(Body::from(bytes.clone()))
                        .unwrap(),
                ),
            );
            prop_assert!(
                reply.status.as_u16() < 500,
                "POST {path} ({content_type}) {:?}: {} {}",
                String::from_utf8_lossy(&bytes),
                reply.status,
                reply.text
            );
            if reply.status.as_u16() >= 400 {
                prop_assert_eq!(&reply.content_type, "application/problem+json");
                prop_assert!(
                    reply.json()["detail"]
                        .as_str()
                        .is_some_and(|d| !d.is_empty())
                );
            }
            Ok(())
        })
        .unwrap();
}
