//! `preheat warm`: plan, load, write, report. Never fails a deploy unless `--strict`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use preheat::backend::{self, AnyBackend, OpenError};
use preheat::config::Config;
use preheat::plan::Plan;
use preheat::profile::open_profile;
use preheat::secret::redact_url;
use preheat::warm::StalePolicy;
use preheat::warm::{self, Progress, RunReport, RunStatus, WarmOutcome};

use super::{Exit, GlobalArgs, RunError, load_config, show_bar};

/// Flags of `preheat warm`.
#[derive(Debug, Args)]
pub struct WarmArgs {
    /// Config file [default: ./preheat.toml if present, else built-in rules].
    #[arg(long, short, env = "PREHEAT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub profile: super::ProfileChoice,
    #[command(flatten)]
    pub overrides: super::WarmOverrides,
    /// Write the run report as JSON to this file.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Print the run report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write the run's Prometheus metrics to this file (for node_exporter's textfile
    /// collector), replacing it atomically.
    #[arg(long, env = "PREHEAT_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Write this file the moment the warm set is good enough for traffic (`warm.ready_at`,
    /// else when the warm ends), for a readiness probe; an old one is removed at the start.
    #[arg(long, env = "PREHEAT_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Exit non-zero (4) when any key failed, was invalid or was not started, or the profile
    /// is missing or stale; without it a degraded warm still exits 0.
    #[arg(
        long,
        env = "PREHEAT_STRICT",
        num_args = 0..=1,
        default_missing_value = "true",
        default_value = "false",
        value_parser = super::parse_bool,
        hide_possible_values = true
    )]
    pub strict: bool,
}

/// Whether `PREHEAT_SKIP` asks to skip (`1`, `true` or `yes`); any other value than those and
/// `0`, `false`, `no` or empty is a usage error.
pub fn skip_requested() -> Result<bool, super::UsageError> {
    super::env_bool("PREHEAT_SKIP")
}

