//! The log's writer and syncer threads: pipelined group commit.
//!
//! The writer thread takes every append queued on the channel (up to the
//! batch limits), checks each against the state the appends before it
//! leave (so one batch may append to a stream many times), encodes their
//! records into one buffer and writes it with one call. It does not wait
//! for the disk: it hands the written batch to the syncer and goes on with
//! the next appends.
//!
//! The syncer thread takes every batch written since its last fsync, runs
//! one `fdatasync` for all of them, then publishes them to readers in order
//! and answers their appends. So each fsync carries everything that arrived
//! while the previous one ran, and encoding overlaps syncing.
//!
//! An import (records verbatim, see [`import`](crate::store::import)) is
//! a batch of its own: the appends queued before it are written first, its
//! records are checked to continue the log, framed as they are and written
//! and synced like any batch.
//!
//! Failures: a failed write is undone at once (the region is put back to
//! zeros, or cut off) and only its batch fails. A failed fsync fails every
//! batch not yet durable, including ones written after it; the writer then
//! undoes everything past the last durable record and resets its state to
//! it before writing again. Nothing of a failed batch is ever visible or
//! acknowledged. If an undo itself fails, the store refuses further appends
//! until it is reopened.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::format::{self, Envelope, Hash, SEGMENT_HEADER_LEN};
use super::segment::{ScanChecks, SegmentData, SegmentIndex};
use super::{
    IdIndex, LogOptions, PREALLOC_FILE_NAME, Segment, Shared, WriteFault, install_segment,
    prepare_segment_file, read_lock, write_lock,
};
use crate::event::{Position, StreamId, Timestamp};
use crate::store::import::{self, ChainEnd};
use crate::store::{AppendOutcome, AppendRequest, AppendStatus, StoreError};

/// Most written batches that may wait for the syncer before the writer
/// waits too.
const UNSYNCED_BATCHES_MAX: usize = 256;

/// What the writer is asked to do.
#[derive(Debug)]
pub(super) enum Message {
    Append(Pending),
    /// Where these event ids were written (durable or not yet).
    Lookup(Vec<Uuid>, oneshot::Sender<Vec<Option<Position>>>),
    /// Record bodies to store verbatim after the last record.
    Import(Vec<Vec<u8>>, Reply),
}

