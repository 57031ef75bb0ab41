//! Key templates: `product:{id}` over a rule's captures and kept query parameters.

use std::fmt::Write as _;

/// A template that cannot be used, with the byte offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// Byte offset in the template string.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Param(usize),
}

/// A compiled key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    source: String,
    parts: Vec<Part>,
}

/// Why a rendered key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UnusableKey {
    /// A captured value is not UTF-8.
    #[error("a captured value is not UTF-8, so it cannot be part of a key")]
    NonUtf8,
    /// A captured value holds a control character (ESC, BEL, NUL, ...), which no cache key
    /// should carry and no terminal should be sent raw.
    #[error("a captured value holds a control character, so it cannot be part of a key")]
    ControlChar,
}

impl UnusableKey {
    /// The reason a line is rejected for it.
    pub fn reason(self) -> &'static str {
        match self {
            UnusableKey::NonUtf8 => "non_utf8_key",
            UnusableKey::ControlChar => "control_char",
        }
    }
}

/// Checks a rendered key: UTF-8, without control characters.
fn check(key: &[u8]) -> Result<(), UnusableKey> {
    // Keys are nearly always printable ASCII: the full UTF-8 check runs only for the others
    // (measured: that check was a fortieth of the analyzer's instructions).
    if key.iter().all(|b| (0x20..0x7f).contains(b)) {
        return Ok(());
    }
    let text = std::str::from_utf8(key).map_err(|_| UnusableKey::NonUtf8)?;
    if text.chars().any(char::is_control) { Err(UnusableKey::ControlChar) } else { Ok(()) }
}

impl KeyTemplate {
    /// Compiles `src` against the parameter names the rule provides. `{{` and `}}` are literal
    /// braces.
    pub fn parse(src: &str, params: &[String]) -> Result<Self, TemplateError> {
        let err = |offset, message| Err(TemplateError { offset, message });
        if src.trim().is_empty() {
            return err(0, "the key template is empty".into());
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut chars = src.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '{' if chars.peek().map(|p| p.1) == Some('{') => {
                    chars.next();
                    text.push('{');
                }
                '}' if chars.peek().map(|p| p.1) == Some('}') => {
                    chars.next();
                    text.push('}');
                }
                '{' => {
                    let Some(close) = src[i..].find('}') else {
                        return err(
                            i,
                            "`{` is not closed: write `{name}`, or `{{` for a literal brace".into(),
                        );
                    };
                    let name = &src[i + 1..i + close];
                    let Some(idx) = params.iter().position(|p| p == name) else {
                        let known = if params.is_empty() {
                            "the pattern captures nothing".to_string()
                        } else {
                            format!(
                                "known: {}",
                                params.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", ")
                            )
                        };
                        return err(
                            i,
                            format!(
                                "`{{{name}}}` is not a capture of the pattern or a kept query parameter ({known})"
                            ),
                        );
                    };
                    if !text.is_empty() {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                    }
                    parts.push(Part::Param(idx));
                    while chars.peek().is_some_and(|(j, _)| *j <= i + close) {
                        chars.next();
                    }
                }
                '}' => return err(i, "unbalanced `}`: write `}}` for a literal brace".into()),
                c => text.push(c),
            }
        }
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(KeyTemplate { source: src.to_string(), parts })
    }

    /// Renders the key into `out` (cleared first) and returns it as text. Missing values (an
    /// absent query parameter) render as nothing.
    pub fn render<'o>(&self, values: &[Option<&[u8]>], out: &'o mut Vec<u8>) -> Result<&'o str, UnusableKey> {
        self.fill(values, out);
        // One check of the whole key: per value, the checks' set-up cost more than the
        // short values themselves.
        check(out)?;
        std::str::from_utf8(out).map_err(|_| UnusableKey::NonUtf8)
    }

    /// Renders the key into `out` (cleared first), as [`KeyTemplate::render`] does, for a
    /// caller that needs its bytes only.
    pub fn render_bytes(&self, values: &[Option<&[u8]>], out: &mut Vec<u8>) -> Result<(), UnusableKey> {
        self.fill(values, out);
        check(out)
    }

    fn fill(&self, values: &[Option<&[u8]>], out: &mut Vec<u8>) {
        out.clear();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                Part::Param(i) => {
                    if let Some(v) = values.get(*i).copied().flatten() {
                        out.extend_from_slice(v);
                    }
                }
            }
        }
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Renders with string values (for the log generator's ground truth).
    pub fn render_str(&self, values: &[&str]) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Param(i) => {
                    let _ = write!(out, "{}", values.get(*i).copied().unwrap_or(""));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Vec<String> {
        vec!["id".into(), "page".into()]
    }

    #[test]
    fn renders() {
        let t = KeyTemplate::parse("product:{id}:p{page}:{{x}}", &params()).expect("valid");
        let mut out = Vec::new();
        assert_eq!(t.render(&[Some(b"42"), None], &mut out), Ok("product:42:p:{x}"));
        assert_eq!(t.render(&[Some(b"\xff"), None], &mut out), Err(UnusableKey::NonUtf8));
        assert_eq!(t.render_bytes(&[Some(b"\xff"), None], &mut out), Err(UnusableKey::NonUtf8));
        assert_eq!(t.render_bytes(&[Some("é".as_bytes()), None], &mut out), Ok(()));
        assert_eq!(out, "product:é:p:{x}".as_bytes());
        for control in [&b"a\x1b[31m"[..], b"\x07", b"\0", b"\x7f", "\u{9b}".as_bytes()] {
            assert_eq!(t.render_bytes(&[Some(control), None], &mut out), Err(UnusableKey::ControlChar));
            assert_eq!(t.render(&[Some(control), None], &mut out), Err(UnusableKey::ControlChar));
        }
        assert_eq!(t.render_str(&["1", "2"]), "product:1:p2:{x}");
    }

    #[test]
    fn unknown_names_are_reported_with_offset() {
        let e = KeyTemplate::parse("product:{sku}", &params()).unwrap_err();
        assert_eq!(e.offset, 8);
        assert!(e.message.contains("`id`, `page`"), "{}", e.message);
        assert!(KeyTemplate::parse("a{id", &params()).is_err());
        assert!(KeyTemplate::parse("a}", &params()).is_err());
        assert!(KeyTemplate::parse(" ", &params()).is_err());
    }
}
