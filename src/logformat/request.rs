//! The request line (`GET /path?query HTTP/1.1`) and request targets.
//!
//! Byte scans rather than nom combinators: this runs once per log line, and the
//! combinator version of the request line cost a twelfth of the analyzer's CPU.

use super::{ParseError, scan};

/// Method, path, query and (for absolute-form targets) host of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub query: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
}

/// The longest method accepted.
const MAX_METHOD: usize = 24;

/// Whether each byte is an HTTP token character (RFC 9110 `tchar`).
const TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'_'
                    | b'.'
                    | b'!'
                    | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'^'
                    | b'`'
                    | b'|'
                    | b'~'
            );
        c += 1;
    }
    t
};

/// Splits `METHOD TARGET [PROTOCOL]`; `None` for `-`, binary junk, or a missing target.
/// Whatever follows the protocol is tolerated, and the protocol may be missing (HTTP/0.9).
/// A target holding spaces (some servers log the decoded path) is read from both ends, the
/// method first and the protocol last; without a protocol after it, it is `None`, since where
/// such a target ends cannot be told.
pub fn parse_request(line: &[u8]) -> Option<Target<'_>> {
    // Most requests are GETs: one test instead of a table lookup per byte of the method.
    let method_len = if line.starts_with(b"GET ") {
        3
    } else {
        line.iter().take(MAX_METHOD + 1).position(|&c| !TOKEN[usize::from(c)])?
    };
    if method_len == 0 || line[method_len] != b' ' {
        return None;
    }
    let rest = &line[method_len + 1..];
    let method = &line[..method_len];
    if matches!(rest.first(), None | Some(b' ')) {
        return None;
    }
    // A target with no path (`?q`, `#f`) names nothing to cache.
    let whole_target = |first_space: usize| {
        let len = target_len(rest, first_space)?;
        Some(Target { method, ..split_target(&rest[..len]) }).filter(|t| !t.path.is_empty())
    };
    if matches!(rest.first(), Some(b'h' | b'H')) {
        // Perhaps an absolute-form target, whose host ends at a `/`, `?` or `#` before the
        // target's end: cut the target first.
        return whole_target(scan::find(b' ', rest).unwrap_or(rest.len()));
    }
    // The path ends at the first `?`, `#` or space and the target at the first space, which
    // is mostly where the path ends: one scan finds both. Cutting the target first and then
    // splitting it scanned the path twice (1.5% of the analyzer's instructions).
    let space_from = |at: usize| scan::find(b' ', &rest[at..]).map_or(rest.len(), |n| at + n);
    let (path, query, first_space) = match scan::find3(b' ', b'?', b'#', rest) {
        Some(q) if rest[q] == b'?' => {
            let query = &rest[q + 1..];
            let end = scan::find2(b' ', b'#', query).unwrap_or(query.len());
            let space = if query.get(end) == Some(&b'#') { space_from(q + 1 + end) } else { q + 1 + end };
            (&rest[..q], Some(&query[..end]), space)
        }
        Some(end) if rest[end] == b'#' => (&rest[..end], None, space_from(end)),
        Some(end) => (&rest[..end], None, end),
        None => (rest, None, rest.len()),
    };
    if first_space < rest.len() && !rest[first_space + 1..].starts_with(b"HTTP/") {
        return whole_target(first_space);
    }
    if path.is_empty() {
        return None;
    }
    Some(Target { method, path, query, host: None })
}

/// Why a request line that [`parse_request`] refused is no request: none was logged (`-`,
/// `- - -` or nothing: a connection closed or timed out before it sent one, or it was not
/// HTTP), or it is malformed.
pub fn refused(line: &[u8]) -> ParseError {
    // Envoy writes a TCP connection's missing method, path and protocol as `- - -`.
    if line.split(|&c| c == b' ').all(|w| w.is_empty() || w == b"-") {
        ParseError::NoRequest
    } else {
        ParseError::BadRequest
    }
}

/// How long the target is, given its first space: up to there when the protocol or nothing
/// follows, else up to the last space when the protocol follows that (trailing spaces cut).
fn target_len(rest: &[u8], first_space: usize) -> Option<usize> {
    if first_space == rest.len() || rest[first_space + 1..].starts_with(b"HTTP/") {
        return Some(first_space);
    }
    let last = memchr::memrchr(b' ', rest)?;
    if !rest[last + 1..].starts_with(b"HTTP/") {
        return None;
    }
    Some(rest[..last].iter().rposition(|&c| c != b' ').map_or(0, |n| n + 1))
}

