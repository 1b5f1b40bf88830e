//! Durations as written in workflows: `250ms`, `3s`, `1m30s`, `2h`, or a bare
//! number of seconds (`1.5`).

use std::time::Duration;

/// Parses a duration written as a sequence of `<number><unit>` parts
/// (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`, `d`), e.g. `250ms`, `1m30s`, `0.5s`.
///
/// A bare number (no unit) means seconds. Negative, empty, NaN and overflowing
/// values are rejected with a message that says what was expected.
///
/// Decimal numbers are read exactly (to the nearest nanosecond), so that
/// [`format_exact`] and `parse` round-trip every [`Duration`].
pub fn parse(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    if let Some(nanos) = decimal(s, NANOS_PER_SEC) {
        return from_nanos(nanos?);
    }
    // Forms only a float reads: `1e3`, `-1`, `NaN`, `inf`.
    if let Ok(secs) = s.parse::<f64>() {
        return from_secs(secs);
    }
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = 0u128;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(format!("expected a number at `{}`", &s[start..]));
        }
        let number = &s[start..i];
        let unit_start = i;
        while i < bytes.len() && !(bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        let scale = match s[unit_start..i].trim() {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" | "sec" => NANOS_PER_SEC,
            "m" | "min" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            "d" => 86400 * NANOS_PER_SEC,
            "" => return Err(format!("missing unit after `{number}`")),
            other => return Err(format!("unknown unit `{other}`")),
        };
        let nanos =
            decimal(number, scale).ok_or_else(|| format!("`{number}` is not a number"))??;
        total = total.checked_add(nanos).ok_or_else(too_large)?;
    }
    from_nanos(total)
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Fractional digits read: enough for any unit up to a day to resolve a
/// nanosecond, few enough that the arithmetic fits in a `u128`.
const MAX_FRACTION_DIGITS: usize = 24;

/// `number` (digits with at most one `.`) times `scale` nanoseconds, rounded to
/// the nearest nanosecond; `None` when `number` is not of that form.
fn decimal(number: &str, scale: u128) -> Option<Result<u128, String>> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
    if int.len() + frac.len() == 0 || !digits(int) || !digits(frac) {
        return None;
    }
    let mut whole = 0u128;
    for b in int.bytes() {
        match whole
            .checked_mul(10)
            .and_then(|w| w.checked_add(u128::from(b - b'0')))
        {
            Some(w) => whole = w,
            None => return Some(Err(too_large())),
        }
    }
    let frac = &frac[..frac.len().min(MAX_FRACTION_DIGITS)];
    let (mut numerator, mut denominator) = (0u128, 1u128);
    for b in frac.bytes() {
        numerator = numerator * 10 + u128::from(b - b'0');
        denominator *= 10;
    }
    let part = (numerator * scale + denominator / 2) / denominator;
    Some(
        whole
            .checked_mul(scale)
            .and_then(|w| w.checked_add(part))
            .ok_or_else(too_large),
    )
}

fn from_nanos(nanos: u128) -> Result<Duration, String> {
    let secs = u64::try_from(nanos / NANOS_PER_SEC).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (nanos % NANOS_PER_SEC) as u32))
}

fn from_secs(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err("a duration must be a finite, non-negative value".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| too_large())
}

fn too_large() -> String {
    "duration is too large".into()
}

/// Formats a duration so that [`parse`] reads back exactly the same value
/// (`90s`, `4h`, `1.0000001s`, `1.5µs`): what serialized workflows hold.
pub fn format_exact(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        return match secs {
            0 => "0s".to_string(),
            s if s % 86400 == 0 => format!("{}d", s / 86400),
            s if s % 3600 == 0 => format!("{}h", s / 3600),
            s if s % 60 == 0 => format!("{}m", s / 60),
            s => format!("{s}s"),
        };
    }
    if secs > 0 {
        trim(format!("{secs}.{nanos:09}")) + "s"
    } else if nanos >= 1_000_000 {
        trim(format!("{}.{:06}", nanos / 1_000_000, nanos % 1_000_000)) + "ms"
    } else if nanos >= 1_000 {
        trim(format!("{}.{:03}", nanos / 1_000, nanos % 1_000)) + "µs"
    } else {
        format!("{nanos}ns")
    }
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

    #[test]
    fn decimals_are_read_exactly() {
        assert_eq!(parse("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("1.0000001s"), Ok(Duration::new(1, 100)));
        assert_eq!(parse("0.1234567s"), Ok(Duration::from_nanos(123_456_700)));
        assert_eq!(parse("1.5ns"), Ok(Duration::from_nanos(2)));
        assert_eq!(parse("0.000000001"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1e3"), Ok(Duration::from_secs(1000)));
        assert_eq!(parse("18446744073709551615.999999999s"), Ok(Duration::MAX));
        assert!(
            parse("18446744073709551616s")
                .unwrap_err()
                .contains("too large")
        );
        assert!(
            parse("1.2.3s")
                .unwrap_err()
                .contains("`1.2.3` is not a number")
        );
    }

    #[test]
    fn exact_format_round_trips() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(1),
            Duration::from_nanos(1_500),
            Duration::from_nanos(999_999_999),
            Duration::from_millis(250),
            Duration::from_secs(90),
            Duration::from_secs(100),
            Duration::from_secs(3 * 3600 + 1),
            Duration::from_secs(4 * 3600),
            Duration::from_secs(2 * 86400),
            Duration::new(1, 100),
            Duration::new(86_400 * 400, 1),
            Duration::MAX,
        ] {
            let text = format_exact(d);
            assert_eq!(parse(&text), Ok(d), "{text}");
        }
        // Random durations at every magnitude, from nanoseconds to centuries.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let d = Duration::from_nanos(x >> (i % 64));
            assert_eq!(parse(&format_exact(d)), Ok(d), "{}", format_exact(d));
        }
        assert_eq!(format_exact(Duration::from_secs(90)), "90s");
        assert_eq!(format_exact(Duration::from_secs(14_400)), "4h");
        assert_eq!(format_exact(Duration::from_nanos(1_500)), "1.5µs");
        assert_eq!(format_exact(Duration::new(1, 100)), "1.0000001s");
    }
}
