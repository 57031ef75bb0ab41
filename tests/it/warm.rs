//! The warmer against real SQLite databases and the in-memory backend.

use std::sync::Arc;
use std::time::{Duration, Instant};

use preheat::analyze::Analysis;
use preheat::backend::{Backend, MemoryBackend, RedisBackend};
use preheat::config::Config;
use preheat::failure::FailureReason;
use preheat::plan::Plan;
use preheat::source::run_script;
use preheat::warm::{self, RunReport, RunStatus};

use crate::support::*;

const SCHEMA: &str = "
CREATE TABLE products (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
INSERT INTO products SELECT i, 'product body ' || i FROM n WHERE i % 10 != 0;
CREATE TABLE pages (path TEXT PRIMARY KEY, html TEXT NOT NULL);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
INSERT INTO pages SELECT 'section' || (i % 10) || '/page-' || i || '.html', '<p>' || i || '</p>' FROM n;
";

pub(crate) struct Shop {
    pub _dir: tempfile::TempDir,
    pub config: Config,
    pub analysis: Analysis,
}

/// A database, a config whose `product` and `page` rules load from it, and a profile.
fn shop(warm: &str, product_source: &str) -> Shop {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("shop.db");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run_script(&format!("sqlite://{}?mode=rwc", db.display()), SCHEMA)).expect("schema");
    let text = format!(
        r#"
[warm]
{warm}
[sources.shop]
url = "sqlite://{db}"
[sources.other]
url = "{product_source}"

[[rule]]
name = "product"
match = "GET /api/products/{{id:int}}"
key = "product:{{id}}"
source = "other"
sql = "SELECT id, body FROM products WHERE id IN ($1)"
ttl = "10m"

[[rule]]
name = "category"
match = "GET /api/categories/{{slug}}/products"
key = "category:{{slug}}:page:{{page}}"
keep_query = ["page"]

[[rule]]
name = "page"
match = "GET|HEAD /pages/{{path:path}}"
key = "page:/{{path}}"
source = "shop"
sql = "SELECT path, html FROM pages WHERE path = ANY($1)"
ttl = "1h"
encoding = "text"
"#,
        db = db.display(),
        product_source = product_source.replace("{db}", &db.display().to_string())
    );
    let config = Config::parse(&text, "shop.toml").expect("valid config");
    let log = dir.path().join("access.log");
    write_log(&log, &config, &gen_opts(6_000, 400, 13), Compression::Plain);
    let analysis = analyze_files(&[log], &config, 2);
    Shop { _dir: dir, config, analysis }
}

pub(crate) fn plan_of(s: &Shop) -> Plan {
    Plan::build(s.analysis.rows().into_iter().map(Ok), &s.analysis.summary, &s.config.plan_settings())
        .expect("plan")
}

pub(crate) fn warm_with<B: Backend + 'static>(
    s: &Shop,
    plan: &Plan,
    backend: Arc<B>,
    stop_after: Option<Duration>,
) -> RunReport {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let sources = warm::open_sources(&s.config.sources, &s.config.warm);
        let stop = async move {
            match stop_after {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending::<()>().await,
            }
        };
        warm::run(plan, &s.config.warm_job(), &sources, backend, stop, &|_| {}).await
    })
}

