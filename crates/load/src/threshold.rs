//! Pass/fail criteria, like k6's thresholds: `METRIC[{ENDPOINT}] OP VALUE[UNIT]`.
//!
//! ```text
//! http_req_p99<100ms                       every request's p99 below 100 ms
//! http_req_p99{POST /api/v1/events}<250ms  one endpoint's
//! events_rate>100000                       events accepted per second (k and M suffixes: 100k)
//! failure_rate<0.1%                        failed / all requests (a % or a fraction)
//! failures==0
//! run_p99<2s  coordination_p99<5ms  runs_rate>=10
//! ```
//!
//! | metric | unit |
//! |---|---|
//! | `http_req_min`, `_avg`, `_p50`, `_p90`, `_p95`, `_p99`, `_p999`, `_max` | time (`us`, `ms` (default), `s`) |
//! | `http_reqs`, `failures` | count |
//! | `http_req_rate`, `events_rate`, `runs_rate` | per second |
//! | `failure_rate` | ratio (`0.1%` or `0.001`) |
//! | `events`, `runs`, `runs_failed` | count |
//! | `run_p50`, `run_p95`, `run_p99`, `run_max`, `run_avg` (execute → finished) | time |
//! | `coordination_p50`, `_p95`, `_p99`, `_max`, `_avg` (server-reported) | time |
//! | `server_rss_growth`, `disk_growth` (a server on this machine: `--spawn-server`; from the end of the warm-up, the first fifth of the run, to the end) | bytes (`kB`, `MB`, `GB`, `KiB`, `MiB`, `GiB`) |
//! | `server_fds_growth` (the same, open file descriptors) | count |
//!
//! Operators: `<`, `<=`, `>`, `>=`, `==`. A `{ENDPOINT}` (`METHOD route`, as in
//! the table) applies to the `http_req_*`, `http_reqs`, `failures` and
//! `failure_rate` metrics.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::Report;
use crate::stats::{EndpointReport, Latency};

/// What a metric's value means, for parsing and printing values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Milliseconds.
    Time,
    /// A fraction (printed as a %).
    Ratio,
    /// A count or a rate.
    Number,
    /// Bytes.
    Bytes,
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
}

impl Op {
    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Op::Lt => a < b,
            Op::Le => a <= b,
            Op::Gt => a > b,
            Op::Ge => a >= b,
            Op::Eq => a == b,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::Eq => "==",
        }
    }
}

/// One threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// As written.
    pub text: String,
    /// The metric's name.
    pub metric: String,
    /// `METHOD route`, when the threshold is about one endpoint.
    pub endpoint: Option<String>,
    /// The comparison.
    pub op: Op,
    /// The bound, in the metric's base unit (ms, fraction, count).
    pub value: f64,
    unit: Unit,
}

const TIME_METRICS: [&str; 8] = ["min", "avg", "p50", "p90", "p95", "p99", "p999", "max"];

fn unit_of(metric: &str) -> Option<Unit> {
    if let Some(stat) = metric
        .strip_prefix("http_req_")
        .or_else(|| metric.strip_prefix("run_"))
        .or_else(|| metric.strip_prefix("coordination_"))
        && TIME_METRICS.contains(&stat)
    {
        return Some(Unit::Time);
    }
    match metric {
        "failure_rate" => Some(Unit::Ratio),
        "http_reqs" | "failures" | "http_req_rate" | "events" | "events_rate" | "runs"
        | "runs_failed" | "runs_rate" | "server_fds_growth" => Some(Unit::Number),
        "server_rss_growth" | "disk_growth" => Some(Unit::Bytes),
        _ => None,
    }
}

