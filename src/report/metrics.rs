//! Prometheus metrics of a warm run and of a verification, in the text exposition format, for
//! node_exporter's textfile collector.
//!
//! Both are batch jobs, so every metric is a gauge describing the last run; the file is
//! replaced atomically, so the collector never reads half of it. Names follow Prometheus
//! conventions: a `preheat_warm_` prefix, base units (`_seconds`, `_bytes`, `_ratio`), and
//! labels rather than names for rules, outcomes and reasons.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::report::verify::{Hits, Verification};
use crate::warm::{RunReport, RunStatus, WarmOutcome};

/// Every way a run can end, so the status gauge has one series per value.
const STATUSES: [(RunStatus, &str); 10] = [
    (RunStatus::Completed, "completed"),
    (RunStatus::Deadline, "deadline"),
    (RunStatus::Interrupted, "interrupted"),
    (RunStatus::Memory, "memory"),
    (RunStatus::Headroom, "headroom"),
    (RunStatus::Evicting, "evicting"),
    (RunStatus::Locked, "locked"),
    (RunStatus::Skipped, "skipped"),
    (RunStatus::Stale, "stale"),
    (RunStatus::Failed, "failed"),
];

/// Every verdict, so the outcome gauge has one series per value.
const OUTCOMES: [WarmOutcome; 4] =
    [WarmOutcome::Completed, WarmOutcome::Degraded, WarmOutcome::Failed, WarmOutcome::Skipped];

/// A label value with `\`, `"` and newlines escaped.
fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

struct Exposition(String);

impl Exposition {
    fn family(&mut self, name: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} gauge");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
        let labels = if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.join(",")) };
        let _ = writeln!(self.0, "{name}{labels} {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.family(name, help);
        self.sample(name, &[], value);
    }
}

/// The run as Prometheus text; `now` is the end of the run (Unix seconds).
pub fn render(report: &RunReport, now: f64) -> String {
    let mut out = Exposition(String::new());
    out.gauge("preheat_warm_last_run_timestamp_seconds", "When the last warm ended (Unix time).", now);
    out.family("preheat_warm_outcome", "The last warm's verdict: 1 for its outcome, 0 for the others.");
    for outcome in OUTCOMES {
        let value = f64::from(u8::from(report.outcome == outcome));
        out.sample("preheat_warm_outcome", &[("outcome", outcome.as_str())], value);
    }
    out.family("preheat_warm_status", "How the last warm ended: 1 for its status, 0 for the others.");
    for (status, name) in STATUSES {
        out.sample("preheat_warm_status", &[("status", name)], f64::from(u8::from(report.status == status)));
    }
    out.gauge(
        "preheat_warm_success",
        "1 when the last warm went as planned (nothing failed, invalid or left out), else 0.",
        f64::from(u8::from(report.is_clean())),
    );
    out.gauge(
        "preheat_warm_duration_seconds",
        "Wall time of the last warm.",
        report.duration_ms as f64 / 1e3,
    );
    out.gauge(
        "preheat_warm_warmed_coverage_ratio",
        "Share of the profile's requests whose keys the cache holds after the last warm.",
        report.warmed_coverage,
    );
    if let Some(ms) = report.ready_after_ms {
        out.gauge(
            "preheat_warm_ready_after_seconds",
            "When the last warm's keys reached warm.ready_at, after its start.",
            ms as f64 / 1e3,
        );
    }
    if !report.pacing.is_empty() {
        out.family("preheat_warm_source_latency_seconds", "Batch latency of each source in the last warm.");
        for p in &report.pacing {
            // Not `quantile`: that label belongs to summaries, and these are gauges.
            for (percentile, ms) in [("50", p.p50_ms), ("95", p.p95_ms)] {
                let labels = [("source", p.source.as_str()), ("percentile", percentile)];
                out.sample("preheat_warm_source_latency_seconds", &labels, ms as f64 / 1e3);
            }
        }
        out.family(
            "preheat_warm_source_concurrency",
            "Batches in flight each source was allowed in the last warm: the highest limit and the last.",
        );
        for p in &report.pacing {
            for (limit, value) in [("max", p.max_limit), ("final", p.final_limit)] {
                let labels = [("source", p.source.as_str()), ("limit", limit)];
                out.sample("preheat_warm_source_concurrency", &labels, f64::from(value));
            }
        }
    }
    out.gauge(
        "preheat_warm_evicted_during_warm",
        "Keys the cache evicted for room while the last warm wrote (it stops at the first).",
        report.evicted_during_warm as f64,
    );
    out.gauge("preheat_warm_written_bytes", "Value bytes the last warm wrote.", report.bytes_written as f64);
    out.gauge(
        "preheat_warm_predicted_coverage_ratio",
        "Share of profiled requests the last warm's plan was predicted to cover.",
        report.predicted_coverage,
    );
    if let Some(peak) = report.peak_memory {
        out.gauge("preheat_warm_peak_memory_bytes", "Peak resident memory of the last warm.", peak as f64);
    }
    if let Some(budget) = report.memory_budget {
        out.gauge("preheat_warm_memory_budget_bytes", "Memory budget of the last warm.", budget as f64);
    }

    out.family("preheat_warm_keys_planned", "Keys in the last warm's plan, by rule.");
    for r in &report.rules {
        out.sample("preheat_warm_keys_planned", &[("rule", &r.name)], r.planned as f64);
    }
    out.family(
        "preheat_warm_keys",
        "Keys of the last warm by rule and outcome (written, overwritten, skipped_existing, \
         missing_in_source, uncacheable, replayed, invalidated, invalid, failed).",
    );
    for r in &report.rules {
        for (outcome, n) in [
            ("written", r.written),
            ("overwritten", r.overwritten),
            ("skipped_existing", r.skipped_existing),
            ("missing_in_source", r.missing_in_source),
            ("uncacheable", r.uncacheable),
            ("replayed", r.replayed),
            ("invalidated", r.invalidated),
            ("invalid", r.invalid),
            ("failed", r.failed),
        ] {
            out.sample("preheat_warm_keys", &[("rule", &r.name), ("outcome", outcome)], n as f64);
        }
    }
    out.family("preheat_warm_keys_failed", "Keys the last warm failed to write, by reason.");
    for (reason, n) in &report.failed {
        out.sample("preheat_warm_keys_failed", &[("reason", reason.as_str())], *n as f64);
    }
    out.gauge(
        "preheat_warm_keys_not_started",
        "Keys the last warm never started (deadline, memory budget, stop signal).",
        report.not_started as f64,
    );
    out.0
}

