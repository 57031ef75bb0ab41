//! The warm run: a plan's keys are loaded from their sources in batches and written to the
//! backend, inside hard time and memory budgets.
//!
//! A run first takes the backend's run lock, so two deploys do not warm the same cache at
//! once (the second skips or waits, as configured). Keys are validated before anything is
//! fetched; invalid ones are counted and sampled, never written. Batches (one per rule and
//! `batch_size` keys, in plan order, so the hottest go first) run `concurrency` at a time,
//! within a cap on the estimated bytes in flight. A source error is retried with exponential
//! backoff and jitter when retrying can help; each source and the backend have a circuit
//! breaker that holds their batches back while they recover and fails them once
//! they count as down, so a database that is down costs only the rules that use it.
//! With `invalidations = "verify"`, a written batch is read from its source once more and a
//! key whose value changed in between is taken back (see [`Backend::take_back`]), so a value
//! the application changed and invalidated during the warm is never left behind.
//! At the deadline, on the stop signal, or when the process's resident memory reaches the
//! budget, no new batch starts and batches in flight get a short grace before they are
//! cancelled. The caller passes the stop signal, so tests can use a short timer.
//!
//! One file per piece: `settings` (what a run is told), `batch` (one batch fetched, written
//! and verified), `retry`, `breaker`, `pacing`, `room` (the cache's free room), `lock`,
//! `schedule` (which batch starts next, and when the run stops), `tally` and `report`.

mod batch;
mod breaker;
mod lock;
mod pacing;
mod report;
mod retry;
mod room;
mod schedule;
mod settings;
mod tally;

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use self::batch::{Batch, Outcome, Target};
use self::breaker::Breaker;
use self::lock::{Locking, take_lock};
use self::pacing::Pacing;
pub use self::pacing::{PacingStep, SourcePacing};
use self::schedule::{Hooks, drive};
use self::tally::{SAMPLES, Tally};
pub use report::{RuleReport, RunReport, RunStatus, WarmOutcome};
pub use settings::{
    DEFAULT_CACHE_HEADROOM, Invalidations, LockPolicy, MAX_DEADLINE, ReadyAt, RuleLoad, StalePolicy, WarmJob,
    WarmSettings,
};

use crate::backend::Backend;
use crate::failure::FailureReason;
use crate::plan::Plan;
use crate::source::{Job, Source, SourceError, SourceSettings};

/// How long batches in flight may finish after the deadline before they are cancelled.
pub const GRACE: Duration = Duration::from_secs(2);

/// A source with its circuit breaker and its adaptive concurrency.
pub struct OpenSource {
    /// The source's name in the config, for the report.
    name: String,
    source: Source,
    breaker: Breaker,
    pacing: Pacing,
}

/// Opens every configured source (lazily: nothing connects yet). A source that cannot be set
/// up (an unset environment variable, a missing root) is `Err` and costs only its rules.
pub fn open_sources(
    sources: &[SourceSettings],
    settings: &WarmSettings,
) -> Vec<Result<Arc<OpenSource>, SourceError>> {
    sources
        .iter()
        .map(|s| {
            let pacing = match settings.adaptive_concurrency {
                true => Pacing::new(settings.concurrency),
                false => Pacing::fixed(settings.concurrency),
            };
            let source = Source::open(s)?;
            Ok(Arc::new(OpenSource { name: s.name.clone(), source, breaker: Breaker::default(), pacing }))
        })
        .collect()
}

/// Where a run stands, for progress bars and log lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Keys handled (written, present, missing or failed).
    pub done: u64,
    /// Keys to handle.
    pub planned: u64,
    /// Keys written or overwritten so far.
    pub written: u64,
    /// Keys failed so far.
    pub failed: u64,
    /// Time since the run started.
    pub elapsed: Duration,
    /// Whether the warmed keys have reached `warm.ready_at`: the warm set is good enough for
    /// traffic (a readiness probe may pass), though the run goes on.
    pub ready: bool,
    /// The share of the profile's requests the keys warmed so far cover.
    pub warmed_coverage: f64,
}

