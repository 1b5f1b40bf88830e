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
    out.push_str(&summary(r));
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

/// What follows the table: failures by cause, events, runs and CPU.
fn summary(r: &Report) -> String {
    let mut out = String::new();
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
    if let Some(g) = &r.server {
        let mb = |b: u64| b as f64 / 1e6;
        // A rate per minute says something over a minute or so; over a few
        // seconds it magnifies noise: the change itself is shown instead.
        let change = |d: f64| {
            if g.seconds >= 30.0 {
                format!("{:+.1} MB/min", d / g.seconds * 60.0 / 1e6)
            } else {
                format!("{:+.1} MB", d / 1e6)
            }
        };
        let _ = writeln!(
            out,
            "server:   memory {:.0} → {:.0} MB ({}, most {:.0} MB), descriptors {} → {}{}",
            mb(g.rss_bytes.0),
            mb(g.rss_bytes.1),
            change(g.rss_growth()),
            mb(g.rss_max_bytes),
            g.fds.0,
            g.fds.1,
            g.disk_bytes.map_or(String::new(), |(a, b)| format!(
                ", data directory {:.0} → {:.0} MB ({})",
                mb(a),
                mb(b),
                change(b as f64 - a as f64)
            ))
        );
        let _ = writeln!(
            out,
            "          (from the end of the warm-up, the first fifth of the run, to the end: {:.0} s)",
            g.seconds
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

/// `secs` (Unix time) as a UTC date and time, `2026-12-07 11:49:13 UTC`.
pub fn utc(secs: u64) -> String {
    // Days to a civil date: Howard Hinnant's algorithm (public domain).
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3_600,
        rem / 60 % 60,
        rem % 60
    )
}

/// One self-contained HTML page: the verdict of the thresholds first (a
/// banner), the run's parameters and date, the table (with Locust's
/// `Aggregated` row once), what the run did besides requests, then
/// requests/s, latency percentiles, users and events over time (inline SVG,
/// no scripts, no network).
pub fn html(r: &Report) -> String {
    use crate::chart::{Axis, Chart, Series, Unit, esc};
    let h = &r.history;
    let pts = |f: &dyn Fn(&crate::Sample) -> f64| -> Vec<(f64, f64)> {
        h.iter().map(|s| (s.t, f(s))).collect()
    };
    let mut out = String::from(
        "<!doctype html><html lang=en><head><meta charset=\"utf-8\"><title>baton load report</title><style>body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}table{border-collapse:collapse}td,th{padding:3px 8px;border-bottom:1px solid #eee;text-align:right}td:nth-child(2),th:nth-child(2){text-align:left}tr.total td{font-weight:bold;border-top:1px solid #999}pre{background:#f6f6f6;padding:8px;white-space:pre-wrap}.banner{padding:.6em 1em;border-radius:4px;margin:1em 0}.red{background:#fde8e8;color:#900}.green{background:#e6f4e6;color:#060}.banner ul{margin:.3em 0 0;padding-left:1.2em}svg{margin:1em 0;border:1px solid #ddd}</style></head><body>",
    );
    let m = &r.meta;
    let _ = write!(out, "<h1>baton load: {}</h1>", esc(&m.scenario));
    if !r.thresholds.is_empty() {
        let missed = r.thresholds.iter().filter(|t| !t.passed).count();
        let _ = write!(
            out,
            "<div class=\"banner {}\"><b>{}</b><ul>",
            if missed > 0 { "red" } else { "green" },
            if missed > 0 {
                format!("MISS: {missed} of {} thresholds missed", r.thresholds.len())
            } else {
                format!("every threshold held ({})", r.thresholds.len())
            }
        );
        for t in &r.thresholds {
            let _ = write!(
                out,
                "<li>{} <code>{}</code>: measured {} (bound {}){}</li>",
                if t.passed { "ok" } else { "<b>MISS</b>" },
                esc(&t.threshold),
                esc(&t.measured_text),
                esc(&t.bound_text),
                t.note
                    .as_deref()
                    .map_or(String::new(), |n| format!(": {}", esc(n)))
            );
        }
        out.push_str("</ul></div>");
    }
    let _ = write!(
        out,
        "<p>{}: {} users ({} loop{}), target {}, {:.1} s, {} iterations, seed {}.</p>",
        utc(m.started),
        m.users,
        esc(&m.mode),
        m.rate.map_or(String::new(), |r| format!(", {r}/s")),
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
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if std::ptr::eq(e, &r.total) {
                " class=total"
            } else {
                ""
            },
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
    let _ = write!(out, "<pre>{}</pre>", esc(summary(r).trim()));
    let chart = |title: &str, y: Axis, series: Vec<Series>| {
        Chart {
            title: title.into(),
            x: Axis::linear("time since the start", Unit::Seconds),
            y,
            series,
            size: (760.0, 260.0),
        }
        .svg()
    };
    out.push_str(&chart(
        "Requests per second",
        Axis::linear("requests/s", Unit::Count),
        vec![
            Series::line("requests/s", "#1f77b4", pts(&|s| s.requests_per_s)),
            Series::line("failures/s", "#d62728", pts(&|s| s.failures_per_s)),
        ],
    ));
    out.push_str("<br>");
    out.push_str(&chart(
        "Response time percentiles (per interval)",
        Axis::linear("response time", Unit::Seconds),
        vec![
            Series::line("p50", "#2ca02c", pts(&|s| s.latency.p50_ms / 1e3)),
            Series::line("p95", "#ff7f0e", pts(&|s| s.latency.p95_ms / 1e3)),
            Series::line("p99", "#d62728", pts(&|s| s.latency.p99_ms / 1e3)),
        ],
    ));
    out.push_str("<br>");
    out.push_str(&chart(
        "Users",
        Axis::linear("users", Unit::Whole),
        vec![Series::line("users", "#9467bd", pts(&|s| s.users as f64))],
    ));
    if h.iter().any(|s| s.server.is_some()) {
        let server =
            |f: &dyn Fn(&crate::resources::ServerSample) -> Option<f64>| -> Vec<(f64, f64)> {
                h.iter()
                    .filter_map(|s| Some((s.t, f(s.server.as_ref()?)?)))
                    .collect()
            };
        // Apart: a data directory tens of times the memory would flatten it.
        out.push_str("<br>");
        out.push_str(&chart(
            "Server resident memory",
            Axis::linear("bytes", Unit::Count),
            vec![Series::line(
                "resident memory",
                "#1f77b4",
                server(&|s| Some(s.rss_bytes as f64)),
            )],
        ));
        out.push_str("<br>");
        out.push_str(&chart(
            "Server data directory",
            Axis::linear("bytes", Unit::Count),
            vec![Series::line(
                "data directory",
                "#ff7f0e",
                server(&|s| s.disk_bytes.map(|b| b as f64)),
            )],
        ));
        out.push_str("<br>");
        out.push_str(&chart(
            "Server file descriptors",
            Axis::linear("open descriptors", Unit::Whole),
            vec![Series::line(
                "descriptors",
                "#9467bd",
                server(&|s| Some(s.fds as f64)),
            )],
        ));
    }
    if r.events > 0 {
        out.push_str("<br>");
        out.push_str(&chart(
            "Events per second",
            Axis::linear("events/s", Unit::Count),
            vec![Series::line(
                "events/s",
                "#8c564b",
                pts(&|s| s.events_per_s),
            )],
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
            server: Some(crate::resources::ServerSample {
                rss_bytes: 50 << 20,
                fds: 20,
                disk_bytes: Some(1 << 20),
            }),
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

    #[test]
    fn html_leads_with_the_verdict_and_shows_the_aggregated_row_once() {
        let mut r = report();
        r.meta.started = 1_796_644_153;
        r.thresholds = vec![crate::threshold::Outcome {
            threshold: "p99<1ms".into(),
            measured: Some(2.0),
            measured_text: "2.00 ms".into(),
            bound_text: "< 1.00 ms".into(),
            passed: false,
            note: None,
        }];
        let page = html(&r);
        let banner = page.find("MISS: 1 of 1 thresholds missed").expect(&page);
        assert!(
            banner < page.find("<table").expect("a table"),
            "the verdict comes first"
        );
        assert!(page.contains("2026-12-07 11:49:13 UTC"), "{page}");
        assert_eq!(page.matches("Aggregated").count(), 1, "{page}");
    }

    #[test]
    fn the_servers_growth_is_a_rate_only_over_a_long_enough_span() {
        let mut r = report();
        let mut g = crate::resources::Growth {
            rss_bytes: (100_000_000, 130_000_000),
            rss_max_bytes: 130_000_000,
            fds: (20, 20),
            disk_bytes: Some((1_000_000, 61_000_000)),
            seconds: 10.0,
        };
        r.server = Some(g);
        let t = table(&r);
        assert!(
            t.contains("memory 100 → 130 MB (+30.0 MB, most 130 MB)"),
            "{t}"
        );
        assert!(t.contains("data directory 1 → 61 MB (+60.0 MB)"), "{t}");
        g.seconds = 60.0;
        r.server = Some(g);
        let t = table(&r);
        assert!(t.contains("(+30.0 MB/min, most 130 MB)"), "{t}");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_796_644_153), "2026-12-07 11:49:13 UTC");
    }
}
