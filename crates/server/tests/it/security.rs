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
