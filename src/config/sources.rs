//! `[sources.NAME]` tables and the loading fields of `[[rule]]` tables, checked against each
//! other: a rule may only use the fields its source's kind understands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::Problems;
use super::raw::RuleFile;
use crate::backend::WriteMode;
use crate::rules::{CaptureKind, KeyTemplate, MatchPattern, param_names};
use crate::source::{
    CommandInput, DEFAULT_MAX_VALUE_BYTES, Encoding, Fetch, HttpMode, SourceKind, SourceSettings, SqlQuery,
};
use crate::units::parse_bytes;
use crate::warm::RuleLoad;

/// A raw `[sources.NAME]` table: the fields of every kind, checked against `kind` below.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SourceFile {
    kind: Option<Spanned<String>>,
    url: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    qps: Option<Spanned<u64>>,
    concurrency: Option<Spanned<u64>>,
    max_value_size: Option<Spanned<String>>,
    // sql
    max_connections: Option<Spanned<u64>>,
    // http
    mode: Option<Spanned<String>>,
    headers: Option<Spanned<BTreeMap<String, String>>>,
    // file
    root: Option<Spanned<String>>,
    // command
    command: Option<Spanned<Vec<String>>>,
    input: Option<Spanned<String>>,
}

const KINDS: &str = "`sql`, `http`, `file`, `command` or `redis`";

/// The kind a table names, or the one its fields imply: an `http(s)://` URL is an HTTP
/// source, a `redis(s)://` URL a peer Redis, `root` a file source, `command` a command
/// source, and anything else (a database URL, `env:NAME`) a SQL source.
fn kind_of(src: &SourceFile) -> Option<&'static str> {
    if let Some(kind) = &src.kind {
        return ["sql", "http", "file", "command", "redis"].into_iter().find(|k| k == kind.get_ref());
    }
    let url = src.url.as_ref().map_or("", |u| u.get_ref().as_str());
    Some(if url.starts_with("http:") || url.starts_with("https:") {
        "http"
    } else if url.starts_with("redis:") || url.starts_with("rediss:") {
        "redis"
    } else if src.root.is_some() {
        "file"
    } else if src.command.is_some() {
        "command"
    } else {
        "sql"
    })
}

/// Checks every source table; a source with problems is still returned (so rules that use it
/// are checked too), but the config as a whole is then invalid.
pub(super) fn sources(files: &BTreeMap<String, SourceFile>, problems: &mut Problems) -> Vec<SourceSettings> {
    files.iter().map(|(name, src)| source(name, src, problems)).collect()
}

