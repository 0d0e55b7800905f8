//! Durations on the command line: seconds as a number (`0.5`, `30`) or a
//! number with a unit (`500ms`, `2s`, `1.5m`, `1h`).

use std::time::Duration;

/// The longest duration accepted: far beyond any sensible TTL, and small
/// enough that adding it to a clock never overflows.
const MAX_SECS: f64 = 100.0 * 365.0 * 24.0 * 3600.0;

/// Parse `0.5`, `30`, `500ms`, `2s`, `1.5m` or `1h` (a bare number is
/// seconds). Negative, non-finite and malformed values are rejected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let s = text.trim();
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 0.001,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(format!(
                "invalid duration `{text}`: unknown unit `{unit}` (use ms, s, m or h, e.g. 500ms, 2s, 1m; a bare number is seconds)"
            ))
        }
    };
    let garbage = || {
        format!("invalid duration `{text}`: expected seconds (e.g. 0.5, 30) or a number with a unit (500ms, 2s, 1m, 1h)")
    };
    // Only plain decimals: `f64::from_str` would also take `inf`, `NaN`, `1e3`.
    let plain = !number.is_empty()
        && number
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+'));
    if !plain {
        return Err(garbage());
    }
    let value: f64 = number.parse().map_err(|_| garbage())?;
    if value < 0.0 || number.starts_with('-') {
        return Err(format!("invalid duration `{text}`: must not be negative"));
    }
    let secs = value * scale;
    if !secs.is_finite() || secs > MAX_SECS {
        return Err(format!(
            "invalid duration `{text}`: must be at most 100 years"
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration as the command line spells it: the largest unit that
/// divides it (`1h`, `90s`, `250ms`).
pub fn show_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_durations_in_their_largest_unit() {
        for (text, shown) in [
            ("0", "0s"),
            ("1h", "1h"),
            ("90s", "90s"),
            ("2m", "2m"),
            ("0.25", "250ms"),
        ] {
            assert_eq!(
                parse_duration(text).map(show_duration).as_deref(),
                Ok(shown)
            );
        }
    }

    #[test]
    fn parses_seconds_and_units() {
        let ok = |s: &str| parse_duration(s).ok();
        assert_eq!(ok("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(ok("30"), Some(Duration::from_secs(30)));
        assert_eq!(ok("0"), Some(Duration::ZERO));
        assert_eq!(ok("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(ok("2s"), Some(Duration::from_secs(2)));
        assert_eq!(ok("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(ok("1m"), Some(Duration::from_secs(60)));
        assert_eq!(ok("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(ok(" 3s "), Some(Duration::from_secs(3)));
        assert_eq!(ok(".25"), Some(Duration::from_millis(250)));
    }

    #[test]
    fn rejects_negatives_and_garbage() {
        for (bad, why) in [
            ("-1", "negative"),
            ("-0.5s", "negative"),
            ("-0", "negative"),
            ("", "expected seconds"),
            ("s", "expected seconds"),
            ("abc", "unknown unit"),
            ("1x", "unknown unit"),
            ("5 s", "expected seconds"),
            ("1sec", "unknown unit"),
            ("inf", "unknown unit"),
            ("NaN", "unknown unit"),
            ("1e3", "unknown unit"),
            ("1..2", "expected seconds"),
            ("--1", "expected seconds"),
            ("1-", "expected seconds"),
            ("99999999999999999999h", "100 years"),
        ] {
            match parse_duration(bad) {
                Err(e) => assert!(e.contains(why), "{bad:?}: {e}"),
                Ok(d) => unreachable!("{bad:?} parsed as {d:?}"),
            }
        }
    }
}
