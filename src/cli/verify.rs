//! `preheat verify`: the traffic after a deploy against the warm's plan and the hit ratio
//! before it.

use std::cell::Cell;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use preheat::analyze::input;
use preheat::config::Config;
use preheat::plan::Plan;
use preheat::profile::open_profile;
use preheat::report::verify::{
    Baseline, Hits, ReadSignal, RedisObservation, Verification, keep_landed, observe, verify, verify_app_log,
};
use preheat::secret::resolve_secret;
use preheat::warm::RunReport;

use super::{Exit, UsageError, load_config};

/// Flags of `preheat verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Access logs of the traffic after the deploy (files, globs, directories, `-`), with a
    /// cache-status field (`$upstream_cache_status`, or a JSON cache field).
    #[arg(value_name = "LOG", required_unless_present = "redis")]
    logs: Vec<String>,
    /// The logs are the application's own cache log, not access logs: JSON lines with `key`,
    /// `cache` (`HIT`/`MISS`, or `hit`: true/false) and optionally `time`.
    #[arg(long)]
    app_log: bool,
    /// Also ask Redis (`redis://...`, `rediss://...`, `env:NAME`): its keyspace hit ratio over
    /// `--window`, and whether a sample of warmed keys was read since the warm.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// How long to watch Redis's hit and miss counters.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    window: std::time::Duration,
    /// Warmed keys to sample in Redis.
    #[arg(long, default_value_t = 1000)]
    sample: usize,
    /// The warm's JSON report (`preheat warm --report`): when it ran, to tell warmed keys read
    /// since from unread ones [default: estimated from the sample].
    #[arg(long, value_name = "FILE")]
    warm_report: Option<PathBuf>,
    /// Config file: the rules and budgets the warm used [default: ./preheat.toml if present,
    /// else built-in rules].
    #[arg(long, short, env = "PREHEAT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    format: super::AccessLogFormat,
    #[command(flatten)]
    profile: super::ProfileChoice,
    /// The budgets the warm used, when flags or variables overrode the config's.
    #[command(flatten)]
    overrides: super::WarmOverrides,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write the result's Prometheus metrics to this file (for node_exporter's textfile
    /// collector), replacing it atomically.
    #[arg(long)]
    metrics_file: Option<PathBuf>,
}

pub fn run(args: VerifyArgs) -> anyhow::Result<Exit> {
    let mut config = load_config(args.config.as_ref())?;
    config.apply(&args.overrides.to_overrides())?;
    if let Some(format) = args.format.parse()? {
        config.log.format = format;
    }
    let path = args.profile.resolve()?;
    let (meta, rows) = open_profile(&path)?;
    // The profile's own cache statuses give the hit ratio before the deploy: of all its rows,
    // not only of the prefix the plan reads.
    let before = Cell::new(Hits::default());
    let mut rows = rows.inspect(|r| {
        if let Ok(r) = r {
            let b = before.get();
            before.set(Hits { hits: b.hits + r.cache_hits, misses: b.misses + r.cache_misses });
        }
    });
    let mut plan = Plan::build(rows.by_ref(), &meta.summary, &config.plan_settings())?;
    for row in rows {
        row?;
    }
    let warm_report = args.warm_report.as_deref().map(read_warm_report).transpose()?;
    if let Some(report) = &warm_report {
        keep_landed(&mut plan, report)
            .map_err(|why| UsageError::new(why, Some("pass the same --profile and --config as the warm")))?;
    }
    let baseline =
        Baseline { hit_ratio_before: before.get().ratio(), warmed_from_report: warm_report.is_some() };
    let inputs = if args.logs.is_empty() {
        Vec::new()
    } else {
        input::expand(&args.logs).context("reading the logs to verify against")?
    };
    let (mut v, stats) = if args.app_log {
        verify_app_log(&plan, baseline, &inputs, &config.rules)
    } else {
        verify(&plan, baseline, &inputs, config.reading())
    };
    for (name, error) in &stats.failed_inputs {
        tracing::warn!(input = %name, error = %error, "input not read in full; the check uses what was read");
    }
    if args.logs.is_empty() {
        v.verdict.clear();
    }
    if let Some(url) = &args.redis {
        let observation = ask_redis(url, &config, &plan, warm_report.as_ref(), &args)?;
        v.verdict.extend(redis_verdict(&observation));
        v.redis = Some(observation);
    }
    tracing::info!(
        lines = stats.lines,
        rejected = stats.rejected,
        not_cached = stats.not_cached,
        "logs read"
    );
    if let Some(file) = &args.metrics_file {
        preheat::report::metrics::write_verification_textfile(&v, file)
            .with_context(|| format!("writing the metrics to `{}`", file.display()))?;
    }
    if args.json {
        let mut value = serde_json::to_value(&v)?;
        value["profile"] = serde_json::json!(path);
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", render(&v, !args.logs.is_empty()));
    }
    Ok(Exit::Ok)
}

/// Redis's own view: its hit counters over the window and a sample of warmed keys.
fn ask_redis(
    url: &str,
    config: &Config,
    plan: &Plan,
    warm_report: Option<&RunReport>,
    args: &VerifyArgs,
) -> anyhow::Result<RedisObservation> {
    let url = resolve_secret(url).map_err(|e| anyhow::anyhow!("--redis: {e}"))?;
    let backend = preheat::backend::open_redis(&url, config.backend.ca_file.as_ref())?;
    let warm_ended_ms = warm_report.map(|r| r.started_at_ms + r.duration_ms as i64);
    tracing::info!(window = %humantime::format_duration(args.window), "watching Redis's hit and miss counters");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    Ok(runtime.block_on(observe(&backend, plan, warm_ended_ms, args.window, args.sample))?)
}

/// The run report `preheat warm --report` wrote.
fn read_warm_report(path: &std::path::Path) -> anyhow::Result<RunReport> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the warm report `{}`", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        UsageError::new(
            format!("`{}` is not a warm report: {e}", path.display()),
            Some("pass the file `preheat warm --report FILE` wrote"),
        )
        .into()
    })
}

fn redis_verdict(o: &RedisObservation) -> Vec<String> {
    let mut out = Vec::new();
    match o.keyspace.ratio() {
        Some(r) => out.push(format!(
            "Redis: keyspace hit ratio {:.0}% over {} s ({} hits, {} misses)",
            100.0 * r,
            o.window_ms / 1000,
            o.keyspace.hits,
            o.keyspace.misses
        )),
        None => out.push(format!("Redis: no reads during the {} s window", o.window_ms / 1000)),
    }
    if o.sampled > 0 {
        let how = match o.signal {
            ReadSignal::IdleTime => "idle times",
            ReadSignal::LfuFrequency => "LFU counters",
        };
        out.push(format!(
            "Redis: of {} sampled warmed keys, {} are still cached and {} were read since the warm (by {how})",
            o.sampled, o.present, o.read_since_warm
        ));
    }
    out
}

fn pct(x: Option<f64>) -> String {
    x.map_or("-".to_string(), |x| format!("{:.1}%", 100.0 * x))
}

fn render(v: &Verification, from_logs: bool) -> String {
    let mut o = String::new();
    for line in &v.verdict {
        let _ = writeln!(o, "* {line}");
    }
    if !from_logs {
        return o;
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
