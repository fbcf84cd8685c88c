//! The PostgreSQL writer task: group commit over one connection.
//!
//! Appends arrive over a bounded channel. The task takes every append
//! queued (up to the batch limits) and applies them in one transaction, in
//! two pipelined round trips:
//!
//! 1. `BEGIN`; lock the head row (`SELECT ... FOR UPDATE`), which waits for
//!    any other node's append transaction to end; look up which of the
//!    batch's event ids are recorded, and the version of each stream it
//!    touches. These statements run after the lock is granted, each with a
//!    fresh snapshot (read committed), so they see everything committed
//!    before.
//! 2. Decide every append in Rust, in queue order, against the state the
//!    appends before it leave: idempotent retries, expected versions,
//!    positions from the head, `recorded_at = max(request, previous)`,
//!    record bodies chained by hash. A rejected append writes nothing, so
//!    it cannot abort the others. Then one prepared statement inserts every
//!    row (`INSERT ... SELECT FROM unnest(arrays)`), moves the head and
//!    sends `NOTIFY` with the new last position; `COMMIT` follows it.
//!
//! **One round trip when no one else wrote.** The writer remembers the
//! head its last transaction left. While no other node has moved it (the
//! head watch says no more), the next batch is decided in Rust on that
//! head and on the expected versions themselves (each stream's first
//! expectation in the batch is taken as what the database holds, the rest
//! must follow from the batch), and written by one statement in its own
//! transaction: it locks the head row, and inserts and moves the head only
//! if the head is still the remembered one, no event id of the batch is
//! recorded, and every stream is at the version (and last event) the
//! batch assumed. Since every append goes through the head row, an
//! unchanged head means nothing was appended since this writer's last
//! commit, so the statement's snapshot holds everything the checks need.
//! If any check fails the statement writes nothing and the batch takes
//! the two round trips above; a batch that needs an answer the fast path
//! cannot give (an `Any` expectation, a retried append, a conflict within
//! the batch) takes them at once.
//!
//! Only after the commit returns are the appends answered and the head
//! watch moved. A failed batch fails every append in it with
//! [`StoreError::Unavailable`]; if the commit's outcome is unknown (the
//! connection broke during it), a retry of the same append is safe: its
//! ids decide, and it answers `AlreadyRecorded` if the commit went
//! through. A broken connection is replaced on the next batch.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Config, Row, Statement};
use uuid::Uuid;

use super::rows::{self, Head};
use super::{NOTIFY_CHANNEL, PgOptions, Shared, connect_client, corrupt, db_error};
use crate::event::{ExpectedVersion, Position, ShopId, StreamId};
use crate::store::import::{self, ChainEnd};
use crate::store::log::format::{self, Envelope};
use crate::store::{AppendOutcome, AppendRequest, AppendStatus, StoreError, StreamAppend};

/// An append waiting for the writer.
#[derive(Debug)]
pub(super) struct Pending {
    pub request: AppendRequest,
    pub reply: oneshot::Sender<Result<AppendOutcome, StoreError>>,
}

const LOCK_HEAD: &str =
    "SELECT last_position, last_hash, last_recorded_at FROM log_head WHERE singleton FOR UPDATE";

const FIND_IDS: &str = "SELECT event_id, position FROM events WHERE event_id = ANY($1::uuid[])";

/// Each stream's version and the position of its last event (null when
/// it has none).
const STREAM_VERSIONS: &str = "SELECT s.shop_id, s.stream, coalesce(l.version, 0)::int8, l.position \
     FROM unnest($1::uuid[], $2::text[]) AS s(shop_id, stream) \
     LEFT JOIN LATERAL (SELECT e.version, e.position FROM events e \
         WHERE e.shop_id = s.shop_id AND e.stream = s.stream \
         ORDER BY e.version DESC LIMIT 1) l ON true";

fn write_sql() -> String {
    format!(
        "WITH written AS ( \
           INSERT INTO events (position, shop_id, stream, version, event_id, body, crc32c) \
           SELECT * FROM unnest($1::int8[], $2::uuid[], $3::text[], $4::int8[], $5::uuid[], \
                                $6::bytea[], $7::int8[])), \
         head AS ( \
           UPDATE log_head SET last_position = $8::int8, last_hash = $9::bytea, \
                               last_recorded_at = $10::int8 \
            WHERE singleton) \
         SELECT pg_notify('{NOTIFY_CHANNEL}', ($8::int8)::text)"
    )
}

