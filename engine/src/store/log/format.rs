//! The on-disk format of the embedded log, byte by byte (version 1). The
//! prose version is `docs/log-format.md`; keep the two in step.
//!
//! A segment file is a 64-byte header followed by records:
//!
//! ```text
//! header  magic "KEDAILOG" | format u16 | reserved u16 | first_position u64
//!         | prev_hash [32] | reserved [8] | crc32c u32          (64 bytes)
//! record  body_len u32 | crc32c(body_len ++ body) u32 | body
//! body    prev_hash [32] | position u64 | envelope (MessagePack array)
//! ```
//!
//! All integers are little-endian. A record's hash is BLAKE3 of its body;
//! each body starts with the hash of the record before it (zeros before the
//! first record), so the records form one chain over the whole log.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::fields::{read_bin, read_i64, read_str_bytes};
use crate::event::{Actor, Position, RecordedEvent, Role, StreamId, Timestamp};

pub const SEGMENT_MAGIC: [u8; 8] = *b"KEDAILOG";
pub const FORMAT_VERSION: u16 = 1;
pub const SEGMENT_HEADER_LEN: usize = 64;
pub const FRAME_HEADER_LEN: usize = 8;
pub const HASH_LEN: usize = 32;
/// prev_hash and position precede the envelope in every body.
pub const BODY_PREFIX_LEN: usize = HASH_LEN + 8;
/// Largest body the reader accepts; anything larger is corruption.
pub const BODY_LEN_MAX: usize = 32 << 20;

/// BLAKE3 hash of a record body; also the chain link.
pub type Hash = [u8; HASH_LEN];

/// The hash that precedes the first record of a log.
pub const GENESIS_HASH: Hash = [0; HASH_LEN];

