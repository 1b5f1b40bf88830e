//! Planner micro-benchmarks.
//!
//! * `compile/<shape>/<n>`: `Plan::compile` with default `Options` on a
//!   prebuilt graph: name interning, successor CSR, stages, critical path,
//!   timings and the budgeted transitive reduction. Excludes parsing,
//!   validation and building the graph (done once, outside the timing), and
//!   dropping the plan (criterion drops outputs outside the timed loop).
//! * `compile_exact/random/<n>`: the same with `Reduction::Unlimited`, to
//!   show what an exact transitive reduction costs on random graphs.
//! * `compile_no_reduction/<shape>/<n>`: `Reduction::Off`: the linear part alone.
//! * `cache/hit/100k`: `PlanCache::get` of a cached 100k-task plan given its
//!   key. Excludes computing the key (see `key/...`).
//! * `key/random/<n>`: `Key::of_graph`, the structural hash of a workflow.
//!
//! Shapes are those of `baton gen workflow`: `random` (each task depends on
//! about 2.5 distinct, uniformly drawn earlier tasks) and `layered` (layers
//! of ⌈√n⌉ tasks, each depending on 2 tasks of the layer before).

#![allow(
    clippy::unwrap_used,
    reason = "a benchmark that cannot set up has nothing to measure"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use baton_model::Graph;
use baton_model::generate::{self, Shape, Spec};
use baton_plan::{Key, Options, Plan, PlanCache, Reduction};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

// The allocator the `baton` binary uses: plans are measured as they are built
// in the product (with glibc's malloc every large array is a fresh mmap, so
// each iteration would also pay for faulting in zeroed pages).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The graph of the workflow `baton gen workflow --shape SHAPE --tasks N
/// --seed 42` makes, with varied weights so that the critical path is not a
/// tie everywhere.
fn generated(n: usize, shape: Shape) -> Graph {
    let spec = Spec {
        seed: 42,
        ..Spec::new(n, shape)
    };
    let checked =
        baton_model::validate(generate::workflow(&spec)).expect("generated workflows are valid");
    let mut graph = checked.graph;
    graph.weights = (0..n as u64)
        .map(|i| 1_000 + (i * 7919) % 100_000)
        .collect();
    graph
}

fn random(n: usize) -> Graph {
    generated(n, Shape::Random)
}

fn layered(n: usize) -> Graph {
    generated(n, Shape::Layered)
}

fn task_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("task-{i}")).collect()
}

const SIZES: [(usize, &str); 4] = [
    (1_000, "1k"),
    (10_000, "10k"),
    (100_000, "100k"),
    (1_000_000, "1M"),
];

fn bench_compile(c: &mut Criterion) {
    type Build = fn(usize) -> Graph;
    let off = Options {
        reduction: Reduction::Off,
        ..Options::default()
    };
    for (shape, make) in [("random", random as Build), ("layered", layered as Build)] {
        for (what, options) in [
            ("compile", Options::default()),
            ("compile_no_reduction", off),
        ] {
            let mut group = c.benchmark_group(format!("{what}/{shape}"));
            for (n, label) in SIZES {
                let g = make(n);
                let names = task_names(n);
                group.throughput(Throughput::Elements(n as u64));
                if n >= 100_000 {
                    group.sample_size(10);
                }
                group.bench_function(BenchmarkId::from_parameter(label), |b| {
                    b.iter(|| {
                        Plan::compile(black_box(&g), names.iter().map(String::as_str), &options)
                            .unwrap()
                    })
                });
            }
            group.finish();
        }
    }
    let mut group = c.benchmark_group("compile_exact/random");
    let exact = Options {
        reduction: Reduction::Unlimited,
        ..Options::default()
    };
    for (n, label) in &SIZES[..3] {
        let g = random(*n);
        let names = task_names(*n);
        group.sample_size(10);
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| {
                Plan::compile(black_box(&g), names.iter().map(String::as_str), &exact).unwrap()
            })
        });
    }
    group.finish();
}

fn bench_cache(c: &mut Criterion) {
    let n = 100_000;
    let g = random(n);
    let names = task_names(n);
    let opts = Options::default();
    let key = Key::of_graph(&g, names.iter().map(String::as_str), &opts);
    let plan = Arc::new(Plan::compile(&g, names.iter().map(String::as_str), &opts).unwrap());
    let mut cache = PlanCache::new(64, 1 << 30);
    // Other entries, so the hit also moves the entry within a real list.
    for k in 0..32u128 {
        cache.insert(Key(k), plan.clone());
    }
    cache.insert(key, plan);
    c.bench_function("cache/hit/100k", |b| {
        b.iter(|| cache.get(black_box(key)).unwrap())
    });

    let mut group = c.benchmark_group("key/random");
    for (n, label) in &SIZES[..3] {
        let g = random(*n);
        let names = task_names(*n);
        group.throughput(Throughput::Elements(*n as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| Key::of_graph(black_box(&g), names.iter().map(String::as_str), &opts))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = bench_compile, bench_cache
}
criterion_main!(benches);