/// The fast path's statement: `$1`-`$10` as in [`write_sql`], then the
/// head it assumes (`$11` position, `$12` hash) and what it assumes of
/// each stream (`$13` shop, `$14` stream, `$15` version, `$16` id of the
/// last event or the nil id for no check). Answers whether it wrote.
///
/// Every lookup is a per-key probe (`LATERAL ... LIMIT 1`), so that the
/// plan, made once per connection and often on a nearly empty table,
/// probes the unique indexes whatever the table's size: as
/// `EXISTS (... event_id = ANY($5))` the planner expects ten matches and
/// prefers a sequential scan that stops at the first, which scans the
/// whole table when, as nearly always, there is none.
fn fast_sql() -> String {
    format!(
        "WITH head AS MATERIALIZED ( \
           SELECT last_position = $11::int8 AND last_hash = $12::bytea AS unchanged \
             FROM log_head WHERE singleton FOR UPDATE), \
         ok AS MATERIALIZED ( \
           SELECT coalesce((SELECT unchanged FROM head), false) \
              AND NOT EXISTS ( \
                SELECT 1 FROM unnest($5::uuid[]) AS i(id) \
                  CROSS JOIN LATERAL (SELECT 1 FROM events e WHERE e.event_id = i.id LIMIT 1) f) \
              AND NOT EXISTS ( \
                SELECT 1 FROM unnest($13::uuid[], $14::text[], $15::int8[], $16::uuid[]) \
                         AS c(shop_id, stream, version, last_id) \
                  LEFT JOIN LATERAL (SELECT e.version, e.event_id FROM events e \
                         WHERE e.shop_id = c.shop_id AND e.stream = c.stream \
                         ORDER BY e.version DESC LIMIT 1) l ON true \
                 WHERE coalesce(l.version, 0) <> c.version \
                    OR (c.last_id <> '00000000-0000-0000-0000-000000000000'::uuid \
                        AND l.event_id IS DISTINCT FROM c.last_id)) AS ok), \
         written AS ( \
           INSERT INTO events (position, shop_id, stream, version, event_id, body, crc32c) \
           SELECT * FROM unnest($1::int8[], $2::uuid[], $3::text[], $4::int8[], $5::uuid[], \
                                $6::bytea[], $7::int8[]) \
            WHERE (SELECT ok FROM ok)), \
         moved AS ( \
           UPDATE log_head SET last_position = $8::int8, last_hash = $9::bytea, \
                               last_recorded_at = $10::int8 \
            WHERE singleton AND (SELECT ok FROM ok)) \
         SELECT ok, CASE WHEN ok THEN pg_notify('{NOTIFY_CHANNEL}', ($8::int8)::text) END FROM ok"
    )
}

/// The writer's connection and its prepared statements.
pub(super) struct Connection {
    client: Client,
    lock: Statement,
    ids: Statement,
    versions: Statement,
    write: Statement,
    fast: Statement,
}

impl Connection {
    pub(super) async fn prepare(client: Client) -> Result<Connection, StoreError> {
        let err = |e: tokio_postgres::Error| db_error("preparing the writer's statements", &e);
        let lock = client.prepare(LOCK_HEAD).await.map_err(err)?;
        let ids = client.prepare(FIND_IDS).await.map_err(err)?;
        let versions = client.prepare(STREAM_VERSIONS).await.map_err(err)?;
        let write = client.prepare(&write_sql()).await.map_err(err)?;
        let fast = client.prepare(&fast_sql()).await.map_err(err)?;
        Ok(Connection {
            client,
            lock,
            ids,
            versions,
            write,
            fast,
        })
    }
}

/// Starts the writer task; it ends when every sender is gone and the
/// queue is drained.
pub(super) fn spawn(
    shared: Arc<Shared>,
    config: Config,
    connection: Connection,
    options: PgOptions,
    rx: mpsc::Receiver<Pending>,
) {
    let writer = Writer {
        shared,
        config,
        connection: Some(connection),
        options,
        known: None,
    };
    tokio::spawn(writer.run(rx));
}

struct Writer {
    shared: Arc<Shared>,
    config: Config,
    /// `None` after the connection broke, until the next batch reconnects.
    connection: Option<Connection>,
    options: PgOptions,
    /// The head as this writer's last transaction left it (`None` after a
    /// failure, until a transaction reads it again).
    known: Option<Head>,
}

