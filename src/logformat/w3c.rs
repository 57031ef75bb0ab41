//! The W3C extended log format (IIS, CloudFront): a `#Fields:` directive names the columns
//! of the lines after it, separated by spaces (IIS) or tabs (CloudFront). A server writes
//! the directive again when its configuration changes, so a file may change columns midway;
//! the reader starts a new chunk at each `#Fields:` line, and the format that line sets
//! reads the lines after it (see [`super::LogFormat::after_header`]).

use std::borrow::Cow;

use super::compiled::{is_dash, parse_status, parse_u64, seconds_to_us};
use super::request::split_target;
use super::time::parse_iso8601;
use super::{CacheStatus, ParseError, Record};

/// What a column holds, for preheat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Date,
    Time,
    Method,
    Path,
    /// `cs-uri`: the path and its query in one.
    Target,
    Query,
    Status,
    Bytes,
    /// `time-taken`: milliseconds in IIS, seconds in CloudFront.
    TimeTaken,
    Client,
    /// `cs-host`, `cs(Host)`: the host the request named (CloudFront: its own domain).
    Host,
    /// `x-host-header`: CloudFront's record of the viewer's `Host`, preferred to `cs(Host)`.
    HostHeader,
    /// `x-edge-result-type`: CloudFront's `Hit`, `RefreshHit`, `Miss`, ...
    EdgeResult,
    Other,
}

/// The columns a `#Fields:` line named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct W3cFormat {
    columns: Vec<Column>,
    /// `time-taken` is in seconds (CloudFront, told by its `x-edge-` columns), not ms.
    seconds: bool,
}

impl W3cFormat {
    /// The format a `#Fields: date time ...` line sets; `None` for any other line.
    pub fn from_header(line: &[u8]) -> Option<Self> {
        let names = line.strip_prefix(b"#Fields:")?;
        let names = std::str::from_utf8(names).ok()?;
        let columns: Vec<Column> = names
            .split_ascii_whitespace()
            .map(|name| match name.to_ascii_lowercase().as_str() {
                "date" | "date-local" => Column::Date,
                "time" | "time-local" => Column::Time,
                "cs-method" => Column::Method,
                "cs-uri-stem" => Column::Path,
                "cs-uri-query" => Column::Query,
                "cs-uri" => Column::Target,
                "sc-status" => Column::Status,
                "sc-bytes" | "bytes" => Column::Bytes,
                "time-taken" | "timetakenms" => Column::TimeTaken,
                "c-ip" => Column::Client,
                "cs-host" | "cs(host)" => Column::Host,
                "x-host-header" => Column::HostHeader,
                "x-edge-result-type" => Column::EdgeResult,
                _ => Column::Other,
            })
            .collect();
        let seconds = names.split_ascii_whitespace().any(|n| n.starts_with("x-edge-"));
        Some(W3cFormat { columns, seconds })
    }

    /// Parses a data line (directives are the caller's).
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        let mut rec = Record::default();
        let (mut date, mut time): (Option<&[u8]>, Option<&[u8]>) = (None, None);
        let mut values = Values::new(line);
        let mut have_path = false;
        let mut host_header = false;
        for column in &self.columns {
            let v = values.next().ok_or(ParseError::Mismatch("a column the `#Fields:` line names"))?;
            match column {
                Column::Date => date = Some(v),
                Column::Time => time = Some(v),
                Column::Method => rec.method = Cow::Borrowed(v),
                Column::Path if !is_dash(v) => {
                    rec.path = Cow::Borrowed(v);
                    have_path = true;
                }
                Column::Target if !is_dash(v) && !split_target(v).path.is_empty() => {
                    let t = split_target(v);
                    rec.path = Cow::Borrowed(t.path);
                    rec.query = t.query.map(Cow::Borrowed);
                    have_path = true;
                }
                Column::Query if !is_dash(v) => rec.query = Some(Cow::Borrowed(v)),
                Column::Status => rec.status = Some(parse_status(v)?),
                Column::Bytes if !is_dash(v) => {
                    rec.bytes = Some(parse_u64(v).ok_or(ParseError::BadNumber("sc-bytes"))?)
                }
                Column::TimeTaken if !is_dash(v) => {
                    let us = if self.seconds {
                        seconds_to_us(v)
                    } else {
                        parse_u64(v).map(|ms| ms.saturating_mul(1000))
                    };
                    rec.latency_us = Some(us.ok_or(ParseError::BadNumber("time-taken"))?);
                }
                Column::Client if !is_dash(v) => rec.client = Some(Cow::Borrowed(v)),
                Column::Host if !is_dash(v) && !host_header => rec.host = Some(Cow::Borrowed(v)),
                Column::HostHeader if !is_dash(v) => {
                    rec.host = Some(Cow::Borrowed(v));
                    host_header = true;
                }
                Column::EdgeResult => rec.cache = Some(edge_result(v)),
                _ => {}
            }
        }
        if values.next().is_some() {
            return Err(ParseError::Mismatch("end of line (more columns than `#Fields:` names)"));
        }
        if !have_path {
            return Err(ParseError::NoRequest);
        }
        if rec.method.is_empty() {
            rec.method = Cow::Borrowed(b"GET");
        }
        rec.time_ms = match (date, time) {
            (Some(d), Some(t)) => Some(date_time(d, t).ok_or(ParseError::BadTime)?),
            _ => None,
        };
        Ok(rec)
    }
}

/// A data line's values: separated by tabs (CloudFront) or by runs of spaces (IIS and
/// others, some of which align their columns); a value may be quoted (`"a b"`, with `""` for a
/// quote), as IIS Advanced Logging writes those that hold spaces.
struct Values<'a> {
    rest: &'a [u8],
    tabs: bool,
    done: bool,
}

