//! Agents: the fields every agent takes, and the settings of the built-in
//! kinds (`noop`, `simulate`, `command`, `http`, `llm`), each checked against
//! the agent's type.

use std::time::Duration;

use serde_json::Value;

use super::{count, duration_value, object, scalar_string, string_list, type_error, unknown_field};
use crate::diag::{Diagnostic, Path, Report, Severity};
use crate::duration;
use crate::suggest::{closest, did_you_mean};
use crate::workflow::{Agent, BreakerPolicy, Command, Latency};

/// Fields every agent takes, whatever its type.
const GENERIC: &[&str] = &["type", "capabilities", "concurrency", "breaker"];

/// Reads one setting into the agent, reporting what is wrong with it.
type Read = fn(&mut Agent, Value, &Path, &mut Report);

/// Fields that only one built-in type takes: the field, that type, its reader.
const SPECIFIC: &[(&str, &str, Read)] = &[
    ("command", "command", |a, v, p, r| {
        a.command = command(v, p, r)
    }),
    ("shell", "command", |a, v, p, r| a.shell = flag(v, p, r)),
    ("env", "command", |a, v, p, r| {
        a.env = pairs(v, p, env_var, r)
    }),
    ("workdir", "command", |a, v, p, r| {
        a.workdir = workdir(v, p, r)
    }),
    ("timeout", "command", |a, v, p, r| {
        a.timeout = limit(&v, p, r)
    }),
    ("url", "http", |a, v, p, r| a.url = url(v, p, r)),
    ("headers", "http", |a, v, p, r| {
        a.headers = pairs(v, p, header, r)
    }),
    ("latency", "simulate", |a, v, p, r| {
        a.latency = latency(v, p, r)
    }),
    ("failure_rate", "simulate", |a, v, p, r| {
        a.failure_rate = probability(&v, p, r)
    }),
    ("seed", "simulate", |a, v, p, r| a.seed = seed(&v, p, r)),
    ("base_url", "llm", |a, v, p, r| a.base_url = url(v, p, r)),
    ("model", "llm", |a, v, p, r| a.model = text(v, p, r)),
    ("system", "llm", |a, v, p, r| a.system = text(v, p, r)),
    ("temperature", "llm", |a, v, p, r| {
        a.temperature = temperature(&v, p, r)
    }),
    ("max_tokens", "llm", |a, v, p, r| {
        match count(&v, p, "max_tokens") {
            Ok(n) => a.max_tokens = Some(n),
            Err(d) => r.push(d),
        }
    }),
    ("api_key_env", "llm", |a, v, p, r| {
        a.api_key_env = text(v, p, r).filter(|name| match env_var(name, "") {
            Ok(()) => true,
            Err(why) => {
                r.push(Diagnostic::error("bad-value", p.clone(), why));
                false
            }
        })
    }),
    ("stream", "http", |a, v, p, r| a.stream = flag(v, p, r)),
    ("stream", "llm", |a, v, p, r| a.stream = flag(v, p, r)),
    ("outputs", "simulate", |a, v, p, r| {
        if let Some(map) = object(v, p, "a map of task ids to the outputs they return", r) {
            a.outputs = map.into_iter().collect();
        }
    }),
];

/// The field each built-in type cannot run without, and how to write it.
const REQUIRED: &[(&str, &str, &str)] = &[
    (
        "command",
        "command",
        "a command line (`command: ./build.sh --release`; add `shell: true` for `sh -c`) or a program and its arguments (`command: [cargo, build]`)",
    ),
    (
        "http",
        "url",
        "the URL that receives JSON-RPC `message/send` requests (`url: http://127.0.0.1:8080/`)",
    ),
    (
        "llm",
        "base_url",
        "the base URL of an OpenAI-compatible API (`base_url: http://127.0.0.1:11434/v1` for a local Ollama)",
    ),
    ("llm", "model", "the model to ask (`model: llama3.2`)"),
];

