//! The API in process (tower's `oneshot`, no socket) on a memory store,
//! with the projection runner following it, and small helpers to call it;
//! a manual clock for the workers, and bounded waits on the projections.

#![allow(dead_code)]

pub mod binary;
pub mod receiver;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kedai_api::state::AppState;
use kedai_engine::clock::{Clock, ManualClock, SystemClock};
use kedai_engine::command::{Engine, EngineOptions};
use kedai_engine::store::memory::MemoryStore;
use kedai_engine::{EventStore, Timestamp};
use kedai_projections::Projections;
use kedai_projections::runner::{ProjectionHandle, Runner};
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

pub const OPERATOR: &str = "test-operator-token";

/// A moment for manual clocks: 2025-12-06 05:46:40 UTC.
pub const T0: Timestamp = Timestamp(1_765_000_000_000_000);

/// `t` plus `minutes`.
pub fn minutes(t: Timestamp, minutes: i64) -> Timestamp {
    Timestamp(t.0 + minutes * 60_000_000)
}

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub store: Arc<dyn EventStore>,
    _stop: Option<watch::Sender<bool>>,
}

pub async fn app() -> TestApp {
    app_on(Arc::new(SystemClock)).await
}

/// The app with commands decided at `clock`'s time.
pub async fn app_on(clock: Arc<dyn Clock>) -> TestApp {
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let engine = Arc::new(Engine::new(
        Arc::clone(&store),
        EngineOptions {
            sole_writer: true,
            ..EngineOptions::default()
        },
    ));
    let (runner, handle) = Runner::new(Arc::clone(&store), Projections::new(), None);
    let (stop, stop_rx) = watch::channel(false);
    tokio::spawn(runner.run(stop_rx));
    let state = AppState::with_clock(engine, handle, OPERATOR, clock);
    TestApp {
        router: kedai_api::router(state.clone()),
        state,
        store,
        _stop: Some(stop),
    }
}

/// A data directory for `kedai_api::serve::start`, whose operator token
/// is [`OPERATOR`].
pub fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("operator-token"), OPERATOR).unwrap();
    dir
}

/// The embedded log without preallocated segments (quick to open).
pub fn quick_log() -> kedai_api::serve::StoreChoice {
    kedai_api::serve::StoreChoice::LogWith(kedai_engine::store::log::LogOptions {
        preallocate: false,
        ..Default::default()
    })
}

/// A manual clock at [`T0`].
pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(T0))
}

/// Waits (at most 20 s of real time) until `cond` holds for the
/// projections; panics naming `what` if it does not.
pub async fn until(
    projections: &ProjectionHandle,
    what: &str,
    mut cond: impl FnMut(&Projections) -> bool,
) {
    let mut moved = projections.watch();
    let waited = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            moved.borrow_and_update();
            if projections.read(&mut cond) {
                return;
            }
            if moved.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(
        waited.is_ok() && projections.read(&mut cond),
        "timed out waiting for {what}"
    );
}

/// Like [`until`], but whenever nothing happens and something sleeps on
/// `clock`, moves the clock to the earliest such deadline: retries and
/// backoff run in no real time.
pub async fn drive(
    clock: &ManualClock,
    projections: &ProjectionHandle,
    what: &str,
    mut cond: impl FnMut(&Projections) -> bool,
) {
    let mut moved = projections.watch();
    let mut ticks = clock.changes();
    let bound = tokio::time::Instant::now() + Duration::from_secs(20);
    for _ in 0..10_000 {
        moved.borrow_and_update();
        ticks.borrow_and_update();
        if projections.read(&mut cond) {
            return;
        }
        if let Some(t) = clock.next_sleeper()
            && t > clock.now()
        {
            clock.set(t);
            continue;
        }
        tokio::select! {
            _ = moved.changed() => {}
            _ = ticks.changed() => {}
            () = tokio::time::sleep_until(bound) => panic!("timed out waiting for {what}"),
        }
    }
    panic!("gave up driving the clock for {what}");
}

/// An answer: status, JSON body (Null if none), headers.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
    pub headers: HeaderMap,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// The API of a state whose runner is kept elsewhere (a `Running`).
    pub fn on(state: AppState) -> TestApp {
        TestApp {
            router: kedai_api::router(state.clone()),
            store: Arc::clone(&state.store),
            state,
            _stop: None,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            body,
            headers,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        self.call_with(method, path, key, body, &[]).await
    }

    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = match body {
            Some(b) => req
                .header("content-type", "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        self.send(req).await
    }

    pub async fn get(&self, path: &str, key: &str) -> Answer {
        self.call(Method::GET, path, Some(key), None).await
    }

    pub async fn post(&self, path: &str, key: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(key), Some(body)).await
    }

    pub async fn put(&self, path: &str, key: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(key), Some(body)).await
    }

    /// A new shop; returns (shop id, owner key).
    pub async fn shop(&self, name: &str) -> (String, String) {
        let a = self
            .call(
                Method::POST,
                "/v1/shops",
                Some(OPERATOR),
                Some(json!({"name": name, "currency": "IDR"})),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        (
            a.body["shop_id"].as_str().unwrap().to_owned(),
            a.body["owner_key"].as_str().unwrap().to_owned(),
        )
    }

    /// A shop with a warehouse, a product (KAOS-M at 50,000, KAOS-L), 10
    /// units of KAOS-M in stock and a customer. Returns (owner key,
    /// warehouse id, customer id, product id).
    pub async fn stocked_shop(&self, name: &str) -> (String, String, String, String) {
        let (_, key) = self.shop(name).await;
        let w = self
            .post("/v1/warehouses", &key, json!({"name": "Gudang Malang"}))
            .await;
        assert_eq!(w.status, StatusCode::CREATED, "{:?}", w.body);
        let warehouse = w.body["id"].as_str().unwrap().to_owned();
        let variation = |sku: &str| {
            json!({"sku": sku, "options": {"size": sku.rsplit('-').next().unwrap()}, "weight_grams": 200,
                   "prices": {"price": 50_000, "price_reseller": 40_000, "price_dropship": 45_000},
                   "cost": 30_000, "wholesale": [], "in_stock": true})
        };
        let p = self.post("/v1/products", &key, json!({"name": "Kaos Polos", "kind": "S", "variations": [variation("KAOS-M"), variation("KAOS-L")]})).await;
        assert_eq!(p.status, StatusCode::CREATED, "{:?}", p.body);
        let product = p.body["id"].as_str().unwrap().to_owned();
        let r = self.post("/v1/stock/moves", &key, json!({"type": "receive", "sku": "KAOS-M", "warehouse_id": warehouse, "quantity": 10})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
        let c = self.post("/v1/customers", &key, json!({"name": "Budi", "phone": "0812-3456-7890", "city": "Kota Malang", "category": "N"})).await;
        assert_eq!(c.status, StatusCode::CREATED, "{:?}", c.body);
        let customer = c.body["id"].as_str().unwrap().to_owned();
        (key, warehouse, customer, product)
    }

    pub fn order(customer: &str, sku: &str, quantity: i64) -> Value {
        json!({"channel": "WHATSAPP", "sender_id": customer, "lines": [{"sku": sku, "quantity": quantity}],
               "shipping": {"courier": "JNE", "service": "REG", "cost": 10_000}})
    }

    /// Waits until the projections reflect everything recorded.
    pub async fn settle(&self) {
        let head = self.head().await;
        self.state
            .projections
            .wait_for(head, std::time::Duration::from_secs(10))
            .await
            .unwrap();
    }

    pub async fn head(&self) -> u64 {
        self.store.last_position().await.unwrap()
    }
}
