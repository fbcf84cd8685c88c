//! Payloads read field by field: the commonest events of a shop's log,
//! decoded without serde when they have exactly the shape this build
//! writes.
//!
//! A payload is the event's struct as a MessagePack array of its fields in
//! declaration order ([`DomainEvent::encode`]; nested structs likewise).
//! Logs written before payloads were positional hold maps instead, with
//! the field names as keys in the same order; both are read here, the
//! form told by the payload's first byte ([`FieldReader::new`]). Serde
//! reads a map by checking each key as UTF-8 text and matching it against
//! every field name; [`FieldReader`] instead expects the keys in order and
//! compares them as bytes, which about halves the cost of decoding a small
//! event (in a rebuild's profile, 14% of a fold thread went to 7%), and in
//! an array there are no keys to read at all. A rebuild decodes millions
//! of payloads.
//!
//! The rule that keeps this safe: the reader answers only for a payload of
//! exactly the expected shape (every field, in order, keys if any as short
//! strings, ids as 16 bytes, nothing after), and where it answers, it
//! answers as serde does. Anything else (an older or newer shape, damage)
//! gets `None`, and serde, which has the last word, decodes it or names
//! the error. Tests check the agreement on payloads with changed, cut and
//! inserted bytes.
//!
//! [`read_event`] covers the types a shop's log is made of: stock moves
//! of orders, order status changes, payments, cancellations, returns and
//! refunds, ledger transactions, chat (conversations, and messages without
//! an attachment) and checkouts. Serde reads the rare ones (the catalog,
//! settings, withdrawals, imports). The projections read orders placed
//! with the same reader, borrowing their texts (`kedai_projections::placed`).

use serde::Deserialize;
use serde::de::{self, IgnoredAny, Visitor};
use uuid::Uuid;

use super::checkout::{CheckoutContent, CheckoutCustomer, CheckoutItem, ShippingAddress};
use super::events::*;
use super::ids::{CustomerId, OrderId, PaymentId, WarehouseId};
use super::money::{BasisPoints, Money};
use super::wallet::{CodFigures, LedgerTransaction, Posting};
use crate::event::Timestamp;

/// Nesting deeper than this is left to serde (which has its own limit).
const SKIP_DEPTH_MAX: usize = 32;

/// A MessagePack string at the start of `bytes` (any of its four forms),
/// and what follows it; `None` if there is none or it is not UTF-8. As
/// `rmp::decode::read_str_from_slice`, but short enough to be inlined
/// where a payload's texts are read.
#[inline]
pub fn read_str(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (text, rest) = read_str_bytes(bytes)?;
    Some((std::str::from_utf8(text).ok()?, rest))
}

/// [`read_str`]'s string as its bytes, not checked as UTF-8 (an envelope's
/// texts that a fold finds by their bytes).
#[inline]
pub fn read_str_bytes(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&marker, rest) = bytes.split_first()?;
    let (len, rest) = match marker {
        0xa0..=0xbf => (usize::from(marker & 0x1f), rest),
        _ => sized(marker, rest, [0xd9, 0xda, 0xdb])?,
    };
    rest.split_at_checked(len)
}

/// A MessagePack binary at the start of `*bytes` (any of its three
/// forms), which it then no longer holds; `None` if there is none. As
/// `rmp::decode::read_bin_len` and the bytes after it, but inlined.
#[inline]
pub fn read_bin<'a>(bytes: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&marker, rest) = bytes.split_first()?;
    let (len, rest) = sized(marker, rest, [0xc4, 0xc5, 0xc6])?;
    let (bin, rest) = rest.split_at_checked(len)?;
    *bytes = rest;
    Some(bin)
}

/// The length after a string's or binary's `marker`, if it is one of the
/// `markers` of a length in 1, 2 or 4 bytes (big-endian), and what follows.
#[inline]
fn sized(marker: u8, rest: &[u8], markers: [u8; 3]) -> Option<(usize, &[u8])> {
    if marker == markers[0] {
        let (&n, rest) = rest.split_first()?;
        Some((usize::from(n), rest))
    } else if marker == markers[1] {
        let (n, rest) = rest.split_first_chunk::<2>()?;
        Some((usize::from(u16::from_be_bytes(*n)), rest))
    } else if marker == markers[2] {
        let (n, rest) = rest.split_first_chunk::<4>()?;
        Some((u32::from_be_bytes(*n) as usize, rest))
    } else {
        None
    }
}

/// A MessagePack integer at the start of `*bytes` that fits an `i64`, as
/// serde reads one into an `i64` (any of its ten forms); `None` for
/// anything else. As `rmp::decode::read_int::<i64, _>`, but inlined.
#[inline]
pub fn read_i64(bytes: &mut &[u8]) -> Option<i64> {
    let (&marker, rest) = bytes.split_first()?;
    fn be<const N: usize>(rest: &[u8]) -> Option<([u8; N], &[u8])> {
        let (n, rest) = rest.split_first_chunk::<N>()?;
        Some((*n, rest))
    }
    let (value, rest) = match marker {
        0x00..=0x7f => (i64::from(marker), rest),
        0xe0..=0xff => (i64::from(marker as i8), rest),
        0xcc => be::<1>(rest).map(|(n, r)| (i64::from(n[0]), r))?,
        0xcd => be::<2>(rest).map(|(n, r)| (i64::from(u16::from_be_bytes(n)), r))?,
        0xce => be::<4>(rest).map(|(n, r)| (i64::from(u32::from_be_bytes(n)), r))?,
        0xcf => {
            let (n, r) = be::<8>(rest)?;
            (i64::try_from(u64::from_be_bytes(n)).ok()?, r)
        }
        0xd0 => be::<1>(rest).map(|(n, r)| (i64::from(n[0] as i8), r))?,
        0xd1 => be::<2>(rest).map(|(n, r)| (i64::from(i16::from_be_bytes(n)), r))?,
        0xd2 => be::<4>(rest).map(|(n, r)| (i64::from(i32::from_be_bytes(n)), r))?,
        0xd3 => be::<8>(rest).map(|(n, r)| (i64::from_be_bytes(n), r))?,
        _ => return None,
    };
    *bytes = rest;
    Some(value)
}

