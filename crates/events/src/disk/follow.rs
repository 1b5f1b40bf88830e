//! Reading a disk log's events as they are appended, from another process.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::codec::{self, Kinds, Rec, Scan};
use super::list_segments;
use crate::{Error, Offset, Record, Result};

/// Follows one topic of a disk log without opening the log: it takes no lock, so it
/// works while another process (a server) owns the directory, like `tail -f` on the
/// segments.
///
/// It returns every complete, checksummed batch record of the topic in log order,
/// each event once: when compaction rewrites the segment it is reading, it reads the
/// new file from its start and skips the offsets it returned already. It reads what is
/// written, which with `Fsync::Interval` or `Never` may be ahead of what is synced;
/// consumers inside the owning process only ever see synced events.
pub struct Follower {
    dir: PathBuf,
    topic: String,
    topic_id: Option<u32>,
    seq: Option<u64>,
    /// The identity (device, inode) of segment `seq`'s file when it was last read.
    file: Option<(u64, u64)>,
    pos: u64,
    /// Per partition, the first offset not returned yet.
    next: HashMap<u32, u64>,
    kinds: Kinds,
}

impl Follower {
    /// A follower of `topic` in the log at `dir`, starting at the oldest segment.
    pub fn new(dir: impl AsRef<Path>, topic: &str) -> Self {
        Follower {
            dir: dir.as_ref().to_owned(),
            topic: topic.to_owned(),
            topic_id: None,
            seq: None,
            file: None,
            pos: codec::MAGIC.len() as u64,
            next: HashMap::new(),
            kinds: Kinds::default(),
        }
    }

    /// Skips everything written so far: later reads return only newer events.
    pub fn skip_to_end(&mut self) -> Result<()> {
        while !self.read_new(usize::MAX)?.is_empty() {}
        Ok(())
    }

    /// Events of the topic written since the last call, at most about `max` (whole
    /// records are returned). Empty when there is nothing new.
    pub fn read_new(&mut self, max: usize) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        loop {
            let segs = list_segments(&self.dir)?;
            let Some(&(seq, ref path)) = (match self.seq {
                None => segs.first(),
                // The current segment, or the next one if compaction deleted it.
                Some(cur) => segs.iter().find(|(s, _)| *s >= cur),
            }) else {
                return Ok(out);
            };
            if self.seq != Some(seq) {
                self.seq = Some(seq);
                self.file = None;
                self.pos = codec::MAGIC.len() as u64;
            }
            let newer = segs.iter().any(|(s, _)| *s > seq);
            let data = self.read_from(path)?;
            let mut at = 0usize;
            let mut clean_end = true;
            while out.len() < max {
                match codec::scan(&data, at) {
                    Scan::End => break,
                    Scan::Record(body, next) => {
                        let position = self.pos + at as u64;
                        let rec = codec::decode(body, &mut self.kinds).map_err(|reason| {
                            Error::Corrupt {
                                path: path.clone(),
                                position,
                                reason,
                            }
                        })?;
                        self.take(rec, &mut out);
                        at = next;
                    }
                    Scan::Bad(reason) if newer => {
                        return Err(Error::Corrupt {
                            path: path.clone(),
                            position: self.pos + at as u64,
                            reason,
                        });
                    }
                    Scan::Bad(_) => {
                        // Being written right now: try again later.
                        clean_end = false;
                        break;
                    }
                }
            }
            self.pos += at as u64;
            if out.len() >= max || !newer || !clean_end || at < data.len() {
                return Ok(out);
            }
            self.seq = Some(seq + 1);
            self.file = None;
            self.pos = codec::MAGIC.len() as u64;
        }
    }

    /// What segment file `path` holds from the follower's position on, or from its
    /// start if compaction replaced it since the last read.
    fn read_from(&mut self, path: &Path) -> Result<Bytes> {
        let mut f = match File::open(path) {
            Ok(f) => f,
            // Deleted by compaction between listing and opening.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Bytes::new()),
            Err(e) => return Err(Error::io("opening segment", path, e)),
        };
        let meta = f
            .metadata()
            .map_err(|e| Error::io("reading segment", path, e))?;
        let file = (meta.dev(), meta.ino());
        if self.file.is_some_and(|seen| seen != file) || meta.len() < self.pos {
            self.pos = codec::MAGIC.len() as u64;
        }
        self.file = Some(file);
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(self.pos))
            .and_then(|_| f.read_to_end(&mut buf))
            .map_err(|e| Error::io("reading segment", path, e))?;
        Ok(Bytes::from(buf))
    }

    fn take(&mut self, rec: Rec, out: &mut Vec<Record>) {
        match rec {
            Rec::Topic { id, name, .. } if name == self.topic => self.topic_id = Some(id),
            Rec::Batch {
                topic,
                partition,
                chunk,
            } if Some(topic) == self.topic_id => {
                let next = self.next.entry(partition).or_insert(0);
                let from = next.saturating_sub(chunk.base()) as usize;
                *next = (*next).max(chunk.end());
                for (i, e) in chunk.events().iter().enumerate().skip(from) {
                    out.push(Record {
                        offset: Offset::new(partition, chunk.base() + i as u64),
                        appended_ms: chunk.appended_ms(),
                        event: e.clone(),
                    });
                }
            }
            _ => {}
        }
    }
}
