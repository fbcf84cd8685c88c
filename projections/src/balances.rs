//! The seller's balance: pending, available and withdrawing, totals earned
//! (COD net profit, cashback, fees), withdrawals, and the ledger list with
//! the running balance after each entry (as Komship's transaction list:
//! date, type, amount, balance after, order).
//!
//! Every figure is the fold of the ledger's postings: nothing is computed
//! from orders directly.

use std::collections::BTreeMap;

use kedai_engine::Timestamp;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::ids::OrderId;
use kedai_engine::domain::money::Money;
use kedai_engine::domain::wallet::{Account, EntryKind, WithdrawalStatus};
use kedai_engine::event::Position;
use serde::{Deserialize, Serialize};

use crate::At;
use crate::intern::{Interner, Text};

/// One ledger transaction as the seller sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub position: Position,
    pub transaction_id: uuid::Uuid,
    pub date: Timestamp,
    pub kind: EntryKind,
    pub order_id: Option<OrderId>,
    pub withdrawal_id: Option<uuid::Uuid>,
    pub note: Text,
    /// Change of each of the seller's buckets.
    pub pending: Money,
    pub available: Money,
    pub withdrawing: Money,
    /// Buckets after the entry.
    pub pending_after: Money,
    pub available_after: Money,
    pub withdrawing_after: Money,
}

/// A withdrawal as listed (Komship's withdrawal data).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawalView {
    pub withdrawal_id: uuid::Uuid,
    pub amount: Money,
    pub fee: Money,
    pub status: WithdrawalStatus,
    pub bank_name: String,
    pub bank_account_no: String,
    pub bank_account_name: String,
    pub note: String,
    pub beginning_balance: Money,
    pub requested_at: Timestamp,
    pub updated_at: Timestamp,
    pub transfer_reference: Option<String>,
    pub reason: Option<String>,
}

/// Everything about the seller's money.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    pub pending: Money,
    pub available: Money,
    pub withdrawing: Money,
    /// Sum of COD net profit of delivered orders.
    pub cod_net_profit: Money,
    /// Sum of courier cashback earned.
    pub cashback: Money,
    /// Sum of COD service fees paid.
    pub service_fees: Money,
    /// Sum paid out to the bank.
    pub withdrawn: Money,
    pub entries: Vec<LedgerEntry>,
    pub withdrawals: BTreeMap<uuid::Uuid, WithdrawalView>,
    /// Shares the entries' notes (a cache, not state).
    #[serde(skip)]
    interner: Interner,
}

impl Balances {
    pub fn apply(&mut self, at: At<'_>, event: &DomainEvent) {
        match event {
            DomainEvent::LedgerTransactionRecorded(e) => self.record(at, e),
            DomainEvent::WithdrawalRequested(e) => {
                self.withdrawals.insert(
                    e.withdrawal_id,
                    WithdrawalView {
                        withdrawal_id: e.withdrawal_id,
                        amount: e.amount,
                        fee: e.fee,
                        status: WithdrawalStatus::Requested,
                        bank_name: e.bank_name.clone(),
                        bank_account_no: e.bank_account_no.clone(),
                        bank_account_name: e.bank_account_name.clone(),
                        note: e.note.clone(),
                        beginning_balance: e.available_before,
                        requested_at: at.recorded_at,
                        updated_at: at.recorded_at,
                        transfer_reference: None,
                        reason: None,
                    },
                );
            }
            DomainEvent::WithdrawalReviewed(e) => {
                self.step(e.withdrawal_id, WithdrawalStatus::OnReview, at, None, None)
            }
            DomainEvent::WithdrawalCompleted(e) => self.step(
                e.withdrawal_id,
                WithdrawalStatus::Completed,
                at,
                Some(e.transfer_reference.clone()),
                None,
            ),
            DomainEvent::WithdrawalRejected(e) => self.step(
                e.withdrawal_id,
                WithdrawalStatus::Rejected,
                at,
                None,
                Some(e.reason.clone()),
            ),
            DomainEvent::WithdrawalCanceled(e) => self.step(
                e.withdrawal_id,
                WithdrawalStatus::Canceled,
                at,
                None,
                Some(e.reason.clone()),
            ),
            _ => {}
        }
    }

    /// Shares the texts of a loaded view again.
    pub fn share_loaded(&mut self) {
        for e in &mut self.entries {
            self.interner.share(&mut e.note);
        }
    }

    fn step(
        &mut self,
        id: uuid::Uuid,
        status: WithdrawalStatus,
        at: At<'_>,
        reference: Option<String>,
        reason: Option<String>,
    ) {
        if let Some(w) = self.withdrawals.get_mut(&id) {
            w.status = status;
            w.updated_at = at.recorded_at;
            w.transfer_reference = reference.or(w.transfer_reference.take());
            w.reason = reason.or(w.reason.take());
        }
    }

    fn record(&mut self, at: At<'_>, e: &kedai_engine::domain::events::LedgerTransactionRecorded) {
        let t = &e.transaction;
        let (pending, available, withdrawing) = (
            t.change(Account::Pending),
            t.change(Account::Available),
            t.change(Account::Withdrawing),
        );
        self.pending = self.pending + pending;
        self.available = self.available + available;
        self.withdrawing = self.withdrawing + withdrawing;
        if let Some(cod) = t.cod {
            self.cod_net_profit = self.cod_net_profit + cod.net_profit;
            self.cashback = self.cashback + cod.cashback;
            self.service_fees = self.service_fees + cod.service_fee;
        }
        if t.kind == EntryKind::WithdrawalPaid {
            self.withdrawn = self.withdrawn + t.change(Account::Bank);
        }
        self.entries.push(LedgerEntry {
            position: at.position,
            transaction_id: e.transaction_id,
            date: e.occurred_at,
            kind: t.kind,
            order_id: t.order_id,
            withdrawal_id: t.withdrawal_id,
            note: self.interner.str(&t.note),
            pending,
            available,
            withdrawing,
            pending_after: self.pending,
            available_after: self.available,
            withdrawing_after: self.withdrawing,
        });
    }

    /// Ledger entries, newest first, older than `before` (a position; the
    /// cursor), between two moments, at most `limit`.
    pub fn entries_page(
        &self,
        before: Option<Position>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Vec<&LedgerEntry> {
        let end = match before {
            Some(p) => self.entries.partition_point(|e| e.position < p),
            None => self.entries.len(),
        };
        self.entries[..end]
            .iter()
            .rev()
            .filter(|e| from.is_none_or(|f| e.date >= f) && to.is_none_or(|t| e.date < t))
            .take(limit)
            .collect()
    }

    /// Withdrawals, newest first, optionally of one status.
    pub fn withdrawals_list(&self, status: Option<WithdrawalStatus>) -> Vec<&WithdrawalView> {
        let mut list: Vec<&WithdrawalView> = self
            .withdrawals
            .values()
            .filter(|w| status.is_none_or(|s| w.status == s))
            .collect();
        list.sort_by(|a, b| {
            b.requested_at
                .cmp(&a.requested_at)
                .then(b.withdrawal_id.cmp(&a.withdrawal_id))
        });
        list
    }
}
