//! `preheat demo`: the whole pipeline on the sample data, with no server. Analyzes
//! `data/access.log.gz` into the profile store, builds `data/shop.db` from `data/shop.sql`,
//! plans, warms an in-process cache from the database, and sizes the cache.
//!
//! The sample is built into the binary too, so the demo runs from any directory: without
//! `--data` and without a `data/` directory holding the sample here, it is unpacked into a
//! temporary directory for the run.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use preheat::analyze::{analyze, input};
use preheat::config::Config;
use preheat::plan::Plan;
use preheat::profile::{Store, open_profile};
use preheat::report::capacity::CapacityReport;

use super::{Exit, GlobalArgs, UsageError, show_bar};

/// The sample's files, built into the binary.
const SAMPLE: [(&str, &[u8]); 3] = [
    ("preheat.toml", include_bytes!("../../data/preheat.toml")),
    ("access.log.gz", include_bytes!("../../data/access.log.gz")),
    ("shop.sql", include_bytes!("../../data/shop.sql")),
];

/// The database URL the sample config names, relative to the repository's root.
const SAMPLE_DATABASE: &str = "sqlite://data/shop.db";

/// Flags of `preheat demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The directory holding `preheat.toml`, `access.log.gz` and `shop.sql` [default: `data`
    /// if it holds them, else the sample built into preheat].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Profile store directory.
    #[arg(long, default_value = "profiles", env = "PREHEAT_PROFILES")]
    profiles: PathBuf,
}

pub fn run(args: DemoArgs, global: &GlobalArgs) -> anyhow::Result<Exit> {
    let unpacked;
    let data = match &args.data {
        Some(dir) => {
            check_sample(dir)?;
            dir.clone()
        }
        None if check_sample(Path::new("data")).is_ok() => PathBuf::from("data"),
        None => {
            unpacked = Unpacked::new()?;
            println!("(no sample data in ./data: using the one built into preheat)\n");
            unpacked.dir.clone()
        }
    };
    let config = demo_config(&data)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    build_database(&runtime, &data)?;

    println!("== 1. analyze {}\n", data.join("access.log.gz").display());
    let inputs = input::expand(&[data.join("access.log.gz").display().to_string()])?;
    let analysis = analyze(&inputs, &config.rules, &config.analyze_options(), &|_| {});
    let store = Store::new(&args.profiles);
    let path = analysis.save(&store, preheat::timestamp::now_ms())?;
    print!("{}", super::analyze::render_summary(&analysis.summary, &analysis.profile, 5, Ok(&path)));

    println!("\n== 2. plan from the latest profile\n");
    let (meta, rows) = open_profile(&store.latest()?)?;
    let plan = Plan::build(rows, &meta.summary, &config.plan_settings())?;
    println!(
        "{} keys, ~{:.1} MiB, predicted to cover {:.1}% of requests",
        plan.keys.len(),
        plan.est_bytes as f64 / (1 << 20) as f64,
        100.0 * plan.predicted_coverage
    );

    println!("\n== 3. warm an in-memory cache from {}\n", data.join("shop.db").display());
    let report = runtime.block_on(super::warm::warm_into(
        &plan,
        &config,
        show_bar(global),
        &super::warm::ReadyFile::none(),
    ))?;
    print!("{}", super::warm::render(&report));

    println!("\n== 4. size the cache (preheat report)\n");
    let path = store.latest()?;
    let (meta, rows) = open_profile(&path)?;
    let capacity = CapacityReport::build(rows, &meta.summary)?;
    print!("{}", super::report::render(&capacity, &path));
    Ok(Exit::Ok)
}

/// Fails, saying what to do, unless `dir` holds the sample's files.
fn check_sample(dir: &Path) -> Result<(), UsageError> {
    match SAMPLE.iter().find(|(name, _)| !dir.join(name).is_file()) {
        None => Ok(()),
        Some((name, _)) => Err(UsageError::new(
            format!("--data `{}` has no `{name}`", dir.display()),
            Some(
                "point --data at a directory holding preheat.toml, access.log.gz and shop.sql, or leave it out to use the sample built into preheat",
            ),
        )),
    }
}

/// The sample config, its database read from `data` wherever that is (the file names it
/// relative to the repository's root).
fn demo_config(data: &Path) -> anyhow::Result<Config> {
    let path = data.join("preheat.toml");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading `{}`", path.display()))?;
    let database = format!("sqlite://{}", data.join("shop.db").display());
    Ok(Config::parse(&text.replace(SAMPLE_DATABASE, &database), &path.display().to_string())?)
}

/// The built-in sample, unpacked into a temporary directory that is removed after the run.
struct Unpacked {
    dir: PathBuf,
}

impl Unpacked {
    fn new() -> anyhow::Result<Unpacked> {
        let dir = std::env::temp_dir().join(format!("preheat-demo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).with_context(|| format!("creating `{}`", dir.display()))?;
        let unpacked = Unpacked { dir };
        for (name, bytes) in SAMPLE {
            let path = unpacked.dir.join(name);
            std::fs::write(&path, bytes).with_context(|| format!("writing `{}`", path.display()))?;
        }
        Ok(unpacked)
    }
}

impl Drop for Unpacked {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
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
