//! The `command` agent: runs a process per call.
//!
//! The call's input goes to the process's stdin as one JSON document; what the
//! process prints on stdout is the task's output (JSON if it parses, else a
//! string). A non-zero exit is a retryable failure carrying the end of stderr;
//! a program that cannot be started (not found, not executable) a permanent one.
//! A line on stderr that starts with `BATON_PROGRESS ` reports progress: the
//! rest of the line (JSON when it parses, else text) goes to the call's
//! [`Progress`].
//!
//! No shell reads the command unless the agent asks for one (`shell: true`,
//! [`baton_model::Command::Shell`]); the call's input reaches the process only
//! on stdin, never on its command line. The process starts with an environment
//! of its own: the agent's `env`, `BATON_RUN`, `BATON_TASK`, `BATON_ATTEMPT`
//! (and `BATON_ITEM`, the item's index, for an instance of a fan-out;
//! `BATON_ITERATION` for a loop's iteration) and the few harmless variables of [`INHERITED`], not the engine's (which
//! holds the server's token and database passwords).
//!
//! Each call runs in a process group of its own, and the whole group is killed
//! (SIGKILL) when the call ends: when the call's future is dropped (how the
//! engine cancels a call and applies a task's timeout), when the agent's own
//! `timeout` passes, and when the process exits, so that nothing a call started
//! in the background outlives it. (A program that leaves its group on purpose,
//! with `setsid`, is beyond reach.) On Linux the process also dies with the
//! engine, even one killed with SIGKILL (`PR_SET_PDEATHSIG`), so that a
//! resumed run never has the same call running twice.

use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{Call, Failure, Outcome, Progress, Runner, Started};

/// The most of stdout kept; a process that prints more fails permanently
/// (its output would not fit in the run's state anyway).
const STDOUT_LIMIT: usize = 16 << 20;
/// How much of the end of stderr is kept for the failure message.
const STDERR_TAIL: usize = 4 << 10;

/// An agent that runs a process for each call.
#[derive(Debug, Clone)]
pub struct Command {
    spec: Arc<Spec>,
}

/// The engine's environment variables a process gets: what programs expect to
/// find, and nothing that could hold a secret.
pub const INHERITED: [&str; 7] = ["PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"];

/// What to run: shared by every call of one agent.
struct Spec {
    /// The program, as given (`sh` for a shell command line).
    program: String,
    args: Vec<String>,
    /// Set for the process, besides [`INHERITED`] and `BATON_*`.
    env: Vec<(String, String)>,
    /// Where the process starts (absent: the engine's working directory).
    workdir: Option<PathBuf>,
    /// The longest a call may take.
    timeout: Option<Duration>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Environment values often carry credentials: show the names only.
        f.debug_struct("Spec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .field("workdir", &self.workdir)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Command {
    /// An agent running `command` with `env` set for it (besides [`INHERITED`]
    /// and Baton's own variables).
    ///
    /// [`baton_model::Command::Shell`] runs through `sh -c`;
    /// [`baton_model::Command::Argv`] is a program and its arguments (an empty
    /// one fails each call permanently).
    pub fn new(command: &baton_model::Command, env: &[(String, String)]) -> Command {
        let (program, args) = match command {
            baton_model::Command::Shell(line) => {
                ("sh".to_owned(), vec!["-c".to_owned(), line.clone()])
            }
            baton_model::Command::Argv(argv) => match argv.split_first() {
                Some((program, args)) => (program.clone(), args.to_vec()),
                None => (String::new(), Vec::new()),
            },
        };
        Command {
            spec: Arc::new(Spec {
                program,
                args,
                env: env.to_vec(),
                workdir: None,
                timeout: None,
            }),
        }
    }

    /// The agent of a `command` declaration: its command, `env`, `workdir` and
    /// `timeout`; `None` without a `command`.
    pub fn of(agent: &baton_model::Agent) -> Option<Command> {
        let mut command = Command::new(agent.command.as_ref()?, &agent.env);
        let spec = Arc::get_mut(&mut command.spec)?;
        spec.workdir = agent.workdir.as_ref().map(PathBuf::from);
        spec.timeout = agent.timeout;
        Some(command)
    }
}

impl Runner for Command {
    fn reports_progress(&self) -> bool {
        true
    }