impl FromStr for Threshold {
    type Err = String;
    fn from_str(text: &str) -> Result<Threshold, String> {
        let bad = |why: &str| {
            format!(
                "threshold `{text}`: {why}; expected METRIC[{{ENDPOINT}}] OP VALUE, e.g. 'http_req_p99<100ms', 'failure_rate<0.1%', 'events_rate>100k'"
            )
        };
        let at = text
            .find(['<', '>', '='])
            .ok_or_else(|| bad("no comparison (<, <=, >, >=, ==)"))?;
        let (lhs, rest) = text.split_at(at);
        let (op, rhs) = if let Some(r) = rest.strip_prefix("<=") {
            (Op::Le, r)
        } else if let Some(r) = rest.strip_prefix(">=") {
            (Op::Ge, r)
        } else if let Some(r) = rest.strip_prefix("==") {
            (Op::Eq, r)
        } else if let Some(r) = rest.strip_prefix('<') {
            (Op::Lt, r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (Op::Gt, r)
        } else {
            return Err(bad("`=` alone is not a comparison: use =="));
        };
        let lhs = lhs.trim();
        let (metric, endpoint) = match lhs.split_once('{') {
            Some((m, e)) => {
                let e = e
                    .strip_suffix('}')
                    .ok_or_else(|| bad("`{` without a closing `}`"))?;
                (m.trim(), Some(e.trim().to_string()))
            }
            None => (lhs, None),
        };
        let unit = unit_of(metric).ok_or_else(|| {
            bad(&format!(
                "unknown metric `{metric}` (http_req_p99, http_req_rate, failure_rate, failures, events_rate, runs_rate, run_p99, coordination_p99, ...)"
            ))
        })?;
        if endpoint.is_some() && !(metric.starts_with("http_req") || metric.starts_with("failure"))
        {
            return Err(bad(&format!("`{metric}` is not per endpoint")));
        }
        let v = rhs.trim();
        let split = v
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_' || c == '-' || c == 'e'))
            .unwrap_or(v.len());
        let (num, suffix) = v.split_at(split);
        let n: f64 = num
            .replace('_', "")
            .parse()
            .map_err(|_| bad(&format!("`{v}` is not a number")))?;
        let value = match (unit, suffix.trim()) {
            (Unit::Time, "" | "ms") => n,
            (Unit::Time, "us" | "µs") => n / 1000.0,
            (Unit::Time, "s") => n * 1000.0,
            (Unit::Time, s) => return Err(bad(&format!("`{s}` is not a time unit (us, ms, s)"))),
            (Unit::Ratio, "%") => n / 100.0,
            (Unit::Ratio, "") => n,
            (Unit::Ratio, s) => return Err(bad(&format!("`{s}`: a ratio is 0.1% or 0.001"))),
            (Unit::Number, "" | "/s") => n,
            (Unit::Number, "k" | "k/s") => n * 1e3,
            (Unit::Number, "M" | "M/s") => n * 1e6,
            (Unit::Number, s) => return Err(bad(&format!("`{s}` is not a suffix (k, M)"))),
            (Unit::Bytes, "" | "B") => n,
            (Unit::Bytes, "kB" | "KB") => n * 1e3,
            (Unit::Bytes, "MB") => n * 1e6,
            (Unit::Bytes, "GB") => n * 1e9,
            (Unit::Bytes, "KiB") => n * 1024.0,
            (Unit::Bytes, "MiB") => n * 1048576.0,
            (Unit::Bytes, "GiB") => n * 1073741824.0,
            (Unit::Bytes, s) => {
                return Err(bad(&format!(
                    "`{s}` is not a size unit (kB, MB, GB, KiB, MiB, GiB)"
                )));
            }
        };
        Ok(Threshold {
            text: text.to_string(),
            metric: metric.to_string(),
            endpoint,
            op,
            value,
            unit,
        })
    }
}

fn time_stat(l: &Latency, stat: &str) -> f64 {
    match stat {
        "min" => l.min_ms,
        "avg" => l.avg_ms,
        "p50" => l.p50_ms,
        "p90" => l.p90_ms,
        "p95" => l.p95_ms,
        "p99" => l.p99_ms,
        "p999" => l.p999_ms,
        _ => l.max_ms,
    }
}

impl Threshold {
    /// The measured value in `report`, or why there is none.
    pub fn measure(&self, report: &Report) -> Result<f64, String> {
        let row: &EndpointReport = match &self.endpoint {
            None => &report.total,
            Some(name) => report
                .endpoints
                .iter()
                .find(|e| e.full_name() == *name)
                .ok_or_else(|| {
                    let known: Vec<String> =
                        report.endpoints.iter().map(|e| e.full_name()).collect();
                    format!("no requests to `{name}` (measured: {})", known.join(", "))
                })?,
        };
        let m = self.metric.as_str();
        if let Some(what) = m.strip_suffix("_growth") {
            let g = report.server.as_ref().ok_or_else(|| {
                "no server samples: growth needs a server on this machine (--spawn-server) and a run of several seconds".to_string()
            })?;
            return match what {
                "server_rss" => Ok(g.rss_growth()),
                "server_fds" => Ok(g.fds_growth()),
                _ => g
                    .disk_growth()
                    .ok_or_else(|| "the data directory was not sampled".to_string()),
            };
        }
        Ok(
            if let Some(stat) = m
                .strip_prefix("http_req_")
                .filter(|s| TIME_METRICS.contains(s))
            {
                time_stat(&row.latency, stat)
            } else if let Some(stat) = m.strip_prefix("run_").filter(|s| TIME_METRICS.contains(s)) {
                time_stat(&report.runs.end_to_end, stat)
            } else if let Some(stat) = m.strip_prefix("coordination_") {
                time_stat(&report.runs.coordination_overhead, stat)
            } else {
                match m {
                    "http_reqs" => row.requests as f64,
                    "http_req_rate" => row.requests_per_s,
                    "failures" => row.failures as f64,
                    "failure_rate" => row.failure_rate(),
                    "events" => report.events as f64,
                    "events_rate" => report.events_per_s,
                    "runs" => report.runs.completed as f64,
                    "runs_failed" => report.runs.failed as f64,
                    _ => report.runs.per_s,
                }
            },
        )
    }