fn source(name: &str, src: &SourceFile, problems: &mut Problems) -> SourceSettings {
    let mut settings = SourceSettings {
        name: name.to_string(),
        kind: SourceKind::Sql { url: String::new() },
        timeout: Duration::from_secs(5),
        qps: None,
        concurrency: 4,
        max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
    };
    let Some(kind) = kind_of(src) else {
        if let Some(k) = &src.kind {
            problems.add_in(k, 0, format!("sources.{name}.kind: `{}` is not one of {KINDS}", k.get_ref()));
        }
        return settings;
    };
    // Which fields belong to which kinds.
    let fields: [(&str, bool, &[&str]); 7] = [
        ("max_connections", src.max_connections.is_some(), &["sql"]),
        ("mode", src.mode.is_some(), &["http"]),
        ("headers", src.headers.is_some(), &["http"]),
        ("root", src.root.is_some(), &["file"]),
        ("command", src.command.is_some(), &["command"]),
        ("input", src.input.is_some(), &["command"]),
        ("url", src.url.is_some(), &["sql", "http", "redis"]),
    ];
    let table_at = src.kind.as_ref().map(|k| k.span().start).or(src.url.as_ref().map(|u| u.span().start));
    for (field, present, kinds) in fields {
        if present && !kinds.contains(&kind) {
            problems.add(
                table_at.unwrap_or(0),
                format!("sources.{name}: `{field}` is not a setting of a `{kind}` source"),
            );
        }
    }
    let url = match (&src.url, kind) {
        (Some(u), _) => u.get_ref().clone(),
        (None, "sql" | "http" | "redis") => {
            problems
                .add(table_at.unwrap_or(0), format!("sources.{name}: set `url`, where the {kind} source is"));
            String::new()
        }
        (None, _) => String::new(),
    };
    if let Some(u) = &src.url {
        let schemes: &[&str] = match kind {
            "sql" => &["sqlite:", "postgres:", "postgresql:", "mysql:", "mariadb:"],
            "http" => &["http:", "https:"],
            "redis" => &["redis:", "rediss:"],
            _ => &[],
        };
        if !schemes.is_empty() && !schemes.iter().chain(&["env:", "file:"]).any(|s| url.starts_with(s)) {
            let wanted: Vec<String> = schemes.iter().map(|s| format!("`{s}//`")).collect();
            let (last, others) = wanted.split_last().expect("schemes is not empty");
            let wanted =
                if others.is_empty() { last.clone() } else { format!("{} or {last}", others.join(", ")) };
            problems.add_in(
                u,
                0,
                format!(
                    "sources.{name}.url: `{}` is not a {} URL, nor `env:NAME` or `file:PATH`",
                    crate::secret::redact_url(&url),
                    wanted
                ),
            );
        }
    }
    settings.concurrency = match kind {
        "http" => 16,
        "file" => 8,
        "command" => 2,
        _ => 4,
    };
    for (field, value) in [("max_connections", &src.max_connections), ("concurrency", &src.concurrency)] {
        if let Some(n) = value {
            match u32::try_from(*n.get_ref()) {
                Ok(v) if v > 0 => settings.concurrency = v as usize,
                _ => {
                    problems.add(n.span().start, format!("sources.{name}.{field} must be between 1 and 2^32"))
                }
            }
        }
    }
    if let Some(t) = &src.timeout {
        match humantime::parse_duration(t.get_ref()) {
            Ok(v) if !v.is_zero() => settings.timeout = v,
            _ => problems.add(
                t.span().start,
                format!("sources.{name}.timeout: `{}` is not a duration such as `5s`", t.get_ref()),
            ),
        }
    }
    if let Some(q) = &src.qps {
        match u32::try_from(*q.get_ref()) {
            Ok(v) if v > 0 => settings.qps = Some(v),
            _ => problems.add(q.span().start, format!("sources.{name}.qps must be between 1 and 2^32")),
        }
    }
    if let Some(m) = &src.max_value_size {
        match parse_bytes(m.get_ref()) {
            Some(n) if n > 0 => settings.max_value_bytes = n,
            _ => problems.add(
                m.span().start,
                format!("sources.{name}.max_value_size: `{}` is not a size such as `1MiB`", m.get_ref()),
            ),
        }
    }
    settings.kind = match kind {
        "http" => {
            let mode = match src.mode.as_ref().map(|m| m.get_ref().as_str()) {
                None | Some("replay") => HttpMode::Replay,
                Some("store") => HttpMode::Store,
                Some(other) => {
                    let at = src.mode.as_ref().map_or(0, |m| m.span().start);
                    problems.add(at, format!("sources.{name}.mode: `{other}` is not `replay` or `store`"));
                    HttpMode::Replay
                }
            };
            let headers = src
                .headers
                .as_ref()
                .map_or_else(Vec::new, |h| h.get_ref().iter().map(|(k, v)| (k.clone(), v.clone())).collect());
            for (header, _) in &headers {
                if reqwest::header::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    let at = src.headers.as_ref().map_or(0, |h| h.span().start);
                    problems.add(at, format!("sources.{name}.headers: `{header}` is not a header name"));
                }
            }
            SourceKind::Http { url, mode, headers }
        }
        "file" => {
            let root = src.root.as_ref().map_or_else(PathBuf::new, |r| PathBuf::from(r.get_ref()));
            match &src.root {
                None => problems
                    .add(table_at.unwrap_or(0), format!("sources.{name}: set `root`, the directory to read")),
                Some(r) if !root.is_dir() => problems.add_in(
                    r,
                    0,
                    format!("sources.{name}.root: `{}` is not a directory", root.display()),
                ),
                Some(_) => {}
            }
            SourceKind::File { root }
        }
        "command" => {
            let argv = src.command.as_ref().map_or_else(Vec::new, |c| c.get_ref().clone());
            if argv.first().is_none_or(String::is_empty) {
                let at = src.command.as_ref().map_or(table_at.unwrap_or(0), |c| c.span().start);
                problems.add(
                    at,
                    format!("sources.{name}: set `command`, the program and its fixed arguments: [\"/usr/local/bin/render\"]"),
                );
            }
            let input = match src.input.as_ref().map(|i| i.get_ref().as_str()) {
                None | Some("args") => CommandInput::Args,
                Some("json") => CommandInput::Json,
                Some(other) => {
                    let at = src.input.as_ref().map_or(0, |i| i.span().start);
                    problems.add(at, format!("sources.{name}.input: `{other}` is not `args` or `json`"));
                    CommandInput::Args
                }
            };
            SourceKind::Command { argv, input }
        }
        "redis" => SourceKind::Redis { url },
        _ => SourceKind::Sql { url },
    };
    settings
}

