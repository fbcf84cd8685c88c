//! Webhook subscriptions (Shoppegram): a name, a callback URL, the
//! triggers it listens to, a signing secret, and a status (active, paused,
//! disabled after failed deliveries, deleted).
//!
//! The subscription lives in its own stream (`webhook-<id>`); the outcome
//! of each delivery attempt lives in another (`webhook-<id>-deliveries`),
//! written by the delivery worker with ids derived from the delivery, so
//! recording an outcome twice records it once.
//!
//! What matches what: [`Trigger::of`] names the trigger of a domain event
//! (at most one); a subscription receives an event when it was active at
//! the event's position and lists that trigger. A delivery's id is derived
//! from (subscription, event) ([`delivery_id`]), so every redelivery of an
//! event to a subscription carries the same id and receivers can dedupe.
//!
//! Pure like the rest of the domain: the secret and the ids come in the
//! commands, the time in the [`Context`].

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Context;
use super::events::*;
use super::rejection::{Check, FieldError, Rejection};
use crate::event::Position;

/// Longest callback URL accepted.
pub const URL_LEN_MAX: usize = 2_000;
/// Longest subscription name.
pub const NAME_LEN_MAX: usize = 100;
/// Shortest and longest secret a client may choose.
pub const SECRET_LEN_MIN: usize = 16;
pub const SECRET_LEN_MAX: usize = 200;
/// Longest reason recorded when a subscription is disabled.
pub const REASON_LEN_MAX: usize = 500;

/// The ten triggers of Shoppegram's webhooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// An order is paid in full (its last payment recorded).
    OrderPaid,
    /// An order was shipped: its tracking number (AWB) entered.
    OrderShipped,
    /// A checkout was not completed in time.
    CheckoutAbandoned,
    /// A checkout became an order.
    CheckoutCompleted,
    /// A checkout's content changed.
    CheckoutUpdated,
    /// An order moved to processing.
    OrderStatusProcessing,
    /// An order was completed.
    OrderStatusCompleted,
    /// Any other change of an order: a partial payment, delivered,
    /// cancelled, return started or received, lost, refunded.
    OrderUpdated,
    /// An order is ready for pickup by the courier.
    OrderReadyForPickup,
    /// An order was packed.
    OrderPacked,
}

