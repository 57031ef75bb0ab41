//! SQL sources: one query per batch of keys, on PostgreSQL (sqlx) or SQLite (see
//! [`super::sqlite`]).
//!
//! A rule's query names its batch as `$1`, written either `IN ($1)` (expanded to one
//! placeholder per key on every database) or `= ANY($1)` (bound as one array on PostgreSQL,
//! rewritten to `IN (...)` on SQLite). The first result column is matched against the key
//! parameter; the value is the second column (bytes or text) or the whole row as JSON.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgDatabaseError, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Connection, Row, TypeInfo, ValueRef};

use super::SourceError;
use super::sqlite::{Param, SqliteDb, SqliteFailure};
use crate::failure::FailureReason;
use crate::secret::{redact_url, scrub};

/// How a row becomes a cached value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// The second column's bytes (a text column's UTF-8).
    Bytes,
    /// The second column as text.
    Text,
    /// The whole row as a JSON object keyed by column name.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// `IN ($1)`: the span is `($1)`.
    InList,
    /// `= ANY($1)`: the span runs from `=` to the closing parenthesis.
    AnyArray,
}

/// A rule's query, checked when the config loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlQuery {
    sql: String,
    batch: Batch,
    span: (usize, usize),
    int_keys: bool,
    encoding: Encoding,
}

impl SqlQuery {
    /// Checks a query. `int_keys` binds keys as integers (for `{id:int}` captures), else as
    /// text.
    pub fn parse(sql: &str, int_keys: bool, encoding: Encoding) -> Result<Self, String> {
        let lower = sql.to_ascii_lowercase();
        if lower.matches("$1").count() != 1 || lower.contains("$2") {
            return Err("the query must use `$1` exactly once, for the batch of keys: \
                        `... WHERE id IN ($1)` or `... WHERE id = ANY($1)`"
                .into());
        }
        let at = lower.find("$1").unwrap_or(0);
        let before = lower[..at].trim_end();
        let close = lower[at..].find(')').map(|i| at + i + 1);
        let (batch, span) = if let (Some(open), Some(close)) = (before.strip_suffix('('), close) {
            let open_at = open.len();
            let head = open.trim_end();
            if head.ends_with(" in") || head.ends_with(")in") || head == "in" {
                (Batch::InList, (open_at, close))
            } else if let Some(eq) =
                head.strip_suffix("any").map(str::trim_end).and_then(|h| h.strip_suffix('='))
            {
                (Batch::AnyArray, (eq.len(), close))
            } else {
                return Err("`$1` must appear as `IN ($1)` or `= ANY($1)`".into());
            }
        } else {
            return Err("`$1` must appear as `IN ($1)` or `= ANY($1)`".into());
        };
        if lower[span.0..span.1].contains(',') {
            return Err("`$1` stands for the whole batch: write `IN ($1)`, not a list".into());
        }
        Ok(SqlQuery { sql: sql.to_string(), batch, span, int_keys, encoding })
    }

    fn expand(&self, n: usize, postgres: bool) -> String {
        if postgres && self.batch == Batch::AnyArray {
            return self.sql.clone();
        }
        // Built in one string: a string per placeholder cost 7% of a batched PostgreSQL warm's
        // instructions (callgrind).
        let (head, tail) = (&self.sql[..self.span.0], &self.sql[self.span.1..]);
        let mut sql = String::with_capacity(head.len() + tail.len() + 8 * n + 8);
        sql.push_str(head);
        sql.push_str(if self.batch == Batch::AnyArray { "IN (" } else { "(" });
        for i in 1..=n {
            if i > 1 {
                sql.push_str(", ");
            }
            if postgres {
                sql.push('$');
                sql.push_str(itoa::Buffer::new().format(i));
            } else {
                sql.push('?');
            }
        }
        sql.push(')');
        sql.push_str(tail);
        sql
    }
}

enum Pool {
    Sqlite(SqliteDb),
    // Boxed: its connect options are several times the size of the SQLite handle.
    Postgres(Box<Postgres>),
}

/// A PostgreSQL pool, and what it takes to say why it cannot connect.
///
/// sqlx's pool retries a refused connection until its acquire timeout and then reports only
/// "pool timed out", so while the pool holds no connection a batch first connects once by
/// itself: a refused connection, a failed login or an unknown host is then named at once.
struct Postgres {
    pool: PgPool,
    options: PgConnectOptions,
    /// A direct connection has succeeded since the last connection failure.
    reached: AtomicBool,
    /// One direct connection at a time.
    probing: tokio::sync::Mutex<()>,
}

