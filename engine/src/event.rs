//! The event envelope: what every recorded event carries, whatever its
//! payload, and the identifiers it is addressed by.
//!
//! The store treats payloads as opaque bytes (MessagePack written by the
//! domain); everything an auditor needs to place an event in history
//! (global position, stream and version, event id, time, actor, correlation
//! and causation) lives in the envelope.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Global position of an event in the log: 1 for the first event, gap-free
/// and strictly increasing. Position 0 means "before the first event".
pub type Position = u64;

/// Longest stream name the store accepts, in bytes.
pub const STREAM_NAME_LEN_MAX: usize = 200;
/// Longest event type name the store accepts, in bytes.
pub const EVENT_TYPE_LEN_MAX: usize = 128;
/// Longest actor id the store accepts, in bytes.
pub const ACTOR_ID_LEN_MAX: usize = 200;

/// Orders an id (a struct around a [`Uuid`]) by its 16 bytes read as one
/// big-endian number: the same order as comparing the bytes one by one,
/// as the derived order does, but without a call to `memcmp` for each
/// comparison. B-trees keyed by ids compare a lot: a fold finds the shop
/// of every event, and the analytics a day's customer of every order.
macro_rules! ordered_as_number {
    ($name:ident) => {
        impl Ord for $name {
            #[inline]
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.0.as_u128().cmp(&other.0.as_u128())
            }
        }

        impl PartialOrd for $name {
            #[inline]
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}
pub(crate) use ordered_as_number;

/// The shop (tenant) that owns a stream. Nothing crosses shops.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShopId(pub Uuid);

ordered_as_number!(ShopId);

impl ShopId {
    /// A shop id from its 16 bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        ShopId(Uuid::from_bytes(bytes))
    }
}

impl fmt::Debug for ShopId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShopId({})", self.0)
    }
}

impl fmt::Display for ShopId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A stream: the events of one entity (an order, a stock item, a wallet) of
/// one shop. Names are short, printable text such as `order-0192...` or
/// `stock-KAOS-M@gudang-malang`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    pub shop: ShopId,
    pub name: Arc<str>,
}

impl StreamId {
    pub fn new(shop: ShopId, name: impl Into<Arc<str>>) -> Self {
        StreamId {
            shop,
            name: name.into(),
        }
    }

    /// Why this stream id cannot be stored, if it cannot.
    pub fn problem(&self) -> Option<String> {
        let name = &*self.name;
        if name.is_empty() {
            return Some("stream name is empty".to_owned());
        }
        if name.len() > STREAM_NAME_LEN_MAX {
            return Some(format!(
                "stream name is {} bytes, more than {STREAM_NAME_LEN_MAX}",
                name.len()
            ));
        }
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Some(format!(
                "stream name {name:?} contains whitespace or control characters"
            ));
        }
        None
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.shop.0, self.name)
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.shop.0, self.name)
    }
}

/// What the writer expects a stream to hold before its events are appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet (hold no events).
    NoStream,
    /// The stream must hold exactly this many events (its version).
    /// `Exact(0)` is the same as `NoStream`.
    Exact(u64),
    /// The stream must hold exactly `version` (at least 1) events, the
    /// last of which has id `last_event_id`. A writer that decides on
    /// events it has submitted but that are not recorded yet names the
    /// last of them: if that append fails, this one fails too, even when
    /// another writer's events have taken the same versions meanwhile.
    ExactAfter { version: u64, last_event_id: Uuid },
}

impl ExpectedVersion {
    /// Whether a stream currently at `actual` satisfies this expectation,
    /// as far as its version goes (see [`last_event_id`](Self::last_event_id)).
    pub fn admits(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(n) | ExpectedVersion::ExactAfter { version: n, .. } => {
                actual == n
            }
        }
    }

    /// The id the stream's last event must have, if any.
    pub fn last_event_id(self) -> Option<Uuid> {
        match self {
            ExpectedVersion::ExactAfter { last_event_id, .. } => Some(last_event_id),
            _ => None,
        }
    }

    /// Whether a stream at version `actual` whose last event is at
    /// position `last` satisfies this expectation; `position_of` finds
    /// where an event id is recorded. What every backend checks.
    pub fn admits_stream(
        self,
        actual: u64,
        last: Option<Position>,
        position_of: impl FnOnce(Uuid) -> Option<Position>,
    ) -> bool {
        self.admits(actual)
            && match self.last_event_id() {
                None => true,
                Some(id) => last.is_some() && position_of(id) == last,
            }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(n) => write!(f, "version {n}"),
            ExpectedVersion::ExactAfter {
                version,
                last_event_id,
            } => write!(f, "version {version} ending with event {last_event_id}"),
        }
    }
}

