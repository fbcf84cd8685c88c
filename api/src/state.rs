//! What every handler shares: the command engine, the store, the
//! projections kept current by the runner, the clock commands are decided
//! by, the operator token's hash and the metrics.

use std::sync::Arc;

use kedai_engine::EventStore;
use kedai_engine::clock::{Clock, SystemClock};
use kedai_engine::command::Engine;
use kedai_projections::Projections;
use kedai_projections::runner::ProjectionHandle;

use crate::metrics::Metrics;

/// Shared state of the API.
#[derive(Clone, Debug)]
pub struct AppState(pub Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub engine: Arc<Engine>,
    pub store: Arc<dyn EventStore>,
    pub projections: ProjectionHandle,
    /// The time commands are decided at (the system clock, or a test's).
    pub clock: Arc<dyn Clock>,
    /// SHA-256 (hex) of the operator token.
    pub operator_token_hash: String,
    pub metrics: Metrics,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(engine: Arc<Engine>, projections: ProjectionHandle, operator_token: &str) -> Self {
        AppState::with_clock(engine, projections, operator_token, Arc::new(SystemClock))
    }

    /// The state with commands decided at `clock`'s time.
    pub fn with_clock(
        engine: Arc<Engine>,
        projections: ProjectionHandle,
        operator_token: &str,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let store = Arc::clone(engine.store());
        AppState(Arc::new(Inner {
            engine,
            store,
            projections,
            clock,
            operator_token_hash: crate::auth::hash_secret(operator_token),
            metrics: Metrics::default(),
        }))
    }

    /// Reads the projections.
    pub fn read<R>(&self, f: impl FnOnce(&Projections) -> R) -> R {
        self.projections.read(f)
    }
}
