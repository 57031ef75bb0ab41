//! Cold against warm: what pre-warming would have saved on real traffic.
//!
//! A trace is split in two: the earlier part stands for the profile (its most requested keys
//! are the warm set), the later part for the traffic after a deploy. The later part is replayed
//! through an LRU cache of a given capacity twice, once empty and once pre-filled with the warm
//! set, and the hit ratios are compared over time: misses saved, and how long the cold cache
//! takes to reach its steady state.

use std::collections::HashMap;

use serde::Serialize;

/// Hit ratios of one stretch of the replay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stretch {
    /// Requests replayed before this stretch.
    pub from_request: u64,
    /// Requests in it.
    pub requests: u64,
    /// Hit ratio of the cache that started empty.
    pub cold: f64,
    /// Hit ratio of the cache that started warm.
    pub warm: f64,
}

/// The comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColdVsWarm {
    /// Cache capacity in keys.
    pub capacity: u64,
    /// Keys pre-warmed (the earlier part's most requested, at most `capacity`).
    pub warmed_keys: u64,
    /// Requests in the earlier part (the "profile").
    pub profile_requests: u64,
    /// Requests replayed.
    pub replayed_requests: u64,
    /// Misses of the cold cache.
    pub cold_misses: u64,
    /// Misses of the warm cache.
    pub warm_misses: u64,
    /// Requests until the cold cache's hit ratio first reached 95% of its steady state (the
    /// last quarter's), or `None` if it never did.
    pub cold_requests_to_steady: Option<u64>,
    /// The same for the warm cache.
    pub warm_requests_to_steady: Option<u64>,
    /// The replay in stretches.
    pub stretches: Vec<Stretch>,
}

/// An LRU cache of keys (no values): a doubly linked list in a vector, indexed by a map.
struct Lru {
    capacity: usize,
    /// Keys are hashes already, so a fast hasher serves (see `mrc::stack_distances`).
    index: HashMap<u64, usize, ahash::RandomState>,
    nodes: Vec<Node>,
    /// Most recently used.
    head: usize,
    /// Least recently used.
    tail: usize,
}

#[derive(Clone, Copy)]
struct Node {
    key: u64,
    prev: usize,
    next: usize,
}

const NIL: usize = usize::MAX;

impl Lru {
    fn new(capacity: usize) -> Self {
        Lru {
            capacity,
            index: HashMap::with_capacity_and_hasher(capacity, ahash::RandomState::new()),
            nodes: Vec::with_capacity(capacity),
            head: NIL,
            tail: NIL,
        }
    }

