//! The warm plan against a real profile: budgets hold and the plan is the hottest allowed prefix.

use std::sync::OnceLock;

use preheat::analyze::Analysis;
use preheat::config::Config;
use preheat::plan::{DEFAULT_VALUE_BYTES, Plan, PlanLimit};
use proptest::prelude::*;

use crate::support::*;

/// One analyzed log shared by every case (rows have sizes; the `page` rule's do too).
fn analysis() -> &'static Analysis {
    static ANALYSIS: OnceLock<Analysis> = OnceLock::new();
    ANALYSIS.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = config_with("");
        let path = dir.path().join("access.log");
        write_log(&path, &config, &gen_opts(20_000, 400, 5), Compression::Plain);
        analyze_files(&[path], &config, 2)
    })
}

fn config(max_keys: u64, max_bytes: Option<u64>, quotas: [Option<u64>; 3]) -> Config {
    let mut text = format!("[warm]\nmax_keys = {max_keys}\n");
    if let Some(b) = max_bytes {
        text.push_str(&format!("max_bytes = \"{b}\"\n"));
    }
    let mut rules = RULES.to_string();
    for (name, quota) in ["product", "category", "page"].iter().zip(quotas) {
        if let Some(q) = quota {
            rules =
                rules.replace(&format!("name = \"{name}\"\n"), &format!("name = \"{name}\"\nquota = {q}\n"));
        }
    }
    Config::parse(&format!("{text}{rules}"), "plan.toml").expect("valid")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn a_plan_never_exceeds_a_budget_and_is_the_hottest_allowed_prefix(
        max_keys in 1u64..2_000,
        max_bytes in proptest::option::of(1_000u64..5_000_000),
        quotas in proptest::array::uniform3(proptest::option::of(1u64..600)),
    ) {
        let a = analysis();
        let config = config(max_keys, max_bytes, quotas);
        let plan = Plan::build(a.rows().into_iter().map(Ok), &a.summary, &config.plan_settings()).expect("plan");

        prop_assert!(plan.keys.len() as u64 <= max_keys);
        prop_assert!(max_bytes.is_none_or(|m| plan.est_bytes <= m));
        for (r, q) in plan.rules.iter().zip(quotas) {
            prop_assert!(q.is_none_or(|q| r.keys <= q));
        }

        // Replay the rule by hand: rows whose rule quota is full are passed over; the plan is
        // the longest prefix of the rest that fits both budgets.
        let mut taken = [0u64; 3];
        let mut bytes = 0u64;
        let mut expected = Vec::new();
        for row in &a.rows() {
            let r = ["product", "category", "page"].iter().position(|n| *n == row.rule).expect("known rule");
            if quotas[r].is_some_and(|q| taken[r] >= q) {
                continue;
            }
            let size = row.mean_bytes.map_or(DEFAULT_VALUE_BYTES, |b| b.round() as u64);
            if expected.len() as u64 == max_keys || max_bytes.is_some_and(|m| bytes + size > m) {
                break;
            }
            taken[r] += 1;
            bytes += size;
            expected.push(row.key.clone());
        }
        let got: Vec<String> = plan.keys.iter().map(|k| k.key.clone()).collect();
        prop_assert_eq!(got, expected);

        let covered: u64 = plan.keys.iter().map(|k| k.requests).sum();
        prop_assert_eq!(plan.requests_covered, covered);
        prop_assert!((plan.predicted_coverage - covered as f64 / a.summary.lines.matched as f64).abs() < 1e-12);
        if plan.limit == PlanLimit::MaxKeys {
            prop_assert_eq!(plan.keys.len() as u64, max_keys);
        }
    }
}

#[test]
fn the_whole_profile_covers_every_profiled_request() {
    let a = analysis();
    let plan = Plan::build(
        a.rows().into_iter().map(Ok),
        &a.summary,
        &config(1_000_000, None, [None; 3]).plan_settings(),
    )
    .expect("plan");
    assert_eq!(plan.limit, PlanLimit::ProfileExhausted);
    assert_eq!(plan.keys.len(), a.rows().len());
    assert!((plan.predicted_coverage - 1.0).abs() < 1e-12);
    // Zipf traffic: the hottest tenth of the keys covers far more than a tenth of the requests.
    let tenth = config((a.rows().len() / 10) as u64, None, [None; 3]);
    let plan = Plan::build(a.rows().into_iter().map(Ok), &a.summary, &tenth.plan_settings()).expect("plan");
    assert!(plan.predicted_coverage > 0.4, "{}", plan.predicted_coverage);
}
