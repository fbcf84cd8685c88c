//! The report a rebuild prints: for each shop, balances, withdrawals,
//! stock per SKU and warehouse, every order's status and money, order
//! counts per status, and the sales report by month over the whole
//! history, plus the log position it reflects.
//!
//! The report is deterministic: maps are ordered and keyed by text (SKU
//! and warehouse as `SKU@warehouse-id`, orders by id, months as
//! `YYYY-MM`), and [`Report::to_json`] writes every object's keys sorted,
//! so the same log gives the same bytes and two reports can be compared
//! with `diff`. Money is in the currency's minor unit.
//!
//! A report is made from [`Projections`], whether folded here or loaded
//! from a server's snapshot, so both can be compared.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use kedai_engine::{Position, ShopId};
use kedai_projections::analytics::{Granularity, SalesRow};
use kedai_projections::orders::{OrderSummary, OrdersView};
use kedai_projections::{Projections, ShopView};
use serde::{Deserialize, Serialize};

use crate::payload::Sorted;

/// Names the report format (checked when a report is read back).
pub const REPORT_FORMAT: &str = "kedai-replay rebuild v1";

/// Every order of a shop in a report read back: by order id.
pub type Orders = BTreeMap<String, OrderReport>;

/// The projections of a ledger at one position. `O` is how each shop's
/// orders are held: a map ([`Orders`]) in a report read back or compared,
/// or [`OrdersOf`], the projections' own orders, which
/// [`Report::write_json`] writes by hand (what `kedai-replay rebuild`
/// prints; the same bytes as the map's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report<O = Orders> {
    pub format: String,
    /// Position of the last event folded.
    pub position: Position,
    /// By shop id.
    pub shops: BTreeMap<String, ShopReport<O>>,
    /// Events skipped because their type is unknown to this build.
    pub skipped_events: u64,
}

/// One shop's projections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShopReport<O = Orders> {
    pub balances: BalancesReport,
    pub currency: Option<String>,
    pub name: String,
    /// Orders per status, every status.
    pub order_counts: BTreeMap<String, u64>,
    /// By order id.
    pub orders: O,
    /// By month (`YYYY-MM`), in the shop's time zone; months without sales
    /// are left out.
    pub sales_by_month: BTreeMap<String, SalesReportRow>,
    pub sales_total: SalesReportRow,
    /// By `SKU@warehouse-id`.
    pub stock: BTreeMap<String, StockReport>,
    /// By withdrawal id.
    pub withdrawals: BTreeMap<String, WithdrawalReport>,
}

/// The seller's money.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BalancesReport {
    pub available: i64,
    pub cashback: i64,
    pub cod_net_profit: i64,
    pub ledger_entries: u64,
    pub pending: i64,
    pub service_fees: i64,
    pub withdrawing: i64,
    pub withdrawn: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalReport {
    pub amount: i64,
    pub fee: i64,
    pub status: String,
}

/// One SKU in one warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockReport {
    pub available: i64,
    pub on_hand: i64,
    pub reserved: i64,
    pub sku: String,
    pub warehouse: String,
    pub warehouse_id: String,
}

/// One order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderReport {
    pub awb: Option<String>,
    pub paid: i64,
    pub payment_status: String,
    pub placed_at: String,
    pub refunded: i64,
    pub remaining: i64,
    pub status: String,
    pub total: i64,
}

/// One row of the sales report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesReportRow {
    pub cost_of_goods: i64,
    pub discounts: i64,
    pub expenses: i64,
    pub gross_profit: i64,
    pub gross_sales: i64,
    pub net_profit: i64,
    pub net_sales: i64,
    pub order_costs: i64,
    pub orders: i64,
    pub shipping: i64,
}

impl Report {
    /// The report of `projections`, of one shop or of all.
    pub fn from_projections(projections: &Projections, shop: Option<ShopId>) -> Report {
        Report::of(projections, shop, orders_report)
    }

    /// The report as JSON: keys sorted, two-space indentation, a final
    /// newline. The same report always gives the same bytes.
    ///
    /// Every struct here declares its fields in alphabetical order and
    /// every map is a `BTreeMap` with text keys, so serialising directly
    /// gives sorted keys without building a JSON tree first (a test checks
    /// this against [`Sorted`]).
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("reports have text keys");
        text.push('\n');
        text
    }

    /// [`Report::to_json`] by way of a JSON tree sorted by [`Sorted`]: the
    /// same bytes, more slowly (for tests).
    pub fn to_sorted_json(&self) -> String {
        let value = serde_json::to_value(self).expect("reports have text keys");
        let mut text = serde_json::to_string_pretty(&Sorted(&value)).expect("JSON values print");
        text.push('\n');
        text
    }

    /// Reads a report written by [`Report::to_json`].
    pub fn from_json(text: &str) -> Result<Report, String> {
        let report: Report = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if report.format != REPORT_FORMAT {
            return Err(format!(
                "report format {:?}, this build reads {REPORT_FORMAT:?}",
                report.format
            ));
        }
        Ok(report)
    }
}

