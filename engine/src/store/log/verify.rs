//! Full verification of a log directory, read-only: every record's
//! checksum, every position, and the hash chain from the first record to
//! the last. This is what `kedai-replay verify` runs; it trusts nothing the
//! writer keeps beside the records (sidecar indexes are not read).
//!
//! One thread reads the segment files in order (one sequential read, as
//! the disk serves best) and the segments are checked in parallel, on all
//! cores: each segment's records
//! are checked against the segment's own header (its first position and
//! the hash it links to), then, in segment order, each header is checked to
//! follow the segment before it (the next position, the previous segment's
//! last hash). Together that is the whole chain. The error reported is the
//! one at the earliest position, as a walk from the first record would
//! find it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

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

/// Verifies the log in `dir` on all cores. `find_hash`, if given, is looked
/// for among the records' hashes. Errors name the first bad segment, offset
/// and position.
pub fn verify(
    dir: &Path,
    find_hash: Option<Hash>,
    progress: impl FnMut(VerifyProgress),
) -> Result<VerifyReport, StoreError> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    verify_with_threads(dir, find_hash, threads, progress)
}

/// What checking one segment on its own found.
#[derive(Debug)]
struct SegmentCheck {
    /// The hash the segment's header links to.
    prev_hash: Hash,
    records: u64,
    /// Offset just past the last whole record.
    data_end: u64,
    last_hash: Hash,
    /// Bytes of an unfinished write after the last whole record.
    torn_bytes: u64,
    /// Position of the record whose hash is the one looked for.
    found_hash_at: Option<Position>,
}

/// A segment file as listed, before it is read.
#[derive(Debug)]
struct Listed {
    first: Position,
    path: PathBuf,
    len: u64,
    is_last: bool,
}

/// [`verify`] with `threads` threads (at least one) checking segments.
/// `progress` is called on the calling thread, after each segment, in
/// segment order.
pub fn verify_with_threads(
    dir: &Path,
    find_hash: Option<Hash>,
    threads: usize,
    mut progress: impl FnMut(VerifyProgress),
) -> Result<VerifyReport, StoreError> {
    let files = segment::list_segments(dir)?;
    let count = files.len();
    let mut listed = Vec::with_capacity(count);
    for (i, (first, path)) in files.into_iter().enumerate() {
        let len = fs::metadata(&path)
            .map_err(|e| StoreError::io(format!("reading {}", path.display()), e))?
            .len();
        listed.push(Listed {
            first,
            path,
            len,
            is_last: i + 1 == count,
        });
    }
    let bytes_total: u64 = listed.iter().map(|l| l.len).sum();
    let mut report = VerifyReport {
        segments: 0,
        events: 0,
        bytes: 0,
        last_position: 0,
        last_hash: GENESIS_HASH,
        unfinished_tail_bytes: 0,
        found_hash_at: (find_hash == Some(GENESIS_HASH)).then_some(0),
    };
    // A last segment whose creation was interrupted holds no records.
    let unfinished = listed
        .last()
        .is_some_and(|l| count > 1 && l.len < SEGMENT_HEADER_LEN as u64);
    if unfinished {
        let l = listed.pop().expect("a last segment");
        report.unfinished_tail_bytes += l.len;
    }
    let listed = &listed;
    // One thread reads the segments in order, as one sequential read of
    // the files (the disk's best case); the workers check them. Once a
    // segment has failed, those after it need not be read or checked (the
    // earliest failure is the answer).
    let first_bad = AtomicUsize::new(usize::MAX);
    let (tx, rx) = mpsc::channel::<(usize, Result<SegmentCheck, StoreError>)>();
    let (to_check, reads) = mpsc::sync_channel::<(usize, Result<SegmentData, StoreError>)>(1);
    let reads = Mutex::new(reads);
    // Buffers checked, for the reader to read the next segments into (a
    // fresh buffer costs the kernel's zeroing of new memory).
    let (give_back, returned) = mpsc::channel::<Vec<u8>>();
    let workers = threads.max(1).min(listed.len());
    std::thread::scope(|scope| {
        let first_bad = &first_bad;
        scope.spawn(move || {
            for (i, l) in listed.iter().enumerate() {
                if i > first_bad.load(Ordering::Relaxed) {
                    return;
                }
                // The next segment, read ahead while this one is read.
                if let Some(ahead) = listed.get(i + 1) {
                    read_ahead(&ahead.path);
                }
                let buffer = returned.try_recv().unwrap_or_default();
                if to_check.send((i, read_segment(l, buffer))).is_err() {
                    return;
                }
            }
        });
        for _ in 0..workers {
            let (tx, give_back, reads) = (tx.clone(), give_back.clone(), &reads);
            scope.spawn(move || {
                // Every read is taken, even once there is no need to
                // check it, so that the reader never waits in vain.
                loop {
                    let next = reads.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok((i, read)) = next else {
                        return;
                    };
                    if i > first_bad.load(Ordering::Relaxed) {
                        continue;
                    }
                    let checked = read.and_then(|data| {
                        let (checked, buffer) = check_segment(&listed[i], find_hash, data);
                        let _ = give_back.send(buffer);
                        checked
                    });
                    if checked.is_err() {
                        first_bad.fetch_min(i, Ordering::Relaxed);
                    }
                    // The caller stops listening after a failure.
                    let _ = tx.send((i, checked));
                }
            });
        }
        drop(tx);
        // Link the segments in order as their checks come in.
        let mut done: Vec<Option<Result<SegmentCheck, StoreError>>> =
            (0..listed.len()).map(|_| None).collect();
        let mut linked = 0;
        let mut bytes_done = 0;
        for (i, checked) in rx.iter() {
            done[i] = Some(checked);
            while let Some(checked) = done.get_mut(linked).and_then(Option::take) {
                let l = &listed[linked];
                if let Err(e) = link(&mut report, l, checked) {
                    // Stop the workers, and drop what they still send.
                    first_bad.fetch_min(linked, Ordering::Relaxed);
                    return Err(e);
                }
                bytes_done += l.len;
                progress(VerifyProgress {
                    bytes_done,
                    bytes_total,
                    events: report.events,
                });
                linked += 1;
            }
        }
        if linked < listed.len() {
            return Err(StoreError::Unavailable(
                "verification stopped before every segment was checked".into(),
            ));
        }
        Ok(())
    })?;
    if find_hash.is_some() && find_hash == Some(report.last_hash) && report.found_hash_at.is_none()
    {
        report.found_hash_at = Some(report.last_position);
    }
    Ok(report)
}