/// A rule's loading settings; problems are reported, `None` when it has no source or a bad one.
pub(super) fn rule_load(
    r: &RuleFile,
    name: &str,
    pattern: &MatchPattern,
    sources: &[SourceSettings],
    problems: &mut Problems,
) -> Option<RuleLoad> {
    let Some(source) = &r.source else {
        for (field, present) in [
            ("sql", r.sql.is_some()),
            ("ttl", r.ttl.is_some()),
            ("param", r.param.is_some()),
            ("encoding", r.encoding.is_some()),
            ("path", r.path.is_some()),
            ("args", r.args.is_some()),
            ("invalidations", r.invalidations.is_some()),
        ] {
            if present {
                problems
                    .add(r.name.span().start, format!("rule `{name}`: `{field}` is set but `source` is not"));
            }
        }
        return None;
    };
    let Some(index) = sources.iter().position(|s| &s.name == source.get_ref()) else {
        let known: Vec<String> = sources.iter().map(|s| format!("`{}`", s.name)).collect();
        problems.add_in(
            source,
            0,
            format!(
                "rule `{name}`: source `{}` is not defined (add `[sources.{}]`; defined: {})",
                source.get_ref(),
                source.get_ref(),
                if known.is_empty() { "none".into() } else { known.join(", ") }
            ),
        );
        // Still report what else is wrong; most kinds need a TTL.
        rule_ttl(r, name, source.span().start, problems);
        return None;
    };
    let kind = &sources[index].kind;
    let at = source.span().start;
    let mut ok = true;
    let mut refuse = |field: &str, present: bool, why: &str, problems: &mut Problems| {
        if present {
            problems.add(at, format!("rule `{name}`: `{field}` {why}"));
            ok = false;
        }
    };
    let not_for = format!("is not a setting of rules with a `{}` source", kind.name());
    let sql_fields =
        [("sql", r.sql.is_some()), ("param", r.param.is_some()), ("encoding", r.encoding.is_some())];
    if !matches!(kind, SourceKind::Sql { .. }) {
        for (field, present) in sql_fields {
            refuse(field, present, &not_for, problems);
        }
    }
    if !matches!(kind, SourceKind::File { .. }) {
        refuse("path", r.path.is_some(), &not_for, problems);
    }
    if !matches!(kind, SourceKind::Command { input: CommandInput::Args, .. }) {
        refuse("args", r.args.is_some(), &not_for, problems);
    }
    // Copies keep the peer's TTL, and replayed requests write nothing: no TTL of their own.
    let writes_own_ttl =
        !matches!(kind, SourceKind::Redis { .. } | SourceKind::Http { mode: HttpMode::Replay, .. });
    if !writes_own_ttl {
        let why = match kind {
            SourceKind::Redis { .. } => "does not apply: copies keep the TTL they have on the peer",
            _ => "does not apply: replayed requests write nothing (the application caches its answer)",
        };
        refuse("ttl", r.ttl.is_some(), why, problems);
        refuse("ttl_jitter", r.ttl_jitter.is_some(), why, problems);
    }
    let params = param_names(pattern, &r.keep_query);
    let ttl = if writes_own_ttl { rule_ttl(r, name, at, problems) } else { Some(None) };
    let jitter = match &r.ttl_jitter {
        Some(j) if !(0.0..1.0).contains(j.get_ref()) => {
            problems.add(
                j.span().start,
                format!("rule `{name}`: ttl_jitter must be at least 0 and below 1 (0.1 = ±10%)"),
            );
            0.1
        }
        Some(j) => *j.get_ref(),
        None if writes_own_ttl => 0.1,
        None => 0.0,
    };
    let (on_existing, invalidations) = (r.on_existing.map(WriteMode::from), r.invalidations);
    let fetch = match kind {
        SourceKind::Sql { .. } => sql_fetch(r, name, pattern, &params, at, problems),
        SourceKind::Http { .. } => http_fetch(name, pattern, at, problems),
        SourceKind::File { .. } => match &r.path {
            None => Some(Fetch::File { path: None }),
            Some(p) => template(p, &params, name, "path", problems).map(|t| Fetch::File { path: Some(t) }),
        },
        SourceKind::Command { input, .. } => {
            let stdin_json = *input == CommandInput::Json;
            let mut args = Vec::new();
            match &r.args {
                Some(list) => {
                    for a in list.get_ref() {
                        let spanned = Spanned::new(list.span(), a.clone());
                        args.push(template(&spanned, &params, name, "args", problems)?);
                    }
                }
                None if !stdin_json => problems.add(
                    at,
                    format!(
                        "rule `{name}`: set `args`, the arguments that name the key, such as [\"{{{}}}\"]",
                        params.first().map_or("id", String::as_str)
                    ),
                ),
                None => {}
            }
            Some(Fetch::Command { args, stdin_json })
        }
        SourceKind::Redis { .. } => Some(Fetch::Peer),
    };
    match (ok, fetch, ttl) {
        (true, Some(fetch), Some(ttl)) => {
            Some(RuleLoad { source: index, fetch, ttl, ttl_jitter: jitter, on_existing, invalidations })
        }
        _ => None,
    }
}