/// Whether some stream's first append in the batch expects any version:
/// the fast path cannot assume what the database holds for it, so the
/// batch goes the locked way at once, without being encoded for the fast
/// path first.
fn first_expects_any(pending: &[Pending]) -> bool {
    let streams = || pending.iter().flat_map(|p| &p.request.streams);
    if !streams().any(|s| s.expected == ExpectedVersion::Any) {
        return false;
    }
    let mut seen = HashSet::new();
    streams().any(|s| seen.insert(&s.stream) && s.expected == ExpectedVersion::Any)
}

/// What a committed batch did.
struct Applied {
    /// One per pending append, in order.
    outcomes: Vec<Result<AppendOutcome, StoreError>>,
    /// The new head, when the batch wrote events.
    last_position: Option<Position>,
    events: u64,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Pending>) {
        // Callers the last transaction answered, and how long it took.
        let mut answered = 0;
        let mut last_took = Duration::ZERO;
        while let Some(first) = rx.recv().await {
            let mut events = first.request.event_count();
            let mut bytes = payload_bytes(&first.request);
            let mut pending = vec![first];
            let room = |events: usize, bytes: usize| {
                events < self.options.batch_events_max && bytes < self.options.batch_bytes_max
            };
            while room(events, bytes) {
                let Ok(p) = rx.try_recv() else { break };
                events += p.request.event_count();
                bytes += payload_bytes(&p.request);
                pending.push(p);
            }
            // Callers answered by the last commit are likely to come back
            // with their next append within moments: wait a little for
            // them (at most a fraction of a transaction), so that one
            // commit carries them all, instead of the callers settling
            // into two groups that alternate. Those already queued may be
            // some of them, or callers that are new: as many as the last
            // commit answered are waited for, or as many as are queued.
            let wanted = answered.max(pending.len());
            let deadline = Instant::now() + (last_took / 4).min(self.options.gather_max);
            while pending.len() < wanted && room(events, bytes) {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(p)) => {
                        events += p.request.event_count();
                        bytes += payload_bytes(&p.request);
                        pending.push(p);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
            answered = pending.len();
            let started = Instant::now();
            self.process(pending).await;
            last_took = started.elapsed();
        }
    }

    async fn process(&mut self, pending: Vec<Pending>) {
        match self.apply(&pending).await {
            Ok(applied) => {
                if let Some(last) = applied.last_position {
                    self.shared.advance(last);
                    let stats = &self.shared.stats;
                    let recorded = applied
                        .outcomes
                        .iter()
                        .filter(|o| matches!(o, Ok(o) if o.status == AppendStatus::Recorded))
                        .count();
                    stats.batches.fetch_add(1, Ordering::Relaxed);
                    stats.appends.fetch_add(recorded as u64, Ordering::Relaxed);
                    stats.events.fetch_add(applied.events, Ordering::Relaxed);
                }
                for (p, outcome) in pending.into_iter().zip(applied.outcomes) {
                    let _ = p.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, appends = pending.len(), "PostgreSQL append batch failed");
                for p in pending {
                    let _ = p.reply.send(Err(copy_error(&e)));
                }
            }
        }
    }

    /// The connection, reconnecting if it broke.
    async fn connection(&mut self) -> Result<&Connection, StoreError> {
        if self
            .connection
            .as_ref()
            .is_some_and(|c| c.client.is_closed())
        {
            tracing::warn!("the PostgreSQL writer's connection closed; reconnecting");
            self.connection = None;
        }
        if self.connection.is_none() {
            let client = connect_client(&self.config).await?;
            self.connection = Some(Connection::prepare(client).await?);
        }
        Ok(self.connection.as_ref().expect("connected above"))
    }

    async fn apply(&mut self, pending: &[Pending]) -> Result<Applied, StoreError> {
        let known = self.known.take().filter(|_| self.options.fast_path);
        let others_quiet = |head: &Head| *self.shared.head.borrow() <= head.last_position;
        if let Some(head) = known.filter(others_quiet)
            && !first_expects_any(pending)
            && let Some(applied) = self.apply_fast(head, pending).await?
        {
            return Ok(applied);
        }
        self.apply_locked(pending).await
    }

    /// The fast path: `Some` if the batch was written in one statement.
    async fn apply_fast(
        &mut self,
        head: Head,
        pending: &[Pending],
    ) -> Result<Option<Applied>, StoreError> {
        let mut batch = Batch::assuming(head);
        let outcomes: Vec<_> = pending.iter().map(|p| batch.admit(&p.request)).collect();
        let all_recorded = outcomes
            .iter()
            .all(|o| matches!(o, Ok(o) if o.status == AppendStatus::Recorded));
        let Some(checks) = batch.checks.as_ref().filter(|_| all_recorded) else {
            return Ok(None);
        };
        let c = self.connection().await?;
        let end = batch.end;
        let rows = &batch.rows;
        let bodies = rows.bodies();
        let last_position = to_sql_int(end.last_position);
        let head_position = to_sql_int(head.last_position);
        let params: [&(dyn ToSql + Sync); 16] = [
            &rows.positions,
            &rows.shops,
            &rows.streams,
            &rows.versions,
            &rows.event_ids,
            &bodies,
            &rows.crcs,
            &last_position,
            &&end.last_hash[..],
            &end.last_recorded_at,
            &head_position,
            &&head.last_hash[..],
            &checks.shops,
            &checks.streams,
            &checks.versions,
            &checks.last_ids,
        ];
        let written: bool = match c.client.query_one(&c.fast, &params).await {
            Ok(row) => rows::get(&row, 0, None)?,
            // An integrity error means the checks missed something: the
            // statement wrote nothing, and the careful path decides.
            Err(e) if e.code().is_some_and(|c| c.code().starts_with("23")) => {
                tracing::warn!(error = %super::describe(&e), "the fast append path failed a constraint");
                false
            }
            Err(e) => {
                return Err(db_error(
                    "writing an append batch (its outcome is unknown; retrying the same appends is safe)",
                    &e,
                ));
            }
        };
        let stats = &self.shared.stats;
        if !written {
            stats.fast_misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        stats.fast_batches.fetch_add(1, Ordering::Relaxed);
        self.known = Some(end);
        Ok(Some(Applied {
            outcomes,
            last_position: Some(end.last_position),
            events: rows.positions.len() as u64,
        }))
    }

    /// The careful path: lock the head, look up, decide, write, commit.
    async fn apply_locked(&mut self, pending: &[Pending]) -> Result<Applied, StoreError> {
        let c = self.connection().await?;
        let keys = Keys::of(pending);
        // Round trip 1. `biased` polls in order, so the statements are
        // sent in this order and the lookups run after the lock is held.
        let id_params: [&(dyn ToSql + Sync); 1] = [&keys.ids];
        let stream_params: [&(dyn ToSql + Sync); 2] = [&keys.shops, &keys.names];
        let (begin, head, known, versions) = tokio::join!(
            biased;
            c.client.batch_execute("BEGIN"),
            c.client.query_one(&c.lock, &[]),
            c.client.query(&c.ids, &id_params),
            c.client.query(&c.versions, &stream_params),
        );
        let looked_up = begin
            .map_err(|e| db_error("starting an append transaction", &e))
            .and_then(|()| head.map_err(|e| db_error("locking the log head", &e)))
            .and_then(|head| {
                let known = known.map_err(|e| db_error("looking up event ids", &e))?;
                let versions = versions.map_err(|e| db_error("reading stream versions", &e))?;
                Batch::new(&head, &known, &versions)
            });
        let mut batch = match looked_up {
            Ok(batch) => batch,
            Err(e) => {
                rollback_quietly(&c.client).await;
                return Err(e);
            }
        };
        let outcomes: Vec<_> = pending.iter().map(|p| batch.admit(&p.request)).collect();
        if batch.rows.positions.is_empty() {
            // Nothing to write: end the transaction to release the lock.
            c.client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| db_error("ending an append transaction", &e))?;
            self.known = Some(batch.end);
            return Ok(Applied {
                outcomes,
                last_position: None,
                events: 0,
            });
        }
        let end = batch.end;
        let rows = &batch.rows;
        let bodies = rows.bodies();
        let last_position = to_sql_int(end.last_position);
        let params: [&(dyn ToSql + Sync); 10] = [
            &rows.positions,
            &rows.shops,
            &rows.streams,
            &rows.versions,
            &rows.event_ids,
            &bodies,
            &rows.crcs,
            &last_position,
            &&end.last_hash[..],
            &end.last_recorded_at,
        ];
        // Round trip 2: write, then commit. If the write fails, the
        // server turns the COMMIT into a rollback.
        let (write, commit) = tokio::join!(
            biased;
            c.client.execute(&c.write, &params),
            c.client.batch_execute("COMMIT"),
        );
        if let Err(e) = write {
            rollback_quietly(&c.client).await;
            return Err(db_error("writing an append batch", &e));
        }
        commit.map_err(|e| {
            db_error(
                "committing an append batch (its outcome is unknown; retrying the same appends is safe)",
                &e,
            )
        })?;
        self.known = Some(end);
        Ok(Applied {
            outcomes,
            last_position: Some(end.last_position),
            events: rows.positions.len() as u64,
        })
    }
}

