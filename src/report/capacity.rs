//! Capacity: how many keys, and how much memory, buy which share of requests.
//!
//! From a profile, per rule and overall: the coverage curve (the share of requests that the
//! N most requested keys serve, and the share that B bytes of the densest keys serve) and the
//! smallest cache that reaches target coverages. Ranking by requests gives the fewest keys for
//! a coverage; ranking by requests per byte gives the fewest bytes. Counts are the profile's
//! (lower bounds where a rule's table was pruned, so the curves are conservative).

use serde::Serialize;

use crate::profile::{ProfileError, ProfileRow, Summary};

/// Coverages the report recommends a size for.
pub const TARGETS: [f64; 4] = [0.80, 0.90, 0.95, 0.99];
/// Memory Redis needs per key beyond its key and value bytes (object headers, dictionary and
/// expiry entries), for the memory estimate.
pub const PER_KEY_OVERHEAD: u64 = 64;
/// Value size assumed for keys whose log lines had no size.
const DEFAULT_VALUE_BYTES: u64 = 1024;

/// One point of a coverage curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Keys cached.
    pub keys: u64,
    /// Their estimated memory (values, keys and per-key overhead), in bytes.
    pub memory_bytes: u64,
    /// Share of the scope's requests they serve.
    pub coverage: f64,
}

/// The smallest cache that reaches a coverage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Recommendation {
    /// The coverage aimed at.
    pub target: f64,
    /// Fewest keys that reach it (the most requested first), or `None` when the profile's
    /// keys together serve less.
    pub keys: Option<u64>,
    /// Memory of those keys.
    pub memory_for_keys: Option<u64>,
    /// Least memory found that reaches it: the smaller of the most-requested-first and the
    /// most-requests-per-byte-first choices.
    pub least_memory: Option<u64>,
}

/// Capacity of one rule, or of all of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scope {
    /// The rule's name, or `all`.
    pub name: String,
    /// Requests the profile counted for the scope.
    pub requests: u64,
    /// Distinct keys in the profile.
    pub keys: u64,
    /// Estimated memory of every key.
    pub memory_bytes: u64,
    /// Coverage at 1, 2, 5, 10, 20, 50, ... keys, and at all of them.
    pub by_keys: Vec<Point>,
    /// Coverage at 1, 2, 5, ... MiB of the densest keys, and at all of them.
    pub by_memory: Vec<Point>,
    /// Sizes for [`TARGETS`].
    pub recommendations: Vec<Recommendation>,
}

/// The capacity report of a profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CapacityReport {
    /// Every rule's keys together.
    pub overall: Scope,
    /// One scope per rule in the profile, most requested first.
    pub rules: Vec<Scope>,
}

/// What one key contributes.
#[derive(Debug, Clone, Copy)]
struct KeyCost {
    rule: usize,
    requests: u64,
    memory: u64,
}

impl CapacityReport {
    /// Builds the report from a profile's rows (streamed: only a few numbers per key are kept).
    pub fn build(
        rows: impl IntoIterator<Item = Result<ProfileRow, ProfileError>>,
        summary: &Summary,
    ) -> Result<CapacityReport, ProfileError> {
        let mut names: Vec<String> = summary.rules.iter().map(|r| r.name.clone()).collect();
        let mut keys = Vec::new();
        for row in rows {
            let row = row?;
            let rule = match names.iter().position(|n| *n == row.rule) {
                Some(i) => i,
                None => {
                    names.push(row.rule.clone());
                    names.len() - 1
                }
            };
            let value = row.mean_bytes.map_or(DEFAULT_VALUE_BYTES, |b| b.round().max(0.0) as u64);
            keys.push(KeyCost {
                rule,
                requests: row.count,
                memory: value + row.key.len() as u64 + PER_KEY_OVERHEAD,
            });
        }
        let requests_of =
            |name: &str| summary.rules.iter().find(|r| r.name == name).map_or(0, |r| r.requests);
        let mut rules: Vec<Scope> = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let mine: Vec<KeyCost> = keys.iter().filter(|k| k.rule == i).copied().collect();
                scope(name, requests_of(name), mine)
            })
            .filter(|s| s.keys > 0)
            .collect();
        rules.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.name.cmp(&b.name)));
        let overall = scope("all", summary.lines.matched, keys);
        Ok(CapacityReport { overall, rules })
    }
}

/// 1, 2, 5, 10, 20, 50, ... below `max`, then `max` (at least 1): the sizes curves are shown at.
pub(crate) fn one_two_five(max: u64) -> Vec<u64> {
    let mut out = Vec::new();
    let mut decade = 1u64;
    'outer: loop {
        for m in [1, 2, 5] {
            let n = decade.saturating_mul(m);
            if n >= max {
                break 'outer;
            }
            out.push(n);
        }
        decade = decade.saturating_mul(10);
    }
    out.push(max.max(1));
    out
}

