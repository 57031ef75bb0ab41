//! One conformance suite, run against every backend: the safety rules of writing.

use std::time::Duration;

use preheat::backend::{
    Backend, Entry, MemoryBackend, RedisBackend, RedisClusterBackend, WriteMode, Written,
};

/// How a test reads and prepares a backend's contents, the way an application would.
trait Inspect {
    async fn value(&self, key: &str) -> Option<Vec<u8>>;
    async fn ttl(&self, key: &str) -> Option<Duration>;
    async fn app_sets(&self, key: &str, value: &[u8], ttl: Option<Duration>);
}

impl Inspect for MemoryBackend {
    async fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.get(key).await.map(|v| v.to_vec())
    }
    async fn ttl(&self, key: &str) -> Option<Duration> {
        self.remaining_ttl(key).await
    }
    async fn app_sets(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        self.insert(key, value, ttl).await;
    }
}

struct RedisInspector(redis::Client);

impl Inspect for RedisInspector {
    async fn value(&self, key: &str) -> Option<Vec<u8>> {
        let mut c = self.0.get_multiplexed_async_connection().await.expect("connects");
        redis::cmd("GET").arg(key).query_async(&mut c).await.expect("GET")
    }
    async fn ttl(&self, key: &str) -> Option<Duration> {
        let mut c = self.0.get_multiplexed_async_connection().await.expect("connects");
        let ms: i64 = redis::cmd("PTTL").arg(key).query_async(&mut c).await.expect("PTTL");
        (ms >= 0).then(|| Duration::from_millis(ms as u64))
    }
    async fn app_sets(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let mut c = self.0.get_multiplexed_async_connection().await.expect("connects");
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(t) = ttl {
            cmd.arg("PX").arg(t.as_millis() as u64);
        }
        let _: () = cmd.query_async(&mut c).await.expect("SET");
    }
}

/// The outcomes of a batch that must have succeeded.
fn written(out: Vec<Result<Written, preheat::backend::BackendError>>) -> Vec<Written> {
    out.into_iter().collect::<Result<Vec<_>, _>>().expect("writes")
}

/// A cluster read as an application reads it: each key on its master.
struct ClusterInspector(std::sync::Arc<crate::servers::RedisCluster>);

impl Inspect for ClusterInspector {
    async fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    async fn ttl(&self, key: &str) -> Option<Duration> {
        self.0.ttl(key)
    }
    async fn app_sets(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(t) = ttl {
            cmd.arg("PX").arg(t.as_millis() as u64);
        }
        let _: () = cmd.query(&mut self.0.node(self.0.owner(key))).expect("SET");
    }
}

fn entry(key: &str, value: &[u8], ttl_secs: Option<u64>) -> Entry {
    Entry::value(key, value.to_vec(), ttl_secs.map(Duration::from_secs))
}

