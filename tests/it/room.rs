//! A warm never makes the cache evict: against a Redis with `maxmemory` and `allkeys-lru`
//! holding live keys, a cluster whose nodes have different limits, and the in-process cache,
//! a warm of far more than fits stops at the cache's headroom and every live key stays.

use std::path::Path;
use std::sync::Arc;

use preheat::backend::{MemoryBackend, RedisBackend, RedisClusterBackend};
use preheat::config::Config;
use preheat::plan::Plan;
use preheat::source::run_script;
use preheat::warm::{RunReport, RunStatus, WarmOutcome};

use crate::servers::{Redis, RedisCluster};
use crate::support::*;

/// Bytes of each warmed value.
const VALUE: u64 = 100_000;

/// A database of `keys` products of [`VALUE`] random bytes, a log requesting each (hotter
/// ones more) with responses of `logged` bytes, and the plan of a warm of them all.
fn big_plan(dir: &Path, keys: u32, logged: u64) -> (Config, Plan) {
    let db = dir.join("big.db");
    let script = format!(
        "CREATE TABLE products (id INTEGER PRIMARY KEY, body BLOB NOT NULL);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {keys})
         INSERT INTO products SELECT i, randomblob({VALUE}) FROM n;"
    );
    block(run_script(&format!("sqlite://{}?mode=rwc", db.display()), &script)).expect("the database");
    let text = format!(
        r#"
[warm]
max_keys = {keys}
batch_size = 20
concurrency = 2
invalidations = "off"

[sources.big]
url = "sqlite://{db}"

[[rule]]
name = "product"
match = "GET /api/products/{{id:int}}"
key = "product:{{id}}"
source = "big"
sql = "SELECT id, body FROM products WHERE id IN ($1)"
ttl = "10m"
"#,
        db = db.display()
    );
    let config = Config::parse(&text, "big.toml").expect("valid config");
    let mut log = String::new();
    for id in 1..=keys {
        for _ in 0..(1 + keys / id).min(20) {
            log.push_str(&format!(
                "203.0.113.1 - - [01/Dec/2026:10:00:00 +0000] \"GET /api/products/{id} HTTP/1.1\" 200 {logged} \"-\" \"t\"\n"
            ));
        }
    }
    let path = dir.join("access.log");
    std::fs::write(&path, log).expect("writable");
    let analysis = analyze_files(&[path], &config, 2);
    let plan = Plan::build(analysis.rows().into_iter().map(Ok), &analysis.summary, &config.plan_settings())
        .expect("plan");
    assert_eq!(plan.keys.len() as u32, keys);
    (config, plan)
}

/// Sets a Redis node's memory limit, with the production set-up's eviction policy.
fn limit_memory(c: &mut redis::Connection, limit: &str) {
    for (setting, value) in [("maxmemory", limit), ("maxmemory-policy", "allkeys-lru")] {
        let () = redis::cmd("CONFIG").arg("SET").arg(setting).arg(value).query(c).expect("CONFIG SET");
    }
}

/// Writes `count` live keys of `size` bytes, without expiry, as the application would.
fn live_keys(c: &mut redis::Connection, prefix: &str, count: usize, size: usize) {
    let value = vec![b'x'; size];
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET").arg(format!("{prefix}{i}")).arg(&value).ignore();
        }
        let () = pipe.query(c).expect("SET");
    }
}

fn count_live(c: &mut redis::Connection, prefix: &str, count: usize) -> usize {
    let mut pipe = redis::pipe();
    for i in 0..count {
        pipe.cmd("EXISTS").arg(format!("{prefix}{i}"));
    }
    let found: Vec<i64> = pipe.query(c).expect("EXISTS");
    found.iter().filter(|&&n| n == 1).count()
}

