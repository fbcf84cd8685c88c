//! An order placed, read for the projections without copying its texts.
//!
//! `OrderPlaced` is the biggest payload of a shop's log and, in a rebuild,
//! the commonest big one: decoding it into the engine's owned event (a
//! `String` for every name, phone, address, SKU and courier) was a third
//! of a fold's time. The projections keep none of those strings (they
//! intern them, see [`crate::intern`]), so they read the payload into
//! [`PlacedRef`], whose texts borrow from the payload's bytes. The fields
//! the projections do not use are required (where the engine requires
//! them) but not read ([`IgnoredAny`]), so a payload the engine's decoder
//! rejects for a missing field is rejected here too.
//!
//! A rebuild reads its orders placed with a [`PartyCache`]: a sender or
//! receiver whose bytes the cache has read before is given as that shared
//! snapshot ([`PlacedParty::Shared`]) instead of texts borrowed from the
//! payload.
//!
//! [`PlacedRef::from`] borrows the same view from an owned event (a fold
//! that decodes on one thread and applies on another sends owned events);
//! the tests check that both ways give the same view.

use kedai_engine::Timestamp;
use kedai_engine::domain::catalog::CustomerCategory;
use kedai_engine::domain::events::OrderPlaced;
use kedai_engine::domain::fields::FieldReader;
use kedai_engine::domain::ids::{CustomerId, OrderId};
use kedai_engine::domain::money::Money;
use kedai_engine::domain::order::{Channel, CustomerSnapshot, PlacedLine, Totals};
use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::intern::{Party, opt_text_eq, text_eq};

/// What the projections read of an order placed. Fields of the event
/// they do not use, and the engine requires, are required here too and
/// skipped unread. The fields are in the event's order: a payload is read
/// by position (see `kedai_engine::domain::fields`), and serde then takes
/// the fields in the order they are declared here; an optional field of
/// the event is optional here too (`note`, a line's `discount`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PlacedRef<'a> {
    pub order_id: OrderId,
    pub channel: Channel,
    #[serde(borrow)]
    pub order_source: Option<&'a str>,
    #[serde(borrow)]
    pub sender: PlacedParty<'a>,
    #[serde(borrow)]
    pub receiver: PlacedParty<'a>,
    #[serde(borrow)]
    pub lines: Vec<LineRef<'a>>,
    #[serde(borrow)]
    pub shipping: ShippingRef<'a>,
    pub cod: bool,
    costs: IgnoredAny,
    pub totals: Totals,
    #[serde(default)]
    note: IgnoredAny,
    pub placed_at: Timestamp,
}

/// An order's sender or receiver, as [`CustomerSnapshot`] but borrowed.
/// It compares as the snapshot's fields in order, which is how
/// [`crate::intern::Interner::party`] tells a shared snapshot among those
/// of the same customer.
#[derive(Debug, Clone, Copy, Eq, Deserialize)]
pub struct PartyRef<'a> {
    pub customer_id: CustomerId,
    pub name: &'a str,
    #[serde(borrow)]
    pub phone: Option<&'a str>,
    pub category: CustomerCategory,
    #[serde(borrow)]
    pub address: Option<&'a str>,
    #[serde(borrow)]
    pub district: Option<&'a str>,
    #[serde(borrow)]
    pub city: Option<&'a str>,
    #[serde(borrow)]
    pub province: Option<&'a str>,
    #[serde(borrow)]
    pub postal_code: Option<&'a str>,
}

impl PartialEq for PartyRef<'_> {
    /// Field by field, as a derived `==` would, with the texts compared
    /// by [`text_eq`] (the fold compares the snapshot of every order
    /// placed with the ones its customer had before).
    fn eq(&self, other: &Self) -> bool {
        self.customer_id == other.customer_id
            && text_eq(self.name, other.name)
            && opt_text_eq(self.phone, other.phone)
            && self.category == other.category
            && opt_text_eq(self.address, other.address)
            && opt_text_eq(self.district, other.district)
            && opt_text_eq(self.city, other.city)
            && opt_text_eq(self.province, other.province)
            && opt_text_eq(self.postal_code, other.postal_code)
    }
}

/// An order's sender or receiver as read: borrowed from the payload, or
/// the shared snapshot a [`PartyCache`] knew by its bytes.
#[derive(Debug, Clone)]
pub enum PlacedParty<'a> {
    Borrowed(PartyRef<'a>),
    Shared(Party),
}

