//! Several nodes end to end: three real `kedai serve` processes on one
//! PostgreSQL database, each with its own projections following the shared
//! log, driven over HTTP.
//!
//! - A key made on one node works on the others; a command is readable on
//!   every node with `min_position`; a command retried with the same
//!   `Idempotency-Key` on another node gets the same answer and records
//!   nothing new.
//! - Concurrent orders on one SKU spread over the nodes never oversell:
//!   exactly the stock is sold, and every node shows the same stock and
//!   the same orders.
//! - A node killed with `kill -9` in the middle of a burst loses nothing it
//!   acknowledged; the burst's requests it never answered are retried on
//!   the others with their `Idempotency-Key` (each recorded at most once);
//!   the others keep serving; the killed node, restarted, catches up and
//!   agrees.
//!
//! The database is a fresh one on the server named by
//! `KEDAI_TEST_DATABASE_URL` (as `scripts/test.sh` runs it), else on a
//! throwaway server this test starts, like every PostgreSQL test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod common;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

const OPERATOR: &str = "e2e-nodes-operator";
/// Longest any one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most times a command answered `409 conflict` (the engine gave up after
/// its own retries against the other nodes' appends) is sent again.
const CONFLICT_RETRIES: usize = 20;

/// A `kedai serve --store postgres` process.
type Node = common::binary::Kedai;

impl Node {
    fn start(name: &'static str, data: &Path, database_url: &str, extra: &[&str]) -> Node {
        let args = [
            &["--store", "postgres", "--database-url", database_url],
            extra,
        ]
        .concat();
        Node::spawn(name, OPERATOR, data, &args, &[])
    }
}

/// An HTTP answer: status and JSON body (`null` if none).
struct Answer {
    status: StatusCode,
    body: Value,
}

impl Answer {
    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    key: &str,
    idempotency_key: Option<&str>,
    body: Option<&Value>,
) -> Result<Answer, reqwest::Error> {
    let mut req = http.request(method, url).bearer_auth(key);
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let res = req.send().await?;
    let status = res.status();
    let body = res.json().await.unwrap_or(Value::Null);
    Ok(Answer { status, body })
}

/// A command that must succeed; its answer's body.
async fn post(http: &reqwest::Client, base: &str, key: &str, path: &str, body: Value) -> Value {
    let a = send(
        http,
        reqwest::Method::POST,
        format!("{base}{path}"),
        key,
        None,
        Some(&body),
    )
    .await
    .unwrap_or_else(|e| panic!("POST {base}{path}: {e}"));
    assert!(
        a.status.is_success(),
        "POST {base}{path}: {} {}",
        a.status,
        a.body
    );
    a.body
}

/// A read that must succeed.
async fn get(http: &reqwest::Client, base: &str, key: &str, path: &str) -> Value {
    let a = send(
        http,
        reqwest::Method::GET,
        format!("{base}{path}"),
        key,
        None,
        None,
    )
    .await
    .unwrap_or_else(|e| panic!("GET {base}{path}: {e}"));
    assert!(
        a.status.is_success(),
        "GET {base}{path}: {} {}",
        a.status,
        a.body
    );
    a.body
}

fn position(answer: &Value) -> u64 {
    answer["position"]
        .as_u64()
        .unwrap_or_else(|| panic!("a position in {answer}"))
}

/// The store's head as a node sees it.
async fn store_head(http: &reqwest::Client, base: &str) -> u64 {
    let h: Value = http
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    h["store_head"].as_u64().unwrap()
}

/// What a node shows of the shop once its projections reached `at`: the
/// SKUs' stock totals, the order counts, and the ids of every order.
async fn view(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    skus: &[&str],
    at: u64,
) -> (Vec<Value>, Value, BTreeSet<String>) {
    let mut stock = Vec::new();
    for sku in skus {
        let s = get(
            http,
            base,
            key,
            &format!("/v1/stock/{sku}?min_position={at}"),
        )
        .await;
        stock.push(s["total"].clone());
    }
    let counts = get(
        http,
        base,
        key,
        &format!("/v1/orders/counts?min_position={at}"),
    )
    .await;
    let mut ids = BTreeSet::new();
    let mut after: Option<u64> = None;
    for _ in 0..100 {
        let page_after = after.map(|a| format!("&after={a}")).unwrap_or_default();
        let page = get(
            http,
            base,
            key,
            &format!("/v1/orders?limit=500&min_position={at}{page_after}"),
        )
        .await;
        for o in page["orders"].as_array().unwrap() {
            assert!(
                ids.insert(o["order_id"].as_str().unwrap().to_owned()),
                "each order listed once"
            );
        }
        match page["next"].as_u64() {
            Some(n) => after = Some(n),
            None => return (stock, counts, ids),
        }
    }
    panic!("the order list on {base} never ended");
}

