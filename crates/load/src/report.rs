//! A [`Report`] for people (the table), for spreadsheets (Locust's CSV
//! files) and for browsers (one self-contained HTML page).

use std::fmt::Write as _;

use crate::Report;
use crate::stats::{EndpointReport, PERCENTILES};

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn thousands(n: f64) -> String {
    let s = format!("{:.0}", n.max(0.0));
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn row(out: &mut String, e: &EndpointReport) {
    let l = &e.latency;
    let _ = writeln!(
        out,
        "{:<5} {:<31} {:>9} {:>7} {:>6.2}% {:>10.1} {:>8} {:>8} {:>8} {:>8} {:>8}",
        e.method,
        e.name,
        e.requests,
        e.failures,
        e.failure_rate() * 100.0,
        e.requests_per_s,
        ms(l.min_ms),
        ms(l.p50_ms),
        ms(l.p95_ms),
        ms(l.p99_ms),
        ms(l.max_ms),
    );
}

/// The table printed at the end (stdout).
pub fn table(r: &Report) -> String {
    let mut out = String::new();
    let m = &r.meta;
    let _ = writeln!(
        out,
        "baton load: scenario {} against {}, {} users ({} loop{}), {:.1} s, {} iterations",
        m.scenario,
        m.target,
        m.users,
        m.mode,
        m.rate.map_or(String::new(), |r| format!(", {r}/s")),
        r.seconds,
        r.iterations
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<5} {:<31} {:>9} {:>7} {:>7} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "Type",
        "Name",
        "# reqs",
        "# fails",
        "fail%",
        "req/s",
        "min ms",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms"
    );
    let _ = writeln!(out, "{}", "-".repeat(119));
    for e in &r.endpoints {
        row(&mut out, e);
    }
    let _ = writeln!(out, "{}", "-".repeat(119));
    row(&mut out, &r.total);
    let failed: Vec<&EndpointReport> = r.endpoints.iter().filter(|e| e.failures > 0).collect();
    if !failed.is_empty() {
        let _ = writeln!(out, "\nFailures:");
        for e in failed {
            for (cause, n) in &e.failures_by_cause {
                let _ = writeln!(out, "  {:<44} {cause}: {n}", e.full_name());
            }
        }
    }
    let _ = writeln!(out);
    if r.events > 0 {
        let _ = writeln!(
            out,
            "events:   {} accepted, {} events/s",
            thousands(r.events as f64),
            thousands(r.events_per_s)
        );
    }
    let runs = &r.runs;
    if runs.completed + runs.failed > 0 {
        let (e, c) = (&runs.end_to_end, &runs.coordination_overhead);
        let _ = writeln!(
            out,
            "runs:     {} completed, {} failed, {:.1} runs/s; end to end p50 {} ms, p99 {} ms, max {} ms",
            runs.completed,
            runs.failed,
            runs.per_s,
            ms(e.p50_ms),
            ms(e.p99_ms),
            ms(e.max_ms)
        );
        let _ = writeln!(
            out,
            "          coordination overhead (server-reported) p50 {} ms, p99 {} ms, max {} ms",
            ms(c.p50_ms),
            ms(c.p99_ms),
            ms(c.max_ms)
        );
    }
    let cpu = &r.cpu;
    let _ = writeln!(
        out,
        "cpu:      client {:.0}% of a core{} on {} cores, load average {}",
        cpu.client_cores * 100.0,
        cpu.server_cores
            .map_or(String::new(), |s| format!(", server {:.0}%", s * 100.0)),
        cpu.cores,
        cpu.load_average.map_or("?".into(), |l| format!("{l:.2}"))
    );
    if !r.thresholds.is_empty() {
        let _ = writeln!(out, "\nthresholds:");
        for t in &r.thresholds {
            let _ = writeln!(
                out,
                "  {} {:<40} measured {} (bound {}){}",
                if t.passed { "ok  " } else { "MISS" },
                t.threshold,
                t.measured_text,
                t.bound_text,
                t.note
                    .as_deref()
                    .map_or(String::new(), |n| format!(": {n}"))
            );
        }
    }
    out
}

/// Warnings about how far the figures can be trusted (stderr).
pub fn caveats(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let cpu = &r.cpu;
    // A tokio worker per core: past ~90 % of the cores the client is the limit.
    if cpu.client_cores >= 0.9 * cpu.cores as f64 * if r.meta.loopback { 0.5 } else { 1.0 } {
        out.push(format!(
            "the load generator used {:.0}% of a core ({} cores here): the figures may be limited by the client, not the server",
            cpu.client_cores * 100.0,
            cpu.cores
        ));
    }
    out
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Locust's `PREFIX_stats.csv`.
pub fn stats_csv(r: &Report) -> String {
    let mut out = String::from(
        "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s",
    );
    for p in PERCENTILES {
        let _ = write!(out, ",{}", pct_label(p));
    }
    out.push('\n');
    for e in r.endpoints.iter().chain(std::iter::once(&r.total)) {
        let l = &e.latency;
        let _ = write!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{}",
            e.method,
            csv_field(&e.name),
            e.requests,
            e.failures,
            l.p50_ms,
            l.avg_ms,
            l.min_ms,
            l.max_ms,
            e.avg_bytes,
            e.requests_per_s,
            e.failures_per_s
        );
        for v in &l.percentiles_ms {
            let _ = write!(out, ",{v}");
        }
        out.push('\n');
    }
    out
}

