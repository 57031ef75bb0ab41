//! nginx `log_format` strings compiled into a line parser.
//!
//! A format is a sequence of literal text and `$variables`. A field ends where the literal that
//! follows it begins; a field between double quotes ends at the next unescaped quote, so
//! `"$http_user_agent"` may hold spaces and `\"`. `combined` and `common` are such strings too.
//!
//! nom compiles the format string; a line is read by the byte loop below, on measurement:
//! the same loop with nom's `tag` for the literals and nom parsers for the fields took 4.44,
//! 4.45 and 4.64 ms per `cargo bench --bench parse` run of nginx lines against 4.34, 4.26
//! and 3.83 ms for this code, alternated in one run (6% slower), 2026-12-07.

use std::borrow::Cow;

use nom::branch::alt;
use nom::bytes::complete::{is_not, tag, take_while1};
use nom::combinator::map;
use nom::multi::many0;
use nom::sequence::delimited;
use nom::{IResult, Parser};

use super::clf::{self, Clf};
use super::request::{parse_request, refused, split_target};
use super::scan;
use super::time::{parse_clf, parse_epoch, parse_iso8601};
use super::{COMBINED, COMMON, CacheStatus, NO_RESPONSE, ParseError, Record};

/// A `log_format` variable the parser understands; anything else is read and ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `$remote_addr`
    RemoteAddr,
    /// `$time_local`
    TimeLocal,
    /// `$time_iso8601`
    TimeIso8601,
    /// `$msec`
    Msec,
    /// `$request`
    Request,
    /// `$request_method`
    RequestMethod,
    /// `$request_uri`
    RequestUri,
    /// `$uri`
    Uri,
    /// `$args` / `$query_string`
    Args,
    /// `$status`
    Status,
    /// `$body_bytes_sent`
    BodyBytesSent,
    /// `$bytes_sent`
    BytesSent,
    /// `$request_time`
    RequestTime,
    /// `$upstream_response_time`
    UpstreamResponseTime,
    /// `$upstream_cache_status`
    UpstreamCacheStatus,
    /// `$host` / `$http_host` / `$server_name`
    Host,
    /// The query string with its `?`, or nothing (Apache `%q`).
    QueryMark,
    /// Latency in whole microseconds (Apache `%D`, `%{us}T`).
    LatencyMicros,
    /// Latency in whole milliseconds (Apache `%{ms}T`).
    LatencyMillis,
    /// Unix time in milliseconds (Apache `%{msec}t`).
    EpochMillis,
    /// Unix time in microseconds (Apache `%{usec}t`).
    EpochMicros,
    /// A client address with its port, `192.0.2.7:4711` (load balancers, HAProxy): the
    /// address is the client.
    ClientPort,
    /// HAProxy's timers `Tq/Tw/Tc/Tr/Ta` in milliseconds: the last, the request's whole
    /// time, is its latency (`+` marks a `logasap` time that is not final).
    HaproxyTimers,
    /// A byte count that may carry HAProxy's `logasap` `+`.
    HaproxyBytes,
    /// A client address list, `client, proxy1, proxy2` (`$http_x_forwarded_for`, Apache
    /// `%{X-Forwarded-For}i`): its first address is the client, whatever else the line logs.
    ForwardedFor,
    /// Any other variable (`$remote_user`, `$http_referer`, `$http_*`, ...): read as a string.
    Other(String),
}

impl Var {
    /// The variable an nginx `$name` stands for.
    pub(super) fn from_name(name: &str) -> Var {
        match name {
            "remote_addr" => Var::RemoteAddr,
            "time_local" => Var::TimeLocal,
            "time_iso8601" => Var::TimeIso8601,
            "msec" => Var::Msec,
            "request" => Var::Request,
            "request_method" => Var::RequestMethod,
            "request_uri" => Var::RequestUri,
            "uri" | "document_uri" => Var::Uri,
            "args" | "query_string" => Var::Args,
            "status" => Var::Status,
            "body_bytes_sent" => Var::BodyBytesSent,
            "bytes_sent" => Var::BytesSent,
            "request_time" => Var::RequestTime,
            "upstream_response_time" => Var::UpstreamResponseTime,
            "upstream_cache_status" => Var::UpstreamCacheStatus,
            "host" | "http_host" | "server_name" => Var::Host,
            "http_x_forwarded_for" => Var::ForwardedFor,
            other => Var::Other(other.to_string()),
        }
    }
}

