#![doc = include_str!("../README.md")]

mod bounds;
mod cache;
mod cycle;
mod plan;
mod reduce;
mod summary;

use baton_model::{Checked, Diagnostic};

pub use bounds::{Bounds, DynamicTask, bounds};
pub use cache::{Key, PlanCache, Stats};
pub use cycle::diagnostic as cycle_diagnostic;
pub use plan::{Plan, Timing};
pub use reduce::Redundancy;
pub use summary::{CriticalPath, Summary};

/// How to compile a plan. The default finds redundant edges under an
/// automatic budget ([`Reduction::Auto`]) and keeps them in the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Options {
    /// Whether, and how hard, to look for redundant edges.
    pub reduction: Reduction,
    /// Drop the redundant edges found from the plan's adjacency. Stages and
    /// timings do not change; when the search was [`Redundancy::Partial`]
    /// only the edges found are dropped, which still preserves every
    /// dependency's reachability.
    pub remove_redundant: bool,
}

/// How much work transitive reduction may do, counted in predecessor
/// entries scanned (a deterministic measure, unlike time).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Reduction {
    /// Do not look: [`Redundancy::Skipped`].
    Off,
    /// The pruned search with [`Reduction::AUTO_PER_EDGE`] per edge (at
    /// least [`Reduction::AUTO_MIN`]); if that runs out, an exact bitset
    /// sweep when it costs at most [`Reduction::AUTO_SWEEP_MAX`] word
    /// operations (about `edges × tasks / 128`), else
    /// [`Redundancy::Partial`]. In practice: exact for any workflow of a few
    /// thousand tasks and for layered ones of any size; partial on large
    /// random ones, where the cost stays linear.
    #[default]
    Auto,
    /// At most this much work.
    Budget(u64),
    /// No bound: always [`Redundancy::Exact`]. The pruned search first,
    /// then if needed the bitset sweep: O(tasks × edges / 64) at worst
    /// (about 10 s for a million random tasks).
    Unlimited,
}

impl Reduction {
    /// [`Reduction::Auto`]'s budget per edge.
    pub const AUTO_PER_EDGE: u64 = 1;
    /// [`Reduction::Auto`]'s least search budget.
    pub const AUTO_MIN: u64 = 4096;
    /// [`Reduction::Auto`]'s most work for the exact bitset sweep.
    pub const AUTO_SWEEP_MAX: u64 = 1 << 22;

    /// The pruned search's budget for a graph of `edges` edges, `None` for
    /// [`Reduction::Off`].
    pub fn budget(self, edges: usize) -> Option<u64> {
        match self {
            Reduction::Off => None,
            Reduction::Auto => {
                Some(Reduction::AUTO_MIN.max(Reduction::AUTO_PER_EDGE.saturating_mul(edges as u64)))
            }
            Reduction::Budget(b) => Some(b),
            Reduction::Unlimited => Reduction::Auto.budget(edges),
        }
    }
}

/// Why a graph could not be planned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The dependencies are cyclic. `tasks` is one cycle in flow order: each
    /// task depends on the one before it, the first on the last, and no task
    /// repeats (a task depending on itself gives one task). It starts at its
    /// lowest id. `names` are the same tasks' names.
    #[error("dependency cycle: {}{}", names.join(" → "), names.first().map(|n| format!(" → {n}")).unwrap_or_default())]
    Cycle {
        /// Task ids on the cycle.
        tasks: Vec<u32>,
        /// Their names.
        names: Vec<String>,
    },
    /// The graph's arrays are inconsistent (a bug in whatever built it).
    #[error("malformed graph: {reason}")]
    Malformed {
        /// What is inconsistent.
        reason: String,
    },
}

/// Plans a validated workflow, reporting a cycle (or any other failure) as
/// a diagnostic located in the document, like validation errors.
pub fn plan_checked(checked: &Checked, options: &Options) -> Result<Plan, Diagnostic> {
    Plan::compile_named(&checked.graph, checked.names.clone(), options).map_err(|e| match e {
        Error::Cycle { tasks, .. } => cycle::diagnostic(checked, &tasks),
        other => Diagnostic::error("plan", checked.root.key("tasks"), other.to_string()),
    })
}
