//! `coordination`: the engine's own accounting of what scheduling costs.
//!
//! Each sample builds a fresh `baton_engine::Engine` on a `MemoryLog` (every
//! transition published, as `baton run --in-memory` does), with `noop`
//! agents, and runs random workflows (about 2.5 dependencies per task):
//!
//! * `coordination/single/<n>/*`: one run of n tasks. `makespan` and
//!   `overhead` come from the run's `Summary` (`makespan − critical-path
//!   agent time`: with `noop` agents almost all of the makespan is
//!   coordination); `wall` is submit → `wait` returning.
//! * `coordination/concurrent/<r>x100/*`: r runs of 100 tasks submitted at
//!   once; `wall` from the first submit to the last run's end.
//!
//! * `coordination/durable/<n>/transitions`: one run with the embedded
//!   state store in a fresh temporary directory (fsync on): transitions/s.
//! * `coordination/postgres/<n>/transitions`: the same with the PostgreSQL
//!   state store (feature `postgres`), when `BATON_BENCH_POSTGRES_URL` names a
//!   database: each sample in a fresh schema, dropped after it; batched
//!   transactions, committed with the server's own durability settings.
//!
//! Latencies (`dispatch`: ready → dispatched, `release`: finished →
//! successors ready) are the engine's HDR histograms (`Handle::stats`), p50,
//! p99 and max per sample. Not timed: generating, validating and planning.
//! Fan-outs, routes, loops and child runs: `coordination/dynamic/*`
//! ([`super::dynamic`], run with this suite).

use std::sync::Arc;
use std::time::Instant;

use baton_engine::store::{Embedded, StateStore};
use baton_engine::{Engine, Options, Spec, Summary};
use baton_events::MemoryLog;
use baton_model::generate::{self, Shape};

use crate::{Config, Error, Record, Sink};

/// A runnable spec of an n-task random workflow.
pub(crate) fn spec(tasks: usize) -> Arc<Spec> {
    let workflow = generate::workflow(&generate::Spec::new(tasks, Shape::Random));
    let checked = baton_model::validate(workflow).expect("generated workflows are valid");
    let plan = baton_plan::plan_checked(&checked, &Default::default()).expect("acyclic");
    Arc::new(Spec::new(checked, Arc::new(plan), 1).expect("runnable"))
}

/// One sample's figures.
pub(crate) struct Sample {
    pub wall: f64,
    pub summaries: Vec<Arc<Summary>>,
    pub stats: baton_engine::Stats,
    /// Peak resident set during the sample minus the resident set before it.
    pub peak_growth: u64,
}

/// Runs `runs` runs of `spec` at once on a fresh default engine.
pub(crate) fn sample(
    rt: &tokio::runtime::Runtime,
    spec: &Arc<Spec>,
    runs: usize,
    durable: bool,
) -> Result<Sample, String> {
    sample_with(rt, spec, runs, durable, &Options::default())
}

/// [`sample`] on an engine built with `options`.
pub(crate) fn sample_with(
    rt: &tokio::runtime::Runtime,
    spec: &Arc<Spec>,
    runs: usize,
    durable: bool,
    options: &Options,
) -> Result<Sample, String> {
    // A fresh directory per sample: the store replays what it holds at open.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let store = if durable {
        Some(Embedded::open(dir.path(), Default::default()).map_err(|e| e.to_string())?)
    } else {
        None
    };
    sample_on(rt, spec, runs, store, options)
}

/// Runs `runs` runs of `spec` at once on a fresh engine over `store`; every
/// run must complete.
pub(crate) fn sample_on<S: StateStore>(
    rt: &tokio::runtime::Runtime,
    spec: &Arc<Spec>,
    runs: usize,
    store: Option<S>,
    options: &Options,
) -> Result<Sample, String> {
    rt.block_on(async {
        let log = Arc::new(MemoryLog::new(Default::default()).map_err(|e| e.to_string())?);
        let (engine, handle) =
            Engine::build(options.clone(), log, store.map(Arc::new)).map_err(|e| e.to_string())?;
        let task = tokio::spawn(engine.run());
        crate::env::reset_peak_rss();
        let before = crate::env::rss_bytes();
        let started = Instant::now();
        let mut submits = tokio::task::JoinSet::new();
        for i in 0..runs {
            let (handle, spec) = (handle.clone(), spec.clone());
            submits.spawn(async move { (i, handle.submit(spec, serde_json::Value::Null).await) });
        }
        let mut ids = vec![None; runs];
        while let Some(done) = submits.join_next().await {
            let (i, id) = done.map_err(|e| e.to_string())?;
            ids[i] = Some(id.map_err(|e| e.to_string())?);
        }
        let mut summaries = Vec::with_capacity(runs);
        for id in ids.into_iter().flatten() {
            let s = handle.wait(id).await.map_err(|e| e.to_string())?;
            if s.status != baton_engine::store::RunStatus::Completed {
                return Err(format!(
                    "run ended {} ({:?}): {:?}",
                    s.status, s.reason, s.tasks
                ));
            }
            summaries.push(s);
        }
        let wall = started.elapsed().as_secs_f64();
        let peak_growth = crate::env::peak_rss_bytes().saturating_sub(before);
        let stats = handle.stats().await.map_err(|e| e.to_string())?;
        handle.shutdown().await.map_err(|e| e.to_string())?;
        task.await.map_err(|e| e.to_string())?;
        Ok(Sample {
            wall,
            summaries,
            stats,
            peak_growth,
        })
    })
}

