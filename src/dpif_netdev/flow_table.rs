//! The megaflow cache of the userspace datapath: one hash table per
//! distinct mask (tuple space search, as OVS's dpcls), an index by ufid, and
//! an exact-match cache that sits in front of it in each port's receive loop.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use actors::dpif::flow_hash;
use hashbrown::HashTable;
use messages::dpif::{DpFlow, FlowStats, Ufid};
use messages::odp::OdpActions;
use messages::Flow;

/// One installed megaflow with its live statistics.
#[derive(Debug)]
pub struct FlowEntry {
    pub ufid: Ufid,
    /// The key, already masked.
    pub key: Flow,
    pub mask: Flow,
    pub actions: OdpActions,
    n_packets: AtomicU64,
    n_bytes: AtomicU64,
    /// Monotonic ms of the last hit plus one; 0 means never used.
    used_plus_one: AtomicU64,
    tcp_flags: AtomicU16,
    /// Set when the entry is deleted or replaced, so that exact-match
    /// caches holding it stop using it.
    dead: AtomicBool,
}

impl FlowEntry {
    fn new(ufid: Ufid, key: Flow, mask: Flow, actions: OdpActions) -> Self {
        FlowEntry {
            ufid,
            key: key.masked(&mask),
            mask,
            actions,
            n_packets: AtomicU64::new(0),
            n_bytes: AtomicU64::new(0),
            used_plus_one: AtomicU64::new(0),
            tcp_flags: AtomicU16::new(0),
            dead: AtomicBool::new(false),
        }
    }

    /// Credits one packet to the flow.
    #[inline]
    pub fn hit(&self, bytes: usize, now_ms: u64, tcp_flags: u16) {
        self.n_packets.fetch_add(1, Ordering::Relaxed);
        self.n_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.used_plus_one.store(now_ms + 1, Ordering::Relaxed);
        if tcp_flags != 0 {
            self.tcp_flags.fetch_or(tcp_flags, Ordering::Relaxed);
        }
    }

    pub fn stats(&self) -> FlowStats {
        let used = self.used_plus_one.load(Ordering::Relaxed);
        FlowStats {
            n_packets: self.n_packets.load(Ordering::Relaxed),
            n_bytes: self.n_bytes.load(Ordering::Relaxed),
            used_ms: used.checked_sub(1),
            tcp_flags: self.tcp_flags.load(Ordering::Relaxed),
        }
    }

    fn take_stats_from(&self, old: &FlowEntry) {
        let s = old.stats();
        self.n_packets.store(s.n_packets, Ordering::Relaxed);
        self.n_bytes.store(s.n_bytes, Ordering::Relaxed);
        self.used_plus_one
            .store(s.used_ms.map_or(0, |u| u + 1), Ordering::Relaxed);
        self.tcp_flags.store(s.tcp_flags, Ordering::Relaxed);
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    pub fn to_dp_flow(&self) -> DpFlow {
        DpFlow {
            ufid: self.ufid,
            key: self.key,
            mask: self.mask,
            actions: self.actions.clone(),
            stats: self.stats(),
        }
    }
}

/// A flow used as a hash key, hashed once with [`flow_hash`].
#[derive(Clone, Copy, PartialEq, Eq)]
struct HashedFlow {
    hash: u64,
    flow: Flow,
}

impl HashedFlow {
    #[inline]
    fn new(flow: Flow) -> Self {
        HashedFlow {
            hash: flow_hash(&flow, 0),
            flow,
        }
    }
}

impl Hash for HashedFlow {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes a precomputed 64-bit hash through.
#[derive(Default)]
struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | *b as u64;
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

type PrehashedMap<V> = HashMap<HashedFlow, V, BuildHasherDefault<PrehashedHasher>>;

/// The megaflows that share one mask. Only the mask's nonzero words are
/// hashed and compared (masks are sparse), like OVS's miniflows.
struct Subtable {
    mask: Flow,
    /// The mask's nonzero 64-bit words, with their indices.
    words: Vec<(usize, u64)>,
    flows: HashTable<Arc<FlowEntry>>,
    /// Lookups that hit here, to try busy subtables first.
    hits: AtomicU64,
}

impl Subtable {
    fn new(mask: Flow) -> Self {
        let words = mask
            .words()
            .iter()
            .enumerate()
            .filter(|(_, w)| **w != 0)
            .map(|(i, w)| (i, *w))
            .collect();
        Subtable {
            mask,
            words,
            flows: HashTable::new(),
            hits: AtomicU64::new(0),
        }
    }

    /// Hash of `key` under the mask (`key` need not be masked).
    #[inline]
    fn hash(&self, key: &Flow) -> u64 {
        subtable_hash(&self.words, key)
    }

