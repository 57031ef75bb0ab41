//! SQL sources: one query per batch of keys, on PostgreSQL and MySQL/MariaDB (sqlx; see
//! [`super::postgres`] and [`super::mysql`]) or SQLite (see [`super::sqlite`]).
//!
//! A rule's query names its batch as `$1`, written either `IN ($1)` (expanded to one
//! placeholder per key, in each database's own syntax) or `= ANY($1)` (bound as one array on
//! PostgreSQL, rewritten to `IN (...)` elsewhere). The first result column is matched against
//! the key parameter; the value is the second column (bytes or text) or the whole row as JSON.

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::mysql::{MySql, MySqlConnectOptions};
use sqlx::postgres::{PgConnectOptions, Postgres};
use sqlx::{AssertSqlSafe, Column, ConnectOptions, Connection, Database, Executor, Row, SqlSafeStr};

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

    fn expand(&self, n: usize, numbered: bool) -> String {
        if numbered && self.batch == Batch::AnyArray {
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
            if numbered {
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

/// The database behind a source.
enum Pool {
    Sqlite(SqliteDb),
    // Boxed: their connect options are several times the size of the SQLite handle.
    Postgres(Box<Server<Postgres>>),
    MySql(Box<Server<MySql>>),
}

/// What differs between the servers preheat reaches through sqlx: how an error reads, and
/// how a result cell decodes.
pub(super) trait Dialect: Database {
    /// How a column decodes, from its type.
    type Kind: Copy;

    /// The URL settings that configure TLS, for the hint of a failed handshake.
    const TLS_SETTINGS: &'static str;

    /// Where `options` point, for messages: `PostgreSQL at 127.0.0.1:5432`.
    fn address(options: &Options<Self>) -> String;

    /// The host `options` name.
    fn host(options: &Options<Self>) -> &str;

    /// An error the server sent, in words that name the cause and the fix, and whether
    /// retrying may help.
    fn describe_database(db: &dyn sqlx::error::DatabaseError, options: &Options<Self>) -> (String, bool);

    /// The kind of a column of this type (by its name, as sqlx gives it).
    fn kind(type_name: &str) -> Self::Kind;

    /// Whether a column of this kind can be read as a value; the query casts any other to
    /// text (`config check --connect` says so).
    fn readable(kind: Self::Kind) -> bool;

    /// The cell at column `i` of `row`.
    fn cell(row: &Self::Row, i: usize, kind: Self::Kind) -> Cell<'_>;
}

/// A server's connect options.
pub(super) type Options<DB> = <<DB as Database>::Connection as Connection>::Options;

/// A pool of connections to one server, and what it takes to say why it cannot connect.
///
/// sqlx's pool retries a refused connection until its acquire timeout and then reports only
/// "pool timed out", so while the pool holds no connection a batch first connects once by
/// itself: a refused connection, a failed login or an unknown host is then named at once.
struct Server<DB: Dialect> {
    pool: sqlx::Pool<DB>,
    options: Options<DB>,
    /// A direct connection has succeeded since the last connection failure.
    reached: AtomicBool,
    /// One direct connection at a time.
    probing: tokio::sync::Mutex<()>,
}

impl<DB: Dialect> Server<DB> {
    fn new(options: Options<DB>, max_connections: u32, timeout: Duration) -> Self {
        let pool = sqlx::pool::PoolOptions::<DB>::new()
            .max_connections(max_connections)
            .acquire_timeout(timeout)
            .connect_lazy_with(options.clone());
        Server { pool, options, reached: AtomicBool::new(false), probing: tokio::sync::Mutex::new(()) }
    }
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
        let bad = |product: &str, e: sqlx::Error| {
            err(format!("bad {product} URL `{redacted}`: {}", scrub(&e.to_string(), url)))
        };
        let pool = if url.starts_with("sqlite:") {
            let db = SqliteDb::new(url, max_connections, timeout)
                .map_err(|e| err(format!("bad SQLite URL `{redacted}`: {e}")))?;
            Pool::Sqlite(db)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let options = PgConnectOptions::from_str(url).map_err(|e| bad("PostgreSQL", e))?;
            Pool::Postgres(Box::new(Server::new(options, max_connections, timeout)))
        } else if url.starts_with("mysql:") || url.starts_with("mariadb:") {
            let options = MySqlConnectOptions::from_str(url).map_err(|e| bad("MySQL", e))?;
            Pool::MySql(Box::new(Server::new(options, max_connections, timeout)))
        } else {
            return Err(err(format!(
                "`{redacted}` is not a `postgres://`, `mysql://`, `mariadb://` or `sqlite://` URL"
            )));
        };
        Ok(SqlSource { name: name.to_string(), url: url.to_string(), redacted, pool, timeout })
    }

    /// The URL, password removed.
    pub fn describe(&self) -> &str {
        &self.redacted
    }

    fn error<DB: Dialect>(&self, server: &Server<DB>, e: &sqlx::Error) -> SourceError {
        let (message, retryable) = match e {
            sqlx::Error::Database(db) => DB::describe_database(db.as_ref(), &server.options),
            other => describe_transport::<DB>(other, &server.options, self.timeout),
        };
        if is_connection_error(e) {
            server.reached.store(false, Ordering::Relaxed);
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
    /// fails says why (see [`Server`]).
    async fn reach<DB: Dialect>(&self, server: &Server<DB>) -> Result<(), SourceError> {
        if server.pool.size() > 0 || server.reached.load(Ordering::Relaxed) {
            return Ok(());
        }
        let _one_at_a_time = server.probing.lock().await;
        if server.pool.size() > 0 || server.reached.load(Ordering::Relaxed) {
            return Ok(());
        }
        let conn = tokio::time::timeout(self.timeout, server.options.connect()).await.map_err(|_| {
            SourceError {
                source_name: self.name.clone(),
                message: format!(
                    "{} did not answer within {}: a firewall dropping packets, or a server too busy to accept",
                    DB::address(&server.options),
                    humantime::format_duration(self.timeout)
                ),
                retryable: true,
                reason: FailureReason::SourceTimeout,
            }
        })?;
        let conn = conn.map_err(|e| self.error(server, &e))?;
        let _ = conn.close().await;
        server.reached.store(true, Ordering::Relaxed);
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
                let q = sqlx::query(AssertSqlSafe(query.expand(keys.len(), true)));
                let q = match (query.batch, query.int_keys) {
                    (Batch::AnyArray, true) => q.bind(ints.iter().flatten().copied().collect::<Vec<i64>>()),
                    (Batch::AnyArray, false) => q.bind(keys.to_vec()),
                    (Batch::InList, _) => bind_each!(q),
                };
                let rows = self.timed(pg, q.fetch_all(&pg.pool)).await?;
                Ok(decode_rows::<Postgres>(&rows, query.encoding))
            }
            Pool::MySql(my) => {
                self.reach(my).await?;
                let q = bind_each!(sqlx::query(AssertSqlSafe(query.expand(keys.len(), false))));
                let rows = self.timed(my, q.fetch_all(&my.pool)).await?;
                Ok(decode_rows::<MySql>(&rows, query.encoding))
            }
        }
    }

    /// Connects and runs `SELECT 1` (for `preheat config check --connect`).
    pub async fn ping(&self) -> Result<(), SourceError> {
        match &self.pool {
            Pool::Sqlite(db) => db.ping().await.map_err(|e| self.sqlite_error(e)),
            Pool::Postgres(pg) => self.ping_server(pg).await,
            Pool::MySql(my) => self.ping_server(my).await,
        }
    }

    async fn ping_server<DB: Dialect>(&self, server: &Server<DB>) -> Result<(), SourceError>
    where
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    {
        self.reach(server).await?;
        self.timed(server, server.pool.execute("SELECT 1")).await.map(|_| ())
    }

    /// Has the server prepare a rule's query, without running it, and checks what it would
    /// return: a missing table or column, a syntax error or a key of the wrong type is then
    /// reported before any key is loaded (`preheat config check --connect`). SQLite's
    /// queries are checked the same way, by SQLite itself.
    pub async fn check_query(&self, query: &SqlQuery) -> Result<(), SourceError> {
        match &self.pool {
            Pool::Sqlite(db) => {
                db.check(query.expand(1, false), query.encoding).await.map_err(|e| self.sqlite_error(e))
            }
            Pool::Postgres(pg) => self.check_on(pg, query.expand(1, true), query.encoding).await,
            Pool::MySql(my) => self.check_on(my, query.expand(1, false), query.encoding).await,
        }
    }

    async fn check_on<DB: Dialect>(
        &self,
        server: &Server<DB>,
        sql: String,
        encoding: Encoding,
    ) -> Result<(), SourceError>
    where
        for<'c> &'c sqlx::Pool<DB>: Executor<'c, Database = DB>,
    {
        self.reach(server).await?;
        let statement = self.timed(server, server.pool.prepare(AssertSqlSafe(sql).into_sql_str())).await?;
        let columns: Vec<(String, String)> = sqlx::Statement::columns(&statement)
            .iter()
            .map(|c| (c.name().to_string(), sqlx::TypeInfo::name(c.type_info()).to_string()))
            .collect();
        result_shape(&columns, encoding, |type_name| DB::readable(DB::kind(type_name)))
            .map_err(|message| SourceError::fatal(&self.name, message))
    }

    /// A query with the source's timeout, its errors classified.
    async fn timed<DB: Dialect, T>(
        &self,
        server: &Server<DB>,
        query: impl std::future::Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, SourceError> {
        tokio::time::timeout(self.timeout, query)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| self.error(server, &e))
    }
}

/// Whether a query's result columns, `(name, type)`, make values in `encoding`: a key column
/// and a value column (or, for JSON, any columns) of types preheat reads.
pub(super) fn result_shape(
    columns: &[(String, String)],
    encoding: Encoding,
    readable: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let needed = if encoding == Encoding::Json { 1 } else { 2 };
    if columns.len() < needed {
        return Err(format!(
            "the rule's query returns {} column(s); it must return the key first and then {}",
            columns.len(),
            if encoding == Encoding::Json { "any columns" } else { "the value" }
        ));
    }
    let used = if encoding == Encoding::Json { columns.len() } else { 2 };
    if let Some((name, type_name)) = columns[..used].iter().find(|(_, t)| !readable(t)) {
        return Err(format!(
            "column `{name}` of the rule's query is {type_name}, which preheat does not read: \
             cast it in the query (`CAST({name} AS CHAR)` on MySQL, `{name}::text` on PostgreSQL)"
        ));
    }
    Ok(())
}

/// Runs a SQL script (several statements) against a SQLite database, creating its file if
/// needed: used to build the demo's database from `data/shop.sql`.
pub async fn run_script(url: &str, script: &str) -> Result<(), String> {
    super::sqlite::run_script(url, script.to_string())
        .await
        .map_err(|e| format!("`{}`: {}", redact_url(url), scrub(&e, url)))
}

/// An error on the way to the server (connecting, TLS, the pool), in words that name the
/// cause and the fix, and whether retrying may help.
fn describe_transport<DB: Dialect>(
    e: &sqlx::Error,
    options: &Options<DB>,
    timeout: Duration,
) -> (String, bool) {
    let at = DB::address(options);
    let tls_failed = |why: &dyn std::fmt::Display| {
        (format!("TLS with {at} failed: {why} (check {} in the URL)", DB::TLS_SETTINGS), false)
    };
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            (format!("connection refused by {at}: is the server running and listening there?"), true)
        }
        sqlx::Error::Io(io) if io.to_string().contains("lookup") || io.to_string().contains("resolve") => {
            (format!("unknown host `{}`: check the host name in the source URL", DB::host(options)), false)
        }
        sqlx::Error::Io(io) if io.to_string().contains("certificate") => tls_failed(io),
        sqlx::Error::Io(io) => (format!("cannot talk to {at}: {io}"), true),
        sqlx::Error::Tls(tls) => tls_failed(tls),
        sqlx::Error::PoolTimedOut => (
            format!(
                "no connection to {at} within {}: every connection was busy or the server did not answer",
                humantime::format_duration(timeout)
            ),
            true,
        ),
        sqlx::Error::Protocol(_) | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
            (e.to_string(), true)
        }
        other => (other.to_string(), false),
    }
}

