//! Disk-backend specifics: recovery from torn and damaged segments, locking,
//! segment deletion under retention.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_events::{
    Compaction, DiskLog, DiskOptions, Error, Event, EventLog, Follower, Fsync, Options, Retention,
    TopicOptions,
};

fn options() -> DiskOptions {
    DiskOptions {
        fsync: Fsync::Always,
        segment_bytes: 8 << 10,
        maintenance_interval: None,
        ..DiskOptions::default()
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut s: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    s.sort();
    s
}

async fn fill(log: &DiskLog, n: u64) {
    for i in 0..n {
        let batch = (0..20)
            .map(|j| Event::new("t", format!("k{j}"), format!("{:0100}", i * 20 + j)))
            .collect();
        log.publish("t", batch).await.unwrap();
    }
}

async fn count(log: &DiskLog) -> u64 {
    log.topics()
        .await
        .unwrap()
        .iter()
        .find(|t| t.name == "t")
        .map_or(0, |t| t.events())
}

#[tokio::test]
async fn torn_tail_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    fill(&log, 3).await;
    log.close().await.unwrap();
    drop(log);
    // A half-written record at the end of the newest segment, as a crash leaves it.
    let last = segments(dir.path()).pop().unwrap();
    let before = fs::metadata(&last).unwrap().len();
    let mut f = OpenOptions::new().append(true).open(&last).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
    drop(f);
    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    assert_eq!(count(&log).await, 60);
    assert_eq!(fs::metadata(&last).unwrap().len(), before, "tail truncated");
    // And the log goes on.
    fill(&log, 1).await;
    log.close().await.unwrap();
    drop(log);
    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    assert_eq!(count(&log).await, 80);
}

#[tokio::test]
async fn damage_in_an_older_segment_is_reported_with_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    fill(&log, 30).await;
    log.close().await.unwrap();
    drop(log);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "small segments roll: {segs:?}");
    let victim = &segs[1];
    let mut bytes = fs::read(victim).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xFF;
    fs::write(victim, &bytes).unwrap();
    match DiskLog::open(dir.path(), options()).await {
        Err(Error::Corrupt { path, position, .. }) => {
            assert_eq!(&path, victim);
            assert!(
                position >= 8 && position as usize <= at,
                "{position} vs {at}"
            );
            let msg = Error::Corrupt {
                path,
                position,
                reason: "x".into(),
            }
            .to_string();
            assert!(msg.contains(".log") && msg.contains("byte"));
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("a damaged segment was accepted"),
    }
}

/// One flipped byte in the newest segment, with acknowledged records after
/// it, is damage, not a torn write: the log refuses to open (it used to cut
/// the file there and drop them silently). `check` shows it, `repair`
/// truncates the log there and keeps what it cut off.
#[tokio::test]
async fn a_flipped_byte_in_the_newest_segment_is_damage_not_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let big = DiskOptions {
        segment_bytes: 64 << 20,
        ..options()
    };
    let log = DiskLog::open(dir.path(), big.clone()).await.unwrap();
    fill(&log, 50).await;
    log.close().await.unwrap();
    drop(log);
    let segs = segments(dir.path());
    let newest = segs.last().unwrap().clone();
    let mut bytes = fs::read(&newest).unwrap();
    let at = bytes.len() / 3;
    bytes[at] ^= 0x01;
    fs::write(&newest, &bytes).unwrap();

    let err = DiskLog::open(dir.path(), big.clone()).await.err().unwrap();
    let Error::Corrupt {
        path,
        position,
        reason,
    } = &err
    else {
        panic!("unexpected error {err}");
    };
    assert_eq!(path, &newest);
    assert!(*position as usize <= at, "{position} vs {at}");
    assert!(reason.contains("valid records follow"), "{reason}");
    assert!(reason.contains("baton events repair"), "{reason}");
    assert_eq!(fs::read(&newest).unwrap(), bytes, "nothing was cut");

    let reports = baton_events::disk::check(dir.path()).unwrap();
    let damage = reports.last().unwrap().damage.clone().unwrap();
    assert_eq!(damage.position, *position);
    assert!(!damage.is_torn_tail());
    // 1,000 events were published, in records of at most 20: the damaged
    // one holds what is neither before nor after it.
    let before = reports.last().unwrap().events;
    let in_damaged = 1000 - before - damage.events_after;
    assert!((1..=20).contains(&in_damaged), "{before} {damage:?}");

    let repaired = baton_events::disk::repair(dir.path()).unwrap().unwrap();
    assert_eq!(repaired.position, *position);
    assert_eq!(repaired.events_cut, damage.events_after);
    let saved = fs::read(&repaired.saved[0]).unwrap();
    assert_eq!(saved, bytes[*position as usize..], "what was cut is kept");
    let log = DiskLog::open(dir.path(), big.clone()).await.unwrap();
    assert_eq!(count(&log).await, before);
    // Nothing left to repair, and the log goes on.
    fill(&log, 1).await;
    log.close().await.unwrap();
    drop(log);
    assert_eq!(baton_events::disk::repair(dir.path()).unwrap(), None);
}

