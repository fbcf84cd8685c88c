//! Reports and analytics (Ngorder's report and analyzer, Komship's
//! dashboards), by day and month, over any date range, in the shop's time
//! zone.
//!
//! Sales are counted on the day an order was placed, for orders that are
//! not cancelled or returned: when an order is cancelled or comes back, its
//! contribution is taken off its day again. Definitions:
//! `gross sales = sum(quantity x unit price)`,
//! `discounts = line discounts + order discounts`,
//! `net sales = gross sales - discounts`,
//! `cost of goods sold = sum(quantity x unit cost at the moment of sale)`,
//! `gross profit = net sales - cost of goods sold`,
//! `net profit = gross profit - expenses` (expenses on their own date).
//! Shipping and order costs (other costs, insurance) are what the buyer was
//! charged for them, reported beside sales.
//!
//! Customer service: a *response time* runs from a customer's first
//! unanswered message to the next staff reply; a *resolution time* from the
//! conversation's (re)opening to its resolution. Both are reported as
//! average, median and 90th percentile.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use kedai_engine::Timestamp;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::chat::Author;
use kedai_engine::domain::ids::CustomerId;
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::{Channel, OrderStatus};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::At;
use crate::idmap::IdMap;
use crate::intern::{Interner, Text, text_cmp};
use crate::orders::{LineSummary, OrderChange, OrderSummary};
use crate::shop::{ShopMeta, month_of};

/// Quantity and revenue of something sold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub orders: i64,
    pub quantity: i64,
    pub revenue: Money,
}

impl Tally {
    fn add(&mut self, sign: i64, orders: i64, quantity: i64, revenue: Money) {
        self.orders = self.orders.saturating_add(orders.saturating_mul(sign));
        self.quantity = self.quantity.saturating_add(quantity.saturating_mul(sign));
        self.revenue = self
            .revenue
            .saturating_add(Money(revenue.0.saturating_mul(sign)));
    }

    fn merge(&mut self, other: &Tally) {
        self.add(1, other.orders, other.quantity, other.revenue);
    }
}

/// A courier's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourierTally {
    pub orders: i64,
    pub shipping_cost: Money,
    pub shipped: i64,
    pub returned: i64,
}

/// One day of one shop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Day {
    pub orders: i64,
    pub gross_sales: Money,
    pub discounts: Money,
    pub shipping: Money,
    pub order_costs: Money,
    pub cost_of_goods: Money,
    pub expenses: Money,
    pub cod: Tally,
    pub non_cod: Tally,
    pub products: SmallMap<Text, Tally>,
    pub skus: SmallMap<Text, Tally>,
    pub categories: SmallMap<Text, Tally>,
    /// A B-tree, not a [`SmallMap`]: a busy shop has thousands of
    /// customers a day, and a sorted list moves half of them per insert.
    pub customers: BTreeMap<CustomerId, (Text, Tally)>,
    pub cities: SmallMap<Text, i64>,
    pub couriers: SmallMap<Text, CourierTally>,
    pub channels: SmallMap<Channel, Tally>,
    pub staff: SmallMap<Text, Tally>,
    pub orders_by_hour: Vec<i64>,
    pub leads: i64,
    pub leads_by_hour: Vec<i64>,
    /// Response and resolution times (seconds) of waits that began this day.
    pub response_seconds: Vec<i64>,
    pub resolution_seconds: Vec<i64>,
    /// Responses and resolutions per staff member.
    pub responses_by_staff: SmallMap<Text, i64>,
    pub resolutions_by_staff: SmallMap<Text, i64>,
}

