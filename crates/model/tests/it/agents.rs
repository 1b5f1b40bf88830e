//! Agent settings: the built-in kinds' fields, checked against the agent's
//! type, and agents declared outside a workflow (`agents_from_value`).

use std::time::Duration;

use baton_model::{
    Agent, BreakerPolicy, Command, Format, Latency, Path, Severity, Source, agents_from_value, load,
};
use serde_json::json;

use crate::{codes, rendered_errors, report};

/// Loads a workflow with these agents (and a task on the first) and returns
/// them.
fn agents(agents_yaml: &str) -> Vec<Agent> {
    let first = agents_yaml.trim_start().split(':').next().unwrap();
    let text = format!("agents:\n{agents_yaml}tasks:\n  - {{ id: t, agent: {first} }}\n");
    let checked = load(&Source::from_str("agents.yaml", &text, Format::Yaml)).unwrap();
    assert!(
        checked.warnings.diagnostics.is_empty(),
        "{:?}",
        checked.warnings
    );
    checked.workflow.agents
}

#[test]
fn noop_and_user_defined_types_take_the_generic_fields() {
    let a = agents(
        "  idle: { type: noop }\n  researcher: { type: research_agent, capabilities: [search], concurrency: 2, breaker: { window: 5 } }\n",
    );
    assert_eq!(
        a[0],
        Agent {
            name: "idle".into(),
            kind: "noop".into(),
            ..Agent::default()
        }
    );
    assert_eq!(a[1].capabilities, ["search"]);
    assert_eq!(a[1].concurrency, Some(2));
    // Left out, `min_calls` shrinks to a small window.
    assert_eq!(
        a[1].breaker,
        Some(BreakerPolicy {
            window: 5,
            min_calls: 5,
            ..BreakerPolicy::default()
        })
    );
}

#[test]
fn breaker_defaults_and_settings() {
    let a = agents(
        "  a: { type: noop, breaker: {} }\n  b: { type: noop, breaker: { failure_rate: 0.25, window: 50, min_calls: 50, cooldown: 1m } }\n",
    );
    let defaults = BreakerPolicy {
        failure_rate: 0.5,
        window: 20,
        min_calls: 10,
        cooldown: Duration::from_secs(30),
    };
    assert_eq!(BreakerPolicy::default(), defaults);
    assert_eq!(a[0].breaker, Some(defaults));
    assert_eq!(
        a[1].breaker,
        Some(BreakerPolicy {
            failure_rate: 0.25,
            window: 50,
            min_calls: 50,
            cooldown: Duration::from_secs(60),
        })
    );
}

#[test]
fn command_agents_run_a_shell_line_or_an_argv() {
    let a = agents(concat!(
        "  sh: { type: command, shell: true, command: \"make -j2 && ./test\", env: { RUST_LOG: debug, A: 1 } }\n",
        "  argv: { type: command, command: [sleep, 1] }\n",
    ));
    assert_eq!(
        a[0].command,
        Some(Command::Shell("make -j2 && ./test".into()))
    );
    // Declaration order is kept; numbers are taken as written.
    assert_eq!(
        a[0].env,
        [
            ("RUST_LOG".into(), "debug".into()),
            ("A".into(), "1".into())
        ]
    );
    assert_eq!(
        a[1].command,
        Some(Command::Argv(vec!["sleep".into(), "1".into()]))
    );
}

#[test]
fn http_agents_take_a_url_and_headers() {
    let a = agents(concat!(
        "  a: { type: http, url: \"http://127.0.0.1:8080/\", headers: { Authorization: Bearer x, X-Id: 7 } }\n",
        "  b: { type: http, url: \"HTTPS://user@[::1]:443/a2a?q#f\" }\n",
        "  c: { type: http, url: \"https://agents.example.com\" }\n",
    ));
    assert_eq!(a[0].url.as_deref(), Some("http://127.0.0.1:8080/"));
    assert_eq!(
        a[0].headers,
        [
            ("Authorization".into(), "Bearer x".into()),
            ("X-Id".into(), "7".into())
        ]
    );
    assert_eq!(a[1].url.as_deref(), Some("HTTPS://user@[::1]:443/a2a?q#f"));
}

#[test]
fn llm_agents_take_an_api_a_model_and_a_key_by_reference() {
    let a = agents(
        "  m: { type: llm, base_url: \"http://127.0.0.1:11434/v1\", model: llama3.2, system: Be brief., temperature: 0.5, max_tokens: 200, api_key_env: OPENAI_API_KEY }\n",
    );
    assert_eq!(a[0].base_url.as_deref(), Some("http://127.0.0.1:11434/v1"));
    assert_eq!(a[0].model.as_deref(), Some("llama3.2"));
    assert_eq!(a[0].system.as_deref(), Some("Be brief."));
    assert_eq!(a[0].temperature, Some(0.5));
    assert_eq!(a[0].max_tokens, Some(200));
    assert_eq!(a[0].api_key_env.as_deref(), Some("OPENAI_API_KEY"));
}

