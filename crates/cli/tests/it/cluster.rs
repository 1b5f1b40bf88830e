//! Three `baton serve` processes sharing PostgreSQL (state) and Redis or NATS
//! (events): 1,000 runs started across them, one instance killed with SIGKILL
//! while they run; every run must complete (the survivors take the dead
//! instance's runs over) and every event the API acknowledged must be delivered.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const RUNS: usize = 1_000;
const EVENT_BATCHES: usize = 30;
const EVENTS_PER_BATCH: usize = 50;

/// The URLs of PostgreSQL and of the event log's server (`events` names its
/// variable), or `None` (skip, said on stderr) outside CI when they are not given.
fn servers(events: &str) -> Option<(String, String)> {
    use baton_events::testing::server_url;
    let pg = server_url(
        "BATON_TEST_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    );
    let example = if events.contains("NATS") {
        "nats://127.0.0.1:4222"
    } else {
        "redis://127.0.0.1:6379"
    };
    let log = server_url(events, example);
    Some((pg?, log?))
}

/// One HTTP/1.1 request on a fresh connection: (status, body as JSON).
fn call(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, Value)> {
    let (status, body) = raw(addr, method, path, body)?;
    // Small bodies come whole; chunked ones (forwarded answers) carry a size line.
    let json = serde_json::from_str(&body).or_else(|_| {
        let start = body.find('{').unwrap_or(0);
        let end = body.rfind('}').map_or(body.len(), |e| e + 1);
        serde_json::from_str(&body[start..end])
    });
    Ok((status, json.unwrap_or(Value::Null)))
}

/// One HTTP/1.1 request on a fresh connection: (status, body as sent).
fn raw(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(15)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {out:?}")))?;
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    Ok((status, body.to_owned()))
}

struct Instance {
    child: Child,
    addr: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `baton serve` as one instance; [`Instance::ready`] waits for its address.
fn start(name: &str, data: &std::path::Path, namespace: &str, pg: &str, events: &str) -> Child {
    start_with(name, data, namespace, pg, events, &[])
}

/// [`start`] with more arguments.
fn start_with(
    name: &str,
    data: &std::path::Path,
    namespace: &str,
    pg: &str,
    events: &str,
    more: &[&std::ffi::OsStr],
) -> Child {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .args(["--events", events, "--state", pg, "--namespace", namespace])
        .args(["--instance", name, "--lease-ttl", "2"])
        .args(more)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

impl Instance {
    /// Waits until `child` says where it listens.
    fn ready(mut child: Child) -> Instance {
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut said = Vec::new();
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                _ => panic!(
                    "baton serve exited early ({:?}): {}",
                    child.wait(),
                    said.join("\n")
                ),
            };
            said.push(line.clone());
            if let Some(rest) = line
                .split("listening on http://")
                .nth(1)
                .or_else(|| line.split("listening on https://").nth(1))
            {
                break rest.split_whitespace().next().unwrap().to_string();
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Instance { child, addr }
    }
}

/// Drops the test's schema, keys and streams, whatever happened.
struct Cleanup {
    namespace: String,
    pg: String,
    events: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(&self.pg)
            .args(["-q", "-c"])
            .arg(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.namespace))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            if self.events.starts_with("nats://") {
                let options = baton_events::NatsOptions {
                    url: self.events.clone(),
                    prefix: self.namespace.replace('_', "-"),
                    ..Default::default()
                };
                if let Ok(log) = baton_events::NatsLog::open(options).await {
                    let _ = log.delete_all_topics().await;
                }
            }
        });
        if self.events.starts_with("redis://") {
            let port = self.events.rsplit(':').next().unwrap_or("6379").to_owned();
            let keys = Command::new("redis-cli")
                .args(["-p", &port, "--scan", "--pattern"])
                .arg(format!("{}*", self.namespace))
                .output();
            if let Ok(keys) = keys {
                for key in String::from_utf8_lossy(&keys.stdout).lines() {
                    let _ = Command::new("redis-cli")
                        .args(["-p", &port, "DEL", key])
                        .stdout(Stdio::null())
                        .status();
                }
            }
        }
    }
}

#[test]
fn three_instances_on_redis_share_the_work_and_survive_a_sigkill() {
    three_instances("BATON_TEST_REDIS_URL");
}

#[test]
fn three_instances_on_nats_share_the_work_and_survive_a_sigkill() {
    three_instances("BATON_TEST_NATS_URL");
}

/// The servers (see [`servers`]) and a schema and key prefix of the test's
/// own, dropped by the [`Cleanup`] whatever happens.
fn shared(events: &str) -> Option<(String, String, String, Cleanup)> {
    let (pg, events) = servers(events)?;
    let namespace = format!(
        "itc_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    let cleanup = Cleanup {
        namespace: namespace.clone(),
        pg: pg.clone(),
        events: events.clone(),
    };
    Some((pg, events, namespace, cleanup))
}

