//! Full verification of a PostgreSQL event log, read-only: the
//! counterpart of [`log::verify`](crate::store::log::verify) for the
//! `postgres` backend, with the same report.
//!
//! It walks every row of `events` in position order inside one read-only,
//! repeatable-read transaction (one consistent snapshot, while writers go
//! on) and checks, with the embedded log's own format code: each row's
//! checksum, that positions run 1, 2, 3... without a hole, that each
//! body's position is its row's, that the row's key columns agree with its
//! body, that `recorded_at` never goes back, and the hash chain from the
//! first record to the last. Finally the head row must name the last
//! row's position and hash: that catches rows cut off the end, which the
//! chain alone cannot.
//!
//! Report fields: `segments` is always 0 (there are no segment files),
//! `bytes` counts record bodies, `unfinished_tail_bytes` is always 0 (a
//! transaction is committed whole or not at all).

use tokio_postgres::IsolationLevel;

use super::rows::{self, EVENT_COLUMNS};
use super::{PgOptions, connect_client, corrupt, db_error, parse_url, read_only_config, schema};
use crate::event::Position;
use crate::store::StoreError;
use crate::store::log::format::{self, GENESIS_HASH, Hash};
use crate::store::log::verify::{VerifyProgress, VerifyReport};

/// Rows read per round trip.
const VERIFY_CHUNK_ROWS: i64 = 4_096;

/// Verifies the event log in the database at `url`. `find_hash`, if given,
/// is looked for among the records' hashes (as with the embedded log).
/// Errors name the first bad position.
pub async fn verify(
    url: &str,
    find_hash: Option<Hash>,
    mut progress: impl FnMut(VerifyProgress),
) -> Result<VerifyReport, StoreError> {
    let config = read_only_config(&parse_url(url, &PgOptions::default())?);
    let mut client = connect_client(&config).await?;
    schema::check(&client).await?;
    let err = |context: &'static str| move |e: tokio_postgres::Error| db_error(context, &e);
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(err("starting the verification snapshot"))?;
    let head_row = tx
        .query_one(
            "SELECT last_position, last_hash, last_recorded_at FROM log_head",
            &[],
        )
        .await
        .map_err(err("reading the log head"))?;
    let head = rows::decode_head(&head_row)?;
    let bytes_total: i64 = rows::get(
        &tx.query_one(
            "SELECT coalesce(sum(octet_length(body)), 0)::int8 FROM events",
            &[],
        )
        .await
        .map_err(err("measuring the log"))?,
        0,
        None,
    )?;
    let chunk = tx
        .prepare(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
        ))
        .await
        .map_err(err("preparing the verification"))?;
    let mut walk = Walk::new(find_hash);
    loop {
        let after = i64::try_from(walk.report.last_position).expect("positions fit in a bigint");
        let rows = tx
            .query(&chunk, &[&after, &VERIFY_CHUNK_ROWS])
            .await
            .map_err(err("reading events"))?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            walk.visit(row)?;
        }
        progress(VerifyProgress {
            bytes_done: walk.report.bytes,
            bytes_total: u64::try_from(bytes_total).unwrap_or(0),
            events: walk.report.events,
        });
    }
    tx.rollback().await.map_err(err("ending the snapshot"))?;
    walk.finish(&head)
}

/// The checks as the rows go by.
struct Walk {
    report: VerifyReport,
    find_hash: Option<Hash>,
    last_recorded_at: i64,
}

impl Walk {
    fn new(find_hash: Option<Hash>) -> Self {
        Walk {
            report: VerifyReport {
                segments: 0,
                events: 0,
                bytes: 0,
                last_position: 0,
                last_hash: GENESIS_HASH,
                unfinished_tail_bytes: 0,
                found_hash_at: (find_hash == Some(GENESIS_HASH)).then_some(0),
            },
            find_hash,
            last_recorded_at: i64::MIN,
        }
    }

    fn visit(&mut self, row: &tokio_postgres::Row) -> Result<(), StoreError> {
        let checked = rows::check_row(row)?;
        let expected: Position = self.report.last_position + 1;
        if checked.position != expected {
            return Err(corrupt(
                Some(expected),
                format!(
                    "the row for position {expected} is missing (the next row holds {})",
                    checked.position
                ),
            ));
        }
        let (prev_hash, _) = format::decode_prefix(checked.body);
        if prev_hash != self.report.last_hash {
            return Err(corrupt(
                Some(expected),
                "hash chain broken: record does not link to the record before it",
            ));
        }
        if checked.envelope.recorded_at < self.last_recorded_at {
            return Err(corrupt(Some(expected), "recorded_at goes backwards"));
        }
        if self.find_hash == Some(prev_hash) && self.report.found_hash_at.is_none() {
            self.report.found_hash_at = Some(expected - 1);
        }
        self.last_recorded_at = checked.envelope.recorded_at;
        self.report.last_hash = format::hash_body(checked.body);
        self.report.last_position = expected;
        self.report.events += 1;
        self.report.bytes += checked.body.len() as u64;
        Ok(())
    }

    /// The head row must agree with the last row.
    fn finish(mut self, head: &rows::Head) -> Result<VerifyReport, StoreError> {
        let report = &mut self.report;
        if head.last_position > report.last_position {
            return Err(corrupt(
                Some(report.last_position + 1),
                format!(
                    "the log head names position {}, but the rows end at {}: rows are missing from the end",
                    head.last_position, report.last_position
                ),
            ));
        }
        if head.last_position < report.last_position {
            return Err(corrupt(
                Some(head.last_position + 1),
                format!(
                    "the rows go on to position {}, past the log head's {}: rows were added without the head",
                    report.last_position, head.last_position
                ),
            ));
        }
        if head.last_hash != report.last_hash {
            return Err(corrupt(
                Some(report.last_position),
                "the log head's hash is not the last record's: the last record was changed",
            ));
        }
        if self.find_hash.is_some()
            && self.find_hash == Some(report.last_hash)
            && report.found_hash_at.is_none()
        {
            report.found_hash_at = Some(report.last_position);
        }
        Ok(self.report)
    }
}
