//! LRU miss-ratio curves of a 10M-request Zipf trace: exact against SHARDS-sampled, time
//! and error in the same run: `cargo bench --bench mrc`.

use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use preheat::report::mrc::{self, MissRatioCurve};

const REQUESTS: usize = 10_000_000;
const KEYS: usize = 1_000_000;

/// `n` requests over `keys` keys with Zipf(1) popularity, keys as spread-out hashes.
fn zipf_trace(n: usize, keys: usize) -> Vec<u64> {
    let mut cumulative = Vec::with_capacity(keys);
    let mut total = 0.0;
    for rank in 1..=keys {
        total += 1.0 / rank as f64;
        cumulative.push(total);
    }
    let mut state = 42u64;
    (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (state >> 11) as f64 / (1u64 << 53) as f64 * total;
            (cumulative.partition_point(|&c| c < u) as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        })
        .collect()
}

/// Mean absolute error over 100 evenly spaced cache sizes.
fn mae(a: &MissRatioCurve, b: &MissRatioCurve) -> f64 {
    (1..=100u64)
        .map(|i| a.distinct_keys * i / 100)
        .map(|s| (a.hit_ratio_at(s) - b.hit_ratio_at(s)).abs())
        .sum::<f64>()
        / 100.0
}

fn curves(c: &mut Criterion) {
    let trace = zipf_trace(REQUESTS, KEYS);
    let started = Instant::now();
    let exact = mrc::exact(&trace);
    let exact_time = started.elapsed();
    println!("\n{REQUESTS} requests over {KEYS} keys, Zipf(1)\n");
    println!("| curve | time | mean absolute error |\n| --- | --- | --- |");
    println!("| exact | {:.2} s | |", exact_time.as_secs_f64());
    for rate in [0.1, 0.04, 0.01] {
        let started = Instant::now();
        let sampled = mrc::sampled(&trace, rate);
        println!(
            "| SHARDS at {rate} | {:.2} s | {:.4} |",
            started.elapsed().as_secs_f64(),
            mae(&exact, &sampled)
        );
    }
    println!();

    let mut group = c.benchmark_group("mrc");
    group.throughput(Throughput::Elements(REQUESTS as u64));
    group.sample_size(10);
    group.bench_function("SHARDS at 0.04 (400k sampled requests)", |b| b.iter(|| mrc::sampled(&trace, 0.04)));
    group.finish();
}

criterion_group!(benches, curves);
criterion_main!(benches);
