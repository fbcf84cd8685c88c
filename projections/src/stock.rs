//! Stock per SKU and warehouse (on hand, reserved, available), totals per
//! SKU, the history of every item as Ngorder shows it (date, user,
//! description, order, warehouse, in, out, last), and the low-stock list.
//!
//! History lines are the moves of goods (on hand); reservations change
//! what is available but move nothing, so they are not history lines.
//!
//! The history's lines are not kept in memory: every move of an item is
//! in its stock stream (`streams::stock`, one per SKU and warehouse), and
//! the projection keeps for each line only a [`HistoryMark`] (where it is,
//! its date, the quantity on hand after it), what the date filter and the
//! running `last` need. The lines asked for are made from the stock
//! stream's events by [`line`].

use std::collections::BTreeMap;

use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::ids::{OrderId, Sku, WarehouseId};
use kedai_engine::domain::stock::RemovalReason;
use kedai_engine::event::Position;
use kedai_engine::{RecordedEvent, Timestamp};
use serde::{Deserialize, Serialize};

use crate::At;
use crate::intern::Text;
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

/// One line of an item's history: made from its event by [`line`] (or
/// [`history`]) when asked for, not kept in memory.
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

/// A history line as the projection keeps it: where its event is in the
/// item's stock stream, its date (for the history's date filter) and the
/// quantity on hand after it (which would take the whole stream before it
/// to work out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryMark {
    /// Position of the event.
    pub position: Position,
    /// Its version in the item's stock stream (`streams::stock`).
    pub version: u64,
    pub date: Timestamp,
    /// On hand after the move.
    pub last: i64,
}

/// A mark of a SKU's history as [`StockView::history_of`] finds it, with
/// what making its line also needs: the warehouse (whose stock stream
/// holds the event) and whether it is the item's first line (a first
/// receipt is the initial stock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRef {
    pub warehouse_id: WarehouseId,
    pub mark: HistoryMark,
    pub first: bool,
}

/// Stock of one shop.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockView {
    pub levels: BTreeMap<(Sku, WarehouseId), StockLevel>,
    /// One mark per history line of each item, oldest first.
    pub history: BTreeMap<(Sku, WarehouseId), Vec<HistoryMark>>,
}

/// What a stock event does to its item: (SKU, warehouse, change of on
/// hand, change of reserved, whether it is a history line). `None` for
/// any other event.
fn effect(event: &DomainEvent) -> Option<(&Sku, WarehouseId, i64, i64, bool)> {
    let (sku, warehouse, d_on_hand, d_reserved) = match event {
        DomainEvent::StockReceived(e) => (&e.sku, e.warehouse_id, e.quantity, 0),
        DomainEvent::StockRemoved(e) => (&e.sku, e.warehouse_id, -e.quantity, 0),
        DomainEvent::StockTransferredOut(e) => (&e.sku, e.warehouse_id, -e.quantity, 0),
        DomainEvent::StockTransferredIn(e) => (&e.sku, e.warehouse_id, e.quantity, 0),
        DomainEvent::StockCounted(e) => (&e.sku, e.warehouse_id, e.delta, 0),
        DomainEvent::StockReserved(e) => (&e.sku, e.warehouse_id, 0, e.quantity),
        DomainEvent::StockReleased(e) => (&e.sku, e.warehouse_id, 0, -e.quantity),
        DomainEvent::StockShipped(e) => (&e.sku, e.warehouse_id, -e.quantity, -e.quantity),
        DomainEvent::StockRestocked(e) => (&e.sku, e.warehouse_id, e.quantity, 0),
        _ => return None,
    };
    let is_line = d_on_hand != 0
        || matches!(
            event,
            DomainEvent::StockCounted(_) | DomainEvent::StockReceived(_)
        );
    Some((sku, warehouse, d_on_hand, d_reserved, is_line))
}

