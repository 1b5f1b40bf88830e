//! `baton run FILE`: execute a workflow locally, with a progress line and a
//! summary; `baton run --resume` continues the runs a stopped process left;
//! `baton run --rerun RUN --from TASK` runs a finished run again from a task,
//! reusing the outputs of the tasks that succeeded before it. Runs
//! are recorded in the embedded store under the data directory, or with
//! `--state postgres://…` (feature `postgres`) in a PostgreSQL schema.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use baton_engine::store::{Embedded, EmbeddedOptions, RunId, RunStatus, StateStore};
use baton_engine::{Engine, Handle, Options, Progress, Spec, Summary};
use baton_events::{DiskLog, DiskOptions, EventLog, MemoryLog};
use baton_model::{Agent, Limits};
use serde_json::Value;

use crate::config::redact;
use crate::plan_cmd::{self, Loaded};

/// Flags of `baton run`.
#[derive(clap::Args)]
pub struct Args {
    /// The workflow: YAML, JSON or WfFormat (not needed with `--resume` or `--rerun`).
    #[arg(required_unless_present_any = ["resume", "rerun"])]
    file: Option<PathBuf>,
    /// The run's input: JSON text, or `@FILE` to read it from a file.
    #[arg(long, value_name = "JSON")]
    input: Option<String>,
    /// Where runs are recorded (`state/`) and events kept (`events/`).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "baton-data",
        conflicts_with = "in_memory"
    )]
    data_dir: PathBuf,
    /// Run without durability (nothing is written): for demos and benchmarks.
    #[arg(long)]
    in_memory: bool,
    /// The state store: `embedded` (under the data directory) or
    /// `postgres://USER@HOST:PORT/DB` (builds with the `postgres` feature; events
    /// stay in the data directory) [default: embedded].
    #[arg(long, value_name = "URL", conflicts_with = "in_memory")]
    state: Option<String>,
    /// With `--state postgres://…`: the schema holding the state [default: baton].
    #[arg(long, value_name = "NAME", requires = "state")]
    namespace: Option<String>,
    /// With `--state postgres://…`: this process's instance name. A later
    /// `baton run` with the same name (`--resume`) takes over its unfinished runs
    /// at once, so two processes running together need different names
    /// [default: baton-run].
    #[arg(long, value_name = "NAME", requires = "state")]
    instance: Option<String>,
    /// Continue the runs left unfinished in the state store, and wait for them.
    #[arg(long, conflicts_with_all = ["in_memory", "input"])]
    resume: bool,
    /// Run this finished run again as a new run (same workflow and input),
    /// reusing the outputs of the tasks that succeeded except `--from` and
    /// every task downstream of it.
    #[arg(long, value_name = "RUN", requires = "from", conflicts_with_all = ["in_memory", "input", "resume", "file"])]
    rerun: Option<RunId>,
    /// With `--rerun`: the task to run again, with everything downstream of it.
    #[arg(long, value_name = "TASK", requires = "rerun")]
    from: Option<String>,
    /// Agent definitions (`[agents.NAME]` tables) that replace the workflow's.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Run the agents Baton cannot run as declared (a type it does not know, such
    /// as `research_agent`, or a `command` agent without its command) as this built-in.
    #[arg(long, value_name = "KIND")]
    stand_in: Option<StandIn>,
    /// Seed for jitter and simulated agents.
    #[arg(long, default_value_t = Options::default().seed)]
    seed: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Print what the calls report while they run on stderr, a line each:
    /// progress and partial output (streamed model text, an agent's
    /// `BATON_PROGRESS` lines), questions for a person, decisions.
    #[arg(long)]
    follow: bool,
    /// Largest workflow file accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_bytes)]
    max_size: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StandIn {
    Noop,
    Simulate,
}

