//! `preheat analyze`: logs → profile, with a summary on stdout.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use preheat::analyze::{self, Progress, input};
use preheat::logformat::KNOWN_FORMATS;
use preheat::logformat::time::parse_iso8601;
use preheat::printable::printable;
use preheat::profile::{ProfileColumns, ProfileRow, Store, Summary};
use preheat::timestamp::now_ms;

use super::{Exit, GlobalArgs, RunError, UsageError, load_config, show_bar};

/// Flags of `preheat analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Config file [default: ./preheat.toml if present, else built-in rules].
    #[arg(long, short, env = "PREHEAT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    format: super::AccessLogFormat,
    /// Profile store directory.
    #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
    profiles: PathBuf,
    /// Only requests at or after this time: RFC 3339 (`2026-01-01T00:00:00Z`) or an age (`24h`).
    #[arg(long)]
    since: Option<String>,
    /// Only requests before this time: RFC 3339 or an age.
    #[arg(long)]
    until: Option<String>,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Print the summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Top keys to show in the summary.
    #[arg(long, default_value_t = 10)]
    top: usize,
    /// Analyze and print, but do not write a profile.
    #[arg(long)]
    dry_run: bool,
    /// Write the profile, and point `latest` at it, even when no request was counted for a
    /// key. Without it such a run writes nothing and exits 1, so the last good profile stays
    /// the one a warm uses.
    #[arg(long)]
    allow_empty: bool,
    /// Logs: files, directories, globs, or `-` for stdin. Gzip and zstd are detected.
    #[arg(required = true, value_name = "LOG")]
    logs: Vec<String>,
}

/// `2026-01-01T00:00:00Z` or an age such as `24h` (that long before now).
fn parse_time(flag: &str, value: &str) -> Result<i64, UsageError> {
    if let Some(ms) = parse_iso8601(value.as_bytes()) {
        return Ok(ms);
    }
    if let Ok(age) = humantime::parse_duration(value) {
        return Ok(now_ms() - age.as_millis() as i64);
    }
    Err(UsageError::new(
        format!("{flag} `{value}` is neither a time nor an age"),
        Some("write an RFC 3339 time such as `2026-01-01T00:00:00Z`, or an age such as `24h`"),
    ))
}