/// Whether the error means the connection itself failed (so the next batch connects anew).
fn is_connection_error(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut)
}

/// A result cell, as far as a cached value needs it.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell<'r> {
    Null,
    Int(i64),
    UInt(u64),
    Float(f64),
    Bool(bool),
    /// Text in the connection's character set, UTF-8 (utf8mb4 on MySQL): its bytes are
    /// copied as they are rather than checked again.
    Text(&'r [u8]),
    /// Text that sqlx decoded (a MySQL `DECIMAL`, kept exact, or `JSON` document).
    Str(Cow<'r, str>),
    Bytes(Cow<'r, [u8]>),
}

impl Cell<'_> {
    /// As JSON: numbers and booleans as such, text and bytes (lossily) as strings.
    fn json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Cell::Null => Value::Null,
            Cell::Int(n) => Value::from(*n),
            Cell::UInt(n) => Value::from(*n),
            Cell::Float(f) => Value::from(*f),
            Cell::Bool(b) => Value::from(*b),
            Cell::Text(t) => Value::from(String::from_utf8_lossy(t).into_owned()),
            Cell::Str(d) => Value::from(d.as_ref()),
            Cell::Bytes(b) => Value::from(String::from_utf8_lossy(b).into_owned()),
        }
    }

    /// As a value's bytes: bytes and text as they are, anything else as its JSON; `None`
    /// when NULL.
    fn into_bytes(self) -> Option<Vec<u8>> {
        match self {
            Cell::Null => None,
            Cell::Text(t) => Some(t.to_vec()),
            Cell::Bytes(b) => Some(b.into_owned()),
            Cell::Str(d) => Some(d.into_owned().into_bytes()),
            other => Some(other.json().to_string().into_bytes()),
        }
    }

    /// As a key parameter, the text of its JSON without quotes (`42`, `abc`); `None` when
    /// NULL.
    fn into_key(self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Int(n) => Some(n.to_string()),
            Cell::UInt(n) => Some(n.to_string()),
            Cell::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
            Cell::Str(d) => Some(d.into_owned()),
            Cell::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
            other => Some(other.json().to_string()),
        }
    }
}

