//! Reading segment files: walking their records with every check the format
//! allows, telling a torn tail (a crash mid-write) from corruption, and the
//! sidecar index written when a segment is sealed.
//!
//! Torn tail rule: in the last segment, a record that runs past the end of
//! the file or fails its checksum is a torn tail only if no valid record
//! follows it anywhere in the file (a crash interrupts the final write and
//! nothing after it). Everything else that fails a check is corruption,
//! reported with the segment, the offset and the position expected there.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::format::{
    self, BODY_PREFIX_LEN, Envelope, FRAME_HEADER_LEN, Frame, HASH_LEN, Hash, SEGMENT_HEADER_LEN,
    SegmentHeader,
};
use crate::event::{Position, ShopId, StreamId};
use crate::store::StoreError;

/// A segment read whole into memory.
#[derive(Debug)]
pub struct SegmentData {
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub bytes: Vec<u8>,
}

impl SegmentData {
    /// Reads a segment file and checks its header.
    pub fn read(path: &Path) -> Result<SegmentData, StoreError> {
        SegmentData::read_into(path, Vec::new())
    }

    /// [`read`](SegmentData::read) into `bytes`, whose contents are
    /// dropped and whose memory is reused: a walk over many segments that
    /// reads each into fresh memory spends as much time in the kernel,
    /// mapping and zeroing the pages, as reading them.
    pub fn read_into(path: &Path, mut bytes: Vec<u8>) -> Result<SegmentData, StoreError> {
        bytes.clear();
        File::open(path)
            .and_then(|mut f| {
                // A buffer too small is replaced, not grown: growing would
                // copy its old (cleared) capacity. A little room is left,
                // as sealed segments differ a little in length.
                let len = f.metadata()?.len() as usize;
                if bytes.capacity() < len {
                    bytes = Vec::with_capacity(len + len / 16);
                }
                f.read_to_end(&mut bytes)
            })
            .map_err(|e| StoreError::io(format!("reading segment {}", path.display()), e))?;
        let header = SegmentHeader::decode(&bytes).map_err(|reason| StoreError::Corrupt {
            segment: path.to_owned(),
            offset: 0,
            position: None,
            reason,
        })?;
        Ok(SegmentData {
            path: path.to_owned(),
            header,
            bytes,
        })
    }

    fn corrupt(&self, offset: usize, position: Position, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            segment: self.path.clone(),
            offset: offset as u64,
            position: Some(position),
            reason: reason.into(),
        }
    }
}

/// One record met while scanning. Its envelope is decoded on demand, so a
/// scan that only checks checksums and the chain decodes nothing.
#[derive(Debug)]
pub struct ScannedRecord<'a> {
    pub segment: &'a Path,
    /// Offset of the record's frame in the segment.
    pub offset: usize,
    /// Offset just past the record.
    pub end: usize,
    pub position: Position,
    pub prev_hash: Hash,
    /// The raw body (what the hash covers).
    pub raw: &'a [u8],
}

impl<'a> ScannedRecord<'a> {
    /// Decodes the record's envelope.
    pub fn envelope(&self) -> Result<Envelope<'a>, StoreError> {
        format::decode_envelope(self.raw).map_err(|reason| self.corrupt(reason))
    }

    /// A corruption error at this record.
    pub fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            segment: self.segment.to_owned(),
            offset: self.offset as u64,
            position: Some(self.position),
            reason: reason.into(),
        }
    }
}

/// How a scan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// Position the next record would have.
    pub next_position: Position,
    /// Hash of the last record (or the segment's prev_hash if empty).
    pub last_hash: Hash,
    /// Offset just past the last whole record.
    pub data_end: usize,
    /// Set when the segment ends in a torn record at `data_end`.
    pub torn: bool,
    pub records: usize,
}

/// What a scan checks beyond frame checksums.
#[derive(Debug, Clone, Copy)]
pub struct ScanChecks {
    /// The position the segment must start at.
    pub first_position: Position,
    /// Hash the segment's first record must link to.
    pub prev_hash: Hash,
    /// Hash every record and check every link (otherwise only the last
    /// record is hashed, to continue the chain).
    pub verify_chain: bool,
    /// Whether this is the log's last segment (where a torn tail may be).
    pub is_last: bool,
}

