//! Targets (`--check`): the seed's own by default, or a TOML file.
//!
//! ```toml
//! [[target]]
//! benchmark = "planning/random/1000/total"   # a record name
//! statistic = "median"                       # min | median | mean | p95 | p99 | max | ceiling
//! max = "100us"                              # an upper bound, or `min = ...`
//! source = "issue #2"                        # where the target comes from (optional)
//! ```
//!
//! `statistic = "ceiling"` bounds the record's median as a share of its
//! ceiling (the machine's own limit measured in the same run, a number: `min
//! = 0.8` is 80 %). A target on a server backend's benchmark (a `redis` or
//! `nats` segment in its name) is skipped when that backend did not run.
//!
//! Bounds are numbers in the record's unit, or strings: durations (`250ns`,
//! `100us`, `100µs`, `5ms`, `1s`) for records in `s` or `us`, and numbers
//! with a `k`, `M` or `G` suffix (`100k`, `1.5M`) otherwise. A target is
//! never relaxed to pass: a miss exits 1 with the measured value.

use std::fmt::Write as _;
use std::path::Path;

use serde::Deserialize;

use crate::report::{Report, escape, format_value};

/// One target.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The record's name.
    pub benchmark: String,
    /// Which statistic of its samples (default `median`).
    #[serde(default = "median")]
    pub statistic: String,
    /// Upper bound (inclusive).
    #[serde(default)]
    pub max: Option<Bound>,
    /// Lower bound (inclusive).
    #[serde(default)]
    pub min: Option<Bound>,
    /// Where it comes from.
    #[serde(default)]
    pub source: Option<String>,
}

fn median() -> String {
    "median".into()
}

/// A bound as written: a number in the record's unit, or a string with a unit
/// or suffix.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum Bound {
    /// In the record's unit.
    Number(f64),
    /// `100us`, `1.5M`, ...
    Text(String),
}

impl Bound {
    /// The bound in `unit`.
    pub fn value(&self, unit: &str) -> Result<f64, String> {
        let text = match self {
            Bound::Number(v) => return Ok(*v),
            Bound::Text(t) => t.trim().replace('_', ""),
        };
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+' || c == 'e'))
            .unwrap_or(text.len());
        // `1e6` has an `e`; `5ms` must not take `m` as part of the number.
        let (num, suffix) = text.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a number with an optional unit"))?;
        // Durations as (numerator, denominator) of seconds, so that `100us`
        // is exactly the double nearest to 1e-4 s.
        let (num, den) = match suffix.trim() {
            "" => return Ok(n),
            "ns" => (1.0, 1e9),
            "us" | "µs" => (1.0, 1e6),
            "ms" => (1.0, 1e3),
            "s" => (1.0, 1.0),
            "k" | "K" => return Ok(n * 1e3),
            "M" => return Ok(n * 1e6),
            "G" => return Ok(n * 1e9),
            other => {
                return Err(format!(
                    "unknown suffix `{other}` in `{text}`: use ns, us, ms, s (durations) or k, M, G"
                ));
            }
        };
        match unit {
            "s" => Ok(n * num / den),
            "us" if den >= 1e6 => Ok(n * num / (den / 1e6)),
            "us" => Ok(n * num * (1e6 / den)),
            other => Err(format!(
                "`{text}` is a duration but the benchmark's unit is `{other}`"
            )),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    target: Vec<Target>,
}

/// Parses a targets file's text.
pub fn parse(text: &str) -> Result<Vec<Target>, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string())?;
    for t in &file.target {
        if t.max.is_none() && t.min.is_none() {
            return Err(format!(
                "target `{}` has neither `max` nor `min`",
                t.benchmark
            ));
        }
        if t.statistic != CEILING
            && crate::stats::Statistics::of(&[0.0])
                .get(&t.statistic)
                .is_none()
        {
            return Err(format!(
                "target `{}`: unknown statistic `{}` (min, median, mean, p95, p99, max, ceiling)",
                t.benchmark, t.statistic
            ));
        }
    }
    Ok(file.target)
}

