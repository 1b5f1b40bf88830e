//! Maintenance of the disk log's segments: retention applied, then the segments it
//! emptied deleted and those it thinned rewritten.
//!
//! Segments hold every topic's records together, so a topic that keeps its events
//! long (the audit trail, run transitions) leaves a little in every segment that a
//! busy topic fills. Deleting only segments that hold nothing live would keep all of
//! them. A pass therefore:
//!
//! 1. applies retention (in memory);
//! 2. picks its work among the closed segments: the oldest ones holding nothing live
//!    are deleted; a segment at least half of whose bytes are droppable (batches
//!    retention dropped, acks and seeks) is rewritten with what is live; consecutive
//!    segments that are small once rewritten are merged into one file, up to half a
//!    segment;
//! 3. writes at the tail the state those segments might hold (topics, groups with
//!    their committed offsets and the acks above them, each partition's start) and
//!    waits until it is durable: the acks and seeks of every older segment are then
//!    superseded;
//! 4. deletes; writes each run's live records to a temporary file, syncs it, renames
//!    it over the run's newest segment, syncs the directory, then deletes the run's
//!    older segments.
//!
//! # Why a crash at any point loses nothing
//!
//! A rewritten file takes the place of the segments it replaces in the log's order
//! (the newest one's sequence number) and holds, in their original order, every batch
//! still live and every partition-start record, after a partition-start record for
//! each partition it dropped batches of, so replay never sees a gap in a partition's
//! offsets. Until the rename the old files are intact (a
//! leftover temporary file is removed on open); the rename is atomic; a crash after it
//! and before a merged run's older segments are deleted leaves batches twice, in
//! order, and replay skips a batch it has restored already. Topics, groups and group
//! positions do not depend on the records dropped: step 3 made them durable after
//! them.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::codec::{self, Scan};
use super::writer::{self, SegmentInfo, Writer};
use crate::core::{Core, Journal, Topic};
use crate::{Error, Result};

/// What one maintenance pass of the disk log did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// Segments deleted: everything in them was past retention.
    pub deleted: usize,
    /// Segments rewritten with only what is still live (each segment of a merged run
    /// counts).
    pub rewritten: usize,
    /// Files fewer because runs of small segments were merged into one.
    pub merged: usize,
    /// Bytes of segment files given back.
    pub freed_bytes: u64,
}

/// The extension of a rewrite in progress, next to the segment it replaces.
pub(super) const TEMPORARY: &str = "compacting";

/// At most this many bytes of segments are read per pass (in segments), so that a
/// pass stays short; the next one goes on.
const PASS_SEGMENTS: u64 = 4;

pub(super) async fn maintain(core: Weak<Core<Writer>>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(core) = core.upgrade() else { return };
        match compact(&core).await {
            Ok(c) if c != Compaction::default() => tracing::debug!(
                deleted = c.deleted,
                rewritten = c.rewritten,
                merged = c.merged,
                freed_bytes = c.freed_bytes,
                "event log compacted"
            ),
            Ok(_) => {}
            Err(Error::Closed) => return,
            // Waiting for disk space: the writer says so, once.
            Err(Error::Stalled(_)) => {}
            Err(e) => tracing::warn!(error = %e, "event log maintenance failed"),
        }
    }
}

/// The work a pass picked.
struct Plan {
    doomed: Vec<(u64, PathBuf, u64)>,
    /// Runs of consecutive segments, each rewritten into its last one's file.
    runs: Vec<Vec<(u64, PathBuf, u64)>>,
}

