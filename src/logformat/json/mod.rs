//! JSON lines: one object per line, field names configurable.
//!
//! Only the fields a [`Record`] needs are decoded, borrowed from the line when they hold no
//! escapes; every other field is skipped without allocating. [`flat`] reads most lines in
//! one pass; serde_json reads the rest.

mod flat;

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::compiled::{parse_status, parse_u64, seconds_to_us};
use super::request::{parse_request, refused, split_target};
use super::time::parse_any;
use super::{CacheStatus, NO_RESPONSE, ParseError, Record};

/// Which top-level JSON fields hold which part of a request. Each role lists candidate names;
/// the first one present in a line wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JsonFields {
    /// Request time (CLF, ISO 8601, or Unix seconds/milliseconds).
    #[serde(deserialize_with = "one_or_many")]
    pub time: Vec<String>,
    /// Whole request line, `GET /path HTTP/1.1`.
    #[serde(deserialize_with = "one_or_many")]
    pub request: Vec<String>,
    /// Method, when the request line is split.
    #[serde(deserialize_with = "one_or_many")]
    pub method: Vec<String>,
    /// Request target (path and query), when the request line is split.
    #[serde(deserialize_with = "one_or_many")]
    pub uri: Vec<String>,
    /// Response status.
    #[serde(deserialize_with = "one_or_many")]
    pub status: Vec<String>,
    /// Response size in bytes.
    #[serde(deserialize_with = "one_or_many")]
    pub bytes: Vec<String>,
    /// Latency in seconds.
    #[serde(deserialize_with = "one_or_many")]
    pub latency: Vec<String>,
    /// Client address.
    #[serde(deserialize_with = "one_or_many")]
    pub client: Vec<String>,
    /// Cache status (`HIT`, `MISS`, ...).
    #[serde(deserialize_with = "one_or_many")]
    pub cache_status: Vec<String>,
    /// Virtual host.
    #[serde(deserialize_with = "one_or_many")]
    pub host: Vec<String>,
    /// The unit of a latency logged as a bare number (a string with a unit, `41ms` or
    /// `0.041s`, says its own).
    pub latency_unit: LatencyUnit,
}

/// The unit of a latency logged as a bare number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LatencyUnit {
    /// Seconds, as nginx's `$request_time` and Caddy's `duration`.
    #[default]
    S,
    /// Milliseconds.
    Ms,
    /// Microseconds.
    Us,
    /// Nanoseconds, as Traefik's `Duration`.
    Ns,
}

impl LatencyUnit {
    fn micros(self, n: f64) -> u64 {
        let us = match self {
            LatencyUnit::S => n * 1e6,
            LatencyUnit::Ms => n * 1e3,
            LatencyUnit::Us => n,
            LatencyUnit::Ns => n / 1e3,
        };
        us as u64
    }
}

/// A latency text: a number in `unit`, or with its own unit (`41ms`, `0.041s`, Go's and
/// Cloud Logging's way), as microseconds.
fn latency_text(text: &[u8], unit: LatencyUnit) -> Option<u64> {
    let (number, unit) = if let Some(n) = text.strip_suffix(b"ns") {
        (n, LatencyUnit::Ns)
    } else if let Some(n) = text.strip_suffix(b"us").or_else(|| text.strip_suffix("µs".as_bytes())) {
        (n, LatencyUnit::Us)
    } else if let Some(n) = text.strip_suffix(b"ms") {
        (n, LatencyUnit::Ms)
    } else if let Some(n) = text.strip_suffix(b"s") {
        (n, LatencyUnit::S)
    } else {
        (text, unit)
    };
    // Seconds as text are read exactly, without a float's rounding.
    if unit == LatencyUnit::S {
        return seconds_to_us(number);
    }
    let n: f64 =
        std::str::from_utf8(number).ok()?.parse().ok().filter(|n: &f64| n.is_finite() && *n >= 0.0)?;
    Some(unit.micros(n))
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

impl Default for JsonFields {
    fn default() -> Self {
        JsonFields {
            time: names(&["time_local", "time_iso8601", "time", "timestamp", "@timestamp", "msec", "ts"]),
            request: names(&["request"]),
            method: names(&["request_method", "method"]),
            uri: names(&["request_uri", "uri", "path", "url"]),
            status: names(&["status", "status_code"]),
            bytes: names(&["body_bytes_sent", "bytes_sent", "bytes", "size"]),
            latency: names(&["request_time", "duration", "upstream_response_time"]),
            client: names(&["remote_addr", "client_ip", "ip", "client"]),
            cache_status: names(&["upstream_cache_status", "cache_status", "cache"]),
            host: names(&["host", "http_host", "server_name"]),
            latency_unit: LatencyUnit::S,
        }
    }
}

const ROLES: usize = 10;

/// A JSON scalar, borrowed when it holds no escapes.
#[derive(Debug, PartialEq)]
enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(f64),
    Bool(bool),
    Null,
}

