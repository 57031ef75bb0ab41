//! Pipelines of `SET`s written straight to a Redis server's socket (plain TCP): the hot path
//! of a warm.
//!
//! The general client copies each value three times on its way to the socket, hands every
//! pipeline to a connection task, and parses every reply with a general-purpose parser: 30%
//! of preheat's cycles in a `perf` profile of a 200k-key warm from SQLite without the second
//! read, against 14% with this writer. Here a batch encodes its commands once per pipeline
//! into one buffer, writes it and reads its replies itself, on a connection of its own taken
//! from a small pool of idle ones. TLS, and every command other than these `SET`s, go through
//! the general client.
//!
//! A batch goes out as pipelines of at most [`SUB_PIPELINE`] commands, all at once, each on
//! its own connection. Redis reads a connection 16 KiB at a time and answers once per pass
//! of its event loop, so the fewer connections bring it commands the more passes, and the
//! more CPU, each key costs it: `redis-benchmark` sending the warm's `SET NX PX` on new keys
//! cost the server more per key over one connection than over fifty. In the warm benchmark
//! (README, "Warming") the split cut redis-server's CPU per key on the warm's writes and
//! raised the warm's rate.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Entry;

/// Commands in one pipeline: a batch is split into pipelines this long, sent at once on
/// connections of their own (`redis-benchmark -P 64` is the usual measure).
const SUB_PIPELINE: usize = 64;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a batch's replies may take, from the first byte written to the last reply.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a pipeline failed.
#[derive(Debug)]
pub(super) struct Failure {
    /// What happened, for the report.
    pub message: String,
    /// A retry can help: the connection dropped, timed out or the server is loading.
    pub retryable: bool,
    /// The credentials were refused.
    pub auth: bool,
}

impl Failure {
    fn io(what: &str, e: &std::io::Error) -> Self {
        Failure { message: format!("{what}: {e}"), retryable: true, auth: false }
    }

    fn reply(text: &[u8]) -> Self {
        let message = String::from_utf8_lossy(text).into_owned();
        let auth = ["WRONGPASS", "NOAUTH"].iter().any(|p| message.starts_with(p));
        let retryable = ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN"].iter().any(|p| message.starts_with(p));
        Failure { message, retryable, auth }
    }

    fn protocol(what: &str) -> Self {
        Failure { message: format!("unexpected reply from Redis: {what}"), retryable: true, auth: false }
    }
}

/// A Redis server reached over plain TCP, and its idle connections.
pub(super) struct SetPipeline {
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<String>,
    db: i64,
    idle: Mutex<Vec<TcpStream>>,
}

