//! What a remote caller may make the server do: posted workflows may use the
//! operator's agents but not define agents that run processes or send
//! requests, unless the operator allowed it.

use axum::http::StatusCode;
use baton_engine::agent::{Egress, Policy};
use serde_json::json;

use crate::{App, app_with};

/// The workflow from the report: a `command` agent writing a file.
fn command_workflow(canary: &std::path::Path) -> String {
    json!({
        "agents": {"sh": {"type": "command", "shell": true,
                          "command": format!("id > '{}'", canary.display())}},
        "tasks": [{"id": "a", "agent": "sh", "depends_on": []}],
    })
    .to_string()
}

async fn execute(app: &App, id: &str) -> crate::Reply {
    app.post(&format!("/api/v1/workflows/{id}/execute"), "{}")
        .await
}

#[tokio::test]
async fn a_posted_command_agent_is_refused_and_nothing_is_stored_or_run() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("pwned.txt");
    let app = app_with(|_| {}).await;
    let r = app
        .post("/api/v1/workflows", &command_workflow(&canary))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.content_type, "application/problem+json");
    let p = r.json();
    assert_eq!(p["code"], "agent-not-allowed");
    assert!(p["detail"].as_str().unwrap().contains("`sh`"), "{p}");
    let e = &p["errors"][0];
    assert_eq!(e["path"], "$.agents.sh.type");
    assert!(
        e["message"].as_str().unwrap().contains("`command` agent"),
        "{e}"
    );
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("allow_workflow_command_agents = true"),
        "{e}"
    );
    let list = app.get("/api/v1/workflows").await.json();
    assert_eq!(list["items"], json!([]), "a refused workflow is not stored");
    assert!(!canary.exists());
}

#[tokio::test]
async fn a_posted_http_agent_is_refused_unless_its_url_is_allowed() {
    let doc = |url: &str| {
        json!({
            "agents": {"web": {"type": "http", "url": url}},
            "tasks": [{"id": "a", "agent": "web"}],
        })
        .to_string()
    };
    let app = app_with(|_| {}).await;
    let r = app
        .post(
            "/api/v1/workflows",
            &doc("http://169.254.169.254/latest/meta-data/"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    let e = &r.json()["errors"][0];
    assert!(
        e["message"].as_str().unwrap().contains("169.254.169.254"),
        "{e}"
    );
    assert!(
        e["hint"]
            .as_str()
            .unwrap()
            .contains("allow_workflow_http_urls"),
        "{e}"
    );

    let app = app_with(|o| {
        o.workflow_agents = Policy {
            http: vec!["https://agents.example.com/v1/".into()],
            ..Policy::default()
        }
    })
    .await;
    let allowed = app
        .post(
            "/api/v1/workflows",
            &doc("https://agents.example.com/v1/summarize"),
        )
        .await;
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.text);
    for url in [
        "https://agents.example.com/v10/",
        "https://agents.example.com.evil.net/v1/",
        "http://agents.example.com/v1/",
    ] {
        let r = app.post("/api/v1/workflows", &doc(url)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{url}: {}", r.text);
    }
}

#[tokio::test]
async fn the_operators_agent_of_the_same_name_is_used_instead() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("pwned.txt");
    let app = app_with(|o| {
        o.agents = vec![baton_model::Agent {
            name: "sh".into(),
            kind: "noop".into(),
            ..baton_model::Agent::default()
        }]
    })
    .await;
    let id = app.create(&command_workflow(&canary)).await;
    let r = execute(&app, &id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let exec = r.json()["execution_id"].as_str().unwrap().to_string();
    assert_eq!(app.finish(&exec).await["status"], "completed");
    assert!(!canary.exists());
}

#[tokio::test]
async fn command_agents_run_where_the_operator_allowed_them() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("ran.txt");
    let app = app_with(|o| {
        o.workflow_agents = Policy {
            command: true,
            ..Policy::default()
        }
    })
    .await;
    let id = app.create(&command_workflow(&canary)).await;
    let exec = execute(&app, &id).await.json()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(app.finish(&exec).await["status"], "completed");
    assert!(canary.exists());
}

#[tokio::test]
async fn a_workflow_stored_before_the_policy_is_refused_at_execution() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("pwned.txt");
    let workflows = dir.path().join("data/workflows");
    std::fs::create_dir_all(&workflows).unwrap();
    let document: serde_json::Value = serde_json::from_str(&command_workflow(&canary)).unwrap();
    let stored =
        json!({"id": "00000000000000aa", "version": 1, "created_ms": 1, "document": document});
    std::fs::write(workflows.join("00000000000000aa.json"), stored.to_string()).unwrap();
    let app = app_with(|o| o.data_dir = dir.path().join("data")).await;
    let r = execute(&app, "00000000000000aa").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(r.json()["code"], "agent-not-allowed");
    assert!(!canary.exists());
}

