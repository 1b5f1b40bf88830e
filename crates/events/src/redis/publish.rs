//! Publishing to Redis: the batch checked against the limits and the entry codec,
//! split by partition, and sent as one script call per partition that does dedup,
//! assigns offsets, appends, indexes and trims atomically (or, for large shares
//! without dedup, a transaction of plain `XADD`s). It exists apart because it is
//! the hot path of every producer and has its own batching rules.

use super::*;

pub(super) async fn publish(log: &RedisLog, topic: &str, batch: Vec<Event>) -> Result<Vec<Offset>> {
    log.check_batch(&batch)?;
    let t = log.topic_or_create(topic).await?;
    log.publish_to(&t, &batch).await
}

impl RedisLog {
    fn check_batch(&self, batch: &[Event]) -> Result<()> {
        rules::check_batch_with(&self.inner.options.limits, batch, |index, e| {
            Ok(codec::check(e, index)?)
        })
    }

    pub(super) async fn publish_to(&self, t: &Topic, batch: &[Event]) -> Result<Vec<Offset>> {
        self.check_open()?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        const OP: &str = "publishing";
        let n = t.partitions();
        let mut shares: Vec<Vec<usize>> = vec![Vec::new(); n as usize];
        // With dedup, an id repeated in the batch (under any key) is sent once and gets
        // the offset of its first occurrence: `(position, first position)`.
        let mut repeats: Vec<(usize, usize)> = Vec::new();
        let mut firsts: HashMap<u128, usize, foldhash::fast::RandomState> = HashMap::default();
        let dedup = t.dedup_ids > 0 && batch.len() > 1;
        for (i, e) in batch.iter().enumerate() {
            let p = (key_hash(&e.key) % u64::from(n)) as u32;
            if dedup {
                match firsts.entry(e.id.0) {
                    std::collections::hash_map::Entry::Occupied(first) => {
                        repeats.push((i, *first.get()));
                        continue;
                    }
                    std::collections::hash_map::Entry::Vacant(v) => {
                        v.insert(i);
                    }
                }
            }
            shares[p as usize].push(i);
        }
        let touched: Vec<u32> = (0..n).filter(|&p| !shares[p as usize].is_empty()).collect();
        if t.dedup_ids == 0 && batch.len() >= APPEND_MIN_SHARE * touched.len() {
            return self.append(t, batch, &shares, &touched).await;
        }
        let mut keys = Vec::with_capacity(3 + touched.len() * 3);
        keys.extend(t.dedup.iter().map(String::as_str));
        for &p in &touched {
            let part = &t.parts[p as usize];
            keys.extend([
                part.stream.as_str(),
                part.index.as_str(),
                part.state.as_str(),
            ]);
        }
        let mut cmd = eval_cmd(&self.inner.scripts.publish, &keys);
        cmd.arg(t.max_events)
            .arg(t.max_bytes)
            .arg(t.max_age_ms)
            .arg(t.dedup_ids)
            .arg(t.dedup_age_ms)
            .arg(codec::SIZE_DELTA);
        let mut buf = Vec::with_capacity(256);
        for &p in &touched {
            let share = &shares[p as usize];
            cmd.arg(p).arg(share.len());
            for &i in share {
                codec::encode(&batch[i], &mut buf);
                cmd.arg(&buf[..]);
            }
        }
        let reply = self
            .inner
            .conns
            .eval(OP, &self.inner.scripts.publish, &cmd)
            .await?;
        let err = |d| self.reply_err(OP, d);
        let per_part = reply::array(reply, "one reply per partition").map_err(err)?;
        if per_part.len() != touched.len() {
            return Err(err(format!(
                "{} partition replies for {} partitions",
                per_part.len(),
                touched.len()
            )));
        }
        let mut offsets = vec![Offset::default(); batch.len()];
        for (&p, res) in touched.iter().zip(per_part) {
            let res = reply::array(res, "base offset and duplicates").map_err(err)?;
            let base = res
                .first()
                .ok_or_else(|| err("an empty partition reply".into()))
                .and_then(|v| reply::uint(v, "the base offset").map_err(err))?;
            let mut dups = res[1..].chunks_exact(2).peekable();
            let mut next = base;
            for (j, &i) in shares[p as usize].iter().enumerate() {
                offsets[i] = match dups.peek() {
                    Some(pair) if reply::uint(&pair[0], "a position").map_err(err)? == j as u64 => {
                        let at = stored_at(&pair[1]).map_err(err)?;
                        dups.next();
                        at
                    }
                    _ => {
                        next += 1;
                        Offset::new(p, next - 1)
                    }
                };
            }
        }
        for (i, first) in repeats {
            offsets[i] = offsets[first];
        }
        Ok(offsets)
    }

