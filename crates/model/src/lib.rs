#![doc = include_str!("../README.md")]

mod diag;
pub mod duration;
pub mod expr;
pub mod generate;
mod graph;
mod locate;
mod names;
mod raw;
mod resolve;
mod rng;
mod source;
mod suggest;
mod validate;
mod wfformat;
mod workflow;

use std::time::{Duration, Instant};

pub use diag::{Diagnostic, Location, MAX_DIAGNOSTICS, Path, Report, Seg, Severity};
pub use graph::Graph;
pub use names::{Names, TooLarge};
pub use resolve::{Find, resolve_children};
pub use rng::Rng;
pub use source::{Format, Limits, Source};
pub use suggest::{closest, did_you_mean};
pub use workflow::{
    Agent, Backoff, BreakerPolicy, Command, Compensation, Condition, Coordination, EventFilter,
    ForEach, Latency, Loop, MAX_TENANT, OnItemFailure, OnLimit, Pattern, RetryPolicy, Routes,
    SubWorkflow, Task, Team, Workflow, check_tenant,
};

/// A valid workflow with its graph.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The workflow.
    pub workflow: Workflow,
    /// Its dependencies on integer ids (acyclicity is the planner's check).
    pub graph: Graph,
    /// The task ids, interned (id `i` is `workflow.tasks[i].id`).
    pub names: Names,
    /// Warnings found on the way (no errors).
    pub warnings: Report,
    /// Where the workflow object sits in the document (`$` or `$.workflow`),
    /// for locating findings of later stages.
    pub root: Path,
}

/// Why a document could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {name}: {cause}")]
    Io {
        /// The file.
        name: String,
        /// The cause (part of the message, so not chained again).
        cause: std::io::Error,
    },
    /// The file is over the size limit.
    #[error("{name} is {size} bytes, over the limit of {limit} bytes (raise it with --max-size)")]
    TooLarge {
        /// The file.
        name: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Nothing but whitespace.
    #[error("{name} is empty: expected a workflow with `tasks`")]
    Empty {
        /// The file.
        name: String,
    },
    /// A NUL byte: not a text file.
    #[error("{name} is not a text file (NUL byte at offset {offset}): expected YAML or JSON")]
    Binary {
        /// The file.
        name: String,
        /// Byte offset of the first NUL.
        offset: usize,
    },
    /// Invalid UTF-8.
    #[error("{name}:{}:{}: invalid UTF-8: workflows must be UTF-8 text", location.line, location.column)]
    NotUtf8 {
        /// The file.
        name: String,
        /// Where the first invalid byte is.
        location: Location,
    },
    /// Not well-formed YAML/JSON, or a value of the wrong type.
    #[error("{name}{}: {message}", location.map(|l| format!(":{}:{}", l.line, l.column)).unwrap_or_default())]
    Syntax {
        /// The file.
        name: String,
        /// Where, when known.
        location: Option<Location>,
        /// What went wrong.
        message: String,
    },
    /// Well-formed but invalid: every finding, located.
    #[error("{name}: {} error(s)", report.error_count)]
    Invalid {
        /// The file.
        name: String,
        /// The findings, with locations filled in.
        report: Report,
    },
}

impl Error {
    /// Whether the error is about reading the file rather than its content
    /// (the CLI exits 2 for these, 1 for invalid workflows).
    pub fn is_io(&self) -> bool {
        matches!(self, Error::Io { .. })
    }
}

/// Parses and validates a document.
pub fn load(source: &Source) -> Result<Checked, Error> {
    load_timed(source).map(|(c, _)| c)
}

/// Time spent in each step of [`load_timed`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Parsing the text.
    pub parse: Duration,
    /// Validating the parsed document.
    pub validate: Duration,
}

