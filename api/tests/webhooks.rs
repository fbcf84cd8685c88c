//! Webhooks in process (memory store, the real worker) against real HTTP
//! receivers on loopback: signatures, ordering, retries with backoff after
//! 500s and timeouts, disabling after the retry bound, pause and resume,
//! a bounded queue that overflows and catches up from the log, a restart
//! that delivers what was missed, and bad input refused with nothing
//! recorded.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use common::receiver::{Receiver, eventually};
use common::{TestApp, app};
use kedai_api::webhooks::{Worker, WorkerConfig, sign};
use kedai_engine::domain::webhook::delivery_id;
use serde_json::{Value, json};

const SECRET: &str = "whsec_test_0123456789abcdef";
const WAIT: Duration = Duration::from_secs(20);

fn fast() -> WorkerConfig {
    WorkerConfig {
        connect_timeout: Duration::from_millis(500),
        request_timeout: Duration::from_millis(500),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        retry_for: Duration::from_secs(60),
        queue_per_subscription: 1_024,
        checkpoint_every: Duration::from_millis(50),
        checkpoint_path: None,
    }
}

fn start(t: &TestApp, config: WorkerConfig) -> Worker {
    Worker::start(Arc::clone(&t.store), Arc::clone(&t.state.engine), config).unwrap()
}

async fn subscribe(t: &TestApp, key: &str, url: &str, triggers: &[&str]) -> String {
    let a = t
        .post(
            "/v1/webhooks",
            key,
            json!({"name": "Telegram", "url": url, "triggers": triggers, "secret": SECRET}),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["secret"], SECRET);
    a.body["id"].as_str().unwrap().to_owned()
}

/// Places an order of one KAOS-M (60,000 with shipping) and returns its id.
async fn place(t: &TestApp, key: &str, customer: &str) -> String {
    let a = t
        .post("/v1/orders", key, TestApp::order(customer, "KAOS-M", 1))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    a.body["id"].as_str().unwrap().to_owned()
}

async fn act(t: &TestApp, key: &str, order: &str, action: &str, body: Value) -> u64 {
    let a = t
        .post(&format!("/v1/orders/{order}/{action}"), key, body)
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{action}: {}", a.body);
    a.body["position"].as_u64().unwrap()
}

/// Waits until the shop's subscriptions have `n` acknowledged deliveries
/// recorded.
async fn delivered(t: &TestApp, n: u64) {
    eventually(WAIT, "deliveries recorded", || {
        t.state.read(|p| {
            p.shops
                .values()
                .map(|v| {
                    v.webhooks
                        .subscriptions
                        .values()
                        .map(|s| s.delivered)
                        .sum::<u64>()
                })
                .sum::<u64>()
                >= n
        })
    })
    .await;
}

