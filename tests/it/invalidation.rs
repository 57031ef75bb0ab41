//! A warm never leaves behind a value that the application changed and invalidated while the
//! warm was loading it: real Redis, a real database and a real HTTP server, and an
//! "application" that updates rows and deletes their keys at random moments during the warm.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use preheat::backend::RedisBackend;
use preheat::source::run_script;
use preheat::warm::RunStatus;

use crate::servers::{HttpServer, Redis, Reply};
use crate::support::warm_requests;

const KEYS: u32 = 200;

fn products() -> Vec<(String, u32)> {
    (1..=KEYS).map(|id| (format!("/api/products/{id}"), 1 + (KEYS - id) / 10)).collect()
}

/// A tiny random generator for the "application" (no need for a good one).
fn next(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// Keys whose cached version is older than the truth.
fn stale(redis: &Redis, truth: &dyn Fn(u32) -> u64) -> Vec<String> {
    let mut c = redis.client().get_connection().expect("connects");
    (1..=KEYS)
        .filter_map(|id| {
            let cached: Option<String> =
                redis::cmd("GET").arg(format!("product:{id}")).query(&mut c).expect("GET");
            let v: u64 = cached?.trim_start_matches('v').parse().expect("a version");
            (v < truth(id)).then(|| format!("product:{id} holds v{v}, the row is at v{}", truth(id)))
        })
        .collect()
}

/// Warms from an HTTP application whose answers take 30 ms, while another thread bumps
/// random products' versions and deletes their keys, as the application's writes would.
fn warm_while_the_application_writes(invalidations: &str) -> (Vec<String>, preheat::warm::RunReport) {
    // The application deletes keys the warm has not written yet, too: a delete that no
    // cache event can show, only the second read.
    let versions: Arc<Mutex<HashMap<u32, u64>>> =
        Arc::new(Mutex::new((1..=KEYS).map(|id| (id, 0)).collect()));
    let served = versions.clone();
    let app = HttpServer::start(move |seen| {
        let id: u32 = seen.target.rsplit('/').next().and_then(|s| s.parse().ok()).unwrap_or(0);
        // Read now, answer later: the window in which an update makes this answer stale.
        let v = served.lock().expect("not poisoned").get(&id).copied().unwrap_or(0);
        Reply { delay: Duration::from_millis(30), ..Reply::ok(format!("v{v}")) }
    });
    let redis = Redis::start();
    let done = Arc::new(AtomicBool::new(false));
    let (writer_versions, writer_done, client) = (versions.clone(), done.clone(), redis.client());
    let writer = std::thread::spawn(move || {
        let mut c = client.get_connection().expect("connects");
        let mut seed = 0x9e37_79b9_7f4a_7c15;
        while !writer_done.load(Ordering::Relaxed) {
            let id = (next(&mut seed) % u64::from(KEYS)) as u32 + 1;
            *writer_versions.lock().expect("not poisoned").entry(id).or_insert(0) += 1;
            let _: i64 = redis::cmd("DEL").arg(format!("product:{id}")).query(&mut c).expect("DEL");
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    let config = format!(
        "[warm]\ninvalidations = \"{invalidations}\"\nbatch_size = 25\nconcurrency = 2\n\
         [sources.app]\nurl = \"{}\"\nmode = \"store\"\nconcurrency = 8\n\
         [[rule]]\nname = \"product\"\nmatch = \"GET /api/products/{{id:int}}\"\nkey = \"product:{{id}}\"\nsource = \"app\"\nttl = \"10m\"\n",
        app.url()
    );
    let backend = Arc::new(RedisBackend::new(&redis.url()).expect("valid URL"));
    let (_, report) = warm_requests(&config, &products(), backend);
    done.store(true, Ordering::Relaxed);
    writer.join().expect("the writer ends");
    let truth = versions.lock().expect("not poisoned").clone();
    (stale(&redis, &|id| truth[&id]), report)
}

#[test]
fn without_a_watch_invalidated_values_come_back() {
    // The control: the test can fail.
    let (stale, report) = warm_while_the_application_writes("off");
    assert_eq!(report.invalidated, 0);
    assert!(!stale.is_empty(), "the race did not happen; the test proves nothing");
}

#[test]
fn a_verified_warm_never_leaves_an_invalidated_value_behind() {
    let (stale, report) = warm_while_the_application_writes("verify");
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.errors);
    assert!(stale.is_empty(), "{} stale keys: {stale:?}", stale.len());
    assert!(report.invalidated > 0, "changed values were taken back: {report:?}");
    assert!(report.written > u64::from(KEYS) / 2, "{report:?}");
}

#[test]
fn sql_values_under_concurrent_updates_are_never_older_than_their_rows() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("shop.db").display());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run_script(
        &url,
        &format!(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE products (id INTEGER PRIMARY KEY, version INTEGER NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {KEYS})
             INSERT INTO products SELECT i, 0 FROM n;"
        ),
    ))
    .expect("schema");
    let redis = Redis::start();
    let done = Arc::new(AtomicBool::new(false));
    let (writer_done, client, writer_db) = (done.clone(), redis.client(), dir.path().join("shop.db"));
    let writer = std::thread::spawn(move || {
        let db = rusqlite::Connection::open(&writer_db).expect("db");
        // Fast commits: the point is many updates during the warm, not durability.
        db.execute_batch("PRAGMA synchronous = OFF").expect("pragma");
        db.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
        let mut c = client.get_connection().expect("connects");
        let mut seed = 0x2545_f491_4f6c_dd1d;
        while !writer_done.load(Ordering::Relaxed) {
            let id = (next(&mut seed) % u64::from(KEYS)) as i64 + 1;
            db.execute("UPDATE products SET version = version + 1 WHERE id = ?1", [id]).expect("update");
            let _: i64 = redis::cmd("DEL").arg(format!("product:{id}")).query(&mut c).expect("DEL");
            std::thread::sleep(Duration::from_micros(300));
        }
    });
    let config = format!(
        "[warm]\nbatch_size = 10\nconcurrency = 2\n[sources.db]\nurl = \"{url}\"\nqps = 30\n\
         [[rule]]\nname = \"product\"\nmatch = \"GET /api/products/{{id:int}}\"\nkey = \"product:{{id}}\"\nsource = \"db\"\n\
         sql = \"SELECT id, 'v' || version FROM products WHERE id IN ($1)\"\nencoding = \"text\"\nttl = \"10m\"\n"
    );
    let backend = Arc::new(RedisBackend::new(&redis.url()).expect("valid URL"));
    let (_, report) = warm_requests(&config, &products(), backend);
    done.store(true, Ordering::Relaxed);
    writer.join().expect("the writer ends");
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.errors);
    let db = rusqlite::Connection::open(dir.path().join("shop.db")).expect("db");
    let mut rows = db.prepare("SELECT id, version FROM products").expect("query");
    let truth: HashMap<u32, u64> = rows
        .query_map([], |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64)))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect();
    let stale = stale(&redis, &|id| truth[&id]);
    assert!(stale.is_empty(), "{} stale keys: {stale:?}", stale.len());
    assert!(report.written > 0, "{report:?}");
    // The pacer spaces the reads, so rows change between a batch's two reads.
    assert!(report.invalidated > 0, "the race was exercised: {report:?}");
}

