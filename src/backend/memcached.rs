//! memcached servers, written with the meta commands of memcached 1.6 over its text protocol.
//!
//! A key lives on the server the ketama continuum names ([`super::ketama`]), as the
//! application's client places it. Each server gets one connection and one pipeline per batch:
//! - "if absent" writes are `ms <key> <size> T<ttl> ME` (add, the model of mcrouter's warm-up
//!   route): stored (`HD`) or left alone (`NS`);
//! - overwrites read first (`mg <key> t`), then `ms ... MS`, with the key's remaining TTL when
//!   it is kept;
//! - a take-back reads the value and its CAS (`mg <key> c v`) and deletes only with that CAS
//!   (`md <key> C<cas>`), so a value written since stays;
//! - the run lock is an add with a TTL, released by the same compare-and-delete.
//!
//! No command is sent with `q` (noreply): every outcome counts in the report. TTLs longer than
//! 30 days are sent as absolute Unix times, as memcached reads them. Keys longer than 250
//! bytes, and values larger than the server's item size (`stats settings` `item_size_max`,
//! `memcached -I`), are refused before they are sent. A server that is down fails its own
//! keys; the others are written. Peer copies (Redis `DUMP` payloads) cannot be restored here.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::future::join_all;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::ketama::Continuum;
use super::{Backend, BackendError, Entry, NodeMemory, WriteMode, Written, validate_key};

/// Longest key memcached takes, in bytes.
pub const MAX_KEY_BYTES: usize = 250;
/// memcached's default port.
const DEFAULT_PORT: u16 = 11211;
/// TTLs up to this many seconds are relative; longer ones must be absolute Unix times.
const LONGEST_RELATIVE_TTL: u64 = 30 * 24 * 3600;
/// Room an item takes besides its key and value (memcached's item header), for the size check.
const ITEM_OVERHEAD: usize = 64;
/// How long connecting, and each exchange, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);

/// One server and its connection.
struct Server {
    /// `host:port`, as the URL names it (and as the continuum hashes it).
    addr: String,
    conn: Mutex<Option<BufStream<TcpStream>>>,
    /// The server's largest item in bytes, read when a connection opens (0 before).
    item_size_max: AtomicUsize,
}

/// A reply to one meta command: its code (`HD`, `NS`, `EN`, `VA`, ...), its flags and, for
/// `VA`, the value.
#[derive(Debug)]
struct Reply {
    code: String,
    flags: String,
    value: Option<Vec<u8>>,
}

impl Reply {
    /// A flag's token: `flag('t')` of `HD t30` is `30`.
    fn flag(&self, name: char) -> Option<&str> {
        self.flags.split(' ').find_map(|f| f.strip_prefix(name))
    }
}

/// A memcached cluster (one or more servers).
pub struct MemcachedBackend {
    described: String,
    servers: Vec<Server>,
    continuum: Continuum,
}

