//! Storefront checkouts (Shoppegram): each with its status (`open`,
//! `completed`, `abandoned`), total, buyer and times; lists newest first,
//! filtered by status; counts per status and the abandonment rate; and,
//! for the abandonment scheduler, the open checkouts by last activity, so
//! the next one to fall due is found at once.

use std::cmp::Reverse;
use std::collections::BTreeSet;

use kedai_engine::Timestamp;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::checkout::{CheckoutStatus, abandon_due_at};
use kedai_engine::domain::ids::OrderId;
use kedai_engine::domain::money::{Currency, Money};
use serde::{Deserialize, Serialize};

use crate::At;
use crate::idmap::IdMap;
use crate::intern::{Interner, Text};

/// Most checkouts one page holds.
pub const PAGE_MAX: usize = 500;

/// One checkout as lists show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutView {
    pub checkout_id: uuid::Uuid,
    pub status: CheckoutStatus,
    /// The storefront's domain (interned: a shop has one or a few).
    pub domain: Text,
    pub currency: Currency,
    pub total: Money,
    /// Units in the cart.
    pub quantity: i64,
    pub customer_name: Box<str>,
    pub customer_phone: Box<str>,
    pub created_at: Timestamp,
    /// Started or last updated: abandonment counts from here.
    pub last_activity: Timestamp,
    pub completed_at: Option<Timestamp>,
    pub abandoned_at: Option<Timestamp>,
    pub order_id: Option<OrderId>,
}

/// Checkouts per status, and the share abandoned of those that ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutCounts {
    pub open: u64,
    pub completed: u64,
    pub abandoned: u64,
    /// abandoned / (completed + abandoned), in basis points; 0 if none
    /// ended.
    pub abandonment_rate_bp: u32,
}

/// A shop's checkouts.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Checkouts {
    /// Boxed: a hash map's slots are up to half empty, so a slot is
    /// better a pointer than the whole checkout.
    all: IdMap<Box<CheckoutView>>,
    /// Newest first.
    #[serde(skip)]
    recent: BTreeSet<(Reverse<Timestamp>, uuid::Uuid)>,
    /// Open checkouts, least recently active first.
    #[serde(skip)]
    open: BTreeSet<(Timestamp, uuid::Uuid)>,
    /// Shares the domains (a cache, not state).
    #[serde(skip)]
    interner: Interner,
}

impl PartialEq for Checkouts {
    fn eq(&self, other: &Self) -> bool {
        self.all == other.all
    }
}

impl Checkouts {
    /// Rebuilds the indexes (not serialised) after loading.
    pub fn rebuild_indexes(&mut self) {
        self.recent = self
            .all
            .values()
            .map(|c| (Reverse(c.created_at), c.checkout_id))
            .collect();
        self.open = self
            .all
            .values()
            .filter(|c| c.status == CheckoutStatus::Open)
            .map(|c| (c.last_activity, c.checkout_id))
            .collect();
        for c in self.all.values_mut() {
            self.interner.share(&mut c.domain);
        }
    }

    pub fn apply(&mut self, _at: At<'_>, event: &DomainEvent) {
        match event {
            DomainEvent::CheckoutStarted(e) => {
                let view = CheckoutView {
                    checkout_id: e.checkout_id,
                    status: CheckoutStatus::Open,
                    domain: self.interner.str(&e.domain),
                    currency: e.currency,
                    total: e.total,
                    quantity: quantity(&e.content),
                    customer_name: full_name(&e.content.customer),
                    customer_phone: e.content.customer.phone.as_str().into(),
                    created_at: e.created_at,
                    last_activity: e.created_at,
                    completed_at: None,
                    abandoned_at: None,
                    order_id: None,
                };
                self.recent.insert((Reverse(e.created_at), e.checkout_id));
                self.open.insert((e.created_at, e.checkout_id));
                self.all.insert(e.checkout_id, Box::new(view));
            }
            DomainEvent::CheckoutUpdated(e) => {
                let Some(c) = self.all.get_mut(&e.checkout_id) else {
                    return;
                };
                self.open.remove(&(c.last_activity, c.checkout_id));
                c.total = e.total;
                c.quantity = quantity(&e.content);
                c.customer_name = full_name(&e.content.customer);
                c.customer_phone = e.content.customer.phone.as_str().into();
                c.last_activity = e.updated_at;
                if c.status == CheckoutStatus::Open {
                    self.open.insert((c.last_activity, c.checkout_id));
                }
            }
            DomainEvent::CheckoutCompleted(e) => {
                if let Some(c) = self.all.get_mut(&e.checkout_id) {
                    self.open.remove(&(c.last_activity, c.checkout_id));
                    c.status = CheckoutStatus::Completed;
                    c.completed_at = Some(e.completed_at);
                    c.order_id = Some(e.order_id);
                }
            }
            DomainEvent::CheckoutAbandoned(e) => {
                if let Some(c) = self.all.get_mut(&e.checkout_id) {
                    self.open.remove(&(c.last_activity, c.checkout_id));
                    c.status = CheckoutStatus::Abandoned;
                    c.abandoned_at = Some(e.abandoned_at);
                }
            }
            _ => {}
        }
    }

