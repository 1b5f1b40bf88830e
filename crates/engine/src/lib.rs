//! Baton's execution engine: runs planned workflows on agents.
//!
//! A [`Spec`] is a checked, planned workflow with its agents resolved; an
//! [`Engine`] runs any number of runs of any number of specs on one scheduler.
//! Every task moves through `pending → ready → dispatched → running →
//! succeeded | failed | skipped | cancelled | compensated`; every transition is
//! recorded in the [`store`] (event-sourced, so a restarted engine resumes what
//! was unfinished) and published to the event log. See `README.md` in this crate
//! for the execution semantics and guarantees.
//!
//! ```
//! use std::sync::Arc;
//!
//! use baton_engine::{Engine, Options, Spec, store::Embedded};
//! use baton_events::MemoryLog;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let source = baton_model::Source::from_str(
//!     "inline.yaml",
//!     "tasks: [{id: a}, {id: b, depends_on: [a]}]",
//!     baton_model::Format::Yaml,
//! );
//! let checked = baton_model::load(&source).unwrap();
//! let plan = baton_plan::plan_checked(&checked, &Default::default()).unwrap();
//! let spec = Arc::new(Spec::new(checked, Arc::new(plan), 0).unwrap());
//!
//! let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
//! let (engine, handle) = Engine::build::<_, Embedded>(Options::default(), log, None).unwrap();
//! tokio::spawn(engine.run());
//! let run = handle.submit(spec, serde_json::Value::Null).await.unwrap();
//! let summary = handle.wait(run).await.unwrap();
//! assert_eq!(summary.tasks.succeeded, 2);
//! handle.shutdown().await.unwrap();
//! # }
//! ```

#![doc = include_str!("../README.md")]

pub mod agent;
mod breaker;
mod clock;
#[cfg(feature = "postgres")]
pub mod cluster;
mod engine;
mod error;
mod options;
mod overrides;
mod retry;
mod scheduler;
mod spec;
pub mod store;
mod view;

pub use breaker::State as BreakerState;
pub use engine::{Engine, Handle};
pub use error::Error;
pub use options::{Options, SINK_BACKLOG};
pub use overrides::{Overrides, SpecCache};
pub use spec::{DEFAULT_AGENT, Error as SpecError, MAX_DEPTH, Spec};
pub use view::{
    AgentStats, InstancePage, InstanceView, ItemCounts, LATENCY_BUCKETS_S, Percentiles, Progress,
    RunEntry, RunQuery, RunView, Stats, Summary, TaskCounts, TaskView, Tokens,
};
