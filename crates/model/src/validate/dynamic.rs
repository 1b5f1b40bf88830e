//! The dynamic parts of a task, decided at run time: `for_each` (a fan-out over
//! an upstream output list), `routes` (successors the task's output chooses
//! among), `workflow` (a child run) and `loop` (iterations until a condition
//! holds, bounded). Each is read as its task streams by, then checked against
//! the graph.

use serde_json::Value;

use super::{count, object, string_list, suggest_id, type_error, unknown_field};
use crate::diag::{Diagnostic, Path, Report};
use crate::expr::{Expr, Field, Reference};
use crate::graph::Graph;
use crate::names::Names;
use crate::workflow::{
    Condition, ForEach, Loop, OnItemFailure, OnLimit, Pattern, Routes, SubWorkflow, Task, Team,
    Workflow,
};

const FOR_EACH_FIELDS: &[&str] = &["items", "max_parallel", "max_items", "on_failure"];
const ITEMS_HINT: &str = "e.g. `for_each: decompose.output.questions`";

/// `for_each: TASK.output…` or `for_each: {items, max_parallel, max_items, on_failure}`.
pub(super) fn for_each(v: Value, path: &Path, report: &mut Report) -> Option<ForEach> {
    let map = match v {
        Value::String(text) => {
            let mut m = serde_json::Map::new();
            m.insert("items".into(), Value::String(text));
            m
        }
        other => object(
            other,
            path,
            "a fan-out (`TASK.output…`, or a map with `items`)",
            report,
        )?,
    };
    let mut items = None;
    let mut has_items = false;
    let mut max_parallel = None;
    let mut max_items = ForEach::DEFAULT_MAX_ITEMS;
    let mut on_failure = OnItemFailure::default();
    for (key, value) in map {
        let p = path.key(&key);
        match key.as_str() {
            "items" => {
                has_items = true;
                items = reference(value, &p, report);
            }
            "max_parallel" => match count(&value, &p, "max_parallel") {
                Ok(n) => max_parallel = Some(n),
                Err(d) => report.push(d.with_hint("leave it out to run as many as the agents take")),
            },
            "max_items" => match count(&value, &p, "max_items") {
                Ok(n) if n <= ForEach::MAX_ITEMS => max_items = n,
                Ok(_) | Err(_) => report.push(Diagnostic::error(
                    "bad-value",
                    p,
                    format!(
                        "`max_items` must be a whole number from 1 to {}, found {value}",
                        ForEach::MAX_ITEMS
                    ),
                )),
            },
            "on_failure" => match value.as_str() {
                Some("fail_fast") => on_failure = OnItemFailure::FailFast,
                Some("collect") => on_failure = OnItemFailure::Collect,
                _ => report.push(
                    Diagnostic::error(
                        "bad-value",
                        p,
                        format!("`on_failure` must be `fail_fast` or `collect`, found {value}"),
                    )
                    .with_hint(
                        "`fail_fast` cancels the other items at the first failure; `collect` runs them all",
                    ),
                ),
            },
            _ => report.push(unknown_field(p, &key, "for_each", FOR_EACH_FIELDS)),
        }
    }
    let Some((text, items)) = items else {
        if !has_items {
            report.push(
                Diagnostic::error(
                    "missing-field",
                    path.clone(),
                    "`for_each` needs `items`: the upstream output to run over",
                )
                .with_hint(ITEMS_HINT),
            );
        }
        return None;
    };
    Some(ForEach {
        text,
        items,
        max_parallel,
        max_items,
        on_failure,
        implied: false,
    })
}

/// The list a fan-out runs over: a reference to an upstream task's output.
fn reference(v: Value, path: &Path, report: &mut Report) -> Option<(String, Reference)> {
    let Value::String(text) = v else {
        report.push(type_error(path.clone(), "a reference (`TASK.output…`)", &v));
        return None;
    };
    let bad = |report: &mut Report, message: String| {
        report.push(Diagnostic::error("bad-for-each", path.clone(), message).with_hint(ITEMS_HINT));
        None
    };
    match Expr::parse(&text) {
        Ok(Expr::Ref(r)) if matches!(r.field, Field::Output(_)) => Some((text, r)),
        Ok(_) => bad(
            report,
            format!("`{text}` is not an upstream output: write `TASK.output` or a path into it"),
        ),
        Err(e) => bad(report, format!("invalid reference `{text}`: {e}")),
    }
}

