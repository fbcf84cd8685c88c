//! The API in process: every area's success and failure cases, bad input
//! of every kind (each answered with the right problem and changing
//! nothing), keys and roles, idempotency, and reading one's own writes.

mod common;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn a_shop_from_creation_to_reports() {
    let app = app().await;
    let (key, warehouse, customer, product) = app.stocked_shop("Toko Batik").await;
    app.settle().await;
    let shop = app.get("/v1/shop", &key).await;
    assert_eq!(
        (
            shop.status,
            shop.body["name"].as_str(),
            shop.body["currency"].as_str()
        ),
        (StatusCode::OK, Some("Toko Batik"), Some("IDR"))
    );
    assert_eq!(shop.body["warehouses"][0]["default"], json!(true));

    let placed = app
        .post("/v1/orders", &key, TestApp::order(&customer, "KAOS-M", 3))
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    let order = placed.body["id"].as_str().unwrap().to_owned();
    let position = placed.body["position"].as_u64().unwrap();
    assert_eq!(
        placed.body["events"].as_array().unwrap().len(),
        2,
        "the order and its reservation"
    );

    // Read your own write.
    let read = app
        .get(&format!("/v1/orders/{order}?min_position={position}"), &key)
        .await;
    assert_eq!(read.status, StatusCode::OK, "{:?}", read.body);
    assert_eq!(
        (
            read.body["status"].as_str(),
            read.body["totals"]["total"].as_i64()
        ),
        (Some("placed"), Some(160_000))
    );
    let stock = app
        .get(&format!("/v1/stock/KAOS-M?min_position={position}"), &key)
        .await;
    assert_eq!(
        (
            stock.body["total"]["on_hand"].as_i64(),
            stock.body["total"]["reserved"].as_i64()
        ),
        (Some(10), Some(3))
    );

