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
use kedai_engine::Timestamp;
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
    page_size_within(limit, PAGE_DEFAULT, PAGE_MAX)
}

/// A page size from a query, `default` when not given; 0 and more than
/// `max` are refused (400), never clamped.
pub fn page_size_within(
    limit: Option<usize>,
    default: usize,
    max: usize,
) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(0) => Err(ApiError::bad_request("limit must be at least 1")),
        Some(n) if n > max => Err(ApiError::bad_request(format!(
            "limit must be at most {max}"
        ))),
        Some(n) => Ok(n),
    }
}

/// Checks a time range from a query (`from` included, `to` excluded):
/// `from` after `to` is refused (400) instead of answered with an empty
/// list; `from` equal to `to` is an empty range.
pub fn time_range(from: Option<Timestamp>, to: Option<Timestamp>) -> Result<(), ApiError> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => Err(ApiError::bad_request(format!(
            "from ({from}) must not be after to ({to})"
        ))),
        _ => Ok(()),
    }
}

/// The first and last year a date in a query may have.
const DATE_YEARS: std::ops::RangeInclusive<i32> = 1970..=9999;

/// A date (`YYYY-MM-DD`) range from a query: `from` and `to` both
/// included; defaults to the last 30 days up to `today`. Dates outside the
/// years 1970 to 9999 are refused (400), so none of the arithmetic on
/// them can overflow.
pub fn date_range(
    from: Option<&str>,
    to: Option<&str>,
    today: chrono::NaiveDate,
) -> Result<(chrono::NaiveDate, chrono::NaiveDate), ApiError> {
    use chrono::Datelike;
    let parse = |name: &str, v: &str| {
        let date = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| {
            ApiError::bad_request(format!("{name} must be a date as YYYY-MM-DD, not {v:?}"))
        })?;
        if !DATE_YEARS.contains(&date.year()) {
            return Err(ApiError::bad_request(format!(
                "{name} must be a date from {}-01-01 to {}-12-31, not {v:?}",
                DATE_YEARS.start(),
                DATE_YEARS.end()
            )));
        }
        Ok(date)
    };
    let to = to.map(|v| parse("to", v)).transpose()?.unwrap_or(today);
    let from = match from {
        Some(v) => parse("from", v)?,
        None => to
            .checked_sub_signed(chrono::Duration::days(29))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "to ({to}) is too early to count 30 days back from; give from"
                ))
            })?,
    };
    if from > to {
        return Err(ApiError::bad_request(format!(
            "from ({from}) must not be after to ({to})"
        )));
    }
    if (to - from).num_days() > 3_660 {
        return Err(ApiError::bad_request("a range is at most ten years"));
    }
    Ok((from, to))
}
