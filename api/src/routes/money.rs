//! The seller's balance and ledger, wallet entries, withdrawals, expenses,
//! and checkouts.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use kedai_engine::Timestamp;
use kedai_engine::command::Command;
use kedai_engine::command::slots::Kind;
use kedai_engine::domain::checkout::{CheckoutContent, CheckoutStatus, StartCheckout};
use kedai_engine::domain::ids::streams;
use kedai_engine::domain::order::PlaceOrder;
use kedai_engine::domain::wallet::{
    RecordExpense, RequestWithdrawal, WalletEntry, WithdrawalAction, WithdrawalStatus,
};
use kedai_engine::event::Position;
use kedai_engine::{EventStore, RecordedEvent, ShopId};
use kedai_projections::balances::{self, Balances, LedgerMark};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use crate::auth::{Caller, OWNER, READERS, WRITERS};
use crate::commands::{Fresh, idempotency_key, new_id, run};
use crate::error::{ApiError, Json, Path, Query};
use crate::routes::{Answer, body_as, create, page_size, time_range};
use crate::state::AppState;

/// `GET /v1/balance`: pending, available, withdrawing, and totals earned.
pub async fn balance(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[
        kedai_engine::Role::Owner,
        kedai_engine::Role::Staff,
        kedai_engine::Role::Analyst,
        kedai_engine::Role::Auditor,
    ])?;
    Ok(axum::Json(state.read(|p| {
        let empty = Balances::default();
        let b = p.shop(caller.shop).map_or(&empty, |v| &v.balances);
        json!({
            "pending": b.pending, "available": b.available, "withdrawing": b.withdrawing,
            "cod_net_profit": b.cod_net_profit, "cashback": b.cashback, "service_fees": b.service_fees, "withdrawn": b.withdrawn,
            "position": p.position,
        })
    })))
}

