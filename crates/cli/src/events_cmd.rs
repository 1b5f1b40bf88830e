//! `baton events publish|tail|groups|pending|dlq|check|repair`: operate an embedded
//! (disk) event log.
//!
//! `tail` and `dlq` read the segments without taking the log's lock, so they work while
//! a server owns the directory. `publish`, `groups` and `pending` open the log and so
//! need it to be free (error otherwise, exit code 2), as do `check` and `repair` (a log
//! being written would look torn at its tail).
//!
//! Data goes to stdout (text, or JSON lines with `--json`), diagnostics to stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use baton_events::{
    DiskLog, DiskOptions, Event, EventId, EventLog, Follower, Fsync, Record, dead_letter_topic,
};
use bytes::Bytes;
use serde_json::{Value, json};

/// Flags of `baton events`.
#[derive(clap::Args)]
pub struct EventsArgs {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Publish one event from DATA, or one per line of standard input.
    Publish(PublishArgs),
    /// Print a topic's events as they are appended (like `tail -f`).
    Tail(TailArgs),
    /// List a topic's consumer groups: committed offsets and lag.
    Groups(TopicArgs),
    /// Show a group's delivered, unacknowledged events.
    Pending(PendingArgs),
    /// Print a topic's dead letters with the reason each was moved.
    Dlq(DlqArgs),
    /// Move a topic's dead letters, oldest first, back to the topic.
    Redrive(RedriveArgs),
    /// Read every segment and report what it holds and where it is damaged
    /// (exit 1 if anything but a torn tail is).
    Check(Common),
    /// Truncate the log at its first damage, keeping what is cut off in
    /// DIR/damaged/ (for a log that does not open: see `check`).
    Repair(Common),
}

#[derive(clap::Args)]
struct Common {
    /// The event log's directory.
    #[arg(long, value_name = "DIR", default_value = "baton-data/events")]
    data_dir: PathBuf,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct TopicArgs {
    #[command(flatten)]
    common: Common,
    /// The topic.
    #[arg(long)]
    topic: String,
}

#[derive(clap::Args)]
struct PublishArgs {
    #[command(flatten)]
    common: Common,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Ordering key: events with one key keep their order.
    #[arg(long, default_value = "")]
    key: String,
    /// The event type.
    #[arg(long = "type", default_value = "event")]
    kind: String,
    /// Event id (32 hex digits) for dedup; generated if absent. Only with DATA.
    #[arg(long)]
    id: Option<String>,
    /// A header, NAME=VALUE; repeatable.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// always | never | interval:MS
    #[arg(long, default_value = "always")]
    fsync: Fsync,
    /// The payload; without it, each line of standard input is one event.
    data: Option<String>,
}

#[derive(clap::Args)]
struct TailArgs {
    #[command(flatten)]
    common: Common,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// Start with the oldest retained event instead of only new ones.
    #[arg(long)]
    from_start: bool,
    /// Stop after this many events (default: follow until interrupted).
    #[arg(long)]
    count: Option<u64>,
    /// Stop when there is nothing new instead of following.
    #[arg(long)]
    no_follow: bool,
    /// How often to look for new events, in milliseconds.
    #[arg(long, default_value_t = 200)]
    interval_ms: u64,
}

#[derive(clap::Args)]
struct PendingArgs {
    #[command(flatten)]
    common: Common,
    /// The topic.
    #[arg(long)]
    topic: String,
    /// The consumer group.
    #[arg(long)]
    group: String,
    /// Most entries shown.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

#[derive(clap::Args)]
struct DlqArgs {
    #[command(flatten)]
    common: Common,
    /// The topic whose dead letters to show (they live in TOPIC.dlq).
    #[arg(long)]
    topic: String,
    /// Most entries shown.
    #[arg(long, default_value_t = 1000)]
    count: u64,
}

#[derive(clap::Args)]
struct RedriveArgs {
    #[command(flatten)]
    common: Common,
    /// The topic whose dead letters (in TOPIC.dlq) go back to it.
    #[arg(long)]
    topic: String,
    /// Most letters moved.
    #[arg(long, default_value_t = 10_000)]
    max: usize,
}

/// Runs `baton events ...`.
pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Tail(a) => tail(a),
        Command::Dlq(a) => dlq(a),
        Command::Check(a) => check(&a),
        Command::Repair(a) => repair(&a),
        other => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            rt.block_on(async move {
                match other {
                    Command::Publish(a) => publish(a).await,
                    Command::Groups(a) => groups(a).await,
                    Command::Pending(a) => pending(a).await,
                    Command::Redrive(a) => redrive(a).await,
                    Command::Tail(_) | Command::Dlq(_) | Command::Check(_) | Command::Repair(_) => {
                        unreachable!("handled above")
                    }
                }
            })
        }
    }
}