/// A map kept as a list sorted by key, for a day's maps whose keys are
/// bounded by the shop's catalog, places, couriers or staff: a few dozen
/// entries (often a handful), where a B-tree would give each one a node
/// of eleven slots, mostly empty. An insert moves the entries after it,
/// so it is not for keys that grow with the orders (customers).
/// Serialised as a map, like the `BTreeMap` it replaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmallMap<K, V>(Vec<(K, V)>);

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap(Vec::new())
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    fn find<Q: Ord + ?Sized>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
    {
        self.0.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// The value of `key`; if missing, `make` makes the entry.
    pub fn get_or_insert_with<Q: Ord + ?Sized>(
        &mut self,
        key: &Q,
        make: impl FnOnce() -> (K, V),
    ) -> &mut V
    where
        K: Borrow<Q>,
    {
        let found = self.find(key);
        self.found_or_inserted(found, make)
    }

    /// The value at `found` (a binary search's answer); if missing,
    /// `make` makes the entry where the search says it goes.
    fn found_or_inserted(
        &mut self,
        found: Result<usize, usize>,
        make: impl FnOnce() -> (K, V),
    ) -> &mut V {
        let i = match found {
            Ok(i) => i,
            Err(i) => {
                // A quarter more room, not double: these lists stop
                // growing once their day is over.
                if self.0.len() == self.0.capacity() {
                    self.0.reserve_exact(self.0.len() / 4 + 1);
                }
                self.0.insert(i, make());
                i
            }
        };
        &mut self.0[i].1
    }

    /// The keys, to be replaced by equal ones (shared copies): the
    /// order stays.
    fn keys_mut(&mut self) -> impl Iterator<Item = &mut K> {
        self.0.iter_mut().map(|(k, _)| k)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a, K: Ord, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Serialize, V: Serialize> Serialize for SmallMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

impl<'de, K: Ord + Deserialize<'de>, V: Deserialize<'de>> Deserialize<'de> for SmallMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<K, V>::deserialize(deserializer)?;
        Ok(SmallMap(map.into_iter().collect()))
    }
}

/// A conversation's clocks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct ConversationClock {
    /// The customer's first message not yet answered.
    waiting_since: Option<Timestamp>,
    /// When the current episode opened (start or reopening).
    opened_at: Option<Timestamp>,
}

/// A shop's analytics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Analytics {
    pub days: BTreeMap<NaiveDate, Day>,
    conversations: IdMap<ConversationClock>,
    expenses: BTreeMap<uuid::Uuid, (NaiveDate, Money)>,
    /// Shares the texts of cities and "-" (a cache, not state).
    #[serde(skip)]
    interner: Interner,
}

fn counts(status: OrderStatus) -> bool {
    !matches!(
        status,
        OrderStatus::Cancelled | OrderStatus::Returned | OrderStatus::Returning
    )
}

impl Analytics {
    /// Shares the texts of loaded analytics again: a snapshot holds each
    /// day's names of products, SKUs, categories, customers, cities,
    /// couriers and staff as text, which loads as a copy per day; a fold
    /// holds one copy of each (a quarter more memory per order otherwise).
    pub fn share_texts(&mut self) {
        let i = &mut self.interner;
        for day in self.days.values_mut() {
            let keys = day
                .products
                .keys_mut()
                .chain(day.skus.keys_mut())
                .chain(day.categories.keys_mut())
                .chain(day.cities.keys_mut())
                .chain(day.couriers.keys_mut())
                .chain(day.staff.keys_mut())
                .chain(day.responses_by_staff.keys_mut())
                .chain(day.resolutions_by_staff.keys_mut())
                .chain(day.customers.values_mut().map(|(name, _)| name));
            for t in keys {
                i.share(t);
            }
        }
    }

    pub fn apply(
        &mut self,
        meta: &ShopMeta,
        at: At<'_>,
        event: &DomainEvent,
        order: Option<&OrderChange<'_>>,
    ) {
        if let Some(change) = order {
            self.order(meta, event, change);
        }
        match event {
            DomainEvent::ExpenseRecorded(e) => {
                self.expenses.insert(e.expense_id, (e.date, e.total));
                let day = self.day(e.date);
                day.expenses = day.expenses.saturating_add(e.total);
            }
            DomainEvent::ExpenseVoided(e) => {
                if let Some((date, total)) = self.expenses.remove(&e.expense_id) {
                    let day = self.day(date);
                    day.expenses = day.expenses.saturating_sub(total);
                }
            }
            DomainEvent::ConversationStarted(e) => {
                let day = self.day(meta.local_date(e.started_at));
                day.leads += 1;
                day.leads_by_hour[meta.local_hour(e.started_at) as usize] += 1;
                self.conversations.insert(
                    e.conversation_id,
                    ConversationClock {
                        waiting_since: None,
                        opened_at: Some(e.started_at),
                    },
                );
            }
            DomainEvent::MessageReceived(e) => self.inbound(e.conversation_id, e.sent_at),
            DomainEvent::MessageSent(e) => {
                self.outbound(meta, e.conversation_id, &e.staff_id, e.sent_at)
            }
            // A channel's history brought in: its replies are response
            // times as any others, and a customer's last message waits.
            DomainEvent::MessagesImported(e) => {
                for m in &e.messages {
                    match &m.author {
                        Author::Customer => self.inbound(e.conversation_id, m.sent_at),
                        Author::Staff { staff_id } => {
                            self.outbound(meta, e.conversation_id, staff_id, m.sent_at)
                        }
                    }
                }
            }
            DomainEvent::ConversationReopened(e) => {
                let clock = self.conversations.entry(e.conversation_id).or_default();
                clock.opened_at = Some(at.recorded_at);
            }
            DomainEvent::ConversationResolved(e) => {
                let clock = self.conversations.entry(e.conversation_id).or_default();
                if let Some(opened) = clock.opened_at.take() {
                    let staff = self.interner.str(&e.resolved_by);
                    let day = self.day(meta.local_date(opened));
                    day.resolution_seconds.push(seconds(opened, e.resolved_at));
                    *tally(&mut day.resolutions_by_staff, &staff) += 1;
                }
                self.forget_if_idle(e.conversation_id);
            }
            _ => {}
        }
    }

