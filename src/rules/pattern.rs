//! Match patterns: `GET /api/products/{id:int}`.
//!
//! A pattern is an optional method list (`GET`, `GET|HEAD`, `*`; `GET` when omitted) and a
//! path whose `/`-separated segments are literal text or one capture each, optionally with a
//! literal prefix and suffix (`{id:int}.json`). Captures: `{name}` one non-empty segment,
//! `{name:int}` ASCII digits, `{name:path}` the rest of the path (last segment only).

use nom::bytes::complete::{tag, take_while1};
use nom::combinator::opt;
use nom::sequence::preceded;
use nom::{IResult, Parser};

use crate::logformat::scan;

/// What a capture accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureKind {
    /// One non-empty path segment.
    Segment,
    /// One segment of ASCII digits.
    Int,
    /// The rest of the path, `/` included (non-empty).
    Path,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(Vec<u8>),
    Capture { prefix: Vec<u8>, kind: CaptureKind, suffix: Vec<u8> },
    Rest,
}

/// A pattern that cannot be used, with the byte offset where the problem starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PatternError {
    /// Byte offset in the pattern string.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// A compiled match pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchPattern {
    source: String,
    methods: Option<Vec<Vec<u8>>>,
    /// `methods` as [`method_word`]s, when each fits in one.
    method_words: Option<Vec<u64>>,
    segments: Vec<Seg>,
    captures: Vec<String>,
    /// What every matching path starts with: the leading literal text up to the first
    /// capture. Most requests are refused by it at once, without splitting the path.
    fixed_start: Vec<u8>,
    /// How many leading literal segments `fixed_start` covers with their `/`, and the length
    /// of that text: matching resumes after them instead of splitting them again.
    fixed_segments: (usize, usize),
    /// The first eight bytes of `fixed_start` (all of it when shorter) as a [`path_head`],
    /// and the mask of the bytes they fill (see [`MatchPattern::starts_like`]).
    start_word: u64,
    start_mask: u64,
}

fn ident(i: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_').parse(i)
}

/// `{name}` or `{name:kind}` → (name, kind text).
fn capture(i: &str) -> IResult<&str, (&str, Option<&str>)> {
    let (i, _) = tag("{").parse(i)?;
    let (i, name) = ident(i)?;
    let (i, kind) = opt(preceded(tag(":"), ident)).parse(i)?;
    let (i, _) = tag("}").parse(i)?;
    Ok((i, (name, kind)))
}

