//! Configuration: `preheat.toml` read, validated and turned into runtime types.
//!
//! Raw serde structs ([`ConfigFile`] and friends, unknown fields rejected) are checked in one
//! pass that reports every problem at once, each with its line and column, then become a
//! [`Config`]. Nothing here touches the network or the logs.

use std::fmt;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::backend::WriteMode;
use crate::logformat::{FormatSpec, JsonFields};
use crate::rules::{HostFilter, KeyTemplate, MatchPattern, Rule, RuleSet, StatusFilter, param_names};
use crate::source::Fetch;
pub use crate::source::SourceSettings;

mod overrides;
mod sources;
mod tolerant;

pub use overrides::Overrides;

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

/// How a profile entry's score weighs its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Weight {
    /// Score = (decayed) request count.
    Requests,
    /// Score = request count × mean latency in ms: the backend time a warm entry saves.
    Latency,
    /// Score = request count × mean response KiB: the bytes a warm entry saves recomputing.
    Bytes,
}

/// How hotness is scored (see the README's "Score").
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ScoreConfig {
    /// Requests lose half their weight per this age, measured back from the newest request of
    /// the log window; `None` weighs every request alike.
    #[serde(with = "opt_duration")]
    pub half_life: Option<Duration>,
    /// Miss-cost weight.
    pub weight: Weight,
}

/// Durations as humantime text (`4m`), the way the config file writes them.
pub mod duration_text {
    use std::time::Duration;

    /// `4m`
    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

mod opt_duration {
    use std::time::Duration;
    pub fn serialize<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&humantime::format_duration(*d).to_string()),
            None => s.serialize_none(),
        }
    }
}

/// Settings of `preheat analyze`.
#[derive(Debug, Clone, PartialEq)]
pub struct AnalyzeConfig {
    /// Distinct keys counted exactly per rule; past this the rule switches to a bounded
    /// heavy-hitter summary whose error bound is recorded in the profile.
    pub max_keys_per_rule: NonZeroUsize,
    /// How many unmatched paths to report.
    pub top_unmatched: usize,
    /// Scoring.
    pub score: ScoreConfig,
}

impl Default for AnalyzeConfig {
    fn default() -> Self {
        AnalyzeConfig {
            max_keys_per_rule: NonZeroUsize::new(500_000).expect("non-zero"),
            top_unmatched: 20,
            score: ScoreConfig { half_life: None, weight: Weight::Requests },
        }
    }
}

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

/// How and when `preheat warm` runs (`[warm]` and `[backend]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct WarmSettings {
    /// `false` makes `preheat warm` log that it was skipped and exit 0.
    pub enabled: bool,
    /// Hard end of the run; at most 5 minutes.
    #[serde(with = "duration_text")]
    pub deadline: Duration,
    /// What to do with keys that already exist (a rule may override it).
    pub on_existing: WriteMode,
    /// Keys per source query and per backend write.
    pub batch_size: usize,
    /// Batches in flight at once (bounds concurrent queries on each source); with
    /// `adaptive_concurrency` the ceiling each source's limit grows towards.
    pub concurrency: usize,
    /// Whether each source's batches in flight start at one and follow its latency (AIMD),
    /// rather than staying at `concurrency`.
    pub adaptive_concurrency: bool,
    /// Plan budgets.
    pub budgets: WarmBudgets,
    /// Backend URL as configured: `redis://...`, `memory://`, or `env:`/`file:` holding one.
    /// Never shown as is (it may hold a password).
    #[serde(skip)]
    pub backend_url: String,
    /// CA certificates (PEM file) that a `rediss://` backend's certificate must chain to,
    /// instead of the system's roots.
    pub backend_ca_file: Option<std::path::PathBuf>,
    /// Memory the run may use.
    pub max_memory: MemoryLimit,
    /// What a run does when another holds the lock.
    pub lock: LockPolicy,
    /// The key of the lock that keeps two runs from warming the same cache at once.
    pub lock_key: String,
    /// A profile whose log window ended longer ago than this is stale (`None`: never).
    #[serde(with = "opt_duration")]
    pub max_profile_age: Option<Duration>,
    /// What a warm does with a stale profile, or one made with other rules.
    pub stale_profile: StalePolicy,
    /// Whether written values are checked against a second read of their source (a rule may
    /// override it).
    pub invalidations: Invalidations,
    /// The share of each cache node's memory limit (`maxmemory`) the warm may fill up to:
    /// no batch starts that would take a node past it, so warming never makes the cache evict.
    pub cache_headroom: f64,
    /// When the warm is good enough for traffic (`warm.ready_at`); `None`: when it ends.
    pub ready_at: Option<ReadyAt>,
    /// Whether a warm that ends (deadline, failure) before `ready_at` still declares ready:
    /// deploys must not hang on a warm.
    pub ready_anyway: bool,
}

