//! What an analysis is told besides the rules: the log format, the time range, the table
//! sizes and how hotness is scored.

use std::time::Duration;

use crate::logformat::LogSettings;
use crate::units::opt_duration;

/// What an analysis does besides the rules.
#[derive(Debug, Clone)]
pub struct AnalyzeOptions {
    /// How the logs are read.
    pub log: LogSettings,
    /// Only requests at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only requests before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// Exact distinct keys per rule before the bounded summary takes over.
    pub max_keys_per_rule: usize,
    /// How many unmatched paths to report.
    pub top_unmatched: usize,
    /// Scoring.
    pub score: Scoring,
    /// The config fingerprint stored in the profile.
    pub config_fingerprint: String,
}

/// How a profile entry's score weighs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weight {
    /// Score = (decayed) request count.
    Requests,
    /// Score = request count × mean latency in ms: the backend time a warm entry saves.
    Latency,
    /// Score = request count × mean response KiB: the bytes a warm entry saves recomputing.
    Bytes,
}

/// How hotness is scored (see the README's "Score").
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Scoring {
    /// Requests lose half their weight per this age, measured back from the newest request of
    /// the log window; `None` weighs every request alike.
    #[serde(with = "opt_duration")]
    pub half_life: Option<Duration>,
    /// Miss-cost weight.
    pub weight: Weight,
}
