//! The conformance suite: the behaviour every [`EventStore`] backend must
//! show, written once and run unchanged against each backend.
//!
//! A backend's test file instantiates it with [`conformance_suite!`](crate::conformance_suite),
//! giving a function that makes a fresh, empty store:
//!
//! ```text
//! async fn fresh() -> Subject { Subject::new(Arc::new(MemoryStore::new()), ()) }
//! kedai_engine::conformance_suite!(fresh);
//! ```
//!
//! Each case panics with a message saying what was expected.

use std::any::Any;
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{AppendOutcome, AppendRequest, AppendStatus, EventStore, StoreError, StreamAppend};
use crate::event::{
    Actor, ExpectedVersion, NewEvent, Position, RecordedEvent, Role, ShopId, StreamId, Timestamp,
};

/// A store under test and whatever must live as long as it (a temporary
/// directory, a database).
pub struct Subject {
    pub store: Arc<dyn EventStore>,
    pub guard: Box<dyn Any + Send + Sync>,
}

impl fmt::Debug for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subject")
            .field("store", &self.store)
            .finish()
    }
}

impl Subject {
    pub fn new(store: Arc<dyn EventStore>, guard: impl Any + Send + Sync) -> Self {
        Subject {
            store,
            guard: Box::new(guard),
        }
    }
}

/// Generates one `#[tokio::test]` per conformance case, each on a fresh
/// store made by the given async function returning a [`Subject`].
#[macro_export]
macro_rules! conformance_suite {
    ($make:path) => {
        $crate::conformance_suite!(@cases $make;
            appends_and_reads_back,
            expected_version_conflicts_record_nothing,
            multi_stream_append_is_atomic,
            retries_are_idempotent,
            invalid_appends_are_refused,
            reads_respect_bounds,
            recorded_at_never_goes_backwards,
            subscription_catches_up_then_follows,
            concurrent_appenders_lose_nothing,
            optimistic_writers_on_one_stream_serialise,
            head_follows_appends,
            submitted_appends_chain_without_waiting,
            an_expected_last_event_pins_the_history,
            events_are_found_by_id
        );
    };
    (@cases $make:path; $($case:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject = $make().await;
                $crate::store::conformance::$case(::std::sync::Arc::clone(&subject.store)).await;
                drop(subject);
            }
        )*
    };
}

/// Longest any case waits for something to happen.
const WAIT_MAX: Duration = Duration::from_secs(30);

fn shop() -> ShopId {
    ShopId(Uuid::from_u128(0x5eed))
}

fn stream(name: &str) -> StreamId {
    StreamId::new(shop(), name)
}

fn event(kind: &str, payload: &[u8]) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: kind.into(),
        schema_version: 1,
        actor: Actor::new(Role::Staff, "ayu@tokobatik"),
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        payload: payload.to_vec(),
    }
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| event("Tested", format!("payload {i}").as_bytes()))
        .collect()
}

fn at(micros: i64) -> Timestamp {
    Timestamp(1_760_000_000_000_000 + micros)
}

async fn append(
    store: &dyn EventStore,
    s: &StreamId,
    expected: ExpectedVersion,
    evs: Vec<NewEvent>,
) -> Result<AppendOutcome, StoreError> {
    store
        .append(AppendRequest::single(s.clone(), expected, at(0), evs))
        .await
}

/// Reads the whole log, following `read_all` across short answers.
pub async fn read_everything(store: &dyn EventStore) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |e: &RecordedEvent| e.position);
        let batch = store.read_all(after, 1000).await.expect("read_all");
        if batch.is_empty() {
            return all;
        }
        all.extend(batch);
    }
}

/// Asserts the log's positions are exactly 1..=n.
fn assert_gap_free(all: &[RecordedEvent]) {
    for (i, e) in all.iter().enumerate() {
        assert_eq!(
            e.position,
            i as u64 + 1,
            "positions must be gap-free from 1"
        );
    }
}

