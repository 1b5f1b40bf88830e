//! The `http` agent: calls a remote agent with an A2A-style JSON-RPC 2.0
//! `message/send` request.
//!
//! The call's input travels as the single `data` part of a user message; the
//! answer's data and text parts become the task's output. Each agent has one
//! HTTP/1.1 client, so calls reuse kept-alive connections.
//!
//! | answer | outcome |
//! |---|---|
//! | 2xx, JSON-RPC `result` | the output: data and text parts of the message or of the task's artifacts; a task still `submitted` or `working` is asked after with `tasks/get` (after 0.2 s, doubling up to 5 s) until it ends |
//! | 2xx, JSON-RPC `error` | permanent failure with its code and message |
//! | 5xx, 408, 429, connection error | retryable failure (after the answer's `Retry-After`, in seconds, when it gives one) |
//! | other 4xx and 1xx/3xx | permanent failure |
//! | a body that is not JSON, or larger than 16 MiB | permanent failure |
//!
//! It reaches the agent through an [`Endpoint`]: https, the egress policy,
//! timeouts and limits are described there.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use serde_json::{Value, json};

use super::endpoint::{Egress, Endpoint, Streamed, excerpt, json_answer, status_failure};
use super::{Call, Failure, Outcome, Runner, Started};

/// An agent reached over HTTP with JSON-RPC `message/send` (or
/// `message/stream`).
#[derive(Debug, Clone)]
pub struct Http {
    inner: Arc<Endpoint>,
    /// Whether calls use `message/stream`.
    stream: bool,
    /// For an agent given its card's URL (`inner` gets the card): the agent
    /// the card describes, once read.
    card: Option<Arc<tokio::sync::OnceCell<Http>>>,
    /// The headers and the egress the described agent is built with.
    built_with: Arc<BuiltWith>,
}

/// What an agent was built with, for the agent its card describes.
struct BuiltWith {
    headers: Vec<(String, String)>,
    egress: Egress,
}

impl std::fmt::Debug for BuiltWith {
    /// Header values often carry credentials: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BuiltWith")
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("egress", &self.egress)
            .finish()
    }
}

impl Http {
    /// An agent posting to `url` with `headers` added to each request.
    ///
    /// Fails, with a message for people, on a URL that is not
    /// `http[s]://host[:port]/...`, a header that is not valid HTTP, an address
    /// that `egress` refuses, or an `https://` URL on a system without trusted
    /// roots.
    pub fn new(url: &str, headers: &[(String, String)], egress: &Egress) -> Result<Http, String> {
        Ok(Http {
            inner: Arc::new(Endpoint::new(url, headers, egress)?),
            stream: false,
            card: super::card::is_card_url(url).then(Default::default),
            built_with: Arc::new(BuiltWith {
                headers: headers.to_vec(),
                egress: egress.clone(),
            }),
        })
    }

    /// The agent calls go to: this one, or the one its card describes (the
    /// card read at the first call; a card that cannot be read fails the
    /// call, and the next call reads it again).
    async fn target(&self) -> Result<Http, Failure> {
        let Some(cell) = &self.card else {
            return Ok(self.clone());
        };
        cell.get_or_try_init(|| async {
            let card = super::card::fetch(&self.inner).await?;
            let BuiltWith { headers, egress } = &*self.built_with;
            let agent = Http::new(&card.url, headers, egress).map_err(Failure::permanent)?;
            Ok(agent.streaming(self.stream || card.streaming))
        })
        .await
        .cloned()
    }

    /// The same agent asking with `message/stream` (`true`) or
    /// `message/send`.
    pub fn streaming(self, stream: bool) -> Http {
        Http { stream, ..self }
    }
}

impl Runner for Http {
    /// Streamed answers are reported as they arrive, and a task that needs
    /// input asks for it through the reporter.
    fn reports_progress(&self) -> bool {
        true
    }

    fn start(&self, call: Call) -> Started {
        Started::Later(Box::pin(send(self.clone(), call)))
    }
}

