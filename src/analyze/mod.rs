//! The analyzer: access logs in, ranked (rule, key) rows and a summary out.
//!
//! rayon workers take turns reading the inputs in order (decompressing them and cutting them
//! into chunks of whole lines), each tallying the chunk it read; the worker that finishes the
//! tally due next folds it, and any later ones already done, into the run-wide [`Aggregate`],
//! strictly in reading order, so the result does not depend on the number of threads. A
//! fixed number of permits bounds the chunks in flight, so memory is bounded by them and the
//! per-rule key tables, not by the log's length. Writing the profile is the caller's job (see
//! [`crate::profile`]).

pub mod aggregate;
pub mod decay;
pub mod input;
mod key_stats;
mod key_table;
mod options;
mod ordered;
mod params;
mod tally;
pub mod trace;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyperloglogplus::HyperLogLog;
use rayon::prelude::*;

use crate::printable::printable_bytes;
use crate::profile::{
    InputSummary, LineCounts, PathCount, ProfileColumns, ProfileError, ProfileRow, RowGroup, RowValues,
    RuleSketches, RuleSummary, Sample, Sketches, Store, Summary, Window, row_group_size, store,
};
use crate::rules::RuleSet;
use crate::timestamp::format_rfc3339;
use aggregate::{
    Aggregate, ChunkTally, KeyStats, KeyTable, SAMPLES_PER_REASON, TallyContext, tally_chunk_into,
};
use decay::HalfLife;
use input::{Event, Input};
pub use options::{AnalyzeOptions, Scoring, Weight};
use ordered::lock;

/// How far an analysis has come.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Input bytes read (compressed bytes for compressed inputs).
    pub bytes_read: u64,
    /// Total input bytes, when every input has a known size.
    pub bytes_total: Option<u64>,
    /// Lines tallied so far.
    pub lines: u64,
    /// Time since the start.
    pub elapsed: Duration,
}

/// The result of an analysis.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Counts, rejects, per-rule totals: the profile's metadata.
    pub summary: Summary,
    /// One row per (rule, key), hottest first.
    pub profile: ProfileColumns,
    /// Distinct-key and distinct-client sketches, kept in the profile for merging.
    pub sketches: Sketches,
}

impl Analysis {
    /// The profile's rows, hottest first, each built now.
    pub fn rows(&self) -> Vec<ProfileRow> {
        self.profile.rows().collect()
    }

    /// Writes the analysis into `store` as a new profile made at `now_ms`, which becomes the
    /// store's `latest`; returns its path.
    pub fn save(&self, store: &Store, now_ms: i64) -> Result<PathBuf, ProfileError> {
        let meta = store::meta_now(self.summary.clone(), Some(self.sketches.clone()), now_ms);
        store.write(&self.profile, &meta, now_ms)
    }

    /// Whether any input failed to be read in full.
    pub fn had_input_errors(&self) -> bool {
        self.summary.inputs.iter().any(|i| i.error.is_some())
    }
}

/// Analyzes `inputs` with `rules`. Inputs that cannot be read are recorded in the summary and
/// skipped; the rest are analyzed. `progress` is called after every merged chunk.
pub fn analyze(
    inputs: &[Input],
    rules: &RuleSet,
    opts: &AnalyzeOptions,
    progress: &(dyn Fn(&Progress) + Sync),
) -> Analysis {
    let started = Instant::now();
    let half_life = opts.score.half_life.map(|h| HalfLife::new(h.as_secs_f64() * 1000.0));
    let ctx = TallyContext {
        since_ms: opts.since_ms,
        until_ms: opts.until_ms,
        half_life: half_life.clone(),
        ..TallyContext::new(rules)
    };
    let bytes_total = inputs.iter().map(Input::size).sum::<Option<u64>>();
    let bytes_read = Arc::new(AtomicU64::new(0));
    let (spare_tx, spare_rx) = channel::<Vec<u8>>();
    // Merged tallies come back here for the next chunk (as many exist as chunks in flight).
    let tally_pool: Mutex<Vec<ChunkTally>> = Mutex::new(Vec::new());
    let reader = input::Reader::new(inputs, &opts.log, spare_rx, bytes_read.clone());
    let mut state = ordered::for_each_in_order(
        reader,
        MergeState::new(inputs, rules, opts.max_keys_per_rule, half_life),
        |event| tally_event(event, &ctx, &tally_pool),
        |state, tallied| {
            state.apply(tallied, &spare_tx, &tally_pool);
            progress(&Progress {
                bytes_read: bytes_read.load(Ordering::Relaxed),
                bytes_total,
                lines: state.agg.lines,
                elapsed: started.elapsed(),
            });
        },
    );
    // Every tally is back in the pool, holding the client sketches of the chunks it tallied.
    for tally in tally_pool.into_inner().unwrap_or_else(PoisonError::into_inner) {
        state.agg.merge_sketches(&tally);
    }
    tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "logs read and merged; ranking keys");
    state.finish(opts, bytes_read.load(Ordering::Relaxed), started)
}