/// Where a field's value ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// At the next unescaped `"` (the field is quoted).
    Quote,
    /// At the first occurrence of this byte (the first byte of the next literal).
    Byte(u8),
    /// At the first space not after a comma: a list such as `a, b, c` followed by a space.
    List,
    /// At the end of the line, or at the first space when trailing text is allowed.
    Line,
}

/// A piece of a format, as a format string's compiler hands it over.
#[derive(Debug, Clone)]
pub(super) enum Item {
    /// Literal text.
    Text(Vec<u8>),
    /// A field, with its name as the format string writes it (`$status`, `%>s`).
    Field { var: Var, name: String },
}

#[derive(Debug, Clone)]
enum Segment {
    Literal(Vec<u8>),
    Field { var: Var, end: End },
}

/// A field with the literal text before it: what the parser does for each field of a line.
#[derive(Debug, Clone)]
struct Step {
    /// The text before the field (empty only for a field that starts the line).
    lead: Vec<u8>,
    var: Var,
    end: End,
    /// Whether the record takes the field's value; other fields are only read past.
    kept: bool,
}

/// A compiled `log_format` string.
#[derive(Debug, Clone)]
pub struct CompiledFormat {
    steps: Vec<Step>,
    /// The text after the last field.
    tail: Vec<u8>,
    allow_trailing: bool,
    /// Set for the built-in `combined` and `common` (with trailing text allowed), which a
    /// parser written for them reads with the same results.
    builtin: Option<Clf>,
    /// Lines may start with a syslog tag (`Mar  2 10:00:01 lb1 haproxy[674]: `), skipped.
    syslog_tag: bool,
}

/// A `log_format` string (or `--format` value) that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatStringError {
    /// Neither a built-in name nor a `log_format` string.
    #[error("unknown log format `{0}`")]
    UnknownName(String),
    /// Two variables with nothing between them cannot be told apart.
    #[error(
        "`{0}` and `{1}` follow each other with no text between them, so the parser cannot tell where one ends"
    )]
    AdjacentVariables(String, String),
    /// The string has no variables at all.
    #[error("the format has no `$variables` or `%` directives")]
    NoVariables,
    /// A `$` is not followed by a variable name.
    #[error("`$` at byte {0} is not followed by a variable name")]
    BadVariable(usize),
    /// An Apache directive that mod_log_config does not define, or with a parameter it
    /// does not take.
    #[error("`{0}` is not an Apache `LogFormat` directive (mod_log_config lists them)")]
    BadDirective(String),
    /// A `%{` with no `}`.
    #[error("the `%{{` at byte {0} has no closing `}}`")]
    Unclosed(usize),
}

enum Piece<'a> {
    Text(&'a str),
    Var(&'a str),
}

fn var_name(i: &str) -> IResult<&str, &str> {
    take_while1(|c: char| c.is_ascii_alphanumeric() || c == '_').parse(i)
}

fn piece(i: &str) -> IResult<&str, Piece<'_>> {
    alt((
        map(delimited(tag("${"), var_name, tag("}")), Piece::Var),
        map((tag("$"), var_name), |(_, n)| Piece::Var(n)),
        map(is_not("$"), Piece::Text),
    ))
    .parse(i)
}

impl CompiledFormat {
    /// Compiles a `log_format` string. With `allow_trailing`, text after the last field is
    /// ignored (for built-in formats that deployments often extend).
    pub fn compile(source: &str, allow_trailing: bool) -> Result<Self, FormatStringError> {
        let mut format = Self::compile_named(source, allow_trailing, Var::from_name)?;
        format.builtin = match source {
            COMBINED if allow_trailing => Some(Clf::Combined),
            COMMON if allow_trailing => Some(Clf::Common),
            _ => None,
        };
        Ok(format)
    }

