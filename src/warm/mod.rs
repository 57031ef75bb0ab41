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

mod breaker;
mod pacing;
mod report;
mod room;

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::task::JoinSet;

use self::breaker::{Breaker, Gate};
use self::pacing::Pacing;
pub use self::pacing::{PacingStep, SourcePacing};
use self::room::CacheRoom;
pub use report::{RuleReport, RunReport, RunStatus, WarmOutcome};

use crate::backend::{Backend, BackendError, Entry, WriteMode, Written};
use crate::config::{Config, Invalidations, LockPolicy, ReadyAt, RuleLoad};
use crate::plan::Plan;
use crate::source::{Fetched, Job, Source, SourceError};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// How long batches in flight may finish after the deadline before they are cancelled.
pub const GRACE: Duration = Duration::from_secs(2);
/// Attempts per query or write when the error is retryable.
const ATTEMPTS: u32 = 3;
/// Invalid keys kept as samples.
const SAMPLES: usize = 5;

/// Why a key is refused.
pub fn validate_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("longer than 1024 bytes");
    }
    if key.chars().any(char::is_whitespace) {
        return Err("contains white space");
    }
    if key.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}

/// A source with its circuit breaker and its adaptive concurrency.
pub struct OpenSource {
    source: Source,
    breaker: Breaker,
    pacing: Pacing,
}