impl<'a> Scalar<'a> {
    fn text(&self) -> Option<Cow<'a, [u8]>> {
        match self {
            Scalar::Str(Cow::Borrowed(s)) => Some(Cow::Borrowed(s.as_bytes())),
            Scalar::Str(Cow::Owned(s)) => Some(Cow::Owned(s.as_bytes().to_vec())),
            Scalar::Num(n) => Some(Cow::Owned(n.to_string().into_bytes())),
            Scalar::Bool(_) | Scalar::Null => None,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Null)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Null)
            }
        }
        d.deserialize_any(V)
    }
}

/// The values of a line's fields that fill a role.
#[derive(Debug, Default, PartialEq)]
struct Fields<'a> {
    /// Per role: (priority of the name that matched, value).
    found: [Option<(usize, Scalar<'a>)>; ROLES],
}

impl<'a> Fields<'a> {
    /// Whether a field of `(role, prio)` is kept: when no name of a higher priority (a lower
    /// number) filled the role yet. So the first name of a role's list that a line holds
    /// wins, and of a name that appears twice, its first value.
    fn wants(&self, (role, prio): Place) -> bool {
        self.found[role].as_ref().is_none_or(|(p, _)| prio < *p)
    }

    fn keep(&mut self, (role, prio): Place, value: Scalar<'a>) {
        self.found[role] = Some((prio, value));
    }

    /// Takes the fields a nested object filled, where they rank above what is here.
    fn merge(&mut self, inner: Fields<'a>) {
        for (role, found) in inner.found.into_iter().enumerate() {
            if let Some((prio, value)) = found
                && self.wants((role, prio))
            {
                self.keep((role, prio), value);
            }
        }
    }
}

/// Which role, and at which priority, each configured field name fills.
///
/// A small table of its own, looked up by a name's length and last byte: a general hash
/// (ahash) of every key of a line took a sixth of a flat line's parse, and this takes two
/// thirds of that.
#[derive(Debug, Clone)]
struct Names {
    slots: Vec<Vec<(Box<[u8]>, Place)>>,
    /// The objects that hold a wanted field: `request` for `request.uri`.
    parents: Vec<Box<[u8]>>,
}

/// A field name's role, and its priority among the role's names (0 is the first).
type Place = (usize, usize);

const NAME_SLOTS: usize = 64;

impl Names {
    fn new(fields: &JsonFields) -> Self {
        let mut names = Names { slots: vec![Vec::new(); NAME_SLOTS], parents: Vec::new() };
        // A name listed twice keeps its first place: the first role listing it, the first
        // position in that role's list.
        for (role, candidates) in fields.roles().into_iter().enumerate() {
            for (prio, name) in candidates.iter().enumerate() {
                if names.get(name.as_bytes()).is_none() {
                    names.slots[Self::slot(name.as_bytes())].push((name.as_bytes().into(), (role, prio)));
                }
                for (dot, _) in name.match_indices('.') {
                    let parent: Box<[u8]> = name.as_bytes()[..dot].into();
                    if !names.parents.contains(&parent) {
                        names.parents.push(parent);
                    }
                }
            }
        }
        names
    }

    fn slot(name: &[u8]) -> usize {
        (name.len() * 7 + usize::from(name.last().copied().unwrap_or(0))) % NAME_SLOTS
    }

    /// Whether `name` is an object that holds a wanted field.
    fn is_parent(&self, name: &[u8]) -> bool {
        !self.parents.is_empty() && self.parents.iter().any(|p| p.as_ref() == name)
    }

    fn get(&self, name: &[u8]) -> Option<Place> {
        let slot = self.slots.get(Self::slot(name))?;
        slot.iter().find(|(n, _)| n.as_ref() == name).map(|&(_, found)| found)
    }
}

/// Reads an object's wanted fields; `parent` is the dotted path of the object (empty for
/// the line's), so that `request.uri` is found in `{"request":{"uri":...}}`.
struct ObjectVisitor<'n> {
    names: &'n Names,
    parent: String,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Fields<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Fields::default();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let path =
                if self.parent.is_empty() { key } else { Cow::Owned(format!("{}.{key}", self.parent)) };
            match self.names.get(path.as_bytes()) {
                Some(name) if out.wants(name) => out.keep(name, map.next_value::<Scalar<'de>>()?),
                None if self.names.is_parent(path.as_bytes()) => {
                    let inner =
                        map.next_value_seed(ObjectVisitor { names: self.names, parent: path.into_owned() })?;
                    out.merge(inner);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
    // A field that holds an object elsewhere may hold anything on a given line: then it
    // holds none of the wanted fields.
    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(Fields::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Fields::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Fields::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Fields::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Fields::default())
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Fields::default())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Fields::default())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Fields::default())
    }
}