/// The suite; `tick` is the backend's TTL resolution (memcached counts whole seconds).
async fn conformance(b: &impl Backend, look: &impl Inspect, tick: Duration) {
    // If absent: creates, and never touches what exists.
    look.app_sets("app", b"from the app", Some(Duration::from_secs(30))).await;
    let out = b
        .write_batch(
            &[entry("fresh", b"warm", Some(600)), entry("app", b"warm", Some(600))],
            WriteMode::IfAbsent,
        )
        .await;
    let out = written(out);
    assert_eq!(out, [Written::Created, Written::Existed]);
    assert_eq!(look.value("fresh").await.as_deref(), Some(&b"warm"[..]));
    assert_eq!(look.value("app").await.as_deref(), Some(&b"from the app"[..]));
    assert!(look.ttl("app").await.expect("TTL kept") <= Duration::from_secs(30));
    let ttl = look.ttl("fresh").await.expect("has the entry's TTL");
    assert!(ttl > Duration::from_secs(590) && ttl <= Duration::from_secs(600), "{ttl:?}");

    // Overwrite keeping the remaining TTL; absent keys are created with theirs.
    let out = b
        .write_batch(
            &[entry("app", b"new", Some(600)), entry("other", b"x", Some(60))],
            WriteMode::OverwriteKeepTtl,
        )
        .await;
    let out = written(out);
    assert_eq!(out, [Written::Replaced, Written::Created]);
    assert_eq!(look.value("app").await.as_deref(), Some(&b"new"[..]));
    assert!(look.ttl("app").await.expect("TTL kept") <= Duration::from_secs(30), "KEEPTTL");
    assert!(look.ttl("other").await.expect("TTL set") > Duration::from_secs(50));

    // Overwrite resetting the TTL.
    let out = written(b.write_batch(&[entry("app", b"newer", Some(900))], WriteMode::Overwrite).await);
    assert_eq!(out, [Written::Replaced]);
    assert!(look.ttl("app").await.expect("TTL reset") > Duration::from_secs(800));

    // No TTL means no expiry; binary values survive.
    let out = b.write_batch(&[entry("forever", &[0, 255, 10, 13], None)], WriteMode::IfAbsent).await;
    let out = written(out);
    assert_eq!(out, [Written::Created]);
    assert_eq!(look.ttl("forever").await, None);
    assert_eq!(look.value("forever").await.as_deref(), Some(&[0u8, 255, 10, 13][..]));

    // Short TTLs expire.
    let brief = [Entry::value("brief", b"x".to_vec(), Some(tick))];
    written(b.write_batch(&brief, WriteMode::IfAbsent).await);
    tokio::time::sleep(tick * 2 + Duration::from_millis(100)).await;
    assert_eq!(look.value("brief").await, None);

    // Taking back: only a value that is still the warm's goes.
    let ours = entry("taken", b"warm", Some(600));
    written(b.write_batch(std::slice::from_ref(&ours), WriteMode::IfAbsent).await);
    let newer = entry("kept", b"warm", Some(600));
    written(b.write_batch(std::slice::from_ref(&newer), WriteMode::IfAbsent).await);
    look.app_sets("kept", b"newer, from the app", Some(Duration::from_secs(30))).await;
    let back: Vec<bool> = b.take_back(&[&ours, &newer]).await.into_iter().map(|r| r.expect("asks")).collect();
    assert_eq!(back, [true, false]);
    assert_eq!(look.value("taken").await, None);
    assert_eq!(look.value("kept").await.as_deref(), Some(&b"newer, from the app"[..]));

    // An empty batch is fine.
    assert!(b.write_batch(&[], WriteMode::IfAbsent).await.is_empty());

    // A batch larger than one pipeline (the Redis writer splits it over connections): each
    // outcome is its own entry's, in order.
    for i in (0..300).step_by(3) {
        look.app_sets(&format!("big:{i}"), b"from the app", None).await;
    }
    let big: Vec<Entry> =
        (0..300).map(|i| entry(&format!("big:{i}"), format!("warm {i}").as_bytes(), Some(600))).collect();
    let out = written(b.write_batch(&big, WriteMode::IfAbsent).await);
    let expected: Vec<Written> =
        (0..300).map(|i| if i % 3 == 0 { Written::Existed } else { Written::Created }).collect();
    assert_eq!(out, expected);
    assert_eq!(look.value("big:299").await.as_deref(), Some(&b"warm 299"[..]));
    assert_eq!(look.value("big:150").await.as_deref(), Some(&b"from the app"[..]));

    // The run lock: one holder at a time, released only by its holder, freed by its TTL.
    let minute = Duration::from_secs(60);
    assert!(b.try_lock("lock", "run-a", minute).await.expect("locks"));
    assert!(!b.try_lock("lock", "run-b", minute).await.expect("asks"), "held by run-a");
    b.unlock("lock", "run-b").await.expect("unlocks");
    assert!(!b.try_lock("lock", "run-b", minute).await.expect("asks"), "run-b cannot release run-a's lock");
    b.unlock("lock", "run-a").await.expect("unlocks");
    assert!(b.try_lock("lock", "run-b", tick).await.expect("locks"));
    tokio::time::sleep(tick * 2 + Duration::from_millis(100)).await;
    assert!(b.try_lock("lock", "run-c", minute).await.expect("locks"), "an expired lock is free");
    assert_eq!(
        look.value("lock").await.is_some(),
        !b.describe().starts_with("memory"),
        "memory locks are no entries"
    );

    // Its memory, read without writing: one reading per node, holding what was written.
    let nodes = b.memory().await.expect("reads its memory");
    assert!(
        !nodes.is_empty() && nodes.iter().all(|n| !n.policy.is_empty() && !n.node.is_empty()),
        "{nodes:?}"
    );
    assert!(nodes.iter().map(|n| n.used_bytes).sum::<u64>() > 300 * 8, "{nodes:?}");
    assert!(nodes.iter().all(|n| n.evicted_keys == 0), "{nodes:?}");
}

