//! The HTTP source's plain `http://` path (hyper connections of our own, `source/http1.rs`)
//! against reqwest's pooled client, as shipped and tuned for many small requests to one
//! host: the same requests to a minimal keep-alive HTTP/1.1 server this program runs on
//! loopback, 64 in flight, the three clients taking turns round after round.
//!
//!   cargo bench --bench http_client

use std::sync::Arc;
use std::time::{Duration, Instant};

use preheat::source::{HttpMode, HttpSource};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REQUESTS: usize = 100_000;
const IN_FLIGHT: usize = 64;
const ROUNDS: usize = 3;

/// Answers every request on a connection with a small `200 OK`, keeping it open.
async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else { return };
        let _ = socket.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            let mut filled = 0;
            loop {
                let Ok(n) = socket.read(&mut buf[filled..]).await else { return };
                if n == 0 {
                    return;
                }
                filled += n;
                let mut answers = Vec::new();
                let mut start = 0;
                while let Some(end) = buf[start..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                    answers.extend_from_slice(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok",
                    );
                    start += end + 4;
                }
                buf.copy_within(start..filled, 0);
                filled -= start;
                if !answers.is_empty() && socket.write_all(&answers).await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Sends `REQUESTS` requests through `one`, `IN_FLIGHT` at once; the requests per second.
async fn rate<F, Fut>(one: F) -> f64
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    for i in 0..REQUESTS {
        let permit = permits.clone().acquire_owned().await.expect("open");
        let work = one(i);
        tasks.spawn(async move {
            let ok = work.await;
            drop(permit);
            ok
        });
    }
    let mut ok = 0;
    while let Some(done) = tasks.join_next().await {
        ok += usize::from(done.expect("no panic"));
    }
    assert_eq!(ok, REQUESTS, "every request answered");
    REQUESTS as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("a port");
    let port = listener.local_addr().expect("bound").port();
    rt.spawn(serve(listener));
    let base = format!("http://127.0.0.1:{port}");
    let timeout = Duration::from_secs(10);
    let ours =
        Arc::new(HttpSource::new("bench", &base, HttpMode::Replay, &[], timeout, 1 << 20).expect("valid"));
    let shipped = reqwest::Client::builder().timeout(timeout).build().expect("client");
    let tuned = reqwest::Client::builder()
        .timeout(timeout)
        .http1_only()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(IN_FLIGHT)
        .build()
        .expect("client");
    let get = |client: reqwest::Client, i: usize| {
        let url = format!("{base}/api/products/{i}");
        async move { client.get(url).send().await.is_ok_and(|r| r.status().is_success()) }
    };
    let (mut best_ours, mut best_shipped, mut best_tuned) = (0.0f64, 0.0f64, 0.0f64);
    for _ in 0..ROUNDS {
        best_ours = best_ours.max(rt.block_on(rate(|i| {
            let ours = ours.clone();
            async move { ours.fetch(&reqwest::Method::GET, &format!("/api/products/{i}")).await.is_ok() }
        })));
        best_shipped = best_shipped.max(rt.block_on(rate(|i| get(shipped.clone(), i))));
        best_tuned = best_tuned.max(rt.block_on(rate(|i| get(tuned.clone(), i))));
    }
    println!(
        "HTTP clients, {REQUESTS} GETs to a loopback server, {IN_FLIGHT} in flight, best of {ROUNDS} alternated rounds"
    );
    println!();
    println!("| client | requests/s |");
    println!("| --- | --- |");
    println!("| preheat's plain `http://` path (hyper connections of its own) | {best_ours:.0} |");
    println!("| reqwest's pooled client, as shipped | {best_shipped:.0} |");
    println!("| reqwest, HTTP/1 only, `TCP_NODELAY`, {IN_FLIGHT} idle connections kept | {best_tuned:.0} |");
    println!();
    println!(
        "The hyper path reaches **{:.2}x** reqwest's rate as shipped and **{:.2}x** tuned.",
        best_ours / best_shipped,
        best_ours / best_tuned
    );
}
