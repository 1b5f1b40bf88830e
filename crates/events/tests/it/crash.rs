//! Kill a real process that publishes and acknowledges with `Fsync::Always`, at random
//! moments, many times; after each kill, everything it was told is durable must be
//! there and intact, and its consumer group must resume after what it acknowledged.
//!
//! The child is this test binary itself, re-run with `CHILD_ENV` set so that only
//! [`crash_child`] does work: no extra binary to build or locate.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use baton_events::{DiskLog, DiskOptions, Event, EventId, EventLog, Fsync, TopicOptions};

const CHILD_ENV: &str = "BATON_EVENTS_CRASH_CHILD_DIR";
const TOPIC: &str = "crash";
const GROUP: &str = "g";

fn options() -> DiskOptions {
    DiskOptions {
        fsync: Fsync::Always,
        // Small segments so kills also land around segment rolls.
        segment_bytes: 32 << 10,
        ..DiskOptions::default()
    }
}

/// The payload of event `seq`: verifiable on its own.
fn payload(seq: u64) -> String {
    format!("{seq}:{:016x}", seq.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

fn random() -> u64 {
    EventId::generate().0 as u64
}

/// The child: publishes and consumes until killed, printing what was acknowledged.
/// Ignored, so that it never counts as a passed test; its parent runs it with
/// `--ignored`.
#[test]
#[ignore = "the child process of the crash test, which runs it"]
fn crash_child() {
    let dir =
        std::env::var(CHILD_ENV).expect("run by the crash test, which sets the data directory");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = DiskLog::open(&dir, options()).await.expect("child open");
        let topic = TopicOptions {
            partitions: 3,
            ..TopicOptions::default()
        };
        log.create_topic(TOPIC, topic).await.expect("create topic");
        let first: u64 = std::env::var("BATON_EVENTS_CRASH_SEQ")
            .unwrap()
            .parse()
            .unwrap();
        let consumer = {
            let log = log.clone();
            tokio::spawn(async move {
                loop {
                    let p = log
                        .poll(
                            TOPIC,
                            GROUP,
                            "child",
                            1 + (random() % 40) as usize,
                            Duration::from_millis(20),
                        )
                        .await
                        .expect("poll");
                    let offsets = p.offsets();
                    log.ack(TOPIC, GROUP, &offsets).await.expect("ack");
                    for o in offsets {
                        println!("A {} {}", o.partition, o.offset);
                    }
                }
            })
        };
        let mut seq = first;
        loop {
            let n = 1 + random() % 120;
            let batch: Vec<Event> = (seq..seq + n)
                .map(|s| Event::new("crash.test", format!("key-{}", s % 11), payload(s)))
                .collect();
            let offsets = log.publish(TOPIC, batch).await.expect("publish");
            for (i, o) in offsets.iter().enumerate() {
                println!("P {} {} {}", o.partition, o.offset, seq + i as u64);
            }
            seq += n;
            if consumer.is_finished() {
                panic!("consumer stopped");
            }
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let started = Instant::now();
    // What the children were told is durable: offset → seq, and acknowledged offsets.
    let mut published: HashMap<(u32, u64), u64> = HashMap::new();
    let mut acked: HashSet<(u32, u64)> = HashSet::new();
    let mut next_seq = 0u64;
    let rounds = 20;
    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "--ignored",
                "crash::crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("BATON_EVENTS_CRASH_SEQ", next_seq.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            let mut r = BufReader::new(stdout);
            let mut line = String::new();
            // A line cut by the kill has no newline and is not counted.
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if line.ends_with('\n') {
                    lines.push(line.trim_end().to_owned());
                }
                line.clear();
            }
            lines
        });
        tokio::time::sleep(Duration::from_millis(60 + random() % 250)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let lines = reader.join().unwrap();
        for l in &lines {
            let f: Vec<&str> = l.split(' ').collect();
            match f[..] {
                ["P", p, o, s] => {
                    let s: u64 = s.parse().unwrap();
                    published.insert((p.parse().unwrap(), o.parse().unwrap()), s);
                    next_seq = next_seq.max(s + 1);
                }
                ["A", p, o] => {
                    acked.insert((p.parse().unwrap(), o.parse().unwrap()));
                }
                _ => {}
            }
        }
        // Sequence numbers of a killed child may have been stored without being
        // acknowledged; skip well past them so every stored seq stays unique.
        next_seq += 1_000_000;

        let log = DiskLog::open(dir.path(), options())
            .await
            .unwrap_or_else(|e| panic!("round {round}: reopening after SIGKILL failed: {e}"));
        // Every acknowledged event is there, intact, at its offset; every stored record
        // decodes to a well-formed event (a corrupt one would not).
        let mut stored = HashMap::new();
        for p in 0..3 {
            let mut from = 0;
            loop {
                let records = log.read(TOPIC, p, from, 10_000).await.unwrap();
                let Some(last) = records.last() else { break };
                from = last.offset.offset + 1;
                for r in records {
                    let text = std::str::from_utf8(&r.event.payload).unwrap().to_owned();
                    let seq: u64 = text.split(':').next().unwrap().parse().unwrap();
                    assert_eq!(text, payload(seq), "round {round}: damaged event served");
                    stored.insert((p, r.offset.offset), seq);
                }
            }
        }
        for (at, seq) in &published {
            assert_eq!(
                stored.get(at),
                Some(seq),
                "round {round}: acknowledged event {at:?} lost"
            );
        }
        // The group resumes after everything it acknowledged.
        let groups = log.groups(TOPIC).await.unwrap();
        if let Some(g) = groups.iter().find(|g| g.name == GROUP) {
            for c in &g.committed {
                for &(p, o) in &acked {
                    if p == c.partition && o >= c.offset {
                        // Acknowledged above the committed offset: must not come back.
                        let pending = log.read(TOPIC, p, o, 1).await.unwrap();
                        assert!(
                            !pending.is_empty(),
                            "round {round}: acked event {p}:{o} missing"
                        );
                    }
                }
            }
            let redelivered = log
                .poll(TOPIC, GROUP, "checker", 1_000_000, Duration::ZERO)
                .await
                .unwrap();
            for d in redelivered.iter() {
                let at = (d.offset.partition, d.offset.offset);
                assert!(
                    !acked.contains(&at),
                    "round {round}: acknowledged {at:?} redelivered"
                );
            }
        }
        log.close().await.unwrap();
    }
    eprintln!(
        "crash test: {rounds} kills, {} acknowledged publishes, {} acknowledged acks, {:?}",
        published.len(),
        acked.len(),
        started.elapsed()
    );
    assert!(
        !published.is_empty() && !acked.is_empty(),
        "children did no work"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "crash test too slow"
    );
}
