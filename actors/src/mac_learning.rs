//! The MAC learning table of a bridge (OVS's `lib/mac-learning.c`), which
//! the `NORMAL` action reads and learns into.
//!
//! It is the one piece of switch state that translation both reads and
//! writes, so it is not part of the rules snapshot: handlers look up and
//! learn under a read-write lock (a learn is a read unless the table
//! changes, as OVS's `mac_learning_update`), and every change that may
//! alter a translation (an entry learned, moved, expired, evicted or
//! flushed) bumps [`MacTable::generation`]. Revalidators re-translate their
//! flows when the generation they last saw is not the current one, as
//! OVS's revalidators do after `REV_MAC_LEARNING`.
//!
//! Entries are keyed by (VLAN, MAC) and hold the OpenFlow port they were
//! learned on (each port is its own bundle here). Ages count in whole
//! seconds, as OVS's `time_now()`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::RwLock;

use messages::dpif::monotonic_ms;

/// How long an entry lives without being learned again (OVS's
/// `MAC_ENTRY_DEFAULT_IDLE_TIME`), in seconds.
pub const DEFAULT_IDLE_TIME: u64 = 300;
/// Most entries (OVS's `MAC_DEFAULT_MAX`).
pub const DEFAULT_MAX_ENTRIES: usize = 8192;
/// How long a gratuitous ARP locks an entry against moves learned from a
/// bond (OVS's `MAC_GRAT_ARP_LOCK_TIME`), in seconds.
pub const GRAT_ARP_LOCK_TIME: u64 = 5;

/// One learned entry, as `fdb/show` lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacEntry {
    pub port: u32,
    pub vlan: u16,
    pub mac: [u8; 6],
    /// Seconds since it was last learned.
    pub age: u64,
}

/// The table's counters (OVS's `fdb/stats-show`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MacStats {
    pub entries: usize,
    pub max_entries: usize,
    pub learned: u64,
    pub expired: u64,
    pub evicted: u64,
    pub moved: u64,
}

type Key = (u16, [u8; 6]);

struct Entry {
    port: u32,
    /// Second at which it expires.
    expires: u64,
    /// Position in the LRU order (smaller: used longer ago).
    lru: u64,
    grat_arp_lock_until: u64,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<Key, Entry>,
    /// The LRU order of all entries (OVS's `lrus`): since every entry lives
    /// `idle_time` from its last use, the oldest is also the first to
    /// expire.
    lru: BTreeMap<u64, Key>,
    /// Each port's entries in LRU order (OVS's `port_lrus`), for eviction.
    port_lru: HashMap<u32, BTreeMap<u64, Key>>,
    next_lru: u64,
    stats: MacStats,
}

/// A bridge's MAC learning table.
pub struct MacTable {
    inner: RwLock<Inner>,
    generation: AtomicU64,
    idle_time: u64,
    max_entries: usize,
}

impl Default for MacTable {
    fn default() -> Self {
        MacTable::new(DEFAULT_IDLE_TIME, DEFAULT_MAX_ENTRIES)
    }
}

impl fmt::Debug for MacTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MacTable")
            .field("entries", &self.inner.read().entries.len())
            .field("generation", &self.generation())
            .finish()
    }
}

/// The current second of the monotonic clock.
pub fn now_secs() -> u64 {
    monotonic_ms() / 1000
}

/// True for a group (multicast or broadcast) address.
pub fn is_multicast(mac: &[u8; 6]) -> bool {
    mac[0] & 1 != 0
}

impl MacTable {
    /// A table whose entries live `idle_time` seconds (OVS bounds it to
    /// 15..=3600) and that holds at most `max_entries`.
    pub fn new(idle_time: u64, max_entries: usize) -> Self {
        let idle_time = idle_time.clamp(15, 3600);
        MacTable {
            inner: RwLock::new(Inner::default()),
            generation: AtomicU64::new(0),
            idle_time,
            max_entries: max_entries.max(1),
        }
    }

    /// Changes whenever the table changes in a way that may change a
    /// translation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The port `mac` was learned on in `vlan` (OVS's
    /// `mac_learning_lookup`: group addresses are never learned).
    pub fn lookup(&self, mac: &[u8; 6], vlan: u16) -> Option<u32> {
        if is_multicast(mac) {
            return None;
        }
        self.inner.read().entries.get(&(vlan, *mac)).map(|e| e.port)
    }

