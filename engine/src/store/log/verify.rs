//! Full verification of a log directory, read-only: every record's
//! checksum, every position, and the hash chain from the first record to
//! the last. This is what `kedai-replay verify` runs; it trusts nothing the
//! writer keeps beside the records (sidecar indexes are not read).

use std::fs;
use std::path::Path;

use super::format::{self, GENESIS_HASH, Hash, SEGMENT_HEADER_LEN};
use super::segment::{self, ScanChecks, SegmentData};
use crate::event::Position;
use crate::store::StoreError;

/// What a verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub segments: usize,
    pub events: u64,
    /// Bytes of record data checked.
    pub bytes: u64,
    pub last_position: Position,
    /// Hash of the last record: keep it to check later that history was
    /// not rewritten (`find_hash`).
    pub last_hash: Hash,
    /// Bytes after the last whole record of the last segment that belong to
    /// an unfinished write (a crash, or a writer still writing). They were
    /// never acknowledged and are not history.
    pub unfinished_tail_bytes: u64,
    /// Where the hash asked for was found: the position of the record with
    /// that hash (0 for the genesis hash).
    pub found_hash_at: Option<Position>,
}

/// Progress of a verification, reported after each segment.
#[derive(Debug, Clone, Copy)]
pub struct VerifyProgress {
    pub bytes_done: u64,
    pub bytes_total: u64,
    pub events: u64,
}

/// Verifies the log in `dir`. `find_hash`, if given, is looked for among the
/// records' hashes. Errors name the first bad segment, offset and position.
pub fn verify(
    dir: &Path,
    find_hash: Option<Hash>,
    mut progress: impl FnMut(VerifyProgress),
) -> Result<VerifyReport, StoreError> {
    let files = segment::list_segments(dir)?;
    let bytes_total: u64 = files
        .iter()
        .map(|(_, p)| fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let mut report = VerifyReport {
        segments: 0,
        events: 0,
        bytes: 0,
        last_position: 0,
        last_hash: GENESIS_HASH,
        unfinished_tail_bytes: 0,
        found_hash_at: (find_hash == Some(GENESIS_HASH)).then_some(0),
    };
    let count = files.len();
    let mut bytes_done = 0;
    for (i, (first, path)) in files.into_iter().enumerate() {
        let is_last = i + 1 == count;
        let len = fs::metadata(&path)
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?
            .len();
        if is_last && len < SEGMENT_HEADER_LEN as u64 && i > 0 {
            // A segment whose creation was interrupted: no records.
            report.unfinished_tail_bytes += len;
            break;
        }
        let expected = report.last_position + 1;
        if first != expected {
            return Err(StoreError::Corrupt {
                segment: path,
                offset: 0,
                position: Some(expected),
                reason: format!(
                    "segment file starts at position {first}, expected {expected}: a segment is missing or misnamed"
                ),
            });
        }
        let data = SegmentData::read(&path)?;
        let checks = ScanChecks {
            first_position: expected,
            prev_hash: report.last_hash,
            verify_chain: true,
            is_last,
        };
        let end = segment::scan(&data, checks, |r| {
            if find_hash == Some(r.prev_hash) && report.found_hash_at.is_none() {
                report.found_hash_at = Some(r.position - 1);
            }
            Ok(())
        })?;
        report.segments += 1;
        report.events += end.records as u64;
        report.bytes += end.data_end as u64;
        report.last_position = end.next_position - 1;
        report.last_hash = end.last_hash;
        if end.torn {
            report.unfinished_tail_bytes += data.bytes.len() as u64 - end.data_end as u64;
        }
        bytes_done += len;
        progress(VerifyProgress {
            bytes_done,
            bytes_total,
            events: report.events,
        });
    }
    if find_hash.is_some() && find_hash == Some(report.last_hash) && report.found_hash_at.is_none()
    {
        report.found_hash_at = Some(report.last_position);
    }
    Ok(report)
}

/// Parses a hash written as 64 hexadecimal digits.
pub fn parse_hash(text: &str) -> Option<Hash> {
    let bytes = hex::decode(text.trim()).ok()?;
    bytes.try_into().ok()
}

/// A hash as 64 hexadecimal digits.
pub fn hash_to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// The hash of the record at `position`, or why it cannot be had.
pub fn hash_at(dir: &Path, position: Position) -> Result<Hash, StoreError> {
    if position == 0 {
        return Ok(GENESIS_HASH);
    }
    let files = segment::list_segments(dir)?;
    let i = files.partition_point(|(first, _)| *first <= position);
    let Some((first, path)) = i.checked_sub(1).map(|i| &files[i]) else {
        return Err(StoreError::InvalidRequest(format!(
            "no record at position {position}"
        )));
    };
    let data = SegmentData::read(path)?;
    let mut offset = SEGMENT_HEADER_LEN;
    let mut at = *first;
    loop {
        match format::read_frame(&data.bytes, offset) {
            format::Frame::Record { body, .. } if at == position => {
                return Ok(format::hash_body(body));
            }
            format::Frame::Record { next, .. } => {
                offset = next;
                at += 1;
            }
            _ => {
                return Err(StoreError::InvalidRequest(format!(
                    "no record at position {position}"
                )));
            }
        }
    }
}