#[tokio::test]
async fn a_directory_is_opened_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    assert!(matches!(
        DiskLog::open(dir.path(), options()).await,
        Err(Error::Locked(_))
    ));
    log.close().await.unwrap();
    drop(log);
    DiskLog::open(dir.path(), options()).await.unwrap();
}

#[tokio::test]
async fn unusable_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    fs::write(&file, b"x").unwrap();
    let err = DiskLog::open(&file, options()).await.err().unwrap();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.to_string().contains("not-a-dir"));
}

#[tokio::test]
async fn retention_deletes_segments_and_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.log = Options {
        topic_defaults: TopicOptions {
            partitions: 2,
            retention: Retention {
                max_events: Some(200),
                max_bytes: None,
                max_age: None,
            },
            ..TopicOptions::default()
        },
        ..Options::default()
    };
    let log = DiskLog::open(dir.path(), o.clone()).await.unwrap();
    fill(&log, 5).await;
    let p = log.poll("t", "g", "m", 1000, Duration::ZERO).await.unwrap();
    log.ack("t", "g", &p.offsets()).await.unwrap();
    fill(&log, 60).await;
    let before = segments(dir.path()).len();
    let deleted = log.compact().await.unwrap().deleted;
    assert!(deleted > 0, "nothing deleted of {before} segments");
    assert_eq!(segments(dir.path()).len(), before - deleted);
    let info = log.topics().await.unwrap();
    let t = info.iter().find(|t| t.name == "t").unwrap();
    let ends: Vec<u64> = t.partitions.iter().map(|p| p.end).collect();
    log.close().await.unwrap();
    drop(log);

    let log = DiskLog::open(dir.path(), o).await.unwrap();
    let info = log.topics().await.unwrap();
    let t = info.iter().find(|t| t.name == "t").unwrap();
    assert_eq!(t.partitions.iter().map(|p| p.end).collect::<Vec<_>>(), ends);
    assert!(t.events() <= 200);
    // The group still exists and resumes within the retained range.
    let g = &log.groups("t").await.unwrap()[0];
    assert_eq!(g.name, "g");
    for (c, p) in g.committed.iter().zip(&t.partitions) {
        assert!(c.offset >= p.start && c.offset <= p.end);
    }
    // Offsets keep growing.
    let o = log
        .publish("t", vec![Event::new("t", "k1", "x")])
        .await
        .unwrap();
    assert_eq!(o[0].offset, ends[o[0].partition as usize]);
}

/// A group created in a later segment than its topic, whose segment retention then
/// deleted: the topic's record is only in the state written at the tail, after the
/// group's. Opening used to fail ("record for unknown topic id").
#[tokio::test]
async fn a_group_younger_than_its_topic_survives_the_topic_segment_going() {
    let dir = tempfile::tempdir().unwrap();
    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    log.create_topic("t", topic(1, Some(200))).await.unwrap();
    fill(&log, 30).await;
    let p = log.poll("t", "g", "m", 10, Duration::ZERO).await.unwrap();
    log.ack("t", "g", &p.offsets()).await.unwrap();
    fill(&log, 2).await;
    let c = log.compact().await.unwrap();
    assert!(c.deleted > 0, "{c:?}");
    let before = contents(&log, false).await;
    log.close().await.unwrap();
    drop(log);
    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    same(&contents(&log, false).await, &before, "reopened");
    assert_eq!(log.groups("t").await.unwrap()[0].name, "g");
}