    /// Learns that `mac` is on `port` in `vlan` at second `now` (OVS's
    /// `mac_learning_update` on a port that is not a bond). Returns true
    /// if the entry is new or moved.
    pub fn learn(&self, mac: [u8; 6], vlan: u16, port: u32, grat_arp: bool, now: u64) -> bool {
        if is_multicast(&mac) {
            return false;
        }
        // The common case, under the read lock: known on this port and
        // learned again within the same second.
        {
            let inner = self.inner.read();
            if let Some(e) = inner.entries.get(&(vlan, mac)) {
                let age = (now + self.idle_time).saturating_sub(e.expires);
                if age == 0 && !grat_arp && e.port == port {
                    return false;
                }
            }
        }
        let mut inner = self.inner.write();
        let (changed, evicted) =
            inner.insert((vlan, mac), port, now + self.idle_time, self.max_entries);
        if grat_arp {
            if let Some(e) = inner.entries.get_mut(&(vlan, mac)) {
                e.grat_arp_lock_until = now + GRAT_ARP_LOCK_TIME;
            }
        }
        drop(inner);
        if changed || evicted {
            self.changed();
        }
        changed
    }

    /// Expires entries idle for `idle_time` and any over the size limit
    /// (OVS's `mac_learning_run`). Returns how many went.
    pub fn run(&self, now: u64) -> usize {
        let mut inner = self.inner.write();
        let mut n = 0;
        while let Some((&lru, &key)) = inner.lru.iter().next() {
            let expires = inner.entries[&key].expires;
            if inner.entries.len() <= self.max_entries && now < expires {
                break;
            }
            inner.remove(key, lru);
            inner.stats.expired += 1;
            n += 1;
        }
        drop(inner);
        if n > 0 {
            self.changed();
        }
        n
    }

    /// Removes every entry (OVS's `fdb/flush`).
    pub fn flush(&self) {
        let mut inner = self.inner.write();
        let had = !inner.entries.is_empty();
        inner.entries.clear();
        inner.lru.clear();
        inner.port_lru.clear();
        drop(inner);
        if had {
            self.changed();
        }
    }

    /// Removes the entries learned on `port` (OVS's `mac_learning_flush`
    /// of a bundle that goes: its hosts are flooded to again).
    pub fn flush_port(&self, port: u32) {
        let mut inner = self.inner.write();
        let Some(gone) = inner.port_lru.remove(&port) else {
            return;
        };
        for (lru, key) in gone {
            inner.entries.remove(&key);
            inner.lru.remove(&lru);
        }
        drop(inner);
        self.changed();
    }

    /// Every entry, least recently learned first (the order of OVS's
    /// `fdb/show`).
    pub fn entries(&self, now: u64) -> Vec<MacEntry> {
        let inner = self.inner.read();
        inner
            .lru
            .values()
            .map(|key| {
                let e = &inner.entries[key];
                MacEntry {
                    port: e.port,
                    vlan: key.0,
                    mac: key.1,
                    age: (now + self.idle_time).saturating_sub(e.expires),
                }
            })
            .collect()
    }

    pub fn stats(&self) -> MacStats {
        let inner = self.inner.read();
        MacStats {
            entries: inner.entries.len(),
            max_entries: self.max_entries,
            ..inner.stats
        }
    }
}

impl Inner {
    /// Inserts or refreshes `key` on `port`: (the port changed or the
    /// entry is new, an entry was evicted for room).
    fn insert(&mut self, key: Key, port: u32, expires: u64, max: usize) -> (bool, bool) {
        let lru = self.next_lru;
        self.next_lru += 1;
        let mut evicted = false;
        let old = self.entries.get(&key).map(|e| (e.port, e.lru));
        match old {
            Some((old_port, old_lru)) => {
                self.lru.remove(&old_lru);
                self.unlink_port(old_port, old_lru);
            }
            None => {
                if self.entries.len() >= max {
                    self.evict_fairly();
                    evicted = true;
                }
                self.stats.learned += 1;
            }
        }
        self.lru.insert(lru, key);
        self.port_lru.entry(port).or_default().insert(lru, key);
        let e = self.entries.entry(key).or_insert(Entry {
            port,
            expires,
            lru,
            grat_arp_lock_until: 0,
        });
        e.expires = expires;
        e.lru = lru;
        let moved = old.is_some_and(|(p, _)| p != port);
        if moved {
            self.stats.moved += 1;
        }
        e.port = port;
        (old.is_none() || moved, evicted)
    }

