//! `verify` against generated traffic whose every request is known.

use preheat::analyze::input;
use preheat::logformat::FormatSpec;
use preheat::plan::Plan;
use preheat::verify::verify;

use crate::support::*;

#[test]
fn coverage_reads_and_hit_ratios_follow_the_traffic_after_the_deploy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_with("[warm]\nmax_keys = 300");
    let before = dir.path().join("before.log");
    write_log(&before, &config, &in_format(gen_opts(20_000, 1_000, 1), FormatSpec::Json), Compression::Plain);
    let a = analyze_files(&[before], &config, 2);
    let plan = Plan::build(a.rows().into_iter().map(Ok), &a.summary, &config).expect("plan");
    assert_eq!(plan.keys.len(), 300);

    let after = dir.path().join("after.log.zst");
    let mut opts = in_format(gen_opts(8_000, 1_000, 2), FormatSpec::Json);
    opts.duration = std::time::Duration::from_secs(20 * 60);
    let truth = write_log(&after, &config, &opts, Compression::Zstd);
    let inputs = input::expand(&[after.display().to_string()]).expect("exists");
    let (v, stats) = verify(&plan, Some(0.5), &inputs, &config);
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
    let plan = Plan::build(a.rows().into_iter().map(Ok), &a.summary, &config).expect("plan");
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
    let (v, stats) = preheat::verify::verify_app_log(&plan, None, &inputs, &config);
    assert_eq!((stats.lines, stats.rejected), (26, 1));
    assert_eq!((v.requests, v.requests_to_warmed), (25, 20));
    assert_eq!((v.warmed.hits, v.warmed.misses, v.other.hits, v.other.misses), (20, 0, 0, 5));
    assert_eq!((v.warmed_keys, v.warmed_keys_read), (50, 10));
    assert_eq!(v.minutes.iter().map(|m| m.requests).collect::<Vec<_>>(), vec![10, 10, 5]);
    assert!(v.verdict.iter().any(|l| l.contains("80% of warmed keys were never read")), "{:?}", v.verdict);
}
