//! `baton run`: the examples, exit codes, input, durable runs, resume, the lock on
//! a data directory, the event log, and runs killed with SIGKILL.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{baton, repo, stderr, stdout};

/// The task states a summary counts, every one always present.
const STATES: [&str; 9] = [
    "pending",
    "ready",
    "dispatched",
    "running",
    "succeeded",
    "failed",
    "skipped",
    "cancelled",
    "compensated",
];

/// The JSON summary `baton run --json` printed last.
fn summary(o: &Output) -> Value {
    let out = stdout(o);
    let line = out
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no summary on stdout; stderr: {}", stderr(o)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("summary is not JSON ({e}): {line}"))
}

/// Checks the summary has the shape `--json` promises (the public `Summary`).
fn assert_summary_shape(s: &Value) {
    assert!(s["run"].is_string(), "{s}");
    assert!(s["status"].is_string(), "{s}");
    assert!(s["makespan_ms"].as_f64().is_some_and(|v| v >= 0.0), "{s}");
    assert!(s["queue_ms"].as_f64().is_some(), "{s}");
    assert!(s["critical_path"].is_array(), "{s}");
    let tasks = s["tasks"].as_object().expect("tasks is an object");
    assert_eq!(tasks.len(), STATES.len(), "{s}");
    for state in STATES {
        assert!(tasks[state].is_u64(), "tasks.{state} in {s}");
    }
    let c = &s["coordination_overhead"];
    let (p50, p99, max) = (
        c["p50_us"].as_f64().expect("p50_us"),
        c["p99_us"].as_f64().expect("p99_us"),
        c["max_us"].as_f64().expect("max_us"),
    );
    assert!(0.0 <= p50 && p50 <= p99 && p99 <= max, "{c}");
    assert!(s["retries"].is_u64(), "{s}");
    assert!(s["compensations"].is_u64(), "{s}");
    assert!(s["compensation_failures"].is_array(), "{s}");
}

fn count(s: &Value, state: &str) -> u64 {
    s["tasks"][state].as_u64().unwrap()
}

