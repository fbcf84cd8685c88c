//! The `log` backend: kedai's embedded, durable event store.
//!
//! Segment files in one directory hold framed, checksummed, hash-chained
//! records (see [`format`](mod@format) and `docs/log-format.md`). One writer thread owns
//! the files: appends arrive over a bounded channel, the writer drains what
//! is queued (up to a batch limit), checks expected versions and event ids,
//! encodes, writes once, `fdatasync`s once and only then acknowledges the
//! whole batch (group commit).
//!
//! Reads by stream and by position are served from memory indexes: per
//! segment, the end offset of every record; per stream, its positions. On
//! open they are rebuilt from each sealed segment's sidecar index (written
//! when the segment is sealed) plus a scan of the last segment, where a torn
//! tail from a crash is cut off. Every record read is checked against its
//! checksum and position again.
//!
//! A lock file keeps a second writer out of the directory; a read-only open
//! (for auditors) takes no lock and never writes.
//!
//! Besides appends, the writer takes imports ([`import`](super::import)):
//! records of another log, stored as they are, one batch per write and
//! fsync, after checking that they continue this log's chain.

pub mod format;
pub mod segment;
pub mod verify;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::sync::{mpsc, oneshot, watch};
use uuid::Uuid;

use self::format::{Frame, GENESIS_HASH, Hash, SEGMENT_HEADER_LEN, SegmentHeader};
use self::segment::{ScanChecks, ScanEnd, SegmentData, SegmentIndex};
use super::import::{ChainEnd, IMPORT_RECORDS_MAX, RecordPage, Verbatim};
use super::{AppendOutcome, AppendRequest, AppendTicket, EventStore, READ_EVENTS_MAX, StoreError};
use crate::event::{Position, RecordedEvent, StreamId, Timestamp};

/// Positions of each stream's events. foldhash: these maps are rebuilt
/// with millions of entries on every open.
pub(crate) type StreamIndex = DashMap<StreamId, Vec<Position>, foldhash::fast::RandomState>;
/// Position of every recorded event id.
pub(crate) type IdIndex = HashMap<Uuid, Position, foldhash::fast::RandomState>;

/// Longest a lookup waits for the events it found to become durable.
const LOOKUP_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(10);

/// Name of the lock file a writer holds in the log directory.
pub const LOCK_FILE_NAME: &str = "LOCK";

/// Tuning and test hooks of the log backend.
#[derive(Clone, Debug)]
pub struct LogOptions {
    /// A segment is sealed and a new one started once a batch would take
    /// it past this size. At most 4 GiB (offsets are 32-bit).
    pub segment_bytes_max: u64,
    /// Most events written with one fsync.
    pub batch_events_max: usize,
    /// Most payload bytes written with one fsync (a single larger append
    /// still goes through, alone).
    pub batch_bytes_max: usize,
    /// Appends that may wait for the writer before callers are slowed down.
    pub queue_requests_max: usize,
    /// Check the checksum of every record of sealed segments on open (the
    /// last segment is always checked).
    pub verify_checksums_on_open: bool,
    /// Fill each new segment with zeros before it is used, so appends
    /// overwrite allocated blocks and every fsync is cheaper. The next
    /// segment is prepared in the background; the first one of a new log
    /// when it is created.
    pub preallocate: bool,
    /// Faults to inject into writes and syncs (tests only).
    pub faults: Option<Arc<dyn FaultInjector>>,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            segment_bytes_max: 64 << 20,
            batch_events_max: 16_384,
            batch_bytes_max: 8 << 20,
            queue_requests_max: 4_096,
            verify_checksums_on_open: true,
            preallocate: true,
            faults: None,
        }
    }
}

/// Injects storage faults behind the log (for tests of failure handling).
pub trait FaultInjector: Send + Sync + fmt::Debug {
    /// Called before the writer writes `len` bytes.
    fn before_write(&self, len: usize) -> WriteFault;
    /// Called before the writer syncs; an error fails the sync.
    fn before_sync(&self) -> io::Result<()>;
}

/// What an injected fault does to a write.
#[derive(Debug)]
pub enum WriteFault {
    /// Write normally.
    None,
    /// Write nothing and fail with this error.
    Fail(io::Error),
    /// Write only this many bytes, then fail with this error (a disk that
    /// fills up mid-write).
    Partial(usize, io::Error),
}

/// A segment as readers see it.
#[derive(Debug)]
pub(crate) struct Segment {
    first_position: Position,
    path: PathBuf,
    file: File,
    /// End offset of each record, in position order.
    ends: RwLock<Vec<u32>>,
    /// For a sealed segment of a log opened in order: how many records it
    /// holds (up to where the next segment starts). Its `ends` are then
    /// read on its first read, from its sidecar index or, without a sound
    /// one, from the segment itself.
    sealed_count: Option<usize>,
}

impl Segment {
    fn new(first_position: Position, path: PathBuf, file: File, ends: Vec<u32>) -> Self {
        Segment {
            first_position,
            path,
            file,
            ends: RwLock::new(ends),
            sealed_count: None,
        }
    }