/// [`load`], also reporting how long parsing and validation took.
pub fn load_timed(source: &Source) -> Result<(Checked, Timings), Error> {
    let started = Instant::now();
    let syntax = |location: Option<Location>, message: String| Error::Syntax {
        name: source.name.clone(),
        location,
        message,
    };
    let parsed = match source.format {
        Format::Json => Parsed::Doc(Box::new(
            {
                let mut de = serde_json::Deserializer::from_str(&source.text);
                serde::de::DeserializeSeed::deserialize(
                    raw::DocumentSeed::for_len(source.text.len(), validate::task),
                    &mut de,
                )
                .and_then(|doc| de.end().map(|()| doc))
            }
            .map_err(|e| {
                syntax(
                    Some(Location {
                        line: e.line(),
                        column: e.column(),
                    }),
                    json_message(&e),
                )
            })?,
        )),
        Format::Yaml => {
            let mut options = serde_saphyr::Options::default();
            options.budget = Some(yaml_budget(source.text.len()));
            // YAML 1.1 reads `y`, `no`, `on` as booleans; a capability called
            // `y` must stay a string.
            options.strict_booleans = true;
            Parsed::Doc(Box::new(
                serde_saphyr::with_deserializer_from_str_with_options(
                    &source.text,
                    options,
                    |de| {
                        serde::de::DeserializeSeed::deserialize(
                            raw::DocumentSeed::for_len(source.text.len(), validate::task),
                            de,
                        )
                    },
                )
                .map_err(|e| {
                    let location = e.location().map(|l| Location {
                        line: l.line() as usize,
                        column: l.column() as usize,
                    });
                    syntax(location, yaml_message(&e))
                })?,
            ))
        }
        Format::WfFormat => {
            let (wf, version) = wfformat::parse(&source.text).map_err(|e| {
                syntax(
                    Some(Location {
                        line: e.line(),
                        column: e.column(),
                    }),
                    format!("not a valid WfFormat instance: {}", json_message(&e)),
                )
            })?;
            Parsed::Workflow(Box::new(wf), version)
        }
    };
    let parse = started.elapsed();
    let started = Instant::now();
    let result = match parsed {
        Parsed::Doc(doc) => validate::document(*doc),
        Parsed::Workflow(wf, version) => validate::workflow(*wf).map(|mut c| {
            if let Some(warning) = wfformat::check_version(&version) {
                c.warnings.push(warning);
            }
            Checked {
                root: wfformat::root(&source.text),
                ..c
            }
        }),
    };
    let validate = started.elapsed();
    match result {
        Ok(mut checked) => {
            source.locate(&mut checked.warnings);
            Ok((checked, Timings { parse, validate }))
        }
        Err(mut report) => {
            if source.format == Format::WfFormat {
                let root = wfformat::root(&source.text);
                for d in &mut report.diagnostics {
                    d.path = Path(root.0.iter().cloned().chain(d.path.0.drain(..)).collect());
                }
            }
            source.locate(&mut report);
            Err(Error::Invalid {
                name: source.name.clone(),
                report,
            })
        }
    }
}

/// Validates a workflow built in code.
pub fn validate(workflow: Workflow) -> Result<Checked, Report> {
    validate::workflow(workflow)
}

/// Reads agents declared outside a workflow document, such as the
/// `[agents.NAME]` tables of `baton.toml` converted to JSON: a map of agent
/// names to agents, with the fields and checks of a workflow's `agents`.
///
/// Diagnostics carry JSON paths under `path` (there is no text to locate them
/// in). A built-in type's missing `command` or `url` is an error here, where
/// an agent exists to be run; in a workflow document it is a warning.
///
/// ```
/// use baton_model::{Command, Path, agents_from_value};
///
/// let at = Path::root().key("agents");
/// let value = serde_json::json!({"build": {"type": "command", "command": ["cargo", "build"]}});
/// let agents = agents_from_value(value, &at).unwrap();
/// assert_eq!(agents[0].command, Some(Command::Argv(vec!["cargo".into(), "build".into()])));
///
/// let bad = serde_json::json!({"review": {"type": "http", "url": "ftp://example.com"}});
/// let report = agents_from_value(bad, &at).unwrap_err();
/// assert_eq!(report.diagnostics[0].path.to_string(), "$.agents.review.url");
/// ```
pub fn agents_from_value(value: serde_json::Value, path: &Path) -> Result<Vec<Agent>, Report> {
    let mut report = Report::default();
    let agents = validate::agents(value, path, Severity::Error, &mut report);
    if report.has_errors() {
        Err(report)
    } else {
        Ok(agents)
    }
}

enum Parsed {
    Doc(Box<raw::Document>),
    /// A WfFormat instance and its `schemaVersion`.
    Workflow(Box<Workflow>, String),
}

/// serde_json appends " at line L column C"; the location is reported apart.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

fn yaml_message(e: &serde_saphyr::Error) -> String {
    // The first line is the message; the rest is a snippet we render ourselves.
    let text = e.to_string();
    let mut first = text.lines().next().unwrap_or("invalid YAML").trim();
    first = first.strip_prefix("error:").unwrap_or(first).trim_start();
    // Drop serde-saphyr's own "line L column C:" prefix: we print file:line:col.
    if let Some(rest) = first.strip_prefix("line ")
        && let Some((_, msg)) = rest.split_once(": ")
    {
        first = msg;
    }
    first.to_string()
}

/// serde-saphyr's default budget suits configuration files; a generated
/// workflow has far more nodes. Scale the node and event budgets with the
/// input, keep the alias and depth limits that stop alias bombs and stack
/// exhaustion.
fn yaml_budget(len: usize) -> serde_saphyr::Budget {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = budget.max_events.max(len);
    budget.max_nodes = budget.max_nodes.max(len);
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(len);
    budget.max_reader_input_bytes = None;
    budget
}
