//! A bounded soak test, in a process of its own so that its memory readings are its own:
//! warm after warm into a Redis that is restarted (empty) before each, through one backend and
//! one set of sources as a long-running service would keep them. Every run must warm every key,
//! and the process's resident memory must stay flat across runs.

#[allow(dead_code)]
#[path = "it/servers.rs"]
mod servers;

use std::sync::Arc;

use preheat::analyze::{analyze, input};
use preheat::backend::RedisBackend;
use preheat::config::Config;
use preheat::plan::Plan;
use preheat::source::run_script;
use preheat::warm::{self, RunStatus};

const KEYS: u32 = 20_000;
const RUNS: usize = 12;

#[test]
fn repeated_warms_across_redis_restarts_keep_memory_flat() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("values.db");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(run_script(
        &format!("sqlite://{}?mode=rwc", db.display()),
        &format!(
            "CREATE TABLE products (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {KEYS})
             INSERT INTO products SELECT i, hex(randomblob(512)) FROM n;"
        ),
    ))
    .expect("database");
    let mut redis = servers::Redis::start();
    let config = Config::parse(
        &format!(
            "[analyze]\nmax_keys_per_rule = 100000\n[warm]\nmax_keys = {KEYS}\n[sources.db]\nurl = \"sqlite://{}\"\n\
             [[rule]]\nname = \"product\"\nmatch = \"GET /api/products/{{id:int}}\"\nkey = \"product:{{id}}\"\n\
             source = \"db\"\nsql = \"SELECT id, body FROM products WHERE id IN ($1)\"\nencoding = \"text\"\nttl = \"1h\"\n",
            db.display()
        ),
        "soak.toml",
    )
    .expect("valid config");
    let log: String = (1..=KEYS)
        .map(|i| format!("10.0.0.1 - - [01/Dec/2026:10:00:00 +0000] \"GET /api/products/{i} HTTP/1.1\" 200 1024 \"-\" \"soak\"\n"))
        .collect();
    let log_path = dir.path().join("access.log");
    std::fs::write(&log_path, log).expect("writable");
    let inputs = input::expand(&[log_path.display().to_string()]).expect("input");
    let analysis = analyze(&inputs, &config.rules, &config.analyze_options(), &|_| {});
    let plan = Plan::build(analysis.rows().into_iter().map(Ok), &analysis.summary, &config.plan_settings())
        .expect("plan");
    assert_eq!(plan.keys.len(), KEYS as usize);

    let backend = Arc::new(RedisBackend::new(&redis.url()).expect("valid URL"));
    let sources = rt.block_on(async { warm::open_sources(&config.sources, &config.warm) });
    let mut resident = Vec::new();
    let started = std::time::Instant::now();
    for run in 0..RUNS {
        redis.restart();
        let report = rt.block_on(warm::run(
            &plan,
            &config.warm_job(),
            &sources,
            backend.clone(),
            std::future::pending(),
            &|_| {},
        ));
        assert_eq!(report.status, RunStatus::Completed, "run {run}: {:?}", report.errors);
        assert_eq!(report.written, u64::from(KEYS), "run {run}: {:?} {:?}", report.failed, report.errors);
        resident.push(preheat::memory::resident().expect("Linux reports resident memory") >> 20);
    }
    let mib = |v: &[u64]| v.iter().copied().max().unwrap_or(0);
    // The first runs grow the allocator's pools; after that nothing may accumulate.
    let (early, late) = (mib(&resident[2..4]), mib(&resident[RUNS - 4..]));
    assert!(late <= early + 16, "resident MiB by run: {resident:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(240), "{:?}", started.elapsed());
    eprintln!("resident MiB by run: {resident:?} in {:?}", started.elapsed());
}
