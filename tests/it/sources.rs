//! Every kind of source in a whole warm: a real HTTP server on loopback, real files with
//! traversal attempts, real programs (one that hangs), a real peer Redis.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use preheat::backend::{MemoryBackend, RedisBackend};
use preheat::failure::FailureReason;
use preheat::warm::RunStatus;

use crate::servers::{HttpServer, Redis, Reply, Seen};
use crate::support::{block, warm_requests};

/// `count` products, the hottest first (id 1 is requested most).
fn products(count: u32) -> Vec<(String, u32)> {
    (1..=count).map(|id| (format!("/api/products/{id}?token=secret&lang=en"), 2 + count - id)).collect()
}

/// An HTTP source config; its `Authorization` header comes from a file, as a secret would.
fn http_config(url: &str, mode: &str, extra: &str) -> String {
    let token = std::env::temp_dir().join(format!("preheat-test-token-{}", std::process::id()));
    fs::write(&token, "Bearer t0ken\n").expect("writable");
    format!(
        r#"
[sources.app]
url = "{url}"
mode = "{mode}"
timeout = "500ms"
headers = {{ "X-Warmup" = "1", "Authorization" = "file:{token}" }}
{extra}

[[rule]]
name = "product"
match = "GET /api/products/{{id:int}}"
key = "product:{{id}}:{{lang}}"
keep_query = ["lang"]
source = "app"
{ttl}
"#,
        token = token.display(),
        ttl = if mode == "store" { "ttl = \"10m\"" } else { "" }
    )
}

/// The test application: `no-store` for ids divisible by 7, `max-age=30` by 11, 404 by 13,
/// 500 by 17; every other product is `product N`.
fn shop_app(seen: &Seen) -> Reply {
    let id: u32 = seen
        .target
        .trim_start_matches("/api/products/")
        .split('?')
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    match id {
        0 => Reply::status(400),
        id if id % 17 == 0 => Reply::status(500),
        id if id % 13 == 0 => Reply::status(404),
        id if id % 11 == 0 => {
            Reply::ok(format!("product {id}")).with_header("cache-control", "public, max-age=30")
        }
        id if id % 7 == 0 => Reply::ok(format!("product {id}")).with_header("cache-control", "no-store"),
        id => Reply::ok(format!("product {id}")),
    }
}

#[test]
fn http_store_keeps_bodies_the_response_allows_and_sends_only_kept_query() {
    // SAFETY of the test: the variable is only read by this test's config.
    let app = HttpServer::start(shop_app);
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let (plan, r) = warm_requests(&http_config(&app.url(), "store", ""), &products(40), backend.clone());
    assert_eq!(plan.keys.len(), 40);
    assert_eq!(r.status, RunStatus::Completed);
    let ids = 1..=40u32;
    let count = |f: fn(u32) -> bool| ids.clone().filter(|&i| f(i)).count() as u64;
    let failing = count(|i| i % 17 == 0);
    let missing = count(|i| i % 17 != 0 && i % 13 == 0);
    let no_store = count(|i| i % 17 != 0 && i % 13 != 0 && i % 11 != 0 && i % 7 == 0);
    assert_eq!(r.failed.get(&FailureReason::SourceStatus), Some(&failing), "{:?}", r.failed);
    assert_eq!(r.missing_in_source, missing);
    assert_eq!(r.uncacheable, no_store);
    assert_eq!(r.written, 40 - failing - missing - no_store);
    for id in ids {
        let key = format!("product:{id}:en");
        let value = block(backend.get(&key));
        let stored = id % 17 != 0 && id % 13 != 0 && (id % 11 == 0 || id % 7 != 0);
        assert_eq!(
            value.as_deref(),
            stored.then(|| format!("product {id}").into_bytes()).as_deref(),
            "{key}"
        );
        if stored && id % 11 == 0 {
            let ttl = block(backend.remaining_ttl(&key)).expect("a TTL");
            assert!(ttl <= Duration::from_secs(30), "max-age caps the TTL: {ttl:?}");
        }
    }
    let seen = app.seen();
    // 500s are retried (3 attempts), everything else is asked once, and each stored value once
    // more to verify it.
    assert_eq!(r.invalidated, 0);
    assert_eq!(seen.len() as u64, 40 + 2 * failing + r.written);
    for s in &seen {
        assert!(s.target.ends_with("?lang=en"), "the token must not be replayed: {}", s.target);
        assert_eq!(s.header("x-warmup"), Some("1"));
        assert_eq!(s.header("authorization"), Some("Bearer t0ken"));
        assert!(s.header("user-agent").is_some_and(|ua| ua.starts_with("preheat/")));
    }
    assert!(r.errors.iter().all(|e| !e.contains("t0ken")), "{:?}", r.errors);
}