    /// A sealed segment of `count` records whose ends are read when it is
    /// first read.
    fn sealed_lazy(first_position: Position, path: PathBuf, file: File, count: usize) -> Self {
        Segment {
            sealed_count: Some(count),
            ..Segment::new(first_position, path, file, Vec::new())
        }
    }

    fn record_count(&self) -> usize {
        self.sealed_count
            .unwrap_or_else(|| read_lock(&self.ends).len())
    }

    /// The end offset of each record, read first if this is a lazily
    /// opened sealed segment not read before.
    fn ends(&self) -> Result<std::sync::RwLockReadGuard<'_, Vec<u32>>, StoreError> {
        if let Some(count) = self.sealed_count {
            let mut ends = write_lock(&self.ends);
            if ends.is_empty() {
                *ends = self.read_ends(count)?;
            }
        }
        Ok(read_lock(&self.ends))
    }

    fn read_ends(&self, count: usize) -> Result<Vec<u32>, StoreError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let ends: Vec<u32> = match SegmentIndex::load_ends(dir, self.first_position)
            .filter(|index| file_len_is(&self.path, index.data_end))
        {
            Some(index) => index.ends,
            None => {
                let data = SegmentData::read(&self.path)?;
                let checks = ScanChecks {
                    first_position: self.first_position,
                    prev_hash: data.header.prev_hash,
                    verify_chain: false,
                    is_last: false,
                };
                let (index, _) = SegmentIndex::build_with(&data, checks, |_| Ok(()))?;
                index.records.iter().map(|r| r.end).collect()
            }
        };
        if ends.len() != count {
            return Err(StoreError::Corrupt {
                segment: self.path.clone(),
                offset: 0,
                position: Some(self.first_position + ends.len() as u64),
                reason: format!(
                    "segment holds {} records, but the next segment starts {count} positions after its first",
                    ends.len()
                ),
            });
        }
        Ok(ends)
    }
}

/// What readers and the writer share.
#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    segments: RwLock<Vec<Arc<Segment>>>,
    /// Positions of each stream's durable events (and, briefly, of events
    /// being published: readers filter by `durable`).
    streams: StreamIndex,
    /// False when opened to be read in order only ([`LogStore::open_in_order`]):
    /// `streams` is then empty.
    streams_indexed: bool,
    /// Last position that is durable and fully indexed.
    durable: AtomicU64,
    head: watch::Sender<Position>,
    /// Where the durable log ends (the syncer keeps it; the writer resets
    /// to it after a failed fsync).
    durable_end: Mutex<writer::LogEnd>,
    /// Set when the writer can no longer write safely.
    failure: Mutex<Option<String>>,
    stats: StatCounters,
}

/// Counters the writer keeps (for benches and metrics).
#[derive(Debug, Default)]
struct StatCounters {
    batches: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
}

/// What the writer has done since the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Batches written, each with one fsync.
    pub batches: u64,
    pub events: u64,
    pub bytes: u64,
}

fn read_lock<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

fn write_lock<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

/// The embedded log store.
pub struct LogStore {
    shared: Arc<Shared>,
    /// `None` when opened read-only.
    tx: Option<mpsc::Sender<writer::Message>>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for LogStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogStore")
            .field("dir", &self.shared.dir)
            .field("durable", &self.shared.durable.load(Ordering::Acquire))
            .field("read_only", &self.tx.is_none())
            .finish()
    }
}

/// What opening found, before the store starts serving.
struct Loaded {
    segments: Vec<Arc<Segment>>,
    streams: StreamIndex,
    ids: IdIndex,
    last_position: Position,
    last_hash: Hash,
    last_recorded_at: Timestamp,
    /// Offset just past the last record of the last segment.
    active_len: u64,
    /// Length of the last segment's file (more than `active_len` when it
    /// was preallocated).
    active_file_len: u64,
    /// Bytes of torn tail cut off (or, read-only, ignored).
    torn_bytes: u64,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Writer,
    ReadOnly,
    /// Read-only, in position order only: no stream index is built.
    InOrder,
}

impl Mode {
    fn indexes_streams(self) -> bool {
        self != Mode::InOrder
    }
}

impl LogStore {
    /// Opens (creating if needed) the log in `dir` for writing, with
    /// default options.
    pub fn open(dir: impl AsRef<Path>) -> Result<LogStore, StoreError> {
        Self::open_with(dir, LogOptions::default())
    }

