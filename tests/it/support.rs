//! Helpers that make the tests read like sentences.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use preheat::analyze::{Analysis, AnalyzeOptions, analyze, input};
use preheat::config::Config;
use preheat::generate::{GenerateOptions, GroundTruth, generate};
use preheat::logformat::FormatSpec;
use preheat::plan::Plan;
use preheat::warm::{self, RunReport};

/// Rules used across tests: ids, slugs with a kept query parameter, a path capture.
pub const RULES: &str = r#"
[[rule]]
name = "product"
match = "GET /api/products/{id:int}"
key = "product:{id}"

[[rule]]
name = "category"
match = "GET /api/categories/{slug}/products"
key = "category:{slug}:page:{page}"
keep_query = ["page"]

[[rule]]
name = "page"
match = "GET|HEAD /pages/{path:path}"
key = "page:/{path}"
"#;

/// The test rules, with extra config text (e.g. an `[analyze]` table) before them.
pub fn config_with(prefix: &str) -> Config {
    Config::parse(&format!("{prefix}\n{RULES}"), "test.toml").expect("test config is valid")
}

/// How a generated file is stored.
#[derive(Clone, Copy, Debug)]
pub enum Compression {
    Plain,
    Gzip,
    Zstd,
}

/// Generates a log into `path` and returns its ground truth.
pub fn write_log(
    path: &Path,
    config: &Config,
    opts: &GenerateOptions,
    compression: Compression,
) -> GroundTruth {
    let mut raw = Vec::new();
    let truth = generate(&config.rules, opts, &mut raw).expect("generation succeeds");
    let bytes = match compression {
        Compression::Plain => raw,
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&raw).expect("in memory");
            enc.finish().expect("in memory")
        }
        Compression::Zstd => zstd::encode_all(raw.as_slice(), 3).expect("in memory"),
    };
    File::create(path).and_then(|mut f| f.write_all(&bytes)).expect("temp file is writable");
    truth
}

/// Generation options with a given size and seed.
pub fn gen_opts(lines: u64, keys: u32, seed: u64) -> GenerateOptions {
    GenerateOptions { lines, keys_per_rule: keys, seed, malformed_share: 0.01, ..GenerateOptions::default() }
}

/// Analyzes files with `threads` worker threads.
pub fn analyze_files(files: &[PathBuf], config: &Config, threads: usize) -> Analysis {
    analyze_with(files, config, config.analyze_options(), threads)
}

/// Analyzes files with explicit options.
pub fn analyze_with(files: &[PathBuf], config: &Config, opts: AnalyzeOptions, threads: usize) -> Analysis {
    let args: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let inputs = input::expand(&args).expect("inputs exist");
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("thread pool");
    pool.install(|| analyze(&inputs, &config.rules, &opts, &|_| {}))
}

/// (rule, key, count) of every row, hottest first by count then rule then key.
pub fn counts(a: &Analysis) -> Vec<(String, String, u64)> {
    let mut v: Vec<_> = a.rows().iter().map(|r| (r.rule.clone(), r.key.clone(), r.count)).collect();
    v.sort_by(|x, y| y.2.cmp(&x.2).then_with(|| x.0.cmp(&y.0)).then_with(|| x.1.cmp(&y.1)));
    v
}

/// The ground truth in the same shape.
pub fn truth_counts(t: &GroundTruth) -> Vec<(String, String, u64)> {
    t.ranked().into_iter().map(|(r, k, n)| (r.to_string(), k.to_string(), n)).collect()
}

/// Options for one format.
pub fn in_format(mut opts: GenerateOptions, format: FormatSpec) -> GenerateOptions {
    opts.format = format;
    opts
}

/// Writes a combined log in which each target is requested `times` times.
pub fn write_requests(path: &Path, requests: &[(String, u32)]) {
    let mut log = String::new();
    for (target, times) in requests {
        for i in 0..*times {
            log.push_str(&format!(
                "203.0.113.{} - - [01/Dec/2026:10:{:02}:00 +0000] \"GET {target} HTTP/1.1\" 200 512 \"-\" \"test\"\n",
                i % 200,
                i % 60
            ));
        }
    }
    fs::write(path, log).expect("writable");
}

/// Analyzes the requests under `config_text`, plans and warms `backend`.
pub fn warm_requests<B: preheat::backend::Backend + 'static>(
    config_text: &str,
    requests: &[(String, u32)],
    backend: Arc<B>,
) -> (Plan, RunReport) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = Config::parse(config_text, "sources.toml").expect("valid config");
    let log = dir.path().join("access.log");
    write_requests(&log, requests);
    let analysis = analyze_files(&[log], &config, 2);
    let plan = Plan::build(analysis.rows().into_iter().map(Ok), &analysis.summary, &config.plan_settings())
        .expect("plan");
    let report = warm_into(&config, &plan, backend);
    (plan, report)
}

/// Warms `backend` with `plan` under `config`, to the end (no stop signal, no progress).
pub fn warm_into<B: preheat::backend::Backend + 'static>(
    config: &Config,
    plan: &Plan,
    backend: Arc<B>,
) -> RunReport {
    block(async {
        let sources = warm::open_sources(&config.sources, &config.warm);
        warm::run(plan, &config.warm_job(), &sources, backend, std::future::pending::<()>(), &|_| {}).await
    })
}

/// Runs a future to completion on a runtime of its own.
pub fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

/// Runs the `preheat` binary in `dir`, with none of the caller's preheat settings.
pub fn preheat(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_preheat"));
    cmd.args(args).current_dir(dir);
    isolate(&mut cmd, &[]);
    cmd.output().expect("the binary runs")
}

/// Removes every `PREHEAT_*` variable and `RUST_LOG` the caller has from `cmd`'s environment,
/// then sets `env`: a test's run never depends on the developer's settings.
pub fn isolate(cmd: &mut Command, env: &[(&str, &str)]) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("PREHEAT_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
}

/// Bytes as text, lossily.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A path in this repository.
pub fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

/// A temp dir in which `preheat demo` ran: `data/` (config, log, `shop.db`), `profiles/`.
pub fn after_the_demo() -> (tempfile::TempDir, Output) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    fs::create_dir(&data).expect("writable");
    for f in ["preheat.toml", "access.log.gz", "shop.sql"] {
        fs::copy(repo(&format!("data/{f}")), data.join(f)).expect("copy");
    }
    let out = preheat(dir.path(), &["demo"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    (dir, out)
}

/// Whether the command's stderr contains `needle`.
pub fn stderr_has(out: &Output, needle: &str) -> bool {
    text(&out.stderr).contains(needle)
}

/// Fails the test, with the install hint, unless python3 can import `module` (`scripts/test.sh`
/// installs every module the tests use).
pub fn require_python_module(module: &str) {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|o| o.status.success());
    let package = if module == "yaml" { "pyyaml" } else { module };
    assert!(
        found,
        "python3 cannot import {module}: run `bash scripts/test.sh`, which installs what the tests need, \
         or `python3 -m pip install {package}`"
    );
}
