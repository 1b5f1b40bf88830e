//! Validation: from the parsed document to a [`Workflow`] and its [`Graph`],
//! reporting every problem at once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::diag::{Diagnostic, Path, Report, Severity};
use crate::expr::Expr;
use crate::graph::Graph;
use crate::names::Names;
use crate::raw::{Document, RawTask, RawWorkflow, TASK_FIELDS, WORKFLOW_FIELDS};
use crate::suggest::did_you_mean;
use crate::workflow::{
    Agent, Backoff, Compensation, Condition, Coordination, EventFilter, Pattern, RetryPolicy,
    SubWorkflow, Task, Workflow,
};
use crate::{Checked, duration};

mod agents;
mod dynamic;

pub(crate) use agents::agents;

/// Above this many tasks, "did you mean" for unknown dependencies is skipped:
/// it scans every id, and a huge generated file is rarely hand-edited.
const SUGGEST_LIMIT: usize = 100_000;

pub(crate) fn document(mut doc: Document) -> Result<Checked, Report> {
    let root = if doc.wrapped {
        Path::root().key("workflow")
    } else {
        Path::root()
    };
    let mut report = std::mem::take(&mut doc.report);
    for key in &doc.unknown_top {
        report.push(
            Diagnostic::error(
                "unknown-field",
                Path::root().key(key),
                format!("unexpected key `{key}` beside `workflow`"),
            )
            .with_hint("put every workflow field under `workflow:`, or drop the wrapper"),
        );
    }
    let checked = raw_workflow(doc.workflow, &root, &mut report);
    match checked {
        Some(c) if !report.has_errors() => Ok(Checked {
            warnings: report,
            root,
            ..c
        }),
        _ => Err(report),
    }
}

/// Validates a workflow built in code (no source text, paths are relative to
/// the workflow object).
pub(crate) fn workflow(wf: Workflow) -> Result<Checked, Report> {
    let mut report = Report::default();
    let root = Path::root();
    let graph = structure(&wf, &root, &mut report);
    match graph {
        Some((graph, names)) if !report.has_errors() => Ok(Checked {
            workflow: wf,
            graph,
            names,
            warnings: report,
            root,
        }),
        _ => Err(report),
    }
}

fn raw_workflow(raw: RawWorkflow, root: &Path, report: &mut Report) -> Option<Checked> {
    for key in &raw.unknown {
        report.push(unknown_field(
            root.key(key),
            key,
            "workflow",
            WORKFLOW_FIELDS,
        ));
    }
    let mut wf = Workflow {
        name: raw
            .name
            .and_then(|v| scalar_string(v, &root.key("name"), report)),
        version: raw
            .version
            .and_then(|v| scalar_string(v, &root.key("version"), report)),
        orchestration_pattern: raw
            .orchestration_pattern
            .and_then(|v| scalar_string(v, &root.key("orchestration_pattern"), report)),
        agents: raw
            .agents
            .map(|v| agents(v, &root.key("agents"), Severity::Warning, report))
            .unwrap_or_default(),
        tasks: Vec::new(),
        coordination: raw
            .coordination
            .and_then(|v| coordination(v, &root.key("coordination"), report)),
        tenant: raw.tenant.and_then(|v| {
            let at = root.key("tenant");
            let name = scalar_string(v, &at, report)?;
            match crate::workflow::check_tenant(&name) {
                Ok(()) => Some(name),
                Err(message) => {
                    report.push(Diagnostic::error("invalid-tenant", at, message));
                    None
                }
            }
        }),
    };
    let Some(tasks) = raw.tasks else {
        report.push(
            Diagnostic::error("missing-field", root.clone(), "a workflow needs `tasks`")
                .with_hint("add `tasks:` with at least one `{ id: ... }`"),
        );
        return None;
    };
    if tasks.is_empty() {
        report.push(
            Diagnostic::error("no-tasks", root.key("tasks"), "`tasks` is empty")
                .with_hint("a workflow needs at least one task"),
        );
        return None;
    }
    wf.tasks = tasks;
    let (graph, names) = structure(&wf, root, report)?;
    Some(Checked {
        workflow: wf,
        graph,
        names,
        warnings: Report::default(),
        root: root.clone(),
    })
}