/// One maintenance pass (see the module's documentation).
pub(super) async fn compact(core: &Core<Writer>) -> Result<Compaction> {
    let _one_at_a_time = core.journal.maintenance.lock().await;
    // Applies retention by age.
    let _ = core.topics();
    let mut starts: HashMap<(u32, u32), u64> = HashMap::new();
    for t in topics(core).values() {
        for (p, part) in t.parts.iter().enumerate() {
            let start = part.lock().unwrap_or_else(|e| e.into_inner()).start;
            starts.insert((t.id, p as u32), start);
        }
    }
    // A topic created since holds everything it has (retention only moves starts
    // forward, so a start read now is safe to use later).
    let start_of = |key: &(u32, u32)| starts.get(key).copied().unwrap_or(0);
    let plan = core
        .journal
        .with_segments(|segs| plan(segs, &start_of, core.journal.segment_bytes));
    if plan.doomed.is_empty() && plan.runs.is_empty() {
        return Ok(Compaction::default());
    }
    // Read after the plan: a topic or group whose record is in a segment the plan
    // picked is in the maps by now (they are created under their map's lock, with
    // their record appended before the lock is let go).
    write_state(core, &topics(core))?;
    core.journal.barrier().await?;

    let mut done = Compaction::default();
    for (seq, path, len) in &plan.doomed {
        fs::remove_file(path).map_err(|e| Error::io("deleting segment", path, e))?;
        tracing::debug!(segment = seq, "deleted a segment emptied by retention");
        done.deleted += 1;
        done.freed_bytes += len;
    }
    core.journal.with_segments(|segs| {
        segs.retain(|s| !plan.doomed.iter().any(|(seq, _, _)| *seq == s.seq))
    });
    if let Some((_, p, _)) = plan.doomed.first()
        && let Some(dir) = p.parent()
    {
        writer::sync_dir(dir)?;
    }
    for run in plan.runs {
        let starts = starts.clone();
        let (info, before) = tokio::task::spawn_blocking(move || {
            let before: u64 = run.iter().map(|(_, _, len)| len).sum();
            rewrite(&run, &starts).map(|info| ((info, run), before))
        })
        .await
        .map_err(|e| Error::Failed(format!("compaction task panicked: {e}")))??;
        let (info, run) = info;
        done.rewritten += run.len();
        done.merged += run.len() - 1;
        done.freed_bytes += before.saturating_sub(info.len);
        core.journal.with_segments(|segs| {
            segs.retain(|s| s.seq == info.seq || !run.iter().any(|(seq, _, _)| *seq == s.seq));
            if let Some(s) = segs.iter_mut().find(|s| s.seq == info.seq) {
                *s = info;
            }
        });
    }
    Ok(done)
}

/// Picks the segments to delete and the runs to rewrite; the active (last) segment is
/// never touched.
fn plan(segs: &[SegmentInfo], start_of: &impl Fn(&(u32, u32)) -> u64, segment_bytes: u64) -> Plan {
    let closed = &segs[..segs.len().saturating_sub(1)];
    let live = |s: &SegmentInfo| -> u64 {
        s.spans
            .iter()
            .filter(|(k, span)| span.end > start_of(k))
            .map(|(_, span)| span.bytes)
            .sum()
    };
    let droppable = |s: &SegmentInfo| -> u64 {
        let batches: u64 = s.spans.values().map(|span| span.bytes).sum();
        batches - live(s) + s.acks
    };
    let entry = |s: &SegmentInfo| (s.seq, s.path.clone(), s.len);
    let doomed: Vec<_> = closed
        .iter()
        .take_while(|s| live(s) == 0)
        .map(entry)
        .collect();
    let small = segment_bytes / 8;
    let worth = |run: &[&SegmentInfo]| {
        run.len() > 1
            || run
                .first()
                .is_some_and(|s| droppable(s) > 0 && droppable(s) * 2 >= s.len)
    };
    let mut runs = Vec::new();
    let mut flush = |run: &mut Vec<&SegmentInfo>| {
        if worth(run) {
            runs.push(run.iter().map(|s| entry(s)).collect());
        }
        run.clear();
    };
    let mut run: Vec<&SegmentInfo> = Vec::new();
    let mut run_size = 0;
    let mut read = 0;
    for s in &closed[doomed.len()..] {
        if read + s.len > PASS_SEGMENTS * segment_bytes {
            break;
        }
        let after = s.len.saturating_sub(droppable(s));
        if after < small {
            if run_size + after > segment_bytes / 2 {
                flush(&mut run);
                run_size = 0;
            }
            run.push(s);
            run_size += after;
            read += s.len;
            continue;
        }
        flush(&mut run);
        run_size = 0;
        if worth(&[s]) {
            flush(&mut vec![s]);
            read += s.len;
        }
    }
    flush(&mut run);
    Plan { doomed, runs }
}