fn now_secs() -> i64 {
    kedai_engine::Timestamp::now().micros() / 1_000_000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_stable_ordered_per_order_and_logged() {
    let t = app().await;
    let (key, _, customer, _) = t.stocked_shop("Toko Hook").await;
    let receiver = Receiver::healthy().await;
    let worker = start(&t, fast());
    let hook = subscribe(
        &t,
        &key,
        &receiver.url,
        &[
            "order_paid",
            "order_status_processing",
            "order_packed",
            "order_shipped",
        ],
    )
    .await;
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(place(&t, &key, &customer).await);
    }
    // Interleaved across orders: each order's own events stay in order.
    // A partial payment is not "paid" (it is order_updated, not listened
    // to here).
    act(
        &t,
        &key,
        &orders[1],
        "payments",
        json!({"amount": 10_000, "method": "bank_transfer"}),
    )
    .await;
    for (i, o) in orders.iter().enumerate() {
        let rest = if i == 1 { 50_000 } else { 60_000 };
        act(
            &t,
            &key,
            o,
            "payments",
            json!({"amount": rest, "method": "bank_transfer"}),
        )
        .await;
        act(&t, &key, o, "process", json!({})).await;
    }
    for o in &orders {
        act(&t, &key, o, "pack", json!({})).await;
        act(&t, &key, o, "ship", json!({"awb": format!("JNE-{o}")})).await;
    }
    let got = receiver.wait_for(12, WAIT).await;
    let mut per_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    for g in &got {
        let body = g.json();
        sign::verify(
            SECRET,
            &g.header("kedai-timestamp"),
            &g.body,
            &g.header("kedai-signature"),
            now_secs(),
            300,
        )
        .expect("the signature verifies with the subscription's secret");
        assert_eq!(g.header("content-type"), "application/json");
        assert_eq!(g.header("kedai-trigger"), body["trigger"].as_str().unwrap());
        assert_eq!(
            g.header("kedai-event-id"),
            body["event"]["id"].as_str().unwrap()
        );
        assert_eq!(g.header("kedai-attempt"), "1");
        let event_id: uuid::Uuid = g.header("kedai-event-id").parse().unwrap();
        let expected = delivery_id(hook.parse().unwrap(), event_id);
        assert_eq!(g.header("kedai-delivery-id"), expected.to_string());
        assert_eq!(body["id"], expected.to_string());
        assert!(ids.insert(expected), "one delivery per event");
        // The Shoppegram-shaped object.
        let c = &body["checkout"];
        assert_eq!(c["currency"], "IDR");
        assert_eq!(c["total"], 60_000);
        assert_eq!(c["shipping"], 10_000);
        assert_eq!(c["rate"], "JNE REG");
        assert_eq!(c["items"][0]["product"]["sku"], "KAOS-M");
        assert_eq!(c["items"][0]["quantity"], 1);
        assert_eq!(c["items"][0]["subtotal"], 50_000);
        assert_eq!(c["customer"]["first_name"], "Budi");
        let order = body["order"]["id"].as_str().unwrap().to_owned();
        if body["trigger"] == "order_shipped" {
            assert_eq!(body["order"]["awb"], format!("JNE-{order}"));
            assert_eq!(body["order"]["status"], "shipped");
        }
        per_order
            .entry(order)
            .or_default()
            .push(body["trigger"].as_str().unwrap().to_owned());
    }
    for o in &orders {
        assert_eq!(
            per_order[o],
            [
                "order_paid",
                "order_status_processing",
                "order_packed",
                "order_shipped"
            ],
            "order {o}'s events arrive in order"
        );
    }
    // The delivery log and the counts.
    eventually(WAIT, "12 outcomes recorded", || {
        t.state.read(|p| {
            p.shop(p.keys.values().next().unwrap().shop).map(|v| {
                v.webhooks
                    .subscriptions
                    .values()
                    .map(|s| s.delivered)
                    .sum::<u64>()
            }) == Some(12)
        })
    })
    .await;
    t.settle().await;
    let log = t
        .get(&format!("/v1/webhooks/{hook}/deliveries?limit=5"), &key)
        .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    assert_eq!(log.body["total"], 12);
    assert_eq!(log.body["deliveries"].as_array().unwrap().len(), 5);
    assert_eq!(log.body["deliveries"][0]["outcome"], "delivered");
    assert_eq!(log.body["deliveries"][0]["status_code"], 200);
    let next = log.body["next"].as_u64().unwrap();
    let rest = t
        .get(
            &format!("/v1/webhooks/{hook}/deliveries?after={next}&limit=50"),
            &key,
        )
        .await;
    assert_eq!(rest.body["deliveries"].as_array().unwrap().len(), 7);
    let one = t.get(&format!("/v1/webhooks/{hook}"), &key).await;
    assert_eq!(one.body["delivered"], 12);
    assert_eq!(one.body["status"], "active");
    assert!(
        one.body.get("secret").is_none(),
        "no secret outside create and rotate"
    );
    let list = t.get("/v1/webhooks", &key).await;
    assert_eq!(list.body["webhooks"].as_array().unwrap().len(), 1);
    assert!(!list.body.to_string().contains(SECRET));
    // Nor in the event feed.
    let feed = t.get("/v1/events?limit=500", &key).await;
    assert!(feed.body.to_string().contains("WebhookSubscribed"));
    assert!(
        !feed.body.to_string().contains(SECRET),
        "the feed redacts secrets"
    );
    // Nothing was delivered twice.
    assert_eq!(receiver.count(), 12);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_backoff_after_500s_and_timeouts() {
    let t = app().await;
    let (key, _, customer, _) = t.stocked_shop("Toko Retry").await;
    // 500, 500, too slow (past the 500 ms request timeout), then 200.
    let receiver = Receiver::start(Arc::new(|n, _| match n {
        0 | 1 => (500, Duration::ZERO),
        2 => (200, Duration::from_millis(1_500)),
        _ => (200, Duration::ZERO),
    }))
    .await;
    let config = fast();
    let worker = start(&t, config.clone());
    let hook = subscribe(&t, &key, &receiver.url, &["order_packed"]).await;
    let order = place(&t, &key, &customer).await;
    act(&t, &key, &order, "pack", json!({})).await;
    let got = receiver.wait_for(4, WAIT).await;
    let delivery = got[0].header("kedai-delivery-id");
    for (i, g) in got.iter().enumerate() {
        assert_eq!(
            g.header("kedai-delivery-id"),
            delivery,
            "every attempt has the same id"
        );
        assert_eq!(g.header("kedai-attempt"), (i + 1).to_string());
        assert_eq!(g.body, got[0].body, "the same body every attempt");
    }
    // Each retry waited at least its backoff (measured at the receiver;
    // after the timeout, from when the attempt gave up).
    let d: uuid::Uuid = delivery.parse().unwrap();
    assert!(got[1].at - got[0].at >= config.backoff(1, d));
    assert!(got[2].at - got[1].at >= config.backoff(2, d));
    // (The timeout runs from the request's start, a moment before the
    // receiver sees it.)
    let slack = Duration::from_millis(50);
    assert!(got[3].at - got[2].at >= config.request_timeout + config.backoff(3, d) - slack);
    assert!(
        config.backoff(2, d) > config.backoff_initial / 2,
        "it grows"
    );
    eventually(WAIT, "the log has 4 outcomes", || {
        t.state.read(|p| {
            p.shops.values().any(|v| {
                v.webhooks
                    .subscriptions
                    .values()
                    .any(|s| s.delivered == 1 && s.failed_attempts == 3)
            })
        })
    })
    .await;
    let log = t
        .get(&format!("/v1/webhooks/{hook}/deliveries"), &key)
        .await;
    let outcomes: Vec<(String, Value, Value)> = log.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["outcome"].as_str().unwrap().to_owned(),
                d["status_code"].clone(),
                d["error"].clone(),
            )
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            (
                "failed".to_owned(),
                json!(500),
                json!("HTTP 500 Internal Server Error")
            ),
            (
                "failed".to_owned(),
                json!(500),
                json!("HTTP 500 Internal Server Error")
            ),
            ("failed".to_owned(), Value::Null, json!("timed out")),
            ("delivered".to_owned(), json!(200), Value::Null),
        ]
    );
    assert!(log.body["deliveries"][0]["next_attempt_at"].is_string());
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 4, "nothing more once acknowledged");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_receiver_is_disabled_after_the_bound_and_never_slows_the_others() {
    let t = app().await;
    let (key, _, customer, _) = t.stocked_shop("Toko Dead").await;
    let dead = Receiver::start(Arc::new(|_, _| (503, Duration::ZERO))).await;
    let slow = Receiver::start(Arc::new(|_, _| (200, Duration::from_secs(30)))).await;
    let healthy = Receiver::healthy().await;
    let config = WorkerConfig {
        retry_for: Duration::from_millis(400),
        request_timeout: Duration::from_secs(60),
        ..fast()
    };
    let worker = start(&t, config);
    let dead_hook = subscribe(&t, &key, &dead.url, &["order_status_processing"]).await;
    subscribe(&t, &key, &slow.url, &["order_status_processing"]).await;
    subscribe(&t, &key, &healthy.url, &["order_status_processing"]).await;
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let o = place(&t, &key, &customer).await;
        let before = Instant::now();
        act(&t, &key, &o, "process", json!({})).await;
        slowest = slowest.max(before.elapsed());
    }
    // The healthy receiver gets all five while the slow one holds its
    // first request and the dead one fails.
    healthy.wait_for(5, WAIT).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        slowest < Duration::from_secs(2),
        "commands never wait for receivers: {slowest:?}"
    );
    assert_eq!(
        slow.count(),
        1,
        "the slow receiver still holds its first delivery"
    );
    // The dead one is disabled after the bound, and that is recorded.
    eventually(WAIT, "the dead subscription is disabled", || {
        t.state.read(|p| {
            p.shops.values().any(|v| {
                v.webhooks
                    .get(dead_hook.parse().unwrap())
                    .is_some_and(|s| s.status.as_str() == "disabled")
            })
        })
    })
    .await;
    let one = t.get(&format!("/v1/webhooks/{dead_hook}"), &key).await;
    assert_eq!(one.body["status"], "disabled");
    assert!(
        one.body["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("HTTP 503"),
        "{}",
        one.body
    );
    let feed = t.get("/v1/events?limit=1000", &key).await;
    assert!(feed.body.to_string().contains("WebhookDisabled"));
    let attempts = dead.count();
    assert!(attempts >= 3, "retried before giving up: {attempts}");
    let log = t
        .get(
            &format!("/v1/webhooks/{dead_hook}/deliveries?limit=500"),
            &key,
        )
        .await;
    let last = log.body["deliveries"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["outcome"], "gave_up");
    assert!(last["next_attempt_at"].is_null());
    // Disabled: nothing more is sent to it.
    let o = place(&t, &key, &customer).await;
    act(&t, &key, &o, "process", json!({})).await;
    healthy.wait_for(6, WAIT).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        dead.count(),
        attempts,
        "a disabled subscription receives nothing"
    );
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_subscription_receives_nothing_and_resuming_replays_nothing() {
    let t = app().await;
    let (key, _, customer, _) = t.stocked_shop("Toko Pause").await;
    let receiver = Receiver::healthy().await;
    let worker = start(&t, fast());
    let hook = subscribe(&t, &key, &receiver.url, &["order_packed"]).await;
    let (a, b, c) = (
        place(&t, &key, &customer).await,
        place(&t, &key, &customer).await,
        place(&t, &key, &customer).await,
    );
    act(&t, &key, &a, "pack", json!({})).await;
    receiver.wait_for(1, WAIT).await;
    let paused = t
        .post(&format!("/v1/webhooks/{hook}/pause"), &key, json!({}))
        .await;
    assert_eq!(paused.status, StatusCode::CREATED, "{}", paused.body);
    act(&t, &key, &b, "pack", json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.count(), 1, "paused: nothing sent");
    let resumed = t
        .post(&format!("/v1/webhooks/{hook}/resume"), &key, json!({}))
        .await;
    assert_eq!(resumed.status, StatusCode::CREATED, "{}", resumed.body);
    act(&t, &key, &c, "pack", json!({})).await;
    let got = receiver.wait_for(2, WAIT).await;
    // Deliveries follow the log, so had b's been owed it would be first.
    let orders: Vec<String> = got
        .iter()
        .map(|g| g.json()["order"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(orders, [a, c], "what happened while paused is not sent");
    // Pausing twice changes nothing; deleting stops everything.
    let again = t
        .post(&format!("/v1/webhooks/{hook}/pause"), &key, json!({}))
        .await;
    assert_eq!(again.body["events"].as_array().unwrap().len(), 1);
    let twice = t
        .post(&format!("/v1/webhooks/{hook}/pause"), &key, json!({}))
        .await;
    assert_eq!(twice.body["events"].as_array().unwrap().len(), 0);
    let deleted = t
        .call(
            Method::DELETE,
            &format!("/v1/webhooks/{hook}"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::CREATED, "{}", deleted.body);
    let at = deleted.body["position"].as_u64().unwrap();
    let gone = t
        .get(&format!("/v1/webhooks/{hook}?min_position={at}"), &key)
        .await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_catches_up_from_the_log_in_order_without_duplicates() {
    let t = app().await;
    let (key, warehouse, customer, _) = t.stocked_shop("Toko Queue").await;
    let r = t
        .post(
            "/v1/stock/moves",
            &key,
            json!({"type": "receive", "sku": "KAOS-M", "warehouse_id": warehouse, "quantity": 100}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let receiver = Receiver::start(Arc::new(|_, _| (200, Duration::from_millis(15)))).await;
    let worker = start(
        &t,
        WorkerConfig {
            queue_per_subscription: 2,
            ..fast()
        },
    );
    subscribe(
        &t,
        &key,
        &receiver.url,
        &["order_status_processing", "order_packed"],
    )
    .await;
    let mut expected = Vec::new();
    for _ in 0..15 {
        let o = place(&t, &key, &customer).await;
        act(&t, &key, &o, "process", json!({})).await;
        act(&t, &key, &o, "pack", json!({})).await;
        expected.push((o.clone(), "order_status_processing".to_owned()));
        expected.push((o, "order_packed".to_owned()));
    }
    let got = receiver.wait_for(30, WAIT).await;
    let seen: Vec<(String, String)> = got
        .iter()
        .map(|g| {
            let b = g.json();
            (
                b["order"]["id"].as_str().unwrap().to_owned(),
                b["trigger"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(seen, expected, "every event once, in log order");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.count(), 30);
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_worker_sends_what_it_missed_and_not_what_was_acknowledged() {
    let t = app().await;
    let dir = tempfile::tempdir().unwrap();
    let (key, _, customer, _) = t.stocked_shop("Toko Restart").await;
    let receiver = Receiver::healthy().await;
    let config = WorkerConfig {
        checkpoint_path: Some(dir.path().join("webhooks.checkpoint")),
        ..fast()
    };
    let worker = start(&t, config.clone());
    subscribe(&t, &key, &receiver.url, &["order_packed"]).await;
    let first = place(&t, &key, &customer).await;
    act(&t, &key, &first, "pack", json!({})).await;
    receiver.wait_for(1, WAIT).await;
    // (Stopping before the answer arrives would, rightly, send it again.)
    delivered(&t, 1).await;
    worker.stop().await.unwrap();
    assert!(dir.path().join("webhooks.checkpoint").exists());
    // Events while no worker runs are sent after the restart; the
    // acknowledged one is not.
    let second = place(&t, &key, &customer).await;
    act(&t, &key, &second, "pack", json!({})).await;
    let worker = start(&t, config.clone());
    let got = receiver.wait_for(2, WAIT).await;
    assert_eq!(got[1].json()["order"]["id"], second);
    // Without the checkpoint the recorded outcomes say what was delivered.
    delivered(&t, 2).await;
    worker.stop().await.unwrap();
    std::fs::remove_file(dir.path().join("webhooks.checkpoint")).unwrap();
    let third = place(&t, &key, &customer).await;
    act(&t, &key, &third, "pack", json!({})).await;
    let worker = start(&t, config);
    let got = receiver.wait_for(3, WAIT).await;
    assert_eq!(got[2].json()["order"]["id"], third);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(receiver.count(), 3, "nothing acknowledged is sent again");
    worker.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_naming_the_problem_and_records_nothing() {
    let t = app().await;
    let (key, _, _, _) = t.stocked_shop("Toko Bad").await;
    let (_, other_key) = t.shop("Toko Lain").await;
    let good =
        json!({"name": "Sheet", "url": "https://hooks.example.com/x", "triggers": ["order_paid"]});
    let other = t.post("/v1/webhooks", &other_key, good.clone()).await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.body);
    let secret = other.body["secret"].as_str().unwrap();
    assert!(
        secret.starts_with("whsec_") && secret.len() == 6 + 64,
        "made server-side"
    );
    let other_id = other.body["id"].as_str().unwrap().to_owned();
    t.settle().await;
    let head = t.head().await;
    let with = |field: &str, value: Value| {
        let mut b = good.clone();
        b[field] = value;
        b
    };
    let cases = [
        (
            with("url", json!("ftp://example.com/x")),
            "url",
            "http:// or https://",
        ),
        (
            with("url", json!("https://exa mple.com")),
            "url",
            "printable ASCII",
        ),
        (
            with("url", json!("https://user:pw@example.com/")),
            "url",
            "credentials",
        ),
        (
            with(
                "url",
                json!(format!("https://example.com/{}", "a".repeat(2_100))),
            ),
            "url",
            "at most 2000",
        ),
        (
            with("triggers", json!(["order_paid", "order_teleported"])),
            "triggers[1]",
            "\"order_teleported\"",
        ),
        (with("triggers", json!([])), "triggers", "at least one"),
        (with("secret", json!("short")), "secret", "16 to 200"),
        (with("name", json!("")), "name", "must not be empty"),
    ];
    for (body, field, says) in cases {
        let a = t.post("/v1/webhooks", &key, body.clone()).await;
        assert_eq!(
            a.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            a.body
        );
        assert_eq!(a.headers["content-type"], "application/problem+json");
        assert_eq!(a.code(), "invalid");
        let messages: Vec<&str> = a.body["errors"][field]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let messages = messages.join(" ");
        assert!(messages.contains(says), "{field}: {}", a.body);
    }
    // A trigger that does not parse: its place is named, and no error
    // names a place the list without it would have (a duplicate after it).
    let a = t
        .post(
            "/v1/webhooks",
            &key,
            with(
                "triggers",
                json!(["order_teleported", "order_paid", "order_paid"]),
            ),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let fields: Vec<&String> = a.body["errors"].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["triggers[0]"], "{}", a.body);
    let missing = t
        .post(
            "/v1/webhooks",
            &key,
            json!({"name": "x", "triggers": ["order_paid"]}),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        missing.body["detail"].as_str().unwrap().contains("url"),
        "{}",
        missing.body
    );
    let extra = t
        .post("/v1/webhooks", &key, with("colour", json!("red")))
        .await;
    assert_eq!(extra.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        extra.body["detail"].as_str().unwrap().contains("colour"),
        "{}",
        extra.body
    );
    let malformed = t
        .send(
            axum::http::Request::post("/v1/webhooks")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{\"name\": \"x\", "))
                .unwrap(),
        )
        .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert_eq!(malformed.code(), "malformed_json");
    // Another shop's subscription is not found, whatever is asked.
    for (method, path) in [
        (Method::GET, format!("/v1/webhooks/{other_id}")),
        (Method::GET, format!("/v1/webhooks/{other_id}/deliveries")),
        (Method::POST, format!("/v1/webhooks/{other_id}/pause")),
        (Method::POST, format!("/v1/webhooks/{other_id}/resume")),
        (
            Method::POST,
            format!("/v1/webhooks/{other_id}/rotate-secret"),
        ),
        (Method::DELETE, format!("/v1/webhooks/{other_id}")),
    ] {
        let a = t.call(method.clone(), &path, Some(&key), None).await;
        assert_eq!(
            a.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            a.body
        );
        assert_eq!(a.headers["content-type"], "application/problem+json");
    }
    let not_uuid = t.get("/v1/webhooks/not-a-uuid", &key).await;
    assert_eq!(not_uuid.status, StatusCode::BAD_REQUEST);
    assert_eq!(t.head().await, head, "nothing was recorded");
    // Staff may read, not change.
    let staff = t.post("/v1/keys", &key, json!({"role": "staff"})).await;
    let staff = staff.body["key"].as_str().unwrap().to_owned();
    let refused = t.post("/v1/webhooks", &staff, good.clone()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let read = t.get("/v1/webhooks", &staff).await;
    assert_eq!(read.status, StatusCode::OK);
    // The other shop still has its subscription, untouched.
    let theirs = t.get(&format!("/v1/webhooks/{other_id}"), &other_key).await;
    assert_eq!(theirs.body["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_and_rotate_answer_the_same_secret_when_repeated() {
    let t = app().await;
    let (key, _, _, _) = t.stocked_shop("Toko Idem").await;
    let body = json!({"name": "Sheet", "url": "http://127.0.0.1:9/x", "triggers": ["checkout_completed", "checkout_abandoned"]});
    let headers = [("idempotency-key", "hook-1")];
    let first = t
        .call_with(
            Method::POST,
            "/v1/webhooks",
            Some(&key),
            Some(body.clone()),
            &headers,
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = t
        .call_with(
            Method::POST,
            "/v1/webhooks",
            Some(&key),
            Some(body),
            &headers,
        )
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["secret"], first.body["secret"]);
    assert_eq!(again.body["id"], first.body["id"]);
    let id = first.body["id"].as_str().unwrap();
    let rotate = [("idempotency-key", "rotate-1")];
    let path = format!("/v1/webhooks/{id}/rotate-secret");
    let r1 = t
        .call_with(Method::POST, &path, Some(&key), None, &rotate)
        .await;
    assert_eq!(r1.status, StatusCode::CREATED, "{}", r1.body);
    assert_ne!(r1.body["secret"], first.body["secret"]);
    let r2 = t
        .call_with(Method::POST, &path, Some(&key), None, &rotate)
        .await;
    assert_eq!(r2.status, StatusCode::OK, "{}", r2.body);
    assert_eq!(r2.body["secret"], r1.body["secret"]);
    // openapi lists every webhook route.
    let doc = t.call(Method::GET, "/openapi.json", None, None).await;
    for path in [
        "/v1/webhooks",
        "/v1/webhooks/{webhook_id}",
        "/v1/webhooks/{webhook_id}/pause",
        "/v1/webhooks/{webhook_id}/resume",
        "/v1/webhooks/{webhook_id}/rotate-secret",
        "/v1/webhooks/{webhook_id}/deliveries",
    ] {
        assert!(
            doc.body["paths"].get(path).is_some(),
            "{path} in /openapi.json"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_triggers_carry_shoppegram_s_checkout_object() {
    let t = app().await;
    let (key, _, customer, _) = t.stocked_shop("Toko Checkout").await;
    let receiver = Receiver::healthy().await;
    let worker = start(&t, fast());
    subscribe(
        &t,
        &key,
        &receiver.url,
        &["checkout_updated", "checkout_completed"],
    )
    .await;
    let content = |quantity: i64| {
        json!({"items": [{"sku": "KAOS-M", "product_name": "Kaos Polos", "name": "M / Hitam", "price": 50_000, "quantity": quantity}],
               "customer": {"first_name": "Abu", "last_name": "Ali", "phone": "60123456789", "email": "abuali@example.com"},
               "shipping_address": {"first_name": "Nur", "last_name": "Aishah", "phone": "601122334455", "email": "",
                                    "address1": "Persiaran Permata Perdana", "address2": "-", "zip": "63000",
                                    "city": "Cyberjaya", "state": "Selangor"},
               "shipping": 0, "rate": "FREE SHIPPING COD"})
    };
    let started = t
        .post(
            "/v1/checkouts",
            &key,
            json!({"domain": "mirfaith.example.com", "content": content(1)}),
        )
        .await;
    assert_eq!(started.status, StatusCode::CREATED, "{}", started.body);
    let id = started.body["id"].as_str().unwrap().to_owned();
    let updated = t
        .call(
            Method::PUT,
            &format!("/v1/checkouts/{id}"),
            Some(&key),
            Some(content(2)),
        )
        .await;
    assert_eq!(updated.status, StatusCode::CREATED, "{}", updated.body);
    let completed = t
        .post(
            &format!("/v1/checkouts/{id}/complete"),
            &key,
            TestApp::order(&customer, "KAOS-M", 2),
        )
        .await;
    assert_eq!(completed.status, StatusCode::CREATED, "{}", completed.body);
    let order_id = completed.body["id"].as_str().unwrap().to_owned();
    let got = receiver.wait_for(2, WAIT).await;
    let (u, c) = (got[0].json(), got[1].json());
    assert_eq!(u["trigger"], "checkout_updated");
    assert_eq!(c["trigger"], "checkout_completed");
    let co = &u["checkout"];
    assert_eq!(co["id"], id);
    assert_eq!(co["domain"], "mirfaith.example.com");
    assert_eq!(co["url"], "https://mirfaith.example.com");
    assert_eq!(co["currency"], "IDR");
    assert_eq!(co["total"], 100_000);
    assert_eq!(co["rate"], "FREE SHIPPING COD");
    assert_eq!(co["status"], "open");
    assert_eq!(co["items"][0]["product"]["name"], "Kaos Polos");
    assert_eq!(co["items"][0]["name"], "M / Hitam");
    assert_eq!(co["items"][0]["subtotal"], 100_000);
    assert_eq!(co["customer"]["last_name"], "Ali");
    assert_eq!(co["shipping_address"]["state"], "Selangor");
    assert!(co["completed_at"].is_null());
    assert!(u["order"].is_null());
    assert_eq!(c["checkout"]["status"], "completed");
    assert!(c["checkout"]["completed_at"].is_string());
    assert_eq!(c["checkout"]["order_id"], order_id);
    assert_eq!(c["order"]["id"], order_id);
    assert_eq!(c["order"]["status"], "placed");
    worker.stop().await.unwrap();
}
