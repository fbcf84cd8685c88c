//! The v1 routes, one module per area, and what they share: turning a JSON
//! body into a command (with server-made ids filled in) and paging
//! parameters.

pub mod analytics;
pub mod catalog;
pub mod chat;
pub mod events;
pub mod money;
pub mod ops;
pub mod orders;
pub mod shops;
pub mod stock;
pub mod webhooks;

use axum::http::{HeaderMap, StatusCode};
use kedai_engine::command::Command;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::auth::Caller;
use crate::commands::{CommandAnswer, idempotency_key, new_id, run};
use crate::error::{ApiError, Json};
use crate::limits::{PAGE_DEFAULT, PAGE_MAX};
use crate::state::AppState;

/// What a command route answers.
pub type Answer = Result<(StatusCode, Json<CommandAnswer>), ApiError>;

/// Runs a command that creates an entity: the body's `id_field` is filled
/// with an id the server makes for `purpose` (derived from the
/// Idempotency-Key, so a retry names the same entity) unless the client
/// sent one, the body is decoded into `C`, and `command` turns it into the
/// command and the id the answer names.
pub async fn create<C, I>(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Value,
    purpose: &str,
    id_field: &str,
    command: impl FnOnce(C) -> (I, Command),
) -> Answer
where
    C: DeserializeOwned,
    I: ToString,
{
    let id = new_id(caller.shop, idempotency_key(headers)?.as_deref(), purpose);
    let (id, command) = command(body_as(body, &[(id_field, id)])?);
    run(state, caller, headers, command, Some(id.to_string())).await
}

/// Decodes a body into `T`, after filling `field` with `id` when the
/// client did not send it. Errors name the field (serde's words).
pub fn body_as<T: DeserializeOwned>(
    mut body: Value,
    filled: &[(&str, uuid::Uuid)],
) -> Result<T, ApiError> {
    if let Value::Object(map) = &mut body {
        for (field, id) in filled {
            map.entry(field.to_string())
                .or_insert_with(|| Value::String(id.to_string()));
        }
    } else {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            "the body must be a JSON object",
        ));
    }
    serde_json::from_value(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!("the body does not match what this endpoint takes: {e}"),
        )
    })
}

/// A page size from a query (default and maximum in `limits`).
pub fn page_size(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(PAGE_DEFAULT),
        Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
        Some(n) if n > PAGE_MAX => Err(ApiError::bad_request(format!(
            "limit must be at most {PAGE_MAX}"
        ))),
        Some(n) => Ok(n),
    }
}

/// A date (`YYYY-MM-DD`) range from a query: `from` and `to` both
/// included; defaults to the last 30 days up to `today`.
pub fn date_range(
    from: Option<&str>,
    to: Option<&str>,
    today: chrono::NaiveDate,
) -> Result<(chrono::NaiveDate, chrono::NaiveDate), ApiError> {
    let parse = |name: &str, v: &str| {
        chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request(format!("{name} must be a date as YYYY-MM-DD, not {v:?}"))
        })
    };
    let to = to.map(|v| parse("to", v)).transpose()?.unwrap_or(today);
    let from = from
        .map(|v| parse("from", v))
        .transpose()?
        .unwrap_or(to - chrono::Duration::days(29));
    if from > to {
        return Err(ApiError::bad_request("from must not be after to"));
    }
    if (to - from).num_days() > 3_660 {
        return Err(ApiError::bad_request("a range is at most ten years"));
    }
    Ok((from, to))
}
