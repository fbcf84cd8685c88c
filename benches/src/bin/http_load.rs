//! Load scenario: the real `kedai serve` (release build, embedded log, a
//! fresh data directory per run) driven over HTTP/1.1 keep-alive
//! connections on 127.0.0.1.
//!
//! - `orders`: C connections place 3-line orders spread over a catalog
//!   of SKUs, as fast as the answers come back (closed loop): orders/s,
//!   latency percentiles, errors.
//! - `flash`: 10,000 buyers, one SKU with 1,000 units, one order each,
//!   over many connections: exactly 1,000 must be accepted (checked,
//!   also against the stock the server reports). Compared with the same
//!   number of 1-line orders spread over the catalog (uncontended) and on
//!   one SKU with plenty of stock (hot).
//! - `queries`: a shop with realistic data (made by the fixture
//!   generator through the command engine, then served by the binary) is
//!   read at a fixed rate (open loop): a pacer thread sets each request's
//!   intended send time and latency is measured from it, so a stalled
//!   server is charged for the requests that queued behind the stall (no
//!   coordinated omission). A mix of order reads, lists, stock and money.
//!
//! The client runs on the same 2 cores as the server; the scenario reports
//! the CPU time each used.
//!
//! Back of the envelope: in process the engine places ~51,000 3-line
//! orders/s on these cores. HTTP adds per request: parsing, auth (a
//! SHA-256 of the key and a map lookup), JSON decoding of the body and
//! encoding of the answer (the order's 4 events), the tower layers, and
//! on the client about as much again; ~20-40 µs of CPU per request in
//! all, so 2 cores suggest 20,000-30,000 orders/s at best. A query is a
//! read lock, a map lookup and some JSON: 10,000/s should use well under
//! one core and stay sub-millisecond unless something stalls.
//!
//! `cargo build --release -p kedai-api --bin kedai && cargo run --release -p kedai-benches --bin http_load -- --help`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use hyper::{Method, StatusCode};
use kedai_api::serve::{StoreChoice, issue_key};
use kedai_benches::http::{
    Conn, CpuMeter, CpuUse, Latencies, OPERATOR_TOKEN, Server, kedai_binary,
};
use kedai_benches::{median, thousands};
use kedai_engine::Role;
use kedai_fixtures::FixtureConfig;
use serde_json::{Value, json};
use tokio::sync::{Mutex, mpsc};

#[derive(Parser, Debug)]
#[command(about = "kedai over HTTP: order placement, the flash sale, queries at a fixed rate")]
struct Args {
    /// The kedai binary (default: the one built next to this bench).
    #[arg(long)]
    kedai: Option<PathBuf>,
    /// Which scenarios: orders, flash, queries (comma-separated).
    #[arg(long, default_value = "orders,flash,queries")]
    only: String,
    /// Runs per scenario (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// The server's log filter (`KEDAI_LOG`); `info` is what `kedai serve`
    /// runs with by default.
    #[arg(long, default_value = "info")]
    server_log: String,
    /// Client runtime threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    client_threads: usize,

    /// Connections placing orders.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds of order placement measured per run (after a 1 s warm-up).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// SKUs in the catalog.
    #[arg(long, default_value_t = 1_000)]
    skus: usize,
    /// Customers in the shop.
    #[arg(long, default_value_t = 1_000)]
    customers: usize,
    /// Also place orders with an `Idempotency-Key` each.
    #[arg(long)]
    idempotency: bool,

    /// Buyers in the flash sale.
    #[arg(long, default_value_t = 10_000)]
    buyers: usize,
    /// Units of the flash sale's SKU.
    #[arg(long, default_value_t = 1_000)]
    units: i64,
    /// Connections the buyers arrive over.
    #[arg(long, default_value_t = 1_000)]
    flash_connections: usize,

    /// Queries per second (open loop).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// Connections the queries go over.
    #[arg(long, default_value_t = 64)]
    query_connections: usize,
    /// Seconds of queries measured per run (after a 2 s warm-up at the
    /// same rate).
    #[arg(long, default_value_t = 10)]
    query_seconds: u64,
    /// Orders in the realistic shop the queries read.
    #[arg(long, default_value_t = 20_000)]
    query_orders: usize,
}