    /// Compiles a format string whose `$names` stand for what `var` says.
    pub(super) fn compile_named(
        source: &str,
        allow_trailing: bool,
        var: impl Fn(&str) -> Var,
    ) -> Result<Self, FormatStringError> {
        let (rest, pieces) = many0(piece).parse(source).map_err(|_| FormatStringError::BadVariable(0))?;
        if !rest.is_empty() {
            return Err(FormatStringError::BadVariable(source.len() - rest.len()));
        }
        let items = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => Item::Text(t.as_bytes().to_vec()),
                Piece::Var(name) => Item::Field { var: var(name), name: format!("${name}") },
            })
            .collect();
        Self::from_items(items, allow_trailing)
    }

    /// Builds the parser of a format given as literal text and fields.
    pub(super) fn from_items(items: Vec<Item>, allow_trailing: bool) -> Result<Self, FormatStringError> {
        let mut segments = Vec::with_capacity(items.len());
        let mut previous_var: Option<String> = None;
        for item in items {
            match item {
                Item::Text(t) => {
                    segments.push(Segment::Literal(t));
                    previous_var = None;
                }
                Item::Field { var, name } => {
                    if let Some(prev) = previous_var {
                        return Err(FormatStringError::AdjacentVariables(prev, name));
                    }
                    segments.push(Segment::Field { var, end: End::Line });
                    previous_var = Some(name);
                }
            }
        }
        if !segments.iter().any(|s| matches!(s, Segment::Field { .. })) {
            return Err(FormatStringError::NoVariables);
        }
        // Decide where each field ends from its neighbours.
        for i in 0..segments.len() {
            let quoted_before =
                i > 0 && matches!(&segments[i - 1], Segment::Literal(l) if l.ends_with(b"\""));
            let next_first = match segments.get(i + 1) {
                Some(Segment::Literal(l)) => l.first().copied(),
                _ => None,
            };
            if let Segment::Field { end, var } = &mut segments[i] {
                *end = match next_first {
                    Some(b'"') if quoted_before => End::Quote,
                    Some(b' ') if *var == Var::ForwardedFor => End::List,
                    Some(b) => End::Byte(b),
                    None => End::Line,
                };
            }
        }
        // One step per field, with the text before it: a literal and a field are then read
        // in one pass of the parser's loop, not two.
        let (mut steps, mut text) = (Vec::new(), Vec::new());
        for segment in segments {
            match segment {
                Segment::Literal(l) => text.extend_from_slice(&l),
                Segment::Field { var, end } => {
                    let kept = !matches!(var, Var::Other(_));
                    steps.push(Step { lead: std::mem::take(&mut text), var, end, kept });
                }
            }
        }
        Ok(CompiledFormat { steps, tail: text, allow_trailing, builtin: None, syslog_tag: false })
    }

    /// The variables of the format, in order.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.steps.iter().map(|step| &step.var)
    }

    /// Writes a line in this format; `value` writes each variable's text.
    pub fn render(&self, out: &mut Vec<u8>, mut value: impl FnMut(&Var, &mut Vec<u8>)) {
        for step in &self.steps {
            out.extend_from_slice(&step.lead);
            value(&step.var, out);
        }
        out.extend_from_slice(&self.tail);
    }

    /// The same format after a syslog tag that a line may start with.
    pub(super) fn after_syslog_tag(self) -> Self {
        CompiledFormat { syslog_tag: true, ..self }
    }

    /// Parses one line (already stripped of its terminator).
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        let line = if self.syslog_tag { without_syslog_tag(line) } else { line };
        match self.builtin {
            Some(format) => clf::parse(line, format),
            None => self.parse_generic(line),
        }
    }

    /// Parses one line by interpreting the format's segments.
    pub(super) fn parse_generic<'a>(&self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        let mut rec = Record::default();
        let mut have_request = false;
        let mut forwarded = false;
        let mut rest = line;
        for step in &self.steps {
            rest = after_literal(rest, &step.lead)?;
            let len = match step.end {
                End::Quote => quoted_len(rest).ok_or(ParseError::Mismatch("a quoted field"))?,
                End::Byte(b) => scan::find(b, rest).ok_or(ParseError::Mismatch("a field"))?,
                End::List => list_len(rest).ok_or(ParseError::Mismatch("an address list"))?,
                End::Line if self.allow_trailing => memchr::memchr(b' ', rest).unwrap_or(rest.len()),
                End::Line => rest.len(),
            };
            let (value, after) = rest.split_at(len);
            if step.kept {
                have_request |= assign(&mut rec, &step.var, value, &mut forwarded)?;
            }
            rest = after;
        }
        rest = after_literal(rest, &self.tail)?;
        if !rest.is_empty() && !self.allow_trailing {
            return Err(ParseError::Mismatch("end of line"));
        }
        if !have_request {
            return Err(ParseError::BadRequest);
        }
        if rec.method.is_empty() {
            // A format with `$request_uri` but no method: cache warming is about reads.
            rec.method = Cow::Borrowed(b"GET");
        }
        Ok(rec)
    }
}

