//! The behaviour every backend must have. Each test takes a [`Factory`] so that it can
//! reopen the log (durable backends) and so that it runs on the backend's clock: paused
//! tokio time for in-process backends, the real clock with shortened timeouts for
//! server backends (see [`Factory::scale`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use baton_events::{
    Dedup, Error, Event, EventId, EventLog, Offset, Options, REDRIVE_GROUP, Retention, SeekTo,
    TopicOptions, dead_letter_topic, redrive,
};

use crate::Factory;

const NO_WAIT: Duration = Duration::ZERO;

fn topic<F: Factory>(f: &F, partitions: u32) -> TopicOptions {
    TopicOptions {
        partitions,
        visibility_timeout: f.scale(Duration::from_secs(10)),
        max_deliveries: 3,
        ..TopicOptions::default()
    }
}

/// Default options with the backend's time scale applied to every duration.
fn options<F: Factory>(f: &F) -> Options {
    let mut o = Options::default();
    let d = &mut o.topic_defaults;
    d.visibility_timeout = f.scale(d.visibility_timeout);
    d.dedup.max_age = f.scale(d.dedup.max_age);
    d.retention.max_age = d.retention.max_age.map(|a| f.scale(a));
    o
}

fn secs<F: Factory>(f: &F, s: u64) -> Duration {
    f.scale(Duration::from_secs(s))
}

fn ev(key: &str, n: u64) -> Event {
    Event::new("test.event", key.to_owned(), n.to_string())
}

fn num(e: &Event) -> u64 {
    std::str::from_utf8(&e.payload).unwrap().parse().unwrap()
}

pub async fn ordering_per_key<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 4)).await.unwrap();
    let keys: Vec<String> = (0..20).map(|k| format!("key-{k}")).collect();
    let mut partition_of = HashMap::new();
    for round in 0..10u64 {
        let batch: Vec<Event> = keys
            .iter()
            .flat_map(|k| (0..5).map(move |i| ev(k, round * 5 + i)))
            .collect();
        let offsets = log.publish("t", batch.clone()).await.unwrap();
        assert_eq!(offsets.len(), batch.len());
        for (e, o) in batch.iter().zip(&offsets) {
            let p = partition_of.entry(e.key.clone()).or_insert(o.partition);
            assert_eq!(*p, o.partition, "one key, one partition");
            assert_eq!(o.partition as u64, baton_events::key_hash(&e.key) % 4);
        }
    }
    // One consumer sees every key's events in publish order.
    let mut last: HashMap<bytes::Bytes, u64> = HashMap::new();
    let mut total = 0;
    loop {
        let polled = log.poll("t", "g", "m", 37, NO_WAIT).await.unwrap();
        if polled.is_empty() {
            break;
        }
        for d in polled.iter() {
            let n = num(d.event);
            if let Some(prev) = last.insert(d.event.key.clone(), n) {
                assert!(n > prev, "key {:?}: {n} after {prev}", d.event.key);
            }
            total += 1;
        }
        log.ack("t", "g", &polled.offsets()).await.unwrap();
    }
    assert_eq!(total, 20 * 50);
    // Replay per partition is in offset order and in publish order per key.
    for p in 0..4 {
        let records = log.read("t", p, 0, 10_000).await.unwrap();
        let mut seen: HashMap<bytes::Bytes, u64> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, Offset::new(p, i as u64));
            if let Some(prev) = seen.insert(r.event.key.clone(), num(&r.event)) {
                assert!(num(&r.event) > prev);
            }
        }
    }
}

