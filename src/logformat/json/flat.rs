//! One pass over a JSON access-log line: an object whose fields are read when they are
//! strings, numbers, `true`, `false` or `null`, and skipped (checked, not decoded) otherwise.
//!
//! serde_json spent about 10,900 instructions on a 340-byte nginx JSON line: it checked each
//! string's UTF-8 on its own, allocated each key, and the visitor compared every key with
//! every configured name. This reader checks the line's UTF-8 once, finds where strings end
//! eight bytes at a time, and looks keys up in a table. It declines (`None`) every line it
//! could not read exactly as serde_json does (an object, array or `\u`-escaped value in a
//! field it needs, escaped names, numbers outside the range it converts exactly, nesting
//! deeper than 64 levels, anything malformed), and those lines go to serde_json, which stays
//! the judge of what is valid. Fields named by a dotted path (`request.uri`, as Caddy and
//! Cloud Logging nest them) are read in the same pass, descending into the objects on the
//! path.
//!
//! Not nom: what makes this reader fast is finding a string's end eight bytes at a time and
//! looking keys up by length and last byte, which nom's byte combinators would only wrap;
//! on the text formats, where nom did the same work as the scanners, it was 6% to 18% slower
//! (see `clf.rs` and `compiled.rs`). The grammar itself is serde_json's, which every line
//! this reader declines goes to, and which the fuzz target `json_lines` holds it to.

use std::borrow::Cow;

use super::{Fields, Names, Scalar};
use crate::logformat::scan::find_json_special;

/// Fills `found` (empty) with the role fields of line `s`; `None` where serde_json must read
/// the line, `found` then holding any part of them.
pub(super) fn read<'a>(s: &'a [u8], names: &Names, found: &mut Fields<'a>) -> Option<()> {
    let text = std::str::from_utf8(s).ok()?;
    let at = skip_space(s, 0);
    if s.get(at) != Some(&b'{') {
        return None;
    }
    let end = object(text, at, &[], names, found)?;
    (skip_space(s, end) == s.len()).then_some(())
}

/// The longest dotted path of a nested field this reader looks up; a line with a longer one
/// in a wanted object goes to serde_json.
const LONGEST_PATH: usize = 128;

/// Reads the object whose `{` is at `at` and returns where it ends. `parent` is its dotted
/// path (empty for the line itself): `request.uri` is the `uri` of `{"request":{...}}`. An
/// object that holds a wanted field is read in turn; any other nested value is skipped.
fn object<'a>(
    text: &'a str,
    at: usize,
    parent: &[u8],
    names: &Names,
    found: &mut Fields<'a>,
) -> Option<usize> {
    let s = text.as_bytes();
    let mut at = skip_space(s, at + 1);
    if s.get(at) == Some(&b'}') {
        return Some(at + 1);
    }
    let mut joined = [0u8; LONGEST_PATH];
    loop {
        if s.get(at) != Some(&b'"') {
            return None;
        }
        let (end, escaped) = string_end(s, at + 1, false)?;
        if escaped {
            return None;
        }
        let key = &s[at + 1..end];
        let path = if parent.is_empty() {
            key
        } else {
            let len = parent.len() + 1 + key.len();
            let path = joined.get_mut(..len)?;
            path[..parent.len()].copy_from_slice(parent);
            path[parent.len()] = b'.';
            path[parent.len() + 1..].copy_from_slice(key);
            &joined[..len]
        };
        at = skip_space(s, end + 1);
        if s.get(at) != Some(&b':') {
            return None;
        }
        at = skip_space(s, at + 1);
        // As serde_json's reader: a listed name is read where it ranks first so far, and
        // skipped otherwise; a name that is not listed but holds a listed one is read into.
        at = match names.get(path) {
            Some(name) if found.wants(name) => {
                let (value, end) = value(text, at, true)?;
                found.keep(name, value);
                end
            }
            None if names.is_parent(path) => match s.get(at) {
                Some(b'{') => object(text, at, path, names, found)?,
                // serde_json reads any other value there as it reads a wanted one.
                _ => return None,
            },
            _ => value(text, at, false)?.1,
        };
        at = skip_space(s, at);
        match s.get(at) {
            Some(b',') => at = skip_space(s, at + 1),
            Some(b'}') => return Some(at + 1),
            _ => return None,
        }
    }
}

/// JSON's white space.
fn skip_space(s: &[u8], mut at: usize) -> usize {
    while matches!(s.get(at), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        at += 1;
    }
    at
}

