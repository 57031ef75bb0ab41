//! Everything the analyzer knows about one (rule, key): counts, times, sizes, latency,
//! cache hits and misses, the decayed score, and how two of them merge. `new`, `add` and
//! `merge` run per line or per key from the tally and the merge, which sit in other modules,
//! so they carry `#[inline]`: a build of several codegen units may not inline them otherwise.

use super::decay::HalfLife;
use crate::logformat::{CacheStatus, Record};

/// Everything known about one (rule, key).
#[derive(Debug, Clone)]
pub struct KeyStats {
    /// Requests (a lower bound once the rule's table has been pruned).
    pub count: u64,
    /// Earliest request time, Unix ms (`i64::MAX` when the log has no times).
    pub first_ms: i64,
    /// Latest request time, Unix ms (`i64::MIN` when the log has no times).
    pub last_ms: i64,
    /// Sum and number of logged response sizes.
    pub bytes_sum: u64,
    /// Requests whose size was logged.
    pub bytes_n: u64,
    /// Sum of logged latencies, µs (integers keep the merge order-independent).
    pub latency_sum_us: u64,
    /// Requests whose latency was logged.
    pub latency_n: u64,
    /// Largest logged latency, µs.
    pub latency_max_us: u64,
    /// Cache hits observed in the log.
    pub hits: u64,
    /// Cache misses observed in the log.
    pub misses: u64,
    /// Σ 2^((t − last_ms) / half-life) over requests: the recency-decayed count as of `last_ms`.
    pub decay: f64,
}

impl KeyStats {
    #[inline]
    pub(super) fn new() -> Self {
        KeyStats {
            count: 0,
            first_ms: i64::MAX,
            last_ms: i64::MIN,
            bytes_sum: 0,
            bytes_n: 0,
            latency_sum_us: 0,
            latency_n: 0,
            latency_max_us: 0,
            hits: 0,
            misses: 0,
            decay: 0.0,
        }
    }

    #[inline]
    pub(super) fn add(&mut self, rec: &Record<'_>, half_life: Option<&HalfLife>) {
        self.count += 1;
        if let Some(h) = half_life {
            self.decay = match rec.time_ms {
                Some(_) if self.last_ms == i64::MIN => self.decay + 1.0,
                Some(t) if t > self.last_ms => self.decay * h.weight(t - self.last_ms) + 1.0,
                Some(t) => self.decay + h.weight(self.last_ms - t),
                None => self.decay + 1.0,
            };
        }
        if let Some(t) = rec.time_ms {
            self.first_ms = self.first_ms.min(t);
            self.last_ms = self.last_ms.max(t);
        }
        if let Some(b) = rec.bytes {
            self.bytes_sum += b;
            self.bytes_n += 1;
        }
        if let Some(l) = rec.latency_us {
            self.latency_sum_us += l;
            self.latency_n += 1;
            self.latency_max_us = self.latency_max_us.max(l);
        }
        match rec.cache {
            Some(CacheStatus::Hit) => self.hits += 1,
            Some(CacheStatus::Miss) => self.misses += 1,
            _ => {}
        }
    }

    /// Folds `other` (a later chunk's stats for the same key) into `self`.
    #[inline]
    pub(super) fn merge(&mut self, other: &KeyStats, half_life: Option<&HalfLife>) {
        if let Some(h) = half_life {
            let newest = self.last_ms.max(other.last_ms);
            // The newer side needs no scaling (2^0): skipping it saves one of two weights per
            // merged key and changes no bit.
            let scale = |d: f64, at: i64| {
                if at == i64::MIN || newest == i64::MIN || at == newest {
                    d
                } else {
                    d * h.weight(newest - at)
                }
            };
            self.decay = scale(self.decay, self.last_ms) + scale(other.decay, other.last_ms);
        }
        self.count += other.count;
        self.first_ms = self.first_ms.min(other.first_ms);
        self.last_ms = self.last_ms.max(other.last_ms);
        self.bytes_sum += other.bytes_sum;
        self.bytes_n += other.bytes_n;
        self.latency_sum_us += other.latency_sum_us;
        self.latency_n += other.latency_n;
        self.latency_max_us = self.latency_max_us.max(other.latency_max_us);
        self.hits += other.hits;
        self.misses += other.misses;
    }

    /// A field from each cache line the statistics span (88 bytes), for reading a batch of
    /// them ahead of the work on them: their cache misses then overlap instead of following
    /// each other.
    pub fn read_ahead(&self) -> u64 {
        self.count ^ self.latency_max_us ^ self.decay.to_bits()
    }

    /// The recency-decayed count as of `at` (Unix ms); the plain count without a half-life.
    pub fn decayed_count(&self, at: i64, half_life: Option<&HalfLife>) -> f64 {
        match half_life {
            Some(h) if self.last_ms != i64::MIN && at != i64::MIN => self.decay * h.weight(at - self.last_ms),
            Some(_) => self.decay,
            None => self.count as f64,
        }
    }

    /// Mean logged response size.
    pub fn mean_bytes(&self) -> Option<f64> {
        (self.bytes_n > 0).then(|| self.bytes_sum as f64 / self.bytes_n as f64)
    }

    /// Mean logged latency in ms.
    pub fn mean_latency_ms(&self) -> Option<f64> {
        (self.latency_n > 0).then(|| self.latency_sum_us as f64 / self.latency_n as f64 / 1000.0)
    }
}
