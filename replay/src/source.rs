//! Where the ledger lives, and opening it read-only.
//!
//! `--data DIR` names kedai's data directory; the embedded log is in
//! `DIR/log` (as the server lays it out). A directory that holds segment
//! files itself (`*.seg`) is taken as the log directory too, so both the
//! data directory and the log directory work. `--database-url URL` names a
//! PostgreSQL database instead.
//!
//! Read-only means: the log is opened with `LogStore::open_read_only` (no
//! lock file taken, nothing written or repaired; an unfinished tail is left
//! out) and PostgreSQL with `PgStore::connect_read_only` (every connection
//! read-only, no migrations).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kedai_engine::EventStore;
use kedai_engine::store::import::Verbatim;
use kedai_engine::store::log::LogStore;
use kedai_engine::store::log::format::parse_segment_file_name;
use kedai_engine::store::postgres::{PgOptions, PgStore};

use crate::ReplayError;

/// Name of the log directory inside a data directory.
pub const LOG_DIR_NAME: &str = "log";

/// A ledger to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An embedded log directory (the one holding the `.seg` files).
    Log { dir: PathBuf },
    /// A PostgreSQL database.
    Postgres { url: String },
}

impl Source {
    /// The source named by the command line: exactly one of the two.
    pub fn from_args(
        data: Option<&Path>,
        database_url: Option<&str>,
    ) -> Result<Source, ReplayError> {
        match (data, database_url) {
            (Some(dir), None) => Ok(Source::Log {
                dir: log_dir(dir)?,
            }),
            (None, Some(url)) => Ok(Source::Postgres { url: url.to_owned() }),
            (Some(_), Some(_)) => Err(ReplayError::Invalid(
                "give either --data DIR or --database-url URL, not both".into(),
            )),
            (None, None) => Err(ReplayError::Invalid(
                "say where the ledger is: --data DIR (kedai's data directory) or --database-url URL"
                    .into(),
            )),
        }
    }

    /// Opens the store read-only.
    pub async fn open(&self) -> Result<Arc<dyn EventStore>, ReplayError> {
        let store: Arc<dyn EventStore> = self.open_records(false).await?;
        Ok(store)
    }

    /// Opens the store read-only, to be read in position order only (a
    /// rebuild, a copy): the log builds no stream index, which takes most
    /// of an open's time and memory on a big log.
    pub async fn open_in_order(&self) -> Result<Arc<dyn Verbatim>, ReplayError> {
        self.open_records(true).await
    }

    async fn open_records(&self, in_order: bool) -> Result<Arc<dyn Verbatim>, ReplayError> {
        match self {
            Source::Log { dir } => {
                let dir = dir.clone();
                let store = tokio::task::spawn_blocking(move || {
                    if in_order {
                        LogStore::open_in_order(dir)
                    } else {
                        LogStore::open_read_only(dir)
                    }
                })
                .await
                .map_err(|e| ReplayError::Invalid(format!("opening the log: {e}")))??;
                Ok(Arc::new(store))
            }
            Source::Postgres { url } => {
                let options = PgOptions {
                    pool_size: 2,
                    listen: false,
                    ..PgOptions::default()
                };
                Ok(Arc::new(PgStore::connect_read_only(url, options).await?))
            }
        }
    }

    /// What to call the source in messages (never the database URL, which
    /// may hold a password).
    pub fn describe(&self) -> String {
        match self {
            Source::Log { dir } => format!("log {}", dir.display()),
            Source::Postgres { .. } => "PostgreSQL database".into(),
        }
    }
}

/// The log directory for `--data DIR`: `DIR/log` if it exists, else `DIR`
/// itself if it holds segment files; otherwise a clear error.
pub fn log_dir(data: &Path) -> Result<PathBuf, ReplayError> {
    let meta = fs::metadata(data).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            ReplayError::NoLog(format!("data directory {} does not exist", data.display()))
        }
        _ => ReplayError::NoLog(format!(
            "cannot read data directory {}: {e}",
            data.display()
        )),
    })?;
    if !meta.is_dir() {
        return Err(ReplayError::NoLog(format!(
            "{} is not a directory (give kedai's data directory, or its log directory)",
            data.display()
        )));
    }
    let nested = data.join(LOG_DIR_NAME);
    if nested.is_dir() {
        readable(&nested)?;
        return Ok(nested);
    }
    if holds_segments(data)? {
        return Ok(data.to_owned());
    }
    Err(ReplayError::NoLog(format!(
        "{} holds no kedai log: no {LOG_DIR_NAME}/ directory and no segment files (*.seg)",
        data.display()
    )))
}

fn readable(dir: &Path) -> Result<(), ReplayError> {
    fs::read_dir(dir).map(drop).map_err(|e| {
        ReplayError::NoLog(format!("cannot read log directory {}: {e}", dir.display()))
    })
}

fn holds_segments(dir: &Path) -> Result<bool, ReplayError> {
    let entries = fs::read_dir(dir)
        .map_err(|e| ReplayError::NoLog(format!("cannot read directory {}: {e}", dir.display())))?;
    Ok(entries.flatten().any(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(parse_segment_file_name)
            .is_some()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_directory_or_the_log_directory_is_accepted() {
        let data = tempfile::tempdir().unwrap();
        let err = log_dir(data.path()).unwrap_err().to_string();
        assert!(err.contains("holds no kedai log"), "{err}");
        fs::write(data.path().join("00000000000000000001.seg"), b"").unwrap();
        assert_eq!(log_dir(data.path()).unwrap(), data.path());
        fs::create_dir(data.path().join("log")).unwrap();
        assert_eq!(log_dir(data.path()).unwrap(), data.path().join("log"));
        let missing = data.path().join("nope");
        let err = log_dir(&missing).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        let file = data.path().join("00000000000000000001.seg");
        let err = log_dir(&file).unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn exactly_one_source_is_needed() {
        assert!(Source::from_args(None, None).is_err());
        assert!(Source::from_args(Some(Path::new("/")), Some("postgres://x")).is_err());
        assert_eq!(
            Source::from_args(None, Some("postgres://x")).unwrap(),
            Source::Postgres {
                url: "postgres://x".into()
            }
        );
    }
}
