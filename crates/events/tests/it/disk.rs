//! Disk-backend specifics: recovery from torn and damaged segments, locking,
//! segment deletion under retention.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use baton_events::{
    DiskLog, DiskOptions, Error, Event, EventLog, Follower, Fsync, Options, Retention, TopicOptions,
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
    let deleted = log.compact().await.unwrap();
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
