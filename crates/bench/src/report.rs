//! Results: one [`Record`] per benchmark, gathered in a [`Report`] (the JSON
//! document of `--json`, schema [`SCHEMA`]), and its renderings: the table,
//! CSV and the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::env::Environment;
use crate::stats::{Fit, Statistics};

/// The version of the JSON document. Bumped on any incompatible change.
pub const SCHEMA: u32 = 1;

/// One benchmark's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unique, slash-separated, starting with the suite:
    /// `planning/random/1000/total`.
    pub name: String,
    /// The suite that produced it.
    pub suite: String,
    /// What the timed region covers (and what it leaves out).
    pub description: String,
    /// The workload's parameters (shape, tasks, backend, batch, ...).
    pub parameters: BTreeMap<String, Value>,
    /// `s`, `us`, `events/s`, `tasks/s`, `bytes`, `ratio`.
    pub unit: String,
    /// Whether a larger value is better (rates) or worse (times, bytes).
    pub higher_is_better: bool,
    /// One value per repeat, in the order measured (warm-up excluded).
    pub samples: Vec<f64>,
    /// Statistics of `samples`.
    pub statistics: Statistics,
    /// Figures derived from the median (e.g. `nodes_per_s`), or quantiles of
    /// a latency distribution (`q0.5`, `q0.99`, ...) for CDF charts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub derived: BTreeMap<String, f64>,
    /// The machine, load and build this record was measured with.
    pub environment: Environment,
    /// The machine's speed when this record was measured: the seconds a
    /// fixed piece of CPU work took (`baton_bench::reference_seconds`), so
    /// that a comparison can tell a slower machine from slower code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_s: Option<f64>,
    /// In a saved baseline: the medians of its last saves, oldest first
    /// (this one's last), from which the regression gate measures the
    /// between-run noise (`compare`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_medians: Vec<f64>,
    /// The `reference_s` of each of those saves, when all had one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baseline_references: Vec<f64>,
    /// The machine's own limit for this workload, measured in the same run by
    /// a bare version of it (a `…/ceiling` record), and this record's share of
    /// it: whether Baton or the machine is the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<Ceiling>,
}

/// What the machine itself reaches on a record's workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ceiling {
    /// The record that measured it.
    pub benchmark: String,
    /// Its median, in the record's unit.
    pub median: f64,
    /// The record's median as a share of the ceiling's (for times, the
    /// ceiling's time over the record's): 1 means the machine's limit.
    pub fraction: f64,
}

impl Record {
    /// A record of `samples` (statistics computed here).
    pub fn new(
        name: impl Into<String>,
        description: &str,
        unit: &str,
        higher_is_better: bool,
        samples: Vec<f64>,
    ) -> Record {
        let name = name.into();
        Record {
            suite: name.split('/').next().unwrap_or("").to_string(),
            name,
            description: description.to_string(),
            parameters: BTreeMap::new(),
            unit: unit.to_string(),
            higher_is_better,
            statistics: Statistics::of(&samples),
            samples,
            derived: BTreeMap::new(),
            environment: Environment::capture_cached(),
            reference_s: None,
            baseline_medians: Vec::new(),
            baseline_references: Vec::new(),
            ceiling: None,
        }
    }

    /// Sets `ceiling` (a record of the same unit measuring the bare
    /// operation) as this record's ceiling.
    pub fn within(mut self, ceiling: &Record) -> Record {
        debug_assert_eq!(self.unit, ceiling.unit, "{} vs {}", self.name, ceiling.name);
        let (mine, top) = (self.statistics.median, ceiling.statistics.median);
        let fraction = if self.higher_is_better {
            mine / top
        } else {
            top / mine
        };
        self.ceiling = Some(Ceiling {
            benchmark: ceiling.name.clone(),
            median: top,
            fraction,
        });
        self
    }

    /// Whether this record is a ceiling: the machine's own limit for a
    /// workload (a `ceiling` segment in its name), which the regression gate
    /// does not judge.
    pub fn is_ceiling(&self) -> bool {
        self.name.split('/').any(|s| s == "ceiling")
    }