    let paid = app
        .post(
            &format!("/v1/orders/{order}/payments"),
            &key,
            json!({"amount": 60_000, "method": "bank_transfer"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{:?}", paid.body);
    let over = app
        .post(
            &format!("/v1/orders/{order}/payments"),
            &key,
            json!({"amount": 200_000, "method": "bank_transfer"}),
        )
        .await;
    assert_eq!(
        (over.status, over.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "amount_exceeds_remaining")
    );
    assert!(
        over.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Amount is more than amount remaining of this order")
    );
    for action in ["process", "pack"] {
        assert_eq!(
            app.call(
                Method::POST,
                &format!("/v1/orders/{order}/{action}"),
                Some(&key),
                None
            )
            .await
            .status,
            StatusCode::CREATED
        );
    }
    let early = app
        .call(
            Method::POST,
            &format!("/v1/orders/{order}/deliver"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        (early.status, early.code()),
        (StatusCode::CONFLICT, "illegal_transition")
    );
    let shipped = app
        .post(
            &format!("/v1/orders/{order}/ship"),
            &key,
            json!({"awb": "JNE0001"}),
        )
        .await;
    assert_eq!(shipped.status, StatusCode::CREATED, "{:?}", shipped.body);
    let p = shipped.body["position"].as_u64().unwrap();
    let list = app
        .get(&format!("/v1/orders?awb=JNE0001&min_position={p}"), &key)
        .await;
    assert_eq!(
        list.body["orders"][0]["order_id"].as_str(),
        Some(order.as_str())
    );
    let counts = app
        .get(&format!("/v1/orders/counts?min_position={p}"), &key)
        .await;
    assert_eq!(
        (
            counts.body["counts"]["shipped"].as_u64(),
            counts.body["total"].as_u64()
        ),
        (Some(1), Some(1))
    );

    let history = app
        .get(
            &format!("/v1/stock/KAOS-M/history?warehouse_id={warehouse}&min_position={p}"),
            &key,
        )
        .await;
    let lines = history.body["history"].as_array().unwrap();
    assert_eq!(
        (lines[1]["out"].as_i64(), lines[1]["last"].as_i64()),
        (Some(3), Some(7))
    );
    let product = app.get(&format!("/v1/products/{product}"), &key).await;
    assert_eq!(product.body["variations"].as_array().unwrap().len(), 2);
    let today = chrono::Utc::now().date_naive();
    let sales = app
        .get(
            &format!(
                "/v1/analytics/sales?from={}&to={}&min_position={p}",
                today - chrono::Duration::days(1),
                today + chrono::Duration::days(1)
            ),
            &key,
        )
        .await;
    assert_eq!(sales.status, StatusCode::OK, "{:?}", sales.body);
    assert_eq!(sales.body["data"]["total"]["orders"].as_i64(), Some(1));
    for report in [
        "best",
        "locations",
        "couriers",
        "weekdays",
        "cod",
        "customer-service",
    ] {
        assert_eq!(
            app.get(&format!("/v1/analytics/{report}"), &key)
                .await
                .status,
            StatusCode::OK,
            "{report}"
        );
    }
    assert_eq!(
        app.get("/v1/analytics/nope", &key).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn money_checkouts_and_chat_over_http() {
    let app = app().await;
    let (key, _, customer, _) = app.stocked_shop("Toko Kain").await;
    let topup = app
        .post(
            "/v1/wallet/entries",
            &key,
            json!({"type": "top_up", "amount": 1_000_000}),
        )
        .await;
    assert_eq!(topup.status, StatusCode::CREATED, "{:?}", topup.body);
    let w = app.post("/v1/withdrawals", &key, json!({"amount": 700_000, "bank_name": "BCA", "bank_account_no": "981238787", "bank_account_name": "Toko"})).await;
    assert_eq!(w.status, StatusCode::CREATED, "{:?}", w.body);
    let p = w.body["position"].as_u64().unwrap();
    let balance = app
        .get(&format!("/v1/balance?min_position={p}"), &key)
        .await;
    assert_eq!(
        (
            balance.body["available"].as_i64(),
            balance.body["withdrawing"].as_i64()
        ),
        (Some(300_000), Some(700_000))
    );
    let id = w.body["id"].as_str().unwrap();
    let done = app
        .post(
            &format!("/v1/withdrawals/{id}/complete"),
            &key,
            json!({"transfer_reference": "TRF-1"}),
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.body);
    let ledger = app
        .get(
            &format!("/v1/ledger?min_position={}", done.body["position"]),
            &key,
        )
        .await;
    assert_eq!(ledger.body["entries"].as_array().unwrap().len(), 3);

    let checkout = json!({"domain": "tokokain.myshoppegram.com", "content": {"items": [{"sku": "KAOS-M", "product_name": "Kaos", "name": "M", "price": 50_000, "quantity": 1}], "customer": {"first_name": "Abu"}}});
    let c = app.post("/v1/checkouts", &key, checkout).await;
    assert_eq!(c.status, StatusCode::CREATED, "{:?}", c.body);
    let cid = c.body["id"].as_str().unwrap();
    let completed = app
        .post(
            &format!("/v1/checkouts/{cid}/complete"),
            &key,
            TestApp::order(&customer, "KAOS-M", 1),
        )
        .await;
    assert_eq!(
        completed.status,
        StatusCode::CREATED,
        "{:?}",
        completed.body
    );
    assert_eq!(
        app.get(&format!("/v1/checkouts/{cid}"), &key).await.body["status"].as_str(),
        Some("completed")
    );

    let party = json!({"channel": "whatsapp", "handle": "6281234567890", "name": "Budi"});
    let inbound = app
        .post(
            "/v1/conversations/inbound",
            &key,
            json!({"party": party, "text": "Kak, ready?"}),
        )
        .await;
    assert_eq!(inbound.status, StatusCode::CREATED, "{:?}", inbound.body);
    let conversation = inbound.body["id"].as_str().unwrap().to_owned();
    let label = app
        .post(
            &format!("/v1/conversations/{conversation}/labels"),
            &key,
            json!({"label": "belum bayar"}),
        )
        .await;
    assert_eq!(label.status, StatusCode::CREATED, "{:?}", label.body);
    let t = app
        .post(
            "/v1/templates",
            &key,
            json!({"name": "resi", "body": "Halo {{fullname}}, resi {{awb}}"}),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{:?}", t.body);
    let tid = t.body["id"].as_str().unwrap();
    let sent = app
        .post(
            "/v1/messages/template",
            &key,
            json!({"phone_number": "0812-3456-7890", "template_id": tid, "data": {"fullname": "Budi", "awb": 12345}}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    assert_eq!(
        sent.body["events"][0]["data"]["text"].as_str(),
        Some("Halo Budi, resi 12345")
    );
    assert_eq!(
        sent.body["id"].as_str(),
        Some(conversation.as_str()),
        "the inbound conversation of the same number"
    );
    let missing = app
        .post(
            "/v1/messages/template",
            &key,
            json!({"phone_number": "0812-3456-7890", "template_id": tid, "data": {"fullname": "Budi"}}),
        )
        .await;
    assert_eq!(
        (missing.status, missing.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "template_key_missing")
    );
    assert!(missing.body["detail"].as_str().unwrap().contains("awb"));
    let p = sent.body["position"].as_u64().unwrap();
    let inbox = app
        .get(
            &format!("/v1/conversations?label=belum%20bayar&min_position={p}"),
            &key,
        )
        .await;
    assert_eq!(
        inbox.body["conversations"][0]["status"].as_str(),
        Some("served")
    );
    let messages = app
        .get(&format!("/v1/conversations/{conversation}/messages"), &key)
        .await;
    assert_eq!(messages.body["messages"].as_array().unwrap().len(), 2);
    let one = app
        .get(&format!("/v1/conversations/{conversation}"), &key)
        .await;
    assert_eq!(one.status, StatusCode::OK);
}

#[tokio::test]
async fn bad_input_gets_a_problem_that_names_it_and_changes_nothing() {
    let app = app().await;
    let (key, warehouse, customer, _) = app.stocked_shop("Toko A").await;
    let before = app.head().await;
    let raw = |body: &'static str, content_type: Option<&'static str>| {
        let mut r = Request::builder()
            .method(Method::POST)
            .uri("/v1/orders")
            .header("authorization", format!("Bearer {key}"));
        if let Some(ct) = content_type {
            r = r.header("content-type", ct);
        }
        r.body(Body::from(body)).unwrap()
    };
    let malformed = app
        .send(raw("{\"channel\": ", Some("application/json")))
        .await;
    assert_eq!(
        (malformed.status, malformed.code()),
        (StatusCode::BAD_REQUEST, "malformed_json")
    );
    assert_eq!(
        malformed.headers["content-type"],
        "application/problem+json"
    );
    assert!(
        malformed.body["detail"]
            .as_str()
            .unwrap()
            .contains("line 1"),
        "{:?}",
        malformed.body
    );
    let no_type = app.send(raw("{}", None)).await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let wrong_type = app.post("/v1/orders", &key, json!({"channel": "WHATSAPP", "sender_id": customer, "lines": [{"sku": "KAOS-M", "quantity": "two"}], "shipping": {"courier": "JNE", "service": "REG", "cost": 0}})).await;
    assert_eq!(
        (wrong_type.status, wrong_type.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body")
    );
    assert!(
        wrong_type.body["detail"]
            .as_str()
            .unwrap()
            .contains("invalid type"),
        "{:?}",
        wrong_type.body
    );
    let missing = app
        .post(
            "/v1/orders",
            &key,
            json!({"channel": "WHATSAPP", "sender_id": customer}),
        )
        .await;
    assert!(
        missing.body["detail"]
            .as_str()
            .unwrap()
            .contains("missing field `lines`"),
        "{:?}",
        missing.body
    );
    for quantity in [0, -3] {
        let bad = app
            .post(
                "/v1/orders",
                &key,
                TestApp::order(&customer, "KAOS-M", quantity),
            )
            .await;
        assert_eq!(
            (bad.status, bad.code()),
            (StatusCode::UNPROCESSABLE_ENTITY, "invalid")
        );
        assert!(
            bad.body["errors"]["lines[0].quantity"].is_array(),
            "{:?}",
            bad.body
        );
    }
    let zero_move = app
        .post(
            "/v1/stock/moves",
            &key,
            json!({"type": "receive", "sku": "KAOS-M", "warehouse_id": warehouse, "quantity": 0}),
        )
        .await;
    assert!(zero_move.body["errors"]["quantity"].is_array());
    let unknown_sku = app
        .post("/v1/orders", &key, TestApp::order(&customer, "NOPE", 1))
        .await;
    assert_eq!(
        (unknown_sku.status, unknown_sku.code()),
        (StatusCode::NOT_FOUND, "unknown_sku")
    );
    let unknown_customer = app
        .post(
            "/v1/orders",
            &key,
            TestApp::order("00000000-0000-7000-8000-000000000000", "KAOS-M", 1),
        )
        .await;
    assert_eq!(unknown_customer.status, StatusCode::NOT_FOUND);
    let short = app
        .post("/v1/orders", &key, TestApp::order(&customer, "KAOS-M", 11))
        .await;
    assert_eq!(
        (short.status, short.code()),
        (StatusCode::CONFLICT, "insufficient_stock")
    );
    assert!(
        short.body["detail"]
            .as_str()
            .unwrap()
            .contains("KAOS-M (requested 11, available 10)")
    );
    let not_uuid = app.get("/v1/orders/not-a-uuid", &key).await;
    assert_eq!(
        (not_uuid.status, not_uuid.code()),
        (StatusCode::BAD_REQUEST, "invalid_path")
    );
    let big = "x".repeat(kedai_api::limits::BODY_BYTES_MAX + 10);
    let too_big = app.post("/v1/products", &key, json!({"name": big})).await;
    assert_eq!(
        (too_big.status, too_big.code()),
        (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large")
    );
    let bad_query = app.get("/v1/orders?limit=abc", &key).await;
    assert_eq!(
        (bad_query.status, bad_query.code()),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
    let huge_page = app.get("/v1/orders?limit=100000", &key).await;
    assert_eq!(huge_page.status, StatusCode::BAD_REQUEST);
    let no_route = app.get("/v1/nothing", &key).await;
    assert_eq!(
        (no_route.status, no_route.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    assert_eq!(app.head().await, before, "none of it recorded anything");
    // And the server keeps serving.
    assert_eq!(app.get("/v1/shop", &key).await.status, StatusCode::OK);
}

#[tokio::test]
async fn keys_roles_and_shops_keep_to_themselves() {
    let app = app().await;
    let (key_a, _, customer_a, product_a) = app.stocked_shop("Toko A").await;
    let (key_b, _, _, _) = app.stocked_shop("Toko B").await;
    let order = app
        .post(
            "/v1/orders",
            &key_a,
            TestApp::order(&customer_a, "KAOS-M", 1),
        )
        .await;
    let order = order.body["id"].as_str().unwrap().to_owned();
    app.settle().await;
    // Another shop's ids are not found, as if they did not exist.
    for path in [
        format!("/v1/orders/{order}"),
        format!("/v1/customers/{customer_a}"),
        format!("/v1/products/{product_a}"),
    ] {
        let a = app.get(&path, &key_b).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}: {:?}", a.body);
    }
    let pay = app
        .post(
            &format!("/v1/orders/{order}/payments"),
            &key_b,
            json!({"amount": 1, "method": "cash"}),
        )
        .await;
    assert_eq!(pay.status, StatusCode::NOT_FOUND);
    assert_eq!(
        app.get(&format!("/v1/orders/{order}"), &key_a).await.status,
        StatusCode::OK
    );

    let no_key = app.call(Method::GET, "/v1/shop", None, None).await;
    assert_eq!(
        (no_key.status, no_key.code()),
        (StatusCode::UNAUTHORIZED, "unauthorized")
    );
    assert_eq!(
        app.get("/v1/shop", "kedai_sk_wrong").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get("/v1/shop", OPERATOR).await.status,
        StatusCode::FORBIDDEN,
        "the operator token creates shops only"
    );
    assert_eq!(
        app.call(
            Method::POST,
            "/v1/shops",
            Some(&key_a),
            Some(json!({"name": "x", "currency": "IDR"}))
        )
        .await
        .status,
        StatusCode::UNAUTHORIZED
    );

    let analyst = app
        .post(
            "/v1/keys",
            &key_a,
            json!({"role": "analyst", "label": "BI"}),
        )
        .await;
    assert_eq!(analyst.status, StatusCode::CREATED, "{:?}", analyst.body);
    let analyst_key = analyst.body["key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/v1/orders", &analyst_key).await.status,
        StatusCode::OK
    );
    let write = app
        .post(
            "/v1/orders",
            &analyst_key,
            TestApp::order(&customer_a, "KAOS-M", 1),
        )
        .await;
    assert_eq!(
        (write.status, write.code()),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    assert_eq!(
        app.get("/v1/events", &analyst_key).await.status,
        StatusCode::FORBIDDEN,
        "events are for auditors"
    );
    let auditor = app
        .post("/v1/keys", &key_a, json!({"role": "auditor"}))
        .await;
    let auditor_key = auditor.body["key"].as_str().unwrap().to_owned();
    let feed = app.get("/v1/events?limit=500", &auditor_key).await;
    assert_eq!(feed.status, StatusCode::OK);
    let events = feed.body["events"].as_array().unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["stream"].as_str() != Some("")));
    let history = app
        .get(&format!("/v1/streams/order-{order}/events"), &auditor_key)
        .await;
    assert_eq!(
        history.body["events"][0]["type"].as_str(),
        Some("OrderPlaced")
    );
    let keys = app.get("/v1/keys", &key_a).await;
    assert_eq!(keys.body["keys"].as_array().unwrap().len(), 3);
    let analyst_id = analyst.body["key_id"].as_str().unwrap();
    assert_eq!(
        app.call(
            Method::DELETE,
            &format!("/v1/keys/{analyst_id}"),
            Some(&key_a),
            None
        )
        .await
        .status,
        StatusCode::CREATED
    );
    let revoked = app.get("/v1/orders", &analyst_key).await;
    assert_eq!(
        revoked.status,
        StatusCode::UNAUTHORIZED,
        "a revoked key stops working"
    );
}

#[tokio::test]
async fn an_idempotency_key_answers_a_retry_with_the_first_answer() {
    let app = app().await;
    let (key, _, customer, _) = app.stocked_shop("Toko A").await;
    let send = |body: Value, idem: &'static str| {
        let key = key.clone();
        let app = &app;
        async move {
            app.call_with(
                Method::POST,
                "/v1/orders",
                Some(&key),
                Some(body),
                &[("idempotency-key", idem)],
            )
            .await
        }
    };
    let first = send(TestApp::order(&customer, "KAOS-M", 2), "order-991").await;
    assert_eq!(first.status, StatusCode::CREATED);
    let head = app.head().await;
    let again = send(TestApp::order(&customer, "KAOS-M", 2), "order-991").await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["status"].as_str(), Some("already_recorded"));
    assert_eq!(
        (
            &again.body["id"],
            &again.body["position"],
            &again.body["events"]
        ),
        (
            &first.body["id"],
            &first.body["position"],
            &first.body["events"]
        )
    );
    assert_eq!(app.head().await, head, "nothing new recorded");
    let changed = send(TestApp::order(&customer, "KAOS-M", 1), "order-991").await;
    assert_eq!(
        (changed.status, changed.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
    let bad_key = app
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&key),
            Some(TestApp::order(&customer, "KAOS-M", 1)),
            &[("idempotency-key", "")],
        )
        .await;
    assert_eq!(bad_key.status, StatusCode::BAD_REQUEST);
}

/// A command's answer carries each event as the event feed shows it
/// (`events[].data`), for fresh commands and for an idempotent repeat
/// (answered from the recorded events).
#[tokio::test]
async fn command_answers_carry_the_events_as_the_feed_shows_them() {
    let app = app().await;
    let (key, _, customer, _) = app.stocked_shop("Toko A").await;
    let placed = app
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&key),
            Some(TestApp::order(&customer, "KAOS-M", 2)),
            &[("idempotency-key", "order-7")],
        )
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    let order = placed.body["id"].as_str().unwrap().to_owned();
    let repeat = app
        .call_with(
            Method::POST,
            "/v1/orders",
            Some(&key),
            Some(TestApp::order(&customer, "KAOS-M", 2)),
            &[("idempotency-key", "order-7")],
        )
        .await;
    assert_eq!(repeat.status, StatusCode::OK, "{:?}", repeat.body);
    let paid = app
        .post(
            &format!("/v1/orders/{order}/payments"),
            &key,
            json!({"amount": 60_000, "method": "bank_transfer"}),
        )
        .await;
    assert_eq!(paid.status, StatusCode::CREATED, "{:?}", paid.body);
    let processed = app
        .call(
            Method::POST,
            &format!("/v1/orders/{order}/process"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(
        processed.status,
        StatusCode::CREATED,
        "{:?}",
        processed.body
    );

    let feed = app.get("/v1/events?after=0&limit=500", &key).await;
    assert_eq!(feed.status, StatusCode::OK, "{:?}", feed.body);
    let by_position: std::collections::HashMap<u64, &Value> = feed.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["position"].as_u64().unwrap(), e))
        .collect();
    let mut checked = 0;
    for answer in [&placed, &repeat, &paid, &processed] {
        let events = answer.body["events"].as_array().unwrap();
        assert!(!events.is_empty(), "{:?}", answer.body);
        for e in events {
            let fed = by_position[&e["position"].as_u64().unwrap()];
            assert!(e["data"].is_object(), "{e}");
            assert_eq!(
                (&e["type"], &e["stream"], &e["data"]),
                (&fed["type"], &fed["stream"], &fed["data"])
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} events checked");
}

/// Issuing a key (and creating a shop, which issues its owner key) again
/// with the same Idempotency-Key is a repeat: the same key id and
/// position, no secret shown again, nothing recorded. (The secret is made
/// per request; the repeat must not be taken for another request.)
#[tokio::test]
async fn issuing_a_key_again_with_its_idempotency_key_is_a_repeat() {
    let app = app().await;
    let create_shop = || {
        app.call_with(
            Method::POST,
            "/v1/shops",
            Some(OPERATOR),
            Some(json!({"name": "Toko Kunci", "currency": "MYR"})),
            &[("idempotency-key", "shop-77")],
        )
    };
    let shop = create_shop().await;
    assert_eq!(shop.status, StatusCode::CREATED, "{:?}", shop.body);
    let owner = shop.body["owner_key"].as_str().unwrap().to_owned();
    let head = app.head().await;
    let again = create_shop().await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(again.body["shop_id"], shop.body["shop_id"]);
    assert_eq!(again.body["position"], shop.body["position"]);
    assert_eq!(again.body["owner_key"], Value::Null, "shown once");
    assert_eq!(app.head().await, head, "nothing new recorded");

    let issue = |label: &'static str| {
        app.call_with(
            Method::POST,
            "/v1/keys",
            Some(&owner),
            Some(json!({"role": "staff", "label": label})),
            &[("idempotency-key", "key-1")],
        )
    };
    let first = issue("gudang").await;
    assert_eq!(first.status, StatusCode::CREATED, "{:?}", first.body);
    let staff = first.body["key"].as_str().unwrap().to_owned();
    let head = app.head().await;
    let again = issue("gudang").await;
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(
        (&again.body["key_id"], &again.body["position"]),
        (&first.body["key_id"], &first.body["position"])
    );
    assert_eq!(again.body["key"], Value::Null, "shown once");
    assert_eq!(app.head().await, head, "nothing new recorded");
    assert_eq!(app.get("/v1/shop", &staff).await.status, StatusCode::OK);
    let changed = issue("kasir").await;
    assert_eq!(
        (changed.status, changed.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
}

#[tokio::test]
async fn operations_endpoints() {
    let app = app().await;
    let health = app.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (key, _, _, _) = app.stocked_shop("Toko A").await;
    let _ = app.get("/v1/shop", &key).await;
    let metrics = app
        .send(Request::get("/metrics").body(Body::empty()).unwrap())
        .await;
    assert_eq!(metrics.status, StatusCode::OK);
    let openapi = app.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(
        openapi.body["openapi"].as_str().map(|v| v.starts_with('3')),
        Some(true)
    );
    assert!(openapi.body["paths"]["/v1/orders/{order_id}/{action}"]["post"].is_object());
    assert!(openapi.body["components"]["schemas"]["Problem"].is_object());
    let with_id = app.call(Method::GET, "/healthz", None, None).await;
    assert!(
        with_id.headers.contains_key("x-request-id"),
        "every answer carries a request id"
    );
}

#[tokio::test]
async fn metrics_count_requests_and_commands() {
    let app = app().await;
    let (key, _, customer, _) = app.stocked_shop("Toko A").await;
    app.post("/v1/orders", &key, TestApp::order(&customer, "KAOS-M", 1))
        .await;
    let response = tower::ServiceExt::oneshot(
        app.router.clone(),
        Request::get("/metrics").body(Body::empty()).unwrap(),
    )
    .await
    .unwrap();
    let text = String::from_utf8(
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(
        text.contains(
            "kedai_http_requests_total{method=\"POST\",route=\"/v1/orders\",status=\"201\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains("kedai_commands_total{command=\"place_order\",outcome=\"ok\"} 1"));
    assert!(text.contains("kedai_projection_lag_events"));
}

/// A wall clock the test sets, backwards too (as a corrected system clock
/// may go).
#[derive(Debug)]
struct WallClock(std::sync::Mutex<kedai_engine::Timestamp>);

#[async_trait::async_trait]
impl kedai_engine::clock::Clock for WallClock {
    fn now(&self) -> kedai_engine::Timestamp {
        *self.0.lock().unwrap()
    }

    async fn sleep_until(&self, _: kedai_engine::Timestamp) {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn the_ledger_is_paged_newest_first_and_filtered_by_date_from_the_wallet_stream() {
    let clock = std::sync::Arc::new(WallClock(std::sync::Mutex::new(T0)));
    let app = app_on(clock.clone()).await;
    let (_, key) = app.shop("Toko Buku").await;
    let day = |d: i64| minutes(T0, d * 24 * 60);
    let text = |t: kedai_engine::Timestamp| {
        serde_json::to_value(t)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    };
    // Top-ups of 100 to 500 on days 1 to 5, then one of 600 dated day 2
    // and a half (the clock was set back): recorded last, out of date
    // order.
    let mut last = 0;
    for (half_days, amount) in [(2, 100), (4, 200), (6, 300), (8, 400), (10, 500), (5, 600)] {
        *clock.0.lock().unwrap() = minutes(T0, half_days * 12 * 60);
        let a = app
            .post(
                "/v1/wallet/entries",
                &key,
                json!({"type": "top_up", "amount": amount}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        last = a.body["position"].as_u64().unwrap();
    }
    let get = |query: String| {
        let (app, key) = (&app, &key);
        async move {
            let a = app
                .get(&format!("/v1/ledger?min_position={last}{query}"), key)
                .await;
            assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
            let rows: Vec<(i64, i64)> = a.body["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    (
                        e["available"].as_i64().unwrap(),
                        e["available_after"].as_i64().unwrap(),
                    )
                })
                .collect();
            (rows, a.body["next"].as_u64())
        }
    };
    let (first, next) = get("&limit=2".into()).await;
    assert_eq!(first, [(600, 2_100), (500, 1_500)]);
    let (second, next) = get(format!("&limit=2&before={}", next.unwrap())).await;
    assert_eq!(second, [(400, 1_000), (300, 600)]);
    let (third, next) = get(format!("&limit=2&before={}", next.unwrap())).await;
    assert_eq!(third, [(200, 300), (100, 100)]);
    assert_eq!(next, None);
    // Days 2 to 3: the entries of day 2 and 2.5, not next to each other in
    // the wallet stream.
    let (dated, next) = get(format!("&from={}&to={}", text(day(2)), text(day(3)))).await;
    assert_eq!(dated, [(600, 2_100), (200, 300)]);
    assert_eq!(next, None);
}

#[tokio::test]
async fn a_sku_s_stock_history_is_made_from_its_stock_streams() {
    let clock = std::sync::Arc::new(WallClock(std::sync::Mutex::new(T0)));
    let app = app_on(clock.clone()).await;
    let at_hour = |h: i64| *clock.0.lock().unwrap() = minutes(T0, h * 60);
    // Hour 0: 10 received in Malang (the initial stock).
    let (key, malang, customer, _) = app.stocked_shop("Toko Kaos").await;
    let s = app
        .post("/v1/warehouses", &key, json!({"name": "Gudang Surabaya"}))
        .await;
    assert_eq!(s.status, StatusCode::CREATED, "{:?}", s.body);
    let surabaya = s.body["id"].as_str().unwrap().to_owned();
    let post = |path: String, body: Value| {
        let (app, key) = (&app, &key);
        async move {
            let a = app.post(&path, key, body).await;
            assert_eq!(a.status, StatusCode::CREATED, "{path}: {:?}", a.body);
            a.body
        }
    };
    // Hour 1: two orders reserve (no lines); one is cancelled (no line),
    // the other shipped (a line, between reservations in the stream).
    at_hour(1);
    let kept = post("/v1/orders".into(), TestApp::order(&customer, "KAOS-M", 3)).await;
    let kept = kept["id"].as_str().unwrap().to_owned();
    let dropped = post("/v1/orders".into(), TestApp::order(&customer, "KAOS-M", 2)).await;
    let dropped = dropped["id"].as_str().unwrap().to_owned();
    post(
        format!("/v1/orders/{dropped}/cancel"),
        json!({"reason": "changed mind"}),
    )
    .await;
    post(
        format!("/v1/orders/{kept}/payments"),
        json!({"amount": 160_000, "method": "bank_transfer"}),
    )
    .await;
    for action in ["process", "pack"] {
        app.call(
            Method::POST,
            &format!("/v1/orders/{kept}/{action}"),
            Some(&key),
            None,
        )
        .await;
    }
    post(format!("/v1/orders/{kept}/ship"), json!({"awb": "JNE0009"})).await;
    // Hour 30 (the next day): moves of every kind.
    at_hour(30);
    for body in [
        json!({"type": "receive", "sku": "KAOS-M", "warehouse_id": malang, "quantity": 4, "note": "from the tailor"}),
        json!({"type": "transfer", "sku": "KAOS-M", "from_warehouse_id": malang, "to_warehouse_id": surabaya, "quantity": 2, "note": "for the fair"}),
        json!({"type": "receive", "sku": "KAOS-M", "warehouse_id": surabaya, "quantity": 1}),
        json!({"type": "count", "sku": "KAOS-M", "warehouse_id": malang, "counted": 8}),
        json!({"type": "remove", "sku": "KAOS-M", "warehouse_id": malang, "quantity": 1, "reason": "damaged"}),
    ] {
        post("/v1/stock/moves".into(), body).await;
    }
    let p = app.head().await;
    let rows = |query: String| {
        let (app, key) = (&app, &key);
        async move {
            let a = app
                .get(
                    &format!("/v1/stock/KAOS-M/history?min_position={p}{query}"),
                    key,
                )
                .await;
            assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
            a.body["history"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    (
                        l["description"].as_str().unwrap().to_owned(),
                        l["warehouse_id"].as_str().unwrap().to_owned(),
                        l["order_id"].as_str().map(str::to_owned),
                        l["in"].as_i64().unwrap(),
                        l["out"].as_i64().unwrap(),
                        l["last"].as_i64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    let line = |d: &str, w: &str, o: Option<&str>, i: i64, out: i64, last: i64| {
        (
            d.to_owned(),
            w.to_owned(),
            o.map(str::to_owned),
            i,
            out,
            last,
        )
    };
    let day = T0.to_datetime().date_naive();
    let all = [
        line(
            &format!("Initial variation stock on {day}"),
            &malang,
            None,
            10,
            0,
            10,
        ),
        line("Shipped for order", &malang, Some(&kept), 0, 3, 7),
        line("Stock received: from the tailor", &malang, None, 4, 0, 11),
        line(
            "Transferred to Gudang Surabaya: for the fair",
            &malang,
            None,
            0,
            2,
            9,
        ),
        line(
            "Transferred from Gudang Malang: for the fair",
            &surabaya,
            None,
            2,
            0,
            2,
        ),
        line("Stock received", &surabaya, None, 1, 0, 3),
        line("Stock count: 8", &malang, None, 0, 1, 8),
        line("Stock removed (damaged)", &malang, None, 0, 1, 7),
    ];
    assert_eq!(rows(String::new()).await, all);
    let only = |w: &str| all.iter().filter(|l| l.1 == w).cloned().collect::<Vec<_>>();
    assert_eq!(
        rows(format!("&warehouse_id={surabaya}")).await,
        only(&surabaya)
    );
    let text = |t: kedai_engine::Timestamp| {
        serde_json::to_value(t)
            .unwrap()
            .as_str()
            .unwrap()
            .to_owned()
    };
    let from = text(minutes(T0, 29 * 60));
    assert_eq!(
        rows(format!("&warehouse_id={malang}&from={from}")).await,
        only(&malang)[2..]
    );
    let to = text(minutes(T0, 29 * 60));
    assert_eq!(rows(format!("&to={to}")).await, all[..2]);

    // Pages: `next` is the cursor to pass as `after`; the pages put
    // together are the whole history; the last page says there is no more.
    let mut paged = Vec::new();
    let mut after = String::new();
    let mut pages = 0;
    loop {
        let a = app
            .get(
                &format!("/v1/stock/KAOS-M/history?min_position={p}&limit=3{after}"),
                &key,
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        let page = a.body["history"].as_array().unwrap();
        assert!(page.len() <= 3);
        paged.extend(
            page.iter()
                .map(|l| l["description"].as_str().unwrap().to_owned()),
        );
        pages += 1;
        match a.body["next"].as_u64() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    assert_eq!(pages, 3, "8 lines in pages of 3");
    let descriptions: Vec<String> = all.iter().map(|l| l.0.clone()).collect();
    assert_eq!(paged, descriptions);
    let unknown = uuid::Uuid::from_u128(0xdead);
    let a = app
        .get(
            &format!("/v1/stock/KAOS-M/history?warehouse_id={unknown}"),
            &key,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{:?}", a.body);
    assert!(
        a.body["detail"].as_str().unwrap().contains("warehouse"),
        "{:?}",
        a.body
    );
    let backwards = format!("from={to}&to={}", text(minutes(T0, 60)));
    for bad in ["limit=0", "limit=100000", "after=minus", backwards.as_str()] {
        let a = app
            .get(&format!("/v1/stock/KAOS-M/history?{bad}"), &key)
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}: {:?}", a.body);
    }
}

/// The rows (SKU, warehouse id, on hand) of `GET /v1/stock?{query}`,
/// walked page by page from `next` to `after`, and the number of pages.
async fn stock_pages(app: &TestApp, key: &str, query: &str) -> (Vec<(String, String, i64)>, usize) {
    let mut rows = Vec::new();
    let mut after = String::new();
    for pages in 1..=20 {
        let a = app.get(&format!("/v1/stock?{query}{after}"), key).await;
        assert_eq!(a.status, StatusCode::OK, "{query}{after}: {:?}", a.body);
        rows.extend(a.body["items"].as_array().unwrap().iter().map(|i| {
            (
                i["sku"].as_str().unwrap().to_owned(),
                i["warehouse_id"].as_str().unwrap().to_owned(),
                i["on_hand"].as_i64().unwrap(),
            )
        }));
        match a.body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return (rows, pages),
        }
    }
    panic!("{query}: paging does not end");
}

#[tokio::test]
async fn stock_levels_are_paged_by_sku_and_warehouse_and_lose_no_row() {
    let app = app().await;
    let (key, malang, _, _) = app.stocked_shop("Toko Dua Gudang").await;
    let s = app
        .post("/v1/warehouses", &key, json!({"name": "Gudang Surabaya"}))
        .await;
    assert_eq!(s.status, StatusCode::CREATED, "{:?}", s.body);
    let surabaya = s.body["id"].as_str().unwrap().to_owned();
    for (sku, warehouse, quantity) in [
        ("KAOS-M", &surabaya, 5),
        ("KAOS-L", &malang, 3),
        ("KAOS-L", &surabaya, 4),
    ] {
        let r = app
            .post(
                "/v1/stock/moves",
                &key,
                json!({"type": "receive", "sku": sku, "warehouse_id": warehouse, "quantity": quantity}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    }
    let p = app.head().await;
    // In SKU then warehouse order (ids in the order of their text).
    let mut every = vec![
        ("KAOS-L".to_owned(), malang.clone(), 3),
        ("KAOS-L".to_owned(), surabaya.clone(), 4),
        ("KAOS-M".to_owned(), malang.clone(), 10),
        ("KAOS-M".to_owned(), surabaya.clone(), 5),
    ];
    every.sort();
    let whole = format!("min_position={p}");
    assert_eq!(stock_pages(&app, &key, &whole).await, (every.clone(), 1));
    // Pages ending between two warehouses of a SKU, and at its end.
    for limit in [1, 2, 3] {
        let (rows, pages) = stock_pages(&app, &key, &format!("{whole}&limit={limit}")).await;
        assert_eq!(rows, every, "limit={limit}");
        assert_eq!(pages, every.len().div_ceil(limit), "limit={limit}");
    }
    // One warehouse, a row a page.
    let (rows, _) = stock_pages(
        &app,
        &key,
        &format!("{whole}&warehouse_id={surabaya}&limit=1"),
    )
    .await;
    let in_surabaya: Vec<_> = every.iter().filter(|r| r.1 == surabaya).cloned().collect();
    assert_eq!(rows, in_surabaya);
    // The cursor of the page before: the last row's SKU and warehouse.
    let first = app.get(&format!("/v1/stock?{whole}&limit=1"), &key).await;
    assert_eq!(
        first.body["next"].as_str(),
        Some(format!("{}@{}", every[0].0, every[0].1).as_str())
    );
    // A SKU alone continues after every row of that SKU.
    let (rows, _) = stock_pages(&app, &key, &format!("{whole}&after=KAOS-L")).await;
    assert_eq!(rows, every[2..]);
    for bad in [
        "KAOS-L@not-a-warehouse".to_owned(),
        format!("@{malang}"),
        "KAOS%20L".to_owned(),
    ] {
        let a = app.get(&format!("/v1/stock?after={bad}"), &key).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{bad}: {:?}",
            a.body
        );
    }
}

#[tokio::test]
async fn stock_levels_of_an_unknown_warehouse_are_not_found() {
    let app = app().await;
    let (key, malang, _, _) = app.stocked_shop("Toko Satu Gudang").await;
    let p = app.head().await;
    let known = app
        .get(
            &format!("/v1/stock?warehouse_id={malang}&min_position={p}"),
            &key,
        )
        .await;
    assert_eq!(known.status, StatusCode::OK, "{:?}", known.body);
    assert_eq!(known.body["items"].as_array().unwrap().len(), 1);
    let unknown = uuid::Uuid::from_u128(0xdead);
    for path in [
        format!("/v1/stock?warehouse_id={unknown}"),
        format!("/v1/stock/KAOS-M/history?warehouse_id={unknown}"),
    ] {
        let a = app.get(&path, &key).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}: {:?}",
            a.body
        );
        assert_eq!(
            a.body["detail"].as_str(),
            Some(format!("warehouse {unknown} does not exist").as_str()),
            "{path}"
        );
    }
}

#[tokio::test]
async fn lists_refuse_a_time_range_that_ends_before_it_starts() {
    let app = app().await;
    let (key, _, customer, _) = app.stocked_shop("Toko Waktu").await;
    let placed = app
        .post("/v1/orders", &key, TestApp::order(&customer, "KAOS-M", 1))
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    let (early, late) = ("2025-12-01T00:00:00Z", "2025-12-10T00:00:00Z");
    for list in ["/v1/orders", "/v1/ledger", "/v1/conversations"] {
        let backwards = app
            .get(&format!("{list}?from={late}&to={early}"), &key)
            .await;
        assert_eq!(
            (backwards.status, backwards.code()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{list}: {:?}",
            backwards.body
        );
        let detail = backwards.body["detail"].as_str().unwrap();
        assert!(
            detail.contains("from") && detail.contains("must not be after to"),
            "{list}: {detail}"
        );
        for fine in [
            format!("from={early}&to={late}"),
            format!("from={early}&to={early}"),
        ] {
            let a = app.get(&format!("{list}?{fine}"), &key).await;
            assert_eq!(a.status, StatusCode::OK, "{list}?{fine}: {:?}", a.body);
        }
    }
}

#[tokio::test]
async fn min_position_is_url_decoded_like_every_query_parameter() {
    let app = app().await;
    let (key, _, _, _) = app.stocked_shop("Toko Kode").await;
    let p = app.head().await;
    let encoded: String = p.to_string().bytes().map(|b| format!("%{b:02X}")).collect();
    for path in [
        format!("/v1/orders/counts?min_position={encoded}"),
        format!("/v1/orders?limit=5&min_position={encoded}"),
        format!("/v1/stock?min_position={encoded}&limit=5"),
    ] {
        let a = app.get(&path, &key).await;
        assert_eq!(a.status, StatusCode::OK, "{path}: {:?}", a.body);
    }
    // What is decoded is still checked, and named as decoded.
    let a = app.get("/v1/orders/counts?min_position=%61", &key).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{:?}", a.body);
    assert!(
        a.body["detail"]
            .as_str()
            .unwrap()
            .contains("min_position must be a position (a whole number), not \"a\""),
        "{:?}",
        a.body
    );
}

#[tokio::test]
async fn analytics_refuse_dates_out_of_range_instead_of_panicking() {
    let app = app().await;
    let (key, _, _, _) = app.stocked_shop("Toko Tanggal").await;
    for (query, named) in [
        ("to=-262143-01-01", "to"),
        ("from=2025-01-01&to=-262143-01-01", "to"),
        ("from=-262143-01-01&to=2025-01-01", "from"),
        ("to=1969-12-31", "to"),
        ("from=%2B10000-01-01", "from"),
        ("to=262143-12-31", "to"),
    ] {
        let a = app.get(&format!("/v1/analytics/sales?{query}"), &key).await;
        assert_eq!(
            (a.status, a.code()),
            (StatusCode::BAD_REQUEST, "bad_request"),
            "{query}: {:?}",
            a.body
        );
        assert!(
            a.body["detail"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{named} must be a date")),
            "{query}: {:?}",
            a.body
        );
    }
    for query in [
        "from=1970-01-01&to=1970-01-31",
        "to=1970-01-05",
        "from=9999-12-01&to=9999-12-31",
    ] {
        let a = app.get(&format!("/v1/analytics/sales?{query}"), &key).await;
        assert_eq!(a.status, StatusCode::OK, "{query}: {:?}", a.body);
    }
}

#[tokio::test]
async fn analytics_refuse_a_limit_out_of_range_instead_of_clamping_it() {
    let app = app().await;
    let (key, _, _, _) = app.stocked_shop("Toko Batas").await;
    for (limit, words) in [
        ("0", "limit must be at least 1"),
        ("101", "limit must be at most 100"),
        ("100000", "limit must be at most 100"),
    ] {
        for report in ["best", "locations"] {
            let a = app
                .get(&format!("/v1/analytics/{report}?limit={limit}"), &key)
                .await;
            assert_eq!(
                (a.status, a.code()),
                (StatusCode::BAD_REQUEST, "bad_request"),
                "{report}?limit={limit}: {:?}",
                a.body
            );
            assert_eq!(
                a.body["detail"].as_str(),
                Some(words),
                "{report}?limit={limit}"
            );
        }
    }
    for limit in ["1", "100"] {
        let a = app
            .get(&format!("/v1/analytics/best?limit={limit}"), &key)
            .await;
        assert_eq!(a.status, StatusCode::OK, "limit={limit}: {:?}", a.body);
    }
}

/// A customer's orders: none yet is an empty list; a customer who does not
/// exist (or is another shop's) is 404, as the customer itself is.
#[tokio::test]
async fn the_orders_of_an_unknown_customer_are_not_found() {
    let app = app().await;
    let (key, _, customer, _) = app.stocked_shop("Toko Pelanggan").await;
    let (other_key, _, other_customer, _) = app.stocked_shop("Toko Lain").await;
    app.settle().await;
    let none_yet = app
        .get(&format!("/v1/customers/{customer}/orders"), &key)
        .await;
    assert_eq!(none_yet.status, StatusCode::OK, "{:?}", none_yet.body);
    assert_eq!(none_yet.body["orders"], json!([]));
    let unknown = app
        .get(
            "/v1/customers/00000000-0000-0000-0000-000000000099/orders",
            &key,
        )
        .await;
    assert_eq!(
        (unknown.status, unknown.code()),
        (StatusCode::NOT_FOUND, "not_found")
    );
    let others = app
        .get(&format!("/v1/customers/{other_customer}/orders"), &key)
        .await;
    assert_eq!(others.status, StatusCode::NOT_FOUND, "{:?}", others.body);
    let own = app
        .get(
            &format!("/v1/customers/{other_customer}/orders"),
            &other_key,
        )
        .await;
    assert_eq!(own.status, StatusCode::OK);
}

/// Text search ignores the spaces around the text it is given.
#[tokio::test]
async fn text_search_trims_its_text() {
    let app = app().await;
    let (key, _, customer, _) = app.stocked_shop("Toko Cari").await;
    let placed = app
        .post("/v1/orders", &key, TestApp::order(&customer, "KAOS-M", 1))
        .await;
    assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.body);
    app.settle().await;
    for q in ["KAOS-M", "%20%20KAOS-M%20", "kaos-m%20"] {
        let found = app.get(&format!("/v1/orders?q={q}"), &key).await;
        assert_eq!(
            found.body["orders"].as_array().map(Vec::len),
            Some(1),
            "q={q}: {:?}",
            found.body
        );
    }
}
