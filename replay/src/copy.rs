//! `copy`: the whole ledger from one backend to another (an embedded log
//! into PostgreSQL, or back), record by record and byte for byte, then the
//! copy verified.
//!
//! The source is opened read-only, as every other subcommand opens it.
//! The destination must hold no events: a directory that does not exist
//! or is empty (the log is written to `DIR/log`, as the server lays out a
//! data directory), or a PostgreSQL database without events (the schema is
//! created if it is missing). Anything else is refused before anything is
//! written.
//!
//! With `resume`, the destination may instead hold a copy of the source's
//! first records (a copy that stopped part way, or an earlier copy of a
//! log that has grown since): its last record must be the source's at
//! the same position, byte for byte (their hashes are compared, and each
//! hash covers the whole chain before it), and the copy continues after
//! it. A destination that holds anything else is refused, unchanged.
//!
//! Records are read in pages ahead of the writer and imported in large
//! batches through the backends' verbatim import
//! ([`kedai_engine::store::import`]): one write and one fsync per batch
//! on the log, one transaction per batch on PostgreSQL. The import checks
//! that every record continues the chain (position, link to the previous
//! record's hash, stream version, event id), so a copy cannot reorder,
//! skip or duplicate anything. The copy ends at the position the source's
//! log ended at when it was opened (a server may go on appending to a
//! PostgreSQL source meanwhile). Finally the destination is verified from
//! scratch by the engine's verifier, and its head hash must be the
//! source's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kedai_engine::store::import::{ChainEnd, IMPORT_BYTES_MAX, IMPORT_RECORDS_MAX, Verbatim};
use kedai_engine::store::log::LogStore;
use kedai_engine::store::log::format::{self, Hash};
use kedai_engine::store::log::verify::VerifyProgress;
use kedai_engine::store::postgres::{PgOptions, PgStore};
use kedai_engine::{Position, StoreError};
use tokio::sync::mpsc;

use kedai_engine::store::log::verify::hash_to_hex;
use serde_json::{Value, json};

use crate::ReplayError;
use crate::progress::{Rate, thousands};
use crate::source::{LOG_DIR_NAME, Source, log_dir};
use crate::verify::{self, Verdict};

/// Batches read ahead of the one being imported.
const BATCHES_AHEAD: usize = 2;

/// One end of a copy, as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// A directory: for the source, kedai's data directory or its log
    /// directory; for the destination, a new data directory.
    Dir(PathBuf),
    /// A PostgreSQL database (`postgres://` or `postgresql://`).
    Postgres(String),
}

impl Place {
    /// A `postgres://` or `postgresql://` URL names a database; anything
    /// else is a directory.
    pub fn parse(text: &str) -> Place {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Place::Postgres(text.to_owned())
        } else {
            Place::Dir(PathBuf::from(text))
        }
    }
}

/// What a copy did.
#[derive(Debug, Clone)]
pub struct Copied {
    /// The source, as [`Source::describe`] names it.
    pub from: String,
    /// Where the copy is: the log directory or the database.
    pub to: Source,
    /// The last position the destination held before this copy (0 unless
    /// it resumed one).
    pub resumed_from: Position,
    /// Events copied by this run (positions `resumed_from + 1` to
    /// `last_position`).
    pub events: u64,
    pub batches: u64,
    pub bytes: u64,
    /// The source's last position and hash when the copy started: the
    /// copy's end.
    pub last_position: Position,
    pub source_hash: Hash,
    /// How long copying took (without the verification).
    pub copy_time: Duration,
    /// The destination's verification.
    pub verdict: Verdict,
}

impl Copied {
    /// Whether the copy verified and ends where the source did.
    pub fn passed(&self) -> bool {
        match &self.verdict {
            Verdict::Intact(r) => {
                // Positions run from 1 without gaps: as many events as
                // the last position.
                r.events == self.last_position
                    && r.last_position == self.last_position
                    && r.last_hash == self.source_hash
            }
            Verdict::Defect(_) => false,
        }
    }
}

/// Progress of a copy: `done` of `total` events copied, or the
/// verification afterwards.
#[derive(Debug, Clone, Copy)]
pub enum CopyProgress {
    Copying { done: u64, total: u64 },
    Verifying(VerifyProgress),
}

