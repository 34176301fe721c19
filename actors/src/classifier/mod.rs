//! Tuple space search with wildcard tracking: one OpenFlow table.
//!
//! Rules with the same mask share a *subtable*; a lookup hashes the flow
//! under each subtable's mask, visiting subtables from the highest maximum
//! priority down and stopping once no remaining subtable can beat the best
//! match. Every bit a lookup examines is OR-ed into the caller's wildcards,
//! and the three refinements of OVS's classifier keep that set as small as
//! OVS keeps it, so our megaflows equal its megaflows:
//!
//! - **staged lookup**: a subtable is probed stage by stage (metadata, L2,
//!   L3, then L4); a miss at a stage un-wildcards only the stages so far.
//! - **prefix tries** on `nw_dst` and `nw_src`: before a stage that holds a
//!   prefix field, the table-wide trie can prove that no rule of this
//!   subtable's prefix length can match, needing fewer bits than the mask.
//! - **ports trie**: a miss in the final stage un-wildcards only the port
//!   bits needed to tell the packet apart from the subtable's rules.
//!
//! Each subtable's state is persistent (sharded maps whose shards a copy
//! shares until it writes them, `persistent.rs`; `im` for the small
//! ones), so cloning a classifier costs O(subtables) and an insert or
//! removal the shards it writes plus O(subtables).
//! The subtables themselves sit in a plain vector: a lookup walks them in
//! order, and a flat walk costs a fraction of a persistent vector's.

mod persistent;
mod trie;

use std::mem::offset_of;
use std::sync::{Arc, OnceLock};

use messages::flow::{Flow, FlowWildcards, FLOW_SEGMENT_ENDS, FLOW_U64S};
use messages::ofp::{Match, Rule};

use persistent::{ChunkedVec, ShardedMap};
pub use trie::{prefix_len32, prefix_mask32, PrefixTrie};
use trie::{TrieMatch, U64BuildHasher};

/// A rule as the tables hold it: the rule and its process-unique id.
#[derive(Debug, PartialEq, Eq)]
pub struct RuleEntry {
    pub id: u64,
    pub rule: Rule,
    /// When the rule was added (dump-flows prints its age).
    pub added: std::time::Instant,
}

/// The fields with prefix tries, in the order OVS consults them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TrieField {
    NwDst,
    NwSrc,
}

const TRIE_FIELDS: [TrieField; 2] = [TrieField::NwDst, TrieField::NwSrc];

impl TrieField {
    fn get(self, f: &Flow) -> u32 {
        match self {
            TrieField::NwDst => f.nw_dst,
            TrieField::NwSrc => f.nw_src,
        }
    }

    fn get_mut(self, f: &mut Flow) -> &mut u32 {
        match self {
            TrieField::NwDst => &mut f.nw_dst,
            TrieField::NwSrc => &mut f.nw_src,
        }
    }

    /// The flow word that holds the field.
    fn word(self) -> usize {
        match self {
            TrieField::NwDst => offset_of!(Flow, nw_dst) / 8,
            TrieField::NwSrc => offset_of!(Flow, nw_src) / 8,
        }
    }
}

/// The word holding `tp_src` and `tp_dst`.
const PORTS_WORD: usize = offset_of!(Flow, tp_src) / 8;

/// Both transport ports as one 32-bit value, source in the high half.
fn ports_of(f: &Flow) -> u32 {
    ((f.tp_src as u32) << 16) | f.tp_dst as u32
}

/// One subtable: every rule whose mask is `mask`.
#[derive(Clone, Debug)]
struct Subtable {
    mask: Arc<Flow>,
    /// Nonzero mask words of each lookup stage. The first `stages.len() - 1`
    /// are indexed stages; the last is the final stage.
    stages: Arc<[Box<[u8]>]>,
    /// Per indexed stage: hashes of the rules' values over stages 0..=i,
    /// with how many rules have each.
    indices: Vec<ShardedMap<u32>>,
    /// Full-key hash → rules, highest priority first.
    buckets: ShardedMap<Arc<[Arc<RuleEntry>]>>,
    /// Priority → number of rules with it.
    priorities: im::OrdMap<u16, u32>,
    max_priority: u16,
    n_rules: usize,
    /// Prefix length of the mask on each trie field (0: not a prefix, or
    /// not matched).
    trie_plen: [u32; 2],
    /// The stage holding each trie field (only where `trie_plen` is not 0),
    /// and the set of such stages, so that a lookup consults the tries only
    /// before those stages.
    trie_stage: [usize; 2],
    trie_stages: u32,
    /// Mask of the ports word, and its prefix length (32 − trailing zeros).
    ports_mask: u32,
    ports_mask_len: u32,
    ports_trie: PrefixTrie,
    /// Flat copy of `indices` and `buckets` for lookups. Once built, a
    /// change edits a copy of it (or it in place, when no snapshot shares
    /// it), which shares every piece the change does not write; before
    /// that, it is built on first use.
    lookup_index: Arc<OnceLock<LookupIndex>>,
}

