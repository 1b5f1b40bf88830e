#![doc = include_str!("../README.md")]

pub mod compare;
pub mod env;
pub mod html;
pub mod report;
pub mod stats;
pub mod targets;

mod suites;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use baton_model::generate::Shape;

pub use crate::env::Environment;
pub use crate::report::{Ceiling, Record, Report, SCHEMA};
pub use crate::stats::{Fit, Statistics};

/// Why a benchmark run could not complete.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A report is not valid JSON or does not match the schema.
    #[error("{path}: not a `baton bench --json` report: {source}")]
    Json {
        /// The file.
        path: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A report of another schema version.
    #[error(
        "{path}: report schema {found:?}, this baton reads schema {SCHEMA}; re-run the benchmark to refresh it"
    )]
    Schema {
        /// The file.
        path: String,
        /// What it declares.
        found: Option<u64>,
    },
    /// A targets file is invalid.
    #[error("{path}: invalid targets file: {message}")]
    Targets {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A workload could not be prepared (an invalid trace, a cyclic workflow).
    #[error("{0}")]
    Workload(String),
    /// The code under measurement failed (an event log or engine error).
    #[error("{benchmark}: {message}")]
    Failed {
        /// The benchmark.
        benchmark: String,
        /// The error.
        message: String,
    },
    /// A suite that cannot run in this build (e.g. `http` before the server).
    #[error("{0}")]
    Unavailable(String),
}

/// A suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Suite {
    /// Parse, validate and plan generated workflows and traces.
    Planning,
    /// `PlanCache`: miss vs hit, hit ratio under a mix, correctness.
    Cache,
    /// The event log: throughput per backend, batch sweep, latencies.
    Events,
    /// The engine: coordination latency and overhead.
    Coordination,
    /// Power-law fits of time vs size (planning, events, engine).
    Scaling,
    /// Bytes per task state, per run, per plan; peak RSS.
    Memory,
    /// The HTTP API through `baton serve`.
    Http,
    /// Every suite.
    All,
}

impl Suite {
    /// Every suite `all` runs, in order.
    pub const EVERY: [Suite; 7] = [
        Suite::Planning,
        Suite::Cache,
        Suite::Events,
        Suite::Coordination,
        Suite::Scaling,
        Suite::Memory,
        Suite::Http,
    ];

    /// The suite's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Suite::Planning => "planning",
            Suite::Cache => "cache",
            Suite::Events => "events",
            Suite::Coordination => "coordination",
            Suite::Scaling => "scaling",
            Suite::Memory => "memory",
            Suite::Http => "http",
            Suite::All => "all",
        }
    }
}

impl FromStr for Suite {
    type Err = String;
    fn from_str(s: &str) -> Result<Suite, String> {
        Suite::EVERY
            .into_iter()
            .chain([Suite::All])
            .find(|x| x.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown suite `{s}`: expected planning, cache, events, coordination, scaling, memory, http or all"
                )
            })
    }
}

/// How much to measure.
#[derive(Debug, Clone)]
pub struct Config {
    /// Timed repeats per benchmark, after one untimed warm-up.
    pub repeats: usize,
    /// Small sizes (CI: `all` in under a minute on a release build).
    pub quick: bool,
    /// Tiny sizes, one repeat's worth of work: for tests on debug builds.
    pub smoke: bool,
    /// Planning sizes (overrides the defaults).
    pub sizes: Option<Vec<usize>>,
    /// Planning shapes (overrides the defaults).
    pub shapes: Option<Vec<Shape>>,
    /// WfFormat traces (files or folders of `.json`) for `planning`.
    pub traces: Vec<PathBuf>,
    /// The `baton` binary, for the `http` suite (it starts `baton serve`).
    pub baton: Option<PathBuf>,
    /// The `events` suite's backend (`memory`, `disk`, `redis`, `nats`): only its
    /// scenarios run. `None`: memory and disk, as always.
    pub events_backend: Option<String>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            repeats: 5,
            quick: false,
            smoke: false,
            sizes: None,
            shapes: None,
            traces: Vec::new(),
            baton: None,
            events_backend: None,
        }
    }
}

impl Config {
    /// `--quick`.
    pub fn quick() -> Config {
        Config {
            quick: true,
            repeats: 3,
            ..Config::default()
        }
    }

    /// The smallest sizes that still exercise every path (tests).
    pub fn smoke() -> Config {
        Config {
            quick: true,
            smoke: true,
            repeats: 2,
            ..Config::default()
        }
    }

    /// Picks the full, quick or smoke variant of a parameter.
    pub(crate) fn pick<T: Clone>(&self, full: &[T], quick: &[T], smoke: &[T]) -> Vec<T> {
        if self.smoke {
            smoke.to_vec()
        } else if self.quick {
            quick.to_vec()
        } else {
            full.to_vec()
        }
    }
}