impl PlacedParty<'_> {
    /// The snapshot's fields.
    pub fn as_party_ref(&self) -> PartyRef<'_> {
        match self {
            PlacedParty::Borrowed(p) => *p,
            PlacedParty::Shared(p) => PartyRef::from(&**p),
        }
    }

    /// The owned snapshot.
    pub fn to_snapshot(&self) -> CustomerSnapshot {
        self.as_party_ref().to_snapshot()
    }
}

impl PartialEq for PlacedParty<'_> {
    /// As their fields compare, whether borrowed or shared.
    fn eq(&self, other: &Self) -> bool {
        self.as_party_ref() == other.as_party_ref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for PlacedParty<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<PlacedParty<'a>, D::Error> {
        PartyRef::deserialize(d).map(PlacedParty::Borrowed)
    }
}

/// The customer snapshots of the orders placed read so far, each with the
/// bytes it was read from, found by its customer's id (the last one read
/// of each customer: one entry, found with one probe). A rebuild reads
/// the same sender (the shop) and the same few receivers in order after
/// order: an order's party whose bytes are those of a snapshot read
/// before is that snapshot, without reading (and checking as UTF-8) its
/// nine fields again, nor comparing them with the interner's. (MessagePack
/// is read to the same end whatever follows a value, so bytes that begin
/// with a whole value read before hold that value first.)
///
/// Held by a fold's thread for the fold's length; it forgets everything
/// when its bytes pass [`PARTY_CACHE_BYTES`], so a log of many customers
/// costs a bounded amount of memory.
#[derive(Debug, Clone)]
pub struct PartyCache {
    known: HashMap<CustomerId, Encoded, foldhash::fast::FixedState>,
    /// About the memory held: each snapshot's bytes and bookkeeping.
    bytes: usize,
    limit: usize,
}

impl Default for PartyCache {
    fn default() -> PartyCache {
        PartyCache::with_limit(PARTY_CACHE_BYTES)
    }
}

/// A snapshot and the bytes it was read from.
type Encoded = (Box<[u8]>, Party);

/// How much a [`PartyCache`] holds before it starts again.
pub const PARTY_CACHE_BYTES: usize = 16 << 20;

/// What a [`PartyCache`] counts for an entry besides its bytes and its
/// snapshot: the entry and its share of the map.
const ENTRY_BYTES: usize = 64;

/// The memory a [`PartyCache`] counts for an entry: its bytes, the
/// bookkeeping, and the snapshot with its texts (which the cache may be
/// the only one to hold: after it started again, a snapshot it reads
/// anew is a copy of one the shop's interner keeps).
fn cost(encoded: &[u8], party: &Party) -> usize {
    let p = PartyRef::from(&**party);
    let texts = [
        p.phone,
        p.address,
        p.district,
        p.city,
        p.province,
        p.postal_code,
    ]
    .iter()
    .flatten()
    .map(|t| t.len())
    .sum::<usize>()
        + p.name.len();
    encoded.len() + ENTRY_BYTES + std::mem::size_of::<CustomerSnapshot>() + 16 + texts
}

impl PartyCache {
    /// A cache that starts again when it holds about `limit` bytes.
    pub fn with_limit(limit: usize) -> PartyCache {
        PartyCache {
            known: HashMap::default(),
            bytes: 0,
            limit,
        }
    }

    /// The party `rd` is at, read if its bytes are new; `None` as
    /// [`FieldReader`]'s readers (give up and ask serde).
    fn read<'a>(&mut self, rd: &mut FieldReader<'a>) -> Option<PlacedParty<'a>> {
        let at = rd.rest();
        let id = {
            let mut peek = rd.clone();
            peek.map(9)?;
            CustomerId(peek.field("customer_id")?.uuid()?)
        };
        if let Some((encoded, party)) = self.known.get(&id)
            && rd.strip(encoded)
        {
            return Some(PlacedParty::Shared(Arc::clone(party)));
        }
        let party = rd.party()?;
        let encoded = &at[..at.len() - rd.rest().len()];
        let shared = Arc::new(party.to_snapshot());
        self.remember(id, encoded, &shared);
        Some(PlacedParty::Shared(shared))
    }

    fn remember(&mut self, id: CustomerId, encoded: &[u8], party: &Party) {
        let cost = cost(encoded, party);
        if cost > self.limit {
            return;
        }
        if let Some((forgotten, party)) = self.known.remove(&id) {
            self.bytes -= self::cost(&forgotten, &party);
        }
        if self.bytes + cost > self.limit {
            self.known.clear();
            self.bytes = 0;
        }
        self.known.insert(id, (encoded.into(), Arc::clone(party)));
        self.bytes += cost;
    }

    /// How many snapshots are held, and about how many bytes.
    #[cfg(test)]
    fn held(&self) -> (usize, usize) {
        (self.known.len(), self.bytes)
    }
}