fn unknown_field(path: Path, key: &str, what: &str, known: &[&'static str]) -> Diagnostic {
    let hint = did_you_mean(key, known.iter().copied())
        .unwrap_or_else(|| format!("known {what} fields: {}", known.join(", ")));
    Diagnostic::error(
        "unknown-field",
        path,
        format!("unknown {what} field `{key}`"),
    )
    .with_hint(hint)
}

fn type_error(path: Path, expected: &str, got: &Value) -> Diagnostic {
    Diagnostic::error(
        "wrong-type",
        path,
        format!("expected {expected}, found {}", kind(got)),
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

fn scalar_string(v: Value, path: &Path, report: &mut Report) -> Option<String> {
    match v {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        Value::Null => None,
        other => {
            report.push(type_error(path.clone(), "a string", &other));
            None
        }
    }
}

fn string_list(v: Value, path: &Path, report: &mut Report) -> Vec<String> {
    match v {
        Value::Array(items) => items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| scalar_string(item, &path.index(i), report))
            .collect(),
        Value::String(s) => vec![s],
        Value::Null => Vec::new(),
        other => {
            report.push(type_error(path.clone(), "a list of strings", &other));
            Vec::new()
        }
    }
}

/// A whole number from 1 to `u32::MAX`.
fn count(value: &Value, path: &Path, field: &str) -> Result<u32, Diagnostic> {
    value
        .as_u64()
        .filter(|&n| n >= 1)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            Diagnostic::error(
                "bad-value",
                path.clone(),
                format!("`{field}` must be a whole number ≥ 1, found {value}"),
            )
        })
}

fn object(
    v: Value,
    path: &Path,
    expected: &str,
    report: &mut Report,
) -> Option<Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        other => {
            report.push(type_error(path.clone(), expected, &other));
            None
        }
    }
}

fn duration_value(v: &Value, path: impl FnOnce() -> Path, report: &mut Report) -> Option<Duration> {
    let parsed = match v {
        Value::String(s) => duration::parse(s),
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| "not a number".to_string())
            .and_then(|secs| duration::parse(&secs.to_string())),
        other => Err(format!("found {}", kind(other))),
    };
    match parsed {
        Ok(d) => Some(d),
        Err(why) => {
            report.push(
                Diagnostic::error("bad-duration", path(), format!("invalid duration: {why}"))
                    .with_hint("write a duration like `250ms`, `3s`, `1m30s` or `2h` (a bare number is seconds)"),
            );
            None
        }
    }
}

fn coordination(v: Value, path: &Path, report: &mut Report) -> Option<Coordination> {
    const FIELDS: &[&str] = &["type", "event_driven", "graph_based"];
    let map = object(v, path, "a map with `type`", report)?;
    let mut c = Coordination::default();
    for (key, value) in map {
        let p = path.key(&key);
        match key.as_str() {
            "type" => {
                c.kind = scalar_string(value, &p, report).unwrap_or_default();
                if !matches!(c.kind.as_str(), "graph" | "event" | "hybrid") {
                    report.push(
                        Diagnostic::error(
                            "bad-value",
                            p,
                            format!("unknown coordination type `{}`", c.kind),
                        )
                        .with_hint_opt(
                            did_you_mean(&c.kind, ["graph", "event", "hybrid"])
                                .or_else(|| Some("expected `graph`, `event` or `hybrid`".into())),
                        ),
                    );
                }
            }
            "event_driven" => c.event_driven = string_list(value, &p, report),
            "graph_based" => c.graph_based = string_list(value, &p, report),
            _ => report.push(unknown_field(p, &key, "coordination", FIELDS)),
        }
    }
    Some(c)
}

