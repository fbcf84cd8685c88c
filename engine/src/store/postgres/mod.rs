//! The `postgres` backend: the event log in a PostgreSQL database, for
//! shops that outgrow one machine. Several kedai nodes (several `PgStore`
//! instances) may share one database; they see one log.
//!
//! Tables ([`schema`], applied by versioned migrations on connect):
//! `events` holds one row per event: its global position (the primary
//! key and the log's order), the stream key `(shop_id, stream, version)`
//! (unique, leading with the shop so the table can be distributed by
//! shop), the event id (unique forever), and the record body with its
//! checksum. `log_head` is a single row: the last position, the hash of the
//! last record and the last `recorded_at`.
//!
//! **Gap-free order.** Every append transaction starts by locking the head
//! row (`SELECT ... FOR UPDATE`), takes its positions from it, and writes
//! the new head before committing. So appends are serialised across all
//! nodes: a transaction can only get positions after the transaction that
//! had the ones before it has committed (or rolled back, leaving the head
//! as it was). Commit order therefore equals position order, an aborted
//! transaction leaves no gap, and every snapshot a reader takes holds a
//! prefix of the log: no reader can see position `n + 1` without `n`, and
//! no event can commit "late" behind a position a reader already passed.
//! (PostgreSQL makes a commit visible before it releases the committing
//! transaction's row locks, so the next appender's commit becomes visible
//! after ours; standbys replay commits in WAL order, which is that order.)
//!
//! **Batching.** Each store runs one writer task (`writer.rs`) with its own
//! connection. It drains the queue of pending appends and applies all of
//! them in one transaction: lock the head, look up the batch's event ids
//! and stream versions, decide every append in Rust against the state the
//! appends before it leave (a rejected append is simply not written, so it
//! cannot abort the others), insert all rows with one prepared multi-row
//! `INSERT ... SELECT FROM unnest(...)`, move the head, `NOTIFY`, commit
//! once, and answer every append. Statements are pipelined: one round trip
//! to lock and look up, one to write and commit. While no other node
//! writes, a batch takes one round trip: it is decided on the head this
//! writer last left and written by one statement that checks, under the
//! head's lock, that nothing it assumed has changed (else it writes
//! nothing and the batch takes the two round trips).
//!
//! **Imports** ([`import`](super::import)) store records of another log as
//! they are: on a connection of their own, one transaction per batch that
//! locks the head like an append, checks that the batch continues the
//! chain, inserts the rows and moves the head.
//!
//! **Integrity.** Each row stores the record body exactly as the embedded
//! log writes it (`prev_hash ++ position ++ MessagePack envelope`, see
//! [`format::encode_body`](super::log::format::encode_body)) and the same
//! CRC32C, so the records form the same BLAKE3 hash chain and
//! [`verify`](verify::verify) checks a database as `log::verify` checks a
//! directory. Reads check every row's checksum, position and key columns
//! against its body, and decode the event from the body.
//!
//! [`EventStore::submit`] returns once the append is queued: appends are
//! decided in queue order, so one submitted later is checked against the
//! state this one leaves (within one store; other nodes' appends may come
//! between them, as they may between two appends of one caller).
//!
//! **Live head.** [`EventStore::head`] is a watch fed by this store's own
//! commits, by a `LISTEN` connection (every batch sends `NOTIFY` with its
//! last position inside its transaction, so it fires on commit), and by a
//! slow poll of the head row in case a notification is missed (`head.rs`).
//!
//! A read-only store ([`PgStore::connect_read_only`], for auditors) runs no
//! migrations, opens its connections with `default_transaction_read_only`
//! and refuses appends with [`StoreError::ReadOnly`].

mod head;
mod rows;
pub mod schema;
pub mod throwaway;
pub mod verify;
mod writer;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::AbortHandle;
use tokio_postgres::{Client, Config, NoTls};
use uuid::Uuid;

use super::import::{ChainEnd, IMPORT_RECORDS_MAX, RecordPage, Verbatim};
use super::{AppendOutcome, AppendRequest, AppendTicket, EventStore, READ_EVENTS_MAX, StoreError};
use crate::event::{Position, RecordedEvent, StreamId};

/// Channel the writers `NOTIFY` with each batch's last position.
pub const NOTIFY_CHANNEL: &str = "kedai_log";