/// An append waiting for the writer.
#[derive(Debug)]
pub(super) struct Pending {
    pub request: AppendRequest,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

type Reply = oneshot::Sender<Result<AppendOutcome, StoreError>>;

/// Where the log ends: after the last durable record, or after the last
/// written one.
#[derive(Debug, Clone, Copy)]
pub(super) struct LogEnd {
    pub last_position: Position,
    pub last_hash: Hash,
    pub last_recorded_at: Timestamp,
    /// Offset just past the last record of the active segment.
    pub active_len: u64,
}

/// What the writer starts from.
#[derive(Debug)]
pub(super) struct WriterState {
    /// Every recorded event id and its position.
    pub ids: IdIndex,
    pub end: LogEnd,
    /// Length of the active segment's file when it was opened or made:
    /// up to there it is preallocated.
    pub file_len: u64,
}

/// A batch written to the page cache, waiting for its fsync.
struct Written {
    epoch: u64,
    segment: Arc<Segment>,
    /// Per record: its stream and its end offset in the segment.
    records: Vec<(StreamId, u32)>,
    answers: Vec<(Reply, AppendOutcome)>,
    end: LogEnd,
    bytes: u64,
}

/// A failed fsync, for the writer to recover from.
struct SyncFailure {
    /// Batches of this epoch and earlier are lost.
    epoch: u64,
    reason: String,
    durable: LogEnd,
}

#[derive(Default)]
struct Queue {
    batches: VecDeque<Written>,
    /// The syncer holds batches it took and has not finished.
    syncing: bool,
    /// The writer has stopped; the syncer finishes what is queued and ends.
    closing: bool,
    failure: Option<SyncFailure>,
}

/// The hand-over between writer and syncer.
#[derive(Default)]
struct Pipeline {
    queue: Mutex<Queue>,
    /// Signalled when batches are queued or closing is set.
    to_syncer: Condvar,
    /// Signalled when the syncer takes or finishes batches.
    to_writer: Condvar,
}

impl Pipeline {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub(super) fn spawn(
    shared: Arc<Shared>,
    options: LogOptions,
    lock: File,
    state: WriterState,
    rx: mpsc::Receiver<Message>,
) -> Result<JoinHandle<()>, StoreError> {
    let active = read_lock(&shared.segments)
        .last()
        .cloned()
        .expect("a writable log has an active segment");
    let pipeline = Arc::new(Pipeline::default());
    let syncer = Syncer {
        shared: Arc::clone(&shared),
        options: options.clone(),
        pipeline: Arc::clone(&pipeline),
        failed_epoch: None,
    };
    let syncer = std::thread::Builder::new()
        .name("kedai-log-sync".into())
        .spawn(move || syncer.run())
        .map_err(|e| StoreError::io("starting the log syncer thread", e))?;
    let writer = Writer {
        shared,
        options,
        _lock: lock,
        ids: state.ids,
        end: state.end,
        prealloc_len: state.file_len,
        versions: HashMap::default(),
        inflight_ids: VecDeque::new(),
        epoch: 0,
        active,
        buf: Vec::with_capacity(1 << 20),
        prepared: None,
        sealing: Vec::new(),
        pipeline,
    };
    std::thread::Builder::new()
        .name("kedai-log-writer".into())
        .spawn(move || writer.run(rx, syncer))
        .map_err(|e| StoreError::io("starting the log writer thread", e))
}

struct Writer {
    shared: Arc<Shared>,
    options: LogOptions,
    /// Held for the writer's lifetime: the directory lock.
    _lock: File,
    /// Every event id written (durable or not yet) and its position.
    ids: IdIndex,
    /// The end of what has been written.
    end: LogEnd,
    /// Up to here the active segment's file is preallocated.
    prealloc_len: u64,
    /// Versions of streams written by batches that may not be durable yet,
    /// with the last position of the batch that wrote them and the
    /// position of the stream's last event. Durable versions are in the
    /// shared stream index.
    versions: HashMap<StreamId, (u64, Position, Position), foldhash::fast::RandomState>,
    /// Event ids of batches that may not be durable yet (to forget them if
    /// their fsync fails), with each batch's last position.
    inflight_ids: VecDeque<(Position, Vec<Uuid>)>,
    /// Incremented each time the writer recovers from a failed fsync.
    epoch: u64,
    active: Arc<Segment>,
    buf: Vec<u8>,
    /// The zero-filled file being prepared to become the next segment.
    prepared: Option<JoinHandle<std::io::Result<()>>>,
    /// Threads writing sealed segments' indexes; joined before the writer
    /// exits, so that nothing touches the directory once the store is shut.
    sealing: Vec<JoinHandle<()>>,
    pipeline: Arc<Pipeline>,
}

/// The records one batch adds, before they are written.
#[derive(Default)]
struct Batch {
    /// Stream versions as the batch leaves them, with the position of each
    /// stream's last event.
    versions: HashMap<StreamId, (u64, Position), foldhash::fast::RandomState>,
    /// Event ids the batch records.
    ids: IdIndex,
    /// Per record: its stream and its end offset within the buffer.
    records: Vec<(StreamId, u32)>,
    answers: Vec<(Reply, AppendOutcome)>,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Message>, syncer: JoinHandle<()>) {
        while let Some(first) = rx.blocking_recv() {
            let mut pending = Vec::new();
            let mut import = None;
            let (mut events, mut bytes) = (0, 0);
            let mut next = Some(first);
            while let Some(message) = next.take() {
                match message {
                    Message::Append(p) => {
                        events += p.request.event_count();
                        bytes += payload_bytes(&p.request);
                        pending.push(p);
                    }
                    Message::Lookup(ids, reply) => {
                        let _ =
                            reply.send(ids.iter().map(|id| self.ids.get(id).copied()).collect());
                    }
                    // A batch of its own, after the appends before it.
                    Message::Import(bodies, reply) => {
                        import = Some((bodies, reply));
                        break;
                    }
                }
                if events < self.options.batch_events_max && bytes < self.options.batch_bytes_max {
                    next = rx.try_recv().ok();
                }
            }
            if !pending.is_empty() {
                self.process(pending);
            }
            if let Some((bodies, reply)) = import {
                self.import(&bodies, reply);
            }
        }
        self.pipeline.lock().closing = true;
        self.pipeline.to_syncer.notify_all();
        let _ = syncer.join();
        // Background helpers finish before the directory lock is released:
        // once a store is shut, nothing of it writes in the directory.
        if let Some(handle) = self.prepared.take() {
            let _ = handle.join();
        }
        for handle in self.sealing.drain(..) {
            let _ = handle.join();
        }
    }