/// `parallel: true` on a task with one dependency is a fan-out over that
/// dependency's whole output, run leniently: an output that is not a list runs
/// the task once, as before.
pub(super) fn implied(task: &Task) -> Option<ForEach> {
    let [dep] = task.depends_on.as_slice() else {
        return None;
    };
    if task.workflow.is_some() || task.repeat.is_some() || task.pattern.is_some() {
        return None;
    }
    task.parallel.then(|| ForEach {
        text: format!("{dep}.output"),
        items: Reference {
            task: dep.clone(),
            field: Field::Output(Vec::new()),
            offset: 0,
        },
        max_parallel: None,
        max_items: ForEach::DEFAULT_MAX_ITEMS,
        on_failure: OnItemFailure::FailFast,
        implied: true,
    })
}

/// `routes: {NAME: [TASK, …], …}`.
pub(super) fn routes(v: Value, path: &Path, report: &mut Report) -> Option<Routes> {
    let map = object(
        v,
        path,
        "routes (a map of route names to the tasks each runs)",
        report,
    )?;
    if map.is_empty() {
        report.push(
            Diagnostic::error("bad-routes", path.clone(), "`routes` names no route")
                .with_hint("e.g. `routes: { approve: [publish], revise: [edit] }`"),
        );
        return None;
    }
    let mut routes = Vec::with_capacity(map.len());
    for (name, targets) in map {
        let p = path.key(&name);
        if name.is_empty() {
            report.push(Diagnostic::error(
                "bad-routes",
                p,
                "a route's name is empty",
            ));
            continue;
        }
        routes.push((name, string_list(targets, &p, report)));
    }
    Some(Routes(routes))
}

const LOOP_FIELDS: &[&str] = &["until", "max_iterations", "on_limit"];
const LOOP_HINT: &str =
    "e.g. `loop: { until: \"review.output.approved == true\", max_iterations: 5 }`";

/// `loop: {until, max_iterations, on_limit}`.
pub(super) fn repeat(v: Value, path: &Path, report: &mut Report) -> Option<Loop> {
    let map = object(
        v,
        path,
        "a loop (a map with `max_iterations` and `until`)",
        report,
    )?;
    let mut until = None;
    let mut max_iterations = None;
    let mut on_limit = OnLimit::default();
    for (key, value) in map {
        let p = path.key(&key);
        match key.as_str() {
            "until" => until = super::condition(value, &p, report),
            "max_iterations" => match count(&value, &p, "max_iterations") {
                Ok(n) if n <= Loop::MAX_ITERATIONS => max_iterations = Some(n),
                Ok(_) | Err(_) => report.push(Diagnostic::error(
                    "bad-value",
                    p,
                    format!(
                        "`max_iterations` must be a whole number from 1 to {}, found {value}",
                        Loop::MAX_ITERATIONS
                    ),
                )),
            },
            "on_limit" => match value.as_str() {
                Some("fail") => on_limit = OnLimit::Fail,
                Some("continue") => on_limit = OnLimit::Continue,
                _ => report.push(
                    Diagnostic::error(
                        "bad-value",
                        p,
                        format!("`on_limit` must be `fail` or `continue`, found {value}"),
                    )
                    .with_hint(
                        "`fail` fails the task when the bound is reached; `continue` succeeds with the last iteration's output",
                    ),
                ),
            },
            _ => report.push(unknown_field(p, &key, "loop", LOOP_FIELDS)),
        }
    }
    let Some(max_iterations) = max_iterations else {
        if !report
            .diagnostics
            .iter()
            .any(|d| d.path.0.starts_with(&path.key("max_iterations").0))
        {
            report.push(
                Diagnostic::error(
                    "missing-field",
                    path.clone(),
                    "a loop needs `max_iterations`: the most iterations it may run",
                )
                .with_hint(LOOP_HINT),
            );
        }
        return None;
    };
    Some(Loop {
        until,
        max_iterations,
        on_limit,
    })
}

