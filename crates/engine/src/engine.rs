//! The engine's public face: [`Engine::build`] and the cloneable [`Handle`].
//! Its [`Options`] are in `options.rs`, what it reports in `view.rs`, its errors
//! in `error.rs`.

use std::sync::Arc;

use baton_events::EventLog;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::Error;
use crate::options::Options;
use crate::scheduler::{Msg, Op, Scheduler};
use crate::spec::Spec;
use crate::store::{self, RunId, StateStore};
use crate::view::{InstancePage, Progress, RunEntry, RunQuery, RunView, Stats, Summary};

/// The engine: build it, spawn [`Engine::run`], talk to it through [`Handle`]s.
pub struct Engine {
    scheduler: Scheduler,
    resumed: Vec<RunId>,
}

/// A cheap, cloneable handle to a running engine.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Msg>,
    progress: Arc<Progress>,
    durable: bool,
}

impl Engine {
    /// Builds an engine on an event log and, for durability, a state store. With a
    /// store, the runs it holds that had not finished are resumed when the engine
    /// starts (at-least-once: tasks that were in flight run again).
    pub fn build<L: EventLog, S: StateStore>(
        options: Options,
        log: Arc<L>,
        store: Option<Arc<S>>,
    ) -> Result<(Engine, Handle), Error> {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let durable = store.is_some();
        let progress = Arc::new(Progress::default());
        let (scheduler, resumed) =
            Scheduler::new(options, rx, tx.clone(), log, store, progress.clone())?;
        Ok((
            Engine { scheduler, resumed },
            Handle {
                tx,
                progress,
                durable,
            },
        ))
    }

    /// The unfinished runs read from the state store that this engine resumes
    /// when it runs, by id (empty without a store); child runs, which resume
    /// with them, are not listed. Unlike [`Handle::active`],
    /// asked once the engine runs, this still lists the resumed runs that end
    /// before anyone asks ([`Handle::wait`] answers for those too).
    pub fn resumed(&self) -> &[RunId] {
        &self.resumed
    }

    /// Runs the scheduler until [`Handle::shutdown`] (or every handle is dropped).
    pub async fn run(self) {
        self.scheduler.run().await
    }
}