impl<'a> Report<OrdersOf<'a>> {
    /// The report of `projections` to write ([`Report::write_json`]): the
    /// orders are not copied into a map but written from the projections
    /// (a big rebuild's report spent half its time building that map).
    pub fn streamed(projections: &'a Projections, shop: Option<ShopId>) -> Report<OrdersOf<'a>> {
        Report::of(projections, shop, |view| OrdersOf(&view.orders))
    }
}

impl<O> Report<O> {
    fn of<'a>(
        projections: &'a Projections,
        shop: Option<ShopId>,
        orders: impl Fn(&'a ShopView) -> O,
    ) -> Report<O> {
        Report {
            format: REPORT_FORMAT.into(),
            position: projections.position,
            skipped_events: projections.skipped,
            shops: projections
                .shops
                .iter()
                .filter(|(id, _)| shop.is_none_or(|s| s == **id))
                .map(|(id, view)| (id.to_string(), ShopReport::from_view(view, orders(view))))
                .collect(),
        }
    }
}

impl<O> ShopReport<O> {
    fn from_view(view: &ShopView, orders: O) -> ShopReport<O> {
        let b = &view.balances;
        let meta = &view.meta;
        ShopReport {
            name: meta.name.clone(),
            currency: meta.currency.map(|c| label(&c)),
            balances: BalancesReport {
                available: b.available.0,
                cashback: b.cashback.0,
                cod_net_profit: b.cod_net_profit.0,
                ledger_entries: b.ledger_len() as u64,
                pending: b.pending.0,
                service_fees: b.service_fees.0,
                withdrawing: b.withdrawing.0,
                withdrawn: b.withdrawn.0,
            },
            withdrawals: b
                .withdrawals
                .iter()
                .map(|(id, w)| {
                    (
                        id.to_string(),
                        WithdrawalReport {
                            amount: w.amount.0,
                            fee: w.fee.0,
                            status: label(&w.status),
                        },
                    )
                })
                .collect(),
            stock: view
                .stock
                .levels
                .iter()
                .map(|((sku, warehouse), level)| {
                    (
                        format!("{sku}@{warehouse}"),
                        StockReport {
                            available: level.available(),
                            on_hand: level.on_hand,
                            reserved: level.reserved,
                            sku: sku.to_string(),
                            warehouse: meta.warehouse_name(*warehouse),
                            warehouse_id: warehouse.to_string(),
                        },
                    )
                })
                .collect(),
            orders,
            order_counts: view
                .orders
                .counts()
                .into_iter()
                .map(|(status, n)| (label(&status), n as u64))
                .collect(),
            sales_by_month: sales_by_month(view),
            sales_total: sales_total(view),
        }
    }
}

/// A shop's orders, sorted by id, on up to 2 threads (each sorts half,
/// and the halves are merged): a UUID's text sorts as its bytes do, and
/// its bytes as the big-endian number `as_u128` reads (kept beside each
/// order, so sorting does not read the orders again).
pub(crate) fn sorted_orders(orders: &OrdersView, threads: usize) -> Vec<&OrderSummary> {
    let in_order: Vec<&OrderSummary> = orders.all().iter().collect();
    // Ids that grow with time (UUID v7, or a shop's own numbering) come
    // placed in order already.
    if in_order.is_sorted_by_key(|o| o.order_id.0.as_u128()) {
        return in_order;
    }
    let keyed = in_order
        .into_iter()
        .map(|o| (o.order_id.0.as_u128(), o))
        .collect();
    sort_by_key(keyed, threads, PARALLEL_SORT_MIN)
}

/// The values in the order of their keys (equal keys in any order), on
/// 2 threads when `threads` allows and each half holds at least
/// `min_half`: each thread sorts a half, and the halves are merged.
fn sort_by_key<T: Copy + Send>(
    mut keyed: Vec<(u128, T)>,
    threads: usize,
    min_half: usize,
) -> Vec<T> {
    if threads < 2 || keyed.len() < 2 * min_half.max(1) {
        keyed.sort_unstable_by_key(|&(key, _)| key);
        return keyed.into_iter().map(|(_, v)| v).collect();
    }
    let len = keyed.len();
    let (left, right) = keyed.split_at_mut(len / 2);
    std::thread::scope(|s| {
        s.spawn(|| left.sort_unstable_by_key(|&(key, _)| key));
        right.sort_unstable_by_key(|&(key, _)| key);
    });
    let (mut left, mut right) = (left.iter().peekable(), right.iter().peekable());
    let mut sorted = Vec::with_capacity(len);
    loop {
        let next = match (left.peek(), right.peek()) {
            (Some(l), Some(r)) if l.0 <= r.0 => left.next(),
            (Some(_), Some(_)) => right.next(),
            (Some(_), None) => left.next(),
            (None, _) => right.next(),
        };
        match next {
            Some(&(_, v)) => sorted.push(v),
            None => return sorted,
        }
    }
}

/// Fewest orders in each half of a sort on two threads.
const PARALLEL_SORT_MIN: usize = 32_768;

/// Every order, keyed by id. The orders are sorted by id before the map is
/// built, so the map's own sort of the keys then finds them in order
/// (sorting the texts themselves was most of a big rebuild's report time),
/// and each status's label is worked out once.
fn orders_report(view: &ShopView) -> Orders {
    let mut labels = Labels::default();
    sorted_orders(&view.orders, 1)
        .into_iter()
        .map(|o| {
            let (payment_status, status) = labels.of(o);
            (
                o.order_id.to_string(),
                OrderReport {
                    awb: o.awb.as_deref().map(str::to_owned),
                    paid: o.paid.0,
                    payment_status: payment_status.to_owned(),
                    placed_at: o.placed_at.to_string(),
                    refunded: o.refunded.0,
                    remaining: o.remaining.0,
                    status: status.to_owned(),
                    total: o.totals.total.0,
                },
            )
        })
        .collect()
}

/// A shop's orders, to be written as [`Orders`] is (a map by id, in
/// order, each an [`OrderReport`]) straight from its projections, by
/// `Report::write_json` (`report_json`).
#[derive(Debug, Clone, Copy)]
pub struct OrdersOf<'a>(pub(crate) &'a OrdersView);