/// What is left of a payload being read. Every method consumes what it
/// reads and answers `None` where the bytes are not what it expects (the
/// reader is then left somewhere in the middle: give up and ask serde).
#[derive(Debug, Clone)]
pub struct FieldReader<'a> {
    rest: &'a [u8],
    /// Whether the payload's structs are maps with their field names
    /// (as builds before positional payloads wrote them), not arrays.
    named: bool,
}

impl<'a> FieldReader<'a> {
    /// A reader of `payload`, whose first byte tells its form: a map (a
    /// payload with field names) or anything else (positional).
    #[inline]
    pub fn new(payload: &'a [u8]) -> FieldReader<'a> {
        let named = matches!(payload.first(), Some(0x80..=0x8f | 0xde | 0xdf));
        FieldReader {
            rest: payload,
            named,
        }
    }

    /// Whether every byte was read.
    #[inline]
    pub fn is_done(&self) -> bool {
        self.rest.is_empty()
    }

    /// What is left to read.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.rest
    }

    /// Consumes `encoded` if what is left starts with it. A MessagePack
    /// value is read to the same end whatever follows it, so if `encoded`
    /// is one whole value that a reader of this one's form (with field
    /// names or positional) read, the next value is exactly that one.
    #[inline]
    pub fn strip(&mut self, encoded: &[u8]) -> bool {
        match self.rest.strip_prefix(encoded) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    #[inline]
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(taken)
    }

    /// A struct of exactly `len` fields: a map of `len` entries in a
    /// payload with field names, an array of `len` elements otherwise.
    pub fn map(&mut self, len: u32) -> Option<()> {
        let n = if self.named {
            rmp::decode::read_map_len(&mut self.rest).ok()?
        } else {
            rmp::decode::read_array_len(&mut self.rest).ok()?
        };
        (n == len).then_some(())
    }

    /// An array's length.
    pub fn array(&mut self) -> Option<u32> {
        rmp::decode::read_array_len(&mut self.rest).ok()
    }

    /// The key `name`, as a short string (what the encoder writes), in a
    /// payload with field names; nothing in a positional one (the field
    /// is the next element).
    #[inline]
    pub fn field(&mut self, name: &str) -> Option<&mut Self> {
        if !self.named {
            return Some(self);
        }
        let name = name.as_bytes();
        let (&marker, rest) = self.rest.split_first()?;
        if usize::from(marker) != 0xa0 + name.len() {
            return None;
        }
        let (key, rest) = rest.split_at_checked(name.len())?;
        if !same_short(key, name) {
            return None;
        }
        self.rest = rest;
        Some(self)
    }

    /// An id, as 16 bytes of bin 8.
    pub fn uuid(&mut self) -> Option<Uuid> {
        let rest = self.rest.strip_prefix(&[0xc4, 16])?;
        let (id, rest) = rest.split_first_chunk::<16>()?;
        self.rest = rest;
        Some(Uuid::from_bytes(*id))
    }

    pub fn opt_uuid(&mut self) -> Option<Option<Uuid>> {
        if self.nil() {
            return Some(None);
        }
        self.uuid().map(Some)
    }

    pub fn text(&mut self) -> Option<&'a str> {
        let (text, rest) = read_str(self.rest)?;
        self.rest = rest;
        Some(text)
    }

    pub fn opt_text(&mut self) -> Option<Option<&'a str>> {
        if self.nil() {
            return Some(None);
        }
        self.text().map(Some)
    }

    /// Reads a nil, if that is what comes next.
    #[inline]
    fn nil(&mut self) -> bool {
        match self.rest.strip_prefix(&[0xc0]) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// An integer (as serde reads an `i64`).
    pub fn int(&mut self) -> Option<i64> {
        read_i64(&mut self.rest)
    }

    /// Basis points (as serde reads a `u32`).
    pub fn basis_points(&mut self) -> Option<BasisPoints> {
        rmp::decode::read_int(&mut self.rest).ok().map(BasisPoints)
    }

    pub fn money(&mut self) -> Option<Money> {
        self.int().map(Money)
    }

    pub fn timestamp(&mut self) -> Option<Timestamp> {
        self.int().map(Timestamp)
    }

    pub fn bool(&mut self) -> Option<bool> {
        rmp::decode::read_bool(&mut self.rest).ok()
    }

    /// A value written as text, read as serde would from that text: a
    /// SKU, an owned string (an enum's unit variant: [`Self::variant`]).
    pub fn from_text<T: Deserialize<'a>>(&mut self) -> Option<T> {
        use serde::de::value::{BorrowedStrDeserializer, Error};
        let text = self.text()?;
        T::deserialize(BorrowedStrDeserializer::<Error>::new(text)).ok()
    }

    /// An enum's unit variant, written as its name: matched by the name's
    /// bytes, as serde's derived code matches them, without checking the
    /// name as UTF-8 first (bytes that are no variant's name are `None`).
    /// Only for enums: anything else is `None` (serde then decides).
    pub fn variant<T: Deserialize<'a>>(&mut self) -> Option<T> {
        let (name, rest) = read_str_bytes(self.rest)?;
        let value = T::deserialize(UnitVariant(name)).ok()?;
        self.rest = rest;
        Some(value)
    }

    /// Passes over one value of any kind, as serde's `IgnoredAny` does.
    pub fn skip(&mut self) -> Option<IgnoredAny> {
        self.skip_nested(0)
    }

    fn skip_nested(&mut self, depth: usize) -> Option<IgnoredAny> {
        use rmp::Marker::*;
        if depth > SKIP_DEPTH_MAX {
            return None;
        }
        let marker = rmp::decode::read_marker(&mut self.rest).ok()?;
        let len = |r: &mut Self, bytes: usize| -> Option<usize> {
            let b = r.take(bytes)?;
            Some(b.iter().fold(0usize, |n, &b| n << 8 | usize::from(b)))
        };
        let (bytes, items) = match marker {
            FixPos(_) | FixNeg(_) | Null | True | False => (0, 0),
            U8 | I8 => (1, 0),
            U16 | I16 => (2, 0),
            U32 | I32 | F32 => (4, 0),
            U64 | I64 | F64 => (8, 0),
            FixStr(n) => (usize::from(n), 0),
            Str8 | Bin8 => (len(self, 1)?, 0),
            Str16 | Bin16 => (len(self, 2)?, 0),
            Str32 | Bin32 => (len(self, 4)?, 0),
            FixArray(n) => (0, usize::from(n)),
            Array16 => (0, len(self, 2)?),
            Array32 => (0, len(self, 4)?),
            FixMap(n) => (0, 2 * usize::from(n)),
            Map16 => (0, 2 * len(self, 2)?),
            Map32 => (0, 2 * len(self, 4)?),
            FixExt1 => (2, 0),
            FixExt2 => (3, 0),
            FixExt4 => (5, 0),
            FixExt8 => (9, 0),
            FixExt16 => (17, 0),
            Ext8 => (len(self, 1)? + 1, 0),
            Ext16 => (len(self, 2)? + 1, 0),
            Ext32 => (len(self, 4)? + 1, 0),
            Reserved => return None,
        };
        self.take(bytes)?;
        for _ in 0..items {
            self.skip_nested(depth + 1)?;
        }
        Some(IgnoredAny)
    }
}