/// Replaces the `product` rule's query.
pub(crate) fn set_query(config: &mut Config, sql: &str) {
    let query = preheat::source::SqlQuery::parse(sql, true, preheat::source::Encoding::Bytes).expect("valid");
    config.loads[0].as_mut().expect("product has a source").fetch =
        preheat::source::Fetch::Sql { query, param: 0 };
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

#[test]
fn values_come_from_the_database_and_missing_rows_are_counted() {
    let s = shop("batch_size = 50", "sqlite://{db}");
    let plan = plan_of(&s);
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let r = warm_with(&s, &plan, backend.clone(), None);
    assert_eq!(r.status, RunStatus::Completed);
    let product_keys: Vec<&str> = plan.keys.iter().filter(|k| k.rule == 0).map(|k| k.key.as_str()).collect();
    let missing = product_keys
        .iter()
        .filter(|k| k.trim_start_matches("product:").parse::<u32>().is_ok_and(|id| id % 10 == 0))
        .count() as u64;
    assert!(missing > 0, "the test must cover rows the database lacks");
    assert_eq!(r.missing_in_source, missing);
    assert_eq!(r.no_source, plan.keys.iter().filter(|k| k.rule == 1).count() as u64);
    assert_eq!(r.written + r.missing_in_source + r.no_source, plan.keys.len() as u64);
    for k in &product_keys {
        let id = k.trim_start_matches("product:");
        let got = block(backend.get(k));
        if id.parse::<u32>().is_ok_and(|i| i % 10 == 0) {
            assert!(got.is_none(), "{k} has no row and must not be cached");
        } else {
            assert_eq!(got.as_deref(), Some(format!("product body {id}").as_bytes()), "{k}");
        }
    }
    let page = plan.keys.iter().find(|k| k.rule == 2).expect("pages planned");
    let n = page.key.rsplit('-').next().and_then(|t| t.strip_suffix(".html")).expect("page number");
    assert_eq!(block(backend.get(&page.key)).as_deref(), Some(format!("<p>{n}</p>").as_bytes()));
    // TTL 10m with the default ±10% jitter.
    let ttl = block(backend.remaining_ttl(product_keys[0])).expect("has a TTL");
    assert!(ttl > Duration::from_secs(530) && ttl <= Duration::from_secs(660), "{ttl:?}");
}

#[test]
fn existing_keys_keep_their_value_and_ttl_and_a_second_run_writes_nothing() {
    let s = shop("", "sqlite://{db}");
    let plan = plan_of(&s);
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let present: Vec<String> =
        plan.keys.iter().filter(|k| k.rule == 2).take(5).map(|k| k.key.clone()).collect();
    for k in &present {
        block(backend.insert(k, b"set by the app", Some(Duration::from_secs(30))));
    }
    let first = warm_with(&s, &plan, backend.clone(), None);
    assert_eq!(first.skipped_existing, 5);
    for k in &present {
        assert_eq!(block(backend.get(k)).as_deref(), Some(&b"set by the app"[..]));
        let ttl = block(backend.remaining_ttl(k)).expect("kept its TTL");
        assert!(ttl <= Duration::from_secs(30), "TTL was extended: {ttl:?}");
    }
    let second = warm_with(&s, &plan, backend.clone(), None);
    assert_eq!(second.written, 0, "a second run must write nothing new");
    assert_eq!(second.skipped_existing, first.written + first.skipped_existing);
}

#[test]
fn overwrite_replaces_values_but_keeps_the_remaining_ttl() {
    let s = shop("on_existing = \"overwrite\"", "sqlite://{db}");
    let plan = plan_of(&s);
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let key = plan.keys.iter().find(|k| k.rule == 2).expect("a page").key.clone();
    block(backend.insert(&key, b"stale", Some(Duration::from_secs(30))));
    let r = warm_with(&s, &plan, backend.clone(), None);
    assert_eq!(r.overwritten, 1);
    assert!(block(backend.get(&key)).is_some_and(|v| v.starts_with(b"<p>")));
    let ttl = block(backend.remaining_ttl(&key)).expect("kept a TTL");
    assert!(ttl <= Duration::from_secs(30), "overwrite must keep the remaining TTL, got {ttl:?}");
}

#[test]
fn invalid_keys_never_reach_the_cache() {
    let s = shop("", "sqlite://{db}");
    let mut rows = s.analysis.rows().clone();
    let victim = rows.iter_mut().find(|r| r.rule == "page").expect("a page row");
    victim.key = "page:/bad key\twith space".into();
    let plan =
        Plan::build(rows.into_iter().map(Ok), &s.analysis.summary, &s.config.plan_settings()).expect("plan");
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let r = warm_with(&s, &plan, backend.clone(), None);
    assert_eq!(r.invalid_keys, 1);
    assert!(r.invalid_samples[0].contains("white space"), "{:?}", r.invalid_samples);
    assert!(block(backend.get("page:/bad key\twith space")).is_none());
}

#[test]
fn an_unreachable_database_costs_only_its_rules() {
    let s = shop("", "sqlite:///nonexistent-dir/shop.db");
    let plan = plan_of(&s);
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let started = Instant::now();
    let r = warm_with(&s, &plan, backend.clone(), None);
    assert_eq!(r.status, RunStatus::Completed);
    let products = plan.keys.iter().filter(|k| k.rule == 0).count() as u64;
    assert_eq!(r.rules[0].failed, products);
    assert!(
        r.failed.contains_key(&FailureReason::SourceError)
            || r.failed.contains_key(&FailureReason::SourceDown),
        "{:?}",
        r.failed
    );
    assert_eq!(r.rules[2].written, plan.keys.iter().filter(|k| k.rule == 2).count() as u64);
    assert!(!r.errors.is_empty());
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_hanging_query_cannot_hold_the_deadline() {
    // The product query computes a billion-row recursion: it would run for minutes.
    let s = shop("deadline = \"1s\"\nbatch_size = 20\nconcurrency = 2", "sqlite://{db}");
    let mut config = s.config.clone();
    let slow = "SELECT id, body FROM products WHERE id IN ($1) AND (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000) SELECT count(*) FROM c) > 0";
    set_query(&mut config, slow);
    let shop = Shop { config, ..s };
    let plan = plan_of(&shop);
    let started = Instant::now();
    let r = warm_with(&shop, &plan, Arc::new(MemoryBackend::new(u64::MAX)), None);
    let took = started.elapsed();
    assert_eq!(r.status, RunStatus::Deadline);
    assert!(took < Duration::from_secs(1) + warm::GRACE + Duration::from_secs(2), "took {took:?}");
    assert!(r.failed.get(&FailureReason::Cancelled).is_some_and(|n| *n > 0) || r.not_started > 0, "{r:?}");
}

#[test]
fn a_stop_signal_ends_the_run() {
    let s = shop("batch_size = 1\nconcurrency = 1", "sqlite://{db}");
    let plan = plan_of(&s);
    let r = warm_with(&s, &plan, Arc::new(MemoryBackend::new(u64::MAX)), Some(Duration::from_millis(1)));
    assert_eq!(r.status, RunStatus::Interrupted);
    assert!(r.not_started > 0);
    assert_eq!(
        r.written + r.missing_in_source + r.no_source + r.not_started + r.failed.values().sum::<u64>(),
        plan.keys.len() as u64
    );
}

/// The test rules with `product` (integer ids, `= ANY`), `page` (text, `IN`) and `category`
/// (a JSON row) loading from the SQL database at `url` (PostgreSQL, MySQL).
pub(crate) fn sql_config(url: &str) -> Config {
    let text = format!(
        r#"
[warm]
batch_size = 64
[sources.db]
url = "{url}"
timeout = "3s"

[[rule]]
name = "product"
match = "GET /api/products/{{id:int}}"
key = "product:{{id}}"
source = "db"
sql = "SELECT id, body FROM products WHERE id = ANY($1)"
ttl = "10m"

[[rule]]
name = "category"
match = "GET /api/categories/{{slug}}/products"
key = "category:{{slug}}:page:{{page}}"
keep_query = ["page"]
source = "db"
param = "slug"
sql = "SELECT slug, products, featured FROM categories WHERE slug = ANY($1)"
encoding = "json"
ttl = "5m"

[[rule]]
name = "page"
match = "GET|HEAD /pages/{{path:path}}"
key = "page:/{{path}}"
source = "db"
sql = "SELECT path, html FROM pages WHERE path IN ($1)"
encoding = "text"
ttl = "none"
"#
    );
    Config::parse(&text, "pg.toml").expect("valid config")
}

pub(crate) fn sql_analysis(config: &Config) -> Analysis {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("access.log");
    write_log(&log, config, &gen_opts(6_000, 300, 29), Compression::Plain);
    analyze_files(&[log], config, 2)
}

#[test]
fn postgres_values_by_array_and_list_batches() {
    let pg = crate::servers::Postgres::start();
    pg.psql(
        "CREATE TABLE products (id bigint PRIMARY KEY, body text NOT NULL);
         INSERT INTO products SELECT i, 'pg product ' || i FROM generate_series(1, 300) i WHERE i % 7 <> 0;
         CREATE TABLE categories (slug text PRIMARY KEY, products int NOT NULL, featured boolean NOT NULL);
         INSERT INTO categories SELECT 'item-' || i || '-0', i * 3, i % 2 = 0 FROM generate_series(1, 300) i;
         CREATE TABLE pages (path text PRIMARY KEY, html text NOT NULL);
         INSERT INTO pages SELECT 'section' || (i % 10) || '/page-' || i || '.html', '<i>' || i || '</i>' FROM generate_series(1, 300) i;",
    );
    check_sql_shop_warm(&pg.url(), "pg product ");
}

/// Warms [`sql_config`]'s rules from the database at `url`, whose tables hold products 1 to
/// 300 but every seventh (each body `{product_body}N`), categories `item-N-0` with `N * 3`
/// products, featured when N is even, and pages `<i>N</i>`; checks every value and TTL.
pub(crate) fn check_sql_shop_warm(url: &str, product_body: &str) {
    let config = sql_config(url);
    let analysis = sql_analysis(&config);
    let plan = Plan::build(analysis.rows().into_iter().map(Ok), &analysis.summary, &config.plan_settings())
        .expect("plan");
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let shop = Shop { _dir: tempfile::tempdir().expect("temp dir"), config, analysis };
    let r = warm_with(&shop, &plan, backend.clone(), None);
    assert_eq!(r.status, RunStatus::Completed);
    assert!(r.failed.is_empty(), "{:?} {:?}", r.failed, r.errors);
    let missing = plan
        .keys
        .iter()
        .filter(|k| k.rule == 0 && k.key[8..].parse::<u32>().is_ok_and(|i| i % 7 == 0))
        .count();
    assert_eq!(r.missing_in_source, missing as u64);
    assert_eq!(r.written + r.missing_in_source, plan.keys.len() as u64);

    let product = plan
        .keys
        .iter()
        .find(|k| k.rule == 0 && !k.key[8..].parse::<u32>().is_ok_and(|i| i % 7 == 0))
        .expect("a product");
    assert_eq!(
        block(backend.get(&product.key)).as_deref(),
        Some(format!("{product_body}{}", &product.key[8..]).as_bytes())
    );
    let ttl = block(backend.remaining_ttl(&product.key)).expect("the rule's TTL");
    // 10 minutes with the default jitter of ±10%, less the run so far.
    assert!(ttl > Duration::from_secs(500) && ttl <= Duration::from_secs(660), "{ttl:?}");
    let category = plan.keys.iter().find(|k| k.rule == 1).expect("a category");
    let json: serde_json::Value =
        serde_json::from_slice(&block(backend.get(&category.key)).expect("cached")).expect("a JSON row");
    let n: i64 = json["slug"]
        .as_str()
        .and_then(|s| s.split('-').nth(1))
        .and_then(|n| n.parse().ok())
        .expect("slug item-N-0");
    assert_eq!(json["products"], n * 3);
    assert_eq!(json["featured"], n % 2 == 0);
    let page = plan.keys.iter().find(|k| k.rule == 2).expect("a page");
    assert!(block(backend.get(&page.key)).is_some_and(|v| v.starts_with(b"<i>")));
    assert_eq!(block(backend.remaining_ttl(&page.key)), None, "ttl = none means no expiry");
}

/// The tables of [`sql_config`]'s rules, with 300 products.
const PG_PRODUCTS: &str = "CREATE TABLE products (id bigint PRIMARY KEY, body text NOT NULL);
     INSERT INTO products SELECT i, 'pg product ' || i FROM generate_series(1, 300) i;
     CREATE TABLE categories (slug text PRIMARY KEY, products int NOT NULL, featured boolean NOT NULL);
     CREATE TABLE pages (path text PRIMARY KEY, html text NOT NULL);";

#[test]
fn postgres_over_tls_with_its_own_ca_and_never_without_tls() {
    let pg = crate::servers::Postgres::start_tls();
    pg.psql_tls(PG_PRODUCTS);
    let warm = |query: &str| {
        let config = sql_config(&format!("{}?{query}", pg.url()));
        let analysis = sql_analysis(&config);
        let plan =
            Plan::build(analysis.rows().into_iter().map(Ok), &analysis.summary, &config.plan_settings())
                .expect("plan");
        let shop = Shop { _dir: tempfile::tempdir().expect("temp dir"), config, analysis };
        warm_with(&shop, &plan, Arc::new(MemoryBackend::new(u64::MAX)), None)
    };
    let ca = pg.ca_file().display().to_string();
    let r = warm(&format!("sslmode=verify-full&sslrootcert={ca}"));
    assert!(
        r.written > 0 && !r.failed.contains_key(&FailureReason::SourceError),
        "{:?} {:?}",
        r.failed,
        r.errors
    );
    // The system's roots do not know this CA: refused, and said so.
    let r = warm("sslmode=verify-full");
    assert_eq!(r.written, 0);
    assert!(r.errors.iter().any(|e| e.to_lowercase().contains("certificate")), "{:?}", r.errors);
    // The server takes no connection without TLS.
    let r = warm("sslmode=disable");
    assert_eq!(r.written, 0);
    assert!(r.errors.iter().any(|e| e.contains("pg_hba.conf") || e.contains("SSL")), "{:?}", r.errors);
}

#[test]
fn a_postgres_that_is_down_costs_its_rules_and_never_shows_the_password() {
    let pg = crate::servers::Postgres::start();
    pg.stop();
    let url = format!("postgres://app:hunter2-secret@127.0.0.1:{}/postgres", pg.port);
    let config = sql_config(&url);
    let analysis = sql_analysis(&config);
    let plan = Plan::build(analysis.rows().into_iter().map(Ok), &analysis.summary, &config.plan_settings())
        .expect("plan");
    let shop = Shop { _dir: tempfile::tempdir().expect("temp dir"), config, analysis };
    let started = Instant::now();
    let r = warm_with(&shop, &plan, Arc::new(MemoryBackend::new(u64::MAX)), None);
    assert_eq!(r.status, RunStatus::Completed);
    assert_eq!(r.written, 0);
    assert_eq!(r.failed.values().sum::<u64>(), plan.keys.len() as u64, "{:?}", r.failed);
    assert!(
        r.failed.contains_key(&FailureReason::SourceDown),
        "the circuit opens after repeated failures: {:?}",
        r.failed
    );
    let json = serde_json::to_string(&r).expect("serializes");
    assert!(!json.contains("hunter2"), "the password leaked into the report: {json}");
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn warming_redis_writes_values_with_ttls_and_leaves_existing_keys_alone() {
    let server = crate::servers::Redis::start();
    let mut c = server.client().get_connection().expect("connects");
    let s = shop("batch_size = 40", "sqlite://{db}");
    let plan = plan_of(&s);
    let existing = plan.keys.iter().find(|k| k.rule == 2).expect("a page").key.clone();
    let _: () =
        redis::cmd("SET").arg(&existing).arg("app value").arg("EX").arg(30).query(&mut c).expect("SET");
    let mut bad_rows = s.analysis.rows().clone();
    bad_rows.iter_mut().find(|r| r.rule == "page" && r.key != existing).expect("another page").key =
        "page:/with space".into();
    let plan = Plan::build(bad_rows.into_iter().map(Ok), &s.analysis.summary, &s.config.plan_settings())
        .expect("plan");

    let backend = Arc::new(RedisBackend::new(&server.url()).expect("valid URL"));
    let r = warm_with(&s, &plan, backend.clone(), None);
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.errors);
    assert_eq!((r.skipped_existing, r.invalid_keys), (1, 1));
    let size: u64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(size, r.written + 1, "only warmed keys and the app's key exist");
    let exists: bool = redis::cmd("EXISTS").arg("page:/with space").query(&mut c).expect("EXISTS");
    assert!(!exists, "an invalid key reached Redis");
    let kept: String = redis::cmd("GET").arg(&existing).query(&mut c).expect("GET");
    assert_eq!(kept, "app value");
    let ttl: i64 = redis::cmd("PTTL").arg(&existing).query(&mut c).expect("PTTL");
    assert!((1..=30_000).contains(&ttl), "the app's TTL was changed: {ttl}");
    let product = plan
        .keys
        .iter()
        .find(|k| k.rule == 0 && !k.key[8..].parse::<u32>().is_ok_and(|i| i % 10 == 0))
        .expect("a product");
    let value: String = redis::cmd("GET").arg(&product.key).query(&mut c).expect("GET");
    assert_eq!(value, format!("product body {}", &product.key[8..]));
    let ttl: i64 = redis::cmd("PTTL").arg(&product.key).query(&mut c).expect("PTTL");
    assert!((530_000..=660_000).contains(&ttl), "10m ± 10%: {ttl}");

    let again = warm_with(&s, &plan, backend, None);
    assert_eq!(again.written, 0, "a second run writes nothing new");
    let size_after: u64 = redis::cmd("DBSIZE").query(&mut c).expect("DBSIZE");
    assert_eq!(size_after, size);
}

#[test]
fn redis_killed_mid_warm_ends_the_run_with_failures_counted() {
    let mut server = crate::servers::Redis::start();
    // Each product query takes a few milliseconds, so the warm is still going when Redis dies.
    let s = shop("batch_size = 2\nconcurrency = 1", "sqlite://{db}");
    let mut config = s.config.clone();
    let slow = "SELECT id, body FROM products WHERE id IN ($1) AND (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000) SELECT count(*) FROM c) > 0";
    set_query(&mut config, slow);
    let shop = Shop { config, ..s };
    let plan = plan_of(&shop);
    let backend = Arc::new(RedisBackend::new(&server.url()).expect("valid URL"));
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        server.kill();
    });
    let started = Instant::now();
    let r = warm_with(&shop, &plan, backend, None);
    killer.join().expect("killed");
    assert_eq!(r.status, RunStatus::Completed);
    assert!(r.written > 0, "some keys were written before the kill: {r:?}");
    assert!(r.failed.get(&FailureReason::BackendError).is_some_and(|n| *n > 0), "{:?}", r.failed);
    assert!(
        r.failed.get(&FailureReason::BackendDown).is_some_and(|n| *n > 0),
        "the breaker must open: {:?}",
        r.failed
    );
    let accounted = r.written + r.missing_in_source + r.no_source + r.failed.values().sum::<u64>();
    assert_eq!(accounted, plan.keys.len() as u64);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}

