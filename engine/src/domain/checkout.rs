//! Checkouts (Shoppegram): a storefront cart that is started, updated,
//! completed (it becomes an order, placed in the same append) or abandoned
//! (not completed within the shop's abandonment time, 60 minutes by
//! default; recorded by the scheduler that follows the log).
//!
//! The fields are Shoppegram's `checkout` object, so a webhook payload can
//! be built from the events alone.

use serde::{Deserialize, Serialize};

use super::Context;
use super::events::*;
use super::ids::{OrderId, Sku};
use super::money::{Currency, Money};
use super::rejection::{Check, FieldError, Rejection};
use crate::event::Timestamp;

/// Most items in a checkout.
pub const ITEMS_MAX: usize = 100;

/// Where a checkout is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    Open,
    Completed,
    Abandoned,
}

/// A person as the checkout form has them (Shoppegram `customer`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutCustomer {
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub email: String,
}

/// Where the parcel goes (Shoppegram `shipping_address`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub first_name: String,
    #[serde(default)]
    pub last_name: String,
    #[serde(default)]
    pub phone: String,
    #[serde(default)]
    pub email: String,
    pub address1: String,
    #[serde(default)]
    pub address2: String,
    pub zip: String,
    pub city: String,
    pub state: String,
}

/// One line of a checkout (Shoppegram `items[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutItem {
    pub sku: Sku,
    pub product_name: String,
    /// Variation name, e.g. `2 Unit / Hitam`.
    pub name: String,
    pub price: Money,
    pub quantity: i64,
}

impl CheckoutItem {
    /// `price x quantity` (validation bounds it; one read from a log
    /// written elsewhere is held at `i64`'s end rather than panic).
    pub fn subtotal(&self) -> Money {
        self.price
            .checked_mul(self.quantity)
            .unwrap_or(Money(i64::MAX))
    }
}

/// What the buyer has filled in so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutContent {
    pub items: Vec<CheckoutItem>,
    pub customer: CheckoutCustomer,
    #[serde(default)]
    pub shipping_address: Option<ShippingAddress>,
    /// Shipping price of the chosen rate.
    #[serde(default)]
    pub shipping: Money,
    /// Name of the chosen shipping rate, e.g. `FREE SHIPPING COD`.
    #[serde(default)]
    pub rate: String,
}

impl CheckoutContent {
    /// The items' subtotals and the shipping (held at `i64`'s end, as
    /// [`CheckoutItem::subtotal`]).
    pub fn total(&self) -> Money {
        self.items
            .iter()
            .fold(self.shipping, |t, i| t.saturating_add(i.subtotal()))
    }

    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.that(
            !self.items.is_empty(),
            "items",
            "a checkout needs at least one item",
        )
        .that(
            self.items.len() <= ITEMS_MAX,
            "items",
            format!("at most {ITEMS_MAX} items"),
        )
        .that(
            (0..=super::order::AMOUNT_MAX).contains(&self.shipping.0),
            "shipping",
            "must be 0 or more",
        )
        .text(&self.rate, "rate", false, 100)
        .text(&self.customer.first_name, "customer.first_name", true, 100)
        .text(&self.customer.last_name, "customer.last_name", false, 100)
        .text(&self.customer.email, "customer.email", false, 254);
        for (i, item) in self.items.iter().enumerate() {
            c.that(
                (1..=super::stock::QUANTITY_MAX).contains(&item.quantity),
                format!("items[{i}].quantity"),
                "must be 1 or more",
            )
            .that(
                (0..=super::order::AMOUNT_MAX).contains(&item.price.0),
                format!("items[{i}].price"),
                format!("must be 0 or more and at most {}", super::order::AMOUNT_MAX),
            )
            .that(
                item.price
                    .checked_mul(item.quantity)
                    .is_some_and(|t| t.0 <= super::order::AMOUNT_MAX),
                format!("items[{i}].quantity"),
                format!(
                    "price x quantity must be at most {}",
                    super::order::AMOUNT_MAX
                ),
            )
            .text(
                &item.product_name,
                &format!("items[{i}].product_name"),
                true,
                200,
            )
            .text(&item.name, &format!("items[{i}].name"), false, 200);
        }
        if let Some(a) = &self.shipping_address {
            c.text(&a.address1, "shipping_address.address1", true, 200)
                .text(&a.city, "shipping_address.city", true, 100)
                .text(&a.state, "shipping_address.state", true, 100)
                .text(&a.zip, "shipping_address.zip", true, 10);
        }
        c.finish()
    }
}

