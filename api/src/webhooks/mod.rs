//! The webhook delivery worker: follows the log and POSTs each event that
//! matches an active subscription's trigger to its callback URL, signed
//! (see [`sign`]), retried with exponential backoff and jitter for a
//! bounded time, then the subscription is disabled (an event records it).
//!
//! How it is built:
//! - One dispatcher task ([`dispatch`]) follows the global log from its
//!   checkpoint. It folds the subscription events (so it knows, at every
//!   position, which subscriptions are active and what they listen to) and
//!   offers each matching event to that subscription's lane.
//! - One lane task per subscription ([`lane`]) delivers its events one at
//!   a time, in log order (so a healthy receiver sees every order's events
//!   in order). Its queue is bounded: when it is full the dispatcher stops
//!   offering and the lane later reads the rest from the log itself, so a
//!   slow or dead receiver never holds up the dispatcher, the commands or
//!   the other subscriptions.
//! - One recorder task ([`recorder`]) appends what happened to each
//!   attempt (`WebhookDelivered`, `WebhookAttemptFailed`) to the
//!   subscription's deliveries stream, many outcomes per append, with ids
//!   derived from the delivery (recording one twice records it once).
//!
//! What survives a restart: the outcomes are in the log; the checkpoint
//! file ([`checkpoint`]) keeps the dispatcher's position and, per
//! subscription, the position through which nothing is owed and the
//! attempts of the delivery being retried. A restart folds the log from
//! the checkpoint, and every lane re-reads the log from what it owes: an
//! event whose delivery was not acknowledged (2xx) is delivered again,
//! with the same delivery id (at least once). Without the file (deleted,
//! or from before webhooks) the fold starts at the log's beginning and
//! the recorded outcomes say what was delivered.
//!
//! Paused subscriptions receive nothing: events recorded while paused are
//! never sent, and resuming does not replay them; a delivery already owed
//! when the pause came waits and is sent after resuming.

pub mod checkpoint;
pub mod dispatch;
pub mod lane;
pub mod payload;
pub mod recorder;
pub mod sign;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kedai_engine::command::Engine;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::webhook::Trigger;
use kedai_engine::event::Position;
use kedai_engine::{EventStore, StreamId, Timestamp};
use tokio::sync::watch;

/// Tuning of the worker. Tests shrink the durations (milliseconds).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Time to open a connection to a receiver.
    pub connect_timeout: Duration,
    /// Time for a whole attempt: connect, send, the answer's status and
    /// body.
    pub request_timeout: Duration,
    /// Wait after the first failed attempt; doubled after each failure...
    pub backoff_initial: Duration,
    /// ...up to this (each wait is then shortened by a jitter of up to
    /// half, derived from the delivery id and attempt).
    pub backoff_max: Duration,
    /// How long a delivery is retried, from its first failure, before the
    /// subscription is disabled.
    pub retry_for: Duration,
    /// Events waiting per subscription before its lane reads the log
    /// itself.
    pub queue_per_subscription: usize,
    /// How often the checkpoint is written (also at a graceful stop).
    pub checkpoint_every: Duration,
    /// Where the checkpoint is kept (`None`: nowhere; a restart folds the
    /// log from the beginning).
    pub checkpoint_path: Option<PathBuf>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            backoff_initial: Duration::from_secs(10),
            backoff_max: Duration::from_secs(3_600),
            retry_for: Duration::from_secs(24 * 3_600),
            queue_per_subscription: 1_024,
            checkpoint_every: Duration::from_secs(5),
            checkpoint_path: None,
        }
    }
}

impl WorkerConfig {
    /// The wait after failed attempt `attempt` (1-based) of a delivery:
    /// `backoff_initial * 2^(attempt-1)`, at most `backoff_max`, times a
    /// jitter factor in [0.5, 1) derived from (delivery, attempt).
    pub fn backoff(&self, attempt: u32, delivery_id: uuid::Uuid) -> Duration {
        let doubling = 2u32.saturating_pow(attempt.saturating_sub(1).min(31));
        let base = self
            .backoff_initial
            .saturating_mul(doubling)
            .min(self.backoff_max);
        let mut h = blake3::Hasher::new();
        h.update(delivery_id.as_bytes());
        h.update(&attempt.to_le_bytes());
        let bits = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8 bytes"));
        let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
        base.mul_f64(0.5 + 0.5 * unit)
    }
}

/// An event to deliver, with what the lane needs to build its body.
#[derive(Debug, Clone)]
pub struct Job {
    pub position: Position,
    pub event_id: uuid::Uuid,
    pub event_type: Arc<str>,
    pub stream: StreamId,
    pub version: u64,
    pub recorded_at: Timestamp,
    pub trigger: Trigger,
    pub event: Arc<DomainEvent>,
}

/// The HTTP client of the worker: its timeouts, no redirects followed,
/// TLS (rustls, with the Mozilla roots) for `https://` receivers.
pub fn http_client(config: &WorkerConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .user_agent(concat!("kedai-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A running worker.
#[derive(Debug)]
pub struct Worker {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Worker {
    /// Starts the worker over a store; commands (disabling a subscription)
    /// go through `engine`.
    pub fn start(
        store: Arc<dyn EventStore>,
        engine: Arc<Engine>,
        config: WorkerConfig,
    ) -> anyhow::Result<Worker> {
        let client = http_client(&config)?;
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(dispatch::run(store, engine, client, config, stop_rx));
        Ok(Worker { stop, task })
    }

    /// Stops: no new attempts, attempts in flight abandoned (their events
    /// are delivered again after the next start), outcomes recorded, the
    /// checkpoint written.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.send_replace(true);
        self.task.await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `https://` is spoken (a TLS handshake is attempted), not refused as
    /// an unknown scheme: here against a plain TCP listener that closes.
    #[tokio::test]
    async fn the_client_speaks_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                    .await;
            }
        });
        let client = http_client(&WorkerConfig::default()).unwrap();
        let err = client
            .post(format!("https://127.0.0.1:{port}/hook"))
            .send()
            .await
            .expect_err("not a TLS server");
        let mut chain = String::new();
        let mut e: Option<&dyn std::error::Error> = Some(&err);
        while let Some(x) = e {
            chain.push_str(&x.to_string());
            chain.push_str(" / ");
            e = x.source();
        }
        assert!(!chain.contains("scheme is not http"), "{chain}");
        assert!(err.is_connect(), "{chain}");
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter() {
        let c = WorkerConfig {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(1_000),
            ..WorkerConfig::default()
        };
        let d = uuid::Uuid::from_u128(5);
        for (attempt, base) in [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1_000),
            (40, 1_000),
        ] {
            let wait = c.backoff(attempt, d);
            let base = Duration::from_millis(base);
            assert!(
                wait >= base / 2 && wait < base,
                "attempt {attempt}: {wait:?}"
            );
            assert_eq!(wait, c.backoff(attempt, d), "the same every time");
        }
        let spread: std::collections::BTreeSet<Duration> = (0..50)
            .map(|i| c.backoff(3, uuid::Uuid::from_u128(i)))
            .collect();
        assert!(spread.len() > 40, "deliveries retry at different moments");
    }
}
