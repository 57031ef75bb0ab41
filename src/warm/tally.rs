//! What a run counts as batches finish: the report, which planned keys landed, how much of
//! the profile's traffic they cover, and the moment they reach `warm.ready_at`.

use std::time::Instant;

use super::RunReport;
use super::batch::Outcome;
use crate::plan::Plan;

/// Invalid keys and error messages kept as samples.
pub(super) const SAMPLES: usize = 5;

/// What a run counts: the report, which planned keys landed, and how much of the profile's
/// traffic they cover.
pub(super) struct Tally<'a> {
    pub(super) report: RunReport,
    pub(super) plan: &'a Plan,
    pub(super) landed: Vec<bool>,
    pub(super) landed_keys: u64,
    /// Profiled requests of the landed keys.
    pub(super) covered: u64,
    /// What `warm.ready_at` asks for, as (covered requests, landed keys), either of which
    /// will do; `None`: ready when the run ends.
    pub(super) ready_when: Option<(u64, u64)>,
    pub(super) started: Instant,
}

impl Tally<'_> {
    /// Adds a batch's outcome to the report, marks the planned keys it landed, and notes when
    /// they first reach `warm.ready_at`.
    pub(super) fn record(&mut self, rule: usize, o: Outcome) {
        for at in o.landed {
            let at = at as usize;
            if !self.landed[at] {
                self.landed[at] = true;
                self.landed_keys += 1;
                self.covered += self.plan.keys[at].requests;
            }
        }
        if self.report.ready_after_ms.is_none()
            && self
                .ready_when
                .is_some_and(|(requests, keys)| self.covered >= requests || self.landed_keys >= keys)
        {
            self.report.ready_after_ms = Some(self.started.elapsed().as_millis() as u64);
            tracing::info!(
                keys = self.landed_keys,
                coverage = format!("{:.1}%", 100.0 * self.coverage()),
                "ready: the warmed keys reached warm.ready_at"
            );
        }
        let report = &mut self.report;
        let rr = &mut report.rules[rule];
        rr.written += o.written;
        rr.overwritten += o.overwritten;
        rr.skipped_existing += o.existed;
        rr.missing_in_source += o.missing;
        rr.uncacheable += o.uncacheable;
        rr.replayed += o.replayed;
        rr.invalidated += o.invalidated;
        report.invalidated += o.invalidated;
        report.uncacheable += o.uncacheable;
        report.replayed += o.replayed;
        report.written += o.written;
        report.overwritten += o.overwritten;
        report.skipped_existing += o.existed;
        report.missing_in_source += o.missing;
        report.bytes_written += o.bytes;
        for (reason, failed, message) in o.failed {
            rr.failed += failed;
            *report.failed.entry(reason).or_insert(0) += failed;
            if !message.is_empty() && report.errors.len() < SAMPLES && !report.errors.contains(&message) {
                tracing::warn!(rule = %rr.name, keys = failed, error = %message, "batch failed");
                report.errors.push(message);
            }
        }
    }

    /// The share of the profile's requests the landed keys cover.
    pub(super) fn coverage(&self) -> f64 {
        if self.plan.requests_profiled == 0 {
            0.0
        } else {
            self.covered as f64 / self.plan.requests_profiled as f64
        }
    }
}
