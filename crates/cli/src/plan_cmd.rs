//! `baton plan FILE`: validate a workflow and print its plan.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use baton_model::{Checked, Diagnostic, Error, Limits, Report, Source};
use baton_plan::{Options, Plan, Reduction};
use serde::Serialize;
use serde_json::json;

/// Flags of `baton plan`.
#[derive(clap::Args)]
pub struct Args {
    /// The workflow: YAML, JSON or WfFormat; `-` reads standard input.
    file: PathBuf,
    /// text | json | dot | mermaid
    #[arg(long, default_value = "text")]
    format: OutFormat,
    /// Print every stage (text), or include `stages` (json).
    #[arg(long)]
    stages: bool,
    /// Include each task's schedule: stage, earliest and latest start, slack.
    #[arg(long)]
    schedule: bool,
    /// Look for redundant edges: off | auto (bounded work) | exact (unbounded).
    #[arg(long, default_value = "auto")]
    reduction: ReductionArg,
    /// Drop redundant edges from the plan (and from dot/mermaid drawings).
    #[arg(long)]
    remove_redundant: bool,
    /// Largest input accepted, in bytes.
    #[arg(long, default_value_t = Limits::default().max_bytes)]
    max_size: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum OutFormat {
    Text,
    Json,
    Dot,
    Mermaid,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReductionArg {
    Off,
    Auto,
    Exact,
}

/// Stages and lists longer than this are abbreviated in text output.
const SHOW: usize = 8;

/// A workflow read, validated and planned.
pub(crate) struct Loaded {
    pub source: Source,
    pub checked: Checked,
    pub plan: Plan,
    pub timings: baton_model::Timings,
    pub plan_time: Duration,
}

/// Reads, validates and plans a workflow; an invalid one is reported (on stderr,
/// and as JSON on stdout when `json`) and becomes exit code 1.
pub(crate) fn load(
    file: &std::path::Path,
    limits: Limits,
    options: &Options,
    json: bool,
) -> anyhow::Result<Result<Loaded, ExitCode>> {
    let source = match Source::read(file, limits) {
        Ok(s) => s,
        Err(e) if e.is_io() => return Err(e.into()),
        Err(e) => return Ok(Err(invalid(&e.to_string(), &[], json))),
    };
    let (checked, timings) = match baton_model::load_timed(&source) {
        Ok(loaded) => loaded,
        Err(Error::Invalid { report, .. }) => {
            return Ok(Err(invalid(
                &source.render_styled(&report, crate::logging::color()),
                &report.diagnostics,
                json,
            )));
        }
        Err(e) => return Ok(Err(invalid(&e.to_string(), &[], json))),
    };
    let started = Instant::now();
    let plan = match baton_plan::plan_checked(&checked, options) {
        Ok(plan) => plan,
        Err(diagnostic) => {
            let mut report = Report::default();
            report.push(diagnostic);
            source.locate(&mut report);
            return Ok(Err(invalid(
                &source.render_styled(&report, crate::logging::color()),
                &report.diagnostics,
                json,
            )));
        }
    };
    let plan_time = started.elapsed();
    if !checked.warnings.diagnostics.is_empty() {
        eprint!(
            "{}",
            source.render_styled(&checked.warnings, crate::logging::color())
        );
    }
    Ok(Ok(Loaded {
        source,
        checked,
        plan,
        timings,
        plan_time,
    }))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let limits = Limits {
        max_bytes: args.max_size,
    };
    let options = Options {
        reduction: match args.reduction {
            ReductionArg::Off => Reduction::Off,
            ReductionArg::Auto => Reduction::Auto,
            ReductionArg::Exact => Reduction::Unlimited,
        },
        remove_redundant: args.remove_redundant,
    };
    let json = matches!(args.format, OutFormat::Json);
    let Loaded {
        source,
        checked,
        plan,
        timings,
        plan_time,
    } = match load(&args.file, limits, &options, json)? {
        Ok(loaded) => loaded,
        Err(code) => return Ok(code),
    };
    let out = match args.format {
        OutFormat::Text => text(&checked, &plan, args.stages, args.schedule),
        OutFormat::Json => {
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let timings = Timings {
                parse: ms(timings.parse),
                validate: ms(timings.validate),
                plan: ms(plan_time),
            };
            json_contract(&checked, &plan, args.stages, args.schedule, timings)?
        }
        OutFormat::Dot => dot(&checked, &plan),
        OutFormat::Mermaid => mermaid(&plan),
    };
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    // The process is about to exit: freeing millions of task strings one by
    // one would only delay it. The OS takes the memory back at once.
    #[allow(clippy::mem_forget, reason = "nothing to release but memory, at exit")]
    std::mem::forget((checked, plan, source));
    Ok(ExitCode::SUCCESS)
}

/// Reports an invalid workflow: people read stderr; with `--format json`,
/// tools get the diagnostics on stdout too. Exit code 1.
pub(crate) fn invalid(rendered: &str, diagnostics: &[Diagnostic], json: bool) -> ExitCode {
    eprint!("{rendered}");
    if !rendered.ends_with('\n') {
        eprintln!();
    }
    if json {
        let first = without_colors(rendered.lines().next().unwrap_or(""));
        let body = json!({ "valid": false, "message": first, "errors": diagnostics });
        println!("{body}");
    }
    ExitCode::from(1)
}

/// A line without its ANSI color codes (`ESC [ … m`), for machine output.
fn without_colors(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // Skip to the end of the sequence.
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Serialize)]
struct Timings {
    parse: f64,
    validate: f64,
    plan: f64,
}

/// The documented JSON contract of `baton plan --format json`
/// (docs/workflow-language.md, "Plan output").
fn json_contract(
    checked: &Checked,
    plan: &Plan,
    stages: bool,
    schedule: bool,
    timings: Timings,
) -> anyhow::Result<String> {
    #[derive(Serialize)]
    struct Contract<'a> {
        valid: bool,
        name: Option<&'a str>,
        tasks: usize,
        edges: usize,
        stage_count: usize,
        stage_widths: Vec<u32>,
        max_width: u32,
        critical_path: CriticalPath<'a>,
        total_work: f64,
        parallelism: f64,
        redundant_edges: Vec<[&'a str; 2]>,
        redundancy: &'static str,
        compensation_tasks: Vec<&'a str>,
        warnings: &'a [Diagnostic],
        timings_ms: Timings,
        #[serde(skip_serializing_if = "Option::is_none")]
        bounds: Option<BoundsOut<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        stages: Option<Vec<Vec<&'a str>>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        schedule: Option<Vec<Scheduled<'a>>>,
    }
    #[derive(Serialize)]
    struct Scheduled<'a> {
        id: &'a str,
        stage: u32,
        earliest_start: f64,
        latest_start: f64,
        slack: f64,
    }
    #[derive(Serialize)]
    struct CriticalPath<'a> {
        length: f64,
        tasks: Vec<&'a str>,
    }
    #[derive(Serialize)]
    struct BoundsOut<'a> {
        tasks: u64,
        critical_path: CriticalPath<'a>,
        depth: u32,
        dynamic: Vec<Dynamic<'a>>,
        unresolved: usize,
    }
    #[derive(Serialize)]
    struct Dynamic<'a> {
        task: &'a str,
        kind: &'static str,
        instances: u64,
    }
    let summary = plan.summary();
    let bounds = baton_plan::bounds(&checked.workflow, plan);
    let names = |ids: &[u32]| ids.iter().map(|&t| plan.name(t)).collect::<Vec<_>>();
    let contract = Contract {
        valid: true,
        name: checked.workflow.name.as_deref(),
        tasks: summary.tasks,
        edges: summary.edges,
        stage_count: summary.stage_count,
        stage_widths: summary.stage_widths,
        max_width: summary.max_width,
        critical_path: CriticalPath {
            length: secs(summary.critical_path.length),
            tasks: names(summary.critical_path.tasks),
        },
        total_work: secs(summary.total_work),
        parallelism: summary.parallelism,
        redundant_edges: plan
            .redundancy()
            .edges()
            .iter()
            .map(|&(a, b)| [plan.name(a), plan.name(b)])
            .collect(),
        redundancy: summary.redundancy,
        compensation_tasks: names(plan.handlers()),
        warnings: &checked.warnings.diagnostics,
        timings_ms: timings,
        bounds: bounds.as_ref().map(|b| BoundsOut {
            tasks: b.tasks,
            critical_path: CriticalPath {
                length: secs(b.critical_length),
                tasks: names(&b.critical_path),
            },
            depth: b.depth,
            dynamic: b
                .dynamic
                .iter()
                .map(|d| Dynamic {
                    task: plan.name(d.task),
                    kind: d.kind,
                    instances: d.instances,
                })
                .collect(),
            unresolved: b.unresolved,
        }),
        stages: stages.then(|| plan.stages().map(names).collect()),
        schedule: schedule.then(|| {
            plan.timings()
                .map(|(t, timing)| Scheduled {
                    id: plan.name(t),
                    stage: plan.stage_of(t).map_or(0, |s| s + 1),
                    earliest_start: secs(timing.earliest_start),
                    latest_start: secs(timing.latest_start),
                    slack: secs(timing.slack),
                })
                .collect()
        }),
    };
    let mut s = serde_json::to_string(&contract)?;
    s.push('\n');
    Ok(s)
}

fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

fn fmt_us(us: u64) -> String {
    baton_model::duration::format(Duration::from_micros(us))
}

/// A list of names, abbreviated after `SHOW` entries.
fn list(plan: &Plan, ids: &[u32], sep: &str, all: bool) -> String {
    let shown = if all { ids.len() } else { ids.len().min(SHOW) };
    let mut s = ids[..shown]
        .iter()
        .map(|&t| plan.name(t))
        .collect::<Vec<_>>()
        .join(sep);
    if shown < ids.len() {
        let _ = write!(s, "{sep}… (+{} more)", ids.len() - shown);
    }
    s
}

fn text(checked: &Checked, plan: &Plan, all_stages: bool, schedule: bool) -> String {
    let s = plan.summary();
    let mut out = String::new();
    let name = checked.workflow.name.as_deref().unwrap_or("(unnamed)");
    let _ = writeln!(out, "workflow   {name}");
    let _ = writeln!(
        out,
        "tasks      {} ({} edges{})",
        s.tasks,
        s.edges,
        if s.handlers > 0 {
            format!(", {} compensation", s.handlers)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "stages     {} (max width {})",
        s.stage_count, s.max_width
    );
    let _ = writeln!(
        out,
        "critical   {} over {} tasks: {}",
        fmt_us(s.critical_path.length),
        s.critical_path.tasks.len(),
        list(plan, s.critical_path.tasks, " → ", all_stages)
    );
    let untimed = checked
        .workflow
        .tasks
        .iter()
        .filter(|t| t.estimate.is_none())
        .count();
    if untimed > 0 {
        let _ = writeln!(
            out,
            "           ({untimed} of {} tasks have no `estimate`: each counts as 1s here)",
            checked.workflow.tasks.len()
        );
    }
    let _ = writeln!(
        out,
        "work       {} in all, parallelism {:.2}",
        fmt_us(s.total_work),
        s.parallelism
    );
    let redundant = plan.redundancy().edges();
    if !redundant.is_empty() || s.redundancy != "exact" {
        let _ = write!(out, "redundant  {} edge(s)", redundant.len());
        if s.redundancy != "exact" {
            let _ = write!(out, " ({} search)", s.redundancy);
        }
        if s.redundant_removed {
            out.push_str(", removed");
        }
        out.push('\n');
    }
    if let Some(b) = baton_plan::bounds(&checked.workflow, plan) {
        // One entry per task: its kinds, and its instances at most.
        let mut per_task: Vec<(u32, Vec<&str>, u64)> = Vec::new();
        for d in &b.dynamic {
            match per_task.last_mut() {
                Some((t, kinds, n)) if *t == d.task => {
                    kinds.push(d.kind);
                    *n = (*n).max(d.instances);
                }
                _ => per_task.push((d.task, vec![d.kind], d.instances)),
            }
        }
        let shown: Vec<String> = per_task
            .iter()
            .take(SHOW)
            .map(|(t, kinds, n)| format!("{} ({} ≤ {n})", plan.name(*t), kinds.join(" + ")))
            .collect();
        let more = per_task.len().saturating_sub(SHOW);
        let _ = writeln!(
            out,
            "dynamic    {}{}",
            shown.join(", "),
            if more > 0 {
                format!(", … (+{more} more)")
            } else {
                String::new()
            }
        );
        let _ = writeln!(
            out,
            "bounds     at most {} task instances, {} level{} of runs; critical path at most {}: {}",
            b.tasks,
            b.depth,
            if b.depth == 1 { "" } else { "s" },
            fmt_us(b.critical_length),
            list(plan, &b.critical_path, " → ", all_stages)
        );
        let _ = writeln!(
            out,
            "           (fan-outs at max_items, loops at max_iterations, every route taken{})",
            if b.unresolved > 0 {
                format!(
                    "; {} sub-workflow file or catalog reference(s) counted as one task",
                    b.unresolved
                )
            } else {
                String::new()
            }
        );
    }
    out.push_str("\nstages:\n");
    let stages: Vec<&[u32]> = plan.stages().collect();
    let shown = if all_stages {
        stages.len()
    } else {
        stages.len().min(2 * SHOW)
    };
    let width = stages.len().to_string().len();
    for (i, stage) in stages.iter().take(shown).enumerate() {
        let _ = writeln!(
            out,
            "  {:>width$}. [{}] {}",
            i + 1,
            stage.len(),
            list(plan, stage, ", ", all_stages)
        );
    }
    if shown < stages.len() {
        let _ = writeln!(
            out,
            "  … {} more stages (--stages shows all)",
            stages.len() - shown
        );
    }
    if schedule {
        out.push_str("\nschedule (earliest start, latest start, slack):\n");
        let rows: Vec<_> = plan.timings().collect();
        let width = rows
            .iter()
            .map(|(t, _)| plan.name(*t).chars().count())
            .max()
            .unwrap_or(0);
        for (t, timing) in rows {
            let _ = writeln!(
                out,
                "  {:<width$}  {:>9}  {:>9}  {:>9}",
                plan.name(t),
                fmt_us(timing.earliest_start),
                fmt_us(timing.latest_start),
                fmt_us(timing.slack),
            );
        }
    }
    out
}

fn quote(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Graphviz: one rank per stage, edges as planned.
fn dot(checked: &Checked, plan: &Plan) -> String {
    let mut out = String::new();
    let name = checked.workflow.name.as_deref().unwrap_or("workflow");
    let _ = writeln!(
        out,
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box];",
        quote(name)
    );
    for (i, stage) in plan.stages().enumerate() {
        let nodes: Vec<String> = stage.iter().map(|&t| quote(plan.name(t))).collect();
        let _ = writeln!(
            out,
            "  {{ rank=same; /* stage {} */ {}; }}",
            i + 1,
            nodes.join("; ")
        );
    }
    let critical: std::collections::HashSet<(u32, u32)> = plan
        .critical_path()
        .windows(2)
        .map(|w| (w[0], w[1]))
        .collect();
    for t in plan.order() {
        for &s in plan.succs(*t) {
            let style = if critical.contains(&(*t, s)) {
                " [penwidth=2, color=red]"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {} -> {}{style};",
                quote(plan.name(*t)),
                quote(plan.name(s))
            );
        }
    }
    out.push_str("}\n");
    out
}

/// Mermaid flowchart: one subgraph per stage.
fn mermaid(plan: &Plan) -> String {
    let mut out = String::from("flowchart LR\n");
    let label = |t: u32| plan.name(t).replace('"', "#quot;");
    for (i, stage) in plan.stages().enumerate() {
        let _ = writeln!(out, "  subgraph s{i} [\"stage {}\"]", i + 1);
        for &t in stage {
            let _ = writeln!(out, "    n{t}[\"{}\"]", label(t));
        }
        out.push_str("  end\n");
    }
    for t in plan.order() {
        for &s in plan.succs(*t) {
            let _ = writeln!(out, "  n{t} --> n{s}");
        }
    }
    out
}
