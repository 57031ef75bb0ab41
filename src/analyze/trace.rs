//! Logs as a sequence of requests, in log order: for the miss-ratio curve (which needs the
//! order of requests, not only their counts) and for verifying a warm against the traffic
//! that followed it.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};

use hyperloglogplus::HyperLogLog;

use super::input::{Chunk, Event, Input, Reader};
use super::ordered::{for_each_in_order, lock};
use super::tally::recycle;
use crate::logformat::{CacheStatus, LogSettings};
use crate::rules::{Outcome, RuleSet};
use crate::sketch::{Hll, new_hll};

/// One request a rule matched.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Index of the rule in the config.
    pub rule: usize,
    /// The cache key.
    pub key: &'a str,
    /// When, in Unix milliseconds, if logged.
    pub time_ms: Option<i64>,
    /// What the cache said, if logged.
    pub cache: Option<CacheStatus>,
    /// Response size, if logged.
    pub bytes: Option<u64>,
}

/// How requests are read from logs: the format, and the rules that turn a line into a key.
#[derive(Debug, Clone, Copy)]
pub struct Reading<'a> {
    /// How the logs are read.
    pub log: &'a LogSettings,
    /// The rules, in the order they are tried.
    pub rules: &'a RuleSet,
}

/// What reading the logs met besides matched requests.
#[derive(Debug, Clone, Default)]
pub struct ReadStats {
    /// Lines read.
    pub lines: u64,
    /// Lines that could not be parsed, or whose key is not UTF-8.
    pub rejected: u64,
    /// Requests no rule matched, or with a status their rule does not cache.
    pub not_cached: u64,
    /// Inputs that could not be read in full: (name, error).
    pub failed_inputs: Vec<(String, String)>,
}

/// Reads `inputs` in order (plain, gzip or zstd) with `reading`'s format and rules, and hands
/// every matched request to `visit`, in log order. The rayon workers parse chunks side by
/// side; `visit` sees one chunk's requests at a time, in order.
pub fn for_each_request(
    inputs: &[Input],
    reading: Reading<'_>,
    visit: impl FnMut(&Request<'_>) + Send,
) -> ReadStats {
    let (spare_tx, spare_rx) = channel::<Vec<u8>>();
    let reader = Reader::new(inputs, reading.log, spare_rx, Arc::new(AtomicU64::new(0)));
    // Visited chunks' request lists come back here for the next chunk.
    let pool: Mutex<Vec<ChunkRequests>> = Mutex::new(Vec::new());
    let (_, stats) = for_each_in_order(
        reader,
        (visit, ReadStats::default()),
        |event| match event {
            Event::Opened { .. } => Parsed::Opened,
            Event::Failed { input, error } => Parsed::Failed { input, error },
            Event::Chunk(chunk) => {
                let mut requests = Box::new(lock(&pool).pop().unwrap_or_default());
                requests.parse(&chunk, reading.rules);
                Parsed::Chunk { requests, buffer: chunk.data }
            }
        },
        |(visit, stats), parsed| match parsed {
            Parsed::Opened => {}
            Parsed::Failed { input, error } => stats.failed_inputs.push((inputs[input].name(), error)),
            Parsed::Chunk { mut requests, buffer } => {
                let _ = spare_tx.send(buffer); // the reader may be gone; the buffer is then freed
                requests.visit(visit, stats);
                lock(&pool).push(*requests);
            }
        },
    );
    stats
}

/// An event with its chunk parsed.
enum Parsed {
    Opened,
    Chunk { requests: Box<ChunkRequests>, buffer: Vec<u8> },
    Failed { input: usize, error: String },
}

/// The matched requests of a chunk, in order, with what else its lines held.
#[derive(Default)]
struct ChunkRequests {
    requests: Vec<ChunkRequest>,
    /// The requests' keys, end to end.
    keys: String,
    lines: u64,
    rejected: u64,
    not_cached: u64,
}

/// A [`Request`] whose key ends at `key_end` in [`ChunkRequests::keys`], where the previous
/// one's ends.
struct ChunkRequest {
    rule: usize,
    key_end: usize,
    time_ms: Option<i64>,
    cache: Option<CacheStatus>,
    bytes: Option<u64>,
}

impl ChunkRequests {
    fn parse(&mut self, chunk: &Chunk, rules: &RuleSet) {
        let mut spare_values: Vec<Option<&[u8]>> = Vec::new();
        let mut key = Vec::with_capacity(64);
        for line in chunk.data.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            self.lines += 1;
            let Ok(rec) = chunk.format.parse_line(line) else {
                self.rejected += 1;
                continue;
            };
            let mut values = recycle(std::mem::take(&mut spare_values));
            match rules.classify(&rec, &mut values) {
                Outcome::Matched(rule) => match rules.rules()[rule].key.render(&values, &mut key) {
                    Ok(key) => {
                        self.keys.push_str(key);
                        self.requests.push(ChunkRequest {
                            rule,
                            key_end: self.keys.len(),
                            time_ms: rec.time_ms,
                            cache: rec.cache,
                            bytes: rec.bytes,
                        });
                    }
                    Err(_) => self.rejected += 1,
                },
                Outcome::StatusFiltered(_) | Outcome::Unmatched => self.not_cached += 1,
            }
            spare_values = recycle(values);
        }
    }

    /// Hands the requests to `visit` and adds the counts to `stats`, leaving `self` empty.
    fn visit(&mut self, visit: &mut impl FnMut(&Request<'_>), stats: &mut ReadStats) {
        let mut start = 0;
        for r in &self.requests {
            let key = &self.keys[start..r.key_end];
            start = r.key_end;
            visit(&Request { rule: r.rule, key, time_ms: r.time_ms, cache: r.cache, bytes: r.bytes });
        }
        stats.lines += self.lines;
        stats.rejected += self.rejected;
        stats.not_cached += self.not_cached;
        self.requests.clear();
        self.keys.clear();
        (self.lines, self.rejected, self.not_cached) = (0, 0, 0);
    }
}

/// The requests of some logs that matched a rule, in order.
#[derive(Debug, Clone, Default)]
pub struct KeyTrace {
    /// One 64-bit hash of (rule, key) per matched request, in log order.
    pub keys: Vec<u64>,
    /// The working set hour by hour (logs with request times only).
    pub hours: Vec<Hour>,
    /// What else reading met.
    pub stats: ReadStats,
}

/// One hour of traffic.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Hour {
    /// Start of the hour, Unix ms.
    pub start_ms: i64,
    /// Requests that matched a rule.
    pub requests: u64,
    /// Distinct keys requested (HyperLogLog estimate, about 0.8% standard error).
    pub distinct_keys: u64,
    /// Their estimated size: distinct keys times the mean logged response size.
    pub est_bytes: u64,
}