/// A subtable's stage indices and rules in flat arrays. The persistent
/// maps make updates O(log n) and snapshots O(1), but a lookup in them
/// chases several tree nodes, a cache miss each once a subtable holds many
/// rules. Lookups use this copy instead, which answers with two or three
/// memory accesses per stage. A change edits it; its tables and arrays
/// are in pieces (`persistent.rs`), so that a copy for a new version
/// costs what the change writes, not the subtable's size.
#[derive(Clone, Debug)]
struct LookupIndex {
    /// The subtable's mask words in stage order, each as (flow word, mask
    /// word), so that a lookup walks one flat list.
    words: Vec<(usize, u64)>,
    /// Where each stage's words end in `words` (the last is the final
    /// stage's end).
    stage_ends: Vec<usize>,
    stages: Vec<ShardedMap<()>>,
    /// Full-key hash → first entry with that hash.
    heads: ShardedMap<u32>,
    /// One record per entry: the masked key (the subtable's mask words in
    /// stage order), then `priority << 32 | next entry`.
    keys: ChunkedVec<u64>,
    /// The highest-priority rule of each entry's key (`None` only past
    /// the last entry).
    rules: ChunkedVec<Option<Arc<RuleEntry>>>,
    /// The lower-priority rules with exactly the key of an entry, highest
    /// first, for the entries that have some: conjunctive matches fall
    /// back on them (OVS's `next_visible_rule_in_list`).
    lower: im::HashMap<u32, Vec<Arc<RuleEntry>>, U64BuildHasher>,
    /// Entries unlinked by removals; their arena slots stay until a
    /// rebuild, which happens once they outnumber the live ones.
    dead: usize,
}

const NO_ENTRY: u32 = u32::MAX;

impl Subtable {
    fn new(mask: &Flow) -> Self {
        let words = mask.words();
        let nonzero_in = |lo: usize, hi: usize| -> Box<[u8]> {
            (lo..hi)
                .filter(|&w| words[w] != 0)
                .map(|w| w as u8)
                .collect()
        };
        let mut stages: Vec<Box<[u8]>> = Vec::new();
        let mut lo = 0;
        for &end in FLOW_SEGMENT_ENDS.iter() {
            let s = nonzero_in(lo, end);
            if !s.is_empty() {
                stages.push(s);
            }
            lo = end;
        }
        let last = nonzero_in(lo, FLOW_U64S);
        // With nothing in L4, the last populated stage is the final one,
        // as in OVS.
        if !last.is_empty() || stages.is_empty() {
            stages.push(last);
        }
        let n_indices = stages.len() - 1;
        let trie_plen = TRIE_FIELDS.map(|f| prefix_len32(f.get(mask)).unwrap_or(0));
        let mut trie_stage = [usize::MAX; 2];
        let mut trie_stages = 0;
        for (j, field) in TRIE_FIELDS.iter().enumerate() {
            if trie_plen[j] == 0 {
                continue;
            }
            if let Some(i) = stages
                .iter()
                .position(|s| s.contains(&(field.word() as u8)))
            {
                trie_stage[j] = i;
                trie_stages |= 1 << i;
            }
        }
        let ports_mask = ports_of(mask);
        let ports_mask_len = 32 - ports_mask.trailing_zeros().min(32);
        Subtable {
            mask: Arc::new(*mask),
            stages: stages.into(),
            indices: vec![ShardedMap::default(); n_indices],
            buckets: ShardedMap::default(),
            priorities: im::OrdMap::new(),
            max_priority: 0,
            n_rules: 0,
            trie_plen,
            trie_stage,
            trie_stages,
            ports_mask,
            ports_mask_len,
            ports_trie: PrefixTrie::new(),
            lookup_index: Arc::default(),
        }
    }

