//! `scaling`: how cost grows with size, as power-law fits.
//!
//! A least-squares fit of log(y) on log(x) over the medians: planning time
//! (the `planning` suite's `total`, random shape) vs tasks; engine makespan
//! vs tasks (one run); event-log time for COUNT events vs COUNT (memory);
//! throughput vs producers (memory, P producers and P consumers). The
//! verdict is "linear" when the slope is within 0.9–1.1 and R² ≥ 0.99, and is
//! always stated with the numbers. For producers, slope 1 would be perfect
//! scaling; on a 2-core machine expect far less.

use baton_model::generate::Shape;

use crate::suites::{coordination, events, planning};
use crate::{Config, Error, Record, Sink};

pub(crate) fn run(config: &Config, sink: &mut Sink<'_>) -> Result<(), Error> {
    // Planning.
    let sizes = config.pick(
        &[1_000, 3_000, 10_000, 30_000, 100_000, 300_000, 1_000_000],
        &[1_000, 4_000, 16_000, 64_000],
        &[100, 400, 1_600],
    );
    let mut points = Vec::new();
    for &n in &sizes {
        let w = planning::generated(Shape::Random, n);
        let name = format!("scaling/planning/random/{n}");
        let (samples, iterations) = planning::measure(&name, &w, config.repeats)?;
        let r = Record::new(
            format!("{name}/per_task"),
            "planning total (bytes → load → plan_checked) divided by the task count",
            "s",
            false,
            samples.iter().map(|p| p.total / n as f64).collect(),
        )
        .param("tasks", n)
        .param("iterations_per_sample", iterations);
        points.push((n as f64, r.statistics.median * n as f64));
        sink.push(r);
    }
    sink.fit("planning/random: total time vs tasks", &points);

    // Engine: one run.
    let rt = events::runtime();
    let mut points = Vec::new();
    for n in config.pick(
        &[1_000, 10_000, 100_000, 1_000_000],
        &[1_000, 10_000, 100_000],
        &[100, 1_000],
    ) {
        let spec = coordination::spec(n);
        let name = format!("scaling/engine/random/{n}");
        let samples = coordination::measure(&rt, &name, &spec, 1, config.repeats)?;
        let r = Record::new(
            format!("{name}/per_task"),
            "one run's makespan (Summary, noop agents) divided by the task count",
            "s",
            false,
            samples
                .iter()
                .map(|s| s.summaries[0].makespan_ms / 1e3 / n as f64)
                .collect(),
        )
        .param("tasks", n);
        points.push((n as f64, r.statistics.median * n as f64));
        sink.push(r);
    }
    sink.fit("engine/random: makespan vs tasks", &points);

    // Events vs count.
    let mut points = Vec::new();
    for count in config.pick(
        &[10_000, 100_000, 1_000_000, 10_000_000],
        &[10_000, 100_000, 1_000_000],
        &[1_000, 10_000],
    ) {
        let sc = events::Scenario {
            backend: events::Backend::Memory,
            producers: 1,
            consumers: 1,
            batch: 1_000,
            count,
            payload: 100,
            dedup: true,
        };
        let name = format!("scaling/events/memory/{count}");
        let (rates, _) = events::measure(&rt, &name, sc, config.repeats)?;
        let times: Vec<f64> = rates.iter().map(|r| count as f64 / r).collect();
        let r = Record::new(
            format!("{name}/time"),
            "publish → poll → ack of COUNT events through MemoryLog, 1 producer, 1 consumer, batches of 1,000",
            "s",
            false,
            times,
        )
        .param("count", count);
        points.push((count as f64, r.statistics.median));
        sink.push(r);
    }
    sink.fit("events/memory: time vs events", &points);

    // Throughput vs producers.
    let count = config.pick(&[1_000_000], &[200_000], &[2_000])[0];
    let mut points = Vec::new();
    for p in config.pick(&[1, 2, 4, 8], &[1, 2, 4], &[1, 2]) {
        let sc = events::Scenario {
            backend: events::Backend::Memory,
            producers: p,
            consumers: p,
            batch: 1_000,
            count,
            payload: 100,
            dedup: true,
        };
        let name = format!("scaling/events/memory/producers/{p}");
        let (rates, _) = events::measure(&rt, &name, sc, config.repeats)?;
        let r = Record::new(
            format!("{name}/throughput"),
            "events/s through MemoryLog with P producers and a P-member group",
            "events/s",
            true,
            rates,
        )
        .param("producers", p)
        .param("count", count);
        points.push((p as f64, r.statistics.median));
        sink.push(r);
    }
    sink.fit("events/memory: throughput vs producers", &points);
    Ok(())
}