/// Stores record bodies verbatim (see [`import`](crate::store::import))
/// in one transaction on the connection in `slot` (opened, or replaced
/// if it broke, from `config`): lock the head, check that the batch
/// continues it, look up its streams' versions and its event ids, insert
/// every row and move the head as an append does, commit.
pub(super) async fn import(
    slot: &mut Option<Connection>,
    config: &Config,
    bodies: &[Vec<u8>],
) -> Result<AppendOutcome, StoreError> {
    if slot.as_ref().is_none_or(|c| c.client.is_closed()) {
        *slot = None;
        *slot = Some(Connection::prepare(connect_client(config).await?).await?);
    }
    let c = slot.as_ref().expect("connected above");
    let (begin, head) = tokio::join!(
        biased;
        c.client.batch_execute("BEGIN"),
        c.client.query_one(&c.lock, &[]),
    );
    let written = match begin
        .map_err(|e| db_error("starting an import transaction", &e))
        .and_then(|()| head.map_err(|e| db_error("locking the log head", &e)))
    {
        Ok(head) => import_locked(c, &head, bodies).await,
        Err(e) => Err(e),
    };
    if written.is_err() {
        rollback_quietly(&c.client).await;
    }
    written
}

/// The rest of [`import`], with the head row locked; the caller rolls
/// back if it fails.
async fn import_locked(
    c: &Connection,
    head: &Row,
    bodies: &[Vec<u8>],
) -> Result<AppendOutcome, StoreError> {
    let head = rows::decode_head(head)?;
    let chain = ChainEnd {
        last_position: head.last_position,
        last_hash: head.last_hash,
        last_recorded_at: head.last_recorded_at,
    };
    let (records, end) = import::check_batch(bodies, chain)?;
    let mut versions: HashMap<&StreamId, u64> = HashMap::new();
    let (mut shops, mut names) = (Vec::new(), Vec::new());
    for r in &records {
        if versions.insert(&r.stream, 0).is_none() {
            shops.push(r.stream.shop.0);
            names.push(&*r.stream.name);
        }
    }
    let ids: Vec<Uuid> = records.iter().map(|r| r.envelope.event_id).collect();
    let id_params: [&(dyn ToSql + Sync); 1] = [&ids];
    let stream_params: [&(dyn ToSql + Sync); 2] = [&shops, &names];
    let (found, stored) = tokio::join!(
        c.client.query(&c.ids, &id_params),
        c.client.query(&c.versions, &stream_params),
    );
    let found = found.map_err(|e| db_error("looking up event ids", &e))?;
    let stored = stored.map_err(|e| db_error("reading stream versions", &e))?;
    let mut recorded = HashMap::with_capacity(found.len() + records.len());
    for row in &found {
        let id: Uuid = rows::get(row, 0, None)?;
        let position: i64 = rows::get(row, 1, None)?;
        let position = Position::try_from(position)
            .map_err(|_| corrupt(None, format!("event {id} at position {position}")))?;
        recorded.insert(id, position);
    }
    for row in &stored {
        let shop: Uuid = rows::get(row, 0, None)?;
        let name: &str = rows::get(row, 1, None)?;
        let version: i64 = rows::get(row, 2, None)?;
        let stream = StreamId::new(ShopId(shop), name);
        let version = u64::try_from(version)
            .map_err(|_| corrupt(None, format!("stream {stream} at version {version}")))?;
        if let Some(v) = versions.get_mut(&stream) {
            *v = version;
        }
    }
    let mut crcs = Vec::with_capacity(records.len());
    for r in &records {
        let actual = versions.get_mut(&r.stream).expect("every stream looked up");
        if r.envelope.version != *actual + 1 {
            return Err(import::version_gap(r, *actual));
        }
        *actual += 1;
        if let Some(&at) = recorded.get(&r.envelope.event_id) {
            return Err(import::duplicate_id(r, at));
        }
        recorded.insert(r.envelope.event_id, r.position);
        crcs.push(i64::from(format::body_checksum(r.body)));
    }
    let positions: Vec<i64> = records.iter().map(|r| to_sql_int(r.position)).collect();
    let row_shops: Vec<Uuid> = records.iter().map(|r| r.stream.shop.0).collect();
    let streams: Vec<&str> = records.iter().map(|r| r.envelope.stream).collect();
    let row_versions: Vec<i64> = records
        .iter()
        .map(|r| to_sql_int(r.envelope.version))
        .collect();
    let row_bodies: Vec<&[u8]> = records.iter().map(|r| r.body).collect();
    let last_position = to_sql_int(end.last_position);
    let params: [&(dyn ToSql + Sync); 10] = [
        &positions,
        &row_shops,
        &streams,
        &row_versions,
        &ids,
        &row_bodies,
        &crcs,
        &last_position,
        &&end.last_hash[..],
        &end.last_recorded_at,
    ];
    let (write, commit) = tokio::join!(
        biased;
        c.client.execute(&c.write, &params),
        c.client.batch_execute("COMMIT"),
    );
    write.map_err(|e| db_error("writing an import batch", &e))?;
    commit.map_err(|e| {
        db_error(
            "committing an import batch (its outcome is unknown: compare the log's end with the batch before retrying)",
            &e,
        )
    })?;
    Ok(AppendOutcome {
        status: AppendStatus::Recorded,
        first_position: head.last_position + 1,
        last_position: end.last_position,
    })
}

