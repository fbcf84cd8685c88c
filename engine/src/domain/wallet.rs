//! The seller's balance as a double-entry ledger, withdrawals to the bank,
//! and expenses.
//!
//! Every change of balance is a [`LedgerTransaction`] whose postings sum to
//! zero over named accounts: the seller's buckets (`pending`: COD money of
//! delivered orders not yet settled; `available`: withdrawable;
//! `withdrawing`: requested, not yet paid out) and the outside parties
//! (`buyer`, `courier`, `bank`, `platform`). A bucket's balance is the sum
//! of its postings.
//!
//! Order events drive entries **in the same append** as the order change
//! (decided by [`order_entry`] when the command engine decides the
//! transition): a delivered COD order and its ledger transaction are
//! recorded together or not at all, so there is never a delivered order
//! without its money, no follower process to run or to lag, and a replay
//! sees exactly what was decided. The price is that a shop's money-moving
//! order transitions serialise on its wallet stream, which the engine's
//! pipelined appends make cheap.
//!
//! COD economics (Komship): `service_fee = cod_fee_rate x grand total`,
//! `cashback = courier cashback rate x shipping cost`,
//! `net_profit = grand total - shipping - service_fee + cashback`.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::Context;
use super::catalog::NOTE_LEN_MAX;
use super::events::*;
use super::ids::OrderId;
use super::money::{BasisPoints, Money};
use super::order::{Order, OrderStatus};
use super::rejection::{Check, FieldError, Rejection};

/// Accounts of the ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Account {
    /// The seller's COD money not yet settled by the courier.
    Pending,
    /// The seller's withdrawable money.
    Available,
    /// The seller's money on its way to the bank.
    Withdrawing,
    /// Buyers (who pay for orders).
    Buyer,
    /// Couriers (who collect COD, and charge and refund shipping).
    Courier,
    /// The seller's bank account (top-ups come from it, payouts go to it).
    Bank,
    /// The platform (COD fees in, cashback and withdrawal fees).
    Platform,
}

impl Account {
    pub const SELLER: [Account; 3] = [Account::Pending, Account::Available, Account::Withdrawing];
}

/// One line of a ledger transaction: money into (positive) or out of
/// (negative) an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posting {
    pub account: Account,
    pub amount: Money,
}

/// What a ledger transaction is (Komship's transaction types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    CodDelivered,
    CodSettled,
    ShippingCharged,
    ShippingRefunded,
    ReturnShippingCharged,
    TopUp,
    Compensation,
    ReturnClaim,
    WithdrawalRequested,
    WithdrawalPaid,
    WithdrawalReturned,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::CodDelivered => "cod_delivered",
            EntryKind::CodSettled => "cod_settled",
            EntryKind::ShippingCharged => "shipping_charged",
            EntryKind::ShippingRefunded => "shipping_refunded",
            EntryKind::ReturnShippingCharged => "return_shipping_charged",
            EntryKind::TopUp => "top_up",
            EntryKind::Compensation => "compensation",
            EntryKind::ReturnClaim => "return_claim",
            EntryKind::WithdrawalRequested => "withdrawal_requested",
            EntryKind::WithdrawalPaid => "withdrawal_paid",
            EntryKind::WithdrawalReturned => "withdrawal_returned",
        }
    }
}

/// COD figures of one delivered order, kept with its transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodFigures {
    pub grand_total: Money,
    pub shipping_cost: Money,
    pub service_fee: Money,
    pub service_fee_rate: BasisPoints,
    pub cashback: Money,
    pub cashback_rate: BasisPoints,
    pub net_profit: Money,
}

impl CodFigures {
    /// Komship's formulas.
    pub fn compute(
        grand_total: Money,
        shipping_cost: Money,
        service_fee_rate: BasisPoints,
        cashback_rate: BasisPoints,
    ) -> CodFigures {
        let service_fee = service_fee_rate.apply(grand_total);
        let cashback = cashback_rate.apply(shipping_cost);
        CodFigures {
            grand_total,
            shipping_cost,
            service_fee,
            service_fee_rate,
            cashback,
            cashback_rate,
            net_profit: grand_total - shipping_cost - service_fee + cashback,
        }
    }
}

/// A balanced set of postings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerTransaction {
    pub kind: EntryKind,
    pub postings: Vec<Posting>,
    pub order_id: Option<OrderId>,
    pub withdrawal_id: Option<uuid::Uuid>,
    pub cod: Option<CodFigures>,
    pub note: String,
}