impl MatchPattern {
    /// Parses a pattern string.
    pub fn parse(src: &str) -> Result<Self, PatternError> {
        let err = |offset: usize, message: String| PatternError { offset, message };
        let trimmed_start = src.len() - src.trim_start().len();
        let s = src.trim();
        let (methods, path, path_offset) = match s.find(' ') {
            Some(sp) => {
                let m = &s[..sp];
                let path = s[sp..].trim_start();
                (Some(m), path, trimmed_start + s.len() - path.len())
            }
            None => (None, s, trimmed_start),
        };
        let methods = match methods {
            None => Some(vec![b"GET".to_vec()]),
            Some("*") => None,
            Some(m) => {
                let list: Vec<Vec<u8>> = m.split('|').map(|x| x.as_bytes().to_vec()).collect();
                if list.iter().any(|x| x.is_empty() || !x.iter().all(u8::is_ascii_uppercase)) {
                    return Err(err(
                        trimmed_start,
                        format!("`{m}` is not a method list: write `GET`, `GET|HEAD` or `*`"),
                    ));
                }
                Some(list)
            }
        };
        let Some(body) = path.strip_prefix('/') else {
            return Err(err(path_offset, "the path must start with `/`".into()));
        };
        let mut segments = Vec::new();
        let mut captures: Vec<String> = Vec::new();
        let mut offset = path_offset + 1;
        let parts: Vec<&str> = body.split('/').collect();
        for (n, part) in parts.iter().enumerate() {
            let here = offset;
            offset += part.len() + 1;
            let Some(open) = part.find('{') else {
                if part.contains('}') {
                    return Err(err(here, format!("unbalanced `}}` in `{part}`")));
                }
                segments.push(Seg::Literal(part.as_bytes().to_vec()));
                continue;
            };
            let prefix = &part[..open];
            let (after, (name, kind)) = capture(&part[open..]).map_err(|_| {
                err(
                    here + open,
                    format!(
                        "`{}` is not a capture: write `{{name}}`, `{{name:int}}` or `{{name:path}}`",
                        &part[open..]
                    ),
                )
            })?;
            if after.contains('{') {
                return Err(err(here, format!("segment `{part}` has more than one capture")));
            }
            if captures.iter().any(|c| c == name) {
                return Err(err(here + open, format!("capture `{name}` appears twice")));
            }
            let kind = match kind {
                None => CaptureKind::Segment,
                Some("int") => CaptureKind::Int,
                Some("path") => CaptureKind::Path,
                Some(other) => {
                    return Err(err(
                        here + open,
                        format!("unknown capture type `{other}`: use `int`, `path`, or none"),
                    ));
                }
            };
            captures.push(name.to_string());
            if kind == CaptureKind::Path {
                if !prefix.is_empty() || !after.is_empty() || n + 1 != parts.len() {
                    return Err(err(
                        here + open,
                        format!("`{{{name}:path}}` must be a whole segment at the end of the path"),
                    ));
                }
                segments.push(Seg::Rest);
            } else {
                segments.push(Seg::Capture {
                    prefix: prefix.as_bytes().to_vec(),
                    kind,
                    suffix: after.as_bytes().to_vec(),
                });
            }
        }
        let fixed_start = fixed_start(&segments);
        let fixed_segments = fixed_segments(&segments);
        let known = fixed_start.len().min(8);
        let start_word = path_head(&fixed_start[..known]);
        let start_mask = u64::MAX.checked_shr(64 - 8 * known as u32).unwrap_or(0);
        let method_words = methods.as_ref().and_then(|ms| ms.iter().map(|m| method_word(m)).collect());
        Ok(MatchPattern {
            source: src.trim().to_string(),
            methods,
            method_words,
            segments,
            captures,
            fixed_start,
            fixed_segments,
            start_word,
            start_mask,
        })
    }

    /// Capture names in pattern order.
    pub fn captures(&self) -> &[String] {
        &self.captures
    }

    /// Whether the method is accepted; `word` is its [`method_word`], made once per request
    /// for all the rules it is tried against.
    #[inline]
    pub fn method_matches(&self, method: &[u8], word: Option<u64>) -> bool {
        match (&self.methods, &self.method_words, word) {
            (None, _, _) => true,
            (Some(_), Some(words), Some(w)) => words.contains(&w),
            // Every method accepted fits in a word, and this one does not.
            (Some(_), Some(_), None) => false,
            (Some(ms), None, _) => ms.iter().any(|m| same(m, method)),
        }
    }

    /// The methods accepted (`None`: any).
    pub fn methods(&self) -> Option<&[Vec<u8>]> {
        self.methods.as_deref()
    }

    /// Whether a path whose `path_head` is `head` may match: false only when its first
    /// bytes differ from those every match starts with. One comparison, in the rule's own
    /// memory, refuses most requests a rule is tried against; `path_matches` still decides.
    #[inline]
    pub fn starts_like(&self, head: u64) -> bool {
        head & self.start_mask == self.start_word
    }

