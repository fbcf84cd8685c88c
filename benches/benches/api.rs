//! Criterion benches of the HTTP API's CPU cost per request, in process
//! (tower's `oneshot`, no socket) on the memory store, so that what the
//! API adds to the engine shows apart from the network and the disk.
//!
//! Back of the envelope: the engine decides and appends a 3-line order in
//! ~15-25 µs; the API adds routing and tower layers (a few µs), the key's
//! SHA-256 and lookup (~1 µs), JSON decoding of a ~400-byte body and
//! encoding of a ~2.6 KB answer (the order's 4 events), perhaps 10-20 µs.
//! A read is a lock, a lookup and a few KB of JSON: ~5-15 µs.
//!
//! Everything runs on one thread (a current-thread runtime: the engine,
//! the projection runner and the API), and the time reported is that
//! thread's CPU time, not wall time, so the figures hold up while other
//! work shares the machine.
//!
//! On a current-thread runtime a spawned task runs only while `block_on`
//! waits, and a request on the memory store never waits: left alone, the
//! projection runner would never run. So each placed order is followed by
//! waiting for the projections to reach the store's head, inside the
//! measured time: an order's figure includes applying its events to the
//! projections, as `kedai serve` does for every order (on another task),
//! and `engine_place_order_3_lines` includes it too, so the difference
//! between the two is what HTTP adds.
//!
//! Reads run on their own shop, set up with [`READ_ORDERS`] orders and
//! nothing else, so what they read does not depend on how many orders the
//! order benches happened to place.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use kedai_api::serve::issue_key;
use kedai_api::state::AppState;
use kedai_benches::shop::{self, BenchShop};
use kedai_benches::thread_cpu_time;
use kedai_engine::command::{Engine, EngineOptions};
use kedai_engine::domain::ids::{OrderId, Sku};
use kedai_engine::store::memory::MemoryStore;
use kedai_engine::{EventStore, Role, ShopId};
use kedai_projections::Projections;
use kedai_projections::runner::{ProjectionHandle, Runner};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tower::ServiceExt;
use uuid::Uuid;

/// SKUs in the bench shop.
const SKUS: usize = 1_000;
/// Customers in the bench shop.
const CUSTOMERS: usize = 1_000;
/// Orders placed (through the engine) before the reads are measured.
const READ_ORDERS: u64 = 10_000;

struct Api {
    engine: Arc<Engine>,
    store: Arc<dyn EventStore>,
    projections: ProjectionHandle,
    router: Router,
    shop: BenchShop,
    key: String,
    /// One of the orders placed at setup.
    order: String,
    /// Orders placed so far (picks the next order's SKUs and customer).
    placed: u64,
    _stop: watch::Sender<bool>,
}

/// A shop on the memory store with its projection runner, a staff key and
/// `orders` orders already placed and projected.
async fn api(orders: u64) -> Api {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let engine = Arc::new(Engine::new(
        Arc::clone(&store),
        EngineOptions {
            sole_writer: true,
            ..EngineOptions::default()
        },
    ));
    let (runner, projections) = Runner::new(Arc::clone(&store), Projections::new(), None);
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(runner.run(stop_rx));
    let shop = shop::setup(
        &engine,
        ShopId(Uuid::now_v7()),
        SKUS,
        1_000_000_000,
        CUSTOMERS,
    )
    .await;
    let key = issue_key(&engine, shop.shop, Role::Staff).await.unwrap();
    let state = AppState::new(Arc::clone(&engine), projections.clone(), "bench-operator");
    let mut api = Api {
        engine,
        store,
        projections,
        router: kedai_api::router(state),
        shop,
        key,
        order: String::new(),
        placed: 0,
        _stop: stop,
    };
    for _ in 0..orders.max(1) {
        let id = api.place_with_engine().await;
        api.order = id.to_string();
    }
    api.settle().await;
    api
}

impl Api {
    /// The next order's customer and 3 SKUs, spread over the shop.
    fn next(&mut self) -> (usize, Vec<usize>) {
        self.placed += 1;
        let n = self.placed;
        (
            (n % CUSTOMERS as u64) as usize,
            shop::three_spread(&self.shop, 0, n),
        )
    }

