//! Sources: where warmed values come from.
//!
//! A rule names a source and says how to ask it for one key ([`Fetch`]); the warm loop hands
//! a source a batch of [`Job`]s and gets one [`Fetched`] (or error) per job back, in order.
//! Kinds, one file each:
//! - [`SqlSource`]: one batched query per batch, on PostgreSQL, MySQL/MariaDB or SQLite;
//! - [`HttpSource`]: the profiled request replayed against the new deployment, its body
//!   stored or left to the application;
//! - [`FileSource`]: static content under a root, with no way out of it;
//! - [`CommandSource`]: a program that computes the value, run without a shell;
//! - [`PeerRedisSource`]: a warm Redis whose keys are copied with `DUMP`/`PTTL`.
//!
//! Every source has a timeout, a concurrency cap and an optional rate cap ([`Pacer`]);
//! retries and circuit breaking are the warm loop's. Connection strings and header values
//! may come from the environment (`env:NAME`) or a file (`file:PATH`), and URLs are only ever
//! shown with their password removed ([`crate::secret::redact_url`]).

mod command;
mod file;
mod http;
mod http1;
mod mysql;
mod pacer;
mod peer;
mod postgres;
mod sql;
mod sqlite;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::Semaphore;

pub use command::{CommandInput, CommandSource};
pub use file::{FileSource, percent_decode, relative_path};
pub use http::{CachePolicy, HttpMode, HttpSource, cache_policy};
pub use pacer::Pacer;
pub use peer::PeerRedisSource;
pub use sql::{Encoding, SqlQuery, SqlSource, run_script};

use crate::failure::FailureReason;
use crate::rules::{KeyTemplate, Rule};
use crate::secret::resolve_secret;

/// A value source that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("source `{source_name}`: {message}")]
pub struct SourceError {
    /// The configured source name.
    pub source_name: String,
    /// What went wrong (passwords removed).
    pub message: String,
    /// Whether the same request may succeed if retried (connection trouble, timeouts).
    pub retryable: bool,
    /// The run report's failure reason: one of the source's (`source_error`,
    /// `source_timeout`, `source_status`, `source_refused`, `too_large`, `command_failed`).
    pub reason: FailureReason,
}

impl SourceError {
    /// An error that retrying cannot fix.
    pub fn fatal(source_name: &str, message: String) -> Self {
        SourceError {
            source_name: source_name.to_string(),
            message,
            retryable: false,
            reason: FailureReason::SourceError,
        }
    }
}

/// Largest value a source hands over unless configured otherwise (`max_value_size`).
pub const DEFAULT_MAX_VALUE_BYTES: u64 = 8 << 20;

/// A value source (`[sources.NAME]`), validated.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceSettings {
    /// The name rules refer to.
    pub name: String,
    /// What it is and where.
    pub kind: SourceKind,
    /// Per query, request, file read or program run.
    #[serde(with = "crate::units::duration_text")]
    pub timeout: Duration,
    /// At most this many queries or requests per second (`None`: no cap).
    pub qps: Option<u32>,
    /// Queries, requests or programs in flight at once.
    pub concurrency: usize,
    /// Largest value accepted, in bytes; larger ones fail as `too_large`.
    pub max_value_bytes: u64,
}

/// The kinds of source and their own settings.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SourceKind {
    /// PostgreSQL or SQLite.
    Sql {
        /// Connection URL as configured: a URL, `env:NAME` or `file:PATH`. Never shown as is.
        #[serde(skip)]
        url: String,
    },
    /// The new deployment over HTTP.
    Http {
        /// Base URL as configured (maybe `env:NAME`). Never shown as is.
        #[serde(skip)]
        url: String,
        /// Store the body, or let the application fill its own cache.
        mode: HttpMode,
        /// Sent with every request; values may be `env:NAME` or `file:PATH`.
        #[serde(skip)]
        headers: Vec<(String, String)>,
    },
    /// Static files.
    File {
        /// The directory keys' paths are relative to.
        root: PathBuf,
    },
    /// A program computing values.
    Command {
        /// Program and fixed arguments.
        argv: Vec<String>,
        /// How it receives a key's parameters.
        input: CommandInput,
    },
    /// A warm Redis to copy from.
    Redis {
        /// Its URL as configured. Never shown as is.
        #[serde(skip)]
        url: String,
    },
}

