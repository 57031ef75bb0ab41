//! The request line (`GET /path?query HTTP/1.1`) and request targets.

use nom::bytes::complete::{tag, take_while_m_n, take_while1};
use nom::combinator::{opt, rest};
use nom::sequence::preceded;
use nom::{IResult, Parser};

/// Method, path, query and (for absolute-form targets) host of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub method: &'a [u8],
    pub path: &'a [u8],
    pub query: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
}

fn is_token(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
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
        )
}

fn request_line(i: &[u8]) -> IResult<&[u8], (&[u8], &[u8])> {
    let (i, method) = take_while_m_n(1, 24, is_token).parse(i)?;
    let (i, target) = preceded(tag(&b" "[..]), take_while1(|c| c != b' ')).parse(i)?;
    // The protocol is optional (HTTP/0.9); whatever follows it is tolerated.
    let (i, _) = opt(preceded(tag(&b" "[..]), rest)).parse(i)?;
    Ok((i, (method, target)))
}

/// Splits `METHOD TARGET [PROTOCOL]`; `None` for `-`, binary junk, or a missing target.
pub fn parse_request(line: &[u8]) -> Option<Target<'_>> {
    let (_, (method, target)) = request_line(line).ok()?;
    let mut t = split_target(target);
    t.method = method;
    Some(t)
}

/// Splits a request target into path and query; an absolute-form target
/// (`http://host/path`) also yields its host.
pub fn split_target(target: &[u8]) -> Target<'_> {
    let mut host = None;
    let mut rest = target;
    for scheme in [&b"http://"[..], b"https://"] {
        if rest.len() > scheme.len() && rest[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let after = &rest[scheme.len()..];
            let end = memchr::memchr2(b'/', b'?', after).unwrap_or(after.len());
            host = Some(&after[..end]);
            rest = &after[end..];
            break;
        }
    }
    // A fragment never reaches a server, but broken clients log one.
    if let Some(hash) = memchr::memchr(b'#', rest) {
        rest = &rest[..hash];
    }
    let (path, query) = match memchr::memchr(b'?', rest) {
        Some(q) => (&rest[..q], Some(&rest[q + 1..])),
        None => (rest, None),
    };
    let path = if path.is_empty() && host.is_some() { &b"/"[..] } else { path };
    Target { method: b"", path, query, host }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
