//! A set of orders by their place in a shop's list, one bit each: which
//! orders have a status. Orders move between statuses all through a fold,
//! and a tree set spent an allocation per few entries and a search per
//! move; here a move clears one bit and sets another, and the orders of a
//! status are read in list order from either end (newest first or oldest
//! first). A status held by a few of many orders costs a scan of 8 bytes
//! per 64 orders of the list, a few microseconds for a big shop.
//!
//! (Bit-set crates iterate only forwards; the lists need both ways.)

/// Numbers (order places) in a set, as bits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderSet {
    words: Vec<u64>,
    len: usize,
}

impl OrderSet {
    /// Adds `i`; false if it was there.
    pub fn insert(&mut self, i: u32) -> bool {
        let (word, bit) = (i as usize / 64, 1u64 << (i % 64));
        if word >= self.words.len() {
            self.words.resize(word + 1, 0);
        }
        let added = self.words[word] & bit == 0;
        self.words[word] |= bit;
        self.len += usize::from(added);
        added
    }

    /// Takes `i` out; false if it was not there.
    pub fn remove(&mut self, i: u32) -> bool {
        let (word, bit) = (i as usize / 64, 1u64 << (i % 64));
        let Some(w) = self.words.get_mut(word) else {
            return false;
        };
        let removed = *w & bit != 0;
        *w &= !bit;
        self.len -= usize::from(removed);
        removed
    }

    pub fn contains(&self, i: u32) -> bool {
        self.words
            .get(i as usize / 64)
            .is_some_and(|w| w & (1u64 << (i % 64)) != 0)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The numbers in increasing order (`rev()` for decreasing).
    pub fn iter(&self) -> Iter<'_> {
        let last = self.words.len().saturating_sub(1);
        Iter {
            words: &self.words,
            front: 0,
            front_bits: self.words.first().copied().unwrap_or(0),
            back: last,
            back_bits: self.words.last().copied().unwrap_or(0),
            left: self.len,
        }
    }
}

/// The numbers of an [`OrderSet`], from either end. When both ends are in
/// the same word, each holds a copy of what is left of it, and taking a
/// bit from one end clears it in the other's copy too.
#[derive(Debug, Clone)]
pub struct Iter<'a> {
    words: &'a [u64],
    front: usize,
    front_bits: u64,
    back: usize,
    back_bits: u64,
    /// Numbers not yet given from either end.
    left: usize,
}

impl Iterator for Iter<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        while self.front_bits == 0 {
            self.front += 1;
            self.front_bits = if self.front == self.back {
                self.back_bits
            } else {
                self.words[self.front]
            };
        }
        let bit = self.front_bits.trailing_zeros();
        self.front_bits &= self.front_bits - 1;
        if self.front == self.back {
            self.back_bits &= !(1u64 << bit);
        }
        self.left -= 1;
        Some((self.front * 64) as u32 + bit)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl DoubleEndedIterator for Iter<'_> {
    fn next_back(&mut self) -> Option<u32> {
        if self.left == 0 {
            return None;
        }
        while self.back_bits == 0 {
            self.back -= 1;
            self.back_bits = if self.back == self.front {
                self.front_bits
            } else {
                self.words[self.back]
            };
        }
        let bit = 63 - self.back_bits.leading_zeros();
        self.back_bits &= !(1u64 << bit);
        if self.front == self.back {
            self.front_bits &= !(1u64 << bit);
        }
        self.left -= 1;
        Some((self.back * 64) as u32 + bit)
    }
}

impl ExactSizeIterator for Iter<'_> {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_empty_set_gives_nothing_from_either_end() {
        let mut set = OrderSet::default();
        assert_eq!(set.iter().next(), None);
        assert_eq!(set.iter().next_back(), None);
        set.insert(130);
        set.remove(130);
        assert!(set.is_empty());
        assert_eq!(set.iter().count(), 0);
        assert_eq!(set.iter().next_back(), None);
    }

    proptest! {
        /// Inserts and removes do to the set what they do to a tree set,
        /// and reading it from both ends in any mix gives the tree set's
        /// numbers, each once.
        #[test]
        fn it_holds_what_a_tree_set_holds(
            moves in proptest::collection::vec((any::<bool>(), 0u32..700), 0..300),
            ends in proptest::collection::vec(any::<bool>(), 0..800),
        ) {
            let mut set = OrderSet::default();
            let mut tree = BTreeSet::new();
            for (insert, i) in moves {
                if insert {
                    prop_assert_eq!(set.insert(i), tree.insert(i));
                } else {
                    prop_assert_eq!(set.remove(i), tree.remove(&i));
                }
                prop_assert_eq!(set.contains(i), tree.contains(&i));
            }
            prop_assert_eq!(set.len(), tree.len());
            prop_assert_eq!(set.iter().collect::<Vec<_>>(), tree.iter().copied().collect::<Vec<_>>());
            prop_assert_eq!(
                set.iter().rev().collect::<Vec<_>>(),
                tree.iter().rev().copied().collect::<Vec<_>>()
            );
            let mut mixed = set.iter();
            let mut expected = tree.iter().copied();
            for front in ends {
                let (got, want) = if front {
                    (mixed.next(), expected.next())
                } else {
                    (mixed.next_back(), expected.next_back())
                };
                prop_assert_eq!(got, want);
                prop_assert_eq!(mixed.len(), expected.len());
            }
        }
    }
}
