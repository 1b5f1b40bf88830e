//! Handlers through the `Router` (`oneshot`).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use crate::{DIAMOND, SLOW, app, app_with};

const PROBLEM: &str = "application/problem+json";

#[tokio::test]
async fn create_get_plan_and_list() {
    let app = app().await;
    let r = app.post("/api/v1/workflows", DIAMOND).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let v = r.json();
    let id = v["id"].as_str().unwrap();
    assert_eq!(id.len(), 16);
    assert_eq!(v["version"], 1);
    assert_eq!(v["plan"]["tasks"], 4);
    assert_eq!(v["plan"]["edges"], 4);
    assert_eq!(v["plan"]["stage_count"], 3);
    // The same name again: version 2, a new id.
    let v2 = app.post("/api/v1/workflows", DIAMOND).await.json();
    assert_eq!(v2["version"], 2);
    assert_ne!(v2["id"], v["id"]);

    let got = app.get(&format!("/api/v1/workflows/{id}")).await;
    assert_eq!(got.status, StatusCode::OK);
    let got = got.json();
    assert_eq!(got["document"]["tasks"][3]["id"], "d");
    assert_eq!(got["plan"]["stage_count"], 3);

    let plan = app
        .get(&format!("/api/v1/workflows/{id}/plan"))
        .await
        .json();
    assert_eq!(plan["stages"], json!([["a"], ["b", "c"], ["d"]]));
    assert_eq!(plan["summary"]["critical_path"][0], "a");
    assert!(plan.get("schedule").is_none(), "only when asked: {plan}");
    let planned = app
        .get(&format!("/api/v1/workflows/{id}/plan?schedule=true"))
        .await
        .json();
    let d = &planned["schedule"][3];
    assert_eq!(
        (&d["id"], &d["stage"], &d["earliest_start"], &d["slack"]),
        (&json!("d"), &json!(3), &json!(2.0), &json!(0.0)),
        "{planned}"
    );
    let bad = app
        .get(&format!("/api/v1/workflows/{id}/plan?schedule=maybe"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);

    let missing = app.get("/api/v1/workflows/00000000000000ff").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.content_type, PROBLEM);
    assert_eq!(missing.json()["code"], "not-found");
}