/// A SQL database to load values from.
pub struct SqlSource {
    name: String,
    url: String,
    redacted: String,
    pool: Pool,
    timeout: Duration,
}

impl SqlSource {
    /// Sets up a connection pool without connecting: a database that is down now costs the
    /// rules that use it when they run, not the start of the warm.
    pub fn new(name: &str, url: &str, max_connections: u32, timeout: Duration) -> Result<Self, SourceError> {
        let err = |message: String| SourceError::fatal(name, message);
        let redacted = redact_url(url);
        let pool = if url.starts_with("sqlite:") {
            let db = SqliteDb::new(url, max_connections, timeout)
                .map_err(|e| err(format!("bad SQLite URL `{redacted}`: {e}")))?;
            Pool::Sqlite(db)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url).map_err(|e| {
                err(format!("bad PostgreSQL URL `{redacted}`: {}", scrub(&e.to_string(), url)))
            })?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(timeout)
                .connect_lazy_with(options.clone());
            Pool::Postgres(Box::new(Postgres {
                pool,
                options,
                reached: AtomicBool::new(false),
                probing: tokio::sync::Mutex::new(()),
            }))
        } else {
            return Err(err(format!("`{redacted}` is not a `postgres://` or `sqlite://` URL")));
        };
        Ok(SqlSource { name: name.to_string(), url: url.to_string(), redacted, pool, timeout })
    }

    /// The URL, password removed.
    pub fn describe(&self) -> &str {
        &self.redacted
    }

    fn error(&self, e: &sqlx::Error) -> SourceError {
        let (message, retryable) = match &self.pool {
            Pool::Postgres(pg) => describe_pg_error(e, &pg.options, self.timeout),
            Pool::Sqlite(_) => (e.to_string(), false),
        };
        if let Pool::Postgres(pg) = &self.pool
            && is_connection_error(e)
        {
            pg.reached.store(false, Ordering::Relaxed);
        }
        SourceError {
            source_name: self.name.clone(),
            message: scrub(&message, &self.url),
            retryable,
            reason: if matches!(e, sqlx::Error::PoolTimedOut) {
                FailureReason::SourceTimeout
            } else {
                FailureReason::SourceError
            },
        }
    }

    /// While the pool holds no connection, connects once directly so that a connection that
    /// fails says why (see [`Postgres`]).
    async fn reach(&self, pg: &Postgres) -> Result<(), SourceError> {
        if pg.pool.size() > 0 || pg.reached.load(Ordering::Relaxed) {
            return Ok(());
        }
        let _one_at_a_time = pg.probing.lock().await;
        if pg.pool.size() > 0 || pg.reached.load(Ordering::Relaxed) {
            return Ok(());
        }
        let conn = tokio::time::timeout(self.timeout, pg.options.connect()).await.map_err(|_| SourceError {
            source_name: self.name.clone(),
            message: format!(
                "{} did not answer within {}: a firewall dropping packets, or a server too busy to accept",
                pg_address(&pg.options),
                humantime::format_duration(self.timeout)
            ),
            retryable: true,
            reason: FailureReason::SourceTimeout,
        })?;
        let conn = conn.map_err(|e| self.error(&e))?;
        let _ = conn.close().await;
        pg.reached.store(true, Ordering::Relaxed);
        Ok(())
    }

    fn sqlite_error(&self, e: SqliteFailure) -> SourceError {
        if e.timed_out {
            return self.timed_out();
        }
        SourceError {
            source_name: self.name.clone(),
            message: scrub(&e.message, &self.url),
            retryable: e.retryable,
            reason: FailureReason::SourceError,
        }
    }

    fn timed_out(&self) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            message: format!("query took longer than {:?}", self.timeout),
            retryable: true,
            reason: FailureReason::SourceTimeout,
        }
    }

    /// Loads the values of a batch of keys: `(key parameter, value)` for every row found.
    /// Keys the database does not have are simply absent from the result.
    pub async fn fetch(
        &self,
        query: &SqlQuery,
        keys: &[String],
    ) -> Result<Vec<(String, Vec<u8>)>, SourceError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        // One entry per key, aligned with `keys`: an id that does not fit an i64 binds as NULL
        // and so simply finds no row.
        let ints: Vec<Option<i64>> = keys.iter().map(|k| k.parse().ok()).collect();
        macro_rules! bind_each {
            ($q:expr) => {{
                let mut q = $q;
                for (k, id) in keys.iter().zip(&ints) {
                    q = if query.int_keys { q.bind(*id) } else { q.bind(k.clone()) };
                }
                q
            }};
        }
        match &self.pool {
            Pool::Sqlite(db) => {
                let params = if query.int_keys {
                    ints.into_iter().map(Param::Int).collect()
                } else {
                    keys.iter().map(|k| Param::Text(k.clone())).collect()
                };
                let sql = query.expand(keys.len(), false);
                db.fetch(sql, params, query.encoding).await.map_err(|e| self.sqlite_error(e))
            }
            Pool::Postgres(pg) => {
                self.reach(pg).await?;
                let pool = &pg.pool;
                let q = sqlx::query(AssertSqlSafe(query.expand(keys.len(), true)));
                let q = match (query.batch, query.int_keys) {
                    (Batch::AnyArray, true) => q.bind(ints.iter().flatten().copied().collect::<Vec<i64>>()),
                    (Batch::AnyArray, false) => q.bind(keys.to_vec()),
                    (Batch::InList, _) => bind_each!(q),
                };
                let rows = self.timed(q.fetch_all(pool)).await?;
                let kinds = column_kinds(&rows);
                let mut found = Vec::with_capacity(rows.len());
                found.extend(rows.iter().filter_map(|r| decode(r, &kinds, query.encoding)));
                Ok(found)
            }
        }
    }

    /// Connects and runs `SELECT 1` (for `preheat config check --connect`).
    pub async fn ping(&self) -> Result<(), SourceError> {
        match &self.pool {
            Pool::Sqlite(db) => db.ping().await.map_err(|e| self.sqlite_error(e)),
            Pool::Postgres(pg) => {
                self.reach(pg).await?;
                self.timed(sqlx::query("SELECT 1").execute(&pg.pool)).await.map(|_| ())
            }
        }
    }

    /// A query with the source's timeout, its errors classified.
    async fn timed<T>(
        &self,
        query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, SourceError> {
        tokio::time::timeout(self.timeout, query)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.error(&e))
    }
}

