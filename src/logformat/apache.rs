//! Apache `LogFormat` strings (mod_log_config), pasted as the server is configured, compiled
//! into the same line parser as nginx `log_format` strings.
//!
//! Each directive becomes a field of the compiled format: `%h` the client, `%t` the bracketed
//! time, `%r` the request line, `%>s` the status, `%D` the latency, `%{X-Cache}o` the cache
//! status, and so on; directives preheat does not use (`%l`, `%{Referer}i`, ...) are read
//! and skipped. Apache writes `"` and `\` inside values as `\"` and `\\`, which quoted fields
//! already read. `%U%q`, the path and its `?query` with nothing between, read as one target.

use super::compiled::{CompiledFormat, FormatStringError, Item, Var};

/// Apache's `vhost_combined`, as its default configuration names it.
pub const VHOST_COMBINED: &str = r#"%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i""#;

/// Response headers that carry a cache's verdict (`HIT`, `MISS`, ...), by lower-case name.
const CACHE_HEADERS: [&str; 8] = [
    "x-cache",
    "x-cache-status",
    "x-cache-lookup",
    "x-proxy-cache",
    "cf-cache-status",
    "x-varnish-cache",
    "x-fastcgi-cache",
    "x-drupal-cache",
];

/// Compiles an Apache `LogFormat` string. The escapes a config file's quoted string holds
/// (`\"`, `\\`, `\t`, `\n`) may be pasted as they are.
pub fn compile(source: &str) -> Result<CompiledFormat, FormatStringError> {
    CompiledFormat::from_items(items(&unescape(source))?, false)
}

