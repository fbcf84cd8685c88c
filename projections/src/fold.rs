//! A rebuild on several threads: shops share nothing, so each thread folds
//! a share of them from the same pages of records, and the shares are put
//! together at the end. The result is the same, byte for byte, as folding
//! the log on one thread with [`Projections::apply`].
//!
//! The shops are dealt to shares, each folded on its own. How the threads
//! are used is judged from the first page ([`plan`]): when no shop holds
//! most of its bytes, one share per thread; when one does (a log of one
//! busy shop), each share is two threads, so even one shop folds on two
//! cores. One decodes its shops' records (envelope and payload) and
//! applies them to the views that read no orders (balances, stock, inbox,
//! checkouts, webhooks: `Views::Rest`); the other, a page
//! behind, applies to the shop's facts, orders and analytics the events
//! those read. Stock moves, a third of a shop's events, never cross.
//!
//! Every share is given every page (one buffer, shared). It reads the
//! shop of each record from the record's first bytes
//! ([`format::body_shop`]) and decodes only the records of its own shops.
//! Shops of the first page are dealt by the plan; shops first seen later
//! in turn, in the order they appear, which every share works out alike
//! without talking to the others.
//!
//! Folding "as of a moment": `recorded_at` never decreases along the log,
//! so each thread stops at the first of its records recorded after the
//! moment; the earliest of those stops is where the whole fold stops, and
//! no thread applied anything past it.

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use kedai_engine::StoreError;
use kedai_engine::store::import::{RecordPage, Verbatim};
use kedai_engine::store::log::format;
use kedai_engine::{Actor, Position, Role, ShopId, Timestamp};

use crate::placed::PartyCache;
use crate::{ApplyError, At, Event, Projections, Views};

/// Pages queued for a share that folds on one thread before the feeder
/// waits: about 8 MB (see [`FOLD_PAGE_RECORDS`]), so a thread that falls
/// behind for a while does not hold the others up. On a 10-million-event
/// log of 4 shops this folded a few percent faster than 2 pages, and
/// varied less.
const PAGES_QUEUED: usize = 8;

/// Pages queued for a staged share's decoder, and pages of decoded events
/// for its applier. Its applier reads orders placed from the page itself,
/// which should still be in cache: with 8 pages queued, a one-shop log
/// folded more slowly.
const STAGED_QUEUED: usize = 2;

/// Records per page read for a fold: about a megabyte of a typical log, so
/// the pages queued and in use stay in the processor's cache between the
/// read that fills them and the threads that fold them. On a 10-million-
/// event log folded on 2 threads this took about a tenth off the fold's
/// time against pages of
/// [`IMPORT_RECORDS_MAX`](kedai_engine::store::import::IMPORT_RECORDS_MAX) records (8 MB), which the
/// threads read back from memory; pages of 512 records cost more in
/// hand-offs than they saved.
pub const FOLD_PAGE_RECORDS: usize = 2_048;

/// Why a fold stopped.
#[derive(Debug, thiserror::Error)]
pub enum FoldError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    /// A record whose checksum holds but whose envelope does not decode.
    #[error("record at position {position}: {reason}")]
    Record { position: Position, reason: String },
    /// Reading the records failed (a damaged log, a lost connection).
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FoldError {
    fn position(&self) -> Position {
        match self {
            FoldError::Apply(e) => e.position,
            FoldError::Record { position, .. } => *position,
            FoldError::Store(_) => Position::MAX,
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
    /// The last position read from the store (past `projections.position`
    /// when the fold stopped at a moment).
    pub read: Position,
}

/// Folds the records of `store` from the first up to `target` on
/// `threads` threads, stopping before the first event recorded after
/// `until`, if given. A thread of its own has the records read in pages
/// (each read a task of the runtime; one read of a segment each, on the
/// log) and hands them to the fold, whose queues let it read ahead. `progress` hears the position read and
/// `target` after each page.
pub async fn fold_store(
    store: Arc<dyn Verbatim>,
    target: Position,
    threads: usize,
    until: Option<Timestamp>,
    mut progress: impl FnMut(Position, Position) + Send + 'static,
) -> Result<Folded, FoldError> {
    let runtime = tokio::runtime::Handle::current();
    let feeding = tokio::task::spawn_blocking(move || {
        let mut fold = ParallelFold::start(threads, until);
        let mut read = 0;
        while read < target && !fold.all_stopped() {
            let want = ((target - read) as usize).min(FOLD_PAGE_RECORDS);
            // The read runs as a task of the runtime, beside the store's
            // own tasks (PostgreSQL's connection), so this thread is woken
            // once for the page rather than for every batch of rows the
            // connection receives: a rebuild from PostgreSQL went from
            // 0.41-0.43 to 0.47-0.49 M events/s, its kernel time halved.
            let (reader, spare) = (Arc::clone(&store), fold.spare());
            let page = runtime
                .block_on(tokio::spawn(async move {
                    reader.read_page(read, want, spare).await
                }))
                .expect("a page's read does not panic");
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    drop(fold.finish());
                    return Err(e.into());
                }
            };
            let Some(last) = page.last_position() else {
                break;
            };
            read = last;
            fold.push(page);
            progress(read, target);
        }
        fold.finish()
    });
    feeding.await.expect("the fold's feeder does not panic")
}