#[tokio::test]
async fn fsync_policies_parse() {
    assert_eq!("always".parse::<Fsync>().unwrap(), Fsync::Always);
    assert_eq!("never".parse::<Fsync>().unwrap(), Fsync::Never);
    assert_eq!(
        "interval:250".parse::<Fsync>().unwrap(),
        Fsync::Interval(Duration::from_millis(250))
    );
    assert!("sometimes".parse::<Fsync>().is_err());
}

#[tokio::test]
async fn a_follower_reads_a_log_another_handle_owns() {
    let dir = tempfile::tempdir().unwrap();
    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    log.publish("other", vec![Event::new("t", "k", "not mine")])
        .await
        .unwrap();
    fill(&log, 2).await;
    let mut f = Follower::new(dir.path(), "t");
    let first = f.read_new(usize::MAX).unwrap();
    assert_eq!(first.len(), 40);
    assert!(f.read_new(usize::MAX).unwrap().is_empty());
    // Across several segment rolls.
    fill(&log, 20).await;
    let mut more = Vec::new();
    loop {
        let r = f.read_new(100).unwrap();
        if r.is_empty() {
            break;
        }
        more.extend(r);
    }
    assert_eq!(more.len(), 400);
    // Each event once, at its offset.
    let offsets: std::collections::HashSet<_> =
        first.iter().chain(&more).map(|r| r.offset).collect();
    assert_eq!(offsets.len(), 440);
    for r in first.iter().chain(&more).step_by(37) {
        let stored = log
            .read("t", r.offset.partition, r.offset.offset, 1)
            .await
            .unwrap();
        assert_eq!(stored[0].event, r.event);
    }
    let mut late = Follower::new(dir.path(), "t");
    late.skip_to_end().unwrap();
    fill(&log, 1).await;
    assert_eq!(late.read_new(usize::MAX).unwrap().len(), 20);
    assert!(
        Follower::new(dir.path(), "nope")
            .read_new(10)
            .unwrap()
            .is_empty()
    );
}

/// Everything a reopened log must give back: each topic's retained range and events,
/// and with `groups` each group's committed offsets. (A log's memory may hold a group
/// below its partition's start, where opening it again moves it to the lowest offset
/// not acknowledged at or above the start, so memory and a reopened log are compared
/// without them.)
async fn contents(log: &DiskLog, groups: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut topics = log.topics().await.unwrap();
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    for t in topics {
        for (p, part) in t.partitions.iter().enumerate() {
            out.push(format!("{} {p}: {}..{}", t.name, part.start, part.end));
            let mut at = part.start;
            while at < part.end {
                let rs = log.read(&t.name, p as u32, at, 1000).await.unwrap();
                assert!(!rs.is_empty(), "{} {p} has nothing at {at}", t.name);
                for r in &rs {
                    out.push(format!(
                        "{} {:?} {:?}",
                        r.offset.offset, r.event.id, r.event.payload
                    ));
                }
                at = rs.last().unwrap().offset.offset + 1;
            }
        }
        if groups {
            for g in log.groups(&t.name).await.unwrap() {
                out.push(format!("{} group {} at {:?}", t.name, g.name, g.committed));
            }
        }
    }
    out
}

/// Asserts two [`contents`] are equal, showing where they differ.
fn same(got: &[String], want: &[String], what: &str) {
    if got != want {
        let at = got.iter().zip(want).take_while(|(a, b)| a == b).count();
        panic!(
            "{what}: differs at line {at} of {} and {}: got {:?}, want {:?}",
            got.len(),
            want.len(),
            &got[at.saturating_sub(2)..(at + 3).min(got.len())],
            &want[at.saturating_sub(2)..(at + 3).min(want.len())]
        );
    }
}

/// The bytes and number of the segment files in `dir`.
fn disk_use(dir: &Path) -> (u64, usize) {
    let s = segments(dir);
    (
        s.iter().map(|p| fs::metadata(p).unwrap().len()).sum(),
        s.len(),
    )
}

fn topic(partitions: u32, max_events: Option<u64>) -> TopicOptions {
    TopicOptions {
        partitions,
        retention: Retention {
            max_events,
            max_bytes: None,
            max_age: None,
        },
        ..TopicOptions::default()
    }
}

