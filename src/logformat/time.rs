//! Timestamps as access logs write them, turned into Unix milliseconds.
//!
//! Hand-written rather than parsed with a general date library: this runs once per log line,
//! and the three shapes it accepts are fixed.

/// Days from 1970-01-01 to the given proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date (year, month, day) of a day count from 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn digits(b: &[u8]) -> Option<i64> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    let mut n: i64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        n = n * 10 + i64::from(c - b'0');
    }
    Some(n)
}

fn month_number(b: &[u8]) -> Option<u32> {
    const MONTHS: [&[u8; 3]; 12] =
        [b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"];
    let lower =
        [b.first()?.to_ascii_lowercase(), b.get(1)?.to_ascii_lowercase(), b.get(2)?.to_ascii_lowercase()];
    MONTHS.iter().position(|m| **m == lower).map(|i| i as u32 + 1)
}

fn to_ms(
    (y, mo, d): (i64, u32, u32),
    (h, mi, s): (i64, i64, i64),
    frac_ms: i64,
    offset_s: i64,
) -> Option<i64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + s - offset_s) * 1000 + frac_ms)
}

/// `+0100`, `-07:00`, `Z`: the offset east of UTC in seconds.
fn offset_seconds(b: &[u8]) -> Option<i64> {
    match b {
        b"Z" | b"z" => Some(0),
        [sign @ (b'+' | b'-'), h1, h2, rest @ ..] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = match rest {
                [m1, m2] | [b':', m1, m2] => digits(&[*m1, *m2])?,
                [] => 0,
                _ => return None,
            };
            let secs = hours * 3600 + minutes * 60;
            Some(if *sign == b'-' { -secs } else { secs })
        }
        _ => None,
    }
}

/// The length of the usual CLF time text, the only length [`parse_clf`] remembers.
pub(super) const CLF_LEN: usize = 26;

/// A usual-length time text as machine words: 26 bytes in three words and a last one whose
/// top six bytes are zero.
type ClfWords = [u64; 4];

/// Matches no text: its last word has bytes where a text's has zeros.
const NO_CLF: ClfWords = [0, 0, 0, u64::MAX];

thread_local! {
    /// The last usual-length time text [`parse_clf`] read on this thread, and its value.
    static LAST_CLF: std::cell::Cell<(ClfWords, i64)> = const { std::cell::Cell::new((NO_CLF, 0)) };
}

/// Parses the Common Log Format time, `10/Oct/2000:13:55:36 -0700`. Consecutive lines of a
/// log mostly share their second, so the last text read on the thread is remembered and an
/// identical one costs a comparison (parsing was a fortieth of the analyzer's CPU). The text
/// is compared as four machine words: as a byte array copied out of the thread-local cell,
/// the comparison's vector loads waited for the copy's word stores to land (`perf`: 4% of
/// the analyzer's samples on one load).
pub fn parse_clf(b: &[u8]) -> Option<i64> {
    let Ok(usual) = <&[u8; CLF_LEN]>::try_from(b) else {
        return parse_clf_text(b);
    };
    let (head, tail) = usual.as_chunks::<8>();
    let word = |i: usize| head.get(i).map_or(0, |w| u64::from_le_bytes(*w));
    let words = [word(0), word(1), word(2), tail.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b))];
    let (last, ms) = LAST_CLF.get();
    // Word by word, not `==` on the arrays: that built `words` on the stack and read it back
    // in vector loads, which again waited for the stores.
    if (0..4).fold(0, |diff, i| diff | (last[i] ^ words[i])) == 0 {
        return Some(ms);
    }
    let ms = parse_clf_text(b)?;
    LAST_CLF.set((words, ms));
    Some(ms)
}

fn parse_clf_text(b: &[u8]) -> Option<i64> {
    // dd/Mon/yyyy:HH:MM:SS +zzzz
    if b.len() < 20 || b[2] != b'/' || b[6] != b'/' || b[11] != b':' {
        return None;
    }
    let d = digits(&b[0..2])? as u32;
    let mo = month_number(&b[3..6])?;
    let y = digits(&b[7..11])?;
    let h = digits(&b[12..14])?;
    let mi = digits(&b[15..17])?;
    let s = digits(&b[18..20])?;
    if b[14] != b':' || b[17] != b':' {
        return None;
    }
    // HAProxy writes milliseconds and no zone: `15/Oct/2003:08:31:57.130`.
    let (frac_ms, rest) = fraction_ms(&b[20..])?;
    let offset = match rest {
        [] => 0,
        [b' ', zone @ ..] => offset_seconds(zone)?,
        _ => return None,
    };
    to_ms((y, mo, d), (h, mi, s), frac_ms, offset)
}

/// An optional `.fraction` of a second at the start of `rest`, as milliseconds, and what
/// follows it; `None` for a dot without digits.
fn fraction_ms(rest: &[u8]) -> Option<(i64, &[u8])> {
    let Some(after_dot) = rest.strip_prefix(b".") else { return Some((0, rest)) };
    let n = after_dot.iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let ms =
        after_dot[..n].iter().take(3).enumerate().map(|(i, c)| i64::from(c - b'0') * [100, 10, 1][i]).sum();
    Some((ms, &after_dot[n..]))
}