/// The fixed header of a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Position of the segment's first record.
    pub first_position: Position,
    /// Hash of the record just before this segment (chain link).
    pub prev_hash: Hash,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN] {
        let mut b = [0u8; SEGMENT_HEADER_LEN];
        b[0..8].copy_from_slice(&SEGMENT_MAGIC);
        b[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[12..20].copy_from_slice(&self.first_position.to_le_bytes());
        b[20..52].copy_from_slice(&self.prev_hash);
        let crc = crc_fast::crc32_iscsi(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a header, saying what is wrong when it cannot.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, String> {
        if b.len() < SEGMENT_HEADER_LEN {
            return Err(format!(
                "segment header is {} bytes, expected {SEGMENT_HEADER_LEN}",
                b.len()
            ));
        }
        if b[0..8] != SEGMENT_MAGIC {
            return Err("not a kedai log segment (bad magic)".into());
        }
        let crc = u32::from_le_bytes(b[60..64].try_into().expect("4 bytes"));
        if crc != crc_fast::crc32_iscsi(&b[..60]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != FORMAT_VERSION {
            return Err(format!(
                "segment format version {version}, this build reads {FORMAT_VERSION}"
            ));
        }
        Ok(SegmentHeader {
            first_position: u64::from_le_bytes(b[12..20].try_into().expect("8 bytes")),
            prev_hash: b[20..52].try_into().expect("32 bytes"),
        })
    }
}

/// The envelope as stored: a MessagePack array in this field order.
/// Borrowed on decode so scanning allocates nothing.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope<'a> {
    pub shop: Uuid,
    #[serde(borrow)]
    pub stream: &'a str,
    pub version: u64,
    pub event_id: Uuid,
    pub recorded_at: i64,
    pub role: u8,
    #[serde(borrow)]
    pub actor: &'a str,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    #[serde(borrow)]
    pub event_type: &'a str,
    pub schema_version: u16,
    #[serde(with = "serde_bytes", borrow)]
    pub payload: &'a [u8],
}

impl<'a> Envelope<'a> {
    /// The envelope of a recorded event, as a log would store it.
    pub fn of(event: &'a RecordedEvent) -> Envelope<'a> {
        Envelope {
            shop: event.stream.shop.0,
            stream: &event.stream.name,
            version: event.version,
            event_id: event.event_id,
            recorded_at: event.recorded_at.0,
            role: event.actor.role.code(),
            actor: &event.actor.id,
            correlation_id: event.correlation_id,
            causation_id: event.causation_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            payload: &event.payload,
        }
    }

    /// An owned event at `position`, or why the envelope is invalid.
    pub fn to_recorded(&self, position: Position) -> Result<RecordedEvent, String> {
        let role =
            Role::from_code(self.role).ok_or_else(|| format!("unknown role code {}", self.role))?;
        Ok(RecordedEvent {
            position,
            stream: StreamId::new(crate::event::ShopId(self.shop), self.stream),
            version: self.version,
            event_id: self.event_id,
            recorded_at: Timestamp(self.recorded_at),
            actor: Actor::new(role, self.actor),
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            event_type: self.event_type.into(),
            schema_version: self.schema_version,
            payload: self.payload.to_vec(),
        })
    }
}

/// Appends one framed record to `buf` and returns its hash.
pub fn encode_record(
    buf: &mut Vec<u8>,
    prev_hash: &Hash,
    position: Position,
    envelope: &Envelope<'_>,
) -> Hash {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    let hash = encode_body(buf, prev_hash, position, envelope);
    let body = &buf[start + FRAME_HEADER_LEN..];
    let len_bytes = (body.len() as u32).to_le_bytes();
    let crc = body_checksum(body);
    buf[start..start + 4].copy_from_slice(&len_bytes);
    buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    hash
}

/// Appends one record body (prev_hash, position, envelope; no frame
/// header) to `buf` and returns its hash. The `postgres` backend stores
/// exactly these bytes, so one verifier checks both backends.
pub fn encode_body(
    buf: &mut Vec<u8>,
    prev_hash: &Hash,
    position: Position,
    envelope: &Envelope<'_>,
) -> Hash {
    let start = buf.len();
    buf.extend_from_slice(prev_hash);
    buf.extend_from_slice(&position.to_le_bytes());
    rmp_serde::encode::write(buf, envelope).expect("encoding to a Vec cannot fail");
    let body_len = buf.len() - start;
    assert!(body_len <= BODY_LEN_MAX, "record body of {body_len} bytes");
    hash_body(&buf[start..])
}

/// The checksum a record's frame carries: CRC32C over the body length
/// (u32, little-endian) followed by the body.
pub fn body_checksum(body: &[u8]) -> u32 {
    frame_checksum(&(body.len() as u32).to_le_bytes(), body)
}

/// CRC32C over a frame's length bytes followed by its body (which do not
/// lie side by side in a frame: the checksum is between them).
fn frame_checksum(len_bytes: &[u8], body: &[u8]) -> u32 {
    let mut crc = crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi);
    crc.update(len_bytes);
    crc.update(body);
    crc.finalize() as u32
}

/// What lies at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole record whose checksum holds; the next one starts at `next`.
    Record { body: &'a [u8], next: usize },
    /// No more data: end of file, or zeros (unwritten space).
    End,
    /// The record runs past the end of the data: a torn write.
    Incomplete,
    /// The checksum does not hold, or the length is impossible.
    Bad { reason: String },
}

/// Reads the frame at `offset` of `data`.
pub fn read_frame(data: &[u8], offset: usize) -> Frame<'_> {
    let rest = &data[offset.min(data.len())..];
    if rest.is_empty() {
        return Frame::End;
    }
    if rest.len() < FRAME_HEADER_LEN {
        return if rest.iter().all(|&b| b == 0) {
            Frame::End
        } else {
            Frame::Incomplete
        };
    }
    let len = u32::from_le_bytes(rest[0..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(rest[4..8].try_into().expect("4 bytes"));
    if len == 0 && crc == 0 {
        return Frame::End;
    }
    if !(BODY_PREFIX_LEN..=BODY_LEN_MAX).contains(&len) {
        return Frame::Bad {
            reason: format!("impossible record length {len}"),
        };
    }
    if rest.len() < FRAME_HEADER_LEN + len {
        return Frame::Incomplete;
    }
    let body = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
    let actual = frame_checksum(&rest[0..4], body);
    if actual != crc {
        return Frame::Bad {
            reason: format!("checksum mismatch (stored {crc:08x}, computed {actual:08x})"),
        };
    }
    Frame::Record {
        body,
        next: offset + FRAME_HEADER_LEN + len,
    }
}

/// The chain link and position at the start of a body (whose length the
/// frame reader has checked).
pub fn decode_prefix(body: &[u8]) -> (Hash, Position) {
    let prev_hash: Hash = body[0..HASH_LEN].try_into().expect("32 bytes");
    let position = u64::from_le_bytes(body[HASH_LEN..BODY_PREFIX_LEN].try_into().expect("8 bytes"));
    (prev_hash, position)
}

/// Decodes the envelope that follows the prefix of a body.
///
/// Envelopes of the shape this build writes are read field by field (a
/// fold reads one per event, and the generic decoder took about a fifth of
/// its time); anything else, and every error, goes through the generic
/// decoder, which has the last word.
pub fn decode_envelope(body: &[u8]) -> Result<Envelope<'_>, String> {
    let bytes = body
        .get(BODY_PREFIX_LEN..)
        .ok_or_else(|| format!("record body of {} bytes is too short", body.len()))?;
    if let Some(envelope) = read_envelope(bytes) {
        return Ok(envelope);
    }
    rmp_serde::from_slice(bytes).map_err(|e| format!("envelope does not decode: {e}"))
}

/// The envelope in `bytes` if it is the 12-element array this build
/// writes, with nothing after it; `None` otherwise. Read with the
/// engine's inlined readers, not `rmp`'s (whose reads go through
/// `std::io::Read`: a fold reads a head for every record, and `rmp`'s
/// made a head cost about 320 instructions, 200 now). Anything but the
/// shape this build writes is `None` (the generic decoder then decides):
/// the array's short form, integers of any form that fit their fields.
fn read_envelope(mut bytes: &[u8]) -> Option<Envelope<'_>> {
    let rd = &mut bytes;
    *rd = rd.strip_prefix(&[0x9c])?;
    let shop = field_uuid(rd)?;
    let stream = field_text(rd)?;
    let version = field_u64(rd)?;
    let event_id = field_uuid(rd)?;
    let recorded_at = read_i64(rd)?;
    let role = field_int(rd)?;
    let actor = field_text(rd)?;
    let correlation_id = field_uuid(rd)?;
    let causation_id = field_causation(rd)?;
    let event_type = field_text(rd)?;
    let (schema_version, payload) = field_payload(rd)?;
    Some(Envelope {
        shop,
        stream,
        version,
        event_id,
        recorded_at,
        role,
        actor,
        correlation_id,
        causation_id,
        event_type,
        schema_version,
        payload,
    })
}

/// An id of the envelope: 16 bytes of bin 8.
#[inline(always)]
fn field_uuid(rd: &mut &[u8]) -> Option<Uuid> {
    let (id, rest) = rd.strip_prefix(&[0xc4, 16])?.split_first_chunk::<16>()?;
    *rd = rest;
    Some(Uuid::from_bytes(*id))
}

#[inline(always)]
fn field_text<'a>(rd: &mut &'a [u8]) -> Option<&'a str> {
    std::str::from_utf8(field_bytes_of_text(rd)?).ok()
}

