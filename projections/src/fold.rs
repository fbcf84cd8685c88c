//! A rebuild on several threads: shops share nothing, so each thread folds
//! a share of them from the same pages of records, and the shares are put
//! together at the end. The result is the same, byte for byte, as folding
//! the log on one thread with [`Projections::apply`].
//!
//! Every thread is given every page (one buffer, shared). It reads the
//! shop of each record from the record's first bytes
//! ([`format::body_shop`]) and decodes only the records of its own shops.
//! Shops are dealt to the threads in the order they first appear in the
//! log (the first shop to thread 0, the next to thread 1, and so on), which
//! every thread works out alike without talking to the others.
//!
//! Folding "as of a moment": `recorded_at` never decreases along the log,
//! so each thread stops at the first of its records recorded after the
//! moment; the earliest of those stops is where the whole fold stops, and
//! no thread applied anything past it.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use kedai_engine::store::import::RecordPage;
use kedai_engine::store::log::format;
use kedai_engine::{Actor, Position, Role, ShopId, Timestamp};

use crate::{ApplyError, EventRef, Projections};

/// Pages queued for each thread before the feeder waits.
const PAGES_QUEUED: usize = 2;

/// Why a fold stopped.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A record whose checksum holds but whose envelope does not decode.
    #[error("record at position {position}: {reason}")]
    Record { position: Position, reason: String },
}

impl FoldError {
    fn position(&self) -> Position {
        match self {
            FoldError::Apply(e) => e.position,
            FoldError::Record { position, .. } => *position,
        }
    }
}

/// What a fold made.
#[derive(Debug)]
pub struct Folded {
    /// Every projection; its position is the last position folded.
    pub projections: Projections,
    /// When the last folded event was recorded (`None` if none was).
    pub last_recorded_at: Option<Timestamp>,
}

/// A fold in progress: give it the log's pages in order with
/// [`push`](ParallelFold::push), then [`finish`](ParallelFold::finish).
#[derive(Debug)]
pub struct ParallelFold {
    senders: Vec<mpsc::SyncSender<Arc<RecordPage>>>,
    workers: Vec<JoinHandle<Share>>,
    /// The last position pushed.
    pushed: Position,
    /// Pages pushed, oldest first, until every thread is done with them.
    in_flight: VecDeque<Arc<RecordPage>>,
}

impl ParallelFold {
    /// Starts `threads` threads (at least one) that fold the pages pushed,
    /// stopping before the first event recorded after `until`, if given.
    pub fn start(threads: usize, until: Option<Timestamp>) -> ParallelFold {
        let threads = threads.max(1);
        let mut senders = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads);
        for index in 0..threads {
            let (tx, rx) = mpsc::sync_channel::<Arc<RecordPage>>(PAGES_QUEUED);
            let worker = std::thread::Builder::new()
                .name(format!("kedai-fold-{index}"))
                .spawn(move || {
                    let mut share = Share::new(index, threads, until);
                    for page in rx {
                        if !share.fold(&page) {
                            break;
                        }
                    }
                    share
                })
                .expect("a fold thread starts");
            senders.push(tx);
            workers.push(worker);
        }
        ParallelFold {
            senders,
            workers,
            pushed: 0,
            in_flight: VecDeque::new(),
        }
    }

    /// Folds the next page (its first position must follow the last one
    /// pushed). Waits while the threads are behind.
    pub fn push(&mut self, page: RecordPage) {
        let Some(last) = page.last_position() else {
            return;
        };
        assert_eq!(
            page.bodies().next().map(|(p, _)| p),
            Some(self.pushed + 1),
            "pages must follow each other without gaps"
        );
        self.pushed = last;
        let page = Arc::new(page);
        for tx in &self.senders {
            // A thread that stopped (an error, or past the moment) no
            // longer needs pages.
            let _ = tx.send(Arc::clone(&page));
        }
        self.in_flight.push_back(page);
    }

    /// A page every thread is done with, emptied, for the next read to
    /// fill (see `Verbatim::read_page`); a new one when none is.
    pub fn spare(&mut self) -> RecordPage {
        if let Some(oldest) = self.in_flight.pop_front() {
            match Arc::try_unwrap(oldest) {
                Ok(page) => return page,
                Err(shared) => self.in_flight.push_front(shared),
            }
        }
        RecordPage::default()
    }

    /// Whether every thread has stopped before the end of what was pushed
    /// (past the moment, or on an error): pushing more changes nothing.
    pub fn all_stopped(&self) -> bool {
        self.workers.iter().all(JoinHandle::is_finished)
    }

    /// Waits for the threads and puts their shares together. The error,
    /// if any, is the one earliest in the log.
    pub fn finish(self) -> Result<Folded, FoldError> {
        drop(self.senders);
        let shares: Vec<Share> = self
            .workers
            .into_iter()
            .map(|w| w.join().expect("a fold thread does not panic"))
            .collect();
        let mut errors: Vec<FoldError> = Vec::new();
        let mut position = self.pushed;
        let mut last: Option<(Position, Timestamp)> = None;
        let mut projections = Projections::new();
        for share in shares {
            if let Some(e) = share.error {
                errors.push(e);
                continue;
            }
            if let Some(stop) = share.stopped_at {
                position = position.min(stop - 1);
            }
            if share.last.is_some_and(|l| last.is_none_or(|m| l.0 > m.0)) {
                last = share.last;
            }
            let p = share.projections;
            projections.skipped += p.skipped;
            projections.shops.extend(p.shops);
            projections.keys.extend(p.keys);
        }
        if let Some(e) = errors.into_iter().min_by_key(FoldError::position) {
            return Err(e);
        }
        projections.position = position;
        Ok(Folded {
            projections,
            last_recorded_at: last.map(|(_, t)| t),
        })
    }
}

