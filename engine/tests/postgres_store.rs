//! The `postgres` backend beyond the conformance suite: several stores on
//! one database (as several kedai nodes), the head following other nodes'
//! appends, batching, migrations, read-only stores, and database failures.
//! Against a real PostgreSQL: the server named by `KEDAI_TEST_DATABASE_URL`,
//! or a throwaway one.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use kedai_engine::store::postgres::schema::MIGRATIONS;
use kedai_engine::store::postgres::throwaway::{TestDatabase, ThrowawayPostgres, test_database};
use kedai_engine::store::postgres::{PgOptions, PgStore, verify::verify};
use kedai_engine::store::{StreamAppend, subscribe};
use kedai_engine::{
    Actor, AppendRequest, AppendStatus, EventStore, ExpectedVersion, NewEvent, Position, Role,
    ShopId, StoreError, StreamId, Timestamp,
};
use uuid::Uuid;

/// Longest any test waits for something to happen.
const WAIT_MAX: Duration = Duration::from_secs(60);

fn stream(name: &str) -> StreamId {
    StreamId::new(ShopId(Uuid::from_u128(0x5eed)), name)
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "Tested".into(),
            schema_version: 1,
            actor: Actor::new(Role::Staff, "ayu@tokobatik"),
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            payload: format!("payload {i}").into_bytes(),
        })
        .collect()
}

fn single(s: &StreamId, expected: ExpectedVersion, evs: Vec<NewEvent>) -> AppendRequest {
    AppendRequest::single(s.clone(), expected, Timestamp::now(), evs)
}

async fn database() -> TestDatabase {
    test_database().await.expect("test database")
}

async fn store(db: &TestDatabase, options: PgOptions) -> Arc<PgStore> {
    Arc::new(PgStore::connect(&db.url, options).await.expect("connect"))
}