/// Splits a request target into path and query; an absolute-form target
/// (`http://host/path`) also yields its host.
pub fn split_target(target: &[u8]) -> Target<'_> {
    let mut host = None;
    let mut rest = target;
    if matches!(rest.first(), Some(b'h' | b'H')) {
        for scheme in [&b"http://"[..], b"https://"] {
            if rest.len() > scheme.len() && rest[..scheme.len()].eq_ignore_ascii_case(scheme) {
                let after = &rest[scheme.len()..];
                let end = after.iter().position(|&c| matches!(c, b'/' | b'?' | b'#')).unwrap_or(after.len());
                host = Some(&after[..end]);
                rest = &after[end..];
                break;
            }
        }
    }
    // A fragment never reaches a server, but broken clients log one.
    let (path, query) = match scan::find2(b'?', b'#', rest) {
        Some(q) if rest[q] == b'?' => {
            let query = &rest[q + 1..];
            let end = scan::find(b'#', query).unwrap_or(query.len());
            (&rest[..q], Some(&query[..end]))
        }
        Some(hash) => (&rest[..hash], None),
        None => (rest, None),
    };
    let path = if path.is_empty() && host.is_some() { &b"/"[..] } else { path };
    Target { method: b"", path, query, host }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The request line read the plain way: the protocol taken off the end, then the target
    /// split.
    fn parse_request_by_cutting(line: &[u8]) -> Option<Target<'_>> {
        let method_len = line.iter().take(MAX_METHOD + 1).position(|&c| !TOKEN[usize::from(c)])?;
        if method_len == 0 || line[method_len] != b' ' {
            return None;
        }
        let rest = &line[method_len + 1..];
        let words: Vec<&[u8]> = rest.split(|&c| c == b' ').collect();
        if words[0].is_empty() {
            return None;
        }
        let target = if words.len() == 1 || words[1].starts_with(b"HTTP/") {
            words[0]
        } else {
            // Several words without the protocol next: the target is all but the last word,
            // which must be the protocol.
            let last = words.iter().rposition(|w| w.starts_with(b"HTTP/"))?;
            if last != words.len() - 1 {
                return None;
            }
            rest[..words[..last].iter().map(|w| w.len() + 1).sum::<usize>() - 1].trim_ascii_end()
        };
        if target.is_empty() {
            return None;
        }
        Some(Target { method: &line[..method_len], ..split_target(target) }).filter(|t| !t.path.is_empty())
    }

    proptest! {
        #[test]
        fn one_scan_reads_a_request_as_cutting_its_target_first(
            start in prop_oneof![
                Just(&b"GET "[..]),
                Just(&b"GET h"[..]),
                Just(&b"GET http://"[..]),
                Just(&b"GET  "[..]),
                Just(&b""[..]),
            ],
            body in proptest::collection::vec(
                prop_oneof![Just(b' '), Just(b'?'), Just(b'#'), Just(b'/'), Just(b'x'), any::<u8>()],
                0..80,
            ),
            end in prop_oneof![Just(&b""[..]), Just(&b" HTTP/1.1"[..]), Just(&b" HTTP/1.1 x"[..])],
        ) {
            let line = [start, &body[..], end].concat();
            prop_assert_eq!(parse_request(&line), parse_request_by_cutting(&line));
        }
    }

    #[test]
    fn request_lines() {
        let t = parse_request(b"GET /a/b?x=1 HTTP/1.1").expect("valid");
        assert_eq!((t.method, t.path, t.query), (&b"GET"[..], &b"/a/b"[..], Some(&b"x=1"[..])));
        let t = parse_request(b"GET /old").expect("HTTP/0.9");
        assert_eq!(t.path, b"/old");
        let t = parse_request(b"GET http://Example.com:8080?q HTTP/1.1").expect("absolute");
        assert_eq!((t.host, t.path, t.query), (Some(&b"Example.com:8080"[..]), &b"/"[..], Some(&b"q"[..])));
        let t = parse_request(b"OPTIONS * HTTP/1.0").expect("asterisk");
        assert_eq!(t.path, b"*");
        assert_eq!(parse_request(b"-"), None);
        assert_eq!(parse_request(b"\x16\x03\x01\x02\x00"), None);
        assert_eq!(parse_request(b"GET"), None);
        assert_eq!(parse_request(b"GET  HTTP/1.1"), None, "an empty target");
        assert_eq!(parse_request(b" /a HTTP/1.1"), None, "an empty method");
        assert_eq!(parse_request(b"GE\"T /a HTTP/1.1"), None, "a method with a non-token byte");
        let longest = [b'M'; MAX_METHOD];
        let line = [&longest[..], b" /a"].concat();
        assert_eq!(parse_request(&line).map(|t| t.method), Some(&longest[..]));
        let line = [&longest[..], b"M /a"].concat();
        assert_eq!(parse_request(&line), None, "a method over the limit");
        let t = parse_request(b"GET /a?b=1 HTTP/1.1 trailing junk").expect("extra text after the protocol");
        assert_eq!((t.path, t.query), (&b"/a"[..], Some(&b"b=1"[..])));
        let t = parse_request(b"GET /a b c HTTP/1.1").expect("a path with spaces");
        assert_eq!((t.path, t.query), (&b"/a b c"[..], None));
        let t = parse_request(b"GET /a b?q=x y HTTP/1.0").expect("a query with spaces");
        assert_eq!((t.path, t.query), (&b"/a b"[..], Some(&b"q=x y"[..])));
        let t = parse_request(b"GET http://h.example/a b HTTP/1.1").expect("absolute, with a space");
        assert_eq!((t.host, t.path), (Some(&b"h.example"[..]), &b"/a b"[..]));
        let t = parse_request(b"GET /a  HTTP/1.1").expect("two spaces before the protocol");
        assert_eq!(t.path, b"/a");
        assert_eq!(parse_request(b"GET /a b"), None, "where the target ends cannot be told");
        assert_eq!(parse_request(b"GET ?q=1 HTTP/1.1"), None, "no path");
        assert_eq!(parse_request(b"GET #f HTTP/1.1"), None, "no path");
        assert_eq!(parse_request(b"GET /a b HTTP/1.1 junk"), None);
    }

    #[test]
    fn fragments_are_cut() {
        let t = split_target(b"/a#frag?not=query");
        assert_eq!((t.path, t.query), (&b"/a"[..], None));
        let t = split_target(b"/a?x=1#frag");
        assert_eq!((t.path, t.query), (&b"/a"[..], Some(&b"x=1"[..])));
        let t = split_target(b"/a?#");
        assert_eq!((t.path, t.query), (&b"/a"[..], Some(&b""[..])));
        let t = split_target(b"HTTPS://h.example#x");
        assert_eq!((t.host, t.path, t.query), (Some(&b"h.example"[..]), &b"/"[..], None));
    }
}
