//! The ukeys: what upcalld knows of every megaflow it installed or found
//! in the datapath, by ufid (OVS's `udpif_key`s in their `umap`s).
//!
//! A handler creates a megaflow's ukey before it asks for the put, with
//! the rules version it translated against, the rules it went through and
//! its actions; an upcall whose megaflow already has a ukey is a duplicate
//! (its packet runs, nothing is put). Revalidators keep the ukeys of the
//! flows they dump (statistics, re-translation) and adopt a dumped flow
//! that has none (after a restart). A ukey goes away, so that the next
//! upcall installs the flow again, when its flow's delete was carried
//! out; when its put failed or was lost with a batch (a handler or the
//! writer panicking midway); or when four dumps in a row did not show a
//! flow the datapath had (deleted behind upcalld's back, e.g. by
//! `ovs-dpctl del-flows`).
//!
//! The map is split into shards, each behind its own lock, as OVS splits
//! its `umap`: handlers, revalidators and the dpif-writer touch one ufid at
//! a time and seldom meet on a shard. Shard `s` belongs to revalidator
//! `s % n_revalidators`.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use messages::dpif::Ufid;
use messages::odp::OdpActions;
use messages::{Flow, Megaflow};
use parking_lot::{Mutex, MutexGuard};
use smallvec::SmallVec;

use crate::protocol::SideEffects;
use crate::recirc::RecircRefs;
use crate::xlate::normal::NormalLearn;

/// Dumps in a row that may miss a flow before its ukey is dropped (OVS:
/// `missed_dumps` reaching 4).
pub const MAX_MISSED_DUMPS: u32 = 4;

/// How long a ukey no dump has shown yet is left alone before dumps that
/// miss its flow count: its put may still be queued behind a busy writer
/// (seconds, in an emulated VM), and must not be taken for deleted. (OVS
/// ages only operational ukeys, those a dump has shown.)
pub const NEVER_DUMPED_GRACE_MS: u64 = 10_000;

/// Number of shards (a power of two).
pub const N_SHARDS: usize = 64;

/// One megaflow's ukey. Kept small, in one allocation for most flows: a
/// handler makes one per upcall, and in a burst of new flows the memory
/// they first touch is most of what a ukey costs.
#[derive(Debug)]
pub struct Ukey {
    /// The flow's ufid (the shard's table holds pointers to ukeys only).
    ufid: Ufid,
    /// When the ukey was made (ms of `CLOCK_MONOTONIC`), to age flows that
    /// never matched a packet.
    pub created_ms: u64,
    /// The rules version and NORMAL's MAC table generation `rules` and
    /// `actions` were translated against; [`NOT_TRANSLATED`] for a flow
    /// adopted from a dump and not translated yet.
    pub version: (u64, u64),
    /// Rule ids (and groups' buckets, `protocol::group_credit`) credited
    /// with the flow's traffic.
    pub rules: RuleIds,
    /// The megaflow (masked key and mask): what a revalidator translates
    /// again, so that a dump need not bring keys and masks.
    pub megaflow: UkeyMegaflow,
    /// The actions installed (or being installed).
    pub actions: Arc<OdpActions>,
    /// What the translation did besides its actions, for the few flows
    /// whose translation did something (None otherwise).
    extra: Option<Box<UkeyExtra>>,
    /// Statistics already credited to `rules`.
    pub packets: u64,
    pub bytes: u64,
    /// The revalidator round that last saw the flow in a dump (0: none).
    pub dump_seq: u32,
    /// Dumps in a row that did not show the flow.
    pub missed_dumps: u32,
}

/// The `version` of a ukey whose flow was not translated yet (no rules
/// version and MAC generation are both that high).
pub const NOT_TRANSLATED: (u64, u64) = (u64::MAX, u64::MAX);

/// The rule ids of a ukey: inline up to two (a translation goes through
/// a rule per table it visits).
pub type RuleIds = SmallVec<[u64; 2]>;

/// What a translation did besides its actions, kept with its ukey.
#[derive(Debug, Default)]
pub struct UkeyExtra {
    /// What the flow's NORMAL learned from, learned again while the flow
    /// carries packets (OVS's `XC_NORMAL`), so that entries in use do not
    /// age out.
    pub mac_learned: Vec<NormalLearn>,
    /// The tunnel neighbours the flow's packets show (native tunnelling's
    /// snooping), learned again while the flow carries packets.
    pub neighbours_seen: Vec<(Ipv4Addr, [u8; 6])>,
    /// What the translation's `learn` and `fin_timeout` actions asked (OVS's
    /// translation cache): asked again whenever the flow had packets since
    /// the last dump, so that the rules learned from live traffic stay
    /// fresh.
    pub effects: SideEffects,
    /// The recirculation ids the flow matches or recirculates to, held
    /// while the ukey lives (OVS's ukeys hold their recirc references).
    pub recirc: Option<RecircRefs>,
}