pub fn run(args: WarmArgs, global: &GlobalArgs) -> anyhow::Result<Exit> {
    let mut config = load_config(args.config.as_ref())?;
    config.apply(&args.overrides.to_overrides())?;
    let ready = ReadyFile::new(args.ready_file.clone(), &config)?;
    let run = Run { args, ready };
    let args = &run.args;
    if skip_requested()? || !config.warm.enabled {
        let why = if config.warm.enabled { "PREHEAT_SKIP is set" } else { "warm.enabled = false" };
        tracing::info!(reason = why, "warm skipped");
        let report = RunReport::skipped(config.backend.url.clone());
        emit(&report, &run)?;
        return Ok(Exit::Ok);
    }
    let path = match args.profile.resolve() {
        Ok(p) => p,
        Err(e) => return degraded(e.into(), &config, &run),
    };
    let (meta, rows) = match open_profile(&path) {
        Ok(x) => x,
        Err(e) => return degraded(e.into(), &config, &run),
    };
    let stale = meta.staleness(&config.fingerprint, config.warm.max_profile_age, super::now_ms());
    for why in &stale {
        tracing::warn!(profile = %path.display(), "stale profile: {why}");
    }
    if !stale.is_empty() && config.warm.stale_profile == StalePolicy::Skip {
        tracing::warn!(
            "warm not run: warm.stale_profile = \"skip\"; the deploy goes on (use --strict to fail it)"
        );
        let report = RunReport::stale(redact_url(&config.backend.url), stale);
        emit(&report, &run)?;
        return Ok(if args.strict { Exit::Strict } else { Exit::Ok });
    }
    let plan = match Plan::build(rows, &meta.summary, &config.plan_settings()) {
        Ok(p) => p,
        Err(e) => return degraded(e.into(), &config, &run),
    };
    tracing::info!(
        profile = %path.display(),
        keys = plan.keys.len(),
        est_mib = plan.est_bytes >> 20,
        predicted_coverage = format!("{:.1}%", 100.0 * plan.predicted_coverage),
        max_keys = config.warm.budgets.max_keys,
        max_bytes = config.warm.budgets.max_bytes,
        "plan ready"
    );
    if let Some(why) = plan.why_empty() {
        tracing::warn!(profile = %path.display(), "nothing to warm: {why}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match runtime.block_on(warm_into(&plan, &config, show_bar(global), &run.ready)) {
        Ok(report) => finish(report, &run),
        Err(e) => degraded(e, &config, &run),
    }
}

/// Warms the configured backend and reports it, with a progress bar when `bar`, else a log
/// line every few seconds; `Err` only when the backend URL itself is unusable (nothing was
/// attempted).
pub async fn warm_into(
    plan: &Plan,
    config: &Config,
    bar: bool,
    ready: &ReadyFile,
) -> anyhow::Result<RunReport> {
    let backend = open_backend(config)?;
    let sources = warm::open_sources(&config.sources, &config.warm);
    for s in sources.iter().filter_map(|s| s.as_ref().err()) {
        tracing::error!(error = %s, "source unavailable; its rules will not be warmed");
    }
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let progress = WarmProgress::new(bar, plan.keys.len() as u64);
    let on_progress = |p: &Progress| {
        progress.update(p);
        if p.ready {
            ready.declare("the warmed keys reached warm.ready_at", p.warmed_coverage);
        }
    };
    let backend = Arc::new(backend);
    let report = warm::run(plan, &config.warm_job(), &sources, backend.clone(), stop, &on_progress).await;
    if let AnyBackend::Memory(cache) = &*backend {
        let (entries, bytes) = cache.stats().await;
        tracing::debug!(entries, bytes, "in-memory cache after the warm");
    }
    progress.finish();
    Ok(report)
}

/// Sets up the configured backend (nothing connects yet); `Err` when its URL is unusable.
pub fn open_backend(config: &Config) -> anyhow::Result<AnyBackend> {
    match backend::open(&config.backend, config.warm.max_memory) {
        Ok(backend) => Ok(backend),
        Err(e @ OpenError::UnknownScheme(_)) => Err(RunError::new(
            e.to_string(),
            "set --backend / PREHEAT_BACKEND, or backend.url (or the variable or file it names), to such a URL",
        )
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// The flags and the ready file of one run.
struct Run {
    args: WarmArgs,
    ready: ReadyFile,
}

/// The `--ready-file`: written once, atomically, the moment the warm set is good enough for
/// traffic, so a readiness probe (`test -f`) passes before the warm has ended.
pub struct ReadyFile {
    path: Option<PathBuf>,
    written: std::sync::atomic::AtomicBool,
    /// Whether `warm.ready_at` sets a threshold (else: ready when the warm ends).
    threshold: bool,
    /// `warm.ready_anyway`.
    anyway: bool,
}

impl ReadyFile {
    /// Removes what an earlier run left at `path`, so that a probe never passes on it.
    pub fn new(path: Option<PathBuf>, config: &Config) -> anyhow::Result<ReadyFile> {
        if let Some(path) = &path {
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("removing the old ready file `{}`", path.display())));
                }
                _ => {}
            }
        }
        Ok(ReadyFile {
            path,
            written: std::sync::atomic::AtomicBool::new(false),
            threshold: config.warm.ready_at.is_some(),
            anyway: config.warm.ready_anyway,
        })
    }

    /// No file: for the demo.
    pub fn none() -> ReadyFile {
        ReadyFile { path: None, written: false.into(), threshold: false, anyway: true }
    }

    /// Writes the file (once), saying why and how much of the traffic the warm set covers.
    fn declare(&self, why: &str, warmed_coverage: f64) {
        let Some(path) = &self.path else { return };
        if self.written.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let text =
            serde_json::json!({"ready": true, "reason": why, "warmed_coverage": warmed_coverage}).to_string();
        let tmp = path.with_extension("tmp");
        match std::fs::write(&tmp, text + "\n").and_then(|()| std::fs::rename(&tmp, path)) {
            Ok(()) => tracing::info!(file = %path.display(), reason = why, "ready file written"),
            Err(e) => tracing::error!(file = %path.display(), error = %e, "cannot write the ready file"),
        }
    }

    /// At the end of a run: ready if the threshold was reached, or the warm ended and either
    /// no threshold was set or `warm.ready_anyway` says deploys must not wait on it.
    fn settle(&self, report: &RunReport) {
        if self.written.load(std::sync::atomic::Ordering::Acquire) || self.path.is_none() {
            return;
        }
        if report.ready_after_ms.is_some() {
            self.declare("the warmed keys reached warm.ready_at", report.warmed_coverage);
        } else if !self.threshold && (self.anyway || report.outcome == WarmOutcome::Completed) {
            self.declare("the warm ended", report.warmed_coverage);
        } else if self.anyway {
            tracing::warn!("the warm ended before warm.ready_at; ready anyway (warm.ready_anyway = true)");
            self.declare("the warm ended before warm.ready_at (warm.ready_anyway)", report.warmed_coverage);
        } else {
            tracing::warn!("the warm ended before warm.ready_at and warm.ready_anyway = false: not ready");
        }
    }
}

/// A rate as people read it: `2 keys/s`, never `2.2183/s`.
fn rate_text(per_sec: f64) -> String {
    format!("{per_sec:.0} keys/s")
}

