//! The exact-match cache in front of the megaflow table (OVS's EMC, in
//! `dpif-netdev-dfc`).

use super::*;

/// The words of a key that tell traffic apart: the input port, the
/// Ethernet addresses and type, the VLAN tags, the IP addresses (IPv4 and
/// IPv6), the protocol and the transport ports, as the RSS hash OVS's EMC uses covers
/// the 5-tuple. Packets that differ only elsewhere share a hash, and the
/// cache compares whole keys.
pub(super) const EMC_HASH_WORDS: [usize; 11] = {
    use std::mem::offset_of;
    [
        offset_of!(Flow, in_port) / 8,
        offset_of!(Flow, dl_dst) / 8,
        offset_of!(Flow, dl_dst) / 8 + 1,
        offset_of!(Flow, vlans) / 8,
        offset_of!(Flow, nw_src) / 8,
        offset_of!(Flow, ipv6_src) / 8,
        offset_of!(Flow, ipv6_src) / 8 + 1,
        offset_of!(Flow, ipv6_dst) / 8,
        offset_of!(Flow, ipv6_dst) / 8 + 1,
        offset_of!(Flow, nw_proto) / 8,
        offset_of!(Flow, tp_src) / 8,
    ]
};

/// The exact-match cache's hash of a packet's key (see
/// [`EMC_HASH_WORDS`]): the table hash chained over them, then spread. Hashing the
/// whole 33-word key took a third of a hit's time.
#[inline]
pub(super) fn emc_hash(key: &Flow) -> u64 {
    let words = key.words();
    finish_fold(
        EMC_HASH_WORDS
            .iter()
            .fold(0u64, |h, &i| mix_word(h, words[i])),
    )
}

/// The exact-match cache in front of the megaflows, one per receive loop,
/// as OVS's EMC: a fixed array of slots indexed by the key's hash, each
/// key with two candidate slots. A miss is inserted only one time in
/// `insert_inv_prob` (OVS's `emc-insert-inv-prob`, 100 by default), so a
/// flood of new flows does not wash out the flows that keep hitting; 1
/// inserts always, 0 turns the cache off. Entries of deleted or modified
/// megaflows are dropped when next met.
pub struct Emc {
    slots: Box<[EmcSlot]>,
    /// `slots.len() - 1` (a power of two minus one).
    index_mask: usize,
    insert_inv_prob: u32,
    /// xorshift state for the insertion draw.
    rng: u32,
}

pub(super) struct EmcSlot {
    hash: u64,
    key: Flow,
    entry: Option<Arc<FlowEntry>>,
}

impl Emc {
    /// A cache of at least `entries` slots (rounded up to a power of two).
    pub fn new(entries: usize, insert_inv_prob: u32) -> Self {
        let n = entries.max(2).next_power_of_two();
        // Every slot written now, as OVS initializes its EMC when a PMD
        // thread starts: left to be touched on first use, the cache's
        // pages would be faulted in one by one on the packet path (about
        // 600 faults for the default 8192 slots).
        let slots = (0..n)
            .map(|_| EmcSlot {
                hash: 0,
                key: Flow::default(),
                entry: None,
            })
            .collect();
        Emc {
            slots,
            index_mask: n - 1,
            insert_inv_prob: if entries == 0 { 0 } else { insert_inv_prob },
            rng: 0x9e37_79b9,
        }
    }

    #[inline]
    fn slot_indices(&self, hash: u64) -> [usize; 2] {
        [
            hash as usize & self.index_mask,
            (hash >> 32) as usize & self.index_mask,
        ]
    }

    /// The live megaflow cached for `key`, if any.
    #[inline]
    pub fn lookup(&mut self, key: &Flow) -> Option<Arc<FlowEntry>> {
        if self.insert_inv_prob == 0 {
            return None;
        }
        let hash = emc_hash(key);
        for i in self.slot_indices(hash) {
            let slot = &mut self.slots[i];
            if slot.hash == hash && slot.key == *key {
                match &slot.entry {
                    Some(e) if !e.is_dead() => return Some(e.clone()),
                    Some(_) => slot.entry = None,
                    None => {}
                }
            }
        }
        None
    }

    /// Caches `entry` for `key` when the insertion draw says so.
    #[inline]
    pub fn maybe_insert(&mut self, key: &Flow, entry: &Arc<FlowEntry>) {
        match self.insert_inv_prob {
            0 => {}
            1 => self.insert(key, entry.clone()),
            n => {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 17;
                self.rng ^= self.rng << 5;
                if self.rng.is_multiple_of(n) {
                    self.insert(key, entry.clone());
                }
            }
        }
    }

    /// Caches `entry` for `key`: in the key's own slot if it has one, else
    /// in a free or stale candidate slot, else over the second candidate.
    pub fn insert(&mut self, key: &Flow, entry: Arc<FlowEntry>) {
        let hash = emc_hash(key);
        let [a, b] = self.slot_indices(hash);
        let usable = |s: &EmcSlot| s.entry.as_ref().is_none_or(|e| e.is_dead());
        let i = if self.slots[a].hash == hash && self.slots[a].key == *key {
            a
        } else if self.slots[b].hash == hash && self.slots[b].key == *key {
            b
        } else if usable(&self.slots[a]) {
            a
        } else {
            b
        };
        self.slots[i] = EmcSlot {
            hash,
            key: *key,
            entry: Some(entry),
        };
    }
}