pub async fn at_least_once_delivery<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 3)).await.unwrap();
    let batch: Vec<Event> = (0..300).map(|i| ev(&format!("k{}", i % 7), i)).collect();
    log.publish("t", batch).await.unwrap();
    // Member a takes everything but acknowledges only even numbers, then goes away.
    let mut delivered: HashMap<u64, u32> = HashMap::new();
    loop {
        let polled = log.poll("t", "g", "a", 64, NO_WAIT).await.unwrap();
        if polled.is_empty() {
            break;
        }
        let mut even = Vec::new();
        for d in polled.iter() {
            *delivered.entry(num(d.event)).or_default() += 1;
            if num(d.event).is_multiple_of(2) {
                even.push(d.offset);
            }
        }
        log.ack("t", "g", &even).await.unwrap();
    }
    assert_eq!(delivered.len(), 300);
    f.advance(Duration::from_secs(11)).await;
    // Member b receives every odd one again.
    let mut again = HashSet::new();
    loop {
        let polled = log.poll("t", "g", "b", 1000, NO_WAIT).await.unwrap();
        if polled.is_empty() {
            break;
        }
        for d in polled.iter() {
            assert_eq!(d.deliveries, 2);
            assert!(num(d.event) % 2 == 1, "acknowledged event redelivered");
            again.insert(num(d.event));
        }
        assert_eq!(
            log.ack("t", "g", &polled.offsets()).await.unwrap(),
            polled.len()
        );
    }
    assert_eq!(again.len(), 150);
    assert!(log.pending("t", "g", 1000).await.unwrap().is_empty());
    // Acknowledging again is harmless.
    assert_eq!(log.ack("t", "g", &[Offset::new(0, 0)]).await.unwrap(), 0);
}

pub async fn redelivery_after_visibility_timeout<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 1)).await.unwrap();
    log.publish("t", (0..10).map(|i| ev("k", i)).collect())
        .await
        .unwrap();
    let a = log.poll("t", "g", "a", 100, NO_WAIT).await.unwrap();
    assert_eq!(a.len(), 10);
    log.ack("t", "g", &a.offsets()[..4]).await.unwrap();
    // Not yet expired: nobody else gets them.
    f.advance(Duration::from_secs(9)).await;
    assert!(
        log.poll("t", "g", "b", 100, NO_WAIT)
            .await
            .unwrap()
            .is_empty()
    );
    f.advance(Duration::from_secs(2)).await;
    let b = log.poll("t", "g", "b", 100, NO_WAIT).await.unwrap();
    let nums: Vec<u64> = b.iter().map(|d| num(d.event)).collect();
    assert_eq!(nums, vec![4, 5, 6, 7, 8, 9]);
    assert!(b.iter().all(|d| d.deliveries == 2));
    let pending = log.pending("t", "g", 100).await.unwrap();
    assert_eq!(pending.len(), 6);
    assert!(pending.iter().all(|p| p.member == "b" && p.deliveries == 2));
    // A poll that waits is woken by the expiry, not by the end of its wait.
    let started = tokio::time::Instant::now();
    let c = log.poll("t", "g", "c", 3, secs(&f, 60)).await.unwrap();
    assert_eq!(c.len(), 3, "a claim respects max");
    let waited = started.elapsed();
    assert!(
        // On a real clock the expiry runs from the claim, a little before `started`.
        waited + f.slack() >= secs(&f, 10) && waited < secs(&f, 11) + f.slack(),
        "{waited:?}"
    );
    assert!(c.iter().all(|d| d.deliveries == 3));
}

pub async fn nack_redelivers_after_delay<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 1)).await.unwrap();
    log.publish("t", (0..5).map(|i| ev("k", i)).collect())
        .await
        .unwrap();
    let p = log.poll("t", "g", "a", 100, NO_WAIT).await.unwrap();
    let offsets = p.offsets();
    log.ack("t", "g", &[offsets[0], offsets[4]]).await.unwrap();
    assert_eq!(
        log.nack("t", "g", &[offsets[1], offsets[3]], secs(&f, 2))
            .await
            .unwrap(),
        2
    );
    f.advance(Duration::from_secs(1)).await;
    assert!(
        log.poll("t", "g", "a", 100, NO_WAIT)
            .await
            .unwrap()
            .is_empty()
    );
    f.advance(Duration::from_secs(1)).await;
    let again = log.poll("t", "g", "a", 100, NO_WAIT).await.unwrap();
    let nums: Vec<u64> = again.iter().map(|d| num(d.event)).collect();
    assert_eq!(nums, vec![1, 3]);
    // Event 2 is still held under the original timeout.
    let pending: Vec<u64> = log
        .pending("t", "g", 10)
        .await
        .unwrap()
        .iter()
        .map(|p| p.offset.offset)
        .collect();
    assert_eq!(pending, vec![1, 2, 3]);
}

