//! The Redis backend (standalone server), plain or TLS (`rediss://`), with ACL users and
//! passwords. Over plain TCP the `SET` pipelines of a warm are written by [`super::resp`] on
//! connections of their own, one batch at a time each; everything else (and everything over
//! TLS) goes over one multiplexed, reconnecting connection of the general client.
//!
//! If-absent writes are `SET key value NX PX ttl`, so an existing key keeps its value and TTL.
//! Overwrites first try `SET ... XX KEEPTTL` (or `XX PX ttl` when the TTL is to be reset) and
//! create the keys that turned out absent with `SET ... NX PX ttl`. Peer-Redis copies
//! (`DUMP` payloads) are restored by a small script that checks and restores in one step, so
//! an existing key is never replaced unless told to. Nothing is ever deleted but the run's own
//! lock key, and that only while it still holds the run's token.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RetryMethod, Value};
use tokio::sync::OnceCell;

use super::resp::{Failure, SetPipeline};
use super::{Backend, BackendError, Entry, NodeMemory, WriteMode, Written, all_alike};
use crate::secret::{redact_url, scrub};

/// Restores one `DUMP` payload: KEYS[1] the key; ARGV the TTL in ms (0: none), the payload
/// and the mode (`nx` leaves an existing key, `keep` replaces it keeping its remaining TTL,
/// `reset` replaces it with the payload's TTL). Returns 1 created, 0 left alone, 2 replaced.
pub(super) const RESTORE_SCRIPT: &str = r"
local left = redis.call('PTTL', KEYS[1])
if left == -2 then
  redis.call('RESTORE', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
if ARGV[3] == 'nx' then return 0 end
local ttl = ARGV[1]
if ARGV[3] == 'keep' then
  if left == -1 then ttl = 0 else ttl = left end
end
redis.call('RESTORE', KEYS[1], ttl, ARGV[2], 'REPLACE')
return 2
";

/// Deletes the run lock KEYS[1] only while it holds this run's token ARGV[1].
pub(super) const UNLOCK_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Turns a client error into a backend error: passwords of `url` removed, retryable when a
/// retry can help, and a hint where it cannot (credentials, certificates).
pub(super) fn classify(e: &RedisError, url: &str, redacted: &str) -> BackendError {
    let mut message = scrub(&e.to_string(), url);
    if let Some(refused) = refused_command(&message) {
        return BackendError { backend: redacted.to_string(), message: refused, retryable: false };
    }
    if e.kind() == redis::ErrorKind::AuthenticationFailed || message.contains("WRONGPASS") {
        message.push_str(" (check the user name and password in the backend URL)");
        return BackendError { backend: redacted.to_string(), message, retryable: false };
    }
    if message.contains("failed to lookup address") {
        let message = format!("unknown host: the backend URL's host name does not resolve ({message})");
        return BackendError { backend: redacted.to_string(), message, retryable: false };
    }
    if message.contains("invalid peer certificate") {
        message.push_str(" (trust the CA that signed the server's certificate with [backend] ca_file)");
        return BackendError { backend: redacted.to_string(), message, retryable: false };
    }
    let retryable = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.retry_method(),
            RetryMethod::Reconnect | RetryMethod::WaitAndRetry | RetryMethod::RetryImmediately
        );
    BackendError { backend: redacted.to_string(), message, retryable }
}

/// A server's refusal of a command (renamed or disabled, as managed services do with some,
/// or not allowed to the user by an ACL), in words that name the command and what preheat
/// needs it for; `None` for any other error.
pub(super) fn refused_command(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    let quoted = |after: &str| {
        let at = lower.find(after)? + after.len();
        let name: String =
            lower[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '|').collect();
        (!name.is_empty()).then_some(name)
    };
    let command = quoted("unknown command '")
        .or_else(|| quoted("unknown command `"))
        .or_else(|| quoted("permissions to run the '"))?;
    let what = match command.split('|').next().unwrap_or_default() {
        "set" => {
            "every value is written with `SET key value NX|XX PX ms|KEEPTTL`, and the run lock taken with \
             `SET NX PX`: no warm can run without it"
        }
        "eval" | "evalsha" | "script" => {
            "the run lock is released, and values that changed during the warm are taken back, by \
             compare-and-delete scripts (`EVAL`); peer copies are restored by one (`EVALSHA`, `SCRIPT LOAD`). \
             Allow scripting; `warm.invalidations = \"off\"` does without the take-back"
        }
        "info" => {
            "`INFO memory` and `INFO stats` keep the warm within `warm.cache_headroom` of the cache's \
             memory; without them the warm runs unwatched"
        }
        "cluster" | "asking" => {
            "a `redis+cluster://` backend reads the slot map with `CLUSTER SLOTS` and follows slot moves \
             with `ASKING`; for a server that is not a cluster, use `redis://`"
        }
        "dump" | "pttl" | "restore" => {
            "a peer copy (a `redis` source) reads keys with `DUMP` and `PTTL` and writes them with \
             `RESTORE`, in a script"
        }
        "ping" => "`PING` checks that the server answers",
        _ => "see the README's list of the commands preheat sends",
    };
    Some(format!(
        "the server refuses `{}` (renamed, disabled or not granted to this user: {}): {what}",
        command.to_ascii_uppercase(),
        message.trim()
    ))
}

