//! Records verbatim: reading a log's records exactly as stored, and
//! importing them into another backend, for moving a ledger between the
//! embedded log and PostgreSQL (`kedai-replay copy`).
//!
//! An append cannot do this: it would give the events new `recorded_at`
//! times and so new record bodies and a new hash chain. An import takes the
//! record bodies themselves (`prev_hash ++ position ++ envelope`, see
//! [`log::format`](super::log::format)) and stores them byte for byte, so
//! the destination's chain is the source's. Both backends store exactly
//! these bodies, so no record is re-encoded on the way.
//!
//! An import batch must continue the destination's log: the first record
//! at the next position and linked to the hash of the last record, each
//! next one linked to the one before, `recorded_at` never going back, every
//! stream's version one more than the stream's last, and no event id
//! recorded before. A batch that breaks any of these is refused whole
//! ([`StoreError::ImportRefused`]) and writes nothing. A batch is written
//! as one unit: one write and one fsync on the log, one transaction on
//! PostgreSQL. Imports serialise with appends like appends do (the log's
//! writer thread, PostgreSQL's head row), so an import into a log that
//! someone else is appending to is refused rather than interleaved.

use async_trait::async_trait;

use super::log::format::{self, BODY_LEN_MAX, BODY_PREFIX_LEN, Envelope, GENESIS_HASH, Hash};
use super::{AppendOutcome, EventStore, StoreError};
use crate::event::{Position, Role, ShopId, StreamId};

/// Most records one import batch may carry.
pub const IMPORT_RECORDS_MAX: usize = 16_384;
/// Most body bytes one import batch may carry (a single larger record
/// still goes through, alone).
pub const IMPORT_BYTES_MAX: usize = 16 << 20;

/// Where a log ends: what the next record must continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainEnd {
    /// 0 for an empty log.
    pub last_position: Position,
    /// Hash of the last record's body ([`GENESIS_HASH`] for an empty log).
    pub last_hash: Hash,
    /// `recorded_at` of the last event (microseconds since 1970 UTC);
    /// meaningless for an empty log.
    pub last_recorded_at: i64,
}

impl ChainEnd {
    /// The end of an empty log.
    pub const EMPTY: ChainEnd = ChainEnd {
        last_position: 0,
        last_hash: GENESIS_HASH,
        last_recorded_at: i64::MIN,
    };
}

/// Record-level access to a log, for copying it between backends.
#[async_trait]
pub trait Verbatim: EventStore {
    /// Record bodies with position `> after`, at most `max`, in position
    /// order, exactly as stored (each checked against its checksum and its
    /// position). May return fewer than `max` while more exist; an empty
    /// answer means none exist.
    async fn read_records(&self, after: Position, max: usize) -> Result<Vec<Vec<u8>>, StoreError>;

    /// The same records as [`read_records`](Verbatim::read_records), in
    /// one buffer: for readers that decode bodies in place (a rebuild)
    /// rather than keep them. `spare` is a page done with, whose memory is
    /// reused (a fresh buffer per page costs the kernel's zeroing of new
    /// memory). The log answers from the very buffer it read; other
    /// backends gather their bodies into one.
    async fn read_page(
        &self,
        after: Position,
        max: usize,
        spare: RecordPage,
    ) -> Result<RecordPage, StoreError> {
        let bodies = self.read_records(after, max).await?;
        let mut page = spare.reset(after + 1);
        for body in &bodies {
            page.push(body);
        }
        Ok(page)
    }

    /// Where the log ends (the durable, committed end).
    async fn chain_end(&self) -> Result<ChainEnd, StoreError>;

    /// Stores `bodies` verbatim after the last record, as one unit, once
    /// they are checked to continue the log (see the module docs). Returns
    /// the positions they took; only returns once they are durable.
    async fn import(&self, bodies: Vec<Vec<u8>>) -> Result<AppendOutcome, StoreError>;
}

/// Record bodies at consecutive positions, in one buffer (see
/// [`Verbatim::read_page`]).
#[derive(Debug, Default)]
pub struct RecordPage {
    /// Position of the first body.
    first: Position,
    data: Vec<u8>,
    /// Where each body lies in `data`.
    spans: Vec<(usize, usize)>,
}

impl RecordPage {
    /// An empty page whose first body will be at `first`.
    pub fn new(first: Position) -> RecordPage {
        RecordPage {
            first,
            ..RecordPage::default()
        }
    }

