//! What a person reads first is the truth: the warm's first line says completed, degraded or
//! failed with the cause, and a connection that fails says why within seconds.

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::servers::{Postgres, Redis, free_port};
use crate::support::*;

/// The demo's config with extra `[sources.*]` tables, and the rule `rule` moved to `source`.
fn demo_config_with(dir: &Path, sources: &str, rule: &str, source: &str) -> String {
    let config = fs::read_to_string(dir.join("data/preheat.toml")).expect("the demo's config");
    let marker = format!("name = \"{rule}\"");
    let at = config.find(&marker).expect("the rule exists");
    let (head, tail) = config.split_at(at);
    let tail = tail.replacen("source = \"shop\"", &format!("source = \"{source}\""), 1);
    let text = format!("{head}{tail}\n{sources}\n");
    fs::write(dir.join("moved.toml"), &text).expect("writable");
    "moved.toml".to_string()
}

fn first_line(out: &Output) -> String {
    text(&out.stdout).lines().next().unwrap_or_default().to_string()
}

#[test]
fn the_first_line_of_a_warm_says_completed_degraded_or_failed() {
    let (dir, _) = after_the_demo();
    let out = preheat(dir.path(), &["warm", "--config", "data/preheat.toml"]);
    assert!(first_line(&out).starts_with("warm      completed in"), "{}", text(&out.stdout));

    // One rule's database is down: the others are written, and the line says which cause cost
    // the most keys.
    let port = free_port();
    let sources = format!("[sources.orders]\nurl = \"postgres://app:hunter2@127.0.0.1:{port}/shop\"\n");
    let config = demo_config_with(dir.path(), &sources, "category", "orders");
    let out = preheat(dir.path(), &["warm", "--config", &config, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(v["outcome"], "degraded", "{v}");
    let cause = v["cause"].as_str().expect("a cause");
    assert!(cause.contains("of 1634 keys") && cause.contains("connection refused"), "{cause}");
    assert!(!cause.contains("hunter2"));
    let out = preheat(dir.path(), &["warm", "--config", &config]);
    assert!(first_line(&out).starts_with("warm      degraded in"), "{}", text(&out.stdout));
    // Strict fails the deploy on it (exit 4); the contract without it is unchanged.
    let out = preheat(dir.path(), &["warm", "--config", &config, "--strict"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stdout));

    // The cache is down: nothing is written, and the line says so and why.
    let backend = format!("redis://127.0.0.1:{}", free_port());
    let out = preheat(dir.path(), &["warm", "--config", "data/preheat.toml", "--backend", &backend]);
    assert_eq!(out.status.code(), Some(0), "a failed warm never fails the deploy unless strict");
    let line = first_line(&out);
    assert!(line.starts_with("warm      failed: nothing written"), "{}", text(&out.stdout));
    assert!(line.to_lowercase().contains("connection refused"), "{line}");

    // Every key missing in its source is a failed warm too, with the likely fix: here the
    // shop's tables exist but hold no rows.
    let schema = fs::read_to_string(dir.path().join("data/shop.sql")).expect("schema");
    let tables: Vec<&str> = schema.lines().filter(|l| l.starts_with("CREATE TABLE")).collect();
    let empty = format!("sqlite://{}", dir.path().join("empty.db").display());
    block(preheat::source::run_script(&empty, &tables.join("\n"))).expect("the schema applies");
    let config = fs::read_to_string(dir.path().join("data/preheat.toml")).expect("config");
    fs::write(dir.path().join("empty.toml"), config.replace("sqlite://data/shop.db", &empty))
        .expect("writable");
    let out = preheat(dir.path(), &["warm", "--config", "empty.toml"]);
    let line = first_line(&out);
    assert!(line.starts_with("warm      failed: nothing written"), "{}", text(&out.stdout));
    assert!(line.contains("no planned key was found in its source"), "{line}");
}

/// `config check --connect` with one backend URL and one PostgreSQL source URL: the failing
/// line, and how long the check took.
fn connect_check(dir: &Path, backend: &str, source: &str) -> (String, Duration) {
    let config = fs::read_to_string(dir.join("data/preheat.toml"))
        .expect("the demo's config")
        .replace("sqlite://data/shop.db", source);
    fs::write(dir.join("check.toml"), config).expect("writable");
    let started = Instant::now();
    let out = preheat(dir, &["config", "check", "--connect", "--config", "check.toml", "--backend", backend]);
    let failed = text(&out.stdout).lines().filter(|l| l.contains("FAILED")).collect::<Vec<_>>().join("\n");
    (failed, started.elapsed())
}

#[test]
fn a_postgres_connection_that_fails_names_its_cause_within_seconds() {
    let (dir, _) = after_the_demo();
    let pg = Postgres::start_with_password("right-password");
    let ok_backend = "memory://";
    let right = format!("postgres://postgres:right-password@127.0.0.1:{}/postgres", pg.port);
    // The demo's tables, empty, so that the database can check each rule's query.
    let (failed, _) = connect_check(dir.path(), ok_backend, &right);
    assert!(failed.contains("relation \"products\" does not exist"), "{failed}");
    pg.psql(
        "CREATE TABLE products (id bigint, body text); CREATE TABLE categories (slug text, body text);
         CREATE TABLE users (id bigint, name text, plan text); CREATE TABLE pages (path text, html text);",
    );
    let (failed, _) = connect_check(dir.path(), ok_backend, &right);
    assert_eq!(failed, "", "the right password connects and every query checks");

    let closed = format!("postgres://postgres:x@127.0.0.1:{}/postgres", free_port());
    let (failed, took) = connect_check(dir.path(), ok_backend, &closed);
    assert!(failed.contains("connection refused by PostgreSQL at 127.0.0.1:"), "{failed}");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    let wrong = format!("postgres://postgres:wrong-password@127.0.0.1:{}/postgres", pg.port);
    let (failed, took) = connect_check(dir.path(), ok_backend, &wrong);
    assert!(failed.contains("authentication failed for user `postgres`"), "{failed}");
    assert!(!failed.contains("wrong-password"), "the password leaked: {failed}");
    assert!(!failed.contains(" at line "), "a server-internal line number: {failed}");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    let no_db = format!("postgres://postgres:right-password@127.0.0.1:{}/no_such_db", pg.port);
    let (failed, _) = connect_check(dir.path(), ok_backend, &no_db);
    assert!(failed.contains("database `no_such_db` does not exist"), "{failed}");

    // A port that takes the connection and never answers: a timeout, said as one, on time.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let silent_url = format!("postgres://postgres@{}/postgres", silent.local_addr().expect("bound"));
    let holder = std::thread::spawn(move || {
        let held: Vec<_> = silent.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(7));
        drop(held);
    });
    let (failed, took) = connect_check(dir.path(), ok_backend, &silent_url);
    assert!(failed.contains("did not answer within 5s"), "{failed}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    holder.join().expect("held");

    let (failed, took) = connect_check(dir.path(), ok_backend, "postgres://postgres@no-such-host.invalid/db");
    assert!(failed.contains("unknown host `no-such-host.invalid`"), "{failed}");
    assert!(took < Duration::from_secs(3), "took {took:?}");
}

#[test]
fn a_redis_connection_that_fails_names_its_cause_within_seconds() {
    let (dir, _) = after_the_demo();
    let source = "sqlite://data/shop.db";
    let (failed, took) = connect_check(dir.path(), &format!("redis://127.0.0.1:{}", free_port()), source);
    assert!(failed.to_lowercase().contains("connection refused"), "{failed}");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    let (failed, took) = connect_check(dir.path(), "redis://no-such-host.invalid:6379", source);
    assert!(failed.contains("unknown host: the backend URL's host name does not resolve"), "{failed}");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    // TLS asked of a server without it: said so, not a bare "timed out" after a long wait.
    let plain = Redis::start();
    let (failed, took) = connect_check(dir.path(), &format!("rediss://127.0.0.1:{}", plain.port), source);
    assert!(failed.contains("did not answer the TLS handshake"), "{failed}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let started = Instant::now();
    let out = preheat(
        dir.path(),
        &[
            "warm",
            "--config",
            "data/preheat.toml",
            "--backend",
            &format!("rediss://127.0.0.1:{}", plain.port),
        ],
    );
    assert!(first_line(&out).starts_with("warm      failed: nothing written"), "{}", text(&out.stdout));
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
}
