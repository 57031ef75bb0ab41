//! The run report: what a warm did, for people (a table) and machines (JSON).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::SourcePacing;
use crate::backend::NodeMemory;
use crate::failure::FailureReason;

/// How a warm ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Every planned key was tried.
    Completed,
    /// The deadline stopped it; keys not started are counted as `not_started`.
    Deadline,
    /// A stop signal (Ctrl-C) ended it.
    Interrupted,
    /// The process reached its memory budget; keys not started are counted as `not_started`.
    Memory,
    /// The next batch would have filled a cache node past `warm.cache_headroom` of its memory
    /// limit; keys not started are counted as `not_started`.
    Headroom,
    /// The cache evicted keys during the warm (`evicted_during_warm`): writing stopped at once,
    /// batches in flight were cancelled.
    Evicting,
    /// Another run held the lock (`warm.lock = "skip"`), so this one warmed nothing.
    Locked,
    /// Disabled by configuration or `PREHEAT_SKIP`.
    Skipped,
    /// The profile was stale (older than `warm.max_profile_age`, or made with other rules) and
    /// `warm.stale_profile = "skip"`; `errors` says why.
    Stale,
    /// It could not start (no or unreadable profile, unusable backend URL); `errors` says why.
    Failed,
}

/// The verdict on a warm, the first thing its report says: did the cache get what was planned?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarmOutcome {
    /// Every planned key was tried and none failed.
    Completed,
    /// Some keys reached the cache, others failed or were not started ([`RunReport::cause`]).
    Degraded,
    /// Nothing reached the cache although keys were planned, or the warm could not start
    /// ([`RunReport::cause`]).
    Failed,
    /// Not run, by choice: disabled, `PREHEAT_SKIP`, a stale profile with `stale_profile =
    /// "skip"`, or another run holding the lock.
    Skipped,
}

impl WarmOutcome {
    /// The word reports print.
    pub fn as_str(self) -> &'static str {
        match self {
            WarmOutcome::Completed => "completed",
            WarmOutcome::Degraded => "degraded",
            WarmOutcome::Failed => "failed",
            WarmOutcome::Skipped => "skipped",
        }
    }
}

/// One rule's share of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleReport {
    /// Rule name.
    pub name: String,
    /// Keys in the plan.
    pub planned: u64,
    /// Keys created.
    pub written: u64,
    /// Existing keys whose value was replaced (`on_existing = "overwrite"`).
    pub overwritten: u64,
    /// Existing keys left alone.
    pub skipped_existing: u64,
    /// Keys the source had no value for.
    pub missing_in_source: u64,
    /// Keys whose HTTP response may not be stored (`no-store`, `private`, a redirect).
    pub uncacheable: u64,
    /// Requests replayed for the application to cache (HTTP `replay` mode).
    pub replayed: u64,
    /// Keys whose value changed while they were warmed (see [`RunReport::invalidated`]).
    pub invalidated: u64,
    /// Keys refused by validation (never written).
    pub invalid: u64,
    /// Keys that failed (source or backend errors, cancelled at the deadline).
    pub failed: u64,
}

/// What a warm did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunReport {
    /// The verdict: completed, degraded, failed or skipped (set by [`RunReport::conclude`]).
    pub outcome: WarmOutcome,
    /// Why it was not completed: the largest cause, with an example error; `None` when it
    /// completed.
    pub cause: Option<String>,
    /// How it ended.
    pub status: RunStatus,
    /// The backend (password removed).
    pub backend: String,
    /// Keys in the plan.
    pub planned: u64,
    /// Keys created.
    pub written: u64,
    /// Existing keys whose value was replaced.
    pub overwritten: u64,
    /// Existing keys left alone (value and TTL untouched).
    pub skipped_existing: u64,
    /// Keys the source had no value for (no row, 404, no file, absent on the peer).
    pub missing_in_source: u64,
    /// Keys whose HTTP response may not be stored (`no-store`, `private`, a redirect).
    pub uncacheable: u64,
    /// Requests replayed for the application to cache (HTTP `replay` mode).
    pub replayed: u64,
    /// Keys whose value a second read of their source found changed (`invalidations =
    /// "verify"`): the application changed them during the warm. The warm's value was taken
    /// back where it was still cached (and is then not counted as written).
    pub invalidated: u64,
    /// Keys refused by validation.
    pub invalid_keys: u64,
    /// Keys of rules without a source.
    pub no_source: u64,
    /// Keys that failed, by reason.
    pub failed: BTreeMap<FailureReason, u64>,
    /// Keys never started because the run stopped.
    pub not_started: u64,
    /// Value bytes written.
    pub bytes_written: u64,
    /// When the run started, Unix ms.
    pub started_at_ms: i64,
    /// Wall time.
    pub duration_ms: u64,
    /// Keys tried per second.
    pub keys_per_sec: f64,
    /// The memory budget in bytes (`None` where the platform does not report memory).
    pub memory_budget: Option<u64>,
    /// Peak resident memory of the process in bytes.
    pub peak_memory: Option<u64>,
    /// The plan's predicted share of requests covered.
    pub predicted_coverage: f64,
    /// Per rule, in config order.
    pub rules: Vec<RuleReport>,
    /// A few invalid keys, with the reason.
    pub invalid_samples: Vec<String>,
    /// The first distinct error messages (passwords removed).
    pub errors: Vec<String>,
    /// The share of the profile's requests the keys in the cache after the run cover (the
    /// plan's `predicted_coverage` when every planned key landed).
    #[serde(default)]
    pub warmed_coverage: f64,
    /// When the warmed keys reached `warm.ready_at`, ms after the start; `None` when they
    /// did not (or no `ready_at` was set).
    #[serde(default)]
    pub ready_after_ms: Option<u64>,
    /// How each source was paced: its batch latencies and its adaptive concurrency over the
    /// run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pacing: Vec<SourcePacing>,
    /// Keys the cache evicted for room while the warm wrote (0 where its memory is not
    /// watched: no limit, or unreadable).
    #[serde(default)]
    pub evicted_during_warm: u64,
    /// Each cache node's memory before the warm (Redis `INFO`; the in-process cache's size).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_memory_before: Vec<NodeMemory>,
    /// The same after the warm, for the nodes with a memory limit.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_memory_after: Vec<NodeMemory>,
    /// Per rule, the planned keys the cache does not hold after the run (failed, invalid, not
    /// in source, not started, taken back), so that `preheat verify` counts as warmed only
    /// the keys that were; empty when nothing landed at all ([`RunReport::landed`] is 0).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_written: BTreeMap<String, Vec<String>>,
}

