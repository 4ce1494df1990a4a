//! How the CLI prints: to stdout (a closed pipe is fine), as JSON, as tables, and the small
//! formats its columns use (short fingerprints, durations, UTC dates).

use crate::cli::table::Table;
use serde::Serialize;
use std::io::Write;

/// Hex digits of a fingerprint shown in tables: enough to tell clients apart and to type.
const FINGERPRINT_SHOWN: usize = 16;
/// Hex digits of a full SHA-256 fingerprint.
pub const FINGERPRINT_LEN: usize = 64;

/// Writes to stdout; a closed pipe (`howl sessions | head -1`) is not an error.
pub fn emit(text: &str) -> Result<(), String> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

pub fn emit_json<T: Serialize + ?Sized>(v: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    emit(&format!("{text}\n"))
}

/// A table, or the friendly line when there is nothing to list.
pub fn emit_table(t: &Table, empty: &str) -> Result<(), String> {
    if t.is_empty() {
        emit(&format!("{empty}\n"))
    } else {
        emit(&t.render())
    }
}

pub fn is_full_fingerprint(s: &str) -> bool {
    s.len() == FINGERPRINT_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The first hex digits of a fingerprint; anything that is not one is shown whole.
pub fn short_fingerprint(fp: &str) -> String {
    if is_full_fingerprint(fp) {
        fp[..FINGERPRINT_SHOWN].to_ascii_lowercase()
    } else {
        fp.to_owned()
    }
}

/// `WxH`, or "-" when the size is not known yet.
pub fn resolution(width: u32, height: u32) -> String {
    if width > 0 && height > 0 {
        format!("{width}x{height}")
    } else {
        "-".into()
    }
}

/// A duration as its two largest units: "45s", "3m 05s", "1h 02m", "2d 03h".
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Seconds since the Unix epoch as "YYYY-MM-DD HH:MM:SS UTC".
pub fn utc(unix: u64) -> String {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX / 2);
    let rem = unix % 86_400;
    let (y, mo, d) = civil_from_days(days);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by counting 400-year eras
/// (146 097 days each) from 0000-03-01 so that leap days fall at the end of each year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // year of era, 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
    let mp = (5 * doy + 2) / 153; // month from March, 0..11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_700_000_000), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(4_107_542_399), "2100-02-28 23:59:59 UTC");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(65), "1m 05s");
        assert_eq!(duration(3_720), "1h 02m");
        assert_eq!(duration(2 * 86_400 + 3 * 3600 + 5), "2d 03h");
    }
}