    /// Drops a conversation's clocks once neither runs (most of them: a
    /// resolved conversation keeps nothing here until it is reopened).
    fn forget_if_idle(&mut self, conversation: uuid::Uuid) {
        if self
            .conversations
            .get(&conversation)
            .is_some_and(|c| c.waiting_since.is_none() && c.opened_at.is_none())
        {
            self.conversations.remove(&conversation);
        }
    }

    fn inbound(&mut self, conversation: uuid::Uuid, sent_at: Timestamp) {
        let clock = self.conversations.entry(conversation).or_default();
        clock.waiting_since.get_or_insert(sent_at);
    }

    fn outbound(
        &mut self,
        meta: &ShopMeta,
        conversation: uuid::Uuid,
        staff: &str,
        sent_at: Timestamp,
    ) {
        let clock = self.conversations.entry(conversation).or_default();
        // A reply sent before the wait began (an older message brought in
        // by an import) does not end it.
        if let Some(since) = clock.waiting_since.filter(|&since| sent_at >= since) {
            clock.waiting_since = None;
            let staff = self.interner.str(staff);
            let day = self.day(meta.local_date(since));
            day.response_seconds.push(seconds(since, sent_at));
            *tally(&mut day.responses_by_staff, &staff) += 1;
        }
        self.forget_if_idle(conversation);
    }

    fn day(&mut self, date: NaiveDate) -> &mut Day {
        day_of(&mut self.days, date)
    }

    /// An order just placed.
    pub(crate) fn placed(&mut self, meta: &ShopMeta, o: &OrderSummary) {
        let date = meta.local_date(o.placed_at);
        let hour = meta.local_hour(o.placed_at) as usize;
        let day = day_of(&mut self.days, date);
        day.orders_by_hour[hour] += 1;
        contribute(&mut self.interner, day, o, 1);
    }

    fn order(&mut self, meta: &ShopMeta, event: &DomainEvent, change: &OrderChange<'_>) {
        let o = change.order;
        let date = meta.local_date(o.placed_at);
        if counts(change.previous) && !counts(o.status) {
            let day = day_of(&mut self.days, date);
            contribute(&mut self.interner, day, o, -1);
        }
        let shipped = matches!(event, DomainEvent::OrderShipped(_));
        if shipped || matches!(event, DomainEvent::OrderReturnStarted(_)) {
            let courier = tally(&mut self.day(date).couriers, &o.courier);
            if shipped {
                courier.shipped += 1
            } else {
                courier.returned += 1
            }
        }
    }

    /// Days from `from` to `to`, both included.
    fn range(&self, from: NaiveDate, to: NaiveDate) -> impl Iterator<Item = (&NaiveDate, &Day)> {
        self.days.range(from..=to)
    }

    /// The sales report, one row per day or month (periods with nothing
    /// are left out), and the total.
    pub fn sales(&self, from: NaiveDate, to: NaiveDate, by: Granularity) -> SalesReport {
        let mut rows: BTreeMap<NaiveDate, SalesRow> = BTreeMap::new();
        let mut total = SalesRow::default();
        for (date, day) in self.range(from, to).filter(|(_, d)| d.has_sales()) {
            let period = match by {
                Granularity::Day => *date,
                Granularity::Month => month_of(*date),
            };
            let row = rows.entry(period).or_insert_with(|| SalesRow {
                period: Some(period),
                ..SalesRow::default()
            });
            row.add(day);
            total.add(day);
        }
        SalesReport {
            rows: rows.into_values().map(SalesRow::finish).collect(),
            total: total.finish(),
        }
    }

