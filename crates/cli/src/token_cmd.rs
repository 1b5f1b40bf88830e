//! `baton token create|list|revoke`: the API tokens of `baton serve`, with
//! scopes, in its token file (`DATA_DIR/tokens.json`, or `[server]
//! tokens_file`). A running server picks changes up within a second.
//!
//! Exit codes: 0; 1 when the token to revoke does not exist; 2 when the file
//! cannot be read or written or the flags are wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use baton_server::tokens::{self, Scope, TokenInfo};

/// Flags of `baton token`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// The server's data directory; the file is `tokens.json` in it
    /// [env: BATON_DATA_DIR] [default: baton-data].
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The token file itself (`[server] tokens_file`), instead of the one in
    /// the data directory.
    #[arg(long, global = true, value_name = "FILE", conflicts_with = "data_dir")]
    file: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Create a token and print it, once: it is stored hashed.
    Create {
        /// What it may do (repeat for several): workflows:read,
        /// workflows:write, runs:read, runs:write, events:publish,
        /// events:consume, workers, metrics, admin.
        #[arg(long = "scope", value_name = "SCOPE", required = true)]
        scopes: Vec<Scope>,
        /// What it is for, shown by `list`.
        #[arg(long, default_value = "")]
        name: String,
        /// Stops working after this long (`30d`, `12h`); never by default.
        #[arg(long, value_name = "DURATION", value_parser = crate::load_cmd::parse_duration)]
        expires: Option<std::time::Duration>,
        /// At most this many requests per second (429 beyond); the server's
        /// `rate_limit_rps` when unset.
        #[arg(long, value_name = "N", value_parser = positive)]
        rps: Option<f64>,
        /// At most this many events published per second; the server's
        /// `rate_limit_events_per_sec` when unset.
        #[arg(long, value_name = "N", value_parser = positive)]
        events_per_sec: Option<f64>,
        /// Confine it to a tenant: it sees and makes that tenant's
        /// workflows, runs, topics (`TENANT.*`) and workers only. Without
        /// it the token acts across tenants.
        #[arg(long, value_name = "TENANT")]
        tenant: Option<String>,
    },
    /// The tokens: id, name, scopes, creation and expiry (never the token).
    List,
    /// Revoke a token by its id: it stops working at once.
    Revoke {
        /// Its id (8 hex digits, as `list` shows it).
        id: String,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = args.file.unwrap_or_else(|| {
        args.data_dir
            .or_else(|| std::env::var_os("BATON_DATA_DIR").map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from("baton-data"))
            .join("tokens.json")
    });
    let fail = |e: tokens::Error| {
        eprintln!("error: {e}");
        Ok(ExitCode::from(match e {
            tokens::Error::Invalid(_) => 1,
            _ => 2,
        }))
    };
    match args.command {
        Command::Create {
            scopes,
            name,
            expires,
            rps,
            events_per_sec,
            tenant,
        } => {
            let rate = baton_server::tokens::Rate {
                requests_per_sec: rps,
                events_per_sec,
            };
            let (info, token) =
                match tokens::create(&path, &name, &scopes, expires, rate, tenant.as_deref()) {
                    Ok(created) => created,
                    Err(e) => return fail(e),
                };
            if args.json {
                let mut value = serde_json::to_value(&info)?;
                value["token"] = serde_json::Value::String(token);
                if let Some(object) = value.as_object_mut() {
                    object.remove("sha256");
                }
                println!("{value}");
            } else {
                println!("{token}");
                eprintln!(
                    "token {} created in {} ({}): it is shown this once; send it as \
                     `Authorization: Bearer <token>`",
                    info.id,
                    path.display(),
                    scope_list(&info)
                );
            }
        }
        Command::List => {
            let list = match tokens::read(&path) {
                Ok(list) => list,
                Err(e) => return fail(e),
            };
            if args.json {
                let items: Vec<serde_json::Value> = list
                    .iter()
                    .map(|t| {
                        serde_json::json!({"id": t.id, "name": t.name, "scopes": t.scopes,
                            "tenant": t.tenant, "created_ms": t.created_ms, "expires_ms": t.expires_ms})
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(items));
            } else if list.is_empty() {
                eprintln!("no tokens in {}", path.display());
            } else {
                println!(
                    "{:<8}  {:<20}  {:<13}  {:<13}  {:<12}  scopes",
                    "id", "name", "created", "expires", "tenant"
                );
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                for t in &list {
                    let expires = match t.expires_ms {
                        None => "never".to_string(),
                        Some(_) if t.expired(now) => "expired".to_string(),
                        Some(at) => at.to_string(),
                    };
                    println!(
                        "{:<8}  {:<20}  {:<13}  {:<13}  {:<12}  {}",
                        t.id,
                        t.name,
                        t.created_ms,
                        expires,
                        t.tenant.as_deref().unwrap_or("(all)"),
                        scope_list(t)
                    );
                }
            }
        }
        Command::Revoke { id } => match tokens::revoke(&path, &id) {
            Ok(gone) => eprintln!("token {} ({}) revoked", gone.id, scope_list(&gone)),
            Err(e) => return fail(e),
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// A rate: a number above zero.
fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if n > 0.0 && n.is_finite() => Ok(n),
        _ => Err(format!("`{s}` is not a rate: a number above 0")),
    }
}

fn scope_list(t: &TokenInfo) -> String {
    let scopes = t
        .scopes
        .iter()
        .map(|s| s.name())
        .collect::<Vec<_>>()
        .join(" ");
    match &t.tenant {
        Some(tenant) => format!("{scopes}; tenant {tenant}"),
        None => scopes,
    }
}
