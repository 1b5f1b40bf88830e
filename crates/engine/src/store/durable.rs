//! What the stores' writers share: the writer's state and the durable sequence
//! number that [`StateStore::sync`](super::StateStore::sync) waits for.

use tokio::sync::watch;

use super::Error;

/// Where a store's writer is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum State {
    Open,
    /// `close` or `drop` was called: the writer drains the queue and stops.
    Closing,
    Closed,
    /// A write failed; the message says which and why.
    Failed(String),
}

impl State {
    /// The error calls get once the writer is no longer open.
    pub(super) fn error(&self) -> Error {
        match self {
            State::Failed(message) => Error::Closed(Some(message.clone())),
            _ => Error::Closed(None),
        }
    }
}

/// What the writer publishes after each write.
#[derive(Debug, Clone)]
pub(super) struct Durable {
    /// Every record up to this sequence number is durable.
    pub(super) seq: u64,
    /// `Open` until the writer stops; then `Closed` or `Failed`.
    pub(super) state: State,
}

/// Waits until record `seq` is durable, or fails with why it never will be.
pub(super) async fn wait(durable: &watch::Sender<Durable>, seq: u64) -> Result<(), Error> {
    let mut durable = durable.subscribe();
    let reached = durable
        .wait_for(|d| d.seq >= seq || d.state != State::Open)
        .await
        .map(|d| {
            if d.seq >= seq {
                Ok(())
            } else {
                Err(d.state.error())
            }
        });
    // The caller holds the sender, so the channel cannot close under us.
    reached.unwrap_or(Err(Error::Closed(None)))
}
