//! Load scenario: the PostgreSQL store against the plain-table baseline,
//! in the same run, on a throwaway PostgreSQL server this bench starts
//! (PostgreSQL's default, durable settings: fsync and synchronous commit
//! on) and removes. Every run gets a fresh database.
//!
//! - `plain`: the baseline of `kedai_benches::plain_table` (one
//!   transaction per command, the version check by a unique constraint,
//!   one reservation per command), spread over the catalog and hot (every
//!   client on one SKU);
//! - `kedai`: one-line orders (one reservation each) placed through the
//!   command engine on `PgStore`, in the multi-node-safe mode `kedai serve
//!   --store postgres` uses, spread and hot; then the stock is read back
//!   and must show exactly the accepted orders' reservations, none beyond
//!   the stock;
//! - `two-nodes`: the same with two stores and two engines (two kedai
//!   nodes) on one database, clients split between them;
//! - `appends`: the raw durable append rate of `PgStore` (one event per
//!   append, each writer on its own stream).
//!
//! Back of the envelope: the baseline pays two round trips and one
//! commit (one WAL flush, shared by whatever commits at the same moment)
//! per command, and on a hot SKU all but one of the clients that read the
//! same version lose and retry. kedai decides in memory and writes many
//! commands per transaction (one flush for hundreds of orders), so the
//! bound moves to CPU: PostgreSQL inserting ~2 rows per order plus kedai's
//! decision and encoding, on 2 shared cores: 10,000-30,000 orders/s.
//!
//! `cargo run --release -p kedai-benches --bin pg_load -- --help`

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use kedai_benches::shop::{self, BenchShop, OrderLoad};
use kedai_benches::{
    append_load, load_average, median, parent_pid, plain_table, process_cpu_seconds, thousands,
    tree_cpu_seconds,
};
use kedai_engine::command::{Engine, EngineOptions};
use kedai_engine::store::postgres::throwaway::{ThrowawayPostgres, create_database};
use kedai_engine::store::postgres::{PgOptions, PgStats, PgStore};
use kedai_engine::{EventStore, ShopId};
use uuid::Uuid;

#[derive(Parser, Debug)]
#[command(about = "kedai on PostgreSQL against a plain event table, on a throwaway server")]
struct Args {
    /// Scenarios to run, comma separated: plain, kedai, two-nodes, appends.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "plain,kedai,two-nodes,appends"
    )]
    only: Vec<String>,
    /// Client counts for the spread scenarios and appends, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "1,8,64")]
    clients: Vec<usize>,
    /// Client counts for the hot-SKU scenarios, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "64")]
    hot_clients: Vec<usize>,
    /// SKUs in the catalog.
    #[arg(long, default_value_t = 1_000)]
    skus: usize,
    /// Seconds per run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Runs per configuration (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Run kedai's engines as if each were the database's only writer (no
    /// follower, no last-event checks): not how `kedai serve` runs on
    /// PostgreSQL; to see what sharing the store costs.
    #[arg(long)]
    sole_writer: bool,
    /// Every PgStore batch in two round trips (no one-statement path).
    #[arg(long)]
    no_fast_path: bool,
}

/// Units of every SKU: more than any run sells.
const STOCK: i64 = 1_000_000_000;
/// Customers of the kedai bench shop.
const CUSTOMERS: usize = 1_000;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Bench {
    args: Args,
    server: ThrowawayPostgres,
    /// The server's postmaster, whose process tree is PostgreSQL's CPU.
    postmaster: u32,
    databases: usize,
}

/// CPU seconds of this process and of the PostgreSQL server, so far.
#[derive(Clone, Copy)]
struct Cpu {
    own: f64,
    server: f64,
}

impl Cpu {
    fn now(bench: &Bench) -> Cpu {
        Cpu {
            own: process_cpu_seconds(std::process::id()).unwrap_or(0.0),
            server: tree_cpu_seconds(bench.postmaster),
        }
    }

    /// CPU microseconds per operation since `before`, as a note.
    fn per_op(self, before: Cpu, ops: u64) -> String {
        let per = |s: f64| s * 1e6 / ops.max(1) as f64;
        format!(
            "CPU/op {:.0} µs bench process + {:.0} µs PostgreSQL",
            per(self.own - before.own),
            per(self.server - before.server)
        )
    }
}

impl Bench {
    async fn fresh_database(&mut self) -> anyhow::Result<String> {
        self.databases += 1;
        Ok(create_database(&self.server.url(), &format!("pg_load_{}", self.databases)).await?)
    }