#[tokio::test]
async fn memory_backend_conformance() {
    let b = MemoryBackend::new(u64::MAX);
    conformance(&b, &b, Duration::from_millis(80)).await;
}

#[tokio::test]
async fn redis_backend_conformance() {
    let server = crate::servers::Redis::start();
    let b = RedisBackend::new(&server.url()).expect("valid URL");
    conformance(&b, &RedisInspector(server.client()), Duration::from_millis(80)).await;
    // A restored copy is taken back by comparing its DUMP.
    let mut c = server.client().get_multiplexed_async_connection().await.expect("connects");
    let _: () =
        redis::cmd("RPUSH").arg("peer-list").arg("a").arg("b").query_async(&mut c).await.expect("RPUSH");
    let payload: Vec<u8> = redis::cmd("DUMP").arg("peer-list").query_async(&mut c).await.expect("DUMP");
    let copy = Entry { key: "copied-list".into(), value: payload, ttl: None, dump: true };
    assert_eq!(
        written(b.write_batch(std::slice::from_ref(&copy), WriteMode::IfAbsent).await),
        [Written::Created]
    );
    let back = b.take_back(&[&copy]).await;
    assert!(matches!(back[..], [Ok(true)]), "{back:?}");
    let exists: i64 = redis::cmd("EXISTS").arg("copied-list").query_async(&mut c).await.expect("EXISTS");
    assert_eq!(exists, 0);
}

#[tokio::test]
async fn redis_cluster_backend_conformance() {
    let cluster = std::sync::Arc::new(crate::servers::RedisCluster::start(3));
    let b = RedisClusterBackend::new(&cluster.url()).expect("valid URL");
    conformance(&b, &ClusterInspector(cluster.clone()), Duration::from_millis(80)).await;
    // The conformance keys landed on more than one master, so batches crossed slots.
    let owners: std::collections::BTreeSet<usize> =
        ["fresh", "app", "other", "forever"].iter().map(|k| cluster.owner(k)).collect();
    assert!(owners.len() > 1, "{owners:?}");
}

#[tokio::test]
async fn redis_backend_conformance_over_tls() {
    // Over TLS, writes go through the general client rather than the plain-TCP writer.
    let server = crate::servers::Redis::start_tls();
    let ca = std::fs::read(server.ca_file()).expect("CA readable");
    let b = RedisBackend::with_root_ca(&server.url(), &ca).expect("valid URL");
    conformance(&b, &RedisInspector(server.client()), Duration::from_millis(80)).await;
}

#[tokio::test]
async fn redis_writes_authenticate_as_the_url_user_on_its_database() {
    let server = crate::servers::Redis::start();
    let mut admin = server.client().get_multiplexed_async_connection().await.expect("connects");
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "warmer", "on", ">s3cret-pass", "~*", "+@all"])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let url = |password: &str| format!("redis://warmer:{password}@127.0.0.1:{}/3", server.port);
    let b = RedisBackend::new(&url("s3cret-pass")).expect("valid URL");
    let entries = [entry("a", b"1", Some(60)), entry("b", b"2", None)];
    assert_eq!(written(b.write_batch(&entries, WriteMode::IfAbsent).await), [Written::Created; 2]);
    assert_eq!(written(b.write_batch(&entries, WriteMode::IfAbsent).await), [Written::Existed; 2]);
    let in_db = |db: i64| {
        let client = server.client();
        async move {
            let mut c = client.get_multiplexed_async_connection().await.expect("connects");
            let _: () = redis::cmd("SELECT").arg(db).query_async(&mut c).await.expect("SELECT");
            redis::cmd("MGET")
                .arg(&["a", "b"])
                .query_async::<Vec<Option<String>>>(&mut c)
                .await
                .expect("MGET")
        }
    };
    assert_eq!(in_db(3).await, [Some("1".to_string()), Some("2".to_string())]);
    assert_eq!(in_db(0).await, [None, None]);

    // A wrong password: refused, not worth a retry, with the fix and without the password.
    let b = RedisBackend::new(&url("not-the-pass")).expect("valid URL");
    let mut out = b.write_batch(&[entry("c", b"3", None)], WriteMode::IfAbsent).await;
    let err = out.pop().expect("one result").expect_err("refused");
    assert!(!err.retryable, "{err}");
    let text = err.to_string();
    assert!(text.contains("user name and password") && !text.contains("not-the-pass"), "{text}");

    // A user that may not write: every command of the pipeline is refused, and the batch
    // fails with the server's reason.
    let _: () = redis::cmd("ACL")
        .arg(&["SETUSER", "reader", "on", ">read-pass", "~*", "+get"])
        .query_async(&mut admin)
        .await
        .expect("ACL SETUSER");
    let b = RedisBackend::new(&format!("redis://reader:read-pass@127.0.0.1:{}/0", server.port))
        .expect("valid URL");
    let out = b.write_batch(&[entry("d", b"4", None), entry("e", b"5", None)], WriteMode::IfAbsent).await;
    for result in out {
        let err = result.expect_err("refused");
        assert!(!err.retryable && err.to_string().contains("NOPERM"), "{err}");
    }
}

