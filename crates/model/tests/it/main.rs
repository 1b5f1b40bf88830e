//! Integration tests of the workflow language: whole documents in, checked
//! workflows or located diagnostics out.

#![allow(clippy::unwrap_used, reason = "a test's panic is its failure report")]

mod agents;
mod errors;
mod fuzz;
mod inputs;
mod language;
mod roundtrip;

use baton_model::{Error, Format, Report, Source};

/// Loads `text` and returns the rendered report of an invalid document.
pub fn rendered_errors(name: &str, text: &str, format: Format) -> String {
    let src = Source::from_str(name, text, format);
    match baton_model::load(&src) {
        Ok(_) => panic!("{name} should be invalid"),
        Err(Error::Invalid { report, .. }) => src.render(&report),
        Err(other) => other.to_string(),
    }
}

/// Loads `text`, expecting it to be invalid, and returns the report.
pub fn report(text: &str, format: Format) -> Report {
    match baton_model::load(&Source::from_str("wf", text, format)) {
        Err(Error::Invalid { report, .. }) => report,
        Err(other) => panic!("expected validation errors, got: {other}"),
        Ok(_) => panic!("expected validation errors, got a valid workflow"),
    }
}

/// The codes of a report's diagnostics, in order.
pub fn codes(report: &Report) -> Vec<&'static str> {
    report.diagnostics.iter().map(|d| d.code).collect()
}

/// The path of an example or fixture, relative to the workspace.
pub fn repo_file(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}
