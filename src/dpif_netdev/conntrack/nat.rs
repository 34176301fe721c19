//! NAT: choosing a connection's translated tuple within the ranges a
//! `ct(nat(...))` gives, and rewriting packets of the connection (and ICMP
//! errors about it) to or from that tuple, checksums included.
//!
//! As in OVS, a connection's reply key is the reverse of its translated
//! tuple: SNAT puts the new source in the reply key's destination, DNAT
//! the new destination in its source. A packet in the original direction
//! is rewritten to look like the reverse of the reply key; a reply, to the
//! reverse of the original key.

use std::hash::{BuildHasher, Hash, Hasher};

use messages::wire::checksum;

use super::packet::{ConnKey, CtPacket, IPPROTO_ICMP, IPPROTO_TCP, IPPROTO_UDP};

/// Which address a NAT rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    Src,
    Dst,
}

impl NatKind {
    pub fn reversed(self) -> NatKind {
        match self {
            NatKind::Src => NatKind::Dst,
            NatKind::Dst => NatKind::Src,
        }
    }
}

/// A `nat(...)` argument of a `ct` action. Addresses are 16 bytes (IPv4
/// in the first four); an all-zero `addr_min` keeps the address, and
/// `port_min == 0` means no port range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatSpec {
    /// `None`: `nat` alone, which only applies the NAT a connection
    /// already has.
    pub kind: Option<NatKind>,
    pub addr_min: [u8; 16],
    pub addr_max: [u8; 16],
    pub port_min: u16,
    pub port_max: u16,
    /// The address depends on the addresses only, not on a per-process
    /// secret (the same client keeps its backend across restarts).
    pub persistent: bool,
    /// Ports are chosen at random rather than by hash.
    pub random: bool,
}

impl NatSpec {
    pub fn of(nat: &messages::odp::NatAction) -> NatSpec {
        let mut spec = NatSpec {
            kind: nat.kind.map(|k| match k {
                messages::odp::NatKind::Src => NatKind::Src,
                messages::odp::NatKind::Dst => NatKind::Dst,
            }),
            persistent: nat.persistent,
            random: nat.random,
            ..NatSpec::default()
        };
        match nat.addrs {
            Some(messages::odp::NatAddrs::V4 { min, max }) => {
                spec.addr_min[..4].copy_from_slice(&min.to_be_bytes());
                spec.addr_max[..4].copy_from_slice(&max.to_be_bytes());
            }
            Some(messages::odp::NatAddrs::V6 { min, max }) => {
                spec.addr_min = min;
                spec.addr_max = max;
            }
            None => {}
        }
        if let Some((min, max)) = nat.ports {
            spec.port_min = min;
            spec.port_max = max;
        }
        spec
    }
}

/// Protocols whose ports (ICMPv4's echo id) NAT may change, as OVS's
/// `pat_packet` (SCTP, tracked by addresses alone, keeps its ports).
fn has_ports(key: &ConnKey) -> bool {
    matches!(
        (key.ipv6, key.proto),
        (_, IPPROTO_TCP) | (_, IPPROTO_UDP) | (false, IPPROTO_ICMP)
    )
}

fn addr_u128(a: &[u8; 16], ipv6: bool) -> u128 {
    if ipv6 {
        u128::from_be_bytes(*a)
    } else {
        u128::from(u32::from_be_bytes([a[0], a[1], a[2], a[3]]))
    }
}

fn u128_addr(v: u128, ipv6: bool) -> [u8; 16] {
    if ipv6 {
        v.to_be_bytes()
    } else {
        let mut a = [0; 16];
        a[..4].copy_from_slice(&(v as u32).to_be_bytes());
        a
    }
}

/// Source ports a SNAT without a port range may use, by the class of the
/// original port (as Linux and OVS keep privileged ports privileged).
fn port_class(port: u16) -> (u16, u16) {
    match port {
        0..=511 => (1, 511),
        512..=1023 => (600, 1023),
        _ => (1024, 65535),
    }
}

/// Attempts per port range before giving up, as OVS.
const MAX_ATTEMPTS: u32 = 128;

