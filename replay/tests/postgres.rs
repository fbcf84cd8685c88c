//! The tool on the PostgreSQL backend, through the binary: a ledger
//! written by the real command engine verifies, its head hash is kept and
//! found, a rebuild equals the projections folded from the same database,
//! export and history read it, and a changed row is pinpointed. The server
//! is `KEDAI_TEST_DATABASE_URL` or a throwaway one (see the engine's
//! `store::postgres::throwaway`).

mod common;

use std::sync::Arc;

use common::*;
use kedai_engine::store::postgres::throwaway::test_database;
use kedai_engine::store::postgres::{PgOptions, PgStore};
use kedai_engine::testkit::{World, order_id};
use kedai_engine::{EventStore, Timestamp};
use kedai_projections::Projections;
use kedai_projections::runner::rebuild;
use kedai_replay::report::Report;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_reads_a_postgres_ledger() {
    let db = test_database().await.expect("a test database");
    let store = Arc::new(
        PgStore::connect(&db.url, PgOptions::default())
            .await
            .unwrap(),
    );
    let world = World::on_at(store.clone(), true, OPENING).await;
    trade(&world, 1, 12, Timestamp(OPENING.0 + HOUR)).await;
    let last = store.last_position().await.unwrap();
    let url = db.url.as_str();

    let (code, v) = replay_json(&["--database-url", url, "verify"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        (v["events"].as_u64(), v["last_position"].as_u64()),
        (Some(last), Some(last))
    );
    let head = v["head_hash"].as_str().unwrap().to_owned();
    let (code, v) = replay_json(&["--database-url", url, "verify", "--from-hash", &head]);
    assert_eq!(
        (code, &v["kept_hash"]["position"]),
        (0, &serde_json::json!(last))
    );

    let out = replay(&[
        "--database-url",
        url,
        "rebuild",
        "--position",
        &last.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let live = rebuild(&*store, Projections::new(), Some(last), |_| {})
        .await
        .unwrap();
    assert_eq!(
        stdout(&out),
        Report::from_projections(&live, None).to_json()
    );

    let out = replay(&["--database-url", url, "export", "--format", "jsonl"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count() as u64, last);
    let (code, h) = replay_json(&[
        "--database-url",
        url,
        "history",
        "--shop",
        "00000000-0000-0000-0000-000000000005",
        "--order",
        &order_id(1).to_string(),
    ]);
    assert_eq!((code, h["events"].as_array().unwrap().len()), (0, 5));

    // A changed payload byte.
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .execute(
            "UPDATE events SET body = set_byte(body, octet_length(body) - 1, \
               get_byte(body, octet_length(body) - 1) # 1) WHERE position = 20",
            &[],
        )
        .await
        .unwrap();
    let (code, v) = replay_json(&["--database-url", url, "verify"]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["defect"]["position"], 20);
    assert_eq!(v["defect"]["location"], "PostgreSQL table events");
    assert!(v["defect"]["offset"].is_null());
    drop(world);
}