/// Warm-up and `repeats` samples.
pub(crate) fn measure(
    rt: &tokio::runtime::Runtime,
    name: &str,
    spec: &Arc<Spec>,
    runs: usize,
    repeats: usize,
) -> Result<Vec<Sample>, Error> {
    measure_with(rt, name, spec, runs, repeats, false, &Options::default())
}

/// [`measure`], optionally with the embedded state store (fsync on), on
/// engines built with `options`.
pub(crate) fn measure_with(
    rt: &tokio::runtime::Runtime,
    name: &str,
    spec: &Arc<Spec>,
    runs: usize,
    repeats: usize,
    durable: bool,
    options: &Options,
) -> Result<Vec<Sample>, Error> {
    let failed = |message| Error::Failed {
        benchmark: name.to_string(),
        message,
    };
    sample_with(rt, spec, runs, durable, options).map_err(failed)?;
    (0..repeats.max(1))
        .map(|_| sample_with(rt, spec, runs, durable, options).map_err(failed))
        .collect()
}

fn latency(prefix: &str, samples: &[Sample], sink: &mut Sink<'_>, params: &[(&str, usize)]) {
    for (what, description) in [
        (
            "dispatch",
            "ready → dispatched, the engine's HDR histogram over every task of the sample",
        ),
        (
            "release",
            "finished → successors ready, the engine's HDR histogram over every task of the sample",
        ),
    ] {
        for label in ["p50", "p99", "max"] {
            let values: Vec<f64> = samples
                .iter()
                .map(|s| {
                    let p = if what == "dispatch" {
                        s.stats.dispatch_latency
                    } else {
                        s.stats.release_latency
                    };
                    match label {
                        "p50" => p.p50_us,
                        "p99" => p.p99_us,
                        _ => p.max_us,
                    }
                })
                .collect();
            let mut r = Record::new(
                format!("{prefix}/{what}_{label}"),
                description,
                "us",
                false,
                values,
            );
            for (k, v) in params {
                r = r.param(k, *v);
            }
            sink.push(r);
        }
    }
}

