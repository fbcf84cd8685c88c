//! The body of a delivery: Shoppegram's `checkout` object (DOMAIN.md
//! "Webhooks"), built from the entity's events up to the event delivered,
//! so every redelivery of an event has the same body, byte for byte.
//!
//! ```json
//! {
//!   "id": "<delivery id>",
//!   "trigger": "order_shipped",
//!   "shop_id": "<shop id>",
//!   "event": {"id": "<event id>", "type": "OrderShipped", "position": 1234,
//!             "stream": "order-<id>", "recorded_at": "2025-12-12T03:04:05.000000Z"},
//!   "checkout": {
//!     "id": "<checkout id, or the order id>", "order_id": "<order id or null>",
//!     "status": "open|completed|abandoned (checkouts) or the order's status",
//!     "domain": "toko.example.com or null", "url": "https://toko.example.com or null",
//!     "currency": "IDR", "total": 114000, "shipping": 14000, "rate": "JNE REG",
//!     "created_at": "...", "completed_at": "... or null", "abandoned_at": "... or null",
//!     "items": [{"product": {"name": "Batik Tulis", "sku": "BATIK-MERAH"},
//!                "name": "merah", "currency": "IDR", "price": 100000,
//!                "quantity": 1, "subtotal": 100000}],
//!     "customer": {"first_name": "Siti", "last_name": "Rahma", "phone": "6281234567890", "email": ""},
//!     "shipping_address": {"first_name": "Siti", "last_name": "Rahma", "phone": "...", "email": "",
//!                          "address1": "...", "address2": "...", "zip": "...", "city": "...", "state": "..."}
//!   },
//!   "order": {"id": "...", "status": "shipped", "channel": "SHOPEE", "awb": "JNE777",
//!             "courier": "JNE", "service": "REG", "cod": true, "total": 114000,
//!             "paid_total": 0, "refunded_total": 0}
//! }
//! ```
//!
//! Amounts are integers in the currency's minor unit (rupiah, sen), as
//! everywhere in the API. `order` is `null` for checkout triggers that
//! have no order yet.

use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::checkout::{Checkout, CheckoutStatus};
use kedai_engine::domain::money::Currency;
use kedai_engine::domain::order::Order;
use kedai_engine::store::READ_EVENTS_MAX;
use kedai_engine::{EventStore, StoreError, StreamId, Timestamp};
use serde_json::{Value, json};

use super::Job;

/// Why a body could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Log(String),
}

/// Folds the stream's events up to `version` into a state.
async fn fold<S: Default>(
    store: &dyn EventStore,
    stream: &StreamId,
    version: u64,
    mut apply: impl FnMut(&mut S, &DomainEvent),
) -> Result<S, PayloadError> {
    let mut state = S::default();
    let mut next = 1;
    while next <= version {
        let want = usize::try_from(version + 1 - next)
            .unwrap_or(usize::MAX)
            .min(READ_EVENTS_MAX);
        let events = store.read_stream(stream, next, want).await?;
        if events.is_empty() {
            return Err(PayloadError::Log(format!(
                "{stream} ends before version {version}"
            )));
        }
        for e in &events {
            if e.version > version {
                break;
            }
            if let Some(d) = DomainEvent::decode(&e.event_type, &e.payload)
                .map_err(|e| PayloadError::Log(e.to_string()))?
            {
                apply(&mut state, &d);
            }
            next = e.version + 1;
        }
    }
    Ok(state)
}