/// `baton events check`: one line per segment, the damage under it.
fn check(a: &Common) -> anyhow::Result<ExitCode> {
    check_dir(&a.data_dir)?;
    let reports = baton_events::disk::check(&a.data_dir)
        .with_context(|| format!("checking the event log in {}", a.data_dir.display()))?;
    let newest = reports.len().saturating_sub(1);
    let mut out = std::io::stdout().lock();
    let mut damaged = false;
    for (i, r) in reports.iter().enumerate() {
        let torn = r
            .damage
            .as_ref()
            .is_some_and(|d| i == newest && d.is_torn_tail());
        damaged |= r.damage.is_some() && !torn;
        let name = r
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if a.json {
            let damage = r.damage.as_ref().map(|d| {
                json!({"position": d.position, "reason": d.reason, "torn_tail": torn,
                       "next_valid": d.next_valid, "records_after": d.records_after,
                       "events_after": d.events_after})
            });
            writeln!(
                out,
                "{}",
                json!({"segment": name, "bytes": r.bytes, "records": r.records,
                       "events": r.events, "damage": damage})
            )?;
            continue;
        }
        writeln!(
            out,
            "{name}	{} bytes	{} records	{} events	{}",
            r.bytes,
            r.records,
            r.events,
            match (&r.damage, torn) {
                (None, _) => "ok",
                (Some(_), true) => "torn tail (cut when the log opens: never acknowledged)",
                (Some(_), false) => "DAMAGED",
            }
        )?;
        if let Some(d) = &r.damage {
            write!(out, "  at byte {}: {}", d.position, d.reason)?;
            match d.next_valid {
                Some(n) => writeln!(
                    out,
                    "; valid records follow at byte {n}: {} records, {} events",
                    d.records_after, d.events_after
                )?,
                None => writeln!(out)?,
            }
        }
    }
    if damaged {
        eprintln!(
            "the log is damaged: `baton events repair --data-dir {}` truncates it at the damage and keeps what it cuts off in {}/damaged/ (or restore the directory from a backup)",
            a.data_dir.display(),
            a.data_dir.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// `baton events repair`: truncates at the first damage, keeping the rest.
fn repair(a: &Common) -> anyhow::Result<ExitCode> {
    check_dir(&a.data_dir)?;
    let repaired = baton_events::disk::repair(&a.data_dir)
        .with_context(|| format!("repairing the event log in {}", a.data_dir.display()))?;
    let Some(r) = repaired else {
        eprintln!("nothing to repair in {}", a.data_dir.display());
        return Ok(ExitCode::SUCCESS);
    };
    let saved: Vec<String> = r.saved.iter().map(|p| p.display().to_string()).collect();
    if a.json {
        println!(
            "{}",
            json!({"segment": r.segment.display().to_string(), "position": r.position,
                   "events_cut": r.events_cut, "saved": saved})
        );
    } else {
        println!(
            "cut {} at byte {}: {} valid events after the damage are no longer in the log; what was cut off is kept in {}",
            r.segment.display(),
            r.position,
            r.events_cut,
            saved.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn open(dir: &Path, fsync: Fsync) -> anyhow::Result<DiskLog> {
    DiskLog::open(
        dir,
        DiskOptions {
            fsync,
            // An operator's command must not delete segments behind a server's back.
            maintenance_interval: None,
            ..DiskOptions::default()
        },
    )
    .await
    .map_err(|e| match e {
        // The usual reason: a server owns the log.
        baton_events::Error::Locked(_) => anyhow::anyhow!(
            "{e}: a running `baton serve` owns this log; publish through its API instead \
             (`POST /api/v1/events`), or read it with `baton events tail`, which needs no lock"
        ),
        other => anyhow::Error::new(other),
    })
    .with_context(|| format!("opening the event log in {}", dir.display()))
}

fn make_event(a: &PublishArgs, payload: Bytes) -> anyhow::Result<Event> {
    let mut e = Event::new(a.kind.as_str(), Bytes::from(a.key.clone()), payload);
    for h in &a.headers {
        let (n, v) = h
            .split_once('=')
            .with_context(|| format!("header {h:?} is not NAME=VALUE"))?;
        e = e.with_header(n, Bytes::from(v.to_owned()));
    }
    Ok(e)
}

async fn publish(a: PublishArgs) -> anyhow::Result<ExitCode> {
    let log = open(&a.common.data_dir, a.fsync).await?;
    let mut out = std::io::stdout().lock();
    let mut batches = Vec::new();
    if let Some(data) = &a.data {
        let mut e = make_event(&a, Bytes::from(data.clone()))?;
        if let Some(id) = &a.id {
            e = e.with_id(id.parse::<EventId>().with_context(|| {
                format!("--id {id:?} is not a hex event id (up to 32 hex digits)")
            })?);
        }
        batches.push(vec![e]);
    } else {
        anyhow::ensure!(
            a.id.is_none(),
            "--id needs DATA: one id cannot name many events"
        );
        let mut batch = Vec::new();
        for line in std::io::stdin().lock().lines() {
            let line = line.context("reading standard input")?;
            batch.push(make_event(&a, Bytes::from(line))?);
            if batch.len() == 1000 {
                batches.push(std::mem::take(&mut batch));
            }
        }
        if !batch.is_empty() {
            batches.push(batch);
        }
    }
    for batch in batches {
        let ids: Vec<EventId> = batch.iter().map(|e| e.id).collect();
        let offsets = log.publish(&a.topic, batch).await?;
        for (o, id) in offsets.iter().zip(ids) {
            if a.common.json {
                let line =
                    json!({"partition": o.partition, "offset": o.offset, "id": id.to_string()});
                writeln!(out, "{line}")?;
            } else {
                writeln!(out, "{o}\t{id}")?;
            }
        }
    }
    log.close().await?;
    Ok(ExitCode::SUCCESS)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Event content as a field of a text line: control characters escaped
/// (`\n`, `\t`, `\u{1b}`), so that an event cannot break the line, forge
/// fields, or send escape sequences to the terminal.
pub(crate) fn shown(b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    for c in String::from_utf8_lossy(b).chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

fn record_json(r: &Record) -> Value {
    let e = &r.event;
    let headers: BTreeMap<&str, String> = e
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), text(v)))
        .collect();
    let payload = serde_json::from_slice::<Value>(&e.payload)
        .unwrap_or_else(|_| Value::String(text(&e.payload)));
    json!({
        "partition": r.offset.partition,
        "offset": r.offset.offset,
        "appended_ms": r.appended_ms,
        "id": e.id.to_string(),
        "key": text(&e.key),
        "type": &*e.kind,
        "timestamp_ms": e.timestamp_ms,
        "headers": headers,
        "payload": payload,
    })
}

fn print_record(out: &mut impl Write, r: &Record, json: bool) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", record_json(r))
    } else {
        let e = &r.event;
        writeln!(
            out,
            "{}\t{}\t{}\t{}",
            r.offset,
            shown(e.kind.as_bytes()),
            shown(&e.key),
            shown(&e.payload)
        )
    }
}

fn check_dir(dir: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(
        dir.is_dir(),
        "{} is not an event log directory (pass --data-dir)",
        dir.display()
    );
    Ok(())
}

fn tail(a: TailArgs) -> anyhow::Result<ExitCode> {
    check_dir(&a.common.data_dir)?;
    let mut f = Follower::new(&a.common.data_dir, &a.topic);
    if !a.from_start {
        f.skip_to_end()?;
    }
    let mut out = std::io::stdout().lock();
    let mut printed = 0u64;
    loop {
        let left = a.count.map_or(usize::MAX, |c| (c - printed) as usize);
        let records = f.read_new(left.min(10_000))?;
        if records.is_empty() {
            if a.no_follow {
                return Ok(ExitCode::SUCCESS);
            }
            out.flush()?;
            std::thread::sleep(Duration::from_millis(a.interval_ms));
            continue;
        }
        for r in &records {
            print_record(&mut out, r, a.common.json)?;
            printed += 1;
            if a.count.is_some_and(|c| printed >= c) {
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

fn dlq(a: DlqArgs) -> anyhow::Result<ExitCode> {
    check_dir(&a.common.data_dir)?;
    let mut f = Follower::new(&a.common.data_dir, &dead_letter_topic(&a.topic));
    let mut out = std::io::stdout().lock();
    let mut printed = 0;
    while printed < a.count {
        let records = f.read_new(10_000)?;
        if records.is_empty() {
            break;
        }
        for r in records.iter().take((a.count - printed) as usize) {
            let e = &r.event;
            let h = |n: &str| e.header(n).map(|v| shown(v)).unwrap_or_default();
            if a.common.json {
                writeln!(out, "{}", record_json(r))?;
            } else {
                writeln!(
                    out,
                    "{}\tfrom {} (group {}, after {} deliveries): {}\t{}\t{}",
                    r.offset,
                    h("dlq.offset"),
                    h("dlq.group"),
                    h("dlq.deliveries"),
                    h("dlq.reason"),
                    shown(e.kind.as_bytes()),
                    shown(&e.payload)
                )?;
            }
            printed += 1;
        }
    }
    if printed == 0 && !a.common.json {
        eprintln!("no dead letters for topic {:?}", a.topic);
    }
    Ok(ExitCode::SUCCESS)
}

async fn groups(a: TopicArgs) -> anyhow::Result<ExitCode> {
    check_dir(&a.common.data_dir)?;
    let log = open(&a.common.data_dir, Fsync::Always).await?;
    let groups = log.groups(&a.topic).await?;
    let mut out = std::io::stdout().lock();
    for g in &groups {
        if a.common.json {
            let committed: Vec<Value> = g
                .committed
                .iter()
                .map(|o| json!({"partition": o.partition, "offset": o.offset}))
                .collect();
            writeln!(
                out,
                "{}",
                json!({"group": g.name, "lag": g.lag, "committed": committed})
            )?;
        } else {
            let committed: Vec<String> = g.committed.iter().map(|o| o.to_string()).collect();
            writeln!(
                out,
                "{}\tlag {}\tcommitted {}",
                g.name,
                g.lag,
                committed.join(" ")
            )?;
        }
    }
    if groups.is_empty() && !a.common.json {
        eprintln!("topic {:?} has no consumer groups", a.topic);
    }
    log.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// `baton events redrive`: [`baton_events::redrive`] on the disk log.
async fn redrive(a: RedriveArgs) -> anyhow::Result<ExitCode> {
    check_dir(&a.common.data_dir)?;
    let log = open(&a.common.data_dir, Fsync::Always).await?;
    let dlq = dead_letter_topic(&a.topic);
    // Polling a topic creates it: look first, so that a topic without dead
    // letters gets none.
    let done = if log.topics().await?.iter().any(|t| t.name == dlq) {
        baton_events::redrive(&log, &dlq, a.max).await?.moved
    } else {
        0
    };
    log.close().await?;
    if a.common.json {
        println!("{}", json!({"topic": a.topic, "moved": done}));
    } else if done == 0 {
        eprintln!("no dead letters to redrive for topic {:?}", a.topic);
    } else {
        println!("{done} dead letters moved back to {}", a.topic);
    }
    Ok(ExitCode::SUCCESS)
}

async fn pending(a: PendingArgs) -> anyhow::Result<ExitCode> {
    check_dir(&a.common.data_dir)?;
    let log = open(&a.common.data_dir, Fsync::Always).await?;
    // Who holds what lives in the process that owns the log; opened here, every
    // unacknowledged event is simply due again from the committed offsets.
    let entries = log.pending(&a.topic, &a.group, a.limit).await?;
    let info = log
        .groups(&a.topic)
        .await?
        .into_iter()
        .find(|g| g.name == a.group);
    let mut out = std::io::stdout().lock();
    for p in &entries {
        if a.common.json {
            writeln!(
                out,
                "{}",
                json!({"partition": p.offset.partition, "offset": p.offset.offset,
                       "member": p.member, "since_ms": p.since_ms, "deliveries": p.deliveries,
                       "claimable_at_ms": p.claimable_at_ms})
            )?;
        } else {
            writeln!(
                out,
                "{}\t{}\tdeliveries {}\tsince {}",
                p.offset, p.member, p.deliveries, p.since_ms
            )?;
        }
    }
    if entries.is_empty()
        && let Some(g) = info
    {
        let committed: Vec<String> = g.committed.iter().map(|o| o.to_string()).collect();
        eprintln!(
            "no deliveries in flight (the log is not in use); {} events are due from committed offsets {}",
            g.lag,
            committed.join(" ")
        );
    }
    log.close().await?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn control_characters_are_escaped_in_text_lines() {
        assert_eq!(shown(b"a\tb\nc\x1b[2Jd\x00"), "a\\tb\\nc\\u{1b}[2Jd\\u{0}");
        assert_eq!(shown("é ok".as_bytes()), "é ok");
    }
}
