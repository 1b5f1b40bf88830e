//! Import of WfCommons WfFormat instances (schemas 1.4 to 1.6).
//!
//! Tasks come from `workflow.specification.tasks` (1.5+) or `workflow.tasks`
//! (1.4 and before), dependencies from `parents`, estimates from
//! `workflow.execution.tasks[].runtimeInSeconds` or the task's own `runtime`.

use std::time::Duration;

use serde::Deserialize;

use crate::diag::{Diagnostic, Path, Seg};
use crate::workflow::{Task, Workflow};

#[derive(Deserialize)]
struct Instance {
    #[serde(default)]
    name: Option<String>,
    #[serde(rename = "schemaVersion")]
    schema_version: String,
    workflow: Body,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    specification: Option<Specification>,
    #[serde(default)]
    execution: Option<Execution>,
    #[serde(default)]
    tasks: Option<Vec<WfTask>>,
}

#[derive(Deserialize)]
struct Specification {
    tasks: Vec<WfTask>,
}

#[derive(Deserialize)]
struct Execution {
    #[serde(default)]
    tasks: Vec<ExecutedTask>,
}

#[derive(Deserialize)]
struct WfTask {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    parents: Vec<String>,
    #[serde(default, alias = "runtimeInSeconds")]
    runtime: Option<f64>,
}

#[derive(Deserialize)]
struct ExecutedTask {
    id: String,
    #[serde(default, alias = "runtime")]
    #[serde(rename = "runtimeInSeconds")]
    runtime_in_seconds: Option<f64>,
}

/// Whether a JSON text looks like a WfFormat instance: WfFormat files carry
/// `schemaVersion` at the top level, near the start.
pub(crate) fn detect(text: &str) -> bool {
    let mut end = text.len().min(8192);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let head = &text[..end];
    head.contains("\"schemaVersion\"")
}

/// The schema versions this importer reads (those of WfCommons' published
/// traces and of its generator).
const SUPPORTED: [&str; 3] = ["1.4", "1.5", "1.6"];

/// A warning when `schemaVersion` is not one of [`SUPPORTED`]: the import
/// may still work, but nobody checked.
pub(crate) fn check_version(version: &str) -> Option<Diagnostic> {
    let major_minor: String = version.split('.').take(2).collect::<Vec<_>>().join(".");
    (!SUPPORTED.contains(&major_minor.as_str())).then(|| {
        Diagnostic::warning(
            "wfformat-version",
            Path::root().key("schemaVersion"),
            format!("WfFormat schemaVersion {version} is not one Baton was built for"),
        )
        .with_hint(format!(
            "supported: {}; check the plan against the trace",
            SUPPORTED.join(", ")
        ))
    })
}

/// Where tasks live in the file, for locating diagnostics.
pub(crate) fn root(text: &str) -> Path {
    let mut p = Path::root().key("workflow");
    if text.contains("\"specification\"") {
        p = p.key("specification");
    }
    p
}

/// Diagnostics speak of `depends_on`; in WfFormat that is `parents`.
pub(crate) fn source_path(p: &Path) -> Path {
    Path(
        p.0.iter()
            .map(|s| match s {
                Seg::Key(k) if k == "depends_on" => Seg::Key("parents".into()),
                other => other.clone(),
            })
            .collect(),
    )
}

pub(crate) fn parse(text: &str) -> Result<(Workflow, String), serde_json::Error> {
    let inst: Instance = serde_json::from_str(text)?;
    let Body {
        specification,
        execution,
        tasks,
    } = inst.workflow;
    let raw = specification.map(|s| s.tasks).or(tasks).unwrap_or_default();
    let runtimes: foldhash::HashMap<String, f64> = execution
        .map(|e| {
            e.tasks
                .into_iter()
                .filter_map(|t| Some((t.id, t.runtime_in_seconds?)))
                .collect()
        })
        .unwrap_or_default();
    let tasks = raw
        .into_iter()
        .map(|t| {
            let id = t.id.or(t.name).unwrap_or_default();
            let runtime = runtimes.get(&id).copied().or(t.runtime);
            Task {
                estimate: runtime
                    .filter(|r| r.is_finite() && *r >= 0.0)
                    .and_then(|r| Duration::try_from_secs_f64(r).ok()),
                depends_on: t.parents,
                id,
                ..Task::default()
            }
        })
        .collect();
    Ok((
        Workflow {
            name: inst.name,
            tasks,
            ..Workflow::default()
        },
        inst.schema_version,
    ))
}
