//! A live subscription over any backend: read in batches from a position
//! until caught up, then wait on the store's head watch and read again.
//!
//! Because every read starts right after the last delivered position and
//! backends only expose gap-free prefixes, a subscriber can neither skip
//! an event nor see one twice.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use tokio::sync::watch;

use super::{EventStore, StoreError};
use crate::event::{Position, RecordedEvent};

/// How many events a subscription reads per round trip.
pub const SUBSCRIPTION_BATCH_EVENTS: usize = 1_000;

/// Catch-up-then-follow reader of the global log.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    head: watch::Receiver<Position>,
    /// Position of the last event handed out.
    delivered: Position,
    /// Events read but not yet handed out.
    buffer: VecDeque<RecordedEvent>,
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("delivered", &self.delivered)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl Subscription {
    pub fn new(store: Arc<dyn EventStore>, after: Position) -> Self {
        let head = store.head();
        Subscription {
            store,
            head,
            delivered: after,
            buffer: VecDeque::new(),
        }
    }

    /// Position of the last event handed out (or the starting point).
    pub fn position(&self) -> Position {
        self.delivered
    }

    /// The next event, waiting for one to be appended if caught up.
    pub async fn next(&mut self) -> Result<RecordedEvent, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.delivered = event.position;
                return Ok(event);
            }
            self.fill().await?;
        }
    }

    /// Up to `max` next events (at least one), waiting if caught up.
    pub async fn next_batch(&mut self, max: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        if self.buffer.is_empty() {
            self.fill().await?;
        }
        let n = max.max(1).min(self.buffer.len());
        let batch: Vec<RecordedEvent> = self.buffer.drain(..n).collect();
        if let Some(last) = batch.last() {
            self.delivered = last.position;
        }
        Ok(batch)
    }

    /// Reads the next batch into the buffer, waiting for the head to move
    /// past what was delivered when there is nothing to read.
    async fn fill(&mut self) -> Result<(), StoreError> {
        let after = self.buffer.back().map_or(self.delivered, |e| e.position);
        loop {
            // Mark the current head as seen before reading, so an append
            // that lands after the read still wakes us up.
            let head = *self.head.borrow_and_update();
            if head > after {
                let events = self
                    .store
                    .read_all(after, SUBSCRIPTION_BATCH_EVENTS)
                    .await?;
                if let Some(first) = events.first() {
                    assert_eq!(first.position, after + 1, "store skipped a position");
                    self.buffer.extend(events);
                    return Ok(());
                }
            }
            if self.head.changed().await.is_err() {
                return Err(StoreError::Unavailable("the store was closed".into()));
            }
        }
    }
}
