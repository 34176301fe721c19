//! The hash-and-choose actions, `multipath` and `bundle`/`bundle_load`
//! (OVS's `lib/multipath.c`, `lib/bundle.c`): which fields they hash, how
//! a hash picks a link or a member, and what of the flow that reads.
//! Every choice must be OVS's bit for bit — a controller spreading
//! traffic over links expects the same link for the same flow on any
//! switch — so the hashes are OVS's (`flow_hash_fields`, with Jenkins'
//! lookup3 and OVS's murmur steps, [`crate::hash`]).

use crate::flow::*;
use crate::hash::{jhash_bytes, ovs_hash_add, ovs_hash_finish, ovs_hash_int};
use crate::learn::Subfield;

/// What `multipath` and `bundle` hash (OVS's `nx_hash_fields`; the wire
/// values are the discriminants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashFields {
    EthSrc = 0,
    SymmetricL4 = 1,
    SymmetricL3L4 = 2,
    SymmetricL3L4Udp = 3,
    NwSrc = 4,
    NwDst = 5,
    SymmetricL3 = 6,
}

impl HashFields {
    pub const ALL: [HashFields; 7] = [
        HashFields::EthSrc,
        HashFields::SymmetricL4,
        HashFields::SymmetricL3L4,
        HashFields::SymmetricL3L4Udp,
        HashFields::NwSrc,
        HashFields::NwDst,
        HashFields::SymmetricL3,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HashFields::EthSrc => "eth_src",
            HashFields::SymmetricL4 => "symmetric_l4",
            HashFields::SymmetricL3L4 => "symmetric_l3l4",
            HashFields::SymmetricL3L4Udp => "symmetric_l3l4+udp",
            HashFields::NwSrc => "nw_src",
            HashFields::NwDst => "nw_dst",
            HashFields::SymmetricL3 => "symmetric_l3",
        }
    }

    /// By name, ignoring case (as OVS's parser).
    pub fn by_name(s: &str) -> Option<HashFields> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(s))
    }

    pub fn from_wire(v: u16) -> Option<HashFields> {
        Self::ALL.get(usize::from(v)).copied()
    }

    /// OVS's `flow_hash_fields`.
    pub fn hash(self, f: &Flow, basis: u16) -> u32 {
        let basis = u32::from(basis);
        match self {
            HashFields::EthSrc => jhash_bytes(&f.dl_src, basis),
            HashFields::SymmetricL4 => symmetric_l4(f, basis),
            HashFields::SymmetricL3L4 => symmetric_l3l4(f, basis, false),
            HashFields::SymmetricL3L4Udp => symmetric_l3l4(f, basis, true),
            HashFields::NwSrc | HashFields::NwDst => {
                let src = self == HashFields::NwSrc;
                if f.dl_type == ETH_TYPE_IP {
                    let a = if src { f.nw_src } else { f.nw_dst };
                    jhash_bytes(&a.to_be_bytes(), basis)
                } else if f.dl_type == ETH_TYPE_IPV6 {
                    jhash_bytes(if src { &f.ipv6_src } else { &f.ipv6_dst }, basis)
                } else {
                    basis
                }
            }
            HashFields::SymmetricL3 => {
                // OVS hashes a struct: the addresses' XOR (16 bytes), the
                // EtherType, padding to 20.
                let mut b = [0u8; 20];
                put_l3_xor(f, &mut b);
                b[16..18].copy_from_slice(&f.dl_type.to_be_bytes());
                jhash_bytes(&b, basis)
            }
        }
    }

    /// OVS's `flow_mask_hash_fields`: what [`HashFields::hash`] read (and,
    /// beyond OVS, what its L2 fallback reads).
    pub fn mask(self, f: &Flow, wc: &mut Flow) {
        let ip4 = f.dl_type == ETH_TYPE_IP;
        let ip6 = f.dl_type == ETH_TYPE_IPV6;
        let both_addrs = |wc: &mut Flow| {
            if ip4 {
                wc.nw_src = u32::MAX;
                wc.nw_dst = u32::MAX;
            } else if ip6 {
                wc.ipv6_src = [0xff; 16];
                wc.ipv6_dst = [0xff; 16];
            }
        };
        let later_fragment = f.nw_frag & FLOW_NW_FRAG_MASK != 0;
        match self {
            HashFields::EthSrc => wc.dl_src = [0xff; 6],
            HashFields::SymmetricL4 => {
                wc.dl_src = [0xff; 6];
                wc.dl_dst = [0xff; 6];
                both_addrs(wc);
                if f.is_ip_any() {
                    wc.nw_proto = u8::MAX;
                    // UDP ports are not hashed.
                    if f.nw_proto != IPPROTO_UDP {
                        let m = if f.nw_proto == IPPROTO_ICMP {
                            0xff
                        } else {
                            u16::MAX
                        };
                        wc.tp_src = m;
                        wc.tp_dst = m;
                    }
                }
                for v in &mut wc.vlans {
                    v.tci |= VLAN_VID_MASK | VLAN_CFI;
                }
            }
            HashFields::SymmetricL3L4 | HashFields::SymmetricL3L4Udp => {
                if self == HashFields::SymmetricL3L4Udp
                    && f.is_ip_any()
                    && f.nw_proto == IPPROTO_UDP
                    && !later_fragment
                {
                    wc.tp_src = u16::MAX;
                    wc.tp_dst = u16::MAX;
                }
                if !ip4 && !ip6 {
                    // The hash falls back to L2 (`symmetric_l2`), which
                    // OVS leaves wildcarded: frames with other MACs or
                    // VLANs would share the megaflow and its choice. We
                    // match what the hash read.
                    wc.dl_src = [0xff; 6];
                    wc.dl_dst = [0xff; 6];
                    for v in &mut wc.vlans {
                        v.tci |= VLAN_VID_MASK;
                    }
                    return;
                }
                both_addrs(wc);
                wc.nw_proto = u8::MAX;
                if matches!(f.nw_proto, IPPROTO_TCP | IPPROTO_SCTP) && !later_fragment {
                    wc.tp_src = u16::MAX;
                    wc.tp_dst = u16::MAX;
                }
            }
            HashFields::NwSrc => {
                if ip4 {
                    wc.nw_src = u32::MAX;
                } else if ip6 {
                    wc.ipv6_src = [0xff; 16];
                }
            }
            HashFields::NwDst => {
                if ip4 {
                    wc.nw_dst = u32::MAX;
                } else if ip6 {
                    wc.ipv6_dst = [0xff; 16];
                }
            }
            HashFields::SymmetricL3 => both_addrs(wc),
        }
    }
}

