//! The event store: one interface, several backends, one conformance suite.
//!
//! Guarantees every backend gives (checked by [`conformance`]):
//! - an append is atomic over all of its streams: every event is recorded
//!   or none is, and each stream's expected version is checked first;
//! - an event id is recorded at most once, forever: appending the same ids
//!   again records nothing and answers [`AppendStatus::AlreadyRecorded`];
//! - global positions start at 1 and are gap-free and strictly increasing;
//!   readers never see position `n + 1` before `n`;
//! - `recorded_at` never goes backwards along the log;
//! - a subscription catches up from any position and then follows, never
//!   skipping an event and never delivering one twice.
//!
//! Layout: [`memory`] (tests), [`log`] (the embedded default),
//! [`subscription`] (catch-up then follow, over any backend),
//! [`import`] (records verbatim, for copying a log between backends),
//! [`conformance`] (the shared test suite).

pub mod conformance;
pub mod import;
pub mod log;
pub mod memory;
pub mod postgres;
pub mod subscription;

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::watch;
use uuid::Uuid;

use crate::event::{
    ACTOR_ID_LEN_MAX, EVENT_TYPE_LEN_MAX, ExpectedVersion, NewEvent, Position, RecordedEvent,
    StreamId, Timestamp,
};

pub use subscription::Subscription;

/// Most events one append may carry.
pub const APPEND_EVENTS_MAX: usize = 10_000;
/// Largest payload of one event, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = 1 << 20;
/// Largest sum of payloads in one append, in bytes.
pub const APPEND_BYTES_MAX: usize = 16 << 20;
/// Most events one read returns.
pub const READ_EVENTS_MAX: usize = 10_000;

/// Events for one stream within an append.
#[derive(Clone, Debug)]
pub struct StreamAppend {
    pub stream: StreamId,
    pub expected: ExpectedVersion,
    pub events: Vec<NewEvent>,
}

/// One atomic append over one or more streams. Events get consecutive
/// positions in the order given: streams in order, events in order.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// When the command that produced these events was decided. The store
    /// records `max(recorded_at, previous event's recorded_at)`.
    pub recorded_at: Timestamp,
    pub streams: Vec<StreamAppend>,
}

impl AppendRequest {
    /// An append to a single stream.
    pub fn single(
        stream: StreamId,
        expected: ExpectedVersion,
        recorded_at: Timestamp,
        events: Vec<NewEvent>,
    ) -> Self {
        AppendRequest {
            recorded_at,
            streams: vec![StreamAppend {
                stream,
                expected,
                events,
            }],
        }
    }

    /// Number of events in the request.
    pub fn event_count(&self) -> usize {
        self.streams.iter().map(|s| s.events.len()).sum()
    }

    /// Every event id in the request, in append order.
    pub fn event_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.streams
            .iter()
            .flat_map(|s| s.events.iter().map(|e| e.event_id))
    }

    /// Checks the shape of the request (not the store's state): every
    /// backend calls this before anything else.
    pub fn validate(&self) -> Result<(), StoreError> {
        let invalid = |why: String| Err(StoreError::InvalidRequest(why));
        if self.streams.is_empty() {
            return invalid("append has no streams".into());
        }
        let count = self.event_count();
        if count > APPEND_EVENTS_MAX {
            return invalid(format!(
                "append has {count} events, more than {APPEND_EVENTS_MAX}"
            ));
        }
        let hasher = foldhash::fast::RandomState::default;
        let mut streams = HashSet::with_capacity_and_hasher(self.streams.len(), hasher());
        let mut ids = HashSet::with_capacity_and_hasher(count, hasher());
        let mut bytes = 0usize;
        for s in &self.streams {
            if let Some(why) = s.stream.problem() {
                return invalid(why);
            }
            if !streams.insert(&s.stream) {
                return invalid(format!("stream {} appears twice in one append", s.stream));
            }
            if s.events.is_empty() {
                return invalid(format!("stream {} has no events", s.stream));
            }
            if let ExpectedVersion::ExactAfter { version: 0, .. } = s.expected {
                return invalid(format!(
                    "stream {}: an expected last event needs a version of at least 1",
                    s.stream
                ));
            }
            for e in &s.events {
                if !ids.insert(e.event_id) {
                    return invalid(format!("event id {} appears twice", e.event_id));
                }
                if e.event_id.is_nil() {
                    return invalid("event id is nil".into());
                }
                if e.event_type.is_empty() || e.event_type.len() > EVENT_TYPE_LEN_MAX {
                    return invalid(format!(
                        "event type must be 1 to {EVENT_TYPE_LEN_MAX} bytes"
                    ));
                }
                if e.actor.id.len() > ACTOR_ID_LEN_MAX {
                    return invalid(format!("actor id is longer than {ACTOR_ID_LEN_MAX} bytes"));
                }
                if e.payload.len() > PAYLOAD_BYTES_MAX {
                    return invalid(format!(
                        "payload of {} bytes exceeds {PAYLOAD_BYTES_MAX}",
                        e.payload.len()
                    ));
                }
                bytes += e.payload.len();
            }
        }
        if bytes > APPEND_BYTES_MAX {
            return invalid(format!(
                "append carries {bytes} payload bytes, more than {APPEND_BYTES_MAX}"
            ));
        }
        Ok(())
    }
}

