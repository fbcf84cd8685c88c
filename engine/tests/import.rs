//! Importing records verbatim ([`store::import`]): a log written by
//! appends is copied record by record into an empty embedded log and into
//! PostgreSQL (on `KEDAI_TEST_DATABASE_URL` or a throwaway server), and
//! back; every body arrives byte for byte, both verifiers pass with the
//! source's head hash, and the copy takes appends afterwards as if it had
//! written the records itself. Batches that do not continue the log are
//! refused whole and write nothing.
//!
//! [`store::import`]: kedai_engine::store::import

use std::path::Path;
use std::sync::Arc;

use kedai_engine::store::import::{ChainEnd, IMPORT_RECORDS_MAX, RecordPage, Verbatim};
use kedai_engine::store::log::format::{self, Envelope, Hash};
use kedai_engine::store::log::verify::verify as verify_log;
use kedai_engine::store::log::{LogOptions, LogStore};
use kedai_engine::store::postgres::throwaway::test_database;
use kedai_engine::store::postgres::verify::verify as verify_pg;
use kedai_engine::store::postgres::{PgOptions, PgStore};
use kedai_engine::store::{StreamAppend, conformance::read_everything};
use kedai_engine::{
    Actor, AppendRequest, AppendStatus, EventStore, ExpectedVersion, NewEvent, Position, Role,
    ShopId, StoreError, StreamId, Timestamp,
};
use uuid::Uuid;

fn stream(shop: u128, name: &str) -> StreamId {
    StreamId::new(ShopId(Uuid::from_u128(shop)), name)
}

fn events(n: usize, tag: &str) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "StockAdjusted".into(),
            schema_version: 2,
            actor: Actor::new(Role::Staff, "ayu@tokobatik"),
            correlation_id: Uuid::now_v7(),
            causation_id: (i % 2 == 0).then(Uuid::now_v7),
            payload: format!("{tag} {i}: {}", "x".repeat(i * 7)).into_bytes(),
        })
        .collect()
}

/// Small segments, so that a few hundred records span several of them.
fn small_segments() -> LogOptions {
    LogOptions {
        segment_bytes_max: 8 << 10,
        ..LogOptions::default()
    }
}

/// A log of a few hundred events written by appends: single and
/// multi-stream appends over two shops, with growing `recorded_at`.
async fn written_log(dir: &Path) -> Arc<LogStore> {
    let store = Arc::new(LogStore::open_with(dir, small_segments()).unwrap());
    for round in 0..40i64 {
        let at = Timestamp(1_759_276_800_000_000 + round * 1_000_000);
        let shop = 1 + (round % 2) as u128;
        let request = AppendRequest {
            recorded_at: at,
            streams: vec![
                StreamAppend {
                    stream: stream(shop, &format!("order-{round}")),
                    expected: ExpectedVersion::NoStream,
                    events: events(3, "order"),
                },
                StreamAppend {
                    stream: stream(shop, "stock-KAOS-M@malang"),
                    expected: ExpectedVersion::Any,
                    events: events(1 + (round % 4) as usize, "stock"),
                },
            ],
        };
        store.append(request).await.unwrap();
    }
    store
}

/// Every record of a store, in order.
async fn all_records(store: &dyn Verbatim) -> Vec<Vec<u8>> {
    let mut records: Vec<Vec<u8>> = Vec::new();
    loop {
        let page = store
            .read_records(records.len() as Position, 1_000)
            .await
            .unwrap();
        if page.is_empty() {
            return records;
        }
        records.extend(page);
    }
}

/// Every record of a store read in pages of `max`, each page read into the
/// one before (its memory reused): the same as [`all_records`].
async fn all_pages(store: &dyn Verbatim, max: usize) -> Vec<Vec<u8>> {
    let mut records: Vec<Vec<u8>> = Vec::new();
    let mut page = RecordPage::default();
    loop {
        let after = records.len() as Position;
        page = store.read_page(after, max, page).await.unwrap();
        if page.is_empty() {
            return records;
        }
        assert!(page.len() <= max);
        for (position, body) in page.bodies() {
            assert_eq!(position, records.len() as Position + 1);
            records.push(body.to_vec());
        }
        assert_eq!(page.last_position(), Some(records.len() as Position));
    }
}