#[test]
fn a_warm_into_a_full_redis_stops_at_its_headroom_and_evicts_no_live_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, plan) = big_plan(dir.path(), 2_000, VALUE);
    let redis = Redis::start();
    let mut c = redis.client().get_connection().expect("connects");
    limit_memory(&mut c, "64mb");
    live_keys(&mut c, "live:", 4_000, 10_000);

    let report = warm_into(&config, &plan, Arc::new(RedisBackend::new(&redis.url()).expect("valid URL")));
    assert_eq!(count_live(&mut c, "live:", 4_000), 4_000, "a live key was evicted: {:?}", report.status);
    assert_eq!(report.status, RunStatus::Headroom, "{:?}", report.errors);
    assert_eq!(report.evicted_during_warm, 0);
    let evicted: String = redis::cmd("INFO").arg("stats").query(&mut c).expect("INFO");
    assert!(evicted.contains("evicted_keys:0\r\n"), "{evicted}");
    // The report says how many fit: some, far from all, and the rest were not started.
    assert!(report.written > 20 && report.written < 200, "{} written", report.written);
    assert_eq!(report.written + report.not_started, 2_000);
    assert_eq!(report.outcome, WarmOutcome::Degraded);
    assert!(report.cause.as_deref().is_some_and(|c| c.contains("warm.cache_headroom")), "{:?}", report.cause);
    let before = &report.cache_memory_before[0];
    assert_eq!((before.max_bytes, before.policy.as_str()), (64 << 20, "allkeys-lru"));
    let after = report.cache_memory_after[0].used_bytes;
    assert!(after < 64 << 20, "{after} bytes used: at the limit");
}

#[test]
fn a_warm_stops_at_once_when_the_cache_starts_evicting() {
    // The profile logged a tenth of the values' real size and the headroom is the whole
    // limit, so the estimates let the warm overfill the cache: only the eviction rule stops it.
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut config, plan) = big_plan(dir.path(), 600, VALUE / 10);
    config.warm.cache_headroom = 1.0;
    let redis = Redis::start();
    let mut c = redis.client().get_connection().expect("connects");
    limit_memory(&mut c, "24mb");
    live_keys(&mut c, "live:", 1_500, 10_000);
    let report = warm_into(&config, &plan, Arc::new(RedisBackend::new(&redis.url()).expect("valid URL")));
    assert_eq!(report.status, RunStatus::Evicting, "{report:?}");
    assert!(report.evicted_during_warm > 0);
    // 24 MB hold about 200 values of 100 kB: the warm stopped soon after the cache was full.
    assert!(
        report.written < 150 && report.not_started > 300,
        "{} written, {} not started",
        report.written,
        report.not_started
    );
    assert!(report.cause.as_deref().is_some_and(|c| c.starts_with("evicting")), "{:?}", report.cause);
    let metrics = preheat::report::metrics::render(&report, 0.0);
    assert!(metrics.contains(&format!("preheat_warm_evicted_during_warm {}", report.evicted_during_warm)));
}

#[test]
fn a_cluster_node_with_a_smaller_limit_bounds_the_warm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, plan) = big_plan(dir.path(), 1_000, VALUE);
    let cluster = RedisCluster::start(3);
    for (i, limit) in [(0, "400mb"), (1, "48mb"), (2, "400mb")] {
        limit_memory(&mut cluster.node(i), limit);
    }
    // Live keys on the small node, found by their slots.
    let mut small = cluster.node(1);
    let mut live = Vec::new();
    let mut i = 0;
    while live.len() < 3_000 {
        let key = format!("live:{i}");
        if cluster.owner(&key) == 1 {
            live.push(key);
        }
        i += 1;
    }
    let value = vec![b'x'; 10_000];
    for chunk in live.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.cmd("SET").arg(key).arg(&value).ignore();
        }
        let () = pipe.query(&mut small).expect("SET");
    }
    let backend = Arc::new(RedisClusterBackend::new(&cluster.url()).expect("valid URL"));
    let report = warm_into(&config, &plan, backend);
    assert_eq!(report.status, RunStatus::Headroom, "{:?}", report.errors);
    assert_eq!(report.cache_memory_before.len(), 3);
    let mut pipe = redis::pipe();
    for key in &live {
        pipe.cmd("EXISTS").arg(key);
    }
    let found: Vec<i64> = pipe.query(&mut small).expect("EXISTS");
    assert!(found.iter().all(|&n| n == 1), "a live key on the small node was evicted");
    assert!(report.written > 0 && report.written < 1_000, "{} written", report.written);
}

