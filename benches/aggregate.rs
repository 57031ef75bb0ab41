//! Tallying and merging, in MB/s of log: `cargo bench --bench aggregate`.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use preheat::analyze::aggregate::{Aggregate, TallyContext, tally_chunk};
use preheat::analyze::decay::HalfLife;
use preheat::analyze::{analyze, input};
use preheat::config::Config;
use preheat::generate::{GenerateOptions, generate};
use preheat::logformat::{FormatSpec, JsonFields, LogFormat};

fn demo_config() -> Config {
    Config::load(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data/preheat.toml")))
        .expect("demo config")
}

fn log(lines: u64, keys: u32) -> Vec<u8> {
    let opts = GenerateOptions { lines, keys_per_rule: keys, ..Default::default() };
    let mut out = Vec::new();
    generate(&demo_config().rules, &opts, &mut out).expect("in memory");
    out
}

fn aggregate(c: &mut Criterion) {
    let config = demo_config();
    let format = LogFormat::from_spec(&FormatSpec::Combined, &JsonFields::default()).expect("built in");
    let ctx = TallyContext {
        half_life: Some(HalfLife::new(6.0 * 3_600_000.0)),
        ..TallyContext::new(&config.rules)
    };
    // About one 4 MiB chunk of a log with 100k keys per rule.
    let chunk = log(23_000, 100_000);

    let mut group = c.benchmark_group("aggregate");
    group.throughput(Throughput::Bytes(chunk.len() as u64));
    group.bench_function("tally_chunk", |b| b.iter(|| tally_chunk(black_box(&chunk), &format, &ctx)));
    group.bench_function("tally_and_merge", |b| {
        let param_names = ctx.param_names.clone();
        b.iter(|| {
            let mut agg = Aggregate::new(param_names.clone(), 500_000, ctx.half_life.clone());
            let tally = tally_chunk(&chunk, &format, &ctx);
            agg.merge(&tally);
            agg.merge_sketches(&tally);
            agg.lines
        })
    });
    group.finish();

    // The whole analyzer on a file: reading, parallel tallies, ordered merge, ranking.
    let data = log(200_000, 100_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("access.log");
    std::fs::File::create(&path).and_then(|mut f| f.write_all(&data)).expect("writable");
    let inputs = input::expand(&[path.display().to_string()]).expect("exists");
    let opts = config.analyze_options();
    let mut group = c.benchmark_group("analyze");
    group.throughput(Throughput::Bytes(data.len() as u64));
    group.sample_size(10);
    group.bench_function("file_200k_lines", |b| {
        b.iter(|| analyze(&inputs, &config.rules, &opts, &|_| {}).profile.len())
    });
    group.finish();
}

criterion_group!(benches, aggregate);
criterion_main!(benches);