    fn start(&self, call: Call) -> Started {
        if self.spec.program.is_empty() {
            return Started::Done(Err(Failure::permanent(
                "the command is empty: give a program to run",
            )));
        }
        // Spawning forks the engine: leave it to the future, off the scheduler's thread.
        Started::Later(Box::pin(run(Arc::clone(&self.spec), call)))
    }
}

/// Runs one call of `spec` to completion.
async fn run(spec: Arc<Spec>, call: Call) -> Outcome {
    let input = serde_json::to_vec(&call.input)
        .map_err(|e| Failure::permanent(format!("cannot encode the input as JSON: {e}")))?;

    let mut command = tokio::process::Command::new(&spec.program);
    command.args(&spec.args).env_clear();
    for name in INHERITED {
        if let Some(value) = std::env::var_os(name) {
            command.env(name, value);
        }
    }
    command
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("BATON_RUN", call.run.to_string())
        .env("BATON_TASK", &*call.task)
        .env("BATON_ATTEMPT", call.attempt.to_string());
    if let Some(index) = call.input.get("index").and_then(Value::as_u64) {
        command.env("BATON_ITEM", index.to_string());
    }
    if let Some(iteration) = call.input.get("iteration").and_then(Value::as_u64) {
        command.env("BATON_ITERATION", iteration.to_string());
    }
    if let Some(dir) = &spec.workdir {
        command.current_dir(dir);
    }
    die_with_the_engine(&mut command);
    let mut child = command
        .process_group(0)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_failure(&spec, &e))?;
    // Declared after `child`, so dropped first: the group dies before the
    // leader is killed and reaped, while its id cannot have been reused.
    let group = Group(AtomicU32::new(child.id().unwrap_or(0)));
    tracing::debug!(
        run = %call.run,
        task = %call.task,
        attempt = call.attempt,
        program = %spec.program,
        pid = child.id(),
        "started a process"
    );

    let stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // All four at once: a process blocked writing a full stdout pipe never reads
    // the rest of its stdin, and never exits. Once it exits, what it left running
    // is killed, which also closes the pipes those processes held.
    let exited = async {
        let status = child.wait().await;
        group.kill();
        status
    };
    let all = async {
        tokio::join!(
            write_input(stdin, &input),
            read_capped(stdout, STDOUT_LIMIT),
            read_tail(stderr, STDERR_TAIL, call.progress.as_ref()),
            exited,
        )
    };
    let (written, stdout, stderr, status) = match spec.timeout {
        None => all.await,
        Some(limit) => match tokio::time::timeout(limit, all).await {
            Ok(done) => done,
            // Dropping the call's futures kills the group (`group`, then `child`).
            Err(_) => {
                return Err(Failure::retryable(format!(
                    "`{}` took longer than the agent's timeout of {}: killed it and what it started",
                    spec.program,
                    baton_model::duration::format(limit)
                )));
            }
        },
    };
    if let Err(e) = written {
        // The exit status tells whether the process managed without it.
        tracing::debug!(task = %call.task, error = %e, "could not write a process's stdin");
    }
    let status =
        status.map_err(|e| Failure::retryable(format!("lost track of `{}`: {e}", spec.program)))?;
    let stderr = stderr.unwrap_or_default();
    if !status.success() {
        return Err(Failure::retryable(format!(
            "`{}` {}: {}",
            spec.program,
            describe(status),
            tail_text(&stderr)
        )));
    }
    let (stdout, truncated) = stdout.map_err(|e| {
        Failure::retryable(format!("cannot read the output of `{}`: {e}", spec.program))
    })?;
    if truncated {
        return Err(Failure::permanent(format!(
            "`{}` printed more than {} MiB on stdout: write large results to a file and print its path",
            spec.program,
            STDOUT_LIMIT >> 20
        )));
    }
    Ok(parse_output(&stdout))
}