/// The value at `at` and where it ends. Only a `wanted` value is converted; any other comes
/// back as `Null`, checked as serde_json checks a value it skips, but not decoded.
fn value(text: &str, at: usize, wanted: bool) -> Option<(Scalar<'_>, usize)> {
    let s = text.as_bytes();
    let literal =
        |word: &str| s[at..].starts_with(word.as_bytes()).then_some((Scalar::Null, at + word.len()));
    match *s.get(at)? {
        b'{' | b'[' if !wanted => Some((Scalar::Null, nested_end(text, at)?)),
        b'"' => {
            let (end, escaped) = string_end(s, at + 1, !wanted)?;
            let raw = &text[at + 1..end];
            let value = match (wanted, escaped) {
                (false, _) => Scalar::Null,
                (true, false) => Scalar::Str(Cow::Borrowed(raw)),
                (true, true) => Scalar::Str(Cow::Owned(unescape(raw))),
            };
            Some((value, end + 1))
        }
        b'-' | b'0'..=b'9' => {
            let (len, exact) = number(&s[at..])?;
            let value = if wanted { Scalar::Num(exact?) } else { Scalar::Null };
            Some((value, at + len))
        }
        b't' | b'f' => {
            let (truth, word) = if s[at] == b't' { (true, "true") } else { (false, "false") };
            let (_, end) = literal(word)?;
            Some((if wanted { Scalar::Bool(truth) } else { Scalar::Null }, end))
        }
        b'n' => literal("null"),
        _ => None,
    }
}

/// Where the string whose text starts at `at` ends (its closing quote), and whether it holds
/// escapes. `None` for a control byte, an invalid escape, or no end; for a `\u` escape too,
/// unless the string is only `skipped` (then, as serde_json does, four hex digits must follow).
fn string_end(s: &[u8], mut at: usize, skipped: bool) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        at += find_json_special(s.get(at..)?)?;
        match (s[at], s.get(at + 1)) {
            (b'"', _) => return Some((at, escaped)),
            (b'\\', Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't')) => {
                escaped = true;
                at += 2;
            }
            (b'\\', Some(b'u')) if skipped => {
                escaped = true;
                at = unicode_escape_end(s, at)?;
            }
            _ => return None,
        }
    }
}

/// Where the `\u` escape at `at` ends: four hex digits must follow it.
#[cold]
fn unicode_escape_end(s: &[u8], at: usize) -> Option<usize> {
    s.get(at + 2..at + 6).is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)).then_some(at + 6)
}

/// Where the object or array at `at` ends, checked as serde_json checks a value it skips.
/// The open containers are kept as bits (set for an object), so nesting deeper than 64
/// levels is declined.
fn nested_end(text: &str, mut at: usize) -> Option<usize> {
    let s = text.as_bytes();
    let (mut objects, mut depth) = (0u64, 0u32);
    loop {
        // `at` is where a value starts.
        match *s.get(at)? {
            open @ (b'{' | b'[') => {
                if depth == 64 {
                    return None;
                }
                objects = objects << 1 | u64::from(open == b'{');
                depth += 1;
                at = skip_space(s, at + 1);
                // An empty one goes straight to its closing bracket.
                if !matches!(s.get(at), Some(b'}' | b']')) {
                    if open == b'{' {
                        at = member_value(s, at)?;
                    }
                    continue;
                }
            }
            // A scalar, skipped as at the top level.
            _ => at = value(text, at, false)?.1,
        }
        // After a value: a comma and the next member or element, or closing brackets.
        loop {
            at = skip_space(s, at);
            let object = objects & 1 == 1;
            match s.get(at)? {
                b',' => {
                    at = skip_space(s, at + 1);
                    if object {
                        at = member_value(s, at)?;
                    }
                    break;
                }
                b'}' if object => {}
                b']' if !object => {}
                _ => return None,
            }
            at += 1;
            objects >>= 1;
            depth -= 1;
            if depth == 0 {
                return Some(at);
            }
        }
    }
}

/// Where the value of the object member whose name starts at `at` starts.
fn member_value(s: &[u8], at: usize) -> Option<usize> {
    if s.get(at) != Some(&b'"') {
        return None;
    }
    let at = skip_space(s, string_end(s, at + 1, true)?.0 + 1);
    (s.get(at) == Some(&b':')).then(|| skip_space(s, at + 1))
}

/// A string's text with its escapes (all checked by [`string_end`], none `\u`) decoded.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        out.push(match rest.as_bytes().get(at + 1) {
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(&other) => char::from(other), // `"`, `\` and `/` stand for themselves
            None => '\\',
        });
        rest = rest.get(at + 2..).unwrap_or_default();
    }
    out.push_str(rest);
    out
}

