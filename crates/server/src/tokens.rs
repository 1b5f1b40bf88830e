//! API tokens with scopes: created, listed and revoked with `baton token`,
//! kept in a file (`tokens.json` in the data directory by default) as
//! SHA-256 hashes, and checked by the auth middleware.
//!
//! A token reads `baton_<id>_<secret>`: `id` (8 hex digits) names it in
//! listings and the audit trail; `secret` is 32 random bytes from the
//! operating system (64 hex digits). Only the hash of the whole token is
//! stored, so the file does not hold what a caller presents. SHA-256 is
//! enough here, where a password would need argon2: a 256-bit random secret
//! cannot be guessed, so nothing is gained by hashing it slowly, and every
//! request checks one.
//!
//! The server reads the file at start and again within a second of a change,
//! so a revoked token stops working without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// What a token may do. `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// List, read and plan workflows.
    #[serde(rename = "workflows:read")]
    WorkflowsRead,
    /// Create workflows.
    #[serde(rename = "workflows:write")]
    WorkflowsWrite,
    /// List and read runs, their instances and event streams.
    #[serde(rename = "runs:read")]
    RunsRead,
    /// Execute, pause, resume, cancel and rerun runs.
    #[serde(rename = "runs:write")]
    RunsWrite,
    /// Publish events.
    #[serde(rename = "events:publish")]
    EventsPublish,
    /// List topics, read them, poll and acknowledge as a consumer group.
    #[serde(rename = "events:consume")]
    EventsConsume,
    /// Serve `worker` agents: poll, heartbeat, report.
    #[serde(rename = "workers")]
    Workers,
    /// Scrape `/metrics` (when it needs a token).
    #[serde(rename = "metrics")]
    Metrics,
    /// Everything, the audit trail included.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope, in the order docs list them.
    pub const ALL: [Scope; 9] = [
        Scope::WorkflowsRead,
        Scope::WorkflowsWrite,
        Scope::RunsRead,
        Scope::RunsWrite,
        Scope::EventsPublish,
        Scope::EventsConsume,
        Scope::Workers,
        Scope::Metrics,
        Scope::Admin,
    ];

    /// Its name, as written in tokens and docs.
    pub fn name(self) -> &'static str {
        match self {
            Scope::WorkflowsRead => "workflows:read",
            Scope::WorkflowsWrite => "workflows:write",
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::EventsPublish => "events:publish",
            Scope::EventsConsume => "events:consume",
            Scope::Workers => "workers",
            Scope::Metrics => "metrics",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scope::ALL.iter().map(|s| s.name()).collect();
                format!("no scope `{s}`: one of {}", names.join(", "))
            })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A caller's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    /// Requests per second (every `/api` route).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_sec: Option<f64>,
    /// Events per second published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_sec: Option<f64>,
}

impl Rate {
    /// Whether it limits anything.
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_sec.is_none() && self.events_per_sec.is_none()
    }
}

/// A token as stored: everything but the secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TokenInfo {
    /// 8 hex digits, unique in the file.
    pub id: String,
    /// What it is for (free text).
    pub name: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// When it was created, Unix milliseconds.
    pub created_ms: u64,
    /// When it stops working, Unix milliseconds (`None`: never).
    pub expires_ms: Option<u64>,
    /// SHA-256 of the whole token, hex.
    pub sha256: String,
    /// Its own rate limits (the server's defaults where unset).
    #[serde(default, skip_serializing_if = "Rate::is_unlimited")]
    pub rate: Rate,
    /// The tenant it acts for: it sees and makes that tenant's workflows,
    /// runs, topics and workers only. Without one it acts across tenants.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl TokenInfo {
    /// Whether it has expired at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_ms.is_some_and(|at| now_ms >= at)
    }

    /// Whether it grants `scope` (`admin` grants every one).
    pub fn grants(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|&s| s == scope || s == Scope::Admin)
    }
}

/// The file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    tokens: Vec<TokenInfo>,
}

