//! Load scenario: the projections over a realistic log. How fast every
//! projection folds the log (decoding included), how much memory the
//! projections of N orders take, how big and how fast a snapshot is, and
//! how long the queries the API serves take over them (the query and its
//! JSON answer, in process: the HTTP figures are `http_load`'s). The
//! queries whose details live in the log (a conversation's messages, the
//! ledger) read them from the memory store, as the API does from its
//! store.
//!
//! The log is made by the fixtures generator (shops in Indonesia and
//! Malaysia trading for a year through the real command engine, into a
//! memory store), so the events are the ones the domain decides, in the
//! mix a real shop produces (~15 events per order: placements, payments,
//! packing, shipping, deliveries, ledger transactions, stock moves, chats).
//!
//! `cargo run --release -p kedai-benches --bin projections_load -- --orders 1000000`

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use cap::Cap;
use chrono::NaiveDate;
use clap::Parser;
use kedai_api::routes::{chat, money, stock as stock_routes};
use kedai_benches::http::Latencies;
use kedai_benches::{median, thousands};
use kedai_engine::command::{Engine, EngineOptions};
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::order::OrderStatus;
use kedai_engine::store::import::{IMPORT_RECORDS_MAX, RecordPage};
use kedai_engine::store::log::format::{self, Envelope, GENESIS_HASH};
use kedai_engine::store::memory::MemoryStore;
use kedai_engine::{EventStore, Position, RecordedEvent};
use kedai_fixtures::{FixtureConfig, generate};
use kedai_projections::Projections;
use kedai_projections::analytics::{Granularity, Group, RankBy};
use kedai_projections::fold::ParallelFold;
use kedai_projections::inbox;
use kedai_projections::orders::OrderQuery;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// mimalloc, counting the bytes currently allocated.
#[global_allocator]
static ALLOCATOR: Cap<mimalloc::MiMalloc> = Cap::new(mimalloc::MiMalloc, usize::MAX);

fn live_bytes() -> isize {
    ALLOCATOR.allocated() as isize
}

#[derive(Parser, Debug)]
#[command(about = "fold rate, memory, snapshots and query latency of kedai's projections")]
struct Args {
    /// Orders in all (split over the shops).
    #[arg(long, default_value_t = 200_000)]
    orders: usize,
    /// Shops.
    #[arg(long, default_value_t = 4)]
    shops: usize,
    /// Days of trading.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Runs of each fold measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Queries of each kind.
    #[arg(long, default_value_t = 20_000)]
    queries: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (store, events) = runtime.block_on(make_log(&args))?;
    let orders = fold_and_measure(&args, &events)?;
    drop(events);
    queries(&args, &orders, &*store, &runtime)?;
    Ok(())
}

/// Generates the log into a memory store and reads it back whole.
async fn make_log(args: &Args) -> anyhow::Result<(Arc<MemoryStore>, Vec<RecordedEvent>)> {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::new(
        store.clone(),
        EngineOptions {
            sole_writer: true,
            ..EngineOptions::default()
        },
    );
    let config = FixtureConfig {
        shops: args.shops,
        orders_per_shop: args.orders.div_ceil(args.shops),
        days: args.days,
        ..FixtureConfig::default()
    };
    let started = Instant::now();
    let summary = generate(&engine, &config, &mut |p| {
        if p.done % 100_000 == 0 && p.done > 0 {
            eprintln!("  generated {}/{} orders", p.done, p.total);
        }
    })
    .await
    .context("generating the fixtures")?;
    let last = store.last_position().await?;
    eprintln!(
        "generated {} orders tried ({} placed) in {} shops, {} events, in {:.1} s",
        summary.totals.orders_tried,
        summary.totals.orders_placed(),
        summary.shops.len(),
        thousands(last as f64),
        started.elapsed().as_secs_f64()
    );
    let mut events = Vec::with_capacity(last as usize);
    let mut after: Position = 0;
    while after < last {
        let page = store.read_all(after, 10_000).await?;
        after = page.last().map_or(last, |e| e.position);
        events.extend(page);
    }
    drop(engine);
    Ok((store, events))
}

