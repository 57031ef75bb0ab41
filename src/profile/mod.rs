//! Profiles: the analyzer's output, one Parquet file per analysis.
//!
//! A profile holds one row per (rule, key), hottest first, and the analysis [`Summary`] as
//! file metadata. The `parquet` submodule reads and writes the file with plain types any
//! Parquet reader understands; [`store`] keeps files in a directory with an atomically updated
//! `latest` pointer.

mod columns;
mod freshness;
pub mod merge;
mod parquet;
pub mod store;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use self::columns::{ProfileColumns, ROW_GROUP_ROWS, RowGroup, RowValues, row_group_size};
pub use self::parquet::{ProfileMeta, ProfileRows, open_profile, read_profile, read_summary, write_profile};
pub use store::Store;

/// The profile schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One (rule, key) of a profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileRow {
    /// Rule name.
    pub rule: String,
    /// Cache key.
    pub key: String,
    /// Requests in the log window (a lower bound when the rule's table was pruned).
    pub count: u64,
    /// Hotness score: what the plan ranks by.
    pub score: f64,
    /// First request, Unix ms.
    pub first_seen_ms: Option<i64>,
    /// Last request, Unix ms.
    pub last_seen_ms: Option<i64>,
    /// Mean response size in bytes.
    pub mean_bytes: Option<f64>,
    /// Mean latency in ms.
    pub mean_latency_ms: Option<f64>,
    /// Largest latency in ms.
    pub max_latency_ms: Option<f64>,
    /// Cache hits observed in the log.
    pub cache_hits: u64,
    /// Cache misses observed in the log.
    pub cache_misses: u64,
    /// Captured parameters of the first request, as a JSON object.
    pub params: String,
}

impl ProfileRow {
    /// Hottest first: score, then count, descending; then rule and key, so the order is total.
    pub fn hotness_order(a: &ProfileRow, b: &ProfileRow) -> Ordering {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.count.cmp(&a.count))
            .then_with(|| a.rule.cmp(&b.rule))
            .then_with(|| a.key.cmp(&b.key))
    }
}

/// What an analysis read and found; stored in the profile's metadata.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Every input, in reading order.
    pub inputs: Vec<InputSummary>,
    /// Earliest and latest request time among parsed lines.
    pub window: Window,
    /// Line accounting.
    pub lines: LineCounts,
    /// Rejected lines by reason.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// A few rejected lines per reason (query values redacted).
    pub samples: Vec<Sample>,
    /// Per-rule totals.
    pub rules: Vec<RuleSummary>,
    /// The most requested paths no rule matched.
    pub top_unmatched: Vec<PathCount>,
    /// Distinct client addresses (HyperLogLog estimate).
    pub distinct_clients: u64,
    /// Fingerprint of the rules and format that made this profile.
    pub config_fingerprint: String,
    /// Recency half-life used for scores.
    pub score_half_life: Option<String>,
    /// Miss-cost weight used for scores.
    pub score_weight: String,
    /// `--since`, if given.
    pub since: Option<String>,
    /// `--until`, if given.
    pub until: Option<String>,
    /// Input bytes read (compressed size for compressed inputs).
    pub bytes_read: u64,
    /// Wall time of the analysis.
    pub elapsed_ms: u64,
}

/// One input of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSummary {
    /// Path as given (`-` for stdin).
    pub name: String,
    /// Format used (detected or configured).
    pub format: Option<String>,
    /// `none`, `gzip` or `zstd`.
    pub compression: Option<String>,
    /// Lines read from it.
    pub lines: u64,
    /// Why it could not be read in full, if so.
    pub error: Option<String>,
}

/// Time span of the requests, RFC 3339 UTC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Earliest request.
    pub start: Option<String>,
    /// Latest request.
    pub end: Option<String>,
}

/// Where every line went: `read = parsed + rejected`;
/// `parsed = out_of_window + unmatched + status_filtered + matched`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineCounts {
    /// Lines read.
    pub read: u64,
    /// Lines that parsed as requests (and, for matched ones, gave a valid key).
    pub parsed: u64,
    /// Lines rejected.
    pub rejected: u64,
    /// Requests outside `--since`/`--until`.
    pub out_of_window: u64,
    /// Requests no rule matched.
    pub unmatched: u64,
    /// Requests a rule matched but whose status it does not cache.
    pub status_filtered: u64,
    /// Requests counted for a key.
    pub matched: u64,
}

/// A rejected line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Reason, as in `rejected_by_reason`.
    pub reason: String,
    /// Input name.
    pub input: String,
    /// 1-based line number in the (decompressed) input.
    pub line: u64,
    /// Start of the line, query values redacted.
    pub excerpt: String,
}

/// One rule's totals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSummary {
    /// Rule name.
    pub name: String,
    /// Requests counted.
    pub requests: u64,
    /// Requests with a status the rule does not cache.
    pub status_filtered: u64,
    /// Distinct keys (exact unless `distinct_keys_estimated`).
    pub distinct_keys: u64,
    /// Whether `distinct_keys` is a HyperLogLog estimate (the table was pruned).
    pub distinct_keys_estimated: bool,
    /// Every key's count is at most this much below its true count (0: exact).
    pub count_error_bound: u64,
    /// Distinct clients (HyperLogLog estimate).
    pub distinct_clients: u64,
}

/// Sketches of distinct keys and clients, as text ([`crate::sketch::encode`]), so that
/// profiles of several hosts merge into true distinct counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sketches {
    /// Distinct clients over all rules.
    pub clients: String,
    /// Per rule, in the summary's order.
    pub rules: Vec<RuleSketches>,
}

/// One rule's sketches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSketches {
    /// Rule name.
    pub name: String,
    /// Distinct keys.
    pub keys: String,
    /// Distinct clients.
    pub clients: String,
}

/// A path and its request count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PathCount {
    /// Path without query.
    pub path: String,
    /// Requests.
    pub requests: u64,
}

/// A profile that cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// File system trouble.
    #[error("{action} `{path}`: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a readable Parquet file.
    #[error(
        "`{path}` is not a readable profile: {message} (write a new one with `preheat analyze`, or pass another with `--profile`)"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What the Parquet reader said.
        message: String,
    },
    /// A Parquet file that preheat did not write, or a newer schema.
    #[error("`{path}` is not a preheat profile this version can read: {message}")]
    Incompatible {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// No profile in the store.
    #[error("no profile in `{0}`: run `preheat analyze` first, or pass `--profile PATH`")]
    Empty(PathBuf),
}