/// The statistic that is a record's share of its ceiling.
const CEILING: &str = "ceiling";

/// The server backends whose benchmarks run only when asked (`--backend`).
const SERVER_BACKENDS: [&str; 2] = ["redis", "nats"];

/// Reads a targets file.
pub fn load(path: &Path) -> Result<Vec<Target>, crate::Error> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::Error::Io {
        path: path.display().to_string(),
        source: e,
    })?;
    parse(&text).map_err(|message| crate::Error::Targets {
        path: path.display().to_string(),
        message,
    })
}

/// The seed's own targets: 1,000-task planning under a second, at least
/// 100,000 events/s (the embedded default, disk with fsync before every
/// acknowledgement), coordination overhead under 100 ms.
pub fn seed() -> Vec<Target> {
    parse(include_str!("seed_targets.toml")).expect("the built-in targets parse")
}

/// A target's evaluation.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The target.
    pub target: Target,
    /// The measured statistic, when the benchmark ran.
    pub measured: Option<f64>,
    /// `Some(true)` met, `Some(false)` missed, `None` not evaluated (its
    /// suite did not run).
    pub met: Option<bool>,
    /// One line for people.
    pub message: String,
}

impl Outcome {
    /// What the report keeps of it.
    pub fn verdict(&self) -> crate::report::TargetVerdict {
        crate::report::TargetVerdict {
            benchmark: self.target.benchmark.clone(),
            statistic: self.target.statistic.clone(),
            measured: self.measured.filter(|v| v.is_finite()),
            met: self.met,
            message: self.message.clone(),
        }
    }
}

/// Evaluates `targets` against `report`. A target whose suite ran but whose
/// benchmark is missing counts as a miss (a misspelt name must not pass
/// silently); one whose suite did not run is skipped.
pub fn evaluate(targets: &[Target], report: &Report) -> Vec<Outcome> {
    let suites: std::collections::BTreeSet<&str> =
        report.records.iter().map(|r| r.suite.as_str()).collect();
    targets
        .iter()
        .map(|t| {
            let outcome = |measured, met, message| Outcome {
                target: t.clone(),
                measured,
                met,
                message,
            };
            let Some(record) = report.get(&t.benchmark) else {
                let suite = t.benchmark.split('/').next().unwrap_or("");
                let server = t
                    .benchmark
                    .split('/')
                    .find(|s| SERVER_BACKENDS.contains(s))
                    .filter(|b| {
                        !report
                            .records
                            .iter()
                            .any(|r| r.name.split('/').any(|s| s == *b))
                    });
                return if let Some(backend) = server {
                    outcome(
                        None,
                        None,
                        format!(
                            "skip {}: the {backend} backend was not run (--backend {backend})",
                            t.benchmark
                        ),
                    )
                } else if suites.contains(suite) && report.quick {
                    outcome(
                        None,
                        None,
                        format!("skip {}: not measured at --quick sizes", t.benchmark),
                    )
                } else if suites.contains(suite) {
                    outcome(
                        None,
                        Some(false),
                        format!(
                            "MISS {}: not measured (no such benchmark in this run)",
                            t.benchmark
                        ),
                    )
                } else {
                    outcome(
                        None,
                        None,
                        format!("skip {}: suite `{suite}` not run", t.benchmark),
                    )
                };
            };
            let (value, unit) = if t.statistic == CEILING {
                let fraction = record.ceiling.as_ref().map(|c| c.fraction);
                (fraction.unwrap_or(f64::NAN), "ratio")
            } else {
                let value = record.statistics.get(&t.statistic).unwrap_or(f64::NAN);
                (value, record.unit.as_str())
            };
            let mut met = value.is_finite();
            let mut bounds = Vec::new();
            for (bound, is_max) in [(&t.max, true), (&t.min, false)] {
                let Some(bound) = bound else { continue };
                match bound.value(unit) {
                    Ok(b) => {
                        met &= if is_max { value <= b } else { value >= b };
                        bounds.push(format!(
                            "{} {}",
                            if is_max { "≤" } else { "≥" },
                            format_value(b, unit)
                        ));
                    }
                    Err(e) => {
                        met = false;
                        bounds.push(format!("invalid bound: {e}"));
                    }
                }
            }
            let source = t
                .source
                .as_deref()
                .map(|s| format!(" [{s}]"))
                .unwrap_or_default();
            outcome(
                Some(value),
                Some(met),
                format!(
                    "{} {} {} = {} (target {}){}",
                    if met { "met " } else { "MISS" },
                    t.benchmark,
                    t.statistic,
                    format_value(value, unit),
                    bounds.join(", "),
                    source
                ),
            )
        })
        .collect()
}