#[tokio::test]
async fn list_is_paginated_newest_first() {
    let app = app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(
            app.create(&format!(r#"{{"name": "w{i}", "tasks": [{{"id": "a"}}]}}"#))
                .await,
        );
    }
    let p1 = app.get("/api/v1/workflows?limit=2").await.json();
    assert_eq!(p1["items"][0]["id"], ids[4].as_str());
    assert_eq!(p1["items"][1]["id"], ids[3].as_str());
    let cursor = p1["next_cursor"].as_str().unwrap();
    let p2 = app
        .get(&format!("/api/v1/workflows?limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(p2["items"][0]["id"], ids[2].as_str());
    let cursor = p2["next_cursor"].as_str().unwrap();
    let p3 = app
        .get(&format!("/api/v1/workflows?limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(p3["items"].as_array().unwrap().len(), 1);
    assert!(p3.get("next_cursor").is_none());
    let bad = app.get("/api/v1/workflows?limit=0").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let bad = app.get("/api/v1/workflows?limit=x").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.content_type, PROBLEM);
}

#[tokio::test]
async fn invalid_workflow_is_422_with_every_error_located() {
    let app = app().await;
    let doc = "{\n  \"tasks\": [\n    {\"id\": \"a\", \"depends_on\": [\"nope\"]},\n    {\"id\": \"b\", \"depends_on\": [\"zzz\"]}\n  ]\n}";
    let r = app.post("/api/v1/workflows", doc).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.content_type, PROBLEM);
    let p = r.json();
    assert_eq!(p["code"], "invalid-workflow");
    let errors = p["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 2, "{p}");
    assert_eq!(errors[0]["path"], "$.tasks[0].depends_on[0]");
    assert_eq!(errors[0]["location"]["line"], 3);
    assert_eq!(errors[1]["location"]["line"], 4);

    // A cycle is found by the planner, located too.
    let cycle =
        r#"{"tasks": [{"id": "a", "depends_on": ["b"]}, {"id": "b", "depends_on": ["a"]}]}"#;
    let p = app.post("/api/v1/workflows", cycle).await.json();
    assert_eq!(p["code"], "invalid-workflow");
    assert_eq!(p["errors"][0]["code"], "cycle");
}

#[tokio::test]
async fn yaml_is_accepted() {
    let app = app().await;
    let yaml = "name: y\ntasks:\n  - id: a\n  - id: b\n    depends_on: [a]\n";
    let r = app
        .send(
            Request::post("/api/v1/workflows")
                .header("content-type", "application/yaml")
                .body(Body::from(yaml))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.json()["plan"]["edges"], 1);
    let bad = app
        .send(
            Request::post("/api/v1/workflows")
                .header("content-type", "application/yaml")
                .body(Body::from("tasks:\n  - id: a\n    depends_on: [x]\n"))
                .unwrap(),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["errors"][0]["location"]["line"], 3);
}

#[tokio::test]
async fn execute_runs_to_completion() {
    let app = app().await;
    let id = app.create(DIAMOND).await;
    let r = app
        .post(
            &format!("/api/v1/workflows/{id}/execute"),
            r#"{"input_data": {"x": 1}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let exec = r.json()["execution_id"].as_str().unwrap().to_string();
    let s = app.finish(&exec).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["current_phase"], "done");
    assert_eq!(s["workflow_id"], id.as_str());
    assert_eq!(s["performance_metrics"]["tasks_completed"], 4);
    assert_eq!(s["tasks"].as_array().unwrap().len(), 4);
    assert_eq!(s["tasks"][0]["status"], "succeeded");
    assert_eq!(s["agents"][0]["agent_id"], "noop");
    assert_eq!(s["agents"][0]["progress"], 1.0);
    // An empty body is fine.
    let r = app
        .post(&format!("/api/v1/workflows/{id}/execute"), "")
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

#[tokio::test]
async fn execution_options() {
    let app = app().await;
    let id = app.create(SLOW).await;
    let path = format!("/api/v1/workflows/{id}/execute");
    // Unknown fields are refused.
    let r = app
        .post(&path, r#"{"execution_options": {"timeot": "1s"}}"#)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.json()["code"], "invalid-request");
    // A bad retry policy is reported at its path.
    let r = app
        .post(
            &path,
            r#"{"execution_options": {"retry_policy": {"max_attempts": 0}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let p = r.json();
    assert!(
        p["errors"][0]["path"]
            .as_str()
            .unwrap()
            .starts_with("$.execution_options.retry_policy"),
        "{p}"
    );
    // A timeout cancels the run.
    let r = app
        .post(
            &path,
            r#"{"execution_options": {"timeout": "100ms", "retry_policy": {"max_attempts": 3}, "resource_constraints": {"max_concurrency": 1}}}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let exec = r.json()["execution_id"].as_str().unwrap().to_string();
    let s = app.finish(&exec).await;
    assert_eq!(s["status"], "cancelled", "{s}");
    assert_eq!(s["reason"], "timed out");
}

#[tokio::test]
async fn unknown_agent_types_are_422() {
    let app = app().await;
    let id = app
        .create(r#"{"agents": {"r": {"type": "research_agent"}}, "tasks": [{"id": "a", "agent": "r"}]}"#)
        .await;
    let r = app
        .post(&format!("/api/v1/workflows/{id}/execute"), "{}")
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("research_agent")
    );
}

#[tokio::test]
async fn pause_resume_cancel_and_conflicts() {
    let app = app().await;
    let id = app.create(SLOW).await;
    let exec = app.execute(&id).await;
    let base = format!("/api/v1/executions/{exec}");
    assert_eq!(
        app.post(&format!("{base}/pause"), "").await.status,
        StatusCode::OK
    );
    assert_eq!(app.get(&base).await.json()["status"], "paused");
    assert_eq!(
        app.post(&format!("{base}/resume"), "").await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.post(&format!("{base}/cancel"), "").await.status,
        StatusCode::OK
    );
    let s = app.finish(&exec).await;
    assert_eq!(s["status"], "cancelled");
    let r = app.post(&format!("{base}/cancel"), "").await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.json()["code"], "conflict");
    assert_eq!(
        app.post(&format!("{base}/pause"), "").await.status,
        StatusCode::CONFLICT
    );
    let r = app
        .post("/api/v1/executions/00000000000000aa/pause", "")
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = app.get("/api/v1/executions/nothex").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn errors_are_problem_json() {
    let app = app().await;
    let r = app.get("/nowhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.content_type, PROBLEM);
    assert_eq!(r.json()["code"], "not-found");
    let r = app
        .send(
            Request::delete("/api/v1/workflows")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.content_type, PROBLEM);
    let r = app.post("/api/v1/events", "{not json").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.content_type, PROBLEM);
    assert_eq!(r.json()["code"], "bad-request");
    let r = app.post("/api/v1/events", r#"{"events": 3}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app.post("/api/v1/events", r#"{"events": []}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = app
        .send(
            Request::post("/api/v1/events")
                .header("content-type", "text/plain")
                .body(Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(
        r.json()["detail"]
            .as_str()
            .unwrap()
            .contains("-H 'Content-Type: application/json'"),
        "the 415 names the header to send"
    );
}

/// `curl -d '{…}'` without `-H 'Content-Type: application/json'` sends
/// `application/x-www-form-urlencoded`: a body that is JSON is taken as
/// JSON (a workflow's, as JSON or YAML); one that is not is a 415 naming
/// the header to send.
#[tokio::test]
async fn curls_default_form_type_is_read_as_json() {
    let app = app().await;
    let form = |path: &str, body: &str| {
        Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let r = app
        .send(form(
            "/api/v1/events?topic=orders",
            r#"{"events": [{"type": "created", "payload": {"id": 1}}]}"#,
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = app
        .send(form(
            "/api/v1/workflows",
            "name: form\ntasks:\n  - { id: a }\n",
        ))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = app
        .send(form("/api/v1/events?topic=orders", "a=1&b=2"))
        .await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(r.json()["detail"].as_str().unwrap().contains("is not JSON"));
}

/// Every answer has a request id (the caller's `x-request-id` when it sends
/// a sensible one), and a problem+json body carries it, so that a 500's
/// "see the server log" leads to the line.
#[tokio::test]
async fn every_answer_has_a_request_id_and_problems_carry_it() {
    let app = app().await;
    let a = app.get("/healthz").await;
    let b = app.get("/healthz").await;
    let (a, b) = (a.request_id.unwrap(), b.request_id.unwrap());
    assert_eq!(a.len(), 16, "{a}");
    assert_ne!(a, b);
    let r = app
        .send(
            Request::get("/api/v1/executions/0000000000000001")
                .header("x-request-id", "client-chosen-7")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.request_id.as_deref(), Some("client-chosen-7"));
    assert_eq!(r.json()["request_id"], "client-chosen-7");
    // Unmatched routes too; an id with control characters or spaces is
    // replaced.
    let r = app
        .send(
            Request::get("/nowhere")
                .header("x-request-id", "two words")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let id = r.request_id.clone().unwrap();
    assert_ne!(id, "two words");
    assert_eq!(r.json()["request_id"], id.as_str());
}

#[tokio::test]
async fn limits_are_413() {
    let app = app_with(|o| {
        o.body_limit = 1024;
        o.max_batch_events = 3;
    })
    .await;
    let big = format!(
        r#"{{"events": [{{"type": "t", "payload": "{}"}}]}}"#,
        "x".repeat(2000)
    );
    let r = app.post("/api/v1/events", &big).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.content_type, PROBLEM);
    let r = app
        .post(
            "/api/v1/events",
            r#"{"events": [{"type": "t"}, {"type": "t"}, {"type": "t"}, {"type": "t"}]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    let big_wf = format!(
        r#"{{"name": "{}", "tasks": [{{"id": "a"}}]}}"#,
        "n".repeat(2000)
    );
    let r = app.post("/api/v1/workflows", &big_wf).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
}

#[tokio::test]
async fn publish_poll_ack() {
    let app = app().await;
    let r = app
        .post(
            "/api/v1/events?topic=orders",
            r#"{"events": [{"type": "order.created", "key": "o1", "payload": {"n": 1}, "headers": {"h": "v"}},
                           {"type": "order.created", "key": "o1", "payload": {"n": 2}}]}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let v = r.json();
    assert_eq!(v["topic"], "orders");
    let offsets = v["offsets"].as_array().unwrap();
    assert_eq!(offsets.len(), 2);
    assert_eq!(
        offsets[1]["offset"].as_u64().unwrap(),
        offsets[0]["offset"].as_u64().unwrap() + 1
    );
    let polled = app
        .get("/api/v1/topics/orders/groups/g/poll?member=m1&max=10")
        .await
        .json();
    let events = polled["events"].as_array().unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["payload"]["n"], 1);
    assert_eq!(events[0]["headers"]["h"], "v");
    assert_eq!(events[0]["deliveries"], 1);
    let ack = app
        .post(
            "/api/v1/topics/orders/groups/g/ack",
            &json!({"offsets": v["offsets"]}).to_string(),
        )
        .await;
    assert_eq!(ack.status, StatusCode::OK, "{}", ack.text);
    assert_eq!(ack.json()["acknowledged"], 2);
    // Default topic.
    let r = app
        .post("/api/v1/events", r#"{"events": [{"type": "x"}]}"#)
        .await
        .json();
    assert_eq!(r["topic"], "baton.signals");
}

#[tokio::test]
async fn sse_streams_until_the_run_ends() {
    let app = app().await;
    let id = app.create(DIAMOND).await;
    let exec = app.execute(&id).await;
    let r = app.get(&format!("/api/v1/executions/{exec}/events")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.content_type.starts_with("text/event-stream"));
    assert!(r.text.contains("event: baton.run"), "{}", r.text);
    assert!(r.text.contains("\"completed\""), "{}", r.text);
    let ids: Vec<u64> = r
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|s| s.parse().unwrap())
        .collect();
    assert!(ids.len() >= 2, "{}", r.text);
    // Resuming after the first event skips it.
    let resumed = app
        .send(
            Request::get(format!("/api/v1/executions/{exec}/events"))
                .header("last-event-id", ids[0].to_string())
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    let again: Vec<u64> = resumed
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(again, ids[1..]);
}

#[tokio::test]
async fn bearer_auth() {
    let app = app_with(|o| o.auth_token = Some("s3cret".into())).await;
    let r = app.get("/api/v1/workflows").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.content_type, PROBLEM);
    let with = |t: &str| {
        Request::get("/api/v1/workflows")
            .header("authorization", format!("Bearer {t}"))
            .body(Body::empty())
            .unwrap()
    };
    assert_eq!(
        app.send(with("wrong!")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.send(with("s3cre")).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.send(with("s3cret")).await.status, StatusCode::OK);
    // The scheme is case-insensitive (RFC 6750); the token is not.
    for header in ["bearer s3cret", "BEARER s3cret", "Bearer  s3cret"] {
        let r = app
            .send(
                Request::get("/api/v1/workflows")
                    .header("authorization", header)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{header}");
    }
    assert_eq!(
        app.send(with("S3CRET")).await.status,
        StatusCode::UNAUTHORIZED
    );
    let basic = Request::get("/api/v1/workflows")
        .header("authorization", "Basic s3cret")
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(basic).await.status, StatusCode::UNAUTHORIZED);
    // Health and metrics stay open unless configured.
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/metrics").await.status, StatusCode::OK);
    let closed = app_with(|o| {
        o.auth_token = Some("t".into());
        o.metrics_requires_auth = true;
    })
    .await;
    assert_eq!(
        closed.get("/metrics").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn metrics_health_ready() {
    let app = app().await;
    let id = app.create(DIAMOND).await;
    let exec = app.execute(&id).await;
    app.finish(&exec).await;
    app.post("/api/v1/events", r#"{"events": [{"type": "x"}]}"#)
        .await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    let m = app.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(m.content_type.starts_with("text/plain"));
    for family in [
        "baton_http_requests_total{method=\"POST\",route=\"/api/v1/workflows\",status=\"201\"} 1",
        "baton_http_request_duration_seconds_bucket{method=\"POST\",route=\"/api/v1/workflows/{id}/execute\",le=\"+Inf\"} 1",
        "baton_http_request_duration_seconds_count{method=\"POST\",route=\"/api/v1/workflows/{id}/execute\"} 1",
        "baton_build_info{version=\"",
        "process_start_time_seconds ",
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "baton_events_published_total 1",
        "baton_runs{state=\"running\"}",
        "baton_runs_finished_total{state=\"completed\"} 1",
        "# TYPE baton_coordination_overhead_seconds histogram",
        "baton_coordination_overhead_seconds_bucket{le=\"+Inf\"} 4\n",
        "baton_coordination_overhead_seconds_count 4\n",
        "baton_ready_queue_depth",
        // DIAMOND's own agents are not the operator's: summed, not named.
        "baton_agent_calls_total{agent=\"(workflow)\"} 4",
        "baton_tasks_ended_total{outcome=\"succeeded\"} 4",
        "baton_tasks_ended_total{outcome=\"failed\"} 0",
        "baton_task_retries_total 0",
        "baton_dead_letters 0",
        "baton_events_redelivered_total 0",
    ] {
        assert!(m.text.contains(family), "{family} missing from\n{}", m.text);
    }
    // The server's Grafana dashboard names only metrics the server exports.
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/grafana-server.json"
    );
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut named = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("baton_") || word.starts_with("process_") {
                    named += 1;
                    assert!(
                        m.text.contains(&format!("# TYPE {word} "))
                            || m.text.contains(&format!("{word}{{"))
                            || m.text.contains(&format!("{word} ")),
                        "the dashboard's `{word}` ({}) is not exported",
                        panel["title"]
                    );
                }
            }
        }
    }
    assert!(named >= 16, "{named}");
}

#[tokio::test]
async fn openapi_matches_the_committed_document() {
    let app = app().await;
    let served: Value = app.get("/openapi.json").await.json();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";
    if std::env::var_os("BATON_BLESS").is_some() {
        std::fs::write(path, &pretty).unwrap();
    }
    let committed = std::fs::read_to_string(path)
        .expect("docs/openapi.json missing: run with BATON_BLESS=1 to write it");
    assert!(
        committed == pretty,
        "docs/openapi.json is stale: run `BATON_BLESS=1 cargo test -p baton-server openapi`"
    );
    // Readable: every operation named once and tagged with a declared tag,
    // every schema described, and the examples accepted as they are.
    let tags: Vec<&str> = served["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in served["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap();
            assert!(
                id.chars().all(|c| c.is_ascii_alphabetic())
                    && id.starts_with(|c: char| c.is_ascii_lowercase()),
                "{method} {path}: operationId `{id}`"
            );
            assert!(ids.insert(id), "operationId `{id}` twice");
            let tag = op["tags"][0].as_str().unwrap();
            assert!(tags.contains(&tag), "{method} {path}: tag `{tag}`");
        }
    }
    // Every link names an operation and one of its path parameters.
    let mut linked = 0;
    for item in served["paths"].as_object().unwrap().values() {
        for op in item.as_object().unwrap().values() {
            for response in op["responses"].as_object().unwrap().values() {
                let Some(links) = response["links"].as_object() else {
                    continue;
                };
                for (name, link) in links {
                    let to = link["operationId"].as_str().unwrap();
                    let target = baton_server::openapi::ROUTES
                        .iter()
                        .find(|r| r.id == to)
                        .unwrap_or_else(|| panic!("link {name}: no operation {to}"));
                    for parameter in link["parameters"].as_object().unwrap().keys() {
                        assert!(
                            target.path.contains(&format!("{{{parameter}}}")),
                            "link {name}: {} has no parameter {parameter}",
                            target.path
                        );
                    }
                    linked += 1;
                }
            }
        }
    }
    assert_eq!(linked, baton_server::openapi::LINKS.len());
    for (name, schema) in served["components"]["schemas"].as_object().unwrap() {
        assert!(
            schema["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "schema {name} has no description"
        );
    }
    for (path, created) in [
        ("/api/v1/workflows", StatusCode::CREATED),
        ("/api/v1/events", StatusCode::OK),
    ] {
        let example =
            &served["paths"][path]["post"]["requestBody"]["content"]["application/json"]["example"];
        let r = app.post(path, &example.to_string()).await;
        assert_eq!(r.status, created, "{path} example {example}: {}", r.text);
    }
    // Every route in the table answers something other than the 404 fallback.
    for route in baton_server::openapi::ROUTES {
        let path = route
            .path
            .replace("{id}", "0000000000000001")
            .replace("{topic}", "t")
            .replace("{group}", "g");
        let method = route.method.to_uppercase();
        let r = app
            .send(
                Request::builder()
                    .method(method.as_str())
                    .uri(&path)
                    .header("content-type", "application/json")
                    .body(Body::from("{}"))
                    .unwrap(),
            )
            .await;
        let routed = r.status != StatusCode::NOT_FOUND || !r.text.contains("no route");
        assert!(routed, "{method} {path} is not routed: {}", r.text);
    }
}

/// `?wait_ms=` answers when the run ends: one request follows a run of
/// three 300 ms tasks to its end; without it the status is answered at once.
#[tokio::test]
async fn a_status_request_can_wait_for_the_runs_end() {
    let app = app().await;
    let slow = app.create(SLOW).await;
    let run = app.execute(&slow).await;
    let now = app.get(&format!("/api/v1/executions/{run}")).await.json();
    assert_eq!(now["status"], "executing");
    let started = std::time::Instant::now();
    let r = app
        .get(&format!("/api/v1/executions/{run}?wait_ms=10000"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.json()["status"], "completed");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "answered at the run's end, not after the whole wait"
    );
    // An ended run is answered at once; a bad wait is a 400.
    let started = std::time::Instant::now();
    let r = app
        .get(&format!("/api/v1/executions/{run}?wait_ms=10000"))
        .await;
    assert_eq!(r.json()["status"], "completed");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    let bad = app
        .get(&format!("/api/v1/executions/{run}?wait_ms=soon"))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.text);
}

#[tokio::test]
async fn executions_are_listed_newest_first_filtered_and_paged() {
    let app = app().await;
    let diamond = app.create(DIAMOND).await;
    let slow = app.create(SLOW).await;
    let mut done = Vec::new();
    for _ in 0..3 {
        let r = app
            .post(&format!("/api/v1/workflows/{diamond}/execute"), "{}")
            .await;
        let exec = r.json()["execution_id"].as_str().unwrap().to_string();
        app.finish(&exec).await;
        done.push(exec);
    }
    let running = app.execute(&slow).await;

    let all = app.get("/api/v1/executions").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.text);
    let all = all.json();
    let ids: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [&running, &done[2], &done[1], &done[0]]);
    assert_eq!(all["items"][1]["workflow"], "diamond");
    assert_eq!(all["items"][1]["workflow_id"], diamond.as_str());
    assert_eq!(all["items"][1]["status"], "completed");
    assert_eq!(all["items"][1]["task_counts"]["succeeded"], 4);
    assert!(all.get("next_cursor").is_none());

    // Pages of two, following the cursor.
    let p1 = app.get("/api/v1/executions?limit=2").await.json();
    assert_eq!(p1["items"].as_array().unwrap().len(), 2);
    let cursor = p1["next_cursor"].as_str().unwrap();
    assert_eq!(cursor, done[2]);
    let p2 = app
        .get(&format!("/api/v1/executions?limit=2&cursor={cursor}"))
        .await
        .json();
    assert_eq!(p2["items"][0]["execution_id"], done[1].as_str());
    assert_eq!(p2["items"][1]["execution_id"], done[0].as_str());
    assert!(p2.get("next_cursor").is_none());

    // Filters.
    let f = app
        .get("/api/v1/executions?status=executing&workflow=slow")
        .await
        .json();
    assert_eq!(f["items"].as_array().unwrap().len(), 1);
    assert_eq!(f["items"][0]["execution_id"], running.as_str());
    let f = app
        .get("/api/v1/executions?workflow=diamond&status=failed")
        .await
        .json();
    assert!(f["items"].as_array().unwrap().is_empty());
    let created = all["items"][2]["created_at_ms"].as_u64().unwrap();
    let f = app
        .get(&format!("/api/v1/executions?until_ms={}", created + 1))
        .await
        .json();
    assert!(f["items"].as_array().unwrap().len() >= 2);
    let f = app
        .get("/api/v1/executions?since_ms=99999999999999")
        .await
        .json();
    assert!(f["items"].as_array().unwrap().is_empty());

    // Bad queries say what is wrong.
    let bad = app.get("/api/v1/executions?status=done").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.json()["detail"].as_str().unwrap().contains("executing"));
    let bad = app.get("/api/v1/executions?cursor=xyz").await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    for q in ["parent=", "parent=12"] {
        let bad = app.get(&format!("/api/v1/executions?{q}")).await;
        assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{q}");
        assert!(
            bad.json()["detail"].as_str().unwrap().contains("parent"),
            "{q}"
        );
    }
    // The largest time the API documents is read, not refused.
    let late = app
        .get("/api/v1/executions?since_ms=18446744073709551615")
        .await;
    assert_eq!(late.status, StatusCode::OK);
    let bad = app.get("/api/v1/executions?colour=red").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.content_type, PROBLEM);
}

#[tokio::test]
async fn rerun_starts_a_new_execution_linked_to_the_finished_one() {
    let app = app().await;
    let id = app
        .create(r#"{"agents": {"s": {"type": "simulate", "outputs": {"a": {"n": 1}}}}, "tasks": [{"id": "a", "agent": "s"}, {"id": "b", "agent": "s", "depends_on": ["a"]}]}"#)
        .await;
    let first = app.execute(&id).await;
    assert_eq!(app.finish(&first).await["status"], "completed");
    let base = format!("/api/v1/executions/{first}/rerun");
    let r = app.post(&base, r#"{"from": "b"}"#).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let second = r.json()["execution_id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["workflow_id"], json!(id));
    assert_ne!(second, first);
    let s = app.finish(&second).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["rerun_of"], json!(first));
    assert_eq!(
        s["tasks"][0]["output"],
        json!({"n": 1}),
        "a's output reused"
    );
    let page = app.get("/api/v1/executions?limit=1").await.json();
    assert_eq!(page["items"][0]["rerun_of"], json!(first));

    // Unknown task: 422 at `$.from`, with the closest id.
    let r = app.post(&base, r#"{"from": "bb"}"#).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let p = r.json();
    assert_eq!(p["errors"][0]["path"], "$.from");
    assert_eq!(p["errors"][0]["hint"], "did you mean `b`?");
    // `from` is required; unknown fields are refused.
    for body in ["{}", r#"{"from": "b", "force": true}"#] {
        let r = app.post(&base, body).await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.text
        );
    }
    let r = app
        .post(
            "/api/v1/executions/00000000000000aa/rerun",
            r#"{"from": "a"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // A run still going cannot be rerun.
    let slow = app.create(SLOW).await;
    let running = app.execute(&slow).await;
    let r = app
        .post(
            &format!("/api/v1/executions/{running}/rerun"),
            r#"{"from": "a"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text);
}

#[tokio::test]
async fn a_fan_outs_instances_are_paged() {
    let app = app().await;
    let id = app
        .create(r#"{"agents": {"s": {"type": "simulate", "outputs": {"split": [10, 11, 12, 13, 14]}}, "n": {"type": "noop"}}, "tasks": [{"id": "split", "agent": "s"}, {"id": "each", "agent": "n", "depends_on": ["split"], "for_each": "split.output"}]}"#)
        .await;
    let exec = app.execute(&id).await;
    assert_eq!(app.finish(&exec).await["status"], "completed");
    let base = format!("/api/v1/executions/{exec}/tasks");
    let r = app
        .get(&format!("{base}/each/instances?limit=2&offset=3"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let page = r.json();
    assert_eq!(page["kind"], "for_each");
    assert_eq!(page["total"], 5);
    assert_eq!(page["next_offset"], json!(null));
    assert_eq!(page["items"][0]["index"], 3);
    assert_eq!(page["items"][0]["status"], "succeeded");
    let r = app.get(&format!("{base}/each/instances?limit=2")).await;
    assert_eq!(r.json()["next_offset"], 2);
    for (path, status) in [
        ("split/instances", StatusCode::NOT_FOUND),
        ("nope/instances", StatusCode::NOT_FOUND),
        ("each/instances?limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("each/instances?page=2", StatusCode::BAD_REQUEST),
    ] {
        let r = app.get(&format!("{base}/{path}")).await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
    }
}

/// The console: `/` redirects to `/ui/`; its files need no token (the page
/// asks for one), carry an `ETag` (304 when it matches), a
/// Content-Security-Policy and `nosniff`; the API behind it still needs the token.
#[tokio::test]
async fn the_console_is_served_without_a_token() {
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;
    let app = app_with(|o| o.auth_token = Some("s3cret".into())).await;
    let get = |path: &str, etag: Option<&str>| {
        let mut req = Request::get(path);
        if let Some(tag) = etag {
            req = req.header("if-none-match", tag);
        }
        app.router.clone().oneshot(req.body(Body::empty()).unwrap())
    };
    let root = get("/", None).await.unwrap();
    assert!(root.status().is_redirection(), "{}", root.status());
    assert_eq!(root.headers()["location"], "/ui/");
    let page = get("/ui/", None).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'self'")
    );
    assert_eq!(page.headers()["x-content-type-options"], "nosniff");
    let tag = page.headers()["etag"].to_str().unwrap().to_string();
    for (path, kind) in [
        ("/ui/console.js", "text/javascript"),
        ("/ui/console.css", "text/css"),
    ] {
        let r = get(path, None).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(
            r.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        let again = get(path, Some(&tag)).await.unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED, "{path}");
    }
    // Compressed for a browser that takes it; the same bytes once inflated.
    let plain = get("/ui/console.js", None).await.unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
    let plain = plain.into_body().collect().await.unwrap().to_bytes();
    let packed = app
        .router
        .clone()
        .oneshot(
            Request::get("/ui/console.js")
                .header("accept-encoding", "gzip, deflate, br")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(packed.headers()["content-encoding"], "deflate");
    assert_eq!(packed.headers()["vary"], "accept-encoding");
    assert_ne!(packed.headers()["etag"], tag.as_str());
    let packed = packed.into_body().collect().await.unwrap().to_bytes();
    assert!(
        packed.len() * 3 < plain.len(),
        "{} of {}",
        packed.len(),
        plain.len()
    );
    assert_eq!(
        miniz_oxide::inflate::decompress_to_vec_zlib(&packed).unwrap(),
        plain
    );
    assert_eq!(
        app.get("/api/v1/workflows").await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// `GET /api/v1/topics`: partitions, and a group's lag and pending events;
/// `GET /api/v1/topics/{topic}/events`: a partition's events in pages,
/// without delivering them.
#[tokio::test]
async fn topics_and_their_events_are_listed() {
    let app = app().await;
    let events: Vec<Value> = (0..10)
        .map(|i| json!({"type": "order", "key": "k", "payload": {"n": i}}))
        .collect();
    let r = app
        .post(
            "/api/v1/events?topic=orders",
            &json!({"events": events}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let partition = r.json()["offsets"][0]["partition"].as_u64().unwrap();
    let r = app
        .get("/api/v1/topics/orders/groups/billing/poll?max=3&member=m1")
        .await;
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 3);

    let topics = app.get("/api/v1/topics").await.json();
    let orders = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders")
        .unwrap()
        .clone();
    assert_eq!(orders["events"], 10, "{orders}");
    let billing = &orders["groups"][0];
    assert_eq!(
        (&billing["name"], &billing["lag"], &billing["pending"]),
        (&json!("billing"), &json!(7), &json!(3)),
        "{orders}"
    );
    assert_eq!(billing["members"][0]["name"], "m1");
    // Who holds what: the group's pending list.
    let pending = app
        .get("/api/v1/topics/orders/groups/billing/pending?limit=10")
        .await;
    assert_eq!(pending.status, StatusCode::OK, "{}", pending.text);
    let pending = pending.json();
    let entries = pending["pending"].as_array().unwrap();
    assert_eq!(entries.len(), 3, "{pending}");
    assert!(
        entries
            .iter()
            .all(|e| e["member"] == "m1" && e["deliveries"] == 1)
    );
    assert!(entries[0]["claimable_at_ms"].as_u64() > entries[0]["since_ms"].as_u64());
    for (path, status) in [
        (
            "/api/v1/topics/orders/groups/nobody/pending",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/topics/nope/groups/billing/pending",
            StatusCode::NOT_FOUND,
        ),
        (
            "/api/v1/topics/orders/groups/billing/pending?limit=0",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ] {
        assert_eq!(app.get(path).await.status, status, "{path}");
    }

    let page = app
        .get(&format!(
            "/api/v1/topics/orders/events?partition={partition}&max=4"
        ))
        .await
        .json();
    let ns: Vec<&Value> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["payload"]["n"])
        .collect();
    assert_eq!(ns, [&json!(0), &json!(1), &json!(2), &json!(3)], "{page}");
    assert_eq!(page["next_from"], 4);
    let last = app
        .get(&format!(
            "/api/v1/topics/orders/events?partition={partition}&from=8"
        ))
        .await
        .json();
    assert_eq!(last["events"].as_array().unwrap().len(), 2);
    assert!(last.get("next_from").is_none(), "{last}");
    // Reading delivered nothing: the group still has 7 to go.
    let again = app.get("/api/v1/topics").await.json();
    assert!(again.to_string().contains("\"lag\":7"), "{again}");

    assert_eq!(
        app.get("/api/v1/topics/nope/events").await.status,
        StatusCode::NOT_FOUND
    );
    let bad = app.get("/api/v1/topics/orders/events?partition=999").await;
    assert_eq!(bad.status, StatusCode::NOT_FOUND, "{}", bad.text);
    assert_eq!(
        app.get("/api/v1/topics/orders/events?max=0").await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

/// `POST /api/v1/topics/{topic}/redrive`: dead letters go back to their topic,
/// oldest first, and the redrive group's lag says how many are left.
#[tokio::test]
async fn dead_letters_are_redriven_to_their_topic() {
    let app = app_with(|o| {
        let d = &mut o.log.log.topic_defaults;
        d.visibility_timeout = std::time::Duration::from_millis(50);
        d.max_deliveries = 2;
    })
    .await;
    let events: Vec<Value> = (0..3)
        .map(|i| json!({"type": "order", "key": format!("k{i}"), "payload": {"n": i}}))
        .collect();
    let r = app
        .post(
            "/api/v1/events?topic=orders",
            &json!({"events": events}).to_string(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    // Two deliveries without an ack, then the third poll dead-letters them.
    for _ in 0..3 {
        app.get("/api/v1/topics/orders/groups/billing/poll?max=10")
            .await;
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
    }
    // The second delivery of each is counted as a redelivery.
    let m = app.get("/metrics").await.text;
    assert!(m.contains("baton_events_delivered_total 6\n"), "{m}");
    assert!(m.contains("baton_events_redelivered_total 3\n"), "{m}");
    let topics = app.get("/api/v1/topics").await.json();
    let dlq = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "orders.dlq")
        .unwrap_or_else(|| panic!("no dead letters: {topics}"));
    assert_eq!(dlq["events"], 3, "{dlq}");

    let r = app
        .post("/api/v1/topics/orders.dlq/redrive", r#"{"max": 2}"#)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({"topic": "orders", "moved": 2, "remaining": 1})
    );
    let r = app.post("/api/v1/topics/orders.dlq/redrive", "{}").await;
    assert_eq!(
        r.json(),
        json!({"topic": "orders", "moved": 1, "remaining": 0})
    );
    let back = app
        .get("/api/v1/topics/orders/groups/billing/poll?max=10")
        .await
        .json();
    let back = back["events"].as_array().unwrap();
    assert_eq!(back.len(), 3, "{back:?}");
    for e in back {
        assert_eq!(e["deliveries"], 1);
        assert_eq!(e["headers"]["redrive.group"], "billing");
        assert!(e["headers"].get("dlq.reason").is_none(), "{e}");
    }

    // Only `X.dlq` topics, not the server's own, and only existing ones.
    for (path, status) in [
        ("/api/v1/topics/orders/redrive", StatusCode::NOT_FOUND),
        (
            "/api/v1/topics/baton.runs.dlq/redrive",
            StatusCode::FORBIDDEN,
        ),
        ("/api/v1/topics/nope.dlq/redrive", StatusCode::NOT_FOUND),
    ] {
        let r = app.post(path, "{}").await;
        assert_eq!(r.status, status, "{path}: {}", r.text);
    }
    let r = app
        .post("/api/v1/topics/orders.dlq/redrive", r#"{"max": 0}"#)
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

/// A run's children (an inline sub-workflow here) are listed with
/// `?parent=`, and a child's status names its parent.
#[tokio::test]
async fn child_runs_name_their_parent() {
    let app = app().await;
    let id = app
        .create(
            r#"{"name": "parent", "tasks": [
                {"id": "first"},
                {"id": "team", "depends_on": ["first"], "workflow": {"inline":
                    {"name": "child", "tasks": [{"id": "inner"}]}}}]}"#,
        )
        .await;
    let run = app.execute(&id).await;
    app.finish(&run).await;
    let children = app
        .get(&format!("/api/v1/executions?parent={run}"))
        .await
        .json();
    let items = children["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{children}");
    assert_eq!(items[0]["workflow"], "child");
    assert_eq!(items[0]["parent_id"], run.as_str());
    let child = items[0]["execution_id"].as_str().unwrap();
    let status = app.get(&format!("/api/v1/executions/{child}")).await.json();
    assert_eq!(status["parent_id"], run.as_str(), "{status}");
    let parent = app.get(&format!("/api/v1/executions/{run}")).await.json();
    assert!(parent.get("parent_id").is_none(), "{parent}");
    assert_eq!(parent["tasks"][1]["child"], child, "{parent}");
    // A child's workflow is not in the catalog: its run tells it, planned.
    let wf = app
        .get(&format!("/api/v1/executions/{child}/workflow"))
        .await
        .json();
    assert_eq!(wf["document"]["name"], "child", "{wf}");
    assert_eq!(wf["document"]["tasks"][0]["id"], "inner", "{wf}");
    assert_eq!(wf["plan"]["stages"], json!([["inner"]]), "{wf}");
    let wf = app
        .get(&format!("/api/v1/executions/{run}/workflow"))
        .await
        .json();
    assert_eq!(
        wf["document"]["tasks"][1]["depends_on"],
        json!(["first"]),
        "{wf}"
    );
    assert_eq!(wf["plan"]["summary"]["tasks"], 2, "{wf}");
    let missing = app
        .get("/api/v1/executions/0000000000000001/workflow")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

/// A full disk used to wedge the server until it was restarted. Now, while the data
/// directory's disk is full, the write that found no space waits, publishing answers
/// 503 saying the log waits for disk space and `/readyz` answers 503; once space is
/// freed the server goes on by itself, the waiting write included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_503_until_space_returns_then_the_server_goes_on() {
    use std::io::Write as _;
    use std::time::Duration;
    use tower::ServiceExt as _;
    let Some(fs) = baton_events::testing::Tmpfs::mount(16 << 20) else {
        return;
    };
    let data = fs.path().join("data");
    let app = app_with(|o| o.data_dir = data.clone()).await;
    let id = app.create(DIAMOND).await;
    let exec = app.execute(&id).await;
    assert_eq!(app.finish(&exec).await["status"], "completed");

    let ballast = fs.path().join("ballast");
    {
        let mut f = std::fs::File::create(&ballast).unwrap();
        while f.write_all(&[0; 64 << 10]).is_ok() {}
    }
    let body = format!(
        r#"{{"events": [{{"type": "t", "key": "k", "payload": {{"x": "{}"}}}}]}}"#,
        "y".repeat(4096)
    );
    let publish = |body: String| {
        Request::post("/api/v1/events?topic=orders")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let waiting = tokio::spawn(app.router.clone().oneshot(publish(body.clone())));
    let ready = |want: StatusCode| {
        let app = &app;
        async move {
            for _ in 0..200 {
                if app.get("/readyz").await.status == want {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("/readyz never answered {want}");
        }
    };
    ready(StatusCode::SERVICE_UNAVAILABLE).await;
    let r = app.get("/readyz").await;
    assert!(r.text.contains("disk space"), "{}", r.text);
    let r = app.send(publish(body.clone())).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.text);
    assert!(
        r.text.contains("waiting for disk space") && r.text.contains("No space left"),
        "{}",
        r.text
    );
    assert!(!waiting.is_finished());

    std::fs::remove_file(&ballast).unwrap();
    ready(StatusCode::OK).await;
    let res = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("the waiting publish went through")
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(app.send(publish(body)).await.status, StatusCode::OK);
    let exec = app.execute(&id).await;
    assert_eq!(app.finish(&exec).await["status"], "completed");
    let polled = app
        .get("/api/v1/topics/orders/groups/g/poll?member=m&max=10")
        .await
        .json();
    // The waiting publish and the one after: each once.
    assert_eq!(polled["events"].as_array().unwrap().len(), 2);
}