/// A verification as Prometheus text; `now` is when it ran (Unix seconds).
pub fn render_verification(v: &Verification, now: f64) -> String {
    let mut out = Exposition(String::new());
    out.gauge(
        "preheat_verify_last_run_timestamp_seconds",
        "When the last verification ran (Unix time).",
        now,
    );
    out.gauge("preheat_verify_requests", "Requests after the deploy that matched a rule.", v.requests as f64);
    out.gauge(
        "preheat_verify_observed_coverage_ratio",
        "Share of requests after the deploy that went to warmed keys.",
        v.observed_coverage,
    );
    out.gauge(
        "preheat_verify_predicted_coverage_ratio",
        "The warm plan's prediction of that share.",
        v.predicted_coverage,
    );
    out.family(
        "preheat_verify_hit_ratio",
        "Cache hit ratio after the deploy, for warmed keys, other keys and all.",
    );
    let all = Hits { hits: v.warmed.hits + v.other.hits, misses: v.warmed.misses + v.other.misses };
    for (keys, hits) in [("warmed", v.warmed), ("other", v.other), ("all", all)] {
        if let Some(ratio) = hits.ratio() {
            out.sample("preheat_verify_hit_ratio", &[("keys", keys)], ratio);
        }
    }
    if let Some(before) = v.hit_ratio_before {
        out.gauge(
            "preheat_verify_hit_ratio_before",
            "Cache hit ratio the profile recorded before the deploy.",
            before,
        );
    }
    out.gauge("preheat_verify_warmed_keys", "Keys the warm plan warmed.", v.warmed_keys as f64);
    out.gauge(
        "preheat_verify_warmed_keys_read",
        "Warmed keys requested at least once after the deploy.",
        v.warmed_keys_read as f64,
    );
    out.0
}

/// Writes a warm run's metrics to `path`, replacing it atomically.
pub fn write_textfile(report: &RunReport, path: &Path) -> std::io::Result<()> {
    write_atomically(&render(report, unix_now()), path)
}

/// Writes a verification's metrics to `path`, replacing it atomically.
pub fn write_verification_textfile(v: &Verification, path: &Path) -> std::io::Result<()> {
    write_atomically(&render_verification(v, unix_now()), path)
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Writes `text` to `path` through a temporary file in the same directory, renamed into place,
/// so a collector never reads half a file.
fn write_atomically(text: &str, path: &Path) -> std::io::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map_or("metrics".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::warm::RuleReport;

    #[test]
    fn every_rule_outcome_and_reason_is_a_labelled_series() {
        let mut report = RunReport::new(
            "memory://".into(),
            10,
            0.75,
            vec![RuleReport {
                name: "product".into(),
                planned: 10,
                written: 7,
                failed: 3,
                ..Default::default()
            }],
        );
        report.failed.insert(crate::failure::FailureReason::SourceTimeout, 3);
        report.pacing.push(crate::warm::SourcePacing {
            source: "db".into(),
            batches: 4,
            best_ms: 20,
            p50_ms: 25,
            p95_ms: 40,
            max_limit: 3,
            final_limit: 2,
            timeline: Vec::new(),
        });
        report.written = 7;
        report.duration_ms = 1500;
        report.conclude();
        let text = render(&report, 1_700_000_000.0);
        for line in [
            "preheat_warm_outcome{outcome=\"degraded\"} 1",
            "preheat_warm_outcome{outcome=\"completed\"} 0",
            "preheat_warm_status{status=\"completed\"} 1",
            "preheat_warm_status{status=\"deadline\"} 0",
            "preheat_warm_success 0",
            "preheat_warm_duration_seconds 1.5",
            "preheat_warm_evicted_during_warm 0",
            "preheat_warm_source_latency_seconds{source=\"db\",percentile=\"95\"} 0.04",
            "preheat_warm_source_concurrency{source=\"db\",limit=\"max\"} 3",
            "preheat_warm_status{status=\"headroom\"} 0",
            "preheat_warm_predicted_coverage_ratio 0.75",
            "preheat_warm_keys_planned{rule=\"product\"} 10",
            "preheat_warm_keys{rule=\"product\",outcome=\"written\"} 7",
            "preheat_warm_keys_failed{reason=\"source_timeout\"} 3",
            "# TYPE preheat_warm_keys gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
        }
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_textfile_is_replaced_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("preheat.prom");
        std::fs::write(&path, "old").expect("writable");
        write_textfile(&RunReport::skipped("memory://".into()), &path).expect("written");
        let text = std::fs::read_to_string(&path).expect("readable");
        assert!(text.contains("preheat_warm_status{status=\"skipped\"} 1"), "{text}");
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("listable").collect();
        assert_eq!(left.len(), 1, "no temporary file is left behind");
    }
}