impl SetPipeline {
    /// The writer for a server the client reaches over plain TCP; `None` for TLS and Unix
    /// sockets, which stay with the general client.
    pub fn for_server(info: &redis::ConnectionInfo) -> Option<Self> {
        let redis::ConnectionAddr::Tcp(host, port) = info.addr() else { return None };
        let settings = info.redis_settings();
        Some(SetPipeline {
            host: host.clone(),
            port: *port,
            username: settings.username().map(str::to_string),
            password: settings.password().map(str::to_string),
            db: settings.db(),
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `SET key value <exists> [KEEPTTL | PX ttl]` for each entry, in pipelines of
    /// [`SUB_PIPELINE`] on as many connections at once; `true` where Redis answered `OK`,
    /// `false` where it answered nil (the condition did not hold). Any error fails the whole
    /// batch.
    pub async fn set_each(
        &self,
        entries: &[&Entry],
        exists: &str,
        keep_ttl: bool,
    ) -> Result<Vec<bool>, Failure> {
        let parts = entries.chunks(SUB_PIPELINE).map(|part| self.set_part(part, exists, keep_ttl));
        let replies = futures_util::future::try_join_all(parts).await?;
        Ok(replies.into_iter().flatten().collect())
    }

    /// One pipeline of [`Self::set_each`].
    async fn set_part(&self, entries: &[&Entry], exists: &str, keep_ttl: bool) -> Result<Vec<bool>, Failure> {
        let size: usize = entries.iter().map(|e| e.key.len() + e.value.len() + 80).sum();
        let mut request = Vec::with_capacity(size);
        for e in entries {
            let ttl = e.ttl.map(|t| t.as_millis().max(1) as u64);
            let mut ttl_text = itoa::Buffer::new();
            let tail: &[&[u8]] = match (keep_ttl, ttl) {
                (true, _) => &[b"KEEPTTL"],
                (false, Some(ms)) => &[b"PX", ttl_text.format(ms).as_bytes()],
                (false, None) => &[],
            };
            encode(&mut request, &[b"SET", e.key.as_bytes(), &e.value, exists.as_bytes()], tail);
        }
        let taken = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut conn = match taken {
            Some(c) => c,
            None => self.connect().await?,
        };
        let replies = match tokio::time::timeout(
            RESPONSE_TIMEOUT,
            exchange(&mut conn, &request, entries.len()),
        )
        .await
        {
            Ok(Ok(replies)) => replies,
            Ok(Err(e)) => {
                if e.retryable {
                    // The server went away or restarted: the other idle connections are
                    // most likely dead too.
                    self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
                return Err(e);
            }
            Err(_) => {
                let message = format!("no reply within {RESPONSE_TIMEOUT:?}");
                return Err(Failure { message, retryable: true, auth: false });
            }
        };
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        Ok(replies)
    }

    /// A new connection, authenticated and on the URL's database.
    async fn connect(&self) -> Result<TcpStream, Failure> {
        let address = (self.host.as_str(), self.port);
        let mut conn = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(Failure::io("cannot connect", &e)),
            Err(_) => {
                let message = format!("cannot connect within {CONNECT_TIMEOUT:?}");
                return Err(Failure { message, retryable: true, auth: false });
            }
        };
        // Replies go out as soon as they are written.
        conn.set_nodelay(true).map_err(|e| Failure::io("cannot set up the connection", &e))?;
        let mut hello = Vec::new();
        let mut commands = 0;
        if let Some(password) = &self.password {
            match &self.username {
                Some(user) => encode(&mut hello, &[b"AUTH", user.as_bytes(), password.as_bytes()], &[]),
                None => encode(&mut hello, &[b"AUTH", password.as_bytes()], &[]),
            }
            commands += 1;
        }
        if self.db != 0 {
            encode(&mut hello, &[b"SELECT", itoa::Buffer::new().format(self.db).as_bytes()], &[]);
            commands += 1;
        }
        if commands > 0 {
            let replies = tokio::time::timeout(RESPONSE_TIMEOUT, exchange(&mut conn, &hello, commands))
                .await
                .map_err(|_| Failure::protocol("no answer to AUTH or SELECT"))??;
            if replies.contains(&false) {
                return Err(Failure::protocol("nil answer to AUTH or SELECT"));
            }
        }
        Ok(conn)
    }
}

/// Appends one command in RESP: an array of bulk strings.
fn encode(out: &mut Vec<u8>, args: &[&[u8]], more: &[&[u8]]) {
    let mut n = itoa::Buffer::new();
    out.push(b'*');
    out.extend_from_slice(n.format(args.len() + more.len()).as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args.iter().chain(more) {
        out.push(b'$');
        out.extend_from_slice(n.format(arg.len()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes `request` and reads `n` replies: `true` for a status reply (`+OK`), `false` for nil.
async fn exchange(conn: &mut TcpStream, request: &[u8], n: usize) -> Result<Vec<bool>, Failure> {
    conn.write_all(request).await.map_err(|e| Failure::io("cannot write to Redis", &e))?;
    let mut replies = Vec::with_capacity(n);
    let mut buf: Vec<u8> = Vec::with_capacity(16 * 1024);
    let mut at = 0;
    while replies.len() < n {
        match parse_reply(&buf[at..])? {
            Some((reply, used)) => {
                at += used;
                // An error reply fails the pipeline; the connection, with replies still
                // unread, is not used again.
                replies.push(reply.map_err(|text| Failure::reply(&text))?);
            }
            None => {
                buf.drain(..at);
                at = 0;
                let read =
                    conn.read_buf(&mut buf).await.map_err(|e| Failure::io("cannot read from Redis", &e))?;
                if read == 0 {
                    return Err(Failure {
                        message: "Redis closed the connection".into(),
                        retryable: true,
                        auth: false,
                    });
                }
            }
        }
    }
    Ok(replies)
}

/// One command's reply: `Ok(true)` for a status or a value, `Ok(false)` for nil, `Err(text)`
/// for an error.
type Reply = Result<bool, Vec<u8>>;

/// The reply at the start of `buf` and the bytes it takes; `None` while it is incomplete.
fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, Failure> {
    let Some(end) = memchr::memchr(b'\n', buf) else { return Ok(None) };
    if end < 1 || buf[end - 1] != b'\r' {
        return Err(Failure::protocol("a line without CRLF"));
    }
    let line = &buf[1..end - 1];
    let after = end + 1;
    match buf[0] {
        b'+' => Ok(Some((Ok(true), after))),
        b'-' => Ok(Some((Err(line.to_vec()), after))),
        // RESP3's null, should a server answer so.
        b'_' => Ok(Some((Ok(false), after))),
        b'$' => {
            let len: i64 = std::str::from_utf8(line)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or_else(|| Failure::protocol("a bulk length that is not a number"))?;
            if len < 0 {
                return Ok(Some((Ok(false), after)));
            }
            // A bulk string (not sent to a `SET` without `GET`): skipped, counted as a value.
            let whole = after + len as usize + 2;
            Ok((buf.len() >= whole).then_some((Ok(true), whole)))
        }
        other => Err(Failure::protocol(&format!("a reply of type `{}`", other as char))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(&mut out, &[b"SET", b"k", b"v\r\n"], &[b"PX", b"10"]);
        assert_eq!(out, b"*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$2\r\nPX\r\n$2\r\n10\r\n");
    }

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        let ok = |r: Result<Option<(Reply, usize)>, Failure>| r.expect("well formed");
        assert_eq!(ok(parse_reply(b"+OK\r\n$-1\r\n")), Some((Ok(true), 5)));
        assert_eq!(ok(parse_reply(b"$-1\r\n")), Some((Ok(false), 5)));
        assert_eq!(ok(parse_reply(b"_\r\n")), Some((Ok(false), 3)));
        assert_eq!(ok(parse_reply(b"-ERR no\r\n")), Some((Err(b"ERR no".to_vec()), 9)));
        assert_eq!(ok(parse_reply(b"$3\r\nabc\r\n")), Some((Ok(true), 9)));
        for partial in [&b""[..], b"+O", b"+OK\r", b"$3\r\nab", b"$-"] {
            assert_eq!(ok(parse_reply(partial)), None, "{partial:?}");
        }
        for bad in [&b":1\r\n"[..], b"+OK\n", b"$x\r\n"] {
            assert!(parse_reply(bad).is_err(), "{bad:?}");
        }
    }
}
