//! Reading rows of the `events` and `log_head` tables back into events,
//! checking each one on the way: the stored checksum against the body, the
//! position inside the body against the row's, and the row's key columns
//! (shop, stream, version, event id) against the envelope. The event
//! itself is decoded from the body, never from the columns, so what
//! readers get is exactly what the hash chain covers.

use tokio_postgres::{Client, Row};
use uuid::Uuid;

use super::{corrupt, db_error};
use crate::event::{Position, RecordedEvent, StreamId};
use crate::store::StoreError;
use crate::store::log::format::{self, BODY_LEN_MAX, BODY_PREFIX_LEN, Envelope, HASH_LEN, Hash};

/// The columns [`check_row`] expects, in order.
pub(super) const EVENT_COLUMNS: &str = "position, shop_id, stream, version, event_id, body, crc32c";

/// The head row: last position, last hash, last `recorded_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    pub last_position: Position,
    pub last_hash: Hash,
    pub last_recorded_at: i64,
}

/// Decodes the head row (`last_position, last_hash, last_recorded_at`).
pub(super) fn decode_head(row: &Row) -> Result<Head, StoreError> {
    let position: i64 = get(row, 0, None)?;
    let hash: &[u8] = get(row, 1, None)?;
    let last_recorded_at: i64 = get(row, 2, None)?;
    let last_position = Position::try_from(position)
        .map_err(|_| corrupt(None, format!("the log head holds position {position}")))?;
    let last_hash = Hash::try_from(hash).map_err(|_| {
        corrupt(
            Some(last_position),
            format!(
                "the log head's hash is {} bytes, not {HASH_LEN}",
                hash.len()
            ),
        )
    })?;
    Ok(Head {
        last_position,
        last_hash,
        last_recorded_at,
    })
}

/// The last committed position.
pub(super) async fn read_head_position(client: &Client) -> Result<Position, StoreError> {
    let row = client
        .query_one("SELECT last_position FROM log_head", &[])
        .await
        .map_err(|e| db_error("reading the log head", &e))?;
    let position: i64 = get(&row, 0, None)?;
    Position::try_from(position)
        .map_err(|_| corrupt(None, format!("the log head holds position {position}")))
}

/// A row that passed its checks: its position, body and envelope.
pub(super) struct CheckedRow<'a> {
    pub position: Position,
    pub body: &'a [u8],
    pub envelope: Envelope<'a>,
}

/// Checks a row selected with [`EVENT_COLUMNS`].
pub(super) fn check_row(row: &Row) -> Result<CheckedRow<'_>, StoreError> {
    let position: i64 = get(row, 0, None)?;
    let position = Position::try_from(position)
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| corrupt(None, format!("a row holds position {position}")))?;
    let at = Some(position);
    let shop: Uuid = get(row, 1, at)?;
    let stream: &str = get(row, 2, at)?;
    let version: i64 = get(row, 3, at)?;
    let event_id: Uuid = get(row, 4, at)?;
    let body: &[u8] = get(row, 5, at)?;
    let crc: i64 = get(row, 6, at)?;
    if !(BODY_PREFIX_LEN..=BODY_LEN_MAX).contains(&body.len()) {
        return Err(corrupt(
            at,
            format!("impossible body length {}", body.len()),
        ));
    }
    let actual = format::body_checksum(body);
    if i64::from(actual) != crc {
        return Err(corrupt(
            at,
            format!("checksum mismatch (stored {crc:08x}, computed {actual:08x})"),
        ));
    }
    let (_, stored) = format::decode_prefix(body);
    if stored != position {
        return Err(corrupt(
            at,
            format!("record holds position {stored}, its row {position}"),
        ));
    }
    let envelope = format::decode_envelope(body).map_err(|e| corrupt(at, e))?;
    let columns_agree = envelope.shop == shop
        && envelope.stream == stream
        && i64::try_from(envelope.version) == Ok(version)
        && envelope.event_id == event_id;
    if !columns_agree {
        return Err(corrupt(
            at,
            "the row's key columns disagree with its record body",
        ));
    }
    Ok(CheckedRow {
        position,
        body,
        envelope,
    })
}

fn decode_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    let checked = check_row(row)?;
    checked
        .envelope
        .to_recorded(checked.position)
        .map_err(|e| corrupt(Some(checked.position), e))
}

/// Events with position `> after`, at most `max`, in order.
pub(super) async fn read_all(
    client: &deadpool_postgres::Object,
    after: Position,
    max: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let mut events = Vec::new();
    read_rows(client, after, max, |checked| {
        let event = checked
            .envelope
            .to_recorded(checked.position)
            .map_err(|e| corrupt(Some(checked.position), e))?;
        events.push(event);
        Ok(())
    })
    .await?;
    Ok(events)
}

