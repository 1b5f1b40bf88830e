//! `baton serve` as a process: it reports where it listens, answers, and on
//! SIGTERM stops accepting, flushes and exits 0; a restart on the same data
//! directory still knows what was created.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

pub(crate) fn request(addr: &str, method: &str, path: &str, body: &str) -> String {
    request_as(addr, None, method, path, body)
}

/// [`request`] with `Authorization: Bearer TOKEN` when a token is given.
pub(crate) fn request_as(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: &str,
) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The rest of a server's stderr.
type Stderr = std::io::Lines<BufReader<std::process::ChildStderr>>;

/// Spawns `cmd` (a `baton serve`) with stderr piped and reads it up to the
/// startup line: the child, its address, the line, and the rest of stderr.
fn until_listening(cmd: &mut Command) -> (std::process::Child, String, String, Stderr) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let Some(Ok(line)) = lines.next() else {
            let status = child.wait();
            panic!("serve exited early: {status:?}");
        };
        if let Some(rest) = line
            .split("listening on http://")
            .nth(1)
            .or_else(|| line.split("listening on https://").nth(1))
        {
            let addr = rest.split_whitespace().next().unwrap().to_string();
            return (child, addr, line, lines);
        }
    }
}

/// Starts `baton serve` on an ephemeral port; returns the child and its address.
pub(crate) fn serve(data: &std::path::Path) -> (std::process::Child, String) {
    let (child, addr, _, lines) = until_listening(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(data),
    );
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, addr)
}

fn sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    for _ in 0..100 {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    panic!("baton serve did not stop within 5 s of SIGTERM");
}

#[test]
fn serve_answers_stops_on_sigterm_with_exit_0_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path());
    assert!(request(&addr, "GET", "/healthz", "").starts_with("HTTP/1.1 200"));
    let created = request(
        &addr,
        "POST",
        "/api/v1/workflows",
        r#"{"name": "kept", "tasks": [{"id": "a"}, {"id": "b", "depends_on": ["a"]}]}"#,
    );
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let status = sigterm(&mut child);
    assert!(status.success(), "{status:?}");

    let (mut child, addr) = serve(dir.path());
    let listed = request(&addr, "GET", "/api/v1/workflows", "");
    assert!(listed.contains("\"kept\""), "{listed}");
    assert!(sigterm(&mut child).success());
}

#[test]
fn sigterm_stops_serve_even_when_nobody_reads_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = lines.next().expect("serve exited early").unwrap();
    assert!(line.contains("listening on"), "{line}");
    // The reader goes away (as when the terminal or the supervisor's pipe closes).
    drop(lines);
    let status = sigterm(&mut child);
    assert!(status.success(), "{status:?}");
}

/// `baton serve` with `config` as its `baton.toml` (in `dir`), which must
/// refuse to start: its exit code and stderr.
fn serve_with_config(dir: &std::path::Path, config: &str) -> (Option<i32>, String) {
    let path = dir.join("baton.toml");
    std::fs::write(&path, config).unwrap();
    let args = [
        "serve",
        "--bind",
        "127.0.0.1:0",
        "--config",
        path.to_str().unwrap(),
    ];
    let o = crate::baton(&args, None);
    (o.status.code(), crate::stderr(&o))
}

/// The run budgets in `[server]` are range-checked before anything starts.
#[test]
fn out_of_range_run_budgets_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (setting, message) in [
        ("max_depth = 0", "max_depth must be from 1 to 16"),
        ("max_depth = 17", "max_depth must be from 1 to 16"),
        (
            "max_instances_per_run = 0",
            "max_instances_per_run must be at least 1",
        ),
    ] {
        let (code, err) = serve_with_config(dir.path(), &format!("[server]\n{setting}\n"));
        assert_eq!(code, Some(2), "{setting}");
        assert!(err.contains(message), "{err}");
    }
}