/// A busy topic keeping its newest 150 events and an audit trail keeping everything:
/// one audit event per busy batch, as the server writes them.
async fn busy_and_audit(log: &DiskLog, batches: u64) {
    for i in 0..batches {
        let batch = (0..20)
            .map(|j| Event::new("b", format!("k{j}"), format!("{:0100}", i * 20 + j)))
            .collect();
        log.publish("busy", batch).await.unwrap();
        log.publish("audit", vec![Event::new("a", "", format!("audit {i}"))])
            .await
            .unwrap();
    }
}

async fn open_busy_and_audit(dir: &Path) -> DiskLog {
    let log = DiskLog::open(dir, options()).await.unwrap();
    log.create_topic("busy", topic(2, Some(150))).await.unwrap();
    log.create_topic("audit", topic(1, None)).await.unwrap();
    log
}

/// The soak's finding: a topic that keeps its events long pinned every segment a busy
/// topic filled, so the disk grew with every event written.
#[tokio::test]
async fn a_long_lived_topic_no_longer_pins_the_segments_of_a_busy_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_busy_and_audit(dir.path()).await;
    busy_and_audit(&log, 400).await;
    let p = log
        .poll("busy", "g", "m", 100, Duration::ZERO)
        .await
        .unwrap();
    log.ack("busy", "g", &p.offsets()[..60]).await.unwrap();
    let (written, files) = disk_use(dir.path());
    assert!(files > 100, "{files} segments");
    let mut total = Compaction::default();
    loop {
        let c = log.compact().await.unwrap();
        if c == Compaction::default() {
            break;
        }
        total.deleted += c.deleted;
        total.rewritten += c.rewritten;
        total.merged += c.merged;
        total.freed_bytes += c.freed_bytes;
    }
    let (left, files_left) = disk_use(dir.path());
    // What is live: 150 busy events and 400 audit events (~22 and ~40 KB framed), in
    // files of an eighth to half a segment.
    assert!(
        left < 80 << 10,
        "{left} of {written} bytes left in {files_left} files"
    );
    // (Measured: 1.18 MB in 135 segments → 72 KB in 27 files.)
    assert!(files_left <= 32, "{files_left} files");
    assert!(total.rewritten > 0 && total.merged > 0, "{total:?}");
    // Given back: what left the disk, plus the state each pass wrote at the tail.
    assert!(
        total.freed_bytes >= written - left && total.freed_bytes <= written,
        "{total:?}, {written} → {left}"
    );
    let before = contents(&log, true).await;
    log.close().await.unwrap();
    drop(log);

    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    same(&contents(&log, true).await, &before, "reopened");
    let audit = log.read("audit", 0, 0, 1000).await.unwrap();
    assert_eq!(audit.len(), 400);
    assert_eq!(audit[399].event.payload, "audit 399".as_bytes());
    // Offsets go on where they were.
    let end = log.topics().await.unwrap();
    let busy = end.iter().find(|t| t.name == "busy").unwrap();
    let o = log
        .publish("busy", vec![Event::new("b", "k1", "x")])
        .await
        .unwrap();
    assert_eq!(o[0].offset, busy.partitions[o[0].partition as usize].end);
}

/// A crash can stop a compaction after its rename and before it deleted the segments it
/// merged (or with its temporary file half written): the log opens to the same state.
#[tokio::test]
async fn a_compaction_interrupted_after_its_rename_replays_the_same_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_busy_and_audit(dir.path()).await;
    busy_and_audit(&log, 120).await;
    let p = log
        .poll("busy", "g", "m", 50, Duration::ZERO)
        .await
        .unwrap();
    log.ack("busy", "g", &p.offsets()).await.unwrap();
    log.close().await.unwrap();
    drop(log);
    let before = tempfile::tempdir().unwrap();
    copy_dir(dir.path(), before.path());

    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    let c = log.compact().await.unwrap();
    assert!(c.merged > 0, "{c:?}");
    let after = contents(&log, true).await;
    log.close().await.unwrap();
    drop(log);

    // The segments as they were, then what the compaction wrote over them.
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(before.path(), crashed.path());
    copy_dir(dir.path(), crashed.path());
    fs::write(
        crashed.path().join("00000000000000000007.compacting"),
        b"BATNLOG1 half",
    )
    .unwrap();
    let log = DiskLog::open(crashed.path(), options()).await.unwrap();
    same(&contents(&log, true).await, &after, "after a crash");
    assert!(
        !crashed
            .path()
            .join("00000000000000000007.compacting")
            .exists()
    );
    log.close().await.unwrap();

    let log = DiskLog::open(dir.path(), options()).await.unwrap();
    same(&contents(&log, true).await, &after, "reopened");
}