    /// Opens the log in `dir` for writing.
    pub fn open_with(dir: impl AsRef<Path>, options: LogOptions) -> Result<LogStore, StoreError> {
        let dir = dir.as_ref().to_owned();
        assert!(options.segment_bytes_max <= u64::from(u32::MAX));
        assert!(options.batch_events_max > 0 && options.queue_requests_max > 0);
        fs::create_dir_all(&dir)
            .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let lock = take_lock(&dir)?;
        let loaded = load(&dir, Mode::Writer, &options)?;
        if loaded.torn_bytes > 0 {
            tracing::warn!(
                dir = %dir.display(),
                bytes = loaded.torn_bytes,
                position = loaded.last_position,
                "cut off a torn tail left by a crash"
            );
        }
        let end = writer::LogEnd {
            last_position: loaded.last_position,
            last_hash: loaded.last_hash,
            last_recorded_at: loaded.last_recorded_at,
            active_len: loaded.active_len,
        };
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            segments: RwLock::new(loaded.segments),
            streams: loaded.streams,
            streams_indexed: true,
            durable: AtomicU64::new(loaded.last_position),
            head: watch::channel(loaded.last_position).0,
            durable_end: Mutex::new(end),
            failure: Mutex::new(None),
            stats: StatCounters::default(),
        });
        let (tx, rx) = mpsc::channel(options.queue_requests_max);
        let state = writer::WriterState {
            ids: loaded.ids,
            end,
            file_len: loaded.active_file_len,
        };
        let handle = writer::spawn(Arc::clone(&shared), options, lock, state, rx)?;
        Ok(LogStore {
            shared,
            tx: Some(tx),
            writer: Mutex::new(Some(handle)),
        })
    }

    /// Opens the log in `dir` read-only: no lock, no writes, no repair. A
    /// torn or still-being-written tail is left out, so the store shows a
    /// consistent prefix of what a running writer has written.
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<LogStore, StoreError> {
        LogStore::open_reader(dir.as_ref(), Mode::ReadOnly)
    }

    /// Opens the log in `dir` read-only, to be read in position order only
    /// (`read_all`, `read_page`): like [`open_read_only`](Self::open_read_only)
    /// but without building the index of every stream, which takes most of
    /// an open's time and memory on a big log, and without reading the
    /// sealed segments' indexes until a read reaches each segment (so a
    /// damaged sealed segment is reported by the read, not by the open).
    /// The tail segment is scanned for where its records end, by their
    /// checksums, without following the hash chain (`verify` does) or
    /// decoding its envelopes (a rebuild does, as it reads them).
    /// Reading a stream is refused.
    pub fn open_in_order(dir: impl AsRef<Path>) -> Result<LogStore, StoreError> {
        LogStore::open_reader(dir.as_ref(), Mode::InOrder)
    }

    fn open_reader(dir: &Path, mode: Mode) -> Result<LogStore, StoreError> {
        let dir = dir.to_owned();
        let meta = fs::metadata(&dir)
            .map_err(|e| StoreError::io(format!("opening log directory {}", dir.display()), e))?;
        if !meta.is_dir() {
            return Err(StoreError::io(
                format!("opening log directory {}", dir.display()),
                io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            ));
        }
        let options = LogOptions {
            verify_checksums_on_open: false,
            ..LogOptions::default()
        };
        let loaded = load(&dir, mode, &options)?;
        let shared = Arc::new(Shared {
            dir,
            segments: RwLock::new(loaded.segments),
            streams: loaded.streams,
            streams_indexed: mode.indexes_streams(),
            durable: AtomicU64::new(loaded.last_position),
            head: watch::channel(loaded.last_position).0,
            durable_end: Mutex::new(writer::LogEnd {
                last_position: loaded.last_position,
                last_hash: loaded.last_hash,
                last_recorded_at: loaded.last_recorded_at,
                active_len: loaded.active_len,
            }),
            failure: Mutex::new(None),
            stats: StatCounters::default(),
        });
        Ok(LogStore {
            shared,
            tx: None,
            writer: Mutex::new(None),
        })
    }

    /// The log directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What the writer has done since open.
    pub fn stats(&self) -> LogStats {
        let c = &self.shared.stats;
        LogStats {
            batches: c.batches.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
        }
    }

    /// Number of segment files.
    pub fn segment_count(&self) -> usize {
        read_lock(&self.shared.segments).len()
    }

    /// Stops the writer after it has finished what is queued, and releases
    /// the lock. Later appends fail with [`StoreError::Unavailable`].
    pub fn shutdown(&mut self) {
        self.tx = None;
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            // The writer only exits by finishing its loop; a panic there is
            // a bug that has already been reported.
            let _ = handle.join();
        }
    }

    fn durable(&self) -> Position {
        self.shared.durable.load(Ordering::Acquire)
    }

    /// Refuses stream reads on a log opened to be read in order only.
    fn streams_indexed(&self) -> Result<(), StoreError> {
        if self.shared.streams_indexed {
            Ok(())
        } else {
            Err(StoreError::Unavailable(
                "this log was opened to be read in order only (no stream index); open it read-only to read streams".into(),
            ))
        }
    }

    /// Reads the events at positions `from..=to`, all in `segment`.
    fn read_range(
        &self,
        segment: &Segment,
        from: Position,
        to: Position,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::with_capacity((to + 1 - from) as usize);
        self.scan_range(segment, from, to, |position, body| {
            let envelope = format::decode_envelope(body)?;
            events.push(envelope.to_recorded(position)?);
            Ok(())
        })?;
        Ok(events)
    }

    /// Reads the records at positions `from..=to`, all in `segment`, and
    /// hands each body that passes its checksum and position checks to
    /// `visit` (whose error is reported as corruption at that record).
    fn scan_range(
        &self,
        segment: &Segment,
        from: Position,
        to: Position,
        mut visit: impl FnMut(Position, &[u8]) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        let mut buf = Vec::new();
        self.read_checked(segment, from, to, &mut buf, |position, body, _| {
            visit(position, body)
        })
    }

    /// Reads the records at positions `from..=to`, all in `segment`, in
    /// one read into the start of `buf` (grown if need be; bytes past
    /// what was read are left as they were), checks each (checksum,
    /// length, position) and hands it to `visit` with where its body lies
    /// in `buf`.
    fn read_checked(
        &self,
        segment: &Segment,
        from: Position,
        to: Position,
        buf: &mut Vec<u8>,
        mut visit: impl FnMut(Position, &[u8], (usize, usize)) -> Result<(), String>,
    ) -> Result<(), StoreError> {
        let (start, ends) = {
            let ends = segment.ends()?;
            let i0 = (from - segment.first_position) as usize;
            let i1 = (to - segment.first_position) as usize;
            assert!(i1 < ends.len(), "position {to} is not indexed");
            let start = if i0 == 0 {
                SEGMENT_HEADER_LEN as u32
            } else {
                ends[i0 - 1]
            };
            (start, ends[i0..=i1].to_vec())
        };
        let end = *ends.last().expect("at least one record");
        let len = (end - start) as usize;
        // Only bytes no earlier read initialised are zeroed: a rebuild
        // reuses its pages' buffers, and zeroing the megabytes each read
        // overwrites was a quarter of the reading thread's time.
        if buf.len() < len {
            buf.resize(len, 0);
        }
        let buf = &mut buf[..len];
        segment
            .file
            .read_exact_at(buf, u64::from(start))
            .map_err(|e| StoreError::io(format!("reading {}", segment.path.display()), e))?;
        let buf = &buf[..];
        let mut offset = 0usize;
        for (i, &record_end) in ends.iter().enumerate() {
            let position = from + i as u64;
            let corrupt = |reason: String| StoreError::Corrupt {
                segment: segment.path.clone(),
                offset: u64::from(start) + offset as u64,
                position: Some(position),
                reason,
            };
            let Frame::Record { body, next } = format::read_frame(buf, offset) else {
                return Err(corrupt(match format::read_frame(buf, offset) {
                    Frame::Bad { reason } => reason,
                    _ => "record is incomplete".into(),
                }));
            };
            if next != (record_end - start) as usize {
                return Err(corrupt("record length disagrees with the index".into()));
            }
            let (_, stored_position) = format::decode_prefix(body);
            if stored_position != position {
                return Err(corrupt(format!(
                    "record holds position {stored_position}, expected {position}"
                )));
            }
            let body_start = offset + format::FRAME_HEADER_LEN;
            visit(position, body, (body_start, next)).map_err(corrupt)?;
            offset = next;
        }
        Ok(())
    }

    /// The segment holding `after + 1` and the last position to read from
    /// it (at most `max` records, none past the durable end); `None` when
    /// there is nothing after `after`.
    fn next_range(&self, after: Position, max: usize) -> Option<(Arc<Segment>, Position)> {
        let durable = self.durable();
        if after >= durable || max == 0 {
            return None;
        }
        let segment = self.segment_of(after + 1);
        let segment_last = segment.first_position + segment.record_count() as u64 - 1;
        let to = durable
            .min(segment_last)
            .min(after.saturating_add(max as u64));
        Some((segment, to))
    }

    fn segment_of(&self, position: Position) -> Arc<Segment> {
        let segments = read_lock(&self.shared.segments);
        let i = segments.partition_point(|s| s.first_position <= position);
        assert!(i > 0, "position {position} precedes the first segment");
        Arc::clone(&segments[i - 1])
    }
}