const PATTERN_TYPES: &[&str] = &["handoff", "supervisor", "hierarchical", "network", "swarm"];

/// What the language says of one kind of pattern.
struct Kind {
    name: &'static str,
    fields: &'static [&'static str],
    hint: &'static str,
    /// The field listing its agents, and what they are.
    list: (&'static str, &'static str),
    /// The field naming the lead agent, required or not.
    lead: (&'static str, bool),
    /// The bound: its field, largest value and what it bounds.
    bound: (&'static str, u32, &'static str),
}

const KINDS: &[Kind] = &[
    Kind {
        name: "handoff",
        fields: &["type", "agents", "start", "max_handoffs"],
        hint: "e.g. `pattern: { type: handoff, agents: [triage, billing], max_handoffs: 4 }`",
        list: ("agents", "the agents that may hold control"),
        lead: ("start", false),
        bound: (
            "max_handoffs",
            Pattern::MAX_HANDOFFS,
            "the most handoffs before it must answer",
        ),
    },
    Kind {
        name: "supervisor",
        fields: &[
            "type",
            "supervisor",
            "workers",
            "teams",
            "max_turns",
            "max_delegates",
        ],
        hint: "e.g. `pattern: { type: supervisor, supervisor: planner, workers: [researcher, analyst], max_turns: 12 }`",
        list: ("workers", "the agents the supervisor may delegate to"),
        lead: ("supervisor", true),
        bound: (
            "max_turns",
            Pattern::MAX_TURNS,
            "the most supervisor turns before it must finish",
        ),
    },
    Kind {
        name: "hierarchical",
        fields: &[
            "type",
            "supervisor",
            "workers",
            "teams",
            "max_turns",
            "max_delegates",
        ],
        hint: "e.g. `pattern: { type: hierarchical, supervisor: lead, teams: { research: { file: research_team.yaml } }, max_turns: 8 }`",
        list: (
            "teams",
            "the teams (sub-workflows) the supervisor may delegate to",
        ),
        lead: ("supervisor", true),
        bound: (
            "max_turns",
            Pattern::MAX_TURNS,
            "the most supervisor turns before it must finish",
        ),
    },
    Kind {
        name: "network",
        fields: &["type", "agents", "start", "max_messages", "on_limit"],
        hint: "e.g. `pattern: { type: network, agents: [buyer, seller, broker], start: buyer, max_messages: 50 }`",
        list: ("agents", "the agents that message each other"),
        lead: ("start", false),
        bound: (
            "max_messages",
            Pattern::MAX_MESSAGES,
            "the most messages its agents may send",
        ),
    },
    Kind {
        name: "swarm",
        fields: &["type", "agents", "start", "max_handoffs", "until"],
        hint: "e.g. `pattern: { type: swarm, agents: [triage, coder, reviewer], max_handoffs: 20, until: \"fix.output.context.approved == true\" }`",
        list: ("agents", "the agents that hand control to one another"),
        lead: ("start", false),
        bound: (
            "max_handoffs",
            Pattern::MAX_HANDOFFS,
            "the most handoffs before it must end",
        ),
    },
];