/// Who caused an event: the role they acted in and their id (a user id, a
/// key id, or a process name such as `system:settlement`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    pub role: Role,
    pub id: String,
}

impl Actor {
    pub fn new(role: Role, id: impl Into<String>) -> Self {
        Actor {
            role,
            id: id.into(),
        }
    }

    /// A process of kedai itself (a scheduler, a settlement run).
    pub fn system(id: impl Into<String>) -> Self {
        Actor::new(Role::System, id)
    }
}

/// The role an actor acted in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Staff,
    Auditor,
    Analyst,
    Operator,
    System,
}

impl Role {
    pub const ALL: [Role; 6] = [
        Role::Owner,
        Role::Staff,
        Role::Auditor,
        Role::Analyst,
        Role::Operator,
        Role::System,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Staff => "staff",
            Role::Auditor => "auditor",
            Role::Analyst => "analyst",
            Role::Operator => "operator",
            Role::System => "system",
        }
    }

    pub fn from_code(code: u8) -> Option<Role> {
        Role::ALL.get(usize::from(code)).copied()
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point in time with microsecond precision, as stored in the log
/// (microseconds since the Unix epoch, UTC).
///
/// Serialised as that integer in binary formats (MessagePack) and as an
/// RFC 3339 text (`2024-12-12T13:00:00.000000Z`) in human-readable ones
/// (JSON), which also accept a number of microseconds.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(pub i64);

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            s.serialize_i64(self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date and time, or microseconds since 1970")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp)
                    .map_err(|_| E::custom("timestamp out of range"))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Timestamp, E> {
                DateTime::parse_from_rfc3339(v)
                    .map(|t| Timestamp::from(t.with_timezone(&Utc)))
                    .map_err(|e| E::custom(format!("{v:?} is not an RFC 3339 date and time: {e}")))
            }
        }
        if d.is_human_readable() {
            d.deserialize_any(Visitor)
        } else {
            d.deserialize_i64(Visitor)
        }
    }
}

impl Timestamp {
    pub fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub fn micros(self) -> i64 {
        self.0
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_micros(self.0)
            .single()
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    /// The current time. Only the edges (API, binaries) read the clock;
    /// the domain gets time as an argument.
    pub fn now() -> Self {
        Timestamp::from(Utc::now())
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp(t.timestamp_micros())
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime().to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}",
            self.to_datetime()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
        )
    }
}

/// An event to append: everything but what the store assigns (position,
/// stream version, recorded time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    pub event_type: Arc<str>,
    pub schema_version: u16,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    /// MessagePack bytes of the domain event.
    pub payload: Vec<u8>,
}

/// An event as recorded in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    pub position: Position,
    pub stream: StreamId,
    /// 1 for the stream's first event.
    pub version: u64,
    pub event_id: Uuid,
    pub recorded_at: Timestamp,
    pub actor: Actor,
    pub correlation_id: Uuid,
    pub causation_id: Option<Uuid>,
    pub event_type: Arc<str>,
    pub schema_version: u16,
    pub payload: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_text_in_json_and_integers_in_messagepack() {
        let t = Timestamp(1_734_000_000_123_456);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, "\"2024-12-12T10:40:00.123456Z\"");
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert_eq!(
            serde_json::from_str::<Timestamp>("1734000000123456").unwrap(),
            t
        );
        assert_eq!(
            serde_json::from_str::<Timestamp>("\"2024-12-12T17:40:00.123456+07:00\"").unwrap(),
            t
        );
        assert!(serde_json::from_str::<Timestamp>("\"yesterday\"").is_err());
        let packed = rmp_serde::to_vec(&t).unwrap();
        assert_eq!(rmp_serde::from_slice::<Timestamp>(&packed).unwrap(), t);
        assert!(packed.len() <= 9);
    }
}
