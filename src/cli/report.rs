//! `preheat report`: how many keys and how much memory buy which share of requests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use preheat::analyze::input;
use preheat::analyze::trace::{Hour, key_trace};
use preheat::profile::open_profile;
use preheat::report::capacity::{CapacityReport, PER_KEY_OVERHEAD, Scope};
use preheat::report::mrc::{self, MissRatioCurve};
use preheat::report::simulate::{ColdVsWarm, cold_vs_warm};

use super::{Exit, RunError, load_config};

/// Traces up to this many requests get the exact miss-ratio curve; longer ones are sampled.
const EXACT_LIMIT: usize = 4_000_000;
/// Sampled requests aimed at when sampling (the sampled curve's error shrinks with more).
const SAMPLED_REQUESTS: f64 = 400_000.0;

/// Flags of `preheat report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Logs to replay for the LRU miss-ratio curve (files, globs, directories, `-`).
    #[arg(value_name = "LOG")]
    logs: Vec<String>,
    /// Config file whose rules turn log lines into keys [default: ./preheat.toml if present,
    /// else built-in rules].
    #[arg(long, short, env = "PREHEAT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    format: super::AccessLogFormat,
    #[command(flatten)]
    profile: super::ProfileChoice,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also write the report as one self-contained HTML page with charts.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Cache size in keys for the cold-against-warm replay [default: the keys for 90%
    /// coverage, else a tenth of the logs' keys].
    #[arg(long)]
    cache_keys: Option<u64>,
}