/// Connections used to set up shops.
const SETUP_CONNECTIONS: usize = 16;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let binary = kedai_binary(args.kedai.as_deref())?;
    let runtime = if args.client_threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.client_threads)
            .enable_all()
            .build()?
    };
    let wanted: Vec<&str> = args.only.split(',').map(str::trim).collect();
    eprintln!("load average before: {}", kedai_benches::load_average());
    if wanted.contains(&"orders") {
        runtime.block_on(orders(&args, &binary, false))?;
        if args.idempotency {
            runtime.block_on(orders(&args, &binary, true))?;
        }
    }
    if wanted.contains(&"flash") {
        runtime.block_on(flash(&args, &binary))?;
    }
    if wanted.contains(&"queries") {
        runtime.block_on(queries(&args, &binary))?;
    }
    eprintln!("load average after: {}", kedai_benches::load_average());
    Ok(())
}

/// A fresh data directory and the server on it.
fn fresh_server(
    args: &Args,
    binary: &std::path::Path,
) -> anyhow::Result<(Server, tempfile::TempDir)> {
    let dir = tempfile::tempdir_in(".")?;
    let server = Server::start(binary, dir.path(), &args.server_log)?;
    Ok((server, dir))
}

// ---------------------------------------------------------------- set-up

/// A shop made over HTTP: keys, warehouses, SKUs with stock, customers.
#[derive(Debug, Clone)]
struct HttpShop {
    staff_key: String,
    skus: Vec<String>,
    customers: Vec<String>,
}

/// Runs POSTs over `SETUP_CONNECTIONS` connections; answers in order.
async fn post_all(
    addr: SocketAddr,
    key: &str,
    requests: Vec<(String, Value)>,
) -> anyhow::Result<Vec<Value>> {
    let requests = Arc::new(requests);
    let mut tasks = Vec::new();
    for t in 0..SETUP_CONNECTIONS.min(requests.len()) {
        let (requests, key) = (Arc::clone(&requests), key.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, &key).await?;
            let mut answers = Vec::new();
            for i in (t..requests.len()).step_by(SETUP_CONNECTIONS) {
                let (path, body) = &requests[i];
                answers.push((i, conn.post_ok(path, body).await?));
            }
            anyhow::Ok(answers)
        }));
    }
    let mut all = Vec::with_capacity(requests.len());
    for t in tasks {
        all.extend(t.await??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, v)| v).collect())
}

fn variation(sku: &str, price: i64) -> Value {
    json!({"sku": sku, "options": {"ukuran": sku.rsplit('-').next().unwrap_or("M")}, "weight_grams": 250,
           "prices": {"price": price, "price_reseller": price * 8 / 10, "price_dropship": price * 9 / 10},
           "cost": price * 6 / 10, "wholesale": [], "in_stock": true})
}