fn split_name(name: &str) -> (String, String) {
    let name = name.trim();
    match name.split_once(' ') {
        Some((first, last)) => (first.to_owned(), last.trim().to_owned()),
        None => (name.to_owned(), String::new()),
    }
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

/// The delivery's body for `job`, in a shop of `currency`.
pub async fn body(
    store: &dyn EventStore,
    delivery_id: uuid::Uuid,
    job: &Job,
    currency: Currency,
) -> Result<Vec<u8>, PayloadError> {
    let (checkout, order) = if job.trigger.is_checkout() {
        let c: Checkout = fold(store, &job.stream, job.version, Checkout::evolve).await?;
        let checkout = checkout_json(&c, &job.event, currency);
        let order = match c.order_id {
            Some(id) => {
                // The order as placed (its first event, recorded in the
                // same append as the completion): the same on every
                // redelivery, whatever happened to the order since.
                let stream = kedai_engine::domain::ids::streams::order(job.stream.shop, id);
                let o: Order = fold(store, &stream, 1, Order::evolve).await?;
                order_json(&o)
            }
            None => Value::Null,
        };
        (checkout, order)
    } else {
        let o: Order = fold(store, &job.stream, job.version, Order::evolve).await?;
        (order_checkout_json(&o, currency), order_json(&o))
    };
    let body = json!({
        "id": delivery_id,
        "trigger": job.trigger,
        "shop_id": job.stream.shop,
        "event": {
            "id": job.event_id,
            "type": &*job.event_type,
            "position": job.position,
            "stream": &*job.stream.name,
            "recorded_at": job.recorded_at,
        },
        "checkout": checkout,
        "order": order,
    });
    Ok(serde_json::to_vec(&body).expect("JSON values always serialise"))
}

fn checkout_json(c: &Checkout, event: &DomainEvent, currency: Currency) -> Value {
    let Some(started) = &c.started else {
        return Value::Null;
    };
    let content = c.content.as_ref().unwrap_or(&started.content);
    let completed_at: Option<Timestamp> = match event {
        DomainEvent::CheckoutCompleted(e) => Some(e.completed_at),
        _ => None,
    };
    let abandoned_at: Option<Timestamp> = match event {
        DomainEvent::CheckoutAbandoned(e) => Some(e.abandoned_at),
        _ => None,
    };
    let items: Vec<Value> = content
        .items
        .iter()
        .map(|i| {
            json!({
                "product": {"name": i.product_name, "sku": i.sku},
                "name": i.name,
                "currency": currency.code(),
                "price": i.price,
                "quantity": i.quantity,
                "subtotal": i.subtotal(),
            })
        })
        .collect();
    let status = match c.status {
        Some(CheckoutStatus::Completed) => "completed",
        Some(CheckoutStatus::Abandoned) => "abandoned",
        _ => "open",
    };
    let address = content.shipping_address.as_ref().map(|a| {
        json!({
            "first_name": a.first_name, "last_name": a.last_name, "phone": a.phone,
            "email": a.email, "address1": a.address1, "address2": a.address2,
            "zip": a.zip, "city": a.city, "state": a.state,
        })
    });
    json!({
        "id": started.checkout_id,
        "order_id": c.order_id,
        "status": status,
        "domain": started.domain,
        "url": format!("https://{}", started.domain),
        "currency": currency.code(),
        "total": content.total(),
        "shipping": content.shipping,
        "rate": content.rate,
        "created_at": started.created_at,
        "completed_at": completed_at,
        "abandoned_at": abandoned_at,
        "items": items,
        "customer": {
            "first_name": content.customer.first_name,
            "last_name": content.customer.last_name,
            "phone": content.customer.phone,
            "email": content.customer.email,
        },
        "shipping_address": address,
    })
}

/// An order in the `checkout` shape (for order triggers).
fn order_checkout_json(o: &Order, currency: Currency) -> Value {
    let Some(p) = &o.placed else {
        return Value::Null;
    };
    let items: Vec<Value> = p
        .lines
        .iter()
        .map(|l| {
            json!({
                "product": {"name": l.product_name, "sku": l.sku},
                "name": l.variation,
                "currency": currency.code(),
                "price": l.unit_price,
                "quantity": l.quantity,
                "subtotal": l.line_total,
            })
        })
        .collect();
    let (first, last) = split_name(&p.sender.name);
    let (r_first, r_last) = split_name(&p.receiver.name);
    let r = &p.receiver;
    json!({
        "id": p.order_id,
        "order_id": p.order_id,
        "status": o.status.map(|s| s.to_string()),
        "domain": null,
        "url": null,
        "currency": currency.code(),
        "total": p.totals.total,
        "shipping": p.shipping.cost,
        "rate": format!("{} {}", p.shipping.courier, p.shipping.service),
        "created_at": p.placed_at,
        "completed_at": p.placed_at,
        "abandoned_at": null,
        "items": items,
        "customer": {"first_name": first, "last_name": last, "phone": opt(&p.sender.phone), "email": ""},
        "shipping_address": {
            "first_name": r_first, "last_name": r_last, "phone": opt(&r.phone), "email": "",
            "address1": opt(&r.address), "address2": opt(&r.district), "zip": opt(&r.postal_code),
            "city": opt(&r.city), "state": opt(&r.province),
        },
    })
}

fn order_json(o: &Order) -> Value {
    let Some(p) = &o.placed else {
        return Value::Null;
    };
    json!({
        "id": p.order_id,
        "status": o.status.map(|s| s.to_string()),
        "channel": p.channel.as_str(),
        "awb": o.awb,
        "courier": p.shipping.courier,
        "service": p.shipping.service,
        "cod": p.cod,
        "total": p.totals.total,
        "paid_total": o.paid_total,
        "refunded_total": o.refunded_total,
    })
}
