//! `combined` and `common`, read by a parser written out for them.
//!
//! They are what most logs come in. The `log_format` interpreter spent much of its time on
//! deciding, for each of their eighteen segments, what the segment is, where it ends and
//! where its value goes. This parser takes the same steps in their fixed order, so its
//! records and its errors are the interpreter's, and a property test holds it to that.
//!
//! A scanner, not nom combinators, on measurement: the same steps written as nom's sequence
//! (`tag`, `alt`, `preceded` over field parsers built on [`scan`]), with the same records and
//! errors, parsed `cargo bench --bench parse`'s combined lines in 3.39, 3.06 and 3.13 ms
//! against 2.82, 2.58 and 2.68 ms for this code, alternated in one run (18% slower), and
//! common lines in 2.24 and 2.25 ms against 2.01 and 2.01 ms (12% slower), 2026-12-07.

use std::borrow::Cow;

use super::compiled::{is_dash, parse_status, parse_u64, quoted_len};
use super::request::{parse_request, refused};
use super::scan;
use super::time::{CLF_LEN, parse_clf};
use super::{ParseError, Record};

/// Which of the two formats a line is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Clf {
    /// [`super::COMBINED`]: common plus the quoted referer and user agent.
    Combined,
    /// [`super::COMMON`].
    Common,
}

/// Parses a line of `format`, extra trailing text allowed.
pub(super) fn parse(line: &[u8], format: Clf) -> Result<Record<'_>, ParseError> {
    let mut rec = Record::default();
    let mut rest = line;
    let addr = field(&mut rest, b' ')?;
    if !is_dash(addr) {
        rec.client = Some(Cow::Borrowed(addr));
    }
    // $ident and $remote_user, kept by neither format's record, are `-` on nearly every line:
    // a test of the six bytes spares two searches for their ends.
    match rest.split_first_chunk::<6>() {
        Some((b" - - [", after)) => rest = after,
        _ => {
            literal(&mut rest, b" ")?;
            field(&mut rest, b' ')?; // $ident
            literal(&mut rest, b" ")?;
            field(&mut rest, b' ')?; // $remote_user
            literal(&mut rest, b" [")?;
        }
    }
    rec.time_ms = Some(time(&mut rest)?);
    literal(&mut rest, b"] \"")?;
    let request = quoted(&mut rest)?;
    let target = parse_request(request).ok_or_else(|| refused(request))?;
    rec.method = Cow::Borrowed(target.method);
    rec.path = Cow::Borrowed(target.path);
    rec.query = target.query.map(Cow::Borrowed);
    rec.host = target.host.map(Cow::Borrowed);
    literal(&mut rest, b"\" ")?;
    rec.status = Some(status(&mut rest)?);
    literal(&mut rest, b" ")?;
    let bytes = match format {
        Clf::Combined => field(&mut rest, b' ')?,
        // The last field: it ends at the line's end, or at a space before trailing text.
        Clf::Common => &rest[..scan::find(b' ', rest).unwrap_or(rest.len())],
    };
    if !is_dash(bytes) {
        rec.bytes = Some(parse_u64(bytes).ok_or(ParseError::BadNumber("body_bytes_sent"))?);
    }
    if format == Clf::Combined {
        literal(&mut rest, b" \"")?;
        quoted(&mut rest)?; // $http_referer
        literal(&mut rest, b"\" \"")?;
        // $http_user_agent, the last field: text may follow its closing quote, so all that
        // matters is that it has one.
        if !closes(rest) {
            return Err(ParseError::Mismatch("a quoted field"));
        }
    }
    Ok(rec)
}

/// Whether a quoted field starting at `s` has a closing quote: a `"` that no backslash
/// escapes. When the line's last quote is such a one, it does, whatever comes before; that
/// is one search from the end, where scanning user agents from the start, stopping at each
/// escape, took about 7% of the analyzer's samples in `perf` (4% after).
#[inline(always)]
fn closes(s: &[u8]) -> bool {
    match memchr::memrchr(b'"', s) {
        // An even run of backslashes before a quote escape one another, not it.
        Some(q) if s[..q].iter().rev().take_while(|&&c| c == b'\\').count() % 2 == 0 => true,
        Some(_) => quoted_len(s).is_some(),
        None => false,
    }
}

/// `$time_local`, up to the first `]`, which stays in `rest`. Nearly every log writes it in
/// its usual 26 bytes, which hold no `]` when they are a valid time; the search for the `]`
/// then is a single test.
#[inline(always)]
fn time(rest: &mut &[u8]) -> Result<i64, ParseError> {
    if rest.get(CLF_LEN) == Some(&b']')
        && let Some(ms) = parse_clf(&rest[..CLF_LEN])
    {
        *rest = &rest[CLF_LEN..];
        return Ok(ms);
    }
    parse_clf(field(rest, b']')?).ok_or(ParseError::BadTime)
}

/// `$status`, up to the first space, which stays in `rest`. A valid one is three digits, and
/// when a space follows them, no search for it is needed.
#[inline(always)]
fn status(rest: &mut &[u8]) -> Result<u16, ParseError> {
    if let Some((digits, after)) = rest.split_first_chunk::<3>()
        && after.first() == Some(&b' ')
        && let Ok(status) = parse_status(digits)
    {
        *rest = after;
        return Ok(status);
    }
    parse_status(field(rest, b' ')?)
}