    /// Checks the threshold against `report`.
    pub fn check(&self, report: &Report) -> Outcome {
        let (measured, passed, note) = match self.measure(report) {
            Ok(v) => (Some(v), self.op.holds(v, self.value), None),
            Err(why) => (None, false, Some(why)),
        };
        Outcome {
            threshold: self.text.clone(),
            measured,
            measured_text: measured.map_or_else(|| "—".into(), |v| self.show(v)),
            bound_text: format!("{} {}", self.op.as_str(), self.show(self.value)),
            passed,
            note,
        }
    }

    fn show(&self, v: f64) -> String {
        match self.unit {
            Unit::Time if v < 1.0 => format!("{:.0} µs", v * 1000.0),
            Unit::Time => format!("{v:.2} ms"),
            Unit::Ratio => format!("{:.3}%", v * 100.0),
            Unit::Number if v.fract() == 0.0 => format!("{v:.0}"),
            Unit::Number => format!("{v:.1}"),
            Unit::Bytes => format!("{:.1} MB", v / 1e6),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A checked threshold.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Outcome {
    /// As written.
    pub threshold: String,
    /// The measured value (ms, fraction, count or per second).
    pub measured: Option<f64>,
    /// The measured value, for people.
    pub measured_text: String,
    /// The bound, for people (`< 100.00 ms`).
    pub bound_text: String,
    /// Whether it held.
    pub passed: bool,
    /// Why there is no measured value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Endpoint, EndpointStats, Window};

    fn t(s: &str) -> Threshold {
        s.parse().unwrap()
    }

    #[test]
    fn parses_the_grammar() {
        let a = t("http_req_p99<100ms");
        assert_eq!(
            (a.metric.as_str(), a.op, a.value),
            ("http_req_p99", Op::Lt, 100.0)
        );
        assert_eq!(t("http_req_p99 < 2s").value, 2000.0);
        assert_eq!(t("http_req_p50<=250us").value, 0.25);
        assert_eq!(t("http_req_max<7").value, 7.0);
        assert_eq!(t("events_rate>100000").value, 100_000.0);
        assert_eq!(t("events_rate>=1.5M").value, 1_500_000.0);
        assert_eq!(t("events_rate>100k").op, Op::Gt);
        assert!((t("failure_rate<0.1%").value - 0.001).abs() < 1e-12);
        assert_eq!(t("failure_rate<0.01").value, 0.01);
        assert_eq!(t("failures==0").op, Op::Eq);
        let e = t("http_req_p99{POST /api/v1/events}<250ms");
        assert_eq!(e.endpoint.as_deref(), Some("POST /api/v1/events"));
        for bad in [
            "p99<1",
            "http_req_p99",
            "http_req_p99=1",
            "http_req_p99<1h",
            "failure_rate<1ms",
            "events_rate{GET /healthz}>1",
            "http_req_p99{GET /x<1",
            "http_req_p99<abc",
        ] {
            assert!(bad.parse::<Threshold>().is_err(), "{bad}");
        }
        let msg = "http_req_p9<1".parse::<Threshold>().unwrap_err();
        assert!(msg.contains("unknown metric `http_req_p9`"), "{msg}");
    }

    fn report() -> Report {
        let mut w = Window::default();
        for i in 0..1000u64 {
            w.record(
                Endpoint::Publish,
                1000 + i * 10,
                10,
                (i < 2).then_some(crate::stats::Cause::Status(500)),
            );
        }
        w.events = 1_000_000;
        Report::from_window(&w, 10.0, Default::default())
    }

    #[test]
    fn evaluates_against_a_report() {
        let r = report();
        // 2 of 1,000 failed: 0.2 %.
        let f = t("failure_rate<0.1%").check(&r);
        assert!(!f.passed);
        assert_eq!(f.measured_text, "0.200%");
        assert!(t("failure_rate<0.5%").check(&r).passed);
        assert!(t("events_rate>=100k").check(&r).passed);
        assert!(!t("events_rate>100001").check(&r).passed);
        let p99 = t("http_req_p99<100ms").check(&r);
        assert!(p99.passed, "{p99:?}");
        assert!(!t("http_req_p50<1ms").check(&r).passed);
        assert!(
            t("http_req_p99{POST /api/v1/events}<100ms")
                .check(&r)
                .passed
        );
        let missing = t("http_req_p99{GET /healthz}<1ms").check(&r);
        assert!(!missing.passed);
        assert!(
            missing
                .note
                .unwrap()
                .contains("no requests to `GET /healthz`")
        );
        assert!(t("http_reqs==1000").check(&r).passed);
        let _ = EndpointStats::default();
        // Growth needs server samples.
        let none = t("server_fds_growth<=4").check(&r);
        assert!(!none.passed && none.note.unwrap().contains("--spawn-server"));
        let mut r = r;
        r.server = Some(crate::resources::Growth {
            rss_bytes: (100_000_000, 130_000_000),
            rss_max_bytes: 131_000_000,
            fds: (20, 21),
            disk_bytes: Some((1_000_000, 1_500_000)),
            seconds: 60.0,
        });
        let rss = t("server_rss_growth<20MB").check(&r);
        assert!(!rss.passed);
        assert_eq!(rss.measured_text, "30.0 MB");
        assert!(t("server_rss_growth<50MiB").check(&r).passed);
        assert!(t("server_fds_growth<=1").check(&r).passed);
        assert!(t("disk_growth<1MB").check(&r).passed);
    }

    #[test]
    fn sizes_parse_in_their_units() {
        assert_eq!(t("server_rss_growth<50MB").value, 50e6);
        assert_eq!(t("disk_growth<=1GiB").value, 1073741824.0);
        assert_eq!(t("disk_growth<512kB").value, 512e3);
        assert!("server_rss_growth<5ms".parse::<Threshold>().is_err());
        assert!(
            "server_fds_growth{GET /healthz}<1"
                .parse::<Threshold>()
                .is_err()
        );
    }
}