    /// Best products, SKUs or categories by quantity or revenue.
    pub fn best(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        group: Group,
        by: RankBy,
        limit: usize,
    ) -> Vec<Ranked> {
        let mut tallies: BTreeMap<Text, Tally> = BTreeMap::new();
        let mut add = |k: &Text, t: &Tally| match tallies.get_mut(k) {
            Some(sum) => sum.merge(t),
            None => {
                tallies.insert(Text::clone(k), *t);
            }
        };
        for (_, day) in self.range(from, to) {
            match group {
                Group::Product => day.products.iter().for_each(|(k, t)| add(k, t)),
                Group::Sku => day.skus.iter().for_each(|(k, t)| add(k, t)),
                Group::Category => day.categories.iter().for_each(|(k, t)| add(k, t)),
                Group::Channel => day
                    .channels
                    .iter()
                    .for_each(|(k, t)| add(&Text::from(k.as_str()), t)),
                Group::Staff => day.staff.iter().for_each(|(k, t)| add(k, t)),
                Group::Customer => day
                    .customers
                    .iter()
                    .for_each(|(k, (_, t))| add(&Text::from(k.to_string()), t)),
            }
        }
        let tallies: BTreeMap<String, Tally> = tallies
            .into_iter()
            .map(|(k, t)| (k.to_string(), t))
            .collect();
        let names: BTreeMap<String, String> = match group {
            Group::Customer => self
                .range(from, to)
                .flat_map(|(_, d)| {
                    d.customers
                        .iter()
                        .map(|(k, (n, _))| (k.to_string(), n.to_string()))
                })
                .collect(),
            _ => BTreeMap::new(),
        };
        rank(tallies, by, limit, |k| {
            names.get(k).cloned().unwrap_or_else(|| k.to_owned())
        })
    }

    /// Share of orders per city (Ngorder's best locations).
    pub fn locations(&self, from: NaiveDate, to: NaiveDate, limit: usize) -> Vec<Share> {
        let mut cities: BTreeMap<String, i64> = BTreeMap::new();
        for (_, day) in self.range(from, to) {
            for (c, n) in &day.cities {
                *cities.entry(c.to_string()).or_default() += n;
            }
        }
        shares(cities, limit)
    }

    /// Per courier: orders, shipping cost and its share, return rate.
    pub fn couriers(&self, from: NaiveDate, to: NaiveDate) -> Vec<CourierShare> {
        let mut couriers: BTreeMap<String, CourierTally> = BTreeMap::new();
        for (_, day) in self.range(from, to) {
            for (c, t) in &day.couriers {
                let e = couriers.entry(c.to_string()).or_default();
                e.orders += t.orders;
                e.shipping_cost = e.shipping_cost.saturating_add(t.shipping_cost);
                e.shipped += t.shipped;
                e.returned += t.returned;
            }
        }
        let total = couriers
            .values()
            .fold(0i64, |sum, t| sum.saturating_add(t.shipping_cost.0));
        let mut list: Vec<CourierShare> = couriers
            .into_iter()
            .map(|(courier, t)| CourierShare {
                courier,
                orders: t.orders,
                shipping_cost: t.shipping_cost,
                shipping_share_percent: percent(t.shipping_cost.0, total),
                shipped: t.shipped,
                returned: t.returned,
                return_rate_percent: percent(t.returned, t.shipped),
            })
            .collect();
        list.sort_by(|a, b| {
            b.shipping_cost
                .cmp(&a.shipping_cost)
                .then(a.courier.cmp(&b.courier))
        });
        list
    }

    /// Orders and revenue per weekday, Monday first.
    pub fn weekdays(&self, from: NaiveDate, to: NaiveDate) -> Vec<Tally> {
        let mut week = vec![Tally::default(); 7];
        for (date, day) in self.range(from, to) {
            let t = &mut week[date.weekday().num_days_from_monday() as usize];
            t.add(
                1,
                day.orders,
                0,
                day.gross_sales.saturating_sub(day.discounts),
            );
        }
        week
    }

