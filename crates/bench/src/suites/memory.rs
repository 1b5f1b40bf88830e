//! `memory`: what state costs.
//!
//! * `memory/plan/<n>/per_task`: `Plan::heap_bytes` of a random n-task plan
//!   over n (the planner's own accounting, not RSS).
//! * `memory/engine/runs/<r>x100/per_run` and `per_task`: the marginal
//!   peak resident-set growth per run while r runs of 100 tasks are submitted at
//!   once and retained (finished runs stay queryable, up to
//!   `keep_finished`): growth with r runs minus growth with r/10, over 0.9 r
//!   (and over 100 for a task): everything included (run state, task
//!   states, the published transitions in the MemoryLog, the summaries); the
//!   fixed costs of a process, runtime and engine cancel out.
//!
//! There is no single-large-run figure: preparing an n-task workflow
//! (generating, validating, planning) frees more than the run then allocates,
//! and the allocator hands that resident memory back to the run, so its
//! growth reads near zero; the 100-task runs above leave little such garbage.
//!
//! An allocator reuses what it freed without growing the resident set, so
//! growth measured twice in one process reads near zero the second time.
//! Each engine sample therefore runs in a fresh process (`baton bench
//! memory-probe RUNS TASKS`, which prints the growth in bytes) when the suite
//! runs from the `baton` binary; without it (library use) a single in-process
//! sample is taken. RSS depends on the allocator (the binary uses mimalloc):
//! read it as an upper bound.
//! `memory/peak_rss/<suite>` (recorded after every suite) is the process's
//! peak resident set while that suite ran.

use crate::suites::{coordination, events};
use crate::{Config, Error, Record, Sink};

/// Peak resident-set growth while `runs` runs of a `tasks`-task workflow run
/// on a fresh engine in this process, in bytes (the workflow is planned
/// first, outside the measurement; the peak is `VmHWM`, reset just before
/// submitting). What `baton bench memory-probe` prints.
pub(crate) fn probe(runs: usize, tasks: usize) -> Result<u64, Error> {
    let rt = events::runtime();
    let spec = coordination::spec(tasks);
    let s = coordination::sample(&rt, &spec, runs, false).map_err(|message| Error::Failed {
        benchmark: format!("memory-probe {runs} {tasks}"),
        message,
    })?;
    Ok(s.peak_growth)
}

/// Marginal bytes per unit: per repeat, (growth at `large` − growth at
/// `large / 10`) / (the difference in units), each from a fresh process, so
/// the fixed costs of a new process, runtime and engine cancel out.
/// `per_run` scales the run count, otherwise the task count of one run.
fn marginal(config: &Config, name: &str, large: usize, per_run: bool) -> Result<Vec<f64>, Error> {
    let small = (large / 10).max(1);
    let (a, b) = if per_run {
        (
            growth(config, name, large, 100)?,
            growth(config, name, small, 100)?,
        )
    } else {
        (
            growth(config, name, 1, large)?,
            growth(config, name, 1, small)?,
        )
    };
    Ok(a.iter()
        .zip(&b)
        .map(|(a, b)| (a - b) / (large - small) as f64)
        .collect())
}

/// One growth figure per repeat, each from a fresh process when possible.
fn growth(config: &Config, name: &str, runs: usize, tasks: usize) -> Result<Vec<f64>, Error> {
    let failed = |message: String| Error::Failed {
        benchmark: name.to_string(),
        message,
    };
    let Some(baton) = &config.baton else {
        return Ok(vec![probe(runs, tasks)? as f64]);
    };
    (0..config.repeats.max(1))
        .map(|_| {
            let out = std::process::Command::new(baton)
                .args([
                    "bench",
                    "memory-probe",
                    &runs.to_string(),
                    &tasks.to_string(),
                ])
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| {
                    failed(format!(
                        "cannot run {} bench memory-probe: {e}",
                        baton.display()
                    ))
                })?;
            let text = String::from_utf8_lossy(&out.stdout);
            if !out.status.success() {
                return Err(failed(format!(
                    "memory-probe exited {:?}: {}",
                    out.status.code(),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            text.trim()
                .parse::<f64>()
                .map_err(|_| failed(format!("memory-probe printed `{}`", text.trim())))
        })
        .collect()
}

pub(crate) fn run(config: &Config, sink: &mut Sink<'_>) -> Result<(), Error> {
    for n in config.pick(&[1_000, 100_000, 1_000_000], &[1_000, 100_000], &[1_000]) {
        let workflow = baton_model::generate::workflow(&baton_model::generate::Spec::new(
            n,
            baton_model::generate::Shape::Random,
        ));
        let checked = baton_model::validate(workflow).expect("generated workflows are valid");
        let plan = baton_plan::plan_checked(&checked, &Default::default()).expect("acyclic");
        let bytes = plan.heap_bytes() + std::mem::size_of_val(&plan);
        sink.push(
            Record::new(
                format!("memory/plan/{n}/per_task"),
                "Plan::heap_bytes (plus the Plan itself) over the task count, random shape",
                "bytes",
                false,
                vec![bytes as f64 / n as f64],
            )
            .param("tasks", n)
            .derive("plan_bytes", bytes as f64),
        );
    }
    for runs in config.pick(&[1_000, 10_000], &[1_000], &[100]) {
        let name = format!("memory/engine/runs/{runs}x100");
        let per_run = marginal(config, &name, runs, true)?;
        sink.push(
            Record::new(
                format!("{name}/per_run"),
                "marginal peak resident-set growth per active 100-task run: (growth with R runs − growth with R/10) / (0.9 R), each in a fresh process; runs submitted at once, run and retained (everything included: task states, published transitions, summaries)",
                "bytes",
                false,
                per_run.clone(),
            )
            .param("runs", runs),
        );
        sink.push(
            Record::new(
                format!("{name}/per_task"),
                "the same over the 100 tasks of a run",
                "bytes",
                false,
                per_run.iter().map(|g| g / 100.0).collect(),
            )
            .param("runs", runs),
        );
    }
    Ok(())
}