/// A history line's description and order, as Ngorder words them; `first`
/// tells whether it is the item's first line.
fn describe(
    meta: &ShopMeta,
    date: Timestamp,
    first: bool,
    event: &DomainEvent,
) -> (String, Option<OrderId>) {
    match event {
        DomainEvent::StockReceived(e) => {
            let what = if first {
                format!("Initial variation stock on {}", meta.local_date(date))
            } else {
                "Stock received".to_owned()
            };
            (with_note(what, &e.note), None)
        }
        DomainEvent::StockRemoved(e) => {
            let reason = match e.reason {
                RemovalReason::Damaged => "damaged",
                RemovalReason::Lost => "lost",
                RemovalReason::Correction => "correction",
                RemovalReason::Other => "other",
            };
            (
                with_note(format!("Stock removed ({reason})"), &e.note),
                None,
            )
        }
        DomainEvent::StockTransferredOut(e) => {
            let what = format!("Transferred to {}", meta.warehouse_name(e.to_warehouse_id));
            (with_note(what, &e.note), None)
        }
        DomainEvent::StockTransferredIn(e) => {
            let what = format!(
                "Transferred from {}",
                meta.warehouse_name(e.from_warehouse_id)
            );
            (with_note(what, &e.note), None)
        }
        DomainEvent::StockCounted(e) => (
            with_note(format!("Stock count: {}", e.counted), &e.note),
            None,
        ),
        DomainEvent::StockReserved(e) => (String::new(), Some(e.order_id)),
        DomainEvent::StockReleased(e) => (String::new(), Some(e.order_id)),
        DomainEvent::StockShipped(e) => ("Shipped for order".to_owned(), Some(e.order_id)),
        DomainEvent::StockRestocked(e) => ("Returned goods restocked".to_owned(), Some(e.order_id)),
        _ => (String::new(), None),
    }
}

/// An item's key (SKU, warehouse) as its parts, so that the maps keyed by
/// `(Sku, WarehouseId)` can be searched with a borrowed SKU: a stock event
/// then makes no copy of its SKU unless the item is new. Ordered as the
/// owned key is (a SKU orders as its text).
trait ItemKey {
    fn parts(&self) -> (&str, WarehouseId);
}

impl ItemKey for (Sku, WarehouseId) {
    fn parts(&self) -> (&str, WarehouseId) {
        (self.0.as_str(), self.1)
    }
}

impl ItemKey for (&Sku, WarehouseId) {
    fn parts(&self) -> (&str, WarehouseId) {
        (self.0.as_str(), self.1)
    }
}

impl<'a> std::borrow::Borrow<dyn ItemKey + 'a> for (Sku, WarehouseId) {
    fn borrow(&self) -> &(dyn ItemKey + 'a) {
        self
    }
}

impl PartialEq for dyn ItemKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn ItemKey + '_ {}

impl PartialOrd for dyn ItemKey + '_ {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for dyn ItemKey + '_ {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.parts().cmp(&other.parts())
    }
}