impl LedgerTransaction {
    /// The sum of the postings: zero for every transaction kedai records.
    pub fn sum(&self) -> Money {
        self.postings.iter().map(|p| p.amount).sum()
    }

    /// The change of one account. Commands write one posting per account;
    /// a transaction read from a log written elsewhere could hold more,
    /// and their sum is held at `i64`'s ends rather than panic in a fold.
    pub fn change(&self, account: Account) -> Money {
        self.postings
            .iter()
            .filter(|p| p.account == account)
            .fold(Money::ZERO, |sum, p| sum.saturating_add(p.amount))
    }

    fn new(kind: EntryKind, postings: Vec<Posting>) -> LedgerTransaction {
        let t = LedgerTransaction {
            kind,
            postings,
            order_id: None,
            withdrawal_id: None,
            cod: None,
            note: String::new(),
        };
        assert_eq!(t.sum(), Money::ZERO, "unbalanced transaction {t:?}");
        t
    }
}

fn posting(account: Account, amount: Money) -> Posting {
    Posting { account, amount }
}

/// The seller's wallet as its stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wallet {
    /// Balance of every account (outside parties' are the mirror image).
    pub balances: BTreeMap<Account, Money>,
    /// COD net profit of delivered orders not yet settled.
    pub cod_unsettled: BTreeMap<OrderId, Money>,
    /// Orders whose shipping was charged (and not refunded).
    pub shipping_charged: BTreeMap<OrderId, Money>,
    /// Orders whose return shipping was charged.
    pub return_charged: BTreeSet<OrderId>,
    pub transactions: u64,
}

impl Wallet {
    pub fn evolve(&mut self, event: &DomainEvent) {
        let DomainEvent::LedgerTransactionRecorded(e) = event else {
            return;
        };
        let t = &e.transaction;
        for p in &t.postings {
            *self.balances.entry(p.account).or_default() = self.balance(p.account) + p.amount;
        }
        if let Some(order) = t.order_id {
            match t.kind {
                EntryKind::CodDelivered => {
                    self.cod_unsettled.insert(order, t.change(Account::Pending));
                }
                EntryKind::CodSettled => {
                    self.cod_unsettled.remove(&order);
                }
                EntryKind::ShippingCharged => {
                    self.shipping_charged
                        .insert(order, -t.change(Account::Available));
                }
                EntryKind::ShippingRefunded => {
                    self.shipping_charged.remove(&order);
                }
                EntryKind::ReturnShippingCharged => {
                    self.return_charged.insert(order);
                }
                _ => {}
            }
        }
        self.transactions += 1;
    }

    pub fn balance(&self, account: Account) -> Money {
        self.balances.get(&account).copied().unwrap_or_default()
    }
}

fn record(t: LedgerTransaction, ctx: &Context, transaction_id: uuid::Uuid) -> DomainEvent {
    LedgerTransactionRecorded {
        transaction_id,
        transaction: t,
        occurred_at: ctx.now,
    }
    .into()
}

/// The ledger transaction an order transition causes, if any, given the
/// order's state *after* the transition's events and the shop's settings.
/// `transaction_id` is the id the new transaction gets.
pub fn order_entry(
    wallet: &Wallet,
    order_id: OrderId,
    order_after: &Order,
    settings: &ShopSettings,
    ctx: &Context,
    transaction_id: uuid::Uuid,
) -> Option<DomainEvent> {
    let placed = order_after.placed.as_ref()?;
    let status = order_after.status?;
    let shipping = placed.shipping.cost;
    let mut t = match status {
        OrderStatus::Delivered if placed.cod => {
            let rate = settings
                .courier_cashback
                .get(&placed.shipping.courier)
                .copied()
                .unwrap_or_default();
            let cod =
                CodFigures::compute(placed.totals.total, shipping, settings.cod_fee_rate, rate);
            let mut t = LedgerTransaction::new(
                EntryKind::CodDelivered,
                vec![
                    posting(Account::Buyer, -cod.grand_total),
                    posting(Account::Courier, cod.shipping_cost),
                    posting(Account::Platform, cod.service_fee - cod.cashback),
                    posting(Account::Pending, cod.net_profit),
                ],
            );
            t.cod = Some(cod);
            t
        }
        // Shipping of a non-COD order is paid from the balance once the
        // pickup is booked (or at shipping, if no pickup was booked).
        OrderStatus::ReadyForPickup | OrderStatus::Shipped
            if !placed.cod
                && shipping.is_positive()
                && !wallet.shipping_charged.contains_key(&order_id) =>
        {
            LedgerTransaction::new(
                EntryKind::ShippingCharged,
                vec![
                    posting(Account::Available, -shipping),
                    posting(Account::Courier, shipping),
                ],
            )
        }
        OrderStatus::Cancelled => {
            let charged = *wallet.shipping_charged.get(&order_id)?;
            LedgerTransaction::new(
                EntryKind::ShippingRefunded,
                vec![
                    posting(Account::Courier, -charged),
                    posting(Account::Available, charged),
                ],
            )
        }
        OrderStatus::Returned
            if shipping.is_positive() && !wallet.return_charged.contains(&order_id) =>
        {
            LedgerTransaction::new(
                EntryKind::ReturnShippingCharged,
                vec![
                    posting(Account::Available, -shipping),
                    posting(Account::Courier, shipping),
                ],
            )
        }
        _ => return None,
    };
    t.order_id = Some(order_id);
    Some(record(t, ctx, transaction_id))
}

