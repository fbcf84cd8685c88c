//! The message sender and its WhatsApp-like HTTP adapter against a real
//! HTTP server on loopback (a small axum app in the test): a message sent
//! at once; 500s, then success, with the backoff doubling (on a manual
//! clock, so no real time passes); a gateway that keeps failing, and one
//! that refuses, end as `failed`; and a message queued before a restart is
//! sent once after it.

mod common;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use common::*;
use kedai_api::serve::{Workers, start, start_with_workers};
use kedai_api::workers::outbox::{MessageSender, Outbox, RetryPolicy};
use kedai_api::workers::whatsapp::{WhatsappConfig, WhatsappSender};
use kedai_engine::Timestamp;
use kedai_engine::clock::{Clock, ManualClock};
use kedai_projections::Projections;
use serde_json::{Value, json};
use tokio::sync::watch;

/// One request the gateway got.
#[derive(Debug, Clone)]
struct Got {
    body: Value,
    idempotency_key: String,
    authorization: String,
    /// The manual clock's time when it came.
    at: Timestamp,
}

#[derive(Clone)]
struct Gateway {
    /// Statuses to answer with, in order; 200 once they run out.
    script: Arc<Mutex<VecDeque<u16>>>,
    got: Arc<Mutex<Vec<Got>>>,
    clock: Arc<ManualClock>,
}

async fn hook(State(g): State<Gateway>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let n = {
        let mut got = g.got.lock().unwrap();
        got.push(Got {
            body: serde_json::from_str(&body).unwrap_or(Value::Null),
            idempotency_key: header("idempotency-key"),
            authorization: header("authorization"),
            at: g.clock.now(),
        });
        got.len()
    };
    let status = g.script.lock().unwrap().pop_front().unwrap_or(200);
    let status = StatusCode::from_u16(status).unwrap();
    let answer = if status.is_success() {
        json!({"messaging_product": "whatsapp", "messages": [{"id": format!("wamid.{n}")}]})
            .to_string()
    } else {
        format!("gateway says {}", status.as_u16())
    };
    (status, answer)
}

/// A gateway on 127.0.0.1 answering with `script`; returns it and its URL.
async fn gateway(clock: Arc<ManualClock>, script: &[u16]) -> (Gateway, String) {
    let g = Gateway {
        script: Arc::new(Mutex::new(script.iter().copied().collect())),
        got: Arc::new(Mutex::new(Vec::new())),
        clock,
    };
    let app = axum::Router::new()
        .route("/v1/messages", axum::routing::post(hook))
        .with_state(g.clone());
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (g, format!("http://{addr}/v1/messages"))
}

impl Gateway {
    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }
}

fn sender(url: &str) -> Arc<dyn MessageSender> {
    let mut config = WhatsappConfig::new(url);
    config.token = Some("wa-token-1".into());
    config.request_timeout = Duration::from_secs(10);
    Arc::new(WhatsappSender::new(&config).unwrap())
}

fn policy() -> RetryPolicy {
    RetryPolicy {
        first_delay: Duration::from_secs(2),
        delay_max: Duration::from_secs(20),
        give_up_after: Duration::from_secs(60),
        attempts_max: 10,
    }
}

/// A shop with a template; sends one templated message to `phone`.
/// Returns (key, conversation id, message id).
async fn queue_one(app: &TestApp, phone: &str) -> (String, String, String) {
    let (_, key) = app.shop("Toko Kirim").await;
    let t = app
        .post(
            "/v1/templates",
            &key,
            json!({"name": "resi", "body": "Halo {{fullname}}, resi {{awb}}"}),
        )
        .await;
    assert_eq!(t.status, StatusCode::CREATED, "{:?}", t.body);
    let sent = app
        .post(
            "/v1/messages/template",
            &key,
            json!({"template_id": t.body["id"], "phone_number": phone, "data": {"fullname": "Budi", "awb": "JNE1"}}),
        )
        .await;
    assert_eq!(sent.status, StatusCode::CREATED, "{:?}", sent.body);
    let message = sent.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "MessageQueued")
        .unwrap()["data"]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    (key, sent.body["id"].as_str().unwrap().to_owned(), message)
}