/// Imports `records` into `into` in batches of `batch`.
async fn import_all(into: &dyn Verbatim, records: &[Vec<u8>], batch: usize) {
    let mut done = 0;
    for chunk in records.chunks(batch) {
        let outcome = into.import(chunk.to_vec()).await.unwrap();
        assert_eq!(outcome.status, AppendStatus::Recorded);
        assert_eq!(
            (outcome.first_position, outcome.last_position),
            (done + 1, done + chunk.len() as u64)
        );
        done += chunk.len() as u64;
    }
}

/// A record body continuing `end`, for a stream at `version - 1`.
fn crafted(end: &ChainEnd, stream: &StreamId, version: u64, event_id: Uuid) -> Vec<u8> {
    let envelope = Envelope {
        shop: stream.shop.0,
        stream: &stream.name,
        version,
        event_id,
        recorded_at: end.last_recorded_at.max(0) + 1,
        role: Role::Staff.code(),
        actor: "ayu",
        correlation_id: Uuid::now_v7(),
        causation_id: None,
        event_type: "StockAdjusted",
        schema_version: 1,
        payload: b"crafted",
    };
    let mut body = Vec::new();
    format::encode_body(&mut body, &end.last_hash, end.last_position + 1, &envelope);
    body
}

fn refused(result: Result<impl std::fmt::Debug, StoreError>) -> String {
    match result {
        Err(StoreError::ImportRefused(why)) => why,
        other => panic!("expected the import to be refused, got {other:?}"),
    }
}

