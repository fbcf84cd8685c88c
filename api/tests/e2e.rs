//! End to end over a real socket: the `kedai` binary on a free port, a
//! whole scenario through HTTP, concurrent orders on one SKU (never
//! oversold), `kill -9` and restart (nothing acknowledged lost, the same
//! answers), and a graceful shutdown (SIGTERM: exit 0, a snapshot to
//! start from); `--whatsapp-url` (or `KEDAI_WHATSAPP_URL`) wires the
//! message sender to a gateway, and a URL it cannot use stops the start.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};

const OPERATOR: &str = "e2e-operator-token";

type Server = common::binary::Kedai;

impl Server {
    /// Starts `kedai serve` on a free port and waits until it listens.
    fn start(data: &Path) -> Server {
        Server::start_with(data, &[])
    }

    /// Starts `kedai serve` with more environment variables.
    fn start_with(data: &Path, env: &[(&str, &str)]) -> Server {
        Server::spawn("e2e", OPERATOR, data, &[], env)
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, value) = self.call(reqwest::Method::POST, path, Some(body)).await;
        assert!(status.is_success(), "POST {path}: {status} {value}");
        value
    }

    async fn get(&self, path: &str) -> Value {
        let (status, value) = self.call(reqwest::Method::GET, path, None).await;
        assert!(status.is_success(), "GET {path}: {status} {value}");
        value
    }
}

fn variation(sku: &str, price: i64) -> Value {
    json!({"sku": sku, "options": {"warna": "merah"}, "weight_grams": 300,
           "prices": {"price": price, "price_reseller": price * 8 / 10, "price_dropship": price * 9 / 10},
           "cost": price / 2, "wholesale": [], "in_stock": true})
}

fn order(customer: &str, sku: &str, quantity: i64, cod: bool) -> Value {
    json!({"channel": "SHOPEE", "sender_id": customer, "cod": cod, "lines": [{"sku": sku, "quantity": quantity}],
           "shipping": {"courier": "JNE", "service": "REG", "cost": 14_000}})
}

