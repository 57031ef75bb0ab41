//! SQLite databases, read with rusqlite on the runtime's blocking threads.
//!
//! A batch's query runs in one blocking call that copies each value once, straight out of
//! SQLite's row buffer. (sqlx, which reads PostgreSQL here, runs SQLite on a worker thread per
//! connection that copies every value into a row of its own and hands rows over one at a
//! time, which cost more instructions than SQLite's own lookups: a 100k-key warm from SQLite
//! into Redis runs a quarter fewer instructions this way, by callgrind.) Connections are
//! opened when first needed and kept for the next batch. A query that runs past the source's
//! timeout, or whose batch the warm's deadline cancels, is interrupted, so it neither holds
//! its connection nor keeps a thread busy.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, InterruptHandle, OpenFlags, Statement};

use super::sql::Encoding;

/// Why a SQLite call failed, and whether trying again may help.
#[derive(Debug)]
pub(super) struct SqliteFailure {
    pub message: String,
    pub retryable: bool,
    /// The query ran past the timeout and was interrupted.
    pub timed_out: bool,
}

impl From<rusqlite::Error> for SqliteFailure {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode::{
            CannotOpen, DatabaseBusy, DatabaseLocked, FileLockingProtocolFailed, SystemIoFailure,
        };
        let retryable = matches!(
            e.sqlite_error_code(),
            Some(CannotOpen | DatabaseBusy | DatabaseLocked | SystemIoFailure | FileLockingProtocolFailed)
        );
        SqliteFailure { message: e.to_string(), retryable, timed_out: false }
    }
}

/// A key bound into a batch's query.
pub(super) enum Param {
    /// An integer key; `None` (a key that does not fit an i64) binds NULL and finds no row.
    Int(Option<i64>),
    /// A text key.
    Text(String),
}

/// A SQLite database and the connections open to it.
pub(super) struct SqliteDb {
    uri: String,
    flags: OpenFlags,
    idle: Arc<Mutex<Vec<Connection>>>,
    slots: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

impl SqliteDb {
    /// Reads a `sqlite://PATH[?PARAMS]` or `sqlite:PATH` URL; nothing is opened yet.
    /// `PARAMS` are SQLite's URI parameters (`mode=ro`, `immutable=1`, `cache=shared`, ...).
    /// A missing file is an error, not a new empty database, unless `mode=rwc` asks for one.
    pub fn new(url: &str, max_connections: u32, timeout: Duration) -> Result<Self, String> {
        let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let (path, params) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err("names no database file (write `sqlite://path/to/file.db`)".into());
        }
        // In a SQLite URI `%` escapes a byte and `#` starts a fragment; a file name keeps both.
        let path = path.replace('%', "%25").replace('#', "%23");
        let uri = if params.is_empty() { format!("file:{path}") } else { format!("file:{path}?{params}") };
        let mut flags =
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if params.split('&').any(|p| p == "mode=rwc") {
            flags |= OpenFlags::SQLITE_OPEN_CREATE;
        }
        let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1) as usize));
        Ok(SqliteDb { uri, flags, idle: Arc::default(), slots, timeout })
    }

    /// Runs `sql` with `params` bound in order and returns `(key parameter, value)` for every
    /// row whose first two columns (or, for JSON, whose key) are not NULL.
    pub async fn fetch(
        &self,
        sql: String,
        params: Vec<Param>,
        encoding: Encoding,
    ) -> Result<Vec<(String, Vec<u8>)>, SqliteFailure> {
        self.call(move |conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            for (i, p) in params.iter().enumerate() {
                match p {
                    Param::Int(v) => stmt.raw_bind_parameter(i + 1, v)?,
                    Param::Text(v) => stmt.raw_bind_parameter(i + 1, v)?,
                }
            }
            read_rows(&mut stmt, encoding)
        })
        .await
    }

    /// Opens a connection (or takes an idle one) and runs `SELECT 1`.
    pub async fn ping(&self) -> Result<(), SqliteFailure> {
        self.call(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    /// Runs `work` on a connection on a blocking thread, within the timeout. The slot (and
    /// the connection) stays taken until the thread is done. A call that times out, or whose
    /// future is dropped (the warm's deadline cancels batches in flight), interrupts its
    /// query, which then fails at once and closes its connection.
    async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, SqliteFailure> + Send + 'static,
    ) -> Result<T, SqliteFailure> {
        let started = tokio::time::Instant::now();
        let timed_out = || SqliteFailure {
            message: format!("query took longer than {:?}", self.timeout),
            retryable: true,
            timed_out: true,
        };
        let slot = tokio::time::timeout(self.timeout, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| timed_out())?
            .map_err(|_| SqliteFailure {
                message: "the source is closed".into(),
                retryable: false,
                timed_out: false,
            })?;
        let (idle, uri, flags, timeout) = (self.idle.clone(), self.uri.clone(), self.flags, self.timeout);
        let running = Running::default();
        let handle = running.0.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let conn = match idle.lock().unwrap_or_else(PoisonError::into_inner).pop() {
                Some(conn) => conn,
                None => open(&uri, flags, timeout)?,
            };
            *handle.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.get_interrupt_handle());
            let result = work(&conn);
            // No interrupt may reach the connection once another call can have it.
            handle.lock().unwrap_or_else(PoisonError::into_inner).take();
            // A connection whose call failed may be the cause: the next call opens a new one.
            if result.is_ok() {
                idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
            }
            result
        });
        let left = self.timeout.saturating_sub(started.elapsed());
        let outcome = match tokio::time::timeout(left, task).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => Err(SqliteFailure {
                message: format!("the query's thread failed: {e}"),
                retryable: true,
                timed_out: false,
            }),
            Err(_) => Err(timed_out()),
        };
        drop(running); // interrupts the query if it still runs
        outcome
    }
}

