//! `baton serve`: the HTTP API server, on the embedded defaults (disk event log,
//! embedded state store) in a data directory, or on Redis / NATS and PostgreSQL
//! (`--events`, `--state`), where several instances share the work.
//! SIGINT/SIGTERM stop it gracefully: stop accepting, end streams, flush and close
//! the store and the log, exit 0. Restarting on the same data directory (or with
//! the same `--instance` name) resumes the runs left unfinished.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use baton_server::{Server, ServerOptions};
use tokio_util::sync::CancellationToken;

use crate::config::{self, redact};

/// Flags of `baton serve` (flags win over `baton.toml`, which wins over defaults).
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen [env: BATON_BIND] [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Where workflows, runs and events are kept [env: BATON_DATA_DIR]
    /// [default: ./baton-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The event log: `disk` (under the data directory), `memory`,
    /// `redis://HOST:PORT` or `nats://HOST:PORT` [env: BATON_EVENTS] [default: disk].
    #[arg(long, value_name = "URL")]
    events: Option<String>,
    /// The state store: `embedded` (under the data directory) or
    /// `postgres://USER@HOST:PORT/DB`, which several instances can share
    /// [env: BATON_STATE] [default: embedded].
    #[arg(long, value_name = "URL")]
    state: Option<String>,
    /// This instance's stable name when several share a state store: a restarted
    /// process with the same name takes its runs over at once [env:
    /// BATON_INSTANCE] [default: the advertised address].
    #[arg(long, value_name = "NAME")]
    instance: Option<String>,
    /// The URL the other instances reach this one at [env: BATON_ADVERTISE]
    /// [default: http:// + the bound address].
    #[arg(long, value_name = "URL")]
    advertise: Option<String>,
    /// Names this deployment in shared servers: the PostgreSQL schema and the
    /// prefix of Redis keys and NATS streams [env: BATON_NAMESPACE] [default: baton].
    #[arg(long, value_name = "NAME")]
    namespace: Option<String>,
    /// How long an instance that stops renewing its lease keeps its runs before
    /// the others take them over, seconds [default: 10].
    #[arg(long, value_name = "SECS")]
    lease_ttl: Option<u64>,
    /// Log every request (method, route, status, latency, request id; never a
    /// token or a body) at level info, target `baton::access`.
    #[arg(long)]
    access_log: bool,
    /// Serve without an auth token on an address other hosts can reach
    /// (refused otherwise).
    #[arg(long)]
    insecure_no_auth: bool,
    /// Serve HTTPS with this certificate chain (PEM; `[server] tls_cert`);
    /// it and `--tls-key` are read again on SIGHUP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM; `[server] tls_key`).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Certificate authorities (PEM; `[server] tls_client_ca`) whose client
    /// certificates the server verifies: instances forward calls to each
    /// other with their own certificate and must present one (mTLS); other
    /// clients may still come with a token alone.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// `baton.toml`: `[server]` (bind, data_dir, auth_token, tokens_file, tls_cert, tls_key, tls_client_ca, rate_limit_rps,
    /// rate_limit_events_per_sec, audit,
    /// audit_retention_days,
    /// metrics_requires_auth, access_log, body_limit, max_batch_events,
    /// request_timeout_secs, long_poll_max_ms, max_connections,
    /// idle_timeout_secs, dedup_ids, dedup_window_secs, visibility_timeout_ms,
    /// max_deliveries, events, state, instance, advertise, lease_ttl_secs,
    /// namespace, allow_workflow_command_agents, allow_workflow_http_urls,
    /// allow_private_hosts, max_depth, max_instances_per_run),
    /// `[tenants.NAME]` (requests_per_sec, events_per_sec,
    /// max_concurrent_runs) and `[agents.NAME]` (docs/security.md) [env: BATON_CONFIG] [default:
    /// ./baton.toml if there is one].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // Each setting: the flag, else the environment, else the config file,
    // else the default (docs/operations.md).
    let config_path = args
        .config
        .clone()
        .or_else(|| env("BATON_CONFIG").map(PathBuf::from))
        .or_else(|| {
            let here = PathBuf::from("baton.toml");
            here.is_file().then_some(here)
        });
    let config = match &config_path {
        None => config::Config::default(),
        Some(path) => match config::read(path)? {
            Ok(c) => c,
            Err(code) => return Ok(code),
        },
    };
    let bind_env = match env("BATON_BIND").map(|b| b.parse::<SocketAddr>()) {
        Some(Ok(addr)) => Some(addr),
        Some(Err(e)) => {
            eprintln!("error: BATON_BIND: {e} (expected an address such as 127.0.0.1:8080)");
            return Ok(ExitCode::from(2));
        }
        None => None,
    };
    let defaults = ServerOptions::default();
    let s = config.server;
    let (s_dedup_ids, s_dedup_window) = (s.dedup_ids, s.dedup_window_secs);
    let (s_visibility, s_deliveries) = (s.visibility_timeout_ms, s.max_deliveries);
    let mut options = ServerOptions {
        bind: args.bind.or(bind_env).or(s.bind).unwrap_or(defaults.bind),
        data_dir: args
            .data_dir
            .or_else(|| env("BATON_DATA_DIR").map(PathBuf::from))
            .or(s.data_dir)
            .unwrap_or(defaults.data_dir.clone()),
        auth_token: s.auth_token,
        tokens_file: s.tokens_file,
        tls: match (
            args.tls_cert.or(s.tls_cert),
            args.tls_key.or(s.tls_key),
            args.tls_client_ca.or(s.tls_client_ca),
        ) {
            (Some(cert), Some(key), client_ca) => Some(baton_server::TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None, None) => None,
            (None, None, Some(_)) => {
                eprintln!(
                    "error: [server] tls_client_ca verifies clients of an HTTPS server: set tls_cert and tls_key too"
                );
                return Ok(ExitCode::from(2));
            }
            _ => {
                eprintln!("error: [server] tls_cert and tls_key go together: set both or neither");
                return Ok(ExitCode::from(2));
            }
        },
        rate_limit: baton_server::tokens::Rate {
            requests_per_sec: s.rate_limit_rps,
            events_per_sec: s.rate_limit_events_per_sec,
        },
        tenants: config.tenants,
        audit: s.audit.unwrap_or(defaults.audit),
        audit_retention: s
            .audit_retention_days
            .map_or(defaults.audit_retention, |d| {
                Duration::from_secs(d.saturating_mul(86_400))
            }),
        metrics_requires_auth: s.metrics_requires_auth.unwrap_or(false),
        access_log: args.access_log || s.access_log.unwrap_or(false),
        insecure_no_auth: args.insecure_no_auth,
        body_limit: s.body_limit.unwrap_or(defaults.body_limit),
        max_batch_events: s.max_batch_events.unwrap_or(defaults.max_batch_events),
        request_timeout: s
            .request_timeout_secs
            .map_or(defaults.request_timeout, Duration::from_secs),
        long_poll_max: s
            .long_poll_max_ms
            .map_or(defaults.long_poll_max, Duration::from_millis),
        max_connections: s.max_connections.unwrap_or(defaults.max_connections),
        idle_timeout: s
            .idle_timeout_secs
            .map_or(defaults.idle_timeout, Duration::from_secs),
        agents: config.agents,
        workflow_agents: baton_engine::agent::Policy {
            command: s.allow_workflow_command_agents.unwrap_or(false),
            http: s.allow_workflow_http_urls.unwrap_or_default(),
        },
        engine: baton_engine::Options {
            egress: baton_engine::agent::Egress::Public {
                private_hosts: s.allow_private_hosts.unwrap_or_default(),
            },
            max_depth: s.max_depth.unwrap_or(defaults.engine.max_depth),
            max_instances: s
                .max_instances_per_run
                .unwrap_or(defaults.engine.max_instances),
            ..defaults.engine.clone()
        },
        events: args.events.or_else(|| env("BATON_EVENTS")).or(s.events),
        state: args.state.or_else(|| env("BATON_STATE")).or(s.state),
        cluster: baton_server::ClusterOptions {
            instance: args
                .instance
                .or_else(|| env("BATON_INSTANCE"))
                .or(s.instance),
            advertise: args
                .advertise
                .or_else(|| env("BATON_ADVERTISE"))
                .or(s.advertise),
            lease_ttl: args
                .lease_ttl
                .or(s.lease_ttl_secs)
                .map_or(defaults.cluster.lease_ttl, Duration::from_secs),
        },
        namespace: args
            .namespace
            .or_else(|| env("BATON_NAMESPACE"))
            .or(s.namespace)
            .unwrap_or(defaults.namespace.clone()),
        ..defaults
    };
    if !baton_server::valid_namespace(&options.namespace) {
        eprintln!(
            "error: --namespace `{}`: expected 1 to 32 characters, lowercase letters, digits and `_`, starting with a letter",
            options.namespace
        );
        return Ok(ExitCode::from(2));
    }
    if !(1..=baton_engine::MAX_DEPTH).contains(&options.engine.max_depth) {
        eprintln!(
            "error: [server] max_depth must be from 1 to {}",
            baton_engine::MAX_DEPTH
        );
        return Ok(ExitCode::from(2));
    }
    if options.engine.max_instances == 0 {
        eprintln!("error: [server] max_instances_per_run must be at least 1");
        return Ok(ExitCode::from(2));
    }
    let topics = &mut options.log.log.topic_defaults;
    if let Some(ms) = s_visibility {
        if ms == 0 {
            eprintln!("error: [server] visibility_timeout_ms must be at least 1");
            return Ok(ExitCode::from(2));
        }
        topics.visibility_timeout = Duration::from_millis(ms);
    }
    if let Some(n) = s_deliveries {
        topics.max_deliveries = n;
    }
    let dedup = &mut options.log.log.topic_defaults.dedup;
    if let Some(n) = s_dedup_ids {
        dedup.max_ids = n;
    }
    if let Some(secs) = s_dedup_window {
        if secs == 0 {
            eprintln!(
                "error: [server] dedup_window_secs must be at least 1 (dedup_ids = 0 turns dedup off)"
            );
            return Ok(ExitCode::from(2));
        }
        dedup.max_age = Duration::from_secs(secs);
    }
    let rates = [
        options.rate_limit.requests_per_sec,
        options.rate_limit.events_per_sec,
    ];
    if rates.iter().flatten().any(|r| !(r.is_finite() && *r > 0.0)) {
        eprintln!("error: [server] rate_limit_rps and rate_limit_events_per_sec must be above 0");
        return Ok(ExitCode::from(2));
    }
    if options.max_connections == 0 || options.idle_timeout.is_zero() {
        eprintln!("error: [server] max_connections and idle_timeout_secs must be at least 1");
        return Ok(ExitCode::from(2));
    }
    if options.cluster.lease_ttl < Duration::from_secs(1) {
        eprintln!("error: --lease-ttl must be at least 1 second");
        return Ok(ExitCode::from(2));
    }
    if let Ok(token) = std::env::var("BATON_AUTH_TOKEN")
        && !token.is_empty()
    {
        options.auth_token = Some(token);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let mut options = options;
        // Agents given an A2A card's URL: their skills become capabilities.
        if let Err(e) =
            baton_engine::agent::discover(&mut options.agents, &options.engine.egress).await
        {
            say(&format!(
                "baton serve: warning: {e}; it is read again at the agent's first call, \
                 and its skills are not capabilities until a restart reads it"
            ));
        }
        let data_dir = options.data_dir.clone();
        let auth = options.auth_token.is_some() || options.tokens_path().exists();
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let events = options.events.clone().unwrap_or_else(|| "disk".into());
        let state = options.state.clone().unwrap_or_else(|| "embedded".into());
        let server = Server::build(options).await?;
        // Listening before the banner: a supervisor may signal as soon as it reads it.
        let signalled = shutdown_signal();
        eprintln!(
            "baton serve {}: listening on {scheme}://{} (data in {}, events {}, state {}{}{})",
            env!("CARGO_PKG_VERSION"),
            server.local_addr(),
            data_dir.display(),
            redact(&events),
            redact(&state),
            config_path
                .as_ref()
                .map_or_else(String::new, |p| format!(", config {}", p.display())),
            if auth { ", bearer auth on" } else { "" }
        );
        let cancel = CancellationToken::new();
        let signals = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                signalled.await;
                // Not `eprintln!`: it panics when stderr is gone (a closed pipe),
                // and this task must go on to stop the server.
                say("baton serve: shutting down");
                cancel.cancel();
            })
        };
        server.run(cancel).await?;
        signals.abort();
        say("baton serve: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// A line on stderr, if anyone still reads it.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A non-empty environment variable.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Listens for SIGINT and SIGTERM from the moment it is called (a signal that
/// arrives before the future is first polled is not lost); the future ends at
/// the first of them.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
