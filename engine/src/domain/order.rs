//! Orders: placing (prices, totals, allocation and reservation of stock),
//! payments with installments, and the status lifecycle.
//!
//! Totals (Ngorder, checked against its samples):
//! `line_total = quantity * unit_price - line discount`,
//! `subtotal = sum(line_total)`,
//! `total = subtotal + shipping + other costs + insurance - order discounts`.
//! Percentage discounts and costs are basis points of the line's gross
//! (line discounts) or of the subtotal (order costs), rounded half away
//! from zero once each.
//!
//! Lifecycle:
//! `placed -> processing -> packed -> ready_for_pickup -> shipped -> delivered -> completed`;
//! `cancelled` before shipping (reservations released, paid money
//! refundable); `returning -> returned` after shipping (goods restocked on
//! arrival); `lost` while with the courier. Every other move is a
//! [`Rejection::IllegalTransition`] naming the order's status.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::Context;
use super::catalog::{
    Customer, CustomerCategory, NAME_LEN_MAX, NOTE_LEN_MAX, ProductKind, VariationSpec, Warehouses,
};
use super::events::*;
use super::ids::{CustomerId, OrderId, PaymentId, ProductId, Sku, WarehouseId};
use super::money::{BasisPoints, Money};
use super::rejection::{Check, FieldError, Rejection, Shortage};
use super::stock::{self, QUANTITY_MAX, StockItem};
use crate::event::Timestamp;

/// Most lines in one order.
pub const LINES_MAX: usize = 200;
/// Most order costs in one order.
pub const COSTS_MAX: usize = 20;
/// Largest unit price, shipping cost or nominal amount accepted (10^13
/// minor units: far above any real order, far below overflow).
pub const AMOUNT_MAX: i64 = 10_000_000_000_000;

/// Where an order came from (Ngorder `order_category`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    App,
    Storefront,
    Shopee,
    Tokopedia,
    Lazada,
    Whatsapp,
    QuickOrder,
    Other,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::App => "APP",
            Channel::Storefront => "STOREFRONT",
            Channel::Shopee => "SHOPEE",
            Channel::Tokopedia => "TOKOPEDIA",
            Channel::Lazada => "LAZADA",
            Channel::Whatsapp => "WHATSAPP",
            Channel::QuickOrder => "QUICK_ORDER",
            Channel::Other => "OTHER",
        }
    }
}

/// A customer as the order saw them (kept, so later edits of the customer
/// do not change history).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CustomerSnapshot {
    pub customer_id: CustomerId,
    pub name: String,
    pub phone: Option<String>,
    pub category: CustomerCategory,
    pub address: Option<String>,
    pub district: Option<String>,
    pub city: Option<String>,
    pub province: Option<String>,
    pub postal_code: Option<String>,
}

/// A nominal amount or a percentage (in basis points).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Amount {
    Nominal { nominal: Money },
    Percentage { percentage_bp: BasisPoints },
}

impl Amount {
    /// The amount this is of `base`.
    pub fn of(self, base: Money) -> Money {
        match self {
            Amount::Nominal { nominal } => nominal,
            Amount::Percentage { percentage_bp } => percentage_bp.apply(base),
        }
    }

    fn check(self, c: &mut Check, field: &str) {
        match self {
            Amount::Nominal { nominal } => {
                c.that(
                    (0..=AMOUNT_MAX).contains(&nominal.0),
                    format!("{field}.nominal"),
                    "must be 0 or more",
                );
            }
            Amount::Percentage { percentage_bp } => {
                c.that(
                    percentage_bp.0 <= 10_000,
                    format!("{field}.percentage_bp"),
                    "must be at most 10000 (100%)",
                );
            }
        }
    }
}

/// Where the goods of a line are taken from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub warehouse_id: WarehouseId,
    pub quantity: i64,
}

/// A line as placed: the price and cost of that moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedLine {
    pub sku: Sku,
    pub product_id: ProductId,
    pub product_name: String,
    pub category: Option<String>,
    /// Option values, e.g. `M / merah`.
    pub variation: String,
    pub kind: ProductKind,
    pub quantity: i64,
    pub unit_price: Money,
    pub unit_cost: Money,
    pub discount: Option<Amount>,
    pub discount_amount: Money,
    pub line_total: Money,
    pub weight_grams: u32,
    /// Empty for products of type `R` (not counted).
    pub allocations: Vec<Allocation>,
}

