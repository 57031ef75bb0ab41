//! One batch: its keys fetched from the source, written to the backend, and (with
//! `invalidations = "verify"`) read once more so that a value changed meanwhile is taken back.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::breaker::Breaker;
use super::retry::{clock_seed, jitter_factor, with_retries};
use super::{Invalidations, OpenSource, RuleLoad};
use crate::backend::{Backend, Entry, WriteMode, Written};
use crate::failure::FailureReason;
use crate::source::{Fetched, Job};

/// A batch of keys of one rule.
pub(super) struct Batch {
    pub(super) rule: usize,
    pub(super) keys: Vec<Job>,
    /// Each key's index in the plan, to tell which planned keys reached the cache.
    pub(super) planned_at: Vec<u32>,
    /// The plan's estimate of the values' size.
    pub(super) est_bytes: u64,
}

/// What a finished batch did.
#[derive(Default)]
pub(super) struct Outcome {
    pub(super) written: u64,
    pub(super) overwritten: u64,
    pub(super) existed: u64,
    pub(super) missing: u64,
    pub(super) uncacheable: u64,
    pub(super) replayed: u64,
    pub(super) invalidated: u64,
    pub(super) bytes: u64,
    /// Keys failed, by reason, with the first message of each reason.
    pub(super) failed: Vec<(FailureReason, u64, String)>,
    /// Plan indices of the keys the cache holds afterwards (written, replaced, already there,
    /// or replayed for the application to cache).
    pub(super) landed: Vec<u32>,
    /// How long the source took to answer the batch, retries included.
    pub(super) source_latency: Option<Duration>,
    /// Whether a query timed out or a connection failed on the way.
    pub(super) source_trouble: bool,
}

impl Outcome {
    pub(super) fn failed(reason: FailureReason, keys: u64, message: String) -> Self {
        Outcome { failed: vec![(reason, keys, message)], ..Outcome::default() }
    }

    fn fail(&mut self, reason: FailureReason, keys: u64, message: String) {
        match self.failed.iter_mut().find(|(r, _, _)| *r == reason) {
            Some((_, n, _)) => *n += keys,
            None => self.failed.push((reason, keys, message)),
        }
    }
}

/// The backend with its circuit breaker.
pub(super) struct Target<B> {
    pub(super) backend: Arc<B>,
    pub(super) breaker: Breaker,
}

/// Fetches a batch from its source (with retries), writes what it found in `mode`, and with
/// `invalidations = "verify"` reads the written keys again; never fails as a whole, every
/// key's fate is counted in the outcome.
pub(super) async fn run_batch<B: Backend>(
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
            Err(e) => outcome.fail(FailureReason::BackendError, 1, e.to_string()),
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
                outcome.fail(FailureReason::Unverified, 1, e.to_string());
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
                outcome.fail(FailureReason::Unverified, 1, why);
            }
            taken_back.push(i);
        }
    }
    taken_back
}
