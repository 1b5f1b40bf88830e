//! What a local server uses while the load runs, sampled from `/proc` and
//! its data directory (Linux; nothing elsewhere): resident memory, open
//! file descriptors and bytes on disk. A long run (a soak) shows whether
//! they stay flat; thresholds can hold their growth (`server_rss_growth`,
//! `server_fds_growth`, `disk_growth`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One sample of the server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSample {
    /// Resident memory (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// Open file descriptors.
    pub fds: u64,
    /// Bytes of the files in its data directory (when it is known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
}

/// The process and directory sampled.
#[derive(Debug, Clone)]
pub struct Watched {
    /// The server's process id.
    pub pid: u32,
    /// Its data directory.
    pub dir: Option<PathBuf>,
}

impl Watched {
    /// A sample now (`None` once the process is gone); `disk` walks the data
    /// directory, which costs a `stat` per file, so callers ask for it less
    /// often.
    pub fn sample(&self, disk: bool) -> Option<ServerSample> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let rss_kb: u64 = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        let fds = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .ok()?
            .count() as u64;
        Some(ServerSample {
            rss_bytes: rss_kb * 1024,
            fds,
            disk_bytes: if disk {
                self.dir.as_deref().map(dir_bytes)
            } else {
                None
            },
        })
    }
}

/// Bytes of the files under `dir` (0 for what cannot be read).
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// How the server's use moved over the run, after a warm-up (the first
/// fifth of the samples, at least one): the figures a soak is judged on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Growth {
    /// Resident memory after the warm-up and at the end, and the most seen.
    pub rss_bytes: (u64, u64),
    /// The largest resident memory sampled.
    pub rss_max_bytes: u64,
    /// Open descriptors after the warm-up and at the end.
    pub fds: (u64, u64),
    /// Data directory bytes after the warm-up and at the end (when known).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<(u64, u64)>,
    /// Seconds between the two samples compared.
    pub seconds: f64,
}

impl Growth {
    /// The growth over `samples` ((seconds since the start, sample) pairs);
    /// `None` with fewer than two.
    pub fn of(samples: &[(f64, ServerSample)]) -> Option<Growth> {
        if samples.len() < 2 {
            return None;
        }
        let first = (samples.len() / 5).clamp(1, samples.len() - 1);
        let (t0, a) = samples[first];
        let (t1, b) = samples[samples.len() - 1];
        let disk = |s: &[(f64, ServerSample)]| s.iter().find_map(|(_, x)| x.disk_bytes);
        let disk_start = disk(&samples[first..]);
        let disk_end = samples.iter().rev().find_map(|(_, x)| x.disk_bytes);
        Some(Growth {
            rss_bytes: (a.rss_bytes, b.rss_bytes),
            rss_max_bytes: samples.iter().map(|(_, x)| x.rss_bytes).max().unwrap_or(0),
            fds: (a.fds, b.fds),
            disk_bytes: disk_start.zip(disk_end),
            seconds: t1 - t0,
        })
    }

    /// Resident memory gained after the warm-up, bytes (negative: given back).
    pub fn rss_growth(&self) -> f64 {
        self.rss_bytes.1 as f64 - self.rss_bytes.0 as f64
    }

    /// Descriptors gained after the warm-up.
    pub fn fds_growth(&self) -> f64 {
        self.fds.1 as f64 - self.fds.0 as f64
    }

    /// Data directory bytes gained after the warm-up.
    pub fn disk_growth(&self) -> Option<f64> {
        self.disk_bytes.map(|(a, b)| b as f64 - a as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: f64, rss: u64, fds: u64, disk: Option<u64>) -> (f64, ServerSample) {
        (
            t,
            ServerSample {
                rss_bytes: rss,
                fds,
                disk_bytes: disk,
            },
        )
    }

    #[test]
    fn growth_is_measured_after_the_warm_up() {
        let samples: Vec<_> = (0u32..10)
            .map(|i| {
                at(
                    f64::from(i),
                    100 + u64::from(i) * 10,
                    20,
                    (i % 3 == 0).then_some(1_000 * u64::from(i)),
                )
            })
            .collect();
        let g = Growth::of(&samples).unwrap();
        // The warm-up is the first two samples: compared from the third.
        assert_eq!(g.rss_bytes, (120, 190));
        assert_eq!(g.rss_max_bytes, 190);
        assert_eq!(g.fds_growth(), 0.0);
        assert_eq!(g.disk_bytes, Some((3_000, 9_000)));
        assert_eq!(g.seconds, 7.0);
        assert!(Growth::of(&samples[..1]).is_none());
    }

    #[test]
    fn this_process_can_be_watched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), [0u8; 1000]).unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/b"), [0u8; 24]).unwrap();
        let w = Watched {
            pid: std::process::id(),
            dir: Some(dir.path().to_path_buf()),
        };
        let s = w.sample(true).unwrap();
        assert!(s.rss_bytes > 0 && s.fds > 0, "{s:?}");
        assert_eq!(s.disk_bytes, Some(1024));
        assert_eq!(w.sample(false).unwrap().disk_bytes, None);
    }
}
