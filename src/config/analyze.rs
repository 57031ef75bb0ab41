//! The `[analyze]` table: table sizes and scoring of `preheat analyze`.

use std::num::NonZeroUsize;

use super::Problems;
use super::raw::AnalyzeFile;
use crate::analyze::{Scoring, Weight};

/// Settings of `preheat analyze`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeConfig {
    /// Distinct keys counted exactly per rule; past this the rule switches to a bounded
    /// heavy-hitter summary whose error bound is recorded in the profile.
    pub max_keys_per_rule: NonZeroUsize,
    /// How many unmatched paths to report.
    pub top_unmatched: usize,
    /// Scoring.
    pub score: Scoring,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        AnalyzeConfig {
            max_keys_per_rule: NonZeroUsize::new(500_000).expect("non-zero"),
            top_unmatched: 20,
            score: Scoring { half_life: None, weight: Weight::Requests },
        }
    }
}

/// Checks the `[analyze]` table.
pub(super) fn analyze(file: &AnalyzeFile, problems: &mut Problems) -> AnalyzeConfig {
    let mut analyze = AnalyzeConfig::default();
    if let Some(n) = &file.max_keys_per_rule {
        match usize::try_from(*n.get_ref()).ok().and_then(NonZeroUsize::new) {
            Some(n) => analyze.max_keys_per_rule = n,
            None => problems.add(n.span().start, "analyze.max_keys_per_rule must be at least 1"),
        }
    }
    if let Some(n) = file.top_unmatched {
        analyze.top_unmatched = n;
    }
    if let Some(h) = &file.half_life {
        match humantime::parse_duration(h.get_ref()) {
            Ok(d) if !d.is_zero() => analyze.score.half_life = Some(d),
            _ => problems.add(
                h.span().start,
                format!("analyze.half_life: `{}` is not a duration such as `6h` or `30m`", h.get_ref()),
            ),
        }
    }
    if let Some(weight) = file.weight {
        analyze.score.weight = weight;
    }
    analyze
}
