//! Keeping each repeated value once: couriers, services, product names,
//! SKUs, categories, staff ids, cities, timeline words and whole customer
//! snapshots repeat across thousands of orders, so the projections hold
//! them as shared `Arc`s handed out by an [`Interner`] (one per shop).
//!
//! An interner is a cache, not state: two projections with different
//! interners but the same values are equal, and serialised values carry
//! the text itself (a snapshot loads back into fresh `Arc`s that
//! [`Interner::str`] and [`Interner::party`] share again).

use std::collections::HashSet;
use std::sync::Arc;

use foldhash::fast::RandomState;
use kedai_engine::domain::order::CustomerSnapshot;

/// A shared string.
pub type Text = Arc<str>;

/// A shared customer snapshot (an order's sender or receiver).
pub type Party = Arc<CustomerSnapshot>;

/// The set of values already shared.
#[derive(Debug, Clone, Default)]
pub struct Interner {
    strs: HashSet<Text, RandomState>,
    parties: HashSet<Party, RandomState>,
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
            return Arc::clone(t);
        }
        let t: Text = Arc::from(s);
        self.strs.insert(Arc::clone(&t));
        t
    }

    /// The shared copy of an optional string.
    pub fn opt(&mut self, s: Option<&str>) -> Option<Text> {
        s.map(|s| self.str(s))
    }

    /// The shared copy of a customer snapshot.
    pub fn party(&mut self, p: &CustomerSnapshot) -> Party {
        if let Some(shared) = self.parties.get(p) {
            return Arc::clone(shared);
        }
        let shared = Arc::new(p.clone());
        self.parties.insert(Arc::clone(&shared));
        shared
    }

    /// Replaces `t` by the shared copy of its text (after loading).
    pub fn share(&mut self, t: &mut Text) {
        *t = self.str(t);
    }

    /// Replaces `p` by the shared copy of its value (after loading).
    pub fn share_party(&mut self, p: &mut Party) {
        *p = self.party(p);
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
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &i.str("J&T")));
        let mut loaded: Text = Arc::from("JNE");
        assert!(!Arc::ptr_eq(&a, &loaded));
        i.share(&mut loaded);
        assert!(Arc::ptr_eq(&a, &loaded));
    }
}
