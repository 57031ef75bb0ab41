//! Peer Redis sources: copy hot keys from a Redis that is already warm (the old cluster, a
//! replica).
//!
//! Each key is read with `DUMP` and `PTTL` in one pipeline per batch, and later restored on
//! the target with `RESTORE`, so the value (of any Redis type) and its remaining lifetime
//! carry over exactly. Nothing on the peer is changed.

use std::time::Duration;

use redis::Value;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use super::{Fetched, SourceError};
use crate::failure::FailureReason;
use crate::secret::{redact_url, scrub};

/// A Redis server to copy from.
pub struct PeerRedisSource {
    name: String,
    url: String,
    client: redis::Client,
    timeout: Duration,
    connection: OnceCell<ConnectionManager>,
}

impl PeerRedisSource {
    /// A source for `redis://...` or `rediss://...` (system roots); connects on first use.
    pub fn new(name: &str, url: &str, timeout: Duration) -> Result<Self, SourceError> {
        let redacted = redact_url(url);
        let client = redis::Client::open(url).map_err(|e| {
            SourceError::fatal(
                name,
                format!("`{redacted}` is not a usable Redis URL: {}", scrub(&e.to_string(), url)),
            )
        })?;
        Ok(PeerRedisSource {
            name: name.to_string(),
            url: url.to_string(),
            client,
            timeout,
            connection: OnceCell::new(),
        })
    }

    fn error(&self, e: &redis::RedisError) -> SourceError {
        let retryable =
            e.is_io_error() || e.is_timeout() || e.is_connection_dropped() || e.is_connection_refusal();
        SourceError {
            source_name: self.name.clone(),
            message: scrub(&e.to_string(), &self.url),
            retryable,
            reason: if e.is_timeout() { FailureReason::SourceTimeout } else { FailureReason::SourceError },
        }
    }

    /// Connects and sends `PING`.
    pub async fn ping(&self) -> Result<(), SourceError> {
        let mut conn = self.connect().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await.map(|_| ()).map_err(|e| self.error(&e))
    }

    async fn connect(&self) -> Result<ConnectionManager, SourceError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(1);
        self.connection
            .get_or_try_init(|| async { self.client.get_connection_manager_with_config(config).await })
            .await
            .cloned()
            .map_err(|e| self.error(&e))
    }

    /// `DUMP` and `PTTL` of every key: a payload with the remaining TTL, or `Missing`.
    pub async fn fetch(&self, keys: &[&str]) -> Result<Vec<Fetched>, SourceError> {
        let mut conn = self.connect().await?;
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.cmd("DUMP").arg(*key).cmd("PTTL").arg(*key);
        }
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(|e| self.error(&e))?;
        let mut out = Vec::with_capacity(keys.len());
        let mut replies = replies.into_iter();
        while let (Some(dump), Some(pttl)) = (replies.next(), replies.next()) {
            out.push(match (dump, pttl) {
                (Value::BulkString(payload), Value::Int(ms)) if ms > 0 => {
                    Fetched::Dump { payload, ttl: Some(Duration::from_millis(ms as u64)) }
                }
                (Value::BulkString(payload), Value::Int(-1)) => Fetched::Dump { payload, ttl: None },
                // Absent, expired between the two commands, or expiring this millisecond
                // (`RESTORE` with TTL 0 would make it immortal).
                _ => Fetched::Missing,
            });
        }
        Ok(out)
    }
}
