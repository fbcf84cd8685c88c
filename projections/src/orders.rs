//! Orders as clients list them: status, payment status and what remains to
//! pay, totals, COD economics, AWB, and a timeline; lists filtered by
//! status, payment status, channel, date range, customer, AWB or text (on
//! the customer's name or phone, or a SKU), newest or oldest first, paged
//! with a cursor that stays valid while new orders arrive; counts per
//! status.
//!
//! Orders are kept in the order they were placed (log order), so an
//! order's placement position is its stable sort key and its cursor.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;
use kedai_engine::Timestamp;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::ids::{CustomerId, OrderId};
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::{Channel, OrderStatus, PaymentStatus, Totals, payment_status};
use kedai_engine::domain::wallet::CodFigures;
use kedai_engine::event::Position;
use serde::{Deserialize, Serialize};

use crate::At;
use crate::bits::OrderSet;
use crate::chunks::ChunkedList;
use crate::intern::{Interner, Party, Text};
use crate::placed::PlacedRef;
use crate::shop::ShopMeta;

/// Most orders one page holds.
pub const PAGE_MAX: usize = 500;

/// A line as lists and reports need it. Serialised flat, as its fields
/// `sku`, `product_name`, `category`, `quantity`, `unit_price`,
/// `unit_cost`, `line_total`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "LineFields", from = "LineFields")]
pub struct LineSummary {
    /// What was sold: shared by every line of the same SKU, name and
    /// category (one pointer instead of three texts).
    pub item: Arc<LineItem>,
    pub quantity: i64,
    pub unit_price: Money,
    pub unit_cost: Money,
    pub line_total: Money,
}

/// What a line sold, as the order named it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LineItem {
    pub sku: Text,
    pub product_name: Text,
    pub category: Option<Text>,
}

/// A line's serialised form.
#[derive(Serialize, Deserialize)]
#[serde(rename = "LineSummary")]
struct LineFields {
    sku: Text,
    product_name: Text,
    category: Option<Text>,
    quantity: i64,
    unit_price: Money,
    unit_cost: Money,
    line_total: Money,
}

impl From<LineSummary> for LineFields {
    fn from(l: LineSummary) -> LineFields {
        let item = Arc::unwrap_or_clone(l.item);
        LineFields {
            sku: item.sku,
            product_name: item.product_name,
            category: item.category,
            quantity: l.quantity,
            unit_price: l.unit_price,
            unit_cost: l.unit_cost,
            line_total: l.line_total,
        }
    }
}

impl From<LineFields> for LineSummary {
    /// Shared as it is read while projections are loaded; the shop's
    /// interner takes it over in [`OrdersView::rebuild_indexes`].
    fn from(l: LineFields) -> LineSummary {
        LineSummary {
            item: crate::intern::loaded_item(l.sku, l.product_name, l.category),
            quantity: l.quantity,
            unit_price: l.unit_price,
            unit_cost: l.unit_cost,
            line_total: l.line_total,
        }
    }
}

/// Something that happened to an order. Timelines are not kept in
/// memory: [`timeline`] makes one from the order's stream when asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimelineEntry {
    pub position: Position,
    pub at: Timestamp,
    pub what: Text,
    pub by: Text,
}

/// One order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderSummary {
    pub order_id: OrderId,
    /// Position of the order's placement: its stable sort key.
    pub position: Position,
    pub placed_at: Timestamp,
    pub updated_at: Timestamp,
    pub channel: Channel,
    pub order_source: Option<Text>,
    pub status: OrderStatus,
    pub payment_status: PaymentStatus,
    pub totals: Totals,
    pub paid: Money,
    pub refunded: Money,
    pub remaining: Money,
    pub cod: bool,
    pub cod_figures: Option<Box<CodFigures>>,
    pub courier: Text,
    pub service: Text,
    /// Unique to the order, so not shared: a box is one allocation.
    pub awb: Option<Box<str>>,
    #[serde(deserialize_with = "crate::intern::deserialize_party")]
    pub sender: Party,
    #[serde(deserialize_with = "crate::intern::deserialize_party")]
    pub receiver: Party,
    /// Fixed once placed: a boxed slice, no spare capacity.
    pub lines: Box<[LineSummary]>,
    pub placed_by: Text,
}

/// What an order event (after it was placed) did, for the folds that
/// follow.
#[derive(Debug)]
pub struct OrderChange<'a> {
    pub order: &'a OrderSummary,
    /// The status before.
    pub previous: OrderStatus,
}

/// Sort order of a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    #[default]
    Newest,
    Oldest,
}