/// A string's bytes, not checked as UTF-8.
#[inline(always)]
fn field_bytes_of_text<'a>(rd: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (text, rest) = read_str_bytes(rd)?;
    *rd = rest;
    Some(text)
}

/// An integer that fits `T` (read as an `i64`).
#[inline(always)]
fn field_int<T: TryFrom<i64>>(rd: &mut &[u8]) -> Option<T> {
    T::try_from(read_i64(rd)?).ok()
}

/// The version: any integer that fits a `u64`, past `i64`'s range too.
#[inline(always)]
fn field_u64(rd: &mut &[u8]) -> Option<u64> {
    match rd.split_first() {
        Some((0xcf, rest)) => {
            let (n, rest) = rest.split_first_chunk::<8>()?;
            *rd = rest;
            Some(u64::from_be_bytes(*n))
        }
        _ => field_int(rd),
    }
}

/// The causation id: nil or an id.
#[inline(always)]
fn field_causation(rd: &mut &[u8]) -> Option<Option<Uuid>> {
    match rd.strip_prefix(&[0xc0]) {
        Some(rest) => {
            *rd = rest;
            Some(None)
        }
        None => field_uuid(rd).map(Some),
    }
}

/// The envelope's last two fields, its schema's version and its payload,
/// with nothing after them.
#[inline(always)]
fn field_payload<'a>(rd: &mut &'a [u8]) -> Option<(u16, &'a [u8])> {
    let schema_version = field_int(rd)?;
    let payload = read_bin(rd)?;
    rd.is_empty().then_some((schema_version, payload))
}