impl RunReport {
    /// An empty report.
    pub fn new(backend: String, planned: u64, predicted_coverage: f64, rules: Vec<RuleReport>) -> Self {
        RunReport {
            outcome: WarmOutcome::Completed,
            cause: None,
            status: RunStatus::Completed,
            backend,
            planned,
            written: 0,
            overwritten: 0,
            skipped_existing: 0,
            missing_in_source: 0,
            uncacheable: 0,
            replayed: 0,
            invalidated: 0,
            invalid_keys: 0,
            no_source: 0,
            failed: BTreeMap::new(),
            not_started: 0,
            bytes_written: 0,
            started_at_ms: crate::timestamp::now_ms(),
            duration_ms: 0,
            keys_per_sec: 0.0,
            memory_budget: None,
            peak_memory: None,
            predicted_coverage,
            rules,
            invalid_samples: Vec::new(),
            errors: Vec::new(),
            not_written: BTreeMap::new(),
            warmed_coverage: 0.0,
            ready_after_ms: None,
            pacing: Vec::new(),
            evicted_during_warm: 0,
            cache_memory_before: Vec::new(),
            cache_memory_after: Vec::new(),
        }
    }

    /// The report of a skipped run.
    pub fn skipped(backend: String) -> Self {
        let mut r = RunReport::new(backend, 0, 0.0, Vec::new());
        r.status = RunStatus::Skipped;
        r.conclude();
        r
    }

    /// The report of a run that did not use its stale profile.
    pub fn stale(backend: String, why: Vec<String>) -> Self {
        let mut r = RunReport::new(backend, 0, 0.0, Vec::new());
        r.status = RunStatus::Stale;
        r.errors = why;
        r.conclude();
        r
    }

    /// The report of a run that could not start.
    pub fn failed_to_start(backend: String, why: String) -> Self {
        let mut r = RunReport::new(backend, 0, 0.0, Vec::new());
        r.status = RunStatus::Failed;
        r.errors.push(why);
        r.conclude();
        r
    }

    /// Keys the cache holds a value for after the run, whoever wrote it: written, overwritten,
    /// already cached, or (HTTP `replay`) replayed for the application to cache.
    pub fn landed(&self) -> u64 {
        self.written + self.overwritten + self.skipped_existing + self.replayed
    }

    /// Sets [`RunReport::outcome`] and [`RunReport::cause`] from the counts; called once the
    /// counts are final.
    pub fn conclude(&mut self) {
        self.outcome = match self.status {
            RunStatus::Skipped | RunStatus::Stale | RunStatus::Locked => WarmOutcome::Skipped,
            RunStatus::Failed => WarmOutcome::Failed,
            _ if self.planned > 0 && self.landed() == 0 => WarmOutcome::Failed,
            _ if self.is_clean() => WarmOutcome::Completed,
            _ => WarmOutcome::Degraded,
        };
        self.cause = match self.outcome {
            WarmOutcome::Completed => None,
            WarmOutcome::Skipped | WarmOutcome::Failed if self.failures() == 0 => {
                self.not_written_cause().or_else(|| self.errors.first().cloned())
            }
            _ => self.largest_failure(),
        };
    }

