//! Configuration: `preheat.toml` read, validated and turned into runtime types.
//!
//! The raw file (`raw`, unknown fields rejected) is checked table by table (`analyze`,
//! `warm`, `sources`, `rules`) in one pass that reports every problem at once, each with its
//! line and column, and becomes a [`Config`]: the settings each stage takes, built here so
//! that no stage reads the config (see `docs/ARCHITECTURE.md`). Nothing here touches the
//! network or the logs.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::Spanned;

use crate::analyze::AnalyzeOptions;
use crate::analyze::trace::Reading;
use crate::backend::BackendSettings;
use crate::logformat::{DEFAULT_MAX_LINE, FormatSpec, LONGEST_MAX_LINE, LogSettings};
use crate::plan::PlanSettings;
use crate::rules::RuleSet;
use crate::source::SourceSettings;
use crate::warm::{RuleLoad, WarmJob, WarmSettings};

mod analyze;
mod overrides;
mod raw;
mod rules;
mod sources;
mod tolerant;
mod warm;

pub use analyze::AnalyzeConfig;
pub use overrides::Overrides;
pub use raw::on_existing_name;
use raw::{ConfigFile, StatusItem};

/// The configuration used when no file is given and `preheat.toml` does not exist: every GET
/// path is a key, so a first run shows which URLs are hot.
pub const DEFAULT_CONFIG: &str = r#"# Built-in defaults: one key per GET path.
[[rule]]
name = "home"
match = "GET /"
key = "url:/"

[[rule]]
name = "url"
match = "GET /{path:path}"
key = "url:/{path}"
"#;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path, or `built-in defaults`).
    pub origin: String,
    /// How logs are read: format (`auto` unless set), JSON field names, longest line.
    pub log: LogSettings,
    /// Analyzer settings.
    pub analyze: AnalyzeConfig,
    /// The rules.
    pub rules: RuleSet,
    /// Per-rule key quotas of the warm plan, by rule index (`None`: no quota).
    pub quotas: Vec<Option<u64>>,
    /// How each rule's values are loaded, by rule index (`None`: the rule has no source).
    pub loads: Vec<Option<RuleLoad>>,
    /// Value sources.
    pub sources: Vec<SourceSettings>,
    /// Warm settings and budgets.
    pub warm: WarmSettings,
    /// Where the cache is.
    pub backend: BackendSettings,
    /// Hash of everything that shapes a profile (rules, format), to tell profiles of different
    /// rule sets apart.
    pub fingerprint: String,
}

impl Config {
    /// The analyzer's options: this config's format, table sizes, scoring and fingerprint,
    /// over the whole log (the caller narrows the time range).
    pub fn analyze_options(&self) -> AnalyzeOptions {
        AnalyzeOptions {
            log: self.log.clone(),
            since_ms: None,
            until_ms: None,
            max_keys_per_rule: self.analyze.max_keys_per_rule.get(),
            top_unmatched: self.analyze.top_unmatched,
            score: self.analyze.score,
            config_fingerprint: self.fingerprint.clone(),
        }
    }

