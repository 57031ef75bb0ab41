//! Deserializes a config file reporting every structural problem, not only the first.
//!
//! serde stops at the first unknown field, wrong type or missing field. So the document is
//! parsed into toml's spanned tree first, and on each error the entry the error points at is
//! taken out of the tree and deserialization tried again, until it succeeds with what is left.
//! Each problem is reported with the entry's path (`warm.max_keys: expected an integer, found
//! a string`); the semantic checks then run on the rest.

use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeArray, DeTable, DeValue};

/// At most this many structural problems are reported (and retries made).
const MAX_PROBLEMS: usize = 50;

/// An entry taken out of the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// Its dotted path (`rule[2].ttl`).
    pub path: String,
    /// The key's name (`ttl`); for an array element, the array's.
    pub key: String,
    /// The span of the table that held it, where problems it causes would be reported.
    pub parent: Range<usize>,
}

/// One step down the tree.
#[derive(Debug, Clone)]
enum Step {
    Key(String),
    Index(usize),
}

/// Deserializes `text` as `T`. Returns the value (`None` when the document itself cannot be
/// read, or nothing is left after `MAX_PROBLEMS`), the problems as (byte offset, message),
/// and the entries removed on the way.
pub fn deserialize<T: for<'de> Deserialize<'de>>(
    text: &str,
) -> (Option<T>, Vec<(usize, String)>, Vec<Removed>) {
    let (mut doc, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        let problems = syntax
            .iter()
            .map(|e| (e.span().map_or(0, |s| s.start), e.message().trim_end().to_string()))
            .collect();
        return (None, problems, Vec::new());
    }
    let mut problems = Vec::new();
    let mut removed = Vec::new();
    while problems.len() < MAX_PROBLEMS {
        let error = match T::deserialize(toml::de::Deserializer::from(doc.clone())) {
            Ok(value) => return (Some(value), problems, removed),
            Err(e) => e,
        };
        let span = error.span().unwrap_or(0..0);
        let Some(steps) = locate(doc.get_ref(), &span) else {
            problems.push((span.start, plain(error.message())));
            return (None, problems, removed);
        };
        let (path, key) = describe(&steps);
        problems.push((span.start, format!("{path}: {}", plain(error.message()))));
        let parent = parent_span(&doc, &steps);
        remove(doc.get_mut(), &steps);
        removed.push(Removed { path, key, parent });
    }
    (None, problems, removed)
}

/// serde's wording in a person's: `invalid type: string "x", expected u64` becomes `expected
/// an integer, found a string`, and `unknown variant `x`, expected `a` or `b`` becomes
/// `` `x` is not `a` or `b` ``.
fn plain(message: &str) -> String {
    let message = message.trim_end();
    // `unknown variant `x`, expected `a` or `b`` (or `expected one of `a`, `b`, `c``).
    if let Some((value, expected)) =
        message.strip_prefix("unknown variant ").and_then(|rest| rest.split_once(", expected "))
    {
        return format!("{value} is not {expected}");
    }
    // A value of another type where one of a set of names goes: toml says what it takes.
    if message == "wanted string or table" {
        return "expected a string (one of the names this field takes)".to_string();
    }
    let Some(rest) = message.strip_prefix("invalid type: ") else { return message.to_string() };
    let Some((found, expected)) = rest.split_once(", expected ") else { return message.to_string() };
    format!("expected {}, found {}", kind(expected), kind(found))
}

/// A serde type description as a TOML kind.
fn kind(serde: &str) -> String {
    let word = serde.split([' ', '(']).find(|w| !matches!(*w, "a" | "an")).unwrap_or(serde);
    let toml = match word {
        "string" | "str" | "char" | "String" => "a string",
        "integer" | "u8" | "u16" | "u32" | "u64" | "usize" | "i8" | "i16" | "i32" | "i64" => "an integer",
        "floating" | "f32" | "f64" => "a number",
        "boolean" | "bool" => "a boolean",
        "sequence" | "array" => "an array",
        "map" | "struct" | "table" => "a table",
        _ => return serde.to_string(),
    };
    toml.to_string()
}

/// The path to the entry whose key or value is at `span`. A table's span is only its header
/// (`[warm]`, `[[rule]]`), not its contents, so every branch is searched.
fn locate(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    for (key, value) in table.iter() {
        let here = vec![Step::Key(key.get_ref().to_string())];
        if key.span() == *span || value.span() == *span {
            return Some(here);
        }
        let inner = match value.get_ref() {
            DeValue::Table(t) => locate(t, span),
            DeValue::Array(items) => locate_in_array(items, span),
            _ => None,
        };
        if let Some(rest) = inner {
            return Some(here.into_iter().chain(rest).collect());
        }
    }
    None
}