/// Courier and service chosen, and what shipping costs the buyer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shipping {
    /// Courier code: JNE, J&T, SICEPAT, SAP, NINJA, LION, POS, IDEXPRESS, ...
    pub courier: String,
    /// Service: REG, YES, OKE, ...
    pub service: String,
    pub cost: Money,
}

/// Kinds of order cost (Ngorder `order_cost.category`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CostCategory {
    Discount,
    #[serde(rename = "OTHER COST", alias = "OTHER_COST")]
    OtherCost,
    Insurance,
}

/// An order cost as asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderCost {
    pub name: String,
    pub category: CostCategory,
    pub amount: Amount,
}

/// An order cost with its amount worked out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedCost {
    pub name: String,
    pub category: CostCategory,
    pub amount: Amount,
    pub value: Money,
}

/// An order's totals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Sum of quantity x unit price, before line discounts.
    pub gross: Money,
    pub line_discounts: Money,
    pub subtotal: Money,
    pub order_discounts: Money,
    pub other_costs: Money,
    pub insurance: Money,
    pub shipping: Money,
    pub total: Money,
    /// Sum of quantity x unit cost: the cost of goods sold.
    pub cost_of_goods: Money,
}

/// How a payment was made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentMethod {
    BankTransfer,
    VirtualAccount,
    EWallet,
    Cod,
    MarketplaceEscrow,
    Cash,
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    Placed,
    Processing,
    Packed,
    ReadyForPickup,
    Shipped,
    Delivered,
    Completed,
    Cancelled,
    Returning,
    Returned,
    Lost,
}

impl OrderStatus {
    pub const ALL: [OrderStatus; 11] = [
        OrderStatus::Placed,
        OrderStatus::Processing,
        OrderStatus::Packed,
        OrderStatus::ReadyForPickup,
        OrderStatus::Shipped,
        OrderStatus::Delivered,
        OrderStatus::Completed,
        OrderStatus::Cancelled,
        OrderStatus::Returning,
        OrderStatus::Returned,
        OrderStatus::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OrderStatus::Placed => "placed",
            OrderStatus::Processing => "processing",
            OrderStatus::Packed => "packed",
            OrderStatus::ReadyForPickup => "ready_for_pickup",
            OrderStatus::Shipped => "shipped",
            OrderStatus::Delivered => "delivered",
            OrderStatus::Completed => "completed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Returning => "returning",
            OrderStatus::Returned => "returned",
            OrderStatus::Lost => "lost",
        }
    }

    /// Komship's word for the status (Orderku).
    pub fn komship(self) -> &'static str {
        match self {
            OrderStatus::Placed | OrderStatus::Processing => "Diajukan",
            OrderStatus::Packed | OrderStatus::ReadyForPickup => "Dipacking",
            OrderStatus::Shipped => "Dikirim",
            OrderStatus::Delivered | OrderStatus::Completed => "Diterima",
            OrderStatus::Returning | OrderStatus::Returned => "Retur",
            OrderStatus::Cancelled => "Batal",
            OrderStatus::Lost => "Hilang",
        }
    }

    /// Ngorder's order list tab for the status and payment.
    pub fn ngorder(self, payment: PaymentStatus) -> &'static str {
        match (self, payment) {
            (OrderStatus::Cancelled, _) => "CANCELED",
            (OrderStatus::Delivered | OrderStatus::Completed, _) => "DELIVERED",
            (
                OrderStatus::Shipped
                | OrderStatus::Returning
                | OrderStatus::Returned
                | OrderStatus::Lost,
                _,
            ) => "ON PROCESS",
            (_, PaymentStatus::Unpaid) => "UNPAID",
            _ => "NO AWB",
        }
    }
}

impl fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much of an order is paid (Ngorder: UNPAID, INSTALLMENT, PAID).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Unpaid,
    PartiallyPaid,
    Paid,
    Refunded,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Unpaid => "unpaid",
            PaymentStatus::PartiallyPaid => "partially_paid",
            PaymentStatus::Paid => "paid",
            PaymentStatus::Refunded => "refunded",
        }
    }
}