#[test]
fn llm_agent_settings_are_checked() {
    let text = r#"
agents:
  a: { type: llm, base_url: "ftp://x", model: m, temperature: 3, max_tokens: 0, api_key_env: "A=B" }
  b: { type: llm }
  c: { type: noop, model: m }
tasks:
  - { id: t, agent: a }
"#;
    insta::assert_snapshot!(rendered_errors("llm.yaml", text, Format::Yaml));
}

#[test]
fn simulate_agents_draw_latency_from_a_distribution() {
    let a = agents(concat!(
        "  c: { type: simulate, latency: 20ms, failure_rate: 0.1, seed: 42 }\n",
        "  n: { type: simulate, latency: 0.5, failure_rate: 0 }\n",
        "  m: { type: simulate, latency: { distribution: constant, mean: 5ms }, failure_rate: 1 }\n",
        "  u: { type: simulate, latency: { distribution: uniform, min: 10ms, max: 10ms } }\n",
        "  e: { type: simulate, latency: { distribution: exponential, mean: 1s } }\n",
        "  g: { type: simulate, latency: { stddev: 5ms, distribution: normal, mean: 20ms } }\n",
        "  none: { type: simulate }\n",
    ));
    let ms = Duration::from_millis;
    assert_eq!(a[0].latency, Some(Latency::Constant(ms(20))));
    assert_eq!((a[0].failure_rate, a[0].seed), (Some(0.1), Some(42)));
    assert_eq!(a[1].latency, Some(Latency::Constant(ms(500))));
    assert_eq!(a[2].latency, Some(Latency::Constant(ms(5))));
    assert_eq!(
        a[3].latency,
        Some(Latency::Uniform {
            min: ms(10),
            max: ms(10)
        })
    );
    assert_eq!(a[4].latency, Some(Latency::Exponential { mean: ms(1000) }));
    assert_eq!(
        a[5].latency,
        Some(Latency::Normal {
            mean: ms(20),
            stddev: ms(5)
        })
    );
    assert_eq!(
        (&a[6].latency, a[6].failure_rate, a[6].seed),
        (&None, None, None)
    );
}

#[test]
fn a_workflow_without_command_or_url_can_be_planned_with_a_warning() {
    // The engine refuses to run such an agent; planning needs no command.
    let text = "agents:\n  build: { type: command }\n  review: { type: http }\ntasks:\n  - { id: t, agent: build }\n";
    let c = load(&Source::from_str("w.yaml", text, Format::Yaml)).unwrap();
    let w: Vec<_> = c.warnings.warnings().collect();
    assert_eq!(w.len(), 2);
    assert!(w.iter().all(|d| d.code == "missing-field"));
    assert_eq!(w[0].path.to_string(), "$.agents.build");
    assert_eq!(w[1].location.unwrap().line, 3);
    assert!(w[1].hint.as_ref().unwrap().contains("add `url:`"));
}

#[test]
fn settings_on_the_wrong_type_are_errors() {
    let text = r#"
agents:
  web: { type: http, url: "http://localhost/", command: ./x, latency: 5ms }
  build: { command: [make], type: command, url: "http://x/", headers: { A: b } }
  research: { type: research_agent, seed: 1, comand: x }
  sim: { type: simulate, env: { A: b }, urll: "http://x/" }
tasks:
  - { id: t, agent: web }
"#;
    insta::assert_snapshot!(rendered_errors("kinds.yaml", text, Format::Yaml));
    assert!(
        codes(&report(text, Format::Yaml))
            .iter()
            .all(|c| *c == "unknown-field")
    );
}

#[test]
fn commands_and_urls_are_checked() {
    let text = r#"
agents:
  a: { type: http, url: "ftp://example.com/a2a" }
  b: { type: http, url: "http:///a2a" }
  c: { type: http, url: "example.com" }
  d: { type: http, url: "http://example.com:99999/" }
  e: { type: http, url: 5, headers: { "Bad Header": x } }
  f: { type: command, command: [] }
  g: { type: command, command: "  " }
  h: { type: command, command: { run: x }, env: { "A=B": x, C: null } }
  i: { type: command, command: ["", x] }
tasks:
  - { id: t, agent: a }
"#;
    insta::assert_snapshot!(rendered_errors("settings.yaml", text, Format::Yaml));
}

#[test]
fn a_command_line_without_shell_is_split_into_words() {
    let a = agents(
        "  py: { type: command, command: \"python3 agent.py --name 'two words'\", workdir: /srv/agents, timeout: 90s }\n",
    );
    assert_eq!(
        a[0].command,
        Some(Command::Argv(vec![
            "python3".into(),
            "agent.py".into(),
            "--name".into(),
            "two words".into()
        ]))
    );
    assert!(!a[0].shell);
    assert_eq!(a[0].workdir.as_deref(), Some("/srv/agents"));
    assert_eq!(a[0].timeout, Some(Duration::from_secs(90)));
}

