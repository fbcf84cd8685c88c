//! Keeping each repeated value once: couriers, services, product names,
//! SKUs, categories, staff ids, cities, timeline words and whole customer
//! snapshots repeat across thousands of orders, so the projections hold
//! them as shared `Arc`s handed out by an [`Interner`] (one per shop).
//! A shared string is a [`Text`]: one pointer, so that the many records
//! holding one (orders, lines, the reports' tallies) stay small. What an
//! order line sold (SKU, product name, category) is shared whole, as a
//! [`LineItem`].
//!
//! An interner is a cache, not state: two projections with different
//! interners but the same values are equal, and serialised values carry
//! the text itself. A snapshot is read with an interner of its own
//! ([`loading`]), so equal values are shared as they are read, and each
//! shop's interner takes them over when its indexes are rebuilt.

use std::borrow::{Borrow, Cow};
use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use kedai_engine::domain::catalog::CustomerCategory;
use kedai_engine::domain::fields::same_short;
use kedai_engine::domain::ids::CustomerId;
use kedai_engine::domain::order::CustomerSnapshot;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::orders::LineItem;
use crate::placed::{PartyRef, PlacedParty};

/// A shared string. An `Arc<str>` is two words (pointer and length);
/// this keeps the length with the text, behind one pointer, which halves
/// every field that holds one. The extra indirection costs little: texts
/// are interned, so there are few of them. It compares, hashes, orders
/// and serialises as the string itself.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Text(Arc<Box<str>>);

impl Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(Arc::new(s.into()))
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(Arc::new(s.into_boxed_str()))
    }
}

impl Default for Text {
    fn default() -> Text {
        Text::from("")
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&**self, f)
    }
}

impl Serialize for Text {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self)
    }
}

impl<'de> Deserialize<'de> for Text {
    /// Read as a string; while projections are being loaded
    /// ([`loading`]), as the shared copy of it, made only if it is new.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        struct Visit;
        impl Visitor<'_> for Visit {
            type Value = Text;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
                Ok(with_loading(|i| match i {
                    Some(i) => i.str(s),
                    None => Text::from(s),
                }))
            }

            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Text, E> {
                let s = std::str::from_utf8(b)
                    .map_err(|_| E::invalid_value(de::Unexpected::Bytes(b), &self))?;
                self.visit_str(s)
            }
        }
        deserializer.deserialize_str(Visit)
    }
}

thread_local! {
    /// The values shared so far by the load in progress on this thread,
    /// if one is ([`loading`]).
    static LOADING: RefCell<Option<Interner>> = const { RefCell::new(None) };
}

/// Runs `load`, which reads projections, with every text, customer and
/// line item shared as it is read: equal values are made once, instead of
/// once per record and then replaced by a shared copy (a snapshot holds a
/// customer's whole record in every one of their orders, and reading them
/// all before sharing them took twice the memory and most of the load's
/// time). The shops' own interners take the shared values over when their
/// indexes are rebuilt.
pub(crate) fn loading<T>(load: impl FnOnce() -> T) -> T {
    /// Puts back what was there before, however `load` ends.
    struct Restore(Option<Interner>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            LOADING.with(|l| *l.borrow_mut() = previous);
        }
    }
    let _restore = Restore(LOADING.with(|l| l.replace(Some(Interner::default()))));
    load()
}

/// Calls `f` with the interner of the load in progress, if any.
fn with_loading<R>(f: impl FnOnce(Option<&mut Interner>) -> R) -> R {
    LOADING.with(|l| f(l.borrow_mut().as_mut()))
}

/// A customer snapshot as serialised, its texts borrowed where the reader
/// allows it: read to be shared ([`deserialize_party`]).
#[derive(Deserialize)]
#[serde(rename = "CustomerSnapshot")]
struct PartyFields<'a> {
    customer_id: CustomerId,
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    phone: Option<Str<'a>>,
    category: CustomerCategory,
    #[serde(borrow)]
    address: Option<Str<'a>>,
    #[serde(borrow)]
    district: Option<Str<'a>>,
    #[serde(borrow)]
    city: Option<Str<'a>>,
    #[serde(borrow)]
    province: Option<Str<'a>>,
    #[serde(borrow)]
    postal_code: Option<Str<'a>>,
}

/// A string read borrowed where the reader allows it, owned otherwise.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Str<'a>, D::Error> {
        struct Visit<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Visit<'a> {
            type Value = Str<'a>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'a>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }

            fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<Str<'a>, E> {
                let s = std::str::from_utf8(b)
                    .map_err(|_| E::invalid_value(de::Unexpected::Bytes(b), &self))?;
                self.visit_str(s)
            }
        }
        deserializer.deserialize_str(Visit(std::marker::PhantomData))
    }
}

