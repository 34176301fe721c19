//! Flat lookup structures that a new version copies in O(change).
//!
//! Every published version of the tables shares its lookup indexes with
//! the versions before it, and a change edits a copy of what it touches.
//! A flat hash table or array copied whole costs O(rules) per version
//! (about 1 ms for a subtable of 20 000 rules), which made each flow mod of
//! `ovs-ofctl add-flows` (a barrier after every one, so a version each)
//! cost O(table). These keep a lookup one load away from the flat form
//! while a copy shares all but the pieces a change writes: a hash table in
//! shards, an array in chunks, a sorted set in blocks, each piece behind
//! its own `Arc` and copied on its first write. The shards and chunks are
//! listed in groups of [`GROUP`], each group behind its own `Arc` too, so
//! that a copy's list costs a pointer per group rather than per piece
//! (at 100 000 rules a flat list of pieces was ~2 000 pointers to copy,
//! and to release, per version). Measured against flat
//! tables (`cargo bench --bench classifier`): lookups alike on one
//! subtable, about a sixth slower over 20 subtables of 50 rules.

use std::collections::HashMap;
use std::sync::Arc;

use super::trie::U64BuildHasher;

/// Entries per shard, chunk or block a structure aims at: the most a
/// write copies. Small under test, so that tests cross the boundaries.
const PIECE: usize = if cfg!(test) { 4 } else { 256 };

/// Where a key's shard number starts: above the bits hashbrown takes for
/// a bucket's place (the low ones) and below its control byte (the top
/// seven), so that keys sharing a shard still spread within it.
const SHARD_SHIFT: u32 = 32;
const MAX_SHARD_BITS: u32 = 16;

/// A hash table keyed by well-mixed 64-bit hashes, in shards chosen by
/// bits of the key. Shards double (a rebuild, amortized) as it grows, so
/// that each holds about [`PIECE`] entries.
#[derive(Clone, Debug)]
pub(super) struct ShardedMap<V> {
    shards: Pieces<HashMap<u64, V, U64BuildHasher>>,
    bits: u32,
    len: usize,
}

impl<V: Clone> Default for ShardedMap<V> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<V: Clone> ShardedMap<V> {
    /// Sized for `n` entries.
    pub(super) fn with_capacity(n: usize) -> Self {
        let mut bits = 0;
        while bits < MAX_SHARD_BITS && (PIECE << bits) < n {
            bits += 1;
        }
        ShardedMap {
            shards: (0..1usize << bits).map(|_| Arc::default()).collect(),
            bits,
            len: 0,
        }
    }

    #[inline]
    fn shard_of(&self, key: u64) -> usize {
        ((key >> SHARD_SHIFT) as usize) & ((1 << self.bits) - 1)
    }

    #[inline]
    pub(super) fn get(&self, key: &u64) -> Option<&V> {
        self.shards.get(self.shard_of(*key)).get(key)
    }

    #[inline]
    pub(super) fn contains_key(&self, key: &u64) -> bool {
        self.get(key).is_some()
    }

    pub(super) fn insert(&mut self, key: u64, value: V) -> Option<V> {
        let i = self.shard_of(key);
        let old = Arc::make_mut(self.shards.get_mut(i)).insert(key, value);
        if old.is_none() {
            self.len += 1;
            if self.len > 2 * (PIECE << self.bits) && self.bits < MAX_SHARD_BITS {
                self.reshard(self.bits + 1);
            }
        }
        old
    }

    /// The value at `key`, its shard copied first if another copy of the
    /// map shares it (not copied when the key is not there).
    pub(super) fn get_mut(&mut self, key: &u64) -> Option<&mut V> {
        let i = self.shard_of(*key);
        self.shards.get(i).get(key)?;
        Arc::make_mut(self.shards.get_mut(i)).get_mut(key)
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn remove(&mut self, key: &u64) -> Option<V> {
        let i = self.shard_of(*key);
        // Not copied when the key is not there.
        self.shards.get(i).get(key)?;
        let old = Arc::make_mut(self.shards.get_mut(i)).remove(key);
        self.len -= usize::from(old.is_some());
        old
    }

    fn reshard(&mut self, bits: u32) {
        let mut grown = ShardedMap {
            shards: (0..1usize << bits).map(|_| Arc::default()).collect(),
            bits,
            len: 0,
        };
        for (k, v) in self.iter() {
            let i = grown.shard_of(*k);
            Arc::make_mut(grown.shards.get_mut(i)).insert(*k, v.clone());
        }
        grown.len = self.len;
        *self = grown;
    }

    /// Every entry, in no particular order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&u64, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }
}

/// Pieces per group of a [`Pieces`] list.
const GROUP: usize = if cfg!(test) { 4 } else { 64 };

/// A list of pieces in groups of [`GROUP`], each group behind its own
/// `Arc`: a copy of the list copies a pointer per group, and a write
/// through [`Pieces::get_mut`] copies the one group it goes through (the
/// piece itself is the caller's to copy). A read is one load more than
/// from a flat list.
#[derive(Debug)]
pub(super) struct Pieces<P: ?Sized> {
    groups: Vec<Arc<[Arc<P>]>>,
    len: usize,
}

impl<P: ?Sized> Clone for Pieces<P> {
    fn clone(&self) -> Self {
        Pieces {
            groups: self.groups.clone(),
            len: self.len,
        }
    }
}

impl<P: ?Sized> Default for Pieces<P> {
    fn default() -> Self {
        Pieces {
            groups: Vec::new(),
            len: 0,
        }
    }
}

impl<P: ?Sized> FromIterator<Arc<P>> for Pieces<P> {
    fn from_iter<I: IntoIterator<Item = Arc<P>>>(iter: I) -> Self {
        let mut pieces = Pieces::default();
        let mut group = Vec::with_capacity(GROUP);
        for p in iter {
            group.push(p);
            if group.len() == GROUP {
                pieces.groups.push(std::mem::take(&mut group).into());
            }
        }
        pieces.len = pieces.groups.len() * GROUP + group.len();
        if !group.is_empty() {
            pieces.groups.push(group.into());
        }
        pieces
    }
}

impl<P: ?Sized> Pieces<P> {
    #[inline]
    pub(super) fn get(&self, i: usize) -> &Arc<P> {
        &self.groups[i / GROUP][i % GROUP]
    }