/// Has the process killed (SIGKILL) when the engine's thread that started it
/// dies, `baton` killed with SIGKILL included, where nothing of ours runs to
/// kill the group (Linux's `PR_SET_PDEATHSIG`; elsewhere nothing changes).
/// Only the process itself: what it started in the background is not (a
/// call's group is killed whenever the engine lives to do it). The engine
/// starts processes on its runtime's worker threads, which live as long as
/// the engine.
fn die_with_the_engine(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: the closure runs in the child between fork and exec, where
        // only async-signal-safe calls are allowed: it makes three system
        // calls (prctl(2), getppid(2), _exit(2)), allocates nothing, takes no
        // lock and captures a plain integer. Checking the parent after
        // prctl closes the window where the engine died before it: the
        // process would then have been adopted already.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(io::Error::last_os_error());
                }
                if libc::getppid() as u32 != parent {
                    libc::_exit(137);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// A call's process group (its id is the leader's pid), killed when dropped.
struct Group(AtomicU32);

impl Group {
    /// Sends SIGKILL to every process left in the group, once: a second kill
    /// could reach a new group that reused the id.
    fn kill(&self) {
        let id = self.0.swap(0, Ordering::Relaxed);
        let Some(pgid) = libc::pid_t::try_from(id).ok().filter(|&id| id > 0) else {
            return;
        };
        // SAFETY: kill(2) takes plain integers and touches no memory of ours;
        // a negative pid names the process group, which is the call's own (it
        // was made with the leader by `process_group(0)`). An empty group is
        // ESRCH, which changes nothing.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Why a process did not start. A missing program or a denied permission will
/// not go away by itself; a momentary lack of resources may.
fn spawn_failure(spec: &Spec, error: &io::Error) -> Failure {
    let program = &spec.program;
    let message = match &spec.workdir {
        // The error does not say which of the two is missing.
        Some(dir) if !dir.is_dir() => {
            format!(
                "cannot start `{program}`: its workdir `{}` is not a directory",
                dir.display()
            )
        }
        _ => format!("cannot start `{program}`: {error}"),
    };
    // ENFILE, EMFILE: the system's or the engine's file table is full.
    let transient = matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::OutOfMemory | io::ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(23 | 24));
    Failure {
        message,
        retryable: transient,
        retry_after: None,
    }
}

/// Writes the input and closes stdin. A process that exits without reading it
/// all is not an error: the broken pipe is ignored.
async fn write_input(stdin: Option<tokio::process::ChildStdin>, input: &[u8]) -> io::Result<()> {
    let Some(mut stdin) = stdin else {
        return Ok(());
    };
    let written = match stdin.write_all(input).await {
        Ok(()) => stdin.shutdown().await,
        Err(e) => Err(e),
    };
    match written {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
    // Dropping `stdin` closes it, so the process sees end of input.
}

/// Reads everything, keeping the first `limit` bytes. Reading goes on past the
/// limit so the process is never blocked on a full pipe; the flag tells whether
/// anything was dropped.
async fn read_capped(
    pipe: Option<impl AsyncRead + Unpin>,
    limit: usize,
) -> io::Result<(Vec<u8>, bool)> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok((kept, false));
    };
    let mut buf = vec![0; 64 << 10];
    let mut truncated = false;
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok((kept, truncated));
        }
        let room = limit - kept.len();
        kept.extend_from_slice(&buf[..n.min(room)]);
        truncated |= n > room;
    }
}

/// Reads everything, keeping the last `tail` bytes.
async fn read_tail(
    pipe: Option<impl AsyncRead + Unpin>,
    tail: usize,
    progress: Option<&Progress>,
) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok(kept);
    };
    let mut buf = vec![0; 16 << 10];
    let mut lines = progress.map(|p| Lines {
        progress: p,
        line: Vec::new(),
    });
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            let cut = kept.len().saturating_sub(tail);
            kept.drain(..cut);
            return Ok(kept);
        }
        if let Some(lines) = &mut lines {
            lines.scan(&buf[..n]);
        }
        kept.extend_from_slice(&buf[..n]);
        // Trim in batches, not on every read.
        if kept.len() > 2 * tail + buf.len() {
            let cut = kept.len() - tail;
            kept.drain(..cut);
        }
    }
}

