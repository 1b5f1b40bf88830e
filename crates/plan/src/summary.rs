//! The figures a CLI prints or serializes about a plan.

use serde::Serialize;

use crate::{Plan, Timing};

/// A plan's figures, on ids (the CLI adds the workflow's name, and task
/// names through [`Plan::name`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary<'a> {
    /// Tasks in the workflow, compensation tasks included.
    pub tasks: usize,
    /// Compensation tasks (not planned).
    pub handlers: usize,
    /// Dependency edges in the plan.
    pub edges: usize,
    /// Number of parallel stages.
    pub stage_count: usize,
    /// Tasks per stage.
    pub stage_widths: Vec<u32>,
    /// The widest stage.
    pub max_width: u32,
    /// The longest weighted path.
    pub critical_path: CriticalPath<'a>,
    /// Sum of the forward tasks' weights, µs.
    pub total_work: u64,
    /// `total_work / critical_path.length`.
    pub parallelism: f64,
    /// Redundant edges found.
    pub redundant_edges: usize,
    /// `exact`, `partial` (budget exhausted: there may be more) or `skipped`.
    pub redundancy: &'static str,
    /// Whether the redundant edges were removed from the plan.
    pub redundant_removed: bool,
    /// The stages as ids, when asked for with [`Summary::with_stages`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stages: Option<Vec<&'a [u32]>>,
}

/// The critical path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CriticalPath<'a> {
    /// Its length, µs.
    pub length: u64,
    /// Its tasks, in order.
    pub tasks: &'a [u32],
}

impl<'a> Summary<'a> {
    /// Adds the stages.
    pub fn with_stages(mut self, plan: &'a Plan) -> Summary<'a> {
        self.stages = Some(plan.stages().collect());
        self
    }
}

impl Plan {
    /// The plan's figures.
    pub fn summary(&self) -> Summary<'_> {
        let redundancy = match self.redundancy() {
            crate::Redundancy::Exact { .. } => "exact",
            crate::Redundancy::Partial { .. } => "partial",
            crate::Redundancy::Skipped => "skipped",
        };
        Summary {
            tasks: self.len(),
            handlers: self.handlers().len(),
            edges: self.edge_count(),
            stage_count: self.stage_count(),
            stage_widths: self.stage_widths().collect(),
            max_width: self.max_width(),
            critical_path: CriticalPath {
                length: self.critical_length(),
                tasks: self.critical_path(),
            },
            total_work: self.total_work(),
            parallelism: self.parallelism(),
            redundant_edges: self.redundancy().edges().len(),
            redundancy,
            redundant_removed: self.redundant_removed(),
            stages: None,
        }
    }

    /// Every forward task's timing, in id order.
    pub fn timings(&self) -> impl Iterator<Item = (u32, Timing)> + '_ {
        (0..self.len() as u32).filter_map(|t| Some((t, self.timing(t)?)))
    }
}
