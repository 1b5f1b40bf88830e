//! Durations as written in workflows: `250ms`, `3s`, `1m30s`, `2h`, or a bare
//! number of seconds (`1.5`).

use std::time::Duration;

/// Parses a duration written as a sequence of `<number><unit>` parts
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d`), e.g. `250ms`, `1m30s`, `0.5s`.
///
/// A bare number (no unit) means seconds. Negative, empty, NaN and overflowing
/// values are rejected with a message that says what was expected.
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(secs) = s.parse::<f64>() {
        return from_secs(secs);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(format!("expected a number at `{}`", &s[start..]));
        }
        let number: f64 = s[start..i]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &s[start..i]))?;
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let scale = match s[unit_start..i].trim() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => return Err(format!("missing unit after `{}`", &s[start..i])),
            other => return Err(format!("unknown unit `{other}`")),
        };
        total += number * scale;
    }
    from_secs(total)
}

fn from_secs(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err("a duration must be a finite, non-negative value".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| "duration is too large".into())
}

/// Formats a duration compactly for people (`1.5s`, `250ms`, `42µs`).
pub fn format(d: Duration) -> String {
    let us = d.as_micros();
    if us >= 1_000_000 {
        let secs = d.as_secs_f64();
        if secs >= 3600.0 {
            format!("{:.2}h", secs / 3600.0)
        } else if secs >= 60.0 {
            format!("{:.2}m", secs / 60.0)
        } else {
            trim(format!("{secs:.3}")) + "s"
        }
    } else if us >= 1_000 {
        trim(format!("{:.3}", us as f64 / 1000.0)) + "ms"
    } else if us > 0 {
        format!("{us}µs")
    } else if d.is_zero() {
        "0s".to_string()
    } else {
        format!("{}ns", d.as_nanos())
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_compounds() {
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("3s"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("100us"), Ok(Duration::from_micros(100)));
        assert_eq!(parse(" 10 ms "), Ok(Duration::from_millis(10)));
    }

    #[test]
    fn rejects_garbage_with_a_reason() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(
            parse("3 parsecs")
                .unwrap_err()
                .contains("unknown unit `parsecs`")
        );
        assert!(parse("ms").unwrap_err().contains("expected a number"));
        assert!(parse("-1s").is_err());
        assert!(parse("NaN").is_err());
        assert!(parse("1e300h").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format(Duration::from_millis(250)), "250ms");
        assert_eq!(format(Duration::from_micros(42)), "42µs");
        assert_eq!(format(Duration::from_secs(90)), "1.50m");
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_nanos(5)), "5ns");
    }
}