fn copy_dir(from: &Path, to: &Path) {
    for e in fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "log") {
            fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
        }
    }
}

/// Seeded random publishes to topics of different retentions, acks, seeks,
/// compactions and reopens. A compacted log replays to exactly what the same log
/// replays to uncompacted (a copy taken just before), groups included; and a reopened
/// log serves the events it served before.
#[tokio::test]
async fn compaction_keeps_exactly_what_retention_keeps() {
    for seed in 1..=8u64 {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = move |n: u64| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng % n
        };
        let mut log = DiskLog::open(dir.path(), options()).await.unwrap();
        log.create_topic("busy", topic(2, Some(120))).await.unwrap();
        log.create_topic("runs", topic(3, Some(400))).await.unwrap();
        log.create_topic("audit", topic(1, None)).await.unwrap();
        let mut compacted = Compaction::default();
        for step in 0..600 {
            match next(20) {
                0..=10 => {
                    let n = 1 + next(20);
                    let batch = (0..n)
                        .map(|j| Event::new("b", format!("k{}", next(7)), format!("{step}.{j}")))
                        .collect();
                    log.publish("busy", batch).await.unwrap();
                }
                11 => {
                    log.publish("audit", vec![Event::new("a", "", format!("{step}"))])
                        .await
                        .unwrap();
                }
                12 => {
                    // Topics (and their records) appear as the log goes on.
                    let topic = format!("new{}", next(6));
                    log.publish(&topic, vec![Event::new("n", "", format!("{step}"))])
                        .await
                        .unwrap();
                }
                13 | 14 => {
                    let batch = (0..1 + next(4))
                        .map(|j| Event::new("r", format!("run{}", next(30)), format!("{step}.{j}")))
                        .collect();
                    log.publish("runs", batch).await.unwrap();
                }
                15 | 16 => {
                    let topic = if next(2) == 0 { "busy" } else { "runs" };
                    let max = 1 + next(40) as usize;
                    let p = log
                        .poll(topic, "g", "m", max, Duration::ZERO)
                        .await
                        .unwrap();
                    let offsets: Vec<_> = p.offsets().into_iter().filter(|_| next(3) > 0).collect();
                    log.ack(topic, "g", &offsets).await.unwrap();
                }
                17 => {
                    let c = log.compact().await.unwrap();
                    compacted.rewritten += c.rewritten;
                    compacted.merged += c.merged;
                }
                18 if next(4) == 0 => {
                    log.seek("busy", "g", baton_events::SeekTo::Latest)
                        .await
                        .unwrap();
                }
                19 => {
                    // Closed, copied, compacted: both replay the same.
                    let served = contents(&log, false).await;
                    log.close().await.unwrap();
                    drop(log);
                    let twin = tempfile::tempdir().unwrap();
                    copy_dir(dir.path(), twin.path());
                    log = DiskLog::open(dir.path(), options()).await.unwrap();
                    let what = format!("seed {seed}, step {step}");
                    same(&contents(&log, false).await, &served, &what);
                    let c = log.compact().await.unwrap();
                    compacted.rewritten += c.rewritten;
                    compacted.merged += c.merged;
                    log.close().await.unwrap();
                    drop(log);
                    log = DiskLog::open(dir.path(), options()).await.unwrap();
                    let uncompacted = DiskLog::open(twin.path(), options()).await.unwrap();
                    same(
                        &contents(&log, true).await,
                        &contents(&uncompacted, true).await,
                        &what,
                    );
                    uncompacted.close().await.unwrap();
                }
                _ => {}
            }
        }
        assert!(
            compacted.rewritten > 0 && compacted.merged > 0,
            "seed {seed}: {compacted:?}"
        );
        log.close().await.unwrap();
    }
}