    /// COD and non-COD orders and their sales.
    pub fn cod_split(&self, from: NaiveDate, to: NaiveDate) -> (Tally, Tally) {
        let (mut cod, mut non_cod) = (Tally::default(), Tally::default());
        for (_, day) in self.range(from, to) {
            cod.merge(&day.cod);
            non_cod.merge(&day.non_cod);
        }
        (cod, non_cod)
    }

    /// Customer service over a range.
    pub fn customer_service(&self, from: NaiveDate, to: NaiveDate) -> ServiceReport {
        let mut report = ServiceReport {
            leads_by_hour: vec![0; 24],
            orders_by_hour: vec![0; 24],
            ..ServiceReport::default()
        };
        let (mut responses, mut resolutions) = (Vec::new(), Vec::new());
        for (_, day) in self.range(from, to) {
            report.leads += day.leads;
            for h in 0..24 {
                report.leads_by_hour[h] += day.leads_by_hour[h];
                report.orders_by_hour[h] += day.orders_by_hour[h];
            }
            responses.extend_from_slice(&day.response_seconds);
            resolutions.extend_from_slice(&day.resolution_seconds);
            for (s, n) in &day.responses_by_staff {
                report.per_staff.entry(s.to_string()).or_default().responses += n;
            }
            for (s, n) in &day.resolutions_by_staff {
                report
                    .per_staff
                    .entry(s.to_string())
                    .or_default()
                    .resolutions += n;
            }
        }
        report.response = Durations::of(responses);
        report.resolution = Durations::of(resolutions);
        report
    }
}

/// Adds (`sign` 1) or takes off (-1) an order's contribution to its day.
/// Sums of money saturate: a day's figures are held at the ends of `i64`
/// rather than stop the fold (see `Money::saturating_add`).
fn contribute(interner: &mut Interner, day: &mut Day, o: &OrderSummary, sign: i64) {
    let t = &o.totals;
    let m = |x: Money| Money(x.0.saturating_mul(sign));
    let add = |sum: &mut Money, x: Money| *sum = sum.saturating_add(m(x));
    let net = t
        .gross
        .saturating_sub(t.line_discounts)
        .saturating_sub(t.order_discounts);
    day.orders += sign;
    add(&mut day.gross_sales, t.gross);
    add(
        &mut day.discounts,
        t.line_discounts.saturating_add(t.order_discounts),
    );
    add(&mut day.shipping, t.shipping);
    add(
        &mut day.order_costs,
        t.other_costs.saturating_add(t.insurance),
    );
    add(&mut day.cost_of_goods, t.cost_of_goods);
    let quantity = o
        .lines
        .iter()
        .fold(0i64, |q, l| q.saturating_add(l.quantity));
    if o.cod {
        &mut day.cod
    } else {
        &mut day.non_cod
    }
    .add(sign, 1, quantity, net);
    for (i, l) in o.lines.iter().enumerate() {
        let (q, total) = (l.quantity, l.line_total);
        // An order counts once for a product, SKU or category, whatever
        // the number of its lines with it.
        let before = &o.lines[..i];
        let first = |same: fn(&LineSummary, &LineSummary) -> bool| {
            i64::from(!before.iter().any(|b| same(b, l)))
        };
        let product = first(|a, b| a.item.product_name == b.item.product_name);
        tally(&mut day.products, &l.item.product_name).add(sign, product, q, total);
        let sku = first(|a, b| a.item.sku == b.item.sku);
        tally(&mut day.skus, &l.item.sku).add(sign, sku, q, total);
        let category = match &l.item.category {
            Some(c) => Text::clone(c),
            None => interner.str("-"),
        };
        // As the tally's key: no category is "-".
        let in_category = first(|a, b| {
            a.item.category.as_deref().unwrap_or("-") == b.item.category.as_deref().unwrap_or("-")
        });
        tally(&mut day.categories, &category).add(sign, in_category, q, total);
    }
    // The shop's customer is the sender (a reseller or dropshipper sends to
    // a buyer of their own, the receiver): Ngorder's best customers are
    // filtered by the category of customer, reseller or dropshipper.
    let customer = day
        .customers
        .entry(o.sender.customer_id)
        .or_insert_with(|| (interner.str(&o.sender.name), Tally::default()));
    customer.1.add(sign, 1, quantity, net);
    let city = interner.str(o.receiver.city.as_deref().unwrap_or("-"));
    *tally(&mut day.cities, &city) += sign;
    let courier = tally(&mut day.couriers, &o.courier);
    courier.orders += sign;
    add(&mut courier.shipping_cost, t.shipping);
    day.channels
        .get_or_insert_with(&o.channel, || (o.channel, Tally::default()))
        .add(sign, 1, quantity, net);
    tally(&mut day.staff, &o.placed_by).add(sign, 1, quantity, net);
}

