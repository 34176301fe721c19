//! A persistent binary prefix set over 32-bit values that answers what OVS's
//! path-compressed prefix trie answers (`trie_lookup_value` in
//! lib/classifier.c): how many leading bits of a value must be examined to
//! tell it apart from every stored prefix, and which stored prefix lengths
//! the value matches.
//!
//! Instead of nodes, it counts, for every depth `k` and every `k`-bit
//! string, how many stored prefixes pass through that string (`through`)
//! and how many end there (`end`). A value's walk ends at the deepest depth
//! whose string is on some stored path; one more bit is needed when a
//! longer prefix continues from there (OVS reports the first mismatching
//! bit), none when the walk ended at a leaf.

use std::hash::{BuildHasherDefault, Hasher};

/// Counts of one trie position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counts {
    /// Stored prefixes at least this long that start with this string.
    through: u32,
    /// Stored prefixes exactly this long and equal to this string.
    end: u32,
}

/// Hasher for keys that are already well mixed 64-bit values.
#[derive(Default)]
pub(crate) struct U64Hasher(u64);

impl Hasher for U64Hasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ *b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

pub(crate) type U64BuildHasher = BuildHasherDefault<U64Hasher>;

/// Position key: depth in the high bits, the depth's leading bits below.
fn position(depth: u32, value: u32) -> u64 {
    let bits = if depth == 0 { 0 } else { value >> (32 - depth) };
    // Spread the key so that the identity hasher distributes it well.
    (((depth as u64) << 32) | bits as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// The answer of a lookup: see [`PrefixTrie::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrieMatch {
    /// Leading bits that must be un-wildcarded to tell the value apart.
    pub maskbits: u32,
    value: u32,
}

/// A persistent set of (value, prefix length) pairs with multiplicity.
#[derive(Clone, Debug, Default)]
pub struct PrefixTrie {
    counts: im::HashMap<u64, Counts, U64BuildHasher>,
}

impl PrefixTrie {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Adds the prefix of `plen` leading bits of `value`.
    pub fn insert(&mut self, value: u32, plen: u32) {
        for depth in 0..=plen {
            let e = self.counts.entry(position(depth, value)).or_default();
            e.through += 1;
            if depth == plen {
                e.end += 1;
            }
        }
    }

    /// Removes one copy of the prefix of `plen` leading bits of `value`.
    pub fn remove(&mut self, value: u32, plen: u32) {
        for depth in 0..=plen {
            let key = position(depth, value);
            let Some(c) = self.counts.get_mut(&key) else {
                continue;
            };
            c.through = c.through.saturating_sub(1);
            if depth == plen {
                c.end = c.end.saturating_sub(1);
            }
            if c.through == 0 {
                self.counts.remove(&key);
            }
        }
    }

    fn counts_at(&self, depth: u32, value: u32) -> Option<Counts> {
        self.counts.get(&position(depth, value)).copied()
    }

    /// Looks `value` up; `n_bits` is the field width (32 for IPv4
    /// addresses and for the transport ports word).
    pub fn lookup(&self, value: u32) -> TrieMatch {
        let Some(root) = self.counts_at(0, value) else {
            return TrieMatch { maskbits: 0, value };
        };
        // The deepest depth still on a stored path; depths on the path are
        // contiguous from 0, so a binary search finds it.
        let (mut on_path, mut off_path) = (0u32, 33u32);
        let mut deepest = root;
        while off_path - on_path > 1 {
            let mid = (on_path + off_path) / 2;
            match self.counts_at(mid, value) {
                Some(c) => {
                    on_path = mid;
                    deepest = c;
                }
                None => off_path = mid,
            }
        }
        let maskbits = if on_path == 32 {
            32
        } else if deepest.through > deepest.end {
            on_path + 1
        } else {
            on_path
        };
        TrieMatch { maskbits, value }
    }

    /// True if some stored prefix of exactly `plen` bits matches the value
    /// looked up (OVS's `plens` bit `plen - 1`).
    pub fn has_prefix_len(&self, m: &TrieMatch, plen: u32) -> bool {
        self.counts_at(plen, m.value).is_some_and(|c| c.end > 0)
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

    #[test]
    fn prefix_masks() {
        assert_eq!(prefix_len32(0xffff_0000), Some(16));
        assert_eq!(prefix_len32(0), Some(0));
        assert_eq!(prefix_len32(0xff00_ff00), None);
        assert_eq!(prefix_mask32(32), u32::MAX);
    }
}
