//! The `[warm]` and `[backend]` tables: deadline, budgets, write and lock policies,
//! readiness, and where the cache is.

use std::time::Duration;

use super::Problems;
use super::raw::{BackendFile, ReadyAtFile, WarmFile};
use crate::backend::{BackendSettings, known_scheme};
use crate::memory::{MAX_MEMORY_SHARE, MemoryLimit};
use crate::units::parse_bytes;
use crate::warm::{MAX_DEADLINE, ReadyAt, WarmSettings};

/// Checks the `[backend]` table.
pub(super) fn backend(backend: Option<&BackendFile>, problems: &mut Problems) -> BackendSettings {
    let mut settings = BackendSettings::default();
    if let Some(b) = backend {
        let url = b.url.get_ref();
        if known_scheme(url) {
            settings.url = url.clone();
        } else {
            problems.add_in(
                &b.url,
                0,
                format!(
                    "backend.url: `{}` is not a `redis://`, `rediss://`, `redis+cluster://host:port,...`, `memcached://host:port,...` or `memory://` URL, nor `env:NAME` or `file:PATH`",
                    crate::secret::redact_url(url)
                ),
            );
        }
    }
    if let Some(ca) = backend.and_then(|b| b.ca_file.as_ref()) {
        let path = std::path::PathBuf::from(ca.get_ref());
        if path.is_file() {
            settings.ca_file = Some(path);
        } else {
            problems.add(
                ca.span().start,
                format!("backend.ca_file: `{}` is not a readable file (a PEM CA certificate)", ca.get_ref()),
            );
        }
    }
    settings
}

/// Checks the `[warm]` table.
pub(super) fn warm(w: &WarmFile, problems: &mut Problems) -> WarmSettings {
    let mut warm = WarmSettings::default();
    if let Some(enabled) = w.enabled {
        warm.enabled = enabled;
    }
    if let Some(deadline) = problems.parsed(&w.deadline, "warm.deadline", parse_deadline) {
        warm.deadline = deadline;
    }
    if let Some(age) = problems.parsed(&w.max_profile_age, "warm.max_profile_age", parse_age) {
        warm.max_profile_age = Some(age);
    }
    if let Some(check) = w.invalidations {
        warm.invalidations = check;
    }
    if let Some(policy) = w.stale_profile {
        warm.stale_profile = policy;
    }
    if let Some(choice) = w.on_existing {
        warm.on_existing = choice.into();
    }
    for (field, value, target) in [
        ("batch_size", &w.batch_size, &mut warm.batch_size),
        ("concurrency", &w.concurrency, &mut warm.concurrency),
    ] {
        if let Some(n) = value {
            match usize::try_from(*n.get_ref()) {
                Ok(v) if v > 0 => *target = v,
                _ => problems.add(n.span().start, format!("warm.{field} must be at least 1")),
            }
        }
    }
    if let Some(r) = &w.ready_at {
        match r.get_ref() {
            ReadyAtFile::Keys(0) => problems.add(r.span().start, "warm.ready_at: a key count must be at least 1"),
            ReadyAtFile::Keys(n) => warm.ready_at = Some(ReadyAt::Keys(*n)),
            ReadyAtFile::Share(text) => match text.trim().strip_suffix('%').map(|p| p.trim().parse::<f64>()) {
                Some(Ok(p)) if p > 0.0 && p <= 100.0 => warm.ready_at = Some(ReadyAt::Coverage(p / 100.0)),
                _ => problems.add(
                    r.span().start,
                    format!("warm.ready_at: `{text}` is neither a share of the predicted coverage such as `80%` nor a number of keys"),
                ),
            },
        }
    }
    if let Some(anyway) = w.ready_anyway {
        warm.ready_anyway = anyway;
    }
    if let Some(adaptive) = w.adaptive_concurrency {
        warm.adaptive_concurrency = adaptive;
    }
    if let Some(share) = problems.parsed(&w.cache_headroom, "warm.cache_headroom", parse_cache_headroom) {
        warm.cache_headroom = share;
    }
    let memory = |text: &str| parse_memory_limit(text).map_err(|why| format!("`{text}` {why}"));
    if let Some(limit) = problems.parsed(&w.max_memory, "warm.max_memory", memory) {
        warm.max_memory = limit;
    }
    if let Some(policy) = w.lock {
        warm.lock = policy;
    }
    if let Some(k) = &w.lock_key {
        match crate::backend::validate_key(k.get_ref()) {
            Ok(()) => warm.lock_key = k.get_ref().clone(),
            Err(why) => problems.add(k.span().start, format!("warm.lock_key is not a valid key: {why}")),
        }
    }
    if let Some(n) = &w.max_keys {
        if *n.get_ref() == 0 {
            problems.add(n.span().start, "warm.max_keys must be at least 1");
        }
        warm.budgets.max_keys = *n.get_ref();
    }
    if let Some(b) = &w.max_bytes {
        match parse_bytes(b.get_ref()) {
            Some(n) if n > 0 => warm.budgets.max_bytes = Some(n),
            _ => problems.add(
                b.span().start,
                format!("warm.max_bytes: `{}` is not a size such as `512MiB` or `2GB`", b.get_ref()),
            ),
        }
    }
    warm
}

/// `90%`: the share of a cache node's memory limit a warm may fill up to.
fn parse_cache_headroom(text: &str) -> Result<f64, String> {
    match text.trim().strip_suffix('%').map(|p| p.trim().parse::<f64>()) {
        Some(Ok(p)) if p > 0.0 && p <= 100.0 => Ok(p / 100.0),
        _ => Err(format!(
            "`{text}` is not a share of the cache's memory limit such as `90%` (more than 0%, at most 100%)"
        )),
    }
}

/// A warm deadline: more than zero, at most [`MAX_DEADLINE`].
pub(super) fn parse_deadline(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(v) if v > MAX_DEADLINE => Err(format!("`{text}` is longer than the 5m a warm may take")),
        Ok(v) if v.is_zero() => Err("must be longer than zero".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("`{text}` is not a duration such as `4m`")),
    }
}

/// A profile age such as `36h` or `7d`.
pub(super) fn parse_age(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(v) if !v.is_zero() => Ok(v),
        _ => Err(format!("`{text}` is not a duration such as `36h` or `7d`")),
    }
}

/// `30%` (a share of the available memory, at most 50%) or a size such as `2GiB`.
pub(super) fn parse_memory_limit(text: &str) -> Result<MemoryLimit, String> {
    if let Some(percent) = text.trim().strip_suffix('%') {
        return match percent.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= MAX_MEMORY_SHARE * 100.0 => Ok(MemoryLimit::Share(p / 100.0)),
            Ok(_) => Err("must be more than 0% and at most 50% of the available memory".into()),
            Err(_) => Err("is not a share such as `30%`".into()),
        };
    }
    match parse_bytes(text) {
        Some(b) if b > 0 => Ok(MemoryLimit::Bytes(b)),
        _ => Err("is not a share such as `30%` or a size such as `2GiB`".into()),
    }
}