/// Where a one-thread fold's time goes, by event type: each event's
/// `Projections::apply` timed alone (the clock adds about 40 ns an event,
/// so the shares of the cheapest types are overstated a little).
fn cost_by_type(events: &[RecordedEvent]) {
    let mut by_type: HashMap<&str, (u64, Duration)> = HashMap::new();
    let mut p = Projections::new();
    let started = Instant::now();
    for e in events {
        let t = Instant::now();
        p.apply(e).expect("the fixtures fold");
        let spent = t.elapsed();
        let entry = by_type.entry(&e.event_type).or_default();
        entry.0 += 1;
        entry.1 += spent;
    }
    let all = started.elapsed().as_secs_f64();
    let mut rows: Vec<_> = by_type.into_iter().collect();
    rows.sort_by_key(|(_, (_, spent))| std::cmp::Reverse(*spent));
    println!(
        "\n| event type (one-thread fold, timed alone) | events | share of the time | ns per event |"
    );
    println!("|---|---:|---:|---:|");
    for (kind, (n, spent)) in rows.iter().take(16) {
        println!(
            "| {kind} | {} | {:.1}% | {:.0} |",
            thousands(*n as f64),
            100.0 * spent.as_secs_f64() / all,
            spent.as_secs_f64() * 1e9 / *n as f64
        );
    }
    println!();
}