impl Trigger {
    pub const ALL: [Trigger; 10] = [
        Trigger::OrderPaid,
        Trigger::OrderShipped,
        Trigger::CheckoutAbandoned,
        Trigger::CheckoutCompleted,
        Trigger::CheckoutUpdated,
        Trigger::OrderStatusProcessing,
        Trigger::OrderStatusCompleted,
        Trigger::OrderUpdated,
        Trigger::OrderReadyForPickup,
        Trigger::OrderPacked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::OrderPaid => "order_paid",
            Trigger::OrderShipped => "order_shipped",
            Trigger::CheckoutAbandoned => "checkout_abandoned",
            Trigger::CheckoutCompleted => "checkout_completed",
            Trigger::CheckoutUpdated => "checkout_updated",
            Trigger::OrderStatusProcessing => "order_status_processing",
            Trigger::OrderStatusCompleted => "order_status_completed",
            Trigger::OrderUpdated => "order_updated",
            Trigger::OrderReadyForPickup => "order_ready_for_pickup",
            Trigger::OrderPacked => "order_packed",
        }
    }

    /// A trigger by its name, or a sentence naming the unknown one and
    /// listing the known.
    pub fn parse(name: &str) -> Result<Trigger, String> {
        Trigger::ALL
            .into_iter()
            .find(|t| t.as_str() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Trigger::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "unknown trigger {name:?}; the triggers are {}",
                    known.join(", ")
                )
            })
    }

    /// Whether this trigger is about a checkout (else about an order).
    pub fn is_checkout(self) -> bool {
        matches!(
            self,
            Trigger::CheckoutAbandoned | Trigger::CheckoutCompleted | Trigger::CheckoutUpdated
        )
    }

    /// The trigger a domain event fires, if any.
    pub fn of(event: &DomainEvent) -> Option<Trigger> {
        Some(match event {
            DomainEvent::OrderPaymentRecorded(e) if e.remaining.0 == 0 => Trigger::OrderPaid,
            DomainEvent::OrderShipped(_) => Trigger::OrderShipped,
            DomainEvent::OrderProcessing(_) => Trigger::OrderStatusProcessing,
            DomainEvent::OrderCompleted(_) => Trigger::OrderStatusCompleted,
            DomainEvent::OrderReadyForPickup(_) => Trigger::OrderReadyForPickup,
            DomainEvent::OrderPacked(_) => Trigger::OrderPacked,
            DomainEvent::OrderPaymentRecorded(_)
            | DomainEvent::OrderDelivered(_)
            | DomainEvent::OrderCancelled(_)
            | DomainEvent::OrderReturnStarted(_)
            | DomainEvent::OrderReturnReceived(_)
            | DomainEvent::OrderLost(_)
            | DomainEvent::OrderRefunded(_) => Trigger::OrderUpdated,
            DomainEvent::CheckoutAbandoned(_) => Trigger::CheckoutAbandoned,
            DomainEvent::CheckoutCompleted(_) => Trigger::CheckoutCompleted,
            DomainEvent::CheckoutUpdated(_) => Trigger::CheckoutUpdated,
            _ => return None,
        })
    }

    /// Event types that may fire a trigger: any other type can be skipped
    /// without decoding its payload.
    pub const EVENT_TYPES: &'static [&'static str] = &[
        "OrderPaymentRecorded",
        "OrderShipped",
        "OrderProcessing",
        "OrderCompleted",
        "OrderReadyForPickup",
        "OrderPacked",
        "OrderDelivered",
        "OrderCancelled",
        "OrderReturnStarted",
        "OrderReturnReceived",
        "OrderLost",
        "OrderRefunded",
        "CheckoutAbandoned",
        "CheckoutCompleted",
        "CheckoutUpdated",
    ];
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a subscription is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookStatus {
    /// Receives the events of its triggers.
    Active,
    /// Receives nothing until resumed; events meanwhile are not sent later.
    Paused,
    /// Stopped by kedai after a delivery failed for longer than the retry
    /// bound; resumed like a paused one.
    Disabled,
    /// Gone.
    Deleted,
}

impl WebhookStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookStatus::Active => "active",
            WebhookStatus::Paused => "paused",
            WebhookStatus::Disabled => "disabled",
            WebhookStatus::Deleted => "deleted",
        }
    }
}

impl fmt::Display for WebhookStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The id of the delivery of one event to one subscription: a UUID v8
/// from BLAKE3 of both ids, the same on every attempt and redelivery.
pub fn delivery_id(webhook_id: Uuid, event_id: Uuid) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(b"kedai webhook delivery v1");
    h.update(webhook_id.as_bytes());
    h.update(event_id.as_bytes());
    Uuid::new_v8(h.finalize().as_bytes()[..16].try_into().expect("16 bytes"))
}

/// The id of the event recording an outcome of a delivery: attempt `n`
/// failed (`n >= 1`), or (`n == 0`) the delivery succeeded. Recording the
/// same outcome again records nothing.
pub fn outcome_event_id(delivery_id: Uuid, attempt: u32, delivered: bool) -> Uuid {
    let mut h = blake3::Hasher::new();
    h.update(b"kedai webhook outcome v1");
    h.update(delivery_id.as_bytes());
    h.update(&attempt.to_le_bytes());
    h.update(&[u8::from(delivered)]);
    Uuid::new_v8(h.finalize().as_bytes()[..16].try_into().expect("16 bytes"))
}

