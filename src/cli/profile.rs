//! `preheat profile ...`: look inside profiles.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use preheat::profile::{Store, read_profile, store};
use preheat::timestamp::format_rfc3339;

use super::Exit;
use super::analyze::render_rows;

/// `preheat profile list`.
fn list(store: &Store, json: bool) -> anyhow::Result<Exit> {
    let latest = store.pointed();
    let mut rows = Vec::new();
    for path in store.list()? {
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        let entry = match preheat::profile::read_summary(&path) {
            Ok(meta) => serde_json::json!({
                "path": path,
                "latest": Some(&path) == latest.as_ref(),
                "created": meta.created,
                "window_start": meta.summary.window.start,
                "window_end": meta.summary.window.end,
                "lines": meta.summary.lines.read,
                "keys": meta.summary.rules.iter().map(|r| r.distinct_keys).sum::<u64>(),
                "bytes": size,
                "config_fingerprint": meta.summary.config_fingerprint,
            }),
            Err(e) => {
                serde_json::json!({"path": path, "latest": Some(&path) == latest.as_ref(), "bytes": size, "error": e.to_string()})
            }
        };
        rows.push(entry);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(Exit::Ok);
    }
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:<2} {:<32} {:<21} {:<21} {:>10} {:>9} {:>9}",
        "", "profile", "written", "logs end", "lines", "keys", "KiB"
    );
    for r in &rows {
        let name = r["path"].as_str().and_then(|p| p.rsplit('/').next()).unwrap_or("?");
        let field = |k: &str| r[k].as_str().map_or("-".to_string(), to_the_second);
        let _ = writeln!(
            o,
            "{:<2} {:<32} {:<21} {:<21} {:>10} {:>9} {:>9}{}",
            if r["latest"] == true { "*" } else { "" },
            name,
            field("created"),
            field("window_end"),
            r["lines"].as_u64().map_or("-".into(), |n| n.to_string()),
            r["keys"].as_u64().map_or("-".into(), |n| n.to_string()),
            r["bytes"].as_u64().unwrap_or(0) / 1024,
            r["error"].as_str().map_or(String::new(), |e| format!("  unreadable: {e}"))
        );
    }
    let _ = writeln!(
        o,
        "{} profile{} in {}; * = latest",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" },
        store.dir().display()
    );
    print!("{o}");
    Ok(Exit::Ok)
}

/// An RFC 3339 time to the second (`2026-12-07T16:38:04Z`), whole: the table has room for
/// that, and cutting the milliseconds off by width left `16:38:04.` without its zone.
fn to_the_second(time: &str) -> String {
    match (time.find('.'), time.find(['Z', '+'])) {
        (Some(dot), Some(zone)) if dot < zone => format!("{}{}", &time[..dot], &time[zone..]),
        _ => time.to_string(),
    }
}

