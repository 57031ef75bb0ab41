//! SQLite databases, read with rusqlite on the runtime's blocking threads.
//!
//! A batch's query runs in one blocking call that copies each value once, straight out of
//! SQLite's row buffer. (sqlx, which reads PostgreSQL here, runs SQLite on a worker thread per
//! connection that copies every value into a row of its own and hands rows over one at a
//! time, which cost more instructions than SQLite's own lookups: a 100k-key warm from SQLite
//! into Redis runs a quarter fewer instructions this way, by callgrind.) Connections are
//! opened when first needed and kept for the next batch, and a batch's second read goes back to
//! the connection of its first (see [`Pool`]). A query that runs past the source's
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
#[derive(Clone, PartialEq)]
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
    pool: Arc<Mutex<Pool>>,
    slots: Arc<tokio::sync::Semaphore>,
    timeout: Duration,
}

/// The connections open to a database. A warm reads every batch a second time to verify it,
/// and the connection that read it first still holds the batch's rows in its page cache,
/// where any other would read them from the file again. So a query that starts with the key
/// an idle connection's last query started with runs there; other queries take a connection
/// no such second read waits for, or open one, and only when `max` are open take the one
/// idle longest.
struct Pool<C = Connection> {
    /// Oldest first.
    idle: Vec<Idle<C>>,
    /// Connections open, idle or in use.
    open: usize,
    max: usize,
}

/// An idle connection, and the first key of its last query while a second read of the same
/// keys may come.
struct Idle<C> {
    conn: C,
    first_key: Option<Param>,
}

/// Where a query's connection comes from.
enum Pick<C> {
    /// An idle connection; whether its last query started with the same key.
    Idle { conn: C, again: bool },
    /// A new connection, counted as open already.
    Open,
}

impl<C> Pool<C> {
    fn new(max: usize) -> Self {
        Pool { idle: Vec::new(), open: 0, max: max.max(1) }
    }

    fn pick(&mut self, first_key: Option<&Param>) -> Pick<C> {
        let same = first_key.and_then(|k| self.idle.iter().position(|i| i.first_key.as_ref() == Some(k)));
        if let Some(at) = same {
            return Pick::Idle { conn: self.idle.remove(at).conn, again: true };
        }
        let free = self.idle.iter().position(|i| i.first_key.is_none());
        if free.is_none() && self.open < self.max {
            self.open += 1;
            return Pick::Open;
        }
        match free.or((!self.idle.is_empty()).then_some(0)) {
            Some(at) => Pick::Idle { conn: self.idle.remove(at).conn, again: false },
            None => {
                // Every open connection is in use (the slots allow no more calls than `max`;
                // this is reached only after connections were lost uncounted).
                self.open += 1;
                Pick::Open
            }
        }
    }

    /// A connection back from a query: kept for a second read unless this was one.
    fn put(&mut self, conn: C, first_key: Option<Param>, again: bool) {
        self.idle.push(Idle { conn, first_key: if again { None } else { first_key } });
    }