#[async_trait]
impl Verbatim for LogStore {
    /// At most [`IMPORT_RECORDS_MAX`] records, and none past the end of
    /// the segment that holds `after + 1`.
    async fn read_records(&self, after: Position, max: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        let Some((segment, to)) = self.next_range(after, max.min(IMPORT_RECORDS_MAX)) else {
            return Ok(Vec::new());
        };
        let mut bodies = Vec::with_capacity((to - after) as usize);
        self.scan_range(&segment, after + 1, to, |_, body| {
            bodies.push(body.to_vec());
            Ok(())
        })?;
        Ok(bodies)
    }

    /// The records of one read of one segment, in the buffer read: no
    /// body is copied.
    async fn read_page(
        &self,
        after: Position,
        max: usize,
        spare: RecordPage,
    ) -> Result<RecordPage, StoreError> {
        let mut page = spare.reuse(after + 1);
        let Some((segment, to)) = self.next_range(after, max.min(IMPORT_RECORDS_MAX)) else {
            return Ok(page);
        };
        let (data, spans) = page.parts_mut();
        self.read_checked(&segment, after + 1, to, data, |_, _, span| {
            spans.push(span);
            Ok(())
        })?;
        Ok(page)
    }

    async fn chain_end(&self) -> Result<ChainEnd, StoreError> {
        let end = *self
            .shared
            .durable_end
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(ChainEnd {
            last_position: end.last_position,
            last_hash: end.last_hash,
            last_recorded_at: end.last_recorded_at.0,
        })
    }