/// Chooses the reply key of a new connection `fwd` under `spec`; `taken`
/// says whether a key is in use. `None`: the ranges are exhausted.
pub fn choose(
    fwd: &ConnKey,
    spec: &NatSpec,
    kind: NatKind,
    seeds: &impl BuildHasher,
    random: u32,
    taken: impl Fn(&ConnKey) -> bool,
) -> Option<ConnKey> {
    let mut rev = fwd.reversed();
    let hash = {
        let mut h = seeds.build_hasher();
        if spec.persistent {
            // The addresses only, with no per-process secret.
            let mut h = rustc_hash::FxHasher::default();
            fwd.src.addr.hash(&mut h);
            fwd.dst.addr.hash(&mut h);
            h.finish() as u32
        } else {
            fwd.hash(&mut h);
            h.finish() as u32
        }
    };
    if spec.addr_min != [0; 16] {
        let min = addr_u128(&spec.addr_min, fwd.ipv6);
        let max = addr_u128(&spec.addr_max, fwd.ipv6).max(min);
        let span = (max - min).min(u128::from(u32::MAX - 1)) + 1;
        let addr = u128_addr(min + u128::from(hash) % span, fwd.ipv6);
        match kind {
            NatKind::Src => rev.dst.addr = addr,
            NatKind::Dst => rev.src.addr = addr,
        }
    }
    if !has_ports(fwd) {
        return (!taken(&rev)).then_some(rev);
    }
    let offset = if spec.random { random } else { hash };
    let icmp = fwd.proto == IPPROTO_ICMP;
    // DNAT with a port range: the destination port first.
    if kind == NatKind::Dst && spec.port_min != 0 && !icmp {
        let (min, max) = (spec.port_min, spec.port_max.max(spec.port_min));
        let found = try_ports(min, max, offset, None, |p| {
            rev.src.port = p;
            !taken(&rev)
        });
        if found.is_some() {
            return Some(rev);
        }
        rev.src.port = fwd.dst.port;
    }
    // Then the source port (the echo id for ICMP): the original first.
    let (min, max, start) = if kind == NatKind::Src && spec.port_min != 0 {
        let (min, max) = (spec.port_min, spec.port_max.max(spec.port_min));
        (min, max, None)
    } else {
        let (min, max) = port_class(fwd.src.port);
        (min, max, Some(fwd.src.port))
    };
    try_ports(min, max, offset, start, |p| {
        rev.dst.port = p;
        if icmp {
            rev.src.port = p;
        }
        !taken(&rev)
    })?;
    Some(rev)
}

/// Tries ports of `min..=max` from `start` (or from an offset into the
/// range) until `free` accepts one.
fn try_ports(
    min: u16,
    max: u16,
    offset: u32,
    start: Option<u16>,
    mut free: impl FnMut(u16) -> bool,
) -> Option<u16> {
    let span = u32::from(max - min) + 1;
    let first = match start {
        Some(p) if (min..=max).contains(&p) => u32::from(p - min),
        _ => offset % span,
    };
    let attempts = span.min(MAX_ATTEMPTS);
    (0..attempts)
        .map(|i| min + ((first + i) % span) as u16)
        .find(|&p| free(p))
}

fn put_be16(frame: &mut [u8], at: usize, v: u16) {
    frame[at..at + 2].copy_from_slice(&v.to_be_bytes());
}

fn get_be16(frame: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([frame[at], frame[at + 1]])
}

/// Where the L4 checksum of a segment of `proto` sits, if the address or
/// port rewrites must update it (an IPv4 UDP checksum of 0 means none).
fn l4_checksum_at(frame: &[u8], l4: usize, end: usize, proto: u8, ipv6: bool) -> Option<usize> {
    let at = match proto {
        IPPROTO_TCP => l4 + 16,
        IPPROTO_UDP => l4 + 6,
        58 if ipv6 => l4 + 2,
        _ => return None,
    };
    if at + 2 > end {
        return None;
    }
    if proto == IPPROTO_UDP && get_be16(frame, at) == 0 {
        return None;
    }
    Some(at)
}

/// An IP header and the L4 header behind it, in a frame: the packet's own,
/// or the one an ICMP error quotes (`end` cuts it short).
#[derive(Clone, Copy)]
struct Headers {
    l3: usize,
    l4: usize,
    end: usize,
    proto: u8,
    ipv6: bool,
    /// Update the L4 checksum as fields under it change (not for a quoted
    /// header, whose checksum covers bytes that are not there).
    l4_sum: bool,
}

impl Headers {
    fn set_addr(&self, frame: &mut [u8], which: NatKind, addr: &[u8; 16]) {
        let (at, len) = match (self.ipv6, which) {
            (false, NatKind::Src) => (self.l3 + 12, 4),
            (false, NatKind::Dst) => (self.l3 + 16, 4),
            (true, NatKind::Src) => (self.l3 + 8, 16),
            (true, NatKind::Dst) => (self.l3 + 24, 16),
        };
        let old: Vec<u8> = frame[at..at + len].to_vec();
        let new = &addr[..len];
        if old == new {
            return;
        }
        frame[at..at + len].copy_from_slice(new);
        if !self.ipv6 {
            let sum = get_be16(frame, self.l3 + 10);
            put_be16(frame, self.l3 + 10, checksum::update(sum, &old, new));
        }
        if self.l4_sum {
            if let Some(c) = l4_checksum_at(frame, self.l4, self.end, self.proto, self.ipv6) {
                let sum = get_be16(frame, c);
                put_be16(frame, c, checksum::update(sum, &old, new));
            }
        }
    }