/// `pattern: {type: handoff, agents, start, max_handoffs}`,
/// `{type: supervisor, supervisor, workers, max_turns, max_delegates}` or
/// `{type: network, agents, start, max_messages, on_limit}`.
pub(super) fn pattern(v: Value, path: &Path, report: &mut Report) -> Option<Pattern> {
    let map = object(v, path, "a pattern (a map with `type`)", report)?;
    let kind = match map.get("type").and_then(Value::as_str) {
        Some(name) => match KINDS.iter().find(|k| k.name == name) {
            Some(kind) => kind,
            None => {
                report.push(
                    Diagnostic::error(
                        "bad-pattern",
                        path.key("type"),
                        format!(
                            "unknown pattern `{name}`: this version runs {}",
                            PATTERN_TYPES.join(", ")
                        ),
                    )
                    .with_hint_opt(crate::did_you_mean(name, PATTERN_TYPES.iter().copied())),
                );
                return None;
            }
        },
        None => {
            report.push(
                Diagnostic::error("missing-field", path.clone(), "a pattern needs `type`")
                    .with_hint(KINDS[0].hint),
            );
            return None;
        }
    };
    let mut agents = None;
    let mut lead = None;
    let mut bound = None;
    let mut max_delegates = None;
    let mut on_limit = OnLimit::Fail;
    let mut until = None;
    let mut teams: Option<Vec<Team>> = None;
    let leads = kind.lead.1;
    for (key, value) in map {
        let p = path.key(&key);
        match key.as_str() {
            "type" => {}
            "teams" if leads => teams = Some(team_map(value, &p, report)),
            "workers" if leads => agents = Some(string_list(value, &p, report)),
            k if k == kind.list.0 => agents = Some(string_list(value, &p, report)),
            k if k == kind.lead.0 => lead = super::scalar_string(value, &p, report),
            k if k == kind.bound.0 => bound = bounded(&value, &p, k, kind.bound.1, report),
            "max_delegates" if kind.name == "supervisor" => {
                max_delegates = bounded(&value, &p, "max_delegates", Pattern::MAX_DELEGATES, report)
            }
            "until" if kind.name == "swarm" => until = super::condition(value, &p, report),
            "on_limit" if kind.name == "network" => match value.as_str() {
                Some("fail") => on_limit = OnLimit::Fail,
                Some("continue") => on_limit = OnLimit::Continue,
                _ => report.push(Diagnostic::error(
                    "bad-value",
                    p,
                    format!("`on_limit` must be `fail` or `continue`, found {value}"),
                )),
            },
            _ => report.push(unknown_field(
                p,
                &key,
                &format!("{} pattern", kind.name),
                kind.fields,
            )),
        }
    }
    let agents = agents.unwrap_or_default();
    let teams = teams.unwrap_or_default();
    let (list, what) = kind.list;
    let none = match kind.name {
        "supervisor" => agents.is_empty() && teams.is_empty(),
        "hierarchical" => teams.is_empty(),
        _ => agents.is_empty(),
    };
    if none && !reported_at(report, path, list) {
        report.push(
            Diagnostic::error(
                "bad-pattern",
                path.key(list),
                format!("a {} needs `{list}`: {what}", kind.name),
            )
            .with_hint(kind.hint),
        );
        return None;
    }
    if none {
        return None;
    }
    let reported = |report: &Report, field: &str| reported_at(report, path, field);
    let (lead_field, lead_required) = kind.lead;
    if lead_required && lead.is_none() {
        if !reported(report, lead_field) {
            report.push(
                Diagnostic::error(
                    "missing-field",
                    path.clone(),
                    format!(
                        "a {} pattern needs `{lead_field}`: the agent that coordinates",
                        kind.name
                    ),
                )
                .with_hint(kind.hint),
            );
        }
        return None;
    }
    let (bound_field, _, bound_what) = kind.bound;
    let Some(bound) = bound else {
        if !reported(report, bound_field) {
            report.push(
                Diagnostic::error(
                    "missing-field",
                    path.clone(),
                    format!("a {} needs `{bound_field}`: {bound_what}", kind.name),
                )
                .with_hint(kind.hint),
            );
        }
        return None;
    };
    Some(match kind.name {
        "handoff" => Pattern::Handoff {
            agents,
            start: lead,
            max_handoffs: bound,
        },
        "supervisor" | "hierarchical" => Pattern::Supervisor {
            supervisor: lead.unwrap_or_default(),
            workers: agents,
            max_turns: bound,
            max_delegates: max_delegates.unwrap_or(Pattern::DEFAULT_DELEGATES),
            teams,
        },
        "network" => Pattern::Network {
            agents,
            start: lead,
            max_messages: bound,
            on_limit,
        },
        _ => Pattern::Swarm {
            agents,
            start: lead,
            max_handoffs: bound,
            until,
        },
    })
}