/// A list request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderQuery {
    pub status: Option<OrderStatus>,
    pub payment_status: Option<PaymentStatus>,
    pub channel: Option<Channel>,
    /// Placed at or after.
    pub from: Option<Timestamp>,
    /// Placed before.
    pub to: Option<Timestamp>,
    pub customer_id: Option<CustomerId>,
    pub awb: Option<String>,
    /// Matched (case-insensitively) against the sender's and receiver's
    /// names and phones, and the lines' SKUs.
    pub text: Option<String>,
    pub sort: Sort,
    /// Continue after this order (the `next` of the previous page).
    pub after: Option<Position>,
    pub limit: usize,
}

/// A page of a list.
#[derive(Debug)]
pub struct OrderPage<'a> {
    pub orders: Vec<&'a OrderSummary>,
    /// Pass as `after` for the next page; `None` at the end.
    pub next: Option<Position>,
}

/// Every order of a shop.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OrdersView {
    /// In placement order; an order's place here is its number in the
    /// lookups. Orders never move once placed (see [`ChunkedList`]).
    orders: ChunkedList<OrderSummary>,
    /// Orders by id.
    #[serde(skip)]
    index: Lookup,
    /// Orders by status, indexed by the status's number.
    #[serde(skip)]
    by_status: [OrderSet; OrderStatus::ALL.len()],
    #[serde(skip)]
    by_customer: HashMap<CustomerId, Vec<u32>, RandomState>,
    /// Orders by the SKU of a line (each order once under a SKU).
    #[serde(skip)]
    by_sku: HashMap<Text, Vec<u32>, RandomState>,
    /// Orders by AWB: the latest shipped with each.
    #[serde(skip)]
    by_awb: Lookup,
    /// Shares repeated values among orders (rebuilt after loading). It
    /// holds every customer snapshot and line item of the shop's orders,
    /// and nothing is ever taken out: a text search reads the distinct
    /// ones from it ([`OrdersView::found_by_text`]).
    #[serde(skip)]
    interner: Interner,
}

impl PartialEq for OrdersView {
    fn eq(&self, other: &Self) -> bool {
        self.orders == other.orders
    }
}

impl OrdersView {
    /// Rebuilds the lookup indexes (not serialised) after loading.
    pub fn rebuild_indexes(&mut self) {
        self.index.clear();
        self.by_status = Default::default();
        self.by_customer.clear();
        self.by_sku.clear();
        self.by_awb.clear();
        let mut orders = std::mem::take(&mut self.orders);
        for o in orders.iter_mut() {
            self.share(o);
        }
        self.orders = orders;
        for i in 0..self.orders.len() as u32 {
            self.index_order(i);
        }
    }

    /// Replaces a loaded order's values by shared copies.
    fn share(&mut self, o: &mut OrderSummary) {
        let i = &mut self.interner;
        for t in o
            .order_source
            .iter_mut()
            .chain([&mut o.courier, &mut o.service, &mut o.placed_by])
        {
            i.share(t);
        }
        i.share_party(&mut o.sender);
        i.share_party(&mut o.receiver);
        for l in &mut o.lines {
            i.share_item(&mut l.item);
        }
    }

    fn index_order(&mut self, i: u32) {
        let o = &self.orders[i as usize];
        self.index.set(&self.orders, id_of, &o.order_id, i);
        self.by_status[o.status as usize].insert(i);
        let (sender, receiver) = (o.sender.customer_id, o.receiver.customer_id);
        self.by_customer.entry(sender).or_default().push(i);
        if receiver != sender {
            self.by_customer.entry(receiver).or_default().push(i);
        }
        for l in &o.lines {
            let orders = self.by_sku.entry(l.item.sku.clone()).or_default();
            if orders.last() != Some(&i) {
                orders.push(i);
            }
        }
        if let Some(awb) = &o.awb {
            self.by_awb.add(&**awb, i);
        }
    }

    /// Adds an order placed.
    pub(crate) fn place(&mut self, at: At<'_>, e: &PlacedRef<'_>) -> &OrderSummary {
        let i = self.orders.len() as u32;
        let o = placed(&mut self.interner, at, e);
        self.orders.push(o);
        self.index_order(i);
        &self.orders[i as usize]
    }

