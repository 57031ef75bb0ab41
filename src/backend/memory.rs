//! The in-process backend: a moka cache with a per-entry TTL and a size bound in bytes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use super::{Backend, BackendError, Entry, NodeMemory, WriteMode, Written};

/// A stored value and the expiry rule of its last write.
#[derive(Debug, Clone)]
struct Stored {
    value: Arc<[u8]>,
    ttl: Option<Duration>,
    keep_ttl: bool,
    /// When it expires (moka keeps its own timer; this copy answers `remaining_ttl`).
    expires_at: Option<Instant>,
}

impl Stored {
    fn new(value: Arc<[u8]>, ttl: Option<Duration>) -> Self {
        Stored { value, ttl, keep_ttl: false, expires_at: ttl.map(|t| Instant::now() + t) }
    }
}

/// Per-entry expiry: a new entry lives for its TTL; a replaced one keeps its remaining time
/// when the write asked for that.
struct PerEntryTtl;

impl Expiry<String, Stored> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, value: &Stored, _: Instant) -> Option<Duration> {
        value.ttl
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Stored,
        _: Instant,
        remaining: Option<Duration>,
    ) -> Option<Duration> {
        if value.keep_ttl { remaining } else { value.ttl }
    }
}

/// An in-process cache (moka) that a service can warm at start-up and then serve from.
#[derive(Clone)]
pub struct MemoryBackend {
    cache: Cache<String, Stored>,
    /// Run locks: key to (token, expiry). Kept apart from the cache so they never count as
    /// cached entries nor get evicted.
    locks: Arc<Mutex<HashMap<String, (String, Instant)>>>,
    /// The size bound in bytes.
    max_bytes: u64,
    /// Entries evicted for room (not expired, replaced or removed).
    evicted: Arc<AtomicU64>,
}

impl MemoryBackend {
    /// A cache holding at most `max_bytes` of keys and values (least recently used go first).
    pub fn new(max_bytes: u64) -> Self {
        let evicted = Arc::new(AtomicU64::new(0));
        let counter = evicted.clone();
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, v: &Stored| u32::try_from(k.len() + v.value.len()).unwrap_or(u32::MAX))
            .expire_after(PerEntryTtl)
            .eviction_listener(move |_, _, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            })
            .build();
        MemoryBackend { cache, locks: Arc::default(), max_bytes, evicted }
    }

    /// The value under `key`, if present and not expired.
    pub async fn get(&self, key: &str) -> Option<Arc<[u8]>> {
        self.cache.get(key).await.map(|s| s.value)
    }

    /// Stores a value as the application would (for tests and for services sharing the cache).
    pub async fn insert(&self, key: &str, value: &[u8], ttl: Option<Duration>) {
        self.cache.insert(key.to_string(), Stored::new(value.into(), ttl)).await;
    }

    /// Time left before `key` expires (`None`: absent or no expiry).
    pub async fn remaining_ttl(&self, key: &str) -> Option<Duration> {
        let stored = self.cache.get(key).await?;
        stored.expires_at.map(|at| at.saturating_duration_since(Instant::now()))
    }

    /// Entries and weighted size (bytes) after pending maintenance has run.
    pub async fn stats(&self) -> (u64, u64) {
        self.cache.run_pending_tasks().await;
        (self.cache.entry_count(), self.cache.weighted_size())
    }

    /// Writes one entry as `mode` says.
    async fn write_one(&self, e: &Entry, mode: WriteMode) -> Result<Written, BackendError> {
        if e.dump {
            return Err(BackendError {
                backend: "memory://".to_string(),
                message: "a peer-Redis copy (a `DUMP` payload) can only be restored into Redis: \
                          warm a `redis://` backend, or load these keys from another source"
                    .into(),
                retryable: false,
            });
        }
        let mut stored = Stored::new(e.value.as_slice().into(), e.ttl);
        Ok(match mode {
            WriteMode::IfAbsent => {
                let entry = self.cache.entry(e.key.clone()).or_insert_with(async { stored }).await;
                if entry.is_fresh() { Written::Created } else { Written::Existed }
            }
            WriteMode::OverwriteKeepTtl | WriteMode::Overwrite => {
                let existing = self.cache.get(&e.key).await;
                if let (Some(old), WriteMode::OverwriteKeepTtl) = (&existing, mode) {
                    stored.keep_ttl = true;
                    stored.expires_at = old.expires_at;
                }
                self.cache.insert(e.key.clone(), stored).await;
                if existing.is_some() { Written::Replaced } else { Written::Created }
            }
        })
    }
}

impl Backend for MemoryBackend {
    fn describe(&self) -> String {
        "memory://".to_string()
    }

    async fn write_batch(&self, entries: &[Entry], mode: WriteMode) -> Vec<Result<Written, BackendError>> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            out.push(self.write_one(e, mode).await);
        }
        out
    }

    async fn ping(&self) -> Result<(), BackendError> {
        Ok(())
    }

    async fn memory(&self) -> Result<Vec<NodeMemory>, BackendError> {
        self.cache.run_pending_tasks().await;
        Ok(vec![NodeMemory {
            node: "memory://".to_string(),
            used_bytes: self.cache.weighted_size(),
            // Unbounded (a library caller's `u64::MAX`) is no limit, as Redis's `maxmemory 0`.
            max_bytes: if self.max_bytes == u64::MAX { 0 } else { self.max_bytes },
            policy: "tinylfu".to_string(),
            evicted_keys: self.evicted.load(Ordering::Relaxed),
        }])
    }

    async fn take_back(&self, entries: &[&Entry]) -> Vec<Result<bool, BackendError>> {
        let mut out = Vec::with_capacity(entries.len());
        for e in entries {
            // Compare and remove under the entry's lock, so a concurrent insert is never lost.
            let removed = self
                .cache
                .entry(e.key.clone())
                .and_compute_with(|current| {
                    let ours = current.as_ref().is_some_and(|c| *c.value().value == *e.value);
                    std::future::ready(if ours {
                        moka::ops::compute::Op::Remove
                    } else {
                        moka::ops::compute::Op::Nop
                    })
                })
                .await;
            out.push(Ok(matches!(removed, moka::ops::compute::CompResult::Removed(_))));
        }
        out
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, BackendError> {
        let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match locks.get(key) {
            Some((_, expires)) if *expires > now => Ok(false),
            _ => {
                locks.insert(key.to_string(), (token.to_string(), now + ttl));
                Ok(true)
            }
        }
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), BackendError> {
        let mut locks = self.locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if locks.get(key).is_some_and(|(held, _)| held == token) {
            locks.remove(key);
        }
        Ok(())
    }
}