/// Creates a shop with an owner and a staff key, two warehouses, `skus`
/// SKUs (products of four variations) with `stock` units each, plus the
/// `extra` SKUs with their own stock, and `customers` customers.
async fn setup_shop(
    addr: SocketAddr,
    skus: usize,
    stock: i64,
    extra: &[(&str, i64)],
    customers: usize,
) -> anyhow::Result<HttpShop> {
    let mut operator = Conn::open(addr, OPERATOR_TOKEN).await?;
    let created = operator
        .post_ok(
            "/v1/shops",
            &json!({"name": "Toko Beban", "currency": "IDR"}),
        )
        .await?;
    let owner_key = created["owner_key"]
        .as_str()
        .context("owner key")?
        .to_owned();
    let mut owner = Conn::open(addr, &owner_key).await?;
    let staff_key = owner
        .post_ok(
            "/v1/keys",
            &json!({"role": "staff", "label": "load client"}),
        )
        .await?["key"]
        .as_str()
        .context("staff key")?
        .to_owned();
    let mut warehouses = Vec::new();
    for (name, city) in [
        ("Gudang Malang", "Kota Malang"),
        ("Gudang Surabaya", "Surabaya"),
    ] {
        let w = owner
            .post_ok("/v1/warehouses", &json!({"name": name, "city": city}))
            .await?;
        warehouses.push(w["id"].as_str().context("warehouse id")?.to_owned());
    }
    let sizes = ["S", "M", "L", "XL"];
    let mut all_skus: Vec<String> = (0..skus)
        .map(|i| format!("KAOS-{}-{}", i / 4, sizes[i % 4]))
        .collect();
    let mut products: Vec<(String, Value)> = all_skus
        .chunks(4)
        .enumerate()
        .map(|(p, chunk)| {
            let price = 50_000 + p as i64 * 500;
            let variations: Vec<Value> = chunk.iter().map(|s| variation(s, price)).collect();
            ("/v1/products".to_owned(), json!({"name": format!("Kaos Polos {p}"), "category": "Pakaian", "kind": "S", "variations": variations}))
        })
        .collect();
    for (sku, _) in extra {
        products.push(("/v1/products".to_owned(), json!({"name": format!("Promo {sku}"), "category": "Promo", "kind": "S", "variations": [variation(sku, 99_000)]})));
    }
    post_all(addr, &staff_key, products).await?;
    let moves: Vec<(String, Value)> = all_skus
        .iter()
        .map(|s| (s.clone(), stock))
        .chain(extra.iter().map(|(s, n)| ((*s).to_owned(), *n)))
        .map(|(sku, quantity)| {
            ("/v1/stock/moves".to_owned(), json!({"type": "receive", "sku": sku, "warehouse_id": warehouses[0], "quantity": quantity}))
        })
        .collect();
    post_all(addr, &staff_key, moves).await?;
    let people: Vec<(String, Value)> = (0..customers)
        .map(|i| {
            ("/v1/customers".to_owned(), json!({"name": format!("Pelanggan {i}"), "phone": format!("62812{:08}", i), "address": "Jl. Merdeka 1", "city": "Kota Malang", "province": "Jawa Timur", "category": "N"}))
        })
        .collect();
    let customers = post_all(addr, &staff_key, people)
        .await?
        .iter()
        .map(|v| v["id"].as_str().map(str::to_owned).context("customer id"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    all_skus.truncate(skus);
    Ok(HttpShop {
        staff_key,
        skus: all_skus,
        customers,
    })
}

/// The JSON of an order of one unit of each SKU.
fn order_body(customer: &str, skus: &[&str]) -> Bytes {
    let lines: Vec<Value> = skus
        .iter()
        .map(|s| json!({"sku": s, "quantity": 1}))
        .collect();
    Bytes::from(
        json!({"channel": "SHOPEE", "sender_id": customer, "cod": false, "lines": lines,
               "shipping": {"courier": "JNE", "service": "REG", "cost": 14_000}})
        .to_string(),
    )
}

// ---------------------------------------------------------------- orders

/// What a closed-loop order run measured.
#[derive(Debug, Default)]
struct OrderRun {
    per_sec: f64,
    accepted: u64,
    errors: u64,
    latencies: Latencies,
    cpu: CpuUse,
}

async fn orders(args: &Args, binary: &std::path::Path, idempotency: bool) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let (server, _dir) = fresh_server(args, binary)?;
        let shop = setup_shop(server.addr, args.skus, 1_000_000_000, &[], args.customers).await?;
        let r = order_run(args, &server, &shop, idempotency).await?;
        let (server_us, client_us) = r.cpu.micros_per_request(r.accepted + r.errors);
        eprintln!(
            "  run {}: {} orders/s, p50 {:.2} ms, p99 {:.2} ms, {} errors; CPU per order: server {server_us:.0} µs, client {client_us:.0} µs; {:.2} cores busy",
            run + 1,
            thousands(r.per_sec),
            r.latencies.clone().quantile_ms(0.5),
            r.latencies.clone().quantile_ms(0.99),
            r.errors,
            r.cpu.cores_busy()
        );
        server.stop()?;
        runs.push(r);
    }
    let mut rates: Vec<f64> = runs.iter().map(|r| r.per_sec).collect();
    let mut p50: Vec<f64> = runs
        .iter_mut()
        .map(|r| r.latencies.quantile_ms(0.5))
        .collect();
    let mut p99: Vec<f64> = runs
        .iter_mut()
        .map(|r| r.latencies.quantile_ms(0.99))
        .collect();
    let mut share: Vec<f64> = runs.iter().map(|r| r.cpu.client_share()).collect();
    let mut busy: Vec<f64> = runs.iter().map(|r| r.cpu.cores_busy()).collect();
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    println!(
        "place order, 3 lines{}: {} orders/s, p50 {:.2} ms, p99 {:.2} ms, {errors} errors in all runs ({} connections, {} SKUs; client {:.0}% of the CPU used, {:.2} of 2 cores busy; median of {})",
        if idempotency {
            ", Idempotency-Key on each"
        } else {
            ""
        },
        thousands(median(&mut rates)),
        median(&mut p50),
        median(&mut p99),
        args.connections,
        args.skus,
        median(&mut share) * 100.0,
        median(&mut busy),
        args.runs
    );
    Ok(())
}

