//! The dispatcher: recovers from the checkpoint and the log, starts a lane
//! per subscription, then follows the log, folding subscription events and
//! offering every matching event to its lanes. It never waits for a lane.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kedai_engine::command::Engine;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::ids::streams;
use kedai_engine::domain::webhook::WebhookStatus;
use kedai_engine::event::Position;
use kedai_engine::store::{READ_EVENTS_MAX, subscribe};
use kedai_engine::{EventStore, RecordedEvent, ShopId};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::checkpoint::{self, Checkpoint, Entry, Pending};
use super::lane::{self, Lane, LaneCtx, LaneInner, job_of};
use super::{WorkerConfig, recorder};

/// Outcomes waiting to be recorded (lanes wait beyond this).
const OUTCOMES_QUEUED_MAX: usize = 10_000;
/// How long a stop waits for the lanes.
const LANES_STOP_WAIT: Duration = Duration::from_secs(5);

struct Dispatcher {
    ctx: Arc<LaneCtx>,
    lanes: HashMap<uuid::Uuid, Arc<Lane>>,
    by_shop: HashMap<ShopId, Vec<Arc<Lane>>>,
    tasks: JoinSet<()>,
    /// Lanes start only once recovery is done.
    live: bool,
}

impl Dispatcher {
    fn spawn(&mut self, lane: &Arc<Lane>) {
        self.tasks
            .spawn(lane::run(Arc::clone(lane), Arc::clone(&self.ctx)));
    }

    /// Folds a subscription event or a delivery outcome.
    fn fold(&mut self, e: &RecordedEvent, event: &DomainEvent) {
        let p = e.position;
        if let DomainEvent::WebhookSubscribed(s) = event {
            if self.lanes.contains_key(&s.webhook_id) {
                return;
            }
            let lane = Arc::new(Lane::new(
                e.stream.shop,
                s.webhook_id,
                LaneInner {
                    url: s.url.clone(),
                    secret: s.secret.clone(),
                    triggers: s.triggers.clone(),
                    status: WebhookStatus::Active,
                    history: vec![(p, WebhookStatus::Active)],
                    applied: p,
                    done: p,
                    pending: None,
                    resumes: 0,
                    queue: Default::default(),
                    overflow: None,
                    seen: p,
                    busy: false,
                },
            ));
            self.lanes.insert(s.webhook_id, Arc::clone(&lane));
            self.by_shop
                .entry(e.stream.shop)
                .or_default()
                .push(Arc::clone(&lane));
            if self.live {
                self.spawn(&lane);
            }
            return;
        }
        let id = match event {
            DomainEvent::WebhookPaused(x) => x.webhook_id,
            DomainEvent::WebhookResumed(x) => x.webhook_id,
            DomainEvent::WebhookDisabled(x) => x.webhook_id,
            DomainEvent::WebhookDeleted(x) => x.webhook_id,
            DomainEvent::WebhookSecretRotated(x) => x.webhook_id,
            DomainEvent::WebhookDelivered(x) => x.webhook_id,
            DomainEvent::WebhookAttemptFailed(x) => x.webhook_id,
            _ => return,
        };
        let Some(lane) = self.lanes.get(&id).cloned() else {
            return;
        };
        if lane.shop != e.stream.shop {
            return;
        }
        {
            let mut g = lane.lock();
            match event {
                DomainEvent::WebhookDelivered(x) => {
                    g.done = g.done.max(x.event_position);
                    if g.pending.is_some_and(|pd| pd.position <= x.event_position) {
                        g.pending = None;
                    }
                    return;
                }
                DomainEvent::WebhookAttemptFailed(x) => {
                    if x.next_attempt_at.is_none() {
                        g.done = g.done.max(x.event_position);
                    }
                    if x.event_position <= g.done {
                        g.pending = None;
                    } else if g.pending.is_none_or(|pd| pd.position != x.event_position) {
                        g.pending = Some(Pending {
                            position: x.event_position,
                            attempts: x.attempt,
                            first_failed_at: x.failed_at,
                        });
                    } else if let Some(pd) = &mut g.pending {
                        pd.attempts = pd.attempts.max(x.attempt);
                    }
                    return;
                }
                _ => {}
            }
            if p <= g.applied {
                return;
            }
            g.applied = p;
            let status = match event {
                DomainEvent::WebhookPaused(_) => WebhookStatus::Paused,
                DomainEvent::WebhookResumed(_) => {
                    g.resumes += 1;
                    g.pending = None;
                    WebhookStatus::Active
                }
                DomainEvent::WebhookDisabled(_) => {
                    g.done = g.done.max(p);
                    WebhookStatus::Disabled
                }
                DomainEvent::WebhookDeleted(_) => WebhookStatus::Deleted,
                DomainEvent::WebhookSecretRotated(x) => {
                    g.secret = x.secret.clone();
                    g.status
                }
                _ => g.status,
            };
            if status != g.status {
                g.status = status;
                g.history.push((p, status));
            }
        }
        lane.notify.notify_one();
        if lane.lock().status == WebhookStatus::Deleted {
            self.lanes.remove(&id);
            if let Some(list) = self.by_shop.get_mut(&lane.shop) {
                list.retain(|l| l.webhook_id != id);
            }
        }
    }

    /// One event of the log.
    fn process(&mut self, e: &RecordedEvent) {
        if e.event_type.starts_with("Webhook") {
            if let Ok(Some(event)) = DomainEvent::decode(&e.event_type, &e.payload) {
                self.fold(e, &event);
            }
        } else if self.live
            && let Some(lanes) = self.by_shop.get(&e.stream.shop)
            && !lanes.is_empty()
            && let Some(job) = job_of(e)
        {
            let capacity = self.ctx.config.queue_per_subscription;
            for lane in lanes {
                let wanted = {
                    let g = lane.lock();
                    g.status == WebhookStatus::Active
                        && g.triggers.contains(&job.trigger)
                        && job.position > g.done
                };
                if wanted {
                    lane.offer(&job, capacity);
                }
            }
        }
        self.ctx.dispatched.store(e.position, Ordering::Release);
    }

