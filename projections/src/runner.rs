//! Keeping projections current: a runner follows the store (a subscription
//! from the projections' position), applies every event, and publishes the
//! position reached; readers can wait, bounded, for a position (to read
//! their own writes). Snapshots (position and state as MessagePack, with a
//! checksum, written atomically) let a restart begin from there instead of
//! from the first event.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use crc_fast::{CrcAlgorithm, Digest};
use kedai_engine::event::Position;
use kedai_engine::store::{EventStore, StoreError, subscribe};
use tokio::sync::watch;

use crate::{ApplyError, Projections};

/// Events applied per write lock: readers wait at most this long.
pub const APPLY_BATCH_EVENTS: usize = 1_000;

const SNAPSHOT_MAGIC: [u8; 8] = *b"KEDAISNP";
/// 2: checkouts, message delivery and the outbox. 3: conversations keep
/// only their last message (messages are read from the log). 4: the
/// ledger keeps a mark per entry (entries are read from the log). 5: the
/// stock history keeps a mark per line (lines are read from the log). 6:
/// each shop's views are bytes of their own (read on several threads). 7:
/// a product's, SKU's or category's tally counts an order once, however
/// many of its lines it has (a snapshot from before would keep the old
/// counts for its days, so it is not read: the log is folded again).
const SNAPSHOT_VERSION: u16 = 7;

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
}

/// A position was not reached in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("projections reached position {reached}, not {wanted}, in time")]
pub struct Lagging {
    pub reached: Position,
    pub wanted: Position,
}

/// Shared, read-only access to the projections the runner keeps current.
#[derive(Debug, Clone)]
pub struct ProjectionHandle {
    state: Arc<RwLock<Projections>>,
    position: watch::Receiver<Position>,
    stopped: Arc<OnceLock<String>>,
}

impl ProjectionHandle {
    /// Reads the projections (a shared lock, held for `f` only).
    pub fn read<R>(&self, f: impl FnOnce(&Projections) -> R) -> R {
        f(&self.lock())
    }

    fn lock(&self) -> RwLockReadGuard<'_, Projections> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The position the projections reflect.
    pub fn position(&self) -> Position {
        *self.position.borrow()
    }

    /// Waits until the projections reflect `position`, at most `timeout`.
    pub async fn wait_for(&self, position: Position, timeout: Duration) -> Result<(), Lagging> {
        let mut rx = self.position.clone();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|p| *p >= position)).await;
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Lagging {
                reached: self.position(),
                wanted: position,
            }),
        }
    }

    /// A watch of the position.
    pub fn watch(&self) -> watch::Receiver<Position> {
        self.position.clone()
    }

    /// Why the runner stopped following the store (an error, or a
    /// panic), if it did: the projections then stay where they are while
    /// the log goes on, which a health check must tell. `None` while it
    /// runs, and after it stopped when asked to.
    pub fn stopped(&self) -> Option<&str> {
        self.stopped.get().map(String::as_str)
    }
}

/// Marks the runner stopped if it is dropped by a panic (its task's future
/// is dropped while unwinding).
struct PanicWatch(Arc<OnceLock<String>>);

impl Drop for PanicWatch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.set("the projection runner panicked".to_owned());
        }
    }
}

/// When the runner writes snapshots.
#[derive(Debug, Clone)]
pub struct SnapshotPolicy {
    pub path: std::path::PathBuf,
    /// At least this many events since the last snapshot...
    pub every_events: u64,
    /// ...and at least this long.
    pub every: Duration,
}

/// Follows a store and keeps projections current.
#[derive(Debug)]
pub struct Runner {
    store: Arc<dyn EventStore>,
    state: Arc<RwLock<Projections>>,
    position: watch::Sender<Position>,
    snapshots: Option<SnapshotPolicy>,
    stopped: Arc<OnceLock<String>>,
}

impl Runner {
    /// A runner starting from `initial` (empty, or loaded from a snapshot).
    pub fn new(
        store: Arc<dyn EventStore>,
        initial: Projections,
        snapshots: Option<SnapshotPolicy>,
    ) -> (Runner, ProjectionHandle) {
        let (position, rx) = watch::channel(initial.position);
        let state = Arc::new(RwLock::new(initial));
        let stopped = Arc::new(OnceLock::new());
        let handle = ProjectionHandle {
            state: Arc::clone(&state),
            position: rx,
            stopped: Arc::clone(&stopped),
        };
        (
            Runner {
                store,
                state,
                position,
                snapshots,
                stopped,
            },
            handle,
        )
    }

