//! IP fragment reassembly before the connection tracker, as OVS's
//! userspace datapath does it (lib/ipf.c): a `ct` on an IPv4 or IPv6
//! fragment holds it until its datagram is whole; then the reassembled
//! datagram goes through the tracker, its verdict (state, zone, mark,
//! label, original tuple) and NAT's address rewrite are copied to the
//! original fragments, and the fragments, not the datagram, go on through
//! the rest of the actions. Lists that stay incomplete expire after 15 s
//! and their fragments go on `+inv` with the next packet through `ct`;
//! lists no packet sent on within 10 s more are purged (dropped, counted),
//! as OVS's clean thread does.
//!
//! Pure logic over frames and a clock: the datapath calls
//! [`Ipf::handle`] before tracking a packet and [`Ipf::expired`] after,
//! and [`Ipf::purge`] from its cleaner thread. Limits and counters are
//! OVS's (`dpctl/ipf-get-status`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use messages::wire::checksum;
use parking_lot::Mutex;

/// How long an incomplete list waits for its missing fragments (OVS's
/// `IPF_FRAG_LIST_TIMEOUT`).
pub const LIST_TIMEOUT_MS: u64 = 15_000;
/// How long after expiring a list no packet sent on is purged (OVS's
/// `IPF_FRAG_LIST_PURGE_TIME_ADJ`).
pub const PURGE_AFTER_MS: u64 = 10_000;
/// The largest IPv4 header, and datagram.
const IPV4_MAX_HEADER: usize = 60;
const IP_MAX_DATAGRAM: usize = 65_535;
/// OVS's bounds on the settings (`IPF_V4_FRAG_SIZE_LBOUND`,
/// `IPF_NFRAG_UBOUND`).
const MIN_FRAG_SIZE_LOWER_BOUND: u32 = 400;
const MAX_FRAGS_UPPER_BOUND: u32 = 5000;
/// Most expired lists sent on per packet (OVS: 1, "due to DOS
/// probability").
const EXPIRED_LISTS_PER_CALL: usize = 1;

/// Reassembly settings (`[datapath.conntrack.fragments]`), OVS's
/// defaults and `dpctl/ipf-set-*` bounds.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IpfConfig {
    pub v4_enabled: bool,
    pub v6_enabled: bool,
    /// Smallest IPv4 fragment (its IP header included) that is not the
    /// last one; smaller ones are `+inv`.
    pub min_v4_frag_size: u32,
    pub min_v6_frag_size: u32,
    /// Most fragments held at once.
    pub max_frags: u32,
}

impl Default for IpfConfig {
    fn default() -> Self {
        IpfConfig {
            v4_enabled: true,
            v6_enabled: true,
            min_v4_frag_size: 1200,
            min_v6_frag_size: 1280,
            max_frags: 1000,
        }
    }
}

impl IpfConfig {
    /// OVS's checks of `dpctl/ipf-set-min-frag` and `ipf-set-max-nfrags`.
    pub fn check(&self) -> Result<(), String> {
        for (name, v) in [
            ("min_v4_frag_size", self.min_v4_frag_size),
            ("min_v6_frag_size", self.min_v6_frag_size),
        ] {
            if v < MIN_FRAG_SIZE_LOWER_BOUND {
                return Err(format!(
                    "[datapath.conntrack.fragments] {name} = {v}: at least \
                     {MIN_FRAG_SIZE_LOWER_BOUND} (as OVS's dpctl/ipf-set-min-frag)"
                ));
            }
        }
        if self.max_frags > MAX_FRAGS_UPPER_BOUND {
            return Err(format!(
                "[datapath.conntrack.fragments] max_frags = {}: at most \
                 {MAX_FRAGS_UPPER_BOUND} (as OVS's dpctl/ipf-set-max-nfrags)",
                self.max_frags
            ));
        }
        Ok(())
    }

    /// Most fragments of one IPv4 datagram: as many as fit 64 KiB at the
    /// smallest size (OVS's `max_v4_frag_list_size`).
    fn max_v4_list(&self) -> usize {
        let per = (self.min_v4_frag_size as usize).saturating_sub(IPV4_MAX_HEADER);
        (IP_MAX_DATAGRAM - IPV4_MAX_HEADER).div_ceil(per.max(1))
    }
}