/// One thread's part of the fold.
struct Share {
    index: usize,
    threads: usize,
    until: Option<Timestamp>,
    projections: Projections,
    /// Which thread folds each shop seen so far, and how many shops that is.
    owners: HashMap<ShopId, usize, foldhash::fast::FixedState>,
    /// The position of the first own event recorded after `until`.
    stopped_at: Option<Position>,
    /// The last own event folded: position and time.
    last: Option<(Position, Timestamp)>,
    error: Option<FoldError>,
    /// Reused for each event's actor (no allocation per event).
    actor: Actor,
}

impl Share {
    fn new(index: usize, threads: usize, until: Option<Timestamp>) -> Share {
        Share {
            index,
            threads,
            until,
            projections: Projections::new(),
            owners: HashMap::default(),
            stopped_at: None,
            last: None,
            error: None,
            actor: Actor::new(Role::System, String::new()),
        }
    }

    /// Folds this thread's records of `page`; false once it has stopped.
    fn fold(&mut self, page: &RecordPage) -> bool {
        for (position, body) in page.bodies() {
            match self.record(position, body) {
                Ok(true) => {}
                Ok(false) => {
                    self.stopped_at = Some(position);
                    return false;
                }
                Err(e) => {
                    self.error = Some(e);
                    return false;
                }
            }
        }
        true
    }

    /// Folds one record if its shop is this thread's; false when it was
    /// recorded after the moment.
    fn record(&mut self, position: Position, body: &[u8]) -> Result<bool, FoldError> {
        let bad = |reason: String| FoldError::Record { position, reason };
        let shop = ShopId(format::body_shop(body).map_err(bad)?);
        let next = self.owners.len();
        let owner = *self.owners.entry(shop).or_insert(next % self.threads);
        if owner != self.index {
            return Ok(true);
        }
        let envelope = format::decode_envelope(body).map_err(bad)?;
        let recorded_at = Timestamp(envelope.recorded_at);
        if self.until.is_some_and(|t| recorded_at > t) {
            return Ok(false);
        }
        self.actor.role = Role::from_code(envelope.role)
            .ok_or_else(|| bad(format!("unknown role code {}", envelope.role)))?;
        self.actor.id.clear();
        self.actor.id.push_str(envelope.actor);
        self.projections.apply_ref(EventRef {
            position,
            shop,
            version: envelope.version,
            recorded_at,
            actor: &self.actor,
            event_type: envelope.event_type,
            payload: envelope.payload,
        })?;
        self.last = Some((position, recorded_at));
        Ok(true)
    }
}