/// Converts one task as it is read. Paths are built only when something is
/// wrong: this runs a million times for a large workflow.
pub(crate) fn task(t: RawTask, tasks_path: &Path, i: usize, report: &mut Report) -> Task {
    let at = || tasks_path.index(i);
    for key in &t.unknown {
        report.push(unknown_field(at().key(key), key, "task", TASK_FIELDS));
    }
    let id = match t.id {
        // Ids reach logs, terminals, file names and URLs: no control characters.
        Some(id) if id.chars().any(char::is_control) => {
            report.push(
                Diagnostic::error(
                    "bad-id",
                    at().key("id"),
                    format!("task id {:?} contains a control character", id),
                )
                .with_hint("use letters, digits and punctuation"),
            );
            String::new()
        }
        Some(id) if !id.is_empty() => id,
        Some(_) => {
            report.push(Diagnostic::error(
                "missing-id",
                at().key("id"),
                "task id is empty",
            ));
            String::new()
        }
        None => {
            report.push(
                Diagnostic::error("missing-id", at(), "task has no `id`")
                    .with_hint("every task needs a unique `id`"),
            );
            String::new()
        }
    };
    let mut task = Task {
        id,
        agent: t.agent,
        depends_on: t.depends_on,
        parallel: t.parallel.unwrap_or(false),
        requires: t.requires,
        estimate: t
            .estimate
            .and_then(|v| duration_value(&v, || at().key("estimate"), report)),
        timeout: t
            .timeout
            .and_then(|v| duration_value(&v, || at().key("timeout"), report)),
        retry: t
            .retry
            .and_then(|v| retry(v, &at().key("retry"), report))
            .map(Box::new),
        compensation: t
            .compensation
            .and_then(|v| compensation(v, &at().key("compensation"), report))
            .map(Box::new),
        condition: t
            .condition
            .and_then(|v| condition(v, &at().key("condition"), report))
            .map(Box::new),
        wait_for: t
            .wait_for
            .and_then(|v| wait_for(v, &at().key("wait_for"), report))
            .map(Box::new),
        input: t.input.map(Box::new),
        for_each: None,
        routes: t
            .routes
            .and_then(|v| dynamic::routes(v, &at().key("routes"), report))
            .map(Box::new),
        workflow: t.workflow.map(|v| {
            // One that cannot run was reported; an empty stand-in keeps the
            // agent checks from reporting the task as having no agent.
            Box::new(
                dynamic::sub_workflow(v, &at().key("workflow"), report)
                    .unwrap_or_else(|| SubWorkflow::Inline(Box::default())),
            )
        }),
        repeat: t
            .repeat
            .and_then(|v| dynamic::repeat(v, &at().key("loop"), report))
            .map(Box::new),
        pattern: t.pattern.map(|v| {
            // One that cannot run was reported; a stand-in with no agents keeps
            // the agent checks from reporting the task as having no agent.
            Box::new(dynamic::pattern(v, &at().key("pattern"), report).unwrap_or(
                Pattern::Handoff {
                    agents: Vec::new(),
                    start: None,
                    max_handoffs: 1,
                },
            ))
        }),
    };
    task.for_each = match t.for_each {
        Some(v) => dynamic::for_each(v, &at().key("for_each"), report),
        None => dynamic::implied(&task),
    }
    .map(Box::new);
    if task.timeout == Some(Duration::ZERO) {
        report.push(Diagnostic::error(
            "bad-value",
            at().key("timeout"),
            "`timeout` must be greater than zero",
        ));
        task.timeout = None;
    }
    task
}