/// `host:port` (or the socket) a PostgreSQL URL names.
fn pg_address(options: &PgConnectOptions) -> String {
    match options.get_socket() {
        Some(socket) => format!("PostgreSQL at `{}`", socket.display()),
        None => format!("PostgreSQL at {}:{}", options.get_host(), options.get_port()),
    }
}

/// Whether the error means the connection itself failed (so the next batch connects anew).
fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut)
}

/// A PostgreSQL error in words that name the cause and the fix, and whether retrying may help.
/// The server's own message is used, never its source file and line (sqlx's `Display` adds
/// "at line N", which reads like a place in the user's config).
fn describe_pg_error(e: &sqlx::Error, options: &PgConnectOptions, timeout: Duration) -> (String, bool) {
    let at = pg_address(options);
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            (format!("connection refused by {at}: is the server running and listening there?"), true)
        }
        sqlx::Error::Io(io) if io.to_string().contains("lookup") || io.to_string().contains("resolve") => {
            (format!("unknown host `{}`: check the host name in the source URL", options.get_host()), false)
        }
        sqlx::Error::Io(io) => (format!("cannot talk to {at}: {io}"), true),
        sqlx::Error::Tls(tls) => {
            (format!("TLS with {at} failed: {tls} (check `sslmode` and `sslrootcert` in the URL)"), false)
        }
        sqlx::Error::PoolTimedOut => (
            format!(
                "no connection to {at} within {}: every connection was busy or the server did not answer",
                humantime::format_duration(timeout)
            ),
            true,
        ),
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            let user = options.get_username();
            let database = options.get_database().unwrap_or(user);
            let message = match code.as_ref() {
                "28P01" | "28000" => format!(
                    "authentication failed for user `{user}` at {at}: check the password (in the URL, or the \
                     variable or file it names) and the server's pg_hba.conf"
                ),
                "3D000" => format!("database `{database}` does not exist at {at}: check the URL's path"),
                "42P01" | "42703" | "42601" | "42883" => {
                    let position = db
                        .try_downcast_ref::<PgDatabaseError>()
                        .and_then(|pg| match pg.position() {
                            Some(sqlx::postgres::PgErrorPosition::Original(n)) => Some(n),
                            _ => None,
                        })
                        .map_or(String::new(), |n| format!(" (at character {n} of the rule's query)"));
                    format!("the rule's query is wrong: {}{position}", db.message())
                }
                _ => db.message().to_string(),
            };
            // Too many connections, a server starting or shutting down: may pass.
            let retryable =
                matches!(code.as_ref(), "53300" | "57P01" | "57P02" | "57P03" | "40001" | "40P01");
            (message, retryable)
        }
        sqlx::Error::Protocol(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            (e.to_string(), true)
        }
        other => (other.to_string(), false),
    }
}

