//! The log's single writer thread: group commit.
//!
//! It takes the first queued append, drains whatever else is queued (up to
//! the batch limits), checks each append against the state the earlier
//! appends of the batch leave (so one batch may append to a stream many
//! times), encodes all records into one buffer, writes it with one call,
//! `fdatasync`s once, publishes the new records to readers and only then
//! answers every append of the batch.
//!
//! If a write or sync fails, the segment is cut back to where the batch
//! began and synced, every append of the batch fails, and the writer goes
//! on: nothing of a failed batch is visible or acknowledged. If even that
//! repair fails, the store refuses further appends until it is reopened.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::format::{self, Envelope, Hash, SEGMENT_HEADER_LEN};
use super::segment::{ScanChecks, SegmentData, SegmentIndex};
use super::{LogOptions, Segment, Shared, WriteFault, create_segment, read_lock, write_lock};
use crate::event::{Position, StreamId, Timestamp};
use crate::store::{AppendOutcome, AppendRequest, AppendStatus, StoreError};

/// An append waiting for the writer.
#[derive(Debug)]
pub(super) struct Pending {
    pub request: AppendRequest,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

/// What the writer carries from one batch to the next.
#[derive(Debug)]
pub(super) struct WriterState {
    /// Every recorded event id and its position.
    pub ids: HashMap<Uuid, Position>,
    pub last_position: Position,
    pub last_hash: Hash,
    pub last_recorded_at: Timestamp,
    /// Offset just past the last record of the active segment.
    pub active_len: u64,
}

struct Writer {
    shared: Arc<Shared>,
    options: LogOptions,
    /// Held for the writer's lifetime: the directory lock.
    _lock: File,
    state: WriterState,
    active: Arc<Segment>,
    buf: Vec<u8>,
}

pub(super) fn spawn(
    shared: Arc<Shared>,
    options: LogOptions,
    lock: File,
    state: WriterState,
    rx: mpsc::Receiver<Pending>,
) -> Result<JoinHandle<()>, StoreError> {
    let active = read_lock(&shared.segments)
        .last()
        .cloned()
        .expect("a writable log has an active segment");
    let writer = Writer {
        shared,
        options,
        _lock: lock,
        state,
        active,
        buf: Vec::with_capacity(1 << 20),
    };
    std::thread::Builder::new()
        .name("kedai-log-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StoreError::io("starting the log writer thread", e))
}

/// The records a batch adds, before they are durable.
#[derive(Default)]
struct Batch {
    /// Stream versions as the batch leaves them.
    versions: HashMap<StreamId, u64>,
    /// Event ids the batch records.
    ids: HashMap<Uuid, Position>,
    /// Per record: its stream and its end offset within the buffer.
    records: Vec<(StreamId, u32)>,
    /// Appends to answer once the batch is durable.
    answers: Vec<(
        oneshot::Sender<Result<AppendOutcome, StoreError>>,
        AppendOutcome,
    )>,
    last_position: Position,
    last_hash: Hash,
    last_recorded_at: Timestamp,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        while let Some(first) = rx.blocking_recv() {
            let mut pending = vec![first];
            let mut events = pending[0].request.event_count();
            let mut bytes = payload_bytes(&pending[0].request);
            while events < self.options.batch_events_max && bytes < self.options.batch_bytes_max {
                match rx.try_recv() {
                    Ok(p) => {
                        events += p.request.event_count();
                        bytes += payload_bytes(&p.request);
                        pending.push(p);
                    }
                    Err(_) => break,
                }
            }
            self.process(pending);
        }
    }

    fn process(&mut self, pending: Vec<Pending>) {
        if let Some(reason) = self.failure() {
            for p in pending {
                let _ = p.reply.send(Err(StoreError::Unavailable(reason.clone())));
            }
            return;
        }
        self.buf.clear();
        let mut batch = Batch {
            last_position: self.state.last_position,
            last_hash: self.state.last_hash,
            last_recorded_at: self.state.last_recorded_at,
            ..Batch::default()
        };
        for p in pending {
            match self.admit(&p.request, &mut batch) {
                Ok(outcome) => batch.answers.push((p.reply, outcome)),
                Err(e) => {
                    let _ = p.reply.send(Err(e));
                }
            }
        }
        if batch.records.is_empty() {
            // Only retries of appends already durable: nothing to write.
            for (reply, outcome) in batch.answers {
                let _ = reply.send(Ok(outcome));
            }
            return;
        }
        match self.make_durable() {
            Ok(base) => self.publish(batch, base),
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(error = %reason, "log append failed; batch discarded");
                for (reply, _) in batch.answers {
                    let _ = reply.send(Err(StoreError::Unavailable(reason.clone())));
                }
            }
        }
    }