async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect for SQL");
    tokio::spawn(connection);
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_sharing_a_database_give_followers_a_gap_free_log() {
    const NODES: usize = 3;
    const WRITERS: usize = 6;
    const APPENDS: usize = 20;
    let db = database().await;
    let mut nodes = Vec::new();
    for _ in 0..NODES {
        nodes.push(store(&db, PgOptions::default()).await);
    }
    // Every writer appends, per round: one event to its own stream with an
    // exact version, and two events over a stream all writers share and a
    // per-node stream, in one atomic append.
    let total = NODES * WRITERS * APPENDS * 3;
    let auditor: Arc<dyn EventStore> = Arc::new(
        PgStore::connect_read_only(&db.url, PgOptions::default())
            .await
            .expect("read-only follower"),
    );
    let mut followers = Vec::new();
    for store in [
        Arc::clone(&auditor),
        nodes[0].clone() as Arc<dyn EventStore>,
    ] {
        let mut sub = subscribe(store, 0);
        followers.push(tokio::spawn(async move {
            let mut seen = Vec::with_capacity(total);
            while seen.len() < total {
                let e = sub.next().await.expect("follow");
                seen.push((e.position, e.event_id));
            }
            seen
        }));
    }
    let mut writers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for w in 0..WRITERS {
            let node = Arc::clone(node);
            writers.push(tokio::spawn(async move {
                let own = stream(&format!("own-{n}-{w}"));
                let mut acknowledged = Vec::new();
                for i in 0..APPENDS {
                    let evs = events(1);
                    acknowledged.push(evs[0].event_id);
                    node.append(single(&own, ExpectedVersion::Exact(i as u64), evs))
                        .await
                        .expect("own stream");
                    let (shared, per_node) = (events(1), events(1));
                    acknowledged.extend(shared.iter().chain(&per_node).map(|e| e.event_id));
                    let request = AppendRequest {
                        recorded_at: Timestamp::now(),
                        streams: vec![
                            StreamAppend {
                                stream: stream("shared"),
                                expected: ExpectedVersion::Any,
                                events: shared,
                            },
                            StreamAppend {
                                stream: stream(&format!("node-{n}")),
                                expected: ExpectedVersion::Any,
                                events: per_node,
                            },
                        ],
                    };
                    node.append(request).await.expect("shared streams");
                }
                acknowledged
            }));
        }
    }
    let mut acknowledged = HashSet::new();
    for w in writers {
        acknowledged.extend(w.await.expect("writer"));
    }
    assert_eq!(acknowledged.len(), total);
    for follower in followers {
        let seen = tokio::time::timeout(WAIT_MAX, follower)
            .await
            .expect("follower saw everything in time")
            .expect("follower");
        let positions: Vec<Position> = seen.iter().map(|&(p, _)| p).collect();
        assert_eq!(
            positions,
            (1..=total as Position).collect::<Vec<_>>(),
            "every position once, in order"
        );
        let ids: HashSet<Uuid> = seen.iter().map(|&(_, id)| id).collect();
        assert_eq!(ids, acknowledged, "exactly the acknowledged events");
    }
    assert!(
        auditor
            .read_all(total as Position, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let shared = nodes[1]
        .read_stream(&stream("shared"), 1, 10_000)
        .await
        .unwrap();
    assert_eq!(
        shared.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=(NODES * WRITERS * APPENDS) as u64).collect::<Vec<_>>()
    );
    let report = verify(&db.url, None, |_| {}).await.expect("verify");
    assert_eq!(report.events, total as u64);
    let batches: u64 = nodes.iter().map(|n| n.stats().batches).sum();
    let appends: u64 = nodes.iter().map(|n| n.stats().appends).sum();
    assert_eq!(appends, (NODES * WRITERS * APPENDS * 2) as u64);
    eprintln!("{appends} appends in {batches} transactions");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_nodes_append_wakes_the_head_through_notify() {
    let db = database().await;
    // Polling so slow that only a notification can wake the head in time.
    let slow_poll = PgOptions {
        poll_interval: Duration::from_secs(3600),
        ..PgOptions::default()
    };
    let a = store(&db, slow_poll).await;
    let b = store(&db, PgOptions::default()).await;
    let mut head = a.head();
    let mut sub = subscribe(a.clone(), 0);
    let sent = events(3);
    let outcome = b
        .append(single(
            &stream("from-b"),
            ExpectedVersion::NoStream,
            sent.clone(),
        ))
        .await
        .unwrap();
    assert_eq!(outcome.last_position, 3);
    tokio::time::timeout(WAIT_MAX, head.wait_for(|&p| p >= 3))
        .await
        .expect("a's head moved in time")
        .expect("store open");
    let read = a.read_all(0, 10).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        sent.iter().map(|e| e.event_id).collect::<Vec<_>>()
    );
    let first = tokio::time::timeout(WAIT_MAX, sub.next())
        .await
        .expect("subscription woke")
        .unwrap();
    assert_eq!(first.event_id, sent[0].event_id);
    assert_eq!(a.last_position().await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_alone_follows_another_node() {
    let db = database().await;
    let polling = PgOptions {
        listen: false,
        poll_interval: Duration::from_millis(50),
        ..PgOptions::default()
    };
    let a = store(&db, polling).await;
    let b = store(&db, PgOptions::default()).await;
    let mut head = a.head();
    b.append(single(&stream("from-b"), ExpectedVersion::Any, events(2)))
        .await
        .unwrap();
    tokio::time::timeout(WAIT_MAX, head.wait_for(|&p| p >= 2))
        .await
        .expect("a's head moved in time")
        .expect("store open");
    assert_eq!(a.read_all(0, 10).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_decides_each_append_against_the_ones_before_it() {
    let db = database().await;
    let store = store(&db, PgOptions::default()).await;
    // Queue everything before the writer answers anything.
    let contested = stream("contested");
    let mut tickets = Vec::new();
    for _ in 0..40 {
        let request = single(&contested, ExpectedVersion::NoStream, events(1));
        tickets.push(store.submit(request).await.expect("queued"));
    }
    let retried = single(&stream("retried"), ExpectedVersion::NoStream, events(3));
    let mut retries = Vec::new();
    for _ in 0..20 {
        retries.push(store.submit(retried.clone()).await.expect("queued"));
    }
    let mut mixed = retried.clone();
    mixed.streams[0].events.extend(events(1));
    let mixed = store.submit(mixed).await.expect("queued");

    let mut won = 0;
    for ticket in tickets {
        match ticket.outcome().await {
            Ok(_) => won += 1,
            Err(StoreError::WrongExpectedVersion { actual: 1, .. }) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1, "exactly one NoStream append wins");
    let mut outcomes = Vec::new();
    for ticket in retries {
        outcomes.push(ticket.outcome().await.expect("a retry is not an error"));
    }
    assert_eq!(outcomes[0].status, AppendStatus::Recorded);
    for o in &outcomes[1..] {
        assert_eq!(o.status, AppendStatus::AlreadyRecorded);
        assert_eq!(
            (o.first_position, o.last_position),
            (outcomes[0].first_position, outcomes[0].last_position)
        );
    }
    assert!(matches!(
        mixed.outcome().await,
        Err(StoreError::PartlyRecorded { .. })
    ));
    assert_eq!(store.last_position().await.unwrap(), 4);
    let stats = store.stats();
    assert_eq!((stats.appends, stats.events), (2, 4));
    assert!(
        stats.batches <= 2,
        "rejected appends and retries write nothing: {stats:?}"
    );
}

/// The one-statement path: taken while this store is the only writer,
/// and when another node wrote without this one hearing of it (no
/// notifications, no polling), its checks under the head's lock catch it
/// and the careful path decides: no position twice, the chain intact, the
/// other node's version taken into account.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_notices_what_it_did_not_hear() {
    let db = database().await;
    let deaf = PgOptions {
        listen: false,
        poll_interval: Duration::from_secs(3600),
        ..PgOptions::default()
    };
    let a = store(&db, deaf).await;
    let b = store(&db, PgOptions::default()).await;
    let s = stream("stock-KAOS-M@malang");
    let first = events(1);
    let first_id = first[0].event_id;
    a.append(single(&s, ExpectedVersion::NoStream, first))
        .await
        .unwrap();
    let second = events(1);
    let second_id = second[0].event_id;
    let after_first = ExpectedVersion::ExactAfter {
        version: 1,
        last_event_id: first_id,
    };
    a.append(single(&s, after_first, second)).await.unwrap();
    assert_eq!(a.stats().fast_batches, 1, "{:?}", a.stats());

    // B appends to the same stream and to another; A does not hear of it.
    let from_b = events(1);
    let from_b_id = from_b[0].event_id;
    b.append(single(&s, ExpectedVersion::Exact(2), from_b))
        .await
        .unwrap();
    b.append(single(&stream("other"), ExpectedVersion::Any, events(2)))
        .await
        .unwrap();
    // A, still deciding on its own last event, must fail...
    let stale = ExpectedVersion::ExactAfter {
        version: 2,
        last_event_id: second_id,
    };
    assert!(matches!(
        a.append(single(&s, stale, events(1))).await,
        Err(StoreError::WrongExpectedVersion { actual: 3, .. })
    ));
    assert_eq!(a.stats().fast_misses, 1, "{:?}", a.stats());
    // ...and an append that is right goes after B's events.
    let right = ExpectedVersion::ExactAfter {
        version: 3,
        last_event_id: from_b_id,
    };
    let outcome = a.append(single(&s, right, events(1))).await.unwrap();
    assert_eq!((outcome.first_position, outcome.last_position), (6, 6));
    assert_eq!(a.stats().fast_batches, 2, "back on the fast path");
    let report = verify(&db.url, None, |_| {}).await.expect("verifies");
    assert_eq!(report.events, 6);
}

/// With the head unchanged, what the one-statement path assumed is checked
/// by the database: a stream at another version, a last event that is not
/// the named one (at the right version), and an event id already recorded
/// each make it write nothing, and the careful path answers as it would
/// have without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_path_checks_its_assumptions_in_the_database() {
    let db = database().await;
    let a = store(&db, PgOptions::default()).await;
    let s = stream("stock-LURIK-S@solo");
    let first = events(1);
    let first_id = first[0].event_id;
    a.append(single(&s, ExpectedVersion::NoStream, first))
        .await
        .unwrap();
    let second = single(&s, ExpectedVersion::Exact(1), events(1));
    let recorded = a.append(second.clone()).await.unwrap();
    assert_eq!(recorded.status, AppendStatus::Recorded);
    let fast = a.stats().fast_batches;
    assert_eq!(fast, 1, "{:?}", a.stats());

    // The stream is at version 2, not 1.
    assert!(matches!(
        a.append(single(&s, ExpectedVersion::Exact(1), events(1)))
            .await,
        Err(StoreError::WrongExpectedVersion { actual: 2, .. })
    ));
    assert_eq!(a.stats().fast_misses, 1, "{:?}", a.stats());
    // Version 2 is right, but its last event is not the first one.
    let not_last = ExpectedVersion::ExactAfter {
        version: 2,
        last_event_id: first_id,
    };
    assert!(matches!(
        a.append(single(&s, not_last, events(1))).await,
        Err(StoreError::WrongExpectedVersion { actual: 2, .. })
    ));
    assert_eq!(a.stats().fast_misses, 2, "{:?}", a.stats());
    // A retry of a recorded append records nothing and answers as before.
    let again = a.append(second).await.unwrap();
    assert_eq!(again.status, AppendStatus::AlreadyRecorded);
    assert_eq!(
        (again.first_position, again.last_position),
        (recorded.first_position, recorded.last_position)
    );
    assert_eq!(a.stats().fast_misses, 3, "{:?}", a.stats());
    // A stream that does not exist yet is not at version 1.
    assert!(matches!(
        a.append(single(&stream("new"), ExpectedVersion::Exact(1), events(1)))
            .await,
        Err(StoreError::WrongExpectedVersion { actual: 0, .. })
    ));
    assert_eq!(a.stats().fast_misses, 4, "{:?}", a.stats());
    assert_eq!(a.stats().fast_batches, fast, "nothing written by it");
    let report = verify(&db.url, None, |_| {}).await.expect("verifies");
    assert_eq!(report.events, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_share_transactions() {
    const APPENDS: usize = 200;
    let db = database().await;
    let store = store(&db, PgOptions::default()).await;
    let mut tickets = Vec::new();
    for i in 0..APPENDS {
        let request = single(
            &stream(&format!("s-{i}")),
            ExpectedVersion::NoStream,
            events(1),
        );
        tickets.push(store.submit(request).await.expect("queued"));
    }
    for ticket in tickets {
        ticket.outcome().await.expect("recorded");
    }
    let stats = store.stats();
    assert_eq!(stats.appends, APPENDS as u64);
    assert!(
        stats.batches < APPENDS as u64,
        "queued appends are grouped: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_run_once_when_nodes_start_together() {
    let db = database().await;
    let mut starting = Vec::new();
    for _ in 0..4 {
        let url = db.url.clone();
        starting.push(tokio::spawn(async move {
            PgStore::connect(&url, PgOptions::default()).await
        }));
    }
    let mut nodes = Vec::new();
    for s in starting {
        nodes.push(s.await.unwrap().expect("every node starts"));
    }
    let client = sql(&db.url).await;
    let versions = |rows: Vec<tokio_postgres::Row>| -> Vec<(i32, String)> {
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    };
    let applied = versions(
        client
            .query(
                "SELECT version, applied_at::text FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap(),
    );
    assert_eq!(
        applied.iter().map(|(v, _)| *v).collect::<Vec<_>>(),
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    drop(nodes);
    let _again = store(&db, PgOptions::default()).await;
    let after = versions(
        client
            .query(
                "SELECT version, applied_at::text FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .unwrap(),
    );
    assert_eq!(after, applied, "nothing applied twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_reads_and_never_writes() {
    let db = database().await;
    let refused = PgStore::connect_read_only(&db.url, PgOptions::default()).await;
    assert!(
        matches!(&refused, Err(StoreError::Unavailable(why)) if why.contains("no kedai schema")),
        "{refused:?}"
    );
    let client = sql(&db.url).await;
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "a read-only store creates nothing");

    let writer = store(&db, PgOptions::default()).await;
    let sent = events(2);
    writer
        .append(single(
            &stream("order-1"),
            ExpectedVersion::NoStream,
            sent.clone(),
        ))
        .await
        .unwrap();
    let reader = PgStore::connect_read_only(&db.url, PgOptions::default())
        .await
        .expect("read-only store");
    assert!(reader.is_read_only());
    let read = reader.read_stream(&stream("order-1"), 1, 10).await.unwrap();
    assert_eq!(read.len(), 2);
    assert_eq!(read[1].event_id, sent[1].event_id);
    assert!(matches!(
        reader
            .append(single(&stream("order-1"), ExpectedVersion::Any, events(1)))
            .await,
        Err(StoreError::ReadOnly)
    ));
    assert!(matches!(
        reader
            .submit(single(&stream("order-1"), ExpectedVersion::Any, events(1)))
            .await,
        Err(StoreError::ReadOnly)
    ));
    assert_eq!(writer.last_position().await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_failures_are_errors() {
    let unreachable = PgOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let free_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://postgres@127.0.0.1:{free_port}/postgres");
    let refused = PgStore::connect(&url, unreachable.clone()).await;
    assert!(
        matches!(&refused, Err(StoreError::Unavailable(why)) if why.contains("connecting")),
        "{refused:?}"
    );
    let invalid = PgStore::connect("postgres://[", unreachable.clone()).await;
    assert!(
        matches!(invalid, Err(StoreError::Unavailable(_))),
        "{invalid:?}"
    );

    // A server of our own, to stop under a running store.
    let server = tokio::task::spawn_blocking(ThrowawayPostgres::start)
        .await
        .unwrap()
        .expect("throwaway server");
    let db_url = server.create_database("failing").await.unwrap();
    let store = PgStore::connect(&db_url, unreachable).await.unwrap();
    store
        .append(single(&stream("s"), ExpectedVersion::Any, events(1)))
        .await
        .unwrap();
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
    let failed = tokio::time::timeout(
        WAIT_MAX,
        store.append(single(&stream("s"), ExpectedVersion::Any, events(1))),
    )
    .await
    .expect("append answered in time");
    assert!(
        matches!(failed, Err(StoreError::Unavailable(_))),
        "{failed:?}"
    );
    let read = tokio::time::timeout(WAIT_MAX, store.read_all(0, 10))
        .await
        .expect("read answered in time");
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
}
