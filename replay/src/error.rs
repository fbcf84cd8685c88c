//! What can go wrong while replaying, as one error type for the library
//! (the binary adds context and turns it into an exit code).

use std::io;
use std::path::PathBuf;

use kedai_engine::StoreError;

/// Why a replay command could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The store refused or failed (including a damaged log met while
    /// reading, outside `verify`).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The request does not make sense (a bad id, a position past the end).
    #[error("{0}")]
    Invalid(String),
    /// The data directory is missing, unreadable or holds no log.
    #[error("{0}")]
    NoLog(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An event claims a known type but its payload does not decode.
    #[error(transparent)]
    Apply(#[from] kedai_projections::ApplyError),
    /// A file given to `diff` is neither a rebuild report nor a snapshot.
    #[error("{path}: {reason}")]
    BadInput { path: PathBuf, reason: String },
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("writing JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl ReplayError {
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        ReplayError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<kedai_projections::runner::RunError> for ReplayError {
    fn from(e: kedai_projections::runner::RunError) -> Self {
        match e {
            kedai_projections::runner::RunError::Store(e) => ReplayError::Store(e),
            kedai_projections::runner::RunError::Apply(e) => ReplayError::Apply(e),
        }
    }
}
