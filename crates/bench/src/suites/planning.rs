//! `planning`: what `baton plan` does with a file, without the process.
//!
//! The timed region starts from the bytes of a generated JSON file (as
//! `baton gen workflow` writes it) or of a WfFormat trace, in memory: the
//! source checks (`Source::from_bytes`: size, binary, UTF-8, format),
//! `baton_model::load_timed` (parse + validate) and `baton_plan::plan_checked`
//! with default options. Excluded: reading the file from disk, copying the
//! bytes before each iteration, and dropping the plan. `parse`, `validate`
//! and `plan` are the same iterations split by phase.

use std::path::{Path, PathBuf};

use baton_model::generate::{self, Shape};
use baton_model::{Limits, Source};

use super::ceiling;
use crate::{Config, Error, Record, Sink};

/// Below this, a sample is the mean of several iterations (clock and
/// scheduling granularity would otherwise dominate a 10-task plan).
const MIN_SAMPLE_SECONDS: f64 = 0.002;

/// Dense graphs have edges ∝ n²: beyond this size a single workflow takes
/// hundreds of MB, so `dense` stops here.
pub(crate) const DENSE_MAX: usize = 2_000;

/// The per-phase timing of one iteration, in seconds.
#[derive(Clone, Copy, Default)]
pub(crate) struct Phases {
    pub parse: f64,
    pub validate: f64,
    pub plan: f64,
    pub total: f64,
}

/// A workload: the file's bytes and what it holds.
pub(crate) struct Workload {
    pub bytes: Vec<u8>,
    pub tasks: usize,
    pub edges: usize,
}

/// The JSON `baton gen workflow --shape SHAPE --tasks N --seed 0` writes.
pub(crate) fn generated(shape: Shape, n: usize) -> Workload {
    let workflow = generate::workflow(&generate::Spec::new(n, shape));
    let edges = workflow.tasks.iter().map(|t| t.depends_on.len()).sum();
    Workload {
        bytes: serde_json::to_vec(&workflow).expect("workflows serialize"),
        tasks: n,
        edges,
    }
}

fn trace(path: &Path) -> Result<Workload, Error> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    let (checked, _) = once(path.to_string_lossy().as_ref(), bytes.clone())?;
    Ok(Workload {
        tasks: checked.graph.len(),
        edges: checked.graph.edge_count(),
        bytes,
    })
}

/// One iteration: bytes → `Source` → `load_timed` → `plan_checked`.
fn once(name: &str, bytes: Vec<u8>) -> Result<(baton_model::Checked, Phases), Error> {
    let invalid = |what: String| Error::Workload(format!("{name}: {what}"));
    let t0 = std::time::Instant::now();
    let source = Source::from_bytes(name, bytes, None, Limits::default())
        .map_err(|e| invalid(e.to_string()))?;
    let (checked, timings) =
        baton_model::load_timed(&source).map_err(|e| invalid(e.to_string()))?;
    let t1 = std::time::Instant::now();
    let plan = baton_plan::plan_checked(&checked, &Default::default())
        .map_err(|d| invalid(d.message.clone()))?;
    let t2 = std::time::Instant::now();
    // Dropping the plan happens after the clock stopped: `baton plan` exits
    // without freeing it.
    drop(std::hint::black_box(plan));
    Ok((
        checked,
        Phases {
            parse: timings.parse.as_secs_f64(),
            validate: timings.validate.as_secs_f64(),
            plan: (t2 - t1).as_secs_f64(),
            total: (t2 - t0).as_secs_f64(),
        },
    ))
}

/// `BATON_BENCH_SLOWDOWN=NAME:N` (a workload, `planning/random/1000:4`; `N`
/// is 2 when left out) makes that workload do all its work `N` times per
/// iteration: a real slowdown through the same code, with which the
/// regression gate is shown to call exactly what it must (docs/performance.md,
/// `.ci/run`).
fn rounds(name: &str) -> usize {
    let Ok(spec) = std::env::var("BATON_BENCH_SLOWDOWN") else {
        return 1;
    };
    let (workload, factor) = spec.split_once(':').unwrap_or((&spec, "2"));
    if workload == name {
        factor.parse().unwrap_or(2).max(1)
    } else {
        1
    }
}

/// Warm-up, calibration and `repeats` samples of `workload`.
pub(crate) fn measure(
    name: &str,
    workload: &Workload,
    repeats: usize,
) -> Result<(Vec<Phases>, usize), Error> {
    let (_, warm) = once(name, workload.bytes.clone())?;
    let iterations = ((MIN_SAMPLE_SECONDS / warm.total.max(1e-9)).ceil() as usize).clamp(1, 10_000);
    let rounds = rounds(name);
    let mut samples = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let mut sum = Phases::default();
        for _ in 0..iterations * rounds {
            let bytes = workload.bytes.clone();
            let (checked, p) = once(name, bytes)?;
            drop(checked);
            sum.parse += p.parse;
            sum.validate += p.validate;
            sum.plan += p.plan;
            sum.total += p.total;
        }
        let k = iterations as f64;
        samples.push(Phases {
            parse: sum.parse / k,
            validate: sum.validate / k,
            plan: sum.plan / k,
            total: sum.total / k,
        });
    }
    Ok((samples, iterations))
}