/// The interrupt handle of the query a call runs, while it runs; dropping this interrupts it.
#[derive(Default)]
struct Running(Arc<Mutex<Option<InterruptHandle>>>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(h) = self.0.lock().unwrap_or_else(PoisonError::into_inner).take() {
            h.interrupt();
        }
    }
}

fn open(uri: &str, flags: OpenFlags, timeout: Duration) -> Result<Connection, SqliteFailure> {
    let conn = Connection::open_with_flags(uri, flags)?;
    // A writer holding the lock makes a read wait (up to the query's timeout), not fail.
    conn.busy_timeout(timeout)?;
    Ok(conn)
}

/// What a column holds, from its declared type: SQLite stores booleans as integers.
fn declared_bool(stmt: &Statement<'_>) -> Vec<bool> {
    stmt.columns()
        .iter()
        .map(|c| {
            c.decl_type().is_some_and(|t| t.eq_ignore_ascii_case("BOOLEAN") || t.eq_ignore_ascii_case("BOOL"))
        })
        .collect()
}

fn read_rows(stmt: &mut Statement<'_>, encoding: Encoding) -> Result<Vec<(String, Vec<u8>)>, SqliteFailure> {
    let bools = declared_bool(stmt);
    let names: Vec<String> = stmt.column_names().into_iter().map(str::to_string).collect();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        // Integers and text directly: through a JSON value, the key cost more than the row.
        let key = match row.get_ref(0)? {
            ValueRef::Integer(i) if !bools[0] => i.to_string(),
            ValueRef::Text(b) => String::from_utf8_lossy(b).into_owned(),
            v => match json(v, bools[0]) {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            },
        };
        let value = match encoding {
            Encoding::Bytes | Encoding::Text => match row.get_ref(1)? {
                ValueRef::Null => continue,
                ValueRef::Text(b) | ValueRef::Blob(b) => b.to_vec(),
                v => json(v, bools[1]).to_string().into_bytes(),
            },
            Encoding::Json => {
                let mut object = serde_json::Map::with_capacity(names.len());
                for (i, name) in names.iter().enumerate() {
                    object.insert(name.clone(), json(row.get_ref(i)?, bools[i]));
                }
                serde_json::Value::Object(object).to_string().into_bytes()
            }
        };
        out.push((key, value));
    }
    Ok(out)
}

/// One cell as JSON: text that is not UTF-8, and blobs, become text with replacement
/// characters.
fn json(v: ValueRef<'_>, declared_bool: bool) -> serde_json::Value {
    use serde_json::Value;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) if declared_bool => Value::Bool(i != 0),
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => Value::from(f),
        ValueRef::Text(b) | ValueRef::Blob(b) => Value::from(String::from_utf8_lossy(b).into_owned()),
    }
}