    /// A connection closed (its query failed, or it could not be opened).
    fn lost(&mut self) {
        self.open = self.open.saturating_sub(1);
    }
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
        let pool = Arc::new(Mutex::new(Pool::new(max_connections as usize)));
        Ok(SqliteDb { uri, flags, pool, slots, timeout })
    }

    /// Runs `sql` with `params` bound in order and returns `(key parameter, value)` for every
    /// row whose first two columns (or, for JSON, whose key) are not NULL.
    pub async fn fetch(
        &self,
        sql: String,
        params: Vec<Param>,
        encoding: Encoding,
    ) -> Result<Vec<(String, Vec<u8>)>, SqliteFailure> {
        let first_key = params.first().cloned();
        self.call(first_key, move |conn| {
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

    /// Prepares a rule's query (`sql`, with one placeholder) without running it, and checks
    /// that its columns make values in `encoding`: a missing table or column, or a syntax
    /// error, is found here. Every column is readable: SQLite's values carry their own types.
    pub async fn check(&self, sql: String, encoding: Encoding) -> Result<(), SqliteFailure> {
        self.call(None, move |conn| {
            let stmt = conn.prepare(&sql)?;
            let columns: Vec<(String, String)> = stmt
                .columns()
                .iter()
                .map(|c| (c.name().to_string(), c.decl_type().unwrap_or("").to_string()))
                .collect();
            super::sql::result_shape(&columns, encoding, |_| true).map_err(|message| SqliteFailure {
                message,
                retryable: false,
                timed_out: false,
            })
        })
        .await
    }

    /// Opens a connection (or takes an idle one) and runs `SELECT 1`.
    pub async fn ping(&self) -> Result<(), SqliteFailure> {
        self.call(None, |conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    /// Runs `work` on a connection on a blocking thread, within the timeout. The slot (and
    /// the connection) stays taken until the thread is done. A call that times out, or whose
    /// future is dropped (the warm's deadline cancels batches in flight), interrupts its
    /// query, which then fails at once and closes its connection. `first_key` picks the
    /// connection (see [`Pool`]).
    async fn call<T: Send + 'static>(
        &self,
        first_key: Option<Param>,
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
        let (pool, uri, flags, timeout) = (self.pool.clone(), self.uri.clone(), self.flags, self.timeout);
        let running = Running::default();
        let handle = running.0.clone();
        let task = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let lock = || pool.lock().unwrap_or_else(PoisonError::into_inner);
            let picked = lock().pick(first_key.as_ref());
            let (conn, again) = match picked {
                Pick::Idle { conn, again } => (conn, again),
                Pick::Open => match open(&uri, flags, timeout) {
                    Ok(conn) => (conn, false),
                    Err(e) => {
                        lock().lost();
                        return Err(e);
                    }
                },
            };
            *handle.lock().unwrap_or_else(PoisonError::into_inner) = Some(conn.get_interrupt_handle());
            let result = work(&conn);
            // No interrupt may reach the connection once another call can have it.
            handle.lock().unwrap_or_else(PoisonError::into_inner).take();
            // A connection whose call failed may be the cause: the next call opens a new one.
            if result.is_ok() {
                lock().put(conn, first_key, again);
            } else {
                drop(conn);
                lock().lost();
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

    fn key(i: i64) -> Param {
        Param::Int(Some(i))
    }

    /// Takes the connection a pick hands out (numbered by the test when it is opened).
    fn take(pool: &mut Pool<u32>, first_key: Option<&Param>, next_new: &mut u32) -> (u32, bool) {
        match pool.pick(first_key) {
            Pick::Idle { conn, again } => (conn, again),
            Pick::Open => {
                *next_new += 1;
                (*next_new, false)
            }
        }
    }

    /// Batches whose first keys are `keys` read at once, then give their connections back to
    /// wait for their second reads; returns the connections in that order.
    fn first_reads(pool: &mut Pool<u32>, keys: &[i64], next_new: &mut u32) -> Vec<u32> {
        let conns: Vec<u32> = keys.iter().map(|&k| take(pool, Some(&key(k)), next_new).0).collect();
        for (&conn, &k) in conns.iter().zip(keys) {
            pool.put(conn, Some(key(k)), false);
        }
        conns
    }

    #[test]
    fn a_second_read_of_the_same_keys_gets_the_connection_that_read_them_first() {
        let mut pool = Pool::<u32>::new(3);
        let mut n = 0;
        // Two batches read: two connections, each kept for its batch's second read.
        let [a, b] = first_reads(&mut pool, &[1, 500], &mut n)[..] else { panic!("two reads") };
        // A third batch opens a connection of its own rather than take one of theirs.
        let (c, again) = take(&mut pool, Some(&key(1000)), &mut n);
        assert_eq!((c, again, pool.open), (3, false, 3));
        // Each second read finds its connection, whatever the order, and frees it.
        assert_eq!(take(&mut pool, Some(&key(500)), &mut n), (b, true));
        assert_eq!(take(&mut pool, Some(&key(1)), &mut n), (a, true));
        pool.put(a, Some(key(1)), true);
        pool.put(b, Some(key(500)), true);
        pool.put(c, Some(key(1000)), false);
        // A new batch takes a free connection, not the one `c`'s second read waits for.
        let (d, again) = take(&mut pool, Some(&key(1500)), &mut n);
        assert!(d != c && !again, "took {d}");
        assert_eq!(take(&mut pool, Some(&key(1000)), &mut n), (c, true));
    }

    #[test]
    fn at_the_cap_the_connection_idle_longest_is_taken_and_a_lost_one_is_reopened() {
        let mut pool = Pool::<u32>::new(2);
        let mut n = 0;
        let [a, b] = first_reads(&mut pool, &[1, 2], &mut n)[..] else { panic!("two reads") };
        // No second read came (verifying is off): both wait in vain, and the oldest goes.
        assert_eq!(take(&mut pool, Some(&key(3)), &mut n), (a, false));
        assert_eq!(take(&mut pool, None, &mut n), (b, false));
        // A failed query closes its connection; the next query opens one instead.
        pool.lost();
        assert_eq!(take(&mut pool, Some(&key(4)), &mut n), (3, false));
        assert_eq!(pool.open, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn second_reads_run_on_the_connections_of_the_first() {
        let (_dir, url) = scratch_db("CREATE TABLE t (id INTEGER PRIMARY KEY);").await;
        let db = SqliteDb::new(&url, 2, Duration::from_secs(5)).expect("valid");
        // A temporary table is seen only by the connection that made it: each first read
        // leaves one named after its key, and each second read looks for its own.
        let mark = |name: &'static str| {
            move |conn: &Connection| Ok(conn.execute_batch(&format!("CREATE TEMP TABLE {name} (x)"))?)
        };
        let marked = |name: &'static str| {
            move |conn: &Connection| {
                let sql = format!("SELECT count(*) FROM sqlite_temp_master WHERE name = '{name}'");
                Ok(conn.query_row(&sql, [], |r| r.get::<_, i64>(0))? == 1)
            }
        };
        db.call(Some(key(7)), mark("first")).await.expect("first batch");
        db.call(Some(key(8)), mark("second")).await.expect("second batch");
        // Newest first, then oldest: neither order of use nor of age decides.
        assert!(db.call(Some(key(8)), marked("second")).await.expect("read again"), "second batch");
        assert!(db.call(Some(key(7)), marked("first")).await.expect("read again"), "first batch");
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
