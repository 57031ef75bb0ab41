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
    let plan = Plan::build(a.rows.iter().cloned().map(Ok), &a.summary, &config).expect("plan");
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
