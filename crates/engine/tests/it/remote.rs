//! Agents over HTTP against a stand-in server (a test double answering
//! scripted JSON and recording the requests): `llm` agents on an
//! OpenAI-compatible API (the pattern's decisions offered as tools, the
//! model's tool calls the decisions, the key from the environment, tokens
//! counted) and `http` agents on an A2A agent whose task takes a while.

use std::sync::{Arc, Mutex};

use baton_engine::store::RunStatus;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::{spec, start};

/// One request the stand-in saw: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
struct Seen {
    headers: Vec<(String, String)>,
    body: Value,
}

/// A stand-in on 127.0.0.1 answering each request with the
/// next of `answers` (status, body; a 429 says `Retry-After: 1`), then 500s.
/// Returns its base URL.
async fn stand_in(answers: Vec<(u16, Value)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    tokio::spawn(async move {
        let mut answers = answers.into_iter();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, length) = loop {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    break (end + 4, length);
                }
            };
            if head_end == 0 {
                continue;
            }
            while buf.len() < head_end + length {
                let n = stream.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let headers = head
                .lines()
                .skip(1)
                .filter_map(|l| l.split_once(':'))
                .map(|(n, v)| (n.trim().to_lowercase(), v.trim().to_string()))
                .collect();
            let body = serde_json::from_slice(&buf[head_end..]).unwrap_or(Value::Null);
            log.lock().unwrap().push(Seen { headers, body });
            let (status, answer) = answers.next().unwrap_or((500, json!({"error": "no more"})));
            let text = answer.to_string();
            let wait = if status == 429 {
                "retry-after: 1\r\n"
            } else {
                ""
            };
            let response = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n{wait}content-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    (base, seen)
}

/// A chat completion whose message calls `tool` with `arguments`.
fn calls(tool: &str, arguments: Value) -> Value {
    json!({
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": null,
            "tool_calls": [{"id": "c1", "type": "function",
                            "function": {"name": tool, "arguments": arguments.to_string()}}]}}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
    })
}

#[tokio::test]
async fn an_llm_supervisor_delegates_and_finishes_through_tool_calls() {
    let (base, seen) = stand_in(vec![
        (
            200,
            calls(
                "delegate",
                json!({"calls": [{"agent": "researcher", "input": {"topic": "rust"}}]}),
            ),
        ),
        (
            200,
            calls("finish", json!({"result": {"summary": "rust it is"}})),
        ),
    ])
    .await;
    // `api_key_env` names a variable cargo sets for every test process.
    let flow = spec(&format!(
        r#"
agents:
  planner:
    type: llm
    base_url: {base}
    model: tiny
    system: You coordinate researchers.
    temperature: 0.2
    max_tokens: 64
    api_key_env: CARGO_PKG_NAME
  researcher: {{ type: command, command: cat }}
tasks:
  - id: study
    input: {{ question: "which language?" }}
    pattern: {{ type: supervisor, supervisor: planner, workers: [researcher], max_turns: 3 }}
"#
    ));
    let (engine, log) = start();
    let run = engine.submit(flow, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(
        view.task_states[0].output,
        Some(json!({"summary": "rust it is"}))
    );
    // Both answers used 10 + 5 tokens: counted for the run, one event each.
    let tokens = summary.tokens.expect("tokens counted");
    assert_eq!((tokens.prompt, tokens.completion), (20, 10));
    engine.shutdown().await.unwrap();
    let usage: Vec<_> = crate::dynamic::run_events(&log, &run.to_string())
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "baton.usage")
        .map(|(_, v)| (v["task"].clone(), v["prompt_tokens"].clone()))
        .collect();
    assert_eq!(
        usage,
        [(json!("study"), json!(10)), (json!("study"), json!(10))]
    );

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "one completion per supervisor turn");
    let first = &seen[0];
    let auth = first.headers.iter().find(|(n, _)| n == "authorization");
    assert_eq!(auth.map(|(_, v)| v.as_str()), Some("Bearer baton-engine"));
    assert_eq!(first.body["model"], "tiny");
    assert_eq!(first.body["temperature"], 0.2);
    assert_eq!(first.body["max_tokens"], 64);
    assert_eq!(
        first.body["messages"][0]["content"],
        "You coordinate researchers."
    );
    let tools: Vec<&str> = first.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(tools, ["delegate", "finish"]);
    let offered = &first.body["tools"][0]["function"]["parameters"]["properties"]["calls"]["items"]
        ["properties"]["agent"]["enum"];
    assert_eq!(offered, &json!(["researcher"]));
    // The user message is the call's input: the task's input and the
    // conversation so far (the researcher's answer, on the second turn).
    let user = |s: &Seen| -> Value {
        serde_json::from_str(s.body["messages"][1]["content"].as_str().unwrap()).unwrap()
    };
    assert_eq!(user(first)["input"], json!({"question": "which language?"}));
    assert_eq!(user(first)["conversation"], json!([]));
    let second = user(&seen[1]);
    let researcher = &second["conversation"][1];
    assert_eq!(researcher["agent"], "researcher");
    assert_eq!(researcher["output"]["input"], json!({"topic": "rust"}));
}

