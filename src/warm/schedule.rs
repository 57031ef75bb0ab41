//! The scheduler: which batch starts next and when the run stops. A batch starts only when
//! its source's breaker and pacing allow it, the cache has room for it and the process is
//! within its memory budget; the run stops at the deadline, on the stop signal, at the memory
//! budget, at the cache's headroom, or when the cache starts evicting.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::batch::{Batch, Outcome, Target, run_batch};
use super::breaker::Gate;
use super::room::{self, CacheRoom};
use super::tally::Tally;
use super::{GRACE, OpenSource, Progress, RunStatus, WarmJob};
use crate::backend::Backend;
use crate::failure::FailureReason;
use crate::source::SourceError;

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
    Fail(usize, FailureReason, String),
    /// Nothing may start before this instant.
    WaitUntil(tokio::time::Instant),
    /// Nothing may start until a batch in flight finishes.
    Nothing,
}

/// Finds the first batch, hottest first, that may start now, skipping those whose source is
/// cooling down; `bytes_room` caps the estimated bytes of the batch (`None`: no cap).
fn pick<B>(
    batches: &VecDeque<Batch>,
    job: &WarmJob<'_>,
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
        let Some(load) = &job.loads[batch.rule] else { continue };
        let source = match &sources[load.source] {
            Ok(source) => source,
            Err(e) => return Pick::Fail(i, FailureReason::SourceError, e.to_string()),
        };
        if bytes_room.is_some_and(|room| batch.est_bytes > room) || !source.pacing.allows() {
            continue;
        }
        match source.breaker.gate(now) {
            Gate::Pass => {}
            Gate::Down => return Pick::Fail(i, FailureReason::SourceDown, String::new()),
            Gate::Wait(until) => {
                earliest = Some(earliest.map_or(until, |e| e.min(until)));
                continue;
            }
            Gate::Probing => continue,
        }
        return match target.breaker.gate(now) {
            Gate::Pass => Pick::Start(i),
            Gate::Down => Pick::Fail(i, FailureReason::BackendDown, String::new()),
            Gate::Wait(until) => Pick::WaitUntil(until),
            Gate::Probing => Pick::Nothing,
        };
    }
    earliest.map_or(Pick::Nothing, Pick::WaitUntil)
}

/// What the scheduler reports to, and when it must stop.
pub(super) struct Hooks<'a> {
    pub(super) deadline: tokio::time::Instant,
    pub(super) progress: &'a (dyn Fn(&Progress) + Sync),
    pub(super) started: Instant,
}

/// Runs the batches: at most `concurrency` in flight, within the bytes-in-flight cap, the
/// breakers, the deadline, the stop signal and the memory budget.
pub(super) async fn drive<B: Backend + 'static>(
    mut batches: VecDeque<Batch>,
    job: &WarmJob<'_>,
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
    let (mut cache, readings) = CacheRoom::read(&*target.backend, job.settings.cache_headroom).await;
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
        if stopped.is_none() && !batches.is_empty() && tasks.len() < job.settings.concurrency {
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
            match pick(&batches, job, sources, &target, room) {
                Pick::Start(i)
                    if cache.watched() && !cache.fits(cache_in_flight, cache_cost(&batches[i])) =>
                {
                    tracing::warn!(
                        headroom = format!("{:.0}%", 100.0 * job.settings.cache_headroom),
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
                    let load = job.loads[rule].clone().expect("batched rules have a load");
                    let source = sources[load.source].as_ref().expect("picked sources are open").clone();
                    let ran_with = source.pacing.started();
                    let mode = load.on_existing.unwrap_or(job.settings.on_existing);
                    let (target, invalidations) = (target.clone(), job.settings.invalidations);
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
                    Some(Err(e)) => (e.id(), Err(if e.is_cancelled() { FailureReason::Cancelled } else { FailureReason::Panicked })),
                    None => continue,
                };
                let Some((rule, n, est, cost, ran_with)) = in_flight.remove(&id) else { continue };
                let outcome = outcome.unwrap_or_else(|reason| Outcome::failed(reason, n, String::new()));
                if let Some(source) = source_of(job, sources, rule) {
                    let fullness = n as f64 / job.settings.batch_size.max(1) as f64;
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
    tally.report.pacing = sources
        .iter()
        .filter_map(|open| open.as_ref().ok())
        .map(|open| open.pacing.report(&open.name))
        .filter(|p| p.batches > 0)
        .collect();
}

/// The open source a rule loads from.
fn source_of<'a>(
    job: &WarmJob<'_>,
    sources: &'a [Result<Arc<OpenSource>, SourceError>],
    rule: usize,
) -> Option<&'a OpenSource> {
    let load = job.loads[rule].as_ref()?;
    sources[load.source].as_deref().ok()
}

/// What a batch may take of the cache's memory while it is written: its estimated values
/// twice (stored, and in the server's buffer of the pipelined write, which counts against the
/// limit as well), its keys and their overhead.
fn cache_cost(batch: &Batch) -> u64 {
    let keys: u64 = batch.keys.iter().map(|j| j.key.len() as u64 + room::PER_KEY_OVERHEAD).sum();
    2 * batch.est_bytes + keys
}

/// Where the run stands, for the progress callback.
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
