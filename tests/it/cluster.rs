//! The Redis Cluster backend against a real three-master cluster: whole warms, redirections
//! while slots move, and a master killed mid-warm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use preheat::backend::{Backend, Entry, RedisClusterBackend, WriteMode, Written, slot};
use preheat::failure::FailureReason;
use preheat::warm::RunStatus;

use crate::servers::{Redis, RedisCluster};
use crate::support::warm_requests;

fn myid(c: &mut redis::Connection) -> String {
    redis::cmd("CLUSTER").arg("MYID").query(c).expect("MYID")
}

/// A key whose slot is served by master `i`, made from `prefix`.
fn key_on(cluster: &RedisCluster, i: usize, prefix: &str) -> String {
    (0..).map(|n| format!("{prefix}{n}")).find(|k| cluster.owner(k) == i).expect("some key lands there")
}

#[test]
fn a_warm_spreads_over_every_master_and_peer_copies_restore_there() {
    let cluster = RedisCluster::start(3);
    let peer = Redis::start();
    let mut p = peer.client().get_connection().expect("connects");
    for id in 1..=300 {
        let _: () = redis::cmd("SET")
            .arg(format!("product:{id}"))
            .arg(format!("v{id}"))
            .arg("PX")
            .arg(600_000)
            .query(&mut p)
            .expect("SET");
    }
    let config = format!(
        "[warm]\nbatch_size = 64\n[sources.old]\nurl = \"{}\"\n[[rule]]\nname = \"product\"\nmatch = \"GET /api/products/{{id:int}}\"\nkey = \"product:{{id}}\"\nsource = \"old\"\n",
        peer.url()
    );
    let requests: Vec<(String, u32)> =
        (1..=300).map(|id| (format!("/api/products/{id}"), 1 + id % 5)).collect();
    let backend = Arc::new(RedisClusterBackend::new(&cluster.url()).expect("valid URL"));
    let (_, r) = warm_requests(&config, &requests, backend);
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.errors);
    assert_eq!(r.written, 300, "{:?} {:?}", r.failed, r.errors);
    let mut per_master = [0; 3];
    for id in 1..=300 {
        let key = format!("product:{id}");
        per_master[cluster.owner(&key)] += 1;
        assert_eq!(cluster.get(&key), Some(format!("v{id}").into_bytes()), "{key}");
        assert!(
            cluster.ttl(&key).is_some_and(|t| t > Duration::from_secs(590)),
            "{key}: the TTL carried over"
        );
    }
    assert!(per_master.iter().all(|&n| n > 50), "{per_master:?}");
}

#[test]
fn moved_and_ask_redirections_are_followed() {
    let cluster = RedisCluster::start(3);
    let backend = RedisClusterBackend::new(&cluster.url()).expect("valid URL");
    // One runtime for the whole test: the backend's connections live on it.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let entry = |k: &str| Entry::value(k, b"warm".to_vec(), Some(Duration::from_secs(600)));
    // The backend reads the slot map on its first write.
    let first = rt.block_on(backend.write_batch(&[entry("warm-up")], WriteMode::IfAbsent));
    assert!(matches!(first[..], [Ok(Written::Created)]), "{first:?}");

    let (mut a, mut b) = (cluster.node(0), cluster.node(1));
    let (id_a, id_b) = (myid(&mut a), myid(&mut b));
    // MOVED: a slot of master 0 now belongs to master 1, which the backend does not know.
    let moved_key = key_on(&cluster, 0, "moved-");
    let moved_slot = slot(moved_key.as_bytes());
    for c in [&mut a, &mut b] {
        let _: () = redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(moved_slot)
            .arg("NODE")
            .arg(&id_b)
            .query(c)
            .expect("SETSLOT");
    }
    // ASK: another slot of master 0 is being migrated to master 1.
    let asked_key = (0..)
        .map(|n| format!("asked-{n}"))
        .find(|k| cluster.owner(k) == 0 && slot(k.as_bytes()) != moved_slot)
        .expect("a key");
    let asked_slot = slot(asked_key.as_bytes());
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(asked_slot)
        .arg("IMPORTING")
        .arg(&id_a)
        .query(&mut b)
        .expect("IMPORTING");
    let _: () = redis::cmd("CLUSTER")
        .arg("SETSLOT")
        .arg(asked_slot)
        .arg("MIGRATING")
        .arg(&id_b)
        .query(&mut a)
        .expect("MIGRATING");

    let batch = [entry(&moved_key), entry(&asked_key), entry("warm-up")];
    let out = rt.block_on(backend.write_batch(&batch, WriteMode::IfAbsent));
    assert!(matches!(out[..], [Ok(Written::Created), Ok(Written::Created), Ok(Written::Existed)]), "{out:?}");
    let get = |c: &mut redis::Connection, k: &str, asking: bool| -> Option<String> {
        let mut pipe = redis::pipe();
        if asking {
            pipe.cmd("ASKING").ignore();
        }
        pipe.cmd("GET").arg(k);
        pipe.query::<(Option<String>,)>(c).expect("GET").0
    };
    assert_eq!(get(&mut b, &moved_key, false).as_deref(), Some("warm"), "written on the new owner");
    assert_eq!(get(&mut b, &asked_key, true).as_deref(), Some("warm"), "written on the importing node");
    // Overwrites keep their remaining TTL across the redirection too.
    let out = rt.block_on(backend.write_batch(&[entry(&asked_key)], WriteMode::OverwriteKeepTtl));
    assert!(matches!(out[..], [Ok(Written::Replaced)]), "{out:?}");
}

