//! MySQL/MariaDB as a source, against a MariaDB server each test starts for itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use preheat::backend::MemoryBackend;
use preheat::failure::FailureReason;
use preheat::source::{Encoding, SqlQuery, SqlSource};
use preheat::warm::{self, RunStatus};

use crate::servers::{CuttingProxy, Mariadb};
use crate::support::*;
use crate::warm::{
    Shop, check_sql_shop_warm, fetch_sql, plan_of, set_query, sql_analysis, sql_config, warm_with,
};

/// The tables of [`sql_config`]'s rules in database `shop`, as `check_sql_shop_warm` expects
/// them, from MariaDB's sequence tables.
const SHOP: &str = "CREATE DATABASE shop CHARACTER SET utf8mb4; USE shop;
    CREATE TABLE products (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
    INSERT INTO products SELECT seq, CONCAT('my product ', seq) FROM seq_1_to_300 WHERE seq % 7 <> 0;
    CREATE TABLE categories (slug VARCHAR(40) PRIMARY KEY, products INT NOT NULL, featured BOOLEAN NOT NULL);
    INSERT INTO categories SELECT CONCAT('item-', seq, '-0'), seq * 3, seq % 2 = 0 FROM seq_1_to_300;
    CREATE TABLE pages (path VARCHAR(200) PRIMARY KEY, html TEXT NOT NULL);
    INSERT INTO pages SELECT CONCAT('section', seq % 10, '/page-', seq, '.html'), CONCAT('<i>', seq, '</i>') FROM seq_1_to_300;";

#[test]
fn mariadb_values_by_list_and_rewritten_array_batches() {
    let db = Mariadb::start();
    db.sql(SHOP);
    // `= ANY($1)` (products, categories) is rewritten to `IN (?, ...)`, `IN ($1)` (pages)
    // expanded; `mariadb://` reads as `mysql://`.
    check_sql_shop_warm(&db.url("shop"), "my product ");
    check_sql_shop_warm(&db.url("shop").replace("mysql://", "mariadb://"), "my product ");
}

#[test]
fn mariadb_keys_and_values_arrive_exact_whatever_their_type() {
    let db = Mariadb::start();
    db.sql(
        "CREATE DATABASE t CHARACTER SET utf8mb4; USE t;
         CREATE TABLE s (slug VARCHAR(40) PRIMARY KEY, body TEXT);
         INSERT INTO s VALUES ('naïve', 'crème brûlée 🍮'), ('x-1', NULL), ('y', 'b');
         CREATE TABLE b (id BIGINT UNSIGNED PRIMARY KEY, body VARBINARY(10) NOT NULL);
         INSERT INTO b VALUES (18446744073709551615, X'FF00FE'), (7, 'plain');
         CREATE TABLE j (id INT PRIMARY KEY, price DECIMAL(12, 4), doc JSON, at DATE, on_sale BOOLEAN);
         INSERT INTO j VALUES (1, 12345678.0001, '{\"a\": [1, 2]}', '2026-12-08', TRUE);",
    );
    let url = db.url("t");
    let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    let row = |k: &str, v: &[u8]| (k.to_string(), v.to_vec());
    // utf8mb4 keys and values byte for byte; a NULL value is no value.
    assert_eq!(
        fetch_sql(&url, "SELECT slug, body FROM s WHERE slug IN ($1)", &keys(&["naïve", "x-1", "z"]), false),
        vec![row("naïve", "crème brûlée 🍮".as_bytes())]
    );
    // An unsigned key beyond i64 is matched as text; binary values arrive as they are.
    assert_eq!(
        fetch_sql(
            &url,
            "SELECT id, body FROM b WHERE id = ANY($1)",
            &keys(&["18446744073709551615", "7"]),
            false
        ),
        vec![row("18446744073709551615", &[0xff, 0x00, 0xfe]), row("7", b"plain")]
    );
    // A whole row as JSON: a decimal kept exact (as text), a JSON document as its text, a
    // boolean as one.
    let query =
        SqlQuery::parse("SELECT id, price, doc, on_sale FROM j WHERE id IN ($1)", true, Encoding::Json)
            .expect("valid");
    let got = block(async {
        let source = SqlSource::new("j", &url, 1, Duration::from_secs(10)).expect("valid URL");
        source.fetch(&query, &keys(&["1"])).await
    })
    .expect("fetched");
    let json: serde_json::Value = serde_json::from_slice(&got[0].1).expect("JSON");
    assert_eq!(json["id"], 1);
    assert_eq!(json["price"], "12345678.0001");
    assert_eq!(json["on_sale"], true);
    let doc: serde_json::Value =
        serde_json::from_str(json["doc"].as_str().expect("text")).expect("a document");
    assert_eq!(doc["a"][1], 2);
}

/// `preheat config check --connect` on a config whose rules query MariaDB at `url`.
fn connect_check(url: &str, rules: &str) -> (String, i32) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config =
        format!("[backend]\nurl = \"memory://\"\n[sources.db]\nurl = \"{url}\"\ntimeout = \"5s\"\n{rules}");
    std::fs::write(dir.path().join("preheat.toml"), config).expect("writable");
    let out = preheat(dir.path(), &["config", "check", "--connect", "--config", "preheat.toml"]);
    (format!("{}{}", text(&out.stdout), text(&out.stderr)), out.status.code().unwrap_or(-1))
}

