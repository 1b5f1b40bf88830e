//! `baton load`: drives a Baton server's HTTP API with Locust-style users
//! (`baton-load`), prints a per-endpoint table, writes JSON/CSV/HTML reports
//! and checks thresholds. Exit codes: 0 (every threshold held), 1 (a
//! threshold missed), 2 (usage: no bound, bad flags, no server).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use baton_load::{Options, Scenario, Threshold, report, spawn};

/// Flags of `baton load`.
#[derive(clap::Args)]
pub struct Args {
    /// The server's base URL, e.g. http://127.0.0.1:8080; several, comma-separated
    /// (instances sharing a state store), get the users in turn.
    #[arg(long, value_name = "URL", conflicts_with = "spawn_server")]
    target: Option<String>,
    /// Start `baton serve` on an ephemeral loopback port with a temporary data
    /// directory for this run, and stop it at the end.
    #[arg(long)]
    spawn_server: bool,
    /// orchestration | high-throughput | mixed | health | a TOML scenario file.
    #[arg(long, default_value = "orchestration", value_name = "NAME|FILE")]
    scenario: String,
    /// Simulated users.
    #[arg(long, short = 'u', default_value_t = 1)]
    users: usize,
    /// Users started per second [default: all at once].
    #[arg(long, short = 'r', value_name = "R")]
    spawn_rate: Option<f64>,
    /// Stop after this long: 30s, 5m, 1h30m, 500ms.
    #[arg(long, short = 't', value_name = "DURATION", value_parser = parse_duration)]
    run_time: Option<Duration>,
    /// Stop after this many task iterations (all users together).
    #[arg(long, short = 'i', value_name = "N")]
    iterations: Option<u64>,
    /// Open loop: start R task iterations per second whatever the server does
    /// (latency counted from each scheduled start); users bound the concurrency.
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Task weights, e.g. create=3,execute=2,status=5,list=1,publish=0.
    #[arg(long, value_name = "TASK=W,...")]
    weights: Option<String>,
    /// Tasks per generated workflow.
    #[arg(long, value_name = "N")]
    tasks: Option<usize>,
    /// Shape of generated workflows: chain, fanout, layered, random, diamond, dense.
    #[arg(long)]
    shape: Option<String>,
    /// Events per publish: 1000, or a range 1000..10000 (uniform per request).
    #[arg(long, value_name = "N|MIN..MAX")]
    batch: Option<String>,
    /// Bytes of each event's payload.
    #[arg(long, value_name = "BYTES")]
    payload_bytes: Option<usize>,
    /// Bearer token for a server with auth on [env: BATON_AUTH_TOKEN].
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
    /// Seed of every random choice and payload.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// A request with no whole response after this long fails as `timeout`.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// How often `execute` polls its run's status until the run ends; 0 (the
    /// default): each status request waits on the server for the run's end
    /// (`GET /api/v1/executions/{id}?wait_ms=`), so the end is seen at once.
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    poll_interval: Duration,
    /// `execute` only starts runs (measures how fast executions are accepted)
    /// instead of following each to its end.
    #[arg(long)]
    no_follow: bool,
    /// A user's pause between tasks: 0, 1s, or 500ms..2s (uniform).
    #[arg(long, default_value = "0", value_name = "D|MIN..MAX")]
    wait: String,
    /// Pass/fail criterion, e.g. 'http_req_p99<100ms', 'events_rate>100k',
    /// 'failure_rate<0.1%', 'http_req_p99{POST /api/v1/events}<250ms' (repeatable).
    #[arg(long = "threshold", value_name = "EXPR")]
    thresholds: Vec<String>,
    /// Write the report as JSON; `-` for stdout (the table then goes to
    /// stderr).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write Locust-compatible PREFIX_stats.csv, PREFIX_stats_history.csv, PREFIX_failures.csv.
    #[arg(long, value_name = "PREFIX")]
    csv: Option<String>,
    /// Write a self-contained HTML report (inline SVG charts, no network).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
}