impl UkeyExtra {
    fn is_empty(&self) -> bool {
        self.mac_learned.is_empty()
            && self.neighbours_seen.is_empty()
            && self.effects.is_empty()
            && self.recirc.is_none()
    }
}

impl Ukey {
    /// The ukey of a flow a handler is about to put.
    pub fn installing(
        now_ms: u64,
        version: (u64, u64),
        rules: &[u64],
        megaflow: UkeyMegaflow,
        actions: Arc<OdpActions>,
    ) -> Ukey {
        Ukey {
            version,
            rules: RuleIds::from_slice(rules),
            ..Ukey::adopted(now_ms, megaflow, actions)
        }
    }

    /// The ukey of a flow found in a dump without one.
    pub fn adopted(now_ms: u64, megaflow: UkeyMegaflow, actions: Arc<OdpActions>) -> Ukey {
        Ukey {
            ufid: 0,
            created_ms: now_ms,
            version: NOT_TRANSLATED,
            rules: RuleIds::new(),
            megaflow,
            actions,
            extra: None,
            packets: 0,
            bytes: 0,
            dump_seq: 0,
            missed_dumps: 0,
        }
    }

    pub fn ufid(&self) -> Ufid {
        self.ufid
    }

    /// What the flow's NORMAL learned from.
    pub fn mac_learned(&self) -> &[NormalLearn] {
        self.extra.as_ref().map_or(&[], |e| &e.mac_learned)
    }

    /// The tunnel neighbours the flow's packets show.
    pub fn neighbours_seen(&self) -> &[(Ipv4Addr, [u8; 6])] {
        self.extra.as_ref().map_or(&[], |e| &e.neighbours_seen)
    }

    /// What the translation's `learn` and `fin_timeout` asked.
    pub fn effects(&self) -> Option<&SideEffects> {
        self.extra.as_ref().map(|e| &e.effects)
    }

    /// Sets what the translation did besides its actions (boxed only when
    /// it did something).
    pub fn set_extra(&mut self, extra: UkeyExtra) {
        self.extra = (!extra.is_empty()).then(|| Box::new(extra));
    }
}

/// A megaflow as its ukey keeps it: the mask shared with every ukey that
/// has it (a rule set makes a few masks for many flows), the key's words
/// under it inline.
#[derive(Clone, Debug)]
pub struct UkeyMegaflow {
    /// The mask's map of pinned words (bit `i`: word `i`), then its
    /// nonzero words in order.
    mask: Arc<Vec<u64>>,
    /// The key's words under `mask`'s words.
    values: SmallVec<[u64; 8]>,
}

impl UkeyMegaflow {
    /// `megaflow` with its mask as `masks` shares it.
    pub fn new(megaflow: &Megaflow, masks: &mut SharedMasks) -> Self {
        UkeyMegaflow {
            mask: masks.share(megaflow),
            values: megaflow.words().iter().map(|w| w.value).collect(),
        }
    }

    /// `megaflow`, with a mask of its own.
    pub fn unshared(megaflow: &Megaflow) -> Self {
        Self::new(megaflow, &mut SharedMasks::default())
    }

    /// The key, masked, as a whole flow.
    pub fn key(&self) -> Flow {
        self.expand(&self.values)
    }

    /// The mask as a whole flow.
    pub fn mask(&self) -> Flow {
        self.expand(&self.mask[1..])
    }

    /// As the datapath interface takes it.
    pub fn megaflow(&self) -> Megaflow {
        Megaflow::new(&self.key(), &self.mask())
    }

    /// A flow with `words` at the mask's pinned positions, zero elsewhere.
    fn expand(&self, words: &[u64]) -> Flow {
        let mut flow = Flow::default();
        let out = flow.words_mut();
        let mut map = self.mask[0];
        for &w in words {
            out[map.trailing_zeros() as usize] = w;
            map &= map - 1;
        }
        flow
    }
}

/// The masks a handler's ukeys share, each kept once.
#[derive(Default)]
pub struct SharedMasks {
    masks: hashbrown::HashSet<Arc<Vec<u64>>, rustc_hash::FxBuildHasher>,
    /// The mask shared last: the next megaflow's, most often.
    last: Option<Arc<Vec<u64>>>,
    buf: Vec<u64>,
}