    /// Publishes without dedup as one transaction: per partition the entries as plain
    /// `XADD … 0-*` (the server numbers them, so they are contiguous within the
    /// transaction) and an `EVAL` of `append.lua` that indexes them, updates the
    /// partition's state and applies retention. Plain `XADD`s cost the server about a
    /// quarter less than the same appends made from Lua, where each argument is copied
    /// twice more; the script, sent whole each time (a missing script would fail
    /// after the entries were added), pays off once a partition's share of the batch
    /// is [`APPEND_MIN_SHARE`] events or more.
    async fn append(
        &self,
        t: &Topic,
        batch: &[Event],
        shares: &[Vec<usize>],
        touched: &[u32],
    ) -> Result<Vec<Offset>> {
        const OP: &str = "publishing";
        // The XADD replies are not marked ignored (the pipeline would keep a hash set
        // of them): the script replies are picked out by position instead.
        let mut pipe = redis::Pipeline::with_capacity(batch.len() + touched.len());
        pipe.atomic();
        let mut buf = Vec::with_capacity(256);
        for &p in touched {
            let part = &t.parts[p as usize];
            let share = &shares[p as usize];
            let mut bytes = 0usize;
            for &i in share {
                codec::encode(&batch[i], &mut buf);
                bytes += buf.len();
                let mut xadd = redis::Cmd::with_capacity(5, part.stream.len() + buf.len() + 8);
                xadd.arg("XADD")
                    .arg(&part.stream)
                    .arg("0-*")
                    .arg("e")
                    .arg(&buf[..]);
                pipe.add_command(xadd);
            }
            pipe.cmd("EVAL")
                .arg(&self.inner.scripts.append)
                .arg(3)
                .arg(&part.stream)
                .arg(&part.index)
                .arg(&part.state)
                .arg(share.len())
                .arg(bytes)
                .arg(codec::SIZE_DELTA)
                .arg(t.max_events)
                .arg(t.max_bytes)
                .arg(t.max_age_ms);
        }
        let reply = self.inner.conns.query_pipe(OP, &pipe).await?;
        let err = |d| self.reply_err(OP, d);
        let replies = reply::array(reply, "the transaction's replies").map_err(err)?;
        if replies.len() != batch.len() + touched.len() {
            return Err(err(format!(
                "{} replies for {} commands",
                replies.len(),
                batch.len() + touched.len()
            )));
        }
        // Each partition's replies: its entries' IDs, then the script's base offset,
        // which must be the first entry's.
        let mut at = 0;
        let mut bases = Vec::with_capacity(touched.len());
        for &p in touched {
            let n = shares[p as usize].len();
            let first = reply::string(replies[at].clone(), "an entry ID").map_err(err)?;
            let base = &replies[at + n];
            if reply::uint(base, "a base offset").map_err(err)? + 1
                != first
                    .strip_prefix("0-")
                    .and_then(|s| s.parse::<u64>().ok())
                    .unwrap_or(0)
            {
                return Err(err(format!(
                    "partition {p}: first entry {first} does not match base offset {base:?}"
                )));
            }
            bases.push(base);
            at += n + 1;
        }
        let mut offsets = vec![Offset::default(); batch.len()];
        for ((&p, base), share) in touched
            .iter()
            .zip(&bases)
            .zip(touched.iter().map(|&p| &shares[p as usize]))
        {
            let base = reply::uint(base, "a base offset").map_err(err)?;
            for (k, &i) in share.iter().enumerate() {
                offsets[i] = Offset::new(p, base + k as u64);
            }
        }
        Ok(offsets)
    }
}

/// Where the dedup window says an id was stored: `partition:offset`.
fn stored_at(v: &redis::Value) -> std::result::Result<Offset, String> {
    let text = reply::string(v.clone(), "where an id was stored")?;
    text.split_once(':')
        .and_then(|(p, o)| Some(Offset::new(p.parse().ok()?, o.parse().ok()?)))
        .ok_or_else(|| format!("expected `partition:offset` for a stored id, got {text:?}"))
}

/// Events per partition from which a publish without dedup goes as a transaction of
/// plain `XADD`s (see [`RedisLog::append`]).
const APPEND_MIN_SHARE: usize = 32;