/// Exit code of a run interrupted by Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let postgres = args.state.as_deref().filter(|s| *s != "embedded");
    if let Some(url) = postgres
        && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        eprintln!(
            "error: unknown state store `{}`: expected `embedded` or `postgres://USER@HOST:PORT/DB`",
            redact(url)
        );
        return Ok(ExitCode::from(2));
    }
    if (args.resume || args.rerun.is_some())
        && postgres.is_none()
        && !args.data_dir.join("state").exists()
    {
        if let Some(run) = args.rerun {
            eprintln!(
                "error: no run {run} in {}: it holds no runs",
                args.data_dir.display()
            );
            return Ok(ExitCode::from(1));
        }
        // Opening the store would create the directory: a mistyped `--data-dir`
        // should not leave an empty data directory behind.
        eprintln!("nothing to resume in {}", args.data_dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let spec = match &args.file {
        Some(file) if !args.resume && args.rerun.is_none() => match prepare(&args, file)? {
            Ok(spec) => Some(spec),
            Err(code) => return Ok(code),
        },
        _ => None,
    };
    let input = match &args.input {
        None => Value::Null,
        Some(text) => parse_input(text)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let options = Options {
            seed: args.seed,
            ..Options::default()
        };
        if args.in_memory {
            // One process, one run: the log lives as long as the run.
            let log = Arc::new(MemoryLog::new(Default::default())?);
            let none: Option<Arc<Embedded>> = None;
            execute(
                &args,
                options,
                log,
                none,
                |_| std::future::pending(),
                spec,
                input,
            )
            .await
        } else {
            let dir = &args.data_dir;
            if let Some(url) = postgres {
                return run_on_postgres(&args, url, options, spec, input).await;
            }
            let state = Embedded::open(&dir.join("state"), EmbeddedOptions::default())
                .with_context(|| format!("opening the state store in {}", dir.display()))?;
            let log = DiskLog::open(&dir.join("events"), DiskOptions::default())
                .await
                .with_context(|| format!("opening the event log in {}", dir.display()))?;
            execute(
                &args,
                options,
                Arc::new(log),
                Some(Arc::new(state)),
                |_| std::future::pending(),
                spec,
                input,
            )
            .await
        }
    })
}

/// `baton run` with its state in PostgreSQL: opens the store as instance
/// `--instance` (taking over the unfinished runs of the last process of that
/// name), renews the lease while the runs execute, and gives up if the lease or a
/// run is lost to another process.
#[cfg(feature = "postgres")]
async fn run_on_postgres(
    args: &Args,
    url: &str,
    options: Options,
    spec: Option<Arc<Spec>>,
    input: Value,
) -> anyhow::Result<ExitCode> {
    use baton_engine::cluster::{self, Member, OnLoss};
    use baton_engine::store::{Postgres, PostgresOptions};

    // The event log first: it locks the data directory, so a second process on
    // the same directory stops here instead of taking over the first one's runs.
    let dir = &args.data_dir;
    let log = DiskLog::open(&dir.join("events"), DiskOptions::default())
        .await
        .with_context(|| format!("opening the event log in {}", dir.display()))?;
    let store = Postgres::open(PostgresOptions {
        schema: args.namespace.clone().unwrap_or_else(|| "baton".into()),
        instance_name: args.instance.clone().unwrap_or_else(|| "baton-run".into()),
        ..PostgresOptions::new(url)
    })
    .await
    .with_context(|| format!("opening the state store {}", redact(url)))?;
    // `baton run`'s rules: its own runs only, and losing one (to a process with
    // the same --instance, say) ends this one.
    let member = Member::new(
        Arc::new(store),
        cluster::Options {
            on_loss: OnLoss::Stop,
            take_over: false,
            ..cluster::Options::default()
        },
    );
    let options = member.engine_options(options);
    let store = member.store().clone();
    let lease = |engine: Handle| async move {
        let lost = member.run(&engine, std::future::pending()).await;
        anyhow::Error::new(lost.expect_err("runs until lost"))
            .context("another process took over this one's runs (one with the same --instance?)")
    };
    execute(
        args,
        options,
        Arc::new(log),
        Some(store),
        lease,
        spec,
        input,
    )
    .await
}

#[cfg(not(feature = "postgres"))]
async fn run_on_postgres(
    _args: &Args,
    _url: &str,
    _options: Options,
    _spec: Option<Arc<Spec>>,
    _input: Value,
) -> anyhow::Result<ExitCode> {
    eprintln!(
        "error: this baton was built without PostgreSQL support; rebuild with `--features postgres` to use `--state postgres://…`"
    );
    Ok(ExitCode::from(2))
}

/// Where the runs are recorded, for messages.
fn state_place(args: &Args) -> String {
    match args.state.as_deref().filter(|s| *s != "embedded") {
        Some(url) => format!(
            "schema {} of {}",
            args.namespace.as_deref().unwrap_or("baton"),
            redact(url)
        ),
        None => args.data_dir.display().to_string(),
    }
}

