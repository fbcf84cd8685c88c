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
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
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
        self.on_hand.saturating_sub(self.reserved)
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
    pub levels: Items<StockLevel>,
    /// One mark per history line of each item, oldest first.
    pub history: Items<Vec<HistoryMark>>,
}

/// What a stock event does to its item: (SKU, warehouse, change of on
/// hand, change of reserved, whether it is a history line). `None` for
/// any other event.
fn effect(event: &DomainEvent) -> Option<(&Sku, WarehouseId, i64, i64, bool)> {
    let (sku, warehouse, d_on_hand, d_reserved) = match event {
        DomainEvent::StockReceived(e) => (&e.sku, e.warehouse_id, e.quantity, 0),
        DomainEvent::StockRemoved(e) => (&e.sku, e.warehouse_id, e.quantity.saturating_neg(), 0),
        DomainEvent::StockTransferredOut(e) => {
            (&e.sku, e.warehouse_id, e.quantity.saturating_neg(), 0)
        }
        DomainEvent::StockTransferredIn(e) => (&e.sku, e.warehouse_id, e.quantity, 0),
        DomainEvent::StockCounted(e) => (&e.sku, e.warehouse_id, e.delta, 0),
        DomainEvent::StockReserved(e) => (&e.sku, e.warehouse_id, 0, e.quantity),
        DomainEvent::StockReleased(e) => (&e.sku, e.warehouse_id, 0, e.quantity.saturating_neg()),
        DomainEvent::StockShipped(e) => {
            let out = e.quantity.saturating_neg();
            (&e.sku, e.warehouse_id, out, out)
        }
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

/// An item's key: a SKU in a warehouse.
pub type ItemKey = (Sku, WarehouseId);

/// The items of a shop, each with a value: found by hashing their key (a
/// stock event costs one probe and one comparison of its SKU, where a
/// B-tree compared it with a dozen others), listed in key order (SKU,
/// then warehouse).
///
/// Serialised as the `BTreeMap<ItemKey, V>` it replaces is (a map, in key
/// order), so snapshots read the same either way.
#[derive(Clone)]
pub struct Items<V> {
    /// In the order the items came first.
    entries: Vec<(ItemKey, V)>,
    /// Places in `entries`, in key order (a B-tree, not a sorted list: a
    /// shop of many thousand items would move the list's tail on every
    /// new item).
    sorted: BTreeMap<ItemKey, u32>,
    /// Places in `entries`, by their key's hash.
    table: HashTable<u32>,
    hasher: RandomState,
}

impl<V> Default for Items<V> {
    fn default() -> Self {
        Items {
            entries: Vec::new(),
            sorted: BTreeMap::new(),
            table: HashTable::new(),
            hasher: RandomState::default(),
        }
    }
}

impl<V> Items<V> {
    fn hash(&self, sku: &str, warehouse: WarehouseId) -> u64 {
        self.hasher.hash_one((sku, warehouse))
    }

    fn place(&self, sku: &str, warehouse: WarehouseId) -> Option<usize> {
        let entries = &self.entries;
        self.table
            .find(self.hash(sku, warehouse), |&i| {
                let (s, w) = &entries[i as usize].0;
                *w == warehouse && s.as_str() == sku
            })
            .map(|&i| i as usize)
    }

    pub fn get(&self, sku: &Sku, warehouse: WarehouseId) -> Option<&V> {
        self.place(sku.as_str(), warehouse)
            .map(|i| &self.entries[i].1)
    }

    pub fn get_mut(&mut self, sku: &Sku, warehouse: WarehouseId) -> Option<&mut V> {
        self.place(sku.as_str(), warehouse)
            .map(|i| &mut self.entries[i].1)
    }

    /// The value of an item, `make`'s if the item is new.
    pub fn get_or_insert_with(
        &mut self,
        sku: &Sku,
        warehouse: WarehouseId,
        make: impl FnOnce() -> V,
    ) -> &mut V {
        let i = match self.place(sku.as_str(), warehouse) {
            Some(i) => i,
            None => self.insert_new((sku.clone(), warehouse), make()),
        };
        &mut self.entries[i].1
    }

    /// Adds an item that is not there yet; its place in `entries`.
    fn insert_new(&mut self, key: ItemKey, value: V) -> usize {
        let i = self.entries.len();
        let hash = self.hash(key.0.as_str(), key.1);
        self.sorted.insert(key.clone(), i as u32);
        self.entries.push((key, value));
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.table.insert_unique(hash, i as u32, |&j| {
            let (s, w) = &entries[j as usize].0;
            hasher.hash_one((s.as_str(), *w))
        });
        i
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every item, in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&ItemKey, &V)> + '_ {
        self.sorted.values().map(|&i| {
            let (k, v) = &self.entries[i as usize];
            (k, v)
        })
    }

    /// Every item's key, in key order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &ItemKey> + '_ {
        self.iter().map(|(k, _)| k)
    }

    /// The items of one SKU (every warehouse), in key order.
    pub fn of_sku<'a>(&'a self, sku: &'a Sku) -> impl Iterator<Item = (&'a ItemKey, &'a V)> + 'a {
        let from = (sku.clone(), WarehouseId(uuid::Uuid::nil()));
        self.sorted
            .range(from..)
            .map(|(_, &i)| {
                let (k, v) = &self.entries[i as usize];
                (k, v)
            })
            .take_while(move |((s, _), _)| s == sku)
    }
}