    /// The subtable's mask words in stage order.
    fn key_words(&self) -> impl Iterator<Item = usize> + '_ {
        self.stages
            .iter()
            .flat_map(|s| s.iter().map(|&w| w as usize))
    }

    /// Builds the lookup index and the ports trie's lookup form if a
    /// change dropped them.
    fn prepare(&self) {
        self.lookup_index();
        self.ports_trie.prepare();
    }

    fn is_prepared(&self) -> bool {
        self.lookup_index.get().is_some() && self.ports_trie.is_prepared()
    }

    fn lookup_index(&self) -> &LookupIndex {
        self.lookup_index.get_or_init(|| self.build_lookup_index())
    }

    fn build_lookup_index(&self) -> LookupIndex {
        let mw = self.mask.words();
        let words: Vec<(usize, u64)> = self.key_words().map(|w| (w, mw[w])).collect();
        let stage_ends = self
            .stages
            .iter()
            .scan(0, |end, s| {
                *end += s.len();
                Some(*end)
            })
            .collect();
        let n_words = words.len();
        let mut index = LookupIndex {
            words,
            stage_ends,
            stages: self
                .indices
                .iter()
                .map(|idx| {
                    let mut set = ShardedMap::with_capacity(idx.len());
                    for (k, _) in idx.iter() {
                        set.insert(*k, ());
                    }
                    set
                })
                .collect(),
            heads: ShardedMap::with_capacity(self.buckets.len()),
            keys: ChunkedVec::new(n_words + 1),
            rules: ChunkedVec::new(1),
            lower: im::HashMap::default(),
            dead: 0,
        };
        for (hash, bucket) in self.buckets.iter() {
            // Highest priority first, so the first rule of each key wins.
            for rule in bucket.iter() {
                let fw = rule.rule.matches.flow.words();
                let mut record: Vec<u64> = self.key_words().map(|w| fw[w]).collect();
                let head = index.heads.get(hash).copied().unwrap_or(NO_ENTRY);
                if let Some(entry) = index.find(head, |k| k == record.as_slice()) {
                    index.lower.entry(entry).or_default().push(rule.clone());
                    continue;
                }
                record.push(((rule.rule.priority as u64) << 32) | head as u64);
                let entry = index.keys.push(&record) as u32;
                index.rules.push(&[Some(rule.clone())]);
                index.heads.insert(*hash, entry);
            }
        }
        index
    }

    /// Hash of `flow` under the mask, over the words of stage `i`, chained
    /// from `basis`.
    #[inline]
    fn hash_stage(&self, basis: u64, flow: &Flow, i: usize) -> u64 {
        let mw = self.mask.words();
        let words = self.stages[i].iter().map(|&w| (w as usize, mw[w as usize]));
        hash_words(basis, flow.words(), words)
    }

    /// The cumulative stage hashes of a rule's (masked) flow.
    fn stage_hashes(&self, flow: &Flow) -> Vec<u64> {
        let mut h = 0;
        (0..self.stages.len())
            .map(|i| {
                h = self.hash_stage(h, flow, i);
                h
            })
            .collect()
    }

    /// The rule's key as the lookup index stores it: its (masked) flow's
    /// words under the mask, in stage order.
    fn index_key(&self, flow: &Flow) -> Vec<u64> {
        let fw = flow.words();
        self.key_words().map(|w| fw[w]).collect()
    }

    /// Applies `edit` to the lookup index if it is built (to a copy when a
    /// snapshot shares it); drops the index if the edit fails or leaves
    /// mostly dead entries, so that the next `prepare` rebuilds it.
    fn edit_lookup_index(&mut self, edit: impl FnOnce(&mut LookupIndex) -> bool) {
        if self.lookup_index.get().is_none() {
            // Another copy of this subtable may share the unbuilt cell.
            self.lookup_index = Arc::default();
            return;
        }
        if Arc::get_mut(&mut self.lookup_index).is_none() {
            let copy = self.lookup_index.get().cloned();
            self.lookup_index = Arc::new(copy.map_or_else(OnceLock::new, OnceLock::from));
        }
        let edited = Arc::get_mut(&mut self.lookup_index)
            .and_then(OnceLock::get_mut)
            .is_some_and(|index| edit(index) && index.dead <= index.keys.len() / 2);
        if !edited {
            self.lookup_index = Arc::default();
        }
    }

    fn insert(&mut self, entry: Arc<RuleEntry>) {
        let m = &entry.rule.matches;
        let hashes = self.stage_hashes(&m.flow);
        for (i, idx) in self.indices.iter_mut().enumerate() {
            match idx.get_mut(&hashes[i]) {
                Some(n) => *n += 1,
                None => {
                    idx.insert(hashes[i], 1);
                }
            }
        }
        let index_key = self.index_key(&m.flow);
        self.edit_lookup_index(|index| {
            index.insert(&hashes, &index_key, &entry);
            true
        });
        let key = hashes[hashes.len() - 1];
        let mut rules: Vec<Arc<RuleEntry>> = self
            .buckets
            .get(&key)
            .map(|b| b.to_vec())
            .unwrap_or_default();
        let at = rules
            .iter()
            .position(|r| r.rule.priority < entry.rule.priority)
            .unwrap_or(rules.len());
        rules.insert(at, entry.clone());
        self.buckets.insert(key, rules.into());
        *self.priorities.entry(entry.rule.priority).or_default() += 1;
        self.max_priority = self.max_priority.max(entry.rule.priority);
        if self.ports_mask_len > 0 {
            self.ports_trie
                .insert(ports_of(&m.flow) & self.ports_mask, self.ports_mask_len);
        }
        self.n_rules += 1;
    }

    /// Removes the rule with `id`; false if it is not here.
    fn remove(&mut self, entry: &RuleEntry) -> bool {
        let m = &entry.rule.matches;
        let hashes = self.stage_hashes(&m.flow);
        let key = hashes[hashes.len() - 1];
        let Some(bucket) = self.buckets.get(&key) else {
            return false;
        };
        let Some(pos) = bucket.iter().position(|r| r.id == entry.id) else {
            return false;
        };
        let mut rules = bucket.to_vec();
        rules.remove(pos);
        if rules.is_empty() {
            self.buckets.remove(&key);
        } else {
            self.buckets.insert(key, rules.into());
        }
        let mut gone_from_stage = vec![false; self.indices.len()];
        for (i, idx) in self.indices.iter_mut().enumerate() {
            if let Some(c) = idx.get_mut(&hashes[i]) {
                *c -= 1;
                if *c == 0 {
                    idx.remove(&hashes[i]);
                    gone_from_stage[i] = true;
                }
            }
        }
        let index_key = self.index_key(&m.flow);
        self.edit_lookup_index(|index| index.remove(&hashes, &gone_from_stage, &index_key, entry));
        let p = entry.rule.priority;
        if let Some(c) = self.priorities.get_mut(&p) {
            *c -= 1;
            if *c == 0 {
                self.priorities.remove(&p);
            }
        }
        self.max_priority = self.priorities.get_max().map(|(p, _)| *p).unwrap_or(0);
        if self.ports_mask_len > 0 {
            self.ports_trie
                .remove(ports_of(&m.flow) & self.ports_mask, self.ports_mask_len);
        }
        self.n_rules -= 1;
        true
    }

    /// The rule with exactly this match and priority, if any.
    fn find_exact(&self, m: &Match, priority: u16) -> Option<&Arc<RuleEntry>> {
        let hashes = self.stage_hashes(&m.flow);
        self.buckets
            .get(&hashes[hashes.len() - 1])?
            .iter()
            .find(|r| r.rule.priority == priority && r.rule.matches.flow == m.flow)
    }

    /// OVS's `check_tries`: can the prefix tries prove that no rule here
    /// matches, before looking at stage `i`? Un-wildcards what the proof
    /// needs.
    fn tries_rule_out(
        &self,
        i: usize,
        flow: &Flow,
        wc: &mut FlowWildcards,
        ctx: &mut TrieCtx,
        tries: &[PrefixTrie; 2],
    ) -> bool {
        if self.trie_stages & (1 << i) == 0 {
            return false;
        }
        let pending = ctx.pending;
        for (j, field) in TRIE_FIELDS.iter().enumerate() {
            let plen = self.trie_plen[j];
            if self.trie_stage[j] != i {
                continue;
            }
            let found = *ctx.results[j].get_or_insert_with(|| {
                // The trie only speaks for IPv4 packets; for others every
                // prefix length may match.
                flow.is_ip().then(|| {
                    let value = field.get(flow);
                    let found = tries[j].lookup(value);
                    pending.map_or(found, |p| found.union(p[j].lookup(value)))
                })
            });
            let Some(found) = found else { continue };
            if tries[j].has_prefix_len(&found, plen) {
                continue;
            }
            let needed = prefix_mask32(found.maskbits);
            let wc_field = field.get_mut(wc);
            if found.maskbits <= plen {
                *wc_field |= needed;
                return true;
            }
            if *wc_field & needed == needed {
                return true;
            }
        }
        false
    }

    /// OVS's `find_match_wc`. `pending` holds the rules with this mask
    /// that are being added (stages and ports are probed as if they were
    /// here, but they never match); with `visible` false, neither do this
    /// subtable's rules.
    fn find_match_wc(
        &self,
        flow: &Flow,
        wc: &mut FlowWildcards,
        ctx: &mut TrieCtx,
        tries: &[PrefixTrie; 2],
        pending: Option<&Subtable>,
        visible: bool,
    ) -> Option<(&LookupIndex, u32)> {
        let index = self.lookup_index();
        let pending_index = pending.map(Subtable::lookup_index);
        let n = index.stage_ends.len() - 1;
        let fw = flow.words();
        let mut hash = 0;
        let mut start = 0;
        for i in 0..n {
            let end = index.stage_ends[i];
            if self.trie_stages & (1 << i) != 0 && self.tries_rule_out(i, flow, wc, ctx, tries) {
                index.unwildcard(wc, start);
                return None;
            }
            hash = hash_words(hash, fw, index.words[start..end].iter().copied());
            if !index.stages[i].contains_key(&hash)
                && !pending_index.is_some_and(|p| p.stages[i].contains_key(&hash))
            {
                index.unwildcard(wc, end);
                return None;
            }
            start = end;
        }
        if self.trie_stages & (1 << n) != 0 && self.tries_rule_out(n, flow, wc, ctx, tries) {
            index.unwildcard(wc, start);
            return None;
        }
        let final_stage = &index.words[start..];
        hash = hash_words(hash, fw, final_stage.iter().copied());
        let found = index
            .heads
            .get(&hash)
            .filter(|_| visible)
            .and_then(|&head| {
                index.find(head, |key| {
                    index
                        .words
                        .iter()
                        .zip(key)
                        .all(|(&(w, m), k)| fw[w] & m == *k)
                })
            });
        if found.is_none() && self.ports_mask_len > 0 {
            let value = ports_of(flow) & self.ports_mask;
            let mut bits = self.ports_trie.lookup(value).maskbits;
            if let Some(p) = pending {
                bits = bits.max(p.ports_trie.lookup(value).maskbits);
            }
            let need = self.ports_mask & prefix_mask32(bits);
            index.unwildcard(wc, start);
            // The final stage's fields before the ports were examined too.
            let ww = wc.words_mut();
            for &(w, m) in final_stage.iter().filter(|&&(w, _)| w < PORTS_WORD) {
                ww[w] |= m;
            }
            wc.tp_src |= (need >> 16) as u16;
            wc.tp_dst |= need as u16;
            return None;
        }
        index.unwildcard(wc, index.words.len());
        found.map(|entry| (index, entry))
    }
}

