//! The Redis Cluster backend: slot-aware pipelines, one per master, sent in parallel.
//!
//! The cluster's slot map comes from `CLUSTER SLOTS` on any node that answers (the seeds
//! first). A batch is split by the master that owns each key's slot and every master gets one
//! pipeline. Replies are read entry by entry: `MOVED` (the slot lives elsewhere now) refreshes
//! the map and resends the entry to its new owner, `ASK` (a slot in migration) resends it to
//! the named node after `ASKING`. A master that cannot be reached fails only the entries of its
//! slots, as retryable errors, and is left alone for a second before it is tried again; the
//! other masters go on. Writes are the standalone backend's: `SET NX PX`, `SET XX KEEPTTL`
//! (then `SET NX PX` for keys that turned out absent), and the restore script for peer copies.
//!
//! With Redis's default `cluster-require-full-coverage yes`, the surviving masters refuse
//! writes too once the cluster has marked a master as failed; set it to `no` to keep warming
//! the slots that are still served.
//!
//! Our own client rather than the redis crate's `cluster_async`, on measurement: writing
//! 200k keys of 1 KiB into three masters (batches of 500, four in flight, `SET NX PX`), this
//! one wrote 318k and 312k keys/s against 116k and 119k for the crate's client, which routes
//! each command and multiplexes what is in flight (2.75x and 2.63x; `cargo bench --bench
//! cluster_client`, the two taking turns, 2026-12-07).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ServerErrorKind, Value};

use super::redis::{RESTORE_SCRIPT, classify};
use super::{Backend, BackendError, Entry, NodeMemory, WriteMode, Written};
use crate::secret::redact_url;

/// Hash slots in a Redis Cluster.
const SLOTS: usize = 16384;
/// Redirections followed for one entry before it fails.
const MAX_REDIRECTS: usize = 5;
/// How long a master that could not be reached is left alone.
const NODE_PAUSE: Duration = Duration::from_secs(1);
/// `owner` value of a slot no master serves.
const UNSERVED: u16 = u16::MAX;

/// The hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag (the text between the
/// first `{` and the next `}`, when not empty), modulo 16384.
pub fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter().position(|&b| b == b'}').filter(|&close| close > 0).map(|close| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
        }
    }
    crc % SLOTS as u16
}

/// Which master serves each slot.
struct Topology {
    /// Per slot, an index into `masters`, or [`UNSERVED`].
    owner: Vec<u16>,
    /// `host:port` of each master.
    masters: Vec<String>,
}

impl Topology {
    fn owner_of(&self, key: &str) -> Option<&str> {
        let i = self.owner[slot(key.as_bytes()) as usize];
        (i != UNSERVED).then(|| self.masters[i as usize].as_str())
    }
}

/// The command an entry still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// `SET NX PX`: Created or Existed.
    Create,
    /// `SET XX` (`KEEPTTL` when keeping): Replaced, or on to `CreateAfterReplace`.
    Replace { keep_ttl: bool },
    /// `SET NX PX` for a key `Replace` found absent.
    CreateAfterReplace,
    /// The restore script.
    Restore(&'static str),
}

/// An entry on its way: which step, and where a redirection sent it (`None`: the owner in the
/// slot map).
#[derive(Debug, Clone)]
struct Pending {
    index: usize,
    step: Step,
    to: Option<Redirect>,
    redirects: usize,
}

/// Where a `MOVED` or `ASK` reply sent an entry.
#[derive(Debug, Clone)]
struct Redirect {
    addr: String,
    /// `ASK`: the next command must follow `ASKING`.
    asking: bool,
}

/// What one reply says of its entry.
enum Reply {
    Done(Result<Written, BackendError>),
    Next(Step),
    Moved(String),
    Ask(String),
    NoScript,
}