    fn unlink_port(&mut self, port: u32, lru: u64) {
        if let Some(m) = self.port_lru.get_mut(&port) {
            m.remove(&lru);
            if m.is_empty() {
                self.port_lru.remove(&port);
            }
        }
    }

    fn remove(&mut self, key: Key, lru: u64) {
        if let Some(e) = self.entries.remove(&key) {
            self.unlink_port(e.port, lru);
        }
        self.lru.remove(&lru);
    }

    /// OVS's `evict_mac_entry_fairly`: the least recently used entry of a
    /// port with the most entries (the lowest port number among equals).
    fn evict_fairly(&mut self) {
        let victim = self
            .port_lru
            .iter()
            .max_by_key(|(port, m)| (m.len(), std::cmp::Reverse(**port)))
            .and_then(|(_, m)| m.iter().next().map(|(l, k)| (*l, *k)));
        if let Some((lru, key)) = victim {
            self.remove(key, lru);
            self.stats.evicted += 1;
        }
    }
}

/// OVS's `fdb/show` text: a header, then one line per entry, least
/// recently learned first. `port_name` prints a port (OVS prints the
/// OpenFlow port number, or `LOCAL`).
pub fn format_fdb(entries: &[MacEntry], port_name: impl Fn(u32) -> String) -> String {
    let mut s = String::from(" port  VLAN  MAC                Age\n");
    for e in entries {
        let m = e.mac;
        s.push_str(&format!(
            "{:>5}  {:>4}  {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}  {:>3}\n",
            port_name(e.port),
            e.vlan,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            e.age
        ));
    }
    s
}

/// OVS's `fdb/stats-show` text for bridge `bridge`.
pub fn format_fdb_stats(bridge: &str, s: &MacStats) -> String {
    format!(
        "Statistics for bridge \"{bridge}\":\n  Current/maximum MAC entries in the table: {}/{}\n  Current static MAC entries in the table : 0\n  Total number of learned MAC entries     : {}\n  Total number of expired MAC entries     : {}\n  Total number of evicted MAC entries     : {}\n  Total number of port moved MAC entries  : {}\n",
        s.entries, s.max_entries, s.learned, s.expired, s.evicted, s.moved
    )
}