#[test]
fn an_id_too_large_for_an_integer_finds_no_row_and_breaks_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    block(run_script(&url, SCHEMA)).expect("schema");
    let query = preheat::source::SqlQuery::parse(
        "SELECT id, body FROM products WHERE id IN ($1)",
        true,
        preheat::source::Encoding::Text,
    )
    .expect("valid");
    let keys: Vec<String> = ["1", "99999999999999999999", "2", "3"].iter().map(|s| s.to_string()).collect();
    let mut rows = block(async {
        let source = preheat::source::SqlSource::new("t", &url, 1, Duration::from_secs(5)).expect("valid");
        source.fetch(&query, &keys).await
    })
    .expect("fetched");
    rows.sort();
    let want: Vec<(String, Vec<u8>)> =
        (1..=3).map(|i| (i.to_string(), format!("product body {i}").into_bytes())).collect();
    assert_eq!(rows, want);
}

#[test]
fn a_tiny_memory_budget_stops_the_run_before_it_starts_anything() {
    let s = shop("max_memory = \"1MiB\"", "sqlite://{db}");
    let plan = plan_of(&s);
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let r = warm_with(&s, &plan, backend.clone(), None);
    assert_eq!(r.status, RunStatus::Memory, "{r:?}");
    assert_eq!(r.memory_budget, Some(1 << 20));
    assert!(r.peak_memory.is_some_and(|p| p > 1 << 20), "the process alone is larger than 1 MiB");
    assert_eq!(r.written, 0);
    assert_eq!(r.not_started + r.no_source, plan.keys.len() as u64);
    assert_eq!(block(backend.stats()).0, 0, "nothing was written");
}