async fn order_run(
    args: &Args,
    server: &Server,
    shop: &HttpShop,
    idempotency: bool,
) -> anyhow::Result<OrderRun> {
    let shop = Arc::new(shop.clone());
    let warm_up = Instant::now() + Duration::from_secs(1);
    let end = warm_up + Duration::from_secs(args.seconds);
    let mut tasks = Vec::new();
    for c in 0..args.connections as u64 {
        let (shop, addr) = (Arc::clone(&shop), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(addr, &shop.staff_key).await?;
            let customer = &shop.customers[c as usize % shop.customers.len()];
            let mut run = OrderRun {
                latencies: Latencies::with_capacity(100_000),
                ..OrderRun::default()
            };
            let mut n = 0u64;
            loop {
                let started = Instant::now();
                if started >= end {
                    break;
                }
                let picked = kedai_benches::shop::three_of(shop.skus.len(), c, n);
                let skus: Vec<&str> = picked.iter().map(|&i| shop.skus[i].as_str()).collect();
                let body = order_body(customer, &skus);
                let answer = if idempotency {
                    conn.call_with_key(
                        Method::POST,
                        "/v1/orders",
                        Some(body),
                        &format!("load-{c}-{n}"),
                    )
                    .await?
                } else {
                    conn.call(Method::POST, "/v1/orders", Some(body)).await?
                };
                let done = Instant::now();
                n += 1;
                if started < warm_up || done > end {
                    continue;
                }
                run.latencies.record(done - started);
                if answer.status == StatusCode::CREATED {
                    run.accepted += 1;
                } else {
                    if run.errors < 3 {
                        eprintln!(
                            "order refused: {} {}",
                            answer.status,
                            String::from_utf8_lossy(&answer.body)
                        );
                    }
                    run.errors += 1;
                }
            }
            anyhow::Ok(run)
        }));
    }
    tokio::time::sleep_until(warm_up.into()).await;
    let meter = CpuMeter::start(server);
    tokio::time::sleep_until(end.into()).await;
    let cpu = meter.stop(server);
    let mut total = OrderRun {
        cpu,
        ..OrderRun::default()
    };
    for t in tasks {
        let r = t.await??;
        total.accepted += r.accepted;
        total.errors += r.errors;
        total.latencies.merge(r.latencies);
    }
    total.per_sec = total.accepted as f64 / args.seconds as f64;
    Ok(total)
}

// ---------------------------------------------------------------- flash sale

/// How many orders of a fixed batch were accepted, and how fast it went.
#[derive(Debug, Clone, Copy)]
struct Batch {
    accepted: u64,
    refused: u64,
    per_sec: f64,
    last_position: u64,
}