/// Opens every configured source (lazily: nothing connects yet). A source that cannot be set
/// up (an unset environment variable, a missing root) is `Err` and costs only its rules.
pub fn open_sources(config: &Config) -> Vec<Result<Arc<OpenSource>, SourceError>> {
    config
        .sources
        .iter()
        .map(|s| {
            let pacing = match config.warm.adaptive_concurrency {
                true => Pacing::new(config.warm.concurrency),
                false => Pacing::fixed(config.warm.concurrency),
            };
            Ok(Arc::new(OpenSource { source: Source::open(s)?, breaker: Breaker::default(), pacing }))
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

/// A batch of keys of one rule.
struct Batch {
    rule: usize,
    keys: Vec<Job>,
    /// Each key's index in the plan, to tell which planned keys reached the cache.
    planned_at: Vec<u32>,
    /// The plan's estimate of the values' size.
    est_bytes: u64,
}

/// What a finished batch did.
#[derive(Default)]
struct Outcome {
    written: u64,
    overwritten: u64,
    existed: u64,
    missing: u64,
    uncacheable: u64,
    replayed: u64,
    invalidated: u64,
    bytes: u64,
    /// Keys failed, by reason, with the first message of each reason.
    failed: Vec<(&'static str, u64, String)>,
    /// Plan indices of the keys the cache holds afterwards (written, replaced, already there,
    /// or replayed for the application to cache).
    landed: Vec<u32>,
    /// How long the source took to answer the batch, retries included.
    source_latency: Option<Duration>,
    /// Whether a query timed out or a connection failed on the way.
    source_trouble: bool,
}

impl Outcome {
    fn failed(reason: &'static str, keys: u64, message: String) -> Self {
        Outcome { failed: vec![(reason, keys, message)], ..Outcome::default() }
    }

    fn fail(&mut self, reason: &'static str, keys: u64, message: String) {
        match self.failed.iter_mut().find(|(r, _, _)| *r == reason) {
            Some((_, n, _)) => *n += keys,
            None => self.failed.push((reason, keys, message)),
        }
    }
}

/// A small generator for TTL jitter (no need for a cryptographic one).
fn jitter_factor(spread: f64, state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    let unit = ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64;
    1.0 + spread * (2.0 * unit - 1.0)
}

/// Backoff before retry `attempt` (1-based): 50 ms doubling, ±50% jitter.
fn backoff(attempt: u32, seed: &mut u64) -> Duration {
    Duration::from_millis(50 << attempt.min(6)).mul_f64(jitter_factor(0.5, seed))
}

fn clock_seed() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}

/// The backend with its circuit breaker.
struct Target<B> {
    backend: Arc<B>,
    breaker: Breaker,
}

async fn run_batch<B: Backend>(
    batch: Batch,
    load: RuleLoad,
    source: Arc<OpenSource>,
    target: Arc<Target<B>>,
    mode: WriteMode,
    config_invalidations: Invalidations,
) -> Outcome {
    let n = batch.keys.len();
    let mut seed = clock_seed();
    let (keys, fetch, from) = (&batch.keys, &load.fetch, &source.source);
    let asked = Instant::now();
    let results = with_retries(n, &source.breaker, &mut seed, |pending| async move {
        let jobs: Vec<&Job> = pending.iter().map(|&i| &keys[i]).collect();
        from.fetch(fetch, &jobs).await
    })
    .await;
    let verify = load.invalidations.unwrap_or(config_invalidations) == Invalidations::Verify;
    let mut outcome = Outcome {
        source_latency: Some(asked.elapsed()),
        source_trouble: results.iter().any(|r| r.as_ref().is_err_and(|e| e.retryable)),
        ..Outcome::default()
    };
    let mut entries = Vec::with_capacity(n);
    // The plan indices of `entries`.
    let mut entry_at = Vec::with_capacity(n);
    // The jobs of `entries`, to read them again after the write.
    let mut again: Vec<Job> = Vec::new();
    for ((job, result), at) in batch.keys.into_iter().zip(results).zip(batch.planned_at) {
        if verify && matches!(result, Ok(Fetched::Value { .. } | Fetched::Dump { .. })) {
            again.push(job.clone());
        }
        match result {
            Ok(Fetched::Value { value, max_ttl }) => {
                let ttl = load.ttl.map(|t| {
                    t.mul_f64(jitter_factor(load.ttl_jitter, &mut seed)).max(Duration::from_millis(1))
                });
                // The source may allow less than the rule (HTTP `max-age`).
                let ttl = match (ttl, max_ttl) {
                    (Some(t), Some(cap)) => Some(t.min(cap)),
                    (t, cap) => t.or(cap),
                };
                entries.push(Entry { key: job.key, value, ttl, dump: false });
                entry_at.push(at);
            }
            Ok(Fetched::Dump { payload, ttl }) => {
                entries.push(Entry { key: job.key, value: payload, ttl, dump: true });
                entry_at.push(at);
            }
            Ok(Fetched::Missing) => outcome.missing += 1,
            Ok(Fetched::Uncacheable) => outcome.uncacheable += 1,
            Ok(Fetched::Replayed) => {
                outcome.replayed += 1;
                outcome.landed.push(at);
            }
            Err(e) => outcome.fail(e.reason, 1, e.to_string()),
        }
    }
    if entries.is_empty() {
        return outcome;
    }
    let (all, backend) = (&entries, &target.backend);
    let written = with_retries(entries.len(), &target.breaker, &mut seed, |pending| async move {
        if pending.len() == all.len() {
            backend.write_batch(all, mode).await
        } else {
            // A retry of some entries (a cluster node that was down): rare, so copied.
            let retry: Vec<Entry> = pending.iter().map(|&i| all[i].clone()).collect();
            backend.write_batch(&retry, mode).await
        }
    })
    .await;
    let mut wrote = Vec::new();
    let mut landed = vec![false; entries.len()];
    for (i, (entry, result)) in entries.iter().zip(written).enumerate() {
        let size = entry.value.len() as u64;
        match result {
            Ok(Written::Created) => {
                outcome.written += 1;
                outcome.bytes += size;
                wrote.push((i, Written::Created));
                landed[i] = true;
            }
            Ok(Written::Replaced) => {
                outcome.overwritten += 1;
                outcome.bytes += size;
                wrote.push((i, Written::Replaced));
                landed[i] = true;
            }
            Ok(Written::Existed) => {
                outcome.existed += 1;
                landed[i] = true;
            }
            Err(e) => outcome.fail("backend_error", 1, e.to_string()),
        }
    }
    if verify && !wrote.is_empty() {
        for taken_back in
            verify_written(&source, &load, &target, &again, &entries, &wrote, &mut outcome).await
        {
            landed[taken_back] = false;
        }
    }
    outcome.landed.extend(entry_at.iter().zip(landed).filter(|(_, l)| *l).map(|(at, _)| *at));
    outcome
}

/// Reads the keys a batch wrote from their source once more. A key whose value changed since
/// the first read was changed by the application while the warm loaded it, and the
/// application's invalidation may have come before the write (deleting a key that was not
/// there yet, which nothing can observe): such a key is taken back, deleted while it still
/// holds the warm's value. Any later change invalidates after the write, as usual. A key the
/// source cannot answer for now is taken back too: it cannot be vouched for. Returns the
/// entries taken back.
async fn verify_written<B: Backend>(
    source: &OpenSource,
    load: &RuleLoad,
    target: &Target<B>,
    jobs: &[Job],
    entries: &[Entry],
    wrote: &[(usize, Written)],
    outcome: &mut Outcome,
) -> Vec<usize> {
    let asked: Vec<&Job> = wrote.iter().map(|(i, _)| &jobs[*i]).collect();
    let mut seed = clock_seed();
    let (asked_ref, fetch, from) = (&asked, &load.fetch, &source.source);
    let answers = with_retries(asked.len(), &source.breaker, &mut seed, |pending| async move {
        let jobs: Vec<&Job> = pending.iter().map(|&i| asked_ref[i]).collect();
        from.fetch(fetch, &jobs).await
    })
    .await;
    // (entry, how it was written, whether the source answered: changed, or unverifiable)
    let mut back = Vec::new();
    for (&(i, how), answer) in wrote.iter().zip(answers) {
        match answer {
            Ok(Fetched::Value { value, .. }) if value == entries[i].value => {}
            Ok(Fetched::Dump { payload, .. }) if payload == entries[i].value => {}
            Ok(_) => back.push((i, how, None)),
            Err(e) => back.push((i, how, Some(e.to_string()))),
        }
    }
    if back.is_empty() {
        return Vec::new();
    }
    let changed = back.iter().filter(|(_, _, e)| e.is_none()).count();
    outcome.invalidated += changed as u64;
    if changed * 2 > wrote.len() && changed > 4 {
        tracing::warn!(
            changed,
            of = wrote.len(),
            "most values of a batch differ on a second read (answers that change on every read?); \
             set `invalidations = \"off\"` on the rule if its source is never stale"
        );
    }
    let refs: Vec<&Entry> = back.iter().map(|(i, _, _)| &entries[*i]).collect();
    let mut taken_back = Vec::new();
    for ((i, how, unverifiable), result) in back.into_iter().zip(target.backend.take_back(&refs).await) {
        let taken = match result {
            Ok(taken) => taken,
            Err(e) => {
                outcome.fail("unverified", 1, e.to_string());
                continue;
            }
        };
        // Not taken: deleted by the application already, or replaced by a newer value, so
        // nothing of the warm's is left either way.
        if taken {
            match how {
                Written::Created => outcome.written -= 1,
                _ => outcome.overwritten -= 1,
            }
            outcome.bytes -= entries[i].value.len() as u64;
            if let Some(why) = unverifiable {
                outcome.fail("unverified", 1, why);
            }
            taken_back.push(i);
        }
    }
    taken_back
}

/// An error that may go away if the same request is tried again.
trait Transient {
    fn transient(&self) -> bool;
}

impl Transient for SourceError {
    fn transient(&self) -> bool {
        self.retryable
    }
}

impl Transient for BackendError {
    fn transient(&self) -> bool {
        self.retryable
    }
}

/// Calls `call` with the indices of all `n` items, then again with those that failed with a
/// transient error, up to [`ATTEMPTS`] calls with backoff in between; one result per item.
/// The breaker hears of a success when anything succeeded and of a failure when nothing did
/// and retrying could help. Once it is open, retrying would only add load to a struggling
/// dependency, so the last errors stand and the breaker decides when to try again.
async fn with_retries<T, E: Transient, F: Future<Output = Vec<Result<T, E>>>>(
    n: usize,
    breaker: &Breaker,
    seed: &mut u64,
    mut call: impl FnMut(Vec<usize>) -> F,
) -> Vec<Result<T, E>> {
    let mut results: Vec<Option<Result<T, E>>> = (0..n).map(|_| None).collect();
    let mut pending: Vec<usize> = (0..n).collect();
    let mut attempt = 1;
    while !pending.is_empty() {
        let answers = call(pending.clone()).await;
        let (mut any_ok, mut retry) = (false, Vec::new());
        for (&i, result) in pending.iter().zip(answers) {
            match &result {
                Ok(_) => any_ok = true,
                Err(e) if e.transient() => retry.push(i),
                Err(_) => {}
            }
            results[i] = Some(result);
        }
        let now = tokio::time::Instant::now();
        if any_ok {
            breaker.success();
        } else if !retry.is_empty() {
            breaker.failure(now);
        }
        if retry.is_empty() || attempt >= ATTEMPTS || breaker.is_open(now) {
            break;
        }
        tokio::time::sleep(backoff(attempt, seed)).await;
        attempt += 1;
        pending = retry;
    }
    results.into_iter().map(|r| r.expect("every item was tried")).collect()
}

/// How taking the run lock went.
enum Locking {
    /// This run holds it, under this token.
    Held(String),
    /// Another run holds it (and we did not or could not wait).
    Busy,
    /// The backend could not be asked; the run goes on without the lock (its writes are still
    /// "if absent", so a concurrent run cannot make them wrong, only redundant).
    Unavailable,
    /// The backend refused us for good (credentials, certificate): nothing could be written, so
    /// nothing is fetched either.
    Refused(crate::backend::BackendError),
    /// The deadline or the stop signal came while waiting.
    Stopped(RunStatus),
}

async fn take_lock<B: Backend>(
    backend: &B,
    config: &Config,
    deadline: tokio::time::Instant,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Locking {
    let token = format!("{}-{}", std::process::id(), clock_seed());
    // Outlives this run's deadline and grace, so a run that dies cannot hold it for long.
    let ttl = config.warm.deadline + GRACE + Duration::from_secs(5);
    let key = &config.warm.lock_key;
    let mut waiting = false;
    loop {
        match backend.try_lock(key, &token, ttl).await {
            Ok(true) => return Locking::Held(token),
            Ok(false) if config.warm.lock == LockPolicy::Skip => return Locking::Busy,
            Ok(false) => {
                if !waiting {
                    tracing::info!(lock = %key, "another run is warming this cache; waiting for it to finish");
                    waiting = true;
                }
            }
            Err(e) if !e.retryable => return Locking::Refused(e),
            Err(e) => {
                tracing::warn!(lock = %key, error = %e, "cannot take the run lock; warming without it");
                return Locking::Unavailable;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = tokio::time::sleep_until(deadline) => return Locking::Stopped(RunStatus::Deadline),
            _ = stop.as_mut() => return Locking::Stopped(RunStatus::Interrupted),
        }
    }
}

/// Reads the process's resident memory at most every few milliseconds.
struct MemoryWatch {
    budget: Option<u64>,
    checked: Option<Instant>,
    over: bool,
}

impl MemoryWatch {
    fn over_budget(&mut self) -> bool {
        let Some(budget) = self.budget else { return false };
        if !self.over && self.checked.is_none_or(|t| t.elapsed() >= Duration::from_millis(20)) {
            self.checked = Some(Instant::now());
            self.over = crate::memory::resident().is_some_and(|rss| rss > budget);
        }
        self.over
    }
}

/// The next batch to act on.
enum Pick {
    /// Start the batch at this index.
    Start(usize),
    /// Fail the batch at this index: its source (or the backend) is down.
    Fail(usize, &'static str, String),
    /// Nothing may start before this instant.
    WaitUntil(tokio::time::Instant),
    /// Nothing may start until a batch in flight finishes.
    Nothing,
}

/// Finds the first batch, hottest first, that may start now, skipping those whose source is
/// cooling down; `bytes_room` caps the estimated bytes of the batch (`None`: no cap).
fn pick<B>(
    batches: &VecDeque<Batch>,
    config: &Config,
    sources: &[Result<Arc<OpenSource>, SourceError>],
    target: &Target<B>,
    bytes_room: Option<u64>,
) -> Pick {
    let now = tokio::time::Instant::now();
    let mut earliest: Option<tokio::time::Instant> = None;
    // Gates hand out the probe after a cool-down, so they are asked only for a batch that
    // will start if they pass.
    let Some(first) = batches.front() else { return Pick::Nothing };
    if bytes_room.is_some_and(|room| first.est_bytes > room) {
        return Pick::Nothing;
    }
    for (i, batch) in batches.iter().enumerate() {
        let Some(load) = &config.loads[batch.rule] else { continue };
        let source = match &sources[load.source] {
            Ok(source) => source,
            Err(e) => return Pick::Fail(i, "source_error", e.to_string()),
        };
        if bytes_room.is_some_and(|room| batch.est_bytes > room) || !source.pacing.allows() {
            continue;
        }
        match source.breaker.gate(now) {
            Gate::Pass => {}
            Gate::Down => return Pick::Fail(i, "source_down", String::new()),
            Gate::Wait(until) => {
                earliest = Some(earliest.map_or(until, |e| e.min(until)));
                continue;
            }
            Gate::Probing => continue,
        }
        return match target.breaker.gate(now) {
            Gate::Pass => Pick::Start(i),
            Gate::Down => Pick::Fail(i, "backend_down", String::new()),
            Gate::Wait(until) => Pick::WaitUntil(until),
            Gate::Probing => Pick::Nothing,
        };
    }
    earliest.map_or(Pick::Nothing, Pick::WaitUntil)
}

/// Warms `backend` with `plan`. Ends at `config.warm.deadline`, when `stop` completes, or at
/// the memory budget, whichever is first; never panics on bad data and never fails as a
/// whole: every problem is counted in the report. `progress` is called after every batch and
/// every few seconds.
pub async fn run<B: Backend + 'static>(
    plan: &Plan,
    config: &Config,
    sources: &[Result<Arc<OpenSource>, SourceError>],
    backend: Arc<B>,
    stop: impl Future<Output = ()>,
    progress: &(dyn Fn(&Progress) + Sync),
) -> RunReport {
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + config.warm.deadline;
    let rule_defs = config.rules.rules();
    let mut report = RunReport::new(
        backend.describe(),
        plan.keys.len() as u64,
        plan.predicted_coverage,
        rule_defs.iter().map(|r| RuleReport { name: r.name.clone(), ..RuleReport::default() }).collect(),
    );
    let batches = make_batches(plan, config, &mut report);
    let ready_when = config.warm.ready_at.map(|at| match at {
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
    report.memory_budget = available.map(|a| config.warm.max_memory.bytes(a.bytes));
    if available.is_none() {
        tracing::warn!("this platform does not report available memory; the memory budget is not enforced");
    }

    tokio::pin!(stop);
    let lock = if batches.is_empty() {
        Locking::Unavailable
    } else {
        take_lock(&*backend, config, deadline, &mut stop).await
    };
    match lock {
        Locking::Busy => {
            tracing::info!(lock = %config.warm.lock_key, "another run is warming this cache; skipping (warm.lock = \"skip\")");
            report.status = RunStatus::Locked;
        }
        Locking::Refused(ref e) => {
            tracing::error!(error = %e, "the backend refused the connection; nothing is warmed");
            for batch in batches {
                let n = batch.keys.len() as u64;
                tally.record(batch.rule, Outcome::failed("backend_error", n, e.to_string()));
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
                deadline = %humantime::format_duration(config.warm.deadline),
                memory_budget_mib = report.memory_budget.map(|b| b >> 20),
                "warming"
            );
            let target = Target { backend: backend.clone(), breaker: Breaker::default() };
            let hooks = Hooks { deadline, progress, started };
            drive(batches, config, sources, Arc::new(target), &mut tally, stop, hooks).await;
        }
    }
    if let Locking::Held(token) = &lock
        && let Err(e) = backend.unlock(&config.warm.lock_key, token).await
    {
        tracing::warn!(lock = %config.warm.lock_key, error = %e, "cannot release the run lock; it expires by itself");
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

/// Validates the plan's keys and groups them into batches, hottest first; invalid keys and
/// keys of rules without a source are counted in `report`.
fn make_batches(plan: &Plan, config: &Config, report: &mut RunReport) -> VecDeque<Batch> {
    let rule_defs = config.rules.rules();
    let mut pending: Vec<Batch> = (0..rule_defs.len())
        .map(|rule| Batch { rule, keys: Vec::new(), planned_at: Vec::new(), est_bytes: 0 })
        .collect();
    let mut batches = VecDeque::new();
    let mut invalid_samples = Vec::new();
    for (index, k) in plan.keys.iter().enumerate() {
        let rr = &mut report.rules[k.rule];
        rr.planned += 1;
        let Some(load) = &config.loads[k.rule] else {
            report.no_source += 1;
            continue;
        };
        let input =
            validate_key(&k.key).and_then(|()| load.fetch.input(&rule_defs[k.rule], &k.key, &k.params));
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
        if batch.keys.len() >= config.warm.batch_size {
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

/// What a run counts: the report, which planned keys landed, and how much of the profile's
/// traffic they cover.
struct Tally<'a> {
    report: RunReport,
    plan: &'a Plan,
    landed: Vec<bool>,
    landed_keys: u64,
    /// Profiled requests of the landed keys.
    covered: u64,
    /// What `warm.ready_at` asks for, as (covered requests, landed keys), either of which
    /// will do; `None`: ready when the run ends.
    ready_when: Option<(u64, u64)>,
    started: Instant,
}

/// What the scheduler reports to, and when it must stop.
struct Hooks<'a> {
    deadline: tokio::time::Instant,
    progress: &'a (dyn Fn(&Progress) + Sync),
    started: Instant,
}

/// Runs the batches: at most `concurrency` in flight, within the bytes-in-flight cap, the
/// breakers, the deadline, the stop signal and the memory budget.
async fn drive<B: Backend + 'static>(
    mut batches: VecDeque<Batch>,
    config: &Config,
    sources: &[Result<Arc<OpenSource>, SourceError>],
    target: Arc<Target<B>>,
    tally: &mut Tally<'_>,
    mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    hooks: Hooks<'_>,
) {
    let planned: u64 = batches.iter().map(|b| b.keys.len() as u64).sum();
    // Values are held two or three times over while a batch is decoded and written.
    let bytes_cap = tally.report.memory_budget.map(|b| b / 8);
    let mut memory = MemoryWatch { budget: tally.report.memory_budget, checked: None, over: false };
    let (mut cache, readings) = CacheRoom::read(&*target.backend, config.warm.cache_headroom).await;
    tally.report.cache_memory_before = readings;
    let mut tasks: JoinSet<Outcome> = JoinSet::new();
    // Per batch in flight: its rule, keys, estimated value bytes, cost in the cache, and the
    // batches of its source in flight when it started.
    let mut in_flight: HashMap<tokio::task::Id, (usize, u64, u64, u64, usize)> = HashMap::new();
    let mut bytes_in_flight = 0u64;
    let mut cache_in_flight = 0u64;
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    let mut done = 0u64;
    let mut wake: Option<tokio::time::Instant> = None;
    let mut stopped: Option<RunStatus> = None;
    // Batches in flight when the run stops get a grace period, then are cancelled.
    let mut cancel_at: Option<tokio::time::Instant> = None;

    loop {
        if stopped.is_none() && !batches.is_empty() && tasks.len() < config.warm.concurrency {
            if memory.over_budget() {
                tracing::warn!(
                    budget_mib = tally.report.memory_budget.map(|b| b >> 20),
                    "memory budget reached; no new batches start"
                );
                stopped = Some(RunStatus::Memory);
                cancel_at = Some(tokio::time::Instant::now() + GRACE);
                continue;
            }
            let room = match (bytes_cap, tasks.is_empty()) {
                // A batch larger than the cap still goes alone, or nothing would ever start.
                (Some(cap), false) => Some(cap.saturating_sub(bytes_in_flight)),
                _ => None,
            };
            match pick(&batches, config, sources, &target, room) {
                Pick::Start(i)
                    if cache.watched() && !cache.fits(cache_in_flight, cache_cost(&batches[i])) =>
                {
                    tracing::warn!(
                        headroom = format!("{:.0}%", 100.0 * config.warm.cache_headroom),
                        "the cache's memory would pass warm.cache_headroom; no new batches start"
                    );
                    stopped = Some(RunStatus::Headroom);
                    cancel_at = Some(tokio::time::Instant::now() + GRACE);
                    continue;
                }
                Pick::Start(i) => {
                    let batch = batches.remove(i).expect("picked index exists");
                    let cost = cache_cost(&batch);
                    let (rule, n, est) = (batch.rule, batch.keys.len() as u64, batch.est_bytes);
                    let load = config.loads[rule].clone().expect("batched rules have a load");
                    let source = sources[load.source].as_ref().expect("picked sources are open").clone();
                    let ran_with = source.pacing.started();
                    let mode = load.on_existing.unwrap_or(config.warm.on_existing);
                    let (target, invalidations) = (target.clone(), config.warm.invalidations);
                    let handle = tasks.spawn(run_batch(batch, load, source, target, mode, invalidations));
                    in_flight.insert(handle.id(), (rule, n, est, cost, ran_with));
                    bytes_in_flight += est;
                    cache_in_flight += cost;
                    wake = None;
                    continue;
                }
                Pick::Fail(i, reason, message) => {
                    let batch = batches.remove(i).expect("picked index exists");
                    let n = batch.keys.len() as u64;
                    tally.record(batch.rule, Outcome::failed(reason, n, message));
                    done += n;
                    continue;
                }
                Pick::WaitUntil(at) => wake = Some(at),
                Pick::Nothing => wake = None,
            }
        }
        if tasks.is_empty() && (batches.is_empty() || stopped.is_some()) {
            break;
        }
        tokio::select! {
            joined = tasks.join_next_with_id() => {
                let (id, outcome) = match joined {
                    Some(Ok((id, outcome))) => (id, Ok(outcome)),
                    Some(Err(e)) => (e.id(), Err(if e.is_cancelled() { "cancelled" } else { "panicked" })),
                    None => continue,
                };
                let Some((rule, n, est, cost, ran_with)) = in_flight.remove(&id) else { continue };
                let outcome = outcome.unwrap_or_else(|reason| Outcome::failed(reason, n, String::new()));
                if let Some(source) = source_of(config, sources, rule) {
                    let fullness = n as f64 / config.warm.batch_size.max(1) as f64;
                    let at = hooks.started.elapsed();
                    let (latency, trouble) = (outcome.source_latency, outcome.source_trouble);
                    source.pacing.finished(latency, fullness, ran_with, trouble, at);
                }
                bytes_in_flight -= est;
                cache_in_flight -= cost;
                tally.record(rule, outcome);
                done += n;
                if cache.watched() {
                    tally.report.evicted_during_warm = cache.refresh(&*target.backend).await;
                    if tally.report.evicted_during_warm > 0 && stopped != Some(RunStatus::Evicting) {
                        tracing::error!(
                            evicted = tally.report.evicted_during_warm,
                            "the cache is evicting keys to make room: the warm stops writing at once"
                        );
                        stopped = Some(RunStatus::Evicting);
                        tasks.abort_all();
                        cancel_at = None;
                    }
                }
                (hooks.progress)(&progress_of(tally, done, planned, hooks.started));
            }
            _ = tokio::time::sleep_until(wake.unwrap_or(hooks.deadline)), if wake.is_some() && stopped.is_none() => wake = None,
            _ = tokio::time::sleep_until(hooks.deadline), if stopped.is_none() => {
                stopped = Some(RunStatus::Deadline);
                cancel_at = Some(hooks.deadline + GRACE);
            }
            _ = stop.as_mut(), if stopped.is_none() => {
                stopped = Some(RunStatus::Interrupted);
                cancel_at = Some(tokio::time::Instant::now() + GRACE);
            }
            _ = tokio::time::sleep_until(cancel_at.unwrap_or(hooks.deadline)), if cancel_at.is_some() => {
                tasks.abort_all();
                cancel_at = None;
            }
            _ = ticker.tick() => (hooks.progress)(&progress_of(tally, done, planned, hooks.started)),
        }
    }
    // Left over only when the run stopped early.
    tally.report.not_started += batches.iter().map(|b| b.keys.len() as u64).sum::<u64>();
    tally.report.status = stopped.unwrap_or(RunStatus::Completed);
    tally.report.cache_memory_after = cache.readings().to_vec();
    tally.report.pacing = config
        .sources
        .iter()
        .zip(sources)
        .filter_map(|(settings, open)| Some(open.as_ref().ok()?.pacing.report(&settings.name)))
        .filter(|p| p.batches > 0)
        .collect();
}

/// The open source a rule loads from.
fn source_of<'a>(
    config: &Config,
    sources: &'a [Result<Arc<OpenSource>, SourceError>],
    rule: usize,
) -> Option<&'a OpenSource> {
    let load = config.loads[rule].as_ref()?;
    sources[load.source].as_deref().ok()
}

/// What a batch may take of the cache's memory while it is written: its estimated values
/// twice (stored, and in the server's buffer of the pipelined write, which counts against the
/// limit as well), its keys and their overhead.
fn cache_cost(batch: &Batch) -> u64 {
    let keys: u64 = batch.keys.iter().map(|j| j.key.len() as u64 + room::PER_KEY_OVERHEAD).sum();
    2 * batch.est_bytes + keys
}

fn progress_of(tally: &Tally<'_>, done: u64, planned: u64, started: Instant) -> Progress {
    let report = &tally.report;
    Progress {
        done,
        planned,
        written: report.written + report.overwritten,
        failed: report.failed.values().sum(),
        elapsed: started.elapsed(),
        ready: report.ready_after_ms.is_some(),
        warmed_coverage: tally.coverage(),
    }
}

impl Tally<'_> {
    /// Adds a batch's outcome to the report, marks the planned keys it landed, and notes when
    /// they first reach `warm.ready_at`.
    fn record(&mut self, rule: usize, o: Outcome) {
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
            *report.failed.entry(reason.to_string()).or_insert(0) += failed;
            if !message.is_empty() && report.errors.len() < SAMPLES && !report.errors.contains(&message) {
                tracing::warn!(rule = %rr.name, keys = failed, error = %message, "batch failed");
                report.errors.push(message);
            }
        }
    }

    /// The share of the profile's requests the landed keys cover.
    fn coverage(&self) -> f64 {
        if self.plan.requests_profiled == 0 {
            0.0
        } else {
            self.covered as f64 / self.plan.requests_profiled as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("product:42").is_ok());
        assert_eq!(validate_key(""), Err("empty"));
        assert_eq!(validate_key("a b"), Err("contains white space"));
        assert_eq!(validate_key("a\u{7}b"), Err("contains a control character"));
        assert_eq!(validate_key(&"k".repeat(1025)), Err("longer than 1024 bytes"));
    }

    #[test]
    fn jitter_stays_in_its_band() {
        let mut seed = 3;
        for _ in 0..1000 {
            let f = jitter_factor(0.1, &mut seed);
            assert!((0.9..=1.1).contains(&f));
        }
    }
}