/// Why a token file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing it failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a token file.
    #[error("{path}: not a token file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A request the CLI passed on is wrong (no scope, an unknown id).
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Compares in time that depends only on the lengths, not on where bytes differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn sha256(token: &str) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref())
}

fn random<const N: usize>() -> Result<[u8; N], Error> {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Error::Invalid("the operating system gave no random bytes".into()))?;
    Ok(bytes)
}

/// Reads a token file; a missing one has no tokens.
pub fn read(path: &Path) -> Result<Vec<TokenInfo>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let file: File = serde_json::from_str(&text).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if file.version != 1 {
        return Err(Error::Format {
            path: path.to_path_buf(),
            message: format!("version {} (this build reads 1)", file.version),
        });
    }
    Ok(file.tokens)
}

/// Replaces the file whole (a temporary file, fsynced, renamed over it),
/// readable by its owner only.
fn write(path: &Path, tokens: Vec<TokenInfo>) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let text = serde_json::to_vec_pretty(&File { version: 1, tokens })
        .map_err(|e| Error::Invalid(e.to_string()))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(&text).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Creates a token: stored hashed, returned once (the only time it is
/// whole). `ttl` makes it expire; `tenant` confines it to a tenant.
pub fn create(
    path: &Path,
    name: &str,
    scopes: &[Scope],
    ttl: Option<Duration>,
    rate: Rate,
    tenant: Option<&str>,
) -> Result<(TokenInfo, String), Error> {
    if scopes.is_empty() {
        return Err(Error::Invalid(
            "a token needs at least one scope (`--scope runs:read`; `admin` for everything)".into(),
        ));
    }
    if let Some(tenant) = tenant {
        baton_model::check_tenant(tenant).map_err(Error::Invalid)?;
        if let Some(global) = scopes
            .iter()
            .find(|s| matches!(s, Scope::Admin | Scope::Metrics))
        {
            return Err(Error::Invalid(format!(
                "scope `{global}` spans every tenant: a token of tenant `{tenant}` cannot have it"
            )));
        }
    }
    let mut tokens = read(path)?;
    let id = loop {
        let id = hex(&random::<4>()?);
        if tokens.iter().all(|t| t.id != id) {
            break id;
        }
    };
    let token = format!("baton_{id}_{}", hex(&random::<32>()?));
    let created_ms = crate::catalog::now_ms();
    let mut unique: Vec<Scope> = Vec::new();
    for scope in scopes {
        if !unique.contains(scope) {
            unique.push(*scope);
        }
    }
    let info = TokenInfo {
        id,
        name: name.to_string(),
        scopes: unique,
        created_ms,
        expires_ms: ttl
            .map(|t| created_ms.saturating_add(u64::try_from(t.as_millis()).unwrap_or(u64::MAX))),
        sha256: sha256(&token),
        rate,
        tenant: tenant.map(str::to_string),
    };
    tokens.push(info.clone());
    write(path, tokens)?;
    Ok((info, token))
}

/// Revokes the token `id`: it is removed from the file.
pub fn revoke(path: &Path, id: &str) -> Result<TokenInfo, Error> {
    let mut tokens = read(path)?;
    let Some(at) = tokens.iter().position(|t| t.id == id) else {
        return Err(Error::Invalid(format!(
            "no token `{id}` in {} (`baton token list` shows them)",
            path.display()
        )));
    };
    let gone = tokens.remove(at);
    write(path, tokens)?;
    Ok(gone)
}

/// Who made a request: the admin token of `[server] auth_token`, a token of
/// the file, or nobody (a server without auth).
#[derive(Debug, Clone)]
pub enum Caller {
    /// No auth configured.
    Anonymous,
    /// `[server] auth_token`.
    Admin,
    /// A token of the file, by id.
    Token(Arc<TokenInfo>),
}

impl Caller {
    /// Whether it may do everything (an open server's anonymous caller may).
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::Anonymous | Caller::Admin => true,
            Caller::Token(t) => t.grants(Scope::Admin),
        }
    }

    /// The tenant it acts for; `None` acts across tenants (the admin token,
    /// an open server's caller, a token made without `--tenant`).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            Caller::Anonymous | Caller::Admin => None,
            Caller::Token(t) => t.tenant.as_deref(),
        }
    }

    /// How the audit trail names it.
    pub fn id(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Admin => "admin",
            Caller::Token(t) => &t.id,
        }
    }
}