/// The JSON-RPC request for a call: `method` (`message/send` or
/// `message/stream`) with `input` as the message's data part, in the A2A
/// task `resume` names (its id and context) when it continues one.
fn request_body(call: &Call, method: &str, input: &Value, resume: Option<&Value>) -> Value {
    let id = format!("{}/{}/{}", call.run, call.task, call.attempt);
    let mut message = json!({
        "role": "user",
        "messageId": id,
        "parts": [{"kind": "data", "data": input}],
        "metadata": {
            "baton": {
                "run": call.run.to_string(),
                "task": &*call.task,
                "attempt": call.attempt,
            }
        }
    });
    if let Some(task) = resume {
        message["messageId"] = format!("{id}/{}", now_ns()).into();
        message["taskId"] = task.get("id").cloned().unwrap_or(Value::Null);
        if let Some(context) = task.get("contextId") {
            message["contextId"] = context.clone();
        }
    }
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": {"message": message}})
}

/// A unique enough suffix for the id of a message that continues a task.
fn now_ns() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// The first wait before asking how an A2A task that has not finished is
/// doing; each next wait doubles, up to [`POLL_MAX`].
const POLL_FIRST: Duration = Duration::from_millis(200);
const POLL_MAX: Duration = Duration::from_secs(5);

/// Sends one call and interprets the answer. An A2A task that is
/// `submitted` or `working` is asked after (`tasks/get`) until it ends; one
/// that is `input-required` gets its input from a person through the run's
/// events (see [`super::Progress::ask`]) and goes on; the task's `timeout`
/// bounds it all.
async fn send(agent: Http, call: Call) -> Outcome {
    let agent = agent.target().await?;
    let mut result = message(&agent, &call, &call.input, None).await?;
    let mut wait = POLL_FIRST;
    loop {
        match state(&result) {
            Some("submitted" | "working") => {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(POLL_MAX);
                let id_of = format!("{}/{}/{}", call.run, call.task, call.attempt);
                let id = result.get("id").cloned().unwrap_or(Value::Null);
                let ask = json!({"jsonrpc": "2.0", "id": id_of, "method": "tasks/get", "params": {"id": id}});
                result = rpc(&agent.inner, &call, ask).await?;
            }
            Some("input-required") if call.progress.is_some() => {
                let question = result
                    .pointer("/status/message/parts")
                    .and_then(Value::as_array)
                    .map_or(Value::Null, |parts| parts_value(parts.iter()));
                let Some(progress) = &call.progress else {
                    return output(&result);
                };
                let answer = progress.ask(question).await?;
                result = message(&agent, &call, &answer, Some(&result)).await?;
                wait = POLL_FIRST;
            }
            _ => return output(&result),
        }
    }
}

/// The state of an A2A task (`None` for a message or another result).
fn state(result: &Value) -> Option<&str> {
    if result.get("kind").and_then(Value::as_str) != Some("task") {
        return None;
    }
    result.pointer("/status/state").and_then(Value::as_str)
}

/// Sends `input` as a message (continuing the task `resume`, if given),
/// with `message/stream` or `message/send` as the agent does.
async fn message(
    agent: &Http,
    call: &Call,
    input: &Value,
    resume: Option<&Value>,
) -> Result<Value, Failure> {
    if !agent.stream {
        return rpc(
            &agent.inner,
            call,
            request_body(call, "message/send", input, resume),
        )
        .await;
    }
    let request = request_body(call, "message/stream", input, resume);
    let body = serde_json::to_vec(&request)
        .map_err(|e| Failure::permanent(format!("cannot encode the input as JSON: {e}")))?;
    let url = agent.inner.url();
    let mut task: Option<Value> = resume.cloned();
    let mut answer: Option<Value> = None;
    let streamed = agent
        .inner
        .post_stream(body, |data| {
            let result = rpc_result(url, data.as_bytes())?;
            follow(&mut task, &mut answer, result, call.progress.as_ref());
            Ok(())
        })
        .await?;
    if let Streamed::Body(body) = streamed {
        return rpc_result(url, &body);
    }
    answer.or(task).ok_or_else(|| {
        Failure::retryable(format!(
            "the event stream from {url} ended without a task or a message"
        ))
    })
}