/// A Redis Cluster, reached through its masters.
pub struct RedisClusterBackend {
    seeds: Vec<String>,
    scheme: &'static str,
    userinfo: String,
    redacted: String,
    topology: RwLock<Option<Arc<Topology>>>,
    refreshing: tokio::sync::Mutex<()>,
    connections: Mutex<HashMap<String, ConnectionManager>>,
    paused: Mutex<HashMap<String, Instant>>,
}

impl RedisClusterBackend {
    /// A backend for `redis+cluster://[user:password@]host:port,host:port,...` (or
    /// `rediss+cluster://` for TLS with the system roots): any of the seed nodes will do.
    /// Connects on first use.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        let redacted = redact_url(url);
        let bad = |why: &str| BackendError {
            backend: redacted.clone(),
            message: format!("not a usable Redis Cluster URL: {why}"),
            retryable: false,
        };
        let (scheme, rest) = if let Some(rest) = url.strip_prefix("redis+cluster://") {
            ("redis", rest)
        } else if let Some(rest) = url.strip_prefix("rediss+cluster://") {
            ("rediss", rest)
        } else {
            return Err(bad("it must start with `redis+cluster://` or `rediss+cluster://`"));
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((user, hosts)) => (format!("{user}@"), hosts),
            None => (String::new(), authority),
        };
        let seeds: Vec<String> =
            hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).map(String::from).collect();
        if seeds.is_empty() {
            return Err(bad("it names no node: `redis+cluster://host:port,host:port`"));
        }
        for seed in &seeds {
            if seed.rsplit_once(':').is_none_or(|(_, port)| port.parse::<u16>().is_err()) {
                return Err(bad(&format!("`{seed}` is not `host:port`")));
            }
        }
        Ok(RedisClusterBackend {
            seeds,
            scheme,
            userinfo,
            redacted,
            topology: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            connections: Mutex::new(HashMap::new()),
            paused: Mutex::new(HashMap::new()),
        })
    }

    fn error(&self, addr: &str, e: &redis::RedisError) -> BackendError {
        let url = format!("{}://{}{addr}", self.scheme, self.userinfo);
        let mut error = classify(e, &url, &self.redacted);
        error.message = format!("node {addr}: {}", error.message);
        error
    }

    fn unreachable(&self, addr: &str) -> BackendError {
        BackendError {
            backend: self.redacted.clone(),
            message: format!("node {addr} cannot be reached; its slots wait"),
            retryable: true,
        }
    }

    /// The connection to `addr`, made on first use; `Err` while the node is paused after a
    /// failure.
    async fn connection(&self, addr: &str) -> Result<ConnectionManager, BackendError> {
        if let Some(conn) = lock(&self.connections).get(addr) {
            return Ok(conn.clone());
        }
        if lock(&self.paused).get(addr).is_some_and(|until| Instant::now() < *until) {
            return Err(self.unreachable(addr));
        }
        let url = format!("{}://{}{addr}/", self.scheme, self.userinfo);
        let client = redis::Client::open(url.as_str()).map_err(|e| self.error(addr, &e))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        match client.get_connection_manager_with_config(config).await {
            Ok(conn) => {
                lock(&self.connections).insert(addr.to_string(), conn.clone());
                Ok(conn)
            }
            Err(e) => {
                self.pause(addr);
                Err(self.error(addr, &e))
            }
        }
    }

    fn pause(&self, addr: &str) {
        lock(&self.paused).insert(addr.to_string(), Instant::now() + NODE_PAUSE);
    }

    /// The slot map, read once and after every `MOVED`.
    async fn topology(&self) -> Result<Arc<Topology>, BackendError> {
        if let Some(t) = read(&self.topology).clone() {
            return Ok(t);
        }
        self.refresh(None).await
    }

    /// Reads the slot map again, unless another task already did since `seen` was current.
    async fn refresh(&self, seen: Option<&Arc<Topology>>) -> Result<Arc<Topology>, BackendError> {
        let _one_at_a_time = self.refreshing.lock().await;
        if let Some(current) = read(&self.topology).clone()
            && seen.is_none_or(|s| !Arc::ptr_eq(s, &current))
        {
            return Ok(current);
        }
        let mut candidates = self.seeds.clone();
        if let Some(known) = seen {
            candidates.extend(known.masters.iter().filter(|m| !self.seeds.contains(m)).cloned());
        }
        let mut last = None;
        for addr in &candidates {
            let mut conn = match self.connection(addr).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            match redis::cmd("CLUSTER").arg("SLOTS").query_async::<Value>(&mut conn).await {
                Ok(reply) => match parse_slots(&reply, addr) {
                    Some(topology) => {
                        let topology = Arc::new(topology);
                        *self.topology.write().unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(topology.clone());
                        return Ok(topology);
                    }
                    None => {
                        last = Some(BackendError {
                            backend: self.redacted.clone(),
                            message: format!(
                                "node {addr} is not in cluster mode (`CLUSTER SLOTS` gave no slots)"
                            ),
                            retryable: false,
                        });
                    }
                },
                Err(e) => {
                    self.forget(addr);
                    last = Some(self.error(addr, &e));
                }
            }
        }
        Err(last.unwrap_or_else(|| self.unreachable("(no seed)")))
    }

    /// Drops a connection that failed, and pauses its node.
    fn forget(&self, addr: &str) {
        lock(&self.connections).remove(addr);
        self.pause(addr);
    }

    /// Sends one pipeline to `addr` for `items`; one reply per item.
    async fn send(&self, addr: &str, entries: &[Entry], items: &[Pending]) -> Vec<Reply> {
        let mut conn = match self.connection(addr).await {
            Ok(c) => c,
            Err(e) => return items.iter().map(|_| Reply::Done(Err(e.clone()))).collect(),
        };
        let script = redis::Script::new(RESTORE_SCRIPT);
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for item in items {
            if item.to.as_ref().is_some_and(|r| r.asking) {
                pipe.cmd("ASKING").ignore();
            }
            let e = &entries[item.index];
            let ttl_ms = e.ttl.map(|t| t.as_millis().max(1) as u64);
            match item.step {
                Step::Create | Step::CreateAfterReplace => {
                    let cmd = pipe.cmd("SET").arg(&e.key).arg(&e.value).arg("NX");
                    if let Some(ms) = ttl_ms {
                        cmd.arg("PX").arg(ms);
                    }
                }
                Step::Replace { keep_ttl } => {
                    let cmd = pipe.cmd("SET").arg(&e.key).arg(&e.value).arg("XX");
                    match (keep_ttl, ttl_ms) {
                        (true, _) => {
                            cmd.arg("KEEPTTL");
                        }
                        (false, Some(ms)) => {
                            cmd.arg("PX").arg(ms);
                        }
                        (false, None) => {}
                    }
                }
                Step::Restore(flag) => {
                    pipe.cmd("EVALSHA")
                        .arg(script.get_hash())
                        .arg(1)
                        .arg(&e.key)
                        .arg(ttl_ms.unwrap_or(0))
                        .arg(&e.value)
                        .arg(flag);
                }
            }
        }
        let replies: Vec<Value> = match pipe.query_async(&mut conn).await {
            Ok(r) => r,
            Err(e) => {
                let error = self.error(addr, &e);
                if error.retryable {
                    self.forget(addr);
                }
                return items.iter().map(|_| Reply::Done(Err(error.clone()))).collect();
            }
        };
        items.iter().zip(replies).map(|(item, value)| self.read_reply(addr, item.step, value)).collect()
    }

    fn read_reply(&self, addr: &str, step: Step, value: Value) -> Reply {
        let ok = matches!(value, Value::Okay) || matches!(&value, Value::SimpleString(s) if s == "OK");
        match value {
            Value::ServerError(e) => {
                let target = e.details().and_then(|d| d.split_whitespace().nth(1)).map(str::to_string);
                match (e.kind(), target) {
                    (Some(ServerErrorKind::Moved), Some(to)) => Reply::Moved(to),
                    (Some(ServerErrorKind::Ask), Some(to)) => Reply::Ask(to),
                    (Some(ServerErrorKind::NoScript), _) => Reply::NoScript,
                    (kind, _) => Reply::Done(Err(BackendError {
                        backend: self.redacted.clone(),
                        message: format!("node {addr}: {} {}", e.code(), e.details().unwrap_or_default()),
                        retryable: matches!(
                            kind,
                            Some(
                                ServerErrorKind::ClusterDown
                                    | ServerErrorKind::TryAgain
                                    | ServerErrorKind::BusyLoading
                                    | ServerErrorKind::MasterDown
                            )
                        ),
                    })),
                }
            }
            Value::Int(n) if matches!(step, Step::Restore(_)) => Reply::Done(Ok(match n {
                1 => Written::Created,
                2 => Written::Replaced,
                _ => Written::Existed,
            })),
            _ => match (step, ok) {
                (Step::Create | Step::CreateAfterReplace, true) => Reply::Done(Ok(Written::Created)),
                (Step::Create | Step::CreateAfterReplace, false) => Reply::Done(Ok(Written::Existed)),
                (Step::Replace { .. }, true) => Reply::Done(Ok(Written::Replaced)),
                (Step::Replace { .. }, false) => Reply::Next(Step::CreateAfterReplace),
                (Step::Restore(_), _) => Reply::Done(Err(BackendError {
                    backend: self.redacted.clone(),
                    message: format!("node {addr}: unexpected reply to the restore script"),
                    retryable: false,
                })),
            },
        }
    }

    /// Loads the restore script on `addr` (a new or restarted master lacks it).
    async fn load_script(&self, addr: &str) -> Result<(), BackendError> {
        let mut conn = self.connection(addr).await?;
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(RESTORE_SCRIPT)
            .query_async::<String>(&mut conn)
            .await
            .map(|_| ())
            .map_err(|e| self.error(addr, &e))
    }

    /// Runs a one-key command on the key's master, following redirections.
    async fn on_owner<T: redis::FromRedisValue>(
        &self,
        key: &str,
        cmd: &redis::Cmd,
    ) -> Result<T, BackendError> {
        let mut topology = self.topology().await?;
        let mut ask: Option<String> = None;
        for _ in 0..MAX_REDIRECTS {
            let Some(addr) = ask.clone().or_else(|| topology.owner_of(key).map(str::to_string)) else {
                return Err(self.unserved(key));
            };
            let mut conn = self.connection(&addr).await?;
            let result = if ask.is_some() {
                let mut pipe = redis::pipe();
                pipe.cmd("ASKING").ignore().add_command(cmd.clone());
                pipe.query_async::<(T,)>(&mut conn).await.map(|(t,)| t)
            } else {
                cmd.query_async::<T>(&mut conn).await
            };
            match result {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::Moved) => {
                    topology = self.refresh(Some(&topology)).await?;
                    ask = None;
                }
                Err(e) if e.kind() == redis::ErrorKind::Server(ServerErrorKind::Ask) => {
                    ask = e.redirect_node().map(|(host, port)| format!("{host}:{port}"));
                }
                Err(e) => {
                    let error = self.error(&addr, &e);
                    if error.retryable {
                        self.forget(&addr);
                    }
                    return Err(error);
                }
            }
        }
        Err(self.too_many_redirects())
    }

    fn unserved(&self, key: &str) -> BackendError {
        BackendError {
            backend: self.redacted.clone(),
            message: format!("no master serves the slot of `{key}` ({})", slot(key.as_bytes())),
            retryable: true,
        }
    }

    fn too_many_redirects(&self) -> BackendError {
        BackendError {
            backend: self.redacted.clone(),
            message: format!("more than {MAX_REDIRECTS} MOVED/ASK redirections; the cluster is resharding"),
            retryable: true,
        }
    }
}