/// A flow's words `fw` under `words` (flow word, mask word), hashed in
/// order and chained from `basis`: how a rule's stages are hashed when it
/// is inserted and a packet's when it is looked up.
#[inline]
fn hash_words(basis: u64, fw: &[u64], words: impl IntoIterator<Item = (usize, u64)>) -> u64 {
    words
        .into_iter()
        .fold(basis, |h, (w, m)| messages::hash::mix_word(h, fw[w] & m))
}

impl LookupIndex {
    /// Un-wildcards the first `n` of the subtable's mask words: the
    /// stages a lookup examined.
    #[inline]
    fn unwildcard(&self, wc: &mut FlowWildcards, n: usize) {
        let ww = wc.words_mut();
        for &(w, m) in &self.words[..n] {
            ww[w] |= m;
        }
    }

    /// Walks the chain from `entry` to the first entry whose key satisfies
    /// `is_key`.
    fn find(&self, mut entry: u32, is_key: impl Fn(&[u64]) -> bool) -> Option<u32> {
        while entry != NO_ENTRY {
            let words = self.keys.get(entry as usize);
            let (key, tail) = words.split_at(words.len() - 1);
            if is_key(key) {
                return Some(entry);
            }
            entry = tail[0] as u32;
        }
        None
    }

    /// The rules with the key of `entry` below its highest-priority one.
    fn lower(&self, entry: u32) -> &[Arc<RuleEntry>] {
        self.lower.get(&entry).map_or(&[], |v| v.as_slice())
    }