/// The rows of `tables` in hotness order, in row groups (see [`row_group_size`]). Small
/// (score, count, rule, index) tuples are ranked, then each row is written once, in its final
/// place: building rows first and moving them into order cost twice as much (measured: the
/// single-threaded part after the merge was a quarter of the run).
fn rank(
    tables: &[KeyTable],
    rule_names: &[String],
    score: &(impl Fn(&KeyStats) -> f64 + Sync),
) -> Vec<RowGroup> {
    let mut order: Vec<(f64, u64, u32, u32)> = tables
        .par_iter()
        .enumerate()
        .flat_map_iter(|(r, keys)| {
            keys.iter().enumerate().map(move |(i, e)| (score(&e.stats), e.stats.count, r as u32, i as u32))
        })
        .collect();
    // The order of `ProfileRow::hotness_order`: score, count, rule name, key. Rules are
    // compared by the rank of their (unique) names, and keys only afterwards, within the
    // runs that tie on all the rest: a key is text elsewhere in memory, and on the
    // benchmark log, where a third of the rows tie on score and count and an eighth on
    // the rule too, comparing names and keys in the sort made it half again as slow.
    let rule_rank = name_ranks(rule_names);
    let ahead = |a: &(f64, u64, u32, u32), b: &(f64, u64, u32, u32)| {
        b.0.total_cmp(&a.0)
            .then_with(|| b.1.cmp(&a.1))
            .then_with(|| rule_rank[a.2 as usize].cmp(&rule_rank[b.2 as usize]))
    };
    order.par_sort_unstable_by(ahead);
    let key = |e: &(f64, u64, u32, u32)| tables[e.2 as usize].key(e.3 as usize);
    order.par_chunk_by_mut(|a, b| ahead(a, b).is_eq()).for_each(|tied| {
        if tied.len() > 1 {
            tied.sort_unstable_by(|a, b| key(a).cmp(key(b)));
        }
    });
    // Each row group is filled by a task of its own: the key tables are only read.
    order
        .par_chunks(row_group_size(order.len()))
        .map(|ranked| {
            let mut group = RowGroup::with_capacity(ranked.len());
            for batch in ranked.chunks(ROW_BATCH) {
                // Rank order is random in memory: reading a batch of entries first, then
                // their texts, lets their cache misses overlap. The texts' misses were most
                // of the time spent filling the rows (the ranking took 48 ms on the
                // benchmark log without reading them ahead, 38 ms with).
                let entries = batch
                    .iter()
                    .fold(0u64, |sum, &(_, _, r, i)| sum ^ tables[r as usize].get(i as usize).read_ahead());
                let texts = batch
                    .iter()
                    .fold(0u8, |sum, &(_, _, r, i)| sum ^ tables[r as usize].read_ahead_text(i as usize));
                std::hint::black_box((entries, texts));
                for &(score, _, r, i) in batch {
                    let (table, at) = (&tables[r as usize], i as usize);
                    let s = &table.get(at).stats;
                    group.push(RowValues {
                        rule: r,
                        key: table.key(at),
                        count: s.count,
                        score,
                        first_seen_ms: (s.first_ms != i64::MAX).then_some(s.first_ms),
                        last_seen_ms: (s.last_ms != i64::MIN).then_some(s.last_ms),
                        mean_bytes: s.mean_bytes(),
                        mean_latency_ms: s.mean_latency_ms(),
                        max_latency_ms: (s.latency_n > 0).then(|| s.latency_max_us as f64 / 1000.0),
                        cache_hits: s.hits,
                        cache_misses: s.misses,
                        params: table.params(at),
                    });
                }
            }
            group
        })
        .collect()
}