/// Whether a finding was already reported at `path.field` or under it.
fn reported_at(report: &Report, path: &Path, field: &str) -> bool {
    report
        .diagnostics
        .iter()
        .any(|d| d.path.0.starts_with(&path.key(field).0))
}

/// `teams: {NAME: SUB_WORKFLOW}`, each checked like a task's `workflow`
/// (an inline team in place).
fn team_map(v: Value, path: &Path, report: &mut Report) -> Vec<Team> {
    let Some(map) = object(v, path, "a map of teams (name → sub-workflow)", report) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(name, value)| {
            let workflow = sub_workflow(value, &path.key(&name), report)?;
            Some(Team { name, workflow })
        })
        .collect()
}

/// A pattern's bound: a whole number from 1 to `max`.
fn bounded(value: &Value, p: &Path, name: &str, max: u32, report: &mut Report) -> Option<u32> {
    match count(value, p, name) {
        Ok(n) if n <= max => Some(n),
        Ok(_) | Err(_) => {
            report.push(Diagnostic::error(
                "bad-value",
                p.clone(),
                format!("`{name}` must be a whole number from 1 to {max}, found {value}"),
            ));
            None
        }
    }
}

const SUB_WORKFLOW_FIELDS: &[&str] = &["inline", "file", "name", "version"];
const SUB_WORKFLOW_HINT: &str = "e.g. `workflow: { file: team.yaml }`, `workflow: { name: research_team, version: 2 }` or `workflow: { inline: { tasks: [...] } }`";

/// `workflow: {inline: WORKFLOW} | {file: PATH} | {name: NAME, version: N}`.
/// An inline child is checked here, its findings reported at their place in
/// the parent.
pub(super) fn sub_workflow(v: Value, path: &Path, report: &mut Report) -> Option<SubWorkflow> {
    let map = object(
        v,
        path,
        "a sub-workflow (a map with `inline`, `file` or `name`)",
        report,
    )?;
    let mut found: Vec<&str> = Vec::new();
    let (mut inline, mut file, mut name, mut version) = (None, None, None, None);
    for (key, value) in map {
        let p = path.key(&key);
        match key.as_str() {
            "inline" => {
                found.push("inline");
                inline = Some(inline_workflow(value, &p, report));
            }
            "file" => {
                found.push("file");
                file = non_empty(value, &p, "file", report);
            }
            "name" => {
                found.push("name");
                name = non_empty(value, &p, "name", report);
            }
            "version" => match count(&value, &p, "version") {
                Ok(n) => version = Some(n),
                Err(d) => report.push(d),
            },
            _ => report.push(unknown_field(p, &key, "workflow", SUB_WORKFLOW_FIELDS)),
        }
    }
    if found.len() != 1 {
        report.push(
            Diagnostic::error(
                "bad-workflow",
                path.clone(),
                if found.is_empty() {
                    "a sub-workflow needs one of `inline`, `file` or `name`".to_string()
                } else {
                    format!(
                        "a sub-workflow takes one of `inline`, `file` or `name`, found {}",
                        found.join(" and ")
                    )
                },
            )
            .with_hint(SUB_WORKFLOW_HINT),
        );
        return None;
    }
    if version.is_some() && name.is_none() {
        report.push(Diagnostic::error(
            "bad-workflow",
            path.key("version"),
            "`version` applies only to a workflow named from the catalog (`name`)",
        ));
    }
    if let Some(child) = inline {
        return child.map(|wf| SubWorkflow::Inline(Box::new(wf)));
    }
    if let Some(file) = file {
        return Some(SubWorkflow::File(file));
    }
    name.map(|name| SubWorkflow::Catalog { name, version })
}