/// Why a callback URL is refused, if it is: `http` or `https`, a host
/// (name, IPv4 or `[IPv6]`), an optional port, no credentials, no
/// fragment, printable ASCII (percent-encode the rest), at most
/// [`URL_LEN_MAX`] characters.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.len() > URL_LEN_MAX {
        return Err(format!("must be at most {URL_LEN_MAX} characters"));
    }
    let rest = if let Some(r) = url.strip_prefix("https://") {
        r
    } else if let Some(r) = url.strip_prefix("http://") {
        r
    } else {
        return Err("must start with http:// or https://".into());
    };
    if let Some(c) = url.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "must be printable ASCII without spaces (found {c:?}); percent-encode other characters"
        ));
    }
    if url.contains('#') {
        return Err("must not have a fragment (#...)".into());
    }
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..end];
    if authority.contains('@') {
        return Err("must not carry credentials (user@host)".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let close = v6.find(']').ok_or("an IPv6 host needs its closing ]")?;
        v6[..close]
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{:?} is not an IPv6 address", &v6[..close]))?;
        let after = &v6[close + 1..];
        match after.strip_prefix(':') {
            Some(p) => ("[v6]", Some(p)),
            None if after.is_empty() => ("[v6]", None),
            None => return Err("unexpected text after the IPv6 host".into()),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("must name a host".into());
    }
    if host != "[v6]" {
        check_host(host)?;
    }
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => {}
            _ => return Err(format!("port {p:?} must be a number from 1 to 65535")),
        }
    }
    Ok(())
}

fn check_host(host: &str) -> Result<(), String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Err("the host name is longer than 253 characters".into());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(format!(
                "host {host:?} is not a valid name: labels of letters, digits and '-', 1 to 63 long"
            ));
        }
    }
    Ok(())
}

/// Why a secret is refused, if it is.
pub fn check_secret(secret: &str) -> Result<(), String> {
    let len = secret.chars().count();
    if !(SECRET_LEN_MIN..=SECRET_LEN_MAX).contains(&len)
        || !secret.chars().all(|c| c.is_ascii_graphic())
    {
        return Err(format!(
            "must be {SECRET_LEN_MIN} to {SECRET_LEN_MAX} printable ASCII characters without spaces"
        ));
    }
    Ok(())
}

/// A subscription as its stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Webhook {
    pub subscribed: Option<WebhookSubscribed>,
    pub status: Option<WebhookStatus>,
    /// The current secret (the first, or the last rotated to).
    pub secret: String,
}

impl Webhook {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::WebhookSubscribed(e) => {
                self.subscribed = Some((**e).clone());
                self.secret = e.secret.clone();
                self.status = Some(WebhookStatus::Active);
            }
            DomainEvent::WebhookPaused(_) => self.status = Some(WebhookStatus::Paused),
            DomainEvent::WebhookResumed(_) => self.status = Some(WebhookStatus::Active),
            DomainEvent::WebhookDisabled(_) => self.status = Some(WebhookStatus::Disabled),
            DomainEvent::WebhookDeleted(_) => self.status = Some(WebhookStatus::Deleted),
            DomainEvent::WebhookSecretRotated(e) => self.secret = e.secret.clone(),
            _ => {}
        }
    }

    /// Whether it exists and is not deleted.
    pub fn exists(&self) -> bool {
        matches!(self.status, Some(s) if s != WebhookStatus::Deleted)
    }
}

/// Subscribe a callback URL to triggers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateWebhook {
    pub webhook_id: Uuid,
    pub name: String,
    pub url: String,
    pub triggers: Vec<Trigger>,
    /// The signing secret (the API makes one when the client gives none).
    pub secret: String,
}

