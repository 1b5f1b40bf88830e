//! `baton bench`: runs a suite of `baton-bench`, prints the table, writes the
//! reports, evaluates targets and compares against a baseline.
//!
//! Exit codes: 0 all good; 1 a target missed (`--check`) or a regression
//! against the baseline; 2 usage or I/O error.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use baton_bench::{Config, Report, Suite, compare, report::write_file, targets};
use baton_model::generate::Shape;

/// Arguments of `baton bench`.
#[derive(clap::Args)]
#[command(after_help = "\
Suites: planning, cache, events, coordination, scaling, memory, http, all.
`baton bench compare A.json B.json` compares two saved reports (B against A).
Exit codes: 0 ok; 1 a target missed (--check) or a regression; 2 usage or I/O error.
See docs/performance.md.")]
pub struct Args {
    /// The suite to run (or `compare`).
    suite: String,
    /// For `compare`: the baseline report and the new one.
    files: Vec<PathBuf>,
    /// Small sizes and 3 repeats: every suite in under a minute (CI).
    #[arg(long)]
    quick: bool,
    /// Tiny sizes: checks that every path works, measures nothing useful (tests).
    #[arg(long, hide = true)]
    smoke: bool,
    /// Timed repeats per benchmark, after one warm-up (default 5; 3 with --quick).
    #[arg(long)]
    repeats: Option<usize>,
    /// Planning sizes, comma-separated (e.g. 1000,10000).
    #[arg(long, value_delimiter = ',')]
    sizes: Option<Vec<usize>>,
    /// Planning shapes, comma-separated (chain, fanout, layered, random, diamond, dense).
    #[arg(long, value_delimiter = ',')]
    shapes: Option<Vec<String>>,
    /// WfFormat trace files or folders of them, for `planning`.
    #[arg(long)]
    trace: Vec<PathBuf>,
    /// For `events`: one backend's scenarios (memory, disk, redis, nats); default memory
    /// and disk. `redis` needs a build with the `redis` feature and a server at
    /// BATON_BENCH_REDIS_URL (default redis://127.0.0.1:6379); `nats` a build with the
    /// `nats` feature and a server at BATON_BENCH_NATS_URL (default nats://127.0.0.1:4222).
    #[arg(long, value_name = "BACKEND", value_parser = ["memory", "disk", "redis", "nats"])]
    backend: Option<String>,
    /// Write the report as JSON (schema 1, see docs/performance.md); `-` for
    /// stdout (the tables then go to stderr).
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write one CSV row per benchmark.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write a self-contained HTML report with charts.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Write the results in the Prometheus text format (node_exporter textfile collector).
    #[arg(long, value_name = "FILE")]
    prometheus: Option<PathBuf>,
    /// Evaluate targets; exit 1 on any miss.
    #[arg(long)]
    check: bool,
    /// Targets file (TOML) instead of the seed's own targets.
    #[arg(long, value_name = "FILE")]
    targets: Option<PathBuf>,
    /// Save this run as a named baseline.
    #[arg(long, value_name = "NAME")]
    save_baseline: Option<String>,
    /// Compare this run against a named baseline; exit 1 on a regression.
    #[arg(long, value_name = "NAME")]
    baseline: Option<String>,
    /// Where baselines live.
    #[arg(long, value_name = "DIR", default_value = ".baton/baselines")]
    baseline_dir: PathBuf,
    /// A regression is worse by more than this percentage and than the measured noise.
    #[arg(long, value_name = "PCT", default_value_t = 10.0)]
    max_regression: f64,
    /// With `--baseline` or `--against`: measure the suites of the
    /// regressions found this many times again, and keep only those every
    /// run shows (0: trust the first run).
    #[arg(long, value_name = "N", default_value_t = 1)]
    confirm: u32,
    /// Compare against another build of baton, measured in interleaved
    /// rounds with this one (the order alternating), each round's change
    /// read within its pair; exit 1 on a regression.
    #[arg(long, value_name = "BATON", conflicts_with_all = ["baseline", "save_baseline"])]
    against: Option<PathBuf>,
    /// With `--against`: rounds (each measures both builds once).
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = clap::value_parser!(u32).range(3..=1000))]
    rounds: u32,
}

