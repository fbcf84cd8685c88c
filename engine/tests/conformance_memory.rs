//! The conformance suite against the `memory` backend.

use std::sync::Arc;

use kedai_engine::store::conformance::Subject;
use kedai_engine::store::memory::MemoryStore;

async fn fresh() -> Subject {
    Subject::new(Arc::new(MemoryStore::new()), ())
}

kedai_engine::conformance_suite!(fresh);