/// Every event id and stream of a batch, for the lookups.
struct Keys<'a> {
    ids: Vec<Uuid>,
    shops: Vec<Uuid>,
    names: Vec<&'a str>,
}

impl<'a> Keys<'a> {
    fn of(pending: &'a [Pending]) -> Self {
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        let (mut shops, mut names) = (Vec::new(), Vec::new());
        for p in pending {
            ids.extend(p.request.event_ids());
            for s in &p.request.streams {
                ids.extend(s.expected.last_event_id());
                if seen.insert(&s.stream) {
                    shops.push(s.stream.shop.0);
                    names.push(&*s.stream.name);
                }
            }
        }
        Keys { ids, shops, names }
    }
}

/// The state a batch decides against, and the rows it will write.
struct Batch<'a> {
    /// The head as the appends admitted so far leave it.
    end: Head,
    /// Position of every event id the batch mentions that is recorded,
    /// in the database or earlier in the batch.
    ids: HashMap<Uuid, Position>,
    /// Version of every stream the batch touches, and the position of its
    /// last event.
    versions: HashMap<StreamId, (u64, Option<Position>)>,
    rows: Rows<'a>,
    /// On the fast path: what the batch assumes of each stream's state in
    /// the database; `None` once it cannot assume (or when looked up).
    checks: Option<Checks<'a>>,
}

