//! Deterministic synthetic workflows, for benchmarks and for trying Baton.
//!
//! The same shape, size, parameters and seed always give the same workflow,
//! on every platform: the random numbers come from SplitMix64, defined here.

use std::fmt;
use std::str::FromStr;

use crate::Rng;
use crate::workflow::{Task, Workflow};

/// The shape of a generated workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Each task depends on the previous one.
    Chain,
    /// One root; every other task hangs below it in a tree of branching
    /// factor `degree` (a star when `degree` is 0).
    Fanout,
    /// Layers of about √n tasks; each task depends on `degree` random tasks
    /// of the layer above.
    Layered,
    /// Each task depends on about `degree` random earlier tasks (2.5 by default).
    Random,
    /// One root, n − 2 parallel tasks, one sink.
    Diamond,
    /// Every earlier task is a dependency with probability `density`: edges
    /// grow with n², like the fixed-density graphs the seed benchmarked.
    Dense,
}

impl Shape {
    /// Every shape, in documentation order.
    pub const ALL: [Shape; 6] = [
        Shape::Chain,
        Shape::Fanout,
        Shape::Layered,
        Shape::Random,
        Shape::Diamond,
        Shape::Dense,
    ];
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Shape::Chain => "chain",
            Shape::Fanout => "fanout",
            Shape::Layered => "layered",
            Shape::Random => "random",
            Shape::Diamond => "diamond",
            Shape::Dense => "dense",
        })
    }
}

impl FromStr for Shape {
    type Err = String;
    fn from_str(s: &str) -> Result<Shape, String> {
        Shape::ALL
            .into_iter()
            .find(|shape| shape.to_string() == s)
            .ok_or_else(|| {
                format!(
                    "unknown shape `{s}`: expected chain, fanout, layered, random, diamond or dense"
                )
            })
    }
}

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    /// Number of tasks (at least 1).
    pub tasks: usize,
    /// The shape.
    pub shape: Shape,
    /// Dependencies per task (random, layered) or branching factor (fanout);
    /// `None` takes the shape's default.
    pub degree: Option<f64>,
    /// Edge probability for `dense` (default 0.1).
    pub density: Option<f64>,
    /// Random seed.
    pub seed: u64,
}

impl Spec {
    /// A spec with default parameters and seed 0.
    pub fn new(tasks: usize, shape: Shape) -> Spec {
        Spec {
            tasks,
            shape,
            degree: None,
            density: None,
            seed: 0,
        }
    }
}

/// Generates a workflow. Task ids are `t0`, `t1`, ... in topological order.
pub fn workflow(spec: &Spec) -> Workflow {
    let n = spec.tasks.max(1);
    let mut rng = Rng(spec.seed ^ 0x5eed_ba70_0000_0000);
    let deps: Vec<Vec<usize>> = match spec.shape {
        Shape::Chain => (0..n)
            .map(|i| if i == 0 { vec![] } else { vec![i - 1] })
            .collect(),
        Shape::Fanout => {
            let d = spec.degree.map_or(0, |d| d.max(0.0) as usize);
            (0..n)
                .map(|i| match (i, d) {
                    (0, _) => vec![],
                    (_, 0) => vec![0],
                    _ => vec![(i - 1) / d],
                })
                .collect()
        }
        Shape::Diamond => (0..n)
            .map(|i| match i {
                0 => vec![],
                _ if i == n - 1 && n > 2 => (1..n - 1).collect(),
                _ => vec![0],
            })
            .collect(),
        Shape::Layered => {
            let width = ((n as f64).sqrt().ceil() as usize).max(1);
            let d = spec.degree.unwrap_or(2.0).max(0.0);
            (0..n)
                .map(|i| {
                    let layer = i / width;
                    if layer == 0 {
                        return vec![];
                    }
                    let above = (layer - 1) * width..layer * width;
                    pick(&mut rng, d, above.start, above.end)
                })
                .collect()
        }
        Shape::Random => {
            let d = spec.degree.unwrap_or(2.5).max(0.0);
            (0..n).map(|i| pick(&mut rng, d, 0, i)).collect()
        }
        Shape::Dense => {
            let p = spec.density.unwrap_or(0.1).clamp(0.0, 1.0);
            (0..n)
                .map(|i| (0..i).filter(|_| rng.unit() < p).collect())
                .collect()
        }
    };
    Workflow {
        tenant: None,
        name: Some(format!("{}-{}", spec.shape, n)),
        version: Some("1.0".into()),
        tasks: deps
            .into_iter()
            .enumerate()
            .map(|(i, ds)| Task {
                id: format!("t{i}"),
                depends_on: ds.into_iter().map(|d| format!("t{d}")).collect(),
                ..Task::default()
            })
            .collect(),
        ..Workflow::default()
    }
}

/// About `mean` distinct tasks from `lo..hi` (the fractional part decides
/// one more), in increasing order.
fn pick(rng: &mut Rng, mean: f64, lo: usize, hi: usize) -> Vec<usize> {
    let span = hi.saturating_sub(lo);
    if span == 0 {
        return Vec::new();
    }
    let mut k = mean.floor() as usize;
    if rng.unit() < mean.fract() {
        k += 1;
    }
    let k = k.min(span);
    let mut out: Vec<usize> = Vec::with_capacity(k);
    while out.len() < k {
        let c = lo + rng.below(span as u64) as usize;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edges(w: &Workflow) -> usize {
        w.tasks.iter().map(|t| t.depends_on.len()).sum()
    }

    #[test]
    fn shapes_have_the_documented_structure() {
        let chain = workflow(&Spec::new(5, Shape::Chain));
        assert_eq!(chain.tasks[4].depends_on, ["t3"]);
        assert_eq!(edges(&chain), 4);
        let star = workflow(&Spec::new(5, Shape::Fanout));
        assert!(star.tasks[1..].iter().all(|t| t.depends_on == ["t0"]));
        let diamond = workflow(&Spec::new(5, Shape::Diamond));
        assert_eq!(diamond.tasks[4].depends_on, ["t1", "t2", "t3"]);
        let random = workflow(&Spec::new(10_000, Shape::Random));
        let mean = edges(&random) as f64 / 10_000.0;
        assert!((2.3..2.6).contains(&mean), "mean degree {mean}");
        let dense = workflow(&Spec::new(200, Shape::Dense));
        let expected = 0.1 * 200.0 * 199.0 / 2.0;
        assert!((edges(&dense) as f64 - expected).abs() < expected * 0.2);
    }

    #[test]
    fn same_seed_same_workflow_other_seed_other_workflow() {
        let mut spec = Spec::new(1000, Shape::Random);
        let a = workflow(&spec);
        assert_eq!(a, workflow(&spec));
        spec.seed = 1;
        assert_ne!(a, workflow(&spec));
    }

    #[test]
    fn generated_workflows_validate() {
        for shape in Shape::ALL {
            let wf = workflow(&Spec::new(300, shape));
            crate::validate(wf).unwrap_or_else(|r| panic!("{shape}: {r:?}"));
        }
    }
}