/// A mask's words, looked up among the shared ones without a copy.
#[derive(Hash)]
struct MaskWords<'a>(&'a [u64]);

impl hashbrown::Equivalent<Arc<Vec<u64>>> for MaskWords<'_> {
    fn equivalent(&self, key: &Arc<Vec<u64>>) -> bool {
        self.0 == key.as_slice()
    }
}

impl SharedMasks {
    /// Masks kept before starting over (more distinct masks merely share
    /// less).
    const CAPACITY: usize = 4096;

    /// `megaflow`'s mask (its map, then its words), shared.
    fn share(&mut self, megaflow: &Megaflow) -> Arc<Vec<u64>> {
        self.buf.clear();
        self.buf.push(megaflow.map());
        self.buf.extend(megaflow.words().iter().map(|w| w.mask));
        if let Some(last) = self.last.as_ref().filter(|l| l.as_slice() == self.buf) {
            return last.clone();
        }
        let words = MaskWords(&self.buf);
        if self.masks.len() >= Self::CAPACITY && !self.masks.contains(&words) {
            self.masks.clear();
        }
        let shared = self
            .masks
            .get_or_insert_with(&words, |w| Arc::new(w.0.to_vec()))
            .clone();
        self.last = Some(shared.clone());
        shared
    }
}

/// All ukeys, shared by the handlers, the revalidators and the writer.
pub struct Ukeys {
    shards: Box<[ShardCell]>,
}

/// One shard: its table behind its lock, and its ukey count, stored while
/// the lock is held and read without it. One count shared by all shards
/// was an atomic add on a cache line every handler writes, per ukey made
/// or dropped, beside the lock's own two atomic operations; a plain store
/// of the shard's own count is neither. Each shard on cache lines of its
/// own, so that handlers working in neighbouring shards do not take each
/// other's lines.
#[repr(align(64))]
#[derive(Default)]
struct ShardCell {
    table: Mutex<Table>,
    len: AtomicUsize,
}

/// A shard's table: pointers to ukeys, each holding its ufid, beside the
/// ufid's table hash (so that growing the table reads no ukey). Boxed
/// ukeys, so that an insert writes two words into the table, growing it
/// moves pairs of words, and the table (a quarter of a cache line a ukey)
/// stays small enough to be mostly in cache.
type Table = hashbrown::HashTable<(u64, Box<Ukey>)>;

impl Default for Ukeys {
    fn default() -> Self {
        Ukeys {
            shards: (0..N_SHARDS).map(|_| ShardCell::default()).collect(),
        }
    }
}

/// The shard a ufid lives in. Uses high bits: the low ones pick a
/// receiver's handler and a datapath's hash buckets.
pub fn shard_of(ufid: Ufid) -> usize {
    (ufid >> 64) as usize & (N_SHARDS - 1)
}

impl Ukeys {
    /// Ukeys in all shards: the flows installed or on their way. A sum
    /// over the shards, each as of its last change: a handler reads it
    /// once per batch.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.len.load(Ordering::Relaxed))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds `ukey` unless `ufid` has one. True if added: the caller is the
    /// one to put the flow.
    pub fn insert_new(&self, ufid: Ufid, ukey: impl FnOnce() -> Ukey) -> bool {
        self.shard(shard_of(ufid)).insert_new(ufid, ukey)
    }

    /// Forgets `ufid`'s ukey (its flow is gone, or its put failed).
    pub fn remove(&self, ufid: Ufid) -> Option<Box<Ukey>> {
        self.shard(shard_of(ufid)).remove(ufid)
    }

    /// Whether `ufid` has a ukey.
    pub fn contains(&self, ufid: Ufid) -> bool {
        self.shard(shard_of(ufid)).get_mut(ufid).is_some()
    }

    /// Shard `s`, locked.
    pub fn shard(&self, s: usize) -> Shard<'_> {
        let cell = &self.shards[s];
        Shard {
            table: cell.table.lock(),
            len: &cell.len,
        }
    }
}

/// One locked shard. Keeps the shard's ukey count right through inserts
/// and removals.
pub struct Shard<'a> {
    table: MutexGuard<'a, Table>,
    len: &'a AtomicUsize,
}