pub fn run(args: AnalyzeArgs, global: &GlobalArgs) -> anyhow::Result<Exit> {
    let config = load_config(args.config.as_ref())?;
    let mut opts = config.analyze_options();
    if let Some(format) = args.format.parse()? {
        opts.log.format = format;
    }
    opts.since_ms = args.since.as_deref().map(|s| parse_time("--since", s)).transpose()?;
    opts.until_ms = args.until.as_deref().map(|s| parse_time("--until", s)).transpose()?;
    if let (Some(s), Some(u)) = (opts.since_ms, opts.until_ms)
        && s >= u
    {
        return Err(UsageError::new("--since must be earlier than --until", None).into());
    }
    if let Some(n) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .build_global()
            .context("setting up worker threads")?;
    }
    let inputs = input::expand(&args.logs)?;
    tracing::info!(
        inputs = inputs.len(),
        config = %config.origin,
        format = %opts.log.format,
        rules = config.rules.rules().len(),
        "analyzing"
    );

    let reporter = ProgressReporter::new(show_bar(global));
    let analysis = analyze::analyze(&inputs, &config.rules, &opts, &|p| reporter.update(p));
    reporter.finish();

    let readable = analysis.summary.inputs.iter().any(|i| i.error.is_none() || i.lines > 0);
    if !readable {
        return Err(RunError::new(
            "no input could be read (each one's error is logged above)",
            "check that the files are readable, and that compressed ones are whole gzip or zstd",
        )
        .into());
    }

    let summary = &analysis.summary;
    if summary.lines.read > 0 && summary.lines.rejected * 2 > summary.lines.read {
        tracing::warn!(
            rejected = summary.lines.rejected,
            lines = summary.lines.read,
            reason = most_common_rejection(summary),
            "most lines were rejected; check the log format (`--format` or `[log] format`)"
        );
    }
    // A profile without keys would become `latest`, and the next warm would warm nothing.
    let refused = analysis.profile.is_empty() && !args.allow_empty && !args.dry_run;
    let profile_path = if args.dry_run || refused {
        None
    } else {
        let started = std::time::Instant::now();
        let path = analysis
            .save(&Store::new(&args.profiles), now_ms())
            .with_context(|| format!("writing the profile to `{}`", args.profiles.display()))?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "profile written");
        Some(path)
    };

    tracing::info!(
        lines = summary.lines.read,
        rejected = summary.lines.rejected,
        matched = summary.lines.matched,
        keys = analysis.profile.len(),
        profile = profile_path.as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
        elapsed_ms = summary.elapsed_ms,
        "analysis finished"
    );
    if args.json {
        let out = serde_json::json!({
            "summary": summary,
            "profile": profile_path,
            "keys": analysis.profile.len(),
            "top": analysis.profile.rows().take(args.top).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        let written = match &profile_path {
            Some(path) => Ok(path.as_path()),
            None if refused => Err("no key was counted, see below"),
            None => Err("--dry-run"),
        };
        print!("{}", render_summary(summary, &analysis.profile, args.top, written));
    }
    if refused {
        let (why, hint) = why_no_keys(summary);
        let kept = match Store::new(&args.profiles).pointed() {
            Some(p) => format!("`latest` still points to `{}`", p.display()),
            None => "the store has no profile yet".to_string(),
        };
        let hint = format!("{hint}; `--allow-empty` writes the empty profile anyway");
        return Err(RunError::new(format!("no profile written: {why}; {kept}"), hint).into());
    }
    Ok(if analysis.had_input_errors() { Exit::Partial } else { Exit::Ok })
}

/// The reason most rejected lines share.
fn most_common_rejection(s: &Summary) -> &str {
    s.rejected_by_reason.iter().max_by_key(|(_, n)| **n).map_or("-", |(reason, _)| reason.as_str())
}

/// Why an analysis counted no request for a key, and what to check.
fn why_no_keys(s: &Summary) -> (String, String) {
    let l = &s.lines;
    if l.read == 0 {
        return (
            "the logs hold no lines".into(),
            "check that the paths name the logs with traffic (a log just rotated is empty)".into(),
        );
    }
    if l.parsed == 0 {
        return (
            format!(
                "none of the {} lines is a request in the log format (mostly `{}`)",
                l.read,
                most_common_rejection(s)
            ),
            format!(
                "check the log format, `--format` or the config's `[log] format`, against the samples above: \
                 {KNOWN_FORMATS}, or the format string your server is configured with"
            ),
        );
    }
    let parts: Vec<String> = [
        (l.unmatched, "matched no rule"),
        (l.status_filtered, "had a status no rule caches"),
        (l.out_of_window, "were outside --since/--until"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    let why = format!("no request was counted for a key: of {} requests, {}", l.parsed, parts.join(", "));
    let hint = if l.out_of_window >= l.unmatched.max(l.status_filtered) {
        "check --since and --until against the times in the log"
    } else if l.status_filtered >= l.unmatched {
        "check the rules' `status` filters (the default caches 2xx and 304)"
    } else {
        "add rules for the unmatched paths listed above"
    };
    (why, hint.into())
}

/// Progress as a bar on a terminal, else a log line every few seconds.
struct ProgressReporter {
    bar: Option<indicatif::ProgressBar>,
    last_log: Mutex<Duration>,
}

impl ProgressReporter {
    fn new(bar: bool) -> Self {
        let bar = bar.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {bytes}/{total_bytes} {bytes_per_sec} {wide_bar} {eta} {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        ProgressReporter { bar, last_log: Mutex::new(Duration::ZERO) }
    }

    fn update(&self, p: &Progress) {
        if let Some(bar) = &self.bar {
            if let Some(total) = p.bytes_total {
                bar.set_length(total);
            }
            bar.set_position(p.bytes_read);
            bar.set_message(format!("{} lines", p.lines));
            return;
        }
        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
        if p.elapsed >= *last + Duration::from_secs(5) {
            *last = p.elapsed;
            let mb = p.bytes_read as f64 / 1e6;
            let rate = mb / p.elapsed.as_secs_f64().max(1e-9);
            match p.bytes_total {
                Some(t) if t > 0 => tracing::info!(
                    "progress: {mb:.0}/{:.0} MB ({:.0}%), {} lines, {rate:.0} MB/s",
                    t as f64 / 1e6,
                    100.0 * p.bytes_read as f64 / t as f64,
                    p.lines
                ),
                _ => tracing::info!("progress: {mb:.0} MB, {} lines, {rate:.0} MB/s", p.lines),
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn pct(n: u64, of: u64) -> String {
    if of == 0 { "-".into() } else { format!("{:.1}%", 100.0 * n as f64 / of as f64) }
}

/// The terminal summary; `profile` is the profile written, or why none was.
pub fn render_summary(
    s: &Summary,
    rows: &ProfileColumns,
    top: usize,
    profile: Result<&Path, &str>,
) -> String {
    let mut o = String::new();
    let secs = s.elapsed_ms as f64 / 1000.0;
    let _ = writeln!(
        o,
        "read      {} input{}, {:.1} MB in {:.2} s ({:.0} MB/s)",
        s.inputs.len(),
        if s.inputs.len() == 1 { "" } else { "s" },
        s.bytes_read as f64 / 1e6,
        secs,
        s.bytes_read as f64 / 1e6 / secs.max(1e-3)
    );
    for i in &s.inputs {
        let how = match (&i.format, &i.compression) {
            (Some(f), Some(c)) if c != "none" => format!("{f}, {c}"),
            (Some(f), _) => f.clone(),
            _ => "-".into(),
        };
        let _ = write!(o, "          {}  {} lines  [{}]", i.name, i.lines, how);
        if let Some(e) = &i.error {
            let label = if i.lines > 0 { "READ IN PART" } else { "ERROR" };
            let _ = write!(o, "  {label}: {e}");
        }
        o.push('\n');
    }
    let l = &s.lines;
    let _ = writeln!(
        o,
        "lines     {} read, {} parsed, {} rejected ({})",
        l.read,
        l.parsed,
        l.rejected,
        pct(l.rejected, l.read)
    );
    for (reason, n) in &s.rejected_by_reason {
        let _ = writeln!(o, "          rejected {reason}: {n}");
    }
    for sample in &s.samples {
        let _ = writeln!(
            o,
            "          e.g. {}:{} ({}): {}",
            sample.input,
            sample.line,
            sample.reason,
            printable(&sample.excerpt)
        );
    }
    let _ = writeln!(
        o,
        "requests  {} matched ({}), {} unmatched, {} status not cached, {} outside window",
        l.matched,
        pct(l.matched, l.parsed),
        l.unmatched,
        l.status_filtered,
        l.out_of_window
    );
    let _ = writeln!(
        o,
        "window    {} .. {}   ({} distinct clients)",
        s.window.start.as_deref().unwrap_or("-"),
        s.window.end.as_deref().unwrap_or("-"),
        s.distinct_clients
    );
    let _ = writeln!(
        o,
        "\n{:<20} {:>12} {:>12} {:>10} {:>14}",
        "rule", "requests", "keys", "clients", "count error ≤"
    );
    for r in &s.rules {
        let keys = if r.distinct_keys_estimated {
            format!("~{}", r.distinct_keys)
        } else {
            r.distinct_keys.to_string()
        };
        let _ = writeln!(
            o,
            "{:<20} {:>12} {:>12} {:>10} {:>14}",
            r.name, r.requests, keys, r.distinct_clients, r.count_error_bound
        );
    }
    if !s.top_unmatched.is_empty() {
        let _ = writeln!(o, "\ntop unmatched paths (add rules for these?):");
        for p in s.top_unmatched.iter().take(10) {
            let _ = writeln!(o, "  {:>10}  {}", p.requests, printable(&p.path));
        }
    }
    if top > 0 && !rows.is_empty() {
        o.push('\n');
        o.push_str(&render_rows(&rows.rows().take(top).collect::<Vec<_>>(), top));
    }
    match profile {
        Ok(p) => {
            let _ = writeln!(o, "\nprofile   {} ({} keys)", p.display(), rows.len());
        }
        Err(why) => {
            let _ = writeln!(o, "\nprofile   not written ({why})");
        }
    }
    o
}

/// A table of the hottest rows.
pub fn render_rows(rows: &[ProfileRow], top: usize) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{:>5}  {:<14} {:>10} {:>12} {:>10} {:>9}  key",
        "rank", "rule", "requests", "score", "mean B", "mean ms"
    );
    for (i, r) in rows.iter().take(top).enumerate() {
        let opt = |v: Option<f64>, prec: usize| v.map_or("-".to_string(), |x| format!("{x:.prec$}"));
        let _ = writeln!(
            o,
            "{:>5}  {:<14} {:>10} {:>12.1} {:>10} {:>9}  {}",
            i + 1,
            r.rule,
            r.count,
            r.score,
            opt(r.mean_bytes, 0),
            opt(r.mean_latency_ms, 1),
            printable(&r.key)
        );
    }
    o
}
