//! The run lock: two deploys never warm the same cache at once; the second skips or waits,
//! as configured.

use std::future::Future;
use std::time::Duration;

use super::retry::clock_seed;
use super::{GRACE, LockPolicy, RunStatus, WarmJob};
use crate::backend::{Backend, BackendError};

/// How taking the run lock went.
pub(super) enum Locking {
    /// This run holds it, under this token.
    Held(String),
    /// Another run holds it (and we did not or could not wait).
    Busy,
    /// The backend could not be asked; the run goes on without the lock (its writes are still
    /// "if absent", so a concurrent run cannot make them wrong, only redundant).
    Unavailable,
    /// The backend refused us for good (credentials, certificate): nothing could be written, so
    /// nothing is fetched either.
    Refused(BackendError),
    /// The deadline or the stop signal came while waiting.
    Stopped(RunStatus),
}

/// Takes the run lock `warm.lock_key`, waiting for another run to release it when
/// `warm.lock = "wait"`, until the deadline or the stop signal.
pub(super) async fn take_lock<B: Backend>(
    backend: &B,
    job: &WarmJob<'_>,
    deadline: tokio::time::Instant,
    stop: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
) -> Locking {
    let token = format!("{}-{}", std::process::id(), clock_seed());
    // Outlives this run's deadline and grace, so a run that dies cannot hold it for long.
    let ttl = job.settings.deadline + GRACE + Duration::from_secs(5);
    let key = &job.settings.lock_key;
    let mut waiting = false;
    loop {
        match backend.try_lock(key, &token, ttl).await {
            Ok(true) => return Locking::Held(token),
            Ok(false) if job.settings.lock == LockPolicy::Skip => return Locking::Busy,
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