/// The four records of one workload.
pub(crate) fn records(
    prefix: &str,
    workload: &Workload,
    samples: &[Phases],
    iterations: usize,
) -> Vec<Record> {
    type Phase = (&'static str, fn(&Phases) -> f64, &'static str);
    let phases: [Phase; 4] = [
        (
            "parse",
            |p| p.parse,
            "parsing the JSON into the model (baton_model::load_timed's parse phase)",
        ),
        (
            "validate",
            |p| p.validate,
            "validation: interning ids, resolving dependencies, every check (load_timed's validate phase)",
        ),
        (
            "plan",
            |p| p.plan,
            "baton_plan::plan_checked with default options (CSR, stages, critical path, budgeted redundancy search)",
        ),
        (
            "total",
            |p| p.total,
            "bytes in memory → Source::from_bytes → load (parse + validate) → plan_checked; excludes reading the file and dropping the plan",
        ),
    ];
    phases
        .into_iter()
        .map(|(phase, get, description)| {
            let values: Vec<f64> = samples.iter().map(get).collect();
            let mut r = Record::new(format!("{prefix}/{phase}"), description, "s", false, values)
                .param("tasks", workload.tasks)
                .param("edges", workload.edges)
                .param("bytes", workload.bytes.len())
                .param("iterations_per_sample", iterations);
            if phase == "total" {
                let m = r.statistics.median;
                r = r
                    .derive("nodes_per_s", workload.tasks as f64 / m)
                    .derive("edges_per_s", workload.edges as f64 / m);
            }
            r
        })
        .collect()
}

/// The machine's limit for a workload (`…/ceiling`): tokenising its JSON without
/// building anything ([`ceiling::tokenise`]), a sample being the mean of enough
/// iterations to last as long as `total`'s.
fn ceiling(prefix: &str, workload: &Workload, repeats: usize) -> Record {
    let warm = ceiling::tokenise(&workload.bytes);
    let iterations = ((MIN_SAMPLE_SECONDS / warm.max(1e-9)).ceil() as usize).clamp(1, 100_000);
    let samples = (0..repeats.max(1))
        .map(|_| {
            (0..iterations)
                .map(|_| ceiling::tokenise(&workload.bytes))
                .sum::<f64>()
                / iterations as f64
        })
        .collect();
    Record::new(
        format!("{prefix}/ceiling"),
        "the machine's limit for this workload: tokenising its JSON (serde_json into IgnoredAny) without building anything",
        "s",
        false,
        samples,
    )
    .param("tasks", workload.tasks)
    .param("bytes", workload.bytes.len())
    .param("iterations_per_sample", iterations)
}

/// Pushes a workload's records, `total` within its ceiling, then the ceiling.
fn push(sink: &mut Sink<'_>, records: Vec<Record>, ceiling: Record, param: (&str, String)) {
    for r in records {
        let r = if r.name.ends_with("/total") {
            r.within(&ceiling)
        } else {
            r
        };
        sink.push(r.param(param.0, param.1.clone()));
    }
    sink.push(ceiling.param(param.0, param.1));
}

fn traces(paths: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| Error::Io {
                    path: p.display().to_string(),
                    source: e,
                })?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

pub(crate) fn run(config: &Config, sink: &mut Sink<'_>) -> Result<(), Error> {
    let sizes = config.sizes.clone().unwrap_or_else(|| {
        config.pick(
            &[10, 100, 500, 1_000, 2_000, 10_000, 100_000, 1_000_000],
            &[10, 100, 1_000, 10_000],
            &[10, 100],
        )
    });
    let shapes = config.shapes.clone().unwrap_or_else(|| {
        config.pick(
            &[
                Shape::Chain,
                Shape::Fanout,
                Shape::Layered,
                Shape::Random,
                Shape::Dense,
            ],
            &[
                Shape::Chain,
                Shape::Fanout,
                Shape::Layered,
                Shape::Random,
                Shape::Dense,
            ],
            &[Shape::Random, Shape::Dense],
        )
    });
    for &shape in &shapes {
        for &n in &sizes {
            if shape == Shape::Dense && n > DENSE_MAX {
                continue;
            }
            let workload = generated(shape, n);
            let prefix = format!("planning/{shape}/{n}");
            let (samples, iterations) = measure(&prefix, &workload, config.repeats)?;
            let top = ceiling(&prefix, &workload, config.repeats);
            let records = records(&prefix, &workload, &samples, iterations);
            push(sink, records, top, ("shape", shape.to_string()));
        }
    }
    if shapes.contains(&Shape::Dense) && sizes.iter().any(|&n| n > DENSE_MAX) {
        sink.note(format!(
            "planning/dense stops at {DENSE_MAX} tasks: its edges grow with n² (0.1 density: 200k edges at 2,000 tasks)"
        ));
    }
    for path in traces(&config.traces)? {
        let workload = trace(&path)?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "trace".into());
        let prefix = format!("planning/trace/{stem}");
        let (samples, iterations) = measure(&prefix, &workload, config.repeats)?;
        let top = ceiling(&prefix, &workload, config.repeats);
        let records = records(&prefix, &workload, &samples, iterations);
        push(sink, records, top, ("trace", path.display().to_string()));
    }
    Ok(())
}
