//! A small world for tests of the engine and of the crates above it
//! (projections, API): a shop in Indonesia with two warehouses (Malang, the
//! default, and Surabaya), products of each kind, and customers of each
//! category, on any store. Commands run at a fixed moment, so tests are
//! repeatable.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::command::{Command, CommandError, CommandMeta, Engine, EngineOptions, Executed};
use crate::domain::catalog::{
    AddWarehouse, CreateProduct, CreateShop, CustomerCategory, Prices, ProductKind, VariationSpec,
    WholesaleTier,
};
use crate::domain::events::{CustomerDetails, ShopSettings};
use crate::domain::ids::{CustomerId, OrderId, PaymentId, ProductId, Sku, WarehouseId};
use crate::domain::money::{Currency, Money};
use crate::domain::order::{
    Channel, LineInput, PayOrder, PaymentMethod, PlaceOrder, Shipping, Transition,
};
use crate::domain::stock::StockMove;
use crate::domain::{DomainEvent, Rejection};
use crate::store::memory::MemoryStore;
use crate::{Actor, EventStore, Role, ShopId, Timestamp};
use uuid::Uuid;

pub const MALANG: WarehouseId = WarehouseId(Uuid::from_u128(0x11));
pub const SURABAYA: WarehouseId = WarehouseId(Uuid::from_u128(0x12));
pub const BUDI: CustomerId = CustomerId(Uuid::from_u128(0x21));
pub const RESELLER: CustomerId = CustomerId(Uuid::from_u128(0x22));
pub const SITI: CustomerId = CustomerId(Uuid::from_u128(0x23));
pub const KAOS: ProductId = ProductId(Uuid::from_u128(0x31));
pub const TAS: ProductId = ProductId(Uuid::from_u128(0x32));
pub const BATIK: ProductId = ProductId(Uuid::from_u128(0x33));

pub fn sku(s: &str) -> Sku {
    Sku::parse(s).unwrap()
}

pub fn variation(s: &str, price: i64, cost: i64) -> VariationSpec {
    VariationSpec {
        sku: sku(s),
        options: BTreeMap::from([("size".to_owned(), s.rsplit('-').next().unwrap().to_owned())]),
        weight_grams: 250,
        prices: Prices {
            price: Money(price),
            price_reseller: Money(price * 8 / 10),
            price_dropship: Money(price * 9 / 10),
            price1: None,
            price2: None,
            price3: None,
        },
        cost: Money(cost),
        wholesale: vec![WholesaleTier {
            from: 12,
            to: None,
            price: Money(price * 7 / 10),
        }],
        in_stock: true,
    }
}

/// Appends one event to `stream` as a log written by another tool could
/// hold it: no command decided it, so nothing checked its type's name or
/// its payload (`payload` as given). For tests of what readers of the log
/// do with it. Answers the event's position.
pub async fn append_raw(
    store: &dyn EventStore,
    stream: crate::StreamId,
    n: u128,
    event_type: &str,
    payload: Vec<u8>,
) -> crate::Position {
    let request = crate::AppendRequest::single(
        stream,
        crate::ExpectedVersion::Any,
        Timestamp(1_760_000_000_000_000),
        vec![crate::NewEvent {
            event_id: Uuid::from_u128(0xe000 + n),
            event_type: event_type.into(),
            schema_version: 1,
            actor: Actor::new(Role::Staff, "ayu"),
            correlation_id: Uuid::from_u128(0xc0),
            causation_id: None,
            payload,
        }],
    );
    store.append(request).await.unwrap().last_position
}

pub fn order_id(n: u128) -> OrderId {
    OrderId(Uuid::from_u128(0x0e00_0000 + n))
}

pub fn line(s: &str, quantity: i64) -> LineInput {
    LineInput {
        sku: sku(s),
        quantity,
        warehouse_id: None,
        unit_price: None,
        discount: None,
    }
}

pub fn place(id: OrderId, lines: Vec<LineInput>) -> PlaceOrder {
    PlaceOrder {
        order_id: id,
        channel: Channel::Whatsapp,
        order_source: None,
        sender_id: BUDI,
        receiver_id: None,
        lines,
        shipping: Shipping {
            courier: "JNE".into(),
            service: "REG".into(),
            cost: Money(10_000),
        },
        cod: false,
        costs: vec![],
        note: None,
    }
}

pub fn details(name: &str, category: CustomerCategory, city: &str) -> CustomerDetails {
    CustomerDetails {
        name: name.into(),
        phone: Some("0812-3456-7890".into()),
        email: None,
        address: Some("Jl. Ijen 12".into()),
        district: None,
        city: Some(city.into()),
        province: Some("Jawa Timur".into()),
        postal_code: Some("65119".into()),
        category,
    }
}

/// The world: one engine, one shop.
#[derive(Debug)]
pub struct World {
    pub engine: Engine,
    pub shop: ShopId,
    pub now: Timestamp,
}

impl World {
    /// A world on a fresh memory store.
    pub async fn new() -> World {
        World::on(Arc::new(MemoryStore::new()), true).await
    }