    pub fn get(&self, id: uuid::Uuid) -> Option<&CheckoutView> {
        self.all.get(&id).map(|c| &**c)
    }

    /// A page of checkouts, newest first, with `status` if given; `after`
    /// is the `(created_at, id)` of the previous page's last one.
    pub fn list(
        &self,
        status: Option<CheckoutStatus>,
        after: Option<(Timestamp, uuid::Uuid)>,
        limit: usize,
    ) -> (Vec<&CheckoutView>, Option<(Timestamp, uuid::Uuid)>) {
        let limit = limit.clamp(1, PAGE_MAX);
        let start = match after {
            Some((t, id)) => std::ops::Bound::Excluded((Reverse(t), id)),
            None => std::ops::Bound::Unbounded,
        };
        let mut page: Vec<&CheckoutView> = self
            .recent
            .range((start, std::ops::Bound::Unbounded))
            .map(|(_, id)| &*self.all[id])
            .filter(|c| status.is_none_or(|s| c.status == s))
            .take(limit + 1)
            .collect();
        let next = if page.len() > limit {
            page.pop();
            page.last().map(|c| (c.created_at, c.checkout_id))
        } else {
            None
        };
        (page, next)
    }

    pub fn counts(&self) -> CheckoutCounts {
        let mut counts = CheckoutCounts::default();
        for c in self.all.values() {
            match c.status {
                CheckoutStatus::Open => counts.open += 1,
                CheckoutStatus::Completed => counts.completed += 1,
                CheckoutStatus::Abandoned => counts.abandoned += 1,
            }
        }
        let ended = counts.completed + counts.abandoned;
        counts.abandonment_rate_bp = (counts.abandoned * 10_000)
            .checked_div(ended)
            .map_or(0, |bp| bp as u32);
        counts
    }

    /// When the least recently active open checkout falls due.
    pub fn next_due(&self, after_minutes: u32) -> Option<Timestamp> {
        self.open
            .first()
            .map(|(last, _)| abandon_due_at(*last, after_minutes))
    }

    /// Open checkouts due at `now`, least recently active first, at most
    /// `limit`.
    pub fn due(&self, after_minutes: u32, now: Timestamp, limit: usize) -> Vec<uuid::Uuid> {
        self.open
            .iter()
            .take_while(|(last, _)| abandon_due_at(*last, after_minutes) <= now)
            .take(limit)
            .map(|(_, id)| *id)
            .collect()
    }
}

/// The items a checkout holds (held at `i64`'s end: a log may hold any
/// quantities).
fn quantity(c: &kedai_engine::domain::checkout::CheckoutContent) -> i64 {
    c.items.iter().fold(0, |q, i| q.saturating_add(i.quantity))
}