/// An order as its stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Order {
    pub placed: Option<OrderPlaced>,
    pub status: Option<OrderStatus>,
    pub paid_total: Money,
    pub refunded_total: Money,
    pub awb: Option<String>,
}

impl Order {
    pub fn evolve(&mut self, event: &DomainEvent) {
        let status = match event {
            DomainEvent::OrderPlaced(e) => {
                self.placed = Some((**e).clone());
                OrderStatus::Placed
            }
            DomainEvent::OrderPaymentRecorded(e) => {
                self.paid_total = e.paid_total;
                return;
            }
            DomainEvent::OrderRefunded(e) => {
                self.refunded_total = self.refunded_total + e.amount;
                return;
            }
            DomainEvent::OrderProcessing(_) => OrderStatus::Processing,
            DomainEvent::OrderPacked(_) => OrderStatus::Packed,
            DomainEvent::OrderReadyForPickup(_) => OrderStatus::ReadyForPickup,
            DomainEvent::OrderShipped(e) => {
                self.awb = Some(e.awb.clone());
                OrderStatus::Shipped
            }
            DomainEvent::OrderDelivered(_) => OrderStatus::Delivered,
            DomainEvent::OrderCompleted(_) => OrderStatus::Completed,
            DomainEvent::OrderCancelled(_) => OrderStatus::Cancelled,
            DomainEvent::OrderReturnStarted(_) => OrderStatus::Returning,
            DomainEvent::OrderReturnReceived(_) => OrderStatus::Returned,
            DomainEvent::OrderLost(_) => OrderStatus::Lost,
            _ => return,
        };
        self.status = Some(status);
    }

    pub fn total(&self) -> Money {
        self.placed.as_ref().map_or(Money::ZERO, |p| p.totals.total)
    }

    pub fn remaining(&self) -> Money {
        (self.total() - self.paid_total).max(Money::ZERO)
    }

    pub fn payment_status(&self) -> PaymentStatus {
        payment_status(self.total(), self.paid_total, self.refunded_total)
    }

    /// Every (SKU, warehouse) the order holds or held goods in.
    pub fn stock_keys(&self) -> Vec<(Sku, WarehouseId)> {
        let mut keys: Vec<(Sku, WarehouseId)> = self
            .placed
            .iter()
            .flat_map(|p| &p.lines)
            .flat_map(|l| {
                l.allocations
                    .iter()
                    .map(|a| (l.sku.clone(), a.warehouse_id))
            })
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// The payment status for an order of `total` with `paid` and `refunded`.
pub fn payment_status(total: Money, paid: Money, refunded: Money) -> PaymentStatus {
    if refunded.is_positive() && refunded >= paid {
        PaymentStatus::Refunded
    } else if paid.is_positive() && paid >= total {
        PaymentStatus::Paid
    } else if paid.is_positive() {
        PaymentStatus::PartiallyPaid
    } else {
        PaymentStatus::Unpaid
    }
}

// -------------------------------------------------------------- placing

/// One line as asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineInput {
    pub sku: Sku,
    pub quantity: i64,
    /// Take the goods from this warehouse; else they are allocated.
    #[serde(default)]
    pub warehouse_id: Option<WarehouseId>,
    /// The price agreed elsewhere (a marketplace order); else the catalog
    /// price for the sender's category.
    #[serde(default)]
    pub unit_price: Option<Money>,
    #[serde(default)]
    pub discount: Option<Amount>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceOrder {
    pub order_id: OrderId,
    pub channel: Channel,
    #[serde(default)]
    pub order_source: Option<String>,
    pub sender_id: CustomerId,
    /// Defaults to the sender.
    #[serde(default)]
    pub receiver_id: Option<CustomerId>,
    pub lines: Vec<LineInput>,
    pub shipping: Shipping,
    #[serde(default)]
    pub cod: bool,
    #[serde(default)]
    pub costs: Vec<OrderCost>,
    #[serde(default)]
    pub note: Option<String>,
}

impl PlaceOrder {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.that(
            !self.lines.is_empty(),
            "lines",
            "an order needs at least one line",
        )
        .that(
            self.lines.len() <= LINES_MAX,
            "lines",
            format!("at most {LINES_MAX} lines"),
        )
        .that(
            self.costs.len() <= COSTS_MAX,
            "costs",
            format!("at most {COSTS_MAX} costs"),
        )
        .text(&self.shipping.courier, "shipping.courier", true, 50)
        .text(&self.shipping.service, "shipping.service", false, 50)
        .that(
            (0..=AMOUNT_MAX).contains(&self.shipping.cost.0),
            "shipping.cost",
            "must be 0 or more",
        );
        if let Some(source) = &self.order_source {
            c.text(source, "order_source", false, NAME_LEN_MAX);
        }
        if let Some(note) = &self.note {
            c.text(note, "note", false, NOTE_LEN_MAX);
        }
        for (i, line) in self.lines.iter().enumerate() {
            c.that(
                (1..=QUANTITY_MAX).contains(&line.quantity),
                format!("lines[{i}].quantity"),
                format!("must be 1 to {QUANTITY_MAX}"),
            );
            if let Some(p) = line.unit_price {
                c.that(
                    (0..=AMOUNT_MAX).contains(&p.0),
                    format!("lines[{i}].unit_price"),
                    "must be 0 or more",
                );
            }
            if let Some(d) = line.discount {
                d.check(&mut c, &format!("lines[{i}].discount"));
            }
        }
        for (i, cost) in self.costs.iter().enumerate() {
            c.text(&cost.name, &format!("costs[{i}].name"), true, NAME_LEN_MAX);
            cost.amount.check(&mut c, &format!("costs[{i}].amount"));
        }
        c.finish()
    }
}

/// A variation as the order needs it: which product, what kind.
#[derive(Clone, Debug)]
pub struct CatalogEntry<'a> {
    pub product_id: ProductId,
    pub product_name: &'a str,
    pub category: Option<&'a str>,
    pub kind: ProductKind,
    pub variation: &'a VariationSpec,
}

