//! kedai's projections: pure folds of the global event log into the views
//! clients query: balances and the ledger, stock per warehouse with its
//! history, orders with their lists and counts, analytics, and the chat
//! inbox, and checkouts. Everything is keyed by shop; nothing crosses
//! shops.
//!
//! A fold does no I/O and reads no clock: the same log gives the same
//! state, byte for byte when serialised (every map is ordered). Events of
//! types this build does not know are skipped, not fatal.
//!
//! Layout:
//! - [`shop`]: what a shop's projections share (time zone, settings, the
//!   names of warehouses and products).
//! - [`balances`]: pending / available / withdrawing and the ledger list
//!   (a mark per entry; entries are made from the wallet stream when asked
//!   for, by [`balances::entry`]).
//! - [`stock`]: stock per SKU and warehouse, history (a mark per line;
//!   lines are made from the item's stock stream when asked for, by
//!   [`stock::line`]), low stock.
//! - [`orders`]: order summaries, filtered and paged lists, counts.
//! - [`bits`]: the orders of a status, as a set of bits.
//! - [`chunks`]: a list that grows in chunks (a shop's orders), so what
//!   it holds never moves.
//! - [`analytics`]: sales and profit by day and month, rankings, shares,
//!   customer service times.
//! - [`inbox`]: conversations newest first with their last message,
//!   unread counts; the outbox of queued messages and their delivery
//!   status. Messages are made from the conversation's stream when asked
//!   for ([`inbox::messages`]).
//! - [`checkouts`]: checkouts by status, counts, and the open ones by last
//!   activity (what the abandonment scheduler reads).
//! - [`intern`]: repeated values (couriers, names, customers) kept once.
//! - [`idmap`]: maps by uuid hashed for the fold, written in id order.
//! - [`placed`]: an order placed, read without copying its texts.
//! - [`webhooks`]: webhook subscriptions (no secrets) and delivery counts.
//! - [`runner`]: follows the store, applies events, waits for positions,
//!   snapshots.
//! - [`fold`]: a rebuild on several threads, each folding a share of the
//!   shops.

pub mod analytics;
pub mod balances;
pub mod bits;
pub mod checkouts;
pub mod chunks;
pub mod fold;
pub mod idmap;
pub mod inbox;
pub mod intern;
pub mod orders;
pub mod placed;
pub mod runner;
pub mod shop;
pub mod stock;
pub mod webhooks;

use std::collections::BTreeMap;

use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::events::DecodeError;
use kedai_engine::{Actor, Position, RecordedEvent, ShopId, Timestamp};
use serde::{Deserialize, Serialize};

/// What a fold knows about the event besides its payload.
#[derive(Debug, Clone, Copy)]
pub struct At<'a> {
    pub position: Position,
    /// The event's version in its stream.
    pub version: u64,
    pub recorded_at: Timestamp,
    pub actor: &'a Actor,
}

/// An event as the projections take it: an order placed (the biggest and
/// commonest big payload) read with its texts borrowed from the payload,
/// any other event decoded whole. An owned `OrderPlaced` is taken too.
/// The order is boxed, as the engine's events box theirs: every event is
/// moved a few times on its way to the projections, and a small one
/// should not move as many bytes as an order. (The engine's event is not
/// boxed: that would be an allocation for every small event.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Event<'a> {
    Placed(Box<placed::PlacedRef<'a>>),
    Domain(DomainEvent),
}

/// An event's payload decoded (`None`: a type this build does not know),
/// its type given as the bytes of its name (as an envelope stores them;
/// see [`DomainEvent::decode_raw`]); an order's parties found in `parties`
/// (if given) where they are known there.
pub(crate) fn decode<'a>(
    parties: Option<&mut placed::PartyCache>,
    position: Position,
    event_type: &[u8],
    payload: &'a [u8],
) -> Result<Option<Event<'a>>, ApplyError> {
    if event_type == b"OrderPlaced" {
        return decode_placed(parties, position, payload).map(|e| Some(Event::Placed(e)));
    }
    match DomainEvent::decode_raw(event_type, payload) {
        Ok(Some(e)) => Ok(Some(Event::Domain(e))),
        Ok(None) => Ok(None),
        Err(source) => Err(ApplyError { position, source }),
    }
}