    /// Piece `i`'s slot, its group copied first if another list shares it.
    pub(super) fn get_mut(&mut self, i: usize) -> &mut Arc<P> {
        let group = &mut self.groups[i / GROUP];
        if Arc::get_mut(group).is_none() {
            *group = group.iter().cloned().collect();
        }
        &mut Arc::get_mut(group).expect("just made unique")[i % GROUP]
    }

    pub(super) fn push(&mut self, piece: Arc<P>) {
        if self.len.is_multiple_of(GROUP) {
            self.groups.push(Arc::from([piece]));
        } else {
            let last = self.groups.last_mut().expect("a group not full");
            *last = last.iter().cloned().chain(std::iter::once(piece)).collect();
        }
        self.len += 1;
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Arc<P>> {
        self.groups.iter().flat_map(|g| g.iter())
    }
}

/// `piece`, copied first if another copy of the structure shares it.
fn writable<T: Clone>(piece: &mut Arc<[T]>) -> &mut [T] {
    if Arc::get_mut(piece).is_none() {
        *piece = piece.iter().cloned().collect();
    }
    Arc::get_mut(piece).expect("just made unique")
}

/// A growable array of records of `stride` elements, in chunks of
/// [`PIECE`] records, each chunk one allocation filled with defaults past
/// the array's end: a record is one more load away than in a `Vec` (the
/// chunk's pointer, from a small array), and a write copies only its
/// chunk.
#[derive(Clone, Debug)]
pub(super) struct ChunkedVec<T> {
    chunks: Pieces<[T]>,
    stride: usize,
    len: usize,
}

impl<T: Clone + Default> ChunkedVec<T> {
    pub(super) fn new(stride: usize) -> Self {
        ChunkedVec {
            chunks: Pieces::default(),
            stride,
            len: 0,
        }
    }

    /// Record `i`.
    #[inline]
    pub(super) fn get(&self, i: usize) -> &[T] {
        let off = (i % PIECE) * self.stride;
        &self.chunks.get(i / PIECE)[off..off + self.stride]
    }

    pub(super) fn get_mut(&mut self, i: usize) -> &mut [T] {
        let off = (i % PIECE) * self.stride;
        &mut writable(self.chunks.get_mut(i / PIECE))[off..off + self.stride]
    }

    /// Appends a record of `stride` elements; returns its number.
    pub(super) fn push(&mut self, record: &[T]) -> usize {
        debug_assert_eq!(record.len(), self.stride);
        let i = self.len;
        if i.is_multiple_of(PIECE) {
            self.chunks
                .push(vec![T::default(); PIECE * self.stride].into());
        }
        self.len += 1;
        self.get_mut(i).clone_from_slice(record);
        i
    }

    /// The number of records.
    pub(super) fn len(&self) -> usize {
        self.len
    }
}

/// A sorted set of `u32` in blocks of about [`PIECE`] values: a lookup
/// finds the block by its first value, then the value in the block; an
/// insert or removal copies one block and the list of first values.
#[derive(Clone, Debug, Default)]
pub(super) struct SortedBlocks {
    /// The first value of each block, ascending.
    firsts: Vec<u32>,
    blocks: Vec<Arc<Vec<u32>>>,
}

impl SortedBlocks {
    pub(super) fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// Appends `v`, greater than every value held (building from a sorted
    /// source).
    pub(super) fn push(&mut self, v: u32) {
        match self.blocks.last_mut() {
            Some(b) if b.len() < PIECE => Arc::make_mut(b).push(v),
            _ => {
                self.firsts.push(v);
                self.blocks.push(Arc::new(vec![v]));
            }
        }
    }