/// What placing an order reads besides the order itself.
#[derive(Debug)]
pub struct OrderInputs<'a> {
    pub sender: &'a Customer,
    pub receiver: &'a Customer,
    /// Every SKU of the order.
    pub catalog: &'a BTreeMap<Sku, CatalogEntry<'a>>,
    pub warehouses: &'a Warehouses,
    /// Every (SKU, warehouse) item of the order's tracked SKUs, for every
    /// warehouse a line may take goods from.
    pub stock: &'a BTreeMap<(Sku, WarehouseId), &'a StockItem>,
}

/// The events of a placed order: the order's own, and a reservation per
/// stock item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub order: DomainEvent,
    pub reservations: Vec<((Sku, WarehouseId), DomainEvent)>,
}

fn snapshot(id: CustomerId, customer: &Customer) -> Result<CustomerSnapshot, Rejection> {
    let d = customer
        .details
        .as_ref()
        .ok_or(Rejection::UnknownCustomer { customer_id: id })?;
    Ok(CustomerSnapshot {
        customer_id: id,
        name: d.name.clone(),
        phone: d.phone.clone(),
        category: d.category,
        address: d.address.clone(),
        district: d.district.clone(),
        city: d.city.clone(),
        province: d.province.clone(),
        postal_code: d.postal_code.clone(),
    })
}

