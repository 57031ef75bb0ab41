//! Points in time as preheat stores and shows them: Unix milliseconds, written as RFC 3339 in
//! UTC through `humantime`. The shapes access logs write their timestamps in are
//! `logformat::time`'s; a profile or a report knows no log format.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last millisecond of year 9999, the end of what RFC 3339 can write.
const LAST_MS: i64 = 253_402_300_799_999;

/// Unix milliseconds as RFC 3339 in UTC, e.g. `2026-01-01T00:00:00Z` (milliseconds only
/// when they are not zero). A time RFC 3339 cannot write (before 1970 or after 9999, which
/// only a damaged log holds) is shown as its millisecond count rather than failing.
pub fn format_rfc3339(ms: i64) -> String {
    if !(0..=LAST_MS).contains(&ms) {
        return format!("{ms} ms since 1970");
    }
    let at = UNIX_EPOCH + Duration::from_millis(ms as u64);
    if ms % 1000 == 0 {
        humantime::format_rfc3339_seconds(at).to_string()
    } else {
        humantime::format_rfc3339_millis(at).to_string()
    }
}

/// An RFC 3339 time in UTC (`Z` or `+00:00`, any fraction) as Unix milliseconds, as
/// [`format_rfc3339`] writes them; `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339(text).ok()?;
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// The current time as Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_and_without_milliseconds() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00Z"),
            (1_767_225_600_000, "2026-01-01T00:00:00Z"),
            (1_767_225_600_123, "2026-01-01T00:00:00.123Z"),
            (951_782_400_000, "2000-02-29T00:00:00Z"),
        ] {
            assert_eq!(format_rfc3339(ms), text);
            assert_eq!(parse_rfc3339(text), Some(ms), "{text}");
        }
        assert_eq!(parse_rfc3339("2026-01-01T00:00:00+00:00"), Some(1_767_225_600_000));
    }

    #[test]
    fn what_it_cannot_write_or_read_is_no_panic() {
        assert_eq!(format_rfc3339(-1000), "-1000 ms since 1970");
        assert_eq!(format_rfc3339(LAST_MS + 1), format!("{} ms since 1970", LAST_MS + 1));
        assert!(format_rfc3339(LAST_MS).starts_with("9999-12-31T23:59:59.999"));
        for bad in ["", "yesterday", "2026-01-01", "2026-13-01T00:00:00Z", "2026-01-01T00:00:00+02:00"] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
