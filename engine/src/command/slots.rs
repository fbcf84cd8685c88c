//! The command engine's memory: the state and version of recently used
//! streams, one slot per stream behind an async mutex.
//!
//! A slot's state is what the engine has *submitted* to the store, not only
//! what is durable: after an append is queued, its events are applied to
//! the slot at once, so the next command on that stream is decided right
//! away and its append joins the same group commit. If an append then
//! fails, its slots are marked stale and reloaded from the store on next
//! use; commands decided on the failed state fail their expected-version
//! check and are retried.
//!
//! When other writers share the store (several kedai nodes on one
//! database), a slot can also fall behind the store. The engine's follower
//! reads the log and calls [`Slots::saw`] for every event: an event beyond
//! a slot's version marks the slot stale, and its next user reads the
//! events after the slot's last one (or reloads the slot, if the store does
//! not hold that event where the slot has it).
//! Each slot also remembers the id of its last event, which the engine
//! names in its expected versions, so an append decided on events that
//! were never recorded fails even if another writer's events took their
//! versions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dashmap::DashMap;
use tokio::sync::{Mutex, OwnedMutexGuard};
use uuid::Uuid;

use crate::domain::access::Keys;
use crate::domain::catalog::{Customer, Product, Shop, SkuOwner, Warehouses};
use crate::domain::chat::{Conversation, Template};
use crate::domain::checkout::Checkout;
use crate::domain::events::DomainEvent;
use crate::domain::order::Order;
use crate::domain::stock::StockItem;
use crate::domain::wallet::{Expense, Wallet, Withdrawal};
use crate::domain::webhook::Webhook;
use crate::event::{RecordedEvent, StreamId};
use crate::store::{EventStore, READ_EVENTS_MAX, StoreError};

/// The state of any aggregate the engine keeps.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // kept behind an Arc, one per stream
pub enum State {
    Shop(Shop),
    Warehouses(Warehouses),
    Product(Product),
    Sku(SkuOwner),
    Customer(Customer),
    Stock(StockItem),
    Order(Order),
    Wallet(Wallet),
    Withdrawal(Withdrawal),
    Expense(Expense),
    Checkout(Checkout),
    Conversation(Conversation),
    Template(Template),
    Keys(Keys),
    Webhook(Webhook),
}

/// Which aggregate a stream holds, to make its empty state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Shop,
    Warehouses,
    Product,
    Sku,
    Customer,
    Stock,
    Order,
    Wallet,
    Withdrawal,
    Expense,
    Checkout,
    Conversation,
    Template,
    Keys,
    Webhook,
}

impl State {
    fn empty(kind: Kind) -> State {
        match kind {
            Kind::Shop => State::Shop(Shop::default()),
            Kind::Warehouses => State::Warehouses(Warehouses::default()),
            Kind::Product => State::Product(Product::default()),
            Kind::Sku => State::Sku(SkuOwner::default()),
            Kind::Customer => State::Customer(Customer::default()),
            Kind::Stock => State::Stock(StockItem::default()),
            Kind::Order => State::Order(Order::default()),
            Kind::Wallet => State::Wallet(Wallet::default()),
            Kind::Withdrawal => State::Withdrawal(Withdrawal::default()),
            Kind::Expense => State::Expense(Expense::default()),
            Kind::Checkout => State::Checkout(Checkout::default()),
            Kind::Conversation => State::Conversation(Conversation::default()),
            Kind::Template => State::Template(Template::default()),
            Kind::Keys => State::Keys(Keys::default()),
            Kind::Webhook => State::Webhook(Webhook::default()),
        }
    }

    pub fn evolve(&mut self, event: &DomainEvent) {
        match self {
            State::Shop(s) => s.evolve(event),
            State::Warehouses(s) => s.evolve(event),
            State::Product(s) => s.evolve(event),
            State::Sku(s) => s.evolve(event),
            State::Customer(s) => s.evolve(event),
            State::Stock(s) => s.evolve(event),
            State::Order(s) => s.evolve(event),
            State::Wallet(s) => s.evolve(event),
            State::Withdrawal(s) => s.evolve(event),
            State::Expense(s) => s.evolve(event),
            State::Checkout(s) => s.evolve(event),
            State::Conversation(s) => s.evolve(event),
            State::Template(s) => s.evolve(event),
            State::Keys(s) => s.evolve(event),
            State::Webhook(s) => s.evolve(event),
        }
    }
}