/// A follower reading segments that compaction rewrites and merges under it returns
/// every event once, in order.
#[tokio::test]
async fn a_follower_reads_through_compactions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_busy_and_audit(dir.path()).await;
    let mut f = Follower::new(dir.path(), "audit");
    let mut seen = Vec::new();
    for round in 0..6 {
        busy_and_audit(&log, 40).await;
        seen.extend(f.read_new(7 + round).unwrap());
        log.compact().await.unwrap();
        seen.extend(f.read_new(13).unwrap());
    }
    loop {
        let r = f.read_new(100).unwrap();
        if r.is_empty() {
            break;
        }
        seen.extend(r);
    }
    let payloads: Vec<String> = seen
        .iter()
        .map(|r| String::from_utf8_lossy(&r.event.payload).into_owned())
        .collect();
    let expected: Vec<String> = (0..6)
        .flat_map(|_| (0..40).map(|i| format!("audit {i}")))
        .collect();
    assert_eq!(payloads, expected);
    let offsets: Vec<u64> = seen.iter().map(|r| r.offset.offset).collect();
    assert_eq!(offsets, (0..240).collect::<Vec<_>>());
}

/// The disk fills under a publisher: the write that found no space waits, new writes
/// are refused at once with `Stalled` (and the log says why), and once space is freed
/// the waiting write goes through and the log goes on, without a restart and without
/// losing or doubling anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_until_space_returns_then_goes_on() {
    let Some(fs) = baton_events::testing::Tmpfs::mount(2 << 20) else {
        return;
    };
    let o = DiskOptions {
        segment_bytes: 64 << 10,
        ..options()
    };
    let dir = fs.path().join("log");
    let log = DiskLog::open(&dir, o.clone()).await.unwrap();
    // Fill the disk but for about 200 KB.
    let ballast = fs.path().join("ballast");
    {
        let mut f = fs::File::create(&ballast).unwrap();
        while f.write_all(&[7; 64 << 10]).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(200 << 10)).unwrap();
    }
    let batch = |i: u64| -> Vec<Event> {
        (0..10)
            .map(|j| Event::new("t", format!("k{j}"), format!("{i}.{j}:{:01000}", 0)))
            .collect()
    };
    let mut stored = 0;
    let stalled = loop {
        let l = log.clone();
        let b = batch(stored);
        let mut publish = tokio::spawn(async move { l.publish("t", b).await });
        match tokio::time::timeout(Duration::from_secs(2), &mut publish).await {
            Ok(done) => {
                done.unwrap().unwrap();
                stored += 10;
                assert!(stored < 10_000, "the disk never filled");
            }
            Err(_) => break publish,
        }
    };
    let why = log.failure().expect("the log says why it refuses writes");
    assert!(matches!(why, Error::Stalled(_)), "{why}");
    assert!(why.to_string().contains("No space left"), "{why}");
    // New writes are refused at once, changing nothing: not even the dedup
    // window, so the same events published again later are stored.
    let retried = batch(99_999);
    let refused = log.publish("t", retried.clone()).await.unwrap_err();
    assert!(matches!(refused, Error::Stalled(_)), "{refused}");
    assert!(!stalled.is_finished());

    fs::remove_file(&ballast).unwrap();
    let offsets = tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("the stalled write went through once space returned")
        .unwrap()
        .unwrap();
    assert_eq!(offsets.len(), 10);
    stored += 10;
    assert!(log.failure().is_none());
    let again = log.publish("t", retried.clone()).await.unwrap();
    for (offset, event) in again.iter().zip(&retried) {
        let read = log
            .read("t", offset.partition, offset.offset, 1)
            .await
            .unwrap();
        assert_eq!(read.len(), 1, "{offset:?} holds nothing");
        assert_eq!(read[0].event.id, event.id, "{offset:?} holds another event");
    }
    stored += 10;
    log.publish("t", batch(100_000)).await.unwrap();
    stored += 10;
    assert_eq!(count(&log).await, stored);
    log.close().await.unwrap();
    drop(log);

    let log = DiskLog::open(&dir, o).await.unwrap();
    assert_eq!(count(&log).await, stored);
    let mut payloads = std::collections::HashSet::new();
    for p in log.topics().await.unwrap()[0].partitions.iter().enumerate() {
        for r in log.read("t", p.0 as u32, p.1.start, 100_000).await.unwrap() {
            assert!(payloads.insert(r.event.payload.clone()), "stored twice");
        }
    }
    assert_eq!(payloads.len() as u64, stored);
    log.close().await.unwrap();
}
