//! Access-log formats: one line of bytes in, one [`Record`] (or a [`ParseError`]) out.
//!
//! This module owns the log formats (`combined`, `common`, JSON lines, nginx `log_format`
//! and Apache `LogFormat` strings compiled into a parser, products' formats by name, W3C) and
//! their auto-detection. It knows nothing of rules, threads, files or Parquet: the analyzer
//! hands it lines, it hands back borrowed views of them.
//! Parsing never panics and never allocates for the text formats; a line that does not fit is
//! an error value the caller counts.

mod apache;
mod clf;
mod compiled;
mod json;
mod preset;
mod request;
pub(crate) mod scan;
pub mod second_reading;
pub mod time;
mod w3c;

use std::borrow::Cow;
use std::fmt;

pub use apache::VHOST_COMBINED;
pub use compiled::{CompiledFormat, FormatStringError, Var};
pub use json::{JsonFields, JsonFormat, LatencyUnit};
pub use preset::Preset;
pub use w3c::W3cFormat;

/// Lines longer than this are rejected (`too_long`) rather than parsed, unless
/// `log.max_line` says otherwise.
pub const DEFAULT_MAX_LINE: usize = 1 << 20;
/// The most `log.max_line` may be: the reader's 4 MiB chunks must hold such a line whole and
/// room to see that it ended.
pub const LONGEST_MAX_LINE: usize = 3 << 20;

/// How logs are read: their format, JSON field names and the longest line accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// The log format (`Auto` detects per input).
    pub format: FormatSpec,
    /// JSON field names.
    pub json: JsonFields,
    /// Lines longer than this many bytes are rejected as `too_long`.
    pub max_line: usize,
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings { format: FormatSpec::Auto, json: JsonFields::default(), max_line: DEFAULT_MAX_LINE }
    }
}

/// The status of a request that got no response (logged as `-`): no rule's status filter
/// accepts it, so it is never counted as cacheable.
pub const NO_RESPONSE: u16 = 0;

/// What the cache cares about in one request, borrowed from the log line where possible.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Record<'a> {
    /// Client address (`$remote_addr`), if logged.
    pub client: Option<Cow<'a, [u8]>>,
    /// Request time in Unix milliseconds, if logged.
    pub time_ms: Option<i64>,
    /// HTTP method, e.g. `GET`.
    pub method: Cow<'a, [u8]>,
    /// Path without the query string, e.g. `/api/products/42`.
    pub path: Cow<'a, [u8]>,
    /// Query string without the `?`, if any.
    pub query: Option<Cow<'a, [u8]>>,
    /// Virtual host (`$host`, or the authority of an absolute request target), if known.
    pub host: Option<Cow<'a, [u8]>>,
    /// Response status, if logged: [`NO_RESPONSE`] when the log says none was sent.
    pub status: Option<u16>,
    /// Response size in bytes, if logged.
    pub bytes: Option<u64>,
    /// Request latency in microseconds (`$request_time`, else `$upstream_response_time`).
    pub latency_us: Option<u64>,
    /// What the cache in front of the application said (`$upstream_cache_status`).
    pub cache: Option<CacheStatus>,
}

/// How the cache in front of the application answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Served from cache (`HIT`, `STALE`, `UPDATING`, `REVALIDATED`).
    Hit,
    /// Fetched from the application (`MISS`, `EXPIRED`).
    Miss,
    /// The cache was not consulted (`BYPASS`, `-`, anything else).
    Other,
}

impl CacheStatus {
    /// Reads nginx's `$upstream_cache_status` vocabulary (case-insensitive), and the first
    /// word of a cache header such as Squid's `X-Cache: MISS from proxy`.
    pub fn from_bytes(b: &[u8]) -> Self {
        let b = b.split(|&c| c == b' ' || c == b',').next().unwrap_or(b);
        const HITS: [&[u8]; 4] = [b"HIT", b"STALE", b"UPDATING", b"REVALIDATED"];
        const MISSES: [&[u8]; 2] = [b"MISS", b"EXPIRED"];
        if HITS.iter().any(|h| h.eq_ignore_ascii_case(b)) {
            CacheStatus::Hit
        } else if MISSES.iter().any(|m| m.eq_ignore_ascii_case(b)) {
            CacheStatus::Miss
        } else {
            CacheStatus::Other
        }
    }
}