/// How one order request of a burst ended.
#[derive(Debug, Clone)]
struct Placed {
    idempotency_key: String,
    /// The node that answered.
    node: usize,
    /// `Some((order id, position))` if accepted, `None` if refused for
    /// want of stock.
    accepted: Option<(String, u64)>,
    /// Answered `already_recorded` (a retry after a lost answer found the
    /// order recorded).
    repeat: bool,
    /// Sent to another node after its own node died.
    failed_over: bool,
    /// Answered after the kill.
    after_kill: bool,
    /// The answer's body.
    answer: Value,
}

/// The shared state of a burst.
struct Burst {
    http: reqwest::Client,
    bases: Vec<String>,
    key: String,
    /// Nodes killed (a request to one may fail in transit).
    dead: Vec<AtomicBool>,
    /// Acknowledged orders per node, and in all.
    acks: Vec<AtomicUsize>,
    acked: AtomicUsize,
    /// Woken when `kill_after` orders have been acknowledged in all.
    kill_after: usize,
    ready_to_kill: Notify,
    /// Commands answered `409 conflict` (and sent again).
    conflicts: AtomicUsize,
}

impl Burst {
    /// Places one order through `node`; on a transport failure of a dead
    /// node, sends it again with the same key to the next live one.
    /// Returns a definite outcome.
    async fn place(self: Arc<Self>, node: usize, idempotency_key: String, body: Value) -> Placed {
        let mut node = node;
        let mut failed_over = false;
        let mut conflicts = 0;
        loop {
            let killed_before = self.dead.iter().any(|d| d.load(Ordering::SeqCst));
            let sent = send(
                &self.http,
                reqwest::Method::POST,
                format!("{}/v1/orders", self.bases[node]),
                &self.key,
                Some(&idempotency_key),
                Some(&body),
            )
            .await;
            let answer = match sent {
                Ok(a) => a,
                Err(e) => {
                    // Only a killed node may fail to answer.
                    assert!(
                        self.dead[node].load(Ordering::SeqCst),
                        "node {node} (alive) failed to answer: {e}"
                    );
                    failed_over = true;
                    node = (node + 1..node + self.bases.len())
                        .map(|n| n % self.bases.len())
                        .find(|&n| !self.dead[n].load(Ordering::SeqCst))
                        .expect("a live node");
                    continue;
                }
            };
            let done = |accepted, repeat| Placed {
                idempotency_key: idempotency_key.clone(),
                node,
                accepted,
                repeat,
                failed_over,
                after_kill: killed_before,
                answer: answer.body.clone(),
            };
            match (answer.status, answer.code()) {
                (StatusCode::CREATED | StatusCode::OK, _) => {
                    let id = answer.body["id"].as_str().unwrap().to_owned();
                    let repeat = answer.body["status"] == "already_recorded";
                    assert_eq!(repeat, answer.status == StatusCode::OK, "{}", answer.body);
                    self.acks[node].fetch_add(1, Ordering::SeqCst);
                    if self.acked.fetch_add(1, Ordering::SeqCst) + 1 == self.kill_after {
                        self.ready_to_kill.notify_one();
                    }
                    return done(Some((id, position(&answer.body))), repeat);
                }
                (StatusCode::CONFLICT, "insufficient_stock") => return done(None, false),
                (StatusCode::CONFLICT, "conflict") if conflicts < CONFLICT_RETRIES => {
                    conflicts += 1;
                    self.conflicts.fetch_add(1, Ordering::SeqCst);
                }
                _ => panic!(
                    "order {idempotency_key} on node {node}: {} {}",
                    answer.status, answer.body
                ),
            }
        }
    }
}