#[tokio::test]
async fn the_operators_http_agents_reach_private_addresses_only_when_listed() {
    let agent = baton_model::Agent {
        name: "web".into(),
        kind: "http".into(),
        url: Some("http://127.0.0.1:9/a2a".into()),
        ..baton_model::Agent::default()
    };
    // Refused at startup, rather than on every run that uses it.
    let dir = tempfile::tempdir().unwrap();
    let options = baton_server::ServerOptions {
        data_dir: dir.path().to_path_buf(),
        agents: vec![agent.clone()],
        ..baton_server::ServerOptions::default()
    };
    let Err(e) = baton_server::state(options).await else {
        panic!("a server whose http agent egress refuses must not start")
    };
    let chain = format!("{e}: {}", std::error::Error::source(&e).unwrap());
    assert!(
        chain.contains("agent `web` of the server's config cannot run")
            && chain.contains("`127.0.0.1` is at 127.0.0.1, which is not a public address")
            && chain.contains("allow_private_hosts"),
        "{chain}"
    );

    let doc = r#"{"agents": {"web": {"type": "noop"}}, "tasks": [{"id": "a", "agent": "web"}]}"#;
    let app = app_with(move |o| {
        o.agents = vec![agent];
        o.engine.egress = Egress::Public {
            private_hosts: vec!["127.0.0.1".into()],
        };
    })
    .await;
    let id = app.create(doc).await;
    let r = execute(&app, &id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
}

/// The same command agent, hidden in an inline sub-workflow or in a
/// hierarchical supervisor's inline team: refused, with the path into the
/// child. (Operator agents reaching inline children is
/// `Workflow::override_agents`'s unit test.)
#[tokio::test]
async fn a_command_agent_in_an_inline_child_is_refused_too() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("pwned.txt");
    let child: serde_json::Value = serde_json::from_str(&command_workflow(&canary)).unwrap();
    let app = app_with(|_| {}).await;
    for (task, path) in [
        (
            json!({"id": "outer", "workflow": {"inline": child}}),
            "$.tasks[0].workflow.inline.agents.sh.type",
        ),
        (
            json!({"id": "outer", "pattern": {"type": "hierarchical", "supervisor": "lead",
                   "teams": {"t": {"inline": child}}, "max_turns": 2}}),
            "$.tasks[0].pattern.teams.t.inline.agents.sh.type",
        ),
    ] {
        let doc = json!({"agents": {"lead": {"type": "noop"}}, "tasks": [task]}).to_string();
        let r = app.post("/api/v1/workflows", &doc).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.text);
        assert_eq!(r.json()["errors"][0]["path"], path);
    }
    assert!(!canary.exists());
}

#[tokio::test]
async fn sub_workflows_come_from_the_catalog_and_never_from_the_servers_files() {
    let app = app_with(|_| {}).await;
    let team = r#"{"name": "team", "agents": {"s": {"type": "simulate", "outputs": {"work": {"done": 1}}}},
                   "tasks": [{"id": "work", "agent": "s"}]}"#;
    app.create(team).await;
    let parent = r#"{"name": "parent", "tasks": [{"id": "call", "workflow": {"name": "team"}}]}"#;
    let id = app.create(parent).await;
    let r = execute(&app, &id).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.text);
    let exec = r.json()["execution_id"].as_str().unwrap().to_string();
    let s = app.finish(&exec).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["tasks"][0]["output"], json!({"work": {"done": 1}}));
    // The child is listed under its parent.
    let children = app
        .get(&format!("/api/v1/executions?parent={exec}"))
        .await
        .json();
    assert_eq!(children["items"][0]["workflow"], "team");
    assert_eq!(children["items"][0]["parent_id"], exec.as_str());

    // An unknown name, and a file on the server's disk, are refused at creation.
    for (workflow, refusal) in [
        (
            r#"{"name": "nobody"}"#,
            "the catalog has no workflow `nobody`",
        ),
        (
            r#"{"file": "/etc/passwd"}"#,
            "would be read from the server's disk",
        ),
    ] {
        let doc = format!(r#"{{"tasks": [{{"id": "call", "workflow": {workflow}}}]}}"#);
        let r = app.post("/api/v1/workflows", &doc).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains(refusal), "{}", r.text);
        // The same as a hierarchical supervisor's team.
        let doc = format!(
            r#"{{"agents": {{"lead": {{"type": "noop"}}}}, "tasks": [{{"id": "call", "pattern": {{"type": "hierarchical", "supervisor": "lead", "teams": {{"t": {workflow}}}, "max_turns": 2}}}}]}}"#
        );
        let r = app.post("/api/v1/workflows", &doc).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert!(r.text.contains(refusal), "{}", r.text);
    }
}