/// What a fold reads of an envelope: the event, when and by whom, without
/// the ids and stream name it does not use. The stream name, the longest
/// text, is passed over without checking that it is UTF-8: a fold never
/// reads it, and `verify` checks every record's bytes by checksum. The
/// actor and the event type are given as their bytes, not yet checked as
/// UTF-8 either: a fold sees the same few of each again and again, and
/// checks only those it has not seen (a check for every record was a
/// tenth of a fold's decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventHead<'a> {
    pub version: u64,
    pub recorded_at: i64,
    pub role: u8,
    /// The actor's id, as stored: a string's bytes, not checked as UTF-8.
    pub actor: &'a [u8],
    /// The event's type name, as stored: not checked as UTF-8.
    pub event_type: &'a [u8],
    pub schema_version: u16,
    pub payload: &'a [u8],
}

impl<'a> From<Envelope<'a>> for EventHead<'a> {
    fn from(e: Envelope<'a>) -> EventHead<'a> {
        EventHead {
            version: e.version,
            recorded_at: e.recorded_at,
            role: e.role,
            actor: e.actor.as_bytes(),
            event_type: e.event_type.as_bytes(),
            schema_version: e.schema_version,
            payload: e.payload,
        }
    }
}

/// The [`EventHead`] of a body: read field by field when the envelope has
/// the shape this build writes, otherwise (and for every error) as
/// [`decode_envelope`] reads it.
pub fn decode_event_head(body: &[u8]) -> Result<EventHead<'_>, String> {
    if let Some(head) = body.get(BODY_PREFIX_LEN..).and_then(read_event_head) {
        return Ok(head);
    }
    decode_envelope(body).map(EventHead::from)
}

/// The head of the envelope in `bytes`, read as [`read_envelope`] reads
/// the whole of it.
fn read_event_head(mut bytes: &[u8]) -> Option<EventHead<'_>> {
    let rd = &mut bytes;
    *rd = rd.strip_prefix(&[0x9c])?;
    field_uuid(rd)?;
    // The stream name, passed over unchecked.
    field_bytes_of_text(rd)?;
    let version = field_u64(rd)?;
    field_uuid(rd)?;
    let recorded_at = read_i64(rd)?;
    let role = field_int(rd)?;
    let actor = field_bytes_of_text(rd)?;
    field_uuid(rd)?;
    field_causation(rd)?;
    let event_type = field_bytes_of_text(rd)?;
    let (schema_version, payload) = field_payload(rd)?;
    Some(EventHead {
        version,
        recorded_at,
        role,
        actor,
        event_type,
        schema_version,
        payload,
    })
}

/// The shop of the event in a body, read without decoding the rest of the
/// envelope when it has its usual shape (an array whose first element is
/// the 16-byte id); otherwise from the whole envelope. For readers that
/// pass over most records (a fold that owns some shops).
pub fn body_shop(body: &[u8]) -> Result<Uuid, String> {
    // A 12-element array (0x9c), then the id as 16 bytes of bin 8.
    if let Some(b) = body.get(BODY_PREFIX_LEN..BODY_PREFIX_LEN + 19)
        && b[0..3] == [0x9c, 0xc4, 16]
    {
        return Ok(Uuid::from_slice(&b[3..]).expect("16 bytes"));
    }
    decode_envelope(body).map(|e| e.shop)
}