#[test]
fn shell_syntax_without_shell_and_bad_command_settings_are_errors() {
    let text = r#"
agents:
  a: { type: command, command: "cat in.json | jq .total" }
  b: { type: command, command: "echo $HOME > out" }
  c: { type: command, command: [ls, -l], shell: true }
  d: { type: command, command: "echo 'open", shell: "yes" }
  e: { type: command, command: x, workdir: "", timeout: 0s }
  f: { type: noop, shell: true, workdir: /tmp }
tasks:
  - { id: t, agent: a }
"#;
    insta::assert_snapshot!(rendered_errors("shell.yaml", text, Format::Yaml));
}

#[test]
fn latency_maps_need_exactly_their_distributions_fields() {
    let text = r#"
agents:
  a: { type: simulate, latency: { distribution: uniform, min: 50ms } }
  b: { type: simulate, latency: { distribution: normal, mean: 10ms, max: 1s } }
  c: { type: simulate, latency: { distribution: gaussian, mean: 1s } }
  d: { type: simulate, latency: { mean: 1s } }
  e: { type: simulate, latency: { distribution: uniform, min: 2s, max: 1s } }
  f: { type: simulate, latency: { distribution: exponential, mean: soon, meen: 1s } }
  g: { type: simulate, latency: [1s, 2s] }
tasks:
  - { id: t, agent: a }
"#;
    insta::assert_snapshot!(rendered_errors("latency.yaml", text, Format::Yaml));
}

#[test]
fn rates_seeds_and_breakers_are_range_checked() {
    let text = r#"
agents:
  a: { type: simulate, failure_rate: 1.5, seed: -1 }
  b: { type: simulate, failure_rate: "often", seed: 1.5 }
  c: { type: noop, breaker: { failure_rate: 0, window: 10, min_calls: 20, cooldown: 0s } }
  d: { type: noop, breaker: { window: 0, min_calls: 2, cooldwn: 1s } }
  e: { type: noop, breaker: { failure_rate: 1.01, cooldown: soon } }
  f: { type: noop, breaker: on }
tasks:
  - { id: t, agent: a }
"#;
    insta::assert_snapshot!(rendered_errors("ranges.yaml", text, Format::Yaml));
}

#[test]
fn agents_from_a_config_file_use_the_same_fields() {
    let at = Path::root().key("agents");
    let agents = agents_from_value(
        json!({
            "build": {"type": "command", "command": "make", "env": {"CC": "clang"}},
            "review": {"type": "http", "url": "https://review.example.com/", "breaker": {"cooldown": "1m"}},
            "sim": {"type": "simulate", "latency": {"distribution": "exponential", "mean": 0.25}},
        }),
        &at,
    )
    .unwrap();
    let names: Vec<_> = agents.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["build", "review", "sim"]);
    assert_eq!(agents[0].command, Some(Command::Argv(vec!["make".into()])));
    assert_eq!(
        agents[1].breaker.as_ref().unwrap().cooldown,
        Duration::from_secs(60)
    );
    assert_eq!(
        agents[2].latency,
        Some(Latency::Exponential {
            mean: Duration::from_millis(250)
        })
    );
}

#[test]
fn a_config_agent_without_command_or_url_is_an_error_at_its_path() {
    let at = Path::root().key("agents");
    let report = agents_from_value(
        json!({"build": {"type": "command"}, "api": {"type": "http", "url": "ftp://x"}, "x": 5}),
        &at,
    )
    .unwrap_err();
    let found: Vec<_> = report
        .diagnostics
        .iter()
        .map(|d| (d.severity, d.code, d.path.to_string()))
        .collect();
    assert_eq!(
        found,
        [
            (Severity::Error, "missing-field", "$.agents.build".into()),
            (Severity::Error, "bad-value", "$.agents.api.url".into()),
            (Severity::Error, "wrong-type", "$.agents.x".into()),
        ]
    );
    assert!(agents_from_value(json!([]), &at).is_err());
    assert_eq!(agents_from_value(json!({}), &at).unwrap(), []);
}

#[test]
fn the_documented_examples_load() {
    let docs = std::fs::read_to_string(crate::repo_file("docs/workflow-language.md")).unwrap();
    let start = docs.find("The built-in types:").unwrap();
    let end = start + docs[start..].find("## Task fields").unwrap();
    let mut yaml = String::new();
    for block in docs[start..end].split("```yaml\n").skip(1) {
        let block = &block[..block.find("```").unwrap()];
        for line in block.lines() {
            // The examples sit in a list item: two spaces in, under `agents:`.
            yaml.push_str(line.strip_prefix("  ").unwrap_or(line));
            yaml.push('\n');
        }
    }
    let yaml = yaml.replace("\n", "\n  ");
    let found = agents(&format!("  {}\n", yaml.trim_end()));
    let kinds: Vec<_> = found.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "noop", "simulate", "simulate", "simulate", "command", "command", "http", "worker"
        ]
    );
}
