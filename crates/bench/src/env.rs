//! The machine and build a result was measured on.

use serde::{Deserialize, Serialize};

/// Where and how a set of results was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// CPU model from `/proc/cpuinfo` (`unknown` elsewhere).
    pub cpu: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// 1-, 5- and 15-minute load averages when the run started.
    pub load_before: [f64; 3],
    /// The same when it ended.
    pub load_after: [f64; 3],
    /// `git rev-parse HEAD` in the working directory, or `unknown`.
    pub git_sha: String,
    /// `rustc --version` of the compiler that built the binary.
    pub rustc: String,
    /// `release` or `debug` (whether debug assertions are on).
    pub profile: String,
    /// Baton's version.
    pub baton_version: String,
    /// The operating system (`std::env::consts::OS`) and architecture.
    pub os: String,
    /// When it was captured, Unix seconds (0 in reports from before it was
    /// kept).
    #[serde(default)]
    pub started_unix: u64,
}

impl Environment {
    /// The environment now (`load_after` equals `load_before` until
    /// [`Environment::finish`]).
    pub fn capture() -> Environment {
        let load = load_average();
        Environment {
            cpu: cpu_model(),
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_before: load,
            load_after: load,
            git_sha: git_sha(),
            rustc: env!("BATON_RUSTC_VERSION").to_string(),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_string(),
            baton_version: env!("CARGO_PKG_VERSION").to_string(),
            os: format!("{}-{}", std::env::consts::OS, std::env::consts::ARCH),
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }

    /// The environment captured once per process (CPU, git sha, ...), with
    /// `load_after` the load average now: what each record carries.
    pub fn capture_cached() -> Environment {
        static BASE: std::sync::OnceLock<Environment> = std::sync::OnceLock::new();
        let mut env = BASE.get_or_init(Environment::capture).clone();
        env.finish();
        env
    }

    /// Records the load average at the end of the run.
    pub fn finish(&mut self) {
        self.load_after = load_average();
    }
}

/// `/proc/loadavg`'s three averages (zeros where unavailable).
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut it = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
        it.next().unwrap_or(0.0),
    ]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn git_sha() -> String {
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// The process's resident set now, in bytes (`/proc/self/statm`).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0)
        * 4096
}

/// The process's peak resident set (`VmHWM`), in bytes.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Resets the peak resident set to the current one (Linux ≥ 4.0; a no-op
/// elsewhere), so each suite's peak is its own.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}