#[tokio::test]
async fn an_llm_agents_answer_text_is_its_output_and_errors_are_judged_like_http() {
    let text = |content: &str| json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]});
    let (base, _seen) = stand_in(vec![
        (200, text("{\"verdict\": \"approve\"}")),
        (429, json!({"error": {"message": "slow down"}})),
        (200, text("not json, just words")),
        (400, json!({"error": {"message": "unknown model"}})),
    ])
    .await;
    let flow = |retries: u32| {
        spec(&format!(
            r#"
agents:
  judge: {{ type: llm, base_url: {base}, model: tiny }}
tasks:
  - {{ id: judge, agent: judge, retry: {{ max_attempts: {retries}, backoff: {{ initial: 1ms }} }} }}
"#
        ))
    };
    let (engine, _log) = start();
    // Text that is JSON is the output as JSON.
    let run = engine.submit(flow(1), json!({})).await.unwrap();
    engine.wait(run).await.unwrap();
    let view = engine.status(run).await.unwrap();
    assert_eq!(
        view.task_states[0].output,
        Some(json!({"verdict": "approve"}))
    );
    // A 429 is retried, after its `Retry-After` (1 s) rather than the
    // task's 1 ms backoff; the words that follow are a string output.
    let run = engine.submit(flow(2), json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    assert_eq!(summary.retries, 1);
    assert!(summary.makespan_ms >= 1000.0, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(
        view.task_states[0].output,
        Some(json!("not json, just words"))
    );
    // A 400 is permanent: no retry, the server's words in the reason.
    let run = engine.submit(flow(3), json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!(summary.retries, 0);
    assert!(summary.reason.clone().unwrap().contains("unknown model"));
    engine.shutdown().await.unwrap();
}

/// An A2A agent that answers `message/send` with a task still `working` is
/// asked after with `tasks/get` until the task completes; its artifacts are
/// the output.
#[tokio::test]
async fn an_http_agents_unfinished_a2a_task_is_polled_until_it_ends() {
    let task = |state: &str, artifacts: Value| {
        json!({"jsonrpc": "2.0", "id": "x", "result": {
            "kind": "task", "id": "t-7", "status": {"state": state}, "artifacts": artifacts}})
    };
    let done = json!([{"parts": [{"kind": "data", "data": {"transcript": "hello"}}]}]);
    let (base, seen) = stand_in(vec![
        (200, task("submitted", json!([]))),
        (200, task("working", json!([]))),
        (200, task("completed", done)),
    ])
    .await;
    let flow = spec(&format!(
        "agents:\n  a2a: {{ type: http, url: \"{base}/a2a\" }}\ntasks:\n  - {{ id: listen, agent: a2a }}\n"
    ));
    let (engine, _log) = start();
    let run = engine.submit(flow, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(
        view.task_states[0].output,
        Some(json!({"transcript": "hello"}))
    );
    engine.shutdown().await.unwrap();
    let methods: Vec<Value> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| json!([s.body["method"], s.body["params"]["id"]]))
        .collect();
    assert_eq!(
        methods,
        [
            json!(["message/send", null]),
            json!(["tasks/get", "t-7"]),
            json!(["tasks/get", "t-7"])
        ]
    );
}