fn non_empty(v: Value, path: &Path, field: &str, report: &mut Report) -> Option<String> {
    let s = super::scalar_string(v, path, report)?;
    if s.is_empty() {
        report.push(Diagnostic::error(
            "bad-workflow",
            path.clone(),
            format!("`{field}` is empty"),
        ));
        return None;
    }
    Some(s)
}

/// An inline child, validated as a document of its own; its findings are
/// moved under `path`.
fn inline_workflow(v: Value, path: &Path, report: &mut Report) -> Option<Workflow> {
    let seed = crate::raw::DocumentSeed::for_len(0, super::task);
    let doc = match serde::de::DeserializeSeed::deserialize(seed, v) {
        Ok(doc) => doc,
        Err(e) => {
            report.push(Diagnostic::error(
                "bad-workflow",
                path.clone(),
                format!("not a workflow: {e}"),
            ));
            return None;
        }
    };
    let moved = |d: &mut Diagnostic| {
        d.path = Path(path.0.iter().cloned().chain(d.path.0.drain(..)).collect());
        d.location = None;
    };
    match super::document(doc) {
        Ok(mut checked) => {
            for d in &mut checked.warnings.diagnostics {
                moved(d);
                report.push(d.clone());
            }
            Some(checked.workflow)
        }
        Err(mut child) => {
            for d in &mut child.diagnostics {
                moved(d);
                report.push(d.clone());
            }
            None
        }
    }
}

/// What needs the whole graph: a fan-out reads an upstream task, a route's
/// tasks depend on the task that chooses, a loop's `until` reads the loop's
/// task or its upstream tasks.
pub(super) fn structure(
    wf: &Workflow,
    graph: &Graph,
    ids: &Names,
    tasks_path: &Path,
    report: &mut Report,
) {
    for (i, t) in wf.tasks.iter().enumerate() {
        if let Some(f) = t.for_each.as_deref().filter(|f| !f.implied) {
            let p = || tasks_path.index(i).key("for_each");
            match ids.id(&f.items.task) {
                None => report.push(
                    Diagnostic::error(
                        "unknown-task",
                        p(),
                        format!(
                            "`for_each` of `{}` reads unknown task `{}`",
                            t.id, f.items.task
                        ),
                    )
                    .with_hint_opt(suggest_id(&f.items.task, wf, report)),
                ),
                Some(j) if !graph.ancestors(i as u32).contains(&j) => report.push(
                    Diagnostic::error(
                        "not-upstream",
                        p(),
                        format!(
                            "`for_each` of `{}` reads `{}`, which is not one of its dependencies",
                            t.id, f.items.task
                        ),
                    )
                    .with_hint(format!(
                        "add `{}` to `depends_on` of `{}`",
                        f.items.task, t.id
                    )),
                ),
                Some(_) => {}
            }
        }
        if t.for_each.is_some() && t.wait_for.is_some() {
            report.push(
                Diagnostic::error(
                    "bad-for-each",
                    tasks_path.index(i).key("for_each"),
                    format!("task `{}` has both `for_each` and `wait_for`", t.id),
                )
                .with_hint("wait in a task before the fan-out"),
            );
        }
        if t.workflow.is_some() {
            let clash = [
                ("agent", t.agent.is_some()),
                ("requires", !t.requires.is_empty()),
                (
                    "for_each",
                    t.for_each.as_deref().is_some_and(|f| !f.implied),
                ),
                ("wait_for", t.wait_for.is_some()),
            ];
            for (field, present) in clash {
                if present {
                    report.push(
                        Diagnostic::error(
                            "bad-workflow",
                            tasks_path.index(i).key(field),
                            format!(
                                "task `{}` runs a sub-workflow and cannot also have `{field}`",
                                t.id
                            ),
                        )
                        .with_hint("the child's own tasks name their agents"),
                    );
                }
            }
        }
        if let Some(l) = t.repeat.as_deref() {
            repeat_structure(wf, graph, ids, i, l, &tasks_path.index(i), report);
        }
        if let Some(p) = t.pattern.as_deref() {
            pattern_structure(wf, i, p, &tasks_path.index(i), report);
            if let Pattern::Swarm {
                until: Some(until), ..
            } = p
            {
                let at = tasks_path.index(i).key("pattern").key("until");
                let own = "the blackboard after a round (`.output.context.KEY`)";
                until_structure(wf, graph, ids, (i, own), until, &at, report);
            }
        }
        let Some(routes) = t.routes.as_deref() else {
            continue;
        };
        for (name, targets) in &routes.0 {
            for (k, target) in targets.iter().enumerate() {
                let p = || tasks_path.index(i).key("routes").key(name).index(k);
                match ids.id(target) {
                    None => report.push(
                        Diagnostic::error(
                            "unknown-task",
                            p(),
                            format!("route `{name}` of `{}` names unknown task `{target}`", t.id),
                        )
                        .with_hint_opt(suggest_id(target, wf, report)),
                    ),
                    Some(j) if !graph.preds(j).contains(&(i as u32)) => report.push(
                        Diagnostic::error(
                            "not-downstream",
                            p(),
                            format!(
                                "route `{name}` of `{}` names `{target}`, which does not depend on `{}`",
                                t.id, t.id
                            ),
                        )
                        .with_hint(format!("add `{}` to `depends_on` of `{target}`", t.id)),
                    ),
                    Some(_) => {}
                }
            }
        }
    }
}

