//! Tenants: a token of one tenant cannot see, run, control, publish to,
//! consume or serve anything of another's, on any route (the route table
//! drives the test, so a new route cannot be forgotten); quotas per tenant.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use baton_server::tokens::{Rate, Scope, create};
use serde_json::{Value, json};

use crate::{App, Reply, app_with, as_caller};

/// Every scope a tenant's token can hold.
fn tenant_scopes() -> Vec<Scope> {
    Scope::ALL
        .into_iter()
        .filter(|s| !matches!(s, Scope::Admin | Scope::Metrics))
        .collect()
}

/// A server with the admin token `admin` and one token per tenant given.
async fn server(
    tenants: &[&str],
    f: impl FnOnce(&mut baton_server::ServerOptions),
) -> (App, Vec<String>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let tokens = tenants
        .iter()
        .map(|t| {
            create(&file, t, &tenant_scopes(), None, Rate::default(), Some(t))
                .unwrap()
                .1
        })
        .collect();
    let app = app_with(|o| {
        o.tokens_file = Some(file.clone());
        o.auth_token = Some("admin".into());
        o.long_poll_max = Duration::from_millis(50);
        f(o);
    })
    .await;
    (app, tokens, dir)
}

async fn call(app: &App, method: &str, path: &str, token: &str, body: &str) -> Reply {
    let req = as_caller(&method.to_ascii_uppercase(), path, Some(token))
        .body(Body::from(body.to_string()))
        .unwrap();
    // An event stream that opened stays open: answered, and not refused.
    match tokio::time::timeout(Duration::from_secs(2), app.send(req)).await {
        Ok(reply) => reply,
        Err(_) => Reply {
            status: StatusCode::OK,
            content_type: "text/event-stream".into(),
            text: String::new(),
            request_id: None,
        },
    }
}

/// Posts `doc` as `token`; its id.
async fn post_workflow(app: &App, token: &str, doc: &str) -> String {
    let r = call(app, "post", "/api/v1/workflows", token, doc).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_string()
}

/// Executes workflow `id` as `token`; the run's id.
async fn execute(app: &App, token: &str, id: &str) -> String {
    let path = format!("/api/v1/workflows/{id}/execute");
    let r = call(app, "post", &path, token, "{}").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    r.json()["execution_id"].as_str().unwrap().to_string()
}

