//! Inspecting and repairing a disk log that does not open (`baton events
//! check|repair`), and telling damage from a torn write.
//!
//! A crash can only leave the newest segment's last record incomplete (a torn
//! write: it was never acknowledged). A record that fails its check with
//! valid records after it is damage: those records were acknowledged, so the
//! log refuses to open rather than drop them. [`check`] reports every
//! segment and where its damage is; [`repair`] truncates the log at the first
//! damage, moving everything it cuts off (the rest of that segment, and any
//! later segments) into `DIR/damaged/`, so that nothing is destroyed.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::codec::{self, Scan};
use super::{list_segments, lock_dir};
use crate::{Error, Result};

/// Where a damaged record is, and what follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The damaged record's byte position in its segment.
    pub position: u64,
    /// What is wrong with it.
    pub reason: String,
    /// The first valid record after it, if any: `None` is a torn write.
    pub next_valid: Option<u64>,
    /// Valid records after it in the segment (from `next_valid` on).
    pub records_after: u64,
    /// Events in those records.
    pub events_after: u64,
}

impl Damage {
    /// Whether it is a torn write (nothing valid follows), which recovery
    /// cuts off by itself in the newest segment.
    pub fn is_torn_tail(&self) -> bool {
        self.next_valid.is_none()
    }
}

/// What [`check`] found in one segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The segment file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Valid records before the damage (all of them without damage).
    pub records: u64,
    /// Events in those records.
    pub events: u64,
    /// The first damaged record, if any.
    pub damage: Option<Damage>,
}

/// What [`repair`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The segment cut, and where.
    pub segment: PathBuf,
    /// Where it was cut (the damaged record's position).
    pub position: u64,
    /// Where what was cut off went: the rest of the segment, then any later
    /// segments, whole.
    pub saved: Vec<PathBuf>,
    /// Valid events in what was cut off (they are no longer in the log).
    pub events_cut: u64,
}

/// How many events a batch record holds (0 for other records).
fn events_in(body: &[u8]) -> u64 {
    // kind, topic, partition, base, appended_ms, then the count.
    const COUNT: usize = 1 + 4 + 4 + 8 + 8;
    match body.get(COUNT..COUNT + 4) {
        Some(n) if body[0] == codec::BATCH => {
            u64::from(u32::from_le_bytes(n.try_into().unwrap_or([0; 4])))
        }
        _ => 0,
    }
}

/// Whether a whole, valid record starts at `at` (its kind byte is known,
/// its checksum holds).
fn valid_at(data: &Bytes, at: usize) -> bool {
    let kind = data.get(at + codec::HEADER).copied();
    matches!(kind, Some(codec::TOPIC..=codec::START))
        && matches!(codec::scan(data, at), Scan::Record(..))
}

/// The damage at `at` of a segment whose contents are `data`: the first
/// valid record after it (where the damaged record's own length says it
/// ends, else the first position where one verifies) and what follows.
pub(super) fn damage(data: &Bytes, at: usize, reason: String) -> Damage {
    let claimed = data
        .get(at..at + 4)
        .map(|l| u32::from_le_bytes(l.try_into().unwrap_or([0; 4])) as usize)
        .and_then(|len| (at + codec::HEADER).checked_add(len));
    let next = claimed
        .filter(|&n| n < data.len() && valid_at(data, n))
        .or_else(|| (at + 1..data.len()).find(|&n| valid_at(data, n)));
    let (mut records, mut events) = (0, 0);
    if let Some(mut n) = next {
        while let Scan::Record(body, after) = codec::scan(data, n) {
            records += 1;
            events += events_in(&body);
            n = after;
        }
    }
    Damage {
        position: at as u64,
        reason,
        next_valid: next.map(|n| n as u64),
        records_after: records,
        events_after: events,
    }
}

