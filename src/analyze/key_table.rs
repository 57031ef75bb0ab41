//! A rule's run-wide key table: entries in the order first seen, in fixed segments, found
//! through a compact index of two hashes per key.

use hashbrown::HashTable;

use super::key_stats::KeyStats;

/// A key's run-wide entry. Its hashes are kept in the table's index only.
pub struct KeyEntry {
    /// Where the key is in its segment's text (see [`KeyTable::key`]).
    pub(super) key: (usize, usize),
    /// Where the parameters of the first request seen, a JSON object, are in that text.
    pub(super) params: (usize, usize),
    /// Statistics.
    pub stats: KeyStats,
}

impl KeyEntry {
    /// A field from each cache line the entry spans, for reading a batch of entries ahead of
    /// the work on them (see [`KeyStats::read_ahead`]).
    pub fn read_ahead(&self) -> u64 {
        self.key.0 as u64 ^ self.stats.read_ahead()
    }
}

/// A rule's run-wide keys: entries in the order first seen, found through a compact index.
///
/// The index holds only a key's two hashes and its entry's position, so growing it moves 24
/// bytes per key where a table of whole entries moved 136 (a third of the merge's time in a
/// profile), and the ranking reads the entries as they are, with no drain. Measured on the
/// benchmark log: the same time, and a peak resident set about 50 MiB (a fifth) smaller.
///
/// The second hash, from an independent seed, lets the merge take two entries with the same
/// pair of hashes for the same key without reading the key itself: that read was a cache miss
/// on nearly every lookup (measured: a third of the merge), and a false match among a million
/// keys has a probability below 10^-26.
///
/// The entries sit in fixed-size segments, so that growing never moves them: a single vector
/// that doubled copied every entry into fresh memory each time, and the merge caused a third
/// of the analyzer's page faults. Each segment keeps its keys' and parameters' text end to
/// end in one string: one allocation per key and another per parameter object cost the
/// merge a quarter of a million of each on the benchmark log, and as many frees at the end.
#[derive(Default)]
pub struct KeyTable {
    pub(super) index: HashTable<Slot>,
    pub(super) segments: Vec<Segment>,
    pub(super) len: usize,
}

/// Entries per segment of a [`KeyTable`] (about half a MiB).
pub(super) const SEGMENT: usize = 4096;

/// Up to [`SEGMENT`] entries and their text.
#[derive(Default)]
pub(super) struct Segment {
    pub(super) entries: Vec<KeyEntry>,
    pub(super) text: String,
}

impl Segment {
    pub(super) fn str(&self, span: (usize, usize)) -> &str {
        &self.text[span.0..span.1]
    }
}

/// A key's place in a [`KeyTable`].
#[derive(Clone, Copy)]
pub(super) struct Slot {
    /// Hash of the key (from the run's hasher).
    pub(super) hash: u64,
    /// A second hash of the key, from an independent seed (see [`KeyTable`]).
    pub(super) check: u64,
    /// The entry's position.
    pub(super) at: usize,
}

impl KeyTable {
    /// Distinct keys held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no key.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The entry at a position (`0..len()`, in the order first seen).
    pub fn get(&self, at: usize) -> &KeyEntry {
        &self.segments[at / SEGMENT].entries[at % SEGMENT]
    }

    /// The entry at a position, to change.
    pub fn get_mut(&mut self, at: usize) -> &mut KeyEntry {
        &mut self.segments[at / SEGMENT].entries[at % SEGMENT]
    }

    /// The key of the entry at a position.
    pub fn key(&self, at: usize) -> &str {
        let segment = &self.segments[at / SEGMENT];
        segment.str(segment.entries[at % SEGMENT].key)
    }

    /// The parameters (a JSON object) of the entry at a position.
    pub fn params(&self, at: usize) -> &str {
        let segment = &self.segments[at / SEGMENT];
        segment.str(segment.entries[at % SEGMENT].params)
    }

    /// A byte of the key and one of the parameters of the entry at a position, for reading a
    /// batch of them ahead of the work on them (see [`KeyEntry::read_ahead`]).
    pub fn read_ahead_text(&self, at: usize) -> u8 {
        let first = |text: &str| text.as_bytes().first().copied().unwrap_or(0);
        first(self.key(at)) ^ first(self.params(at))
    }

    /// The entries, in the order first seen.
    pub fn iter(&self) -> impl Iterator<Item = &KeyEntry> {
        self.segments.iter().flat_map(|s| &s.entries)
    }

    /// Empties the table, handing over its entries without the index (the ranking reads
    /// entries by position).
    pub fn take(&mut self) -> KeyTable {
        self.index = HashTable::new();
        KeyTable {
            index: HashTable::new(),
            segments: std::mem::take(&mut self.segments),
            len: std::mem::take(&mut self.len),
        }
    }

    /// The position of the entry whose key has these two hashes.
    pub(super) fn position(&self, hash: u64, check: u64) -> Option<usize> {
        self.index.find(hash, |s| s.hash == hash && s.check == check).map(|s| s.at)
    }