    /// Applies an event of an order already placed (orders are placed by
    /// [`OrdersView::place`]).
    pub fn apply<'a>(
        &'a mut self,
        _meta: &ShopMeta,
        at: At<'_>,
        event: &DomainEvent,
    ) -> Option<OrderChange<'a>> {
        let (order_id, status) = order_event(event)?;
        let i = self.index.get(&self.orders, id_of, &order_id)?;
        let o = &mut self.orders[i as usize];
        let previous = o.status;
        match event {
            DomainEvent::OrderPaymentRecorded(e) => o.paid = e.paid_total,
            DomainEvent::OrderRefunded(e) => o.refunded = o.refunded.saturating_add(e.amount),
            DomainEvent::OrderShipped(e) => {
                // The lookup finds an order by its current AWB: out of
                // it under the old one before the AWB changes.
                if let Some(old) = o.awb.take() {
                    self.by_awb.remove(&*old, i);
                }
                o.awb = Some(e.awb.as_str().into());
                self.by_awb.add(e.awb.as_str(), i);
            }
            _ => {}
        }
        let o = &mut self.orders[i as usize];
        o.remaining = o.totals.total.saturating_sub(o.paid).max(Money::ZERO);
        o.payment_status = payment_status(o.totals.total, o.paid, o.refunded);
        o.updated_at = at.recorded_at;
        if let Some(status) = status
            && status != previous
        {
            o.status = status;
            self.by_status[previous as usize].remove(i);
            self.by_status[status as usize].insert(i);
        }
        Some(OrderChange {
            order: &self.orders[i as usize],
            previous,
        })
    }

    /// Records a delivered COD order's figures (from the ledger).
    pub fn set_cod_figures(&mut self, order_id: OrderId, figures: CodFigures) {
        if let Some(i) = self.index.get(&self.orders, id_of, &order_id) {
            self.orders[i as usize].cod_figures = Some(Box::new(figures));
        }
    }

    pub fn get(&self, order_id: OrderId) -> Option<&OrderSummary> {
        self.index
            .get(&self.orders, id_of, &order_id)
            .map(|i| &self.orders[i as usize])
    }

    pub fn len(&self) -> usize {
        self.orders.len()
    }

    pub fn is_empty(&self) -> bool {
        self.orders.is_empty()
    }

    /// Orders per status (every status, zero included).
    pub fn counts(&self) -> BTreeMap<OrderStatus, usize> {
        OrderStatus::ALL
            .iter()
            .map(|&s| (s, self.by_status[s as usize].len()))
            .collect()
    }

    /// Orders of a customer (as sender or receiver), oldest first.
    pub fn of_customer(&self, customer: CustomerId) -> Vec<&OrderSummary> {
        self.by_customer
            .get(&customer)
            .map_or_else(Vec::new, |list| {
                list.iter().map(|&i| &self.orders[i as usize]).collect()
            })
    }

    /// Orders whose receiver has this phone, oldest first.
    pub fn of_phone(&self, phone: &str) -> Vec<&OrderSummary> {
        self.orders
            .iter()
            .filter(|o| {
                o.receiver.phone.as_deref() == Some(phone)
                    || o.sender.phone.as_deref() == Some(phone)
            })
            .collect()
    }

    /// Every order in placement order.
    pub fn all(&self) -> &ChunkedList<OrderSummary> {
        &self.orders
    }

    /// The orders a text search (lowercased) can find, in placement
    /// order, found through the shop's distinct customers and SKUs rather
    /// than by reading every order: the interner holds each customer
    /// snapshot and line item of the shop's orders once, so the texts read
    /// are the distinct names, phones and SKUs, and the orders of a
    /// customer and of a SKU are indexed. Some may not match (another
    /// snapshot of the same customer): the list checks each.
    ///
    /// `None` when reading the orders is better: what is found is more
    /// than an eighth of the orders (a scan, newest first, fills the page
    /// before it has read many).
    fn found_by_text(&self, text: &str) -> Option<Vec<u32>> {
        let most = self.orders.len() / 8;
        let mut found = Vec::new();
        let mut skus: Vec<&Text> = self
            .interner
            .items()
            .map(|item| &item.sku)
            .filter(|sku| contains_lowercased(sku, text))
            .collect();
        skus.sort_unstable();
        skus.dedup();
        for sku in skus {
            found.extend(self.by_sku.get(sku).into_iter().flatten());
            if found.len() > most {
                return None;
            }
        }
        let mut customers: Vec<CustomerId> = self
            .interner
            .parties()
            .filter(|p| {
                contains_lowercased(&p.name, text)
                    || p.phone
                        .as_deref()
                        .is_some_and(|phone| contains_lowercased(phone, text))
            })
            .map(|p| p.customer_id)
            .collect();
        customers.sort_unstable();
        customers.dedup();
        for c in customers {
            found.extend(self.by_customer.get(&c).into_iter().flatten());
            if found.len() > most {
                return None;
            }
        }
        found.sort_unstable();
        found.dedup();
        Some(found)
    }

    /// A page of the list.
    pub fn list(&self, q: &OrderQuery) -> OrderPage<'_> {
        let limit = q.limit.clamp(1, PAGE_MAX);
        let text = q.text.as_ref().map(|t| t.to_lowercase());
        let candidates: Box<dyn DoubleEndedIterator<Item = u32> + '_> = if let Some(awb) = &q.awb {
            Box::new(
                self.by_awb
                    .get_all(&self.orders, awb_of, awb.as_str())
                    .into_iter(),
            )
        } else if let Some(c) = q.customer_id {
            Box::new(self.by_customer.get(&c).into_iter().flatten().copied())
        } else if let Some(found) = text.as_deref().and_then(|t| self.found_by_text(t)) {
            Box::new(found.into_iter())
        } else if let Some(s) = q.status {
            Box::new(self.by_status[s as usize].iter())
        } else {
            Box::new(0..self.orders.len() as u32)
        };
        let ordered: Box<dyn Iterator<Item = u32>> = match q.sort {
            Sort::Newest => Box::new(candidates.rev()),
            Sort::Oldest => Box::new(candidates),
        };
        let mut page: Vec<&OrderSummary> = Vec::with_capacity(limit + 1);
        for i in ordered {
            let o = &self.orders[i as usize];
            if let Some(after) = q.after {
                let past = match q.sort {
                    Sort::Newest => o.position < after,
                    Sort::Oldest => o.position > after,
                };
                if !past {
                    continue;
                }
            }
            if matches(o, q, text.as_deref()) {
                page.push(o);
                if page.len() > limit {
                    break;
                }
            }
        }
        let next = if page.len() > limit {
            page.pop();
            page.last().map(|o| o.position)
        } else {
            None
        };
        OrderPage { orders: page, next }
    }
}

