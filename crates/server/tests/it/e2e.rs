//! End to end on port 0: a real listener, a hyper-util client.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use baton_server::{Server, ServerOptions};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

struct Running {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), baton_server::Error>>,
}

async fn start(dir: &Path) -> Running {
    start_with(dir, |_| {}).await
}

async fn start_with(dir: &Path, f: impl FnOnce(&mut ServerOptions)) -> Running {
    let mut options = ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.to_path_buf(),
        ..ServerOptions::default()
    };
    f(&mut options);
    let server = Server::build(options).await.unwrap();
    let addr = server.local_addr();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));
    Running { addr, cancel, task }
}

impl Running {
    async fn stop(self) {
        self.cancel.cancel();
        self.task.await.unwrap().unwrap();
    }
}

struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
}

impl Http {
    fn new(addr: SocketAddr) -> Http {
        Http {
            client: Client::builder(TokioExecutor::new()).build_http(),
            base: format!("http://{addr}"),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(
                body.map(|b| b.to_string()).unwrap_or_default(),
            )))
            .unwrap();
        let res = self.client.request(req).await.unwrap();
        let status = res.status().as_u16();
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Polls for the agent's calls and completes each with `{"done": task}`
    /// until the execution ends; returns its final status.
    async fn work_until_done(&self, agent: &str, exec: &str) -> Value {
        for _ in 0..200 {
            let (code, s) = self
                .call("GET", &format!("/api/v1/executions/{exec}"), None)
                .await;
            assert_eq!(code, 200, "{s}");
            if matches!(
                s["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return s;
            }
            let (code, got) = self
                .call(
                    "POST",
                    &format!("/api/v1/agents/{agent}/poll"),
                    Some(json!({"max": 10, "wait_ms": 100, "lease_ms": 5000})),
                )
                .await;
            assert_eq!(code, 200, "{got}");
            for a in got["assignments"].as_array().unwrap() {
                let id = a["id"].as_str().unwrap();
                let (code, r) = self
                    .call(
                        "POST",
                        &format!("/api/v1/tasks/{id}/heartbeat"),
                        Some(json!({"lease_ms": 5000})),
                    )
                    .await;
                // A call left in the process-wide pool by a stopped engine may
                // already be settled; anything else must be accepted.
                if code == 404 {
                    continue;
                }
                assert_eq!(code, 200, "{r}");
                let (code, r) = self
                    .call(
                        "POST",
                        &format!("/api/v1/tasks/{id}/progress"),
                        Some(json!({"progress": {"pct": 50}})),
                    )
                    .await;
                assert_eq!((code, r["status"].as_str()), (200, Some("reported")), "{r}");
                let (code, r) = self
                    .call(
                        "POST",
                        &format!("/api/v1/tasks/{id}/complete"),
                        Some(json!({"output": {"done": a["task"]}})),
                    )
                    .await;
                assert_eq!(code, 200, "{r}");
            }
        }
        panic!("execution {exec} did not end");
    }
}

fn workflow(agent: &str) -> Value {
    json!({
        "name": format!("e2e-{agent}"),
        "agents": {agent: {"type": "worker"}},
        "tasks": [
            {"id": "fetch", "agent": agent},
            {"id": "parse", "agent": agent, "depends_on": ["fetch"]},
            {"id": "index", "agent": agent, "depends_on": ["fetch"]},
            {"id": "publish", "agent": agent, "depends_on": ["parse", "index"]}
        ]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflow_from_creation_to_completion_with_a_worker() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let http = Http::new(server.addr);
    let (code, created) = http
        .call("POST", "/api/v1/workflows", Some(workflow("e2e-worker")))
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (code, started) = http
        .call(
            "POST",
            &format!("/api/v1/workflows/{id}/execute"),
            Some(json!({"input_data": {"url": "x"}})),
        )
        .await;
    assert_eq!(code, 202, "{started}");
    let exec = started["execution_id"].as_str().unwrap();
    let s = http.work_until_done("e2e-worker", exec).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["tasks"][3]["output"], json!({"done": "publish"}));
    assert_eq!(s["agents"][0]["agent_id"], "e2e-worker");
    // Unknown leases are 404.
    let (code, p) = http
        .call("POST", "/api/v1/tasks/ffff/complete", Some(json!({})))
        .await;
    assert_eq!(code, 404, "{p}");
    assert_eq!(p["code"], "not-found");
    server.stop().await;
}

/// `POST /api/v1/tasks/report`: outputs, failures and heartbeats of many
/// leases in one request, a result each; a bad report applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_leases_are_reported_in_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let http = Http::new(server.addr);
    let flow = json!({"name": "batch", "agents": {"w": {"type": "worker", "concurrency": 8}},
        "tasks": [{"id": "a", "agent": "w"}, {"id": "b", "agent": "w"},
                  {"id": "c", "agent": "w", "retry": 2}, {"id": "d", "agent": "w"}]});
    let (_, created) = http.call("POST", "/api/v1/workflows", Some(flow)).await;
    let id = created["id"].as_str().unwrap();
    let (_, started) = http
        .call("POST", &format!("/api/v1/workflows/{id}/execute"), None)
        .await;
    let exec = started["execution_id"].as_str().unwrap();
    let mut leases = std::collections::BTreeMap::new();
    while leases.len() < 4 {
        let (_, got) = http
            .call(
                "POST",
                "/api/v1/agents/w/poll",
                Some(json!({"max": 4, "wait_ms": 2000})),
            )
            .await;
        for a in got["assignments"].as_array().unwrap() {
            leases.insert(a["task"].as_str().unwrap().to_string(), a["id"].clone());
        }
    }
    let bad = json!({"reports": [{"id": leases["a"], "complete": {"output": 1}},
                                 {"id": leases["b"]}]});
    let (code, p) = http.call("POST", "/api/v1/tasks/report", Some(bad)).await;
    assert_eq!(
        (code, p["errors"][0]["path"].as_str()),
        (422, Some("$.reports[1]")),
        "{p}"
    );

    let batch = json!({"reports": [
        {"id": leases["a"], "complete": {"output": {"n": 1}}},
        {"id": leases["b"], "heartbeat": {"lease_ms": 60000}},
        {"id": leases["c"], "fail": {"message": "no", "retryable": true}},
        {"id": leases["a"], "complete": {"output": {"n": 2}}},
        {"id": "0".repeat(32), "complete": {}}]});
    let (code, r) = http.call("POST", "/api/v1/tasks/report", Some(batch)).await;
    assert_eq!(code, 200, "{r}");
    let statuses: Vec<&str> = r["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["completed", "extended", "failed", "unknown", "unknown"]
    );
    let batch = json!({"reports": [{"id": leases["b"], "complete": {"output": 2}},
                                   {"id": leases["d"], "complete": {"output": 4}}]});
    let (code, r) = http.call("POST", "/api/v1/tasks/report", Some(batch)).await;
    assert_eq!(code, 200, "{r}");
    let s = http.work_until_done("w", exec).await;
    assert_eq!(s["status"], "completed", "{s}");
    let outputs: Vec<&Value> = s["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["output"])
        .collect();
    assert_eq!(outputs[0], &json!({"n": 1}), "the first report wins: {s}");
    assert_eq!(outputs[1], &json!(2), "{s}");
    assert_eq!(s["tasks"][2]["attempt"], 2, "c failed once: {s}");
    assert_eq!(outputs[3], &json!(4), "{s}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_resumes_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let http = Http::new(server.addr);
    let (_, created) = http
        .call("POST", "/api/v1/workflows", Some(workflow("e2e-restart")))
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let (_, started) = http
        .call(
            "POST",
            &format!("/api/v1/workflows/{id}/execute"),
            Some(json!({})),
        )
        .await;
    let exec = started["execution_id"].as_str().unwrap().to_string();
    // Complete the first task only, then stop mid-run.
    let (_, got) = http
        .call(
            "POST",
            "/api/v1/agents/e2e-restart/poll",
            Some(json!({"max": 1, "wait_ms": 5000})),
        )
        .await;
    let a = &got["assignments"][0];
    assert_eq!(a["task"], "fetch", "{got}");
    let lease = a["id"].as_str().unwrap();
    let (code, _) = http
        .call(
            "POST",
            &format!("/api/v1/tasks/{lease}/complete"),
            Some(json!({"output": 1})),
        )
        .await;
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.stop().await;

    let server = start(dir.path()).await;
    let http = Http::new(server.addr);
    // The workflow is still there, and so is the run.
    let (code, _) = http
        .call("GET", &format!("/api/v1/workflows/{id}"), None)
        .await;
    assert_eq!(code, 200);
    let s = http.work_until_done("e2e-restart", &exec).await;
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["workflow_id"], id.as_str());
    assert_eq!(s["tasks"][0]["output"], 1, "fetch is not run again: {s}");
    server.stop().await;
}

/// Connections are capped and idle ones closed: a client that opens
/// sockets and sends nothing (or half a request) can no longer keep them
/// open for ever, and past the cap new clients wait instead of exhausting
/// the server's file descriptors.
#[tokio::test]
async fn idle_connections_are_closed_and_connections_capped() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;
    let dir = tempfile::tempdir().unwrap();
    let options = ServerOptions {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_path_buf(),
        max_connections: 2,
        idle_timeout: Duration::from_millis(500),
        ..ServerOptions::default()
    };
    let server = Server::build(options).await.unwrap();
    let addr = server.local_addr();
    let cancel = CancellationToken::new();
    let task = tokio::spawn(server.run(cancel.clone()));

    // Two connections take the cap: one idle, one sending half a request.
    let idle = TcpStream::connect(addr).await.unwrap();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // A third waits: no answer while the two hold the cap...
    let mut third = TcpStream::connect(addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let early =
        tokio::time::timeout(Duration::from_millis(200), third.read_to_end(&mut answer)).await;
    assert!(
        early.is_err(),
        "answered past the cap: {:?}",
        String::from_utf8_lossy(&answer)
    );
    // ...and is answered once the idle ones are closed.
    let started = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut answer))
        .await
        .expect("answered after the idle connections closed")
        .unwrap();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() < Duration::from_secs(3));
    for mut closed in [idle, slow] {
        // Closed by the server: EOF (a 408 may come first) or a reset, in time.
        let mut buf = Vec::new();
        // The read's own result is EOF or a reset: either is a close.
        let _closed = tokio::time::timeout(Duration::from_secs(2), closed.read_to_end(&mut buf))
            .await
            .expect("the server closed it");
    }
    cancel.cancel();
    task.await.unwrap().unwrap();
}