/// The flags that point `baton run --resume` at the same state.
fn state_flags(args: &Args) -> String {
    let mut flags = format!("--data-dir {}", args.data_dir.display());
    if let Some(url) = args.state.as_deref() {
        flags.push_str(&format!(" --state {}", redact(url)));
    }
    if let Some(namespace) = &args.namespace {
        flags.push_str(&format!(" --namespace {namespace}"));
    }
    if let Some(instance) = &args.instance {
        flags.push_str(&format!(" --instance {instance}"));
    }
    flags
}

/// Reads the workflow files that tasks run as sub-workflows (`workflow: {file:
/// …}`, relative to the file that names them), at every depth, into the
/// workflow: the run then holds every child it may start.
fn resolve_files(
    wf: &mut baton_model::Workflow,
    file: &Path,
    limits: Limits,
) -> Result<(), String> {
    let canonical = |p: &Path| {
        p.canonicalize()
            .map_err(|e| format!("cannot read `{}`: {e}", p.display()))
    };
    let top = canonical(file)?;
    let dir = top.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut find = |sub: &baton_model::SubWorkflow, from: &PathBuf| match sub {
        baton_model::SubWorkflow::File(rel) => {
            let path = canonical(&from.join(rel))?;
            let source = baton_model::Source::read(&path, limits).map_err(|e| e.to_string())?;
            let checked = match baton_model::load(&source) {
                Ok(checked) => checked,
                Err(baton_model::Error::Invalid { report, .. }) => {
                    return Err(format!("`{rel}` is invalid:\n{}", source.render(&report)));
                }
                Err(e) => return Err(e.to_string()),
            };
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            Ok((path.display().to_string(), checked.workflow, dir))
        }
        other => Err(format!(
            "its {} comes from a server's catalog; `baton run` reads sub-workflows from files (`workflow: {{ file: team.yaml }}`)",
            other.describe()
        )),
    };
    baton_model::resolve_children(
        wf,
        &top.display().to_string(),
        &dir,
        baton_engine::MAX_DEPTH,
        &mut find,
    )
}

/// Loads and plans the workflow, applies `--config` and `--stand-in`, builds the spec.
fn prepare(args: &Args, file: &Path) -> anyhow::Result<Result<Arc<Spec>, ExitCode>> {
    let limits = Limits {
        max_bytes: args.max_size,
    };
    let Loaded {
        mut checked, plan, ..
    } = match plan_cmd::load(file, limits, &Default::default(), args.json)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(Err(code)),
    };
    if let Err(message) = resolve_files(&mut checked.workflow, file, limits) {
        eprintln!("error: {}: {message}", file.display());
        if args.json {
            println!(
                "{}",
                serde_json::json!({"valid": false, "message": message, "errors": []})
            );
        }
        return Ok(Err(ExitCode::from(1)));
    }
    if let Some(config) = &args.config {
        let agents = match read_config(config)? {
            Ok(agents) => agents,
            Err(code) => return Ok(Err(code)),
        };
        checked.workflow.override_agents(&agents);
    }
    if let Some(kind) = args.stand_in {
        let kind = match kind {
            StandIn::Noop => "noop",
            StandIn::Simulate => "simulate",
        };
        let options = baton_engine::agent::Options::default();
        for agent in &mut checked.workflow.agents {
            if let Err(e) = baton_engine::agent::runner(agent, None, &options) {
                eprintln!("note: {e}: it runs as `{kind}` (--stand-in)");
                *agent = Agent {
                    name: std::mem::take(&mut agent.name),
                    kind: kind.into(),
                    capabilities: std::mem::take(&mut agent.capabilities),
                    concurrency: agent.concurrency,
                    // A try, not a simulation of the estimates (`baton plan
                    // --schedule` gives those): each call takes 1–10 ms.
                    latency: Some(baton_model::Latency::Uniform {
                        min: std::time::Duration::from_millis(1),
                        max: std::time::Duration::from_millis(10),
                    }),
                    ..Agent::default()
                };
            }
        }
    }
    // Agents given an A2A card's URL: read it now, so that their skills are
    // capabilities tasks may require.
    if checked.workflow.agents.iter().any(|a| {
        a.kind == "http"
            && a.url
                .as_deref()
                .is_some_and(baton_engine::agent::is_card_url)
    }) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the runtime")?;
        let egress = Options::default().egress;
        if let Err(e) = runtime.block_on(baton_engine::agent::discover(
            &mut checked.workflow.agents,
            &egress,
        )) {
            eprintln!(
                "warning: {e}; it is read again at the agent's first call, and its skills are not capabilities"
            );
        }
    }
    match Spec::new(checked, Arc::new(plan), args.seed) {
        Ok(spec) => Ok(Ok(Arc::new(spec))),
        Err(e) => {
            let hint = match e {
                baton_engine::SpecError::Agent(baton_engine::agent::Error::UnknownKind {
                    ..
                }) => {
                    "\n  hint: give it a built-in type in a `--config` file ([agents.NAME] type = \"command\" ...), or pass `--stand-in simulate` to try the workflow without it"
                }
                _ => "",
            };
            eprintln!("error: {}: {e}{hint}", file.display());
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({"valid": false, "message": e.to_string(), "errors": []})
                );
            }
            Ok(Err(ExitCode::from(1)))
        }
    }
}

