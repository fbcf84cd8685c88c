//! Stock of one SKU in one warehouse: on hand, reserved for orders, and the
//! moves that change them.
//!
//! Invariants (checked by the decisions, asserted by `evolve`):
//! `on_hand >= 0`, `reserved >= 0`, and `reserved <= on_hand` unless the
//! product is a preorder, which may be sold below zero (available goes
//! negative, on hand never does). Products of type `R` have no stock items.
//! No two orders can reserve the same last unit: every reservation is
//! decided against the item's state and appended with its expected version.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::events::*;
use super::ids::{OrderId, Sku, TransferId, WarehouseId};
use super::rejection::{Check, FieldError, Rejection, Shortage};

/// Largest quantity of one move or order line.
pub const QUANTITY_MAX: i64 = 1_000_000_000;

/// Why goods were removed (Ngorder SUB).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    Damaged,
    Lost,
    Correction,
    Other,
}

/// One SKU in one warehouse.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StockItem {
    pub on_hand: i64,
    pub reserved: i64,
    /// Quantity reserved per order, for release and shipping.
    pub reservations: BTreeMap<OrderId, i64>,
}

impl StockItem {
    pub fn available(&self) -> i64 {
        self.on_hand - self.reserved
    }

    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::StockReceived(e) => self.on_hand += e.quantity,
            DomainEvent::StockRemoved(e) => self.on_hand -= e.quantity,
            DomainEvent::StockTransferredOut(e) => self.on_hand -= e.quantity,
            DomainEvent::StockTransferredIn(e) => self.on_hand += e.quantity,
            DomainEvent::StockCounted(e) => self.on_hand = e.counted,
            DomainEvent::StockReserved(e) => {
                self.reserved += e.quantity;
                *self.reservations.entry(e.order_id).or_default() += e.quantity;
            }
            DomainEvent::StockReleased(e) => self.unreserve(e.order_id, e.quantity),
            DomainEvent::StockShipped(e) => {
                self.unreserve(e.order_id, e.quantity);
                self.on_hand -= e.quantity;
            }
            DomainEvent::StockRestocked(e) => self.on_hand += e.quantity,
            _ => {}
        }
        assert!(
            self.on_hand >= 0 && self.reserved >= 0,
            "stock invariant broken: {self:?}"
        );
    }

    fn unreserve(&mut self, order: OrderId, quantity: i64) {
        self.reserved -= quantity;
        let left = self.reservations.get(&order).copied().unwrap_or(0) - quantity;
        if left > 0 {
            self.reservations.insert(order, left);
        } else {
            self.reservations.remove(&order);
        }
    }
}

/// A stock move requested by staff (`POST /v1/stock/moves`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StockMove {
    Receive {
        sku: Sku,
        warehouse_id: WarehouseId,
        quantity: i64,
        #[serde(default)]
        note: String,
    },
    Remove {
        sku: Sku,
        warehouse_id: WarehouseId,
        quantity: i64,
        reason: RemovalReason,
        #[serde(default)]
        note: String,
    },
    Transfer {
        sku: Sku,
        from_warehouse_id: WarehouseId,
        to_warehouse_id: WarehouseId,
        quantity: i64,
        transfer_id: TransferId,
        #[serde(default)]
        note: String,
    },
    Count {
        sku: Sku,
        warehouse_id: WarehouseId,
        counted: i64,
        #[serde(default)]
        note: String,
    },
}

impl StockMove {
    pub fn sku(&self) -> &Sku {
        match self {
            StockMove::Receive { sku, .. }
            | StockMove::Remove { sku, .. }
            | StockMove::Transfer { sku, .. }
            | StockMove::Count { sku, .. } => sku,
        }
    }

    /// The warehouses the move touches (one, or two for a transfer).
    pub fn warehouses(&self) -> Vec<WarehouseId> {
        match self {
            StockMove::Receive { warehouse_id, .. }
            | StockMove::Remove { warehouse_id, .. }
            | StockMove::Count { warehouse_id, .. } => vec![*warehouse_id],
            StockMove::Transfer {
                from_warehouse_id,
                to_warehouse_id,
                ..
            } => {
                vec![*from_warehouse_id, *to_warehouse_id]
            }
        }
    }

    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        let (quantity, note) = match self {
            StockMove::Receive { quantity, note, .. }
            | StockMove::Remove { quantity, note, .. }
            | StockMove::Transfer { quantity, note, .. } => (Some(*quantity), note),
            StockMove::Count { counted, note, .. } => {
                c.that(
                    (0..=QUANTITY_MAX).contains(counted),
                    "counted",
                    format!("must be 0 to {QUANTITY_MAX}"),
                );
                (None, note)
            }
        };
        if let Some(q) = quantity {
            c.that(
                (1..=QUANTITY_MAX).contains(&q),
                "quantity",
                format!("must be 1 to {QUANTITY_MAX}"),
            );
        }
        c.text(note, "note", false, super::catalog::NOTE_LEN_MAX);
        c.finish()
    }
}