/// Column arrays of the fast path's stream checks.
#[derive(Default)]
struct Checks<'a> {
    shops: Vec<Uuid>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    /// The nil id where the last event is not checked.
    last_ids: Vec<Uuid>,
}

/// Column arrays for the multi-row insert.
#[derive(Default)]
struct Rows<'a> {
    positions: Vec<i64>,
    shops: Vec<Uuid>,
    streams: Vec<&'a str>,
    versions: Vec<i64>,
    event_ids: Vec<Uuid>,
    crcs: Vec<i64>,
    /// Every body, back to back; `ends` says where each one ends.
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Rows<'_> {
    fn bodies(&self) -> Vec<&[u8]> {
        let mut start = 0;
        self.ends
            .iter()
            .map(|&end| {
                let body = &self.buf[start..end];
                start = end;
                body
            })
            .collect()
    }
}

impl<'a> Batch<'a> {
    fn new(head: &Row, known: &[Row], versions: &[Row]) -> Result<Self, StoreError> {
        let end = rows::decode_head(head)?;
        let mut ids = HashMap::with_capacity(known.len());
        for row in known {
            let id: Uuid = rows::get(row, 0, None)?;
            let position: i64 = rows::get(row, 1, None)?;
            let position = Position::try_from(position)
                .map_err(|_| corrupt(None, format!("event {id} at position {position}")))?;
            ids.insert(id, position);
        }
        let mut stream_versions = HashMap::with_capacity(versions.len());
        for row in versions {
            let shop: Uuid = rows::get(row, 0, None)?;
            let name: &str = rows::get(row, 1, None)?;
            let version: i64 = rows::get(row, 2, None)?;
            let last: Option<i64> = rows::get(row, 3, None)?;
            let stream = StreamId::new(ShopId(shop), name);
            let version = u64::try_from(version)
                .map_err(|_| corrupt(None, format!("stream {stream} at version {version}")))?;
            let last = last
                .map(Position::try_from)
                .transpose()
                .map_err(|_| corrupt(None, format!("stream {stream}'s last position")))?;
            stream_versions.insert(stream, (version, last));
        }
        Ok(Batch {
            end,
            ids,
            versions: stream_versions,
            rows: Rows::default(),
            checks: None,
        })
    }

