//! One subscription's lane: its state as the dispatcher folded it, its
//! bounded queue, and the task that delivers its events one at a time, in
//! log order, with retries.
//!
//! The queue holds what the dispatcher offered. When it is full the
//! dispatcher marks the lane `overflow` (from the position it could not
//! offer) and offers nothing more; once the queue is drained the lane reads
//! the log itself from there, up to what the dispatcher has seen, and then
//! takes offers again. A lane starts that way after a restart, from the
//! position through which nothing is owed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use kedai_engine::command::{Command, CommandMeta, Engine};
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::events::{WebhookAttemptFailed, WebhookDelivered};
use kedai_engine::domain::ids::streams;
use kedai_engine::domain::money::Currency;
use kedai_engine::domain::webhook::{
    Trigger, WebhookChange, WebhookStatus, delivery_id, outcome_event_id,
};
use kedai_engine::event::Position;
use kedai_engine::{Actor, EventStore, RecordedEvent, ShopId, Timestamp};
use tokio::sync::{Notify, mpsc, watch};

use super::checkpoint::Pending;
use super::recorder::Outcome;
use super::{Job, WorkerConfig, payload, sign};

/// Events a lane reads from the log per round when catching up.
const CATCH_UP_BATCH: usize = 1_000;
/// Bytes of a receiver's answer read (the rest is dropped).
const ANSWER_BYTES_MAX: usize = 64 * 1024;

/// What every lane shares.
#[derive(Debug)]
pub struct LaneCtx {
    pub store: Arc<dyn EventStore>,
    pub engine: Arc<Engine>,
    pub client: reqwest::Client,
    pub config: WorkerConfig,
    pub outcomes: mpsc::Sender<Outcome>,
    /// Every event up to here has been offered by the dispatcher.
    pub dispatched: AtomicU64,
    pub stop: watch::Receiver<bool>,
}

/// A subscription's lane.
#[derive(Debug)]
pub struct Lane {
    pub shop: ShopId,
    pub webhook_id: uuid::Uuid,
    pub inner: Mutex<LaneInner>,
    pub notify: Notify,
}

/// What the dispatcher and the lane task share, behind one lock.
#[derive(Debug)]
pub struct LaneInner {
    pub url: String,
    pub secret: String,
    pub triggers: Vec<Trigger>,
    /// The status as of the dispatcher's position.
    pub status: WebhookStatus,
    /// (position, status it set), in log order.
    pub history: Vec<(Position, WebhookStatus)>,
    /// Position of the last subscription event folded.
    pub applied: Position,
    /// Every matching event at or before this was delivered or dropped.
    pub done: Position,
    /// The delivery being retried.
    pub pending: Option<Pending>,
    /// Times it was resumed (a resume restarts the retry window).
    pub resumes: u64,
    pub queue: VecDeque<Job>,
    /// Set when the queue overflowed: read the log after this position.
    pub overflow: Option<Position>,
    /// The last position the dispatcher matched for this lane.
    pub seen: Position,
    /// The task holds events (in hand or read from the log).
    pub busy: bool,
}

impl LaneInner {
    /// The status in force for an event at `position`.
    pub fn status_at(&self, position: Position) -> Option<WebhookStatus> {
        self.history
            .iter()
            .rev()
            .find(|(p, _)| *p < position)
            .map(|(_, s)| *s)
    }

    /// Whether an event at `position` with `trigger` is for this lane.
    pub fn wants(&self, position: Position, trigger: Trigger) -> bool {
        position > self.done
            && self.status_at(position) == Some(WebhookStatus::Active)
            && self.triggers.contains(&trigger)
    }

    /// Nothing is owed or in hand.
    pub fn idle(&self) -> bool {
        !self.busy && self.queue.is_empty() && self.overflow.is_none()
    }
}