/// Copies the ledger at `from` into `to`; with `resume`, `to` may hold
/// the source's first records, and the copy continues after them (see
/// the module docs).
pub async fn copy(
    from: &Place,
    to: &Place,
    resume: bool,
    progress: impl FnMut(CopyProgress) + Send + 'static,
) -> Result<Copied, ReplayError> {
    let progress = Arc::new(std::sync::Mutex::new(progress));
    let report = move |p| (progress.lock().unwrap_or_else(|e| e.into_inner()))(p);
    let (source, from_text) = open_source(from).await?;
    let start = source.chain_end().await?;
    // What the destination holds is checked before it is opened for
    // writing (which may tidy a log's files), so that a refusal changes
    // nothing; and again once this copy is its only writer.
    if resume && let Some(held) = held_read_only(to).await? {
        check_prefix(&*source, held, start.last_position).await?;
    }
    let (destination, to_source) = open_destination(to, resume).await?;
    let held = destination.chain_end().await?;
    check_prefix(&*source, held, start.last_position).await?;
    let held = held.last_position;
    let began = Instant::now();
    let (events, batches, bytes) = {
        let report = report.clone();
        transfer(source, &*destination, held, start.last_position, move |done| {
            report(CopyProgress::Copying {
                done,
                total: start.last_position,
            })
        })
        .await
        .map_err(|e| {
            ReplayError::Invalid(format!(
                "{e}; the destination ({}) holds the part copied before this: run the same copy with --resume to continue it, or delete it",
                to_source.describe()
            ))
        })?
    };
    let copy_time = began.elapsed();
    let end = destination.chain_end().await?;
    if (end.last_position, end.last_hash) != (start.last_position, start.last_hash) {
        return Err(ReplayError::Invalid(format!(
            "the copy ends at position {}, the source at {}: the copy is incomplete or differs",
            end.last_position, start.last_position
        )));
    }
    // The writer goes (the log's lock is released) before the verifier
    // reads the destination from scratch.
    drop(destination);
    let verdict = verify::verify(&to_source, None, None, move |p| {
        report(CopyProgress::Verifying(p))
    })
    .await?;
    Ok(Copied {
        from: from_text,
        to: to_source,
        resumed_from: held,
        events,
        batches,
        bytes,
        last_position: start.last_position,
        source_hash: start.last_hash,
        copy_time,
        verdict,
    })
}

/// The outcome as text.
pub fn render_text(c: &Copied, rate: Rate) -> String {
    let resumed = if c.resumed_from > 0 {
        format!(
            "; it held positions 1 to {} already",
            thousands(c.resumed_from)
        )
    } else {
        String::new()
    };
    let range = if c.events > 0 {
        format!(
            "positions {} to {}, ",
            thousands(c.resumed_from + 1),
            thousands(c.last_position)
        )
    } else {
        String::new()
    };
    let mut out = format!(
        "copied {} events ({range}{} bytes of records, {} batches) from the {} to the {}{resumed}: {rate}\n",
        thousands(c.events),
        thousands(c.bytes),
        thousands(c.batches),
        c.from,
        c.to.describe(),
    );
    let hash = hash_to_hex(&c.source_hash);
    match &c.verdict {
        Verdict::Intact(r) if c.passed() => {
            out.push_str(&format!(
                "copy verified: intact, {} events, hash chain and every checksum hold\n",
                thousands(r.events)
            ));
            out.push_str(&format!("head hash: {hash} (the source's)\n"));
        }
        Verdict::Intact(r) => out.push_str(&format!(
            "COPY DIFFERS: it verifies, but ends at position {} with head hash {}; the source ends at {} with {hash}\n",
            r.last_position,
            hash_to_hex(&r.last_hash),
            c.last_position
        )),
        Verdict::Defect(d) => out.push_str(&format!(
            "COPY DEFECT at {}: {}: {}\n",
            d.position
                .map_or_else(|| "the start".to_owned(), |p| format!("position {p}")),
            d.location.display(),
            d.reason
        )),
    }
    out
}

/// The outcome as JSON.
pub fn render_json(c: &Copied, rate: Rate) -> Value {
    let verified = match &c.verdict {
        Verdict::Intact(r) => json!({
            "intact": true,
            "events": r.events,
            "last_position": r.last_position,
            "head_hash": hash_to_hex(&r.last_hash),
        }),
        Verdict::Defect(d) => json!({
            "intact": false,
            "defect": {
                "position": d.position,
                "location": d.location.display().to_string(),
                "reason": d.reason,
            },
        }),
    };
    json!({
        "copied": c.events,
        "resumed_from": c.resumed_from,
        "last_position": c.last_position,
        "bytes": c.bytes,
        "batches": c.batches,
        "source_head_hash": hash_to_hex(&c.source_hash),
        "destination": verified,
        "passed": c.passed(),
        "seconds": rate.elapsed.as_secs_f64(),
        "events_per_second": rate.per_second().round() as u64,
    })
}

