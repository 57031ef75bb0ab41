//! `preheat report`: how many keys and how much memory buy which share of requests.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;
use preheat::capacity::{CapacityReport, PER_KEY_OVERHEAD, Scope};
use preheat::profile::{Store, open_profile};

use super::Exit;

/// Flags of `preheat report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// `latest`, or a profile file.
    #[arg(long, default_value = "latest")]
    profile: String,
    /// Profile store directory (for `latest`).
    #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
    profiles: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ReportArgs) -> anyhow::Result<Exit> {
    let path = Store::new(&args.profiles).resolve(&args.profile)?;
    let (meta, rows) = open_profile(&path)?;
    let report = CapacityReport::build(rows, &meta.summary)?;
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["profile"] = serde_json::json!(path);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&report, &path));
    }
    Ok(Exit::Ok)
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

fn render(r: &CapacityReport, profile: &Path) -> String {
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
