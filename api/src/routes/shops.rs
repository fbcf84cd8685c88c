//! Shops (created by the operator), the shop's settings, and its keys.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use kedai_engine::command::Command;
use kedai_engine::command::slots::Kind;
use kedai_engine::domain::access::IssueKey;
use kedai_engine::domain::catalog::CreateShop;
use kedai_engine::domain::events::ShopSettings;
use kedai_engine::domain::ids::streams;
use kedai_engine::domain::money::Currency;
use kedai_engine::{Actor, Role, ShopId};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{Caller, OWNER, Operator, READERS, hash_secret, new_secret};
use crate::commands::{CommandAnswer, Fresh, idempotency_key, new_id, run, run_for};
use crate::error::{ApiError, Json, Path};
use crate::routes::body_as;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
struct NewShop {
    name: String,
    currency: Currency,
    #[serde(default)]
    time_zone: Option<String>,
    #[serde(default)]
    utc_offset_minutes: Option<i32>,
    #[serde(default)]
    settings: Option<ShopSettings>,
}

/// What creating a shop answers: the shop and its owner key, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ShopCreatedAnswer {
    pub shop_id: String,
    /// The owner's key; kedai keeps only its hash, so keep it safe. `null`
    /// when the request was a repeat (the key was shown the first time).
    pub owner_key: Option<String>,
    pub position: u64,
}