impl Lane {
    pub fn new(shop: ShopId, webhook_id: uuid::Uuid, inner: LaneInner) -> Lane {
        Lane {
            shop,
            webhook_id,
            inner: Mutex::new(inner),
            notify: Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, LaneInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The dispatcher offers an event that matches (never waits).
    pub fn offer(&self, job: &Job, capacity: usize) {
        let mut g = self.lock();
        g.seen = job.position;
        if g.overflow.is_some() {
            return;
        }
        if g.queue.len() < capacity {
            g.queue.push_back(job.clone());
        } else {
            g.overflow = Some(job.position - 1);
        }
        drop(g);
        self.notify.notify_one();
    }
}

/// A job from a recorded event, if it fires a trigger.
pub fn job_of(e: &RecordedEvent) -> Option<Job> {
    if !Trigger::EVENT_TYPES.contains(&&*e.event_type) {
        return None;
    }
    let event = DomainEvent::decode(&e.event_type, &e.payload).ok()??;
    let trigger = Trigger::of(&event)?;
    Some(Job {
        position: e.position,
        event_id: e.event_id,
        event_type: e.event_type.clone(),
        stream: e.stream.clone(),
        version: e.version,
        recorded_at: e.recorded_at,
        trigger,
        event: Arc::new(event),
    })
}

enum Next {
    Job(Job),
    Stop,
}

/// How a delivery ended.
enum Ended {
    Delivered,
    /// Not needed any more (deleted, or dropped by a disable).
    Dropped,
    /// Retried past the bound: the subscription is disabled.
    GaveUp,
    Stopped,
}

fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The lane's task: until the worker stops or the subscription is deleted.
pub async fn run(lane: Arc<Lane>, ctx: Arc<LaneCtx>) {
    let mut local: VecDeque<Job> = VecDeque::new();
    let mut currency: Option<Currency> = None;
    let mut stop = ctx.stop.clone();
    loop {
        let job = match next(&lane, &ctx, &mut local, &mut stop).await {
            Next::Job(j) => j,
            Next::Stop => return,
        };
        let ended = deliver(&lane, &ctx, &job, &mut currency, &mut stop).await;
        if matches!(ended, Ended::Stopped) {
            return;
        }
        let mut g = lane.lock();
        g.done = g.done.max(job.position);
        g.pending = None;
        g.busy = !local.is_empty();
        if g.status == WebhookStatus::Deleted {
            return;
        }
    }
}

/// The next event to deliver: read from the log, from the queue, or from
/// the log again after an overflow; waits when there is none.
async fn next(
    lane: &Lane,
    ctx: &LaneCtx,
    local: &mut VecDeque<Job>,
    stop: &mut watch::Receiver<bool>,
) -> Next {
    loop {
        if stopping(stop) {
            return Next::Stop;
        }
        if let Some(j) = local.pop_front() {
            return Next::Job(j);
        }
        let mut wait = None;
        let read_after = {
            let mut g = lane.lock();
            if g.status == WebhookStatus::Deleted {
                return Next::Stop;
            }
            if let Some(j) = g.queue.pop_front() {
                g.busy = true;
                return Next::Job(j);
            }
            match g.overflow {
                Some(after) => {
                    let limit = ctx.dispatched.load(Ordering::Acquire);
                    if after >= limit {
                        if after >= g.seen {
                            // Caught up: offers are taken again.
                            g.overflow = None;
                            g.busy = false;
                            continue;
                        }
                        // The dispatcher is offering past what it has
                        // published; look again in a moment.
                        wait = Some(Duration::from_millis(5));
                        None
                    } else {
                        Some((after, limit))
                    }
                }
                None => {
                    g.busy = false;
                    None
                }
            }
        };
        if let Some((after, limit)) = read_after {
            let events = match ctx.store.read_all(after, CATCH_UP_BATCH).await {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook lane reading the log; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        () = stopped(stop) => return Next::Stop,
                    }
                    continue;
                }
            };
            let mut last = after;
            {
                let g = lane.lock();
                for e in events.iter().take_while(|e| e.position <= limit) {
                    last = e.position;
                    if e.stream.shop != lane.shop {
                        continue;
                    }
                    if let Some(job) = job_of(e)
                        && g.wants(job.position, job.trigger)
                    {
                        local.push_back(job);
                    }
                }
            }
            let mut g = lane.lock();
            g.overflow = Some(last);
            g.busy = !local.is_empty();
            continue;
        }
        let notified = lane.notify.notified();
        tokio::select! {
            () = notified => {}
            () = stopped(stop) => return Next::Stop,
            () = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(3_600))) => {}
        }
    }
}

/// The shop's currency (read once per lane).
async fn currency_of(ctx: &LaneCtx, shop: ShopId) -> Result<Currency, String> {
    let events = ctx
        .store
        .read_stream(&streams::shop(shop), 1, 1)
        .await
        .map_err(|e| e.to_string())?;
    let first = events.first().ok_or("the shop has no events")?;
    match DomainEvent::decode(&first.event_type, &first.payload) {
        Ok(Some(DomainEvent::ShopCreated(s))) => Ok(s.currency),
        _ => Err("the shop's first event is not ShopCreated".into()),
    }
}

