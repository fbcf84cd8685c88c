//! Load scenario: the auditor's tool on a big log: how fast `verify`
//! checks every checksum and the hash chain (on one core and on all), and
//! how fast `kedai-replay rebuild` folds every projection, in events/s.
//!
//! The log is either one that exists (e.g. the 10-million-event log that
//! `log_open` writes: its bench events are not domain events, so a rebuild
//! reads and decodes them but skips them as unknown types), or one of
//! domain events this scenario writes through the real command engine
//! (the engine's test world: orders placed, paid, shipped, delivered,
//! cancelled, by 64 concurrent clients), for a realistic fold; in one
//! shop, or spread over `--shops N` (one order to each in turn).
//!
//! The rebuild runs the `kedai-replay` binary (built beside this one:
//! `cargo build --release -p kedai-replay -p kedai-benches`), as an
//! auditor would, and is timed from outside.
//!
//! `cargo run --release -p kedai-benches --bin replay_load -- --dir LOG`
//! `cargo run --release -p kedai-benches --bin replay_load -- --dir NEW --orders 200000`

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use kedai_benches::{median, thousands};
use kedai_engine::EventStore;
use kedai_engine::command::Command as EngineCommand;
use kedai_engine::domain::ids::PaymentId;
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::{PayOrder, PaymentMethod, Transition};
use kedai_engine::domain::stock::StockMove;
use kedai_engine::store::log::LogStore;
use kedai_engine::store::log::verify::verify_with_threads;
use kedai_engine::testkit::{MALANG, World, line, order_id, place, sku};
use kedai_engine::{Actor, Role, ShopId, Timestamp};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(about = "verify and rebuild rates of kedai-replay on a big log")]
struct Args {
    /// The log directory (holding the .seg files).
    #[arg(long)]
    dir: PathBuf,
    /// Write this many orders of domain events into `dir` first (only if
    /// it holds no log yet).
    #[arg(long)]
    orders: Option<u64>,
    /// The kedai-replay binary (default: beside this one).
    #[arg(long)]
    replay_bin: Option<PathBuf>,
    /// Runs of each measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Shops the orders are spread over (one after the other, in turn).
    #[arg(long, default_value_t = 1)]
    shops: u64,
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    if let Some(orders) = args.orders {
        let have = LogStore::open_read_only(&args.dir)
            .ok()
            .map(|s| runtime.block_on(s.last_position()))
            .transpose()?
            .unwrap_or(0);
        if have == 0 {
            runtime.block_on(write_orders(&args.dir, orders, args.shops.max(1)))?;
        }
    }
    let events = runtime.block_on(LogStore::open_read_only(&args.dir)?.last_position())?;
    if events == 0 {
        bail!("{} holds no events", args.dir.display());
    }
    println!("log: {} events", thousands(events as f64));

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    for threads in [1, cores] {
        let mut secs = Vec::new();
        let mut bytes = 0;
        for _ in 0..args.runs {
            let start = Instant::now();
            let report = verify_with_threads(&args.dir, None, threads, |_| {})?;
            secs.push(start.elapsed().as_secs_f64());
            assert_eq!(report.events, events);
            bytes = report.bytes;
        }
        let s = median(&mut secs);
        println!(
            "verify, {threads} thread{}: {:.2} s, {} events/s, {:.0} MiB/s (median of {})",
            if threads == 1 { "" } else { "s" },
            s,
            thousands(events as f64 / s),
            bytes as f64 / s / (1 << 20) as f64,
            args.runs
        );
    }

