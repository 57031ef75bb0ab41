//! Each parser read twice, for the fuzz targets (`fuzz/`) and the property tests: a line a
//! parser accepts must read the same on a second reading, by the same parser and, where
//! there are two parsers of one format, by the other (the written-out `combined` and
//! `common` parser against the format-string interpreter; the one-pass JSON reader against
//! serde_json). Each function returns what differed.

use super::compiled::CompiledFormat;
use super::json::JsonFormat;
use super::{COMBINED, COMMON, LogFormat, Parser, Record};

/// `line` read twice by `format`: the same outcome both times, and an accepted record that
/// borrows nothing it should not hold (a path, no longer than the line). A JSON format's
/// one-pass reader is held to serde_json too, with the format's own field names.
pub fn again(format: &LogFormat, line: &[u8]) -> Result<(), String> {
    if let Parser::Json(json) = &format.parser {
        json.readings_agree(line)?;
    }
    let (first, second) = (format.parse_line(line), format.parse_line(line));
    if first != second {
        return Err(format!("two readings differ: {first:?} then {second:?}"));
    }
    if let Ok(r) = &first {
        sane(r, line)?;
    }
    Ok(())
}

/// `line` as `combined` (or `common`) by the parser written for it and by the interpreter
/// of its format string: the same record or the same error.
pub fn clf(line: &[u8], combined: bool) -> Result<(), String> {
    let source = if combined { COMBINED } else { COMMON };
    let format = CompiledFormat::compile(source, true).map_err(|e| e.to_string())?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let (fast, general) = (format.parse(line), format.parse_generic(line));
    if fast != general {
        return Err(format!("the written-out parser read {fast:?}, the interpreter {general:?}"));
    }
    Ok(())
}

/// `line` as a JSON line by the one-pass reader and by serde_json: where the first reads it,
/// the second reads the same fields.
pub fn json(format: &JsonFormat, line: &[u8]) -> Result<(), String> {
    format.readings_agree(line)
}

fn sane(r: &Record<'_>, line: &[u8]) -> Result<(), String> {
    if r.path.is_empty() {
        return Err(format!("accepted with an empty path: {r:?}"));
    }
    if r.path.len() > line.len() {
        return Err(format!("a path longer than the line: {r:?}"));
    }
    if r.status.is_some_and(|s| s != super::NO_RESPONSE && !(100..=599).contains(&s)) {
        return Err(format!("a status out of range: {r:?}"));
    }
    Ok(())
}
