//! Adaptive concurrency per source (AIMD, as TCP and Netflix's concurrency limits do), so a
//! database that the new deployment's first requests already load is not flooded by the warm.
//!
//! A source starts with one batch in flight. After each batch (but the first, which also paid
//! for connecting) its latency is compared with the best seen: near the best (within
//! [`GROW_BELOW`] times it, or a few milliseconds) the limit grows by one batch per window
//! (`+1/limit` per batch that ran at the limit); past [`CUT_ABOVE`] times it (and ten
//! milliseconds) the limit shrinks by a fifth, and a timeout or connection error halves it.
//! `warm.concurrency` is the ceiling; `qps` and the source's own `concurrency` still cap what a
//! batch sends.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Latency at most this many times the best seen lets the limit grow.
pub const GROW_BELOW: f64 = 1.25;
/// Latency over this many times the best seen cuts the limit.
pub const CUT_ABOVE: f64 = 1.5;
/// Below these margins over the best, a change of latency is noise, not load: a source that
/// answers in a millisecond jitters by more than half of it (measured: a SQLite source's
/// batches of 500 keys held at one in flight, a quarter slower than at four).
const GROW_MARGIN: Duration = Duration::from_millis(5);
/// See [`GROW_MARGIN`].
const CUT_MARGIN: Duration = Duration::from_millis(10);
/// Batches smaller than this share of the batch size say little about latency (fixed costs
/// dominate them): they neither set the best latency nor cut the limit.
const FULL_ENOUGH: f64 = 0.5;
/// Changes of the limit kept for the report.
const TIMELINE: usize = 200;

/// One change of a source's limit, for the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PacingStep {
    /// When, ms after the warm started.
    pub at_ms: u64,
    /// Batches the source may have in flight from then on.
    pub limit: u32,
    /// The latency of the batch that moved it, ms.
    pub latency_ms: u64,
}

/// How one source was paced during a warm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourcePacing {
    /// The source's name.
    pub source: String,
    /// Batches it answered.
    pub batches: u64,
    /// Its best batch latency, ms.
    pub best_ms: u64,
    /// Median and 95th percentile of its batch latencies, ms.
    pub p50_ms: u64,
    /// See `p50_ms`.
    pub p95_ms: u64,
    /// The highest limit reached and the last one.
    pub max_limit: u32,
    /// See `max_limit`.
    pub final_limit: u32,
    /// The limit's changes over the run (the first 200).
    pub timeline: Vec<PacingStep>,
}

#[derive(Debug)]
struct State {
    /// Whether the limit moves; a fixed one stays at the ceiling.
    adaptive: bool,
    limit: f64,
    ceiling: f64,
    in_flight: usize,
    best: Option<Duration>,
    latencies: Vec<Duration>,
    max_limit: u32,
    timeline: Vec<PacingStep>,
}

/// One source's adaptive limit; shared by the batches that use it.
#[derive(Debug)]
pub struct Pacing {
    state: Mutex<State>,
}

impl Pacing {
    /// A limit that starts at one batch and never passes `ceiling`.
    pub fn new(ceiling: usize) -> Pacing {
        Pacing::with(true, 1.0, ceiling)
    }

    /// A limit that stays at `ceiling` (`warm.adaptive_concurrency = false`).
    pub fn fixed(ceiling: usize) -> Pacing {
        Pacing::with(false, ceiling.max(1) as f64, ceiling)
    }

