//! kedai-replay: the auditor's read-only tool. It opens the ledger (an
//! embedded log directory or a PostgreSQL database) without taking the
//! writer's lock and without writing, and re-derives everything from the
//! events alone, trusting nothing the server keeps beside them. The one
//! writing subcommand, `copy`, writes only to a new destination.
//!
//! Layout:
//! - [`source`]: where the ledger lives (`--data DIR`, `--database-url`)
//!   and opening it read-only.
//! - [`verify`]: checksums and the hash chain, and finding a kept hash.
//! - [`payload`]: events as JSON (envelope and decoded payload).
//! - [`history`]: every event of one stream (an order, a stock item...).
//! - [`pages`]: reading the log in large pages ahead of the consumer.
//! - [`rebuild`]: folding every projection up to a position or a moment.
//! - [`report`]: the deterministic JSON report of a rebuild.
//! - [`diff`]: comparing two reports, or a report and a server snapshot.
//! - [`export`]: events as JSON Lines or CSV.
//! - [`copy`]: the whole ledger into another backend, byte for byte, and
//!   the copy verified.
//! - [`progress`]: progress bars on a terminal, and rates.
//! - [`error`]: what can go wrong.

pub mod copy;
pub mod diff;
pub mod error;
pub mod export;
pub mod history;
pub mod pages;
pub mod payload;
pub mod progress;
pub mod rebuild;
pub mod report;
pub mod report_json;
pub mod source;
pub mod verify;

pub use error::ReplayError;

/// The number of threads "every core" means here.
pub fn every_core() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
