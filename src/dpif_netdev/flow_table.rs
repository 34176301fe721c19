//! The megaflow cache of the userspace datapath: one hash table per
//! distinct mask (tuple space search, as OVS's dpcls) behind a first stage
//! over the fields all megaflows share, an index by ufid, and an
//! exact-match cache that sits in front of it in each port's receive loop.
//!
//! A megaflow keeps only its key's words under its mask's nonzero words
//! (OVS's miniflow); the mask itself is shared with its subtable.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use hashbrown::HashTable;
use messages::dpif::{DpFlow, FlowStats, Ufid};
use messages::odp::OdpActions;
use messages::{Flow, Megaflow};
use rustc_hash::{FxHashMap, FxHashSet};
use smallvec::SmallVec;

/// A mask, with its nonzero 64-bit words and their indices (masks are
/// sparse: only those words are hashed, compared and stored).
#[derive(Debug)]
struct MaskShape {
    mask: Flow,
    words: Box<[(usize, u64)]>,
    /// [`mask_hash`] of the mask.
    hash: u64,
}

impl MaskShape {
    /// The shape of `megaflow`'s mask, whose [`mask_hash`] is `hash`.
    fn new(megaflow: &Megaflow, hash: u64) -> Self {
        MaskShape {
            mask: megaflow.mask(),
            words: megaflow.words().iter().map(|w| (w.index, w.mask)).collect(),
            hash,
        }
    }

    /// Whether `megaflow` has this mask.
    #[inline]
    fn is_mask_of(&self, megaflow: &Megaflow) -> bool {
        self.words.len() == megaflow.len()
            && self
                .words
                .iter()
                .zip(megaflow.words())
                .all(|(&(i, m), w)| i == w.index && m == w.mask)
    }

    /// Hash of `key` under the mask (`key` need not be masked).
    #[inline]
    fn hash(&self, key: &Flow) -> u64 {
        subtable_hash(&self.words, key)
    }
}

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

/// Hash of a megaflow's mask, to find its subtable: its words and their
/// positions, folded.
#[inline]
fn mask_hash(megaflow: &Megaflow) -> u64 {
    let h = megaflow
        .words()
        .iter()
        .fold(0u64, |h, w| h.rotate_left(23) ^ w.mask ^ w.index as u64);
    finish_fold(h)
}

/// The megaflows that share one mask, each with its hash (so that growing
/// the table does not visit the entries).
struct Subtable {
    shape: Arc<MaskShape>,
    flows: HashTable<(u64, Arc<FlowEntry>)>,
}

impl Subtable {
    fn new(megaflow: &Megaflow, mask_hash: u64) -> Self {
        Subtable {
            shape: Arc::new(MaskShape::new(megaflow, mask_hash)),
            flows: HashTable::new(),
        }
    }

    #[inline]
    fn find(&self, key: &Flow) -> Option<&Arc<FlowEntry>> {
        let hash = self.shape.hash(key);
        self.flows
            .find(hash, |(h, e)| *h == hash && e.matches(&self.shape, key))
            .map(|(_, e)| e)
    }

    /// The megaflow of this subtable with the masked key words `values`,
    /// whose hash is `hash`.
    #[inline]
    fn find_values(&self, hash: u64, values: &[u64]) -> Option<&Arc<FlowEntry>> {
        self.flows
            .find(hash, |(h, e)| *h == hash && e.values.as_slice() == values)
            .map(|(_, e)| e)
    }
}

fn nonzero_words(mask: &Flow) -> Vec<(usize, u64)> {
    mask.words()
        .iter()
        .enumerate()
        .filter(|(_, w)| **w != 0)
        .map(|(i, w)| (i, *w))
        .collect()
}

/// Index of a subtable in [`FlowTable::subtables`]; stable while it lives.
type SubtableId = u32;