/// What the projections read of an order line (its fields in the
/// event's order, as [`PlacedRef`]'s).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LineRef<'a> {
    pub sku: &'a str,
    product_id: IgnoredAny,
    pub product_name: &'a str,
    #[serde(borrow)]
    pub category: Option<&'a str>,
    variation: IgnoredAny,
    kind: IgnoredAny,
    pub quantity: i64,
    pub unit_price: Money,
    pub unit_cost: Money,
    #[serde(default)]
    discount: IgnoredAny,
    discount_amount: IgnoredAny,
    pub line_total: Money,
    weight_grams: IgnoredAny,
    allocations: IgnoredAny,
}

/// The courier and service of an order.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ShippingRef<'a> {
    pub courier: &'a str,
    pub service: &'a str,
    cost: IgnoredAny,
}

impl<'a> PlacedRef<'a> {
    /// Reads an `OrderPlaced` payload (MessagePack, as the log holds it).
    /// A payload of the shape this build writes is read field by field
    /// ([`read`]); anything else, and every error, goes through serde,
    /// which has the last word.
    pub fn decode(payload: &'a [u8]) -> Result<PlacedRef<'a>, rmp_serde::decode::Error> {
        Self::decode_with(payload, None)
    }

    /// As [`PlacedRef::decode`], with the parties found in `parties` where
    /// their bytes are known there (and remembered there where not).
    pub fn decode_with(
        payload: &'a [u8],
        parties: Option<&mut PartyCache>,
    ) -> Result<PlacedRef<'a>, rmp_serde::decode::Error> {
        match read(payload, parties) {
            Some(placed) => Ok(placed),
            None => rmp_serde::from_slice(payload),
        }
    }
}

/// The payload read field by field, if it has exactly the shape this
/// build writes: maps with every field, in declaration order, keys as
/// short strings, ids as 16 bytes, texts as strings, and nothing after.
/// `None` for anything else (serde then decides). Where it answers, it
/// answers as serde does (a proptest checks it on damaged payloads);
/// it is about twice as fast, since it compares keys as bytes instead of
/// checking and matching them as text.
fn read<'a>(payload: &'a [u8], mut parties: Option<&mut PartyCache>) -> Option<PlacedRef<'a>> {
    let rd = &mut FieldReader::new(payload);
    let mut party = |rd: &mut FieldReader<'a>| match parties.as_deref_mut() {
        Some(cache) => cache.read(rd),
        None => rd.party().map(PlacedParty::Borrowed),
    };
    rd.map(12)?;
    let order_id = OrderId(rd.field("order_id")?.uuid()?);
    let channel = rd.field("channel")?.variant()?;
    let order_source = rd.field("order_source")?.opt_text()?;
    let sender = party(rd.field("sender")?)?;
    let receiver = party(rd.field("receiver")?)?;
    let count = rd.field("lines")?.array()?;
    let mut lines = Vec::with_capacity(count.min(64) as usize);
    for _ in 0..count {
        lines.push(rd.line()?);
    }
    rd.field("shipping")?.map(3)?;
    let shipping = ShippingRef {
        courier: rd.field("courier")?.text()?,
        service: rd.field("service")?.text()?,
        cost: rd.field("cost")?.skip()?,
    };
    let cod = rd.field("cod")?.bool()?;
    let costs = rd.field("costs")?.skip()?;
    rd.field("totals")?.map(9)?;
    let totals = Totals {
        gross: rd.field("gross")?.money()?,
        line_discounts: rd.field("line_discounts")?.money()?,
        subtotal: rd.field("subtotal")?.money()?,
        order_discounts: rd.field("order_discounts")?.money()?,
        other_costs: rd.field("other_costs")?.money()?,
        insurance: rd.field("insurance")?.money()?,
        shipping: rd.field("shipping")?.money()?,
        total: rd.field("total")?.money()?,
        cost_of_goods: rd.field("cost_of_goods")?.money()?,
    };
    let note = rd.field("note")?.skip()?;
    let placed_at = Timestamp(rd.field("placed_at")?.int()?);
    if !rd.is_done() {
        return None;
    }
    Some(PlacedRef {
        order_id,
        channel,
        order_source,
        sender,
        receiver,
        lines,
        shipping,
        cod,
        totals,
        placed_at,
        costs,
        note,
    })
}