pub fn run(args: ReportArgs) -> anyhow::Result<Exit> {
    let capacity = match args.profile.resolve() {
        Ok(path) => {
            let (meta, rows) = open_profile(&path)?;
            let window = (meta.summary.window.start.clone(), meta.summary.window.end.clone());
            Some((CapacityReport::build(rows, &meta.summary)?, path, window))
        }
        // With logs to replay, the miss-ratio curve is worth showing on its own.
        Err(e) if !args.logs.is_empty() => {
            tracing::warn!(error = %e, "no profile: only the miss-ratio curve of the logs is reported");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let recommended = capacity.as_ref().and_then(|(r, _, _)| r.overall.recommendations.get(1)?.keys);
    let replayed = if args.logs.is_empty() { None } else { Some(replay(&args, recommended)?) };
    let (curve, hours, simulation) = match replayed {
        Some((curve, hours, simulation)) => (Some(curve), hours, Some(simulation)),
        None => (None, Vec::new(), None),
    };
    if let Some(file) = &args.html {
        let provenance = preheat::report::html::Provenance {
            profile: capacity
                .as_ref()
                .map(|(_, path, (start, end))| (path.display().to_string(), start.clone(), end.clone())),
            logs: args.logs.clone(),
            made_ms: super::now_ms(),
        };
        let report = capacity.as_ref().map(|(r, _, _)| r);
        let page =
            preheat::report::html::page(&provenance, report, curve.as_ref(), &hours, simulation.as_ref());
        std::fs::write(file, page)
            .with_context(|| format!("writing the HTML report to `{}`", file.display()))?;
        tracing::info!(file = %file.display(), "HTML report written");
    }
    if args.json {
        let mut v = serde_json::json!({});
        if let Some((report, path, _)) = &capacity {
            v = serde_json::to_value(report)?;
            v["profile"] = serde_json::json!(path);
        }
        if let Some(curve) = &curve {
            v["miss_ratio_curve"] = serde_json::to_value(curve)?;
            v["working_set_by_hour"] = serde_json::to_value(&hours)?;
            v["cold_vs_warm"] = serde_json::to_value(&simulation)?;
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Exit::Ok);
    }
    if let Some((report, path, _)) = &capacity {
        print!("{}", render(report, path));
    }
    if let Some(curve) = &curve {
        print!("{}", render_curve(curve, capacity.as_ref().map(|(r, _, _)| r)));
        print!("{}", render_hours(&hours));
    }
    if let Some(s) = &simulation {
        print!("{}", render_simulation(s));
    }
    Ok(Exit::Ok)
}

/// The LRU miss-ratio curve of the logs (exact, or sampled with SHARDS when they are long),
/// their working set hour by hour, and their second half through a cold and a warm cache.
fn replay(
    args: &ReportArgs,
    recommended: Option<u64>,
) -> anyhow::Result<(MissRatioCurve, Vec<Hour>, ColdVsWarm)> {
    let mut config = load_config(args.config.as_ref())?;
    if let Some(format) = args.format.parse()? {
        config.log.format = format;
    }
    let inputs = input::expand(&args.logs).context("reading the logs to replay")?;
    let trace = key_trace(&inputs, config.reading());
    for (name, error) in &trace.stats.failed_inputs {
        tracing::warn!(input = %name, error = %error, "input not read in full; the curve uses what was read");
    }
    if trace.keys.is_empty() {
        let lines = trace.stats.lines;
        return Err(RunError::new(
            format!(
                "no request in {lines} {} matched a rule ({} rejected)",
                if lines == 1 { "line" } else { "lines" },
                trace.stats.rejected
            ),
            "check the rules (--config) and the log format; `preheat analyze` on the same logs \
             counts rejected lines by reason and lists the paths no rule matched",
        )
        .into());
    }
    let curve = if trace.keys.len() <= EXACT_LIMIT {
        mrc::exact(&trace.keys)
    } else {
        mrc::sampled(&trace.keys, SAMPLED_REQUESTS / trace.keys.len() as f64)
    };
    let keys = args.cache_keys.or(recommended).unwrap_or((curve.distinct_keys / 10).max(1));
    let simulation = cold_vs_warm(&trace.keys, trace.keys.len() / 2, keys as usize, 10);
    Ok((curve, trace.hours, simulation))
}

fn render_simulation(s: &ColdVsWarm) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "\ncold against warm: the logs' second half ({} requests) through an LRU cache of {} keys,\n\
         empty, or pre-warmed with the first half's {} most requested keys",
        s.replayed_requests, s.capacity, s.warmed_keys
    );
    let saved = s.cold_misses.saturating_sub(s.warm_misses);
    let _ = writeln!(
        o,
        "misses    cold {}, warm {}: {} saved ({})",
        s.cold_misses,
        s.warm_misses,
        saved,
        pct(if s.cold_misses == 0 { 0.0 } else { saved as f64 / s.cold_misses as f64 })
    );
    let steady = |n: Option<u64>| n.map_or("never".to_string(), |n| format!("after {n} requests"));
    let _ = writeln!(
        o,
        "steady    cold {}, warm {} (95% of the last quarter's hit ratio)",
        steady(s.cold_requests_to_steady),
        steady(s.warm_requests_to_steady)
    );
    let _ = writeln!(o, "{:>10} {:>9} {:>9}", "requests", "cold", "warm");
    for st in &s.stretches {
        let _ = writeln!(o, "{:>10} {:>9} {:>9}", st.from_request + st.requests, pct(st.cold), pct(st.warm));
    }
    o
}

/// The working set per hour: the keys (and bytes) a cache must hold to serve that hour.
fn render_hours(hours: &[Hour]) -> String {
    let mut o = String::new();
    if hours.is_empty() {
        return o;
    }
    let _ = writeln!(
        o,
        "
working set by hour (distinct keys, estimated):"
    );
    let _ = writeln!(o, "{:<17} {:>9} {:>9} {:>12}", "hour (UTC)", "requests", "keys", "memory");
    for h in hours {
        let when = preheat::timestamp::format_rfc3339(h.start_ms);
        let _ = writeln!(
            o,
            "{:<17} {:>9} {:>9} {:>12}",
            when.get(..16).unwrap_or(&when).replace('T', " "),
            h.requests,
            h.distinct_keys,
            mib(h.est_bytes)
        );
    }
    o
}