fn scope(name: &str, requests: u64, mut keys: Vec<KeyCost>) -> Scope {
    let coverage = |served: u64| if requests == 0 { 0.0 } else { (served as f64 / requests as f64).min(1.0) };
    let total_memory: u64 = keys.iter().map(|k| k.memory).sum();

    // By keys: the most requested first.
    keys.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.memory.cmp(&b.memory)));
    let mut cum_requests = Vec::with_capacity(keys.len());
    let mut cum_memory = Vec::with_capacity(keys.len());
    let (mut r, mut m) = (0u64, 0u64);
    for k in &keys {
        r += k.requests;
        m += k.memory;
        cum_requests.push(r);
        cum_memory.push(m);
    }
    let n = keys.len() as u64;
    let by_keys = if n == 0 {
        Vec::new()
    } else {
        one_two_five(n)
            .into_iter()
            .map(|k| Point {
                keys: k,
                memory_bytes: cum_memory[k as usize - 1],
                coverage: coverage(cum_requests[k as usize - 1]),
            })
            .collect()
    };
    let fewest_keys = |target: f64| {
        let i = cum_requests.partition_point(|&c| coverage(c) < target);
        (i < cum_requests.len()).then(|| (i as u64 + 1, cum_memory[i]))
    };

    // By memory: the most requests per byte first.
    keys.sort_by(|a, b| {
        let (da, db) = (a.requests as f64 / a.memory as f64, b.requests as f64 / b.memory as f64);
        db.total_cmp(&da)
    });
    let (mut r, mut m) = (0u64, 0u64);
    let dense: Vec<(u64, u64, u64)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            r += k.requests;
            m += k.memory;
            (i as u64 + 1, m, r)
        })
        .collect();
    let by_memory = if n == 0 {
        Vec::new()
    } else {
        one_two_five(total_memory.div_ceil(1 << 20))
            .into_iter()
            .map(|mib| {
                let budget = mib << 20;
                let i = dense.partition_point(|&(_, mem, _)| mem <= budget);
                let (keys, memory_bytes, served) = if i == 0 { (0, 0, 0) } else { dense[i - 1] };
                Point { keys, memory_bytes, coverage: coverage(served) }
            })
            .collect()
    };
    let densest_first = |target: f64| {
        let i = dense.partition_point(|&(_, _, served)| coverage(served) < target);
        dense.get(i).map(|&(_, mem, _)| mem)
    };

    let recommendations = TARGETS
        .iter()
        .map(|&target| {
            let by_keys = fewest_keys(target);
            // Neither greedy order is always the smaller (choosing keys for a byte budget is a
            // knapsack problem); the report takes the better of the two.
            let least_memory = match (densest_first(target), by_keys) {
                (Some(dense), Some((_, m))) => Some(dense.min(m)),
                (dense, keys) => dense.or(keys.map(|(_, m)| m)),
            };
            Recommendation {
                target,
                keys: by_keys.map(|(k, _)| k),
                memory_for_keys: by_keys.map(|(_, m)| m),
                least_memory,
            }
        })
        .collect();
    Scope {
        name: name.to_string(),
        requests,
        keys: n,
        memory_bytes: total_memory,
        by_keys,
        by_memory,
        recommendations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(rule: usize, requests: u64, memory: u64) -> KeyCost {
        KeyCost { rule, requests, memory }
    }

    #[test]
    fn steps_are_one_two_five_per_decade() {
        assert_eq!(one_two_five(0), vec![1]);
        assert_eq!(one_two_five(1), vec![1]);
        assert_eq!(one_two_five(7), vec![1, 2, 5, 7]);
        assert_eq!(one_two_five(100), vec![1, 2, 5, 10, 20, 50, 100]);
    }

    #[test]
    fn fewest_keys_and_least_memory_can_differ() {
        // One large value with 20 requests, and ten small ones with 8 each.
        let mut keys = vec![key(0, 20, 1 << 20)];
        keys.extend((0..10).map(|_| key(0, 8, 1 << 10)));
        let s = scope("r", 100, keys);
        assert_eq!(s.keys, 11);
        assert_eq!(s.by_keys[0], Point { keys: 1, memory_bytes: 1 << 20, coverage: 0.2 });
        let r80 = s.recommendations.iter().find(|r| r.target == 0.80).expect("80%");
        // Fewest keys: the large one and eight small ones (84 requests).
        assert_eq!(r80.keys, Some(9));
        assert_eq!(r80.memory_for_keys, Some((1 << 20) + 8 * (1 << 10)));
        // Least memory: the ten small ones alone serve 80.
        assert_eq!(r80.least_memory, Some(10 * (1 << 10)));
        assert_eq!(s.by_memory[0], Point { keys: 10, memory_bytes: 10 << 10, coverage: 0.8 });
    }

    #[test]
    fn unreachable_targets_have_no_recommendation() {
        // The profiled keys serve 70 of 100 requests (the rest were pruned or unmatched).
        let s = scope("r", 100, vec![key(0, 40, 100), key(0, 30, 100)]);
        let r90 = s.recommendations.iter().find(|r| r.target == 0.90).expect("90%");
        assert_eq!((r90.keys, r90.least_memory), (None, None));
        assert_eq!(s.by_keys.last().map(|p| p.coverage), Some(0.7));
    }
}