pub async fn dead_letters_after_max_deliveries<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 2)).await.unwrap();
    let [o] = log.publish("t", vec![ev("poison", 7)]).await.unwrap()[..] else {
        panic!()
    };
    for n in 1..=3 {
        let p = log.poll("t", "g", "m", 10, NO_WAIT).await.unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p.iter().next().unwrap().deliveries, n);
        f.advance(Duration::from_secs(11)).await;
    }
    // The fourth delivery would exceed max_deliveries = 3.
    assert!(
        log.poll("t", "g", "m", 10, NO_WAIT)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(log.pending("t", "g", 10).await.unwrap().is_empty());
    let dlq = dead_letter_topic("t");
    let dead = log.poll(&dlq, "ops", "human", 10, NO_WAIT).await.unwrap();
    assert_eq!(dead.len(), 1);
    let e = dead.iter().next().unwrap().event;
    assert_eq!(num(e), 7);
    assert_eq!(e.header("dlq.topic").unwrap(), "t");
    assert_eq!(e.header("dlq.group").unwrap(), "g");
    assert_eq!(e.header("dlq.offset").unwrap(), o.to_string().as_bytes());
    assert_eq!(e.header("dlq.deliveries").unwrap(), "3");
    assert!(
        std::str::from_utf8(e.header("dlq.reason").unwrap())
            .unwrap()
            .contains("3 deliveries")
    );
    // Dead letters are never dead-lettered again.
    for _ in 0..5 {
        f.advance(Duration::from_secs(31)).await;
        assert_eq!(
            log.poll(&dlq, "ops", "human", 10, NO_WAIT)
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

/// Polls `t` through `g` until every event is dead-lettered (three deliveries).
async fn exhaust<F: Factory>(f: &F, log: &F::Log, t: &str, g: &str) {
    for _ in 1..=3 {
        let p = log.poll(t, g, "m", 10, NO_WAIT).await.unwrap();
        assert!(!p.is_empty());
        f.advance(Duration::from_secs(11)).await;
    }
    assert!(log.poll(t, g, "m", 10, NO_WAIT).await.unwrap().is_empty());
}

pub async fn redrive_moves_dead_letters_back<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 2)).await.unwrap();
    log.publish("t", vec![ev("a", 1), ev("b", 2), ev("c", 3)])
        .await
        .unwrap();
    exhaust(&f, &log, "t", "g").await;
    let dlq = dead_letter_topic("t");
    let group = |name: &'static str| {
        let log = log.clone();
        let dlq = dlq.clone();
        async move {
            log.groups(&dlq)
                .await
                .unwrap()
                .into_iter()
                .find(|g| g.name == name)
                .unwrap()
        }
    };
    // The oldest letter first, then the rest; the group's lag is what is left.
    let first = redrive(&log, &dlq, 1).await.unwrap();
    assert_eq!(first.moved, 1);
    assert_eq!(first.topic, "t");
    let left = group(REDRIVE_GROUP).await;
    assert_eq!((left.lag, left.pending), (2, 0));
    assert_eq!(redrive(&log, &dlq, 100).await.unwrap().moved, 2);
    assert_eq!(redrive(&log, &dlq, 100).await.unwrap().moved, 0);
    let done = group(REDRIVE_GROUP).await;
    assert_eq!((done.lag, done.pending), (0, 0));
    // The letters stay in the dead-letter topic for the record.
    let retained: u64 = log
        .topics()
        .await
        .unwrap()
        .iter()
        .filter(|t| t.name == dlq)
        .map(|t| t.events())
        .sum();
    assert_eq!(retained, 3);
    // Back in the topic: new events, delivered afresh to the group that gave up
    // on them, with the letter's place instead of the dlq.* headers.
    let again = log.poll("t", "g", "m", 10, NO_WAIT).await.unwrap();
    let mut got: Vec<u64> = again.iter().map(|d| num(d.event)).collect();
    got.sort_unstable();
    assert_eq!(got, vec![1, 2, 3]);
    for d in again.iter() {
        assert_eq!(d.deliveries, 1);
        assert_eq!(d.event.header("redrive.group").unwrap(), "g");
        assert!(d.event.header("redrive.from").is_some());
        assert!(d.event.headers.iter().all(|(n, _)| !n.starts_with("dlq.")));
    }
    log.ack("t", "g", &again.offsets()).await.unwrap();
    // Only dead-letter topics can be redriven.
    assert!(matches!(
        redrive(&log, "t", 10).await,
        Err(Error::InvalidOptions(_))
    ));
}