fn fold_and_measure(args: &Args, events: &[RecordedEvent]) -> anyhow::Result<Projections> {
    let n = events.len() as f64;
    let payload_bytes: usize = events.iter().map(|e| e.payload.len()).sum();
    println!(
        "log: {} events, {:.0} payload bytes per event on average",
        thousands(n),
        payload_bytes as f64 / n
    );

    let mut decode_rates = Vec::new();
    for _ in 0..args.runs {
        let started = Instant::now();
        let mut known = 0u64;
        for e in events {
            if DomainEvent::decode(&e.event_type, &e.payload)?.is_some() {
                known += 1;
            }
        }
        assert_eq!(
            known as usize,
            events.len(),
            "every event is a domain event"
        );
        decode_rates.push(n / started.elapsed().as_secs_f64());
    }
    println!(
        "decode only (MessagePack to DomainEvent): {} events/s",
        thousands(median(&mut decode_rates))
    );

    let mut fold_rates = Vec::new();
    let mut last = None;
    let mut memory = 0isize;
    for _ in 0..args.runs {
        drop(last.take());
        let before = live_bytes();
        let started = Instant::now();
        let mut p = Projections::new();
        for e in events {
            p.apply(e)?;
        }
        fold_rates.push(n / started.elapsed().as_secs_f64());
        memory = live_bytes() - before;
        last = Some(p);
    }
    let p = last.expect("at least one run");
    let orders: usize = p.shops.values().map(|s| s.orders.len()).sum();
    println!(
        "fold (decode + every projection, one thread): {} events/s",
        thousands(median(&mut fold_rates))
    );
    cost_by_type(events);

    // The same log as a rebuild reads it (records as stored, in pages of
    // 16,384), folded by `ParallelFold` on 1 and 2 threads.
    let bodies: Vec<Vec<u8>> = events
        .iter()
        .map(|e| {
            let mut body = Vec::new();
            format::encode_body(&mut body, &GENESIS_HASH, e.position, &Envelope::of(e));
            body
        })
        .collect();
    let expected = p.to_bytes();
    for threads in [1, 2] {
        let mut rates = Vec::new();
        for _ in 0..args.runs {
            let pages: Vec<RecordPage> = bodies
                .chunks(IMPORT_RECORDS_MAX)
                .enumerate()
                .map(|(i, chunk)| {
                    let mut page = RecordPage::new((i * IMPORT_RECORDS_MAX) as u64 + 1);
                    chunk.iter().for_each(|b| page.push(b));
                    page
                })
                .collect();
            let started = Instant::now();
            let mut fold = ParallelFold::start(threads, None);
            for page in pages {
                fold.push(page);
            }
            let folded = fold.finish()?;
            rates.push(n / started.elapsed().as_secs_f64());
            anyhow::ensure!(
                folded.projections.to_bytes() == expected,
                "the fold on {threads} threads differs from the fold on one"
            );
        }
        println!(
            "fold of stored records on {threads} thread(s) (envelope + decode + every projection): {} events/s",
            thousands(median(&mut rates))
        );
    }
    println!(
        "memory of the projections: {:.1} MiB for {} orders ({} bytes per order; 1M orders: {:.2} GiB)",
        memory as f64 / (1 << 20) as f64,
        thousands(orders as f64),
        thousands(memory as f64 / orders as f64),
        memory as f64 / orders as f64 * 1e6 / (1u64 << 30) as f64
    );

    let size_of = |f: &dyn Fn() -> Box<dyn std::any::Any>| {
        let before = live_bytes();
        let copy = f();
        let size = live_bytes() - before;
        drop(copy);
        size as f64 / orders as f64
    };
    let views: Vec<_> = p.shops.values().collect();
    println!(
        "bytes per order by projection: orders {:.0}, stock {:.0}, balances {:.0}, analytics {:.0}, inbox {:.0}, checkouts {:.0}, meta {:.0}",
        size_of(&|| Box::new(views.iter().map(|v| v.orders.clone()).collect::<Vec<_>>())),
        size_of(&|| Box::new(views.iter().map(|v| v.stock.clone()).collect::<Vec<_>>())),
        size_of(&|| Box::new(views.iter().map(|v| v.balances.clone()).collect::<Vec<_>>())),
        size_of(&|| Box::new(
            views
                .iter()
                .map(|v| v.analytics.clone())
                .collect::<Vec<_>>()
        )),
        size_of(&|| Box::new(views.iter().map(|v| v.inbox.clone()).collect::<Vec<_>>())),
        size_of(&|| Box::new(
            views
                .iter()
                .map(|v| v.checkouts.clone())
                .collect::<Vec<_>>()
        )),
        size_of(&|| Box::new(views.iter().map(|v| v.meta.clone()).collect::<Vec<_>>())),
    );

    {
        use kedai_projections::{balances, inbox, orders, stock};
        use std::mem::size_of;
        println!(
            "record sizes (bytes, without what they point to): order {}, line {}, timeline entry {}, stock history line {} (in memory: its mark, {}), ledger entry {} (in memory: its mark, {}), message {}, conversation {}",
            size_of::<orders::OrderSummary>(),
            size_of::<orders::LineSummary>(),
            size_of::<orders::TimelineEntry>(),
            size_of::<stock::HistoryLine>(),
            size_of::<stock::HistoryMark>(),
            size_of::<balances::LedgerEntry>(),
            size_of::<balances::LedgerMark>(),
            size_of::<inbox::MessageView>(),
            size_of::<inbox::ConversationView>(),
        );
    }
    let started = Instant::now();
    let bytes = p.to_bytes();
    let encode = started.elapsed();
    let before = live_bytes();
    let started = Instant::now();
    let back = Projections::from_bytes(&bytes)?;
    let decode = started.elapsed();
    let loaded = live_bytes() - before;
    assert!(back == p, "a snapshot loads back to the same projections");
    println!(
        "snapshot: {:.1} MiB, written in {:.0} ms, loaded (indexes rebuilt) in {:.0} ms; loaded, the projections take {} bytes per order (folded: {})",
        bytes.len() as f64 / (1 << 20) as f64,
        encode.as_secs_f64() * 1e3,
        decode.as_secs_f64() * 1e3,
        thousands(loaded as f64 / orders as f64),
        thousands(memory as f64 / orders as f64),
    );
    Ok(p)
}

