//! One chunk of whole lines tallied on its own, in parallel with other chunks: per rule, its
//! keys in a chunk-local table whose keys live in one arena, the rejected lines sampled and
//! the unmatched paths counted.

use std::collections::BTreeMap;

use hashbrown::HashTable;
use hyperloglogplus::HyperLogLog;

use super::decay::HalfLife;
use super::key_stats::KeyStats;
use super::params::write_raw_params;
use crate::logformat::{LogFormat, Record};
use crate::rules::{Outcome, RuleSet};
use crate::sketch::{Hll, new_hll};

/// Rejected-line samples kept per reason.
pub const SAMPLES_PER_REASON: usize = 3;

/// Settings every chunk needs.
pub struct TallyContext<'a> {
    /// The rules.
    pub rules: &'a RuleSet,
    /// Parameter names per rule (captures then kept query parameters).
    pub param_names: Vec<Vec<String>>,
    /// Only requests at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only requests before this time (Unix ms).
    pub until_ms: Option<i64>,
    /// The half-life, if recency counts.
    pub half_life: Option<HalfLife>,
    /// Hashes keys and paths. One per run (randomly seeded: paths come from the internet) and
    /// shared by chunk and run-wide tables, so a hash computed in a chunk is reused by the merge.
    pub hasher: ahash::RandomState,
    /// A second, independently seeded hash of each key (see [`super::key_table::KeyTable`]).
    pub check_hasher: ahash::RandomState,
}

impl TallyContext<'_> {
    /// A context for `rules` with fresh random hash seeds and no time window or decay.
    pub fn new(rules: &RuleSet) -> TallyContext<'_> {
        TallyContext {
            rules,
            param_names: rules.rules().iter().map(|r| r.params()).collect(),
            since_ms: None,
            until_ms: None,
            half_life: None,
            hasher: ahash::RandomState::new(),
            check_hasher: ahash::RandomState::new(),
        }
    }
}

/// A rejected line, located within its chunk.
#[derive(Debug, Clone)]
pub struct ChunkSample {
    /// Why it was rejected.
    pub reason: &'static str,
    /// 0-based line index within the chunk.
    pub line_in_chunk: u64,
    /// The start of the line, query values redacted.
    pub excerpt: String,
}

/// An entry of a [`ChunkTable`]: the key's two hashes, where its bytes are in the arena, its
/// value.
pub(super) struct Interned<V> {
    pub(super) hash: u64,
    pub(super) check: u64,
    pub(super) key: (usize, usize),
    pub(super) value: V,
}

/// A chunk-local table whose keys live in one arena: no allocation per key, which matters
/// because most keys of a chunk are seen again in the next one. Keys are told apart by their
/// pair of hashes, as in the run-wide table (see [`super::key_table::KeyTable`]): comparing the key's
/// bytes read the arena, a cache miss on most lines. The index holds only each entry's
/// position, and a lookup compares the hashes in the entry, which the line then updates: with
/// the hashes in the index too, a lookup missed the cache twice (the index, then the entry),
/// and the index was six times the size.
pub(super) struct ChunkTable<V> {
    pub(super) index: HashTable<u32>,
    pub(super) entries: Vec<Interned<V>>,
    pub(super) arena: Vec<u8>,
}

impl<V> ChunkTable<V> {
    pub(super) fn new() -> Self {
        ChunkTable { index: HashTable::new(), entries: Vec::new(), arena: Vec::new() }
    }

    /// The value for `key`, whose hashes are `hash` and `check`, created by `init` when absent;
    /// what `init` appends to the arena follows the key's bytes.
    pub(super) fn entry(
        &mut self,
        hash: u64,
        check: u64,
        key: &[u8],
        init: impl FnOnce(&mut Vec<u8>) -> V,
    ) -> &mut V {
        let entries = &self.entries;
        let found = self.index.find(hash, |&at| {
            let e = &entries[at as usize];
            e.hash == hash && e.check == check
        });
        let at = match found {
            Some(&at) => at as usize,
            None => {
                let start = self.arena.len();
                self.arena.extend_from_slice(key);
                let span = (start, self.arena.len());
                let value = init(&mut self.arena);
                let at = self.entries.len();
                self.entries.push(Interned { hash, check, key: span, value });
                let entries = &self.entries;
                self.index.insert_unique(hash, at as u32, |&at| entries[at as usize].hash);
                at
            }
        };
        &mut self.entries[at].value
    }