    /// Applies events until `stop` turns true (or the store fails, or an
    /// event does not apply: then [`ProjectionHandle::stopped`] says why).
    /// Writes a last snapshot on the way out, if snapshots are on.
    pub async fn run(self, stop: watch::Receiver<bool>) -> Result<(), RunError> {
        let _watch = PanicWatch(Arc::clone(&self.stopped));
        let followed = self.follow(stop).await;
        if let Err(e) = &followed {
            tracing::error!(error = %e, "the projections stopped following the log");
            let _ = self.stopped.set(e.to_string());
        }
        followed
    }

    async fn follow(&self, mut stop: watch::Receiver<bool>) -> Result<(), RunError> {
        let start = self
            .state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .position;
        let mut sub = subscribe(Arc::clone(&self.store), start);
        let mut last_snapshot = (start, Instant::now());
        loop {
            let batch = tokio::select! {
                batch = sub.next_batch(APPLY_BATCH_EVENTS) => batch?,
                _ = stop.wait_for(|s| *s) => break,
            };
            let (reached, failed) = {
                let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
                let failed = batch.iter().find_map(|event| state.apply(event).err());
                (state.position, failed)
            };
            // What was applied before an event that did not is shown.
            self.position.send_replace(reached);
            if let Some(e) = failed {
                return Err(e.into());
            }
            if let Some(policy) = &self.snapshots
                && reached - last_snapshot.0 >= policy.every_events
                && last_snapshot.1.elapsed() >= policy.every
            {
                self.snapshot(policy).await;
                last_snapshot = (reached, Instant::now());
            }
        }
        if let Some(policy) = &self.snapshots {
            self.snapshot(policy).await;
        }
        Ok(())
    }

    async fn snapshot(&self, policy: &SnapshotPolicy) {
        // The state's read lock is held while it is encoded into the file
        // and the file is flushed: readers go on; only this runner, the one
        // writer, waits (it waits for the snapshot anyway).
        let (path, state) = (policy.path.clone(), Arc::clone(&self.state));
        let written = tokio::task::spawn_blocking(move || {
            let state = state.read().unwrap_or_else(|e| e.into_inner());
            write_snapshot(&path, &state).map(|()| state.position)
        })
        .await;
        match written {
            Ok(Ok(position)) => tracing::info!(position, "projection snapshot written"),
            Ok(Err(e)) => tracing::warn!(error = %e, "could not write projection snapshot"),
            Err(e) => tracing::warn!(error = %e, "projection snapshot task failed"),
        }
    }
}

/// The header's length (where the payload starts): the magic (8 bytes),
/// the version (2), the position (8), the payload's length (8) and its
/// CRC32C (4).
const SNAPSHOT_HEADER_LEN: u64 = 30;

/// Writes a snapshot of `projections` atomically: a temporary file, fsync,
/// rename, fsync of the directory. The state is encoded straight into the
/// file (only a window of shops' bytes is made in memory first), and the
/// header's length and checksum are filled in after it. A temporary file
/// that could not be finished or put in place (a full disk) is removed:
/// it would hold space the log needs.
pub fn write_snapshot(path: &Path, projections: &Projections) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = write_snapshot_file(&tmp, projections).and_then(|()| fs::rename(&tmp, path));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// The snapshot's file at `tmp`, flushed to the disk.
fn write_snapshot_file(tmp: &Path, projections: &Projections) -> io::Result<()> {
    let mut f = BufWriter::with_capacity(1 << 20, File::create(tmp)?);
    f.write_all(&SNAPSHOT_MAGIC)?;
    f.write_all(&SNAPSHOT_VERSION.to_le_bytes())?;
    f.write_all(&projections.position.to_le_bytes())?;
    f.write_all(&[0; 12])?;
    let mut payload = Summed::new(f);
    projections.write_bytes(&mut payload)?;
    let (len, crc) = (payload.len, payload.crc.finalize() as u32);
    let mut f = payload.out.into_inner().map_err(|e| e.into_error())?;
    f.seek(SeekFrom::Start(SNAPSHOT_HEADER_LEN - 12))?;
    f.write_all(&len.to_le_bytes())?;
    f.write_all(&crc.to_le_bytes())?;
    f.sync_all()
}

