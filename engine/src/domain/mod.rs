//! The business: pure decisions and their events. No I/O, no clock, no
//! randomness: time and actor come in a [`Context`], ids in the commands, so
//! the same state and command always give the same events.
//!
//! Layout:
//! - [`money`]: money, basis points, currencies; the rounding rule.
//! - [`ids`]: entity ids, SKUs, and the stream each aggregate lives in.
//! - [`events`]: every domain event and its encoding.
//! - [`fields`]: the commonest events' payloads read field by field.
//! - [`rejection`]: typed rejections and field errors.
//! - [`catalog`]: shop, warehouses, products and SKUs, customers.
//! - [`stock`]: stock per SKU and warehouse, and its moves.
//! - [`order`]: placing orders (prices, totals, allocation), payments,
//!   the lifecycle.
//! - [`wallet`]: the seller's balance as a double-entry ledger,
//!   withdrawals, expenses.
//! - [`checkout`]: storefront checkouts.
//! - [`chat`]: conversations, labels, assignment, statuses, templates,
//!   the outbox of templated WhatsApp messages.
//! - [`phone`]: WhatsApp numbers of Indonesia and Malaysia, normalised.
//! - [`access`]: the shop's API keys (hashes only).
//! - [`webhook`]: webhook subscriptions, their triggers, delivery ids.
//!
//! Each aggregate is a state with `evolve(&mut self, &DomainEvent)` and
//! decision functions `(state, command, inputs, context) -> events or a
//! Rejection`. The command engine (`crate::command`) loads states, calls the
//! decisions and appends their events.

pub mod access;
pub mod catalog;
pub mod chat;
pub mod checkout;
pub mod events;
pub mod fields;
pub mod ids;
pub mod money;
pub mod order;
pub mod phone;
pub mod rejection;
pub mod stock;
pub mod wallet;
pub mod webhook;

use crate::event::{Actor, Timestamp};

pub use events::DomainEvent;
pub use rejection::{FieldError, Rejection};

/// What a decision may know besides state and command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Context {
    /// The moment the command is decided.
    pub now: Timestamp,
    /// Who asked.
    pub actor: Actor,
}