/// `[tenants.NAME]` tables are checked before anything starts: the name and
/// each quota.
#[test]
fn a_bad_tenants_table_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (table, message) in [
        (
            "[tenants.Acme]\nmax_concurrent_runs = 1",
            "not a tenant name",
        ),
        (
            "[tenants.acme]\nmax_concurrent_runs = 0",
            "max_concurrent_runs must be at least 1",
        ),
        ("[tenants.acme]\nrequests_per_sec = -1", "must be above 0"),
        ("[tenants.acme]\nrunz = 1", "unknown field `runz`"),
    ] {
        let (code, err) = serve_with_config(dir.path(), &format!("{table}\n"));
        assert_eq!(code, Some(1), "{table}");
        assert!(
            err.contains(message) && err.contains("[tenants"),
            "{table}: {err}"
        );
    }
}

/// `baton token create --tenant` confines a token to a tenant: `list`
/// shows it, and a scope that spans tenants is refused with exit code 1.
#[test]
fn a_token_is_made_for_a_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let token = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("token")
            .args(args)
            .arg("--data-dir")
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let o = token(&[
        "create",
        "--tenant",
        "acme",
        "--scope",
        "runs:read",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let made: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(made["tenant"], "acme");
    let o = token(&["create", "--tenant", "acme", "--scope", "admin"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("spans every tenant"));
    let listed = String::from_utf8(token(&["list"]).stdout).unwrap();
    assert!(
        listed.contains("tenant") && listed.contains("acme"),
        "{listed}"
    );
}

/// A run that completed before a restart is still answered for: its status,
/// its tasks' outputs, the list, and a rerun.
#[test]
fn finished_runs_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path());
    let created = request(
        &addr,
        "POST",
        "/api/v1/workflows",
        r#"{"name": "kept", "agents": {"s": {"type": "simulate", "outputs": {"a": {"n": 7}}}}, "tasks": [{"id": "a", "agent": "s"}, {"id": "b", "agent": "s", "depends_on": ["a"]}]}"#,
    );
    let body = created.split("\r\n\r\n").nth(1).unwrap();
    let id = serde_json::from_str::<serde_json::Value>(body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let executed = request(
        &addr,
        "POST",
        &format!("/api/v1/workflows/{id}/execute"),
        "{}",
    );
    let body = executed.split("\r\n\r\n").nth(1).unwrap();
    let run = serde_json::from_str::<serde_json::Value>(body).unwrap()["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !request(&addr, "GET", &format!("/api/v1/executions/{run}"), "").contains("\"completed\"")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the run did not complete"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(sigterm(&mut child).success());

    let (mut child, addr) = serve(dir.path());
    let status = request(&addr, "GET", &format!("/api/v1/executions/{run}"), "");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(status.contains("\"completed\""), "{status}");
    assert!(status.contains(r#""output":{"n":7}"#), "{status}");
    let listed = request(&addr, "GET", "/api/v1/executions", "");
    assert!(listed.contains(&run), "{listed}");
    let rerun = request(
        &addr,
        "POST",
        &format!("/api/v1/executions/{run}/rerun"),
        r#"{"from": "b"}"#,
    );
    assert!(rerun.starts_with("HTTP/1.1 202"), "{rerun}");
    assert!(sigterm(&mut child).success());
}

/// `--access-log` writes a line per request (here as JSON lines: method,
/// route template, status, latency, request id) and never the token; the
/// startup banner names the version.
#[test]
fn the_access_log_names_the_route_and_request_id_and_never_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr, line, lines) = until_listening(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args([
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--access-log",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(dir.path())
            .env("BATON_AUTH_TOKEN", "s3cret-token"),
    );
    assert!(line.contains(env!("CARGO_PKG_VERSION")), "{line}");
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "GET /api/v1/executions/0000000000000007 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer s3cret-token\r\nx-request-id: follow-me\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 404"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("x-request-id: follow-me"),
        "{answer}"
    );
    assert!(sigterm(&mut child).success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let access: Vec<serde_json::Value> = rest
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "baton::access")
        .collect();
    assert_eq!(access.len(), 1, "{rest:?}");
    let fields = &access[0]["fields"];
    assert_eq!(fields["method"], "GET");
    assert_eq!(fields["route"], "/api/v1/executions/{id}");
    assert_eq!(fields["status"], 404);
    assert_eq!(fields["request_id"], "follow-me");
    assert!(fields["latency_us"].is_u64(), "{fields}");
    assert!(!rest.iter().any(|l| l.contains("s3cret")), "{rest:?}");
}

/// A log level that is not one (a typo would otherwise log nothing) is a
/// usage error that says what is expected.
#[test]
fn a_log_level_that_is_not_one_is_refused() {
    let o = crate::baton(&["--log-level", "verbose", "serve"], None);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        crate::stderr(&o).contains("is not a log level"),
        "{}",
        crate::stderr(&o)
    );
}

/// Without `--config`, `./baton.toml` is read (the startup line names it),
/// and `BATON_DATA_DIR` is where the data goes; a bad `BATON_BIND` is a
/// usage error.
#[test]
fn baton_toml_in_the_working_directory_and_the_environment_are_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("baton.toml"),
        "[server]\nbind = \"127.0.0.1:0\"\nmax_depth = 3\n",
    )
    .unwrap();
    let data = dir.path().join("elsewhere");
    let (mut child, _, line, lines) = until_listening(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .arg("serve")
            .current_dir(dir.path())
            .env("BATON_DATA_DIR", &data),
    );
    assert!(line.contains("config baton.toml"), "{line}");
    assert!(
        line.contains(&format!("data in {}", data.display())),
        "{line}"
    );
    std::thread::spawn(move || for _ in lines {});
    assert!(sigterm(&mut child).success());
    assert!(data.join("events").is_dir());

    let o = Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("serve")
        .current_dir(dir.path())
        .env("BATON_BIND", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("BATON_BIND"));
}