/// Runs a SQL script (several statements) against a SQLite database, creating its file if
/// needed: used to build the demo's database from `data/shop.sql`.
pub async fn run_script(url: &str, script: &str) -> Result<(), String> {
    super::sqlite::run_script(url, script.to_string())
        .await
        .map_err(|e| format!("`{}`: {}", redact_url(url), scrub(&e, url)))
}

/// What a column holds, from its PostgreSQL type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Int2,
    Int4,
    Int8,
    Float,
    Bool,
    Bytes,
    /// Anything else: decoded by trying the usual types in turn.
    Other,
}

impl Kind {
    fn of(type_name: &str) -> Kind {
        const NAMES: [(&str, Kind); 12] = [
            ("TEXT", Kind::Text),
            ("VARCHAR", Kind::Text),
            ("BPCHAR", Kind::Text),
            ("CHAR", Kind::Text),
            ("NAME", Kind::Text),
            ("INT8", Kind::Int8),
            ("INT4", Kind::Int4),
            ("INT2", Kind::Int2),
            ("FLOAT4", Kind::Float),
            ("FLOAT8", Kind::Float),
            ("BOOL", Kind::Bool),
            ("BYTEA", Kind::Bytes),
        ];
        NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(type_name)).map_or(Kind::Other, |(_, k)| *k)
    }
}

/// How each column of a batch's rows decodes, from its type: found once per batch, since
/// looking the type up by name in every cell took a share of the warm's CPU (a `perf`
/// profile of a batched PostgreSQL warm).
fn column_kinds(rows: &[PgRow]) -> Vec<Kind> {
    rows.first()
        .map_or_else(Vec::new, |r| r.columns().iter().map(|c| Kind::of(c.type_info().name())).collect())
}

fn kind_at(kinds: &[Kind], i: usize) -> Kind {
    kinds.get(i).copied().unwrap_or(Kind::Other)
}

/// A PostgreSQL cell as JSON: decoded by the column's type where it is a common one (a
/// failed decode builds an error, too slow to do per row), else by trying the usual types.
fn json(row: &PgRow, i: usize, kind: Kind) -> serde_json::Value {
    use serde_json::Value;
    let Ok(raw) = row.try_get_raw(i) else { return Value::Null };
    if raw.is_null() {
        return Value::Null;
    }
    let decoded = match kind {
        Kind::Text => row.try_get::<String, _>(i).ok().map(Value::from),
        Kind::Int8 => row.try_get::<i64, _>(i).ok().map(Value::from),
        Kind::Int4 => row.try_get::<i32, _>(i).ok().map(Value::from),
        Kind::Int2 => row.try_get::<i16, _>(i).ok().map(Value::from),
        Kind::Float => row.try_get::<f64, _>(i).ok().map(Value::from),
        Kind::Bool => row.try_get::<bool, _>(i).ok().map(Value::from),
        Kind::Bytes | Kind::Other => None,
    };
    if let Some(v) = decoded {
        return v;
    }
    if let Ok(v) = row.try_get::<i64, _>(i) {
        return Value::from(v);
    }
    if let Ok(v) = row.try_get::<i32, _>(i) {
        return Value::from(v);
    }
    if let Ok(v) = row.try_get::<f64, _>(i) {
        return Value::from(v);
    }
    if let Ok(v) = row.try_get::<bool, _>(i) {
        return Value::from(v);
    }
    if let Ok(v) = row.try_get::<String, _>(i) {
        return Value::from(v);
    }
    row.try_get::<Vec<u8>, _>(i)
        .map_or(Value::Null, |b| Value::from(String::from_utf8_lossy(&b).into_owned()))
}