    /// Checks one append against the state so far and encodes its records
    /// into the buffer.
    fn admit(
        &mut self,
        request: &AppendRequest,
        batch: &mut Batch,
    ) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        if let Some(outcome) = self.already_recorded(request, batch)? {
            return Ok(outcome);
        }
        let mut versions = Vec::with_capacity(request.streams.len());
        for s in &request.streams {
            let actual = match batch.versions.get(&s.stream) {
                Some(&v) => v,
                None => self.durable_version(&s.stream),
            };
            if !s.expected.admits(actual) {
                return Err(StoreError::WrongExpectedVersion {
                    stream: s.stream.clone(),
                    expected: s.expected,
                    actual,
                });
            }
            versions.push(actual);
        }
        let recorded_at = request.recorded_at.max(batch.last_recorded_at);
        batch.last_recorded_at = recorded_at;
        let first_position = batch.last_position + 1;
        for (s, mut version) in request.streams.iter().zip(versions) {
            for e in &s.events {
                version += 1;
                batch.last_position += 1;
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
                batch.last_hash = format::encode_record(
                    &mut self.buf,
                    &batch.last_hash,
                    batch.last_position,
                    &envelope,
                );
                batch
                    .records
                    .push((s.stream.clone(), self.buf.len() as u32));
                batch.ids.insert(e.event_id, batch.last_position);
            }
            batch.versions.insert(s.stream.clone(), version);
        }
        Ok(AppendOutcome {
            status: AppendStatus::Recorded,
            first_position,
            last_position: batch.last_position,
        })
    }

    fn durable_version(&self, stream: &StreamId) -> u64 {
        self.shared
            .streams
            .get(stream)
            .map_or(0, |p| p.len() as u64)
    }

    /// `Some` when every event id of the request is recorded (durably or
    /// earlier in this batch); an error when only some are.
    fn already_recorded(
        &self,
        request: &AppendRequest,
        batch: &Batch,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let mut range: Option<(Position, Position)> = None;
        let mut first_missing = None;
        let mut first_found = None;
        for id in request.event_ids() {
            match self.state.ids.get(&id).or_else(|| batch.ids.get(&id)) {
                Some(&p) => {
                    first_found.get_or_insert(id);
                    let (lo, hi) = range.unwrap_or((p, p));
                    range = Some((lo.min(p), hi.max(p)));
                }
                None => {
                    first_missing.get_or_insert(id);
                }
            }
        }
        match (range, first_missing, first_found) {
            (Some((first_position, last_position)), None, _) => Ok(Some(AppendOutcome {
                status: AppendStatus::AlreadyRecorded,
                first_position,
                last_position,
            })),
            (Some(_), Some(_), Some(event_id)) => Err(StoreError::PartlyRecorded { event_id }),
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

    /// Writes the buffer and syncs it; returns the offset it was written
    /// at. On failure the segment is cut back to where it was.
    fn make_durable(&mut self) -> Result<u64, StoreError> {
        let len = self.buf.len() as u64;
        if self.state.active_len + len > self.options.segment_bytes_max
            && self.state.active_len > SEGMENT_HEADER_LEN as u64
        {
            self.roll()?;
        }
        let base = self.state.active_len;
        let file = &self.active.file;
        let path = &self.active.path;
        let result = write_and_sync(file, &self.buf, base, &self.options);
        if let Err(e) = result {
            let repair = file.set_len(base).and_then(|()| file.sync_all());
            if let Err(repair_error) = repair {
                let reason = format!(
                    "could not cut {} back to {base} bytes after a failed write ({e}): {repair_error}; reopen the store",
                    path.display()
                );
                *self
                    .shared
                    .failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(reason);
            }
            return Err(StoreError::io(
                format!("appending to {}", path.display()),
                e,
            ));
        }
        Ok(base)
    }

    /// Seals the active segment and starts a new one.
    fn roll(&mut self) -> Result<(), StoreError> {
        let first = self.state.last_position + 1;
        let segment = Arc::new(create_segment(
            &self.shared.dir,
            first,
            self.state.last_hash,
        )?);
        write_lock(&self.shared.segments).push(Arc::clone(&segment));
        let sealed = std::mem::replace(&mut self.active, segment);
        self.state.active_len = SEGMENT_HEADER_LEN as u64;
        seal_in_background(Arc::clone(&self.shared), sealed);
        Ok(())
    }

    /// Makes a durable batch visible to readers and answers its appends.
    fn publish(&mut self, batch: Batch, base: u64) {
        {
            let mut ends = write_lock(&self.active.ends);
            ends.extend(
                batch
                    .records
                    .iter()
                    .map(|&(_, end)| (base + u64::from(end)) as u32),
            );
        }
        let mut position = self.state.last_position;
        for (stream, _) in &batch.records {
            position += 1;
            match self.shared.streams.get_mut(stream) {
                Some(mut positions) => positions.push(position),
                None => {
                    self.shared.streams.insert(stream.clone(), vec![position]);
                }
            }
        }
        assert_eq!(position, batch.last_position);
        self.state.ids.extend(batch.ids);
        self.state.last_position = batch.last_position;
        self.state.last_hash = batch.last_hash;
        self.state.last_recorded_at = batch.last_recorded_at;
        self.state.active_len = base + self.buf.len() as u64;
        self.shared
            .durable
            .store(batch.last_position, Ordering::Release);
        self.shared.head.send_replace(batch.last_position);
        for (reply, outcome) in batch.answers {
            let _ = reply.send(Ok(outcome));
        }
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

fn write_and_sync(
    file: &File,
    buf: &[u8],
    offset: u64,
    options: &LogOptions,
) -> std::io::Result<()> {
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
    file.write_all_at(buf, offset)?;
    if let Some(faults) = &options.faults {
        faults.before_sync()?;
    }
    file.sync_data()
}

/// Writes a sealed segment's sidecar index from a thread of its own, so the
/// writer does not wait for it. A missing index only makes the next open
/// scan that segment.
fn seal_in_background(shared: Arc<Shared>, sealed: Arc<Segment>) {
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
                index
                    .store(&shared.dir)
                    .map_err(|e| StoreError::io("writing segment index", e))
            });
            if let Err(e) = result {
                tracing::warn!(segment = %sealed.path.display(), error = %e, "could not write segment index");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the segment sealing thread");
    }
}
