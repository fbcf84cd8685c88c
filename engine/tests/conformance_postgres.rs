//! The conformance suite against the `postgres` backend: each case on a
//! fresh database, on the server named by `KEDAI_TEST_DATABASE_URL` or on
//! a throwaway server this test process starts.

use std::sync::Arc;

use kedai_engine::store::conformance::Subject;
use kedai_engine::store::postgres::throwaway::test_database;
use kedai_engine::store::postgres::{PgOptions, PgStore};

async fn fresh() -> Subject {
    let db = test_database().await.expect("test database");
    let store = PgStore::connect(&db.url, PgOptions::default())
        .await
        .expect("connect");
    Subject::new(Arc::new(store), db)
}

kedai_engine::conformance_suite!(fresh);
