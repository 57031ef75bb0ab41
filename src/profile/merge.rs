//! Merging profiles of several hosts (or days) into one, as if one analysis had read all their
//! logs: counts add, windows widen, scores are decayed to the merged window's end, means are
//! weighted by requests, and the HyperLogLog sketches merge into true distinct counts.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::{
    LineCounts, PathCount, ProfileError, ProfileMeta, ProfileRow, RuleSketches, SCHEMA_VERSION, Sketches,
    Summary, Window,
};
use crate::sketch::{self, Hll};
use crate::timestamp::{format_rfc3339, parse_rfc3339};

/// Samples of rejected lines kept in a merged summary.
const SAMPLES: usize = 20;

/// A profile to merge: where it came from, its metadata, all its rows.
pub struct Part {
    /// The file (for messages).
    pub path: PathBuf,
    /// Its metadata.
    pub meta: ProfileMeta,
    /// Every row.
    pub rows: Vec<ProfileRow>,
}

/// What a row's score is multiplied by under `weight` (see the README's "Score").
fn cost(weight: &str, mean_latency_ms: Option<f64>, mean_bytes: Option<f64>) -> f64 {
    match weight {
        "latency" => mean_latency_ms.map_or(1.0, |l| l.max(0.001)),
        "bytes" => mean_bytes.map_or(1.0, |b| b.max(1.0) / 1024.0),
        _ => 1.0,
    }
}

/// A (rule, key) being merged.
struct Acc {
    row: ProfileRow,
    /// Recency-decayed count as of the merged window's end.
    decayed: f64,
    bytes_n: u64,
    latency_n: u64,
}

/// A weighted mean of two optional means.
fn mean(a: Option<f64>, a_n: u64, b: Option<f64>, b_n: u64) -> Option<f64> {
    match (a, b) {
        (Some(x), Some(y)) if a_n + b_n > 0 => Some((x * a_n as f64 + y * b_n as f64) / (a_n + b_n) as f64),
        (x, y) => x.or(y),
    }
}

fn mismatch(path: &std::path::Path, what: &str, a: &str, b: &str) -> ProfileError {
    ProfileError::Incompatible {
        path: path.to_path_buf(),
        message: format!(
            "its {what} (`{b}`) differs from the first profile's (`{a}`): only profiles made with the same rules and score settings merge"
        ),
    }
}

