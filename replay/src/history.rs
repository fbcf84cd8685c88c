//! `history`: every event of one entity's stream, in order, with its
//! position, time, actor, type and decoded payload.
//!
//! The stream is named directly (`--stream order-...`) or built from the
//! entity as the engine names it (`kedai_engine::domain::ids::streams`):
//! an order, a stock item (a SKU in a warehouse), a conversation. A SKU
//! without a warehouse means its stock in every warehouse of the shop (the
//! warehouses are read from the shop's `warehouses` stream), merged in log
//! order.

use std::fmt::Write as _;

use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::ids::{OrderId, Sku, WarehouseId, streams};
use kedai_engine::{EventStore, RecordedEvent, ShopId, StreamId};
use serde_json::{Value, json};

use crate::ReplayError;
use crate::payload::{Sorted, event_json, payload_json};

/// Events read per request.
const PAGE: usize = 1_000;

/// Which entity's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entity {
    Stream(String),
    Order(OrderId),
    /// A SKU in one warehouse, or in all of them.
    Stock(Sku, Option<WarehouseId>),
    Conversation(uuid::Uuid),
}

/// The streams holding an entity's events.
pub async fn streams_of(
    store: &dyn EventStore,
    shop: ShopId,
    entity: &Entity,
) -> Result<Vec<StreamId>, ReplayError> {
    Ok(match entity {
        Entity::Stream(name) => {
            let stream = StreamId::new(shop, name.as_str());
            if let Some(why) = stream.problem() {
                return Err(ReplayError::Invalid(why));
            }
            vec![stream]
        }
        Entity::Order(id) => vec![streams::order(shop, *id)],
        Entity::Stock(sku, Some(warehouse)) => vec![streams::stock(shop, sku, *warehouse)],
        Entity::Stock(sku, None) => warehouses(store, shop)
            .await?
            .into_iter()
            .map(|w| streams::stock(shop, sku, w))
            .collect(),
        Entity::Conversation(id) => vec![streams::conversation(shop, *id)],
    })
}

/// The shop's warehouses, in the order they were added.
async fn warehouses(store: &dyn EventStore, shop: ShopId) -> Result<Vec<WarehouseId>, ReplayError> {
    let mut found = Vec::new();
    for event in read_stream(store, &streams::warehouses(shop)).await? {
        if let Ok(Some(DomainEvent::WarehouseAdded(e))) =
            DomainEvent::decode(&event.event_type, &event.payload)
            && !found.contains(&e.warehouse_id)
        {
            found.push(e.warehouse_id);
        }
    }
    Ok(found)
}

/// Every event of `stream`, in version order.
pub async fn read_stream(
    store: &dyn EventStore,
    stream: &StreamId,
) -> Result<Vec<RecordedEvent>, ReplayError> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    loop {
        let page = store
            .read_stream(stream, events.len() as u64 + 1, PAGE)
            .await?;
        if page.is_empty() {
            return Ok(events);
        }
        events.extend(page);
    }
}

/// Every event of the entity, in log order.
pub async fn history(
    store: &dyn EventStore,
    shop: ShopId,
    entity: &Entity,
) -> Result<(Vec<StreamId>, Vec<RecordedEvent>), ReplayError> {
    let streams = streams_of(store, shop, entity).await?;
    let mut events = Vec::new();
    for stream in &streams {
        events.extend(read_stream(store, stream).await?);
    }
    events.sort_by_key(|e| e.position);
    Ok((streams, events))
}

/// The history as text: one block per event.
pub fn render_text(streams: &[StreamId], events: &[RecordedEvent]) -> String {
    let mut out = String::new();
    let names: Vec<&str> = streams.iter().map(|s| &*s.name).collect();
    let _ = writeln!(
        out,
        "{} event{} in {}",
        events.len(),
        if events.len() == 1 { "" } else { "s" },
        names.join(", ")
    );
    for e in events {
        let payload = payload_json(&e.event_type, &e.payload);
        let _ = writeln!(
            out,
            "\n#{} {} v{} {} {}:{} {} (schema {})",
            e.position,
            e.stream.name,
            e.version,
            e.recorded_at,
            e.actor.role,
            e.actor.id,
            e.event_type,
            e.schema_version
        );
        let causation = e
            .causation_id
            .map_or_else(|| "-".to_owned(), |c| c.to_string());
        let _ = writeln!(
            out,
            "  event {}  correlation {}  causation {}",
            e.event_id, e.correlation_id, causation
        );
        let payload = serde_json::to_string(&Sorted(&payload)).unwrap_or_default();
        let _ = writeln!(out, "  {payload}");
    }
    out
}

/// The history as one JSON document.
pub fn render_json(shop: ShopId, streams: &[StreamId], events: &[RecordedEvent]) -> Value {
    json!({
        "shop": shop.to_string(),
        "streams": streams.iter().map(|s| s.name.to_string()).collect::<Vec<_>>(),
        "events": events.iter().map(event_json).collect::<Vec<_>>(),
    })
}
