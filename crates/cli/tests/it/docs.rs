//! Every shell block of README.md and docs/*.md runs as a reader would paste
//! it: in bash, from a scratch directory that links the repository's
//! `examples/`, `sdk/`, `loadtest/` and `crates/`, with this build's `baton`
//! first on `PATH` and a `baton serve` of its own on a free port standing in
//! for `localhost:8080`.
//!
//! What is changed on the way, and why, is the table in [`rewrite`]: the
//! address, sizes and durations scaled down, placeholders (`RUN`, `TASK`, `…`)
//! filled in, a deployment's hosts pointed at the loopback servers. A command
//! that runs until stopped (`baton serve`, `events tail`, a worker loop) is
//! started, checked for what it is for, then stopped.
//!
//! The language docs, docs/performance.md and the Python commands have
//! runners of their own (see [`RUN_ELSEWHERE`]); the first test proves that
//! every line of every shell block has one.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::{repo, stdout};

/// Docs whose shell blocks this file runs.
const RUN_HERE: &[&str] = &[
    "README.md",
    "docs/api.md",
    "docs/console.md",
    "docs/operations.md",
    "docs/security.md",
];

/// Docs whose shell blocks other tests run, and which lines those take: a
/// doc, a line's prefix, and the test that runs it.
const RUN_ELSEWHERE: &[(&str, &str, &str)] = &[
    (
        "docs/workflow-language.md",
        "baton ",
        "run.rs: every_command_in_the_language_doc_runs",
    ),
    (
        "docs/patterns.md",
        "baton ",
        "run.rs: every_command_in_the_language_doc_runs",
    ),
    (
        "docs/performance.md",
        "baton bench ",
        "bench.rs: every_command_in_the_performance_doc_runs",
    ),
    (
        "docs/performance.md",
        "baton ",
        "bench.rs: every_load_gen_and_run_command_in_the_performance_doc_runs",
    ),
    (
        "docs/performance.md",
        "python sdk/",
        "sdk/python/tests/test_docs.py",
    ),
    (
        "docs/console.md",
        "python sdk/",
        "sdk/python/tests/test_docs.py",
    ),
];

/// docs/performance.md's lines that only a person runs, and why.
const BY_HAND: &[(&str, &str)] = &[
    (
        "cargo build --release -p baton-cli",
        ".ci/run builds the release binary before the steps that use it",
    ),
    (
        "target/release/baton gen workflow --tasks 1000000",
        "a million-task input for the timing below",
    ),
    (
        "/usr/bin/time",
        "a release build's wall time and peak memory on a million tasks",
    ),
    ("cargo bench", "criterion micro-benchmarks, minutes each"),
    (
        "cargo run --release -p baton-",
        "the crates' throughput examples at a million items",
    ),
    (
        "BATON_BENCH_",
        "the distributed backends' suites, minutes each (#19 makes them shorter)",
    ),
    (
        "locust -f loadtest/locustfile.py",
        "the seed's sizes; .ci/run runs the locustfile headless with 10 users for 15 s",
    ),
];

/// A ```sh block: the line of its fence, its text.
struct Block {
    line: usize,
    text: String,
}

fn sh_blocks(doc: &str) -> Vec<Block> {
    let text = std::fs::read_to_string(repo().join(doc)).unwrap();
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut open, line.trim_end()) {
            (None, "```sh") => open = Some((i + 1, String::new())),
            (Some((at, body)), "```") => {
                blocks.push(Block {
                    line: *at,
                    text: std::mem::take(body),
                });
                open = None;
            }
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// A block's commands: lines joined until bash parses them whole (a `\`
/// continuation, a quote or a loop left open), comments and blanks dropped.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        if pending.is_empty() && (line.trim().is_empty() || line.trim().starts_with('#')) {
            continue;
        }
        pending.push_str(line);
        pending.push('\n');
        if line.ends_with('\\') {
            continue;
        }
        let parses = Command::new("bash")
            .args(["-n", "-c", &pending])
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        if parses {
            out.push(std::mem::take(&mut pending).trim().to_string());
        }
    }
    assert!(pending.is_empty(), "a command never ends: {pending}");
    out
}

