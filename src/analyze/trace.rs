//! Logs as a sequence of requests, in log order: for the miss-ratio curve (which needs the
//! order of requests, not only their counts) and for verifying a warm against the traffic
//! that followed it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::channel;

use hyperloglogplus::HyperLogLog;

use super::aggregate::{Hll, new_hll, recycle};
use super::input::{Event, Input, read_all};
use crate::config::Config;
use crate::logformat::CacheStatus;
use crate::rules::Outcome;

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

/// Reads `inputs` in order (plain, gzip or zstd) with `config`'s format and rules, and hands
/// every matched request to `visit`.
pub fn for_each_request(inputs: &[Input], config: &Config, mut visit: impl FnMut(&Request<'_>)) -> ReadStats {
    let mut stats = ReadStats::default();
    let (spare_tx, spare_rx) = channel::<Vec<u8>>();
    let mut spare_values: Vec<Option<&[u8]>> = Vec::new();
    let mut key = Vec::with_capacity(64);
    read_all(inputs, &config.format, &config.json_fields, spare_rx, Arc::new(AtomicU64::new(0)), |event| {
        match event {
            Event::Opened { .. } => {}
            Event::Failed { input, error } => stats.failed_inputs.push((inputs[input].name(), error)),
            Event::Chunk(chunk) => {
                for line in chunk.data.split(|&b| b == b'\n') {
                    if line.is_empty() {
                        continue;
                    }
                    stats.lines += 1;
                    let Ok(rec) = chunk.format.parse_line(line) else {
                        stats.rejected += 1;
                        continue;
                    };
                    let mut values = recycle(std::mem::take(&mut spare_values));
                    match config.rules.classify(&rec, &mut values) {
                        Outcome::Matched(rule) => {
                            match config.rules.rules()[rule].key.render(&values, &mut key) {
                                Ok(key) => visit(&Request {
                                    rule,
                                    key,
                                    time_ms: rec.time_ms,
                                    cache: rec.cache,
                                    bytes: rec.bytes,
                                }),
                                Err(_) => stats.rejected += 1,
                            }
                        }
                        Outcome::StatusFiltered(_) | Outcome::Unmatched => stats.not_cached += 1,
                    }
                    spare_values = recycle(values);
                }
                let _ = spare_tx.send(chunk.data);
            }
        }
        true
    });
    stats
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
pub fn key_trace(inputs: &[Input], config: &Config) -> KeyTrace {
    // Fixed seeds: the same key hashes alike in every run, so sampled curves are repeatable.
    let hasher = ahash::RandomState::with_seeds(0x7072_6568, 0x6561_7420, 0x7472_6163, 0x6520_6b65);
    let mut keys = Vec::new();
    let mut hours: BTreeMap<i64, HourTally> = BTreeMap::new();
    let mut hashed = Vec::with_capacity(64);
    let stats = for_each_request(inputs, config, |r| {
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
