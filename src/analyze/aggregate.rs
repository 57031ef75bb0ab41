//! The run-wide aggregate that chunk tallies merge into.
//!
//! A chunk of whole lines is tallied on its own (in parallel with other chunks); tallies are
//! then merged into the [`Aggregate`] strictly in input order, so the result does not depend on
//! how many threads ran. Every merged quantity is a sum, a min/max or a HyperLogLog union,
//! except the bounded key tables: past `max_keys_per_rule` distinct keys a rule's table is
//! pruned Misra–Gries style (subtract the (k+1)-th largest count from all, drop what falls to
//! zero), which keeps memory flat and every count within a recorded error bound.

use std::collections::BTreeMap;

use hashbrown::HashTable;
use hyperloglogplus::HyperLogLog;

use super::decay::HalfLife;
use crate::rules::same_bytes as same;
use crate::sketch::{Hll, new_hll};

/// Distinct unmatched paths tracked (the table is pruned like the key tables).
const UNMATCHED_CAPACITY: usize = 1024;

pub use super::key_stats::KeyStats;
pub use super::key_table::{KeyEntry, KeyTable};
use super::params::{read_raw_params, write_params_json};
pub use super::tally::{
    ChunkSample, ChunkTally, SAMPLES_PER_REASON, TallyContext, excerpt, tally_chunk, tally_chunk_into,
};

/// Chunk keys looked up together in the merge (see `Aggregate::merge`).
pub(super) const MERGE_BATCH: usize = 16;

/// An unmatched path's run-wide entry.
pub struct PathEntry {
    hash: u64,
    /// The path (no query).
    pub path: Box<[u8]>,
    /// Requests.
    pub count: u64,
}

/// One rule's run-wide counts.
pub struct RuleAggregate {
    /// Requests matched (in window, status accepted).
    pub requests: u64,
    /// Requests that matched the pattern but had a status the rule does not cache.
    pub status_filtered: u64,
    /// Per-key statistics (bounded by `2 × capacity`).
    pub keys: KeyTable,
    /// Distinct keys, estimated (exact distinct count is `keys.len()` until a prune).
    pub key_sketch: Hll,
    /// Distinct clients, estimated.
    pub clients: Hll,
    /// Sum of the pruning thresholds: every count is at most this much below the truth.
    pub error_bound: u64,
    /// Whether the table was ever pruned.
    pub pruned: bool,
}

/// Run-wide counts that chunk tallies merge into.
pub struct Aggregate {
    capacity: usize,
    half_life: Option<HalfLife>,
    param_names: Vec<Vec<String>>,
    /// Lines read.
    pub lines: u64,
    /// Rejected lines by reason.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Parsed lines outside `--since`/`--until` (or without a time when a window is set).
    pub out_of_window: u64,
    /// Parsed requests no rule matched.
    pub unmatched: u64,
    /// Unmatched paths (bounded).
    pub unmatched_paths: HashTable<PathEntry>,
    /// Per rule.
    pub rules: Vec<RuleAggregate>,
    /// Distinct clients of requests no rule matched (see [`Aggregate::all_clients`]).
    pub unmatched_clients: Hll,
    /// Earliest request time seen, Unix ms.
    pub min_ms: i64,
    /// Latest request time seen, Unix ms.
    pub max_ms: i64,
}

impl Aggregate {
    /// An empty aggregate for rules whose parameter names are `param_names`.
    pub fn new(param_names: Vec<Vec<String>>, capacity: usize, half_life: Option<HalfLife>) -> Self {
        let n_rules = param_names.len();
        Aggregate {
            capacity,
            half_life,
            param_names,
            lines: 0,
            rejected: BTreeMap::new(),
            out_of_window: 0,
            unmatched: 0,
            unmatched_paths: HashTable::new(),
            rules: (0..n_rules)
                .map(|_| RuleAggregate {
                    requests: 0,
                    status_filtered: 0,
                    keys: KeyTable::default(),
                    key_sketch: new_hll(),
                    clients: new_hll(),
                    error_bound: 0,
                    pruned: false,
                })
                .collect(),
            unmatched_clients: new_hll(),
            min_ms: i64::MAX,
            max_ms: i64::MIN,
        }
    }

    /// The half-life the counts decay with, if recency counts.
    pub fn half_life(&self) -> Option<&HalfLife> {
        self.half_life.as_ref()
    }

    /// Distinct clients overall: the union of the rules' sketches and the unmatched one. The
    /// tally inserts a matched request's client into its rule's sketch only, not also into
    /// an overall one: a union of sketches counts exactly what inserting into one would, and
    /// the second insert cost a hash and a register update on every matched line.
    pub fn all_clients(&self) -> Hll {
        let mut all = new_hll();
        merge_hll(&mut all, &self.unmatched_clients);
        for r in &self.rules {
            merge_hll(&mut all, &r.clients);
        }
        all
    }

    /// Adds a tally's client sketches to the run's. A union of sketches is exact and neither
    /// depends on order nor counts a sketch twice, so a tally may keep its sketches across
    /// the chunks it tallies and have them merged once, at the end: merging them with every
    /// chunk took an eighth of the merge's time.
    pub fn merge_sketches(&mut self, t: &ChunkTally) {
        merge_hll(&mut self.unmatched_clients, &t.unmatched_clients);
        for (agg, rt) in self.rules.iter_mut().zip(&t.rules) {
            merge_hll(&mut agg.clients, &rt.clients);
        }
    }