    fn duration(&self) -> Duration {
        Duration::from_secs(self.args.seconds)
    }

    fn pg_options(&self) -> PgOptions {
        PgOptions {
            fast_path: !self.args.no_fast_path,
            ..PgOptions::default()
        }
    }
}

/// A scenario's runs: rate, and a note per run.
struct Runs {
    rates: Vec<f64>,
    notes: Vec<String>,
}

impl Runs {
    fn new() -> Self {
        Runs {
            rates: Vec::new(),
            notes: Vec::new(),
        }
    }

    fn report(mut self, what: &str) -> f64 {
        let loads = self.notes.join("; ");
        let m = median(&mut self.rates);
        println!(
            "{what}: {} /s (median of {}; runs: {}) [{loads}]",
            thousands(m),
            self.rates.len(),
            self.rates
                .iter()
                .map(|r| thousands(*r))
                .collect::<Vec<_>>()
                .join(", ")
        );
        m
    }
}

async fn plain(bench: &mut Bench, clients: usize, hot: bool) -> anyhow::Result<f64> {
    let mut runs = Runs::new();
    for _ in 0..bench.args.runs {
        let url = bench.fresh_database().await?;
        plain_table::setup(&url, bench.args.skus, STOCK).await?;
        let before = load_average();
        let cpu = Cpu::now(bench);
        let load = if hot {
            plain_table::order_load(&url, clients, bench.duration(), |_, _| 0).await?
        } else {
            plain_table::order_load(
                &url,
                clients,
                bench.duration(),
                plain_table::spread(bench.args.skus),
            )
            .await?
        };
        let cpu = Cpu::now(bench).per_op(cpu, load.accepted);
        plain_table::check_not_oversold(&url, load.accepted).await?;
        runs.rates.push(load.per_sec);
        runs.notes.push(format!(
            "{} conflicts, {cpu}, load {before}",
            thousands(load.conflicts as f64)
        ));
    }
    Ok(runs.report(&format!(
        "plain table, {}, {clients} clients",
        if hot { "hot SKU" } else { "spread" }
    )))
}

/// Stores and engines of `nodes` kedai nodes on one database.
async fn nodes(
    url: &str,
    count: usize,
    sole_writer: bool,
    options: &PgOptions,
) -> anyhow::Result<(Vec<Arc<PgStore>>, Vec<Arc<Engine>>)> {
    let mut stores = Vec::with_capacity(count);
    let mut engines = Vec::with_capacity(count);
    for _ in 0..count {
        let store = Arc::new(PgStore::connect(url, options.clone()).await?);
        stores.push(Arc::clone(&store));
        engines.push(Arc::new(Engine::new(
            store as Arc<dyn EventStore>,
            EngineOptions {
                sole_writer,
                ..EngineOptions::default()
            },
        )));
    }
    Ok((stores, engines))
}

/// Reads the stock back through a new store and engine: every accepted
/// order reserved one unit, and no SKU is oversold.
async fn check_stock(
    url: &str,
    bench: &BenchShop,
    skus: usize,
    accepted: u64,
) -> anyhow::Result<()> {
    let engine = &nodes(url, 1, false, &PgOptions::default()).await?.1[0];
    let mut reserved = 0;
    for sku in &bench.skus[..skus] {
        for w in &bench.warehouses {
            let item = engine.stock_item(bench.shop, sku, *w).await?;
            anyhow::ensure!(
                item.reserved <= item.on_hand,
                "{sku} oversold in {w:?}: {item:?}"
            );
            reserved += item.reserved;
        }
    }
    anyhow::ensure!(
        reserved == accepted as i64,
        "{accepted} orders accepted, {reserved} units reserved"
    );
    Ok(())
}