/// Each name's place among the names in byte order.
fn name_ranks(names: &[String]) -> Vec<u32> {
    let mut by_name: Vec<usize> = (0..names.len()).collect();
    by_name.sort_by(|&a, &b| names[a].cmp(&names[b]));
    let mut rank = vec![0; names.len()];
    for (r, &i) in by_name.iter().enumerate() {
        rank[i] = r as u32;
    }
    rank
}

/// Profile rows written together after their entries were read (see `MergeState::finish`).
const ROW_BATCH: usize = 16;

/// An event with its chunk tallied.
enum Tallied {
    Opened { input: usize, format: String, compression: String },
    Chunk { input: usize, tally: Box<ChunkTally>, buffer: Vec<u8> },
    Failed { input: usize, error: String },
}

fn tally_event(e: Event, ctx: &TallyContext<'_>, pool: &Mutex<Vec<ChunkTally>>) -> Tallied {
    match e {
        Event::Opened { input, format, compression } => {
            Tallied::Opened { input, format, compression: format!("{compression:?}").to_lowercase() }
        }
        Event::Chunk(c) => {
            let reused = lock(pool).pop();
            let mut tally = Box::new(reused.unwrap_or_else(|| ChunkTally::new(ctx.rules.rules().len())));
            tally_chunk_into(&mut tally, &c.data, &c.format, ctx);
            Tallied::Chunk { input: c.input, tally, buffer: c.data }
        }
        Event::Failed { input, error } => Tallied::Failed { input, error },
    }
}

/// The aggregate plus what the summary needs per input.
struct MergeState {
    agg: Aggregate,
    rule_names: Vec<String>,
    inputs: Vec<InputSummary>,
    samples: Vec<Sample>,
}

impl MergeState {
    fn new(inputs: &[Input], rules: &RuleSet, capacity: usize, half_life: Option<HalfLife>) -> Self {
        MergeState {
            agg: Aggregate::new(rules.rules().iter().map(|r| r.params()).collect(), capacity, half_life),
            rule_names: rules.rules().iter().map(|r| r.name.clone()).collect(),
            inputs: inputs
                .iter()
                .map(|i| InputSummary {
                    name: i.name(),
                    format: None,
                    compression: None,
                    lines: 0,
                    error: None,
                })
                .collect(),
            samples: Vec::new(),
        }
    }

    fn apply(&mut self, t: Tallied, spare: &std::sync::mpsc::Sender<Vec<u8>>, pool: &Mutex<Vec<ChunkTally>>) {
        match t {
            Tallied::Opened { input, format, compression } => {
                self.inputs[input].format = Some(format);
                self.inputs[input].compression = Some(compression);
            }
            Tallied::Chunk { input, mut tally, buffer } => {
                let first_line = self.inputs[input].lines + 1;
                for s in &tally.samples {
                    let kept = self.samples.iter().filter(|k| k.reason == s.reason).count();
                    if kept < SAMPLES_PER_REASON {
                        self.samples.push(Sample {
                            reason: s.reason.to_string(),
                            input: self.inputs[input].name.clone(),
                            line: first_line + s.line_in_chunk,
                            excerpt: s.excerpt.clone(),
                        });
                    }
                }
                self.inputs[input].lines += tally.lines;
                self.agg.merge(&tally);
                let _ = spare.send(buffer); // the reader may be gone; the buffer is then freed
                tally.clear();
                lock(pool).push(*tally);
            }
            Tallied::Failed { input, error } => {
                let summary = &self.inputs[input];
                if summary.lines > 0 {
                    tracing::warn!(input = %summary.name, lines = summary.lines, %error, "log breaks off; read up to there");
                } else {
                    tracing::error!(input = %summary.name, %error, "cannot read log");
                }
                self.inputs[input].error = Some(error);
            }
        }
    }