/// Warms `backend` with `plan`. Ends at `job.settings.deadline`, when `stop` completes, or at
/// the memory budget, whichever is first; never panics on bad data and never fails as a
/// whole: every problem is counted in the report. `progress` is called after every batch and
/// every few seconds.
pub async fn run<B: Backend + 'static>(
    plan: &Plan,
    job: &WarmJob<'_>,
    sources: &[Result<Arc<OpenSource>, SourceError>],
    backend: Arc<B>,
    stop: impl Future<Output = ()>,
    progress: &(dyn Fn(&Progress) + Sync),
) -> RunReport {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + job.settings.deadline;
    let rule_defs = job.rules.rules();
    let mut report = RunReport::new(
        backend.describe(),
        plan.keys.len() as u64,
        plan.predicted_coverage,
        rule_defs.iter().map(|r| RuleReport { name: r.name.clone(), ..RuleReport::default() }).collect(),
    );
    let batches = make_batches(plan, job, &|key| backend.check_key(key), &mut report);
    let ready_when = job.settings.ready_at.map(|at| match at {
        ReadyAt::Coverage(share) => ((share * plan.requests_covered as f64).ceil() as u64, u64::MAX),
        ReadyAt::Keys(n) => (u64::MAX, n.min(plan.keys.len() as u64)),
    });
    let mut tally = Tally {
        report,
        plan,
        landed: vec![false; plan.keys.len()],
        landed_keys: 0,
        covered: 0,
        ready_when,
        started,
    };
    let report = &mut tally.report;
    let available = crate::memory::available();
    report.memory_budget = available.map(|a| job.settings.max_memory.bytes(a.bytes));
    if available.is_none() {
        tracing::warn!("this platform does not report available memory; the memory budget is not enforced");
    }

    tokio::pin!(stop);
    let lock = if batches.is_empty() {
        Locking::Unavailable
    } else {
        take_lock(&*backend, job, deadline, &mut stop).await
    };
    match lock {
        Locking::Busy => {
            tracing::info!(lock = %job.settings.lock_key, "another run is warming this cache; skipping (warm.lock = \"skip\")");
            report.status = RunStatus::Locked;
        }
        Locking::Refused(ref e) => {
            tracing::error!(error = %e, "the backend refused the connection; nothing is warmed");
            for batch in batches {
                let n = batch.keys.len() as u64;
                tally.record(batch.rule, Outcome::failed(FailureReason::BackendError, n, e.to_string()));
            }
        }
        Locking::Stopped(status) => {
            report.status = status;
            report.not_started = batches.iter().map(|b| b.keys.len() as u64).sum();
        }
        Locking::Held(_) | Locking::Unavailable => {
            tracing::info!(
                planned = plan.keys.len(),
                batches = batches.len(),
                backend = %report.backend,
                deadline = %humantime::format_duration(job.settings.deadline),
                memory_budget_mib = report.memory_budget.map(|b| b >> 20),
                "warming"
            );
            let batches = without_broken_queries(batches, job, sources, deadline, &mut tally).await;
            let target = Target { backend: backend.clone(), breaker: Breaker::default() };
            let hooks = Hooks { deadline, progress, started };
            drive(batches, job, sources, Arc::new(target), &mut tally, stop, hooks).await;
        }
    }
    if let Locking::Held(token) = &lock
        && let Err(e) = backend.unlock(&job.settings.lock_key, token).await
    {
        tracing::warn!(lock = %job.settings.lock_key, error = %e, "cannot release the run lock; it expires by itself");
    }
    let warmed_coverage = tally.coverage();
    let Tally { mut report, landed, .. } = tally;
    report.warmed_coverage = warmed_coverage;
    report.duration_ms = started.elapsed().as_millis() as u64;
    let tried = report.written
        + report.overwritten
        + report.skipped_existing
        + report.missing_in_source
        + report.uncacheable
        + report.replayed;
    report.keys_per_sec = tried as f64 / started.elapsed().as_secs_f64().max(1e-3);
    report.peak_memory = crate::memory::peak_resident();
    // When nothing landed, every planned key is unwritten and the counts say so already.
    if report.landed() > 0 {
        for (k, _) in plan.keys.iter().zip(&landed).filter(|(_, landed)| !**landed) {
            report.not_written.entry(report.rules[k.rule].name.clone()).or_default().push(k.key.clone());
        }
    }
    report.conclude();
    report
}

