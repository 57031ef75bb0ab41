//! `preheat verify`: the traffic after a deploy against the warm's plan and the hit ratio
//! before it.

use std::cell::Cell;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use preheat::analyze::input;
use preheat::plan::Plan;
use preheat::profile::{Store, open_profile};
use preheat::verify::{Hits, Verification, verify};

use super::{Exit, load_config};

/// Flags of `preheat verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Access logs of the traffic after the deploy (files, globs, directories, `-`), with a
    /// cache-status field (`$upstream_cache_status`, or a JSON cache field).
    #[arg(value_name = "LOG", required = true)]
    logs: Vec<String>,
    /// Config file: the rules and budgets the warm used [default: ./preheat.toml if present,
    /// else built-in rules].
    #[arg(long, short, env = "PREHEAT_CONFIG")]
    config: Option<PathBuf>,
    /// The profile the warm used: `latest`, or a profile file.
    #[arg(long, default_value = "latest")]
    profile: String,
    /// Profile store directory (for `latest`).
    #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
    profiles: PathBuf,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write the result's Prometheus metrics to this file (for node_exporter's textfile
    /// collector), replacing it atomically.
    #[arg(long)]
    metrics_file: Option<PathBuf>,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<Exit> {
    let config = load_config(args.config.as_ref())?;
    let path = Store::new(&args.profiles).resolve(&args.profile)?;
    let (meta, rows) = open_profile(&path)?;
    // The profile's own cache statuses give the hit ratio before the deploy.
    let before = Cell::new(Hits::default());
    let rows = rows.inspect(|r| {
        if let Ok(r) = r {
            let b = before.get();
            before.set(Hits { hits: b.hits + r.cache_hits, misses: b.misses + r.cache_misses });
        }
    });
    let plan = Plan::build(rows, &meta.summary, &config)?;
    let inputs = input::expand(&args.logs).context("reading the logs to verify against")?;
    let (v, stats) = verify(&plan, before.get().ratio(), &inputs, &config);
    for (name, error) in &stats.failed_inputs {
        tracing::warn!(input = %name, error = %error, "input not read in full; the check uses what was read");
    }
    tracing::info!(
        lines = stats.lines,
        rejected = stats.rejected,
        not_cached = stats.not_cached,
        "logs read"
    );
    if let Some(file) = &args.metrics_file {
        preheat::metrics::write_verification_textfile(&v, file)
            .with_context(|| format!("writing the metrics to `{}`", file.display()))?;
    }
    if args.json {
        let mut value = serde_json::to_value(&v)?;
        value["profile"] = serde_json::json!(path);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&v));
    }
    Ok(Exit::Ok)
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x))
}

fn render(v: &Verification) -> String {
    let mut o = String::new();
    for line in &v.verdict {
        let _ = writeln!(o, "* {line}");
    }
    let _ = writeln!(
        o,
        "\nrequests  {} matched rules, {} for warmed keys; {} of {} warmed keys were read",
        v.requests, v.requests_to_warmed, v.warmed_keys_read, v.warmed_keys
    );
    if !v.minutes.is_empty() {
        let _ = writeln!(
            o,
            "\n{:>6} {:>9} {:>10} {:>10} {:>10}",
            "minute", "requests", "warmed", "others", "all"
        );
        for m in v.minutes.iter().take(30) {
            let all = Hits { hits: m.warmed.hits + m.other.hits, misses: m.warmed.misses + m.other.misses };
            let _ = writeln!(
                o,
                "{:>6} {:>9} {:>10} {:>10} {:>10}",
                m.minute + 1,
                m.requests,
                pct(m.warmed.ratio()),
                pct(m.other.ratio()),
                pct(all.ratio())
            );
        }
        if v.minutes.len() > 30 {
            let _ = writeln!(o, "   ... {} more minutes (--json has them all)", v.minutes.len() - 30);
        }
    }
    let _ = writeln!(
        o,
        "\n{:<20} {:>9} {:>10} {:>10} {:>8} {:>8}",
        "rule", "requests", "coverage", "predicted", "warmed", "read"
    );
    for r in &v.rules {
        let coverage = (r.requests > 0).then(|| r.requests_to_warmed as f64 / r.requests as f64);
        let _ = writeln!(
            o,
            "{:<20} {:>9} {:>10} {:>10} {:>8} {:>8}",
            r.name,
            r.requests,
            pct(coverage),
            pct(Some(r.predicted_coverage)),
            r.warmed_keys,
            r.warmed_keys_read
        );
    }
    o
}
