//! `preheat config check`: validate a config, with its flag and environment overrides, and
//! print what a warm would do; with `--connect`, reach every backend and source once.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use preheat::config::{Config, on_existing_name};
use preheat::memory::MemoryLimit;
use preheat::secret::redact_url;
use preheat::source::{Fetch, HttpMode, Source, SourceKind};
use preheat::warm::StalePolicy;
use serde_json::json;

use super::{Exit, load_config, now_ms};

/// `preheat config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the config and print what a warm would do (exit 2 when invalid); with
    /// `--connect`, reach the backend and every source (exit 1 when one cannot be reached).
    Check(CheckArgs),
}

/// Flags of `preheat config check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Config file [default: ./preheat.toml if present, else built-in rules].
    #[arg(long, short, env = "PREHEAT_CONFIG")]
    config: Option<PathBuf>,
    #[command(flatten)]
    profile: super::ProfileChoice,
    #[command(flatten)]
    overrides: super::WarmOverrides,
    /// Also connect to the backend and every source (nothing is read or written).
    #[arg(long)]
    connect: bool,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(command: ConfigCommand) -> anyhow::Result<Exit> {
    let ConfigCommand::Check(args) = command;
    let mut config = load_config(args.config.as_ref())?;
    config.apply(&args.overrides.to_overrides())?;
    // An unreadable PREHEAT_SKIP is a config problem like any other.
    super::warm::skip_requested()?;
    // Fails on an unusable backend URL before anything else is said.
    let backend = super::warm::open_backend(&config)?;
    let profile = profile_state(&args, &config);
    let mut checks = Vec::new();
    if args.connect {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        checks = runtime.block_on(connect_all(&config, &backend));
    }
    let unreachable = checks.iter().filter(|(_, r)| r.is_err()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&as_json(&config, &profile, &checks))?);
    } else {
        print!("{}", render(&config, &profile, &checks));
    }
    Ok(if unreachable > 0 { Exit::Failure } else { Exit::Ok })
}

/// The profile a warm would use, and what is wrong with it.
struct ProfileState {
    path: Option<PathBuf>,
    problem: Option<String>,
    stale: Vec<String>,
}

fn profile_state(args: &CheckArgs, config: &Config) -> ProfileState {
    let path = match args.profile.resolve() {
        Ok(p) => p,
        Err(e) => return ProfileState { path: None, problem: Some(e.to_string()), stale: Vec::new() },
    };
    match preheat::profile::read_summary(&path) {
        Ok(meta) => ProfileState {
            stale: meta.staleness(&config.fingerprint, config.warm.max_profile_age, now_ms()),
            path: Some(path),
            problem: None,
        },
        Err(e) => ProfileState { path: Some(path), problem: Some(e.to_string()), stale: Vec::new() },
    }
}

/// Reaches the backend and every source; one `(what, result)` each.
async fn connect_all(
    config: &Config,
    backend: &preheat::backend::AnyBackend,
) -> Vec<(String, Result<(), String>)> {
    use preheat::backend::Backend as _;
    let mut out = vec![("backend".to_string(), backend.ping().await.map_err(|e| e.to_string()))];
    for (index, settings) in config.sources.iter().enumerate() {
        let source = match Source::open(settings) {
            Ok(source) => source,
            Err(e) => {
                out.push((format!("source `{}`", settings.name), Err(e.to_string())));
                continue;
            }
        };
        let reached = source.check().await.map_err(|e| e.to_string());
        let ok = reached.is_ok();
        out.push((format!("source `{}`", settings.name), reached));
        if !ok {
            continue;
        }
        // Each rule's query on a source that answers.
        for (rule, load) in config.rules.rules().iter().zip(&config.loads) {
            if let Some(load) =
                load.as_ref().filter(|l| l.source == index && matches!(l.fetch, Fetch::Sql { .. }))
            {
                let checked = source.check_fetch(&load.fetch).await.map_err(|e| e.to_string());
                out.push((format!("rule `{}` on source `{}`", rule.name, settings.name), checked));
            }
        }
    }
    out
}

/// Where a source is, password removed.
fn location(kind: &SourceKind) -> String {
    let shown = |url: &str| match preheat::secret::resolve_secret(url) {
        Ok(resolved) if url.starts_with("env:") || url.starts_with("file:") => {
            format!("{} (from {url})", redact_url(&resolved))
        }
        Ok(resolved) => redact_url(&resolved),
        Err(e) => format!("{url} ({e})"),
    };
    match kind {
        SourceKind::Sql { url } | SourceKind::Redis { url } => shown(url),
        SourceKind::Http { url, mode, .. } => {
            format!("{} ({})", shown(url), json!(mode).as_str().unwrap_or(""))
        }
        SourceKind::File { root } => root.display().to_string(),
        SourceKind::Command { argv, .. } => argv.join(" "),
    }
}