/// `buyers` one-line orders over `connections` connections, each on the
/// SKU `pick(buyer)`; accepted means 201, refused means 409
/// `insufficient_stock`; anything else is an error.
async fn order_batch(
    addr: SocketAddr,
    shop: &HttpShop,
    buyers: usize,
    connections: usize,
    pick: impl Fn(usize) -> String + Send + Sync + 'static,
) -> anyhow::Result<Batch> {
    let shop = Arc::new(shop.clone());
    let pick = Arc::new(pick);
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        conns.push(Conn::open(addr, &shop.staff_key).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let last_position = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for mut conn in conns {
        let (shop, pick, next, accepted, refused, last_position) = (
            Arc::clone(&shop),
            Arc::clone(&pick),
            Arc::clone(&next),
            Arc::clone(&accepted),
            Arc::clone(&refused),
            Arc::clone(&last_position),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let b = next.fetch_add(1, Ordering::Relaxed);
                if b >= buyers {
                    break;
                }
                let customer = &shop.customers[b % shop.customers.len()];
                let body = order_body(customer, &[&pick(b)]);
                let answer = conn.call(Method::POST, "/v1/orders", Some(body)).await?;
                match answer.status {
                    StatusCode::CREATED => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        let p = answer.json()["position"].as_u64().unwrap_or(0);
                        last_position.fetch_max(p, Ordering::Relaxed);
                    }
                    StatusCode::CONFLICT
                        if answer.json()["code"].as_str() == Some("insufficient_stock") =>
                    {
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    other => anyhow::bail!(
                        "buyer {b}: {other} {}",
                        String::from_utf8_lossy(&answer.body)
                    ),
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Batch {
        accepted: accepted.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        per_sec: buyers as f64 / secs,
        last_position: last_position.load(Ordering::Relaxed),
    })
}

async fn flash(args: &Args, binary: &std::path::Path) -> anyhow::Result<()> {
    const FLASH: &str = "FLASH-1212";
    const HOT: &str = "HOT-1111";
    let (mut spread, mut hot, mut flash) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..args.runs {
        let (server, _dir) = fresh_server(args, binary)?;
        let shop = setup_shop(
            server.addr,
            args.skus,
            1_000_000_000,
            &[(FLASH, args.units), (HOT, 1_000_000_000)],
            args.customers,
        )
        .await?;
        let skus = Arc::new(shop.skus.clone());
        let s = order_batch(
            server.addr,
            &shop,
            args.buyers,
            args.flash_connections,
            move |b| skus[kedai_benches::shop::three_of(skus.len(), b as u64, 7)[0]].clone(),
        )
        .await?;
        let h = order_batch(
            server.addr,
            &shop,
            args.buyers,
            args.flash_connections,
            |_| HOT.to_owned(),
        )
        .await?;
        let f = order_batch(
            server.addr,
            &shop,
            args.buyers,
            args.flash_connections,
            |_| FLASH.to_owned(),
        )
        .await?;
        anyhow::ensure!(
            s.accepted == args.buyers as u64 && h.accepted == args.buyers as u64,
            "orders with plenty of stock were refused: spread {s:?}, hot {h:?}"
        );
        let expected = args.units.min(args.buyers as i64) as u64;
        anyhow::ensure!(
            f.accepted == expected && f.accepted + f.refused == args.buyers as u64,
            "the flash sale accepted {} orders of {} buyers for {} units",
            f.accepted,
            args.buyers,
            args.units
        );
        // The server's own account of the SKU, once its projections have
        // every accepted order: all units reserved, none left.
        let mut conn = Conn::open(server.addr, &shop.staff_key).await?;
        let stock = conn
            .get_ok(&format!(
                "/v1/stock/{FLASH}?min_position={}",
                f.last_position
            ))
            .await?;
        anyhow::ensure!(
            stock["total"]["reserved"].as_i64() == Some(expected as i64)
                && stock["total"]["on_hand"].as_i64() == Some(args.units),
            "the server's stock of the flash SKU: {stock}"
        );
        eprintln!(
            "  run {}: spread {} orders/s, hot {} orders/s, flash sale {} buyers/s ({} accepted, {} refused; stock {})",
            run + 1,
            thousands(s.per_sec),
            thousands(h.per_sec),
            thousands(f.per_sec),
            f.accepted,
            f.refused,
            stock["total"]
        );
        server.stop()?;
        spread.push(s.per_sec);
        hot.push(h.per_sec);
        flash.push(f.per_sec);
    }
    let (spread, hot, flash) = (median(&mut spread), median(&mut hot), median(&mut flash));
    let (buyers, connections, runs) = (args.buyers, args.flash_connections, args.runs);
    println!(
        "1-line orders spread over {} SKUs: {} orders/s ({buyers} orders over {connections} connections; median of {runs})",
        args.skus,
        thousands(spread)
    );
    println!(
        "1-line orders on one SKU (hot, plenty of stock): {} orders/s (hot / spread {:.2}; median of {runs})",
        thousands(hot),
        hot / spread
    );
    println!(
        "flash sale: {buyers} buyers, {} units: exactly {} accepted in every run, {} buyers/s (flash / spread {:.2}; median of {runs})",
        args.units,
        args.units.min(buyers as i64),
        thousands(flash),
        flash / spread
    );
    Ok(())
}

// ---------------------------------------------------------------- queries

/// Writes a realistic shop into `data` through the command engine (the
/// fixture generator, as `kedai seed` does) and returns a staff key.
async fn realistic_shop(data: &std::path::Path, orders: usize) -> anyhow::Result<String> {
    let running = kedai_api::serve::start(data, &StoreChoice::Log).await?;
    let config = FixtureConfig {
        shops: 1,
        orders_per_shop: orders,
        seed: 1212,
        ..FixtureConfig::default()
    };
    let summary = kedai_fixtures::generate(&running.state.engine, &config, &mut |_| {}).await?;
    let shop = summary.shops.first().context("a shop")?.shop_id;
    let key = issue_key(&running.state.engine, shop, Role::Staff).await?;
    eprintln!(
        "  realistic shop: {} orders placed, {} events",
        summary.totals.orders_placed(),
        summary.events
    );
    running.stop().await?;
    Ok(key)
}

/// Paths of the query mix, drawn from what the shop holds.
#[derive(Debug)]
struct Mix {
    paths: Vec<String>,
}

/// Reads the shop's orders, customers and SKUs and builds a shuffled mix
/// of `n` query paths:
/// 30% an order, 20% orders by status, 10% a customer's orders, 5% the
/// newest orders, 15% a SKU's stock, 10% the balance, 5% the ledger,
/// 5% counts per status.
async fn query_mix(conn: &mut Conn, n: usize) -> anyhow::Result<Mix> {
    let mut orders = Vec::new();
    let mut customers = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let page = match after {
            Some(a) => {
                conn.get_ok(&format!("/v1/orders?limit=500&after={a}"))
                    .await?
            }
            None => conn.get_ok("/v1/orders?limit=500").await?,
        };
        for o in page["orders"].as_array().context("orders")? {
            orders.push(o["order_id"].as_str().context("order id")?.to_owned());
            if let Some(c) = o["sender"]["customer_id"].as_str() {
                customers.push(c.to_owned());
            }
        }
        match page["next"].as_u64() {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    customers.sort();
    customers.dedup();
    let products = conn.get_ok("/v1/products").await?;
    let mut skus = Vec::new();
    for p in products["products"].as_array().context("products")? {
        for v in p["skus"].as_array().into_iter().flatten() {
            if let Some(s) = v["sku"].as_str() {
                skus.push(s.to_owned());
            }
        }
    }
    anyhow::ensure!(
        !orders.is_empty() && !customers.is_empty() && !skus.is_empty(),
        "the realistic shop is empty: {} orders, {} customers, {} SKUs",
        orders.len(),
        customers.len(),
        skus.len()
    );
    let statuses = [
        "placed",
        "processing",
        "packed",
        "shipped",
        "delivered",
        "completed",
        "cancelled",
    ];
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move |bound: usize| {
        // xorshift64*: deterministic, cheap, good enough to pick paths.
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        (rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % bound
    };
    let mut paths = Vec::with_capacity(n);
    for _ in 0..n {
        let path = match next(100) {
            0..30 => format!("/v1/orders/{}", orders[next(orders.len())]),
            30..50 => format!(
                "/v1/orders?status={}&limit=20",
                statuses[next(statuses.len())]
            ),
            50..60 => format!(
                "/v1/orders?customer_id={}&limit=20",
                customers[next(customers.len())]
            ),
            60..65 => "/v1/orders?limit=20".to_owned(),
            65..80 => format!("/v1/stock/{}", skus[next(skus.len())]),
            80..90 => "/v1/balance".to_owned(),
            90..95 => "/v1/ledger?limit=20".to_owned(),
            _ => "/v1/orders/counts".to_owned(),
        };
        paths.push(path);
    }
    Ok(Mix { paths })
}

/// What an open-loop query run measured.
#[derive(Debug, Default)]
struct QueryRun {
    sent_per_sec: f64,
    latencies: Latencies,
    errors: u64,
    cpu: CpuUse,
}

async fn queries(args: &Args, binary: &std::path::Path) -> anyhow::Result<()> {
    let mut runs = Vec::new();
    for run in 0..args.runs {
        let dir = tempfile::tempdir_in(".")?;
        let key = realistic_shop(dir.path(), args.query_orders).await?;
        let server = Server::start(binary, dir.path(), &args.server_log)?;
        let mut conn = Conn::open(server.addr, &key).await?;
        let total = (args.rate * (args.query_seconds + 2)) as usize;
        let mix = query_mix(&mut conn, total.min(1_000_000)).await?;
        drop(conn);
        let mut r = query_run(args, &server, &key, mix).await?;
        let answered = r.latencies.len() as u64;
        let (server_us, client_us) = r.cpu.micros_per_request(answered);
        eprintln!(
            "  run {}: {} queries/s sent, p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms, {} errors; CPU per query: server {server_us:.0} µs, client {client_us:.0} µs; {:.2} cores busy",
            run + 1,
            thousands(r.sent_per_sec),
            r.latencies.quantile_ms(0.5),
            r.latencies.quantile_ms(0.99),
            r.latencies.quantile_ms(0.999),
            r.latencies.max_ms(),
            r.errors,
            r.cpu.cores_busy()
        );
        server.stop()?;
        runs.push(r);
    }
    let mut q = |f: f64| -> f64 {
        let mut v: Vec<f64> = runs
            .iter_mut()
            .map(|r| r.latencies.quantile_ms(f))
            .collect();
        median(&mut v)
    };
    let (p50, p99, p999) = (q(0.5), q(0.99), q(0.999));
    let mut sent: Vec<f64> = runs.iter().map(|r| r.sent_per_sec).collect();
    let mut share: Vec<f64> = runs.iter().map(|r| r.cpu.client_share()).collect();
    let mut busy: Vec<f64> = runs.iter().map(|r| r.cpu.cores_busy()).collect();
    let errors: u64 = runs.iter().map(|r| r.errors).sum();
    println!(
        "queries at {} /s (open loop, {} connections, a shop of {} orders): {} /s sent, p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.2} ms, {errors} errors in all runs (client {:.0}% of the CPU used, {:.2} of 2 cores busy; median of {})",
        thousands(args.rate as f64),
        args.query_connections,
        thousands(args.query_orders as f64),
        thousands(median(&mut sent)),
        median(&mut share) * 100.0,
        median(&mut busy),
        args.runs
    );
    Ok(())
}

/// A request to send: its path and when it should have been sent.
#[derive(Debug)]
struct Due {
    path: usize,
    intended: Instant,
}

async fn query_run(args: &Args, server: &Server, key: &str, mix: Mix) -> anyhow::Result<QueryRun> {
    let mix = Arc::new(mix);
    let total = mix.paths.len();
    let interval = Duration::from_secs_f64(1.0 / args.rate as f64);
    let warm_up = Duration::from_secs(2);
    let mut conns = Vec::new();
    for _ in 0..args.query_connections {
        conns.push(Conn::open(server.addr, key).await?);
    }
    let (tx, rx) = mpsc::unbounded_channel::<Due>();
    let rx = Arc::new(Mutex::new(rx));
    let start = Instant::now() + Duration::from_millis(50);
    let measured_from = start + warm_up;
    let measured_to = measured_from + Duration::from_secs(args.query_seconds);
    // The pacer: an OS thread (finer sleeps than the runtime's 1 ms timer)
    // that releases each request at its intended time, whether or not the
    // server has answered the ones before.
    let pacer = std::thread::spawn(move || {
        let mut sent = 0usize;
        for i in 0..total {
            let intended = start + interval * i as u32;
            if intended >= measured_to {
                break;
            }
            let now = Instant::now();
            if intended > now {
                std::thread::sleep(intended - now);
            }
            if tx.send(Due { path: i, intended }).is_err() {
                break;
            }
            sent += 1;
        }
        sent
    });
    let mut tasks = Vec::new();
    for mut conn in conns {
        let (rx, mix) = (Arc::clone(&rx), Arc::clone(&mix));
        tasks.push(tokio::spawn(async move {
            let mut run = QueryRun {
                latencies: Latencies::with_capacity(total / 16),
                ..QueryRun::default()
            };
            loop {
                let due = rx.lock().await.recv().await;
                let Some(due) = due else { break };
                let answer = conn.call(Method::GET, &mix.paths[due.path], None).await?;
                if due.intended < measured_from {
                    continue;
                }
                run.latencies.record(due.intended.elapsed());
                if answer.status != StatusCode::OK {
                    if run.errors < 3 {
                        eprintln!(
                            "query {} answered {} {}",
                            mix.paths[due.path],
                            answer.status,
                            String::from_utf8_lossy(&answer.body)
                        );
                    }
                    run.errors += 1;
                }
            }
            anyhow::Ok(run)
        }));
    }
    tokio::time::sleep_until(measured_from.into()).await;
    let meter = CpuMeter::start(server);
    tokio::time::sleep_until(measured_to.into()).await;
    let cpu = meter.stop(server);
    let sent = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the pacer panicked"))?;
    let mut total_run = QueryRun {
        cpu,
        ..QueryRun::default()
    };
    for t in tasks {
        let r = t.await??;
        total_run.errors += r.errors;
        total_run.latencies.merge(r.latencies);
    }
    let measured = sent.saturating_sub((warm_up.as_secs_f64() / interval.as_secs_f64()) as usize);
    total_run.sent_per_sec = measured as f64 / args.query_seconds as f64;
    Ok(total_run)
}
