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
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    /// An event claims a known type but its payload does not decode.
    #[error(transparent)]
    Apply(#[from] kedai_projections::ApplyError),
    /// A record or event the rebuild's fold could not read.
    #[error(transparent)]
    Fold(kedai_projections::fold::FoldError),
    /// A file given to `diff` is neither a rebuild report nor a snapshot.
    #[error("{path}: {reason}")]
    BadInput { path: PathBuf, reason: String },
    #[error("writing CSV")]
    Csv(#[from] csv::Error),
    #[error("writing JSON")]
    Json(#[from] serde_json::Error),
}

impl ReplayError {
    /// Whether the reader of the output went away (`| head`): not a
    /// failure of the replay.
    pub fn is_broken_pipe(&self) -> bool {
        let kind = match self {
            ReplayError::Io { source, .. } => Some(source.kind()),
            ReplayError::Json(e) => e.io_error_kind(),
            ReplayError::Csv(e) => match e.kind() {
                csv::ErrorKind::Io(e) => Some(e.kind()),
                _ => None,
            },
            _ => None,
        };
        kind == Some(io::ErrorKind::BrokenPipe)
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        ReplayError::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<kedai_projections::fold::FoldError> for ReplayError {
    fn from(e: kedai_projections::fold::FoldError) -> Self {
        match e {
            kedai_projections::fold::FoldError::Store(e) => ReplayError::Store(e),
            other => ReplayError::Fold(other),
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
