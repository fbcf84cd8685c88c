//! Load scenario: ledger transactions per second through the command engine
//! on the embedded log.
//!
//! - `topup`: C clients record top-ups on one shop's wallet (every
//!   transaction on the same stream: the hot case);
//! - `cod`: C clients deliver COD orders (each delivery is the order's
//!   event plus its balanced ledger transaction, in one append).
//!
//! Back of the envelope: a top-up is one small decision and one event on a
//! stream the engine serialises in memory; with appends pipelined into
//! group commits, tens of thousands per second on 2 cores.
//!
//! `cargo run --release -p kedai-benches --bin ledger -- --help`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use kedai_benches::shop;
use kedai_benches::{median, thousands};
use kedai_engine::ShopId;
use kedai_engine::command::{Command, Engine, EngineOptions};
use kedai_engine::domain::ids::OrderId;
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::Transition;
use kedai_engine::domain::wallet::WalletEntry;
use kedai_engine::store::log::LogStore;
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(about = "Ledger transactions per second")]
struct Args {
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    #[arg(long, default_value_t = 3)]
    runs: usize,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

async fn run(args: &Args, cod: bool) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir_in(".")?;
    let engine = Arc::new(Engine::new(
        Arc::new(LogStore::open(dir.path())?),
        EngineOptions {
            sole_writer: true,
            ..EngineOptions::default()
        },
    ));
    let bench = shop::setup(&engine, ShopId(Uuid::now_v7()), 100, 1_000_000_000, 100).await;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (engine, bench, stop, done) =
            (engine.clone(), bench.clone(), stop.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if cod {
                    // Place and ship outside the count; the delivery (order
                    // event + ledger transaction) is what is counted.
                    let id = OrderId(Uuid::now_v7());
                    let mut command = shop::order(
                        id,
                        bench.customers[c % bench.customers.len()],
                        &[&bench.skus[(n % 100) as usize]],
                    );
                    if let Command::PlaceOrder(p) = &mut command {
                        p.cod = true;
                    }
                    engine
                        .execute(bench.shop, &shop::meta(), &command)
                        .await
                        .expect("place");
                    let ship = Command::TransitionOrder {
                        order_id: id,
                        transition: Transition::Ship {
                            awb: format!("JNE{n}"),
                        },
                    };
                    engine
                        .execute(bench.shop, &shop::meta(), &ship)
                        .await
                        .expect("ship");
                    let deliver = Command::TransitionOrder {
                        order_id: id,
                        transition: Transition::Deliver,
                    };
                    engine
                        .execute(bench.shop, &shop::meta(), &deliver)
                        .await
                        .expect("deliver");
                } else {
                    let topup = Command::WalletEntry(WalletEntry::TopUp {
                        amount: Money(10_000),
                        note: String::new(),
                    });
                    engine
                        .execute(bench.shop, &shop::meta(), &topup)
                        .await
                        .expect("top-up");
                }
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    let mut topups = Vec::new();
    let mut cods = Vec::new();
    for _ in 0..args.runs {
        topups.push(runtime.block_on(run(&args, false))?);
        cods.push(runtime.block_on(run(&args, true))?);
    }
    println!(
        "top-ups on one wallet: {} transactions/s ({} clients, median of {})",
        thousands(median(&mut topups)),
        args.clients,
        args.runs
    );
    println!(
        "COD orders placed, shipped and delivered: {} orders/s, each delivery with its ledger transaction ({} clients, median of {})",
        thousands(median(&mut cods)),
        args.clients,
        args.runs
    );
    Ok(())
}
