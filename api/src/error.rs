//! Errors as `application/problem+json` (RFC 9457), one type for the whole
//! API, and the JSON body extractor whose rejections have the same shape.
//!
//! Validation errors carry a field map (`errors: {field: [messages]}`);
//! business rejections their stable `code` and sentence; infrastructure
//! failures are logged in full and answered with a generic 5xx that leaks
//! nothing.

use std::collections::BTreeMap;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, HeaderValue};
use axum::response::{IntoResponse, Response};
use kedai_engine::command::CommandError;
use kedai_engine::domain::{FieldError, Rejection};
use kedai_engine::store::StoreError;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A problem detail.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` plus `code`).
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Stable, machine-readable kind (e.g. `insufficient_stock`).
    pub code: String,
    /// For validation errors: what is wrong with which field.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, Vec<String>>,
}

/// Every error the API answers with.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: BTreeMap<String, Vec<String>>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            detail: detail.into(),
            errors: BTreeMap::new(),
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", detail)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", what)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, code, detail)
    }

    /// A field map of validation errors.
    pub fn invalid(fields: Vec<FieldError>) -> Self {
        let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in fields {
            errors.entry(f.field).or_default().push(f.message);
        }
        let detail = format!(
            "{} field(s) are invalid: {}",
            errors.len(),
            errors.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            detail,
            errors,
        }
    }

    /// An internal failure: logged in full, answered without detail.
    pub fn internal(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "something went wrong on our side; it was logged",
        )
    }

    /// The store cannot take writes or answer reads now.
    pub fn unavailable(what: impl std::fmt::Display) -> Self {
        tracing::error!(error = %what, "store unavailable");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the event store is unavailable; retry later",
        )
    }
}

/// The HTTP status of a business rejection: 404 for what does not exist,
/// 409 for what conflicts with the current state, 422 for the rest.
pub fn rejection_status(r: &Rejection) -> StatusCode {
    use Rejection::*;
    if r.is_not_found() {
        return StatusCode::NOT_FOUND;
    }
    match r {
        ShopAlreadyExists
        | WarehouseExists { .. }
        | ProductExists { .. }
        | SkuTaken { .. }
        | CustomerExists { .. }
        | OrderExists { .. }
        | WithdrawalExists { .. }
        | ExpenseExists { .. }
        | CheckoutExists { .. }
        | KeyExists { .. }
        | WebhookExists { .. }
        | WarehouseNameTaken { .. }
        | InsufficientStock { .. }
        | IllegalTransition { .. }
        | IllegalWithdrawalTransition { .. }
        | OrderAlreadyPaid { .. }
        | CheckoutClosed { .. }
        | InsufficientBalance { .. }
        | NothingToSettle { .. } => StatusCode::CONFLICT,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError::new(rejection_status(&r), r.code(), r.to_string())
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Invalid(fields) => ApiError::invalid(fields),
            CommandError::Rejected(r) => r.into(),
            CommandError::Conflict(why) => ApiError::conflict("conflict", why),
            CommandError::Store(s) => s.into(),
            CommandError::Corrupt(why) => ApiError::internal(why),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidRequest(why) => ApiError::bad_request(why),
            StoreError::WrongExpectedVersion { .. } | StoreError::PartlyRecorded { .. } => {
                ApiError::conflict("conflict", e.to_string())
            }
            StoreError::Unavailable(_) | StoreError::ReadOnly | StoreError::Locked { .. } => {
                ApiError::unavailable(e)
            }
            StoreError::Io { .. } | StoreError::Corrupt { .. } | StoreError::ImportRefused(_) => {
                ApiError::internal(e)
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error").to_owned();
        let problem = Problem {
            kind: format!("https://kedai.dev/problems/{}", self.code),
            title,
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code.to_owned(),
            errors: self.errors,
        };
        let mut response = (self.status, axum::Json(problem)).into_response();
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

/// A JSON body whose rejections are problems: malformed JSON and wrong
/// types name the place (`line 1, column 14: invalid type ...`), a missing
/// content type answers 415, a body over the limit 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

/// An optional JSON body: absent when the request has no content type and
/// no length (`POST /v1/orders/{id}/pack` needs no body).
impl<T: DeserializeOwned, S: Send + Sync> axum::extract::OptionalFromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Option<Self>, Self::Rejection> {
        let headers = req.headers();
        let empty = headers.get(CONTENT_TYPE).is_none()
            && headers
                .get(axum::http::header::CONTENT_LENGTH)
                .is_none_or(|l| l.as_bytes() == b"0");
        if empty {
            return Ok(None);
        }
        <Json<T> as FromRequest<S>>::from_request(req, state)
            .await
            .map(Some)
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::JsonDataError(e) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            format!(
                "the body does not match what this endpoint takes: {}",
                source_text(&e)
            ),
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {}", source_text(&e)),
        ),
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with the header Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the body is larger than {} bytes",
                    crate::limits::BODY_BYTES_MAX
                ),
            )
        }
        other => ApiError::new(other.status(), "bad_body", other.body_text()),
    }
}

/// The innermost error text (serde's, with line and column).
fn source_text(e: &dyn std::error::Error) -> String {
    let mut inner: &dyn std::error::Error = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// Query parameters whose rejections are problems naming the parameter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("the query string is invalid: {}", source_text(&e)),
            )),
            Err(other) => Err(ApiError::new(
                other.status(),
                "invalid_query",
                other.body_text(),
            )),
        }
    }
}

/// Path parameters whose rejections are problems (e.g. an id that is not a
/// UUID).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_path",
                format!("a path parameter is invalid: {}", e.body_text()),
            )),
            Err(other) => Err(ApiError::new(
                other.status(),
                "invalid_path",
                other.body_text(),
            )),
        }
    }
}