    /// A batch for the fast path: decided on `head`, and on each stream
    /// being what its first expectation in the batch says (checked by the
    /// database when it writes).
    fn assuming(head: Head) -> Self {
        Batch {
            end: head,
            ids: HashMap::new(),
            versions: HashMap::new(),
            rows: Rows::default(),
            checks: Some(Checks::default()),
        }
    }

    /// The state of a stream before an append: what the batch knows, else
    /// (on the fast path) what the append expects, recorded as a check.
    fn stream_state(&mut self, s: &'a StreamAppend) -> (u64, Option<Position>, bool) {
        if let Some(&(version, last)) = self.versions.get(&s.stream) {
            return (version, last, false);
        }
        let Some(checks) = self.checks.as_mut() else {
            return (0, None, false);
        };
        let version = match s.expected {
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(v) | ExpectedVersion::ExactAfter { version: v, .. } => v,
            ExpectedVersion::Any => {
                // Its version cannot be assumed.
                self.checks = None;
                return (0, None, false);
            }
        };
        checks.shops.push(s.stream.shop.0);
        checks.streams.push(&s.stream.name);
        checks.versions.push(to_sql_int(version));
        checks
            .last_ids
            .push(s.expected.last_event_id().unwrap_or(Uuid::nil()));
        (version, None, true)
    }

    /// Decides one append against the state so far and, if it records
    /// events, encodes their rows. The request was validated by
    /// [`EventStore::append`](crate::store::EventStore::append).
    fn admit(&mut self, request: &'a AppendRequest) -> Result<AppendOutcome, StoreError> {
        if let Some(outcome) = self.already_recorded(request)? {
            return Ok(outcome);
        }
        let mut versions = Vec::with_capacity(request.streams.len());
        for s in &request.streams {
            let (actual, last, assumed) = self.stream_state(s);
            if assumed {
                versions.push(actual);
                continue;
            }
            if !s
                .expected
                .admits_stream(actual, last, |id| self.ids.get(&id).copied())
            {
                return Err(StoreError::WrongExpectedVersion {
                    stream: s.stream.clone(),
                    expected: s.expected,
                    actual,
                });
            }
            versions.push(actual);
        }
        let end = &mut self.end;
        let recorded_at = request.recorded_at.0.max(end.last_recorded_at);
        end.last_recorded_at = recorded_at;
        let first_position = end.last_position + 1;
        for (s, mut version) in request.streams.iter().zip(versions) {
            for e in &s.events {
                version += 1;
                end.last_position += 1;
                let envelope = Envelope {
                    shop: s.stream.shop.0,
                    stream: &s.stream.name,
                    version,
                    event_id: e.event_id,
                    recorded_at,
                    role: e.actor.role.code(),
                    actor: &e.actor.id,
                    correlation_id: e.correlation_id,
                    causation_id: e.causation_id,
                    event_type: &e.event_type,
                    schema_version: e.schema_version,
                    payload: &e.payload,
                };
                let rows = &mut self.rows;
                let start = rows.buf.len();
                end.last_hash = format::encode_body(
                    &mut rows.buf,
                    &end.last_hash,
                    end.last_position,
                    &envelope,
                );
                rows.crcs
                    .push(i64::from(format::body_checksum(&rows.buf[start..])));
                rows.ends.push(rows.buf.len());
                rows.positions.push(to_sql_int(end.last_position));
                rows.shops.push(s.stream.shop.0);
                rows.streams.push(&s.stream.name);
                rows.versions.push(to_sql_int(version));
                rows.event_ids.push(e.event_id);
                self.ids.insert(e.event_id, end.last_position);
            }
            self.versions
                .insert(s.stream.clone(), (version, Some(end.last_position)));
        }
        Ok(AppendOutcome {
            status: AppendStatus::Recorded,
            first_position,
            last_position: end.last_position,
        })
    }

