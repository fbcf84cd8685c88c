//! Who is calling: `Authorization: Bearer <key>`. A key belongs to one shop
//! and has a role (owner, staff, auditor, analyst); only the SHA-256 of a
//! key is ever stored (as an event, so every node knows it). The operator
//! token (from `KEDAI_OPERATOR_TOKEN` or generated into the data directory
//! on first start) creates shops and does nothing else.
//!
//! Every read and write is scoped to the caller's shop: another shop's ids
//! are simply not found (404), the same answer as ids that do not exist.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use kedai_engine::{Role, ShopId};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::limits::KEY_CATCH_UP_WAIT;
use crate::state::AppState;

/// Prefix of every shop key (helps secret scanners find leaked keys).
pub const KEY_PREFIX: &str = "kedai_sk_";

/// SHA-256 of a secret, as 64 hexadecimal digits.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A new random key secret: the prefix and 32 random bytes in hex.
pub fn new_secret() -> String {
    random_secret(KEY_PREFIX)
}

/// `prefix` and 32 random bytes (two random UUIDs' bytes) in hex.
pub fn random_secret(prefix: &str) -> String {
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    format!(
        "{prefix}{}{}",
        hex::encode(a.as_bytes()),
        hex::encode(b.as_bytes())
    )
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let header = parts
        .headers
        .get(AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("send your key as Authorization: Bearer <key>"))?;
    let text = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
    text.strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::unauthorized("the Authorization header must be Bearer <key>"))
}

/// A caller with a shop key.
#[derive(Debug, Clone)]
pub struct Caller {
    pub shop: ShopId,
    pub role: Role,
    pub key_id: uuid::Uuid,
}

impl Caller {
    /// Refuses roles not in `allowed`.
    pub fn require(&self, allowed: &[Role]) -> Result<(), ApiError> {
        if allowed.contains(&self.role) {
            return Ok(());
        }
        let names: Vec<&str> = allowed.iter().map(|r| r.as_str()).collect();
        Err(ApiError::forbidden(format!(
            "this needs a key of role {}; yours is {}",
            names.join(" or "),
            self.role
        )))
    }

    /// The actor recorded on the caller's commands.
    pub fn actor(&self) -> kedai_engine::Actor {
        kedai_engine::Actor::new(self.role, format!("key:{}", self.key_id))
    }
}

/// Roles that may issue commands.
pub const WRITERS: &[Role] = &[Role::Owner, Role::Staff];
/// Roles that may read projections.
pub const READERS: &[Role] = &[Role::Owner, Role::Staff, Role::Analyst];
/// Roles that may read events and history.
pub const AUDITORS: &[Role] = &[Role::Owner, Role::Auditor];
/// The shop's owner only.
pub const OWNER: &[Role] = &[Role::Owner];

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let hash = hash_secret(bearer(parts)?);
        if hash == state.operator_token_hash {
            return Err(ApiError::forbidden(
                "the operator token creates shops only; use a key of the shop",
            ));
        }
        let lookup = |state: &AppState| {
            state.read(|p| {
                p.key(&hash).map(|k| Caller {
                    shop: k.shop,
                    role: k.role,
                    key_id: k.key_id,
                })
            })
        };
        if let Some(caller) = lookup(state) {
            return Ok(caller);
        }
        // A key made a moment ago (through this node or another) may not be
        // in the projections yet: wait until they reach the store's head,
        // then look again. Again also when there was no need to wait: they
        // may have reached it between the look-up above and reading the
        // head.
        let head = state.store.last_position().await?;
        let _ = state.projections.wait_for(head, KEY_CATCH_UP_WAIT).await;
        if let Some(caller) = lookup(state) {
            return Ok(caller);
        }
        Err(ApiError::unauthorized("unknown or revoked key"))
    }
}

/// The operator (creates shops).
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let hash = hash_secret(bearer(parts)?);
        // Both sides are hashes of the same length: comparing them reveals
        // nothing about the token.
        if hash == state.operator_token_hash {
            Ok(Operator)
        } else {
            Err(ApiError::unauthorized(
                "creating shops needs the operator token",
            ))
        }
    }
}
