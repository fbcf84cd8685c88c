//! Webhook subscriptions: create, list, get, pause, resume, delete, rotate
//! the secret, and read a subscription's delivery log. The owner changes
//! them; owner and staff read them. A secret is shown only in the answer
//! that makes it (create, rotate); lists and the event feeds never show
//! it. Another shop's subscription ids are not found (404).

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use kedai_engine::command::Command;
use kedai_engine::command::slots::Kind;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::FieldError;
use kedai_engine::domain::Rejection;
use kedai_engine::domain::ids::streams;
use kedai_engine::domain::webhook::{CreateWebhook, Trigger, WebhookChange};
use kedai_projections::webhooks::SubscriptionView;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::{Caller, OWNER, WRITERS};
use crate::commands::{Fresh, idempotency_key, new_id, run};
use crate::error::{ApiError, Json, Path, Query};
use crate::routes::{Answer, body_as, page_size};
use crate::state::AppState;

/// A new signing secret: `whsec_` and 32 random bytes in hex.
pub fn new_webhook_secret() -> String {
    crate::auth::random_secret("whsec_")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewWebhook {
    name: String,
    url: String,
    triggers: Vec<String>,
    #[serde(default)]
    secret: Option<String>,
}

fn view_json(s: &SubscriptionView) -> Value {
    json!({
        "webhook_id": s.webhook_id,
        "name": s.name,
        "url": s.url,
        "triggers": s.triggers,
        "status": s.status,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "secret_rotated_at": s.secret_rotated_at,
        "delivered": s.delivered,
        "failed_attempts": s.failed_attempts,
        "last_delivered_at": s.last_delivered_at,
        "last_failure": s.last_failure,
        "disabled_reason": s.disabled_reason,
    })
}

/// The subscription's state as the engine decides on it (not the
/// projections: no lag), if it exists in the caller's shop.
async fn existing(
    state: &AppState,
    caller: &Caller,
    webhook_id: uuid::Uuid,
) -> Result<kedai_engine::domain::webhook::Webhook, ApiError> {
    let s = state
        .engine
        .load_state(&streams::webhook(caller.shop, webhook_id), Kind::Webhook)
        .await?;
    let w = s.webhook().clone();
    if !w.exists() {
        return Err(Rejection::UnknownWebhook { webhook_id }.into());
    }
    Ok(w)
}

/// `POST /v1/webhooks` (owner): subscribe a callback URL to triggers.
/// Answers with the secret (made here unless given), shown this once.
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(OWNER)?;
    let key = idempotency_key(&headers)?;
    let body: NewWebhook = body_as(body, &[])?;
    let webhook_id = new_id(caller.shop, key.as_deref(), "webhook");
    let mut errors: Vec<FieldError> = Vec::new();
    let mut triggers = Vec::new();
    for (i, t) in body.triggers.iter().enumerate() {
        match Trigger::parse(t) {
            Ok(t) => triggers.push(t),
            Err(why) => errors.push(FieldError::new(format!("triggers[{i}]"), why)),
        }
    }
    // A repeated request (same Idempotency-Key) gets the secret made the
    // first time, read from the event it recorded (the store, not a
    // cache, is what says whether it was recorded).
    let secret = match (&body.secret, key.as_deref()) {
        (Some(s), _) => s.clone(),
        (None, Some(key)) => match recorded_first(&state, &caller, key).await? {
            Some(DomainEvent::WebhookSubscribed(first)) => first.secret,
            _ => new_webhook_secret(),
        },
        (None, None) => new_webhook_secret(),
    };
    let cmd = CreateWebhook {
        webhook_id,
        name: body.name,
        url: body.url,
        triggers,
        secret,
    };
    if let Err(fields) = cmd.validate() {
        // With a trigger left out (it did not parse), the command's own
        // trigger errors would name the wrong places: the parse errors
        // stand for them.
        let bad_trigger = !errors.is_empty();
        errors.extend(
            fields
                .into_iter()
                .filter(|f| !(bad_trigger && f.field.starts_with("triggers"))),
        );
    }
    if !errors.is_empty() {
        return Err(ApiError::invalid(errors));
    }
    let secret = cmd.secret.clone();
    let (name, url, triggers) = (
        cmd.name.trim().to_owned(),
        cmd.url.clone(),
        cmd.triggers.clone(),
    );
    let (status, Json(answer)) = run(
        &state,
        &caller,
        &headers,
        Command::CreateWebhook(cmd),
        Some(webhook_id.to_string()),
    )
    .await?;
    Ok((
        status,
        axum::Json(json!({
            "id": webhook_id,
            "position": answer.position,
            "status": answer.status,
            "secret": secret,
            "subscription": {"webhook_id": webhook_id, "name": name, "url": url, "triggers": triggers, "status": "active"},
        })),
    ))
}

/// `GET /v1/webhooks`: the shop's subscriptions (not deleted), without
/// secrets.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(WRITERS)?;
    Ok(axum::Json(state.read(|p| {
        let list: Vec<Value> = p
            .shop(caller.shop)
            .map(|v| v.webhooks.list().into_iter().map(view_json).collect())
            .unwrap_or_default();
        json!({"webhooks": list, "position": p.position})
    })))
}

/// `GET /v1/webhooks/{id}`: one subscription, without its secret.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
    Path(webhook_id): Path<uuid::Uuid>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(WRITERS)?;
    state.read(|p| {
        p.shop(caller.shop)
            .and_then(|v| v.webhooks.get(webhook_id))
            .map(|s| axum::Json(view_json(s)))
            .ok_or_else(|| Rejection::UnknownWebhook { webhook_id }.into())
    })
}

