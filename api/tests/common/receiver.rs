//! A webhook receiver on loopback (a small axum server) that records every
//! request and answers as the test says: a status after a delay.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::Value;

/// One request as received.
#[derive(Clone, Debug)]
pub struct Got {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at: Instant,
}

impl Got {
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

/// How to answer request `n` (0-based): (status, delay before answering).
pub type Behave = Arc<dyn Fn(usize, &Got) -> (u16, Duration) + Send + Sync>;

#[derive(Clone)]
struct ReceiverState {
    got: Arc<Mutex<Vec<Got>>>,
    behave: Behave,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Got>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn hook(State(s): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let got = Got {
        headers,
        body,
        at: Instant::now(),
    };
    let n = {
        let mut list = s.got.lock().unwrap();
        list.push(got.clone());
        list.len() - 1
    };
    let (status, delay) = (s.behave)(n, &got);
    tokio::time::sleep(delay).await;
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    pub async fn start(behave: Behave) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(ReceiverState {
                got: Arc::clone(&got),
                behave,
            });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { url, got, task }
    }

    /// Answers 200 at once.
    pub async fn healthy() -> Receiver {
        Receiver::start(Arc::new(|_, _| (200, Duration::ZERO))).await
    }

    pub fn received(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.got.lock().unwrap().len()
    }

    /// Waits (bounded) until `n` requests arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Got> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "the receiver got {} requests, not {n}, within {within:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Waits (bounded) until `f` holds.
pub async fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