    #[inline]
    fn find(&self, key: &Flow) -> Option<&Arc<FlowEntry>> {
        let k = key.words();
        self.flows.find(self.hash(key), |e| {
            let ek = e.key.words();
            self.words.iter().all(|&(i, m)| ek[i] == k[i] & m)
        })
    }
}

/// Why a put was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    #[error("a flow with ufid {0:032x} already exists")]
    UfidExists(Ufid),
    #[error("the same megaflow is installed as ufid {0:032x}")]
    SameMegaflow(Ufid),
    #[error("no flow with ufid {0:032x} to modify")]
    NoSuchFlow(Ufid),
    #[error("the datapath holds its maximum of {0} flows")]
    Full(usize),
}

/// All megaflows of the datapath.
pub struct FlowTable {
    subtables: Vec<Subtable>,
    by_mask: PrehashedMap<usize>,
    by_ufid: HashMap<Ufid, Arc<FlowEntry>>,
    max_flows: usize,
}

impl FlowTable {
    pub fn new(max_flows: usize) -> Self {
        FlowTable {
            subtables: Vec::new(),
            by_mask: PrehashedMap::default(),
            by_ufid: HashMap::new(),
            max_flows,
        }
    }

    pub fn len(&self) -> usize {
        self.by_ufid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ufid.is_empty()
    }

    /// The megaflow matching a packet's key, if any.
    #[inline]
    pub fn lookup(&self, key: &Flow) -> Option<&Arc<FlowEntry>> {
        self.subtables.iter().find_map(|st| {
            let found = st.find(key);
            if found.is_some() {
                st.hits.fetch_add(1, Ordering::Relaxed);
            }
            found
        })
    }

    /// Looks up a burst of keys subtable by subtable (as OVS's dpcls does),
    /// so that each subtable's table stays in cache while the burst probes
    /// it: `found[i]` gets the megaflow of `keys[i]` where it is `None`.
    /// Each key gets the same megaflow [`FlowTable::lookup`] would give it.
    pub fn lookup_burst(&self, keys: &[Flow], found: &mut [Option<Arc<FlowEntry>>]) {
        let mut left = found.iter().filter(|f| f.is_none()).count();
        for st in &self.subtables {
            if left == 0 {
                break;
            }
            let mut hits = 0;
            for (key, slot) in keys.iter().zip(found.iter_mut()) {
                if slot.is_none() {
                    if let Some(e) = st.find(key) {
                        *slot = Some(e.clone());
                        hits += 1;
                    }
                }
            }
            if hits > 0 {
                st.hits.fetch_add(hits, Ordering::Relaxed);
                left -= hits as usize;
            }
        }
    }

    /// Orders subtables by hits since the last call, busiest first.
    pub fn rank_subtables(&mut self) {
        self.subtables
            .sort_by_key(|st| std::cmp::Reverse(st.hits.swap(0, Ordering::Relaxed)));
        for (i, st) in self.subtables.iter().enumerate() {
            self.by_mask.insert(HashedFlow::new(st.mask), i);
        }
    }

    /// Installs a new megaflow. Like the kernel datapath, refuses only a
    /// megaflow that is already there (same ufid, or same mask and key):
    /// megaflows with different masks may overlap, which is harmless since
    /// each one is right for every packet it matches. (OVS's userspace
    /// datapath also refuses a key that any installed megaflow matches; that
    /// check costs a lookup in every subtable per put.)
    pub fn create(
        &mut self,
        ufid: Ufid,
        key: &Flow,
        mask: &Flow,
        actions: OdpActions,
    ) -> Result<(), PutError> {
        if self.by_ufid.contains_key(&ufid) {
            return Err(PutError::UfidExists(ufid));
        }
        let key = key.masked(mask);
        if let Some(&i) = self.by_mask.get(&HashedFlow::new(*mask)) {
            if let Some(other) = self.subtables[i].find(&key) {
                return Err(PutError::SameMegaflow(other.ufid));
            }
        }
        if self.by_ufid.len() >= self.max_flows {
            return Err(PutError::Full(self.max_flows));
        }
        let entry = Arc::new(FlowEntry::new(ufid, key, *mask, actions));
        self.insert(entry);
        Ok(())
    }

    /// Replaces the actions of the flow `ufid`, keeping its statistics
    /// unless `reset_stats`.
    pub fn modify(
        &mut self,
        ufid: Ufid,
        actions: OdpActions,
        reset_stats: bool,
    ) -> Result<(), PutError> {
        let old = self
            .by_ufid
            .get(&ufid)
            .cloned()
            .ok_or(PutError::NoSuchFlow(ufid))?;
        let entry = Arc::new(FlowEntry::new(ufid, old.key, old.mask, actions));
        if !reset_stats {
            entry.take_stats_from(&old);
        }
        old.dead.store(true, Ordering::Relaxed);
        self.insert(entry);
        Ok(())
    }

