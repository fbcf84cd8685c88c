//! The command engine: load state, decide, append with expected versions,
//! retry conflicts.
//!
//! For each command the engine reads the reference data it needs (shop,
//! warehouses, catalog, customers) from its cache, locks the streams it
//! will write (in sorted order), decides with the domain's pure functions,
//! and submits one atomic append with every stream's expected version.
//! It applies the new events to its cache and unlocks as soon as the append
//! is *queued*, then waits for the outcome. So a hot stream (a SKU in a
//! flash sale) sees one decision per command, one after another, and the
//! appends of many commands share one fsync: no retry storm.
//!
//! A conflict (another writer got there first) invalidates the cache of the
//! streams involved and the command is decided again, a bounded number of
//! times. A command with an idempotency key gets event ids derived from
//! (shop, key, n), so a retried command records nothing new: the store
//! answers `AlreadyRecorded`.
//!
//! **Shared stores.** When other engines write the same store (several
//! kedai nodes on one PostgreSQL database; `sole_writer` off), the cache is
//! kept honest without reading the store for every command:
//! - every append names, for each stream, the version *and the id of the
//!   last event* the decision was made on
//!   ([`ExpectedVersion::ExactAfter`]), so an append decided on a state
//!   another node has moved past, or on submitted events that were never
//!   recorded, fails and is decided again on a reloaded state;
//! - a follower task reads the log and marks cached streams stale when
//!   another writer moves them ([`slots::Slots::saw`]); a stale stream
//!   catches up before its next use (from its last event, when the store
//!   holds that event; else from its first). Streams a command only reads (the
//!   shop, its warehouses, products, customers) are therefore as fresh as
//!   the follower, a few milliseconds behind the store;
//! - before a rejection is answered, the engine waits until its follower
//!   has read up to the store's current head and, if that made anything
//!   stale, decides once more: a rejection never rests on a state older
//!   than the command.

pub mod slots;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{OnceCell, watch};
use tokio::task::AbortHandle;
use uuid::Uuid;

use self::slots::{Kind, LoadError, Locked, Slots, State};
use crate::domain::access::{self, IssueKey};
use crate::domain::catalog::{
    self, AddWarehouse, CreateProduct, CreateShop, ProductChange, ProductKind,
};
use crate::domain::chat::{
    self, ConversationChange, DispatchOutcome, ImportHistory, Party, ReceiveMessage, SaveTemplate,
    SendMessage, SendTemplateMessage,
};
use crate::domain::checkout::{self, CheckoutContent, StartCheckout};
use crate::domain::events::{CustomerDetails, DomainEvent, SCHEMA_VERSION, ShopSettings};
use crate::domain::ids::{CustomerId, OrderId, ProductId, Sku, WarehouseId, streams};
use crate::domain::money::Money;
use crate::domain::order::{self, CatalogEntry, OrderInputs, PayOrder, PlaceOrder, Transition};
use crate::domain::rejection::{FieldError, Rejection};
use crate::domain::stock::{self, StockItem, StockMove};
use crate::domain::wallet::{
    self, RecordExpense, RequestWithdrawal, WalletEntry, WithdrawalAction,
};
use crate::domain::webhook::{self, CreateWebhook, WebhookChange};
use crate::domain::{Context, catalog::Customer};
use crate::event::{Actor, ExpectedVersion, NewEvent, Position, ShopId, StreamId, Timestamp};
use crate::store::{
    AppendRequest, AppendStatus, EventStore, StoreError, StreamAppend, Subscription,
};

/// Every command the engine takes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    CreateShop(CreateShop),
    ChangeShopSettings {
        settings: ShopSettings,
    },
    AddWarehouse(AddWarehouse),
    SetDefaultWarehouse {
        warehouse_id: WarehouseId,
    },
    CreateProduct(CreateProduct),
    ChangeProduct {
        product_id: ProductId,
        change: ProductChange,
    },
    RegisterCustomer {
        customer_id: CustomerId,
        details: CustomerDetails,
    },
    UpdateCustomer {
        customer_id: CustomerId,
        details: CustomerDetails,
    },
    MoveStock(StockMove),
    PlaceOrder(PlaceOrder),
    PayOrder {
        order_id: OrderId,
        payment: PayOrder,
    },
    TransitionOrder {
        order_id: OrderId,
        transition: Transition,
    },
    RefundOrder {
        order_id: OrderId,
        amount: Money,
        note: String,
    },
    WalletEntry(WalletEntry),
    RequestWithdrawal(RequestWithdrawal),
    ActOnWithdrawal {
        withdrawal_id: Uuid,
        action: WithdrawalAction,
    },
    RecordExpense(RecordExpense),
    VoidExpense {
        expense_id: Uuid,
        #[serde(default)]
        reason: String,
    },
    StartCheckout(StartCheckout),
    UpdateCheckout {
        checkout_id: Uuid,
        content: CheckoutContent,
    },
    /// Completes a checkout by placing its order, in one append.
    CompleteCheckout {
        checkout_id: Uuid,
        order: PlaceOrder,
    },
    /// Records an abandoned checkout if it is due (the scheduler sends it).
    AbandonCheckout {
        checkout_id: Uuid,
    },
    ReceiveMessage(ReceiveMessage),
    SendMessage(SendMessage),
    /// Sends a template filled with `data`.
    SendTemplate {
        party: Party,
        message_id: Uuid,
        template_id: Uuid,
        data: BTreeMap<String, String>,
    },
    /// Sends a template filled with `data` to a WhatsApp number: recorded
    /// in that conversation and queued for the sender.
    SendTemplateMessage(SendTemplateMessage),
    /// Records how the sender's work on a queued message ended (the
    /// sender sends it).
    RecordDispatch {
        conversation_id: Uuid,
        message_id: Uuid,
        outcome: DispatchOutcome,
    },
    ChangeConversation {
        conversation_id: Uuid,
        change: ConversationChange,
    },
    ImportHistory(ImportHistory),
    SaveTemplate(SaveTemplate),
    DeleteTemplate {
        template_id: Uuid,
    },
    IssueKey(IssueKey),
    RevokeKey {
        key_id: Uuid,
    },
    CreateWebhook(CreateWebhook),
    /// Pause, resume, delete, rotate the secret, or (the delivery worker)
    /// disable.
    ChangeWebhook {
        webhook_id: Uuid,
        change: WebhookChange,
    },
}