    /// A world on `store`.
    pub async fn on(store: Arc<dyn EventStore>, sole_writer: bool) -> World {
        World::on_at(store, sole_writer, Timestamp(1_760_000_000_000_000)).await
    }

    /// A world on `store` whose clock (for setup and for `run`) reads `now`.
    pub async fn on_at(store: Arc<dyn EventStore>, sole_writer: bool, now: Timestamp) -> World {
        World::for_shop(store, sole_writer, now, ShopId(Uuid::from_u128(0x5))).await
    }

    /// A world of shop `shop` (set up like the others) on `store`: several
    /// shops can share one store.
    pub async fn for_shop(
        store: Arc<dyn EventStore>,
        sole_writer: bool,
        now: Timestamp,
        shop: ShopId,
    ) -> World {
        let engine = Engine::new(
            store,
            EngineOptions {
                sole_writer,
                ..EngineOptions::default()
            },
        );
        let world = World { engine, shop, now };
        world.setup().await;
        world
    }

    async fn setup(&self) {
        self.ok(Command::CreateShop(CreateShop {
            name: "Toko Batik Malang".into(),
            currency: Currency::Idr,
            time_zone: "Asia/Jakarta".into(),
            utc_offset_minutes: 420,
            settings: ShopSettings::defaults(Currency::Idr),
        }))
        .await;
        for (id, name) in [(MALANG, "Gudang Malang"), (SURABAYA, "Gudang Surabaya")] {
            self.ok(Command::AddWarehouse(AddWarehouse {
                warehouse_id: id,
                name: name.into(),
                city: None,
            }))
            .await;
        }
        self.ok(Command::CreateProduct(CreateProduct {
            product_id: KAOS,
            name: "Kaos Polos".into(),
            category: Some("Pakaian".into()),
            kind: ProductKind::Stocked,
            preorder_days: None,
            variations: vec![
                variation("KAOS-M", 50_000, 30_000),
                variation("KAOS-L", 55_000, 32_000),
            ],
        }))
        .await;
        self.ok(Command::CreateProduct(CreateProduct {
            product_id: TAS,
            name: "Tas Rajut".into(),
            category: Some("Tas".into()),
            kind: ProductKind::Supplier,
            preorder_days: None,
            variations: vec![variation("TAS-1", 120_000, 80_000)],
        }))
        .await;
        self.ok(Command::CreateProduct(CreateProduct {
            product_id: BATIK,
            name: "Batik Tulis".into(),
            category: Some("Pakaian".into()),
            kind: ProductKind::Preorder,
            preorder_days: Some(14),
            variations: vec![variation("BATIK-1", 350_000, 200_000)],
        }))
        .await;
        for (id, name, category) in [
            (BUDI, "Budi", CustomerCategory::Customer),
            (RESELLER, "Toko Sinar", CustomerCategory::Reseller),
            (SITI, "Siti", CustomerCategory::Customer),
        ] {
            self.ok(Command::RegisterCustomer {
                customer_id: id,
                details: details(name, category, "Malang"),
            })
            .await;
        }
    }

    pub fn meta(&self) -> CommandMeta {
        CommandMeta {
            actor: Actor::new(Role::Staff, "ayu"),
            idempotency_key: None,
            correlation_id: Uuid::from_u128(0xc0),
            causation_id: None,
            now: self.now,
        }
    }

    pub async fn run(&self, command: Command) -> Result<Executed, CommandError> {
        self.engine.execute(self.shop, &self.meta(), &command).await
    }

    /// Runs a command that must succeed.
    pub async fn ok(&self, command: Command) -> Executed {
        match self.run(command.clone()).await {
            Ok(e) => e,
            Err(e) => panic!("{command:?} failed: {e}"),
        }
    }

    /// Runs a command that must be rejected; returns the rejection.
    pub async fn rejected(&self, command: Command) -> Rejection {
        match self.run(command.clone()).await {
            Err(CommandError::Rejected(r)) => r,
            other => panic!("{command:?}: expected a rejection, got {other:?}"),
        }
    }

    pub async fn receive(&self, s: &str, warehouse: WarehouseId, quantity: i64) {
        self.ok(Command::MoveStock(StockMove::Receive {
            sku: sku(s),
            warehouse_id: warehouse,
            quantity,
            note: "stok masuk".into(),
        }))
        .await;
    }

    pub async fn stock(&self, s: &str, warehouse: WarehouseId) -> (i64, i64) {
        let item = self
            .engine
            .stock_item(self.shop, &sku(s), warehouse)
            .await
            .unwrap();
        (item.on_hand, item.reserved)
    }

    pub async fn pay(
        &self,
        order: OrderId,
        amount: i64,
        n: u128,
    ) -> Result<Executed, CommandError> {
        self.run(Command::PayOrder {
            order_id: order,
            payment: PayOrder {
                payment_id: PaymentId(Uuid::from_u128(0xba00 + n)),
                amount: Money(amount),
                method: PaymentMethod::BankTransfer,
                bank_account: Some("BCA 1234567890".into()),
                paid_at: None,
            },
        })
        .await
    }