#[test]
fn a_master_killed_mid_warm_costs_only_its_slots() {
    let mut cluster = RedisCluster::start(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let program = dir.path().join("value");
    std::fs::write(&program, "#!/bin/sh\nprintf 'value %s' \"$1\"\n").expect("writable");
    std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    // About 100 keys a second, so the warm is under way when the master dies.
    let config = format!(
        "[warm]\nbatch_size = 10\nconcurrency = 2\n[sources.calc]\ncommand = [\"{}\"]\nqps = 100\n\
         [[rule]]\nname = \"product\"\nmatch = \"GET /api/products/{{id:int}}\"\nkey = \"product:{{id}}\"\n\
         source = \"calc\"\nargs = [\"{{id}}\"]\nttl = \"10m\"\n",
        program.display()
    );
    let requests: Vec<(String, u32)> =
        (1..=200).map(|id| (format!("/api/products/{id}"), 1 + (200 - id) / 20)).collect();
    let victim_keys: Vec<String> =
        (1..=200).map(|id| format!("product:{id}")).filter(|k| cluster.owner(k) == 2).collect();
    let backend = Arc::new(RedisClusterBackend::new(&cluster.url()).expect("valid URL"));
    let killer_port = cluster.ports[2];
    let warm = std::thread::spawn(move || warm_requests(&config, &requests, backend));
    // Kill the third master once several batches have written to it: a batch whose reply the
    // kill cuts off counts as failed although its keys are in, so the first few keys alone
    // would not prove that any batch to it had completed.
    let started = Instant::now();
    let mut c = redis::Client::open(format!("redis://127.0.0.1:{killer_port}/"))
        .expect("url")
        .get_connection()
        .expect("connects");
    while redis::cmd("DBSIZE").query::<i64>(&mut c).expect("DBSIZE") < 15 {
        assert!(started.elapsed() < Duration::from_secs(10), "the warm did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    cluster.kill(2);
    let (plan, r) = warm.join().expect("the warm ends");
    assert_eq!(plan.keys.len(), 200);
    assert_eq!(r.status, RunStatus::Completed, "{:?}", r.errors);
    let failed = r.failed.get(&FailureReason::BackendError).copied().unwrap_or(0);
    assert!(failed > 0 && failed < victim_keys.len() as u64, "{:?} of {}", r.failed, victim_keys.len());
    assert_eq!(r.written + failed, 200, "{:?}", r.failed);
    for id in 1..=200 {
        let key = format!("product:{id}");
        if !victim_keys.contains(&key) {
            assert_eq!(
                cluster.get(&key),
                Some(format!("value {id}").into_bytes()),
                "{key} is on a live master"
            );
        }
    }
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
}
