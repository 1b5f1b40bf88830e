//! `coordination/dynamic/*`: what the engine's run-time decisions cost, part
//! of the `coordination` suite. Each sample builds a fresh engine on a
//! `MemoryLog` (every transition published), with `noop` agents except the
//! scripted `simulate` ones that make the decisions:
//!
//! * `fan_out/<n>/wall` (and `durable_wall`, with the embedded state store,
//!   fsync on): one run `split → each → merge` whose `each` fans out over the
//!   n items `split` returns; submit → `wait`.
//! * `routes/<n>/decision_*`: a chain of n routing tasks, each choosing the
//!   route to the next (the other branch skipped); the engine's histogram of
//!   a routing task's end → the chosen task dispatched.
//! * `loop/<n>/decision_*`: one loop of n iterations; a loop iteration's end
//!   → the next iteration dispatched. `wall` derives iterations per second.
//! * `children/<r>/child_start_*`: r runs submitted at once, each a task that
//!   runs a one-task child workflow; the engine's histogram of the child run
//!   started → its first task dispatched.
//! * `handoff/<r>x<h>/*`: r runs at once, each a handoff pattern whose two
//!   scripted agents hand control back and forth h times before answering;
//!   `decision_*`: a turn's end → the next agent's turn dispatched; `wall`
//!   derives handoffs per second.
//! * `supervisor/<r>x<t>/*`: r runs at once, each a supervisor pattern whose
//!   scripted supervisor takes t turns, each but the last delegating two
//!   calls to a `noop` worker; `decision_*`: a turn's end (the supervisor's,
//!   or the last call of its delegation) → what it decided dispatched;
//!   `wall` derives supervisor turns per second.
//! * `network/<a>x<m>/*`: one network pattern of a scripted agents, each
//!   answering every message with two messages to two other agents, so each
//!   round doubles the last, up to m messages; on the embedded state store
//!   (fsync on) where each turn is recorded; `decision_*`: a round decided →
//!   each of its turns dispatched (the whole round waits for its last turn:
//!   a large round's last message waits for every one before it); `wall`
//!   derives messages per second.
//!
//! Not timed: writing, validating and planning the workflows.

use std::sync::Arc;

use baton_engine::{Options, Percentiles, Spec, Stats};
use baton_model::{Format, Source};

use super::coordination::{self, Sample};
use crate::{Config, Error, Record, Sink};

fn spec(name: &str, text: &str) -> Arc<Spec> {
    let source = Source::from_str(name, text, Format::Json);
    let checked = baton_model::load(&source).expect("the benchmark's workflows are valid");
    let plan = baton_plan::plan_checked(&checked, &Default::default()).expect("acyclic");
    Arc::new(Spec::new(checked, Arc::new(plan), 1).expect("runnable"))
}

/// `split → each (for_each over n items) → merge`.
fn fan_out(n: usize) -> Arc<Spec> {
    let items: Vec<usize> = (0..n).collect();
    let doc = serde_json::json!({
        "name": "fan_out",
        "agents": {"split": {"type": "simulate", "outputs": {"split": items}}, "w": {"type": "noop"}},
        "tasks": [
            {"id": "split", "agent": "split"},
            {"id": "each", "agent": "w", "depends_on": ["split"], "for_each": {"items": "split.output", "max_items": n.max(1)}},
            {"id": "merge", "agent": "w", "depends_on": ["each"]},
        ],
    });
    spec("fan_out.json", &doc.to_string())
}

