//! `preheat plan`: what a warm would write, without writing anything.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use preheat::plan::{Plan, PlanLimit};
use preheat::printable::printable;
use preheat::profile::open_profile;

use super::{Exit, load_config};

/// Flags of `preheat plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// Config file [default: ./preheat.toml if present, else built-in rules].
    #[arg(long, short, env = "PREHEAT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    profile: super::ProfileChoice,
    #[command(flatten)]
    overrides: super::WarmOverrides,
    /// Planned keys to list [default: 10 in the table, every one with --json].
    #[arg(long)]
    top: Option<usize>,
    /// Print the plan as JSON on stdout (every planned key when `--top` is not given).
    #[arg(long)]
    json: bool,
}

pub fn run(args: PlanArgs) -> anyhow::Result<Exit> {
    let mut config = load_config(args.config.as_ref())?;
    config.apply(&args.overrides.to_overrides())?;
    let path = args.profile.resolve()?;
    let (meta, rows) = open_profile(&path)?;
    for why in meta.staleness(&config.fingerprint, config.warm.max_profile_age, super::now_ms()) {
        tracing::warn!(profile = %path.display(), "stale profile: {why}");
    }
    let plan = Plan::build(rows, &meta.summary, &config.plan_settings())?;
    tracing::info!(
        profile = %path.display(),
        keys = plan.keys.len(),
        est_bytes = plan.est_bytes,
        predicted_coverage = format!("{:.1}%", 100.0 * plan.predicted_coverage),
        "plan ready"
    );
    if let Some(why) = plan.why_empty() {
        tracing::warn!(profile = %path.display(), "nothing to warm: {why}");
    }
    if args.json {
        let mut v = serde_json::to_value(&plan)?;
        if let (Some(top), Some(keys)) = (args.top, v.get_mut("keys").and_then(|k| k.as_array_mut())) {
            keys.truncate(top);
        }
        v["profile"] = serde_json::json!(path);
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(Exit::Ok);
    }
    print!("{}", render(&plan, &path, args.top.unwrap_or(10), &config));
    Ok(Exit::Ok)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

fn render(plan: &Plan, path: &std::path::Path, top: usize, config: &preheat::config::Config) -> String {
    let mut o = String::new();
    let b = &plan.budgets;
    let _ = writeln!(o, "profile   {}", path.display());
    let _ = writeln!(
        o,
        "budgets   max {} keys, {}",
        b.max_keys,
        b.max_bytes.map_or("no byte limit".to_string(), |m| format!("max {}", mib(m)))
    );
    let limit = match plan.limit {
        PlanLimit::ProfileExhausted => "every profiled key fits",
        PlanLimit::MaxKeys => "stopped at warm.max_keys",
        PlanLimit::MaxBytes => "stopped at warm.max_bytes",
        PlanLimit::Quotas => "every rule reached its quota",
    };
    let _ = writeln!(o, "plan      {} keys, ~{} ({limit})", plan.keys.len(), mib(plan.est_bytes));
    let _ = writeln!(
        o,
        "coverage  {:.1}% of profiled requests ({} of {})",
        100.0 * plan.predicted_coverage,
        plan.requests_covered,
        plan.requests_profiled
    );
    if plan.rows_of_unknown_rules > 0 {
        let _ = writeln!(
            o,
            "          {} profile rows belong to rules not in this config",
            plan.rows_of_unknown_rules
        );
    }
    let _ =
        writeln!(o, "\n{:<20} {:>10} {:>8} {:>12} {:>10}", "rule", "keys", "quota", "est. size", "coverage");
    for r in &plan.rules {
        let coverage = if r.requests_profiled == 0 {
            "-".to_string()
        } else {
            format!("{:.1}%", 100.0 * r.requests_covered as f64 / r.requests_profiled as f64)
        };
        let quota = r.quota.map_or("-".to_string(), |q| q.to_string());
        let _ = writeln!(
            o,
            "{:<20} {:>10} {:>8} {:>12} {:>10}",
            r.name,
            r.keys,
            quota,
            mib(r.est_bytes),
            coverage
        );
    }
    if top > 0 && !plan.keys.is_empty() {
        let _ = writeln!(o, "\n{:>5}  {:<14} {:>10} {:>10}  key", "rank", "rule", "requests", "est. B");
        for (i, k) in plan.keys.iter().take(top).enumerate() {
            let rule = &config.rules.rules()[k.rule].name;
            let _ = writeln!(
                o,
                "{:>5}  {:<14} {:>10} {:>10}  {}",
                i + 1,
                rule,
                k.requests,
                k.est_bytes,
                printable(&k.key)
            );
        }
    }
    o
}