/// Decides a move over the items it touches, in the order of
/// [`StockMove::warehouses`]. `preorder`: the SKU's product is a preorder.
pub fn decide_move(
    items: &[&StockItem],
    cmd: &StockMove,
    preorder: bool,
) -> Result<Vec<(WarehouseId, DomainEvent)>, Rejection> {
    let note = |n: &str| n.trim().to_owned();
    match cmd {
        StockMove::Receive {
            sku,
            warehouse_id,
            quantity,
            note: n,
        } => Ok(vec![(
            *warehouse_id,
            StockReceived {
                sku: sku.clone(),
                warehouse_id: *warehouse_id,
                quantity: *quantity,
                note: note(n),
            }
            .into(),
        )]),
        StockMove::Remove {
            sku,
            warehouse_id,
            quantity,
            reason,
            note: n,
        } => {
            let item = items[0];
            // Reserved goods belong to orders: only what is available can go.
            let removable = if preorder {
                item.on_hand.min(item.available().max(0))
            } else {
                item.available()
            };
            if *quantity > removable {
                return Err(Rejection::InsufficientStock {
                    shortages: vec![Shortage {
                        sku: sku.clone(),
                        warehouse_id: Some(*warehouse_id),
                        requested: *quantity,
                        available: removable,
                    }],
                });
            }
            Ok(vec![(
                *warehouse_id,
                StockRemoved {
                    sku: sku.clone(),
                    warehouse_id: *warehouse_id,
                    quantity: *quantity,
                    reason: *reason,
                    note: note(n),
                }
                .into(),
            )])
        }
        StockMove::Transfer {
            sku,
            from_warehouse_id,
            to_warehouse_id,
            quantity,
            transfer_id,
            note: n,
        } => {
            if from_warehouse_id == to_warehouse_id {
                return Err(Rejection::WarehousesMustDiffer);
            }
            let from = items[0];
            let movable = from.available().min(from.on_hand);
            if *quantity > movable {
                return Err(Rejection::InsufficientStock {
                    shortages: vec![Shortage {
                        sku: sku.clone(),
                        warehouse_id: Some(*from_warehouse_id),
                        requested: *quantity,
                        available: movable.max(0),
                    }],
                });
            }
            Ok(vec![
                (
                    *from_warehouse_id,
                    StockTransferredOut {
                        sku: sku.clone(),
                        warehouse_id: *from_warehouse_id,
                        to_warehouse_id: *to_warehouse_id,
                        transfer_id: *transfer_id,
                        quantity: *quantity,
                        note: note(n),
                    }
                    .into(),
                ),
                (
                    *to_warehouse_id,
                    StockTransferredIn {
                        sku: sku.clone(),
                        warehouse_id: *to_warehouse_id,
                        from_warehouse_id: *from_warehouse_id,
                        transfer_id: *transfer_id,
                        quantity: *quantity,
                        note: note(n),
                    }
                    .into(),
                ),
            ])
        }
        StockMove::Count {
            sku,
            warehouse_id,
            counted,
            note: n,
        } => {
            let item = items[0];
            if !preorder && *counted < item.reserved {
                return Err(Rejection::CountBelowReserved {
                    sku: sku.clone(),
                    warehouse_id: *warehouse_id,
                    counted: *counted,
                    reserved: item.reserved,
                });
            }
            Ok(vec![(
                *warehouse_id,
                StockCounted {
                    sku: sku.clone(),
                    warehouse_id: *warehouse_id,
                    counted: *counted,
                    delta: counted - item.on_hand,
                    note: note(n),
                }
                .into(),
            )])
        }
    }
}

/// Releases what `order` holds in this item.
pub fn release(
    item: &StockItem,
    sku: &Sku,
    warehouse_id: WarehouseId,
    order_id: OrderId,
) -> Option<DomainEvent> {
    let quantity = *item.reservations.get(&order_id)?;
    Some(
        StockReleased {
            sku: sku.clone(),
            warehouse_id,
            order_id,
            quantity,
        }
        .into(),
    )
}