impl Shard<'_> {
    pub fn get_mut(&mut self, ufid: Ufid) -> Option<&mut Ukey> {
        let hash = messages::hash::fold_ufid(ufid);
        self.table
            .find_mut(hash, |(h, u)| *h == hash && u.ufid == ufid)
            .map(|(_, b)| &mut **b)
    }

    /// `ufid`'s ukey, made by `make` if it has none.
    pub fn get_or_insert(&mut self, ufid: Ufid, make: impl FnOnce() -> Ukey) -> &mut Ukey {
        let (len, hash) = (self.len, messages::hash::fold_ufid(ufid));
        let n = self.table.len();
        let entry = self
            .table
            .entry(hash, |(h, u)| *h == hash && u.ufid == ufid, |(h, _)| *h)
            .or_insert_with(|| {
                len.store(n + 1, Ordering::Relaxed);
                (hash, Box::new(Ukey { ufid, ..make() }))
            });
        &mut entry.into_mut().1
    }

    pub fn insert_new(&mut self, ufid: Ufid, make: impl FnOnce() -> Ukey) -> bool {
        let mut added = false;
        self.get_or_insert(ufid, || {
            added = true;
            make()
        });
        added
    }

    pub fn remove(&mut self, ufid: Ufid) -> Option<Box<Ukey>> {
        let hash = messages::hash::fold_ufid(ufid);
        let ((_, ukey), _) = self
            .table
            .find_entry(hash, |(h, u)| *h == hash && u.ufid == ufid)
            .ok()?
            .remove();
        self.len.store(self.table.len(), Ordering::Relaxed);
        Some(ukey)
    }

    /// Ukeys in the shard.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Visits every ukey of the shard.
    pub fn for_each(&self, mut f: impl FnMut(Ufid, &Ukey)) {
        for (_, ukey) in self.table.iter() {
            f(ukey.ufid, ukey);
        }
    }

    /// Keeps the ukeys for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(Ufid, &mut Ukey) -> bool) {
        self.table.retain(|(_, ukey)| keep(ukey.ufid, ukey));
        self.len.store(self.table.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ukey() -> Ukey {
        Ukey::adopted(
            1,
            UkeyMegaflow::unshared(&Megaflow::default()),
            Arc::default(),
        )
    }

    #[test]
    fn a_ufid_has_one_ukey_and_the_count_follows() {
        let ukeys = Ukeys::default();
        let ufids: Vec<Ufid> = (0..1000u128)
            .map(|i| i.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
            .collect();
        for &u in &ufids {
            assert!(ukeys.insert_new(u, ukey));
        }
        assert!(!ukeys.insert_new(ufids[7], ukey), "a duplicate");
        assert_eq!(ukeys.len(), 1000);
        assert!(ukeys.remove(ufids[7]).is_some());
        assert!(ukeys.remove(ufids[7]).is_none());
        assert!(!ukeys.contains(ufids[7]));
        assert_eq!(ukeys.len(), 999);
        for s in 0..N_SHARDS {
            ukeys.shard(s).retain(|u, _| u % 2 == 0);
        }
        let even = ufids
            .iter()
            .filter(|&&u| u % 2 == 0 && u != ufids[7])
            .count();
        assert_eq!(ukeys.len(), even);
        // The ukeys spread over the shards.
        let used = (0..N_SHARDS)
            .filter(|&s| ufids.iter().any(|&u| shard_of(u) == s))
            .count();
        assert_eq!(used, N_SHARDS);
    }
}

#[cfg(test)]
mod megaflow_tests {
    use super::*;

    #[test]
    fn a_ukeys_megaflow_gives_back_its_key_and_mask_and_shares_masks() {
        let key = Flow {
            in_port: 7,
            dl_type: 0x0800,
            nw_src: 0xc0a8_0001,
            nw_dst: 0x0a00_0001,
            tp_dst: 80,
            igmp_group_ip4: 0xdead_beef,
            ..Flow::default()
        };
        let mask = Flow {
            in_port: u32::MAX,
            dl_type: u16::MAX,
            nw_dst: 0xffff_0000,
            tp_dst: u16::MAX,
            igmp_group_ip4: u32::MAX,
            ..Flow::default()
        };
        let m = Megaflow::new(&key, &mask);
        let mut masks = SharedMasks::default();
        let u = UkeyMegaflow::new(&m, &mut masks);
        assert_eq!(u.key(), key.masked(&mask));
        assert_eq!(u.mask(), mask);
        assert_eq!(u.megaflow(), m);
        let other = Flow {
            nw_dst: 0x0b00_0001,
            ..key
        };
        let v = UkeyMegaflow::new(&Megaflow::new(&other, &mask), &mut masks);
        assert!(Arc::ptr_eq(&u.mask, &v.mask), "one mask, shared");
        assert_eq!(v.key(), other.masked(&mask));
        let empty = UkeyMegaflow::unshared(&Megaflow::default());
        assert_eq!(empty.key(), Flow::default());
        assert_eq!(empty.mask(), Flow::default());
    }
}