    /// Matches a path; on success the capture values are appended to `caps` in pattern order.
    /// The test of the whole fixed start, past the eight bytes `starts_like` compares, is
    /// inlined where rules are tried: calling the whole matcher only to be refused cost as
    /// much as the test itself.
    #[inline]
    pub fn path_matches<'a>(&self, path: &'a [u8], caps: &mut Vec<Option<&'a [u8]>>) -> bool {
        let n = self.fixed_start.len();
        if path.len() < n || !same(&path[..n], &self.fixed_start) {
            return false;
        }
        let start = caps.len();
        let ok = self.match_segments(path, caps);
        if !ok {
            caps.truncate(start);
        }
        ok
    }

    /// Matches the segments after the fixed start.
    #[inline(never)]
    fn match_segments<'a>(&self, path: &'a [u8], caps: &mut Vec<Option<&'a [u8]>>) -> bool {
        let (skipped, skipped_len) = self.fixed_segments;
        let mut rest = &path[skipped_len..];
        let mut left = self.segments.len() - skipped;
        for seg in &self.segments[skipped..] {
            left -= 1;
            if matches!(seg, Seg::Rest) {
                if rest.is_empty() {
                    return false;
                }
                caps.push(Some(rest));
                return true;
            }
            let (part, after) = match scan::find(b'/', rest) {
                Some(p) => (&rest[..p], Some(&rest[p + 1..])),
                None => (rest, None),
            };
            let ok = match seg {
                Seg::Literal(l) => same(part, l),
                Seg::Capture { prefix, kind, suffix } => {
                    let inner = (part.len() >= prefix.len() + suffix.len()
                        && same(&part[..prefix.len()], prefix)
                        && same(&part[part.len() - suffix.len()..], suffix))
                    .then(|| &part[prefix.len()..part.len() - suffix.len()]);
                    match inner {
                        Some(v)
                            if !v.is_empty()
                                && (*kind != CaptureKind::Int || v.iter().all(u8::is_ascii_digit)) =>
                        {
                            caps.push(Some(v));
                            true
                        }
                        _ => false,
                    }
                }
                Seg::Rest => unreachable!("handled above"),
            };
            if !ok {
                return false;
            }
            match after {
                Some(a) if left > 0 => rest = a,
                None if left == 0 => return true,
                _ => return false,
            }
        }
        false
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Builds a path this pattern matches from capture values (for the log generator).
    pub fn render_path(&self, values: &[String]) -> String {
        let mut out = String::new();
        let mut vals = values.iter();
        for seg in &self.segments {
            out.push('/');
            match seg {
                Seg::Literal(l) => out.push_str(&String::from_utf8_lossy(l)),
                Seg::Capture { prefix, suffix, .. } => {
                    out.push_str(&String::from_utf8_lossy(prefix));
                    out.push_str(vals.next().map(String::as_str).unwrap_or("x"));
                    out.push_str(&String::from_utf8_lossy(suffix));
                }
                Seg::Rest => out.push_str(vals.next().map(String::as_str).unwrap_or("x")),
            }
        }
        out
    }

    /// The kind of each capture, in order (for the log generator).
    pub fn capture_kinds(&self) -> Vec<CaptureKind> {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Seg::Capture { kind, .. } => Some(*kind),
                Seg::Rest => Some(CaptureKind::Path),
                Seg::Literal(_) => None,
            })
            .collect()
    }
}

/// The text every path matching `segments` starts with: `/`, the literal segments before the
/// first capture each followed by `/` when more segments come, and that capture's prefix.
fn fixed_start(segments: &[Seg]) -> Vec<u8> {
    let mut start = b"/".to_vec();
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Seg::Literal(l) => {
                start.extend_from_slice(l);
                if i + 1 < segments.len() {
                    start.push(b'/');
                }
            }
            Seg::Capture { prefix, .. } => {
                start.extend_from_slice(prefix);
                break;
            }
            Seg::Rest => break,
        }
    }
    start
}

/// The leading literal segments that [`fixed_start`] covers together with the `/` after
/// them (all but a last one), and the length of `/` plus that text.
fn fixed_segments(segments: &[Seg]) -> (usize, usize) {
    let mut len = 1;
    let mut n = 0;
    for (i, seg) in segments.iter().enumerate() {
        match seg {
            Seg::Literal(l) if i + 1 < segments.len() => {
                len += l.len() + 1;
                n += 1;
            }
            _ => break,
        }
    }
    (n, len)
}

/// A path's first eight bytes as one word (little-endian, zeros after a shorter path), for
/// [`MatchPattern::starts_like`]: made once per request for all the rules it is tried
/// against.
#[inline]
pub fn path_head(path: &[u8]) -> u64 {
    match path.first_chunk::<8>() {
        Some(word) => u64::from_le_bytes(*word),
        None => path.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b)),
    }
}

/// A method of at most seven bytes as one word: its bytes, and its length in the top byte;
/// `None` for longer ones. Rules then compare methods in one instruction each.
#[inline]
pub fn method_word(method: &[u8]) -> Option<u64> {
    if method.len() > 7 {
        return None;
    }
    let bytes = method.iter().rev().fold(0, |w, &b| w << 8 | u64::from(b));
    Some(bytes | (method.len() as u64) << 56)
}