/// A checkout as its stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Checkout {
    pub started: Option<CheckoutStarted>,
    pub content: Option<CheckoutContent>,
    pub status: Option<CheckoutStatus>,
    pub updated_at: Option<Timestamp>,
    pub order_id: Option<OrderId>,
}

impl Checkout {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::CheckoutStarted(e) => {
                self.started = Some((**e).clone());
                self.content = Some(e.content.clone());
                self.status = Some(CheckoutStatus::Open);
                self.updated_at = Some(e.created_at);
            }
            DomainEvent::CheckoutUpdated(e) => {
                self.content = Some(e.content.clone());
                self.updated_at = Some(e.updated_at);
            }
            DomainEvent::CheckoutCompleted(e) => {
                self.status = Some(CheckoutStatus::Completed);
                self.order_id = Some(e.order_id);
            }
            DomainEvent::CheckoutAbandoned(_) => self.status = Some(CheckoutStatus::Abandoned),
            _ => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartCheckout {
    pub checkout_id: uuid::Uuid,
    /// The storefront's domain, e.g. `mirfaith.myshoppegram.com`.
    pub domain: String,
    pub content: CheckoutContent,
}

impl StartCheckout {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.text(&self.domain, "domain", true, 253);
        let mut errors = c.finish().err().unwrap_or_default();
        errors.extend(self.content.validate().err().unwrap_or_default());
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

pub fn start(
    checkout: &Checkout,
    cmd: &StartCheckout,
    currency: Currency,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    if checkout.started.is_some() {
        return Err(Rejection::CheckoutExists {
            checkout_id: cmd.checkout_id,
        });
    }
    Ok(vec![
        CheckoutStarted {
            checkout_id: cmd.checkout_id,
            domain: cmd.domain.trim().to_owned(),
            currency,
            content: cmd.content.clone(),
            total: cmd.content.total(),
            created_at: ctx.now,
        }
        .into(),
    ])
}

fn require_open(checkout: &Checkout, checkout_id: uuid::Uuid) -> Result<(), Rejection> {
    match checkout.status {
        None => Err(Rejection::UnknownCheckout { checkout_id }),
        Some(CheckoutStatus::Open) => Ok(()),
        Some(status) => Err(Rejection::CheckoutClosed {
            checkout_id,
            status,
        }),
    }
}

pub fn update(
    checkout: &Checkout,
    checkout_id: uuid::Uuid,
    content: &CheckoutContent,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    require_open(checkout, checkout_id)?;
    if checkout.content.as_ref() == Some(content) {
        return Ok(Vec::new());
    }
    Ok(vec![
        CheckoutUpdated {
            checkout_id,
            content: content.clone(),
            total: content.total(),
            updated_at: ctx.now,
        }
        .into(),
    ])
}

/// The checkout's side of completing it; the command engine places the
/// order in the same append.
pub fn complete(
    checkout: &Checkout,
    checkout_id: uuid::Uuid,
    order_id: OrderId,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    require_open(checkout, checkout_id)?;
    Ok(vec![
        CheckoutCompleted {
            checkout_id,
            order_id,
            completed_at: ctx.now,
        }
        .into(),
    ])
}

/// The moment a checkout last touched at `last_activity` becomes
/// abandoned, for a shop whose abandonment time is `after_minutes`.
pub fn abandon_due_at(last_activity: Timestamp, after_minutes: u32) -> Timestamp {
    Timestamp(
        last_activity
            .0
            .saturating_add(i64::from(after_minutes) * 60_000_000),
    )
}

/// Records an abandoned checkout, if it is still open and was last touched
/// at least `after_minutes` before `ctx.now`. Nothing (not an error) if it
/// moved on meanwhile: the scheduler may race a late completion.
pub fn abandon(
    checkout: &Checkout,
    checkout_id: uuid::Uuid,
    after_minutes: u32,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    let Some(status) = checkout.status else {
        return Err(Rejection::UnknownCheckout { checkout_id });
    };
    let last = checkout.updated_at.expect("a started checkout has a time");
    let due = abandon_due_at(last, after_minutes);
    if status != CheckoutStatus::Open || ctx.now < due {
        return Ok(Vec::new());
    }
    Ok(vec![
        CheckoutAbandoned {
            checkout_id,
            abandoned_at: ctx.now,
            last_activity_at: last,
        }
        .into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Actor, Role};
    use proptest::prelude::*;

    fn started(id: uuid::Uuid, at: Timestamp) -> Checkout {
        let mut c = Checkout::default();
        let content = CheckoutContent {
            items: vec![CheckoutItem {
                sku: Sku::parse("KAOS-M").unwrap(),
                product_name: "Kaos".into(),
                name: "M".into(),
                price: Money(50_000),
                quantity: 1,
            }],
            customer: CheckoutCustomer {
                first_name: "Abu".into(),
                ..CheckoutCustomer::default()
            },
            shipping_address: None,
            shipping: Money(0),
            rate: String::new(),
        };
        c.evolve(
            &CheckoutStarted {
                checkout_id: id,
                domain: "x.myshoppegram.com".into(),
                currency: Currency::Idr,
                total: content.total(),
                content,
                created_at: at,
            }
            .into(),
        );
        c
    }

    fn at(now: Timestamp) -> Context {
        Context {
            now,
            actor: Actor::new(Role::System, "scheduler"),
        }
    }

    #[test]
    fn an_abandoned_checkout_can_no_longer_be_completed_or_changed() {
        let id = uuid::Uuid::from_u128(7);
        let t0 = Timestamp(1_760_000_000_000_000);
        let mut c = started(id, t0);
        let events = abandon(&c, id, 60, &at(abandon_due_at(t0, 60))).unwrap();
        assert_eq!(events.len(), 1);
        c.evolve(&events[0]);
        let closed = Rejection::CheckoutClosed {
            checkout_id: id,
            status: CheckoutStatus::Abandoned,
        };
        let later = at(abandon_due_at(t0, 61));
        assert_eq!(
            complete(&c, id, OrderId(uuid::Uuid::from_u128(9)), &later),
            Err(closed.clone())
        );
        let content = c.content.clone().unwrap();
        assert_eq!(update(&c, id, &content, &later), Err(closed));
        assert_eq!(
            abandon(&c, id, 60, &later),
            Ok(vec![]),
            "abandoned once only"
        );
    }

    proptest! {
        /// An open checkout is abandoned exactly when `after_minutes` have
        /// passed since its last activity; a closed or unknown one never.
        #[test]
        fn abandonment_is_due_exactly_after_the_shop_time(
            minutes in 1u32..=10_080,
            updated_after_s in proptest::option::of(0i64..=604_800),
            now_after_s in 0i64..=1_300_000,
            completed in any::<bool>(),
        ) {
            let id = uuid::Uuid::from_u128(7);
            let t0 = Timestamp(1_760_000_000_000_000);
            let mut c = started(id, t0);
            let mut last = t0;
            if let Some(s) = updated_after_s {
                last = Timestamp(t0.0 + s * 1_000_000);
                let content = c.content.clone().unwrap();
                c.evolve(&CheckoutUpdated { checkout_id: id, total: content.total(), content, updated_at: last }.into());
            }
            if completed {
                c.evolve(&CheckoutCompleted { checkout_id: id, order_id: OrderId(uuid::Uuid::from_u128(9)), completed_at: last }.into());
            }
            let now = Timestamp(t0.0 + now_after_s * 1_000_000);
            let events = abandon(&c, id, minutes, &at(now)).unwrap();
            let due = !completed && now.0 - last.0 >= i64::from(minutes) * 60_000_000;
            prop_assert_eq!(events.len(), usize::from(due));
            prop_assert_eq!(abandon_due_at(last, minutes) <= now, now.0 - last.0 >= i64::from(minutes) * 60_000_000);
            if let Some(DomainEvent::CheckoutAbandoned(e)) = events.first() {
                prop_assert_eq!((e.abandoned_at, e.last_activity_at), (now, last));
            }
            prop_assert_eq!(
                abandon(&Checkout::default(), id, minutes, &at(now)),
                Err(Rejection::UnknownCheckout { checkout_id: id })
            );
        }
    }
}