#[test]
fn a_source_qps_cap_spaces_its_queries() {
    // Some 300 pages in batches of 30 make about 10 queries; at 10 a second they take at
    // least 0.9 s.
    let s = shop("batch_size = 30", "sqlite://{db}");
    let mut config = s.config.clone();
    config.sources.iter_mut().for_each(|src| src.qps = Some(10));
    config.loads[0] = None;
    let shop = Shop { config, ..s };
    let plan = plan_of(&shop);
    let pages = plan.keys.iter().filter(|k| k.rule == 2).count() as u64;
    let queries = pages.div_ceil(30);
    assert!(queries >= 5, "the plan must need several queries, has {pages} pages");
    let started = Instant::now();
    let r = warm_with(&shop, &plan, Arc::new(MemoryBackend::new(u64::MAX)), None);
    assert_eq!(r.written, pages);
    let floor = Duration::from_millis(100) * (queries as u32 - 1);
    assert!(started.elapsed() >= floor, "{queries} queries in {:?}", started.elapsed());
}

/// Runs a warm of `shop` into `url` on a thread of its own.
fn warm_in_thread(config: Config, analysis: Analysis, url: String) -> std::thread::JoinHandle<RunReport> {
    std::thread::spawn(move || {
        let s = Shop { _dir: tempfile::tempdir().expect("temp dir"), config, analysis };
        let plan = plan_of(&s);
        warm_with(&s, &plan, Arc::new(RedisBackend::new(&url).expect("valid URL")), None)
    })
}