#[test]
fn peer_copies_of_changed_keys_are_taken_back() {
    let (peer, target) = (Redis::start(), Redis::start());
    let mut p = peer.client().get_connection().expect("connects");
    for id in 1..=KEYS {
        let _: () = redis::cmd("SET").arg(format!("product:{id}")).arg("v0").query(&mut p).expect("SET");
    }
    let done = Arc::new(AtomicBool::new(false));
    let (writer_done, peer_client, target_client) = (done.clone(), peer.client(), target.client());
    let writer = std::thread::spawn(move || {
        let (mut p, mut t) =
            (peer_client.get_connection().expect("peer"), target_client.get_connection().expect("target"));
        let mut seed = 0x1234_5678_9abc_def1;
        while !writer_done.load(Ordering::Relaxed) {
            let key = format!("product:{}", next(&mut seed) % u64::from(KEYS) + 1);
            let _: i64 = redis::cmd("INCR").arg(format!("{key}:n")).query(&mut p).expect("INCR");
            let n: i64 = redis::cmd("GET").arg(format!("{key}:n")).query(&mut p).expect("GET");
            let _: () = redis::cmd("SET").arg(&key).arg(format!("v{n}")).query(&mut p).expect("SET");
            // The application invalidates a little after it writes: the warm may copy in between.
            std::thread::sleep(Duration::from_millis(3));
            let _: i64 = redis::cmd("DEL").arg(&key).query(&mut t).expect("DEL");
        }
    });
    let config = format!(
        "[warm]\nbatch_size = 10\nconcurrency = 2\n[sources.old]\nurl = \"{}\"\nqps = 30\n\
         [[rule]]\nname = \"product\"\nmatch = \"GET /api/products/{{id:int}}\"\nkey = \"product:{{id}}\"\nsource = \"old\"\n",
        peer.url()
    );
    let backend = Arc::new(RedisBackend::new(&target.url()).expect("valid URL"));
    let (_, report) = warm_requests(&config, &products(), backend);
    done.store(true, Ordering::Relaxed);
    writer.join().expect("the writer ends");
    assert_eq!(report.status, RunStatus::Completed, "{:?}", report.errors);
    assert!(report.invalidated > 0, "{report:?}");
    let on_peer: HashMap<u32, u64> = (1..=KEYS)
        .map(|id| {
            let v: String = redis::cmd("GET").arg(format!("product:{id}")).query(&mut p).expect("GET");
            (id, v.trim_start_matches('v').parse().expect("a version"))
        })
        .collect();
    let stale = stale(&target, &|id| on_peer[&id]);
    assert!(stale.is_empty(), "{} stale copies: {stale:?}", stale.len());
}
