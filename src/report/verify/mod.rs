//! Did the warm pay off? The traffic after a deploy, read from its access logs, against the
//! warm's plan and the hit ratio the profile recorded before.
//!
//! The warmed set is the plan rebuilt from the same profile and config (the plan is a pure
//! function of both). For every request after the deploy: was its key warmed, and did the
//! cache in front of the application hit (`$upstream_cache_status` or a JSON cache field)?
//! Per minute, for warmed keys, for the rest and overall; then a verdict a person can act on.

mod redis;

use std::collections::HashMap;

use serde::Serialize;

use crate::analyze::input::Input;
use crate::analyze::trace::{ReadStats, Reading, for_each_request};
use crate::logformat::CacheStatus;
use crate::plan::Plan;
use crate::rules::RuleSet;
use crate::warm::RunReport;

pub use self::redis::{ReadSignal, RedisObservation, observe};

/// Narrows `plan` to the keys a warm landed, as its report says: none when nothing landed,
/// else every planned key but those it lists as not written. `Err` says why the report does
/// not fit the plan (another profile or config).
pub fn keep_landed(plan: &mut Plan, report: &RunReport) -> Result<(), String> {
    if report.planned != plan.keys.len() as u64 && report.planned > 0 {
        return Err(format!(
            "the warm report planned {} keys but this profile and config plan {}: verify with the \
             profile and config the warm used",
            report.planned,
            plan.keys.len()
        ));
    }
    if report.landed() == 0 {
        plan.keys.clear();
        return Ok(());
    }
    let not_written: Vec<std::collections::HashSet<&str>> = plan
        .rules
        .iter()
        .map(|r| {
            report
                .not_written
                .get(&r.name)
                .map(|keys| keys.iter().map(String::as_str).collect())
                .unwrap_or_default()
        })
        .collect();
    plan.keys.retain(|k| !not_written[k.rule].contains(k.key.as_str()));
    Ok(())
}

/// Hits and misses of some requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Hits {
    /// Requests the cache served.
    pub hits: u64,
    /// Requests it passed to the application.
    pub misses: u64,
}

impl Hits {
    fn add(&mut self, cache: Option<CacheStatus>) {
        match cache {
            Some(CacheStatus::Hit) => self.hits += 1,
            Some(CacheStatus::Miss) => self.misses += 1,
            Some(CacheStatus::Other) | None => {}
        }
    }

    /// Hits over hits and misses; `None` when the log said neither.
    pub fn ratio(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0).then(|| self.hits as f64 / n as f64)
    }
}

/// One minute after the first request.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Minute {
    /// Minutes since the first request (0-based).
    pub minute: u64,
    /// Requests that matched a rule.
    pub requests: u64,
    /// Requests for warmed keys.
    pub warmed: Hits,
    /// Requests for other keys.
    pub other: Hits,
}

/// One rule's share.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RuleCheck {
    /// Rule name.
    pub name: String,
    /// Keys the plan warmed.
    pub warmed_keys: u64,
    /// Of those, keys requested at least once.
    pub warmed_keys_read: u64,
    /// Requests after the deploy.
    pub requests: u64,
    /// Of those, requests for warmed keys.
    pub requests_to_warmed: u64,
    /// The plan's predicted coverage of the rule's requests.
    pub predicted_coverage: f64,
}

/// What the traffic after a warm showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Verification {
    /// Requests that matched a rule.
    pub requests: u64,
    /// Of those, requests for warmed keys.
    pub requests_to_warmed: u64,
    /// `requests_to_warmed / requests`.
    pub observed_coverage: f64,
    /// The plan's prediction of it.
    pub predicted_coverage: f64,
    /// The hit ratio of all the profile's requests (the traffic before the deploy).
    pub hit_ratio_before: Option<f64>,
    /// The warmed keys' own hit ratio in the profile, before the deploy.
    pub warmed_hit_ratio_before: Option<f64>,
    /// Whether the warmed set is the keys a warm report says were written (else every
    /// planned key is taken as warmed).
    pub warmed_from_report: bool,
    /// Hits for warmed keys after the deploy.
    pub warmed: Hits,
    /// Hits for other keys after the deploy.
    pub other: Hits,
    /// Keys the plan warmed.
    pub warmed_keys: u64,
    /// Of those, keys requested at least once.
    pub warmed_keys_read: u64,
    /// Minute by minute, from the first request.
    pub minutes: Vec<Minute>,
    /// Per rule, in config order.
    pub rules: Vec<RuleCheck>,
    /// What Redis itself said, when asked.
    pub redis: Option<RedisObservation>,
    /// What to make of it, in sentences.
    pub verdict: Vec<String>,
}