pub async fn appends_and_reads_back(store: Arc<dyn EventStore>) {
    let order = stream("order-1");
    let mut first = event("OrderPlaced", b"\x81\xa3sku\xa6KAOS-M");
    first.causation_id = Some(Uuid::now_v7());
    let sent = vec![
        first,
        event("OrderPaid", b"paid"),
        event("OrderPacked", b""),
    ];
    let outcome = store
        .append(AppendRequest::single(
            order.clone(),
            ExpectedVersion::NoStream,
            at(7),
            sent.clone(),
        ))
        .await
        .expect("first append");
    assert_eq!(
        outcome,
        AppendOutcome {
            status: AppendStatus::Recorded,
            first_position: 1,
            last_position: 3
        }
    );
    let read = store.read_stream(&order, 1, 100).await.unwrap();
    assert_eq!(read.len(), 3);
    for (i, (got, want)) in read.iter().zip(&sent).enumerate() {
        assert_eq!(got.position, i as u64 + 1);
        assert_eq!(got.version, i as u64 + 1);
        assert_eq!(got.stream, order);
        assert_eq!(got.event_id, want.event_id);
        assert_eq!(got.event_type, want.event_type);
        assert_eq!(got.schema_version, want.schema_version);
        assert_eq!(got.actor, want.actor);
        assert_eq!(got.correlation_id, want.correlation_id);
        assert_eq!(got.causation_id, want.causation_id);
        assert_eq!(got.payload, want.payload);
        assert_eq!(got.recorded_at, at(7));
    }
    assert_eq!(store.read_all(0, 100).await.unwrap(), read);
    assert_eq!(store.stream_version(&order).await.unwrap(), 3);
    assert_eq!(store.last_position().await.unwrap(), 3);
    assert!(
        store
            .read_stream(&stream("order-2"), 1, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.stream_version(&stream("order-2")).await.unwrap(), 0);
    let other_shop = StreamId::new(ShopId(Uuid::from_u128(1)), "order-1");
    assert!(
        store
            .read_stream(&other_shop, 1, 10)
            .await
            .unwrap()
            .is_empty(),
        "a stream name in another shop is another stream"
    );
}

pub async fn expected_version_conflicts_record_nothing(store: Arc<dyn EventStore>) {
    let s = stream("stock-KAOS-M@malang");
    append(&*store, &s, ExpectedVersion::Exact(0), events(2))
        .await
        .expect("Exact(0) on a new stream");
    let cases = [
        (ExpectedVersion::NoStream, 2),
        (ExpectedVersion::Exact(1), 2),
        (ExpectedVersion::Exact(3), 2),
    ];
    for (expected, actual_version) in cases {
        match append(&*store, &s, expected, events(1)).await {
            Err(StoreError::WrongExpectedVersion {
                stream: st,
                expected: e,
                actual,
            }) => {
                assert_eq!((st, e, actual), (s.clone(), expected, actual_version));
            }
            other => panic!("expected a version conflict for {expected}, got {other:?}"),
        }
    }
    assert_eq!(
        store.last_position().await.unwrap(),
        2,
        "a conflict records nothing"
    );
    append(&*store, &s, ExpectedVersion::Exact(2), events(1))
        .await
        .expect("right version");
    append(&*store, &s, ExpectedVersion::Any, events(1))
        .await
        .expect("any version");
    assert_eq!(store.stream_version(&s).await.unwrap(), 4);
    let conflict = append(
        &*store,
        &stream("fresh"),
        ExpectedVersion::Exact(1),
        events(1),
    )
    .await;
    assert!(matches!(
        conflict,
        Err(StoreError::WrongExpectedVersion { actual: 0, .. })
    ));
}

pub async fn multi_stream_append_is_atomic(store: Arc<dyn EventStore>) {
    let a = stream("stock-A@malang");
    let b = stream("order-9");
    append(&*store, &a, ExpectedVersion::NoStream, events(1))
        .await
        .unwrap();
    let request = |expected_a| AppendRequest {
        recorded_at: at(1),
        streams: vec![
            StreamAppend {
                stream: b.clone(),
                expected: ExpectedVersion::NoStream,
                events: events(2),
            },
            StreamAppend {
                stream: a.clone(),
                expected: expected_a,
                events: events(1),
            },
        ],
    };
    let refused = store.append(request(ExpectedVersion::Exact(5))).await;
    assert!(
        matches!(refused, Err(StoreError::WrongExpectedVersion { .. })),
        "{refused:?}"
    );
    assert_eq!(
        store.stream_version(&b).await.unwrap(),
        0,
        "nothing recorded on the other stream"
    );
    assert_eq!(store.last_position().await.unwrap(), 1);
    let ok = store
        .append(request(ExpectedVersion::Exact(1)))
        .await
        .unwrap();
    assert_eq!((ok.first_position, ok.last_position), (2, 4));
    let all = read_everything(&*store).await;
    let order: Vec<(&str, u64)> = all.iter().map(|e| (&*e.stream.name, e.version)).collect();
    assert_eq!(
        order,
        [
            ("stock-A@malang", 1),
            ("order-9", 1),
            ("order-9", 2),
            ("stock-A@malang", 2)
        ],
        "positions follow the request order"
    );
}

pub async fn retries_are_idempotent(store: Arc<dyn EventStore>) {
    let s = stream("wallet");
    let first = events(3);
    let request = AppendRequest::single(s.clone(), ExpectedVersion::NoStream, at(0), first.clone());
    let recorded = store.append(request.clone()).await.unwrap();
    append(&*store, &stream("other"), ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    let retried = store
        .append(request.clone())
        .await
        .expect("a retry is not an error");
    assert_eq!(retried.status, AppendStatus::AlreadyRecorded);
    assert_eq!(
        (retried.first_position, retried.last_position),
        (recorded.first_position, recorded.last_position)
    );
    let mut any_version = request.clone();
    any_version.streams[0].expected = ExpectedVersion::Exact(99);
    let again = store.append(any_version).await.unwrap();
    assert_eq!(
        again.status,
        AppendStatus::AlreadyRecorded,
        "ids decide, not versions"
    );
    assert_eq!(
        store.last_position().await.unwrap(),
        5,
        "retries record nothing"
    );

    let mut mixed = vec![first[0].clone()];
    mixed.extend(events(1));
    let partly = append(&*store, &s, ExpectedVersion::Any, mixed).await;
    assert!(
        matches!(partly, Err(StoreError::PartlyRecorded { event_id }) if event_id == first[0].event_id),
        "{partly:?}"
    );
    assert_eq!(store.last_position().await.unwrap(), 5);
    assert_eq!(store.stream_version(&s).await.unwrap(), 3);
}

pub async fn invalid_appends_are_refused(store: Arc<dyn EventStore>) {
    let s = stream("order-1");
    let dup = event("X", b"");
    let bad = [
        AppendRequest {
            recorded_at: at(0),
            streams: vec![],
        },
        AppendRequest::single(s.clone(), ExpectedVersion::Any, at(0), vec![]),
        AppendRequest::single(
            s.clone(),
            ExpectedVersion::Any,
            at(0),
            vec![dup.clone(), dup],
        ),
        AppendRequest::single(stream(""), ExpectedVersion::Any, at(0), events(1)),
        AppendRequest::single(stream("has space"), ExpectedVersion::Any, at(0), events(1)),
        AppendRequest::single(s.clone(), ExpectedVersion::Any, at(0), vec![event("", b"")]),
        AppendRequest {
            recorded_at: at(0),
            streams: vec![
                StreamAppend {
                    stream: s.clone(),
                    expected: ExpectedVersion::Any,
                    events: events(1),
                },
                StreamAppend {
                    stream: s.clone(),
                    expected: ExpectedVersion::Any,
                    events: events(1),
                },
            ],
        },
    ];
    for request in bad {
        let result = store.append(request.clone()).await;
        assert!(
            matches!(result, Err(StoreError::InvalidRequest(_))),
            "{request:?} gave {result:?}"
        );
    }
    assert_eq!(store.last_position().await.unwrap(), 0);
}

pub async fn reads_respect_bounds(store: Arc<dyn EventStore>) {
    let (a, b) = (stream("a"), stream("b"));
    for _ in 0..10 {
        append(&*store, &a, ExpectedVersion::Any, events(2))
            .await
            .unwrap();
        append(&*store, &b, ExpectedVersion::Any, events(1))
            .await
            .unwrap();
    }
    let page = store.read_stream(&a, 5, 3).await.unwrap();
    assert_eq!(
        page.iter().map(|e| e.version).collect::<Vec<_>>(),
        [5, 6, 7]
    );
    assert!(store.read_stream(&a, 21, 10).await.unwrap().is_empty());
    let all = read_everything(&*store).await;
    assert_eq!(all.len(), 30);
    assert_gap_free(&all);
    let mut got = Vec::new();
    while got.len() < 5 {
        let after = 10 + got.len() as u64;
        let batch = store.read_all(after, 5 - got.len()).await.unwrap();
        assert!(!batch.is_empty());
        got.extend(batch);
    }
    assert_eq!(
        got.iter().map(|e| e.position).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15]
    );
    assert!(store.read_all(30, 10).await.unwrap().is_empty());
    assert!(store.read_all(0, 0).await.unwrap().is_empty());
}

pub async fn recorded_at_never_goes_backwards(store: Arc<dyn EventStore>) {
    let s = stream("s");
    store
        .append(AppendRequest::single(
            s.clone(),
            ExpectedVersion::Any,
            at(100),
            events(1),
        ))
        .await
        .unwrap();
    store
        .append(AppendRequest::single(
            s.clone(),
            ExpectedVersion::Any,
            at(50),
            events(1),
        ))
        .await
        .unwrap();
    store
        .append(AppendRequest::single(
            s.clone(),
            ExpectedVersion::Any,
            at(200),
            events(1),
        ))
        .await
        .unwrap();
    let times: Vec<Timestamp> = read_everything(&*store)
        .await
        .iter()
        .map(|e| e.recorded_at)
        .collect();
    assert_eq!(times, [at(100), at(100), at(200)]);
}

pub async fn subscription_catches_up_then_follows(store: Arc<dyn EventStore>) {
    let s = stream("feed");
    append(&*store, &s, ExpectedVersion::Any, events(10))
        .await
        .unwrap();
    let mut sub = super::subscribe(Arc::clone(&store), 3);
    let writer = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for _ in 0..10 {
                append(&*store, &stream("feed"), ExpectedVersion::Any, events(5))
                    .await
                    .unwrap();
                tokio::task::yield_now().await;
            }
        })
    };
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT_MAX, async {
        while seen.len() < 57 {
            let e = sub.next().await.expect("subscription");
            seen.push(e.position);
        }
    })
    .await
    .expect("subscription delivered everything in time");
    writer.await.unwrap();
    assert_eq!(
        seen,
        (4..=60).collect::<Vec<_>>(),
        "every event once, in order"
    );
    let nothing_more = tokio::time::timeout(Duration::from_millis(50), sub.next()).await;
    assert!(
        nothing_more.is_err(),
        "no event beyond the last: {nothing_more:?}"
    );
}