macro_rules! accessors {
    ($($fn_name:ident: $variant:ident => $ty:ty),* $(,)?) => {
        impl State {
            $(
                /// The state as this aggregate; the engine names streams by
                /// aggregate, so any other kind is a bug.
                pub fn $fn_name(&self) -> &$ty {
                    match self {
                        State::$variant(s) => s,
                        other => panic!("stream holds {other:?}, not {}", stringify!($variant)),
                    }
                }
            )*
        }
    };
}

accessors! {
    shop: Shop => Shop,
    warehouses: Warehouses => Warehouses,
    product: Product => Product,
    sku: Sku => SkuOwner,
    customer: Customer => Customer,
    stock: Stock => StockItem,
    order: Order => Order,
    wallet: Wallet => Wallet,
    withdrawal: Withdrawal => Withdrawal,
    expense: Expense => Expense,
    checkout: Checkout => Checkout,
    conversation: Conversation => Conversation,
    template: Template => Template,
    keys: Keys => Keys,
    webhook: Webhook => Webhook,
}

/// What the follower may look at without taking a slot's lock.
#[derive(Debug, Default)]
pub struct Mark {
    /// The slot's version (a copy, updated with it).
    version: AtomicU64,
    /// Set when the store holds events beyond the slot's version.
    stale: AtomicBool,
}

/// One stream's cached state.
#[derive(Debug)]
pub struct Slot {
    kind: Kind,
    /// Number of the stream's events folded into `state`.
    pub version: u64,
    /// Id of the event at `version` (`None` at version 0).
    pub last_event_id: Option<Uuid>,
    /// Shared with readers; copied on write only while a reader holds it.
    pub state: Arc<State>,
    /// Whether `state` reflects the store (else reload before use).
    loaded: bool,
    mark: Arc<Mark>,
}

impl Slot {
    /// Applies events the engine has just submitted for this stream; the
    /// last of them has id `last_event_id`.
    pub fn apply(&mut self, events: &[DomainEvent], last_event_id: Uuid) {
        let state = Arc::make_mut(&mut self.state);
        for e in events {
            state.evolve(e);
        }
        self.set_version(self.version + events.len() as u64, Some(last_event_id));
    }

    fn set_version(&mut self, version: u64, last_event_id: Option<Uuid>) {
        self.version = version;
        self.last_event_id = last_event_id;
        self.mark.version.store(version, Ordering::Release);
    }

    /// Forgets the state: the next user reloads it from the store.
    pub fn invalidate(&mut self) {
        self.loaded = false;
    }

    /// Loads the slot from the store if it was never loaded, was
    /// invalidated or was marked stale.
    ///
    /// A slot only marked stale (another writer appended after the events
    /// it holds) catches up from its last event, if the store holds that
    /// event at the slot's version: every append the engine makes names
    /// the last event it was decided on, so then every event the slot
    /// holds is recorded. Otherwise, and after an invalidation, it is
    /// loaded from the stream's first event, since the state may hold
    /// submitted events that were never recorded.
    async fn load(&mut self, store: &dyn EventStore, stream: &StreamId) -> Result<(), LoadError> {
        // Cleared before reading: a mark set while we read stays set.
        let stale = self.mark.stale.swap(false, Ordering::AcqRel);
        if self.loaded && !stale {
            return Ok(());
        }
        let mut caught_up = false;
        if self.loaded && self.version > 0 {
            let events = store
                .read_stream(stream, self.version, READ_EVENTS_MAX)
                .await?;
            if let Some((tip, rest)) = events.split_first()
                && tip.version == self.version
                && Some(tip.event_id) == self.last_event_id
            {
                self.fold(stream, rest)?;
                caught_up = true;
            }
        }
        if !caught_up {
            self.state = Arc::new(State::empty(self.kind));
            self.set_version(0, None);
        }
        loop {
            let events = store
                .read_stream(stream, self.version + 1, READ_EVENTS_MAX)
                .await?;
            if events.is_empty() {
                break;
            }
            self.fold(stream, &events)?;
        }
        self.loaded = true;
        Ok(())
    }