fn retry(v: Value, path: &Path, report: &mut Report) -> Option<RetryPolicy> {
    const FIELDS: &[&str] = &["max_attempts", "backoff"];
    const BACKOFF: &[&str] = &["initial", "max", "multiplier", "jitter"];
    let mut policy = RetryPolicy {
        max_attempts: 3,
        backoff: Backoff::default(),
    };
    let map = match v {
        // `retry: 5` is shorthand for five attempts with the default backoff.
        Value::Number(_) => {
            let mut m = Map::new();
            m.insert("max_attempts".into(), v);
            m
        }
        other => object(
            other,
            path,
            "a retry policy (a map with `max_attempts`)",
            report,
        )?,
    };
    for (key, value) in map {
        let p = path.key(&key);
        match key.as_str() {
            "max_attempts" => match value.as_u64() {
                Some(n) if (1..=10_000).contains(&n) => policy.max_attempts = n as u32,
                _ => report.push(
                    Diagnostic::error(
                        "bad-value",
                        p,
                        format!(
                            "`max_attempts` must be a whole number from 1 to 10000, found {value}"
                        ),
                    )
                    .with_hint("1 means no retries"),
                ),
            },
            "backoff" => {
                let Some(b) = object(value, &p, "a backoff (a map)", report) else {
                    continue;
                };
                for (bk, bv) in b {
                    let bp = p.key(&bk);
                    match bk.as_str() {
                        "initial" => {
                            if let Some(d) = duration_value(&bv, || bp.clone(), report) {
                                policy.backoff.initial = d;
                            }
                        }
                        "max" => {
                            if let Some(d) = duration_value(&bv, || bp.clone(), report) {
                                policy.backoff.max = d;
                            }
                        }
                        "multiplier" => match bv.as_f64() {
                            Some(m) if (1.0..=1000.0).contains(&m) => policy.backoff.multiplier = m,
                            _ => report.push(Diagnostic::error(
                                "bad-value",
                                bp,
                                format!("`multiplier` must be a number from 1 to 1000, found {bv}"),
                            )),
                        },
                        "jitter" => match bv.as_f64() {
                            Some(j) if (0.0..=1.0).contains(&j) => policy.backoff.jitter = j,
                            _ => report.push(
                                Diagnostic::error(
                                    "bad-value",
                                    bp,
                                    format!("`jitter` must be a fraction from 0 to 1, found {bv}"),
                                )
                                .with_hint("0.2 randomizes each delay by ±20%"),
                            ),
                        },
                        _ => report.push(unknown_field(bp, &bk, "backoff", BACKOFF)),
                    }
                }
                if policy.backoff.initial > policy.backoff.max {
                    report.push(Diagnostic::error(
                        "bad-value",
                        p.clone(),
                        format!(
                            "backoff `initial` ({}) is larger than `max` ({})",
                            duration::format(policy.backoff.initial),
                            duration::format(policy.backoff.max)
                        ),
                    ));
                }
            }
            _ => report.push(unknown_field(p, &key, "retry", FIELDS)),
        }
    }
    Some(policy)
}

fn compensation(v: Value, path: &Path, report: &mut Report) -> Option<Compensation> {
    const FIELDS: &[&str] = &["action", "agent", "input"];
    match v {
        Value::String(id) => Some(Compensation::Task(id)),
        Value::Object(map) => {
            let mut action = None;
            let mut agent = None;
            let mut input = None;
            for (key, value) in map {
                let p = path.key(&key);
                match key.as_str() {
                    "action" => action = scalar_string(value, &p, report),
                    "agent" => agent = scalar_string(value, &p, report),
                    "input" => input = Some(value),
                    _ => report.push(unknown_field(p, &key, "compensation", FIELDS)),
                }
            }
            match action {
                Some(action) if !action.is_empty() => Some(Compensation::Action {
                    action,
                    agent,
                    input,
                }),
                _ => {
                    report.push(
                        Diagnostic::error(
                            "missing-field",
                            path.clone(),
                            "compensation has no `action`",
                        )
                        .with_hint(
                            "write a task id (`compensation: undo_x`) or `{ action: NAME }`",
                        ),
                    );
                    None
                }
            }
        }
        other => {
            report.push(type_error(
                path.clone(),
                "a task id or `{ action: ... }`",
                &other,
            ));
            None
        }
    }
}

fn condition(v: Value, path: &Path, report: &mut Report) -> Option<Condition> {
    let Value::String(text) = v else {
        report.push(type_error(path.clone(), "a condition (a string)", &v));
        return None;
    };
    match Expr::parse(&text) {
        Ok(expr) => Some(Condition { text, expr }),
        Err(e) => {
            report.push(
                Diagnostic::error(
                    "bad-condition",
                    path.clone(),
                    format!("invalid condition: {e}"),
                )
                .with_hint("e.g. `research.output.count > 0 && analyze.status == \"succeeded\"`"),
            );
            None
        }
    }
}

fn wait_for(v: Value, path: &Path, report: &mut Report) -> Option<EventFilter> {
    const FIELDS: &[&str] = &["type", "key", "topic", "match", "timeout"];
    let mut filter = EventFilter::default();
    match v {
        Value::String(t) => filter.event_type = t,
        Value::Object(map) => {
            for (key, value) in map {
                let p = path.key(&key);
                match key.as_str() {
                    "type" => {
                        filter.event_type = scalar_string(value, &p, report).unwrap_or_default()
                    }
                    "key" => filter.key = scalar_string(value, &p, report),
                    "topic" => filter.topic = scalar_string(value, &p, report),
                    "match" => {
                        filter.matches = object(value, &p, "a map of payload fields", report)
                    }
                    "timeout" => filter.timeout = duration_value(&value, || p, report),
                    _ => report.push(unknown_field(p, &key, "wait_for", FIELDS)),
                }
            }
        }
        other => {
            report.push(type_error(
                path.clone(),
                "an event type or an event filter (a map with `type`)",
                &other,
            ));
            return None;
        }
    }
    if filter.event_type.is_empty() {
        report.push(
            Diagnostic::error(
                "missing-field",
                path.clone(),
                "`wait_for` needs an event `type`",
            )
            .with_hint("e.g. `wait_for: { type: data_updates, key: dataset-42 }`"),
        );
        return None;
    }
    Some(filter)
}