/// Decides a new order: prices from the sender's category (or the line's
/// agreed price), totals, and where each line's goods come from. A line
/// without a warehouse takes from the default warehouse first, then from
/// the warehouse with the most available, splitting if it must. If any
/// tracked SKU is short, the whole order is refused, naming every SKU
/// short.
pub fn place_order(
    order: &Order,
    cmd: &PlaceOrder,
    inputs: &OrderInputs<'_>,
    ctx: &Context,
) -> Result<Placement, Rejection> {
    if order.placed.is_some() {
        return Err(Rejection::OrderExists {
            order_id: cmd.order_id,
        });
    }
    let sender = snapshot(cmd.sender_id, inputs.sender)?;
    let receiver = snapshot(cmd.receiver_id.unwrap_or(cmd.sender_id), inputs.receiver)?;
    let mut taken: BTreeMap<(Sku, WarehouseId), i64> = BTreeMap::new();
    let mut shortages: Vec<Shortage> = Vec::new();
    let mut lines = Vec::with_capacity(cmd.lines.len());
    for input in &cmd.lines {
        let entry = inputs
            .catalog
            .get(&input.sku)
            .ok_or_else(|| Rejection::UnknownSku {
                sku: input.sku.clone(),
            })?;
        let v = entry.variation;
        if entry.kind == ProductKind::Supplier && !v.in_stock {
            return Err(Rejection::SupplierOutOfStock {
                sku: input.sku.clone(),
            });
        }
        let allocations = if entry.kind.is_tracked() {
            match allocate(input, entry.kind, inputs, &mut taken)? {
                Ok(allocations) => allocations,
                Err(shortage) => {
                    shortages.push(shortage);
                    Vec::new()
                }
            }
        } else {
            Vec::new()
        };
        let unit_price = input
            .unit_price
            .unwrap_or_else(|| v.unit_price(sender.category, input.quantity));
        // Price and quantity are each bounded, their product is not: a
        // line (and its cost) is at most the largest amount.
        let bounded = |unit: Money| {
            unit.checked_mul(input.quantity)
                .filter(|m| m.0 <= AMOUNT_MAX)
                .ok_or_else(|| Rejection::LineTooLarge {
                    sku: input.sku.clone(),
                    quantity: input.quantity,
                    unit,
                })
        };
        let gross = bounded(unit_price)?;
        bounded(v.cost)?;
        let discount_amount = input.discount.map_or(Money::ZERO, |d| d.of(gross));
        if discount_amount > gross {
            return Err(Rejection::DiscountExceedsLine {
                sku: input.sku.clone(),
                discount: discount_amount,
                line: gross,
            });
        }
        lines.push(PlacedLine {
            sku: input.sku.clone(),
            product_id: entry.product_id,
            product_name: entry.product_name.to_owned(),
            category: entry.category.map(str::to_owned),
            variation: v.label(),
            kind: entry.kind,
            quantity: input.quantity,
            unit_price,
            unit_cost: v.cost,
            discount: input.discount,
            discount_amount,
            line_total: gross - discount_amount,
            weight_grams: v.weight_grams,
            allocations,
        });
    }
    if !shortages.is_empty() {
        return Err(Rejection::InsufficientStock { shortages });
    }
    let (costs, totals) = totals(&lines, &cmd.costs, cmd.shipping.cost);
    if totals.total.is_negative() {
        return Err(Rejection::TotalBelowZero {
            total: totals.total,
        });
    }
    let reservations = lines
        .iter()
        .flat_map(|l| l.allocations.iter().map(move |a| (l, a)))
        .map(|(l, a)| {
            let key = (l.sku.clone(), a.warehouse_id);
            let event = StockReserved {
                sku: l.sku.clone(),
                warehouse_id: a.warehouse_id,
                order_id: cmd.order_id,
                quantity: a.quantity,
            };
            (key, event.into())
        })
        .collect();
    let placed = OrderPlaced {
        order_id: cmd.order_id,
        channel: cmd.channel,
        order_source: cmd
            .order_source
            .as_ref()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        sender,
        receiver,
        lines,
        shipping: Shipping {
            courier: cmd.shipping.courier.trim().to_uppercase(),
            service: cmd.shipping.service.trim().to_uppercase(),
            cost: cmd.shipping.cost,
        },
        cod: cmd.cod,
        costs,
        totals,
        note: cmd
            .note
            .as_ref()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty()),
        placed_at: ctx.now,
    };
    Ok(Placement {
        order: placed.into(),
        reservations,
    })
}