/// A fold in progress: give it the log's pages in order with
/// [`push`](ParallelFold::push), then [`finish`](ParallelFold::finish).
#[derive(Debug)]
pub struct ParallelFold {
    threads: usize,
    until: Option<Timestamp>,
    senders: Vec<mpsc::SyncSender<Arc<RecordPage>>>,
    workers: Vec<JoinHandle<Share>>,
    /// The last position pushed.
    pushed: Position,
    /// Pages pushed, oldest first, until every thread is done with them.
    in_flight: VecDeque<Arc<RecordPage>>,
}

impl ParallelFold {
    /// A fold on `threads` threads (at least one), stopping before the
    /// first event recorded after `until`, if given. The threads start with
    /// the first page, which decides how they are used (see [`plan`]).
    pub fn start(threads: usize, until: Option<Timestamp>) -> ParallelFold {
        ParallelFold {
            threads: threads.max(1),
            until,
            senders: Vec::new(),
            workers: Vec::new(),
            pushed: 0,
            in_flight: VecDeque::new(),
        }
    }

    fn spawn(&mut self, first: &RecordPage) {
        let Plan {
            shares,
            staged,
            owners,
        } = plan(self.threads, first);
        let until = self.until;
        for index in 0..shares {
            let depth = if staged { STAGED_QUEUED } else { PAGES_QUEUED };
            let (tx, rx) = mpsc::sync_channel::<Arc<RecordPage>>(depth);
            let owners = owners.clone();
            let worker = std::thread::Builder::new()
                .name(format!("kedai-fold-{index}"))
                .spawn(move || {
                    let decoder = Decoder::new(index, shares, until, owners);
                    if staged {
                        decoder.run_staged(index, rx)
                    } else {
                        decoder.run_alone(rx)
                    }
                })
                .expect("a fold thread starts");
            self.senders.push(tx);
            self.workers.push(worker);
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
        if self.workers.is_empty() {
            self.spawn(&page);
        }
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
        !self.workers.is_empty() && self.workers.iter().all(JoinHandle::is_finished)
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
            read: self.pushed,
        })
    }
}

/// Shops a share finds by comparing ids (see `Decoder::near`).
const NEAR_SHOPS: usize = 8;

/// Which share folds each shop.
type Owners = HashMap<ShopId, usize, foldhash::fast::FixedState>;

/// How a fold uses its threads.
#[derive(Debug, PartialEq)]
struct Plan {
    /// Shares of the shops, folded side by side.
    shares: usize,
    /// Whether each share is two threads (decoding, applying) or one.
    staged: bool,
    /// The first shops' shares; shops first seen later are dealt in turn.
    owners: Owners,
}

