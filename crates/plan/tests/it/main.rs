//! Integration tests of baton-plan.

#![allow(clippy::unwrap_used, reason = "a test's panic is its failure report")]

mod cache;
mod checked;
mod props;
