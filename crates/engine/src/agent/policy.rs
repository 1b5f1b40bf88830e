//! Which agents a workflow that comes from outside (posted to a server) may
//! define itself.
//!
//! A workflow names the agents its tasks run on. Those the operator defined
//! (a server's `[agents.NAME]`) replace the workflow's own of the same name, so
//! a workflow may always *use* them. What it declares itself is another matter:
//! a `command` agent runs a process on the server's host and an `http` agent
//! makes the server send requests, so a workflow from a remote caller may
//! define them only where the operator allowed it, per type, and for `http`
//! per URL prefix or host. `noop`, `simulate` and `worker` agents run nothing
//! and reach nothing: they are always allowed.

use baton_model::{Agent, SubWorkflow, Workflow};
use http::Uri;

/// What a workflow from outside may define itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Whether it may define `command` agents.
    pub command: bool,
    /// Where its `http` agents may send requests: URL prefixes
    /// (`https://agents.example.com/v1/`, matched on whole path segments) or
    /// hosts (`agents.example.com`, `agents.example.com:8443`).
    pub http: Vec<String>,
}

/// An agent a workflow may not define.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The agent's name.
    pub agent: String,
    /// Its type's JSON path in the document (`$.agents.NAME.type`, or under
    /// `$.tasks[I].workflow.inline` for a sub-workflow's agent).
    pub path: String,
    /// Its type (`command` or `http`).
    pub kind: &'static str,
    /// Why, for people.
    pub message: String,
}

impl Policy {
    /// The agents of `workflow` it may not define, in declaration order; the
    /// agents named in `configured` (the operator's) are not its own.
    /// Inline sub-workflows are checked too (the operator's agents replace
    /// theirs of the same name as well).
    pub fn check(&self, workflow: &Workflow, configured: &[Agent]) -> Vec<Refusal> {
        let mut refused = Vec::new();
        self.check_at(workflow, configured, "$", &mut refused);
        refused
    }

    fn check_at(
        &self,
        workflow: &Workflow,
        configured: &[Agent],
        at: &str,
        out: &mut Vec<Refusal>,
    ) {
        out.extend(
            workflow
                .agents
                .iter()
                .filter(|a| !configured.iter().any(|c| c.name == a.name))
                .filter_map(|a| self.refusal(a, at)),
        );
        // Inline children: a task's `workflow` and a hierarchical
        // supervisor's teams.
        for (i, task) in workflow.tasks.iter().enumerate() {
            for (place, sub) in task.sub_workflows() {
                if let SubWorkflow::Inline(child) = sub {
                    let at = format!("{at}.tasks[{i}].{place}.inline");
                    self.check_at(child, configured, &at, out);
                }
            }
        }
    }

    fn refusal(&self, agent: &Agent, at: &str) -> Option<Refusal> {
        let refuse = |kind, message: String| {
            Some(Refusal {
                agent: agent.name.clone(),
                path: format!(
                    "{at}.agents{}.type",
                    baton_model::Path::root()
                        .key(&agent.name)
                        .to_string()
                        .trim_start_matches('$')
                ),
                kind,
                message,
            })
        };
        match agent.kind.as_str() {
            "command" if !self.command => refuse(
                "command",
                format!(
                    "agent `{}` is a `command` agent, which would run a process on the server; workflows sent to this server may not define them",
                    agent.name
                ),
            ),
            // An `llm` agent reaches the network as an `http` agent does.
            "http" | "llm" => {
                let (kind, url) = match agent.kind.as_str() {
                    "http" => ("http", agent.url.as_deref()),
                    _ => ("llm", agent.base_url.as_deref()),
                };
                let url = url.unwrap_or_default();
                // An agent card may send calls anywhere on its origin: the
                // whole origin must be allowed.
                let card = kind == "http" && super::card::is_card_url(url);
                let reaches = match url.parse::<Uri>() {
                    Ok(u) if card => format!(
                        "{}://{}/",
                        u.scheme_str().unwrap_or("http"),
                        u.authority().map_or("", |a| a.as_str())
                    ),
                    _ => url.to_owned(),
                };
                if self.http.iter().any(|allowed| matches(allowed, &reaches)) {
                    return None;
                }
                let why = if card {
                    " (an agent card's URL: its agent may be anywhere on that host, which must be allowed as a whole)"
                } else {
                    ""
                };
                refuse(
                    kind,
                    format!(
                        "agent `{}` is an `{kind}` agent calling `{url}`{why}, which this server does not let workflows call",
                        agent.name
                    ),
                )
            }
            _ => None,
        }
    }
}