/// `POST /v1/shops` (operator token).
pub async fn create_shop(
    State(state): State<AppState>,
    _: Operator,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let key = idempotency_key(&headers)?;
    let body: NewShop = body_as(body, &[])?;
    let (time_zone, offset) = match body.currency {
        Currency::Idr => ("Asia/Jakarta", 420),
        Currency::Myr => ("Asia/Kuala_Lumpur", 480),
    };
    // Shop ids are made before the shop exists: derived from the key (a
    // retry makes the same shop) under a fixed namespace.
    let shop = ShopId(new_id(ShopId(uuid::Uuid::nil()), key.as_deref(), "shop"));
    let create = Command::CreateShop(CreateShop {
        name: body.name,
        currency: body.currency,
        time_zone: body.time_zone.unwrap_or_else(|| time_zone.to_owned()),
        utc_offset_minutes: body.utc_offset_minutes.unwrap_or(offset),
        settings: body
            .settings
            .unwrap_or_else(|| ShopSettings::defaults(body.currency)),
    });
    let operator = Actor::new(Role::Operator, "operator");
    let (_, Json(created)) = run_for(
        &state,
        shop,
        operator.clone(),
        &sub_key(&headers, "shop"),
        create,
        None,
    )
    .await?;
    let key_id = new_id(shop, key.as_deref(), "owner-key");
    let (secret, hash) = key_to_issue(&state, shop, key_id, key.is_some()).await?;
    let issue = Command::IssueKey(IssueKey {
        key_id,
        role: Role::Owner,
        label: "owner".into(),
        hash,
    });
    let (_, Json(issued)) = run_for(
        &state,
        shop,
        operator,
        &sub_key(&headers, "owner-key"),
        issue,
        None,
    )
    .await?;
    let repeat = created.status == "already_recorded";
    let status = if repeat {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let answer = ShopCreatedAnswer {
        shop_id: shop.to_string(),
        owner_key: secret.filter(|_| issued.status == "recorded"),
        position: issued.position,
    };
    Ok((status, axum::Json(answer)))
}

/// The secret of a key about to be issued (shown once) and the hash to
/// record: a new secret, unless a request with the same Idempotency-Key
/// issued this key already. Then there is no secret to show (only its hash
/// was kept) and the recorded hash goes into the command, so that the retry
/// is the same request, answered as a repeat on any node, instead of
/// another request reusing the key (`idempotency_key_reused`).
async fn key_to_issue(
    state: &AppState,
    shop: ShopId,
    key_id: uuid::Uuid,
    idempotent: bool,
) -> Result<(Option<String>, String), ApiError> {
    if idempotent {
        let keys = state
            .engine
            .load_state(&streams::keys(shop), Kind::Keys)
            .await?;
        if let Some(issued) = keys.keys().keys.get(&key_id) {
            return Ok((None, issued.hash.clone()));
        }
    }
    let secret = new_secret();
    let hash = hash_secret(&secret);
    Ok((Some(secret), hash))
}

/// The headers with the idempotency key narrowed to one step of a request
/// that runs several commands.
fn sub_key(headers: &HeaderMap, step: &str) -> HeaderMap {
    let mut h = headers.clone();
    if let Some(k) = headers.get("idempotency-key").and_then(|v| v.to_str().ok())
        && let Ok(v) = HeaderValue::from_str(&format!("{k}#{step}"))
    {
        h.insert("idempotency-key", v);
    }
    h
}

/// `GET /v1/shop`: the caller's shop.
pub async fn get_shop(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(READERS)?;
    state.read(|p| {
        let v = p.shop(caller.shop).ok_or_else(|| ApiError::not_found("shop"))?;
        let m = &v.meta;
        let warehouses: Vec<Value> = m.warehouses.iter().map(|(id, name)| json!({"warehouse_id": id, "name": name, "default": m.default_warehouse == Some(*id)})).collect();
        Ok(axum::Json(json!({
            "shop_id": caller.shop,
            "name": m.name,
            "currency": m.currency,
            "time_zone": m.time_zone,
            "utc_offset_minutes": m.utc_offset_minutes,
            "settings": m.settings,
            "warehouses": warehouses,
            "position": p.position,
        })))
    })
}

/// `PUT /v1/shop/settings` (owner).
pub async fn put_settings(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<(StatusCode, Json<CommandAnswer>), ApiError> {
    caller.require(OWNER)?;
    let settings: ShopSettings = body_as(body, &[])?;
    run(
        &state,
        &caller,
        &headers,
        Command::ChangeShopSettings { settings },
        None,
    )
    .await
}

#[derive(Debug, Deserialize)]
struct NewKey {
    role: Role,
    #[serde(default)]
    label: String,
}

/// `POST /v1/keys` (owner): a new key, shown once.
pub async fn create_key(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(OWNER)?;
    let body: NewKey = body_as(body, &[])?;
    let key = idempotency_key(&headers)?;
    let key_id = new_id(caller.shop, key.as_deref(), "key");
    let (secret, hash) = key_to_issue(&state, caller.shop, key_id, key.is_some()).await?;
    let command = Command::IssueKey(IssueKey {
        key_id,
        role: body.role,
        label: body.label,
        hash,
    });
    let (status, Json(answer)) =
        run(&state, &caller, &headers, command, Some(key_id.to_string())).await?;
    let shown = secret.filter(|_| answer.status == "recorded");
    Ok((
        status,
        axum::Json(
            json!({"key_id": key_id, "role": body.role, "key": shown, "position": answer.position}),
        ),
    ))
}

/// `GET /v1/keys` (owner): the shop's keys, without secrets.
pub async fn list_keys(
    State(state): State<AppState>,
    caller: Caller,
    _: Fresh,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(OWNER)?;
    Ok(axum::Json(state.read(|p| {
        let keys: Vec<Value> =
            p.keys_of(caller.shop).iter().map(|k| json!({"key_id": k.key_id, "role": k.role, "label": k.label, "issued_at": k.issued_at, "revoked": k.revoked})).collect();
        json!({ "keys": keys })
    })))
}

/// `DELETE /v1/keys/{id}` (owner). Answers once the key no longer works
/// on this node (other nodes follow within their projection lag).
pub async fn revoke_key(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(key_id): Path<uuid::Uuid>,
) -> Result<(StatusCode, Json<CommandAnswer>), ApiError> {
    caller.require(OWNER)?;
    let answer = run(
        &state,
        &caller,
        &headers,
        Command::RevokeKey { key_id },
        None,
    )
    .await?;
    let _ = state
        .projections
        .wait_for(answer.1.0.position, crate::limits::MIN_POSITION_WAIT_MAX)
        .await;
    Ok(answer)
}
