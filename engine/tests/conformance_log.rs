//! The conformance suite against the `log` backend, twice: with 4 MiB
//! (preallocated) segments, and with tiny segments so that nearly every case crosses
//! segment boundaries.

use std::sync::Arc;

use kedai_engine::store::conformance::Subject;
use kedai_engine::store::log::{LogOptions, LogStore};

async fn fresh() -> Subject {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = LogOptions {
        segment_bytes_max: 4 << 20,
        ..LogOptions::default()
    };
    let store = LogStore::open_with(dir.path(), options).expect("open log");
    Subject::new(Arc::new(store), dir)
}

kedai_engine::conformance_suite!(fresh);

mod small_segments {
    use super::*;

    async fn fresh() -> Subject {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = LogOptions {
            segment_bytes_max: 1024,
            ..LogOptions::default()
        };
        let store = LogStore::open_with(dir.path(), options).expect("open log");
        Subject::new(Arc::new(store), dir)
    }

    kedai_engine::conformance_suite!(fresh);
}
