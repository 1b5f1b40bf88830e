//! `baton.toml`: `[agents.NAME]` tables (shared by `baton run --config` and
//! `baton serve --config`), and the `[server]` and `[tenants.NAME]` tables of
//! `baton serve`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use baton_model::Agent;
use serde::Deserialize;
use serde_json::Value;

/// What a `baton.toml` holds.
#[derive(Default)]
pub struct Config {
    /// `[agents.NAME]` tables.
    pub agents: Vec<Agent>,
    /// The `[server]` table.
    pub server: Server,
    /// `[tenants.NAME]` tables: each tenant's quotas.
    pub tenants: std::collections::BTreeMap<String, baton_server::limits::Quota>,
}

/// `[server]` of `baton.toml`.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// Where to listen (`127.0.0.1:8080`).
    pub bind: Option<std::net::SocketAddr>,
    /// The data directory.
    pub data_dir: Option<std::path::PathBuf>,
    /// Bearer token for `/api` routes.
    pub auth_token: Option<String>,
    /// The API tokens with scopes (`baton token`) [default: DATA_DIR/tokens.json].
    pub tokens_file: Option<std::path::PathBuf>,
    /// Requests per second of a caller whose token sets no limit.
    pub rate_limit_rps: Option<f64>,
    /// Events published per second of a caller whose token sets no limit.
    pub rate_limit_events_per_sec: Option<f64>,
    /// HTTPS: the certificate chain (PEM).
    pub tls_cert: Option<std::path::PathBuf>,
    /// HTTPS: the certificate's private key (PEM).
    pub tls_key: Option<std::path::PathBuf>,
    /// mTLS: the CAs whose client certificates are verified (PEM).
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// Which calls go to the audit trail: control (default), all, off.
    pub audit: Option<baton_server::audit::Level>,
    /// How long the audit trail keeps a record, days [default: 90].
    pub audit_retention_days: Option<u64>,
    /// Whether `/metrics` needs the token.
    pub metrics_requires_auth: Option<bool>,
    /// Whether every request is logged (`baton::access`).
    pub access_log: Option<bool>,
    /// Largest request body, bytes.
    pub body_limit: Option<usize>,
    /// Most events per `POST /api/v1/events`.
    pub max_batch_events: Option<usize>,
    /// Request timeout, seconds.
    pub request_timeout_secs: Option<u64>,
    /// Longest wait of a long poll, milliseconds.
    pub long_poll_max_ms: Option<u64>,
    /// Most connections open at once.
    pub max_connections: Option<usize>,
    /// Seconds a connection may wait for its next request's headers.
    pub idle_timeout_secs: Option<u64>,
    /// Event ids remembered per topic for dedup (0: off), for topics
    /// created from now on.
    pub dedup_ids: Option<usize>,
    /// How long an event id is remembered for dedup, seconds.
    pub dedup_window_secs: Option<u64>,
    /// How long a delivered event may stay unacknowledged before it is
    /// delivered again, ms (topics created from now on).
    pub visibility_timeout_ms: Option<u64>,
    /// Deliveries before an event goes to the topic's dead letters (0: never;
    /// topics created from now on).
    pub max_deliveries: Option<u32>,
    /// The event log (`disk`, `memory`, `redis://…`, `nats://…`).
    pub events: Option<String>,
    /// The state store (`embedded`, `postgres://…`).
    pub state: Option<String>,
    /// This instance's name among several sharing a state store.
    pub instance: Option<String>,
    /// The URL other instances reach this one at.
    pub advertise: Option<String>,
    /// Lease time of an instance sharing a state store, seconds.
    pub lease_ttl_secs: Option<u64>,
    /// The deployment's name in shared servers.
    pub namespace: Option<String>,
    /// Whether posted workflows may define `command` agents.
    pub allow_workflow_command_agents: Option<bool>,
    /// URL prefixes or hosts posted workflows' `http` agents may call.
    pub allow_workflow_http_urls: Option<Vec<String>>,
    /// Hosts `http` agents may reach at addresses that are not public.
    pub allow_private_hosts: Option<Vec<String>>,
    /// How deeply child runs may nest (the top run is level 1).
    pub max_depth: Option<usize>,
    /// The most fan-out items and loop iterations one run may start.
    pub max_instances_per_run: Option<u64>,
}