    /// This page emptied, to be filled from `first` (its memory kept).
    pub fn reset(mut self, first: Position) -> RecordPage {
        self.first = first;
        self.data.clear();
        self.spans.clear();
        self
    }

    /// This page emptied of records, to be filled from `first` by a read
    /// into its buffer ([`RecordPage::parts_mut`]): the buffer keeps its
    /// bytes, so the read need not zero what it overwrites.
    pub(crate) fn reuse(mut self, first: Position) -> RecordPage {
        self.first = first;
        self.spans.clear();
        self
    }

    /// The page's buffers, to fill directly. The buffer's bytes past the
    /// last span are not records (see [`RecordPage::reuse`]).
    pub(crate) fn parts_mut(&mut self) -> (&mut Vec<u8>, &mut Vec<(usize, usize)>) {
        (&mut self.data, &mut self.spans)
    }

    /// Adds the body at the next position.
    pub fn push(&mut self, body: &[u8]) {
        let start = self.spans.last().map_or(0, |&(_, end)| end);
        self.data.truncate(start);
        self.data.extend_from_slice(body);
        self.spans.push((start, self.data.len()));
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Position of the last body, if any.
    pub fn last_position(&self) -> Option<Position> {
        (!self.is_empty()).then(|| self.first + self.spans.len() as u64 - 1)
    }

    /// The body at `position`, if the page holds it.
    pub fn body(&self, position: Position) -> Option<&[u8]> {
        let i = usize::try_from(position.checked_sub(self.first)?).ok()?;
        let &(a, b) = self.spans.get(i)?;
        Some(&self.data[a..b])
    }

    /// Each body with its position, in order.
    pub fn bodies(&self) -> impl Iterator<Item = (Position, &[u8])> + '_ {
        self.spans
            .iter()
            .enumerate()
            .map(|(i, &(a, b))| (self.first + i as u64, &self.data[a..b]))
    }
}

/// One record of an import batch that passed [`check_batch`].
#[derive(Debug)]
pub(crate) struct ImportedRecord<'a> {
    pub position: Position,
    pub body: &'a [u8],
    pub envelope: Envelope<'a>,
    pub stream: StreamId,
}

/// Checks the shape of an import batch and that it continues the log that
/// ends at `end`: positions, hash links, `recorded_at`, and that every
/// body decodes into an event readers can read. Stream versions and event
/// ids need the backend's indexes: the backend checks them. Returns the
/// records and where the log ends after them.
pub(crate) fn check_batch(
    bodies: &[Vec<u8>],
    end: ChainEnd,
) -> Result<(Vec<ImportedRecord<'_>>, ChainEnd), StoreError> {
    let refuse = |why: String| Err(StoreError::ImportRefused(why));
    if bodies.is_empty() {
        return refuse("the batch holds no records".into());
    }
    if bodies.len() > IMPORT_RECORDS_MAX {
        return refuse(format!(
            "the batch holds {} records, more than {IMPORT_RECORDS_MAX}",
            bodies.len()
        ));
    }
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    if bodies.len() > 1 && bytes > IMPORT_BYTES_MAX {
        return refuse(format!(
            "the batch holds {bytes} bytes of records, more than {IMPORT_BYTES_MAX}"
        ));
    }
    let mut end = end;
    let mut records = Vec::with_capacity(bodies.len());
    for body in bodies {
        let expected = end.last_position + 1;
        let at = |why: String| StoreError::ImportRefused(format!("record {expected}: {why}"));
        if !(BODY_PREFIX_LEN..=BODY_LEN_MAX).contains(&body.len()) {
            return Err(at(format!("impossible body length {}", body.len())));
        }
        let (prev_hash, position) = format::decode_prefix(body);
        if position != expected {
            return Err(at(format!(
                "it holds position {position}, but the log ends at {}",
                end.last_position
            )));
        }
        if prev_hash != end.last_hash {
            return Err(at(
                "it does not link to the hash of the log's last record".into()
            ));
        }
        let envelope = format::decode_envelope(body).map_err(at)?;
        if Role::from_code(envelope.role).is_none() {
            return Err(at(format!("unknown role code {}", envelope.role)));
        }
        if envelope.version == 0 || envelope.event_id.is_nil() {
            return Err(at("version 0 or a nil event id".into()));
        }
        if end.last_position > 0 && envelope.recorded_at < end.last_recorded_at {
            return Err(at("its recorded_at is before the last record's".into()));
        }
        let stream = StreamId::new(ShopId(envelope.shop), envelope.stream);
        if let Some(why) = stream.problem() {
            return Err(at(why));
        }
        end = ChainEnd {
            last_position: position,
            last_hash: format::hash_body(body),
            last_recorded_at: envelope.recorded_at,
        };
        records.push(ImportedRecord {
            position,
            body,
            envelope,
            stream,
        });
    }
    Ok((records, end))
}

