//! Backends: where warmed values are written.
//!
//! One trait, [`Backend`], whose writes are "if absent" unless told to overwrite, so data that
//! is already cached, and its TTL, stay untouched by default. Each entry of a batch succeeds
//! or fails on its own, and errors say whether retrying can help; the warm loop never looks at
//! their text. Implementations: [`RedisBackend`] (a Redis server), [`RedisClusterBackend`]
//! (a Redis Cluster, pipelined per master), [`MemcachedBackend`] (memcached servers, keys
//! placed by ketama) and [`MemoryBackend`] (in-process, for services that warm their own
//! cache, demos and tests); one conformance suite runs against all four.

mod cluster;
mod ketama;
mod memcached;
mod memory;
mod open;
mod redis;
mod resp;

use std::future::Future;
use std::time::Duration;

pub use self::redis::RedisBackend;
pub use cluster::{RedisClusterBackend, slot};
pub use memcached::MemcachedBackend;
pub use memory::MemoryBackend;
pub use open::{AnyBackend, BackendSettings, OpenError, SCHEMES, known_scheme, open, open_redis};

/// One value to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The cache key (already validated).
    pub key: String,
    /// The value.
    pub value: Vec<u8>,
    /// Time to live; `None` for no expiry.
    pub ttl: Option<Duration>,
    /// `value` is a Redis `DUMP` payload (a peer-Redis copy), restored as it was with
    /// `RESTORE`; only Redis backends take these.
    pub dump: bool,
}

impl Entry {
    /// A plain value.
    pub fn value(key: impl Into<String>, value: Vec<u8>, ttl: Option<Duration>) -> Self {
        Entry { key: key.into(), value, ttl, dump: false }
    }
}

/// How to treat a key that already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteMode {
    /// Leave it, value and TTL alike (Redis `SET NX PX`).
    IfAbsent,
    /// Replace the value, keeping the key's remaining TTL (Redis `SET XX KEEPTTL`); absent
    /// keys are created with the entry's TTL.
    OverwriteKeepTtl,
    /// Replace the value and its TTL.
    Overwrite,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// The key did not exist and now holds the value.
    Created,
    /// The key existed and was left alone.
    Existed,
    /// The key existed and its value was replaced.
    Replaced,
}

/// One result per entry, all the same: what a batch that failed as a whole gives.
pub fn all_alike(n: usize, result: Result<Vec<Written>, BackendError>) -> Vec<Result<Written, BackendError>> {
    match result {
        Ok(written) => written.into_iter().map(Ok).collect(),
        Err(e) => vec![Err(e); n],
    }
}

/// One cache node's memory, which a warm watches so that it never makes the cache evict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeMemory {
    /// The node (`host:port`, or `memory://`).
    pub node: String,
    /// Bytes in use.
    pub used_bytes: u64,
    /// The node's limit (Redis `maxmemory`); 0 for none.
    pub max_bytes: u64,
    /// What the node does at its limit (Redis `maxmemory-policy`).
    pub policy: String,
    /// Keys evicted for room since the node started.
    pub evicted_keys: u64,
}

impl NodeMemory {
    /// Reads a Redis node's `INFO memory` and `INFO stats` replies (`field:value` lines).
    pub(crate) fn from_info(node: &str, info: &str) -> NodeMemory {
        let field = |name: &str| {
            info.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim).unwrap_or("")
        };
        NodeMemory {
            node: node.to_string(),
            used_bytes: field("used_memory").parse().unwrap_or(0),
            max_bytes: field("maxmemory").parse().unwrap_or(0),
            policy: field("maxmemory_policy").to_string(),
            evicted_keys: field("evicted_keys").parse().unwrap_or(0),
        }
    }
}

/// A write that failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct BackendError {
    /// The backend, as its (redacted) URL.
    pub backend: String,
    /// What went wrong.
    pub message: String,
    /// Whether the same write may succeed if retried (connection trouble, timeouts).
    pub retryable: bool,
}

/// A cache that warmed values are written to.
pub trait Backend: Send + Sync {
    /// The backend's URL with any password removed, for logs and reports.
    fn describe(&self) -> String;

    /// Why `key` cannot be written here, checked before anything is loaded for it: the
    /// rules of every backend ([`validate_key`]) and the backend's own limits.
    fn check_key(&self, key: &str) -> Result<(), &'static str> {
        validate_key(key)
    }

    /// Writes a batch: one outcome per entry, in order. A backend that fails as a whole fails
    /// every entry alike; a cluster may fail only the entries of a node that is down.
    fn write_batch(
        &self,
        entries: &[Entry],
        mode: WriteMode,
    ) -> impl Future<Output = Vec<Result<Written, BackendError>>> + Send;

    /// Takes back values this warm wrote: deletes each entry's key only while it still holds
    /// the entry's value (for a `DUMP` payload: while its `DUMP` is the same), so a value
    /// written since by anyone else stays. One result per entry: whether it was deleted.
    fn take_back(&self, entries: &[&Entry]) -> impl Future<Output = Vec<Result<bool, BackendError>>> + Send;

    /// Reaches the backend once without writing (`PING`; every master of a cluster).
    fn ping(&self) -> impl Future<Output = Result<(), BackendError>> + Send;

    /// Each node's memory, read without writing (Redis `INFO memory` and `INFO stats`; every
    /// master of a cluster).
    fn memory(&self) -> impl Future<Output = Result<Vec<NodeMemory>, BackendError>> + Send;

    /// Takes the run lock `key` for `ttl` if nobody holds it (Redis `SET key token NX PX`);
    /// `false` when another run holds it. The TTL frees the lock of a run that died.
    fn try_lock(
        &self,
        key: &str,
        token: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<bool, BackendError>> + Send;

    /// Releases the lock `key` if it still holds `token` (it may have expired and been taken
    /// by another run, whose lock stays).
    fn unlock(&self, key: &str, token: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
}

/// Longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Why a key is refused.
pub fn validate_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return Err("longer than 1024 bytes");
    }
    if key.chars().any(char::is_whitespace) {
        return Err("contains white space");
    }
    if key.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("product:42").is_ok());
        assert_eq!(validate_key(""), Err("empty"));
        assert_eq!(validate_key("a b"), Err("contains white space"));
        assert_eq!(validate_key("a\u{7}b"), Err("contains a control character"));
        assert_eq!(validate_key(&"k".repeat(1025)), Err("longer than 1024 bytes"));
    }
}
