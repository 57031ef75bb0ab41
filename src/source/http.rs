//! HTTP sources: the profiled request replayed against the new deployment.
//!
//! In `replay` mode the application fills its own cache and preheat only counts the answers;
//! in `store` mode preheat stores the response body under the rule's key, unless the response
//! says it may not be stored (`Cache-Control: no-store` or `private`), and never for longer
//! than the response allows (`s-maxage`, else `max-age`). Redirects are not followed: a
//! redirect is the application's answer, not a value.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::http1::{Answer, Failure, Http1Pool, cache_control};
use super::{Fetched, SourceError};
use crate::failure::FailureReason;
use crate::secret::{redact_url, scrub};

/// What an HTTP source does with a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpMode {
    /// Send the request so that the application caches the answer itself; count the statuses.
    Replay,
    /// Store the response body under the rule's key.
    Store,
}

/// What a response's `Cache-Control` allows a shared cache to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Store it, for at most this long when the response says so.
    Store(Option<Duration>),
    /// Do not store it (`no-store`, `private`, or a freshness lifetime of zero).
    DoNotStore,
}

/// Reads the `Cache-Control` header values of a response, as a shared cache reads them:
/// `s-maxage` takes precedence over `max-age`.
pub fn cache_policy<'a>(values: impl IntoIterator<Item = &'a str>) -> CachePolicy {
    let (mut max_age, mut s_maxage) = (None, None);
    for directive in values.into_iter().flat_map(|v| v.split(',')) {
        let (name, arg) = match directive.split_once('=') {
            Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
            None => (directive.trim(), None),
        };
        let seconds = arg.and_then(|a| a.parse::<u64>().ok());
        match name.to_ascii_lowercase().as_str() {
            "no-store" | "private" => return CachePolicy::DoNotStore,
            "max-age" => max_age = seconds.or(max_age),
            "s-maxage" => s_maxage = seconds.or(s_maxage),
            _ => {}
        }
    }
    match s_maxage.or(max_age) {
        Some(0) => CachePolicy::DoNotStore,
        limit => CachePolicy::Store(limit.map(Duration::from_secs)),
    }
}

/// The new deployment, reached over HTTP.
pub struct HttpSource {
    name: String,
    base: String,
    /// `base` parsed once: per request only the path and query are set, which spares parsing
    /// the scheme and host again (about 4% of a replay's samples in a profile).
    base_url: reqwest::Url,
    /// The path prefix of `base`, without its trailing slash.
    prefix: String,
    redacted: String,
    client: reqwest::Client,
    /// For `http://` bases: connections of our own (see `http1`), used instead of `client`.
    plain: Option<Http1Pool>,
    timeout: Duration,
    mode: HttpMode,
    max_bytes: u64,
}