/// Cross-task checks: ids, dependencies, agents, compensations and
/// conditions. Builds the graph when the ids resolve.
fn structure(wf: &Workflow, root: &Path, report: &mut Report) -> Option<(Graph, Names)> {
    let tasks_path = root.key("tasks");
    let n = wf.tasks.len();
    if n > u32::MAX as usize - 1 {
        report.push(Diagnostic::error("too-large", tasks_path, "too many tasks"));
        return None;
    }
    let Ok(ids) = Names::new(wf.tasks.iter().map(|t| t.id.as_str())) else {
        report.push(Diagnostic::error(
            "too-large",
            tasks_path,
            "task ids exceed 4 GiB in total",
        ));
        return None;
    };
    let mut resolvable = wf.tasks.iter().all(|t| !t.id.is_empty());
    ids.index_reporting_duplicates(|dup, first| {
        resolvable = false;
        report.push(
            Diagnostic::error(
                "duplicate-task",
                tasks_path.index(dup as usize).key("id"),
                format!("duplicate task id `{}`", ids.get(dup)),
            )
            .with_hint(format!(
                "first declared at {}; task ids must be unique",
                tasks_path.index(first as usize)
            )),
        );
    });

    agents_of_tasks(wf, &tasks_path, report);
    declared_events(wf, &tasks_path, report);

    // Compensation tasks take no part in the forward flow.
    let mut handler = vec![false; n];
    for (i, t) in wf.tasks.iter().enumerate() {
        let Some(Compensation::Task(target)) = t.compensation.as_deref() else {
            continue;
        };
        let p = tasks_path.index(i).key("compensation");
        match ids.id(target) {
            Some(j) if j as usize == i => report.push(Diagnostic::error(
                "bad-compensation",
                p,
                format!("task `{}` cannot compensate itself", t.id),
            )),
            Some(j) => handler[j as usize] = true,
            None => report.push(
                Diagnostic::error(
                    "unknown-task",
                    p,
                    format!("compensation refers to unknown task `{target}`"),
                )
                .with_hint_opt(suggest_id(target, wf, report)),
            ),
        }
    }

    let edges: usize = wf.tasks.iter().map(|t| t.depends_on.len()).sum();
    let resolved = resolve(&wf.tasks, &ids, edges);
    let mut resolved = resolved.into_iter();
    let mut offsets = Vec::with_capacity(n + 1);
    let mut preds = Vec::with_capacity(edges);
    offsets.push(0u32);
    for (i, t) in wf.tasks.iter().enumerate() {
        let at = || tasks_path.index(i);
        let start = preds.len();
        for (j, dep) in t.depends_on.iter().enumerate() {
            match resolved.next().filter(|&d| d != UNKNOWN) {
                Some(d) if d as usize == i => {
                    resolvable = false;
                    report.push(
                        Diagnostic::error(
                            "self-dependency",
                            at().key("depends_on").index(j),
                            format!("task `{}` depends on itself", t.id),
                        )
                        .with_hint("remove it from its own `depends_on`"),
                    );
                }
                Some(d) => {
                    if preds[start..].contains(&d) {
                        report.push(Diagnostic::warning(
                            "duplicate-dependency",
                            at().key("depends_on").index(j),
                            format!("`{dep}` is listed twice in `depends_on` of `{}`", t.id),
                        ));
                        continue;
                    }
                    if handler[d as usize] {
                        report.push(
                            Diagnostic::error(
                                "bad-compensation",
                                at().key("depends_on").index(j),
                                format!("`{}` depends on `{dep}`, which is a compensation task", t.id),
                            )
                            .with_hint("compensation tasks run only when a run is rolled back; nothing can depend on them"),
                        );
                    }
                    preds.push(d);
                }
                None => {
                    resolvable = false;
                    report.push(
                        Diagnostic::error(
                            "unknown-dependency",
                            at().key("depends_on").index(j),
                            format!("task `{}` depends on unknown task `{dep}`", t.id),
                        )
                        .with_hint_opt(suggest_id(dep, wf, report)),
                    );
                }
            }
        }
        if handler[i] && !t.depends_on.is_empty() {
            report.push(
                Diagnostic::error(
                    "bad-compensation",
                    at().key("depends_on"),
                    format!("compensation task `{}` cannot have dependencies", t.id),
                )
                .with_hint("it runs when the task it compensates is rolled back"),
            );
        }
        offsets.push(preds.len() as u32);
    }
    if !resolvable {
        return None;
    }
    let graph = Graph {
        pred_offsets: offsets,
        preds,
        weights: wf
            .tasks
            .iter()
            .map(|t| {
                t.estimate
                    .map_or(Graph::UNIT, |d| d.as_micros().min(u64::MAX as u128) as u64)
            })
            .collect(),
        handler,
    };
    conditions(wf, &graph, &ids, &tasks_path, report);
    dynamic::structure(wf, &graph, &ids, &tasks_path, report);
    Some((graph, ids))
}

