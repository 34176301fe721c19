//! A megaflow's match in sparse form: the words its mask pins.
//!
//! A megaflow's key and mask are two whole [`Flow`]s, over a thousand bytes,
//! yet a mask pins only a handful of a flow's words (in_port, the EtherType
//! word, an address, the ports). OVS keeps installed megaflows as a
//! minimask and a miniflow for that reason; a put carries this form, so that
//! what moves from a handler to the datapath's writer is a few cache lines.

use crate::flow::{Flow, FlowWildcards, FLOW_U64S};

/// One word a megaflow's mask pins.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaskedWord {
    /// The word's position in a [`Flow`].
    pub index: usize,
    /// The mask's word (never 0).
    pub mask: u64,
    /// The key's word under the mask.
    pub value: u64,
}

/// A key under a mask, as the mask's nonzero 64-bit words in order, with
/// the set of their positions as a bitmap (OVS's miniflow map).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Megaflow {
    words: Vec<MaskedWord>,
    /// Bit `i` is set when word `i` is pinned.
    map: u64,
}

const _: () = assert!(FLOW_U64S <= 64, "a megaflow's map has a bit per word");

impl Megaflow {
    /// The megaflow of `key` under `mask` (`key` need not be masked).
    pub fn new(key: &Flow, mask: &FlowWildcards) -> Self {
        let mut m = Megaflow::default();
        m.set(key, mask);
        m
    }

    /// Makes this the megaflow of `key` under `mask`, reusing its memory.
    pub fn set(&mut self, key: &Flow, mask: &FlowWildcards) {
        let (kw, mw) = (key.words(), mask.words());
        // The pinned positions first, without a branch per word: a mask
        // pins a handful of a flow's words, at positions that vary from
        // one megaflow to the next.
        let map = mw
            .iter()
            .rev()
            .fold(0u64, |map, &m| (map << 1) | u64::from(m != 0));
        self.map = map;
        self.words.clear();
        // Counted first, so that the words are added without a capacity
        // check each.
        let mut bits = map;
        self.words.extend((0..map.count_ones()).map(|_| {
            let index = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let mask = mw[index];
            MaskedWord {
                index,
                mask,
                value: kw[index] & mask,
            }
        }));
    }

    /// The pinned words, in order of position.
    #[inline]
    pub fn words(&self) -> &[MaskedWord] {
        &self.words
    }

    /// The pinned positions: bit `i` for word `i`.
    #[inline]
    pub fn map(&self) -> u64 {
        self.map
    }

    /// How many words the mask pins.
    #[inline]
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// True for the megaflow that matches every packet.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The key, masked, as a whole flow.
    pub fn key(&self) -> Flow {
        self.expand(|w| w.value)
    }

    /// The mask as a whole flow.
    pub fn mask(&self) -> FlowWildcards {
        self.expand(|w| w.mask)
    }

    /// A flow holding `part` of each pinned word, zero elsewhere.
    fn expand(&self, part: impl Fn(&MaskedWord) -> u64) -> Flow {
        let mut flow = Flow::default();
        let words = flow.words_mut();
        for w in &self.words {
            words[w.index] = part(w);
        }
        flow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow() -> Flow {
        Flow {
            in_port: 7,
            dl_type: 0x0800,
            nw_src: 0xc0a8_0001,
            nw_dst: 0x0a00_0001,
            tp_dst: 80,
            igmp_group_ip4: 0xdead_beef,
            ..Flow::default()
        }
    }

    #[test]
    fn round_trips_the_masked_key_and_the_mask() {
        let key = flow();
        let mut mask = Flow {
            in_port: u32::MAX,
            dl_type: u16::MAX,
            nw_dst: 0xffff_0000,
            tp_dst: u16::MAX,
            ..Flow::default()
        };
        let m = Megaflow::new(&key, &mask);
        assert_eq!(m.mask(), mask);
        assert_eq!(m.key(), key.masked(&mask));
        assert_eq!(m.len(), mask.words().iter().filter(|w| **w != 0).count());
        // The last word of the flow is kept too.
        mask.igmp_group_ip4 = u32::MAX;
        let m = Megaflow::new(&key, &mask);
        assert_eq!(m.key(), key.masked(&mask));
        assert_eq!(m.words().last().map(|w| w.index), Some(FLOW_U64S - 1));
        assert_eq!(m.map() >> (FLOW_U64S - 1), 1);
    }

    proptest::proptest! {
        /// The sparse form is the definition: every nonzero mask word,
        /// in order, with the key under it, and the map of their places.
        #[test]
        fn is_the_masks_nonzero_words_with_their_map(
            pinned in proptest::collection::vec((0..FLOW_U64S, proptest::num::u64::ANY, proptest::num::u64::ANY), 0..12)
        ) {
            let (mut key, mut mask) = (Flow::default(), Flow::default());
            for &(i, k, m) in &pinned {
                key.words_mut()[i] = k;
                mask.words_mut()[i] = m;
            }
            let mut m = Megaflow::new(&flow(), &Flow { in_port: 1, ..Flow::default() });
            m.set(&key, &mask);
            let expected: Vec<MaskedWord> = (0..FLOW_U64S)
                .filter(|&i| mask.words()[i] != 0)
                .map(|i| MaskedWord { index: i, mask: mask.words()[i], value: key.words()[i] & mask.words()[i] })
                .collect();
            proptest::prop_assert_eq!(m.words(), expected.as_slice());
            let mut map = 0u64;
            for w in &expected {
                map |= 1 << w.index;
            }
            proptest::prop_assert_eq!(m.map(), map);
        }
    }

    #[test]
    fn set_reuses_and_forgets_the_previous_megaflow() {
        let key = flow();
        let wide = Flow {
            nw_src: u32::MAX,
            nw_dst: u32::MAX,
            tp_dst: u16::MAX,
            ..Flow::default()
        };
        let narrow = Flow {
            in_port: u32::MAX,
            ..Flow::default()
        };
        let mut m = Megaflow::new(&key, &wide);
        m.set(&key, &narrow);
        assert_eq!(m, Megaflow::new(&key, &narrow));
        assert_eq!(m.len(), 1);
        m.set(&key, &Flow::default());
        assert!(m.is_empty());
        assert_eq!(m.key(), Flow::default());
    }
}