/// What the server says about everything the scenario did.
async fn snapshot_of(c: &Client, orders: &[String], position: u64) -> Value {
    let counts = c
        .get(&format!("/v1/orders/counts?min_position={position}"))
        .await;
    let balance = c.get("/v1/balance").await;
    let stock = c.get("/v1/stock/BATIK-MERAH").await;
    let mut statuses = Vec::new();
    for id in orders {
        statuses.push(c.get(&format!("/v1/orders/{id}")).await["status"].clone());
    }
    json!({"counts": counts["counts"], "pending": balance["pending"], "available": balance["available"], "withdrawing": balance["withdrawing"],
           "stock": stock["total"], "statuses": statuses})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_shop_over_http_survives_kill_9_and_stops_gracefully() {
    let data = tempfile::tempdir().unwrap();
    let server = Server::start(data.path());
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/shops", server.base))
        .bearer_auth(OPERATOR)
        .json(&json!({"name": "Toko E2E", "currency": "IDR"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c = Client {
        http: http.clone(),
        base: server.base.clone(),
        key: created["owner_key"].as_str().unwrap().to_owned(),
    };

    let malang = c
        .post("/v1/warehouses", json!({"name": "Gudang Malang"}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.post(
        "/v1/warehouses",
        json!({"name": "Gudang Surabaya", "city": "Surabaya"}),
    )
    .await;
    c.post("/v1/products", json!({"name": "Batik Tulis", "kind": "S", "variations": [variation("BATIK-MERAH", 100_000)]})).await;
    c.post(
        "/v1/stock/moves",
        json!({"type": "receive", "sku": "BATIK-MERAH", "warehouse_id": malang, "quantity": 60}),
    )
    .await;
    let customer = c.post("/v1/customers", json!({"name": "Siti", "phone": "081234567890", "city": "Kota Malang", "category": "N"})).await["id"].as_str().unwrap().to_owned();

    // A COD order through its whole life, a paid one, money and chat.
    let cod = c
        .post("/v1/orders", order(&customer, "BATIK-MERAH", 1, true))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.post(&format!("/v1/orders/{cod}/ship"), json!({"awb": "JNE777"}))
        .await;
    c.post(&format!("/v1/orders/{cod}/deliver"), json!({}))
        .await;
    c.post(
        "/v1/wallet/entries",
        json!({"type": "settle_cod", "order_ids": [cod]}),
    )
    .await;
    let paid = c
        .post("/v1/orders", order(&customer, "BATIK-MERAH", 2, false))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    c.post(
        &format!("/v1/orders/{paid}/payments"),
        json!({"amount": 214_000, "method": "bank_transfer"}),
    )
    .await;
    c.post("/v1/withdrawals", json!({"amount": 50_000, "bank_name": "BCA", "bank_account_no": "1234567890", "bank_account_name": "Toko"})).await;
    c.post("/v1/conversations/inbound", json!({"party": {"channel": "whatsapp", "handle": "6281234567890"}, "text": "Kak, sudah dikirim?"})).await;
    let last = c.post("/v1/conversations/outbound", json!({"party": {"channel": "whatsapp", "handle": "6281234567890"}, "text": "Sudah kak, resi JNE777"})).await;
    let position = last["position"].as_u64().unwrap();
    let balance = c.get(&format!("/v1/balance?min_position={position}")).await;
    assert_eq!(
        balance["available"].as_i64(),
        Some(100_308 - 50_000),
        "COD net profit settled, minus a withdrawal (no fee by default)"
    );

    // Concurrent buyers over HTTP on one SKU: 57 units left, 120 buyers.
    let mut buyers = Vec::new();
    for _ in 0..120 {
        let (http, base, key, customer) = (
            http.clone(),
            c.base.clone(),
            c.key.clone(),
            customer.clone(),
        );
        buyers.push(tokio::spawn(async move {
            let res = http
                .post(format!("{base}/v1/orders"))
                .bearer_auth(key)
                .json(&order(&customer, "BATIK-MERAH", 1, false))
                .send()
                .await
                .unwrap();
            let status = res.status();
            let body: Value = res.json().await.unwrap();
            (status, body)
        }));
    }
    let mut acknowledged = vec![cod.clone(), paid.clone()];
    let mut max_position = position;
    for b in buyers {
        let (status, body) = b.await.unwrap();
        match status {
            StatusCode::CREATED => {
                acknowledged.push(body["id"].as_str().unwrap().to_owned());
                max_position = max_position.max(body["position"].as_u64().unwrap());
            }
            StatusCode::CONFLICT => assert_eq!(body["code"].as_str(), Some("insufficient_stock")),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(
        acknowledged.len(),
        2 + 57,
        "exactly the stock left is sold over HTTP"
    );
    let before = snapshot_of(&c, &acknowledged, max_position).await;
    assert_eq!(before["stock"]["available"].as_i64(), Some(0));

    // kill -9: nothing acknowledged is lost, and the answers are the same.
    server.kill_9();
    let server = Server::start(data.path());
    let c = Client {
        base: server.base.clone(),
        ..c
    };
    let after = snapshot_of(&c, &acknowledged, max_position).await;
    assert_eq!(after, before, "the same state after kill -9 and restart");

    // SIGTERM: a clean stop (exit 0) with a snapshot; the next start uses it.
    let status = server.terminate();
    assert!(status.success(), "kedai exits 0 after SIGTERM: {status}");
    assert!(data.path().join("projections.snapshot").exists());
    let server = Server::start(data.path());
    let c = Client {
        base: server.base.clone(),
        ..c
    };
    assert_eq!(snapshot_of(&c, &acknowledged, max_position).await, before);
    let health = c.get("/healthz").await;
    assert_eq!(health["status"].as_str(), Some("ok"));
    assert!(server.terminate().success());

    // Without the snapshot, a start folds the whole log on every core:
    // the same answers.
    std::fs::remove_file(data.path().join("projections.snapshot")).unwrap();
    let server = Server::start(data.path());
    let c = Client {
        base: server.base.clone(),
        ..c
    };
    assert_eq!(snapshot_of(&c, &acknowledged, max_position).await, before);
    assert!(server.terminate().success());
}

/// A WhatsApp-like gateway on loopback that counts what it gets.
async fn gateway() -> (String, tokio::sync::watch::Receiver<Vec<Value>>) {
    let (tx, rx) = tokio::sync::watch::channel(Vec::<Value>::new());
    let tx = std::sync::Arc::new(tx);
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let tx = std::sync::Arc::clone(&tx);
            async move {
                tx.send_modify(|got| got.push(body));
                axum::Json(json!({"messages": [{"id": "wamid.e2e"}]}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/send"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kedai_serve_sends_templated_messages_to_its_gateway() {
    let data = tempfile::tempdir().unwrap();
    let (url, mut got) = gateway().await;
    let server = Server::start_with(data.path(), &[("KEDAI_WHATSAPP_URL", &url)]);
    let http = reqwest::Client::new();
    let created: Value = http
        .post(format!("{}/v1/shops", server.base))
        .bearer_auth(OPERATOR)
        .json(&json!({"name": "Toko Pesan", "currency": "MYR"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let c = Client {
        http,
        base: server.base.clone(),
        key: created["owner_key"].as_str().unwrap().to_owned(),
    };
    let template = c
        .post(
            "/v1/templates",
            json!({"name": "pesanan", "body": "Hai {{fullname}}, pesanan #{{order_id}} sudah dihantar."}),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sent = c
        .post(
            "/v1/messages/template",
            json!({"template_id": template, "phone_number": "012-345 6789", "data": {"fullname": "Aisyah", "order_id": 67}}),
        )
        .await;
    let conversation = sent["id"].as_str().unwrap().to_owned();
    let reached = tokio::time::timeout(Duration::from_secs(30), got.wait_for(|g| !g.is_empty()))
        .await
        .expect("the gateway got the message in time")
        .unwrap()
        .clone();
    assert_eq!(reached[0]["to"].as_str(), Some("60123456789"));
    assert_eq!(
        reached[0]["text"]["body"].as_str(),
        Some("Hai Aisyah, pesanan #67 sudah dihantar.")
    );
    // The outcome is recorded: follow the shop's events until it is.
    let mut stream = c
        .http
        .get(format!(
            "{}/v1/events/stream?after={}",
            c.base, sent["position"]
        ))
        .bearer_auth(&c.key)
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let dispatched = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(chunk) = stream.chunk().await.unwrap() {
            text.push_str(&String::from_utf8_lossy(&chunk));
            // Server-sent events are blocks of lines ended by a blank line.
            let found = text.split("\n\n").find_map(|block| {
                let lines: Vec<&str> = block.lines().collect();
                lines.contains(&"event: MessageDispatched").then(|| {
                    lines
                        .iter()
                        .find_map(|l| l.strip_prefix("id: "))
                        .map(|p| p.trim().parse::<u64>().unwrap())
                })?
            });
            if found.is_some() {
                return found;
            }
        }
        None
    })
    .await
    .expect("MessageDispatched in time")
    .expect("a position");
    // An open stream would hold the graceful stop for its grace period.
    drop(stream);
    let messages = c
        .get(&format!(
            "/v1/conversations/{conversation}/messages?min_position={dispatched}"
        ))
        .await;
    assert_eq!(
        messages["messages"][0]["delivery"]["status"].as_str(),
        Some("sent")
    );
    assert_eq!(
        messages["messages"][0]["delivery"]["gateway_message_id"].as_str(),
        Some("wamid.e2e")
    );
    assert!(server.terminate().success());
    assert_eq!(got.borrow().len(), 1, "sent once");

    // A gateway URL this build cannot use stops kedai before it serves.
    let refused = Command::new(env!("CARGO_BIN_EXE_kedai"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(data.path())
        .args(["--whatsapp-url", "https://127.0.0.1:9/send"])
        .env("KEDAI_OPERATOR_TOKEN", OPERATOR)
        .env("KEDAI_LOG", "warn")
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("must start with http://"), "{stderr}");
}