/// A PostgreSQL cell as bytes: `bytea` as it is, text as UTF-8, anything else as its JSON.
fn bytes(row: &PgRow, i: usize, kind: Kind) -> Option<Vec<u8>> {
    if kind == Kind::Bytes
        && let Ok(b) = row.try_get::<&[u8], _>(i)
    {
        return Some(b.to_vec());
    }
    if kind == Kind::Text {
        // Text arrives in the connection's client encoding, UTF-8, so its bytes are copied as
        // they are rather than checked again.
        let raw = row.try_get_raw(i).ok()?;
        return if raw.is_null() { None } else { raw.as_bytes().ok().map(<[u8]>::to_vec) };
    }
    if let Ok(b) = row.try_get::<Vec<u8>, _>(i) {
        return Some(b);
    }
    match json(row, i, kind) {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.into_bytes()),
        other => Some(other.to_string().into_bytes()),
    }
}

/// The key column as text, as in its JSON without quotes (`42`, `abc`); `None` when NULL.
/// Integers and text are read directly: through a JSON value, the key cost as much as the
/// rest of the row's decoding (callgrind).
fn key_text(row: &PgRow, kind: Kind) -> Option<String> {
    let direct = match kind {
        Kind::Int8 => row.try_get::<Option<i64>, _>(0).ok().map(|v| v.map(|v| v.to_string())),
        Kind::Int4 => row.try_get::<Option<i32>, _>(0).ok().map(|v| v.map(|v| v.to_string())),
        Kind::Int2 => row.try_get::<Option<i16>, _>(0).ok().map(|v| v.map(|v| v.to_string())),
        Kind::Text => row.try_get::<Option<String>, _>(0).ok(),
        _ => None,
    };
    if let Some(key) = direct {
        return key;
    }
    match json(row, 0, kind) {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// `(key parameter, value)` of a row; `None` when its key or value is NULL.
fn decode(row: &PgRow, kinds: &[Kind], encoding: Encoding) -> Option<(String, Vec<u8>)> {
    let key = key_text(row, kind_at(kinds, 0))?;
    let value = match encoding {
        Encoding::Bytes | Encoding::Text => bytes(row, 1, kind_at(kinds, 1))?,
        Encoding::Json => {
            let object: serde_json::Map<String, serde_json::Value> = row
                .columns()
                .iter()
                .enumerate()
                .map(|(i, c)| (c.name().to_string(), json(row, i, kind_at(kinds, i))))
                .collect();
            serde_json::Value::Object(object).to_string().into_bytes()
        }
    };
    Some((key, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_placeholders_expand_per_database() {
        let q = SqlQuery::parse("SELECT id, body FROM p WHERE id IN ($1) AND live", true, Encoding::Bytes)
            .expect("valid");
        assert_eq!(q.expand(3, false), "SELECT id, body FROM p WHERE id IN (?, ?, ?) AND live");
        assert_eq!(q.expand(2, true), "SELECT id, body FROM p WHERE id IN ($1, $2) AND live");
        let q = SqlQuery::parse("select id, body from p where id = ANY($1)", false, Encoding::Text)
            .expect("valid");
        assert_eq!(q.expand(2, true), "select id, body from p where id = ANY($1)");
        assert_eq!(q.expand(2, false), "select id, body from p where id IN (?, ?)");
        let q =
            SqlQuery::parse("SELECT id, body FROM p WHERE id in($1)", true, Encoding::Bytes).expect("valid");
        assert_eq!(q.expand(1, false), "SELECT id, body FROM p WHERE id in(?)");
    }

    #[test]
    fn malformed_batches_are_refused() {
        for bad in [
            "SELECT id, body FROM p WHERE id = $1",
            "SELECT id, body FROM p WHERE id IN ($1, $2)",
            "SELECT id, body FROM p WHERE id IN (?)",
            "SELECT id, body FROM p WHERE id IN ($1) OR id IN ($1)",
        ] {
            assert!(SqlQuery::parse(bad, true, Encoding::Bytes).is_err(), "{bad}");
        }
    }
}