/// The first lookup stage over the whole cache. Every installed megaflow
/// matches on the fields of `mask` (the AND of all subtable masks:
/// `in_port`, `dl_type` and the VLAN stack always, and whatever the
/// highest-priority rules examine, a source MAC say). For each hash of
/// those fields, `index` lists the subtables holding a megaflow whose
/// value has that hash. A miss whose value no megaflow has costs one probe
/// instead of one per subtable, and a hit probes only the subtables listed
/// for its value. Values that collide on the hash merely share a list: the
/// subtable probes that follow compare whole keys, so the index keeps no
/// values.
///
/// When the first stage holds a field that tells flows apart (a MAC), it
/// has about one value per megaflow, each in one subtable: a slot keeps
/// that one subtable itself (16 bytes), and a value found in several
/// subtables has its list in `lists`.
///
/// `mask` only ever narrows while subtables exist (a new subtable whose
/// mask lacks some of its bits rebuilds the index from every megaflow);
/// deleting subtables leaves it as it is, which stays correct, and it
/// starts over once the cache is empty.
#[derive(Default)]
struct FirstStage {
    /// None while the cache is empty.
    mask: Option<Flow>,
    words: Vec<(usize, u64)>,
    index: HashTable<FirstStageSlot>,
    /// The subtables of values found in more than one, each with how many
    /// of its megaflows have the value; a slot names its list by position.
    lists: Vec<Candidates>,
    /// Positions in `lists` free for reuse.
    free_lists: Vec<u32>,
}

/// One hash of first-stage values: `one` is (subtable, how many of its
/// megaflows have a value with this hash), or ([`LISTED`], position in
/// [`FirstStage::lists`]).
struct FirstStageSlot {
    hash: u64,
    one: (SubtableId, u32),
}

/// The subtable id that marks a slot whose subtables are listed apart.
const LISTED: SubtableId = SubtableId::MAX;

type Candidates = SmallVec<[(SubtableId, u32); 4]>;

impl FirstStage {
    /// The subtables that may hold a megaflow matching `key`.
    #[inline]
    fn candidates(&self, key: &Flow) -> &[(SubtableId, u32)] {
        let hash = subtable_hash(&self.words, key);
        match self.index.find(hash, |c| c.hash == hash) {
            None => &[],
            Some(FirstStageSlot {
                one: (LISTED, at), ..
            }) => &self.lists[*at as usize],
            Some(slot) => std::slice::from_ref(&slot.one),
        }
    }

    /// The first-stage hash of a megaflow: the hash of its key's value
    /// (the first stage's words are pinned by every mask, so the
    /// megaflow has them all).
    fn hash_megaflow(&self, megaflow: &Megaflow) -> u64 {
        // Both lists are in order of position: one walk finds each word.
        let mut words = megaflow.words().iter();
        fold_hash(self.words.iter().map(|&(i, m)| {
            words
                .by_ref()
                .find(|w| w.index == i)
                .map_or(0, |w| w.value & m)
        }))
    }

    /// Counts a megaflow of subtable `id` whose first-stage hash is `hash`.
    fn add(&mut self, hash: u64, id: SubtableId) {
        let Some(slot) = self.index.find_mut(hash, |c| c.hash == hash) else {
            self.index
                .insert_unique(hash, FirstStageSlot { hash, one: (id, 1) }, |c| c.hash);
            return;
        };
        match slot.one {
            (LISTED, at) => {
                let list = &mut self.lists[at as usize];
                match list.iter_mut().find(|(s, _)| *s == id) {
                    Some((_, n)) => *n += 1,
                    None => list.push((id, 1)),
                }
            }
            (s, ref mut n) if s == id => *n += 1,
            first => {
                let list: Candidates = smallvec::smallvec![first, (id, 1)];
                let at = match self.free_lists.pop() {
                    Some(at) => {
                        self.lists[at as usize] = list;
                        at
                    }
                    None => {
                        self.lists.push(list);
                        (self.lists.len() - 1) as u32
                    }
                };
                slot.one = (LISTED, at);
            }
        }
    }

    fn remove(&mut self, key: &Flow, id: SubtableId) {
        let hash = subtable_hash(&self.words, key);
        let Ok(mut entry) = self.index.find_entry(hash, |c| c.hash == hash) else {
            return;
        };
        let slot = entry.get_mut();
        let emptied = match slot.one {
            (LISTED, at) => {
                let list = &mut self.lists[at as usize];
                if let Some(pos) = list.iter().position(|(s, _)| *s == id) {
                    list[pos].1 -= 1;
                    if list[pos].1 == 0 {
                        list.remove(pos);
                    }
                }
                let emptied = list.is_empty();
                if emptied {
                    self.free_lists.push(at);
                }
                emptied
            }
            (s, ref mut n) if s == id => {
                *n -= 1;
                *n == 0
            }
            _ => false,
        };
        if emptied {
            entry.remove();
        }
    }