/// An unquoted field: up to the first `end`, which stays in `rest`.
#[inline(always)]
fn field<'a>(rest: &mut &'a [u8], end: u8) -> Result<&'a [u8], ParseError> {
    let len = scan::find(end, rest).ok_or(ParseError::Mismatch("a field"))?;
    let (value, after) = rest.split_at(len);
    *rest = after;
    Ok(value)
}

/// A quoted field's content, up to its closing quote, which stays in `rest`.
#[inline(always)]
fn quoted<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], ParseError> {
    let len = quoted_len(rest).ok_or(ParseError::Mismatch("a quoted field"))?;
    let (value, after) = rest.split_at(len);
    *rest = after;
    Ok(value)
}

/// The separator text between two fields.
#[inline(always)]
fn literal(rest: &mut &[u8], text: &[u8]) -> Result<(), ParseError> {
    match rest.split_at_checked(text.len()) {
        Some((head, after)) if head == text => {
            *rest = after;
            Ok(())
        }
        _ => Err(ParseError::Mismatch("separator text")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logformat::{COMBINED, COMMON, CompiledFormat};
    use proptest::prelude::*;

    /// Lines near the formats: real ones, cut, with bytes replaced or inserted.
    fn near_lines() -> impl Strategy<Value = Vec<u8>> {
        let base = prop_oneof![
            Just(&br#"203.0.113.9 - alice [17/May/2015:10:05:03 +0000] "GET /api/products/42?page=2 HTTP/1.1" 200 2326 "http://example.com/" "Mozilla/5.0 (X11)""#[..]),
            Just(&b"2001:db8::1 - - [17/May/2015:10:05:03 +0000] \"GET /a\\\"b HTTP/1.1\" 304 - \"-\" \"agent \\\"quoted\\\" x\" extra"[..]),
            Just(&br#"1.2.3.4 - - [17/May/2015:10:05:03 -0700] "HEAD http://h.example/x#f HTTP/1.0" 404 0"#[..]),
            Just(&br#"1.2.3.4 - - [01/Jan/2026:00:00:00 +0000] "-" 400 0 "-" "-""#[..]),
        ];
        let special = prop_oneof![
            Just(b' '),
            Just(b'"'),
            Just(b'\\'),
            Just(b'['),
            Just(b']'),
            Just(b'-'),
            Just(b'x'),
            Just(b'7'),
            any::<u8>()
        ];
        (
            base,
            proptest::collection::vec((any::<prop::sample::Index>(), special, 0..3u8), 0..4),
            any::<prop::sample::Index>(),
        )
            .prop_map(|(base, edits, cut)| {
                let mut line = base.to_vec();
                for (at, byte, how) in edits {
                    let i = at.index(line.len() + 1);
                    match how {
                        0 if i < line.len() => line[i] = byte,
                        1 if i < line.len() => {
                            line.remove(i);
                        }
                        _ => line.insert(i, byte),
                    }
                }
                line.truncate(cut.index(line.len() + 1).max(line.len() * 3 / 4));
                line
            })
    }

    #[test]
    fn a_user_agent_closes_at_a_quote_no_backslash_escapes() {
        let generic = CompiledFormat::compile(COMBINED, true).expect("built in");
        for (ua, closes) in [
            (r#"x""#, true),
            (r#"x" trailing \""#, true), // the last quote is escaped; an earlier one closes
            (r#"x\""#, false),
            (r#"x\\""#, true),
            (r#"x \" y"#, false),
            ("x", false),
        ] {
            let line =
                format!(r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 1 "-" "{ua}"#);
            let ours = parse(line.as_bytes(), Clf::Combined);
            assert_eq!(ours.is_ok(), closes, "{line}");
            assert_eq!(ours, generic.parse_generic(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn a_time_of_the_usual_length_is_read_as_the_interpreter_reads_it() {
        let generic = CompiledFormat::compile(COMBINED, true).expect("built in");
        for time in [
            "17/May/2015:10:05:03 +0000",  // the usual 26 bytes
            "17/May/2015:10:05:03 +00]0",  // 26 bytes, a `]` inside
            "17/May/2015:10:05:03 +0000]", // a `]` where the usual time ends, then another
            "17/May/2015:10:05:03 +00:00", // 27 bytes
            "17/May/2015:10:05:03",        // no zone
            "17/Maz/2015:10:05:03 +0000",  // 26 bytes, not a time
        ] {
            let line = format!(r#"1.2.3.4 - - [{time}] "GET /a HTTP/1.1" 200 1 "-" "-""#);
            assert_eq!(
                parse(line.as_bytes(), Clf::Combined),
                generic.parse_generic(line.as_bytes()),
                "{line}"
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn reads_lines_as_the_interpreter_does(line in prop_oneof![near_lines(), proptest::collection::vec(any::<u8>(), 0..200)]) {
            for (source, format) in [(COMBINED, Clf::Combined), (COMMON, Clf::Common)] {
                let generic = CompiledFormat::compile(source, true).expect("built in").parse_generic(&line);
                prop_assert_eq!(parse(&line, format), generic, "{:?} {}", format, String::from_utf8_lossy(&line));
            }
        }
    }
}
