//! Rules: what a request means for the cache.
//!
//! A [`Rule`] matches requests (method, path pattern, optional host, status filter) and turns
//! their captures and kept query parameters into a cache key. A [`RuleSet`] tries its rules in
//! order; the first whose method, path and host match decides. Query parameters a rule does not
//! keep are never looked at, so tokens in query strings cannot reach a key or a profile.

mod pattern;
mod template;

pub use pattern::{CaptureKind, MatchPattern, PatternError, method_word, same as same_bytes};
pub use template::{KeyTemplate, TemplateError, UnusableKey};

use crate::logformat::Record;

/// Which response statuses count as cacheable for a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFilter {
    ranges: Vec<(u16, u16)>,
}

impl Default for StatusFilter {
    /// 2xx and 304: responses a cache would hold or revalidate.
    fn default() -> Self {
        StatusFilter { ranges: vec![(200, 299), (304, 304)] }
    }
}

impl StatusFilter {
    /// Parses items such as `200`, `"304"` or `"2xx"`.
    pub fn parse(items: &[String]) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for item in items {
            let s = item.trim().to_ascii_lowercase();
            let range = match s.as_bytes() {
                [d @ b'1'..=b'5', b'x', b'x'] => {
                    let base = u16::from(d - b'0') * 100;
                    (base, base + 99)
                }
                [b'1'..=b'5', b'0'..=b'9', b'0'..=b'9'] => {
                    let n: u16 = s.parse().map_err(|_| format!("`{item}` is not a status"))?;
                    (n, n)
                }
                _ => {
                    return Err(format!(
                        "`{item}` is not a status: write a code such as `200` or a class such as `2xx`"
                    ));
                }
            };
            ranges.push(range);
        }
        if ranges.is_empty() {
            return Err("the status list is empty: leave it out to accept 2xx and 304".into());
        }
        Ok(StatusFilter { ranges })
    }

    /// Whether a status passes (a log without statuses passes every filter).
    pub fn accepts(&self, status: Option<u16>) -> bool {
        status.is_none_or(|s| self.ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s)))
    }
}

/// A host filter: an exact name or a `*.suffix` wildcard, compared without case and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFilter {
    name: String,
    wildcard: bool,
}

impl HostFilter {
    /// Parses `shop.example.com` or `*.example.com`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim().to_ascii_lowercase();
        let (name, wildcard) = match s.strip_prefix("*.") {
            Some(rest) => (format!(".{rest}"), true),
            None => (s, false),
        };
        if name.is_empty() || name.contains(['/', ' ', ':']) {
            return Err(format!("`{name}` is not a host name: write `shop.example.com` or `*.example.com`"));
        }
        Ok(HostFilter { name, wildcard })
    }

    /// A host name this filter accepts (for the log generator).
    pub fn example(&self) -> String {
        if self.wildcard { format!("www{}", self.name) } else { self.name.clone() }
    }

    fn accepts(&self, host: &[u8]) -> bool {
        let host = strip_port(host);
        if self.wildcard {
            host.len() > self.name.len()
                && host[host.len() - self.name.len()..].eq_ignore_ascii_case(self.name.as_bytes())
        } else {
            host.eq_ignore_ascii_case(self.name.as_bytes())
        }
    }
}

fn strip_port(host: &[u8]) -> &[u8] {
    if host.starts_with(b"[") {
        // [::1]:8080
        return match memchr::memchr(b']', host) {
            Some(end) => &host[1..end],
            None => host,
        };
    }
    match memchr::memrchr(b':', host) {
        Some(c) if memchr::memchr(b':', &host[..c]).is_none() => &host[..c],
        _ => host,
    }
}

/// One rule, validated.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name, used in profiles and reports.
    pub name: String,
    /// Method and path pattern.
    pub pattern: MatchPattern,
    /// Optional host filter.
    pub host: Option<HostFilter>,
    /// Status filter.
    pub status: StatusFilter,
    /// Query parameters kept as key inputs; all others are dropped.
    pub keep_query: Vec<String>,
    /// Key template over [`Rule::params`].
    pub key: KeyTemplate,
}