/// Money the seller moves in or the courier pays out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WalletEntry {
    /// Money from the seller's bank into the balance.
    TopUp {
        amount: Money,
        #[serde(default)]
        note: String,
    },
    /// The courier pays for a lost or damaged parcel.
    Compensation {
        order_id: OrderId,
        amount: Money,
        #[serde(default)]
        note: String,
    },
    /// The courier pays back for a return claim.
    ReturnClaim {
        order_id: OrderId,
        amount: Money,
        #[serde(default)]
        note: String,
    },
    /// The courier remitted the COD money of these delivered orders.
    SettleCod { order_ids: Vec<OrderId> },
}

impl WalletEntry {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        match self {
            WalletEntry::TopUp { amount, note }
            | WalletEntry::Compensation { amount, note, .. }
            | WalletEntry::ReturnClaim { amount, note, .. } => {
                c.that(
                    amount.is_positive() && amount.0 <= super::order::AMOUNT_MAX,
                    "amount",
                    amount_rule(),
                )
                .text(note, "note", false, NOTE_LEN_MAX);
            }
            WalletEntry::SettleCod { order_ids } => {
                c.that(
                    !order_ids.is_empty(),
                    "order_ids",
                    "name at least one order",
                )
                .that(order_ids.len() <= 1_000, "order_ids", "at most 1000 orders");
                let distinct: BTreeSet<_> = order_ids.iter().collect();
                c.that(
                    distinct.len() == order_ids.len(),
                    "order_ids",
                    "an order appears twice",
                );
            }
        }
        c.finish()
    }
}

/// Decides a wallet entry. For compensations and claims `order` is the
/// order concerned (it must exist, and be lost or returned).
pub fn wallet_entry(
    wallet: &Wallet,
    entry: &WalletEntry,
    order: Option<&Order>,
    ctx: &Context,
    ids: &mut dyn FnMut() -> uuid::Uuid,
) -> Result<Vec<DomainEvent>, Rejection> {
    let single = |t: LedgerTransaction, id| Ok(vec![record(t, ctx, id)]);
    match entry {
        WalletEntry::TopUp { amount, note } => {
            let mut t = LedgerTransaction::new(
                EntryKind::TopUp,
                vec![
                    posting(Account::Bank, -*amount),
                    posting(Account::Available, *amount),
                ],
            );
            t.note = note.trim().to_owned();
            single(t, ids())
        }
        WalletEntry::Compensation {
            order_id,
            amount,
            note,
        }
        | WalletEntry::ReturnClaim {
            order_id,
            amount,
            note,
        } => {
            let (kind, allowed): (EntryKind, &[OrderStatus]) = match entry {
                WalletEntry::Compensation { .. } => (
                    EntryKind::Compensation,
                    &[
                        OrderStatus::Lost,
                        OrderStatus::Returning,
                        OrderStatus::Returned,
                        OrderStatus::Delivered,
                    ],
                ),
                _ => (
                    EntryKind::ReturnClaim,
                    &[OrderStatus::Returning, OrderStatus::Returned],
                ),
            };
            let status = order
                .and_then(|o| o.status)
                .ok_or(Rejection::UnknownOrder {
                    order_id: *order_id,
                })?;
            if !allowed.contains(&status) {
                let action = if kind == EntryKind::Compensation {
                    "record a compensation for"
                } else {
                    "record a return claim for"
                };
                return Err(Rejection::IllegalTransition {
                    order_id: *order_id,
                    action,
                    status,
                });
            }
            let mut t = LedgerTransaction::new(
                kind,
                vec![
                    posting(Account::Courier, -*amount),
                    posting(Account::Available, *amount),
                ],
            );
            t.order_id = Some(*order_id);
            t.note = note.trim().to_owned();
            single(t, ids())
        }
        WalletEntry::SettleCod { order_ids } => {
            let mut events = Vec::with_capacity(order_ids.len());
            for order_id in order_ids {
                let amount =
                    *wallet
                        .cod_unsettled
                        .get(order_id)
                        .ok_or(Rejection::NothingToSettle {
                            order_id: *order_id,
                        })?;
                let mut t = LedgerTransaction::new(
                    EntryKind::CodSettled,
                    vec![
                        posting(Account::Pending, -amount),
                        posting(Account::Available, amount),
                    ],
                );
                t.order_id = Some(*order_id);
                events.push(record(t, ctx, ids()));
            }
            Ok(events)
        }
    }
}