/// n routing tasks in a chain: `r{i}` chooses `next` (to `r{i+1}`), the
/// branch `x{i}` is skipped.
fn routes(n: usize) -> Arc<Spec> {
    let mut tasks = Vec::with_capacity(2 * n);
    let mut outputs = serde_json::Map::new();
    for i in 0..n {
        let deps: Vec<String> = if i == 0 {
            vec![]
        } else {
            vec![format!("r{}", i - 1)]
        };
        let mut task =
            serde_json::json!({"id": format!("r{i}"), "agent": "chooser", "depends_on": deps});
        if i + 1 < n {
            task["routes"] =
                serde_json::json!({"next": [format!("r{}", i + 1)], "other": [format!("x{i}")]});
            outputs.insert(format!("r{i}"), "next".into());
            tasks.push(task);
            tasks.push(serde_json::json!({"id": format!("x{i}"), "agent": "w", "depends_on": [format!("r{i}")]}));
        } else {
            tasks.push(task);
        }
    }
    let doc = serde_json::json!({
        "name": "routes",
        "agents": {"chooser": {"type": "simulate", "outputs": outputs}, "w": {"type": "noop"}},
        "tasks": tasks,
    });
    spec("routes.json", &doc.to_string())
}

/// One task looping n times.
fn repeat(n: usize) -> Arc<Spec> {
    let doc = serde_json::json!({
        "name": "loop",
        "agents": {"w": {"type": "noop"}},
        "tasks": [{"id": "again", "agent": "w", "loop": {"max_iterations": n}}],
    });
    spec("loop.json", &doc.to_string())
}

/// A handoff between two scripted agents, `h` handoffs then an answer.
fn handoff(h: usize) -> Arc<Spec> {
    let mut ping = serde_json::Map::new();
    let mut pong = serde_json::Map::new();
    for i in 0..=h {
        let (mine, other) = if i % 2 == 0 {
            (&mut ping, "pong")
        } else {
            (&mut pong, "ping")
        };
        let decision = if i == h {
            serde_json::json!({"finish": i})
        } else {
            serde_json::json!({"handoff": {"to": other}})
        };
        mine.insert(format!("chat[{i}]"), decision);
    }
    let doc = serde_json::json!({
        "name": "handoff",
        "agents": {"ping": {"type": "simulate", "outputs": ping}, "pong": {"type": "simulate", "outputs": pong}},
        "tasks": [{"id": "chat", "pattern": {"type": "handoff", "agents": ["ping", "pong"], "max_handoffs": h}}],
    });
    spec("handoff.json", &doc.to_string())
}

/// A scripted supervisor that takes `t` turns, each but the last delegating
/// two calls to a `noop` worker.
fn supervisor(t: usize) -> Arc<Spec> {
    let mut boss = serde_json::Map::new();
    for turn in 0..t {
        let decision = if turn + 1 == t {
            serde_json::json!({"finish": turn})
        } else {
            serde_json::json!({"delegate": [{"agent": "w", "input": turn}, {"agent": "w"}]})
        };
        // Each turn after the first follows its predecessor's two calls.
        boss.insert(format!("study[{}]", 3 * turn), decision);
    }
    let doc = serde_json::json!({
        "name": "supervisor",
        "agents": {"boss": {"type": "simulate", "outputs": boss}, "w": {"type": "noop"}},
        "tasks": [{"id": "study", "pattern": {"type": "supervisor", "supervisor": "boss", "workers": ["w"], "max_turns": t}}],
    });
    spec("supervisor.json", &doc.to_string())
}

/// A network of `agents` scripted agents, agent i answering every message
/// with one to agent i+1 and one to i+2 (mod `agents`): rounds of 1, 2, 4, …
/// turns; `max_messages` is the sum of the rounds up to the first that would
/// pass `messages`, so the network ends there (`on_limit: continue`).
fn network(agents: usize, messages: usize) -> (Arc<Spec>, usize) {
    let mut declared = serde_json::Map::new();
    let names: Vec<String> = (0..agents).map(|i| format!("a{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let send = serde_json::json!({"send": [
            {"to": names[(i + 1) % agents], "message": i},
            {"to": names[(i + 2) % agents], "message": i},
        ]});
        declared.insert(
            name.clone(),
            serde_json::json!({"type": "simulate", "outputs": {"talk": send}}),
        );
    }
    let (mut sent, mut round) = (0usize, 2usize);
    while sent + round <= messages {
        sent += round;
        round *= 2;
    }
    let doc = serde_json::json!({
        "name": "network",
        "agents": declared,
        "tasks": [{"id": "talk", "pattern": {"type": "network", "agents": names, "max_messages": sent, "on_limit": "continue"}}],
    });
    (spec("network.json", &doc.to_string()), sent)
}

