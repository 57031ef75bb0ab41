//! The `[[rule]]` tables: each rule's match pattern, key template, filters and quota, and
//! (through [`super::sources`]) how its values are loaded.

use super::Problems;
use super::raw::{RuleFile, StatusItem};
use super::sources;
use crate::rules::{HostFilter, KeyTemplate, MatchPattern, Rule, StatusFilter, param_names};
use crate::source::SourceSettings;
use crate::warm::RuleLoad;

/// The checked rules, with each one's quota and load, in file order. `end` is the file's
/// length, where a missing rule is reported.
pub(super) struct Rules {
    pub(super) rules: Vec<Rule>,
    pub(super) quotas: Vec<Option<u64>>,
    pub(super) loads: Vec<Option<RuleLoad>>,
}

/// Checks the `[[rule]]` tables against the sources.
pub(super) fn rules(
    files: &[RuleFile],
    sources: &[SourceSettings],
    end: usize,
    problems: &mut Problems,
) -> Rules {
    if files.is_empty() {
        problems.add(end, "no rules: add a `[[rule]]` table with `name`, `match` and `key`");
    }
    let mut rules = Vec::new();
    let mut quotas = Vec::new();
    let mut loads = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for r in files {
        let name = r.name.get_ref().as_str();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            problems.add_in(
                &r.name,
                0,
                format!("rule name `{name}` must be non-empty letters, digits, `_` or `-`"),
            );
        } else if names.contains(&name) {
            problems.add_in(&r.name, 0, format!("rule name `{name}` is used twice"));
        }
        names.push(name);
        let pattern = match MatchPattern::parse(r.pattern.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.add_in(&r.pattern, e.offset, format!("rule `{name}`: match: {e}"));
                None
            }
        };
        for (i, q) in r.keep_query.iter().enumerate() {
            if q.is_empty() || r.keep_query[..i].contains(q) {
                problems.add(
                    r.key.span().start,
                    format!("rule `{name}`: keep_query has an empty or repeated name `{q}`"),
                );
            }
            if pattern.as_ref().is_some_and(|p| p.captures().contains(q)) {
                problems.add(
                    r.key.span().start,
                    format!("rule `{name}`: `{q}` is both a capture and a kept query parameter"),
                );
            }
        }
        let key = pattern.as_ref().and_then(|p| {
            KeyTemplate::parse(r.key.get_ref(), &param_names(p, &r.keep_query))
                .map_err(|e| problems.add_in(&r.key, e.offset, format!("rule `{name}`: key: {e}")))
                .ok()
        });
        let host = r.host.as_ref().and_then(|h| {
            HostFilter::parse(h.get_ref())
                .map_err(|e| problems.add_in(h, 0, format!("rule `{name}`: host: {e}")))
                .ok()
        });
        let status = match &r.status {
            None => Some(StatusFilter::default()),
            Some(s) => {
                let items: Vec<String> = s
                    .get_ref()
                    .iter()
                    .map(|i| match i {
                        StatusItem::Code(c) => c.to_string(),
                        StatusItem::Text(t) => t.clone(),
                    })
                    .collect();
                StatusFilter::parse(&items)
                    .map_err(|e| problems.add(s.span().start, format!("rule `{name}`: status: {e}")))
                    .ok()
            }
        };
        if let Some(q) = &r.quota
            && *q.get_ref() == 0
        {
            problems.add(
                q.span().start,
                format!("rule `{name}`: quota must be at least 1; remove the rule to warm none of its keys"),
            );
        }
        let load = pattern.as_ref().and_then(|p| sources::rule_load(r, name, p, sources, problems));
        if let (Some(pattern), Some(key), Some(status)) = (pattern, key, status) {
            quotas.push(r.quota.as_ref().map(|q| *q.get_ref()));
            loads.push(load);
            rules.push(Rule {
                name: name.to_string(),
                pattern,
                host,
                status,
                keep_query: r.keep_query.clone(),
                key,
            });
        }
    }
    Rules { rules, quotas, loads }
}