/// Why a request was refused.
#[derive(Debug)]
pub enum Refusal {
    /// No token, a wrong, revoked or expired one: 401.
    Unauthenticated,
    /// A valid token without the route's scope: 403 (the caller is for the
    /// audit trail).
    Scope(Scope, Caller),
}

/// The tokens a server checks: the admin token and the file's, reloaded
/// when the file changes.
pub struct Tokens {
    admin: Option<String>,
    path: Option<PathBuf>,
    by_id: RwLock<HashMap<String, Arc<TokenInfo>>>,
    /// The file's modification time and length when last read.
    seen: std::sync::Mutex<Option<(SystemTime, u64)>>,
    /// Whether the file existed when last read (not a `stat` per request).
    file_exists: std::sync::atomic::AtomicBool,
}

impl Tokens {
    /// Loads `path` (if any); fails on a file that is not a token file.
    pub fn open(admin: Option<String>, path: Option<PathBuf>) -> Result<Tokens, Error> {
        let tokens = Tokens {
            admin,
            path,
            by_id: RwLock::new(HashMap::new()),
            seen: std::sync::Mutex::new(None),
            file_exists: std::sync::atomic::AtomicBool::new(false),
        };
        tokens.reload()?;
        Ok(tokens)
    }

    /// Whether requests need a token: an admin token is set, or a token
    /// file exists (once tokens are in use, the API stays closed even when
    /// the last one is revoked).
    pub fn required(&self) -> bool {
        self.admin.is_some() || self.file_exists.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Reads the file again if it changed since the last read.
    pub fn reload(&self) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let stamp = std::fs::metadata(path)
            .ok()
            .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()));
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if *seen == stamp && stamp.is_some() {
            return Ok(());
        }
        if stamp.is_some() {
            // Once it existed, the API stays closed (see `required`).
            self.file_exists
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        let tokens = read(path)?;
        let map = tokens
            .into_iter()
            .map(|t| (t.id.clone(), Arc::new(t)))
            .collect();
        *self.by_id.write().unwrap_or_else(|e| e.into_inner()) = map;
        *seen = stamp;
        Ok(())
    }

    /// Who presents `given` (the bearer token, `None` when absent), if
    /// anyone may make a request that needs `scope`.
    pub fn check(&self, given: Option<&str>, scope: Scope) -> Result<Caller, Refusal> {
        if !self.required() {
            return Ok(Caller::Anonymous);
        }
        let given = given.ok_or(Refusal::Unauthenticated)?;
        if let Some(admin) = &self.admin
            && constant_time_eq(given.as_bytes(), admin.as_bytes())
        {
            return Ok(Caller::Admin);
        }
        let id = given
            .strip_prefix("baton_")
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .ok_or(Refusal::Unauthenticated)?;
        let token = self
            .by_id
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(id)
            .cloned()
            .ok_or(Refusal::Unauthenticated)?;
        if !constant_time_eq(sha256(given).as_bytes(), token.sha256.as_bytes())
            || token.expired(crate::catalog::now_ms())
        {
            return Err(Refusal::Unauthenticated);
        }
        if !token.grants(scope) {
            return Err(Refusal::Scope(scope, Caller::Token(token)));
        }
        Ok(Caller::Token(token))
    }

    /// Reloads the file each second until `stop`, logging a file that
    /// became unreadable (the tokens read last stay in force).
    pub async fn watch(self: Arc<Self>, stop: tokio_util::sync::CancellationToken) {
        let mut failing = false;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            match self.reload() {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    tracing::error!(error = %e, "the token file cannot be read; the tokens read last stay in force");
                }
                Err(_) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test's panic is its failure report")]

    use super::*;

    #[test]
    fn a_created_token_grants_its_scopes_and_only_those() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let (info, token) =
            create(&path, "ci", &[Scope::RunsRead], None, Rate::default(), None).unwrap();
        assert!(token.starts_with(&format!("baton_{}_", info.id)));
        assert_eq!(token.len(), "baton_".len() + 8 + 1 + 64);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&token[15..]), "the secret is not stored");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let tokens = Tokens::open(None, Some(path)).unwrap();
        assert!(tokens.required());
        let caller = tokens.check(Some(&token), Scope::RunsRead).unwrap();
        assert_eq!(caller.id(), info.id);
        assert!(matches!(
            tokens.check(Some(&token), Scope::RunsWrite).unwrap_err(),
            Refusal::Scope(Scope::RunsWrite, Caller::Token(t)) if t.id == info.id
        ));
        // One wrong character of the secret, a missing token, garbage.
        let mut wrong = token.clone();
        let last = if wrong.ends_with('0') { "1" } else { "0" };
        wrong.replace_range(wrong.len() - 1.., last);
        for given in [Some(wrong.as_str()), None, Some("baton_"), Some("x")] {
            assert!(
                matches!(
                    tokens.check(given, Scope::RunsRead),
                    Err(Refusal::Unauthenticated)
                ),
                "{given:?}"
            );
        }
    }

    #[test]
    fn admin_grants_everything_and_the_admin_token_still_works() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let (_, token) =
            create(&path, "ops", &[Scope::Admin], None, Rate::default(), None).unwrap();
        let tokens = Tokens::open(Some("the-admin-token".into()), Some(path)).unwrap();
        for scope in Scope::ALL {
            assert!(tokens.check(Some(&token), scope).is_ok());
            assert!(matches!(
                tokens.check(Some("the-admin-token"), scope),
                Ok(Caller::Admin)
            ));
        }
    }

    #[test]
    fn revoked_and_expired_tokens_stop_working_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.json");
        let (info, token) =
            create(&path, "a", &[Scope::Workers], None, Rate::default(), None).unwrap();
        let (_, short) = create(
            &path,
            "b",
            &[Scope::Workers],
            Some(Duration::ZERO),
            Rate::default(),
            None,
        )
        .unwrap();
        let tokens = Tokens::open(None, Some(path.clone())).unwrap();
        assert!(tokens.check(Some(&token), Scope::Workers).is_ok());
        assert!(
            matches!(
                tokens.check(Some(&short), Scope::Workers),
                Err(Refusal::Unauthenticated)
            ),
            "expired"
        );
        assert_eq!(revoke(&path, &info.id).unwrap().id, info.id);
        tokens.reload().unwrap();
        assert!(matches!(
            tokens.check(Some(&token), Scope::Workers),
            Err(Refusal::Unauthenticated)
        ));
        // The last token gone, the API stays closed.
        assert!(tokens.required());
        assert!(matches!(revoke(&path, "nope"), Err(Error::Invalid(_))));
    }

    #[test]
    fn without_tokens_anyone_may_and_a_bad_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::open(None, Some(dir.path().join("none.json"))).unwrap();
        assert!(!tokens.required());
        assert!(matches!(
            tokens.check(None, Scope::Admin),
            Ok(Caller::Anonymous)
        ));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{\"version\": 1, \"tokens\": [{\"id\": 1}]}").unwrap();
        assert!(matches!(
            Tokens::open(None, Some(bad)),
            Err(Error::Format { .. })
        ));
        assert!(matches!(
            create(
                &dir.path().join("t.json"),
                "x",
                &[],
                None,
                Rate::default(),
                None
            ),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn scopes_read_as_they_are_written() {
        for scope in Scope::ALL {
            assert_eq!(scope.name().parse::<Scope>().unwrap(), scope);
            assert_eq!(
                serde_json::to_value(scope).unwrap(),
                serde_json::json!(scope.name())
            );
        }
        assert!(
            "runs:delete"
                .parse::<Scope>()
                .unwrap_err()
                .contains("runs:read")
        );
    }
}