#[test]
fn a_second_concurrent_run_skips_or_waits_for_the_lock() {
    let server = crate::servers::Redis::start();
    let mut c = server.client().get_connection().expect("connects");
    // The first run is slowed by a QPS cap so the others meet its lock.
    let s = shop("batch_size = 10", "sqlite://{db}");
    let mut slow = s.config.clone();
    slow.sources.iter_mut().for_each(|src| src.qps = Some(8));
    let first = warm_in_thread(slow, s.analysis.clone(), server.url());
    let started = Instant::now();
    loop {
        let held: bool = redis::cmd("EXISTS").arg("preheat:lock").query(&mut c).expect("EXISTS");
        if held {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "the first run never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let skipper = warm_in_thread(s.config.clone(), s.analysis.clone(), server.url()).join().expect("runs");
    assert_eq!(skipper.status, RunStatus::Locked);
    assert_eq!(skipper.written, 0);
    assert!(skipper.is_clean(), "a locked run is not a failure");

    let mut patient = s.config.clone();
    patient.warm.lock = preheat::warm::LockPolicy::Wait;
    let waiter = warm_in_thread(patient, s.analysis.clone(), server.url());
    let first = first.join().expect("runs");
    let waiter = waiter.join().expect("runs");
    assert_eq!(first.status, RunStatus::Completed, "{:?}", first.errors);
    assert!(first.written > 0);
    assert_eq!(waiter.status, RunStatus::Completed);
    assert_eq!(waiter.written, 0, "the waiting run found everything warm");
    assert_eq!(waiter.skipped_existing, first.written);
    let held: bool = redis::cmd("EXISTS").arg("preheat:lock").query(&mut c).expect("EXISTS");
    assert!(!held, "the lock is released when a run ends");
}

#[test]
fn a_postgres_restarted_mid_warm_costs_a_pause_not_the_rest_of_the_run() {
    let pg = crate::servers::Postgres::start();
    pg.psql(PG_PRODUCTS);
    pg.psql(
        "INSERT INTO pages SELECT 'section' || (i % 10) || '/page-' || i || '.html', '<i>' || i || '</i>' FROM generate_series(1, 300) i;",
    );
    let mut config = sql_config(&pg.url());
    // About 6 s of queries, so the outage (0.8 s to 3.3 s) lands in the middle; queries
    // retried across it, or held back by the breaker, succeed after the restart.
    config.warm.batch_size = 5;
    config.sources[0].qps = Some(25);
    let analysis = sql_analysis(&config);
    let plan = Plan::build(analysis.rows().into_iter().map(Ok), &analysis.summary, &config.plan_settings())
        .expect("plan");
    let shop = Shop { _dir: tempfile::tempdir().expect("temp dir"), config, analysis };
    let backend = Arc::new(MemoryBackend::new(u64::MAX));
    let restarter = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(800));
        pg.stop();
        std::thread::sleep(Duration::from_millis(2500));
        pg.resume();
        pg
    });
    let r = warm_with(&shop, &plan, backend.clone(), None);
    let _pg = restarter.join().expect("restarted");
    assert!(r.duration_ms > 3300, "the run must span the outage, took {} ms", r.duration_ms);
    assert_eq!(r.status, RunStatus::Completed, "{r:?}");
    let failed: u64 = r.failed.values().sum();
    assert!(
        !r.failed.contains_key(&FailureReason::SourceDown),
        "a short restart must not count as down: {:?}",
        r.failed
    );
    assert_eq!(r.written + r.missing_in_source + failed, plan.keys.len() as u64);
    // The coldest keys come last, after the restart: they were warmed.
    let coldest = plan.keys.iter().rev().find(|k| k.rule != 1).expect("a product or page");
    assert!(
        block(backend.get(&coldest.key)).is_some(),
        "{} was not warmed after the restart: {r:?}",
        coldest.key
    );
}