/// A redrive that stopped between its publish and its acknowledgement runs again
/// without storing a letter twice: the copy's id is the same every time.
pub async fn redrive_again_is_deduplicated<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 1)).await.unwrap();
    log.publish("t", vec![ev("a", 1)]).await.unwrap();
    exhaust(&f, &log, "t", "g").await;
    let dlq = dead_letter_topic("t");
    assert_eq!(redrive(&log, &dlq, 10).await.unwrap().moved, 1);
    // As if the acknowledgement had been lost: the redrive group reads it again.
    log.seek(&dlq, REDRIVE_GROUP, SeekTo::Earliest)
        .await
        .unwrap();
    assert_eq!(redrive(&log, &dlq, 10).await.unwrap().moved, 1);
    let stored: u64 = log
        .topics()
        .await
        .unwrap()
        .iter()
        .filter(|t| t.name == "t")
        .map(|t| t.events())
        .sum();
    assert_eq!(stored, 2, "the original and one copy");
}

/// An id published again under another key (so to another partition) comes back
/// with its original offset and is not stored twice, in one batch or across.
pub async fn dedup_across_partitions<F: Factory>(mut f: F) {
    if !F::DEDUP_ACROSS_PARTITIONS {
        return;
    }
    // The same id under sixteen keys: most land in other partitions than k0's.
    fn under_every_key(id: EventId, n: u64) -> Vec<Event> {
        (0..16)
            .map(|i| ev(&format!("k{i}"), n).with_id(id))
            .collect()
    }
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 8)).await.unwrap();
    let id = EventId(77);
    let first = log
        .publish("t", vec![ev("k0", 1).with_id(id)])
        .await
        .unwrap()[0];
    let offsets = log.publish("t", under_every_key(id, 2)).await.unwrap();
    assert!(
        offsets.iter().all(|o| *o == first),
        "{offsets:?} vs {first:?}"
    );
    // Within one batch: the first occurrence is stored, the others answer with it.
    let offsets = log
        .publish("t", under_every_key(EventId(78), 3))
        .await
        .unwrap();
    assert!(offsets.iter().all(|o| *o == offsets[0]), "{offsets:?}");
    let stored: u64 = log.topics().await.unwrap()[0].events();
    assert_eq!(stored, 2);
    let read = log
        .read("t", offsets[0].partition, offsets[0].offset, 1)
        .await
        .unwrap();
    assert_eq!(num(&read[0].event), 3);
    // A reopened log rebuilds the window from what it stored.
    if F::DURABLE {
        log.close().await.unwrap();
        drop(log);
        let log = f.open(options(&f)).await;
        let offsets = log.publish("t", under_every_key(id, 4)).await.unwrap();
        assert!(
            offsets.iter().all(|o| *o == first),
            "{offsets:?} vs {first:?}"
        );
    }
}

pub async fn dedup_window<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    let mut opts = topic(&f, 2);
    opts.dedup = Dedup {
        max_ids: 10,
        max_age: secs(&f, 60),
    };
    log.create_topic("t", opts).await.unwrap();
    let e = ev("k", 1);
    let first = log.publish("t", vec![e.clone()]).await.unwrap();
    let retry = log.publish("t", vec![e.clone(), ev("k", 2)]).await.unwrap();
    assert_eq!(
        retry[0], first[0],
        "a retried publish returns the original offset"
    );
    assert_ne!(retry[1], first[0]);
    // Duplicates inside one batch, too.
    let twice = log
        .publish(
            "t",
            vec![
                ev("k", 3).with_id(EventId(5)),
                ev("k", 3).with_id(EventId(5)),
            ],
        )
        .await
        .unwrap();
    assert_eq!(twice[0], twice[1]);
    let stored: u64 = log.topics().await.unwrap()[0].events();
    assert_eq!(stored, 3);
    // Beyond the window's age the id is forgotten.
    f.advance(Duration::from_secs(61)).await;
    let later = log.publish("t", vec![e.clone()]).await.unwrap();
    assert_ne!(later[0], first[0]);
    // Beyond its size, too (where the window has a size).
    if F::DEDUP_BY_COUNT {
        let g = ev("k", 9);
        log.publish("t", vec![g.clone()]).await.unwrap();
        log.publish("t", (0..30).map(|i| ev("k", 100 + i)).collect())
            .await
            .unwrap();
        let before = log.topics().await.unwrap()[0].events();
        log.publish("t", vec![g]).await.unwrap();
        assert_eq!(log.topics().await.unwrap()[0].events(), before + 1);
    }
}

