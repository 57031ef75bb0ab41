//! From settings to a backend: the one place that knows which URL scheme is which kind, so
//! the CLI and library users open a cache the same way and a new kind is added here.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{
    Backend, BackendError, Entry, MemcachedBackend, MemoryBackend, NodeMemory, RedisBackend,
    RedisClusterBackend,
};
use super::{WriteMode, Written};
use crate::memory::MemoryLimit;
use crate::secret::{redact_url, resolve_secret};

/// The URL schemes a backend may have, for messages and checks.
pub const SCHEMES: &str =
    "`redis://`, `rediss://`, `redis+cluster://`, `rediss+cluster://`, `memcached://` or `memory://`";

/// Where the cache is (`[backend]`, `--backend`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackendSettings {
    /// URL as configured: `redis://...`, `memory://`, or `env:`/`file:` holding one. Never
    /// shown as is (it may hold a password).
    #[serde(skip)]
    pub url: String,
    /// CA certificates (PEM file) that a `rediss://` backend's certificate must chain to,
    /// instead of the system's roots.
    pub ca_file: Option<PathBuf>,
}

impl Default for BackendSettings {
    fn default() -> Self {
        BackendSettings { url: "memory://".into(), ca_file: None }
    }
}

/// Whether `url` (as configured: `env:` and `file:` are resolved later) names a backend kind.
pub fn known_scheme(url: &str) -> bool {
    ["memory:", "redis:", "rediss:", "redis+cluster:", "rediss+cluster:", "memcached:", "env:", "file:"]
        .iter()
        .any(|scheme| url.starts_with(scheme))
}

/// Why a backend cannot be set up (nothing has connected yet).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The URL is of no kind preheat writes to.
    #[error("backend `{0}` is not {SCHEMES}")]
    UnknownScheme(String),
    /// `env:NAME` or `file:PATH` could not be resolved.
    #[error("backend.url: {0}")]
    Secret(String),
    /// `backend.ca_file` could not be read.
    #[error("backend.ca_file: reading `{path}`: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The client refused the URL.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// A backend of any kind.
pub enum AnyBackend {
    /// `memory://`
    Memory(Arc<MemoryBackend>),
    /// `redis://`, `rediss://`
    Redis(Arc<RedisBackend>),
    /// `redis+cluster://`, `rediss+cluster://`
    Cluster(Arc<RedisClusterBackend>),
    /// `memcached://`
    Memcached(Arc<MemcachedBackend>),
}

/// Sets up the backend `settings` names; nothing connects yet. An in-process cache gets
/// `max_memory` of the available memory, the run's own budget, since it lives in the process.
pub fn open(settings: &BackendSettings, max_memory: MemoryLimit) -> Result<AnyBackend, OpenError> {
    let url = resolve_secret(&settings.url).map_err(OpenError::Secret)?;
    if url.starts_with("memory:") {
        let capacity = crate::memory::available().map_or(u64::MAX, |a| max_memory.bytes(a.bytes));
        return Ok(AnyBackend::Memory(Arc::new(MemoryBackend::new(capacity))));
    }
    if url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://") {
        return Ok(AnyBackend::Cluster(Arc::new(RedisClusterBackend::new(&url)?)));
    }
    if url.starts_with("redis://") || url.starts_with("rediss://") {
        return Ok(AnyBackend::Redis(Arc::new(open_redis(&url, settings.ca_file.as_ref())?)));
    }
    if url.starts_with("memcached://") {
        return Ok(AnyBackend::Memcached(Arc::new(MemcachedBackend::new(&url)?)));
    }
    Err(OpenError::UnknownScheme(redact_url(&url)))
}

/// A single Redis server at `url` (resolved), trusting `ca_file` for `rediss://` if given.
pub fn open_redis(url: &str, ca_file: Option<&PathBuf>) -> Result<RedisBackend, OpenError> {
    match ca_file {
        Some(path) if url.starts_with("rediss://") => {
            let pem =
                std::fs::read(path).map_err(|source| OpenError::CaFile { path: path.clone(), source })?;
            Ok(RedisBackend::with_root_ca(url, &pem)?)
        }
        _ => Ok(RedisBackend::new(url)?),
    }
}

impl Backend for AnyBackend {
    fn check_key(&self, key: &str) -> Result<(), &'static str> {
        match self {
            AnyBackend::Memory(b) => b.check_key(key),
            AnyBackend::Redis(b) => b.check_key(key),
            AnyBackend::Cluster(b) => b.check_key(key),
            AnyBackend::Memcached(b) => b.check_key(key),
        }
    }

    fn describe(&self) -> String {
        match self {
            AnyBackend::Memory(b) => b.describe(),
            AnyBackend::Redis(b) => b.describe(),
            AnyBackend::Cluster(b) => b.describe(),
            AnyBackend::Memcached(b) => b.describe(),
        }
    }

    async fn write_batch(&self, entries: &[Entry], mode: WriteMode) -> Vec<Result<Written, BackendError>> {
        match self {
            AnyBackend::Memory(b) => b.write_batch(entries, mode).await,
            AnyBackend::Redis(b) => b.write_batch(entries, mode).await,
            AnyBackend::Cluster(b) => b.write_batch(entries, mode).await,
            AnyBackend::Memcached(b) => b.write_batch(entries, mode).await,
        }
    }

    async fn take_back(&self, entries: &[&Entry]) -> Vec<Result<bool, BackendError>> {
        match self {
            AnyBackend::Memory(b) => b.take_back(entries).await,
            AnyBackend::Redis(b) => b.take_back(entries).await,
            AnyBackend::Cluster(b) => b.take_back(entries).await,
            AnyBackend::Memcached(b) => b.take_back(entries).await,
        }
    }

    async fn ping(&self) -> Result<(), BackendError> {
        match self {
            AnyBackend::Memory(b) => b.ping().await,
            AnyBackend::Redis(b) => b.ping().await,
            AnyBackend::Cluster(b) => b.ping().await,
            AnyBackend::Memcached(b) => b.ping().await,
        }
    }

    async fn memory(&self) -> Result<Vec<NodeMemory>, BackendError> {
        match self {
            AnyBackend::Memory(b) => b.memory().await,
            AnyBackend::Redis(b) => b.memory().await,
            AnyBackend::Cluster(b) => b.memory().await,
            AnyBackend::Memcached(b) => b.memory().await,
        }
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, BackendError> {
        match self {
            AnyBackend::Memory(b) => b.try_lock(key, token, ttl).await,
            AnyBackend::Redis(b) => b.try_lock(key, token, ttl).await,
            AnyBackend::Cluster(b) => b.try_lock(key, token, ttl).await,
            AnyBackend::Memcached(b) => b.try_lock(key, token, ttl).await,
        }
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), BackendError> {
        match self {
            AnyBackend::Memory(b) => b.unlock(key, token).await,
            AnyBackend::Redis(b) => b.unlock(key, token).await,
            AnyBackend::Cluster(b) => b.unlock(key, token).await,
            AnyBackend::Memcached(b) => b.unlock(key, token).await,
        }
    }
}
