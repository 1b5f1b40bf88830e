#![doc = include_str!("../README.md")]

pub mod audit;
mod body;
mod catalog;
#[cfg(feature = "postgres")]
mod cluster;
mod console;
mod error;
mod forward;
mod history;
pub mod limits;
mod listen;
mod metrics;
pub mod openapi;
mod redact;
mod request_id;
mod routes;
mod tls;
pub mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use baton_engine::store::{Embedded, EmbeddedOptions};
use baton_engine::{Engine, Handle};
use baton_events::{AnyLog, DiskOptions, OpenOptions};
use baton_model::Agent;
use tokio_util::sync::CancellationToken;

use crate::catalog::{Catalog, Executions};
pub use crate::error::ApiError;
use crate::metrics::Metrics;
pub use crate::redact::redact;
pub use crate::tls::TlsFiles;

/// How the server runs.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Where to listen.
    pub bind: SocketAddr,
    /// Holds `events/` (the disk log), `state/` (the engine's store),
    /// `workflows/` and `executions.jsonl`.
    pub data_dir: PathBuf,
    /// When set, every `/api` route needs `Authorization: Bearer <token>`.
    /// An empty one is refused at start.
    pub auth_token: Option<String>,
    /// The API tokens with scopes (`baton token create`): default
    /// `data_dir/tokens.json`. Once it exists, every `/api` route needs a
    /// token (its own or `auth_token`, the admin's).
    pub tokens_file: Option<PathBuf>,
    /// Serve HTTPS with this certificate and key (read again on SIGHUP).
    pub tls: Option<TlsFiles>,
    /// Rate limits of callers whose token sets none (and of everyone on a
    /// server without auth); the admin token is never limited.
    pub rate_limit: tokens::Rate,
    /// Tenants' quotas (`[tenants.NAME]`), by tenant.
    pub tenants: std::collections::BTreeMap<String, limits::Quota>,
    /// Which calls go to the audit trail (`baton.audit`).
    pub audit: audit::Level,
    /// How long the audit trail keeps a record.
    pub audit_retention: Duration,
    /// Serve without a token on an address other hosts can reach
    /// (`--insecure-no-auth`); without it such a server refuses to start.
    pub insecure_no_auth: bool,
    /// Whether `/metrics` needs the token too.
    pub metrics_requires_auth: bool,
    /// Whether every request is logged (target `baton::access`, level info):
    /// method, route template, status, latency and request id, never the
    /// token or a body.
    pub access_log: bool,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Most events in one `POST /api/v1/events`.
    pub max_batch_events: usize,
    /// Requests taking longer are answered 503 `timeout` (long polls and event
    /// streams excepted).
    pub request_timeout: Duration,
    /// Longest a long poll (`…/poll`) waits, whatever `wait_ms` asks for.
    pub long_poll_max: Duration,
    /// Most connections open at once; more wait in the kernel's backlog.
    pub max_connections: usize,
    /// A connection whose next request's headers have not all arrived this
    /// long after it became idle (or after they started) is closed.
    pub idle_timeout: Duration,
    /// Agent definitions (`[agents.NAME]` of `baton.toml`) that replace a
    /// workflow's agents of the same name when it runs.
    pub agents: Vec<Agent>,
    /// Which agents a posted workflow may define itself (besides using those
    /// of `agents`): by default none that runs a process or sends requests.
    pub workflow_agents: baton_engine::agent::Policy,
    /// The engine's options (seed, topics).
    pub engine: baton_engine::Options,
    /// The event log's options (fsync policy, limits; the limits and topic
    /// defaults apply to every backend).
    pub log: DiskOptions,
    /// Where events live: `None` or `disk` for the disk log under
    /// `data_dir/events`, `memory` (lost on exit), `redis://HOST:PORT` (Redis
    /// Streams) or `nats://HOST:PORT` (NATS JetStream), the last two in builds
    /// with the `redis` / `nats` features.
    pub events: Option<String>,
    /// Where run state lives: `None` for the embedded journal under
    /// `data_dir/state`, or `postgres://…` (builds with the `postgres` feature),
    /// which several instances can share.
    pub state: Option<String>,
    /// How this instance takes part when several share a `postgres` state store.
    pub cluster: ClusterOptions,
    /// How often the figures of `GET /api/v1/stats` are sampled (10 minutes
    /// of them are kept at the default 2 s).
    pub sample_interval: Duration,
    /// Names this deployment in shared servers: the PostgreSQL schema of the state
    /// store and the prefix of Redis keys and NATS streams, so that several
    /// deployments (or test runs) share one server without meeting.
    pub namespace: String,
}

