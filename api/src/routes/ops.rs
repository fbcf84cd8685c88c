//! Operations: health, metrics, and the OpenAPI document.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: up, with the store's head, the projections' lag, and
/// the messages waiting in the outbox (of all shops: a count only).
pub async fn health(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let head = state.store.last_position().await?;
    let (position, queued) = state.projections.read(|p| (p.position, p.outbox_len()));
    Ok(axum::Json(
        json!({"status": "ok", "store_head": head, "projections_position": position, "projection_lag": head.saturating_sub(position), "outbox_queued": queued}),
    ))
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