impl CreateWebhook {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.text(&self.name, "name", true, NAME_LEN_MAX);
        if let Err(why) = check_url(&self.url) {
            c.push(FieldError::new("url", why));
        }
        if let Err(why) = check_secret(&self.secret) {
            c.push(FieldError::new("secret", why));
        }
        c.that(
            !self.triggers.is_empty(),
            "triggers",
            "name at least one trigger",
        );
        for (i, t) in self.triggers.iter().enumerate() {
            c.that(
                !self.triggers[..i].contains(t),
                format!("triggers[{i}]"),
                format!("{t} is listed twice"),
            );
        }
        c.finish()
    }
}

/// A change to an existing subscription.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WebhookChange {
    Pause,
    Resume,
    Delete,
    RotateSecret {
        secret: String,
    },
    /// Sent by the delivery worker when a delivery failed past the retry
    /// bound.
    Disable {
        reason: String,
        delivery_id: Uuid,
        event_position: Position,
    },
}

impl WebhookChange {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        match self {
            WebhookChange::RotateSecret { secret } => {
                if let Err(why) = check_secret(secret) {
                    c.push(FieldError::new("secret", why));
                }
            }
            WebhookChange::Disable { reason, .. } => {
                c.text(reason, "reason", true, REASON_LEN_MAX);
            }
            _ => {}
        }
        c.finish()
    }
}

pub fn create(
    webhook: &Webhook,
    cmd: &CreateWebhook,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    if webhook.status.is_some() {
        return Err(Rejection::WebhookExists {
            webhook_id: cmd.webhook_id,
        });
    }
    Ok(vec![
        WebhookSubscribed {
            webhook_id: cmd.webhook_id,
            name: cmd.name.trim().to_owned(),
            url: cmd.url.clone(),
            triggers: cmd.triggers.clone(),
            secret: cmd.secret.clone(),
            subscribed_at: ctx.now,
        }
        .into(),
    ])
}

