//! Plain `http://` requests on HTTP/1.1 connections of our own, kept open and reused.
//!
//! Why not only reqwest: with its pooled client, a replay against a local nginx reached about
//! 40% of `wrk`'s rate on the same connections, and with these connections (one request at a
//! time each) about 60% (`bash benches/sources.sh`). Measured again on 2026-12-07 with
//! `cargo bench --bench http_client` (100k GETs to a loopback server, 64 in flight, the
//! clients taking turns): 90,668 and 89,880 requests/s here against 65,326 and 64,651 for
//! reqwest as shipped and 66,445 and 66,451 for reqwest with HTTP/1 only, `TCP_NODELAY` and
//! 64 idle connections kept, so 1.39x and 1.35x. A replay is many small requests to one
//! host, so the bare connections are worth their few lines; `https://` still goes through
//! reqwest.

use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use reqwest::header::{CACHE_CONTROL, HOST, HeaderMap, HeaderValue, USER_AGENT};
use reqwest::{Method, StatusCode};

/// One answer, read in full so the connection can be reused.
pub struct Answer {
    /// The status.
    pub status: StatusCode,
    /// The `Cache-Control` header values.
    pub cache_control: Vec<String>,
    /// The body, when it was wanted.
    pub body: Vec<u8>,
}

/// Why a request failed.
pub enum Failure {
    /// It took longer than the timeout.
    Timeout,
    /// The body is larger than the limit.
    TooLarge,
    /// Connecting, sending or reading failed (retryable).
    Io(String),
}

/// The `Cache-Control` values of a response (those that are text).
pub fn cache_control(headers: &HeaderMap) -> Vec<String> {
    headers.get_all(CACHE_CONTROL).iter().filter_map(|v| v.to_str().ok()).map(String::from).collect()
}

/// Idle connections to one `host:port`.
pub struct Http1Pool {
    host: String,
    port: u16,
    headers: HeaderMap,
    timeout: Duration,
    idle: Mutex<Vec<SendRequest<Empty<Bytes>>>>,
}

impl Http1Pool {
    /// A pool for the host of `url` (an `http://` URL); `headers` go with every request.
    pub fn new(url: &reqwest::Url, mut headers: HeaderMap, timeout: Duration) -> Option<Self> {
        let host = url.host_str()?.to_string();
        let port = url.port_or_known_default()?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        headers.entry(HOST).or_insert(HeaderValue::from_str(&authority).ok()?);
        headers
            .entry(USER_AGENT)
            .or_insert(HeaderValue::from_static(concat!("preheat/", env!("CARGO_PKG_VERSION"))));
        Some(Http1Pool { host, port, headers, timeout, idle: Mutex::new(Vec::new()) })
    }

    fn take_idle(&self) -> Option<SendRequest<Empty<Bytes>>> {
        let mut idle = self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    async fn connect(&self) -> Result<SendRequest<Empty<Bytes>>, Failure> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| Failure::Io(format!("cannot connect to {}:{}: {e}", self.host, self.port)))?;
        let _ = tcp.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .map_err(|e| Failure::Io(e.to_string()))?;
        // The connection's driver; it ends when the connection closes or its sender is dropped.
        tokio::spawn(connection);
        Ok(sender)
    }

    /// Sends `method path_and_query` and reads the answer (the body only when `want_body`,
    /// and at most `max_bytes` of it), all within the timeout.
    pub async fn request(
        &self,
        method: &Method,
        path_and_query: &str,
        want_body: bool,
        max_bytes: u64,
    ) -> Result<Answer, Failure> {
        let work = async {
            let mut sender = match self.take_idle() {
                Some(s) => s,
                None => self.connect().await?,
            };
            let mut request = hyper::Request::builder()
                .method(method.clone())
                .uri(path_and_query)
                .body(Empty::<Bytes>::new())
                .map_err(|e| Failure::Io(format!("bad request target `{path_and_query}`: {e}")))?;
            *request.headers_mut() = self.headers.clone();
            sender.ready().await.map_err(|e| Failure::Io(e.to_string()))?;
            let response = sender.send_request(request).await.map_err(|e| Failure::Io(e.to_string()))?;
            let status = response.status();
            let cache_control = cache_control(response.headers());
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            // Read to the end even when the body is not wanted: only then is the connection
            // free for the next request.
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Failure::Io(e.to_string()))?;
                if let Some(data) = frame.data_ref()
                    && want_body
                {
                    if bytes.len() as u64 + data.len() as u64 > max_bytes {
                        return Err(Failure::TooLarge);
                    }
                    bytes.extend_from_slice(data);
                }
            }
            if !sender.is_closed() {
                self.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(sender);
            }
            Ok(Answer { status, cache_control, body: bytes })
        };
        tokio::time::timeout(self.timeout, work).await.unwrap_or(Err(Failure::Timeout))
    }
}