    /// True when a subtable with `mask` fits under the current first-stage
    /// mask; false when the index must be rebuilt with a narrower one.
    fn covers(&self, mask: &Flow) -> bool {
        match &self.mask {
            Some(m) => m.masked(mask) == *m,
            None => false,
        }
    }

    /// Narrows the first stage to what `mask` and every subtable share, and
    /// indexes every megaflow again.
    fn rebuild(&mut self, mask: &Flow, subtables: &[Option<Subtable>]) {
        let narrowed = match &self.mask {
            Some(m) => m.masked(mask),
            None => *mask,
        };
        self.words = nonzero_words(&narrowed);
        self.mask = Some(narrowed);
        self.clear_index();
        for (id, st) in subtables.iter().enumerate() {
            for st in st.iter() {
                for (_, e) in st.flows.iter() {
                    self.add(
                        subtable_hash(&self.words, &e.key(&st.shape)),
                        id as SubtableId,
                    );
                }
            }
        }
    }

    /// Starts over, keeping the index's room.
    fn reset(&mut self) {
        self.mask = None;
        self.words.clear();
        self.clear_index();
    }

    fn clear_index(&mut self) {
        self.index.clear();
        self.lists.clear();
        self.free_lists.clear();
    }
}

/// The distinct action lists of the installed megaflows, each stored once
/// (a rule set sends most megaflows to a handful of lists, and a list takes
/// hundreds of bytes), with how many megaflows use it; a list leaves with
/// its last megaflow.
///
/// The pool keeps its own copy of each list rather than the `Arc` a put
/// brings: handlers keep cloning and dropping theirs on another core, and
/// megaflows sharing it would bounce its reference count between the cores
/// with every put.
#[derive(Default)]
struct ActionPool {
    /// The pool's copy of each list, by content.
    lists: FxHashSet<Arc<OdpActions>>,
    /// How many megaflows use each list, by the address of the pool's copy.
    users: FxHashMap<usize, usize>,
    /// The lists handlers have sent, by address, with the pool's copy:
    /// handlers share their lists, so a put usually brings one seen
    /// before, recognized without hashing it. Each entry holds the
    /// sender's `Arc`, so that its address cannot be freed and reused for
    /// another list.
    senders: FxHashMap<usize, (Arc<OdpActions>, Arc<OdpActions>)>,
}

fn address(list: &Arc<OdpActions>) -> usize {
    Arc::as_ptr(list) as usize
}

impl ActionPool {
    /// The pool's copy of `actions`, counted as used by one more megaflow.
    fn intern(&mut self, actions: &Arc<OdpActions>) -> Arc<OdpActions> {
        let own = match self.senders.get(&address(actions)) {
            Some((_, own)) => own.clone(),
            None => {
                let own = match self.lists.get(&**actions) {
                    Some(own) => own.clone(),
                    None => {
                        let own = Arc::new((**actions).clone());
                        self.lists.insert(own.clone());
                        own
                    }
                };
                self.senders
                    .insert(address(actions), (actions.clone(), own.clone()));
                own
            }
        };
        *self.users.entry(address(&own)).or_default() += 1;
        own
    }

