//! `--html`: one self-contained page (inline SVG written here, no scripts,
//! no fonts or styles fetched), readable offline: the environment, the
//! charts (planning time vs size on log-log axes with the fitted power law,
//! events/s vs batch size, latency CDFs, every scaling fit), the notes and
//! the full table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use baton_load::chart::{Axis, Chart, Series, Unit, esc};

use crate::report::{Report, format_value};
use crate::stats::Fit;

/// Every chart of a report is this size.
const SIZE: (f64, f64) = (640.0, 360.0);

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
    Series::fit(
        format!("fit: slope {:.2}, R² {:.3}", fit.slope, fit.r2),
        points,
    )
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
            series.push(Series::measured(name, pts));
        }
        out.push(Chart {
            title: "Planning: bytes → plan, median per size (log-log; slope of the fit per shape)"
                .into(),
            x: Axis::log("tasks", Unit::Count),
            y: Axis::log("time", Unit::Seconds),
            series,
            size: SIZE,
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
            x: Axis::log("batch size (events)", Unit::Count),
            y: Axis::log("events/s", Unit::Count),
            series: by_backend
                .into_iter()
                .map(|(name, points)| Series::measured(name, points))
                .collect(),
            size: SIZE,
        });
    }
    // Latency CDFs from the merged distributions, their series in the batch
    // chart's order (by backend name), so that a backend has one colour.
    for kind in ["publish", "consume", "end_to_end"] {
        let mut series: Vec<Series> = report
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
                        // Microseconds, drawn as seconds.
                        Some((v.max(1.0) * 1e-6, k.strip_prefix('q')?.parse::<f64>().ok()?))
                    })
                    .collect();
                points.sort_by(|a, b| a.1.total_cmp(&b.1));
                Series::measured(r.name.split('/').nth(2).unwrap_or(""), points)
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        series.sort_by(|a, b| a.name.cmp(&b.name));
        if !series.is_empty() {
            out.push(Chart {
                title: format!(
                    "Event log: {kind} latency CDF (batches of 1,000, all samples merged)"
                ),
                x: Axis::log("latency", Unit::Seconds),
                y: Axis::linear("share of events at or under it", Unit::Fraction),
                series,
                size: SIZE,
            });
        }
    }
    // Every scaling fit: `what: y vs x`.
    for fit in &report.fits {
        let (y, x) = fit
            .name
            .split_once(": ")
            .map_or(fit.name.as_str(), |p| p.1)
            .split_once(" vs ")
            .unwrap_or(("median", "size"));
        let y = if y.contains("time") || y.contains("makespan") {
            Axis::log(y, Unit::Seconds)
        } else if y.contains("throughput") {
            Axis::log(format!("{y} (events/s)"), Unit::Count)
        } else {
            Axis::log(y, Unit::Count)
        };
        out.push(Chart {
            title: format!("Scaling: {} — {}", fit.name, fit.verdict),
            x: Axis::log(x, Unit::Count),
            y,
            series: vec![
                Series::measured(
                    "measured",
                    fit.x.iter().copied().zip(fit.y.iter().copied()).collect(),
                ),
                fit_line(fit),
            ],
            size: SIZE,
        });
    }
    out
}

/// When a run was measured.
fn date(e: &crate::env::Environment) -> String {
    if e.started_unix > 0 {
        baton_load::report::utc(e.started_unix)
    } else {
        "date not recorded".into()
    }
}