/// `--version` says which build this is: the version, the commit (in a git
/// checkout) and the features.
#[test]
fn version_names_the_commit_and_the_features() {
    let o = crate::baton(&["--version"], None);
    assert!(o.status.success());
    let v = crate::stdout(&o);
    assert!(
        v.starts_with(&format!("baton {}", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    assert!(v.contains("features: "), "{v}");
    let in_git = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(crate::repo())
        .output()
        .is_ok_and(|o| o.status.success());
    assert_eq!(v.contains("commit "), in_git, "{v}");
}

/// `baton runs` looks at a running server without curl: list, show, events
/// (until the run ends), cancel; errors from the server exit 1 with its
/// detail, no server exits 2.
#[test]
fn baton_runs_lists_shows_follows_and_cancels() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, addr) = serve(dir.path());
    let created = request(
        &addr,
        "POST",
        "/api/v1/workflows",
        r#"{"name": "pair", "tasks": [{"id": "a"}, {"id": "b", "depends_on": ["a"]}]}"#,
    );
    let wf = created
        .split("\"id\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let executed = request(
        &addr,
        "POST",
        &format!("/api/v1/workflows/{wf}/execute"),
        "{}",
    );
    let run = executed
        .split("\"execution_id\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    let server = format!("http://{addr}");
    let runs = |args: &[&str]| crate::baton(&[&["runs", "--server", &server], args].concat(), None);

    let events = runs(&["events", &run]);
    assert!(events.status.success(), "{}", crate::stderr(&events));
    assert!(
        crate::stdout(&events).contains("baton.run "),
        "{}",
        crate::stdout(&events)
    );

    let list = runs(&["list"]);
    assert!(list.status.success(), "{}", crate::stderr(&list));
    let text = crate::stdout(&list);
    assert!(
        text.contains(&run)
            && text.contains("completed")
            && text.contains("pair")
            && text.contains("2/2"),
        "{text}"
    );
    let json = runs(&["list", "--json", "--status", "completed"]);
    let v: serde_json::Value = serde_json::from_str(&crate::stdout(&json)).unwrap();
    assert_eq!(v["items"][0]["execution_id"], run.as_str());

    let show = runs(&["show", &run]);
    let text = crate::stdout(&show);
    assert!(
        text.contains(&format!("run {run}  completed  (pair)")),
        "{text}"
    );
    assert!(
        text.contains("  a ") && text.contains("succeeded"),
        "{text}"
    );

    // Cancelling a finished run is the server's 409, with its detail.
    let cancel = runs(&["cancel", &run]);
    assert_eq!(cancel.status.code(), Some(1));
    assert!(
        crate::stderr(&cancel).contains("409"),
        "{}",
        crate::stderr(&cancel)
    );
    let unknown = runs(&["show", "0000000000000001"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(sigterm(&mut child).success());

    let gone = runs(&["list"]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(
        crate::stderr(&gone).contains("is `baton serve` running"),
        "{}",
        crate::stderr(&gone)
    );
}

/// `baton completions SHELL` prints a script that knows the commands; bash
/// accepts it.
#[test]
fn completions_are_printed_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let o = crate::baton(&["completions", shell], None);
        assert!(o.status.success(), "{shell}: {}", crate::stderr(&o));
        let script = crate::stdout(&o);
        for word in ["serve", "runs", "log-level"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    let bash = crate::stdout(&crate::baton(&["completions", "bash"], None));
    let checked = Command::new("bash")
        .args(["-n", "-c", &bash])
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// `[server] dedup_ids = 0` turns dedup off for new topics: the same event
/// id published twice is stored twice (by default the second returns the
/// first's offset).
#[test]
fn the_dedup_window_is_configured_from_baton_toml() {
    let offsets = |config: &str| {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("baton.toml"), config).unwrap();
        let (mut child, addr, _, lines) = until_listening(
            Command::new(env!("CARGO_BIN_EXE_baton"))
                .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path().join("data"))
                .current_dir(dir.path()),
        );
        std::thread::spawn(move || for _ in lines {});
        let event =
            r#"{"events": [{"type": "x", "key": "k", "id": "0123456789abcdef0123456789abcdef"}]}"#;
        let a = request(&addr, "POST", "/api/v1/events?topic=dedup", event);
        let b = request(&addr, "POST", "/api/v1/events?topic=dedup", event);
        assert!(sigterm(&mut child).success());
        let offset = |r: &str| {
            r.split("\"offset\":")
                .nth(1)
                .unwrap()
                .split('}')
                .next()
                .unwrap()
                .to_owned()
        };
        (offset(&a), offset(&b))
    };
    let (a, b) = offsets("[server]\n");
    assert_eq!(a, b, "deduplicated by default");
    let (a, b) = offsets("[server]\ndedup_ids = 0\n");
    assert_ne!(a, b, "stored twice with dedup off");
}

/// `baton token create` makes a token a running server takes within a
/// second, scoped; `baton audit` shows what it did, to an admin.
#[test]
fn tokens_from_the_cli_work_on_a_running_server_and_the_audit_shows_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let token_cmd = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["token"])
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .output()
            .unwrap()
    };
    let o = token_cmd(&["create", "--scope", "workflows:write", "--name", "ci"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let writer = String::from_utf8(o.stdout).unwrap().trim().to_string();
    let (mut child, addr, line, lines) = until_listening(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(&data)
            .env("BATON_AUTH_TOKEN", "the-admin-token"),
    );
    std::thread::spawn(move || for _ in lines {});
    assert!(line.contains("bearer auth on"), "{line}");
    let call = |method: &str, path: &str, token: &str, body: &str| {
        request_as(&addr, Some(token), method, path, body)
    };
    let flow = r#"{"name": "t", "tasks": [{"id": "a"}]}"#;
    assert!(call("POST", "/api/v1/workflows", &writer, flow).starts_with("HTTP/1.1 201"));
    assert!(call("GET", "/api/v1/executions", &writer, "").starts_with("HTTP/1.1 403"));
    // A token created while it runs is taken within a second.
    let o = token_cmd(&["create", "--scope", "runs:read", "--json"]);
    let created: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let reader = created["token"].as_str().unwrap();
    let mut answered = String::new();
    for _ in 0..30 {
        answered = call("GET", "/api/v1/executions", reader, "");
        if answered.starts_with("HTTP/1.1 200") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    let list = token_cmd(&["list"]);
    let listed = String::from_utf8(list.stdout).unwrap();
    assert!(
        listed.contains("ci") && listed.contains("runs:read"),
        "{listed}"
    );
    assert!(!listed.contains(&writer[15..]), "list never shows a token");
    let audit = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["audit", "--server", &format!("http://{addr}")])
            .env("BATON_AUTH_TOKEN", token)
            .output()
            .unwrap()
    };
    let o = audit("the-admin-token");
    let shown = String::from_utf8(o.stdout).unwrap();
    let writer_id = &writer[6..14];
    assert!(
        shown
            .lines()
            .any(|l| l.contains(writer_id) && l.contains("/api/v1/workflows") && l.contains("201")),
        "{shown}"
    );
    assert!(
        shown.lines().any(|l| l.contains(writer_id)
            && l.contains("/api/v1/executions")
            && l.contains("403")),
        "{shown}"
    );
    assert_eq!(audit(&writer).status.code(), Some(1), "not an admin");
    assert!(sigterm(&mut child).success());
}

/// `--tls-cert`/`--tls-key`: the API over HTTPS, which `baton runs` reaches
/// trusting the CA in `SSL_CERT_FILE`; plain HTTP gets nothing; a
/// certificate that no longer loads on SIGHUP leaves the current one serving.
#[test]
fn serve_speaks_https_and_keeps_its_certificate_when_a_reload_fails() {
    let fixtures = crate::repo().join("crates/engine/tests/fixtures/tls");
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("server.pem");
    std::fs::copy(fixtures.join("server.pem"), &cert).unwrap();
    let (mut child, addr, line, lines) = until_listening(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["serve", "--bind", "127.0.0.1:0", "--tls-cert"])
            .arg(&cert)
            .arg("--tls-key")
            .arg(fixtures.join("server.key"))
            .arg("--data-dir")
            .arg(dir.path().join("data")),
    );
    // The log, read on a thread: the reload says what it did there.
    let (log, said) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = log.send(line);
        }
    });
    assert!(line.contains("listening on https://"), "{line}");
    let port = addr.rsplit(':').next().unwrap();
    let runs = || {
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args([
                "runs",
                "list",
                "--server",
                &format!("https://localhost:{port}"),
            ])
            .env("SSL_CERT_FILE", fixtures.join("ca.pem"))
            .output()
            .unwrap()
    };
    let o = runs();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Plain HTTP on the TLS port: no HTTP answer.
    let plain = std::panic::catch_unwind(|| request(&addr, "GET", "/healthz", ""));
    assert!(
        plain.map_or(true, |answer| !answer.starts_with("HTTP/1.1 200")),
        "plain HTTP was answered"
    );
    // Without the CA, the client refuses the certificate.
    let o = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "runs",
            "list",
            "--server",
            &format!("https://localhost:{port}"),
        ])
        .env("SSL_CERT_FILE", fixtures.join("server.key"))
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // `baton load` against the https target: trusting the CA, every request
    // succeeds; without it, it stops before the load, naming TLS.
    let load = |ca: &str| {
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args([
                "load",
                "--target",
                &format!("https://localhost:{port}"),
                "--scenario",
                "mixed",
                "--users",
                "2",
                "--iterations",
                "20",
            ])
            .env("SSL_CERT_FILE", fixtures.join(ca))
            .output()
            .unwrap()
    };
    let o = load("ca.pem");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("against https://localhost:"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let o = load("server.key");
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("TLS") || err.contains("certificate"), "{err}");
    // A broken certificate on SIGHUP: the current one keeps serving.
    std::fs::write(&cert, "not a certificate").unwrap();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = said
            .recv_timeout(left)
            .expect("no word of the reload within 10 s");
        if line.contains("SIGHUP") {
            assert!(line.contains("did not load"), "{line}");
            break;
        }
    }
    let o = runs();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(sigterm(&mut child).success());
}