/// The time left at the current rate; none before the first keys are done, when nothing may
/// have connected yet and any estimate would be thousands of seconds of noise.
fn eta_text(done: u64, planned: u64, per_sec: f64) -> String {
    if done == 0 || per_sec <= 0.0 {
        return "no estimate yet".to_string();
    }
    format!("{:.0} s left", planned.saturating_sub(done) as f64 / per_sec)
}

/// Warm progress as a bar on a terminal, else a log line every few seconds.
struct WarmProgress {
    bar: Option<indicatif::ProgressBar>,
    last_log: Mutex<Duration>,
}

impl WarmProgress {
    fn new(bar: bool, planned: u64) -> Self {
        let bar = bar.then(|| {
            let b = indicatif::ProgressBar::new(planned);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {pos}/{len} keys {rate} {wide_bar} {left} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .with_key("rate", |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(&rate_text(s.per_sec()));
                })
                .with_key(
                    "left",
                    |s: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = w.write_str(&eta_text(s.pos(), s.len().unwrap_or(0), s.per_sec()));
                    },
                ),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            b
        });
        WarmProgress { bar, last_log: Mutex::new(Duration::ZERO) }
    }

    fn update(&self, p: &Progress) {
        if let Some(bar) = &self.bar {
            bar.set_position(p.done);
            bar.set_message(format!("{} written, {} failed", p.written, p.failed));
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        if p.elapsed >= *last + Duration::from_secs(5) {
            *last = p.elapsed;
            let rate = p.done as f64 / p.elapsed.as_secs_f64().max(1e-3);
            tracing::info!(
                done = p.done,
                planned = p.planned,
                written = p.written,
                failed = p.failed,
                "warm progress: {}/{} keys, {}, {}, {} failed",
                p.done,
                p.planned,
                rate_text(rate),
                eta_text(p.done, p.planned, rate),
                p.failed
            );
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// A warm that could not start (no profile, unreadable profile, unusable backend URL):
/// logged, reported (status `failed`), and only fatal with `--strict`.
fn degraded(err: anyhow::Error, config: &Config, run: &Run) -> anyhow::Result<Exit> {
    let why = format!("{err:#}");
    let report = RunReport::failed_to_start(redact_url(&config.backend.url), why.clone());
    if run.args.strict {
        emit(&report, run)?;
        return Err(err);
    }
    tracing::error!(error = %why, "warm not run; the deploy goes on (use --strict to fail it)");
    emit(&report, run)?;
    Ok(Exit::Ok)
}

fn finish(report: RunReport, run: &Run) -> anyhow::Result<Exit> {
    let ok = matches!(report.outcome, WarmOutcome::Completed | WarmOutcome::Skipped);
    let outcome = report.outcome.as_str();
    let status = format!("{:?}", report.status).to_lowercase();
    if ok {
        tracing::info!(
            outcome,
            status,
            written = report.written,
            skipped_existing = report.skipped_existing,
            duration_ms = report.duration_ms,
            "warm finished"
        );
    } else {
        tracing::warn!(
            outcome,
            status,
            written = report.written,
            failed = report.failures(),
            not_started = report.not_started,
            duration_ms = report.duration_ms,
            cause = report.cause.as_deref().unwrap_or("-"),
            "warm finished"
        );
    }
    emit(&report, run)?;
    Ok(if run.args.strict && !ok { Exit::Strict } else { Exit::Ok })
}

fn emit(report: &RunReport, run: &Run) -> anyhow::Result<()> {
    run.ready.settle(report);
    let args = &run.args;
    if let Some(path) = &args.report {
        write_report(report, path)?;
    }
    if let Some(path) = &args.metrics_file
        && let Err(e) = preheat::report::metrics::write_textfile(report, path)
    {
        let e = anyhow::Error::new(e).context(format!("writing the metrics to `{}`", path.display()));
        if args.strict {
            return Err(e);
        }
        tracing::error!(error = %format!("{e:#}"), "metrics not written");
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", render(report));
    }
    Ok(())
}

fn write_report(report: &RunReport, path: &Path) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n")
        .with_context(|| format!("writing the run report to `{}`", path.display()))
}

/// The terminal table.
pub fn render(r: &RunReport) -> String {
    let mut o = String::new();
    let cause = r.cause.as_deref().unwrap_or("-");
    match (r.outcome, r.status) {
        (WarmOutcome::Skipped, RunStatus::Skipped) => {
            let _ = writeln!(o, "warm      skipped");
            return o;
        }
        (WarmOutcome::Skipped, RunStatus::Stale) => {
            let _ = writeln!(o, "warm      skipped: the profile is stale ({})", r.errors.join("; "));
            return o;
        }
        (WarmOutcome::Skipped, _) => {
            let _ = writeln!(o, "warm      skipped: another run holds the lock and does the work");
        }
        (WarmOutcome::Failed, RunStatus::Failed) => {
            let _ = writeln!(o, "warm      failed to start: {cause}");
            return o;
        }
        (outcome, _) => {
            let timing = format!(
                "in {:.2} s ({:.0} keys/s) into {}",
                r.duration_ms as f64 / 1000.0,
                r.keys_per_sec,
                r.backend
            );
            let _ = match outcome {
                WarmOutcome::Completed => writeln!(o, "warm      completed {timing}"),
                WarmOutcome::Failed => writeln!(o, "warm      failed: nothing written {timing}: {cause}"),
                _ => writeln!(o, "warm      degraded {timing}: {cause}"),
            };
        }
    }
    let _ = writeln!(
        o,
        "keys      {} planned: {} written, {} overwritten, {} already cached, {} not in source",
        r.planned, r.written, r.overwritten, r.skipped_existing, r.missing_in_source
    );
    if r.replayed + r.uncacheable > 0 {
        let _ = writeln!(
            o,
            "http      {} replayed for the application to cache, {} not storable (no-store, private, redirect)",
            r.replayed, r.uncacheable
        );
    }
    if r.invalidated > 0 {
        let _ = writeln!(
            o,
            "changed   {} keys changed at their source during the warm: the warm's values were taken back",
            r.invalidated
        );
    }
    let failed: u64 = r.failed.values().sum();
    if failed + r.invalid_keys + r.not_started + r.no_source > 0 {
        let reasons: Vec<String> = r.failed.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            o,
            "problems  {failed} failed ({}), {} invalid, {} not started, {} without a source",
            if reasons.is_empty() { "-".to_string() } else { reasons.join(", ") },
            r.invalid_keys,
            r.not_started,
            r.no_source
        );
    }
    for e in &r.errors {
        let _ = writeln!(o, "          e.g. {e}");
    }
    let _ = writeln!(
        o,
        "bytes     {:.1} MiB written; plan predicted {:.1}% of requests covered",
        r.bytes_written as f64 / (1 << 20) as f64,
        100.0 * r.predicted_coverage
    );
    if let Some(peak) = r.peak_memory {
        let budget = r.memory_budget.map_or("no budget".to_string(), |b| format!("budget {} MiB", b >> 20));
        let _ = writeln!(o, "memory    peak {} MiB ({budget})", peak >> 20);
    }
    for p in &r.pacing {
        let _ = writeln!(
            o,
            "source    {}: {} batches, latency best {} ms, p50 {} ms, p95 {} ms; batches in flight up to {}, {} at the end",
            p.source, p.batches, p.best_ms, p.p50_ms, p.p95_ms, p.max_limit, p.final_limit
        );
    }
    if !r.cache_memory_after.is_empty() {
        let mib = |f: &dyn Fn(&preheat::backend::NodeMemory) -> u64,
                   nodes: &[preheat::backend::NodeMemory]| {
            nodes.iter().map(f).sum::<u64>() as f64 / (1 << 20) as f64
        };
        let watched: Vec<_> = r
            .cache_memory_before
            .iter()
            .filter(|b| r.cache_memory_after.iter().any(|a| a.node == b.node))
            .cloned()
            .collect();
        let _ = writeln!(
            o,
            "cache     {:.1} MiB used before, {:.1} MiB after, of {:.1} MiB ({}, {} node{}); {} evicted during the warm",
            mib(&|n| n.used_bytes, &watched),
            mib(&|n| n.used_bytes, &r.cache_memory_after),
            mib(&|n| n.max_bytes, &r.cache_memory_after),
            r.cache_memory_after[0].policy,
            r.cache_memory_after.len(),
            if r.cache_memory_after.len() == 1 { "" } else { "s" },
            r.evicted_during_warm
        );
    }
    let _ = writeln!(
        o,
        "\n{:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "rule", "planned", "written", "cached", "missing", "invalid", "failed"
    );
    for rr in &r.rules {
        let _ = writeln!(
            o,
            "{:<20} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            rr.name,
            rr.planned,
            rr.written + rr.overwritten,
            rr.skipped_existing,
            rr.missing_in_source,
            rr.invalid,
            rr.failed
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reads_as_whole_keys_a_second_and_guesses_no_time_before_the_first_keys() {
        assert_eq!(rate_text(2.2183), "2 keys/s");
        assert_eq!(eta_text(0, 1634, 0.0), "no estimate yet");
        assert_eq!(eta_text(0, 1634, 0.001), "no estimate yet");
        assert_eq!(eta_text(100, 1100, 50.0), "20 s left");
    }
}