/// A task that runs a one-task child workflow.
fn child() -> Arc<Spec> {
    let doc = serde_json::json!({
        "name": "parent",
        "tasks": [{"id": "team", "workflow": {"inline": {"name": "child", "agents": {"w": {"type": "noop"}}, "tasks": [{"id": "work", "agent": "w"}]}}}],
    });
    spec("parent.json", &doc.to_string())
}

/// A warm-up, then `config.repeats` samples of `runs` runs at once, on
/// engines that let the runs start any number of instances and keep every
/// run answerable (children included) until it is waited for.
fn measure(
    rt: &tokio::runtime::Runtime,
    config: &Config,
    name: &str,
    spec: &Arc<Spec>,
    runs: usize,
    durable: bool,
) -> Result<Vec<Sample>, Error> {
    let options = Options {
        max_instances: u64::MAX,
        keep_finished: 2 * runs + 10,
        ..Options::default()
    };
    coordination::measure_with(rt, name, spec, runs, config.repeats, durable, &options)
}

/// What a pattern's benchmark reports: its decision latency and its wall
/// time, with the rate derived from `rate`'s count per sample.
struct Rows<'a> {
    decision: &'a str,
    wall: &'a str,
    params: [(&'a str, usize); 2],
    rate: (&'a str, usize),
}

fn pattern_rows(sink: &mut Sink<'_>, prefix: &str, samples: &[Sample], rows: Rows<'_>) {
    let [first, second] = rows.params;
    let what = |s: &Stats| s.decision_latency;
    percentiles(
        sink,
        prefix,
        "decision",
        rows.decision,
        samples,
        what,
        first,
    );
    let walls: Vec<f64> = samples.iter().map(|s| s.wall).collect();
    let (rate, count) = rows.rate;
    let median = crate::stats::median(&walls);
    let record = Record::new(format!("{prefix}/wall"), rows.wall, "s", false, walls)
        .param(first.0, first.1)
        .param(second.0, second.1)
        .derive(rate, count as f64 / median);
    sink.push(record);
}

fn percentiles(
    sink: &mut Sink<'_>,
    prefix: &str,
    what: &str,
    description: &str,
    samples: &[Sample],
    of: fn(&Stats) -> Percentiles,
    param: (&str, usize),
) {
    for label in ["p50", "p99", "max"] {
        let values = samples
            .iter()
            .map(|s| {
                let p = of(&s.stats);
                match label {
                    "p50" => p.p50_us,
                    "p99" => p.p99_us,
                    _ => p.max_us,
                }
            })
            .collect();
        sink.push(
            Record::new(
                format!("{prefix}/{what}_{label}"),
                description,
                "us",
                false,
                values,
            )
            .param(param.0, param.1),
        );
    }
}

pub(crate) fn run(config: &Config, sink: &mut Sink<'_>) -> Result<(), Error> {
    let rt = &crate::suites::events::runtime();
    for n in config.pick(&[1_000_000], &[100_000], &[1_000]) {
        let spec = fan_out(n);
        let prefix = format!("coordination/dynamic/fan_out/{n}");
        for (what, durable, description) in [
            (
                "wall",
                false,
                "one run whose task fans out over n items (noop agents, in memory): submit → wait",
            ),
            (
                "durable_wall",
                true,
                "the same with the embedded state store (fsync on): every instance's end recorded before wait returns",
            ),
        ] {
            let samples = measure(rt, config, &prefix, &spec, 1, durable)?;
            let walls: Vec<f64> = samples.iter().map(|s| s.wall).collect();
            sink.push(
                Record::new(
                    format!("{prefix}/{what}"),
                    description,
                    "s",
                    false,
                    walls.clone(),
                )
                .param("items", n)
                .derive("items_per_s", n as f64 / crate::stats::median(&walls)),
            );
        }
    }
    for n in config.pick(&[10_000], &[1_000], &[100]) {
        let prefix = format!("coordination/dynamic/routes/{n}");
        let samples = measure(rt, config, &prefix, &routes(n), 1, false)?;
        percentiles(
            sink,
            &prefix,
            "decision",
            "a routing task's end → the task its route chose dispatched (engine histogram over a chain of n routing tasks)",
            &samples,
            |s| s.decision_latency,
            ("routing_tasks", n),
        );
    }
    for n in config.pick(&[10_000], &[10_000], &[100]) {
        let prefix = format!("coordination/dynamic/loop/{n}");
        let samples = measure(rt, config, &prefix, &repeat(n), 1, false)?;
        percentiles(
            sink,
            &prefix,
            "decision",
            "a loop iteration's end → the next iteration dispatched (engine histogram over one loop of n iterations)",
            &samples,
            |s| s.decision_latency,
            ("iterations", n),
        );
        let walls: Vec<f64> = samples.iter().map(|s| s.wall).collect();
        sink.push(
            Record::new(
                format!("{prefix}/wall"),
                "one loop of n noop iterations: submit → wait",
                "s",
                false,
                walls.clone(),
            )
            .param("iterations", n)
            .derive("iterations_per_s", n as f64 / crate::stats::median(&walls)),
        );
    }
    for runs in config.pick(&[10_000], &[1_000], &[10]) {
        let prefix = format!("coordination/dynamic/children/{runs}");
        let samples = measure(rt, config, &prefix, &child(), runs, false)?;
        percentiles(
            sink,
            &prefix,
            "child_start",
            "a task's child run started → the child's first task dispatched (engine histogram; r runs submitted at once, each with one child)",
            &samples,
            |s| s.child_start_latency,
            ("runs", runs),
        );
    }
    for (runs, h) in config.pick(&[(10_000, 10)], &[(1_000, 10)], &[(10, 10)]) {
        let prefix = format!("coordination/dynamic/handoff/{runs}x{h}");
        let samples = measure(rt, config, &prefix, &handoff(h), runs, false)?;
        let rows = Rows {
            decision: "a handoff turn's end → the next agent's turn dispatched (engine histogram; r runs at once, h handoffs each)",
            wall: "r handoff chains of h handoffs, submitted at once: first submit to the last run's end",
            params: [("runs", runs), ("handoffs", h)],
            rate: ("handoffs_per_s", runs * h),
        };
        pattern_rows(sink, &prefix, &samples, rows);
    }
    for (runs, t) in config.pick(&[(10_000, 10)], &[(1_000, 10)], &[(10, 10)]) {
        let prefix = format!("coordination/dynamic/supervisor/{runs}x{t}");
        let samples = measure(rt, config, &prefix, &supervisor(t), runs, false)?;
        let rows = Rows {
            decision: "a supervisor's turn (or its delegation's last call) ended → what it decided dispatched (engine histogram; r runs at once, t turns each, two calls per turn)",
            wall: "r supervisor runs of t turns (two calls each), submitted at once: first submit to the last run's end",
            params: [("runs", runs), ("turns", t)],
            rate: ("turns_per_s", runs * t),
        };
        pattern_rows(sink, &prefix, &samples, rows);
    }
    for (agents, wanted) in config.pick(&[(100, 1_048_576)], &[(100, 16_384)], &[(10, 64)]) {
        let (spec, messages) = network(agents, wanted);
        let prefix = format!("coordination/dynamic/network/{agents}x{messages}");
        let samples = measure(rt, config, &prefix, &spec, 1, true)?;
        let rows = Rows {
            decision: "a round decided → its first turn dispatched (engine histogram; one network on the embedded store, rounds doubling up to m messages)",
            wall: "one network of a agents exchanging m messages on the embedded store: submit to its end",
            params: [("agents", agents), ("messages", messages)],
            rate: ("messages_per_s", messages),
        };
        pattern_rows(sink, &prefix, &samples, rows);
    }
    Ok(())
}