/// What a test writes over a payload's byte `byte` to damage it: a marker
/// of each MessagePack form a payload holds (integers small, negative and
/// wide, arrays, maps, strings, nil, false, bin), and the byte one more
/// and one less (a struct's or a text's length changed by one). For the
/// tests of the field-by-field readers, here and in the projections.
pub fn damaging_bytes(byte: u8) -> [u8; 16] {
    [
        0x00,
        0x01,
        0x7f,
        0x80,
        0x90,
        0xa0,
        0xc0,
        0xc2,
        0xc4,
        0xcc,
        0xd9,
        0xdc,
        0xde,
        0xff,
        byte.wrapping_add(1),
        byte.wrapping_sub(1),
    ]
}

/// Whether two byte strings of the same length are equal. Field names
/// are short: up to 16 bytes are compared as two overlapping words each,
/// which is several times cheaper than a call to `memcmp` (a third of the
/// time of reading an order placed went to that call). The projections
/// compare their short texts (names, SKUs, cities) with it too.
#[inline]
pub fn same_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    debug_assert_eq!(n, b.len());
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    let half = |s: &[u8], at: usize| u32::from_le_bytes(s[at..at + 4].try_into().expect("4 bytes"));
    match n {
        8..=16 => word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8),
        4..=7 => half(a, 0) == half(b, 0) && half(a, n - 4) == half(b, n - 4),
        0..=3 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// A unit variant's name, as a deserializer of enums only: the name goes
/// to the enum's variant identifier as bytes ([`FieldReader::variant`]).
struct UnitVariant<'a>(&'a [u8]);

impl<'de> de::Deserializer<'de> for UnitVariant<'de> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not an enum"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct identifier ignored_any
    }
}

impl<'de> de::EnumAccess<'de> for UnitVariant<'de> {
    type Error = de::value::Error;
    type Variant = Self;

    fn variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        seed: S,
    ) -> Result<(S::Value, Self), Self::Error> {
        let name = de::value::BorrowedBytesDeserializer::new(self.0);
        Ok((seed.deserialize(name)?, self))
    }
}

impl<'de> de::VariantAccess<'de> for UnitVariant<'de> {
    type Error = de::value::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn newtype_variant_seed<S: de::DeserializeSeed<'de>>(
        self,
        _: S,
    ) -> Result<S::Value, Self::Error> {
        Err(de::Error::custom("not a unit variant"))
    }

    fn tuple_variant<V: Visitor<'de>>(self, _: usize, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a unit variant"))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a unit variant"))
    }
}