/// Waiting for an event type the workflow does not declare is probably a typo.
fn declared_events(wf: &Workflow, tasks_path: &Path, report: &mut Report) {
    let Some(c) = &wf.coordination else { return };
    if c.event_driven.is_empty() {
        return;
    }
    for (i, t) in wf.tasks.iter().enumerate() {
        let Some(filter) = &t.wait_for else { continue };
        if c.event_driven.contains(&filter.event_type) {
            continue;
        }
        report.push(
            Diagnostic::warning(
                "undeclared-event",
                tasks_path.index(i).key("wait_for"),
                format!(
                    "event type `{}` is not listed in `coordination.event_driven`",
                    filter.event_type
                ),
            )
            .with_hint_opt(
                did_you_mean(
                    &filter.event_type,
                    c.event_driven.iter().map(String::as_str),
                )
                .or_else(|| Some(format!("declared: {}", c.event_driven.join(", ")))),
            ),
        );
    }
}

/// What [`resolve`] answers for a dependency that names no task.
const UNKNOWN: u32 = u32::MAX;

/// Looks every dependency up, in declaration order, on all cores: each
/// lookup is a few cache misses on a large workflow, and they are independent.
fn resolve(tasks: &[Task], ids: &Names, edges: usize) -> Vec<u32> {
    const MIN_PER_THREAD: usize = 64 * 1024;
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(edges / MIN_PER_THREAD)
        .max(1);
    let lookup = |chunk: &[Task]| -> Vec<u32> {
        let mut out = Vec::with_capacity(chunk.iter().map(|t| t.depends_on.len()).sum());
        out.extend(
            chunk
                .iter()
                .flat_map(|t| t.depends_on.iter().map(|d| ids.id(d).unwrap_or(UNKNOWN))),
        );
        out
    };
    if threads == 1 {
        return lookup(tasks);
    }
    let per = tasks.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let parts: Vec<_> = tasks
            .chunks(per)
            .map(|chunk| scope.spawn(move || lookup(chunk)))
            .collect();
        let mut all = Vec::with_capacity(edges);
        for part in parts {
            all.extend(part.join().unwrap_or_else(|e| std::panic::resume_unwind(e)));
        }
        all
    })
}

fn suggest_id(name: &str, wf: &Workflow, report: &Report) -> Option<String> {
    if wf.tasks.len() > SUGGEST_LIMIT || report.is_full() {
        return None;
    }
    did_you_mean(name, wf.tasks.iter().map(|t| t.id.as_str()))
}

