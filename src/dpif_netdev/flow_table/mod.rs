//! The megaflow cache of the userspace datapath: one hash table per
//! distinct mask (tuple space search, as OVS's dpcls) behind a first stage
//! over the fields all megaflows share, an index by ufid, and an
//! exact-match cache that sits in front of it in each port's receive loop.
//!
//! A megaflow keeps only its key's words under its mask's nonzero words
//! (OVS's miniflow); the mask itself is shared with its subtable.
//!
//! Split as OVS splits `dpif-netdev`: [`dpcls`] (subtables and the first
//! stage), [`emc`] (the exact-match cache), [`action_pool`] (action lists
//! kept once); this file holds the entries and the table over them.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use messages::dpif::{DpFlow, FlowStats, Ufid};
use messages::odp::OdpActions;
use messages::{Flow, Megaflow};
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

mod action_pool;
mod dpcls;
mod emc;
#[cfg(test)]
mod tests;

use action_pool::ActionPool;
use dpcls::{fold_hash, mask_hash, FirstStage, MaskShape, Subtable, SubtableId};
pub use emc::Emc;
use messages::hash::{finish_fold, fold_ufid, fold_word, mix_word};

/// A key's words under a mask's nonzero words; inline up to eight (the
/// megaflow masks of the setup-rate workload have seven or eight), so that
/// an entry is one allocation and a lookup one pointer away from its key.
type MaskedWords = SmallVec<[u64; 8]>;

/// A megaflow's key words, as an entry keeps them.
#[inline]
fn masked_words(megaflow: &Megaflow) -> MaskedWords {
    let words = megaflow.words();
    let mut buf = [0u64; 8];
    if words.len() <= buf.len() {
        for (v, w) in buf.iter_mut().zip(words) {
            *v = w.value;
        }
        return MaskedWords::from_buf_and_len(buf, words.len());
    }
    words.iter().map(|w| w.value).collect()
}

/// One installed megaflow with its live statistics.
#[derive(Debug)]
pub struct FlowEntry {
    pub ufid: Ufid,
    /// The subtable holding the entry (it lives as long as its entries),
    /// and with it the mask.
    subtable: SubtableId,
    /// The key's words under the mask's nonzero words.
    values: MaskedWords,
    /// Shared with every megaflow that has the same actions.
    pub actions: Arc<OdpActions>,
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
    fn new(
        ufid: Ufid,
        subtable: SubtableId,
        values: MaskedWords,
        actions: Arc<OdpActions>,
    ) -> Self {
        FlowEntry {
            ufid,
            subtable,
            values,
            actions,
            n_packets: AtomicU64::new(0),
            n_bytes: AtomicU64::new(0),
            used_plus_one: AtomicU64::new(0),
            tcp_flags: AtomicU16::new(0),
            dead: AtomicBool::new(false),
        }
    }

    /// The key, masked; `shape` is the entry's subtable's.
    fn key(&self, shape: &MaskShape) -> Flow {
        let mut key = Flow::default();
        let words = key.words_mut();
        for (&(i, _), v) in shape.words.iter().zip(self.values.iter()) {
            words[i] = *v;
        }
        key
    }

    /// Whether `key` (not masked) falls in this megaflow, whose subtable's
    /// shape is `shape`.
    #[inline]
    fn matches(&self, shape: &MaskShape, key: &Flow) -> bool {
        let k = key.words();
        shape
            .words
            .iter()
            .zip(self.values.iter())
            .all(|(&(i, m), v)| k[i] & m == *v)
    }