fn pct_label(p: f64) -> String {
    let v = p * 100.0;
    if v.fract() == 0.0 {
        format!("{v:.0}%")
    } else {
        format!("{}%", (v * 100.0).round() / 100.0)
    }
}

/// Locust's `PREFIX_stats_history.csv` (the `Aggregated` row of each interval).
pub fn history_csv(r: &Report) -> String {
    let mut out = String::from("Timestamp,User Count,Type,Name,Requests/s,Failures/s");
    for p in PERCENTILES {
        let _ = write!(out, ",{}", pct_label(p));
    }
    out.push_str(",Total Request Count,Total Failure Count,Total Median Response Time,Total Average Response Time,Total Min Response Time,Total Max Response Time,Total Average Content Size\n");
    for s in &r.history {
        let _ = write!(
            out,
            "{},{},,Aggregated,{},{}",
            s.timestamp, s.users, s.requests_per_s, s.failures_per_s
        );
        for v in &s.latency.percentiles_ms {
            let _ = write!(out, ",{v}");
        }
        let t = &s.total_latency;
        let _ = writeln!(
            out,
            ",{},{},{},{},{},{},{}",
            s.total_requests,
            s.total_failures,
            t.p50_ms,
            t.avg_ms,
            t.min_ms,
            t.max_ms,
            s.total_avg_bytes
        );
    }
    out
}

/// Locust's `PREFIX_failures.csv`.
pub fn failures_csv(r: &Report) -> String {
    let mut out = String::from("Method,Name,Error,Occurrences\n");
    for e in &r.endpoints {
        for (cause, n) in &e.failures_by_cause {
            let _ = writeln!(
                out,
                "{},{},{},{n}",
                e.method,
                csv_field(&e.name),
                csv_field(cause)
            );
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A line chart as inline SVG: `series` are (label, colour, points).
/// A chart's line: label, colour, (seconds, value) points.
type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

fn chart(title: &str, unit: &str, series: &[Series<'_>]) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 240.0, 64.0, 16.0, 28.0, 36.0);
    let xmax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.0))
        .fold(1e-9f64, f64::max);
    let ymax = series
        .iter()
        .flat_map(|s| s.2.iter().map(|p| p.1))
        .fold(1e-9f64, f64::max)
        * 1.1;
    let x = |v: f64| left + v / xmax * (w - left - right);
    let y = |v: f64| h - bottom - v / ymax * (h - top - bottom);
    let mut out = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img"><title>{t}</title><text x="{left}" y="18" class="title">{t}</text>"#,
        t = esc(title)
    );
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r##"<line x1="{left}" x2="{x2}" y1="{yy:.1}" y2="{yy:.1}" stroke="#ddd"/><text x="{tx}" y="{ty:.1}" text-anchor="end" class="axis">{label}</text>"##,
            x2 = w - right,
            yy = y(v),
            tx = left - 6.0,
            ty = y(v) + 4.0,
            label = if v >= 1000.0 {
                thousands(v)
            } else {
                format!("{v:.3}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            },
        );
    }
    for i in 0..=5 {
        let v = xmax * f64::from(i) / 5.0;
        let _ = write!(
            out,
            r#"<text x="{tx:.1}" y="{ty}" text-anchor="middle" class="axis">{v:.0} s</text>"#,
            tx = x(v),
            ty = h - bottom + 16.0
        );
    }
    let _ = write!(
        out,
        r#"<text x="12" y="{}" class="axis" transform="rotate(-90 12 {})">{}</text>"#,
        h / 2.0,
        h / 2.0,
        esc(unit)
    );
    for (i, (label, colour, points)) in series.iter().enumerate() {
        let path: Vec<String> = points
            .iter()
            .map(|&(a, b)| format!("{:.1},{:.1}", x(a), y(b)))
            .collect();
        let _ = write!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/><rect x="{lx}" y="8" width="10" height="10" fill="{colour}"/><text x="{tx}" y="17" class="axis">{}</text>"#,
            path.join(" "),
            esc(label),
            lx = w - right - 300.0 + i as f64 * 100.0,
            tx = w - right - 286.0 + i as f64 * 100.0,
        );
    }
    out.push_str("</svg>");
    out
}