    fn process(&mut self, pending: Vec<Pending>) {
        self.recover_from_sync_failure();
        if let Some(reason) = self.failure() {
            for p in pending {
                let _ = p.reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
            return;
        }
        self.forget_durable();
        self.buf.clear();
        let mut batch = Batch::default();
        let mut end = self.end;
        for p in pending {
            match self.admit(&p.request, &mut batch, &mut end) {
                Ok(outcome) => batch.answers.push((p.reply, outcome)),
                Err(e) => {
                    let _ = p.reply.send(Err(e));
                }
            }
        }
        if batch.answers.is_empty() {
            return;
        }
        self.write_and_commit(batch, end);
    }

    /// Writes a batch's records (if any) and hands it to the syncer; if
    /// the write fails, fails its appends.
    fn write_and_commit(&mut self, batch: Batch, mut end: LogEnd) {
        let mut base = 0;
        if !batch.records.is_empty() {
            match self.write(&batch, end.active_len) {
                Ok(at) => {
                    base = at;
                    end.active_len = at + self.buf.len() as u64;
                }
                Err(e) => {
                    let reason = e.to_string();
                    tracing::error!(error = %reason, "log write failed; batch discarded");
                    for (reply, _) in batch.answers {
                        let _ = reply.send(Err(StoreError::Unavailable(reason.clone())));
                    }
                    return;
                }
            }
        }
        self.commit(batch, end, base);
    }

    /// Stores record bodies verbatim, as one batch, if they continue the
    /// log (see [`import`](crate::store::import)).
    fn import(&mut self, bodies: &[Vec<u8>], reply: Reply) {
        self.recover_from_sync_failure();
        if let Some(reason) = self.failure() {
            let _ = reply.send(Err(StoreError::Unavailable(reason)));
            return;
        }
        self.forget_durable();
        self.buf.clear();
        let mut batch = Batch::default();
        let mut end = self.end;
        match self.admit_import(bodies, &mut batch, &mut end) {
            Ok(outcome) => batch.answers.push((reply, outcome)),
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        }
        self.write_and_commit(batch, end);
    }

    /// Checks an import batch against the log as written so far and frames
    /// its bodies, unchanged, into the buffer.
    fn admit_import(
        &mut self,
        bodies: &[Vec<u8>],
        batch: &mut Batch,
        end: &mut LogEnd,
    ) -> Result<AppendOutcome, StoreError> {
        let chain = ChainEnd {
            last_position: end.last_position,
            last_hash: end.last_hash,
            last_recorded_at: end.last_recorded_at.0,
        };
        let (records, after) = import::check_batch(bodies, chain)?;
        for r in &records {
            let (actual, _) = self.version(&r.stream, batch);
            if r.envelope.version != actual + 1 {
                return Err(import::version_gap(r, actual));
            }
            let id = r.envelope.event_id;
            if let Some(&at) = self.ids.get(&id).or_else(|| batch.ids.get(&id)) {
                return Err(import::duplicate_id(r, at));
            }
            self.buf
                .extend_from_slice(&(r.body.len() as u32).to_le_bytes());
            self.buf
                .extend_from_slice(&format::body_checksum(r.body).to_le_bytes());
            self.buf.extend_from_slice(r.body);
            batch
                .records
                .push((r.stream.clone(), self.buf.len() as u32));
            batch.ids.insert(id, r.position);
            batch
                .versions
                .insert(r.stream.clone(), (r.envelope.version, r.position));
        }
        let first_position = end.last_position + 1;
        end.last_position = after.last_position;
        end.last_hash = after.last_hash;
        end.last_recorded_at = Timestamp(after.last_recorded_at);
        Ok(AppendOutcome {
            status: AppendStatus::Recorded,
            first_position,
            last_position: after.last_position,
        })
    }

    /// Checks one append against the state so far and encodes its records
    /// into the buffer. The request was validated by
    /// [`EventStore::append`](crate::store::EventStore::append).
    fn admit(
        &mut self,
        request: &AppendRequest,
        batch: &mut Batch,
        end: &mut LogEnd,
    ) -> Result<AppendOutcome, StoreError> {
        if let Some(outcome) = self.already_recorded(request, batch)? {
            return Ok(outcome);
        }
        let mut versions = Vec::with_capacity(request.streams.len());
        for s in &request.streams {
            let (actual, last) = self.version(&s.stream, batch);
            let position_of = |id| self.ids.get(&id).or_else(|| batch.ids.get(&id)).copied();
            if !s.expected.admits_stream(actual, last, position_of) {
                return Err(StoreError::WrongExpectedVersion {
                    stream: s.stream.clone(),
                    expected: s.expected,
                    actual,
                });
            }
            versions.push(actual);
        }
        let recorded_at = request.recorded_at.max(end.last_recorded_at);
        end.last_recorded_at = recorded_at;
        let first_position = end.last_position + 1;
        for (s, mut version) in request.streams.iter().zip(versions) {
            for e in &s.events {
                version += 1;
                end.last_position += 1;
                let envelope = Envelope {
                    shop: s.stream.shop.0,
                    stream: &s.stream.name,
                    version,
                    event_id: e.event_id,
                    recorded_at: recorded_at.0,
                    role: e.actor.role.code(),
                    actor: &e.actor.id,
                    correlation_id: e.correlation_id,
                    causation_id: e.causation_id,
                    event_type: &e.event_type,
                    schema_version: e.schema_version,
                    payload: &e.payload,
                };
                end.last_hash = format::encode_record(
                    &mut self.buf,
                    &end.last_hash,
                    end.last_position,
                    &envelope,
                );
                batch
                    .records
                    .push((s.stream.clone(), self.buf.len() as u32));
                batch.ids.insert(e.event_id, end.last_position);
            }
            batch
                .versions
                .insert(s.stream.clone(), (version, end.last_position));
        }
        Ok(AppendOutcome {
            status: AppendStatus::Recorded,
            first_position,
            last_position: end.last_position,
        })
    }

    /// The stream's version after everything written so far, and the
    /// position of its last event.
    fn version(&self, stream: &StreamId, batch: &Batch) -> (u64, Option<Position>) {
        if let Some(&(v, last)) = batch.versions.get(stream) {
            return (v, Some(last));
        }
        if let Some(&(v, _, last)) = self.versions.get(stream) {
            return (v, Some(last));
        }
        self.shared
            .streams
            .get(stream)
            .map_or((0, None), |p| (p.len() as u64, p.last().copied()))
    }

    /// `Some` when every event id of the request is recorded (or written
    /// earlier); an error when only some are.
    fn already_recorded(
        &self,
        request: &AppendRequest,
        batch: &Batch,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let mut range: Option<(Position, Position)> = None;
        let mut missing = false;
        let mut first_found = None;
        for id in request.event_ids() {
            match self.ids.get(&id).or_else(|| batch.ids.get(&id)) {
                Some(&p) => {
                    first_found.get_or_insert(id);
                    let (lo, hi) = range.unwrap_or((p, p));
                    range = Some((lo.min(p), hi.max(p)));
                }
                None => missing = true,
            }
        }
        match (range, missing, first_found) {
            (Some((first_position, last_position)), false, _) => Ok(Some(AppendOutcome {
                status: AppendStatus::AlreadyRecorded,
                first_position,
                last_position,
            })),
            (Some(_), true, Some(event_id)) => Err(StoreError::PartlyRecorded { event_id }),
            _ => Ok(None),
        }
    }

    fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn set_failure(&self, reason: String) {
        tracing::error!(error = %reason, "the log refuses appends until it is reopened");
        *self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(reason);
    }

    /// Writes the buffer (rolling to a new segment first if it would not
    /// fit); returns the offset it was written at. A failed write is undone.
    fn write(&mut self, batch: &Batch, active_len: u64) -> Result<u64, StoreError> {
        let len = self.buf.len() as u64;
        let mut base = active_len;
        if base + len > self.options.segment_bytes_max && base > SEGMENT_HEADER_LEN as u64 {
            self.roll()?;
            base = SEGMENT_HEADER_LEN as u64;
        }
        debug_assert_eq!(batch.records.last().map(|r| u64::from(r.1)), Some(len));
        let file = &self.active.file;
        if let Err(e) = write_all(file, &self.buf, base, &self.options) {
            if let Err(undo) = undo(file, base, base + len, self.prealloc_len) {
                self.set_failure(format!(
                    "could not undo a failed write to {} ({e}): {undo}",
                    self.active.path.display()
                ));
            }
            return Err(StoreError::io(
                format!("appending to {}", self.active.path.display()),
                e,
            ));
        }
        if base + len > self.options.segment_bytes_max / 2 {
            self.prepare_next_segment();
        }
        Ok(base)
    }

    /// Takes a written batch into the writer's state and hands it to the
    /// syncer.
    fn commit(&mut self, batch: Batch, end: LogEnd, base: u64) {
        for (stream, (version, last)) in batch.versions {
            self.versions
                .insert(stream, (version, end.last_position, last));
        }
        let ids: Vec<Uuid> = batch.ids.keys().copied().collect();
        self.ids.extend(batch.ids);
        if !ids.is_empty() {
            self.inflight_ids.push_back((end.last_position, ids));
        }
        self.end = end;
        let records = batch
            .records
            .into_iter()
            .map(|(stream, rel)| (stream, (base + u64::from(rel)) as u32))
            .collect();
        let written = Written {
            epoch: self.epoch,
            segment: Arc::clone(&self.active),
            records,
            answers: batch.answers,
            end,
            bytes: self.buf.len() as u64,
        };
        let mut queue = self.pipeline.lock();
        while queue.batches.len() >= UNSYNCED_BATCHES_MAX {
            queue = self
                .pipeline
                .to_writer
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
        queue.batches.push_back(written);
        drop(queue);
        self.pipeline.to_syncer.notify_one();
    }

    /// Drops bookkeeping of batches that are durable now.
    fn forget_durable(&mut self) {
        let durable = self.shared.durable.load(Ordering::Acquire);
        while self
            .inflight_ids
            .front()
            .is_some_and(|(last, _)| *last <= durable)
        {
            self.inflight_ids.pop_front();
        }
        if self.versions.len() > 4096 {
            self.versions
                .retain(|_, (_, batch_end, _)| *batch_end > durable);
        }
    }

    /// Waits until the syncer has finished everything written so far.
    fn wait_until_synced(&self) {
        let mut queue = self.pipeline.lock();
        while !queue.batches.is_empty() || queue.syncing {
            queue = self
                .pipeline
                .to_writer
                .wait(queue)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// After a failed fsync: undo everything written past the last durable
    /// record and continue from there.
    fn recover_from_sync_failure(&mut self) {
        let failure = {
            let mut queue = self.pipeline.lock();
            match &queue.failure {
                Some(f) if f.epoch == self.epoch => queue.failure.take(),
                _ => None,
            }
        };
        let Some(failure) = failure else { return };
        // Batches still queued belong to the failed epoch: let the syncer
        // fail them before the region they were written to is reused.
        self.wait_until_synced();
        let durable = failure.durable;
        tracing::warn!(reason = %failure.reason, position = durable.last_position, "fsync failed; undoing what was not durable");
        if let Err(e) = undo(
            &self.active.file,
            durable.active_len,
            self.end.active_len,
            self.prealloc_len,
        ) {
            self.set_failure(format!(
                "could not undo writes after a failed fsync of {} ({}): {e}",
                self.active.path.display(),
                failure.reason
            ));
        }
        while let Some((last, ids)) = self.inflight_ids.pop_back() {
            if last <= durable.last_position {
                self.inflight_ids.push_back((last, ids));
                break;
            }
            for id in ids {
                self.ids.remove(&id);
            }
        }
        self.versions.clear();
        self.end = durable;
        self.epoch += 1;
    }

    /// Seals the active segment and starts a new one, from the prepared
    /// zero-filled file when it is ready. Waits until the active segment is
    /// durable first, so that a sealed segment never changes and failures
    /// only ever concern the active one.
    fn roll(&mut self) -> Result<(), StoreError> {
        self.wait_until_synced();
        if self.pipeline.lock().failure.is_some() {
            return Err(StoreError::Unavailable(
                "an earlier write was not made durable; retry".into(),
            ));
        }
        let first = self.end.last_position + 1;
        let dir = self.shared.dir.clone();
        let prepared = match self.prepared.take() {
            Some(handle) if handle.is_finished() => match handle.join() {
                Ok(Ok(())) => Some(dir.join(PREALLOC_FILE_NAME)),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "could not prepare the next segment; creating it unfilled");
                    None
                }
                Err(_) => None,
            },
            still_running => {
                self.prepared = still_running;
                None
            }
        };
        let (segment, file_len) =
            install_segment(&dir, first, self.end.last_hash, prepared.as_deref())?;
        let segment = Arc::new(segment);
        write_lock(&self.shared.segments).push(Arc::clone(&segment));
        let sealed = std::mem::replace(&mut self.active, segment);
        self.end.active_len = SEGMENT_HEADER_LEN as u64;
        // Nothing of the new segment is durable yet: a failed fsync from
        // here on is undone from its first record.
        self.shared
            .durable_end
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .active_len = SEGMENT_HEADER_LEN as u64;
        self.prealloc_len = file_len;
        self.sealing.retain(|h| !h.is_finished());
        if let Some(handle) = seal_in_background(Arc::clone(&self.shared), sealed) {
            self.sealing.push(handle);
        }
        Ok(())
    }

    /// Starts filling the next segment's file with zeros in the background
    /// (once the active segment is half full), unless that is already under
    /// way or turned off.
    fn prepare_next_segment(&mut self) {
        if !self.options.preallocate || self.prepared.is_some() {
            return;
        }
        let path = self.shared.dir.join(PREALLOC_FILE_NAME);
        let size = self.options.segment_bytes_max;
        let spawned = std::thread::Builder::new()
            .name("kedai-log-prealloc".into())
            .spawn(move || prepare_segment_file(&path, size));
        match spawned {
            Ok(handle) => self.prepared = Some(handle),
            Err(e) => tracing::warn!(error = %e, "could not start preparing the next segment"),
        }
    }
}

struct Syncer {
    shared: Arc<Shared>,
    options: LogOptions,
    pipeline: Arc<Pipeline>,
    /// Batches of this epoch and earlier are failed without syncing.
    failed_epoch: Option<u64>,
}

impl Syncer {
    fn run(mut self) {
        loop {
            let taken: Vec<Written> = {
                let mut queue = self.pipeline.lock();
                while queue.batches.is_empty() && !queue.closing {
                    queue = self
                        .pipeline
                        .to_syncer
                        .wait(queue)
                        .unwrap_or_else(|e| e.into_inner());
                }
                if queue.batches.is_empty() {
                    return;
                }
                queue.syncing = true;
                queue.batches.drain(..).collect()
            };
            self.pipeline.to_writer.notify_all();
            self.sync_and_publish(taken);
            self.pipeline.lock().syncing = false;
            self.pipeline.to_writer.notify_all();
        }
    }

    fn sync_and_publish(&mut self, taken: Vec<Written>) {
        let (lost, live): (Vec<Written>, Vec<Written>) = taken
            .into_iter()
            .partition(|w| self.failed_epoch.is_some_and(|e| w.epoch <= e));
        for w in lost {
            fail(w, "an earlier write was not made durable; retry");
        }
        if live.is_empty() {
            return;
        }
        if let Err(e) = self.sync(&live) {
            let reason = format!("fsync of {} failed: {e}", live[0].segment.path.display());
            let epoch = live.last().expect("not empty").epoch;
            self.failed_epoch = Some(epoch);
            let durable = self.durable_end();
            // Tell the writer before answering: an append sent in reply to
            // the failure must be written after the undo, not before it.
            self.pipeline.lock().failure = Some(SyncFailure {
                epoch,
                reason: reason.clone(),
                durable,
            });
            for w in live {
                fail(w, &reason);
            }
            return;
        }
        for w in live {
            self.publish(w);
        }
    }

    /// One fsync per segment the batches were written to (one, but for a
    /// batch that rolled to a new segment).
    fn sync(&self, batches: &[Written]) -> std::io::Result<()> {
        if batches.iter().all(|w| w.bytes == 0) {
            return Ok(());
        }
        let mut synced: Vec<&Arc<Segment>> = Vec::new();
        for w in batches.iter().filter(|w| w.bytes > 0) {
            if synced.iter().any(|s| Arc::ptr_eq(s, &w.segment)) {
                continue;
            }
            if let Some(faults) = &self.options.faults {
                faults.before_sync()?;
            }
            w.segment.file.sync_data()?;
            synced.push(&w.segment);
        }
        Ok(())
    }

    /// The end of the durable log, as published last.
    fn durable_end(&self) -> LogEnd {
        *self
            .shared
            .durable_end
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Makes a durable batch visible to readers and answers its appends.
    fn publish(&mut self, w: Written) {
        write_lock(&w.segment.ends).extend(w.records.iter().map(|&(_, end)| end));
        let mut position = w.end.last_position - w.records.len() as u64;
        for (stream, _) in &w.records {
            position += 1;
            match self.shared.streams.get_mut(stream) {
                Some(mut positions) => positions.push(position),
                None => {
                    self.shared.streams.insert(stream.clone(), vec![position]);
                }
            }
        }
        *self
            .shared
            .durable_end
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = w.end;
        let stats = &self.shared.stats;
        if !w.records.is_empty() {
            stats.batches.fetch_add(1, Ordering::Relaxed);
            stats
                .events
                .fetch_add(w.records.len() as u64, Ordering::Relaxed);
            stats.bytes.fetch_add(w.bytes, Ordering::Relaxed);
            self.shared
                .durable
                .store(w.end.last_position, Ordering::Release);
            self.shared.head.send_replace(w.end.last_position);
        }
        for (reply, outcome) in w.answers {
            let _ = reply.send(Ok(outcome));
        }
    }
}

fn fail(w: Written, reason: &str) {
    for (reply, _) in w.answers {
        let _ = reply.send(Err(StoreError::Unavailable(reason.to_owned())));
    }
}

fn payload_bytes(request: &AppendRequest) -> usize {
    request
        .streams
        .iter()
        .flat_map(|s| &s.events)
        .map(|e| e.payload.len())
        .sum()
}

/// Puts `from..to` of a segment back as it was before it was written:
/// zeros where the file was preallocated, cut off beyond that; then syncs.
fn undo(file: &File, from: u64, to: u64, prealloc_len: u64) -> std::io::Result<()> {
    if from < prealloc_len && from < to {
        let n = to.min(prealloc_len) - from;
        file.write_all_at(&vec![0u8; n as usize], from)?;
    }
    let keep = from.max(prealloc_len);
    if file.metadata()?.len() > keep {
        file.set_len(keep)?;
    }
    file.sync_all()
}

fn write_all(file: &File, buf: &[u8], offset: u64, options: &LogOptions) -> std::io::Result<()> {
    if let Some(faults) = &options.faults {
        match faults.before_write(buf.len()) {
            WriteFault::None => {}
            WriteFault::Fail(e) => return Err(e),
            WriteFault::Partial(n, e) => {
                file.write_all_at(&buf[..n.min(buf.len())], offset)?;
                return Err(e);
            }
        }
    }
    file.write_all_at(buf, offset)
}

/// Writes a sealed (and durable) segment's sidecar index from a thread of
/// its own, so the writer does not wait for it. A missing index only makes
/// the next open scan that segment.
fn seal_in_background(shared: Arc<Shared>, sealed: Arc<Segment>) -> Option<JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("kedai-log-seal".into())
        .spawn(move || {
            let result = SegmentData::read(&sealed.path).and_then(|data| {
                let checks = ScanChecks {
                    first_position: sealed.first_position,
                    prev_hash: data.header.prev_hash,
                    verify_chain: false,
                    is_last: false,
                };
                let (index, _) = SegmentIndex::build(&data, checks)?;
                // Cut the preallocated zeros after the last record: a
                // sealed segment is exactly as long as its index says.
                sealed
                    .file
                    .set_len(index.data_end)
                    .and_then(|()| sealed.file.sync_all())
                    .map_err(|e| StoreError::io("cutting a sealed segment", e))?;
                index
                    .store(&shared.dir)
                    .map_err(|e| StoreError::io("writing segment index", e))
            });
            if let Err(e) = result {
                tracing::warn!(segment = %sealed.path.display(), error = %e, "could not write segment index");
            }
        });
    spawned
        .inspect_err(|e| tracing::warn!(error = %e, "could not start the segment sealing thread"))
        .ok()
}