/// Reads a map of agent names to agents, in declaration order.
///
/// `missing` is the severity of a missing `command` or `url`: a workflow
/// document can be planned without them (its agents may be configured
/// elsewhere, and the engine refuses to run such an agent), while agents
/// declared in a configuration file exist only to be run.
pub(crate) fn agents(v: Value, path: &Path, missing: Severity, report: &mut Report) -> Vec<Agent> {
    let Some(map) = object(v, path, "a map of agent names to agents", report) else {
        return Vec::new();
    };
    map.into_iter()
        .filter_map(|(name, spec)| agent(name, spec, path, missing, report))
        .collect()
}

fn agent(
    name: String,
    spec: Value,
    agents_path: &Path,
    missing: Severity,
    report: &mut Report,
) -> Option<Agent> {
    let at = agents_path.key(&name);
    let fields = object(spec, &at, "an agent (a map with `type`)", report)?;
    let mut agent = Agent {
        name,
        ..Agent::default()
    };
    // The type decides which other fields apply, wherever it is written.
    let has_type = fields.contains_key("type");
    let kind = fields
        .get("type")
        .and_then(|v| scalar_string(v.clone(), &at.key("type"), report));
    let required: Vec<_> = REQUIRED
        .iter()
        .filter(|(owner, field, _)| kind.as_deref() == Some(*owner) && !fields.contains_key(*field))
        .collect();
    for (key, value) in fields {
        let p = at.key(&key);
        match key.as_str() {
            "type" => {}
            "capabilities" => agent.capabilities = string_list(value, &p, report),
            "concurrency" => match count(&value, &p, "concurrency") {
                Ok(n) => agent.concurrency = Some(n),
                Err(d) => report.push(d.with_hint("leave it out for no limit")),
            },
            "breaker" => agent.breaker = breaker(value, &p, report),
            _ => {
                let owners: Vec<&str> = SPECIFIC
                    .iter()
                    .filter(|(field, ..)| *field == key)
                    .map(|(_, owner, _)| *owner)
                    .collect();
                let own = SPECIFIC.iter().find(|(field, owner, _)| {
                    *field == key && kind.as_deref().is_none_or(|k| k == *owner)
                });
                match own {
                    Some((.., read)) => read(&mut agent, value, &p, report),
                    None if !owners.is_empty() => report.push(
                        Diagnostic::error(
                            "unknown-field",
                            p,
                            format!(
                                "agent `{}` of type `{}` takes no `{key}`",
                                agent.name,
                                kind.as_deref().unwrap_or_default()
                            ),
                        )
                        .with_hint(format!(
                            "`{key}` applies to agents of type `{}`",
                            owners.join("` or `")
                        )),
                    ),
                    None => report.push(unknown(p, &key, kind.as_deref())),
                }
            }
        }
    }
    agent.kind = kind.unwrap_or_default();
    words(&mut agent, &at, report);
    if !has_type {
        report.push(
            Diagnostic::error(
                "missing-field",
                at.clone(),
                format!("agent `{}` has no `type`", agent.name),
            )
            .with_hint("add `type:`, e.g. `type: noop`"),
        );
    }
    for (kind, field, what) in required {
        report.push(
            Diagnostic {
                severity: missing,
                ..Diagnostic::error(
                    "missing-field",
                    at.clone(),
                    format!("agent `{}` of type `{kind}` has no `{field}`", agent.name),
                )
            }
            .with_hint(match missing {
                Severity::Error => format!("add `{field}:`, {what}"),
                Severity::Warning => {
                    format!("add `{field}:`, {what}; until then the agent cannot run")
                }
            }),
        );
    }
    Some(agent)
}

/// The fields an agent of this type takes (all of them when the type is
/// unknown).
fn known(kind: Option<&str>) -> Vec<&'static str> {
    let specific = SPECIFIC
        .iter()
        .filter(|(_, owner, _)| kind.is_none_or(|k| k == *owner))
        .map(|(field, ..)| *field);
    let mut fields: Vec<&str> = GENERIC.iter().copied().chain(specific).collect();
    // A field more than one type takes is listed once.
    let mut seen = std::collections::HashSet::new();
    fields.retain(|f| seen.insert(*f));
    fields
}