/// Walks every record of `seg`, calling `visit` for each.
pub fn scan<'a>(
    seg: &'a SegmentData,
    checks: ScanChecks,
    mut visit: impl FnMut(&ScannedRecord<'a>) -> Result<(), StoreError>,
) -> Result<ScanEnd, StoreError> {
    let header = seg.header;
    if header.first_position != checks.first_position {
        return Err(seg.corrupt(
            0,
            checks.first_position,
            format!(
                "segment starts at position {}, expected {}",
                header.first_position, checks.first_position
            ),
        ));
    }
    if header.prev_hash != checks.prev_hash {
        return Err(seg.corrupt(
            0,
            checks.first_position,
            "segment header does not link to the previous segment's last record",
        ));
    }
    let data = &seg.bytes[..];
    let mut offset = SEGMENT_HEADER_LEN;
    let mut position = checks.first_position;
    let mut prev_hash = checks.prev_hash;
    let mut last_raw: Option<&[u8]> = None;
    let mut records = 0;
    let torn = loop {
        match format::read_frame(data, offset) {
            Frame::End => break false,
            Frame::Record { body: raw, next } => {
                let (stored_prev, stored_position) = format::decode_prefix(raw);
                if stored_position != position {
                    return Err(seg.corrupt(
                        offset,
                        position,
                        format!("record holds position {stored_position}, expected {position}"),
                    ));
                }
                if checks.verify_chain {
                    if stored_prev != prev_hash {
                        return Err(seg.corrupt(
                            offset,
                            position,
                            "hash chain broken: record does not link to the record before it",
                        ));
                    }
                    prev_hash = format::hash_body(raw);
                }
                let record = ScannedRecord {
                    segment: &seg.path,
                    offset,
                    end: next,
                    position,
                    prev_hash: stored_prev,
                    raw,
                };
                visit(&record)?;
                last_raw = Some(raw);
                records += 1;
                position += 1;
                offset = next;
            }
            Frame::Incomplete | Frame::Bad { .. }
                if checks.is_last && !valid_record_after(data, offset, position) =>
            {
                break true;
            }
            Frame::Incomplete => {
                return Err(seg.corrupt(
                    offset,
                    position,
                    "record runs past the end of the segment",
                ));
            }
            Frame::Bad { reason } => return Err(seg.corrupt(offset, position, reason)),
        }
    };
    let last_hash = match (checks.verify_chain, last_raw) {
        (true, _) => prev_hash,
        (false, Some(raw)) => format::hash_body(raw),
        (false, None) => checks.prev_hash,
    };
    Ok(ScanEnd {
        next_position: position,
        last_hash,
        data_end: offset,
        torn,
        records,
    })
}

/// Whether any whole, checksummed record with a position at or after
/// `position` starts after `offset`. Used to tell a torn tail (nothing
/// valid follows) from a damaged record in the middle of the data.
fn valid_record_after(data: &[u8], offset: usize, position: Position) -> bool {
    let mut at = offset + 1;
    while at + FRAME_HEADER_LEN + BODY_PREFIX_LEN <= data.len() {
        if data[at] == 0 && data[at..].iter().take(64).all(|&b| b == 0) {
            // Skip runs of zeros quickly: no frame starts with a zero length.
            at += data[at..]
                .iter()
                .position(|&b| b != 0)
                .unwrap_or(data.len() - at);
            continue;
        }
        if let Frame::Record { body, .. } = format::read_frame(data, at)
            && format::body_position(body).is_some_and(|p| p >= position)
        {
            return true;
        }
        at += 1;
    }
    false
}

/// The sidecar index of a sealed segment: enough to serve reads and check
/// idempotency without reading the segment's records on open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentIndex {
    pub first_position: Position,
    /// Offset just past the last record.
    pub data_end: u64,
    pub last_hash: Hash,
    pub last_recorded_at: i64,
    /// Streams appearing in the segment.
    pub streams: Vec<StreamId>,
    /// Per record, in position order.
    pub records: Vec<IndexedRecord>,
}

/// One record in a [`SegmentIndex`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexedRecord {
    /// Offset just past the record.
    pub end: u32,
    /// Index into [`SegmentIndex::streams`].
    pub stream: u32,
    pub event_id: Uuid,
}