/// Counting state of one hour.
struct HourTally {
    sketch: Hll,
    requests: u64,
    bytes: u64,
    sized: u64,
}

/// Reads `inputs` into a key trace and the hourly working set. Memory is 8 bytes per matched
/// request, plus 12 KiB per hour of log.
pub fn key_trace(inputs: &[Input], reading: Reading<'_>) -> KeyTrace {
    // Fixed seeds: the same key hashes alike in every run, so sampled curves are repeatable.
    let hasher = ahash::RandomState::with_seeds(0x7072_6568, 0x6561_7420, 0x7472_6163, 0x6520_6b65);
    let mut keys = Vec::new();
    let mut hours: BTreeMap<i64, HourTally> = BTreeMap::new();
    let mut hashed = Vec::with_capacity(64);
    let stats = for_each_request(inputs, reading, |r| {
        hashed.clear();
        hashed.extend_from_slice(&(r.rule as u32).to_le_bytes());
        hashed.extend_from_slice(r.key.as_bytes());
        keys.push(hasher.hash_one(&hashed));
        if let Some(t) = r.time_ms {
            let hour = hours.entry(t.div_euclid(HOUR_MS) * HOUR_MS).or_insert_with(|| HourTally {
                sketch: new_hll(),
                requests: 0,
                bytes: 0,
                sized: 0,
            });
            hour.sketch.insert(hashed.as_slice());
            hour.requests += 1;
            if let Some(b) = r.bytes {
                hour.bytes += b;
                hour.sized += 1;
            }
        }
    });
    let hours = hours
        .into_iter()
        .map(|(start_ms, mut h)| {
            let distinct_keys = h.sketch.count().round() as u64;
            let mean = if h.sized == 0 { 0.0 } else { h.bytes as f64 / h.sized as f64 };
            Hour {
                start_ms,
                requests: h.requests,
                distinct_keys,
                est_bytes: (distinct_keys as f64 * mean) as u64,
            }
        })
        .collect();
    KeyTrace { keys, hours, stats }
}

const HOUR_MS: i64 = 3_600_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::input::CHUNK_BYTES;

    /// A log of several chunks, replayed by four workers: every request reaches the visitor
    /// once and in log order, and the lines no rule caches or no parser reads are counted.
    #[test]
    fn requests_reach_the_visitor_in_log_order() {
        let rules = RuleSet::new(vec![crate::rules::Rule::new("p", "GET /p/{id}", "p:{id}").expect("valid")]);
        let reading = Reading { log: &LogSettings::default(), rules: &rules };
        let agent = "a".repeat(900); // about 1 KiB a line, so the log spans several chunks
        let (mut log, mut expected, mut other, mut malformed) = (String::new(), Vec::new(), 0, 0);
        for i in 0.. {
            if log.len() > 3 * CHUNK_BYTES + CHUNK_BYTES / 2 {
                break;
            }
            let path = if i % 50 == 7 {
                other += 1;
                "/other".to_string()
            } else {
                expected.push(format!("p:{i}"));
                format!("/p/{i}")
            };
            log.push_str(&format!(
                "10.0.0.1 - - [01/Jan/2026:00:00:00 +0000] \"GET {path} HTTP/1.1\" 200 5 \"-\" \"{agent}\"\n"
            ));
            if i % 1000 == 999 {
                malformed += 1;
                log.push_str("not a log line\n");
            }
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("access.log");
        std::fs::write(&path, &log).expect("written");

        let pool = rayon::ThreadPoolBuilder::new().num_threads(4).build().expect("pool");
        // A few rounds: with four workers the chunks may finish in another order each time,
        // and the requests must come out in the log's order all the same.
        for round in 0..3 {
            let mut seen = Vec::new();
            let stats = pool.install(|| {
                for_each_request(&[Input::File(path.clone())], reading, |r| {
                    assert_eq!(r.rule, 0);
                    seen.push(r.key.to_string());
                })
            });
            let (n, m) = (seen.len(), expected.len());
            assert!(seen == expected, "round {round}: {n} requests seen, {m} expected, or not in order");
            assert_eq!(stats.lines, expected.len() as u64 + other + malformed);
            assert_eq!((stats.rejected, stats.not_cached), (malformed, other));
        }
    }
}