/// The XOR of the flow's IPv4 or IPv6 addresses, as the first 16 bytes
/// of OVS's hashed structs (an IPv4 XOR in the first 4).
fn put_l3_xor(f: &Flow, b: &mut [u8]) {
    if f.dl_type == ETH_TYPE_IP {
        b[..4].copy_from_slice(&(f.nw_src ^ f.nw_dst).to_be_bytes());
    } else if f.dl_type == ETH_TYPE_IPV6 {
        for (x, (s, d)) in b.iter_mut().zip(f.ipv6_src.iter().zip(&f.ipv6_dst)) {
            *x = s ^ d;
        }
    }
}

/// The VID bits of both VLAN headers, XORed (network order).
fn vlan_vids(f: &Flow) -> [u8; 2] {
    f.vlans
        .iter()
        .fold(0u16, |x, v| x ^ (v.tci & VLAN_VID_MASK))
        .to_be_bytes()
}

/// The XOR of the Ethernet addresses.
fn eth_xor(f: &Flow) -> [u8; 6] {
    std::array::from_fn(|i| f.dl_src[i] ^ f.dl_dst[i])
}

/// OVS's `flow_hash_symmetric_l4`: lookup3 over a 32-byte struct of the
/// address XOR, EtherType, VIDs, TCP/SCTP port XOR, MAC XOR and protocol.
fn symmetric_l4(f: &Flow, basis: u32) -> u32 {
    let mut b = [0u8; 32];
    b[16..18].copy_from_slice(&f.dl_type.to_be_bytes());
    b[18..20].copy_from_slice(&vlan_vids(f));
    b[22..28].copy_from_slice(&eth_xor(f));
    if f.dl_type == ETH_TYPE_IP || f.dl_type == ETH_TYPE_IPV6 {
        put_l3_xor(f, &mut b);
        b[28] = f.nw_proto;
        if matches!(f.nw_proto, IPPROTO_TCP | IPPROTO_SCTP) {
            b[20..22].copy_from_slice(&(f.tp_src ^ f.tp_dst).to_be_bytes());
        }
    }
    jhash_bytes(&b, basis)
}