fn topics(core: &Core<Writer>) -> HashMap<u32, Arc<Topic>> {
    core.topics
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .map(|t| (t.id, t.clone()))
        .collect()
}

/// Writes at the tail every topic, each partition's start and every group's position
/// and the acks above it: what the segments about to go may hold.
fn write_state(core: &Core<Writer>, topics: &HashMap<u32, Arc<Topic>>) -> Result<()> {
    for t in topics.values() {
        core.journal.topic_created(t.id, &t.name, &t.options)?;
        for (p, part) in t.parts.iter().enumerate() {
            let start = part.lock().unwrap_or_else(|e| e.into_inner()).start;
            core.journal
                .raw(|b| codec::put_start(b, t.id, p as u32, start))?;
        }
        for g in t.groups() {
            core.journal.group_created(t.id, g.id, &g.name)?;
            let guards: Vec<_> = g
                .parts
                .iter()
                .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
                .collect();
            let mut positions = Vec::with_capacity(guards.len());
            let mut acks = Vec::new();
            for (p, gp) in guards.iter().enumerate() {
                let c = gp.committed();
                positions.push((p as u32, c));
                let above = gp.acked_above(c);
                if !above.is_empty() {
                    acks.push((p as u32, above.into_iter().map(|o| (o, 1)).collect()));
                }
            }
            core.journal.seek(t.id, g.id, &positions)?;
            if !acks.is_empty() {
                core.journal.acked(t.id, g.id, &acks)?;
            }
        }
    }
    Ok(())
}

/// Rewrites a run of consecutive segments into its newest one's file, keeping what is
/// live (see the module's documentation). Returns that file's new table.
fn rewrite(run: &[(u64, PathBuf, u64)], starts: &HashMap<(u32, u32), u64>) -> Result<SegmentInfo> {
    let Some((seq, target, _)) = run.last() else {
        return Err(Error::Failed("an empty compaction run".into()));
    };
    let mut info = SegmentInfo::new(*seq, target.clone());
    let mut kept = Vec::new();
    let mut dropped = HashSet::new();
    for (_, path, _) in run {
        let data = Bytes::from(fs::read(path).map_err(|e| Error::io("reading segment", path, e))?);
        let mut at = codec::MAGIC.len();
        loop {
            match codec::scan(&data, at) {
                Scan::End => break,
                Scan::Bad(reason) => {
                    return Err(Error::Corrupt {
                        path: path.clone(),
                        position: at as u64,
                        reason,
                    });
                }
                Scan::Record(body, next) => {
                    let frame = &data[at..next];
                    at = next;
                    match body[0] {
                        // Superseded by the state written at the tail.
                        codec::ACK | codec::SEEK | codec::TOPIC | codec::GROUP => {}
                        codec::BATCH => {
                            let Some((t, p, end)) = codec::batch_span(&body) else {
                                return Err(Error::Corrupt {
                                    path: path.clone(),
                                    position: (at - frame.len()) as u64,
                                    reason: "batch record too short".into(),
                                });
                            };
                            if end > starts.get(&(t, p)).copied().unwrap_or(0) {
                                kept.extend_from_slice(frame);
                                info.spans
                                    .entry((t, p))
                                    .or_default()
                                    .add(end, frame.len() as u64);
                            } else {
                                dropped.insert((t, p));
                            }
                        }
                        _ => kept.extend_from_slice(frame),
                    }
                }
            }
        }
    }
    let mut out = codec::MAGIC.to_vec();
    let mut dropped: Vec<_> = dropped.into_iter().collect();
    dropped.sort_unstable();
    for (t, p) in dropped {
        if let Some(&start) = starts.get(&(t, p)) {
            codec::put_start(&mut out, t, p, start);
        }
    }
    out.extend_from_slice(&kept);
    info.len = out.len() as u64;

    let temporary = target.with_extension(TEMPORARY);
    let written = (|| {
        let mut f = File::create(&temporary)?;
        f.write_all(&out)?;
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temporary);
        return Err(Error::io("writing compacted segment", &temporary, e));
    }
    fs::rename(&temporary, target).map_err(|e| Error::io("replacing segment", target, e))?;
    let dir = target.parent().unwrap_or(Path::new("."));
    writer::sync_dir(dir)?;
    for (_, path, _) in &run[..run.len() - 1] {
        fs::remove_file(path).map_err(|e| Error::io("deleting merged segment", path, e))?;
    }
    if run.len() > 1 {
        writer::sync_dir(dir)?;
    }
    tracing::debug!(
        segment = seq,
        segments = run.len(),
        bytes = info.len,
        "rewrote segments"
    );
    Ok(info)
}

