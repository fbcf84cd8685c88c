//! A bench shop made through the command engine: warehouses, products with
//! stock, customers; and the order-placing loops the load scenarios time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use kedai_engine::command::{Command, CommandError, CommandMeta, Engine};
use kedai_engine::domain::Rejection;
use kedai_engine::domain::catalog::{
    AddWarehouse, CreateProduct, CreateShop, CustomerCategory, Prices, ProductKind, VariationSpec,
};
use kedai_engine::domain::events::{CustomerDetails, ShopSettings};
use kedai_engine::domain::ids::{CustomerId, OrderId, ProductId, Sku, WarehouseId};
use kedai_engine::domain::money::{Currency, Money};
use kedai_engine::domain::order::{Channel, LineInput, PlaceOrder, Shipping};
use kedai_engine::domain::stock::StockMove;
use kedai_engine::{Actor, Role, ShopId};
use uuid::Uuid;

/// A shop ready for orders.
#[derive(Debug, Clone)]
pub struct BenchShop {
    pub shop: ShopId,
    pub skus: Vec<Sku>,
    pub customers: Vec<CustomerId>,
    pub warehouses: Vec<WarehouseId>,
}

pub fn meta() -> CommandMeta {
    CommandMeta::new(Actor::new(Role::Staff, "bench"))
}

async fn ok(engine: &Engine, shop: ShopId, command: Command) {
    if let Err(e) = engine.execute(shop, &meta(), &command).await {
        panic!("setting up the bench shop: {e}");
    }
}

/// Commands the set-up runs at once (independent streams).
const SETUP_CONCURRENCY: usize = 64;