/// Every file under `dir`, read whole (binary included).
fn every_file(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            every_file(&path, out);
        } else {
            let bytes = std::fs::read(&path).unwrap();
            out.push((path, bytes));
        }
    }
}

/// Secrets given by reference to the operator's agents and to the server
/// are nowhere in what a run leaves behind: not in the data directory (event
/// log, state journal, workflows, executions, audit trail), the server's
/// logs at debug level with the access log, `/metrics`, the run's status,
/// events and workflow, or the error of a call that failed, though the
/// secrets did reach the agent's process (it checks them to succeed).
#[test]
fn a_planted_secret_is_nowhere_a_run_leaves_behind() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("baton.toml");
    std::fs::write(dir.path().join("header.txt"), "planted-HEADER-7f3a\n").unwrap();
    std::fs::write(
        &config,
        r#"[server]
auth_token = "env:PLANTED_ADMIN"
audit = "all"
allow_private_hosts = ["127.0.0.1"]

[agents.check]
type = "command"
command = ["sh", "-c", "cat > /dev/null; [ \"${KEY#planted-ENV-}\" = 91c2 ] && echo '{\"checked\": true}'"]
shell = false
env = { KEY = "env:PLANTED_KEY" }

[agents.remote]
type = "http"
url = "http://127.0.0.1:9/a2a"
headers = { Authorization = "file:header.txt" }
"#,
    )
    .unwrap();
    let (mut child, addr, _, lines) = until_listening(
        Command::new(env!("CARGO_BIN_EXE_baton"))
            .args(["--log-level", "debug", "serve", "--bind", "127.0.0.1:0"])
            .args(["--access-log", "--data-dir"])
            .arg(&data)
            .arg("--config")
            .arg(&config)
            .env("PLANTED_ADMIN", "planted-ADMIN-55e0")
            .env("PLANTED_KEY", "planted-ENV-91c2"),
    );
    let logs = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<String>>());
    let admin = Some("planted-ADMIN-55e0");
    let call = |method: &str, path: &str, body: &str| request_as(&addr, admin, method, path, body);
    let body_of = |answer: &str| {
        answer
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string()
    };
    let flow = r#"{"agents": {"check": {"type": "noop"}, "remote": {"type": "noop"}},
      "tasks": [{"id": "a", "agent": "check"},
                {"id": "b", "agent": "remote", "depends_on": ["a"], "retry": {"max_attempts": 1}}]}"#;
    let created = call("POST", "/api/v1/workflows", flow);
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let id: serde_json::Value = serde_json::from_str(&body_of(&created)).unwrap();
    let id = id["id"].as_str().unwrap().to_string();
    let started = call("POST", &format!("/api/v1/workflows/{id}/execute"), "{}");
    let run: serde_json::Value = serde_json::from_str(&body_of(&started)).unwrap();
    let run = run["execution_id"].as_str().unwrap().to_string();
    let mut seen = Vec::new();
    let status = loop {
        let s = call("GET", &format!("/api/v1/executions/{run}?wait_ms=2000"), "");
        let v: serde_json::Value = serde_json::from_str(&body_of(&s)).unwrap();
        if matches!(v["status"].as_str(), Some("completed" | "failed")) {
            seen.push(s);
            break v;
        }
        assert!(seen.len() < 20, "the run did not end: {s}");
        seen.push(s);
    };
    // The command agent saw its secret (it succeeds only then); the http
    // agent's call failed (nothing listens), carrying its header.
    let task = |id: &str| {
        status["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(task("a")["status"], "succeeded", "{status}");
    assert_eq!(task("b")["status"], "failed", "{status}");
    for path in [
        format!("/api/v1/executions/{run}/events"),
        format!("/api/v1/executions/{run}/workflow"),
        format!("/api/v1/workflows/{id}"),
        "/api/v1/executions".to_string(),
        "/api/v1/agents".to_string(),
        "/api/v1/audit?max=1000".to_string(),
        "/api/v1/topics".to_string(),
        "/metrics".to_string(),
    ] {
        seen.push(call("GET", &path, ""));
    }
    assert!(sigterm(&mut child).success());
    let logs = logs.join().unwrap();
    assert!(
        logs.iter().any(|l| l.contains("baton::access")),
        "debug and access logs on"
    );
    let mut files = Vec::new();
    every_file(&data, &mut files);
    assert!(
        files.len() >= 4,
        "{:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for secret in [
        "planted-ADMIN-55e0",
        "planted-ENV-91c2",
        "planted-HEADER-7f3a",
    ] {
        for answer in &seen {
            assert!(!answer.contains(secret), "{secret} in an answer: {answer}");
        }
        for line in &logs {
            assert!(!line.contains(secret), "{secret} in the log: {line}");
        }
        for (path, bytes) in &files {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} in {}",
                path.display()
            );
        }
    }
}