// ----------------------------------------------------------- withdrawals

/// Where a withdrawal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStatus {
    Requested,
    OnReview,
    Completed,
    Rejected,
    Canceled,
}

impl WithdrawalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WithdrawalStatus::Requested => "requested",
            WithdrawalStatus::OnReview => "on_review",
            WithdrawalStatus::Completed => "completed",
            WithdrawalStatus::Rejected => "rejected",
            WithdrawalStatus::Canceled => "canceled",
        }
    }
}

impl std::fmt::Display for WithdrawalStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A withdrawal as its stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Withdrawal {
    pub requested: Option<WithdrawalRequested>,
    pub status: Option<WithdrawalStatus>,
}

impl Withdrawal {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::WithdrawalRequested(e) => {
                self.requested = Some((**e).clone());
                self.status = Some(WithdrawalStatus::Requested);
            }
            DomainEvent::WithdrawalReviewed(_) => self.status = Some(WithdrawalStatus::OnReview),
            DomainEvent::WithdrawalCompleted(_) => self.status = Some(WithdrawalStatus::Completed),
            DomainEvent::WithdrawalRejected(_) => self.status = Some(WithdrawalStatus::Rejected),
            DomainEvent::WithdrawalCanceled(_) => self.status = Some(WithdrawalStatus::Canceled),
            _ => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestWithdrawal {
    pub withdrawal_id: uuid::Uuid,
    pub amount: Money,
    pub bank_name: String,
    pub bank_account_no: String,
    pub bank_account_name: String,
    #[serde(default)]
    pub note: String,
}

impl RequestWithdrawal {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        c.that(
            self.amount.is_positive() && self.amount.0 <= super::order::AMOUNT_MAX,
            "amount",
            amount_rule(),
        )
        .text(&self.bank_name, "bank_name", true, 100)
        .text(&self.bank_account_name, "bank_account_name", true, 100)
        .that(
            (5..=34).contains(&self.bank_account_no.len())
                && self
                    .bank_account_no
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric()),
            "bank_account_no",
            "must be 5 to 34 letters or digits",
        )
        .text(&self.note, "note", false, NOTE_LEN_MAX);
        c.finish()
    }
}

/// Decides a withdrawal request: at least the shop's minimum, and the
/// available balance must cover amount and fee, which move to withdrawing.
pub fn request_withdrawal(
    withdrawal: &Withdrawal,
    wallet: &Wallet,
    settings: &ShopSettings,
    cmd: &RequestWithdrawal,
    ctx: &Context,
    transaction_id: uuid::Uuid,
) -> Result<Vec<DomainEvent>, Rejection> {
    if withdrawal.requested.is_some() {
        return Err(Rejection::WithdrawalExists {
            withdrawal_id: cmd.withdrawal_id,
        });
    }
    if cmd.amount < settings.withdrawal_min {
        return Err(Rejection::WithdrawalBelowMinimum {
            minimum: settings.withdrawal_min,
        });
    }
    let needed = cmd.amount + settings.withdrawal_fee;
    let available = wallet.balance(Account::Available);
    if available < needed {
        return Err(Rejection::InsufficientBalance { available, needed });
    }
    let requested = WithdrawalRequested {
        withdrawal_id: cmd.withdrawal_id,
        amount: cmd.amount,
        fee: settings.withdrawal_fee,
        bank_name: cmd.bank_name.trim().to_owned(),
        bank_account_no: cmd.bank_account_no.clone(),
        bank_account_name: cmd.bank_account_name.trim().to_owned(),
        note: cmd.note.trim().to_owned(),
        available_before: available,
    };
    let mut t = LedgerTransaction::new(
        EntryKind::WithdrawalRequested,
        vec![
            posting(Account::Available, -needed),
            posting(Account::Withdrawing, needed),
        ],
    );
    t.withdrawal_id = Some(cmd.withdrawal_id);
    Ok(vec![requested.into(), record(t, ctx, transaction_id)])
}