pub(crate) fn run(config: &Config, sink: &mut Sink<'_>) -> Result<(), Error> {
    let rt = crate::suites::events::runtime();
    for n in config.pick(
        &[1_000, 10_000, 100_000, 1_000_000],
        &[1_000, 10_000],
        &[1_000],
    ) {
        let spec = spec(n);
        let prefix = format!("coordination/single/{n}");
        let samples = measure(&rt, &prefix, &spec, 1, config.repeats)?;
        let one = |f: fn(&Summary) -> f64| {
            samples
                .iter()
                .map(|s| f(&s.summaries[0]))
                .collect::<Vec<f64>>()
        };
        sink.push(
            Record::new(
                format!("{prefix}/makespan"),
                "the run's makespan from its Summary: start to the last task's end (noop agents, every transition published to a MemoryLog)",
                "s",
                false,
                one(|s| s.makespan_ms / 1e3),
            )
            .param("tasks", n)
            .derive("tasks_per_s", n as f64 / crate::stats::median(&one(|s| s.makespan_ms / 1e3))),
        );
        sink.push(
            Record::new(
                format!("{prefix}/overhead"),
                "Summary::coordination_overhead_ms: makespan minus the agent time summed along the critical path as run",
                "s",
                false,
                one(|s| s.coordination_overhead_ms / 1e3),
            )
            .param("tasks", n)
            .derive("critical_path_agent_s", crate::stats::median(&one(|s| s.critical_path_agent_ms / 1e3)))
            .derive("critical_path_tasks", samples[0].summaries[0].critical_path.len() as f64),
        );
        sink.push(
            Record::new(
                format!("{prefix}/wall"),
                "submit → wait returning: what a caller of Handle waits for",
                "s",
                false,
                samples.iter().map(|s| s.wall).collect(),
            )
            .param("tasks", n)
            .derive(
                "transitions_per_s",
                samples[0].stats.transitions as f64 / samples[0].wall,
            ),
        );
        latency(&prefix, &samples, sink, &[("tasks", n)]);
    }
    for n in config.pick(&[1_000_000], &[100_000], &[1_000]) {
        let spec = spec(n);
        let prefix = format!("coordination/durable/{n}");
        let samples = measure_with(
            &rt,
            &prefix,
            &spec,
            1,
            config.repeats,
            true,
            &Options::default(),
        )?;
        sink.push(
            Record::new(
                format!("{prefix}/transitions"),
                "task transitions per second of one run with the embedded state store (group commit, fdatasync), submit → wait",
                "transitions/s",
                true,
                samples
                    .iter()
                    .map(|s| s.stats.transitions as f64 / s.wall)
                    .collect(),
            )
            .param("tasks", n),
        );
    }
    #[cfg(feature = "postgres")]
    if let Some(url) = std::env::var("BATON_BENCH_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    {
        for n in config.pick(&[100_000], &[20_000], &[1_000]) {
            let spec = spec(n);
            let prefix = format!("coordination/postgres/{n}");
            let failed = |message| Error::Failed {
                benchmark: prefix.clone(),
                message,
            };
            postgres::sample(&rt, &url, &spec).map_err(failed)?;
            let samples = (0..config.repeats.max(1))
                .map(|_| postgres::sample(&rt, &url, &spec).map_err(failed))
                .collect::<Result<Vec<_>, _>>()?;
            sink.push(
                Record::new(
                    format!("{prefix}/transitions"),
                    "task transitions per second of one run with the PostgreSQL state store (batched transactions), submit → wait",
                    "transitions/s",
                    true,
                    samples
                        .iter()
                        .map(|s| s.stats.transitions as f64 / s.wall)
                        .collect(),
                )
                .param("tasks", n),
            );
        }
    }
    let spec100 = spec(100);
    for runs in config.pick(&[1, 10, 100, 1_000, 10_000], &[1, 100, 1_000], &[10]) {
        let prefix = format!("coordination/concurrent/{runs}x100");
        let samples = measure(&rt, &prefix, &spec100, runs, config.repeats)?;
        let walls: Vec<f64> = samples.iter().map(|s| s.wall).collect();
        let tasks = runs * 100;
        sink.push(
            Record::new(
                format!("{prefix}/wall"),
                "R runs of 100 tasks submitted at once: first submit to the last run's end",
                "s",
                false,
                walls.clone(),
            )
            .param("runs", runs)
            .param("tasks_per_run", 100)
            .derive("tasks_per_s", tasks as f64 / crate::stats::median(&walls)),
        );
        sink.push(
            Record::new(
                format!("{prefix}/overhead_max"),
                "the largest Summary::coordination_overhead_ms among the sample's runs (admission queueing excluded: see queue_max)",
                "s",
                false,
                samples
                    .iter()
                    .map(|s| s.summaries.iter().map(|x| x.coordination_overhead_ms / 1e3).fold(0.0, f64::max))
                    .collect(),
            )
            .param("runs", runs)
            .derive(
                "queue_max_s",
                samples
                    .iter()
                    .map(|s| s.summaries.iter().map(|x| x.queue_ms / 1e3).fold(0.0, f64::max))
                    .fold(0.0, f64::max),
            ),
        );
        latency(
            &prefix,
            &samples,
            sink,
            &[("runs", runs), ("tasks_per_run", 100)],
        );
    }
    Ok(())
}

/// The PostgreSQL case: a fresh schema per sample, dropped after it.
#[cfg(feature = "postgres")]
mod postgres {
    use std::sync::Arc;

    use baton_engine::Spec;
    use baton_engine::store::{Postgres, PostgresOptions};

    use super::Sample;

    pub(super) fn sample(
        rt: &tokio::runtime::Runtime,
        url: &str,
        spec: &Arc<Spec>,
    ) -> Result<Sample, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let schema = format!("baton_bench_{}_{nanos}", std::process::id());
        let options = PostgresOptions {
            schema: schema.clone(),
            instance_name: "bench".into(),
            ..PostgresOptions::new(url)
        };
        let store = rt
            .block_on(Postgres::open(options.clone()))
            .map_err(|e| e.to_string())?;
        let sampled = super::sample_on(rt, spec, 1, Some(store), &Default::default());
        // The engine closed the store: drop the schema on a connection of its own.
        let dropped = rt.block_on(async {
            use sqlx::Connection as _;
            let mut conn = sqlx::PgConnection::connect(url).await?;
            let sql = format!("DROP SCHEMA \"{schema}\" CASCADE");
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            conn.close().await
        });
        if let Err(e) = dropped {
            eprintln!("warning: cannot drop the benchmark's schema {schema}: {e}");
        }
        sampled
    }
}
