//! The warm run: a plan's keys are loaded from their sources in batches and written to the
//! backend, inside a hard deadline.
//!
//! Keys are validated before anything is fetched; invalid ones are counted and sampled, never
//! written. Batches (one per rule and `batch_size` keys, in plan order, so the hottest go
//! first) run `concurrency` at a time. A source error is retried with exponential backoff and
//! jitter when retrying can help; after repeated failures a source's circuit opens and its
//! remaining batches fail fast, so a database that is down costs only the rules that use it;
//! the backend has the same breaker, so a cache that died ends the run in seconds.
//! At the deadline (or on the stop signal) no new batch starts and batches in flight get a
//! short grace before they are cancelled. The caller passes the stop signal, so tests can use
//! a short timer.

mod report;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub use report::{RuleReport, RunReport, RunStatus};

use crate::backend::{Backend, BackendError, Entry, WriteMode, Written};
use crate::config::{Config, RuleLoad};
use crate::plan::Plan;
use crate::source::{SourceError, SqlSource, resolve_secret};

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// How long batches in flight may finish after the deadline before they are cancelled.
pub const GRACE: Duration = Duration::from_secs(2);
/// Consecutive failed batches after which a source's circuit opens.
const BREAKER_THRESHOLD: u32 = 5;
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

/// A source with its circuit breaker.
pub struct OpenSource {
    sql: SqlSource,
    consecutive_failures: AtomicU32,
}

/// Opens every configured source (lazily: nothing connects yet). A source whose URL cannot be
/// resolved is `Err` and costs only its rules.
pub fn open_sources(config: &Config) -> Vec<Result<Arc<OpenSource>, SourceError>> {
    config
        .sources
        .iter()
        .map(|s| {
            let url = resolve_secret(&s.url).map_err(|message| SourceError {
                source_name: s.name.clone(),
                message,
                retryable: false,
            })?;
            let sql = SqlSource::new(&s.name, &url, s.max_connections, s.timeout)?;
            Ok(Arc::new(OpenSource { sql, consecutive_failures: AtomicU32::new(0) }))
        })
        .collect()
}

/// A batch of keys of one rule.
struct Batch {
    rule: usize,
    /// (key, lookup value)
    keys: Vec<(String, String)>,
}