impl<'de> de::DeserializeSeed<'de> for ObjectVisitor<'_> {
    type Value = Fields<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

fn owned_part(b: &[u8]) -> Cow<'static, [u8]> {
    Cow::Owned(b.to_vec())
}

impl JsonFields {
    fn roles(&self) -> [&Vec<String>; ROLES] {
        [
            &self.time,
            &self.request,
            &self.method,
            &self.uri,
            &self.status,
            &self.bytes,
            &self.latency,
            &self.client,
            &self.cache_status,
            &self.host,
        ]
    }
}

/// JSON lines with the configured field names, ready to parse.
#[derive(Debug, Clone)]
pub struct JsonFormat {
    names: Names,
    latency_unit: LatencyUnit,
}

impl JsonFormat {
    /// A parser for lines whose fields are named as in `fields`.
    pub fn new(fields: &JsonFields) -> Self {
        JsonFormat { names: Names::new(fields), latency_unit: fields.latency_unit }
    }

    /// Parses one JSON object line.
    pub fn parse<'a>(&self, line: &'a [u8]) -> Result<Record<'a>, ParseError> {
        let mut fields = Fields::default();
        if flat::read(line, &self.names, &mut fields).is_none() {
            fields = self.read_with_serde(line)?;
        }
        record(&mut fields, self.latency_unit)
    }

    /// Where the one-pass reader reads `line`, whether serde_json reads the same fields.
    pub(super) fn readings_agree(&self, line: &[u8]) -> Result<(), String> {
        let mut flat_fields = Fields::default();
        if flat::read(line, &self.names, &mut flat_fields).is_none() {
            return Ok(());
        }
        match self.read_with_serde(line) {
            Ok(serde_fields) if serde_fields == flat_fields => Ok(()),
            other => Err(format!("the one-pass reader read {flat_fields:?}, serde_json {other:?}")),
        }
    }

    /// The role fields of any JSON object line, or why it is not one.
    fn read_with_serde<'a>(&self, line: &'a [u8]) -> Result<Fields<'a>, ParseError> {
        let mut de = serde_json::Deserializer::from_slice(line);
        let fields = de
            .deserialize_map(ObjectVisitor { names: &self.names, parent: String::new() })
            .map_err(|_| ParseError::BadJson)?;
        de.end().map_err(|_| ParseError::BadJson)?;
        Ok(fields)
    }
}