    /// `38% of ceiling`, or nothing.
    pub fn ceiling_text(&self) -> String {
        self.ceiling
            .as_ref()
            .map(|c| format!("{:.0}% of ceiling", c.fraction * 100.0))
            .unwrap_or_default()
    }

    /// Adds a parameter.
    pub fn param(mut self, key: &str, value: impl Into<Value>) -> Record {
        self.parameters.insert(key.to_string(), value.into());
        self
    }

    /// Adds a derived figure.
    pub fn derive(mut self, key: &str, value: f64) -> Record {
        self.derived.insert(key.to_string(), value);
        self
    }
}

/// Everything one `baton bench` invocation measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The suite asked for (`all`, `planning`, ...).
    pub suite: String,
    /// Whether `--quick` sizes were used.
    pub quick: bool,
    /// Repeats per benchmark (after one warm-up).
    pub repeats: usize,
    /// The environment of the whole run (load before the first and after the
    /// last benchmark).
    pub environment: Environment,
    /// One per benchmark, in the order measured.
    pub records: Vec<Record>,
    /// Power-law fits of the `scaling` suite.
    #[serde(default)]
    pub fits: Vec<Fit>,
    /// Conclusions stated in words (recommended batch sizes, cache checks).
    #[serde(default)]
    pub notes: Vec<String>,
    /// What `--check` and `--baseline` concluded (absent when neither was
    /// asked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
}

/// What a run's checks concluded: its targets (`--check`, `--targets`) and
/// the regression gate (`--baseline`). In the JSON report and at the top of
/// the HTML one.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Every target evaluated, in the targets file's order.
    #[serde(default)]
    pub targets: Vec<TargetVerdict>,
    /// The comparison with a baseline, when one was asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<BaselineVerdict>,
}

/// One target's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetVerdict {
    /// The benchmark it bounds.
    pub benchmark: String,
    /// The statistic bounded (`median`, `p99`, ...).
    pub statistic: String,
    /// What was measured, in the record's unit (absent when not measured).
    pub measured: Option<f64>,
    /// `true` met, `false` missed, absent when not evaluated (its suite did
    /// not run, or not at `--quick` sizes).
    pub met: Option<bool>,
    /// The line `bench` prints.
    pub message: String,
}

/// The regression gate's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineVerdict {
    /// The baseline's name.
    pub name: String,
    /// `--max-regression`, percent.
    pub max_regression: f64,
    /// Benchmarks compared.
    pub compared: usize,
    /// One line per regression: name, change and its 95 % interval.
    pub regressions: Vec<String>,
}

impl Verdict {
    /// Whether every target evaluated held and nothing regressed.
    pub fn passed(&self) -> bool {
        self.targets.iter().all(|t| t.met != Some(false))
            && self
                .baseline
                .as_ref()
                .is_none_or(|b| b.regressions.is_empty())
    }

    /// One line: the targets met and missed, the regressions.
    pub fn headline(&self) -> String {
        let mut parts = Vec::new();
        if !self.targets.is_empty() {
            let met = self.targets.iter().filter(|t| t.met == Some(true)).count();
            let missed = self.targets.iter().filter(|t| t.met == Some(false)).count();
            let skipped = self.targets.len() - met - missed;
            parts.push(format!(
                "targets: {met} met, {missed} missed{}",
                if skipped > 0 {
                    format!(", {skipped} not evaluated")
                } else {
                    String::new()
                }
            ));
        }
        if let Some(b) = &self.baseline {
            parts.push(match b.regressions.len() {
                0 => format!(
                    "no regression against `{}` ({} compared)",
                    b.name, b.compared
                ),
                n => format!(
                    "{n} regression{} against `{}` ({} compared)",
                    if n == 1 { "" } else { "s" },
                    b.name,
                    b.compared
                ),
            });
        }
        format!(
            "{}: {}",
            if self.passed() { "PASS" } else { "FAIL" },
            parts.join("; ")
        )
    }
}