/// Reads the `[agents.NAME]` tables of a `baton.toml`.
fn read_config(path: &Path) -> anyhow::Result<Result<Vec<Agent>, ExitCode>> {
    Ok(crate::config::read(path)?.map(|c| c.agents))
}

fn parse_input(text: &str) -> anyhow::Result<Value> {
    let (text, origin) = match text.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading the input {path}"))?,
            path.to_string(),
        ),
        None => (text.to_string(), "--input".to_string()),
    };
    serde_json::from_str(&text).with_context(|| format!("{origin} is not valid JSON"))
}

/// Runs (or resumes) on the engine until every run ends, Ctrl-C, or `lost`
/// resolves (the state store says another process took over).
async fn execute<L: EventLog, S: StateStore, F: Future<Output = anyhow::Error>>(
    args: &Args,
    options: Options,
    log: Arc<L>,
    store: Option<Arc<S>>,
    lost: impl FnOnce(Handle) -> F,
    spec: Option<Arc<Spec>>,
    input: Value,
) -> anyhow::Result<ExitCode> {
    // A rerun needs the finished run: the engine learns it from the records.
    let records = match (&args.rerun, &store) {
        (Some(_), Some(store)) => Some(store.load()?),
        _ => None,
    };
    let topic = options.topic.clone();
    // What `--follow` reads starts here (a second early: clocks of the
    // log's appends and this process's may differ by a little).
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
        .saturating_sub(1_000);
    let (engine, handle) = Engine::build(options, log.clone(), store)?;
    // Taken before the engine runs: a resumed run may end before a question
    // sent to the running engine (`active`) is answered.
    let resumed = engine.resumed().to_vec();
    let engine = tokio::spawn(engine.run());
    let runs: Vec<RunId> = match spec {
        None if args.rerun.is_some() => {
            let (of, from) = (
                args.rerun.expect("checked"),
                args.from.as_deref().unwrap_or(""),
            );
            handle.remember(records.unwrap_or_default()).await?;
            match handle.rerun(of, from).await {
                Ok(run) => {
                    eprintln!("run {run}: a rerun of {of} from `{from}`");
                    vec![run]
                }
                Err(e) => {
                    let e = match e {
                        baton_engine::Error::UnknownRun(_) => {
                            format!("no finished run {of} in {}", state_place(args))
                        }
                        other => other.to_string(),
                    };
                    eprintln!("error: {e}");
                    handle.shutdown().await?;
                    let _ = engine.await;
                    return Ok(ExitCode::from(1));
                }
            }
        }
        Some(spec) => {
            if !resumed.is_empty() {
                eprintln!(
                    "note: {} unfinished run(s) in {} resumed alongside; `baton run --resume` waits for them",
                    resumed.len(),
                    state_place(args)
                );
            }
            vec![handle.submit(spec, input).await?]
        }
        None => {
            if resumed.is_empty() {
                eprintln!("nothing to resume in {}", state_place(args));
                handle.shutdown().await?;
                return Ok(ExitCode::SUCCESS);
            }
            eprintln!("resuming {} run(s)", resumed.len());
            resumed
        }
    };
    let progress = show_progress(handle.progress().clone());
    let (stop_following, followed) = if args.follow {
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let runs = runs.clone();
        let follower = tokio::spawn(async move {
            crate::follow::follow(log, topic, &runs, started_ms, stopped).await
        });
        (Some(stop), Some(follower))
    } else {
        (None, None)
    };
    let lost = lost(handle.clone());
    let waited = tokio::select! {
        all = wait_all(&handle, &runs) => Some(all?),
        _ = tokio::signal::ctrl_c() => None,
        e = lost => {
            if let Some(p) = progress {
                p.abort();
            }
            let _ = handle.shutdown().await;
            let _ = engine.await;
            return Err(e);
        }
    };
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[2K");
    }
    if let (Some(stop), Some(followed)) = (stop_following, followed) {
        let _ = stop.send(());
        let _ = followed.await;
    }
    handle.shutdown().await?;
    let _ = engine.await;
    let Some(summaries) = waited else {
        if args.in_memory {
            eprintln!("interrupted");
        } else {
            eprintln!(
                "interrupted: what was recorded is in {}; `baton run --resume {}` continues",
                state_place(args),
                state_flags(args)
            );
        }
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    };
    for s in &summaries {
        if args.json {
            println!("{}", serde_json::to_string(&**s)?);
        } else {
            print!("{}", text(s));
        }
    }
    let ok = summaries.iter().all(|s| s.status == RunStatus::Completed);
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

async fn wait_all(handle: &Handle, runs: &[RunId]) -> anyhow::Result<Vec<Arc<Summary>>> {
    let mut out = Vec::with_capacity(runs.len());
    for &run in runs {
        out.push(handle.wait(run).await?);
    }
    Ok(out)
}

/// A progress line on stderr (only on a terminal): done / running / failed, rate, ETA.
fn show_progress(p: Arc<Progress>) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    Some(tokio::spawn(async move {
        let started = Instant::now();
        let get = |c: &AtomicU64| Progress::get(c);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let (total, ok, failed, skipped, running) = (
                get(&p.total),
                get(&p.succeeded),
                get(&p.failed),
                get(&p.skipped),
                get(&p.running),
            );
            let done = ok + failed + skipped;
            let rate = done as f64 / started.elapsed().as_secs_f64().max(1e-9);
            let eta = if rate > 0.0 && total > done {
                format!("{:.1}s", (total - done) as f64 / rate)
            } else {
                "-".into()
            };
            // Instances are discovered as fan-outs and loops decide them.
            let (instances, instances_done) = (get(&p.instances), get(&p.instances_done));
            let dynamic = if instances > 0 {
                format!(" · {instances_done}/{instances} instances")
            } else {
                String::new()
            };
            eprint!(
                "\r\x1b[2K{done}/{total} done · {running} running · {failed} failed{dynamic} · {rate:.0} tasks/s · ETA {eta}"
            );
        }
    }))
}