    /// Folds recorded events into the state.
    fn fold(&mut self, stream: &StreamId, events: &[RecordedEvent]) -> Result<(), LoadError> {
        for recorded in events {
            if let Some(event) = DomainEvent::decode(&recorded.event_type, &recorded.payload)
                .map_err(|e| {
                    LoadError::Undecodable(format!("{stream} version {}: {e}", recorded.version))
                })?
            {
                Arc::make_mut(&mut self.state).evolve(&event);
            }
            self.set_version(recorded.version, Some(recorded.event_id));
        }
        Ok(())
    }
}

/// Why a slot could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("an event in the log does not decode: {0}")]
    Undecodable(String),
}

/// A slot and its mark.
type Entry = (Arc<Mutex<Slot>>, Arc<Mark>);

/// Every cached slot.
#[derive(Debug)]
pub struct Slots {
    map: DashMap<StreamId, Entry, foldhash::fast::RandomState>,
    capacity: usize,
    /// Slots marked stale so far.
    marked: AtomicU64,
}

/// Locked slots of one command, by stream.
pub type Locked = BTreeMap<StreamId, OwnedMutexGuard<Slot>>;

impl Slots {
    pub fn new(capacity: usize) -> Self {
        Slots {
            map: DashMap::default(),
            capacity,
            marked: AtomicU64::new(0),
        }
    }

    fn slot(&self, stream: &StreamId, kind: Kind) -> Arc<Mutex<Slot>> {
        if let Some(entry) = self.map.get(stream) {
            return Arc::clone(&entry.0);
        }
        let mark = Arc::new(Mark::default());
        let fresh = Slot {
            kind,
            version: 0,
            last_event_id: None,
            state: Arc::new(State::empty(kind)),
            loaded: false,
            mark: Arc::clone(&mark),
        };
        Arc::clone(
            &self
                .map
                .entry(stream.clone())
                .or_insert_with(|| (Arc::new(Mutex::new(fresh)), mark))
                .0,
        )
    }