/// `(key parameter, value)` of each row whose key and value are not NULL. How each column
/// decodes is found once per batch, from the first row: looking the type up by name in every
/// cell took a share of the warm's CPU (a `perf` profile of a batched PostgreSQL warm).
fn decode_rows<DB: Dialect>(rows: &[DB::Row], encoding: Encoding) -> Vec<(String, Vec<u8>)> {
    let kinds: Vec<DB::Kind> = rows.first().map_or_else(Vec::new, |r| {
        r.columns().iter().map(|c| DB::kind(sqlx::TypeInfo::name(c.type_info()))).collect()
    });
    let kind = |i: usize| kinds.get(i).copied().unwrap_or_else(|| DB::kind(""));
    let mut found = Vec::with_capacity(rows.len());
    for row in rows {
        let Some(key) = DB::cell(row, 0, kind(0)).into_key() else { continue };
        let value = match encoding {
            Encoding::Bytes | Encoding::Text => DB::cell(row, 1, kind(1)).into_bytes(),
            Encoding::Json => {
                let object: serde_json::Map<String, serde_json::Value> = row
                    .columns()
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (c.name().to_string(), DB::cell(row, i, kind(i)).json()))
                    .collect();
                Some(serde_json::Value::Object(object).to_string().into_bytes())
            }
        };
        if let Some(value) = value {
            found.push((key, value));
        }
    }
    found
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
