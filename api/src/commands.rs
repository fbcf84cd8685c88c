//! Running a command for a request: idempotency, the answer's shape, and
//! reads that wait for a position.
//!
//! `Idempotency-Key`: the engine derives the command's event ids from
//! (shop, key), so a retry records nothing new; its answer is rebuilt from
//! the events recorded the first time (they are immutable), which makes
//! retries answer the same also after a restart and on any node, with no
//! table of answers to keep. Ids the server makes for a command (an order
//! id, a key id) are derived from the key too. The request's fingerprint
//! travels as the events' correlation id: a key reused with a different
//! request is refused (422) instead of answered with another request's
//! result.
//!
//! Every command answers with the position of its last event; reads take
//! `min_position` and wait (bounded) until the projections reach it.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, Uri};
use kedai_engine::command::{Command, CommandError, CommandMeta, Executed, event_id};
use kedai_engine::domain::{DomainEvent, Rejection};
use kedai_engine::event::Position;
use kedai_engine::{AppendStatus, ShopId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::auth::Caller;
use crate::error::{ApiError, Json};
use crate::limits::MIN_POSITION_WAIT_MAX;
use crate::state::AppState;

/// Longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_LEN_MAX: usize = 200;

/// One event of a command's answer.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventView {
    pub position: Option<Position>,
    pub stream: String,
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event's JSON, encoded once from the event itself (no JSON
    /// tree in between: answers are on every command's path).
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

/// An event's JSON; `null` if it cannot be encoded (it always can: events
/// are plain data).
fn event_json(event: &DomainEvent) -> Box<RawValue> {
    serde_json::value::to_raw_value(event).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// What a command answers.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CommandAnswer {
    /// Position of the command's last event: read with
    /// `min_position` of this to see its effects.
    pub position: Position,
    /// `recorded`, or `already_recorded` for a repeated request.
    pub status: String,
    /// The id of what the command created, if it created something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub events: Vec<EventView>,
}

/// The `Idempotency-Key` header, checked.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| ApiError::bad_request("Idempotency-Key must be printable ASCII"))?;
    if key.is_empty()
        || key.len() > IDEMPOTENCY_KEY_LEN_MAX
        || !key.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(ApiError::bad_request(format!(
            "Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_LEN_MAX} printable ASCII characters"
        )));
    }
    Ok(Some(key.to_owned()))
}

/// An id the server makes for a command: derived from the idempotency key
/// when there is one (a retry makes the same id), else a fresh UUID v7.
pub fn new_id(shop: ShopId, key: Option<&str>, purpose: &str) -> uuid::Uuid {
    match key {
        Some(k) => event_id(shop, Some(&format!("{k}\u{0}{purpose}")), 0),
        None => uuid::Uuid::now_v7(),
    }
}

/// Runs a command for the caller and answers 201 (or 200 for a repeat).
pub async fn run(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    command: Command,
    id: Option<String>,
) -> Result<(StatusCode, Json<CommandAnswer>), ApiError> {
    run_for(state, caller.shop, caller.actor(), headers, command, id).await
}

/// Runs a command for the caller, answering its rejections with
/// `rejected` (to name the request's fields in them) instead of the usual
/// mapping.
pub async fn run_naming(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    command: Command,
    id: Option<String>,
    rejected: impl FnOnce(Rejection) -> ApiError,
) -> Result<(StatusCode, Json<CommandAnswer>), ApiError> {
    run_inner(
        state,
        caller.shop,
        caller.actor(),
        headers,
        command,
        id,
        rejected,
    )
    .await
}

/// Runs a command for a shop as an actor.
pub async fn run_for(
    state: &AppState,
    shop: ShopId,
    actor: kedai_engine::Actor,
    headers: &HeaderMap,
    command: Command,
    id: Option<String>,
) -> Result<(StatusCode, Json<CommandAnswer>), ApiError> {
    run_inner(state, shop, actor, headers, command, id, ApiError::from).await
}