const INDEX_MAGIC: [u8; 8] = *b"KEDAIIDX";
const INDEX_VERSION: u16 = 1;

impl SegmentIndex {
    /// Builds the index of a whole segment by scanning it.
    pub fn build(
        seg: &SegmentData,
        checks: ScanChecks,
    ) -> Result<(SegmentIndex, ScanEnd), StoreError> {
        Self::build_with(seg, checks, |_| Ok(()))
    }

    /// Builds the index, also calling `visit` for every record.
    pub fn build_with<'a>(
        seg: &'a SegmentData,
        checks: ScanChecks,
        mut visit: impl FnMut(&ScannedRecord<'a>) -> Result<(), StoreError>,
    ) -> Result<(SegmentIndex, ScanEnd), StoreError> {
        let mut streams: Vec<StreamId> = Vec::new();
        let mut local: HashMap<(Uuid, &str), u32> = HashMap::new();
        let mut records = Vec::new();
        let mut last_recorded_at = 0;
        let end = scan(seg, checks, |r| {
            let env = r.envelope()?;
            let key = (env.shop, env.stream);
            let stream = *local.entry(key).or_insert_with(|| {
                streams.push(StreamId::new(ShopId(env.shop), env.stream));
                (streams.len() - 1) as u32
            });
            records.push(IndexedRecord {
                end: r.end as u32,
                stream,
                event_id: env.event_id,
            });
            last_recorded_at = env.recorded_at;
            visit(r)
        })?;
        let index = SegmentIndex {
            first_position: seg.header.first_position,
            data_end: end.data_end as u64,
            last_hash: end.last_hash,
            last_recorded_at,
            streams,
            records,
        };
        Ok((index, end))
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.records.len() * 24);
        b.extend_from_slice(&INDEX_MAGIC);
        b.extend_from_slice(&INDEX_VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&self.first_position.to_le_bytes());
        b.extend_from_slice(&self.data_end.to_le_bytes());
        b.extend_from_slice(&self.last_hash);
        b.extend_from_slice(&self.last_recorded_at.to_le_bytes());
        b.extend_from_slice(&(self.streams.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.records.len() as u32).to_le_bytes());
        for s in &self.streams {
            b.extend_from_slice(s.shop.0.as_bytes());
            b.extend_from_slice(&(s.name.len() as u16).to_le_bytes());
            b.extend_from_slice(s.name.as_bytes());
        }
        for r in &self.records {
            b.extend_from_slice(&r.end.to_le_bytes());
            b.extend_from_slice(&r.stream.to_le_bytes());
            b.extend_from_slice(r.event_id.as_bytes());
        }
        let crc = crc_fast::crc32_iscsi(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes an index file; `None` if it is damaged or not an index (the
    /// caller then scans the segment instead).
    pub fn decode(b: &[u8]) -> Option<SegmentIndex> {
        let mut streams = Vec::new();
        let mut records = Vec::new();
        let head = walk_index(b, |item| match item {
            IndexItem::Counts {
                streams: s,
                records: r,
            } => {
                streams.reserve(s.min(1 << 20));
                records.reserve(r.min(1 << 24));
            }
            IndexItem::Stream(shop, name) => streams.push(StreamId::new(ShopId(shop), name)),
            IndexItem::Record(record) => records.push(record),
        })?;
        Some(SegmentIndex {
            first_position: head.first_position,
            data_end: head.data_end,
            last_hash: head.last_hash,
            last_recorded_at: head.last_recorded_at,
            streams,
            records,
        })
    }

    /// Reads the index of the segment at `first_position` in `dir`, if a
    /// sound one exists, keeping only where each record ends and where
    /// the data ends: what a reader of the log in order needs. It checks
    /// the file as [`SegmentIndex::load`] does, but builds no stream ids
    /// (a segment of orders holds tens of thousands of streams).
    pub fn load_ends(dir: &Path, first_position: Position) -> Option<IndexEnds> {
        let bytes = fs::read(dir.join(format::index_file_name(first_position))).ok()?;
        let mut ends = Vec::new();
        let head = walk_index(&bytes, |item| match item {
            IndexItem::Counts { records, .. } => ends.reserve(records.min(1 << 24)),
            IndexItem::Stream(..) => {}
            IndexItem::Record(record) => ends.push(record.end),
        })?;
        (head.first_position == first_position).then_some(IndexEnds {
            data_end: head.data_end,
            ends,
        })
    }

    /// Reads the index of the segment at `first_position` in `dir`, if a
    /// sound one exists.
    pub fn load(dir: &Path, first_position: Position) -> Option<SegmentIndex> {
        let bytes = fs::read(dir.join(format::index_file_name(first_position))).ok()?;
        SegmentIndex::decode(&bytes).filter(|i| i.first_position == first_position)
    }

    /// Writes the index next to its segment, atomically (temp file, fsync,
    /// rename, fsync of the directory).
    pub fn store(&self, dir: &Path) -> std::io::Result<()> {
        let name = format::index_file_name(self.first_position);
        let tmp = dir.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp)?;
        f.write_all(&self.encode())?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))?;
        sync_dir(dir)
    }
}

