//! Verification of a PostgreSQL event log: intact data passes, and
//! tampering is reported with the position it touched, whether the
//! checksum was left alone or recomputed, and whether rows were changed
//! or cut off the end. The rows are also written out as an embedded log
//! segment and checked by the log's own verifier: the same bytes, the
//! same chain.

use std::sync::Arc;

use kedai_engine::store::log::format::{GENESIS_HASH, SegmentHeader, body_checksum};
use kedai_engine::store::postgres::throwaway::{TestDatabase, test_database};
use kedai_engine::store::postgres::{PgOptions, PgStore, verify::verify};
use kedai_engine::{
    Actor, AppendRequest, EventStore, ExpectedVersion, NewEvent, Position, ShopId, StoreError,
    StreamId, Timestamp,
};
use uuid::Uuid;

const EVENTS: usize = 30;

fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "StockAdjusted".into(),
            schema_version: 2,
            actor: Actor::system("system:test"),
            correlation_id: Uuid::now_v7(),
            causation_id: Some(Uuid::now_v7()),
            payload: format!("adjusted by {i}").into_bytes(),
        })
        .collect()
}

/// A database holding [`EVENTS`] events over three streams, and a store on it.
async fn filled() -> (TestDatabase, Arc<PgStore>) {
    let db = test_database().await.expect("test database");
    let store = Arc::new(
        PgStore::connect(&db.url, PgOptions::default())
            .await
            .unwrap(),
    );
    for i in 0..EVENTS / 3 {
        let s = StreamId::new(ShopId(Uuid::from_u128(7)), format!("stock-{}", i % 3));
        store
            .append(AppendRequest::single(
                s,
                ExpectedVersion::Any,
                Timestamp::now(),
                events(3),
            ))
            .await
            .unwrap();
    }
    (db, store)
}

async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect for SQL");
    tokio::spawn(connection);
    client
}

fn corrupt_position(result: Result<impl std::fmt::Debug, StoreError>) -> (Position, String) {
    match result {
        Err(StoreError::Corrupt {
            position: Some(p),
            reason,
            ..
        }) => (p, reason),
        other => panic!("expected corruption to be reported, got {other:?}"),
    }
}

#[tokio::test]
async fn intact_data_verifies_and_finds_its_hashes() {
    let (db, _store) = filled().await;
    let mut progress_calls = 0;
    let report = verify(&db.url, None, |_| progress_calls += 1)
        .await
        .expect("intact data verifies");
    assert_eq!(report.events, EVENTS as u64);
    assert_eq!(report.last_position, EVENTS as Position);
    assert!(progress_calls > 0);
    let found = verify(&db.url, Some(report.last_hash), |_| {})
        .await
        .unwrap();
    assert_eq!(found.found_hash_at, Some(EVENTS as Position));
    let genesis = verify(&db.url, Some(GENESIS_HASH), |_| {}).await.unwrap();
    assert_eq!(genesis.found_hash_at, Some(0));
    let missing = verify(&db.url, Some([7; 32]), |_| {}).await.unwrap();
    assert_eq!(missing.found_hash_at, None);
}

#[tokio::test]
async fn a_changed_payload_byte_is_reported_with_its_position() {
    let (db, store) = filled().await;
    let client = sql(&db.url).await;
    // The payload is the envelope's last field: flip the body's last byte.
    let changed = client
        .execute(
            "UPDATE events SET body = set_byte(body, octet_length(body) - 1, \
               get_byte(body, octet_length(body) - 1) # 1) WHERE position = 7",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(changed, 1);
    let (position, reason) = corrupt_position(verify(&db.url, None, |_| {}).await);
    assert_eq!(position, 7);
    assert!(reason.contains("checksum"), "{reason}");
    let (position, _) = corrupt_position(store.read_all(0, 100).await);
    assert_eq!(position, 7, "reads check rows too");
}

#[tokio::test]
async fn a_change_with_a_recomputed_checksum_breaks_the_chain() {
    let (db, _store) = filled().await;
    let client = sql(&db.url).await;
    for (target, reported) in [(12, 13), (EVENTS as i64, EVENTS as Position)] {
        let row = client
            .query_one("SELECT body FROM events WHERE position = $1", &[&target])
            .await
            .unwrap();
        let mut body: Vec<u8> = row.get(0);
        *body.last_mut().unwrap() ^= 1;
        let crc = i64::from(body_checksum(&body));
        client
            .execute(
                "UPDATE events SET body = $1, crc32c = $2 WHERE position = $3",
                &[&body, &crc, &target],
            )
            .await
            .unwrap();
        let (position, reason) = corrupt_position(verify(&db.url, None, |_| {}).await);
        assert_eq!(position, reported, "{reason}");
        assert!(reason.contains("hash"), "{reason}");
        // Put the row back for the next case.
        *body.last_mut().unwrap() ^= 1;
        let crc = i64::from(body_checksum(&body));
        client
            .execute(
                "UPDATE events SET body = $1, crc32c = $2 WHERE position = $3",
                &[&body, &crc, &target],
            )
            .await
            .unwrap();
    }
    verify(&db.url, None, |_| {}).await.expect("restored");
}

#[tokio::test]
async fn removed_rows_are_reported() {
    let (db, _store) = filled().await;
    let client = sql(&db.url).await;
    client
        .execute(
            "DELETE FROM events WHERE position = $1",
            &[&(EVENTS as i64)],
        )
        .await
        .unwrap();
    let (position, reason) = corrupt_position(verify(&db.url, None, |_| {}).await);
    assert_eq!(position, EVENTS as Position, "{reason}");
    assert!(reason.contains("missing from the end"), "{reason}");
    client
        .execute("DELETE FROM events WHERE position = 5", &[])
        .await
        .unwrap();
    let (position, reason) = corrupt_position(verify(&db.url, None, |_| {}).await);
    assert_eq!(position, 5, "{reason}");
}

#[tokio::test]
async fn the_rows_are_a_valid_log_segment() {
    let (db, _store) = filled().await;
    let report = verify(&db.url, None, |_| {}).await.unwrap();
    let client = sql(&db.url).await;
    let rows = client
        .query("SELECT body, crc32c FROM events ORDER BY position", &[])
        .await
        .unwrap();
    let mut segment = SegmentHeader {
        first_position: 1,
        prev_hash: GENESIS_HASH,
    }
    .encode()
    .to_vec();
    for row in &rows {
        let body: &[u8] = row.get(0);
        let crc: i64 = row.get(1);
        segment.extend_from_slice(&(body.len() as u32).to_le_bytes());
        segment.extend_from_slice(&(crc as u32).to_le_bytes());
        segment.extend_from_slice(body);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("00000000000000000001.seg"), &segment).unwrap();
    let log_report = kedai_engine::store::log::verify::verify(dir.path(), None, |_| {})
        .expect("the log's verifier accepts the rows");
    assert_eq!(log_report.events, report.events);
    assert_eq!(log_report.last_hash, report.last_hash);
    assert_eq!(log_report.bytes - 64, report.bytes + 8 * EVENTS as u64);
}