/// Per-family counters, named as `dpctl/ipf-get-status` prints them.
#[derive(Default, Debug)]
pub struct FamilyCounters {
    /// Fragments held for reassembly.
    pub accepted: AtomicU64,
    /// Fragments sent on after their datagram was whole.
    pub completed: AtomicU64,
    /// Fragments sent on (`+inv`) after their list expired.
    pub expired: AtomicU64,
    /// Fragments (not the last) smaller than the minimum: `+inv`.
    pub too_small: AtomicU64,
    /// Fragments overlapping one held already: `+inv`.
    pub overlapped: AtomicU64,
    /// Fragments dropped without being sent on: their list expired and no
    /// packet went through `ct` to send it on for [`PURGE_AFTER_MS`].
    pub purged: AtomicU64,
}

/// The fragment of a datagram, held with the metadata it came with.
#[derive(Clone, Debug)]
pub struct Fragment<M> {
    pub frame: Vec<u8>,
    pub md: M,
    l3: usize,
    /// Where the fragment's data starts in `frame`, and its length.
    data_at: usize,
    data_len: usize,
    /// Offset of its data in the datagram.
    start: usize,
}

/// A datagram made whole: track `datagram`, then call
/// [`Reassembled::into_fragments`] for the fragments to send on.
#[derive(Debug)]
pub struct Reassembled<M> {
    pub datagram: Vec<u8>,
    ipv6: bool,
    /// Where the datagram's upper-layer data starts.
    data_at: usize,
    fragments: Vec<Fragment<M>>,
}

impl<M> Reassembled<M> {
    /// The fragments, in datagram order, with what the tracker did to the
    /// datagram done to them: NAT's new addresses in each, and the first
    /// one's upper-layer header (ports, checksum) as the datagram's now
    /// (OVS's `ipf_post_execute_reass_pkts`).
    pub fn into_fragments(self) -> Vec<Fragment<M>> {
        let Reassembled {
            datagram,
            ipv6,
            data_at,
            mut fragments,
        } = self;
        let l3 = fragments.first().map_or(0, |f| f.l3);
        for f in &mut fragments {
            if ipv6 {
                f.frame[f.l3 + 8..f.l3 + 40].copy_from_slice(&datagram[l3 + 8..l3 + 40]);
            } else if f.frame[f.l3 + 12..f.l3 + 20] != datagram[l3 + 12..l3 + 20] {
                f.frame[f.l3 + 12..f.l3 + 20].copy_from_slice(&datagram[l3 + 12..l3 + 20]);
                let ihl = usize::from(f.frame[f.l3] & 0x0f) * 4;
                f.frame[f.l3 + 10..f.l3 + 12].copy_from_slice(&[0, 0]);
                let sum = checksum::internet(&f.frame[f.l3..f.l3 + ihl]);
                f.frame[f.l3 + 10..f.l3 + 12].copy_from_slice(&sum.to_be_bytes());
            }
        }
        if let Some(first) = fragments.first_mut() {
            let n = first.data_len.min(datagram.len().saturating_sub(data_at));
            first.frame[first.data_at..first.data_at + n]
                .copy_from_slice(&datagram[data_at..data_at + n]);
        }
        fragments
    }
}