/// Orders found by a key of theirs (the id, the AWB). A slot holds the
/// order's place in the list and 32 bits of its key's hash (8 bytes),
/// where a map would also hold a copy of the key (16 bytes and more); the
/// key is read from the order only when the hashes agree. Keeping the
/// hash also lets the table grow without reading every order again (a
/// read far into the list each, which was most of the cost of indexing
/// the orders of a rebuild).
#[derive(Debug, Clone, Default)]
struct Lookup {
    slots: HashTable<Slot>,
    hasher: RandomState,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    order: u32,
    hash: u32,
}

impl Slot {
    /// The hash the table places the slot by: its 32 bits in both halves
    /// (the table takes the bucket from the low bits, a tag from the high).
    fn spread(self) -> u64 {
        u64::from(self.hash) << 32 | u64::from(self.hash)
    }
}

fn id_of(o: &OrderSummary) -> &OrderId {
    &o.order_id
}

/// An order is in the AWB lookup only while it has one.
fn awb_of(o: &OrderSummary) -> &str {
    o.awb.as_deref().unwrap_or_default()
}

impl Lookup {
    /// The slot of order `i` under `key`.
    fn slot<K: Hash + ?Sized>(&self, key: &K, i: u32) -> Slot {
        let h = self.hasher.hash_one(key);
        Slot {
            order: i,
            hash: (h ^ (h >> 32)) as u32,
        }
    }

    fn get<K: Hash + Eq + ?Sized>(
        &self,
        orders: &ChunkedList<OrderSummary>,
        key_of: fn(&OrderSummary) -> &K,
        key: &K,
    ) -> Option<u32> {
        let wanted = self.slot(key, 0);
        self.slots
            .find(wanted.spread(), |s| {
                s.hash == wanted.hash && key_of(&orders[s.order as usize]) == key
            })
            .map(|s| s.order)
    }

    /// Makes order `i` the one found by `key` (in place of any other).
    fn set<K: Hash + Eq + ?Sized>(
        &mut self,
        orders: &ChunkedList<OrderSummary>,
        key_of: fn(&OrderSummary) -> &K,
        key: &K,
        i: u32,
    ) {
        let new = self.slot(key, i);
        let entry = self.slots.entry(
            new.spread(),
            |s| s.hash == new.hash && key_of(&orders[s.order as usize]) == key,
            |s| s.spread(),
        );
        match entry {
            Entry::Occupied(mut e) => *e.get_mut() = new,
            Entry::Vacant(e) => {
                e.insert(new);
            }
        }
    }

    /// Adds order `i` under `key`, beside any other order under it (for a
    /// key several orders may share).
    fn add<K: Hash + ?Sized>(&mut self, key: &K, i: u32) {
        let new = self.slot(key, i);
        self.slots.insert_unique(new.spread(), new, |s| s.spread());
    }