    pub(super) fn bytes(&self, span: (usize, usize)) -> &[u8] {
        &self.arena[span.0..span.1]
    }

    /// Empties the table, keeping its allocations.
    pub(super) fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.arena.clear();
    }
}

/// A chunk's stats for one key, with its raw parameter values in the arena right after the
/// key, up to `params_end` (see [`write_raw_params`]); they become JSON only for keys new to
/// the whole run.
pub(super) struct ChunkKey {
    pub(super) params_end: usize,
    pub(super) stats: KeyStats,
}

/// One rule's share of a chunk.
pub(super) struct RuleTally {
    pub(super) requests: u64,
    pub(super) status_filtered: u64,
    pub(super) keys: ChunkTable<ChunkKey>,
    pub(super) clients: Hll,
}

/// What one chunk of lines holds.
pub struct ChunkTally {
    pub(crate) lines: u64,
    pub(crate) rejected: BTreeMap<&'static str, u64>,
    pub(crate) samples: Vec<ChunkSample>,
    pub(crate) out_of_window: u64,
    pub(crate) unmatched: u64,
    pub(super) unmatched_paths: ChunkTable<u64>,
    pub(super) rules: Vec<RuleTally>,
    /// Clients of requests no rule matched: a matched request's client is in its rule's
    /// sketch only (see [`super::aggregate::Aggregate::all_clients`]).
    pub(super) unmatched_clients: Hll,
    pub(crate) min_ms: i64,
    pub(crate) max_ms: i64,
}

impl ChunkTally {
    /// An empty tally for `n_rules` rules.
    pub fn new(n_rules: usize) -> Self {
        ChunkTally {
            lines: 0,
            rejected: BTreeMap::new(),
            samples: Vec::new(),
            out_of_window: 0,
            unmatched: 0,
            unmatched_paths: ChunkTable::new(),
            rules: (0..n_rules)
                .map(|_| RuleTally {
                    requests: 0,
                    status_filtered: 0,
                    keys: ChunkTable::new(),
                    clients: new_hll(),
                })
                .collect(),
            unmatched_clients: new_hll(),
            min_ms: i64::MAX,
            max_ms: i64::MIN,
        }
    }

    /// Empties the tally for the next chunk, all but its client sketches (see
    /// [`super::aggregate::Aggregate::merge_sketches`]). Its tables keep their capacity: a chunk's tables grow to
    /// megabytes, and growing fresh ones for every chunk cost more in page faults than the
    /// tallying itself.
    pub fn clear(&mut self) {
        self.lines = 0;
        self.rejected.clear();
        self.samples.clear();
        self.out_of_window = 0;
        self.unmatched = 0;
        self.unmatched_paths.clear();
        for r in &mut self.rules {
            r.requests = 0;
            r.status_filtered = 0;
            r.keys.clear();
        }
        self.min_ms = i64::MAX;
        self.max_ms = i64::MIN;
    }

    pub(super) fn reject(&mut self, reason: &'static str, line_in_chunk: u64, line: &[u8]) {
        let n = self.rejected.entry(reason).or_insert(0);
        *n += 1;
        if *n as usize <= SAMPLES_PER_REASON {
            self.samples.push(ChunkSample { reason, line_in_chunk, excerpt: excerpt(line) });
        }
    }

    pub(super) fn note_time(&mut self, rec: &Record<'_>) {
        if let Some(ts) = rec.time_ms {
            self.min_ms = self.min_ms.min(ts);
            self.max_ms = self.max_ms.max(ts);
        }
    }
}

/// Tallies one chunk of whole lines (the last may lack its newline).
pub fn tally_chunk(data: &[u8], format: &LogFormat, ctx: &TallyContext<'_>) -> ChunkTally {
    let mut t = ChunkTally::new(ctx.rules.rules().len());
    tally_chunk_into(&mut t, data, format, ctx);
    t
}