async fn kedai(
    bench: &mut Bench,
    node_count: usize,
    clients: usize,
    hot: bool,
) -> anyhow::Result<f64> {
    let mut runs = Runs::new();
    for _ in 0..bench.args.runs {
        let url = bench.fresh_database().await?;
        let (stores, engines) = nodes(
            &url,
            node_count,
            bench.args.sole_writer,
            &bench.pg_options(),
        )
        .await?;
        let shop = shop::setup(
            &engines[0],
            ShopId(Uuid::now_v7()),
            bench.args.skus,
            STOCK,
            CUSTOMERS,
        )
        .await;
        let before = load_average();
        let pick = if hot { shop::hot_sku } else { shop::one_spread };
        let setup: Vec<PgStats> = stores.iter().map(|s| s.stats()).collect();
        let cpu = Cpu::now(bench);
        let load: OrderLoad =
            shop::order_load_on(engines, shop.clone(), clients, bench.duration(), pick).await;
        let cpu = Cpu::now(bench).per_op(cpu, load.accepted);
        let (mut batches, mut appends, mut fast) = (0, 0, 0);
        for (store, before) in stores.iter().zip(&setup) {
            let now = store.stats();
            batches += now.batches - before.batches;
            appends += now.appends - before.appends;
            fast += now.fast_batches - before.fast_batches;
        }
        check_stock(
            &url,
            &shop,
            if hot { 1 } else { shop.skus.len() },
            load.accepted,
        )
        .await?;
        runs.rates.push(load.per_sec);
        runs.notes.push(format!(
            "{:.1} orders/transaction, {:.0}% in one round trip, {} gave up, {cpu}, load {before}",
            appends as f64 / batches.max(1) as f64,
            fast as f64 * 100.0 / batches.max(1) as f64,
            thousands(load.gave_up as f64)
        ));
    }
    Ok(runs.report(&format!(
        "kedai on PostgreSQL, {} node{}, {}, {clients} clients",
        node_count,
        if node_count == 1 { "" } else { "s" },
        if hot { "hot SKU" } else { "spread" }
    )))
}

async fn appends(bench: &mut Bench, writers: usize) -> anyhow::Result<f64> {
    let mut runs = Runs::new();
    for _ in 0..bench.args.runs {
        let url = bench.fresh_database().await?;
        let store = Arc::new(PgStore::connect(&url, bench.pg_options()).await?);
        let before = load_average();
        let cpu = Cpu::now(bench);
        let rate = append_load(store.clone(), writers, 1, bench.duration()).await;
        let stats = store.stats();
        let cpu = Cpu::now(bench).per_op(cpu, stats.events);
        runs.rates.push(rate);
        runs.notes.push(format!(
            "{:.1} events/transaction, {cpu}, load {before}",
            stats.events as f64 / stats.batches.max(1) as f64
        ));
    }
    Ok(runs.report(&format!(
        "PgStore durable appends (1 event each), {writers} writers"
    )))
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = ThrowawayPostgres::start()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let mut bench = Bench {
        args,
        server,
        postmaster: 0,
        databases: 0,
    };
    runtime.block_on(async {
        let client = plain_table::connect(&bench.server.url()).await?;
        let backend: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await?
            .get(0);
        bench.postmaster = parent_pid(backend as u32).unwrap_or(0);
        let version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
        let mut settings = Vec::new();
        for name in [
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "shared_buffers",
        ] {
            let value: String = client.query_one(&format!("SHOW {name}"), &[]).await?.get(0);
            settings.push(format!("{name}={value}"));
        }
        println!(
            "PostgreSQL {version} ({}), {} s per run, median of {}; load average at start: {}",
            settings.join(", "),
            bench.args.seconds,
            bench.args.runs,
            load_average()
        );
        let only = bench.args.only.clone();
        let wants = |s: &str| only.iter().any(|o| o == s);
        let clients = bench.args.clients.clone();
        let hot_clients = bench.args.hot_clients.clone();
        let mut baseline = std::collections::HashMap::new();
        if wants("plain") {
            for &c in &clients {
                baseline.insert((c, false), plain(&mut bench, c, false).await?);
            }
            for &c in &hot_clients {
                baseline.insert((c, true), plain(&mut bench, c, true).await?);
            }
        }
        let ratio = |rate: f64, key: (usize, bool)| match baseline.get(&key) {
            Some(b) if *b > 0.0 => format!("{:.1}x the plain table", rate / b),
            _ => "no baseline in this run".into(),
        };
        if wants("kedai") {
            for &c in &clients {
                let rate = kedai(&mut bench, 1, c, false).await?;
                println!("  = {}", ratio(rate, (c, false)));
            }
            for &c in &hot_clients {
                let rate = kedai(&mut bench, 1, c, true).await?;
                println!("  = {}", ratio(rate, (c, true)));
            }
        }
        if wants("two-nodes") {
            let c = clients.iter().copied().max().unwrap_or(64);
            let rate = kedai(&mut bench, 2, c, false).await?;
            println!("  = {}", ratio(rate, (c, false)));
            for &c in &hot_clients {
                let rate = kedai(&mut bench, 2, c, true).await?;
                println!("  = {}", ratio(rate, (c, true)));
            }
        }
        if wants("appends") {
            for &c in &clients {
                appends(&mut bench, c).await?;
            }
        }
        println!("load average at the end: {}", load_average());
        anyhow::Ok(())
    })
}
