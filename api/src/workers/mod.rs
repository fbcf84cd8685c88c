//! Work kedai does on its own, beside answering requests: each worker
//! follows the log through the projections (which the runner keeps
//! current from their snapshot, or rebuilds from the log on start) and
//! records what it does through the command engine, with an idempotency
//! key, so a restart, or a second node doing the same, never records it
//! twice. Time comes from a [`Clock`](kedai_engine::clock::Clock).
//!
//! Layout:
//! - [`abandonment`]: the scheduler that records abandoned checkouts.
//! - [`outbox`]: the sender of queued messages (retries with backoff, a
//!   delivery status recorded per message), over a [`outbox::MessageSender`].
//! - [`whatsapp`]: the WhatsApp-like HTTP gateway adapter of that sender.

pub mod abandonment;
pub mod outbox;
pub mod whatsapp;

use std::time::Duration;

use kedai_engine::EventStore;
use kedai_projections::runner::ProjectionHandle;
use tokio::sync::watch;

/// Longest single wait for the projections before a worker looks again
/// (waits are repeated while the store is ahead).
const CATCH_UP_WAIT: Duration = Duration::from_secs(5);

/// Waits until the projections reflect the log as it is now, so a worker
/// does not act on a state the rest of the log has moved past. `false` if
/// `stop` came first.
pub async fn caught_up(
    store: &dyn EventStore,
    projections: &ProjectionHandle,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let head = loop {
        match store.last_position().await {
            Ok(head) => break head,
            Err(e) => {
                tracing::warn!(error = %e, "reading the log's head; retrying");
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return false,
                    () = tokio::time::sleep(CATCH_UP_WAIT) => {}
                }
            }
        }
    };
    loop {
        if *stop.borrow() {
            return false;
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return false,
            reached = projections.wait_for(head, CATCH_UP_WAIT) => {
                if reached.is_ok() {
                    return true;
                }
            }
        }
    }
}
