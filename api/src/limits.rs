//! Every limit the API sets, named in one place (and documented in the
//! README): what a client may send, how much it gets back per page, and
//! how long anything may take.

use std::time::Duration;

/// Largest request body.
pub const BODY_BYTES_MAX: usize = 1 << 20;
/// Default and largest page of a list.
pub const PAGE_DEFAULT: usize = 50;
pub const PAGE_MAX: usize = 500;
/// Default and largest number of entries of an analytics ranking (best
/// sellers, locations).
pub const ANALYTICS_RANKING_DEFAULT: usize = 10;
pub const ANALYTICS_RANKING_MAX: usize = 100;
/// Most connections served at once; more wait to be accepted.
pub const CONNECTIONS_MAX: usize = 1_024;
/// Longest a request may take before it is answered 408.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a read waits for projections to reach its `min_position`.
pub const MIN_POSITION_WAIT_MAX: Duration = Duration::from_secs(5);
/// Longest a request with an unknown key waits for the projections to
/// catch up with the store (a key made a moment ago).
pub const KEY_CATCH_UP_WAIT: Duration = Duration::from_secs(2);
/// Most events one page of the event feed returns.
pub const EVENTS_PAGE_MAX: usize = 1_000;
/// Longest the shutdown waits for in-flight requests.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
