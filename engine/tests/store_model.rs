//! Model-based property test: random sequences of appends (multi-stream,
//! every kind of expected version, retries of earlier appends) and reads,
//! run against each backend and against a plain reference model; every
//! answer must match. The `log` backend is also closed and reopened at
//! random points, and uses tiny segments so sequences cross many of them.

use std::collections::HashMap;
use std::sync::Arc;

use kedai_engine::store::log::{LogOptions, LogStore};
use kedai_engine::store::memory::MemoryStore;
use kedai_engine::{
    Actor, AppendOutcome, AppendRequest, AppendStatus, EventStore, ExpectedVersion, NewEvent,
    RecordedEvent, Role, ShopId, StoreError, StreamAppend, StreamId, Timestamp,
};
use proptest::prelude::*;
use uuid::Uuid;

const STREAMS: usize = 4;

#[derive(Clone, Debug)]
enum Expect {
    Any,
    NoStream,
    /// The stream's current version plus this offset (may be wrong).
    Near(i8),
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<(usize, Expect, usize)>, i64),
    Retry(usize),
    ReadStream(usize, u64, usize),
    ReadAll(u64, usize),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let part = (
        0..STREAMS,
        prop_oneof![
            Just(Expect::Any),
            Just(Expect::NoStream),
            (-1i8..=1).prop_map(Expect::Near)
        ],
        1usize..4,
    );
    prop_oneof![
        6 => (prop::collection::vec(part, 1..4), 0i64..1000).prop_map(|(p, t)| Op::Append(p, t)),
        2 => (0usize..50).prop_map(Op::Retry),
        2 => (0..STREAMS, 0u64..8, 1usize..6).prop_map(|(s, v, m)| Op::ReadStream(s, v, m)),
        2 => (0u64..40, 1usize..12).prop_map(|(a, m)| Op::ReadAll(a, m)),
        1 => Just(Op::Reopen),
    ]
}

/// The reference: a vector of events and nothing clever.
#[derive(Default)]
struct Model {
    events: Vec<RecordedEvent>,
    ids: HashMap<Uuid, u64>,
    last_at: Timestamp,
}

impl Model {
    fn version(&self, s: &StreamId) -> u64 {
        self.events.iter().filter(|e| &e.stream == s).count() as u64
    }

    fn append(&mut self, r: &AppendRequest) -> Result<AppendOutcome, String> {
        let mut seen = std::collections::HashSet::new();
        if r.streams.iter().any(|s| !seen.insert(&s.stream)) {
            return Err("invalid".into());
        }
        let found: Vec<u64> = r
            .event_ids()
            .filter_map(|id| self.ids.get(&id).copied())
            .collect();
        if !found.is_empty() {
            if found.len() < r.event_count() {
                return Err("partly".into());
            }
            return Ok(AppendOutcome {
                status: AppendStatus::AlreadyRecorded,
                first_position: *found.iter().min().unwrap(),
                last_position: *found.iter().max().unwrap(),
            });
        }
        for s in &r.streams {
            let actual = self.version(&s.stream);
            if !s.expected.admits(actual) {
                return Err(format!("conflict {} {actual}", s.stream));
            }
        }
        let at = r.recorded_at.max(self.last_at);
        self.last_at = at;
        let first = self.events.len() as u64 + 1;
        for s in &r.streams {
            for e in &s.events {
                let version = self.version(&s.stream) + 1;
                let position = self.events.len() as u64 + 1;
                self.ids.insert(e.event_id, position);
                self.events.push(RecordedEvent {
                    position,
                    stream: s.stream.clone(),
                    version,
                    event_id: e.event_id,
                    recorded_at: at,
                    actor: e.actor.clone(),
                    correlation_id: e.correlation_id,
                    causation_id: e.causation_id,
                    event_type: e.event_type.clone(),
                    schema_version: e.schema_version,
                    payload: e.payload.clone(),
                });
            }
        }
        Ok(AppendOutcome {
            status: AppendStatus::Recorded,
            first_position: first,
            last_position: self.events.len() as u64,
        })
    }
}