/// Why an attempt failed: the status (if the receiver answered) and a
/// sentence.
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        let mut inner: &dyn std::error::Error = e;
        while let Some(next) = inner.source() {
            inner = next;
        }
        format!("request failed: {inner}")
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// One attempt: the status code, or why there was none.
async fn attempt(
    ctx: &LaneCtx,
    url: &str,
    secret: &str,
    delivery: uuid::Uuid,
    job: &Job,
    body: &[u8],
    n: u32,
) -> Result<u16, (Option<u16>, String)> {
    let timestamp = (Timestamp::now().micros() / 1_000_000).to_string();
    let signature = sign::signature(secret, &timestamp, body);
    let sent = ctx
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(sign::DELIVERY_ID, delivery.to_string())
        .header(sign::EVENT_ID, job.event_id.to_string())
        .header(sign::TRIGGER, job.trigger.as_str())
        .header(sign::TIMESTAMP, &timestamp)
        .header(sign::SIGNATURE, signature)
        .header(sign::ATTEMPT, n.to_string())
        .body(body.to_vec())
        .send()
        .await;
    let mut answer = sent.map_err(|e| (None, describe(&e)))?;
    let status = answer.status();
    // Read (a bounded part of) the answer so the connection can be reused.
    let mut read = 0;
    loop {
        match answer.chunk().await {
            Ok(Some(c)) => {
                read += c.len();
                if read > ANSWER_BYTES_MAX {
                    break;
                }
            }
            Ok(None) => break,
            Err(e) if status.is_success() => {
                tracing::debug!(error = %e, "reading a receiver's answer");
                break;
            }
            Err(e) => return Err((Some(status.as_u16()), describe(&e))),
        }
    }
    if status.is_success() {
        Ok(status.as_u16())
    } else {
        Err((Some(status.as_u16()), format!("HTTP {status}")))
    }
}

async fn send_outcome(ctx: &LaneCtx, lane: &Lane, event_id: uuid::Uuid, event: DomainEvent) {
    let outcome = Outcome {
        shop: lane.shop,
        webhook_id: lane.webhook_id,
        event_id,
        event,
    };
    if ctx.outcomes.send(outcome).await.is_err() {
        tracing::debug!("the webhook recorder has stopped");
    }
}

/// Delivers one event, retrying until it is acknowledged, no longer
/// wanted, or failing past the retry bound.
async fn deliver(
    lane: &Lane,
    ctx: &LaneCtx,
    job: &Job,
    currency: &mut Option<Currency>,
    stop: &mut watch::Receiver<bool>,
) -> Ended {
    let delivery = delivery_id(lane.webhook_id, job.event_id);
    let (mut attempts, mut first_failed, mut resumes) = {
        let g = lane.lock();
        match g.pending {
            Some(p) if p.position == job.position => {
                (p.attempts, Some(p.first_failed_at), g.resumes)
            }
            _ => (0, None, g.resumes),
        }
    };
    // The body, built once (the same for every attempt).
    let body = loop {
        let made = async {
            let c = match currency {
                Some(c) => *c,
                None => {
                    let c = currency_of(ctx, lane.shop).await?;
                    *currency = Some(c);
                    c
                }
            };
            payload::body(&*ctx.store, delivery, job, c)
                .await
                .map_err(|e| e.to_string())
        };
        match made.await {
            Ok(b) => break b,
            Err(e) => {
                tracing::warn!(error = %e, position = job.position, "building a webhook body; retrying");
                tokio::select! {
                    () = tokio::time::sleep(ctx.config.backoff_initial) => {}
                    () = stopped(stop) => return Ended::Stopped,
                }
            }
        }
    };
    loop {
        // Send only while active; wait out a pause.
        let (url, secret) = loop {
            if stopping(stop) {
                return Ended::Stopped;
            }
            let notified = lane.notify.notified();
            {
                let g = lane.lock();
                if g.done >= job.position || g.status == WebhookStatus::Deleted {
                    return Ended::Dropped;
                }
                if g.resumes != resumes {
                    resumes = g.resumes;
                    first_failed = None;
                }
                if g.status == WebhookStatus::Active {
                    break (g.url.clone(), g.secret.clone());
                }
            }
            tokio::select! {
                () = notified => {}
                () = stopped(stop) => return Ended::Stopped,
            }
        };
        attempts += 1;
        let started = Instant::now();
        let result = tokio::select! {
            r = attempt(ctx, &url, &secret, delivery, job, &body, attempts) => r,
            () = stopped(stop) => return Ended::Stopped,
        };
        let duration_ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        let now = Timestamp::now();
        let (status_code, error) = match result {
            Ok(code) => {
                let event = WebhookDelivered {
                    webhook_id: lane.webhook_id,
                    delivery_id: delivery,
                    event_id: job.event_id,
                    event_position: job.position,
                    trigger: job.trigger,
                    attempt: attempts,
                    status_code: code,
                    duration_ms,
                    delivered_at: now,
                };
                send_outcome(ctx, lane, outcome_event_id(delivery, 0, true), event.into()).await;
                return Ended::Delivered;
            }
            Err(failure) => failure,
        };
        let first = *first_failed.get_or_insert(now);
        let elapsed =
            Duration::from_micros(u64::try_from(now.micros() - first.micros()).unwrap_or(0));
        let give_up = elapsed >= ctx.config.retry_for;
        let wait = ctx.config.backoff(attempts, delivery);
        let event = WebhookAttemptFailed {
            webhook_id: lane.webhook_id,
            delivery_id: delivery,
            event_id: job.event_id,
            event_position: job.position,
            trigger: job.trigger,
            attempt: attempts,
            status_code,
            error: error.clone(),
            duration_ms,
            failed_at: now,
            next_attempt_at: (!give_up).then(|| Timestamp(now.micros() + micros(wait))),
        };
        send_outcome(
            ctx,
            lane,
            outcome_event_id(delivery, attempts, false),
            event.into(),
        )
        .await;
        if give_up {
            disable(lane, ctx, job, delivery, attempts, &error).await;
            return Ended::GaveUp;
        }
        lane.lock().pending = Some(Pending {
            position: job.position,
            attempts,
            first_failed_at: first,
        });
        tracing::debug!(webhook = %lane.webhook_id, attempt = attempts, ?wait, %error, "webhook attempt failed");
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stopped(stop) => return Ended::Stopped,
        }
    }
}

