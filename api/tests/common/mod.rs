//! The API in process (tower's `oneshot`, no socket) on a memory store,
//! with the projection runner following it, and small helpers to call it.

#![allow(dead_code)]

pub mod receiver;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use kedai_api::state::AppState;
use kedai_engine::EventStore;
use kedai_engine::command::{Engine, EngineOptions};
use kedai_engine::store::memory::MemoryStore;
use kedai_projections::Projections;
use kedai_projections::runner::Runner;
use serde_json::{Value, json};
use tokio::sync::watch;
use tower::ServiceExt;

pub const OPERATOR: &str = "test-operator-token";

pub struct TestApp {
    pub router: Router,
    pub state: AppState,
    pub store: Arc<dyn EventStore>,
    _stop: watch::Sender<bool>,
}

pub async fn app() -> TestApp {
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
    let state = AppState::new(engine, handle, OPERATOR);
    TestApp {
        router: kedai_api::router(state.clone()),
        state,
        store,
        _stop: stop,
    }
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