/// The targets' outcomes in the Prometheus text format, to follow
/// [`Report::prometheus`]: `baton_bench_target_met{benchmark, statistic}`, 1 when
/// the target holds, 0 on a miss (none for a target without a measurement).
pub fn prometheus(targets: &[Outcome]) -> String {
    let mut out = String::new();
    if targets.is_empty() {
        return out;
    }
    out.push_str("# HELP baton_bench_target_met 1 when the target holds, 0 on a miss.\n# TYPE baton_bench_target_met gauge\n");
    for t in targets {
        if let Some(met) = t.met {
            let _ = writeln!(
                out,
                "baton_bench_target_met{{benchmark=\"{}\",statistic=\"{}\"}} {}",
                escape(&t.target.benchmark),
                escape(&t.target.statistic),
                u8::from(met)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Record;

    #[test]
    fn outcomes_become_prometheus_lines_one_per_evaluated_target() {
        let ts = parse(
            "[[target]]\nbenchmark = \"a/b\"\nmax = 1\n[[target]]\nbenchmark = \"c\"\nstatistic = \"p95\"\nmin = 2\n[[target]]\nbenchmark = \"skipped\"\nmax = 3\n",
        )
        .unwrap();
        let outcome = |t: &Target, met| Outcome {
            target: t.clone(),
            measured: None,
            met,
            message: String::new(),
        };
        let text = prometheus(&[
            outcome(&ts[0], Some(true)),
            outcome(&ts[1], Some(false)),
            outcome(&ts[2], None),
        ]);
        assert!(text.starts_with("# HELP baton_bench_target_met"), "{text}");
        assert!(
            text.contains("baton_bench_target_met{benchmark=\"a/b\",statistic=\"median\"} 1\n")
        );
        assert!(text.contains("baton_bench_target_met{benchmark=\"c\",statistic=\"p95\"} 0\n"));
        assert!(!text.contains("skipped"), "{text}");
        assert_eq!(prometheus(&[]), "");
    }

    #[test]
    fn bounds_parse_in_the_records_unit() {
        let t = |s: &str| Bound::Text(s.into());
        assert_eq!(t("100us").value("s").unwrap(), 100e-6);
        assert_eq!(t("100µs").value("us").unwrap(), 100.0);
        assert_eq!(t("5ms").value("s").unwrap(), 0.005);
        assert_eq!(t("1s").value("us").unwrap(), 1e6);
        assert_eq!(t("100k").value("events/s").unwrap(), 100_000.0);
        assert_eq!(t("1.5M").value("events/s").unwrap(), 1_500_000.0);
        assert_eq!(t("1_000").value("bytes").unwrap(), 1000.0);
        assert_eq!(Bound::Number(3.0).value("s").unwrap(), 3.0);
        assert!(t("5ms").value("events/s").is_err());
        assert!(t("5 parsecs").value("s").is_err());
    }

    #[test]
    fn files_parse_and_reject_mistakes() {
        let ts = parse(
            r#"
            [[target]]
            benchmark = "planning/random/1000/total"
            max = "100us"
            [[target]]
            benchmark = "events/x"
            statistic = "p95"
            min = 1e6
            "#,
        )
        .unwrap();
        assert_eq!(ts.len(), 2);
        assert_eq!(ts[0].statistic, "median");
        assert!(parse("[[target]]\nbenchmark = \"a\"\n").is_err());
        assert!(parse("[[target]]\nbenchmark = \"a\"\nmax = 1\nstatistic = \"p42\"\n").is_err());
        assert!(parse("[[target]]\nbenchmark = \"a\"\nmax = 1\ntypo = 2\n").is_err());
        assert_eq!(seed().len(), 3);
    }

    #[test]
    fn evaluation_meets_misses_and_skips() {
        let mut report = crate::report::tests::sample();
        report.quick = false;
        report.records.push(Record::new(
            "events/memory/rate",
            "",
            "events/s",
            true,
            vec![2e5, 2e5, 2e5],
        ));
        let ts = parse(
            r#"
            [[target]]
            benchmark = "planning/random/10/total"
            max = "1ms"
            [[target]]
            benchmark = "planning/random/10/total"
            max = "1us"
            [[target]]
            benchmark = "events/memory/rate"
            min = "1M"
            [[target]]
            benchmark = "planning/missing"
            max = 1
            [[target]]
            benchmark = "coordination/x"
            max = 1
            "#,
        )
        .unwrap();
        let out = evaluate(&ts, &report);
        let met: Vec<Option<bool>> = out.iter().map(|o| o.met).collect();
        assert_eq!(
            met,
            [Some(true), Some(false), Some(false), Some(false), None]
        );
        assert!(out[1].message.contains("MISS"), "{}", out[1].message);
        assert!(out[1].message.contains("15.00 µs"), "{}", out[1].message);
        // At --quick sizes a missing benchmark is skipped, not missed.
        report.quick = true;
        assert_eq!(evaluate(&ts, &report)[3].met, None);
    }

    #[test]
    fn a_ceiling_target_bounds_the_share_and_server_backends_not_run_are_skipped() {
        let mut report = crate::report::tests::sample();
        report.quick = false;
        let top = Record::new(
            "events/ceiling/redis/8p/batch1000",
            "",
            "events/s",
            true,
            vec![5e5],
        );
        let rate = Record::new(
            "events/publish/redis/8p/batch1000",
            "",
            "events/s",
            true,
            vec![3e5],
        );
        report.records.push(rate.within(&top));
        report.records.push(top);
        let ts = parse(
            r#"
            [[target]]
            benchmark = "events/publish/redis/8p/batch1000"
            statistic = "ceiling"
            min = 0.8
            [[target]]
            benchmark = "events/publish/redis/8p/batch1000"
            statistic = "ceiling"
            min = 0.5
            [[target]]
            benchmark = "planning/random/10/total"
            statistic = "ceiling"
            max = 1
            [[target]]
            benchmark = "events/publish/nats/8p/batch1000"
            min = "150k"
            [[target]]
            benchmark = "events/publish/redis/1p/batch1"
            min = "150k"
            "#,
        )
        .unwrap();
        let out = evaluate(&ts, &report);
        let met: Vec<Option<bool>> = out.iter().map(|o| o.met).collect();
        // 60 % of the ceiling: below 0.8, above 0.5; a record without a
        // ceiling misses a ceiling target; NATS did not run, Redis did (so a
        // missing Redis benchmark is a miss).
        assert_eq!(
            met,
            [Some(false), Some(true), Some(false), None, Some(false)]
        );
        assert!(
            out[0].message.contains("ceiling = 0.600"),
            "{}",
            out[0].message
        );
        assert!(
            out[3].message.contains("--backend nats"),
            "{}",
            out[3].message
        );
    }
}