    /// Tells the cache that the store holds `stream` at (at least)
    /// `version`: a slot behind it is marked stale, without waiting for
    /// its lock. The follower calls this for every event it reads; the
    /// engine's own events are at or below their slots' versions already.
    pub fn saw(&self, stream: &StreamId, version: u64) {
        if let Some(entry) = self.map.get(stream)
            && version > entry.1.version.load(Ordering::Acquire)
            && !entry.1.stale.swap(true, Ordering::AcqRel)
        {
            self.marked.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many times a slot was marked stale, so far.
    pub fn marked(&self) -> u64 {
        self.marked.load(Ordering::Relaxed)
    }

    /// Locks the given streams, in their sorted order (so two commands never
    /// wait for each other), loading each.
    pub async fn lock(
        &self,
        store: &dyn EventStore,
        streams: BTreeMap<StreamId, Kind>,
    ) -> Result<Locked, LoadError> {
        let mut locked = Locked::new();
        for (stream, kind) in streams {
            let mut guard = self.slot(&stream, kind).lock_owned().await;
            guard.load(store, &stream).await?;
            locked.insert(stream, guard);
        }
        Ok(locked)
    }

    /// A copy of one stream's state, for reading (catalog, customers).
    pub async fn read(
        &self,
        store: &dyn EventStore,
        stream: &StreamId,
        kind: Kind,
    ) -> Result<Arc<State>, LoadError> {
        let slot = self.slot(stream, kind);
        let mut guard = slot.lock().await;
        guard.load(store, stream).await?;
        Ok(Arc::clone(&guard.state))
    }

    /// Marks streams stale after a failed or duplicate append.
    pub async fn invalidate(&self, streams: impl IntoIterator<Item = &StreamId>) {
        for stream in streams {
            let slot = self.map.get(stream).map(|s| Arc::clone(&s.0));
            if let Some(slot) = slot {
                slot.lock().await.invalidate();
            }
        }
    }

    /// Drops idle slots when there are too many (a tenth below capacity).
    pub fn trim(&self) {
        if self.map.len() <= self.capacity {
            return;
        }
        let target = self.capacity - self.capacity / 10;
        let mut excess = self.map.len().saturating_sub(target);
        self.map.retain(|_, (slot, _)| {
            if excess == 0 || Arc::strong_count(slot) > 1 || slot.try_lock().is_err() {
                return true;
            }
            excess -= 1;
            false
        });
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::SkuClaimed;
    use crate::domain::ids::{ProductId, Sku};
    use crate::event::{Actor, ExpectedVersion, NewEvent, ShopId, Timestamp};
    use crate::store::memory::MemoryStore;
    use crate::store::{AppendRequest, StreamAppend};
    use crate::testkit::Observed;

    fn claim(product: u128) -> DomainEvent {
        DomainEvent::SkuClaimed(SkuClaimed {
            sku: Sku::parse("KAOS-M").unwrap(),
            product_id: ProductId(Uuid::from_u128(product)),
        })
    }

    /// Claims by products `products`, appended after `version` (as
    /// another writer would); the events' ids are the products' numbers.
    async fn append(store: &Observed, stream: &StreamId, version: u64, products: &[u128]) {
        let events = products
            .iter()
            .map(|p| NewEvent {
                event_id: Uuid::from_u128(*p),
                event_type: "SkuClaimed".into(),
                schema_version: 1,
                actor: Actor::system("test"),
                correlation_id: Uuid::from_u128(*p),
                causation_id: None,
                payload: claim(*p).encode(),
            })
            .collect();
        store
            .append(AppendRequest {
                recorded_at: Timestamp::from_micros(1),
                streams: vec![StreamAppend {
                    stream: stream.clone(),
                    expected: ExpectedVersion::Exact(version),
                    events,
                }],
            })
            .await
            .unwrap();
    }

    async fn slot_of(
        slots: &Slots,
        store: &Observed,
        stream: &StreamId,
    ) -> (u64, Option<Uuid>, Option<ProductId>) {
        let locked = slots
            .lock(store, BTreeMap::from([(stream.clone(), Kind::Sku)]))
            .await
            .unwrap();
        let slot = &locked[stream];
        (
            slot.version,
            slot.last_event_id,
            slot.state.sku().product_id,
        )
    }

    #[tokio::test]
    async fn a_stale_slot_catches_up_from_its_last_event_when_the_store_holds_it() {
        let store = Observed::new(Arc::new(MemoryStore::new()));
        let stream = StreamId::new(ShopId(Uuid::from_u128(1)), "sku-KAOS-M");
        let slots = Slots::new(10);
        append(&store, &stream, 0, &[1, 2]).await;
        let p = |n| Some(ProductId(Uuid::from_u128(n)));
        let id = |n| Some(Uuid::from_u128(n));
        assert_eq!(slot_of(&slots, &store, &stream).await, (2, id(2), p(2)));
        assert_eq!(store.reads(), [1, 3]);

        // Another writer appends; the follower marks the slot stale. It
        // reads from its own last event on, not from the first.
        append(&store, &stream, 2, &[3, 4]).await;
        slots.saw(&stream, 4);
        assert_eq!(slot_of(&slots, &store, &stream).await, (4, id(4), p(4)));
        assert_eq!(store.reads(), [2, 5]);

        // The slot holds an event the store never recorded, and another
        // writer took its version: the slot is loaded from the first
        // event, and the unrecorded claim is gone.
        {
            let mut locked = slots
                .lock(&store, BTreeMap::from([(stream.clone(), Kind::Sku)]))
                .await
                .unwrap();
            locked
                .get_mut(&stream)
                .unwrap()
                .apply(&[claim(99)], Uuid::from_u128(99));
        }
        store.reads();
        append(&store, &stream, 4, &[5, 6]).await;
        slots.saw(&stream, 6);
        assert_eq!(slot_of(&slots, &store, &stream).await, (6, id(6), p(6)));
        assert_eq!(store.reads(), [5, 1, 7]);
    }
}