/// `30s`, `5m`, `1h30m`, `250ms`, `1.5s`, `30d`; a bare number is seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration: e.g. 30s, 5m, 1h30m, 250ms");
    let t = s.trim();
    if let Ok(secs) = t.parse::<f64>() {
        return (secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs))
            .ok_or_else(bad);
    }
    let mut total = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += value
            * match &rest[..u] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                _ => return Err(bad()),
            };
        rest = &rest[u..];
    }
    Ok(Duration::from_secs_f64(total))
}

fn parse_wait(s: &str) -> Result<(Duration, Duration), String> {
    match s.split_once("..") {
        Some((a, b)) => {
            let (a, b) = (parse_duration(a)?, parse_duration(b)?);
            if a > b {
                return Err(format!("--wait {s}: the start is above the end"));
            }
            Ok((a, b))
        }
        None => {
            let d = parse_duration(s)?;
            Ok((d, d))
        }
    }
}

const EXIT_MISSED: u8 = 1;
const EXIT_USAGE: u8 = 2;

/// The threshold a run gets when none is about failures: none at all.
const DEFAULT_FAILURES: &str = "failure_rate==0%";

/// Whether `target` (`http[s]://host:port`) answers `GET /healthz` with
/// 200 within 5 s.
async fn answers(target: &str) -> Result<(), String> {
    let t = baton_load::Target::parse(target)?;
    let mut conn = baton_load::client::Conn::new(&t, Duration::from_secs(5));
    match conn
        .send(http::Method::GET, "/healthz", bytes::Bytes::new())
        .await
    {
        Ok((status, _)) if status == http::StatusCode::OK => Ok(()),
        Ok((status, _)) => Err(format!("it answered HTTP {}", status.as_u16())),
        Err(_) => Err(conn.last_error().unwrap_or("no answer").to_string()),
    }
}