impl Command {
    /// The command's name (as in its JSON form), for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateShop(_) => "create_shop",
            Command::ChangeShopSettings { .. } => "change_shop_settings",
            Command::AddWarehouse(_) => "add_warehouse",
            Command::SetDefaultWarehouse { .. } => "set_default_warehouse",
            Command::CreateProduct(_) => "create_product",
            Command::ChangeProduct { .. } => "change_product",
            Command::RegisterCustomer { .. } => "register_customer",
            Command::UpdateCustomer { .. } => "update_customer",
            Command::MoveStock(_) => "move_stock",
            Command::PlaceOrder(_) => "place_order",
            Command::PayOrder { .. } => "pay_order",
            Command::TransitionOrder { .. } => "transition_order",
            Command::RefundOrder { .. } => "refund_order",
            Command::WalletEntry(_) => "wallet_entry",
            Command::RequestWithdrawal(_) => "request_withdrawal",
            Command::ActOnWithdrawal { .. } => "act_on_withdrawal",
            Command::RecordExpense(_) => "record_expense",
            Command::VoidExpense { .. } => "void_expense",
            Command::StartCheckout(_) => "start_checkout",
            Command::UpdateCheckout { .. } => "update_checkout",
            Command::CompleteCheckout { .. } => "complete_checkout",
            Command::AbandonCheckout { .. } => "abandon_checkout",
            Command::ReceiveMessage(_) => "receive_message",
            Command::SendMessage(_) => "send_message",
            Command::SendTemplate { .. } => "send_template",
            Command::SendTemplateMessage(_) => "send_template_message",
            Command::RecordDispatch { .. } => "record_dispatch",
            Command::ChangeConversation { .. } => "change_conversation",
            Command::ImportHistory(_) => "import_history",
            Command::SaveTemplate(_) => "save_template",
            Command::DeleteTemplate { .. } => "delete_template",
            Command::IssueKey(_) => "issue_key",
            Command::RevokeKey { .. } => "revoke_key",
            Command::CreateWebhook(_) => "create_webhook",
            Command::ChangeWebhook { .. } => "change_webhook",
        }
    }

    /// Checks the command's own fields (before any state is read).
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        match self {
            Command::CreateShop(c) => c.validate(),
            Command::ChangeShopSettings { settings } => settings.validate(),
            Command::AddWarehouse(c) => c.validate(),
            Command::CreateProduct(c) => c.validate(),
            Command::ChangeProduct { change, .. } => change.validate(),
            Command::MoveStock(c) => c.validate(),
            Command::PlaceOrder(c) => c.validate(),
            Command::PayOrder { payment, .. } => payment.validate(),
            Command::TransitionOrder { transition, .. } => transition.validate(),
            Command::RefundOrder { amount, note, .. } => {
                let mut c = crate::domain::rejection::Check::new();
                c.that(amount.is_positive(), "amount", "must be more than 0")
                    .text(note, "note", false, catalog::NOTE_LEN_MAX);
                c.finish()
            }
            Command::WalletEntry(c) => c.validate(),
            Command::RequestWithdrawal(c) => c.validate(),
            Command::ActOnWithdrawal { action, .. } => action.validate(),
            Command::RecordExpense(c) => c.validate(),
            Command::VoidExpense { reason, .. } => {
                let mut c = crate::domain::rejection::Check::new();
                c.text(reason, "reason", false, catalog::NOTE_LEN_MAX);
                c.finish()
            }
            Command::StartCheckout(c) => c.validate(),
            Command::UpdateCheckout { content, .. } => content.validate(),
            Command::CompleteCheckout { order, .. } => order.validate(),
            Command::ReceiveMessage(c) => c.validate(),
            Command::SendMessage(c) => c.validate(),
            Command::SendTemplate { party, data, .. } => {
                let probe = SendMessage {
                    party: party.clone(),
                    message_id: Uuid::nil(),
                    text: "-".into(),
                    attachment: None,
                };
                let mut errors = probe.validate().err().unwrap_or_default();
                if data.len() > 100
                    || data
                        .iter()
                        .any(|(k, v)| k.len() > 100 || v.chars().count() > 1_000)
                {
                    errors.push(FieldError::new(
                        "data",
                        "at most 100 keys of 100 characters, values of 1000",
                    ));
                }
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors)
                }
            }
            Command::SendTemplateMessage(c) => c.validate(),
            Command::RecordDispatch { outcome, .. } => outcome.validate(),
            Command::ChangeConversation { change, .. } => change.validate(),
            Command::ImportHistory(c) => c.validate(),
            Command::SaveTemplate(c) => c.validate(),
            Command::IssueKey(c) => c.validate(),
            Command::CreateWebhook(c) => c.validate(),
            Command::ChangeWebhook { change, .. } => change.validate(),
            Command::AbandonCheckout { .. }
            | Command::DeleteTemplate { .. }
            | Command::RevokeKey { .. } => Ok(()),
            // Customer details are checked against the shop's country.
            Command::RegisterCustomer { .. }
            | Command::UpdateCustomer { .. }
            | Command::SetDefaultWarehouse { .. } => Ok(()),
        }
    }
}

/// Who sends a command and how to recognise it again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandMeta {
    pub actor: Actor,
    /// Makes the command's event ids deterministic: sending it again
    /// records nothing new.
    pub idempotency_key: Option<String>,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// The moment the command is decided.
    pub now: Timestamp,
}

impl CommandMeta {
    /// A command sent now by `actor`, with a fresh correlation id.
    pub fn new(actor: Actor) -> Self {
        CommandMeta {
            actor,
            idempotency_key: None,
            correlation_id: Uuid::now_v7(),
            causation_id: None,
            now: Timestamp::now(),
        }
    }

    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }

    pub fn at(mut self, now: Timestamp) -> Self {
        self.now = now;
        self
    }
}

/// What a command did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Executed {
    /// `AlreadyRecorded` for a repeated command (same idempotency key).
    pub status: AppendStatus,
    /// Position of the command's last event (or of the log's head when it
    /// recorded nothing): read with `min_position` of this to see it.
    pub position: Position,
    /// Position of the command's first event (`position + 1` when it
    /// recorded nothing).
    pub first_position: Position,
    /// The events decided, by stream (empty when nothing changed).
    pub events: Vec<(StreamId, DomainEvent)>,
}

/// Why a command did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("invalid command: {}", .0.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Rejected(#[from] Rejection),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
    #[error("{0}")]
    Corrupt(String),
}

impl From<StoreError> for CommandError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::PartlyRecorded { event_id } => CommandError::Conflict(format!(
                "the idempotency key was used before for a different command (event {event_id})"
            )),
            other => CommandError::Store(other),
        }
    }
}