fn all_docs() -> Vec<String> {
    let mut docs = vec!["README.md".to_string()];
    let mut more: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    more.sort();
    docs.extend(more);
    docs
}

/// The README's `cargo` commands are what `.ci/run` runs: the test command as
/// written, the quick start on the release binary it builds.
fn run_by_ci(command: &str) -> bool {
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let command = command.split(" #").next().unwrap().trim();
    match command.strip_prefix("cargo run --release -p baton-cli -- ") {
        Some(args) => ci.contains(&format!("target/release/baton {args}")),
        None => ci.lines().any(|l| l.trim() == command),
    }
}

#[test]
fn every_line_of_every_shell_block_has_a_test_that_runs_it() {
    let mut orphans = Vec::new();
    let mut here = 0;
    for doc in all_docs() {
        for block in sh_blocks(&doc) {
            for command in commands(&block.text) {
                let here_runs = RUN_HERE.contains(&doc.as_str())
                    && !command.starts_with("cargo ")
                    && !command.starts_with("python ");
                let taken = here_runs
                    || RUN_ELSEWHERE
                        .iter()
                        .any(|(d, prefix, _)| *d == doc && command.starts_with(prefix))
                    || doc == "README.md" && run_by_ci(&command);
                if here_runs {
                    here += 1;
                }
                if !taken {
                    orphans.push(format!("{doc}:{}: {command}", block.line));
                }
            }
        }
    }
    // The rest must be a line of docs/performance.md run by hand, for a
    // reason given in BY_HAND; an entry that matches nothing is stale.
    let (by_hand, unrun): (Vec<&String>, Vec<&String>) = orphans.iter().partition(|o| {
        o.strip_prefix("docs/performance.md:")
            .and_then(|rest| rest.split_once(": "))
            .is_some_and(|(_, c)| BY_HAND.iter().any(|(prefix, _)| c.starts_with(prefix)))
    });
    assert!(unrun.is_empty(), "shell lines no test runs:\n{unrun:#?}");
    for (prefix, why) in BY_HAND {
        assert!(
            by_hand.iter().any(|o| o.contains(&format!(": {prefix}"))),
            "BY_HAND lists `{prefix}` ({why}), which no line of docs/performance.md starts with"
        );
    }
    assert!(
        here >= 35,
        "only {here} commands found in the docs run here"
    );
}

/// A process group that is killed when dropped (a command left running by a
/// failed assertion must not outlive the test).
struct Group(Child);

impl Group {
    fn spawn(cmd: &mut Command) -> Group {
        use std::os::unix::process::CommandExt;
        Group(cmd.process_group(0).spawn().unwrap())
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.0.id())])
            .stderr(Stdio::null())
            .status();
    }

    /// SIGTERM to the group; the leader's exit status within 20 s.
    fn stop(mut self) -> std::process::ExitStatus {
        self.signal("-TERM");
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("did not stop within 20 s of SIGTERM");
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.signal("-KILL");
        let _ = self.0.wait();
    }
}

/// Lines of a child's stream, read on a thread.
fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// The first line `pick` accepts within `within`; every line read, for the
/// failure message.
fn wait_for(
    rx: &mpsc::Receiver<String>,
    within: Duration,
    pick: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let deadline = Instant::now() + within;
    let mut seen = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(found) = pick(&line) {
                    return Ok(found);
                }
                seen.push_str(&line);
                seen.push('\n');
            }
            Err(_) => break,
        }
    }
    Err(seen)
}

