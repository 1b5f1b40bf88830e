//! `baton serve`: the HTTP API server on the embedded defaults (disk event log,
//! embedded state store) in a data directory. SIGINT/SIGTERM stop it gracefully:
//! stop accepting, end streams, flush and close the store and the log, exit 0.
//! Restarting on the same data directory resumes the runs left unfinished.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use baton_server::{Server, ServerOptions};
use tokio_util::sync::CancellationToken;

use crate::config;

/// Flags of `baton serve` (flags win over `baton.toml`, which wins over defaults).
#[derive(clap::Args)]
pub struct Args {
    /// Where to listen [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    bind: Option<SocketAddr>,
    /// Where workflows, runs and events are kept [default: ./baton-data].
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// `baton.toml`: `[server]` (bind, data_dir, auth_token, metrics_requires_auth,
    /// body_limit, max_batch_events, request_timeout_secs, long_poll_max_ms) and
    /// `[agents.NAME]`.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = match &args.config {
        None => config::Config::default(),
        Some(path) => match config::read(path)? {
            Ok(c) => c,
            Err(code) => return Ok(code),
        },
    };
    let defaults = ServerOptions::default();
    let s = config.server;
    let mut options = ServerOptions {
        bind: args.bind.or(s.bind).unwrap_or(defaults.bind),
        data_dir: args
            .data_dir
            .or(s.data_dir)
            .unwrap_or(defaults.data_dir.clone()),
        auth_token: s.auth_token,
        metrics_requires_auth: s.metrics_requires_auth.unwrap_or(false),
        body_limit: s.body_limit.unwrap_or(defaults.body_limit),
        max_batch_events: s.max_batch_events.unwrap_or(defaults.max_batch_events),
        request_timeout: s
            .request_timeout_secs
            .map_or(defaults.request_timeout, Duration::from_secs),
        long_poll_max: s
            .long_poll_max_ms
            .map_or(defaults.long_poll_max, Duration::from_millis),
        agents: config.agents,
        ..defaults
    };
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
        let data_dir = options.data_dir.clone();
        let auth = options.auth_token.is_some();
        let server = Server::build(options).await?;
        eprintln!(
            "baton serve: listening on http://{} (data in {}{})",
            server.local_addr(),
            data_dir.display(),
            if auth { ", bearer auth on" } else { "" }
        );
        let cancel = CancellationToken::new();
        let signals = {
            let cancel = cancel.clone();
            tokio::spawn(async move {
                wait_for_signal().await;
                eprintln!("baton serve: shutting down");
                cancel.cancel();
            })
        };
        server.run(cancel).await?;
        signals.abort();
        eprintln!("baton serve: stopped");
        Ok(ExitCode::SUCCESS)
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