#[test]
fn http_replay_asks_the_application_once_per_key_and_writes_nothing() {
    let app = HttpServer::start(|_| Reply::ok("rendered"));
    let redis = Redis::start();
    let backend = Arc::new(RedisBackend::new(&redis.url()).expect("valid URL"));
    let (_, r) = warm_requests(&http_config(&app.url(), "replay", "qps = 200"), &products(30), backend);
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.replayed, 30);
    assert_eq!(r.written, 0);
    let mut targets: Vec<String> = app.seen().into_iter().map(|s| s.target).collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), 30, "each key once");
    assert!(app.connections() <= 16, "connections are reused: {} for 30 requests", app.connections());
    let mut c = redis.client().get_connection().expect("connects");
    let keys: Vec<String> = redis::cmd("KEYS").arg("product:*").query(&mut c).expect("KEYS");
    assert!(keys.is_empty(), "replay writes nothing: {keys:?}");
    // 30 requests at 200 a second take at least 145 ms.
    assert!(r.duration_ms >= 140, "the qps cap spaces requests: {} ms", r.duration_ms);
}

#[test]
fn a_slow_application_costs_its_timeout_not_the_deadline() {
    let app = HttpServer::start(|_| Reply { delay: Duration::from_secs(5), ..Reply::ok("late") });
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let started = Instant::now();
    let config = http_config(&app.url(), "store", "concurrency = 8");
    let (_, r) = warm_requests(&config, &products(8), backend);
    // Every request times out after 500 ms, three times over, with a short backoff.
    assert_eq!(r.failed.get(&FailureReason::SourceTimeout), Some(&8), "{:?}", r.failed);
    assert!(started.elapsed() < Duration::from_secs(4), "{:?}", started.elapsed());
}

fn file_config(root: &Path) -> String {
    format!(
        r#"
[sources.static]
root = "{root}"
max_value_size = "1KiB"

[[rule]]
name = "asset"
match = "GET /static/{{file:path}}"
key = "asset:{{file}}"
source = "static"
path = "{{file}}"
ttl = "1h"
"#,
        root = root.display()
    )
}

#[test]
fn files_are_read_under_the_root_and_nothing_escapes_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("public");
    fs::create_dir_all(root.join("css")).expect("writable");
    fs::write(root.join("css/site.css"), "body{}").expect("writable");
    fs::write(root.join("app.js"), "let x = 1;").expect("writable");
    fs::write(root.join("big.bin"), vec![0u8; 4096]).expect("writable");
    fs::write(dir.path().join("secret.txt"), "outside the root").expect("writable");
    std::os::unix::fs::symlink(dir.path().join("secret.txt"), root.join("link.txt")).expect("symlink");
    let requests: Vec<(String, u32)> = [
        "/static/css/site.css",
        "/static/app.js",
        "/static/big.bin",
        "/static/link.txt",
        "/static/none.css",
        "/static/../secret.txt",
        "/static/css/..%2f..%2fsecret.txt",
        "/static/%2e%2e/secret.txt",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| (t.to_string(), 20 - i as u32))
    .collect();
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let (plan, r) = warm_requests(&file_config(&root), &requests, backend.clone());
    assert_eq!(plan.keys.len(), 8);
    assert_eq!(r.written, 2);
    assert_eq!(block(backend.get("asset:css/site.css")).as_deref(), Some(&b"body{}"[..]));
    assert_eq!(block(backend.get("asset:app.js")).as_deref(), Some(&b"let x = 1;"[..]));
    assert_eq!(r.missing_in_source, 1, "none.css");
    assert_eq!(r.failed.get(&FailureReason::TooLarge), Some(&1), "{:?}", r.failed);
    assert_eq!(r.failed.get(&FailureReason::SourceRefused), Some(&1), "the symlink out: {:?}", r.failed);
    assert_eq!(r.invalid_keys, 3, "three traversal attempts: {:?}", r.invalid_samples);
    for key in ["asset:link.txt", "asset:../secret.txt", "asset:%2e%2e/secret.txt"] {
        assert!(block(backend.get(key)).is_none(), "{key}");
    }
}

