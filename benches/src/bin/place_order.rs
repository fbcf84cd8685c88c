//! Load scenario: placing orders in process through the command engine on
//! the embedded log (every order durable before it is acknowledged).
//!
//! - `spread`: C clients place 3-line orders over a catalog of SKUs
//!   (uncontended);
//! - `hot`: 1,000 clients order one unit of the same SKU (contended);
//! - `flash`: 10,000 buyers, one SKU with 1,000 units, each one order:
//!   exactly 1,000 must be accepted.
//!
//! Back of the envelope: an order is one decision (~10-20 µs of CPU:
//! cache reads, allocation, totals, MessagePack) and 1 + 3 events in one
//! atomic append; with appends pipelined into group commits the fsync
//! rate (~9,000/s) is not the bound, the CPU is: 2 cores shared by the
//! clients, the engine and the log writer suggest 30,000-60,000 orders/s.
//!
//! `cargo run --release -p kedai-benches --bin place_order -- --help`

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use kedai_benches::shop::{self, OrderLoad};
use kedai_benches::{median, thousands};
use kedai_engine::command::{CommandError, Engine, EngineOptions};
use kedai_engine::domain::Rejection;
use kedai_engine::domain::ids::OrderId;
use kedai_engine::store::log::LogStore;
use kedai_engine::store::memory::MemoryStore;
use kedai_engine::{EventStore, ShopId};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(about = "Order placement throughput through the command engine")]
struct Args {
    /// Clients for the spread scenario.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Clients for the hot-SKU scenario.
    #[arg(long, default_value_t = 1_000)]
    hot_clients: usize,
    /// SKUs in the catalog.
    #[arg(long, default_value_t = 1_000)]
    skus: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs per scenario (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Buyers in the flash sale.
    #[arg(long, default_value_t = 10_000)]
    buyers: usize,
    /// Units of the flash sale's SKU.
    #[arg(long, default_value_t = 1_000)]
    units: i64,
    /// `log` (durable, the default) or `memory` (to see the engine alone).
    #[arg(long, default_value = "log")]
    store: String,
}

fn open(kind: &str) -> anyhow::Result<(Arc<dyn EventStore>, Option<tempfile::TempDir>)> {
    Ok(match kind {
        "memory" => (Arc::new(MemoryStore::new()), None),
        "log" => {
            let dir = tempfile::tempdir_in(".")?;
            (Arc::new(LogStore::open(dir.path())?), Some(dir))
        }
        other => anyhow::bail!("unknown store {other:?}: use log or memory"),
    })
}

async fn scenario(
    args: &Args,
    clients: usize,
    stock: i64,
    pick: fn(&shop::BenchShop, u64, u64) -> Vec<usize>,
) -> anyhow::Result<OrderLoad> {
    let (store, _dir) = open(&args.store)?;
    let engine = Arc::new(Engine::new(
        store,
        EngineOptions {
            sole_writer: true,
            ..EngineOptions::default()
        },
    ));
    let bench = shop::setup(&engine, ShopId(Uuid::now_v7()), args.skus, stock, 1_000).await;
    Ok(shop::order_load(
        engine,
        bench,
        clients,
        Duration::from_secs(args.seconds),
        pick,
    )
    .await)
}

async fn flash_sale(args: &Args) -> anyhow::Result<(usize, f64)> {
    let (store, _dir) = open(&args.store)?;
    let engine = Arc::new(Engine::new(
        store,
        EngineOptions {
            sole_writer: true,
            ..EngineOptions::default()
        },
    ));
    let bench = shop::setup(&engine, ShopId(Uuid::now_v7()), 1, args.units, 1_000).await;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(args.buyers);
    for b in 0..args.buyers {
        let (engine, bench) = (engine.clone(), bench.clone());
        tasks.push(tokio::spawn(async move {
            let command = shop::order(
                OrderId(Uuid::now_v7()),
                bench.customers[b % bench.customers.len()],
                &[&bench.skus[0]],
            );
            match engine.execute(bench.shop, &shop::meta(), &command).await {
                Ok(_) => true,
                Err(CommandError::Rejected(Rejection::InsufficientStock { .. })) => false,
                Err(e) => panic!("flash sale order: {e}"),
            }
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        accepted += usize::from(t.await?);
    }
    let item = engine
        .stock_item(bench.shop, &bench.skus[0], bench.warehouses[0])
        .await?;
    assert!(item.reserved <= item.on_hand, "oversold: {item:?}");
    Ok((accepted, args.buyers as f64 / start.elapsed().as_secs_f64()))
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let mut spread = Vec::new();
    let mut single = Vec::new();
    let mut hot = Vec::new();
    for _ in 0..args.runs {
        let run = |clients, pick| runtime.block_on(scenario(&args, clients, 1_000_000_000, pick));
        spread.push(run(args.clients, shop::three_spread)?.per_sec);
        single.push(run(args.hot_clients, shop::one_spread)?.per_sec);
        hot.push(run(args.hot_clients, shop::hot_sku)?.per_sec);
    }
    let (spread, single, hot) = (median(&mut spread), median(&mut single), median(&mut hot));
    let runs = args.runs;
    println!("store: {}", args.store);
    println!(
        "spread, 3 lines: {} orders/s ({} clients, {} SKUs; median of {runs})",
        thousands(spread),
        args.clients,
        args.skus
    );
    println!(
        "spread, 1 line: {} orders/s ({} clients, {} SKUs; median of {runs})",
        thousands(single),
        args.hot_clients,
        args.skus
    );
    println!(
        "hot SKU, 1 line: {} orders/s ({} clients on one SKU; median of {runs})",
        thousands(hot),
        args.hot_clients
    );
    println!("hot / spread (1 line each): {:.2}", hot / single);
    let (accepted, rate) = runtime.block_on(flash_sale(&args))?;
    println!(
        "flash sale: {} buyers, {} units: {} accepted ({}), {} buyers/s",
        args.buyers,
        args.units,
        accepted,
        if accepted as i64 == args.units {
            "exact"
        } else {
            "WRONG"
        },
        thousands(rate)
    );
    anyhow::ensure!(
        accepted as i64 == args.units.min(args.buyers as i64),
        "the flash sale accepted {accepted} orders"
    );
    Ok(())
}