/// `\"` → `"` and the like: what Apache's config reader does to the string.
fn unescape(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let mut chars = source.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// The format as literal text and fields.
fn items(format: &str) -> Result<Vec<Item>, FormatStringError> {
    let mut items: Vec<Item> = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(at) = rest.find('%') {
        text.push_str(&rest[..at]);
        let start = format.len() - rest.len() + at;
        let (directive, after) = directive(&rest[at..], start)?;
        rest = after;
        let name = &format[start..format.len() - rest.len()];
        let field = |var: Var, items: &mut Vec<Item>, text: &mut String| {
            if !text.is_empty() {
                items.push(Item::Text(std::mem::take(text).into_bytes()));
            }
            items.push(Item::Field { var, name: name.to_string() });
        };
        match directive {
            Directive::Percent => text.push('%'),
            Directive::Field(Var::QueryMark)
                if text.is_empty() && matches!(items.last(), Some(Item::Field { var: Var::Uri, .. })) =>
            {
                // `%U%q`: the path and its `?query`, one request target.
                if let Some(Item::Field { var, name: uri }) = items.last_mut() {
                    *var = Var::RequestUri;
                    uri.push_str(name);
                }
            }
            Directive::Field(var) => field(var, &mut items, &mut text),
            Directive::BracketedTime => {
                text.push('[');
                field(Var::TimeLocal, &mut items, &mut text);
                text.push(']');
            }
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        items.push(Item::Text(text.into_bytes()));
    }
    Ok(items)
}

/// What one `%` directive stands for.
enum Directive {
    /// `%%`: a literal percent sign.
    Percent,
    /// `%t`: `[`, the CLF time, `]`.
    BracketedTime,
    /// A field.
    Field(Var),
}

/// Reads the directive at the start of `s` (which begins with `%`, at byte `at` of the
/// format): `%` [`!`][status codes][`<` or `>`][`{param}`] letter, or `^ti` / `^to`.
fn directive(s: &str, at: usize) -> Result<(Directive, &str), FormatStringError> {
    let mut rest = &s[1..];
    // Conditions (`%400,501{Referer}i`, `%!200i`) and the original/final request choice
    // (`%<s`, `%>s`) change which requests log a value, not what the value is.
    rest = rest.trim_start_matches(|c: char| matches!(c, '!' | '<' | '>' | ',') || c.is_ascii_digit());
    let mut param = None;
    if let Some(inner) = rest.strip_prefix('{') {
        let end = inner.find('}').ok_or(FormatStringError::Unclosed(at))?;
        param = Some(&inner[..end]);
        rest = &inner[end + 1..];
    }
    if let Some(after) = rest.strip_prefix("^ti").or_else(|| rest.strip_prefix("^to")) {
        return Ok((Directive::Field(other("trailer")), after));
    }
    let letter = rest.chars().next().ok_or(FormatStringError::BadDirective(s.to_string()))?;
    let after = &rest[letter.len_utf8()..];
    let whole = &s[..s.len() - after.len()];
    let unknown = || FormatStringError::BadDirective(whole.to_string());
    let directive = match (letter, param) {
        ('%', None) => Directive::Percent,
        ('t', None) => Directive::BracketedTime,
        ('t', Some(p)) => Directive::Field(time(p)),
        ('h' | 'a', _) => Directive::Field(Var::RemoteAddr),
        ('r', None) => Directive::Field(Var::Request),
        ('m', None) => Directive::Field(Var::RequestMethod),
        ('U', None) => Directive::Field(Var::Uri),
        ('q', None) => Directive::Field(Var::QueryMark),
        ('s', None) => Directive::Field(Var::Status),
        ('b' | 'B', None) => Directive::Field(Var::BodyBytesSent),
        ('O', None) => Directive::Field(Var::BytesSent),
        ('D', None) => Directive::Field(Var::LatencyMicros),
        ('T', None) => Directive::Field(Var::RequestTime),
        ('T', Some(unit)) => Directive::Field(match unit {
            "s" => Var::RequestTime,
            "ms" => Var::LatencyMillis,
            "us" => Var::LatencyMicros,
            _ => return Err(FormatStringError::BadDirective(whole.to_string())),
        }),
        ('v' | 'V', None) => Directive::Field(Var::Host),
        ('i', Some(header)) => Directive::Field(match header.to_ascii_lowercase().as_str() {
            "host" => Var::Host,
            "x-forwarded-for" => Var::ForwardedFor,
            _ => other(whole),
        }),
        ('o', Some(header)) if CACHE_HEADERS.contains(&header.to_ascii_lowercase().as_str()) => {
            Directive::Field(Var::UpstreamCacheStatus)
        }
        // Read and skipped: identity, user, protocol, ports, process, connection, cookies,
        // environment, notes, other headers, bytes received, file name, handler, log ids.
        ('l' | 'u' | 'H' | 'p' | 'P' | 'X' | 'k' | 'L' | 'I' | 'S' | 'f' | 'R', _) => {
            Directive::Field(other(whole))
        }
        ('o' | 'e' | 'C' | 'n', Some(_)) => Directive::Field(other(whole)),
        _ => return Err(unknown()),
    };
    Ok((directive, after))
}

/// A field read and skipped.
fn other(name: &str) -> Var {
    Var::Other(name.to_string())
}

/// `%{...}t`: Unix time in seconds, milliseconds or microseconds, or a strftime pattern. The
/// CLF and ISO 8601 patterns give times; other patterns (`%{%d/%b/%Y %T}t`, `msec_frac`)
/// are read and skipped, and such a log's requests have no time.
fn time(param: &str) -> Var {
    let pattern = param.strip_prefix("begin:").or_else(|| param.strip_prefix("end:")).unwrap_or(param);
    match pattern {
        "sec" => Var::Msec,
        "msec" => Var::EpochMillis,
        "usec" => Var::EpochMicros,
        "%d/%b/%Y:%H:%M:%S %z" => Var::TimeLocal,
        "%Y-%m-%dT%H:%M:%S%z" | "%FT%T%z" | "%Y-%m-%dT%H:%M:%S" | "%FT%T" => Var::TimeIso8601,
        _ => other(param),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logformat::{COMBINED, COMMON, CacheStatus, FormatSpec, JsonFields, LogFormat};

    fn parse(format: &str, line: &str) -> crate::logformat::Record<'static> {
        let f = compile(format).expect("compiles");
        let line: &'static [u8] = Box::leak(line.as_bytes().to_vec().into_boxed_slice());
        f.parse(line).unwrap_or_else(|e| panic!("{format}: {line:?}: {e}"))
    }

    #[test]
    fn the_documented_formats_read_their_lines() {
        // mod_log_config's examples: common, vhost common, combined, and the config's own.
        let common = r#"%h %l %u %t \"%r\" %>s %b"#;
        let r = parse(
            common,
            r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326"#,
        );
        assert_eq!((r.path.as_ref(), r.status, r.bytes), (&b"/apache_pb.gif"[..], Some(200), Some(2326)));
        assert_eq!(r.time_ms, Some(971_211_336_000));
        let vhost = r#"%v %h %l %u %t \"%r\" %>s %b"#;
        let r = parse(
            vhost,
            r#"shop.example 10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /p?x=1 HTTP/1.1" 304 -"#,
        );
        assert_eq!(
            (r.host.as_deref(), r.query.as_deref(), r.bytes),
            (Some(&b"shop.example"[..]), Some(&b"x=1"[..]), None)
        );
        let combined = r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i""#;
        let line = r#"10.0.0.1 - - [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.1" 200 5 "http://x/" "Mozilla \"q\" 5""#;
        let r = parse(combined, line);
        assert_eq!(r.path.as_ref(), b"/a");
        let r = parse(
            VHOST_COMBINED,
            r#"localhost:80 ::1 - - [01/Jul/2013:06:25:11 -0500] "OPTIONS * HTTP/1.0" 200 136 "-" "Apache""#,
        );
        assert_eq!((r.host.as_deref(), r.client.as_deref()), (Some(&b"localhost"[..]), Some(&b"::1"[..])));
    }

    #[test]
    fn latency_cache_status_split_requests_and_client_lists() {
        let f = r#"%{X-Forwarded-For}i %h [%{%Y-%m-%dT%H:%M:%S%z}t] "%m %U%q %H" %>s %B %D %{ms}T %{X-Cache}o %{Host}i"#;
        let r = parse(
            f,
            r#"198.51.100.7, 10.0.0.2 10.0.0.3 [2026-01-01T00:00:01+0000] "GET /p/1?a=b HTTP/1.1" 200 512 15000 15 HIT shop.example"#,
        );
        assert_eq!(r.client.as_deref(), Some(&b"198.51.100.7"[..]), "the first address of the list");
        assert_eq!(
            (r.method.as_ref(), r.path.as_ref(), r.query.as_deref()),
            (&b"GET"[..], &b"/p/1"[..], Some(&b"a=b"[..]))
        );
        assert_eq!(
            (r.latency_us, r.cache, r.time_ms),
            (Some(15_000), Some(CacheStatus::Hit), Some(1_767_225_601_000))
        );
        assert_eq!(r.host.as_deref(), Some(&b"shop.example"[..]));
        let r = parse("%h %{msec}t \"%r\" %s %{us}T", r#"10.0.0.1 1767225601123 "GET /x HTTP/1.1" 200 250"#);
        assert_eq!((r.time_ms, r.latency_us), (Some(1_767_225_601_123), Some(250)));
        let r = parse("%h %{usec}t \"%r\" %s %T", r#"10.0.0.1 1767225601123456 "GET /x HTTP/1.1" - 2"#);
        assert_eq!((r.time_ms, r.latency_us, r.status), (Some(1_767_225_601_123), Some(2_000_000), Some(0)));
        let r =
            parse("%h \"%r\" %s %{X-Cache}o", r#"10.0.0.1 "GET /x HTTP/1.1" 200 MISS from proxy.example"#);
        assert_eq!(r.cache, Some(CacheStatus::Miss), "a header's first word is its verdict");
    }

    #[test]
    fn the_built_in_formats_are_these_directives() {
        let line = br#"203.0.113.9 - alice [17/May/2015:10:05:03 +0000] "GET /api/products/42?page=2 HTTP/1.1" 200 2326 "http://example.com/" "Mozilla/5.0 (X11)""#;
        let json = JsonFields::default();
        let builtin = LogFormat::from_spec(&FormatSpec::Combined, &json).expect("built in");
        let apache = compile(r#"%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i""#).expect("compiles");
        assert_eq!(apache.parse(line), builtin.parse_line(line));
        let nginx = CompiledFormat::compile(COMBINED, false).expect("compiles");
        assert_eq!(apache.parse(line), nginx.parse(line));
        let common = CompiledFormat::compile(COMMON, false).expect("compiles");
        let line = br#"203.0.113.9 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 404 -"#;
        assert!(common.parse(line).is_ok());
        assert_eq!(compile(r#"%h %l %u %t "%r" %>s %b"#).expect("compiles").parse(line), common.parse(line));
    }

    #[test]
    fn unknown_and_unfinished_directives_are_named() {
        let e = compile("%h %Z \"%r\"").expect_err("unknown");
        assert_eq!(e.to_string(), "`%Z` is not an Apache `LogFormat` directive (mod_log_config lists them)");
        let e = compile("%h %{Referer \"%r\"").expect_err("unclosed");
        assert!(e.to_string().contains("byte 3"), "{e}");
        let e = compile("%h%l \"%r\"").expect_err("adjacent");
        assert_eq!(
            e.to_string(),
            "`%h` and `%l` follow each other with no text between them, so the parser cannot tell where one ends"
        );
        assert!(compile("%h \"%r\" %").is_err(), "a lone %");
        assert!(compile("%{xx}T \"%r\"").is_err(), "an unknown time unit");
    }
}
