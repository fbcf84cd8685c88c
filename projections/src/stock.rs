//! Stock per SKU and warehouse (on hand, reserved, available), totals per
//! SKU, the history of every item as Ngorder shows it (date, user,
//! description, order, warehouse, in, out, last), and the low-stock list.
//!
//! History lines are the moves of goods (on hand); reservations change
//! what is available but move nothing, so they are not history lines.

use std::collections::BTreeMap;

use kedai_engine::Timestamp;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::ids::{OrderId, Sku, WarehouseId};
use kedai_engine::domain::stock::RemovalReason;
use kedai_engine::event::Position;
use serde::{Deserialize, Serialize};

use crate::At;
use crate::intern::{Interner, Text};
use crate::shop::ShopMeta;

/// One SKU in one warehouse.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockLevel {
    pub on_hand: i64,
    pub reserved: i64,
}

impl StockLevel {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }
}

/// One line of an item's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryLine {
    pub position: Position,
    pub date: Timestamp,
    /// Who did it (the actor's id).
    pub user: Text,
    pub description: Text,
    pub order_id: Option<OrderId>,
    pub warehouse_id: WarehouseId,
    #[serde(rename = "in")]
    pub quantity_in: i64,
    #[serde(rename = "out")]
    pub quantity_out: i64,
    /// On hand after the move.
    pub last: i64,
}

/// Stock of one shop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    pub levels: BTreeMap<(Sku, WarehouseId), StockLevel>,
    pub history: BTreeMap<(Sku, WarehouseId), Vec<HistoryLine>>,
    /// Shares users and descriptions (a cache, not state).
    #[serde(skip)]
    interner: Interner,
}

impl StockView {
    pub fn apply(&mut self, meta: &ShopMeta, at: At<'_>, event: &DomainEvent) {
        let (sku, warehouse, d_on_hand, d_reserved, description, order) = match event {
            DomainEvent::StockReceived(e) => {
                let first = !self.history.contains_key(&(e.sku.clone(), e.warehouse_id));
                let what = if first {
                    format!(
                        "Initial variation stock on {}",
                        meta.local_date(at.recorded_at)
                    )
                } else {
                    "Stock received".to_owned()
                };
                (
                    &e.sku,
                    e.warehouse_id,
                    e.quantity,
                    0,
                    with_note(&mut self.interner, what, &e.note),
                    None,
                )
            }
            DomainEvent::StockRemoved(e) => {
                let reason = match e.reason {
                    RemovalReason::Damaged => "damaged",
                    RemovalReason::Lost => "lost",
                    RemovalReason::Correction => "correction",
                    RemovalReason::Other => "other",
                };
                (
                    &e.sku,
                    e.warehouse_id,
                    -e.quantity,
                    0,
                    with_note(
                        &mut self.interner,
                        format!("Stock removed ({reason})"),
                        &e.note,
                    ),
                    None,
                )
            }
            DomainEvent::StockTransferredOut(e) => {
                let what = format!("Transferred to {}", meta.warehouse_name(e.to_warehouse_id));
                (
                    &e.sku,
                    e.warehouse_id,
                    -e.quantity,
                    0,
                    with_note(&mut self.interner, what, &e.note),
                    None,
                )
            }
            DomainEvent::StockTransferredIn(e) => {
                let what = format!(
                    "Transferred from {}",
                    meta.warehouse_name(e.from_warehouse_id)
                );
                (
                    &e.sku,
                    e.warehouse_id,
                    e.quantity,
                    0,
                    with_note(&mut self.interner, what, &e.note),
                    None,
                )
            }
            DomainEvent::StockCounted(e) => (
                &e.sku,
                e.warehouse_id,
                e.delta,
                0,
                with_note(
                    &mut self.interner,
                    format!("Stock count: {}", e.counted),
                    &e.note,
                ),
                None,
            ),
            DomainEvent::StockReserved(e) => (
                &e.sku,
                e.warehouse_id,
                0,
                e.quantity,
                Text::from(""),
                Some(e.order_id),
            ),
            DomainEvent::StockReleased(e) => (
                &e.sku,
                e.warehouse_id,
                0,
                -e.quantity,
                Text::from(""),
                Some(e.order_id),
            ),
            DomainEvent::StockShipped(e) => (
                &e.sku,
                e.warehouse_id,
                -e.quantity,
                -e.quantity,
                self.interner.str("Shipped for order"),
                Some(e.order_id),
            ),
            DomainEvent::StockRestocked(e) => (
                &e.sku,
                e.warehouse_id,
                e.quantity,
                0,
                self.interner.str("Returned goods restocked"),
                Some(e.order_id),
            ),
            _ => return,
        };
        let key = (sku.clone(), warehouse);
        let level = match self.levels.get_mut(&key) {
            Some(level) => level,
            None => self.levels.entry(key.clone()).or_default(),
        };
        level.on_hand += d_on_hand;
        level.reserved += d_reserved;
        let last = level.on_hand;
        if d_on_hand != 0
            || matches!(
                event,
                DomainEvent::StockCounted(_) | DomainEvent::StockReceived(_)
            )
        {
            let user = self.interner.str(&at.actor.id);
            let line = HistoryLine {
                position: at.position,
                date: at.recorded_at,
                user,
                description,
                order_id: order,
                warehouse_id: warehouse,
                quantity_in: d_on_hand.max(0),
                quantity_out: (-d_on_hand).max(0),
                last,
            };
            match self.history.get_mut(&key) {
                Some(lines) => lines.push(line),
                None => {
                    self.history.insert(key, vec![line]);
                }
            }
        }
    }

