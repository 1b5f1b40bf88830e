//! Retries with backoff, timeouts and circuit breakers, under paused time.

use std::time::Duration;

use baton_engine::store::{RunStatus, TaskStatus};
use serde_json::Value;
use tokio::time::Instant;

use crate::{spec, start};

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_then_fail_the_run() {
    let (engine, _log) = start();
    let spec = spec(
        r#"
agents: { flaky: { type: simulate, failure_rate: 1.0, breaker: { window: 100, min_calls: 100 } } }
tasks:
  - id: t
    agent: flaky
    retry: { max_attempts: 4, backoff: { initial: 1s, multiplier: 2, max: 3s, jitter: 0 } }
"#,
    );
    let began = Instant::now();
    let run = engine.submit(spec, Value::Null).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    // 1 s, then 2 s, then 3 s (capped) between the four attempts.
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(6) && waited < Duration::from_millis(6100),
        "{waited:?}"
    );
    assert_eq!(summary.status, RunStatus::Failed);
    assert_eq!(summary.retries, 3);
    assert_eq!(summary.tasks.failed, 1);
    let reason = summary.reason.as_deref().unwrap();
    assert!(
        reason.contains("task `t` failed after 4 attempts"),
        "{reason}"
    );
    let view = engine.status(run).await.unwrap();
    assert_eq!(view.task_states[0].attempt, 4);
    assert!(
        view.task_states[0]
            .error
            .as_deref()
            .unwrap()
            .contains("simulated failure")
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_fails_the_attempt_and_the_retry_runs_again() {
    let (engine, _log) = start();
    let spec = spec(
        r#"
agents: { slow: { type: simulate, latency: 10s } }
tasks:
  - { id: t, agent: slow, timeout: 1s, retry: { max_attempts: 2, backoff: { initial: 100ms, jitter: 0 } } }
"#,
    );
    let began = Instant::now();
    let run = engine.submit(spec, Value::Null).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    assert!(
        summary
            .reason
            .as_deref()
            .unwrap()
            .contains("timed out after 1s")
    );
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_millis(2100) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_breaker_reroutes_to_another_capable_agent() {
    let (engine, _log) = start();
    let spec = spec(
        r#"
agents:
  flaky: { type: simulate, failure_rate: 1.0, capabilities: [x], breaker: { window: 2, min_calls: 2, failure_rate: 0.5, cooldown: 1m } }
  steady: { type: simulate, capabilities: [x] }
tasks:
  - { id: a, requires: [x], retry: { max_attempts: 3, backoff: { initial: 10ms } } }
  - { id: b, requires: [x], retry: { max_attempts: 3, backoff: { initial: 10ms } } }
  - { id: c, requires: [x], retry: { max_attempts: 3, backoff: { initial: 10ms } } }
  - { id: d, requires: [x], retry: { max_attempts: 3, backoff: { initial: 10ms } } }
"#,
    );
    let run = engine.submit(spec, Value::Null).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Completed, "{summary:?}");
    let stats = engine.stats().await.unwrap();
    let flaky = stats.agents.iter().find(|a| a.name == "flaky").unwrap();
    let steady = stats.agents.iter().find(|a| a.name == "steady").unwrap();
    // Two failures opened the breaker; every later call went to `steady`.
    assert_eq!((flaky.calls, flaky.failures, flaky.breaker), (2, 2, "open"));
    assert_eq!(steady.calls, 4);
    assert_eq!(summary.retries, 2);
}

#[tokio::test(start_paused = true)]
async fn with_every_breaker_open_calls_fail_fast_until_the_half_open_probe() {
    let (engine, _log) = start();
    let spec = spec(
        r#"
agents:
  flaky: { type: simulate, failure_rate: 1.0, breaker: { window: 1, min_calls: 1, cooldown: 5s } }
tasks:
  - { id: a, agent: flaky, retry: { max_attempts: 3, backoff: { initial: 1s, multiplier: 1, jitter: 0 } } }
"#,
    );
    let run = engine.submit(spec, Value::Null).await.unwrap();
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.status, RunStatus::Failed);
    // Attempt 1 reached the agent and opened the breaker; attempts 2 and 3 came
    // within the 5 s cooldown and failed without a call.
    let stats = engine.stats().await.unwrap();
    assert_eq!(stats.agents[0].calls, 1);
    assert!(
        summary
            .reason
            .as_deref()
            .unwrap()
            .contains("circuit breaker open for flaky")
    );
}

#[tokio::test(start_paused = true)]
async fn concurrency_limits_hold_and_waiting_tasks_run_when_a_slot_frees() {
    let (engine, _log) = start();
    let mut yaml =
        String::from("agents: { one: { type: simulate, latency: 1s, concurrency: 2 } }\ntasks:\n");
    for i in 0..6 {
        yaml.push_str(&format!("  - {{ id: t{i}, agent: one }}\n"));
    }
    let began = Instant::now();
    let run = engine.submit(spec(&yaml), Value::Null).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = engine.stats().await.unwrap();
    assert_eq!(stats.agents[0].in_flight, 2);
    let summary = engine.wait(run).await.unwrap();
    assert_eq!(summary.tasks.succeeded, 6);
    // Six one-second tasks, two at a time.
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_millis(3100),
        "{waited:?}"
    );
    let view = engine.status(run).await.unwrap();
    assert!(
        view.task_states
            .iter()
            .all(|t| t.status == TaskStatus::Succeeded)
    );
}
