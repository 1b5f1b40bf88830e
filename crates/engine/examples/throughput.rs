//! Engine throughput and coordination latency, with `noop` agents.
//!
//! ```text
//! cargo run --release -p baton-engine --example throughput -- single 1000000
//! cargo run --release -p baton-engine --example throughput -- concurrent 10000 100
//! cargo run --release -p baton-engine --example throughput -- durable 1000000 DIR
//! ```
//!
//! `single N`: one run of an N-task random workflow (≈ 2.5 dependencies per task).
//! `concurrent R T`: R runs of a T-task random workflow, submitted at once.
//! `durable N DIR`: like `single`, with the embedded state store in DIR (fsync on).
//!
//! Timed: from the first submit to the last run's end (every transition recorded
//! and published). Not timed: generating, validating and planning the workflow.
//! Memory: resident set growth while the runs are alive, per task and per run.

#![allow(clippy::unwrap_used, reason = "an example stops at the first failure")]

use std::sync::Arc;
use std::time::Instant;

use baton_engine::store::Embedded;
use baton_engine::{Engine, Handle, Options, Spec};
use baton_events::MemoryLog;
use baton_model::generate::{self, Shape};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

fn spec(tasks: usize) -> Arc<Spec> {
    let workflow = generate::workflow(&generate::Spec::new(tasks, Shape::Random));
    let checked = baton_model::validate(workflow).expect("generated workflows are valid");
    let plan = baton_plan::plan_checked(&checked, &Default::default()).expect("acyclic");
    Arc::new(Spec::new(checked, Arc::new(plan), 1).expect("runnable"))
}

async fn measure(handle: &Handle, spec: Arc<Spec>, runs: usize) {
    let before = rss_bytes();
    let started = Instant::now();
    // Every run is submitted at once (not one round trip after another), so they
    // are all alive together.
    let mut submits = tokio::task::JoinSet::new();
    for i in 0..runs {
        let (handle, spec) = (handle.clone(), spec.clone());
        submits.spawn(async move {
            (
                i,
                handle.submit(spec, serde_json::Value::Null).await.unwrap(),
            )
        });
    }
    let mut ids = vec![baton_engine::store::RunId(0); runs];
    while let Some(done) = submits.join_next().await {
        let (i, id) = done.unwrap();
        ids[i] = id;
    }
    let submitted = started.elapsed();
    let mut peak_queue = 0.0f64;
    for id in &ids {
        let s = handle.wait(*id).await.unwrap();
        assert_eq!(s.tasks.succeeded, u64::from(spec.planned()), "{s:?}");
        peak_queue = peak_queue.max(s.queue_ms);
    }
    let elapsed = started.elapsed();
    let after = rss_bytes();
    let stats = handle.stats().await.unwrap();
    let tasks = runs as u64 * u64::from(spec.planned());
    println!(
        "runs {runs} × {} tasks: {:.3} s (submitting {:.3} s), {:.2} M tasks/s, {:.2} M transitions/s",
        spec.planned(),
        elapsed.as_secs_f64(),
        submitted.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64() / 1e6,
        stats.transitions as f64 / elapsed.as_secs_f64() / 1e6,
    );
    let d = stats.dispatch_latency;
    let r = stats.release_latency;
    println!(
        "ready→dispatched p50 {:.2} µs p99 {:.2} µs max {:.1} µs; finished→successors-ready p50 {:.2} µs p99 {:.2} µs; longest queue wait {:.1} ms",
        d.p50_us, d.p99_us, d.max_us, r.p50_us, r.p99_us, peak_queue
    );
    println!(
        "resident growth {:.1} MB: {:.0} bytes per task, {:.1} KB per run (runs retained after their end: {})",
        after.saturating_sub(before) as f64 / 1e6,
        after.saturating_sub(before) as f64 / tasks as f64,
        after.saturating_sub(before) as f64 / runs as f64 / 1e3,
        runs.min(Options::default().keep_finished),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(default);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
        let (mode, runs, tasks) = match args.first().map(String::as_str) {
            Some("concurrent") => ("concurrent", arg(1, 10_000), arg(2, 100)),
            Some("durable") => ("durable", 1, arg(1, 1_000_000)),
            _ => ("single", 1, arg(1, 1_000_000)),
        };
        let spec = spec(tasks);
        let store = (mode == "durable").then(|| {
            let dir = args.get(2).expect("durable N DIR");
            Arc::new(Embedded::open(std::path::Path::new(dir), Default::default()).unwrap())
        });
        let (engine, handle) = Engine::build(Options::default(), log, store).unwrap();
        let task = tokio::spawn(engine.run());
        measure(&handle, spec, runs).await;
        handle.shutdown().await.unwrap();
        task.await.unwrap();
    });
}