/// Latencies of one kind of query, query and JSON encoding together.
fn measure<T: serde::Serialize>(
    name: &str,
    count: usize,
    rng: &mut ChaCha8Rng,
    mut query: impl FnMut(&mut ChaCha8Rng) -> T,
) -> anyhow::Result<()> {
    let mut times = Latencies::with_capacity(count);
    let mut bytes = 0usize;
    for _ in 0..count {
        let started = Instant::now();
        let answer = query(rng);
        let json = serde_json::to_vec(&answer)?;
        times.record(started.elapsed());
        bytes += json.len();
    }
    let mut micros = |q: f64| times.quantile(q).unwrap_or_default().as_secs_f64() * 1e6;
    let (p50, p99, p999) = (micros(0.5), micros(0.99), micros(0.999));
    println!(
        "| {name} | {p50:.1} | {p99:.1} | {p999:.1} | {:.1} | {} |",
        times.max().unwrap_or_default().as_secs_f64() * 1e6,
        thousands(bytes as f64 / count as f64),
    );
    Ok(())
}

fn queries(
    args: &Args,
    p: &Projections,
    store: &dyn EventStore,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<()> {
    let shops: Vec<_> = p.shops.values().collect();
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let pick_shop = |rng: &mut ChaCha8Rng| shops[rng.random_range(0..shops.len())];
    let year_from = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date");
    let year_to = NaiveDate::from_ymd_opt(2100, 1, 1).expect("a date");
    let q = args.queries;
    if q == 0 {
        return Ok(());
    }
    println!();
    println!("| query (in process, with its JSON) | p50 µs | p99 µs | p99.9 µs | max µs | bytes |");
    println!("|---|---:|---:|---:|---:|---:|");
    measure("one order by id", q, &mut rng, |rng| {
        let shop = pick_shop(rng);
        let all = shop.orders.all();
        let id = all[rng.random_range(0..all.len())].order_id;
        shop.orders.get(id).cloned()
    })?;
    measure("orders, newest page of 50", q, &mut rng, |rng| {
        let shop = pick_shop(rng);
        let page = shop.orders.list(&OrderQuery {
            limit: 50,
            ..OrderQuery::default()
        });
        page.orders.into_iter().cloned().collect::<Vec<_>>()
    })?;
    measure(
        "orders by status (shipped), page of 50",
        q,
        &mut rng,
        |rng| {
            let shop = pick_shop(rng);
            let page = shop.orders.list(&OrderQuery {
                status: Some(OrderStatus::Shipped),
                limit: 50,
                ..OrderQuery::default()
            });
            page.orders.into_iter().cloned().collect::<Vec<_>>()
        },
    )?;
    measure("orders of a customer", q, &mut rng, |rng| {
        let shop = pick_shop(rng);
        let all = shop.orders.all();
        let customer = all[rng.random_range(0..all.len())].receiver.customer_id;
        let page = shop.orders.list(&OrderQuery {
            customer_id: Some(customer),
            limit: 50,
            ..OrderQuery::default()
        });
        page.orders.into_iter().cloned().collect::<Vec<_>>()
    })?;
    measure("order counts by status", q, &mut rng, |rng| {
        pick_shop(rng).orders.counts()
    })?;
    measure("stock of one SKU", q, &mut rng, |rng| {
        let shop = pick_shop(rng);
        let levels: Vec<_> = shop.stock.levels.keys().collect();
        let (sku, _) = levels[rng.random_range(0..levels.len())];
        shop.stock.of_sku(sku)
    })?;
    let shop_ids: Vec<_> = p.shops.keys().copied().collect();
    measure("a SKU's whole stock history", q, &mut rng, |rng| {
        let i = rng.random_range(0..shops.len());
        let shop = shops[i];
        let levels: Vec<_> = shop.stock.levels.keys().collect();
        let (sku, _) = levels[rng.random_range(0..levels.len())];
        let refs = shop.stock.history_of(sku, None, None, None);
        let events = runtime
            .block_on(stock_routes::history_events(store, shop_ids[i], sku, &refs))
            .expect("the history's events");
        refs.iter()
            .zip(&events)
            .map(|(r, e)| kedai_projections::stock::line(&shop.meta, sku, r, e))
            .collect::<Result<Vec<_>, _>>()
            .expect("history lines")
    })?;
    measure(
        "a SKU's stock history, first page of 50 (what the route answers)",
        q,
        &mut rng,
        |rng| {
            let i = rng.random_range(0..shops.len());
            let shop = shops[i];
            let levels: Vec<_> = shop.stock.levels.keys().collect();
            let (sku, _) = levels[rng.random_range(0..levels.len())];
            let refs = shop.stock.history_page(sku, None, None, None, None, 50);
            let events = runtime
                .block_on(stock_routes::history_events(store, shop_ids[i], sku, &refs))
                .expect("the history's events");
            refs.iter()
                .zip(&events)
                .map(|(r, e)| kedai_projections::stock::line(&shop.meta, sku, r, e))
                .collect::<Result<Vec<_>, _>>()
                .expect("history lines")
        },
    )?;
    measure("balances and last 50 ledger entries", q, &mut rng, |rng| {
        let i = rng.random_range(0..shops.len());
        let shop = shops[i];
        let marks: Vec<_> = shop
            .balances
            .ledger_page(None, None, None, 50)
            .into_iter()
            .copied()
            .collect();
        let events = runtime
            .block_on(money::ledger_events(store, shop_ids[i], &marks))
            .expect("the ledger's events");
        let entries = marks
            .iter()
            .zip(&events)
            .map(|(m, e)| kedai_projections::balances::entry(m, e))
            .collect::<Result<Vec<_>, _>>()
            .expect("ledger entries");
        let b = &shop.balances;
        ((b.pending, b.available, b.withdrawing), entries)
    })?;
    let conversations: Vec<Vec<uuid::Uuid>> = shops
        .iter()
        .map(|v| {
            let mut ids: Vec<uuid::Uuid> =
                v.inbox.conversations().map(|c| c.conversation_id).collect();
            ids.sort_unstable();
            ids
        })
        .collect();
    if conversations.iter().all(Vec::is_empty) {
        println!("| a conversation's first 50 messages | (no conversations) | | | | |");
    } else {
        measure("a conversation's first 50 messages", q, &mut rng, |rng| {
            let i = loop {
                let i = rng.random_range(0..shops.len());
                if !conversations[i].is_empty() {
                    break i;
                }
            };
            let ids = &conversations[i];
            let id = ids[rng.random_range(0..ids.len())];
            let events = runtime
                .block_on(chat::conversation_events(
                    store,
                    shop_ids[i],
                    id,
                    p.position,
                ))
                .expect("the conversation's events");
            let all = inbox::messages(&events, p.position).expect("messages");
            inbox::page(&all, 0, 50).to_vec()
        })?;
    }
    let slow = (q / 10).max(100);
    measure(
        "sales by month over the whole period",
        slow,
        &mut rng,
        |rng| {
            pick_shop(rng)
                .analytics
                .sales(year_from, year_to, Granularity::Month)
        },
    )?;
    measure(
        "best 10 products by revenue, whole period",
        slow,
        &mut rng,
        |rng| {
            pick_shop(rng)
                .analytics
                .best(year_from, year_to, Group::Product, RankBy::Revenue, 10)
        },
    )?;
    measure(
        "text search in orders (a name), page of 50",
        slow,
        &mut rng,
        |rng| {
            let shop = pick_shop(rng);
            let all = shop.orders.all();
            let name = all[rng.random_range(0..all.len())].receiver.name.clone();
            let page = shop.orders.list(&OrderQuery {
                text: Some(name),
                limit: 50,
                ..OrderQuery::default()
            });
            page.orders.into_iter().cloned().collect::<Vec<_>>()
        },
    )?;
    measure(
        "text search in orders (a SKU), page of 50",
        slow,
        &mut rng,
        |rng| {
            let shop = pick_shop(rng);
            let all = shop.orders.all();
            let lines = &all[rng.random_range(0..all.len())].lines;
            let sku = lines[rng.random_range(0..lines.len())].item.sku.to_string();
            let page = shop.orders.list(&OrderQuery {
                text: Some(sku),
                limit: 50,
                ..OrderQuery::default()
            });
            page.orders.into_iter().cloned().collect::<Vec<_>>()
        },
    )?;
    Ok(())
}