/// Ships what `order` holds in this item. For a preorder sold below zero,
/// the goods must have arrived first.
pub fn ship(
    item: &StockItem,
    sku: &Sku,
    warehouse_id: WarehouseId,
    order_id: OrderId,
) -> Result<Option<DomainEvent>, Shortage> {
    let Some(&quantity) = item.reservations.get(&order_id) else {
        return Ok(None);
    };
    if quantity > item.on_hand {
        return Err(Shortage {
            sku: sku.clone(),
            warehouse_id: Some(warehouse_id),
            requested: quantity,
            available: item.on_hand,
        });
    }
    Ok(Some(
        StockShipped {
            sku: sku.clone(),
            warehouse_id,
            order_id,
            quantity,
        }
        .into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn sku() -> Sku {
        Sku::parse("KAOS-M").unwrap()
    }

    fn wh(n: u128) -> WarehouseId {
        WarehouseId(Uuid::from_u128(n))
    }

    fn given(events: &[DomainEvent]) -> StockItem {
        let mut item = StockItem::default();
        events.iter().for_each(|e| item.evolve(e));
        item
    }

    fn received(q: i64) -> DomainEvent {
        StockReceived {
            sku: sku(),
            warehouse_id: wh(1),
            quantity: q,
            note: String::new(),
        }
        .into()
    }

    fn reserved(order: u128, q: i64) -> DomainEvent {
        StockReserved {
            sku: sku(),
            warehouse_id: wh(1),
            order_id: OrderId(Uuid::from_u128(order)),
            quantity: q,
        }
        .into()
    }

    #[test]
    fn removing_more_than_available_is_refused_with_the_figures() {
        let item = given(&[received(10), reserved(7, 8)]);
        let cmd = StockMove::Remove {
            sku: sku(),
            warehouse_id: wh(1),
            quantity: 3,
            reason: RemovalReason::Damaged,
            note: "pecah".into(),
        };
        match decide_move(&[&item], &cmd, false) {
            Err(Rejection::InsufficientStock { shortages }) => {
                assert_eq!((shortages[0].requested, shortages[0].available), (3, 2));
            }
            other => panic!("{other:?}"),
        }
        let cmd = StockMove::Remove {
            sku: sku(),
            warehouse_id: wh(1),
            quantity: 2,
            reason: RemovalReason::Damaged,
            note: String::new(),
        };
        assert!(decide_move(&[&item], &cmd, false).is_ok());
    }

    #[test]
    fn a_count_records_its_delta_and_may_not_go_below_reserved() {
        let item = given(&[received(5), reserved(1, 2)]);
        let count = |n| StockMove::Count {
            sku: sku(),
            warehouse_id: wh(1),
            counted: n,
            note: String::new(),
        };
        let events = decide_move(&[&item], &count(3), false).unwrap();
        assert!(
            matches!(&events[0].1, DomainEvent::StockCounted(e) if e.delta == -2 && e.counted == 3)
        );
        assert!(matches!(
            decide_move(&[&item], &count(1), false),
            Err(Rejection::CountBelowReserved { reserved: 2, .. })
        ));
        assert!(
            decide_move(&[&item], &count(1), true).is_ok(),
            "preorders may hold more than is here"
        );
    }

    #[test]
    fn a_transfer_is_two_events_and_needs_two_warehouses() {
        let item = given(&[received(5)]);
        let other = StockItem::default();
        let transfer = |to: u128, quantity| StockMove::Transfer {
            sku: sku(),
            from_warehouse_id: wh(1),
            to_warehouse_id: wh(to),
            quantity,
            transfer_id: TransferId(Uuid::from_u128(9)),
            note: String::new(),
        };
        let events = decide_move(&[&item, &other], &transfer(2, 5), false).unwrap();
        assert_eq!(
            events.iter().map(|(w, _)| *w).collect::<Vec<_>>(),
            vec![wh(1), wh(2)]
        );
        assert_eq!(
            decide_move(&[&item, &item], &transfer(1, 5), false),
            Err(Rejection::WarehousesMustDiffer)
        );
        let too_many = transfer(2, 6);
        assert!(matches!(
            decide_move(&[&item, &other], &too_many, false),
            Err(Rejection::InsufficientStock { .. })
        ));
    }

    #[test]
    fn ship_and_release_use_what_the_order_holds() {
        let order = OrderId(Uuid::from_u128(7));
        let mut item = given(&[received(5), reserved(7, 3), reserved(8, 1)]);
        let shipped = ship(&item, &sku(), wh(1), order).unwrap().unwrap();
        item.evolve(&shipped);
        assert_eq!((item.on_hand, item.reserved), (2, 1));
        assert!(
            ship(&item, &sku(), wh(1), order).unwrap().is_none(),
            "nothing left for that order"
        );
        let released = release(&item, &sku(), wh(1), OrderId(Uuid::from_u128(8))).unwrap();
        item.evolve(&released);
        assert_eq!((item.on_hand, item.reserved, item.available()), (2, 0, 2));
    }

    #[test]
    fn validation_refuses_zero_and_negative_quantities() {
        let cmd = StockMove::Receive {
            sku: sku(),
            warehouse_id: wh(1),
            quantity: 0,
            note: String::new(),
        };
        assert_eq!(cmd.validate().unwrap_err()[0].field, "quantity");
        let cmd = StockMove::Count {
            sku: sku(),
            warehouse_id: wh(1),
            counted: -1,
            note: String::new(),
        };
        assert_eq!(cmd.validate().unwrap_err()[0].field, "counted");
    }
}