/// What is left of a payload being read (see [`FieldReader`]), with the
/// parts of an order placed.
trait OrderFields<'a> {
    fn party(&mut self) -> Option<PartyRef<'a>>;
    fn line(&mut self) -> Option<LineRef<'a>>;
}

impl<'a> OrderFields<'a> for FieldReader<'a> {
    fn party(&mut self) -> Option<PartyRef<'a>> {
        self.map(9)?;
        Some(PartyRef {
            customer_id: CustomerId(self.field("customer_id")?.uuid()?),
            name: self.field("name")?.text()?,
            phone: self.field("phone")?.opt_text()?,
            category: self.field("category")?.variant()?,
            address: self.field("address")?.opt_text()?,
            district: self.field("district")?.opt_text()?,
            city: self.field("city")?.opt_text()?,
            province: self.field("province")?.opt_text()?,
            postal_code: self.field("postal_code")?.opt_text()?,
        })
    }

    fn line(&mut self) -> Option<LineRef<'a>> {
        self.map(14)?;
        let sku = self.field("sku")?.text()?;
        let product_id = self.field("product_id")?.skip()?;
        let product_name = self.field("product_name")?.text()?;
        let category = self.field("category")?.opt_text()?;
        let variation = self.field("variation")?.skip()?;
        let kind = self.field("kind")?.skip()?;
        let quantity = self.field("quantity")?.int()?;
        let unit_price = self.field("unit_price")?.money()?;
        let unit_cost = self.field("unit_cost")?.money()?;
        let discount = self.field("discount")?.skip()?;
        let discount_amount = self.field("discount_amount")?.skip()?;
        let line_total = self.field("line_total")?.money()?;
        let weight_grams = self.field("weight_grams")?.skip()?;
        let allocations = self.field("allocations")?.skip()?;
        Some(LineRef {
            sku,
            product_name,
            category,
            quantity,
            unit_price,
            unit_cost,
            line_total,
            product_id,
            variation,
            kind,
            discount,
            discount_amount,
            weight_grams,
            allocations,
        })
    }
}

impl<'a> From<&'a OrderPlaced> for PlacedRef<'a> {
    fn from(e: &'a OrderPlaced) -> PlacedRef<'a> {
        PlacedRef {
            order_id: e.order_id,
            channel: e.channel,
            order_source: e.order_source.as_deref(),
            sender: PlacedParty::Borrowed(PartyRef::from(&e.sender)),
            receiver: PlacedParty::Borrowed(PartyRef::from(&e.receiver)),
            lines: e.lines.iter().map(LineRef::from).collect(),
            shipping: ShippingRef {
                courier: &e.shipping.courier,
                service: &e.shipping.service,
                cost: IgnoredAny,
            },
            cod: e.cod,
            totals: e.totals,
            placed_at: e.placed_at,
            costs: IgnoredAny,
            note: IgnoredAny,
        }
    }
}

impl<'a> From<&'a CustomerSnapshot> for PartyRef<'a> {
    fn from(p: &'a CustomerSnapshot) -> PartyRef<'a> {
        PartyRef {
            customer_id: p.customer_id,
            name: &p.name,
            phone: p.phone.as_deref(),
            category: p.category,
            address: p.address.as_deref(),
            district: p.district.as_deref(),
            city: p.city.as_deref(),
            province: p.province.as_deref(),
            postal_code: p.postal_code.as_deref(),
        }
    }
}

impl PartyRef<'_> {
    /// The owned snapshot.
    pub fn to_snapshot(&self) -> CustomerSnapshot {
        CustomerSnapshot {
            customer_id: self.customer_id,
            name: self.name.to_owned(),
            phone: self.phone.map(str::to_owned),
            category: self.category,
            address: self.address.map(str::to_owned),
            district: self.district.map(str::to_owned),
            city: self.city.map(str::to_owned),
            province: self.province.map(str::to_owned),
            postal_code: self.postal_code.map(str::to_owned),
        }
    }
}