/// An `OrderPlaced` payload read with its texts borrowed, its parties
/// found in `parties` (if given) where they are known there.
pub(crate) fn decode_placed<'a>(
    parties: Option<&mut placed::PartyCache>,
    position: Position,
    payload: &'a [u8],
) -> Result<Box<placed::PlacedRef<'a>>, ApplyError> {
    placed::PlacedRef::decode_with(payload, parties)
        .map(Box::new)
        .map_err(|e| ApplyError {
            position,
            source: DecodeError {
                event_type: "OrderPlaced".to_owned(),
                reason: e.to_string(),
            },
        })
}

/// An event's payload decoded into the engine's owned event (its type as
/// [`decode`]'s).
pub(crate) fn decode_owned(
    position: Position,
    event_type: &[u8],
    payload: &[u8],
) -> Result<Option<DomainEvent>, ApplyError> {
    DomainEvent::decode_raw(event_type, payload).map_err(|source| ApplyError { position, source })
}

/// One shop's projections.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ShopView {
    pub meta: shop::ShopMeta,
    pub balances: balances::Balances,
    pub stock: stock::StockView,
    pub orders: orders::OrdersView,
    pub analytics: analytics::Analytics,
    pub inbox: inbox::Inbox,
    pub checkouts: checkouts::Checkouts,
    #[serde(default)]
    pub webhooks: webhooks::Webhooks,
}

impl ShopView {
    fn apply(&mut self, at: At<'_>, event: &Event<'_>, views: Views) {
        let event = match event {
            Event::Placed(e) => return self.placed(at, e, views),
            Event::Domain(DomainEvent::OrderPlaced(e)) => {
                return self.placed(at, &placed::PlacedRef::from(&**e), views);
            }
            Event::Domain(e) => e,
        };
        let (orders, rest) = (views != Views::Rest, views != Views::Orders);
        // Meta first: the orders and analytics read names and settings
        // from it.
        if orders {
            self.meta.apply(at, event);
            if let DomainEvent::LedgerTransactionRecorded(e) = event
                && let (Some(order), Some(cod)) = (e.transaction.order_id, e.transaction.cod)
            {
                self.orders.set_cod_figures(order, cod);
            }
            let order_change = self.orders.apply(&self.meta, at, event);
            self.analytics
                .apply(&self.meta, at, event, order_change.as_ref());
        }
        if rest {
            self.balances.apply(at, event);
            self.stock.apply(at, event);
            self.inbox.apply(at, event);
            self.checkouts.apply(at, event);
            self.webhooks.apply(at, event);
        }
    }

    /// A new shop's views; in a rebuild (`bulk`), with the indexes only
    /// queries read left for [`Projections::end_bulk`].
    fn folded(bulk: bool) -> ShopView {
        let mut view = ShopView::default();
        if bulk {
            view.inbox.defer_recent();
        }
        view
    }

    /// An order placed: only the orders and analytics look at it.
    fn placed(&mut self, at: At<'_>, e: &placed::PlacedRef<'_>, views: Views) {
        if views == Views::Rest {
            return;
        }
        let order = self.orders.place(at, e);
        self.analytics.placed(&self.meta, order);
    }

    /// The shop's abandonment time (the default until it has settings).
    pub fn abandon_minutes(&self) -> u32 {
        self.meta
            .settings
            .as_ref()
            .map_or(DEFAULT_ABANDON_MINUTES, |s| s.checkout_abandon_minutes)
    }
}

/// Which of a shop's views an event is applied to. A fold that decodes a
/// busy shop's records on one thread and applies them on another (see
/// [`fold`]) applies each part on its own thread: neither part reads the
/// other's views.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Views {
    All,
    /// The shop's facts, its orders and analytics, and the count of
    /// events skipped.
    Orders,
    /// Balances, stock, the inbox, checkouts, webhooks, and the API keys.
    Rest,
}

/// Whether no view of [`Views::Orders`] reads this event: only events of
/// the types named here go to [`Views::Rest`] alone. Every other event
/// goes to both. Only commoner types are named, each made by the fixtures,
/// so a test folds each both ways (stock moves are a third of a shop's
/// events).
pub(crate) fn only_rest_reads(event: &DomainEvent) -> bool {
    use DomainEvent as E;
    matches!(
        event,
        E::StockReceived(_)
            | E::StockRemoved(_)
            | E::StockTransferredOut(_)
            | E::StockTransferredIn(_)
            | E::StockReserved(_)
            | E::StockReleased(_)
            | E::StockShipped(_)
            | E::StockRestocked(_)
            | E::WithdrawalRequested(_)
            | E::WithdrawalReviewed(_)
            | E::WithdrawalCompleted(_)
            | E::WithdrawalRejected(_)
            | E::WithdrawalCanceled(_)
            | E::CheckoutStarted(_)
            | E::CheckoutUpdated(_)
            | E::CheckoutCompleted(_)
            | E::CheckoutAbandoned(_)
            | E::ConversationLabelAdded(_)
            | E::ConversationLabelRemoved(_)
            | E::ConversationAssigned(_)
    )
}