/// Writes an executable shell script.
fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("writable");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[test]
fn commands_compute_values_without_a_shell_and_a_hang_is_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    // Fails for `broken`, hangs for `slow`, prints nothing for `empty`.
    let program = script(
        dir.path(),
        "render",
        r#"case "$1" in
  broken) echo "no template" >&2; exit 3 ;;
  slow) sleep 30 ;;
  empty) ;;
  *) printf 'rendered %s' "$1" ;;
esac"#,
    );
    let pwned = dir.path().join("pwned");
    let config = format!(
        r#"
[sources.render]
command = ["{program}"]
timeout = "300ms"
concurrency = 4

[[rule]]
name = "page"
match = "GET /render/{{name}}"
key = "page:{{name}}"
source = "render"
args = ["{{name}}"]
ttl = "5m"
"#,
        program = program.display()
    );
    let injection = format!("$(touch%20{})", pwned.display()).replace('/', "%2F");
    let requests: Vec<(String, u32)> =
        ["home", "about", "broken", "slow", "empty", injection.as_str(), "a;touch%20x"]
            .iter()
            .enumerate()
            .map(|(i, n)| (format!("/render/{n}"), 20 - i as u32))
            .collect();
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let started = Instant::now();
    let (_, r) = warm_requests(&config, &requests, backend.clone());
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(block(backend.get("page:home")).as_deref(), Some(&b"rendered home"[..]));
    assert_eq!(r.failed.get(&FailureReason::CommandFailed), Some(&1), "{:?}", r.failed);
    assert_eq!(r.failed.get(&FailureReason::SourceTimeout), Some(&1), "{:?}", r.failed);
    assert!(r.errors.iter().any(|e| e.contains("no template")), "stderr is quoted: {:?}", r.errors);
    assert_eq!(r.missing_in_source, 1, "empty output");
    assert!(!pwned.exists(), "a parameter must never reach a shell");
    let literal = block(backend.get(&format!("page:{injection}"))).expect("the odd name is a value too");
    assert_eq!(literal.as_ref(), format!("rendered {injection}").as_bytes());
    assert_eq!(r.written, 4);
}

#[test]
fn commands_may_take_the_parameters_as_json() {
    let config = r#"
[sources.echo]
command = ["cat"]
input = "json"

[[rule]]
name = "product"
match = "GET /api/products/{id:int}"
key = "product:{id}"
source = "echo"
ttl = "5m"
"#;
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let (_, r) = warm_requests(config, &products(3), backend.clone());
    assert_eq!(r.written, 3);
    let value = block(backend.get("product:2")).expect("written");
    let json: serde_json::Value = serde_json::from_slice(&value).expect("JSON on stdin");
    assert_eq!(json, serde_json::json!({"rule": "product", "key": "product:2", "params": {"id": "2"}}));
}