    /// `Some` when every event id of the request is recorded; an error
    /// when only some are.
    fn already_recorded(
        &self,
        request: &AppendRequest,
    ) -> Result<Option<AppendOutcome>, StoreError> {
        let mut range: Option<(Position, Position)> = None;
        let mut missing = false;
        let mut first_found = None;
        for id in request.event_ids() {
            match self.ids.get(&id) {
                Some(&p) => {
                    first_found.get_or_insert(id);
                    let (lo, hi) = range.unwrap_or((p, p));
                    range = Some((lo.min(p), hi.max(p)));
                }
                None => missing = true,
            }
        }
        match (range, missing, first_found) {
            (Some((first_position, last_position)), false, _) => Ok(Some(AppendOutcome {
                status: AppendStatus::AlreadyRecorded,
                first_position,
                last_position,
            })),
            (Some(_), true, Some(event_id)) => Err(StoreError::PartlyRecorded { event_id }),
            _ => Ok(None),
        }
    }
}

/// Positions and versions as PostgreSQL `bigint`s. They count events, so
/// they cannot reach 2^63.
fn to_sql_int(n: u64) -> i64 {
    i64::try_from(n).expect("positions and versions fit in a bigint")
}

/// Ends a failed transaction; errors are ignored because the connection
/// is replaced if it is broken.
async fn rollback_quietly(client: &Client) {
    if let Err(e) = client.batch_execute("ROLLBACK").await {
        tracing::debug!(error = %e, "rollback after a failed batch");
    }
}

/// The same error for each append of a failed batch.
fn copy_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()),
        StoreError::Corrupt {
            segment,
            offset,
            position,
            reason,
        } => StoreError::Corrupt {
            segment: segment.clone(),
            offset: *offset,
            position: *position,
            reason: reason.clone(),
        },
        other => StoreError::Unavailable(other.to_string()),
    }
}

fn payload_bytes(request: &AppendRequest) -> usize {
    request
        .streams
        .iter()
        .flat_map(|s| &s.events)
        .map(|e| e.payload.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_goes_the_locked_way_when_a_streams_first_append_expects_any() {
        let append = |stream: &str, expected: ExpectedVersion| {
            let (reply, _) = oneshot::channel();
            let stream = StreamId::new(ShopId(Uuid::from_u128(1)), stream);
            let request = AppendRequest {
                recorded_at: crate::Timestamp::from_micros(0),
                streams: vec![StreamAppend {
                    stream,
                    expected,
                    events: vec![],
                }],
            };
            Pending { request, reply }
        };
        let exact = ExpectedVersion::Exact(1);
        let batch = [append("a", exact), append("b", exact)];
        assert!(!first_expects_any(&batch));
        // After the batch's own append to `a`, its version is known.
        let batch = [append("a", exact), append("a", ExpectedVersion::Any)];
        assert!(!first_expects_any(&batch));
        let batch = [append("a", exact), append("b", ExpectedVersion::Any)];
        assert!(first_expects_any(&batch));
    }
    use crate::store::postgres::throwaway::test_database;
    use crate::store::postgres::{PgOptions, PgStore};

    /// The writer's plans are made once per connection, often while the
    /// events table is nearly empty. The one-statement path once checked
    /// its event ids with `EXISTS (... event_id = ANY($5))`, which such a
    /// plan runs as a sequential scan stopping at the first match: with no
    /// match, a scan of the whole table on every batch (a 60,000-event
    /// table took 7 ms a batch). Every statement must probe the indexes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statements_planned_on_an_empty_table_probe_the_indexes() {
        let db = test_database().await.expect("test database");
        let _schema = PgStore::connect(&db.url, PgOptions::default())
            .await
            .expect("connect");
        let (client, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls)
            .await
            .expect("connect for SQL");
        tokio::spawn(connection);
        client
            .batch_execute("SET plan_cache_mode = force_generic_plan")
            .await
            .unwrap();
        let empty = |n: usize| vec!["'{}'"; n].join(", ");
        let hash = "'\\x00'::bytea";
        let statements = [
            ("ids", FIND_IDS.to_owned(), empty(1)),
            ("versions", STREAM_VERSIONS.to_owned(), empty(2)),
            (
                "fast",
                fast_sql(),
                format!("{}, 1, {hash}, 0, 0, {hash}, {}", empty(7), empty(4)),
            ),
        ];
        for (name, sql, args) in statements {
            client
                .batch_execute(&format!("PREPARE {name} AS {sql}"))
                .await
                .unwrap();
            let plan: Vec<String> = client
                .query(&format!("EXPLAIN EXECUTE {name}({args})"), &[])
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect();
            let plan = plan.join("\n");
            assert!(
                !plan.contains("Seq Scan on events"),
                "{name} scans the table:\n{plan}"
            );
        }
    }
}
