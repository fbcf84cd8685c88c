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
//! the text itself (a snapshot loads back into fresh `Arc`s that
//! [`Interner::str`] and [`Interner::party`] share again).

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use kedai_engine::domain::order::CustomerSnapshot;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::orders::LineItem;
use crate::placed::PartyRef;

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
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Text, D::Error> {
        String::deserialize(deserializer).map(Text::from)
    }
}

impl Text {
    /// Whether both are the same allocation (not just equal text).
    pub fn ptr_eq(a: &Text, b: &Text) -> bool {
        Arc::ptr_eq(&a.0, &b.0)
    }
}

/// A shared customer snapshot (an order's sender or receiver).
pub type Party = Arc<CustomerSnapshot>;

/// The set of values already shared.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    strs: HashSet<Text, RandomState>,
    /// Snapshots, found by a borrowed one ([`PartyRef`]): hashed as that.
    parties: HashTable<Party>,
    /// Hashes the borrowed forms of parties and line items.
    hasher: RandomState,
    /// What lines sold, found by the borrowed texts (hashed as
    /// [`item_key`] hashes them), so a line of a known item makes nothing.
    items: HashTable<Arc<LineItem>>,
}

/// What a line sold, as its texts, to hash and compare.
fn item_key(item: &LineItem) -> (&str, &str, Option<&str>) {
    (&item.sku, &item.product_name, item.category.as_deref())
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
        let hasher = &self.hasher;
        let hash = hasher.hash_one(p);
        let entry = self.parties.entry(
            hash,
            |shared| PartyRef::from(&**shared) == *p,
            |shared| hasher.hash_one(PartyRef::from(&**shared)),
        );
        Arc::clone(entry.or_insert_with(|| Arc::new(p.to_snapshot())).get())
    }

    /// The shared copy of what a line sold.
    pub fn item(&mut self, sku: &str, product_name: &str, category: Option<&str>) -> Arc<LineItem> {
        let key = (sku, product_name, category);
        let hasher = &self.hasher;
        let hash = hasher.hash_one(key);
        if let Some(shared) = self.items.find(hash, |i| item_key(i) == key) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(LineItem {
            sku: self.str(sku),
            product_name: self.str(product_name),
            category: self.opt(category),
        });
        let hasher = &self.hasher;
        self.items
            .insert_unique(hash, Arc::clone(&shared), |i| hasher.hash_one(item_key(i)));
        shared
    }

    /// Replaces `item` by the shared copy of its value (after loading).
    pub fn share_item(&mut self, item: &mut Arc<LineItem>) {
        *item = self.item(&item.sku, &item.product_name, item.category.as_deref());
    }

    /// Replaces `t` by the shared copy of its text (after loading).
    pub fn share(&mut self, t: &mut Text) {
        *t = self.str(t);
    }

    /// Replaces `p` by the shared copy of its value (after loading).
    pub fn share_party(&mut self, p: &mut Party) {
        *p = self.party(&PartyRef::from(&**p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