/// `rest` after the literal text `lit`, which it must start with. A byte loop, not
/// `strip_prefix`: literals are a few bytes, mostly one, and memcmp's call would dominate.
#[inline(always)]
fn after_literal<'a>(rest: &'a [u8], lit: &[u8]) -> Result<&'a [u8], ParseError> {
    let matched = match lit {
        [] => true,
        [b] => rest.first() == Some(b),
        _ => rest.len() >= lit.len() && rest.iter().zip(lit).all(|(a, b)| a == b),
    };
    if !matched {
        return Err(ParseError::Mismatch("separator text"));
    }
    Ok(&rest[lit.len()..])
}

/// Length of a quoted field's content: up to the first `"` not escaped by a backslash.
#[inline(always)]
pub(super) fn quoted_len(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(off) = scan::find2(b'"', b'\\', &s[i..]) {
        let at = i + off;
        if s[at] == b'"' {
            return Some(at);
        }
        i = at + 2; // skip the escaped byte
        if i > s.len() {
            return None;
        }
    }
    None
}

/// Length of a comma-separated list ended by a space: `a, b, c rest` gives 7.
fn list_len(s: &[u8]) -> Option<usize> {
    let mut at = scan::find(b' ', s)?;
    while at > 0 && s[at - 1] == b',' {
        at += 1 + scan::find(b' ', &s[at + 1..])?;
    }
    Some(at)
}

pub(super) fn is_dash(v: &[u8]) -> bool {
    v.is_empty() || v == b"-"
}

/// Decimal seconds (`0.123`) as microseconds; the first of a comma-separated list.
pub(super) fn seconds_to_us(v: &[u8]) -> Option<u64> {
    let v = v.split(|&c| c == b',' || c == b' ').next().unwrap_or(v);
    let (int, frac) = match memchr::memchr(b'.', v) {
        Some(dot) => (&v[..dot], &v[dot + 1..]),
        None => (v, &b""[..]),
    };
    if int.is_empty() || int.len() > 9 || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let secs = int.iter().fold(0u64, |n, c| n * 10 + u64::from(c - b'0'));
    let mut us = 0;
    for (i, c) in frac.iter().take(6).enumerate() {
        us += u64::from(c - b'0') * 10u64.pow(5 - i as u32);
    }
    Some(secs * 1_000_000 + us)
}

/// The line after a syslog tag (`... name[pid]: `) in its first 256 bytes, if it has one.
fn without_syslog_tag(line: &[u8]) -> &[u8] {
    let head = &line[..line.len().min(256)];
    match memchr::memmem::find(head, b"]: ") {
        Some(at) if !head[..at].contains(&b'"') => &line[at + 3..],
        _ => line,
    }
}

/// `192.0.2.7:4711` → `192.0.2.7`, `[2001:db8::1]:4711` → `2001:db8::1`; an IPv6 address
/// without brackets (`2001:db8::1:4711` cannot be told from an address) is kept whole.
fn without_port(v: &[u8]) -> &[u8] {
    if let Some(inside) = v.strip_prefix(b"[") {
        return memchr::memchr(b']', inside).map_or(v, |end| &inside[..end]);
    }
    match memchr::memchr(b':', v) {
        Some(colon) if memchr::memrchr(b':', v) == Some(colon) => &v[..colon],
        _ => v,
    }
}

/// Whole Unix time in units of `1/per_ms` milliseconds (`1` for ms, `1000` for µs), as ms.
fn parse_epoch_units(v: &[u8], per_ms: u64) -> Option<i64> {
    i64::try_from(parse_u64(v)? / per_ms).ok()
}