/// The event in `payload`, read field by field, if its type (the bytes of
/// its name, as an envelope stores it) is one of the hot ones and the
/// payload has exactly the shape this build writes; `None` otherwise
/// (decode it with serde: [`DomainEvent::decode`] does). A name that is
/// one of these is UTF-8: nothing else matches.
pub fn read_event(event_type: &[u8], payload: &[u8]) -> Option<DomainEvent> {
    let rd = &mut FieldReader::new(payload);
    let event = match event_type {
        b"StockReserved" => {
            let (sku, warehouse_id, order_id, quantity) = stock_move(rd)?;
            DomainEvent::StockReserved(StockReserved {
                sku,
                warehouse_id,
                order_id,
                quantity,
            })
        }
        b"StockReleased" => {
            let (sku, warehouse_id, order_id, quantity) = stock_move(rd)?;
            DomainEvent::StockReleased(StockReleased {
                sku,
                warehouse_id,
                order_id,
                quantity,
            })
        }
        b"StockShipped" => {
            let (sku, warehouse_id, order_id, quantity) = stock_move(rd)?;
            DomainEvent::StockShipped(StockShipped {
                sku,
                warehouse_id,
                order_id,
                quantity,
            })
        }
        b"OrderProcessing" => DomainEvent::OrderProcessing(OrderProcessing {
            order_id: order_only(rd)?,
        }),
        b"OrderPacked" => DomainEvent::OrderPacked(OrderPacked {
            order_id: order_only(rd)?,
        }),
        b"OrderDelivered" => DomainEvent::OrderDelivered(OrderDelivered {
            order_id: order_only(rd)?,
        }),
        b"OrderCompleted" => DomainEvent::OrderCompleted(OrderCompleted {
            order_id: order_only(rd)?,
        }),
        b"OrderShipped" => {
            rd.map(2)?;
            DomainEvent::OrderShipped(OrderShipped {
                order_id: OrderId(rd.field("order_id")?.uuid()?),
                awb: rd.field("awb")?.text()?.to_owned(),
            })
        }
        b"OrderCancelled" => {
            rd.map(3)?;
            DomainEvent::OrderCancelled(OrderCancelled {
                order_id: OrderId(rd.field("order_id")?.uuid()?),
                reason: rd.field("reason")?.text()?.to_owned(),
                refundable: rd.field("refundable")?.money()?,
            })
        }
        b"OrderPaymentRecorded" => {
            rd.map(8)?;
            DomainEvent::OrderPaymentRecorded(OrderPaymentRecorded {
                order_id: OrderId(rd.field("order_id")?.uuid()?),
                payment_id: PaymentId(rd.field("payment_id")?.uuid()?),
                amount: rd.field("amount")?.money()?,
                method: rd.field("method")?.variant()?,
                bank_account: rd.field("bank_account")?.opt_text()?.map(str::to_owned),
                paid_at: rd.field("paid_at")?.timestamp()?,
                paid_total: rd.field("paid_total")?.money()?,
                remaining: rd.field("remaining")?.money()?,
            })
        }
        b"LedgerTransactionRecorded" => {
            rd.map(3)?;
            LedgerTransactionRecorded {
                transaction_id: rd.field("transaction_id")?.uuid()?,
                transaction: ledger_transaction(rd.field("transaction")?)?,
                occurred_at: rd.field("occurred_at")?.timestamp()?,
            }
            .into()
        }
        b"MessageReceived" => {
            rd.map(5)?;
            DomainEvent::MessageReceived(MessageReceived {
                conversation_id: rd.field("conversation_id")?.uuid()?,
                message_id: rd.field("message_id")?.uuid()?,
                text: rd.field("text")?.text()?.to_owned(),
                attachment: no_attachment(rd.field("attachment")?)?,
                sent_at: rd.field("sent_at")?.timestamp()?,
            })
        }
        b"MessageSent" => {
            rd.map(7)?;
            MessageSent {
                conversation_id: rd.field("conversation_id")?.uuid()?,
                message_id: rd.field("message_id")?.uuid()?,
                staff_id: rd.field("staff_id")?.text()?.to_owned(),
                text: rd.field("text")?.text()?.to_owned(),
                attachment: no_attachment(rd.field("attachment")?)?,
                template_id: rd.field("template_id")?.opt_uuid()?,
                sent_at: rd.field("sent_at")?.timestamp()?,
            }
            .into()
        }
        b"StockRestocked" => {
            let (sku, warehouse_id, order_id, quantity) = stock_move(rd)?;
            StockRestocked {
                sku,
                warehouse_id,
                order_id,
                quantity,
            }
            .into()
        }
        b"OrderReadyForPickup" => OrderReadyForPickup {
            order_id: order_only(rd)?,
        }
        .into(),
        b"OrderReturnReceived" => OrderReturnReceived {
            order_id: order_only(rd)?,
        }
        .into(),
        b"OrderReturnStarted" => {
            rd.map(2)?;
            OrderReturnStarted {
                order_id: OrderId(rd.field("order_id")?.uuid()?),
                reason: rd.field("reason")?.text()?.to_owned(),
            }
            .into()
        }
        b"OrderLost" => {
            rd.map(2)?;
            OrderLost {
                order_id: OrderId(rd.field("order_id")?.uuid()?),
                note: rd.field("note")?.text()?.to_owned(),
            }
            .into()
        }
        b"OrderRefunded" => {
            rd.map(3)?;
            OrderRefunded {
                order_id: OrderId(rd.field("order_id")?.uuid()?),
                amount: rd.field("amount")?.money()?,
                note: rd.field("note")?.text()?.to_owned(),
            }
            .into()
        }
        b"ConversationStarted" => {
            rd.map(6)?;
            ConversationStarted {
                conversation_id: rd.field("conversation_id")?.uuid()?,
                channel: rd.field("channel")?.variant()?,
                handle: rd.field("handle")?.text()?.to_owned(),
                name: rd.field("name")?.text()?.to_owned(),
                customer_id: rd.field("customer_id")?.opt_uuid()?.map(CustomerId),
                started_at: rd.field("started_at")?.timestamp()?,
            }
            .into()
        }
        b"ConversationLabelAdded" => {
            let (conversation_id, label) = conversation_and(rd, "label")?;
            ConversationLabelAdded {
                conversation_id,
                label,
            }
            .into()
        }
        b"ConversationLabelRemoved" => {
            let (conversation_id, label) = conversation_and(rd, "label")?;
            ConversationLabelRemoved {
                conversation_id,
                label,
            }
            .into()
        }
        b"ConversationAssigned" => {
            let (conversation_id, staff_id) = conversation_and(rd, "staff_id")?;
            ConversationAssigned {
                conversation_id,
                staff_id,
            }
            .into()
        }
        b"ConversationUnassigned" => ConversationUnassigned {
            conversation_id: conversation_only(rd)?,
        }
        .into(),
        b"ConversationReopened" => ConversationReopened {
            conversation_id: conversation_only(rd)?,
        }
        .into(),
        b"ConversationResolved" => {
            rd.map(3)?;
            ConversationResolved {
                conversation_id: rd.field("conversation_id")?.uuid()?,
                resolved_by: rd.field("resolved_by")?.text()?.to_owned(),
                resolved_at: rd.field("resolved_at")?.timestamp()?,
            }
            .into()
        }
        b"CheckoutStarted" => {
            rd.map(6)?;
            CheckoutStarted {
                checkout_id: rd.field("checkout_id")?.uuid()?,
                domain: rd.field("domain")?.text()?.to_owned(),
                currency: rd.field("currency")?.variant()?,
                content: checkout_content(rd.field("content")?)?,
                total: rd.field("total")?.money()?,
                created_at: rd.field("created_at")?.timestamp()?,
            }
            .into()
        }
        b"CheckoutUpdated" => {
            rd.map(4)?;
            CheckoutUpdated {
                checkout_id: rd.field("checkout_id")?.uuid()?,
                content: checkout_content(rd.field("content")?)?,
                total: rd.field("total")?.money()?,
                updated_at: rd.field("updated_at")?.timestamp()?,
            }
            .into()
        }
        b"CheckoutCompleted" => {
            rd.map(3)?;
            CheckoutCompleted {
                checkout_id: rd.field("checkout_id")?.uuid()?,
                order_id: OrderId(rd.field("order_id")?.uuid()?),
                completed_at: rd.field("completed_at")?.timestamp()?,
            }
            .into()
        }
        b"CheckoutAbandoned" => {
            rd.map(3)?;
            CheckoutAbandoned {
                checkout_id: rd.field("checkout_id")?.uuid()?,
                abandoned_at: rd.field("abandoned_at")?.timestamp()?,
                last_activity_at: rd.field("last_activity_at")?.timestamp()?,
            }
            .into()
        }
        _ => return None,
    };
    rd.is_done().then_some(event)
}