/// Fetches ids `1..=n` of table `table` through a `SqlSource`, sorted by key.
fn fetch_ids(url: &str, table: &str, n: u32) -> Vec<(String, Vec<u8>)> {
    let keys: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    fetch_sql(url, &format!("SELECT id, body FROM {table} WHERE id IN ($1)"), &keys, true)
}

/// Runs `sql` for `keys` through a `SqlSource`; the rows found, sorted by key.
pub(crate) fn fetch_sql(url: &str, sql: &str, keys: &[String], int_keys: bool) -> Vec<(String, Vec<u8>)> {
    use preheat::source::{Encoding, SqlQuery, SqlSource};
    let query = SqlQuery::parse(sql, int_keys, Encoding::Bytes).expect("valid");
    let mut got = block(async {
        let source = SqlSource::new("bytes", url, 1, Duration::from_secs(10)).expect("valid URL");
        source.fetch(&query, keys).await
    })
    .expect("fetched");
    got.sort();
    got
}

#[test]
fn sql_keys_match_whatever_their_column_type_and_a_null_key_matches_nothing() {
    let pg = crate::servers::Postgres::start();
    pg.psql(
        "CREATE TABLE i8 (id bigint PRIMARY KEY, body text NOT NULL);
         CREATE TABLE i4 (id integer PRIMARY KEY, body text NOT NULL);
         CREATE TABLE i2 (id smallint PRIMARY KEY, body text NOT NULL);
         CREATE TABLE s (slug varchar(20) PRIMARY KEY, body text NOT NULL);
         INSERT INTO i8 VALUES (-9000000000, 'a'), (7, 'b');
         INSERT INTO i4 VALUES (-2000000000, 'a'), (7, 'b');
         INSERT INTO i2 VALUES (-30000, 'a'), (7, 'b');
         INSERT INTO s VALUES ('naïve', 'a'), ('x-1', 'b');",
    );
    let row = |k: &str, v: &str| (k.to_string(), v.as_bytes().to_vec());
    let keys = |ks: &[&str]| ks.iter().map(|k| k.to_string()).collect::<Vec<_>>();
    for (table, low) in [("i8", "-9000000000"), ("i4", "-2000000000"), ("i2", "-30000")] {
        let sql = format!("SELECT id, body FROM {table} WHERE id IN ($1)");
        assert_eq!(
            fetch_sql(&pg.url(), &sql, &keys(&[low, "7", "8"]), true),
            vec![row(low, "a"), row("7", "b")],
            "{table}"
        );
        // A row whose key is NULL answers for no key.
        let sql =
            format!("SELECT CASE WHEN id = 7 THEN NULL ELSE id END, body FROM {table} WHERE id IN ($1)");
        assert_eq!(fetch_sql(&pg.url(), &sql, &keys(&[low, "7"]), true), vec![row(low, "a")], "{table}");
    }
    let sql = "SELECT slug, body FROM s WHERE slug = ANY($1)";
    assert_eq!(
        fetch_sql(&pg.url(), sql, &keys(&["naïve", "x-1", "y"]), false),
        vec![row("naïve", "a"), row("x-1", "b")]
    );

    // SQLite: integer and text keys; a NULL key matches nothing.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("keys.db").display());
    block(run_script(
        &format!("{url}?mode=rwc"),
        "CREATE TABLE v (id INTEGER PRIMARY KEY, slug TEXT, body TEXT NOT NULL);
         INSERT INTO v VALUES (-9000000000, 'naïve', 'a'), (7, NULL, 'b');",
    ))
    .expect("schema");
    let sql = "SELECT id, body FROM v WHERE id IN ($1)";
    assert_eq!(
        fetch_sql(&url, sql, &keys(&["-9000000000", "7", "8"]), true),
        vec![row("-9000000000", "a"), row("7", "b")]
    );
    let sql = "SELECT slug, body FROM v WHERE id IN ($1)";
    assert_eq!(fetch_sql(&url, sql, &keys(&["-9000000000", "7"]), true), vec![row("naïve", "a")]);
}