fn listening(line: &str) -> Option<String> {
    let rest = line.split("listening on http://").nth(1)?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// Spawns a `baton serve` (`what` names it in a failure) and waits up to a
/// minute for the address it says it listens on; its log is drained from
/// then on, so it never blocks on a full pipe.
fn listening_server(cmd: &mut Command, what: &str) -> (Group, String) {
    let mut group = Group::spawn(cmd.stdout(Stdio::null()).stderr(Stdio::piped()));
    let log = lines_of(group.0.stderr.take().unwrap());
    let addr = wait_for(&log, Duration::from_secs(60), listening)
        .unwrap_or_else(|seen| panic!("{what} did not start:\n{seen}"));
    std::thread::spawn(move || for _ in log {});
    (group, addr)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The scratch directory, the server and what the docs' commands share.
struct Session {
    dir: tempfile::TempDir,
    path: String,
    addr: String,
    /// `RUN` and `TASK` in the README: a finished run of the scratch
    /// directory's `baton-data`, and one of its tasks.
    run: String,
    /// Each `baton serve` cluster command gets its own port and namespace.
    ports: Vec<u16>,
    namespace: String,
    _server: Group,
}

impl Session {
    fn start() -> Session {
        let dir = tempfile::tempdir().unwrap();
        for linked in ["examples", "sdk", "loadtest", "crates"] {
            std::os::unix::fs::symlink(repo().join(linked), dir.path().join(linked)).unwrap();
        }
        // Where bash-completion (installed) looks for a user's completions.
        std::fs::create_dir_all(
            dir.path()
                .join("home/.local/share/bash-completion/completions"),
        )
        .unwrap();
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_baton")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let (server, addr) = listening_server(
            Command::new(env!("CARGO_BIN_EXE_baton"))
                .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path().join("server-data")),
            "the docs' server",
        );
        let mut session = Session {
            dir,
            path,
            addr,
            run: String::new(),
            ports: vec![free_port(), free_port()],
            namespace: format!("docs_{}", std::process::id()),
            _server: server,
        };
        let o = session.bash("baton run examples/fan_out.yaml --json");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let summary: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        session.run = summary["run"].as_str().unwrap().to_string();
        session
    }

    fn bash_command(&self, line: &str) -> Command {
        let mut cmd = Command::new("bash");
        // Variables a command sets (`ID=$(…)`, `export X=…`) carry to the next.
        cmd.arg("-c")
            .arg(format!(
                "set -eo pipefail; touch .docenv; . ./.docenv; {line}\n{}",
                save_variables(line)
            ))
            .current_dir(self.dir.path())
            .env("PATH", &self.path)
            .env("HOME", self.dir.path().join("home"))
            .env_remove("BATON_AUTH_TOKEN")
            .env_remove("BATON_CONFIG")
            .stdin(Stdio::null());
        cmd
    }

    /// Runs a command to its end (killed, with its children, after 5 minutes).
    fn bash(&self, line: &str) -> std::process::Output {
        use std::os::unix::process::CommandExt;
        let child = self
            .bash_command(line)
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let (done, finished) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if finished.recv_timeout(Duration::from_secs(300)).is_err() {
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{pid}")])
                    .status();
            }
        });
        let out = child.wait_with_output().unwrap();
        let _ = done.send(());
        out
    }

    fn call(&self, method: &str, path: &str, body: &str) -> serde_json::Value {
        let answer = super::serve::request(&self.addr, method, path, body);
        let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
        serde_json::from_str(body).unwrap_or_else(|_| panic!("{method} {path}: {answer}"))
    }
}

/// `declare -p` of every variable a command assigns, appended to `.docenv`.
fn save_variables(line: &str) -> String {
    let mut names = Vec::new();
    for part in line.split(['\n', ';']) {
        let part = part.trim();
        let part = part.strip_prefix("export ").unwrap_or(part);
        if let Some((name, _)) = part.split_once('=')
            && !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            names.push(name.to_string());
        }
    }
    names
        .iter()
        .map(|n| format!("declare -p {n} >> .docenv\n"))
        .collect()
}