    fn finish(self, opts: &AnalyzeOptions, bytes_read: u64, started: Instant) -> Analysis {
        let MergeState { mut agg, rule_names, inputs, samples } = self;
        let half_life = agg.half_life().cloned();
        let window_end = agg.max_ms;
        let rejected: u64 = agg.rejected.values().sum();
        let matched: u64 = agg.rules.iter().map(|r| r.requests).sum();
        let status_filtered: u64 = agg.rules.iter().map(|r| r.status_filtered).sum();

        let mut clients = agg.all_clients();
        let mut rules = Vec::new();
        for (name, r) in rule_names.iter().zip(agg.rules.iter_mut()) {
            rules.push(RuleSummary {
                name: name.clone(),
                requests: r.requests,
                status_filtered: r.status_filtered,
                distinct_keys: if r.pruned {
                    r.key_sketch.count().round() as u64
                } else {
                    r.keys.len() as u64
                },
                distinct_keys_estimated: r.pruned,
                count_error_bound: r.error_bound,
                distinct_clients: r.clients.count().round() as u64,
            });
        }
        let score = |s: &KeyStats| {
            let cost = match opts.score.weight {
                Weight::Requests => 1.0,
                Weight::Latency => s.mean_latency_ms().map_or(1.0, |l| l.max(0.001)),
                Weight::Bytes => s.mean_bytes().map_or(1.0, |b| b.max(1.0) / 1024.0),
            };
            s.decayed_count(window_end, half_life.as_ref()) * cost
        };
        let tables: Vec<KeyTable> = agg.rules.iter_mut().map(|r| r.keys.take()).collect();
        // Encoding the sketches (a few ms on one core) overlaps the ranking.
        let (sketches, groups) = rayon::join(
            || Sketches {
                clients: crate::sketch::encode(&clients),
                rules: rule_names
                    .iter()
                    .zip(&agg.rules)
                    .map(|(name, r)| RuleSketches {
                        name: name.clone(),
                        keys: crate::sketch::encode(&r.key_sketch),
                        clients: crate::sketch::encode(&r.clients),
                    })
                    .collect(),
            },
            || rank(&tables, &rule_names, &score),
        );
        let profile = ProfileColumns::new(rule_names, groups);

        let mut unmatched: Vec<(Box<[u8]>, u64)> =
            agg.unmatched_paths.drain().map(|p| (p.path, p.count)).collect();
        unmatched.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        unmatched.truncate(opts.top_unmatched);

        let summary = Summary {
            inputs,
            window: Window {
                start: (agg.min_ms != i64::MAX).then(|| format_rfc3339(agg.min_ms)),
                end: (agg.max_ms != i64::MIN).then(|| format_rfc3339(agg.max_ms)),
            },
            lines: LineCounts {
                read: agg.lines,
                parsed: agg.lines - rejected,
                rejected,
                out_of_window: agg.out_of_window,
                unmatched: agg.unmatched,
                status_filtered,
                matched,
            },
            rejected_by_reason: agg.rejected.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            samples,
            rules,
            top_unmatched: unmatched
                .into_iter()
                .map(|(p, n)| PathCount { path: printable_bytes(&p), requests: n })
                .collect(),
            distinct_clients: clients.count().round() as u64,
            config_fingerprint: opts.config_fingerprint.clone(),
            score_half_life: opts.score.half_life.map(|h| humantime::format_duration(h).to_string()),
            score_weight: format!("{:?}", opts.score.weight).to_lowercase(),
            since: opts.since_ms.map(format_rfc3339),
            until: opts.until_ms.map(format_rfc3339),
            bytes_read,
            elapsed_ms: started.elapsed().as_millis() as u64,
        };
        Analysis { summary, profile, sketches }
    }
}
