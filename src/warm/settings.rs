//! What a warm run is told: its settings (`[warm]`) and, per rule, how its
//! values are loaded. `config` builds them; the warm never reads the config file.

use std::time::Duration;

use crate::backend::WriteMode;
use crate::memory::{MAX_MEMORY_SHARE, MemoryLimit};
use crate::plan::WarmBudgets;
use crate::rules::RuleSet;
use crate::source::Fetch;
use crate::units::{duration_text, opt_duration};

/// How and when `preheat warm` runs (`[warm]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WarmSettings {
    /// `false` makes `preheat warm` log that it was skipped and exit 0.
    pub enabled: bool,
    /// Hard end of the run; at most 5 minutes.
    #[serde(with = "duration_text")]
    pub deadline: Duration,
    /// What to do with keys that already exist (a rule may override it).
    pub on_existing: WriteMode,
    /// Keys per source query and per backend write.
    pub batch_size: usize,
    /// Batches in flight at once (bounds concurrent queries on each source); with
    /// `adaptive_concurrency` the ceiling each source's limit grows towards.
    pub concurrency: usize,
    /// Whether each source's batches in flight start at one and follow its latency (AIMD),
    /// rather than staying at `concurrency`.
    pub adaptive_concurrency: bool,
    /// Plan budgets.
    pub budgets: WarmBudgets,
    /// Memory the run may use.
    pub max_memory: MemoryLimit,
    /// What a run does when another holds the lock.
    pub lock: LockPolicy,
    /// The key of the lock that keeps two runs from warming the same cache at once.
    pub lock_key: String,
    /// A profile whose log window ended longer ago than this is stale (`None`: never).
    #[serde(with = "opt_duration")]
    pub max_profile_age: Option<Duration>,
    /// What a warm does with a stale profile, or one made with other rules.
    pub stale_profile: StalePolicy,
    /// Whether written values are checked against a second read of their source (a rule may
    /// override it).
    pub invalidations: Invalidations,
    /// The share of each cache node's memory limit (`maxmemory`) the warm may fill up to:
    /// no batch starts that would take a node past it, so warming never makes the cache evict.
    pub cache_headroom: f64,
    /// When the warm is good enough for traffic (`warm.ready_at`); `None`: when it ends.
    pub ready_at: Option<ReadyAt>,
    /// Whether a warm that ends (deadline, failure) before `ready_at` still declares ready:
    /// deploys must not hang on a warm.
    pub ready_anyway: bool,
}

/// `warm.ready_at`: when the warm set is good enough for traffic.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyAt {
    /// When the warmed keys cover this share of the plan's predicted coverage (`"80%"`).
    Coverage(f64),
    /// When this many keys are warmed (at most the plan's).
    Keys(u64),
}

/// `invalidations`: how a warm avoids writing back a value the application changed (and
/// invalidated) while the warm was loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Invalidations {
    /// After a batch is written, read its keys from the source again; a key whose value
    /// changed in between is taken back (deleted while it still holds the warm's value).
    Verify,
    /// No second read (for sources whose answers differ on every read, or caches nothing
    /// else writes to during a warm).
    Off,
}

/// What `preheat warm` does with a stale profile (`warm.stale_profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Warn and warm from it anyway.
    Warn,
    /// Warn and warm nothing (status `stale`).
    Skip,
}

/// What `preheat warm` does when another run holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LockPolicy {
    /// End at once, reporting `locked` (exit 0): the other run is doing the work.
    Skip,
    /// Wait for the other run to finish, within this run's deadline, then warm.
    Wait,
}

/// The hard ceiling of `warm.deadline`.
pub const MAX_DEADLINE: Duration = Duration::from_secs(300);

impl Default for WarmSettings {
    fn default() -> Self {
        WarmSettings {
            enabled: true,
            deadline: MAX_DEADLINE,
            on_existing: WriteMode::IfAbsent,
            batch_size: 500,
            concurrency: 4,
            adaptive_concurrency: true,
            budgets: WarmBudgets::default(),
            max_memory: MemoryLimit::Share(MAX_MEMORY_SHARE),
            lock: LockPolicy::Skip,
            lock_key: "preheat:lock".into(),
            max_profile_age: None,
            stale_profile: StalePolicy::Warn,
            invalidations: Invalidations::Verify,
            cache_headroom: DEFAULT_CACHE_HEADROOM,
            ready_at: None,
            ready_anyway: true,
        }
    }
}

/// `warm.cache_headroom` unless set: stop before a node's used memory would pass 90% of its
/// limit.
pub const DEFAULT_CACHE_HEADROOM: f64 = 0.9;

/// How a rule's values are loaded and written.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleLoad {
    /// Index into the configured sources.
    pub source: usize,
    /// How the source is asked for one key.
    pub fetch: Fetch,
    /// Time to live of warmed keys; `None` when the rule says `ttl = "none"`, and for
    /// sources whose entries bring their own (peer copies) or write nothing (replays).
    pub ttl: Option<Duration>,
    /// Random spread of the TTL, as a fraction (0.1 = ±10%).
    pub ttl_jitter: f64,
    /// Overrides `warm.on_existing` for this rule.
    pub on_existing: Option<WriteMode>,
    /// Overrides `warm.invalidations` for this rule.
    pub invalidations: Option<Invalidations>,
}

/// Everything a warm run needs besides the plan, the sources and the backend.
#[derive(Debug, Clone, Copy)]
pub struct WarmJob<'a> {
    /// The run's settings.
    pub settings: &'a WarmSettings,
    /// The rules, for their names and to turn a planned key into its source's input.
    pub rules: &'a RuleSet,
    /// How each rule's values are loaded, by rule index (`None`: the rule has no source).
    pub loads: &'a [Option<RuleLoad>],
}