    /// How logs are read into requests of the rules (`report` and `verify` replay them).
    pub fn reading(&self) -> Reading<'_> {
        Reading { log: &self.log, rules: &self.rules }
    }

    /// What a plan may hold: the warm budgets and each rule's quota.
    pub fn plan_settings(&self) -> PlanSettings {
        PlanSettings {
            budgets: self.warm.budgets,
            rules: self
                .rules
                .rules()
                .iter()
                .map(|r| r.name.clone())
                .zip(self.quotas.iter().copied())
                .collect(),
        }
    }

    /// What a warm run is told besides the plan.
    pub fn warm_job(&self) -> WarmJob<'_> {
        WarmJob { settings: &self.warm, rules: &self.rules, loads: &self.loads }
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read config `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was read but is not valid; every problem found is listed.
    #[error("{}", render_problems(.origin, .problems))]
    Invalid {
        /// The file (or `built-in defaults`).
        origin: String,
        /// Every problem, in file order.
        problems: Vec<Problem>,
    },
    /// A setting given by flag or environment variable is not valid.
    #[error("{setting}: {message}")]
    Override {
        /// The flag and its variable, such as `--deadline / PREHEAT_DEADLINE`.
        setting: String,
        /// What is wrong.
        message: String,
    },
}

fn render_problems(origin: &str, problems: &[Problem]) -> String {
    let mut s = format!(
        "invalid config `{origin}` ({} problem{})",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        s.push_str(&format!("\n  {origin}:{}:{}: {}", p.line, p.column, p.message));
    }
    s
}

/// Turns byte offsets into 1-based line and column.
struct Positions<'a>(&'a str);

impl Positions<'_> {
    fn at(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.0.len());
        while !self.0.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &self.0[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

struct Problems<'a> {
    positions: Positions<'a>,
    list: Vec<(usize, String)>,
}

impl Problems<'_> {
    fn add(&mut self, offset: usize, message: impl fmt::Display) {
        self.list.push((offset, message.to_string()));
    }
    /// A problem inside a string value: `inner` is an offset within the string's text, which
    /// starts one byte after the opening quote.
    fn add_in<T>(&mut self, value: &Spanned<T>, inner: usize, message: impl fmt::Display) {
        self.add(value.span().start + 1 + inner, message);
    }
    /// What `parse` makes of a text setting that is present; when it refuses, the problem
    /// `{field}: {why}` at the value, and `None`.
    fn parsed<T>(
        &mut self,
        value: &Option<Spanned<String>>,
        field: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let value = value.as_ref()?;
        parse(value.get_ref()).map_err(|why| self.add(value.span().start, format!("{field}: {why}"))).ok()
    }
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// The built-in defaults.
    pub fn builtin() -> Config {
        Config::parse(DEFAULT_CONFIG, "built-in defaults").expect("the built-in config is valid")
    }

    /// Validates config text; `origin` names it in messages.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let mut problems = Problems { positions: Positions(text), list: Vec::new() };
        let (file, structural, removed) = tolerant::deserialize::<ConfigFile>(text);
        problems.list.extend(structural);
        let Some(file) = file else { return Err(problems.into_error(origin)) };
        let before = problems.list.len();
        let config = validate(file, origin, text, &mut problems);
        // An entry taken out for a wrong type is then missing; what the checks say of its
        // absence repeats the problem already reported.
        let mut semantic = problems.list.split_off(before);
        semantic.retain(|(offset, message)| {
            !removed.iter().any(|r| r.parent.contains(offset) && message.contains(r.key.as_str()))
        });
        problems.list.extend(semantic);
        if problems.list.is_empty() { Ok(config) } else { Err(problems.into_error(origin)) }
    }
}

impl Problems<'_> {
    fn into_error(mut self, origin: &str) -> ConfigError {
        self.list.sort_by_key(|(offset, _)| *offset);
        let problems = self
            .list
            .iter()
            .map(|(offset, message)| {
                let (line, column) = self.positions.at(*offset);
                Problem { line, column, message: message.clone() }
            })
            .collect();
        ConfigError::Invalid { origin: origin.to_string(), problems }
    }
}

fn validate(file: ConfigFile, origin: &str, text: &str, problems: &mut Problems) -> Config {
    let mut format = FormatSpec::Auto;
    if let Some(f) = &file.log.format {
        match FormatSpec::parse(f.get_ref()) {
            Ok(spec) => format = spec,
            Err(e) => problems.add(f.span().start, format!("log.format: {e}; use `combined`, `common`, `json`, `auto` an nginx `log_format` string or an Apache `LogFormat` string")),
        }
    }

    let analyze = analyze::analyze(&file.analyze, problems);
    let warm = warm::warm(&file.warm, problems);
    let backend = warm::backend(file.backend.as_ref(), problems);
    let sources = sources::sources(&file.sources, problems);
    let rules::Rules { rules, quotas, loads } = rules::rules(&file.rules, &sources, text.len(), problems);

    let max_line =
        problems.parsed(&file.log.max_line, "log.max_line", parse_max_line).unwrap_or(DEFAULT_MAX_LINE);
    let fingerprint = fingerprint(&file, &format);
    Config {
        origin: origin.to_string(),
        log: LogSettings { format, json: file.log.json.unwrap_or_default(), max_line },
        analyze,
        rules: RuleSet::new(rules),
        quotas,
        loads,
        sources,
        warm,
        backend,
        fingerprint,
    }
}

/// FNV-1a over the parts of the config that decide what a profile contains. Stable across
/// versions and platforms (unlike `std`'s hasher), which matters because it is stored.
/// The longest line accepted: a size such as `64KiB`, at most [`LONGEST_MAX_LINE`].
fn parse_max_line(text: &str) -> Result<usize, String> {
    match crate::units::parse_bytes(text).map(usize::try_from) {
        Some(Ok(n)) if (256..=LONGEST_MAX_LINE).contains(&n) => Ok(n),
        Some(_) => {
            Err(format!("`{text}` is outside 256B to 3MiB (the reader's chunks hold lines up to 3MiB)"))
        }
        None => Err(format!("`{text}` is not a size such as `64KiB` or `1MiB`")),
    }
}

fn fingerprint(file: &ConfigFile, format: &FormatSpec) -> String {
    let mut canon = format!("format={format}\n");
    for r in &file.rules {
        let status: Vec<String> = r.status.as_ref().map_or_else(Vec::new, |s| {
            s.get_ref()
                .iter()
                .map(|i| match i {
                    StatusItem::Code(c) => c.to_string(),
                    StatusItem::Text(t) => t.to_ascii_lowercase(),
                })
                .collect()
        });
        canon.push_str(&format!(
            "rule={}|{}|{}|{}|{}|{}\n",
            r.name.get_ref(),
            r.pattern.get_ref().trim(),
            r.key.get_ref(),
            r.host.as_ref().map_or("", |h| h.get_ref().as_str()),
            status.join(","),
            r.keep_query.join(",")
        ));
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canon.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use super::warm::parse_memory_limit;
    use super::*;
    use crate::analyze::Weight;
    use crate::backend::WriteMode;
    use crate::memory::MemoryLimit;
    use crate::plan::WarmBudgets;
    use crate::source::Fetch;

    /// The problems of an invalid config (panics when it is valid).
    pub(crate) fn problems(text: &str) -> Vec<Problem> {
        match Config::parse(text, "t.toml") {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn builtin_is_valid() {
        let c = Config::builtin();
        assert_eq!(c.rules.rules().len(), 2);
        assert_eq!(c.log.format, FormatSpec::Auto);
    }

    #[test]
    fn full_config() {
        let c = Config::parse(
            r#"
[log]
format = "combined"
[analyze]
max_keys_per_rule = 10
half_life = "6h"
weight = "latency"
[[rule]]
name = "product"
match = "GET /api/products/{id:int}"
key = "product:{id}"
status = [200, "3xx"]
keep_query = ["lang"]
"#,
            "t.toml",
        )
        .expect("valid");
        assert_eq!(c.analyze.max_keys_per_rule.get(), 10);
        assert_eq!(c.analyze.score.half_life, Some(Duration::from_secs(6 * 3600)));
        assert_eq!(c.analyze.score.weight, Weight::Latency);
        assert_eq!(c.rules.rules()[0].keep_query, vec!["lang".to_string()]);
        assert_eq!(c.fingerprint.len(), 16);
    }

    #[test]
    fn every_problem_with_line_and_column() {
        let p = problems(
            "[[rule]]\nname = \"a\"\nmatch = \"GET /p/{id:uuid}\"\nkey = \"p:{sku}\"\n\n[[rule]]\nname = \"a\"\nmatch = \"GET /x\"\nkey = \"x\"\nstatus = [\"2x\"]\n",
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!((p[0].line, p[0].column), (3, 17));
        assert!(p[0].message.contains("unknown capture type `uuid`"));
        assert_eq!(p[1].line, 7);
        assert!(p[1].message.contains("used twice"));
        assert_eq!(p[2].line, 10);
    }

    #[test]
    fn unknown_fields_and_syntax_errors() {
        let p = problems("[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k\"\nttl_typo = 3\n");
        assert_eq!(p[0].line, 5);
        assert!(p[0].message.contains("unknown field `ttl_typo`"), "{}", p[0].message);
        let p = problems("[log\n");
        assert_eq!(p[0].line, 1);
        let p = problems("");
        assert!(p[0].message.contains("no rules"));
    }

    #[test]
    fn template_offsets_point_inside_the_string() {
        let p = problems("[[rule]]\nname = \"a\"\nmatch = \"GET /p/{id}\"\nkey = \"p:{sku}\"\n");
        assert_eq!((p[0].line, p[0].column), (4, 10));
        let e =
            Config::parse("[[rule]]\nname = \"a\"\nmatch = \"GET /p/{id}\"\nkey = \"p:{sku}\"\n", "t.toml")
                .unwrap_err()
                .to_string();
        assert!(
            e.starts_with("invalid config `t.toml` (1 problem)\n  t.toml:4:10: rule `a`: key: `{sku}`"),
            "{e}"
        );
    }

    #[test]
    fn warm_budgets() {
        let c = Config::parse("[warm]\nmax_keys = 5\nmax_bytes = \"2MiB\"\n[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k\"\nquota = 3\n", "t")
            .expect("valid");
        assert_eq!(c.warm.budgets, WarmBudgets { max_keys: 5, max_bytes: Some(2 << 20) });
        assert_eq!(c.quotas, vec![Some(3)]);
        let p = problems(
            "[warm]\nmax_keys = 0\nmax_bytes = \"lots\"\n[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k\"\nquota = 0\n",
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!((p[1].line, p[1].column), (3, 13));
        assert!(p[1].message.contains("`lots` is not a size"));
    }

    const SHOP: &str = r#"
[warm]
deadline = "4m"
on_existing = "overwrite"
batch_size = 100

[backend]
url = "memory://"

[sources.shop]
url = "env:DATABASE_URL"
timeout = "2s"

[[rule]]
name = "product"
match = "GET /api/products/{id:int}"
key = "product:{id}"
source = "shop"
sql = "SELECT id, body FROM products WHERE id IN ($1)"
ttl = "10m"

[[rule]]
name = "page"
match = "GET /pages/{path:path}"
key = "page:{path}"
source = "shop"
sql = "SELECT path, html FROM pages WHERE path = ANY($1)"
ttl = "none"
ttl_jitter = 0.2
encoding = "text"
on_existing = "skip"
"#;

    #[test]
    fn warm_sources_and_loads() {
        let c = Config::parse(SHOP, "shop.toml").expect("valid");
        assert_eq!(c.warm.deadline, Duration::from_secs(240));
        assert_eq!(c.warm.on_existing, WriteMode::OverwriteKeepTtl);
        assert_eq!(c.warm.batch_size, 100);
        assert_eq!(c.sources.len(), 1);
        assert_eq!(c.sources[0].timeout, Duration::from_secs(2));
        let product = c.loads[0].as_ref().expect("has a source");
        assert_eq!((product.source, product.ttl), (0, Some(Duration::from_secs(600))));
        assert!(matches!(product.fetch, Fetch::Sql { param: 0, .. }));
        let page = c.loads[1].as_ref().expect("has a source");
        assert_eq!((page.ttl, page.ttl_jitter, page.on_existing), (None, 0.2, Some(WriteMode::IfAbsent)));
    }

    #[test]
    fn warm_problems_name_the_fix() {
        let bad = SHOP
            .replace("deadline = \"4m\"", "deadline = \"10m\"")
            .replace("source = \"shop\"\nsql = \"SELECT id", "source = \"shopp\"\nsql = \"SELECT id")
            .replace("ttl = \"10m\"", "")
            .replace("WHERE path = ANY($1)", "WHERE path = $1")
            .replace("url = \"memory://\"", "url = \"memcache://:pw@cache:11211\"")
            .replace("batch_size = 100", "batch_size = 100\nmax_memory = \"80%\"\nlock = \"maybe\"");
        let p = problems(&bad);
        let text: Vec<&str> = p.iter().map(|p| p.message.as_str()).collect();
        assert!(text.iter().any(|m| m.contains("longer than the 5m")), "{text:?}");
        assert!(
            text.iter().any(|m| m.contains("source `shopp` is not defined") && m.contains("`shop`")),
            "{text:?}"
        );
        assert!(text.iter().any(|m| m.contains("set `ttl`")), "{text:?}");
        assert!(text.iter().any(|m| m.contains("IN ($1)")), "{text:?}");
        assert!(
            text.iter().any(|m| m.contains("memcache://:***@cache:11211") && !m.contains("pw")),
            "{text:?}"
        );
        assert!(text.iter().any(|m| m.contains("at most 50%")), "{text:?}");
        assert!(text.iter().any(|m| m.contains("`maybe` is not `skip` or `wait`")), "{text:?}");
    }

    #[test]
    fn names_are_checked_by_their_enums_with_line_and_column() {
        let p = problems(
            "[analyze]\nweight = \"fast\"\n[warm]\nlock = \"maybe\"\nstale_profile = 3\n[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k\"\n",
        );
        let found: Vec<(usize, usize, &str)> =
            p.iter().map(|p| (p.line, p.column, p.message.as_str())).collect();
        assert_eq!(
            found,
            [
                (2, 10, "analyze.weight: `fast` is not one of `requests`, `latency`, `bytes`"),
                (4, 8, "warm.lock: `maybe` is not `skip` or `wait`"),
                (5, 17, "warm.stale_profile: expected a string (one of the names this field takes)"),
            ]
        );
        let c = Config::parse(
            "[analyze]\nweight = \"bytes\"\n[warm]\nlock = \"wait\"\nstale_profile = \"skip\"\n[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k\"\n",
            "t",
        )
        .expect("valid");
        assert_eq!(c.analyze.score.weight, Weight::Bytes);
        assert_eq!(
            (c.warm.lock, c.warm.stale_profile),
            (crate::warm::LockPolicy::Wait, crate::warm::StalePolicy::Skip)
        );
    }

    #[test]
    fn memory_limits() {
        assert_eq!(parse_memory_limit("30%"), Ok(MemoryLimit::Share(0.3)));
        assert_eq!(parse_memory_limit("512MiB"), Ok(MemoryLimit::Bytes(512 << 20)));
        assert!(parse_memory_limit("51%").is_err());
        assert!(parse_memory_limit("0%").is_err());
        assert!(parse_memory_limit("lots").is_err());
        assert_eq!(MemoryLimit::Share(0.3).bytes(1000), 300);
        assert_eq!(MemoryLimit::Bytes(900).bytes(1000), 500, "never more than half");
        assert_eq!(MemoryLimit::Bytes(100).bytes(1000), 100);
    }

    #[test]
    fn fingerprint_tracks_rules() {
        let a =
            Config::parse("[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k\"\n", "t").expect("valid");
        let b = Config::parse("# comment\n[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k\"\n", "t")
            .expect("valid");
        let c =
            Config::parse("[[rule]]\nname = \"a\"\nmatch = \"GET /\"\nkey = \"k2\"\n", "t").expect("valid");
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }
}
