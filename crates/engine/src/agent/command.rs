//! The `command` agent: runs a process per call.
//!
//! The call's input goes to the process's stdin as one JSON document; what the
//! process prints on stdout is the task's output (JSON if it parses, else a
//! string). A non-zero exit is a retryable failure carrying the end of stderr;
//! a program that cannot be started (not found, not executable) a permanent one.
//!
//! The process is killed (SIGKILL) when the call's future is dropped, which is
//! how the engine cancels a call and applies a task's timeout. Only the process
//! itself is killed: a shell script that starts children of its own should
//! `exec` its last command, or the children outlive the call.

use std::io;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::{Call, Failure, Outcome, Runner, Started};

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

/// What to run: shared by every call of one agent.
struct Spec {
    /// The program, as given (`sh` for a shell command line).
    program: String,
    args: Vec<String>,
    /// Added to the environment the engine inherited.
    env: Vec<(String, String)>,
}

impl std::fmt::Debug for Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Environment values often carry credentials: show the names only.
        f.debug_struct("Spec")
            .field("program", &self.program)
            .field("args", &self.args)
            .field("env", &self.env.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl Command {
    /// An agent running `command` with `env` added to the inherited environment.
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
            }),
        }
    }
}

impl Runner for Command {
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

    let mut child = tokio::process::Command::new(&spec.program)
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .env("BATON_RUN", call.run.to_string())
        .env("BATON_TASK", &*call.task)
        .env("BATON_ATTEMPT", call.attempt.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| spawn_failure(&spec.program, &e))?;
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
    // the rest of its stdin, and never exits.
    let (written, stdout, stderr, status) = tokio::join!(
        write_input(stdin, &input),
        read_capped(stdout, STDOUT_LIMIT),
        read_tail(stderr, STDERR_TAIL),
        child.wait(),
    );
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

/// Why a process did not start. A missing program or a denied permission will
/// not go away by itself; a momentary lack of resources may.
fn spawn_failure(program: &str, error: &io::Error) -> Failure {
    let message = format!("cannot start `{program}`: {error}");
    // ENFILE, EMFILE: the system's or the engine's file table is full.
    let transient = matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::OutOfMemory | io::ErrorKind::Interrupted
    ) || matches!(error.raw_os_error(), Some(23 | 24));
    Failure {
        message,
        retryable: transient,
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
async fn read_tail(pipe: Option<impl AsyncRead + Unpin>, tail: usize) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return Ok(kept);
    };
    let mut buf = vec![0; 16 << 10];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            let cut = kept.len().saturating_sub(tail);
            kept.drain(..cut);
            return Ok(kept);
        }
        kept.extend_from_slice(&buf[..n]);
        // Trim in batches, not on every read.
        if kept.len() > 2 * tail + buf.len() {
            let cut = kept.len() - tail;
            kept.drain(..cut);
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
