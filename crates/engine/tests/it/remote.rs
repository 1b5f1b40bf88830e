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
    request_line: String,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A stand-in on 127.0.0.1 answering each request with the
/// next of `answers` (status, body; a 429 says `Retry-After: 1`), then 500s.
/// Returns its base URL.
async fn stand_in(answers: Vec<(u16, Value)>) -> (String, Arc<Mutex<Vec<Seen>>>) {
    stand_in_with(|_| answers).await
}

/// [`stand_in`] with answers that may name its base URL.
async fn stand_in_with(
    answers: impl FnOnce(&str) -> Vec<(u16, Value)>,
) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let answers = answers(&base);
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
            let request_line = head.lines().next().unwrap_or("").to_string();
            log.lock().unwrap().push(Seen {
                request_line,
                headers,
                body,
            });
            let (status, answer) = answers.next().unwrap_or((500, json!({"error": "no more"})));
            // A streamed answer: each event written (and flushed) on its own.
            if let Some(events) = answer.get(STREAM).and_then(Value::as_array) {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n";
                let _ = stream.write_all(head.as_bytes()).await;
                for event in events {
                    let data = event
                        .as_str()
                        .map_or_else(|| event.to_string(), String::from);
                    let _ = stream
                        .write_all(format!("data: {data}\r\n\r\n").as_bytes())
                        .await;
                    let _ = stream.flush().await;
                }
                continue;
            }
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

/// The key of an answer the stand-in streams as server-sent events, one
/// `data:` per element (strings as they are, other values as JSON).
const STREAM: &str = "stand-in: stream these events";

fn streamed(events: Vec<Value>) -> Value {
    json!({ STREAM: events })
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

#[tokio::test]
async fn a_streaming_llm_reports_its_text_as_it_comes_and_its_tool_call_decides() {
    let chunk = |delta: Value| json!({"choices": [{"index": 0, "delta": delta}]});
    let (base, seen) = stand_in(vec![(
        200,
        streamed(vec![
            chunk(json!({"role": "assistant", "content": "Thinking"})),
            chunk(json!({"content": " it over"})),
            // The tool call's arguments arrive in pieces.
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "c1", "type": "function",
                "function": {"name": "handoff", "arguments": "{\"to\": \"wri"}}]}),
            ),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "ter\"}"}}]})),
            json!({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}),
            json!("[DONE]"),
        ]),
    )])
    .await;
    let flow = spec(&format!(
        r#"
agents:
  triage: {{ type: llm, base_url: {base}, model: tiny, stream: true }}
  writer: {{ type: simulate, outputs: {{ answer: "done" }} }}
tasks:
  - id: answer
    pattern: {{ type: handoff, agents: [triage, writer], start: triage, max_handoffs: 2 }}
"#
    ));
    let (engine, log) = start();
    let run = engine.submit(flow, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let tokens = summary.tokens.expect("tokens counted");
    assert_eq!((tokens.prompt, tokens.completion), (7, 3));
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[0].output, Some(json!("done")));
    engine.shutdown().await.unwrap();
    let request = seen.lock().unwrap()[0].clone();
    assert_eq!(request.body["stream"], json!(true));
    assert_eq!(
        request.body["stream_options"],
        json!({"include_usage": true})
    );
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    // The first text goes out at once; the rest within the call's window.
    let texts: Vec<Value> = crate::dynamic::run_events(&log, &run.to_string())
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "baton.progress")
        .map(|(_, v)| v["progress"]["text"].clone())
        .collect();
    assert_eq!(texts.first(), Some(&json!("Thinking")), "{texts:?}");
}

#[tokio::test]
async fn a_streaming_a2a_agent_reports_status_and_artifacts_and_its_artifacts_are_the_output() {
    let event = |result: Value| json!({"jsonrpc": "2.0", "id": "x", "result": result});
    let (base, seen) = stand_in(vec![(
        200,
        streamed(vec![
            event(json!({"kind": "task", "id": "t-1", "contextId": "c-1", "status": {"state": "submitted"}})),
            event(json!({"kind": "status-update", "taskId": "t-1", "contextId": "c-1",
                "status": {"state": "working", "message": {"role": "agent", "parts": [{"kind": "text", "text": "transcribing"}]}}, "final": false})),
            event(json!({"kind": "artifact-update", "taskId": "t-1",
                "artifact": {"artifactId": "a", "parts": [{"kind": "text", "text": "hello"}]}})),
            event(json!({"kind": "artifact-update", "taskId": "t-1", "append": true,
                "artifact": {"artifactId": "a", "parts": [{"kind": "text", "text": "world"}]}})),
            event(json!({"kind": "status-update", "taskId": "t-1", "contextId": "c-1",
                "status": {"state": "completed"}, "final": true})),
        ]),
    )])
    .await;
    let flow = spec(&format!(
        "agents:\n  a2a: {{ type: http, url: \"{base}/a2a\", stream: true }}\ntasks:\n  - {{ id: listen, agent: a2a }}\n"
    ));
    let (engine, log) = start();
    let run = engine.submit(flow, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[0].output, Some(json!(["hello", "world"])));
    engine.shutdown().await.unwrap();
    assert_eq!(
        seen.lock().unwrap()[0].body["method"],
        json!("message/stream")
    );
    let first: Vec<Value> = crate::dynamic::run_events(&log, &run.to_string())
        .await
        .into_iter()
        .filter(|(kind, _)| kind == "baton.progress")
        .map(|(_, v)| v["progress"].clone())
        .take(1)
        .collect();
    assert_eq!(
        first,
        [json!({"state": "working", "message": "transcribing"})]
    );
}

