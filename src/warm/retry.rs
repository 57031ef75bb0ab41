//! Retries with backoff, and the breaker told how they went: a source or backend error that
//! may go away is tried again, up to three calls, unless the dependency's breaker opens.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::breaker::Breaker;
use crate::backend::BackendError;
use crate::source::SourceError;

/// Attempts per query or write when the error is retryable.
const ATTEMPTS: u32 = 3;

/// A small generator for TTL jitter (no need for a cryptographic one).
pub(super) fn jitter_factor(spread: f64, state: &mut u64) -> f64 {
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

/// A seed for the jitter generator, from the clock: runs and batches jitter differently.
pub(super) fn clock_seed() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64)
}

/// An error that may go away if the same request is tried again.
pub(super) trait Transient {
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
pub(super) async fn with_retries<T, E: Transient, F: Future<Output = Vec<Result<T, E>>>>(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_its_band() {
        let mut seed = 3;
        for _ in 0..1000 {
            let f = jitter_factor(0.1, &mut seed);
            assert!((0.9..=1.1).contains(&f));
        }
    }
}