impl Rule {
    /// A rule with a match pattern and a key template, any host, the default statuses and no
    /// kept query parameters: what a `[[rule]]` table with only `name`, `match` and `key`
    /// gives, for library users who build rules in code.
    pub fn new(name: &str, pattern: &str, key: &str) -> Result<Rule, String> {
        let pattern = MatchPattern::parse(pattern).map_err(|e| format!("match: {e}"))?;
        let key = KeyTemplate::parse(key, &param_names(&pattern, &[])).map_err(|e| format!("key: {e}"))?;
        Ok(Rule {
            name: name.to_string(),
            pattern,
            host: None,
            status: StatusFilter::default(),
            keep_query: Vec::new(),
            key,
        })
    }

    /// Names of the values a key template may use: captures, then kept query parameters.
    pub fn params(&self) -> Vec<String> {
        param_names(&self.pattern, &self.keep_query)
    }

    /// The name of parameter `i` of [`Rule::params`], without building the list.
    pub fn param_name(&self, i: usize) -> Option<&str> {
        let captures = self.pattern.captures();
        captures.get(i).or_else(|| self.keep_query.get(i.checked_sub(captures.len())?)).map(String::as_str)
    }
}

/// Captures then kept query parameters: the names a key template may use.
pub fn param_names(pattern: &MatchPattern, keep_query: &[String]) -> Vec<String> {
    pattern.captures().iter().chain(keep_query).cloned().collect()
}

/// What the rules say about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Rule `n` matched; its values are in the capture buffer.
    Matched(usize),
    /// Rule `n` matched the request, but the status is not one it caches.
    StatusFiltered(usize),
    /// No rule matched.
    Unmatched,
}

/// Rules in the order they are tried.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
}

impl RuleSet {
    /// Wraps validated rules.
    pub fn new(rules: Vec<Rule>) -> Self {
        RuleSet { rules }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// Finds the rule for a request. On `Matched`, `values` holds the rule's parameter values
    /// (captures, then kept query parameters, `None` when absent).
    pub fn classify<'a>(&self, rec: &'a Record<'_>, values: &mut Vec<Option<&'a [u8]>>) -> Outcome {
        let method = pattern::method_word(&rec.method);
        let head = pattern::path_head(&rec.path);
        for (i, rule) in self.rules.iter().enumerate() {
            if !rule.pattern.starts_like(head) {
                continue;
            }
            values.clear();
            if !rule.pattern.method_matches(&rec.method, method) {
                continue;
            }
            if let Some(h) = &rule.host
                && !rec.host.as_deref().is_some_and(|host| h.accepts(host))
            {
                continue;
            }
            if !rule.pattern.path_matches(&rec.path, values) {
                continue;
            }
            if !rule.status.accepts(rec.status) {
                return Outcome::StatusFiltered(i);
            }
            for name in &rule.keep_query {
                values.push(rec.query.as_deref().and_then(|q| query_value(q, name.as_bytes())));
            }
            return Outcome::Matched(i);
        }
        Outcome::Unmatched
    }
}