/// Waits (up to 4 s) for `run` to complete, asked as `token`.
async fn until_completed(app: &App, token: &str, run: &str) {
    for _ in 0..200 {
        let s = call(app, "get", &format!("/api/v1/executions/{run}"), token, "").await;
        if s.json()["status"] == "completed" {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {run} did not complete");
}

/// A workflow of six calls to the `worker` agent `w`.
const WORKERS: &str = r#"{"name": "shared-name", "agents": {"w": {"type": "worker"}},
  "tasks": [{"id": "a", "agent": "w"}, {"id": "b", "agent": "w"}, {"id": "c", "agent": "w"},
            {"id": "d", "agent": "w"}, {"id": "e", "agent": "w"}, {"id": "f", "agent": "w"}]}"#;

/// Every route of the table tried by tenant `bolt` on tenant `acme`'s
/// workflow, runs, topic, worker calls and leases: each is refused (403 or
/// 404, as if it did not exist) or answers without anything of `acme`'s
/// (lists, a poll of `bolt`'s own queue, a new workflow of its own). The
/// same call by `acme` is not refused, so the test cannot pass by refusing
/// everything; routes that span tenants refuse both.
#[tokio::test]
async fn a_tenant_reaches_nothing_of_another_on_any_route() {
    let (app, tokens, _dir) = server(&["acme", "bolt"], |_| {}).await;
    let (acme, bolt) = (tokens[0].as_str(), tokens[1].as_str());
    let workflow = post_workflow(&app, acme, WORKERS).await;
    // One run's calls are leased to acme's worker; the other's are controlled.
    let leased_run = execute(&app, acme, &workflow).await;
    let r = call(
        &app,
        "post",
        "/api/v1/agents/w/poll",
        acme,
        r#"{"max": 5, "wait_ms": 5000, "lease_ms": 600000}"#,
    )
    .await;
    let mut leases: Vec<String> = r.json()["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(leases.len(), 5, "{}", r.text);
    let run = execute(&app, acme, &workflow).await;
    let r = call(
        &app,
        "post",
        "/api/v1/events",
        acme,
        r#"{"topic": "acme.orders", "events": [{"type": "placed"}]}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = call(
        &app,
        "get",
        "/api/v1/topics/acme.orders/groups/g/poll?max=1",
        acme,
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let secrets = [
        workflow.clone(),
        run.clone(),
        leased_run.clone(),
        "acme".to_string(),
    ];

    let spans_tenants = ["/api/v1/agents", "/api/v1/audit", "/api/v1/stats"];
    let mut tried = 0;
    for route in baton_server::openapi::ROUTES
        .iter()
        .filter(|r| r.scope.is_some())
    {
        let lease = if route.path.starts_with("/api/v1/tasks/{id}") {
            leases.pop().expect("a lease per task route")
        } else {
            String::new()
        };
        let id = if route.path.starts_with("/api/v1/workflows/") {
            workflow.clone()
        } else if route.path.starts_with("/api/v1/executions/") {
            run.clone()
        } else {
            lease.clone()
        };
        let path = route
            .path
            .replace("{id}", &id)
            .replace("{task}", "a")
            .replace("{topic}", "acme.orders")
            .replace("{group}", "g")
            .replace("{name}", "w");
        let body = match (route.method, route.path) {
            ("post", "/api/v1/workflows") => r#"{"tasks": [{"id": "t"}]}"#.to_string(),
            ("post", "/api/v1/executions/{id}/rerun") => r#"{"from": "a"}"#.to_string(),
            ("post", "/api/v1/events") => {
                r#"{"topic": "acme.orders", "events": [{"type": "forged"}]}"#.to_string()
            }
            ("post", "/api/v1/topics/{topic}/groups/{group}/ack") => {
                r#"{"offsets": [{"partition": 0, "offset": 0}]}"#.to_string()
            }
            ("post", "/api/v1/agents/{name}/poll") => r#"{"max": 5, "wait_ms": 100}"#.to_string(),
            ("post", "/api/v1/tasks/report") => {
                let lease = leases.pop().expect("a lease for the report");
                json!({"reports": [{"id": lease, "complete": {"output": 1}}]}).to_string()
            }
            ("post", "/api/v1/tasks/{id}/complete") => r#"{"output": 1}"#.to_string(),
            ("post", "/api/v1/tasks/{id}/fail") => r#"{"message": "no"}"#.to_string(),
            ("post", "/api/v1/tasks/{id}/progress") => r#"{"progress": 1}"#.to_string(),
            ("post", _) => "{}".to_string(),
            _ => String::new(),
        };
        let what = format!("{} {}", route.method, route.path);
        let theirs = call(&app, route.method, &path, bolt, &body).await;
        if spans_tenants.contains(&route.path) {
            assert_eq!(
                theirs.status,
                StatusCode::FORBIDDEN,
                "{what}: {}",
                theirs.text
            );
            let own = call(&app, route.method, &path, acme, &body).await;
            assert_eq!(own.status, StatusCode::FORBIDDEN, "{what}: {}", own.text);
            tried += 1;
            continue;
        }
        match theirs.status.as_u16() {
            403 | 404 => {}
            200..=299 => {
                // Nothing of acme's beyond what the request itself named.
                for secret in &secrets {
                    if theirs.text.contains(secret.as_str()) && !body.contains(secret.as_str()) {
                        panic!("{what}: bolt sees `{secret}`: {}", theirs.text);
                    }
                }
                if route.path == "/api/v1/tasks/report" {
                    assert_eq!(theirs.json()["results"][0]["status"], "unknown", "{what}");
                }
            }
            other => panic!("{what}: bolt is answered {other}: {}", theirs.text),
        }
        let own = call(&app, route.method, &path, acme, &body).await;
        // Not the refusal bolt got (acme may get another error: no fan-out
        // at that task, no dead-letter topic of that name).
        assert!(
            own.status != theirs.status
                || own.status.is_success()
                || own.json()["detail"] != theirs.json()["detail"],
            "{what}: acme is refused as bolt is ({}): {}",
            own.status,
            own.text
        );
        if route.path == "/api/v1/tasks/report" {
            assert_eq!(own.json()["results"][0]["status"], "completed", "{what}");
        }
        tried += 1;
    }
    assert!(tried >= 28, "{tried} routes");

    // What bolt sees in lists is its own, and it never took acme's calls.
    let list = call(&app, "get", "/api/v1/executions", bolt, "")
        .await
        .json();
    assert!(
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["tenant"] == "bolt"),
        "{list}"
    );
    let admin = call(&app, "get", "/api/v1/executions", "admin", "")
        .await
        .json();
    let acmes = admin["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["tenant"] == "acme")
        .count();
    assert!(acmes >= 2, "the admin sees every tenant's runs: {admin}");
}

/// A tenant's workers take its calls only; the admin's workers serve a
/// tenant's agent by its queue name (`<tenant>/<agent>`).
#[tokio::test]
async fn a_tenants_worker_calls_go_to_its_own_workers() {
    let (app, tokens, _dir) = server(&["acme", "bolt"], |_| {}).await;
    let (acme, bolt) = (tokens[0].as_str(), tokens[1].as_str());
    let doc = r#"{"agents": {"w": {"type": "worker"}}, "tasks": [{"id": "a", "agent": "w"}]}"#;
    let mut runs = Vec::new();
    for token in [acme, bolt, "admin"] {
        let id = post_workflow(&app, token, doc).await;
        runs.push(execute(&app, token, &id).await);
    }
    let got = poll(&app, bolt, "w").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["run"], runs[1].as_str());
    let got = poll(&app, "admin", "w").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["run"], runs[2].as_str(), "the untenanted run");
    let got = poll(&app, "admin", "acme%2Fw").await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["run"], runs[0].as_str());
    assert!(
        poll(&app, acme, "w").await.is_empty(),
        "taken by the admin's worker"
    );
}

