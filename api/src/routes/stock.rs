//! Stock moves and stock reads: levels per SKU and warehouse, history, low
//! stock.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use kedai_engine::Timestamp;
use kedai_engine::command::Command;
use kedai_engine::domain::ids::{Sku, WarehouseId, streams};
use kedai_engine::domain::stock::StockMove;
use kedai_engine::store::READ_EVENTS_MAX;
use kedai_engine::{EventStore, Position, RecordedEvent, ShopId};
use kedai_projections::shop::ShopMeta;
use kedai_projections::stock::{self, HistoryRef};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::auth::{Caller, READERS, WRITERS};
use crate::commands::{CommandAnswer, Fresh, idempotency_key, new_id, run};
use crate::error::{ApiError, Json, Path, Query};
use crate::routes::{body_as, page_size, time_range};
use crate::state::AppState;

/// `POST /v1/stock/moves`: receive, remove, transfer or count.
pub async fn move_stock(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<CommandAnswer>), ApiError> {
    caller.require(WRITERS)?;
    let id = new_id(
        caller.shop,
        idempotency_key(&headers)?.as_deref(),
        "transfer",
    );
    let fill: &[(&str, uuid::Uuid)] =
        if body.get("type").and_then(Value::as_str) == Some("transfer") {
            &[("transfer_id", id)]
        } else {
            &[]
        };
    let cmd: StockMove = body_as(body, fill)?;
    run(&state, &caller, &headers, Command::MoveStock(cmd), None).await
}

fn parse_sku(text: &str) -> Result<Sku, ApiError> {
    Sku::parse(text).map_err(|why| ApiError::bad_request(format!("invalid SKU: {why}")))
}

#[derive(Debug, Deserialize)]
pub struct LevelsQuery {
    #[serde(default)]
    warehouse_id: Option<WarehouseId>,
    /// The `next` of the page before (see [`parse_cursor`]).
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// Where a page of levels continues: after the row `SKU@warehouse-id`
/// (the `next` of the page before), or after every row of a SKU given
/// alone.
fn parse_cursor(text: &str) -> Result<(Sku, Option<WarehouseId>), ApiError> {
    let Some((sku, warehouse)) = text.split_once('@') else {
        return Ok((parse_sku(text)?, None));
    };
    let warehouse = warehouse.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "after must be the next of the page before (SKU@warehouse id) or a SKU, not {text:?}"
        ))
    })?;
    Ok((parse_sku(sku)?, Some(WarehouseId(warehouse))))
}

/// `GET /v1/stock`: every item's level, in the order of SKU then
/// warehouse, a page at a time: `next` is `SKU@warehouse-id`, the last
/// row's, to pass as `after` (a SKU alone as `after` continues after every
/// row of that SKU).
pub async fn levels(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Query(q): Query<LevelsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let limit = page_size(q.limit)?;
    let after = q.after.as_deref().map(parse_cursor).transpose()?;
    let past = |(s, w): &(Sku, WarehouseId)| match &after {
        None => true,
        Some((a, None)) => s > a,
        Some((a, Some(aw))) => (s, w) > (a, aw),
    };
    state.read(|p| {
        let v = p.shop(caller.shop);
        if let Some(w) = q.warehouse_id
            && v.is_none_or(|v| !v.meta.warehouses.contains_key(&w))
        {
            return Err(ApiError::not_found(format!("warehouse {w} does not exist")));
        }
        let Some(v) = v else {
            return Ok(axum::Json(json!({"items": [], "next": null})));
        };
        let mut rows: Vec<_> = v
            .stock
            .levels
            .iter()
            .filter(|(k, _)| past(k) && q.warehouse_id.is_none_or(|x| x == k.1))
            .take(limit + 1)
            .collect();
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = rows
            .last()
            .filter(|_| more)
            .map(|((s, w), _)| format!("{s}@{w}"));
        let items: Vec<Value> = rows
            .into_iter()
            .map(|((s, w), l)| json!({"sku": s, "warehouse_id": w, "warehouse": v.meta.warehouse_name(*w), "on_hand": l.on_hand, "reserved": l.reserved, "available": l.available()}))
            .collect();
        Ok(axum::Json(json!({ "items": items, "next": next })))
    })
}