pub fn change(
    webhook: &Webhook,
    webhook_id: Uuid,
    cmd: &WebhookChange,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    let status = match webhook.status {
        Some(s) if s != WebhookStatus::Deleted => s,
        _ => return Err(Rejection::UnknownWebhook { webhook_id }),
    };
    let at = ctx.now;
    let event: DomainEvent = match (cmd, status) {
        (WebhookChange::Pause, WebhookStatus::Paused) => return Ok(Vec::new()),
        (WebhookChange::Pause, _) => WebhookPaused {
            webhook_id,
            paused_at: at,
        }
        .into(),
        (WebhookChange::Resume, WebhookStatus::Active) => return Ok(Vec::new()),
        (WebhookChange::Resume, _) => WebhookResumed {
            webhook_id,
            resumed_at: at,
        }
        .into(),
        (WebhookChange::Delete, _) => WebhookDeleted {
            webhook_id,
            deleted_at: at,
        }
        .into(),
        (WebhookChange::RotateSecret { secret }, _) => {
            if *secret == webhook.secret {
                return Ok(Vec::new());
            }
            WebhookSecretRotated {
                webhook_id,
                secret: secret.clone(),
                rotated_at: at,
            }
            .into()
        }
        // Only an active subscription is disabled: a pause or a delete that
        // came first wins.
        (WebhookChange::Disable { .. }, s) if s != WebhookStatus::Active => return Ok(Vec::new()),
        (
            WebhookChange::Disable {
                reason,
                delivery_id,
                event_position,
            },
            _,
        ) => WebhookDisabled {
            webhook_id,
            reason: reason.trim().to_owned(),
            delivery_id: *delivery_id,
            event_position: *event_position,
            disabled_at: at,
        }
        .into(),
    };
    Ok(vec![event])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, Role, Timestamp};
    use proptest::prelude::*;

    fn ctx(t: i64) -> Context {
        Context {
            now: Timestamp(t),
            actor: Actor::new(Role::Owner, "key:test"),
        }
    }

    fn create_cmd() -> CreateWebhook {
        CreateWebhook {
            webhook_id: Uuid::from_u128(7),
            name: " Telegram ".into(),
            url: "https://hooks.example.com/kedai?x=1".into(),
            triggers: vec![Trigger::OrderPaid, Trigger::CheckoutCompleted],
            secret: "whsec_0123456789abcdef".into(),
        }
    }

    fn fold(events: &[DomainEvent]) -> Webhook {
        let mut w = Webhook::default();
        events.iter().for_each(|e| w.evolve(e));
        w
    }

    #[test]
    fn urls_are_checked() {
        for good in [
            "http://127.0.0.1:8080/hook",
            "https://example.com",
            "https://a-b.example.co.id/path/x?y=1&z=%20",
            "http://[::1]:9000/",
            "https://EXAMPLE.com.",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for (bad, says) in [
            ("ftp://example.com", "http:// or https://"),
            ("example.com", "http:// or https://"),
            ("https://", "host"),
            ("https:///path", "host"),
            ("https://user:pw@example.com", "credentials"),
            ("https://example.com/a b", "printable ASCII"),
            ("https://exämple.com", "printable ASCII"),
            ("https://example.com/#top", "fragment"),
            ("https://example.com:0", "port"),
            ("https://example.com:70000", "port"),
            ("https://example.com:+80", "port"),
            ("https://-bad.example.com", "not a valid name"),
            ("https://a..b", "not a valid name"),
            ("https://under_score.com", "not a valid name"),
            ("http://[::1", "closing ]"),
            ("http://[zz::1]/", "IPv6"),
        ] {
            let why = check_url(bad).expect_err(bad);
            assert!(why.contains(says), "{bad}: {why}");
        }
        let long = format!("https://example.com/{}", "a".repeat(URL_LEN_MAX));
        assert!(check_url(&long).unwrap_err().contains("at most"));
    }

    #[test]
    fn triggers_parse_by_name_and_unknown_ones_are_named() {
        for t in Trigger::ALL {
            assert_eq!(Trigger::parse(t.as_str()), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.as_str());
        }
        let why = Trigger::parse("order_teleported").unwrap_err();
        assert!(why.contains("\"order_teleported\"") && why.contains("order_paid"));
    }

    #[test]
    fn events_fire_their_triggers() {
        use crate::domain::ids::{OrderId, PaymentId};
        use crate::domain::money::Money;
        use crate::domain::order::PaymentMethod;
        let order_id = OrderId(Uuid::from_u128(1));
        let payment = |remaining: i64| {
            DomainEvent::OrderPaymentRecorded(OrderPaymentRecorded {
                order_id,
                payment_id: PaymentId(Uuid::from_u128(2)),
                amount: Money(10),
                method: PaymentMethod::BankTransfer,
                bank_account: None,
                paid_at: Timestamp(0),
                paid_total: Money(10),
                remaining: Money(remaining),
            })
        };
        assert_eq!(Trigger::of(&payment(0)), Some(Trigger::OrderPaid));
        assert_eq!(Trigger::of(&payment(5)), Some(Trigger::OrderUpdated));
        let shipped = DomainEvent::OrderShipped(OrderShipped {
            order_id,
            awb: "JNE1".into(),
        });
        assert_eq!(Trigger::of(&shipped), Some(Trigger::OrderShipped));
        let packed = DomainEvent::OrderPacked(OrderPacked { order_id });
        assert_eq!(Trigger::of(&packed), Some(Trigger::OrderPacked));
        let delivered = DomainEvent::OrderDelivered(OrderDelivered { order_id });
        assert_eq!(Trigger::of(&delivered), Some(Trigger::OrderUpdated));
        let abandoned = DomainEvent::CheckoutAbandoned(CheckoutAbandoned {
            checkout_id: Uuid::from_u128(3),
            abandoned_at: Timestamp(0),
            last_activity_at: Timestamp(0),
        });
        assert_eq!(Trigger::of(&abandoned), Some(Trigger::CheckoutAbandoned));
        let paused = DomainEvent::WebhookPaused(WebhookPaused {
            webhook_id: Uuid::from_u128(4),
            paused_at: Timestamp(0),
        });
        assert_eq!(Trigger::of(&paused), None);
        for e in [payment(0), shipped, packed, delivered, abandoned] {
            assert!(Trigger::EVENT_TYPES.contains(&e.event_type()), "{e:?}");
        }
    }

    #[test]
    fn create_validates_every_field() {
        assert_eq!(create_cmd().validate(), Ok(()));
        let bad = CreateWebhook {
            name: " ".into(),
            url: "mailto:x@example.com".into(),
            triggers: vec![Trigger::OrderPaid, Trigger::OrderPaid],
            secret: "short".into(),
            ..create_cmd()
        };
        let fields: Vec<String> = bad
            .validate()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["name", "url", "secret", "triggers[1]"]);
        let none = CreateWebhook {
            triggers: vec![],
            ..create_cmd()
        };
        assert_eq!(none.validate().unwrap_err()[0].field, "triggers");
    }

    #[test]
    fn a_subscription_lives_pauses_resumes_rotates_and_is_deleted() {
        let id = Uuid::from_u128(7);
        let created = create(&Webhook::default(), &create_cmd(), &ctx(1)).unwrap();
        let DomainEvent::WebhookSubscribed(s) = &created[0] else {
            panic!("{created:?}")
        };
        assert_eq!(s.name, "Telegram");
        let mut events = created.clone();
        let w = fold(&events);
        assert_eq!(w.status, Some(WebhookStatus::Active));
        assert_eq!(
            create(&w, &create_cmd(), &ctx(2)),
            Err(Rejection::WebhookExists { webhook_id: id })
        );
        // Resuming an active one and pausing a paused one change nothing.
        assert_eq!(change(&w, id, &WebhookChange::Resume, &ctx(2)), Ok(vec![]));
        events.extend(change(&w, id, &WebhookChange::Pause, &ctx(2)).unwrap());
        let w = fold(&events);
        assert_eq!(w.status, Some(WebhookStatus::Paused));
        assert_eq!(change(&w, id, &WebhookChange::Pause, &ctx(3)), Ok(vec![]));
        // A paused one is not disabled by the worker.
        let disable = WebhookChange::Disable {
            reason: "HTTP 500 for 24 h".into(),
            delivery_id: Uuid::from_u128(9),
            event_position: 42,
        };
        assert_eq!(change(&w, id, &disable, &ctx(3)), Ok(vec![]));
        events.extend(change(&w, id, &WebhookChange::Resume, &ctx(3)).unwrap());
        let w = fold(&events);
        assert_eq!(w.status, Some(WebhookStatus::Active));
        events.extend(change(&w, id, &disable, &ctx(4)).unwrap());
        let w = fold(&events);
        assert_eq!(w.status, Some(WebhookStatus::Disabled));
        // A disabled one is resumed like a paused one.
        events.extend(change(&w, id, &WebhookChange::Resume, &ctx(5)).unwrap());
        let rotate = WebhookChange::RotateSecret {
            secret: "whsec_another_secret_1".into(),
        };
        let w = fold(&events);
        events.extend(change(&w, id, &rotate, &ctx(6)).unwrap());
        let w = fold(&events);
        assert_eq!(w.secret, "whsec_another_secret_1");
        assert_eq!(change(&w, id, &rotate, &ctx(7)), Ok(vec![]), "same secret");
        events.extend(change(&w, id, &WebhookChange::Delete, &ctx(8)).unwrap());
        let w = fold(&events);
        assert!(!w.exists());
        assert_eq!(
            change(&w, id, &WebhookChange::Pause, &ctx(9)),
            Err(Rejection::UnknownWebhook { webhook_id: id })
        );
        assert_eq!(
            create(&w, &create_cmd(), &ctx(9)),
            Err(Rejection::WebhookExists { webhook_id: id }),
            "a deleted id is not reused"
        );
        assert_eq!(
            change(&Webhook::default(), id, &WebhookChange::Delete, &ctx(9)),
            Err(Rejection::UnknownWebhook { webhook_id: id })
        );
    }

    #[test]
    fn delivery_ids_are_stable_and_distinct() {
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let e = Uuid::from_u128(3);
        assert_eq!(delivery_id(a, e), delivery_id(a, e));
        assert_ne!(delivery_id(a, e), delivery_id(b, e));
        assert_ne!(delivery_id(a, e), delivery_id(e, a));
        let d = delivery_id(a, e);
        assert_ne!(outcome_event_id(d, 1, false), outcome_event_id(d, 2, false));
        assert_ne!(outcome_event_id(d, 0, true), outcome_event_id(d, 0, false));
    }

    fn any_change() -> impl Strategy<Value = WebhookChange> {
        prop_oneof![
            Just(WebhookChange::Pause),
            Just(WebhookChange::Resume),
            Just(WebhookChange::Delete),
            "[a-z0-9]{16,20}".prop_map(|secret| WebhookChange::RotateSecret { secret }),
            Just(WebhookChange::Disable {
                reason: "gave up".into(),
                delivery_id: Uuid::from_u128(1),
                event_position: 1,
            }),
        ]
    }

    proptest! {
        /// Whatever the sequence of changes: the status follows the rules,
        /// a no-op records nothing, and a deleted subscription refuses
        /// every change.
        #[test]
        fn any_sequence_of_changes_keeps_the_rules(changes in proptest::collection::vec(any_change(), 0..30)) {
            let id = Uuid::from_u128(7);
            let mut w = fold(&create(&Webhook::default(), &create_cmd(), &ctx(0)).unwrap());
            for (i, c) in changes.iter().enumerate() {
                let before = w.status.unwrap();
                let secret_before = w.secret.clone();
                let result = change(&w, id, c, &ctx(i as i64 + 1));
                if before == WebhookStatus::Deleted {
                    prop_assert_eq!(result, Err(Rejection::UnknownWebhook { webhook_id: id }));
                    continue;
                }
                let events = result.unwrap();
                prop_assert!(events.len() <= 1);
                events.iter().for_each(|e| w.evolve(e));
                let after = w.status.unwrap();
                let expected = match c {
                    WebhookChange::Pause => WebhookStatus::Paused,
                    WebhookChange::Resume => WebhookStatus::Active,
                    WebhookChange::Delete => WebhookStatus::Deleted,
                    WebhookChange::RotateSecret { .. } => before,
                    WebhookChange::Disable { .. } if before == WebhookStatus::Active => WebhookStatus::Disabled,
                    WebhookChange::Disable { .. } => before,
                };
                prop_assert_eq!(after, expected);
                let unchanged = match c {
                    WebhookChange::RotateSecret { secret } => *secret == secret_before,
                    _ => before == after,
                };
                prop_assert_eq!(events.is_empty(), unchanged);
            }
        }

        /// Generated well-formed URLs pass; inserting a space or a '#'
        /// anywhere after the scheme makes them fail.
        #[test]
        fn url_check_accepts_well_formed_and_refuses_damaged(
            https in any::<bool>(),
            labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 1..4),
            port in proptest::option::of(1u16..),
            path in "(/[a-zA-Z0-9._~%-]{0,10}){0,3}",
            at in any::<prop::sample::Index>(),
            bad in prop_oneof![Just(' '), Just('#'), Just('\n'), Just('é')],
        ) {
            let scheme = if https { "https" } else { "http" };
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let url = format!("{scheme}://{}{port}{path}", labels.join("."));
            prop_assert_eq!(check_url(&url), Ok(()), "{}", url);
            let prefix = scheme.len() + 3;
            let i = prefix + at.index(url.len() - prefix + 1);
            let mut damaged = url.clone();
            damaged.insert(i, bad);
            prop_assert!(check_url(&damaged).is_err(), "{}", damaged);
        }
    }
}