/// A template field over the rule's parameters (`{{` for a literal brace).
fn template(
    value: &Spanned<String>,
    params: &[String],
    name: &str,
    field: &str,
    problems: &mut Problems,
) -> Option<KeyTemplate> {
    KeyTemplate::parse(value.get_ref(), params)
        .map_err(|e| problems.add_in(value, e.offset, format!("rule `{name}`: {field}: {e}")))
        .ok()
}

/// `ttl = "10m"` or `ttl = "none"`; `Some(None)` is no expiry, `None` a problem reported.
fn rule_ttl(r: &RuleFile, name: &str, at: usize, problems: &mut Problems) -> Option<Option<Duration>> {
    match &r.ttl {
        None => {
            problems.add(
                at,
                format!("rule `{name}`: set `ttl` (such as `10m`, or `none` for keys that never expire)"),
            );
            None
        }
        Some(t) if t.get_ref() == "none" => Some(None),
        Some(t) => match humantime::parse_duration(t.get_ref()) {
            Ok(d) if !d.is_zero() => Some(Some(d)),
            _ => {
                problems.add_in(
                    t,
                    0,
                    format!(
                        "rule `{name}`: ttl `{}` is not a duration such as `10m`, or `none`",
                        t.get_ref()
                    ),
                );
                None
            }
        },
    }
}

/// Only safe methods are replayed: a warm must not create orders or send mail.
fn http_fetch(name: &str, pattern: &MatchPattern, at: usize, problems: &mut Problems) -> Option<Fetch> {
    let method = match pattern.methods() {
        None => b"GET".to_vec(),
        Some(methods) => match methods.iter().find(|m| m.as_slice() == b"GET").or(methods.first()) {
            Some(m) => m.clone(),
            None => b"GET".to_vec(),
        },
    };
    if method != b"GET" && method != b"HEAD" {
        problems.add(
            at,
            format!(
                "rule `{name}`: an http source replays only GET and HEAD requests, and this rule matches `{}`",
                String::from_utf8_lossy(&method)
            ),
        );
        return None;
    }
    let method = reqwest::Method::from_bytes(&method).ok()?;
    Some(Fetch::Http { method })
}

