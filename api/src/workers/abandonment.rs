//! The abandonment scheduler: records a checkout as abandoned once it has
//! gone without activity for the shop's `checkout_abandon_minutes`
//! (Shoppegram's 60 by default).
//!
//! It keeps no state of its own. The open checkouts and their last
//! activity are the `checkouts` projection, which follows the log (from
//! the projections' snapshot, or rebuilt from the log on start), so after
//! a restart every checkout whose time passed while kedai was down is
//! found due at once. For each due checkout it sends `AbandonCheckout`
//! through the command engine with the idempotency key
//! [`idempotency_key`]: the engine decides on the checkout's own stream
//! (a completion that came first wins; an early call records nothing), and
//! a second run (a restart, another node) gets the first one's events
//! back instead of recording new ones. Between rounds it sleeps on the
//! clock until the next checkout falls due, or until the log moves (a new
//! checkout, a shorter abandonment time).

use std::sync::Arc;
use std::time::Duration;

use kedai_engine::clock::Clock;
use kedai_engine::command::{Command, CommandMeta, Engine};
use kedai_engine::{Actor, AppendStatus, Position};
use kedai_projections::runner::ProjectionHandle;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The actor abandonments are recorded as.
pub const ACTOR_ID: &str = "abandonment-scheduler";
/// Most checkouts handled in one round (then the scheduler looks again).
pub const ROUND_CHECKOUTS_MAX: usize = 256;
/// Real time to wait before looking again after a round that failed, or
/// that found checkouts due which the engine did not abandon (the
/// projections had not caught up with a later update).
const PAUSE: Duration = Duration::from_secs(1);

/// The idempotency key of a checkout's abandonment. It holds characters
/// an HTTP `Idempotency-Key` cannot, so no client request can take it.
pub fn idempotency_key(checkout_id: uuid::Uuid) -> String {
    format!("kedai scheduler\u{0}checkout-abandoned\u{0}{checkout_id}")
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    /// Checkouts found due.
    pub due: usize,
    /// Abandonments this round recorded.
    pub recorded: usize,
    /// Abandonments recorded before (by an earlier run or another node).
    pub already: usize,
    /// Commands that failed (logged).
    pub failed: usize,
    /// The highest position recorded or found, to wait for.
    pub position: Position,
}

/// Records abandoned checkouts.
#[derive(Debug, Clone)]
pub struct Scheduler {
    engine: Arc<Engine>,
    projections: ProjectionHandle,
    clock: Arc<dyn Clock>,
}

impl Scheduler {
    pub fn new(engine: Arc<Engine>, projections: ProjectionHandle, clock: Arc<dyn Clock>) -> Self {
        Scheduler {
            engine,
            projections,
            clock,
        }
    }

    /// Records every abandonment due now (at most
    /// [`ROUND_CHECKOUTS_MAX`]), the commands running side by side.
    pub async fn round(&self) -> Round {
        let now = self.clock.now();
        let due = self
            .projections
            .read(|p| p.due_checkouts(now, ROUND_CHECKOUTS_MAX));
        let mut round = Round {
            due: due.len(),
            ..Round::default()
        };
        let mut tasks = JoinSet::new();
        for d in due {
            let engine = Arc::clone(&self.engine);
            let meta = CommandMeta::new(Actor::system(ACTOR_ID))
                .at(now)
                .with_key(idempotency_key(d.checkout_id));
            tasks.spawn(async move {
                let command = Command::AbandonCheckout {
                    checkout_id: d.checkout_id,
                };
                (d, engine.execute(d.shop, &meta, &command).await)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(done))) => {
                    if done.status == AppendStatus::AlreadyRecorded {
                        round.already += 1;
                    } else if !done.events.is_empty() {
                        round.recorded += 1;
                    }
                    round.position = round.position.max(done.position);
                }
                Ok((d, Err(e))) => {
                    round.failed += 1;
                    tracing::warn!(shop = %d.shop, checkout = %d.checkout_id, error = %e, "could not record an abandoned checkout");
                }
                Err(e) => {
                    round.failed += 1;
                    tracing::error!(error = %e, "an abandonment task failed");
                }
            }
        }
        if round.recorded > 0 {
            tracing::info!(
                recorded = round.recorded,
                already = round.already,
                "checkouts abandoned"
            );
        }
        round
    }

    /// Runs rounds until `stop` turns true: first once the projections
    /// have caught up with the log, then whenever a checkout falls due or
    /// the log moves.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let store = Arc::clone(self.engine.store());
        if !super::caught_up(&*store, &self.projections, &mut stop).await {
            return;
        }
        let mut moved = self.projections.watch();
        loop {
            if *stop.borrow() {
                return;
            }
            let round = self.round().await;
            if round.recorded + round.already > 0 {
                // Look again once the projections show what was recorded.
                let _ = self
                    .projections
                    .wait_for(round.position, super::CATCH_UP_WAIT)
                    .await;
                if round.failed == 0 && round.recorded + round.already == round.due {
                    continue;
                }
            }
            let pause = round.failed > 0 || round.due > round.recorded + round.already;
            // Seen first, then read: a move after this wakes the select.
            moved.borrow_and_update();
            let next = self.projections.read(|p| p.next_checkout_due());
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return,
                changed = moved.changed(), if !pause => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep(PAUSE), if pause => {}
                () = sleep_until(&*self.clock, next), if !pause => {}
            }
        }
    }
}

/// Sleeps until `deadline` on `clock`; forever without one.
async fn sleep_until(clock: &dyn Clock, deadline: Option<kedai_engine::Timestamp>) {
    match deadline {
        Some(t) => clock.sleep_until(t).await,
        None => std::future::pending().await,
    }
}
