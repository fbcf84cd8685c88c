//! The shop's events: a feed from a position, a live feed (server-sent
//! events, resumable with `Last-Event-ID`), and one entity's history.
//! Positions are the log's global positions; a shop sees only its own
//! events, so its positions have gaps.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use kedai_engine::domain::DomainEvent;
use kedai_engine::event::Position;
use kedai_engine::store::{READ_EVENTS_MAX, subscribe};
use kedai_engine::{RecordedEvent, ShopId, StreamId};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{AUDITORS, Caller};
use crate::error::{ApiError, Path, Query};
use crate::limits::{EVENTS_PAGE_MAX, PAGE_DEFAULT};
use crate::state::AppState;

/// An event as the API shows it: every envelope field and the payload.
pub fn event_json(e: &RecordedEvent) -> Value {
    let data = DomainEvent::decode(&e.event_type, &e.payload)
        .ok()
        .flatten()
        .and_then(|d| serde_json::to_value(d.redacted()).ok())
        .unwrap_or(Value::Null);
    json!({
        "position": e.position,
        "stream": &*e.stream.name,
        "version": e.version,
        "event_id": e.event_id,
        "recorded_at": e.recorded_at,
        "actor": {"role": e.actor.role, "id": e.actor.id},
        "correlation_id": e.correlation_id,
        "causation_id": e.causation_id,
        "type": &*e.event_type,
        "schema_version": e.schema_version,
        "data": data,
    })
}

#[derive(Debug, Deserialize)]
pub struct FeedQuery {
    #[serde(default)]
    after: Option<Position>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/events?after=&limit=`: the shop's events after a position.
/// `next` is the position to continue after (the log may hold other
/// shops' events in between).
pub async fn feed(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<FeedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(AUDITORS)?;
    let limit = q.limit.unwrap_or(PAGE_DEFAULT).clamp(1, EVENTS_PAGE_MAX);
    let mut after = q.after.unwrap_or(0);
    let head = state.store.last_position().await?;
    let mut events = Vec::new();
    // Bounded scan: at most this many events of other shops are skipped
    // per request.
    let mut budget = 50 * READ_EVENTS_MAX;
    while events.len() < limit && after < head && budget > 0 {
        let batch = state.store.read_all(after, READ_EVENTS_MAX).await?;
        let Some(last) = batch.last() else { break };
        let last = last.position;
        budget = budget.saturating_sub(batch.len());
        for e in batch {
            if e.stream.shop == caller.shop {
                if events.len() == limit {
                    break;
                }
                after = e.position;
                events.push(event_json(&e));
            } else {
                after = e.position;
            }
        }
        if events.len() < limit {
            after = last;
        }
    }
    Ok(axum::Json(
        json!({"events": events, "next": after, "head": head}),
    ))
}

/// `GET /v1/events/stream`: the shop's events as server-sent events, from
/// `Last-Event-ID` (or `?after=`), then live. Each event's id is its
/// position.
pub async fn live(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Query(q): Query<FeedQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(AUDITORS)?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().parse::<Position>());
    let after = match resume {
        Some(Ok(p)) => p,
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "Last-Event-ID must be a position (a whole number)",
            ));
        }
        None => q.after.unwrap_or(0),
    };
    Ok(
        Sse::new(follow(Arc::clone(&state.store), caller.shop, after))
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15))),
    )
}

fn follow(
    store: Arc<dyn kedai_engine::EventStore>,
    shop: ShopId,
    after: Position,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let sub = subscribe(store, after);
    stream::unfold(sub, move |mut sub| async move {
        loop {
            match sub.next().await {
                Ok(e) if e.stream.shop == shop => {
                    let event = Event::default()
                        .id(e.position.to_string())
                        .event(&*e.event_type)
                        .data(event_json(&e).to_string());
                    return Some((Ok(event), sub));
                }
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(error = %err, "event stream ended");
                    return None;
                }
            }
        }
    })
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    from_version: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/streams/{name}/events`: one entity's history (e.g.
/// `order-<id>`, `stock-<sku>@<warehouse>`, `wallet`).
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(AUDITORS)?;
    let stream = StreamId::new(caller.shop, name);
    if let Some(why) = stream.problem() {
        return Err(ApiError::bad_request(why));
    }
    let limit = q.limit.unwrap_or(PAGE_DEFAULT).clamp(1, EVENTS_PAGE_MAX);
    let from = q.from_version.unwrap_or(1).max(1);
    let events = state.store.read_stream(&stream, from, limit).await?;
    if events.is_empty() && from == 1 {
        return Err(ApiError::not_found(format!(
            "stream {} has no events",
            stream.name
        )));
    }
    let next = (events.len() == limit)
        .then(|| events.last().map(|e| e.version + 1))
        .flatten();
    let events: Vec<Value> = events.iter().map(event_json).collect();
    Ok(axum::Json(
        json!({"stream": &*stream.name, "events": events, "next_version": next}),
    ))
}