fn sql_fetch(
    r: &RuleFile,
    name: &str,
    pattern: &MatchPattern,
    params: &[String],
    at: usize,
    problems: &mut Problems,
) -> Option<Fetch> {
    let param = match &r.param {
        Some(p) => params.iter().position(|n| n == p.get_ref()).or_else(|| {
            problems.add_in(
                p,
                0,
                format!("rule `{name}`: param `{}` is not a capture or kept query parameter", p.get_ref()),
            );
            None
        }),
        None if params.len() == 1 => Some(0),
        None => {
            problems.add(
                at,
                format!(
                    "rule `{name}`: set `param` to the capture the query looks up (one of: {})",
                    params.join(", ")
                ),
            );
            None
        }
    };
    let encoding = match r.encoding.as_ref().map(|e| e.get_ref().as_str()) {
        None | Some("bytes") => Some(Encoding::Bytes),
        Some("text") => Some(Encoding::Text),
        Some("json") => Some(Encoding::Json),
        Some(other) => {
            problems.add(
                r.encoding.as_ref().map_or(0, |e| e.span().start),
                format!("rule `{name}`: encoding `{other}` is not `bytes`, `text` or `json`"),
            );
            None
        }
    };
    let int_keys = param.is_some_and(|p| pattern.capture_kinds().get(p) == Some(&CaptureKind::Int));
    let query = match (&r.sql, encoding) {
        (None, _) => {
            problems.add(
                at,
                format!(
                    "rule `{name}`: set `sql`, a query such as `SELECT id, body FROM t WHERE id IN ($1)`"
                ),
            );
            None
        }
        (Some(sql), Some(encoding)) => SqlQuery::parse(sql.get_ref(), int_keys, encoding)
            .map_err(|e| problems.add_in(sql, 0, format!("rule `{name}`: sql: {e}")))
            .ok(),
        (Some(_), None) => None,
    };
    Some(Fetch::Sql { query: query?, param: param? })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::config::tests::problems;
    use crate::source::{CommandInput, Fetch, HttpMode, SourceKind};

    fn messages(text: &str) -> Vec<String> {
        problems(text).into_iter().map(|p| p.message).collect()
    }

    const RULE: &str =
        "[[rule]]\nname = \"p\"\nmatch = \"GET /p/{id:int}\"\nkey = \"p:{id}\"\nsource = \"s\"\n";

    #[test]
    fn kinds_follow_from_the_fields() {
        let root = std::env::temp_dir();
        let text = format!(
            "[sources.db]\nurl = \"env:DATABASE_URL\"\n[sources.app]\nurl = \"http://app:8080\"\nmode = \"store\"\n\
             [sources.www]\nroot = \"{}\"\n[sources.calc]\ncommand = [\"calc\", \"--fast\"]\ninput = \"json\"\n\
             [sources.old]\nurl = \"redis://old:6379\"\n[sources.api]\nkind = \"http\"\nurl = \"env:APP_URL\"\n\
             [[rule]]\nname = \"p\"\nmatch = \"GET /p/{{id:int}}\"\nkey = \"p:{{id}}\"\nsource = \"calc\"\nttl = \"1m\"\n",
            root.display()
        );
        let c = Config::parse(&text, "t.toml").expect("valid");
        let kinds: Vec<(&str, &str)> = c.sources.iter().map(|s| (s.name.as_str(), s.kind.name())).collect();
        assert_eq!(
            kinds,
            [
                ("api", "http"),
                ("app", "http"),
                ("calc", "command"),
                ("db", "sql"),
                ("old", "redis"),
                ("www", "file")
            ]
        );
        assert!(matches!(c.sources[1].kind, SourceKind::Http { mode: HttpMode::Store, .. }));
        assert!(matches!(c.sources[2].kind, SourceKind::Command { input: CommandInput::Json, .. }));
        assert_eq!(c.sources[2].concurrency, 2, "programs: one per core by default");
        assert!(matches!(
            c.loads[0].as_ref().map(|l| &l.fetch),
            Some(Fetch::Command { stdin_json: true, .. })
        ));
    }

    #[test]
    fn source_tables_name_the_wrong_field_and_the_fix() {
        let m = messages(&format!(
            "[sources.s]\nkind = \"ftp\"\n[sources.h]\nurl = \"http://app\"\nroot = \"/srv\"\nmode = \"mirror\"\n\
             [sources.c]\ncommand = []\ninput = \"yaml\"\n[sources.f]\nroot = \"/surely/not/here\"\n\
             [sources.r]\nkind = \"redis\"\n[sources.d]\nurl = \"oracle://db\"\nheaders = {{ a = \"b\" }}\n{RULE}ttl = \"1m\"\n"
        ));
        for needle in [
            "sources.s.kind: `ftp` is not one of `sql`, `http`, `file`, `command` or `redis`",
            "sources.h: `root` is not a setting of a `http` source",
            "sources.h.mode: `mirror` is not `replay` or `store`",
            "sources.c: set `command`",
            "sources.c.input: `yaml` is not `args` or `json`",
            "sources.f.root: `/surely/not/here` is not a directory",
            "sources.r: set `url`",
            "sources.d: `headers` is not a setting of a `sql` source",
            "sources.d.url: `oracle://db` is not a `sqlite://`, `postgres://`, `postgresql://`, `mysql://` or `mariadb://` URL",
        ] {
            assert!(m.iter().any(|x| x.contains(needle)), "missing {needle:?} in {m:#?}");
        }
    }

    #[test]
    fn rules_may_only_use_their_sources_fields() {
        let with = |source: &str, rule: &str| {
            messages(&format!("[sources.s]\n{source}\n{}{rule}\n", RULE.replace("GET /p", "POST /p")))
        };
        let m = with("url = \"http://app\"", "sql = \"SELECT 1\"\nttl = \"1m\"");
        assert!(
            m.iter().any(|x| x.contains("`sql` is not a setting of rules with a `http` source")),
            "{m:?}"
        );
        assert!(m.iter().any(|x| x.contains("replays only GET and HEAD")), "{m:?}");
        let m = with("url = \"redis://old\"", "ttl = \"1m\"");
        assert!(m.iter().any(|x| x.contains("copies keep the TTL they have on the peer")), "{m:?}");
        let m = with("command = [\"render\"]", "ttl = \"1m\"");
        assert!(m.iter().any(|x| x.contains("set `args`")), "{m:?}");
        let m = with("url = \"http://app\"\nmode = \"replay\"", "ttl = \"1m\"");
        assert!(m.iter().any(|x| x.contains("replayed requests write nothing")), "{m:?}");
        let m =
            with(&format!("root = \"{}\"", std::env::temp_dir().display()), "path = \"{sku}\"\nttl = \"1m\"");
        assert!(m.iter().any(|x| x.contains("rule `p`: path: `{sku}`")), "{m:?}");
        let m = with("url = \"redis://old\"", "invalidations = \"maybe\"\non_existing = \"replace\"");
        assert!(m.iter().any(|x| x.contains("invalidations: `maybe` is not `verify` or `off`")), "{m:?}");
        let overwrites = "is not one of `skip`, `overwrite`, `overwrite_and_reset_ttl`";
        assert!(m.iter().any(|x| x.contains("on_existing: `replace`") && x.contains(overwrites)), "{m:?}");
        let m = messages(&format!(
            "[warm]\ninvalidations = \"never\"\n[sources.s]\nurl = \"redis://old\"\n{RULE}"
        ));
        assert!(
            m.iter().any(|x| x.contains("warm.invalidations: `never` is not `verify` or `off`")),
            "{m:?}"
        );
        // Problems carry their line.
        let p = problems(&format!("[sources.s]\nurl = \"redis://old\"\n{RULE}ttl = \"1m\"\n"));
        assert_eq!(p[0].line, 7, "{p:?}");
    }
}