/// Whether `url` is under `allowed`: a URL prefix (same scheme, host and port,
/// and a path that continues the prefix's at a segment boundary) or a host
/// (`host` or `host:port`: any path, either scheme).
fn matches(allowed: &str, url: &str) -> bool {
    let Ok(url) = url.parse::<Uri>() else {
        return false;
    };
    let (Some(scheme), Some(host)) = (url.scheme_str(), url.host()) else {
        return false;
    };
    let port = url.port_u16().or(match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    });
    if !allowed.contains("://") {
        let (name, want) = match allowed.rsplit_once(':') {
            Some((name, p)) if !name.ends_with(':') && p.parse::<u16>().is_ok() => {
                (name, p.parse::<u16>().ok())
            }
            _ => (allowed, None),
        };
        return name.eq_ignore_ascii_case(host) && want.is_none_or(|p| Some(p) == port);
    }
    let Ok(prefix) = allowed.parse::<Uri>() else {
        return false;
    };
    let prefix_port = prefix.port_u16().or(match prefix.scheme_str() {
        Some("http") => Some(80),
        Some("https") => Some(443),
        _ => None,
    });
    if !prefix
        .scheme_str()
        .is_some_and(|s| s.eq_ignore_ascii_case(scheme))
        || !prefix.host().is_some_and(|h| h.eq_ignore_ascii_case(host))
        || prefix_port != port
    {
        return false;
    }
    let want = prefix.path();
    let path = url.path();
    // `/v1` allows `/v1` and `/v1/x`, not `/v10`; `/v1/` allows `/v1/x`.
    path.strip_prefix(want)
        .is_some_and(|rest| want.ends_with('/') || rest.is_empty() || rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, kind: &str, url: Option<&str>) -> Agent {
        Agent {
            name: name.into(),
            kind: kind.into(),
            url: url.map(str::to_owned),
            command: (kind == "command").then(|| baton_model::Command::Argv(vec!["id".into()])),
            ..Agent::default()
        }
    }

    fn workflow(agents: Vec<Agent>) -> Workflow {
        Workflow {
            agents,
            ..Workflow::default()
        }
    }

    #[test]
    fn by_default_only_agents_that_run_nothing_are_allowed() {
        let wf = workflow(vec![
            agent("sh", "command", None),
            agent("web", "http", Some("http://169.254.169.254/latest/")),
            agent("n", "noop", None),
            agent("s", "simulate", None),
            agent("w", "worker", None),
            agent("r", "research_agent", None),
            Agent {
                base_url: Some("http://10.0.0.9:11434/v1".into()),
                ..agent("model", "llm", None)
            },
        ]);
        let refused = Policy::default().check(&wf, &[]);
        let names: Vec<_> = refused.iter().map(|r| (r.agent.as_str(), r.kind)).collect();
        assert_eq!(
            names,
            [("sh", "command"), ("web", "http"), ("model", "llm")]
        );
        assert!(refused[1].message.contains("169.254.169.254"));
        assert!(
            refused[2]
                .message
                .contains("`llm` agent calling `http://10.0.0.9:11434/v1`")
        );
    }

    #[test]
    fn the_operators_agents_are_not_the_workflows_own() {
        let wf = workflow(vec![agent("sh", "command", None)]);
        let configured = [agent("sh", "command", None)];
        assert!(Policy::default().check(&wf, &configured).is_empty());
    }

    #[test]
    fn command_agents_when_allowed() {
        let wf = workflow(vec![agent("sh", "command", None)]);
        let policy = Policy {
            command: true,
            ..Policy::default()
        };
        assert!(policy.check(&wf, &[]).is_empty());
    }

    #[test]
    fn an_agent_cards_url_needs_its_whole_origin_allowed() {
        let card = "https://agents.example.com/.well-known/agent-card.json";
        let wf = workflow(vec![agent("a2a", "http", Some(card))]);
        let prefix = Policy {
            http: vec!["https://agents.example.com/.well-known/".into()],
            ..Policy::default()
        };
        let refused = prefix.check(&wf, &[]);
        assert_eq!(refused.len(), 1);
        assert!(
            refused[0].message.contains("agent card"),
            "{}",
            refused[0].message
        );
        for allowed in ["agents.example.com", "https://agents.example.com/"] {
            let whole = Policy {
                http: vec![allowed.into()],
                ..Policy::default()
            };
            assert!(whole.check(&wf, &[]).is_empty(), "{allowed}");
        }
    }

    #[test]
    fn http_prefixes_match_whole_segments_and_the_same_origin() {
        let ok = |allowed: &str, url: &str| matches(allowed, url);
        assert!(ok(
            "https://agents.example.com/v1/",
            "https://agents.example.com/v1/a2a"
        ));
        assert!(ok(
            "https://agents.example.com/v1",
            "https://agents.example.com/v1"
        ));
        assert!(ok(
            "https://agents.example.com/v1",
            "https://agents.example.com/v1/x"
        ));
        assert!(ok(
            "https://Agents.Example.com",
            "https://agents.example.com:443/any"
        ));
        assert!(!ok(
            "https://agents.example.com/v1",
            "https://agents.example.com/v10"
        ));
        assert!(!ok(
            "https://agents.example.com/v1/",
            "https://agents.example.com/v2/"
        ));
        assert!(!ok(
            "https://agents.example.com/",
            "http://agents.example.com/"
        ));
        assert!(!ok(
            "https://agents.example.com/",
            "https://agents.example.com:8443/"
        ));
        assert!(!ok(
            "https://agents.example.com",
            "https://agents.example.com.evil.net/"
        ));
        assert!(!ok(
            "https://agents.example.com/",
            "https://agents.example.com@evil.net/"
        ));
        // Hosts, with or without a port.
        assert!(ok("agents.internal", "http://agents.internal:9000/a2a"));
        assert!(ok(
            "agents.internal:9000",
            "http://agents.internal:9000/a2a"
        ));
        assert!(!ok(
            "agents.internal:9000",
            "http://agents.internal:9001/a2a"
        ));
        assert!(!ok("agents.internal", "http://agents.internal.evil.net/"));
        assert!(!ok("agents.internal", "not a url"));
    }

    #[test]
    fn http_agents_under_an_allowed_prefix_pass() {
        let wf = workflow(vec![
            agent(
                "good",
                "http",
                Some("https://agents.example.com/v1/summarize"),
            ),
            agent("bad", "http", Some("http://10.0.0.5/admin")),
        ]);
        let policy = Policy {
            http: vec!["https://agents.example.com/v1/".into()],
            ..Policy::default()
        };
        let refused = policy.check(&wf, &[]);
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].agent, "bad");
    }
}