    fn insert(&mut self, entry: Arc<FlowEntry>) {
        let i = match self.by_mask.get(&HashedFlow::new(entry.mask)) {
            Some(i) => *i,
            None => {
                self.subtables.push(Subtable::new(entry.mask));
                let i = self.subtables.len() - 1;
                self.by_mask.insert(HashedFlow::new(entry.mask), i);
                i
            }
        };
        let st = &mut self.subtables[i];
        let hash = st.hash(&entry.key);
        let words = &st.words;
        let key = entry.key;
        let same = |e: &Arc<FlowEntry>| {
            words
                .iter()
                .all(|&(w, _)| e.key.words()[w] == key.words()[w])
        };
        match st.flows.find_mut(hash, same) {
            Some(slot) => *slot = entry.clone(),
            None => {
                let Subtable { flows, words, .. } = st;
                let rehash = |e: &Arc<FlowEntry>| subtable_hash(words, &e.key);
                flows.insert_unique(hash, entry.clone(), rehash);
            }
        }
        self.by_ufid.insert(entry.ufid, entry);
    }

    /// Removes the flow `ufid`; returns it (with its final statistics).
    pub fn delete(&mut self, ufid: Ufid) -> Option<Arc<FlowEntry>> {
        let entry = self.by_ufid.remove(&ufid)?;
        entry.dead.store(true, Ordering::Relaxed);
        let mask_key = HashedFlow::new(entry.mask);
        if let Some(&i) = self.by_mask.get(&mask_key) {
            let st = &mut self.subtables[i];
            let hash = st.hash(&entry.key);
            if let Ok(found) = st.flows.find_entry(hash, |e| e.ufid == ufid) {
                found.remove();
            }
            if st.flows.is_empty() {
                self.subtables.swap_remove(i);
                self.by_mask.remove(&mask_key);
                if let Some(moved) = self.subtables.get(i) {
                    self.by_mask.insert(HashedFlow::new(moved.mask), i);
                }
            }
        }
        Some(entry)
    }

    pub fn get(&self, ufid: Ufid) -> Option<&Arc<FlowEntry>> {
        self.by_ufid.get(&ufid)
    }

    pub fn entries(&self) -> impl Iterator<Item = &Arc<FlowEntry>> {
        self.by_ufid.values()
    }