/// Shoppegram's abandonment time, for a shop with no settings yet.
pub const DEFAULT_ABANDON_MINUTES: u32 = 60;

/// A checkout the scheduler should record as abandoned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DueCheckout {
    pub shop: ShopId,
    pub checkout_id: uuid::Uuid,
}

/// An API key, found by the hash of its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyEntry {
    pub shop: ShopId,
    pub key_id: uuid::Uuid,
    pub role: kedai_engine::Role,
    pub label: String,
    pub issued_at: Timestamp,
    pub revoked: bool,
}

/// Every projection of every shop, and the log position they reflect.
/// Its byte form (a snapshot's) is [`Projections::to_bytes`]'s, with each
/// shop's views on their own, not a serde form of this struct.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projections {
    /// Position of the last event applied.
    pub position: Position,
    pub shops: BTreeMap<ShopId, ShopView>,
    /// Every API key by the SHA-256 (hex) of its secret.
    pub keys: BTreeMap<String, KeyEntry>,
    /// Events skipped because their type is unknown to this build.
    pub skipped: u64,
    /// Set while a rebuild folds: indexes only queries read are made once
    /// at its end ([`Projections::end_bulk`]).
    pub(crate) bulk: bool,
}

/// An event that claims a known type but does not decode: the log is
/// damaged or was written by an incompatible build.
#[derive(Debug, thiserror::Error)]
#[error("event at position {position}: {source}")]
pub struct ApplyError {
    pub position: Position,
    #[source]
    pub source: DecodeError,
}

impl Projections {
    pub fn new() -> Self {
        Projections::default()
    }

    /// Empty projections for a rebuild: see [`Projections::end_bulk`].
    pub(crate) fn bulk() -> Self {
        Projections {
            bulk: true,
            ..Projections::default()
        }
    }

    /// Makes the index a rebuild left (the inbox's newest-first order),
    /// as folding event by event would have kept it.
    pub(crate) fn end_bulk(&mut self) {
        self.bulk = false;
        for view in self.shops.values_mut() {
            view.inbox.end_deferral();
        }
    }

    /// Applies the next event of the log (its position must follow the
    /// last one applied).
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<(), ApplyError> {
        assert_eq!(
            event.position,
            self.position + 1,
            "projections must see the log in order, without gaps"
        );
        let decoded = decode(
            None,
            event.position,
            event.event_type.as_bytes(),
            &event.payload,
        )?;
        let at = At {
            position: event.position,
            version: event.version,
            recorded_at: event.recorded_at,
            actor: &event.actor,
        };
        self.apply_decoded(event.stream.shop, at, decoded.as_ref());
        Ok(())
    }

    /// Applies an event already decoded (`None`: of a type this build
    /// does not know). Gaps are allowed: a share of the shops (see
    /// [`fold`]) sees only its shops' events.
    pub(crate) fn apply_decoded(&mut self, shop: ShopId, at: At<'_>, decoded: Option<&Event<'_>>) {
        self.apply_views(shop, at, decoded, Views::All);
    }

    /// Applies an event already decoded to some of the views.
    pub(crate) fn apply_views(
        &mut self,
        shop: ShopId,
        at: At<'_>,
        decoded: Option<&Event<'_>>,
        views: Views,
    ) {
        self.position = at.position;
        let Some(decoded) = decoded else {
            if views != Views::Rest {
                self.skipped += 1;
            }
            return;
        };
        match decoded {
            Event::Domain(DomainEvent::ApiKeyIssued(_) | DomainEvent::ApiKeyRevoked(_))
                if views == Views::Orders => {}
            Event::Domain(DomainEvent::ApiKeyIssued(e)) => {
                let entry = KeyEntry {
                    shop,
                    key_id: e.key_id,
                    role: e.role,
                    label: e.label.clone(),
                    issued_at: e.issued_at,
                    revoked: false,
                };
                self.keys.insert(e.hash.clone(), entry);
            }
            Event::Domain(DomainEvent::ApiKeyRevoked(e)) => {
                if let Some(k) = self
                    .keys
                    .values_mut()
                    .find(|k| k.key_id == e.key_id && k.shop == shop)
                {
                    k.revoked = true;
                }
            }
            _ => {
                let bulk = self.bulk;
                self.shops
                    .entry(shop)
                    .or_insert_with(|| ShopView::folded(bulk))
                    .apply(at, decoded, views)
            }
        }
    }