/// Disables the subscription after a delivery failed past the bound; what
/// was owed before the disable is dropped.
async fn disable(
    lane: &Lane,
    ctx: &LaneCtx,
    job: &Job,
    delivery: uuid::Uuid,
    attempts: u32,
    error: &str,
) {
    let mut reason = format!(
        "delivery {delivery} of the event at position {} failed {attempts} times over {} s; last: {error}",
        job.position,
        ctx.config.retry_for.as_secs()
    );
    clip(&mut reason, kedai_engine::domain::webhook::REASON_LEN_MAX);
    let command = Command::ChangeWebhook {
        webhook_id: lane.webhook_id,
        change: WebhookChange::Disable {
            reason,
            delivery_id: delivery,
            event_position: job.position,
        },
    };
    let meta = CommandMeta::new(Actor::system("webhooks")).with_key(disable_key(delivery));
    match ctx.engine.execute(lane.shop, &meta, &command).await {
        Ok(done) => {
            tracing::warn!(webhook = %lane.webhook_id, position = done.position, "webhook subscription disabled after failed deliveries");
            if !done.events.is_empty() || done.status == kedai_engine::AppendStatus::AlreadyRecorded
            {
                let mut g = lane.lock();
                g.done = g.done.max(done.position);
            }
        }
        Err(e) => {
            tracing::error!(webhook = %lane.webhook_id, error = %e, "disabling a webhook subscription")
        }
    }
}

/// The idempotency key of disabling after `delivery` failed: with NUL
/// separators, which no `Idempotency-Key` header can carry, so no client
/// can take it first (as the message sender's and the abandonment
/// scheduler's keys).
fn disable_key(delivery: uuid::Uuid) -> String {
    format!("kedai webhooks\u{0}disable\u{0}{delivery}")
}

/// Cuts `text` to at most `max` bytes, at a character boundary (the
/// receiver's error may be anyone's text).
fn clip(text: &mut String, max: usize) {
    text.truncate(text.floor_char_boundary(max));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_cut_between_characters() {
        let mut text = format!("{}é and more", "a".repeat(499));
        clip(&mut text, 500);
        assert_eq!(text, "a".repeat(499), "é straddles byte 500: cut before it");
        let mut short = "pendek".to_owned();
        clip(&mut short, 500);
        assert_eq!(short, "pendek");
    }

    #[test]
    fn no_client_can_send_the_disable_key() {
        let key = disable_key(uuid::Uuid::from_u128(7));
        assert!(axum::http::HeaderValue::from_str(&key).is_err(), "{key:?}");
    }
}