    /// Every order under `key`, in placement order.
    fn get_all<K: Hash + Eq + ?Sized>(
        &self,
        orders: &ChunkedList<OrderSummary>,
        key_of: fn(&OrderSummary) -> &K,
        key: &K,
    ) -> Vec<u32> {
        let wanted = self.slot(key, 0);
        let mut found: Vec<u32> = self
            .slots
            .iter_hash(wanted.spread())
            .filter(|s| s.hash == wanted.hash && key_of(&orders[s.order as usize]) == key)
            .map(|s| s.order)
            .collect();
        found.sort_unstable();
        found
    }

    /// Takes order `i` out from under `key`, if it is there.
    fn remove<K: Hash + ?Sized>(&mut self, key: &K, i: u32) {
        let slot = self.slot(key, i);
        if let Ok(e) = self.slots.find_entry(slot.spread(), |s| s.order == i) {
            e.remove();
        }
    }

    fn clear(&mut self) {
        self.slots.clear();
    }
}

fn matches(o: &OrderSummary, q: &OrderQuery, text: Option<&str>) -> bool {
    q.status.is_none_or(|s| o.status == s)
        && q.payment_status.is_none_or(|s| o.payment_status == s)
        && q.channel.is_none_or(|c| o.channel == c)
        && q.from.is_none_or(|f| o.placed_at >= f)
        && q.to.is_none_or(|t| o.placed_at < t)
        && q.customer_id
            .is_none_or(|c| o.sender.customer_id == c || o.receiver.customer_id == c)
        && q.awb.as_deref().is_none_or(|a| o.awb.as_deref() == Some(a))
        && text.is_none_or(|t| {
            let hit = |s: &str| contains_lowercased(s, t);
            hit(&o.receiver.name)
                || hit(&o.sender.name)
                || o.receiver.phone.as_deref().is_some_and(hit)
                || o.sender.phone.as_deref().is_some_and(hit)
                || o.lines.iter().any(|l| hit(&l.item.sku))
        })
}