/// The changes a command needs to run here, each with its reason.
fn rewrite(command: &str, session: &Session) -> String {
    let mut c = command.to_string();
    let redis = std::env::var("BATON_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_string());
    let postgres = std::env::var("BATON_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
    let replacements: Vec<(&str, String)> = vec![
        // The deployment in docs/operations.md, on this machine's servers.
        (
            "0.0.0.0:8080 --advertise http://10.0.0.1:8080",
            format!(
                "127.0.0.1:{0} --advertise http://127.0.0.1:{0}",
                session.ports[0]
            ),
        ),
        (
            "0.0.0.0:8080 --advertise http://10.0.0.2:8080",
            format!(
                "127.0.0.1:{0} --advertise http://127.0.0.1:{0}",
                session.ports[1]
            ),
        ),
        ("redis://10.0.0.9:6379", redis),
        ("postgres://baton@10.0.0.9/baton", postgres),
        (
            "--namespace prod",
            format!("--namespace {}", session.namespace),
        ),
        (
            "BATON_AUTH_TOKEN=…",
            "BATON_AUTH_TOKEN=docs-test-token-0123456789abcdef".to_string(),
        ),
        // The docs' server is on a free port, not 8080.
        ("localhost:8080", session.addr.clone()),
        ("127.0.0.1:8080", session.addr.clone()),
        // Paths outside the scratch directory.
        ("/tmp/console-demo", "console-demo".to_string()),
        // Sizes and durations for a measurement, scaled to a test's.
        ("--tasks 100000", "--tasks 1000".to_string()),
        ("--users 10 ", "--users 2 ".to_string()),
        ("--run-time 30s", "--run-time 1s".to_string()),
        // The README's placeholders: a finished run and one of its tasks.
        (" RUN ", format!(" {} ", session.run)),
        (" TASK", " merge".to_string()),
    ];
    for (from, to) in replacements {
        c = c.replace(from, &to);
    }
    // A `baton serve` the docs start on a fixed port takes a free one.
    if c.starts_with("baton serve") && !c.contains("--advertise") {
        c = match c.find("--bind ") {
            Some(at) => {
                let end = c[at + 7..].find(' ').map_or(c.len(), |e| at + 7 + e);
                format!("{}--bind 127.0.0.1:0{}", &c[..at], &c[end..])
            }
            None => c.replacen("baton serve", "baton serve --bind 127.0.0.1:0", 1),
        };
    }
    // Benchmarks at their smallest sizes (`--smoke`), as bench.rs runs them.
    if c.starts_with("baton bench ") {
        c = c.replace(" --quick", "");
        c = match c.find(" #") {
            Some(at) => format!("{} --smoke{}", &c[..at], &c[at..]),
            None => format!("{c} --smoke"),
        };
    }
    // An HTTP error fails the command (a doc's curl never expects one).
    c = c.replace("curl -s", "curl --fail-with-body -s");
    c
}

/// What a command is for, when it does not end by itself.
enum Kind {
    /// `baton serve`: it starts, answers `/readyz`, and stops on SIGTERM with 0.
    Serve,
    /// `baton events tail`: it prints the events published before.
    Follow,
    /// A worker loop: it completes the calls of the agent it polls.
    WorkerLoop(String),
    /// Everything else: exit 0 (1 allowed for a gate that may fail at toy sizes).
    Ends,
}

fn kind(command: &str) -> Kind {
    if command.starts_with("baton serve") {
        Kind::Serve
    } else if command.starts_with("baton events tail") {
        Kind::Follow
    } else if let Some(rest) = command.split("/api/v1/agents/").nth(1) {
        Kind::WorkerLoop(rest.split('/').next().unwrap().to_string())
    } else {
        Kind::Ends
    }
}

#[test]
fn every_shell_block_of_the_readme_and_docs_runs() {
    if std::env::var_os("CI").is_none()
        && [("dot", "graphviz"), ("jq", "jq"), ("curl", "curl")]
            .iter()
            .any(|(tool, _)| {
                Command::new("sh")
                    .args(["-c", &format!("command -v {tool}")])
                    .stdout(Stdio::null())
                    .status()
                    .map_or(true, |s| !s.success())
            })
    {
        eprintln!("skipped: the docs use dot (graphviz), jq and curl; .ci/run installs them");
        return;
    }
    let session = Session::start();
    let mut ran = 0;
    for doc in RUN_HERE {
        for block in sh_blocks(doc) {
            let mut servers = Vec::new();
            for command in commands(&block.text) {
                if command.starts_with("cargo ") || command.starts_with("python ") {
                    continue; // run by .ci/run and the Python tests (see above)
                }
                let line = rewrite(&command, &session);
                let at = format!("{doc}:{} `{line}`", block.line);
                eprintln!("running {at}");
                match kind(&command) {
                    // The instances of a cluster run together until the
                    // block ends; another `baton serve` is stopped at once
                    // (the README's share one data directory).
                    Kind::Serve if line.contains("--advertise") => {
                        servers.push((at, serve(&session, &line)));
                    }
                    Kind::Serve => {
                        let status = serve(&session, &line).stop();
                        assert!(status.success(), "{at} exited {status:?} on SIGTERM");
                    }
                    Kind::Follow => follow(&session, &line, &at),
                    Kind::WorkerLoop(agent) => worker_loop(&session, &line, &agent, &at),
                    Kind::Ends => {
                        let o = session.bash(&line);
                        let gate = ["--check", "--baseline", "--threshold"]
                            .iter()
                            .any(|g| line.contains(g));
                        assert!(
                            o.status.success() || gate && o.status.code() == Some(1),
                            "{at} exited {:?}\n{}\n{}",
                            o.status.code(),
                            stdout(&o),
                            String::from_utf8_lossy(&o.stderr)
                        );
                    }
                }
                ran += 1;
            }
            for (at, server) in servers {
                let status = server.stop();
                assert!(status.success(), "{at} exited {status:?} on SIGTERM");
            }
        }
    }
    assert!(ran >= 35, "only {ran} commands ran");
    // The cluster of docs/operations.md left tables behind in PostgreSQL.
    let _ = Command::new("psql")
        .arg(
            std::env::var("BATON_TEST_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        )
        .args(["-q", "-c"])
        .arg(format!(
            "DROP SCHEMA IF EXISTS {} CASCADE",
            session.namespace
        ))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Starts a `baton serve` command; it must say where it listens and answer
/// `/readyz` there. Stopped at the end of its block.
fn serve(session: &Session, line: &str) -> Group {
    let (group, addr) = listening_server(
        &mut session.bash_command(&format!("exec {line}")),
        &format!("`{line}`"),
    );
    let ready = super::serve::request(&addr, "GET", "/readyz", "");
    assert!(ready.starts_with("HTTP/1.1 200"), "`{line}`: {ready}");
    group
}

/// Runs a command that follows a stream; it must print a line within 10 s.
fn follow(session: &Session, line: &str, at: &str) {
    let mut group = Group::spawn(
        session
            .bash_command(line)
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let out = lines_of(group.0.stdout.take().unwrap());
    if let Err(seen) = wait_for(&out, Duration::from_secs(10), |l| Some(l.to_string())) {
        panic!("{at} printed nothing in 10 s:\n{seen}");
    }
    drop(group);
}

/// Runs a worker loop while a run needs its agent: the run must complete.
fn worker_loop(session: &Session, line: &str, agent: &str, at: &str) {
    let group = Group::spawn(
        session
            .bash_command(line)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let flow = format!(
        r#"{{"name": "docs-worker", "agents": {{"{agent}": {{"type": "worker"}}}},
            "tasks": [{{"id": "call", "agent": "{agent}"}}]}}"#
    );
    let created = session.call("POST", "/api/v1/workflows", &flow);
    let id = created["id"].as_str().unwrap();
    let run = session.call("POST", &format!("/api/v1/workflows/{id}/execute"), "{}");
    let run = run["execution_id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = session.call("GET", &format!("/api/v1/executions/{run}"), "");
        if status["status"] == "completed" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{at}: the run that needs `{agent}` did not complete in 30 s: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(group);
}