/// How to use `threads`, judged from the first page. A shop's work is
/// weighed by the bytes of its records, not their number: decoding and
/// applying cost about as much as the payload is long (an order placed,
/// with its lines and customers, costs several times a status change).
/// When no shop holds more than half of the page's bytes, the shops are
/// dealt to one share per thread (the busiest first, each to the share
/// with the fewest bytes so far): the shares then share nothing.
/// Otherwise one shop would keep one thread busy and the others idle, so
/// each share is two threads, one decoding and one applying.
fn plan(threads: usize, first: &RecordPage) -> Plan {
    let mut counts: Vec<(ShopId, usize)> = Vec::new();
    let mut at: Owners = HashMap::default();
    for (_, body) in first.bodies() {
        // A record that does not decode is reported by the share that
        // meets it; here it just counts for nothing.
        if let Ok(shop) = format::body_shop(body) {
            let i = *at.entry(ShopId(shop)).or_insert_with(|| {
                counts.push((ShopId(shop), 0));
                counts.len() - 1
            });
            counts[i].1 += body.len();
        }
    }
    let total: usize = counts.iter().map(|c| c.1).sum();
    let biggest = counts.iter().map(|c| c.1).max().unwrap_or(0);
    if threads < 2 || biggest * 2 > total {
        return Plan {
            shares: (threads / 2).max(1),
            staged: threads >= 2,
            owners: Owners::default(),
        };
    }
    // Busiest first; equal counts in order of first appearance.
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(counts[i].1), i));
    let mut load = vec![0usize; threads];
    let mut owners = Owners::default();
    for i in order {
        let share = (0..threads).min_by_key(|&s| (load[s], s)).expect("threads");
        load[share] += counts[i].1;
        owners.insert(counts[i].0, share);
    }
    Plan {
        shares: threads,
        staged: false,
        owners,
    }
}

/// What a share made.
struct Share {
    projections: Projections,
    /// The position of the first own event recorded after the moment.
    stopped_at: Option<Position>,
    /// The last own event folded: position and time.
    last: Option<(Position, Timestamp)>,
    error: Option<FoldError>,
}

/// An event decoded, on its way to the applier.
struct Decoded<E> {
    shop: ShopId,
    position: Position,
    version: u64,
    recorded_at: Timestamp,
    actor: Arc<Actor>,
    /// `None`: a type this build does not know.
    event: Option<E>,
}