/// Reads a `CLUSTER SLOTS` reply; an empty host means the node that answered.
fn parse_slots(reply: &Value, asked: &str) -> Option<Topology> {
    let Value::Array(ranges) = reply else { return None };
    let asked_host = asked.rsplit_once(':').map_or(asked, |(h, _)| h);
    let mut owner = vec![UNSERVED; SLOTS];
    let mut masters: Vec<String> = Vec::new();
    for range in ranges {
        let Value::Array(fields) = range else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (fields.first(), fields.get(1), fields.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(h)) if !h.is_empty() => String::from_utf8_lossy(h).into_owned(),
            Some(Value::SimpleString(h)) if !h.is_empty() => h.clone(),
            _ => asked_host.to_string(),
        };
        let Some(Value::Int(port)) = master.get(1) else { continue };
        let addr = format!("{host}:{port}");
        let index = masters.iter().position(|m| *m == addr).unwrap_or_else(|| {
            masters.push(addr);
            masters.len() - 1
        });
        let (start, end) = (usize::try_from(*start).ok()?, usize::try_from(*end).ok()?);
        for s in owner.iter_mut().take(end.min(SLOTS - 1) + 1).skip(start) {
            *s = index as u16;
        }
    }
    (!masters.is_empty()).then_some(Topology { owner, masters })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Backend for RedisClusterBackend {
    fn describe(&self) -> String {
        self.redacted.clone()
    }

    async fn write_batch(&self, entries: &[Entry], mode: WriteMode) -> Vec<Result<Written, BackendError>> {
        let mut results: Vec<Option<Result<Written, BackendError>>> =
            (0..entries.len()).map(|_| None).collect();
        let mut topology = match self.topology().await {
            Ok(t) => t,
            Err(e) => return entries.iter().map(|_| Err(e.clone())).collect(),
        };
        let first = |e: &Entry| match (e.dump, mode) {
            (true, WriteMode::IfAbsent) => Step::Restore("nx"),
            (true, WriteMode::OverwriteKeepTtl) => Step::Restore("keep"),
            (true, WriteMode::Overwrite) => Step::Restore("reset"),
            (false, WriteMode::IfAbsent) => Step::Create,
            (false, WriteMode::OverwriteKeepTtl) => Step::Replace { keep_ttl: true },
            (false, WriteMode::Overwrite) => Step::Replace { keep_ttl: false },
        };
        let mut pending: Vec<Pending> = entries
            .iter()
            .enumerate()
            .map(|(index, e)| Pending { index, step: first(e), to: None, redirects: 0 })
            .collect();
        while !pending.is_empty() {
            let mut by_node: HashMap<String, Vec<Pending>> = HashMap::new();
            for item in pending.drain(..) {
                let addr = match &item.to {
                    Some(r) => Some(r.addr.clone()),
                    None => topology.owner_of(&entries[item.index].key).map(str::to_string),
                };
                match addr {
                    Some(addr) => by_node.entry(addr).or_default().push(item),
                    None => results[item.index] = Some(Err(self.unserved(&entries[item.index].key))),
                }
            }
            let sends = by_node.iter().map(|(addr, items)| self.send(addr, entries, items));
            let replies = futures_util::future::join_all(sends).await;
            let mut moved = false;
            for ((addr, items), replies) in by_node.into_iter().zip(replies) {
                let mut reload = false;
                for (mut item, reply) in items.into_iter().zip(replies) {
                    match reply {
                        Reply::Done(r) => {
                            results[item.index] = Some(r);
                            continue;
                        }
                        Reply::Next(step) => {
                            item.step = step;
                            // The next step goes where this one was served, without `ASKING`
                            // unless the slot is still migrating.
                            item.to = item.to.filter(|r| r.asking);
                        }
                        Reply::Moved(addr) => {
                            moved = true;
                            item.to = Some(Redirect { addr, asking: false });
                            item.redirects += 1;
                        }
                        Reply::Ask(addr) => {
                            item.to = Some(Redirect { addr, asking: true });
                            item.redirects += 1;
                        }
                        Reply::NoScript => {
                            reload = true;
                            item.redirects += 1;
                        }
                    }
                    if item.redirects > MAX_REDIRECTS {
                        results[item.index] = Some(Err(self.too_many_redirects()));
                    } else {
                        pending.push(item);
                    }
                }
                if reload && let Err(e) = self.load_script(&addr).await {
                    // Rare: fail the copies still waiting rather than sort out which node each
                    // was bound for.
                    for item in pending.iter().filter(|p| matches!(p.step, Step::Restore(_))) {
                        results[item.index] = Some(Err(e.clone()));
                    }
                    pending.retain(|p| results[p.index].is_none());
                }
            }
            if moved {
                match self.refresh(Some(&topology)).await {
                    Ok(t) => topology = t,
                    Err(e) => {
                        for item in pending.drain(..) {
                            results[item.index] = Some(Err(e.clone()));
                        }
                    }
                }
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(self.too_many_redirects()))).collect()
    }

    async fn take_back(&self, entries: &[&Entry]) -> Vec<Result<bool, BackendError>> {
        // Rare (only keys whose source changed while they were warmed): one call per key.
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(super::redis::TAKE_BACK_SCRIPT).arg(1).arg(&e.key).arg(&e.value).arg(if e.dump {
                "dump"
            } else {
                "value"
            });
            out.push(self.on_owner::<i64>(&e.key, &cmd).await.map(|n| n == 1));
        }
        out
    }

    async fn ping(&self) -> Result<(), BackendError> {
        let topology = self.topology().await?;
        for addr in &topology.masters {
            let mut conn = self.connection(addr).await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await.map_err(|e| self.error(addr, &e))?;
        }
        Ok(())
    }

    async fn memory(&self) -> Result<Vec<NodeMemory>, BackendError> {
        let topology = self.topology().await?;
        let mut nodes = Vec::with_capacity(topology.masters.len());
        for addr in &topology.masters {
            let mut conn = self.connection(addr).await?;
            let mut pipe = redis::pipe();
            pipe.cmd("INFO").arg("memory").cmd("INFO").arg("stats");
            let replies: Vec<String> = pipe.query_async(&mut conn).await.map_err(|e| self.error(addr, &e))?;
            nodes.push(NodeMemory::from_info(addr, &replies.join("\n")));
        }
        Ok(nodes)
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, BackendError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(token).arg("NX").arg("PX").arg(ttl.as_millis().max(1) as u64);
        let reply: Option<String> = self.on_owner(key, &cmd).await?;
        Ok(reply.is_some())
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), BackendError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(super::redis::UNLOCK_SCRIPT).arg(1).arg(key).arg(token);
        let _: i64 = self.on_owner(key, &cmd).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_redis() {
        // Values from `CLUSTER KEYSLOT` on a real server.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"product:1"), slot(b"product:1"));
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_eq!(slot(b"foo{}{bar}"), slot(b"foo{}{bar}"), "an empty tag hashes the whole key");
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        assert_eq!(slot(b"foo{{bar}}zap"), slot(b"{bar"));
    }

    #[test]
    fn urls_name_the_seeds() {
        let b = RedisClusterBackend::new("redis+cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001/")
            .expect("valid");
        assert_eq!(b.seeds, ["10.0.0.1:7000", "10.0.0.2:7001"]);
        assert_eq!(b.userinfo, "app:s3cret@");
        assert!(!b.describe().contains("s3cret"), "{}", b.describe());
        for bad in ["redis://a:1", "redis+cluster://", "redis+cluster://host", "redis+cluster://h:port"] {
            let e = RedisClusterBackend::new(bad).err().expect("refused");
            assert!(e.message.contains("Redis Cluster URL"), "{e}");
        }
    }
}