fn text(s: &Summary) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let name = s
        .workflow
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "run {} {} in {}{name}",
        s.run,
        s.status,
        ms(s.makespan_ms)
    );
    if let Some(reason) = &s.reason {
        let _ = writeln!(out, "  reason        {reason}");
    }
    let t = &s.tasks;
    let _ = writeln!(
        out,
        "  tasks         {} succeeded, {} failed, {} skipped, {} cancelled, {} compensated",
        t.succeeded, t.failed, t.skipped, t.cancelled, t.compensated
    );
    let path = if s.critical_path.len() > 8 {
        format!(
            "{} → … ({} tasks) → {}",
            s.critical_path[..3].join(" → "),
            s.critical_path.len(),
            s.critical_path[s.critical_path.len() - 2..].join(" → ")
        )
    } else {
        s.critical_path.join(" → ")
    };
    let _ = writeln!(out, "  critical path {path}");
    let _ = writeln!(
        out,
        "                agent time {}, coordination {}",
        ms(s.critical_path_agent_ms),
        ms(s.coordination_overhead_ms)
    );
    let c = &s.coordination_overhead;
    let _ = writeln!(
        out,
        "  ready→dispatch p50 {} · p99 {} · max {} over {} tasks",
        us(c.p50_us),
        us(c.p99_us),
        us(c.max_us),
        c.count
    );
    let _ = writeln!(out, "  retries       {}", s.retries);
    if s.instances > 0 {
        let _ = writeln!(
            out,
            "  instances     {} (fan-out items, loop iterations, pattern turns)",
            s.instances
        );
    }
    if let Some(t) = s.tokens {
        let _ = writeln!(
            out,
            "  tokens        {} prompt, {} completion ({} in all)",
            t.prompt,
            t.completion,
            t.prompt + t.completion
        );
    }
    let _ = writeln!(out, "  compensations {}", s.compensations);
    for f in &s.compensation_failures {
        let _ = writeln!(out, "  ! {f}");
    }
    out
}

fn ms(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else {
        format!("{v:.2} ms")
    }
}

fn us(v: f64) -> String {
    if v >= 1000.0 {
        format!("{:.2} ms", v / 1000.0)
    } else {
        format!("{v:.1} µs")
    }
}
