//! Integration tests of baton-plan.

mod cache;
mod checked;
mod props;