/// Powers of ten that a double holds exactly.
const EXACT_POWERS: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18,
    1e19, 1e20, 1e21, 1e22,
];

/// The length of the JSON number at the start of `s`, and its value where it is one that
/// serde_json (without `float_roundtrip`) converts by exact steps: integers of up to 18
/// digits, and up to 15 digits scaled by at most 10^22. There one rounding at most is made,
/// the same one serde_json makes. `None` if `s` does not start with a JSON number.
fn number(s: &[u8]) -> Option<(usize, Option<f64>)> {
    let digits =
        |from: usize| s.get(from..).map_or(0, |t| t.iter().take_while(|c| c.is_ascii_digit()).count());
    let negative = s.first() == Some(&b'-');
    let int_at = usize::from(negative);
    let int_len = digits(int_at);
    if int_len == 0 || (int_len > 1 && s[int_at] == b'0') {
        return None;
    }
    let mut end = int_at + int_len;
    let mut frac = &s[end..end];
    if s.get(end) == Some(&b'.') {
        let len = digits(end + 1);
        if len == 0 {
            return None;
        }
        frac = &s[end + 1..end + 1 + len];
        end += 1 + len;
    }
    let mut exponent = Some(0i32);
    let mut is_integer = frac.is_empty();
    if matches!(s.get(end), Some(b'e' | b'E')) {
        let signed = matches!(s.get(end + 1), Some(b'+' | b'-'));
        let at = end + 1 + usize::from(signed);
        let len = digits(at);
        if len == 0 {
            return None;
        }
        let value = (len <= 4).then(|| s[at..at + len].iter().fold(0, |n, c| n * 10 + i32::from(c - b'0')));
        exponent = value.map(|e| if s[end + 1] == b'-' { -e } else { e });
        is_integer = false;
        end = at + len;
    }
    let int = &s[int_at..int_at + int_len];
    let all_digits = int.iter().chain(frac);
    let significand = || all_digits.clone().fold(0u64, |n, c| n * 10 + u64::from(c - b'0'));
    let magnitude = if is_integer {
        (int_len <= 18).then(|| significand() as f64)
    } else {
        let scale = exponent.and_then(|e| e.checked_sub(i32::try_from(frac.len()).ok()?));
        match scale {
            Some(e) if int_len + frac.len() <= 15 && e.unsigned_abs() <= 22 => {
                let power = EXACT_POWERS[e.unsigned_abs() as usize];
                Some(if e >= 0 { significand() as f64 * power } else { significand() as f64 / power })
            }
            _ => None,
        }
    };
    Some((end, magnitude.map(|m| if negative { -m } else { m })))
}

#[cfg(test)]
mod tests {
    use super::super::{JsonFields, JsonFormat};
    use super::*;
    use proptest::prelude::*;

    fn names() -> Names {
        Names::new(&JsonFields::default())
    }

    #[test]
    fn reads_an_nginx_line_borrowing_its_values() {
        let line = br#"{"body_bytes_sent":"1200","http_user_agent":"a \"quoted\" \\ bot","request":"GET /x?a=1 HTTP/1.1","status":"200","time_local":"01/Jan/2026:00:00:00 +0000"}"#;
        let mut fields = Fields::default();
        read(line, &names(), &mut fields).expect("a flat object");
        let request = fields.found[1].as_ref().map(|(_, v)| v);
        assert_eq!(request, Some(&Scalar::Str(Cow::Borrowed("GET /x?a=1 HTTP/1.1"))));
        assert!(matches!(&fields.found[1], Some((_, Scalar::Str(Cow::Borrowed(_))))));
    }

    #[test]
    fn decodes_escapes_in_wanted_values() {
        let line = br#"{"uri":"\/a\\b\"c\td", "status" : 404 }"#;
        let mut fields = Fields::default();
        read(line, &names(), &mut fields).expect("a flat object");
        assert_eq!(fields.found[3], Some((1, Scalar::Str(Cow::Owned("/a\\b\"c\td".into())))));
        assert_eq!(fields.found[4], Some((0, Scalar::Num(404.0))));
    }