#[test]
fn a_peer_redis_copy_carries_values_and_ttls_over_and_leaves_existing_keys() {
    let peer = Redis::start();
    let target = Redis::start();
    let mut p = peer.client().get_connection().expect("connects");
    let mut t = target.client().get_connection().expect("connects");
    let _: () = redis::pipe()
        .cmd("SET")
        .arg("product:1")
        .arg("one")
        .arg("PX")
        .arg(600_000)
        .ignore()
        .cmd("SET")
        .arg("product:2")
        .arg("two")
        .arg("PX")
        .arg(5_000)
        .ignore()
        .cmd("SET")
        .arg("product:3")
        .arg("three")
        .ignore()
        .cmd("HSET")
        .arg("product:4")
        .arg("name")
        .arg("four")
        .arg("price")
        .arg("4")
        .ignore()
        .cmd("PEXPIRE")
        .arg("product:4")
        .arg(120_000)
        .ignore()
        .cmd("RPUSH")
        .arg("product:5")
        .arg("a")
        .arg("b")
        .ignore()
        .cmd("SET")
        .arg("product:6")
        .arg("peer six")
        .ignore()
        .query(&mut p)
        .expect("peer filled");
    let _: () = redis::cmd("SET")
        .arg("product:6")
        .arg("target six")
        .arg("PX")
        .arg(60_000)
        .query(&mut t)
        .expect("SET");
    let config = format!(
        r#"
[sources.old]
url = "{}"

[[rule]]
name = "product"
match = "GET /api/products/{{id:int}}"
key = "product:{{id}}"
source = "old"
"#,
        peer.url()
    );
    let backend = Arc::new(RedisBackend::new(&target.url()).expect("valid URL"));
    let (_, r) = warm_requests(&config, &products(8), backend);
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.errors);
    assert_eq!((r.written, r.skipped_existing, r.missing_in_source), (5, 1, 2));
    let get = |c: &mut redis::Connection, k: &str| -> Option<String> {
        redis::cmd("GET").arg(k).query(c).expect("GET")
    };
    let pttl =
        |c: &mut redis::Connection, k: &str| -> i64 { redis::cmd("PTTL").arg(k).query(c).expect("PTTL") };
    assert_eq!(get(&mut t, "product:1").as_deref(), Some("one"));
    assert_eq!(get(&mut t, "product:3").as_deref(), Some("three"));
    for key in ["product:1", "product:2", "product:4"] {
        let (on_peer, on_target) = (pttl(&mut p, key), pttl(&mut t, key));
        assert!(on_target > 0 && (on_peer - on_target).abs() < 1000, "{key}: {on_peer} vs {on_target}");
    }
    assert_eq!(pttl(&mut t, "product:3"), -1, "no TTL on the peer, none on the target");
    let hash: std::collections::HashMap<String, String> =
        redis::cmd("HGETALL").arg("product:4").query(&mut t).expect("HGETALL");
    assert_eq!(hash.get("price").map(String::as_str), Some("4"));
    let list: Vec<String> =
        redis::cmd("LRANGE").arg("product:5").arg(0).arg(-1).query(&mut t).expect("LRANGE");
    assert_eq!(list, ["a", "b"]);
    assert_eq!(get(&mut t, "product:6").as_deref(), Some("target six"), "existing keys are left alone");
    assert!(pttl(&mut t, "product:6") <= 60_000);
    assert_eq!(get(&mut p, "product:1").as_deref(), Some("one"), "the peer is untouched");
}

#[test]
fn a_peer_copy_into_the_memory_backend_fails_with_a_fix() {
    let peer = Redis::start();
    let mut p = peer.client().get_connection().expect("connects");
    let _: () = redis::cmd("SET").arg("product:1").arg("one").query(&mut p).expect("SET");
    let config = format!(
        "[sources.old]\nurl = \"{}\"\n[[rule]]\nname = \"product\"\nmatch = \"GET /api/products/{{id:int}}\"\nkey = \"product:{{id}}\"\nsource = \"old\"\n",
        peer.url()
    );
    let (_, r) = warm_requests(&config, &products(1), Arc::new(MemoryBackend::new(u64::MAX)));
    assert_eq!(r.failed.get(&FailureReason::BackendError), Some(&1));
    assert!(r.errors[0].contains("redis://"), "{:?}", r.errors);
}

#[test]
fn a_hanging_program_cannot_hold_the_deadline_and_is_killed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let pids = dir.path().join("pids");
    let program = script(dir.path(), "hang", &format!("echo $$ >> {}\nsleep 60", pids.display()));
    let config = format!(
        "[warm]\ndeadline = \"1s\"\n[sources.slow]\ncommand = [\"{}\"]\ntimeout = \"1m\"\n\
         [[rule]]\nname = \"page\"\nmatch = \"GET /render/{{name}}\"\nkey = \"page:{{name}}\"\n\
         source = \"slow\"\nargs = [\"{{name}}\"]\nttl = \"5m\"\n",
        program.display()
    );
    let requests: Vec<(String, u32)> = (0..6).map(|i| (format!("/render/p{i}"), 10 - i)).collect();
    let started = Instant::now();
    let (_, r) = warm_requests(&config, &requests, Arc::new(MemoryBackend::new(u64::MAX)));
    // The deadline, then 2 s of grace for the batches in flight.
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    assert_eq!(r.status, RunStatus::Deadline);
    assert_eq!(r.written, 0);
    std::thread::sleep(Duration::from_millis(300));
    let started_pids = fs::read_to_string(&pids).expect("the program ran");
    assert!(!started_pids.trim().is_empty());
    for pid in started_pids.split_whitespace() {
        let state = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let alive = state.split_whitespace().nth(2).is_some_and(|s| s != "Z");
        assert!(!alive, "program {pid} outlived the warm: {state}");
    }
}