/// What every destination must do once it holds a copy of `source`:
/// refuse batches that do not continue it (writing nothing), and take
/// appends that continue the copied streams.
async fn refuses_and_continues(copy: &dyn Verbatim, source: &[Vec<u8>]) {
    let end = copy.chain_end().await.unwrap();
    let hot = stream(1, "stock-KAOS-M@malang");
    let version = copy.stream_version(&hot).await.unwrap();
    // The source's first records again: positions taken.
    let why = refused(copy.import(source[..2].to_vec()).await);
    assert!(why.contains("holds position 1"), "{why}");
    // A record that skips one.
    let skipped = ChainEnd {
        last_position: end.last_position + 1,
        ..end
    };
    let why = refused(
        copy.import(vec![crafted(&skipped, &hot, version + 1, Uuid::now_v7())])
            .await,
    );
    assert!(why.contains("log ends at"), "{why}");
    // The right position, linked to another hash.
    let forked = ChainEnd {
        last_hash: [7; 32],
        ..end
    };
    let why = refused(
        copy.import(vec![crafted(&forked, &hot, version + 1, Uuid::now_v7())])
            .await,
    );
    assert!(why.contains("does not link"), "{why}");
    // A version gap, and a version taken.
    for wrong in [version + 2, version] {
        let why = refused(
            copy.import(vec![crafted(&end, &hot, wrong, Uuid::now_v7())])
                .await,
        );
        assert!(why.contains(&format!("at version {version}")), "{why}");
    }
    // An event id recorded before.
    let first = format::decode_envelope(&source[0]).unwrap();
    let why = refused(
        copy.import(vec![crafted(&end, &hot, version + 1, first.event_id)])
            .await,
    );
    assert!(why.contains("already recorded, at position 1"), "{why}");
    // A good record followed by a bad one: neither is written.
    let good = crafted(&end, &hot, version + 1, Uuid::now_v7());
    let after_good = ChainEnd {
        last_position: end.last_position + 1,
        last_hash: format::hash_body(&good),
        last_recorded_at: end.last_recorded_at.max(0) + 1,
    };
    let bad = crafted(&after_good, &hot, version + 1, Uuid::now_v7());
    refused(copy.import(vec![good, bad]).await);
    assert_eq!(copy.chain_end().await.unwrap(), end, "nothing was written");

    // Appends continue the copied streams and know the copied ids.
    let retried = format::decode_envelope(&source[0]).unwrap();
    let retry = AppendRequest::single(
        StreamId::new(ShopId(retried.shop), retried.stream),
        ExpectedVersion::NoStream,
        Timestamp(retried.recorded_at),
        vec![NewEvent {
            event_id: retried.event_id,
            event_type: retried.event_type.into(),
            schema_version: retried.schema_version,
            actor: Actor::new(Role::from_code(retried.role).unwrap(), retried.actor),
            correlation_id: retried.correlation_id,
            causation_id: retried.causation_id,
            payload: retried.payload.to_vec(),
        }],
    );
    let again = copy.append(retry).await.unwrap();
    assert_eq!(
        (again.status, again.first_position),
        (AppendStatus::AlreadyRecorded, 1)
    );
    let next = copy
        .append(AppendRequest::single(
            hot.clone(),
            ExpectedVersion::Exact(version),
            Timestamp::now(),
            events(2, "after the copy"),
        ))
        .await
        .unwrap();
    assert_eq!(next.first_position, end.last_position + 1);
    assert_eq!(copy.stream_version(&hot).await.unwrap(), version + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_is_copied_into_another_log_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let source = written_log(&dir.path().join("a")).await;
    let records = all_records(&*source).await;
    assert_eq!(records.len(), 220);
    assert!(source.segment_count() > 3);
    for max in [1, 7, 1_000] {
        assert_eq!(all_pages(&*source, max).await, records, "pages of {max}");
    }
    let source_end = source.chain_end().await.unwrap();
    assert_eq!(source_end.last_position, records.len() as u64);

    let b_dir = dir.path().join("b");
    let copy = Arc::new(LogStore::open_with(&b_dir, small_segments()).unwrap());
    assert_eq!(copy.chain_end().await.unwrap(), ChainEnd::EMPTY);
    import_all(&*copy, &records, 37).await;
    assert_eq!(copy.chain_end().await.unwrap(), source_end);
    assert_eq!(all_records(&*copy).await, records);
    assert_eq!(
        read_everything(&*copy).await,
        read_everything(&*source).await
    );
    let report = verify_log(&b_dir, None, |_| {}).unwrap();
    assert_eq!(
        (report.last_position, report.last_hash),
        (source_end.last_position, source_end.last_hash)
    );

    // Reopened, it still knows every stream and id.
    drop(copy);
    let copy = LogStore::open_with(&b_dir, small_segments()).unwrap();
    refuses_and_continues(&copy, &records).await;
    drop(copy);
    verify_log(&b_dir, None, |_| {}).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_goes_to_postgres_and_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let source = written_log(&dir.path().join("a")).await;
    let records = all_records(&*source).await;
    let source_end = source.chain_end().await.unwrap();

    let db = test_database().await.expect("test database");
    let pg = Arc::new(
        PgStore::connect(&db.url, PgOptions::default())
            .await
            .unwrap(),
    );
    assert_eq!(pg.chain_end().await.unwrap().last_position, 0);
    import_all(&*pg, &records, 100).await;
    assert_eq!(pg.chain_end().await.unwrap(), source_end);
    assert_eq!(*pg.head().borrow(), source_end.last_position);
    assert_eq!(all_records(&*pg).await, records);
    for max in [1, 7, 64, 1_000] {
        assert_eq!(all_pages(&*pg, max).await, records, "pages of {max}");
    }
    assert_eq!(read_everything(&*pg).await, read_everything(&*source).await);
    let report = verify_pg(&db.url, None, |_| {}).await.unwrap();
    assert_eq!(
        (report.last_position, report.last_hash),
        (source_end.last_position, source_end.last_hash)
    );

    // And back, in the largest batches.
    let back_dir = dir.path().join("back");
    let back = LogStore::open(&back_dir).unwrap();
    let from_pg = all_records(&*pg).await;
    import_all(&back, &from_pg, IMPORT_RECORDS_MAX).await;
    assert_eq!(all_records(&back).await, records);
    drop(back);
    let report = verify_log(&back_dir, None, |_| {}).unwrap();
    assert_eq!(report.last_hash, source_end.last_hash);

    refuses_and_continues(&*pg, &records).await;
    verify_pg(&db.url, None, |_| {}).await.unwrap();
    // A read-only store imports nothing.
    let reader = PgStore::connect_read_only(&db.url, PgOptions::default())
        .await
        .unwrap();
    assert!(matches!(
        reader.import(records[..1].to_vec()).await,
        Err(StoreError::ReadOnly)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_the_limits_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = LogStore::open(dir.path()).unwrap();
    let hot = stream(1, "stock");
    let mut end = ChainEnd::EMPTY;
    let mut bodies = Vec::new();
    for version in 1..=IMPORT_RECORDS_MAX as u64 + 1 {
        let body = crafted(&end, &hot, version, Uuid::now_v7());
        end = ChainEnd {
            last_position: version,
            last_hash: format::hash_body(&body),
            last_recorded_at: end.last_recorded_at.max(0) + 1,
        };
        bodies.push(body);
    }
    let why = refused(log.import(bodies.clone()).await);
    assert!(why.contains("more than"), "{why}");
    assert!(refused(log.import(Vec::new()).await).contains("no records"));
    bodies.pop();
    log.import(bodies).await.unwrap();
    let _: Hash = log.chain_end().await.unwrap().last_hash;
}
