//! `preheat profile ...`: look inside profiles.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Subcommand;
use preheat::logformat::time::format_rfc3339;
use preheat::profile::{Store, read_profile};

use super::Exit;
use super::analyze::render_rows;

/// Profile subcommands.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
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
