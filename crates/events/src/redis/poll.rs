//! Polling, acknowledging and nacking on Redis: one script per pass that claims
//! expired deliveries (`XPENDING … IDLE` + `XCLAIM`, or dead letters once their
//! deliveries are used up) and then reads new events (`XREADGROUP`), and the
//! blocking wait on a connection of its own between passes. It exists apart
//! because delivery is where the at-least-once and per-key ordering guarantees
//! are kept, and that logic reads best in one place.

use super::*;

pub(super) async fn poll(
    log: &RedisLog,
    topic: &str,
    group: &str,
    member: &str,
    max: usize,
    wait: Duration,
) -> Result<Polled> {
    check_name("member", member)?;
    let t = log.topic_or_create(topic).await?;
    check_name("group", group)?;
    let deadline = Instant::now() + wait;
    loop {
        log.check_open()?;
        let pass = log
            .poll_once(&t, group, member, max, !wait.is_zero())
            .await?;
        let had_dead = !pass.dead.is_empty();
        if had_dead {
            log.dead_letter(&t, group, pass.dead).await?;
        }
        if !pass.delivered.is_empty() || max == 0 {
            return Ok(slices(pass.delivered));
        }
        if had_dead {
            continue;
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(Polled::new());
        }
        let cap = if pass.blocked {
            Duration::from_millis(100)
        } else {
            BLOCK_CAP
        };
        let mut d = (deadline - now).min(cap);
        if let Some(w) = pass.wake {
            d = d.min(w.max(Duration::from_millis(1)));
        }
        log.wait_for(&pass.wait_on, d).await?;
    }
}

pub(super) async fn ack(log: &RedisLog, topic: &str, group: &str, ids: &[Offset]) -> Result<usize> {
    let t = log.existing(topic).await?;
    log.check_open()?;
    log.ack_in(&t, group, ids).await
}

pub(super) async fn nack(
    log: &RedisLog,
    topic: &str,
    group: &str,
    ids: &[Offset],
    delay: Duration,
) -> Result<usize> {
    const OP: &str = "giving deliveries back";
    let t = log.existing(topic).await?;
    log.check_open()?;
    let parts = by_partition(&t, ids)?;
    let mut keys = vec![t.groups.clone(), t.group_key(group, "h")];
    keys.extend(
        parts
            .iter()
            .map(|(p, _)| t.parts[*p as usize].stream.clone()),
    );
    let mut cmd = eval_cmd(&log.inner.scripts.nack, &keys);
    cmd.arg(group).arg(t.visibility_ms).arg(ms(delay));
    for (p, offsets) in &parts {
        cmd.arg(p).arg(offsets.len());
        for &o in offsets {
            cmd.arg(entry_id(o));
        }
    }
    let reply = log
        .inner
        .conns
        .eval(OP, &log.inner.scripts.nack, &cmd)
        .await?;
    log.count_or_unknown_group(OP, &reply, &t, group)
}

