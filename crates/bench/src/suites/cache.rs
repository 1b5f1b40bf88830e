//! `cache`: `PlanCache::get_or_compile` on validated workflows.
//!
//! * `cache/miss/<n>`: a lookup that misses: the structural key
//!   (`Key::of`), the failed `get`, `plan_checked` and the insertion.
//! * `cache/hit/<n>`: a lookup that hits: the key and the `get`. The key is
//!   most of it: it hashes every task and edge.
//! * `cache/get/<n>`: `PlanCache::get` given the key: the O(1) part.
//! * `cache/mix/*`: a deterministic Zipf(1) stream of lookups over 64
//!   distinct 100-task workflows through a 16-entry cache: the hit ratio, and
//!   time per lookup. Every hit is checked against a freshly compiled plan;
//!   a mismatch fails the suite.
//!
//! Excluded everywhere: parsing and validating (the workflows are `Checked`
//! once, outside the timing).

use baton_model::Checked;
use baton_model::Rng;
use baton_model::generate::{self, Shape};
use baton_plan::{Options, PlanCache};

use crate::{Config, Error, Record, Sink, time};

fn checked(n: usize, seed: u64) -> Checked {
    let spec = generate::Spec {
        seed,
        ..generate::Spec::new(n, Shape::Random)
    };
    baton_model::validate(generate::workflow(&spec)).expect("generated workflows are valid")
}

/// Mean seconds per call of `f` over enough calls to last `min_seconds`.
fn per_call(repeats: usize, min_seconds: f64, mut f: impl FnMut()) -> Vec<f64> {
    let ((), warm) = time(&mut f);
    let k = ((min_seconds / warm.max(1e-9)).ceil() as usize).clamp(1, 100_000);
    (0..repeats.max(1))
        .map(|_| {
            let ((), t) = time(|| (0..k).for_each(|_| f()));
            t / k as f64
        })
        .collect()
}

pub(crate) fn run(config: &Config, sink: &mut Sink<'_>) -> Result<(), Error> {
    let opts = Options::default();
    let sizes = config.pick(
        &[100, 1_000, 10_000, 100_000],
        &[100, 1_000, 10_000],
        &[100],
    );
    for n in sizes {
        let c = checked(n, 0);
        let miss = per_call(config.repeats, 0.002, || {
            let mut cache = PlanCache::new(16, 1 << 30);
            let plan = cache.get_or_compile(&c, &opts).expect("acyclic");
            std::hint::black_box(plan);
        });
        let mut cache = PlanCache::new(16, 1 << 30);
        cache.get_or_compile(&c, &opts).expect("acyclic");
        let hit = per_call(config.repeats, 0.002, || {
            std::hint::black_box(cache.get_or_compile(&c, &opts).expect("cached"));
        });
        let key = baton_plan::Key::of(&c, &opts);
        let get = per_call(config.repeats, 0.002, || {
            std::hint::black_box(cache.get(std::hint::black_box(key)).expect("cached"));
        });
        let ratio = crate::stats::median(&miss) / crate::stats::median(&hit);
        sink.push(
            Record::new(
                format!("cache/miss/{n}"),
                "PlanCache::get_or_compile missing: Key::of + get + plan_checked + insert (excludes parse/validate)",
                "s",
                false,
                miss,
            )
            .param("tasks", n),
        );
        sink.push(
            Record::new(
                format!("cache/hit/{n}"),
                "PlanCache::get_or_compile hitting: Key::of (hashes every task and edge) + get",
                "s",
                false,
                hit,
            )
            .param("tasks", n)
            .derive("miss_over_hit", ratio),
        );
        sink.push(
            Record::new(
                format!("cache/get/{n}"),
                "PlanCache::get given the key (the O(1) part of a hit: map lookup and LRU move)",
                "s",
                false,
                get,
            )
            .param("tasks", n),
        );
    }

    // The mix: Zipf(1) over 64 workflows, a 16-entry cache.
    let distinct = 64usize;
    let lookups = if config.smoke { 500 } else { 10_000 };
    let workflows: Vec<Checked> = (0..distinct).map(|s| checked(100, s as u64)).collect();
    let weights: Vec<f64> = (1..=distinct).map(|k| 1.0 / k as f64).collect();
    let total: f64 = weights.iter().sum();
    let mut rng = Rng(7);
    let stream: Vec<usize> = (0..lookups)
        .map(|_| {
            let mut u = rng.unit() * total;
            weights
                .iter()
                .position(|w| {
                    u -= w;
                    u < 0.0
                })
                .unwrap_or(distinct - 1)
        })
        .collect();
    // Correctness first, untimed: every hit equals a fresh plan.
    let mut cache = PlanCache::new(16, 1 << 30);
    let mut compared = 0u64;
    for &i in &stream {
        let was_cached = cache.contains(baton_plan::Key::of(&workflows[i], &opts));
        let plan = cache.get_or_compile(&workflows[i], &opts).expect("acyclic");
        if was_cached {
            let fresh = baton_plan::plan_checked(&workflows[i], &opts).expect("acyclic");
            if *plan != fresh {
                return Err(Error::Failed {
                    benchmark: "cache/mix".into(),
                    message: format!("the cached plan of workflow {i} differs from a fresh one"),
                });
            }
            compared += 1;
        }
    }
    let stats = cache.stats();
    let hit_ratio = stats.hits as f64 / (stats.hits + stats.misses) as f64;
    sink.note(format!(
        "cache correctness: all {compared} hits of the mix equal a freshly compiled plan"
    ));
    let mut per_lookup = Vec::new();
    for _ in 0..config.repeats.max(1) {
        let mut cache = PlanCache::new(16, 1 << 30);
        let ((), t) = time(|| {
            for &i in &stream {
                std::hint::black_box(cache.get_or_compile(&workflows[i], &opts)).expect("acyclic");
            }
        });
        per_lookup.push(t / lookups as f64);
    }
    sink.push(
        Record::new(
            "cache/mix/hit_ratio",
            "hits / lookups of a Zipf(1) stream over 64 distinct 100-task workflows through a 16-entry PlanCache (deterministic)",
            "ratio",
            true,
            vec![hit_ratio],
        )
        .param("distinct", distinct)
        .param("capacity", 16)
        .param("lookups", lookups)
        .derive("evictions", stats.evictions as f64),
    );
    sink.push(
        Record::new(
            "cache/mix/lookup",
            "mean time per get_or_compile in the Zipf mix (misses compile, hits hash): what a server planning on demand pays",
            "s",
            false,
            per_lookup,
        )
        .param("lookups", lookups),
    );
    Ok(())
}
