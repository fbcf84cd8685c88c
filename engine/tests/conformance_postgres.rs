//! The conformance suite against the `postgres` backend: each case on a
//! fresh database, on the server named by `KEDAI_TEST_DATABASE_URL` or on
//! a throwaway server this test process starts. Twice: with the writer's
//! one-statement path (the default), and with every batch taking the
//! locked two-round-trip path.

use std::sync::Arc;

use kedai_engine::store::conformance::Subject;
use kedai_engine::store::postgres::throwaway::test_database;
use kedai_engine::store::postgres::{PgOptions, PgStore};

async fn fresh_with(options: PgOptions) -> Subject {
    let db = test_database().await.expect("test database");
    let store = PgStore::connect(&db.url, options).await.expect("connect");
    Subject::new(Arc::new(store), db)
}

async fn fresh() -> Subject {
    fresh_with(PgOptions::default()).await
}

kedai_engine::conformance_suite!(fresh);

mod without_fast_path {
    use super::*;

    async fn fresh() -> Subject {
        fresh_with(PgOptions {
            fast_path: false,
            ..PgOptions::default()
        })
        .await
    }

    kedai_engine::conformance_suite!(fresh);
}