    /// The two parts of a fold applied as [`Views::Orders`] and
    /// [`Views::Rest`], put together: what applying every event to all
    /// the views gives.
    pub(crate) fn join_views(mut orders: Projections, rest: Projections) -> Projections {
        for (shop, r) in rest.shops {
            let v = orders.shops.entry(shop).or_default();
            v.balances = r.balances;
            v.stock = r.stock;
            v.inbox = r.inbox;
            v.checkouts = r.checkouts;
            v.webhooks = r.webhooks;
        }
        orders.keys = rest.keys;
        orders
    }

    /// The key whose secret hashes to `hash`, unless revoked.
    pub fn key(&self, hash: &str) -> Option<&KeyEntry> {
        self.keys.get(hash).filter(|k| !k.revoked)
    }

    /// A shop's keys, revoked ones included.
    pub fn keys_of(&self, shop: ShopId) -> Vec<&KeyEntry> {
        let mut keys: Vec<&KeyEntry> = self.keys.values().filter(|k| k.shop == shop).collect();
        keys.sort_by_key(|k| (k.issued_at, k.key_id));
        keys
    }

    /// One shop's view, if it has any event.
    pub fn shop(&self, shop: ShopId) -> Option<&ShopView> {
        self.shops.get(&shop)
    }

    /// Open checkouts due for abandonment at `now`, least recently active
    /// first within each shop, at most `limit`.
    pub fn due_checkouts(&self, now: Timestamp, limit: usize) -> Vec<DueCheckout> {
        let mut due = Vec::new();
        for (shop, view) in &self.shops {
            if due.len() >= limit {
                break;
            }
            let ids = view
                .checkouts
                .due(view.abandon_minutes(), now, limit - due.len());
            due.extend(ids.into_iter().map(|checkout_id| DueCheckout {
                shop: *shop,
                checkout_id,
            }));
        }
        due
    }

    /// When the next open checkout of any shop falls due.
    pub fn next_checkout_due(&self) -> Option<Timestamp> {
        self.shops
            .values()
            .filter_map(|v| v.checkouts.next_due(v.abandon_minutes()))
            .min()
    }

    /// Queued messages of every shop, oldest first (by the position they
    /// were queued at), at most `limit`.
    pub fn outbox(&self, limit: usize) -> Vec<(ShopId, &inbox::OutboxEntry)> {
        // The oldest `limit` of each shop hold the oldest `limit` of all.
        let mut all: Vec<(ShopId, &inbox::OutboxEntry)> = self
            .shops
            .iter()
            .flat_map(|(shop, v)| v.inbox.outbox().take(limit).map(move |e| (*shop, e)))
            .collect();
        all.sort_by_key(|(_, e)| e.position);
        all.truncate(limit);
        all
    }

    /// Queued messages of every shop.
    pub fn outbox_len(&self) -> usize {
        self.shops.values().map(|v| v.inbox.outbox_len()).sum()
    }

