#![doc = include_str!("../README.md")]

mod bench_cmd;
mod config;
mod events_cmd;
mod follow;
mod gen_cmd;
mod load_cmd;
mod logging;
mod plan_cmd;
mod run_cmd;
mod runs_cmd;
mod serve_cmd;
mod token_cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Workflow orchestration for multi-agent systems, that proves its own speed.
#[derive(Parser)]
#[command(name = "baton", version = env!("BATON_VERSION_LONG"), about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// What the log on stderr shows: a level (error, warn, info, debug,
    /// trace, off) or directives (`warn,baton::access=info`). Without it:
    /// BATON_LOG, then RUST_LOG, then `info` for `serve` and `warn` for the
    /// rest.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
    /// How log lines are written: text, or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: logging::Format,
    /// Colors on stderr (diagnostics, the log): auto is on a terminal unless
    /// NO_COLOR is set.
    #[arg(long, global = true, value_enum, default_value_t)]
    color: logging::Color,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a workflow and compile it into a plan: stages, critical path, parallelism.
    Plan(plan_cmd::Args),
    /// Execute a workflow on its agents, with retries, compensation and resume.
    Run(run_cmd::Args),
    /// Serve the HTTP API: workflows, executions, events, workers, metrics.
    Serve(serve_cmd::Args),
    /// Look at a running server's runs: list, show, cancel, follow their events.
    Runs(runs_cmd::Args),
    /// The server's API tokens, with scopes: create, list, revoke.
    Token(token_cmd::Args),
    /// A running server's audit trail: who did what, when, with what outcome (admins).
    Audit(runs_cmd::AuditArgs),
    /// Generate synthetic workflows.
    Gen(gen_cmd::Args),
    /// Operate an event log on disk: publish, tail, groups, pending, dead letters.
    Events(events_cmd::EventsArgs),
    /// Measure Baton on this machine: suites, reports, baselines, targets.
    Bench(bench_cmd::Args),
    /// Load-test a Baton server over HTTP: Locust-style users, thresholds, reports.
    Load(load_cmd::Args),
    /// Print a shell completion script: `baton completions bash > /etc/bash_completion.d/baton`,
    /// `baton completions zsh > "${fpath[1]}/_baton"`, `baton completions fish > ~/.config/fish/completions/baton.fish`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// Exit code for usage and I/O errors.
const EXIT_USAGE: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    logging::set_color(cli.color);
    if let Err(err) = logging::install(cli.log_level.as_deref(), cli.log_format, default_level) {
        eprintln!("error: {err:#}");
        return ExitCode::from(EXIT_USAGE);
    }
    let result = match cli.command {
        Command::Plan(args) => plan_cmd::run(args),
        Command::Run(args) => run_cmd::run(args),
        Command::Serve(args) => serve_cmd::run(args),
        Command::Runs(args) => runs_cmd::run(args),
        Command::Token(args) => token_cmd::run(args),
        Command::Audit(args) => runs_cmd::audit(args),
        Command::Gen(args) => gen_cmd::run(args),
        Command::Events(args) => events_cmd::run(args),
        Command::Bench(args) => bench_cmd::run(args),
        Command::Load(args) => load_cmd::run(args),
        Command::Completions { shell } => {
            use clap::CommandFactory as _;
            clap_complete::generate(shell, &mut Cli::command(), "baton", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    };
    match result {
        Ok(code) => code,
        // `baton events tail | head`: a reader that stopped reading is not an error.
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(err) => {
            // Backends' errors may quote their URLs, passwords included.
            eprintln!("error: {}", config::redact(&format!("{err:#}")));
            ExitCode::from(EXIT_USAGE)
        }
    }
}