/// One result of a `message/stream`: a message is the answer; a task is the
/// task as it is now; a status or an artifact update changes it, and is
/// reported as progress (`{"state", "message"}` or `{"artifact"}`).
fn follow(
    task: &mut Option<Value>,
    answer: &mut Option<Value>,
    result: Value,
    progress: Option<&super::Progress>,
) {
    match result.get("kind").and_then(Value::as_str) {
        Some("status-update") => {
            let current = task.get_or_insert_with(|| json!({"kind": "task", "artifacts": []}));
            current["kind"] = "task".into();
            for (from, to) in [("taskId", "id"), ("contextId", "contextId")] {
                if let Some(v) = result.get(from) {
                    current[to] = v.clone();
                }
            }
            let status = result.get("status").cloned().unwrap_or(Value::Null);
            if let Some(p) = progress {
                let mut report = json!({"state": status.get("state")});
                if let Some(parts) = status.pointer("/message/parts").and_then(Value::as_array) {
                    report["message"] = parts_value(parts.iter());
                }
                p.report(report);
            }
            current["status"] = status;
        }
        Some("artifact-update") => {
            let current = task.get_or_insert_with(|| json!({"kind": "task", "artifacts": []}));
            let artifact = result.get("artifact").cloned().unwrap_or(Value::Null);
            let parts = artifact
                .get("parts")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(p) = progress {
                p.report(json!({"artifact": parts_value(parts.iter())}));
            }
            let append = result.get("append").and_then(Value::as_bool) == Some(true);
            let id = artifact.get("artifactId").cloned();
            if !current.get("artifacts").is_some_and(Value::is_array) {
                current["artifacts"] = json!([]);
            }
            let Some(list) = current.get_mut("artifacts").and_then(Value::as_array_mut) else {
                return;
            };
            let same = list
                .iter_mut()
                .find(|a| id.is_some() && a.get("artifactId") == id.as_ref());
            match same {
                Some(existing) if append => {
                    if let Some(existing) = existing.get_mut("parts").and_then(Value::as_array_mut)
                    {
                        existing.extend(parts);
                    }
                }
                Some(existing) => *existing = artifact,
                None => list.push(artifact),
            }
        }
        Some("task") => *task = Some(result),
        _ => *answer = Some(result),
    }
}

/// One JSON-RPC request and its `result`.
async fn rpc(inner: &Endpoint, call: &Call, request: Value) -> Result<Value, Failure> {
    let url = inner.url();
    let body = serde_json::to_vec(&request)
        .map_err(|e| Failure::permanent(format!("cannot encode the input as JSON: {e}")))?;
    let (status, headers, body) = inner.post(body).await?;
    tracing::debug!(
        run = %call.run,
        task = %call.task,
        attempt = call.attempt,
        %url,
        status = status.as_u16(),
        bytes = body.len(),
        "http agent answered"
    );
    if !status.is_success() {
        return Err(status_failure(url, status, &headers, &body));
    }
    rpc_result(url, &body)
}

/// The `result` of a JSON-RPC answer; its `error` as a permanent failure.
fn rpc_result(url: &Uri, body: &[u8]) -> Result<Value, Failure> {
    let answer = json_answer(url, body)?;
    if let Some(error) = answer.get("error") {
        let code = error.get("code").map_or(Value::Null, Value::clone);
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("(no message)");
        let mut text = format!("{url} answered JSON-RPC error {code}: {message}");
        if let Some(data) = error.get("data") {
            text.push_str(&format!(" ({})", excerpt(data.to_string().as_bytes())));
        }
        return Err(Failure::permanent(text));
    }
    match answer.get("result") {
        Some(result) => Ok(result.clone()),
        None => Err(Failure::permanent(format!(
            "{url} answered without a JSON-RPC `result` or `error`: {}",
            excerpt(body)
        ))),
    }
}

