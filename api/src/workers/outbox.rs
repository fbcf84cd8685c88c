//! The outbox sender: hands each queued message (a templated WhatsApp
//! message, `MessageQueued` in the log) to a [`MessageSender`], retries
//! with exponential backoff for a bounded time, and records the outcome on
//! the message: `MessageDispatched` (status `sent`) or
//! `MessageDispatchFailed` (status `failed`).
//!
//! The outbox is the inbox projection's list of queued messages, so it
//! survives restarts: a message queued before a crash, or while no sender
//! was configured, is sent when a sender runs. Before sending, the sender
//! reads the message's conversation through the engine (its own stream,
//! not the projection), so a message whose outcome is recorded is never
//! sent again, even while the projections lag. Outcomes are recorded
//! through the command engine with [`idempotency_key`], and the domain
//! keeps the first outcome, so two senders cannot record two.
//!
//! Delivery is at least once: a crash after the gateway accepted a message
//! and before its outcome was recorded sends it again after the restart.
//! The adapter passes the message id along (the WhatsApp adapter as the
//! `Idempotency-Key` header) so the gateway can drop the repeat. Attempts
//! and the retry window start again after a restart.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use kedai_engine::clock::{Clock, after};
use kedai_engine::command::slots::Kind;
use kedai_engine::command::{Command, CommandError, CommandMeta, Engine};
use kedai_engine::domain::chat::{ChatChannel, DISPATCH_REASON_MAX, Delivery, DispatchOutcome};
use kedai_engine::domain::ids::streams;
use kedai_engine::{Actor, Position, ShopId};
use kedai_projections::runner::ProjectionHandle;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The actor outcomes are recorded as.
pub const ACTOR_ID: &str = "message-sender";
/// Messages being worked on at once.
pub const IN_FLIGHT_MAX: usize = 16;
/// Most queued messages read from the outbox at a time.
pub const SCAN_MAX: usize = 256;
/// On stop, how long messages in flight get to finish their attempt.
pub const DRAIN_MAX: Duration = Duration::from_secs(30);
/// Tries to record an outcome before keeping it for later.
const RECORD_TRIES: u32 = 3;

/// A message to hand to a gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub shop: ShopId,
    pub conversation_id: uuid::Uuid,
    /// kedai's id of the message: the same for every attempt.
    pub message_id: uuid::Uuid,
    pub channel: ChatChannel,
    /// The normalised number (`62...`, `60...`).
    pub to: String,
    pub text: String,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendResult {
    /// The gateway accepted the message.
    Sent { gateway_message_id: Option<String> },
    /// Worth another attempt later (5xx, 429, a timeout, no connection).
    Retry { reason: String },
    /// The gateway refused it for good (4xx): no more attempts.
    Reject { reason: String },
}

/// Hands one message to a channel's gateway, once.
#[async_trait::async_trait]
pub trait MessageSender: Send + Sync + std::fmt::Debug {
    async fn send(&self, message: &OutboundMessage) -> SendResult;
}

/// How long to keep trying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The wait after the first failed attempt; it doubles after each.
    pub first_delay: Duration,
    /// The longest wait between two attempts.
    pub delay_max: Duration,
    /// No attempt starts later than this after the first one.
    pub give_up_after: Duration,
    /// Most attempts.
    pub attempts_max: u32,
}

impl Default for RetryPolicy {
    /// 2 s, 4 s, 8 s ... up to 5 minutes apart, for at most an hour and
    /// 30 attempts.
    fn default() -> Self {
        RetryPolicy {
            first_delay: Duration::from_secs(2),
            delay_max: Duration::from_secs(300),
            give_up_after: Duration::from_secs(3_600),
            attempts_max: 30,
        }
    }
}

impl RetryPolicy {
    /// The wait after failed attempt number `attempt` (1 for the first).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        self.first_delay
            .saturating_mul(1 << doublings)
            .min(self.delay_max)
    }
}

/// The idempotency key of a message's outcome (characters an HTTP
/// `Idempotency-Key` cannot hold, so no request can take it).
pub fn idempotency_key(conversation_id: uuid::Uuid, message_id: uuid::Uuid) -> String {
    format!("kedai sender\u{0}dispatch\u{0}{conversation_id}\u{0}{message_id}")
}

/// Which message: message ids are unique within a conversation.
type Key = (ShopId, uuid::Uuid, uuid::Uuid);