    /// Through the writer thread, as a batch of its own: one write, one
    /// fsync.
    async fn import(&self, bodies: Vec<Vec<u8>>) -> Result<AppendOutcome, StoreError> {
        let Some(tx) = &self.tx else {
            return Err(StoreError::ReadOnly);
        };
        let stopped = || StoreError::Unavailable("the log writer has stopped".into());
        let (reply, answer) = oneshot::channel();
        tx.send(writer::Message::Import(bodies, reply))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[async_trait]
impl EventStore for LogStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.submit(request).await?.outcome().await
    }

    async fn submit(&self, request: AppendRequest) -> Result<AppendTicket, StoreError> {
        let Some(tx) = &self.tx else {
            return Err(StoreError::ReadOnly);
        };
        request.validate()?;
        let (reply, answer) = oneshot::channel();
        tx.send(writer::Message::Append(writer::Pending { request, reply }))
            .await
            .map_err(|_| StoreError::Unavailable("the log writer has stopped".into()))?;
        Ok(AppendTicket::waiting(answer))
    }

    async fn event_positions(&self, ids: &[Uuid]) -> Result<Vec<Option<Position>>, StoreError> {
        let stopped = || StoreError::Unavailable("the log writer has stopped".into());
        let Some(tx) = &self.tx else {
            return Err(StoreError::ReadOnly);
        };
        let (reply, answer) = oneshot::channel();
        tx.send(writer::Message::Lookup(ids.to_vec(), reply))
            .await
            .map_err(|_| stopped())?;
        let positions = answer.await.map_err(|_| stopped())?;
        // The writer knows events written but maybe not durable yet: answer
        // only once they are.
        if let Some(last) = positions.iter().flatten().max() {
            let mut head = self.shared.head.subscribe();
            tokio::time::timeout(LOOKUP_WAIT_MAX, head.wait_for(|p| p >= last))
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!(
                        "position {last} did not become durable in time"
                    ))
                })?
                .map_err(|_| stopped())?;
        }
        Ok(positions)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.streams_indexed()?;
        let durable = self.durable();
        let positions: Vec<Position> = match self.shared.streams.get(stream) {
            None => return Ok(Vec::new()),
            Some(p) => p
                .iter()
                .skip(from_version.saturating_sub(1) as usize)
                .take(max.min(READ_EVENTS_MAX))
                .copied()
                .take_while(|&p| p <= durable)
                .collect(),
        };
        let mut events = Vec::with_capacity(positions.len());
        for p in positions {
            let segment = self.segment_of(p);
            events.extend(self.read_range(&segment, p, p)?);
        }
        Ok(events)
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        match self.next_range(after, max.min(READ_EVENTS_MAX)) {
            Some((segment, to)) => self.read_range(&segment, after + 1, to),
            None => Ok(Vec::new()),
        }
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        self.streams_indexed()?;
        let durable = self.durable();
        Ok(self.shared.streams.get(stream).map_or(0, |p| {
            p.iter().take_while(|&&p| p <= durable).count() as u64
        }))
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        Ok(self.durable())
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.shared.head.subscribe()
    }
}

fn take_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE_NAME);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StoreError::io(format!("opening lock file {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: dir.to_owned(),
        }),
        Err(fs::TryLockError::Error(e)) => {
            Err(StoreError::io(format!("locking {}", path.display()), e))
        }
    }
}

/// Name of the zero-filled file prepared in advance to become the next
/// segment.
pub const PREALLOC_FILE_NAME: &str = "next-segment.prealloc";

/// Writes a file of `size` zero bytes and syncs it. Overwriting blocks that
/// are already allocated and written makes each later `fdatasync` cheaper
/// than growing the file (no block allocation or size change to journal).
pub(crate) fn prepare_segment_file(path: &Path, size: u64) -> io::Result<()> {
    const CHUNK: usize = 1 << 20;
    const ALIGN: usize = 4096;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    // The bulk is written with O_DIRECT where the file system allows it:
    // zeros need not pass through (and be copied into) the page cache.
    let direct = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok();
    let mut zeros = vec![0u8; CHUNK + ALIGN];
    let skew = (ALIGN - zeros.as_ptr() as usize % ALIGN) % ALIGN;
    let zeros = &mut zeros[skew..skew + CHUNK];
    let aligned_size = if direct.is_some() {
        size - size % ALIGN as u64
    } else {
        0
    };
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(CHUNK as u64) as usize;
        match &direct {
            Some(direct) if at + n as u64 <= aligned_size && n.is_multiple_of(ALIGN) => {
                direct.write_all_at(&zeros[..n], at)?
            }
            _ => file.write_all_at(&zeros[..n], at)?,
        }
        at += n as u64;
    }
    file.sync_all()
}

/// Makes the segment whose first record will be at `first_position`, from
/// a prepared zero-filled file if one is given, else as a new file: header
/// written and synced, directory entry synced. Returns it with its file
/// length.
pub(crate) fn install_segment(
    dir: &Path,
    first_position: Position,
    prev_hash: Hash,
    prepared: Option<&Path>,
) -> Result<(Segment, u64), StoreError> {
    let path = dir.join(format::segment_file_name(first_position));
    let io_err = |e| StoreError::io(format!("creating segment {}", path.display()), e);
    let file = match prepared {
        Some(prepared) => OpenOptions::new().read(true).write(true).open(prepared),
        None => OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path),
    }
    .map_err(io_err)?;
    let header = SegmentHeader {
        first_position,
        prev_hash,
    };
    file.write_all_at(&header.encode(), 0).map_err(io_err)?;
    file.sync_all().map_err(io_err)?;
    if let Some(prepared) = prepared {
        fs::rename(prepared, &path).map_err(io_err)?;
    }
    segment::sync_dir(dir).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    Ok((Segment::new(first_position, path, file, Vec::new()), len))
}