/// Runs independent commands, [`SETUP_CONCURRENCY`] at a time.
async fn all_ok(engine: &Engine, shop: ShopId, commands: Vec<Command>) {
    futures_util::stream::iter(commands)
        .map(|command| ok(engine, shop, command))
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

/// Creates a shop with two warehouses, `skus` SKUs (in products of four
/// variations) with `stock` units each in the default warehouse, and
/// `customers` customers.
pub async fn setup(
    engine: &Engine,
    shop: ShopId,
    skus: usize,
    stock: i64,
    customers: usize,
) -> BenchShop {
    ok(
        engine,
        shop,
        Command::CreateShop(CreateShop {
            name: "Toko Bench".into(),
            currency: Currency::Idr,
            time_zone: "Asia/Jakarta".into(),
            utc_offset_minutes: 420,
            settings: ShopSettings::defaults(Currency::Idr),
        }),
    )
    .await;
    let warehouses: Vec<WarehouseId> = (0..2)
        .map(|i| WarehouseId(Uuid::from_u128(0xa0 + i)))
        .collect();
    for (i, w) in warehouses.iter().enumerate() {
        ok(
            engine,
            shop,
            Command::AddWarehouse(AddWarehouse {
                warehouse_id: *w,
                name: format!("Gudang {i}"),
                city: None,
            }),
        )
        .await;
    }
    let mut all_skus = Vec::with_capacity(skus);
    let mut products = Vec::with_capacity(skus.div_ceil(4));
    for p in 0..skus.div_ceil(4) {
        let variations: Vec<VariationSpec> = (0..4)
            .map(|v| VariationSpec {
                sku: Sku::parse(&format!("SKU-{p}-{v}")).unwrap(),
                options: BTreeMap::from([("size".to_owned(), ["S", "M", "L", "XL"][v].to_owned())]),
                weight_grams: 250,
                prices: Prices::flat(Money(50_000 + p as i64 * 100)),
                cost: Money(30_000),
                wholesale: Vec::new(),
                in_stock: true,
            })
            .collect();
        all_skus.extend(variations.iter().map(|v| v.sku.clone()));
        products.push(Command::CreateProduct(CreateProduct {
            product_id: ProductId(Uuid::from_u128(0x1_0000 + p as u128)),
            name: format!("Produk {p}"),
            category: Some("Pakaian".into()),
            kind: ProductKind::Stocked,
            preorder_days: None,
            variations,
        }));
    }
    all_ok(engine, shop, products).await;
    all_skus.truncate(skus);
    let receipts = all_skus
        .iter()
        .map(|sku| {
            Command::MoveStock(StockMove::Receive {
                sku: sku.clone(),
                warehouse_id: warehouses[0],
                quantity: stock,
                note: String::new(),
            })
        })
        .collect();
    all_ok(engine, shop, receipts).await;
    let customers: Vec<CustomerId> = (0..customers)
        .map(|c| CustomerId(Uuid::from_u128(0x2_0000 + c as u128)))
        .collect();
    let mut registrations = Vec::with_capacity(customers.len());
    for (i, c) in customers.iter().enumerate() {
        let details = CustomerDetails {
            name: format!("Pelanggan {i}"),
            phone: Some(format!("0812{:08}", i)),
            email: None,
            address: Some("Jl. Merdeka 1".into()),
            district: None,
            city: Some("Kota Malang".into()),
            province: Some("Jawa Timur".into()),
            postal_code: None,
            category: CustomerCategory::Customer,
        };
        registrations.push(Command::RegisterCustomer {
            customer_id: *c,
            details,
        });
    }
    all_ok(engine, shop, registrations).await;
    BenchShop {
        shop,
        skus: all_skus,
        customers,
        warehouses,
    }
}

/// An order of `lines` one-unit lines on the given SKUs.
pub fn order(id: OrderId, customer: CustomerId, skus: &[&Sku]) -> Command {
    Command::PlaceOrder(PlaceOrder {
        order_id: id,
        channel: Channel::Storefront,
        order_source: None,
        sender_id: customer,
        receiver_id: None,
        lines: skus
            .iter()
            .map(|s| LineInput {
                sku: (*s).clone(),
                quantity: 1,
                warehouse_id: None,
                unit_price: None,
                discount: None,
            })
            .collect(),
        shipping: Shipping {
            courier: "JNE".into(),
            service: "REG".into(),
            cost: Money(10_000),
        },
        cod: false,
        costs: Vec::new(),
        note: None,
    })
}

/// What a load run counted.
#[derive(Debug, Clone, Copy, Default)]
pub struct OrderLoad {
    pub accepted: u64,
    pub rejected: u64,
    /// Orders the engine gave up on after its retries (conflicts with
    /// another node's appends); not accepted.
    pub gave_up: u64,
    pub per_sec: f64,
}

/// `clients` tasks place orders for `duration`; `pick` chooses each order's
/// SKUs from (client, sequence). Returns accepted orders per second.
pub async fn order_load(
    engine: Arc<Engine>,
    shop: BenchShop,
    clients: usize,
    duration: Duration,
    pick: fn(&BenchShop, u64, u64) -> Vec<usize>,
) -> OrderLoad {
    order_load_on(vec![engine], shop, clients, duration, pick).await
}

/// [`order_load`] over several engines (nodes) sharing one store: client
/// `c` sends its orders through engine `c % engines.len()`.
pub async fn order_load_on(
    engines: Vec<Arc<Engine>>,
    shop: BenchShop,
    clients: usize,
    duration: Duration,
    pick: fn(&BenchShop, u64, u64) -> Vec<usize>,
) -> OrderLoad {
    assert!(!engines.is_empty(), "at least one engine");
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients as u64 {
        let engine = Arc::clone(&engines[c as usize % engines.len()]);
        let (shop, stop, counters) = (shop.clone(), Arc::clone(&stop), Arc::clone(&counters));
        tasks.push(tokio::spawn(async move {
            let customer = shop.customers[c as usize % shop.customers.len()];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let chosen: Vec<&Sku> = pick(&shop, c, n)
                    .into_iter()
                    .map(|i| &shop.skus[i])
                    .collect();
                let id = OrderId(Uuid::now_v7());
                let counter = match engine
                    .execute(shop.shop, &meta(), &order(id, customer, &chosen))
                    .await
                {
                    Ok(_) => 0,
                    Err(CommandError::Rejected(Rejection::InsufficientStock { .. })) => 1,
                    Err(CommandError::Conflict(_)) => 2,
                    Err(e) => panic!("placing an order: {e}"),
                };
                counters[counter].fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    let secs = start.elapsed().as_secs_f64();
    let accepted = counters[0].load(Ordering::Relaxed);
    OrderLoad {
        accepted,
        rejected: counters[1].load(Ordering::Relaxed),
        gave_up: counters[2].load(Ordering::Relaxed),
        per_sec: accepted as f64 / secs,
    }
}

/// Three distinct SKUs spread over the catalog (a cheap hash of client and
/// sequence).
pub fn three_spread(shop: &BenchShop, client: u64, n: u64) -> Vec<usize> {
    three_of(shop.skus.len(), client, n).to_vec()
}

/// Three distinct places in a list of `len` (a cheap hash of client and
/// sequence).
pub fn three_of(len: usize, client: u64, n: u64) -> [usize; 3] {
    let len = len as u64;
    let base =
        (client.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ n.wrapping_mul(0xC2B2_AE3D_27D4_EB4F)) % len;
    [
        base as usize,
        ((base + len / 3) % len) as usize,
        ((base + 2 * len / 3) % len) as usize,
    ]
}

/// One SKU spread over the catalog.
pub fn one_spread(shop: &BenchShop, client: u64, n: u64) -> Vec<usize> {
    three_spread(shop, client, n)[..1].to_vec()
}

/// The hot SKU only (a flash sale).
pub fn hot_sku(_: &BenchShop, _: u64, _: u64) -> Vec<usize> {
    vec![0]
}