/// An unknown field, with the closest field of this type, or else the closest
/// field of another type (`urll` on a `simulate` agent is probably `url`).
fn unknown(path: Path, key: &str, kind: Option<&str>) -> Diagnostic {
    let own = known(kind);
    let diagnostic = unknown_field(path, key, "agent", &own);
    if closest(key, own.iter().copied()).is_some() {
        return diagnostic;
    }
    let other = closest(key, SPECIFIC.iter().map(|(field, ..)| *field))
        .and_then(|c| SPECIFIC.iter().find(|(field, ..)| *field == c));
    match other {
        Some((field, owner, _)) => diagnostic.with_hint(format!(
            "did you mean `{field}`? it applies to agents of type `{owner}`"
        )),
        None => diagnostic,
    }
}

fn breaker(v: Value, path: &Path, report: &mut Report) -> Option<BreakerPolicy> {
    const FIELDS: &[&str] = &["failure_rate", "window", "min_calls", "cooldown"];
    let map = object(v, path, "a breaker policy (a map)", report)?;
    let mut policy = BreakerPolicy::default();
    let mut min_calls = None;
    for (key, value) in map {
        let p = path.key(&key);
        match key.as_str() {
            "failure_rate" => match value.as_f64() {
                Some(r) if r > 0.0 && r <= 1.0 => policy.failure_rate = r,
                _ => report.push(
                    Diagnostic::error(
                        "bad-value",
                        p,
                        format!(
                            "`failure_rate` must be a fraction above 0 and at most 1, found {value}"
                        ),
                    )
                    .with_hint("0.5 opens the breaker when half of the calls in the window failed"),
                ),
            },
            "window" => match count(&value, &p, "window") {
                Ok(n) => policy.window = n,
                Err(d) => report.push(d.with_hint("the breaker counts the last `window` calls")),
            },
            "min_calls" => match count(&value, &p, "min_calls") {
                Ok(n) => min_calls = Some(n),
                Err(d) => report.push(d),
            },
            "cooldown" => match duration_value(&value, || p.clone(), report) {
                Some(d) if d.is_zero() => report.push(Diagnostic::error(
                    "bad-value",
                    p,
                    "`cooldown` must be greater than zero",
                )),
                Some(d) => policy.cooldown = d,
                None => {}
            },
            _ => report.push(unknown_field(p, &key, "breaker", FIELDS)),
        }
    }
    // Left out, `min_calls` shrinks to a small window rather than exceed it.
    policy.min_calls = min_calls.unwrap_or(policy.min_calls.min(policy.window));
    if policy.min_calls > policy.window {
        report.push(
            Diagnostic::error(
                "bad-value",
                path.key("min_calls"),
                format!(
                    "breaker `min_calls` ({}) is larger than `window` ({})",
                    policy.min_calls, policy.window
                ),
            )
            .with_hint("the breaker counts only the last `window` calls, so it could never open: lower `min_calls` or raise `window`"),
        );
    }
    Some(policy)
}

/// A string where one is required: numbers are taken as written, null is an
/// error.
fn text(v: Value, path: &Path, report: &mut Report) -> Option<String> {
    if v.is_null() {
        report.push(type_error(path.clone(), "a string", &v));
        return None;
    }
    scalar_string(v, path, report)
}

fn command(v: Value, path: &Path, report: &mut Report) -> Option<Command> {
    const HINT: &str = "write a command line (`command: ./build.sh --release`; add `shell: true` for `sh -c`) or a program and its arguments (`command: [cargo, build, --release]`)";
    let empty = |report: &mut Report, what: &str| {
        report.push(
            Diagnostic::error("bad-value", path.clone(), format!("`command` is {what}"))
                .with_hint(HINT),
        )
    };
    match v {
        Value::String(s) if s.trim().is_empty() => {
            empty(report, "empty");
            None
        }
        // Split into words by `words` once `shell` is known.
        Value::String(s) => Some(Command::Shell(s)),
        Value::Array(items) => {
            let len = items.len();
            let argv: Vec<String> = items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| text(item, &path.index(i), report))
                .collect();
            if argv.len() != len {
                return None;
            }
            match argv.first() {
                None => empty(report, "an empty list"),
                Some(program) if program.is_empty() => empty(report, "missing its program"),
                Some(_) => return Some(Command::Argv(argv)),
            }
            None
        }
        other => {
            report.push(
                type_error(
                    path.clone(),
                    "a command line (a string) or a program and its arguments (a list)",
                    &other,
                )
                .with_hint(HINT),
            );
            None
        }
    }
}