impl MemcachedBackend {
    /// A backend for `memcached://host:port[,host:port...]` (port 11211 when left out);
    /// connects on first use.
    pub fn new(url: &str) -> Result<Self, BackendError> {
        let bad = |message: String| BackendError { backend: url.to_string(), message, retryable: false };
        let list = url.strip_prefix("memcached://").ok_or_else(|| bad("not a `memcached://` URL".into()))?;
        let list = list.trim_end_matches('/');
        let mut addrs = Vec::new();
        for server in list.split(',').map(str::trim) {
            let (host, port) = match server.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                    let port = port
                        .parse::<u16>()
                        .map_err(|_| bad(format!("`{server}`: the port is not a number")))?;
                    (host, port)
                }
                _ => (server, DEFAULT_PORT),
            };
            if host.is_empty() || host.contains('@') || host.contains('/') {
                return Err(bad(format!(
                    "`{server}` is not `host:port` (memcached takes no user or path: memcached://host:port,host:port)"
                )));
            }
            addrs.push(format!("{host}:{port}"));
        }
        let continuum = Continuum::new(&addrs);
        let servers = addrs
            .iter()
            .map(|addr| Server {
                addr: addr.clone(),
                conn: Mutex::new(None),
                item_size_max: AtomicUsize::new(0),
            })
            .collect();
        Ok(MemcachedBackend { described: format!("memcached://{}", addrs.join(",")), servers, continuum })
    }

    fn error(&self, server: &Server, message: impl Into<String>, retryable: bool) -> BackendError {
        BackendError {
            backend: self.described.clone(),
            message: format!("{}: {}", server.addr, message.into()),
            retryable,
        }
    }

    /// Sends `requests` to `server` in one pipeline and reads one reply per request.
    async fn exchange(
        &self,
        server: &Server,
        requests: &[u8],
        count: usize,
    ) -> Result<Vec<Reply>, BackendError> {
        let mut slot = server.conn.lock().await;
        if slot.is_none() {
            *slot = Some(self.connect(server).await?);
        }
        let conn = slot.as_mut().expect("connected above");
        let result = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
            conn.write_all(requests).await?;
            conn.flush().await?;
            let mut replies = Vec::with_capacity(count);
            for _ in 0..count {
                replies.push(read_reply(conn).await?);
            }
            Ok::<_, std::io::Error>(replies)
        })
        .await;
        match result {
            Ok(Ok(replies)) => Ok(replies),
            Ok(Err(e)) => {
                *slot = None; // the next exchange connects anew
                Err(self.error(server, format!("connection lost: {e}"), true))
            }
            Err(_) => {
                *slot = None;
                Err(self.error(
                    server,
                    format!("no answer within {}", humantime::format_duration(EXCHANGE_TIMEOUT)),
                    true,
                ))
            }
        }
    }

    /// Connects to `server` and reads its item size limit.
    async fn connect(&self, server: &Server) -> Result<BufStream<TcpStream>, BackendError> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&server.addr)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(self.error(
                    server,
                    "connection refused: is memcached running and listening there?",
                    true,
                ));
            }
            Ok(Err(e)) => return Err(self.error(server, format!("cannot connect: {e}"), true)),
            Err(_) => {
                return Err(self.error(
                    server,
                    "no answer to connecting (a firewall dropping packets?)",
                    true,
                ));
            }
        };
        let _ = stream.set_nodelay(true);
        let mut conn = BufStream::new(stream);
        let settings = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
            conn.write_all(b"stats settings\r\n").await?;
            conn.flush().await?;
            read_stats(&mut conn).await
        })
        .await;
        match settings {
            Ok(Ok(stats)) => {
                let max = stat(&stats, "item_size_max").unwrap_or(1 << 20);
                server.item_size_max.store(max as usize, Ordering::Relaxed);
                Ok(conn)
            }
            Ok(Err(e)) => Err(self.error(
                server,
                format!("not a memcached server, or it closed the connection: {e}"),
                true,
            )),
            Err(_) => Err(self.error(server, "no answer to `stats settings`", true)),
        }
    }

    /// Runs `run` for every server that holds some of `keys`, each with the indices of its
    /// keys, all servers at once; the outcomes come back in the order of `keys`.
    async fn per_server<'a, T, F, Fut>(&'a self, keys: &[&str], run: F) -> Vec<Result<T, BackendError>>
    where
        T: Clone,
        F: Fn(&'a Server, Vec<usize>) -> Fut,
        Fut: std::future::Future<Output = Result<Vec<T>, BackendError>> + 'a,
    {
        let mut groups: Vec<Vec<usize>> = vec![Vec::new(); self.servers.len()];
        for (i, key) in keys.iter().enumerate() {
            groups[self.continuum.server(key)].push(i);
        }
        let work =
            groups.into_iter().enumerate().filter(|(_, indices)| !indices.is_empty()).map(|(s, indices)| {
                let fut = run(&self.servers[s], indices.clone());
                async move { (indices, fut.await) }
            });
        let mut out: Vec<Option<Result<T, BackendError>>> = vec![None; keys.len()];
        for (indices, result) in join_all(work).await {
            match result {
                Ok(values) => {
                    for (i, v) in indices.into_iter().zip(values) {
                        out[i] = Some(Ok(v));
                    }
                }
                Err(e) => {
                    for i in indices {
                        out[i] = Some(Err(e.clone()));
                    }
                }
            }
        }
        out.into_iter().map(|o| o.unwrap_or_else(|| Err(self.lost()))).collect()
    }

    fn lost(&self) -> BackendError {
        BackendError {
            backend: self.described.clone(),
            message: "no reply for this key".into(),
            retryable: true,
        }
    }

    /// Writes `entries` (all on `server`) as `mode` says.
    async fn write_on(
        &self,
        server: &Server,
        entries: &[&Entry],
        mode: WriteMode,
    ) -> Result<Vec<Result<Written, BackendError>>, BackendError> {
        // A value the server cannot hold is refused before anything is sent.
        let limit = server.item_size_max.load(Ordering::Relaxed);
        let too_large = |e: &Entry| limit > 0 && e.key.len() + e.value.len() + ITEM_OVERHEAD > limit;
        // A key the protocol cannot carry is refused too: a space would break the framing.
        let refused = |e: &Entry| self.check_key(&e.key).is_err() || too_large(e);
        let sendable: Vec<&Entry> = entries.iter().copied().filter(|e| !refused(e)).collect();
        // Overwrites need each key's presence (and remaining TTL) first.
        let existing: Vec<Option<i64>> = if mode == WriteMode::IfAbsent || sendable.is_empty() {
            vec![None; sendable.len()]
        } else {
            let mut requests = Vec::new();
            for e in &sendable {
                requests.extend_from_slice(format!("mg {} t\r\n", e.key).as_bytes());
            }
            let replies = self.exchange(server, &requests, sendable.len()).await?;
            replies
                .iter()
                .map(|r| match r.code.as_str() {
                    "HD" => Ok(Some(r.flag('t').and_then(|t| t.parse().ok()).unwrap_or(-1))),
                    "EN" => Ok(None),
                    _ => Err(self.error(
                        server,
                        format!("unexpected reply to mg: {} {}", r.code, r.flags),
                        false,
                    )),
                })
                .collect::<Result<_, _>>()?
        };
        let mut requests =
            Vec::with_capacity(sendable.iter().map(|e| e.value.len() + e.key.len() + 32).sum());
        for (e, left) in sendable.iter().zip(&existing) {
            let (exptime, how) = match (mode, left) {
                (WriteMode::IfAbsent, _) => (exptime(e.ttl), "E"),
                // Kept: the remaining seconds, or none (-1: the key never expires).
                (WriteMode::OverwriteKeepTtl, Some(left)) => {
                    (exptime((*left >= 0).then(|| Duration::from_secs(*left as u64))), "S")
                }
                _ => (exptime(e.ttl), "S"),
            };
            requests.extend_from_slice(
                format!("ms {} {} T{exptime} M{how}\r\n", e.key, e.value.len()).as_bytes(),
            );
            requests.extend_from_slice(&e.value);
            requests.extend_from_slice(b"\r\n");
        }
        let replies = if sendable.is_empty() {
            Vec::new()
        } else {
            self.exchange(server, &requests, sendable.len()).await?
        };
        let mut replies = replies.into_iter().zip(existing);
        Ok(entries
            .iter()
            .map(|e| {
                if let Err(why) = self.check_key(&e.key) {
                    return Err(self.error(server, format!("{:?}: the key is {why}", e.key), false));
                }
                if too_large(e) {
                    return Err(self.error(
                        server,
                        format!(
                            "`{}`: a {}-byte value is larger than the server's item size ({limit} bytes; memcached -I)",
                            e.key,
                            e.value.len()
                        ),
                        false,
                    ));
                }
                let Some((reply, existed)) = replies.next() else { return Err(self.lost()) };
                match (reply.code.as_str(), existed) {
                    ("HD", None) => Ok(Written::Created),
                    ("HD", Some(_)) => Ok(Written::Replaced),
                    ("NS", _) => Ok(Written::Existed),
                    _ => Err(self.error(server, format!("`{}`: {} {}", e.key, reply.code, reply.flags), false)),
                }
            })
            .collect())
    }

    /// Deletes each of `entries` (all on `server`) only while it holds the entry's value.
    async fn take_back_on(
        &self,
        server: &Server,
        entries: &[(&str, &[u8])],
    ) -> Result<Vec<bool>, BackendError> {
        if let Some((key, _)) = entries.iter().find(|(key, _)| self.check_key(key).is_err()) {
            return Err(self.error(server, format!("{key:?} is not a memcached key"), false));
        }
        let mut requests = Vec::new();
        for (key, _) in entries {
            requests.extend_from_slice(format!("mg {key} c v\r\n").as_bytes());
        }
        let replies = self.exchange(server, &requests, entries.len()).await?;
        // The CAS of each key that still holds the value.
        let cas: Vec<Option<String>> = replies
            .iter()
            .zip(entries)
            .map(|(r, (_, value))| {
                (r.code == "VA" && r.value.as_deref() == Some(*value))
                    .then(|| r.flag('c').unwrap_or("0").to_string())
            })
            .collect();
        let mut requests = Vec::new();
        for ((key, _), cas) in entries.iter().zip(&cas) {
            if let Some(cas) = cas {
                requests.extend_from_slice(format!("md {key} C{cas}\r\n").as_bytes());
            }
        }
        let count = cas.iter().flatten().count();
        let mut deleted =
            if count == 0 { Vec::new() } else { self.exchange(server, &requests, count).await? }.into_iter();
        Ok(cas.iter().map(|c| c.is_some() && deleted.next().is_some_and(|r| r.code == "HD")).collect())
    }
}

