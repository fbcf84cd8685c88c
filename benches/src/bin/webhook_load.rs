//! Load scenario: webhooks.
//!
//! - `deliveries`: N matching events are recorded (orders moved to
//!   processing) for S subscriptions pointing at a fast local receiver
//!   (an axum server in this process answering 200 at once), then the
//!   worker starts and delivers them: deliveries per second until the
//!   receiver has all N x S. Each delivery builds its body from the
//!   order's events, signs it, POSTs it, and records its outcome in the
//!   log (durable, batched).
//! - `place_order`: 64 clients place 3-line orders on the embedded log
//!   for a fixed time, (a) with no worker, (b) with the worker and one
//!   active subscription to every trigger (placing an order fires none:
//!   the cost of following the log), and then clients that place an
//!   order and move it to processing (c) with no worker, (d) with one
//!   subscription to `order_status_processing` (every order delivered
//!   while the load runs).
//!
//! Everything shares the machine's cores: the receiver, the worker, the
//! engine, the log writer and the clients.
//!
//! `cargo run --release -p kedai-benches --bin webhook_load -- --help`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::post;
use clap::Parser;
use kedai_api::webhooks::{Worker, WorkerConfig};
use kedai_benches::shop::{self, BenchShop};
use kedai_benches::{median, thousands};
use kedai_engine::command::{Command, Engine, EngineOptions};
use kedai_engine::domain::ids::OrderId;
use kedai_engine::domain::order::Transition;
use kedai_engine::domain::webhook::{CreateWebhook, Trigger};
use kedai_engine::store::log::LogStore;
use kedai_engine::{EventStore, ShopId};
use uuid::Uuid;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Webhook deliveries per second, and what a subscription costs order placement")]
struct Args {
    /// Matching events recorded before the worker starts.
    #[arg(long, default_value_t = 20_000)]
    events: usize,
    /// Subscription counts to deliver them to (comma-separated).
    #[arg(long, default_value = "1,4", value_delimiter = ',')]
    subscriptions: Vec<usize>,
    /// Clients placing orders.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds per place-order run.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs per figure (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Only the deliveries scenario, or only place_order.
    #[arg(long)]
    only: Option<String>,
}