/// How an instance shares a `postgres` state store with others.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// This instance's stable name: a restarted process with the same name takes
    /// its predecessor's runs over at once [default: the advertised address].
    pub instance: Option<String>,
    /// The base URL the other instances reach this one at, to forward calls about
    /// runs it drives [default: `http://` + the bound address].
    pub advertise: Option<String>,
    /// How long an instance that stopped renewing its lease keeps its runs.
    pub lease_ttl: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            instance: None,
            advertise: None,
            lease_ttl: Duration::from_secs(10),
        }
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("baton-data"),
            auth_token: None,
            tokens_file: None,
            tls: None,
            rate_limit: tokens::Rate::default(),
            tenants: Default::default(),
            audit: audit::Level::Control,
            audit_retention: Duration::from_secs(90 * 24 * 3600),
            insecure_no_auth: false,
            metrics_requires_auth: false,
            access_log: false,
            body_limit: 64 << 20,
            max_batch_events: 10_000,
            request_timeout: Duration::from_secs(30),
            long_poll_max: Duration::from_secs(60),
            max_connections: 512,
            idle_timeout: Duration::from_secs(75),
            agents: Vec::new(),
            workflow_agents: baton_engine::agent::Policy::default(),
            // `http` agents reach public addresses only; finished runs are
            // answered for after a restart.
            engine: baton_engine::Options {
                egress: baton_engine::agent::Egress::Public {
                    private_hosts: Vec::new(),
                },
                remember_finished: true,
                ..baton_engine::Options::default()
            },
            log: DiskOptions::default(),
            events: None,
            state: None,
            cluster: ClusterOptions::default(),
            sample_interval: Duration::from_secs(2),
            namespace: "baton".into(),
        }
    }
}

/// Why the server could not start or stopped with an error. The cause of each
/// variant is its [`source`](std::error::Error::source): print the chain (`{:#}`
/// with anyhow) to see it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The data directory could not be used.
    #[error("{what} in {dir}")]
    Data {
        /// What was being opened.
        what: &'static str,
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A backend (event log, state store) could not be opened.
    #[error("{what} ({url})")]
    Backend {
        /// What was being opened.
        what: &'static str,
        /// Its URL.
        url: String,
        /// Why.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An agent of the server's config cannot run here (an `http` agent at an
    /// address the egress policy refuses).
    #[error("agent `{name}` of the server's config cannot run")]
    Agent {
        /// The agent.
        name: String,
        /// Why.
        source: baton_engine::agent::Error,
    },
    /// The TLS certificate or key could not be used.
    #[error("loading the TLS certificate")]
    Tls(#[source] tls::Error),
    /// The token file could not be read.
    #[error("reading the API tokens")]
    Tokens(#[source] tokens::Error),
    /// The options leave the server open to anyone who can reach it.
    #[error("{0}")]
    Insecure(String),
    /// The address could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] baton_engine::Error),
    /// Serving failed.
    #[error("serving: {0}")]
    Serve(std::io::Error),
}

impl ServerOptions {
    /// Where the API tokens are: `tokens_file`, or `tokens.json` in the data
    /// directory.
    pub fn tokens_path(&self) -> PathBuf {
        self.tokens_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("tokens.json"))
    }
}

/// Reads the certificate and key again on each SIGHUP until `stop`.
async fn reload_on_sighup(tls: Arc<tls::Tls>, stop: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("SIGHUP cannot be watched: the TLS certificate is read at start only");
        return;
    };
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            got = hangups.recv() => if got.is_none() { return },
        }
        match tls.reload() {
            Ok(()) => tracing::info!("SIGHUP: the TLS certificate was read again"),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP: the TLS certificate did not load; the current one stays")
            }
        }
    }
}

