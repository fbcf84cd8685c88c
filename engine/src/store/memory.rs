//! The `memory` backend: the whole log in a vector behind a mutex. For unit
//! tests and as the reference the other backends are checked against; it
//! is not durable.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use super::{AppendOutcome, AppendRequest, AppendStatus, EventStore, StoreError};
use crate::event::{Position, RecordedEvent, StreamId, Timestamp};

/// In-memory event store.
#[derive(Debug)]
pub struct MemoryStore {
    state: Mutex<State>,
    head: watch::Sender<Position>,
}

#[derive(Debug, Default)]
struct State {
    events: Vec<RecordedEvent>,
    /// Positions of each stream's events, in version order.
    streams: HashMap<StreamId, Vec<Position>>,
    ids: HashMap<Uuid, Position>,
    last_recorded_at: Timestamp,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        MemoryStore {
            state: Mutex::new(State::default()),
            head: watch::channel(0).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state as it was before
        // the append started (appends mutate only after all checks).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    fn append(&mut self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        if let Some(outcome) = self.already_recorded(&request)? {
            return Ok(outcome);
        }
        for s in &request.streams {
            let positions = self.streams.get(&s.stream);
            let actual = positions.map_or(0, |p| p.len() as u64);
            let last = positions.and_then(|p| p.last().copied());
            if !s
                .expected
                .admits_stream(actual, last, |id| self.ids.get(&id).copied())
            {
                return Err(StoreError::WrongExpectedVersion {
                    stream: s.stream.clone(),
                    expected: s.expected,
                    actual,
                });
            }
        }
        let recorded_at = request.recorded_at.max(self.last_recorded_at);
        self.last_recorded_at = recorded_at;
        let first_position = self.events.len() as Position + 1;
        for s in request.streams {
            let positions = self.streams.entry(s.stream.clone()).or_default();
            for e in s.events {
                let position = self.events.len() as Position + 1;
                positions.push(position);
                self.ids.insert(e.event_id, position);
                self.events.push(RecordedEvent {
                    position,
                    stream: s.stream.clone(),
                    version: positions.len() as u64,
                    event_id: e.event_id,
                    recorded_at,
                    actor: e.actor,
                    correlation_id: e.correlation_id,
                    causation_id: e.causation_id,
                    event_type: e.event_type,
                    schema_version: e.schema_version,
                    payload: e.payload,
                });
            }
        }
        Ok(AppendOutcome {
            status: AppendStatus::Recorded,
            first_position,
            last_position: self.events.len() as Position,
        })
    }

    /// `Some` when every id of the request is recorded; an error when only
    /// some are.
    fn already_recorded(
        &self,
        request: &AppendRequest,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let mut found: Option<(Position, Position)> = None;
        let mut missing = false;
        for id in request.event_ids() {
            match self.ids.get(&id) {
                Some(&p) => {
                    let (lo, hi) = found.unwrap_or((p, p));
                    found = Some((lo.min(p), hi.max(p)));
                }
                None => missing = true,
            }
        }
        match (found, missing) {
            (None, _) => Ok(None),
            (Some((first_position, last_position)), false) => Ok(Some(AppendOutcome {
                status: AppendStatus::AlreadyRecorded,
                first_position,
                last_position,
            })),
            (Some(_), true) => {
                let event_id = request
                    .event_ids()
                    .find(|id| self.ids.contains_key(id))
                    .expect("found implies one id is recorded");
                Err(StoreError::PartlyRecorded { event_id })
            }
        }
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        request.validate()?;
        let mut state = self.lock();
        let outcome = state.append(request)?;
        if outcome.status == AppendStatus::Recorded {
            // Under the lock, so the head never moves backwards.
            self.head.send_replace(outcome.last_position);
        }
        Ok(outcome)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock();
        let Some(positions) = state.streams.get(stream) else {
            return Ok(Vec::new());
        };
        let skip = from_version.saturating_sub(1) as usize;
        Ok(positions
            .iter()
            .skip(skip)
            .take(max.min(super::READ_EVENTS_MAX))
            .map(|&p| state.events[(p - 1) as usize].clone())
            .collect())
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let state = self.lock();
        let start = (after as usize).min(state.events.len());
        let end = start
            .saturating_add(max.min(super::READ_EVENTS_MAX))
            .min(state.events.len());
        Ok(state.events[start..end].to_vec())
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .streams
            .get(stream)
            .map_or(0, |p| p.len() as u64))
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        Ok(self.lock().events.len() as Position)
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.head.subscribe()
    }

    async fn event_positions(&self, ids: &[Uuid]) -> Result<Vec<Option<Position>>, StoreError> {
        let state = self.lock();
        Ok(ids.iter().map(|id| state.ids.get(id).copied()).collect())
    }
}
