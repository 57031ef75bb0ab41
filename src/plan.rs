//! The warm plan: which profiled keys to warm, within budgets.
//!
//! Rows arrive hottest first (the profile's order). A row joins the plan unless its rule is
//! not configured or has reached its quota; the plan ends at the first row that would exceed
//! the key or byte budget, so it is always the hottest allowed prefix of the profile and the
//! profile is read only that far. The plan also predicts its effect: the share of profiled
//! requests whose key it warms.

use serde::Serialize;

use crate::profile::{ProfileError, ProfileRow, Summary};

/// Value size assumed for a key whose profile row has no response size (the log had no
/// bytes field).
pub const DEFAULT_VALUE_BYTES: u64 = 1024;

/// Budgets of a warm plan (`[warm]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct WarmBudgets {
    /// At most this many keys in total.
    pub max_keys: u64,
    /// At most this many bytes of values in total, estimated from the profile's mean response
    /// sizes; `None` for no byte budget.
    pub max_bytes: Option<u64>,
}

impl Default for WarmBudgets {
    fn default() -> Self {
        WarmBudgets { max_keys: 100_000, max_bytes: None }
    }
}

/// What a plan may hold: the budgets and, in config order, each rule's name and quota.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PlanSettings {
    /// The warm's key and byte budgets.
    pub budgets: WarmBudgets,
    /// Per configured rule: its name and its key quota (`None`: no quota).
    pub rules: Vec<(String, Option<u64>)>,
}

/// One key to warm.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedKey {
    /// Index of the rule in the config.
    pub rule: usize,
    /// The cache key.
    pub key: String,
    /// Captured parameters (JSON object), the input of the key's source.
    pub params: String,
    /// Hotness score from the profile.
    pub score: f64,
    /// Requests in the profile's window.
    pub requests: u64,
    /// Estimated value size in bytes.
    pub est_bytes: u64,
    /// Cache hits the profile's log recorded for the key.
    pub cache_hits: u64,
    /// Cache misses the profile's log recorded for the key.
    pub cache_misses: u64,
}

/// One rule's share of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RulePlan {
    /// Rule name.
    pub name: String,
    /// Keys planned.
    pub keys: u64,
    /// Estimated bytes planned.
    pub est_bytes: u64,
    /// Profiled requests to the planned keys.
    pub requests_covered: u64,
    /// Profiled requests to all of the rule's keys.
    pub requests_profiled: u64,
    /// The rule's quota, if any.
    pub quota: Option<u64>,
    /// Rows passed over because the quota was full.
    pub over_quota: u64,
}

/// Why the plan ends where it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanLimit {
    /// Every profiled key of the configured rules fits.
    ProfileExhausted,
    /// `warm.max_keys` was reached.
    MaxKeys,
    /// The next key would exceed `warm.max_bytes`.
    MaxBytes,
    /// Every rule reached its quota.
    Quotas,
}

/// A warm plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// Keys to warm, hottest first.
    pub keys: Vec<PlannedKey>,
    /// Per configured rule, in config order.
    pub rules: Vec<RulePlan>,
    /// Budgets applied.
    pub budgets: WarmBudgets,
    /// Why the plan ends.
    pub limit: PlanLimit,
    /// Estimated bytes of all planned values.
    pub est_bytes: u64,
    /// Profiled requests to planned keys.
    pub requests_covered: u64,
    /// Profiled requests to any key (the profile's matched requests).
    pub requests_profiled: u64,
    /// `requests_covered / requests_profiled`: the share of requests the warm set would have
    /// served in the profile's window (a lower bound when a rule's counts were pruned).
    pub predicted_coverage: f64,
    /// Profile rows of rules the config does not define (a config that changed since).
    pub rows_of_unknown_rules: u64,
}