fn full_name(c: &kedai_engine::domain::checkout::CheckoutCustomer) -> Box<str> {
    if c.last_name.is_empty() {
        c.first_name.as_str().into()
    } else {
        format!("{} {}", c.first_name, c.last_name).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedai_engine::domain::checkout::{CheckoutContent, CheckoutCustomer, CheckoutItem};
    use kedai_engine::domain::events::{
        CheckoutAbandoned, CheckoutCompleted, CheckoutStarted, CheckoutUpdated,
    };
    use kedai_engine::domain::ids::Sku;
    use kedai_engine::{Actor, Role};
    use proptest::prelude::*;

    const T0: i64 = 1_760_000_000_000_000;
    const MINUTE: i64 = 60_000_000;

    fn content(quantity: i64) -> CheckoutContent {
        CheckoutContent {
            items: vec![CheckoutItem {
                sku: Sku::parse("KAOS-M").unwrap(),
                product_name: "Kaos".into(),
                name: "M".into(),
                price: Money(50_000),
                quantity,
            }],
            customer: CheckoutCustomer {
                first_name: "Abu".into(),
                last_name: "Bakar".into(),
                phone: "60123456789".into(),
                email: String::new(),
            },
            shipping_address: None,
            shipping: Money(0),
            rate: String::new(),
        }
    }

    fn apply(c: &mut Checkouts, event: DomainEvent) {
        let actor = Actor::new(Role::Staff, "x");
        let at = At {
            position: 1,
            version: 1,
            recorded_at: Timestamp(T0),
            actor: &actor,
        };
        c.apply(at, &event);
    }

    fn start(c: &mut Checkouts, n: u128, minute: i64) {
        let content = content(2);
        apply(
            c,
            CheckoutStarted {
                checkout_id: uuid::Uuid::from_u128(n),
                domain: "x.myshoppegram.com".into(),
                currency: Currency::Myr,
                total: content.total(),
                content,
                created_at: Timestamp(T0 + minute * MINUTE),
            }
            .into(),
        );
    }

    #[derive(Debug, Clone)]
    enum Op {
        Start,
        Update(usize, i64),
        Complete(usize),
        Abandon(usize),
    }

    proptest! {
        /// The open index agrees with a plain scan of every checkout: the
        /// due list and the next deadline are what a direct computation
        /// gives; and it survives a save and load.
        #[test]
        fn due_checkouts_are_what_a_scan_finds(
            ops in prop::collection::vec(prop_oneof![
                3 => Just(Op::Start),
                2 => (any::<usize>(), 0i64..200).prop_map(|(i, m)| Op::Update(i, m)),
                1 => any::<usize>().prop_map(Op::Complete),
                1 => any::<usize>().prop_map(Op::Abandon),
            ], 1..40),
            minutes in 1u32..120,
            now_minute in 0i64..400,
        ) {
            let mut c = Checkouts::default();
            let mut started = 0u128;
            for (step, op) in ops.iter().enumerate() {
                let pick = |i: usize| uuid::Uuid::from_u128((i as u128 % started.max(1)) + 1);
                match op {
                    Op::Start => { started += 1; start(&mut c, started, step as i64); }
                    Op::Update(i, m) if started > 0 => {
                        let content = content(3);
                        apply(&mut c, CheckoutUpdated { checkout_id: pick(*i), total: content.total(), content, updated_at: Timestamp(T0 + (step as i64 + m) * MINUTE) }.into());
                    }
                    Op::Complete(i) if started > 0 => {
                        apply(&mut c, CheckoutCompleted { checkout_id: pick(*i), order_id: OrderId(uuid::Uuid::from_u128(99)), completed_at: Timestamp(T0) }.into());
                    }
                    Op::Abandon(i) if started > 0 => {
                        apply(&mut c, CheckoutAbandoned { checkout_id: pick(*i), abandoned_at: Timestamp(T0), last_activity_at: Timestamp(T0) }.into());
                    }
                    _ => {}
                }
            }
            let now = Timestamp(T0 + now_minute * MINUTE);
            let mut scan: Vec<&CheckoutView> = c.all.values().map(|v| &**v).filter(|v| v.status == CheckoutStatus::Open).collect();
            scan.sort_by_key(|v| (v.last_activity, v.checkout_id));
            let due: Vec<uuid::Uuid> = scan.iter().filter(|v| abandon_due_at(v.last_activity, minutes) <= now).map(|v| v.checkout_id).collect();
            prop_assert_eq!(c.due(minutes, now, 1_000), due);
            prop_assert_eq!(c.next_due(minutes), scan.first().map(|v| abandon_due_at(v.last_activity, minutes)));
            let counts = c.counts();
            prop_assert_eq!(counts.open as usize, scan.len());
            let mut loaded: Checkouts = rmp_serde::from_slice(&rmp_serde::to_vec(&c).unwrap()).unwrap();
            loaded.rebuild_indexes();
            prop_assert_eq!(loaded.due(minutes, now, 1_000), c.due(minutes, now, 1_000));
            prop_assert_eq!(loaded.list(None, None, 500).0, c.list(None, None, 500).0);
        }
    }

    #[test]
    fn lists_are_newest_first_by_status_and_count_the_abandoned() {
        let mut c = Checkouts::default();
        for n in 1..=4 {
            start(&mut c, n, n as i64);
        }
        apply(
            &mut c,
            CheckoutAbandoned {
                checkout_id: uuid::Uuid::from_u128(1),
                abandoned_at: Timestamp(T0 + 61 * MINUTE),
                last_activity_at: Timestamp(T0 + MINUTE),
            }
            .into(),
        );
        apply(
            &mut c,
            CheckoutCompleted {
                checkout_id: uuid::Uuid::from_u128(2),
                order_id: OrderId(uuid::Uuid::from_u128(9)),
                completed_at: Timestamp(T0 + 3 * MINUTE),
            }
            .into(),
        );
        let (abandoned, next) = c.list(Some(CheckoutStatus::Abandoned), None, 10);
        assert_eq!(abandoned.len(), 1);
        assert_eq!(&*abandoned[0].customer_name, "Abu Bakar");
        assert_eq!(abandoned[0].abandoned_at, Some(Timestamp(T0 + 61 * MINUTE)));
        assert_eq!(next, None);
        let (first, next) = c.list(None, None, 2);
        let ids: Vec<u128> = first.iter().map(|v| v.checkout_id.as_u128()).collect();
        assert_eq!(ids, [4, 3]);
        let (rest, _) = c.list(None, next, 2);
        let ids: Vec<u128> = rest.iter().map(|v| v.checkout_id.as_u128()).collect();
        assert_eq!(ids, [2, 1]);
        assert_eq!(
            c.counts(),
            CheckoutCounts {
                open: 2,
                completed: 1,
                abandoned: 1,
                abandonment_rate_bp: 5_000
            }
        );
        assert_eq!(c.next_due(60), Some(Timestamp(T0 + 63 * MINUTE)));
    }
}
