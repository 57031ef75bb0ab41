//! Miss-ratio curves: the hit ratio an LRU cache of each size would have had on a request
//! trace.
//!
//! An LRU cache of C keys hits a request exactly when the key's stack distance (the number of
//! distinct keys requested since its previous request, itself included) is at most C, so one
//! pass that histograms stack distances gives the whole curve. [`exact`] computes every
//! distance with a Fenwick tree over request positions (O(N log N)). [`sampled`] is SHARDS:
//! it keeps only keys whose hash falls under a threshold (a fixed rate R), computes their
//! distances on the sampled trace and scales them by 1/R, which tracks the exact curve closely
//! in a fraction of the time and memory.

use std::collections::HashMap;

use serde::Serialize;

/// Hit ratio at one cache size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Cache size in keys.
    pub keys: u64,
    /// Share of requests that would have hit.
    pub hit_ratio: f64,
}

/// An LRU miss-ratio curve (kept as hit ratios, which read more naturally).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MissRatioCurve {
    /// Requests in the trace.
    pub requests: u64,
    /// Distinct keys (estimated from the sample when sampled).
    pub distinct_keys: u64,
    /// The SHARDS sampling rate, or `None` for the exact curve.
    pub sampling_rate: Option<f64>,
    /// Hit ratio at 1, 2, 5, 10, ... keys up to every key.
    pub points: Vec<Point>,
}

impl MissRatioCurve {
    /// The hit ratio of a cache of `keys` keys (interpolated between points).
    pub fn hit_ratio_at(&self, keys: u64) -> f64 {
        let i = self.points.partition_point(|p| p.keys < keys);
        match (i.checked_sub(1).map(|j| self.points[j]), self.points.get(i)) {
            (_, Some(p)) if p.keys == keys => p.hit_ratio,
            (Some(a), Some(b)) => {
                let t = (keys - a.keys) as f64 / (b.keys - a.keys) as f64;
                a.hit_ratio + t * (b.hit_ratio - a.hit_ratio)
            }
            (None, Some(_)) => 0.0,
            (Some(a), None) => a.hit_ratio,
            (None, None) => 0.0,
        }
    }
}

/// A Fenwick tree of 0/1 marks over positions, answering "how many marks after position p".
struct Marks {
    tree: Vec<u32>,
    total: u64,
}

impl Marks {
    fn new(n: usize) -> Self {
        Marks { tree: vec![0; n + 1], total: 0 }
    }

    fn add(&mut self, pos: usize, delta: i32) {
        self.total = self.total.wrapping_add_signed(i64::from(delta));
        let mut i = pos + 1;
        while i < self.tree.len() {
            self.tree[i] = self.tree[i].wrapping_add_signed(delta);
            i += i & i.wrapping_neg();
        }
    }

    /// Marks at positions `0..=pos`.
    fn prefix(&self, pos: usize) -> u64 {
        let mut i = pos + 1;
        let mut sum = 0u64;
        while i > 0 {
            sum += u64::from(self.tree[i]);
            i -= i & i.wrapping_neg();
        }
        sum
    }
}

/// Stack distances of a trace: `histogram[d]` requests had distance `d` (1-based); first
/// requests of a key (infinite distance) are not counted. Returns the histogram and the number
/// of distinct keys.
fn stack_distances(trace: &[u64]) -> (Vec<u64>, u64) {
    let mut marks = Marks::new(trace.len());
    // The keys are hashes already: ahash mixes a u64 in a few instructions, where the
    // standard SipHash runs its rounds on every lookup (with ahash here and in the replays,
    // `preheat report` on the benchmark's log went from 1.46 s to 1.31 s).
    let mut last: HashMap<u64, usize, ahash::RandomState> =
        HashMap::with_capacity_and_hasher(trace.len() / 4, ahash::RandomState::new());
    let mut histogram = vec![0u64; 2];
    for (t, key) in trace.iter().enumerate() {
        if let Some(prev) = last.insert(*key, t) {
            // Distinct keys requested after `prev` (each marked at its latest position), plus
            // this key itself.
            let distance = (marks.total - marks.prefix(prev)) as usize + 1;
            if distance >= histogram.len() {
                histogram.resize((distance + 1).next_power_of_two(), 0);
            }
            histogram[distance] += 1;
            marks.add(prev, -1);
        }
        marks.add(t, 1);
    }
    (histogram, last.len() as u64)
}

/// The curve from a histogram of distances, each worth `scale` keys: hit ratios are
/// (hits + `offset`) / `weight`.
fn curve(
    histogram: &[u64],
    scale: f64,
    requests: u64,
    (weight, offset): (f64, f64),
    distinct: u64,
    rate: Option<f64>,
) -> MissRatioCurve {
    let points = crate::report::capacity::one_two_five(distinct)
        .into_iter()
        // A sample cannot tell sizes apart below one sampled key's worth.
        .filter(|&size| size as f64 >= scale || size == distinct)
        .map(|size| {
            // Distances d with d * scale <= size.
            let limit = ((size as f64 / scale).floor() as usize).min(histogram.len().saturating_sub(1));
            let hits: u64 = histogram[..=limit].iter().sum();
            let hit_ratio =
                if weight > 0.0 { ((hits as f64 + offset) / weight).clamp(0.0, 1.0) } else { 0.0 };
            Point { keys: size, hit_ratio }
        })
        .collect();
    MissRatioCurve { requests, distinct_keys: distinct, sampling_rate: rate, points }
}