impl<'a> From<&'a PlacedLine> for LineRef<'a> {
    fn from(l: &'a PlacedLine) -> LineRef<'a> {
        LineRef {
            sku: l.sku.as_str(),
            product_name: &l.product_name,
            category: l.category.as_deref(),
            quantity: l.quantity,
            unit_price: l.unit_price,
            unit_cost: l.unit_cost,
            line_total: l.line_total,
            product_id: IgnoredAny,
            variation: IgnoredAny,
            kind: IgnoredAny,
            discount: IgnoredAny,
            discount_amount: IgnoredAny,
            weight_grams: IgnoredAny,
            allocations: IgnoredAny,
        }
    }
}

#[cfg(test)]
mod tests {
    use kedai_engine::domain::catalog::ProductKind;
    use kedai_engine::domain::ids::{ProductId, Sku, WarehouseId};
    use kedai_engine::domain::order::{Allocation, Amount, AppliedCost, CostCategory, Shipping};
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;
    use uuid::Uuid;

    use super::*;

    fn party(n: u128, full: bool) -> CustomerSnapshot {
        let some = |s: &str| full.then(|| s.to_owned());
        CustomerSnapshot {
            customer_id: CustomerId(Uuid::from_u128(n)),
            name: format!("Pelanggan {n}"),
            phone: some("0812-3456-7890"),
            category: CustomerCategory::Reseller,
            address: some("Jl. Ijen 12"),
            district: some("Klojen"),
            city: some("Malang"),
            province: some("Jawa Timur"),
            postal_code: some("65119"),
        }
    }

    fn line(sku: &str, category: Option<&str>) -> PlacedLine {
        PlacedLine {
            sku: Sku::parse(sku).unwrap(),
            product_id: ProductId(Uuid::from_u128(9)),
            product_name: format!("Kaos {sku}"),
            category: category.map(str::to_owned),
            variation: "M / merah".into(),
            kind: ProductKind::Stocked,
            quantity: 2,
            unit_price: Money(50_000),
            unit_cost: Money(30_000),
            discount: Some(Amount::Nominal {
                nominal: Money(5_000),
            }),
            discount_amount: Money(10_000),
            line_total: Money(90_000),
            weight_grams: 200,
            allocations: vec![Allocation {
                warehouse_id: WarehouseId(Uuid::from_u128(3)),
                quantity: 2,
            }],
        }
    }

    fn order() -> OrderPlaced {
        OrderPlaced {
            order_id: OrderId(Uuid::from_u128(42)),
            channel: Channel::Whatsapp,
            order_source: Some("Toko Malang".into()),
            sender: party(1, true),
            receiver: party(2, false),
            lines: vec![line("KAOS-M", Some("Kaos")), line("TOPI", None)],
            shipping: Shipping {
                courier: "JNE".into(),
                service: "REG".into(),
                cost: Money(10_000),
            },
            cod: true,
            costs: vec![AppliedCost {
                name: "Asuransi".into(),
                category: CostCategory::Insurance,
                amount: Amount::Nominal {
                    nominal: Money(1_000),
                },
                value: Money(1_000),
            }],
            totals: Totals {
                gross: Money(200_000),
                total: Money(191_000),
                ..Totals::default()
            },
            note: Some("titip di satpam".into()),
            placed_at: Timestamp(1_760_000_000_000_000),
        }
    }