impl Report {
    /// Reads a report written by `--json` or `--save-baseline`.
    pub fn load(path: &Path) -> Result<Report, crate::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        let value: Value = serde_json::from_str(&text).map_err(|e| crate::Error::Json {
            path: path.display().to_string(),
            source: e,
        })?;
        let schema = value.get("schema").and_then(Value::as_u64);
        if schema != Some(u64::from(SCHEMA)) {
            return Err(crate::Error::Schema {
                path: path.display().to_string(),
                found: schema,
            });
        }
        serde_json::from_value(value).map_err(|e| crate::Error::Json {
            path: path.display().to_string(),
            source: e,
        })
    }

    /// Writes the report as pretty JSON (creating parent directories).
    pub fn save(&self, path: &Path) -> Result<(), crate::Error> {
        let text = serde_json::to_string_pretty(self).expect("reports serialize");
        write_file(path, &text)
    }

    /// The record called `name`.
    pub fn get(&self, name: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.name == name)
    }

    /// The human table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let e = &self.environment;
        let _ = writeln!(
            out,
            "baton {} ({} build, {}) on {} ({} cores); git {}; load {:.2} → {:.2}; {} repeats{}",
            e.baton_version,
            e.profile,
            e.rustc,
            e.cpu,
            e.cores,
            short(&e.git_sha),
            e.load_before[0],
            e.load_after[0],
            self.repeats,
            if self.quick { ", quick sizes" } else { "" }
        );
        if e.profile == "debug" {
            let _ = writeln!(
                out,
                "warning: a debug build: figures are 10–50× slower than release"
            );
        }
        let width = self
            .records
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(10)
            .max(9);
        let _ = writeln!(
            out,
            "{:<width$}  {:>12} {:>12} {:>12} {:>12} {:>7}  {:>8}",
            "benchmark", "median", "min", "p95", "max", "noise", "ceiling"
        );
        for r in &self.records {
            let s = &r.statistics;
            let ceiling = r
                .ceiling
                .as_ref()
                .map(|c| format!("{:.0}%", c.fraction * 100.0))
                .unwrap_or_default();
            let line = format!(
                "{:<width$}  {:>12} {:>12} {:>12} {:>12} {:>6.1}%  {ceiling:>8}  {}",
                r.name,
                format_value(s.median, &r.unit),
                format_value(s.min, &r.unit),
                format_value(s.p95, &r.unit),
                format_value(s.max, &r.unit),
                s.noise * 100.0,
                if s.noisy { "NOISY" } else { "" }
            );
            let _ = writeln!(out, "{}", line.trim_end());
        }
        for f in &self.fits {
            let _ = writeln!(out, "fit  {}", f.describe());
        }
        for n in &self.notes {
            let _ = writeln!(out, "note {n}");
        }
        out
    }

    /// CSV: one row per record.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "name,suite,unit,higher_is_better,n,min,median,mean,p95,p99,max,mad,noise,noisy,parameters,ceiling,ceiling_fraction\n",
        );
        for r in &self.records {
            let s = &r.statistics;
            let params = serde_json::to_string(&r.parameters).unwrap_or_default();
            let (ceiling, fraction) = match &r.ceiling {
                Some(c) => (c.median.to_string(), c.fraction.to_string()),
                None => (String::new(), String::new()),
            };
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},\"{}\",{ceiling},{fraction}",
                r.name,
                r.suite,
                r.unit,
                r.higher_is_better,
                s.n,
                s.min,
                s.median,
                s.mean,
                s.p95,
                s.p99,
                s.max,
                s.mad,
                s.noise,
                s.noisy,
                params.replace('"', "\"\"")
            );
        }
        out
    }

    /// The Prometheus text exposition format, for node_exporter's textfile
    /// collector: `baton_bench_value{benchmark, statistic, unit}` per
    /// statistic, `baton_bench_noise_ratio`, and `baton_bench_fit_slope` /
    /// `baton_bench_fit_r2` per fit (the targets' lines are
    /// [`targets::prometheus`](crate::targets::prometheus)).
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let e = &self.environment;
        let _ = writeln!(
            out,
            "# HELP baton_bench_info The build and machine of these results.\n# TYPE baton_bench_info gauge\nbaton_bench_info{{git=\"{}\",version=\"{}\",profile=\"{}\",cpu=\"{}\",cores=\"{}\"}} 1",
            escape(short(&e.git_sha)),
            escape(&e.baton_version),
            escape(&e.profile),
            escape(&e.cpu),
            e.cores
        );
        out.push_str("# HELP baton_bench_value A benchmark statistic, in the unit of its `unit` label.\n# TYPE baton_bench_value gauge\n");
        for r in &self.records {
            for stat in ["min", "median", "p95", "max"] {
                let v = r.statistics.get(stat).unwrap_or(f64::NAN);
                let _ = writeln!(
                    out,
                    "baton_bench_value{{benchmark=\"{}\",statistic=\"{stat}\",unit=\"{}\"}} {}",
                    escape(&r.name),
                    escape(&r.unit),
                    prom_float(v)
                );
            }
        }
        out.push_str("# HELP baton_bench_noise_ratio Median absolute deviation over median.\n# TYPE baton_bench_noise_ratio gauge\n");
        for r in &self.records {
            let _ = writeln!(
                out,
                "baton_bench_noise_ratio{{benchmark=\"{}\"}} {}",
                escape(&r.name),
                prom_float(r.statistics.noise)
            );
        }
        if self.records.iter().any(|r| r.ceiling.is_some()) {
            let mut ratios = String::from(
                "# HELP baton_bench_ceiling_ratio The benchmark's median as a share of its ceiling (1: the machine is the limit).\n# TYPE baton_bench_ceiling_ratio gauge\n",
            );
            out.push_str("# HELP baton_bench_ceiling The machine's own limit for the benchmark's workload (its bare version, measured in the same run), in the benchmark's unit.\n# TYPE baton_bench_ceiling gauge\n");
            for r in &self.records {
                if let Some(c) = &r.ceiling {
                    let name = escape(&r.name);
                    let _ = writeln!(
                        out,
                        "baton_bench_ceiling{{benchmark=\"{name}\",unit=\"{}\"}} {}",
                        escape(&r.unit),
                        prom_float(c.median)
                    );
                    let _ = writeln!(
                        ratios,
                        "baton_bench_ceiling_ratio{{benchmark=\"{name}\"}} {}",
                        prom_float(c.fraction)
                    );
                }
            }
            out.push_str(&ratios);
        }
        if !self.fits.is_empty() {
            out.push_str("# HELP baton_bench_fit_slope Exponent of the power-law fit.\n# TYPE baton_bench_fit_slope gauge\n");
            for f in &self.fits {
                let _ = writeln!(
                    out,
                    "baton_bench_fit_slope{{fit=\"{}\"}} {}\nbaton_bench_fit_r2{{fit=\"{}\"}} {}",
                    escape(&f.name),
                    prom_float(f.slope),
                    escape(&f.name),
                    prom_float(f.r2)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP baton_bench_load_average 1-minute load average at the end of the run.\n# TYPE baton_bench_load_average gauge\nbaton_bench_load_average {}",
            prom_float(self.environment.load_after[0])
        );
        out
    }
}