pub(super) fn parse_u64(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 {
        return None;
    }
    // One pass that checks and adds up: a check first and a sum after read every byte twice.
    v.iter().try_fold(0u64, |n, &c| c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0')))
}

/// A status: three digits from `100` to `599`, or [`NO_RESPONSE`] for `-` (nginx, ALB),
/// `-1` (HAProxy) and `0` (Envoy), which servers log when no response was sent.
#[inline(always)]
pub(super) fn parse_status(v: &[u8]) -> Result<u16, ParseError> {
    match v {
        [a, b, c] if v.iter().all(u8::is_ascii_digit) && (b'1'..=b'5').contains(a) => {
            Ok(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        b"-" | b"-1" | b"0" | b"000" => Ok(NO_RESPONSE),
        _ => Err(ParseError::BadStatus),
    }
}

/// Stores one field's value in the record; returns whether it set the request target.
/// `forwarded` says a forwarded-for list has named the client.
fn assign<'a>(
    rec: &mut Record<'a>,
    var: &Var,
    v: &'a [u8],
    forwarded: &mut bool,
) -> Result<bool, ParseError> {
    match var {
        // A forwarded-for list names the client wherever it stands in the line.
        Var::RemoteAddr if !is_dash(v) && !*forwarded => rec.client = Some(Cow::Borrowed(v)),
        Var::ForwardedFor => {
            let first = v.split(|&c| c == b',').next().unwrap_or(v).trim_ascii();
            if !is_dash(first) {
                rec.client = Some(Cow::Borrowed(first));
                *forwarded = true;
            }
        }
        Var::ClientPort if !is_dash(v) && !*forwarded => rec.client = Some(Cow::Borrowed(without_port(v))),
        Var::HaproxyTimers => {
            let total = v.rsplit(|&c| c == b'/').next().unwrap_or(v);
            let total = total.strip_prefix(b"+").unwrap_or(total);
            // `-1`: the request never completed.
            rec.latency_us = parse_u64(total).map(|ms| ms.saturating_mul(1000));
        }
        Var::HaproxyBytes => {
            let n = v.strip_prefix(b"+").unwrap_or(v);
            rec.bytes = Some(parse_u64(n).ok_or(ParseError::BadNumber("bytes_read"))?);
        }
        Var::LatencyMicros if !is_dash(v) => {
            rec.latency_us = Some(parse_u64(v).ok_or(ParseError::BadNumber("latency in microseconds"))?)
        }
        Var::LatencyMillis if !is_dash(v) => {
            let ms = parse_u64(v).ok_or(ParseError::BadNumber("latency in milliseconds"))?;
            rec.latency_us = Some(ms.saturating_mul(1000));
        }
        Var::QueryMark => rec.query = v.strip_prefix(b"?").map(Cow::Borrowed),
        Var::EpochMillis => rec.time_ms = Some(parse_epoch_units(v, 1).ok_or(ParseError::BadTime)?),
        Var::EpochMicros => rec.time_ms = Some(parse_epoch_units(v, 1000).ok_or(ParseError::BadTime)?),
        Var::TimeLocal => rec.time_ms = Some(parse_clf(v).ok_or(ParseError::BadTime)?),
        Var::TimeIso8601 => rec.time_ms = Some(parse_iso8601(v).ok_or(ParseError::BadTime)?),
        Var::Msec => rec.time_ms = Some(parse_epoch(v).ok_or(ParseError::BadTime)?),
        Var::Request => {
            let t = parse_request(v).ok_or_else(|| refused(v))?;
            rec.method = Cow::Borrowed(t.method);
            rec.path = Cow::Borrowed(t.path);
            rec.query = t.query.map(Cow::Borrowed);
            if rec.host.is_none() {
                rec.host = t.host.map(Cow::Borrowed);
            }
            return Ok(true);
        }
        Var::RequestMethod => rec.method = Cow::Borrowed(v),
        Var::RequestUri => {
            if is_dash(v) {
                return Err(ParseError::NoRequest);
            }
            let t = split_target(v);
            if t.path.is_empty() {
                return Err(ParseError::BadRequest);
            }
            rec.path = Cow::Borrowed(t.path);
            rec.query = t.query.map(Cow::Borrowed);
            return Ok(true);
        }
        Var::Uri => {
            if is_dash(v) {
                return Err(ParseError::NoRequest);
            }
            rec.path = Cow::Borrowed(v);
            return Ok(true);
        }
        Var::Args if !is_dash(v) => rec.query = Some(Cow::Borrowed(v)),
        Var::Status => rec.status = Some(parse_status(v)?),
        Var::BodyBytesSent if !is_dash(v) => {
            rec.bytes = Some(parse_u64(v).ok_or(ParseError::BadNumber("body_bytes_sent"))?)
        }
        Var::BytesSent if !is_dash(v) && rec.bytes.is_none() => {
            rec.bytes = Some(parse_u64(v).ok_or(ParseError::BadNumber("bytes_sent"))?)
        }
        Var::RequestTime if !is_dash(v) => {
            rec.latency_us = Some(seconds_to_us(v).ok_or(ParseError::BadNumber("request_time"))?)
        }
        Var::UpstreamResponseTime if !is_dash(v) && rec.latency_us.is_none() => {
            rec.latency_us = seconds_to_us(v);
        }
        Var::UpstreamCacheStatus => rec.cache = Some(CacheStatus::from_bytes(v)),
        Var::Host if !is_dash(v) => rec.host = Some(Cow::Borrowed(v)),
        _ => {}
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_nginx_format() {
        let f = CompiledFormat::compile(
            r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time" cache=$upstream_cache_status host=$host"#,
            false,
        )
        .expect("compiles");
        let line = br#"10.0.0.1 - - [01/Jan/2026:00:00:01 +0000] "GET /p/1 HTTP/2.0" 200 512 "-" "curl/8" rt=0.015 uct="0.001" cache=HIT host=shop.example"#;
        let r = f.parse(line).expect("parses");
        assert_eq!(r.latency_us, Some(15_000));
        assert_eq!(r.cache, Some(CacheStatus::Hit));
        assert_eq!(r.host.as_deref(), Some(&b"shop.example"[..]));
        assert_eq!(r.path.as_ref(), b"/p/1");
    }

    #[test]
    fn split_method_uri_args() {
        let f = CompiledFormat::compile("$time_iso8601 $request_method $uri $args $status", false)
            .expect("compiles");
        let r = f.parse(b"2026-01-01T00:00:00+00:00 GET /x a=1 200").expect("parses");
        assert_eq!((r.method.as_ref(), r.path.as_ref()), (&b"GET"[..], &b"/x"[..]));
        assert_eq!(r.query.as_deref(), Some(&b"a=1"[..]));
        assert!(f.parse(b"2026-01-01T00:00:00+00:00 GET /x a=1 200 extra").is_err());
    }

    #[test]
    fn compile_errors() {
        assert_eq!(
            CompiledFormat::compile("$remote_addr$status", false).unwrap_err(),
            FormatStringError::AdjacentVariables("$remote_addr".into(), "$status".into())
        );
        assert_eq!(CompiledFormat::compile("plain", false).unwrap_err(), FormatStringError::NoVariables);
        assert!(CompiledFormat::compile("$ x", false).is_err());
    }

    /// Reads escapes from the left, one byte at a time: what [`quoted_len`] must agree with.
    fn quoted_len_by_escapes(s: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < s.len() {
            match s[i] {
                b'"' => return Some(i),
                b'\\' => i += 2,
                _ => i += 1,
            }
        }
        None
    }

    proptest::proptest! {
        #[test]
        fn quoted_len_reads_escapes_as_they_are_written(
            s in proptest::collection::vec(proptest::prop_oneof![
                proptest::strategy::Just(b'"'),
                proptest::strategy::Just(b'\\'),
                proptest::strategy::Just(b'a'),
            ], 0..40)
        ) {
            proptest::prop_assert_eq!(quoted_len(&s), quoted_len_by_escapes(&s));
        }
    }

    #[test]
    fn quoted_fields() {
        assert_eq!(quoted_len(br#"abc" x"#), Some(3));
        assert_eq!(quoted_len(br#"a\"b" x"#), Some(4), "an escaped quote");
        assert_eq!(quoted_len(br#"a\\" x"#), Some(3), "an escaped backslash");
        assert_eq!(quoted_len(br#"a\\\"b" x"#), Some(6));
        assert_eq!(quoted_len(br#"a\"#), None);
        assert_eq!(quoted_len(b""), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(seconds_to_us(b"1.5"), Some(1_500_000));
        assert_eq!(seconds_to_us(b"0.001, 0.002"), Some(1_000));
        assert_eq!(seconds_to_us(b"x"), None);
        assert_eq!(parse_status(b"404"), Ok(404));
        assert_eq!(parse_status(b"999"), Err(ParseError::BadStatus));
        assert_eq!(parse_status(b"-"), Ok(NO_RESPONSE));
        assert_eq!(parse_status(b"--"), Err(ParseError::BadStatus));
    }
}