/// The flags a suite's run was given, to pass on to the processes of an
/// interleaved comparison.
fn sizing(args: &Args) -> Vec<String> {
    let mut pass = Vec::new();
    if args.smoke {
        pass.push("--smoke".to_string());
    } else if args.quick {
        pass.push("--quick".to_string());
    }
    if let Some(r) = args.repeats {
        pass.extend(["--repeats".to_string(), r.to_string()]);
    }
    let list = |v: &[String]| v.join(",");
    if let Some(sizes) = &args.sizes {
        let sizes: Vec<String> = sizes.iter().map(ToString::to_string).collect();
        pass.extend(["--sizes".to_string(), list(&sizes)]);
    }
    if let Some(shapes) = &args.shapes {
        pass.extend(["--shapes".to_string(), list(shapes)]);
    }
    for t in &args.trace {
        pass.extend(["--trace".to_string(), t.display().to_string()]);
    }
    if let Some(b) = &args.backend {
        pass.extend(["--backend".to_string(), b.clone()]);
    }
    pass
}

/// One run of `suite` by the baton at `bin`, in a process of its own.
/// `BATON_BENCH_SLOWDOWN` (a test hook of the build under test) is not
/// passed on to the other build.
fn measure(
    bin: &std::path::Path,
    suite: &str,
    pass: &[String],
    other: bool,
) -> anyhow::Result<Report> {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("bench")
        .arg(suite)
        .args(pass)
        .args(["--json", "-"])
        .stdin(std::process::Stdio::null());
    if other {
        cmd.env_remove("BATON_BENCH_SLOWDOWN");
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(5).collect();
        bail!(
            "`{} bench {suite}` failed ({}): {}",
            bin.display(),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let report: Report = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "`{} bench {suite} --json -` did not print a report",
            bin.display()
        )
    })?;
    if report.schema != baton_bench::report::SCHEMA {
        bail!(
            "{} writes bench reports of schema {}; this build reads {}",
            bin.display(),
            report.schema,
            baton_bench::report::SCHEMA
        );
    }
    Ok(report)
}

