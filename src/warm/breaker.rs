//! A circuit breaker for one dependency (a source, or the backend).
//!
//! After [`THRESHOLD`] failed requests in a row the circuit opens: batches that need the
//! dependency are held back, not failed, for a cool-down. Then one batch goes through as a
//! probe; success closes the circuit and the held batches resume, failure opens it again for
//! twice as long. After [`MAX_TRIPS`] openings in a row the dependency is declared down and its
//! remaining batches fail at once. So a database restart of a few seconds costs only a pause,
//! while one that stays down costs its rules about seven seconds, not the whole deadline.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Failed requests (queries or writes, retries included) in a row that open the circuit.
pub const THRESHOLD: u32 = 5;
/// Openings in a row after which the dependency counts as down.
pub const MAX_TRIPS: u32 = 4;
/// The first cool-down; each further opening doubles it (1 + 2 + 4 s before giving up).
const COOL_DOWN: Duration = Duration::from_secs(1);

/// Whether a batch may use the dependency now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Go ahead.
    Pass,
    /// Hold the batch until then.
    Wait(Instant),
    /// A probe is in flight: hold the batch until it ends.
    Probing,
    /// The dependency is down: fail the batch.
    Down,
}

#[derive(Debug, Default)]
struct State {
    failures_in_a_row: u32,
    trips_in_a_row: u32,
    open_until: Option<Instant>,
    probing: bool,
}

/// One dependency's breaker; shared by the batches that use it.
#[derive(Debug, Default)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters; a panic elsewhere cannot leave it inconsistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether a batch may go now. After a cool-down the first caller gets `Pass` and is the
    /// probe: the caller must then start the batch.
    pub fn gate(&self, now: Instant) -> Gate {
        let mut s = self.state();
        if s.trips_in_a_row >= MAX_TRIPS {
            return Gate::Down;
        }
        match s.open_until {
            None => Gate::Pass,
            Some(until) if until > now => Gate::Wait(until),
            Some(_) if s.probing => Gate::Probing,
            Some(_) => {
                s.probing = true;
                Gate::Pass
            }
        }
    }

    /// Whether the circuit is open (cooling down) now; unlike [`Breaker::gate`] this never
    /// hands out the probe.
    pub fn is_open(&self, now: Instant) -> bool {
        let s = self.state();
        s.trips_in_a_row >= MAX_TRIPS || s.open_until.is_some_and(|until| until > now)
    }

    /// A request succeeded: the circuit closes.
    pub fn success(&self) {
        *self.state() = State::default();
    }

    /// A request failed.
    pub fn failure(&self, now: Instant) {
        let mut s = self.state();
        s.failures_in_a_row += 1;
        s.probing = false;
        // Failures of batches that were already in flight when it opened are not new trips.
        if s.failures_in_a_row >= THRESHOLD && s.open_until.is_none_or(|until| until <= now) {
            s.trips_in_a_row += 1;
            s.open_until = Some(now + COOL_DOWN * (1 << (s.trips_in_a_row - 1).min(8)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_repeated_failures_then_probes_then_gives_up() {
        let b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..THRESHOLD - 1 {
            b.failure(t0);
        }
        assert_eq!(b.gate(t0), Gate::Pass);
        b.failure(t0);
        assert_eq!(b.gate(t0), Gate::Wait(t0 + COOL_DOWN));
        // Batches in flight that fail now do not extend the cool-down.
        b.failure(t0);
        assert_eq!(b.gate(t0), Gate::Wait(t0 + COOL_DOWN));
        // One probe at a time; a failed probe doubles the cool-down; after MAX_TRIPS the
        // dependency is down.
        let mut now = t0 + COOL_DOWN;
        for trip in 2..=MAX_TRIPS {
            assert_eq!(b.gate(now), Gate::Pass, "trip {trip}: the probe");
            assert_eq!(b.gate(now), Gate::Probing, "trip {trip}: only one probe");
            b.failure(now);
            let wait = COOL_DOWN * (1 << (trip - 1));
            if trip < MAX_TRIPS {
                assert_eq!(b.gate(now), Gate::Wait(now + wait), "trip {trip}");
            }
            now += wait;
        }
        assert_eq!(b.gate(now), Gate::Down);
    }

    #[test]
    fn a_successful_probe_closes_the_circuit() {
        let b = Breaker::default();
        let t0 = Instant::now();
        for _ in 0..THRESHOLD {
            b.failure(t0);
        }
        assert!(matches!(b.gate(t0), Gate::Wait(_)));
        assert_eq!(b.gate(t0 + COOL_DOWN), Gate::Pass, "the probe");
        b.success();
        assert_eq!(b.gate(t0), Gate::Pass);
        b.failure(t0);
        assert_eq!(b.gate(t0), Gate::Pass, "one failure after a success does not open it");
    }
}
