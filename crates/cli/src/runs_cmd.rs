//! `baton runs list|show|cancel|events`: a small client of a running
//! `baton serve`, so that nobody needs curl to look at a server. The server
//! is `--server` (or `BATON_SERVER`, default `http://127.0.0.1:8080`); the
//! token, when the server wants one, is read from `BATON_AUTH_TOKEN` (never a
//! flag: flags end up in shell histories and process lists).
//!
//! Exit codes: 0; 1 when the server answers with an error (the problem's
//! detail is printed); 2 when no server answers or the flags are wrong.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Flags of `baton runs`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// The server [env: BATON_SERVER] [default: http://127.0.0.1:8080].
    #[arg(long, global = true, value_name = "URL")]
    server: Option<String>,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Command {
    /// The runs the server drives and the newest that ended, newest first.
    List {
        /// Only runs in this state: executing, paused, completed, failed, cancelled.
        #[arg(long)]
        status: Option<String>,
        /// Only runs of this workflow (its name).
        #[arg(long)]
        workflow: Option<String>,
        /// How many (1 to 1000).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// A run: its status, metrics and tasks.
    Show {
        /// The run's id (16 hex digits).
        id: String,
    },
    /// Cancel a run (its completed tasks are compensated).
    Cancel {
        /// The run's id.
        id: String,
    },
    /// A run's events as they happen, until it ends.
    Events {
        /// The run's id.
        id: String,
    },
}

/// Exit code when no server answers, or for bad flags.
const EXIT_USAGE: u8 = 2;

/// Flags of `baton audit`.
#[derive(clap::Args)]
pub struct AuditArgs {
    /// The server [env: BATON_SERVER] [default: http://127.0.0.1:8080].
    #[arg(long, value_name = "URL")]
    server: Option<String>,
    /// The first record (`next_from` of the previous page).
    #[arg(long, default_value_t = 0)]
    from: u64,
    /// How many (1 to 1000).
    #[arg(long, default_value_t = 100)]
    max: u32,
    /// Print the server's JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The client of `--server`, with the token of `BATON_AUTH_TOKEN`.
fn api(server: Option<String>) -> Result<Api, ExitCode> {
    let server = server
        .or_else(|| std::env::var("BATON_SERVER").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "http://127.0.0.1:8080".into());
    let server = server.trim_end_matches('/').to_owned();
    if !server.starts_with("http://") && !server.starts_with("https://") {
        eprintln!("error: --server {server}: expected http://HOST:PORT or https://HOST:PORT");
        return Err(ExitCode::from(EXIT_USAGE));
    }
    // https: the system's trusted roots (`SSL_CERT_FILE` names a bundle with
    // a private CA), rustls on ring.
    let roots = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| {
        eprintln!("error: TLS: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(
            hyper_rustls::ConfigBuilderExt::with_native_roots(roots)
                .map_err(|e| {
                    eprintln!(
                        "error: https needs trusted certificate authorities and none were found ({e}): \
                         install the system's CA certificates or name a PEM bundle in SSL_CERT_FILE"
                    );
                    ExitCode::from(EXIT_USAGE)
                })?
                .with_no_client_auth(),
        )
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Api {
        client: Client::builder(TokioExecutor::new()).build(connector),
        server,
        token: std::env::var("BATON_AUTH_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Runs `baton audit`: the server's audit trail, a page at a time (an
/// admin token in `BATON_AUTH_TOKEN`).
pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let api = match api(args.server) {
            Ok(api) => api,
            Err(code) => return Ok(code),
        };
        let path = format!("/api/v1/audit?from={}&max={}", args.from, args.max);
        let body = match api.call("GET", &path).await? {
            Ok(body) => body,
            Err(code) => return Ok(code),
        };
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{body}")?;
            return Ok(ExitCode::SUCCESS);
        }
        let events = body["events"].as_array().map_or(&[][..], Vec::as_slice);
        if events.is_empty() {
            eprintln!("no audit records from {}", args.from);
        }
        for e in events {
            let r = &e["payload"];
            writeln!(
                out,
                "{:>6}  {}  {:<16}  {:<4} {:<40}  {}  {}",
                e["offset"].as_u64().unwrap_or(0),
                r["at_ms"].as_u64().unwrap_or(0),
                crate::events_cmd::shown(r["caller"].as_str().unwrap_or("?").as_bytes()),
                r["method"].as_str().unwrap_or("?"),
                crate::events_cmd::shown(r["path"].as_str().unwrap_or("?").as_bytes()),
                r["status"].as_u64().unwrap_or(0),
                r["request_id"].as_str().unwrap_or(""),
            )?;
        }
        if let Some(next) = body["next_from"].as_u64() {
            eprintln!("more: --from {next}");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Runs `baton runs ...`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async move {
        let api = match api(args.server.clone()) {
            Ok(api) => api,
            Err(code) => return Ok(code),
        };
        let answer = match &args.command {
            Command::List {
                status,
                workflow,
                limit,
            } => {
                let mut query = format!("limit={limit}");
                if let Some(s) = status {
                    query.push_str(&format!("&status={}", encode(s)));
                }
                if let Some(w) = workflow {
                    query.push_str(&format!("&workflow={}", encode(w)));
                }
                api.call("GET", &format!("/api/v1/executions?{query}"))
                    .await
            }
            Command::Show { id } => {
                api.call("GET", &format!("/api/v1/executions/{}", encode(id)))
                    .await
            }
            Command::Cancel { id } => {
                api.call("POST", &format!("/api/v1/executions/{}/cancel", encode(id)))
                    .await
            }
            Command::Events { id } => return api.events(id, args.json).await,
        };
        let body = match answer? {
            Ok(body) => body,
            Err(code) => return Ok(code),
        };
        let mut out = std::io::stdout().lock();
        if args.json {
            writeln!(out, "{body}")?;
            return Ok(ExitCode::SUCCESS);
        }
        match &args.command {
            Command::List { .. } => list(&mut out, &body)?,
            Command::Show { .. } => show(&mut out, &body)?,
            Command::Cancel { id } => writeln!(
                out,
                "run {id}: {}",
                body["status"].as_str().unwrap_or("cancelling")
            )?,
            Command::Events { .. } => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}

struct Api {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    server: String,
    token: Option<String>,
}

impl Api {
    fn request(&self, method: &str, path: &str) -> anyhow::Result<http::Request<Full<Bytes>>> {
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.server))
            .header("content-type", "application/json");
        if let Some(token) = &self.token {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        let body = if method == "POST" { "{}" } else { "" };
        Ok(req.body(Full::new(Bytes::from(body)))?)
    }

    /// Sends a request and returns its JSON body, or the exit code after
    /// printing what went wrong.
    async fn call(&self, method: &str, path: &str) -> anyhow::Result<Result<Value, ExitCode>> {
        let res = match tokio::time::timeout(
            Duration::from_secs(30),
            self.client.request(self.request(method, path)?),
        )
        .await
        {
            Ok(Ok(res)) => res,
            Ok(Err(e)) => return Ok(Err(self.unreachable(&e.to_string()))),
            Err(_) => return Ok(Err(self.unreachable("no answer within 30 s"))),
        };
        let status = res.status();
        let bytes = res.into_body().collect().await?.to_bytes();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if !status.is_success() {
            let detail = body["detail"].as_str().unwrap_or("(no detail)");
            eprintln!("error: {} answered {status}: {detail}", self.server);
            return Ok(Err(ExitCode::from(1)));
        }
        Ok(Ok(body))
    }

    fn unreachable(&self, why: &str) -> ExitCode {
        eprintln!(
            "error: no answer from {} ({why}): is `baton serve` running there? (--server or BATON_SERVER)",
            self.server
        );
        ExitCode::from(EXIT_USAGE)
    }

    /// Prints the run's events as they arrive (`KIND PAYLOAD`, or the SSE
    /// data as JSON lines with `--json`), until the stream ends.
    async fn events(&self, id: &str, json: bool) -> anyhow::Result<ExitCode> {
        let path = format!("/api/v1/executions/{}/events", encode(id));
        let res = match self.client.request(self.request("GET", &path)?).await {
            Ok(res) => res,
            Err(e) => return Ok(self.unreachable(&e.to_string())),
        };
        let status = res.status();
        let mut body = res.into_body();
        if !status.is_success() {
            let bytes = body.collect().await?.to_bytes();
            let problem: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let detail = problem["detail"].as_str().unwrap_or("(no detail)");
            eprintln!("error: {} answered {status}: {detail}", self.server);
            return Ok(ExitCode::from(1));
        }
        let mut line = Vec::new();
        let mut kind = String::from("message");
        let mut out = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            for &b in data.iter() {
                if b != b'\n' {
                    line.push(b);
                    continue;
                }
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches('\r')
                    .to_owned();
                line.clear();
                if let Some(k) = text.strip_prefix("event:") {
                    kind = k.trim().to_owned();
                } else if let Some(d) = text.strip_prefix("data:") {
                    let d = d.trim();
                    if json {
                        writeln!(
                            out,
                            "{{\"event\": {}, \"data\": {d}}}",
                            Value::String(kind.clone())
                        )?;
                    } else {
                        writeln!(out, "{kind} {d}")?;
                    }
                    out.flush()?;
                } else if text.is_empty() {
                    kind = "message".into();
                }
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Percent-encodes what goes into a path segment or a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How long ago a Unix-milliseconds time was, for people.
fn ago(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86_400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86_400),
    }
}

fn list(out: &mut impl std::io::Write, body: &Value) -> std::io::Result<()> {
    let items = body["items"].as_array().map_or(&[][..], Vec::as_slice);
    if items.is_empty() {
        writeln!(out, "no runs")?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<16}  {:<10}  {:<24}  {:>9}  CREATED",
        "RUN", "STATUS", "WORKFLOW", "TASKS"
    )?;
    for r in items {
        let counts = &r["task_counts"];
        let total: u64 = counts
            .as_object()
            .map_or(0, |c| c.values().filter_map(Value::as_u64).sum());
        let done = counts["succeeded"].as_u64().unwrap_or(0);
        writeln!(
            out,
            "{:<16}  {:<10}  {:<24}  {:>9}  {}",
            r["execution_id"].as_str().unwrap_or("?"),
            r["status"].as_str().unwrap_or("?"),
            r["workflow"].as_str().unwrap_or("-"),
            format!("{done}/{total}"),
            r["created_at_ms"].as_u64().map_or_else(|| "-".into(), ago)
        )?;
    }
    if let Some(next) = body["next_cursor"].as_str() {
        writeln!(out, "(more: the API's cursor is {next})")?;
    }
    Ok(())
}

fn show(out: &mut impl std::io::Write, r: &Value) -> std::io::Result<()> {
    writeln!(
        out,
        "run {}  {}  ({})",
        r["execution_id"].as_str().unwrap_or("?"),
        r["status"].as_str().unwrap_or("?"),
        r["workflow"].as_str().unwrap_or("-")
    )?;
    let m = &r["performance_metrics"];
    if let Some(t) = m["total_runtime"].as_f64() {
        writeln!(
            out,
            "  runtime {:.3} s, coordination {:.3} ms, {} tasks completed",
            t,
            m["coordination_overhead"].as_f64().unwrap_or(0.0) * 1e3,
            m["tasks_completed"].as_u64().unwrap_or(0)
        )?;
    }
    for t in r["tasks"].as_array().map_or(&[][..], Vec::as_slice) {
        let mut line = format!(
            "  {:<24} {:<11} attempt {}",
            t["id"].as_str().unwrap_or("?"),
            t["status"].as_str().unwrap_or("?"),
            t["attempt"].as_u64().unwrap_or(0)
        );
        if let Some(e) = t["error"].as_str() {
            line.push_str(&format!("  {e}"));
        }
        writeln!(out, "{line}")?;
    }
    Ok(())
}