fn usage(msg: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {msg}");
    Ok(ExitCode::from(EXIT_USAGE))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.run_time.is_none() && args.iterations.is_none() {
        return usage(baton_load::Error::Unbounded);
    }
    if args.target.is_none() && !args.spawn_server {
        return usage("give --target URL (a running `baton serve`) or --spawn-server");
    }
    let mut scenario = match Scenario::load(&args.scenario) {
        Ok(s) => s,
        Err(e) => return usage(e),
    };
    if let Some(w) = &args.weights
        && let Err(e) = scenario.set_weights(w)
    {
        return usage(e);
    }
    if let Some(t) = args.tasks {
        scenario.tasks = t;
    }
    if let Some(s) = &args.shape {
        match s.parse() {
            Ok(shape) => scenario.shape = shape,
            Err(e) => return usage(e),
        }
    }
    if let Some(b) = &args.batch {
        match b.parse() {
            Ok(batch) => scenario.batch = batch,
            Err(e) => return usage(format!("--batch {e}")),
        }
    }
    if let Some(p) = args.payload_bytes {
        scenario.payload_bytes = p;
    }
    if let Err(e) = scenario.check() {
        return usage(e);
    }
    let wait = match parse_wait(&args.wait) {
        Ok(w) => w,
        Err(e) => return usage(e),
    };
    let mut thresholds = Vec::new();
    for t in &args.thresholds {
        match t.parse::<Threshold>() {
            Ok(t) => thresholds.push(t),
            Err(e) => return usage(e),
        }
    }
    // As Locust: a run with failures exits 1, unless the user says how many
    // are fine.
    if !thresholds.iter().any(|t| t.metric == "failure_rate") {
        match DEFAULT_FAILURES.parse::<Threshold>() {
            Ok(t) => thresholds.push(t),
            Err(e) => return usage(e),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let server = if args.spawn_server {
            let exe = std::env::current_exe().context("finding the baton executable")?;
            match spawn::Server::start(&exe).await {
                Ok(s) => Some(s),
                Err(e) => return usage(e),
            }
        } else {
            None
        };
        let target = match (&server, &args.target) {
            (Some(s), _) => s.url.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => unreachable!("checked above"),
        };
        // A target that does not answer is a usage error, found before any
        // load (it used to count every refused connection as a failed request).
        if server.is_none() {
            for t in target.split(',').map(str::trim) {
                if let Err(why) = answers(t).await {
                    eprintln!(
                        "error: the target {t} does not answer GET /healthz ({why}): is `baton serve` running there?"
                    );
                    return Ok(ExitCode::from(EXIT_USAGE));
                }
            }
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let loopback = target
            .split(',')
            .all(|t| baton_load::Target::parse(t.trim()).is_ok_and(|t| t.loopback));
        if loopback {
            eprintln!(
                "warning: the target {target} is on this machine: the load generator and the server share its {cores} cores, so the figures are lower bounds of what the server does alone"
            );
        }
        let options = Options {
            target,
            scenario,
            users: args.users,
            spawn_rate: args.spawn_rate.unwrap_or(0.0),
            run_time: args.run_time,
            iterations: args.iterations,
            rate: args.rate,
            seed: args.seed,
            timeout: args.timeout,
            poll_interval: args.poll_interval,
            follow_runs: !args.no_follow,
            wait,
            server_pid: server.as_ref().map(|s| s.pid()),
            server_dir: server.as_ref().and_then(|s| s.data_dir()),
            token: args
                .token
                .clone()
                .or_else(|| std::env::var("BATON_AUTH_TOKEN").ok().filter(|t| !t.is_empty())),
        };
        let tty = std::io::stderr().is_terminal();
        let result = baton_load::run(options, |p| {
            if tty {
                let l = &p.last;
                eprint!(
                    "\r\x1b[2K[{:>6.1}s] users {}/{}  reqs {} ({:.0}/s)  fails {}  p50 {:.2} ms  p99 {:.2} ms{}",
                    p.elapsed,
                    p.users,
                    p.target_users,
                    p.requests,
                    l.requests_per_s,
                    p.failures,
                    l.latency.p50_ms,
                    l.latency.p99_ms,
                    if l.events_per_s > 0.0 {
                        format!("  {:.0} events/s", l.events_per_s)
                    } else {
                        String::new()
                    }
                );
                let _ = std::io::stderr().flush();
            }
        })
        .await;
        if tty {
            eprint!("\r\x1b[2K");
        }
        if let Some(s) = server {
            let stopping = std::time::Instant::now();
            let exited = tokio::task::spawn_blocking(move || s.stop(Duration::from_secs(10)))
                .await
                .ok()
                .flatten();
            let total = stopping.elapsed().as_secs_f64();
            match exited {
                Some(exit) => eprintln!(
                    "the spawned `baton serve` stopped in {:.1} s (its temporary data directory removed in {:.1} s more)",
                    exit.as_secs_f64(),
                    total - exit.as_secs_f64()
                ),
                None => eprintln!(
                    "warning: the spawned `baton serve` did not exit cleanly within 10 s after SIGTERM (killed)"
                ),
            }
        }
        let mut report = match result {
            Ok(r) => r,
            Err(e) => return usage(e),
        };
        report.thresholds = thresholds.iter().map(|t| t.check(&report)).collect();
        for c in report::caveats(&report) {
            eprintln!("warning: {c}");
        }
        // With `--json -` stdout is the JSON report alone.
        let json_out = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
        if json_out {
            eprint!("{}", report::table(&report));
        } else {
            print!("{}", report::table(&report));
        }
        if let Some(path) = &args.json {
            let text = serde_json::to_string_pretty(&report)?;
            if json_out {
                println!("{text}");
            } else {
                std::fs::write(path, text + "\n")
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        if let Some(prefix) = &args.csv {
            for (suffix, text) in [
                ("stats", report::stats_csv(&report)),
                ("stats_history", report::history_csv(&report)),
                ("failures", report::failures_csv(&report)),
            ] {
                let path = format!("{prefix}_{suffix}.csv");
                std::fs::write(&path, text).with_context(|| format!("writing {path}"))?;
            }
        }
        if let Some(path) = &args.html {
            std::fs::write(path, report::html(&report))
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(if report.passed() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_MISSED)
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("s").is_err());
        assert_eq!(
            parse_wait("1s..2s").unwrap(),
            (Duration::from_secs(1), Duration::from_secs(2))
        );
        assert!(parse_wait("2s..1s").is_err());
    }
}