/// Tallies one chunk into `t`, which must be new or cleared.
pub fn tally_chunk_into(t: &mut ChunkTally, data: &[u8], format: &LogFormat, ctx: &TallyContext<'_>) {
    let mut spare_values: Vec<Option<&[u8]>> = Vec::with_capacity(8);
    let mut key = Vec::with_capacity(64);
    let mut start = 0;
    while start < data.len() {
        let end = memchr::memchr(b'\n', &data[start..]).map_or(data.len(), |p| start + p);
        let line = &data[start..end];
        let index = t.lines;
        t.lines += 1;
        start = end + 1;
        // Borrowed from the result rather than moved out of it: the move copied the whole
        // record, a call to `memcpy` per line.
        let parsed = format.parse_line(line);
        let rec = match &parsed {
            Ok(r) => r,
            Err(e) => {
                t.reject(e.reason(), index, line);
                continue;
            }
        };
        if ctx.since_ms.is_some() || ctx.until_ms.is_some() {
            let inside = rec.time_ms.is_some_and(|ts| {
                ctx.since_ms.is_none_or(|s| ts >= s) && ctx.until_ms.is_none_or(|u| ts < u)
            });
            if !inside {
                t.out_of_window += 1;
                continue;
            }
        }
        let mut values = recycle(std::mem::take(&mut spare_values));
        match ctx.rules.classify(rec, &mut values) {
            Outcome::Matched(r) => {
                if let Err(unusable) = ctx.rules.rules()[r].key.render_bytes(&values, &mut key) {
                    t.reject(unusable.reason(), index, line);
                } else {
                    t.note_time(rec);
                    let rt = &mut t.rules[r];
                    rt.requests += 1;
                    let (hash, check) = (ctx.hasher.hash_one(&key[..]), ctx.check_hasher.hash_one(&key[..]));
                    let entry = rt.keys.entry(hash, check, &key[..], |arena| {
                        write_raw_params(arena, &values);
                        ChunkKey { params_end: arena.len(), stats: KeyStats::new() }
                    });
                    entry.stats.add(rec, ctx.half_life.as_ref());
                    if let Some(c) = &rec.client {
                        rt.clients.insert(c.as_ref());
                    }
                }
            }
            Outcome::StatusFiltered(r) => {
                t.rules[r].status_filtered += 1;
                t.note_time(rec);
            }
            Outcome::Unmatched => {
                t.unmatched += 1;
                t.note_time(rec);
                if let Some(c) = &rec.client {
                    t.unmatched_clients.insert(c.as_ref());
                }
                let path: &[u8] = &rec.path;
                let (hash, check) = (ctx.hasher.hash_one(path), ctx.check_hasher.hash_one(path));
                *t.unmatched_paths.entry(hash, check, path, |_| 0) += 1;
            }
        }
        spare_values = recycle(values);
    }
}

/// Reuses a vector's allocation for borrows of a different lifetime (the values of one line
/// borrow that line; the buffer outlives them all). Collecting an emptied vector in place
/// keeps its capacity.
pub(crate) fn recycle<'a>(mut v: Vec<Option<&[u8]>>) -> Vec<Option<&'a [u8]>> {
    v.clear();
    v.into_iter().map(|_| None).collect()
}

/// The start of a line for a sample: at most 200 bytes, lossy UTF-8, control characters
/// escaped, and every query parameter value replaced by `…`, so tokens never reach a summary.
pub fn excerpt(line: &[u8]) -> String {
    let cut = &line[..line.len().min(200)];
    let text = crate::printable::printable_bytes(cut);
    let mut out = String::with_capacity(text.len());
    let mut in_query = false;
    let mut in_value = false;
    for c in text.chars() {
        match c {
            '?' if !in_query => {
                in_query = true;
                out.push(c);
            }
            '=' if in_query && !in_value => {
                in_value = true;
                out.push_str("=…");
            }
            '&' if in_query => {
                in_value = false;
                out.push(c);
            }
            ' ' | '"' | '\t' => {
                in_query = false;
                in_value = false;
                out.push(c);
            }
            _ if in_value => {}
            _ => out.push(c),
        }
    }
    if line.len() > 200 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_redact_query_values() {
        let e = excerpt(br#"1.2.3.4 - - [x] "GET /a?token=s3cret&q=1 HTTP/1.1" 200"#);
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("/a?token=…&q=…"), "{e}");
        assert!(excerpt(&[b'a'; 300]).ends_with('…'));
    }

    #[test]
    fn chunk_table_interns_keys() {
        let mut t: ChunkTable<u64> = ChunkTable::new();
        let h = ahash::RandomState::new();
        let c = ahash::RandomState::new();
        for k in [&b"a"[..], b"bb", b"a", b"a"] {
            *t.entry(h.hash_one(k), c.hash_one(k), k, |_| 0) += 1;
        }
        let mut got: Vec<(Vec<u8>, u64)> =
            t.entries.iter().map(|e| (t.bytes(e.key).to_vec(), e.value)).collect();
        got.sort();
        assert_eq!(got, vec![(b"a".to_vec(), 3), (b"bb".to_vec(), 1)]);
    }
}