/// The record a line's role fields make.
fn record<'a>(fields: &mut Fields<'a>, latency_unit: LatencyUnit) -> Result<Record<'a>, ParseError> {
    let [time, request, method, uri, status, bytes, latency, client, cache, host] =
        fields.found.each_mut().map(|f| f.take().map(|(_, v)| v));
    let mut rec = Record::default();

    if let Some(req) = request.as_ref().and_then(Scalar::text) {
        match req {
            Cow::Borrowed(b) => {
                let t = parse_request(b).ok_or_else(|| refused(b))?;
                rec.method = Cow::Borrowed(t.method);
                rec.path = Cow::Borrowed(t.path);
                rec.query = t.query.map(Cow::Borrowed);
                rec.host = t.host.map(Cow::Borrowed);
            }
            Cow::Owned(b) => {
                let t = parse_request(&b).ok_or_else(|| refused(&b))?;
                rec.method = owned_part(t.method);
                rec.path = owned_part(t.path);
                rec.query = t.query.map(owned_part);
                rec.host = t.host.map(owned_part);
            }
        }
    } else if let Some(target) = uri.as_ref().and_then(Scalar::text) {
        match target {
            Cow::Borrowed(b) => {
                let t = split_target(b);
                rec.path = Cow::Borrowed(t.path);
                rec.query = t.query.map(Cow::Borrowed);
                rec.host = t.host.map(Cow::Borrowed);
            }
            Cow::Owned(b) => {
                let t = split_target(&b);
                rec.path = owned_part(t.path);
                rec.query = t.query.map(owned_part);
                rec.host = t.host.map(owned_part);
            }
        }
        if rec.path.is_empty() {
            return Err(ParseError::BadRequest);
        }
        rec.method = method.as_ref().and_then(Scalar::text).unwrap_or(Cow::Borrowed(b"GET"));
    } else {
        return Err(ParseError::MissingField("request"));
    }

    rec.time_ms = match time {
        Some(Scalar::Num(n)) if n > 1e11 => Some(n as i64),
        Some(Scalar::Num(n)) => Some((n * 1000.0) as i64),
        Some(Scalar::Str(s)) => Some(parse_any(s.as_bytes()).ok_or(ParseError::BadTime)?),
        _ => None,
    };
    rec.status = match status {
        Some(Scalar::Num(n)) => Some(status_number(n)?),
        Some(Scalar::Str(s)) => Some(parse_status(s.as_bytes())?),
        _ => None,
    };
    rec.bytes = match bytes {
        Some(Scalar::Num(n)) if n >= 0.0 => Some(n as u64),
        Some(Scalar::Str(s)) if s != "-" => {
            Some(parse_u64(s.as_bytes()).ok_or(ParseError::BadNumber("bytes"))?)
        }
        _ => None,
    };
    rec.latency_us = match latency {
        Some(Scalar::Num(n)) if n >= 0.0 => Some(latency_unit.micros(n)),
        Some(Scalar::Str(s)) if s != "-" => {
            Some(latency_text(s.as_bytes(), latency_unit).ok_or(ParseError::BadNumber("latency"))?)
        }
        _ => None,
    };
    rec.client = client.and_then(|c| c.text()).filter(|c| c.as_ref() != b"-");
    rec.cache = match cache {
        // Cloud Logging's `cacheHit`.
        Some(Scalar::Bool(hit)) => Some(if hit { CacheStatus::Hit } else { CacheStatus::Miss }),
        other => other.and_then(|c| c.text()).map(|c| CacheStatus::from_bytes(&c)),
    };
    if let Some(h) = host.and_then(|h| h.text()).filter(|h| h.as_ref() != b"-") {
        rec.host = Some(h);
    }
    Ok(rec)
}

