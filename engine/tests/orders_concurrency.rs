//! Many tasks placing orders on the same few SKUs through the engine on the
//! embedded log: accepted quantities never exceed the stock received (no
//! oversell), every rejection is "insufficient stock", and the state rebuilt
//! from the log after a reopen is the same.

mod common;

use std::sync::Arc;

use common::*;
use kedai_engine::EventStore;
use kedai_engine::command::{Command, CommandError, Engine, EngineOptions};
use kedai_engine::domain::Rejection;
use kedai_engine::domain::order::LineInput;
use kedai_engine::domain::stock::StockItem;
use kedai_engine::store::log::{LogOptions, LogStore};

fn options() -> LogOptions {
    LogOptions {
        segment_bytes_max: 1 << 20,
        ..LogOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_buyers_never_oversell() {
    const TASKS: u128 = 48;
    const ORDERS_EACH: u128 = 12;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(LogStore::open_with(dir.path(), options()).unwrap());
    let w = Arc::new(World::on(store, true).await);
    w.receive("KAOS-M", MALANG, 60).await;
    w.receive("KAOS-M", SURABAYA, 40).await;
    w.receive("KAOS-L", SURABAYA, 30).await;

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let w = Arc::clone(&w);
        tasks.push(tokio::spawn(async move {
            let mut accepted = [0i64; 2];
            let mut rejected = 0;
            for n in 0..ORDERS_EACH {
                // A deterministic spread of order shapes.
                let k = t * 31 + n * 7;
                let m = 1 + (k % 3) as i64;
                let l = (k % 4) as i64;
                let mut lines = vec![line("KAOS-M", m)];
                if l > 0 {
                    lines.push(line("KAOS-L", l));
                }
                if k % 5 == 0 {
                    lines[0] = LineInput {
                        warehouse_id: Some(SURABAYA),
                        ..lines[0].clone()
                    };
                }
                match w
                    .run(Command::PlaceOrder(place(order_id(t * 1000 + n), lines)))
                    .await
                {
                    Ok(_) => {
                        accepted[0] += m;
                        accepted[1] += l;
                    }
                    Err(CommandError::Rejected(Rejection::InsufficientStock { .. })) => {
                        rejected += 1
                    }
                    Err(e) => panic!("only insufficient stock may refuse an order here: {e}"),
                }
            }
            (accepted, rejected)
        }));
    }
    let mut accepted = [0i64; 2];
    let mut rejected = 0;
    for t in tasks {
        let (a, r) = t.await.unwrap();
        accepted[0] += a[0];
        accepted[1] += a[1];
        rejected += r;
    }
    assert!(
        rejected > 0,
        "demand exceeds stock, so some orders must be refused"
    );
    assert!(
        accepted[0] <= 100 && accepted[1] <= 30,
        "oversold: {accepted:?}"
    );
    let mut live: Vec<StockItem> = Vec::new();
    for (s, wh) in [
        ("KAOS-M", MALANG),
        ("KAOS-M", SURABAYA),
        ("KAOS-L", SURABAYA),
        ("KAOS-L", MALANG),
    ] {
        live.push(w.engine.stock_item(w.shop, &sku(s), wh).await.unwrap());
    }
    assert_eq!(live[0].reserved + live[1].reserved, accepted[0]);
    assert_eq!(live[2].reserved + live[3].reserved, accepted[1]);
    for item in &live {
        assert!(item.reserved <= item.on_hand && item.available() >= 0);
    }

    // Reopen: the state rebuilt from the log is the same.
    let shop = w.shop;
    drop(tasks_done(w));
    let store: Arc<dyn EventStore> = Arc::new(LogStore::open_with(dir.path(), options()).unwrap());
    let engine = Engine::new(
        store,
        EngineOptions {
            sole_writer: true,
            ..EngineOptions::default()
        },
    );
    for (i, (s, wh)) in [
        ("KAOS-M", MALANG),
        ("KAOS-M", SURABAYA),
        ("KAOS-L", SURABAYA),
        ("KAOS-L", MALANG),
    ]
    .into_iter()
    .enumerate()
    {
        let rebuilt = engine.stock_item(shop, &sku(s), wh).await.unwrap();
        assert_eq!(rebuilt, live[i], "{s} in {wh}");
    }
}

/// Drops the world once every task is done with it (the store's lock goes
/// with it).
fn tasks_done(w: Arc<World>) -> World {
    Arc::try_unwrap(w).unwrap_or_else(|_| panic!("tasks still hold the world"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_flash_sale_sells_exactly_the_stock() {
    const BUYERS: u128 = 400;
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn EventStore> = Arc::new(LogStore::open_with(dir.path(), options()).unwrap());
    let w = Arc::new(World::on(store, true).await);
    w.receive("KAOS-M", MALANG, 100).await;
    let mut tasks = Vec::new();
    for b in 0..BUYERS {
        let w = Arc::clone(&w);
        tasks.push(tokio::spawn(async move {
            match w
                .run(Command::PlaceOrder(place(
                    order_id(b),
                    vec![line("KAOS-M", 1)],
                )))
                .await
            {
                Ok(_) => true,
                Err(CommandError::Rejected(Rejection::InsufficientStock { .. })) => false,
                Err(e) => panic!("{e}"),
            }
        }));
    }
    let mut sold = 0;
    for t in tasks {
        sold += usize::from(t.await.unwrap());
    }
    assert_eq!(sold, 100, "exactly the stock is sold");
    assert_eq!(w.stock("KAOS-M", MALANG).await, (100, 100));
}