impl Plan {
    /// Builds a plan from profile rows in hotness order.
    pub fn build(
        rows: impl IntoIterator<Item = Result<ProfileRow, ProfileError>>,
        summary: &Summary,
        settings: &PlanSettings,
    ) -> Result<Plan, ProfileError> {
        let budgets = settings.budgets;
        let mut rules: Vec<RulePlan> = settings
            .rules
            .iter()
            .map(|(name, quota)| RulePlan {
                name: name.clone(),
                keys: 0,
                est_bytes: 0,
                requests_covered: 0,
                requests_profiled: summary.rules.iter().find(|s| s.name == *name).map_or(0, |s| s.requests),
                quota: *quota,
                over_quota: 0,
            })
            .collect();
        let mut plan = Plan {
            keys: Vec::new(),
            rules: Vec::new(),
            budgets,
            limit: PlanLimit::ProfileExhausted,
            est_bytes: 0,
            requests_covered: 0,
            requests_profiled: summary.lines.matched,
            predicted_coverage: 0.0,
            rows_of_unknown_rules: 0,
        };
        let all_have_quotas = rules.iter().all(|r| r.quota.is_some());
        for row in rows {
            let row = row?;
            let Some(r) = rules.iter().position(|p| p.name == row.rule) else {
                plan.rows_of_unknown_rules += 1;
                continue;
            };
            if rules[r].quota.is_some_and(|q| rules[r].keys >= q) {
                rules[r].over_quota += 1;
                if all_have_quotas && rules.iter().all(|p| p.quota.is_some_and(|q| p.keys >= q)) {
                    plan.limit = PlanLimit::Quotas;
                    break;
                }
                continue;
            }
            if plan.keys.len() as u64 >= budgets.max_keys {
                plan.limit = PlanLimit::MaxKeys;
                break;
            }
            let est_bytes = row.mean_bytes.map_or(DEFAULT_VALUE_BYTES, |b| b.round().max(0.0) as u64);
            if budgets.max_bytes.is_some_and(|max| plan.est_bytes + est_bytes > max) {
                plan.limit = PlanLimit::MaxBytes;
                break;
            }
            let rp = &mut rules[r];
            rp.keys += 1;
            rp.est_bytes += est_bytes;
            rp.requests_covered += row.count;
            plan.est_bytes += est_bytes;
            plan.requests_covered += row.count;
            plan.keys.push(PlannedKey {
                rule: r,
                key: row.key,
                params: row.params,
                score: row.score,
                requests: row.count,
                est_bytes,
                cache_hits: row.cache_hits,
                cache_misses: row.cache_misses,
            });
        }
        plan.predicted_coverage = if plan.requests_profiled == 0 {
            0.0
        } else {
            plan.requests_covered as f64 / plan.requests_profiled as f64
        };
        plan.rules = rules;
        Ok(plan)
    }