/// How the work on one message ended.
#[derive(Debug)]
enum Finished {
    /// Its outcome is recorded (the projections show it once they reach
    /// this position).
    Done(Option<Position>),
    /// Stopped (or the store failed) before an outcome: it stays queued.
    Stopped,
    /// An outcome the store would not take: recorded on the next try,
    /// without sending again.
    Unrecorded(DispatchOutcome),
}

/// The sender of queued messages.
#[derive(Debug, Clone)]
pub struct Outbox {
    engine: Arc<Engine>,
    projections: ProjectionHandle,
    clock: Arc<dyn Clock>,
    sender: Arc<dyn MessageSender>,
    policy: RetryPolicy,
}

impl Outbox {
    pub fn new(
        engine: Arc<Engine>,
        projections: ProjectionHandle,
        clock: Arc<dyn Clock>,
        sender: Arc<dyn MessageSender>,
        policy: RetryPolicy,
    ) -> Self {
        Outbox {
            engine,
            projections,
            clock,
            sender,
            policy,
        }
    }

    /// Sends queued messages until `stop` turns true, then gives the
    /// attempts in flight up to [`DRAIN_MAX`] to finish.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let store = Arc::clone(self.engine.store());
        if !super::caught_up(&*store, &self.projections, &mut stop).await {
            return;
        }
        let mut moved = self.projections.watch();
        let mut tasks: JoinSet<Finished> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, Key> = HashMap::new();
        let mut in_flight: HashSet<Key> = HashSet::new();
        // Finished, but the projections may not show it yet.
        let mut settled: HashMap<Key, Position> = HashMap::new();
        let mut unrecorded: HashMap<Key, DispatchOutcome> = HashMap::new();
        loop {
            if *stop.borrow() {
                break;
            }
            moved.borrow_and_update();
            let reached = self.projections.position();
            settled.retain(|_, p| *p > reached);
            let free = IN_FLIGHT_MAX.saturating_sub(tasks.len());
            let next: Vec<OutboundMessage> = self.projections.read(|p| {
                p.outbox(SCAN_MAX)
                    .into_iter()
                    .map(|(shop, e)| OutboundMessage {
                        shop,
                        conversation_id: e.conversation_id,
                        message_id: e.message_id,
                        channel: e.channel,
                        to: e.to.clone(),
                        text: e.text.to_string(),
                    })
                    .filter(|m| {
                        let key = (m.shop, m.conversation_id, m.message_id);
                        !in_flight.contains(&key) && !settled.contains_key(&key)
                    })
                    .take(free)
                    .collect()
            });
            for m in next {
                let key = (m.shop, m.conversation_id, m.message_id);
                let previous = unrecorded.remove(&key);
                let me = self.clone();
                let stop = stop.clone();
                let handle = tasks.spawn(async move { me.deliver(m, previous, stop).await });
                running.insert(handle.id(), key);
                in_flight.insert(key);
            }
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                changed = moved.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (id, finished) = match joined {
                        Ok((id, f)) => (id, Some(f)),
                        Err(e) => {
                            tracing::error!(error = %e, "a message delivery task failed");
                            (e.id(), None)
                        }
                    };
                    if let Some(key) = running.remove(&id) {
                        in_flight.remove(&key);
                        match finished {
                            Some(Finished::Done(Some(p))) => {
                                settled.insert(key, p);
                            }
                            Some(Finished::Unrecorded(o)) => {
                                unrecorded.insert(key, o);
                            }
                            _ => {}
                        }
                    }
                }
            }
        }
        let drained = tokio::time::timeout(DRAIN_MAX, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("message deliveries still in flight at stop; they stay queued");
            tasks.abort_all();
        }
    }

    /// Works on one message: unless its outcome is recorded already,
    /// attempts it (or takes the outcome an earlier try could not record)
    /// and records the outcome.
    async fn deliver(
        &self,
        m: OutboundMessage,
        previous: Option<DispatchOutcome>,
        mut stop: watch::Receiver<bool>,
    ) -> Finished {
        match self.delivery(&m).await {
            Ok(Some(Delivery::Queued)) => {}
            // Recorded already: the projections will show it by the head.
            Ok(_) => return Finished::Done(self.head().await),
            Err(e) => {
                tracing::warn!(message = %m.message_id, error = %e, "reading a queued message's conversation");
                // Not at once again: the store is likely unavailable.
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                return Finished::Stopped;
            }
        }
        let outcome = match previous {
            Some(o) => o,
            None => match self.attempt(&m, &mut stop).await {
                Some(o) => o,
                None => return Finished::Stopped,
            },
        };
        self.record(&m, outcome, &mut stop).await
    }

    /// The log's head, if the store answers.
    async fn head(&self) -> Option<Position> {
        self.engine.store().last_position().await.ok()
    }

    /// The message's delivery as its conversation's stream has it.
    async fn delivery(&self, m: &OutboundMessage) -> Result<Option<Delivery>, CommandError> {
        let stream = streams::conversation(m.shop, m.conversation_id);
        let state = self.engine.load_state(&stream, Kind::Conversation).await?;
        Ok(state.conversation().outbox.get(&m.message_id).copied())
    }

    /// Attempts until the gateway takes the message, refuses it, or the
    /// policy's bound is reached; `None` if stopped first.
    async fn attempt(
        &self,
        m: &OutboundMessage,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<DispatchOutcome> {
        let give_up_at = after(self.clock.now(), self.policy.give_up_after);
        let mut attempts = 0u32;
        loop {
            if *stop.borrow() {
                return None;
            }
            attempts += 1;
            let reason = match self.sender.send(m).await {
                SendResult::Sent { gateway_message_id } => {
                    return Some(DispatchOutcome::Sent {
                        attempts,
                        gateway_message_id,
                    });
                }
                SendResult::Reject { reason } => {
                    return Some(DispatchOutcome::Failed {
                        attempts,
                        reason: bounded(&format!("refused: {reason}")),
                    });
                }
                SendResult::Retry { reason } => reason,
            };
            let wake = after(self.clock.now(), self.policy.delay(attempts));
            if attempts >= self.policy.attempts_max || wake > give_up_at {
                return Some(DispatchOutcome::Failed {
                    attempts,
                    reason: bounded(&format!("gave up after {attempts} attempts: {reason}")),
                });
            }
            tracing::debug!(message = %m.message_id, attempts, %reason, "retrying a message later");
            while self.clock.now() < wake {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => return None,
                    () = self.clock.sleep_until(wake) => {}
                }
            }
        }
    }

    /// Records an outcome, trying [`RECORD_TRIES`] times.
    async fn record(
        &self,
        m: &OutboundMessage,
        outcome: DispatchOutcome,
        stop: &mut watch::Receiver<bool>,
    ) -> Finished {
        let command = Command::RecordDispatch {
            conversation_id: m.conversation_id,
            message_id: m.message_id,
            outcome: outcome.clone(),
        };
        for tries in 1..=RECORD_TRIES {
            let meta = CommandMeta::new(Actor::system(ACTOR_ID))
                .at(self.clock.now())
                .with_key(idempotency_key(m.conversation_id, m.message_id));
            match self.engine.execute(m.shop, &meta, &command).await {
                Ok(done) => return Finished::Done(Some(done.position)),
                Err(CommandError::Rejected(r)) => {
                    tracing::warn!(message = %m.message_id, rejection = %r, "a message's outcome was refused");
                    return Finished::Done(self.head().await);
                }
                Err(e) => {
                    tracing::warn!(message = %m.message_id, error = %e, tries, "could not record a message's outcome");
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        () = tokio::time::sleep(Duration::from_secs(u64::from(tries))) => {}
                    }
                }
            }
        }
        Finished::Unrecorded(outcome)
    }
}

/// A reason cut to what an outcome event keeps.
fn bounded(reason: &str) -> String {
    let text: String = reason.chars().take(DISPATCH_REASON_MAX).collect();
    if text.trim().is_empty() {
        "no reason given".to_owned()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let p = RetryPolicy {
            first_delay: Duration::from_secs(2),
            delay_max: Duration::from_secs(60),
            give_up_after: Duration::from_secs(600),
            attempts_max: 10,
        };
        let delays: Vec<u64> = (1..=7).map(|a| p.delay(a).as_secs()).collect();
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(p.delay(u32::MAX), Duration::from_secs(60), "no overflow");
    }

    #[test]
    fn reasons_fit_the_event() {
        assert_eq!(
            bounded(&"x".repeat(2_000)).chars().count(),
            DISPATCH_REASON_MAX
        );
        assert_eq!(bounded("  "), "no reason given");
    }
}