fn render_curve(c: &MissRatioCurve, capacity: Option<&CapacityReport>) -> String {
    let mut o = String::new();
    let how = c.sampling_rate.map_or("exact".to_string(), |r| format!("sampled at {:.2}%", 100.0 * r));
    let _ = writeln!(
        o,
        "
LRU hit ratio by cache size ({} requests, {} keys, {how}):",
        c.requests, c.distinct_keys
    );
    let points: Vec<String> = c
        .points
        .iter()
        .filter(|p| is_power_of_ten(p.keys) || p.keys == c.distinct_keys)
        .map(|p| format!("{} {} {}", p.keys, if p.keys == 1 { "key" } else { "keys" }, pct(p.hit_ratio)))
        .collect();
    let _ = writeln!(o, "{}", points.join(" · "));
    if let Some(report) = capacity {
        let _ = writeln!(o, "at the recommended sizes, an LRU cache replaying these logs (from cold) hits:");
        for rec in &report.overall.recommendations {
            if let Some(keys) = rec.keys {
                let _ = writeln!(
                    o,
                    "  {keys} keys (for {} coverage): {}",
                    pct(rec.target),
                    pct(c.hit_ratio_at(keys))
                );
            }
        }
    }
    o
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn pct(share: f64) -> String {
    format!("{:.1}%", 100.0 * share)
}

/// One cell of the sizes table: keys and their memory, or why there is none.
fn size_cell(keys: Option<u64>, memory: Option<u64>) -> String {
    match (keys, memory) {
        (Some(k), Some(m)) => format!("{k} keys, {}", mib(m)),
        _ => "not reachable".to_string(),
    }
}

/// The capacity tables for a terminal.
pub fn render(r: &CapacityReport, profile: &Path) -> String {
    let mut o = String::new();
    let all = &r.overall;
    let reach = all.by_keys.last().map_or(0.0, |p| p.coverage);
    let _ = writeln!(o, "profile   {}", profile.display());
    let _ = writeln!(
        o,
        "profiled  {} requests matched rules; {} keys serve {} of them in ~{}",
        all.requests,
        all.keys,
        pct(reach),
        mib(all.memory_bytes)
    );
    let _ = writeln!(o, "memory    values + keys + {PER_KEY_OVERHEAD} B per key (Redis overhead)\n");
    let _ = writeln!(o, "{:<9} {:<28} least memory", "coverage", "fewest keys");
    for rec in &all.recommendations {
        let _ = writeln!(
            o,
            "{:<9} {:<28} {}",
            pct(rec.target),
            size_cell(rec.keys, rec.memory_for_keys),
            rec.least_memory.map_or("-".to_string(), mib)
        );
    }
    let _ = writeln!(o, "\ncoverage by the most requested keys (all rules):");
    let _ = writeln!(o, "{}", curve(all));

    let _ = writeln!(
        o,
        "\n{:<20} {:>10} {:>8} {:>12}   keys for 80% / 90% / 95% / 99%",
        "rule", "requests", "keys", "memory"
    );
    for s in &r.rules {
        let cells: Vec<String> =
            s.recommendations.iter().map(|rec| rec.keys.map_or("-".to_string(), |k| k.to_string())).collect();
        let _ = writeln!(
            o,
            "{:<20} {:>10} {:>8} {:>12}   {}",
            s.name,
            s.requests,
            s.keys,
            mib(s.memory_bytes),
            cells.join(" / ")
        );
    }
    o
}

/// `10 keys 12.3% · 100 keys 45.6% · ...` at each power of ten, and at every key.
fn curve(s: &Scope) -> String {
    s.by_keys
        .iter()
        .filter(|p| is_power_of_ten(p.keys) || p.keys == s.keys)
        .map(|p| format!("{} {} {}", p.keys, if p.keys == 1 { "key" } else { "keys" }, pct(p.coverage)))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn is_power_of_ten(mut n: u64) -> bool {
    while n >= 10 && n.is_multiple_of(10) {
        n /= 10;
    }
    n == 1
}