async fn run_inner(
    state: &AppState,
    shop: ShopId,
    actor: kedai_engine::Actor,
    headers: &HeaderMap,
    command: Command,
    id: Option<String>,
    rejected: impl FnOnce(Rejection) -> ApiError,
) -> Result<(StatusCode, Json<CommandAnswer>), ApiError> {
    let key = idempotency_key(headers)?;
    let mut meta = CommandMeta::new(actor).at(state.clock.now());
    if let Some(k) = &key {
        let fingerprint = serde_json::to_vec(&command).map_err(ApiError::internal)?;
        let fingerprint = hex::encode(&Sha256::digest(&fingerprint)[..16]);
        meta.correlation_id =
            event_id(shop, Some(&format!("{k}\u{0}request\u{0}{fingerprint}")), 0);
        meta.idempotency_key = Some(k.clone());
    }
    let started = std::time::Instant::now();
    let result = state.engine.execute(shop, &meta, &command).await;
    state
        .metrics
        .command(command.name(), result.is_ok(), started.elapsed());
    let executed = match result {
        Ok(e) => e,
        Err(CommandError::Rejected(r)) => return Err(rejected(r)),
        Err(e) => return Err(e.into()),
    };
    let answer = answer(state, &meta, executed, id).await?;
    let status = if answer.status == "recorded" {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(answer)))
}

async fn answer(
    state: &AppState,
    meta: &CommandMeta,
    executed: Executed,
    id: Option<String>,
) -> Result<CommandAnswer, ApiError> {
    if executed.status == AppendStatus::Recorded {
        let first = executed.first_position;
        let events = executed
            .events
            .iter()
            .enumerate()
            .map(|(i, (stream, e))| EventView {
                position: Some(first + i as u64).filter(|p| *p <= executed.position),
                stream: stream.name.to_string(),
                event_type: e.event_type().to_owned(),
                data: event_json(&e.redacted()),
            })
            .collect();
        return Ok(CommandAnswer {
            position: executed.position,
            status: "recorded".into(),
            id,
            events,
        });
    }
    // A repeat: the events of the first time, read back.
    let count = (executed.position + 1 - executed.first_position) as usize;
    let recorded = state
        .store
        .read_all(executed.first_position - 1, count)
        .await?;
    if let Some(first) = recorded.first()
        && first.correlation_id != meta.correlation_id
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used before with a different request; use a new key for a new request",
        ));
    }
    let mut events = Vec::with_capacity(recorded.len());
    for r in recorded {
        let decoded = DomainEvent::decode(&r.event_type, &r.payload).map_err(ApiError::internal)?;
        events.push(EventView {
            position: Some(r.position),
            stream: r.stream.name.to_string(),
            event_type: r.event_type.to_string(),
            data: decoded.map_or_else(|| RawValue::NULL.to_owned(), |e| event_json(&e.redacted())),
        });
    }
    Ok(CommandAnswer {
        position: executed.position,
        status: "already_recorded".into(),
        id,
        events,
    })
}

/// The `min_position` of a query string, decoded as every query
/// parameter is (form-urlencoded: `%35%34` is `54`); the first if it is
/// given more than once.
fn min_position(uri: &Uri) -> Option<String> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(uri).ok()?;
    pairs
        .into_iter()
        .find_map(|(name, value)| (name == "min_position").then_some(value))
}

/// Waits for `min_position` (a query parameter) before a read.
#[derive(Debug, Clone, Copy)]
pub struct Fresh {
    /// The position the projections had reached when the read began.
    pub position: Position,
}

impl FromRequestParts<AppState> for Fresh {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let wanted = min_position(&parts.uri)
            .map(|v| {
                v.parse::<Position>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "min_position must be a position (a whole number), not {v:?}"
                    ))
                })
            })
            .transpose()?;
        if let Some(wanted) = wanted {
            state
                .projections
                .wait_for(wanted, MIN_POSITION_WAIT_MAX)
                .await
                .map_err(|lag| {
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "projections_behind",
                        format!(
                            "{lag} (waited {} s); retry",
                            MIN_POSITION_WAIT_MAX.as_secs()
                        ),
                    )
                })?;
        }
        Ok(Fresh {
            position: state.projections.position(),
        })
    }
}