/// A URI or headers over the server's limits are answered with problem+json
/// (414 `uri-too-long`, 431 `headers-too-large`), through a real socket, not
/// with the bare answers hyper would give.
#[tokio::test]
async fn oversized_heads_are_problems_too() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path()).await;
    let addr = running.addr;
    let ask = |head: String| async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    };
    let long_uri = format!(
        "GET /api/v1/workflows?x={} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n",
        "a".repeat(9000)
    );
    let answer = ask(long_uri).await;
    assert!(
        answer.starts_with("HTTP/1.1 414"),
        "{}",
        &answer[..80.min(answer.len())]
    );
    assert!(
        answer.contains("application/problem+json") && answer.contains("\"code\":\"uri-too-long\""),
        "{answer}"
    );
    let big_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "b".repeat(70 << 10)
    );
    let answer = ask(big_headers).await;
    assert!(
        answer.starts_with("HTTP/1.1 431"),
        "{}",
        &answer[..80.min(answer.len())]
    );
    assert!(
        answer.contains("\"code\":\"headers-too-large\""),
        "{answer}"
    );
    running.stop().await;
}

/// `GET /api/v1/agents`: a worker agent's queue, the worker holding its call
/// (by the name it polls with) and the lease, without the lease's id;
/// `GET /api/v1/stats`: samples with the run's transitions and overhead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_workers_leases_and_live_figures() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), |o| {
        o.sample_interval = Duration::from_millis(100);
    })
    .await;
    let http = Http::new(server.addr);
    let (code, created) = http
        .call("POST", "/api/v1/workflows", Some(workflow("e2e-live")))
        .await;
    assert_eq!(code, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    let (code, started) = http
        .call("POST", &format!("/api/v1/workflows/{id}/execute"), None)
        .await;
    assert_eq!(code, 202, "{started}");
    let exec = started["execution_id"].as_str().unwrap();
    let (code, got) = http
        .call(
            "POST",
            "/api/v1/agents/e2e-live/poll",
            Some(json!({"max": 5, "wait_ms": 5000, "lease_ms": 60000, "worker": "host-a:41"})),
        )
        .await;
    assert_eq!(code, 200, "{got}");
    let lease = got["assignments"][0]["id"].as_str().unwrap().to_owned();

    let (code, agents) = http.call("GET", "/api/v1/agents", None).await;
    assert_eq!(code, 200, "{agents}");
    assert!(
        !agents.to_string().contains(&lease),
        "lease ids stay secret: {agents}"
    );
    let agent = agents["agents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "e2e-live")
        .unwrap_or_else(|| panic!("{agents}"));
    assert_eq!(
        (
            &agent["kind"],
            &agent["leased"],
            &agent["in_flight"],
            &agent["operator"]
        ),
        (&json!("worker"), &json!(1), &json!(1), &json!(false)),
        "{agent}"
    );
    assert_eq!(agents["workers"][0]["name"], "host-a:41", "{agents}");
    assert_eq!(agents["workers"][0]["leases"], 1, "{agents}");
    assert_eq!(agents["workers"][0]["agents"], json!(["e2e-live"]));
    assert_eq!(agents["leases"][0]["task"], "fetch", "{agents}");
    assert_eq!(agents["leases"][0]["run"], exec, "{agents}");
    assert!(agents.get("instances").is_none(), "one instance: {agents}");
    let (code, bad) = http
        .call(
            "POST",
            "/api/v1/agents/e2e-live/poll",
            Some(json!({"wait_ms": 0, "worker": ""})),
        )
        .await;
    assert_eq!(code, 422, "{bad}");

    let (code, r) = http
        .call(
            "POST",
            &format!("/api/v1/tasks/{lease}/complete"),
            Some(json!({"output": 1})),
        )
        .await;
    assert_eq!(code, 200, "{r}");
    let s = http.work_until_done("e2e-live", exec).await;
    assert_eq!(s["status"], "completed", "{s}");
    // The samples of the next few intervals see the finished run.
    let mut stats = Value::Null;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        stats = http.call("GET", "/api/v1/stats", None).await.1;
        let samples = stats["samples"].as_array().unwrap();
        if samples.last().is_some_and(|s| s["runs_completed"] == 1) {
            break;
        }
    }
    assert_eq!(stats["interval_ms"], 100);
    let samples = stats["samples"].as_array().unwrap();
    let last = samples.last().unwrap();
    assert_eq!(last["runs_completed"], 1, "{stats}");
    assert!(last["transitions"].as_u64().unwrap() >= 16, "{last}");
    let dispatched: u64 = samples
        .iter()
        .map(|s| s["dispatch"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        dispatched, 4,
        "each task's dispatch in one interval: {stats}"
    );
    assert!(
        samples
            .windows(2)
            .all(|w| w[0]["t_ms"].as_u64() <= w[1]["t_ms"].as_u64())
    );
    server.stop().await;
}