/// `warm.ready_at`: when the warm set is good enough for traffic.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyAt {
    /// When the warmed keys cover this share of the plan's predicted coverage (`"80%"`).
    Coverage(f64),
    /// When this many keys are warmed (at most the plan's).
    Keys(u64),
}

/// `invalidations`: how a warm avoids writing back a value the application changed (and
/// invalidated) while the warm was loading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Invalidations {
    /// After a batch is written, read its keys from the source again; a key whose value
    /// changed in between is taken back (deleted while it still holds the warm's value).
    Verify,
    /// No second read (for sources whose answers differ on every read, or caches nothing
    /// else writes to during a warm).
    Off,
}

/// What `preheat warm` does with a stale profile (`warm.stale_profile`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StalePolicy {
    /// Warn and warm from it anyway.
    Warn,
    /// Warn and warm nothing (status `stale`).
    Skip,
}

/// The warm's memory budget (`warm.max_memory`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MemoryLimit {
    /// A share of the available memory, at most [`MAX_MEMORY_SHARE`].
    Share(f64),
    /// Bytes; at run time never more than [`MAX_MEMORY_SHARE`] of the available memory.
    Bytes(u64),
}

/// The largest share of the available memory a warm may use.
pub const MAX_MEMORY_SHARE: f64 = 0.5;

impl MemoryLimit {
    /// The budget in bytes, given the available memory.
    pub fn bytes(self, available: u64) -> u64 {
        let ceiling = (available as f64 * MAX_MEMORY_SHARE) as u64;
        match self {
            MemoryLimit::Share(s) => (available as f64 * s) as u64,
            MemoryLimit::Bytes(b) => b.min(ceiling),
        }
    }
}

/// What `preheat warm` does when another run holds the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockPolicy {
    /// End at once, reporting `locked` (exit 0): the other run is doing the work.
    Skip,
    /// Wait for the other run to finish, within this run's deadline, then warm.
    Wait,
}

/// The hard ceiling of `warm.deadline`.
pub const MAX_DEADLINE: Duration = Duration::from_secs(300);

impl Default for WarmSettings {
    fn default() -> Self {
        WarmSettings {
            enabled: true,
            deadline: MAX_DEADLINE,
            on_existing: WriteMode::IfAbsent,
            batch_size: 500,
            concurrency: 4,
            adaptive_concurrency: true,
            budgets: WarmBudgets::default(),
            backend_url: "memory://".into(),
            backend_ca_file: None,
            max_memory: MemoryLimit::Share(MAX_MEMORY_SHARE),
            lock: LockPolicy::Skip,
            lock_key: "preheat:lock".into(),
            max_profile_age: None,
            stale_profile: StalePolicy::Warn,
            invalidations: Invalidations::Verify,
            cache_headroom: DEFAULT_CACHE_HEADROOM,
            ready_at: None,
            ready_anyway: true,
        }
    }
}

/// `warm.cache_headroom` unless set: stop before a node's used memory would pass 90% of its
/// limit.
pub const DEFAULT_CACHE_HEADROOM: f64 = 0.9;

/// `90%`: the share of a cache node's memory limit a warm may fill up to.
fn parse_cache_headroom(text: &str) -> Result<f64, String> {
    match text.trim().strip_suffix('%').map(|p| p.trim().parse::<f64>()) {
        Some(Ok(p)) if p > 0.0 && p <= 100.0 => Ok(p / 100.0),
        _ => Err(format!(
            "`{text}` is not a share of the cache's memory limit such as `90%` (more than 0%, at most 100%)"
        )),
    }
}

/// How a rule's values are loaded and written.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleLoad {
    /// Index into [`Config::sources`].
    pub source: usize,
    /// How the source is asked for one key.
    pub fetch: Fetch,
    /// Time to live of warmed keys; `None` when the rule says `ttl = "none"`, and for
    /// sources whose entries bring their own (peer copies) or write nothing (replays).
    pub ttl: Option<Duration>,
    /// Random spread of the TTL, as a fraction (0.1 = ±10%).
    pub ttl_jitter: f64,
    /// Overrides `warm.on_existing` for this rule.
    pub on_existing: Option<WriteMode>,
    /// Overrides `warm.invalidations` for this rule.
    pub invalidations: Option<Invalidations>,
}