/// A status logged as a JSON number: what `parse_status` accepts as text, 100 to 599 and
/// whole, without formatting the number first (an allocation on every such line).
fn status_number(n: f64) -> Result<u16, ParseError> {
    if n.fract() == 0.0 && (100.0..=599.0).contains(&n) {
        Ok(n as u16)
    } else if n == -1.0 || (n == 0.0 && n.is_sign_positive()) {
        Ok(NO_RESPONSE)
    } else {
        Err(ParseError::BadStatus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_fields_latency_units_and_cache_flags() {
        let fields = JsonFields {
            method: vec!["http.method".into()],
            uri: vec!["http.url".into()],
            status: vec!["http.status".into()],
            latency: vec!["took".into()],
            cache_status: vec!["http.cacheHit".into()],
            latency_unit: LatencyUnit::Ns,
            ..JsonFields::default()
        };
        let f = JsonFormat::new(&fields);
        let line = br#"{"took":41000000,"http":{"method":"GET","url":"https://shop.example/p/1?x=2","status":200,"cacheHit":true,"h":{"a":[1]}}}"#;
        let r = f.parse(line).expect("parses");
        assert_eq!((r.path.as_ref(), r.query.as_deref()), (&b"/p/1"[..], Some(&b"x=2"[..])));
        assert_eq!((r.host.as_deref(), r.status), (Some(&b"shop.example"[..]), Some(200)));
        assert_eq!((r.latency_us, r.cache), (Some(41_000), Some(CacheStatus::Hit)));
        let line = br#"{"took":"41ms","http":"not an object here","request":"GET /q HTTP/1.1"}"#;
        let r = f.parse(line).expect("parses");
        assert_eq!((r.path.as_ref(), r.latency_us, r.cache), (&b"/q"[..], Some(41_000), None));
        for (text, us) in [("0.041s", 41_000), ("41ms", 41_000), ("41us", 41), ("41000ns", 41), ("2", 2)] {
            assert_eq!(latency_text(text.as_bytes(), LatencyUnit::Us), Some(us), "{text}");
        }
        assert_eq!(latency_text(b"-1ms", LatencyUnit::S), None);
    }

    #[test]
    fn nginx_json_line() {
        let line = br#"{"remote_addr":"127.0.0.1","time_local":"17/Nov/2013:06:31:32 -0500","request":"GET /api/x?_=1 HTTP/1.1","status":"200","body_bytes_sent":"12","request_time":"0.004","nested":{"a":[1,2]}}"#;
        let r = JsonFormat::new(&JsonFields::default()).parse(line).expect("parses");
        assert_eq!(r.path.as_ref(), b"/api/x");
        assert_eq!(r.status, Some(200));
        assert_eq!(r.bytes, Some(12));
        assert_eq!(r.latency_us, Some(4_000));
        assert_eq!(r.time_ms, Some(1_384_687_892_000));
    }

    #[test]
    fn split_fields_numbers_and_escapes() {
        let line = br#"{"ts":1700000000.5,"method":"GET","uri":"\/a\/b?c=1","status":404,"bytes":10,"duration":0.25,"cache":"MISS"}"#;
        let r = JsonFormat::new(&JsonFields::default()).parse(line).expect("parses");
        assert_eq!(r.path.as_ref(), b"/a/b");
        assert_eq!(r.query.as_deref(), Some(&b"c=1"[..]));
        assert_eq!(r.status, Some(404));
        assert_eq!(r.time_ms, Some(1_700_000_000_500));
        assert_eq!(r.latency_us, Some(250_000));
        assert_eq!(r.cache, Some(CacheStatus::Miss));
    }

    #[test]
    fn configured_names_and_errors() {
        let fields: JsonFields = toml::from_str("uri = \"u\"\ntime = [\"when\"]").expect("valid");
        let r =
            JsonFormat::new(&fields).parse(br#"{"u":"/z","when":"2026-01-01T00:00:00Z"}"#).expect("parses");
        assert_eq!(r.path.as_ref(), b"/z");
        assert_eq!(JsonFormat::new(&JsonFields::default()).parse(b"{").unwrap_err(), ParseError::BadJson);
        assert_eq!(JsonFormat::new(&JsonFields::default()).parse(b"[1]").unwrap_err(), ParseError::BadJson);
        assert_eq!(
            JsonFormat::new(&JsonFields::default()).parse(br#"{"status":200}"#).unwrap_err(),
            ParseError::MissingField("request")
        );
    }

    #[test]
    fn numeric_statuses_read_as_their_text_would() {
        let numbers =
            [0.0, -0.0, 99.0, 100.0, 200.0, 200.5, 304.0, 404.0, 599.0, 599.5, 600.0, 1e3, -200.0, 2e2, 1e20];
        for n in numbers {
            assert_eq!(status_number(n), parse_status(format!("{n}").as_bytes()), "{n}");
        }
    }

    #[test]
    fn a_name_in_two_roles_fills_the_first_on_both_readers() {
        let fields: JsonFields = toml::from_str("uri = [\"u\"]\nhost = [\"u\", \"h\"]").expect("valid");
        let format = JsonFormat::new(&fields);
        for line in [&br#"{"u":"/z","h":"shop"}"#[..], br#"{"u":"/z","h":"shop","nested":{}}"#] {
            let r = format.parse(line).expect("parses");
            assert_eq!(r.path.as_ref(), b"/z");
            assert_eq!(r.host.as_deref(), Some(&b"shop"[..]));
        }
    }
}