fn open_segment_file(path: &Path, mode: Mode) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(mode == Mode::Writer)
        .open(path)
        .map_err(|e| StoreError::io(format!("opening segment {}", path.display()), e))
}

/// Rebuilds the memory indexes from the segment files.
fn load(dir: &Path, mode: Mode, options: &LogOptions) -> Result<Loaded, StoreError> {
    let mut files = segment::list_segments(dir)?;
    drop_unfinished_segment(dir, mode, &mut files)?;
    if mode == Mode::Writer {
        remove_temp_files(dir);
    }
    let mut loaded = Loaded {
        segments: Vec::new(),
        streams: StreamIndex::default(),
        ids: IdIndex::default(),
        last_position: 0,
        last_hash: GENESIS_HASH,
        last_recorded_at: Timestamp(i64::MIN),
        active_len: SEGMENT_HEADER_LEN as u64,
        active_file_len: SEGMENT_HEADER_LEN as u64,
        torn_bytes: 0,
    };
    if files.is_empty() {
        if mode == Mode::Writer {
            let prepared = dir.join(PREALLOC_FILE_NAME);
            let prepared = options.preallocate.then(|| {
                prepare_segment_file(&prepared, options.segment_bytes_max)
                    .map(|()| prepared)
                    .map_err(|e| StoreError::io("preparing the first segment", e))
            });
            let prepared = prepared.transpose()?;
            let (segment, len) = install_segment(dir, 1, GENESIS_HASH, prepared.as_deref())?;
            loaded.active_file_len = len;
            loaded.segments.push(Arc::new(segment));
        }
        return Ok(loaded);
    }
    if mode == Mode::InOrder && files.len() > 2 {
        open_sealed_lazily(&mut loaded, &mut files, mode)?;
    }
    let count = files.len();
    // Sidecar indexes of the sealed segments, where they are sound.
    let indexes: Vec<Option<SegmentIndex>> = files
        .iter()
        .enumerate()
        .map(|(i, (first, path))| {
            (i + 1 < count)
                .then(|| SegmentIndex::load(dir, *first))
                .flatten()
                .filter(|index| file_len_is(path, index.data_end))
        })
        .collect();
    if options.verify_checksums_on_open {
        verify_indexed_segments(&files, &indexes)?;
    }
    if mode == Mode::Writer {
        let indexed: usize = indexes.iter().flatten().map(|i| i.records.len()).sum();
        loaded.ids.reserve(indexed);
    }
    let indexed_prefix = indexes.iter().take_while(|i| i.is_some()).count();
    for (i, (first, path)) in files.into_iter().enumerate() {
        let is_last = i + 1 == count;
        if first != loaded.last_position + 1 {
            return Err(StoreError::Corrupt {
                segment: path,
                offset: 0,
                position: Some(loaded.last_position + 1),
                reason: format!(
                    "segment file starts at position {first}, expected {}",
                    loaded.last_position + 1
                ),
            });
        }
        match &indexes[i] {
            Some(index) if i < indexed_prefix => load_indexed(&mut loaded, &path, index, mode)?,
            _ => {
                if i == indexed_prefix {
                    index_sealed(&mut loaded, &indexes[..i], mode);
                }
                load_scanned(&mut loaded, dir, &path, mode, is_last)?;
            }
        }
    }
    if indexed_prefix == count {
        index_sealed(&mut loaded, &indexes, mode);
    }
    Ok(loaded)
}

/// Indexes the streams and event ids of sealed segments from their sidecar
/// indexes: event ids on one thread, streams on another. Each segment's
/// records are grouped by stream first, so the shared stream map is touched
/// once per stream and segment, not once per record.
fn index_sealed(loaded: &mut Loaded, indexes: &[Option<SegmentIndex>], mode: Mode) {
    let indexes: Vec<&SegmentIndex> = indexes.iter().flatten().collect();
    let streams = &loaded.streams;
    let ids = &mut loaded.ids;
    std::thread::scope(|scope| {
        if mode == Mode::Writer {
            let indexes = &indexes;
            scope.spawn(move || {
                for index in indexes {
                    for (position, r) in (index.first_position..).zip(&index.records) {
                        ids.insert(r.event_id, position);
                    }
                }
            });
        }
        let streamed: &[&SegmentIndex] = if mode.indexes_streams() {
            &indexes
        } else {
            &[]
        };
        for index in streamed {
            let mut by_stream: Vec<Vec<Position>> = vec![Vec::new(); index.streams.len()];
            for (position, r) in (index.first_position..).zip(&index.records) {
                by_stream[r.stream as usize].push(position);
            }
            for (stream, positions) in index.streams.iter().zip(by_stream) {
                match streams.get_mut(stream) {
                    Some(mut existing) => existing.extend(positions),
                    None => {
                        streams.insert(stream.clone(), positions);
                    }
                }
            }
        }
    });
}