/// Reads a customer snapshot as [`CustomerSnapshot`] serialises; while
/// projections are being loaded ([`loading`]), as the shared copy,
/// made only if it is new.
pub fn deserialize_party<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Party, D::Error> {
    fn text<'s>(s: &'s Option<Str<'_>>) -> Option<&'s str> {
        s.as_ref().map(|s| &*s.0)
    }
    let p = PartyFields::deserialize(deserializer)?;
    let borrowed = PartyRef {
        customer_id: p.customer_id,
        name: &p.name.0,
        phone: text(&p.phone),
        category: p.category,
        address: text(&p.address),
        district: text(&p.district),
        city: text(&p.city),
        province: text(&p.province),
        postal_code: text(&p.postal_code),
    };
    Ok(with_loading(|i| match i {
        Some(i) => i.party(&borrowed),
        None => Arc::new(borrowed.to_snapshot()),
    }))
}

/// What a line sold; while projections are being loaded ([`loading`]),
/// the shared copy, made only if it is new.
pub(crate) fn loaded_item(sku: Text, product_name: Text, category: Option<Text>) -> Arc<LineItem> {
    with_loading(|i| match i {
        Some(i) => i.item(&sku, &product_name, category.as_deref()),
        None => Arc::new(LineItem {
            sku,
            product_name,
            category,
        }),
    })
}

impl Text {
    /// Whether both are the same allocation (not just equal text).
    pub fn ptr_eq(a: &Text, b: &Text) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

/// Whether two texts are equal, as `==` says, without a call to `memcmp`
/// for short ones (see [`same_short`]): the fold compares a customer's
/// snapshot field by field, and what lines sold, for every order placed.
#[inline]
pub fn text_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && same_short(a.as_bytes(), b.as_bytes())
}

