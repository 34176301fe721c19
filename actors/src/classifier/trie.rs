//! A persistent set of 32-bit prefixes that answers what OVS's
//! path-compressed prefix trie answers (`trie_lookup_value` in
//! lib/classifier.c): how many leading bits of a value must be examined to
//! tell it apart from every stored prefix, and which stored prefix lengths
//! the value matches.
//!
//! Instead of nodes it keeps one ordered set of values per prefix length.
//! Among values of one length, the longest common prefix with a probe is
//! found next to the probe's place in the order, so a lookup is two ordered
//! searches per length present. A walk down OVS's trie ends at the deepest
//! bit string `d` on some stored path; it needs one more bit when a longer
//! prefix continues from there (OVS reports the first mismatching bit), and
//! none when it ended at a leaf.

use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

use super::persistent::SortedBlocks;

/// Hasher for keys that are already well mixed 64-bit values.
#[derive(Default)]
pub(crate) struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = messages::hash::mix_word(self.0, u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub(crate) type U64BuildHasher = BuildHasherDefault<U64Hasher>;

/// Leading bits `a` and `b` share.
fn common_bits(a: u32, b: u32) -> u32 {
    (a ^ b).leading_zeros()
}

/// The answer of a lookup: see [`PrefixTrie::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrieMatch {
    /// Leading bits that must be un-wildcarded to tell the value apart.
    pub maskbits: u32,
    /// Bit `L - 1` set when a stored prefix of length `L` matches.
    plens: u32,
}

impl TrieMatch {
    /// What a lookup in one trie holding both tries' prefixes answers.
    pub fn union(self, other: TrieMatch) -> TrieMatch {
        TrieMatch {
            maskbits: self.maskbits.max(other.maskbits),
            plens: self.plens | other.plens,
        }
    }
}

/// A persistent multiset of (value, prefix length) pairs.
#[derive(Clone, Debug, Default)]
pub struct PrefixTrie {
    /// (length `L`, the `L`-bit prefix with the other bits zero) → how many
    /// times it is stored. Ordered by length, then value.
    prefixes: im::OrdMap<(u8, u32), u32>,
    /// The stored prefixes per length in sorted blocks, for lookups.
    /// Once built, a change that adds or removes a distinct prefix edits a
    /// copy of it that shares every block but the one it writes with older
    /// snapshots; before that, it is built on first use.
    flat: Arc<OnceLock<PrefixesByLen>>,
}

/// (prefix length, the stored prefixes of that length), by ascending
/// length.
type PrefixesByLen = Vec<(u32, SortedBlocks)>;

impl PrefixTrie {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    /// Adds the prefix of `plen` (1..=32) leading bits of `value`.
    pub fn insert(&mut self, value: u32, plen: u32) {
        let key = (plen as u8, value & prefix_mask32(plen));
        let count = self.prefixes.entry(key).or_default();
        *count += 1;
        if *count == 1 {
            self.edit_flat(key, true);
        }
    }

    /// Removes one copy of the prefix of `plen` leading bits of `value`.
    pub fn remove(&mut self, value: u32, plen: u32) {
        let key = (plen as u8, value & prefix_mask32(plen));
        if let Some(c) = self.prefixes.get_mut(&key) {
            *c -= 1;
            if *c == 0 {
                self.prefixes.remove(&key);
                self.edit_flat(key, false);
            }
        }
    }

    /// Adds (or removes) the distinct prefix `key` to a new lookup form,
    /// derived from the current one if it is built.
    fn edit_flat(&mut self, (len, value): (u8, u32), add: bool) {
        // Taken out, so that a form no snapshot shares is edited in place.
        let mut flat = match Arc::try_unwrap(std::mem::take(&mut self.flat)) {
            Ok(lock) => match lock.into_inner() {
                Some(flat) => flat,
                None => return,
            },
            Err(shared) => match shared.get() {
                Some(flat) => flat.clone(),
                None => return,
            },
        };
        let len = u32::from(len);
        let at = flat.partition_point(|(l, _)| *l < len);
        match flat.get_mut(at) {
            Some((l, values)) if *l == len => {
                if add {
                    values.insert(value);
                } else {
                    values.remove(value);
                }
                if values.is_empty() {
                    flat.remove(at);
                }
            }
            _ if add => {
                let mut values = SortedBlocks::default();
                values.push(value);
                flat.insert(at, (len, values));
            }
            _ => {}
        }
        self.flat = Arc::new(OnceLock::from(flat));
    }

