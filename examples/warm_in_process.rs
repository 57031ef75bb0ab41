//! A service that warms its own in-process cache at start-up, before it takes traffic.
//!
//! The nightly job (`preheat analyze`) leaves profiles in a store; at start-up the service
//! plans from the latest one and loads the hottest values from its database into a
//! [`MemoryBackend`], then serves reads from it. Here the "nightly job" runs first on the
//! sample log in `data/`, and the database is a SQLite file built from `data/shop.sql`.
//!
//! Run it with `cargo run --release --example warm_in_process`.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use preheat::analyze::{AnalyzeOptions, analyze, input};
use preheat::backend::MemoryBackend;
use preheat::config::Config;
use preheat::plan::Plan;
use preheat::profile::{Store, open_profile, store};
use preheat::source::run_script;
use preheat::warm;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data");
    let work = tempfile::tempdir()?;

    // The service's database.
    let db = work.path().join("shop.db");
    run_script(
        &format!("sqlite://{}?mode=rwc", db.display()),
        &std::fs::read_to_string(data.join("shop.sql"))?,
    )
    .await?;
    let text = std::fs::read_to_string(data.join("preheat.toml"))?
        .replace("sqlite://data/shop.db", &format!("sqlite://{}", db.display()));
    let config = Config::parse(&text, "preheat.toml")?;

    // The nightly job: analyze the logs into the profile store.
    let profiles = Store::new(work.path().join("profiles"));
    let inputs = input::expand(&[data.join("access.log.gz").display().to_string()])?;
    let analysis = analyze(&inputs, &config.rules, &AnalyzeOptions::from_config(&config), &|_| {});
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    profiles.write(&analysis.rows, &store::meta_now(analysis.summary, now), now)?;

    // Start-up: plan from the latest profile and warm the cache the service will read.
    let (meta, rows) = open_profile(&profiles.latest()?)?;
    let plan = Plan::build(rows, &meta.summary, &config)?;
    let cache = Arc::new(MemoryBackend::new(256 << 20));
    let sources = warm::open_sources(&config);
    let report = warm::run(&plan, &config, &sources, cache.clone(), std::future::pending(), &|_| {}).await;
    println!(
        "warmed {} of {} planned keys in {} ms ({:?}); {} not in the database",
        report.written, report.planned, report.duration_ms, report.status, report.missing_in_source
    );

    // Serving: the hottest product is a cache hit from the first request.
    let hottest = plan.keys.iter().find(|k| k.rule == 0).ok_or("no product in the plan")?;
    let value = cache.get(&hottest.key).await.ok_or("the hottest product was not warmed")?;
    println!("GET {} -> {}", hottest.key, String::from_utf8_lossy(&value));
    Ok(())
}