pub async fn retention_by_count_bytes_and_age<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    let mut opts = topic(&f, 1);
    opts.retention = Retention {
        max_events: Some(100),
        max_bytes: None,
        max_age: None,
    };
    log.create_topic("count", opts.clone()).await.unwrap();
    for chunk in 0..5u64 {
        log.publish("count", (0..50).map(|i| ev("k", chunk * 50 + i)).collect())
            .await
            .unwrap();
    }
    let info = &log.topics().await.unwrap()[0];
    assert_eq!(
        (info.partitions[0].start, info.partitions[0].end),
        (150, 250)
    );
    let records = log.read("count", 0, 0, 1000).await.unwrap();
    assert_eq!(records.len(), 100);
    assert_eq!(num(&records[0].event), 150);
    // A group created now starts at the oldest retained event.
    let p = log.poll("count", "g", "m", 1000, NO_WAIT).await.unwrap();
    assert_eq!(p.iter().next().unwrap().offset.offset, 150);

    opts.retention = Retention {
        max_events: None,
        max_bytes: Some(20_000),
        max_age: None,
    };
    log.create_topic("bytes", opts.clone()).await.unwrap();
    let big = |i: u64| Event::new("t", "k", vec![b'x'; 1000]).with_timestamp(i);
    for i in 0..10 {
        log.publish("bytes", (0..10).map(|j| big(i * 10 + j)).collect())
            .await
            .unwrap();
    }
    let info = log
        .topics()
        .await
        .unwrap()
        .into_iter()
        .find(|t| t.name == "bytes")
        .unwrap();
    assert!(
        info.partitions[0].bytes <= 20_000 + 10_500,
        "{:?}",
        info.partitions[0]
    );
    assert!(info.partitions[0].start > 0);

    opts.retention = Retention {
        max_events: None,
        max_bytes: None,
        max_age: Some(secs(&f, 60)),
    };
    log.create_topic("age", opts).await.unwrap();
    log.publish("age", vec![ev("k", 1)]).await.unwrap();
    f.advance(Duration::from_secs(30)).await;
    log.publish("age", vec![ev("k", 2)]).await.unwrap();
    f.advance(Duration::from_secs(31)).await;
    let records = log.read("age", 0, 0, 10).await.unwrap();
    assert_eq!(
        records.iter().map(|r| num(&r.event)).collect::<Vec<_>>(),
        vec![2]
    );
    // Offsets are never reused after retention.
    let o = log.publish("age", vec![ev("k", 3)]).await.unwrap();
    assert_eq!(o[0].offset, 2);
}