    /// The projections as MessagePack (a snapshot's payload), each shop's
    /// views as bytes of their own, written on every core, so that
    /// [`Projections::from_bytes`] can read the shops on several threads
    /// too. The same state always gives the same bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        self.write_bytes(&mut bytes)
            .expect("projections always encode, and a vector takes every byte");
        bytes
    }

    /// Writes what [`Projections::to_bytes`] gives to `out`, without
    /// holding all of it in memory: the shops are encoded a window at a
    /// time on every core (see [`windows`]), each shop's bytes written and
    /// dropped before the next window is encoded (a snapshot of a
    /// 10-million-event log is about 800 MB).
    pub fn write_bytes(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.write_bytes_on(out, cores(), WINDOW_BYTES)
    }

    fn write_bytes_on(
        &self,
        out: &mut impl std::io::Write,
        threads: usize,
        window_bytes: usize,
    ) -> std::io::Result<()> {
        let shops: Vec<(&ShopId, &ShopView)> = self.shops.iter().collect();
        let encode = |&(id, v): &(&ShopId, &ShopView)| {
            let mut bytes = Pieces::default();
            rmp_serde::encode::write(&mut bytes, v).expect("projections always encode");
            (*id, bytes)
        };
        let too_many =
            |what: String| std::io::Error::other(format!("{what}: more than a snapshot holds"));
        // `Stored`, field by field: the bytes its derived encoding gives.
        rmp::encode::write_array_len(out, 4).map_err(write_error)?;
        write_value(out, &self.position)?;
        let count =
            u32::try_from(shops.len()).map_err(|_| too_many(format!("{} shops", shops.len())))?;
        rmp::encode::write_array_len(out, count).map_err(write_error)?;
        // A shop's weight, for the windows: its orders, about 340 bytes
        // each in a snapshot, and its other views.
        let weight = |(_, v): &(&ShopId, &ShopView)| (v.orders.len() + 1) * 340;
        for window in windows(&shops, weight, threads, window_bytes) {
            let encoded = on_threads(window, weight, threads, encode);
            for (id, bytes) in encoded {
                rmp::encode::write_array_len(out, 2).map_err(write_error)?;
                write_value(out, &id)?;
                let len = u32::try_from(bytes.len).map_err(|_| {
                    too_many(format!("shop {id}: its views are {} bytes", bytes.len))
                })?;
                rmp::encode::write_bin_len(out, len).map_err(write_error)?;
                for piece in &bytes.pieces {
                    out.write_all(piece)?;
                }
            }
        }
        write_value(out, &self.keys)?;
        write_value(out, &self.skipped)
    }

    /// Reads what [`Projections::to_bytes`] wrote: the shops on every
    /// core (shops share nothing), each with its values shared as they
    /// are read (see [`intern::loading`]), then its indexes rebuilt.
    pub fn from_bytes(bytes: &[u8]) -> Result<Projections, rmp_serde::decode::Error> {
        Projections::read_bytes(&mut &bytes[..])
    }

    /// Reads what [`Projections::write_bytes`] wrote from `input`, as
    /// [`Projections::from_bytes`] does, without holding all of it in
    /// memory: a window of shops' bytes at a time (see [`windows`]), each
    /// dropped once its views are read. `input` should be checked first
    /// (a snapshot's checksum): a damaged length could ask for a large
    /// allocation.
    pub fn read_bytes(
        input: &mut impl std::io::Read,
    ) -> Result<Projections, rmp_serde::decode::Error> {
        Projections::read_bytes_on(input, cores(), WINDOW_BYTES)
    }

    fn read_bytes_on(
        input: &mut impl std::io::Read,
        threads: usize,
        window_min: usize,
    ) -> Result<Projections, rmp_serde::decode::Error> {
        use std::io::Read;

        use rmp_serde::decode::Error;
        // An array of `len` elements next.
        let array = |input: &mut _, len| match rmp::decode::read_array_len(input)? {
            n if n == len => Ok(()),
            n => Err(Error::LengthMismatch(n)),
        };
        array(&mut *input, 4)?;
        let position: Position = rmp_serde::from_read(&mut *input)?;
        let count = rmp::decode::read_array_len(input)? as usize;
        let mut shops = BTreeMap::new();
        let mut window: Vec<(ShopId, Vec<u8>)> = Vec::new();
        let mut window_bytes = 0;
        for read in 1..=count {
            // A pair of the shop's id and its bytes, read straight into a
            // vector of their length (serde would read them into a buffer
            // of its own first, then copy them).
            array(&mut *input, 2)?;
            let id: ShopId = rmp_serde::from_read(&mut *input)?;
            let len = rmp::decode::read_bin_len(input)? as usize;
            let mut bytes = Vec::new();
            bytes
                .try_reserve_exact(len)
                .map_err(|e| Error::Uncategorized(e.to_string()))?;
            input
                .take(len as u64)
                .read_to_end(&mut bytes)
                .map_err(Error::InvalidDataRead)?;
            if bytes.len() != len {
                return Err(Error::InvalidDataRead(
                    std::io::ErrorKind::UnexpectedEof.into(),
                ));
            }
            window_bytes += len;
            window.push((id, bytes));
            if window_full(window.len(), window_bytes, threads, window_min) || read == count {
                let bytes: Vec<(ShopId, &serde_bytes::Bytes)> = window
                    .iter()
                    .map(|(id, b)| (*id, serde_bytes::Bytes::new(b)))
                    .collect();
                let views = load_shops(&bytes, threads)?;
                shops.extend(window.iter().map(|(id, _)| *id).zip(views));
                window.clear();
                window_bytes = 0;
            }
        }
        Ok(Projections {
            position,
            shops,
            keys: rmp_serde::from_read(&mut *input)?,
            skipped: rmp_serde::from_read(&mut *input)?,
            bulk: false,
        })
    }
}

