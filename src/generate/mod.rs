//! Synthetic access logs with exact ground truth.
//!
//! Requests follow a Zipf distribution over each rule's keys, so a few keys are hot and most
//! are cold, as in production. The generator knows every request it writes, so it reports the
//! exact count per (rule, key) that a correct analyzer must find. Besides matched requests it
//! writes requests no rule matches, statuses rules do not cache, secret-looking query
//! parameters rules do not keep, and (on request) malformed lines. Output is deterministic for
//! a seed.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};
use std::time::Duration;

use crate::logformat::time::civil_from_days;
use crate::logformat::{FormatSpec, Preset, Record, Var};
use crate::rules::{CaptureKind, Outcome, Rule, RuleSet};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateOptions {
    /// Lines to write.
    pub lines: u64,
    /// Random seed; the same seed gives the same log.
    pub seed: u64,
    /// Zipf exponent (1.0 is typical web traffic; higher is more skewed).
    pub zipf: f64,
    /// Distinct keys per rule.
    pub keys_per_rule: u32,
    /// Output format (`Auto` means combined).
    pub format: FormatSpec,
    /// Time of the first request, Unix ms.
    pub start_ms: i64,
    /// Time span of the log.
    pub duration: Duration,
    /// Share of requests no rule matches.
    pub unmatched_share: f64,
    /// Share of requests answered with a status rules do not cache (404, 500).
    pub error_share: f64,
    /// Share of lines that are not log lines at all.
    pub malformed_share: f64,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            lines: 10_000,
            seed: 1,
            zipf: 1.0,
            keys_per_rule: 1000,
            format: FormatSpec::Combined,
            start_ms: 1_767_225_600_000, // 2026-01-01T00:00:00Z
            duration: Duration::from_secs(86_400),
            unmatched_share: 0.05,
            error_share: 0.02,
            malformed_share: 0.0,
        }
    }
}

/// Exact counts of what was written.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroundTruth {
    /// Requests per (rule, key) that a correct analyzer counts.
    pub counts: BTreeMap<(String, String), u64>,
    /// Lines written.
    pub lines: u64,
    /// Malformed lines written.
    pub malformed: u64,
    /// Requests no rule matches.
    pub unmatched: u64,
    /// Requests a rule matches but with a status it does not cache.
    pub status_filtered: u64,
}

impl GroundTruth {
    /// Rows sorted hottest first (count desc, then rule, then key).
    pub fn ranked(&self) -> Vec<(&str, &str, u64)> {
        let mut v: Vec<_> = self.counts.iter().map(|((r, k), n)| (r.as_str(), k.as_str(), *n)).collect();
        v.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(b.0)).then_with(|| a.1.cmp(b.1)));
        v
    }

    /// Writes `rule<TAB>key<TAB>count` lines, hottest first.
    pub fn write_tsv(&self, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "rule\tkey\tcount")?;
        for (r, k, n) in self.ranked() {
            writeln!(out, "{r}\t{k}\t{n}")?;
        }
        Ok(())
    }
}

/// A small, fast, seedable generator (SplitMix64); its output is fixed forever, unlike a
/// library RNG's, so a seed always names the same log.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// Draws ranks 1..=n with P(k) ∝ 1/k^s.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u32, s: f64) -> Self {
        let mut acc = 0.0;
        let mut cdf: Vec<f64> = (1..=n.max(1))
            .map(|k| {
                acc += 1.0 / f64::from(k).powf(s);
                acc
            })
            .collect();
        let total = acc;
        cdf.iter_mut().for_each(|c| *c /= total);
        Zipf { cdf }
    }
    fn sample(&self, rng: &mut Rng) -> u32 {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1) as u32 + 1
    }
}

/// How one rule's requests are made.
struct RulePlan<'r> {
    index: usize,
    rule: &'r Rule,
    zipf: Zipf,
    keys: u32,
    method: String,
    host: Option<String>,
}

const AGENTS: [&str; 4] = [
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "curl/8.5.0",
    "Mozilla/5.0 (compatible; \\\"quoted\\\" bot/2.1)",
];