pub async fn restart_keeps_events_and_committed_offsets<F: Factory>(mut f: F) {
    if !F::DURABLE {
        return;
    }
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 2)).await.unwrap();
    let batch: Vec<Event> = (0..100).map(|i| ev(&format!("k{}", i % 5), i)).collect();
    let offsets = log.publish("t", batch.clone()).await.unwrap();
    let p = log.poll("t", "g", "m", 1000, NO_WAIT).await.unwrap();
    assert_eq!(p.len(), 100);
    let acked: Vec<Offset> = p
        .iter()
        .filter(|d| num(d.event) < 60)
        .map(|d| d.offset)
        .collect();
    log.ack("t", "g", &acked).await.unwrap();
    log.seek("t", "late", SeekTo::Latest).await.unwrap();
    log.close().await.unwrap();
    drop(log);

    let log = f.open(options(&f)).await;
    // Every event is there, intact, at its offset.
    for (e, o) in batch.iter().zip(&offsets) {
        let r = log.read("t", o.partition, o.offset, 1).await.unwrap();
        assert_eq!(&r[0].event, e);
    }
    // The group resumes at its committed offsets: only the unacknowledged come back
    // (once their visibility timeout has passed, if the backend keeps who held them).
    if F::KEEPS_DELIVERY_STATE {
        f.advance(Duration::from_secs(11)).await;
    }
    let again = log.poll("t", "g", "m", 1000, NO_WAIT).await.unwrap();
    let mut nums: Vec<u64> = again.iter().map(|d| num(d.event)).collect();
    nums.sort();
    assert_eq!(nums, (60..100).collect::<Vec<_>>());
    // The group that sought to the end stays there.
    assert!(
        log.poll("t", "late", "m", 1000, NO_WAIT)
            .await
            .unwrap()
            .is_empty()
    );
    // Offsets continue.
    let next = log.publish("t", vec![ev("k0", 1000)]).await.unwrap();
    assert!(next[0].offset >= 20);
    assert!(!offsets.contains(&next[0]));
    // Dedup survives the restart.
    let retry = log.publish("t", vec![batch[3].clone()]).await.unwrap();
    assert_eq!(retry[0], offsets[3]);
    log.close().await.unwrap();
}

pub async fn replay_from_offset_and_time<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 1)).await.unwrap();
    log.publish("t", (0..10).map(|i| ev("k", i)).collect())
        .await
        .unwrap();
    f.advance(Duration::from_secs(5)).await;
    let t1 = log.topics().await.unwrap(); // any call: time has moved
    drop(t1);
    let mark = {
        // The time at which the second batch is appended.
        let r = log.read("t", 0, 0, 1).await.unwrap();
        r[0].appended_ms + secs(&f, 5).as_millis() as u64
    };
    log.publish("t", (10..20).map(|i| ev("k", i)).collect())
        .await
        .unwrap();
    // Read from an offset.
    let r = log.read("t", 0, 15, 3).await.unwrap();
    assert_eq!(
        r.iter().map(|r| num(&r.event)).collect::<Vec<_>>(),
        vec![15, 16, 17]
    );
    // Offsets by time.
    assert_eq!(
        log.offsets_at("t", mark).await.unwrap(),
        vec![Offset::new(0, 10)]
    );
    assert_eq!(
        log.offsets_at("t", 0).await.unwrap(),
        vec![Offset::new(0, 0)]
    );
    assert_eq!(
        log.offsets_at("t", u64::MAX).await.unwrap(),
        vec![Offset::new(0, 20)]
    );
    // A group consumes everything, then replays from a time, an offset and the start.
    let all = log.poll("t", "g", "m", 100, NO_WAIT).await.unwrap();
    log.ack("t", "g", &all.offsets()).await.unwrap();
    log.seek("t", "g", SeekTo::Time(mark)).await.unwrap();
    let p = log.poll("t", "g", "m", 100, NO_WAIT).await.unwrap();
    assert_eq!(
        p.iter().map(|d| num(d.event)).collect::<Vec<_>>(),
        (10..20).collect::<Vec<_>>()
    );
    log.seek("t", "g", SeekTo::Offsets(vec![Offset::new(0, 18)]))
        .await
        .unwrap();
    let p = log.poll("t", "g", "m", 100, NO_WAIT).await.unwrap();
    assert_eq!(
        p.iter().map(|d| num(d.event)).collect::<Vec<_>>(),
        vec![18, 19]
    );
    assert!(log.pending("t", "g", 10).await.unwrap().len() == 2);
    log.seek("t", "g", SeekTo::Earliest).await.unwrap();
    assert!(
        log.pending("t", "g", 10).await.unwrap().is_empty(),
        "seek drops pending"
    );
    assert_eq!(
        log.poll("t", "g", "m", 100, NO_WAIT).await.unwrap().len(),
        20
    );
    assert!(matches!(
        log.seek("t", "g", SeekTo::Offsets(vec![Offset::new(9, 0)]))
            .await,
        Err(Error::UnknownPartition { partition: 9, .. })
    ));
}