/// OVS's `flow_hash_symmetric_l3l4` (murmur steps over the address XOR,
/// protocol and ports of a first fragment), or its L2 hash for non-IP.
fn symmetric_l3l4(f: &Flow, basis: u32, udp_ports: bool) -> u32 {
    // OVS adds the words as they lie in memory (network order) read as
    // little-endian integers.
    let mut h = basis;
    if f.dl_type == ETH_TYPE_IP {
        h = ovs_hash_add(h, (f.nw_src ^ f.nw_dst).swap_bytes());
    } else if f.dl_type == ETH_TYPE_IPV6 {
        for i in 0..2 {
            let word =
                |a: &[u8; 16]| u64::from_le_bytes(a[i * 8..i * 8 + 8].try_into().unwrap_or([0; 8]));
            let x = word(&f.ipv6_src) ^ word(&f.ipv6_dst);
            h = ovs_hash_add(ovs_hash_add(h, x as u32), (x >> 32) as u32);
        }
    } else {
        return symmetric_l2(f, basis);
    }
    h = ovs_hash_add(h, u32::from(f.nw_proto));
    let ports = matches!(f.nw_proto, IPPROTO_TCP | IPPROTO_SCTP)
        || (udp_ports && f.nw_proto == IPPROTO_UDP);
    if f.nw_frag & FLOW_NW_FRAG_MASK == 0 && ports {
        h = ovs_hash_add(h, u32::from((f.tp_src ^ f.tp_dst).swap_bytes()));
    }
    ovs_hash_finish(h, basis)
}

/// OVS's `flow_hash_symmetric_l2`: three words of EtherType, VIDs and the
/// MAC XOR. (Every flow here is Ethernet, which OVS requires of it.)
fn symmetric_l2(f: &Flow, basis: u32) -> u32 {
    let mut b = [0u8; 12];
    b[0..2].copy_from_slice(&f.dl_type.to_be_bytes());
    b[2..4].copy_from_slice(&vlan_vids(f));
    b[4..10].copy_from_slice(&eth_xor(f));
    let mut h = basis;
    for w in b.chunks_exact(4) {
        h = ovs_hash_add(h, u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    ovs_hash_finish(h, basis)
}

/// How `multipath` turns a hash into a link (OVS's `nx_mp_algorithm`;
/// wire values are the discriminants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MultipathAlgorithm {
    ModuloN = 0,
    HashThreshold = 1,
    Hrw = 2,
    IterHash = 3,
}

impl MultipathAlgorithm {
    pub const ALL: [MultipathAlgorithm; 4] = [
        MultipathAlgorithm::ModuloN,
        MultipathAlgorithm::HashThreshold,
        MultipathAlgorithm::Hrw,
        MultipathAlgorithm::IterHash,
    ];

    pub fn name(self) -> &'static str {
        match self {
            MultipathAlgorithm::ModuloN => "modulo_n",
            MultipathAlgorithm::HashThreshold => "hash_threshold",
            MultipathAlgorithm::Hrw => "hrw",
            MultipathAlgorithm::IterHash => "iter_hash",
        }
    }

    pub fn by_name(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
    }

    pub fn from_wire(v: u16) -> Option<Self> {
        Self::ALL.get(usize::from(v)).copied()
    }
}

/// `multipath(fields, basis, algorithm, n_links, arg, dst)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Multipath {
    pub fields: HashFields,
    pub basis: u16,
    pub algorithm: MultipathAlgorithm,
    /// The number of links minus one (as the wire carries it).
    pub max_link: u16,
    pub arg: u32,
    pub dst: Subfield,
}

impl Multipath {
    /// OVS's `multipath_execute`: the link for `f` (the caller writes it to
    /// `dst`), with what it read un-wildcarded in `wc`.
    pub fn link(&self, f: &Flow, wc: &mut Flow) -> u16 {
        let hash = self.fields.hash(f, self.basis);
        let n_links = u32::from(self.max_link) + 1;
        let link = match self.algorithm {
            MultipathAlgorithm::ModuloN => (hash % n_links) as u16,
            MultipathAlgorithm::HashThreshold if n_links == 1 => 0,
            MultipathAlgorithm::HashThreshold => (hash / (u32::MAX / n_links + 1)) as u16,
            MultipathAlgorithm::Hrw if n_links <= 64 => {
                let mut best = (0u16, ovs_hash_int(hash, 0));
                for link in 1..n_links {
                    let weight = ovs_hash_int(hash, link);
                    if weight > best.1 {
                        best = (link as u16, weight);
                    }
                }
                best.0
            }
            MultipathAlgorithm::Hrw => iter_hash(hash, n_links, 0),
            MultipathAlgorithm::IterHash => iter_hash(hash, n_links, self.arg),
        };
        self.fields.mask(f, wc);
        link
    }
}

/// OVS's `algorithm_iter_hash`: rehash until the value modulo a power of
/// two (or `modulo`, if it fits) names a link.
fn iter_hash(hash: u32, n_links: u32, modulo: u32) -> u16 {
    let modulo = if modulo < n_links || modulo / 2 > n_links {
        n_links.next_power_of_two()
    } else {
        modulo
    };
    let mut i = 0;
    loop {
        let link = ovs_hash_int(hash, i) % modulo;
        i += 1;
        if link < n_links {
            return link as u16;
        }
    }
}