/// What can happen to a withdrawal after it is requested.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum WithdrawalAction {
    Review {
        #[serde(default)]
        note: String,
    },
    Complete {
        transfer_reference: String,
    },
    Reject {
        reason: String,
    },
    Cancel {
        #[serde(default)]
        reason: String,
    },
}

impl WithdrawalAction {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        match self {
            WithdrawalAction::Review { note } => {
                c.text(note, "note", false, NOTE_LEN_MAX);
            }
            WithdrawalAction::Complete { transfer_reference } => {
                c.text(transfer_reference, "transfer_reference", true, 100);
            }
            WithdrawalAction::Reject { reason } => {
                c.text(reason, "reason", true, NOTE_LEN_MAX);
            }
            WithdrawalAction::Cancel { reason } => {
                c.text(reason, "reason", false, NOTE_LEN_MAX);
            }
        }
        c.finish()
    }

    fn name(&self) -> &'static str {
        match self {
            WithdrawalAction::Review { .. } => "review",
            WithdrawalAction::Complete { .. } => "complete",
            WithdrawalAction::Reject { .. } => "reject",
            WithdrawalAction::Cancel { .. } => "cancel",
        }
    }
}

/// Decides a step of a withdrawal. Completing pays the amount out to the
/// bank and the fee to the platform; rejecting or cancelling returns both
/// to available.
pub fn act_on_withdrawal(
    withdrawal: &Withdrawal,
    withdrawal_id: uuid::Uuid,
    action: &WithdrawalAction,
    ctx: &Context,
    transaction_id: uuid::Uuid,
) -> Result<Vec<DomainEvent>, Rejection> {
    use WithdrawalStatus::*;
    let (Some(requested), Some(status)) = (&withdrawal.requested, withdrawal.status) else {
        return Err(Rejection::UnknownWithdrawal { withdrawal_id });
    };
    let allowed: &[WithdrawalStatus] = match action {
        WithdrawalAction::Review { .. } => &[Requested],
        WithdrawalAction::Complete { .. } | WithdrawalAction::Reject { .. } => {
            &[Requested, OnReview]
        }
        WithdrawalAction::Cancel { .. } => &[Requested],
    };
    if !allowed.contains(&status) {
        return Err(Rejection::IllegalWithdrawalTransition {
            withdrawal_id,
            action: action.name(),
            status,
        });
    }
    let held = requested.amount + requested.fee;
    let back_to_available = || {
        let mut t = LedgerTransaction::new(
            EntryKind::WithdrawalReturned,
            vec![
                posting(Account::Withdrawing, -held),
                posting(Account::Available, held),
            ],
        );
        t.withdrawal_id = Some(withdrawal_id);
        record(t, ctx, transaction_id)
    };
    Ok(match action {
        WithdrawalAction::Review { note } => vec![
            WithdrawalReviewed {
                withdrawal_id,
                note: note.trim().to_owned(),
            }
            .into(),
        ],
        WithdrawalAction::Complete { transfer_reference } => {
            let mut t = LedgerTransaction::new(
                EntryKind::WithdrawalPaid,
                vec![
                    posting(Account::Withdrawing, -held),
                    posting(Account::Bank, requested.amount),
                    posting(Account::Platform, requested.fee),
                ],
            );
            t.withdrawal_id = Some(withdrawal_id);
            t.note = transfer_reference.trim().to_owned();
            vec![
                WithdrawalCompleted {
                    withdrawal_id,
                    transfer_reference: transfer_reference.trim().to_owned(),
                }
                .into(),
                record(t, ctx, transaction_id),
            ]
        }
        WithdrawalAction::Reject { reason } => vec![
            WithdrawalRejected {
                withdrawal_id,
                reason: reason.trim().to_owned(),
            }
            .into(),
            back_to_available(),
        ],
        WithdrawalAction::Cancel { reason } => vec![
            WithdrawalCanceled {
                withdrawal_id,
                reason: reason.trim().to_owned(),
            }
            .into(),
            back_to_available(),
        ],
    })
}