/// Merges `parts` (at least one) into the metadata and rows of one profile written at `now_ms`.
pub fn merge(parts: Vec<Part>, now_ms: i64) -> Result<(ProfileMeta, Vec<ProfileRow>), ProfileError> {
    let first = parts.first().ok_or_else(|| ProfileError::Incompatible {
        path: PathBuf::from("-"),
        message: "nothing to merge".into(),
    })?;
    let (fingerprint, half_life, weight) = (
        first.meta.summary.config_fingerprint.clone(),
        first.meta.summary.score_half_life.clone(),
        first.meta.summary.score_weight.clone(),
    );
    for p in &parts {
        let s = &p.meta.summary;
        if s.config_fingerprint != fingerprint {
            return Err(mismatch(&p.path, "config fingerprint", &fingerprint, &s.config_fingerprint));
        }
        if s.score_half_life != half_life {
            let show = |h: &Option<String>| h.clone().unwrap_or_else(|| "none".into());
            return Err(mismatch(&p.path, "score half-life", &show(&half_life), &show(&s.score_half_life)));
        }
        if s.score_weight != weight {
            return Err(mismatch(&p.path, "score weight", &weight, &s.score_weight));
        }
    }
    let half_life_ms = half_life
        .as_deref()
        .and_then(|h| humantime::parse_duration(h).ok())
        .map(|d| d.as_secs_f64() * 1000.0);
    let ends: Vec<Option<i64>> =
        parts.iter().map(|p| p.meta.summary.window.end.as_deref().and_then(parse_rfc3339)).collect();
    let starts = parts.iter().filter_map(|p| p.meta.summary.window.start.as_deref().and_then(parse_rfc3339));
    let end = ends.iter().flatten().copied().max();
    let start = starts.min();

    let mut summary = Summary {
        inputs: Vec::new(),
        window: Window { start: start.map(format_rfc3339), end: end.map(format_rfc3339) },
        lines: LineCounts {
            read: 0,
            parsed: 0,
            rejected: 0,
            out_of_window: 0,
            unmatched: 0,
            status_filtered: 0,
            matched: 0,
        },
        rejected_by_reason: BTreeMap::new(),
        samples: Vec::new(),
        rules: Vec::new(),
        top_unmatched: Vec::new(),
        distinct_clients: 0,
        config_fingerprint: fingerprint,
        score_half_life: half_life,
        score_weight: weight.clone(),
        since: first.meta.summary.since.clone(),
        until: first.meta.summary.until.clone(),
        bytes_read: 0,
        elapsed_ms: 0,
    };
    // Sketches: merged only when every part has them.
    let all_sketched = parts.iter().all(|p| p.meta.sketches.is_some());
    let mut clients = sketch::new_hll();
    let mut rule_sketches: Vec<(String, Hll, Hll)> = Vec::new();
    let mut unmatched: HashMap<String, u64> = HashMap::new();
    let mut top_len = 0;
    let mut accs: HashMap<(String, String), Acc> = HashMap::new();

    for (part, part_end) in parts.into_iter().zip(ends) {
        let s = part.meta.summary;
        summary.inputs.extend(s.inputs);
        let l = &mut summary.lines;
        l.read += s.lines.read;
        l.parsed += s.lines.parsed;
        l.rejected += s.lines.rejected;
        l.out_of_window += s.lines.out_of_window;
        l.unmatched += s.lines.unmatched;
        l.status_filtered += s.lines.status_filtered;
        l.matched += s.lines.matched;
        for (reason, n) in s.rejected_by_reason {
            *summary.rejected_by_reason.entry(reason).or_insert(0) += n;
        }
        summary.samples.extend(s.samples);
        summary.samples.truncate(SAMPLES);
        for r in s.rules {
            match summary.rules.iter_mut().find(|m| m.name == r.name) {
                Some(m) => {
                    m.requests += r.requests;
                    m.status_filtered += r.status_filtered;
                    m.count_error_bound += r.count_error_bound;
                    m.distinct_keys_estimated |= r.distinct_keys_estimated;
                    m.distinct_clients = m.distinct_clients.max(r.distinct_clients);
                }
                None => summary.rules.push(r),
            }
        }
        top_len = top_len.max(s.top_unmatched.len());
        for p in s.top_unmatched {
            *unmatched.entry(p.path).or_insert(0) += p.requests;
        }
        summary.distinct_clients = summary.distinct_clients.max(s.distinct_clients);
        // A window bound that the parts do not share says nothing about the merge.
        if summary.since != s.since {
            summary.since = None;
        }
        if summary.until != s.until {
            summary.until = None;
        }
        summary.bytes_read += s.bytes_read;
        summary.elapsed_ms += s.elapsed_ms;
        if let Some(sk) = part.meta.sketches.filter(|_| all_sketched) {
            if let Some(h) = sketch::decode(&sk.clients) {
                sketch::merge(&mut clients, &h);
            }
            for r in sk.rules {
                let at = match rule_sketches.iter().position(|(n, _, _)| *n == r.name) {
                    Some(i) => i,
                    None => {
                        rule_sketches.push((r.name.clone(), sketch::new_hll(), sketch::new_hll()));
                        rule_sketches.len() - 1
                    }
                };
                if let Some(k) = sketch::decode(&r.keys) {
                    sketch::merge(&mut rule_sketches[at].1, &k);
                }
                if let Some(c) = sketch::decode(&r.clients) {
                    sketch::merge(&mut rule_sketches[at].2, &c);
                }
            }
        }
        // Scores are decayed counts as of each part's end: bring them to the merged end.
        let shift = match (half_life_ms, part_end, end) {
            (Some(h), Some(pe), Some(e)) => ((pe - e) as f64 / h).exp2(),
            _ => 1.0,
        };
        for row in part.rows {
            let decayed = row.score / cost(&weight, row.mean_latency_ms, row.mean_bytes) * shift;
            let n = row.count;
            let (bytes_n, latency_n) = (
                if row.mean_bytes.is_some() { n } else { 0 },
                if row.mean_latency_ms.is_some() { n } else { 0 },
            );
            match accs.entry((row.rule.clone(), row.key.clone())) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Acc { row, decayed, bytes_n, latency_n });
                }
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    let a = o.get_mut();
                    a.row.mean_bytes = mean(a.row.mean_bytes, a.bytes_n, row.mean_bytes, bytes_n);
                    a.row.mean_latency_ms =
                        mean(a.row.mean_latency_ms, a.latency_n, row.mean_latency_ms, latency_n);
                    a.row.max_latency_ms = match (a.row.max_latency_ms, row.max_latency_ms) {
                        (Some(x), Some(y)) => Some(x.max(y)),
                        (x, y) => x.or(y),
                    };
                    a.row.first_seen_ms =
                        [a.row.first_seen_ms, row.first_seen_ms].into_iter().flatten().min();
                    a.row.last_seen_ms = [a.row.last_seen_ms, row.last_seen_ms].into_iter().flatten().max();
                    a.row.count += row.count;
                    a.row.cache_hits += row.cache_hits;
                    a.row.cache_misses += row.cache_misses;
                    a.bytes_n += bytes_n;
                    a.latency_n += latency_n;
                    a.decayed += decayed;
                }
            }
        }
    }

    let mut rows: Vec<ProfileRow> = accs
        .into_values()
        .map(|mut a| {
            a.row.score = a.decayed * cost(&weight, a.row.mean_latency_ms, a.row.mean_bytes);
            a.row
        })
        .collect();
    rows.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.count.cmp(&a.count))
            .then_with(|| ProfileRow::hotness_order(a, b))
    });
    for r in &mut summary.rules {
        // Exact while no part pruned its table: the merged rows are all the keys.
        r.distinct_keys = rows.iter().filter(|row| row.rule == r.name).count() as u64;
        if let Some((_, keys, c)) = rule_sketches.iter_mut().find(|(n, _, _)| *n == r.name) {
            if r.distinct_keys_estimated {
                r.distinct_keys = hll_count(keys);
            }
            r.distinct_clients = hll_count(c);
        }
    }
    if all_sketched {
        summary.distinct_clients = hll_count(&mut clients);
    }
    let mut top: Vec<PathCount> =
        unmatched.into_iter().map(|(path, requests)| PathCount { path, requests }).collect();
    top.sort_by(|a, b| b.requests.cmp(&a.requests).then_with(|| a.path.cmp(&b.path)));
    top.truncate(top_len);
    summary.top_unmatched = top;

    let sketches = all_sketched.then(|| Sketches {
        clients: sketch::encode(&clients),
        rules: rule_sketches
            .iter()
            .map(|(name, keys, c)| RuleSketches {
                name: name.clone(),
                keys: sketch::encode(keys),
                clients: sketch::encode(c),
            })
            .collect(),
    });
    let meta = ProfileMeta {
        schema_version: SCHEMA_VERSION,
        generator: format!("preheat {} (merge)", env!("CARGO_PKG_VERSION")),
        created: format_rfc3339(now_ms),
        summary,
        sketches,
    };
    Ok((meta, rows))
}

fn hll_count(h: &mut Hll) -> u64 {
    use hyperloglogplus::HyperLogLog;
    h.count().round() as u64
}