/// Whether an append recorded its events or found them already recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendStatus {
    Recorded,
    /// Every event id of the request was already in the log (a retry):
    /// nothing new was recorded; positions are those of the first time.
    AlreadyRecorded,
}

/// The answer to a successful append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendOutcome {
    pub status: AppendStatus,
    /// Position of the first event of the request.
    pub first_position: Position,
    /// Position of the last event of the request.
    pub last_position: Position,
}

/// Why the store refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("stream {stream}: expected {expected}, but it is at version {actual}")]
    WrongExpectedVersion {
        stream: StreamId,
        expected: ExpectedVersion,
        actual: u64,
    },
    #[error("invalid append: {0}")]
    InvalidRequest(String),
    #[error(
        "event id {event_id} is already recorded but other events of the same append are not; a retry must repeat the whole append"
    )]
    PartlyRecorded { event_id: Uuid },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("corrupt log: segment {segment}, offset {offset}{}: {reason}", position_suffix(*.position))]
    Corrupt {
        segment: PathBuf,
        offset: u64,
        position: Option<Position>,
        reason: String,
    },
    #[error("data directory {path} is locked by another writer")]
    Locked { path: PathBuf },
    #[error("the store is read-only")]
    ReadOnly,
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// An import batch does not continue the log (see [`import`]).
    #[error("import refused: {0}")]
    ImportRefused(String),
}

fn position_suffix(position: Option<Position>) -> String {
    match position {
        Some(p) => format!(" (position {p})"),
        None => String::new(),
    }
}

impl StoreError {
    pub fn io(context: impl fmt::Display, source: std::io::Error) -> Self {
        StoreError::Io {
            context: context.to_string(),
            source,
        }
    }

    /// Whether retrying the same command after re-reading state may succeed.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::WrongExpectedVersion { .. })
    }
}

/// An event store backend.
#[async_trait]
pub trait EventStore: Send + Sync + fmt::Debug + 'static {
    /// Appends atomically; see [`AppendRequest`]. Returns only once the
    /// events are durable (for durable backends).
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError>;

    /// Events of one stream with version `>= from_version` (1-based), at
    /// most `max` of them, in version order.
    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Events with position `> after`, at most `max`, in position order.
    /// May return fewer than `max` even when more exist (a backend may stop
    /// at a segment boundary); an empty answer means none exist yet.
    async fn read_all(&self, after: Position, max: usize)
    -> Result<Vec<RecordedEvent>, StoreError>;

    /// Number of events in the stream (0 if it does not exist).
    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError>;

    /// Position of the last recorded event (0 when the log is empty).
    async fn last_position(&self) -> Result<Position, StoreError>;

    /// A watch of the last position readers may read; it changes after
    /// every append. Subscriptions wait on it.
    fn head(&self) -> watch::Receiver<Position>;

    /// Starts an append and returns once it is queued: any append submitted
    /// after this returns (by any caller) is checked against the state this
    /// one leaves. The ticket gives the outcome once it is known (durable,
    /// for durable backends).
    ///
    /// This lets the command engine decide the next command on a stream
    /// while the previous one waits for its fsync, so that many commands on
    /// one stream share one fsync. The default runs the whole append.
    async fn submit(&self, request: AppendRequest) -> Result<AppendTicket, StoreError> {
        Ok(AppendTicket::ready(self.append(request).await))
    }

    /// The positions of these event ids, `None` for ids not recorded. The
    /// command engine asks before deciding a command with an idempotency
    /// key, to answer a repeated command with what it did the first time.
    ///
    /// Every backend must implement it (the conformance suite checks); the
    /// default only says it is missing.
    async fn event_positions(&self, ids: &[Uuid]) -> Result<Vec<Option<Position>>, StoreError> {
        let _ = ids;
        Err(StoreError::Unavailable(format!(
            "{self:?} cannot look up event ids"
        )))
    }
}

/// The pending outcome of a submitted append.
#[derive(Debug)]
pub struct AppendTicket(TicketInner);

#[derive(Debug)]
enum TicketInner {
    Ready(Result<AppendOutcome, StoreError>),
    Waiting(tokio::sync::oneshot::Receiver<Result<AppendOutcome, StoreError>>),
}

impl AppendTicket {
    /// A ticket whose outcome is already known.
    pub fn ready(outcome: Result<AppendOutcome, StoreError>) -> Self {
        AppendTicket(TicketInner::Ready(outcome))
    }

    /// A ticket answered through a channel.
    pub fn waiting(rx: tokio::sync::oneshot::Receiver<Result<AppendOutcome, StoreError>>) -> Self {
        AppendTicket(TicketInner::Waiting(rx))
    }

    /// Waits for the outcome.
    pub async fn outcome(self) -> Result<AppendOutcome, StoreError> {
        match self.0 {
            TicketInner::Ready(outcome) => outcome,
            TicketInner::Waiting(rx) => rx.await.map_err(|_| {
                StoreError::Unavailable("the store stopped before answering".into())
            })?,
        }
    }
}

/// Follows `store` from just after `after`: catch up, then live.
pub fn subscribe(store: Arc<dyn EventStore>, after: Position) -> Subscription {
    Subscription::new(store, after)
}