/// The prefix of a stderr line that reports progress.
const PROGRESS: &[u8] = b"BATON_PROGRESS ";
/// The longest progress line read; a longer one is skipped.
const PROGRESS_LINE: usize = 64 << 10;

/// Stderr cut into lines, the progress lines reported.
struct Lines<'p> {
    progress: &'p Progress,
    /// The line so far (only while it may be a progress line).
    line: Vec<u8>,
}

impl Lines<'_> {
    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n');
            let (part, rest) = match end {
                Some(i) => (&bytes[..i], &bytes[i + 1..]),
                None => (bytes, &[][..]),
            };
            if self.line.len() + part.len() <= PROGRESS_LINE {
                self.line.extend_from_slice(part);
            } else {
                // Too long to be reported: drop it whole.
                self.line.clear();
                self.line.push(0);
            }
            if end.is_some() {
                if let Some(report) = self.line.strip_prefix(PROGRESS) {
                    let text = String::from_utf8_lossy(report);
                    let text = text.trim_end_matches('\r');
                    let value = serde_json::from_str(text)
                        .unwrap_or_else(|_| Value::String(text.to_string()));
                    self.progress.report(value);
                }
                self.line.clear();
            }
            bytes = rest;
        }
    }
}

/// "exited with code 3", "was killed by signal 9".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}

/// The end of stderr as text for a message (`(no stderr)` when there is none).
fn tail_text(stderr: &[u8]) -> String {
    // The tail may start inside a multi-byte character: skip its continuation bytes.
    let start = stderr
        .iter()
        .position(|b| b & 0xC0 != 0x80)
        .unwrap_or(stderr.len());
    let text = String::from_utf8_lossy(&stderr[start..]);
    let text = text.trim();
    if text.is_empty() {
        "(no stderr)".to_owned()
    } else {
        text.to_owned()
    }
}

