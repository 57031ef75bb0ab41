//! The run report: what a warm did, for people (a table) and machines (JSON).

use std::collections::BTreeMap;

use serde::Serialize;

/// How a warm ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
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

/// One rule's share of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
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
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
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
    /// Keys that failed, by reason (`source_error`, `source_timeout`, `source_down`,
    /// `backend_error`, `backend_down`, `cancelled`).
    pub failed: BTreeMap<String, u64>,
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
}

impl RunReport {
    /// An empty report.
    pub fn new(backend: String, planned: u64, predicted_coverage: f64, rules: Vec<RuleReport>) -> Self {
        RunReport {
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
            started_at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64),
            duration_ms: 0,
            keys_per_sec: 0.0,
            memory_budget: None,
            peak_memory: None,
            predicted_coverage,
            rules,
            invalid_samples: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// The report of a skipped run.
    pub fn skipped(backend: String) -> Self {
        let mut r = RunReport::new(backend, 0, 0.0, Vec::new());
        r.status = RunStatus::Skipped;
        r
    }

    /// The report of a run that did not use its stale profile.
    pub fn stale(backend: String, why: Vec<String>) -> Self {
        let mut r = RunReport::new(backend, 0, 0.0, Vec::new());
        r.status = RunStatus::Stale;
        r.errors = why;
        r
    }

    /// The report of a run that could not start.
    pub fn failed_to_start(backend: String, why: String) -> Self {
        let mut r = RunReport::new(backend, 0, 0.0, Vec::new());
        r.status = RunStatus::Failed;
        r.errors.push(why);
        r
    }

    /// Keys that did not reach the cache for a reason worth failing a `--strict` run over.
    pub fn failures(&self) -> u64 {
        self.failed.values().sum::<u64>() + self.invalid_keys + self.not_started
    }

    /// Whether the run went as planned: it completed (or was skipped, or left the work to the
    /// run holding the lock) and nothing failed.
    pub fn is_clean(&self) -> bool {
        matches!(self.status, RunStatus::Completed | RunStatus::Skipped | RunStatus::Locked)
            && self.failures() == 0
    }
}