impl RedisLog {
    /// One pass of a poll. Returns what was delivered, what ran out of deliveries,
    /// how long until something held becomes claimable, whether a partition was
    /// skipped because another member holds it, and where to wait for new events.
    async fn poll_once(
        &self,
        t: &Topic,
        group: &str,
        member: &str,
        max: usize,
        scan: bool,
    ) -> Result<PollPass> {
        const OP: &str = "polling";
        let mut keys = vec![
            t.groups.clone(),
            t.group_key(group, "o"),
            t.group_key(group, "h"),
            t.group_key(group, "m"),
        ];
        keys.extend(t.parts.iter().map(|p| p.stream.clone()));
        let first = self.inner.rr.fetch_add(1, Ordering::Relaxed) % t.parts.len();
        let mut cmd = eval_cmd(&self.inner.scripts.poll, &keys);
        cmd.arg(group)
            .arg(member)
            .arg(max.min(MAX_PER_CALL))
            .arg(t.visibility_ms)
            .arg(t.options.max_deliveries)
            .arg(first)
            .arg(if scan { "1" } else { "0" });
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.poll, &cmd)
            .await?;
        let err = |d| self.reply_err(OP, d);
        let mut parts = reply::array(reply, "the poll's five results").map_err(err)?;
        if parts.len() != 5 {
            return Err(err(format!("{} results instead of 5", parts.len())));
        }
        let waits =
            reply::array(parts.pop().unwrap_or_default(), "the streams to wait on").map_err(err)?;
        let blocked = reply::int(&parts[3], "the blocked flag").map_err(err)? == 1;
        let wake = reply::int(&parts[2], "the wake time").map_err(err)?;
        let dead = self
            .deliveries(std::mem::take(&mut parts[1]), t)
            .map_err(err)?;
        let delivered = self
            .delivered(std::mem::take(&mut parts[0]), t)
            .map_err(err)?;
        let mut wait_on = Vec::with_capacity(waits.len() / 2);
        let mut it = waits.into_iter();
        while let (Some(k), Some(id)) = (it.next(), it.next()) {
            wait_on.push((
                reply::string(k, "a stream key").map_err(err)?,
                reply::string(id, "an entry ID").map_err(err)?,
            ));
        }
        Ok(PollPass {
            delivered,
            dead,
            wake: u64::try_from(wake).ok().map(Duration::from_millis),
            blocked,
            wait_on,
        })
    }

    /// Parses `{partition, deliveries, entries}` groups, entries as `XREADGROUP`
    /// returns them: `{ID, {field, encoded event}}`.
    fn delivered(
        &self,
        v: Value,
        t: &Topic,
    ) -> std::result::Result<Vec<(u32, u64, u32, Event)>, String> {
        let groups = reply::array(v, "delivered groups")?;
        let mut out = Vec::new();
        for g in groups {
            let mut g = reply::array(g, "partition, deliveries and entries")?.into_iter();
            let (Some(p), Some(d), Some(entries)) = (g.next(), g.next(), g.next()) else {
                return Err("a delivered group of fewer than 3 items".into());
            };
            let p = reply::uint(&p, "a partition")?;
            let p = u32::try_from(p)
                .ok()
                .filter(|&p| p < t.partitions())
                .ok_or_else(|| format!("partition {p} out of range"))?;
            let d = u32::try_from(reply::uint(&d, "a delivery count")?).unwrap_or(u32::MAX);
            let entries = reply::array(entries, "entries")?;
            out.reserve(entries.len());
            for e in entries {
                let mut e = reply::array(e, "an entry")?.into_iter();
                let (Some(id), Some(fields)) = (e.next(), e.next()) else {
                    return Err("an entry without ID or fields".into());
                };
                let id = reply::string(id, "an entry ID")?;
                let o = id
                    .strip_prefix("0-")
                    .and_then(|s| s.parse::<u64>().ok())
                    .and_then(|s| s.checked_sub(1))
                    .ok_or_else(|| format!("entry ID {id:?} is not one of this log's"))?;
                let blob = reply::array(fields, "an entry's fields")?
                    .into_iter()
                    .nth(1)
                    .ok_or_else(|| format!("entry {id} has no event field"))?;
                let event = codec::decode(reply::bytes(blob, "an entry")?)
                    .map_err(|e| format!("entry {p}:{o} of topic {:?}: {e}", t.name))?;
                out.push((p, o, d, event));
            }
        }
        Ok(out)
    }

    /// Parses flat `{partition, offset, deliveries, encoded event}` quadruples.
    fn deliveries(
        &self,
        v: Value,
        t: &Topic,
    ) -> std::result::Result<Vec<(u32, u64, u32, Event)>, String> {
        let flat = reply::array(v, "deliveries")?;
        let mut out = Vec::with_capacity(flat.len() / 4);
        let mut it = flat.into_iter();
        while let (Some(p), Some(o), Some(d), Some(e)) =
            (it.next(), it.next(), it.next(), it.next())
        {
            let p = reply::uint(&p, "a partition")?;
            let p = u32::try_from(p)
                .ok()
                .filter(|&p| p < t.partitions())
                .ok_or_else(|| format!("partition {p} out of range"))?;
            let o = reply::uint(&o, "an offset")?;
            let d = u32::try_from(reply::uint(&d, "a delivery count")?).unwrap_or(u32::MAX);
            let event = codec::decode(reply::bytes(e, "an entry")?)
                .map_err(|e| format!("entry {p}:{o} of topic {:?}: {e}", t.name))?;
            out.push((p, o, d, event));
        }
        Ok(out)
    }

    /// Moves events that ran out of deliveries to the dead-letter topic, then
    /// acknowledges them in the group.
    async fn dead_letter(
        &self,
        t: &Topic,
        group: &str,
        dead: Vec<(u32, u64, u32, Event)>,
    ) -> Result<()> {
        let dlq_name = crate::dead_letter_topic(&t.name);
        let dlq = self.topic_or_create(&dlq_name).await?;
        let reason = Bytes::from(crate::rules::dead_letter_reason(t.options.max_deliveries));
        let mut batch = Vec::with_capacity(dead.len());
        let mut offsets = Vec::with_capacity(dead.len());
        for (p, o, deliveries, mut e) in dead {
            let offset = Offset::new(p, o);
            tracing::warn!(
                topic = %t.name, group, offset = %offset, deliveries,
                "event exhausted its deliveries; moving it to the dead-letter topic"
            );
            let original = e.id;
            // A fresh id: two groups dead-lettering one event must both be recorded.
            e.id = EventId::generate();
            e.headers.extend([
                ("dlq.reason".to_owned(), reason.clone()),
                ("dlq.topic".to_owned(), Bytes::from(t.name.clone())),
                ("dlq.group".to_owned(), Bytes::from(group.to_owned())),
                ("dlq.offset".to_owned(), Bytes::from(offset.to_string())),
                (
                    "dlq.deliveries".to_owned(),
                    Bytes::from(deliveries.to_string()),
                ),
                ("dlq.event_id".to_owned(), Bytes::from(original.to_string())),
            ]);
            batch.push(e);
            offsets.push(offset);
        }
        self.publish_to(&dlq, &batch).await?;
        self.ack_in(t, group, &offsets).await?;
        Ok(())
    }

    async fn ack_in(&self, t: &Topic, group: &str, ids: &[Offset]) -> Result<usize> {
        const OP: &str = "acknowledging";
        let parts = by_partition(t, ids)?;
        let mut keys = vec![t.groups.clone(), t.group_key(group, "h")];
        keys.extend(
            parts
                .iter()
                .map(|(p, _)| t.parts[*p as usize].stream.clone()),
        );
        let mut cmd = eval_cmd(&self.inner.scripts.ack, &keys);
        cmd.arg(group);
        for (p, offsets) in &parts {
            cmd.arg(p).arg(offsets.len());
            for &o in offsets {
                cmd.arg(entry_id(o));
            }
        }
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.ack, &cmd)
            .await?;
        self.count_or_unknown_group(OP, &reply, t, group)
    }

    pub(super) fn count_or_unknown_group(
        &self,
        op: &'static str,
        reply: &Value,
        t: &Topic,
        group: &str,
    ) -> Result<usize> {
        match reply::int(reply, "a count").map_err(|d| self.reply_err(op, d))? {
            -1 => Err(crate::Error::UnknownGroup {
                topic: t.name.clone(),
                group: group.to_owned(),
            }),
            n => Ok(usize::try_from(n).unwrap_or(0)),
        }
    }

    /// Waits up to `d` for a new entry in one of `streams` (blocking `XREAD` on a
    /// connection of its own), or just `d` if there is none to watch; returns early
    /// with [`Error::Closed`](crate::Error::Closed) when the log is closed.
    async fn wait_for(&self, streams: &[(String, String)], d: Duration) -> Result<()> {
        let mut closing = self.inner.closing.subscribe();
        if *closing.borrow_and_update() {
            return Err(crate::Error::Closed);
        }
        let closed = async move {
            // An error means the log was dropped: as good as closed.
            let _ = closing.changed().await;
        };
        if streams.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(d) => return Ok(()),
                _ = closed => return Err(crate::Error::Closed),
            }
        }
        let conns = &self.inner.conns;
        let mut c = conns.blocker().await?;
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(ms_at_least_1(d))
            .arg("STREAMS");
        for (k, _) in streams {
            cmd.arg(k);
        }
        for (_, id) in streams {
            cmd.arg(id);
        }
        let res = tokio::select! {
            r = cmd.query_async::<Value>(&mut c) => Some(r),
            _ = closed => None,
        };
        match res {
            Some(Ok(_)) => {
                conns.give_back(c);
                Ok(())
            }
            // An idle connection that broke (the others likely did too): the
            // wait ends as if something arrived, and the poll looks again,
            // on the main connection, which reconnects.
            Some(Err(e)) if super::conn::dropped(&e) => {
                conns.drop_idle();
                Ok(())
            }
            Some(Err(e)) => Err(conns.failed("waiting for new events", e).into()),
            // The connection is dropped: its read may still be in flight.
            None => Err(crate::Error::Closed),
        }
    }
}