    /// The largest reason keys failed, with the first error message that goes with it.
    fn largest_failure(&self) -> Option<String> {
        if self.evicted_during_warm > 0 {
            return Some(format!(
                "evicting: the cache evicted {} keys for room while the warm wrote, so writing stopped ({} of {} keys written)",
                self.evicted_during_warm, self.written, self.planned
            ));
        }
        let stopped = match self.status {
            RunStatus::Deadline => "the deadline",
            RunStatus::Memory => "the memory budget",
            RunStatus::Interrupted => "a stop signal",
            RunStatus::Headroom => "the cache's free room (warm.cache_headroom)",
            _ => "the run's end",
        };
        // (keys, what, whether the run's error messages speak of it)
        let mut counts: Vec<(u64, String, bool)> =
            self.failed.iter().map(|(reason, n)| (*n, reason.as_str().replace('_', " "), true)).collect();
        counts.push((self.invalid_keys, "invalid key".to_string(), false));
        counts.push((self.not_started, format!("not started: stopped by {stopped}"), false));
        let (n, what, has_messages) = counts.into_iter().filter(|c| c.0 > 0).max_by_key(|c| c.0)?;
        let example = match self.errors.first() {
            Some(e) if has_messages => format!(" ({e})"),
            _ => String::new(),
        };
        Some(format!("{what}: {n} of {} keys{example}", self.planned))
    }

    /// Why nothing was written when nothing failed either.
    fn not_written_cause(&self) -> Option<String> {
        if self.missing_in_source > 0
            && self.missing_in_source + self.uncacheable + self.no_source >= self.planned
        {
            return Some(format!(
                "no planned key was found in its source ({} of {} not in source): check the rules' queries or URLs",
                self.missing_in_source, self.planned
            ));
        }
        if self.no_source > 0 {
            return Some(format!(
                "{} of {} keys belong to rules without a source",
                self.no_source, self.planned
            ));
        }
        if self.uncacheable > 0 {
            return Some(format!("{} of {} responses may not be stored", self.uncacheable, self.planned));
        }
        None
    }

    /// Keys that did not reach the cache for a reason worth failing a `--strict` run over.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum::<u64>() + self.invalid_keys + self.not_started
    }

    /// Whether the run went as planned: it completed (or was skipped, or left the work to the
    /// run holding the lock), nothing failed and the cache evicted nothing.
    pub fn is_clean(&self) -> bool {
        matches!(self.status, RunStatus::Completed | RunStatus::Skipped | RunStatus::Locked)
            && self.failures() == 0
            && self.evicted_during_warm == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(planned: u64) -> RunReport {
        RunReport::new("redis://127.0.0.1:6379".into(), planned, 0.8, Vec::new())
    }

    #[test]
    fn a_warm_that_wrote_everything_it_planned_completed() {
        let mut r = report(10);
        (r.written, r.skipped_existing, r.missing_in_source) = (7, 2, 1);
        r.conclude();
        assert_eq!((r.outcome, r.cause), (WarmOutcome::Completed, None));
    }

    #[test]
    fn a_warm_that_wrote_nothing_failed_and_says_why() {
        let mut r = report(10);
        r.failed.insert(FailureReason::BackendDown, 10);
        r.errors.push("connection refused (redis://127.0.0.1:6379)".into());
        r.conclude();
        assert_eq!(r.outcome, WarmOutcome::Failed);
        assert_eq!(
            r.cause.as_deref(),
            Some("backend down: 10 of 10 keys (connection refused (redis://127.0.0.1:6379))")
        );

        let mut r = report(10);
        r.missing_in_source = 10;
        r.conclude();
        assert_eq!(r.outcome, WarmOutcome::Failed);
        assert!(r.cause.as_deref().is_some_and(|c| c.contains("no planned key was found in its source")));
    }

    #[test]
    fn a_warm_that_wrote_some_keys_is_degraded_by_its_largest_cause() {
        let mut r = report(10);
        r.written = 4;
        r.failed.insert(FailureReason::SourceTimeout, 2);
        r.not_started = 4;
        r.status = RunStatus::Deadline;
        r.conclude();
        assert_eq!(r.outcome, WarmOutcome::Degraded);
        assert_eq!(r.cause.as_deref(), Some("not started: stopped by the deadline: 4 of 10 keys"));
    }

    #[test]
    fn an_already_warm_cache_is_a_completed_warm_and_a_skip_is_a_skip() {
        let mut r = report(10);
        r.skipped_existing = 10;
        r.conclude();
        assert_eq!(r.outcome, WarmOutcome::Completed);
        assert_eq!(RunReport::skipped("memory://".into()).outcome, WarmOutcome::Skipped);
        let failed = RunReport::failed_to_start("memory://".into(), "no profile".into());
        assert_eq!((failed.outcome, failed.cause.as_deref()), (WarmOutcome::Failed, Some("no profile")));
    }
}