/// An entry's TTL as memcached's exptime: 0 for none, seconds up to 30 days, else the
/// absolute Unix time.
fn exptime(ttl: Option<Duration>) -> u64 {
    let Some(ttl) = ttl else { return 0 };
    let secs = ttl.as_millis().div_ceil(1000).max(1) as u64;
    if secs <= LONGEST_RELATIVE_TTL {
        return secs;
    }
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |now| now.as_secs()) + secs
}

/// Reads one reply line, and the value of a `VA` reply.
async fn read_reply(conn: &mut BufStream<TcpStream>) -> std::io::Result<Reply> {
    let line = read_line(conn).await?;
    let (code, flags) = line.split_once(' ').unwrap_or((line.as_str(), ""));
    let (code, mut flags) = (code.to_string(), flags.to_string());
    let mut value = None;
    if code == "VA" {
        let (size, rest) = flags.split_once(' ').unwrap_or((flags.as_str(), ""));
        let size: usize =
            size.parse().map_err(|_| std::io::Error::other(format!("bad VA reply `{line}`")))?;
        let mut data = vec![0; size + 2];
        conn.read_exact(&mut data).await?;
        data.truncate(size);
        value = Some(data);
        flags = rest.to_string();
    }
    Ok(Reply { code, flags, value })
}

