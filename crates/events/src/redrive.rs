//! Redriving dead letters: moving the events of a dead-letter topic back to the
//! topics they came from, on any [`EventLog`].
//!
//! A dead-letter topic is a log like any other, so "moving" a letter means
//! reading it through the consumer group [`REDRIVE_GROUP`], publishing its event
//! again to its topic, and then acknowledging it in that group: the group's lag
//! is the number of letters not redriven yet, and the letters stay readable for
//! the record. A crash between the publish and the acknowledgement redrives the
//! letter again; the copy has an id derived from the letter's place, so the
//! topic's dedup window stores it once.

use std::time::Duration;

use bytes::Bytes;

use crate::{DEAD_LETTER_SUFFIX, Error, Event, EventId, EventLog, Offset, Result};

/// The consumer group through which [`redrive`] reads a dead-letter topic.
pub const REDRIVE_GROUP: &str = "baton.redrive";

/// Letters read and published per round.
const ROUND: usize = 100;

/// What [`redrive`] moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Redriven {
    /// The topic the letters went back to.
    pub topic: String,
    /// Letters moved.
    pub moved: u64,
}

/// Moves up to `max` of the oldest letters of the dead-letter topic `dlq` back to
/// its topic (the name of `dlq` without its suffix). The letters' `dlq.topic`
/// header is not followed: whoever may publish to `dlq` must not be able to
/// send events to another topic through a redrive.
///
/// Each copy keeps the letter's key, type, timestamp, payload and headers except
/// the `dlq.*` ones, and gets `redrive.from` (the letter's `partition:offset` in
/// `dlq`) and `redrive.group` (the group that gave up on it). It is a new event
/// of its topic: every consumer group of that topic receives it, not only the one
/// that dead-lettered it; consumers of other groups can tell it by
/// `redrive.group`.
pub async fn redrive<L: EventLog + ?Sized>(log: &L, dlq: &str, max: usize) -> Result<Redriven> {
    let Some(own) = dlq.strip_suffix(DEAD_LETTER_SUFFIX) else {
        return Err(Error::InvalidOptions(format!(
            "{dlq:?} is not a dead-letter topic (its name must end in {DEAD_LETTER_SUFFIX:?})"
        )));
    };
    let mut done = Redriven {
        topic: own.to_owned(),
        moved: 0,
    };
    while (done.moved as usize) < max {
        let want = (max - done.moved as usize).min(ROUND);
        let polled = log
            .poll(dlq, REDRIVE_GROUP, "redrive", want, Duration::ZERO)
            .await?;
        if polled.is_empty() {
            break;
        }
        let copies = || polled.iter().map(|d| copy(dlq, d.offset, d.event));
        let offsets = polled.offsets();
        let published = match log.publish(own, copies().collect()).await {
            // Each letter fitted its topic once: one at a time, then.
            Err(Error::BatchTooLarge { .. }) => {
                let mut one_by_one = Ok(());
                for e in copies() {
                    one_by_one = log.publish(own, vec![e]).await.map(drop);
                    if one_by_one.is_err() {
                        break;
                    }
                }
                one_by_one
            }
            other => other.map(drop),
        };
        if let Err(e) = published {
            // Give the round back at once, so a retry need not wait for the
            // visibility timeout. What was published is deduplicated then.
            let _ = log.nack(dlq, REDRIVE_GROUP, &offsets, Duration::ZERO).await;
            return Err(e);
        }
        log.ack(dlq, REDRIVE_GROUP, &offsets).await?;
        done.moved += offsets.len() as u64;
    }
    Ok(done)
}

/// The event a letter carries, as it goes back to its topic.
fn copy(dlq: &str, at: Offset, letter: &Event) -> Event {
    let mut e = letter.clone();
    let group = letter.header("dlq.group").cloned();
    e.headers.retain(|(name, _)| !name.starts_with("dlq."));
    e.headers
        .push(("redrive.from".to_owned(), Bytes::from(at.to_string())));
    if let Some(g) = group {
        e.headers.push(("redrive.group".to_owned(), g));
    }
    e.id = EventId::derived(format!("redrive\0{dlq}\0{at}").as_bytes());
    e
}