#[test]
fn a_warm_into_the_in_process_cache_leaves_the_applications_entries() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (config, plan) = big_plan(dir.path(), 300, VALUE);
    // 20 MB of cache, half of it the application's.
    let backend = Arc::new(MemoryBackend::new(20 << 20));
    let value = vec![b'a'; 10_000];
    block(async {
        for i in 0..1_000 {
            backend.insert(&format!("app:{i}"), &value, None).await;
        }
    });
    let report = warm_into(&config, &plan, backend.clone());
    assert_eq!(report.status, RunStatus::Headroom, "{:?}", report.errors);
    assert_eq!(report.evicted_during_warm, 0);
    assert!(report.written > 10 && report.written < 300, "{} written", report.written);
    let kept = block(async {
        let mut kept = 0;
        for i in 0..1_000 {
            kept += usize::from(backend.get(&format!("app:{i}")).await.is_some());
        }
        kept
    });
    assert_eq!(kept, 1_000, "the application's entries stay");
}

#[test]
fn the_ready_file_appears_when_the_warm_set_covers_enough_not_when_the_warm_ends() {
    // An application that takes 40 ms to render each product, one request at a time.
    let app = crate::servers::HttpServer::start(|seen| {
        let mut reply = crate::servers::Reply::ok(format!("rendered {}", seen.target));
        reply.delay = std::time::Duration::from_millis(40);
        reply
    });
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        r#"
[warm]
batch_size = 5
concurrency = 1
invalidations = "off"
ready_at = "50%"
[backend]
url = "memory://"
[sources.app]
url = "{}"
mode = "store"
concurrency = 1
[[rule]]
name = "product"
match = "GET /api/products/{{id:int}}"
key = "product:{{id}}"
source = "app"
ttl = "10m"
"#,
        app.url()
    );
    std::fs::write(dir.path().join("preheat.toml"), config).expect("writable");
    // Zipf-like: product i is requested 400 / i times, so half the traffic is a few keys.
    let requests: Vec<(String, u32)> =
        (1..=120).map(|i| (format!("/api/products/{i}"), (400 / i).max(1))).collect();
    write_requests(&dir.path().join("access.log"), &requests);
    let out = preheat(dir.path(), &["analyze", "access.log"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_preheat"));
    cmd.args(["warm", "--ready-file", "ready.json", "--report", "run.json"]).current_dir(dir.path());
    isolate(&mut cmd, &[]);
    std::fs::write(dir.path().join("ready.json"), "left by an earlier run").expect("writable");
    let mut warm =
        cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().expect("runs");
    let ready = dir.path().join("ready.json");
    // The old file is gone at once, and the new one comes while the warm is still running.
    let started = std::time::Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&ready)
            && text.contains("\"ready\":true")
        {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "no ready file");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(warm.try_wait().expect("waits").is_none(), "the warm had already ended");
    assert!(warm.wait().expect("ends").success());
    let report: RunReport =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("run.json")).expect("written"))
            .expect("a report");
    let ready_after = report.ready_after_ms.expect("ready_at was reached");
    assert!(ready_after * 2 < report.duration_ms, "ready after {ready_after} of {} ms", report.duration_ms);
    assert_eq!(report.written, 120);
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ready).expect("kept")).expect("JSON");
    assert_eq!(file["reason"], "the warmed keys reached warm.ready_at");
    let covered = file["warmed_coverage"].as_f64().expect("a share");
    assert!(covered >= 0.5 * report.predicted_coverage && covered < report.warmed_coverage, "{covered}");
}

#[test]
fn a_warm_that_ends_before_ready_at_is_ready_anyway_unless_told_otherwise() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = "[warm]\nready_at = 100000\n[backend]\nurl = \"memory://\"\n[[rule]]\nname = \"u\"\nmatch = \"GET /{p:path}\"\nkey = \"u:{p}\"\n";
    std::fs::write(dir.path().join("preheat.toml"), base).expect("writable");
    write_requests(&dir.path().join("access.log"), &[("/a".to_string(), 3)]);
    let out = preheat(dir.path(), &["analyze", "access.log"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    // The rule has no source: nothing is warmed, the threshold is never reached.
    let out = preheat(dir.path(), &["warm", "--ready-file", "ready.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = std::fs::read_to_string(dir.path().join("ready.json")).expect("ready anyway");
    assert!(file.contains("before warm.ready_at (warm.ready_anyway)"), "{file}");
    std::fs::write(
        dir.path().join("preheat.toml"),
        base.replace("ready_at = 100000\n", "ready_at = 100000\nready_anyway = false\n"),
    )
    .expect("writable");
    let out = preheat(dir.path(), &["warm", "--ready-file", "ready.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!dir.path().join("ready.json").exists(), "not ready, and the old file is gone");
    assert!(stderr_has(&out, "not ready"), "{}", text(&out.stderr));
}