/// Why a line could not be read as a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line holds nothing but white space.
    #[error("empty line")]
    Empty,
    /// The line is longer than the longest accepted (`log.max_line`).
    #[error("line longer than `log.max_line`")]
    TooLong,
    /// The line's shape differs from the format at the named element.
    #[error("line does not match the log format at {0}")]
    Mismatch(&'static str),
    /// The request line is not `METHOD TARGET [PROTOCOL]`.
    #[error("request is not `METHOD TARGET [PROTOCOL]`")]
    BadRequest,
    /// A W3C directive (`#Fields:`, `#Version:`, ...): the log's own header, not a request.
    #[error("a W3C directive line (`#Fields:`, `#Date:`, ...)")]
    Directive,
    /// The line logs no request (`-`): the client sent none before the connection ended.
    #[error("no request was logged (`-`)")]
    NoRequest,
    /// The status is not a three-digit number.
    #[error("status is not a three-digit number")]
    BadStatus,
    /// The time field cannot be read as a timestamp.
    #[error("timestamp cannot be read")]
    BadTime,
    /// A numeric field (bytes, latency) holds something else.
    #[error("field `{0}` is not a number")]
    BadNumber(&'static str),
    /// A JSON line is not a JSON object.
    #[error("not a JSON object")]
    BadJson,
    /// A JSON line lacks a field the format needs.
    #[error("JSON object has no `{0}` field")]
    MissingField(&'static str),
}

impl ParseError {
    /// A stable snake_case name for counting rejected lines by reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::TooLong => "too_long",
            ParseError::Mismatch(_) => "format_mismatch",
            ParseError::BadRequest => "bad_request_line",
            ParseError::NoRequest => "no_request",
            ParseError::Directive => "directive",
            ParseError::BadStatus => "bad_status",
            ParseError::BadTime => "bad_timestamp",
            ParseError::BadNumber(_) => "bad_number",
            ParseError::BadJson => "invalid_json",
            ParseError::MissingField(_) => "missing_field",
        }
    }
}

/// A log format, ready to parse lines.
#[derive(Debug, Clone)]
pub struct LogFormat {
    parser: Parser,
    max_line: usize,
}

#[derive(Debug, Clone)]
enum Parser {
    /// A compiled `log_format` string; `combined` and `common` are predefined ones.
    Text(CompiledFormat),
    /// One JSON object per line.
    Json(JsonFormat),
    /// W3C extended: the columns of the last `#Fields:` line (`None` before the first).
    W3c(Option<W3cFormat>),
}

/// The format named in flags or config, before it is compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatSpec {
    /// Detect per input file from its first lines.
    Auto,
    /// Apache/nginx combined.
    Combined,
    /// Common Log Format.
    Common,
    /// JSON lines.
    Json,
    /// An nginx `log_format` string, such as `$remote_addr [$time_local] "$request" $status`.
    Nginx(String),
    /// An Apache `LogFormat` string, such as `%h %l %u %t "%r" %>s %b`.
    Apache(String),
    /// A product's default format, by name (`aws-alb`, `haproxy`, ...).
    Preset(Preset),
}

impl FormatSpec {
    /// Reads a `--format` value: a built-in name, an nginx `log_format` string (recognised
    /// by its `$`) or an Apache `LogFormat` string (by its `%`).
    pub fn parse(s: &str) -> Result<Self, FormatStringError> {
        // Each string is compiled once now, so a bad one fails at load time, with its position.
        match s.trim() {
            "auto" => Ok(FormatSpec::Auto),
            "combined" => Ok(FormatSpec::Combined),
            "common" => Ok(FormatSpec::Common),
            "json" => Ok(FormatSpec::Json),
            "vhost_combined" => Ok(FormatSpec::Apache(VHOST_COMBINED.to_string())),
            name if let Some(preset) = Preset::from_name(name) => Ok(FormatSpec::Preset(preset)),
            other if other.contains('$') => {
                CompiledFormat::compile(other, false)?;
                Ok(FormatSpec::Nginx(other.to_string()))
            }
            other if other.contains('%') => {
                apache::compile(other)?;
                Ok(FormatSpec::Apache(other.to_string()))
            }
            other => Err(FormatStringError::UnknownName(other.to_string())),
        }
    }