fn share(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// Counts requests against the warmed set.
struct Tally {
    /// Per rule: warmed key -> requests after the deploy.
    warmed: Vec<HashMap<String, u64>>,
    v: Verification,
    first_ms: Option<i64>,
}

impl Tally {
    fn new(plan: &Plan, baseline: Baseline, rules: &RuleSet) -> Tally {
        let rule_defs = rules.rules();
        let mut warmed: Vec<HashMap<String, u64>> = vec![HashMap::new(); rule_defs.len()];
        for k in &plan.keys {
            warmed[k.rule].insert(k.key.clone(), 0);
        }
        let warmed_before = plan.keys.iter().fold(Hits::default(), |h, k| Hits {
            hits: h.hits + k.cache_hits,
            misses: h.misses + k.cache_misses,
        });
        let v = Verification {
            predicted_coverage: plan.predicted_coverage,
            hit_ratio_before: baseline.hit_ratio_before,
            warmed_hit_ratio_before: warmed_before.ratio(),
            warmed_from_report: baseline.warmed_from_report,
            warmed_keys: plan.keys.len() as u64,
            rules: rule_defs
                .iter()
                .enumerate()
                .map(|(i, r)| RuleCheck {
                    name: r.name.clone(),
                    warmed_keys: warmed[i].len() as u64,
                    predicted_coverage: plan
                        .rules
                        .iter()
                        .find(|p| p.name == r.name)
                        .map_or(0.0, |p| share(p.requests_covered, p.requests_profiled)),
                    ..RuleCheck::default()
                })
                .collect(),
            ..Verification::default()
        };
        Tally { warmed, v, first_ms: None }
    }

    /// One request; `rule` is `None` when the log names only the key (an application's log),
    /// and the key's rule is then whichever warmed it.
    fn add(&mut self, rule: Option<usize>, key: &str, time_ms: Option<i64>, cache: Option<CacheStatus>) {
        let v = &mut self.v;
        v.requests += 1;
        // Without a rule only warmed keys can be told apart, so per-rule request counts come
        // from access logs alone.
        let found = rule.or_else(|| self.warmed.iter().position(|w| w.contains_key(key)));
        let is_warmed = found.and_then(|r| self.warmed[r].get_mut(key)).map(|n| *n += 1).is_some();
        if let Some(r) = rule {
            v.rules[r].requests += 1;
            if is_warmed {
                v.rules[r].requests_to_warmed += 1;
            }
        }
        if is_warmed {
            v.requests_to_warmed += 1;
            v.warmed.add(cache);
        } else {
            v.other.add(cache);
        }
        if let Some(t) = time_ms {
            let t0 = *self.first_ms.get_or_insert(t);
            let minute = (t.saturating_sub(t0) / 60_000).max(0) as usize;
            // A log far out of order (or spanning days) is cut at a day of minutes.
            if minute < 24 * 60 {
                if v.minutes.len() <= minute {
                    v.minutes.resize_with(minute + 1, Minute::default);
                }
                let m = &mut v.minutes[minute];
                m.requests += 1;
                if is_warmed { m.warmed.add(cache) } else { m.other.add(cache) }
            }
        }
    }

    fn finish(self) -> Verification {
        let mut v = self.v;
        for (i, m) in v.minutes.iter_mut().enumerate() {
            m.minute = i as u64;
        }
        for (i, keys) in self.warmed.iter().enumerate() {
            v.rules[i].warmed_keys_read = keys.values().filter(|&&n| n > 0).count() as u64;
        }
        v.warmed_keys_read = v.rules.iter().map(|r| r.warmed_keys_read).sum();
        v.observed_coverage = share(v.requests_to_warmed, v.requests);
        v.verdict = verdict(&v);
        v
    }
}

/// What the traffic after the deploy is held against, besides the plan.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Baseline {
    /// The hit ratio of all the profile's requests.
    pub hit_ratio_before: Option<f64>,
    /// Whether the plan was narrowed to the keys a warm report says landed ([`keep_landed`]).
    pub warmed_from_report: bool,
}

/// Reads the access logs of the traffic after a warm and checks it against `plan`.
pub fn verify(
    plan: &Plan,
    baseline: Baseline,
    inputs: &[Input],
    reading: Reading<'_>,
) -> (Verification, ReadStats) {
    let mut tally = Tally::new(plan, baseline, reading.rules);
    let stats = for_each_request(inputs, reading, |r| tally.add(Some(r.rule), r.key, r.time_ms, r.cache));
    (tally.finish(), stats)
}