/// The labels of order statuses, each worked out once, by the status's
/// number: as they are (for a map of [`OrderReport`]s) or as JSON strings
/// (for the report written by hand, `report_json`).
#[derive(Default)]
pub(crate) struct Labels {
    quoted: bool,
    statuses: Vec<Option<String>>,
    payment_statuses: Vec<Option<String>>,
}

impl Labels {
    /// Labels as JSON strings, quotes included.
    pub(crate) fn quoted() -> Labels {
        Labels {
            quoted: true,
            ..Labels::default()
        }
    }

    /// The order's payment status and status.
    pub(crate) fn of(&mut self, o: &OrderSummary) -> (&str, &str) {
        let quoted = self.quoted;
        let payment_status = cached(
            &mut self.payment_statuses,
            o.payment_status as usize,
            &o.payment_status,
            quoted,
        );
        let status = cached(&mut self.statuses, o.status as usize, &o.status, quoted);
        (payment_status, status)
    }
}

/// The label of `value`, number `at` in `cache`, worked out if missing.
fn cached<'c>(
    cache: &'c mut Vec<Option<String>>,
    at: usize,
    value: &impl Serialize,
    quoted: bool,
) -> &'c str {
    if cache.len() <= at {
        cache.resize(at + 1, None);
    }
    cache[at].get_or_insert_with(|| {
        let text = label(value);
        if quoted {
            serde_json::to_string(&text).expect("a text is JSON")
        } else {
            text
        }
    })
}

/// Every month with sales, over the whole history.
fn sales_by_month(view: &ShopView) -> BTreeMap<String, SalesReportRow> {
    let Some((from, to)) = history_span(view) else {
        return BTreeMap::new();
    };
    view.analytics
        .sales(from, to, Granularity::Month)
        .rows
        .iter()
        .filter_map(|row| {
            let period = row.period?;
            Some((period.format("%Y-%m").to_string(), sales_row(row)))
        })
        .collect()
}

fn sales_total(view: &ShopView) -> SalesReportRow {
    match history_span(view) {
        Some((from, to)) => sales_row(&view.analytics.sales(from, to, Granularity::Month).total),
        None => SalesReportRow::default(),
    }
}

/// The first and last day analytics know of.
fn history_span(view: &ShopView) -> Option<(NaiveDate, NaiveDate)> {
    let days = &view.analytics.days;
    Some((*days.keys().next()?, *days.keys().next_back()?))
}

fn sales_row(row: &SalesRow) -> SalesReportRow {
    SalesReportRow {
        cost_of_goods: row.cost_of_goods.0,
        discounts: row.discounts.0,
        expenses: row.expenses.0,
        gross_profit: row.gross_profit.0,
        gross_sales: row.gross_sales.0,
        net_profit: row.net_profit.0,
        net_sales: row.net_sales.0,
        order_costs: row.order_costs.0,
        orders: row.orders,
        shipping: row.shipping.0,
    }
}

/// An enum's serialised name (`ready_for_pickup`, `IDR`).
pub(crate) fn label<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// On one thread or two, with halves of any size, every value
        /// comes out once, in the order of its key.
        #[test]
        fn values_come_out_in_the_order_of_their_keys(
            keys in proptest::collection::vec(0u128..50, 0..300),
            threads in 1usize..=3,
            min_half in 0usize..40,
        ) {
            let keyed: Vec<(u128, usize)> = keys.iter().copied().zip(0..).collect();
            let sorted = sort_by_key(keyed, threads, min_half);
            let mut seen = sorted.clone();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..keys.len()).collect::<Vec<_>>());
            prop_assert!(sorted.windows(2).all(|w| keys[w[0]] <= keys[w[1]]));
        }
    }
}
