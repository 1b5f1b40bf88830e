//! The rules of the [`EventLog`](crate::EventLog) trait that every backend applies
//! the same way: which names are valid, how large a batch may be, which options a
//! topic gets when it is used before being created, and when a second creation
//! conflicts with the first. They live here once so that no backend can drift from
//! the others (the conformance suite checks the outcome; this keeps the code one).

use crate::{DEAD_LETTER_SUFFIX, Error, Event, Limits, Result, TopicOptions};

/// Checks a topic, group or member name: 1 to 200 characters from
/// `[A-Za-z0-9._-]`, not starting with `.`.
pub(crate) fn check_name(what: &'static str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName {
            what,
            name: name.to_owned(),
        })
    }
}

/// Checks a batch against the limits: each event, then the batch's count and bytes.
pub(crate) fn check_batch(limits: &Limits, batch: &[Event]) -> Result<()> {
    check_batch_with(limits, batch, |_, _| Ok(()))
}

/// [`check_batch`], with a backend's own check of each event (`check(index, event)`)
/// run right after that event's size check, so the first offending event is the
/// one reported whatever is wrong with it.
pub(crate) fn check_batch_with(
    limits: &Limits,
    batch: &[Event],
    mut check: impl FnMut(usize, &Event) -> Result<()>,
) -> Result<()> {
    let mut total = 0usize;
    for (index, e) in batch.iter().enumerate() {
        let size = e.size();
        if size > limits.max_event_bytes {
            return Err(Error::EventTooLarge {
                index,
                size,
                limit: limits.max_event_bytes,
            });
        }
        check(index, e)?;
        total += size;
    }
    if batch.len() > limits.max_batch_events || total > limits.max_batch_bytes {
        return Err(Error::BatchTooLarge {
            events: batch.len(),
            bytes: total,
            max_events: limits.max_batch_events,
            max_bytes: limits.max_batch_bytes,
        });
    }
    Ok(())
}

/// The `dlq.reason` of an event that used up its deliveries.
pub(crate) fn dead_letter_reason(max_deliveries: u32) -> String {
    match max_deliveries {
        1 => "not acknowledged after 1 delivery".to_owned(),
        n => format!("not acknowledged after {n} deliveries"),
    }
}

/// The options topic `name` gets when it is used before being created: the log's
/// defaults, except that a dead-letter topic never dead-letters again (its events
/// are kept for people to inspect).
pub(crate) fn topic_defaults(defaults: &TopicOptions, name: &str) -> TopicOptions {
    let mut o = defaults.clone();
    if name.ends_with(DEAD_LETTER_SUFFIX) {
        o.max_deliveries = 0;
    }
    o
}

/// A topic's options are fixed at creation: creating it again with other options
/// is an error (creating it again with none, or the same, is not).
pub(crate) fn check_same(
    topic: &str,
    existing: &TopicOptions,
    requested: Option<&TopicOptions>,
) -> Result<()> {
    match requested {
        Some(o) if o != existing => Err(Error::TopicMismatch {
            topic: topic.to_owned(),
            detail: format!("existing {existing:?}, requested {o:?}"),
        }),
        _ => Ok(()),
    }
}

/// Checks that `partition` is one of the topic's `partitions`.
pub(crate) fn check_partition(topic: &str, partition: u32, partitions: u32) -> Result<()> {
    if partition < partitions {
        Ok(())
    } else {
        Err(unknown_partition(topic, partition, partitions))
    }
}

/// The error of a partition the topic does not have.
pub(crate) fn unknown_partition(topic: &str, partition: u32, partitions: u32) -> Error {
    Error::UnknownPartition {
        topic: topic.to_owned(),
        partition,
        partitions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("topic", "runs.task-1_x").is_ok());
        assert!(check_name("topic", "").is_err());
        assert!(check_name("topic", "../etc").is_err());
        assert!(check_name("topic", ".hidden").is_err());
        assert!(check_name("topic", "a/b").is_err());
        assert!(check_name("topic", &"x".repeat(200)).is_ok());
        assert!(check_name("topic", &"x".repeat(201)).is_err());
    }

    #[test]
    fn batches_are_checked_event_by_event_then_whole() {
        let limits = Limits {
            max_event_bytes: 1_000,
            max_batch_events: 3,
            max_batch_bytes: 2_000,
        };
        let small = Event::new("t", "k", vec![0u8; 100]);
        let big = Event::new("t", "k", vec![0u8; 1_000]);
        assert!(check_batch(&limits, &[small.clone(), small.clone()]).is_ok());
        assert!(matches!(
            check_batch(&limits, &[small.clone(), big.clone()]),
            Err(Error::EventTooLarge { index: 1, .. })
        ));
        assert!(matches!(
            check_batch(&limits, &vec![small.clone(); 4]),
            Err(Error::BatchTooLarge { events: 4, .. })
        ));
        // A backend's own check runs in order with the size checks.
        let refused = check_batch_with(&limits, &[small.clone(), big], |i, _| {
            if i == 0 {
                Err(Error::InvalidOptions("no".into()))
            } else {
                Ok(())
            }
        });
        assert!(matches!(refused, Err(Error::InvalidOptions(_))));
    }

    #[test]
    fn dead_letter_topics_never_dead_letter() {
        let defaults = TopicOptions {
            max_deliveries: 5,
            ..TopicOptions::default()
        };
        assert_eq!(topic_defaults(&defaults, "runs").max_deliveries, 5);
        let dlq = crate::dead_letter_topic("runs");
        assert_eq!(topic_defaults(&defaults, &dlq).max_deliveries, 0);
    }

    #[test]
    fn options_are_fixed_at_creation() {
        let a = TopicOptions::default();
        let b = TopicOptions {
            partitions: a.partitions + 1,
            ..a.clone()
        };
        assert!(check_same("t", &a, None).is_ok());
        assert!(check_same("t", &a, Some(&a)).is_ok());
        assert!(matches!(
            check_same("t", &a, Some(&b)),
            Err(Error::TopicMismatch { .. })
        ));
        assert!(check_partition("t", 0, 1).is_ok());
        assert!(matches!(
            check_partition("t", 1, 1),
            Err(Error::UnknownPartition {
                partition: 1,
                partitions: 1,
                ..
            })
        ));
    }
}