/// A message's attachment when it has none; a message with one is left to
/// serde (few have one).
fn no_attachment(rd: &mut FieldReader<'_>) -> Option<Option<super::chat::Attachment>> {
    rd.nil().then_some(None)
}

/// The fields every stock move of an order has.
fn stock_move(rd: &mut FieldReader<'_>) -> Option<(super::ids::Sku, WarehouseId, OrderId, i64)> {
    rd.map(4)?;
    Some((
        rd.field("sku")?.from_text()?,
        WarehouseId(rd.field("warehouse_id")?.uuid()?),
        OrderId(rd.field("order_id")?.uuid()?),
        rd.field("quantity")?.int()?,
    ))
}

/// A status change that names only its order.
fn order_only(rd: &mut FieldReader<'_>) -> Option<OrderId> {
    rd.map(1)?;
    Some(OrderId(rd.field("order_id")?.uuid()?))
}

/// A conversation's change that names only the conversation.
fn conversation_only(rd: &mut FieldReader<'_>) -> Option<Uuid> {
    rd.map(1)?;
    rd.field("conversation_id")?.uuid()
}

/// A conversation's change that names the conversation and one text.
fn conversation_and(rd: &mut FieldReader<'_>, name: &str) -> Option<(Uuid, String)> {
    rd.map(2)?;
    let conversation_id = rd.field("conversation_id")?.uuid()?;
    Some((conversation_id, rd.field(name)?.text()?.to_owned()))
}

/// An owned text field.
fn string(rd: &mut FieldReader<'_>, name: &str) -> Option<String> {
    rd.field(name)?.text().map(str::to_owned)
}

/// A checkout's cart, customer and shipping, as this build writes them
/// (every field present, the shipping address nil or whole).
fn checkout_content(rd: &mut FieldReader<'_>) -> Option<CheckoutContent> {
    rd.map(5)?;
    let count = rd.field("items")?.array()?;
    let mut items = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        rd.map(5)?;
        items.push(CheckoutItem {
            sku: rd.field("sku")?.from_text()?,
            product_name: string(rd, "product_name")?,
            name: string(rd, "name")?,
            price: rd.field("price")?.money()?,
            quantity: rd.field("quantity")?.int()?,
        });
    }
    rd.field("customer")?.map(4)?;
    let customer = CheckoutCustomer {
        first_name: string(rd, "first_name")?,
        last_name: string(rd, "last_name")?,
        phone: string(rd, "phone")?,
        email: string(rd, "email")?,
    };
    let shipping_address = if rd.field("shipping_address")?.nil() {
        None
    } else {
        rd.map(9)?;
        Some(ShippingAddress {
            first_name: string(rd, "first_name")?,
            last_name: string(rd, "last_name")?,
            phone: string(rd, "phone")?,
            email: string(rd, "email")?,
            address1: string(rd, "address1")?,
            address2: string(rd, "address2")?,
            zip: string(rd, "zip")?,
            city: string(rd, "city")?,
            state: string(rd, "state")?,
        })
    };
    Some(CheckoutContent {
        items,
        customer,
        shipping_address,
        shipping: rd.field("shipping")?.money()?,
        rate: string(rd, "rate")?,
    })
}