/// Without `shell: true`, a command line is split into words here and run
/// directly, so that no shell ever reads it; a line that means something only
/// to a shell (a pipe, a redirection, a variable) is an error rather than a
/// surprise.
fn words(agent: &mut Agent, at: &Path, report: &mut Report) {
    match &agent.command {
        Some(Command::Shell(line)) if !agent.shell => match split_words(line) {
            Ok(argv) => agent.command = Some(Command::Argv(argv)),
            Err(why) => {
                report.push(
                    Diagnostic::error(
                        "shell-syntax",
                        at.key("command"),
                        format!("`command` {why}, but it runs without a shell"),
                    )
                    .with_hint(
                        "add `shell: true` to run it with `sh -c`, or write the program and its arguments as a list (`command: [program, arg]`)",
                    ),
                );
                agent.command = None;
            }
        },
        Some(Command::Argv(_)) if agent.shell => report.push(
            Diagnostic::error(
                "bad-value",
                at.key("shell"),
                "`shell: true` runs a command line, but `command` is a list",
            )
            .with_hint(
                "write the command as one string, or leave `shell` out to run the list directly",
            ),
        ),
        _ => {}
    }
}

/// Splits a command line into words as `sh` would, for what has the same
/// meaning without a shell: blanks separate words, `'…'` quotes literally,
/// `"…"` quotes with `\` escaping `"` and `\`, and `\` escapes one character.
/// Anything a shell would act on (operators, redirections, expansions, globs,
/// comments, several lines) is refused with what and where it is.
pub(crate) fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    // A block scalar's final line break is not a second command.
    let mut chars = line.trim_end_matches(['\n', '\r']).char_indices();
    let syntax = |c: char, at: usize| {
        let what = match c {
            '|' | '&' | ';' => "a shell operator",
            '<' | '>' => "a redirection",
            '$' | '`' => "a shell expansion",
            '*' | '?' | '[' => "a glob",
            '(' | ')' => "a subshell",
            '~' => "a home-directory expansion",
            '#' => "a comment",
            _ => "a line break",
        };
        let shown = if c == '\n' {
            "\\n".to_owned()
        } else {
            c.to_string()
        };
        format!("uses {what} (`{shown}` at byte {at})")
    };
    while let Some((at, c)) = chars.next() {
        match c {
            ' ' | '\t' => {
                if let Some(w) = word.take() {
                    words.push(w);
                }
            }
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some((_, '\'')) => break,
                        Some((_, c)) => w.push(c),
                        None => return Err(format!("has an unclosed `'` (at byte {at})")),
                    }
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                loop {
                    match chars.next() {
                        Some((_, '"')) => break,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, c @ ('"' | '\\'))) => w.push(c),
                            Some((i, c @ ('$' | '`'))) => return Err(syntax(c, i)),
                            Some((_, c)) => {
                                w.push('\\');
                                w.push(c);
                            }
                            None => return Err(format!("has an unclosed `\"` (at byte {at})")),
                        },
                        Some((i, c @ ('$' | '`'))) => return Err(syntax(c, i)),
                        Some((_, c)) => w.push(c),
                        None => return Err(format!("has an unclosed `\"` (at byte {at})")),
                    }
                }
            }
            '\\' => match chars.next() {
                Some((_, '\n')) => {}
                Some((_, c)) => word.get_or_insert_with(String::new).push(c),
                None => return Err(format!("ends with a lone `\\` (at byte {at})")),
            },
            '|' | '&' | ';' | '<' | '>' | '$' | '`' | '*' | '?' | '[' | '(' | ')' | '\n' | '\r' => {
                return Err(syntax(c, at));
            }
            '~' | '#' if word.is_none() => return Err(syntax(c, at)),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    words.extend(word);
    if words.is_empty() {
        return Err("has no words".into());
    }
    Ok(words)
}