/// `rounds` interleaved runs of `suites` by this build and `other`: pairs
/// (other's report, this build's), this build first in even rounds.
fn interleaved(
    other: &std::path::Path,
    suites: &[String],
    pass: &[String],
    rounds: u32,
) -> anyhow::Result<Vec<(Report, Report)>> {
    let this = std::env::current_exe().context("finding this baton")?;
    let mut out = Vec::new();
    for round in 0..rounds {
        let mut pair: [Option<Report>; 2] = [None, None];
        let order = if round % 2 == 0 { [1, 0] } else { [0, 1] };
        for side in order {
            let mut merged: Option<Report> = None;
            for suite in suites {
                let r = if side == 1 {
                    measure(&this, suite, pass, false)?
                } else {
                    measure(other, suite, pass, true)?
                };
                match &mut merged {
                    None => merged = Some(r),
                    Some(m) => m.records.extend(r.records),
                }
            }
            pair[side] = merged;
        }
        eprintln!("round {} of {rounds} measured (both builds)", round + 1);
        if let [Some(o), Some(t)] = pair {
            out.push((o, t));
        }
    }
    Ok(out)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.suite == "compare" {
        let [a, b] = args.files.as_slice() else {
            bail!("usage: baton bench compare BASELINE.json NEW.json");
        };
        if args.csv.is_some() || args.prometheus.is_some() {
            bail!(
                "`compare` writes --json and --html; --csv and --prometheus are for a run's report"
            );
        }
        let (a, b) = (Report::load(a)?, Report::load(b)?);
        let c = compare::compare(&a, &b, args.max_regression);
        match args.json.as_deref() {
            Some(p) if p.as_os_str() == "-" => {
                println!("{}", serde_json::to_string_pretty(&c)?);
            }
            Some(p) => {
                write_file(p, &serde_json::to_string_pretty(&c)?)?;
                print!("{}", c.table());
            }
            None => print!("{}", c.table()),
        }
        if let Some(path) = &args.html {
            write_file(path, &baton_bench::html::render_comparison(&c, &a, &b))?;
        }
        return Ok(if c.regressed() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        });
    }
    if args.suite == "memory-probe" {
        // Internal: one fresh-process sample of the `memory` suite.
        let n = |i: usize| -> anyhow::Result<usize> {
            let f = args
                .files
                .get(i)
                .context("usage: baton bench memory-probe RUNS TASKS")?;
            f.to_string_lossy()
                .parse()
                .context("usage: baton bench memory-probe RUNS TASKS")
        };
        println!("{}", baton_bench::memory_probe(n(0)?, n(1)?)?);
        return Ok(ExitCode::SUCCESS);
    }
    if !args.files.is_empty() {
        bail!("unexpected arguments after the suite: {:?}", args.files);
    }
    let suite: Suite = args.suite.parse().map_err(anyhow::Error::msg)?;
    let mut config = if args.smoke {
        Config::smoke()
    } else if args.quick {
        Config::quick()
    } else {
        Config::default()
    };
    if let Some(r) = args.repeats {
        if r == 0 {
            bail!("--repeats must be at least 1");
        }
        config.repeats = r;
    }
    config.sizes = args.sizes.clone();
    config.shapes = args
        .shapes
        .as_ref()
        .map(|s| {
            s.iter()
                .map(|x| x.parse::<Shape>())
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()
        .map_err(anyhow::Error::msg)?;
    config.traces = args.trace.clone();
    if args.backend.is_some() && !matches!(suite, Suite::Events | Suite::All) {
        bail!("--backend applies to the events suite (or all) only");
    }
    config.events_backend = args.backend.clone();
    config.baton = std::env::current_exe().ok();
    // Read inputs before spending minutes measuring.
    let targets = match (&args.targets, args.check) {
        (Some(path), _) => targets::load(path)?,
        (None, true) => targets::seed(),
        (None, false) => Vec::new(),
    };
    let baseline = args
        .baseline
        .as_ref()
        .map(|name| {
            let path = args.baseline_dir.join(format!("{name}.json"));
            Report::load(&path).with_context(|| format!("baseline `{name}`"))
        })
        .transpose()?;

    // On a terminal each result shows while the suite runs and gives way to
    // the next (the table has them all); notes stay. Elsewhere (CI logs) every
    // line stays.
    let live = std::io::stderr().is_terminal() && std::io::stdout().is_terminal();
    // With `--against`, every figure comes from the interleaved rounds; this
    // build's first is the run's report.
    let rounds = match &args.against {
        Some(other) => {
            eprintln!(
                "measuring {} in {} interleaved rounds against {}",
                suite.name(),
                args.rounds,
                other.display()
            );
            interleaved(
                other,
                &[suite.name().to_string()],
                &sizing(&args),
                args.rounds,
            )?
        }
        None => Vec::new(),
    };
    let report = match rounds.first() {
        Some((_, this)) => this.clone(),
        None => baton_bench::run(suite, &config, &mut |line| {
            if !live {
                eprintln!("{line}");
            } else if line.starts_with("note ") {
                eprintln!("\r\x1b[2K{line}");
            } else {
                eprint!("\r\x1b[2K{line}");
            }
        })?,
    };
    if live {
        eprint!("\r\x1b[2K");
    }
    // With `--json -` stdout is the JSON report alone; what people read goes
    // to stderr.
    let json_out = args.json.as_deref().is_some_and(|p| p.as_os_str() == "-");
    let say = |text: &str| {
        if json_out {
            eprint!("{text}");
        } else {
            print!("{text}");
        }
    };
    say(&report.table());

    let mut failed = false;
    let outcomes = if args.check || args.targets.is_some() {
        let outcomes = targets::evaluate(&targets, &report);
        say("\n");
        for o in &outcomes {
            say(&format!("{}\n", o.message));
        }
        failed |= outcomes.iter().any(|o| o.met == Some(false));
        outcomes
    } else {
        Vec::new()
    };
    // Against a saved baseline, or another build measured in interleaved
    // rounds; either way a regression must show again when its suite is
    // measured again: a spike of the machine does not last through a rerun,
    // a slower build does.
    let mut comparison = match (&baseline, &args.against) {
        (Some(base), _) => Some(compare::compare(base, &report, args.max_regression)),
        (None, Some(_)) => Some(compare::compare_paired(&rounds, args.max_regression)),
        (None, None) => None,
    };
    if let Some(c) = &mut comparison {
        for round in 1..=args.confirm {
            if !c.regressed() {
                break;
            }
            let suites = c.regressed_suites();
            let n = c.changes.iter().filter(|x| x.regression).count();
            say(&format!(
                "\nconfirming {n} candidate regression{}: measuring {} again ({round} of {})\n",
                if n == 1 { "" } else { "s" },
                suites.join(", "),
                args.confirm
            ));
            let again = match (&baseline, &args.against) {
                (Some(base), _) => {
                    let mut rerun = Report {
                        records: Vec::new(),
                        ..report.clone()
                    };
                    for name in &suites {
                        let suite: Suite = name.parse().map_err(anyhow::Error::msg)?;
                        rerun
                            .records
                            .extend(baton_bench::run(suite, &config, &mut |_| {})?.records);
                    }
                    compare::compare(base, &rerun, args.max_regression)
                }
                (None, Some(other)) => {
                    let rounds = interleaved(other, &suites, &sizing(&args), args.rounds)?;
                    compare::compare_paired(&rounds, args.max_regression)
                }
                (None, None) => break,
            };
            c.confirm(&again);
        }
        say("\n");
        say(&c.table());
        failed |= c.regressed();
    }
    let mut report = report;
    if args.check || args.targets.is_some() || comparison.is_some() {
        let against = args.against.as_ref().map(|p| p.display().to_string());
        let verdict = baton_bench::report::Verdict {
            targets: outcomes.iter().map(targets::Outcome::verdict).collect(),
            baseline: comparison
                .as_ref()
                .zip(args.baseline.clone().or(against))
                .map(|(c, name)| c.verdict(&name)),
        };
        say(&format!("\n{}\n", verdict.headline()));
        report.verdict = Some(verdict);
    }
    if let Some(path) = &args.json {
        if json_out {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            report.save(path)?;
        }
    }
    if let Some(name) = &args.save_baseline {
        let path = args.baseline_dir.join(format!("{name}.json"));
        // The same name saved again keeps the medians of its last saves:
        // the gate measures the between-run noise from them.
        let previous = path.exists().then(|| Report::load(&path)).transpose();
        let previous = previous.with_context(|| format!("baseline `{name}`"))?;
        let runs = previous.as_ref().map_or(0, |p| {
            p.records
                .first()
                .map_or(1, |r| r.baseline_medians.len().max(1))
        });
        compare::as_baseline(report.clone(), previous.as_ref()).save(&path)?;
        eprintln!(
            "baseline `{name}` saved to {} ({} run{} kept for the between-run noise)",
            path.display(),
            (runs + 1).min(compare::HISTORY),
            if runs == 0 { "" } else { "s" }
        );
    }
    if let Some(path) = &args.csv {
        write_file(path, &report.csv())?;
    }
    if let Some(path) = &args.html {
        write_file(path, &baton_bench::html::render(&report))?;
    }
    if let Some(path) = &args.prometheus {
        let text = report.prometheus() + &baton_bench::targets::prometheus(&outcomes);
        write_file(path, &text)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
