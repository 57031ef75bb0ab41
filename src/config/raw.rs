//! `preheat.toml` as serde reads it: every table and field, unknown ones rejected, values
//! still text with their positions for the checks that follow.

use serde::Deserialize;
use toml::Spanned;

use crate::analyze::Weight;
use crate::backend::WriteMode;
use crate::logformat::JsonFields;
use crate::warm::{Invalidations, LockPolicy, StalePolicy};

/// The raw file, as serde reads it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    pub(super) log: LogFile,
    #[serde(default)]
    pub(super) analyze: AnalyzeFile,
    #[serde(default)]
    pub(super) warm: WarmFile,
    pub(super) backend: Option<BackendFile>,
    #[serde(default)]
    pub(super) sources: std::collections::BTreeMap<String, super::sources::SourceFile>,
    #[serde(default, rename = "rule")]
    pub(super) rules: Vec<RuleFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WarmFile {
    pub(super) enabled: Option<bool>,
    pub(super) deadline: Option<Spanned<String>>,
    pub(super) on_existing: Option<OnExisting>,
    pub(super) batch_size: Option<Spanned<u64>>,
    pub(super) concurrency: Option<Spanned<u64>>,
    pub(super) max_keys: Option<Spanned<u64>>,
    pub(super) max_bytes: Option<Spanned<String>>,
    pub(super) max_memory: Option<Spanned<String>>,
    pub(super) lock: Option<LockPolicy>,
    pub(super) lock_key: Option<Spanned<String>>,
    pub(super) max_profile_age: Option<Spanned<String>>,
    pub(super) stale_profile: Option<StalePolicy>,
    pub(super) invalidations: Option<Invalidations>,
    pub(super) cache_headroom: Option<Spanned<String>>,
    pub(super) ready_at: Option<Spanned<ReadyAtFile>>,
    pub(super) ready_anyway: Option<bool>,
    pub(super) adaptive_concurrency: Option<bool>,
}

/// `on_existing`: the config's names for the write modes.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OnExisting {
    /// Leave existing keys and their TTL.
    Skip,
    /// Replace the value, keep the remaining TTL.
    Overwrite,
    /// Replace the value and its TTL.
    OverwriteAndResetTtl,
}

impl From<OnExisting> for WriteMode {
    fn from(choice: OnExisting) -> WriteMode {
        match choice {
            OnExisting::Skip => WriteMode::IfAbsent,
            OnExisting::Overwrite => WriteMode::OverwriteKeepTtl,
            OnExisting::OverwriteAndResetTtl => WriteMode::Overwrite,
        }
    }
}

/// A write mode by the name `on_existing` gives it.
pub fn on_existing_name(mode: WriteMode) -> &'static str {
    match mode {
        WriteMode::IfAbsent => "skip",
        WriteMode::OverwriteKeepTtl => "overwrite",
        WriteMode::Overwrite => "overwrite_and_reset_ttl",
    }
}

/// `ready_at = "80%"` or `ready_at = 5000`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum ReadyAtFile {
    Keys(u64),
    Share(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BackendFile {
    pub(super) url: Spanned<String>,
    pub(super) ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LogFile {
    pub(super) format: Option<Spanned<String>>,
    pub(super) json: Option<JsonFields>,
    pub(super) max_line: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AnalyzeFile {
    pub(super) max_keys_per_rule: Option<Spanned<u64>>,
    pub(super) top_unmatched: Option<usize>,
    pub(super) half_life: Option<Spanned<String>>,
    pub(super) weight: Option<Weight>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFile {
    pub(super) name: Spanned<String>,
    #[serde(rename = "match")]
    pub(super) pattern: Spanned<String>,
    pub(super) key: Spanned<String>,
    pub(super) host: Option<Spanned<String>>,
    pub(super) status: Option<Spanned<Vec<StatusItem>>>,
    #[serde(default)]
    pub(super) keep_query: Vec<String>,
    pub(super) quota: Option<Spanned<u64>>,
    pub(super) source: Option<Spanned<String>>,
    pub(super) sql: Option<Spanned<String>>,
    pub(super) ttl: Option<Spanned<String>>,
    pub(super) ttl_jitter: Option<Spanned<f64>>,
    pub(super) param: Option<Spanned<String>>,
    pub(super) encoding: Option<Spanned<String>>,
    pub(super) on_existing: Option<OnExisting>,
    pub(super) path: Option<Spanned<String>>,
    pub(super) args: Option<Spanned<Vec<String>>>,
    pub(super) invalidations: Option<Invalidations>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum StatusItem {
    Code(u16),
    Text(String),
}