// -------------------------------------------------------------- expenses

/// An expense as its stream knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expense {
    pub recorded: Option<ExpenseRecorded>,
    pub voided: bool,
}

impl Expense {
    pub fn evolve(&mut self, event: &DomainEvent) {
        match event {
            DomainEvent::ExpenseRecorded(e) => self.recorded = Some(e.clone()),
            DomainEvent::ExpenseVoided(_) => self.voided = true,
            _ => {}
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordExpense {
    pub expense_id: uuid::Uuid,
    pub title: String,
    /// Price of one unit.
    pub amount: Money,
    pub quantity: i64,
    /// The day of the expense, `YYYY-MM-DD` in the shop's time zone.
    pub date: chrono::NaiveDate,
    #[serde(default)]
    pub note: String,
}

/// What an amount of money given to a command must be.
fn amount_rule() -> String {
    format!(
        "must be more than 0 and at most {}",
        super::order::AMOUNT_MAX
    )
}

impl RecordExpense {
    /// `amount × quantity`, if it is at most the largest amount a command
    /// takes: a day's expenses are summed, and a few totals near `i64::MAX`
    /// would not fit.
    pub fn total(&self) -> Option<Money> {
        self.amount
            .checked_mul(self.quantity)
            .filter(|t| t.0 <= super::order::AMOUNT_MAX)
    }

    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut c = Check::new();
        let quantity_ok = (1..=1_000_000).contains(&self.quantity);
        c.text(&self.title, "title", true, super::catalog::NAME_LEN_MAX)
            .that(
                self.amount.is_positive() && self.amount.0 <= super::order::AMOUNT_MAX,
                "amount",
                amount_rule(),
            )
            .that(quantity_ok, "quantity", "must be 1 to 1000000")
            .that(
                !quantity_ok || self.total().is_some(),
                "quantity",
                format!(
                    "amount x quantity must be at most {}",
                    super::order::AMOUNT_MAX
                ),
            )
            .text(&self.note, "note", false, NOTE_LEN_MAX);
        c.finish()
    }
}

pub fn record_expense(
    expense: &Expense,
    cmd: &RecordExpense,
) -> Result<Vec<DomainEvent>, Rejection> {
    if expense.recorded.is_some() {
        return Err(Rejection::ExpenseExists {
            expense_id: cmd.expense_id,
        });
    }
    // Validation has checked the total; a command that skipped it is
    // still refused.
    let total = cmd.total().ok_or(Rejection::TotalBelowZero {
        total: Money(i64::MAX),
    })?;
    Ok(vec![
        ExpenseRecorded {
            expense_id: cmd.expense_id,
            title: cmd.title.trim().to_owned(),
            amount: cmd.amount,
            quantity: cmd.quantity,
            total,
            date: cmd.date,
            note: cmd.note.trim().to_owned(),
        }
        .into(),
    ])
}

pub fn void_expense(
    expense: &Expense,
    expense_id: uuid::Uuid,
    reason: &str,
) -> Result<Vec<DomainEvent>, Rejection> {
    if expense.recorded.is_none() {
        return Err(Rejection::UnknownExpense { expense_id });
    }
    if expense.voided {
        return Ok(Vec::new());
    }
    Ok(vec![
        ExpenseVoided {
            expense_id,
            reason: reason.trim().to_owned(),
        }
        .into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn komship_cod_examples() {
        // Subtotal 100,000 + shipping 14,000; JNE cashback 25%.
        let a = CodFigures::compute(
            Money(114_000),
            Money(14_000),
            BasisPoints(280),
            BasisPoints(2_500),
        );
        assert_eq!(
            (a.service_fee, a.cashback, a.net_profit),
            (Money(3_192), Money(3_500), Money(100_308))
        );
        // SiCepat 30%: grand total 138,000, carrier shipping 38,000.
        let b = CodFigures::compute(
            Money(138_000),
            Money(38_000),
            BasisPoints(280),
            BasisPoints(3_000),
        );
        assert_eq!(
            (b.service_fee, b.cashback, b.net_profit),
            (Money(3_864), Money(11_400), Money(107_536))
        );
    }
}