/// A loop's task cannot also fan out, wait for an event or choose a route
/// (each is a task of its own before or after the loop); its `until` reads the
/// loop's task (the iteration that ended) or the tasks upstream of it.
fn repeat_structure(
    wf: &Workflow,
    graph: &Graph,
    ids: &Names,
    i: usize,
    l: &Loop,
    at: &Path,
    report: &mut Report,
) {
    let t = &wf.tasks[i];
    let clash = [
        (
            "for_each",
            t.for_each.is_some(),
            "fan out in a task before the loop",
        ),
        (
            "wait_for",
            t.wait_for.is_some(),
            "wait in a task before the loop",
        ),
        (
            "routes",
            t.routes.is_some(),
            "choose the route in a task after the loop",
        ),
    ];
    for (field, present, hint) in clash {
        if present {
            report.push(
                Diagnostic::error(
                    "bad-loop",
                    at.key(field),
                    format!("task `{}` loops and cannot also have `{field}`", t.id),
                )
                .with_hint(hint),
            );
        }
    }
    if let Some(until) = &l.until {
        let own = "the iteration that just ended";
        let at = at.key("loop").key("until");
        until_structure(wf, graph, ids, (i, own), until, &at, report);
    }
}

/// `until` reads the task itself (`own` says what its output is there) or
/// its dependencies.
fn until_structure(
    wf: &Workflow,
    graph: &Graph,
    ids: &Names,
    (i, own): (usize, &str),
    until: &Condition,
    at: &Path,
    report: &mut Report,
) {
    let t = &wf.tasks[i];
    let upstream = graph.ancestors(i as u32);
    for r in until.expr.references() {
        let p = || at.clone();
        match ids.id(&r.task) {
            None => report.push(
                Diagnostic::error(
                    "unknown-task",
                    p(),
                    format!("`until` of `{}` refers to unknown task `{}`", t.id, r.task),
                )
                .with_hint_opt(suggest_id(&r.task, wf, report)),
            ),
            Some(j) if j as usize != i && !upstream.contains(&j) => report.push(
                Diagnostic::error(
                    "not-upstream",
                    p(),
                    format!(
                        "`until` of `{}` reads `{}`, which is neither the task itself nor one of its dependencies",
                        t.id, r.task
                    ),
                )
                .with_hint(format!("`{}.output` is {own}", t.id)),
            ),
            Some(_) => {}
        }
    }
}