/// The output: stdout as JSON if it parses, `null` if empty, else the text.
/// Surrounding whitespace is trimmed either way.
fn parse_output(stdout: &[u8]) -> Value {
    let trimmed = stdout.trim_ascii();
    if trimmed.is_empty() {
        return Value::Null;
    }
    serde_json::from_slice(trimmed)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(trimmed).into_owned()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::store::RunId;

    fn call(input: Value) -> Call {
        Call {
            run: RunId(0x0123_4567_89ab_cdef),
            task: Arc::from("fetch"),
            attempt: 2,
            input,
            estimate: None,
            iteration: None,
            decisions: None,
            progress: None,
        }
    }

    fn shell(line: &str) -> Command {
        Command::new(&baton_model::Command::Shell(line.to_owned()), &[])
    }

    async fn outcome(agent: &Command, input: Value) -> Outcome {
        match agent.start(call(input)) {
            Started::Done(outcome) => outcome,
            Started::Later(pending) => pending.await,
        }
    }

    #[tokio::test]
    async fn progress_lines_on_stderr_are_reported_and_the_rest_is_not() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let agent = shell(
            "echo 'BATON_PROGRESS {\"pct\": 50}' >&2; echo noise >&2; printf 'BATON_PROGRESS half' >&2; printf 'way\\n' >&2; echo 1",
        );
        let mut c = call(json!({}));
        c.progress = Some(Progress::new(move |r| {
            if let crate::agent::Report::Progress(v) = r {
                log.lock().unwrap().push(v)
            }
        }));
        let Started::Later(f) = agent.start(c) else {
            panic!("a process is started later");
        };
        assert_eq!(f.await, Ok(json!(1)));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen, [json!({"pct": 50}), json!("halfway")]);
        let mut lines = Lines {
            progress: &Progress::new(|r| panic!("reported {r:?}")),
            line: Vec::new(),
        };
        let long = [
            b"BATON_PROGRESS ".as_slice(),
            &vec![b'x'; PROGRESS_LINE],
            b"\n",
        ]
        .concat();
        lines.scan(&long);
    }

    #[tokio::test]
    async fn input_round_trips_through_cat() {
        let agent = Command::new(&baton_model::Command::Argv(vec!["cat".into()]), &[]);
        let input = json!({"task": "fetch", "upstream": {"a": [1, 2.5, null]}, "s": "é"});
        assert_eq!(outcome(&agent, input.clone()).await, Ok(input));
    }

    #[tokio::test]
    async fn large_input_and_output_do_not_deadlock() {
        // cat writes while we are still writing: both pipes must be served at once.
        let agent = Command::new(&baton_model::Command::Argv(vec!["cat".into()]), &[]);
        let input = json!({"blob": "x".repeat(1 << 20)});
        assert_eq!(outcome(&agent, input.clone()).await, Ok(input));
    }

    #[tokio::test]
    async fn large_stdout_and_stderr_are_read_fully() {
        let agent = shell(
            "head -c 1048576 /dev/zero | tr '\\0' a; head -c 1048576 /dev/zero | tr '\\0' b >&2",
        );
        let out = outcome(&agent, Value::Null).await.unwrap();
        let text = out.as_str().unwrap();
        assert_eq!(text.len(), 1 << 20);
        assert!(text.bytes().all(|b| b == b'a'));
    }

    #[tokio::test]
    async fn non_json_stdout_is_a_string_and_empty_is_null() {
        let out = outcome(&shell("echo '  hello world  '"), Value::Null).await;
        assert_eq!(out, Ok(json!("hello world")));
        assert_eq!(outcome(&shell("true"), Value::Null).await, Ok(Value::Null));
        assert_eq!(
            outcome(&shell("echo ' [1, 2] '"), Value::Null).await,
            Ok(json!([1, 2]))
        );
    }

    #[tokio::test]
    async fn non_zero_exit_is_retryable_with_code_and_stderr() {
        let failure = outcome(&shell("echo 'disk full' >&2; exit 3"), Value::Null)
            .await
            .unwrap_err();
        assert!(failure.retryable);
        assert_eq!(failure.message, "`sh` exited with code 3: disk full");
    }

    #[tokio::test]
    async fn stderr_keeps_only_its_tail() {
        let agent =
            shell("head -c 1048576 /dev/zero | tr '\\0' x >&2; echo ' the end' >&2; exit 1");
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(
            failure.message.ends_with("x the end"),
            "{}",
            failure.message
        );
        assert!(failure.message.len() < STDERR_TAIL + 100);
    }

    #[tokio::test]
    async fn a_signal_is_named() {
        let failure = outcome(&shell("kill -9 $$"), Value::Null)
            .await
            .unwrap_err();
        assert!(failure.retryable);
        assert_eq!(failure.message, "`sh` was killed by signal 9: (no stderr)");
    }

    #[tokio::test]
    async fn missing_program_is_permanent() {
        let agent = Command::new(
            &baton_model::Command::Argv(vec!["baton-no-such-program".into(), "x".into()]),
            &[],
        );
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure
                .message
                .starts_with("cannot start `baton-no-such-program`: "),
            "{}",
            failure.message
        );
        assert!(
            failure.message.contains("No such file"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn a_program_that_is_not_executable_is_permanent() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let path = file.path().display().to_string();
        let agent = Command::new(&baton_model::Command::Argv(vec![path.clone()]), &[]);
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(!failure.retryable);
        assert!(failure.message.contains(&path), "{}", failure.message);
        assert!(
            failure.message.contains("Permission denied"),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn empty_argv_fails_at_once() {
        let agent = Command::new(&baton_model::Command::Argv(vec![]), &[]);
        let Started::Done(Err(failure)) = agent.start(call(Value::Null)) else {
            panic!("an empty command must fail without running")
        };
        assert!(!failure.retryable);
    }

    #[tokio::test]
    async fn environment_is_set() {
        let out = outcome(&shell(r#"echo "\"$BATON_TASK\"""#), Value::Null).await;
        assert_eq!(out, Ok(json!("fetch")));

        let agent = Command::new(
            &baton_model::Command::Shell(
                r#"printf '["%s","%s","%s","%s"]' "$BATON_RUN" "$BATON_ATTEMPT" "$GREETING" "$HOME""#
                    .to_owned(),
            ),
            &[("GREETING".to_owned(), "hi there".to_owned())],
        );
        assert!(!format!("{agent:?}").contains("hi there"));
        let out = outcome(&agent, Value::Null).await.unwrap();
        assert_eq!(out[0], "0123456789abcdef");
        assert_eq!(out[1], "2");
        assert_eq!(out[2], "hi there");
        // The rest of the environment is inherited.
        assert_eq!(out[3], std::env::var("HOME").unwrap_or_default());
    }

    #[tokio::test]
    async fn a_process_that_ignores_stdin_succeeds() {
        // Far more input than a pipe holds, so the write hits a closed pipe.
        let input = json!({"blob": "y".repeat(4 << 20)});
        assert_eq!(outcome(&shell("echo 42"), input).await, Ok(json!(42)));
    }

    #[tokio::test]
    async fn dropping_the_call_kills_the_process() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let agent = shell(&format!(
            "echo $$ > '{}.tmp' && mv '{0}.tmp' '{0}' && exec sleep 30",
            pid_file.display()
        ));
        let Started::Later(mut pending) = agent.start(call(Value::Null)) else {
            panic!("a command runs later")
        };
        // Drive the call until the process has told its pid.
        let pid: u32 = loop {
            tokio::select! {
                outcome = &mut pending => panic!("the process ended early: {outcome:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            if let Ok(text) = std::fs::read_to_string(&pid_file) {
                break text.trim().parse().unwrap();
            }
        };
        assert!(alive(pid), "the process should be running");
        drop(pending);
        for _ in 0..500 {
            if !alive(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("process {pid} still runs 5 s after its call was dropped");
    }

    #[tokio::test]
    async fn the_engines_environment_is_not_passed_on() {
        // Cargo and the shell give a test plenty of variables of their own.
        let ours: Vec<String> = std::env::vars()
            .map(|(k, _)| k)
            .filter(|k| !INHERITED.contains(&k.as_str()))
            .collect();
        assert!(!ours.is_empty(), "the test needs a variable to withhold");
        let agent = Command::new(
            &baton_model::Command::Argv(vec!["env".into()]),
            &[("GIVEN".to_owned(), "1".to_owned())],
        );
        let out = outcome(&agent, Value::Null).await.unwrap();
        let names: Vec<&str> = out
            .as_str()
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .collect();
        for name in &names {
            assert!(
                INHERITED.contains(name) || name.starts_with("BATON_") || *name == "GIVEN",
                "`{name}` reached the process"
            );
        }
        assert!(names.contains(&"GIVEN") && names.contains(&"BATON_TASK"));
        for name in &ours {
            assert!(
                !names.contains(&name.as_str()),
                "`{name}` reached the process"
            );
        }
    }

    #[tokio::test]
    async fn what_a_call_started_in_the_background_dies_when_it_exits() {
        // Without the group kill, `sleep` would hold stdout open for 30 s.
        let started = std::time::Instant::now();
        let out = outcome(&shell("sleep 30 & echo $!"), Value::Null)
            .await
            .unwrap();
        let pid = u32::try_from(out.as_u64().unwrap()).unwrap();
        assert!(started.elapsed() < Duration::from_secs(10));
        wait_dead(pid).await;
    }

    #[tokio::test]
    async fn dropping_the_call_kills_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let agent = shell(&format!(
            "sleep 30 & echo $! > '{0}.tmp' && mv '{0}.tmp' '{0}'; wait",
            pid_file.display()
        ));
        let Started::Later(mut pending) = agent.start(call(Value::Null)) else {
            panic!("a command runs later")
        };
        let pid = read_pid(&mut pending, &pid_file).await;
        assert!(alive(pid));
        drop(pending);
        wait_dead(pid).await;
    }

    #[tokio::test]
    async fn the_agents_timeout_kills_the_group_and_is_retryable() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let agent = Command::of(&baton_model::Agent {
            kind: "command".into(),
            command: Some(baton_model::Command::Shell(format!(
                "sleep 30 & echo $! > '{0}.tmp' && mv '{0}.tmp' '{0}'; wait",
                pid_file.display()
            ))),
            timeout: Some(Duration::from_millis(300)),
            ..baton_model::Agent::default()
        })
        .unwrap();
        let failure = outcome(&agent, Value::Null).await.unwrap_err();
        assert!(failure.retryable);
        assert!(
            failure
                .message
                .contains("took longer than the agent's timeout of 300ms"),
            "{}",
            failure.message
        );
        let pid: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        wait_dead(pid).await;
    }

    #[tokio::test]
    async fn workdir_is_where_the_process_starts() {
        let dir = tempfile::tempdir().unwrap();
        let agent = |workdir: String| {
            Command::of(&baton_model::Agent {
                kind: "command".into(),
                command: Some(baton_model::Command::Argv(vec!["pwd".into()])),
                workdir: Some(workdir),
                ..baton_model::Agent::default()
            })
            .unwrap()
        };
        let here = dir.path().canonicalize().unwrap().display().to_string();
        let out = outcome(&agent(here.clone()), Value::Null).await;
        assert_eq!(out, Ok(json!(here)));
        let missing = format!("{here}/missing");
        let failure = outcome(&agent(missing.clone()), Value::Null)
            .await
            .unwrap_err();
        assert!(!failure.retryable);
        assert!(
            failure
                .message
                .contains(&format!("its workdir `{missing}` is not a directory")),
            "{}",
            failure.message
        );
    }

    #[tokio::test]
    async fn hostile_input_reaches_stdin_only() {
        let dir = tempfile::tempdir().unwrap();
        let canary = dir.path().join("pwned");
        let c = canary.display();
        let hostile = json!({
            "q": format!("$(touch {c}) `touch {c}`; touch {c} && touch {c} | touch {c}"),
            "quote": format!("'; touch {c}; '\"; touch {c}; \""),
            "newline": format!("x\ntouch {c}\n"),
        });
        // A program reading it, and a shell line reading it: neither runs it.
        let argv = Command::new(&baton_model::Command::Argv(vec!["cat".into()]), &[]);
        assert_eq!(outcome(&argv, hostile.clone()).await, Ok(hostile.clone()));
        let line = shell("input=$(cat); printf '%s' \"$input\"");
        assert_eq!(outcome(&line, hostile.clone()).await, Ok(hostile.clone()));
        assert!(!canary.exists(), "the input was run");
    }

    /// Drives `pending` until the process has written its pid to `file`.
    /// Fails unless the pid arrives within 5 s.
    async fn read_pid(pending: &mut super::super::Pending, file: &std::path::Path) -> u32 {
        for _ in 0..500 {
            tokio::select! {
                outcome = &mut *pending => panic!("the process ended early: {outcome:?}"),
                () = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            if let Ok(text) = std::fs::read_to_string(file) {
                return text.trim().parse().unwrap();
            }
        }
        panic!("the process did not write its pid within 5 s");
    }

    /// Fails unless `pid` is gone within 5 s.
    async fn wait_dead(pid: u32) {
        for _ in 0..500 {
            if !alive(pid) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("process {pid} still runs 5 s after its call ended");
    }

    /// Whether `pid` runs (a zombie awaiting its reaper counts as dead).
    fn alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the parenthesised command name.
            Ok(stat) => {
                !matches!(stat.rsplit(')').next().map(str::trim_start), Some(s) if s.starts_with('Z'))
            }
            Err(_) => false,
        }
    }
}