/// The values of key number `id` of a rule: captures, then kept query parameters.
fn values_for(rule: &Rule, id: u32) -> Vec<String> {
    let mut v: Vec<String> = rule
        .pattern
        .capture_kinds()
        .iter()
        .enumerate()
        .map(|(j, kind)| match kind {
            CaptureKind::Int => (id + j as u32 * 7).to_string(),
            CaptureKind::Segment => format!("item-{id}-{j}"),
            CaptureKind::Path => format!("section{}/page-{id}.html", id % 10),
        })
        .collect();
    v.extend(rule.keep_query.iter().map(|q| format!("{q}{}", id % 5)));
    v
}

/// Writes a log to `out` and returns what a correct analysis must find.
pub fn generate(rules: &RuleSet, opts: &GenerateOptions, out: &mut dyn Write) -> io::Result<GroundTruth> {
    let mut rng = Rng(opts.seed);
    let w3c = opts.format == FormatSpec::Preset(Preset::W3c);
    let format = match &opts.format {
        FormatSpec::Auto => FormatSpec::Combined.compiled(),
        other => other.compiled(),
    }
    .transpose()
    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let logs_host = format.as_ref().is_none_or(|f| f.vars().any(|v| *v == Var::Host));
    let plans: Vec<RulePlan> = rules
        .rules()
        .iter()
        .enumerate()
        .filter(|(_, r)| r.host.is_none() || logs_host)
        .map(|(index, rule)| RulePlan {
            index,
            rule,
            zipf: Zipf::new(opts.keys_per_rule, opts.zipf),
            keys: opts.keys_per_rule.max(1),
            method: rule
                .pattern
                .methods()
                .and_then(|m| m.first())
                .map_or("GET".into(), |m| String::from_utf8_lossy(m).into_owned()),
            host: rule.host.as_ref().map(|h| h.example()),
        })
        .collect();
    let clients: Vec<String> = (0..2000u32)
        .map(|i| {
            if i % 10 == 0 {
                format!("2001:db8::{:x}", i)
            } else {
                format!("203.0.{}.{}", i / 250, i % 250 + 1)
            }
        })
        .collect();

    let mut truth = GroundTruth::default();
    let mut last_fetch: HashMap<String, i64> = HashMap::new();
    let mut line = Vec::with_capacity(512);
    let step = opts.duration.as_millis() as f64 / opts.lines.max(1) as f64;
    for i in 0..opts.lines {
        if w3c && (i == 0 || i == opts.lines / 2) {
            // IIS's columns first, then CloudFront's from the middle on: a log whose header
            // changes midway, as a server's does when its logging is reconfigured.
            let header: &[u8] = if i == 0 { W3C_IIS } else { W3C_CLOUDFRONT };
            let directives = header.iter().filter(|&&b| b == b'\n').count() as u64;
            truth.lines += directives;
            truth.malformed += directives;
            out.write_all(header)?;
        }
        truth.lines += 1;
        let t = opts.start_ms + (i as f64 * step) as i64;
        if rng.unit() < opts.malformed_share {
            truth.malformed += 1;
            let junk: &[u8] = match rng.below(3) {
                0 => b"this is not a log line",
                1 => b"203.0.113.1 - - [01/Jan/2026:00:00:00 +0000] \"GET /cut-off",
                _ => b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            };
            out.write_all(junk)?;
            out.write_all(b"\n")?;
            continue;
        }
        // Choose what this request is.
        let (path, query, key_id, plan) = if plans.is_empty() || rng.unit() < opts.unmatched_share {
            (format!("/static/asset-{}.css", rng.below(500)), None, None, None)
        } else {
            let plan = &plans[rng.below(plans.len() as u64) as usize];
            let rank = plan.zipf.sample(&mut rng);
            // Scatter ranks over ids so hot keys are not simply the small numbers.
            let id = ((u64::from(rank) * 2_654_435_761) % u64::from(plan.keys)) as u32 + 1;
            let values = values_for(plan.rule, id);
            let n_caps = plan.rule.pattern.captures().len();
            let path = plan.rule.pattern.render_path(&values[..n_caps]);
            let mut query: Vec<String> =
                plan.rule.keep_query.iter().zip(&values[n_caps..]).map(|(k, v)| format!("{k}={v}")).collect();
            if rng.unit() < 0.3 {
                // A parameter no rule keeps: it must never reach a profile.
                query.insert(0, format!("session_token=SECRET{:x}", rng.next_u64()));
            }
            let query = (!query.is_empty()).then(|| query.join("&"));
            (path, query, Some((id, values)), Some(plan))
        };
        let status: u16 = if rng.unit() < opts.error_share {
            if rng.below(2) == 0 { 404 } else { 500 }
        } else if rng.unit() < 0.1 {
            304
        } else {
            200
        };
        let method = plan.map_or("GET", |p| p.method.as_str());
        let host = plan.and_then(|p| p.host.clone()).unwrap_or_else(|| "shop.example".to_string());

        // Account for it exactly as the rules will see it.
        let record = Record {
            method: method.as_bytes().into(),
            path: path.as_bytes().into(),
            query: query.as_deref().map(|q| q.as_bytes().into()),
            host: Some(host.as_bytes().into()),
            status: Some(status),
            ..Record::default()
        };
        let mut key_for_cache = None;
        match rules.classify(&record, &mut Vec::new()) {
            Outcome::Matched(r) => {
                let key = match (&key_id, plan) {
                    (Some((_, values)), Some(p)) if p.index == r => {
                        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
                        p.rule.key.render_str(&refs)
                    }
                    // A request meant for no rule (or another) that an earlier rule catches.
                    _ => {
                        let mut vals = Vec::new();
                        rules.classify(&record, &mut vals);
                        let mut k = Vec::new();
                        match rules.rules()[r].key.render(&vals, &mut k) {
                            Ok(k) => k.to_string(),
                            Err(_) => continue,
                        }
                    }
                };
                *truth.counts.entry((rules.rules()[r].name.clone(), key.clone())).or_insert(0) += 1;
                key_for_cache = Some(key);
            }
            Outcome::StatusFiltered(_) => truth.status_filtered += 1,
            Outcome::Unmatched => truth.unmatched += 1,
        }
        let cache = match &key_for_cache {
            Some(k) => {
                let hit = last_fetch.get(k).is_some_and(|&prev| t - prev < 300_000);
                if !hit {
                    last_fetch.insert(k.clone(), t);
                }
                if hit { "HIT" } else { "MISS" }
            }
            None => "-",
        };
        let bytes = key_id.as_ref().map_or(1200, |(id, _)| 200 + (u64::from(*id) * 7919) % 20_000);
        let latency_ms = 1 + rng.below(250);
        let client = &clients[rng.below(clients.len() as u64) as usize];
        let agent = AGENTS[rng.below(AGENTS.len() as u64) as usize];
        let target = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path.clone(),
        };

        line.clear();
        let fields = Fields {
            client,
            t,
            method,
            target: &target,
            path: &path,
            query: query.as_deref(),
            status,
            bytes,
            latency_ms,
            cache,
            host: &host,
            agent,
        };
        match &format {
            Some(f) => f.render(&mut line, |var, out| fields.write_var(var, out)),
            None if w3c && i < opts.lines / 2 => fields.write_iis(&mut line),
            None if w3c => fields.write_cloudfront(&mut line),
            None => match &opts.format {
                FormatSpec::Preset(p @ (Preset::Caddy | Preset::Traefik | Preset::GcpLb)) => {
                    fields.write_json_preset(*p, &mut line)
                }
                _ => fields.write_json(&mut line),
            },
        }
        line.push(b'\n');
        out.write_all(&line)?;
    }
    Ok(truth)
}

