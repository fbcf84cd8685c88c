//! Webhook subscriptions of a shop as the API lists them: settings,
//! status, and counts of what the delivery worker recorded. Secrets are
//! never kept here (the worker reads them from the log).

use std::collections::BTreeMap;

use kedai_engine::Timestamp;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::webhook::{Trigger, WebhookStatus};
use serde::{Deserialize, Serialize};

use crate::At;

/// The last failed attempt of a subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastFailure {
    pub at: Timestamp,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub error: String,
}

/// One subscription, without its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionView {
    pub webhook_id: uuid::Uuid,
    pub name: String,
    pub url: String,
    pub triggers: Vec<Trigger>,
    pub status: WebhookStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub secret_rotated_at: Option<Timestamp>,
    /// Deliveries the receiver acknowledged (2xx).
    pub delivered: u64,
    /// Attempts that failed (each retry counts).
    pub failed_attempts: u64,
    pub last_delivered_at: Option<Timestamp>,
    pub last_failure: Option<LastFailure>,
    /// Why kedai disabled it, while it is disabled.
    pub disabled_reason: Option<String>,
}

/// A shop's subscriptions, deleted ones included (their status says so).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhooks {
    pub subscriptions: BTreeMap<uuid::Uuid, SubscriptionView>,
}

impl Webhooks {
    pub fn apply(&mut self, at: At<'_>, event: &DomainEvent) {
        if let DomainEvent::WebhookSubscribed(e) = event {
            self.subscriptions.insert(
                e.webhook_id,
                SubscriptionView {
                    webhook_id: e.webhook_id,
                    name: e.name.clone(),
                    url: e.url.clone(),
                    triggers: e.triggers.clone(),
                    status: WebhookStatus::Active,
                    created_at: e.subscribed_at,
                    updated_at: e.subscribed_at,
                    secret_rotated_at: None,
                    delivered: 0,
                    failed_attempts: 0,
                    last_delivered_at: None,
                    last_failure: None,
                    disabled_reason: None,
                },
            );
            return;
        }
        let id = match event {
            DomainEvent::WebhookPaused(e) => e.webhook_id,
            DomainEvent::WebhookResumed(e) => e.webhook_id,
            DomainEvent::WebhookDisabled(e) => e.webhook_id,
            DomainEvent::WebhookDeleted(e) => e.webhook_id,
            DomainEvent::WebhookSecretRotated(e) => e.webhook_id,
            DomainEvent::WebhookDelivered(e) => e.webhook_id,
            DomainEvent::WebhookAttemptFailed(e) => e.webhook_id,
            _ => return,
        };
        let Some(s) = self.subscriptions.get_mut(&id) else {
            return;
        };
        match event {
            DomainEvent::WebhookPaused(_) => s.status = WebhookStatus::Paused,
            DomainEvent::WebhookResumed(_) => {
                s.status = WebhookStatus::Active;
                s.disabled_reason = None;
            }
            DomainEvent::WebhookDisabled(e) => {
                s.status = WebhookStatus::Disabled;
                s.disabled_reason = Some(e.reason.clone());
            }
            DomainEvent::WebhookDeleted(_) => s.status = WebhookStatus::Deleted,
            DomainEvent::WebhookSecretRotated(e) => s.secret_rotated_at = Some(e.rotated_at),
            DomainEvent::WebhookDelivered(e) => {
                s.delivered += 1;
                s.last_delivered_at = Some(e.delivered_at);
                return;
            }
            DomainEvent::WebhookAttemptFailed(e) => {
                s.failed_attempts += 1;
                s.last_failure = Some(LastFailure {
                    at: e.failed_at,
                    attempt: e.attempt,
                    status_code: e.status_code,
                    error: e.error.clone(),
                });
                return;
            }
            _ => {}
        }
        s.updated_at = at.recorded_at;
    }

    /// Subscriptions that are not deleted, oldest first.
    pub fn list(&self) -> Vec<&SubscriptionView> {
        let mut list: Vec<&SubscriptionView> = self
            .subscriptions
            .values()
            .filter(|s| s.status != WebhookStatus::Deleted)
            .collect();
        list.sort_by_key(|s| (s.created_at, s.webhook_id));
        list
    }

    /// One subscription, unless deleted or unknown.
    pub fn get(&self, id: uuid::Uuid) -> Option<&SubscriptionView> {
        self.subscriptions
            .get(&id)
            .filter(|s| s.status != WebhookStatus::Deleted)
    }
}