impl<'a> Values<'a> {
    fn new(line: &'a [u8]) -> Self {
        let tabs = memchr::memchr(b'\t', line).is_some();
        Values { rest: line, tabs, done: false }
    }
}

impl<'a> Iterator for Values<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if !self.tabs {
            self.rest = self.rest.trim_ascii_start();
            if self.rest.is_empty() {
                self.done = true;
            }
        }
        if self.done {
            return None;
        }
        let separator = if self.tabs { b'\t' } else { b' ' };
        let end = if !self.tabs && self.rest.first() == Some(&b'"') {
            // Up to a quote that a separator or the end follows; `""` inside is a quote.
            let mut at = 1;
            loop {
                match memchr::memchr(b'"', &self.rest[at..]) {
                    Some(q) if self.rest.get(at + q + 1) == Some(&b'"') => at += q + 2,
                    Some(q) => break at + q + 1,
                    None => break self.rest.len(),
                }
            }
        } else {
            memchr::memchr(separator, self.rest).unwrap_or(self.rest.len())
        };
        let value = &self.rest[..end];
        match self.rest.get(end) {
            Some(_) => self.rest = &self.rest[end + 1..],
            None => self.done = true,
        }
        let unquoted = value.strip_prefix(b"\"").and_then(|v| v.strip_suffix(b"\"")).unwrap_or(value);
        Some(unquoted)
    }
}

/// `2026-03-02` and `10:00:01` (UTC, as W3C logs write them) as Unix ms.
fn date_time(date: &[u8], time: &[u8]) -> Option<i64> {
    let mut text = [0u8; 40];
    let len = date.len() + 1 + time.len();
    if date.len() != 10 || len > text.len() {
        return None;
    }
    text[..10].copy_from_slice(date);
    text[10] = b'T';
    text[11..len].copy_from_slice(time);
    parse_iso8601(&text[..len])
}

/// CloudFront's verdict: `Hit`, `RefreshHit` and `OriginShieldHit` were served from its cache.
fn edge_result(v: &[u8]) -> CacheStatus {
    match v {
        b"Hit" | b"RefreshHit" | b"OriginShieldHit" => CacheStatus::Hit,
        b"Miss" => CacheStatus::Miss,
        _ => CacheStatus::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iis_and_cloudfront_lines_read_by_their_headers() {
        let iis = W3cFormat::from_header(b"#Fields: date time s-sitename cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs-host sc-status sc-substatus sc-win32-status sc-bytes time-taken").expect("a header");
        let r = iis
            .parse(b"2026-03-02 10:00:01 W3SVC1 GET /api/products/42 page=2 443 - 198.51.100.7 Mozilla/5.0+(X11) shop.example 200 0 0 5120 41")
            .expect("parses");
        assert_eq!((r.path.as_ref(), r.query.as_deref()), (&b"/api/products/42"[..], Some(&b"page=2"[..])));
        assert_eq!((r.status, r.bytes, r.latency_us), (Some(200), Some(5120), Some(41_000)));
        assert_eq!((r.time_ms, r.host.as_deref()), (Some(1_772_445_601_000), Some(&b"shop.example"[..])));
        assert_eq!(
            iis.parse(b"2026-03-02 10:00:01 W3SVC1 GET / - 443").unwrap_err(),
            ParseError::Mismatch("a column the `#Fields:` line names")
        );
        let cloudfront = W3cFormat::from_header(b"#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(Referer) cs(User-Agent) cs-uri-query cs(Cookie) x-edge-result-type x-edge-request-id x-host-header cs-protocol cs-bytes time-taken").expect("a header");
        let line = b"2026-03-02\t10:00:01\tFRA2\t5120\t198.51.100.7\tGET\td1.cloudfront.net\t/p/1\t200\t-\tcurl/8\t-\t-\tRefreshHit\tid1\tshop.example\thttps\t300\t0.041";
        let r = cloudfront.parse(line).expect("parses");
        assert_eq!((r.cache, r.latency_us, r.query), (Some(CacheStatus::Hit), Some(41_000), None));
        assert_eq!(
            r.host.as_deref(),
            Some(&b"shop.example"[..]),
            "the viewer's Host, not CloudFront's domain"
        );
        assert!(W3cFormat::from_header(b"#Version: 1.0").is_none());
        // Aligned columns, a whole `cs-uri`, quoted values with spaces.
        let aligned = W3cFormat::from_header(
            b"#Fields:  c-ip  date  time  cs-method  cs-uri  sc-status  bytes  cs(User-Agent)",
        )
        .expect("a header");
        let r = aligned.parse(b"198.51.100.7    2026-03-02   10:00:01   GET   /p/1?x=2   200   350   \"Mozilla \"\"5\"\" (X11)\"  ").expect("parses");
        assert_eq!(
            (r.path.as_ref(), r.query.as_deref(), r.bytes),
            (&b"/p/1"[..], Some(&b"x=2"[..]), Some(350))
        );
        assert_eq!(r.client.as_deref(), Some(&b"198.51.100.7"[..]));
        let quoted = W3cFormat::from_header(
            b"#Fields: date-local time-local c-ip cs(User-Agent) cs-uri-stem sc-status TimeTakenMS",
        )
        .expect("a header");
        let r = quoted
            .parse(b"2012-08-15 17:00:00.363 \"70.95.0.0\" \"Mozilla/5.0 (Linux)\" /Products/x 301 12")
            .expect("parses");
        assert_eq!((r.client.as_deref(), r.latency_us), (Some(&b"70.95.0.0"[..]), Some(12_000)));
        assert_eq!((r.path.as_ref(), r.time_ms), (&b"/Products/x"[..], Some(1_345_050_000_363)));
    }
}