/// How a share reads a payload, given the share's customer snapshots read
/// so far, the record's position, event type, payload and where the
/// payload lies in the record's body:
/// [`crate::decode`] borrows from the page (when the event is applied at
/// once); [`staged`] copies, for events sent to another thread, except
/// orders placed.
type Decode<'p, E> =
    fn(&mut PartyCache, Position, &[u8], &'p [u8], Range<usize>) -> Result<Option<E>, ApplyError>;

/// An event on its way from a staged share's decoder to its applier:
/// decoded, or an order placed, which the applier reads from the page
/// itself, with its texts borrowed as a share that applies at once reads
/// it (decoding it owned, to send it, cost more than all the rest of the
/// decoder's work).
#[allow(clippy::large_enum_variant)] // Boxing the events would allocate.
enum Staged {
    Event(Event<'static>),
    /// Where the payload lies in the record's body, so the applier need
    /// not read the envelope again.
    Placed {
        payload: Range<usize>,
    },
}

/// A payload decoded for a staged share's applier.
fn staged(
    _: &mut PartyCache,
    position: Position,
    event_type: &[u8],
    payload: &[u8],
    at: Range<usize>,
) -> Result<Option<Staged>, ApplyError> {
    if event_type == b"OrderPlaced" {
        return Ok(Some(Staged::Placed { payload: at }));
    }
    crate::decode_owned(position, event_type, payload)
        .map(|e| e.map(|e| Staged::Event(Event::Domain(e))))
}

impl<E> Decoded<E> {
    fn apply_event(&self, projections: &mut Projections, event: Option<&Event<'_>>, views: Views) {
        let at = At {
            position: self.position,
            version: self.version,
            recorded_at: self.recorded_at,
            actor: &self.actor,
        };
        projections.apply_views(self.shop, at, event, views);
    }
}

impl Decoded<Event<'_>> {
    fn apply(&self, projections: &mut Projections) {
        self.apply_event(projections, self.event.as_ref(), Views::All);
    }
}

impl Decoded<Staged> {
    /// Applies the event to the views of [`Views::Orders`], reading an
    /// order placed from `page` (its parties found in `parties` where
    /// known there).
    fn apply(
        &self,
        projections: &mut Projections,
        page: &RecordPage,
        parties: &mut PartyCache,
    ) -> Result<(), FoldError> {
        match &self.event {
            Some(Staged::Event(e)) => self.apply_event(projections, Some(e), Views::Orders),
            None => self.apply_event(projections, None, Views::Orders),
            Some(Staged::Placed { payload }) => {
                let position = self.position;
                let payload = page
                    .body(position)
                    .and_then(|body| body.get(payload.clone()))
                    .ok_or_else(|| FoldError::Record {
                        position,
                        reason: "not in the page it was read from".into(),
                    })?;
                let placed = crate::decode_placed(Some(parties), position, payload)?;
                self.apply_event(projections, Some(&Event::Placed(placed)), Views::Orders);
            }
        }
        Ok(())
    }
}

/// The decoding half of a share: picks its shops' records out of each
/// page and decodes them.
struct Decoder {
    index: usize,
    shares: usize,
    until: Option<Timestamp>,
    /// Which share folds each shop seen so far, and how many shops that is
    /// (left empty by a fold of one share, which folds every shop).
    owners: Owners,
    /// The first few shops seen and their shares, searched before
    /// `owners`: every share looks up the shop of every record, and for a
    /// log of a few shops comparing ids is cheaper than hashing them.
    near: Vec<(ShopId, usize)>,
    /// Actors seen, kept once (an event's actor is shared, not copied),
    /// found by the bytes of their id: only an id not seen yet is checked
    /// as UTF-8.
    actors: HashMap<Box<[u8]>, Arc<Actor>, foldhash::fast::FixedState>,
    /// The last record's actor, compared before `actors` is searched: in
    /// a shop's log, two records in a row are often by the same actor,
    /// and a search hashes the id.
    last_actor: Option<Arc<Actor>>,
    /// The customer snapshots of the orders placed this share decoded
    /// (unused by a staged share: its applier reads orders placed, with a
    /// cache of its own).
    parties: PartyCache,
    stopped_at: Option<Position>,
    last: Option<(Position, Timestamp)>,
    error: Option<FoldError>,
}

impl Decoder {
    fn new(index: usize, shares: usize, until: Option<Timestamp>, owners: Owners) -> Decoder {
        Decoder {
            index,
            shares,
            until,
            owners,
            near: Vec::with_capacity(NEAR_SHOPS),
            actors: HashMap::default(),
            last_actor: None,
            parties: PartyCache::default(),
            stopped_at: None,
            last: None,
            error: None,
        }
    }

    /// Decodes and applies on this thread.
    fn run_alone(mut self, pages: mpsc::Receiver<Arc<RecordPage>>) -> Share {
        let mut projections = Projections::bulk();
        for page in pages {
            let decode: Decode<'_, Event<'_>> = |parties, position, event_type, payload, _| {
                crate::decode(Some(parties), position, event_type, payload)
            };
            if !self.page(&page, decode, |d| d.apply(&mut projections)) {
                break;
            }
        }
        self.finish(projections)
    }

    /// Decodes on this thread and applies on another, a page behind: the
    /// views are split between the two (see [`Views`]). The applier stops
    /// at the first order placed that does not decode; its error is the
    /// share's, being earlier than any the decoder met.
    fn run_staged(mut self, index: usize, pages: mpsc::Receiver<Arc<RecordPage>>) -> Share {
        type Batch = Vec<Decoded<Staged>>;
        let (to_applier, batches) = mpsc::sync_channel::<(Arc<RecordPage>, Batch)>(STAGED_QUEUED);
        // Applied batches come back whole: their events are freed on the
        // thread that made them (cheaper than freeing across threads), and
        // the batch's memory is reused.
        let (give_back, returned) = mpsc::sync_channel::<Batch>(STAGED_QUEUED + 2);
        let applier = std::thread::Builder::new()
            .name(format!("kedai-apply-{index}"))
            .spawn(move || {
                let mut projections = Projections::bulk();
                let mut parties = PartyCache::default();
                for (page, batch) in batches {
                    for d in &batch {
                        if let Err(e) = d.apply(&mut projections, &page, &mut parties) {
                            return (projections, Some(e));
                        }
                    }
                    drop(page);
                    let _ = give_back.try_send(batch);
                }
                (projections, None)
            })
            .expect("a fold thread starts");
        // This thread applies the views the applier does not (see
        // `Views`), and sends on only the events those read.
        let mut rest = Projections::bulk();
        for page in pages {
            let mut batch = returned.try_recv().unwrap_or_default();
            batch.clear();
            let more = self.page(&page, staged, |d| {
                if let Some(Staged::Event(e)) = &d.event {
                    d.apply_event(&mut rest, Some(e), Views::Rest);
                    if let Event::Domain(e) = e
                        && crate::only_rest_reads(e)
                    {
                        return;
                    }
                }
                batch.push(d);
            });
            if to_applier.send((page, batch)).is_err() || !more {
                break;
            }
        }
        drop(to_applier);
        let (projections, error) = applier.join().expect("a fold thread does not panic");
        if error.is_some() {
            self.error = error;
        }
        self.finish(Projections::join_views(projections, rest))
    }

    fn finish(self, mut projections: Projections) -> Share {
        projections.end_bulk();
        Share {
            projections,
            stopped_at: self.stopped_at,
            last: self.last,
            error: self.error,
        }
    }

    /// Decodes this share's records of `page` into `out`; false once it
    /// has stopped (past the moment, or on an error).
    fn page<'p, E>(
        &mut self,
        page: &'p RecordPage,
        decode: Decode<'p, E>,
        mut out: impl FnMut(Decoded<E>),
    ) -> bool {
        for (position, body) in page.bodies() {
            match self.record(position, body, decode, &mut out) {
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

    /// The share that folds `shop`; a shop first seen now is dealt in turn.
    fn owner(&mut self, shop: ShopId) -> usize {
        if self.shares == 1 {
            return 0;
        }
        if let Some(&(_, owner)) = self.near.iter().find(|(s, _)| *s == shop) {
            return owner;
        }
        let next = self.owners.len();
        let owner = *self.owners.entry(shop).or_insert(next % self.shares);
        if self.near.len() < NEAR_SHOPS {
            self.near.push((shop, owner));
        }
        owner
    }

    /// The actor of this role and id (the id's bytes as stored), shared
    /// with the records before it of the same actor.
    fn actor(&mut self, role: Role, id: &[u8]) -> Result<Arc<Actor>, String> {
        if let Some(a) = &self.last_actor
            && a.role == role
            && a.id.as_bytes() == id
        {
            return Ok(Arc::clone(a));
        }
        if let Some(a) = self.actors.get(id)
            && a.role == role
        {
            self.last_actor = Some(Arc::clone(a));
            return Ok(Arc::clone(a));
        }
        let id = std::str::from_utf8(id).map_err(|_| "the actor's id is not UTF-8".to_owned())?;
        let a = Arc::new(Actor::new(role, id));
        self.actors.insert(id.as_bytes().into(), Arc::clone(&a));
        self.last_actor = Some(Arc::clone(&a));
        Ok(a)
    }

    /// Hands the record to `out`, decoded, if its shop is this share's;
    /// false when it was recorded after the moment. (The event goes
    /// straight to `out`, not back through the caller: events are moved
    /// by copying them, and one copy fewer per event showed.)
    fn record<'p, E>(
        &mut self,
        position: Position,
        body: &'p [u8],
        decode: Decode<'p, E>,
        out: &mut impl FnMut(Decoded<E>),
    ) -> Result<bool, FoldError> {
        let bad = |reason: String| FoldError::Record { position, reason };
        let shop = ShopId(format::body_shop(body).map_err(bad)?);
        if self.owner(shop) != self.index {
            return Ok(true);
        }
        let envelope = format::decode_event_head(body).map_err(bad)?;
        let recorded_at = Timestamp(envelope.recorded_at);
        if self.until.is_some_and(|t| recorded_at > t) {
            return Ok(false);
        }
        let role = Role::from_code(envelope.role)
            .ok_or_else(|| bad(format!("unknown role code {}", envelope.role)))?;
        let actor = self.actor(role, envelope.actor).map_err(bad)?;
        // Where the payload lies in the body (it is borrowed from it).
        let at = (envelope.payload.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        let at = at..at + envelope.payload.len();
        let event = decode(
            &mut self.parties,
            position,
            envelope.event_type,
            envelope.payload,
            at,
        )?;
        self.last = Some((position, recorded_at));
        out(Decoded {
            shop,
            position,
            version: envelope.version,
            recorded_at,
            actor,
            event,
        });
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use kedai_engine::store::log::format::{Envelope, GENESIS_HASH};
    use uuid::Uuid;

    use super::*;

    #[test]
    fn an_actor_is_its_role_and_id_whoever_came_before() {
        let mut d = Decoder::new(0, 1, None, Owners::default());
        let asks = [
            (Role::Staff, "ayu"),
            (Role::Staff, "ayu"),
            (Role::Owner, "ayu"),
            (Role::Staff, "budi"),
            (Role::Owner, "ayu"),
            (Role::Staff, "ayu"),
            (Role::Staff, "ayu"),
        ];
        let mut seen: Vec<Arc<Actor>> = Vec::new();
        for (role, id) in asks {
            let a = d.actor(role, id.as_bytes()).unwrap();
            assert_eq!(*a, Actor::new(role, id));
            if let Some(before) = seen.last()
                && **before == *a
            {
                assert!(Arc::ptr_eq(before, &a), "shared with the record before");
            }
            seen.push(a);
        }
        assert!(Arc::ptr_eq(&seen[1], &seen[0]));
    }

    /// A page of records of these shops, in this order, each with an
    /// empty payload.
    fn page(shops: &[u128]) -> RecordPage {
        let records: Vec<(u128, usize)> = shops.iter().map(|&s| (s, 0)).collect();
        sized_page(&records)
    }

    /// A page of records of these shops with payloads of these lengths.
    fn sized_page(records: &[(u128, usize)]) -> RecordPage {
        let mut page = RecordPage::new(1);
        for (i, &(shop, payload)) in records.iter().enumerate() {
            let payload = vec![0xc0; payload];
            let envelope = Envelope {
                shop: Uuid::from_u128(shop),
                stream: "order-1",
                version: 1,
                event_id: Uuid::from_u128(i as u128),
                recorded_at: 0,
                role: Role::Staff.code(),
                actor: "ayu",
                correlation_id: Uuid::from_u128(1),
                causation_id: None,
                event_type: "OrderPlaced",
                schema_version: 1,
                payload: &payload,
            };
            let mut body = Vec::new();
            format::encode_body(&mut body, &GENESIS_HASH, i as u64 + 1, &envelope);
            page.push(&body);
        }
        page
    }

    fn owner(plan: &Plan, shop: u128) -> usize {
        plan.owners[&ShopId(Uuid::from_u128(shop))]
    }

    #[test]
    fn one_thread_does_everything() {
        let plan = plan(1, &page(&[1, 2, 3]));
        assert_eq!((plan.shares, plan.staged), (1, false));
    }

    #[test]
    fn one_busy_shop_is_decoded_and_applied_on_two_threads() {
        let two = plan(2, &page(&[1, 1, 1, 2]));
        assert_eq!((two.shares, two.staged), (1, true));
        assert!(two.owners.is_empty());
        let four = plan(4, &page(&[7; 10]));
        assert_eq!((four.shares, four.staged), (2, true));
    }

    #[test]
    fn shops_of_similar_size_are_dealt_busiest_first_to_the_least_loaded() {
        // Shop 1: 3 records, 2: 3, 3: 2, 4: 1 (of 9).
        let plan = plan(2, &page(&[4, 1, 2, 1, 3, 2, 1, 2, 3]));
        assert_eq!((plan.shares, plan.staged), (2, false));
        assert_eq!(owner(&plan, 1), 0);
        assert_eq!(owner(&plan, 2), 1);
        assert_eq!(owner(&plan, 3), 0);
        assert_eq!(owner(&plan, 4), 1);
    }

    #[test]
    fn shops_are_weighed_by_the_bytes_of_their_records() {
        // Shop 1 has most of the records, all small; shops 2 and 3 have
        // two big ones each. Counted, shop 1 would look busiest (more
        // than half: a staged plan); weighed, 2 and 3 are the busy ones
        // and go to different threads.
        let plan = plan(
            2,
            &sized_page(&[
                (1, 10),
                (2, 1_000),
                (1, 10),
                (3, 1_000),
                (1, 10),
                (2, 1_000),
                (1, 10),
                (3, 1_000),
                (1, 10),
            ]),
        );
        assert_eq!((plan.shares, plan.staged), (2, false));
        assert_ne!(owner(&plan, 2), owner(&plan, 3));
        // One record each, but shop 2's holds most of the bytes: staged.
        let staged = super::plan(2, &sized_page(&[(1, 10), (3, 10), (2, 5_000)]));
        assert_eq!((staged.shares, staged.staged), (1, true));
    }
}