    /// Looks `value` up.
    pub fn lookup(&self, value: u32) -> TrieMatch {
        let flat = self.flat();
        if flat.is_empty() {
            return TrieMatch {
                maskbits: 0,
                plens: 0,
            };
        }
        let mut plens = 0;
        // The longest common prefix with any stored prefix, and whether a
        // stored prefix reaching that deep continues past it.
        let mut deepest = 0;
        let mut continues = false;
        for (len, values) in flat {
            let len = *len;
            let probe = value & prefix_mask32(len);
            // The closest stored values around the probe share the most
            // leading bits with it.
            let (below, above) = values.around(probe, position_of);
            let below = below.map_or(0, |v| common_bits(v, value));
            let above = above.map_or(0, |v| common_bits(v, value));
            let lcp = below.max(above).min(len);
            if lcp == len {
                plens |= 1 << (len - 1);
            }
            if lcp > deepest {
                deepest = lcp;
                continues = len > lcp;
            } else if lcp == deepest {
                continues |= len > lcp;
            }
        }
        // A walk down OVS's trie that stops inside a longer prefix reports
        // the first mismatching bit too.
        let maskbits = if deepest < 32 && continues {
            deepest + 1
        } else {
            deepest
        };
        TrieMatch { maskbits, plens }
    }

    /// Builds the lookup form now if it is not built yet, so that no
    /// lookup has to (see [`crate::tables::Tables::prepare`]).
    pub fn prepare(&self) {
        self.flat();
    }

    /// Whether the lookup form is built.
    pub fn is_prepared(&self) -> bool {
        self.flat.get().is_some()
    }

    fn flat(&self) -> &[(u32, SortedBlocks)] {
        self.flat.get_or_init(|| {
            let mut flat: PrefixesByLen = Vec::new();
            for ((len, value), _) in self.prefixes.iter() {
                let len = u32::from(*len);
                match flat.last_mut() {
                    Some((l, values)) if *l == len => values.push(*value),
                    _ => {
                        let mut values = SortedBlocks::default();
                        values.push(*value);
                        flat.push((len, values));
                    }
                }
            }
            flat
        })
    }

    /// True if some stored prefix of exactly `plen` bits matches the value
    /// looked up (OVS's `plens` bit `plen - 1`).
    pub fn has_prefix_len(&self, m: &TrieMatch, plen: u32) -> bool {
        (1..=32).contains(&plen) && m.plens & (1 << (plen - 1)) != 0
    }
}

/// How many of the ascending `values` are below `probe`. Short lists (the
/// usual: a rule set has a few dozen prefixes of a length) are counted
/// without branches, which beats a binary search's mispredictions.
#[inline]
fn position_of(values: &[u32], probe: u32) -> usize {
    if values.len() <= 64 {
        values.iter().map(|v| u32::from(*v < probe)).sum::<u32>() as usize
    } else {
        values.partition_point(|v| *v < probe)
    }
}

/// The mask of the `n` leading bits of a 32-bit value.
pub fn prefix_mask32(n: u32) -> u32 {
    if n == 0 {
        0
    } else {
        u32::MAX << (32 - n.min(32))
    }
}