/// The exact LRU curve of `trace` (keys as 64-bit hashes).
pub fn exact(trace: &[u64]) -> MissRatioCurve {
    let (histogram, distinct) = stack_distances(trace);
    let n = trace.len() as u64;
    curve(&histogram, 1.0, n, (n as f64, 0.0), distinct, None)
}

/// Whether SHARDS keeps `key` at `rate` (its hash, remixed, falls under the threshold).
fn keeps(key: u64, rate: f64) -> bool {
    let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 40) < (rate * (1u64 << 24) as f64) as u64
}

/// The SHARDS estimate of the LRU curve of `trace` at sampling `rate` (0 < rate ≤ 1).
pub fn sampled(trace: &[u64], rate: f64) -> MissRatioCurve {
    let rate = rate.clamp(1e-6, 1.0);
    let sample: Vec<u64> = trace.iter().copied().filter(|k| keeps(*k, rate)).collect();
    let (histogram, distinct) = stack_distances(&sample);
    // SHARDS-adj: a popular key that falls in (or out of) the sample makes it larger (or
    // smaller) than rate × N; the difference is credited to the smallest distances, as hits,
    // and ratios are taken of the expected size, which removes most of that bias.
    let expected = rate * trace.len() as f64;
    let offset = expected - sample.len() as f64;
    let estimated_keys = (distinct as f64 / rate).round() as u64;
    curve(&histogram, 1.0 / rate, trace.len() as u64, (expected, offset), estimated_keys, Some(rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stack distances by brute force: an explicit LRU stack.
    fn brute(trace: &[u64]) -> Vec<u64> {
        let mut stack: Vec<u64> = Vec::new();
        let mut histogram = vec![0u64; trace.len() + 2];
        for k in trace {
            if let Some(i) = stack.iter().position(|s| s == k) {
                histogram[stack.len() - i] += 1;
                stack.remove(i);
            }
            stack.push(*k);
        }
        histogram
    }

    #[test]
    fn distances_match_an_explicit_lru_stack() {
        let mut seed = 7u64;
        let trace: Vec<u64> = (0..3000)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (seed >> 33) % 200
            })
            .collect();
        let (fast, distinct) = stack_distances(&trace);
        let slow = brute(&trace);
        assert_eq!(distinct, 200);
        for (d, &expected) in slow.iter().enumerate() {
            assert_eq!(fast.get(d).copied().unwrap_or(0), expected, "distance {d}");
        }
    }

    /// `n` requests over `keys` keys with Zipf(1) popularity, keys as spread-out hashes.
    fn zipf_trace(n: usize, keys: usize, seed: u64) -> Vec<u64> {
        let mut cumulative = Vec::with_capacity(keys);
        let mut total = 0.0;
        for rank in 1..=keys {
            total += 1.0 / rank as f64;
            cumulative.push(total);
        }
        let mut state = seed;
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let u = (state >> 11) as f64 / (1u64 << 53) as f64 * total;
                let rank = cumulative.partition_point(|&c| c < u) as u64;
                rank.wrapping_mul(0x9e37_79b9_7f4a_7c15)
            })
            .collect()
    }

    /// Mean absolute error over 100 evenly spaced cache sizes up to every key (as SHARDS's
    /// authors measure it).
    fn mean_absolute_error(a: &MissRatioCurve, b: &MissRatioCurve) -> f64 {
        let sizes: Vec<u64> = (1..=100).map(|i| a.distinct_keys * i / 100).collect();
        sizes.iter().map(|&s| (a.hit_ratio_at(s) - b.hit_ratio_at(s)).abs()).sum::<f64>() / sizes.len() as f64
    }

    #[test]
    fn the_sampled_curve_is_within_a_hundredth_of_the_exact_one() {
        let trace = zipf_trace(1_000_000, 200_000, 42);
        let exact = exact(&trace);
        // At least 20k sampled requests; `preheat report` samples 200k or more.
        for rate in [0.1, 0.05, 0.02] {
            let approx = sampled(&trace, rate);
            let mae = mean_absolute_error(&exact, &approx);
            assert!(mae < 0.01, "rate {rate}: mean absolute error {mae}");
        }
    }

    #[test]
    fn a_cyclic_trace_hits_only_when_everything_fits() {
        // a b c a b c ...: LRU with fewer than 3 slots never hits.
        let trace: Vec<u64> = (0..300).map(|i| i % 3).collect();
        let c = exact(&trace);
        assert_eq!(c.hit_ratio_at(2), 0.0);
        assert!((c.hit_ratio_at(3) - 297.0 / 300.0).abs() < 1e-12);
        assert_eq!(c.distinct_keys, 3);
    }
}
