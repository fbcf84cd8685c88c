//! The seller's balance: pending, available and withdrawing, totals earned
//! (COD net profit, cashback, fees), withdrawals, and the ledger list with
//! the running balance after each entry (as Komship's transaction list:
//! date, type, amount, balance after, order).
//!
//! Every figure is the fold of the ledger's postings: nothing is computed
//! from orders directly.
//!
//! The ledger's entries are not kept in memory: every ledger transaction
//! is in the shop's wallet stream, and the projection keeps for each only
//! a [`LedgerMark`] (where it is, its date, the balances after it), what
//! the list's cursor, date filter and running balances need. A page's
//! entries are made from the wallet stream's events by [`entry`] when the
//! page is asked for.

use std::collections::BTreeMap;

use kedai_engine::RecordedEvent;
use kedai_engine::Timestamp;
use kedai_engine::domain::DomainEvent;
use kedai_engine::domain::ids::OrderId;
use kedai_engine::domain::money::Money;
use kedai_engine::domain::wallet::{Account, EntryKind, WithdrawalStatus};
use kedai_engine::event::Position;
use serde::{Deserialize, Serialize};

use crate::At;
use crate::intern::Text;

/// One ledger transaction as the seller sees it: made from its event by
/// [`entry`] (or [`ledger`]) when asked for, not kept in memory.
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

/// A ledger entry as the projection keeps it: where its transaction is in
/// the wallet stream, its date (for the list's date filter) and the
/// balances after it (which would take the whole stream before it to
/// work out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerMark {
    /// Position of the `LedgerTransactionRecorded` event: the list's
    /// cursor.
    pub position: Position,
    /// Its version in the shop's wallet stream.
    pub version: u64,
    pub date: Timestamp,
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
    /// One mark per ledger entry, oldest first.
    pub ledger: Vec<LedgerMark>,
    pub withdrawals: BTreeMap<uuid::Uuid, WithdrawalView>,
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
        // Sums over the whole ledger saturate rather than stop the fold
        // (see `Money::saturating_add`): the engine checks each balance a
        // command changes, but not the totals earned over all orders.
        let add = |sum: &mut Money, x: Money| *sum = sum.saturating_add(x);
        add(&mut self.pending, pending);
        add(&mut self.available, available);
        add(&mut self.withdrawing, withdrawing);
        if let Some(cod) = t.cod {
            add(&mut self.cod_net_profit, cod.net_profit);
            add(&mut self.cashback, cod.cashback);
            add(&mut self.service_fees, cod.service_fee);
        }
        if t.kind == EntryKind::WithdrawalPaid {
            add(&mut self.withdrawn, t.change(Account::Bank));
        }
        self.ledger.push(LedgerMark {
            position: at.position,
            version: at.version,
            date: e.occurred_at,
            pending_after: self.pending,
            available_after: self.available,
            withdrawing_after: self.withdrawing,
        });
    }

    /// Marks of ledger entries, newest first, older than `before` (a
    /// position; the cursor), between two moments, at most `limit`: a
    /// page of the ledger, each made by [`entry`] from its event.
    pub fn ledger_page(
        &self,
        before: Option<Position>,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        limit: usize,
    ) -> Vec<&LedgerMark> {
        let end = match before {
            Some(p) => self.ledger.partition_point(|e| e.position < p),
            None => self.ledger.len(),
        };
        self.ledger[..end]
            .iter()
            .rev()
            .filter(|e| from.is_none_or(|f| e.date >= f) && to.is_none_or(|t| e.date < t))
            .take(limit)
            .collect()
    }

    /// Ledger entries recorded.
    pub fn ledger_len(&self) -> usize {
        self.ledger.len()
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

/// A ledger entry from its mark and its event (the wallet stream's event
/// at the mark's version, as the store reads it). An event that is not
/// the mark's (another position) or not a ledger transaction is an error:
/// the projection and the log disagree.
pub fn entry(mark: &LedgerMark, event: &RecordedEvent) -> Result<LedgerEntry, EntryError> {
    if event.position != mark.position || event.version != mark.version {
        return Err(EntryError::Elsewhere {
            position: mark.position,
            found: event.position,
        });
    }
    let decoded = DomainEvent::decode(&event.event_type, &event.payload).map_err(|source| {
        EntryError::Decode(crate::ApplyError {
            position: event.position,
            source,
        })
    })?;
    let Some(DomainEvent::LedgerTransactionRecorded(e)) = decoded else {
        return Err(EntryError::NotLedger {
            position: event.position,
            event_type: event.event_type.to_string(),
        });
    };
    Ok(made(mark, &e))
}

/// A ledger entry from its mark and its transaction.
fn made(
    mark: &LedgerMark,
    e: &kedai_engine::domain::events::LedgerTransactionRecorded,
) -> LedgerEntry {
    let t = &e.transaction;
    LedgerEntry {
        position: mark.position,
        transaction_id: e.transaction_id,
        date: e.occurred_at,
        kind: t.kind,
        order_id: t.order_id,
        withdrawal_id: t.withdrawal_id,
        note: t.note.as_str().into(),
        pending: t.change(Account::Pending),
        available: t.change(Account::Available),
        withdrawing: t.change(Account::Withdrawing),
        pending_after: mark.pending_after,
        available_after: mark.available_after,
        withdrawing_after: mark.withdrawing_after,
    }
}

/// Why a ledger entry could not be made from the log.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error(transparent)]
    Decode(#[from] crate::ApplyError),
    #[error(
        "the ledger entry at position {position} is not in the log where the projection says (found position {found})"
    )]
    Elsewhere { position: Position, found: Position },
    #[error("the event at position {position} is a {event_type}, not a ledger transaction")]
    NotLedger {
        position: Position,
        event_type: String,
    },
}

/// The whole ledger, oldest first, from the events of a shop's wallet
/// stream up to position `until`: the fold [`Balances`] makes, entry by
/// entry with its running balances (for tests and checks; the API reads
/// one page at a time through the marks and [`entry`]).
pub fn ledger(
    events: &[RecordedEvent],
    until: Position,
) -> Result<Vec<LedgerEntry>, crate::ApplyError> {
    let mut balances = Balances::default();
    let mut entries = Vec::new();
    for e in events.iter().filter(|e| e.position <= until) {
        let decoded =
            DomainEvent::decode(&e.event_type, &e.payload).map_err(|source| crate::ApplyError {
                position: e.position,
                source,
            })?;
        if let Some(DomainEvent::LedgerTransactionRecorded(t)) = &decoded {
            let at = At {
                position: e.position,
                version: e.version,
                recorded_at: e.recorded_at,
                actor: &e.actor,
            };
            balances.record(at, t);
            if let Some(mark) = balances.ledger.last() {
                entries.push(made(mark, t));
            }
        }
    }
    Ok(entries)
}