    fn checkpoint(&self) -> Checkpoint {
        let position = self.ctx.dispatched.load(Ordering::Acquire);
        let mut subscriptions: Vec<Entry> = self
            .lanes
            .values()
            .map(|lane| {
                let g = lane.lock();
                Entry {
                    shop: lane.shop,
                    webhook_id: lane.webhook_id,
                    done: if g.idle() {
                        position.max(g.done)
                    } else {
                        g.done
                    },
                    pending: g.pending,
                }
            })
            .collect();
        subscriptions.sort_by_key(|e| e.webhook_id);
        Checkpoint {
            version: Checkpoint::VERSION,
            position,
            subscriptions,
        }
    }

    fn save(&self) {
        if let Some(path) = &self.ctx.config.checkpoint_path
            && let Err(e) = checkpoint::save(path, &self.checkpoint())
        {
            tracing::warn!(error = %e, "writing the webhook checkpoint");
        }
    }

    /// The state at the checkpoint (or the beginning), then the log up to
    /// its head; returns that head.
    async fn recover(&mut self, store: &dyn EventStore) -> anyhow::Result<Position> {
        let head = store.last_position().await?;
        let saved = self
            .ctx
            .config
            .checkpoint_path
            .as_deref()
            .and_then(checkpoint::load)
            .filter(|c| {
                let fits = c.position <= head;
                if !fits {
                    tracing::warn!(
                        checkpoint = c.position,
                        head,
                        "the webhook checkpoint is ahead of the log; folding from the start"
                    );
                }
                fits
            });
        let mut from = 0;
        if let Some(c) = saved {
            from = c.position;
            for entry in &c.subscriptions {
                let stream = streams::webhook(entry.shop, entry.webhook_id);
                let mut version = 1;
                loop {
                    let events = store.read_stream(&stream, version, READ_EVENTS_MAX).await?;
                    let Some(last) = events.last() else { break };
                    version = last.version + 1;
                    for e in &events {
                        if let Some(d) = DomainEvent::decode(&e.event_type, &e.payload)? {
                            self.fold(e, &d);
                        }
                    }
                }
                if let Some(lane) = self.lanes.get(&entry.webhook_id) {
                    let mut g = lane.lock();
                    g.done = g.done.max(entry.done);
                    g.pending = entry.pending.filter(|p| p.position > g.done);
                }
            }
        }
        let mut after = from;
        while after < head {
            let events = store.read_all(after, READ_EVENTS_MAX).await?;
            let Some(last) = events.last() else { break };
            after = last.position;
            for e in events
                .iter()
                .filter(|e| e.event_type.starts_with("Webhook"))
            {
                if let Some(d) = DomainEvent::decode(&e.event_type, &e.payload)? {
                    self.fold(e, &d);
                }
            }
        }
        Ok(after.max(from))
    }
}

/// The worker's main task.
pub async fn run(
    store: Arc<dyn EventStore>,
    engine: Arc<Engine>,
    client: reqwest::Client,
    config: WorkerConfig,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (outcomes, outcomes_rx) = mpsc::channel(OUTCOMES_QUEUED_MAX);
    let (finish, finish_rx) = oneshot::channel();
    let recorder = tokio::spawn(recorder::run(Arc::clone(&store), outcomes_rx, finish_rx));
    let checkpoint_every = config.checkpoint_every;
    let ctx = Arc::new(LaneCtx {
        store: Arc::clone(&store),
        engine,
        client,
        config,
        outcomes,
        dispatched: Default::default(),
        stop: stop.clone(),
    });
    let mut d = Dispatcher {
        ctx,
        lanes: HashMap::new(),
        by_shop: HashMap::new(),
        tasks: JoinSet::new(),
        live: false,
    };
    let head = d.recover(&*store).await?;
    d.ctx.dispatched.store(head, Ordering::Release);
    d.live = true;
    let lanes: Vec<Arc<Lane>> = d.lanes.values().cloned().collect();
    for lane in &lanes {
        {
            let mut g = lane.lock();
            g.seen = head;
            if g.done < head {
                g.overflow = Some(g.done);
            }
        }
        d.spawn(lane);
    }
    tracing::info!(
        position = head,
        subscriptions = lanes.len(),
        "webhook worker started"
    );
    let mut feed = subscribe(Arc::clone(&store), head);
    let mut tick = tokio::time::interval(checkpoint_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let result: anyhow::Result<()> = loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break Ok(()),
            batch = feed.next_batch(READ_EVENTS_MAX) => match batch {
                Ok(events) => events.iter().for_each(|e| d.process(e)),
                Err(e) => break Err(e.into()),
            },
            _ = tick.tick() => d.save(),
            Some(joined) = d.tasks.join_next(), if !d.tasks.is_empty() => {
                if let Err(e) = joined && e.is_panic() {
                    tracing::error!(error = %e, "a webhook lane panicked");
                }
            }
        }
    };
    // Stop: lanes first (they abandon attempts in flight), then what they
    // recorded, then the checkpoint.
    let lanes_done = async { while d.tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(LANES_STOP_WAIT, lanes_done)
        .await
        .is_err()
    {
        tracing::warn!("webhook lanes still running after the stop wait; aborting them");
        d.tasks.abort_all();
    }
    let _ = finish.send(());
    let _ = recorder.await;
    d.save();
    tracing::info!(
        position = d.ctx.dispatched.load(Ordering::Acquire),
        "webhook worker stopped"
    );
    result
}