    /// The highest-priority rule of `entry`'s key.
    #[inline]
    fn rule(&self, entry: u32) -> &Arc<RuleEntry> {
        self.rules.get(entry as usize)[0]
            .as_ref()
            .expect("an entry has a rule")
    }

    fn rule_mut(&mut self, entry: u32) -> &mut Arc<RuleEntry> {
        self.rules.get_mut(entry as usize)[0]
            .as_mut()
            .expect("an entry has a rule")
    }

    /// The word after `entry`'s key: its priority and next entry.
    fn link_mut(&mut self, entry: u32) -> &mut u64 {
        let record = self.keys.get_mut(entry as usize);
        let last = record.len() - 1;
        &mut record[last]
    }

    /// Adds `rule`, whose stage hashes are `hashes` and whose key is
    /// `key`, keeping the order a build from the buckets gives: the first
    /// rule of each key by descending priority (ties: the older first) is
    /// its entry's, the others are `lower`.
    fn insert(&mut self, hashes: &[u64], key: &[u64], rule: &Arc<RuleEntry>) {
        for (stage, hash) in self.stages.iter_mut().zip(hashes) {
            stage.insert(*hash, ());
        }
        let hash = hashes[hashes.len() - 1];
        let priority = rule.rule.priority;
        let head = self.heads.get(&hash).copied().unwrap_or(NO_ENTRY);
        if let Some(entry) = self.find(head, |k| k == key) {
            let top = self.rule_mut(entry);
            if priority > top.rule.priority {
                let displaced = std::mem::replace(top, rule.clone());
                self.lower.entry(entry).or_default().insert(0, displaced);
                let link = self.link_mut(entry);
                *link = (u64::from(priority) << 32) | (*link & 0xffff_ffff);
            } else {
                let lower = self.lower.entry(entry).or_default();
                let at = lower
                    .iter()
                    .position(|r| r.rule.priority < priority)
                    .unwrap_or(lower.len());
                lower.insert(at, rule.clone());
            }
            return;
        }
        let mut record = key.to_vec();
        record.push((u64::from(priority) << 32) | u64::from(head));
        let entry = self.keys.push(&record) as u32;
        self.rules.push(&[Some(rule.clone())]);
        self.heads.insert(hash, entry);
    }

