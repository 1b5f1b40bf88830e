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
//! Shapes: `random` (each task depends on 0 to 5, mean 2.5, distinct
//! earlier tasks, uniformly drawn) and `layered` (layers of 100 tasks, each
//! depending on 1 to 4 tasks of the layer before).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use baton_model::Graph;
use baton_plan::{Key, Options, Plan, PlanCache, Reduction};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// SplitMix64: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn graph(n: usize, mut deps_of: impl FnMut(usize, &mut Rng, &mut Vec<u32>)) -> Graph {
    let mut rng = Rng(42);
    let mut offsets = Vec::with_capacity(n + 1);
    let mut preds = Vec::with_capacity(n * 5 / 2);
    let mut deps = Vec::new();
    offsets.push(0u32);
    for v in 0..n {
        deps.clear();
        deps_of(v, &mut rng, &mut deps);
        preds.extend_from_slice(&deps);
        offsets.push(preds.len() as u32);
    }
    Graph {
        pred_offsets: offsets,
        preds,
        weights: (0..n as u64)
            .map(|i| 1_000 + (i * 7919) % 100_000)
            .collect(),
        handler: vec![false; n],
    }
}

fn pick_distinct(rng: &mut Rng, from: u64, span: u64, count: u64, out: &mut Vec<u32>) {
    let count = count.min(span);
    while (out.len() as u64) < count {
        let d = (from + rng.below(span)) as u32;
        if !out.contains(&d) {
            out.push(d);
        }
    }
}

fn random(n: usize) -> Graph {
    graph(n, |v, rng, out| {
        let k = rng.below(6);
        pick_distinct(rng, 0, v as u64, k, out);
    })
}

fn layered(n: usize) -> Graph {
    const WIDTH: usize = 100;
    graph(n, |v, rng, out| {
        let layer = v / WIDTH;
        if layer > 0 {
            let k = 1 + rng.below(4);
            pick_distinct(rng, ((layer - 1) * WIDTH) as u64, WIDTH as u64, k, out);
        }
    })
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
    type Shape = fn(usize) -> Graph;
    for (shape, make) in [("random", random as Shape), ("layered", layered as Shape)] {
        let mut group = c.benchmark_group(format!("compile/{shape}"));
        for (n, label) in SIZES {
            let g = make(n);
            let names = task_names(n);
            group.throughput(Throughput::Elements(n as u64));
            if n >= 100_000 {
                group.sample_size(10);
            }
            group.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| {
                    Plan::compile(
                        black_box(&g),
                        names.iter().map(String::as_str),
                        &Options::default(),
                    )
                    .unwrap()
                })
            });
        }
        group.finish();
        let mut group = c.benchmark_group(format!("compile_no_reduction/{shape}"));
        let off = Options {
            reduction: Reduction::Off,
            ..Options::default()
        };
        for (n, label) in SIZES {
            let g = make(n);
            let names = task_names(n);
            group.throughput(Throughput::Elements(n as u64));
            if n >= 100_000 {
                group.sample_size(10);
            }
            group.bench_function(BenchmarkId::from_parameter(label), |b| {
                b.iter(|| {
                    Plan::compile(black_box(&g), names.iter().map(String::as_str), &off).unwrap()
                })
            });
        }
        group.finish();
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