impl From<LoadError> for CommandError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Store(s) => CommandError::Store(s),
            LoadError::Undecodable(why) => CommandError::Corrupt(why),
        }
    }
}

/// Tuning of the engine.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Times a command is decided again after a conflict.
    pub retries_max: u32,
    /// Set when this engine is the store's only writer (the embedded log):
    /// its cache is then the truth and is not checked against the store.
    pub sole_writer: bool,
    /// Streams kept in the cache.
    pub cache_streams_max: usize,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            retries_max: 8,
            sole_writer: false,
            cache_streams_max: 1_000_000,
        }
    }
}

/// Longest a rejection waits for the follower to reach the store's head
/// before it is answered anyway.
const FOLLOWER_WAIT_MAX: Duration = Duration::from_secs(2);

/// Pause before the follower reads again after the store failed it.
const FOLLOWER_RETRY_PAUSE: Duration = Duration::from_millis(500);

/// The command engine over one store.
#[derive(Debug)]
pub struct Engine {
    store: Arc<dyn EventStore>,
    slots: Arc<Slots>,
    options: EngineOptions,
    /// With a shared store: the task marking cached streams stale, started
    /// before the cache is first used.
    follower: OnceCell<Follower>,
}

/// The follower of a shared store: the position it has read up to.
#[derive(Debug)]
struct Follower {
    position: watch::Receiver<Position>,
    task: AbortHandle,
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(f) = self.follower.get() {
            f.task.abort();
        }
    }
}

/// Reads the log from `after` on and tells the cache what it sees; ends
/// when the engine is dropped.
async fn follow(
    store: Arc<dyn EventStore>,
    slots: Weak<Slots>,
    after: Position,
    position: watch::Sender<Position>,
) {
    let mut subscription = Subscription::new(Arc::clone(&store), after);
    loop {
        match subscription.next_batch(crate::store::READ_EVENTS_MAX).await {
            Ok(events) => {
                let Some(slots) = slots.upgrade() else { return };
                for e in &events {
                    slots.saw(&e.stream, e.version);
                }
                if let Some(last) = events.last() {
                    position.send_replace(last.position);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "the command engine's follower could not read the log; retrying");
                tokio::time::sleep(FOLLOWER_RETRY_PAUSE).await;
                subscription = Subscription::new(Arc::clone(&store), *position.borrow());
            }
        }
    }
}

/// The events a decision appends, by stream (in append order).
type Appends = Vec<(StreamId, Vec<DomainEvent>)>;

/// What one attempt at a command came to.
enum Attempt {
    Done(Executed),
    Retry(String),
}

impl Engine {
    pub fn new(store: Arc<dyn EventStore>, options: EngineOptions) -> Self {
        let slots = Arc::new(Slots::new(options.cache_streams_max));
        Engine {
            store,
            slots,
            options,
            follower: OnceCell::new(),
        }
    }

    /// With a shared store, starts the follower (once) from the store's
    /// head: anything cached after this point is either loaded after an
    /// event or sees it through the follower.
    async fn follower(&self) -> Result<Option<&Follower>, CommandError> {
        if self.options.sole_writer {
            return Ok(None);
        }
        let follower = self
            .follower
            .get_or_try_init(|| async {
                let after = self.store.last_position().await?;
                let (tx, rx) = watch::channel(after);
                let task = tokio::spawn(follow(
                    Arc::clone(&self.store),
                    Arc::downgrade(&self.slots),
                    after,
                    tx,
                ));
                Ok::<_, StoreError>(Follower {
                    position: rx,
                    task: task.abort_handle(),
                })
            })
            .await?;
        Ok(Some(follower))
    }

    /// With a shared store: waits (bounded) until the follower has read
    /// everything committed so far; returns whether that marked any
    /// cached stream stale since `marked` was taken.
    async fn caught_up_since(&self, marked: u64) -> Result<bool, CommandError> {
        let Some(follower) = self.follower().await? else {
            return Ok(false);
        };
        let head = self.store.last_position().await?;
        let mut position = follower.position.clone();
        if tokio::time::timeout(FOLLOWER_WAIT_MAX, position.wait_for(|&p| p >= head))
            .await
            .is_err()
        {
            tracing::warn!(head, "the command engine's follower is behind the store");
        }
        Ok(self.slots.marked() != marked)
    }

    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// Runs a command for `shop`.
    pub async fn execute(
        &self,
        shop: ShopId,
        meta: &CommandMeta,
        command: &Command,
    ) -> Result<Executed, CommandError> {
        command.validate().map_err(CommandError::Invalid)?;
        if let Some(done) = self.already_done(shop, meta).await? {
            return Ok(done);
        }
        let ctx = Context {
            now: meta.now,
            actor: meta.actor.clone(),
        };
        let mut last_conflict = String::new();
        let mut rechecked = false;
        for _ in 0..=self.options.retries_max {
            let marked = self.slots.marked();
            match self.attempt(shop, meta, &ctx, command).await {
                Ok(Attempt::Done(executed)) => {
                    self.slots.trim();
                    return Ok(executed);
                }
                Ok(Attempt::Retry(why)) => last_conflict = why,
                Err(CommandError::Rejected(_))
                    if !rechecked && self.caught_up_since(marked).await? =>
                {
                    // Another writer moved something this node had cached:
                    // decide once more on what the store holds now.
                    rechecked = true;
                    last_conflict = "decided again on streams another writer moved".into();
                }
                Err(CommandError::Rejected(rejection)) => {
                    // The same command may have been recorded meanwhile by a
                    // concurrent sender: that is its answer, not the
                    // rejection its repetition meets.
                    if let Some(done) = self.already_done(shop, meta).await? {
                        return Ok(done);
                    }
                    return Err(rejection.into());
                }
                Err(e) => return Err(e),
            }
        }
        Err(CommandError::Conflict(format!(
            "gave up after {} attempts: {last_conflict}",
            self.options.retries_max + 1
        )))
    }

    /// For a command with an idempotency key: if its events are recorded
    /// already, what it did then.
    async fn already_done(
        &self,
        shop: ShopId,
        meta: &CommandMeta,
    ) -> Result<Option<Executed>, CommandError> {
        const PROBE: u32 = 64;
        let Some(key) = meta.idempotency_key.as_deref() else {
            return Ok(None);
        };
        let mut range: Option<(Position, Position)> = None;
        for round in 0.. {
            let ids: Vec<Uuid> = (1..=PROBE)
                .map(|i| event_id(shop, Some(key), round * PROBE + i))
                .collect();
            let found = self.store.event_positions(&ids).await?;
            let recorded: Vec<Position> = found.iter().map_while(|p| *p).collect();
            for &p in &recorded {
                range = Some(range.map_or((p, p), |(lo, hi)| (lo.min(p), hi.max(p))));
            }
            if recorded.len() < PROBE as usize
                || round * PROBE >= crate::store::APPEND_EVENTS_MAX as u32
            {
                break;
            }
        }
        Ok(range.map(|(first_position, position)| Executed {
            status: AppendStatus::AlreadyRecorded,
            position,
            first_position,
            events: Vec::new(),
        }))
    }