/// Has each SQL rule's database prepare the rule's query before any batch runs. A query the
/// database refuses (a missing table or column, a syntax error, a column preheat cannot read)
/// fails its rule's keys at once with the database's words, instead of batch after batch
/// through retries and the breaker. A database that cannot be reached now is left to the
/// batches, which retry.
async fn without_broken_queries(
    batches: VecDeque<Batch>,
    job: &WarmJob<'_>,
    sources: &[Result<Arc<OpenSource>, SourceError>],
    deadline: tokio::time::Instant,
    tally: &mut Tally<'_>,
) -> VecDeque<Batch> {
    let mut broken: Vec<(usize, SourceError)> = Vec::new();
    for (rule, load) in job.loads.iter().enumerate() {
        let Some(load) = load.as_ref().filter(|l| matches!(l.fetch, crate::source::Fetch::Sql { .. })) else {
            continue;
        };
        let Some(Ok(open)) = sources.get(load.source) else { continue };
        if !batches.iter().any(|b| b.rule == rule) {
            continue;
        }
        if let Ok(Err(e)) = tokio::time::timeout_at(deadline, open.source.check_fetch(&load.fetch)).await
            && !e.retryable
        {
            tracing::error!(rule = %job.rules.rules()[rule].name, error = %e, "the rule's query is refused; its keys fail");
            broken.push((rule, e));
        }
    }
    if broken.is_empty() {
        return batches;
    }
    let mut kept = VecDeque::with_capacity(batches.len());
    for batch in batches {
        match broken.iter().find(|(rule, _)| *rule == batch.rule) {
            Some((_, e)) => {
                let n = batch.keys.len() as u64;
                tally.record(batch.rule, Outcome::failed(e.reason, n, e.to_string()));
            }
            None => kept.push_back(batch),
        }
    }
    kept
}

/// Validates the plan's keys (`check_key`: the backend's rules) and groups them into batches,
/// hottest first; invalid keys and keys of rules without a source are counted in `report`.
fn make_batches(
    plan: &Plan,
    job: &WarmJob<'_>,
    check_key: &dyn Fn(&str) -> Result<(), &'static str>,
    report: &mut RunReport,
) -> VecDeque<Batch> {
    let rule_defs = job.rules.rules();
    let mut pending: Vec<Batch> = (0..rule_defs.len())
        .map(|rule| Batch { rule, keys: Vec::new(), planned_at: Vec::new(), est_bytes: 0 })
        .collect();
    let mut batches = VecDeque::new();
    let mut invalid_samples = Vec::new();
    for (index, k) in plan.keys.iter().enumerate() {
        let rr = &mut report.rules[k.rule];
        rr.planned += 1;
        let Some(load) = &job.loads[k.rule] else {
            report.no_source += 1;
            continue;
        };
        let input = check_key(&k.key).and_then(|()| load.fetch.input(&rule_defs[k.rule], &k.key, &k.params));
        let input = match input {
            Ok(input) => input,
            Err(why) => {
                rr.invalid += 1;
                report.invalid_keys += 1;
                if invalid_samples.len() < SAMPLES {
                    invalid_samples.push(format!("{:?}: {why}", k.key.chars().take(80).collect::<String>()));
                }
                continue;
            }
        };
        let batch = &mut pending[k.rule];
        batch.keys.push(Job { key: k.key.clone(), input });
        batch.planned_at.push(index as u32);
        batch.est_bytes += k.est_bytes;
        if batch.keys.len() >= job.settings.batch_size {
            let empty = Batch { rule: k.rule, keys: Vec::new(), planned_at: Vec::new(), est_bytes: 0 };
            let full = std::mem::replace(batch, empty);
            batches.push_back(full);
        }
    }
    batches.extend(pending.into_iter().filter(|b| !b.keys.is_empty()));
    if !invalid_samples.is_empty() {
        tracing::warn!(count = report.invalid_keys, samples = ?invalid_samples, "invalid keys are not written");
    }
    report.invalid_samples = invalid_samples;
    batches
}