/// Reads `fdb/show` text back: (port, VLAN, MAC, age) per line. Ports are
/// numbers or `LOCAL` (`local` is the number it stands for).
pub fn parse_fdb(text: &str, local: u32) -> Result<Vec<MacEntry>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() || words[0] == "port" || words[0].starts_with('#') {
            continue;
        }
        let bad = |why: String| format!("fdb line {}: {line:?}: {why}", i + 1);
        if words.len() < 3 {
            return Err(bad("want `PORT VLAN MAC [AGE]`".into()));
        }
        let port = if words[0] == "LOCAL" {
            local
        } else {
            words[0]
                .parse()
                .map_err(|_| bad(format!("{:?} is not a port number", words[0])))?
        };
        let vlan: u16 = words[1]
            .parse()
            .ok()
            .filter(|v| *v < 4096)
            .ok_or_else(|| bad(format!("{:?} is not a VLAN (0-4095)", words[1])))?;
        let mac = parse_mac(words[2]).ok_or_else(|| bad(format!("{:?} is not a MAC", words[2])))?;
        let age = match words.get(3) {
            None => 0,
            Some(a) => a
                .parse()
                .map_err(|_| bad(format!("{a:?} is not an age in seconds")))?,
        };
        out.push(MacEntry {
            port,
            vlan,
            mac,
            age,
        });
    }
    Ok(out)
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl MacTable {
    /// Loads `entries` as if learned `age` seconds before `now`, oldest
    /// first (a given table state, for tracing).
    pub fn load(&self, entries: &[MacEntry], now: u64) {
        let mut sorted = entries.to_vec();
        sorted.sort_by_key(|e| std::cmp::Reverse(e.age));
        for e in sorted {
            self.learn(e.mac, e.vlan, e.port, false, now.saturating_sub(e.age));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 6] = [0, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [0, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [0, 0, 0, 0, 0, 0xc];

    #[test]
    fn learns_moves_and_counts() {
        let t = MacTable::default();
        let g0 = t.generation();
        assert!(t.learn(A, 10, 1, false, 100));
        assert_eq!(t.lookup(&A, 10), Some(1));
        assert_eq!(t.lookup(&A, 20), None, "per VLAN");
        let g1 = t.generation();
        assert!(g1 > g0);
        // Learned again on the same port: no change, no new generation.
        assert!(!t.learn(A, 10, 1, false, 100));
        assert!(!t.learn(A, 10, 1, false, 150));
        assert_eq!(t.generation(), g1);
        // A move is a change, and counted.
        assert!(t.learn(A, 10, 2, false, 151));
        assert_eq!(t.lookup(&A, 10), Some(2));
        assert!(t.generation() > g1);
        let s = t.stats();
        assert_eq!((s.entries, s.learned, s.moved), (1, 1, 1));
        let text = format_fdb_stats("br0", &s);
        assert!(
            text.contains("Current/maximum MAC entries in the table: 1/8192\n"),
            "{text}"
        );
        assert!(
            text.ends_with("Total number of port moved MAC entries  : 1\n"),
            "{text}"
        );
        // Group addresses are never learned nor found.
        let group = [1, 0, 0x5e, 0, 0, 1];
        assert!(!t.learn(group, 10, 1, false, 151));
        assert_eq!(t.lookup(&group, 10), None);
    }

    #[test]
    fn entries_age_out_unless_learned_again() {
        let t = MacTable::new(20, 100);
        t.learn(A, 0, 1, false, 0);
        t.learn(B, 0, 2, false, 0);
        t.learn(A, 0, 1, false, 15);
        assert_eq!(t.run(19), 0);
        let g = t.generation();
        assert_eq!(t.run(20), 1, "B is 20 s old");
        assert!(t.generation() > g);
        assert_eq!(t.lookup(&B, 0), None);
        assert_eq!(t.lookup(&A, 0), Some(1));
        assert_eq!(t.entries(30)[0].age, 15);
        assert_eq!(t.run(35), 1);
        assert_eq!(t.stats().expired, 2);
    }

    #[test]
    fn a_full_table_evicts_the_oldest_entry_of_the_busiest_port() {
        let t = MacTable::new(300, 3);
        t.learn(A, 0, 1, false, 0);
        t.learn(B, 0, 1, false, 1);
        t.learn(C, 0, 2, false, 2);
        // Port 1 has two entries: its oldest (A) goes.
        t.learn([0, 0, 0, 0, 0, 0xd], 0, 3, false, 3);
        assert_eq!(t.lookup(&A, 0), None);
        assert_eq!(t.lookup(&B, 0), Some(1));
        assert_eq!(t.stats().evicted, 1);
        assert_eq!(t.stats().entries, 3);
    }

    #[test]
    fn fdb_text_round_trips_in_lru_order() {
        let t = MacTable::default();
        t.learn(B, 20, 2, false, 10);
        t.learn(A, 10, 0xffff_fffe, false, 12);
        let text = format_fdb(&t.entries(13), |p| {
            if p == 0xffff_fffe {
                "LOCAL".into()
            } else {
                p.to_string()
            }
        });
        assert_eq!(
            text,
            " port  VLAN  MAC                Age\n    2    20  00:00:00:00:00:0b    3\nLOCAL    10  00:00:00:00:00:0a    1\n"
        );
        let back = parse_fdb(&text, 0xffff_fffe).unwrap();
        assert_eq!(back, t.entries(13));
        let u = MacTable::default();
        u.load(&back, 13);
        assert_eq!(u.entries(13), t.entries(13));
        let e = parse_fdb("1 4096 00:00:00:00:00:01", 0).unwrap_err();
        assert!(e.contains("line 1") && e.contains("VLAN"), "{e}");
        assert!(parse_fdb("1 1 00:00:00:00:01", 0).is_err());
        t.flush();
        assert!(t.entries(13).is_empty());
    }
}