    /// Reads the statistics of the entries at these positions, so that the updates which
    /// follow find them in cache. The reads do not depend on one another, so their misses
    /// overlap.
    pub(super) fn touch(&self, positions: &[Option<usize>]) {
        let sum = positions.iter().flatten().fold(0u64, |sum, &at| sum ^ self.get(at).stats.read_ahead());
        std::hint::black_box(sum);
    }

    /// Adds an entry for a key the table does not hold.
    pub(super) fn insert(&mut self, hash: u64, check: u64, key: &str, params: &str, stats: KeyStats) {
        let slot = Slot { hash, check, at: self.len };
        self.index.insert_unique(hash, slot, |s| s.hash);
        if self.segments.last().is_none_or(|s| s.entries.len() == SEGMENT) {
            // The text of a full segment foretells the next one's: reserving as much (and an
            // eighth more) spares the next one most of its growth, each step of which copied
            // all its text so far.
            let text = self.segments.last().map_or(0, |s| s.text.len() + s.text.len() / 8);
            self.segments
                .push(Segment { entries: Vec::with_capacity(SEGMENT), text: String::with_capacity(text) });
        }
        let last = self.segments.len() - 1;
        let segment = &mut self.segments[last];
        let mut append = |s: &str| {
            let start = segment.text.len();
            segment.text.push_str(s);
            (start, segment.text.len())
        };
        let (key, params) = (append(key), append(params));
        segment.entries.push(KeyEntry { key, params, stats });
        self.len += 1;
    }

    /// Misra–Gries prune to at most `keep` entries: subtracts the (keep+1)-th largest count
    /// from every entry and drops those left at zero. Returns the amount subtracted.
    pub(super) fn prune(&mut self, keep: usize) -> u64 {
        if self.len <= keep {
            return 0;
        }
        let mut counts: Vec<u64> = self.iter().map(|e| e.stats.count).collect();
        let (_, threshold, _) = counts.select_nth_unstable_by(keep, |a, b| b.cmp(a));
        let threshold = *threshold;
        // The entries' hashes, by position, come from the index, which keeps its allocation:
        // the entries left are re-added to it, their text copied into new segments, so that
        // the text of dropped keys is freed too.
        let mut hashes = vec![(0, 0); self.len];
        for s in self.index.drain() {
            hashes[s.at] = (s.hash, s.check);
        }
        self.len = 0;
        let mut hashes = hashes.into_iter();
        for segment in std::mem::take(&mut self.segments) {
            for (e, (hash, check)) in segment.entries.iter().zip(hashes.by_ref()) {
                let c = e.stats.count;
                if c > threshold {
                    let mut stats = e.stats.clone();
                    // Scale the decayed count with the count so scores stay consistent.
                    stats.decay *= (c - threshold) as f64 / c as f64;
                    stats.count = c - threshold;
                    self.insert(hash, check, segment.str(e.key), segment.str(e.params), stats);
                }
            }
        }
        threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_table_prunes_and_still_finds_what_it_keeps() {
        let mut t = KeyTable::default();
        for k in 0..10u64 {
            let mut stats = KeyStats::new();
            stats.count = k + 1; // counts 1..=10
            stats.decay = (k + 1) as f64;
            t.insert(k % 3, k, &k.to_string(), "{}", stats);
        }
        assert_eq!(t.prune(3), 7); // the 4th largest count
        let mut left: Vec<(String, u64, f64)> = (0..t.len())
            .map(|at| (t.key(at).to_string(), t.get(at).stats.count, t.get(at).stats.decay))
            .collect();
        left.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(left, vec![("7".into(), 1, 1.0), ("8".into(), 2, 2.0), ("9".into(), 3, 3.0)]);
        for k in 7..10u64 {
            assert_eq!(t.position(k % 3, k).map(|at| t.key(at).to_string()), Some(k.to_string()));
        }
        assert!(t.position(0, 0).is_none() && t.position(9 % 3, 6).is_none());
        assert_eq!(t.take().len(), 3);
        assert!(t.is_empty() && t.position(7 % 3, 7).is_none());
    }

    #[test]
    fn key_table_positions_hold_across_segments_and_a_prune() {
        let n = 3 * SEGMENT as u64 + 5;
        let mut t = KeyTable::default();
        for k in 0..n {
            let mut stats = KeyStats::new();
            stats.count = k % 7 + 1;
            t.insert(k % 1000, k, &k.to_string(), &format!("{{\"k\":{k}}}"), stats);
        }
        assert_eq!((t.len(), t.iter().count()), (n as usize, n as usize));
        let found = |t: &KeyTable, k: u64| {
            t.position(k % 1000, k).map(|at| {
                assert_eq!(t.params(at), format!("{{\"k\":{k}}}"), "the parameters stay with their key");
                t.key(at).to_string()
            })
        };
        assert!((0..n).all(|k| found(&t, k) == Some(k.to_string())));
        // Keeping as many as were counted 7, the next largest count is 6: only those are left.
        let left: Vec<u64> = (0..n).filter(|k| k % 7 == 6).collect();
        assert_eq!(t.prune(left.len()), 6);
        assert_eq!(t.len(), left.len());
        assert!(left.iter().all(|&k| found(&t, k) == Some(k.to_string())));
        assert!(t.iter().all(|e| e.stats.count == 1));
        assert_eq!(found(&t, 0), None);
    }
}