    /// Merges the next chunk's tally (chunks must arrive in input order), all but its client
    /// sketches (see [`Aggregate::merge_sketches`]).
    pub fn merge(&mut self, t: &ChunkTally) {
        self.lines += t.lines;
        for (reason, n) in &t.rejected {
            *self.rejected.entry(reason).or_insert(0) += n;
        }
        self.out_of_window += t.out_of_window;
        self.unmatched += t.unmatched;
        self.min_ms = self.min_ms.min(t.min_ms);
        self.max_ms = self.max_ms.max(t.max_ms);

        let paths = &t.unmatched_paths;
        for e in &paths.entries {
            let path = paths.bytes(e.key);
            match self.unmatched_paths.find_mut(e.hash, |p| same(&p.path, path)) {
                Some(p) => p.count += e.value,
                None => {
                    let entry = PathEntry { hash: e.hash, path: path.into(), count: e.value };
                    self.unmatched_paths.insert_unique(e.hash, entry, |p| p.hash);
                }
            }
        }
        if self.unmatched_paths.len() > 2 * UNMATCHED_CAPACITY {
            prune(&mut self.unmatched_paths, UNMATCHED_CAPACITY, |p| p.count, |p, c| p.count = c);
        }

        let h = self.half_life.as_ref();
        let mut json = String::new();
        for ((agg, rt), names) in self.rules.iter_mut().zip(&t.rules).zip(&self.param_names) {
            agg.requests += rt.requests;
            agg.status_filtered += rt.status_filtered;
            let table = &rt.keys;
            for batch in table.entries.chunks(MERGE_BATCH) {
                // Find the whole batch before updating any of it: the lookups do not depend on
                // one another, so their cache misses overlap instead of following each other.
                let mut found = [None; MERGE_BATCH];
                for (f, e) in found.iter_mut().zip(batch) {
                    *f = agg.keys.position(e.hash, e.check);
                }
                agg.keys.touch(&found);
                for (f, e) in found.iter().zip(batch) {
                    let key = table.bytes(e.key);
                    let check = e.check;
                    match *f {
                        Some(at) => agg.keys.get_mut(at).stats.merge(&e.value.stats, h),
                        None => {
                            agg.key_sketch.insert(key);
                            json.clear();
                            let params = table.bytes((e.key.1, e.value.params_end));
                            write_params_json(&mut json, names, read_raw_params(params));
                            let stats = e.value.stats.clone();
                            agg.keys.insert(e.hash, check, &text(key), &json, stats);
                        }
                    }
                }
            }
            if agg.keys.len() > 2 * self.capacity {
                let threshold = agg.keys.prune(self.capacity);
                agg.error_bound += threshold;
                agg.pruned = true;
            }
        }
    }
}

/// Bytes known to be UTF-8 (rendered keys) as text. The check is the fast validation, not
/// the lossy decoder, which cost several times more on every new key.
pub(super) fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(t) => t.into(),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

pub(super) fn merge_hll(into: &mut Hll, from: &Hll) {
    crate::sketch::merge(into, from);
}

/// Misra–Gries prune to at most `keep` entries: subtracts the (keep+1)-th largest count from
/// every entry and drops those left at zero. Returns the amount subtracted.
pub(super) fn prune<T>(
    table: &mut HashTable<T>,
    keep: usize,
    count: impl Fn(&T) -> u64,
    set_count: impl Fn(&mut T, u64),
) -> u64 {
    if table.len() <= keep {
        return 0;
    }
    let mut counts: Vec<u64> = table.iter().map(&count).collect();
    let (_, threshold, _) = counts.select_nth_unstable_by(keep, |a, b| b.cmp(a));
    let threshold = *threshold;
    table.retain(|v| {
        let c = count(v);
        if c > threshold {
            set_count(v, c - threshold);
            true
        } else {
            false
        }
    });
    threshold
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logformat::Record;

    #[test]
    fn prune_keeps_the_heaviest_and_bounds_the_error() {
        let mut m: HashTable<(u32, u64)> = HashTable::new();
        for k in 0..10u32 {
            m.insert_unique(u64::from(k), (k, u64::from(k) + 1), |e| u64::from(e.0)); // counts 1..=10
        }
        let t = prune(&mut m, 3, |e| e.1, |e, c| e.1 = c);
        assert_eq!(t, 7); // the 4th largest count
        let mut left: Vec<(u32, u64)> = m.into_iter().collect();
        left.sort();
        assert_eq!(left, vec![(7, 1), (8, 2), (9, 3)]);
    }

    #[test]
    fn decay_merges_like_one_stream() {
        let half_life = HalfLife::new(1000.0);
        let h = Some(&half_life);
        let rec = |t| Record { time_ms: Some(t), ..Record::default() };
        let mut whole = KeyStats::new();
        let mut a = KeyStats::new();
        let mut b = KeyStats::new();
        for (i, t) in [0i64, 500, 1000, 3000, 2000].into_iter().enumerate() {
            whole.add(&rec(t), h);
            if i < 2 { a.add(&rec(t), h) } else { b.add(&rec(t), h) }
        }
        a.merge(&b, h);
        let expect =
            [0i64, 500, 1000, 3000, 2000].iter().map(|t| ((t - 3000) as f64 / 1000.0).exp2()).sum::<f64>();
        assert!((whole.decayed_count(3000, h) - expect).abs() < 1e-9);
        assert!((a.decayed_count(3000, h) - expect).abs() < 1e-9);
        assert!((a.decayed_count(4000, h) - expect / 2.0).abs() < 1e-9);
    }
}
