//! API keys of a shop: issued with a role, revoked. Only a key's hash is
//! ever recorded (the HTTP edge makes the secret, shows it once, and hashes
//! it); the keys live in the log like everything else, so every node of a
//! cluster knows them and a restart loses none.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Context;
use super::events::*;
use super::rejection::{Check, FieldError, Rejection};
use crate::event::{Role, Timestamp};

/// A key as the shop's key stream knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub role: Role,
    pub label: String,
    pub hash: String,
    pub issued_at: Timestamp,
    pub revoked: bool,
}

/// A shop's keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keys {
    pub keys: BTreeMap<uuid::Uuid, KeyInfo>,
}

impl Keys {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::ApiKeyIssued(e) => {
                self.keys.insert(
                    e.key_id,
                    KeyInfo {
                        role: e.role,
                        label: e.label.clone(),
                        hash: e.hash.clone(),
                        issued_at: e.issued_at,
                        revoked: false,
                    },
                );
            }
            DomainEvent::ApiKeyRevoked(e) => {
                if let Some(k) = self.keys.get_mut(&e.key_id) {
                    k.revoked = true;
                }
            }
            _ => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueKey {
    pub key_id: uuid::Uuid,
    pub role: Role,
    pub label: String,
    /// SHA-256 of the secret, as 64 hexadecimal digits.
    pub hash: String,
}

impl IssueKey {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.text(&self.label, "label", false, 100)
            .that(
                matches!(
                    self.role,
                    Role::Owner | Role::Staff | Role::Auditor | Role::Analyst
                ),
                "role",
                "must be owner, staff, auditor or analyst",
            )
            .that(
                self.hash.len() == 64 && self.hash.chars().all(|c| c.is_ascii_hexdigit()),
                "hash",
                "must be 64 hexadecimal digits",
            );
        c.finish()
    }
}

pub fn issue(keys: &Keys, cmd: &IssueKey, ctx: &Context) -> Result<Vec<DomainEvent>, Rejection> {
    if keys.keys.contains_key(&cmd.key_id) {
        return Err(Rejection::KeyExists { key_id: cmd.key_id });
    }
    Ok(vec![
        ApiKeyIssued {
            key_id: cmd.key_id,
            role: cmd.role,
            label: cmd.label.trim().to_owned(),
            hash: cmd.hash.to_lowercase(),
            issued_at: ctx.now,
        }
        .into(),
    ])
}

pub fn revoke(
    keys: &Keys,
    key_id: uuid::Uuid,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    match keys.keys.get(&key_id) {
        None => Err(Rejection::UnknownKey { key_id }),
        Some(k) if k.revoked => Ok(Vec::new()),
        Some(_) => Ok(vec![
            ApiKeyRevoked {
                key_id,
                revoked_at: ctx.now,
            }
            .into(),
        ]),
    }
}
