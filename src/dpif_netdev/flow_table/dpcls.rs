//! The megaflows grouped by mask (tuple space search, as OVS's dpcls):
//! one hash table per distinct mask, behind a first stage over the fields
//! every megaflow matches.

use super::*;

/// A mask, with its nonzero 64-bit words and their indices (masks are
/// sparse: only those words are hashed, compared and stored).
#[derive(Debug)]
pub(super) struct MaskShape {
    pub(super) mask: Flow,
    pub(super) words: Box<[(usize, u64)]>,
    /// [`mask_hash`] of the mask.
    pub(super) hash: u64,
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
    pub(super) fn is_mask_of(&self, megaflow: &Megaflow) -> bool {
        self.words.len() == megaflow.len()
            && self
                .words
                .iter()
                .zip(megaflow.words())
                .all(|(&(i, m), w)| i == w.index && m == w.mask)
    }

    /// Hash of `key` under the mask (`key` need not be masked).
    #[inline]
    pub(super) fn hash(&self, key: &Flow) -> u64 {
        subtable_hash(&self.words, key)
    }
}

/// Hash of a megaflow's mask, to find its subtable: its words and their
/// positions, folded.
#[inline]
pub(super) fn mask_hash(megaflow: &Megaflow) -> u64 {
    let h = megaflow
        .words()
        .iter()
        .fold(0u64, |h, w| fold_word(h, w.mask ^ w.index as u64));
    finish_fold(h)
}

/// The megaflows that share one mask, each with its hash (so that growing
/// the table does not visit the entries).
pub(super) struct Subtable {
    pub(super) shape: Arc<MaskShape>,
    pub(super) flows: HashTable<(u64, Arc<FlowEntry>)>,
}

impl Subtable {
    pub(super) fn new(megaflow: &Megaflow, mask_hash: u64) -> Self {
        Subtable {
            shape: Arc::new(MaskShape::new(megaflow, mask_hash)),
            flows: HashTable::new(),
        }
    }

    #[inline]
    pub(super) fn find(&self, key: &Flow) -> Option<&Arc<FlowEntry>> {
        let hash = self.shape.hash(key);
        self.flows
            .find(hash, |(h, e)| *h == hash && e.matches(&self.shape, key))
            .map(|(_, e)| e)
    }

    /// The megaflow of this subtable with the masked key words `values`,
    /// whose hash is `hash`.
    #[inline]
    pub(super) fn find_values(&self, hash: u64, values: &[u64]) -> Option<&Arc<FlowEntry>> {
        self.flows
            .find(hash, |(h, e)| *h == hash && e.values.as_slice() == values)
            .map(|(_, e)| e)
    }
}

pub(super) fn nonzero_words(mask: &Flow) -> Vec<(usize, u64)> {
    mask.words()
        .iter()
        .enumerate()
        .filter(|(_, w)| **w != 0)
        .map(|(i, w)| (i, *w))
        .collect()
}

/// Index of a subtable in [`FlowTable::subtables`]; stable while it lives.
pub(super) type SubtableId = u32;

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
pub(super) struct FirstStage {
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
pub(super) struct FirstStageSlot {
    hash: u64,
    one: (SubtableId, u32),
}

/// The subtable id that marks a slot whose subtables are listed apart.
pub(super) const LISTED: SubtableId = SubtableId::MAX;

pub(super) type Candidates = SmallVec<[(SubtableId, u32); 4]>;

impl FirstStage {
    /// The subtables that may hold a megaflow matching `key`.
    #[inline]
    pub(super) fn candidates(&self, key: &Flow) -> &[(SubtableId, u32)] {
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
    pub(super) fn hash_megaflow(&self, megaflow: &Megaflow) -> u64 {
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
    pub(super) fn add(&mut self, hash: u64, id: SubtableId) {
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

    pub(super) fn remove(&mut self, key: &Flow, id: SubtableId) {
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
    pub(super) fn covers(&self, mask: &Flow) -> bool {
        match &self.mask {
            Some(m) => m.masked(mask) == *m,
            None => false,
        }
    }

    /// Narrows the first stage to what `mask` and every subtable share, and
    /// indexes every megaflow again.
    pub(super) fn rebuild(&mut self, mask: &Flow, subtables: &[Option<Subtable>]) {
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
    pub(super) fn reset(&mut self) {
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

/// Hash of `key` under a subtable's mask words.
#[inline]
pub(super) fn subtable_hash(words: &[(usize, u64)], key: &Flow) -> u64 {
    let k = key.words();
    fold_hash(words.iter().map(|&(i, m)| k[i] & m))
}

/// Hash of a key's words under a mask, given in order: the cheap chain
/// (this runs once per subtable per lookup).
#[inline]
pub(super) fn fold_hash(values: impl Iterator<Item = u64>) -> u64 {
    finish_fold(values.fold(0, fold_word))
}