/// A size such as `512MiB`, `2GB` or `1048576` in bytes.
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        _ => return None,
    };
    let bytes = number * scale as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

const INVALIDATIONS_HELP: &str = "invalidations must be `verify` (read each written key's value again and take back those that changed) or `off`";

fn parse_invalidations(text: &str) -> Option<Invalidations> {
    match text {
        "verify" => Some(Invalidations::Verify),
        "off" => Some(Invalidations::Off),
        _ => None,
    }
}

/// A warm deadline: more than zero, at most [`MAX_DEADLINE`].
fn parse_deadline(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(v) if v > MAX_DEADLINE => Err(format!("`{text}` is longer than the 5m a warm may take")),
        Ok(v) if v.is_zero() => Err("must be longer than zero".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("`{text}` is not a duration such as `4m`")),
    }
}

/// A profile age such as `36h` or `7d`.
fn parse_age(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(v) if !v.is_zero() => Ok(v),
        _ => Err(format!("`{text}` is not a duration such as `36h` or `7d`")),
    }
}

/// `30%` (a share of the available memory, at most 50%) or a size such as `2GiB`.
fn parse_memory_limit(text: &str) -> Result<MemoryLimit, String> {
    if let Some(percent) = text.trim().strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= MAX_MEMORY_SHARE * 100.0 => Ok(MemoryLimit::Share(p / 100.0)),
            Ok(_) => Err("must be more than 0% and at most 50% of the available memory".into()),
            Err(_) => Err("is not a share such as `30%`".into()),
        };
    }
    match parse_bytes(text) {
        Some(b) if b > 0 => Ok(MemoryLimit::Bytes(b)),
        _ => Err("is not a share such as `30%` or a size such as `2GiB`".into()),
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path, or `built-in defaults`).
    pub origin: String,
    /// Log format (`auto` unless set).
    pub format: FormatSpec,
    /// JSON field names.
    pub json_fields: JsonFields,
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
    /// Hash of everything that shapes a profile (rules, format), to tell profiles of different
    /// rule sets apart.
    pub fingerprint: String,
}

/// The raw file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default)]
    log: LogFile,
    #[serde(default)]
    analyze: AnalyzeFile,
    #[serde(default)]
    warm: WarmFile,
    backend: Option<BackendFile>,
    #[serde(default)]
    sources: std::collections::BTreeMap<String, sources::SourceFile>,
    #[serde(default, rename = "rule")]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmFile {
    enabled: Option<bool>,
    deadline: Option<Spanned<String>>,
    on_existing: Option<Spanned<String>>,
    batch_size: Option<Spanned<u64>>,
    concurrency: Option<Spanned<u64>>,
    max_keys: Option<Spanned<u64>>,
    max_bytes: Option<Spanned<String>>,
    max_memory: Option<Spanned<String>>,
    lock: Option<Spanned<String>>,
    lock_key: Option<Spanned<String>>,
    max_profile_age: Option<Spanned<String>>,
    stale_profile: Option<Spanned<String>>,
    invalidations: Option<Spanned<String>>,
    cache_headroom: Option<Spanned<String>>,
    ready_at: Option<Spanned<ReadyAtFile>>,
    ready_anyway: Option<bool>,
    adaptive_concurrency: Option<bool>,
}