/// Removes what a compaction interrupted by a crash left: its temporary file (the
/// segment it was to replace is intact).
pub(super) fn remove_leftovers(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))? {
        let path = entry.map_err(|e| Error::io("listing", dir, e))?.path();
        if path.extension().is_some_and(|e| e == TEMPORARY) {
            tracing::warn!(path = %path.display(), "removing an interrupted compaction's file");
            fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::writer::Span;

    fn seg(seq: u64, len: u64, spans: &[((u32, u32), u64, u64)], acks: u64) -> SegmentInfo {
        let mut s = SegmentInfo::new(seq, PathBuf::from(format!("{seq}.log")));
        s.len = len;
        s.acks = acks;
        for &(k, end, bytes) in spans {
            s.spans.insert(k, Span { end, bytes });
        }
        s
    }

    fn seqs(runs: &[Vec<(u64, PathBuf, u64)>]) -> Vec<Vec<u64>> {
        runs.iter()
            .map(|r| r.iter().map(|(s, _, _)| *s).collect())
            .collect()
    }

    #[test]
    fn picks_dead_prefix_thinned_segments_and_small_runs() {
        const MB: u64 = 1 << 20;
        // Topic 1 (busy) keeps offsets from 500; topic 2 (the audit trail) all.
        let start_of = |k: &(u32, u32)| if k.0 == 1 { 500 } else { 0 };
        let segs = vec![
            seg(0, 64 * MB, &[((1, 0), 100, 64 * MB)], 0),
            // Mostly dead: rewritten; small afterwards, so merged with the next.
            seg(1, 64 * MB, &[((1, 0), 200, 62 * MB), ((2, 0), 10, MB)], MB),
            seg(2, 64 * MB, &[((1, 0), 300, 62 * MB), ((2, 0), 20, MB)], MB),
            // Live: left alone; it ends the run.
            seg(3, 64 * MB, &[((1, 0), 600, 63 * MB), ((2, 0), 30, MB)], 0),
            // Small already and nothing to drop, alone: not worth a rewrite.
            seg(4, MB, &[((2, 0), 40, MB)], 0),
            // Active.
            seg(5, MB, &[((1, 0), 700, MB)], 0),
        ];
        let p = plan(&segs, &start_of, 64 * MB);
        assert_eq!(p.doomed.iter().map(|d| d.0).collect::<Vec<_>>(), [0]);
        assert_eq!(seqs(&p.runs), [vec![1, 2]]);

        // A segment rewritten already, with nothing more to drop, is left alone.
        let segs = vec![seg(7, MB, &[((2, 0), 40, MB)], 0), seg(8, 0, &[], 0)];
        let p = plan(&segs, &start_of, 64 * MB);
        assert!(p.doomed.is_empty() && p.runs.is_empty());

        // Half droppable, not small afterwards: rewritten alone.
        let segs = vec![
            seg(
                1,
                64 * MB,
                &[((1, 0), 600, 32 * MB), ((1, 1), 20, 32 * MB)],
                0,
            ),
            seg(2, 0, &[], 0),
        ];
        let start_of = |k: &(u32, u32)| if k.1 == 0 { 0 } else { 500 };
        assert_eq!(seqs(&plan(&segs, &start_of, 64 * MB).runs), [vec![1]]);
    }
}