/// The delivery of a message as the projections show it: on the
/// conversation's last message (the one queued, in these tests), as the
/// inbox lists it.
fn delivery(p: &Projections, conversation: &str, message: &str) -> Value {
    let conversation: uuid::Uuid = conversation.parse().unwrap();
    p.shops
        .values()
        .find_map(|v| {
            v.inbox
                .get(conversation)
                .and_then(|c| c.last_message.as_ref())
                .filter(|m| m.message_id.to_string() == message)
                .map(|m| serde_json::to_value(&m.delivery).unwrap())
        })
        .unwrap_or(Value::Null)
}

fn status_is(
    want: &'static str,
    conversation: String,
    message: String,
) -> impl FnMut(&Projections) -> bool {
    move |p| delivery(p, &conversation, &message)["status"] == want
}

/// Starts the sender on the app's engine and projections.
fn run_outbox(
    app: &TestApp,
    clock: &Arc<ManualClock>,
    sender: Arc<dyn MessageSender>,
) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>) {
    let outbox = Outbox::new(
        Arc::clone(&app.state.engine),
        app.state.projections.clone(),
        clock.clone(),
        sender,
        policy(),
    );
    let (stop, rx) = watch::channel(false);
    (stop, tokio::spawn(outbox.run(rx)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_message_is_posted_once_and_marked_sent() {
    let clock = manual_clock();
    let app = app_on(clock.clone()).await;
    let (gw, url) = gateway(clock.clone(), &[]).await;
    let (key, conversation, message) = queue_one(&app, "+62 812-3456-7890").await;
    let (stop, worker) = run_outbox(&app, &clock, sender(&url));
    until(
        &app.state.projections,
        "the message sent",
        status_is("sent", conversation.clone(), message.clone()),
    )
    .await;
    let got = gw.got();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body["to"].as_str(), Some("6281234567890"));
    assert_eq!(got[0].body["type"].as_str(), Some("text"));
    assert_eq!(
        got[0].body["text"]["body"].as_str(),
        Some("Halo Budi, resi JNE1")
    );
    assert_eq!(got[0].body["message_id"].as_str(), Some(message.as_str()));
    assert_eq!(got[0].idempotency_key, message);
    assert_eq!(got[0].authorization, "Bearer wa-token-1");
    let d = app
        .state
        .projections
        .read(|p| delivery(p, &conversation, &message));
    assert_eq!(
        (d["attempts"].as_u64(), d["gateway_message_id"].as_str()),
        (Some(1), Some("wamid.1"))
    );
    // Visible through the API, and out of the outbox.
    let read = app
        .get(&format!("/v1/conversations/{conversation}/messages"), &key)
        .await;
    assert_eq!(
        read.body["messages"][0]["delivery"]["status"].as_str(),
        Some("sent")
    );
    assert!(app.state.projections.read(|p| p.outbox(10).is_empty()));
    stop.send_replace(true);
    worker.await.unwrap();
    assert_eq!(gw.got().len(), 1, "sent once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_doubling_backoff_until_sent() {
    let clock = manual_clock();
    let app = app_on(clock.clone()).await;
    let (gw, url) = gateway(clock.clone(), &[500, 503, 500]).await;
    let (_, conversation, message) = queue_one(&app, "012-345 6789").await;
    let (stop, worker) = run_outbox(&app, &clock, sender(&url));
    drive(
        &clock,
        &app.state.projections,
        "the message sent after retries",
        status_is("sent", conversation.clone(), message.clone()),
    )
    .await;
    let got = gw.got();
    assert_eq!(got.len(), 4);
    let start = got[0].at;
    let waits: Vec<i64> = got.iter().map(|g| (g.at.0 - start.0) / 1_000_000).collect();
    assert_eq!(waits, [0, 2, 6, 14], "2 s, then 4 s, then 8 s");
    assert!(
        got.iter().all(|g| g.idempotency_key == message),
        "the same id every time"
    );
    assert!(got.iter().all(|g| g.body["to"] == "60123456789"));
    let d = app
        .state
        .projections
        .read(|p| delivery(p, &conversation, &message));
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_u64()),
        (Some("sent"), Some(4))
    );
    stop.send_replace(true);
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_keeps_failing_or_refuses_ends_in_failed() {
    let clock = manual_clock();
    let app = app_on(clock.clone()).await;
    let (gw, url) = gateway(clock.clone(), &[500; 50]).await;
    let (_, conversation, message) = queue_one(&app, "0812 3456 7890").await;
    let (stop, worker) = run_outbox(&app, &clock, sender(&url));
    drive(
        &clock,
        &app.state.projections,
        "the message failed",
        status_is("failed", conversation.clone(), message.clone()),
    )
    .await;
    let got = gw.got();
    // 2, 4, 8, 16, 20 s apart: the next wait would end past 60 s.
    let waits: Vec<i64> = got
        .iter()
        .map(|g| (g.at.0 - got[0].at.0) / 1_000_000)
        .collect();
    assert_eq!(waits, [0, 2, 6, 14, 30, 50]);
    let d = app
        .state
        .projections
        .read(|p| delivery(p, &conversation, &message));
    assert_eq!(
        (d["status"].as_str(), d["attempts"].as_u64()),
        (Some("failed"), Some(6))
    );
    let reason = d["reason"].as_str().unwrap();
    assert!(
        reason.contains("gave up after 6 attempts") && reason.contains("HTTP 500"),
        "{reason}"
    );
    assert!(app.state.projections.read(|p| p.outbox(10).is_empty()));
    stop.send_replace(true);
    worker.await.unwrap();

    // A refusal (4xx) is not retried.
    let (gw, url) = gateway(clock.clone(), &[400]).await;
    let (_, conversation, message) = queue_one(&app, "0813 1111 2222").await;
    let (stop, worker) = run_outbox(&app, &clock, sender(&url));
    until(
        &app.state.projections,
        "the refused message failed",
        status_is("failed", conversation.clone(), message.clone()),
    )
    .await;
    assert_eq!(gw.got().len(), 1);
    let d = app
        .state
        .projections
        .read(|p| delivery(p, &conversation, &message));
    assert_eq!(d["attempts"].as_u64(), Some(1));
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .starts_with("refused: HTTP 400"),
        "{d}"
    );
    stop.send_replace(true);
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_gateway_listening_is_retried_then_failed() {
    let clock = manual_clock();
    let app = app_on(clock.clone()).await;
    // A port nothing listens on: bound, then closed.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_, conversation, message) = queue_one(&app, "0812 3456 7890").await;
    let (stop, worker) = run_outbox(
        &app,
        &clock,
        sender(&format!("http://127.0.0.1:{port}/send")),
    );
    drive(
        &clock,
        &app.state.projections,
        "the message failed",
        status_is("failed", conversation.clone(), message.clone()),
    )
    .await;
    let d = app
        .state
        .projections
        .read(|p| delivery(p, &conversation, &message));
    assert_eq!(d["attempts"].as_u64(), Some(6));
    assert!(
        d["reason"].as_str().unwrap().contains("could not connect"),
        "{d}"
    );
    stop.send_replace(true);
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_queued_before_a_restart_is_sent_once_after_it() {
    let dir = data_dir();
    let clock = manual_clock();
    let (gw, url) = gateway(clock.clone(), &[]).await;
    // No sender: the message waits in the outbox, in the log.
    let running = start(dir.path(), &quick_log()).await.unwrap();
    let app = TestApp::on(running.state.clone());
    let (key, conversation, message) = queue_one(&app, "0812 3456 7890").await;
    app.settle().await;
    drop(app);
    running.stop().await.unwrap();
    assert!(gw.got().is_empty());

    let workers = || Workers {
        clock: clock.clone(),
        sender: Some(sender(&url)),
        retry: policy(),
    };
    let running = start_with_workers(dir.path(), &quick_log(), workers())
        .await
        .unwrap();
    until(
        &running.projections,
        "the message sent after the restart",
        status_is("sent", conversation.clone(), message.clone()),
    )
    .await;
    running.stop().await.unwrap();
    assert_eq!(gw.got().len(), 1);

    // Started again: nothing is queued, nothing is sent again.
    let running = start_with_workers(dir.path(), &quick_log(), workers())
        .await
        .unwrap();
    let head = running.state.store.last_position().await.unwrap();
    running
        .projections
        .wait_for(head, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(running.projections.read(|p| p.outbox(10).is_empty()));
    let app = TestApp::on(running.state.clone());
    let read = app
        .get(&format!("/v1/conversations/{conversation}/messages"), &key)
        .await;
    assert_eq!(
        read.body["messages"][0]["delivery"]["status"].as_str(),
        Some("sent")
    );
    running.stop().await.unwrap();
    assert_eq!(gw.got().len(), 1, "sent once over two restarts");
}