/// What a finished batch did.
#[derive(Default)]
struct Outcome {
    written: u64,
    overwritten: u64,
    existed: u64,
    missing: u64,
    bytes: u64,
    failed: Option<(&'static str, u64, String)>,
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

/// The backend with its circuit breaker: after repeated failed writes the remaining batches
/// fail at once instead of each waiting out reconnect timeouts.
struct Target<B> {
    backend: Arc<B>,
    consecutive_failures: AtomicU32,
}

async fn run_batch<B: Backend>(
    batch: Batch,
    load: RuleLoad,
    source: Arc<OpenSource>,
    target: Arc<Target<B>>,
    mode: WriteMode,
) -> Outcome {
    let n = batch.keys.len() as u64;
    if target.consecutive_failures.load(Ordering::Relaxed) >= BREAKER_THRESHOLD {
        return Outcome { failed: Some(("backend_down", n, String::new())), ..Outcome::default() };
    }
    if source.consecutive_failures.load(Ordering::Relaxed) >= BREAKER_THRESHOLD {
        return Outcome { failed: Some(("source_down", n, String::new())), ..Outcome::default() };
    }
    let lookups: Vec<String> = batch.keys.iter().map(|(_, v)| v.clone()).collect();
    let mut seed = clock_seed();
    let mut attempt = 1;
    let fetched = loop {
        match source.sql.fetch(&load.query, &lookups).await {
            Err(e) if e.retryable && attempt < ATTEMPTS => {
                tokio::time::sleep(backoff(attempt, &mut seed)).await;
                attempt += 1;
            }
            result => break result,
        }
    };
    let rows = match fetched {
        Ok(rows) => {
            source.consecutive_failures.store(0, Ordering::Relaxed);
            rows
        }
        Err(e) => {
            source.consecutive_failures.fetch_add(1, Ordering::Relaxed);
            let reason = if e.message.contains("longer than") { "source_timeout" } else { "source_error" };
            return Outcome { failed: Some((reason, n, e.to_string())), ..Outcome::default() };
        }
    };
    let values: HashMap<String, Vec<u8>> = rows.into_iter().collect();
    let mut outcome = Outcome::default();
    let mut entries = Vec::with_capacity(batch.keys.len());
    for (key, lookup) in batch.keys {
        match values.get(&lookup) {
            Some(v) => {
                let ttl = load.ttl.map(|t| {
                    t.mul_f64(jitter_factor(load.ttl_jitter, &mut seed)).max(Duration::from_millis(1))
                });
                entries.push(Entry { key, value: v.clone(), ttl });
            }
            None => outcome.missing += 1,
        }
    }
    let sizes: Vec<u64> = entries.iter().map(|e| e.value.len() as u64).collect();
    let mut attempt = 1;
    let written = loop {
        match target.backend.write_batch(entries.clone(), mode).await {
            Err(BackendError { retryable: true, .. }) if attempt < ATTEMPTS => {
                tokio::time::sleep(backoff(attempt, &mut seed)).await;
                attempt += 1;
            }
            result => break result,
        }
    };
    match written {
        Ok(results) => {
            target.consecutive_failures.store(0, Ordering::Relaxed);
            for (w, size) in results.iter().zip(sizes) {
                match w {
                    Written::Created => {
                        outcome.written += 1;
                        outcome.bytes += size;
                    }
                    Written::Replaced => {
                        outcome.overwritten += 1;
                        outcome.bytes += size;
                    }
                    Written::Existed => outcome.existed += 1,
                }
            }
        }
        Err(e) => {
            target.consecutive_failures.fetch_add(1, Ordering::Relaxed);
            outcome.failed = Some(("backend_error", sizes.len() as u64, e.to_string()));
        }
    }
    outcome
}

/// Warms `backend` with `plan`. Ends at `config.warm.deadline` or when `stop` completes,
/// whichever is first; never panics on bad data and never fails as a whole: every problem is
/// counted in the report.
pub async fn run<B: Backend + 'static>(
    plan: &Plan,
    config: &Config,
    sources: &[Result<Arc<OpenSource>, SourceError>],
    backend: Arc<B>,
    stop: impl Future<Output = ()>,
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

    // Validate and batch, hottest first.
    let mut pending: Vec<Vec<(String, String)>> = vec![Vec::new(); rule_defs.len()];
    let mut batches: std::collections::VecDeque<Batch> = Default::default();
    let param_names: Vec<Vec<String>> = rule_defs.iter().map(|r| r.params()).collect();
    for k in &plan.keys {
        let rr = &mut report.rules[k.rule];
        rr.planned += 1;
        let Some(load) = &config.loads[k.rule] else {
            report.no_source += 1;
            continue;
        };
        let lookup = serde_json::from_str::<serde_json::Value>(&k.params).ok().and_then(|p| {
            p.get(&param_names[k.rule][load.param]).and_then(|v| v.as_str()).map(str::to_string)
        });
        let problem = validate_key(&k.key).err().or(if lookup.is_none() {
            Some("has no lookup parameter")
        } else {
            None
        });
        if let Some(why) = problem {
            rr.invalid += 1;
            report.invalid_keys += 1;
            if report.invalid_samples.len() < SAMPLES {
                report
                    .invalid_samples
                    .push(format!("{:?}: {why}", k.key.chars().take(80).collect::<String>()));
            }
            continue;
        }
        pending[k.rule].push((k.key.clone(), lookup.unwrap_or_default()));
        if pending[k.rule].len() >= config.warm.batch_size {
            batches.push_back(Batch { rule: k.rule, keys: std::mem::take(&mut pending[k.rule]) });
        }
    }
    for (rule, keys) in pending.into_iter().enumerate() {
        if !keys.is_empty() {
            batches.push_back(Batch { rule, keys });
        }
    }
    let invalid_samples = std::mem::take(&mut report.invalid_samples);
    if !invalid_samples.is_empty() {
        tracing::warn!(count = report.invalid_keys, samples = ?invalid_samples, "invalid keys are not written");
    }
    report.invalid_samples = invalid_samples;

    let total_batches = batches.len();
    tracing::info!(
        planned = plan.keys.len(),
        batches = total_batches,
        backend = %report.backend,
        deadline = %humantime::format_duration(config.warm.deadline),
        "warming"
    );
    let permits = Arc::new(Semaphore::new(config.warm.concurrency));
    let target = Arc::new(Target { backend, consecutive_failures: AtomicU32::new(0) });
    let mut tasks: JoinSet<(usize, u64, Outcome)> = JoinSet::new();
    let mut in_flight: HashMap<tokio::task::Id, (usize, u64)> = HashMap::new();
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    let mut done_keys = 0u64;

    let record = |report: &mut RunReport, rule: usize, n: u64, o: Outcome| {
        let rr = &mut report.rules[rule];
        rr.written += o.written;
        rr.overwritten += o.overwritten;
        rr.skipped_existing += o.existed;
        rr.missing_in_source += o.missing;
        report.written += o.written;
        report.overwritten += o.overwritten;
        report.skipped_existing += o.existed;
        report.missing_in_source += o.missing;
        report.bytes_written += o.bytes;
        if let Some((reason, failed, message)) = o.failed {
            rr.failed += failed;
            *report.failed.entry(reason.to_string()).or_insert(0) += failed;
            if !message.is_empty() && report.errors.len() < SAMPLES && !report.errors.contains(&message) {
                tracing::warn!(rule = %rr.name, keys = failed, error = %message, "batch failed");
                report.errors.push(message);
            }
        }
        let _ = n;
    };

    let mut stopped: Option<RunStatus> = None;
    loop {
        if stopped.is_none() && !batches.is_empty() && tasks.len() < config.warm.concurrency {
            let batch = batches.pop_front().expect("not empty");
            let n = batch.keys.len() as u64;
            let rule = batch.rule;
            let load = config.loads[rule].clone().expect("batched rules have a load");
            match &sources[load.source] {
                Err(e) => {
                    record(
                        &mut report,
                        rule,
                        n,
                        Outcome { failed: Some(("source_error", n, e.to_string())), ..Outcome::default() },
                    );
                    done_keys += n;
                }
                Ok(source) => {
                    let (source, target, permits) = (source.clone(), target.clone(), permits.clone());
                    let mode = load.on_existing.unwrap_or(config.warm.on_existing);
                    let handle = tasks.spawn(async move {
                        let _permit = permits.acquire_owned().await;
                        (rule, n, run_batch(batch, load, source, target, mode).await)
                    });
                    in_flight.insert(handle.id(), (rule, n));
                }
            }
            continue;
        }
        if tasks.is_empty() && (batches.is_empty() || stopped.is_some()) {
            break;
        }
        tokio::select! {
            joined = tasks.join_next_with_id() => match joined {
                Some(Ok((id, (rule, n, outcome)))) => {
                    in_flight.remove(&id);
                    record(&mut report, rule, n, outcome);
                    done_keys += n;
                }
                Some(Err(e)) => {
                    if let Some((rule, n)) = in_flight.remove(&e.id()) {
                        let reason = if e.is_cancelled() { "cancelled" } else { "panicked" };
                        record(&mut report, rule, n, Outcome { failed: Some((reason, n, String::new())), ..Outcome::default() });
                    }
                }
                None => {}
            },
            _ = tokio::time::sleep_until(deadline), if stopped.is_none() => stopped = Some(RunStatus::Deadline),
            _ = &mut stop, if stopped.is_none() => stopped = Some(RunStatus::Interrupted),
            _ = tokio::time::sleep_until(deadline + GRACE), if stopped.is_some() => tasks.abort_all(),
            _ = ticker.tick() => {
                let secs = started.elapsed().as_secs_f64();
                let rate = done_keys as f64 / secs.max(1e-3);
                let left = plan.keys.len() as u64 - done_keys.min(plan.keys.len() as u64);
                tracing::info!(
                    "warm progress: {done_keys}/{} keys, {rate:.0} keys/s, ETA {:.0}s, {} failed",
                    plan.keys.len(),
                    left as f64 / rate.max(1e-3),
                    report.failed.values().sum::<u64>()
                );
            }
        }
        if stopped.is_some() && !batches.is_empty() {
            let left: u64 = batches.drain(..).map(|b| b.keys.len() as u64).sum();
            report.not_started += left;
        }
    }
    report.status = stopped.unwrap_or(RunStatus::Completed);
    report.duration_ms = started.elapsed().as_millis() as u64;
    let tried = report.written + report.overwritten + report.skipped_existing + report.missing_in_source;
    report.keys_per_sec = tried as f64 / started.elapsed().as_secs_f64().max(1e-3);
    report
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