impl StockView {
    pub fn apply(&mut self, at: At<'_>, event: &DomainEvent) {
        let Some((sku, warehouse, d_on_hand, d_reserved, is_line)) = effect(event) else {
            return;
        };
        let borrowed = (sku, warehouse);
        let key: &dyn ItemKey = &borrowed;
        let level = match self.levels.get_mut(key) {
            Some(level) => level,
            None => self.levels.entry((sku.clone(), warehouse)).or_default(),
        };
        level.on_hand += d_on_hand;
        level.reserved += d_reserved;
        if is_line {
            let mark = HistoryMark {
                position: at.position,
                version: at.version,
                date: at.recorded_at,
                last: level.on_hand,
            };
            match self.history.get_mut(key) {
                Some(marks) => marks.push(mark),
                None => {
                    self.history.insert((sku.clone(), warehouse), vec![mark]);
                }
            }
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

    /// Marks of a SKU's history (in one warehouse or all) between two
    /// moments (both optional), oldest first: each line made by [`line`]
    /// from its event.
    pub fn history_of(
        &self,
        sku: &Sku,
        warehouse: Option<WarehouseId>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
    ) -> Vec<HistoryRef> {
        self.history_page(sku, warehouse, from, to, None, usize::MAX)
    }

    /// At most `limit` marks of [`history_of`](Self::history_of) that come
    /// after position `after`. Each item's marks are in position order,
    /// and so in date order (a log's `recorded_at` never decreases): every
    /// warehouse's marks are found from `after` and `from` by binary
    /// search and merged, so a page costs its own length, not the whole
    /// history's.
    pub fn history_page(
        &self,
        sku: &Sku,
        warehouse: Option<WarehouseId>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        after: Option<Position>,
        limit: usize,
    ) -> Vec<HistoryRef> {
        let start = (sku.clone(), WarehouseId(uuid::Uuid::nil()));
        let mut cursors: Vec<(WarehouseId, &[HistoryMark], usize)> = self
            .history
            .range(start..)
            .take_while(|((s, _), _)| s == sku)
            .filter(|((_, w), _)| warehouse.is_none_or(|x| x == *w))
            .map(|((_, w), marks)| {
                let skipped = marks.partition_point(|m| {
                    after.is_some_and(|a| m.position <= a) || from.is_some_and(|f| m.date < f)
                });
                (*w, marks.as_slice(), skipped)
            })
            .collect();
        let mut refs = Vec::new();
        while refs.len() < limit {
            let next = cursors
                .iter_mut()
                .filter(|(_, marks, i)| {
                    marks.get(*i).is_some_and(|m| to.is_none_or(|t| m.date < t))
                })
                .min_by_key(|(_, marks, i)| marks[*i].position);
            let Some((warehouse_id, marks, i)) = next else {
                break;
            };
            refs.push(HistoryRef {
                warehouse_id: *warehouse_id,
                mark: marks[*i],
                first: *i == 0,
            });
            *i += 1;
        }
        refs
    }

    /// History lines of one item recorded.
    pub fn history_len(&self, sku: &Sku, warehouse: WarehouseId) -> usize {
        self.history
            .get(&(sku.clone(), warehouse))
            .map_or(0, Vec::len)
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

fn with_note(what: String, note: &str) -> String {
    if note.is_empty() {
        what
    } else {
        format!("{what}: {note}")
    }
}

/// A history line of `sku` from its reference and its event (the event of
/// the item's stock stream at the mark's version, as the store reads it);
/// `meta` names warehouses and dates. An event that is not the mark's
/// (another position or version) or not a move of that item is an error:
/// the projection and the log disagree.
pub fn line(
    meta: &ShopMeta,
    sku: &Sku,
    r: &HistoryRef,
    event: &RecordedEvent,
) -> Result<HistoryLine, LineError> {
    let mark = &r.mark;
    if event.position != mark.position || event.version != mark.version {
        return Err(LineError::Elsewhere {
            position: mark.position,
            found: event.position,
        });
    }
    let decoded = DomainEvent::decode(&event.event_type, &event.payload).map_err(|source| {
        LineError::Decode(crate::ApplyError {
            position: event.position,
            source,
        })
    })?;
    let not_line = || LineError::NotALine {
        position: event.position,
        event_type: event.event_type.to_string(),
    };
    let decoded = decoded.ok_or_else(not_line)?;
    match effect(&decoded) {
        Some((s, w, _, _, true)) if s == sku && w == r.warehouse_id => {}
        _ => return Err(not_line()),
    }
    Ok(made(meta, mark, r.first, &event.actor.id, &decoded))
}

/// A history line from its mark and its (decoded) event.
fn made(
    meta: &ShopMeta,
    mark: &HistoryMark,
    first: bool,
    user: &str,
    event: &DomainEvent,
) -> HistoryLine {
    let (_, warehouse_id, d_on_hand, _, _) = effect(event).expect("a stock move");
    let (description, order_id) = describe(meta, mark.date, first, event);
    HistoryLine {
        position: mark.position,
        date: mark.date,
        user: user.into(),
        description: description.into(),
        order_id,
        warehouse_id,
        quantity_in: d_on_hand.max(0),
        quantity_out: (-d_on_hand).max(0),
        last: mark.last,
    }
}

/// Why a history line could not be made from the log.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    #[error(transparent)]
    Decode(#[from] crate::ApplyError),
    #[error(
        "the stock history line at position {position} is not in the log where the projection says (found position {found})"
    )]
    Elsewhere { position: Position, found: Position },
    #[error("the event at position {position} ({event_type}) is not a move of the item")]
    NotALine {
        position: Position,
        event_type: String,
    },
}

/// The whole history of one item, oldest first, from the events of its
/// stock stream up to position `until`: the fold [`StockView`] makes, line
/// by line with the quantity on hand after each (for tests and checks; the
/// API reads the lines asked for through the marks and [`line`]).
pub fn history(
    meta: &ShopMeta,
    events: &[RecordedEvent],
    until: Position,
) -> Result<Vec<HistoryLine>, crate::ApplyError> {
    let mut view = StockView::default();
    let mut lines = Vec::new();
    for e in events.iter().filter(|e| e.position <= until) {
        let decoded =
            DomainEvent::decode(&e.event_type, &e.payload).map_err(|source| crate::ApplyError {
                position: e.position,
                source,
            })?;
        let Some(decoded) = decoded else { continue };
        let line_of = match effect(&decoded) {
            Some((sku, warehouse, _, _, true)) => Some((sku.clone(), warehouse)),
            _ => None,
        };
        let at = At {
            position: e.position,
            version: e.version,
            recorded_at: e.recorded_at,
            actor: &e.actor,
        };
        view.apply(at, &decoded);
        if let Some(key) = line_of {
            let marks = &view.history[&key];
            let mark = marks.last().expect("a line was marked");
            lines.push(made(meta, mark, marks.len() == 1, &e.actor.id, &decoded));
        }
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// An item's key searched by its borrowed parts orders as the
        /// owned key does, so a map finds exactly the owned key's entry.
        #[test]
        fn a_borrowed_item_key_orders_as_the_owned_one(
            a in "[A-Za-z0-9._-]{1,6}", b in "[A-Za-z0-9._-]{1,6}",
            wa in 0u128..3, wb in 0u128..3,
        ) {
            let key = |s: &str, w: u128| (Sku::parse(s).unwrap(), WarehouseId(uuid::Uuid::from_u128(w)));
            let (ka, kb) = (key(&a, wa), key(&b, wb));
            let (da, db): (&dyn ItemKey, &dyn ItemKey) = (&ka, &kb);
            prop_assert_eq!(da.cmp(db), ka.cmp(&kb));
            let borrowed = (&kb.0, kb.1);
            let map: BTreeMap<(Sku, WarehouseId), u8> = [(ka.clone(), 1), (kb.clone(), 2)].into();
            prop_assert_eq!(map.get(&borrowed as &dyn ItemKey), Some(&2));
        }

        /// A page is the whole history's marks after `after`, cut at
        /// `limit`: whatever the warehouses, moments and cursor.
        #[test]
        fn a_page_is_the_part_of_the_whole_history_it_names(
            moves in proptest::collection::vec((0u8..3, 0u64..3), 0..60),
            window in (0i64..40, 0i64..40),
            warehouse in proptest::option::of(0u8..3),
            after in proptest::option::of(0u64..80),
            limit in 1usize..20,
        ) {
            let sku = Sku::parse("KAOS-M").unwrap();
            let mut view = StockView::default();
            let mut position = 0;
            let mut date = 0;
            for (w, gap) in &moves {
                position += 1 + gap;
                date += *gap as i64;
                let marks = view
                    .history
                    .entry((sku.clone(), WarehouseId(uuid::Uuid::from_u128(u128::from(*w)))))
                    .or_default();
                let version = marks.len() as u64 + 1;
                marks.push(HistoryMark { position, version, date: Timestamp(date), last: 0 });
            }
            let (from, to) = (Some(Timestamp(window.0)), Some(Timestamp(window.0 + window.1)));
            let warehouse = warehouse.map(|w| WarehouseId(uuid::Uuid::from_u128(u128::from(w))));
            for (from, to) in [(None, None), (from, None), (None, to), (from, to)] {
                let mut whole: Vec<HistoryRef> = view
                    .history
                    .iter()
                    .filter(|((_, w), _)| warehouse.is_none_or(|x| x == *w))
                    .flat_map(|((_, w), marks)| {
                        marks.iter().enumerate().map(|(i, m)| HistoryRef {
                            warehouse_id: *w,
                            mark: *m,
                            first: i == 0,
                        })
                    })
                    .filter(|r| from.is_none_or(|f| r.mark.date >= f) && to.is_none_or(|t| r.mark.date < t))
                    .collect();
                whole.sort_by_key(|r| r.mark.position);
                prop_assert_eq!(&view.history_of(&sku, warehouse, from, to), &whole);
                let expected: Vec<HistoryRef> = whole
                    .into_iter()
                    .filter(|r| after.is_none_or(|a| r.mark.position > a))
                    .take(limit)
                    .collect();
                prop_assert_eq!(view.history_page(&sku, warehouse, from, to, after, limit), expected);
            }
        }
    }
}
