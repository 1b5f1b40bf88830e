//! `--html`: one self-contained page (inline SVG written here, no scripts,
//! no fonts or styles fetched), readable offline: the environment, the
//! charts (planning time vs size on log-log axes with the fitted power law,
//! events/s vs batch size, latency CDFs, every scaling fit), the notes and
//! the full table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::{Report, format_value};
use crate::stats::Fit;

const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];

/// One line or set of points.
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
    /// Draw markers (measurements) or a plain line (a fit).
    markers: bool,
}

struct Chart {
    title: String,
    x_label: String,
    y_label: String,
    log_x: bool,
    log_y: bool,
    series: Vec<Series>,
}

const W: f64 = 640.0;
const H: f64 = 360.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 170.0;
const TOP: f64 = 30.0;
const BOTTOM: f64 = 50.0;

struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
}

impl Axis {
    fn new(values: impl Iterator<Item = f64>, log: bool) -> Axis {
        let vals: Vec<f64> = values
            .filter(|v| v.is_finite() && (!log || *v > 0.0))
            .collect();
        let (mut lo, mut hi) = vals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        if !lo.is_finite() {
            (lo, hi) = (1.0, 10.0);
        }
        if log {
            lo = 10f64.powf(lo.log10().floor());
            hi = 10f64.powf(hi.log10().ceil());
            if hi <= lo {
                hi = lo * 10.0;
            }
        } else {
            lo = lo.min(0.0);
            if hi <= lo {
                hi = lo + 1.0;
            }
            hi *= 1.05;
        }
        Axis { lo, hi, log }
    }