/// Tuning of the PostgreSQL backend.
#[derive(Clone, Debug)]
pub struct PgOptions {
    /// Connections for reads (each store also has one writer connection
    /// and one listening connection).
    pub pool_size: usize,
    /// Most events one transaction writes.
    pub batch_events_max: usize,
    /// Most payload bytes one transaction writes (a single larger append
    /// still goes through, alone).
    pub batch_bytes_max: usize,
    /// Appends that may wait for the writer before callers are slowed down.
    pub queue_requests_max: usize,
    /// Write a batch in one statement while no other node writes (see
    /// `writer.rs`); off, every batch takes two round trips.
    pub fast_path: bool,
    /// Longest the writer waits, before a transaction, for the callers the
    /// last one answered to come back with their next appends (at most a
    /// quarter of the last transaction's time).
    pub gather_max: Duration,
    /// How often the head row is read in case a notification was missed.
    pub poll_interval: Duration,
    /// Follow other nodes' appends with `LISTEN` (standbys do not allow it;
    /// polling alone then moves the head).
    pub listen: bool,
    /// Longest wait for a new connection or a pooled one.
    pub connect_timeout: Duration,
    /// Longest an append transaction waits for another node's to release
    /// the head row before its appends fail.
    pub head_lock_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 8,
            batch_events_max: 16_384,
            batch_bytes_max: 8 << 20,
            queue_requests_max: 4_096,
            fast_path: true,
            gather_max: Duration::from_millis(2),
            poll_interval: Duration::from_secs(1),
            listen: true,
            connect_timeout: Duration::from_secs(10),
            head_lock_timeout: Duration::from_secs(30),
        }
    }
}

/// What a store's writer has done since it connected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PgStats {
    /// Transactions that wrote events.
    pub batches: u64,
    /// Appends that recorded events.
    pub appends: u64,
    pub events: u64,
    /// Transactions written in one statement, on the head this writer
    /// last left (see `writer.rs`).
    pub fast_batches: u64,
    /// Times that statement found the head or a stream moved, wrote
    /// nothing, and the batch took the careful path.
    pub fast_misses: u64,
}

#[derive(Debug, Default)]
struct StatCounters {
    batches: AtomicU64,
    appends: AtomicU64,
    events: AtomicU64,
    fast_batches: AtomicU64,
    fast_misses: AtomicU64,
}

/// What the store's tasks share.
#[derive(Debug)]
struct Shared {
    pool: Pool,
    head: watch::Sender<Position>,
    stats: StatCounters,
}

impl Shared {
    /// Moves the head watch forward to `position` (never backwards).
    fn advance(&self, position: Position) {
        self.head.send_if_modified(|head| {
            if position > *head {
                *head = position;
                true
            } else {
                false
            }
        });
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(|e| {
            StoreError::Unavailable(format!("PostgreSQL: no connection from the pool: {e}"))
        })
    }

    /// The last committed position, from the head row.
    async fn read_head(&self) -> Result<Position, StoreError> {
        let client = self.client().await?;
        rows::read_head_position(&client).await
    }
}

