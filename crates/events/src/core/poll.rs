//! Polling a consumer group. A poll makes passes over the topic's partitions,
//! starting at the next partition in turn; each pass first claims the runs whose
//! visibility timeout expired (delivering them again, or dead-lettering them once
//! their deliveries are used up), then delivers new events to the partition's
//! owner. Between passes the poll waits for a publish, a release or the next
//! expiry, until its deadline.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::group::{Group, GroupPart, Run};
use super::partition::{PartLog, Topic};
use super::{AckRanges, Core, Journal, lock, push_range};
use crate::rules::check_name;
use crate::{Event, Offset, Polled, Result};

/// An event that ran out of deliveries.
struct DeadLetter {
    offset: Offset,
    deliveries: u32,
    event: Option<Event>,
}

/// What one pass collects.
struct Collected {
    out: Polled,
    /// Events that used up their deliveries, for the dead-letter topic.
    dead: Vec<DeadLetter>,
    /// Their offsets, acknowledged for the group once they are dead-lettered.
    acks: AckRanges,
}

/// What a pass works with: who polls, for how many events, and when.
struct Pass<'a> {
    member: &'a Arc<str>,
    max: usize,
    now: Instant,
    now_ms: u64,
    visibility: Duration,
    max_deliveries: u32,
}

impl<J: Journal> Core<J> {
    pub(crate) async fn poll(
        &self,
        topic: &str,
        group: &str,
        member: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Polled> {
        check_name("member", member)?;
        let t = match self.topic(topic) {
            Some(t) => t,
            None => self.create_topic(topic, None)?,
        };
        let g = self.group(&t, group)?;
        let member: Arc<str> = member.into();
        let deadline = Instant::now() + wait;
        loop {
            self.check_open()?;
            let notified = t.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut got = Collected {
                out: Polled::new(),
                dead: Vec::new(),
                acks: AckRanges::new(),
            };
            let earliest = self.poll_once(&t, &g, &member, max, &mut got);
            let Collected { out, dead, acks } = got;
            if !dead.is_empty() {
                self.dead_letter(&t, &g, dead, &acks).await?;
                if out.is_empty() {
                    continue;
                }
            }
            if !out.is_empty() || max == 0 {
                tokio::task::consume_budget().await;
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            let wake = earliest.map_or(deadline, |e| e.min(deadline)).max(now);
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    /// One pass over the partitions: claims expired runs, then delivers new events.
    /// Returns the earliest time a run held by someone becomes claimable.
    fn poll_once(
        &self,
        t: &Topic,
        g: &Group,
        member: &Arc<str>,
        max: usize,
        got: &mut Collected,
    ) -> Option<Instant> {
        let pass = Pass {
            member,
            max,
            now: Instant::now(),
            now_ms: self.clock.now_ms(),
            visibility: t.options.visibility_timeout,
            max_deliveries: t.options.max_deliveries,
        };
        lock(&g.members).insert(member.clone(), pass.now_ms);
        let n = t.parts.len();
        let first = g.rr.fetch_add(1, Ordering::Relaxed) % n;
        let mut earliest: Option<Instant> = None;
        for k in 0..n {
            let p = (first + k) % n;
            let mut gp = lock(&g.parts[p]);
            let gp = &mut *gp;
            if gp.earliest.is_some_and(|e| e <= pass.now) && got.out.len() < max {
                // Redelivery before new events.
                claim_expired(t, p, gp, &pass, got);
            }
            if got.out.len() < max
                && (gp.runs.is_empty() || gp.owner.as_deref().is_none_or(|o| o == &**member))
            {
                deliver_new(t, g, p, gp, &pass, &mut got.out);
            }
            if let Some(e) = gp.earliest {
                earliest = Some(earliest.map_or(e, |x: Instant| x.min(e)));
            }
        }
        earliest
    }

    async fn dead_letter(
        &self,
        t: &Topic,
        g: &Group,
        dead: Vec<DeadLetter>,
        acks: &AckRanges,
    ) -> Result<()> {
        let dlq_name = crate::dead_letter_topic(&t.name);
        let dlq = match self.topic(&dlq_name) {
            Some(d) => d,
            None => self.create_topic(&dlq_name, None)?,
        };
        let reason = Bytes::from(crate::rules::dead_letter_reason(t.options.max_deliveries));
        let mut batch = Vec::with_capacity(dead.len());
        for d in dead {
            let Some(mut e) = d.event else {
                continue;
            };
            tracing::warn!(
                topic = %t.name, group = %g.name, offset = %d.offset, deliveries = d.deliveries,
                "event exhausted its deliveries; moving it to the dead-letter topic"
            );
            let original = e.id;
            // A fresh id: two groups dead-lettering one event must both be recorded.
            e.id = crate::EventId::generate();
            e.headers.extend([
                ("dlq.reason".to_owned(), reason.clone()),
                ("dlq.topic".to_owned(), Bytes::from(t.name.to_string())),
                ("dlq.group".to_owned(), Bytes::from(g.name.to_string())),
                ("dlq.offset".to_owned(), Bytes::from(d.offset.to_string())),
                (
                    "dlq.deliveries".to_owned(),
                    Bytes::from(d.deliveries.to_string()),
                ),
                ("dlq.event_id".to_owned(), Bytes::from(original.to_string())),
            ]);
            batch.push(e);
        }
        if !batch.is_empty() {
            self.publish_to(&dlq, batch).await?;
        }
        if J::DURABLE && !acks.is_empty() {
            self.journal.acked(t.id, g.id, acks)?;
            self.journal.barrier().await?;
        }
        Ok(())
    }
}

/// Claims partition `p`'s runs whose visibility timeout expired, as many as fit in
/// the poll: each goes to the polling member again, or, once it has used up its
/// deliveries, to the dead letters.
fn claim_expired(t: &Topic, p: usize, gp: &mut GroupPart, pass: &Pass<'_>, got: &mut Collected) {
    let expired: Vec<u64> = gp
        .runs
        .iter()
        .filter(|(_, r)| r.deadline <= pass.now)
        .map(|(s, _)| *s)
        .collect();
    let log = lock(&t.parts[p]);
    let mut ranges = Vec::new();
    for s in expired {
        if got.out.len() >= pass.max {
            break;
        }
        if pass.max_deliveries > 0 && gp.runs[&s].deliveries >= pass.max_deliveries {
            exhaust(gp, s, p as u32, &log, &mut got.dead, &mut ranges);
        } else {
            claim(gp, s, p as u32, &log, pass, &mut got.out);
        }
    }
    drop(log);
    if !ranges.is_empty() {
        got.acks.push((p as u32, ranges));
    }
    gp.earliest = gp.runs.values().map(|r| r.deadline).min();
    gp.release_if_idle();
}

/// Takes the run starting at `s` from the group: its unacknowledged events become
/// dead letters, and their offsets go into `ranges`, to be acknowledged.
fn exhaust(
    gp: &mut GroupPart,
    s: u64,
    p: u32,
    log: &PartLog,
    dead: &mut Vec<DeadLetter>,
    ranges: &mut Vec<(u64, u32)>,
) {
    let run = gp.runs.remove(&s).unwrap_or_else(|| unreachable!());
    for (i, a) in run.acked.iter().enumerate() {
        if !a {
            let o = s + i as u64;
            dead.push(DeadLetter {
                offset: Offset::new(p, o),
                deliveries: run.deliveries,
                event: log.event(o).cloned(),
            });
            push_range(ranges, o);
        }
    }
}

/// Delivers the run starting at `s` again, to the polling member, cut to what fits
/// in the poll (the rest stays a run of its own, still expired).
fn claim(gp: &mut GroupPart, s: u64, p: u32, log: &PartLog, pass: &Pass<'_>, out: &mut Polled) {
    let room = (pass.max - out.len()) as u32;
    let run = &gp.runs[&s];
    if run.remaining > room {
        let mut cut = s;
        let mut seen = 0;
        for (i, a) in run.acked.iter().enumerate() {
            if !a {
                seen += 1;
                if seen > room {
                    cut = s + i as u64;
                    break;
                }
            }
        }
        gp.split(s, cut);
    }
    let Some(run) = gp.runs.get_mut(&s) else {
        return;
    };
    run.deliveries += 1;
    run.member = pass.member.clone();
    run.since_ms = pass.now_ms;
    run.deadline = pass.now + pass.visibility;
    serve_again(log, p, s, run, out);
    if run.remaining == 0 {
        gp.runs.remove(&s);
    }
    gp.owner = Some(pass.member.clone());
}

/// Serves the unacknowledged events of a run starting at `s`. Events that retention
/// dropped meanwhile cannot be delivered: they count as done.
fn serve_again(log: &PartLog, p: u32, s: u64, run: &mut Run, out: &mut Polled) {
    let stretches: Vec<(usize, usize)> = unacked(&run.acked).collect();
    for (i, j) in stretches {
        let before = out.len();
        log.slices(p, run.deliveries, s + i as u64, s + j as u64, out);
        let served = out.len() - before;
        for a in &mut run.acked[i + served..j] {
            *a = true;
            run.remaining -= 1;
        }
    }
}

/// Delivers partition `p`'s next new events to the polling member, as many as fit
/// in the poll, and keeps them as a run until they are acknowledged.
fn deliver_new(
    t: &Topic,
    g: &Group,
    p: usize,
    gp: &mut GroupPart,
    pass: &Pass<'_>,
    out: &mut Polled,
) {
    let log = lock(&t.parts[p]);
    if gp.next < log.start {
        tracing::warn!(
            topic = %t.name, group = %g.name, partition = p,
            skipped = log.start - gp.next,
            "consumer group fell behind retention; skipping dropped events"
        );
        gp.next = log.start;
        let keep = gp.skip.split_off(&log.start);
        gp.skip = keep;
    }
    let avail = log.visible.saturating_sub(gp.next);
    let take = avail.min((pass.max - out.len()) as u64);
    if take == 0 {
        return;
    }
    let s = gp.next;
    let (acked, remaining) = acked_ahead(gp, s, take);
    if remaining == take as u32 {
        log.slices(p as u32, 1, s, s + take, out);
    } else {
        for (i, j) in unacked(&acked) {
            log.slices(p as u32, 1, s + i as u64, s + j as u64, out);
        }
    }
    gp.next = s + take;
    if remaining > 0 {
        let deadline = pass.now + pass.visibility;
        gp.runs.insert(
            s,
            Run {
                len: take as u32,
                remaining,
                acked,
                member: pass.member.clone(),
                since_ms: pass.now_ms,
                deadline,
                deliveries: 1,
            },
        );
        gp.note_deadline(deadline);
        gp.owner = Some(pass.member.clone());
    }
}

/// Takes from `gp.skip` the offsets of `[s, s + take)` acknowledged before they
/// were delivered (known after a restart): the new run's acknowledged flags, and
/// how many of its events remain.
fn acked_ahead(gp: &mut GroupPart, s: u64, take: u64) -> (Vec<bool>, u32) {
    let mut acked = vec![false; take as usize];
    let mut remaining = take as u32;
    if !gp.skip.is_empty() {
        let rest = gp.skip.split_off(&(s + take));
        for o in std::mem::replace(&mut gp.skip, rest) {
            if o >= s {
                acked[(o - s) as usize] = true;
                remaining -= 1;
            }
        }
    }
    (acked, remaining)
}

/// The stretches `[i, j)` of `acked` with nothing acknowledged, in order.
fn unacked(acked: &[bool]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < acked.len() && acked[i] {
            i += 1;
        }
        if i == acked.len() {
            return None;
        }
        let j = acked[i..]
            .iter()
            .position(|a| *a)
            .map_or(acked.len(), |x| i + x);
        let stretch = (i, j);
        i = j;
        Some(stretch)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unacked_stretches() {
        let stretches = |a: &[bool]| unacked(a).collect::<Vec<_>>();
        assert_eq!(stretches(&[]), vec![]);
        assert_eq!(stretches(&[true, true]), vec![]);
        assert_eq!(stretches(&[false, false]), vec![(0, 2)]);
        assert_eq!(
            stretches(&[false, true, true, false, false, true, false]),
            vec![(0, 1), (3, 5), (6, 7)]
        );
    }
}