pub async fn concurrent_appenders_lose_nothing(store: Arc<dyn EventStore>) {
    const TASKS: usize = 16;
    const APPENDS: usize = 30;
    let follower = {
        let mut sub = super::subscribe(Arc::clone(&store), 0);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while seen.len() < TASKS * APPENDS * 2 {
                seen.push(sub.next().await.expect("follow").position);
            }
            seen
        })
    };
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let own = stream(&format!("own-{t}"));
            let mut ids = Vec::new();
            for i in 0..APPENDS {
                let evs = events(1);
                ids.push(evs[0].event_id);
                append(&*store, &own, ExpectedVersion::Exact(i as u64), evs)
                    .await
                    .expect("own stream");
                let evs = events(1);
                ids.push(evs[0].event_id);
                append(&*store, &stream("shared"), ExpectedVersion::Any, evs)
                    .await
                    .expect("shared");
            }
            ids
        }));
    }
    let mut acknowledged = HashSet::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    let all = read_everything(&*store).await;
    assert_gap_free(&all);
    assert_eq!(all.len(), TASKS * APPENDS * 2);
    let recorded: HashSet<Uuid> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(recorded.len(), all.len(), "no event recorded twice");
    assert_eq!(
        recorded, acknowledged,
        "every acknowledged event, nothing else"
    );
    let mut shared_versions = BTreeSet::new();
    for e in &all {
        if &*e.stream.name == "shared" {
            shared_versions.insert(e.version);
        }
    }
    assert_eq!(shared_versions, (1..=(TASKS * APPENDS) as u64).collect());
    for t in 0..TASKS {
        let own = store
            .read_stream(&stream(&format!("own-{t}")), 1, 1000)
            .await
            .unwrap();
        assert_eq!(
            own.iter().map(|e| e.version).collect::<Vec<_>>(),
            (1..=APPENDS as u64).collect::<Vec<_>>()
        );
    }
    let seen = tokio::time::timeout(WAIT_MAX, follower)
        .await
        .expect("follower in time")
        .unwrap();
    assert_eq!(seen, (1..=all.len() as Position).collect::<Vec<_>>());
}