/// A run resumed after a restart takes the operator's agents, secrets
/// included, from the config again (its stored document holds `***`): the
/// task after the restart still gets the secret.
#[test]
fn a_resumed_run_gets_the_operators_secrets_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("baton.toml");
    std::fs::write(
        &config,
        r#"[agents.check]
type = "command"
command = ["sh", "-c", "cat > /dev/null; [ \"${KEY#planted-}\" = 2b7d ] && echo '{\"checked\": true}'"]
env = { KEY = "env:PLANTED_KEY" }
"#,
    )
    .unwrap();
    let start = || {
        let (child, addr, _, lines) = until_listening(
            Command::new(env!("CARGO_BIN_EXE_baton"))
                .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
                .arg(&data)
                .arg("--config")
                .arg(&config)
                .env("PLANTED_KEY", "planted-2b7d"),
        );
        std::thread::spawn(move || for _ in lines {});
        (child, addr)
    };
    let body_of = |answer: &str| {
        let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
        serde_json::from_str::<serde_json::Value>(body).unwrap()
    };
    let (mut child, addr) = start();
    let flow = r#"{"agents": {"check": {"type": "noop"}, "gate": {"type": "noop"}},
      "tasks": [{"id": "wait", "agent": "gate", "wait_for": {"type": "go"}},
                {"id": "a", "agent": "check", "depends_on": ["wait"]}]}"#;
    let id = body_of(&request(&addr, "POST", "/api/v1/workflows", flow))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let started = request(
        &addr,
        "POST",
        &format!("/api/v1/workflows/{id}/execute"),
        "{}",
    );
    let run = body_of(&started)["execution_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Accepted means recorded: the run is in the journal before the answer.
    assert!(sigterm(&mut child).success());
    let journal = std::fs::read(data.join("state/journal.log")).unwrap();
    assert!(!journal.windows(12).any(|w| w == b"planted-2b7d"));
    let (mut child, addr) = start();
    let signal =
        format!(r#"{{"events": [{{"type": "go", "headers": {{"baton.run": "{run}"}}}}]}}"#);
    let sent = request(&addr, "POST", "/api/v1/events", &signal);
    assert!(sent.starts_with("HTTP/1.1 200"), "{sent}");
    let status = body_of(&request(
        &addr,
        "GET",
        &format!("/api/v1/executions/{run}?wait_ms=5000"),
        "",
    ));
    assert_eq!(status["status"], "completed", "{status}");
    assert!(sigterm(&mut child).success());
}
