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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use messages::dpif::{Ufid, UfidMap};
use messages::odp::OdpActions;
use messages::Megaflow;
use parking_lot::{Mutex, MutexGuard};

use crate::protocol::SideEffects;
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

/// One megaflow's ukey.
#[derive(Clone, Debug)]
pub struct Ukey {
    /// When the ukey was made (ms of `CLOCK_MONOTONIC`), to age flows that
    /// never matched a packet.
    pub created_ms: u64,
    /// The rules version and NORMAL's MAC table generation `rules` and
    /// `actions` were translated against; None for a flow adopted from a
    /// dump and not translated yet.
    pub version: Option<(u64, u64)>,
    /// Rule ids credited with the flow's traffic.
    pub rules: Vec<u64>,
    /// What the flow's NORMAL learned from, learned again while the flow
    /// carries packets (OVS's `XC_NORMAL`), so that entries in use do not
    /// age out.
    pub mac_learned: Vec<NormalLearn>,
    /// The megaflow (masked key and mask): what a revalidator translates
    /// again, so that a dump need not bring keys and masks.
    pub megaflow: Megaflow,
    /// The actions installed (or being installed).
    pub actions: Arc<OdpActions>,
    /// What the translation's `learn` and `fin_timeout` actions asked (OVS's
    /// translation cache): asked again whenever the flow had packets since
    /// the last dump, so that the rules learned from live traffic stay
    /// fresh.
    pub effects: SideEffects,
    /// Statistics already credited to `rules`.
    pub packets: u64,
    pub bytes: u64,
    /// The revalidator round that last saw the flow in a dump (0: none).
    pub dump_seq: u64,
    /// Dumps in a row that did not show the flow.
    pub missed_dumps: u32,
    /// When a revalidator asked for the flow's deletion (ms): until the
    /// dpif-writer gets to it, the flow still shows in dumps and must not
    /// be deleted again (on a slow datapath that repeats every round).
    pub delete_sent_ms: Option<u64>,
}

impl Ukey {
    /// The ukey of a flow a handler is about to put.
    pub fn installing(
        now_ms: u64,
        version: (u64, u64),
        rules: Vec<u64>,
        megaflow: Megaflow,
        actions: Arc<OdpActions>,
    ) -> Ukey {
        Ukey {
            version: Some(version),
            rules,
            ..Ukey::adopted(now_ms, megaflow, actions)
        }
    }

    /// The ukey of a flow found in a dump without one.
    pub fn adopted(now_ms: u64, megaflow: Megaflow, actions: Arc<OdpActions>) -> Ukey {
        Ukey {
            created_ms: now_ms,
            version: None,
            rules: Vec::new(),
            mac_learned: Vec::new(),
            megaflow,
            actions,
            effects: SideEffects::default(),
            packets: 0,
            bytes: 0,
            dump_seq: 0,
            missed_dumps: 0,
            delete_sent_ms: None,
        }
    }
}

/// All ukeys, shared by the handlers, the revalidators and the writer.
pub struct Ukeys {
    shards: Box<[Mutex<UfidMap<Box<Ukey>>>]>,
    len: AtomicUsize,
}

impl Default for Ukeys {
    fn default() -> Self {
        Ukeys {
            shards: (0..N_SHARDS).map(|_| Mutex::default()).collect(),
            len: AtomicUsize::new(0),
        }
    }
}

/// The shard a ufid lives in. Uses high bits: the low ones pick a
/// receiver's handler and a datapath's hash buckets.
pub fn shard_of(ufid: Ufid) -> usize {
    (ufid >> 64) as usize & (N_SHARDS - 1)
}

impl Ukeys {
    /// Ukeys in all shards: the flows installed or on their way.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
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
        Shard {
            map: self.shards[s].lock(),
            len: &self.len,
        }
    }
}

/// One locked shard. Keeps the ukey count right through inserts and
/// removals.
pub struct Shard<'a> {
    /// Boxed: the tables then hold pointers, so that an insert into a
    /// large table writes one cache line instead of a ukey's three (the
    /// boxes come one after the other from the allocator), and growing a
    /// table moves pointers.
    map: MutexGuard<'a, UfidMap<Box<Ukey>>>,
    len: &'a AtomicUsize,
}

impl Shard<'_> {
    pub fn get_mut(&mut self, ufid: Ufid) -> Option<&mut Ukey> {
        self.map.get_mut(&ufid).map(|b| &mut **b)
    }

    /// `ufid`'s ukey, made by `make` if it has none.
    pub fn get_or_insert(&mut self, ufid: Ufid, make: impl FnOnce() -> Ukey) -> &mut Ukey {
        let len = self.len;
        self.map.entry(ufid).or_insert_with(|| {
            len.fetch_add(1, Ordering::Relaxed);
            Box::new(make())
        })
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
        let ukey = self.map.remove(&ufid)?;
        self.len.fetch_sub(1, Ordering::Relaxed);
        Some(ukey)
    }

    /// Visits every ukey of the shard.
    pub fn for_each(&self, mut f: impl FnMut(Ufid, &Ukey)) {
        for (ufid, ukey) in self.map.iter() {
            f(*ufid, ukey);
        }
    }

    /// Keeps the ukeys for which `keep` says so.
    pub fn retain(&mut self, mut keep: impl FnMut(Ufid, &mut Ukey) -> bool) {
        let before = self.map.len();
        self.map.retain(|ufid, ukey| keep(*ufid, ukey));
        self.len
            .fetch_sub(before - self.map.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ukey() -> Ukey {
        Ukey::adopted(1, Megaflow::default(), Arc::default())
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