    /// The compiled parser of a text format (`None` for JSON lines and `auto`).
    pub fn compiled(&self) -> Option<Result<CompiledFormat, FormatStringError>> {
        // Built-in formats accept extra trailing fields, which many deployments append.
        Some(match self {
            FormatSpec::Auto | FormatSpec::Json => return None,
            FormatSpec::Combined => CompiledFormat::compile(COMBINED, true),
            FormatSpec::Common => CompiledFormat::compile(COMMON, true),
            FormatSpec::Nginx(s) => CompiledFormat::compile(s, false),
            FormatSpec::Apache(s) => apache::compile(s),
            FormatSpec::Preset(p) => Ok(p.compiled()?),
        })
    }
}

impl fmt::Display for FormatSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatSpec::Auto => f.write_str("auto"),
            FormatSpec::Combined => f.write_str("combined"),
            FormatSpec::Common => f.write_str("common"),
            FormatSpec::Json => f.write_str("json"),
            FormatSpec::Nginx(s) | FormatSpec::Apache(s) => f.write_str(s),
            FormatSpec::Preset(p) => f.write_str(p.name()),
        }
    }
}

/// The `combined` format as an nginx `log_format` string. `$ident` stands for Apache's `%l`,
/// which nginx always writes as `-`.
pub const COMBINED: &str = r#"$remote_addr $ident $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
/// The Common Log Format as an nginx `log_format` string.
pub const COMMON: &str =
    r#"$remote_addr $ident $remote_user [$time_local] "$request" $status $body_bytes_sent"#;

impl LogFormat {
    /// The parser for a spec, accepting lines up to [`DEFAULT_MAX_LINE`]; `Auto` has none of
    /// its own (see [`detect`]).
    pub fn from_spec(spec: &FormatSpec, json: &JsonFields) -> Option<Self> {
        let parser = match spec {
            FormatSpec::Auto => return None,
            FormatSpec::Json => Parser::Json(JsonFormat::new(json)),
            FormatSpec::Preset(Preset::W3c) => Parser::W3c(None),
            FormatSpec::Preset(p) if p.json_fields().is_some() => {
                Parser::Json(JsonFormat::new(&p.json_fields().expect("a JSON preset")))
            }
            text => Parser::Text(text.compiled()?.ok()?),
        };
        Some(LogFormat { parser, max_line: DEFAULT_MAX_LINE })
    }

    /// The same parser, rejecting lines longer than `max_line` bytes as `too_long`.
    pub fn with_max_line(self, max_line: usize) -> Self {
        LogFormat { max_line, ..self }
    }

    /// The longest line accepted.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Whether lines of this format may change the format of the lines after them (W3C's
    /// `#Fields:`): such a log is read in chunks that each start at such a line.
    pub fn follows_headers(&self) -> bool {
        matches!(self.parser, Parser::W3c(_))
    }

    /// The format `line` sets for the lines after it, if it is a W3C `#Fields:` line.
    pub fn after_header(&self, line: &[u8]) -> Option<LogFormat> {
        let Parser::W3c(_) = self.parser else { return None };
        let columns = W3cFormat::from_header(line.strip_suffix(b"\r").unwrap_or(line))?;
        Some(LogFormat { parser: Parser::W3c(Some(columns)), max_line: self.max_line })
    }

    /// Parses one line (without its line terminator; a trailing `\r` is ignored).
    pub fn parse_line<'a>(&self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.len() > self.max_line {
            return Err(ParseError::TooLong);
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            return Err(ParseError::Empty);
        }
        match &self.parser {
            Parser::Text(f) => f.parse(line),
            Parser::Json(f) => f.parse(line),
            Parser::W3c(_) if line.starts_with(b"#") => Err(ParseError::Directive),
            Parser::W3c(Some(f)) => f.parse(line),
            Parser::W3c(None) => Err(ParseError::Mismatch("a `#Fields:` line before it")),
        }
    }
}