/// Opens the source read-only.
async fn open_source(from: &Place) -> Result<(Arc<dyn Verbatim>, String), ReplayError> {
    let source = match from {
        Place::Dir(dir) => Source::Log { dir: log_dir(dir)? },
        Place::Postgres(url) => Source::Postgres { url: url.clone() },
    };
    let store = source.open_in_order().await?;
    Ok((store, source.describe()))
}

fn options() -> PgOptions {
    PgOptions {
        pool_size: 2,
        listen: false,
        ..PgOptions::default()
    }
}

/// Opens the destination for writing, after checking that it holds no
/// events; refuses, writing nothing, when it does. With `resume`, a
/// directory may hold a log (`DIR/log`) and a database events: the
/// caller checks that they are the source's first records.
async fn open_destination(
    to: &Place,
    resume: bool,
) -> Result<(Arc<dyn Verbatim>, Source), ReplayError> {
    match to {
        Place::Dir(dir) => {
            let log = dir.join(LOG_DIR_NAME);
            if !(resume && log.is_dir()) {
                refuse_non_empty_dir(dir, resume)?;
            }
            let path = log.clone();
            let store = tokio::task::spawn_blocking(move || LogStore::open(path))
                .await
                .map_err(|e| ReplayError::Invalid(format!("creating the log: {e}")))??;
            Ok((Arc::new(store), Source::Log { dir: log }))
        }
        Place::Postgres(url) => {
            // Checked read-only first, so that a refused database is not
            // even migrated; a database without kedai's schema has no
            // events (the writer creates the schema).
            if !resume && let Ok(reader) = PgStore::connect_read_only(url, options()).await {
                refuse_events(reader.chain_end().await?.last_position)?;
            }
            let store = PgStore::connect(url, options()).await?;
            if !resume {
                refuse_events(store.chain_end().await?.last_position)?;
            }
            let source = Source::Postgres { url: url.clone() };
            Ok((Arc::new(store), source))
        }
    }
}

fn refuse_events(last_position: Position) -> Result<(), ReplayError> {
    if last_position > 0 {
        return Err(ReplayError::Invalid(format!(
            "the destination PostgreSQL database already holds events (positions 1 to {last_position}): copy only into a database without events, or add --resume to continue a copy of the same ledger"
        )));
    }
    Ok(())
}

/// A destination directory must not exist, or be empty (`resume`: or
/// hold a log, which the caller has looked for).
fn refuse_non_empty_dir(dir: &Path, resume: bool) -> Result<(), ReplayError> {
    match fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(entry) => {
                let name = entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .unwrap_or_default();
                let hint = if resume {
                    format!("there is no kedai log ({LOG_DIR_NAME}/) in it to resume")
                } else {
                    "copy only into a new or empty directory, or add --resume to continue a copy of the same ledger".to_owned()
                };
                Err(ReplayError::Invalid(format!(
                    "the destination {} is not empty (it holds {name:?}): {hint}",
                    dir.display()
                )))
            }
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => Err(ReplayError::Invalid(format!(
            "the destination {} is not a directory",
            dir.display()
        ))),
        Err(e) => Err(ReplayError::io(
            format!("reading the destination {}", dir.display()),
            e,
        )),
    }
}

/// Where a destination to resume ends, read without writing: `None` when
/// it holds no ledger yet.
async fn held_read_only(to: &Place) -> Result<Option<ChainEnd>, ReplayError> {
    let reader = match to {
        Place::Dir(dir) => {
            let log = dir.join(LOG_DIR_NAME);
            if !log.is_dir() {
                return Ok(None);
            }
            Source::Log { dir: log }.open_in_order().await?
        }
        Place::Postgres(url) => match PgStore::connect_read_only(url, options()).await {
            Ok(reader) => Arc::new(reader),
            // No schema yet (or no server: opening it to write says so).
            Err(_) => return Ok(None),
        },
    };
    Ok(Some(reader.chain_end().await?))
}