pub async fn limits_reject_oversized_input<F: Factory>(mut f: F) {
    let mut options = options(&f);
    options.limits.max_event_bytes = 1000;
    options.limits.max_batch_events = 10;
    options.limits.max_batch_bytes = 5000;
    let log = f.open(options).await;
    let ok = Event::new("t", "k", vec![0u8; 500]);
    let huge = Event::new("t", "k", vec![0u8; 2000]);
    let err = log.publish("t", vec![ok.clone(), huge]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::EventTooLarge {
                index: 1,
                limit: 1000,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("max_event_bytes"));
    let err = log.publish("t", vec![ok.clone(); 11]).await.unwrap_err();
    assert!(
        matches!(err, Error::BatchTooLarge { events: 11, .. }),
        "{err}"
    );
    let err = log.publish("t", vec![ok.clone(); 10]).await.unwrap_err();
    assert!(matches!(err, Error::BatchTooLarge { .. }), "{err}");
    // Nothing from the rejected batches was stored.
    assert!(log.topics().await.unwrap().iter().all(|t| t.events() == 0));
    assert_eq!(log.publish("t", vec![ok; 5]).await.unwrap().len(), 5);
    assert_eq!(log.publish("t", vec![]).await.unwrap().len(), 0);
    let bad = TopicOptions {
        partitions: 0,
        ..TopicOptions::default()
    };
    assert!(matches!(
        log.create_topic("z", bad).await,
        Err(Error::InvalidOptions(_))
    ));
    log.create_topic("x", topic(&f, 2)).await.unwrap();
    log.create_topic("x", topic(&f, 2)).await.unwrap();
    assert!(matches!(
        log.create_topic("x", topic(&f, 3)).await,
        Err(Error::TopicMismatch { .. })
    ));
}

pub async fn pending_list_is_inspectable<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 1)).await.unwrap();
    log.publish("t", (0..6).map(|i| ev("k", i)).collect())
        .await
        .unwrap();
    let a = log.poll("t", "g", "alice", 2, NO_WAIT).await.unwrap();
    f.advance(Duration::from_secs(1)).await;
    log.ack("t", "g", &a.offsets()).await.unwrap();
    let b = log.poll("t", "g", "alice", 3, NO_WAIT).await.unwrap();
    assert_eq!(b.len(), 3);
    let pending = log.pending("t", "g", 100).await.unwrap();
    assert_eq!(pending.len(), 3);
    let first = &pending[0];
    assert_eq!(first.offset, Offset::new(0, 2));
    assert_eq!(first.member, "alice");
    assert_eq!(first.deliveries, 1);
    assert_eq!(
        first.claimable_at_ms - first.since_ms,
        secs(&f, 10).as_millis() as u64
    );
    assert_eq!(log.pending("t", "g", 2).await.unwrap().len(), 2);
    let groups = log.groups("t").await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].pending, 3);
    assert_eq!(groups[0].lag, 1);
    assert_eq!(groups[0].committed, vec![Offset::new(0, 2)]);
    assert_eq!(groups[0].members[0].name, "alice");
    assert_eq!(groups[0].members[0].pending, 3);
    assert!(matches!(
        log.pending("t", "nope", 1).await,
        Err(Error::UnknownGroup { .. })
    ));
    assert!(matches!(
        log.pending("nope", "g", 1).await,
        Err(Error::UnknownTopic(_))
    ));
}

pub async fn topics_and_groups_are_reported<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.publish("b", vec![ev("k", 1)]).await.unwrap();
    log.publish("a", vec![ev("k", 1), ev("j", 2)])
        .await
        .unwrap();
    log.poll("a", "g2", "m", 1, NO_WAIT).await.unwrap();
    log.poll("a", "g1", "m", 1, NO_WAIT).await.unwrap();
    let topics = log.topics().await.unwrap();
    assert_eq!(
        topics.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        vec!["a", "b"]
    );
    assert_eq!(topics[0].partitions.len(), 8, "default partitions");
    assert_eq!(topics[0].events(), 2);
    assert_eq!(topics[0].groups, vec!["g1", "g2"]);
}

