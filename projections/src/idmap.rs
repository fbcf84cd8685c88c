//! [`IdMap`]: a map by uuid for lookups a fold makes on most events of a
//! kind (a conversation, for every message), hashed rather than ordered.
//!
//! A `BTreeMap` of a few thousand uuids costs a walk of four nodes and a
//! dozen 16-byte comparisons per lookup; a hash map costs one probe. The
//! map is written in id order, so its serialised form is the `BTreeMap`'s,
//! byte for byte, and a snapshot does not depend on the hasher's seed.

use std::collections::HashMap;
use std::fmt;
use std::ops::{Deref, DerefMut};

use foldhash::fast::RandomState;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A hash map by uuid, serialised in id order. Iteration order is not
/// defined: what must be ordered sorts (see [`IdMap::sorted`]).
#[derive(Clone)]
pub struct IdMap<V>(HashMap<Uuid, V, RandomState>);

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap(HashMap::default())
    }
}

impl<V> IdMap<V> {
    /// The entries in id order.
    pub fn sorted(&self) -> Vec<(&Uuid, &V)> {
        let mut all: Vec<(&Uuid, &V)> = self.0.iter().collect();
        all.sort_unstable_by_key(|(id, _)| **id);
        all
    }
}

impl<V> Deref for IdMap<V> {
    type Target = HashMap<Uuid, V, RandomState>;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl<V> DerefMut for IdMap<V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl<V: PartialEq> PartialEq for IdMap<V> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<V: Eq> Eq for IdMap<V> {}

impl<V: fmt::Debug> fmt::Debug for IdMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.sorted()).finish()
    }
}

impl<V> FromIterator<(Uuid, V)> for IdMap<V> {
    fn from_iter<I: IntoIterator<Item = (Uuid, V)>>(iter: I) -> Self {
        IdMap(iter.into_iter().collect())
    }
}

impl<V: Serialize> Serialize for IdMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (id, v) in self.sorted() {
            map.serialize_entry(id, v)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for IdMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        HashMap::deserialize(deserializer).map(IdMap)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn serialises_as_an_ordered_map_and_reads_back() {
        let ids: Vec<Uuid> = (0..500u128)
            .map(|i| Uuid::from_u128(i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)))
            .collect();
        let ordered: BTreeMap<Uuid, u32> = ids.iter().zip(0..).map(|(id, n)| (*id, n)).collect();
        let hashed: IdMap<u32> = ids.iter().zip(0..).map(|(id, n)| (*id, n)).collect();
        let bytes = rmp_serde::to_vec(&hashed).unwrap();
        assert_eq!(bytes, rmp_serde::to_vec(&ordered).unwrap());
        let back: IdMap<u32> = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, hashed);
        let in_order: Vec<Uuid> = back.sorted().into_iter().map(|(id, _)| *id).collect();
        assert_eq!(in_order, ordered.keys().copied().collect::<Vec<_>>());
    }
}