/// Reads a `baton.toml`; invalid content is reported on stderr and becomes exit code 1.
pub fn read(path: &Path) -> anyhow::Result<Result<Config, ExitCode>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: Value = match toml::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: {}: {e}", path.display());
            return Ok(Err(ExitCode::from(1)));
        }
    };
    let server = match value.get("server").cloned() {
        None => Server::default(),
        Some(v) => match serde_json::from_value(v) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: {}: [server]: {e}", path.display());
                return Ok(Err(ExitCode::from(1)));
            }
        },
    };
    let mut server = server;
    let tenants: std::collections::BTreeMap<String, baton_server::limits::Quota> =
        match value.get("tenants").cloned().map(serde_json::from_value) {
            None => Default::default(),
            Some(Ok(t)) => t,
            Some(Err(e)) => {
                eprintln!("error: {}: [tenants]: {e}", path.display());
                return Ok(Err(ExitCode::from(1)));
            }
        };
    for (name, quota) in &tenants {
        if let Err(why) = baton_model::check_tenant(name).and_then(|()| quota.check()) {
            eprintln!("error: {}: [tenants.{name}]: {why}", path.display());
            return Ok(Err(ExitCode::from(1)));
        }
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    if let Some(token) = &server.auth_token {
        match secret(token, dir) {
            Ok(t) => server.auth_token = Some(t),
            Err(why) => {
                eprintln!("error: {}: [server] auth_token: {why}", path.display());
                return Ok(Err(ExitCode::from(1)));
            }
        }
    }
    // Files the server reads, like `file:` secrets, from the config's directory.
    for file in [
        &mut server.tls_cert,
        &mut server.tls_key,
        &mut server.tls_client_ca,
        &mut server.tokens_file,
    ]
    .into_iter()
    .flatten()
    {
        if file.is_relative() {
            *file = dir.join(&*file);
        }
    }
    let Some(agents) = value.get("agents").cloned() else {
        return Ok(Ok(Config {
            agents: Vec::new(),
            server,
            tenants,
        }));
    };
    let root = baton_model::Path::root().key("agents");
    match baton_model::agents_from_value(agents, &root) {
        Ok(mut agents) => {
            for agent in &mut agents {
                let name = agent.name.clone();
                for (field, pairs) in [("headers", &mut agent.headers), ("env", &mut agent.env)] {
                    for (key, value) in pairs.iter_mut() {
                        match secret(value, dir) {
                            Ok(v) => *value = v,
                            Err(why) => {
                                eprintln!(
                                    "error: {}: [agents.{name}] {field} `{key}`: {why}",
                                    path.display()
                                );
                                return Ok(Err(ExitCode::from(1)));
                            }
                        }
                    }
                }
            }
            Ok(Ok(Config {
                agents,
                server,
                tenants,
            }))
        }
        Err(report) => {
            for d in &report.diagnostics {
                eprintln!("error: {}: {} (at {})", path.display(), d.message, d.path);
                if let Some(hint) = &d.hint {
                    eprintln!("  hint: {hint}");
                }
            }
            Ok(Err(ExitCode::from(1)))
        }
    }
}

/// A setting that may name its secret instead of holding it: `env:NAME`
/// (the environment variable) or `file:PATH` (the file's content without its
/// last line break; a relative path from the config file's directory).
/// Anything else is the value itself. The secret is never printed.
fn secret(value: &str, dir: &Path) -> Result<String, String> {
    if let Some(var) = value.strip_prefix("env:") {
        return std::env::var(var).map_err(|_| {
            format!("names the environment variable `{var}`, which is not set (or not UTF-8)")
        });
    }
    if let Some(file) = value.strip_prefix("file:") {
        let path = dir.join(file);
        return std::fs::read_to_string(&path)
            .map(|s| {
                s.strip_suffix('\n')
                    .map_or(s.clone(), |t| t.strip_suffix('\r').unwrap_or(t).to_owned())
            })
            .map_err(|e| {
                format!(
                    "names the file {}, which cannot be read: {e}",
                    path.display()
                )
            });
    }
    Ok(value.to_owned())
}

/// A URL (or a text quoting URLs) without passwords, for what is printed.
pub use baton_server::redact;