impl SourceKind {
    /// The kind's name, as `kind = "..."` in the config.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Sql { .. } => "sql",
            SourceKind::Http { .. } => "http",
            SourceKind::File { .. } => "file",
            SourceKind::Command { .. } => "command",
            SourceKind::Redis { .. } => "redis",
        }
    }
}

/// How a rule asks its source for one key.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetch {
    /// A batched query; `param` (an index into the rule's parameters) is the looked-up value.
    Sql {
        /// The query.
        query: SqlQuery,
        /// Which parameter the query looks up.
        param: usize,
    },
    /// The rule's request (its method, its path with the captures, its kept query).
    Http {
        /// The method sent.
        method: reqwest::Method,
    },
    /// A file; its path is `path` rendered over the parameters, or the request path.
    File {
        /// The path template, relative to the root.
        path: Option<KeyTemplate>,
    },
    /// A program run.
    Command {
        /// Arguments rendered over the parameters (with `input = "args"`).
        args: Vec<KeyTemplate>,
        /// The parameters go as JSON on stdin instead.
        stdin_json: bool,
    },
    /// The same key on the peer.
    Peer,
}

/// One key to load: the cache key, and what its source is asked ([`Fetch::input`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    /// The cache key.
    pub key: String,
    /// What the source is asked for it.
    pub input: Input,
}

/// What a source is asked for one key, by the kind of its fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A SQL lookup value, an HTTP request target, or a file path under the root.
    Text(String),
    /// A program's arguments, one string each.
    Args(Vec<String>),
    /// A program's standard input: `{"rule": ..., "key": ..., "params": {...}}`.
    Stdin(String),
    /// Nothing: a peer copies the key itself.
    Key,
}

impl Input {
    /// The text of a lookup value, request target, file path or standard input; empty for
    /// the others.
    pub fn text(&self) -> &str {
        match self {
            Input::Text(text) | Input::Stdin(text) => text,
            Input::Args(_) | Input::Key => "",
        }
    }
}

impl Fetch {
    /// What the source is asked for `key`, from its profiled parameters (a JSON object of
    /// strings); an error says why the key cannot be loaded, and the key counts as invalid.
    pub fn input(&self, rule: &Rule, key: &str, params: &str) -> Result<Input, &'static str> {
        type Object = serde_json::Map<String, serde_json::Value>;
        fn get<'a>(o: &'a Object, name: &str) -> Option<&'a str> {
            o.get(name).and_then(|v| v.as_str())
        }
        fn values<'a>(o: &'a Object, names: &[String]) -> Vec<&'a str> {
            names.iter().map(|n| get(o, n).unwrap_or("")).collect()
        }
        let object = || {
            serde_json::from_str::<Object>(params)
                .map_err(|_| "its profiled parameters are not a JSON object")
        };
        match self {
            Fetch::Sql { param, .. } => {
                // The one value a query needs, read without building the object: planning a
                // million-key warm spent most of its time building them.
                let name = rule.param_name(*param).ok_or("has no lookup parameter")?;
                string_field(params, name)
                    .map_err(|_| "its profiled parameters are not a JSON object")?
                    .map(Input::Text)
                    .ok_or("has no lookup parameter")
            }
            Fetch::Http { .. } => {
                let o = object()?;
                request_target(rule, &|n| get(&o, n)).map(Input::Text)
            }
            Fetch::File { path: Some(template) } => {
                relative_path(&template.render_str(&values(&object()?, &rule.params()))).map(Input::Text)
            }
            Fetch::File { path: None } => {
                let o = object()?;
                let target = request_target(rule, &|n| get(&o, n))?;
                relative_path(target.split('?').next().unwrap_or_default()).map(Input::Text)
            }
            Fetch::Command { stdin_json: true, .. } => Ok(Input::Stdin(
                serde_json::json!({
                    "rule": rule.name,
                    "key": key,
                    "params": object()?,
                })
                .to_string(),
            )),
            Fetch::Command { args, stdin_json: false } => {
                let o = object()?;
                let values = values(&o, &rule.params());
                let rendered: Vec<String> = args.iter().map(|a| a.render_str(&values)).collect();
                if rendered.iter().any(|a| a.contains('\0')) {
                    return Err("an argument would hold a NUL byte");
                }
                Ok(Input::Args(rendered))
            }
            Fetch::Peer => object().map(|_| Input::Key),
        }
    }
}