/// Asks the kernel to start reading `path` into its cache without waiting
/// for it, so that the disk reads the next segment while this one is
/// copied out of the cache. Only a hint: nothing fails if it is not taken.
fn read_ahead(path: &Path) {
    if let Ok(file) = fs::File::open(path) {
        let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::WillNeed);
    }
}

/// Reads a segment into `buffer`'s memory.
fn read_segment(l: &Listed, buffer: Vec<u8>) -> Result<SegmentData, StoreError> {
    SegmentData::read_into(&l.path, buffer).map_err(|e| match e {
        StoreError::Corrupt {
            segment,
            offset,
            position: None,
            reason,
        } => StoreError::Corrupt {
            segment,
            offset,
            position: Some(l.first),
            reason,
        },
        other => other,
    })
}

/// Checks one segment against its own header: checksums, positions from
/// the header's first position on, and the chain from the header's
/// prev_hash on. Gives back the segment's memory.
fn check_segment(
    l: &Listed,
    find_hash: Option<Hash>,
    data: SegmentData,
) -> (Result<SegmentCheck, StoreError>, Vec<u8>) {
    let checks = ScanChecks {
        first_position: l.first,
        prev_hash: data.header.prev_hash,
        verify_chain: true,
        is_last: l.is_last,
    };
    let mut found_hash_at = None;
    let scanned = segment::scan(&data, checks, |r| {
        if find_hash == Some(r.prev_hash) && found_hash_at.is_none() {
            found_hash_at = Some(r.position - 1);
        }
        Ok(())
    });
    let end = match scanned {
        Ok(end) => end,
        Err(e) => return (Err(e), data.bytes),
    };
    let torn_bytes = if end.torn {
        // The unfinished write runs to the last non-zero byte; what
        // follows is preallocated space.
        let garbage_end = data
            .bytes
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1)
            .max(end.data_end);
        (garbage_end - end.data_end) as u64
    } else {
        0
    };
    let checked = SegmentCheck {
        prev_hash: data.header.prev_hash,
        records: end.records as u64,
        data_end: end.data_end as u64,
        last_hash: end.last_hash,
        torn_bytes,
        found_hash_at,
    };
    (Ok(checked), data.bytes)
}

/// Checks that a segment follows the ones before it (its first position,
/// the hash its header links to) and adds it to the report.
fn link(
    report: &mut VerifyReport,
    l: &Listed,
    checked: Result<SegmentCheck, StoreError>,
) -> Result<(), StoreError> {
    let expected = report.last_position + 1;
    if l.first != expected {
        return Err(StoreError::Corrupt {
            segment: l.path.clone(),
            offset: 0,
            position: Some(expected),
            reason: format!(
                "segment file starts at position {}, expected {expected}: a segment is missing or misnamed",
                l.first
            ),
        });
    }
    let checked = checked?;
    if checked.prev_hash != report.last_hash {
        return Err(StoreError::Corrupt {
            segment: l.path.clone(),
            offset: 0,
            position: Some(expected),
            reason: "segment header does not link to the previous segment's last record".into(),
        });
    }
    if report.found_hash_at.is_none() {
        report.found_hash_at = checked.found_hash_at;
    }
    report.segments += 1;
    report.events += checked.records;
    report.bytes += checked.data_end;
    report.last_position = expected + checked.records - 1;
    report.last_hash = checked.last_hash;
    report.unfinished_tail_bytes += checked.torn_bytes;
    Ok(())
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