/// The head of every page, with its style.
const HEAD: &str = "<!doctype html><html lang=en><head><meta charset=utf-8><title>baton bench</title><style>\
body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}\
table{border-collapse:collapse;font-size:12px}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}\
td:first-child,th:first-child{text-align:left;font-family:monospace}.noisy{color:#a60}\
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
            "<p><b>{label}</b>: {}, baton {} ({} build) on {} ({} cores), git <code>{}</code>, load average {:.2}, {} repeats{}.</p>",
            date(e),
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
    let _ = write!(h, "<h1>baton bench {}</h1>", esc(&report.suite));
    if let Some(v) = &report.verdict {
        let _ = write!(
            h,
            "<div class=\"banner {}\"><b>{}</b><ul>",
            if v.passed() { "green" } else { "red" },
            esc(&v.headline())
        );
        // Misses and regressions first: they are why the run failed.
        let mut lines: Vec<(bool, &str)> = v
            .targets
            .iter()
            .map(|t| (t.met != Some(false), t.message.as_str()))
            .collect();
        if let Some(b) = &v.baseline {
            lines.extend(b.regressions.iter().map(|r| (false, r.as_str())));
        }
        lines.sort_by_key(|l| l.0);
        for (ok, line) in lines {
            let _ = write!(
                h,
                "<li{}>{}</li>",
                if ok { "" } else { " class=regression" },
                esc(line)
            );
        }
        h.push_str("</ul></div>");
    }
    let _ = write!(
        h,
        "<p>{}{}; baton {} ({} build, {}) on {} ({} cores, {}); git <code>{}</code>; load average {:.2} before, {:.2} after; {} repeats after a warm-up{}{}.</p>",
        date(e),
        if report.quick { " (quick sizes)" } else { "" },
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
        if report.records.iter().any(|r| r.statistics.noisy) {
            "; <span class=noisy>NOISY</span> marks a benchmark whose repeats spread (median absolute deviation) more than 10% of their median: read its figure with care"
        } else {
            ""
        },
        if report.records.iter().any(|r| r.ceiling.is_some()) {
            "; <i>of ceiling</i> is a figure's share of the machine's own limit for the same workload, measured in this run by a bare version of it (a <code>…/ceiling</code> row; hover the share to see which): near 100% the machine is the limit, far below it Baton is"
        } else {
            ""
        }
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
    h.push_str("<h2>Results</h2><table><tr><th>benchmark</th><th>median</th><th>min</th><th>p95</th><th>max</th><th>noise</th><th>n</th><th>of ceiling</th></tr>");
    for r in &report.records {
        let s = &r.statistics;
        let ceiling = match &r.ceiling {
            Some(c) => format!(
                "<td title=\"{}: {}\">{:.0}%</td>",
                esc(&c.benchmark),
                esc(&format_value(c.median, &r.unit)),
                c.fraction * 100.0
            ),
            None => "<td></td>".into(),
        };
        let _ = write!(
            h,
            "<tr title=\"{}\"{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%{}</td><td>{}</td>{ceiling}</tr>",
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

    /// A backend's publish p99 record with the quantiles a CDF is drawn from.
    fn publish_p99(backend: &str) -> Record {
        let mut lat = Record::new(
            format!("events/latency/{backend}/publish/p99"),
            "",
            "us",
            false,
            vec![5.0],
        );
        lat.derived.insert("q0.5".into(), 3.0);
        lat.derived.insert("q1".into(), 9.0);
        lat
    }

    #[test]
    fn a_backend_has_one_colour_in_every_chart() {
        let mut report = crate::report::tests::sample();
        // Latencies measured memory first, the batch sweep named either way.
        for backend in ["memory", "disk-always"] {
            report.records.push(publish_p99(backend));
            for b in [10, 100] {
                report.records.push(Record::new(
                    format!("events/batch/{backend}/{b}/throughput"),
                    "",
                    "events/s",
                    true,
                    vec![1e5 * b as f64],
                ));
            }
        }
        let orders: Vec<Vec<String>> = charts(&report)
            .iter()
            .filter(|c| c.title.starts_with("Event log"))
            .map(|c| c.series.iter().map(|s| s.name.clone()).collect())
            .collect();
        assert_eq!(orders.len(), 2, "{orders:?}");
        assert!(
            orders.iter().all(|o| o == &["disk-always", "memory"]),
            "{orders:?}"
        );
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
        report.records.push(publish_p99("memory"));
        let page = render(&report);
        assert!(
            !page.contains("<i>of ceiling</i> is"),
            "explained only when shown"
        );
        let top = Record::new("planning/chain/10/ceiling", "", "s", false, vec![2.5e-6]);
        let i = report
            .records
            .iter()
            .position(|r| r.name == "planning/chain/10/total")
            .unwrap();
        report.records[i] = report.records[i].clone().within(&top);
        report.records.push(top);
        let page = render(&report);
        assert!(page.contains("<i>of ceiling</i> is"));
        assert!(page.contains("<td title=\"planning/chain/10/ceiling: 2.50 µs\">25%</td>"));
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