/// The string value of field `name` of the JSON object `params` (the last, if it repeats);
/// `None` when it is missing or not a string, an error when `params` is not a JSON object.
/// Other fields are skipped as they are parsed, so nothing but the answer is allocated.
fn string_field(params: &str, name: &str) -> Result<Option<String>, serde_json::Error> {
    use serde::Deserializer as _;
    use serde::de::{DeserializeSeed, Error, IgnoredAny, MapAccess, Visitor};

    struct Field<'n>(&'n str);
    impl<'de> Visitor<'de> for Field<'_> {
        type Value = Option<String>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(wanted) = map.next_key_seed(KeyIs(self.0))? {
                if wanted {
                    found = map.next_value::<serde_json::Value>()?.as_str().map(str::to_string);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    /// Reads a field name and says whether it is the one asked for.
    struct KeyIs<'n>(&'n str);
    impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
        type Value = bool;
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
            d.deserialize_str(self)
        }
    }
    impl<'de> Visitor<'de> for KeyIs<'_> {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a field name")
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<bool, E> {
            Ok(v == self.0)
        }
    }

    let mut de = serde_json::Deserializer::from_str(params);
    let found = (&mut de).deserialize_map(Field(name))?;
    de.end()?;
    Ok(found)
}

/// The path of the rule's request with the key's captures, and its kept query parameters.
fn request_target<'a>(rule: &Rule, value: &impl Fn(&str) -> Option<&'a str>) -> Result<String, &'static str> {
    let mut captures = Vec::new();
    for name in rule.pattern.captures() {
        captures.push(value(name).ok_or("lacks a captured path parameter")?.to_string());
    }
    let mut target = rule.pattern.render_path(&captures);
    let mut sep = '?';
    for name in &rule.keep_query {
        if let Some(v) = value(name) {
            target.push(sep);
            target.push_str(name);
            target.push('=');
            target.push_str(v);
            sep = '&';
        }
    }
    Ok(target)
}

/// What a source produced for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A value to write, for at most `max_ttl` when the source says so (HTTP `max-age`).
    Value {
        /// The value.
        value: Vec<u8>,
        /// An upper bound on the TTL.
        max_ttl: Option<Duration>,
    },
    /// A Redis `DUMP` payload and the peer's remaining TTL (`None`: it never expires).
    Dump {
        /// The serialized value.
        payload: Vec<u8>,
        /// The remaining TTL on the peer.
        ttl: Option<Duration>,
    },
    /// The source has nothing for this key (no row, 404, no such file, absent on the peer).
    Missing,
    /// The response may not be cached (`Cache-Control: no-store` or `private`, a redirect).
    Uncacheable,
    /// The request was replayed and the application caches its own answer: nothing to write.
    Replayed,
}

/// The client of one kind of source.
enum Client {
    Sql(SqlSource),
    // Boxed like `Peer`: a client, a parsed URL and a connection pool.
    Http(Box<HttpSource>),
    File(FileSource),
    Command(CommandSource),
    // Boxed: a Redis client with its connection slot is several times the others' size.
    Peer(Box<PeerRedisSource>),
}

/// An opened source: its client, and the caps on its work in flight.
pub struct Source {
    name: String,
    client: Client,
    permits: Semaphore,
    pacer: Option<Pacer>,
}