/// An empty token would look like protection and be none; no token on an
/// address other hosts reach serves anyone: both refuse to start, unless
/// the operator says `insecure_no_auth`.
#[tokio::test]
async fn an_empty_token_or_an_open_address_without_one_refuses_to_start() {
    use baton_server::{Error, Server, ServerOptions};
    let dir = tempfile::tempdir().unwrap();
    let options = |bind: &str, token: Option<&str>, insecure: bool| ServerOptions {
        bind: bind.parse().unwrap(),
        data_dir: dir.path().join("data"),
        auth_token: token.map(str::to_owned),
        insecure_no_auth: insecure,
        ..ServerOptions::default()
    };
    for (bind, token) in [
        ("127.0.0.1:0", Some("")),
        ("127.0.0.1:0", Some("  ")),
        ("0.0.0.0:0", None),
    ] {
        match Server::build(options(bind, token, false)).await {
            Err(Error::Insecure(why)) => assert!(why.contains("token"), "{why}"),
            Err(e) => panic!("{bind} {token:?}: {e}"),
            Ok(_) => panic!("{bind} {token:?} started"),
        }
    }
    assert!(!dir.path().join("data").exists(), "nothing was created");
    for (bind, token, insecure) in [
        ("0.0.0.0:0", Some("t"), false),
        ("0.0.0.0:0", None, true),
        ("127.0.0.1:0", None, false),
    ] {
        let server = Server::build(options(bind, token, insecure)).await;
        assert!(server.is_ok(), "{bind} {token:?} {insecure}");
        drop(server);
    }
}