/// A pattern's agents are declared ones, its `start` one of them; the task
/// has no agent, fan-out, loop, sub-workflow, route or wait of its own.
fn pattern_structure(wf: &Workflow, i: usize, p: &Pattern, at: &Path, report: &mut Report) {
    let t = &wf.tasks[i];
    let clash = [
        ("agent", t.agent.is_some()),
        ("requires", !t.requires.is_empty()),
        ("for_each", t.for_each.is_some()),
        ("loop", t.repeat.is_some()),
        ("workflow", t.workflow.is_some()),
        ("routes", t.routes.is_some()),
        ("wait_for", t.wait_for.is_some()),
    ];
    for (field, present) in clash {
        if present {
            report.push(
                Diagnostic::error(
                    "bad-pattern",
                    at.key(field),
                    format!(
                        "task `{}` runs a {} pattern and cannot also have `{field}`",
                        t.id,
                        p.name()
                    ),
                )
                .with_hint(
                    "the pattern's agents take the turns; put the rest in tasks of their own",
                ),
            );
        }
    }
    let (list, agents, lead, lead_name) = match p {
        Pattern::Handoff { agents, start, .. }
        | Pattern::Network { agents, start, .. }
        | Pattern::Swarm { agents, start, .. } => ("agents", agents, "start", start.as_deref()),
        Pattern::Supervisor {
            supervisor,
            workers,
            ..
        } => ("workers", workers, "supervisor", Some(supervisor.as_str())),
    };
    let kind = p.name();
    let declared = || wf.agents.iter().map(|a| a.name.as_str());
    let mut seen = std::collections::HashSet::new();
    for (k, name) in agents.iter().enumerate() {
        if !seen.insert(name.as_str()) {
            report.push(Diagnostic::error(
                "bad-pattern",
                at.key("pattern").key(list).index(k),
                format!("agent `{name}` is listed twice"),
            ));
        } else if !declared().any(|a| a == name) {
            report.push(
                Diagnostic::error(
                    "unknown-agent",
                    at.key("pattern").key(list).index(k),
                    format!(
                        "the {kind} pattern of `{}` names unknown agent `{name}`",
                        t.id
                    ),
                )
                .with_hint_opt(crate::did_you_mean(name, declared())),
            );
        }
    }
    let Some(lead_name) = lead_name else { return };
    match p {
        Pattern::Handoff { .. } | Pattern::Network { .. } | Pattern::Swarm { .. }
            if !agents.iter().any(|a| a == lead_name) =>
        {
            report.push(
            Diagnostic::error(
                "bad-pattern",
                at.key("pattern").key(lead),
                format!("`start` is `{lead_name}`, which is not one of the {kind}'s agents"),
            )
            .with_hint(format!("one of: {}", agents.join(", "))),
        );
        }
        Pattern::Supervisor { .. } if agents.iter().any(|a| a == lead_name) => report.push(
            Diagnostic::error(
                "bad-pattern",
                at.key("pattern").key(lead),
                format!("`{lead_name}` is the supervisor and one of its own workers"),
            )
            .with_hint("the supervisor takes every other turn; list only the agents it delegates to in `workers`"),
        ),
        Pattern::Supervisor { .. } if !declared().any(|a| a == lead_name) => report.push(
            Diagnostic::error(
                "unknown-agent",
                at.key("pattern").key(lead),
                format!("the supervisor of `{}` is unknown agent `{lead_name}`", t.id),
            )
            .with_hint_opt(crate::did_you_mean(lead_name, declared())),
        ),
        _ => {}
    }
    // A delegation names a worker or a team: one name, one of them.
    if let Pattern::Supervisor { teams, workers, .. } = p {
        for team in teams {
            if workers.contains(&team.name) || team.name == lead_name {
                report.push(
                    Diagnostic::error(
                        "bad-pattern",
                        at.key("pattern").key("teams").key(&team.name),
                        format!(
                            "team `{}` has the name of {}",
                            team.name,
                            if team.name == lead_name {
                                "the supervisor"
                            } else {
                                "one of the workers"
                            }
                        ),
                    )
                    .with_hint(
                        "a delegation calls a worker or a team by name: give the team another",
                    ),
                );
            }
        }
    }
}