/// The task's output from a JSON-RPC `result`:
/// - a message (`kind: "message"`): its parts;
/// - a task (`kind: "task"`): the parts of its artifacts, or a permanent failure
///   if the task `failed`, was `rejected` or `canceled`, or waits for
///   something Baton does not give (`auth-required`);
/// - anything else: the result as is.
///
/// Parts become values: a data part its `data`, a text part its `text` as a
/// string, a file part its `file` object, others as they are. One part gives
/// that value, several an array of them, none `null`.
fn output(result: &Value) -> Outcome {
    match result.get("kind").and_then(Value::as_str) {
        Some("message") => Ok(parts_value(
            result
                .get("parts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        )),
        Some("task") => {
            let state = result.pointer("/status/state").and_then(Value::as_str);
            match state {
                None | Some("completed") => {}
                Some(state @ ("failed" | "rejected" | "canceled")) => {
                    let parts = result
                        .pointer("/status/message/parts")
                        .and_then(Value::as_array);
                    let text: Vec<&str> = parts
                        .into_iter()
                        .flatten()
                        .filter_map(|part| part.get("text").and_then(Value::as_str))
                        .collect();
                    let text = if text.is_empty() {
                        "(no message)".to_owned()
                    } else {
                        text.join(" ")
                    };
                    return Err(Failure::permanent(format!(
                        "the agent's task {state}: {text}"
                    )));
                }
                Some(state) => {
                    return Err(Failure::permanent(format!(
                        "the agent's task ended `{state}`, which Baton cannot answer \
                         (an `input-required` task is answered through the run's events \
                         when the call can report; see docs/patterns.md)"
                    )));
                }
            }
            let parts = result
                .get("artifacts")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|artifact| artifact.get("parts").and_then(Value::as_array))
                .flatten();
            Ok(parts_value(parts))
        }
        _ => Ok(result.clone()),
    }
}

/// One value for a list of parts (see [`output`]).
fn parts_value<'a>(parts: impl Iterator<Item = &'a Value>) -> Value {
    let mut values: Vec<Value> = parts
        .map(|part| {
            let field = match part.get("kind").and_then(Value::as_str) {
                Some("data") => "data",
                Some("text") => "text",
                Some("file") => "file",
                _ => return part.clone(),
            };
            part.get(field).cloned().unwrap_or(Value::Null)
        })
        .collect();
    match values.len() {
        0 => Value::Null,
        1 => values.pop().unwrap_or(Value::Null),
        _ => Value::Array(values),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::agent::endpoint::tls_builder;
    use crate::store::RunId;

    /// What the test server saw of one request.
    #[derive(Debug)]
    struct Seen {
        request_line: String,
        /// Header names in lower case.
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

    /// A server on 127.0.0.1 that answers every request with `status` and
    /// `body`, keeps connections alive, and reports each request.
    struct Server {
        url: String,
        seen: mpsc::UnboundedReceiver<Seen>,
        connections: Arc<AtomicUsize>,
    }

    async fn serve(status: &'static str, body: &'static str) -> Server {
        serve_with(status, body, None).await
    }

    /// [`serve`] over TLS, with the test certificate of `localhost` and
    /// 127.0.0.1 (tests/fixtures/tls, signed by the test CA).
    async fn serve_tls(status: &'static str, body: &'static str) -> Server {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(SERVER_CERT)
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(SERVER_KEY).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        serve_with(status, body, Some(acceptor)).await
    }

    async fn serve_with(
        status: &'static str,
        body: &'static str,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}/a2a"),
            None => format!("http://127.0.0.1:{port}/a2a"),
        };
        let (tx, seen) = mpsc::unbounded_channel();
        let connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&connections);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tls {
                        // A client that does not trust the certificate hangs up.
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                connection(stream, status, body, tx).await;
                            }
                        }
                        None => connection(stream, status, body, tx).await,
                    }
                });
            }
        });
        Server {
            url,
            seen,
            connections,
        }
    }

    const CA_CERT: &[u8] = include_bytes!("../../tests/fixtures/tls/ca.pem");
    const SERVER_CERT: &[u8] = include_bytes!("../../tests/fixtures/tls/server.pem");
    const SERVER_KEY: &[u8] = include_bytes!("../../tests/fixtures/tls/server.key");

    /// A client configuration that trusts the test CA only.
    fn trusting_the_test_ca() -> rustls::ClientConfig {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(CA_CERT) {
            roots.add(cert.unwrap()).unwrap();
        }
        tls_builder()
            .with_root_certificates(roots)
            .with_no_client_auth()
    }

    #[tokio::test]
    async fn https_agents_verify_the_certificate_and_talk_over_tls() {
        let mut server = serve_tls("200 OK", MESSAGE).await;
        let agent = Http {
            inner: Arc::new(
                Endpoint::with_tls(&server.url, &[], &Egress::Open, trusting_the_test_ca())
                    .unwrap(),
            ),
            stream: false,
            card: None,
            built_with: Arc::new(BuiltWith {
                headers: Vec::new(),
                egress: Egress::Open,
            }),
        };
        let output = outcome(&agent, json!({"q": 1})).await.unwrap();
        assert_eq!(output, json!({"summary": "short", "words": 2}));
        let seen = server.seen.recv().await.unwrap();
        assert_eq!(seen.request_line, "POST /a2a HTTP/1.1");
        assert_eq!(
            seen.body["params"]["message"]["parts"][0]["data"],
            json!({"q": 1})
        );

        // The system's roots do not include the test CA: a permanent failure
        // that says why, and nothing was sent.
        let stranger = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&stranger, json!({})).await.unwrap_err();
        assert!(!failure.retryable, "{failure:?}");
        assert!(
            failure.message.contains("certificate"),
            "{}",
            failure.message
        );
        assert!(server.seen.try_recv().is_err());
    }

    async fn connection(
        stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
        status: &str,
        body: &str,
        seen: mpsc::UnboundedSender<Seen>,
    ) {
        let mut stream = BufReader::new(stream);
        loop {
            let mut request_line = String::new();
            if stream.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                return;
            }
            let mut headers = Vec::new();
            loop {
                let mut line = String::new();
                stream.read_line(&mut line).await.unwrap();
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':').unwrap();
                headers.push((name.to_ascii_lowercase(), value.trim().to_owned()));
            }
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .map_or(0, |(_, v)| v.parse().unwrap());
            let mut raw = vec![0; length];
            stream.read_exact(&mut raw).await.unwrap();
            let _ = seen.send(Seen {
                request_line: request_line.trim_end().to_owned(),
                headers,
                body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
            });
            let answer = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            stream.get_mut().write_all(answer.as_bytes()).await.unwrap();
            stream.get_mut().flush().await.unwrap();
        }
    }

    fn call(input: Value) -> Call {
        Call {
            run: RunId(0x0000_0190_abcd_0001),
            task: Arc::from("summarize"),
            attempt: 3,
            input,
            estimate: None,
            iteration: None,
            decisions: None,
            progress: None,
        }
    }

    async fn outcome(agent: &Http, input: Value) -> Outcome {
        match agent.start(call(input)) {
            Started::Done(outcome) => outcome,
            Started::Later(pending) => pending.await,
        }
    }

    const MESSAGE: &str = r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"message","role":"agent","messageId":"m1","parts":[{"kind":"data","data":{"summary":"short","words":2}}]}}"#;

    #[tokio::test]
    async fn sends_a_message_and_takes_the_data_part() {
        let mut server = serve("200 OK", MESSAGE).await;
        let agent = Http::new(
            &server.url,
            &[("Authorization".to_owned(), "Bearer s3cret".to_owned())],
            &Egress::Open,
        )
        .unwrap();
        assert!(!format!("{agent:?}").contains("s3cret"));
        let input = json!({"input": {"text": "a long text"}, "upstream": {}});
        let out = outcome(&agent, input.clone()).await;
        assert_eq!(out, Ok(json!({"summary": "short", "words": 2})));

        let seen = server.seen.recv().await.unwrap();
        assert_eq!(seen.request_line, "POST /a2a HTTP/1.1");
        assert_eq!(seen.header("content-type"), Some("application/json"));
        assert_eq!(seen.header("authorization"), Some("Bearer s3cret"));
        let id = "00000190abcd0001/summarize/3";
        assert_eq!(
            seen.body,
            json!({
                "jsonrpc": "2.0",
                "id": id,
                "method": "message/send",
                "params": {"message": {
                    "role": "user",
                    "messageId": id,
                    "parts": [{"kind": "data", "data": input}],
                    "metadata": {"baton": {"run": "00000190abcd0001", "task": "summarize", "attempt": 3}},
                }},
            })
        );
    }

    #[tokio::test]
    async fn calls_reuse_one_connection() {
        let server = serve("200 OK", MESSAGE).await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        for _ in 0..3 {
            assert!(outcome(&agent, Value::Null).await.is_ok());
        }
        assert_eq!(server.connections.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn several_parts_make_an_array_with_text_as_strings() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"message","parts":[{"kind":"text","text":"done"},{"kind":"data","data":[1,2]}]}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        assert_eq!(
            outcome(&agent, Value::Null).await,
            Ok(json!(["done", [1, 2]]))
        );
    }

    #[tokio::test]
    async fn a_completed_task_gives_its_artifacts() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"task","id":"t9","contextId":"c","status":{"state":"completed"},"artifacts":[{"artifactId":"a1","parts":[{"kind":"data","data":{"score":0.9}}]}]}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        assert_eq!(
            outcome(&agent, Value::Null).await,
            Ok(json!({"score": 0.9}))
        );
    }

    #[tokio::test]
    async fn a_failed_task_is_permanent_with_its_status_message() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"task","id":"t9","status":{"state":"failed","message":{"kind":"message","role":"agent","parts":[{"kind":"text","text":"model overloaded"}]}}}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert_eq!(
            failure,
            Failure::permanent("the agent's task failed: model overloaded")
        );
    }

    #[tokio::test]
    async fn a_task_waiting_for_input_is_permanent() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"kind":"task","id":"t9","status":{"state":"input-required"}}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure.message.contains("`input-required`"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn another_result_is_the_output_as_is() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","result":{"answer":42}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        assert_eq!(
            outcome(&agent, Value::Null).await,
            Ok(json!({"answer": 42}))
        );
    }

    #[tokio::test]
    async fn a_json_rpc_error_is_permanent() {
        let server = serve(
            "200 OK",
            r#"{"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"Method not found"}}"#,
        )
        .await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert_eq!(
            failure.message,
            format!(
                "{} answered JSON-RPC error -32601: Method not found",
                server.url
            )
        );
    }

    #[tokio::test]
    async fn a_503_is_retryable() {
        let server = serve("503 Service Unavailable", r#"{"busy":true}"#).await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(failure.retryable);
        assert!(
            failure.message.contains("HTTP 503 Service Unavailable"),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains(r#"{"busy":true}"#),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn a_429_is_retryable_and_a_404_is_not() {
        let server = serve("429 Too Many Requests", "").await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        assert!(outcome(&agent, Value::Null).await.unwrap_err().retryable);

        let server = serve("404 Not Found", "no such path").await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure.message.contains("HTTP 404 Not Found: no such path"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn a_body_that_is_not_json_is_permanent_with_an_excerpt() {
        let server = serve("200 OK", "<html>oops</html>").await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(failure.message.contains("not JSON"), "{}", failure.message);
        assert!(
            failure.message.ends_with("<html>oops</html>"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn connection_refused_is_retryable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        drop(listener);
        let agent = Http::new(&url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(failure.retryable);
        assert!(
            failure.message.starts_with(&format!("cannot reach {url}")),
            "{}",
            failure.message
        );
        assert!(failure.message.contains("refused"), "{}", failure.message);
    }

    #[test]
    fn bad_urls_and_headers_are_refused() {
        assert!(Http::new("https://agents.example/a2a", &[], &Egress::Open).is_ok());
        assert!(
            Http::new("ftp://host/", &[], &Egress::Open)
                .unwrap_err()
                .contains("scheme")
        );
        assert!(
            Http::new("/just/a/path", &[], &Egress::Open)
                .unwrap_err()
                .contains("absolute")
        );
        assert!(Http::new("not a url", &[], &Egress::Open).is_err());
        let header = Http::new(
            "http://host/",
            &[("bad name".into(), "v".into())],
            &Egress::Open,
        )
        .unwrap_err();
        assert!(header.contains("`bad name`"), "{header}");
        assert!(Http::new("http://127.0.0.1:9/a2a", &[], &Egress::Open).is_ok());
    }

    #[tokio::test]
    async fn a_server_refuses_private_addresses_it_was_not_told_of() {
        let public = Egress::Public {
            private_hosts: Vec::new(),
        };
        for url in [
            "http://127.0.0.1:9/a2a",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9/",
            "http://10.0.0.5/",
        ] {
            let err = Http::new(url, &[], &public).unwrap_err();
            assert!(
                err.contains("which is not a public address"),
                "{url}: {err}"
            );
            assert!(err.contains("allow_private_hosts"), "{url}: {err}");
        }
        // A name that resolves to a private address is refused when connecting,
        // permanently: no request is sent.
        let mut server = serve("200 OK", MESSAGE).await;
        let by_name = server.url.replace("127.0.0.1", "localhost");
        let agent = Http::new(&by_name, &[], &public).unwrap();
        let failure = outcome(&agent, json!({})).await.unwrap_err();
        assert!(!failure.retryable, "{}", failure.message);
        assert!(
            failure.message.contains("which is not a public address"),
            "{}",
            failure.message
        );
        assert!(server.seen.try_recv().is_err());
        // Listed hosts may be anywhere.
        let listed = Egress::Public {
            private_hosts: vec!["LOCALHOST".into(), "127.0.0.1".into()],
        };
        for url in [&server.url, &by_name] {
            let agent = Http::new(url, &[], &listed).unwrap();
            let out = outcome(&agent, json!({})).await;
            assert_eq!(out, Ok(json!({"summary": "short", "words": 2})), "{url}");
        }
    }

    #[tokio::test]
    async fn redirects_are_not_followed() {
        let mut server = serve("302 Found\r\nLocation: http://169.254.169.254/", "{}").await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let failure = outcome(&agent, json!({})).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(failure.message.contains("HTTP 302"), "{}", failure.message);
        assert!(server.seen.recv().await.is_some());
        assert!(server.seen.try_recv().is_err(), "one request only");
    }

    #[tokio::test]
    async fn hostile_input_stays_in_the_body() {
        let mut server = serve("200 OK", MESSAGE).await;
        let agent = Http::new(&server.url, &[], &Egress::Open).unwrap();
        let hostile =
            json!({"path": "../../admin?x=1#y", "header": "a\r\nX-Injected: 1", "at": "@evil.net"});
        outcome(&agent, hostile.clone()).await.unwrap();
        let seen = server.seen.recv().await.unwrap();
        assert_eq!(seen.request_line, "POST /a2a HTTP/1.1");
        assert!(seen.header("x-injected").is_none());
        assert_eq!(seen.body["params"]["message"]["parts"][0]["data"], hostile);
    }
}
