//! A service that warms its own in-process cache at start-up, and reports ready once the warm
//! set covers enough of its traffic (`warm.ready_at`), or the warm has ended.
//!
//! The nightly job (`preheat analyze`) leaves profiles in a store. At start-up the service
//! opens its port at once, but its readiness endpoint answers 503 while a background task
//! plans from the latest profile and loads the hottest values from the database into a
//! [`MemoryBackend`]; a load balancer or Kubernetes readiness probe sends no traffic until
//! `/ready` answers 200. The flag turns on when the warmed keys reach `warm.ready_at` (here 80%
//! of the plan's predicted coverage: the hottest keys come first, so that is early), when the
//! warm returns, or when its deadline plus grace has passed, whichever is first: a warm never
//! keeps the service out of rotation for longer than that. Here the "nightly job" runs first on the sample log in `data/`, and the
//! database is a SQLite file built from `data/shop.sql`.
//!
//! Run it with `cargo run --release --example warm_in_process`.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use preheat::analyze::{analyze, input};
use preheat::backend::MemoryBackend;
use preheat::config::Config;
use preheat::plan::Plan;
use preheat::profile::{Store, open_profile};
use preheat::source::run_script;
use preheat::warm;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the service shares between its request handlers and its warm.
#[derive(Clone)]
struct Service {
    cache: Arc<MemoryBackend>,
    ready: Arc<AtomicBool>,
}

impl Service {
    /// `GET /ready`: 200 once warm, 503 before. `GET /cache/KEY`: the cached value or 404.
    async fn answer(&self, path: &str) -> (u16, Vec<u8>) {
        if path == "/ready" {
            return if self.ready.load(Ordering::Acquire) {
                (200, b"ready".to_vec())
            } else {
                (503, b"warming".to_vec())
            };
        }
        match path.strip_prefix("/cache/") {
            Some(key) => match self.cache.get(key).await {
                Some(value) => (200, value.to_vec()),
                None => (404, b"miss".to_vec()),
            },
            None => (404, b"no such path".to_vec()),
        }
    }
}

/// A minimal HTTP/1.1 server, one request per connection: enough for the example.
async fn serve(listener: TcpListener, service: Service) {
    while let Ok((mut conn, _)) = listener.accept().await {
        let service = service.clone();
        tokio::spawn(async move {
            let mut line = String::new();
            if BufReader::new(&mut conn).read_line(&mut line).await.is_err() {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = service.answer(&path).await;
            let head =
                format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(&body).await;
        });
    }
}

/// A client call, as a probe or a user would make it: the status and body.
async fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes()).await?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).await?;
    let status = reply.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = reply.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_string();
    Ok((status, body))
}

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
        .replace("sqlite://data/shop.db", &format!("sqlite://{}", db.display()))
        .replacen("[warm]\n", "[warm]\nready_at = \"80%\"\n", 1);
    let config = Config::parse(&text, "preheat.toml")?;

    // The nightly job: analyze the logs into the profile store.
    let profiles = Store::new(work.path().join("profiles"));
    let inputs = input::expand(&[data.join("access.log.gz").display().to_string()])?;
    let analysis = analyze(&inputs, &config.rules, &config.analyze_options(), &|_| {});
    analysis.save(&profiles, preheat::timestamp::now_ms())?;

    // Start-up: the port opens at once, not ready yet.
    let service =
        Service { cache: Arc::new(MemoryBackend::new(256 << 20)), ready: Arc::new(AtomicBool::new(false)) };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(serve(listener, service.clone()));
    println!("listening on 127.0.0.1:{port}; /ready says {:?}", get(port, "/ready").await?);

    // The warm, in the background; the flag turns on when it ends or its deadline passes.
    let (meta, rows) = open_profile(&profiles.latest()?)?;
    let plan = Plan::build(rows, &meta.summary, &config.plan_settings())?;
    let hottest =
        plan.keys.iter().find(|k| k.rule == 0).map(|k| k.key.clone()).ok_or("no product in the plan")?;
    let ready = service.ready.clone();
    let guard = config.warm.deadline + warm::GRACE;
    tokio::spawn(async move {
        tokio::time::sleep(guard).await;
        ready.store(true, Ordering::Release);
    });
    let (cache, ready) = (service.cache.clone(), service.ready.clone());
    let warming = tokio::spawn(async move {
        let sources = warm::open_sources(&config.sources, &config.warm);
        let ready_early = ready.clone();
        let on_progress = move |p: &warm::Progress| {
            if p.ready {
                ready_early.store(true, Ordering::Release);
            }
        };
        let report =
            warm::run(&plan, &config.warm_job(), &sources, cache, std::future::pending(), &on_progress).await;
        ready.store(true, Ordering::Release);
        report
    });

    // A readiness probe, every 10 ms.
    while get(port, "/ready").await?.0 != 200 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let report = warming.await?;
    let at = report.ready_after_ms.map_or("at its end".to_string(), |ms| format!("after {ms} ms"));
    println!(
        "ready: warm.ready_at reached {at}; the warm wrote {} of {} planned keys in {} ms ({:?}); {} not in the database",
        report.written, report.planned, report.duration_ms, report.status, report.missing_in_source
    );

    // Traffic: the hottest product is a cache hit from the first request.
    let (status, body) = get(port, &format!("/cache/{hottest}")).await?;
    println!("GET /cache/{hottest} -> {status} {body}");
    if status != 200 {
        return Err("the hottest product was not warmed".into());
    }
    Ok(())
}