/// Whether `haystack`, lowercased, contains `needle` (lowercased
/// already). Names, phones and SKUs are nearly always ASCII: then it is
/// found without making a lowercased copy (a text search reads five or
/// more of them for every order of the shop, and the copies were most of
/// its cost). Anything else is lowercased as `str::to_lowercase` does.
fn contains_lowercased(haystack: &str, needle: &str) -> bool {
    if haystack.is_ascii() && needle.is_ascii() {
        let (h, n) = (haystack.as_bytes(), needle.as_bytes());
        return n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    haystack.to_lowercase().contains(needle)
}

fn placed(interner: &mut Interner, at: At<'_>, e: &PlacedRef<'_>) -> OrderSummary {
    OrderSummary {
        order_id: e.order_id,
        position: at.position,
        placed_at: e.placed_at,
        updated_at: at.recorded_at,
        channel: e.channel,
        order_source: interner.opt(e.order_source),
        status: OrderStatus::Placed,
        payment_status: payment_status(e.totals.total, Money::ZERO, Money::ZERO),
        totals: e.totals,
        paid: Money::ZERO,
        refunded: Money::ZERO,
        remaining: e.totals.total,
        cod: e.cod,
        cod_figures: None,
        courier: interner.str(e.shipping.courier),
        service: interner.str(e.shipping.service),
        awb: None,
        sender: interner.placed_party(&e.sender),
        receiver: interner.placed_party(&e.receiver),
        lines: e
            .lines
            .iter()
            .map(|l| LineSummary {
                item: interner.item(l.sku, l.product_name, l.category),
                quantity: l.quantity,
                unit_price: l.unit_price,
                unit_cost: l.unit_cost,
                line_total: l.line_total,
            })
            .collect(),
        placed_by: interner.str(&at.actor.id),
    }
}

/// The order and the new status (if any) of an order event.
fn order_event(event: &DomainEvent) -> Option<(OrderId, Option<OrderStatus>)> {
    use OrderStatus::*;
    Some(match event {
        DomainEvent::OrderPaymentRecorded(e) => (e.order_id, None),
        DomainEvent::OrderRefunded(e) => (e.order_id, None),
        DomainEvent::OrderProcessing(e) => (e.order_id, Some(Processing)),
        DomainEvent::OrderPacked(e) => (e.order_id, Some(Packed)),
        DomainEvent::OrderReadyForPickup(e) => (e.order_id, Some(ReadyForPickup)),
        DomainEvent::OrderShipped(e) => (e.order_id, Some(Shipped)),
        DomainEvent::OrderDelivered(e) => (e.order_id, Some(Delivered)),
        DomainEvent::OrderCompleted(e) => (e.order_id, Some(Completed)),
        DomainEvent::OrderCancelled(e) => (e.order_id, Some(Cancelled)),
        DomainEvent::OrderReturnStarted(e) => (e.order_id, Some(Returning)),
        DomainEvent::OrderReturnReceived(e) => (e.order_id, Some(Returned)),
        DomainEvent::OrderLost(e) => (e.order_id, Some(Lost)),
        _ => return None,
    })
}

/// What a timeline says of an order event (`None`: not an order event).
fn timeline_words(event: &DomainEvent) -> Option<String> {
    let with_reason = |what: &str, reason: &str| {
        if reason.is_empty() {
            what.to_owned()
        } else {
            format!("{what}: {reason}")
        }
    };
    Some(match event {
        DomainEvent::OrderPlaced(_) => "placed".into(),
        DomainEvent::OrderPaymentRecorded(e) => format!("paid {}", e.amount),
        DomainEvent::OrderRefunded(e) => format!("refunded {}", e.amount),
        DomainEvent::OrderProcessing(_) => "processing".into(),
        DomainEvent::OrderPacked(_) => "packed".into(),
        DomainEvent::OrderReadyForPickup(_) => "ready_for_pickup".into(),
        DomainEvent::OrderShipped(e) => format!("shipped, AWB {}", e.awb),
        DomainEvent::OrderDelivered(_) => "delivered".into(),
        DomainEvent::OrderCompleted(_) => "completed".into(),
        DomainEvent::OrderCancelled(e) => with_reason("cancelled", &e.reason),
        DomainEvent::OrderReturnStarted(e) => with_reason("returning", &e.reason),
        DomainEvent::OrderReturnReceived(_) => "returned".into(),
        DomainEvent::OrderLost(e) => with_reason("lost", &e.note),
        _ => return None,
    })
}

/// An order's timeline from the events of its stream (as the store reads
/// them), up to position `until`: what happened, when and by whom.
///
/// Timelines are read from the log rather than kept in memory, where they
/// would be the biggest part of an order's projection.
pub fn timeline(
    events: &[kedai_engine::RecordedEvent],
    until: Position,
) -> Result<Vec<TimelineEntry>, crate::ApplyError> {
    let mut entries = Vec::with_capacity(events.len());
    for e in events.iter().filter(|e| e.position <= until) {
        let decoded =
            DomainEvent::decode(&e.event_type, &e.payload).map_err(|source| crate::ApplyError {
                position: e.position,
                source,
            })?;
        if let Some(what) = decoded.as_ref().and_then(timeline_words) {
            entries.push(TimelineEntry {
                position: e.position,
                at: e.recorded_at,
                what: what.into(),
                by: e.actor.id.as_str().into(),
            });
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kedai_engine::domain::catalog::CustomerCategory;
    use kedai_engine::domain::events::{OrderPlaced, OrderShipped};
    use kedai_engine::domain::order::{CustomerSnapshot, Shipping};
    use kedai_engine::{Actor, Role};

    fn id(n: u128) -> OrderId {
        OrderId(uuid::Uuid::from_u128(n))
    }

    proptest::proptest! {
        /// The search's matcher finds what lowercasing both texts finds,
        /// in ASCII and in any other text.
        #[test]
        fn a_text_is_found_as_lowercasing_it_finds_it(
            haystack in proptest::prop_oneof![
                "[a-zA-Z0-9 .+_-]{0,30}",
                "(\\PC|[aAkKiI ])*",
            ],
            start in 0usize..40,
            len in 0usize..6,
            other in "\\PC{0,4}",
        ) {
            let chars: Vec<char> = haystack.chars().collect();
            let start = start.min(chars.len());
            let cut: String = chars[start..(start + len).min(chars.len())].iter().collect();
            for needle in [cut.to_lowercase(), other.to_lowercase()] {
                proptest::prop_assert_eq!(
                    contains_lowercased(&haystack, &needle),
                    haystack.to_lowercase().contains(&needle),
                    "{:?} in {:?}", needle, haystack
                );
            }
        }
    }

    #[test]
    fn ascii_search_ignores_case() {
        assert!(contains_lowercased("Siti NURHALIZA", "nurh"));
        assert!(contains_lowercased("KAOS-M.merah_1", "m.merah"));
        assert!(!contains_lowercased("Siti", "sitti"));
        assert!(contains_lowercased("", ""));
        // A Kelvin sign lowercases to an ASCII k.
        assert!(contains_lowercased("\u{212a}aos", "kaos"));
    }

    /// The sets by status are indexed by a status's number: every status
    /// is in `ALL` at its number.
    #[test]
    fn every_status_is_numbered_by_its_place_in_all() {
        for (i, s) in OrderStatus::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i, "{s:?}");
        }
    }

    fn at(position: Position, actor: &Actor) -> At<'_> {
        At {
            position,
            version: 1,
            recorded_at: Timestamp(1_760_000_000_000_000),
            actor,
        }
    }

    fn apply(v: &mut OrdersView, position: Position, event: DomainEvent) {
        let actor = Actor::new(Role::Staff, "x");
        v.apply(&ShopMeta::default(), at(position, &actor), &event);
    }

    fn place(v: &mut OrdersView, n: u128) {
        let customer = CustomerSnapshot {
            customer_id: CustomerId(uuid::Uuid::from_u128(1)),
            name: "Siti".into(),
            phone: None,
            ..customer(0, 0)
        };
        place_by(v, n, customer.clone(), customer, Vec::new());
    }

    /// Places order `n` (at position `n`) from `sender` to `receiver`.
    fn place_by(
        v: &mut OrdersView,
        n: u128,
        sender: CustomerSnapshot,
        receiver: CustomerSnapshot,
        lines: Vec<kedai_engine::domain::order::PlacedLine>,
    ) {
        let placed = OrderPlaced {
            order_id: id(n),
            channel: Channel::App,
            order_source: None,
            sender,
            receiver,
            lines,
            shipping: Shipping {
                courier: "JNE".into(),
                service: "REG".into(),
                cost: Money::ZERO,
            },
            cod: false,
            costs: Vec::new(),
            totals: Totals::default(),
            note: None,
            placed_at: Timestamp(1_760_000_000_000_000),
        };
        let actor = Actor::new(Role::Staff, "x");
        v.place(at(n as Position, &actor), &PlacedRef::from(&placed));
    }

    /// A customer snapshot for the search test: customer `c`, in its
    /// `variant`-th form (a name or phone changed since).
    fn customer(c: u8, variant: u8) -> CustomerSnapshot {
        const NAMES: [&str; 6] = [
            "Siti Aminah",
            "SITI",
            "Budi Santoso",
            "Ayu",
            "Kelvin \u{212a}",
            "Dewi Ayu",
        ];
        CustomerSnapshot {
            customer_id: CustomerId(uuid::Uuid::from_u128(u128::from(c) + 100)),
            name: format!("{} {}", NAMES[usize::from(c) % NAMES.len()], variant),
            phone: (!c.is_multiple_of(3)).then(|| format!("0812{c:02}{variant}")),
            category: CustomerCategory::Customer,
            address: None,
            district: None,
            city: None,
            province: None,
            postal_code: None,
        }
    }

    fn line(sku: &str) -> kedai_engine::domain::order::PlacedLine {
        use kedai_engine::domain::catalog::ProductKind;
        use kedai_engine::domain::ids::{ProductId, Sku};
        kedai_engine::domain::order::PlacedLine {
            sku: Sku::parse(sku).unwrap(),
            product_id: ProductId(uuid::Uuid::from_u128(7)),
            product_name: "Kaos".into(),
            category: None,
            variation: String::new(),
            kind: ProductKind::Stocked,
            quantity: 1,
            unit_price: Money(10_000),
            unit_cost: Money(5_000),
            discount: None,
            discount_amount: Money::ZERO,
            line_total: Money(10_000),
            weight_grams: 200,
            allocations: Vec::new(),
        }
    }

    proptest::proptest! {
        /// A text search finds what reading every order finds (names and
        /// phones of both parties, SKUs; case ignored), page after page,
        /// in both orders, live and after a snapshot load: also when it
        /// goes through the shop's customers instead of the orders.
        #[test]
        fn a_text_search_finds_what_reading_every_order_finds(
            orders in proptest::collection::vec((0u8..40, 0u8..2, 0usize..12, proptest::bool::ANY), 1..160),
            needles in proptest::collection::vec("(siti|ayu|budi|santoso|0812|08120|k|kel|ka|kaos-m|kaos|m.merah|x|[a-z0-9]{1,3})", 1..6),
            limit in 1usize..12,
        ) {
            const SKUS: [&str; 12] = [
                "KAOS-M.merah_1", "KAOS-L", "kaos-xl", "CELANA-30", "celana-32", "TOPI",
                "TOPI-2", "Jilbab_Ayu", "SITI-01", "0812-case", "gamis.k", "K",
            ];
            let shop = customer(255, 0);
            let mut v = OrdersView::default();
            for (n, (c, variant, sku, shop_sends)) in orders.iter().enumerate() {
                let receiver = customer(*c, *variant);
                let sender = if *shop_sends { shop.clone() } else { receiver.clone() };
                place_by(&mut v, n as u128 + 1, sender, receiver, vec![line(SKUS[*sku])]);
            }
            let mut loaded: OrdersView = rmp_serde::from_slice(&rmp_serde::to_vec(&v).unwrap()).unwrap();
            loaded.rebuild_indexes();
            for needle in needles.iter().flat_map(|n| [n.clone(), n.to_uppercase()]) {
                let t = needle.to_lowercase();
                let hit = |s: &str| s.to_lowercase().contains(&t);
                let mut expected: Vec<OrderId> = v
                    .all()
                    .iter()
                    .filter(|o| {
                        [&o.sender, &o.receiver].iter().any(|p| {
                            hit(&p.name) || p.phone.as_deref().is_some_and(hit)
                        }) || o.lines.iter().any(|l| hit(&l.item.sku))
                    })
                    .map(|o| o.order_id)
                    .collect();
                for sort in [Sort::Oldest, Sort::Newest] {
                    if sort == Sort::Newest {
                        expected.reverse();
                    }
                    for view in [&v, &loaded] {
                        let mut q = OrderQuery {
                            text: Some(needle.clone()),
                            sort,
                            limit,
                            ..OrderQuery::default()
                        };
                        let mut found = Vec::new();
                        loop {
                            let page = view.list(&q);
                            proptest::prop_assert!(page.orders.len() <= limit);
                            found.extend(page.orders.iter().map(|o| o.order_id));
                            match page.next {
                                Some(next) => q.after = Some(next),
                                None => break,
                            }
                        }
                        proptest::prop_assert_eq!(&found, &expected, "{:?} {:?}", needle, sort);
                    }
                    if sort == Sort::Newest {
                        expected.reverse();
                    }
                }
            }
        }
    }

    fn ship(v: &mut OrdersView, n: u128, awb: &str) {
        let shipped = OrderShipped {
            order_id: id(n),
            awb: awb.into(),
        };
        apply(v, 10_000 + n as Position, shipped.into());
    }

    fn by_awb(v: &OrdersView, awb: &str) -> Vec<OrderId> {
        let q = OrderQuery {
            awb: Some(awb.into()),
            limit: 10,
            ..OrderQuery::default()
        };
        v.list(&q).orders.iter().map(|o| o.order_id).collect()
    }

    /// The lookups by id and by AWB keep only the order's place, and read
    /// the key from the order: they find every order, also after the
    /// table grows; an AWB finds every order whose current AWB it is, in
    /// the list's order, the same live and after a snapshot load.
    #[test]
    fn orders_are_found_by_id_and_by_their_current_awb() {
        let mut v = OrdersView::default();
        for n in 1..=2_000 {
            place(&mut v, n);
        }
        for n in 1..=2_000 {
            assert_eq!(v.get(id(n)).map(|o| o.order_id), Some(id(n)));
        }
        assert!(v.get(id(2_001)).is_none());
        ship(&mut v, 1, "JNE1");
        ship(&mut v, 2, "JNE2");
        assert_eq!(by_awb(&v, "JNE1"), [id(1)]);
        // Shipped again under another AWB: found by the new one only.
        ship(&mut v, 1, "JNE3");
        assert_eq!(by_awb(&v, "JNE1"), []);
        assert_eq!(by_awb(&v, "JNE3"), [id(1)]);
        // Orders shipped with an AWB already used: all of them, newest
        // placed first (the list's order) whatever order they shipped in.
        ship(&mut v, 3, "JNE2");
        assert_eq!(by_awb(&v, "JNE2"), [id(3), id(2)]);
        ship(&mut v, 5, "JNE5");
        ship(&mut v, 4, "JNE5");
        assert_eq!(by_awb(&v, "JNE5"), [id(5), id(4)]);
        // One of them shipped again under another AWB leaves the others.
        ship(&mut v, 4, "JNE6");
        assert_eq!(by_awb(&v, "JNE5"), [id(5)]);
        assert_eq!(by_awb(&v, "JNE6"), [id(4)]);
        assert_eq!(by_awb(&v, "JNE9"), []);
        let mut loaded = v.clone();
        loaded.rebuild_indexes();
        for awb in ["JNE1", "JNE2", "JNE3", "JNE5", "JNE6", "JNE9"] {
            assert_eq!(by_awb(&loaded, awb), by_awb(&v, awb), "{awb}");
        }
        assert_eq!(loaded.get(id(1_999)).map(|o| o.order_id), Some(id(1_999)));
    }
}