/// What to do with a packet about to be tracked.
#[derive(Debug)]
pub enum Verdict<M> {
    /// Not a fragment (or reassembly is off for its family): track it.
    Whole,
    /// A fragment that cannot be reassembled (malformed, too small,
    /// overlapping, over a limit): `+trk+inv`, as OVS.
    Invalid,
    /// Held until its datagram is whole (the frame was taken).
    Held,
    /// It completed its datagram.
    Complete(Reassembled<M>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct ListKey {
    src: [u8; 16],
    dst: [u8; 16],
    recirc_id: u32,
    id: u32,
    ipv6: bool,
    zone: u16,
    /// IPv4 only (OVS keys IPv6 lists without it).
    proto: u8,
}

/// A fragment as parsed, before it is held.
struct Parsed {
    key: ListKey,
    l3: usize,
    /// For IPv6: where the fragment header is, and the offset of the
    /// next-header byte that names it.
    frag_header_at: usize,
    next_header_at: usize,
    data_at: usize,
    data_len: usize,
    start: usize,
    more: bool,
    /// Bytes of the IP packet (link-layer padding excluded).
    ip_len: usize,
}

struct List<M> {
    fragments: Vec<Fragment<M>>,
    /// First and last fragments seen.
    first: bool,
    last: bool,
    /// Reassembly failed (too big): later fragments are `+inv` and the
    /// held ones go on at expiry.
    failed: bool,
    expires_ms: u64,
    /// For IPv6: the first fragment's fragment header, and the byte that
    /// names it.
    frag_header_at: usize,
    next_header_at: usize,
}

struct Lists<M> {
    by_key: HashMap<ListKey, List<M>>,
    /// Lists in the order they expire (all wait as long): stale entries
    /// (lists completed since) are skipped.
    expiry: VecDeque<(ListKey, u64)>,
}

impl<M> Lists<M> {
    /// Takes the list that expires first if `due(its expiry)`, skipping the
    /// stale entries before it; `None` once the first live list is not due.
    fn pop_due(&mut self, due: impl Fn(u64) -> bool) -> Option<(ListKey, List<M>)> {
        while let Some(&(key, expires)) = self.expiry.front() {
            let live = self
                .by_key
                .get(&key)
                .is_some_and(|l| l.expires_ms == expires);
            if live && !due(expires) {
                return None;
            }
            self.expiry.pop_front();
            if live {
                return self.by_key.remove(&key).map(|list| (key, list));
            }
        }
        None
    }
}

/// The fragment reassembler.
pub struct Ipf<M> {
    config: IpfConfig,
    lists: Mutex<Lists<M>>,
    /// Fragments held now (OVS's `nfrag`).
    held: AtomicUsize,
    pub v4: FamilyCounters,
    pub v6: FamilyCounters,
}

impl<M> Ipf<M> {
    pub fn new(config: IpfConfig) -> Self {
        Ipf {
            config,
            lists: Mutex::new(Lists {
                by_key: HashMap::new(),
                expiry: VecDeque::new(),
            }),
            held: AtomicUsize::new(0),
            v4: FamilyCounters::default(),
            v6: FamilyCounters::default(),
        }
    }

    fn counters(&self, ipv6: bool) -> &FamilyCounters {
        if ipv6 {
            &self.v6
        } else {
            &self.v4
        }
    }

    /// Fragments held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Takes a packet about to be tracked in `zone`: a fragment is held
    /// (its frame taken) until its datagram is whole.
    pub fn handle(
        &self,
        frame: &mut Vec<u8>,
        md: M,
        zone: u16,
        recirc_id: u32,
        now: u64,
    ) -> Verdict<M> {
        let parsed = match classify(frame, &self.config) {
            Class::Whole => return Verdict::Whole,
            Class::Invalid => return Verdict::Invalid,
            Class::TooSmall(ipv6) => {
                self.counters(ipv6)
                    .too_small
                    .fetch_add(1, Ordering::Relaxed);
                return Verdict::Invalid;
            }
            Class::Fragment(p) => p,
        };
        let mut key = parsed.key;
        key.zone = zone;
        key.recirc_id = recirc_id;
        let ipv6 = key.ipv6;
        if self.held() >= self.config.max_frags as usize {
            return Verdict::Invalid;
        }
        let max_list = if ipv6 {
            usize::MAX
        } else {
            self.config.max_v4_list()
        };
        let mut lists = self.lists.lock();
        let list = lists.by_key.entry(key).or_insert_with(|| List {
            fragments: Vec::new(),
            first: false,
            last: false,
            failed: false,
            expires_ms: now + LIST_TIMEOUT_MS,
            frag_header_at: 0,
            next_header_at: 0,
        });
        if list.fragments.is_empty() {
            let expires = list.expires_ms;
            lists.expiry.push_back((key, expires));
        }
        let list = lists.by_key.get_mut(&key).expect("inserted above");
        if list.failed || list.fragments.len() >= max_list {
            return Verdict::Invalid;
        }
        let end = parsed.start + parsed.data_len;
        if list
            .fragments
            .iter()
            .any(|f| parsed.start < f.start + f.data_len && f.start < end)
        {
            self.counters(ipv6)
                .overlapped
                .fetch_add(1, Ordering::Relaxed);
            return Verdict::Invalid;
        }
        frame.truncate(parsed.l3 + parsed.ip_len);
        list.fragments.push(Fragment {
            frame: std::mem::take(frame),
            md,
            l3: parsed.l3,
            data_at: parsed.data_at,
            data_len: parsed.data_len,
            start: parsed.start,
        });
        self.held.fetch_add(1, Ordering::Relaxed);
        self.counters(ipv6).accepted.fetch_add(1, Ordering::Relaxed);
        if parsed.start == 0 {
            list.first = true;
            list.frag_header_at = parsed.frag_header_at;
            list.next_header_at = parsed.next_header_at;
        }
        list.last |= !parsed.more;
        if !(list.first && list.last) {
            return Verdict::Held;
        }
        list.fragments.sort_by_key(|f| f.start);
        let contiguous = list
            .fragments
            .windows(2)
            .all(|w| w[0].start + w[0].data_len == w[1].start);
        if !contiguous {
            return Verdict::Held;
        }
        let Some((datagram, data_at)) = reassemble(list, ipv6) else {
            tracing::debug!("reassembled datagram over 64 KiB; its fragments wait to expire");
            list.failed = true;
            return Verdict::Held;
        };
        let list = lists.by_key.remove(&key).expect("found above");
        let n = list.fragments.len();
        self.held.fetch_sub(n, Ordering::Relaxed);
        self.counters(ipv6)
            .completed
            .fetch_add(n as u64, Ordering::Relaxed);
        Verdict::Complete(Reassembled {
            datagram,
            ipv6,
            data_at,
            fragments: list.fragments,
        })
    }

    /// The fragments of (at most one) list whose time ran out, to send on
    /// `+inv` (OVS's `ipf_send_expired_frags`).
    pub fn expired(&self, now: u64) -> Vec<Fragment<M>> {
        if self.held() == 0 {
            return Vec::new();
        }
        let mut lists = self.lists.lock();
        let mut out = Vec::new();
        let mut sent = 0;
        while sent < EXPIRED_LISTS_PER_CALL {
            let Some((key, list)) = lists.pop_due(|expires| expires < now) else {
                break;
            };
            let n = list.fragments.len();
            self.held.fetch_sub(n, Ordering::Relaxed);
            self.counters(key.ipv6)
                .expired
                .fetch_add(n as u64, Ordering::Relaxed);
            out.extend(list.fragments);
            sent += 1;
        }
        out
    }

    /// Drops the lists still held [`PURGE_AFTER_MS`] after they expired
    /// (no packet went through `ct` to send them on), counting their
    /// fragments as purged (OVS's `ipf_purge_list_check`); how many.
    pub fn purge(&self, now: u64) -> usize {
        if self.held() == 0 {
            return 0;
        }
        let mut lists = self.lists.lock();
        let mut purged = 0;
        while let Some((key, list)) = lists.pop_due(|expires| expires + PURGE_AFTER_MS <= now) {
            let n = list.fragments.len();
            self.held.fetch_sub(n, Ordering::Relaxed);
            self.counters(key.ipv6)
                .purged
                .fetch_add(n as u64, Ordering::Relaxed);
            purged += n;
        }
        purged
    }

    /// `ovs-appctl dpctl/ipf-get-status`'s text.
    pub fn status(&self) -> String {
        let c = &self.config;
        let mut s = String::new();
        s += "        Fragmentation Module Status\n";
        s += "        ---------------------------\n";
        s += &format!("        v4 enabled: {}\n", u8::from(c.v4_enabled));
        s += &format!("        v6 enabled: {}\n", u8::from(c.v6_enabled));
        s += &format!("        max num frags (v4/v6): {}\n", c.max_frags);
        s += &format!("        num frag: {}\n", self.held());
        for (name, min, n) in [
            ("v4", c.min_v4_frag_size, &self.v4),
            ("v6", c.min_v6_frag_size, &self.v6),
        ] {
            let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
            s += &format!("        min {name} frag size: {min}\n");
            s += &format!("        {name} frags accepted: {}\n", get(&n.accepted));
            s += &format!("        {name} frags completed: {}\n", get(&n.completed));
            s += &format!("        {name} frags expired: {}\n", get(&n.expired));
            s += &format!("        {name} frags too small: {}\n", get(&n.too_small));
            s += &format!("        {name} frags overlapped: {}\n", get(&n.overlapped));
            s += &format!("        {name} frags purged: {}\n", get(&n.purged));
        }
        s
    }
}

enum Class {
    Whole,
    Invalid,
    TooSmall(bool),
    Fragment(Parsed),
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Whether a frame is a fragment to hold, checked as OVS's
/// `ipf_is_valid_v4_frag`/`_v6_frag`.
fn classify(frame: &[u8], config: &IpfConfig) -> Class {
    let Some((l3, ty)) = super::packet::l3_start(frame) else {
        return Class::Whole;
    };
    let parsed = match ty {
        0x0800 if config.v4_enabled => classify_v4(frame, l3, config),
        0x86dd if config.v6_enabled => classify_v6(frame, l3, config),
        _ => return Class::Whole,
    };
    parsed.unwrap_or(Class::Invalid)
}

fn classify_v4(frame: &[u8], l3: usize, config: &IpfConfig) -> Option<Class> {
    let h = frame.get(l3..)?;
    let frag = be16(h, 6)?;
    let (more, offset) = (frag & 0x2000 != 0, usize::from(frag & 0x1fff) * 8);
    if !more && offset == 0 {
        return Some(Class::Whole);
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    let total = usize::from(be16(h, 2)?);
    if ihl < 20 || total < ihl || total > h.len() || !checksum::verify(0, &h[..ihl]) {
        return None;
    }
    if more && total < config.min_v4_frag_size as usize {
        return Some(Class::TooSmall(false));
    }
    let mut key = ListKey {
        src: [0; 16],
        dst: [0; 16],
        recirc_id: 0,
        id: u32::from(be16(h, 4)?),
        ipv6: false,
        zone: 0,
        proto: h[9],
    };
    key.src[..4].copy_from_slice(&h[12..16]);
    key.dst[..4].copy_from_slice(&h[16..20]);
    Some(Class::Fragment(Parsed {
        key,
        l3,
        frag_header_at: 0,
        next_header_at: 0,
        data_at: l3 + ihl,
        data_len: total - ihl,
        start: offset,
        more,
        ip_len: total,
    }))
}

fn classify_v6(frame: &[u8], l3: usize, config: &IpfConfig) -> Option<Class> {
    let h = frame.get(l3..)?;
    if h.len() < 40 {
        return None;
    }
    let total = 40 + usize::from(be16(h, 4)?);
    let mut next = h[6];
    let mut next_at = l3 + 6;
    let mut at = l3 + 40;
    let end = l3 + total;
    // Find the fragment header among the extension headers.
    loop {
        match next {
            0 | 43 | 60 | 51 => {
                let len = if next == 51 {
                    (usize::from(*frame.get(at + 1)?) + 2) * 4
                } else {
                    (usize::from(*frame.get(at + 1)?) + 1) * 8
                };
                next = *frame.get(at)?;
                next_at = at;
                at += len;
            }
            44 => break,
            _ => return Some(Class::Whole),
        }
    }
    if total > h.len() || at + 8 > end {
        return None;
    }
    let offlg = be16(frame, at + 2)?;
    let (more, offset) = (offlg & 1 != 0, usize::from(offlg & 0xfff8));
    if !more && offset == 0 {
        // An atomic fragment: nothing to reassemble (the tracker refuses
        // it, as OVS's).
        return Some(Class::Whole);
    }
    if more && total < config.min_v6_frag_size as usize {
        return Some(Class::TooSmall(true));
    }
    let id = u32::from_be_bytes(frame.get(at + 4..at + 8)?.try_into().ok()?);
    let key = ListKey {
        src: h[8..24].try_into().ok()?,
        dst: h[24..40].try_into().ok()?,
        recirc_id: 0,
        id,
        ipv6: true,
        zone: 0,
        proto: 0,
    };
    Some(Class::Fragment(Parsed {
        key,
        l3,
        frag_header_at: at,
        next_header_at: next_at,
        data_at: at + 8,
        data_len: end - (at + 8),
        start: offset,
        more,
        ip_len: total,
    }))
}

/// Joins a complete, sorted list into one datagram; `None` if it would be
/// over 64 KiB. Returns the datagram and where its upper-layer data starts.
fn reassemble<M>(list: &List<M>, ipv6: bool) -> Option<(Vec<u8>, usize)> {
    let first = list.fragments.first()?;
    let data: usize = list.fragments.iter().map(|f| f.data_len).sum();
    // The first fragment's headers, without an IPv6 fragment header.
    let headers = if ipv6 {
        list.frag_header_at
    } else {
        first.data_at
    };
    let ip_len = headers - first.l3 + data;
    if (ipv6 && ip_len - 40 > IP_MAX_DATAGRAM) || (!ipv6 && ip_len > IP_MAX_DATAGRAM) {
        return None;
    }
    let mut d = Vec::with_capacity(headers + data);
    d.extend_from_slice(&first.frame[..headers]);
    for f in &list.fragments {
        d.extend_from_slice(&f.frame[f.data_at..f.data_at + f.data_len]);
    }
    let l3 = first.l3;
    if ipv6 {
        // The header before the fragment header now names what it named.
        d[list.next_header_at] = first.frame[list.frag_header_at];
        d[l3 + 4..l3 + 6].copy_from_slice(&((ip_len - 40) as u16).to_be_bytes());
    } else {
        d[l3 + 2..l3 + 4].copy_from_slice(&(ip_len as u16).to_be_bytes());
        // Offset 0 and no more fragments; DF as it was.
        d[l3 + 6] &= 0x40;
        d[l3 + 7] = 0;
        d[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let sum = checksum::internet(&d[l3..headers]);
        d[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
    }
    Some((d, headers))
}

#[cfg(test)]
mod tests;
