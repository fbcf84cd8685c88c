//! Records the outcome of every attempt in the subscription's deliveries
//! stream: outcomes from all lanes are gathered into one append (up to
//! [`BATCH_MAX`]), with event ids derived from the delivery and attempt,
//! so an outcome recorded again (after a restart) is recorded once.
//!
//! Lanes do not wait for their outcomes to be durable: a delivery whose
//! `WebhookDelivered` was lost in a crash is simply delivered again after
//! the restart, with the same delivery id.

use std::sync::Arc;
use std::time::Duration;

use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::events::SCHEMA_VERSION;
use kedai_engine::domain::ids::streams;
use kedai_engine::store::StreamAppend;
use kedai_engine::{
    Actor, AppendRequest, EventStore, ExpectedVersion, NewEvent, ShopId, StoreError, Timestamp,
};
use tokio::sync::{mpsc, oneshot};

/// Most outcomes per append.
pub const BATCH_MAX: usize = 1_000;

/// One outcome to record.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub shop: ShopId,
    pub webhook_id: uuid::Uuid,
    pub event_id: uuid::Uuid,
    pub event: DomainEvent,
}

/// Records outcomes until `finish` fires, then what is still queued.
pub async fn run(
    store: Arc<dyn EventStore>,
    mut rx: mpsc::Receiver<Outcome>,
    mut finish: oneshot::Receiver<()>,
) {
    loop {
        let first = tokio::select! {
            o = rx.recv() => o,
            _ = &mut finish => None,
        };
        let Some(first) = first else { break };
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match rx.try_recv() {
                Ok(o) => batch.push(o),
                Err(_) => break,
            }
        }
        record(&*store, batch).await;
    }
    // Whatever the lanes sent before stopping.
    let mut batch = Vec::new();
    while let Ok(o) = rx.try_recv() {
        batch.push(o);
        if batch.len() == BATCH_MAX {
            record(&*store, std::mem::take(&mut batch)).await;
        }
    }
    if !batch.is_empty() {
        record(&*store, batch).await;
    }
}

fn request(batch: &[Outcome]) -> AppendRequest {
    let mut request = AppendRequest {
        recorded_at: Timestamp::now(),
        streams: Vec::new(),
    };
    for o in batch {
        let stream = streams::webhook_deliveries(o.shop, o.webhook_id);
        let event = NewEvent {
            event_id: o.event_id,
            event_type: o.event.event_type().into(),
            schema_version: SCHEMA_VERSION,
            actor: Actor::system("webhooks"),
            correlation_id: o.event_id,
            causation_id: None,
            payload: o.event.encode(),
        };
        match request.streams.iter_mut().find(|s| s.stream == stream) {
            Some(s) => s.events.push(event),
            None => request.streams.push(StreamAppend {
                stream,
                expected: ExpectedVersion::Any,
                events: vec![event],
            }),
        }
    }
    request
}

/// Appends a batch; if some of it was recorded before (a repeat after a
/// restart), one outcome at a time. A store that stays unavailable loses
/// the outcomes (logged): their deliveries are made again after a restart.
async fn record(store: &dyn EventStore, mut batch: Vec<Outcome>) {
    // One id once per append.
    let mut seen = std::collections::HashSet::new();
    batch.retain(|o| seen.insert(o.event_id));
    for attempt in 0..5 {
        match store.append(request(&batch)).await {
            Ok(_) => return,
            Err(StoreError::PartlyRecorded { .. }) => {
                for o in &batch {
                    if let Err(e) = store.append(request(std::slice::from_ref(o))).await {
                        tracing::warn!(error = %e, "recording a webhook outcome");
                    }
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, attempt, "recording webhook outcomes; retrying");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    tracing::error!(
        outcomes = batch.len(),
        "webhook outcomes not recorded; their deliveries will be repeated after a restart"
    );
}