#[derive(Debug, Deserialize)]
pub struct LedgerQuery {
    #[serde(default)]
    before: Option<Position>,
    #[serde(default)]
    from: Option<Timestamp>,
    #[serde(default)]
    to: Option<Timestamp>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/ledger`: ledger entries newest first with the balances after
/// each (pass `next` as `before`); `from` (included) and `to` (excluded)
/// bound the entries' dates.
///
/// The projections keep a mark per entry (where it is in the wallet
/// stream, its date, the balances after it); the page's entries are made
/// from their events, read from the wallet stream.
pub async fn ledger(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Query(q): Query<LedgerQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[
        kedai_engine::Role::Owner,
        kedai_engine::Role::Staff,
        kedai_engine::Role::Analyst,
        kedai_engine::Role::Auditor,
    ])?;
    let limit = page_size(q.limit)?;
    time_range(q.from, q.to)?;
    let marks: Vec<LedgerMark> = state.read(|p| {
        p.shop(caller.shop).map_or_else(Vec::new, |v| {
            v.balances
                .ledger_page(q.before, q.from, q.to, limit + 1)
                .into_iter()
                .copied()
                .collect()
        })
    });
    let next = (marks.len() > limit).then(|| marks[limit - 1].position);
    let shown = &marks[..marks.len().min(limit)];
    let events = ledger_events(&*state.store, caller.shop, shown).await?;
    let entries = shown
        .iter()
        .zip(&events)
        .map(|(m, e)| balances::entry(m, e))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::internal)?;
    Ok(axum::Json(json!({"entries": entries, "next": next})))
}

/// The wallet stream's events of `marks`, in their order: each run of
/// consecutive versions read at once (a page without a date filter is one
/// run).
pub async fn ledger_events(
    store: &dyn EventStore,
    shop: ShopId,
    marks: &[LedgerMark],
) -> Result<Vec<RecordedEvent>, ApiError> {
    let stream = streams::wallet(shop);
    let mut versions: Vec<u64> = marks.iter().map(|m| m.version).collect();
    versions.sort_unstable();
    versions.dedup();
    let mut read: BTreeMap<u64, RecordedEvent> = BTreeMap::new();
    let mut rest = &versions[..];
    while let Some(&first) = rest.first() {
        let run = rest
            .iter()
            .enumerate()
            .take_while(|(i, v)| **v == first + *i as u64)
            .count();
        let end = first + run as u64;
        let mut from = first;
        while from < end {
            let chunk = store
                .read_stream(&stream, from, (end - from) as usize)
                .await?;
            let Some(last) = chunk.last().map(|e| e.version) else {
                break;
            };
            from = last + 1;
            read.extend(chunk.into_iter().map(|e| (e.version, e)));
        }
        rest = &rest[run..];
    }
    marks
        .iter()
        .map(|m| {
            read.remove(&m.version).ok_or_else(|| {
                ApiError::internal(format!(
                    "ledger entry at position {} is not in the wallet stream",
                    m.position
                ))
            })
        })
        .collect()
}

/// `POST /v1/wallet/entries`: a top-up, a compensation, a return claim, or
/// a COD settlement.
pub async fn wallet_entry(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(OWNER)?;
    let entry: WalletEntry = body_as(body, &[])?;
    run(&state, &caller, &headers, Command::WalletEntry(entry), None).await
}

/// `POST /v1/withdrawals` (owner).
pub async fn request_withdrawal(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(OWNER)?;
    create(
        &state,
        &caller,
        &headers,
        body,
        "withdrawal",
        "withdrawal_id",
        |c: RequestWithdrawal| (c.withdrawal_id, Command::RequestWithdrawal(c)),
    )
    .await
}

/// `POST /v1/withdrawals/{id}/{action}`: review, complete (with
/// `transfer_reference`), reject (with `reason`), cancel.
pub async fn act_on_withdrawal(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path((withdrawal_id, action)): Path<(uuid::Uuid, String)>,
    body: Option<Json<Value>>,
) -> Answer {
    caller.require(OWNER)?;
    if !matches!(action.as_str(), "review" | "complete" | "reject" | "cancel") {
        return Err(ApiError::not_found(format!(
            "no withdrawal action {action:?}; use review, complete, reject or cancel"
        )));
    }
    let mut body = body.map(|Json(b)| b).unwrap_or_else(|| json!({}));
    if let Value::Object(map) = &mut body {
        map.insert("action".into(), Value::String(action));
    }
    let action: WithdrawalAction = body_as(body, &[])?;
    run(
        &state,
        &caller,
        &headers,
        Command::ActOnWithdrawal {
            withdrawal_id,
            action,
        },
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
pub struct WithdrawalsQuery {
    #[serde(default)]
    status: Option<WithdrawalStatus>,
}

/// `GET /v1/withdrawals`.
pub async fn withdrawals(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Query(q): Query<WithdrawalsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[
        kedai_engine::Role::Owner,
        kedai_engine::Role::Auditor,
        kedai_engine::Role::Analyst,
    ])?;
    Ok(axum::Json(state.read(|p| {
        let list = p
            .shop(caller.shop)
            .map(|v| {
                v.balances
                    .withdrawals_list(q.status)
                    .into_iter()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        json!({"withdrawals": list})
    })))
}

/// `POST /v1/expenses`.
pub async fn record_expense(
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
        "expense",
        "expense_id",
        |c: RecordExpense| (c.expense_id, Command::RecordExpense(c)),
    )
    .await
}

/// `DELETE /v1/expenses/{id}`: voids an expense (history keeps it).
pub async fn void_expense(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(expense_id): Path<uuid::Uuid>,
) -> Answer {
    caller.require(WRITERS)?;
    run(
        &state,
        &caller,
        &headers,
        Command::VoidExpense {
            expense_id,
            reason: String::new(),
        },
        None,
    )
    .await
}

/// `POST /v1/checkouts`.
pub async fn start_checkout(
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
        "checkout",
        "checkout_id",
        |c: StartCheckout| (c.checkout_id, Command::StartCheckout(c)),
    )
    .await
}

/// `PUT /v1/checkouts/{id}`: the cart as it is now.
pub async fn update_checkout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(checkout_id): Path<uuid::Uuid>,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let content: CheckoutContent = body_as(body, &[])?;
    run(
        &state,
        &caller,
        &headers,
        Command::UpdateCheckout {
            checkout_id,
            content,
        },
        None,
    )
    .await
}

/// `POST /v1/checkouts/{id}/complete`: places the order (the body is an
/// order, as for `POST /v1/orders`) and completes the checkout, atomically.
pub async fn complete_checkout(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(checkout_id): Path<uuid::Uuid>,
    Json(body): Json<Value>,
) -> Answer {
    caller.require(WRITERS)?;
    let id = new_id(caller.shop, idempotency_key(&headers)?.as_deref(), "order");
    let order: PlaceOrder = body_as(body, &[("order_id", id)])?;
    let id = order.order_id.to_string();
    run(
        &state,
        &caller,
        &headers,
        Command::CompleteCheckout { checkout_id, order },
        Some(id),
    )
    .await
}

/// `GET /v1/checkouts/{id}`.
pub async fn get_checkout(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<uuid::Uuid>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let c = state
        .engine
        .load_state(&streams::checkout(caller.shop, id), Kind::Checkout)
        .await?;
    let c = c.checkout();
    let started = c
        .started
        .as_ref()
        .ok_or_else(|| ApiError::not_found(format!("checkout {id} does not exist")))?;
    Ok(axum::Json(json!({
        "checkout_id": id, "status": c.status, "domain": started.domain, "currency": started.currency,
        "content": c.content, "total": c.content.as_ref().map(CheckoutContent::total), "created_at": started.created_at,
        "updated_at": c.updated_at, "order_id": c.order_id,
    })))
}

#[derive(Debug, Deserialize)]
pub struct CheckoutsQuery {
    #[serde(default)]
    status: Option<CheckoutStatus>,
    /// The `next` of the previous page: `<created_at>,<checkout id>`.
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/checkouts`: newest first, by `status` (`open`, `completed`,
/// `abandoned`) if given, with the counts per status and the abandonment
/// rate.
pub async fn list_checkouts(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Query(q): Query<CheckoutsQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    let limit = page_size(q.limit)?;
    let after = match q.after.as_deref() {
        None => None,
        Some(text) => {
            let bad = || ApiError::bad_request("after must be the next value of the previous page");
            let (t, id) = text.split_once(',').ok_or_else(bad)?;
            let t: Timestamp =
                serde_json::from_value(Value::String(t.to_owned())).map_err(|_| bad())?;
            Some((t, id.parse::<uuid::Uuid>().map_err(|_| bad())?))
        }
    };
    Ok(axum::Json(state.read(|p| match p.shop(caller.shop) {
        None => json!({"checkouts": [], "next": null, "counts": kedai_projections::checkouts::CheckoutCounts::default()}),
        Some(v) => {
            let (page, next) = v.checkouts.list(q.status, after, limit);
            json!({
                "checkouts": page,
                "next": next.map(|(t, id)| format!("{t},{id}")),
                "counts": v.checkouts.counts(),
                "abandon_after_minutes": v.abandon_minutes(),
            })
        }
    })))
}
