//! Counting: per-chunk tallies and the run-wide aggregate they merge into.
//!
//! A chunk of whole lines is tallied on its own (in parallel with other chunks); tallies are
//! then merged into the [`Aggregate`] strictly in input order, so the result does not depend on
//! how many threads ran. Every merged quantity is a sum, a min/max or a HyperLogLog union,
//! except the bounded key tables: past `max_keys_per_rule` distinct keys a rule's table is
//! pruned Misra–Gries style (subtract the (k+1)-th largest count from all, drop what falls to
//! zero), which keeps memory flat and every count within a recorded error bound.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hashbrown::HashTable;
use hyperloglogplus::HyperLogLog;

use super::decay::HalfLife;
use crate::logformat::{CacheStatus, LogFormat, Record};
use crate::rules::{NonUtf8Value, Outcome, RuleSet, same_bytes as same};

/// Rejected-line samples kept per reason.
pub const SAMPLES_PER_REASON: usize = 3;
/// Distinct unmatched paths tracked (the table is pruned like the key tables).
const UNMATCHED_CAPACITY: usize = 1024;

pub use crate::sketch::{Hll, new_hll};

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
    fn new() -> Self {
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

    fn add(&mut self, rec: &Record<'_>, half_life: Option<&HalfLife>) {
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
    fn merge(&mut self, other: &KeyStats, half_life: Option<&HalfLife>) {
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
    /// A second, independently seeded hash of each key (see [`KeyTable`]).
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
struct Interned<V> {
    hash: u64,
    check: u64,
    key: (usize, usize),
    value: V,
}

/// A chunk-local table whose keys live in one arena: no allocation per key, which matters
/// because most keys of a chunk are seen again in the next one. Keys are told apart by their
/// pair of hashes, as in the run-wide table (see [`KeyTable`]): comparing the key's
/// bytes read the arena, a cache miss on most lines. The index holds only each entry's
/// position, and a lookup compares the hashes in the entry, which the line then updates: with
/// the hashes in the index too, a lookup missed the cache twice (the index, then the entry),
/// and the index was six times the size.
struct ChunkTable<V> {
    index: HashTable<u32>,
    entries: Vec<Interned<V>>,
    arena: Vec<u8>,
}

impl<V> ChunkTable<V> {
    fn new() -> Self {
        ChunkTable { index: HashTable::new(), entries: Vec::new(), arena: Vec::new() }
    }

    /// The value for `key`, whose hashes are `hash` and `check`, created by `init` when absent;
    /// what `init` appends to the arena follows the key's bytes.
    fn entry(&mut self, hash: u64, check: u64, key: &[u8], init: impl FnOnce(&mut Vec<u8>) -> V) -> &mut V {
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

    fn bytes(&self, span: (usize, usize)) -> &[u8] {
        &self.arena[span.0..span.1]
    }

    /// Empties the table, keeping its allocations.
    fn clear(&mut self) {
        self.index.clear();
        self.entries.clear();
        self.arena.clear();
    }
}

/// A chunk's stats for one key, with its raw parameter values in the arena right after the
/// key, up to `params_end` (see [`write_raw_params`]); they become JSON only for keys new to
/// the whole run.
struct ChunkKey {
    params_end: usize,
    stats: KeyStats,
}

/// One rule's share of a chunk.
struct RuleTally {
    requests: u64,
    status_filtered: u64,
    keys: ChunkTable<ChunkKey>,
    clients: Hll,
}

/// What one chunk of lines holds.
pub struct ChunkTally {
    pub(crate) lines: u64,
    pub(crate) rejected: BTreeMap<&'static str, u64>,
    pub(crate) samples: Vec<ChunkSample>,
    pub(crate) out_of_window: u64,
    pub(crate) unmatched: u64,
    unmatched_paths: ChunkTable<u64>,
    rules: Vec<RuleTally>,
    /// Clients of requests no rule matched: a matched request's client is in its rule's
    /// sketch only (see [`Aggregate::all_clients`]).
    unmatched_clients: Hll,
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
    /// [`Aggregate::merge_sketches`]). Its tables keep their capacity: a chunk's tables grow to
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

    fn reject(&mut self, reason: &'static str, line_in_chunk: u64, line: &[u8]) {
        let n = self.rejected.entry(reason).or_insert(0);
        *n += 1;
        if *n as usize <= SAMPLES_PER_REASON {
            self.samples.push(ChunkSample { reason, line_in_chunk, excerpt: excerpt(line) });
        }
    }

    fn note_time(&mut self, rec: &Record<'_>) {
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
                if let Err(NonUtf8Value) = ctx.rules.rules()[r].key.render_bytes(&values, &mut key) {
                    t.reject("non_utf8_key", index, line);
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

/// Appends parameter values as `(u32 length | u32::MAX for absent, bytes)*`: a plain copy,
/// cheap enough to do for every key a chunk sees.
fn write_raw_params(out: &mut Vec<u8>, values: &[Option<&[u8]>]) {
    for v in values {
        match v {
            Some(v) => {
                out.extend_from_slice(&(v.len() as u32).to_le_bytes());
                out.extend_from_slice(v);
            }
            None => out.extend_from_slice(&u32::MAX.to_le_bytes()),
        }
    }
}

/// Decodes [`write_raw_params`] output, value by value (a vector of them per new key was an
/// allocation per key).
fn read_raw_params(mut raw: &[u8]) -> impl Iterator<Item = Option<&[u8]>> {
    std::iter::from_fn(move || {
        let (len, rest) = raw.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len);
        if len == u32::MAX {
            raw = rest;
            Some(None)
        } else {
            let (v, rest) = rest.split_at((len as usize).min(rest.len()));
            raw = rest;
            Some(Some(v))
        }
    })
}

/// Appends the parameters as a JSON object (`{"id":"42"}`), absent ones left out. It is
/// written as text, so that only the raw values need a UTF-8 check: checking the names and
/// then the whole object again took half the merge's checks.
fn write_params_json<'v>(
    out: &mut String,
    names: &[String],
    values: impl IntoIterator<Item = Option<&'v [u8]>>,
) {
    out.push('{');
    let mut first = true;
    for (name, value) in names.iter().zip(values) {
        let Some(v) = value else { continue };
        if !first {
            out.push(',');
        }
        first = false;
        json_string(out, name);
        out.push(':');
        match std::str::from_utf8(v) {
            Ok(text) => json_string(out, text),
            Err(_) => json_string(out, &String::from_utf8_lossy(v)),
        }
    }
    out.push('}');
}

/// Appends `text` as a JSON string. Runs of plain characters are found word by word and
/// copied whole: byte by byte, the search was most of the work on new keys' parameters.
fn json_string(out: &mut String, mut text: &str) {
    out.push('"');
    // Every byte that needs escaping is ASCII, so each one is a character boundary.
    while let Some(i) = crate::logformat::scan::find_json_special(text.as_bytes()) {
        out.push_str(&text[..i]);
        match text.as_bytes()[i] {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b => {
                let _ = write!(out, "\\u{b:04x}");
            }
        }
        text = &text[i + 1..];
    }
    out.push_str(text);
    out.push('"');
}

/// The start of a line for a sample: at most 200 bytes, lossy UTF-8, and every query
/// parameter value replaced by `…`, so tokens never reach a summary.
pub fn excerpt(line: &[u8]) -> String {
    let cut = &line[..line.len().min(200)];
    let text = String::from_utf8_lossy(cut);
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

/// A key's run-wide entry. Its hashes are kept in the table's index only.
pub struct KeyEntry {
    /// Where the key is in its segment's text (see [`KeyTable::key`]).
    key: (usize, usize),
    /// Where the parameters of the first request seen, a JSON object, are in that text.
    params: (usize, usize),
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
    index: HashTable<Slot>,
    segments: Vec<Segment>,
    len: usize,
}

/// Entries per segment of a [`KeyTable`] (about half a MiB).
const SEGMENT: usize = 4096;

/// Up to [`SEGMENT`] entries and their text.
#[derive(Default)]
struct Segment {
    entries: Vec<KeyEntry>,
    text: String,
}

impl Segment {
    fn str(&self, span: (usize, usize)) -> &str {
        &self.text[span.0..span.1]
    }
}

/// A key's place in a [`KeyTable`].
#[derive(Clone, Copy)]
struct Slot {
    /// Hash of the key (from the run's hasher).
    hash: u64,
    /// A second hash of the key, from an independent seed (see [`KeyTable`]).
    check: u64,
    /// The entry's position.
    at: usize,
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
    fn position(&self, hash: u64, check: u64) -> Option<usize> {
        self.index.find(hash, |s| s.hash == hash && s.check == check).map(|s| s.at)
    }

    /// Reads the statistics of the entries at these positions, so that the updates which
    /// follow find them in cache. The reads do not depend on one another, so their misses
    /// overlap.
    fn touch(&self, positions: &[Option<usize>]) {
        let sum = positions.iter().flatten().fold(0u64, |sum, &at| sum ^ self.get(at).stats.read_ahead());
        std::hint::black_box(sum);
    }

    /// Adds an entry for a key the table does not hold.
    fn insert(&mut self, hash: u64, check: u64, key: &str, params: &str, stats: KeyStats) {
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
    fn prune(&mut self, keep: usize) -> u64 {
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

/// Chunk keys looked up together in the merge (see `Aggregate::merge`).
const MERGE_BATCH: usize = 16;

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
fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(t) => t.into(),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

fn merge_hll(into: &mut Hll, from: &Hll) {
    crate::sketch::merge(into, from);
}

/// Misra–Gries prune to at most `keep` entries: subtracts the (keep+1)-th largest count from
/// every entry and drops those left at zero. Returns the amount subtracted.
fn prune<T>(
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

    #[test]
    fn excerpts_redact_query_values() {
        let e = excerpt(br#"1.2.3.4 - - [x] "GET /a?token=s3cret&q=1 HTTP/1.1" 200"#);
        assert!(!e.contains("s3cret"), "{e}");
        assert!(e.contains("/a?token=…&q=…"), "{e}");
        assert!(excerpt(&[b'a'; 300]).ends_with('…'));
    }

    proptest::proptest! {
        #[test]
        fn json_strings_read_back_as_written(text in "(\\PC|[\"\\\\\\x00-\\x1f])*") {
            let mut out = String::new();
            json_string(&mut out, &text);
            let back: String = serde_json::from_str(&out).expect("valid JSON");
            proptest::prop_assert_eq!(back, text);
        }
    }

    #[test]
    fn params_are_json() {
        let mut out = String::new();
        let names = ["a".to_string(), "b".to_string(), "c".to_string(), "d".to_string()];
        let values: [Option<&[u8]>; 4] =
            [Some(br#"x"q\"#), None, Some(b"\xff\x01"), Some("naïve\t€\u{1f}z".as_bytes())];
        write_params_json(&mut out, &names, values);
        let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
        assert_eq!(v, serde_json::json!({"a": r#"x"q\"#, "c": "\u{fffd}\u{1}", "d": "naïve\t€\u{1f}z"}));
    }

    #[test]
    fn raw_params_round_trip() {
        let values: [Option<&[u8]>; 4] = [Some(b"42"), None, Some(b""), Some(b"x y")];
        let mut raw = Vec::new();
        write_raw_params(&mut raw, &values);
        assert_eq!(read_raw_params(&raw).collect::<Vec<_>>(), values.to_vec());
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