/// The cores there are.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Bytes of shops' snapshot bytes a window holds at least (unless it is
/// the last): many small shops go in one window, so that a window's
/// threads are started for a few megabytes of work, not for each shop.
const WINDOW_BYTES: usize = 32 << 20;

/// Whether a window of `shops` shops and `bytes` bytes is full: it has a
/// shop for every thread and `min` bytes ([`WINDOW_BYTES`]).
fn window_full(shops: usize, bytes: usize, threads: usize, min: usize) -> bool {
    shops >= threads && bytes >= min
}

/// `items` cut, in order, into the windows a snapshot is written and read
/// in: each full (see [`window_full`]) by `weight` (bytes), but the last.
/// A snapshot holds one window's shops' bytes at a time.
fn windows<T>(items: &[T], weight: impl Fn(&T) -> usize, threads: usize, min: usize) -> Vec<&[T]> {
    let mut windows = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        bytes += weight(item);
        if window_full(i + 1 - start, bytes, threads, min) {
            windows.push(&items[start..=i]);
            (start, bytes) = (i + 1, 0);
        }
    }
    if start < items.len() {
        windows.push(&items[start..]);
    }
    windows
}

/// Bytes kept in pieces of up to [`Pieces::PIECE`] bytes: none is moved
/// as they grow. (A vector doubles its capacity as it fills, each time
/// moving its bytes and freeing the old ones, which the allocator keeps
/// for a while: a 200 MB shop left about as much again behind it.) The
/// pieces grow as the bytes do, so a small shop takes a small piece.
#[derive(Debug, Default)]
struct Pieces {
    pieces: Vec<Vec<u8>>,
    len: usize,
}

impl Pieces {
    const PIECE: usize = 1 << 20;
    const FIRST: usize = 4 << 10;
}

impl std::io::Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.pieces.last().is_none_or(|p| p.len() == p.capacity()) {
            let size = self.len.clamp(Pieces::FIRST, Pieces::PIECE);
            self.pieces.push(Vec::with_capacity(size));
        }
        let last = self.pieces.last_mut().expect("a piece was just made");
        let n = buf.len().min(last.capacity() - last.len());
        last.extend_from_slice(&buf[..n]);
        self.len += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes `value` as MessagePack, as `rmp_serde::to_vec` encodes it.
fn write_value(out: &mut impl std::io::Write, value: &impl Serialize) -> std::io::Result<()> {
    rmp_serde::encode::write(out, value).map_err(|e| match e {
        rmp_serde::encode::Error::InvalidValueWrite(e) => write_error(e),
        e => std::io::Error::other(e),
    })
}

/// The output's own error, out of MessagePack's wrapping of it.
fn write_error(e: rmp::encode::ValueWriteError) -> std::io::Error {
    match e {
        rmp::encode::ValueWriteError::InvalidMarkerWrite(e)
        | rmp::encode::ValueWriteError::InvalidDataWrite(e) => e,
    }
}

/// The byte form of [`Projections`] (see [`Projections::to_bytes`]): each
/// shop's views as bytes `B`. Written and read field by field
/// ([`Projections::write_bytes`], [`Projections::read_bytes`]), so that a
/// snapshot is never whole in memory; the tests check that those give
/// this struct's derived encoding.
#[cfg(test)]
#[derive(Serialize, Deserialize)]
struct Stored<'a, B> {
    position: Position,
    shops: Vec<(ShopId, B)>,
    keys: std::borrow::Cow<'a, BTreeMap<String, KeyEntry>>,
    skipped: u64,
}