struct Fields<'a> {
    client: &'a str,
    t: i64,
    method: &'a str,
    target: &'a str,
    path: &'a str,
    query: Option<&'a str>,
    status: u16,
    bytes: u64,
    latency_ms: u64,
    cache: &'a str,
    host: &'a str,
    agent: &'a str,
}

/// The directives of an IIS log, and the columns [`Fields::write_iis`] writes.
const W3C_IIS: &[u8] = b"#Software: Microsoft Internet Information Services 10.0\n#Version: 1.0\n#Date: 2026-01-01 00:00:00\n#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port c-ip cs(User-Agent) cs-host sc-status sc-bytes time-taken\n";
/// A CloudFront header, and the columns [`Fields::write_cloudfront`] writes, tab-separated.
const W3C_CLOUDFRONT: &[u8] = b"#Version: 1.0\n#Fields: date time x-edge-location sc-bytes c-ip cs-method cs(Host) cs-uri-stem sc-status cs(User-Agent) cs-uri-query x-edge-result-type x-host-header time-taken\n";

const MONTHS: [&str; 12] =
    ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

fn clf_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{d:02}/{}/{y}:{:02}:{:02}:{:02} +0000",
        MONTHS[mo as usize - 1],
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

impl Fields<'_> {
    fn write_var(&self, var: &Var, out: &mut Vec<u8>) {
        let text = match var {
            Var::RemoteAddr => self.client.to_string(),
            Var::TimeLocal => clf_time(self.t),
            Var::TimeIso8601 => {
                crate::timestamp::format_rfc3339(self.t - self.t % 1000).replace('Z', "+00:00")
            }
            Var::Msec => format!("{}.{:03}", self.t / 1000, self.t % 1000),
            Var::Request => format!("{} {} HTTP/1.1", self.method, self.target),
            Var::RequestMethod => self.method.to_string(),
            Var::RequestUri => self.target.to_string(),
            Var::Uri => self.path.to_string(),
            Var::Args => self.query.unwrap_or("-").to_string(),
            Var::QueryMark => self.query.map_or(String::new(), |q| format!("?{q}")),
            Var::Status => self.status.to_string(),
            Var::BodyBytesSent => self.bytes.to_string(),
            Var::BytesSent => (self.bytes + 250).to_string(),
            Var::RequestTime | Var::UpstreamResponseTime => {
                format!("{}.{:03}", self.latency_ms / 1000, self.latency_ms % 1000)
            }
            Var::UpstreamCacheStatus => self.cache.to_string(),
            Var::Host => self.host.to_string(),
            Var::LatencyMicros => (self.latency_ms * 1000).to_string(),
            Var::LatencyMillis => self.latency_ms.to_string(),
            Var::EpochMillis => self.t.to_string(),
            Var::EpochMicros => (self.t * 1000).to_string(),
            Var::ForwardedFor => format!("{}, 10.0.0.1", self.client),
            Var::ClientPort if self.client.contains(':') => {
                format!("[{}]:{}", self.client, 1024 + self.t % 60_000)
            }
            Var::ClientPort => format!("{}:{}", self.client, 1024 + self.t % 60_000),
            Var::HaproxyTimers => format!("0/0/1/{}/{}", self.latency_ms.saturating_sub(1), self.latency_ms),
            Var::HaproxyBytes => self.bytes.to_string(),
            // Fields of the presets that must look like their products' to be recognised.
            Var::Other(name) if name == "type" => "http".to_string(),
            Var::Other(name) if name == "haproxy_queues" => "0/0 ".to_string(),
            Var::Other(name) if name == "http_user_agent" => self.agent.to_string(),
            Var::Other(_) => "-".to_string(),
        };
        out.extend_from_slice(text.as_bytes());
    }

    /// `2026-01-01` and `10:00:01`, as W3C logs write the time (UTC).
    fn w3c_date_time(&self) -> (String, String) {
        let secs = self.t.div_euclid(1000);
        let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
        let sod = secs.rem_euclid(86_400);
        (
            format!("{y:04}-{mo:02}-{d:02}"),
            format!("{:02}:{:02}:{:02}", sod / 3600, sod % 3600 / 60, sod % 60),
        )
    }

    fn write_iis(&self, out: &mut Vec<u8>) {
        let (date, time) = self.w3c_date_time();
        let line = format!(
            "{date} {time} 10.0.0.5 {} {} {} 443 {} {} {} {} {} {}",
            self.method,
            self.path,
            self.query.unwrap_or("-"),
            self.client,
            self.agent.replace(' ', "+"),
            if self.host.is_empty() { "-" } else { self.host },
            self.status,
            self.bytes,
            self.latency_ms,
        );
        out.extend_from_slice(line.as_bytes());
    }

    fn write_cloudfront(&self, out: &mut Vec<u8>) {
        let (date, time) = self.w3c_date_time();
        let result = match self.cache {
            "HIT" => "Hit",
            "MISS" => "Miss",
            _ => "Error",
        };
        let fields = [
            date,
            time,
            "FRA2".into(),
            self.bytes.to_string(),
            self.client.to_string(),
            self.method.to_string(),
            "d111111abcdef8.cloudfront.net".into(),
            self.path.to_string(),
            self.status.to_string(),
            self.agent.replace(' ', "%20"),
            self.query.unwrap_or("-").to_string(),
            result.into(),
            if self.host.is_empty() { "-".into() } else { self.host.to_string() },
            format!("{}.{:03}", self.latency_ms / 1000, self.latency_ms % 1000),
        ];
        out.extend_from_slice(fields.join("\t").as_bytes());
    }

    /// A line of a JSON preset, in its product's shape.
    fn write_json_preset(&self, preset: Preset, out: &mut Vec<u8>) {
        let seconds = self.latency_ms as f64 / 1000.0;
        let iso = crate::timestamp::format_rfc3339(self.t);
        let v = match preset {
            Preset::Caddy => serde_json::json!({
                "level": "info",
                "ts": self.t as f64 / 1000.0,
                "logger": "http.log.access",
                "msg": "handled request",
                "request": {
                    "remote_ip": self.client,
                    "client_ip": self.client,
                    "proto": "HTTP/1.1",
                    "method": self.method,
                    "host": self.host,
                    "uri": self.target,
                    "headers": {"User-Agent": [self.agent]},
                },
                "bytes_read": 0,
                "duration": seconds,
                "size": self.bytes,
                "status": self.status,
            }),
            Preset::Traefik => serde_json::json!({
                "ClientHost": self.client,
                "DownstreamContentSize": self.bytes,
                "DownstreamStatus": self.status,
                "Duration": self.latency_ms * 1_000_000,
                "RequestHost": self.host,
                "RequestMethod": self.method,
                "RequestPath": self.target,
                "RequestProtocol": "HTTP/1.1",
                "StartUTC": iso,
                "level": "info",
                "msg": "",
                "time": iso,
            }),
            _ => serde_json::json!({
                "httpRequest": {
                    "requestMethod": self.method,
                    "requestUrl": format!("https://{}{}", if self.host.is_empty() { "lb.example" } else { self.host }, self.target),
                    "status": self.status,
                    "responseSize": self.bytes.to_string(),
                    "userAgent": self.agent,
                    "remoteIp": self.client,
                    "latency": format!("{seconds}s"),
                    "cacheLookup": true,
                    "cacheHit": self.cache == "HIT",
                },
                "jsonPayload": {"@type": "type.googleapis.com/google.cloud.loadbalancing.type.LoadBalancerLogEntry"},
                "timestamp": iso,
                "severity": "INFO",
            }),
        };
        out.extend_from_slice(v.to_string().as_bytes());
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        let v = serde_json::json!({
            "remote_addr": self.client,
            "time_local": clf_time(self.t),
            "request": format!("{} {} HTTP/1.1", self.method, self.target),
            "status": self.status.to_string(),
            "body_bytes_sent": self.bytes.to_string(),
            "request_time": format!("{}.{:03}", self.latency_ms / 1000, self.latency_ms % 1000),
            "upstream_cache_status": self.cache,
            "host": self.host,
            "http_user_agent": self.agent,
        });
        out.extend_from_slice(v.to_string().as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipf_is_skewed_and_deterministic() {
        let z = Zipf::new(100, 1.0);
        let mut rng = Rng(7);
        let mut counts = [0u32; 101];
        for _ in 0..10_000 {
            counts[z.sample(&mut rng) as usize] += 1;
        }
        assert!(counts[1] > counts[2] && counts[2] > counts[10] && counts[10] > counts[100]);
        // H(100) ≈ 5.19, so rank 1 gets about 19%.
        assert!((1700..2200).contains(&counts[1]), "{}", counts[1]);
        let mut a = Vec::new();
        let mut b = Vec::new();
        let rules = crate::rules::RuleSet::new(vec![
            Rule::new("url", "GET /{path:path}", "url:/{path}").expect("valid"),
        ]);
        let opts = GenerateOptions { lines: 200, ..Default::default() };
        let ta = generate(&rules, &opts, &mut a).expect("writes");
        let tb = generate(&rules, &opts, &mut b).expect("writes");
        assert_eq!(a, b);
        assert_eq!(ta, tb);
        assert_eq!(ta.lines, 200);
    }

    #[test]
    fn clf_time_format() {
        assert_eq!(clf_time(971_211_336_000), "10/Oct/2000:20:55:36 +0000");
    }
}