/// A receiver answering 200 at once; counts requests.
async fn receiver() -> (String, Arc<AtomicU64>) {
    let count = Arc::new(AtomicU64::new(0));
    let c = Arc::clone(&count);
    let app = Router::new().route(
        "/hook",
        post(move || {
            let c = Arc::clone(&c);
            async move {
                c.fetch_add(1, Ordering::Relaxed);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, count)
}

fn config() -> WorkerConfig {
    WorkerConfig {
        backoff_initial: Duration::from_millis(100),
        backoff_max: Duration::from_secs(1),
        ..WorkerConfig::default()
    }
}

struct Setup {
    engine: Arc<Engine>,
    store: Arc<dyn EventStore>,
    bench: BenchShop,
    _dir: tempfile::TempDir,
}

async fn setup() -> anyhow::Result<Setup> {
    let dir = tempfile::tempdir_in(".")?;
    let store: Arc<dyn EventStore> = Arc::new(LogStore::open(dir.path())?);
    let engine = Arc::new(Engine::new(
        Arc::clone(&store),
        EngineOptions {
            sole_writer: true,
            ..EngineOptions::default()
        },
    ));
    let bench = shop::setup(&engine, ShopId(Uuid::now_v7()), 1_000, 1_000_000, 1_000).await;
    Ok(Setup {
        engine,
        store,
        bench,
        _dir: dir,
    })
}

async fn subscribe(s: &Setup, url: &str, triggers: Vec<Trigger>) {
    let cmd = Command::CreateWebhook(CreateWebhook {
        webhook_id: Uuid::now_v7(),
        name: "bench".into(),
        url: url.into(),
        triggers,
        secret: "whsec_bench_0123456789abcdef".into(),
    });
    s.engine
        .execute(s.bench.shop, &shop::meta(), &cmd)
        .await
        .expect("subscribing");
}

/// Places an order and, with `process`, moves it to processing.
async fn order(s: &Engine, bench: &BenchShop, client: u64, n: u64, process: bool) {
    let skus: Vec<_> = shop::three_spread(bench, client, n)
        .into_iter()
        .map(|i| &bench.skus[i])
        .collect();
    let id = OrderId(Uuid::now_v7());
    let customer = bench.customers[client as usize % bench.customers.len()];
    s.execute(bench.shop, &shop::meta(), &shop::order(id, customer, &skus))
        .await
        .expect("placing an order");
    if process {
        let t = Command::TransitionOrder {
            order_id: id,
            transition: Transition::Process,
        };
        s.execute(bench.shop, &shop::meta(), &t)
            .await
            .expect("processing an order");
    }
}

/// Orders per second for `seconds` with `clients` clients.
async fn load(s: &Setup, clients: usize, seconds: u64, process: bool) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients as u64 {
        let (engine, bench, stop, done) = (
            Arc::clone(&s.engine),
            s.bench.clone(),
            Arc::clone(&stop),
            Arc::clone(&done),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                order(&engine, &bench, c, n, process).await;
                done.fetch_add(1, Ordering::Relaxed);
                n += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

async fn deliveries(args: &Args, subscriptions: usize) -> anyhow::Result<f64> {
    let s = setup().await?;
    let (url, count) = receiver().await;
    for _ in 0..subscriptions {
        subscribe(&s, &url, vec![Trigger::OrderStatusProcessing]).await;
    }
    // Record the events (64 clients), then deliver them.
    let per_client = args.events.div_ceil(64);
    let mut tasks = Vec::new();
    for c in 0..64u64 {
        let (engine, bench) = (Arc::clone(&s.engine), s.bench.clone());
        tasks.push(tokio::spawn(async move {
            for n in 0..per_client as u64 {
                order(&engine, &bench, c, n, true).await;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let want = (per_client * 64 * subscriptions) as u64;
    let started = Instant::now();
    let worker = Worker::start(Arc::clone(&s.store), Arc::clone(&s.engine), config())?;
    while count.load(Ordering::Relaxed) < want {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "deliveries did not finish in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    worker.stop().await?;
    anyhow::ensure!(
        count.load(Ordering::Relaxed) == want,
        "a delivery was repeated"
    );
    Ok(want as f64 / secs)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    println!("load average at start: {}", kedai_benches::load_average());
    if args.only.as_deref() != Some("place_order") {
        for &subs in &args.subscriptions {
            let mut rates = Vec::new();
            for _ in 0..args.runs {
                rates.push(deliveries(&args, subs).await?);
            }
            println!(
                "deliveries: {} events x {subs} subscription(s): {} deliveries/s (median of {})",
                args.events,
                thousands(median(&mut rates)),
                args.runs
            );
        }
    }
    if args.only.as_deref() != Some("deliveries") {
        // Runs interleave the configurations, so that a slow stretch of
        // the machine (writeback, another process) is shared by all.
        let configs = [
            ("place order, no worker", false, None),
            (
                "place order, worker + 1 subscription (all triggers)",
                false,
                Some(Trigger::ALL.to_vec()),
            ),
            ("place + process, no worker", true, None),
            (
                "place + process, worker + 1 subscription (order_status_processing)",
                true,
                Some(vec![Trigger::OrderStatusProcessing]),
            ),
        ];
        let mut rates = vec![Vec::new(); configs.len()];
        let mut delivered = vec![Vec::new(); configs.len()];
        for _ in 0..args.runs {
            for (i, (_, process, trigger)) in configs.iter().enumerate() {
                let s = setup().await?;
                let (url, count) = receiver().await;
                let worker = match trigger {
                    Some(t) => {
                        subscribe(&s, &url, t.clone()).await;
                        Some(Worker::start(
                            Arc::clone(&s.store),
                            Arc::clone(&s.engine),
                            config(),
                        )?)
                    }
                    None => None,
                };
                rates[i].push(load(&s, args.clients, args.seconds, *process).await);
                delivered[i].push(count.load(Ordering::Relaxed) as f64 / args.seconds as f64);
                if let Some(w) = worker {
                    w.stop().await?;
                }
            }
        }
        for (i, (label, _, _)) in configs.iter().enumerate() {
            let runs: Vec<String> = rates[i].iter().map(|r| thousands(*r)).collect();
            println!(
                "{label}: {} orders/s (median of {}, {} clients; runs: {}); deliveries during the run: {}/s",
                thousands(median(&mut rates[i])),
                args.runs,
                args.clients,
                runs.join(", "),
                thousands(median(&mut delivered[i])),
            );
        }
    }
    println!("load average at end: {}", kedai_benches::load_average());
    Ok(())
}