/// The formats `auto` chooses from, richest first, so that ties go to the earlier one.
/// Each preset reads only its own product's lines (ALB's leading type, HAProxy's timers),
/// so none of them reads another's.
fn candidates() -> Vec<FormatSpec> {
    let mut all = vec![FormatSpec::Combined, FormatSpec::Common, FormatSpec::Json];
    all.push(FormatSpec::Apache(VHOST_COMBINED.to_string()));
    // W3C is told by its `#Fields:` line instead.
    all.extend(Preset::ALL.into_iter().filter(|p| *p != Preset::W3c).map(FormatSpec::Preset));
    all
}

/// Picks the known format that reads the most of `sample_lines`, or `None` when none reads
/// any of them: custom format strings are never guessed, and the caller must say which.
pub fn detect<'a>(sample_lines: impl Iterator<Item = &'a [u8]>, json: &JsonFields) -> Option<FormatSpec> {
    let sample: Vec<&[u8]> = sample_lines.collect();
    if sample.iter().any(|l| l.starts_with(b"#Fields:")) {
        return Some(FormatSpec::Preset(Preset::W3c));
    }
    let candidates = candidates();
    let parsers: Vec<LogFormat> = candidates.iter().filter_map(|c| LogFormat::from_spec(c, json)).collect();
    let mut scores = vec![0usize; parsers.len()];
    for line in sample {
        for (score, parser) in scores.iter_mut().zip(&parsers) {
            *score += usize::from(parser.parse_line(line).is_ok());
        }
    }
    let best = (0..scores.len()).rev().max_by_key(|&i| scores[i])?;
    (scores[best] > 0).then(|| candidates[best].clone())
}

/// What `auto` can tell, for a message that asks for `--format`.
pub const KNOWN_FORMATS: &str =
    "combined, common, json, vhost_combined, aws-alb, aws-elb, haproxy, envoy, w3c, caddy, traefik, gcp-lb";

#[cfg(test)]
mod tests {
    use super::*;

    fn combined() -> LogFormat {
        LogFormat::from_spec(&FormatSpec::Combined, &JsonFields::default()).expect("built in")
    }

    #[test]
    fn combined_line() {
        let line = br#"203.0.113.9 - alice [17/May/2015:10:05:03 +0000] "GET /api/products/42?page=2&token=abc HTTP/1.1" 200 2326 "http://example.com/" "Mozilla/5.0 (X11)""#;
        let r = combined().parse_line(line).expect("parses");
        assert_eq!(r.client.as_deref(), Some(&b"203.0.113.9"[..]));
        assert_eq!(r.method.as_ref(), b"GET");
        assert_eq!(r.path.as_ref(), b"/api/products/42");
        assert_eq!(r.query.as_deref(), Some(&b"page=2&token=abc"[..]));
        assert_eq!(r.status, Some(200));
        assert_eq!(r.bytes, Some(2326));
        assert_eq!(r.time_ms, Some(1_431_857_103_000));
    }

    #[test]
    fn escaped_quotes_ipv6_dashes_and_crlf() {
        let line = b"2001:db8::1 - - [17/May/2015:10:05:03 +0000] \"GET /a\\\"b HTTP/1.1\" 304 - \"-\" \"agent \\\"quoted\\\" x\"\r";
        let r = combined().parse_line(line).expect("parses");
        assert_eq!(r.client.as_deref(), Some(&b"2001:db8::1"[..]));
        assert_eq!(r.path.as_ref(), b"/a\\\"b");
        assert_eq!(r.status, Some(304));
        assert_eq!(r.bytes, None);
    }