fn prom_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

pub(crate) fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

/// Writes `text` to `path`, creating its parent directories.
pub fn write_file(path: &Path, text: &str) -> Result<(), crate::Error> {
    let io = |e| crate::Error::Io {
        path: path.display().to_string(),
        source: e,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    std::fs::write(path, text).map_err(io)
}

/// A value in its unit, scaled for reading: `1.23 ms`, `4.5 M/s`, `12 MB`.
pub fn format_value(v: f64, unit: &str) -> String {
    if !v.is_finite() {
        return format!("{v}");
    }
    match unit {
        "s" => format_seconds(v),
        "us" => format_seconds(v / 1e6),
        "bytes" => {
            if v >= 1e9 {
                format!("{:.2} GB", v / 1e9)
            } else if v >= 1e6 {
                format!("{:.1} MB", v / 1e6)
            } else if v >= 1e3 {
                format!("{:.1} KB", v / 1e3)
            } else {
                format!("{v:.0} B")
            }
        }
        u if u.ends_with("/s") => {
            let short = u.trim_end_matches("/s");
            let short = match short {
                "events" => "ev",
                other => other,
            };
            if v >= 1e6 {
                format!("{:.2} M{short}/s", v / 1e6)
            } else if v >= 1e3 {
                format!("{:.1} k{short}/s", v / 1e3)
            } else {
                format!("{v:.0} {short}/s")
            }
        }
        "ratio" => format!("{:.3}", v),
        other => format!("{v:.3} {other}"),
    }
}

fn format_seconds(s: f64) -> String {
    let a = s.abs();
    if a >= 1.0 {
        format!("{s:.3} s")
    } else if a >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else if a >= 1e-6 {
        format!("{:.2} µs", s * 1e6)
    } else {
        format!("{:.0} ns", s * 1e9)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Report {
        let env = Environment::capture_cached();
        Report {
            schema: SCHEMA,
            suite: "planning".into(),
            quick: true,
            repeats: 3,
            environment: env,
            records: vec![
                Record::new(
                    "planning/random/10/total",
                    "t",
                    "s",
                    false,
                    vec![1e-5, 2e-5, 1.5e-5],
                )
                .param("tasks", 10)
                .derive("nodes_per_s", 6.6e5),
            ],
            fits: vec![Fit::power_law("f", &[(1.0, 1.0), (2.0, 2.0)]).unwrap()],
            notes: vec!["a note".into()],
            verdict: None,
        }
    }

    #[test]
    fn json_round_trip() {
        let report = sample();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/r.json");
        report.save(&path).unwrap();
        let back = Report::load(&path).unwrap();
        assert_eq!(back, report);
        let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        v["schema"] = 99.into();
        std::fs::write(&path, v.to_string()).unwrap();
        let err = Report::load(&path).unwrap_err().to_string();
        assert!(err.contains("schema"), "{err}");
    }

    #[test]
    fn renderings() {
        let r = sample();
        assert!(r.table().contains("planning/random/10/total"));
        assert!(r.table().contains("15.00 µs"));
        let csv = r.csv();
        assert_eq!(csv.lines().count(), 2);
        let prom = r.prometheus();
        assert!(prom.contains(
            "baton_bench_value{benchmark=\"planning/random/10/total\",statistic=\"median\""
        ));
        assert_eq!(format_value(2.5e6, "events/s"), "2.50 Mev/s");
        assert!(!prom.contains("baton_bench_ceiling"));
    }

    #[test]
    fn a_ceiling_is_shown_as_a_share_in_every_rendering() {
        let mut r = sample();
        let time = Record::new("planning/random/10/ceiling", "t", "s", false, vec![5e-6]);
        r.records[0] = r.records[0].clone().within(&time);
        let c = r.records[0].ceiling.clone().unwrap();
        assert_eq!(c.benchmark, "planning/random/10/ceiling");
        // Times: the ceiling's time over the record's (15 µs).
        assert!((c.fraction - 1.0 / 3.0).abs() < 1e-9, "{c:?}");
        assert!(r.table().contains(" 33%"), "{}", r.table());
        assert!(
            r.csv()
                .lines()
                .nth(1)
                .unwrap()
                .ends_with(&format!(",{}", c.fraction))
        );
        assert!(
            r.prometheus().contains(
                "baton_bench_ceiling_ratio{benchmark=\"planning/random/10/total\"} 0.333"
            )
        );
        let rate = Record::new("events/x", "t", "events/s", true, vec![4e6]);
        let top = Record::new("events/ceiling/x", "t", "events/s", true, vec![1e7]);
        assert_eq!(rate.within(&top).ceiling.unwrap().fraction, 0.4);
        // Reports without ceilings (older ones) still load.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        sample().save(&path).unwrap();
        assert!(!std::fs::read_to_string(&path).unwrap().contains("ceiling"));
        assert_eq!(Report::load(&path).unwrap(), sample());
        assert_eq!(format_value(0.5, "s"), "500.000 ms");
    }
}