/// Where each record of a sealed segment ends, from its sidecar index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEnds {
    /// Offset just past the last record.
    pub data_end: u64,
    /// Per record, in position order, the offset just past it.
    pub ends: Vec<u32>,
}

/// What an index file says before its streams and records.
struct IndexHead {
    first_position: Position,
    data_end: u64,
    last_hash: Hash,
    last_recorded_at: i64,
}

/// What an index file holds after its head, in order, as
/// [`walk_index`] hands it out.
enum IndexItem<'a> {
    Counts { streams: usize, records: usize },
    Stream(Uuid, &'a str),
    Record(IndexedRecord),
}

/// Checks an index file (checksum, magic, version, every stream and
/// record well formed, nothing after them) and hands the counts, then
/// each stream and record, to `visit`; `None` if it is damaged or not an
/// index (the caller then scans the segment instead).
fn walk_index<'a>(b: &'a [u8], mut visit: impl FnMut(IndexItem<'a>)) -> Option<IndexHead> {
    let (body, crc) = b.split_at_checked(b.len().checked_sub(4)?)?;
    if crc_fast::crc32_iscsi(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut r = Reader { b: body, at: 0 };
    if r.take(8)? != INDEX_MAGIC || r.u16()? != INDEX_VERSION {
        return None;
    }
    r.u16()?;
    let head = IndexHead {
        first_position: r.u64()?,
        data_end: r.u64()?,
        last_hash: r.take(HASH_LEN)?.try_into().ok()?,
        last_recorded_at: r.u64()? as i64,
    };
    let stream_count = r.u32()?;
    let record_count = r.u32()?;
    visit(IndexItem::Counts {
        streams: stream_count as usize,
        records: record_count as usize,
    });
    for _ in 0..stream_count {
        let shop = Uuid::from_slice(r.take(16)?).ok()?;
        let len = r.u16()? as usize;
        visit(IndexItem::Stream(
            shop,
            std::str::from_utf8(r.take(len)?).ok()?,
        ));
    }
    for _ in 0..record_count {
        let end = r.u32()?;
        let stream = r.u32()?;
        if stream >= stream_count {
            return None;
        }
        let event_id = Uuid::from_slice(r.take(16)?).ok()?;
        visit(IndexItem::Record(IndexedRecord {
            end,
            stream,
            event_id,
        }));
    }
    (r.at == body.len()).then_some(head)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.b.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
}

/// Makes a directory's entries (new or renamed files) durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segments of a log directory, sorted by first position.
pub fn list_segments(dir: &Path) -> Result<Vec<(Position, PathBuf)>, StoreError> {
    let entries =
        fs::read_dir(dir).map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        if let Some(first) = name.to_str().and_then(format::parse_segment_file_name) {
            segments.push((first, entry.path()));
        }
    }
    segments.sort();
    Ok(segments)
}