    async fn attempt(
        &self,
        shop: ShopId,
        meta: &CommandMeta,
        ctx: &Context,
        command: &Command,
    ) -> Result<Attempt, CommandError> {
        if !matches!(command, Command::CreateShop(_)) {
            self.require_shop(shop).await?;
        }
        let (locked, appends) = match command {
            Command::CreateShop(c) => {
                let mut locked = self.lock(&[(streams::shop(shop), Kind::Shop)]).await?;
                let events = catalog::create_shop(first(&mut locked).shop(), c)?;
                (locked, vec![(streams::shop(shop), events)])
            }
            Command::ChangeShopSettings { settings } => {
                let mut locked = self.lock(&[(streams::shop(shop), Kind::Shop)]).await?;
                let events = catalog::change_settings(first(&mut locked).shop(), settings)?;
                (locked, vec![(streams::shop(shop), events)])
            }
            Command::AddWarehouse(c) => {
                let stream = streams::warehouses(shop);
                let mut locked = self.lock(&[(stream.clone(), Kind::Warehouses)]).await?;
                let events = catalog::add_warehouse(first(&mut locked).warehouses(), c)?;
                (locked, vec![(stream, events)])
            }
            Command::SetDefaultWarehouse { warehouse_id } => {
                let stream = streams::warehouses(shop);
                let mut locked = self.lock(&[(stream.clone(), Kind::Warehouses)]).await?;
                let events =
                    catalog::set_default_warehouse(first(&mut locked).warehouses(), *warehouse_id)?;
                (locked, vec![(stream, events)])
            }
            Command::CreateProduct(c) => self.create_product(shop, c).await?,
            Command::ChangeProduct { product_id, change } => {
                self.change_product(shop, *product_id, change).await?
            }
            Command::RegisterCustomer {
                customer_id,
                details,
            }
            | Command::UpdateCustomer {
                customer_id,
                details,
            } => {
                let currency = self
                    .shop_state(shop)
                    .await?
                    .shop()
                    .currency()
                    .ok_or(Rejection::UnknownShop)?;
                let details = details
                    .clone()
                    .validated(currency)
                    .map_err(CommandError::Invalid)?;
                let stream = streams::customer(shop, *customer_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Customer)]).await?;
                let customer = first(&mut locked).customer();
                let events = match command {
                    Command::RegisterCustomer { .. } => {
                        catalog::register_customer(customer, *customer_id, details)?
                    }
                    _ => catalog::update_customer(customer, *customer_id, details)?,
                };
                (locked, vec![(stream, events)])
            }
            Command::MoveStock(c) => self.move_stock(shop, c).await?,
            Command::PlaceOrder(c) => self.place_order(shop, c, ctx, None).await?,
            Command::PayOrder { order_id, payment } => {
                let stream = streams::order(shop, *order_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Order)]).await?;
                let events = order::pay(first(&mut locked).order(), *order_id, payment, ctx)?;
                (locked, vec![(stream, events)])
            }
            Command::RefundOrder {
                order_id,
                amount,
                note,
            } => {
                let stream = streams::order(shop, *order_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Order)]).await?;
                let events = order::refund(first(&mut locked).order(), *order_id, *amount, note)?;
                (locked, vec![(stream, events)])
            }
            Command::WalletEntry(entry) => self.wallet_entry(shop, meta, ctx, entry).await?,
            Command::RequestWithdrawal(c) => {
                let settings = self.settings(shop).await?;
                let (w, wallet) = (
                    streams::withdrawal(shop, c.withdrawal_id),
                    streams::wallet(shop),
                );
                let locked = self
                    .lock(&[
                        (w.clone(), Kind::Withdrawal),
                        (wallet.clone(), Kind::Wallet),
                    ])
                    .await?;
                let events = wallet::request_withdrawal(
                    locked[&w].state.withdrawal(),
                    locked[&wallet].state.wallet(),
                    &settings,
                    c,
                    ctx,
                    IdSource::new(shop, meta).next(),
                )?;
                (locked, split_wallet(w, wallet, events))
            }
            Command::ActOnWithdrawal {
                withdrawal_id,
                action,
            } => {
                let (w, wallet) = (
                    streams::withdrawal(shop, *withdrawal_id),
                    streams::wallet(shop),
                );
                let locked = self
                    .lock(&[
                        (w.clone(), Kind::Withdrawal),
                        (wallet.clone(), Kind::Wallet),
                    ])
                    .await?;
                let events = wallet::act_on_withdrawal(
                    locked[&w].state.withdrawal(),
                    *withdrawal_id,
                    action,
                    ctx,
                    IdSource::new(shop, meta).next(),
                )?;
                (locked, split_wallet(w, wallet, events))
            }
            Command::RecordExpense(c) => {
                let stream = streams::expense(shop, c.expense_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Expense)]).await?;
                let events = wallet::record_expense(first(&mut locked).expense(), c)?;
                (locked, vec![(stream, events)])
            }
            Command::VoidExpense { expense_id, reason } => {
                let stream = streams::expense(shop, *expense_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Expense)]).await?;
                let events =
                    wallet::void_expense(first(&mut locked).expense(), *expense_id, reason)?;
                (locked, vec![(stream, events)])
            }
            Command::StartCheckout(c) => {
                let currency = self
                    .shop_state(shop)
                    .await?
                    .shop()
                    .currency()
                    .ok_or(Rejection::UnknownShop)?;
                let stream = streams::checkout(shop, c.checkout_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Checkout)]).await?;
                let events = checkout::start(first(&mut locked).checkout(), c, currency, ctx)?;
                (locked, vec![(stream, events)])
            }
            Command::UpdateCheckout {
                checkout_id,
                content,
            } => {
                let stream = streams::checkout(shop, *checkout_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Checkout)]).await?;
                let events =
                    checkout::update(first(&mut locked).checkout(), *checkout_id, content, ctx)?;
                (locked, vec![(stream, events)])
            }
            Command::CompleteCheckout { checkout_id, order } => {
                self.place_order(shop, order, ctx, Some(*checkout_id))
                    .await?
            }
            Command::AbandonCheckout { checkout_id } => {
                let minutes = self.settings(shop).await?.checkout_abandon_minutes;
                let stream = streams::checkout(shop, *checkout_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Checkout)]).await?;
                let events =
                    checkout::abandon(first(&mut locked).checkout(), *checkout_id, minutes, ctx)?;
                (locked, vec![(stream, events)])
            }
            Command::ReceiveMessage(c) => {
                let id = chat::conversation_id(shop, c.party.channel, &c.party.handle);
                let stream = streams::conversation(shop, id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Conversation)]).await?;
                let events = chat::receive(first(&mut locked).conversation(), id, c, ctx)?;
                (locked, vec![(stream, events)])
            }
            Command::SendMessage(c) => self.send_message(shop, c, None, ctx).await?,
            Command::SendTemplate {
                party,
                message_id,
                template_id,
                data,
            } => {
                let text = self.filled_template(shop, *template_id, data).await?;
                let message = SendMessage {
                    party: party.clone(),
                    message_id: *message_id,
                    text,
                    attachment: None,
                };
                message.validate().map_err(CommandError::Invalid)?;
                self.send_message(shop, &message, Some(*template_id), ctx)
                    .await?
            }
            Command::SendTemplateMessage(c) => {
                if let Some(customer_id) = c.customer_id {
                    let customer = self
                        .read(&streams::customer(shop, customer_id), Kind::Customer)
                        .await?;
                    if customer.customer().details.is_none() {
                        return Err(Rejection::UnknownCustomer { customer_id }.into());
                    }
                }
                let text = self.filled_template(shop, c.template_id, &c.data).await?;
                let party = c.party();
                // The filled text must fit in a message.
                SendMessage {
                    party: party.clone(),
                    message_id: c.message_id,
                    text: text.clone(),
                    attachment: None,
                }
                .validate()
                .map_err(CommandError::Invalid)?;
                let id = chat::conversation_id(shop, party.channel, &party.handle);
                let stream = streams::conversation(shop, id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Conversation)]).await?;
                let events = chat::send_template_message(
                    first(&mut locked).conversation(),
                    id,
                    c,
                    text,
                    ctx,
                )?;
                (locked, vec![(stream, events)])
            }
            Command::RecordDispatch {
                conversation_id,
                message_id,
                outcome,
            } => {
                let stream = streams::conversation(shop, *conversation_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Conversation)]).await?;
                let events = chat::record_dispatch(
                    first(&mut locked).conversation(),
                    *conversation_id,
                    *message_id,
                    outcome,
                    ctx,
                )?;
                (locked, vec![(stream, events)])
            }
            Command::ChangeConversation {
                conversation_id,
                change,
            } => {
                let stream = streams::conversation(shop, *conversation_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Conversation)]).await?;
                let events = chat::change(
                    first(&mut locked).conversation(),
                    *conversation_id,
                    change,
                    ctx,
                )?;
                (locked, vec![(stream, events)])
            }
            Command::ImportHistory(c) => {
                let ids: Vec<Uuid> = c
                    .conversations
                    .iter()
                    .map(|conv| chat::conversation_id(shop, conv.party.channel, &conv.party.handle))
                    .collect();
                let wanted: Vec<(StreamId, Kind)> = ids
                    .iter()
                    .map(|id| (streams::conversation(shop, *id), Kind::Conversation))
                    .collect();
                let locked = self.lock(&wanted).await?;
                let appends = c
                    .conversations
                    .iter()
                    .zip(&ids)
                    .map(|(conv, id)| {
                        let stream = streams::conversation(shop, *id);
                        let events =
                            chat::import(locked[&stream].state.conversation(), *id, conv, ctx);
                        (stream, events)
                    })
                    .collect();
                (locked, appends)
            }
            Command::SaveTemplate(c) => {
                let stream = streams::template(shop, c.template_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Template)]).await?;
                let events = chat::save_template(first(&mut locked).template(), c)?;
                (locked, vec![(stream, events)])
            }
            Command::DeleteTemplate { template_id } => {
                let stream = streams::template(shop, *template_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Template)]).await?;
                let events = chat::delete_template(first(&mut locked).template(), *template_id)?;
                (locked, vec![(stream, events)])
            }
            Command::IssueKey(c) => {
                let stream = streams::keys(shop);
                let mut locked = self.lock(&[(stream.clone(), Kind::Keys)]).await?;
                let events = access::issue(first(&mut locked).keys(), c, ctx)?;
                (locked, vec![(stream, events)])
            }
            Command::RevokeKey { key_id } => {
                let stream = streams::keys(shop);
                let mut locked = self.lock(&[(stream.clone(), Kind::Keys)]).await?;
                let events = access::revoke(first(&mut locked).keys(), *key_id, ctx)?;
                (locked, vec![(stream, events)])
            }
            Command::TransitionOrder {
                order_id,
                transition,
            } => {
                self.transition_order(shop, meta, ctx, *order_id, transition)
                    .await?
            }
            Command::CreateWebhook(c) => {
                let stream = streams::webhook(shop, c.webhook_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Webhook)]).await?;
                let events = webhook::create(first(&mut locked).webhook(), c, ctx)?;
                (locked, vec![(stream, events)])
            }
            Command::ChangeWebhook { webhook_id, change } => {
                let stream = streams::webhook(shop, *webhook_id);
                let mut locked = self.lock(&[(stream.clone(), Kind::Webhook)]).await?;
                let events =
                    webhook::change(first(&mut locked).webhook(), *webhook_id, change, ctx)?;
                (locked, vec![(stream, events)])
            }
        };
        self.commit(shop, meta, locked, appends).await
    }

    async fn lock(&self, streams: &[(StreamId, Kind)]) -> Result<Locked, CommandError> {
        self.follower().await?;
        Ok(self
            .slots
            .lock(&*self.store, streams.iter().cloned().collect())
            .await?)
    }

    async fn read(&self, stream: &StreamId, kind: Kind) -> Result<Arc<State>, CommandError> {
        self.follower().await?;
        Ok(self.slots.read(&*self.store, stream, kind).await?)
    }

    async fn shop_state(&self, shop: ShopId) -> Result<Arc<State>, CommandError> {
        self.read(&streams::shop(shop), Kind::Shop).await
    }

    async fn require_shop(&self, shop: ShopId) -> Result<(), CommandError> {
        if self.shop_state(shop).await?.shop().created.is_none() {
            return Err(Rejection::UnknownShop.into());
        }
        Ok(())
    }

    async fn warehouses(&self, shop: ShopId) -> Result<Arc<State>, CommandError> {
        self.read(&streams::warehouses(shop), Kind::Warehouses)
            .await
    }

    /// The product a SKU belongs to (its state shared, not copied).
    async fn product_of(
        &self,
        shop: ShopId,
        sku: &Sku,
    ) -> Result<(ProductId, Arc<State>), CommandError> {
        let owner = self.read(&streams::sku(shop, sku), Kind::Sku).await?;
        let product_id = owner
            .sku()
            .product_id
            .ok_or_else(|| Rejection::UnknownSku { sku: sku.clone() })?;
        let product = self
            .read(&streams::product(shop, product_id), Kind::Product)
            .await?;
        // A variation being added has its SKU claimed in the same append as
        // the product change, so both exist together.
        if product.product().variation(sku).is_none() {
            return Err(Rejection::UnknownSku { sku: sku.clone() }.into());
        }
        Ok((product_id, product))
    }

    async fn create_product(
        &self,
        shop: ShopId,
        c: &CreateProduct,
    ) -> Result<(Locked, Appends), CommandError> {
        let product_stream = streams::product(shop, c.product_id);
        let skus: Vec<Sku> = c.variations.iter().map(|v| v.sku.clone()).collect();
        let mut wanted = vec![(product_stream.clone(), Kind::Product)];
        wanted.extend(skus.iter().map(|s| (streams::sku(shop, s), Kind::Sku)));
        let locked = self.lock(&wanted).await?;
        let owners: Vec<(Sku, catalog::SkuOwner)> = skus
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    locked[&streams::sku(shop, s)].state.sku().clone(),
                )
            })
            .collect();
        let events = catalog::create_product(locked[&product_stream].state.product(), &owners, c)?;
        let mut appends = vec![(product_stream, events)];
        for (sku, event) in catalog::claim_skus(c.product_id, &skus) {
            appends.push((streams::sku(shop, &sku), vec![event]));
        }
        Ok((locked, appends))
    }

    async fn change_product(
        &self,
        shop: ShopId,
        product_id: ProductId,
        change: &ProductChange,
    ) -> Result<(Locked, Appends), CommandError> {
        let product_stream = streams::product(shop, product_id);
        let sku_stream = streams::sku(shop, change.sku());
        let locked = self
            .lock(&[
                (product_stream.clone(), Kind::Product),
                (sku_stream.clone(), Kind::Sku),
            ])
            .await?;
        let events = catalog::change_product(
            locked[&product_stream].state.product(),
            product_id,
            locked[&sku_stream].state.sku(),
            change,
        )?;
        let mut appends = vec![(product_stream, events)];
        if let ProductChange::AddVariation { variation } = change {
            let claim = catalog::claim_skus(product_id, std::slice::from_ref(&variation.sku));
            appends.push((sku_stream, claim.into_iter().map(|(_, e)| e).collect()));
        }
        Ok((locked, appends))
    }

    async fn move_stock(
        &self,
        shop: ShopId,
        c: &StockMove,
    ) -> Result<(Locked, Appends), CommandError> {
        let (_, product) = self.product_of(shop, c.sku()).await?;
        let kind = product
            .product()
            .created
            .as_ref()
            .map(|p| p.kind)
            .expect("owned SKUs have products");
        if !kind.is_tracked() {
            return Err(Rejection::SkuNotTracked {
                sku: c.sku().clone(),
            }
            .into());
        }
        let warehouses_state = self.warehouses(shop).await?;
        let warehouses = warehouses_state.warehouses();
        let touched = c.warehouses();
        for w in &touched {
            warehouses.require(*w)?;
        }
        let wanted: Vec<(StreamId, Kind)> = touched
            .iter()
            .map(|w| (streams::stock(shop, c.sku(), *w), Kind::Stock))
            .collect();
        let locked = self.lock(&wanted).await?;
        let items: Vec<&StockItem> = wanted
            .iter()
            .map(|(s, _)| locked[s].state.stock())
            .collect();
        let events = stock::decide_move(&items, c, kind == ProductKind::Preorder)?;
        let appends = events
            .into_iter()
            .map(|(w, e)| (streams::stock(shop, c.sku(), w), vec![e]))
            .collect();
        Ok((locked, appends))
    }

    /// Places an order; with `checkout`, also completes that checkout in
    /// the same append.
    async fn place_order(
        &self,
        shop: ShopId,
        c: &PlaceOrder,
        ctx: &Context,
        checkout: Option<Uuid>,
    ) -> Result<(Locked, Appends), CommandError> {
        let warehouses_state = self.warehouses(shop).await?;
        let warehouses = warehouses_state.warehouses();
        let sender = self
            .read(&streams::customer(shop, c.sender_id), Kind::Customer)
            .await?;
        let receiver_id = c.receiver_id.unwrap_or(c.sender_id);
        let receiver = self
            .read(&streams::customer(shop, receiver_id), Kind::Customer)
            .await?;
        let mut products: BTreeMap<Sku, (ProductId, Arc<State>)> = BTreeMap::new();
        for line in &c.lines {
            if !products.contains_key(&line.sku) {
                products.insert(line.sku.clone(), self.product_of(shop, &line.sku).await?);
            }
        }
        let catalog_entries: BTreeMap<Sku, CatalogEntry<'_>> = products
            .iter()
            .map(|(sku, (id, state))| {
                let p = state.product();
                let created = p.created.as_ref().expect("owned SKUs have products");
                let entry = CatalogEntry {
                    product_id: *id,
                    product_name: &created.name,
                    category: created.category.as_deref(),
                    kind: created.kind,
                    variation: p.variation(sku).expect("checked by product_of"),
                };
                (sku.clone(), entry)
            })
            .collect();
        // Every stock item a line may take from.
        let mut keys: BTreeSet<(Sku, WarehouseId)> = BTreeSet::new();
        for line in &c.lines {
            if !catalog_entries[&line.sku].kind.is_tracked() {
                continue;
            }
            match line.warehouse_id {
                Some(w) => {
                    warehouses.require(w)?;
                    keys.insert((line.sku.clone(), w));
                }
                None => keys.extend(warehouses.list.iter().map(|w| (line.sku.clone(), w.id))),
            }
        }
        let order_stream = streams::order(shop, c.order_id);
        // Each stock stream's id made once: names are formatted strings.
        let stock_streams: BTreeMap<(Sku, WarehouseId), StreamId> = keys
            .iter()
            .map(|(s, w)| ((s.clone(), *w), streams::stock(shop, s, *w)))
            .collect();
        let mut wanted = vec![(order_stream.clone(), Kind::Order)];
        wanted.extend(stock_streams.values().map(|s| (s.clone(), Kind::Stock)));
        let checkout_stream = checkout.map(|id| streams::checkout(shop, id));
        if let Some(stream) = &checkout_stream {
            wanted.push((stream.clone(), Kind::Checkout));
        }
        let locked = self.lock(&wanted).await?;
        let stock: BTreeMap<(Sku, WarehouseId), &StockItem> = stock_streams
            .iter()
            .map(|(key, stream)| (key.clone(), locked[stream].state.stock()))
            .collect();
        let inputs = OrderInputs {
            sender: sender.customer(),
            receiver: receiver.customer(),
            catalog: &catalog_entries,
            warehouses,
            stock: &stock,
        };
        // A closed checkout is the answer before anything about the order.
        let completion = match (checkout_stream, checkout) {
            (Some(stream), Some(id)) => {
                let events =
                    checkout::complete(locked[&stream].state.checkout(), id, c.order_id, ctx)?;
                Some((stream, events))
            }
            _ => None,
        };
        let placement = order::place_order(locked[&order_stream].state.order(), c, &inputs, ctx)?;
        let mut appends: Appends = vec![(order_stream, vec![placement.order])];
        for (key, event) in placement.reservations {
            let stream = &stock_streams[&key];
            match appends.iter_mut().find(|(s, _)| s == stream) {
                Some((_, list)) => list.push(event),
                None => appends.push((stream.clone(), vec![event])),
            }
        }
        appends.extend(completion);

        Ok((locked, appends))
    }

    async fn transition_order(
        &self,
        shop: ShopId,
        meta: &CommandMeta,
        ctx: &Context,
        order_id: OrderId,
        t: &Transition,
    ) -> Result<(Locked, Appends), CommandError> {
        let order_stream = streams::order(shop, order_id);
        let wallet_stream = streams::wallet(shop);
        let mut wanted = vec![(order_stream.clone(), Kind::Order)];
        if t.touches_stock() {
            // An order's allocations never change after it is placed, so
            // they can be read before locking.
            let current = self.read(&order_stream, Kind::Order).await?;
            let keys = current.order().stock_keys();
            wanted.extend(
                keys.iter()
                    .map(|(s, w)| (streams::stock(shop, s, *w), Kind::Stock)),
            );
        }
        let moves_money = t.moves_money();
        let settings = if moves_money {
            wanted.push((wallet_stream.clone(), Kind::Wallet));
            Some(self.settings(shop).await?)
        } else {
            None
        };
        let locked = self.lock(&wanted).await?;
        let order = locked[&order_stream].state.order();
        let stock: BTreeMap<(Sku, WarehouseId), &StockItem> = order
            .stock_keys()
            .into_iter()
            .filter_map(|key| {
                locked
                    .get(&streams::stock(shop, &key.0, key.1))
                    .map(|slot| (key, slot.state.stock()))
            })
            .collect();
        let decided = order::transition(order, order_id, t, &stock)?;
        let mut appends: Appends = Vec::new();
        if let Some(settings) = settings {
            // The money the transition moves, in the same append.
            let mut after = order.clone();
            decided.order.iter().for_each(|e| after.evolve(e));
            let wallet = locked[&wallet_stream].state.wallet();
            if let Some(entry) = wallet::order_entry(
                wallet,
                order_id,
                &after,
                &settings,
                ctx,
                IdSource::new(shop, meta).next(),
            ) {
                appends.push((wallet_stream, vec![entry]));
            }
        }
        appends.insert(0, (order_stream, decided.order));
        appends.extend(group_by_stock(shop, decided.stock));
        Ok((locked, appends))
    }

    async fn settings(&self, shop: ShopId) -> Result<ShopSettings, CommandError> {
        let shop = self.shop_state(shop).await?;
        Ok(shop
            .shop()
            .settings()
            .ok_or(Rejection::UnknownShop)?
            .clone())
    }

    async fn wallet_entry(
        &self,
        shop: ShopId,
        meta: &CommandMeta,
        ctx: &Context,
        entry: &WalletEntry,
    ) -> Result<(Locked, Appends), CommandError> {
        let wallet_stream = streams::wallet(shop);
        let order = match entry {
            WalletEntry::Compensation { order_id, .. }
            | WalletEntry::ReturnClaim { order_id, .. } => Some(
                self.read(&streams::order(shop, *order_id), Kind::Order)
                    .await?,
            ),
            _ => None,
        };
        let mut locked = self.lock(&[(wallet_stream.clone(), Kind::Wallet)]).await?;
        let mut ids = IdSource::new(shop, meta);
        let events = wallet::wallet_entry(
            first(&mut locked).wallet(),
            entry,
            order.as_deref().map(State::order),
            ctx,
            &mut || ids.next(),
        )?;
        Ok((locked, vec![(wallet_stream, events)]))
    }

    async fn send_message(
        &self,
        shop: ShopId,
        c: &SendMessage,
        template: Option<Uuid>,
        ctx: &Context,
    ) -> Result<(Locked, Appends), CommandError> {
        let id = chat::conversation_id(shop, c.party.channel, &c.party.handle);
        let stream = streams::conversation(shop, id);
        let mut locked = self.lock(&[(stream.clone(), Kind::Conversation)]).await?;
        let events = chat::send(first(&mut locked).conversation(), id, c, template, ctx)?;
        Ok((locked, vec![(stream, events)]))
    }

    /// A template's body filled with `data`; the template must exist.
    async fn filled_template(
        &self,
        shop: ShopId,
        template_id: Uuid,
        data: &BTreeMap<String, String>,
    ) -> Result<String, CommandError> {
        let template = self
            .read(&streams::template(shop, template_id), Kind::Template)
            .await?;
        let template = template.template();
        if !template.exists() {
            return Err(Rejection::UnknownTemplate { template_id }.into());
        }
        Ok(chat::fill(&template.body, data)?)
    }

    /// Submits the decided events with every stream's expected version,
    /// applies them to the cache, unlocks, and waits for the outcome.
    async fn commit(
        &self,
        shop: ShopId,
        meta: &CommandMeta,
        mut locked: Locked,
        appends: Appends,
    ) -> Result<Attempt, CommandError> {
        let appends: Appends = appends
            .into_iter()
            .filter(|(_, events)| !events.is_empty())
            .collect();
        if appends.is_empty() {
            let position = self.store.last_position().await?;
            return Ok(Attempt::Done(Executed {
                status: AppendStatus::Recorded,
                position,
                first_position: position + 1,
                events: Vec::new(),
            }));
        }
        let mut index = 0u32;
        let mut request = AppendRequest {
            recorded_at: meta.now,
            streams: Vec::with_capacity(appends.len()),
        };
        for (stream, events) in &appends {
            let (version, last_event_id) = locked
                .get(stream)
                .map_or((0, None), |slot| (slot.version, slot.last_event_id));
            let expected = match (version, last_event_id) {
                (0, _) => ExpectedVersion::NoStream,
                (version, Some(last_event_id)) if !self.options.sole_writer => {
                    ExpectedVersion::ExactAfter {
                        version,
                        last_event_id,
                    }
                }
                (version, _) => ExpectedVersion::Exact(version),
            };
            let events: Vec<NewEvent> = events
                .iter()
                .map(|e| {
                    index += 1;
                    NewEvent {
                        event_id: event_id(shop, meta.idempotency_key.as_deref(), index),
                        event_type: e.event_type().into(),
                        schema_version: SCHEMA_VERSION,
                        actor: meta.actor.clone(),
                        correlation_id: meta.correlation_id,
                        causation_id: meta.causation_id,
                        payload: e.encode(),
                    }
                })
                .collect();
            request.streams.push(StreamAppend {
                stream: stream.clone(),
                expected,
                events,
            });
        }
        let request_ids: Vec<Uuid> = request
            .streams
            .iter()
            .map(|s| s.events.last().expect("appends have events").event_id)
            .collect();
        let ticket = self.store.submit(request).await?;
        for ((stream, events), submitted) in appends.iter().zip(&request_ids) {
            if let Some(slot) = locked.get_mut(stream) {
                slot.apply(events, *submitted);
            }
        }
        drop(locked);
        let touched: Vec<StreamId> = appends.iter().map(|(s, _)| s.clone()).collect();
        match ticket.outcome().await {
            Ok(outcome) => {
                if outcome.status == AppendStatus::AlreadyRecorded {
                    // The cache applied events the store already had.
                    self.slots.invalidate(&touched).await;
                }
                let events = appends
                    .into_iter()
                    .flat_map(|(s, events)| events.into_iter().map(move |e| (s.clone(), e)))
                    .collect();
                Ok(Attempt::Done(Executed {
                    status: outcome.status,
                    position: outcome.last_position,
                    first_position: outcome.first_position,
                    events,
                }))
            }
            Err(e) => {
                self.slots.invalidate(&touched).await;
                if e.is_conflict() {
                    Ok(Attempt::Retry(e.to_string()))
                } else {
                    Err(e.into())
                }
            }
        }
    }

    /// The current state of a stock item (for tests, benches and tools).
    pub async fn stock_item(
        &self,
        shop: ShopId,
        sku: &Sku,
        warehouse: WarehouseId,
    ) -> Result<StockItem, CommandError> {
        Ok(self
            .read(&streams::stock(shop, sku, warehouse), Kind::Stock)
            .await?
            .stock()
            .clone())
    }

    /// The current state of an order.
    pub async fn order(
        &self,
        shop: ShopId,
        order_id: OrderId,
    ) -> Result<order::Order, CommandError> {
        Ok(self
            .read(&streams::order(shop, order_id), Kind::Order)
            .await?
            .order()
            .clone())
    }

    /// The current state of a customer.
    pub async fn customer(
        &self,
        shop: ShopId,
        customer_id: CustomerId,
    ) -> Result<Customer, CommandError> {
        Ok(self
            .read(&streams::customer(shop, customer_id), Kind::Customer)
            .await?
            .customer()
            .clone())
    }

    /// The current state of any stream, as the engine decides on it (for
    /// tests, tools, and the reads that need decision state).
    pub async fn load_state(
        &self,
        stream: &StreamId,
        kind: Kind,
    ) -> Result<Arc<State>, CommandError> {
        self.read(stream, kind).await
    }

    /// Streams in the cache.
    pub fn cached_streams(&self) -> usize {
        self.slots.len()
    }
}