#[tokio::test]
async fn redis_errors_are_retryable_and_never_show_the_password() {
    let port = crate::servers::free_port();
    let b = RedisBackend::new(&format!("redis://:hunter2-secret@127.0.0.1:{port}/0")).expect("valid URL");
    assert_eq!(b.describe(), format!("redis://:***@127.0.0.1:{port}/0"));
    let mut out = b.write_batch(&[entry("k", b"v", None)], WriteMode::IfAbsent).await;
    let err = out.pop().expect("one result").expect_err("nothing listens");
    assert!(err.retryable, "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(RedisBackend::new("redis://:x@").is_err() || RedisBackend::new("not a url").is_err());
}

#[tokio::test]
async fn a_redis_that_refuses_a_command_is_told_by_name_and_the_rest_still_works() {
    // As managed services do: scripting and INFO renamed away.
    let server =
        crate::servers::Redis::start_with(&["--rename-command", "EVAL", "", "--rename-command", "INFO", ""]);
    let backend = RedisBackend::new(&server.url()).expect("valid URL");
    let e = backend.memory().await.expect_err("INFO is gone");
    assert!(e.message.contains("refuses `INFO`") && e.message.contains("cache_headroom"), "{e}");
    assert!(!e.retryable, "{e}");
    // Writes need only SET, and still work; the lock is taken with SET but released by a script.
    let written = written(backend.write_batch(&[entry("k", b"v", Some(60))], WriteMode::IfAbsent).await);
    assert_eq!(written, vec![Written::Created]);
    assert!(backend.try_lock("lock", "token", Duration::from_secs(60)).await.expect("SET NX PX"));
    let e = backend.unlock("lock", "token").await.expect_err("EVAL is gone");
    assert!(e.message.contains("refuses `EVAL`") && e.message.contains("invalidations"), "{e}");
    let taken = backend.take_back(&[&entry("k", b"v", Some(60))]).await;
    assert!(matches!(&taken[0], Err(e) if e.message.contains("refuses `EVAL`")), "{taken:?}");
}

/// Reads a memcached as an application would, with the meta commands.
struct MemcachedInspector(std::sync::Arc<crate::servers::Memcached>);

impl Inspect for MemcachedInspector {
    async fn value(&self, key: &str) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    async fn ttl(&self, key: &str) -> Option<Duration> {
        let reply = self.0.command(format!("mg {key} t\r\n").as_bytes());
        let t: i64 = reply.strip_prefix("HD t")?.parse().ok()?;
        (t >= 0).then(|| Duration::from_secs(t as u64))
    }
    async fn app_sets(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        let mut request =
            format!("set {key} 0 {} {}\r\n", ttl.map_or(0, |t| t.as_secs()), value.len()).into_bytes();
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
        assert_eq!(self.0.command(&request), "STORED");
    }
}

#[tokio::test]
async fn memcached_backend_conformance() {
    let server = std::sync::Arc::new(crate::servers::Memcached::start());
    let b = preheat::backend::MemcachedBackend::new(&format!("memcached://{}", server.addr()))
        .expect("valid URL");
    conformance(&b, &MemcachedInspector(server.clone()), Duration::from_secs(1)).await;
    // A key the protocol cannot carry fails alone, before anything is sent; the rest of the
    // batch is written.
    let odd = [entry("a b", b"x", None), entry(&"k".repeat(251), b"x", None), entry("ok", b"x", None)];
    let out = b.write_batch(&odd, WriteMode::IfAbsent).await;
    assert!(matches!(&out[0], Err(e) if e.message.contains("white space") && !e.retryable), "{out:?}");
    assert!(matches!(&out[1], Err(e) if e.message.contains("250 bytes")), "{out:?}");
    assert!(matches!(out[2], Ok(Written::Created)), "{out:?}");
    // A TTL beyond memcached's 30 days (sent as an absolute time) is kept as a duration.
    let long = Duration::from_secs(40 * 24 * 3600);
    written(b.write_batch(&[Entry::value("long", b"x".to_vec(), Some(long))], WriteMode::IfAbsent).await);
    let ttl = MemcachedInspector(server.clone()).ttl("long").await.expect("a TTL");
    // (memcached counts whole seconds on a clock of its own: a second either way.)
    assert!(ttl > long - Duration::from_secs(5) && ttl <= long + Duration::from_secs(2), "{ttl:?}");
    // A value beyond the server's item size (1 MiB by default) fails alone, and says why.
    let big = entry("big", &vec![b'x'; 2 << 20], None);
    let out = b.write_batch(&[big, entry("small", b"x", None)], WriteMode::IfAbsent).await;
    assert!(matches!(&out[0], Err(e) if e.message.contains("item size") && !e.retryable), "{out:?}");
    assert!(matches!(out[1], Ok(Written::Created)), "{out:?}");
}

/// Where a ketama client (Python's uhashring, `hash_fn='ketama'`) looks for each of `keys`
/// among `servers`.
fn ketama_client_nodes(servers: &[String], keys: &[String]) -> Vec<String> {
    use std::io::Write;
    crate::support::require_python_module("uhashring");
    let script = "import sys\nfrom uhashring import HashRing\nr = HashRing(nodes=sys.argv[1].split(','), hash_fn='ketama')\nfor k in sys.stdin.read().split():\n    print(r.get_node(k))";
    let mut child = std::process::Command::new("python3")
        .args(["-c", script, &servers.join(",")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(keys.join("\n").as_bytes()).expect("writes");
    let out = child.wait_with_output().expect("finishes");
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[tokio::test]
async fn memcached_keys_land_where_ketama_clients_look_and_a_dead_server_costs_only_its_keys() {
    let mut servers: Vec<crate::servers::Memcached> =
        (0..3).map(|_| crate::servers::Memcached::start()).collect();
    let addrs: Vec<String> = servers.iter().map(|s| s.addr()).collect();
    let b = preheat::backend::MemcachedBackend::new(&format!("memcached://{}", addrs.join(",")))
        .expect("valid URL");
    let keys: Vec<String> = (0..300).map(|i| format!("product:{i}")).collect();
    let entries: Vec<Entry> = keys.iter().map(|k| entry(k, k.as_bytes(), Some(600))).collect();
    assert!(
        written(b.write_batch(&entries, WriteMode::IfAbsent).await).iter().all(|w| *w == Written::Created)
    );
    let nodes = ketama_client_nodes(&addrs, &keys);
    assert_eq!(nodes.len(), keys.len());
    for (key, node) in keys.iter().zip(&nodes) {
        let at = addrs.iter().position(|a| a == node).expect("a listed server");
        for (i, server) in servers.iter().enumerate() {
            assert_eq!(server.get(key).is_some(), i == at, "{key}: the client looks on {node}");
        }
    }
    for addr in &addrs {
        assert!(nodes.iter().filter(|n| *n == addr).count() > 50, "every server holds its share");
    }

    // One server down: its keys fail (and may be retried), the others are written.
    servers[1].kill();
    let more: Vec<Entry> = (300..600).map(|i| entry(&format!("product:{i}"), b"v", Some(600))).collect();
    let more_keys: Vec<String> = more.iter().map(|e| e.key.clone()).collect();
    let nodes = ketama_client_nodes(&addrs, &more_keys);
    for (result, node) in b.write_batch(&more, WriteMode::IfAbsent).await.into_iter().zip(&nodes) {
        match result {
            Err(e) => assert!(node == &addrs[1] && e.retryable && e.message.contains(&addrs[1]), "{e}"),
            Ok(w) => assert!(node != &addrs[1] && w == Written::Created),
        }
    }
}