/// `ready_at = "80%"` or `ready_at = 5000`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ReadyAtFile {
    Keys(u64),
    Share(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendFile {
    url: Spanned<String>,
    ca_file: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LogFile {
    format: Option<Spanned<String>>,
    json: Option<JsonFields>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalyzeFile {
    max_keys_per_rule: Option<Spanned<u64>>,
    top_unmatched: Option<usize>,
    half_life: Option<Spanned<String>>,
    weight: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    name: Spanned<String>,
    #[serde(rename = "match")]
    pattern: Spanned<String>,
    key: Spanned<String>,
    host: Option<Spanned<String>>,
    status: Option<Spanned<Vec<StatusItem>>>,
    #[serde(default)]
    keep_query: Vec<String>,
    quota: Option<Spanned<u64>>,
    source: Option<Spanned<String>>,
    sql: Option<Spanned<String>>,
    ttl: Option<Spanned<String>>,
    ttl_jitter: Option<Spanned<f64>>,
    param: Option<Spanned<String>>,
    encoding: Option<Spanned<String>>,
    on_existing: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    args: Option<Spanned<Vec<String>>>,
    invalidations: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StatusItem {
    Code(u16),
    Text(String),
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
            Err(e) => problems.add(f.span().start, format!("log.format: {e}; use `combined`, `common`, `json`, `auto` or an nginx `log_format` string")),
        }
    }

    let mut analyze = AnalyzeConfig::default();
    if let Some(n) = &file.analyze.max_keys_per_rule {
        match usize::try_from(*n.get_ref()).ok().and_then(NonZeroUsize::new) {
            Some(n) => analyze.max_keys_per_rule = n,
            None => problems.add(n.span().start, "analyze.max_keys_per_rule must be at least 1"),
        }
    }
    if let Some(n) = file.analyze.top_unmatched {
        analyze.top_unmatched = n;
    }
    if let Some(h) = &file.analyze.half_life {
        match humantime::parse_duration(h.get_ref()) {
            Ok(d) if !d.is_zero() => analyze.score.half_life = Some(d),
            _ => problems.add(
                h.span().start,
                format!("analyze.half_life: `{}` is not a duration such as `6h` or `30m`", h.get_ref()),
            ),
        }
    }
    if let Some(w) = &file.analyze.weight {
        analyze.score.weight = match w.get_ref().as_str() {
            "requests" => Weight::Requests,
            "latency" => Weight::Latency,
            "bytes" => Weight::Bytes,
            other => {
                problems.add(
                    w.span().start,
                    format!("analyze.weight: `{other}` is not one of `requests`, `latency`, `bytes`"),
                );
                Weight::Requests
            }
        };
    }

    let mut warm = WarmSettings::default();
    let w = &file.warm;
    if let Some(enabled) = w.enabled {
        warm.enabled = enabled;
    }
    if let Some(d) = &w.deadline {
        match parse_deadline(d.get_ref()) {
            Ok(v) => warm.deadline = v,
            Err(why) => problems.add(d.span().start, format!("warm.deadline: {why}")),
        }
    }
    if let Some(a) = &w.max_profile_age {
        match parse_age(a.get_ref()) {
            Ok(v) => warm.max_profile_age = Some(v),
            Err(why) => problems.add(a.span().start, format!("warm.max_profile_age: {why}")),
        }
    }
    if let Some(i) = &w.invalidations {
        match parse_invalidations(i.get_ref()) {
            Some(v) => warm.invalidations = v,
            None => problems.add(i.span().start, format!("warm.{INVALIDATIONS_HELP}")),
        }
    }
    if let Some(p) = &w.stale_profile {
        match p.get_ref().as_str() {
            "warn" => warm.stale_profile = StalePolicy::Warn,
            "skip" => warm.stale_profile = StalePolicy::Skip,
            other => {
                problems.add(p.span().start, format!("warm.stale_profile: `{other}` is not `warn` or `skip`"))
            }
        }
    }
    if let Some(m) = &w.on_existing {
        match parse_on_existing(m.get_ref()) {
            Some(mode) => warm.on_existing = mode,
            None => problems.add(m.span().start, ON_EXISTING_HELP),
        }
    }
    for (field, value, target) in [
        ("batch_size", &w.batch_size, &mut warm.batch_size),
        ("concurrency", &w.concurrency, &mut warm.concurrency),
    ] {
        if let Some(n) = value {
            match usize::try_from(*n.get_ref()) {
                Ok(v) if v > 0 => *target = v,
                _ => problems.add(n.span().start, format!("warm.{field} must be at least 1")),
            }
        }
    }
    if let Some(b) = &file.backend {
        let url = b.url.get_ref();
        let known = ["memory:", "redis:", "rediss:", "redis+cluster:", "rediss+cluster:", "env:", "file:"];
        if known.iter().any(|k| url.starts_with(k)) {
            warm.backend_url = url.clone();
        } else {
            problems.add_in(
                &b.url,
                0,
                format!(
                    "backend.url: `{}` is not a `redis://`, `rediss://`, `redis+cluster://host:port,...` or `memory://` URL, nor `env:NAME` or `file:PATH`",
                    crate::secret::redact_url(url)
                ),
            );
        }
    }
    if let Some(ca) = file.backend.as_ref().and_then(|b| b.ca_file.as_ref()) {
        let path = std::path::PathBuf::from(ca.get_ref());
        if path.is_file() {
            warm.backend_ca_file = Some(path);
        } else {
            problems.add(
                ca.span().start,
                format!("backend.ca_file: `{}` is not a readable file (a PEM CA certificate)", ca.get_ref()),
            );
        }
    }
    if let Some(r) = &w.ready_at {
        match r.get_ref() {
            ReadyAtFile::Keys(0) => problems.add(r.span().start, "warm.ready_at: a key count must be at least 1"),
            ReadyAtFile::Keys(n) => warm.ready_at = Some(ReadyAt::Keys(*n)),
            ReadyAtFile::Share(text) => match text.trim().strip_suffix('%').map(|p| p.trim().parse::<f64>()) {
                Some(Ok(p)) if p > 0.0 && p <= 100.0 => warm.ready_at = Some(ReadyAt::Coverage(p / 100.0)),
                _ => problems.add(
                    r.span().start,
                    format!("warm.ready_at: `{text}` is neither a share of the predicted coverage such as `80%` nor a number of keys"),
                ),
            },
        }
    }
    if let Some(anyway) = w.ready_anyway {
        warm.ready_anyway = anyway;
    }
    if let Some(adaptive) = w.adaptive_concurrency {
        warm.adaptive_concurrency = adaptive;
    }
    if let Some(h) = &w.cache_headroom {
        match parse_cache_headroom(h.get_ref()) {
            Ok(share) => warm.cache_headroom = share,
            Err(why) => problems.add(h.span().start, format!("warm.cache_headroom: {why}")),
        }
    }
    if let Some(m) = &w.max_memory {
        match parse_memory_limit(m.get_ref()) {
            Ok(limit) => warm.max_memory = limit,
            Err(why) => problems.add(m.span().start, format!("warm.max_memory: `{}` {why}", m.get_ref())),
        }
    }
    if let Some(l) = &w.lock {
        match l.get_ref().as_str() {
            "skip" => warm.lock = LockPolicy::Skip,
            "wait" => warm.lock = LockPolicy::Wait,
            other => problems.add(l.span().start, format!("warm.lock: `{other}` is not `skip` or `wait`")),
        }
    }
    if let Some(k) = &w.lock_key {
        match crate::warm::validate_key(k.get_ref()) {
            Ok(()) => warm.lock_key = k.get_ref().clone(),
            Err(why) => problems.add(k.span().start, format!("warm.lock_key is not a valid key: {why}")),
        }
    }
    if let Some(n) = &w.max_keys {
        if *n.get_ref() == 0 {
            problems.add(n.span().start, "warm.max_keys must be at least 1");
        }
        warm.budgets.max_keys = *n.get_ref();
    }
    if let Some(b) = &w.max_bytes {
        match parse_bytes(b.get_ref()) {
            Some(n) if n > 0 => warm.budgets.max_bytes = Some(n),
            _ => problems.add(
                b.span().start,
                format!("warm.max_bytes: `{}` is not a size such as `512MiB` or `2GB`", b.get_ref()),
            ),
        }
    }

    let sources = sources::sources(&file.sources, problems);

    if file.rules.is_empty() {
        problems.add(text.len(), "no rules: add a `[[rule]]` table with `name`, `match` and `key`");
    }
    let mut rules = Vec::new();
    let mut quotas = Vec::new();
    let mut loads = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for r in &file.rules {
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
        let load = pattern.as_ref().and_then(|p| sources::rule_load(r, name, p, &sources, problems));
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

    let fingerprint = fingerprint(&file, &format);
    Config {
        origin: origin.to_string(),
        format,
        json_fields: file.log.json.unwrap_or_default(),
        analyze,
        rules: RuleSet::new(rules),
        quotas,
        loads,
        sources,
        warm,
        fingerprint,
    }
}

const ON_EXISTING_HELP: &str = "on_existing must be `skip` (leave existing keys and their TTL), `overwrite` (replace the value, keep the remaining TTL) or `overwrite_and_reset_ttl`";

fn parse_on_existing(s: &str) -> Option<WriteMode> {
    match s {
        "skip" => Some(WriteMode::IfAbsent),
        "overwrite" => Some(WriteMode::OverwriteKeepTtl),
        "overwrite_and_reset_ttl" => Some(WriteMode::Overwrite),
        _ => None,
    }
}

/// FNV-1a over the parts of the config that decide what a profile contains. Stable across
/// versions and platforms (unlike `std`'s hasher), which matters because it is stored.
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
    use super::*;

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
        assert_eq!(c.format, FormatSpec::Auto);
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
    fn byte_sizes() {
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("2GB"), Some(2_000_000_000));
        assert_eq!(parse_bytes("1.5 KiB"), Some(1536));
        assert_eq!(parse_bytes("100"), Some(100));
        assert_eq!(parse_bytes("12 parsecs"), None);
        assert_eq!(parse_bytes("-1"), None);
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