    fn skus(&self, picked: &[usize]) -> Vec<&Sku> {
        picked.iter().map(|&i| &self.shop.skus[i]).collect()
    }

    async fn place_with_engine(&mut self) -> OrderId {
        let id = OrderId(Uuid::now_v7());
        let (customer, skus) = self.next();
        let command = shop::order(id, self.shop.customers[customer], &self.skus(&skus));
        self.engine
            .execute(self.shop.shop, &shop::meta(), &command)
            .await
            .unwrap();
        id
    }

    /// The same order as [`shop::order`] makes, as a request body.
    fn next_order_json(&mut self) -> String {
        let (customer, skus) = self.next();
        serde_json::json!({
            "channel": "STOREFRONT",
            "sender_id": self.shop.customers[customer],
            "cod": false,
            "lines": self.skus(&skus).iter().map(|s| serde_json::json!({"sku": s, "quantity": 1})).collect::<Vec<_>>(),
            "shipping": {"courier": "JNE", "service": "REG", "cost": 10_000},
        })
        .to_string()
    }

    /// The answer's status and size.
    async fn call(&self, method: Method, path: &str, body: Option<String>) -> (StatusCode, usize) {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {}", self.key));
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b)
            }
            None => Body::empty(),
        };
        let response = self
            .router
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, body.len())
    }

    /// Waits (yielding to the projection runner) until the projections
    /// reflect everything in the store.
    async fn settle(&self) {
        let head = self.store.last_position().await.unwrap();
        self.projections
            .watch()
            .wait_for(|p| *p >= head)
            .await
            .expect("the projection runner stopped");
    }
}

/// This thread's CPU time for `iters` calls of `f`.
fn cpu_time(iters: u64, mut f: impl FnMut()) -> Duration {
    let start = thread_cpu_time();
    for _ in 0..iters {
        f();
    }
    thread_cpu_time() - start
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn place_order(c: &mut Criterion) {
    let runtime = runtime();
    let mut api = runtime.block_on(api(1));
    let mut group = c.benchmark_group("api");
    group.bench_function("engine_place_order_3_lines", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                runtime.block_on(async {
                    api.place_with_engine().await;
                    api.settle().await;
                });
            })
        })
    });
    group.bench_function("http_place_order_3_lines", |b| {
        b.iter_custom(|iters| {
            cpu_time(iters, || {
                let body = api.next_order_json();
                runtime.block_on(async {
                    let (status, _) = api.call(Method::POST, "/v1/orders", Some(body)).await;
                    assert_eq!(status, StatusCode::CREATED);
                    api.settle().await;
                });
            })
        })
    });
    group.finish();
}

fn reads(c: &mut Criterion) {
    let runtime = runtime();
    let api = runtime.block_on(api(READ_ORDERS));
    let mut group = c.benchmark_group("api");
    let reads = [
        ("http_get_order", format!("/v1/orders/{}", api.order)),
        (
            "http_list_placed_20",
            "/v1/orders?status=placed&limit=20".into(),
        ),
        ("http_stock_sku", format!("/v1/stock/{}", api.shop.skus[0])),
        ("http_balance", "/v1/balance".into()),
        ("http_order_counts", "/v1/orders/counts".into()),
    ];
    for (name, path) in reads {
        let (status, bytes) = runtime.block_on(api.call(Method::GET, &path, None));
        assert_eq!(status, StatusCode::OK, "{path}");
        eprintln!("{name}: answers {bytes} bytes");
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                cpu_time(iters, || {
                    let (status, _) = runtime.block_on(api.call(Method::GET, &path, None));
                    assert_eq!(status, StatusCode::OK);
                })
            })
        });
    }
    group.finish();
    // Nothing was written while reading: the projections are where they
    // were set up, so every read saw the same state.
    let head = runtime.block_on(api.store.last_position()).unwrap();
    assert_eq!(api.projections.position(), head);
}

criterion_group! {
    name = benches;
    // In the config rather than on the groups, so that the command line
    // (`--measurement-time`, `--quick`) can still override it.
    config = Criterion::default().measurement_time(Duration::from_secs(5));
    targets = place_order, reads
}
criterion_main!(benches);