/// What a poll for agent `name` gets.
async fn poll(app: &App, token: &str, name: &str) -> Vec<Value> {
    let r = call(
        app,
        "post",
        &format!("/api/v1/agents/{name}/poll"),
        token,
        r#"{"max": 10, "wait_ms": 1000}"#,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.json()["assignments"].as_array().unwrap().clone()
}

/// A tenant signals its own runs only: every event on the signals topic
/// names one of its runs, and a workflow of a tenant waits on its own
/// topics or the signals topic.
#[tokio::test]
async fn a_tenant_signals_and_waits_on_its_own() {
    let (app, tokens, _dir) = server(&["acme", "bolt"], |_| {}).await;
    let (acme, bolt) = (tokens[0].as_str(), tokens[1].as_str());
    let waits = |topic: &str| {
        json!({"tasks": [{"id": "a", "wait_for": {"topic": topic, "type": "go"}}]}).to_string()
    };
    let r = call(
        &app,
        "post",
        "/api/v1/workflows",
        acme,
        &waits("bolt.orders"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert!(r.text.contains("acme.…"), "{}", r.text);
    let id = post_workflow(&app, acme, &waits("baton.signals")).await;
    let run = execute(&app, acme, &id).await;
    let signal = |run: Option<&str>| {
        let headers = run.map_or(json!({}), |r| json!({"baton.run": r}));
        json!({"events": [{"type": "go", "headers": headers}]}).to_string()
    };
    let r = call(&app, "post", "/api/v1/events", bolt, &signal(None)).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("baton.run"), "{}", r.text);
    let r = call(&app, "post", "/api/v1/events", bolt, &signal(Some(&run))).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text);
    let status = call(&app, "get", &format!("/api/v1/executions/{run}"), acme, "").await;
    assert_ne!(status.json()["status"], "completed", "{}", status.text);
    let r = call(&app, "post", "/api/v1/events", acme, &signal(Some(&run))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    until_completed(&app, acme, &run).await;
}

/// A long poll of another tenant's run is refused before any wait: how long
/// someone else's run takes to end is not the caller's to learn.
#[tokio::test]
async fn a_wait_on_another_tenants_run_is_refused_at_once() {
    let (app, tokens, _dir) = server(&["acme", "bolt"], |o| {
        o.long_poll_max = Duration::from_secs(10);
    })
    .await;
    let (acme, bolt) = (tokens[0].as_str(), tokens[1].as_str());
    let doc = r#"{"agents": {"w": {"type": "worker"}}, "tasks": [{"id": "a", "agent": "w"}]}"#;
    let run = execute(&app, acme, &post_workflow(&app, acme, doc).await).await;
    let path = format!("/api/v1/executions/{run}?wait_ms=2000");
    let started = std::time::Instant::now();
    let theirs = call(&app, "get", &path, bolt, "").await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{}", theirs.text);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    let started = std::time::Instant::now();
    let own = call(&app, "get", &path, acme, "").await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.text);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the owner's wait waits"
    );
}