/// Where one line's goods come from. `Err(Rejection)` for an unknown
/// warehouse; `Ok(Err(shortage))` when there is not enough.
fn allocate(
    line: &LineInput,
    kind: ProductKind,
    inputs: &OrderInputs<'_>,
    taken: &mut BTreeMap<(Sku, WarehouseId), i64>,
) -> Result<Result<Vec<Allocation>, Shortage>, Rejection> {
    let empty = StockItem::default();
    let available = |w: WarehouseId, taken: &BTreeMap<(Sku, WarehouseId), i64>| {
        let key = (line.sku.clone(), w);
        inputs
            .stock
            .get(&key)
            .copied()
            .unwrap_or(&empty)
            .available()
            - taken.get(&key).copied().unwrap_or(0)
    };
    let preorder = kind == ProductKind::Preorder;
    if let Some(w) = line.warehouse_id {
        inputs.warehouses.require(w)?;
        let have = available(w, taken);
        if !preorder && have < line.quantity {
            return Ok(Err(Shortage {
                sku: line.sku.clone(),
                warehouse_id: Some(w),
                requested: line.quantity,
                available: have.max(0),
            }));
        }
        *taken.entry((line.sku.clone(), w)).or_default() += line.quantity;
        return Ok(Ok(vec![Allocation {
            warehouse_id: w,
            quantity: line.quantity,
        }]));
    }
    let default = inputs.warehouses.default.ok_or(Rejection::NoWarehouse)?;
    // Default first, then most available; ties by id, so the decision is
    // the same every time.
    let mut candidates: Vec<(WarehouseId, i64)> = inputs
        .warehouses
        .list
        .iter()
        .map(|w| (w.id, available(w.id, taken)))
        .collect();
    candidates.sort_by_key(|&(w, have)| (w != default, std::cmp::Reverse(have), w));
    let mut remaining = line.quantity;
    let mut allocations = Vec::new();
    for (w, have) in &candidates {
        if remaining == 0 {
            break;
        }
        let take = remaining.min((*have).max(0));
        if take > 0 {
            allocations.push(Allocation {
                warehouse_id: *w,
                quantity: take,
            });
            remaining -= take;
        }
    }
    if remaining > 0 {
        if !preorder {
            let total: i64 = candidates.iter().map(|(_, have)| (*have).max(0)).sum();
            return Ok(Err(Shortage {
                sku: line.sku.clone(),
                warehouse_id: None,
                requested: line.quantity,
                available: total,
            }));
        }
        // A preorder sells what is not here yet from the default warehouse.
        match allocations.iter_mut().find(|a| a.warehouse_id == default) {
            Some(a) => a.quantity += remaining,
            None => allocations.push(Allocation {
                warehouse_id: default,
                quantity: remaining,
            }),
        }
    }
    for a in &allocations {
        *taken.entry((line.sku.clone(), a.warehouse_id)).or_default() += a.quantity;
    }
    Ok(Ok(allocations))
}

/// Works out order costs and totals (see the module docs for the formula).
pub fn totals(
    lines: &[PlacedLine],
    costs: &[OrderCost],
    shipping: Money,
) -> (Vec<AppliedCost>, Totals) {
    let gross: Money = lines
        .iter()
        .map(|l| l.unit_price.checked_mul(l.quantity).expect("bounded"))
        .sum();
    let line_discounts: Money = lines.iter().map(|l| l.discount_amount).sum();
    let subtotal: Money = lines.iter().map(|l| l.line_total).sum();
    let cost_of_goods: Money = lines
        .iter()
        .map(|l| l.unit_cost.checked_mul(l.quantity).expect("bounded"))
        .sum();
    let applied: Vec<AppliedCost> = costs
        .iter()
        .map(|c| AppliedCost {
            name: c.name.trim().to_owned(),
            category: c.category,
            amount: c.amount,
            value: c.amount.of(subtotal),
        })
        .collect();
    let sum = |category| {
        applied
            .iter()
            .filter(|c| c.category == category)
            .map(|c| c.value)
            .sum::<Money>()
    };
    let (order_discounts, other_costs, insurance) = (
        sum(CostCategory::Discount),
        sum(CostCategory::OtherCost),
        sum(CostCategory::Insurance),
    );
    let total = subtotal + shipping + other_costs + insurance - order_discounts;
    let totals = Totals {
        gross,
        line_discounts,
        subtotal,
        order_discounts,
        other_costs,
        insurance,
        shipping,
        total,
        cost_of_goods,
    };
    (applied, totals)
}

// ------------------------------------------------------------- payments

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayOrder {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub method: PaymentMethod,
    #[serde(default)]
    pub bank_account: Option<String>,
    /// When the money was paid; defaults to now.
    #[serde(default)]
    pub paid_at: Option<Timestamp>,
}

impl PayOrder {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.that(
            (1..=AMOUNT_MAX).contains(&self.amount.0),
            "amount",
            "must be more than 0",
        );
        if let Some(b) = &self.bank_account {
            c.text(b, "bank_account", false, NAME_LEN_MAX);
        }
        c.finish()
    }
}