    /// Read back while loading, equal customers, texts and line items are
    /// one allocation each as soon as they are read, whether the reader
    /// lends the texts (a slice) or not (a stream); the shop's interner
    /// takes them over, so orders placed later share them too.
    #[test]
    fn a_loaded_view_shares_equal_values_as_they_are_read() {
        use std::sync::Arc;

        use kedai_engine::{Actor, Role};

        use crate::At;
        use crate::intern::{Text, loading};
        use crate::orders::{OrderSummary, OrdersView};

        let actor = Actor::new(Role::Staff, "ayu");
        let place = |view: &mut OrdersView, n: u64| {
            let mut e = order();
            e.order_id = OrderId(Uuid::from_u128(u128::from(n)));
            let at = At {
                position: n,
                version: 1,
                recorded_at: Timestamp(1_760_000_000_000_000),
                actor: &actor,
            };
            view.place(at, &PlacedRef::from(&e));
        };
        let mut view = OrdersView::default();
        for n in 1..=3 {
            place(&mut view, n);
        }
        let shared = |view: &OrdersView| {
            let o: Vec<&OrderSummary> = view.all().iter().collect();
            let (first, last) = (o[0], o[o.len() - 1]);
            [
                Arc::ptr_eq(&first.sender, &last.sender),
                Arc::ptr_eq(&first.receiver, &last.receiver),
                Text::ptr_eq(&first.courier, &last.courier),
                Arc::ptr_eq(&first.lines[1].item, &last.lines[1].item),
            ]
        };
        assert_eq!(shared(&view), [true; 4]);
        let bytes = rmp_serde::to_vec(&view).unwrap();

        let plain: OrdersView = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(plain, view);
        assert_eq!(shared(&plain), [false; 4], "not loading: nothing shared");

        let lent: OrdersView = loading(|| rmp_serde::from_slice(&bytes)).unwrap();
        let streamed: OrdersView = loading(|| rmp_serde::from_read(&bytes[..])).unwrap();
        for mut loaded in [lent, streamed] {
            assert_eq!(shared(&loaded), [true; 4]);
            loaded.rebuild_indexes();
            assert_eq!(loaded, view);
            assert_eq!(shared(&loaded), [true; 4]);
            place(&mut loaded, 4);
            assert_eq!(shared(&loaded), [true; 4], "an order placed after loading");
        }
    }

    /// The payload as this build writes it (positional), and as builds
    /// before positional payloads wrote it (with field names).
    fn encodings(e: &OrderPlaced) -> [Vec<u8>; 2] {
        let positional = kedai_engine::domain::DomainEvent::from(e.clone()).encode();
        assert_eq!(positional, rmp_serde::to_vec(e).unwrap());
        [positional, rmp_serde::to_vec_named(e).unwrap()]
    }

    #[test]
    fn the_payload_reads_as_the_owned_event_does() {
        let e = order();
        for payload in encodings(&e) {
            let decoded = PlacedRef::decode(&payload).unwrap();
            assert_eq!(decoded, PlacedRef::from(&e));
            assert_eq!(
                read(&payload, None),
                Some(decoded.clone()),
                "read field by field"
            );
            let by_serde: PlacedRef = rmp_serde::from_slice(&payload).unwrap();
            assert_eq!(by_serde, decoded);
            let read = decoded;
            assert_eq!(read.sender.to_snapshot(), e.sender);
            assert_eq!(read.receiver.to_snapshot(), e.receiver);
            assert_eq!(read.lines[1].category, None);
        }
    }

    #[test]
    fn a_positional_payload_short_of_a_field_is_rejected() {
        let [mut payload, _] = encodings(&order());
        // Twelve fields, the last the time (an unsigned 64-bit integer):
        // say eleven, and cut the time off.
        assert_eq!(payload[0], 0x9c);
        payload[0] = 0x9b;
        assert_eq!(payload[payload.len() - 9], 0xcf);
        payload.truncate(payload.len() - 9);
        let owned = kedai_engine::domain::DomainEvent::decode("OrderPlaced", &payload);
        assert!(owned.is_err(), "the engine rejects it");
        assert_eq!(read(&payload, None), None);
        let err = PlacedRef::decode(&payload).unwrap_err().to_string();
        assert!(err.contains("12 elements"), "{err}");
    }

    #[test]
    fn a_payload_without_a_field_the_engine_requires_is_rejected() {
        let mut payload = rmp_serde::to_vec_named(&order()).unwrap();
        // Rename the key `costs` (a string of 5 bytes) to an unknown one.
        let key = b"\xa5costs";
        let at = payload.windows(key.len()).position(|w| w == key).unwrap();
        payload[at + 4] = b'x';
        let owned = kedai_engine::domain::DomainEvent::decode("OrderPlaced", &payload);
        assert!(owned.is_err(), "the engine rejects it");
        let err = PlacedRef::decode(&payload).unwrap_err().to_string();
        assert!(err.contains("costs"), "{err}");
    }

    /// The payloads the field-by-field reader is tried on: orders with
    /// every optional text and with none, each in both encodings.
    fn payloads() -> Vec<Vec<u8>> {
        let mut bare = order();
        bare.order_source = None;
        bare.sender = party(3, false);
        bare.lines = vec![line("X", None)];
        bare.costs.clear();
        bare.note = None;
        [order(), bare].iter().flat_map(encodings).collect()
    }

    /// A cache that has read every payload of [`payloads`].
    fn warm_cache() -> PartyCache {
        let mut cache = PartyCache::default();
        for payload in payloads() {
            read(&payload, Some(&mut cache)).unwrap();
        }
        assert_eq!(cache.held().0, 3, "the last encoding of three snapshots");
        cache
    }

