//! kedai's engine: the events, the domain's decisions, and the event store
//! with its backends.
//!
//! Layout:
//! - [`event`]: the envelope every recorded event carries, and the ids it
//!   is addressed by (shop, stream, position).
//! - [`store`]: the `EventStore` interface, its backends (`memory`, `log`)
//!   and the conformance suite every backend passes.
//! - [`domain`]: the business rules as pure decisions and events.
//! - [`command`]: the command engine: load, decide, append, retry.
//! - [`clock`]: where the edges get time (the system clock, or a manual
//!   one in tests).
//! - [`testkit`]: a small shop for tests of this crate and those above it.

pub mod clock;
pub mod command;
pub mod domain;
pub mod event;
pub mod store;
pub mod testkit;

pub use event::{
    Actor, ExpectedVersion, NewEvent, Position, RecordedEvent, Role, ShopId, StreamId, Timestamp,
};
pub use store::{
    AppendOutcome, AppendRequest, AppendStatus, AppendTicket, EventStore, StoreError, StreamAppend,
    Subscription,
};
