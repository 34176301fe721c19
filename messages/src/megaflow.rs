//! A megaflow's match in sparse form: the words its mask pins.
//!
//! A megaflow's key and mask are two whole [`Flow`]s, over a thousand bytes,
//! yet a mask pins only a handful of a flow's words (in_port, the EtherType
//! word, an address, the ports). OVS keeps installed megaflows as a
//! minimask and a miniflow for that reason; a put carries this form, so that
//! what moves from a handler to the datapath's writer is a few cache lines.

use crate::flow::{Flow, FlowWildcards};

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

/// A key under a mask, as the mask's nonzero 64-bit words in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Megaflow {
    words: Vec<MaskedWord>,
}

impl Megaflow {
    /// The megaflow of `key` under `mask` (`key` need not be masked).
    pub fn new(key: &Flow, mask: &FlowWildcards) -> Self {
        let mut m = Megaflow::default();
        m.set(key, mask);
        m
    }

    /// Makes this the megaflow of `key` under `mask`, reusing its memory.
    pub fn set(&mut self, key: &Flow, mask: &FlowWildcards) {
        self.words.clear();
        for (index, (&m, &k)) in mask.words().iter().zip(key.words()).enumerate() {
            if m != 0 {
                self.words.push(MaskedWord {
                    index,
                    mask: m,
                    value: k & m,
                });
            }
        }
    }

    /// The pinned words, in order of position.
    #[inline]
    pub fn words(&self) -> &[MaskedWord] {
        &self.words
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
    use crate::flow::FLOW_U64S;

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