/// The engine's run events, dead letters and the rest of `baton.` are the
/// server's: a forged `completed` on `baton.runs` used to end a live run's
/// event stream. The signals topic stays open (wait_for, questions).
#[tokio::test]
async fn the_servers_own_topics_cannot_be_published_to() {
    let app = app_with(|_| {}).await;
    let forged = r#"{"events": [{"type": "baton.run", "key": "0000000000000001", "payload": {"status": "completed"}}]}"#;
    for topic in ["baton.runs", "orders.dlq", "baton.audit"] {
        let r = app
            .post(&format!("/api/v1/events?topic={topic}"), forged)
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{topic}: {}", r.text);
        assert_eq!(r.json()["code"], "forbidden");
        assert!(
            r.json()["detail"]
                .as_str()
                .unwrap()
                .contains("baton.signals")
        );
    }
    let body_topic = r#"{"topic": "baton.runs", "events": [{"type": "x"}]}"#;
    assert_eq!(
        app.post("/api/v1/events", body_topic).await.status,
        StatusCode::FORBIDDEN
    );
    for topic in ["baton.signals", "orders", "baton-runs"] {
        let r = app
            .post(
                &format!("/api/v1/events?topic={topic}"),
                r#"{"events": [{"type": "x"}]}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{topic}: {}", r.text);
    }
}

/// Lease ids cannot be guessed: 128 bits in 32 hex digits, nothing else
/// (the sequential `0000000000000001`, and `1` for it, let a client report
/// another worker's task).
#[tokio::test]
async fn lease_ids_are_unguessable() {
    let app = app_with(|_| {}).await;
    let wf = app
        .create(r#"{"agents": {"w": {"type": "worker"}}, "tasks": [{"id": "a", "agent": "w"}, {"id": "b", "agent": "w"}]}"#)
        .await;
    app.post(&format!("/api/v1/workflows/{wf}/execute"), "{}")
        .await;
    let r = app
        .post("/api/v1/agents/w/poll", r#"{"max": 2, "wait_ms": 5000}"#)
        .await;
    let ids: Vec<String> = r.json()["assignments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{}", r.text);
    for id in &ids {
        assert_eq!(id.len(), 32, "{id}");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    }
    // Neighbours of a real id, and short forms, are unknown.
    let mut near = ids[0].clone().into_bytes();
    near[31] = if near[31] == b'0' { b'1' } else { b'0' };
    for guess in [
        String::from_utf8(near).unwrap(),
        "1".into(),
        "0000000000000001".into(),
        format!("0{}", ids[0]),
    ] {
        let r = app
            .post(
                &format!("/api/v1/tasks/{guess}/complete"),
                r#"{"output": 1}"#,
            )
            .await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{guess}: {}", r.text);
    }
    let r = app
        .post(
            &format!("/api/v1/tasks/{}/complete", ids[0]),
            r#"{"output": 1}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

/// Agent headers and environments hold credentials: reading a workflow back
/// shows `***` for their values, in inline sub-workflows too.
#[tokio::test]
async fn a_workflows_agent_secrets_are_not_read_back() {
    let app = app_with(|o| {
        o.workflow_agents = Policy {
            http: vec!["agents.example.com".into()],
            command: true,
        }
    })
    .await;
    let doc = json!({
        "agents": {
            "a2a": {"type": "http", "url": "https://agents.example.com/a2a",
                    "headers": {"Authorization": "Bearer planted-secret-1"}},
            "sh": {"type": "command", "command": ["true"], "env": {"TOKEN": "planted-secret-2"}},
        },
        "tasks": [
            {"id": "a", "agent": "a2a"},
            {"id": "b", "agent": "sh", "depends_on": ["a"]},
            {"id": "c", "depends_on": ["b"], "workflow": {"inline": {
                "agents": {"in": {"type": "http", "url": "https://agents.example.com/x",
                                  "headers": {"X-Key": "planted-secret-3"}}},
                "tasks": [{"id": "x", "agent": "in"}]}}},
        ],
    });
    let id = app.create(&doc.to_string()).await;
    let r = app.get(&format!("/api/v1/workflows/{id}")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(!r.text.contains("planted-secret"), "{}", r.text);
    let document = &r.json()["document"];
    assert_eq!(document["agents"]["a2a"]["headers"]["Authorization"], "***");
    assert_eq!(document["agents"]["sh"]["env"]["TOKEN"], "***");
    assert_eq!(
        document["agents"]["a2a"]["url"],
        "https://agents.example.com/a2a"
    );
    for path in ["/api/v1/workflows", &format!("/api/v1/workflows/{id}/plan")] {
        assert!(
            !app.get(path).await.text.contains("planted-secret"),
            "{path}"
        );
    }
}

/// A route's path with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{id}", "0000000000000001")
        .replace("{task}", "t")
        .replace("{topic}", "orders")
        .replace("{group}", "g")
        .replace("{name}", "transcriber")
}

/// Every route of the table (the router's own, checked elsewhere) needs the
/// scope it names: a token with every other scope is 403 `insufficient-scope`
/// naming it, a token with only it gets past auth (to a 404 or 422 of the
/// made-up ids), none at all is 401. A new route cannot be forgotten: its
/// table entry must name a scope, and this test then tries it.
#[tokio::test]
async fn every_route_needs_its_scope_and_no_other() {
    use baton_server::tokens::Rate;
    use baton_server::tokens::{Scope, create};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let mut only = std::collections::HashMap::new();
    let mut all_but = std::collections::HashMap::new();
    for scope in Scope::ALL {
        only.insert(
            scope,
            create(&file, "only", &[scope], None, Rate::default(), None)
                .unwrap()
                .1,
        );
        let others: Vec<Scope> = Scope::ALL
            .into_iter()
            .filter(|s| *s != scope && *s != Scope::Admin)
            .collect();
        all_but.insert(
            scope,
            create(&file, "all-but", &others, None, Rate::default(), None)
                .unwrap()
                .1,
        );
    }
    let app = app_with(|o| {
        o.tokens_file = Some(file.clone());
        o.metrics_requires_auth = true;
        o.long_poll_max = std::time::Duration::from_millis(10);
    })
    .await;
    let send = |method: &str, path: &str, token: Option<&str>| {
        let body = if method == "post" { "{}" } else { "" };
        let req = crate::as_caller(&method.to_ascii_uppercase(), path, token);
        app.send(req.body(axum::body::Body::from(body)).unwrap())
    };
    let mut tried = 0;
    let routes = baton_server::openapi::ROUTES
        .iter()
        .filter_map(|r| r.scope.map(|s| (r.method, r.path, s)))
        .chain([("get", "/metrics", Scope::Metrics)]);
    for (method, path, scope) in routes {
        let uri = concrete(path);
        let refused = send(method, &uri, Some(&all_but[&scope])).await;
        assert_eq!(refused.status, 403, "{method} {path}: {}", refused.text);
        assert_eq!(refused.json()["code"], "insufficient-scope");
        assert!(refused.text.contains(scope.name()), "{}", refused.text);
        let allowed = send(method, &uri, Some(&only[&scope])).await;
        assert!(
            ![401, 403].contains(&allowed.status.as_u16()),
            "{method} {path} with `{scope}`: {} {}",
            allowed.status,
            allowed.text
        );
        let anonymous = send(method, &uri, None).await;
        assert_eq!(anonymous.status, 401, "{method} {path}");
        tried += 1;
    }
    assert!(tried >= 25, "{tried} routes");
    // The open routes stay open.
    for path in ["/healthz", "/readyz", "/openapi.json"] {
        assert_eq!(send("get", path, None).await.status, 200, "{path}");
    }
}

/// A token created while the server runs works within a second, and stops
/// working within a second of its revocation; `auth_token` is still the
/// admin's.
#[tokio::test]
async fn tokens_are_taken_and_revoked_without_a_restart() {
    use baton_server::tokens::Rate;
    use baton_server::tokens::{Scope, create, revoke};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let app = app_with(|o| {
        o.tokens_file = Some(file.clone());
        o.auth_token = Some("the-admin-token".into());
    })
    .await;
    // The watcher runs with the server's accept loop; a router alone reloads here.
    let get = |token: String| {
        let req = crate::as_caller("GET", "/api/v1/executions", Some(&token));
        app.send(req.body(axum::body::Body::empty()).unwrap())
    };
    assert_eq!(get("the-admin-token".into()).await.status, 200);
    let (info, token) = create(
        &file,
        "reader",
        &[Scope::RunsRead],
        None,
        Rate::default(),
        None,
    )
    .unwrap();
    assert_eq!(get(token.clone()).await.status, 401, "not read yet");
    app.state.tokens().reload().unwrap();
    assert_eq!(get(token.clone()).await.status, 200);
    revoke(&file, &info.id).unwrap();
    app.state.tokens().reload().unwrap();
    assert_eq!(get(token).await.status, 401);
    assert_eq!(get("the-admin-token".into()).await.status, 200);
}

/// Who did what, when and with what outcome: a workflow created with a
/// token, a call that token may not make, a call without a token. Admins
/// read it at `GET /api/v1/audit`; no one else, by any route; reads and the
/// data plane are not recorded at the default level.
#[tokio::test]
async fn mutating_and_refused_calls_are_in_the_audit_trail_for_admins_only() {
    use baton_server::tokens::Rate;
    use baton_server::tokens::{Scope, create};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let (writer_info, writer) = create(
        &file,
        "writer",
        &[Scope::WorkflowsWrite],
        None,
        Rate::default(),
        None,
    )
    .unwrap();
    let (_, consumer) = create(
        &file,
        "consumer",
        &[Scope::EventsConsume],
        None,
        Rate::default(),
        None,
    )
    .unwrap();
    let (_, ops) = create(&file, "ops", &[Scope::Admin], None, Rate::default(), None).unwrap();
    let app = app_with(|o| o.tokens_file = Some(file.clone())).await;
    let call = |method: &str, path: &str, token: Option<&str>, body: &str| {
        let req = crate::as_caller(method, path, token)
            .header("x-request-id", format!("audit-{method}-{}", path.len()));
        app.send(req.body(axum::body::Body::from(body.to_string())).unwrap())
    };
    let flow = r#"{"name": "audited", "tasks": [{"id": "a"}]}"#;
    assert_eq!(
        call("POST", "/api/v1/workflows", Some(&writer), flow)
            .await
            .status,
        201
    );
    assert_eq!(
        call("GET", "/api/v1/workflows", Some(&writer), "")
            .await
            .status,
        403
    );
    assert_eq!(
        call("POST", "/api/v1/workflows", None, flow).await.status,
        401
    );
    assert_eq!(
        call("GET", "/api/v1/workflows", Some(&ops), "")
            .await
            .status,
        200
    );
    // Only admins read it, whatever the route.
    for path in [
        "/api/v1/audit",
        "/api/v1/topics/baton.audit/events",
        "/api/v1/topics/baton.audit/groups/g/poll",
    ] {
        let refused = call("GET", path, Some(&consumer), "").await;
        assert_eq!(refused.status, 403, "{path}: {}", refused.text);
    }
    let mut records = Vec::new();
    for _ in 0..100 {
        let page = call("GET", "/api/v1/audit", Some(&ops), "").await;
        assert_eq!(page.status, 200, "{}", page.text);
        records = page.json()["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["payload"].clone())
            .collect();
        if records.len() >= 6 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let seen: Vec<(String, String, u64)> = records
        .iter()
        .map(|r| {
            (
                r["caller"].as_str().unwrap().to_string(),
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap(),
                    r["route"].as_str().unwrap()
                ),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect = |caller: &str, what: &str, status: u64| {
        assert!(
            seen.contains(&(caller.to_string(), what.to_string(), status)),
            "({caller}, {what}, {status}) not in {seen:#?}"
        );
    };
    expect(&writer_info.id, "POST /api/v1/workflows", 201);
    expect(&writer_info.id, "GET /api/v1/workflows", 403);
    expect("unauthenticated", "POST /api/v1/workflows", 401);
    assert!(
        !seen
            .iter()
            .any(|(_, what, status)| what == "GET /api/v1/workflows" && *status == 200),
        "an allowed read is not audited: {seen:#?}"
    );
    let created = records.iter().find(|r| r["status"] == 201).unwrap();
    assert_eq!(created["request_id"], "audit-POST-17");
    assert_eq!(created["path"], "/api/v1/workflows");
    assert!(created["at_ms"].as_u64().unwrap() > 1_700_000_000_000);
    // Nothing of a token's secret is in the trail.
    let text = serde_json::to_string(&records).unwrap();
    assert!(!text.contains(&writer[15..]) && !text.contains(&ops[15..]));
}

/// A token's own limits: the fourth request in a second is 429 with
/// `Retry-After`, a publish over its events per second is 429, one that
/// could never pass is 422; the admin token is never limited.
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after_and_never_limit_the_admin() {
    use baton_server::tokens::Rate;
    use baton_server::tokens::{Scope, create};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens.json");
    let slow = Rate {
        requests_per_sec: Some(3.0),
        events_per_sec: Some(5.0),
    };
    let (_, token) = create(&file, "slow", &[Scope::Admin], None, slow, None).unwrap();
    let app = app_with(|o| {
        o.tokens_file = Some(file.clone());
        o.auth_token = Some("the-admin-token".into());
    })
    .await;
    let call = |token: &str, method: &str, path: &str, body: &str| {
        let req = crate::as_caller(method, path, Some(token));
        app.send(req.body(axum::body::Body::from(body.to_string())).unwrap())
    };
    for _ in 0..3 {
        assert_eq!(
            call(&token, "GET", "/api/v1/executions", "").await.status,
            200
        );
    }
    let over = call(&token, "GET", "/api/v1/executions", "").await;
    assert_eq!(over.status, 429, "{}", over.text);
    assert_eq!(over.json()["code"], "rate-limited");
    assert!(over.text.contains("3 requests/s"), "{}", over.text);
    for _ in 0..50 {
        assert_eq!(
            call("the-admin-token", "GET", "/api/v1/executions", "")
                .await
                .status,
            200
        );
    }
    // Events: a fresh second of requests, then 5 events pass, a 6th waits.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let events = |n: usize| {
        let list: Vec<String> = (0..n)
            .map(|i| format!(r#"{{"type": "t", "key": "{i}"}}"#))
            .collect();
        format!(r#"{{"topic": "orders", "events": [{}]}}"#, list.join(","))
    };
    let never = call(&token, "POST", "/api/v1/events", &events(6)).await;
    assert_eq!(never.status, 422, "{}", never.text);
    assert!(
        never.text.contains("batches of at most 5"),
        "{}",
        never.text
    );
    assert_eq!(
        call(&token, "POST", "/api/v1/events", &events(5))
            .await
            .status,
        200
    );
    let wait = call(&token, "POST", "/api/v1/events", &events(1)).await;
    assert_eq!(wait.status, 429, "{}", wait.text);
    assert!(wait.text.contains("events/s"), "{}", wait.text);
}