/// If `mask` is a CIDR prefix mask, its length.
pub fn prefix_len32(mask: u32) -> Option<u32> {
    let n = mask.leading_ones();
    (prefix_mask32(n) == mask).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(a: u8, b: u8, c: u8, d: u8) -> u32 {
        u32::from_be_bytes([a, b, c, d])
    }

    #[test]
    fn empty_trie_needs_no_bits() {
        let t = PrefixTrie::new();
        assert_eq!(t.lookup(ip(10, 0, 0, 1)).maskbits, 0);
    }

    #[test]
    fn mismatch_inside_a_prefix_reports_first_differing_bit() {
        let mut t = PrefixTrie::new();
        t.insert(ip(10, 0, 0, 0), 8);
        // 11.x differs from 10.x at bit 7 (0-based): 8 bits needed.
        assert_eq!(t.lookup(ip(11, 0, 0, 0)).maskbits, 8);
        // 138.x differs at bit 0: one bit.
        assert_eq!(t.lookup(ip(138, 0, 0, 0)).maskbits, 1);
    }

    #[test]
    fn full_match_of_a_leaf_needs_its_length() {
        let mut t = PrefixTrie::new();
        t.insert(ip(10, 0, 0, 0), 8);
        let m = t.lookup(ip(10, 1, 2, 3));
        assert_eq!(m.maskbits, 8);
        assert!(t.has_prefix_len(&m, 8));
        assert!(!t.has_prefix_len(&m, 16));
    }

    #[test]
    fn longer_prefixes_below_a_match_need_one_more_bit() {
        let mut t = PrefixTrie::new();
        t.insert(ip(10, 0, 0, 0), 8);
        t.insert(ip(10, 128, 0, 0), 9);
        // 10.1.x follows 10/8 then would need bit 8 = 0, but only the
        // 1-branch exists: 9 bits.
        assert_eq!(t.lookup(ip(10, 1, 0, 0)).maskbits, 9);
        t.remove(ip(10, 128, 0, 0), 9);
        assert_eq!(t.lookup(ip(10, 1, 0, 0)).maskbits, 8);
    }

    #[test]
    fn exact_values_need_all_bits() {
        let mut t = PrefixTrie::new();
        t.insert(ip(10, 0, 0, 1), 32);
        assert_eq!(t.lookup(ip(10, 0, 0, 1)).maskbits, 32);
        assert_eq!(t.lookup(ip(10, 0, 0, 3)).maskbits, 31);
    }

    /// The answer from its definition: every stored prefix, compared.
    fn lookup_by_definition(stored: &[(u32, u32)], value: u32) -> TrieMatch {
        let lcps: Vec<(u32, u32)> = stored
            .iter()
            .map(|&(v, len)| (len, common_bits(v & prefix_mask32(len), value).min(len)))
            .collect();
        let plens = lcps
            .iter()
            .filter(|(len, lcp)| lcp == len)
            .fold(0, |acc, (len, _)| acc | 1 << (len - 1));
        let deepest = lcps.iter().map(|(_, lcp)| *lcp).max().unwrap_or(0);
        let continues = lcps
            .iter()
            .any(|(len, lcp)| *lcp == deepest && *len > deepest);
        let maskbits = if deepest < 32 && continues {
            deepest + 1
        } else {
            deepest
        };
        TrieMatch { maskbits, plens }
    }

    proptest::proptest! {
        #[test]
        fn lookups_agree_with_the_definition(
            // Values drawn near each other, so that prefixes nest and share bits.
            stored in proptest::collection::vec((0u32..64, 1u32..=32), 0..100),
            probes in proptest::collection::vec(0u32..64, 1..20),
            spread in 0u32..27,
        ) {
            let stored: Vec<(u32, u32)> = stored
                .into_iter()
                .map(|(v, len)| (v.rotate_right(spread + 6), len))
                .collect();
            let mut t = PrefixTrie::new();
            for &(v, len) in &stored {
                t.insert(v, len);
            }
            for p in probes {
                let value = p.rotate_right(spread + 6) ^ (p << 3);
                proptest::prop_assert_eq!(t.lookup(value), lookup_by_definition(&stored, value));
            }
        }

        /// Inserts and removes after the lookup form is built edit it in
        /// place of a rebuild; older copies keep answering for their set.
        #[test]
        fn lookups_agree_with_the_definition_under_churn(
            ops in proptest::collection::vec((proptest::bool::weighted(0.6), 0u32..64, 1u32..=32, 0u32..64), 1..120),
            spread in 0u32..27,
        ) {
            let at = |v: u32| v.rotate_right(spread + 6);
            let mut t = PrefixTrie::new();
            let mut stored: Vec<(u32, u32)> = Vec::new();
            let mut old: Option<(PrefixTrie, Vec<(u32, u32)>)> = None;
            for (i, (add, v, len, probe)) in ops.into_iter().enumerate() {
                let v = at(v);
                if add {
                    t.insert(v, len);
                    stored.push((v, len));
                } else if let Some(k) = stored.iter().position(|&(w, l)| l == len && w & prefix_mask32(l) == v & prefix_mask32(l)) {
                    t.remove(v, len);
                    stored.remove(k);
                }
                let value = at(probe) ^ (probe << 3);
                proptest::prop_assert_eq!(t.lookup(value), lookup_by_definition(&stored, value));
                if i % 7 == 0 {
                    old = Some((t.clone(), stored.clone()));
                }
                if let Some((o, os)) = &old {
                    proptest::prop_assert_eq!(o.lookup(value), lookup_by_definition(os, value));
                }
            }
        }
    }

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_len32(0xffff_0000), Some(16));
        assert_eq!(prefix_len32(0), Some(0));
        assert_eq!(prefix_len32(0xff00_ff00), None);
        assert_eq!(prefix_mask32(32), u32::MAX);
    }
}