/// Byte equality for the short slices of paths and methods. Not `==` on slices, which calls
/// `memcmp`, whose call overhead dominated matching (a fifth of the analyzer's time); and
/// eight bytes at a time from eight bytes on, the last word overlapping the one before: a
/// byte loop was most of the rule matching's samples in `perf`.
#[inline]
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], at: usize| s[at..].first_chunk::<8>().map(|w| u64::from_ne_bytes(*w));
    let mut at = 0;
    while at + 8 < n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    word(a, n - 8) == word(b, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(p: &MatchPattern, method: &[u8]) -> bool {
        p.method_matches(method, method_word(method))
    }

    #[test]
    fn methods_match_by_word_as_by_bytes() {
        let methods: [&[u8]; 9] =
            [b"GET", b"HEAD", b"GET\0", b"GE", b"get", b"OPTIONS", b"PROPFIND", b"", b"\0"];
        for accepted in ["GET", "GET|HEAD", "PROPFIND|GET", "OPTIONS", "*"] {
            let p = MatchPattern::parse(&format!("{accepted} /a")).expect("valid");
            for m in methods {
                let by_bytes = accepted == "*" || accepted.split('|').any(|a| a.as_bytes() == m);
                assert_eq!(accepts(&p, m), by_bytes, "{accepted} {m:?}");
            }
        }
        assert_eq!(method_word(b"PROPFIND"), None, "eight bytes do not fit with their length");
    }

    #[test]
    fn same_compares_every_byte_at_every_length() {
        for n in 0..40 {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(same(&a, &a.clone()), "{n}");
            for i in 0..n {
                let mut b = a.clone();
                b[i] ^= 0x20;
                assert!(!same(&a, &b), "{n}: byte {i}");
            }
            assert!(!same(&a, &[a.as_slice(), b"x"].concat()), "{n}: longer");
        }
    }

    fn caps<'a>(p: &MatchPattern, path: &'a str) -> Option<Vec<&'a str>> {
        let mut c = Vec::new();
        p.path_matches(path.as_bytes(), &mut c).then(|| {
            c.into_iter().map(|v| std::str::from_utf8(v.expect("captured")).expect("utf8")).collect()
        })
    }

    #[test]
    fn every_match_begins_with_the_fixed_start() {
        let start =
            |p: &str| String::from_utf8(MatchPattern::parse(p).expect("valid").fixed_start).expect("UTF-8");
        assert_eq!(start("GET /api/products/{id:int}"), "/api/products/");
        assert_eq!(start("/v1/item-{id}.json"), "/v1/item-");
        assert_eq!(start("/health"), "/health");
        assert_eq!(start("/pages/{path:path}"), "/pages/");
        assert_eq!(start("/{a}/x"), "/");
        // The start only refuses early; the rest of the pattern still decides.
        let health = MatchPattern::parse("/health").expect("valid");
        assert_eq!(caps(&health, "/health"), Some(vec![]));
        assert_eq!(caps(&health, "/healthz"), None);
        assert_eq!(caps(&health, "/health/x"), None);
        let item = MatchPattern::parse("/v1/item-{id}.json").expect("valid");
        assert_eq!(caps(&item, "/v1/item-7.json"), Some(vec!["7"]));
        assert_eq!(caps(&item, "/v1/item-"), None);
        assert_eq!(caps(&item, "/v1/items-7.json"), None);
        // Matching resumes after the literal segments the start covers.
        let two = MatchPattern::parse("/a/b").expect("valid");
        assert_eq!(two.fixed_segments, (1, 3));
        assert_eq!(caps(&two, "/a/b"), Some(vec![]));
        for other in ["/a/bc", "/a/b/", "/a", "/a/", "/ab/b"] {
            assert_eq!(caps(&two, other), None, "{other}");
        }
        let deep = MatchPattern::parse("/api/v1/{id}/x").expect("valid");
        assert_eq!(deep.fixed_segments, (2, 8));
        assert_eq!(caps(&deep, "/api/v1/7/x"), Some(vec!["7"]));
        for other in ["/api/v1/7/y", "/api/v1//x", "/api/v1/7", "/api/v1/7/x/"] {
            assert_eq!(caps(&deep, other), None, "{other}");
        }
    }

    #[test]
    fn the_start_word_refuses_only_paths_that_cannot_match() {
        for pattern in ["/a", "/ab/{x}", "/api/products/{id:int}", "/p-{id}", "/{a}/x"] {
            let p = MatchPattern::parse(pattern).expect("valid");
            let start = &p.fixed_start[..p.fixed_start.len().min(8)];
            for path in
                ["", "/", "/a", "/ab", "/ab/", "/ab/7", "/api/pro", "/api/products/42", "/p-", "/p-9", "/q/x"]
            {
                // Exactly the paths that begin with the start's first (up to eight) bytes.
                let expected = path.as_bytes().starts_with(start);
                assert_eq!(p.starts_like(path_head(path.as_bytes())), expected, "{pattern} {path}");
            }
        }
    }

    proptest::proptest! {
        /// The start word never refuses a path the matcher accepts: over paths rendered from
        /// the patterns (with values of every kind, some of which match), cut short or not,
        /// and over arbitrary paths of the characters the patterns are made of.
        #[test]
        fn the_start_word_never_refuses_a_match(
            pattern in proptest::sample::select(vec![
                "/a/{b}", "/ab/c", "/api/products/{id:int}", "/v1/item-{id}.json", "/{a}/x",
                "/pages/{p:path}", "/abcdefgh/{x}", "/abcdefg",
            ]),
            values in proptest::collection::vec(proptest::prop_oneof!["[0-9]{1,6}", "[a-z0-9./-]{0,6}"], 2),
            cut in 0usize..30,
            other in "[/abcdefghitemprodus0-9.-]{0,20}",
        ) {
            let p = MatchPattern::parse(pattern).expect("valid");
            let rendered = p.render_path(&values);
            let short = &rendered[..cut.min(rendered.len())];
            let mut matched = 0;
            for path in [rendered.as_str(), short, other.as_str()] {
                let mut caps = Vec::new();
                if p.path_matches(path.as_bytes(), &mut caps) {
                    matched += 1;
                    proptest::prop_assert!(p.starts_like(path_head(path.as_bytes())), "{pattern} {path}");
                }
            }
            // Every pattern here matches its path rendered from digits: the property is tested.
            if values.iter().all(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit())) {
                proptest::prop_assert!(matched > 0, "{pattern} {rendered}");
            }
        }
    }

    #[test]
    fn captures_by_kind() {
        let p = MatchPattern::parse("GET /api/products/{id:int}").expect("valid");
        assert_eq!(caps(&p, "/api/products/42"), Some(vec!["42"]));
        assert_eq!(caps(&p, "/api/products/4x"), None);
        assert_eq!(caps(&p, "/api/products/42/"), None);
        assert_eq!(caps(&p, "/api/products"), None);
        assert!(accepts(&p, b"GET") && !accepts(&p, b"POST"));

        let p = MatchPattern::parse("GET|HEAD /u/{user}/files/{rest:path}").expect("valid");
        assert_eq!(caps(&p, "/u/ann/files/a/b.txt"), Some(vec!["ann", "a/b.txt"]));
        assert_eq!(caps(&p, "/u/ann/files/"), None);
        assert!(accepts(&p, b"HEAD"));

        let p = MatchPattern::parse("/img/{id:int}.jpg").expect("valid");
        assert_eq!(caps(&p, "/img/7.jpg"), Some(vec!["7"]));
        assert_eq!(caps(&p, "/img/.jpg"), None);

        let p = MatchPattern::parse("* /").expect("valid");
        assert_eq!(caps(&p, "/"), Some(vec![]));
        assert_eq!(caps(&p, "/x"), None);
        assert!(accepts(&p, b"DELETE"));
    }

    #[test]
    fn errors_point_at_the_problem() {
        let e = MatchPattern::parse("GET api").unwrap_err();
        assert_eq!(e.offset, 4);
        let e = MatchPattern::parse("GET /a/{id:uuid}").unwrap_err();
        assert_eq!((e.offset, e.message.contains("uuid")), (7, true));
        assert!(MatchPattern::parse("GET /{p:path}/x").is_err());
        assert!(MatchPattern::parse("GET /{a}/{a}").is_err());
        assert!(MatchPattern::parse("get /a").is_err());
        assert!(MatchPattern::parse("GET /{a").is_err());
    }

    #[test]
    fn render_round_trips() {
        let p = MatchPattern::parse("GET /p/{id:int}/v{n}.json").expect("valid");
        let path = p.render_path(&["12".into(), "3".into()]);
        assert_eq!(path, "/p/12/v3.json");
        assert_eq!(caps(&p, &path), Some(vec!["12", "3"]));
    }
}
