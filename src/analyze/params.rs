//! A key's captured parameters: kept raw for every key a chunk sees (a plain copy), written
//! as a JSON object only for keys new to the whole run.

use std::fmt::Write as _;

/// Appends parameter values as `(u32 length | u32::MAX for absent, bytes)*`: a plain copy,
/// cheap enough to do for every key a chunk sees.
#[inline]
pub(super) fn write_raw_params(out: &mut Vec<u8>, values: &[Option<&[u8]>]) {
    for v in values {
        match v {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
}

/// Decodes [`write_raw_params`] output, value by value (a vector of them per new key was an
/// allocation per key).
pub(super) fn read_raw_params(mut raw: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    std::iter::from_fn(move || {
        let (len, rest) = raw.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len);
        if len == u32::MAX {
            raw = rest;
            Some(None)
        } else {
            let (v, rest) = rest.split_at((len as usize).min(rest.len()));
            raw = rest;
            Some(Some(v))
        }
    })
}

/// Appends the parameters as a JSON object (`{"id":"42"}`), absent ones left out. It is
/// written as text, so that only the raw values need a UTF-8 check: checking the names and
/// then the whole object again took half the merge's checks.
pub(super) fn write_params_json<'v>(
    out: &mut String,
    names: &[String],
    values: impl IntoIterator<Item = Option<&'v [u8]>>,
) {
    out.push('{');
    let mut first = true;
    for (name, value) in names.iter().zip(values) {
        let Some(v) = value else { continue };
        if !first {
            out.push(',');
        }
        first = false;
        json_string(out, name);
        out.push(':');
        match std::str::from_utf8(v) {
            Ok(text) => json_string(out, text),
            Err(_) => json_string(out, &String::from_utf8_lossy(v)),
        }
    }
    out.push('}');
}

/// Appends `text` as a JSON string. Runs of plain characters are found word by word and
/// copied whole: byte by byte, the search was most of the work on new keys' parameters.
pub(super) fn json_string(out: &mut String, mut text: &str) {
    out.push('"');
    // Every byte that needs escaping is ASCII, so each one is a character boundary.
    while let Some(i) = crate::logformat::scan::find_json_special(text.as_bytes()) {
        out.push_str(&text[..i]);
        match text.as_bytes()[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        text = &text[i + 1..];
    }
    out.push_str(text);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn json_strings_read_back_as_written(text in "(\\PC|[\"\\\\\\x00-\\x1f])*") {
            let mut out = String::new();
            json_string(&mut out, &text);
            let back: String = serde_json::from_str(&out).expect("valid JSON");
            proptest::prop_assert_eq!(back, text);
        }
    }

    #[test]
    fn params_are_json() {
        let mut out = String::new();
        let names = ["a".to_string(), "b".to_string(), "c".to_string(), "d".to_string()];
        let values: [Option<&[u8]>; 4] =
            [Some(br#"x"q\"#), None, Some(b"\xff\x01"), Some("naïve\t€\u{1f}z".as_bytes())];
        write_params_json(&mut out, &names, values);
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v, serde_json::json!({"a": r#"x"q\"#, "c": "\u{fffd}\u{1}", "d": "naïve\t€\u{1f}z"}));
    }

    #[test]
    fn raw_params_round_trip() {
        let values: [Option<&[u8]>; 4] = [Some(b"42"), None, Some(b""), Some(b"x y")];
        let mut raw = Vec::new();
        write_raw_params(&mut raw, &values);
        assert_eq!(read_raw_params(&raw).collect::<Vec<_>>(), values.to_vec());
    }
}