/// Deletes KEYS[1] only while it holds ARGV[1] (ARGV[2] = `dump`: while its `DUMP` is
/// ARGV[1]). Returns 1 when it deleted the key.
pub(super) const TAKE_BACK_SCRIPT: &str = r"
local current
if ARGV[2] == 'dump' then current = redis.call('DUMP', KEYS[1]) else current = redis.call('GET', KEYS[1]) end
if current == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A Redis server.
pub struct RedisBackend {
    url: String,
    redacted: String,
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    /// Writes `SET` pipelines itself over plain TCP (see [`super::resp`]); `None` over TLS.
    direct: Option<SetPipeline>,
}

impl RedisBackend {
    /// A backend for `redis://[user:password@]host:port[/db]`, or `rediss://...` for TLS
    /// with the system's trusted roots; connects on first use, so a Redis that is down now
    /// costs the writes, not the start.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        Self::build(url, redis::Client::open(url))
    }

    /// A `rediss://` backend whose server certificate is checked against the CA
    /// certificates in `ca_pem` (PEM) instead of the system's roots.
    pub fn with_root_ca(url: &str, ca_pem: &[u8]) -> Result<Self, BackendError> {
        let certificates = redis::TlsCertificates { client_tls: None, root_cert: Some(ca_pem.to_vec()) };
        Self::build(url, redis::Client::build_with_tls(url, certificates))
    }

    fn build(url: &str, client: Result<redis::Client, RedisError>) -> Result<Self, BackendError> {
        let redacted = redact_url(url);
        let client = client.map_err(|e| BackendError {
            backend: redacted.clone(),
            message: format!("not a usable Redis URL: {}", scrub(&e.to_string(), url)),
            retryable: false,
        })?;
        let direct = SetPipeline::for_server(client.get_connection_info());
        Ok(RedisBackend { url: url.to_string(), redacted, client, connection: OnceCell::new(), direct })
    }

    fn error(&self, e: &RedisError) -> BackendError {
        classify(e, &self.url, &self.redacted)
    }

    fn failure(&self, f: Failure) -> BackendError {
        let mut message = scrub(&f.message, &self.url);
        if let Some(refused) = refused_command(&message) {
            return BackendError { backend: self.redacted.clone(), message: refused, retryable: false };
        }
        if f.auth {
            message.push_str(" (check the user name and password in the backend URL)");
        }
        BackendError { backend: self.redacted.clone(), message, retryable: f.retryable }
    }

    async fn connection(&self) -> Result<ConnectionManager, BackendError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let connected = self
            .connection
            .get_or_try_init(|| async { self.client.get_connection_manager_with_config(config).await })
            .await
            .cloned();
        match connected {
            Ok(c) => Ok(c),
            Err(e) if e.is_timeout() => Err(self.timed_out_connecting(&e).await),
            Err(e) => Err(self.error(&e)),
        }
    }

    /// Says why connecting timed out. When the port takes a TCP connection at once but the
    /// client still got nothing, the two ends disagree about TLS (`rediss://` to a server
    /// without TLS waits forever for a handshake): a configuration error, not worth retrying.
    async fn timed_out_connecting(&self, e: &RedisError) -> BackendError {
        let mut err = self.error(e);
        let redis::ConnectionAddr::TcpTls { host, port, .. } = self.client.get_connection_info().addr()
        else {
            err.message.push_str(": no answer in time (a firewall dropping packets, or a server too busy)");
            return err;
        };
        let tcp = tokio::time::timeout(
            Duration::from_secs(1),
            tokio::net::TcpStream::connect((host.as_str(), *port)),
        )
        .await;
        if matches!(tcp, Ok(Ok(_))) {
            err.message = format!(
                "{host}:{port} accepts connections but did not answer the TLS handshake: is it a port without \
                 TLS? Use redis:// for a server without TLS, rediss:// only where it has TLS"
            );
            err.retryable = false;
        } else {
            err.message.push_str(": no answer in time (a firewall dropping packets, or a server too busy)");
        }
        err
    }

    /// Runs any command on the backend's connection (for checks such as `INFO stats`), with
    /// the backend's error handling: passwords never appear in errors.
    pub async fn command<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, BackendError> {
        let mut conn = self.connection().await?;
        cmd.query_async(&mut conn).await.map_err(|e| self.error(&e))
    }

    /// Runs a pipeline of commands on the backend's connection, its replies as `T`.
    async fn pipeline_as<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, BackendError> {
        let mut conn = self.connection().await?;
        pipe.query_async(&mut conn).await.map_err(|e| self.error(&e))
    }

    /// Runs a pipeline of commands on the backend's connection; one reply per command.
    pub async fn pipeline(&self, pipe: &redis::Pipeline) -> Result<Vec<Value>, BackendError> {
        let mut conn = self.connection().await?;
        pipe.query_async(&mut conn).await.map_err(|e| self.error(&e))
    }

    /// Runs one `SET` per entry with the given flags; `true` where Redis answered `OK`.
    async fn set_each(
        &self,
        entries: &[&Entry],
        exists: &str,
        keep_ttl: bool,
    ) -> Result<Vec<bool>, BackendError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(direct) = &self.direct {
            return direct.set_each(entries, exists, keep_ttl).await.map_err(|f| self.failure(f));
        }
        let mut pipe = redis::Pipeline::with_capacity(entries.len());
        for e in entries {
            // Sized up front: grown argument by argument, each value was copied about three
            // times more (measured: a tenth of the warm's CPU went to growing these buffers).
            let mut cmd = redis::Cmd::with_capacity(6, e.key.len() + e.value.len() + 32);
            cmd.arg("SET").arg(&e.key).arg(&e.value).arg(exists);
            match (keep_ttl, e.ttl) {
                (true, _) => {
                    cmd.arg("KEEPTTL");
                }
                (false, Some(ttl)) => {
                    cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
                }
                (false, None) => {}
            }
            pipe.add_command(cmd);
        }
        let mut conn = self.connection().await?;
        let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(|e| self.error(&e))?;
        Ok(replies
            .into_iter()
            .map(|v| matches!(v, Value::Okay) || matches!(&v, Value::SimpleString(s) if s == "OK"))
            .collect())
    }

    /// Writes a batch in one or two pipelines; any error fails the whole batch.
    async fn write_all(&self, entries: &[Entry], mode: WriteMode) -> Result<Vec<Written>, BackendError> {
        if !entries.iter().any(|e| e.dump) {
            return self.write_values(&entries.iter().collect::<Vec<_>>(), mode).await;
        }
        // A batch holds one rule's keys, so it is all payloads or all values; a mixed batch
        // from a library caller is split and its outcomes put back in order.
        let (dumps, values): (Vec<usize>, Vec<usize>) = (0..entries.len()).partition(|&i| entries[i].dump);
        let pick = |indices: &[usize]| indices.iter().map(|&i| &entries[i]).collect::<Vec<_>>();
        let restored = self.restore_each(&pick(&dumps), mode).await?;
        let written = self.write_values(&pick(&values), mode).await?;
        let mut out = vec![Written::Existed; entries.len()];
        for (i, w) in dumps.iter().zip(restored).chain(values.iter().zip(written)) {
            out[*i] = w;
        }
        Ok(out)
    }

    /// Writes plain values with `SET`, as `mode` says.
    async fn write_values(&self, all: &[&Entry], mode: WriteMode) -> Result<Vec<Written>, BackendError> {
        if mode == WriteMode::IfAbsent {
            let created = self.set_each(all, "NX", false).await?;
            return Ok(created
                .into_iter()
                .map(|c| if c { Written::Created } else { Written::Existed })
                .collect());
        }
        let replaced = self.set_each(all, "XX", mode == WriteMode::OverwriteKeepTtl).await?;
        let absent: Vec<&Entry> = all.iter().zip(&replaced).filter(|(_, r)| !**r).map(|(e, _)| *e).collect();
        let mut created = self.set_each(&absent, "NX", false).await?.into_iter();
        Ok(replaced
            .into_iter()
            .map(|r| match r {
                true => Written::Replaced,
                // Created now, or by someone else between the two pipelines: left alone.
                false if created.next() == Some(true) => Written::Created,
                false => Written::Existed,
            })
            .collect())
    }

    /// Restores `DUMP` payloads with [`RESTORE_SCRIPT`], loading the script first if the server
    /// does not have it (a new or restarted server).
    async fn restore_each(&self, entries: &[&Entry], mode: WriteMode) -> Result<Vec<Written>, BackendError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let script = redis::Script::new(RESTORE_SCRIPT);
        let flag = match mode {
            WriteMode::IfAbsent => "nx",
            WriteMode::OverwriteKeepTtl => "keep",
            WriteMode::Overwrite => "reset",
        };
        let mut pipe = redis::pipe();
        for e in entries {
            let ttl = e.ttl.map_or(0, |t| t.as_millis().max(1) as u64);
            pipe.cmd("EVALSHA").arg(script.get_hash()).arg(1).arg(&e.key).arg(ttl).arg(&e.value).arg(flag);
        }
        let mut conn = self.connection().await?;
        let replies: Vec<i64> = match pipe.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let _: String = redis::cmd("SCRIPT")
                    .arg("LOAD")
                    .arg(RESTORE_SCRIPT)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| self.error(&e))?;
                pipe.query_async(&mut conn).await
            }
            other => other,
        }
        .map_err(|e| self.error(&e))?;
        Ok(replies
            .into_iter()
            .map(|r| match r {
                1 => Written::Created,
                2 => Written::Replaced,
                _ => Written::Existed,
            })
            .collect())
    }
}

