//! The warm's Redis writer alone: `write_batch` of 1 KiB values in batches of 500, four in
//! flight (the warm's defaults), into a redis-server of its own. `benches/warm.sh` sets it
//! beside `redis-benchmark` on the same machine: `cargo bench --bench redis_writes`.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use preheat::backend::{Backend, Entry, RedisBackend, WriteMode};

const KEYS: usize = 200_000;
const BATCH: usize = 500;
const IN_FLIGHT: usize = 4;

/// A throwaway redis-server, killed when dropped.
struct Server(Child, u16);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> Server {
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server on the PATH");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server(child, port)
}

fn batches() -> Vec<Vec<Entry>> {
    let value = vec![b'v'; 1024];
    (0..KEYS)
        .map(|i| Entry::value(format!("product:{i}"), value.clone(), Some(Duration::from_secs(3600))))
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[Entry]>::to_vec)
        .collect()
}

fn redis_writes(c: &mut Criterion) {
    let server = start_redis();
    let url = format!("redis://127.0.0.1:{}/0", server.1);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backend = Arc::new(RedisBackend::new(&url).expect("valid URL"));
    let flush = redis::Client::open(url.as_str()).expect("valid URL");
    let mut flush = flush.get_connection().expect("connects");
    let batches = Arc::new(batches());

    let mut group = c.benchmark_group("redis");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.sample_size(10);
    group.bench_function("write_batch if absent, 200k x 1 KiB", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Our own server: empty it so every write creates its key.
                let _: () = redis::cmd("FLUSHALL").query(&mut flush).expect("FLUSHALL");
                let started = Instant::now();
                rt.block_on(async {
                    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
                    let mut tasks = tokio::task::JoinSet::new();
                    for i in 0..batches.len() {
                        let permit = permits.clone().acquire_owned().await.expect("open");
                        let (backend, batches) = (backend.clone(), batches.clone());
                        tasks.spawn(async move {
                            let written = backend.write_batch(&batches[i], WriteMode::IfAbsent).await;
                            drop(permit);
                            written.into_iter().filter(Result::is_ok).count()
                        });
                    }
                    let mut n = 0;
                    while let Some(done) = tasks.join_next().await {
                        n += done.expect("no panic");
                    }
                    assert_eq!(n, KEYS);
                });
                total += started.elapsed();
            }
            total
        });
    });
    group.finish();
}

criterion_group!(benches, redis_writes);
criterion_main!(benches);
