//! A list that grows in chunks and never moves what it holds: a shop's
//! orders. A `Vec` of a million orders (230 MB) copies all of them each
//! time it grows: during a rebuild that was copying and first touches of
//! fresh memory, and on a live server a command that happened to grow the
//! list waited for the copy. Here the list is a `Vec` of chunks of
//! [`CHUNK`] items; only the first chunk grows (by doubling, so a small
//! shop holds little spare room), every later chunk is made whole once.
//! It is serialised as a plain sequence, as a `Vec` is.

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Index, IndexMut};

use serde::de::{SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Items in a chunk (a power of two).
pub const CHUNK: usize = 4_096;

/// An append-only list of items in chunks, indexed like a `Vec`.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkedList<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedList<T> {
    fn default() -> Self {
        ChunkedList {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> ChunkedList<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `item` at the end.
    pub fn push(&mut self, item: T) {
        match self.chunks.last_mut() {
            // Only the first chunk is ever full below CHUNK: it doubles,
            // up to CHUNK.
            Some(last) if last.len() < CHUNK => {
                if last.len() == last.capacity() {
                    last.reserve_exact((last.len() * 2).clamp(4, CHUNK) - last.len());
                }
                last.push(item);
            }
            _ => {
                let mut chunk = Vec::with_capacity(if self.chunks.is_empty() { 4 } else { CHUNK });
                chunk.push(item);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    /// The items in order (`rev()` for newest first).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone {
        self.chunks.iter().flatten()
    }

    pub fn iter_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut T> {
        self.chunks.iter_mut().flatten()
    }
}

impl<T> Index<usize> for ChunkedList<T> {
    type Output = T;

    fn index(&self, i: usize) -> &T {
        &self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> IndexMut<usize> for ChunkedList<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i / CHUNK][i % CHUNK]
    }
}

impl<T> FromIterator<T> for ChunkedList<T> {
    fn from_iter<I: IntoIterator<Item = T>>(items: I) -> Self {
        let mut list = ChunkedList::default();
        for item in items {
            list.push(item);
        }
        list
    }
}

impl<T: fmt::Debug> fmt::Debug for ChunkedList<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl<T: Serialize> Serialize for ChunkedList<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len))?;
        for item in self.iter() {
            seq.serialize_element(item)?;
        }
        seq.end()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ChunkedList<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Items<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for Items<T> {
            type Value = ChunkedList<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut list = ChunkedList::default();
                while let Some(item) = seq.next_element()? {
                    list.push(item);
                }
                Ok(list)
            }
        }
        d.deserialize_seq(Items(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Pushing, reading, changing and iterating (both ways) do what
        /// they do to a `Vec`, across chunk boundaries; the list is
        /// serialised byte for byte as the `Vec` is, and read back.
        #[test]
        fn it_is_a_vec_that_does_not_move(len in 0usize..3 * CHUNK + 5, changes in proptest::collection::vec(any::<usize>(), 0..20)) {
            let mut list = ChunkedList::default();
            let mut vec = Vec::new();
            for i in 0..len as u64 {
                list.push(i);
                vec.push(i);
            }
            for c in changes {
                if len > 0 {
                    let i = c % len;
                    list[i] += 7;
                    *vec.get_mut(i).unwrap() += 7;
                    prop_assert_eq!(list.get(i), vec.get(i));
                }
            }
            prop_assert_eq!(list.len(), vec.len());
            prop_assert_eq!(list.get(len), None);
            prop_assert!(list.iter().eq(vec.iter()));
            prop_assert!(list.iter().rev().eq(vec.iter().rev()));
            let bytes = rmp_serde::to_vec(&list).unwrap();
            prop_assert_eq!(&bytes, &rmp_serde::to_vec(&vec).unwrap());
            let back: ChunkedList<u64> = rmp_serde::from_slice(&bytes).unwrap();
            prop_assert!(back == list);
        }
    }

    #[test]
    fn only_the_first_chunk_grows() {
        let mut list = ChunkedList::default();
        for i in 0..CHUNK + 1 {
            list.push(i);
        }
        assert_eq!(list.chunks[0].capacity(), CHUNK);
        assert_eq!(list.chunks[1].capacity(), CHUNK);
        let small: ChunkedList<u16> = (0..5).collect();
        assert_eq!(small.chunks[0].capacity(), 8);
    }
}