impl Backend for RedisBackend {
    fn describe(&self) -> String {
        self.redacted.clone()
    }

    async fn write_batch(&self, entries: &[Entry], mode: WriteMode) -> Vec<Result<Written, BackendError>> {
        all_alike(entries.len(), self.write_all(entries, mode).await)
    }

    async fn take_back(&self, entries: &[&Entry]) -> Vec<Result<bool, BackendError>> {
        if entries.is_empty() {
            return Vec::new();
        }
        let mut pipe = redis::pipe();
        for e in entries {
            pipe.cmd("EVAL").arg(TAKE_BACK_SCRIPT).arg(1).arg(&e.key).arg(&e.value).arg(if e.dump {
                "dump"
            } else {
                "value"
            });
        }
        match self.pipeline(&pipe).await {
            Ok(replies) => replies.into_iter().map(|v| Ok(matches!(v, Value::Int(1)))).collect(),
            Err(e) => vec![Err(e); entries.len()],
        }
    }

    async fn ping(&self) -> Result<(), BackendError> {
        self.command::<String>(&redis::cmd("PING")).await.map(|_| ())
    }

    async fn memory(&self) -> Result<Vec<NodeMemory>, BackendError> {
        let mut pipe = redis::pipe();
        pipe.cmd("INFO").arg("memory").cmd("INFO").arg("stats");
        let replies: Vec<String> = self.pipeline_as(&pipe).await?;
        let node = self.client.get_connection_info().addr().to_string();
        Ok(vec![NodeMemory::from_info(&node, &replies.join("\n"))])
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, BackendError> {
        let mut conn = self.connection().await?;
        let reply: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1) as u64)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(reply.is_some())
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), BackendError> {
        let mut conn = self.connection().await?;
        let _: i64 = redis::cmd("EVAL")
            .arg(UNLOCK_SCRIPT)
            .arg(1)
            .arg(key)
            .arg(token)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.error(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_command_is_named_with_what_it_is_for() {
        let renamed = "An error was signalled by the server - ResponseError: unknown command 'EVAL', with args \
                       beginning with: 'if' ";
        let said = refused_command(renamed).expect("a refusal");
        assert!(said.starts_with("the server refuses `EVAL`") && said.contains("invalidations"), "{said}");
        let acl = "NOPERM User warm has no permissions to run the 'info' command";
        assert!(refused_command(acl).expect("a refusal").contains("cache_headroom"));
        let sub = "NOPERM User warm has no permissions to run the 'cluster|slots' command";
        assert!(refused_command(sub).expect("a refusal").contains("`CLUSTER|SLOTS`"));
        assert_eq!(refused_command("LOADING Redis is loading the dataset in memory"), None);
    }
}