/// Whether two optional texts are equal (see [`text_eq`]).
#[inline]
pub fn opt_text_eq(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => text_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// How two texts order, as `str::cmp` says: their first 8 bytes are
/// compared as one number, and only texts that agree there are compared
/// by `memcmp`. A day's tallies are found by a binary search of their
/// names for every line of every order placed, and the names mostly
/// differ within their first bytes.
#[inline]
pub fn text_cmp(a: &str, b: &str) -> Ordering {
    /// The first 8 bytes, big-endian, padded with zeros: the padding
    /// sorts a text that ends first before one that goes on, unless the
    /// next byte is a zero too, and those are compared in full.
    fn head(s: &[u8]) -> u64 {
        match s.first_chunk::<8>() {
            Some(b) => u64::from_be_bytes(*b),
            None => s
                .iter()
                .enumerate()
                .fold(0, |h, (i, &b)| h | u64::from(b) << (56 - 8 * i)),
        }
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match head(a).cmp(&head(b)) {
        Ordering::Equal => a.cmp(b),
        unequal => unequal,
    }
}

/// A shared customer snapshot (an order's sender or receiver).
pub type Party = Arc<CustomerSnapshot>;

/// The set of values already shared.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    strs: HashSet<Text, RandomState>,
    /// Snapshots, found by a borrowed one ([`PartyRef`]), hashed by their
    /// customer's id.
    parties: HashTable<Party>,
    /// Hashes the borrowed forms of parties and line items.
    hasher: RandomState,
    /// What lines sold, found by the borrowed texts (hashed by the SKU,
    /// compared text by text), so a line of a known item makes nothing.
    items: HashTable<Arc<LineItem>>,
}

impl PartialEq for Interner {
    /// Always equal: an interner is a cache of values held elsewhere.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Interner {}

impl Interner {
    /// The shared copy of `s`.
    pub fn str(&mut self, s: &str) -> Text {
        if let Some(t) = self.strs.get(s) {
            return t.clone();
        }
        let t = Text::from(s);
        self.strs.insert(t.clone());
        t
    }

    /// The shared copy of an optional string.
    pub fn opt(&mut self, s: Option<&str>) -> Option<Text> {
        s.map(|s| self.str(s))
    }

    /// The shared copy of a customer snapshot (made from the borrowed
    /// one only if it is new).
    pub fn party(&mut self, p: &PartyRef<'_>) -> Party {
        self.party_or(p, None, || Arc::new(p.to_snapshot()))
    }

    /// The shared copy of an order's sender or receiver as read: `p`
    /// itself if it is shared and new here (a fold's [`PartyCache`] made
    /// it), and found at once if it is the one held.
    ///
    /// [`PartyCache`]: crate::placed::PartyCache
    pub fn placed_party(&mut self, p: &PlacedParty<'_>) -> Party {
        match p {
            PlacedParty::Borrowed(p) => self.party(p),
            PlacedParty::Shared(p) => {
                self.party_or(&PartyRef::from(&**p), Some(p), || Arc::clone(p))
            }
        }
    }

    /// The shared copy of the customer snapshot `key`, `new()` if there
    /// is none yet.
    /// Snapshots are hashed by their customer's id alone (one customer's
    /// few snapshots share a bucket, told apart by comparing every field):
    /// hashing every text of a snapshot cost more than finding it.
    fn party_or(
        &mut self,
        key: &PartyRef<'_>,
        held: Option<&Party>,
        new: impl FnOnce() -> Party,
    ) -> Party {
        let hasher = &self.hasher;
        let entry = self.parties.entry(
            hasher.hash_one(key.customer_id),
            |shared| {
                held.is_some_and(|p| Arc::ptr_eq(p, shared)) || PartyRef::from(&**shared) == *key
            },
            |shared| hasher.hash_one(shared.customer_id),
        );
        Arc::clone(entry.or_insert_with(new).get())
    }

    /// Every customer snapshot held (each once; in no particular order).
    pub fn parties(&self) -> impl Iterator<Item = &Party> {
        self.parties.iter()
    }

    /// Everything lines sold that is held (each once; in no particular
    /// order).
    pub fn items(&self) -> impl Iterator<Item = &Arc<LineItem>> {
        self.items.iter()
    }

    /// The shared copy of what a line sold.
    /// Items are hashed by their SKU alone, as snapshots by their
    /// customer (see `party_or`).
    pub fn item(&mut self, sku: &str, product_name: &str, category: Option<&str>) -> Arc<LineItem> {
        let hasher = &self.hasher;
        let hash = hasher.hash_one(sku);
        let same = |i: &Arc<LineItem>| {
            text_eq(&i.sku, sku)
                && text_eq(&i.product_name, product_name)
                && opt_text_eq(i.category.as_deref(), category)
        };
        if let Some(shared) = self.items.find(hash, same) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(LineItem {
            sku: self.str(sku),
            product_name: self.str(product_name),
            category: self.opt(category),
        });
        let hasher = &self.hasher;
        self.items
            .insert_unique(hash, Arc::clone(&shared), |i| hasher.hash_one(&*i.sku));
        shared
    }

    /// Replaces `item` by the shared copy of its value (after loading).
    pub fn share_item(&mut self, item: &mut Arc<LineItem>) {
        *item = self.item(&item.sku, &item.product_name, item.category.as_deref());
    }

    /// Replaces `t` by the shared copy of its text, which is `t` itself
    /// if the text is new (after loading).
    pub fn share(&mut self, t: &mut Text) {
        match self.strs.get(&**t) {
            Some(shared) => *t = shared.clone(),
            None => {
                self.strs.insert(t.clone());
            }
        }
    }

    /// Replaces `p` by the shared copy of its value, which is `p` itself
    /// if the value is new (after loading).
    pub fn share_party(&mut self, p: &mut Party) {
        *p = self.party_or(&PartyRef::from(&**p), Some(p), || Arc::clone(p));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The fast comparisons agree with `str`'s own, on texts short
        /// and long that often share their first bytes (and hold zeros,
        /// which the padding of a short text's head looks like).
        #[test]
        fn texts_compare_as_str_compares_them(
            a in "[a\\x00\u{e9}b]{0,12}",
            b in "[a\\x00\u{e9}b]{0,12}",
        ) {
            prop_assert_eq!(text_cmp(&a, &b), a.cmp(&b));
            prop_assert_eq!(text_cmp(&b, &a), b.cmp(&a));
            prop_assert_eq!(text_eq(&a, &b), a == b);
            prop_assert!(text_eq(&a, &a.clone()));
            prop_assert_eq!(text_cmp(&a, &a.clone()), Ordering::Equal);
        }
    }

    #[test]
    fn equal_texts_share_one_allocation() {
        let mut i = Interner::default();
        let a = i.str("JNE");
        let b = i.str(&String::from("JNE"));
        assert!(Text::ptr_eq(&a, &b));
        assert!(!Text::ptr_eq(&a, &i.str("J&T")));
        let mut loaded = Text::from("JNE");
        assert!(!Text::ptr_eq(&a, &loaded));
        i.share(&mut loaded);
        assert!(Text::ptr_eq(&a, &loaded));
        assert_eq!(size_of::<Text>(), size_of::<usize>(), "one pointer");
    }

    #[test]
    fn what_lines_sold_is_kept_once_with_its_texts_shared() {
        let mut i = Interner::default();
        let a = i.item("BTK-01", "Batik tulis", Some("Kain"));
        let b = i.item(&String::from("BTK-01"), "Batik tulis", Some("Kain"));
        assert!(Arc::ptr_eq(&a, &b));
        let no_category = i.item("BTK-01", "Batik tulis", None);
        assert!(!Arc::ptr_eq(&a, &no_category));
        assert_eq!(no_category.category, None);
        let other = i.item("BTK-02", "Batik tulis", Some("Kain"));
        assert!(!Arc::ptr_eq(&a, &other));
        assert_eq!(&*other.sku, "BTK-02");
        // The item's texts are the interner's shared texts.
        assert!(Text::ptr_eq(&a.sku, &i.str("BTK-01")));
        assert!(Text::ptr_eq(&a.product_name, &other.product_name));
        let mut loaded = Arc::new(LineItem {
            sku: Text::from("BTK-01"),
            product_name: Text::from("Batik tulis"),
            category: Some(Text::from("Kain")),
        });
        i.share_item(&mut loaded);
        assert!(Arc::ptr_eq(&a, &loaded));
    }
}