    #[test]
    fn declines_what_serde_json_must_judge() {
        for line in [
            &br#"{"request":{"b":1}}"#[..],                  // a needed field nested
            br#"{"request":"GET /\u00e9 HTTP/1.1"}"#,        // \u escape in a needed field
            br#"{"a":"\u00zz","request":"GET / HTTP/1.1"}"#, // a bad \u escape
            br#"{"a":[1,],"request":"GET / HTTP/1.1"}"#,     // a trailing comma, nested
            br#"{"a":{"b" 1}}"#,                             // no colon, nested
            br#"{"a":[1},"request":"GET / HTTP/1.1"}"#,      // mismatched brackets
            br#"{"a":{"b":1],"request":"GET / HTTP/1.1"}"#,  // and the other way
            br#"{"req\/uest":"GET / HTTP/1.1"}"#,            // escaped key
            br#"{"ts":1.5e300,"request":"GET / HTTP/1.1"}"#, // beyond exact conversion
            br#"{"ts":01}"#,                                 // leading zero
            br#"{"a":1,}"#,                                  // trailing comma
            b"{\"a\":\"x\ty\"}",                             // control byte in a string
            b"{\"a\":\"\xff\"}",                             // not UTF-8
            br#"{"a":1} x"#,                                 // trailing text
            br#"[1]"#,
        ] {
            let mut fields = Fields::default();
            assert!(read(line, &names(), &mut fields).is_none(), "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn skips_nested_and_escaped_fields_it_does_not_need() {
        let line = br#"{"a":{"b":[1,{"c":"\u00e9"},[],{}],"d":null},"e":[true,-1.5e3],"f":"\u00e9","request":"GET /x HTTP/1.1"}"#;
        let mut fields = Fields::default();
        read(line, &names(), &mut fields).expect("read, not declined");
        assert_eq!(fields.found[1], Some((0, Scalar::Str(Cow::Borrowed("GET /x HTTP/1.1")))));
        let deep = format!("{{\"a\":{}{},\"request\":\"GET / HTTP/1.1\"}}", "[".repeat(65), "]".repeat(65));
        assert!(read(deep.as_bytes(), &names(), &mut Fields::default()).is_none(), "deeper than 64");
        let deep = format!("{{\"a\":{}{},\"request\":\"GET / HTTP/1.1\"}}", "[".repeat(64), "]".repeat(64));
        assert!(read(deep.as_bytes(), &names(), &mut Fields::default()).is_some(), "64 levels");
    }

    #[test]
    fn converts_numbers_as_serde_json_does() {
        for text in
            ["0", "-0", "7", "-12", "0.004", "1.5", "-2.25e3", "1E-5", "1700000000.123", "123456789012345678"]
        {
            let ours =
                number(text.as_bytes()).and_then(|(len, v)| (len == text.len()).then_some(v).flatten());
            let theirs: f64 = serde_json::from_str(text).expect("a number");
            assert_eq!(ours.map(f64::to_bits), Some(theirs.to_bits()), "{text}");
        }
    }

    #[test]
    fn reads_every_generated_line_itself() {
        let rule = crate::rules::Rule::new("url", "GET /{path:path}", "url:/{path}").expect("valid");
        let rules = crate::rules::RuleSet::new(vec![rule]);
        let opts = crate::generate::GenerateOptions {
            lines: 2_000,
            format: crate::logformat::FormatSpec::Json,
            ..Default::default()
        };
        let mut log = Vec::new();
        crate::generate::generate(&rules, &opts, &mut log).expect("in memory");
        let format = JsonFormat::new(&JsonFields::default());
        for line in log.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            let mut ours = Fields::default();
            assert!(read(line, &format.names, &mut ours).is_some(), "{}", String::from_utf8_lossy(line));
            assert_eq!(Ok(ours), format.read_with_serde(line));
        }
    }

    /// Lines in the shape of JSON logs, built from pieces that exercise every branch of the
    /// reader: wanted and unwanted names, duplicates, escapes, numbers of every form,
    /// literals, nesting, stray bytes and white space.
    fn json_line() -> impl Strategy<Value = Vec<u8>> {
        let name = prop_oneof![
            Just("request"),
            Just("uri"),
            Just("path"),
            Just("status"),
            Just("status_code"),
            Just("ts"),
            Just("time_local"),
            Just("bytes"),
            Just("request_time"),
            Just("cache"),
            Just("host"),
            Just("remote_addr"),
            Just("other"),
            Just("re\\u0071uest"),
        ];
        let values = prop_oneof![
            Just("\"GET /a?b=1 HTTP/1.1\"".to_string()),
            Just("\"/x\\/y\\\"z\"".to_string()),
            Just("\"17/May/2015:10:05:03 +0000\"".to_string()),
            Just("\"2026-01-01T00:00:00Z\"".to_string()),
            Just("\"HIT\"".to_string()),
            Just("\"-\"".to_string()),
            Just("\"\\u00e9\"".to_string()),
            Just("true".to_string()),
            Just("null".to_string()),
            Just("{\"a\":[1,2]}".to_string()),
            Just("[]".to_string()),
            Just("[1}".to_string()),
            Just("{\"b\":2]".to_string()),
            Just("{}".to_string()),
            Just("[{\"x\":\"\\u00e9\"}, -1.5e3 ,true,null,[[]]]".to_string()),
            Just("{\"k\":{\"k2\":[[\"\\\"\"]]} , \"n\" : 0}".to_string()),
            Just("{\"uri\":\"/n\",\"method\":\"PUT\", \"host\":\"in\"}".to_string()),
            Just("{\"b\":{\"c\":\"deep\"},\"b\":{\"c\":\"again\"}}".to_string()),
            Just("{\"uri\":{\"x\":1},\"host\":7}".to_string()),
            "-?(0|[1-9][0-9]{0,19})(\\.[0-9]{1,17})?([eE][+-]?[0-9]{1,4})?",
            "\"[ -~]{0,12}\"",
        ];
        let field = (name, prop_oneof![Just(""), Just(" ")], values)
            .prop_map(|(n, sp, v)| format!("\"{n}\":{sp}{v}"));
        (proptest::collection::vec(field, 0..8), prop_oneof![Just(""), Just(" "), Just(",")])
            .prop_map(|(fields, end)| format!("{{{}}}{end}", fields.join(",")).into_bytes())
    }

    /// Names of nested fields, some also listed at the top level, one two levels down.
    fn nested_fields() -> JsonFields {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        JsonFields {
            request: Vec::new(),
            uri: names(&["request.uri", "uri"]),
            method: names(&["other.method", "request.method"]),
            host: names(&["host", "request.host", "other.b.c"]),
            ..JsonFields::default()
        }
    }

    #[test]
    fn reads_dotted_names_in_nested_objects_itself() {
        let format = JsonFormat::new(&nested_fields());
        for line in [
            &br#"{"request":{"uri":"/n","method":"PUT","headers":{"a":["b"]}},"status":200}"#[..],
            br#"{"other":{"b":{"c":"deep"}},"uri":"/x"}"#,
            br#"{"other":{},"uri":"/top"}"#,
            br#"{"request":{},"uri":"/top","request":{"uri":"/later"}}"#,
        ] {
            let mut ours = Fields::default();
            assert!(read(line, &format.names, &mut ours).is_some(), "{}", String::from_utf8_lossy(line));
            assert_eq!(Ok(ours), format.read_with_serde(line), "{}", String::from_utf8_lossy(line));
        }
        let long = format!(r#"{{"other":{{"{}":1}},"uri":"/x"}}"#, "k".repeat(LONGEST_PATH));
        assert!(read(long.as_bytes(), &format.names, &mut Fields::default()).is_none(), "a long path");
        let text = br#"{"request":"GET / HTTP/1.1","uri":"/x"}"#;
        assert!(
            read(text, &format.names, &mut Fields::default()).is_none(),
            "text where an object holds names"
        );
    }

    /// A line with one byte changed, so near-valid lines get tested too.
    fn mutated(line: Vec<u8>, at: usize, byte: u8) -> Vec<u8> {
        let mut line = line;
        if !line.is_empty() {
            let at = at % line.len();
            line[at] = byte;
        }
        line
    }

    proptest! {
        #[test]
        fn reads_what_it_accepts_as_serde_json_does(
            line in prop_oneof![json_line(), (json_line(), any::<usize>(), any::<u8>()).prop_map(|(l, a, b)| mutated(l, a, b))]
        ) {
            let format = JsonFormat::new(&JsonFields::default());
            let mut ours = Fields::default();
            if read(&line, &format.names, &mut ours).is_some() {
                prop_assert_eq!(Ok(ours), format.read_with_serde(&line));
            }
        }

        #[test]
        fn reads_nested_fields_it_accepts_as_serde_json_does(
            line in prop_oneof![json_line(), (json_line(), any::<usize>(), any::<u8>()).prop_map(|(l, a, b)| mutated(l, a, b))]
        ) {
            let format = JsonFormat::new(&nested_fields());
            let mut ours = Fields::default();
            if read(&line, &format.names, &mut ours).is_some() {
                prop_assert_eq!(Ok(ours), format.read_with_serde(&line));
            }
        }

        #[test]
        fn reads_arbitrary_bytes_as_serde_json_does_or_declines(
            line in proptest::collection::vec(prop_oneof![Just(b'{'), Just(b'"'), Just(b':'), Just(b'}'), any::<u8>()], 0..200)
        ) {
            let format = JsonFormat::new(&JsonFields::default());
            let mut ours = Fields::default();
            if read(&line, &format.names, &mut ours).is_some() {
                prop_assert_eq!(Ok(ours), format.read_with_serde(&line));
            }
        }
    }
}