fn order_body(customer: &str, sku: &str, quantity: u64) -> Value {
    json!({"channel": "WHATSAPP", "sender_id": customer,
        "lines": [{"sku": sku, "quantity": quantity}],
        "shipping": {"courier": "JNE", "service": "REG", "cost": 9_000}})
}

/// Sends `orders` order requests spread over the nodes (order `i` to node
/// `i % nodes`), at most `in_flight` at once; returns their outcomes.
fn burst(
    state: &Arc<Burst>,
    prefix: &str,
    customer: &str,
    sku: &str,
    quantity: u64,
    orders: usize,
    in_flight: usize,
) -> JoinSet<Placed> {
    let permits = Arc::new(Semaphore::new(in_flight));
    let mut set = JoinSet::new();
    for i in 0..orders {
        let state = Arc::clone(state);
        let permits = Arc::clone(&permits);
        let body = order_body(customer, sku, quantity);
        let key = format!("{prefix}-{i}");
        let node = i % state.bases.len();
        set.spawn(async move {
            let _permit = permits.acquire().await.unwrap();
            state.place(node, key, body).await
        });
    }
    set
}

async fn join_all(mut set: JoinSet<Placed>) -> Vec<Placed> {
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Some(done) = tokio::time::timeout_at(deadline.into(), set.join_next())
        .await
        .expect("the burst ended within a minute")
    {
        out.push(done.expect("an order task panicked"));
    }
    out
}

fn last_position(placed: &[Placed]) -> u64 {
    placed
        .iter()
        .filter_map(|p| p.accepted.as_ref().map(|(_, at)| *at))
        .max()
        .unwrap()
}