    /// Called as a megaflow using `own` (from [`ActionPool::intern`]) goes.
    fn release(&mut self, own: &Arc<OdpActions>) {
        let Some(users) = self.users.get_mut(&address(own)) else {
            return;
        };
        *users -= 1;
        if *users == 0 {
            self.users.remove(&address(own));
            self.lists.remove(&**own);
            self.senders.retain(|_, (_, o)| !Arc::ptr_eq(o, own));
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
    /// Every megaflow, by [`ufid_hash`] of its ufid: a slot is a pointer,
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
            .insert_unique(ufid_hash(ufid), entry, |e| ufid_hash(e.ufid));
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
        if let Some(slot) = self.by_ufid.find_mut(ufid_hash(ufid), |e| e.ufid == ufid) {
            *slot = entry;
        }
        self.actions.release(&old.actions);
        Ok(())
    }

    /// Removes the flow `ufid`; returns it (with its final statistics).
    pub fn delete(&mut self, ufid: Ufid) -> Option<Arc<FlowEntry>> {
        let (entry, _) = self
            .by_ufid
            .find_entry(ufid_hash(ufid), |e| e.ufid == ufid)
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
        self.by_ufid.find(ufid_hash(ufid), |e| e.ufid == ufid)
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

/// A ufid's hash for the index by ufid: ufids are hashes already, so one
/// fold and multiply spread them (small test ufids too).
#[inline]
fn ufid_hash(ufid: Ufid) -> u64 {
    finish_fold((ufid >> 64) as u64 ^ ufid as u64)
}

/// Hash of `key` under a subtable's mask words.
#[inline]
fn subtable_hash(words: &[(usize, u64)], key: &Flow) -> u64 {
    let k = key.words();
    fold_hash(words.iter().map(|&(i, m)| k[i] & m))
}

/// Hash of a key's words under a mask, given in order. Folding with rotate
/// and xor keeps the per-word work short (this runs once per subtable per
/// lookup); one final multiply-and-shift spreads the bits.
#[inline]
fn fold_hash(values: impl Iterator<Item = u64>) -> u64 {
    finish_fold(values.fold(0, |h, v| h.rotate_left(23) ^ v))
}

#[inline]
fn finish_fold(h: u64) -> u64 {
    let h = (h ^ (h >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    h ^ (h >> 29)
}

/// The words of a key that tell traffic apart: the input port, the
/// Ethernet addresses and type, the VLAN tags, the IP addresses (IPv4 and
/// IPv6), the protocol and the transport ports, as the RSS hash OVS's EMC uses covers
/// the 5-tuple. Packets that differ only elsewhere share a hash, and the
/// cache compares whole keys.
const EMC_HASH_WORDS: [usize; 11] = {
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
/// [`EMC_HASH_WORDS`]): a multiply per word, then a final mix. Hashing
/// the whole 33-word key took a third of a hit's time.
#[inline]
fn emc_hash(key: &Flow) -> u64 {
    let words = key.words();
    let h = EMC_HASH_WORDS.iter().fold(0u64, |h, &i| {
        (h.rotate_left(5) ^ words[i]).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    });
    finish_fold(h)
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

struct EmcSlot {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn list(actions: OdpActions) -> Arc<OdpActions> {
        Arc::new(actions)
    }
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
            &Megaflow::new(&flow(0x0a000001, 80), &mask_src_only()),
            &list(vec![OdpAction::Output(2)]),
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
        t.create(1, &Megaflow::new(&flow(1, 0), &m), &list(vec![]))
            .unwrap();
        assert_eq!(
            t.create(1, &Megaflow::new(&flow(2, 0), &m), &list(vec![])),
            Err(PutError::UfidExists(1))
        );
        assert_eq!(
            t.create(2, &Megaflow::new(&flow(1, 80), &m), &list(vec![])),
            Err(PutError::SameMegaflow(1))
        );
        let exact = Flow {
            tp_dst: u16::MAX,
            nw_proto: u8::MAX,
            ..m
        };
        // A narrower megaflow inside flow 1's may coexist with it.
        t.create(3, &Megaflow::new(&flow(1, 80), &exact), &list(vec![]))
            .unwrap();
        assert_eq!(
            t.create(4, &Megaflow::new(&flow(3, 0), &m), &list(vec![])),
            Err(PutError::Full(2))
        );
    }

    #[test]
    fn modify_keeps_stats_and_kills_emc_entries() {
        let mut t = FlowTable::new(10);
        let mut emc = Emc::new(4, 1);
        let f = flow(5, 22);
        t.create(9, &Megaflow::new(&f, &mask_src_only()), &list(vec![]))
            .unwrap();
        let e = t.lookup(&f).unwrap().clone();
        e.hit(1, 100, 1000, 0x02);
        emc.insert(&f, e);
        t.modify(9, &list(vec![OdpAction::Output(3)]), false)
            .unwrap();
        assert!(emc.lookup(&f).is_none());
        let now = t.get(9).unwrap();
        assert_eq!(*now.actions, vec![OdpAction::Output(3)]);
        assert_eq!(now.stats().n_packets, 1);
        assert_eq!(now.stats().used_ms, Some(1000));
        t.modify(9, &list(vec![]), true).unwrap();
        assert_eq!(t.get(9).unwrap().stats(), FlowStats::default());
    }

    #[test]
    fn delete_removes_empty_subtables() {
        let mut t = FlowTable::new(10);
        t.create(
            1,
            &Megaflow::new(&flow(1, 0), &mask_src_only()),
            &list(vec![]),
        )
        .unwrap();
        assert!(t.delete(1).is_some());
        assert!(t.delete(1).is_none());
        assert_eq!(t.n_masks(), 0);
        assert!(t.lookup(&flow(1, 0)).is_none());
    }

    #[test]
    fn many_masks_survive_deletes_and_id_reuse() {
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
                &Megaflow::new(&flow(((10 + i as u32) << 24) | i as u32, 0), m),
                &list(vec![]),
            )
            .unwrap();
        }
        assert_eq!(t.n_masks(), 4);
        assert!(t.delete(0).is_some());
        assert_eq!(t.n_masks(), 3);
        for i in 1..4u32 {
            assert_eq!(
                t.lookup(&flow(((10 + i) << 24) | i, 0)).map(|e| e.ufid),
                Some(i as u128)
            );
        }
        t.create(
            9,
            &Megaflow::new(&flow(0x2000_0000, 0), &masks[3]),
            &list(vec![]),
        )
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
        t.create(
            1,
            &Megaflow::new(&flow(0x0a00_0000, 0), &by_src),
            &list(vec![]),
        )
        .unwrap();
        t.create(
            2,
            &Megaflow::new(&flow(0x0b00_0000, 80), &by_port),
            &list(vec![]),
        )
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

    /// Random puts and deletes over masks that share fewer and fewer
    /// fields (so the first stage narrows and is rebuilt): a lookup finds a
    /// megaflow exactly when one matches, and what it finds matches.
    #[test]
    fn lookups_agree_with_a_linear_scan_through_narrowing_and_deletes() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let masks: Vec<Flow> = (0..6u32)
            .map(|i| Flow {
                in_port: u32::MAX,
                dl_type: if i < 3 { u16::MAX } else { 0 },
                nw_src: u32::MAX << (4 * i),
                tp_dst: if i % 2 == 0 { u16::MAX } else { 0 },
                ..Flow::default()
            })
            .collect();
        let random_flow = |r: u64| Flow {
            in_port: (r & 3) as u32,
            dl_type: if r & 4 == 0 { 0x0800 } else { 0x86dd },
            nw_src: ((r >> 8) & 0xff) as u32,
            tp_dst: ((r >> 16) & 3) as u16,
            ..Flow::default()
        };
        let mut t = FlowTable::new(10_000);
        let mut installed: Vec<(Ufid, Flow, Flow)> = Vec::new();
        for round in 0..3000u64 {
            let r = next();
            if r % 4 == 0 && !installed.is_empty() {
                let (ufid, _, _) = installed.swap_remove((r >> 8) as usize % installed.len());
                assert!(t.delete(ufid).is_some());
            } else {
                // Narrower masks come into play as the rounds go by.
                let m = masks[(r >> 24) as usize % (1 + (round as usize / 500).min(5))];
                let key = random_flow(next()).masked(&m);
                if t.create(round as Ufid, &Megaflow::new(&key, &m), &list(vec![]))
                    .is_ok()
                {
                    installed.push((round as Ufid, key, m));
                }
            }
            let probe = random_flow(next());
            let expected = installed.iter().any(|(_, k, m)| probe.masked(m) == *k);
            match t.lookup(&probe) {
                Some(e) => {
                    let mask = t.subtable(e.subtable).shape.mask;
                    assert_eq!(
                        probe.masked(&mask),
                        e.key(&t.subtable(e.subtable).shape),
                        "round {round}"
                    )
                }
                None => assert!(!expected, "round {round}: a matching megaflow was missed"),
            }
        }
        assert_eq!(t.len(), installed.len());
    }

    #[test]
    fn emc_inserts_by_draw_and_drops_dead_entries() {
        let mut t = FlowTable::new(10);
        let f = flow(7, 80);
        t.create(1, &Megaflow::new(&f, &mask_src_only()), &list(vec![]))
            .unwrap();
        let e = t.lookup(&f).unwrap().clone();

        // Off: nothing is cached.
        let mut off = Emc::new(0, 100);
        off.maybe_insert(&f, &e);
        assert!(off.lookup(&f).is_none());

        // One in 100: a flow that keeps hitting gets in after a while.
        let mut sampled = Emc::new(64, 100);
        let mut draws = 0;
        while sampled.lookup(&f).is_none() {
            sampled.maybe_insert(&f, &e);
            draws += 1;
            assert!(draws < 10_000, "never inserted");
        }
        assert!(draws > 1, "inserted at the first draw of one in 100");

        // Always: every hit is cached.
        let mut always = Emc::new(1024, 1);
        let g = flow(8, 80);
        t.create(2, &Megaflow::new(&g, &mask_src_only()), &list(vec![]))
            .unwrap();
        let e2 = t.lookup(&g).unwrap().clone();
        always.maybe_insert(&f, &e);
        always.maybe_insert(&g, &e2);
        assert_eq!(always.lookup(&f).map(|x| x.ufid), Some(1));
        assert_eq!(always.lookup(&g).map(|x| x.ufid), Some(2));
        // A deleted megaflow's entry is dropped when met.
        t.delete(1);
        assert!(always.lookup(&f).is_none());
    }

    #[test]
    fn emc_tells_apart_keys_its_hash_does_not() {
        // TCP flags are not hashed: the two keys share their slots, and
        // the cache compares whole keys.
        let syn = Flow {
            tcp_flags: 0x002,
            ..flow(7, 80)
        };
        let ack = Flow {
            tcp_flags: 0x010,
            ..syn
        };
        assert_eq!(emc_hash(&syn), emc_hash(&ack));
        assert_ne!(emc_hash(&syn), emc_hash(&flow(8, 80)));
        let mut t = FlowTable::new(10);
        t.create(1, &Megaflow::new(&syn, &syn), &list(vec![]))
            .unwrap();
        t.create(2, &Megaflow::new(&ack, &ack), &list(vec![]))
            .unwrap();
        let mut emc = Emc::new(64, 1);
        emc.maybe_insert(&syn, &t.lookup(&syn).unwrap().clone());
        assert!(emc.lookup(&ack).is_none(), "another key in the slot");
        emc.maybe_insert(&ack, &t.lookup(&ack).unwrap().clone());
        assert_eq!(emc.lookup(&syn).map(|e| e.ufid), Some(1));
        assert_eq!(emc.lookup(&ack).map(|e| e.ufid), Some(2));
    }

    #[test]
    fn equal_action_lists_are_stored_once_and_leave_with_their_last_flow() {
        let mut t = FlowTable::new(10);
        // One list as a handler shares it, and an equal one sent apart.
        let sent = list(vec![OdpAction::Output(2)]);
        let equal = list(vec![OdpAction::Output(2)]);
        t.create(1, &Megaflow::new(&flow(1, 0), &mask_src_only()), &sent)
            .unwrap();
        t.create(2, &Megaflow::new(&flow(2, 0), &mask_src_only()), &equal)
            .unwrap();
        t.create(
            3,
            &Megaflow::new(&flow(3, 0), &mask_src_only()),
            &list(vec![]),
        )
        .unwrap();
        let (a, b) = (t.get(1).unwrap(), t.get(2).unwrap());
        assert!(Arc::ptr_eq(&a.actions, &b.actions));
        // The pool's own copy: the sender's reference count is not shared
        // by the megaflows (the pool pins the sender's list once).
        assert!(!Arc::ptr_eq(&a.actions, &sent));
        assert_eq!(Arc::strong_count(&sent), 2);
        assert_eq!(t.actions.lists.len(), 2);
        // A modify to other actions moves flow 2 off the shared list.
        t.modify(2, &list(vec![OdpAction::Output(4)]), false)
            .unwrap();
        assert_eq!(*t.get(2).unwrap().actions, vec![OdpAction::Output(4)]);
        assert_eq!(t.actions.lists.len(), 3);
        t.delete(1);
        t.delete(2);
        t.delete(3);
        assert!(t.actions.lists.is_empty());
        assert!(t.actions.senders.is_empty());
        assert_eq!(Arc::strong_count(&sent), 1);
    }
}
