//! Whether a profile still describes today's traffic: not too old, and made with the rules in
//! force now.

use std::time::Duration;

use super::ProfileMeta;
use crate::timestamp::parse_rfc3339;

impl ProfileMeta {
    /// How old its data is at `now_ms`: since the end of its log window, or, for logs without
    /// timestamps, since it was written. `None` when neither can be read.
    pub fn age(&self, now_ms: i64) -> Option<Duration> {
        let end = self.summary.window.end.as_deref().or(Some(self.created.as_str()))?;
        let end_ms = parse_rfc3339(end)?;
        Some(Duration::from_millis(now_ms.saturating_sub(end_ms).max(0) as u64))
    }

    /// Why a warm should not trust it: older than `max_age`, or made with rules other than
    /// those with `fingerprint`. Empty when it is fresh.
    pub fn staleness(&self, fingerprint: &str, max_age: Option<Duration>, now_ms: i64) -> Vec<String> {
        let mut why = Vec::new();
        if let (Some(limit), Some(age)) = (max_age, self.age(now_ms))
            && age > limit
        {
            why.push(format!(
                "its logs end {} ago, more than warm.max_profile_age ({})",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                humantime::format_duration(limit)
            ));
        }
        if self.summary.config_fingerprint != fingerprint {
            why.push(format!(
                "it was made with other rules (fingerprint {}, the config's is {fingerprint}); keys of changed rules may be missing or wrong",
                self.summary.config_fingerprint
            ));
        }
        why
    }
}