/// Profile subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// List the store's profiles, oldest first, and which one `latest` names.
    List {
        /// Profile store directory.
        #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
        profiles: PathBuf,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Delete old profiles: keep the newest N and/or those younger than an age (with both, a
    /// profile goes only when both say so); the one `latest` names always stays.
    Prune {
        /// Profile store directory.
        #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
        profiles: PathBuf,
        /// Keep the newest N.
        #[arg(long)]
        keep: Option<usize>,
        /// Delete those written longer ago than this (`14d`).
        #[arg(long)]
        older_than: Option<String>,
        /// Only say what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Merge profiles of several hosts or days into one, as if one analysis had read all
    /// their logs: counts add, windows widen, distinct counts merge. Written to `-o FILE`, or
    /// into the store as its new latest profile.
    Merge {
        /// The profiles (files, or `latest`).
        #[arg(required = true, num_args = 2..)]
        inputs: Vec<String>,
        /// Write the merged profile to this file instead of the store.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Profile store directory (for `latest`, and where the merge goes without `-o`).
        #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
        profiles: PathBuf,
    },
    /// Print a profile's metadata and hottest keys.
    Show {
        /// `latest`, or a profile file.
        #[arg(default_value = "latest")]
        profile: String,
        /// Profile store directory (for `latest`).
        #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
        profiles: PathBuf,
        /// Keys to show.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Print JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ProfileCommand) -> anyhow::Result<Exit> {
    match cmd {
        ProfileCommand::List { profiles, json } => list(&Store::new(&profiles), json),
        ProfileCommand::Merge { inputs, output, profiles } => {
            let store = Store::new(&profiles);
            let mut parts = Vec::new();
            for spec in &inputs {
                let path = store.resolve(spec)?;
                let (meta, rows) = read_profile(&path, None)?;
                if meta.sketches.is_none() {
                    tracing::warn!(profile = %path.display(), "no sketches in this profile (an older one): distinct clients of the merge are a lower bound");
                }
                parts.push(preheat::profile::merge::Part { path, meta, rows });
            }
            let (meta, rows) = preheat::profile::merge::merge(parts, super::now_ms())?;
            let rows = preheat::profile::ProfileColumns::from_rows(&rows);
            let written = match output {
                Some(path) => {
                    store::write_file(&path, &rows, &meta)?;
                    path
                }
                None => store.write(&rows, &meta, super::now_ms())?,
            };
            println!(
                "merged {} profiles into {}: {} keys, {} lines, logs {} .. {}",
                inputs.len(),
                written.display(),
                rows.len(),
                meta.summary.lines.read,
                meta.summary.window.start.as_deref().unwrap_or("-"),
                meta.summary.window.end.as_deref().unwrap_or("-")
            );
            Ok(Exit::Ok)
        }
        ProfileCommand::Prune { profiles, keep, older_than, dry_run } => {
            let older_than = older_than
                .map(|t| {
                    humantime::parse_duration(&t).map_err(|_| {
                        super::UsageError::new(
                            format!("--older-than: `{t}` is not a duration"),
                            Some("write an age such as `14d` or `36h`"),
                        )
                    })
                })
                .transpose()?;
            if keep.is_none() && older_than.is_none() {
                return Err(
                    super::UsageError::new("prune needs --keep N, --older-than AGE, or both", None).into()
                );
            }
            let store = Store::new(&profiles);
            let doomed = store.prune(keep, older_than, super::now_ms(), !dry_run)?;
            for path in &doomed {
                println!("{} {}", if dry_run { "would delete" } else { "deleted" }, path.display());
            }
            if dry_run {
                tracing::info!(count = doomed.len(), "dry run: profiles that would be deleted");
            } else {
                tracing::info!(count = doomed.len(), "profiles pruned");
            }
            Ok(Exit::Ok)
        }
        ProfileCommand::Show { profile, profiles, top, json } => {
            let path = Store::new(&profiles).resolve(&profile)?;
            let (meta, rows) = read_profile(&path, Some(top))?;
            if json {
                let out = serde_json::json!({
                    "path": path,
                    "schema_version": meta.schema_version,
                    "generator": meta.generator,
                    "created": meta.created,
                    "summary": meta.summary,
                    "top": rows.iter().map(|r| serde_json::json!({
                        "rule": r.rule,
                        "key": r.key,
                        "count": r.count,
                        "score": r.score,
                        "first_seen": r.first_seen_ms.map(format_rfc3339),
                        "last_seen": r.last_seen_ms.map(format_rfc3339),
                        "mean_bytes": r.mean_bytes,
                        "mean_latency_ms": r.mean_latency_ms,
                        "max_latency_ms": r.max_latency_ms,
                        "cache_hits": r.cache_hits,
                        "cache_misses": r.cache_misses,
                        "params": serde_json::from_str::<serde_json::Value>(&r.params).unwrap_or(serde_json::Value::Null),
                    })).collect::<Vec<_>>(),
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(Exit::Ok);
            }
            let s = &meta.summary;
            let mut o = String::new();
            let _ = writeln!(o, "profile   {}", path.display());
            let _ = writeln!(
                o,
                "written   {} by {} (schema {})",
                meta.created, meta.generator, meta.schema_version
            );
            let _ = writeln!(
                o,
                "window    {} .. {}",
                s.window.start.as_deref().unwrap_or("-"),
                s.window.end.as_deref().unwrap_or("-")
            );
            let _ = writeln!(
                o,
                "lines     {} read, {} rejected, {} matched",
                s.lines.read, s.lines.rejected, s.lines.matched
            );
            let _ = writeln!(o, "config    fingerprint {}", s.config_fingerprint);
            let _ = writeln!(
                o,
                "score     weight {}, half-life {}",
                s.score_weight,
                s.score_half_life.as_deref().unwrap_or("none")
            );
            for r in &s.rules {
                let _ = writeln!(
                    o,
                    "rule      {:<16} {:>10} requests {:>10} keys",
                    r.name, r.requests, r.distinct_keys
                );
            }
            o.push('\n');
            o.push_str(&render_rows(&rows, top));
            print!("{o}");
            Ok(Exit::Ok)
        }
    }
}