#[test]
fn sql_values_arrive_byte_for_byte_whatever_their_column_type() {
    // SQLite types each value: text, a blob that is not UTF-8, text that is not UTF-8.
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bytes.db").display());
    block(run_script(
        &format!("{url}?mode=rwc"),
        "CREATE TABLE v (id INTEGER PRIMARY KEY, body);
         INSERT INTO v VALUES (1, 'naïve €'), (2, X'FF00FE'), (3, CAST(X'C328' AS TEXT));",
    ))
    .expect("schema");
    let expected = vec![
        ("1".to_string(), "naïve €".as_bytes().to_vec()),
        ("2".to_string(), vec![0xff, 0x00, 0xfe]),
        ("3".to_string(), vec![0xc3, 0x28]),
    ];
    assert_eq!(fetch_ids(&url, "v", 3), expected);

    // PostgreSQL: a bytea and a text column; a NULL value is no value.
    let pg = crate::servers::Postgres::start();
    pg.psql(
        "CREATE TABLE v (id bigint PRIMARY KEY, body bytea NOT NULL);
         INSERT INTO v VALUES (1, convert_to('naïve €', 'UTF8')), (2, '\\xff00fe'::bytea);
         CREATE TABLE t (id bigint PRIMARY KEY, body text);
         INSERT INTO t VALUES (1, 'naïve €'), (2, NULL);",
    );
    assert_eq!(fetch_ids(&pg.url(), "v", 2), expected[..2].to_vec());
    assert_eq!(fetch_ids(&pg.url(), "t", 2), expected[..1].to_vec());
}

