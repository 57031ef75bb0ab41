//! Text from logs made safe to show: a control byte (ESC, BEL, NUL, ...) from a log line
//! must never reach a terminal raw, where it could move the cursor, recolour the screen or
//! hide what follows. Every human output that shows text read from a log (rejected-line
//! samples, unmatched paths, keys) goes through here.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with each control character written as an escape (`\x1b`, `\u{9b}`, `\n`); nothing
/// else changes.
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Bytes from a log as printable text: invalid UTF-8 as `�`, control characters escaped.
pub fn printable_bytes(bytes: &[u8]) -> String {
    printable(&String::from_utf8_lossy(bytes)).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_nothing_else_changes() {
        assert!(matches!(printable("/a b/é?x=1"), Cow::Borrowed("/a b/é?x=1")));
        assert_eq!(printable("/\x1b[2J\x07x\0"), "/\\x1b[2J\\x07x\\x00");
        assert_eq!(printable("a\tb\r\n\u{7f}\u{9b}"), "a\\tb\\r\\n\\x7f\\u{9b}");
        assert_eq!(printable_bytes(b"/p\xff\x1b"), "/p\u{fffd}\\x1b");
        for c in (0u32..0x110000).filter_map(char::from_u32) {
            let shown = printable(c.encode_utf8(&mut [0; 4])).into_owned();
            assert!(!shown.chars().any(char::is_control), "{c:?} shown as {shown:?}");
        }
    }
}