    /// Where the field-by-field reader answers, serde gives the same; and
    /// a cache that knows the undamaged payloads' parties changes nothing.
    fn agrees(payload: &[u8], cache: &PartyCache) -> Result<(), TestCaseError> {
        let fast = read(payload, None);
        prop_assert_eq!(read(payload, Some(&mut cache.clone())), fast.clone());
        if let Some(fast) = fast {
            let by_serde = rmp_serde::from_slice::<PlacedRef>(payload);
            prop_assert_eq!(by_serde.ok(), Some(fast));
        }
        Ok(())
    }

    #[test]
    fn a_party_read_before_is_the_snapshot_read_then() {
        let mut cache = PartyCache::default();
        for payload in payloads() {
            let plain = read(&payload, None).unwrap();
            let first = read(&payload, Some(&mut cache)).unwrap();
            let held = cache.held();
            let again = read(&payload, Some(&mut cache)).unwrap();
            assert_eq!(cache.held(), held, "nothing new remembered");
            assert_eq!(first, plain);
            assert_eq!(again, plain);
            for (a, b) in [
                (&first.sender, &again.sender),
                (&first.receiver, &again.receiver),
            ] {
                let (PlacedParty::Shared(a), PlacedParty::Shared(b)) = (a, b) else {
                    panic!("a cache hands out shared snapshots");
                };
                assert!(Arc::ptr_eq(a, b), "the very snapshot read before");
            }
        }
        // The interner keeps the cache's snapshot: the next order finds
        // it by its address.
        let payload = &payloads()[0];
        let placed = read(payload, Some(&mut cache)).unwrap();
        let mut interner = crate::intern::Interner::default();
        let held = interner.placed_party(&placed.receiver);
        let PlacedParty::Shared(read_one) = &placed.receiver else {
            panic!("shared");
        };
        assert!(Arc::ptr_eq(&held, read_one));
        let borrowed = read(payload, None).unwrap();
        assert!(Arc::ptr_eq(
            &interner.placed_party(&borrowed.receiver),
            &held
        ));
    }

    #[test]
    fn a_party_cache_holds_a_customers_last_snapshot_and_a_bounded_amount() {
        let e = order();
        let mut cache = PartyCache::with_limit(10_000);
        let (mut restarted, mut before) = (false, 0);
        for n in 0..400u32 {
            let mut e = e.clone();
            // A new address for the same receiver every time, and a new
            // receiver every tenth time.
            e.receiver.customer_id = CustomerId(Uuid::from_u128(u128::from(n / 10)));
            e.receiver.address = Some(format!("Jl. Mawar {n}"));
            let payload = kedai_engine::domain::DomainEvent::from(e.clone()).encode();
            let placed = read(&payload, Some(&mut cache)).unwrap();
            assert_eq!(placed.receiver.to_snapshot(), e.receiver);
            let (held, bytes) = cache.held();
            assert!(bytes <= 10_000, "{bytes} bytes held");
            let counted: usize = cache.known.values().map(|(e, p)| cost(e, p)).sum();
            assert_eq!(bytes, counted, "every entry counted once");
            restarted |= held < before;
            before = held;
            let id = e.receiver.customer_id;
            let (_, last) = &cache.known[&id];
            assert_eq!(**last, e.receiver, "the customer's last snapshot");
        }
        assert!(restarted, "it started again");
    }

    proptest! {
        #[test]
        fn a_damaged_payload_is_read_as_serde_reads_it_or_left_to_serde(
            which in 0usize..4,
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
            how in 0u8..3,
        ) {
            let mut payload = payloads().swap_remove(which);
            let i = at.index(payload.len());
            match how {
                0 => payload[i] = byte,
                1 => payload.truncate(i),
                _ => payload.insert(i, byte),
            }
            agrees(&payload, &warm_cache())?;
        }
    }

    #[test]
    fn every_byte_changed_to_every_value_is_read_as_serde_reads_it_or_left_to_serde() {
        let cache = warm_cache();
        for payload in payloads() {
            for i in 0..payload.len() {
                for byte in kedai_engine::domain::fields::damaging_bytes(payload[i]) {
                    let mut changed = payload.clone();
                    changed[i] = byte;
                    agrees(&changed, &cache).unwrap();
                }
            }
        }
    }
}
