//! `baton load` end to end: a spawned server, a bounded run, the reports and
//! the exit codes.

use crate::{baton, stderr, stdout};

#[test]
fn refuses_to_run_without_a_bound() {
    let out = baton(&["load", "--spawn-server", "--users", "2"], None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("needs a bound"), "{}", stderr(&out));
}

#[test]
fn bad_thresholds_are_usage_errors() {
    let out = baton(
        &[
            "load",
            "--target",
            "http://127.0.0.1:1",
            "--iterations",
            "1",
            "--threshold",
            "p99<1",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("unknown metric `p99`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn mixed_iterations_against_a_spawned_server() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("load.json");
    let html = dir.path().join("load.html");
    let csv = dir.path().join("load");
    let out = baton(
        &[
            "load",
            "--spawn-server",
            "--scenario",
            "mixed",
            "--users",
            "3",
            "--iterations",
            "60",
            "--batch",
            "10..50",
            "--tasks",
            "5",
            "--seed",
            "7",
            "--json",
            json.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--html",
            html.to_str().unwrap(),
            "--threshold",
            "failure_rate<0.1%",
            "--threshold",
            "http_req_p99<30s",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(stderr(&out).contains("share its"), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("Aggregated"), "{table}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["iterations"], 60);
    assert_eq!(report["total"]["failures"], 0, "{report:#}");
    assert!(report["total"]["requests"].as_u64().unwrap() >= 60);
    let names: Vec<&str> = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"/api/v1/events"), "{names:?}");
    assert!(names.contains(&"/api/v1/workflows"), "{names:?}");
    assert_eq!(report["thresholds"].as_array().unwrap().len(), 2);
    let stats = std::fs::read_to_string(dir.path().join("load_stats.csv")).unwrap();
    assert!(stats.starts_with("Type,Name,Request Count,Failure Count,Median Response Time"));
    assert!(stats.lines().last().unwrap().starts_with(",Aggregated,"));
    assert!(dir.path().join("load_stats_history.csv").exists());
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg") && !page.contains("<script"));
}

#[test]
fn a_missed_threshold_exits_1_with_the_measured_value() {
    let out = baton(
        &[
            "load",
            "--spawn-server",
            "--scenario",
            "health",
            "--iterations",
            "20",
            "--threshold",
            "http_req_rate>1000000000",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let table = stdout(&out);
    assert!(table.contains("MISS http_req_rate>1000000000"), "{table}");
    assert!(table.contains("measured "), "{table}");
}

#[test]
fn the_example_scenario_file_runs() {
    let out = baton(
        &[
            "load",
            "--spawn-server",
            "--scenario",
            "loadtest/scenario.toml",
            "--users",
            "2",
            "--iterations",
            "30",
            "--threshold",
            "failures==0",
        ],
        None,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stdout(&out).contains("scenario ingest-heavy"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn no_follow_only_starts_runs() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("execute.toml");
    std::fs::write(
        &scenario,
        "name = \"execute-only\"\n[weights]\nexecute = 1\n[workflow]\ntasks = 5\n",
    )
    .unwrap();
    let json = dir.path().join("load.json");
    let out = baton(
        &[
            "load",
            "--spawn-server",
            "--scenario",
            scenario.to_str().unwrap(),
            "--users",
            "2",
            "--iterations",
            "40",
            "--no-follow",
            "--json",
            json.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let names: Vec<&str> = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"/api/v1/workflows/{id}/execute"),
        "{names:?}"
    );
    assert!(
        !names.contains(&"/api/v1/executions/{id}"),
        "runs are not followed: {names:?}"
    );
    assert_eq!(report["total"]["failures"], 0, "{report:#}");
}

#[test]
fn several_targets_share_the_users() {
    let dir = tempfile::tempdir().unwrap();
    /// Stops a server whatever the test's outcome.
    struct Stop(std::process::Child);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let (a, addr_a) = crate::serve::serve(&dir.path().join("a"));
    let _a = Stop(a);
    let (b, addr_b) = crate::serve::serve(&dir.path().join("b"));
    let _b = Stop(b);
    let targets = format!("http://{addr_a},http://{addr_b}");
    let json = dir.path().join("report.json");
    let out = baton(
        &[
            "load",
            "--target",
            &targets,
            "--scenario",
            "health",
            "--users",
            "4",
            // A duration, not an iteration count: every user works until the end,
            // however late the machine lets it start.
            "--run-time",
            "1s",
            "--json",
            json.to_str().unwrap(),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["meta"]["target"], targets.as_str());
    let reported: u64 = report["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == "/healthz")
        .map(|e| e["requests"].as_u64().unwrap())
        .sum();
    // What the servers counted: every request the report counts reached one of
    // them, and both had users (0 and 2 talk to one, 1 and 3 to the other). All
    // users start at once (no spawn rate) and run the whole second without
    // pauses: ten health checks each is a bound that holds on a loaded machine,
    // yet fails if a target is left out.
    let mut total = 0;
    for addr in [&addr_a, &addr_b] {
        let metrics = crate::serve::request(addr, "GET", "/metrics", "");
        let served: u64 = metrics
            .lines()
            .filter(|l| {
                l.starts_with("baton_http_requests_total{method=\"GET\",route=\"/healthz\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(served >= 10, "{addr} served {served} health checks");
        total += served;
    }
    // Each target got one health check before the load (is it up?), not
    // counted; a request in flight when the run time is up is abandoned, not
    // counted either (as Locust does): at most one per user.
    assert!(
        (reported + 2..=reported + 2 + 4).contains(&total),
        "the servers counted {total}, the report {reported} (2 probes, 4 users)"
    );
}

/// A target that does not answer is found before any load: exit 2 with a
/// message, not thousands of failed requests and exit 0.
#[test]
fn a_target_that_does_not_answer_exits_2_at_once() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let started = std::time::Instant::now();
    let out = baton(
        &[
            "load",
            "--target",
            &format!("http://{addr}"),
            "--run-time",
            "30s",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("does not answer"), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}