impl Day {
    /// Whether the sales report has anything to show for the day (a day
    /// can be here for its chats alone).
    fn has_sales(&self) -> bool {
        self.orders != 0
            || [
                self.gross_sales,
                self.discounts,
                self.shipping,
                self.order_costs,
                self.cost_of_goods,
                self.expenses,
            ]
            .iter()
            .any(|m| *m != Money::ZERO)
    }
}

/// The day of `date`, made if missing.
fn day_of(days: &mut BTreeMap<NaiveDate, Day>, date: NaiveDate) -> &mut Day {
    days.entry(date).or_insert_with(|| Day {
        orders_by_hour: vec![0; 24],
        leads_by_hour: vec![0; 24],
        ..Day::default()
    })
}

/// The entry of `key` (a shared text), made if missing. Found as
/// [`SmallMap::get_or_insert_with`] finds it, comparing by [`text_cmp`],
/// and a key that is `key`'s very text is equal without comparing.
fn tally<'a, T: Default>(map: &'a mut SmallMap<Text, T>, key: &Text) -> &'a mut T {
    let found = map.0.binary_search_by(|(k, _)| match Text::ptr_eq(k, key) {
        true => Ordering::Equal,
        false => text_cmp(k, key),
    });
    map.found_or_inserted(found, || (key.clone(), T::default()))
}

fn seconds(from: Timestamp, to: Timestamp) -> i64 {
    (to.0.saturating_sub(from.0) / 1_000_000).max(0)
}

/// `part / whole` in whole percent, rounded half away from zero (Ngorder:
/// 19 of 22 is 86%).
pub fn percent(part: i64, whole: i64) -> i64 {
    if whole == 0 {
        return 0;
    }
    let scaled = i128::from(part) * 200 / i128::from(whole);
    ((scaled + scaled.signum()) / 2) as i64
}

fn shares(counts: BTreeMap<String, i64>, limit: usize) -> Vec<Share> {
    let total: i64 = counts.values().sum();
    let mut list: Vec<Share> = counts
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(key, n)| Share {
            key,
            orders: n,
            percent: percent(n, total),
        })
        .collect();
    list.sort_by(|a, b| b.orders.cmp(&a.orders).then(a.key.cmp(&b.key)));
    list.truncate(limit);
    list
}

fn rank(
    tallies: BTreeMap<String, Tally>,
    by: RankBy,
    limit: usize,
    name: impl Fn(&str) -> String,
) -> Vec<Ranked> {
    let mut list: Vec<Ranked> = tallies
        .into_iter()
        .filter(|(_, t)| t.orders > 0)
        .map(|(key, t)| Ranked {
            name: name(&key),
            key,
            orders: t.orders,
            quantity: t.quantity,
            revenue: t.revenue,
        })
        .collect();
    list.sort_by(|a, b| {
        let (x, y) = match by {
            RankBy::Quantity => (a.quantity, b.quantity),
            RankBy::Revenue => (a.revenue.0, b.revenue.0),
        };
        y.cmp(&x).then(a.key.cmp(&b.key))
    });
    list.truncate(limit);
    list
}

/// Day or month rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Day,
    Month,
}

/// What a ranking groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Product,
    Sku,
    Category,
    Channel,
    Staff,
    Customer,
}

/// What a ranking sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RankBy {
    Quantity,
    Revenue,
}

/// One row of the sales report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesRow {
    /// The day, or the first day of the month; `None` for the total.
    pub period: Option<NaiveDate>,
    pub orders: i64,
    pub gross_sales: Money,
    pub discounts: Money,
    pub net_sales: Money,
    pub shipping: Money,
    pub order_costs: Money,
    pub cost_of_goods: Money,
    pub gross_profit: Money,
    pub expenses: Money,
    pub net_profit: Money,
}

