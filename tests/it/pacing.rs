//! A database that is not flooded: against a PostgreSQL whose queries slow down with every
//! other warm query running beside them, the adaptive warm keeps its batches' latency near the
//! unloaded one, while a fixed high concurrency multiplies it.

use std::sync::Arc;

use preheat::backend::MemoryBackend;
use preheat::config::Config;
use preheat::plan::Plan;
use preheat::warm::{RunReport, RunStatus};

use crate::servers::Postgres;
use crate::support::*;

/// A database with room for two queries at once: each takes 20 ms while at most two run, and
/// beyond that every query waits its share (three at once take 30 ms each, eight 80 ms).
const LOADED: &str = "
CREATE TABLE products (id bigint PRIMARY KEY, body text NOT NULL);
INSERT INTO products SELECT i, 'product ' || i FROM generate_series(1, 1200) i;
CREATE FUNCTION loaded_pause() RETURNS int LANGUAGE plpgsql VOLATILE AS $$
DECLARE busy int;
BEGIN
  SELECT count(*) INTO busy FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%loaded_pause()%';
  PERFORM pg_sleep(0.020 * greatest(1, busy / 2.0));
  RETURN busy;
END $$;";

fn warm_loaded(pg: &Postgres, adaptive: bool) -> RunReport {
    let text = format!(
        r#"
[warm]
batch_size = 15
concurrency = 8
adaptive_concurrency = {adaptive}
invalidations = "off"
[sources.db]
url = "{url}"
max_connections = 8
timeout = "10s"
[[rule]]
name = "product"
match = "GET /api/products/{{id:int}}"
key = "product:{{id}}"
source = "db"
sql = "WITH pause AS MATERIALIZED (SELECT loaded_pause()) SELECT id, body FROM products, pause WHERE id IN ($1)"
ttl = "10m"
"#,
        url = pg.url()
    );
    let config = Config::parse(&text, "loaded.toml").expect("valid config");
    let dir = tempfile::tempdir().expect("temp dir");
    let requests: Vec<(String, u32)> =
        (1..=1200).map(|i| (format!("/api/products/{i}"), 1 + 1200 / i)).collect();
    write_requests(&dir.path().join("access.log"), &requests);
    let analysis = analyze_files(&[dir.path().join("access.log")], &config, 2);
    let plan = Plan::build(analysis.rows().into_iter().map(Ok), &analysis.summary, &config.plan_settings())
        .expect("plan");
    warm_into(&config, &plan, Arc::new(MemoryBackend::new(u64::MAX)))
}

#[test]
fn the_adaptive_warm_keeps_a_loaded_database_near_its_unloaded_latency() {
    let pg = Postgres::start();
    pg.psql(LOADED);

    let adaptive = warm_loaded(&pg, true);
    assert_eq!((adaptive.status, adaptive.written), (RunStatus::Completed, 1200), "{:?}", adaptive.errors);
    let paced = &adaptive.pacing[0];
    assert_eq!((paced.source.as_str(), paced.batches), ("db", 80));
    // Unloaded, a batch takes its own 20 ms: the best the warm saw.
    assert!(paced.best_ms >= 20, "{paced:?}");
    assert!(
        paced.p95_ms <= 2 * paced.best_ms,
        "p95 {} ms against {} ms unloaded: {paced:?}",
        paced.p95_ms,
        paced.best_ms
    );
    assert!(!paced.timeline.is_empty(), "the report shows the limit over the run: {paced:?}");

    let fixed = warm_loaded(&pg, false);
    assert_eq!((fixed.status, fixed.written), (RunStatus::Completed, 1200), "{:?}", fixed.errors);
    let flooded = &fixed.pacing[0];
    assert_eq!(flooded.max_limit, 8);
    assert!(
        flooded.p95_ms > 2 * paced.best_ms,
        "a fixed concurrency of 8 loads the database: p95 {} ms against {} ms unloaded",
        flooded.p95_ms,
        paced.best_ms
    );
}