/// `true` or `false`.
fn flag(v: Value, path: &Path, report: &mut Report) -> bool {
    match v {
        Value::Bool(b) => b,
        other => {
            report.push(type_error(path.clone(), "true or false", &other));
            false
        }
    }
}

/// A directory path (not checked to exist: it must exist where the agent runs).
fn workdir(v: Value, path: &Path, report: &mut Report) -> Option<String> {
    let dir = text(v, path, report)?;
    if dir.is_empty() || dir.contains('\0') {
        report.push(Diagnostic::error(
            "bad-value",
            path.clone(),
            "`workdir` must be a directory path, non-empty and without NUL",
        ));
        return None;
    }
    Some(dir)
}

/// A duration above zero.
fn limit(v: &Value, path: &Path, report: &mut Report) -> Option<Duration> {
    match duration_value(v, || path.clone(), report)? {
        d if d.is_zero() => {
            report.push(
                Diagnostic::error(
                    "bad-value",
                    path.clone(),
                    "`timeout` must be greater than zero",
                )
                .with_hint("leave it out for no limit of the agent's own"),
            );
            None
        }
        d => Some(d),
    }
}

/// A map of names to strings, in declaration order; `check` says what is
/// wrong with a name or value.
fn pairs(
    v: Value,
    path: &Path,
    check: fn(&str, &str) -> Result<(), String>,
    report: &mut Report,
) -> Vec<(String, String)> {
    let Some(map) = object(v, path, "a map of names to strings", report) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let p = path.key(&name);
        let Some(value) = text(value, &p, report) else {
            continue;
        };
        match check(&name, &value) {
            Ok(()) => out.push((name, value)),
            Err(why) => report.push(Diagnostic::error("bad-value", p, why)),
        }
    }
    out
}

fn env_var(name: &str, value: &str) -> Result<(), String> {
    if name.is_empty() || name.contains(['=', '\0']) {
        return Err(format!(
            "`{name}` is not an environment variable name: it must be non-empty, without `=` or NUL"
        ));
    }
    if value.contains('\0') {
        return Err(format!("the value of `{name}` contains a NUL byte"));
    }
    Ok(())
}

fn header(name: &str, value: &str) -> Result<(), String> {
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!(
            "`{name}` is not a header name: letters, digits and !#$%&'*+-.^_`|~ only"
        ));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!(
            "the value of header `{name}` contains a line break or NUL"
        ));
    }
    Ok(())
}

fn url(v: Value, path: &Path, report: &mut Report) -> Option<String> {
    let url = text(v, path, report)?;
    match check_url(&url) {
        Ok(()) => Some(url),
        Err(why) => {
            // `url` or `base_url`: the field's own name.
            let at = path.to_string();
            let field = at.rsplit('.').next().unwrap_or("url");
            report.push(
                Diagnostic::error("bad-value", path.clone(), format!("invalid `{field}` `{url}`: {why}"))
                    .with_hint("expected an http:// or https:// URL with a host, e.g. `http://127.0.0.1:8080/`"),
            );
            None
        }
    }
}

/// Checks what the HTTP agent relies on: the scheme, a host and a numeric
/// port; the rest of the URL is the server's business.
fn check_url(url: &str) -> Result<(), String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err("no `http://` or `https://` scheme".into());
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Err(format!("the scheme `{scheme}` is not http or https"));
    }
    if url.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err("it contains whitespace".into());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6
                .split_once(']')
                .ok_or("the IPv6 host has no closing `]`")?;
            match after {
                "" => (host, None),
                _ => (
                    host,
                    Some(
                        after
                            .strip_prefix(':')
                            .ok_or("unexpected text after the IPv6 host")?,
                    ),
                ),
            }
        }
        None => match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err("it has no host".into());
    }
    if let Some(port) = port
        && !port.is_empty()
        && port.parse::<u16>().is_err()
    {
        return Err(format!("the port `{port}` is not a number from 0 to 65535"));
    }
    Ok(())
}