fn require(order: &Order, order_id: OrderId) -> Result<OrderStatus, Rejection> {
    order.status.ok_or(Rejection::UnknownOrder { order_id })
}

fn illegal(order_id: OrderId, action: &'static str, status: OrderStatus) -> Rejection {
    Rejection::IllegalTransition {
        order_id,
        action,
        status,
    }
}

/// Records a payment (an installment or the rest), Ngorder's rules.
pub fn pay(
    order: &Order,
    order_id: OrderId,
    cmd: &PayOrder,
    ctx: &Context,
) -> Result<Vec<DomainEvent>, Rejection> {
    let status = require(order, order_id)?;
    if matches!(
        status,
        OrderStatus::Cancelled | OrderStatus::Returned | OrderStatus::Lost
    ) {
        return Err(illegal(order_id, "pay", status));
    }
    let remaining = order.remaining();
    if remaining == Money::ZERO {
        return Err(Rejection::OrderAlreadyPaid { order_id });
    }
    if cmd.amount > remaining {
        return Err(Rejection::AmountExceedsRemaining {
            order_id,
            remaining,
        });
    }
    let paid_total = order.paid_total + cmd.amount;
    Ok(vec![
        OrderPaymentRecorded {
            order_id,
            payment_id: cmd.payment_id,
            amount: cmd.amount,
            method: cmd.method,
            bank_account: cmd.bank_account.clone(),
            paid_at: cmd.paid_at.unwrap_or(ctx.now),
            paid_total,
            remaining: order.total() - paid_total,
        }
        .into(),
    ])
}

/// Gives back money paid for a cancelled, returned or lost order.
pub fn refund(
    order: &Order,
    order_id: OrderId,
    amount: Money,
    note: &str,
) -> Result<Vec<DomainEvent>, Rejection> {
    let status = require(order, order_id)?;
    if !matches!(
        status,
        OrderStatus::Cancelled | OrderStatus::Returned | OrderStatus::Lost
    ) {
        return Err(illegal(order_id, "refund", status));
    }
    let refundable = order.paid_total - order.refunded_total;
    if amount > refundable || !amount.is_positive() {
        return Err(Rejection::RefundExceedsRefundable {
            order_id,
            refundable,
        });
    }
    Ok(vec![
        OrderRefunded {
            order_id,
            amount,
            note: note.trim().to_owned(),
        }
        .into(),
    ])
}

// ------------------------------------------------------------ lifecycle

/// A change of an order's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Transition {
    Process,
    Pack,
    Ready,
    Ship {
        awb: String,
    },
    Deliver,
    Complete,
    Cancel {
        #[serde(default)]
        reason: String,
    },
    StartReturn {
        #[serde(default)]
        reason: String,
    },
    ReceiveReturn,
    Lose {
        #[serde(default)]
        note: String,
    },
}

impl Transition {
    pub fn name(&self) -> &'static str {
        match self {
            Transition::Process => "process",
            Transition::Pack => "pack",
            Transition::Ready => "mark ready for pickup",
            Transition::Ship { .. } => "ship",
            Transition::Deliver => "deliver",
            Transition::Complete => "complete",
            Transition::Cancel { .. } => "cancel",
            Transition::StartReturn { .. } => "return",
            Transition::ReceiveReturn => "receive the return of",
            Transition::Lose { .. } => "mark lost",
        }
    }

    /// The statuses this transition may start from.
    pub fn allowed_from(&self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            Transition::Process => &[Placed],
            Transition::Pack => &[Placed, Processing],
            Transition::Ready => &[Packed],
            Transition::Ship { .. } => &[Placed, Processing, Packed, ReadyForPickup],
            Transition::Deliver => &[Shipped],
            Transition::Complete => &[Delivered],
            Transition::Cancel { .. } => &[Placed, Processing, Packed, ReadyForPickup],
            Transition::StartReturn { .. } => &[Shipped, Delivered],
            Transition::ReceiveReturn => &[Returning],
            Transition::Lose { .. } => &[Shipped, Returning],
        }
    }

    /// Whether it may move money in the seller's wallet (COD delivery,
    /// shipping charged, refunded, or charged for a return).
    pub fn moves_money(&self) -> bool {
        matches!(
            self,
            Transition::Ready
                | Transition::Ship { .. }
                | Transition::Deliver
                | Transition::Cancel { .. }
                | Transition::ReceiveReturn
        )
    }

    /// Whether deciding it needs the order's stock items.
    pub fn touches_stock(&self) -> bool {
        matches!(
            self,
            Transition::Ship { .. } | Transition::Cancel { .. } | Transition::ReceiveReturn
        )
    }

    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        match self {
            Transition::Ship { awb } => {
                c.text(awb, "awb", true, 64);
            }
            Transition::Cancel { reason } | Transition::StartReturn { reason } => {
                c.text(reason, "reason", false, NOTE_LEN_MAX);
            }
            Transition::Lose { note } => {
                c.text(note, "note", false, NOTE_LEN_MAX);
            }
            _ => {}
        }
        c.finish()
    }
}