/// Reads the shops' views on up to `threads` threads, in order.
fn load_shops(
    shops: &[(ShopId, &serde_bytes::Bytes)],
    threads: usize,
) -> Result<Vec<ShopView>, rmp_serde::decode::Error> {
    fn load(bytes: &[u8]) -> Result<ShopView, rmp_serde::decode::Error> {
        let mut shop: ShopView = intern::loading(|| rmp_serde::from_slice(bytes))?;
        shop.orders.rebuild_indexes();
        shop.inbox.rebuild_indexes();
        shop.checkouts.rebuild_indexes();
        shop.analytics.share_texts();
        Ok(shop)
    }
    on_threads(
        shops,
        |(_, bytes)| bytes.len(),
        threads,
        |(_, bytes)| load(bytes),
    )
    .into_iter()
    .collect()
}

/// `f` of each item, in the items' order, worked out on up to `threads`
/// threads: the heaviest items (by `weight`) first, each to the next free
/// thread. Shops share nothing, so each can be written or read on its own.
fn on_threads<T: Sync, R: Send>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(weight(&items[i])));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut done: Vec<(usize, R)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(&i) = order.get(n) else {
                            return done;
                        };
                        done.push((i, f(&items[i])));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a worker thread does not panic"))
            .collect()
    });
    done.sort_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use kedai_engine::store::conformance::read_everything;
    use kedai_fixtures::{FixtureConfig, generate_in_memory};

    use super::*;

    /// A generated log of 5 shops, every kind of event the fixtures make.
    fn five_shops_log() -> Vec<RecordedEvent> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let config = FixtureConfig {
                shops: 5,
                orders_per_shop: 40,
                days: 10,
                ..FixtureConfig::default()
            };
            let store = generate_in_memory(&config).await.unwrap();
            read_everything(&*store).await
        })
    }

    /// The projections of [`five_shops_log`].
    fn five_shops() -> Projections {
        let mut p = Projections::new();
        for e in &five_shops_log() {
            p.apply(e).unwrap();
        }
        p
    }

    #[test]
    fn the_two_parts_of_the_views_put_together_are_all_of_them() {
        let events = five_shops_log();
        let (mut all, mut orders, mut rest) =
            (Projections::new(), Projections::new(), Projections::new());
        let mut rest_only = std::collections::BTreeSet::new();
        for e in &events {
            all.apply(e).unwrap();
            let decoded = decode(None, e.position, e.event_type.as_bytes(), &e.payload).unwrap();
            let at = At {
                position: e.position,
                version: e.version,
                recorded_at: e.recorded_at,
                actor: &e.actor,
            };
            let shop = e.stream.shop;
            rest.apply_views(shop, at, decoded.as_ref(), Views::Rest);
            if let Some(Event::Domain(d)) = &decoded
                && only_rest_reads(d)
            {
                rest_only.insert(d.event_type());
                continue;
            }
            orders.apply_views(shop, at, decoded.as_ref(), Views::Orders);
        }
        let mut joined = Projections::join_views(orders, rest);
        joined.position = all.position;
        assert!(joined.to_bytes() == all.to_bytes());
        // The fixtures make every type only the rest reads, so each is
        // checked (and the fold's tests check it on a staged fold too).
        let made: Vec<&str> = rest_only.into_iter().collect();
        let named = [
            "CheckoutAbandoned",
            "CheckoutCompleted",
            "CheckoutStarted",
            "CheckoutUpdated",
            "ConversationAssigned",
            "ConversationLabelAdded",
            "ConversationLabelRemoved",
            "StockReceived",
            "StockReleased",
            "StockRemoved",
            "StockReserved",
            "StockRestocked",
            "StockShipped",
            "StockTransferredIn",
            "StockTransferredOut",
            "WithdrawalCanceled",
            "WithdrawalCompleted",
            "WithdrawalRejected",
            "WithdrawalRequested",
            "WithdrawalReviewed",
        ];
        assert_eq!(made, named);
    }

    #[test]
    fn bytes_in_pieces_are_the_bytes_written() {
        use std::io::Write;
        let data: Vec<u8> = (0..3 * Pieces::PIECE + 17)
            .map(|i| (i * 31 % 251) as u8)
            .collect();
        for sizes in [&[1][..], &[7, Pieces::PIECE - 3], &[Pieces::PIECE + 5, 1]] {
            let mut pieces = Pieces::default();
            let mut at = 0;
            for size in sizes.iter().cycle() {
                if at == data.len() {
                    break;
                }
                let end = (at + size).min(data.len());
                pieces.write_all(&data[at..end]).unwrap();
                at = end;
            }
            assert_eq!(pieces.len, data.len());
            assert!(pieces.pieces.iter().all(|p| p.len() <= Pieces::PIECE));
            assert!(pieces.pieces.concat() == data, "{sizes:?}");
        }
    }

    #[test]
    fn windows_hold_a_shop_for_every_thread_and_their_bytes() {
        let items = [5, 1, 1, 1, 9, 2, 2];
        let cut = |threads, min| -> Vec<Vec<usize>> {
            windows(&items, |w| *w, threads, min)
                .into_iter()
                .map(<[usize]>::to_vec)
                .collect()
        };
        assert_eq!(cut(1, 0), items.map(|w| vec![w]));
        assert_eq!(cut(2, 0), [vec![5, 1], vec![1, 1], vec![9, 2], vec![2]]);
        assert_eq!(cut(2, 6), [vec![5, 1], vec![1, 1, 9], vec![2, 2]]);
        assert_eq!(cut(3, 100), [items.to_vec()]);
        assert!(cut(2, 0).concat() == items);
        assert!(windows(&[] as &[usize], |w| *w, 2, 0).is_empty());
    }

    #[test]
    fn work_on_threads_comes_back_in_the_items_order() {
        let items: Vec<usize> = (0..50).map(|i| (i * 37) % 11).collect();
        let expected: Vec<usize> = items.iter().map(|w| w * 1000).collect();
        for threads in 0..=6 {
            assert_eq!(
                on_threads(&items, |w| *w, threads, |w| w * 1000),
                expected,
                "{threads} threads"
            );
        }
        assert!(on_threads(&[] as &[usize], |w| *w, 4, |w| *w).is_empty());
    }

    #[test]
    fn the_byte_form_reads_back_the_same_on_any_number_of_threads() {
        let p = five_shops();
        assert_eq!(p.shops.len(), 5);
        let bytes = p.to_bytes();
        let stored: Stored<'_, &serde_bytes::Bytes> = rmp_serde::from_slice(&bytes).unwrap();
        // Written shop by shop, the bytes are `Stored`'s derived encoding.
        let whole = Stored {
            position: p.position,
            shops: p
                .shops
                .iter()
                .map(|(id, v)| {
                    (
                        *id,
                        serde_bytes::ByteBuf::from(rmp_serde::to_vec(v).unwrap()),
                    )
                })
                .collect(),
            keys: std::borrow::Cow::Borrowed(&p.keys),
            skipped: p.skipped,
        };
        assert!(rmp_serde::to_vec(&whole).unwrap() == bytes);
        // In windows of any size, on any number of threads, the same.
        let shop_bytes: Vec<usize> = whole.shops.iter().map(|(_, b)| b.len()).collect();
        for threads in 1..=6 {
            for min in [
                0,
                shop_bytes[0],
                shop_bytes.iter().sum::<usize>() / 2,
                usize::MAX,
            ] {
                let mut written = Vec::new();
                p.write_bytes_on(&mut written, threads, min).unwrap();
                assert!(
                    written == bytes,
                    "{threads} threads, windows of {min} bytes"
                );
                let back = Projections::read_bytes_on(&mut &bytes[..], threads, min).unwrap();
                assert!(back == p, "{threads} threads, windows of {min} bytes");
            }
        }
        for threads in 1..=6 {
            let views = load_shops(&stored.shops, threads).unwrap();
            let back = Projections {
                position: stored.position,
                shops: stored.shops.iter().map(|(id, _)| *id).zip(views).collect(),
                keys: stored.keys.clone().into_owned(),
                skipped: stored.skipped,
                bulk: false,
            };
            assert!(back == p, "{threads} threads");
            assert!(back.to_bytes() == bytes, "{threads} threads");
        }
        assert!(Projections::from_bytes(&bytes).unwrap() == p);

        // A shop's bytes damaged: an error, whichever thread reads them.
        let mut damaged = stored.shops.clone();
        damaged[3].1 = serde_bytes::Bytes::new(&[0xc1]);
        for threads in 1..=6 {
            assert!(load_shops(&damaged, threads).is_err(), "{threads} threads");
        }
        // The form before shops had bytes of their own (the struct's
        // fields in order, the shops' views inline) is refused.
        let old = rmp_serde::to_vec(&(p.position, &p.shops, &p.keys, p.skipped)).unwrap();
        assert!(Projections::from_bytes(&old).is_err());
    }
}