pub async fn invalid_names_are_rejected<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    for bad in ["", "../x", "a b", ".x"] {
        assert!(matches!(
            log.publish(bad, vec![ev("k", 1)]).await,
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            log.poll("t", bad, "m", 1, NO_WAIT).await,
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            log.poll("t", "g", bad, 1, NO_WAIT).await,
            Err(Error::InvalidName { .. })
        ));
    }
    assert!(matches!(
        log.read("t", 99, 0, 1).await,
        Err(Error::UnknownPartition { .. })
    ));
    assert!(matches!(
        log.read("none", 0, 0, 1).await,
        Err(Error::UnknownTopic(_))
    ));
    assert!(matches!(
        log.ack("none", "g", &[]).await,
        Err(Error::UnknownTopic(_))
    ));
}

pub async fn poll_waits_for_new_events<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 2)).await.unwrap();
    // Nothing there: the poll waits its full time.
    let started = tokio::time::Instant::now();
    assert!(
        log.poll("t", "g", "m", 10, secs(&f, 3))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(started.elapsed() >= secs(&f, 3));
    // A publish wakes a waiting poll. Real time from here: with paused time the clock
    // would jump to the waiter's deadline while the publish waits for its fsync.
    if F::PAUSED_TIME {
        tokio::time::resume();
    }
    let l2 = log.clone();
    let long = secs(&f, 3600);
    let waiter = tokio::spawn(async move { l2.poll("t", "g", "m", 10, long).await });
    tokio::task::yield_now().await;
    log.publish("t", vec![ev("k", 1)]).await.unwrap();
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.len(), 1);
}

pub async fn closed_log_refuses_calls<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.publish("t", vec![ev("k", 1)]).await.unwrap();
    log.close().await.unwrap();
    assert!(matches!(
        log.publish("t", vec![ev("k", 2)]).await,
        Err(Error::Closed)
    ));
    assert!(matches!(
        log.poll("t", "g", "m", 1, NO_WAIT).await,
        Err(Error::Closed)
    ));
}

pub async fn concurrent_producers_and_group<F: Factory>(mut f: F) {
    let log = f.open(options(&f)).await;
    log.create_topic("t", topic(&f, 8)).await.unwrap();
    const PRODUCERS: u64 = 4;
    const PER: u64 = 2_000;
    let mut tasks = Vec::new();
    for p in 0..PRODUCERS {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for b in 0..(PER / 100) {
                let batch = (0..100)
                    .map(|i| ev(&format!("p{p}-k{}", i % 13), p * 1_000_000 + b * 100 + i))
                    .collect();
                log.publish("t", batch).await.unwrap();
            }
        }));
    }
    // The members stop once every event has been delivered and acknowledged; one
    // that is still waiting at the deadline fails the test instead of passing on
    // whatever arrived.
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut consumers = Vec::new();
    for m in 0..4 {
        let (log, acked) = (log.clone(), acked.clone());
        consumers.push(tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let done = acked.lock().unwrap().len() as u64;
                if done == PRODUCERS * PER {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{done} of {} events delivered and acknowledged after 60 s",
                    PRODUCERS * PER
                );
                let p = log
                    .poll("t", "g", &format!("m{m}"), 250, Duration::from_millis(100))
                    .await
                    .unwrap();
                if p.is_empty() {
                    continue;
                }
                got.extend(p.iter().map(|d| (d.event.key.clone(), num(d.event))));
                log.ack("t", "g", &p.offsets()).await.unwrap();
                acked.lock().unwrap().extend(p.iter().map(|d| num(d.event)));
            }
            got
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut all = HashSet::new();
    for c in consumers {
        let got = c.await.unwrap();
        // Each member sees any one key's events in order.
        let mut last: HashMap<bytes::Bytes, u64> = HashMap::new();
        for (k, n) in got {
            if let Some(prev) = last.insert(k.clone(), n) {
                assert!(n > prev, "key {k:?} out of order: {n} after {prev}");
            }
            all.insert(n);
        }
    }
    assert_eq!(all.len() as u64, PRODUCERS * PER, "every event delivered");
    let g = &log.groups("t").await.unwrap()[0];
    assert_eq!((g.pending, g.lag), (0, 0));
}