/// The events of a transition: the order's, and those of its stock items.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct TransitionEvents {
    pub order: Vec<DomainEvent>,
    pub stock: Vec<((Sku, WarehouseId), DomainEvent)>,
}

/// Decides a transition. `stock` holds the order's stock items (see
/// [`Order::stock_keys`]) when [`Transition::touches_stock`].
pub fn transition(
    order: &Order,
    order_id: OrderId,
    cmd: &Transition,
    stock: &BTreeMap<(Sku, WarehouseId), &StockItem>,
) -> Result<TransitionEvents, Rejection> {
    let status = require(order, order_id)?;
    if !cmd.allowed_from().contains(&status) {
        return Err(illegal(order_id, cmd.name(), status));
    }
    let empty = StockItem::default();
    let item = |key: &(Sku, WarehouseId)| stock.get(key).copied().unwrap_or(&empty);
    let mut out = TransitionEvents::default();
    match cmd {
        Transition::Process => out.order.push(OrderProcessing { order_id }.into()),
        Transition::Pack => out.order.push(OrderPacked { order_id }.into()),
        Transition::Ready => out.order.push(OrderReadyForPickup { order_id }.into()),
        Transition::Deliver => out.order.push(OrderDelivered { order_id }.into()),
        Transition::Complete => out.order.push(OrderCompleted { order_id }.into()),
        Transition::Ship { awb } => {
            let mut shortages = Vec::new();
            for key in order.stock_keys() {
                match stock::ship(item(&key), &key.0, key.1, order_id) {
                    Ok(Some(e)) => out.stock.push((key, e)),
                    Ok(None) => {}
                    Err(s) => shortages.push(s),
                }
            }
            if !shortages.is_empty() {
                return Err(Rejection::InsufficientStock { shortages });
            }
            out.order.push(
                OrderShipped {
                    order_id,
                    awb: awb.trim().to_owned(),
                }
                .into(),
            );
        }
        Transition::Cancel { reason } => {
            for key in order.stock_keys() {
                if let Some(e) = stock::release(item(&key), &key.0, key.1, order_id) {
                    out.stock.push((key, e));
                }
            }
            let refundable = order.paid_total - order.refunded_total;
            out.order.push(
                OrderCancelled {
                    order_id,
                    reason: reason.trim().to_owned(),
                    refundable,
                }
                .into(),
            );
        }
        Transition::StartReturn { reason } => {
            out.order.push(
                OrderReturnStarted {
                    order_id,
                    reason: reason.trim().to_owned(),
                }
                .into(),
            );
        }
        Transition::ReceiveReturn => {
            let placed = order.placed.as_ref().expect("a returning order was placed");
            for line in &placed.lines {
                for a in &line.allocations {
                    let e = StockRestocked {
                        sku: line.sku.clone(),
                        warehouse_id: a.warehouse_id,
                        order_id,
                        quantity: a.quantity,
                    };
                    out.stock
                        .push(((line.sku.clone(), a.warehouse_id), e.into()));
                }
            }
            out.order.push(OrderReturnReceived { order_id }.into());
        }
        Transition::Lose { note } => out.order.push(
            OrderLost {
                order_id,
                note: note.trim().to_owned(),
            }
            .into(),
        ),
    }
    Ok(out)
}