/// Reads an application's own cache log and checks it against `plan`: JSON lines with the
/// key (`key`), whether it hit (`cache`, `cache_status` or `hit`: `HIT`/`MISS` or a boolean)
/// and optionally when (`time`, `ts` or `timestamp`: RFC 3339, or Unix seconds or ms).
pub fn verify_app_log(
    plan: &Plan,
    baseline: Baseline,
    inputs: &[Input],
    rules: &RuleSet,
) -> (Verification, ReadStats) {
    let mut tally = Tally::new(plan, baseline, rules);
    let mut stats = ReadStats::default();
    for input in inputs {
        let reader = match crate::analyze::input::open_decompressed(input) {
            Ok(r) => std::io::BufReader::new(r),
            Err(e) => {
                stats.failed_inputs.push((input.name(), e.to_string()));
                continue;
            }
        };
        for line in std::io::BufRead::split(reader, b'\n') {
            let line = match line {
                Ok(l) => l,
                Err(e) => {
                    stats.failed_inputs.push((input.name(), e.to_string()));
                    break;
                }
            };
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            stats.lines += 1;
            match app_log_line(&line) {
                Some((key, time_ms, cache)) => tally.add(None, &key, time_ms, cache),
                None => stats.rejected += 1,
            }
        }
    }
    (tally.finish(), stats)
}

/// (key, time, cache status) of one JSON line of an application's cache log.
fn app_log_line(line: &[u8]) -> Option<(String, Option<i64>, Option<CacheStatus>)> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    let key = v.get("key")?.as_str()?.to_string();
    let cache = ["cache", "cache_status", "hit"].iter().find_map(|f| match v.get(*f)? {
        serde_json::Value::Bool(true) => Some(CacheStatus::Hit),
        serde_json::Value::Bool(false) => Some(CacheStatus::Miss),
        serde_json::Value::String(s) => Some(CacheStatus::from_bytes(s.as_bytes())),
        _ => None,
    });
    let time_ms = ["time", "ts", "timestamp"].iter().find_map(|f| match v.get(*f)? {
        serde_json::Value::Number(n) => {
            let x = n.as_f64()?;
            // Unix seconds or milliseconds: a millisecond timestamp is above 10^11.
            Some(if x > 1e11 { x as i64 } else { (x * 1000.0) as i64 })
        }
        serde_json::Value::String(s) => humantime::parse_rfc3339_weak(s)
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_millis() as i64),
        _ => None,
    });
    Some((key, time_ms, cache))
}

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

/// Sentences a person can act on.
fn verdict(v: &Verification) -> Vec<String> {
    let mut out = Vec::new();
    if v.requests == 0 {
        out.push("no request in the logs matched a rule: check --config and the log format".into());
        return out;
    }
    out.push(format!(
        "the warm set covered {} of requests, predicted {}",
        pct(v.observed_coverage),
        pct(v.predicted_coverage)
    ));
    if v.observed_coverage + 0.10 < v.predicted_coverage {
        out.push(
            "coverage fell more than 10 points short of the prediction: the profile may be stale; \
             analyze more recent logs"
                .into(),
        );
    }
    let all = Hits { hits: v.warmed.hits + v.other.hits, misses: v.warmed.misses + v.other.misses };
    match (all.ratio(), v.hit_ratio_before) {
        (Some(after), Some(before)) => {
            out.push(format!(
                "hit ratio of all requests: after the deploy {}, before it {}",
                pct(after),
                pct(before)
            ));
            if let Some(w) = v.warmed.ratio() {
                let was =
                    v.warmed_hit_ratio_before.map_or(String::new(), |b| format!(", before it {}", pct(b)));
                let others =
                    v.other.ratio().map_or(String::new(), |o| format!("; other keys after it {}", pct(o)));
                out.push(format!("hit ratio of the warmed keys: after the deploy {}{was}{others}", pct(w)));
            }
            if let Some(m) = v.minutes.iter().find(|m| {
                Hits { hits: m.warmed.hits + m.other.hits, misses: m.warmed.misses + m.other.misses }
                    .ratio()
                    .is_some_and(|r| r >= before)
            }) {
                out.push(format!(
                    "the hit ratio reached its level from before the deploy in minute {}",
                    m.minute + 1
                ));
            }
        }
        (Some(after), None) => out.push(format!("hit ratio after the deploy {}", pct(after))),
        (None, _) => out.push("the logs have no cache status, so hit ratios are unknown".into()),
    }
    if !v.warmed_from_report {
        out.push(
            "every planned key was counted as warmed: pass --warm-report (from `preheat warm --report`) to \
             count only the keys the warm wrote"
                .into(),
        );
    }
    let unread = v.warmed_keys - v.warmed_keys_read;
    if v.warmed_keys > 0 && share(unread, v.warmed_keys) > 0.10 {
        let worst = v.rules.iter().filter(|r| r.warmed_keys > 0).max_by(|a, b| {
            share(a.warmed_keys - a.warmed_keys_read, a.warmed_keys)
                .total_cmp(&share(b.warmed_keys - b.warmed_keys_read, b.warmed_keys))
        });
        let mut line = format!("{} of warmed keys were never read", pct(share(unread, v.warmed_keys)));
        if let Some(r) = worst {
            line.push_str(&format!(
                ": lower warm.max_keys or the quota of rule `{}` ({} of its {} warmed keys unread)",
                r.name,
                r.warmed_keys - r.warmed_keys_read,
                r.warmed_keys
            ));
        }
        out.push(line);
    }
    out
}