fn first(locked: &mut Locked) -> &State {
    &locked.values().next().expect("one stream locked").state
}

/// Puts a withdrawal's events on its stream and its ledger transaction on
/// the wallet's.
fn split_wallet(withdrawal: StreamId, wallet: StreamId, events: Vec<DomainEvent>) -> Appends {
    let (ledger, own): (Vec<DomainEvent>, Vec<DomainEvent>) = events
        .into_iter()
        .partition(|e| matches!(e, DomainEvent::LedgerTransactionRecorded(_)));
    vec![(withdrawal, own), (wallet, ledger)]
}

/// Ids a decision needs besides event ids (ledger transactions): derived
/// from the idempotency key like event ids (in a range of their own), or
/// UUID v7 without one.
struct IdSource<'a> {
    shop: ShopId,
    key: Option<&'a str>,
    next: u32,
}

impl<'a> IdSource<'a> {
    fn new(shop: ShopId, meta: &'a CommandMeta) -> Self {
        IdSource {
            shop,
            key: meta.idempotency_key.as_deref(),
            next: 1 << 24,
        }
    }

    fn next(&mut self) -> Uuid {
        self.next += 1;
        event_id(self.shop, self.key, self.next)
    }
}

/// Groups stock events by their stream, keeping their order.
fn group_by_stock(shop: ShopId, events: Vec<((Sku, WarehouseId), DomainEvent)>) -> Appends {
    let mut grouped: Appends = Vec::new();
    for ((sku, w), e) in events {
        let stream = streams::stock(shop, &sku, w);
        match grouped.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, list)) => list.push(e),
            None => grouped.push((stream, vec![e])),
        }
    }
    grouped
}

/// The id of a command's `index`-th event: UUID v7 for a command without
/// an idempotency key; with one, a UUID v8 derived from (shop, key, index)
/// with BLAKE3, the same every time the command is sent.
pub fn event_id(shop: ShopId, idempotency_key: Option<&str>, index: u32) -> Uuid {
    let Some(key) = idempotency_key else {
        return Uuid::now_v7();
    };
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"kedai event id v1");
    hasher.update(shop.0.as_bytes());
    hasher.update(&(key.len() as u64).to_le_bytes());
    hasher.update(key.as_bytes());
    hasher.update(&index.to_le_bytes());
    let bytes: [u8; 16] = hasher.finalize().as_bytes()[..16]
        .try_into()
        .expect("16 bytes");
    Uuid::new_v8(bytes)
}