/// Refuses an empty token (the API would look protected and be open), and
/// no token at all on an address other hosts can reach, unless the operator
/// says so (Redis's protected mode is the model).
fn check_auth(options: &ServerOptions) -> Result<(), Error> {
    match &options.auth_token {
        Some(token) if token.trim().is_empty() => Err(Error::Insecure(
            "the auth token is empty: set a real one (`[server] auth_token` or BATON_AUTH_TOKEN), \
             or leave it out"
                .into(),
        )),
        None if !options.bind.ip().is_loopback()
            && !options.insecure_no_auth
            && !options.tokens_path().exists() =>
        {
            Err(Error::Insecure(format!(
                "{} can be reached from other hosts and no auth token is set: set one \
                 (`[server] auth_token` or BATON_AUTH_TOKEN), bind a loopback address, or \
                 pass --insecure-no-auth to serve anyone who can reach it",
                options.bind
            )))
        }
        _ => Ok(()),
    }
}

/// What every handler shares.
pub struct AppState {
    pub(crate) engine: Handle,
    pub(crate) log: Arc<AnyLog>,
    /// Set when several instances share a `postgres` state store.
    #[cfg(feature = "postgres")]
    pub(crate) cluster: Option<Arc<cluster::Cluster>>,
    pub(crate) catalog: Catalog,
    pub(crate) executions: Executions,
    pub(crate) specs: baton_engine::SpecCache<(u64, String)>,
    pub(crate) metrics: Metrics,
    /// The figures of the last minutes (`GET /api/v1/stats`).
    pub(crate) history: history::History,
    /// The admin token and the token file's, reloaded as it changes.
    pub(crate) tokens: Arc<tokens::Tokens>,
    /// The audit trail's queue.
    pub(crate) audit: audit::Audit,
    /// Callers' rate limits.
    pub(crate) limits: limits::Limits,
    pub(crate) options: ServerOptions,
    /// Cancelled on shutdown: ends event streams and long polls.
    pub(crate) stopping: CancellationToken,
}

impl AppState {
    /// The tokens it checks (reloaded each second while serving).
    pub fn tokens(&self) -> &tokens::Tokens {
        &self.tokens
    }
}

/// A built server: bound, engine ready, not yet serving.
pub struct Server {
    state: Arc<AppState>,
    engine: Engine,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<tls::Tls>>,
}

/// The most specs built with per-execution options that are kept (the least
/// recently used goes first).
const SPEC_CACHE: usize = 1024;