    /// Shares the texts of a loaded view again.
    pub fn share_loaded(&mut self) {
        for line in self.history.values_mut().flatten() {
            self.interner.share(&mut line.user);
            self.interner.share(&mut line.description);
        }
    }

    /// Every warehouse's level of one SKU.
    pub fn of_sku(&self, sku: &Sku) -> Vec<(WarehouseId, StockLevel)> {
        let start = (sku.clone(), WarehouseId(uuid::Uuid::nil()));
        self.levels
            .range(start..)
            .take_while(|((s, _), _)| s == sku)
            .map(|((_, w), l)| (*w, *l))
            .collect()
    }

    /// A SKU's total over its warehouses.
    pub fn total(&self, sku: &Sku) -> StockLevel {
        self.of_sku(sku)
            .into_iter()
            .fold(StockLevel::default(), |a, (_, l)| StockLevel {
                on_hand: a.on_hand + l.on_hand,
                reserved: a.reserved + l.reserved,
            })
    }

    /// One item's history between two moments (both optional), oldest first.
    pub fn history_of(
        &self,
        sku: &Sku,
        warehouse: Option<WarehouseId>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Vec<&HistoryLine> {
        let mut lines: Vec<&HistoryLine> = self
            .history
            .iter()
            .filter(|((s, w), _)| s == sku && warehouse.is_none_or(|x| x == *w))
            .flat_map(|(_, lines)| lines)
            .filter(|l| from.is_none_or(|f| l.date >= f) && to.is_none_or(|t| l.date < t))
            .collect();
        lines.sort_by_key(|l| l.position);
        lines
    }

    /// Items whose available stock is at or below the threshold.
    pub fn low_stock(&self, threshold: i64) -> Vec<(&Sku, WarehouseId, StockLevel)> {
        self.levels
            .iter()
            .filter(|(_, l)| l.available() <= threshold)
            .map(|((s, w), l)| (s, *w, *l))
            .collect()
    }
}

fn with_note(interner: &mut Interner, what: String, note: &str) -> Text {
    if note.is_empty() {
        interner.str(&what)
    } else {
        interner.str(&format!("{what}: {note}"))
    }
}