    /// 0..1 along the axis.
    fn frac(&self, v: f64) -> f64 {
        if self.log {
            (v.max(1e-300).log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    fn ticks(&self) -> Vec<f64> {
        if self.log {
            let (a, b) = (
                self.lo.log10().round() as i32,
                self.hi.log10().round() as i32,
            );
            let step = ((b - a) / 8).max(1);
            (a..=b)
                .step_by(step as usize)
                .map(|e| 10f64.powi(e))
                .collect()
        } else {
            (0..=5)
                .map(|i| self.lo + (self.hi - self.lo) * i as f64 / 5.0)
                .collect()
        }
    }
}

fn tick_label(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e9 {
        format!("{}G", trim(v / 1e9))
    } else if a >= 1e6 {
        format!("{}M", trim(v / 1e6))
    } else if a >= 1e3 {
        format!("{}k", trim(v / 1e3))
    } else if a >= 1.0 {
        trim(v)
    } else if a >= 1e-3 {
        format!("{}m", trim(v * 1e3))
    } else if a >= 1e-6 {
        format!("{}µ", trim(v * 1e6))
    } else {
        format!("{}n", trim(v * 1e9))
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl Chart {
    fn svg(&self) -> String {
        let xa = Axis::new(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
            self.log_x,
        );
        let ya = Axis::new(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
            self.log_y,
        );
        let pw = W - LEFT - RIGHT;
        let ph = H - TOP - BOTTOM;
        let px = |v: f64| LEFT + xa.frac(v) * pw;
        let py = |v: f64| TOP + (1.0 - ya.frac(v)) * ph;
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" font-family="sans-serif" font-size="11">"#
        );
        let _ = write!(
            s,
            r#"<text x="{}" y="18" font-size="13" font-weight="bold">{}</text>"#,
            LEFT,
            esc(&self.title)
        );
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>"##
        );
        for t in xa.ticks() {
            let x = px(t);
            let _ = write!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + ph,
                TOP + ph + 14.0,
                tick_label(t)
            );
        }
        for t in ya.ticks() {
            let y = py(t);
            let _ = write!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#eee"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
                LEFT + pw,
                LEFT - 4.0,
                y + 4.0,
                tick_label(t)
            );
        }
        let _ = write!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            LEFT + pw / 2.0,
            H - 12.0,
            esc(&self.x_label)
        );
        let _ = write!(
            s,
            r#"<text transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            TOP + ph / 2.0,
            esc(&self.y_label)
        );
        for (i, series) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let pts: Vec<String> = series
                .points
                .iter()
                .filter(|p| {
                    p.0.is_finite()
                        && p.1.is_finite()
                        && (!xa.log || p.0 > 0.0)
                        && (!ya.log || p.1 > 0.0)
                })
                .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
                .collect();
            let dash = if series.markers {
                ""
            } else {
                r#" stroke-dasharray="5 3""#
            };
            let _ = write!(
                s,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{}"/>"#,
                pts.join(" ")
            );
            if series.markers {
                for p in &pts {
                    let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
                    let _ = write!(s, r#"<circle cx="{x}" cy="{y}" r="3" fill="{color}"/>"#);
                }
            }
            let ly = TOP + 12.0 + i as f64 * 16.0;
            let _ = write!(
                s,
                r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                LEFT + pw + 10.0,
                LEFT + pw + 28.0,
                LEFT + pw + 32.0,
                ly + 4.0,
                esc(&series.name)
            );
        }
        s.push_str("</svg>");
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The fitted power law sampled along its x range.
fn fit_line(fit: &Fit) -> Series {
    let (lo, hi) = (
        fit.x.iter().copied().fold(f64::INFINITY, f64::min),
        fit.x.iter().copied().fold(0.0, f64::max),
    );
    let points = (0..=20)
        .map(|i| {
            let x = lo * (hi / lo).powf(i as f64 / 20.0);
            (x, (fit.intercept + fit.slope * x.ln()).exp())
        })
        .collect();
    Series {
        name: format!("fit: slope {:.2}, R² {:.3}", fit.slope, fit.r2),
        points,
        markers: false,
    }
}

fn charts(report: &Report) -> Vec<Chart> {
    let mut out = Vec::new();
    // Planning: total time vs tasks, per shape, with a fit per shape.
    let mut by_shape: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &report.records {
        let parts: Vec<&str> = r.name.split('/').collect();
        if parts.len() == 4
            && parts[0] == "planning"
            && parts[3] == "total"
            && parts[1] != "trace"
            && let Ok(n) = parts[2].parse::<f64>()
        {
            by_shape
                .entry(parts[1].to_string())
                .or_default()
                .push((n, r.statistics.median));
        }
    }
    if !by_shape.is_empty() {
        let mut series = Vec::new();
        for (shape, pts) in by_shape {
            let name = match Fit::power_law(&shape, &pts) {
                Some(f) => format!("{shape} (slope {:.2})", f.slope),
                None => shape,
            };
            series.push(Series {
                name,
                points: pts,
                markers: true,
            });
        }
        out.push(Chart {
            title: "Planning: bytes → plan, median per size (log-log; slope of the fit per shape)"
                .into(),
            x_label: "tasks".into(),
            y_label: "seconds".into(),
            log_x: true,
            log_y: true,
            series,
        });
    }
    // Events/s vs batch size.
    let mut by_backend: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in &report.records {
        let parts: Vec<&str> = r.name.split('/').collect();
        // events/batch/<backend>/<batch>/throughput
        if parts.len() == 5
            && parts[0] == "events"
            && parts[1] == "batch"
            && parts[4] == "throughput"
            && let Ok(b) = parts[3].parse::<f64>()
        {
            by_backend
                .entry(parts[2].to_string())
                .or_default()
                .push((b, r.statistics.median));
        }
    }
    if !by_backend.is_empty() {
        out.push(Chart {
            title: "Event log: events/s vs batch size (1 producer, 1 consumer)".into(),
            x_label: "batch size (events)".into(),
            y_label: "events/s".into(),
            log_x: true,
            log_y: true,
            series: by_backend
                .into_iter()
                .map(|(name, points)| Series {
                    name,
                    points,
                    markers: true,
                })
                .collect(),
        });
    }
    // Latency CDFs from the merged distributions.
    for kind in ["publish", "consume", "end_to_end"] {
        let series: Vec<Series> = report
            .records
            .iter()
            .filter(|r| {
                r.name.starts_with("events/latency/") && r.name.ends_with(&format!("/{kind}/p99"))
            })
            .map(|r| {
                let mut points: Vec<(f64, f64)> = r
                    .derived
                    .iter()
                    .filter_map(|(k, v)| {
                        Some((v.max(1.0), k.strip_prefix('q')?.parse::<f64>().ok()?))
                    })
                    .collect();
                points.sort_by(|a, b| a.1.total_cmp(&b.1));
                Series {
                    name: r.name.split('/').nth(2).unwrap_or("").to_string(),
                    points,
                    markers: true,
                }
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if !series.is_empty() {
            out.push(Chart {
                title: format!(
                    "Event log: {kind} latency CDF (batches of 1,000, all samples merged)"
                ),
                x_label: "latency (µs)".into(),
                y_label: "fraction ≤ latency".into(),
                log_x: true,
                log_y: false,
                series,
            });
        }
    }
    // Every scaling fit.
    for fit in &report.fits {
        out.push(Chart {
            title: format!("Scaling: {} — {}", fit.name, fit.verdict),
            x_label: fit.name.rsplit(" vs ").next().unwrap_or("size").to_string(),
            y_label: "median".into(),
            log_x: true,
            log_y: true,
            series: vec![
                Series {
                    name: "measured".into(),
                    points: fit.x.iter().copied().zip(fit.y.iter().copied()).collect(),
                    markers: true,
                },
                fit_line(fit),
            ],
        });
    }
    out
}

/// The head of every page, with its style.
const HEAD: &str = "<!doctype html><html lang=en><head><meta charset=utf-8><title>baton bench</title><style>\
body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;font-size:12px}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}\
td:first-child,th:first-child{text-align:left;font-family:monospace}.noisy{color:#b00}\
.regression{color:#b00;font-weight:bold}.improved{color:#070}.quiet{color:#888}\
.banner{padding:.6em 1em;border-radius:4px;margin:1em 0}.red{background:#fde8e8;color:#900}.green{background:#e6f4e6;color:#060}\
svg{margin:1em 0;border:1px solid #ddd}</style></head><body>";

/// The page of `baton bench compare A B --html`: a verdict banner, both
/// runs' machines, and every change with its interval, noise and verdict.
pub fn render_comparison(
    c: &crate::compare::Comparison,
    baseline: &Report,
    now: &Report,
) -> String {
    let mut h = String::from(HEAD);
    let n = c.changes.iter().filter(|x| x.regression).count();
    let _ = write!(
        h,
        "<h1>baton bench compare</h1><div class=\"banner {}\">{}</div>",
        if n > 0 { "red" } else { "green" },
        if n > 0 {
            format!(
                "{n} regression{} of {} compared",
                if n == 1 { "" } else { "s" },
                c.changes.len()
            )
        } else {
            format!("no regression in {} compared", c.changes.len())
        }
    );
    for (label, r) in [("baseline", baseline), ("now", now)] {
        let e = &r.environment;
        let _ = write!(
            h,
            "<p><b>{label}</b>: baton {} ({} build) on {} ({} cores), git <code>{}</code>, load average {:.2}, {} repeats{}.</p>",
            esc(&e.baton_version),
            esc(&e.profile),
            esc(&e.cpu),
            e.cores,
            esc(&e.git_sha),
            e.load_before[0],
            r.repeats,
            if r.quick { ", quick sizes" } else { "" }
        );
    }
    let _ = write!(
        h,
        "<p>A regression is worse by more than {}% and by more than the noise (within and between runs), with the low end of the 95% bootstrap interval beyond {}% too; + is worse. <i>now</i> and <i>change</i> are on the baseline's machine: <i>machine</i> is how much slower a fixed piece of CPU work ran now.</p>",
        c.max_regression, c.max_regression
    );
    h.push_str("<table><tr><th>benchmark</th><th>baseline</th><th>now</th><th>machine</th><th>change</th><th>95% interval</th><th>noise</th><th>verdict</th></tr>");
    // Regressions first, then what a rerun did not show, improvements, the rest.
    let rank = |x: &&crate::compare::Change| match x.verdict() {
        "REGRESSION" => 0,
        "improved" => 2,
        v if v.starts_with("transient") => 1,
        _ => 3,
    };
    let mut changes: Vec<&crate::compare::Change> = c.changes.iter().collect();
    changes.sort_by_key(rank);
    for x in changes {
        let class = match x.verdict() {
            "REGRESSION" => "regression",
            "improved" => "improved",
            _ => "quiet",
        };
        let _ = write!(
            h,
            "<tr class={class}><td>{}</td><td>{}</td><td>{}</td><td>{:.2}×</td><td>{:+.1}%</td><td>[{:+.1}, {:+.1}]%</td><td>{:.1}%{}</td><td>{}</td></tr>",
            esc(&x.name),
            esc(&format_value(x.before, &x.unit)),
            esc(&format_value(x.after, &x.unit)),
            x.machine,
            x.worse_pct,
            x.interval_pct.0,
            x.interval_pct.1,
            x.noise_pct,
            if x.between_runs.1 { "" } else { " (assumed)" },
            x.verdict()
        );
    }
    for m in &c.missing {
        let _ = write!(
            h,
            "<tr class=quiet><td>{}</td><td colspan=7>only in the baseline</td></tr>",
            esc(m)
        );
    }
    for a in &c.added {
        let _ = write!(
            h,
            "<tr class=quiet><td>{}</td><td colspan=7>new (no baseline)</td></tr>",
            esc(a)
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

/// The page.
pub fn render(report: &Report) -> String {
    let e = &report.environment;
    let mut h = String::from(HEAD);
    let _ = write!(
        h,
        "<h1>baton bench {}</h1><p>baton {} ({} build, {}) on {} ({} cores, {}); git <code>{}</code>; load average {:.2} before, {:.2} after; {} repeats after a warm-up{}.</p>",
        esc(&report.suite),
        esc(&e.baton_version),
        esc(&e.profile),
        esc(&e.rustc),
        esc(&e.cpu),
        e.cores,
        esc(&e.os),
        esc(&e.git_sha),
        e.load_before[0],
        e.load_after[0],
        report.repeats,
        if report.quick { ", quick sizes" } else { "" }
    );
    for chart in charts(report) {
        h.push_str(&chart.svg());
        h.push('\n');
    }
    if !report.fits.is_empty() || !report.notes.is_empty() {
        h.push_str("<h2>Verdicts and notes</h2><ul>");
        for f in &report.fits {
            let _ = write!(h, "<li>{}</li>", esc(&f.describe()));
        }
        for n in &report.notes {
            let _ = write!(h, "<li>{}</li>", esc(n));
        }
        h.push_str("</ul>");
    }
    h.push_str("<h2>Results</h2><table><tr><th>benchmark</th><th>median</th><th>min</th><th>p95</th><th>max</th><th>noise</th><th>n</th></tr>");
    for r in &report.records {
        let s = &r.statistics;
        let _ = write!(
            h,
            "<tr title=\"{}\"{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%{}</td><td>{}</td></tr>",
            esc(&r.description),
            if s.noisy { " class=noisy" } else { "" },
            esc(&r.name),
            esc(&format_value(s.median, &r.unit)),
            esc(&format_value(s.min, &r.unit)),
            esc(&format_value(s.p95, &r.unit)),
            esc(&format_value(s.max, &r.unit)),
            s.noise * 100.0,
            if s.noisy { " NOISY" } else { "" },
            s.n
        );
    }
    h.push_str("</table></body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Record;

    #[test]
    fn a_comparison_leads_with_its_verdict_and_its_regressions() {
        let mut base = crate::report::tests::sample();
        let mut now = base.clone();
        for (name, before, after) in [("a/fine", 1.0, 1.0), ("b/<slow>", 1.0, 3.0)] {
            base.records
                .push(Record::new(name, "", "s", false, vec![before; 3]));
            now.records
                .push(Record::new(name, "", "s", false, vec![after; 3]));
        }
        let c = crate::compare::compare(&base, &now, 10.0);
        let page = render_comparison(&c, &base, &now);
        assert!(
            page.contains("banner red\">1 regression of 3 compared"),
            "{page}"
        );
        assert!(page.contains("b/&lt;slow&gt;"), "names are escaped");
        assert!(
            page.find("b/&lt;slow&gt;") < page.find("a/fine"),
            "regressions first"
        );
        assert!(page.contains("(assumed)"));
    }

    #[test]
    fn self_contained_with_charts() {
        let mut report = crate::report::tests::sample();
        for n in [10, 100, 1000] {
            report.records.push(Record::new(
                format!("planning/chain/{n}/total"),
                "",
                "s",
                false,
                vec![n as f64 * 1e-6],
            ));
        }
        let mut lat = Record::new(
            "events/latency/memory/publish/p99",
            "",
            "us",
            false,
            vec![5.0],
        );
        lat.derived.insert("q0.5".into(), 3.0);
        lat.derived.insert("q1".into(), 9.0);
        report.records.push(lat);
        let page = render(&report);
        assert!(page.contains("<svg"));
        assert!(page.contains("Planning: bytes"));
        assert!(page.contains("publish latency CDF"));
        assert!(page.contains("planning/chain/1000/total"));
        // Nothing loaded from elsewhere.
        assert!(!page.contains("<script"));
        assert!(!page.contains("src="));
        assert!(!page.contains("href="));
    }
}