/// Opened in order, every segment but the last two is taken without
/// reading it or its index: its record count is where the next segment
/// starts, and its record ends are read on its first read. The last two
/// segments are left in `files` to be opened as usual, linked to the hash
/// the second-to-last one's header names (in-order reads do not follow the
/// chain: `verify` does). Damage in a lazily opened segment is reported
/// when it is read.
fn open_sealed_lazily(
    loaded: &mut Loaded,
    files: &mut Vec<(Position, PathBuf)>,
    mode: Mode,
) -> Result<(), StoreError> {
    let rest = files.split_off(files.len() - 2);
    for (i, (first, path)) in files.iter().enumerate() {
        let next = files.get(i + 1).map_or(rest[0].0, |f| f.0);
        if *first != loaded.last_position + 1 || next <= *first {
            return Err(StoreError::Corrupt {
                segment: path.clone(),
                offset: 0,
                position: Some(loaded.last_position + 1),
                reason: format!(
                    "segment file starts at position {first}, expected {}",
                    loaded.last_position + 1
                ),
            });
        }
        let file = open_segment_file(path, mode)?;
        let count = (next - first) as usize;
        loaded.segments.push(Arc::new(Segment::sealed_lazy(
            *first,
            path.clone(),
            file,
            count,
        )));
        loaded.last_position = next - 1;
    }
    let (first, path) = &rest[0];
    if *first != loaded.last_position + 1 {
        return Err(StoreError::Corrupt {
            segment: path.clone(),
            offset: 0,
            position: Some(loaded.last_position + 1),
            reason: format!(
                "segment file starts at position {first}, expected {}",
                loaded.last_position + 1
            ),
        });
    }
    let file = open_segment_file(path, mode)?;
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
    let header = SegmentHeader::decode(&header).map_err(|reason| StoreError::Corrupt {
        segment: path.clone(),
        offset: 0,
        position: Some(*first),
        reason,
    })?;
    loaded.last_hash = header.prev_hash;
    *files = rest;
    Ok(())
}

/// Checks every record's checksum in the segments that have a sidecar
/// index, on all cores; the error reported is the one of the earliest
/// segment.
fn verify_indexed_segments(
    files: &[(Position, PathBuf)],
    indexes: &[Option<SegmentIndex>],
) -> Result<(), StoreError> {
    let next = AtomicUsize::new(0);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let errors: Mutex<Vec<(usize, StoreError)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..workers.min(files.len()) {
            scope.spawn(|| {
                // Each segment is read into the memory of the one before.
                let mut buffer = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((path, index)) = files.get(i).map(|f| (&f.1, &indexes[i])) else {
                        return;
                    };
                    let Some(index) = index else { continue };
                    let checked = SegmentData::read_into(path, std::mem::take(&mut buffer))
                        .and_then(|data| {
                            segment::verify_against_index(&data, index)?;
                            buffer = data.bytes;
                            Ok(())
                        });
                    if let Err(e) = checked {
                        errors
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push((i, e));
                    }
                }
            });
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|e| e.into_inner());
    match errors.into_iter().min_by_key(|(i, _)| *i) {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// A crash while starting a new segment can leave the last file without a
/// whole header (and so without records): that file is dropped.
fn drop_unfinished_segment(
    dir: &Path,
    mode: Mode,
    files: &mut Vec<(Position, PathBuf)>,
) -> Result<(), StoreError> {
    let Some((_, path)) = files.last() else {
        return Ok(());
    };
    let len = fs::metadata(path)
        .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?
        .len();
    if len >= SEGMENT_HEADER_LEN as u64 {
        return Ok(());
    }
    let path = path.clone();
    if mode == Mode::Writer {
        tracing::warn!(segment = %path.display(), "removing a segment whose creation was interrupted");
        fs::remove_file(&path)
            .and_then(|()| segment::sync_dir(dir))
            .map_err(|e| StoreError::io(format!("removing {}", path.display()), e))?;
    }
    files.pop();
    Ok(())
}

fn remove_temp_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".tmp") || name == PREALLOC_FILE_NAME {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Whether the file at `path` is `len` bytes long: a sealed segment's file
/// is exactly as long as its index says (a longer file means the index is
/// stale: the segment was appended to after the index was written).
fn file_len_is(path: &Path, len: u64) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() == len)
}

/// Takes a sealed segment with a sound sidecar index: its header is checked
/// and its record offsets taken; its streams and event ids are indexed
/// later by [`index_sealed`], for all such segments at once.
fn load_indexed(
    loaded: &mut Loaded,
    path: &Path,
    index: &SegmentIndex,
    mode: Mode,
) -> Result<(), StoreError> {
    let file = open_segment_file(path, mode)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        segment: path.to_owned(),
        offset: 0,
        position: Some(index.first_position),
        reason,
    };
    let mut header = [0u8; SEGMENT_HEADER_LEN];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?;
    let header = SegmentHeader::decode(&header).map_err(corrupt)?;
    if header.first_position != index.first_position || header.prev_hash != loaded.last_hash {
        return Err(corrupt(
            "segment header does not link to the previous segment's last record".into(),
        ));
    }
    let ends = index.records.iter().map(|r| r.end).collect();
    loaded.last_position = index.first_position + index.records.len() as u64 - 1;
    loaded.last_hash = index.last_hash;
    loaded.last_recorded_at = Timestamp(index.last_recorded_at);
    loaded.active_len = index.data_end;
    loaded.segments.push(Arc::new(Segment::new(
        index.first_position,
        path.to_owned(),
        file,
        ends,
    )));
    Ok(())
}