    /// Removes `rule` (stage hashes `hashes`, key `key`); a stage hash no
    /// rule has any more (`gone_from_stage`) leaves its stage set. False if
    /// the rule is not where its key says: the caller rebuilds.
    fn remove(
        &mut self,
        hashes: &[u64],
        gone_from_stage: &[bool],
        key: &[u64],
        rule: &RuleEntry,
    ) -> bool {
        for ((stage, hash), gone) in self.stages.iter_mut().zip(hashes).zip(gone_from_stage) {
            if *gone {
                stage.remove(hash);
            }
        }
        let hash = hashes[hashes.len() - 1];
        let head = self.heads.get(&hash).copied().unwrap_or(NO_ENTRY);
        let Some(entry) = self.find(head, |k| k == key) else {
            return false;
        };
        if self.rule(entry).id != rule.id {
            let Some(lower) = self.lower.get_mut(&entry) else {
                return false;
            };
            let Some(at) = lower.iter().position(|r| r.id == rule.id) else {
                return false;
            };
            lower.remove(at);
            if lower.is_empty() {
                self.lower.remove(&entry);
            }
            return true;
        }
        if let Some(lower) = self.lower.get_mut(&entry) {
            let next = lower.remove(0);
            if lower.is_empty() {
                self.lower.remove(&entry);
            }
            let priority = next.rule.priority;
            *self.rule_mut(entry) = next;
            let link = self.link_mut(entry);
            *link = (u64::from(priority) << 32) | (*link & 0xffff_ffff);
            return true;
        }
        let next = *self.link_mut(entry) & 0xffff_ffff;
        if head == entry {
            if next == u64::from(NO_ENTRY) {
                self.heads.remove(&hash);
            } else {
                self.heads.insert(hash, next as u32);
            }
        } else {
            let mut at = head;
            loop {
                let link = self.link_mut(at);
                let after = *link & 0xffff_ffff;
                if after == u64::from(entry) {
                    *link = (*link & !0xffff_ffff) | next;
                    break;
                }
                if after == u64::from(NO_ENTRY) {
                    return false;
                }
                at = after as u32;
            }
        }
        self.dead += 1;
        true
    }
}

/// Per-lookup cache of the prefix tries' answers.
#[derive(Default)]
struct TrieCtx<'a> {
    /// `None`: not looked up yet; `Some(None)`: trie not applicable.
    results: [Option<Option<TrieMatch>>; 2],
    /// The tries of the rules being added (see [`Classifier::lookup_pending`]),
    /// whose prefixes OVS's tries already hold.
    pending: Option<&'a [PrefixTrie; 2]>,
}

/// A subtable as a lookup walks it: with the pending rules of its mask,
/// and whether any of its rules can match.
#[derive(Clone, Copy)]
struct View<'a> {
    max_priority: u16,
    subtable: &'a Subtable,
    pending: Option<&'a Subtable>,
    visible: bool,
}

impl<'a> View<'a> {
    fn alone(subtable: &'a Subtable) -> Self {
        View {
            max_priority: subtable.max_priority,
            subtable,
            pending: None,
            visible: true,
        }
    }
}

/// One OpenFlow table.
#[derive(Clone, Debug, Default)]
pub struct Classifier {
    /// Sorted by descending maximum priority; ties keep creation order.
    subtables: Vec<Subtable>,
    tries: [PrefixTrie; 2],
    n_rules: usize,
}