impl Server {
    /// Opens the data directory (event log, state store, workflows), builds the
    /// engine (which resumes unfinished runs once running) and binds the address.
    pub async fn build(mut options: ServerOptions) -> Result<Server, Error> {
        check_auth(&options)?;
        let tls = match &options.tls {
            Some(files) => Some(Arc::new(tls::Tls::load(files.clone()).map_err(Error::Tls)?)),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(options.bind)
            .await
            .map_err(|source| Error::Bind {
                addr: options.bind,
                source,
            })?;
        if options.cluster.advertise.is_none()
            && let Ok(addr) = listener.local_addr()
        {
            let scheme = if tls.is_some() { "https" } else { "http" };
            options.cluster.advertise = Some(format!("{scheme}://{addr}"));
        }
        let (state, engine) = state(options).await?;
        Ok(Server {
            state,
            engine,
            listener,
            tls,
        })
    }

    /// The address it listens on (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.state.options.bind)
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `cancel`: then stops accepting, lets requests in flight end
    /// (event streams and long polls are ended), shuts the engine down (flushing
    /// and closing its store) and closes the event log.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        let Server {
            state,
            engine,
            listener,
            tls,
        } = self;
        if let Some(tls) = &tls {
            tokio::spawn(reload_on_sighup(tls.clone(), state.stopping.clone()));
        }
        let engine_task = tokio::spawn(engine.run());
        routes::arm_deadlines(&state);
        tokio::spawn(state.tokens.clone().watch(state.stopping.clone()));
        tokio::spawn(history::sample(state.clone()));
        #[cfg(feature = "postgres")]
        let cluster_task = state
            .cluster
            .clone()
            .map(|c| tokio::spawn(c.run(state.engine.clone(), state.stopping.clone())));
        let app = router(state.clone());
        // Event streams and long polls end when the server stops.
        let stopping = state.stopping.clone();
        let ended = cancel.clone();
        tokio::spawn(async move {
            ended.cancelled().await;
            stopping.cancel();
        });
        tracing::info!(addr = %listener.local_addr().map_err(Error::Serve)?, "serving");
        listen::serve(
            listener,
            app,
            tls,
            state.options.max_connections,
            state.options.idle_timeout,
            cancel,
        )
        .await;
        state.stopping.cancel();
        #[cfg(feature = "postgres")]
        if let Some(task) = cluster_task {
            let _ = task.await;
        }
        let stopped = state.engine.shutdown().await;
        state.audit.flush().await;
        let _ = engine_task.await;
        use baton_events::EventLog as _;
        if let Err(e) = state.log.close().await {
            tracing::warn!(error = %e, "closing the event log");
        }
        match stopped {
            Ok(()) | Err(baton_engine::Error::Stopped) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Builds the shared state on `options.data_dir` and the engine to spawn (for
/// tests that drive the [`router`] without a listener).
pub async fn state(mut options: ServerOptions) -> Result<(Arc<AppState>, Engine), Error> {
    // Resumed runs take the operator's agents (and their secrets) from here,
    // not from the stored documents.
    options.engine.operator_agents = options.agents.clone().into();
    let dir = options.data_dir.clone();
    let data = |what: &'static str| {
        let dir = dir.clone();
        move |e: Box<dyn std::error::Error + Send + Sync>| Error::Data {
            what,
            dir,
            source: e,
        }
    };
    if !valid_namespace(&options.namespace) {
        return Err(Error::Backend {
            what: "naming the deployment",
            url: options.namespace.clone(),
            source:
                "a namespace is 1 to 32 lowercase letters, digits and `_`, starting with a letter"
                    .into(),
        });
    }
    // An operator's `http` agent that egress refuses would fail every run that
    // uses it: refuse to start instead.
    let agents = options.engine.agents();
    for agent in options.agents.iter().filter(|a| a.kind == "http") {
        baton_engine::agent::runner(agent, None, &agents).map_err(|source| Error::Agent {
            name: agent.name.clone(),
            source,
        })?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| data("creating the data directory")(e.into()))?;
    let log = Arc::new(open_log(&options).await?);
    let catalog = Catalog::open(&dir.join("workflows"))
        .map_err(|e| data("reading the workflows")(e.into()))?;
    let executions = Executions::open(&dir.join("executions.jsonl"))
        .map_err(|e| data("reading executions.jsonl")(e.into()))?;
    let (engine, handle, cluster) = match options.state.as_deref() {
        None | Some("embedded") => {
            let store = Embedded::open(&dir.join("state"), EmbeddedOptions::default())
                .map_err(|e| data("opening the state store")(e.into()))?;
            let (engine, handle) =
                Engine::build(options.engine.clone(), log.clone(), Some(Arc::new(store)))?;
            (engine, handle, None)
        }
        Some(url) => open_shared_state(&options, url, log.clone()).await?,
    };
    #[cfg(not(feature = "postgres"))]
    let None::<std::convert::Infallible> = cluster;
    let tokens = Arc::new(
        tokens::Tokens::open(options.auth_token.clone(), Some(options.tokens_path()))
            .map_err(Error::Tokens)?,
    );
    let audit = audit::Audit::start(log.clone(), options.audit, options.audit_retention)
        .await
        .map_err(|e| Error::Data {
            what: "creating the audit trail's topic",
            dir: options.data_dir.clone(),
            source: Box::new(e),
        })?;
    let state = Arc::new(AppState {
        engine: handle,
        log,
        #[cfg(feature = "postgres")]
        cluster,
        catalog,
        executions,
        specs: baton_engine::SpecCache::new(SPEC_CACHE),
        metrics: Metrics::default(),
        history: history::History::default(),
        tokens,
        audit,
        limits: limits::Limits::new(options.rate_limit, options.tenants.clone()),
        options,
        stopping: CancellationToken::new(),
    });
    Ok((state, engine))
}

/// Whether `name` can name a deployment ([`ServerOptions::namespace`]): usable as
/// a PostgreSQL schema and a Redis key prefix as it is, and as a NATS stream
/// prefix with `_` written `-` (1 to 32 characters: lowercase letters, digits and
/// `_`, starting with a letter).
pub fn valid_namespace(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Opens the event log `options.events` names.
async fn open_log(options: &ServerOptions) -> Result<AnyLog, Error> {
    let url = options.events.as_deref().unwrap_or("disk");
    let open = OpenOptions {
        dir: Some(options.data_dir.join("events")),
        disk: options.log.clone(),
        namespace: options.namespace.clone(),
    };
    AnyLog::open(url, &open).await.map_err(|e| Error::Backend {
        what: "opening the event log",
        url: redact(url),
        source: e.into(),
    })
}

#[cfg(feature = "postgres")]
type SharedState = (Engine, Handle, Option<Arc<cluster::Cluster>>);
#[cfg(not(feature = "postgres"))]
type SharedState = (Engine, Handle, Option<std::convert::Infallible>);

/// Opens a shared state store and builds the engine on it, as one instance of
/// several.
#[cfg(feature = "postgres")]
async fn open_shared_state(
    options: &ServerOptions,
    url: &str,
    log: Arc<AnyLog>,
) -> Result<SharedState, Error> {
    use baton_engine::store::{Postgres, PostgresOptions};
    let failed = |what: &'static str| {
        move |e: Box<dyn std::error::Error + Send + Sync>| Error::Backend {
            what,
            url: redact(url),
            source: e,
        }
    };
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        return Err(failed("opening the state store")(
            format!("unknown state store `{url}`: expected `embedded` or `postgres://…`").into(),
        ));
    }
    let c = &options.cluster;
    let address = c.advertise.clone();
    let store = Postgres::open(PostgresOptions {
        schema: options.namespace.clone(),
        instance_name: c
            .instance
            .clone()
            .or_else(|| address.clone())
            .unwrap_or_else(|| options.bind.to_string()),
        address,
        lease_ttl: c.lease_ttl,
        ..PostgresOptions::new(url)
    })
    .await
    .map_err(|e| failed("opening the state store")(e.into()))?;
    let store = Arc::new(store);
    let cluster =
        cluster::Cluster::join(store.clone(), options.tls.as_ref()).map_err(Error::Tls)?;
    let engine_options = cluster.engine_options(options.engine.clone());
    let (engine, handle) = Engine::build(engine_options, log, Some(store))?;
    Ok((engine, handle, Some(Arc::new(cluster))))
}

#[cfg(not(feature = "postgres"))]
async fn open_shared_state(
    _options: &ServerOptions,
    url: &str,
    _log: Arc<AnyLog>,
) -> Result<SharedState, Error> {
    Err(Error::Backend {
        what: "opening the state store",
        url: redact(url),
        source: "this build has no `postgres` state store: build with `--features postgres`".into(),
    })
}

/// The application: every route, the error boundary, limits, auth and metrics.
pub fn router(state: Arc<AppState>) -> Router {
    routes::router(state)
}

#[cfg(test)]
mod tests {
    use super::valid_namespace;

    #[test]
    fn namespaces_are_plain_identifiers() {
        assert!(valid_namespace("baton"));
        assert!(valid_namespace("team_a2"));
        for bad in ["", "Baton", "2fast", "a-b", "a.b", "x; drop table runs"] {
            assert!(!valid_namespace(bad), "{bad}");
        }
    }
}