/// The PostgreSQL event store.
pub struct PgStore {
    shared: Arc<Shared>,
    /// `None` when read-only.
    tx: Option<mpsc::Sender<writer::Pending>>,
    /// The writer's connection settings, for imports (`None` when
    /// read-only).
    writer_config: Option<Config>,
    /// The connection imports run on, opened by the first one.
    importer: tokio::sync::Mutex<Option<writer::Connection>>,
    /// The listening and polling tasks, stopped on drop.
    followers: Vec<AbortHandle>,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("head", &*self.shared.head.borrow())
            .field("read_only", &self.tx.is_none())
            .finish()
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user@host:port/db`),
    /// applies pending migrations, and starts the writer and the head
    /// followers. Must be called within a Tokio runtime.
    pub async fn connect(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        check_options(&options);
        let base = parse_url(url, &options)?;
        let writer_config = with_settings(
            &base,
            &[
                ("lock_timeout", millis(options.head_lock_timeout)),
                (
                    "idle_in_transaction_session_timeout",
                    millis(options.head_lock_timeout * 2),
                ),
                // The writer's statements take arrays of hundreds of
                // values; planning them for each batch (a custom plan)
                // costs more than the batch's work, and the generic plan
                // (index lookups per element) is the right one anyway.
                ("plan_cache_mode", "force_generic_plan".into()),
            ],
        );
        let mut client = connect_client(&writer_config).await?;
        schema::migrate(&mut client).await?;
        let last = rows::read_head_position(&client).await?;
        let connection = writer::Connection::prepare(client).await?;
        let shared = Arc::new(Shared {
            pool: build_pool(&base, &options)?,
            head: watch::channel(last).0,
            stats: StatCounters::default(),
        });
        let (tx, rx) = mpsc::channel(options.queue_requests_max);
        writer::spawn(
            Arc::clone(&shared),
            writer_config.clone(),
            connection,
            options.clone(),
            rx,
        );
        let followers = head::spawn(Arc::clone(&shared), read_only_config(&base), &options);
        Ok(PgStore {
            shared,
            tx: Some(tx),
            writer_config: Some(writer_config),
            importer: tokio::sync::Mutex::new(None),
            followers,
        })
    }

    /// Connects read-only, for auditors: checks that the schema is there
    /// and current, writes nothing (every connection is opened with
    /// `default_transaction_read_only`), and refuses appends.
    pub async fn connect_read_only(url: &str, options: PgOptions) -> Result<PgStore, StoreError> {
        check_options(&options);
        let base = parse_url(url, &options)?;
        let config = read_only_config(&base);
        let client = connect_client(&config).await?;
        schema::check(&client).await?;
        let last = rows::read_head_position(&client).await?;
        drop(client);
        let shared = Arc::new(Shared {
            pool: build_pool(&base, &options)?,
            head: watch::channel(last).0,
            stats: StatCounters::default(),
        });
        let followers = head::spawn(Arc::clone(&shared), config, &options);
        Ok(PgStore {
            shared,
            tx: None,
            writer_config: None,
            importer: tokio::sync::Mutex::new(None),
            followers,
        })
    }

    /// What the writer has done since connecting.
    pub fn stats(&self) -> PgStats {
        let c = &self.shared.stats;
        PgStats {
            batches: c.batches.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            events: c.events.load(Ordering::Relaxed),
            fast_batches: c.fast_batches.load(Ordering::Relaxed),
            fast_misses: c.fast_misses.load(Ordering::Relaxed),
        }
    }

    /// Whether the store refuses appends.
    pub fn is_read_only(&self) -> bool {
        self.tx.is_none()
    }
}

impl Drop for PgStore {
    fn drop(&mut self) {
        // The writer ends by itself once the queue is closed and drained.
        for task in &self.followers {
            task.abort();
        }
    }
}

#[async_trait]
impl EventStore for PgStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        self.submit(request).await?.outcome().await
    }

    /// Queues the append for this store's writer, which decides appends in
    /// queue order, each against the state the ones before it leave.
    async fn submit(&self, request: AppendRequest) -> Result<AppendTicket, StoreError> {
        let Some(tx) = &self.tx else {
            return Err(StoreError::ReadOnly);
        };
        request.validate()?;
        let (reply, answer) = oneshot::channel();
        tx.send(writer::Pending { request, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the PostgreSQL writer has stopped".into()))?;
        Ok(AppendTicket::waiting(answer))
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from_version: u64,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let client = self.shared.client().await?;
        rows::read_stream(&client, stream, from_version, max.min(READ_EVENTS_MAX)).await
    }

    async fn read_all(
        &self,
        after: Position,
        max: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let client = self.shared.client().await?;
        rows::read_all(&client, after, max.min(READ_EVENTS_MAX)).await
    }

    async fn stream_version(&self, stream: &StreamId) -> Result<u64, StoreError> {
        let client = self.shared.client().await?;
        rows::stream_version(&client, stream).await
    }

    async fn last_position(&self) -> Result<Position, StoreError> {
        let position = self.shared.read_head().await?;
        self.shared.advance(position);
        Ok(position)
    }

    fn head(&self) -> watch::Receiver<Position> {
        self.shared.head.subscribe()
    }

    async fn event_positions(&self, ids: &[Uuid]) -> Result<Vec<Option<Position>>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let client = self.shared.client().await?;
        rows::event_positions(&client, ids).await
    }
}

#[async_trait]
impl Verbatim for PgStore {
    async fn read_records(&self, after: Position, max: usize) -> Result<Vec<Vec<u8>>, StoreError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let client = self.shared.client().await?;
        rows::read_bodies(&client, after, max.min(IMPORT_RECORDS_MAX)).await
    }

    /// As [`read_records`](Verbatim::read_records), each body copied from
    /// its row straight into the page.
    async fn read_page(
        &self,
        after: Position,
        max: usize,
        spare: RecordPage,
    ) -> Result<RecordPage, StoreError> {
        let mut page = spare.reset(after + 1);
        if max == 0 {
            return Ok(page);
        }
        let client = self.shared.client().await?;
        rows::read_rows(&client, after, max.min(IMPORT_RECORDS_MAX), |checked| {
            page.push(checked.body);
            Ok(())
        })
        .await?;
        Ok(page)
    }

    async fn chain_end(&self) -> Result<ChainEnd, StoreError> {
        let client = self.shared.client().await?;
        let head = rows::read_head(&client).await?;
        self.shared.advance(head.last_position);
        Ok(ChainEnd {
            last_position: head.last_position,
            last_hash: head.last_hash,
            last_recorded_at: head.last_recorded_at,
        })
    }

    /// In one transaction of its own (on a connection kept for imports),
    /// serialised with every node's appends by the head row.
    async fn import(&self, bodies: Vec<Vec<u8>>) -> Result<AppendOutcome, StoreError> {
        let Some(config) = &self.writer_config else {
            return Err(StoreError::ReadOnly);
        };
        let mut importer = self.importer.lock().await;
        let outcome = writer::import(&mut importer, config, &bodies).await?;
        self.shared.advance(outcome.last_position);
        Ok(outcome)
    }
}

fn check_options(options: &PgOptions) {
    assert!(options.pool_size > 0, "pool_size must be at least 1");
    assert!(options.batch_events_max > 0 && options.queue_requests_max > 0);
    assert!(
        !options.poll_interval.is_zero(),
        "poll_interval must not be zero"
    );
}

/// Parses a connection URL (or `key=value` string) and fills in kedai's
/// defaults where it says nothing.
fn parse_url(url: &str, options: &PgOptions) -> Result<Config, StoreError> {
    let mut config: Config = url
        .parse()
        .map_err(|e| StoreError::Unavailable(format!("invalid PostgreSQL connection URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(options.connect_timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("kedai");
    }
    Ok(config)
}

/// `config` with server settings added to its startup options.
fn with_settings(config: &Config, settings: &[(&str, String)]) -> Config {
    let mut config = config.clone();
    let mut line = config.get_options().unwrap_or_default().to_owned();
    for (name, value) in settings {
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&format!("-c {name}={value}"));
    }
    config.options(line);
    config
}

/// Connections that cannot write, whatever they are asked.
fn read_only_config(config: &Config) -> Config {
    with_settings(config, &[("default_transaction_read_only", "on".into())])
}

fn millis(d: Duration) -> String {
    d.as_millis().max(1).to_string()
}

fn build_pool(base: &Config, options: &PgOptions) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(
        read_only_config(base),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(options.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(options.connect_timeout))
        .create_timeout(Some(options.connect_timeout))
        .build()
        .map_err(|e| StoreError::Unavailable(format!("PostgreSQL connection pool: {e}")))
}

/// Opens one connection and drives it on a task of its own; the task ends
/// when the client is dropped or the connection breaks.
async fn connect_client(config: &Config) -> Result<Client, StoreError> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| db_error("connecting", &e))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %describe(&e), "PostgreSQL connection ended");
        }
    });
    Ok(client)
}

/// A database error as a store error, saying what was being done.
fn db_error(context: &str, e: &tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL, {context}: {}", describe(e)))
}

/// The server's message and SQLSTATE when there is one; tokio-postgres's
/// own display is only "db error".
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!(
                "{}: {} (SQLSTATE {})",
                db.severity(),
                db.message(),
                db.code().code()
            );
            if let Some(detail) = db.detail() {
                text.push_str(": ");
                text.push_str(detail);
            }
            text
        }
        None => e.to_string(),
    }
}

/// Where corruption found in the database is reported.
fn corrupt(position: Option<Position>, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        segment: PathBuf::from(CORRUPT_LOCATION),
        offset: 0,
        position,
        reason: reason.into(),
    }
}

/// Stands in for a segment file in [`StoreError::Corrupt`]: the offset is
/// always 0 and the position names the row.
pub const CORRUPT_LOCATION: &str = "PostgreSQL table events";