/// Each distribution, the fields it needs, and an example.
const DISTRIBUTIONS: &[(&str, &[&str], &str)] = &[
    (
        "constant",
        &["mean"],
        "{ distribution: constant, mean: 20ms }",
    ),
    (
        "uniform",
        &["min", "max"],
        "{ distribution: uniform, min: 10ms, max: 50ms }",
    ),
    (
        "exponential",
        &["mean"],
        "{ distribution: exponential, mean: 20ms }",
    ),
    (
        "normal",
        &["mean", "stddev"],
        "{ distribution: normal, mean: 20ms, stddev: 5ms }",
    ),
];

const DISTRIBUTION_HINT: &str = "`distribution` is `constant` (with `mean`), `uniform` (`min`, `max`), `exponential` (`mean`) or `normal` (`mean`, `stddev`)";

fn latency(v: Value, path: &Path, report: &mut Report) -> Option<Latency> {
    const FIELDS: &[&str] = &["distribution", "mean", "min", "max", "stddev"];
    let map = match v {
        Value::Object(map) => map,
        v @ (Value::String(_) | Value::Number(_)) => {
            return duration_value(&v, || path.clone(), report).map(Latency::Constant);
        }
        other => {
            report.push(
                type_error(
                    path.clone(),
                    "a duration or a distribution (a map with `distribution`)",
                    &other,
                )
                .with_hint(DISTRIBUTION_HINT),
            );
            return None;
        }
    };
    let mut distribution = None;
    // The duration fields given: name, where, and the value when it is valid.
    let mut given: Vec<(&str, Path, Option<Duration>)> = Vec::new();
    for (key, value) in map {
        let p = path.key(&key);
        match FIELDS.iter().find(|f| **f == key) {
            Some(&"distribution") => distribution = text(value, &p, report).map(|name| (name, p)),
            Some(&field) => given.push((field, p.clone(), duration_value(&value, || p, report))),
            None => report.push(unknown_field(p, &key, "latency", FIELDS)),
        }
    }
    let Some((name, name_path)) = distribution else {
        report.push(
            Diagnostic::error(
                "missing-field",
                path.clone(),
                "`latency` has no `distribution`",
            )
            .with_hint(DISTRIBUTION_HINT),
        );
        return None;
    };
    let Some(&(name, needs, example)) = DISTRIBUTIONS.iter().find(|(n, ..)| *n == name) else {
        report.push(
            Diagnostic::error(
                "bad-value",
                name_path,
                format!("unknown latency distribution `{name}`"),
            )
            .with_hint(
                did_you_mean(&name, DISTRIBUTIONS.iter().map(|(n, ..)| *n))
                    .unwrap_or_else(|| DISTRIBUTION_HINT.into()),
            ),
        );
        return None;
    };
    let needs_text = needs
        .iter()
        .map(|f| format!("`{f}`"))
        .collect::<Vec<_>>()
        .join(" and ");
    let hint = format!("e.g. `latency: {example}`");
    let mut complete = true;
    for (field, p, _) in &given {
        if !needs.contains(field) {
            complete = false;
            report.push(
                Diagnostic::error(
                    "unknown-field",
                    p.clone(),
                    format!("a `{name}` latency takes {needs_text}, not `{field}`"),
                )
                .with_hint(hint.clone()),
            );
        }
    }
    let absent: Vec<&str> = needs
        .iter()
        .copied()
        .filter(|f| !given.iter().any(|(g, ..)| g == f))
        .collect();
    if !absent.is_empty() {
        complete = false;
        report.push(
            Diagnostic::error(
                "missing-field",
                path.clone(),
                format!(
                    "a `{name}` latency needs {needs_text}; `{}` is missing",
                    absent.join("`, `")
                ),
            )
            .with_hint(hint),
        );
    }
    // A field given but not a valid duration has been reported already.
    if !complete || given.iter().any(|(.., d)| d.is_none()) {
        return None;
    }
    let get = |field: &str| {
        given
            .iter()
            .find_map(|(f, _, d)| if *f == field { *d } else { None })
            .unwrap_or_default()
    };
    let latency = match name {
        "constant" => Latency::Constant(get("mean")),
        "uniform" => Latency::Uniform {
            min: get("min"),
            max: get("max"),
        },
        "exponential" => Latency::Exponential { mean: get("mean") },
        _ => Latency::Normal {
            mean: get("mean"),
            stddev: get("stddev"),
        },
    };
    if let Latency::Uniform { min, max } = latency
        && min > max
    {
        report.push(Diagnostic::error(
            "bad-value",
            path.clone(),
            format!(
                "uniform latency `min` ({}) is larger than `max` ({})",
                duration::format(min),
                duration::format(max)
            ),
        ));
        return None;
    }
    Some(latency)
}