fn agents_of_tasks(wf: &Workflow, tasks_path: &Path, report: &mut Report) {
    let by_name: HashMap<&str, &Agent> = wf.agents.iter().map(|a| (a.name.as_str(), a)).collect();
    for (i, t) in wf.tasks.iter().enumerate() {
        let at = || tasks_path.index(i);
        if t.workflow.is_some() {
            // A child run: no agent of its own (the structure check refuses one).
            continue;
        }
        match &t.agent {
            Some(name) => match by_name.get(name.as_str()) {
                Some(agent) => {
                    for (j, cap) in t.requires.iter().enumerate() {
                        if !agent.capabilities.contains(cap) {
                            let able: Vec<&str> = wf
                                .agents
                                .iter()
                                .filter(|a| a.capabilities.contains(cap))
                                .map(|a| a.name.as_str())
                                .collect();
                            report.push(
                                Diagnostic::error(
                                    "missing-capability",
                                    at().key("requires").index(j),
                                    format!("agent `{name}` lacks capability `{cap}` required by task `{}`", t.id),
                                )
                                .with_hint(if able.is_empty() {
                                    format!("add `{cap}` to the capabilities of `{name}`")
                                } else {
                                    format!("agents with `{cap}`: {}", able.join(", "))
                                }),
                            );
                        }
                    }
                }
                None if wf.agents.is_empty() => report.push(
                    Diagnostic::error(
                        "unknown-agent",
                        at().key("agent"),
                        format!("task `{}` names agent `{name}`, but the workflow declares no agents", t.id),
                    )
                    .with_hint("declare it under `agents:` or remove `agent:`"),
                ),
                None => report.push(
                    Diagnostic::error(
                        "unknown-agent",
                        at().key("agent"),
                        format!("task `{}` names unknown agent `{name}`", t.id),
                    )
                    .with_hint(did_you_mean(name, by_name.keys().copied()).unwrap_or_else(|| {
                        format!("declared agents: {}", wf.agents.iter().map(|a| a.name.as_str()).collect::<Vec<_>>().join(", "))
                    })),
                ),
            },
            None if wf.agents.is_empty() => {}
            // A pattern's agents take the turns (checked with the pattern).
            None if t.pattern.is_some() => {}
            None if t.requires.is_empty() => report.push(
                Diagnostic::error(
                    "missing-agent",
                    at(),
                    format!("task `{}` has no `agent` and no `requires`", t.id),
                )
                .with_hint("name an agent, or list the capabilities it needs in `requires` so one can be chosen"),
            ),
            None => {
                let capable = wf
                    .agents
                    .iter()
                    .any(|a| t.requires.iter().all(|c| a.capabilities.contains(c)));
                if !capable {
                    report.push(Diagnostic::error(
                        "missing-capability",
                        at().key("requires"),
                        format!(
                            "no agent has all capabilities required by task `{}` ({})",
                            t.id,
                            t.requires.join(", ")
                        ),
                    ));
                }
            }
        }
        if let Some(Compensation::Action {
            agent: Some(name), ..
        }) = t.compensation.as_deref()
            && !by_name.contains_key(name.as_str())
        {
            report.push(
                Diagnostic::error(
                    "unknown-agent",
                    at().key("compensation").key("agent"),
                    format!("compensation names unknown agent `{name}`"),
                )
                .with_hint_opt(did_you_mean(name, by_name.keys().copied())),
            );
        }
    }
}

/// A condition may only read tasks that finish before it is evaluated:
/// direct or transitive dependencies.
fn conditions(wf: &Workflow, graph: &Graph, ids: &Names, tasks_path: &Path, report: &mut Report) {
    for (i, t) in wf.tasks.iter().enumerate() {
        let Some(cond) = &t.condition else { continue };
        let refs = cond.expr.references();
        if refs.is_empty() {
            continue;
        }
        let upstream = graph.ancestors(i as u32);
        for r in refs {
            let p = tasks_path.index(i).key("condition");
            match ids.id(&r.task) {
                None => report.push(
                    Diagnostic::error(
                        "unknown-task",
                        p,
                        format!(
                            "condition of `{}` refers to unknown task `{}`",
                            t.id, r.task
                        ),
                    )
                    .with_hint_opt(suggest_id(&r.task, wf, report)),
                ),
                Some(j) if !upstream.contains(&j) => report.push(
                    Diagnostic::error(
                        "not-upstream",
                        p,
                        format!(
                            "condition of `{}` reads `{}`, which is not one of its dependencies",
                            t.id, r.task
                        ),
                    )
                    .with_hint(format!("add `{}` to `depends_on` of `{}`", r.task, t.id)),
                ),
                Some(_) => {}
            }
        }
    }
}