/// A path as `&str`, for arguments.
fn arg(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `path` quoted for `sh` (single quotes; the path has none).
fn sh_quote(p: &Path) -> String {
    let s = arg(p);
    assert!(!s.contains('\''), "{s}");
    format!("'{s}'")
}

// ----- the examples ------------------------------------------------------------

#[test]
fn the_trip_booking_example_completes() {
    let o = baton(
        &["run", "examples/trip_booking.yaml", "--in-memory", "--json"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = summary(&o);
    assert_summary_shape(&s);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(s["workflow"], "trip_booking");
    // Eight forward tasks: `book_car`'s condition is false, the rest succeed.
    assert_eq!(count(&s, "succeeded"), 7, "{s}");
    assert_eq!(count(&s, "skipped"), 1, "{s}");
    assert_eq!(count(&s, "failed"), 0, "{s}");
    assert_eq!(s["compensations"], 0, "nothing to undo in a completed run");
    assert_eq!(
        s["critical_path"].as_array().unwrap().last().unwrap(),
        "send_itinerary"
    );

    // The same for people.
    let o = baton(&["run", "examples/trip_booking.yaml", "--in-memory"], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("completed"), "{text}");
    assert!(text.contains("7 succeeded, 0 failed, 1 skipped"), "{text}");
}

/// The example's flaky hotel agent must not make it fail for some seed: its
/// retry budget is meant to cover any draw (the failure odds are about 1e-6).
#[test]
fn the_trip_booking_example_completes_whatever_the_seed() {
    // The runs mostly sleep: start them all, then collect.
    let children: Vec<(u64, Child)> = (0..24u64)
        .map(|seed| {
            let seed_arg = seed.to_string();
            let args = [
                "run",
                "examples/trip_booking.yaml",
                "--in-memory",
                "--json",
                "--seed",
                &seed_arg,
            ];
            (seed, spawn(&args))
        })
        .collect();
    for (seed, child) in children {
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "seed {seed}: {}", stderr(&o));
        let s = summary(&o);
        assert_eq!(s["status"], "completed", "seed {seed}: {s}");
        assert_eq!(count(&s, "skipped"), 1, "seed {seed}: {s}");
    }
}

#[test]
fn the_research_example_runs_with_the_example_config() {
    let o = baton(
        &[
            "run",
            "examples/research_and_analysis.yaml",
            "--config",
            "examples/baton.toml",
            "--in-memory",
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = summary(&o);
    assert_summary_shape(&s);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(count(&s, "succeeded"), 4, "{s}");
    assert_eq!(
        s["critical_path"],
        json!(["decompose", "research", "analyze", "synthesize"])
    );
    // The config's agents are simulated with latencies: the run took time.
    assert!(s["makespan_ms"].as_f64().unwrap() > 1.0, "{s}");
}

#[test]
fn the_research_example_needs_agents_or_a_stand_in() {
    let o = baton(
        &["run", "examples/research_and_analysis.yaml", "--in-memory"],
        None,
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("research_and_analysis.yaml"), "{err}");
    assert!(err.contains("supervisor_agent"), "{err}");
    assert!(
        err.contains("--stand-in"),
        "the hint names the way out: {err}"
    );
    assert!(err.contains("--config"), "{err}");

    let o = baton(
        &[
            "run",
            "examples/research_and_analysis.yaml",
            "--in-memory",
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(summary(&o)["valid"], false);

    let o = baton(
        &[
            "run",
            "examples/research_and_analysis.yaml",
            "--in-memory",
            "--stand-in",
            "noop",
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = summary(&o);
    assert_summary_shape(&s);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(count(&s, "succeeded"), 4, "{s}");
}

// ----- failures, compensation, invalid input -------------------------------------

#[test]
fn a_failed_run_exits_1_after_compensating_what_succeeded() {
    let dir = tempfile::tempdir().unwrap();
    let undone = dir.path().join("undone");
    let flow = dir.path().join("failing.yaml");
    std::fs::write(
        &flow,
        format!(
            r#"
name: failing
agents:
  ok: {{ type: simulate, latency: 2ms }}
  broken: {{ type: simulate, latency: 1ms, failure_rate: 1.0 }}
  undoer: {{ type: command, shell: true, command: "echo \"$BATON_TASK\" >> {undone}" }}
tasks:
  - {{ id: reserve, agent: ok, compensation: release }}
  - {{ id: charge, agent: ok, depends_on: [reserve], compensation: {{ action: refund, agent: undoer }} }}
  - {{ id: ship, agent: broken, depends_on: [charge], retry: {{ max_attempts: 2, backoff: {{ initial: 1ms }} }} }}
  - {{ id: release, agent: undoer }}
"#,
            undone = sh_quote(&undone)
        ),
    )
    .unwrap();
    let o = baton(&["run", arg(&flow), "--in-memory", "--json"], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let s = summary(&o);
    assert_summary_shape(&s);
    assert_eq!(s["status"], "failed", "{s}");
    let reason = s["reason"].as_str().unwrap();
    assert!(reason.contains("`ship`"), "{reason}");
    assert!(reason.contains("after 2 attempts"), "{reason}");
    assert_eq!(s["retries"], 1, "{s}");
    assert_eq!(count(&s, "failed"), 1, "{s}");
    assert_eq!(count(&s, "compensated"), 2, "{s}");
    assert_eq!(s["compensations"], 2, "{s}");
    assert_eq!(s["compensation_failures"], json!([]));
    // Both forms ran, newest first: the action runs as the task it undoes, the
    // compensation task as itself.
    let undone = std::fs::read_to_string(&undone).unwrap();
    assert_eq!(undone.lines().collect::<Vec<_>>(), ["charge", "release"]);

    let o = baton(&["run", arg(&flow), "--in-memory"], None);
    assert_eq!(o.status.code(), Some(1));
    let text = stdout(&o);
    assert!(text.contains("failed"), "{text}");
    assert!(text.contains("compensations 2"), "{text}");
}

#[test]
fn an_invalid_workflow_exits_1_with_the_error_located() {
    let dir = tempfile::tempdir().unwrap();
    let flow = dir.path().join("bad.yaml");
    std::fs::write(&flow, "tasks:\n  - id: a\n    depends_on: [b]\n").unwrap();

    let o = baton(&["run", arg(&flow), "--in-memory"], None);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("unknown-dependency"), "{err}");
    assert!(err.contains("bad.yaml:3:18"), "file:line:column: {err}");
    assert!(stdout(&o).is_empty(), "nothing ran: {}", stdout(&o));

    let o = baton(&["run", arg(&flow), "--in-memory", "--json"], None);
    assert_eq!(o.status.code(), Some(1));
    let v = summary(&o);
    assert_eq!(v["valid"], false, "{v}");
    assert_eq!(v["errors"][0]["code"], "unknown-dependency", "{v}");
    assert_eq!(v["errors"][0]["location"], json!({"line": 3, "column": 18}));
}

#[test]
fn a_missing_workflow_file_exits_2() {
    let o = baton(&["run", "no/such/flow.yaml", "--in-memory"], None);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("no/such/flow.yaml"), "{err}");
}

#[test]
fn input_that_is_not_json_exits_2() {
    let flow = "examples/research_and_analysis.yaml";
    let o = baton(
        &[
            "run",
            flow,
            "--in-memory",
            "--stand-in",
            "noop",
            "--input",
            "not json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("--input is not valid JSON"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = format!("@{}", arg(&dir.path().join("missing.json")));
    let o = baton(
        &[
            "run",
            flow,
            "--in-memory",
            "--stand-in",
            "noop",
            "--input",
            &missing,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("reading the input"), "{err}");
    assert!(err.contains("missing.json"), "{err}");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"open\": ").unwrap();
    let at_bad = format!("@{}", arg(&bad));
    let o = baton(
        &[
            "run",
            flow,
            "--in-memory",
            "--stand-in",
            "noop",
            "--input",
            &at_bad,
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("bad.json is not valid JSON"), "{err}");
}

#[test]
fn input_from_a_file_reaches_a_command_agent() {
    let dir = tempfile::tempdir().unwrap();
    let seen = dir.path().join("seen.json");
    let flow = dir.path().join("echo.yaml");
    std::fs::write(
        &flow,
        format!(
            "agents:\n  reader: {{ type: command, shell: true, command: \"cat > {}\" }}\ntasks:\n  - {{ id: read, agent: reader, input: {{ step: 1 }} }}\n",
            sh_quote(&seen)
        ),
    )
    .unwrap();
    let input = json!({"city": "Lisbon", "nights": 3, "tags": ["sea", "food"]});
    let file = dir.path().join("input.json");
    std::fs::write(&file, input.to_string()).unwrap();

    let at_file = format!("@{}", arg(&file));
    let o = baton(
        &[
            "run",
            arg(&flow),
            "--in-memory",
            "--input",
            &at_file,
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(summary(&o)["status"], "completed");
    let call: Value = serde_json::from_str(&std::fs::read_to_string(&seen).unwrap()).unwrap();
    assert_eq!(call["run_input"], input, "{call}");
    assert_eq!(call["task"], "read");
    assert_eq!(call["input"], json!({"step": 1}));
}

// ----- durable runs ---------------------------------------------------------------

#[test]
fn a_durable_run_records_state_and_events_and_leaves_nothing_to_resume() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let o = baton(
        &[
            "run",
            "examples/research_and_analysis.yaml",
            "--config",
            "examples/baton.toml",
            "--data-dir",
            arg(&data),
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "completed", "{s}");
    let run = s["run"].as_str().unwrap().to_owned();
    assert!(data.join("state").is_dir() && data.join("events").is_dir());
    assert!(
        std::fs::metadata(data.join("state/journal.log"))
            .unwrap()
            .len()
            > 8,
        "the journal holds records"
    );

    let o = baton(&["run", "--resume", "--data-dir", arg(&data)], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to resume"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());

    // The run's transitions, as published to the event log.
    let o = baton(
        &[
            "events",
            "tail",
            "--data-dir",
            arg(&data.join("events")),
            "--topic",
            "baton.runs",
            "--from-start",
            "--no-follow",
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let events: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events.iter().all(|e| e["key"] == run.as_str()), "one run");
    let statuses: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "baton.run")
        .map(|e| e["payload"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["created", "completed"]);
    // Each transition is [task, status, attempt, agent, at_us(, detail)].
    let mut last: BTreeMap<u64, String> = BTreeMap::new();
    for e in events.iter().filter(|e| e["type"] == "baton.transitions") {
        assert_eq!(e["payload"]["run"], run.as_str());
        for t in e["payload"]["transitions"].as_array().unwrap() {
            last.insert(t[0].as_u64().unwrap(), t[1].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(last.len(), 4, "every task: {last:?}");
    assert!(last.values().all(|s| s == "succeeded"), "{last:?}");
}

#[test]
fn resuming_where_nothing_was_recorded_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("mistyped");
    let o = baton(&["run", "--resume", "--data-dir", arg(&data)], None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to resume"), "{}", stderr(&o));
    assert!(!data.exists(), "no data directory is created");
}

/// A run killed after its last task's success was recorded but before its own
/// end was: resumed, it ends in the engine's first turn, before the engine
/// answers anything. `--resume` must still report it and print its summary.
#[test]
fn a_resumed_run_that_ends_at_once_is_reported() {
    use std::sync::Arc;

    use baton_engine::store::{Embedded, EmbeddedOptions, Record, RunId, StateStore, TaskStatus};

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = RunId(1 << 22);
    let document =
        json!({"agents": {"idle": {"type": "noop"}}, "tasks": [{"id": "a", "agent": "idle"}]});
    let records = vec![
        Record::Workflow {
            key: 1,
            document: document.to_string(),
        },
        Record::RunCreated {
            run,
            workflow: 1,
            input: "null".into(),
            at_ms: 1,
            rerun_of: None,
        },
        Record::Task {
            run,
            task: 0,
            status: TaskStatus::Succeeded,
            attempt: 1,
            agent: 0,
            at_us: 10,
            detail: Some("null".into()),
        },
    ];
    let store = Arc::new(Embedded::open(&data.join("state"), EmbeddedOptions::default()).unwrap());
    let seq = store.append(records).unwrap();
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(async {
            store.sync(seq).await.unwrap();
            store.close().await.unwrap();
        });
    drop(store);

    let o = baton(
        &["run", "--resume", "--data-dir", arg(&data), "--json"],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("nothing to resume"),
        "the run was recorded: {}",
        stderr(&o)
    );
    let s = summary(&o);
    assert_eq!(s["run"], run.to_string(), "{s}");
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(count(&s, "succeeded"), 1, "{s}");
}

#[test]
fn a_data_dir_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let flow = dir.path().join("slow.yaml");
    std::fs::write(
        &flow,
        "agents:\n  slow: { type: simulate, latency: 5s }\ntasks:\n  - { id: wait, agent: slow }\n",
    )
    .unwrap();
    let first = Killed(spawn(&["run", arg(&flow), "--data-dir", arg(&data)]));
    // The journal is created after the lock is taken.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !data.join("state/journal.log").exists() {
        assert!(
            Instant::now() < deadline,
            "the first run never opened its store"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    let o = baton(&["run", arg(&flow), "--data-dir", arg(&data)], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("in use by another process"), "{err}");
    assert!(err.contains(arg(&data)), "names the directory: {err}");

    let o = baton(&["run", "--resume", "--data-dir", arg(&data)], None);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("in use by another process"));
    drop(first);
}

// ----- crashes --------------------------------------------------------------------

/// Kills the child (SIGKILL) and reaps it when dropped, so a failing test leaves
/// no process behind.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `baton ARGS` in the repository, stdout and stderr piped.
fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .current_dir(repo())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn baton")
}

/// Waits up to `limit` for the child to exit by itself.
fn wait_for(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// SplitMix64: the tests' only randomness, seeded, so every run draws the same
/// DAGs and kill delays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// A random-ish DAG in levels: each task of a level depends on one task of the
/// level above and on up to two tasks of any earlier level.
struct Dag {
    /// Dependencies of each task, by index (ids are `t00`, `t01`, ...).
    deps: Vec<Vec<usize>>,
}

impl Dag {
    fn new(widths: &[usize], rng: &mut Rng) -> Dag {
        let mut deps = Vec::new();
        let mut level_start = 0;
        for (level, &width) in widths.iter().enumerate() {
            let start = deps.len();
            for _ in 0..width {
                let mut d = Vec::new();
                if level > 0 {
                    let above = start - level_start;
                    d.push(level_start + rng.next() as usize % above);
                    for _ in 0..rng.range(0, 2) {
                        let earlier = rng.next() as usize % start;
                        if !d.contains(&earlier) {
                            d.push(earlier);
                        }
                    }
                }
                deps.push(d);
            }
            level_start = start;
        }
        Dag { deps }
    }

    fn id(i: usize) -> String {
        format!("t{i:02}")
    }

    /// The most tasks that can be in flight at once: the largest set of tasks none
    /// of which depends (transitively) on another, which by Dilworth's theorem is
    /// the task count minus a maximum matching in the reachability relation.
    fn max_width(&self) -> usize {
        let n = self.deps.len();
        // reach[i]: bit j is set when j depends transitively on i. Tasks are in
        // topological order (dependencies come first), so one backward pass will do.
        let mut reach = vec![0u64; n];
        for j in (0..n).rev() {
            for &i in &self.deps[j] {
                reach[i] |= (1 << j) | reach[j];
            }
        }
        fn augment(i: usize, reach: &[u64], seen: &mut u64, owner: &mut [Option<usize>]) -> bool {
            for j in 0..reach.len() {
                if reach[i] & (1 << j) != 0 && *seen & (1 << j) == 0 {
                    *seen |= 1 << j;
                    if owner[j].is_none_or(|k| augment(k, reach, seen, owner)) {
                        owner[j] = Some(i);
                        return true;
                    }
                }
            }
            false
        }
        let mut owner = vec![None; n];
        let matched = (0..n)
            .filter(|&i| augment(i, &reach, &mut 0, &mut owner))
            .count();
        n - matched
    }

    /// The workflow: every task runs `sh -c` on one `command` agent that sleeps
    /// 20–80 ms (by task) and then appends the task's id to `marks`, so a mark
    /// means "an attempt of this task finished".
    fn workflow(&self, marks: &Path) -> Value {
        let script = format!(
            "case \"$BATON_TASK\" in *[05]) s=0.02 ;; *[16]) s=0.035 ;; *[27]) s=0.05 ;; *[38]) s=0.065 ;; *) s=0.08 ;; esac; sleep $s; echo \"$BATON_TASK\" >> {}",
            sh_quote(marks)
        );
        let tasks: Vec<Value> = self
            .deps
            .iter()
            .enumerate()
            .map(|(i, d)| {
                json!({
                    "id": Dag::id(i),
                    "agent": "worker",
                    "depends_on": d.iter().map(|&j| Dag::id(j)).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "name": "crash",
            "agents": {"worker": {"type": "command", "command": script, "shell": true}},
            "tasks": tasks,
        })
    }
}

/// Waits until no process has `needle` in its command line (the tasks' shells
/// name their marks file), failing the test after `limit`.
fn wait_until_gone(needle: &Path, limit: Duration) {
    let needle = needle.as_os_str().as_encoded_bytes();
    let running = || {
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .any(|cmd| cmd.windows(needle.len()).any(|w| w == needle))
    };
    let deadline = Instant::now() + limit;
    while running() {
        assert!(
            Instant::now() < deadline,
            "the killed run's tasks still run after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// How many times each task id appears in the marks file (none if it is absent).
fn marks(path: &Path) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    if let Ok(text) = std::fs::read_to_string(path) {
        for line in text.lines() {
            *counts.entry(line.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// Longest a round may run by itself before the test gives up on it.
const ROUND_LIMIT: Duration = Duration::from_secs(30);

/// Runs `flow` with `baton run --data-dir DATA --json EXTRA`, SIGKILLs it
/// after a delay drawn from `delays` (ms), resumes it (`--resume`), again,
/// until a round ends by itself; the first kill waits until `marks` has a
/// line (a task ended, so the run is recorded). Returns the kills and the
/// last round's output; panics after 40 rounds.
fn kill_and_resume(
    flow: &Path,
    data: &Path,
    marks_file: &Path,
    extra: &[&str],
    rng: &mut Rng,
    delays: (u64, u64),
) -> (usize, Output) {
    const MAX_ROUNDS: usize = 40;
    let mut kills = 0;
    for round in 0..MAX_ROUNDS {
        let mut args = vec!["run"];
        if round == 0 {
            args.push(arg(flow));
        } else {
            args.push("--resume");
        }
        args.extend(["--data-dir", arg(data), "--json"]);
        args.extend(extra);
        let mut child = spawn(&args);
        if round == 0 {
            // Until a task has finished, the run may not be recorded yet:
            // `--resume` would rightly find nothing.
            let deadline = Instant::now() + ROUND_LIMIT;
            while marks(marks_file).is_empty() && child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "no task finished");
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        match wait_for(
            &mut child,
            Duration::from_millis(rng.range(delays.0, delays.1)),
        ) {
            None => {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
            }
            Some(_) => return (kills, child.wait_with_output().unwrap()),
        }
    }
    panic!("not finished after {MAX_ROUNDS} rounds ({kills} kills)")
}

/// One scenario of the crash test: run, SIGKILL at a random moment, resume,
/// SIGKILL again, ... until a resumed run ends by itself. Returns the kills.
fn crash_and_resume(seed: u64) -> usize {
    crash_and_resume_on(seed, &[])
}

/// [`crash_and_resume`] with `state` (flags choosing the state store) added to
/// every `baton run`.
fn crash_and_resume_on(seed: u64, state: &[&str]) -> usize {
    let mut rng = Rng(seed);
    let dag = Dag::new(&[3, 3, 3, 3, 3, 2, 2, 2, 2, 3, 2, 2], &mut rng);
    let n = dag.deps.len();
    let dir = tempfile::tempdir().unwrap();
    let (data, marks_file) = (dir.path().join("data"), dir.path().join("marks"));
    let flow = dir.path().join("flow.json");
    std::fs::write(&flow, dag.workflow(&marks_file).to_string()).unwrap();

    let (kills, o) = kill_and_resume(&flow, &data, &marks_file, state, &mut rng, (50, 400));
    assert_eq!(o.status.code(), Some(0), "seed {seed}: {}", stderr(&o));
    if stdout(&o).trim().is_empty() {
        // The kill came after the run's end was recorded, before its summary was
        // printed: the resume found it finished.
        assert!(stderr(&o).contains("nothing to resume"), "{}", stderr(&o));
    } else {
        let s = summary(&o);
        assert_summary_shape(&s);
        assert_eq!(s["status"], "completed", "seed {seed}: {s}");
        assert_eq!(count(&s, "succeeded"), n as u64, "seed {seed}: {s}");
        for state in STATES.iter().filter(|&&s| s != "succeeded") {
            assert_eq!(count(&s, state), 0, "seed {seed}: {state} in {s}");
        }
    }

    let marks = marks(&marks_file);
    for i in 0..n {
        assert!(
            marks.contains_key(&Dag::id(i)),
            "seed {seed}: task {} never finished: {marks:?}",
            Dag::id(i)
        );
    }
    assert_eq!(marks.len(), n, "seed {seed}: unknown marks: {marks:?}");
    // At-least-once: a task runs again only if an attempt of it was in flight at
    // a kill (started, its success not yet in the journal); the agents' processes
    // outlive `baton`, so such an attempt may still leave its mark. Tasks in flight
    // together depend on none of each other, so at most `max_width` per kill. (A
    // successor may start before its predecessor's success is written; both are
    // then in flight. The journal trails by a group commit, milliseconds, and each
    // task takes 20 ms or more: the bound holds with room to spare, typically two
    // or three repeats per kill against a bound of five to eight.)
    let duplicates: usize = marks.values().map(|c| c - 1).sum();
    let width = dag.max_width();
    assert!(
        duplicates <= kills * width,
        "seed {seed}: {duplicates} repeated marks after {kills} kills (at most {width} in flight): {marks:?}"
    );
    eprintln!(
        "seed {seed:#x}: {kills} kills, {duplicates} repeated attempts (bound {})",
        kills * width
    );

    let mut args = vec!["run", "--resume", "--data-dir", arg(&data)];
    args.extend(state);
    let o = baton(&args, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("nothing to resume"), "{}", stderr(&o));
    kills
}

#[test]
fn a_run_killed_with_sigkill_resumes_to_completion() {
    let started = Instant::now();
    // A full run takes under a second and kills come 50–400 ms into a round, so
    // each scenario is killed a few times: several scenarios make many kills.
    let kills: usize = (1..=6).map(|i| crash_and_resume(0x5eed_0000 + i)).sum();
    assert!(
        kills > 0,
        "no round was ever killed: the test proved nothing"
    );
    eprintln!("{kills} kills in {:.1?}", started.elapsed());
}

#[cfg(feature = "postgres")]
use baton_engine::store::testing::Schema;

/// The crash test over PostgreSQL: every `baton run` (the killed one and each
/// `--resume`) is a new instance of the same name, which takes over at once what
/// the killed one left; what a kill interrupted is in the database.
#[cfg(feature = "postgres")]
#[test]
fn a_run_killed_with_sigkill_resumes_to_completion_on_postgres() {
    if baton_engine::store::testing::postgres_url().is_none() {
        return;
    }
    let started = Instant::now();
    let kills: usize = (1..=4)
        .map(|i| {
            let schema = Schema::new(&format!("crash{i}")).expect("the database is set");
            crash_and_resume_on(
                0x5eed_1000 + i,
                &["--state", &schema.url, "--namespace", &schema.name],
            )
        })
        .sum();
    assert!(
        kills > 0,
        "no round was ever killed: the test proved nothing"
    );
    eprintln!("{kills} kills in {:.1?}", started.elapsed());
}

/// Killed within 20 ms of starting, `baton run` may not have recorded the run
/// yet. Then `--resume` rightly finds nothing, but that is only correct if
/// nothing ran: a task that ran for a run the store never recorded is work no
/// resume, compensation or report will ever account for, so a run must be
/// recorded before any of its tasks starts. If the run was recorded, `--resume`
/// must finish it. (Whether a kill lands in the window between a task's start and
/// its run's record is luck; the next test hits that window every time.)
#[test]
fn a_run_killed_as_it_starts_was_either_recorded_or_never_ran() {
    let mut rng = Rng(0x0ea7_1e55);
    // Many roots, so many processes start at once right after submission.
    let dag = Dag::new(&[12, 2], &mut rng);
    let (mut recorded, mut lost) = (0, 0);
    for round in 0..12u64 {
        let dir = tempfile::tempdir().unwrap();
        let (data, marks_file) = (dir.path().join("data"), dir.path().join("marks"));
        let flow = dir.path().join("flow.json");
        std::fs::write(&flow, dag.workflow(&marks_file).to_string()).unwrap();

        let mut child = spawn(&["run", arg(&flow), "--data-dir", arg(&data)]);
        // 0 to 20 ms, spread over the rounds.
        std::thread::sleep(Duration::from_micros(round * 20_000 / 11));
        child.kill().unwrap();
        child.wait().unwrap();

        let mut resume = spawn(&["run", "--resume", "--data-dir", arg(&data), "--json"]);
        let status = wait_for(&mut resume, ROUND_LIMIT);
        let o = resume.wait_with_output().unwrap();
        assert!(
            status.is_some_and(|s| s.success()),
            "round {round}: {}",
            stderr(&o)
        );
        // Processes the killed run started outlive it: wait until they are gone.
        wait_until_gone(&marks_file, ROUND_LIMIT);
        let marks = marks(&marks_file);
        if stderr(&o).contains("nothing to resume") {
            lost += 1;
            assert!(
                marks.is_empty(),
                "round {round}: the run was not recorded, yet tasks ran: {marks:?}"
            );
        } else {
            recorded += 1;
            assert_eq!(summary(&o)["status"], "completed", "round {round}");
            assert_eq!(marks.len(), dag.deps.len(), "round {round}: {marks:?}");
        }
    }
    eprintln!("{recorded} runs recorded and resumed, {lost} killed before being recorded");
}

/// The same property at a precise crash point: the workflow's first task kills
/// `baton` (SIGKILL to its parent) as soon as it starts. The task ran, so its run
/// must have been recorded: `--resume` must find it and finish it. A 16 MiB task
/// input makes the workflow document, which is recorded with the run, slow to
/// write: an engine that starts tasks before their run is durable is caught every
/// time, not only when a kill happens to fall in a short window.
#[test]
fn a_run_is_recorded_before_its_first_task_starts() {
    recorded_before_its_first_task_starts(&[]);
}

/// The same over PostgreSQL: the 16 MiB document goes into the database in the
/// transaction that creates the run.
#[cfg(feature = "postgres")]
#[test]
fn a_run_is_recorded_before_its_first_task_starts_on_postgres() {
    let Some(schema) = Schema::new("first_task") else {
        return;
    };
    let url = schema.url.clone();
    recorded_before_its_first_task_starts(&["--state", &url, "--namespace", &schema.name]);
}

/// The test above, with `state` (flags choosing the state store) added to each
/// `baton run`.
fn recorded_before_its_first_task_starts(state: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (data, started, crashed) = (
        dir.path().join("data"),
        dir.path().join("started"),
        dir.path().join("crashed"),
    );
    // Only the first attempt crashes the engine (`mkdir` succeeds once).
    let script = format!(
        "echo \"$BATON_TASK\" >> {}; if mkdir {} 2>/dev/null; then kill -9 $PPID; fi",
        sh_quote(&started),
        sh_quote(&crashed)
    );
    let workflow = json!({
        "agents": {"crasher": {"type": "command", "command": script, "shell": true}, "idle": {"type": "noop"}},
        "tasks": [
            {"id": "crash", "agent": "crasher"},
            {"id": "big", "agent": "idle", "depends_on": ["crash"], "input": {"blob": "x".repeat(16 << 20)}},
        ],
    });
    let flow = dir.path().join("flow.json");
    std::fs::write(&flow, workflow.to_string()).unwrap();

    let mut args = vec!["run", arg(&flow), "--data-dir", arg(&data)];
    args.extend(state);
    let o = baton(&args, None);
    {
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(
            o.status.signal(),
            Some(9),
            "the task kills baton: {}",
            stderr(&o)
        );
    }
    assert_eq!(marks(&started).len(), 1, "the task ran");

    let mut args = vec!["run", "--resume", "--data-dir", arg(&data), "--json"];
    args.extend(state);
    let o = baton(&args, None);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        !stderr(&o).contains("nothing to resume"),
        "task `crash` ran, but its run was never recorded: {}",
        stderr(&o)
    );
    let s = summary(&o);
    assert_eq!(s["status"], "completed", "{s}");
    assert_eq!(count(&s, "succeeded"), 2, "{s}");
    assert_eq!(
        marks(&started)["crash"],
        2,
        "the interrupted attempt ran again"
    );
}

/// Every `baton` command in the ```sh blocks of docs/workflow-language.md and
/// docs/patterns.md runs from the repository's root and succeeds.
#[test]
fn every_command_in_the_language_doc_runs() {
    let doc = ["docs/workflow-language.md", "docs/patterns.md"]
        .map(|d| std::fs::read_to_string(repo().join(d)).unwrap())
        .join("\n");
    let mut in_block = false;
    let mut ran = 0;
    for line in doc.lines() {
        if line.starts_with("```") {
            in_block = line.trim() == "```sh";
            continue;
        }
        let Some(cmd) = line.trim().strip_prefix("baton ").filter(|_| in_block) else {
            continue;
        };
        let args: Vec<&str> = cmd
            .split_whitespace()
            .take_while(|w| !w.starts_with('#'))
            .collect();
        let o = baton(&args, None);
        assert!(
            o.status.success(),
            "`baton {cmd}` exited {:?}\n{}\n{}",
            o.status.code(),
            stdout(&o),
            stderr(&o)
        );
        ran += 1;
    }
    assert!(ran >= 8, "only {ran} commands found");
}

/// The fan-out example collects its instances in order, the routes example
/// skips the branch not taken and the loop example iterates three times, as
/// the summary counts show.
#[test]
fn the_dynamic_examples_run() {
    let o = baton(
        &["run", "examples/fan_out.yaml", "--in-memory", "--json"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["tasks"]["succeeded"], 3);
    let o = baton(
        &["run", "examples/routes.yaml", "--in-memory", "--json"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["tasks"]["succeeded"], 4);
    assert_eq!(summary["tasks"]["skipped"], 1);
    let o = baton(
        &["run", "examples/review_loop.yaml", "--in-memory", "--json"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["tasks"]["succeeded"], 3);
    assert_eq!(summary["instances"], 3, "three iterations: {summary}");
    let o = baton(
        &[
            "run",
            "examples/research_review.yaml",
            "--in-memory",
            "--json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["tasks"]["succeeded"], 4);
    assert_eq!(
        summary["instances"], 6,
        "4 sub-questions, 2 reviews: {summary}"
    );
    // The spec's example, on examples/baton.toml: `research` fans out over
    // the four sub-questions `decompose` returns.
    let o = baton(
        &[
            "run",
            "examples/research_and_analysis.yaml",
            "--config",
            "examples/baton.toml",
            "--in-memory",
            "--json",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["instances"], 4, "{summary}");
}

/// `workflow: { file: … }` reads the child next to the parent, at any depth; a
/// chain of files that comes back to itself is refused before anything runs.
#[test]
fn sub_workflow_files_are_read_next_to_their_parent_and_cycles_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("teams")).unwrap();
    std::fs::write(
        dir.path().join("parent.yaml"),
        "tasks:\n  - { id: call, workflow: { file: teams/team.yaml } }\n  - { id: after, depends_on: [call] }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("teams/team.yaml"),
        "tasks:\n  - { id: inner, workflow: { file: leaf.yaml } }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("teams/leaf.yaml"),
        "agents:\n  s: { type: simulate, outputs: { x: 42 } }\ntasks:\n  - { id: x, agent: s }\n",
    )
    .unwrap();
    let parent = dir.path().join("parent.yaml");
    let o = baton(
        &["run", parent.to_str().unwrap(), "--in-memory", "--json"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let summary: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(summary["tasks"]["succeeded"], 2);

    // leaf.yaml now calls back into team.yaml.
    std::fs::write(
        dir.path().join("teams/leaf.yaml"),
        "tasks:\n  - { id: again, workflow: { file: team.yaml } }\n",
    )
    .unwrap();
    let o = baton(&["run", parent.to_str().unwrap(), "--in-memory"], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("sub-workflows form a cycle"), "{err}");
    assert!(err.contains("team.yaml → "), "{err}");
    // A missing file is named.
    std::fs::remove_file(dir.path().join("teams/leaf.yaml")).unwrap();
    let o = baton(&["run", parent.to_str().unwrap(), "--in-memory"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("leaf.yaml"), "{}", stderr(&o));
}

/// `baton run --rerun RUN --from TASK` in a later process: the failed run's
/// succeeded tasks are reused from the state store, the task runs again.
#[test]
fn a_failed_run_is_rerun_from_its_failed_task_in_a_new_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let marks = dir.path().join("marks");
    let broken = dir.path().join("broken");
    std::fs::write(&broken, "").unwrap();
    let wf = dir.path().join("wf.yaml");
    std::fs::write(
        &wf,
        format!(
            r#"
agents:
  w: {{ type: command, command: ["sh", "-c", "cat > /dev/null; echo $BATON_TASK >> {}; [ $BATON_TASK = check ] && [ -e {} ] && exit 3; echo 1"] }}
tasks:
  - {{ id: fetch, agent: w }}
  - {{ id: check, agent: w, depends_on: [fetch] }}
  - {{ id: publish, agent: w, depends_on: [check] }}
"#,
            marks.display(),
            broken.display()
        ),
    )
    .unwrap();
    let o = baton(&["run", arg(&wf), "--data-dir", arg(&data), "--json"], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let first: Value = serde_json::from_str(&stdout(&o)).unwrap();
    let run = first["run"].as_str().unwrap().to_string();
    assert_eq!(std::fs::read_to_string(&marks).unwrap(), "fetch\ncheck\n");

    std::fs::remove_file(&broken).unwrap();
    let o = baton(
        &[
            "run",
            "--rerun",
            &run,
            "--from",
            "chek",
            "--data-dir",
            arg(&data),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("has no task `chek` (did you mean `check`?)"),
        "{}",
        stderr(&o)
    );
    let o = baton(
        &[
            "run",
            "--rerun",
            &run,
            "--from",
            "check",
            "--data-dir",
            arg(&data),
            "--json",
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let second: Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(second["status"], "completed");
    assert_eq!(second["rerun_of"], json!(run));
    assert_ne!(second["run"], json!(run));
    assert_eq!(
        std::fs::read_to_string(&marks).unwrap(),
        "fetch\ncheck\ncheck\npublish\n",
        "fetch was reused"
    );
    let o = baton(
        &[
            "run",
            "--rerun",
            "00000000000000aa",
            "--from",
            "check",
            "--data-dir",
            arg(&data),
        ],
        None,
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no finished run 00000000000000aa"),
        "{}",
        stderr(&o)
    );
}

/// The crash test on a dynamic run: SIGKILL at random moments of a fan-out (two
/// items at a time) followed by a loop whose iterations are child runs, resume,
/// again, until a resumed run ends. Every item and iteration ran, in order,
/// and only those in flight at a kill ran twice: nothing that ended ran again.
#[test]
fn a_dynamic_run_killed_with_sigkill_resumes_without_repeating_what_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (data, marks_file) = (dir.path().join("data"), dir.path().join("marks"));
    let flow = dir.path().join("flow.yaml");
    let m = marks_file.display();
    std::fs::write(
        &flow,
        format!(
            r#"
agents:
  plan: {{ type: simulate, outputs: {{ split: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11] }} }}
  item: {{ type: command, command: ["sh", "-c", "cat > /dev/null; sleep 0.04; echo item-$BATON_ITEM >> {m}; echo $BATON_ITEM"] }}
tasks:
  - {{ id: split, agent: plan }}
  - {{ id: each, agent: item, depends_on: [split], for_each: {{ items: split.output, max_parallel: 2 }} }}
  - id: review
    depends_on: [each]
    loop: {{ until: "review.output.edit.n >= 3", max_iterations: 6 }}
    workflow:
      inline:
        agents:
          edit: {{ type: command, command: ["sh", "-c", "i=$(grep -o '\"iteration\":[0-9]*' | head -n1 | cut -d: -f2); sleep 0.04; echo edit-$i >> {m}; echo \"{{\\\"n\\\": $i}}\""] }}
        tasks:
          - {{ id: edit, agent: edit }}
"#
        ),
    )
    .unwrap();
    let mut rng = Rng(0xd1a_0001);
    let (kills, o) = kill_and_resume(&flow, &data, &marks_file, &[], &mut rng, (50, 300));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    if !stdout(&o).trim().is_empty() {
        let s = summary(&o);
        assert_eq!(s["status"], "completed", "{s}");
        assert_eq!(s["instances"], 12 + 4, "12 items and 4 iterations: {s}");
    }
    // An agent whose input the kill cut short marks `edit-` with no number:
    // it ran with nothing to work on, and its output went nowhere.
    let mut marks = marks(&marks_file);
    marks.remove("edit-");
    for i in 0..12 {
        assert!(
            marks.contains_key(&format!("item-{i}")),
            "item {i}: {marks:?}"
        );
    }
    for i in 0..4 {
        assert!(
            marks.contains_key(&format!("edit-{i}")),
            "iteration {i}: {marks:?}"
        );
    }
    assert_eq!(marks.len(), 16, "no iteration beyond `until`: {marks:?}");
    // In flight at a kill: two items (or one iteration's task), and at most
    // one more whose end the journal had not made durable yet (it trails by a
    // group commit, milliseconds; each call takes 40 ms).
    let duplicates: usize = marks.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= 3 * kills,
        "{duplicates} repeated marks after {kills} kills: {marks:?}"
    );
    assert!(
        kills > 0,
        "no round was ever killed: the test proved nothing"
    );
    eprintln!("{kills} kills, {duplicates} repeated attempts");
}

/// `--follow` prints, on stderr, the decisions of a pattern's turns and the
/// progress its agents report (a Python worker's `BATON_PROGRESS` lines),
/// while stdout keeps the summary alone.
#[test]
fn follow_prints_decisions_and_progress_on_stderr() {
    let o = baton(
        &[
            "run",
            "examples/patterns/supervisor_python.yaml",
            "--in-memory",
            "--json",
            "--follow",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&o)["status"], "completed");
    let err = stderr(&o);
    for line in [
        r#"choose · delegate {"turn":0,"agents":["researcher","researcher","researcher"]}"#,
        r#"{"reading":"rust"}"#,
        r#"choose · answer {"agent":"planner","turns":2}"#,
    ] {
        assert!(err.contains(line), "no `{line}` in:\n{err}");
    }
    // Without `--follow`, none of it.
    let quiet = baton(
        &[
            "run",
            "examples/patterns/supervisor_python.yaml",
            "--in-memory",
            "--json",
        ],
        None,
    );
    assert!(!stderr(&quiet).contains("reading"), "{}", stderr(&quiet));
}

/// The crash test on a pattern: a supervisor (a Python program) delegating
/// two calls a turn for six turns, then finishing; SIGKILL at random
/// moments, resume, again, until a resumed run ends. Every turn and every
/// delegated call ran, and only those in flight at a kill ran twice: no
/// decision that was made was asked for again.
#[test]
fn a_supervisor_killed_with_sigkill_resumes_without_asking_a_decision_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (data, marks_file) = (dir.path().join("data"), dir.path().join("marks"));
    let boss = dir.path().join("boss.py");
    let worker = dir.path().join("worker.py");
    std::fs::write(
        &boss,
        format!(
            r#"import json, sys, time
call = json.load(sys.stdin)
turn = call["turn"]
time.sleep(0.03)
with open({marks:?}, "a") as m:
    m.write(f"boss-{{turn}}\n")
if turn < 6:
    print(json.dumps({{"delegate": [{{"agent": "worker", "input": {{"turn": turn, "i": i}}}} for i in range(2)]}}))
else:
    print(json.dumps({{"finish": {{"turns": turn + 1}}}}))
"#,
            marks = marks_file.display().to_string()
        ),
    )
    .unwrap();
    std::fs::write(
        &worker,
        format!(
            r#"import json, sys, time
call = json.load(sys.stdin)["input"]
time.sleep(0.03)
with open({marks:?}, "a") as m:
    m.write(f"work-{{call['turn']}}-{{call['i']}}\n")
print(json.dumps({{"ok": True}}))
"#,
            marks = marks_file.display().to_string()
        ),
    )
    .unwrap();
    let flow = dir.path().join("flow.yaml");
    std::fs::write(
        &flow,
        format!(
            r#"
agents:
  boss: {{ type: command, command: [python3, "{}"] }}
  worker: {{ type: command, command: [python3, "{}"] }}
tasks:
  - id: lead
    pattern: {{ type: supervisor, supervisor: boss, workers: [worker], max_turns: 8 }}
"#,
            boss.display(),
            worker.display()
        ),
    )
    .unwrap();
    let mut rng = Rng(0x5a9e_0001);
    // A turn takes a Python start or two (about 0.1 s each here).
    let (kills, o) = kill_and_resume(&flow, &data, &marks_file, &[], &mut rng, (250, 800));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    if !stdout(&o).trim().is_empty() {
        let s = summary(&o);
        assert_eq!(s["status"], "completed", "{s}");
    }
    let marks = marks(&marks_file);
    for turn in 0..=6 {
        assert!(
            marks.contains_key(&format!("boss-{turn}")),
            "turn {turn}: {marks:?}"
        );
    }
    for turn in 0..6 {
        for i in 0..2 {
            let call = format!("work-{turn}-{i}");
            assert!(marks.contains_key(&call), "{call}: {marks:?}");
        }
    }
    assert_eq!(marks.len(), 7 + 12, "no turn past `finish`: {marks:?}");
    // In flight at a kill: a turn or its two calls, and at most one more
    // whose end the journal had not made durable yet.
    let duplicates: usize = marks.values().map(|c| c - 1).sum();
    assert!(
        duplicates <= 3 * kills,
        "{duplicates} repeated marks after {kills} kills: {marks:?}"
    );
    assert!(
        kills > 0,
        "no round was ever killed: the test proved nothing"
    );
    eprintln!("{kills} kills, {duplicates} repeated calls");
}

/// An agent's process dies with `baton`, even when `baton` is killed with
/// SIGKILL (nothing of its own runs then): a resumed run never has the same
/// call running twice.
#[cfg(target_os = "linux")]
#[test]
fn an_agent_process_dies_when_baton_is_killed_with_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("pid");
    let flow = dir.path().join("flow.yaml");
    std::fs::write(
        &flow,
        format!(
            "agents:\n  slow: {{ type: command, command: [sh, -c, \"echo $$ > {}.tmp; mv {0}.tmp {0}; exec sleep 30\"] }}\ntasks:\n  - {{ id: wait, agent: slow }}\n",
            pid_file.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let child = spawn(&["run", arg(&flow), "--data-dir", arg(&data)]);
    let mut baton = Killed(child);
    let deadline = Instant::now() + ROUND_LIMIT;
    let pid: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|p| p.trim().parse().ok())
        {
            break pid;
        }
        assert!(Instant::now() < deadline, "the agent never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    let alive = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            // A zombie (`Z`) is dead, waiting for its new parent to reap it.
            .is_ok_and(|stat| {
                stat.rsplit(')')
                    .next()
                    .is_some_and(|s| !s.trim_start().starts_with('Z'))
            })
    };
    assert!(alive(pid), "the agent runs while baton does");
    baton.0.kill().unwrap(); // SIGKILL
    baton.0.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(pid) {
        assert!(
            Instant::now() < deadline,
            "the agent (pid {pid}) outlived baton killed with SIGKILL"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A config file names its secrets instead of holding them: `env:NAME` and
/// `file:PATH` (relative to the file) in agents' `env` and `headers` and in
/// `auth_token`; a missing one is an error that names it, not its value.
#[test]
fn config_secrets_are_read_from_the_environment_and_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("key.txt"), "from-a-file\n").unwrap();
    let config = dir.path().join("baton.toml");
    std::fs::write(
        &config,
        r#"[agents.show]
type = "command"
command = ["sh", "-c", "cat > /dev/null; [ \"$A\" = from-the-env ] && [ \"$B\" = from-a-file ]"]
env = { A = "env:BATON_TEST_PLANTED", B = "file:key.txt" }
"#,
    )
    .unwrap();
    let flow = dir.path().join("flow.yaml");
    std::fs::write(&flow, "agents:\n  show: { type: command, command: [\"false\"] }\ntasks:\n  - { id: a, agent: show }\n").unwrap();
    let run = |env: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_baton"));
        cmd.args([
            "run",
            arg(&flow),
            "--in-memory",
            "--json",
            "--config",
            arg(&config),
        ]);
        match env {
            Some(v) => cmd.env("BATON_TEST_PLANTED", v),
            None => cmd.env_remove("BATON_TEST_PLANTED"),
        };
        cmd.output().unwrap()
    };
    let o = run(Some("from-the-env"));
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "completed", "{s}");
    // The values reached the process: another value fails the task.
    assert_eq!(summary(&run(Some("something-else")))["status"], "failed");
    let o = run(None);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("[agents.show] env `A`") && err.contains("BATON_TEST_PLANTED"),
        "{err}"
    );
}