/// Sub-workflows named from the catalog are the tenant's own: another
/// tenant's workflow of that name is not found.
#[tokio::test]
async fn a_tenants_sub_workflows_come_from_its_own_catalog() {
    let (app, tokens, _dir) = server(&["acme", "bolt"], |_| {}).await;
    let (acme, bolt) = (tokens[0].as_str(), tokens[1].as_str());
    let child = r#"{"name": "child", "tasks": [{"id": "x"}]}"#;
    post_workflow(&app, acme, child).await;
    let parent = r#"{"tasks": [{"id": "p", "workflow": {"name": "child"}}]}"#;
    let r = call(&app, "post", "/api/v1/workflows", bolt, parent).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.text.contains("the catalog has no"), "{}", r.text);
    let id = post_workflow(&app, acme, parent).await;
    let run = execute(&app, acme, &id).await;
    until_completed(&app, acme, &run).await;
    // The child run is the tenant's too.
    let path = format!("/api/v1/executions?parent={run}");
    let children = call(&app, "get", &path, acme, "").await.json();
    assert_eq!(children["items"][0]["tenant"], "acme", "{children}");
}

/// A tenant with `max_concurrent_runs` is answered 429 with `Retry-After`
/// past it, until one of its runs ends; other tenants are not counted.
#[tokio::test]
async fn a_tenants_concurrent_runs_are_bounded() {
    let quota = baton_server::limits::Quota {
        max_concurrent_runs: Some(2),
        ..Default::default()
    };
    let (app, tokens, _dir) = server(&["acme", "bolt"], |o| {
        o.tenants.insert("acme".into(), quota);
    })
    .await;
    let (acme, bolt) = (tokens[0].as_str(), tokens[1].as_str());
    let doc = r#"{"agents": {"w": {"type": "worker"}}, "tasks": [{"id": "a", "agent": "w"}]}"#;
    let path = |id: String| format!("/api/v1/workflows/{id}/execute");
    let mine = path(post_workflow(&app, acme, doc).await);
    let theirs = path(post_workflow(&app, bolt, doc).await);
    let first = call(&app, "post", &mine, acme, "{}").await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert_eq!(
        call(&app, "post", &mine, acme, "{}").await.status,
        StatusCode::ACCEPTED
    );
    let over = call(&app, "post", &mine, acme, "{}").await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.text);
    let p: Value = over.json();
    assert_eq!(p["code"], "rate-limited");
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("max_concurrent_runs"),
        "{p}"
    );
    for _ in 0..3 {
        assert_eq!(
            call(&app, "post", &theirs, bolt, "{}").await.status,
            StatusCode::ACCEPTED
        );
    }
    let run = first.json()["execution_id"].as_str().unwrap().to_string();
    let r = call(
        &app,
        "post",
        &format!("/api/v1/executions/{run}/cancel"),
        acme,
        "",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    for _ in 0..200 {
        if call(&app, "post", &mine, acme, "{}").await.status == StatusCode::ACCEPTED {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("a place did not come back when a run ended");
}

/// A tenant's token cannot hold a scope that spans tenants, and a tenant's
/// name is checked.
#[test]
fn a_tenants_token_cannot_span_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    for scope in [Scope::Admin, Scope::Metrics] {
        let e = create(&file, "x", &[scope], None, Rate::default(), Some("acme")).unwrap_err();
        assert!(e.to_string().contains("spans every tenant"), "{e}");
    }
    for name in ["", "Acme", "a.b", "a/b", "-a", "baton", &"a".repeat(33)] {
        let e = create(
            &file,
            "x",
            &[Scope::RunsRead],
            None,
            Rate::default(),
            Some(name),
        );
        assert!(e.is_err(), "{name:?}");
    }
    let (info, _) = create(
        &file,
        "x",
        &[Scope::RunsRead],
        None,
        Rate::default(),
        Some("acme-2"),
    )
    .unwrap();
    assert_eq!(info.tenant.as_deref(), Some("acme-2"));
}