/// Scans one segment: its valid records before any damage, and the damage.
fn scan_segment(path: &Path) -> Result<SegmentReport> {
    let data = Bytes::from(fs::read(path).map_err(|e| Error::io("reading segment", path, e))?);
    let mut report = SegmentReport {
        path: path.to_owned(),
        bytes: data.len() as u64,
        records: 0,
        events: 0,
        damage: None,
    };
    if data.len() < codec::MAGIC.len() || &data[..codec::MAGIC.len()] != codec::MAGIC {
        report.damage = Some(Damage {
            position: 0,
            reason: "not a segment of this format (bad magic)".into(),
            next_valid: None,
            records_after: 0,
            events_after: 0,
        });
        return Ok(report);
    }
    let mut at = codec::MAGIC.len();
    loop {
        match codec::scan(&data, at) {
            Scan::End => return Ok(report),
            Scan::Record(body, next) => {
                report.records += 1;
                report.events += events_in(&body);
                at = next;
            }
            Scan::Bad(reason) => {
                report.damage = Some(damage(&data, at, reason));
                return Ok(report);
            }
        }
    }
}

/// Reads every segment of the log in `dir` (which must not be open) and
/// reports what each holds and where it is damaged.
pub fn check(dir: &Path) -> Result<Vec<SegmentReport>> {
    if !dir.is_dir() {
        return Err(Error::io(
            "reading the log",
            dir,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
        ));
    }
    // A log being written would look torn at its tail.
    let _lock = lock_dir(dir)?;
    list_segments(dir)?
        .iter()
        .map(|(_, path)| scan_segment(path))
        .collect()
}

/// Truncates the log in `dir` (which must not be open) at its first damage
/// that is not a torn tail of the newest segment: the rest of that segment is
/// saved in `DIR/damaged/` (as `<segment>.<position>.cut`), later segments
/// are moved there whole, and the segment is cut. `None` when nothing needs
/// it (a torn tail is cut by opening the log).
pub fn repair(dir: &Path) -> Result<Option<Repaired>> {
    let reports = check(dir)?;
    // A log being written would look torn at its tail.
    let _lock = lock_dir(dir)?;
    let newest = reports.len().saturating_sub(1);
    let Some((i, report, damage)) = reports.iter().enumerate().find_map(|(i, r)| {
        let d = r.damage.as_ref()?;
        (!(i == newest && d.is_torn_tail())).then_some((i, r, d))
    }) else {
        return Ok(None);
    };
    let damaged = dir.join("damaged");
    fs::create_dir_all(&damaged).map_err(|e| Error::io("creating", &damaged, e))?;
    let name = |p: &Path| p.file_name().map(|n| n.to_owned()).unwrap_or_default();
    // The cut part first, synced, then the truncation: a crash in between
    // leaves both copies, never none.
    let data = fs::read(&report.path).map_err(|e| Error::io("reading segment", &report.path, e))?;
    let mut saved_name = name(&report.path);
    saved_name.push(format!(".{}.cut", damage.position));
    let saved = damaged.join(saved_name);
    let write_saved = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut f = File::create(&saved)?;
        f.write_all(&data[damage.position as usize..])?;
        f.sync_all()
    };
    write_saved().map_err(|e| Error::io("saving the cut part", &saved, e))?;
    let mut moved = vec![saved];
    let mut events_cut = damage.events_after;
    for later in &reports[i + 1..] {
        let to = damaged.join(name(&later.path));
        fs::rename(&later.path, &to).map_err(|e| Error::io("moving segment", &later.path, e))?;
        events_cut += later.events + later.damage.as_ref().map_or(0, |d| d.events_after);
        moved.push(to);
    }
    File::open(&damaged)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing", &damaged, e))?;
    OpenOptions::new()
        .write(true)
        .open(&report.path)
        .and_then(|f| {
            f.set_len(damage.position)?;
            f.sync_all()
        })
        .map_err(|e| Error::io("truncating segment", &report.path, e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing", dir, e))?;
    Ok(Some(Repaired {
        segment: report.path.clone(),
        position: damage.position,
        saved: moved,
        events_cut,
    }))
}