/// A probability: a number from 0 to 1.
fn temperature(v: &Value, path: &Path, report: &mut Report) -> Option<f64> {
    match v.as_f64() {
        Some(t) if (0.0..=2.0).contains(&t) => Some(t),
        _ => {
            report.push(Diagnostic::error(
                "bad-value",
                path.clone(),
                format!("`temperature` must be a number from 0 to 2, found {v}"),
            ));
            None
        }
    }
}

fn probability(v: &Value, path: &Path, report: &mut Report) -> Option<f64> {
    match v.as_f64() {
        Some(r) if (0.0..=1.0).contains(&r) => Some(r),
        _ => {
            report.push(
                Diagnostic::error(
                    "bad-value",
                    path.clone(),
                    format!("`failure_rate` must be a fraction from 0 to 1, found {v}"),
                )
                .with_hint("0.1 fails one call in ten"),
            );
            None
        }
    }
}

fn seed(v: &Value, path: &Path, report: &mut Report) -> Option<u64> {
    let seed = v.as_u64();
    if seed.is_none() {
        report.push(Diagnostic::error(
            "bad-value",
            path.clone(),
            format!("`seed` must be a whole number ≥ 0, found {v}"),
        ));
    }
    seed
}

#[cfg(test)]
mod tests {
    use super::split_words;

    fn ok(line: &str) -> Vec<String> {
        split_words(line).unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    #[test]
    fn words_split_as_a_shell_would() {
        assert_eq!(
            ok("python3  agent.py\t--fast"),
            ["python3", "agent.py", "--fast"]
        );
        assert_eq!(
            ok("echo 'a | b' \"c  d\" e\\ f"),
            ["echo", "a | b", "c  d", "e f"]
        );
        assert_eq!(ok(r#"say "a \"q\" \\ \n""#), ["say", r#"a "q" \ \n"#]);
        assert_eq!(ok("x ''"), ["x", ""]);
        assert_eq!(ok("a'b'\"c\"d"), ["abcd"]);
        assert_eq!(
            ok("./run.sh --x=1 a#b x~y\n"),
            ["./run.sh", "--x=1", "a#b", "x~y"]
        );
        // Single quotes keep what a shell would expand.
        assert_eq!(
            ok("echo '$(id) `id` * ; > x'"),
            ["echo", "$(id) `id` * ; > x"]
        );
    }

    #[test]
    fn shell_syntax_is_refused_with_what_and_where() {
        for (line, what, at) in [
            ("cat x | jq .", "a shell operator (`|`", 6),
            ("make && make test", "a shell operator (`&`", 5),
            ("echo hi > out", "a redirection (`>`", 8),
            ("echo $HOME", "a shell expansion (`$`", 5),
            ("echo \"$(id)\"", "a shell expansion (`$`", 6),
            ("echo `id`", "a shell expansion", 5),
            ("ls *.txt", "a glob (`*`", 3),
            ("cd ~", "a home-directory expansion (`~`", 3),
            ("run # note", "a comment (`#`", 4),
            ("one\ntwo", "a line break (`\\n`", 3),
        ] {
            let err = split_words(line).unwrap_err();
            assert!(err.starts_with("uses "), "{line:?}: {err}");
            assert!(err.contains(what), "{line:?}: {err}");
            assert!(err.contains(&format!("at byte {at})")), "{line:?}: {err}");
        }
        assert!(
            split_words("echo 'open")
                .unwrap_err()
                .contains("unclosed `'`")
        );
        assert!(
            split_words("echo \"open")
                .unwrap_err()
                .contains("unclosed `\"`")
        );
        assert!(split_words("end\\").unwrap_err().contains("lone `\\`"));
        assert!(split_words("  ").unwrap_err().contains("no words"));
    }
}