/// `GET /v1/stock/{sku}`: one SKU in every warehouse, and its total.
pub async fn of_sku(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Path(sku): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let sku = parse_sku(&sku)?;
    state.read(|p| {
        let v = p.shop(caller.shop).filter(|v| v.meta.skus.contains_key(&sku)).ok_or_else(|| ApiError::not_found(format!("SKU {sku} does not exist")))?;
        let warehouses: Vec<Value> = v
            .stock
            .of_sku(&sku)
            .into_iter()
            .map(|(w, l)| json!({"warehouse_id": w, "warehouse": v.meta.warehouse_name(w), "on_hand": l.on_hand, "reserved": l.reserved, "available": l.available()}))
            .collect();
        let t = v.stock.total(&sku);
        Ok(axum::Json(json!({"sku": sku, "warehouses": warehouses, "total": {"on_hand": t.on_hand, "reserved": t.reserved, "available": t.available()}})))
    })
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    warehouse_id: Option<WarehouseId>,
    #[serde(default)]
    from: Option<Timestamp>,
    #[serde(default)]
    to: Option<Timestamp>,
    /// The `next` of the page before.
    #[serde(default)]
    after: Option<Position>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/stock/{sku}/history`: moves of goods, oldest first (Ngorder's
/// date, user, description, order, warehouse, in, out, last), a page at a
/// time (pass `next` as `after`).
///
/// The projections keep a mark per line (where it is in the item's stock
/// stream, its date, the quantity on hand after it); the lines are made
/// from their events, read from the stock streams.
pub async fn history(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Path(sku): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let sku = parse_sku(&sku)?;
    let limit = page_size(q.limit)?;
    // As every list: from after to is refused, from at to is empty.
    time_range(q.from, q.to)?;
    let mut refs = state.read(|p| {
        let v = p
            .shop(caller.shop)
            .filter(|v| v.meta.skus.contains_key(&sku))
            .ok_or_else(|| ApiError::not_found(format!("SKU {sku} does not exist")))?;
        if let Some(w) = q.warehouse_id
            && !v.meta.warehouses.contains_key(&w)
        {
            return Err(ApiError::not_found(format!("warehouse {w} does not exist")));
        }
        Ok(v.stock
            .history_page(&sku, q.warehouse_id, q.from, q.to, q.after, limit + 1))
    })?;
    let next = (refs.len() > limit).then(|| refs[limit - 1].mark.position);
    refs.truncate(limit);
    let events = history_events(&*state.store, caller.shop, &sku, &refs).await?;
    let lines = state.read(|p| {
        let empty = ShopMeta::default();
        let meta = p.shop(caller.shop).map_or(&empty, |v| &v.meta);
        refs.iter()
            .zip(&events)
            .map(|(r, e)| stock::line(meta, &sku, r, e))
            .collect::<Result<Vec<_>, _>>()
            .map_err(ApiError::internal)
    })?;
    Ok(axum::Json(
        json!({"sku": sku, "history": lines, "next": next}),
    ))
}

/// Versions of one stream closer than this are read in one run (the
/// events between, reservations and releases, are read and left).
const HISTORY_READ_GAP: u64 = 64;

/// The stock streams' events of `refs`, in their order: for each
/// warehouse, each run of versions no further apart than
/// [`HISTORY_READ_GAP`] read at once (a whole history is one run per
/// warehouse).
pub async fn history_events(
    store: &dyn EventStore,
    shop: ShopId,
    sku: &Sku,
    refs: &[HistoryRef],
) -> Result<Vec<RecordedEvent>, ApiError> {
    let mut wanted: BTreeMap<WarehouseId, Vec<u64>> = BTreeMap::new();
    for r in refs {
        wanted
            .entry(r.warehouse_id)
            .or_default()
            .push(r.mark.version);
    }
    let mut read: BTreeMap<(WarehouseId, u64), RecordedEvent> = BTreeMap::new();
    for (warehouse, mut versions) in wanted {
        let stream = streams::stock(shop, sku, warehouse);
        versions.sort_unstable();
        versions.dedup();
        let mut rest = &versions[..];
        while let Some(&first) = rest.first() {
            let run = 1 + rest
                .windows(2)
                .take_while(|w| w[1] - w[0] <= HISTORY_READ_GAP)
                .count();
            let end = rest[run - 1] + 1;
            let keep = &rest[..run];
            let mut from = first;
            while from < end {
                let max = ((end - from) as usize).min(READ_EVENTS_MAX);
                let chunk = store.read_stream(&stream, from, max).await?;
                let Some(last) = chunk.last().map(|e| e.version) else {
                    break;
                };
                from = last + 1;
                read.extend(
                    chunk
                        .into_iter()
                        .filter(|e| keep.binary_search(&e.version).is_ok())
                        .map(|e| ((warehouse, e.version), e)),
                );
            }
            rest = &rest[run..];
        }
    }
    refs.iter()
        .map(|r| {
            read.remove(&(r.warehouse_id, r.mark.version))
                .ok_or_else(|| {
                    ApiError::internal(format!(
                        "stock history line at position {} is not in its stock stream",
                        r.mark.position
                    ))
                })
        })
        .collect()
}

#[derive(Debug, Deserialize)]
pub struct LowQuery {
    #[serde(default)]
    threshold: Option<i64>,
}

/// `GET /v1/stock/low`: items at or below the threshold (the shop's
/// setting unless given).
pub async fn low(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Query(q): Query<LowQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    Ok(axum::Json(state.read(|p| {
        let Some(v) = p.shop(caller.shop) else { return json!({"items": []}) };
        let threshold = q.threshold.unwrap_or_else(|| v.meta.low_stock_threshold());
        let items: Vec<Value> = v
            .stock
            .low_stock(threshold)
            .into_iter()
            .map(|(s, w, l)| json!({"sku": s, "warehouse_id": w, "warehouse": v.meta.warehouse_name(w), "on_hand": l.on_hand, "reserved": l.reserved, "available": l.available()}))
            .collect();
        json!({"threshold": threshold, "items": items})
    })))
}
