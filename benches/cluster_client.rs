//! preheat's Redis Cluster writer (`backend/cluster.rs`) against the redis crate's own
//! cluster client (`cluster_async`), on a three-master cluster this program starts: the same
//! keys, `SET key value NX PX ttl` with 1 KiB values, batches of 500 with four in flight (the
//! warm's defaults), the two clients taking turns round after round on an emptied cluster.
//! The crate's client routes each command to its slot's master and pipelines what is in
//! flight on its multiplexed connections; ours sends one pipeline per master and batch.
//!
//!   cargo bench --bench cluster_client

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use preheat::backend::{Backend, Entry, RedisClusterBackend, WriteMode};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;

const KEYS: usize = 200_000;
const BATCH: usize = 500;
const IN_FLIGHT: usize = 4;
const ROUNDS: usize = 3;
const TTL_MS: u64 = 3_600_000;

/// A throwaway cluster node, killed when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free port whose cluster bus port (+10000) is free too.
fn free_port() -> u16 {
    loop {
        let port =
            std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("a port").port();
        if port < 55_000 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out =
        Command::new("redis-cli").arg("-p").arg(port.to_string()).args(args).output().expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Three masters sharing the slots, and their ports.
fn start_cluster(dir: &std::path::Path) -> (Vec<Node>, Vec<u16>) {
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let nodes = ports
        .iter()
        .map(|port| {
            let p = port.to_string();
            let child = Command::new("redis-server")
                .args(["--port", &p, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-config-file", &format!("nodes-{p}.conf")])
                .arg("--dir")
                .arg(dir)
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server on the PATH");
            let started = Instant::now();
            while std::net::TcpStream::connect(("127.0.0.1", *port)).is_err() {
                assert!(started.elapsed() < Duration::from_secs(10), "redis-server did not start");
                std::thread::sleep(Duration::from_millis(20));
            }
            Node(child)
        })
        .collect();
    let addresses: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(created.success(), "redis-cli --cluster create failed");
    for port in &ports {
        while !redis_cli(*port, &["cluster", "info"]).contains("cluster_state:ok") {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    (nodes, ports)
}

fn batches() -> Arc<Vec<Vec<Entry>>> {
    let value = vec![b'v'; 1024];
    let entries: Vec<Entry> = (0..KEYS)
        .map(|i| Entry::value(format!("product:{i}"), value.clone(), Some(Duration::from_millis(TTL_MS))))
        .collect();
    Arc::new(entries.chunks(BATCH).map(<[Entry]>::to_vec).collect())
}

/// Runs `write` for every batch, `IN_FLIGHT` at once; the keys it reports written.
async fn in_flight<F, Fut>(batches: &Arc<Vec<Vec<Entry>>>, write: F) -> usize
where
    F: Fn(Arc<Vec<Vec<Entry>>>, usize) -> Fut,
    Fut: std::future::Future<Output = usize> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..batches.len() {
        let permit = permits.clone().acquire_owned().await.expect("open");
        let work = write(batches.clone(), i);
        tasks.spawn(async move {
            let n = work.await;
            drop(permit);
            n
        });
    }
    let mut n = 0;
    while let Some(done) = tasks.join_next().await {
        n += done.expect("no panic");
    }
    n
}

async fn ours(backend: &Arc<RedisClusterBackend>, batches: &Arc<Vec<Vec<Entry>>>) -> usize {
    in_flight(batches, |batches, i| {
        let backend = backend.clone();
        async move {
            let written = backend.write_batch(&batches[i], WriteMode::IfAbsent).await;
            written.into_iter().filter(Result::is_ok).count()
        }
    })
    .await
}

async fn theirs(connection: &ClusterConnection, batches: &Arc<Vec<Vec<Entry>>>) -> usize {
    in_flight(batches, |batches, i| {
        let connection = connection.clone();
        async move {
            let sets = batches[i].iter().map(|e| {
                let mut c = connection.clone();
                let key = e.key.clone();
                let value = e.value.clone();
                async move {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(value)
                        .arg("NX")
                        .arg("PX")
                        .arg(TTL_MS)
                        .query_async::<Option<String>>(&mut c)
                        .await
                }
            });
            futures_util::future::join_all(sets).await.into_iter().filter(Result::is_ok).count()
        }
    })
    .await
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument is a filter this program ignores.
    let dir = tempfile::tempdir().expect("temp dir");
    let (_nodes, ports) = start_cluster(dir.path());
    let seed = format!("redis+cluster://127.0.0.1:{}", ports[0]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let backend = Arc::new(RedisClusterBackend::new(&seed).expect("valid URL"));
    let urls: Vec<String> = ports.iter().map(|p| format!("redis://127.0.0.1:{p}/")).collect();
    let client = ClusterClient::new(urls).expect("valid URLs");
    let connection = rt.block_on(client.get_async_connection()).expect("connects");
    let batches = batches();
    let flush = || {
        for port in &ports {
            redis_cli(*port, &["flushall"]);
        }
    };
    let (mut best_ours, mut best_theirs) = (0.0f64, 0.0f64);
    for _ in 0..ROUNDS {
        flush();
        let started = Instant::now();
        assert_eq!(rt.block_on(ours(&backend, &batches)), KEYS);
        best_ours = best_ours.max(KEYS as f64 / started.elapsed().as_secs_f64());
        flush();
        let started = Instant::now();
        assert_eq!(rt.block_on(theirs(&connection, &batches)), KEYS);
        best_theirs = best_theirs.max(KEYS as f64 / started.elapsed().as_secs_f64());
    }
    println!("Redis Cluster writers, 3 masters, {KEYS} keys of 1 KiB, best of {ROUNDS} alternated rounds");
    println!();
    println!("| client | keys/s |");
    println!("| --- | --- |");
    println!("| preheat's `RedisClusterBackend` (one pipeline per master and batch) | {best_ours:.0} |");
    println!("| the redis crate's `cluster_async` (commands routed and multiplexed) | {best_theirs:.0} |");
    println!();
    println!("preheat's writer reaches **{:.2}x** the redis crate's rate.", best_ours / best_theirs);
}
