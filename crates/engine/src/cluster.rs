//! One engine among several sharing a PostgreSQL state store: the rules that
//! make them a cluster, in one place, for `baton serve` and `baton run` alike.
//!
//! - **Identity**: the instance's number in the store (its fencing epoch) gives
//!   the node bits of every run id it mints ([`Member::node`]), so instances
//!   never mint the same id.
//! - **Lease**: renewed every third of the lease time ([`Member::run`]). A
//!   renewal that fails on a database error is retried at the next tick (the
//!   database may be back before the lease runs out; if not, the store's next
//!   write fails); a lease found gone means another instance took this one's
//!   runs: [`Lost::Lease`].
//! - **Fencing**: runs whose writes the store rejected (another instance owns
//!   them now) are released from the engine ([`OnLoss::Release`]), or end the
//!   member with [`Lost::Runs`] ([`OnLoss::Stop`], for a process that exists only
//!   to drive its runs).
//! - **Takeover**: with [`Options::take_over`], the unfinished runs of
//!   instances whose lease expired are claimed in batches and resumed here, within
//!   one lease time plus one tick of the death.

use std::future::Future;
use std::sync::Arc;

use crate::store::{Postgres, RunId};
use crate::{Handle, Options as EngineOptions};

/// What a [`Member`] does besides renewing its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// What losing runs to another instance means.
    pub on_loss: OnLoss,
    /// Take over the runs of instances whose lease expired.
    pub take_over: bool,
    /// Most runs claimed from expired instances per round trip (default 200).
    pub claim_batch: usize,
}

impl Default for Options {
    /// A server's rules: release lost runs, take over the dead's.
    fn default() -> Self {
        Options {
            on_loss: OnLoss::Release,
            take_over: true,
            claim_batch: 200,
        }
    }
}

/// What losing runs to another instance means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnLoss {
    /// Stop driving them and go on with the rest (a server).
    Release,
    /// Stop: [`Member::run`] returns [`Lost::Runs`] (a process that exists to
    /// drive its own runs, such as `baton run`).
    Stop,
}

/// Why a [`Member`] stopped before it was asked to.
#[derive(Debug, thiserror::Error)]
pub enum Lost {
    /// This instance's lease is gone: another instance took over its runs.
    #[error(transparent)]
    Lease(crate::store::Error),
    /// These runs were taken over by another instance ([`OnLoss::Stop`]).
    #[error("run(s) {} taken over by another instance", list(.0))]
    Runs(Vec<RunId>),
}

fn list(runs: &[RunId]) -> String {
    runs.iter()
        .map(RunId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// This instance's part in a cluster: build it on the open store, give the
/// engine [`Member::engine_options`], then drive it with [`Member::run`].
pub struct Member {
    store: Arc<Postgres>,
    options: Options,
}

impl Member {
    /// A member on `store` (open: this instance is registered and holds a lease).
    pub fn new(store: Arc<Postgres>, options: Options) -> Member {
        Member { store, options }
    }

    /// The store it renews its lease in.
    pub fn store(&self) -> &Arc<Postgres> {
        &self.store
    }

    /// This instance's number in run ids (the low 10 bits of its instance id).
    pub fn node(&self) -> u16 {
        self.store.instance().rem_euclid(1024) as u16
    }

    /// `options` with this instance's node number, for the engine it drives.
    pub fn engine_options(&self, options: EngineOptions) -> EngineOptions {
        EngineOptions {
            node: Some(self.node()),
            ..options
        }
    }

    /// Renews the lease, applies the loss rule and takes over expired instances'
    /// runs, every third of the lease time, until `until` resolves (then
    /// `Ok(())`) or the member is lost.
    ///
    /// # Errors
    ///
    /// [`Lost::Lease`] when the lease is found gone; [`Lost::Runs`] under
    /// [`OnLoss::Stop`] when runs were lost.
    pub async fn run(&self, engine: &Handle, until: impl Future<Output = ()>) -> Result<(), Lost> {
        let mut tick = tokio::time::interval(self.store.lease_ttl() / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut until = std::pin::pin!(until);
        loop {
            tokio::select! {
                () = &mut until => return Ok(()),
                _ = tick.tick() => {}
            }
            self.tick(engine).await?;
        }
    }

    async fn tick(&self, engine: &Handle) -> Result<(), Lost> {
        match self.store.heartbeat().await {
            Ok(()) => {}
            Err(e @ crate::store::Error::LeaseLost { .. }) => return Err(Lost::Lease(e)),
            Err(e) => tracing::warn!(error = %e, "cannot renew this instance's lease; retrying"),
        }
        let lost = self.store.lost();
        if !lost.is_empty() {
            match self.options.on_loss {
                OnLoss::Stop => return Err(Lost::Runs(lost)),
                OnLoss::Release => match engine.release(lost).await {
                    Ok(n) if n > 0 => tracing::warn!(runs = n, "runs lost to another instance"),
                    _ => {}
                },
            }
        }
        if self.options.take_over {
            self.take_over(engine).await;
        }
        Ok(())
    }

    /// Claims and resumes expired instances' runs until none is left (or a step
    /// fails: the next tick tries again).
    async fn take_over(&self, engine: &Handle) {
        loop {
            match self.store.claim_expired(self.options.claim_batch).await {
                Ok(records) if records.is_empty() => return,
                Ok(records) => match engine.adopt(records).await {
                    Ok(runs) => tracing::info!(
                        runs = runs.len(),
                        "took over runs of an instance whose lease expired"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot resume runs taken over");
                        return;
                    }
                },
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim runs of expired instances");
                    return;
                }
            }
        }
    }
}