fn describe(result: Result<AppendOutcome, StoreError>) -> Result<AppendOutcome, String> {
    result.map_err(|e| match e {
        StoreError::WrongExpectedVersion { stream, actual, .. } => {
            format!("conflict {stream} {actual}")
        }
        StoreError::PartlyRecorded { .. } => "partly".into(),
        StoreError::InvalidRequest(_) => "invalid".into(),
        other => panic!("unexpected store error {other}"),
    })
}

fn stream(i: usize) -> StreamId {
    StreamId::new(ShopId(Uuid::from_u128(3)), format!("s{i}"))
}

fn build(
    parts: &[(usize, Expect, usize)],
    t: i64,
    model: &Model,
    counter: &mut u128,
) -> AppendRequest {
    let streams =
        parts
            .iter()
            .map(|(s, expect, n)| {
                let st = stream(*s);
                let expected = match expect {
                    Expect::Any => ExpectedVersion::Any,
                    Expect::NoStream => ExpectedVersion::NoStream,
                    Expect::Near(d) => ExpectedVersion::Exact(
                        (model.version(&st) as i64 + i64::from(*d)).max(0) as u64,
                    ),
                };
                let events = (0..*n)
                    .map(|_| {
                        *counter += 1;
                        NewEvent {
                            event_id: Uuid::from_u128(*counter),
                            event_type: "E".into(),
                            schema_version: 1,
                            actor: Actor::new(Role::Owner, "o"),
                            correlation_id: Uuid::from_u128(*counter),
                            causation_id: None,
                            payload: counter.to_le_bytes()[..(*counter % 16) as usize].to_vec(),
                        }
                    })
                    .collect();
                StreamAppend {
                    stream: st,
                    expected,
                    events,
                }
            })
            .collect();
    AppendRequest {
        recorded_at: Timestamp(t),
        streams,
    }
}

enum Backend {
    Memory,
    Log(tempfile::TempDir),
}

impl Backend {
    fn open(&self) -> Arc<dyn EventStore> {
        match self {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::Log(dir) => {
                let options = LogOptions {
                    segment_bytes_max: 700,
                    ..LogOptions::default()
                };
                Arc::new(LogStore::open_with(dir.path(), options).unwrap())
            }
        }
    }
}

fn run(backend: Backend, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut store = backend.open();
        let mut model = Model::default();
        let mut sent: Vec<AppendRequest> = Vec::new();
        let mut counter = 0u128;
        for op in ops {
            match op {
                Op::Append(parts, t) => {
                    let request = build(&parts, t, &model, &mut counter);
                    let expected = model.append(&request);
                    prop_assert_eq!(describe(store.append(request.clone()).await), expected);
                    sent.push(request);
                }
                Op::Retry(k) if !sent.is_empty() => {
                    let request = sent[k % sent.len()].clone();
                    let expected = model.append(&request);
                    prop_assert_eq!(describe(store.append(request).await), expected);
                }
                Op::Retry(_) => {}
                Op::ReadStream(s, from, max) => {
                    let want: Vec<RecordedEvent> = model
                        .events
                        .iter()
                        .filter(|e| e.stream == stream(s) && e.version >= from)
                        .take(max)
                        .cloned()
                        .collect();
                    prop_assert_eq!(
                        store.read_stream(&stream(s), from, max).await.unwrap(),
                        want
                    );
                }
                Op::ReadAll(after, max) => {
                    let want: Vec<RecordedEvent> = model
                        .events
                        .iter()
                        .skip(after as usize)
                        .take(max)
                        .cloned()
                        .collect();
                    let mut got = Vec::new();
                    while got.len() < want.len() {
                        let from = after + got.len() as u64;
                        let batch = store.read_all(from, max - got.len()).await.unwrap();
                        prop_assert!(!batch.is_empty(), "read_all stopped early");
                        got.extend(batch);
                    }
                    prop_assert_eq!(got, want);
                }
                Op::Reopen => {
                    if matches!(backend, Backend::Log(_)) {
                        drop(store);
                        store = backend.open();
                    }
                }
            }
            prop_assert_eq!(
                store.last_position().await.unwrap(),
                model.events.len() as u64
            );
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn memory_store_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(Backend::Memory, ops)?;
    }

    #[test]
    fn log_store_matches_the_model(ops in prop::collection::vec(op(), 1..40)) {
        run(Backend::Log(tempfile::tempdir().unwrap()), ops)?;
    }
}
