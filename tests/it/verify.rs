//! `verify` against generated traffic whose every request is known.

use preheat::analyze::input;
use preheat::logformat::FormatSpec;
use preheat::plan::Plan;
use preheat::report::verify::{Baseline, verify};

use crate::support::*;

#[test]
fn coverage_reads_and_hit_ratios_follow_the_traffic_after_the_deploy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("[warm]\nmax_keys = 300");
    let before = dir.path().join("before.log");
    write_log(&before, &config, &in_format(gen_opts(20_000, 1_000, 1), FormatSpec::Json), Compression::Plain);
    let a = analyze_files(&[before], &config, 2);
    let plan = Plan::build(a.rows().into_iter().map(Ok), &a.summary, &config.plan_settings()).expect("plan");
    assert_eq!(plan.keys.len(), 300);

    let after = dir.path().join("after.log.zst");
    let mut opts = in_format(gen_opts(8_000, 1_000, 2), FormatSpec::Json);
    opts.duration = std::time::Duration::from_secs(20 * 60);
    let truth = write_log(&after, &config, &opts, Compression::Zstd);
    let inputs = input::expand(&[after.display().to_string()]).expect("exists");
    let (v, stats) = verify(
        &plan,
        Baseline { hit_ratio_before: Some(0.5), warmed_from_report: false },
        &inputs,
        config.reading(),
    );
    assert!(stats.failed_inputs.is_empty());

    let counts = truth_counts(&truth);
    let count_of = |rule: &str, key: &str| {
        counts.iter().find(|(r, k, _)| r == rule && k == key).map_or(0, |(_, _, c)| *c)
    };
    let requests: u64 = counts.iter().map(|(_, _, c)| c).sum();
    let rule_name = |i: usize| config.rules.rules()[i].name.clone();
    let to_warmed: u64 = plan.keys.iter().map(|k| count_of(&rule_name(k.rule), &k.key)).sum();
    let read = plan.keys.iter().filter(|k| count_of(&rule_name(k.rule), &k.key) > 0).count() as u64;
    assert_eq!(v.requests, requests);
    assert_eq!(v.requests_to_warmed, to_warmed);
    assert_eq!((v.warmed_keys, v.warmed_keys_read), (300, read));
    assert!((v.observed_coverage - to_warmed as f64 / requests as f64).abs() < 1e-12);
    assert_eq!(v.predicted_coverage, plan.predicted_coverage);
    // The generator logs HIT or MISS for every request a rule caches.
    assert_eq!(v.warmed.hits + v.warmed.misses + v.other.hits + v.other.misses, requests);
    assert_eq!(v.minutes.iter().map(|m| m.requests).sum::<u64>(), requests);
    assert!((18..=21).contains(&v.minutes.len()), "{} minutes", v.minutes.len());
    assert!(v.verdict[0].starts_with("the warm set covered"), "{:?}", v.verdict);
    assert!(v.verdict.iter().any(|l| l.contains("before it 50%")), "{:?}", v.verdict);
}