/// curl over HTTPS trusting the test CA, with `args` (exit code, output).
fn curl(args: &[&str]) -> (Option<i32>, String) {
    let o = Command::new("curl")
        .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// Two instances serving HTTPS with a client CA: a call about a run that
/// one drives, made to the other, is forwarded over mTLS (the forwarding
/// instance presents its certificate and verifies its peer's); a call that
/// claims to be forwarded is refused without an instance's certificate,
/// and a certificate another CA issued ends the handshake.
#[test]
fn instances_forward_to_each_other_over_mtls() {
    let Some((pg, events, namespace, _cleanup)) = shared("BATON_TEST_REDIS_URL") else {
        return;
    };
    let certs = crate::repo().join("crates/server/tests/fixtures/mtls");
    let file = |name: &str| certs.join(name).to_str().unwrap().to_string();
    let (ca, cert, key) = (file("ca.pem"), file("instance.pem"), file("instance.key"));
    let flags = [
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--tls-client-ca",
        &ca,
    ];
    let tls: Vec<&std::ffi::OsStr> = flags.iter().map(std::ffi::OsStr::new).collect();
    let dir = tempfile::tempdir().unwrap();
    let [a, b] = ["a", "b"].map(|name| {
        Instance::ready(start_with(
            name,
            &dir.path().join(name),
            &namespace,
            &pg,
            &events,
            &tls,
        ))
    });
    let url = |i: &Instance, path: &str| format!("https://{}{path}", i.addr);
    let (code, out) = curl(&[
        "--cacert",
        &ca,
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"agents": {"w": {"type": "worker"}}, "tasks": [{"id": "a", "agent": "w"}]}"#,
        &url(&a, "/api/v1/workflows"),
    ]);
    assert_eq!(code, Some(0), "{out}");
    let created: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let id = created["id"].as_str().unwrap();
    let (_, out) = curl(&[
        "--cacert",
        &ca,
        "-H",
        "content-type: application/json",
        "-d",
        "{}",
        &url(&a, &format!("/api/v1/workflows/{id}/execute")),
    ]);
    let started: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let run = started["execution_id"].as_str().unwrap();
    // Asked of b, answered by a (which drives it) through b's mTLS client.
    let status = format!("/api/v1/executions/{run}");
    let (code, out) = curl(&["--cacert", &ca, "-i", &url(&b, &status)]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.trim_end().ends_with("200"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("x-baton-forwarded"),
        "{out}"
    );
    assert!(out.contains(run), "{out}");
    // Claiming to be an instance takes an instance's certificate.
    let forged = ["-H", "x-baton-forwarded: 1"];
    let (_, out) = curl(&[&["--cacert", &ca][..], &forged, &[&url(&a, &status)]].concat());
    assert!(out.trim_end().ends_with("403"), "{out}");
    let (_, out) = curl(
        &[
            &["--cacert", &ca, "--cert", &cert, "--key", &key][..],
            &forged,
            &[&url(&a, &status)],
        ]
        .concat(),
    );
    assert!(out.trim_end().ends_with("200"), "{out}");
    // A certificate of another CA: no connection at all.
    let (code, out) = curl(&[
        "--cacert",
        &ca,
        "--cert",
        &file("stranger.pem"),
        "--key",
        &file("stranger.key"),
        &url(&a, "/healthz"),
    ]);
    assert_ne!(code, Some(0), "{out}");
    // Without a certificate, a client with a token (none here) is served.
    let (code, out) = curl(&["--cacert", &ca, &url(&b, "/healthz")]);
    assert_eq!(code, Some(0), "{out}");
}

fn three_instances(events: &str) {
    let Some((pg, events, namespace, _cleanup)) = shared(events) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // All three start at once: schema creation and registration must not race.
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let name = format!("node{i}");
            start(&name, &dir.path().join(&name), &namespace, &pg, &events)
        })
        .collect();
    let mut instances: Vec<Option<Instance>> = children
        .into_iter()
        .map(|c| Some(Instance::ready(c)))
        .collect();
    let addrs: Vec<String> = instances
        .iter()
        .map(|i| i.as_ref().unwrap().addr.clone())
        .collect();

    // One workflow, posted to one instance, runs on all (the catalog is shared).
    let workflow = json!({
        "name": "shared",
        "agents": {"sim": {"type": "simulate",
            "latency": {"distribution": "uniform", "min": "300ms", "max": "900ms"}}},
        "tasks": [
            {"id": "a", "agent": "sim"},
            {"id": "b", "agent": "sim", "depends_on": ["a"]},
            {"id": "c", "agent": "sim", "depends_on": ["a"]},
            {"id": "d", "agent": "sim", "depends_on": ["b", "c"]}
        ]
    });
    let (status, created) = call(
        &addrs[0],
        "POST",
        "/api/v1/workflows",
        &workflow.to_string(),
    )
    .unwrap();
    assert_eq!(status, 201, "{created}");
    let wf = created["id"].as_str().unwrap().to_owned();
    // The shared catalog keeps documents as written: every instance answers with
    // the same bytes, keys in the order they were posted.
    let path = format!("/api/v1/workflows/{wf}");
    let bodies: Vec<String> = addrs
        .iter()
        .map(|a| raw(a, "GET", &path, "").unwrap().1)
        .collect();
    assert!(
        bodies[0].contains(r#""document":{"name":"shared","agents":{"sim""#),
        "{}",
        bodies[0]
    );
    assert_eq!(bodies[1], bodies[0], "fetched on another instance");
    assert_eq!(bodies[2], bodies[0], "fetched on another instance");

    // 1,000 runs, round robin over the instances, from 4 client threads; events
    // published through every instance alongside.
    let started = Instant::now();
    let runs: Vec<(String, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let (addrs, wf) = (&addrs, &wf);
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    for i in (t..RUNS).step_by(4) {
                        let at = i % 3;
                        let path = format!("/api/v1/workflows/{wf}/execute");
                        let body = json!({"input_data": {"i": i}}).to_string();
                        let (status, r) = call(&addrs[at], "POST", &path, &body).unwrap();
                        assert_eq!(status, 202, "execute on instance {at}: {r}");
                        mine.push((r["execution_id"].as_str().unwrap().to_owned(), at));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut acknowledged: HashSet<String> = HashSet::new();
    for b in 0..EVENT_BATCHES {
        let events: Vec<Value> = (0..EVENTS_PER_BATCH)
            .map(|e| {
                json!({"type": "it.event", "key": format!("k{}", e % 7),
                    "payload": {"batch": b, "n": e},
                    "id": format!("{:032x}", (b * EVENTS_PER_BATCH + e + 1) as u128)})
            })
            .collect();
        let body = json!({"topic": "it.events", "events": events}).to_string();
        let (status, r) = call(&addrs[b % 3], "POST", "/api/v1/events", &body).unwrap();
        assert_eq!(status, 200, "{r}");
        for e in &events {
            acknowledged.insert(e["id"].as_str().unwrap().to_owned());
        }
    }
    eprintln!("{RUNS} runs started in {:?}", started.elapsed());

    // Kill instance 1 while its runs are in flight.
    let victim = instances[1].take().unwrap();
    let pid = victim.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .unwrap()
            .success()
    );
    drop(victim);
    let survivors = [&addrs[0], &addrs[2]];

    // Every run completes; runs of the dead instance are answered by the survivors
    // (after their takeover: 503 until then).
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut done: HashMap<String, String> = HashMap::new();
    // Runs of the killed instance asked about while their takeover was pending.
    let mut in_takeover: HashSet<String> = HashSet::new();
    let mut round = 0usize;
    while done.len() < runs.len() {
        assert!(
            Instant::now() < deadline,
            "{} of {} runs ended within 180 s",
            done.len(),
            runs.len()
        );
        for (i, (run, at)) in runs.iter().enumerate() {
            if done.contains_key(run) {
                continue;
            }
            let addr = survivors[(i + round) % 2];
            match call(addr, "GET", &format!("/api/v1/executions/{run}"), "") {
                Ok((200, v)) => {
                    let status = v["status"].as_str().unwrap_or_default().to_owned();
                    if matches!(status.as_str(), "completed" | "failed" | "cancelled") {
                        done.insert(run.clone(), status);
                    }
                }
                Ok((503, _)) if *at == 1 => {
                    in_takeover.insert(run.clone());
                }
                Ok((code, v)) => panic!("GET execution {run} on {addr}: {code} {v}"),
                Err(e) => panic!("GET execution {run} on {addr}: {e}"),
            }
        }
        round += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let not_completed: Vec<_> = done.iter().filter(|(_, s)| *s != "completed").collect();
    assert!(not_completed.is_empty(), "{not_completed:?}");
    let moved = runs.iter().filter(|(_, at)| *at == 1).count();
    eprintln!(
        "all {RUNS} runs completed in {:?} ({moved} started on the killed instance, {} of them \
         unfinished when it died)",
        started.elapsed(),
        in_takeover.len()
    );
    // The kill came mid-way: some of its runs were unfinished, and completed elsewhere.
    assert!(
        !in_takeover.is_empty(),
        "no run was in flight on the killed instance"
    );

    // Every acknowledged event is delivered to a group reading through the survivors.
    let mut delivered: HashSet<String> = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while delivered.len() < acknowledged.len() && Instant::now() < deadline {
        for addr in survivors {
            let path = "/api/v1/topics/it.events/groups/check/poll?max=500&wait_ms=100&member=t";
            let (status, polled) = call(addr, "GET", path, "").unwrap();
            assert_eq!(status, 200, "{polled}");
            let events = polled["events"].as_array().cloned().unwrap_or_default();
            if events.is_empty() {
                continue;
            }
            let offsets: Vec<Value> = events
                .iter()
                .map(|e| json!({"partition": e["partition"], "offset": e["offset"]}))
                .collect();
            for e in &events {
                delivered.insert(e["id"].as_str().unwrap().to_owned());
            }
            let body = json!({"offsets": offsets}).to_string();
            let (status, r) = call(
                addr,
                "POST",
                "/api/v1/topics/it.events/groups/check/ack",
                &body,
            )
            .unwrap();
            assert_eq!(status, 200, "{r}");
        }
    }
    let missing: Vec<_> = acknowledged.difference(&delivered).take(5).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events never delivered, e.g. {missing:?}",
        acknowledged.len() - delivered.len().min(acknowledged.len())
    );
}