    /// Credits `packets` packets of `bytes` in all to the flow.
    #[inline]
    pub fn hit(&self, packets: u64, bytes: u64, now_ms: u64, tcp_flags: u16) {
        self.n_packets.fetch_add(packets, Ordering::Relaxed);
        self.n_bytes.fetch_add(bytes, Ordering::Relaxed);
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

    fn to_dp_flow(&self, shape: &MaskShape) -> DpFlow {
        DpFlow {
            ufid: self.ufid,
            key: self.key(shape),
            mask: shape.mask,
            actions: self.actions.to_vec(),
            stats: self.stats(),
        }
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
    /// By [`SubtableId`]; the id of a subtable emptied by deletes is reused.
    subtables: Vec<Option<Subtable>>,
    free_ids: Vec<SubtableId>,
    n_subtables: usize,
    /// Subtable by mask: (hash of the mask, id).
    by_mask: HashTable<(u64, SubtableId)>,
    /// Every megaflow, by [`fold_ufid`] of its ufid: a slot is a pointer,
    /// the ufid is compared in the entry (puts and deletes look up by
    /// ufid; packets never do).
    by_ufid: HashTable<Arc<FlowEntry>>,
    first_stage: FirstStage,
    actions: ActionPool,
    max_flows: usize,
}

impl FlowTable {
    pub fn new(max_flows: usize) -> Self {
        FlowTable {
            subtables: Vec::new(),
            free_ids: Vec::new(),
            n_subtables: 0,
            by_mask: HashTable::new(),
            by_ufid: HashTable::new(),
            first_stage: FirstStage::default(),
            actions: ActionPool::default(),
            max_flows,
        }
    }

    pub fn len(&self) -> usize {
        self.by_ufid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ufid.is_empty()
    }

    #[inline]
    fn subtable(&self, id: SubtableId) -> &Subtable {
        self.subtables[id as usize]
            .as_ref()
            .expect("the first stage lists only live subtables")
    }

    /// The megaflow matching a packet's key, if any.
    #[inline]
    pub fn lookup(&self, key: &Flow) -> Option<&Arc<FlowEntry>> {
        self.first_stage
            .candidates(key)
            .iter()
            .find_map(|&(id, _)| self.subtable(id).find(key))
    }

    /// Looks up a burst of keys: `found[i]` gets the megaflow of `keys[i]`
    /// where it is `None`.
    pub fn lookup_burst(&self, keys: &[Flow], found: &mut [Option<Arc<FlowEntry>>]) {
        for (key, slot) in keys.iter().zip(found.iter_mut()) {
            if slot.is_none() {
                *slot = self.lookup(key).cloned();
            }
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
        megaflow: &Megaflow,
        actions: &Arc<OdpActions>,
    ) -> Result<(), PutError> {
        if self.get(ufid).is_some() {
            return Err(PutError::UfidExists(ufid));
        }
        let values = masked_words(megaflow);
        // The key's hash under its mask, as a lookup computes it from a
        // packet's key.
        let hash = fold_hash(values.iter().copied());
        let mask_hash = mask_hash(megaflow);
        let existing = self
            .by_mask
            .find(mask_hash, |&(h, id)| {
                h == mask_hash && self.subtable(id).shape.is_mask_of(megaflow)
            })
            .map(|&(_, id)| id);
        if let Some(id) = existing {
            if let Some(other) = self.subtable(id).find_values(hash, &values) {
                return Err(PutError::SameMegaflow(other.ufid));
            }
        }
        if self.by_ufid.len() >= self.max_flows {
            return Err(PutError::Full(self.max_flows));
        }
        let id = existing.unwrap_or_else(|| self.add_subtable(megaflow, mask_hash));
        let actions = self.actions.intern(actions);
        let entry = Arc::new(FlowEntry::new(ufid, id, values, actions));
        self.subtable_mut(id)
            .flows
            .insert_unique(hash, (hash, entry.clone()), |(h, _)| *h);
        // A new subtable's mask may narrow the first stage.
        let new_mask = existing.is_none().then(|| self.subtable(id).shape.mask);
        match new_mask {
            Some(mask) if !self.first_stage.covers(&mask) => {
                self.first_stage.rebuild(&mask, &self.subtables);
            }
            _ => {
                let first = self.first_stage.hash_megaflow(megaflow);
                self.first_stage.add(first, id);
            }
        }
        self.by_ufid
            .insert_unique(fold_ufid(ufid), entry, |e| fold_ufid(e.ufid));
        Ok(())
    }

    fn add_subtable(&mut self, megaflow: &Megaflow, mask_hash: u64) -> SubtableId {
        let st = Subtable::new(megaflow, mask_hash);
        let id = match self.free_ids.pop() {
            Some(id) => {
                self.subtables[id as usize] = Some(st);
                id
            }
            None => {
                self.subtables.push(Some(st));
                (self.subtables.len() - 1) as SubtableId
            }
        };
        self.n_subtables += 1;
        self.by_mask
            .insert_unique(mask_hash, (mask_hash, id), |&(h, _)| h);
        id
    }

    #[inline]
    fn subtable_mut(&mut self, id: SubtableId) -> &mut Subtable {
        self.subtables[id as usize]
            .as_mut()
            .expect("entries name live subtables")
    }

    /// Replaces the actions of the flow `ufid`, keeping its statistics
    /// unless `reset_stats`.
    pub fn modify(
        &mut self,
        ufid: Ufid,
        actions: &Arc<OdpActions>,
        reset_stats: bool,
    ) -> Result<(), PutError> {
        let old = self.get(ufid).cloned().ok_or(PutError::NoSuchFlow(ufid))?;
        let actions = self.actions.intern(actions);
        let entry = Arc::new(FlowEntry::new(
            ufid,
            old.subtable,
            old.values.clone(),
            actions,
        ));
        if !reset_stats {
            entry.take_stats_from(&old);
        }
        old.dead.store(true, Ordering::Relaxed);
        let shape = &self.subtable(old.subtable).shape;
        let hash = shape.hash(&old.key(shape));
        let st = self.subtable_mut(old.subtable);
        if let Some(slot) = st.flows.find_mut(hash, |(_, e)| e.ufid == ufid) {
            slot.1 = entry.clone();
        }
        if let Some(slot) = self.by_ufid.find_mut(fold_ufid(ufid), |e| e.ufid == ufid) {
            *slot = entry;
        }
        self.actions.release(&old.actions);
        Ok(())
    }

    /// Removes the flow `ufid`; returns it (with its final statistics).
    pub fn delete(&mut self, ufid: Ufid) -> Option<Arc<FlowEntry>> {
        let (entry, _) = self
            .by_ufid
            .find_entry(fold_ufid(ufid), |e| e.ufid == ufid)
            .ok()?
            .remove();
        entry.dead.store(true, Ordering::Relaxed);
        let id = entry.subtable;
        let shape = &self.subtable(id).shape;
        let (key, hash, mask_hash) = {
            let key = entry.key(shape);
            (key, shape.hash(&key), shape.hash)
        };
        let st = self.subtable_mut(id);
        if let Ok(found) = st.flows.find_entry(hash, |(_, e)| e.ufid == ufid) {
            found.remove();
            self.first_stage.remove(&key, id);
        }
        if self.subtable(id).flows.is_empty() {
            self.subtables[id as usize] = None;
            self.free_ids.push(id);
            self.n_subtables -= 1;
            if let Ok(found) = self.by_mask.find_entry(mask_hash, |&(_, sid)| sid == id) {
                found.remove();
            }
            if self.n_subtables == 0 {
                self.first_stage.reset();
            }
        }
        self.actions.release(&entry.actions);
        Some(entry)
    }

    pub fn get(&self, ufid: Ufid) -> Option<&Arc<FlowEntry>> {
        self.by_ufid.find(fold_ufid(ufid), |e| e.ufid == ufid)
    }

    /// Megaflow `ufid` in full, with its statistics.
    pub fn get_full(&self, ufid: Ufid) -> Option<DpFlow> {
        let e = self.get(ufid)?;
        let st = self.subtables.get(e.subtable as usize)?.as_ref()?;
        Some(e.to_dp_flow(&st.shape))
    }

    /// Every megaflow's ufid and statistics, appended to `out`.
    pub fn dump_terse(&self, out: &mut Vec<(Ufid, FlowStats)>) {
        out.reserve(self.by_ufid.len());
        for st in self.subtables.iter().flatten() {
            out.extend(st.flows.iter().map(|(_, e)| (e.ufid, e.stats())));
        }
    }

    /// Every megaflow, with its key, mask and statistics.
    pub fn dump(&self) -> Vec<DpFlow> {
        self.subtables
            .iter()
            .flatten()
            .flat_map(|st| st.flows.iter().map(|(_, e)| e.to_dp_flow(&st.shape)))
            .collect()
    }

    pub fn n_masks(&self) -> usize {
        self.n_subtables
    }
}