async fn change(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    webhook_id: uuid::Uuid,
    change: WebhookChange,
) -> Answer {
    caller.require(OWNER)?;
    run(
        state,
        caller,
        headers,
        Command::ChangeWebhook { webhook_id, change },
        Some(webhook_id.to_string()),
    )
    .await
}

/// `POST /v1/webhooks/{id}/pause` (owner): nothing is sent until resumed,
/// and events meanwhile are never sent.
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(webhook_id): Path<uuid::Uuid>,
) -> Answer {
    change(&state, &caller, &headers, webhook_id, WebhookChange::Pause).await
}

/// `POST /v1/webhooks/{id}/resume` (owner): also re-enables a subscription
/// kedai disabled. What happened while paused is not replayed.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(webhook_id): Path<uuid::Uuid>,
) -> Answer {
    change(&state, &caller, &headers, webhook_id, WebhookChange::Resume).await
}

/// `DELETE /v1/webhooks/{id}` (owner).
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(webhook_id): Path<uuid::Uuid>,
) -> Answer {
    change(&state, &caller, &headers, webhook_id, WebhookChange::Delete).await
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    #[serde(default)]
    secret: Option<String>,
}

/// `POST /v1/webhooks/{id}/rotate-secret` (owner): a new secret (given,
/// or made here), shown this once; deliveries from now on are signed with
/// it, retries of earlier ones included.
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(webhook_id): Path<uuid::Uuid>,
    body: Option<Json<Value>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(OWNER)?;
    let body: Rotate = match body {
        Some(Json(b)) => body_as(b, &[])?,
        None => Rotate::default(),
    };
    let secret = match (body.secret, idempotency_key(&headers)?) {
        (Some(s), _) => s,
        // A repeated request answers with the secret it made the first time.
        (None, Some(key)) => match recorded_first(&state, &caller, &key).await? {
            Some(DomainEvent::WebhookSecretRotated(r)) => r.secret,
            _ => new_webhook_secret(),
        },
        (None, None) => new_webhook_secret(),
    };
    let (status, Json(answer)) = change(
        &state,
        &caller,
        &headers,
        webhook_id,
        WebhookChange::RotateSecret {
            secret: secret.clone(),
        },
    )
    .await?;
    Ok((
        status,
        axum::Json(
            json!({"id": webhook_id, "position": answer.position, "status": answer.status, "secret": secret}),
        ),
    ))
}

/// The first event a command sent with this idempotency key recorded in
/// the caller's shop, if it was recorded (its id is derived from the shop
/// and the key).
async fn recorded_first(
    state: &AppState,
    caller: &Caller,
    key: &str,
) -> Result<Option<DomainEvent>, ApiError> {
    let id = kedai_engine::command::event_id(caller.shop, Some(key), 1);
    let Some(Some(position)) = state.store.event_positions(&[id]).await?.first().copied() else {
        return Ok(None);
    };
    let events = state.store.read_all(position - 1, 1).await?;
    Ok(events
        .first()
        .filter(|e| e.stream.shop == caller.shop && e.event_id == id)
        .and_then(|e| {
            DomainEvent::decode(&e.event_type, &e.payload)
                .ok()
                .flatten()
        }))
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    /// The `next` of the previous page (a version of the deliveries
    /// stream).
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/webhooks/{id}/deliveries?after=&limit=`: every attempt, oldest
/// first: delivered (with the receiver's status) or failed (with why, and
/// when the next attempt is due, or `null` when kedai gave up).
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(webhook_id): Path<uuid::Uuid>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(WRITERS)?;
    existing(&state, &caller, webhook_id).await?;
    let limit = page_size(q.limit)?;
    let after = q.after.unwrap_or(0);
    let stream = streams::webhook_deliveries(caller.shop, webhook_id);
    let from = after
        .checked_add(1)
        .ok_or_else(|| ApiError::bad_request(format!("after must be below {}", u64::MAX)))?;
    let events = state.store.read_stream(&stream, from, limit).await?;
    let mut next = after;
    let mut items = Vec::with_capacity(events.len());
    for e in &events {
        next = e.version;
        let decoded = DomainEvent::decode(&e.event_type, &e.payload).map_err(ApiError::internal)?;
        let item = match decoded {
            Some(DomainEvent::WebhookDelivered(d)) => json!({
                "outcome": "delivered", "delivery_id": d.delivery_id, "event_id": d.event_id,
                "event_position": d.event_position, "trigger": d.trigger, "attempt": d.attempt,
                "status_code": d.status_code, "duration_ms": d.duration_ms, "at": d.delivered_at,
            }),
            Some(DomainEvent::WebhookAttemptFailed(f)) => json!({
                "outcome": if f.next_attempt_at.is_some() { "failed" } else { "gave_up" },
                "delivery_id": f.delivery_id, "event_id": f.event_id,
                "event_position": f.event_position, "trigger": f.trigger, "attempt": f.attempt,
                "status_code": f.status_code, "error": f.error, "duration_ms": f.duration_ms,
                "at": f.failed_at, "next_attempt_at": f.next_attempt_at,
            }),
            _ => continue,
        };
        let mut item = item;
        item["version"] = json!(e.version);
        item["position"] = json!(e.position);
        items.push(item);
    }
    let total = state.store.stream_version(&stream).await?;
    Ok(axum::Json(
        json!({"deliveries": items, "next": next, "total": total}),
    ))
}