impl Handle {
    async fn ask<T>(&self, msg: impl FnOnce(oneshot::Sender<T>) -> Msg) -> Result<T, Error> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(msg(reply)).await.map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }

    /// Starts a run of `spec` with `input`; returns once the run is recorded (durable
    /// when the engine has a store).
    pub async fn submit(&self, spec: Arc<Spec>, input: Value) -> Result<RunId, Error> {
        if self.durable {
            // Serialize a new workflow here, not on the scheduler's thread.
            spec.key();
        }
        self.ask(|reply| Msg::Submit { spec, input, reply }).await?
    }

    /// Waits for a run to end and returns its summary (at once if it has ended).
    pub async fn wait(&self, run: RunId) -> Result<Arc<Summary>, Error> {
        self.ask(|reply| Msg::Wait { run, reply }).await?
    }

    /// The run's state and every task's.
    pub async fn status(&self, run: RunId) -> Result<RunView, Error> {
        self.ask(|reply| Msg::Status { run, reply }).await?
    }

    /// The workflow a run runs, planned (a child run's is its parent's
    /// sub-workflow).
    pub async fn spec(&self, run: RunId) -> Result<Arc<Spec>, Error> {
        self.ask(|reply| Msg::Spec { run, reply }).await?
    }

    /// Pauses a run: tasks in flight finish, nothing new is dispatched.
    pub async fn pause(&self, run: RunId) -> Result<(), Error> {
        self.ask(|reply| Msg::Control {
            run,
            op: Op::Pause,
            reply,
        })
        .await?
    }

    /// Resumes a paused run.
    pub async fn resume(&self, run: RunId) -> Result<(), Error> {
        self.ask(|reply| Msg::Control {
            run,
            op: Op::Resume,
            reply,
        })
        .await?
    }

    /// Cancels a run: tasks in flight are stopped, the compensations of completed
    /// tasks run, and the run ends `cancelled`.
    pub async fn cancel(&self, run: RunId) -> Result<(), Error> {
        self.ask(|reply| Msg::Control {
            run,
            op: Op::Cancel,
            reply,
        })
        .await?
    }

    /// Takes over runs from their history (records of a state store, as
    /// [`StateStore::load`] returns them, for runs another instance drove): each
    /// unfinished run resumes here as after a restart. Runs this engine already
    /// drives are skipped. Returns the ids of the runs taken over.
    pub async fn adopt(&self, records: Vec<store::Record>) -> Result<Vec<RunId>, Error> {
        self.ask(|reply| Msg::Adopt {
            records,
            remember: false,
            reply,
        })
        .await?
    }

    /// Learns how runs that ended elsewhere ended (their records, as
    /// [`StateStore::load`] returns them), so that [`Handle::status`] and
    /// [`Handle::wait`] answer for them; timing figures read zero (the records do
    /// not hold them). Unfinished runs in `records` are ignored. Returns the ids
    /// of the runs learned.
    pub async fn remember(&self, records: Vec<store::Record>) -> Result<Vec<RunId>, Error> {
        self.ask(|reply| Msg::Adopt {
            records,
            remember: true,
            reply,
        })
        .await?
    }

    /// Starts a new run of the finished run `run` (its workflow and input) that
    /// reuses the outputs of the tasks that succeeded, except `from` and every
    /// task downstream of it, which run again with the tasks that had not
    /// succeeded. Returns the new run's id once its creation is recorded.
    /// The run must be known here: run here, or learned with
    /// [`Handle::remember`].
    pub async fn rerun(&self, run: RunId, from: &str) -> Result<RunId, Error> {
        let from = from.to_string();
        self.ask(|reply| Msg::Rerun { run, from, reply }).await?
    }

    /// Stops driving runs another instance now owns (fencing rejected our writes):
    /// they are forgotten here without further records; their waiters get
    /// [`Error::Moved`]. Returns how many were live here.
    pub async fn release(&self, runs: Vec<RunId>) -> Result<usize, Error> {
        self.ask(|reply| Msg::Release { runs, reply }).await
    }

    /// Ids of the runs that have not ended (resumed ones included). Runs that
    /// ended before the engine got to the question are not in it: for the runs
    /// resumed at start, see [`Engine::resumed`].
    pub async fn active(&self) -> Result<Vec<RunId>, Error> {
        self.ask(|reply| Msg::Active { reply }).await
    }

    /// The runs this engine drives or remembers (the newest
    /// [`Options::keep_finished`](crate::Options::keep_finished) that ended),
    /// newest first, as `query` selects. With more than `query.limit`
    /// matching, the last one returned is the cursor of the next page.
    pub async fn list(&self, query: RunQuery) -> Result<Vec<RunEntry>, Error> {
        self.ask(|reply| Msg::List { query, reply }).await
    }

    /// The instances of a run's fan-out or loop task, `limit` (at least 1)
    /// from `offset` on, in index order: running or ended, with their
    /// attempts, outputs and errors.
    pub async fn instances(
        &self,
        run: RunId,
        task: &str,
        offset: u32,
        limit: u32,
    ) -> Result<InstancePage, Error> {
        let task = task.to_string();
        self.ask(|reply| Msg::Instances {
            run,
            task,
            offset,
            limit,
            reply,
        })
        .await?
    }

    /// Engine-wide figures.
    pub async fn stats(&self) -> Result<Stats, Error> {
        self.ask(|reply| Msg::Stats {
            with_latencies: false,
            reply,
        })
        .await
    }

    /// [`Handle::stats`] with [`Stats::dispatch_histogram`]: a sampler that
    /// keeps the previous one gets the coordination overhead of each interval
    /// (`Histogram::subtract`).
    pub async fn sample(&self) -> Result<Stats, Error> {
        self.ask(|reply| Msg::Stats {
            with_latencies: true,
            reply,
        })
        .await
    }

    /// Live counters (no round trip to the scheduler).
    pub fn progress(&self) -> &Arc<Progress> {
        &self.progress
    }

    /// Stops the engine: tasks in flight are abandoned (they run again on resume),
    /// what was recorded is flushed to the store, the store is closed.
    pub async fn shutdown(&self) -> Result<(), Error> {
        self.ask(|reply| Msg::Shutdown { reply }).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Embedded;
    use baton_events::MemoryLog;

    /// Requests beyond `Options::queue` wait for room instead of queueing without
    /// bound; none is lost once the scheduler runs.
    #[tokio::test(flavor = "current_thread")]
    async fn a_full_request_queue_makes_callers_wait_and_loses_nothing() {
        let log = Arc::new(MemoryLog::new(Default::default()).unwrap());
        let options = Options {
            queue: 2,
            ..Options::default()
        };
        let (engine, handle) = Engine::build::<_, Embedded>(options, log, None).unwrap();
        let asks: Vec<_> = (0..5)
            .map(|_| {
                let h = handle.clone();
                tokio::spawn(async move { h.stats().await })
            })
            .collect();
        // Let every caller get as far as it can: two are queued, three wait.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(handle.tx.capacity(), 0, "the queue is full");
        assert!(asks.iter().all(|a| !a.is_finished()));
        tokio::spawn(engine.run());
        for ask in asks {
            ask.await.unwrap().unwrap();
        }
        handle.shutdown().await.unwrap();
    }
}