/// Checks that the records the destination holds (`held`: none is fine)
/// are the source's first ones: its last record is the source's at the
/// same position (the hash of a record covers the chain before it), and
/// the source has at least as many. Refuses, naming the position, when
/// not.
async fn check_prefix(
    source: &dyn Verbatim,
    held: ChainEnd,
    source_end: Position,
) -> Result<(), ReplayError> {
    if held.last_position == 0 {
        return Ok(());
    }
    let not_a_copy = |why: String| {
        ReplayError::Invalid(format!(
            "the destination holds events (positions 1 to {}) that are not a copy of the source's: {why}; nothing was copied",
            held.last_position
        ))
    };
    if held.last_position > source_end {
        return Err(not_a_copy(format!(
            "the source ends at position {source_end}"
        )));
    }
    let theirs = source
        .read_records(held.last_position - 1, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            not_a_copy(format!(
                "the source has no record at position {}",
                held.last_position
            ))
        })?;
    let theirs = format::hash_body(&theirs);
    if theirs != held.last_hash {
        return Err(not_a_copy(format!(
            "the record at position {} differs (hash {} in the destination, {} in the source)",
            held.last_position,
            hash_to_hex(&held.last_hash),
            hash_to_hex(&theirs)
        )));
    }
    Ok(())
}

/// Copies positions `after + 1..=until` from `source` into `destination`
/// (which holds positions 1 to `after`); returns the events, batches and
/// bytes copied.
async fn transfer(
    source: Arc<dyn Verbatim>,
    destination: &dyn Verbatim,
    after: Position,
    until: Position,
    mut progress: impl FnMut(u64),
) -> Result<(u64, u64, u64), ReplayError> {
    let (tx, mut rx) = mpsc::channel(BATCHES_AHEAD);
    let reader = tokio::spawn(read_batches(source, after, until, tx));
    let (mut events, mut batches, mut bytes) = (after, 0, 0);
    while let Some(batch) = rx.recv().await {
        let batch = batch?;
        let n = batch.len() as u64;
        bytes += batch.iter().map(|b| b.len() as u64).sum::<u64>();
        let outcome = destination.import(batch).await?;
        if (outcome.first_position, outcome.last_position) != (events + 1, events + n) {
            return Err(ReplayError::Invalid(format!(
                "the destination stored records {} to {} at positions {} to {}: something else is writing to it",
                events + 1,
                events + n,
                outcome.first_position,
                outcome.last_position
            )));
        }
        events += n;
        batches += 1;
        progress(events);
    }
    reader
        .await
        .map_err(|e| ReplayError::Invalid(format!("reading the source: {e}")))?;
    if events != until {
        return Err(ReplayError::Invalid(format!(
            "the source ended at position {events}, before its end {until} when the copy started"
        )));
    }
    Ok((events - after, batches, bytes))
}

type Batch = Result<Vec<Vec<u8>>, StoreError>;

/// Reads records `after + 1..=until` and sends them in batches of at
/// most [`IMPORT_RECORDS_MAX`] records and [`IMPORT_BYTES_MAX`] bytes (a
/// larger single record alone).
async fn read_batches(
    source: Arc<dyn Verbatim>,
    mut after: Position,
    until: Position,
    tx: mpsc::Sender<Batch>,
) {
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut batch_bytes = 0;
    while after < until {
        let want = (until - after).min(IMPORT_RECORDS_MAX as u64) as usize;
        let page = match source.read_records(after, want).await {
            Ok(page) if page.is_empty() => break,
            Ok(page) => page,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        after += page.len() as u64;
        for body in page {
            let full = batch.len() == IMPORT_RECORDS_MAX
                || (!batch.is_empty() && batch_bytes + body.len() > IMPORT_BYTES_MAX);
            if full {
                batch_bytes = 0;
                if tx.send(Ok(std::mem::take(&mut batch))).await.is_err() {
                    return;
                }
            }
            batch_bytes += body.len();
            batch.push(body);
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(Ok(batch)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_databases_and_anything_else_a_directory() {
        assert_eq!(
            Place::parse("postgres://kedai@db/kedai"),
            Place::Postgres("postgres://kedai@db/kedai".into())
        );
        assert_eq!(
            Place::parse("postgresql://db/kedai"),
            Place::Postgres("postgresql://db/kedai".into())
        );
        assert_eq!(
            Place::parse("/var/lib/kedai"),
            Place::Dir("/var/lib/kedai".into())
        );
    }

    #[test]
    fn only_a_new_or_empty_directory_is_a_destination() {
        let root = tempfile::tempdir().unwrap();
        assert!(refuse_non_empty_dir(&root.path().join("new"), false).is_ok());
        assert!(refuse_non_empty_dir(root.path(), false).is_ok());
        fs::write(root.path().join("notes.txt"), b"x").unwrap();
        let err = refuse_non_empty_dir(root.path(), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("not empty") && err.contains("notes.txt") && err.contains("--resume"),
            "{err}"
        );
        let err = refuse_non_empty_dir(root.path(), true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no kedai log"), "{err}");
        let err = refuse_non_empty_dir(&root.path().join("notes.txt"), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a directory"), "{err}");
    }
}