fn accepted_ids(placed: &[Placed]) -> BTreeSet<String> {
    placed
        .iter()
        .filter_map(|p| p.accepted.as_ref().map(|(id, _)| id.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_one_database_agree_never_oversell_and_survive_kill_9() {
    let started = Instant::now();
    let db = kedai_engine::store::postgres::throwaway::test_database()
        .await
        .expect("a test database");
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let data: Vec<PathBuf> = dirs.iter().map(|d| d.path().to_owned()).collect();
    // One node runs the webhook worker, the others not (as documented).
    let a = Node::start("a", &data[0], &db.url, &[]);
    let b = Node::start("b", &data[1], &db.url, &["--no-webhooks"]);
    let c = Node::start("c", &data[2], &db.url, &["--no-webhooks"]);
    let bases = vec![a.base.clone(), b.base.clone(), c.base.clone()];
    let http = reqwest::Client::builder()
        .timeout(REQUEST_TIMEOUT)
        .build()
        .unwrap();

    // The shop, set up through node A.
    let created = send(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/shops", a.base),
        OPERATOR,
        Some("nodes-shop"),
        Some(&json!({"name": "Toko Tiga Node", "currency": "IDR"})),
    )
    .await
    .unwrap();
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let owner = created.body["owner_key"].as_str().unwrap().to_owned();
    let warehouse = post(
        &http,
        &a.base,
        &owner,
        "/v1/warehouses",
        json!({"name": "Gudang Bekasi"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let variation = |sku: &str| {
        json!({"sku": sku, "options": {}, "weight_grams": 300,
            "prices": {"price": 85_000, "price_reseller": 75_000, "price_dropship": 80_000},
            "cost": 50_000, "wholesale": [], "in_stock": true})
    };
    post(
        &http,
        &a.base,
        &owner,
        "/v1/products",
        json!({"name": "Gamis", "kind": "S", "variations": [
            variation("GAMIS-M"), variation("GAMIS-L"), variation("GAMIS-XL")]}),
    )
    .await;
    let customer = post(
        &http,
        &a.base,
        &owner,
        "/v1/customers",
        json!({"name": "Siti Rahma", "phone": "081298765432", "city": "Bekasi", "category": "N"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    const STOCK_M: u64 = 40;
    const STOCK_L: u64 = 50;
    let mut received = Vec::new();
    for (sku, quantity) in [("GAMIS-M", STOCK_M), ("GAMIS-L", STOCK_L), ("GAMIS-XL", 10)] {
        received.push(position(
            &post(&http, &a.base, &owner, "/v1/stock/moves",
                json!({"type": "receive", "sku": sku, "warehouse_id": warehouse, "quantity": quantity}))
            .await,
        ));
    }
    let at = received[2];

    // A key made through node A works at once through B and C (they wait
    // for the log's head when a key is unknown to them).
    let issued = send(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/keys", a.base),
        &owner,
        Some("staff-key"),
        Some(&json!({"role": "staff", "label": "gudang"})),
    )
    .await
    .unwrap();
    assert_eq!(issued.status, StatusCode::CREATED, "{}", issued.body);
    let staff = issued.body["key"].as_str().unwrap().to_owned();
    for base in &bases[1..] {
        let shop = get(&http, base, &staff, "/v1/shop").await;
        assert_eq!(shop["name"], "Toko Tiga Node");
    }
    // Issuing it again through C with the same Idempotency-Key: the same
    // key id and position, no new secret, nothing recorded.
    let head = store_head(&http, &c.base).await;
    let again = send(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/keys", c.base),
        &owner,
        Some("staff-key"),
        Some(&json!({"role": "staff", "label": "gudang"})),
    )
    .await
    .unwrap();
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["key_id"], issued.body["key_id"]);
    assert_eq!(again.body["position"], issued.body["position"]);
    assert_eq!(again.body["key"], Value::Null, "a secret is shown once");
    assert_eq!(store_head(&http, &c.base).await, head);
    // The stock received through A, read through B and C.
    for base in &bases {
        let s = get(
            &http,
            base,
            &staff,
            &format!("/v1/stock/GAMIS-M?min_position={at}"),
        )
        .await;
        assert_eq!(s["total"]["available"], STOCK_M, "{base}: {s}");
    }

    // Each node places an order (on GAMIS-XL) before the bursts, so that
    // all three have the shop in their command engine's cache when they
    // start.
    let mut warm = BTreeSet::new();
    for base in &bases {
        let placed = post(
            &http,
            base,
            &staff,
            "/v1/orders",
            order_body(&customer, "GAMIS-XL", 1),
        )
        .await;
        warm.insert(placed["id"].as_str().unwrap().to_owned());
    }

    // 1. A burst of orders of 2 units each on GAMIS-M through all three
    // nodes, for twice the stock.
    let state = Arc::new(Burst {
        http: http.clone(),
        bases: bases.clone(),
        key: staff.clone(),
        dead: (0..3).map(|_| AtomicBool::new(false)).collect(),
        acks: (0..3).map(|_| AtomicUsize::new(0)).collect(),
        acked: AtomicUsize::new(0),
        kill_after: usize::MAX,
        ready_to_kill: Notify::new(),
        conflicts: AtomicUsize::new(0),
    });
    let t = Instant::now();
    let first = join_all(burst(&state, "m", &customer, "GAMIS-M", 2, 40, 24)).await;
    let first_secs = t.elapsed().as_secs_f64();
    let sold: Vec<&Placed> = first.iter().filter(|p| p.accepted.is_some()).collect();
    assert_eq!(
        sold.len() as u64 * 2,
        STOCK_M,
        "exactly the stock is sold, no more, no less"
    );
    // (Which node sells how much is not fair, and need not be: a node
    // whose engine has the SKU's stream in its cache decides and appends
    // one order after another, while one whose append lost the race
    // reloads the stream and decides again.)
    let first_per_node: Vec<usize> = state
        .acks
        .iter()
        .map(|a| a.load(Ordering::SeqCst))
        .collect();
    assert!(sold.iter().all(|p| !p.repeat && !p.failed_over));
    let ids = accepted_ids(&first);
    assert_eq!(ids.len(), sold.len(), "each accepted order has its own id");
    let at = last_position(&first);
    let mut views = Vec::new();
    for base in &bases {
        let (stock, counts, listed) = view(&http, base, &staff, &["GAMIS-M"], at).await;
        assert_eq!(
            stock[0],
            json!({"on_hand": STOCK_M, "reserved": STOCK_M, "available": 0}),
            "{base}"
        );
        assert_eq!(counts["total"], warm.len() + sold.len(), "{base}: {counts}");
        let all: BTreeSet<String> = ids.union(&warm).cloned().collect();
        assert_eq!(listed, all, "{base} lists exactly the accepted orders");
        views.push(counts);
    }
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "the nodes agree: {views:?}"
    );

    // An accepted order retried through the other nodes with its
    // Idempotency-Key: the same answer (but `already_recorded`, 200),
    // nothing recorded. The same key with another request is refused.
    let original = sold[0];
    let body = order_body(&customer, "GAMIS-M", 2);
    let mut first_answer = original.answer.clone();
    assert_eq!(first_answer["status"], "recorded");
    first_answer["status"] = json!("already_recorded");
    let head = store_head(&http, &a.base).await;
    for (_, base) in bases
        .iter()
        .enumerate()
        .filter(|(n, _)| *n != original.node)
    {
        let retried = send(
            &http,
            reqwest::Method::POST,
            format!("{base}/v1/orders"),
            &staff,
            Some(&original.idempotency_key),
            Some(&body),
        )
        .await
        .unwrap();
        assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
        assert_eq!(
            retried.body, first_answer,
            "{base} answers the retry as node {} answered the order",
            original.node
        );
        assert_eq!(retried.body["status"], "already_recorded");
        assert_eq!(
            Some((
                retried.body["id"].as_str().unwrap().to_owned(),
                position(&retried.body)
            )),
            original.accepted
        );
        let reused = send(
            &http,
            reqwest::Method::POST,
            format!("{base}/v1/orders"),
            &staff,
            Some(&original.idempotency_key),
            Some(&order_body(&customer, "GAMIS-M", 1)),
        )
        .await
        .unwrap();
        assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(reused.code(), "idempotency_key_reused");
    }
    assert_eq!(store_head(&http, &b.base).await, head, "nothing recorded");

    let conflicts_first = state.conflicts.load(Ordering::SeqCst);

    // 2. 1-unit orders on GAMIS-L, for three times the stock: a few
    // through node C alone, then a burst through all three, in which C is
    // killed once 10 more have been acknowledged. Requests C never
    // answered go to the next live node with the same Idempotency-Key.
    const BEFORE_BURST: usize = 5;
    let state = Arc::new(Burst {
        http: http.clone(),
        bases: bases.clone(),
        key: staff.clone(),
        dead: (0..3).map(|_| AtomicBool::new(false)).collect(),
        acks: (0..3).map(|_| AtomicUsize::new(0)).collect(),
        acked: AtomicUsize::new(0),
        kill_after: BEFORE_BURST + 10,
        ready_to_kill: Notify::new(),
        conflicts: AtomicUsize::new(0),
    });
    let t = Instant::now();
    let mut second = Vec::new();
    for i in 0..BEFORE_BURST {
        let body = order_body(&customer, "GAMIS-L", 1);
        second.push(Arc::clone(&state).place(2, format!("l-c-{i}"), body).await);
    }
    let running = burst(&state, "l", &customer, "GAMIS-L", 1, 150 - BEFORE_BURST, 24);
    tokio::time::timeout(Duration::from_secs(30), state.ready_to_kill.notified())
        .await
        .expect("orders of the burst acknowledged");
    state.dead[2].store(true, Ordering::SeqCst);
    let c_name = c.name;
    c.kill_9();
    second.extend(join_all(running).await);
    let second_secs = t.elapsed().as_secs_f64();
    let sold: Vec<&Placed> = second.iter().filter(|p| p.accepted.is_some()).collect();
    assert_eq!(
        sold.len() as u64,
        STOCK_L,
        "exactly the stock is sold, through a kill -9"
    );
    let acked_by_c: Vec<&Placed> = sold.iter().copied().filter(|p| p.node == 2).collect();
    assert!(
        acked_by_c.len() >= BEFORE_BURST,
        "node {c_name} acknowledged orders before it died"
    );
    let failed_over = second.iter().filter(|p| p.failed_over).count();
    assert!(
        failed_over > 0,
        "requests to node {c_name} were cut off by the kill"
    );
    assert!(
        second.iter().any(|p| p.after_kill && p.node != 2),
        "the survivors answered after the kill"
    );
    let ids_l = accepted_ids(&second);
    assert_eq!(
        ids_l.len(),
        sold.len(),
        "each accepted order has its own id"
    );
    assert!(ids_l.is_disjoint(&ids));
    let at = last_position(&second);
    // Every acknowledged order, those node C acknowledged included, is
    // readable through the survivors.
    for base in &bases[..2] {
        for p in &acked_by_c {
            let (id, _) = p.accepted.as_ref().unwrap();
            let o = get(
                &http,
                base,
                &staff,
                &format!("/v1/orders/{id}?min_position={at}"),
            )
            .await;
            assert_eq!(o["order_id"], *id);
        }
        let (stock, counts, listed) = view(&http, base, &staff, &["GAMIS-M", "GAMIS-L"], at).await;
        assert_eq!(
            stock[1],
            json!({"on_hand": STOCK_L, "reserved": STOCK_L, "available": 0}),
            "{base}"
        );
        assert_eq!(
            counts["total"],
            warm.len() + ids.len() + ids_l.len(),
            "{base}: {counts}"
        );
        let all: BTreeSet<String> = ids.union(&ids_l).chain(&warm).cloned().collect();
        assert_eq!(listed, all, "{base} lists exactly the accepted orders");
    }

    // The survivors keep taking commands.
    let mut at = at;
    for (i, base) in bases[..2].iter().enumerate() {
        let placed = send(
            &http,
            reqwest::Method::POST,
            format!("{base}/v1/orders"),
            &staff,
            Some(&format!("xl-{i}")),
            Some(&order_body(&customer, "GAMIS-XL", 3)),
        )
        .await
        .unwrap();
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.body);
        at = at.max(position(&placed.body));
    }

    // Node C, restarted on its data directory, catches up and agrees; a
    // retry of an order it acknowledged before dying answers the same.
    let c = Node::start("c", &data[2], &db.url, &["--no-webhooks"]);
    let mut seen = Vec::new();
    for base in [&a.base, &b.base, &c.base] {
        seen.push(view(&http, base, &staff, &["GAMIS-M", "GAMIS-L", "GAMIS-XL"], at).await);
    }
    assert_eq!(
        seen[0].0[2],
        json!({"on_hand": 10, "reserved": 9, "available": 1})
    );
    assert!(
        seen.windows(2).all(|w| w[0] == w[1]),
        "the restarted node agrees with the others"
    );
    let before = &acked_by_c[0];
    let (id, pos) = before.accepted.clone().unwrap();
    let head = store_head(&http, &c.base).await;
    let retried = send(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/orders", c.base),
        &staff,
        Some(&before.idempotency_key),
        Some(&order_body(&customer, "GAMIS-L", 1)),
    )
    .await
    .unwrap();
    assert_eq!(retried.status, StatusCode::OK, "{}", retried.body);
    assert_eq!(retried.body["id"], id);
    assert_eq!(position(&retried.body), pos);
    assert_eq!(store_head(&http, &c.base).await, head, "nothing recorded");
    // And it takes commands again, readable through the others.
    let placed = post(
        &http,
        &c.base,
        &staff,
        "/v1/orders",
        order_body(&customer, "GAMIS-XL", 1),
    )
    .await;
    let (id, at) = (placed["id"].as_str().unwrap().to_owned(), position(&placed));
    for base in [&a.base, &b.base] {
        let s = get(
            &http,
            base,
            &staff,
            &format!("/v1/stock/GAMIS-XL?min_position={at}"),
        )
        .await;
        assert_eq!(s["total"]["available"], 0, "{base}: {s}");
        let o = get(
            &http,
            base,
            &staff,
            &format!("/v1/orders/{id}?min_position={at}"),
        )
        .await;
        assert_eq!(o["order_id"], id);
    }

    let repeats = second.iter().filter(|p| p.repeat).count();
    eprintln!(
        "nodes e2e: {} orders in {first_secs:.1} s (accepted per node {first_per_node:?}, {} \
         conflicts retried); {} orders in {second_secs:.1} s across a kill -9 (accepted per \
         node {:?}, {} acknowledged by the killed node, {failed_over} sent again to a survivor, \
         {repeats} of them found recorded, {} conflicts retried); {:.1} s in all",
        first.len(),
        conflicts_first,
        second.len(),
        state
            .acks
            .iter()
            .map(|a| a.load(Ordering::SeqCst))
            .collect::<Vec<_>>(),
        acked_by_c.len(),
        state.conflicts.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
    drop((a, b, c));
}