async fn read_line(conn: &mut BufStream<TcpStream>) -> std::io::Result<String> {
    let mut line = Vec::new();
    if conn.read_until(b'\n', &mut line).await? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the server closed the connection",
        ));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(String::from_utf8_lossy(&line).into_owned())
}

/// Reads `STAT name value` lines up to `END`.
async fn read_stats(conn: &mut BufStream<TcpStream>) -> std::io::Result<Vec<(String, String)>> {
    let mut stats = Vec::new();
    loop {
        let line = read_line(conn).await?;
        if line == "END" {
            return Ok(stats);
        }
        match line.strip_prefix("STAT ").and_then(|l| l.split_once(' ')) {
            Some((name, value)) => stats.push((name.to_string(), value.to_string())),
            None => return Err(std::io::Error::other(format!("unexpected reply `{line}` to stats"))),
        }
    }
}

fn stat(stats: &[(String, String)], name: &str) -> Option<u64> {
    stats.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.parse().ok())
}

impl Backend for MemcachedBackend {
    fn describe(&self) -> String {
        self.described.clone()
    }

    fn check_key(&self, key: &str) -> Result<(), &'static str> {
        validate_key(key)?;
        if key.len() > MAX_KEY_BYTES {
            return Err("longer than memcached's 250 bytes");
        }
        Ok(())
    }

    async fn write_batch(&self, entries: &[Entry], mode: WriteMode) -> Vec<Result<Written, BackendError>> {
        if entries.iter().any(|e| e.dump) {
            let e = BackendError {
                backend: self.described.clone(),
                message: "memcached cannot restore Redis `DUMP` payloads: a peer copy warms a Redis backend"
                    .into(),
                retryable: false,
            };
            return vec![Err(e); entries.len()];
        }
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        let nested = self
            .per_server(&keys, |server, indices| async move {
                let mine: Vec<&Entry> = indices.iter().map(|&i| &entries[i]).collect();
                self.write_on(server, &mine, mode).await
            })
            .await;
        nested.into_iter().map(|r| r.and_then(|inner| inner)).collect()
    }

    async fn take_back(&self, entries: &[&Entry]) -> Vec<Result<bool, BackendError>> {
        let keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        self.per_server(&keys, |server, indices| async move {
            let mine: Vec<(&str, &[u8])> =
                indices.iter().map(|&i| (entries[i].key.as_str(), entries[i].value.as_slice())).collect();
            self.take_back_on(server, &mine).await
        })
        .await
    }

    async fn ping(&self) -> Result<(), BackendError> {
        for server in &self.servers {
            let replies = self.exchange(server, b"version\r\n", 1).await?;
            if replies[0].code != "VERSION" {
                return Err(self.error(
                    server,
                    format!("not a memcached server: `{}`", replies[0].code),
                    false,
                ));
            }
        }
        Ok(())
    }

    async fn memory(&self) -> Result<Vec<NodeMemory>, BackendError> {
        let mut nodes = Vec::with_capacity(self.servers.len());
        for server in &self.servers {
            let mut slot = server.conn.lock().await;
            if slot.is_none() {
                *slot = Some(self.connect(server).await?);
            }
            let conn = slot.as_mut().expect("connected above");
            let stats = tokio::time::timeout(EXCHANGE_TIMEOUT, async {
                conn.write_all(b"stats\r\n").await?;
                conn.flush().await?;
                read_stats(conn).await
            })
            .await;
            let stats = match stats {
                Ok(Ok(stats)) => stats,
                _ => {
                    *slot = None;
                    return Err(self.error(server, "no answer to `stats`", true));
                }
            };
            nodes.push(NodeMemory {
                node: server.addr.clone(),
                used_bytes: stat(&stats, "bytes").unwrap_or(0),
                max_bytes: stat(&stats, "limit_maxbytes").unwrap_or(0),
                policy: "lru".into(),
                evicted_keys: stat(&stats, "evictions").unwrap_or(0),
            });
        }
        Ok(nodes)
    }

    async fn try_lock(&self, key: &str, token: &str, ttl: Duration) -> Result<bool, BackendError> {
        let server = &self.servers[self.continuum.server(key)];
        let request = format!("ms {key} {} T{} ME\r\n{token}\r\n", token.len(), exptime(Some(ttl)));
        let replies = self.exchange(server, request.as_bytes(), 1).await?;
        match replies[0].code.as_str() {
            "HD" => Ok(true),
            "NS" => Ok(false),
            other => Err(self.error(
                server,
                format!("taking the lock `{key}`: {other} {}", replies[0].flags),
                false,
            )),
        }
    }

    async fn unlock(&self, key: &str, token: &str) -> Result<(), BackendError> {
        let server = &self.servers[self.continuum.server(key)];
        self.take_back_on(server, &[(key, token.as_bytes())]).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_servers_and_default_ports() {
        let b = MemcachedBackend::new("memcached://a:11311, b ,10.0.0.3:1").expect("valid");
        assert_eq!(b.describe(), "memcached://a:11311,b:11211,10.0.0.3:1");
        assert!(MemcachedBackend::new("memcached://user:pw@a:1").is_err());
        assert!(MemcachedBackend::new("memcached://a:port").is_err());
    }

    #[test]
    fn long_ttls_are_absolute_times() {
        assert_eq!(exptime(None), 0);
        assert_eq!(exptime(Some(Duration::from_millis(1500))), 2);
        assert_eq!(exptime(Some(Duration::from_secs(LONGEST_RELATIVE_TTL))), LONGEST_RELATIVE_TTL);
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
        let far = exptime(Some(Duration::from_secs(LONGEST_RELATIVE_TTL + 1)));
        assert!(far >= now + LONGEST_RELATIVE_TTL && far <= now + LONGEST_RELATIVE_TTL + 5, "{far}");
    }

    #[test]
    fn keys_longer_than_250_bytes_are_refused() {
        let b = MemcachedBackend::new("memcached://a:1").expect("valid");
        assert_eq!(b.check_key(&"k".repeat(250)), Ok(()));
        assert_eq!(b.check_key(&"k".repeat(251)), Err("longer than memcached's 250 bytes"));
        assert_eq!(b.check_key("a b"), Err("contains white space"));
    }
}