/// The refusal for a record whose version does not follow its stream's.
pub(crate) fn version_gap(record: &ImportedRecord<'_>, actual: u64) -> StoreError {
    StoreError::ImportRefused(format!(
        "record {}: it is version {} of stream {}, which is at version {actual}",
        record.position, record.envelope.version, record.stream
    ))
}

/// The refusal for a record whose event id is recorded already.
pub(crate) fn duplicate_id(record: &ImportedRecord<'_>, at: Position) -> StoreError {
    StoreError::ImportRefused(format!(
        "record {}: event id {} is already recorded, at position {at}",
        record.position, record.envelope.event_id
    ))
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    #[test]
    fn a_reused_page_keeps_its_buffer_and_holds_only_what_is_added() {
        let mut page = RecordPage::new(1);
        page.push(b"abc");
        page.push(b"de");
        let mut page = page.reuse(3);
        assert!(page.is_empty());
        assert_eq!(page.last_position(), None);
        assert_eq!(page.parts_mut().0.len(), 5, "the buffer is kept");
        page.push(b"xy");
        let bodies: Vec<(Position, &[u8])> = page.bodies().collect();
        assert_eq!(bodies, [(3, &b"xy"[..])]);
        assert_eq!(page.body(3), Some(&b"xy"[..]));
        assert_eq!((page.body(2), page.body(4)), (None, None));
        assert_eq!(page.reset(9).parts_mut().0.len(), 0, "reset empties it");
    }

    fn body(prev: &Hash, position: Position, version: u64, recorded_at: i64) -> Vec<u8> {
        let envelope = Envelope {
            shop: Uuid::from_u128(7),
            stream: "order-1",
            version,
            event_id: Uuid::from_u128(u128::from(position)),
            recorded_at,
            role: Role::Staff.code(),
            actor: "ayu",
            correlation_id: Uuid::from_u128(1),
            causation_id: None,
            event_type: "OrderPlaced",
            schema_version: 1,
            payload: b"{}",
        };
        let mut buf = Vec::new();
        format::encode_body(&mut buf, prev, position, &envelope);
        buf
    }

    fn chain(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS_HASH;
        (1..=n)
            .map(|p| {
                let b = body(&prev, p, p, 100 + p as i64);
                prev = format::hash_body(&b);
                b
            })
            .collect()
    }

    fn refusal(result: Result<impl std::fmt::Debug, StoreError>) -> String {
        match result {
            Err(StoreError::ImportRefused(why)) => why,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_chain_continues_the_log_it_was_cut_from() {
        let bodies = chain(5);
        let (records, end) = check_batch(&bodies[..3], ChainEnd::EMPTY).unwrap();
        assert_eq!(records.len(), 3);
        assert_eq!(end.last_position, 3);
        let (_, end) = check_batch(&bodies[3..], end).unwrap();
        assert_eq!(end.last_hash, format::hash_body(&bodies[4]));
        assert_eq!(end.last_recorded_at, 105);
    }

    #[test]
    fn anything_else_is_refused() {
        let bodies = chain(4);
        let why = refusal(check_batch(&bodies[1..], ChainEnd::EMPTY));
        assert!(why.contains("holds position 2"), "{why}");
        let (_, end) = check_batch(&bodies[..2], ChainEnd::EMPTY).unwrap();
        let other = ChainEnd {
            last_hash: [1; 32],
            ..end
        };
        let why = refusal(check_batch(&bodies[2..], other));
        assert!(why.contains("does not link"), "{why}");
        let late = ChainEnd {
            last_recorded_at: 1_000,
            ..end
        };
        let why = refusal(check_batch(&bodies[2..], late));
        assert!(why.contains("recorded_at"), "{why}");
        let mut damaged = bodies[2].clone();
        damaged.pop();
        let why = refusal(check_batch(&[damaged], end));
        assert!(why.starts_with("record 3:"), "{why}");
        assert!(refusal(check_batch(&[], end)).contains("no records"));
    }
}