    fn with(adaptive: bool, limit: f64, ceiling: usize) -> Pacing {
        let ceiling = ceiling.max(1) as f64;
        Pacing {
            state: Mutex::new(State {
                adaptive,
                limit,
                ceiling,
                in_flight: 0,
                best: None,
                latencies: Vec::new(),
                max_limit: limit as u32,
                timeline: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A few numbers; a panic elsewhere cannot leave them inconsistent.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether another batch may start now.
    pub fn allows(&self) -> bool {
        let s = self.state();
        (s.in_flight as f64) < s.limit.floor().max(1.0)
    }

    /// A batch started; returns how many are in flight with it, to hand back to
    /// [`Pacing::finished`].
    pub fn started(&self) -> usize {
        let mut s = self.state();
        s.in_flight += 1;
        s.in_flight
    }

    /// A batch ended after `latency` at `at` (since the warm's start); `fullness` is its share
    /// of the batch size, `ran_with` the batches in flight when it started (itself included),
    /// and `trouble` says a query timed out or a connection failed. The limit grows only on
    /// batches that ran at it: a fast batch that started with room to spare proves nothing
    /// about the limit.
    pub fn finished(
        &self,
        latency: Option<Duration>,
        fullness: f64,
        ran_with: usize,
        trouble: bool,
        at: Duration,
    ) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        let before = s.limit.floor() as u32;
        if let Some(latency) = latency.filter(|_| !trouble) {
            s.latencies.push(latency);
        }
        if !s.adaptive {
            return;
        }
        if trouble {
            s.limit = (s.limit / 2.0).max(1.0);
        } else if let Some(latency) = latency {
            // The first batch also paid for connecting: it says nothing of the load.
            let warmed_up = s.latencies.len() > 1;
            let saturated = ran_with as f64 >= s.limit.floor();
            let full = fullness >= FULL_ENOUGH;
            if full && warmed_up && s.best.is_none_or(|b| latency < b) {
                s.best = Some(latency);
            }
            // A small batch is light: it may show room to grow, never a reason to cut.
            let near = s.best.is_none_or(|b| latency <= b.mul_f64(GROW_BELOW).max(b + GROW_MARGIN));
            let slow = s.best.is_some_and(|b| latency > b.mul_f64(CUT_ABOVE).max(b + CUT_MARGIN));
            if warmed_up && saturated && near {
                s.limit = (s.limit + 1.0 / s.limit).min(s.ceiling);
            } else if warmed_up && full && slow {
                s.limit = (s.limit * 0.8).max(1.0);
            }
        }
        let after = s.limit.floor() as u32;
        s.max_limit = s.max_limit.max(after);
        if after != before && s.timeline.len() < TIMELINE {
            let latency_ms = latency.map_or(0, |l| l.as_millis() as u64);
            s.timeline.push(PacingStep { at_ms: at.as_millis() as u64, limit: after, latency_ms });
        }
    }

    /// How the source was paced.
    pub fn report(&self, source: &str) -> SourcePacing {
        let s = self.state();
        let mut sorted = s.latencies.clone();
        sorted.sort_unstable();
        let pick = |q: f64| {
            sorted
                .get(((sorted.len() as f64 * q).ceil() as usize).saturating_sub(1))
                .map_or(0, |d| d.as_millis() as u64)
        };
        SourcePacing {
            source: source.to_string(),
            batches: sorted.len() as u64,
            best_ms: s.best.map_or(0, |d| d.as_millis() as u64),
            p50_ms: pick(0.5),
            p95_ms: pick(0.95),
            max_limit: s.max_limit,
            final_limit: s.limit.floor() as u32,
            timeline: s.timeline.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_limit_grows_near_the_best_latency_and_falls_when_latency_rises() {
        let p = Pacing::new(8);
        assert!(p.allows());
        p.started();
        assert!(!p.allows(), "one batch at first");
        // Latency at the best: the limit grows, one batch per window.
        p.finished(Some(20 * MS), 1.0, 1, false, MS);
        for _ in 0..12 {
            let limit = p.report("db").final_limit as usize;
            let ran_with = (0..limit).map(|_| p.started()).last().unwrap_or(1);
            for _ in 0..limit {
                p.finished(Some(20 * MS), 1.0, ran_with, false, MS);
            }
        }
        let grown = p.report("db").final_limit;
        assert!((4..=8).contains(&grown), "{grown}");
        // Latency well over the best: it shrinks; a timeout halves it.
        for _ in 0..3 {
            let ran_with = p.started();
            p.finished(Some(60 * MS), 1.0, ran_with, false, MS);
        }
        let cut = p.report("db").final_limit;
        assert!(cut < grown, "{cut} after {grown}");
        let ran_with = p.started();
        p.finished(None, 1.0, ran_with, true, MS);
        assert!(p.report("db").final_limit <= cut.div_ceil(2).max(1));
        // A slow small batch does not cut it.
        let before = p.report("db").final_limit;
        let ran_with = p.started();
        p.finished(Some(500 * MS), 0.1, ran_with, false, MS);
        assert_eq!(p.report("db").final_limit, before);
    }

    #[test]
    fn the_limit_never_passes_its_ceiling() {
        let p = Pacing::new(3);
        for _ in 0..50 {
            let ran_with = p.started();
            p.finished(Some(10 * MS), 1.0, ran_with.max(3), false, MS);
        }
        assert_eq!(p.report("db").final_limit, 3);
        assert_eq!(p.report("db").max_limit, 3);
    }
}