impl Source {
    /// Opens a source: resolves `env:`/`file:` references and sets up its client, without
    /// connecting, so a server that is down now costs its rules later, not the start.
    pub fn open(settings: &SourceSettings) -> Result<Self, SourceError> {
        let name = settings.name.as_str();
        let secret = |v: &str| resolve_secret(v).map_err(|m| SourceError::fatal(name, m));
        let max = settings.max_value_bytes;
        let client = match &settings.kind {
            SourceKind::Sql { url } => Client::Sql(SqlSource::new(
                name,
                &secret(url)?,
                u32::try_from(settings.concurrency).unwrap_or(u32::MAX),
                settings.timeout,
            )?),
            SourceKind::Http { url, mode, headers } => {
                let mut resolved = Vec::with_capacity(headers.len());
                for (header, value) in headers {
                    resolved.push((header.clone(), secret(value)?));
                }
                Client::Http(Box::new(HttpSource::new(
                    name,
                    &secret(url)?,
                    *mode,
                    &resolved,
                    settings.timeout,
                    max,
                )?))
            }
            SourceKind::File { root } => Client::File(FileSource::new(name, root, max, settings.timeout)?),
            SourceKind::Command { argv, input } => {
                Client::Command(CommandSource::new(name, argv, *input, settings.timeout, max)?)
            }
            SourceKind::Redis { url } => {
                Client::Peer(Box::new(PeerRedisSource::new(name, &secret(url)?, settings.timeout)?))
            }
        };
        Ok(Source {
            name: name.to_string(),
            client,
            permits: Semaphore::new(settings.concurrency.max(1)),
            pacer: settings.qps.map(Pacer::new),
        })
    }

    /// Reaches the source once without loading anything: `SELECT 1`, `HEAD` on the base URL,
    /// listing the root, finding the program, `PING`.
    pub async fn check(&self) -> Result<(), SourceError> {
        match &self.client {
            Client::Sql(s) => s.ping().await,
            Client::Http(s) => s.ping().await,
            Client::File(s) => s.ping(),
            Client::Command(s) => s.ping(),
            Client::Peer(s) => s.ping().await,
        }
    }

    /// Checks how a rule asks this source without loading anything: a SQL query is prepared
    /// by the database, so a missing table or column, a syntax error, a key of the wrong
    /// type or a column preheat cannot read is named before a warm. Other fetches have
    /// nothing to check beyond [`Source::check`].
    pub async fn check_fetch(&self, fetch: &Fetch) -> Result<(), SourceError> {
        match (&self.client, fetch) {
            (Client::Sql(sql), Fetch::Sql { query, .. }) => sql.check_query(query).await,
            _ => Ok(()),
        }
    }

