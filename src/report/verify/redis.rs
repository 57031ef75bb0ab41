//! What Redis itself says after a warm: its keyspace hit ratio over a window (`INFO stats`),
//! and whether warmed keys were read since the warm (`OBJECT IDLETIME` on a sample, or
//! `OBJECT FREQ` when an LFU eviction policy keeps no idle times).

use std::time::Duration;

use redis::Value;
use serde::Serialize;

use super::Hits;
use crate::backend::{BackendError, RedisBackend};
use crate::plan::Plan;

/// An LFU counter starts here when a key is written; a read raises it.
const LFU_INITIAL: i64 = 5;

/// How "read since the warm" was told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadSignal {
    /// Idle time shorter than the time since the warm ended.
    IdleTime,
    /// LFU counter above its initial value (an approximation: counters decay over minutes).
    LfuFrequency,
}

/// Redis's own view.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RedisObservation {
    /// The window `keyspace` covers.
    pub window_ms: u64,
    /// Keyspace hits and misses during the window (every key in the database, not only
    /// warmed ones).
    pub keyspace: Hits,
    /// Warmed keys sampled.
    pub sampled: u64,
    /// Of those, keys still in Redis.
    pub present: u64,
    /// Of those, keys read since the warm.
    pub read_since_warm: u64,
    /// How reads were told.
    pub signal: ReadSignal,
}

fn keyspace(info: &str) -> Hits {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Hits { hits: field("keyspace_hits"), misses: field("keyspace_misses") }
}

fn as_int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => None,
    }
}

/// Samples up to `sample` warmed keys (evenly over the plan, hottest to coldest) and watches
/// `INFO stats` for `window`. `warm_ended_ms` (Unix ms, from the warm's report) tells read
/// keys from unread ones; without it the longest idle time in the sample stands for the time
/// since the warm, which holds when some warmed keys were not read.
pub async fn observe(
    backend: &RedisBackend,
    plan: &Plan,
    warm_ended_ms: Option<i64>,
    window: Duration,
    sample: usize,
) -> Result<RedisObservation, BackendError> {
    let before = keyspace(&backend.command::<String>(redis::cmd("INFO").arg("stats")).await?);
    tokio::time::sleep(window).await;
    let after = keyspace(&backend.command::<String>(redis::cmd("INFO").arg("stats")).await?);
    let keyspace = Hits {
        hits: after.hits.saturating_sub(before.hits),
        misses: after.misses.saturating_sub(before.misses),
    };

    let step = plan.keys.len().div_ceil(sample.max(1)).max(1);
    let keys: Vec<&str> = plan.keys.iter().step_by(step).map(|k| k.key.as_str()).collect();
    let mut pipe = redis::pipe();
    for k in &keys {
        pipe.cmd("OBJECT").arg("IDLETIME").arg(*k).ignore_errors();
    }
    let replies = backend.pipeline(&pipe).await?;
    let lfu = replies
        .iter()
        .any(|r| matches!(r, Value::ServerError(e) if e.details().is_some_and(|d| d.contains("LFU"))));
    let (signal, values) = if lfu {
        let mut pipe = redis::pipe();
        for k in &keys {
            pipe.cmd("OBJECT").arg("FREQ").arg(*k).ignore_errors();
        }
        (ReadSignal::LfuFrequency, backend.pipeline(&pipe).await?)
    } else {
        (ReadSignal::IdleTime, replies)
    };
    let numbers: Vec<i64> = values.iter().filter_map(as_int).collect();
    let read_since_warm = match signal {
        ReadSignal::LfuFrequency => numbers.iter().filter(|&&f| f > LFU_INITIAL).count(),
        ReadSignal::IdleTime => {
            let now_ms = crate::timestamp::now_ms();
            let since_warm_s = match warm_ended_ms {
                Some(ended) => (now_ms - ended) / 1000,
                None => numbers.iter().copied().max().unwrap_or(0),
            };
            // Idle times count whole seconds; a second of slack keeps unread keys unread.
            numbers.iter().filter(|&&idle| idle < since_warm_s - 1).count()
        }
    };
    Ok(RedisObservation {
        window_ms: window.as_millis() as u64,
        keyspace,
        sampled: keys.len() as u64,
        present: numbers.len() as u64,
        read_since_warm: read_since_warm as u64,
        signal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keyspace_counters_from_info() {
        let info = "# Stats\r\ntotal_connections_received:3\r\nkeyspace_hits:120\r\nkeyspace_misses:30\r\n";
        assert_eq!(keyspace(info), Hits { hits: 120, misses: 30 });
        assert_eq!(keyspace(""), Hits::default());
    }
}
