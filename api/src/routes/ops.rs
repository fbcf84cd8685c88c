//! Operations: health, metrics, and the OpenAPI document.

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: up, with the store's head, the projections' lag, and
/// the messages waiting in the outbox (of all shops: a count only). 503,
/// `"status": "failing"` and the reason, once the projections have
/// stopped following the log (an event that does not apply): reads would
/// go on answering from a state that no longer moves.
pub async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let head = state.store.last_position().await?;
    let (position, queued) = state.projections.read(|p| (p.position, p.outbox_len()));
    let mut body = json!({"status": "ok", "store_head": head, "projections_position": position, "projection_lag": head.saturating_sub(position), "outbox_queued": queued});
    let status = match state.projections.stopped() {
        None => StatusCode::OK,
        Some(why) => {
            body["status"] = json!("failing");
            body["reason"] = json!(format!("the projections stopped following the log: {why}"));
            StatusCode::SERVICE_UNAVAILABLE
        }
    };
    Ok((status, axum::Json(body)))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let head = state.store.last_position().await?;
    let body = state.metrics.render(head, state.projections.position());
    Ok((
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        body,
    ))
}

/// `GET /openapi.json`.
pub async fn openapi() -> impl IntoResponse {
    axum::Json(crate::openapi())
}