impl SalesRow {
    fn add(&mut self, day: &Day) {
        self.orders += day.orders;
        self.gross_sales = self.gross_sales.saturating_add(day.gross_sales);
        self.discounts = self.discounts.saturating_add(day.discounts);
        self.shipping = self.shipping.saturating_add(day.shipping);
        self.order_costs = self.order_costs.saturating_add(day.order_costs);
        self.cost_of_goods = self.cost_of_goods.saturating_add(day.cost_of_goods);
        self.expenses = self.expenses.saturating_add(day.expenses);
    }

    fn finish(mut self) -> SalesRow {
        self.net_sales = self.gross_sales.saturating_sub(self.discounts);
        self.gross_profit = self.net_sales.saturating_sub(self.cost_of_goods);
        self.net_profit = self.gross_profit.saturating_sub(self.expenses);
        self
    }
}

/// The sales report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesReport {
    pub rows: Vec<SalesRow>,
    pub total: SalesRow,
}

/// An entry of a ranking.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranked {
    pub key: String,
    pub name: String,
    pub orders: i64,
    pub quantity: i64,
    pub revenue: Money,
}

/// A share of orders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Share {
    pub key: String,
    pub orders: i64,
    pub percent: i64,
}

/// A courier's share and return rate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CourierShare {
    pub courier: String,
    pub orders: i64,
    pub shipping_cost: Money,
    pub shipping_share_percent: i64,
    pub shipped: i64,
    pub returned: i64,
    pub return_rate_percent: i64,
}

/// Average, median and 90th percentile of some durations, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durations {
    pub count: i64,
    pub average: i64,
    pub median: i64,
    pub p90: i64,
}

impl Durations {
    /// Nearest-rank percentiles.
    pub fn of(mut samples: Vec<i64>) -> Durations {
        if samples.is_empty() {
            return Durations::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: usize| samples[(p * n).div_ceil(100).clamp(1, n) - 1];
        Durations {
            count: n as i64,
            average: (samples.iter().map(|&s| i128::from(s)).sum::<i128>() / n as i128) as i64,
            median: rank(50),
            p90: rank(90),
        }
    }
}

/// A staff member's service figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffService {
    pub responses: i64,
    pub resolutions: i64,
}

/// Customer service over a range.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceReport {
    pub response: Durations,
    pub resolution: Durations,
    /// Conversations started in the range.
    pub leads: i64,
    /// Conversations started in each hour of the day (local time, 0 to 23).
    pub leads_by_hour: Vec<i64>,
    /// Orders placed in each hour of the day (local time): every order
    /// placed, as leads are every conversation started, so it counts the
    /// orders later cancelled or returned, which the sales report leaves
    /// out.
    pub orders_by_hour: Vec<i64>,
    pub per_staff: BTreeMap<String, StaffService>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ngorder_best_location_share() {
        // 19 of 22 orders from one city is 86%.
        assert_eq!(percent(19, 22), 86);
        assert_eq!(percent(1, 8), 13, "12.5 rounds up");
        assert_eq!(percent(0, 0), 0);
    }

    /// Loaded from a snapshot, two days' keys of one city are one text
    /// again, and the analytics are unchanged.
    #[test]
    fn loaded_keys_are_shared_again() {
        let mut a = Analytics::default();
        for d in 1..=2 {
            let day = a
                .days
                .entry(NaiveDate::from_ymd_opt(2025, 10, d).unwrap())
                .or_default();
            *day.cities
                .get_or_insert_with("Malang", || ("Malang".into(), 0)) += 1;
        }
        let mut loaded: Analytics = rmp_serde::from_slice(&rmp_serde::to_vec(&a).unwrap()).unwrap();
        let city = |a: &Analytics, d: usize| {
            a.days
                .values()
                .nth(d)
                .unwrap()
                .cities
                .iter()
                .next()
                .unwrap()
                .0
                .clone()
        };
        assert!(!Text::ptr_eq(&city(&loaded, 0), &city(&loaded, 1)));
        loaded.share_texts();
        assert!(Text::ptr_eq(&city(&loaded, 0), &city(&loaded, 1)));
        assert_eq!(loaded, a);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let d = Durations::of((1..=10).collect());
        assert_eq!((d.count, d.average, d.median, d.p90), (10, 5, 5, 9));
        assert_eq!(Durations::of(vec![]), Durations::default());
        assert_eq!(Durations::of(vec![7]).p90, 7);
    }
}