    /// Why the plan holds no key, for a warning; `None` when it holds some. A warm of an
    /// empty plan succeeds and changes nothing, which is rarely what a deploy meant.
    pub fn why_empty(&self) -> Option<String> {
        if !self.keys.is_empty() {
            return None;
        }
        let of_configured_rules: u64 = self.rules.iter().map(|r| r.requests_profiled).sum();
        Some(if self.requests_profiled == 0 {
            "the profile holds no keys (its analysis counted no request)".to_string()
        } else if of_configured_rules == 0 {
            "no key of the profile belongs to a rule this config defines (renamed or removed since the analysis?)"
                .to_string()
        } else {
            "the budgets leave no key (warm.max_keys, warm.max_bytes and the rules' quotas)".to_string()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{LineCounts, RuleSummary, Window};

    /// Rules `a` and `b`, with `max_keys` and `max_bytes` budgets and an optional quota on `a`.
    fn config(max_keys: u64, max_bytes: Option<u64>, quota_a: Option<u64>) -> PlanSettings {
        PlanSettings {
            budgets: WarmBudgets { max_keys, max_bytes },
            rules: vec![("a".into(), quota_a), ("b".into(), None)],
        }
    }

    fn row(rule: &str, n: u64, bytes: Option<f64>) -> Result<ProfileRow, ProfileError> {
        Ok(ProfileRow {
            rule: rule.into(),
            key: format!("{rule}:{n}"),
            count: n,
            score: n as f64,
            first_seen_ms: None,
            last_seen_ms: None,
            mean_bytes: bytes,
            mean_latency_ms: None,
            max_latency_ms: None,
            cache_hits: 0,
            cache_misses: 0,
            params: "{}".into(),
        })
    }

    fn summary(matched: u64, per_rule: &[(&str, u64)]) -> Summary {
        Summary {
            inputs: vec![],
            window: Window { start: None, end: None },
            lines: LineCounts {
                read: matched,
                parsed: matched,
                rejected: 0,
                out_of_window: 0,
                unmatched: 0,
                status_filtered: 0,
                matched,
            },
            rejected_by_reason: Default::default(),
            samples: vec![],
            rules: per_rule
                .iter()
                .map(|(name, requests)| RuleSummary {
                    name: name.to_string(),
                    requests: *requests,
                    status_filtered: 0,
                    distinct_keys: 0,
                    distinct_keys_estimated: false,
                    count_error_bound: 0,
                    distinct_clients: 0,
                })
                .collect(),
            top_unmatched: vec![],
            distinct_clients: 0,
            config_fingerprint: String::new(),
            score_half_life: None,
            score_weight: "requests".into(),
            since: None,
            until: None,
            bytes_read: 0,
            elapsed_ms: 0,
        }
    }

    fn rows() -> Vec<Result<ProfileRow, ProfileError>> {
        vec![
            row("a", 50, Some(100.0)),
            row("b", 30, None),
            row("a", 10, Some(100.0)),
            row("x", 5, None),
            row("a", 4, Some(100.0)),
        ]
    }

    #[test]
    fn everything_fits() {
        let p = Plan::build(rows(), &summary(100, &[("a", 70), ("b", 30)]), &config(100_000, None, None))
            .expect("plan");
        assert_eq!(p.limit, PlanLimit::ProfileExhausted);
        assert_eq!(p.keys.len(), 4);
        assert_eq!(p.rows_of_unknown_rules, 1);
        assert_eq!(p.requests_covered, 94);
        assert!((p.predicted_coverage - 0.94).abs() < 1e-12);
        assert_eq!(p.est_bytes, 300 + DEFAULT_VALUE_BYTES);
        assert_eq!((p.rules[0].keys, p.rules[0].requests_covered, p.rules[0].requests_profiled), (3, 64, 70));
    }

    #[test]
    fn an_empty_plan_says_why() {
        let full = Plan::build(rows(), &summary(100, &[("a", 70), ("b", 30)]), &config(100_000, None, None))
            .expect("plan");
        assert_eq!(full.why_empty(), None);

        let no_keys = Plan::build(vec![], &summary(0, &[]), &config(100_000, None, None)).expect("plan");
        assert!(
            no_keys.why_empty().is_some_and(|w| w.contains("holds no keys")),
            "{:?}",
            no_keys.why_empty()
        );

        let renamed =
            Plan::build(vec![row("x", 5, None)], &summary(5, &[("x", 5)]), &config(100_000, None, None))
                .expect("plan");
        assert!(
            renamed.why_empty().is_some_and(|w| w.contains("rule this config defines")),
            "{:?}",
            renamed.why_empty()
        );

        let budget =
            Plan::build(rows(), &summary(100, &[("a", 70), ("b", 30)]), &config(100_000, Some(1), None));
        let budget = budget.expect("plan");
        assert!(budget.why_empty().is_some_and(|w| w.contains("budgets")), "{:?}", budget.why_empty());
    }

    #[test]
    fn key_budget_takes_the_hottest() {
        let p = Plan::build(rows(), &summary(100, &[]), &config(2, None, None)).expect("plan");
        assert_eq!(p.limit, PlanLimit::MaxKeys);
        let keys: Vec<&str> = p.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["a:50", "b:30"]);
    }

    #[test]
    fn byte_budget_stops_at_the_first_row_that_does_not_fit() {
        let p = Plan::build(rows(), &summary(100, &[]), &config(100_000, Some(1100), None)).expect("plan");
        assert_eq!(p.limit, PlanLimit::MaxBytes);
        assert_eq!(p.keys.len(), 1, "b:30 (1024 bytes assumed) does not fit beside a:50");
        assert!(p.est_bytes <= 1100);
    }

    #[test]
    fn quotas_pass_over_a_full_rule() {
        let p = Plan::build(rows(), &summary(100, &[]), &config(100_000, None, Some(2))).expect("plan");
        let keys: Vec<&str> = p.keys.iter().map(|k| k.key.as_str()).collect();
        assert_eq!(keys, ["a:50", "b:30", "a:10"]);
        assert_eq!(p.rules[0].over_quota, 1);
    }
}