/// Parses ISO 8601 / RFC 3339, `2000-10-10T13:55:36+00:00`, with optional fraction and `Z`.
/// A missing zone is read as UTC.
pub fn parse_iso8601(b: &[u8]) -> Option<i64> {
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let y = digits(&b[0..4])?;
    let mo = digits(&b[5..7])? as u32;
    let d = digits(&b[8..10])? as u32;
    let h = digits(&b[11..13])?;
    let mi = digits(&b[14..16])?;
    let s = digits(&b[17..19])?;
    let (frac_ms, rest) = fraction_ms(&b[19..])?;
    let offset = if rest.is_empty() { 0 } else { offset_seconds(rest)? };
    to_ms((y, mo, d), (h, mi, s), frac_ms, offset)
}

/// Parses Unix seconds with an optional fraction, as nginx's `$msec` writes them: `1700000000.123`.
pub fn parse_epoch(b: &[u8]) -> Option<i64> {
    let (int, frac) = match memchr::memchr(b'.', b) {
        Some(dot) => (&b[..dot], &b[dot + 1..]),
        None => (b, &b""[..]),
    };
    if int.is_empty() || int.len() > 12 || !int.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let secs: i64 = int.iter().fold(0, |n, c| n * 10 + i64::from(c - b'0'));
    let mut ms = 0;
    for (i, c) in frac.iter().take(3).enumerate() {
        ms += i64::from(c - b'0') * [100, 10, 1][i];
    }
    Some(secs * 1000 + ms)
}

/// Parses any of the shapes above; used for JSON logs, whose time field may hold any of them.
pub fn parse_any(b: &[u8]) -> Option<i64> {
    parse_iso8601(b).or_else(|| parse_clf(b)).or_else(|| parse_epoch(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_with_offsets() {
        // 2000-10-10T20:55:36Z
        assert_eq!(parse_clf(b"10/Oct/2000:13:55:36 -0700"), Some(971_211_336_000));
        assert_eq!(parse_clf(b"10/Oct/2000:20:55:36 +0000"), Some(971_211_336_000));
        assert_eq!(parse_clf(b"10/oct/2000:22:55:36 +0200"), Some(971_211_336_000));
        assert_eq!(parse_clf(b"10/Oct/2000:20:55:36"), Some(971_211_336_000));
        assert_eq!(parse_clf(b"10/Oct/2000:20:55:36.130"), Some(971_211_336_130), "HAProxy's");
        assert_eq!(parse_clf(b"10/Oct/2000:20:55:36."), None);
    }

    #[test]
    fn a_remembered_clf_time_is_only_reused_for_the_same_text() {
        let t = |s: &[u8]| parse_clf(s);
        assert_eq!(t(b"10/Oct/2000:13:55:36 -0700"), Some(971_211_336_000));
        assert_eq!(t(b"10/Oct/2000:13:55:36 -0700"), Some(971_211_336_000));
        assert_eq!(t(b"10/Oct/2000:13:55:37 -0700"), Some(971_211_337_000));
        assert_eq!(t(b"10/Oct/2000:13:55:37 -0700 "), None, "a longer text is parsed, not matched");
        assert_eq!(t(b"10/Oct/2000:13:55:3"), None);
        assert_eq!(t(b"10/Oct/2000:13:55:37 -0700"), Some(971_211_337_000));
        // Texts that differ only in their last two bytes (the fourth word), or only in the
        // first: each is read, not taken for the one before.
        assert_eq!(t(b"10/Oct/2000:13:55:37 -0630"), Some(971_211_337_000 - 1_800_000));
        assert_eq!(t(b"11/Oct/2000:13:55:37 -0630"), Some(971_211_337_000 - 1_800_000 + 86_400_000));
    }

    #[test]
    fn a_fresh_thread_remembers_no_text() {
        // Zero bytes are what the words of an empty memory would hold.
        let nul = std::thread::spawn(|| parse_clf(&[0; CLF_LEN])).join().expect("no panic");
        assert_eq!(nul, None);
    }

    #[test]
    fn clf_rejects_garbage() {
        for bad in [
            &b""[..],
            b"10/Foo/2000:13:55:36 -0700",
            b"10/Oct/2000:13:55:36 -0",
            b"99/Oct/2000:13:55:36 +0000",
            b"10/Oct/2000:25:55:36 +0000",
            b"10/Oct/2000 13:55:36 +0000",
        ] {
            assert_eq!(parse_clf(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn iso8601_variants() {
        assert_eq!(parse_iso8601(b"2000-10-10T20:55:36Z"), Some(971_211_336_000));
        assert_eq!(parse_iso8601(b"2000-10-10T13:55:36-07:00"), Some(971_211_336_000));
        assert_eq!(parse_iso8601(b"2000-10-10T20:55:36.250+00:00"), Some(971_211_336_250));
        assert_eq!(parse_iso8601(b"2000-10-10 20:55:36"), Some(971_211_336_000));
        assert_eq!(parse_iso8601(b"2000-10-10T20:55"), None);
    }

    #[test]
    fn epoch_and_any() {
        assert_eq!(parse_epoch(b"971211336.25"), Some(971_211_336_250));
        assert_eq!(parse_epoch(b"971211336"), Some(971_211_336_000));
        assert_eq!(parse_epoch(b"97x"), None);
        assert_eq!(parse_any(b"10/Oct/2000:20:55:36 +0000"), Some(971_211_336_000));
        assert_eq!(parse_any(b"971211336"), Some(971_211_336_000));
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 1, 11_016, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }
}
