//! CPU time of this process and of a spawned server, from `/proc` (Linux;
//! `None` elsewhere), so a report shows when the client itself was the limit.

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`, 100 on Linux).
const TICKS: f64 = 100.0;

fn stat_seconds(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command (which may hold spaces) start after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 11 and 12 after the state.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// User + system CPU seconds of this process so far.
pub fn process_seconds() -> Option<f64> {
    stat_seconds("/proc/self/stat")
}

/// User + system CPU seconds of process `pid` so far.
pub fn pid_seconds(pid: u32) -> Option<f64> {
    stat_seconds(&format!("/proc/{pid}/stat"))
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_its_own_cpu_time() {
        if cfg!(target_os = "linux") {
            let a = super::process_seconds().unwrap();
            let mut x = 0u64;
            for i in 0..20_000_000u64 {
                x = x.wrapping_add(i * i);
            }
            std::hint::black_box(x);
            assert!(super::process_seconds().unwrap() >= a);
            assert!(super::load_average().is_some());
        }
    }
}