/// Checks every record's checksum and position against a sealed segment's
/// index, without decoding envelopes.
pub fn verify_against_index(seg: &SegmentData, index: &SegmentIndex) -> Result<(), StoreError> {
    let mut start = SEGMENT_HEADER_LEN;
    for (i, r) in index.records.iter().enumerate() {
        let position = index.first_position + i as u64;
        match format::read_frame(&seg.bytes, start) {
            Frame::Record { body, next } if next == r.end as usize => {
                if format::body_position(body) != Some(position) {
                    return Err(seg.corrupt(start, position, "record holds the wrong position"));
                }
            }
            Frame::Record { .. } => {
                return Err(seg.corrupt(start, position, "record length disagrees with the index"));
            }
            Frame::Bad { reason } => return Err(seg.corrupt(start, position, reason)),
            Frame::Incomplete | Frame::End => {
                return Err(seg.corrupt(start, position, "segment is shorter than its index says"));
            }
        }
        start = r.end as usize;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> SegmentIndex {
        let shop = ShopId(Uuid::from_u128(5));
        SegmentIndex {
            first_position: 41,
            data_end: 900,
            last_hash: [7; HASH_LEN],
            last_recorded_at: 1_759_276_800_000_000,
            streams: vec![
                StreamId::new(shop, "order-1"),
                StreamId::new(shop, "stock-KAOS-M"),
            ],
            records: (0..5u32)
                .map(|i| IndexedRecord {
                    end: 100 + 150 * i,
                    stream: i % 2,
                    event_id: Uuid::from_u128(u128::from(i) + 1),
                })
                .collect(),
        }
    }

    #[test]
    fn a_segment_read_into_the_memory_of_a_longer_one_holds_only_its_own_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = |first: Position, fill: u8, len: usize| {
            let header = SegmentHeader {
                first_position: first,
                prev_hash: [fill; HASH_LEN],
            };
            let mut bytes = header.encode().to_vec();
            bytes.resize(SEGMENT_HEADER_LEN + len, fill);
            let path = dir.path().join(format::segment_file_name(first));
            std::fs::write(&path, &bytes).unwrap();
            (path, bytes)
        };
        let (long, long_bytes) = file(1, 0xaa, 10_000);
        let (short, short_bytes) = file(500, 0xbb, 10);
        let first = SegmentData::read_into(&long, Vec::new()).unwrap();
        assert_eq!(first.bytes, long_bytes);
        let second = SegmentData::read_into(&short, first.bytes).unwrap();
        assert_eq!(second.bytes, short_bytes);
        assert_eq!(second.header.first_position, 500);
        assert_eq!(second.header.prev_hash, [0xbb; HASH_LEN]);
        assert_eq!(second.path, short);
        // A file that is not a segment is refused, whatever the buffer held.
        std::fs::write(&short, b"not a segment").unwrap();
        assert!(SegmentData::read_into(&short, second.bytes).is_err());
    }

    #[test]
    fn an_index_read_for_its_ends_agrees_with_the_whole_index_and_rejects_what_it_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let index = index();
        let name = dir.path().join(format::index_file_name(41));
        let bytes = index.encode();
        fs::write(&name, &bytes).unwrap();
        assert_eq!(SegmentIndex::load(dir.path(), 41), Some(index.clone()));
        let ends = SegmentIndex::load_ends(dir.path(), 41).expect("a sound index");
        assert_eq!(ends.data_end, 900);
        assert_eq!(
            ends.ends,
            index.records.iter().map(|r| r.end).collect::<Vec<_>>()
        );
        // Another segment's index is not this one's.
        fs::write(dir.path().join(format::index_file_name(42)), &bytes).unwrap();
        assert_eq!(SegmentIndex::load_ends(dir.path(), 42), None);
        // A changed byte anywhere, or a cut, and neither reading takes it.
        for at in [0, 20, bytes.len() / 2, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            fs::write(&name, &damaged).unwrap();
            assert_eq!(SegmentIndex::load(dir.path(), 41), None, "byte {at}");
            assert_eq!(SegmentIndex::load_ends(dir.path(), 41), None, "byte {at}");
        }
        fs::write(&name, &bytes[..bytes.len() - 30]).unwrap();
        assert_eq!(SegmentIndex::load_ends(dir.path(), 41), None);
        // A record naming a stream the index does not hold, with a
        // checksum that holds, is rejected too.
        let mut wrong = index;
        wrong.records[3].stream = 2;
        fs::write(&name, wrong.encode()).unwrap();
        assert_eq!(SegmentIndex::load(dir.path(), 41), None);
        assert_eq!(SegmentIndex::load_ends(dir.path(), 41), None);
    }
}
