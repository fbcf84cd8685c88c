//! Webhooks end to end with the real `kedai` binary: a receiver on
//! loopback, `kill -9` of kedai in the middle of the deliveries, a
//! restart, and every matching event delivered at least once, each event
//! always under the same delivery id, each order's events first seen in
//! order, every signature valid.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::receiver::{Receiver, eventually};
use kedai_api::webhooks::sign;
use serde_json::{Value, json};

const OPERATOR: &str = "e2e-hooks-operator";
const SECRET: &str = "whsec_e2e_0123456789abcdef";

type Server = common::binary::Kedai;

impl Server {
    fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// With short webhook timeouts and backoff, and `extra` arguments.
    fn start_with(data: &Path, extra: &[&str]) -> Server {
        Server::spawn(
            "hooks",
            OPERATOR,
            data,
            extra,
            &[
                ("KEDAI_WEBHOOK_CONNECT_TIMEOUT", "500ms"),
                ("KEDAI_WEBHOOK_TIMEOUT", "2s"),
                ("KEDAI_WEBHOOK_BACKOFF", "50ms"),
                ("KEDAI_WEBHOOK_BACKOFF_MAX", "200ms"),
            ],
        )
    }
}

async fn post(http: &reqwest::Client, base: &str, key: &str, path: &str, body: Value) -> Value {
    let res = http
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let value: Value = res.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "POST {path}: {status} {value}");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_then_restart_delivers_every_event_at_least_once() {
    let data = tempfile::tempdir().unwrap();
    // A receiver that takes a while, so that deliveries are in flight when
    // kedai dies.
    let receiver = Receiver::start(Arc::new(|_, _| (200, Duration::from_millis(25)))).await;
    let server = Server::start(data.path());
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/shops", server.base))
        .bearer_auth(OPERATOR)
        .json(&json!({"name": "Toko Hook E2E", "currency": "MYR"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["owner_key"].as_str().unwrap().to_owned();
    let base = server.base.clone();
    let warehouse = post(
        &http,
        &base,
        &key,
        "/v1/warehouses",
        json!({"name": "Gudang KL"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    post(
        &http,
        &base,
        &key,
        "/v1/products",
        json!({"name": "Tudung", "kind": "S", "variations": [
        {"sku": "TUDUNG-H", "options": {"warna": "hitam"}, "weight_grams": 200,
         "prices": {"price": 2_500, "price_reseller": 2_000, "price_dropship": 2_200},
         "cost": 1_200, "wholesale": [], "in_stock": true}]}),
    )
    .await;
    post(
        &http,
        &base,
        &key,
        "/v1/stock/moves",
        json!({"type": "receive", "sku": "TUDUNG-H", "warehouse_id": warehouse, "quantity": 100}),
    )
    .await;
    let customer = post(
        &http,
        &base,
        &key,
        "/v1/customers",
        json!({"name": "Nur Aishah", "phone": "60123456789", "city": "Cyberjaya", "category": "N"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let hook = post(
        &http,
        &base,
        &key,
        "/v1/webhooks",
        json!({"name": "Sheet", "url": receiver.url, "secret": SECRET,
        "triggers": ["order_status_processing", "order_packed", "order_ready_for_pickup"]}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let triggers = [
        "order_status_processing",
        "order_packed",
        "order_ready_for_pickup",
    ];
    let mut expected = BTreeSet::new();
    for _ in 0..20 {
        let order = post(&http, &base, &key, "/v1/orders", json!({"channel": "STOREFRONT", "sender_id": customer,
            "lines": [{"sku": "TUDUNG-H", "quantity": 1}], "shipping": {"courier": "POS", "service": "REG", "cost": 800}})).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for action in ["process", "pack", "ready"] {
            post(
                &http,
                &base,
                &key,
                &format!("/v1/orders/{order}/{action}"),
                json!({}),
            )
            .await;
        }
        for t in triggers {
            expected.insert((order.clone(), t.to_owned()));
        }
    }
    // Every command above was acknowledged, so durable. Kill kedai while
    // it is delivering.
    receiver.wait_for(8, Duration::from_secs(60)).await;
    let before_kill = receiver.count();
    server.kill_9();
    assert!(
        before_kill < expected.len(),
        "killed mid-delivery ({before_kill} of {})",
        expected.len()
    );
    let server = Server::start(data.path());
    let seen = |r: &Receiver| -> BTreeSet<(String, String)> {
        r.received()
            .iter()
            .map(|g| {
                let b = g.json();
                (
                    b["order"]["id"].as_str().unwrap().to_owned(),
                    b["trigger"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    eventually(
        Duration::from_secs(60),
        "every matching event delivered",
        || seen(&receiver).is_superset(&expected),
    )
    .await;
    let got = receiver.received();
    assert_eq!(seen(&receiver), expected, "nothing else was sent");
    let mut ids: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut first_seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let now = kedai_engine::Timestamp::now().micros() / 1_000_000;
    for g in &got {
        sign::verify(
            SECRET,
            &g.header("kedai-timestamp"),
            &g.body,
            &g.header("kedai-signature"),
            now,
            600,
        )
        .expect("every delivery is signed with the secret");
        let b = g.json();
        assert_eq!(b["checkout"]["currency"], "MYR");
        ids.entry(g.header("kedai-event-id"))
            .or_default()
            .insert(g.header("kedai-delivery-id"));
        let order = b["order"]["id"].as_str().unwrap().to_owned();
        let trigger = b["trigger"].as_str().unwrap().to_owned();
        let list = first_seen.entry(order).or_default();
        if !list.contains(&trigger) {
            list.push(trigger);
        }
    }
    assert_eq!(ids.len(), expected.len());
    for (event, deliveries) in &ids {
        assert_eq!(
            deliveries.len(),
            1,
            "event {event} always has the same delivery id"
        );
    }
    for (order, list) in &first_seen {
        assert_eq!(
            list, &triggers,
            "order {order}'s events first arrive in order"
        );
    }
    eprintln!(
        "{} deliveries for {} events ({} before kill -9)",
        got.len(),
        expected.len(),
        before_kill
    );
    // The log of outcomes comes to show every event delivered (an outcome
    // lost to the kill is recorded when the delivery is made again).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let log: Value = http
            .get(format!(
                "{}/v1/webhooks/{hook}/deliveries?limit=500",
                server.base
            ))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let delivered: BTreeSet<String> = log["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["outcome"] == "delivered")
            .map(|d| d["event_id"].as_str().unwrap().to_owned())
            .collect();
        assert!(
            delivered.iter().all(|e| ids.contains_key(e)),
            "outcomes only of events sent: {log}"
        );
        if delivered.len() == expected.len() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {} events shown delivered: {log}",
            delivered.len(),
            expected.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(server);
}

/// On PostgreSQL too: the worker runs under `kedai serve --store
/// postgres`, delivers, and stops cleanly on SIGTERM (exit 0); what
/// happens after the stop is delivered by the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_on_postgres_and_stops_gracefully() {
    let db = kedai_engine::store::postgres::throwaway::test_database()
        .await
        .expect("a test database");
    let data = tempfile::tempdir().unwrap();
    let receiver = Receiver::healthy().await;
    let args = ["--store", "postgres", "--database-url", db.url.as_str()];
    let server = Server::start_with(data.path(), &args);
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/shops", server.base))
        .bearer_auth(OPERATOR)
        .json(&json!({"name": "Toko PG", "currency": "IDR"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = created["owner_key"].as_str().unwrap().to_owned();
    let base = server.base.clone();
    // (Once, under a loaded full test run, the new key was refused with 401
    // right after POST /v1/shops on PostgreSQL: wait until it works.)
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !http
        .get(format!("{base}/v1/shop"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .status()
        .is_success()
    {
        assert!(std::time::Instant::now() < deadline, "the owner key works");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    post(
        &http,
        &base,
        &key,
        "/v1/warehouses",
        json!({"name": "Gudang"}),
    )
    .await;
    post(
        &http,
        &base,
        &key,
        "/v1/products",
        json!({"name": "Kopi", "kind": "R", "variations": [
        {"sku": "KOPI-1", "options": {}, "weight_grams": 250,
         "prices": {"price": 40_000, "price_reseller": 35_000, "price_dropship": 38_000},
         "cost": 20_000, "wholesale": [], "in_stock": true}]}),
    )
    .await;
    let customer = post(
        &http,
        &base,
        &key,
        "/v1/customers",
        json!({"name": "Andi", "phone": "081234567890", "city": "Bandung", "category": "N"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    post(&http, &base, &key, "/v1/webhooks", json!({"name": "Sheet", "url": receiver.url, "secret": SECRET, "triggers": ["order_packed"]})).await;
    let order = |http: reqwest::Client, base: String| {
        let (key, customer) = (key.clone(), customer.clone());
        async move {
            let id = post(&http, &base, &key, "/v1/orders", json!({"channel": "WHATSAPP", "sender_id": customer,
                "lines": [{"sku": "KOPI-1", "quantity": 1}], "shipping": {"courier": "JNE", "service": "REG", "cost": 9_000}})).await["id"]
                .as_str()
                .unwrap()
                .to_owned();
            post(
                &http,
                &base,
                &key,
                &format!("/v1/orders/{id}/pack"),
                json!({}),
            )
            .await;
            id
        }
    };
    let first = order(http.clone(), base.clone()).await;
    let got = receiver.wait_for(1, Duration::from_secs(60)).await;
    assert_eq!(got[0].json()["order"]["id"], first);
    let now = kedai_engine::Timestamp::now().micros() / 1_000_000;
    sign::verify(
        SECRET,
        &got[0].header("kedai-timestamp"),
        &got[0].body,
        &got[0].header("kedai-signature"),
        now,
        600,
    )
    .unwrap();
    // Wait for its outcome, then stop gracefully.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value = http
            .get(format!("{base}/v1/webhooks"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if v["webhooks"][0]["delivered"] == 1 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the delivery is recorded: {v}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(server.terminate().success(), "kedai exits 0 after SIGTERM");
    assert!(
        data.path().join("webhooks.checkpoint").exists(),
        "the checkpoint is written on the way out"
    );
    // An order packed by another node while this one is down (here: with
    // no worker) is delivered when it comes back; the first is not resent.
    let quiet = Server::start_with(data.path(), &[&args[..], &["--no-webhooks"]].concat());
    let second = order(http.clone(), quiet.base.clone()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 1, "--no-webhooks delivers nothing");
    assert!(quiet.terminate().success());
    let server = Server::start_with(data.path(), &args);
    let got = receiver.wait_for(2, Duration::from_secs(60)).await;
    assert_eq!(got[1].json()["order"]["id"], second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 2);
    assert!(server.terminate().success());
}
