//! The PostgreSQL schema, as versioned migrations applied on connect.
//!
//! `schema_migrations` records which migrations ran. Each migration runs
//! once, in its own transaction, together with the row that records it;
//! every migration transaction first takes a transaction-scoped advisory
//! lock, so several nodes starting at once apply each migration exactly
//! once and wait for each other. A database whose schema is newer than
//! this build knows is refused rather than written to. Migrations are
//! never edited once released: a change is a new migration.

use tokio_postgres::Client;

use super::db_error;
use crate::store::StoreError;

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration, in order; versions are 1, 2, 3, ...
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "events and log head",
    sql: r"
-- The single row every append transaction locks first: appends are
-- serialised through it, so positions commit in order and without gaps.
CREATE TABLE log_head (
    singleton        boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    last_position    bigint NOT NULL CHECK (last_position >= 0),
    -- BLAKE3 hash of the last record's body (32 zero bytes when empty).
    last_hash        bytea NOT NULL CHECK (octet_length(last_hash) = 32),
    -- recorded_at of the last event, microseconds since 1970 UTC.
    last_recorded_at bigint NOT NULL
);
INSERT INTO log_head (singleton, last_position, last_hash, last_recorded_at)
VALUES (true, 0, decode(repeat('00', 32), 'hex'), 0);

-- One row per event. body is the record body exactly as the embedded log
-- stores it (prev_hash ++ position ++ MessagePack envelope) and crc32c its
-- frame checksum; the other columns are keys for lookups, checked against
-- the body on every read.
CREATE TABLE events (
    position   bigint PRIMARY KEY CHECK (position > 0),
    shop_id    uuid NOT NULL,
    stream     text NOT NULL,
    version    bigint NOT NULL CHECK (version > 0),
    event_id   uuid NOT NULL,
    body       bytea NOT NULL,
    crc32c     bigint NOT NULL CHECK (crc32c BETWEEN 0 AND 4294967295)
);
CREATE UNIQUE INDEX events_stream_version ON events (shop_id, stream, version);
CREATE UNIQUE INDEX events_event_id ON events (event_id);
",
}];

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Advisory lock key held by migration transactions ("kedaimig").
const MIGRATION_LOCK: i64 = 0x6b65_6461_696d_6967;

const CREATE_MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)";

/// Applies every migration the database has not had yet.
pub(super) async fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| db_error("migrating the schema", &e);
    let tx = client.transaction().await.map_err(err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(err)?;
    tx.batch_execute(CREATE_MIGRATIONS_TABLE)
        .await
        .map_err(err)?;
    let newest = newest_version(&tx).await?;
    tx.commit().await.map_err(err)?;
    if newest > SCHEMA_VERSION {
        return Err(too_new(newest));
    }
    for m in MIGRATIONS {
        debug_assert!(m.version > 0);
        let tx = client.transaction().await.map_err(err)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(err)?;
        let applied = tx
            .query_opt(
                "SELECT 1 FROM schema_migrations WHERE version = $1",
                &[&m.version],
            )
            .await
            .map_err(err)?
            .is_some();
        if !applied {
            tx.batch_execute(m.sql).await.map_err(|e| {
                db_error(
                    &format!("applying migration {} ({})", m.version, m.name),
                    &e,
                )
            })?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                &[&m.version, &m.name],
            )
            .await
            .map_err(err)?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
        }
        tx.commit().await.map_err(err)?;
    }
    Ok(())
}

/// Checks, without writing, that the schema is there and is this build's.
pub(super) async fn check(client: &Client) -> Result<(), StoreError> {
    let err = |e: tokio_postgres::Error| db_error("checking the schema", &e);
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(err)?
        .try_get(0)
        .map_err(err)?;
    if !exists {
        return Err(StoreError::Unavailable(
            "no kedai schema in this database (no schema_migrations table): a writer creates it"
                .into(),
        ));
    }
    let newest = newest_version(client).await?;
    if newest > SCHEMA_VERSION {
        return Err(too_new(newest));
    }
    if newest < SCHEMA_VERSION {
        return Err(StoreError::Unavailable(format!(
            "the database schema is at version {newest}, this build reads version {SCHEMA_VERSION}: start a writer to migrate it"
        )));
    }
    Ok(())
}

async fn newest_version(client: &impl tokio_postgres::GenericClient) -> Result<i32, StoreError> {
    let row = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(|e| db_error("reading schema_migrations", &e))?;
    row.try_get(0)
        .map_err(|e| db_error("reading schema_migrations", &e))
}

fn too_new(version: i32) -> StoreError {
    StoreError::Unavailable(format!(
        "the database schema is at version {version}, newer than this build's {SCHEMA_VERSION}: upgrade kedai"
    ))
}
