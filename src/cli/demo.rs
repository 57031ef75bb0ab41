//! `preheat demo`: the whole pipeline on the sample data, with no server. Analyzes
//! `data/access.log.gz` into the profile store, builds `data/shop.db` from `data/shop.sql`,
//! plans, warms an in-process cache from the database, and sizes the cache.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;
use preheat::analyze::{AnalyzeOptions, analyze, input};
use preheat::capacity::CapacityReport;
use preheat::config::Config;
use preheat::plan::Plan;
use preheat::profile::{Store, open_profile, store};

use super::{Exit, GlobalArgs, show_bar};

/// Flags of `preheat demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The directory holding `preheat.toml`, `access.log.gz` and `shop.sql`.
    #[arg(long, default_value = "data")]
    data: PathBuf,
    /// Profile store directory.
    #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
    profiles: PathBuf,
}

pub fn run(args: DemoArgs, global: &GlobalArgs) -> anyhow::Result<Exit> {
    let config = Config::load(&args.data.join("preheat.toml"))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    build_database(&runtime, &args.data)?;

    println!("== 1. analyze {}\n", args.data.join("access.log.gz").display());
    let inputs = input::expand(&[args.data.join("access.log.gz").display().to_string()])?;
    let analysis = analyze(&inputs, &config.rules, &AnalyzeOptions::from_config(&config), &|_| {});
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    let store = Store::new(&args.profiles);
    let path = store.write(
        &analysis.profile,
        &store::meta_now(analysis.summary.clone(), Some(analysis.sketches.clone()), now),
        now,
    )?;
    print!("{}", super::analyze::render_summary(&analysis.summary, &analysis.profile, 5, Ok(&path)));

    println!("\n== 2. plan from the latest profile\n");
    let (meta, rows) = open_profile(&store.latest()?)?;
    let plan = Plan::build(rows, &meta.summary, &config)?;
    println!(
        "{} keys, ~{:.1} MiB, predicted to cover {:.1}% of requests",
        plan.keys.len(),
        plan.est_bytes as f64 / (1 << 20) as f64,
        100.0 * plan.predicted_coverage
    );

    println!("\n== 3. warm an in-memory cache from {}\n", args.data.join("shop.db").display());
    let report = runtime.block_on(super::warm::warm_into(&plan, &config, show_bar(global)))?;
    print!("{}", super::warm::render(&report));

    println!("\n== 4. size the cache (preheat report)\n");
    let path = store.latest()?;
    let (meta, rows) = open_profile(&path)?;
    let capacity = CapacityReport::build(rows, &meta.summary)?;
    print!("{}", super::report::render(&capacity, &path));
    Ok(Exit::Ok)
}

/// Builds `shop.db` from `shop.sql` (the config's source points at it).
fn build_database(runtime: &tokio::runtime::Runtime, data: &Path) -> anyhow::Result<()> {
    let script_path = data.join("shop.sql");
    let script = std::fs::read_to_string(&script_path)
        .with_context(|| format!("reading `{}`", script_path.display()))?;
    let url = format!("sqlite://{}?mode=rwc", data.join("shop.db").display());
    runtime
        .block_on(preheat::source::run_script(&url, &script))
        .map_err(|e| anyhow::anyhow!("building the demo database: {e}"))
}