fn memory_limit(limit: MemoryLimit) -> String {
    let now = preheat::memory::available().map(|a| limit.bytes(a.bytes));
    let configured = match limit {
        MemoryLimit::Share(s) => format!("{:.0}% of available memory", 100.0 * s),
        MemoryLimit::Bytes(b) => format!("{} MiB", b >> 20),
    };
    match now {
        Some(bytes) => format!("{configured} ({} MiB now)", bytes >> 20),
        None => configured,
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn skip_reason(config: &Config) -> Option<&'static str> {
    if !config.warm.enabled {
        Some("warm.enabled = false")
    } else if super::warm::skip_requested().unwrap_or(false) {
        Some("PREHEAT_SKIP is set")
    } else {
        None
    }
}

fn render(config: &Config, profile: &ProfileState, checks: &[(String, Result<(), String>)]) -> String {
    let mut o = String::new();
    let w = &config.warm;
    let _ = writeln!(
        o,
        "config    {} is valid: {} rule{}, {} source{}",
        config.origin,
        config.rules.rules().len(),
        plural(config.rules.rules().len()),
        config.sources.len(),
        plural(config.sources.len())
    );
    match skip_reason(config) {
        Some(why) => {
            let _ = writeln!(o, "warm      skipped ({why})");
        }
        None => {
            let _ = writeln!(
                o,
                "warm      deadline {}, at most {} keys{}, memory {}",
                duration(w.deadline),
                w.budgets.max_keys,
                w.budgets.max_bytes.map_or(String::new(), |b| format!(" and {} MiB of values", b >> 20)),
                memory_limit(w.max_memory)
            );
        }
    }
    let _ = writeln!(
        o,
        "          existing keys: {}; invalidations: {}; lock `{}`: {}; batches of {}, {} at once",
        on_existing_name(w.on_existing),
        json!(w.invalidations).as_str().unwrap_or(""),
        w.lock_key,
        json!(w.lock).as_str().unwrap_or(""),
        w.batch_size,
        w.concurrency
    );
    let ready = match w.ready_at {
        None => "when the warm ends".to_string(),
        Some(preheat::warm::ReadyAt::Coverage(share)) => {
            format!("at {:.0}% of the predicted coverage", 100.0 * share)
        }
        Some(preheat::warm::ReadyAt::Keys(n)) => format!("at {n} keys warmed"),
    };
    let anyway = if w.ready_anyway && w.ready_at.is_some() { ", or when it ends anyway" } else { "" };
    let _ = writeln!(
        o,
        "          fills the cache up to {:.0}% of its memory limit; ready {ready}{anyway}",
        100.0 * w.cache_headroom
    );
    let profile_line = match (&profile.path, &profile.problem) {
        (_, Some(problem)) => format!("not usable: {problem}"),
        (Some(path), None) if profile.stale.is_empty() => match w.max_profile_age {
            Some(limit) => {
                format!("{} (fresh: younger than warm.max_profile_age = {})", path.display(), duration(limit))
            }
            None => {
                format!("{} (no age limit: set warm.max_profile_age to refuse old profiles)", path.display())
            }
        },
        (Some(path), None) => format!(
            "{} is stale: {}; warm.stale_profile = {}",
            path.display(),
            profile.stale.join("; "),
            if w.stale_profile == StalePolicy::Skip { "skip: nothing would be warmed" } else { "warn" }
        ),
        (None, None) => "none".into(),
    };
    let _ = writeln!(o, "profile   {profile_line}");
    let _ = writeln!(
        o,
        "backend   {}",
        redact_url(&preheat::secret::resolve_secret(&config.backend.url).unwrap_or_default())
    );
    for s in &config.sources {
        let _ = writeln!(
            o,
            "source    {:<12} {:<8} {} (timeout {}, {} at once{})",
            s.name,
            s.kind.name(),
            location(&s.kind),
            duration(s.timeout),
            s.concurrency,
            s.qps.map_or(String::new(), |q| format!(", at most {q}/s"))
        );
    }
    for (i, rule) in config.rules.rules().iter().enumerate() {
        let load = config.loads[i].as_ref().map_or("not warmed (no source)".to_string(), |l| {
            let ttl = match (&l.fetch, &config.sources[l.source].kind, l.ttl) {
                (Fetch::Peer, _, _) => "the peer's TTL".to_string(),
                (_, SourceKind::Http { mode: HttpMode::Replay, .. }, _) => {
                    "replayed, nothing written".to_string()
                }
                (_, _, Some(ttl)) => format!("ttl {}", duration(ttl)),
                (_, _, None) => "no expiry".to_string(),
            };
            let existing =
                l.on_existing.map_or(String::new(), |m| format!(", existing keys: {}", on_existing_name(m)));
            format!("from `{}`, {ttl}{existing}", config.sources[l.source].name)
        });
        let _ = writeln!(
            o,
            "rule      {:<12} {} -> {}: {load}",
            rule.name,
            rule.pattern.as_str(),
            rule.key.as_str()
        );
    }
    for (what, result) in checks {
        let _ = match result {
            Ok(()) => writeln!(o, "connect   {what}: ok"),
            Err(e) => writeln!(o, "connect   {what}: FAILED: {e}"),
        };
    }
    o
}

fn as_json(
    config: &Config,
    profile: &ProfileState,
    checks: &[(String, Result<(), String>)],
) -> serde_json::Value {
    let sources: Vec<serde_json::Value> = config
        .sources
        .iter()
        .map(|s| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            v["location"] = json!(location(&s.kind));
            v
        })
        .collect();
    let rules: Vec<serde_json::Value> = config
        .rules
        .rules()
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let load = config.loads[i].as_ref();
            json!({
                "name": r.name,
                "match": r.pattern.as_str(),
                "key": r.key.as_str(),
                "source": load.map(|l| config.sources[l.source].name.clone()),
                "ttl_ms": load.and_then(|l| l.ttl).map(|t| t.as_millis() as u64),
            })
        })
        .collect();
    let mut warm = serde_json::to_value(&config.warm).unwrap_or_default();
    warm["backend_url"] =
        json!(redact_url(&preheat::secret::resolve_secret(&config.backend.url).unwrap_or_default()));
    json!({
        "config": config.origin,
        "valid": true,
        "skipped": skip_reason(config),
        "warm": warm,
        "profile": {"path": profile.path, "problem": profile.problem, "stale": profile.stale},
        "sources": sources,
        "rules": rules,
        "connect": checks.iter().map(|(what, r)| json!({"what": what, "ok": r.is_ok(), "error": r.as_ref().err()})).collect::<Vec<_>>(),
    })
}