    fn unlink(&mut self, i: usize) {
        let Node { prev, next, .. } = self.nodes[i];
        if prev == NIL {
            self.head = next
        } else {
            self.nodes[prev].next = next
        }
        if next == NIL { self.tail = prev } else { self.nodes[next].prev = prev }
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    /// Requests `key`: `true` on a hit; a miss inserts it, evicting the least recently used.
    fn access(&mut self, key: u64) -> bool {
        if let Some(&i) = self.index.get(&key) {
            self.unlink(i);
            self.push_front(i);
            return true;
        }
        if self.capacity == 0 {
            return false;
        }
        let i = if self.nodes.len() < self.capacity {
            self.nodes.push(Node { key, prev: NIL, next: NIL });
            self.nodes.len() - 1
        } else {
            let victim = self.tail;
            self.unlink(victim);
            self.index.remove(&self.nodes[victim].key);
            self.nodes[victim].key = key;
            victim
        };
        self.index.insert(key, i);
        self.push_front(i);
        false
    }
}

/// Replays `trace[split..]` through LRU caches of `capacity` keys, cold and pre-warmed with the
/// most requested keys of `trace[..split]`, in `stretches` equal stretches.
pub fn cold_vs_warm(trace: &[u64], split: usize, capacity: usize, stretches: usize) -> ColdVsWarm {
    let split = split.min(trace.len());
    let (profile, replay) = trace.split_at(split);
    let stretch_len = replay.len().div_ceil(stretches.max(1)).max(1);
    // Hits per stretch of the replay through `lru`.
    let hits = |mut lru: Lru| -> Vec<u64> {
        replay
            .chunks(stretch_len)
            .map(|chunk| chunk.iter().filter(|k| lru.access(**k)).count() as u64)
            .collect()
    };
    // The two caches are independent: the cold one is replayed while the warm one is filled.
    let (cold_hits, (warm_hits, warmed_keys)) = rayon::join(
        || hits(Lru::new(capacity)),
        || {
            let mut counts: HashMap<u64, u64, ahash::RandomState> = HashMap::default();
            for k in profile {
                *counts.entry(*k).or_insert(0) += 1;
            }
            let mut ranked: Vec<(u64, u64)> = counts.into_iter().collect();
            ranked.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            ranked.truncate(capacity);
            let mut warm = Lru::new(capacity);
            // Coldest first, so the hottest ends up most recently used.
            for (k, _) in ranked.iter().rev() {
                warm.access(*k);
            }
            (hits(warm), ranked.len())
        },
    );
    let mut out = Vec::new();
    let (mut cold_misses, mut warm_misses) = (0u64, 0u64);
    for (n, (chunk, (c, w))) in
        replay.chunks(stretch_len).zip(cold_hits.into_iter().zip(warm_hits)).enumerate()
    {
        cold_misses += chunk.len() as u64 - c;
        warm_misses += chunk.len() as u64 - w;
        let len = chunk.len() as f64;
        out.push(Stretch {
            from_request: (n * stretch_len) as u64,
            requests: chunk.len() as u64,
            cold: c as f64 / len,
            warm: w as f64 / len,
        });
    }
    let steady = |pick: fn(&Stretch) -> f64| {
        let tail = &out[out.len() - out.len().div_ceil(4).max(1).min(out.len())..];
        let level = tail.iter().map(pick).sum::<f64>() / tail.len().max(1) as f64;
        out.iter().find(|s| pick(s) >= 0.95 * level).map(|s| s.from_request + s.requests)
    };
    let (cold_steady, warm_steady) =
        if out.is_empty() { (None, None) } else { (steady(|s| s.cold), steady(|s| s.warm)) };
    ColdVsWarm {
        capacity: capacity as u64,
        warmed_keys: warmed_keys as u64,
        profile_requests: profile.len() as u64,
        replayed_requests: replay.len() as u64,
        cold_misses,
        warm_misses,
        cold_requests_to_steady: cold_steady,
        warm_requests_to_steady: warm_steady,
        stretches: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lru_evicts_the_least_recently_used() {
        let mut lru = Lru::new(2);
        assert!(!lru.access(1));
        assert!(!lru.access(2));
        assert!(lru.access(1)); // 1 is now the most recent
        assert!(!lru.access(3)); // evicts 2
        assert!(lru.access(1));
        assert!(!lru.access(2));
        assert!(!lru.access(3), "3 was evicted by 2");
    }

    #[test]
    fn a_warm_cache_hits_the_hot_keys_from_the_first_request() {
        // Keys 0..10 are hot throughout; every tenth request is a one-off.
        let trace: Vec<u64> =
            (0..20_000u64).map(|i| if i % 10 == 9 { 1_000_000 + i } else { i % 7 }).collect();
        let r = cold_vs_warm(&trace, 10_000, 50, 10);
        assert_eq!(r.warmed_keys, 50);
        assert_eq!(r.replayed_requests, 10_000);
        // The cold cache misses each hot key once more than the warm one.
        assert_eq!(r.cold_misses - r.warm_misses, 7);
        assert!(r.stretches[0].warm >= r.stretches[0].cold);
        assert_eq!(r.warm_requests_to_steady, Some(1000));
    }
}