pub async fn optimistic_writers_on_one_stream_serialise(store: Arc<dyn EventStore>) {
    const WRITERS: usize = 8;
    const EACH: usize = 15;
    let s = stream("counter");
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = Arc::clone(&store);
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0u32;
            for _ in 0..EACH {
                loop {
                    let version = store.stream_version(&s).await.unwrap();
                    match append(&*store, &s, ExpectedVersion::Exact(version), events(1)).await {
                        Ok(_) => break,
                        Err(e) if e.is_conflict() => {
                            conflicts += 1;
                            assert!(conflicts < 100_000, "livelock");
                            tokio::task::yield_now().await;
                        }
                        Err(e) => panic!("unexpected error {e}"),
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let read = store.read_stream(&s, 1, 1000).await.unwrap();
    assert_eq!(read.len(), WRITERS * EACH, "every successful append once");
    assert_eq!(
        read.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=(WRITERS * EACH) as u64).collect::<Vec<_>>()
    );
}

pub async fn head_follows_appends(store: Arc<dyn EventStore>) {
    let mut head = store.head();
    assert_eq!(*head.borrow_and_update(), 0);
    append(&*store, &stream("h"), ExpectedVersion::Any, events(4))
        .await
        .unwrap();
    tokio::time::timeout(WAIT_MAX, head.wait_for(|&p| p == 4))
        .await
        .expect("head moved in time")
        .expect("store open");
    assert_eq!(store.last_position().await.unwrap(), 4);
}

pub async fn submitted_appends_chain_without_waiting(store: Arc<dyn EventStore>) {
    let s = stream("hot-sku");
    let mut tickets = Vec::new();
    for version in 0..50u64 {
        let request =
            AppendRequest::single(s.clone(), ExpectedVersion::Exact(version), at(0), events(1));
        tickets.push(store.submit(request).await.expect("queued"));
    }
    let stale = AppendRequest::single(s.clone(), ExpectedVersion::Exact(10), at(0), events(1));
    let stale = store.submit(stale).await.expect("queued");
    for (i, ticket) in tickets.into_iter().enumerate() {
        let outcome = ticket
            .outcome()
            .await
            .expect("each append sees the one submitted before it");
        assert_eq!(outcome.last_position, i as u64 + 1);
    }
    assert!(matches!(
        stale.outcome().await,
        Err(StoreError::WrongExpectedVersion { actual: 50, .. })
    ));
    assert_eq!(store.stream_version(&s).await.unwrap(), 50);
}

/// A writer decides on its own submitted events: if the first append
/// fails, one decided after it must fail too, even when another writer's
/// events have taken the same versions in between (else it would be
/// recorded on top of a history it was not decided on).
pub async fn an_expected_last_event_pins_the_history(store: Arc<dyn EventStore>) {
    let s = stream("stock-KAOS-M@malang");
    let first = events(1);
    let first_id = first[0].event_id;
    append(&*store, &s, ExpectedVersion::NoStream, first)
        .await
        .unwrap();
    // Ours: expects version 1 after `first`, and was beaten to it.
    let other = events(1);
    let other_id = other[0].event_id;
    append(&*store, &s, ExpectedVersion::Exact(1), other)
        .await
        .expect("the other writer's");
    let ours = events(1);
    let ours_id = ours[0].event_id;
    let after_first = ExpectedVersion::ExactAfter {
        version: 1,
        last_event_id: first_id,
    };
    let failed = append(&*store, &s, after_first, ours).await;
    assert!(
        matches!(
            failed,
            Err(StoreError::WrongExpectedVersion { actual: 2, .. })
        ),
        "{failed:?}"
    );
    // Decided after ours: version 2 is right, but its last event is not ours.
    let chained = ExpectedVersion::ExactAfter {
        version: 2,
        last_event_id: ours_id,
    };
    match append(&*store, &s, chained, events(1)).await {
        Err(StoreError::WrongExpectedVersion {
            stream: st,
            expected,
            actual,
        }) => assert_eq!((st, expected, actual), (s.clone(), chained, 2)),
        other => panic!("an append after a failed one must fail, got {other:?}"),
    }
    // Also when the named event is recorded, but not last.
    let not_last = ExpectedVersion::ExactAfter {
        version: 2,
        last_event_id: first_id,
    };
    assert!(matches!(
        append(&*store, &s, not_last, events(1)).await,
        Err(StoreError::WrongExpectedVersion { .. })
    ));
    let right = ExpectedVersion::ExactAfter {
        version: 2,
        last_event_id: other_id,
    };
    append(&*store, &s, right, events(1))
        .await
        .expect("the stream's real last event");
    // In one batch: the second append names the first's event.
    let (a, b) = (events(1), events(1));
    let a_id = a[0].event_id;
    let t1 = store
        .submit(AppendRequest::single(
            s.clone(),
            ExpectedVersion::Exact(3),
            at(0),
            a,
        ))
        .await
        .unwrap();
    let after_a = ExpectedVersion::ExactAfter {
        version: 4,
        last_event_id: a_id,
    };
    let t2 = store
        .submit(AppendRequest::single(s.clone(), after_a, at(0), b))
        .await
        .unwrap();
    t1.outcome().await.expect("first of the chain");
    t2.outcome().await.expect("second, after the first");
    assert_eq!(store.stream_version(&s).await.unwrap(), 5);
    let zero = ExpectedVersion::ExactAfter {
        version: 0,
        last_event_id: a_id,
    };
    assert!(matches!(
        append(&*store, &stream("new"), zero, events(1)).await,
        Err(StoreError::InvalidRequest(_))
    ));
}

pub async fn events_are_found_by_id(store: Arc<dyn EventStore>) {
    append(&*store, &stream("x"), ExpectedVersion::Any, events(2))
        .await
        .unwrap();
    let evs = events(3);
    let ids: Vec<Uuid> = evs.iter().map(|e| e.event_id).collect();
    append(&*store, &stream("y"), ExpectedVersion::Any, evs)
        .await
        .unwrap();
    let mut asked = ids.clone();
    asked.push(Uuid::now_v7());
    let found = store.event_positions(&asked).await.expect("lookup");
    assert_eq!(found, [Some(3), Some(4), Some(5), None]);
    assert!(store.event_positions(&[]).await.unwrap().is_empty());
}
