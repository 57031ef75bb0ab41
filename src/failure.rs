//! Why a planned key did not reach the cache: one reason per failed key, counted in the run
//! report and its metrics. Sources and backends say which applies; the warm adds the reasons
//! only it can see (a dependency counted as down, a second read that could not vouch for a
//! value, a batch cut off at the deadline).

use std::fmt;

/// Why a key failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The source answered with an error, or could not be set up.
    SourceError,
    /// The source did not answer within its timeout.
    SourceTimeout,
    /// An HTTP source answered with an error status.
    SourceStatus,
    /// A file source refused a path outside its root.
    SourceRefused,
    /// The value is larger than the source's `max_value_size`.
    TooLarge,
    /// A command source's program failed.
    CommandFailed,
    /// The source's circuit breaker counts it as down.
    SourceDown,
    /// The backend refused or failed the write.
    BackendError,
    /// The backend's circuit breaker counts it as down.
    BackendDown,
    /// The second read of a written value failed, so the value was taken back.
    Unverified,
    /// The batch was still running when the run stopped, and was cancelled.
    Cancelled,
    /// The batch's task panicked (a bug; the rest of the run goes on).
    Panicked,
}

impl FailureReason {
    /// The reason as the report and the metrics write it (`source_timeout`).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::SourceError => "source_error",
            FailureReason::SourceTimeout => "source_timeout",
            FailureReason::SourceStatus => "source_status",
            FailureReason::SourceRefused => "source_refused",
            FailureReason::TooLarge => "too_large",
            FailureReason::CommandFailed => "command_failed",
            FailureReason::SourceDown => "source_down",
            FailureReason::BackendError => "backend_error",
            FailureReason::BackendDown => "backend_down",
            FailureReason::Unverified => "unverified",
            FailureReason::Cancelled => "cancelled",
            FailureReason::Panicked => "panicked",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_is_the_serialized_name() {
        for reason in [
            FailureReason::SourceError,
            FailureReason::SourceTimeout,
            FailureReason::SourceStatus,
            FailureReason::SourceRefused,
            FailureReason::TooLarge,
            FailureReason::CommandFailed,
            FailureReason::SourceDown,
            FailureReason::BackendError,
            FailureReason::BackendDown,
            FailureReason::Unverified,
            FailureReason::Cancelled,
            FailureReason::Panicked,
        ] {
            let json = serde_json::to_string(&reason).expect("serializes");
            assert_eq!(json, format!("\"{reason}\""));
            assert_eq!(serde_json::from_str::<FailureReason>(&json).expect("reads back"), reason);
        }
    }
}