    pub async fn transition(
        &self,
        order: OrderId,
        transition: Transition,
    ) -> Result<Executed, CommandError> {
        self.run(Command::TransitionOrder {
            order_id: order,
            transition,
        })
        .await
    }
}

/// The single event of a given type among an execution's events.
pub fn only<'a>(executed: &'a Executed, event_type: &str) -> &'a DomainEvent {
    let found: Vec<&DomainEvent> = executed
        .events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e.event_type() == event_type)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected one {event_type} in {:?}",
        executed.events
    );
    found[0]
}

impl World {
    /// The seller's wallet.
    pub async fn wallet(&self) -> crate::domain::wallet::Wallet {
        use crate::command::slots::Kind;
        use crate::domain::ids::streams;
        self.engine
            .load_state(&streams::wallet(self.shop), Kind::Wallet)
            .await
            .unwrap()
            .wallet()
            .clone()
    }

    pub async fn balance(&self, account: crate::domain::wallet::Account) -> i64 {
        self.wallet().await.balance(account).0
    }

    /// A conversation by its id.
    pub async fn conversation(&self, id: Uuid) -> crate::domain::chat::Conversation {
        use crate::command::slots::Kind;
        use crate::domain::ids::streams;
        self.engine
            .load_state(&streams::conversation(self.shop, id), Kind::Conversation)
            .await
            .unwrap()
            .conversation()
            .clone()
    }

    /// A checkout by its id.
    pub async fn checkout(&self, id: Uuid) -> crate::domain::checkout::Checkout {
        use crate::command::slots::Kind;
        use crate::domain::ids::streams;
        self.engine
            .load_state(&streams::checkout(self.shop, id), Kind::Checkout)
            .await
            .unwrap()
            .checkout()
            .clone()
    }

    /// Runs a command as another actor.
    pub async fn run_as(&self, actor: Actor, command: Command) -> Result<Executed, CommandError> {
        let mut meta = self.meta();
        meta.actor = actor;
        self.engine.execute(self.shop, &meta, &command).await
    }

    /// Runs a command at another moment.
    pub async fn run_at(&self, now: Timestamp, command: Command) -> Result<Executed, CommandError> {
        self.engine
            .execute(self.shop, &self.meta().at(now), &command)
            .await
    }
}

/// A store for tests that passes every call on to another and lets the
/// test watch or slow it: it notes where each stream read starts
/// ([`Observed::reads`]); made with [`Observed::with_slow_head`], the head
/// it shows moves only when asked for the last position, as if the
/// store's notifications were slow.
#[derive(Debug)]
pub struct Observed {
    inner: Arc<dyn EventStore>,
    reads: std::sync::Mutex<Vec<u64>>,
    /// The head shown instead of the inner store's, when slow.
    slow_head: Option<tokio::sync::watch::Sender<crate::Position>>,
}

impl Observed {
    pub fn new(inner: Arc<dyn EventStore>) -> Observed {
        Observed {
            inner,
            reads: std::sync::Mutex::new(Vec::new()),
            slow_head: None,
        }
    }

    /// Its head starts at the inner store's last position and moves only
    /// when [`EventStore::last_position`] is asked.
    pub async fn with_slow_head(inner: Arc<dyn EventStore>) -> Observed {
        let last = inner.last_position().await.expect("the store answers");
        Observed {
            slow_head: Some(tokio::sync::watch::channel(last).0),
            ..Observed::new(inner)
        }
    }

    /// The versions stream reads started from since the last call, in
    /// order.
    pub fn reads(&self) -> Vec<u64> {
        std::mem::take(&mut self.reads.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait::async_trait]
impl EventStore for Observed {
    async fn append(
        &self,
        request: crate::store::AppendRequest,
    ) -> Result<crate::store::AppendOutcome, crate::StoreError> {
        self.inner.append(request).await
    }

    async fn submit(
        &self,
        request: crate::store::AppendRequest,
    ) -> Result<crate::store::AppendTicket, crate::StoreError> {
        self.inner.submit(request).await
    }

    async fn read_stream(
        &self,
        stream: &crate::StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<crate::RecordedEvent>, crate::StoreError> {
        self.reads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(from_version);
        self.inner.read_stream(stream, from_version, max).await
    }

    async fn read_all(
        &self,
        after: crate::Position,
        max: usize,
    ) -> Result<Vec<crate::RecordedEvent>, crate::StoreError> {
        self.inner.read_all(after, max).await
    }

    async fn stream_version(&self, stream: &crate::StreamId) -> Result<u64, crate::StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn last_position(&self) -> Result<crate::Position, crate::StoreError> {
        let last = self.inner.last_position().await?;
        if let Some(head) = &self.slow_head {
            head.send_replace(last);
        }
        Ok(last)
    }

    fn head(&self) -> tokio::sync::watch::Receiver<crate::Position> {
        match &self.slow_head {
            Some(head) => head.subscribe(),
            None => self.inner.head(),
        }
    }

    async fn event_positions(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<Option<crate::Position>>, crate::StoreError> {
        self.inner.event_positions(ids).await
    }
}