/// Record bodies with position `> after`, at most `max`, in order, as
/// stored (each checked as readers check it).
pub(super) async fn read_bodies(
    client: &deadpool_postgres::Object,
    after: Position,
    max: usize,
) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut bodies = Vec::new();
    read_rows(client, after, max, |checked| {
        bodies.push(checked.body.to_vec());
        Ok(())
    })
    .await?;
    Ok(bodies)
}

/// The head row as it is now.
pub(super) async fn read_head(client: &Client) -> Result<Head, StoreError> {
    let row = client
        .query_one(
            "SELECT last_position, last_hash, last_recorded_at FROM log_head",
            &[],
        )
        .await
        .map_err(|e| db_error("reading the log head", &e))?;
    decode_head(&row)
}

/// Reads the rows with position `> after`, at most `max`, in order, and
/// hands each one that passes its checks to `visit`; a hole in the
/// positions is corruption.
pub(super) async fn read_rows(
    client: &deadpool_postgres::Object,
    after: Position,
    max: usize,
    mut visit: impl FnMut(CheckedRow<'_>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let Ok(after_sql) = i64::try_from(after) else {
        return Ok(());
    };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
    );
    let statement = client
        .prepare_cached(&sql)
        .await
        .map_err(|e| db_error("preparing a read", &e))?;
    let rows = client
        .query(&statement, &[&after_sql, &limit(max)])
        .await
        .map_err(|e| db_error("reading the log", &e))?;
    for (row, expected) in rows.iter().zip(after + 1..) {
        let checked = check_row(row)?;
        if checked.position != expected {
            // Snapshots hold prefixes of the log: a hole is a lost row.
            return Err(corrupt(
                Some(expected),
                format!("the row for position {expected} is missing"),
            ));
        }
        visit(checked)?;
    }
    Ok(())
}

/// Events of one stream from `from_version`, at most `max`.
pub(super) async fn read_stream(
    client: &deadpool_postgres::Object,
    stream: &StreamId,
    from_version: u64,
    max: usize,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let Ok(from) = i64::try_from(from_version.max(1)) else {
        return Ok(Vec::new());
    };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE shop_id = $1 AND stream = $2 AND version >= $3 \
         ORDER BY version LIMIT $4"
    );
    let statement = client
        .prepare_cached(&sql)
        .await
        .map_err(|e| db_error("preparing a read", &e))?;
    let rows = client
        .query(
            &statement,
            &[&stream.shop.0, &&*stream.name, &from, &limit(max)],
        )
        .await
        .map_err(|e| db_error("reading a stream", &e))?;
    rows.iter().map(decode_event).collect()
}

/// Number of events in a stream.
pub(super) async fn stream_version(
    client: &deadpool_postgres::Object,
    stream: &StreamId,
) -> Result<u64, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT coalesce(max(version), 0)::int8 FROM events WHERE shop_id = $1 AND stream = $2",
        )
        .await
        .map_err(|e| db_error("preparing a read", &e))?;
    let row = client
        .query_one(&statement, &[&stream.shop.0, &&*stream.name])
        .await
        .map_err(|e| db_error("reading a stream version", &e))?;
    let version: i64 = get(&row, 0, None)?;
    u64::try_from(version)
        .map_err(|_| corrupt(None, format!("stream {stream} at version {version}")))
}

/// The position of each id (committed events only), `None` where absent.
pub(super) async fn event_positions(
    client: &deadpool_postgres::Object,
    ids: &[Uuid],
) -> Result<Vec<Option<Position>>, StoreError> {
    let statement = client
        .prepare_cached("SELECT event_id, position FROM events WHERE event_id = ANY($1::uuid[])")
        .await
        .map_err(|e| db_error("preparing a read", &e))?;
    let rows = client
        .query(&statement, &[&ids])
        .await
        .map_err(|e| db_error("looking up event ids", &e))?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: Uuid = get(row, 0, None)?;
        let position: i64 = get(row, 1, None)?;
        let position = Position::try_from(position)
            .map_err(|_| corrupt(None, format!("event {id} at position {position}")))?;
        found.insert(id, position);
    }
    Ok(ids.iter().map(|id| found.get(id).copied()).collect())
}

fn limit(max: usize) -> i64 {
    i64::try_from(max).unwrap_or(i64::MAX)
}

/// A column of a row, or a corruption error naming it when it has the
/// wrong type or is null.
pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    position: Option<Position>,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| {
        let column = row.columns().get(index).map_or("?", |c| c.name());
        corrupt(position, format!("column {column}: {e}"))
    })
}