    #[test]
    fn rejects_with_reasons() {
        let f = combined();
        assert_eq!(f.parse_line(b"   ").unwrap_err(), ParseError::Empty);
        assert_eq!(f.parse_line(b"garbage").unwrap_err().reason(), "format_mismatch");
        let bad_status = br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 2x0 1 "-" "-""#;
        assert_eq!(f.parse_line(bad_status).unwrap_err(), ParseError::BadStatus);
        let no_request = br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "-" 400 0 "-" "-""#;
        assert_eq!(f.parse_line(no_request).unwrap_err(), ParseError::NoRequest);
        let junk = br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "\x16\x03" 400 0 "-" "-""#;
        assert_eq!(f.parse_line(junk).unwrap_err(), ParseError::BadRequest);
        let long = vec![b'a'; DEFAULT_MAX_LINE + 1];
        assert_eq!(f.parse_line(&long).unwrap_err(), ParseError::TooLong);
        let short = br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "-""#;
        assert!(f.parse_line(short).is_ok());
        let f = f.with_max_line(short.len() - 1);
        assert_eq!(f.parse_line(short).unwrap_err(), ParseError::TooLong);
    }

    #[test]
    fn detects_formats() {
        let json = JsonFields::default();
        let combined_lines: [&[u8]; 2] = [
            br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1 "-" "ua""#,
            br#"1.2.3.4 - - [17/May/2015:10:05:04 +0000] "GET /x HTTP/1.1" 200 1 "-" "ua""#,
        ];
        assert_eq!(detect(combined_lines.into_iter(), &json), Some(FormatSpec::Combined));
        let common_lines: [&[u8]; 1] =
            [br#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET / HTTP/1.1" 200 1"#];
        assert_eq!(detect(common_lines.into_iter(), &json), Some(FormatSpec::Common));
        let json_lines: [&[u8]; 1] =
            [br#"{"time_local":"17/May/2015:10:05:03 +0000","request":"GET / HTTP/1.1","status":"200"}"#];
        assert_eq!(detect(json_lines.into_iter(), &json), Some(FormatSpec::Json));
        let alb: [&[u8]; 1] = [br#"http 2026-03-02T10:00:01.500000Z app/shop/0a1b 198.51.100.7:40312 10.0.1.9:8080 0.001 0.042 0.000 200 200 310 5120 "GET http://shop.example:80/p HTTP/1.1" "curl/8.5" - - arn:x "Root=1" "-" "-" 0"#];
        assert_eq!(detect(alb.into_iter(), &json), Some(FormatSpec::Preset(Preset::AwsAlb)));
        let haproxy: [&[u8]; 1] = [br#"haproxy[674]: 127.0.0.1:33318 [15/Oct/2003:08:31:57.130] px-http px-http/srv1 6559/0/7/147/6723 200 243 - - ---- 5/3/3/1/0 0/0 "HEAD / HTTP/1.0""#];
        assert_eq!(detect(haproxy.into_iter(), &json), Some(FormatSpec::Preset(Preset::Haproxy)));
        let envoy: [&[u8]; 1] = [br#"[2016-04-15T20:17:00.310Z] "POST /api/v1/locations HTTP/2" 204 - 154 0 226 100 "10.0.35.28" "nsq2http" "cc21d9b0" "locations" "tcp://10.0.2.1:80""#];
        assert_eq!(detect(envoy.into_iter(), &json), Some(FormatSpec::Preset(Preset::Envoy)));
        let vhost: [&[u8]; 1] = [br#"shop.example:443 10.0.0.1 - - [01/Jul/2013:06:20:38 -0500] "GET / HTTP/1.1" 200 3829 "-" "ua""#];
        assert_eq!(detect(vhost.into_iter(), &json), Some(FormatSpec::Apache(VHOST_COMBINED.into())));
        let unknown: [&[u8]; 1] = [b"GET /x 200 0.1"];
        assert_eq!(detect(unknown.into_iter(), &json), None, "custom formats are never guessed");
    }

    #[test]
    fn format_spec_parsing() {
        assert_eq!(FormatSpec::parse("combined").expect("ok"), FormatSpec::Combined);
        assert!(matches!(FormatSpec::parse("$remote_addr \"$request\""), Ok(FormatSpec::Nginx(_))));
        assert!(FormatSpec::parse("apache").is_err());
        assert!(matches!(FormatSpec::parse("%h \"%r\" %>s"), Ok(FormatSpec::Apache(_))));
        assert!(matches!(FormatSpec::parse("vhost_combined"), Ok(FormatSpec::Apache(_))));
        let e = FormatSpec::parse("%h %y \"%r\"").expect_err("unknown directive");
        assert!(e.to_string().contains("`%y`"), "{e}");
    }
}