/// Runs a SQL script (several statements), creating the database file if needed.
pub(super) async fn run_script(url: &str, script: String) -> Result<(), String> {
    let db = SqliteDb::new(url, 1, Duration::from_secs(60))?;
    let flags = db.flags | OpenFlags::SQLITE_OPEN_CREATE;
    let uri = db.uri.clone();
    tokio::task::spawn_blocking(move || {
        let conn = Connection::open_with_flags(&uri, flags).map_err(|e| format!("cannot open it: {e}"))?;
        conn.execute_batch(&script).map_err(|e| format!("the script failed: {e}"))
    })
    .await
    .map_err(|e| format!("the script's thread failed: {e}"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new SQLite file in a temporary directory, built by `script`; the directory lives as
    /// long as the returned guard.
    async fn scratch_db(script: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
        run_script(&url, script.into()).await.expect("schema");
        (dir, url)
    }

    #[test]
    fn urls_become_sqlite_uris() {
        let db = SqliteDb::new("sqlite://data/a#1%.db?mode=ro&immutable=1", 2, Duration::from_secs(1))
            .expect("valid");
        assert_eq!(db.uri, "file:data/a%231%25.db?mode=ro&immutable=1");
        assert!(!db.flags.contains(OpenFlags::SQLITE_OPEN_CREATE));
        let db = SqliteDb::new("sqlite:/tmp/x.db?mode=rwc", 2, Duration::from_secs(1)).expect("valid");
        assert_eq!(db.uri, "file:/tmp/x.db?mode=rwc");
        assert!(db.flags.contains(OpenFlags::SQLITE_OPEN_CREATE));
        assert!(SqliteDb::new("sqlite://?mode=ro", 2, Duration::from_secs(1)).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rows_become_values_by_encoding_and_sqlite_types() {
        let (_dir, url) = scratch_db(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, price REAL, live BOOLEAN, raw BLOB);
             INSERT INTO t VALUES (1, 'mug', 4.5, 1, X'FF01'), (2, NULL, NULL, 0, NULL), (3, 'x', 2, NULL, 'y');",
        )
        .await;
        let db = SqliteDb::new(&url, 1, Duration::from_secs(5)).expect("valid");
        let ids = || (1..=4).map(|i| Param::Int(Some(i))).collect::<Vec<_>>();
        let fetch = |sql: &str, encoding| db.fetch(sql.into(), ids(), encoding);
        // The whole row as JSON: numbers stay numbers, a declared BOOLEAN is a boolean, a
        // blob that is not UTF-8 becomes text with a replacement character, NULL is null.
        let rows = fetch("SELECT * FROM t WHERE id IN (?, ?, ?, ?) ORDER BY id", Encoding::Json)
            .await
            .expect("rows");
        let json: Vec<(String, serde_json::Value)> =
            rows.into_iter().map(|(k, v)| (k, serde_json::from_slice(&v).expect("JSON"))).collect();
        assert_eq!(
            json,
            vec![
                (
                    "1".into(),
                    serde_json::json!({"id": 1, "name": "mug", "price": 4.5, "live": true, "raw": "\u{fffd}\u{1}"})
                ),
                (
                    "2".into(),
                    serde_json::json!({"id": 2, "name": null, "price": null, "live": false, "raw": null})
                ),
                (
                    "3".into(),
                    serde_json::json!({"id": 3, "name": "x", "price": 2.0, "live": null, "raw": "y"})
                ),
            ]
        );
        // One column as the value: a number is written as its JSON text, a NULL value (or a
        // NULL key) leaves the row out, as a missing row.
        let rows = fetch("SELECT id, price FROM t WHERE id IN (?, ?, ?, ?) ORDER BY id", Encoding::Bytes)
            .await
            .expect("rows");
        assert_eq!(rows, vec![("1".into(), b"4.5".to_vec()), ("3".into(), b"2.0".to_vec())]);
        let rows = fetch("SELECT name, id FROM t WHERE id IN (?, ?, ?, ?) ORDER BY id", Encoding::Text)
            .await
            .expect("rows");
        assert_eq!(rows, vec![("mug".into(), b"1".to_vec()), ("x".into(), b"3".to_vec())]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_missing_file_is_an_error_and_stays_missing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("absent.db");
        let db =
            SqliteDb::new(&format!("sqlite://{}", path.display()), 1, Duration::from_secs(2)).expect("valid");
        let e = db.ping().await.expect_err("no such file");
        assert!(e.retryable && !e.timed_out, "{e:?}");
        assert!(!path.exists(), "no empty database is created");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_query_past_the_timeout_is_interrupted_and_frees_its_connection() {
        let (_dir, url) =
            scratch_db("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT); INSERT INTO t VALUES (1, 'one');")
                .await;
        let db = SqliteDb::new(&url, 1, Duration::from_millis(300)).expect("valid");
        // Minutes of work, unless interrupted.
        let slow = "SELECT id, v FROM t WHERE id IN (?) AND (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL \
                    SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c) > 0";
        let started = std::time::Instant::now();
        let e = db.fetch(slow.into(), vec![Param::Int(Some(1))], Encoding::Text).await.expect_err("too slow");
        assert!(e.timed_out, "{e:?}");
        // The only connection slot is free again as soon as the interrupted query stops.
        let rows = db
            .fetch("SELECT id, v FROM t WHERE id IN (?)".into(), vec![Param::Int(Some(1))], Encoding::Text)
            .await
            .expect("the slot is free");
        assert_eq!(rows, vec![("1".to_string(), b"one".to_vec())]);
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    }
}