    /// Waits for a place within the concurrency and rate caps.
    async fn admit(&self) -> tokio::sync::SemaphorePermit<'_> {
        let permit = self.permits.acquire().await.expect("the semaphore is never closed");
        if let Some(pacer) = &self.pacer {
            pacer.wait().await;
        }
        permit
    }

    /// Loads a batch: one result per job, in order. A batched source (SQL, peer Redis) fails
    /// the whole batch alike; the others answer key by key, within the caps.
    pub async fn fetch(&self, fetch: &Fetch, jobs: &[&Job]) -> Vec<Result<Fetched, SourceError>> {
        if jobs.is_empty() {
            return Vec::new();
        }
        let all = |r: Result<Vec<Fetched>, SourceError>| match r {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e); jobs.len()],
        };
        match (&self.client, fetch) {
            (Client::Sql(sql), Fetch::Sql { query, .. }) => {
                let _permit = self.admit().await;
                let lookups: Vec<String> = jobs.iter().map(|j| j.input.text().to_string()).collect();
                all(sql.fetch(query, &lookups).await.map(|rows| match_rows(jobs, rows)))
            }
            (Client::Peer(peer), Fetch::Peer) => {
                let _permit = self.admit().await;
                let keys: Vec<&str> = jobs.iter().map(|j| j.key.as_str()).collect();
                all(peer.fetch(&keys).await)
            }
            (Client::Http(http), Fetch::Http { method }) => {
                self.each(jobs, |job| http.fetch(method, job.input.text())).await
            }
            (Client::File(file), Fetch::File { .. }) => {
                self.each(jobs, |job| file.fetch(job.input.text())).await
            }
            (Client::Command(command), Fetch::Command { .. }) => {
                self.each(jobs, |job| async move {
                    match &job.input {
                        Input::Args(args) => command.fetch(args, "").await,
                        other => command.fetch(&[], other.text()).await,
                    }
                })
                .await
            }
            (client, _) => {
                let name = match client {
                    Client::Sql(_) => "sql",
                    Client::Http(_) => "http",
                    Client::File(_) => "file",
                    Client::Command(_) => "command",
                    Client::Peer(_) => "redis",
                };
                let e = SourceError::fatal(
                    &self.name,
                    format!("a rule's settings do not fit this {name} source"),
                );
                vec![Err(e); jobs.len()]
            }
        }
    }

    /// Runs `one` for every job, as many at once as the caps allow.
    async fn each<'a, F, Fut>(&'a self, jobs: &'a [&'a Job], one: F) -> Vec<Result<Fetched, SourceError>>
    where
        F: Fn(&'a Job) -> Fut,
        Fut: std::future::Future<Output = Result<Fetched, SourceError>>,
    {
        futures_util::future::join_all(jobs.iter().map(|job| {
            let work = one(job);
            async move {
                let _permit = self.admit().await;
                work.await
            }
        }))
        .await
    }
}

/// Matches rows to jobs by looked-up value. Several keys may share one value (a category's
/// pages): each such key gets a copy, and the first row for a value wins.
fn match_rows(jobs: &[&Job], rows: Vec<(String, Vec<u8>)>) -> Vec<Fetched> {
    let n = jobs.len();
    // Each value's keys are chained, so values are moved, not copied, into the last of them.
    // ahash: SipHash took 3% of a batched warm's instructions here (callgrind).
    let mut first_of: HashMap<&str, usize, ahash::RandomState> =
        HashMap::with_capacity_and_hasher(n, ahash::RandomState::new());
    let mut next_same = vec![usize::MAX; n];
    for (i, job) in jobs.iter().enumerate().rev() {
        if let Some(later) = first_of.insert(job.input.text(), i) {
            next_same[i] = later;
        }
    }
    let mut values: Vec<Option<Vec<u8>>> = vec![None; n];
    for (lookup, value) in rows {
        let Some(&first) = first_of.get(lookup.as_str()) else { continue };
        if values[first].is_some() {
            continue;
        }
        let mut i = next_same[first];
        while i != usize::MAX {
            values[i] = Some(value.clone());
            i = next_same[i];
        }
        values[first] = Some(value);
    }
    values
        .into_iter()
        .map(|v| v.map_or(Fetched::Missing, |value| Fetched::Value { value, max_ttl: None }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_string_field_is_read_from_a_json_object() {
        let field = |json: &str| string_field(json, "id");
        assert_eq!(field(r#"{"page":"2","id":"42"}"#).expect("object"), Some("42".into()));
        // Escapes in names and values, a repeated name (the last counts, as in a parsed map).
        assert_eq!(field(r#"{"i\u0064":"a\"b","id":"c\\d"}"#).expect("object"), Some("c\\d".into()));
        assert_eq!(field(r#"{"i\u0064":"a\"b"}"#).expect("object"), Some("a\"b".into()));
        // Other values are skipped whatever they hold; a non-string answer is no answer.
        assert_eq!(field(r#"{"x":{"id":"no"},"y":[1,{"id":2}]}"#).expect("object"), None);
        assert_eq!(field(r#"{"id":42}"#).expect("object"), None);
        for bad in ["", "[]", r#""id""#, r#"{"id":"1""#, r#"{"id":"1"} x"#, r#"{"id":"1",}"#] {
            assert!(field(bad).is_err(), "{bad:?}");
        }
    }
}