/// How `bundle` picks a member (OVS's `nx_bd_algorithm`; wire values are
/// the discriminants).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BundleAlgorithm {
    /// The first live member.
    ActiveBackup = 0,
    /// The live member with the highest hash of the flow and its index.
    Hrw = 1,
}

impl BundleAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            BundleAlgorithm::ActiveBackup => "active_backup",
            BundleAlgorithm::Hrw => "hrw",
        }
    }

    pub fn by_name(s: &str) -> Option<Self> {
        [BundleAlgorithm::ActiveBackup, BundleAlgorithm::Hrw]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(s))
    }

    pub fn from_wire(v: u16) -> Option<Self> {
        match v {
            0 => Some(BundleAlgorithm::ActiveBackup),
            1 => Some(BundleAlgorithm::Hrw),
            _ => None,
        }
    }
}

/// The most members a bundle may have (OVS's `BUNDLE_MAX_MEMBERS`).
pub const BUNDLE_MAX_MEMBERS: usize = 2048;

/// `bundle(fields, basis, algorithm, ofport, members:P,...)` outputs to the
/// chosen member; `bundle_load(..., dst, members:...)` writes its number
/// into `dst` instead.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Bundle {
    pub fields: HashFields,
    pub basis: u16,
    pub algorithm: BundleAlgorithm,
    pub dst: Option<Subfield>,
    /// OpenFlow port numbers.
    pub members: Vec<u32>,
}

impl Bundle {
    /// OVS's `bundle_execute`: the chosen member, or `None` when no member
    /// is live, with what the choice read un-wildcarded in `wc`.
    pub fn choose(&self, f: &Flow, wc: &mut Flow, live: impl Fn(u32) -> bool) -> Option<u32> {
        match self.algorithm {
            BundleAlgorithm::ActiveBackup => self.members.iter().copied().find(|&p| live(p)),
            BundleAlgorithm::Hrw => {
                if self.members.len() > 1 {
                    self.fields.mask(f, wc);
                }
                let hash = self.fields.hash(f, self.basis);
                let mut best: Option<(u32, u32)> = None;
                for (i, &p) in self.members.iter().enumerate() {
                    if live(p) {
                        let h = ovs_hash_int(i as u32, hash);
                        if best.is_none_or(|(_, b)| h > b) {
                            best = Some((p, h));
                        }
                    }
                }
                best.map(|(p, _)| p)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iter_hash_picks_a_link_in_range_for_any_modulo() {
        for n in [1, 2, 3, 5, 64, 65, 1000] {
            for modulo in [0, 1, n, 2 * n, 4 * n + 1] {
                for h in 0..50u32 {
                    assert!(u32::from(iter_hash(h.wrapping_mul(0x9e37_79b9), n, modulo)) < n);
                }
            }
        }
    }

    #[test]
    fn names_and_wire_values_round_trip() {
        for f in HashFields::ALL {
            assert_eq!(HashFields::by_name(&f.name().to_uppercase()), Some(f));
            assert_eq!(HashFields::from_wire(f as u16), Some(f));
        }
        for a in MultipathAlgorithm::ALL {
            assert_eq!(MultipathAlgorithm::by_name(a.name()), Some(a));
            assert_eq!(MultipathAlgorithm::from_wire(a as u16), Some(a));
        }
        assert_eq!(HashFields::from_wire(7), None);
        assert_eq!(MultipathAlgorithm::from_wire(4), None);
        assert_eq!(BundleAlgorithm::from_wire(2), None);
    }

    #[test]
    fn symmetric_hashes_are_the_same_both_ways() {
        let a = Flow {
            dl_src: [0, 0, 0, 0, 0, 1],
            dl_dst: [0, 0, 0, 0, 0, 2],
            dl_type: ETH_TYPE_IP,
            nw_src: 0x0a00_0001,
            nw_dst: 0x0a00_0002,
            nw_proto: IPPROTO_TCP,
            tp_src: 1000,
            tp_dst: 80,
            ..Flow::default()
        };
        let b = Flow {
            dl_src: a.dl_dst,
            dl_dst: a.dl_src,
            nw_src: a.nw_dst,
            nw_dst: a.nw_src,
            tp_src: a.tp_dst,
            tp_dst: a.tp_src,
            ..a
        };
        for f in [
            HashFields::SymmetricL4,
            HashFields::SymmetricL3L4,
            HashFields::SymmetricL3L4Udp,
            HashFields::SymmetricL3,
        ] {
            assert_eq!(f.hash(&a, 7), f.hash(&b, 7), "{}", f.name());
        }
        assert_ne!(HashFields::NwSrc.hash(&a, 7), HashFields::NwSrc.hash(&b, 7));
    }
}