fn rule(name: &str, sql: &str) -> String {
    format!(
        "[[rule]]\nname = \"{name}\"\nmatch = \"GET /{name}/{{id:int}}\"\nkey = \"{name}:{{id}}\"\nsource = \"db\"\nsql = \"{sql}\"\nttl = \"10m\"\n"
    )
}

#[test]
fn config_check_names_a_missing_table_an_unknown_column_and_an_unreadable_type() {
    let db = Mariadb::start();
    db.sql(
        "CREATE DATABASE c; USE c;
         CREATE TABLE products (id BIGINT PRIMARY KEY, body TEXT NOT NULL, added DATE NOT NULL);",
    );
    let rules = [
        rule("good", "SELECT id, body FROM products WHERE id IN ($1)"),
        rule("table", "SELECT id, body FROM no_such_table WHERE id IN ($1)"),
        rule("column", "SELECT id, no_such_column FROM products WHERE id IN ($1)"),
        rule("date", "SELECT id, added FROM products WHERE id IN ($1)"),
        rule("one", "SELECT id FROM products WHERE id IN ($1)"),
    ]
    .concat();
    let (out, code) = connect_check(&db.url("c"), &rules);
    assert_eq!(code, 1, "{out}");
    let line =
        |name: &str| out.lines().find(|l| l.contains(&format!("rule `{name}`"))).unwrap_or("").to_string();
    assert!(line("good").ends_with("ok"), "{out}");
    assert!(
        line("table").contains("the rule's query is wrong") && line("table").contains("no_such_table"),
        "{out}"
    );
    assert!(line("column").contains("no_such_column"), "{out}");
    assert!(line("date").contains("column `added`") && line("date").contains("CAST(added AS CHAR)"), "{out}");
    assert!(line("one").contains("returns 1 column"), "{out}");

    // A wrong password and a missing database, named, and the password never shown.
    let wrong = format!("mysql://root:hunter2-secret@127.0.0.1:{}/c", db.port);
    let (out, code) = connect_check(&wrong, &rule("good", "SELECT id, body FROM products WHERE id IN ($1)"));
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("access denied for user `root`"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
    let (out, _) =
        connect_check(&db.url("no_such_db"), &rule("good", "SELECT 1, 2 FROM dual WHERE 1 IN ($1)"));
    assert!(out.contains("database `no_such_db` does not exist"), "{out}");
}

#[test]
fn mariadb_over_tls_with_its_own_ca_and_never_without_tls() {
    let db = Mariadb::start_tls();
    db.sql(
        "CREATE DATABASE shop; USE shop; CREATE TABLE products (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
            INSERT INTO products SELECT seq, CONCAT('p', seq) FROM seq_1_to_20;
            CREATE USER app@'%' IDENTIFIED BY 'tls-pass'; GRANT SELECT ON shop.* TO app@'%';",
    );
    let ca = db.ca_file().display().to_string();
    let keys: Vec<String> = (1..=3).map(|i| i.to_string()).collect();
    let fetch = |query: &str| {
        let q = SqlQuery::parse("SELECT id, body FROM products WHERE id IN ($1)", true, Encoding::Bytes)
            .expect("valid");
        block(async {
            // A user with a password, as over any network.
            let url = format!("mysql://app:tls-pass@127.0.0.1:{}/shop?{query}", db.port);
            let source = SqlSource::new("tls", &url, 1, Duration::from_secs(10)).expect("valid URL");
            source.fetch(&q, &keys).await
        })
    };
    let rows = fetch(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}")).expect("TLS with the CA");
    assert_eq!(rows.len(), 3);
    let e = fetch("ssl-mode=VERIFY_CA").expect_err("the system's roots do not know this CA");
    assert!(e.message.contains("TLS with MySQL") && e.message.contains("ssl-ca"), "{e}");
    // MariaDB refuses a plain connection as it refuses a wrong password: both causes are named.
    let e = fetch("ssl-mode=DISABLED").expect_err("the server takes no connection without TLS");
    assert!(e.message.contains("access denied") && e.message.contains("ssl-mode=REQUIRED"), "{e}");
    assert!(!e.message.contains("tls-pass"), "{e}");
}

#[test]
fn connections_cut_mid_warm_and_a_restarted_server_cost_a_pause_not_the_run() {
    let mut db = Mariadb::start();
    db.sql(SHOP);
    let proxy = CuttingProxy::start(db.port);
    let mut config = sql_config(&format!("mysql://root@127.0.0.1:{}/shop", proxy.port));
    // About 6 s of queries, so the faults land in the middle of the run.
    config.warm.batch_size = 5;
    config.sources[0].qps = Some(25);
    let analysis = sql_analysis(&config);
    let shop = Shop { _dir: tempfile::tempdir().expect("temp dir"), config, analysis };
    let plan = plan_of(&shop);
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let faults = std::thread::spawn(move || {
        // Every open connection cut mid-stream, twice; then the server killed and started again.
        for _ in 0..2 {
            std::thread::sleep(Duration::from_millis(700));
            proxy.cut();
        }
        std::thread::sleep(Duration::from_millis(500));
        db.kill();
        std::thread::sleep(Duration::from_millis(1500));
        db.resume();
        (db, proxy)
    });
    let r = warm_with(&shop, &plan, backend.clone(), None);
    let _servers = faults.join().expect("faults done");
    assert!(r.duration_ms > 3400, "the run must span the faults, took {} ms", r.duration_ms);
    assert_eq!(r.status, RunStatus::Completed, "{r:?}");
    assert!(!r.failed.contains_key(&FailureReason::SourceDown), "a short outage is not down: {:?}", r.failed);
    let failed: u64 = r.failed.values().sum();
    assert_eq!(r.written + r.missing_in_source + failed, plan.keys.len() as u64);
    assert!(failed * 10 <= plan.keys.len() as u64, "retries carry most keys across: {:?}", r.failed);
    let coldest = plan.keys.iter().rev().find(|k| k.rule == 2).expect("a page");
    assert!(block(backend.get(&coldest.key)).is_some(), "{} was not warmed after the restart", coldest.key);
}

#[test]
fn a_hanging_mariadb_query_cannot_hold_the_deadline() {
    let db = Mariadb::start();
    db.sql(SHOP);
    let mut config = sql_config(&db.url("shop"));
    config.warm.deadline = Duration::from_secs(1);
    set_query(&mut config, "SELECT id, body FROM products WHERE id IN ($1) AND SLEEP(30) = 0");
    let analysis = sql_analysis(&config);
    let shop = Shop { _dir: tempfile::tempdir().expect("temp dir"), config, analysis };
    let plan = plan_of(&shop);
    let started = Instant::now();
    let r = warm_with(&shop, &plan, Arc::new(MemoryBackend::new(u64::MAX)), None);
    let took = started.elapsed();
    assert_eq!(r.status, RunStatus::Deadline, "{r:?}");
    assert!(took < Duration::from_secs(1) + warm::GRACE + Duration::from_secs(2), "took {took:?}");
}

#[test]
fn a_query_the_database_refuses_fails_its_rule_at_once_and_the_others_warm() {
    let db = Mariadb::start();
    db.sql(SHOP);
    let mut config = sql_config(&db.url("shop"));
    set_query(&mut config, "SELECT id, body FROM no_such_table WHERE id IN ($1)");
    let analysis = sql_analysis(&config);
    let shop = Shop { _dir: tempfile::tempdir().expect("temp dir"), config, analysis };
    let plan = plan_of(&shop);
    let r = warm_with(&shop, &plan, Arc::new(MemoryBackend::new(u64::MAX)), None);
    let products = plan.keys.iter().filter(|k| k.rule == 0).count() as u64;
    assert_eq!(r.rules[0].failed, products, "{r:?}");
    assert_eq!(r.failed.get(&FailureReason::SourceError), Some(&products), "{:?}", r.failed);
    assert!(r.errors.iter().any(|e| e.contains("no_such_table")), "{:?}", r.errors);
    let others = plan.keys.len() as u64 - products;
    assert_eq!(r.written + r.missing_in_source, others, "{r:?}");
}

#[test]
fn a_warm_from_mariadb_into_memcached_leaves_existing_keys_and_is_idempotent() {
    let db = Mariadb::start();
    db.sql(SHOP);
    let cache = crate::servers::Memcached::start();
    let backend = Arc::new(
        preheat::backend::MemcachedBackend::new(&format!("memcached://{}", cache.addr())).expect("valid URL"),
    );
    let config = sql_config(&db.url("shop"));
    let analysis = sql_analysis(&config);
    let shop = Shop { _dir: tempfile::tempdir().expect("temp dir"), config, analysis };
    let plan = plan_of(&shop);
    // The application cached one product already, with its own value and TTL.
    // Products whose id is a multiple of 7 are not in the database.
    let in_source = |k: &&preheat::plan::PlannedKey| k.key[8..].parse::<u32>().is_ok_and(|i| i % 7 != 0);
    let existing = plan.keys.iter().filter(|k| k.rule == 0).find(in_source).expect("a product");
    assert_eq!(cache.command(format!("set {} 0 30 3\r\napp\r\n", existing.key).as_bytes()), "STORED");

    let first = warm_with(&shop, &plan, backend.clone(), None);
    assert_eq!(first.status, RunStatus::Completed, "{first:?}");
    assert!(first.failed.is_empty(), "{:?} {:?}", first.failed, first.errors);
    assert_eq!(first.skipped_existing, 1);
    assert_eq!(cache.get(&existing.key).as_deref(), Some(&b"app"[..]), "left untouched");
    let ttl = |key: &str| cache.command(format!("mg {key} t\r\n").as_bytes());
    let left: i64 = ttl(&existing.key).trim_start_matches("HD t").parse().expect("a TTL");
    assert!(left <= 30, "its TTL too: {left}");
    // The warm's own keys: values from the database, the rule's TTL (10 minutes, ±10%).
    let product =
        plan.keys.iter().filter(|k| k.rule == 0 && k.key != existing.key).find(in_source).expect("a product");
    let product = (product, cache.get(&product.key).expect("warmed"));
    let left: u64 = ttl(&product.0.key).trim_start_matches("HD t").parse().expect("a TTL");
    assert!((530..=660).contains(&left), "{left}");
    let page = plan.keys.iter().find(|k| k.rule == 2).expect("a page");
    assert_eq!(ttl(&page.key), "HD t-1", "ttl = none: no expiry");

    // `config check --connect` reaches the cache and the database, and checks the queries.
    let dir = tempfile::tempdir().expect("temp dir");
    let config = format!(
        "[backend]\nurl = \"memcached://{}\"\n[sources.db]\nurl = \"{}\"\n{}",
        cache.addr(),
        db.url("shop"),
        rule("product", "SELECT id, body FROM products WHERE id IN ($1)")
    );
    std::fs::write(dir.path().join("preheat.toml"), config).expect("writable");
    let out = preheat(dir.path(), &["config", "check", "--connect", "--config", "preheat.toml"]);
    let said = text(&out.stdout);
    assert!(out.status.success(), "{said}{}", text(&out.stderr));
    for line in
        ["connect   backend: ok", "connect   source `db`: ok", "connect   rule `product` on source `db`: ok"]
    {
        assert!(said.contains(line), "{line:?} in {said}");
    }

    // Again: everything is cached now, nothing is written.
    let second = warm_with(&shop, &plan, backend, None);
    assert_eq!(second.written, 0, "{second:?}");
    assert_eq!(second.skipped_existing, first.written + first.skipped_existing);
}