impl HttpSource {
    /// A pooled client for `base` (`http://app:8080`, maybe with a path prefix) that sends
    /// `headers` with every request. Connects on first use.
    pub fn new(
        name: &str,
        base: &str,
        mode: HttpMode,
        headers: &[(String, String)],
        timeout: Duration,
        max_bytes: u64,
    ) -> Result<Self, SourceError> {
        let redacted = redact_url(base);
        let err = |message: String| SourceError::fatal(name, message);
        let parsed = reqwest::Url::parse(base).map_err(|e| err(format!("`{redacted}` is not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(err(format!("`{redacted}` is not an `http://` or `https://` URL")));
        }
        let mut map = HeaderMap::new();
        for (header, value) in headers {
            let header = HeaderName::from_bytes(header.as_bytes())
                .map_err(|_| err(format!("`{header}` is not a valid header name")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|_| err(format!("the value of header `{header}` is not a valid header value")))?;
            // Header values often carry tokens: keep them out of any debug output.
            value.set_sensitive(true);
            map.insert(header, value);
        }
        // reqwest's TLS needs a process-wide crypto provider; use ring, as redis's TLS does,
        // unless the application installed one of its own (then `install_default` refuses).
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let plain =
            if parsed.scheme() == "http" { Http1Pool::new(&parsed, map.clone(), timeout) } else { None };
        let client = reqwest::Client::builder()
            .default_headers(map)
            .user_agent(concat!("preheat/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .map_err(|e| err(format!("cannot set up an HTTP client: {e}")))?;
        Ok(HttpSource {
            name: name.to_string(),
            base: base.trim_end_matches('/').to_string(),
            prefix: parsed.path().trim_end_matches('/').to_string(),
            base_url: parsed,
            redacted,
            client,
            plain,
            timeout,
            mode,
            max_bytes,
        })
    }

    /// Sends `HEAD` to the base URL: any answer means the deployment is reachable.
    pub async fn ping(&self) -> Result<(), SourceError> {
        self.client.head(self.base_url.clone()).send().await.map(|_| ()).map_err(|e| self.error(&e))
    }

    /// Sends `method target` (`target` is a path with its kept query, such as
    /// `/api/products/42?lang=en`).
    pub async fn fetch(&self, method: &reqwest::Method, target: &str) -> Result<Fetched, SourceError> {
        let want_body = self.mode == HttpMode::Store;
        if let Some(pool) = &self.plain {
            let path = format!("{}{target}", self.prefix);
            return match pool.request(method, &path, want_body, self.max_bytes).await {
                Ok(Answer { status, cache_control, body }) => {
                    self.judge(status, cache_control.iter().map(String::as_str), std::future::ready(Ok(body)))
                        .await
                }
                Err(Failure::TooLarge) => Err(self.too_large()),
                Err(Failure::Timeout) => Err(SourceError {
                    source_name: self.name.clone(),
                    message: format!("{} took longer than {:?}", self.redacted, self.timeout),
                    retryable: true,
                    reason: FailureReason::SourceTimeout,
                }),
                Err(Failure::Io(message)) => Err(SourceError {
                    source_name: self.name.clone(),
                    message: scrub(&message, &self.base),
                    retryable: true,
                    reason: FailureReason::SourceError,
                }),
            };
        }
        let mut url = self.base_url.clone();
        let (path, query) = target.split_once('?').map_or((target, None), |(p, q)| (p, Some(q)));
        url.set_path(&format!("{}{path}", self.prefix));
        url.set_query(query);
        let mut response =
            self.client.request(method.clone(), url).send().await.map_err(|e| self.error(&e))?;
        let cache_control = cache_control(response.headers());
        let status = response.status();
        let max = self.max_bytes;
        let body = async move {
            if response.content_length().is_some_and(|n| n > max) {
                return Err(self.too_large());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(|e| self.error(&e))? {
                if body.len() as u64 + chunk.len() as u64 > max {
                    return Err(self.too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        };
        self.judge(status, cache_control.iter().map(String::as_str), body).await
    }

    /// What an answer means; `body` (a future, so not started until then) is read only when
    /// the answer is to be stored.
    async fn judge<'a>(
        &self,
        status: reqwest::StatusCode,
        cache_control: impl Iterator<Item = &'a str>,
        body: impl std::future::Future<Output = Result<Vec<u8>, SourceError>>,
    ) -> Result<Fetched, SourceError> {
        if status == reqwest::StatusCode::NOT_FOUND || status == reqwest::StatusCode::GONE {
            return Ok(Fetched::Missing);
        }
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(self.status_error(status, true));
        }
        if status.is_client_error() {
            return Err(self.status_error(status, false));
        }
        if self.mode == HttpMode::Replay {
            return Ok(Fetched::Replayed);
        }
        if status != reqwest::StatusCode::OK {
            return Ok(Fetched::Uncacheable);
        }
        let CachePolicy::Store(max_ttl) = cache_policy(cache_control) else {
            return Ok(Fetched::Uncacheable);
        };
        Ok(Fetched::Value { value: body.await?, max_ttl })
    }

    fn status_error(&self, status: reqwest::StatusCode, retryable: bool) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            message: format!("{} answered {status}", self.redacted),
            retryable,
            reason: FailureReason::SourceStatus,
        }
    }

    fn too_large(&self) -> SourceError {
        SourceError {
            source_name: self.name.clone(),
            message: format!("a response is larger than max_value_size ({} bytes)", self.max_bytes),
            retryable: false,
            reason: FailureReason::TooLarge,
        }
    }

    fn error(&self, e: &reqwest::Error) -> SourceError {
        // reqwest's message names the URL; its password, if any, must not show.
        let mut message = scrub(&e.to_string(), &self.base);
        let mut cause = std::error::Error::source(e);
        while let Some(c) = cause {
            message.push_str(": ");
            message.push_str(&scrub(&c.to_string(), &self.base));
            cause = c.source();
        }
        SourceError {
            source_name: self.name.clone(),
            message,
            retryable: e.is_timeout() || e.is_connect() || e.is_request() || e.is_body(),
            reason: if e.is_timeout() { FailureReason::SourceTimeout } else { FailureReason::SourceError },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_as_a_shared_cache_reads_it() {
        let secs = |s| CachePolicy::Store(Some(Duration::from_secs(s)));
        assert_eq!(cache_policy([]), CachePolicy::Store(None));
        assert_eq!(cache_policy(["public, max-age=60"]), secs(60));
        assert_eq!(cache_policy(["max-age=60, s-maxage=30"]), secs(30));
        assert_eq!(cache_policy(["s-maxage=\"30\"", "max-age=600"]), secs(30));
        assert_eq!(cache_policy(["No-Store"]), CachePolicy::DoNotStore);
        assert_eq!(cache_policy(["max-age=60", "private"]), CachePolicy::DoNotStore);
        assert_eq!(cache_policy(["max-age=0"]), CachePolicy::DoNotStore);
        assert_eq!(cache_policy(["max-age=soon"]), CachePolicy::Store(None));
    }
}