/// The machine's speed now: the seconds a fixed piece of CPU work takes
/// (parsing a generated 1,000-task workflow as JSON values, the fastest of
/// 15 tries). Every record carries the one measured just after it, so that
/// `compare` can tell a machine that got slower (a noisy neighbour, a
/// throttled CPU: everything slows alike) from code that did.
pub fn reference_seconds() -> f64 {
    static DOCUMENT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let bytes = DOCUMENT.get_or_init(|| suites::planning::generated(Shape::Random, 1_000).bytes);
    (0..15)
        .map(|_| {
            let started = Instant::now();
            let value = serde_json::from_slice::<serde_json::Value>(bytes);
            std::hint::black_box(value).ok();
            started.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// How often the reference is measured again while records come in.
const REFERENCE_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Collects records as a suite produces them, reporting progress.
pub(crate) struct Sink<'a> {
    pub(crate) records: Vec<Record>,
    pub(crate) fits: Vec<Fit>,
    pub(crate) notes: Vec<String>,
    progress: &'a mut dyn FnMut(&str),
    /// The latest reference and when it was measured.
    reference: Option<(f64, Instant)>,
}

impl Sink<'_> {
    pub(crate) fn push(&mut self, mut record: Record) {
        let reference = match self.reference {
            Some((r, at)) if at.elapsed() < REFERENCE_EVERY => r,
            _ => {
                let r = reference_seconds();
                self.reference = Some((r, Instant::now()));
                r
            }
        };
        record.reference_s.get_or_insert(reference);
        let s = &record.statistics;
        let ceiling = record.ceiling_text();
        (self.progress)(&format!(
            "{:<48} {:>12}  (noise {:.1}%{}{}{})",
            record.name,
            report::format_value(s.median, &record.unit),
            s.noise * 100.0,
            if s.noisy { ", NOISY" } else { "" },
            if ceiling.is_empty() { "" } else { ", " },
            ceiling
        ));
        self.records.push(record);
    }

    pub(crate) fn fit(&mut self, name: &str, points: &[(f64, f64)]) {
        if let Some(fit) = Fit::power_law(name, points) {
            (self.progress)(&format!("fit {}", fit.describe()));
            self.fits.push(fit);
        }
    }

    pub(crate) fn note(&mut self, note: String) {
        (self.progress)(&format!("note {note}"));
        self.notes.push(note);
    }
}

/// Runs `suite`, calling `progress` with a line per finished benchmark.
pub fn run(suite: Suite, config: &Config, progress: &mut dyn FnMut(&str)) -> Result<Report, Error> {
    let mut environment = Environment::capture();
    let mut sink = Sink {
        records: Vec::new(),
        fits: Vec::new(),
        notes: Vec::new(),
        progress,
        reference: None,
    };
    let suites: Vec<Suite> = if suite == Suite::All {
        Suite::EVERY.to_vec()
    } else {
        vec![suite]
    };
    for s in suites {
        let started = Instant::now();
        env::reset_peak_rss();
        let before = env::rss_bytes();
        match s {
            Suite::Planning => suites::planning::run(config, &mut sink)?,
            Suite::Cache => suites::cache::run(config, &mut sink)?,
            Suite::Events => suites::events::run(config, &mut sink)?,
            Suite::Coordination => {
                suites::coordination::run(config, &mut sink)?;
                suites::dynamic::run(config, &mut sink)?;
            }
            Suite::Scaling => suites::scaling::run(config, &mut sink)?,
            Suite::Memory => suites::memory::run(config, &mut sink)?,
            Suite::Http => match suites::http::run(config, &mut sink) {
                Err(Error::Unavailable(why)) if suite == Suite::All => {
                    sink.note(format!("http suite not run: {why}"));
                    continue;
                }
                other => other?,
            },
            Suite::All => unreachable!("expanded above"),
        }
        let peak = env::peak_rss_bytes();
        sink.push(
            Record::new(
                format!("memory/peak_rss/{}", s.name()),
                "peak resident set of the whole process while the suite ran (VmHWM, reset before the suite), with what the process already held",
                "bytes",
                false,
                vec![peak as f64],
            )
            .derive("rss_before_bytes", before as f64)
            .derive("suite_seconds", started.elapsed().as_secs_f64()),
        );
    }
    environment.finish();
    Ok(Report {
        schema: SCHEMA,
        suite: suite.name().to_string(),
        quick: config.quick,
        repeats: config.repeats,
        environment,
        records: sink.records,
        fits: sink.fits,
        notes: sink.notes,
        verdict: None,
    })
}

/// Resident-set growth, in bytes, of `runs` runs of a `tasks`-task random
/// workflow on a fresh engine in this process: what `baton bench
/// memory-probe RUNS TASKS` prints for the `memory` suite, which runs it in a
/// fresh process per sample.
pub fn memory_probe(runs: usize, tasks: usize) -> Result<u64, Error> {
    suites::memory::probe(runs, tasks)
}

/// Times `f` once, in seconds.
pub(crate) fn time<T>(f: impl FnOnce() -> T) -> (T, f64) {
    let t = Instant::now();
    let out = f();
    (out, t.elapsed().as_secs_f64())
}