/// Takes the end of a scanned segment as the log's end so far; returns
/// where its torn bytes, if any, end.
fn finish_scanned(loaded: &mut Loaded, data: &SegmentData, end: &ScanEnd) -> u64 {
    loaded.last_position = end.next_position - 1;
    loaded.last_hash = end.last_hash;
    loaded.active_len = end.data_end as u64;
    loaded.active_file_len = data.bytes.len() as u64;
    // Torn bytes run from the end of the last whole record to the last
    // non-zero byte (what follows is preallocated space).
    let garbage_end = data
        .bytes
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |i| i + 1)
        .max(end.data_end) as u64;
    if end.torn {
        loaded.torn_bytes = garbage_end - end.data_end as u64;
    }
    garbage_end
}

fn load_scanned(
    loaded: &mut Loaded,
    dir: &Path,
    path: &Path,
    mode: Mode,
    is_last: bool,
) -> Result<(), StoreError> {
    let data = SegmentData::read(path)?;
    let checks = ScanChecks {
        first_position: loaded.last_position + 1,
        prev_hash: loaded.last_hash,
        // Read in order, the chain is not followed (`verify` does), as in
        // the sealed segments opened lazily.
        verify_chain: mode != Mode::InOrder,
        is_last,
    };
    if mode == Mode::InOrder {
        // Only where each record ends is needed, and when the last was
        // recorded; the envelopes are decoded as they are read.
        let mut ends = Vec::new();
        let mut last: Option<(usize, &[u8])> = None;
        let end = segment::scan(&data, checks, |r| {
            ends.push(r.end as u32);
            last = Some((r.offset, r.raw));
            Ok(())
        })?;
        if let Some((offset, raw)) = last {
            let envelope = format::decode_envelope(raw).map_err(|reason| StoreError::Corrupt {
                segment: path.to_owned(),
                offset: offset as u64,
                position: Some(end.next_position - 1),
                reason,
            })?;
            loaded.last_recorded_at = Timestamp(envelope.recorded_at);
        }
        finish_scanned(loaded, &data, &end);
        let file = open_segment_file(path, mode)?;
        loaded.segments.push(Arc::new(Segment::new(
            checks.first_position,
            path.to_owned(),
            file,
            ends,
        )));
        return Ok(());
    }
    let streams = &loaded.streams;
    let ids = &mut loaded.ids;
    let (index, end) = SegmentIndex::build_with(&data, checks, |r| {
        let env = r.envelope()?;
        if !mode.indexes_streams() {
            return Ok(());
        }
        let stream = StreamId::new(crate::event::ShopId(env.shop), env.stream);
        let version = {
            let mut positions = streams.entry(stream.clone()).or_default();
            positions.push(r.position);
            positions.len() as u64
        };
        if version != env.version {
            return Err(StoreError::Corrupt {
                segment: data.path.clone(),
                offset: r.offset as u64,
                position: Some(r.position),
                reason: format!(
                    "record says version {} of stream {stream}, expected {version}",
                    env.version
                ),
            });
        }
        if mode == Mode::Writer {
            ids.insert(env.event_id, r.position);
        }
        Ok(())
    })?;
    if end.records > 0 {
        loaded.last_recorded_at = Timestamp(index.last_recorded_at);
    }
    let garbage_end = finish_scanned(loaded, &data, &end);
    drop(data);
    let file = open_segment_file(path, mode)?;
    if mode == Mode::Writer {
        let io_err = |e| StoreError::io(format!("repairing {}", path.display()), e);
        if end.torn {
            let zeros = vec![0u8; (garbage_end - end.data_end as u64) as usize];
            file.write_all_at(&zeros, end.data_end as u64)
                .and_then(|()| file.sync_all())
                .map_err(io_err)?;
        }
        if is_last {
            // The segment is active again: an index left from an earlier
            // seal would go stale with the next append.
            let stale = dir.join(format::index_file_name(index.first_position));
            if stale.exists() {
                fs::remove_file(&stale)
                    .map_err(|e| StoreError::io(format!("removing {}", stale.display()), e))?;
            }
        } else {
            // A sealed segment is cut to its records before its index is
            // written (the index's length check relies on it).
            if loaded.active_file_len > end.data_end as u64 {
                file.set_len(end.data_end as u64)
                    .and_then(|()| file.sync_all())
                    .map_err(io_err)?;
            }
            if let Err(e) = index.store(dir) {
                tracing::warn!(segment = %path.display(), error = %e, "could not write segment index");
            }
        }
    }
    let ends = index.records.iter().map(|r| r.end).collect();
    loaded.segments.push(Arc::new(Segment::new(
        index.first_position,
        path.to_owned(),
        file,
        ends,
    )));
    Ok(())
}
