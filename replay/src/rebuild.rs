//! `rebuild`: folds every projection from the first event up to a position
//! or a moment, on several threads (each folds a share of the shops, see
//! [`kedai_projections::fold`]), from the records exactly as stored.
//!
//! As of a moment means the longest prefix of the log whose events were
//! recorded at or before it: `recorded_at` never decreases along the log,
//! so that prefix is what the server had recorded at that moment.

use std::sync::Arc;

use kedai_engine::store::import::Verbatim;
use kedai_engine::{Position, Timestamp};
use kedai_projections::Projections;
use kedai_projections::fold::fold_store;

use crate::ReplayError;

/// How far to fold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Up to and including this position.
    Position(Position),
    /// Every event recorded at or before this moment.
    Time(Timestamp),
}

/// What a rebuild folded.
#[derive(Debug)]
pub struct Rebuilt {
    pub projections: Projections,
    /// When the last folded event was recorded (`None` if none was).
    pub last_recorded_at: Option<Timestamp>,
    /// The log's last position when the rebuild started.
    pub log_end: Position,
}

/// Folds the log from its first event up to `until` on `threads` threads.
/// `progress` gets the position read and the position aimed at, after
/// each page.
pub async fn rebuild(
    store: Arc<dyn Verbatim>,
    until: Until,
    threads: usize,
    progress: impl FnMut(Position, Position) + Send + 'static,
) -> Result<Rebuilt, ReplayError> {
    let log_end = store.last_position().await?;
    let target = match until {
        Until::Position(p) if p > log_end => {
            return Err(ReplayError::Invalid(format!(
                "position {p} is past the end of the log (its last position is {log_end})"
            )));
        }
        Until::Position(p) => p,
        Until::Time(_) => log_end,
    };
    let moment = match until {
        Until::Time(t) => Some(t),
        Until::Position(_) => None,
    };
    let folded = fold_store(store, target, threads, moment, progress).await?;
    if matches!(until, Until::Position(_)) && folded.read != target {
        return Err(ReplayError::Invalid(format!(
            "the log ended at position {} before position {target}",
            folded.read
        )));
    }
    Ok(Rebuilt {
        projections: folded.projections,
        last_recorded_at: folded.last_recorded_at,
        log_end,
    })
}

/// Parses an RFC 3339 moment (`2025-10-09T17:00:00+07:00`).
pub fn parse_time(text: &str) -> Result<Timestamp, ReplayError> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| Timestamp::from(t.with_timezone(&chrono::Utc)))
        .map_err(|e| {
            ReplayError::Invalid(format!(
                "{text:?} is not an RFC 3339 date and time such as 2025-10-09T17:00:00+07:00: {e}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339() {
        assert_eq!(
            parse_time("2025-10-09T10:00:00Z").unwrap(),
            parse_time("2025-10-09T17:00:00+07:00").unwrap()
        );
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2025-10-09").is_err());
    }
}