/// One self-contained HTML page: the table, requests/s, latency
/// percentiles and users over time as hand-written inline SVG (no scripts,
/// no network).
pub fn html(r: &Report) -> String {
    let h = &r.history;
    let pts = |f: &dyn Fn(&crate::Sample) -> f64| -> Vec<(f64, f64)> {
        h.iter().map(|s| (s.t, f(s))).collect()
    };
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>baton load report</title><style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}td:nth-child(2),th:nth-child(2){text-align:left}.title{font:bold 13px sans-serif}.axis{font:11px sans-serif;fill:#555}pre{background:#f6f6f6;padding:8px}.miss{color:#b00}</style></head><body>",
    );
    let m = &r.meta;
    let _ = write!(
        out,
        "<h1>baton load: {}</h1><p>{} users ({} loop), target {}, {:.1} s, {} iterations, seed {}.</p>",
        esc(&m.scenario),
        m.users,
        esc(&m.mode),
        esc(&m.target),
        r.seconds,
        r.iterations,
        m.seed
    );
    out.push_str("<table><tr><th>Type</th><th>Name</th><th># reqs</th><th># fails</th><th>req/s</th><th>min ms</th><th>p50 ms</th><th>p95 ms</th><th>p99 ms</th><th>max ms</th></tr>");
    for e in r.endpoints.iter().chain(std::iter::once(&r.total)) {
        let l = &e.latency;
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            e.method,
            esc(&e.name),
            e.requests,
            e.failures,
            e.requests_per_s,
            ms(l.min_ms),
            ms(l.p50_ms),
            ms(l.p95_ms),
            ms(l.p99_ms),
            ms(l.max_ms)
        );
    }
    out.push_str("</table>");
    let _ = write!(
        out,
        "<pre>{}</pre>",
        esc(table(r)
            .split_once("\n\n")
            .map_or("", |x| x.1)
            .rsplit_once("-\n")
            .map_or("", |x| x.1))
    );
    out.push_str(&chart(
        "Requests per second",
        "req/s",
        &[
            ("requests/s", "#1f77b4", pts(&|s| s.requests_per_s)),
            ("failures/s", "#d62728", pts(&|s| s.failures_per_s)),
        ],
    ));
    out.push_str("<br>");
    out.push_str(&chart(
        "Response time percentiles (per interval)",
        "ms",
        &[
            ("p50", "#2ca02c", pts(&|s| s.latency.p50_ms)),
            ("p95", "#ff7f0e", pts(&|s| s.latency.p95_ms)),
            ("p99", "#d62728", pts(&|s| s.latency.p99_ms)),
        ],
    ));
    out.push_str("<br>");
    out.push_str(&chart(
        "Users",
        "users",
        &[("users", "#9467bd", pts(&|s| s.users as f64))],
    ));
    if r.events > 0 {
        out.push_str("<br>");
        out.push_str(&chart(
            "Events per second",
            "events/s",
            &[("events/s", "#8c564b", pts(&|s| s.events_per_s))],
        ));
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Cause, Endpoint, Window};

    fn report() -> Report {
        let mut w = Window::default();
        w.record(Endpoint::Publish, 1500, 40, None);
        w.record(Endpoint::Health, 200, 15, Some(Cause::Status(503)));
        let mut r = Report::from_window(&w, 1.0, Default::default());
        let s = crate::Sample {
            t: 1.0,
            timestamp: 1_800_000_000,
            users: 2,
            requests_per_s: 2.0,
            failures_per_s: 1.0,
            events_per_s: 0.0,
            latency: r.total.latency.clone(),
            total_requests: 2,
            total_failures: 1,
            total_latency: r.total.latency.clone(),
            total_avg_bytes: 27.5,
        };
        r.history.push(s);
        r
    }

    #[test]
    fn stats_csv_has_locusts_columns() {
        let csv = stats_csv(&report());
        let mut lines = csv.lines();
        assert_eq!(
            lines.next().unwrap(),
            "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
        );
        let publish: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(publish.len(), 22);
        assert_eq!(&publish[..4], ["POST", "/api/v1/events", "1", "0"]);
        let total: Vec<&str> = lines.last().unwrap().split(',').collect();
        assert_eq!(&total[..4], ["", "Aggregated", "2", "1"]);
    }

    #[test]
    fn history_csv_has_locusts_columns() {
        let csv = history_csv(&report());
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(
            header,
            [
                "Timestamp",
                "User Count",
                "Type",
                "Name",
                "Requests/s",
                "Failures/s",
                "50%",
                "66%",
                "75%",
                "80%",
                "90%",
                "95%",
                "98%",
                "99%",
                "99.9%",
                "99.99%",
                "100%",
                "Total Request Count",
                "Total Failure Count",
                "Total Median Response Time",
                "Total Average Response Time",
                "Total Min Response Time",
                "Total Max Response Time",
                "Total Average Content Size"
            ]
        );
        let row: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(row.len(), header.len());
        assert_eq!(&row[..4], ["1800000000", "2", "", "Aggregated"]);
        assert_eq!(
            failures_csv(&report()),
            "Method,Name,Error,Occurrences\nGET,/healthz,status 503,1\n"
        );
    }

    #[test]
    fn table_lists_endpoints_and_failures() {
        let t = table(&report());
        assert!(t.contains("POST  /api/v1/events"), "{t}");
        assert!(t.contains("Aggregated"));
        assert!(t.contains("GET /healthz"));
        assert!(t.contains("status 503: 1"));
    }

    #[test]
    fn html_is_self_contained() {
        let page = html(&report());
        assert!(page.contains("<svg"));
        assert!(!page.contains("<script"));
        assert!(!page.contains("src=\"http"));
        assert!(!page.contains("href=\"http"));
    }
}