/// An A2A task that needs input waits for a person: the question is a
/// `baton.input_required` event naming the answer's key, the answer a
/// `baton.input` event, and the agent's task goes on with it.
#[tokio::test]
async fn an_a2a_task_that_requires_input_gets_it_from_an_event() {
    use baton_events::{Event, EventLog};
    let task = |state: &str, extra: Value| {
        let mut t =
            json!({"kind": "task", "id": "t-9", "contextId": "c-9", "status": {"state": state}});
        if let (Some(t), Value::Object(extra)) = (t.as_object_mut(), extra) {
            t.extend(extra);
        }
        json!({"jsonrpc": "2.0", "id": "x", "result": t})
    };
    let question = json!({"state": "input-required", "message": {"role": "agent",
        "parts": [{"kind": "text", "text": "Approve the refund of 40 EUR?"}]}});
    let (base, seen) = stand_in(vec![
        (200, task("input-required", json!({"status": question}))),
        (
            200,
            task(
                "completed",
                json!({"artifacts": [{"parts": [{"kind": "data", "data": {"refunded": true}}]}]}),
            ),
        ),
    ])
    .await;
    let flow = spec(&format!(
        "agents:\n  desk: {{ type: http, url: \"{base}/a2a\" }}\ntasks:\n  - {{ id: refund, agent: desk, timeout: 30s }}\n"
    ));
    let (engine, log) = start();
    let run = engine.submit(flow, json!({})).await.unwrap();
    // Wait for the question.
    let asked = loop {
        let events = crate::dynamic::run_events(&log, &run.to_string()).await;
        if let Some((_, v)) = events
            .into_iter()
            .find(|(k, _)| k == "baton.input_required")
        {
            break v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(asked["question"], json!("Approve the refund of 40 EUR?"));
    let key = format!("{run}/refund");
    assert_eq!(
        asked["answer"],
        json!({"topic": "baton.signals", "type": "baton.input", "key": key})
    );
    // An answer for another call is passed over.
    let other = Event::new(
        "baton.input",
        format!("{run}/other"),
        r#"{"approve": false}"#,
    );
    log.publish("baton.signals", vec![other]).await.unwrap();
    let answer = Event::new("baton.input", key, r#"{"approve": true, "by": "ana"}"#);
    log.publish("baton.signals", vec![answer]).await.unwrap();
    let summary = tokio::time::timeout(std::time::Duration::from_secs(10), engine.wait(run))
        .await
        .expect("the answer lets the task go on")
        .unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[0].output, Some(json!({"refunded": true})));
    engine.shutdown().await.unwrap();
    // The answer continued the same A2A task, in its context.
    let second = &seen.lock().unwrap()[1].body["params"]["message"];
    assert_eq!(second["taskId"], json!("t-9"));
    assert_eq!(second["contextId"], json!("c-9"));
    assert_eq!(
        second["parts"],
        json!([{"kind": "data", "data": {"approve": true, "by": "ana"}}])
    );
}

/// An agent given its card's URL reads the card at its first call, calls
/// the interface it names, and streams because the card says it can;
/// `discover` reads it ahead of time and makes its skills capabilities.
#[tokio::test]
async fn an_agent_card_names_the_interface_its_streaming_and_its_skills() {
    let card = |base: &str| {
        json!({"name": "Transcriber", "url": format!("{base}/a2a"),
               "capabilities": {"streaming": true},
               "skills": [{"id": "transcribe"}, {"id": "translate"}]})
    };
    let message = json!({"jsonrpc": "2.0", "id": "x", "result": {
        "kind": "message", "role": "agent", "messageId": "m", "parts": [{"kind": "text", "text": "hi"}]}});
    let (base, seen) = stand_in_with(|base| {
        vec![
            (200, card(base)),
            (200, streamed(vec![message])),
            (200, card(base)),
        ]
    })
    .await;
    let flow = spec(&format!(
        "agents:\n  a2a: {{ type: http, url: \"{base}/.well-known/agent-card.json\" }}\ntasks:\n  - {{ id: listen, agent: a2a }}\n"
    ));
    let (engine, _log) = start();
    let run = engine.submit(flow, json!({})).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[0].output, Some(json!("hi")));
    engine.shutdown().await.unwrap();
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen[0].request_line,
            "GET /v1/.well-known/agent-card.json HTTP/1.1"
        );
        assert_eq!(seen[1].request_line, "POST /v1/a2a HTTP/1.1");
        assert_eq!(seen[1].body["method"], json!("message/stream"));
    }

    let mut agents = vec![baton_model::Agent {
        name: "a2a".into(),
        kind: "http".into(),
        url: Some(format!("{base}/.well-known/agent-card.json")),
        capabilities: vec!["translate".into()],
        ..Default::default()
    }];
    baton_engine::agent::discover(&mut agents, &baton_engine::agent::Egress::Open)
        .await
        .unwrap();
    assert_eq!(agents[0].url, Some(format!("{base}/a2a")));
    assert!(agents[0].stream);
    assert_eq!(agents[0].capabilities, ["translate", "transcribe"]);
}