fn locate_in_array(items: &DeArray<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    for (i, item) in items.iter().enumerate() {
        let inner = match item.get_ref() {
            _ if item.span() == *span => Some(Vec::new()),
            DeValue::Table(t) => locate(t, span),
            DeValue::Array(nested) => locate_in_array(nested, span),
            _ => None,
        };
        if let Some(rest) = inner {
            return Some(std::iter::once(Step::Index(i)).chain(rest).collect());
        }
    }
    None
}

/// `rule[2].ttl` and the key's own name.
fn describe(steps: &[Step]) -> (String, String) {
    let mut path = String::new();
    let mut key = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                key.clone_from(k);
            }
            Step::Index(i) => path.push_str(&format!("[{i}]")),
        }
    }
    (path, key)
}

/// The span of the table (or array element) holding the entry at `steps`.
fn parent_span(doc: &Spanned<DeTable<'_>>, steps: &[Step]) -> Range<usize> {
    let mut span = doc.span();
    let mut value: Option<&Spanned<DeValue<'_>>> = None;
    for step in &steps[..steps.len().saturating_sub(1)] {
        let next = match (value.map(Spanned::get_ref), step) {
            (None, Step::Key(k)) => doc.get_ref().get(k.as_str()),
            (Some(DeValue::Table(t)), Step::Key(k)) => t.get(k.as_str()),
            (Some(DeValue::Array(a)), Step::Index(i)) => a.get(*i),
            _ => None,
        };
        let Some(next) = next else { break };
        span = next.span();
        value = Some(next);
    }
    span
}

/// Takes the entry at `steps` out of `table`.
fn remove(table: &mut DeTable<'_>, steps: &[Step]) {
    let Some((Step::Key(key), rest)) = steps.split_first() else { return };
    if rest.is_empty() {
        let kept: Vec<_> = std::mem::take(table).into_iter().filter(|(k, _)| k.get_ref() != key).collect();
        table.extend(kept);
        return;
    }
    let Some(value) = table.get_mut(key.as_str()) else { return };
    match (value.get_mut(), rest) {
        (DeValue::Table(inner), _) => remove(inner, rest),
        (DeValue::Array(items), [Step::Index(i), deeper @ ..]) => {
            if deeper.is_empty() {
                let mut kept = DeArray::new();
                for (j, item) in items.iter().enumerate() {
                    if j != *i {
                        kept.push(item.clone());
                    }
                }
                *items = kept;
            } else if let Some(DeValue::Table(inner)) = items.get_mut(*i).map(Spanned::get_mut) {
                remove(inner, deeper);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        warm: Warm,
        #[serde(default)]
        rule: Vec<Rule>,
    }

    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Warm {
        max_keys: Option<u64>,
        deadline: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rule {
        name: String,
        quota: Option<u64>,
    }

    #[test]
    fn every_structural_problem_is_reported_with_its_path() {
        let text = "[warm]\nmax_keys = \"many\"\ndeadlin = \"1m\"\n\n[[rule]]\nname = \"a\"\nquota = true\n\n[[rule]]\nquota = 3\n";
        let (file, problems, removed) = deserialize::<File>(text);
        let messages: Vec<&str> = problems.iter().map(|(_, m)| m.as_str()).collect();
        assert_eq!(messages.len(), 4, "{messages:?}");
        assert!(messages.contains(&"warm.max_keys: expected an integer, found a string"), "{messages:?}");
        assert!(
            messages.iter().any(|m| m.starts_with("warm.deadlin: unknown field `deadlin`")),
            "{messages:?}"
        );
        assert!(messages.contains(&"rule[0].quota: expected an integer, found a boolean"), "{messages:?}");
        assert!(messages.contains(&"rule[1]: missing field `name`"), "{messages:?}");
        // Each at its place: the offending value or key, or the table missing a field.
        let at = |needle: &str| text.find(needle).expect("in the text");
        let offsets: Vec<usize> = problems.iter().map(|(o, _)| *o).collect();
        for place in [at("\"many\""), at("deadlin"), at("true")] {
            assert!(offsets.contains(&place), "{offsets:?} lacks {place}");
        }
        // What is left deserializes, without the entries at fault.
        let file = file.expect("what is left deserializes");
        assert_eq!((file.warm.max_keys, file.warm.deadline), (None, None));
        assert_eq!(file.rule.len(), 1);
        assert_eq!((file.rule[0].name.as_str(), file.rule[0].quota), ("a", None));
        let mut keys: Vec<&str> = removed.iter().map(|r| r.key.as_str()).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["deadlin", "max_keys", "quota", "rule"]);
    }

    #[test]
    fn a_document_that_is_not_toml_says_where() {
        let (file, problems, _) = deserialize::<File>("[warm\nmax_keys = 1\n");
        assert!(file.is_none());
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, 5);
    }
}