impl Classifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds every lookup index a change dropped (only the changed
    /// subtables' and tries'), so that lookups on this classifier and its
    /// copies never build one.
    pub fn prepare(&self) {
        for st in &self.subtables {
            st.prepare();
        }
        for t in &self.tries {
            t.prepare();
        }
    }

    /// Whether every lookup index is built: a lookup builds none.
    pub fn is_prepared(&self) -> bool {
        self.subtables.iter().all(Subtable::is_prepared)
            && self.tries.iter().all(PrefixTrie::is_prepared)
    }

    pub fn len(&self) -> usize {
        self.n_rules
    }

    pub fn is_empty(&self) -> bool {
        self.n_rules == 0
    }

    pub fn n_subtables(&self) -> usize {
        self.subtables.len()
    }

    fn subtable_index(&self, mask: &Flow) -> Option<usize> {
        self.subtables.iter().position(|s| *s.mask == *mask)
    }

    /// Moves subtable `i` to its place by maximum priority.
    fn resort(&mut self, i: usize) {
        let st = self.subtables.remove(i);
        let at = self
            .subtables
            .iter()
            .position(|s| s.max_priority < st.max_priority)
            .unwrap_or(self.subtables.len());
        self.subtables.insert(at, st);
    }

    /// Inserts `entry`. The caller ensures that no rule with the same match
    /// and priority is present (see [`Classifier::find_exact`]).
    pub fn insert(&mut self, entry: Arc<RuleEntry>) {
        let m = entry.rule.matches;
        for (j, field) in TRIE_FIELDS.iter().enumerate() {
            if let Some(plen) = prefix_len32(field.get(&m.mask)).filter(|p| *p > 0) {
                self.tries[j].insert(field.get(&m.flow), plen);
            }
        }
        let i = match self.subtable_index(&m.mask) {
            Some(i) => i,
            None => {
                self.subtables.push(Subtable::new(&m.mask));
                self.subtables.len() - 1
            }
        };
        // In place: persistent nodes that no snapshot shares are mutated
        // without copying.
        let st = &mut self.subtables[i];
        let old_max = (st.n_rules > 0).then_some(st.max_priority);
        st.insert(entry);
        let moved = old_max != Some(st.max_priority);
        if moved {
            self.resort(i);
        }
        self.n_rules += 1;
    }

    /// Removes `entry`; false if it is not in this table.
    pub fn remove(&mut self, entry: &RuleEntry) -> bool {
        let m = &entry.rule.matches;
        let Some(i) = self.subtable_index(&m.mask) else {
            return false;
        };
        let st = &mut self.subtables[i];
        let old_max = st.max_priority;
        if !st.remove(entry) {
            return false;
        }
        let (now_empty, now_max) = (st.n_rules == 0, st.max_priority);
        for (j, field) in TRIE_FIELDS.iter().enumerate() {
            if let Some(plen) = prefix_len32(field.get(&m.mask)).filter(|p| *p > 0) {
                self.tries[j].remove(field.get(&m.flow), plen);
            }
        }
        if now_empty {
            self.subtables.remove(i);
        } else if now_max != old_max {
            self.resort(i);
        }
        self.n_rules -= 1;
        true
    }

    /// The rule with exactly this match and priority.
    pub fn find_exact(&self, m: &Match, priority: u16) -> Option<&Arc<RuleEntry>> {
        let i = self.subtable_index(&m.mask)?;
        self.subtables[i].find_exact(m, priority)
    }

    /// Every rule, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<RuleEntry>> {
        self.subtables
            .iter()
            .flat_map(|s| s.buckets.iter().flat_map(|(_, b)| b.iter()))
    }

    /// The highest-priority rule matching `flow`, OR-ing into `wc` every
    /// bit the decision depended on (OVS's `classifier_lookup`), with
    /// conjunctive matches.
    pub fn lookup(&self, flow: &Flow, wc: &mut FlowWildcards) -> Option<&Arc<RuleEntry>> {
        self.lookup_conj(flow, wc, true, None)
    }

    /// [`Classifier::lookup`] while the rules of `pending` are being added
    /// to this table: they never match, but the lookup examines them as if
    /// they were here. So does OVS's classifier, where a rule a translation
    /// learns is inserted at once for a later version: invisible to that
    /// translation's lookups, not to their un-wildcarding.
    pub fn lookup_pending<'a>(
        &'a self,
        pending: &'a Classifier,
        flow: &Flow,
        wc: &mut FlowWildcards,
    ) -> Option<&'a Arc<RuleEntry>> {
        self.lookup_conj(flow, wc, true, Some(pending))
    }

    /// The subtables a lookup walks with `pending` rules: each with the
    /// pending subtable of its mask, then those of masks new here, by
    /// maximum priority (ties keep that order, as a new subtable goes after
    /// the existing ones).
    fn views_with<'a>(&'a self, pending: &'a Classifier) -> Vec<View<'a>> {
        let mut views: Vec<View<'a>> = self
            .subtables
            .iter()
            .map(|st| {
                let p = pending
                    .subtable_index(&st.mask)
                    .map(|i| &pending.subtables[i]);
                View {
                    max_priority: p
                        .map_or(st.max_priority, |p| p.max_priority.max(st.max_priority)),
                    subtable: st,
                    pending: p,
                    visible: true,
                }
            })
            .collect();
        for st in &pending.subtables {
            if self.subtable_index(&st.mask).is_none() {
                views.push(View {
                    visible: false,
                    ..View::alone(st)
                });
            }
        }
        views.sort_by_key(|v| std::cmp::Reverse(v.max_priority));
        views
    }

    /// OVS's `classifier_lookup__`. A rule whose actions are `conjunction`
    /// is a *soft* match: it matches only together with a rule for every
    /// other clause of the conjunction, at the same priority. When the
    /// soft matches of the highest priority above the best ordinary
    /// (*hard*) match complete a conjunction, the table is looked up again
    /// with `conj_id` set to its id, soft matches ignored; the rule found
    /// so wins. Otherwise the lower-priority rules with exactly the same
    /// match as those soft matches take their place, and so on down.
    fn lookup_conj<'a>(
        &'a self,
        flow: &Flow,
        wc: &mut FlowWildcards,
        allow_conjunctive: bool,
        pending: Option<&'a Classifier>,
    ) -> Option<&'a Arc<RuleEntry>> {
        match pending {
            None => self.lookup_views(
                self.subtables.iter().map(View::alone),
                flow,
                wc,
                allow_conjunctive,
                None,
            ),
            Some(p) => self.lookup_views(self.views_with(p), flow, wc, allow_conjunctive, Some(p)),
        }
    }

    /// [`Classifier::lookup_conj`] over `views`, in order.
    fn lookup_views<'a>(
        &'a self,
        views: impl IntoIterator<Item = View<'a>>,
        flow: &Flow,
        wc: &mut FlowWildcards,
        allow_conjunctive: bool,
        pending: Option<&'a Classifier>,
    ) -> Option<&'a Arc<RuleEntry>> {
        let mut ctx = TrieCtx {
            pending: pending.map(|p| &p.tries),
            ..TrieCtx::default()
        };
        let mut hard: Option<&Arc<RuleEntry>> = None;
        let mut hard_pri = i32::MIN;
        let mut soft: Vec<Option<Soft<'_>>> = Vec::new();
        let mut soft_pri = i32::MIN;
        for view in views {
            if i32::from(view.max_priority) <= hard_pri {
                break;
            }
            let st = view.subtable;
            let found =
                st.find_match_wc(flow, wc, &mut ctx, &self.tries, view.pending, view.visible);
            let Some((index, entry)) = found else {
                continue;
            };
            let rule = index.rule(entry);
            let priority = i32::from(rule.rule.priority);
            if priority <= hard_pri {
                continue;
            }
            if !rule.rule.is_conjunctive() {
                hard = Some(rule);
                hard_pri = priority;
            } else if allow_conjunctive {
                soft.push(Some(Soft {
                    priority,
                    rule,
                    lower: index.lower(entry),
                }));
                soft_pri = soft_pri.max(priority);
            }
        }
        if hard_pri >= soft_pri {
            return hard;
        }
        loop {
            // Drop the exhausted soft matches and those the hard match
            // beats, as OVS does (moving the last into the gap).
            let mut i = 0;
            while i < soft.len() {
                if soft[i].is_none_or(|s| s.priority <= hard_pri) {
                    soft.swap_remove(i);
                } else {
                    i += 1;
                }
            }
            if soft.is_empty() {
                break;
            }
            let top = soft.iter().flatten().map(|s| s.priority).max();
            let soft_pri = top.unwrap_or(i32::MIN);
            let n_soft_pri = soft
                .iter()
                .flatten()
                .filter(|s| s.priority == soft_pri)
                .count();
            let mut partial = ConjMatches::default();
            for s in soft.iter().flatten() {
                if s.priority != soft_pri {
                    continue;
                }
                let Some(id) = partial.add(&s.rule.rule, n_soft_pri) else {
                    continue;
                };
                let mut with_id = *flow;
                with_id.conj_id = id;
                if let Some(rule) = self.lookup_conj(&with_id, wc, false, pending) {
                    return Some(rule);
                }
            }
            for slot in soft.iter_mut() {
                let Some(s) = *slot else { continue };
                if s.priority != soft_pri {
                    continue;
                }
                *slot = match s.lower.split_first() {
                    Some((next, lower)) if next.rule.is_conjunctive() => Some(Soft {
                        priority: i32::from(next.rule.priority),
                        rule: next,
                        lower,
                    }),
                    Some((next, _)) => {
                        if i32::from(next.rule.priority) > hard_pri {
                            hard = Some(next);
                            hard_pri = i32::from(next.rule.priority);
                        }
                        None
                    }
                    None => None,
                };
            }
        }
        hard
    }
}