    fn set_ports(&self, frame: &mut [u8], src: u16, dst: u16) {
        if self.proto == IPPROTO_ICMP {
            // The echo id (both "ports" are the id).
            let at = self.l4 + 4;
            if at + 2 > self.end {
                return;
            }
            let old = get_be16(frame, at);
            put_be16(frame, at, src);
            if self.l4_sum {
                let sum = get_be16(frame, self.l4 + 2);
                put_be16(frame, self.l4 + 2, checksum::update_u16(sum, old, src));
            }
            return;
        }
        let csum = if self.l4_sum {
            l4_checksum_at(frame, self.l4, self.end, self.proto, self.ipv6)
        } else {
            None
        };
        for (at, new) in [(self.l4, src), (self.l4 + 2, dst)] {
            let old = get_be16(frame, at);
            if old == new {
                continue;
            }
            put_be16(frame, at, new);
            if let Some(c) = csum {
                let sum = get_be16(frame, c);
                put_be16(frame, c, checksum::update_u16(sum, old, new));
            }
        }
    }
}

/// Rewrites `frame` as NAT `kind` does to make it look like the reverse
/// of `key` (the other direction's key of its connection). For an ICMP
/// error, the quoted packet is rewritten the opposite way and the ICMP
/// checksum computed again.
pub fn rewrite(frame: &mut [u8], pkt: &CtPacket, key: &ConnKey, kind: NatKind) {
    let outer = Headers {
        l3: pkt.l3,
        l4: pkt.l4,
        end: pkt.end,
        proto: pkt.key.proto,
        ipv6: pkt.key.ipv6,
        l4_sum: true,
    };
    if pkt.related {
        // The outer proto is ICMP: only its addresses change.
        let icmp_outer = Headers {
            l4_sum: false,
            ..outer
        };
        let target = match kind {
            NatKind::Src => &key.dst.addr,
            NatKind::Dst => &key.src.addr,
        };
        icmp_outer.set_addr(frame, kind, target);
        rewrite_quoted(frame, pkt, key, kind.reversed());
        return;
    }
    match kind {
        NatKind::Src => outer.set_addr(frame, NatKind::Src, &key.dst.addr),
        NatKind::Dst => outer.set_addr(frame, NatKind::Dst, &key.src.addr),
    }
    if has_ports(&pkt.key) {
        outer.set_ports(frame, key.dst.port, key.src.port);
    }
}

/// The packet quoted in an ICMP error goes the other way: it is rewritten
/// to look like `key` itself.
fn rewrite_quoted(frame: &mut [u8], pkt: &CtPacket, key: &ConnKey, kind: NatKind) {
    let inner_l3 = pkt.l4 + 8;
    let (inner_l4, proto) = match quoted_l4(frame, inner_l3, pkt.end, pkt.key.ipv6) {
        Some(x) => x,
        None => return,
    };
    let inner = Headers {
        l3: inner_l3,
        l4: inner_l4,
        end: pkt.end,
        proto,
        ipv6: pkt.key.ipv6,
        l4_sum: false,
    };
    let rev = key.reversed();
    if has_ports(&rev) && inner_l4 + 4 <= pkt.end {
        inner.set_ports(frame, rev.dst.port, rev.src.port);
    }
    match kind {
        NatKind::Src => inner.set_addr(frame, NatKind::Src, &rev.dst.addr),
        NatKind::Dst => inner.set_addr(frame, NatKind::Dst, &rev.src.addr),
    }
    // The ICMP checksum covers the quoted packet: computed again.
    let l4 = pkt.l4;
    put_be16(frame, l4 + 2, 0);
    let sum = if pkt.key.ipv6 {
        let src: [u8; 16] = frame[pkt.l3 + 8..pkt.l3 + 24]
            .try_into()
            .unwrap_or_default();
        let dst: [u8; 16] = frame[pkt.l3 + 24..pkt.l3 + 40]
            .try_into()
            .unwrap_or_default();
        let pseudo = checksum::pseudo_header_v6(&src, &dst, 58, (pkt.end - l4) as u32);
        !checksum::combine(pseudo, checksum::ones_sum(&frame[l4..pkt.end]))
    } else {
        checksum::internet(&frame[l4..pkt.end])
    };
    put_be16(frame, l4 + 2, sum);
}

/// The L4 offset and protocol of a quoted IP header (already checked by
/// the parser).
fn quoted_l4(frame: &[u8], l3: usize, end: usize, ipv6: bool) -> Option<(usize, u8)> {
    if ipv6 {
        let mut next = *frame.get(l3 + 6)?;
        let mut at = l3 + 40;
        while matches!(next, 0 | 43 | 60 | 51) {
            let len = if next == 51 {
                (usize::from(*frame.get(at + 1)?) + 2) * 4
            } else {
                (usize::from(*frame.get(at + 1)?) + 1) * 8
            };
            next = *frame.get(at)?;
            at += len;
        }
        (at <= end).then_some((at, next))
    } else {
        let ihl = usize::from(frame.get(l3)? & 0x0f) * 4;
        Some((l3 + ihl, *frame.get(l3 + 9)?))
    }
}
