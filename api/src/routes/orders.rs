//! Orders: placing, paying, moving through the lifecycle, refunding;
//! lists with filters and cursor paging; counts per status.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use kedai_engine::Timestamp;
use kedai_engine::command::Command;
use kedai_engine::command::slots::Kind;
use kedai_engine::domain::ids::{CustomerId, OrderId, streams};
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::{
    Channel, OrderStatus, PayOrder, PaymentStatus, PlaceOrder, Transition,
};
use kedai_engine::event::Position;
use kedai_projections::orders::{OrderQuery, Sort, timeline};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, READERS, WRITERS};
use crate::commands::{Fresh, idempotency_key, new_id, run};
use crate::error::{ApiError, Json, Path, Query};
use crate::routes::{Answer, body_as, create, page_size, time_range};
use crate::state::AppState;

/// `POST /v1/orders`: places an order and reserves its stock, atomically.
pub async fn place(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    create(
        &state,
        &caller,
        &headers,
        body,
        "order",
        "order_id",
        |c: PlaceOrder| (c.order_id, Command::PlaceOrder(c)),
    )
    .await
}

/// `POST /v1/orders/{id}/payments`: an installment or the rest.
pub async fn pay(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(order_id): Path<OrderId>,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let id = new_id(
        caller.shop,
        idempotency_key(&headers)?.as_deref(),
        "payment",
    );
    let payment: PayOrder = body_as(body, &[("payment_id", id)])?;
    run(
        &state,
        &caller,
        &headers,
        Command::PayOrder { order_id, payment },
        Some(id.to_string()),
    )
    .await
}

/// `POST /v1/orders/{id}/{action}`: process, pack, ready, ship (with
/// `awb`), deliver, complete, cancel, return, receive-return, lost.
pub async fn transition(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((order_id, action)): Path<(OrderId, String)>,
    body: Option<Json<Value>>,
) -> Answer {
    caller.require(WRITERS)?;
    let mut body = body.map(|Json(b)| b).unwrap_or_else(|| json!({}));
    let tag = match action.as_str() {
        "process" | "pack" | "ready" | "ship" | "deliver" | "complete" | "cancel" => action.clone(),
        "return" => "start_return".into(),
        "receive-return" => "receive_return".into(),
        "lost" => "lose".into(),
        other => {
            return Err(ApiError::not_found(format!(
                "no order action {other:?}; use process, pack, ready, ship, deliver, complete, cancel, return, receive-return or lost"
            )));
        }
    };
    match &mut body {
        Value::Object(map) => {
            map.insert("action".into(), Value::String(tag));
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                "the body must be a JSON object",
            ));
        }
    }
    let transition: Transition = body_as(body, &[])?;
    run(
        &state,
        &caller,
        &headers,
        Command::TransitionOrder {
            order_id,
            transition,
        },
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct RefundBody {
    amount: Money,
    #[serde(default)]
    note: String,
}

/// `POST /v1/orders/{id}/refunds`.
pub async fn refund(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(order_id): Path<OrderId>,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let body: RefundBody = body_as(body, &[])?;
    run(
        &state,
        &caller,
        &headers,
        Command::RefundOrder {
            order_id,
            amount: body.amount,
            note: body.note,
        },
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: Option<OrderStatus>,
    #[serde(default)]
    payment_status: Option<PaymentStatus>,
    #[serde(default)]
    channel: Option<Channel>,
    #[serde(default)]
    from: Option<Timestamp>,
    #[serde(default)]
    to: Option<Timestamp>,
    #[serde(default)]
    customer_id: Option<CustomerId>,
    #[serde(default)]
    awb: Option<String>,
    #[serde(default)]
    q: Option<String>,
    #[serde(default)]
    sort: Option<Sort>,
    #[serde(default)]
    after: Option<Position>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/orders`: filtered, sorted, paged (pass `next` as `after`);
/// `from` (included) and `to` (excluded) bound the time placed.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    time_range(q.from, q.to)?;
    let query = OrderQuery {
        status: q.status,
        payment_status: q.payment_status,
        channel: q.channel,
        from: q.from,
        to: q.to,
        customer_id: q.customer_id,
        awb: q.awb,
        // Spaces around the text are not part of it (a blank one is none).
        text: q.q.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()),
        sort: q.sort.unwrap_or_default(),
        after: q.after,
        limit: page_size(q.limit)?,
    };
    Ok(axum::Json(state.read(|p| match p.shop(caller.shop) {
        None => json!({"orders": [], "next": null}),
        Some(v) => {
            let page = v.orders.list(&query);
            json!({"orders": page.orders, "next": page.next})
        }
    })))
}

/// `GET /v1/orders/counts`: orders per status.
pub async fn counts(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    Ok(axum::Json(state.read(|p| {
        let counts = p
            .shop(caller.shop)
            .map(|v| v.orders.counts())
            .unwrap_or_default();
        let total: usize = counts.values().sum();
        let counts: serde_json::Map<String, Value> = counts
            .into_iter()
            .map(|(s, n)| (s.as_str().to_owned(), json!(n)))
            .collect();
        json!({"counts": counts, "total": total})
    })))
}

/// `GET /v1/orders/{id}`: the order with its lines, payments, COD figures
/// and timeline.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Path(order_id): Path<OrderId>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let (mut value, position) = state.read(|p| {
        let o = p
            .shop(caller.shop)
            .and_then(|v| v.orders.get(order_id))
            .ok_or_else(|| ApiError::not_found(format!("order {order_id} does not exist")))?;
        let mut value = serde_json::to_value(o).map_err(ApiError::internal)?;
        value["komship_status"] = json!(o.status.komship());
        value["ngorder_status"] = json!(o.status.ngorder(o.payment_status));
        Ok::<_, ApiError>((value, p.position))
    })?;
    // The timeline is read from the order's stream, as of the position
    // the summary reflects, so the two agree.
    let stream = streams::order(caller.shop, order_id);
    let events = state
        .store
        .read_stream(&stream, 1, TIMELINE_EVENTS_MAX)
        .await?;
    let timeline = timeline(&events, position).map_err(ApiError::internal)?;
    value["timeline"] = serde_json::to_value(timeline).map_err(ApiError::internal)?;
    Ok(axum::Json(value))
}

/// Most events of one order a timeline shows (an order has a few dozen at
/// most: placement, payments, each step of its way).
const TIMELINE_EVENTS_MAX: usize = 10_000;

/// `GET /v1/customers/{id}/orders`.
pub async fn of_customer(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Path(customer): Path<CustomerId>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let orders = state.read(|p| {
        let orders = p
            .shop(caller.shop)
            .map(|v| v.orders.of_customer(customer))
            .unwrap_or_default();
        (orders.is_empty(), json!({"orders": orders}))
    });
    // No orders: a customer who has none yet, or no customer at all.
    if orders.0 {
        let known = state
            .engine
            .load_state(&streams::customer(caller.shop, customer), Kind::Customer)
            .await?;
        if known.customer().details.is_none() {
            return Err(ApiError::not_found(format!(
                "customer {customer} does not exist"
            )));
        }
    }
    Ok(axum::Json(orders.1))
}