fn ledger_transaction(rd: &mut FieldReader<'_>) -> Option<LedgerTransaction> {
    rd.map(6)?;
    let kind = rd.field("kind")?.variant()?;
    let count = rd.field("postings")?.array()?;
    let mut postings = Vec::with_capacity(count.min(16) as usize);
    for _ in 0..count {
        rd.map(2)?;
        postings.push(Posting {
            account: rd.field("account")?.variant()?,
            amount: rd.field("amount")?.money()?,
        });
    }
    let order_id = rd.field("order_id")?.opt_uuid()?.map(OrderId);
    let withdrawal_id = rd.field("withdrawal_id")?.opt_uuid()?;
    let cod = if rd.field("cod")?.nil() {
        None
    } else {
        rd.map(7)?;
        Some(CodFigures {
            grand_total: rd.field("grand_total")?.money()?,
            shipping_cost: rd.field("shipping_cost")?.money()?,
            service_fee: rd.field("service_fee")?.money()?,
            service_fee_rate: rd.field("service_fee_rate")?.basis_points()?,
            cashback: rd.field("cashback")?.money()?,
            cashback_rate: rd.field("cashback_rate")?.basis_points()?,
            net_profit: rd.field("net_profit")?.money()?,
        })
    };
    let note = rd.field("note")?.text()?.to_owned();
    Some(LedgerTransaction {
        kind,
        postings,
        order_id,
        withdrawal_id,
        cod,
        note,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    use super::*;
    use crate::domain::chat::{Attachment, ChatChannel};
    use crate::domain::ids::Sku;
    use crate::domain::money::Currency;
    use crate::domain::order::PaymentMethod;
    use crate::domain::wallet::{Account, EntryKind};

    fn order(n: u128) -> OrderId {
        OrderId(Uuid::from_u128(n))
    }

    /// Bytes that start with a MessagePack value of every integer and
    /// string form (and some that are neither), then a tail.
    fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
        let int = prop_oneof![
            any::<i64>().prop_map(|v| {
                let mut b = Vec::new();
                rmp::encode::write_sint(&mut b, v).unwrap();
                b
            }),
            any::<u64>().prop_map(|v| {
                let mut b = Vec::new();
                rmp::encode::write_uint(&mut b, v).unwrap();
                b
            }),
            (any::<u8>(), any::<i64>()).prop_map(|(m, v)| {
                // A marker of any form followed by a value's bytes.
                let mut b = vec![m];
                b.extend_from_slice(&v.to_be_bytes());
                b
            }),
        ];
        let text = prop_oneof![
            "\\PC{0,40}".prop_map(|t| {
                let mut b = Vec::new();
                rmp::encode::write_str(&mut b, &t).unwrap();
                b
            }),
            (
                0xa0u8..=0xdb,
                proptest::collection::vec(any::<u8>(), 0..300)
            )
                .prop_map(|(m, rest)| {
                    let mut b = vec![m];
                    b.extend(rest);
                    b
                }),
        ];
        (
            prop_oneof![int, text],
            proptest::collection::vec(any::<u8>(), 0..4),
        )
            .prop_map(|(mut v, tail)| {
                v.extend(tail);
                v
            })
    }

    proptest! {
        /// The inlined readers of integers and strings answer as rmp's do,
        /// on values of every form and on bytes that are not values.
        #[test]
        fn integers_and_strings_are_read_as_rmp_reads_them(bytes in value_bytes()) {
            let mut mine = &bytes[..];
            let mut theirs = &bytes[..];
            let read = read_i64(&mut mine);
            let expected = rmp::decode::read_int::<i64, _>(&mut theirs).ok();
            prop_assert_eq!(read, expected);
            if read.is_some() {
                prop_assert_eq!(mine, theirs, "what is left");
            }
            let expected = rmp::decode::read_str_from_slice(&bytes[..]).ok();
            prop_assert_eq!(read_str(&bytes), expected);
        }
    }

    fn posting(account: Account, amount: i64) -> Posting {
        Posting {
            account,
            amount: Money(amount),
        }
    }

    /// A checkout's content: one item and no address, or two items and
    /// an address.
    fn cart(full: bool) -> CheckoutContent {
        let item = |sku: &str, quantity| CheckoutItem {
            sku: Sku::parse(sku).unwrap(),
            product_name: "Kaos Polos".into(),
            name: "M / Hitam".into(),
            price: Money(50_000),
            quantity,
        };
        CheckoutContent {
            items: if full {
                vec![item("KAOS-M", 1), item("KAOS-L", 70_000)]
            } else {
                vec![item("KAOS-M", 2)]
            },
            customer: CheckoutCustomer {
                first_name: "Rina".into(),
                last_name: if full { "Wijaya".into() } else { String::new() },
                phone: "081234567890".into(),
                email: String::new(),
            },
            shipping_address: full.then(|| ShippingAddress {
                first_name: "Rina".into(),
                last_name: "Wijaya".into(),
                phone: "081234567890".into(),
                email: "rina@example.com".into(),
                address1: "Jl. Ijen 12".into(),
                address2: String::new(),
                zip: "65119".into(),
                city: "Malang".into(),
                state: "Jawa Timur".into(),
            }),
            shipping: Money(10_000),
            rate: if full {
                "FREE SHIPPING COD".into()
            } else {
                String::new()
            },
        }
    }

    /// One or more events of every type [`read_event`] reads, with and
    /// without their optional parts, and numbers of every width.
    fn events() -> Vec<DomainEvent> {
        let sku = Sku::parse("KAOS-M.merah_1").unwrap();
        let warehouse = WarehouseId(Uuid::from_u128(0x11));
        let cod = CodFigures::compute(
            Money(191_000),
            Money(10_000),
            BasisPoints(280),
            BasisPoints(2_500),
        );
        vec![
            StockReserved {
                sku: sku.clone(),
                warehouse_id: warehouse,
                order_id: order(1),
                quantity: 3,
            }
            .into(),
            StockReleased {
                sku: sku.clone(),
                warehouse_id: warehouse,
                order_id: order(2),
                quantity: 70_000,
            }
            .into(),
            StockShipped {
                sku,
                warehouse_id: warehouse,
                order_id: order(u128::MAX),
                quantity: i64::MAX,
            }
            .into(),
            OrderProcessing { order_id: order(3) }.into(),
            OrderPacked { order_id: order(3) }.into(),
            OrderDelivered { order_id: order(3) }.into(),
            OrderCompleted { order_id: order(3) }.into(),
            OrderShipped {
                order_id: order(3),
                awb: "JNE0000000042".into(),
            }
            .into(),
            OrderCancelled {
                order_id: order(4),
                reason: "pembeli membatalkan — salah ukuran".into(),
                refundable: Money(-1),
            }
            .into(),
            OrderPaymentRecorded {
                order_id: order(5),
                payment_id: PaymentId(Uuid::from_u128(6)),
                amount: Money(20_000),
                method: PaymentMethod::BankTransfer,
                bank_account: None,
                paid_at: Timestamp(1_760_000_000_000_000),
                paid_total: Money(20_000),
                remaining: Money(171_000),
            }
            .into(),
            OrderPaymentRecorded {
                order_id: order(5),
                payment_id: PaymentId(Uuid::from_u128(7)),
                amount: Money(171_000),
                method: PaymentMethod::EWallet,
                bank_account: Some("BCA 123".into()),
                paid_at: Timestamp(-5),
                paid_total: Money(191_000),
                remaining: Money::ZERO,
            }
            .into(),
            LedgerTransactionRecorded {
                transaction_id: Uuid::from_u128(8),
                transaction: LedgerTransaction {
                    kind: EntryKind::CodDelivered,
                    postings: vec![
                        posting(Account::Pending, cod.net_profit.0),
                        posting(Account::Courier, -cod.grand_total.0),
                        posting(Account::Platform, cod.grand_total.0 - cod.net_profit.0),
                    ],
                    order_id: Some(order(5)),
                    withdrawal_id: None,
                    cod: Some(cod),
                    note: String::new(),
                },
                occurred_at: Timestamp(1_760_000_000_000_001),
            }
            .into(),
            LedgerTransactionRecorded {
                transaction_id: Uuid::from_u128(9),
                transaction: LedgerTransaction {
                    kind: EntryKind::WithdrawalRequested,
                    postings: vec![
                        posting(Account::Available, -5_000_000_000),
                        posting(Account::Withdrawing, 5_000_000_000),
                    ],
                    order_id: None,
                    withdrawal_id: Some(Uuid::from_u128(10)),
                    cod: None,
                    note: "tarik saldo".into(),
                },
                occurred_at: Timestamp(0),
            }
            .into(),
            MessageReceived {
                conversation_id: Uuid::from_u128(11),
                message_id: Uuid::from_u128(12),
                text: "kak, ukuran M masih ada? 🙏".into(),
                attachment: None,
                sent_at: Timestamp(1_760_000_000_000_002),
            }
            .into(),
            MessageSent {
                conversation_id: Uuid::from_u128(11),
                message_id: Uuid::from_u128(13),
                staff_id: "cs.rina".into(),
                text: "Masih ada kak, silakan diorder".into(),
                attachment: None,
                template_id: None,
                sent_at: Timestamp(1_760_000_000_000_003),
            }
            .into(),
            MessageSent {
                conversation_id: Uuid::from_u128(11),
                message_id: Uuid::from_u128(14),
                staff_id: String::new(),
                text: String::new(),
                attachment: None,
                template_id: Some(Uuid::from_u128(15)),
                sent_at: Timestamp(i64::MIN),
            }
            .into(),
            StockRestocked {
                sku: Sku::parse("TOPI").unwrap(),
                warehouse_id: warehouse,
                order_id: order(16),
                quantity: 1,
            }
            .into(),
            OrderReadyForPickup {
                order_id: order(17),
            }
            .into(),
            OrderReturnStarted {
                order_id: order(17),
                reason: "paket rusak".into(),
            }
            .into(),
            OrderReturnReceived {
                order_id: order(17),
            }
            .into(),
            OrderRefunded {
                order_id: order(17),
                amount: Money(45_000),
                note: String::new(),
            }
            .into(),
            OrderLost {
                order_id: order(18),
                note: "hilang di gudang kurir".into(),
            }
            .into(),
            ConversationStarted {
                conversation_id: Uuid::from_u128(19),
                channel: ChatChannel::Whatsapp,
                handle: "6281234567890".into(),
                name: "Bu Sari".into(),
                customer_id: Some(CustomerId(Uuid::from_u128(20))),
                started_at: Timestamp(1_760_000_000_000_004),
            }
            .into(),
            ConversationStarted {
                conversation_id: Uuid::from_u128(21),
                channel: ChatChannel::Tokopedia,
                handle: String::new(),
                name: "Ahmad 🛒".into(),
                customer_id: None,
                started_at: Timestamp(-1),
            }
            .into(),
            ConversationLabelAdded {
                conversation_id: Uuid::from_u128(19),
                label: "grosir".into(),
            }
            .into(),
            ConversationLabelRemoved {
                conversation_id: Uuid::from_u128(19),
                label: "grosir".into(),
            }
            .into(),
            ConversationAssigned {
                conversation_id: Uuid::from_u128(19),
                staff_id: "cs.rina".into(),
            }
            .into(),
            ConversationUnassigned {
                conversation_id: Uuid::from_u128(19),
            }
            .into(),
            ConversationResolved {
                conversation_id: Uuid::from_u128(19),
                resolved_by: "cs.rina".into(),
                resolved_at: Timestamp(1_760_000_000_000_005),
            }
            .into(),
            ConversationReopened {
                conversation_id: Uuid::from_u128(19),
            }
            .into(),
            CheckoutStarted {
                checkout_id: Uuid::from_u128(22),
                domain: "toko.example".into(),
                currency: Currency::Idr,
                content: cart(false),
                total: Money(110_000),
                created_at: Timestamp(1_760_000_000_000_006),
            }
            .into(),
            CheckoutUpdated {
                checkout_id: Uuid::from_u128(22),
                content: cart(true),
                total: Money(i64::MAX),
                updated_at: Timestamp(1_760_000_000_000_007),
            }
            .into(),
            CheckoutCompleted {
                checkout_id: Uuid::from_u128(22),
                order_id: order(23),
                completed_at: Timestamp(1_760_000_000_000_008),
            }
            .into(),
            CheckoutAbandoned {
                checkout_id: Uuid::from_u128(24),
                abandoned_at: Timestamp(1_760_000_000_000_009),
                last_activity_at: Timestamp(0),
            }
            .into(),
        ]
    }

    #[test]
    fn a_variant_is_found_by_its_name_and_nothing_else_is_one() {
        let text = |t: &[u8]| {
            let mut b = vec![0xa0 | t.len() as u8];
            b.extend_from_slice(t);
            b
        };
        let read = |b: &[u8]| FieldReader::new(b).variant::<Currency>();
        assert_eq!(read(&text(b"IDR")), Some(Currency::Idr));
        assert_eq!(
            read(&rmp_serde::to_vec(&Currency::Idr).unwrap()),
            Some(Currency::Idr)
        );
        for not_one in [&b"idr"[..], b"IDRX", b"ID", b"", b"\xffDR"] {
            assert_eq!(read(&text(not_one)), None, "{not_one:?}");
        }
        let account = rmp_serde::to_vec(&Account::Withdrawing).unwrap();
        assert_eq!(
            FieldReader::new(&account).variant::<Account>(),
            Some(Account::Withdrawing)
        );
        assert_eq!(
            FieldReader::new(&account).variant::<String>(),
            None,
            "not an enum"
        );
        // What follows is left to read.
        let mut two = text(b"IDR");
        two.push(0x07);
        let mut rd = FieldReader::new(&two);
        assert_eq!(rd.variant::<Currency>(), Some(Currency::Idr));
        assert_eq!(rd.int(), Some(7));
        assert!(rd.is_done());
    }

    #[test]
    fn what_this_build_writes_is_read_field_by_field_as_it_was() {
        let events = events();
        let mut types: Vec<_> = events.iter().map(DomainEvent::event_type).collect();
        types.sort_unstable();
        types.dedup();
        assert_eq!(types.len(), 30, "every type read_event reads");
        for e in events {
            for payload in encodings(&e) {
                assert_eq!(
                    read_event(e.event_type().as_bytes(), &payload),
                    Some(e.clone())
                );
                assert_eq!(
                    DomainEvent::decode(e.event_type(), &payload),
                    Ok(Some(e.clone()))
                );
            }
        }
    }

    /// The payload as this build writes it (positional), and as builds
    /// before positional payloads wrote it (with field names).
    fn encodings(e: &DomainEvent) -> [Vec<u8>; 2] {
        let named = rmp_serde::to_vec_named(e).unwrap();
        let positional = e.encode();
        assert!(positional.len() < named.len());
        [positional, named]
    }

    #[test]
    fn a_payload_of_another_type_or_shape_is_left_to_serde() {
        let shipped = OrderShipped {
            order_id: order(3),
            awb: "JNE1".into(),
        };
        let [positional, named] = encodings(&shipped.clone().into());
        // Another type's name. (A positional payload of another type of
        // the same shape, two fields of the same kinds, is read as serde
        // reads it: the envelope, not the payload, tells the type.)
        assert_eq!(read_event(b"OrderProcessing", &positional), None);
        assert_eq!(read_event(b"OrderProcessing", &named), None);
        assert_eq!(read_event(b"OrderReturnStarted", &named), None);
        agrees("OrderReturnStarted", &positional).unwrap();
        // A field more, as a newer build might write.
        #[derive(serde::Serialize)]
        struct Newer<'a> {
            order_id: OrderId,
            awb: &'a str,
            courier: &'a str,
        }
        let newer = Newer {
            order_id: order(3),
            awb: "JNE1",
            courier: "JNE",
        };
        // With field names, serde passes over the one it does not know.
        let newer_named = rmp_serde::to_vec_named(&newer).unwrap();
        assert_eq!(read_event(b"OrderShipped", &newer_named), None);
        assert_eq!(
            DomainEvent::decode("OrderShipped", &newer_named),
            Ok(Some(shipped.into()))
        );
        // Positional, it is an error, not a misreading: a build must know
        // every field of what it reads (see `events`).
        let newer_positional = rmp_serde::to_vec(&newer).unwrap();
        assert_eq!(read_event(b"OrderShipped", &newer_positional), None);
        let error = DomainEvent::decode("OrderShipped", &newer_positional).unwrap_err();
        assert_eq!(error.event_type, "OrderShipped");
        // A message with an attachment: serde reads it.
        let with_image = MessageReceived {
            conversation_id: Uuid::from_u128(1),
            message_id: Uuid::from_u128(2),
            text: String::new(),
            attachment: Some(Attachment::Image {
                url: "https://example.com/kaos.jpg".into(),
            }),
            sent_at: Timestamp(3),
        };
        let payload = DomainEvent::from(with_image.clone()).encode();
        assert_eq!(read_event(b"MessageReceived", &payload), None);
        assert_eq!(
            DomainEvent::decode("MessageReceived", &payload),
            Ok(Some(with_image.into()))
        );
    }

    /// Where the field-by-field reader answers, serde answers the same.
    fn agrees(event_type: &str, payload: &[u8]) -> Result<(), TestCaseError> {
        if let Some(fast) = read_event(event_type.as_bytes(), payload) {
            let by_serde = DomainEvent::decode_serde(event_type, payload);
            prop_assert_eq!(by_serde, Ok(Some(fast)));
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn a_damaged_payload_is_read_as_serde_reads_it_or_left_to_serde(
            which in any::<prop::sample::Index>(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0u8..3,
            named_form in any::<bool>(),
        ) {
            let events = events();
            let e = which.get(&events);
            let [positional, named] = encodings(e);
            let mut payload = if named_form { named } else { positional };
            let i = at.index(payload.len());
            match how {
                0 => payload[i] = byte,
                1 => payload.truncate(i),
                _ => payload.insert(i, byte),
            }
            agrees(e.event_type(), &payload)?;
        }
    }

    #[test]
    fn every_byte_changed_to_every_value_is_read_as_serde_reads_it_or_left_to_serde() {
        for e in events() {
            for payload in encodings(&e) {
                for i in 0..payload.len() {
                    for byte in damaging_bytes(payload[i]) {
                        let mut changed = payload.clone();
                        changed[i] = byte;
                        agrees(e.event_type(), &changed).unwrap();
                    }
                }
            }
        }
    }
}