#[test]
fn an_applications_own_cache_log_is_checked_by_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("[warm]\nmax_keys = 50");
    let before = dir.path().join("before.log");
    write_log(&before, &config, &gen_opts(5_000, 200, 4), Compression::Plain);
    let a = analyze_files(&[before], &config, 2);
    let plan = Plan::build(a.rows().into_iter().map(Ok), &a.summary, &config.plan_settings()).expect("plan");
    assert_eq!(plan.keys.len(), 50);

    // Ten warmed keys read twice (hit, then hit), five unwarmed keys read once (miss), over
    // three minutes, in each field spelling; one line that is not JSON.
    let mut lines = Vec::new();
    for (i, k) in plan.keys.iter().take(10).enumerate() {
        lines
            .push(format!(r#"{{"key": "{}", "cache": "HIT", "time": "2026-01-01T00:00:{:02}Z"}}"#, k.key, i));
        lines.push(format!(r#"{{"key": "{}", "hit": true, "ts": {}}}"#, k.key, 1_767_225_600 + 61 + i));
    }
    for i in 0..5 {
        lines.push(format!(
            r#"{{"key": "cold:{i}", "cache_status": "MISS", "timestamp": {}}}"#,
            1_767_225_600_000i64 + 150_000
        ));
    }
    lines.push("not json at all".into());
    let log = dir.path().join("app.log");
    std::fs::write(&log, lines.join("\n") + "\n").expect("writable");
    let inputs = input::expand(&[log.display().to_string()]).expect("exists");
    let (v, stats) =
        preheat::report::verify::verify_app_log(&plan, Baseline::default(), &inputs, &config.rules);
    assert_eq!((stats.lines, stats.rejected), (26, 1));
    assert_eq!((v.requests, v.requests_to_warmed), (25, 20));
    assert_eq!((v.warmed.hits, v.warmed.misses, v.other.hits, v.other.misses), (20, 0, 0, 5));
    assert_eq!((v.warmed_keys, v.warmed_keys_read), (50, 10));
    assert_eq!(v.minutes.iter().map(|m| m.requests).collect::<Vec<_>>(), vec![10, 10, 5]);
    assert!(v.verdict.iter().any(|l| l.contains("80% of warmed keys were never read")), "{:?}", v.verdict);
}

/// The demo's shop, its latest profile made from a generated JSON log (which records cache
/// statuses), and a log of the traffic after the deploy.
fn shop_with_cache_statuses() -> tempfile::TempDir {
    let (dir, _) = after_the_demo();
    for (seed, out) in [("4", "before.log"), ("5", "after.log")] {
        let args = ["generate-log", "--config", "data/preheat.toml", "--format", "json", "--lines", "20000"];
        let out = preheat(dir.path(), &[&args[..], &["--seed", seed, "-o", out]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let out = preheat(dir.path(), &["analyze", "--config", "data/preheat.toml", "before.log"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    dir
}

fn verify_json(dir: &std::path::Path, extra: &[&str]) -> serde_json::Value {
    let args = [
        &["verify", "--json", "--config", "data/preheat.toml", "--max-keys", "300"][..],
        extra,
        &["after.log"],
    ];
    let out = preheat(dir, &args.concat());
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

#[test]
fn verify_counts_as_warmed_only_the_keys_the_warm_wrote() {
    let dir = shop_with_cache_statuses();
    let warm = |backend: &str, report: &str| {
        let args = [
            "warm",
            "--config",
            "data/preheat.toml",
            "--max-keys",
            "300",
            "--backend",
            backend,
            "--report",
            report,
        ];
        let out = preheat(dir.path(), &args);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        let report: preheat::warm::RunReport =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join(report)).expect("written"))
                .expect("the report reads back as a type");
        report
    };
    // Some planned keys are not in the shop's database: they are not warmed.
    let healthy = warm("memory://", "healthy.json");
    assert!(healthy.missing_in_source > 0 && healthy.written > 0, "{healthy:?}");
    let missing: usize = healthy.not_written.values().map(Vec::len).sum();
    assert_eq!(missing as u64, healthy.missing_in_source);

    let v = verify_json(dir.path(), &[]);
    assert_eq!(v["warmed_keys"], 300, "without a report every planned key counts");
    assert!(v["verdict"].to_string().contains("pass --warm-report"), "{v}");
    let v = verify_json(dir.path(), &["--warm-report", "healthy.json"]);
    assert_eq!(v["warmed_keys"].as_u64(), Some(healthy.written), "{v}");
    assert_eq!(v["warmed_from_report"], true);

    // A warm into a cache that was down wrote nothing: nothing counts as warmed.
    let down = warm(&format!("redis://127.0.0.1:{}", crate::servers::free_port()), "down.json");
    assert_eq!(down.outcome, preheat::warm::WarmOutcome::Failed);
    let v = verify_json(dir.path(), &["--warm-report", "down.json"]);
    assert_eq!((v["warmed_keys"].as_u64(), v["requests_to_warmed"].as_u64()), (Some(0), Some(0)), "{v}");
}

#[test]
fn the_hit_ratio_before_the_deploy_is_the_whole_profiles() {
    let dir = shop_with_cache_statuses();
    let store = preheat::profile::Store::new(dir.path().join("profiles"));
    let (_, rows) =
        preheat::profile::open_profile(&store.resolve("latest").expect("a profile")).expect("readable");
    let (mut all, mut planned) = ((0u64, 0u64), (0u64, 0u64));
    for (i, row) in rows.enumerate() {
        let row = row.expect("a row");
        all = (all.0 + row.cache_hits, all.1 + row.cache_misses);
        if i < 300 {
            planned = (planned.0 + row.cache_hits, planned.1 + row.cache_misses);
        }
    }
    let ratio = |(hits, misses): (u64, u64)| hits as f64 / (hits + misses) as f64;
    let v = verify_json(dir.path(), &[]);
    let before = v["hit_ratio_before"].as_f64().expect("a ratio");
    let warmed_before = v["warmed_hit_ratio_before"].as_f64().expect("a ratio");
    assert!((before - ratio(all)).abs() < 1e-9, "{before} against {}", ratio(all));
    assert!((warmed_before - ratio(planned)).abs() < 1e-9, "{warmed_before} against {}", ratio(planned));
    assert!((before - warmed_before).abs() > 1e-3, "the two are told apart: {before} {warmed_before}");
    let out =
        preheat(dir.path(), &["verify", "--config", "data/preheat.toml", "--max-keys", "300", "after.log"]);
    let table = text(&out.stdout);
    assert!(
        table.contains("hit ratio of all requests") && table.contains("hit ratio of the warmed keys"),
        "{table}"
    );
}