impl<V: PartialEq> PartialEq for Items<V> {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl<V: Eq> Eq for Items<V> {}

impl<V: std::fmt::Debug> std::fmt::Debug for Items<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Serialize> Serialize for Items<V> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Items<V> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = BTreeMap::<ItemKey, V>::deserialize(deserializer)?;
        Ok(map.into_iter().collect())
    }
}

impl<V> FromIterator<(ItemKey, V)> for Items<V> {
    /// The items of `iter`; of a key that comes twice, the last value.
    fn from_iter<I: IntoIterator<Item = (ItemKey, V)>>(iter: I) -> Self {
        let mut items = Items::default();
        for ((sku, warehouse), value) in iter {
            match items.get_mut(&sku, warehouse) {
                Some(v) => *v = value,
                None => {
                    items.insert_new((sku, warehouse), value);
                }
            }
        }
        items
    }
}

impl StockView {
    pub fn apply(&mut self, at: At<'_>, event: &DomainEvent) {
        let Some((sku, warehouse, d_on_hand, d_reserved, is_line)) = effect(event) else {
            return;
        };
        let level = self
            .levels
            .get_or_insert_with(sku, warehouse, StockLevel::default);
        // Quantities a command takes are far from `i64`'s ends; a log can
        // hold any, and the fold must get through it.
        level.on_hand = level.on_hand.saturating_add(d_on_hand);
        level.reserved = level.reserved.saturating_add(d_reserved);
        if is_line {
            let mark = HistoryMark {
                position: at.position,
                version: at.version,
                date: at.recorded_at,
                last: level.on_hand,
            };
            self.history
                .get_or_insert_with(sku, warehouse, Vec::new)
                .push(mark);
        }
    }

    /// Every warehouse's level of one SKU.
    pub fn of_sku(&self, sku: &Sku) -> Vec<(WarehouseId, StockLevel)> {
        self.levels
            .of_sku(sku)
            .map(|((_, w), l)| (*w, *l))
            .collect()
    }

    /// A SKU's total over its warehouses.
    pub fn total(&self, sku: &Sku) -> StockLevel {
        self.of_sku(sku)
            .into_iter()
            .fold(StockLevel::default(), |a, (_, l)| StockLevel {
                on_hand: a.on_hand.saturating_add(l.on_hand),
                reserved: a.reserved.saturating_add(l.reserved),
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
        let mut cursors: Vec<(WarehouseId, &[HistoryMark], usize)> = self
            .history
            .of_sku(sku)
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
        self.history.get(sku, warehouse).map_or(0, Vec::len)
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
        quantity_out: d_on_hand.saturating_neg().max(0),
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
            let marks = view.history.get(&key.0, key.1).expect("a line was marked");
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
        /// The items answer as a `BTreeMap` of the same operations does:
        /// the value found for every key, the items in key order, of one
        /// SKU, and their MessagePack bytes (a snapshot reads either).
        #[test]
        fn items_are_a_map_in_key_order(
            ops in proptest::collection::vec(("[A-C][a-c0-2]{0,2}", 0u128..3, -5i64..5), 0..60),
            probe in "[A-C][a-c0-2]{0,2}",
        ) {
            let key = |s: &str, w: u128| (Sku::parse(s).unwrap(), WarehouseId(uuid::Uuid::from_u128(w)));
            let mut items: Items<i64> = Items::default();
            let mut model: BTreeMap<ItemKey, i64> = BTreeMap::new();
            for (s, w, n) in &ops {
                let (sku, warehouse) = key(s, *w);
                *items.get_or_insert_with(&sku, warehouse, || 100) += n;
                *model.entry((sku, warehouse)).or_insert(100) += n;
            }
            prop_assert_eq!(items.len(), model.len());
            prop_assert!(items.iter().eq(model.iter()));
            for w in 0..4 {
                let (sku, warehouse) = key(&probe, w);
                prop_assert_eq!(items.get(&sku, warehouse), model.get(&(sku.clone(), warehouse)));
            }
            let sku = key(&probe, 0).0;
            prop_assert!(items.of_sku(&sku).eq(model.iter().filter(|((s, _), _)| *s == sku)));
            let bytes = rmp_serde::to_vec(&items).unwrap();
            prop_assert_eq!(&bytes, &rmp_serde::to_vec(&model).unwrap());
            let read: Items<i64> = rmp_serde::from_slice(&bytes).unwrap();
            prop_assert!(read == items);
            for ((sku, warehouse), value) in &model {
                prop_assert_eq!(read.get(sku, *warehouse), Some(value));
            }
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
                let marks = view.history.get_or_insert_with(
                    &sku,
                    WarehouseId(uuid::Uuid::from_u128(u128::from(*w))),
                    Vec::new,
                );
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
