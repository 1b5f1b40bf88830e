//! The suites. Each module's docs state what its benchmarks time and what
//! they leave out.

pub(crate) mod batches;
pub(crate) mod cache;
pub(crate) mod ceiling;
pub(crate) mod coordination;
pub(crate) mod dynamic;
pub(crate) mod events;
pub(crate) mod http;
pub(crate) mod memory;
pub(crate) mod planning;
pub(crate) mod scaling;