/// Builds the slices of a poll from `(partition, offset, deliveries, event)` in the
/// order the script delivered them: runs of consecutive offsets of one partition with
/// one delivery count share a chunk.
fn slices(delivered: Vec<(u32, u64, u32, Event)>) -> Polled {
    let mut out = Polled::new();
    let mut run: Vec<Event> = Vec::new();
    let mut head: Option<(u32, u64, u32)> = None;
    let flush = |out: &mut Polled, head: Option<(u32, u64, u32)>, run: &mut Vec<Event>| {
        if let Some((p, base, d)) = head {
            let events = std::mem::take(run);
            let len = events.len();
            out.push(Slice::new(
                p,
                d,
                Arc::new(Chunk::new(base, 0, events)),
                0..len,
            ));
        }
    };
    for (p, o, d, e) in delivered {
        let continues =
            head.is_some_and(|(hp, base, hd)| hp == p && hd == d && base + run.len() as u64 == o);
        if !continues {
            flush(&mut out, head, &mut run);
            head = Some((p, o, d));
        }
        run.push(e);
    }
    flush(&mut out, head, &mut run);
    out
}

/// The outcome of one poll script run.
struct PollPass {
    delivered: Vec<(u32, u64, u32, Event)>,
    dead: Vec<(u32, u64, u32, Event)>,
    wake: Option<Duration>,
    blocked: bool,
    wait_on: Vec<(String, String)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_split_on_partition_gaps_and_counts() {
        let e = |n: u64| Event::new("t", "k", n.to_string());
        let polled = slices(vec![
            (0, 4, 2, e(1)),
            (0, 5, 2, e(2)),
            (0, 7, 2, e(3)),
            (0, 8, 1, e(4)),
            (1, 9, 1, e(5)),
        ]);
        let shape: Vec<(u32, u64, u32, usize)> = polled
            .slices()
            .iter()
            .map(|s| (s.partition(), s.first_offset(), s.deliveries(), s.len()))
            .collect();
        assert_eq!(
            shape,
            vec![(0, 4, 2, 2), (0, 7, 2, 1), (0, 8, 1, 1), (1, 9, 1, 1)]
        );
        assert_eq!(polled.len(), 5);
    }
}