/// The raw value of the first `name=value` pair in a query string.
pub fn query_value<'a>(query: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    query.split(|&c| c == b'&').find_map(|pair| {
        let (k, v) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn rule(name: &str, pattern: &str, key: &str, keep: &[&str]) -> Rule {
        let pattern = MatchPattern::parse(pattern).expect("valid pattern");
        let keep_query: Vec<String> = keep.iter().map(|s| s.to_string()).collect();
        let key = KeyTemplate::parse(key, &param_names(&pattern, &keep_query)).expect("valid key");
        Rule { name: name.into(), pattern, host: None, status: StatusFilter::default(), keep_query, key }
    }

    fn req<'a>(method: &'a str, path: &'a str, query: Option<&'a str>, status: u16) -> Record<'a> {
        Record {
            method: Cow::Borrowed(method.as_bytes()),
            path: Cow::Borrowed(path.as_bytes()),
            query: query.map(|q| Cow::Borrowed(q.as_bytes())),
            status: Some(status),
            ..Record::default()
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let set = RuleSet::new(vec![
            rule("search", "GET /search", "search:{q}:{page}", &["q", "page"]),
            rule("product", "GET /p/{id:int}", "product:{id}", &[]),
            rule("page", "GET /{path:path}", "page:{path}", &[]),
        ]);
        let mut v = Vec::new();
        let r = req("GET", "/search", Some("token=secret&q=shoes&page=2"), 200);
        assert_eq!(set.classify(&r, &mut v), Outcome::Matched(0));
        let mut key = Vec::new();
        assert_eq!(set.rules()[0].key.render(&v, &mut key), Ok("search:shoes:2"));
        assert_eq!(v, [Some(&b"shoes"[..]), Some(&b"2"[..])], "only kept parameters are read");

        let r = req("GET", "/p/7", None, 304);
        assert_eq!(set.classify(&r, &mut v), Outcome::Matched(1));
        let r = req("GET", "/p/7", None, 404);
        assert_eq!(set.classify(&r, &mut v), Outcome::StatusFiltered(1));
        let r = req("POST", "/p/7", None, 200);
        assert_eq!(set.classify(&r, &mut v), Outcome::Unmatched);
        let r = req("GET", "/p/x", None, 200);
        assert_eq!(set.classify(&r, &mut v), Outcome::Matched(2));
    }

    #[test]
    fn host_filters() {
        let mut r1 = rule("a", "GET /", "home", &[]);
        r1.host = Some(HostFilter::parse("*.Example.com").expect("valid"));
        let set = RuleSet::new(vec![r1]);
        let mut r = req("GET", "/", None, 200);
        assert_eq!(set.classify(&r, &mut Vec::new()), Outcome::Unmatched);
        r.host = Some(Cow::Borrowed(b"shop.example.com:443"));
        assert_eq!(set.classify(&r, &mut Vec::new()), Outcome::Matched(0));
        r.host = Some(Cow::Borrowed(b"example.com"));
        assert_eq!(set.classify(&r, &mut Vec::new()), Outcome::Unmatched);
        assert_eq!(strip_port(b"[::1]:80"), b"::1");
        assert_eq!(strip_port(b"::1"), b"::1");
        // An absolute-form target, as a proxy logs it, names the host the filter reads.
        let combined = crate::logformat::LogFormat::from_spec(
            &crate::logformat::FormatSpec::Combined,
            &crate::logformat::JsonFields::default(),
        )
        .expect("built in");
        let proxied = br#"10.0.0.1 - - [01/Jan/2026:00:00:00 +0000] "GET http://Shop.Example.com:8080/ HTTP/1.1" 200 1 "-" "-""#;
        let r = combined.parse_line(proxied).expect("parses");
        assert_eq!(set.classify(&r, &mut Vec::new()), Outcome::Matched(0));
    }

    #[test]
    fn status_filters() {
        let f = StatusFilter::parse(&["2xx".into(), "404".into()]).expect("valid");
        assert!(f.accepts(Some(204)) && f.accepts(Some(404)) && !f.accepts(Some(304)));
        assert!(f.accepts(None));
        assert!(StatusFilter::parse(&["20x".into()]).is_err());
        assert!(StatusFilter::parse(&[]).is_err());
    }

    #[test]
    fn query_values() {
        assert_eq!(query_value(b"a=1&b=2&a=3", b"a"), Some(&b"1"[..]));
        assert_eq!(query_value(b"flag&b=2", b"flag"), Some(&b""[..]));
        assert_eq!(query_value(b"ab=1", b"a"), None);
    }
}