    /// The greatest value below `probe` and the least value at or above
    /// it: `position_of` finds a probe's place in a block.
    #[inline]
    pub(super) fn around(
        &self,
        probe: u32,
        position_of: impl Fn(&[u32], u32) -> usize,
    ) -> (Option<u32>, Option<u32>) {
        let b = position_of(&self.firsts, probe);
        if b == 0 {
            // Every value is at or above the probe.
            return (None, self.firsts.first().copied());
        }
        let block = &self.blocks[b - 1];
        let at = position_of(block, probe);
        // The block's first value is below the probe, so `at` > 0.
        let below = block[at - 1];
        let above = block.get(at).or(self.firsts.get(b)).copied();
        (Some(below), above)
    }

    /// The block `v` belongs in: the last whose first value is at most `v`
    /// (the first block for a value below them all).
    fn block_of(&self, v: u32) -> usize {
        self.firsts.partition_point(|f| *f <= v).saturating_sub(1)
    }

    pub(super) fn insert(&mut self, v: u32) {
        if self.blocks.is_empty() {
            self.push(v);
            return;
        }
        let b = self.block_of(v);
        let block = Arc::make_mut(&mut self.blocks[b]);
        let i = block.partition_point(|x| *x < v);
        if block.get(i) == Some(&v) {
            return;
        }
        block.insert(i, v);
        self.firsts[b] = block[0];
        if block.len() >= 2 * PIECE {
            let upper = block.split_off(PIECE);
            self.firsts.insert(b + 1, upper[0]);
            self.blocks.insert(b + 1, Arc::new(upper));
        }
    }

    pub(super) fn remove(&mut self, v: u32) {
        if self.blocks.is_empty() {
            return;
        }
        let b = self.block_of(v);
        let Ok(i) = self.blocks[b].binary_search(&v) else {
            return;
        };
        let block = Arc::make_mut(&mut self.blocks[b]);
        block.remove(i);
        if block.is_empty() {
            self.firsts.remove(b);
            self.blocks.remove(b);
        } else {
            self.firsts[b] = block[0];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn mixed(k: u64) -> u64 {
        k.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(23)
    }

    proptest::proptest! {
        /// Inserts and removes agree with a plain map, and a copy taken
        /// midway keeps answering for what it held.
        #[test]
        fn sharded_map_is_a_map_and_copies_stay(
            ops in proptest::collection::vec((proptest::bool::weighted(0.7), 0u64..300), 1..400),
        ) {
            let mut m = ShardedMap::default();
            let mut model = std::collections::HashMap::new();
            let mut old: Option<(ShardedMap<u64>, std::collections::HashMap<u64, u64>)> = None;
            for (i, (add, k)) in ops.into_iter().enumerate() {
                let key = mixed(k);
                if add {
                    proptest::prop_assert_eq!(m.insert(key, k), model.insert(key, k));
                } else {
                    proptest::prop_assert_eq!(m.remove(&key), model.remove(&key));
                }
                proptest::prop_assert_eq!(m.iter().count(), model.len());
                if i % 13 == 0 {
                    old = Some((m.clone(), model.clone()));
                }
            }
            for k in 0..300 {
                let key = mixed(k);
                proptest::prop_assert_eq!(m.get(&key), model.get(&key));
                if let Some((o, om)) = &old {
                    proptest::prop_assert_eq!(o.get(&key), om.get(&key));
                }
            }
        }

        #[test]
        fn sorted_blocks_find_neighbours_and_copies_stay(
            ops in proptest::collection::vec((proptest::bool::weighted(0.7), 0u32..200), 1..300),
            probes in proptest::collection::vec(0u32..210, 1..20),
        ) {
            let count_below = |vs: &[u32], p: u32| vs.partition_point(|v| *v < p);
            let mut s = SortedBlocks::default();
            let mut model = BTreeSet::new();
            let mut old: Option<(SortedBlocks, BTreeSet<u32>)> = None;
            for (i, (add, v)) in ops.into_iter().enumerate() {
                if add {
                    s.insert(v);
                    model.insert(v);
                } else {
                    s.remove(v);
                    model.remove(&v);
                }
                proptest::prop_assert_eq!(s.is_empty(), model.is_empty());
                if i % 11 == 0 {
                    old = Some((s.clone(), model.clone()));
                }
            }
            let expect = |m: &BTreeSet<u32>, p: u32| {
                (m.range(..p).next_back().copied(), m.range(p..).next().copied())
            };
            for p in probes {
                proptest::prop_assert_eq!(s.around(p, count_below), expect(&model, p));
                if let Some((o, om)) = &old {
                    proptest::prop_assert_eq!(o.around(p, count_below), expect(om, p));
                }
            }
        }
    }

    #[test]
    fn chunked_records_stay_whole_and_copies_stay() {
        let mut v = ChunkedVec::new(3);
        for i in 0..50u64 {
            assert_eq!(v.push(&[i, i + 1, i + 2]), i as usize);
        }
        let old = v.clone();
        v.get_mut(17)[1] = 0;
        assert_eq!(v.get(17), &[17, 0, 19]);
        assert_eq!(old.get(17), &[17, 18, 19]);
        assert_eq!(v.get(49), &[49, 50, 51]);
        assert_eq!(v.len(), 50);
    }
}