    let bin = match args.replay_bin {
        Some(b) => b,
        None => std::env::current_exe()?
            .parent()
            .context("the bench binary's directory")?
            .join("kedai-replay"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p kedai-replay`",
            bin.display()
        );
    }
    let mut secs = Vec::new();
    let mut line = String::new();
    for _ in 0..args.runs {
        let start = Instant::now();
        let out = Command::new(&bin)
            .arg("--data")
            .arg(&args.dir)
            .args(["rebuild", "--position", &events.to_string()])
            .args(["--output", "/dev/null"])
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        secs.push(start.elapsed().as_secs_f64());
        if !out.status.success() {
            bail!(
                "kedai-replay rebuild failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    let s = median(&mut secs);
    println!(
        "rebuild (kedai-replay, whole process): {:.2} s, {} events/s (median of {})",
        s,
        thousands(events as f64 / s),
        args.runs
    );
    println!("  kedai-replay said: {line}");
    Ok(())
}

/// Writes `orders` orders through the command engine, 64 at a time: each
/// placed, then (by its number) paid, shipped and delivered (cash on
/// delivery for some), cancelled, or left placed.
async fn write_orders(dir: &Path, orders: u64, shops: u64) -> anyhow::Result<()> {
    let store = Arc::new(LogStore::open(dir)?);
    let start_time = Timestamp(1_759_276_800_000_000);
    let now = move |i: u64| Timestamp(start_time.0 + i as i64 * 30_000_000);
    let mut worlds = Vec::new();
    for s in 0..shops {
        let shop = ShopId(Uuid::from_u128(0x5 + u128::from(s)));
        let world = World::for_shop(store.clone(), true, start_time, shop).await;
        world
            .run_at(
                now(0),
                EngineCommand::MoveStock(StockMove::Receive {
                    sku: sku("KAOS-M"),
                    warehouse_id: MALANG,
                    quantity: 1_000_000_000,
                    note: "bench".into(),
                }),
            )
            .await?;
        worlds.push(Arc::new(world));
    }
    let next = Arc::new(AtomicU64::new(1));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (worlds, next) = (worlds.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i > orders {
                    return anyhow::Ok(());
                }
                let world = worlds[(i % shops) as usize].clone();
                let id = order_id(u128::from(i));
                let mut order = place(id, vec![line("KAOS-M", 1 + (i % 3) as i64)]);
                order.cod = i % 3 == 1;
                let actor = Actor::new(Role::Staff, "bench");
                let run = |t: u64, command: EngineCommand| {
                    let world = world.clone();
                    let actor = actor.clone();
                    async move {
                        let meta = world.meta().at(now(t));
                        let meta = kedai_engine::command::CommandMeta { actor, ..meta };
                        world.engine.execute(world.shop, &meta, &command).await
                    }
                };
                run(i, EngineCommand::PlaceOrder(order)).await?;
                // The order's number within its shop picks what happens
                // next, so every shop gets every kind of order (by `i`
                // alone, with 4 shops, each shop would get one kind).
                match (i / shops) % 4 {
                    0 => {
                        run(
                            i,
                            EngineCommand::PayOrder {
                                order_id: id,
                                payment: PayOrder {
                                    payment_id: PaymentId(Uuid::from_u128(u128::from(i))),
                                    amount: Money(20_000),
                                    method: PaymentMethod::BankTransfer,
                                    bank_account: None,
                                    paid_at: None,
                                },
                            },
                        )
                        .await?;
                    }
                    1 => {
                        for transition in [
                            Transition::Process,
                            Transition::Pack,
                            Transition::Ship {
                                awb: format!("JNE{i:010}"),
                            },
                            Transition::Deliver,
                        ] {
                            run(
                                i,
                                EngineCommand::TransitionOrder {
                                    order_id: id,
                                    transition,
                                },
                            )
                            .await?;
                        }
                    }
                    2 => {
                        run(
                            i,
                            EngineCommand::TransitionOrder {
                                order_id: id,
                                transition: Transition::Cancel {
                                    reason: "bench".into(),
                                },
                            },
                        )
                        .await?;
                    }
                    _ => {}
                }
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    let events = store.last_position().await?;
    println!(
        "wrote {} orders, {} events, in {:.1} s",
        thousands(orders as f64),
        thousands(events as f64),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