    pub fn n_masks(&self) -> usize {
        self.subtables.len()
    }
}

/// Hash of `key` under a subtable's mask words. Folding with rotate and
/// xor keeps the per-word work short (this runs once per subtable per
/// lookup); one final multiply-and-shift spreads the bits.
#[inline]
fn subtable_hash(words: &[(usize, u64)], key: &Flow) -> u64 {
    let k = key.words();
    let mut h = 0u64;
    for &(i, m) in words {
        h = h.rotate_left(23) ^ (k[i] & m);
    }
    h = (h ^ (h >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// The exact-match cache: full packet key → megaflow, per receive loop.
/// Entries of deleted or modified megaflows are dropped when next met.
pub struct Emc {
    map: PrehashedMap<Arc<FlowEntry>>,
    capacity: usize,
}

impl Emc {
    pub fn new(capacity: usize) -> Self {
        Emc {
            map: PrehashedMap::default(),
            capacity,
        }
    }

    #[inline]
    pub fn lookup(&mut self, key: &Flow) -> Option<Arc<FlowEntry>> {
        let k = HashedFlow::new(*key);
        match self.map.get(&k) {
            Some(e) if !e.is_dead() => Some(e.clone()),
            Some(_) => {
                self.map.remove(&k);
                None
            }
            None => None,
        }
    }

    #[inline]
    pub fn insert(&mut self, key: &Flow, entry: Arc<FlowEntry>) {
        if self.map.len() >= self.capacity {
            // A full cache starts over: cheap, and hot flows come back at once.
            self.map.clear();
        }
        self.map.insert(HashedFlow::new(*key), entry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::odp::OdpAction;

    fn flow(nw_src: u32, tp_dst: u16) -> Flow {
        Flow {
            in_port: 1,
            dl_type: 0x0800,
            nw_src,
            nw_proto: 6,
            tp_dst,
            ..Flow::default()
        }
    }

    fn mask_src_only() -> Flow {
        Flow {
            in_port: u32::MAX,
            dl_type: u16::MAX,
            nw_src: u32::MAX,
            ..Flow::default()
        }
    }

    #[test]
    fn lookup_finds_megaflow_under_its_mask_only() {
        let mut t = FlowTable::new(100);
        t.create(
            7,
            &flow(0x0a000001, 80),
            &mask_src_only(),
            vec![OdpAction::Output(2)],
        )
        .unwrap();
        assert_eq!(t.lookup(&flow(0x0a000001, 443)).map(|e| e.ufid), Some(7));
        assert!(t.lookup(&flow(0x0a000002, 80)).is_none());
        assert_eq!(t.n_masks(), 1);
    }

    #[test]
    fn create_refuses_duplicates_and_overflow() {
        let mut t = FlowTable::new(2);
        let m = mask_src_only();
        t.create(1, &flow(1, 0), &m, vec![]).unwrap();
        assert_eq!(
            t.create(1, &flow(2, 0), &m, vec![]),
            Err(PutError::UfidExists(1))
        );
        assert_eq!(
            t.create(2, &flow(1, 80), &m, vec![]),
            Err(PutError::SameMegaflow(1))
        );
        let exact = Flow {
            tp_dst: u16::MAX,
            nw_proto: u8::MAX,
            ..m
        };
        // A narrower megaflow inside flow 1's may coexist with it.
        t.create(3, &flow(1, 80), &exact, vec![]).unwrap();
        assert_eq!(t.create(4, &flow(3, 0), &m, vec![]), Err(PutError::Full(2)));
    }

    #[test]
    fn modify_keeps_stats_and_kills_emc_entries() {
        let mut t = FlowTable::new(10);
        let mut emc = Emc::new(4);
        let f = flow(5, 22);
        t.create(9, &f, &mask_src_only(), vec![]).unwrap();
        let e = t.lookup(&f).unwrap().clone();
        e.hit(100, 1000, 0x02);
        emc.insert(&f, e);
        t.modify(9, vec![OdpAction::Output(3)], false).unwrap();
        assert!(emc.lookup(&f).is_none());
        let now = t.get(9).unwrap();
        assert_eq!(now.actions, vec![OdpAction::Output(3)]);
        assert_eq!(now.stats().n_packets, 1);
        assert_eq!(now.stats().used_ms, Some(1000));
        t.modify(9, vec![], true).unwrap();
        assert_eq!(t.get(9).unwrap().stats(), FlowStats::default());
    }

    #[test]
    fn delete_removes_empty_subtables() {
        let mut t = FlowTable::new(10);
        t.create(1, &flow(1, 0), &mask_src_only(), vec![]).unwrap();
        assert!(t.delete(1).is_some());
        assert!(t.delete(1).is_none());
        assert_eq!(t.n_masks(), 0);
        assert!(t.lookup(&flow(1, 0)).is_none());
    }

    #[test]
    fn many_masks_survive_deletes_and_ranking() {
        let mut t = FlowTable::new(100);
        let masks: Vec<Flow> = (0..4)
            .map(|i| Flow {
                in_port: u32::MAX,
                nw_src: u32::MAX << (8 * i),
                ..Flow::default()
            })
            .collect();
        for (i, m) in masks.iter().enumerate() {
            t.create(
                i as u128,
                &flow(((10 + i as u32) << 24) | i as u32, 0),
                m,
                vec![],
            )
            .unwrap();
        }
        assert_eq!(t.n_masks(), 4);
        assert!(t.delete(0).is_some());
        t.rank_subtables();
        assert_eq!(t.n_masks(), 3);
        for i in 1..4u32 {
            assert_eq!(
                t.lookup(&flow(((10 + i) << 24) | i, 0)).map(|e| e.ufid),
                Some(i as u128)
            );
        }
        t.create(9, &flow(0x2000_0000, 0), &masks[3], vec![])
            .unwrap();
        assert_eq!(t.n_masks(), 3);
        assert!(t.delete(3).is_some());
        assert_eq!(t.lookup(&flow(0x2000_0001, 7)).map(|e| e.ufid), Some(9));
    }

    #[test]
    fn burst_lookup_agrees_with_lookup() {
        let mut t = FlowTable::new(100);
        let by_src = Flow {
            in_port: u32::MAX,
            dl_type: u16::MAX,
            nw_src: 0xff00_0000,
            ..Flow::default()
        };
        let by_port = Flow {
            tp_dst: u16::MAX,
            ..by_src
        };
        t.create(1, &flow(0x0a00_0000, 0), &by_src, vec![]).unwrap();
        t.create(2, &flow(0x0b00_0000, 80), &by_port, vec![])
            .unwrap();
        let keys = [
            flow(0x0a01_0203, 22),
            flow(0x0b00_0001, 80),
            flow(0x0b00_0001, 81),
            flow(0x0c00_0001, 80),
        ];
        let mut found = vec![None; keys.len()];
        t.lookup_burst(&keys, &mut found);
        let burst: Vec<Option<u128>> = found.iter().map(|e| e.as_ref().map(|e| e.ufid)).collect();
        let one_by_one: Vec<Option<u128>> =
            keys.iter().map(|k| t.lookup(k).map(|e| e.ufid)).collect();
        assert_eq!(burst, one_by_one);
        assert_eq!(burst, vec![Some(1), Some(2), None, None]);
    }
}