/// A writer (or reader) that passes bytes on, counting them and summing
/// their CRC32C.
struct Summed<W> {
    out: W,
    crc: Digest,
    len: u64,
}

impl<T> Summed<T> {
    fn new(out: T) -> Summed<T> {
        Summed {
            out,
            crc: Digest::new(CrcAlgorithm::Crc32Iscsi),
            len: 0,
        }
    }
}

impl<W: Write> Write for Summed<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl<R: Read> Read for Summed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.out.read(buf)?;
        self.crc.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }
}

/// Why a snapshot could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("reading snapshot: {0}")]
    Io(#[from] io::Error),
    #[error("snapshot is damaged: {0}")]
    Damaged(String),
}

/// Loads a snapshot; `Ok(None)` if there is none.
///
/// The file is read twice, never whole in memory: once for its checksum,
/// then (usually from the page cache) for the state, a window of shops at
/// a time (see [`Projections::read_bytes`]), summed again as it is read.
pub fn load_snapshot(path: &Path) -> Result<Option<Projections>, SnapshotError> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let damaged = |why: &str| SnapshotError::Damaged(why.to_owned());
    let mut header = [0; SNAPSHOT_HEADER_LEN as usize];
    match file.read_exact(&mut header) {
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(damaged("not a kedai projection snapshot"));
        }
        read => read?,
    }
    if header[..8] != SNAPSHOT_MAGIC {
        return Err(damaged("not a kedai projection snapshot"));
    }
    let version = u16::from_le_bytes([header[8], header[9]]);
    if version != SNAPSHOT_VERSION {
        return Err(damaged(&format!(
            "snapshot version {version}, this build reads {SNAPSHOT_VERSION}"
        )));
    }
    let position = u64::from_le_bytes(header[10..18].try_into().expect("8 bytes"));
    let len = u64::from_le_bytes(header[18..26].try_into().expect("8 bytes"));
    let crc = u32::from_le_bytes(header[26..30].try_into().expect("4 bytes"));
    let mut summed = Summed::new(io::sink());
    io::copy(
        &mut BufReader::with_capacity(1 << 20, (&mut file).take(len)),
        &mut summed,
    )?;
    if summed.len < len {
        return Err(damaged("snapshot is truncated"));
    }
    if summed.crc.finalize() as u32 != crc {
        return Err(damaged("snapshot checksum mismatch"));
    }
    file.seek(SeekFrom::Start(SNAPSHOT_HEADER_LEN))?;
    let mut payload = Summed::new(BufReader::with_capacity(1 << 20, file.take(len)));
    let projections = Projections::read_bytes(&mut payload).map_err(|e| damaged(&e.to_string()))?;
    io::copy(&mut payload, &mut io::sink())?;
    if payload.len != len || payload.crc.finalize() as u32 != crc {
        return Err(damaged("snapshot changed while it was read"));
    }
    if projections.position != position {
        return Err(damaged(
            "snapshot header and state disagree on the position",
        ));
    }
    Ok(Some(projections))
}

/// Folds the log from `start` up to and including `until` (or its end):
/// what a rebuild and the auditor's as-of views use.
pub async fn rebuild(
    store: &dyn EventStore,
    mut start: Projections,
    until: Option<Position>,
    mut progress: impl FnMut(Position),
) -> Result<Projections, RunError> {
    let end = match until {
        Some(p) => p,
        None => store.last_position().await?,
    };
    while start.position < end {
        let want = (end - start.position).min(10_000) as usize;
        let batch = store.read_all(start.position, want).await?;
        if batch.is_empty() {
            break;
        }
        for event in &batch {
            start.apply(event)?;
        }
        progress(start.position);
    }
    Ok(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_marks_the_runner_stopped_and_a_calm_end_does_not() {
        let stopped = Arc::new(OnceLock::new());
        let watched = Arc::clone(&stopped);
        let joined = std::thread::spawn(move || {
            let _watch = PanicWatch(watched);
            panic!("a fold went wrong");
        })
        .join();
        assert!(joined.is_err());
        assert_eq!(
            stopped.get().map(String::as_str),
            Some("the projection runner panicked")
        );
        let calm = Arc::new(OnceLock::new());
        drop(PanicWatch(Arc::clone(&calm)));
        assert_eq!(calm.get(), None);
    }
}