/// A rule that matched as one clause of conjunctions (OVS's soft match),
/// with the rules of the same match and lower priority after it.
#[derive(Clone, Copy)]
struct Soft<'a> {
    priority: i32,
    rule: &'a Arc<RuleEntry>,
    lower: &'a [Arc<RuleEntry>],
}

/// The clauses seen so far of each conjunction id, among the soft matches
/// of one priority (OVS's `find_conjunctive_match`).
#[derive(Default)]
struct ConjMatches {
    /// (id, one bit per clause seen; the bits above the clause count set).
    seen: Vec<(u32, u64)>,
}

impl ConjMatches {
    /// Adds the clauses of `rule`; the first conjunction this completes.
    /// `max_clauses` is the number of soft matches at this priority: a
    /// conjunction with more clauses cannot complete.
    fn add(&mut self, rule: &messages::ofp::Rule, max_clauses: usize) -> Option<u32> {
        let min_clauses = rule.conjunctions().map(|(_, _, n)| n).min()?;
        if max_clauses < usize::from(min_clauses) {
            return None;
        }
        for (id, clause, n_clauses) in rule.conjunctions() {
            if usize::from(n_clauses) > max_clauses {
                continue;
            }
            let at = match self.seen.iter().position(|(i, _)| *i == id) {
                Some(at) => at,
                None => {
                    // 64 clauses leave no bit above them (OVS shifts by n & 63).
                    self.seen.push((id, u64::MAX << (n_clauses & 63)));
                    self.seen.len() - 1
                }
            };
            let bits = &mut self.seen[at].1;
            *bits |= 1u64 << (clause & 63);
            if *bits == u64::MAX {
                return Some(id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests;