#[test]
fn postgres_and_sqlite_check_a_rules_query_before_a_warm() {
    use preheat::source::{Encoding, SqlQuery, SqlSource};
    let check = |url: &str, sql: &str| {
        let query = SqlQuery::parse(sql, true, Encoding::Bytes).expect("valid");
        block(async {
            let source = SqlSource::new("db", url, 1, Duration::from_secs(10)).expect("valid URL");
            source.check_query(&query).await.map_err(|e| e.message)
        })
    };
    let pg = crate::servers::Postgres::start();
    pg.psql("CREATE TABLE products (id bigint PRIMARY KEY, body text NOT NULL, added date NOT NULL);");
    assert_eq!(check(&pg.url(), "SELECT id, body FROM products WHERE id = ANY($1)"), Ok(()));
    let e = check(&pg.url(), "SELECT id, body FROM nothing WHERE id IN ($1)").expect_err("no table");
    assert!(e.contains("the rule's query is wrong") && e.contains("nothing"), "{e}");
    let e = check(&pg.url(), "SELECT id, added FROM products WHERE id IN ($1)").expect_err("a date");
    assert!(e.contains("column `added`") && e.contains("added::text"), "{e}");
    assert_eq!(check(&pg.url(), "SELECT id, added::text FROM products WHERE id IN ($1)"), Ok(()));

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("c.db").display());
    block(run_script(
        &format!("{url}?mode=rwc"),
        "CREATE TABLE products (id INTEGER PRIMARY KEY, body TEXT);",
    ))
    .expect("schema");
    assert_eq!(check(&url, "SELECT id, body FROM products WHERE id IN ($1)"), Ok(()));
    let e = check(&url, "SELECT id, nope FROM products WHERE id IN ($1)").expect_err("no column");
    assert!(e.contains("nope"), "{e}");
    let e = check(&url, "SELECT id FROM products WHERE id IN ($1)").expect_err("one column");
    assert!(e.contains("returns 1 column"), "{e}");
}