/// The position stored in a body, without decoding the envelope.
pub fn body_position(body: &[u8]) -> Option<Position> {
    let bytes = body.get(HASH_LEN..BODY_PREFIX_LEN)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// The chain link stored in a body.
pub fn body_prev_hash(body: &[u8]) -> Option<Hash> {
    body.get(0..HASH_LEN)?.try_into().ok()
}

/// The hash of a record, given its body.
pub fn hash_body(body: &[u8]) -> Hash {
    *blake3::hash(body).as_bytes()
}

/// File name of the segment whose first record is at `first_position`.
pub fn segment_file_name(first_position: Position) -> String {
    format!("{first_position:020}.seg")
}

/// File name of a sealed segment's index.
pub fn index_file_name(first_position: Position) -> String {
    format!("{first_position:020}.idx")
}

/// The first position named by a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<Position> {
    let stem = name.strip_suffix(".seg")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum is CRC32C (Castagnoli) of the length and the body, as
    /// logs already written carry it (values from the `crc32c` crate,
    /// which wrote them before).
    #[test]
    fn frame_checksums_are_those_logs_already_carry() {
        assert_eq!(crc_fast::crc32_iscsi(b"123456789"), 0xe306_9283);
        assert_eq!(body_checksum(b"a record body"), 0xbc84_db43);
        let big: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(body_checksum(&big), 0x89b7_214e);
    }

    fn envelope(payload: &[u8]) -> Envelope<'_> {
        Envelope {
            shop: Uuid::from_u128(7),
            stream: "order-1",
            version: 1,
            event_id: Uuid::from_u128(42),
            recorded_at: 1_700_000_000_000_000,
            role: Role::Staff.code(),
            actor: "ayu",
            correlation_id: Uuid::from_u128(1),
            causation_id: None,
            event_type: "OrderPlaced",
            schema_version: 1,
            payload,
        }
    }

    proptest::proptest! {
        /// Envelopes as written are read by the fast path, to what the
        /// generic decoder reads; and whatever bytes the fast path takes
        /// (the envelope cut short, a byte changed), the generic decoder
        /// reads the same from them.
        #[test]
        fn the_fast_envelope_reader_agrees_with_the_generic_one(
            ids in proptest::array::uniform4(proptest::prelude::any::<u128>()),
            caused in proptest::prelude::any::<bool>(),
            stream in "\\PC{0,40}",
            actor in "\\PC{0,20}",
            event_type in "[A-Za-z]{0,30}",
            version in proptest::prelude::any::<u64>(),
            recorded_at in proptest::prelude::any::<i64>(),
            role in proptest::prelude::any::<u8>(),
            schema_version in proptest::prelude::any::<u16>(),
            payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            damage in proptest::prelude::any::<(usize, u8)>(),
        ) {
            let envelope = Envelope {
                shop: Uuid::from_u128(ids[0]),
                stream: &stream,
                version,
                event_id: Uuid::from_u128(ids[1]),
                recorded_at,
                role,
                actor: &actor,
                correlation_id: Uuid::from_u128(ids[2]),
                causation_id: caused.then(|| Uuid::from_u128(ids[3])),
                event_type: &event_type,
                schema_version,
                payload: &payload,
            };
            let mut bytes = Vec::new();
            rmp_serde::encode::write(&mut bytes, &envelope).unwrap();
            proptest::prop_assert_eq!(read_envelope(&bytes), Some(envelope));
            for cut in 0..bytes.len() {
                if let Some(read) = read_envelope(&bytes[..cut]) {
                    proptest::prop_assert_eq!(Some(read), generic(&bytes[..cut]));
                }
            }
            let mut changed = bytes.clone();
            let at = damage.0 % changed.len();
            changed[at] ^= damage.1.max(1);
            if let Some(read) = read_envelope(&changed) {
                proptest::prop_assert_eq!(Some(read), generic(&changed));
            }

            // The head a fold reads is the envelope's, from the same bytes.
            let head = read_event_head(&bytes);
            proptest::prop_assert_eq!(head, generic(&bytes).map(EventHead::from));
            proptest::prop_assert!(head.is_some());
            for cut in 0..bytes.len() {
                proptest::prop_assert_eq!(read_event_head(&bytes[..cut]), None);
            }
            if let Some(head) = read_event_head(&changed) {
                match generic(&changed) {
                    Some(read) => proptest::prop_assert_eq!(head, EventHead::from(read)),
                    None => {
                        // Only where the head does not check: the stream
                        // name (after the array's marker and the shop's
                        // 18 bytes, and its own 1 or 2 bytes of length),
                        // the actor or the event type, no longer UTF-8.
                        let start = 19 + if stream.len() < 32 { 1 } else { 2 };
                        let name = start..start + stream.len();
                        let not_text = |t: &[u8]| std::str::from_utf8(t).is_err();
                        let in_name = name.contains(&at) && not_text(&changed[name]);
                        proptest::prop_assert!(
                            in_name || not_text(head.actor) || not_text(head.event_type),
                            "damage at {}",
                            at
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn an_event_head_of_another_shape_is_read_by_the_generic_decoder() {
        let mut body = vec![0u8; BODY_PREFIX_LEN];
        rmp_serde::encode::write(&mut body, &envelope(b"hello")).unwrap();
        assert_eq!(
            decode_event_head(&body),
            Ok(EventHead::from(envelope(b"hello")))
        );
        body.push(0);
        assert_eq!(read_event_head(&body[BODY_PREFIX_LEN..]), None);
        assert_eq!(
            decode_event_head(&body),
            Ok(EventHead::from(envelope(b"hello")))
        );
        body.truncate(BODY_PREFIX_LEN + 5);
        assert!(
            decode_event_head(&body)
                .unwrap_err()
                .contains("does not decode")
        );
    }

    fn generic(bytes: &[u8]) -> Option<Envelope<'_>> {
        rmp_serde::from_slice(bytes).ok()
    }

    #[test]
    fn an_envelope_of_another_shape_is_read_by_the_generic_decoder() {
        // A byte after the envelope: the fast reader does not take it, the
        // generic decoder reads the envelope and ignores the byte, as it
        // always has.
        let mut body = vec![0u8; BODY_PREFIX_LEN];
        rmp_serde::encode::write(&mut body, &envelope(b"hello")).unwrap();
        body.push(0);
        assert_eq!(read_envelope(&body[BODY_PREFIX_LEN..]), None);
        assert_eq!(decode_envelope(&body), Ok(envelope(b"hello")));
        // Not an envelope at all: the generic decoder's error is reported.
        body.truncate(BODY_PREFIX_LEN + 5);
        assert!(
            decode_envelope(&body)
                .unwrap_err()
                .contains("does not decode")
        );
    }

    #[test]
    fn the_shop_is_read_without_decoding_the_envelope() {
        let mut buf = Vec::new();
        encode_record(&mut buf, &GENESIS_HASH, 1, &envelope(b"hello"));
        let Frame::Record { body, .. } = read_frame(&buf, 0) else {
            panic!("expected a record");
        };
        assert_eq!(
            body[BODY_PREFIX_LEN..BODY_PREFIX_LEN + 3],
            [0x9c, 0xc4, 16],
            "the shape the fast path reads"
        );
        assert_eq!(body_shop(body), Ok(Uuid::from_u128(7)));
        // Another shape falls back to the whole envelope: an error names it.
        let mut odd = body.to_vec();
        odd[BODY_PREFIX_LEN] = 0x9b;
        assert!(body_shop(&odd).unwrap_err().contains("envelope"));
    }

    #[test]
    fn a_record_round_trips_and_hashes_its_body() {
        let mut buf = Vec::new();
        let hash = encode_record(&mut buf, &GENESIS_HASH, 1, &envelope(b"hello"));
        let Frame::Record { body, next } = read_frame(&buf, 0) else {
            panic!("expected a record");
        };
        assert_eq!(next, buf.len());
        assert_eq!(hash, hash_body(body));
        assert_eq!(decode_prefix(body), (GENESIS_HASH, 1));
        let envelope = decode_envelope(body).unwrap();
        assert_eq!(envelope.payload, b"hello");
        assert_eq!(envelope.stream, "order-1");
    }

    #[test]
    fn a_body_alone_is_the_record_without_its_frame() {
        let mut record = Vec::new();
        let record_hash = encode_record(&mut record, &[9; 32], 5, &envelope(b"hello"));
        let mut body = Vec::new();
        let body_hash = encode_body(&mut body, &[9; 32], 5, &envelope(b"hello"));
        assert_eq!(body_hash, record_hash);
        assert_eq!(&record[FRAME_HEADER_LEN..], &body[..]);
        assert_eq!(record[0..4], (body.len() as u32).to_le_bytes());
        assert_eq!(record[4..8], body_checksum(&body).to_le_bytes());
    }

    #[test]
    fn every_prefix_of_a_record_reads_as_incomplete_or_end() {
        let mut buf = Vec::new();
        encode_record(&mut buf, &GENESIS_HASH, 1, &envelope(b"payload"));
        for cut in 0..buf.len() {
            match read_frame(&buf[..cut], 0) {
                Frame::Incomplete | Frame::End => {}
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_flipped_bit_is_a_bad_frame() {
        let mut buf = Vec::new();
        encode_record(&mut buf, &GENESIS_HASH, 1, &envelope(b"payload"));
        for byte in [0, 4, 8, 40, buf.len() - 1] {
            let mut copy = buf.clone();
            copy[byte] ^= 0x10;
            assert!(
                matches!(read_frame(&copy, 0), Frame::Bad { .. } | Frame::Incomplete),
                "flip at {byte} went unnoticed"
            );
        }
    }

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader {
            first_position: 99,
            prev_hash: [3; 32],
        };
        let bytes = h.encode();
        assert_eq!(SegmentHeader::decode(&bytes).unwrap(), h);
        let mut bad = bytes;
        bad[15] ^= 1;
        assert!(SegmentHeader::decode(&bad).is_err());
        assert_eq!(parse_segment_file_name(&segment_file_name(99)), Some(99));
        assert_eq!(parse_segment_file_name("x.seg"), None);
    }
}
