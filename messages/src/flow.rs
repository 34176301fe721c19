//! `Flow`: every header and metadata field upcalld matches on, in the
//! spirit of OVS's `struct flow`.
//!
//! The struct is plain old data laid out in four 64-bit-aligned segments
//! (metadata, L2, L3, L4), so that the classifier can hash and mask it word
//! by word and look it up in stages, as OVS's staged lookup does. A mask is
//! simply another `Flow` whose bits say which bits of a flow matter
//! ([`FlowWildcards`]).
//!
//! Values are stored in host byte order (`nw_src = 0x0a000001` is 10.0.0.1);
//! MACs and IPv6 addresses are byte arrays in wire order.

use bytemuck::{Pod, Zeroable};

/// Number of 32-bit registers (`reg0`..`reg15`), as in OVS.
pub const FLOW_N_REGS: usize = 16;
/// How many VLAN headers a flow tracks (802.1ad outer + 802.1Q inner).
pub const FLOW_MAX_VLAN_HEADERS: usize = 2;
/// How many MPLS label stack entries a flow tracks (OVS's
/// `FLOW_MAX_MPLS_LABELS`): deeper entries stay in the packet, unseen.
pub const FLOW_MAX_MPLS_LABELS: usize = 3;
/// Slots for them in a `Flow`: OVS rounds the array up to an even count,
/// so that the flow stays in whole 64-bit words; the last is always 0.
pub const FLOW_MPLS_LSE_SLOTS: usize = 4;

/// Bytes of Geneve option values a flow carries (OVS has 256; 64 keeps a
/// `Flow` within the 64 words a megaflow's map covers).
pub const TUN_MD_BYTES: usize = 64;
/// How many `tun_metadataN` fields there are.
pub const TUN_METADATA_NUM: usize = 64;

/// `tun_flags` bits, as OVS's `FLOW_TNL_F_*`: OAM is the one OpenFlow
/// sees; the others say how the packet was (or is to be) encapsulated.
pub const FLOW_TNL_F_OAM: u16 = 1 << 0;
pub const FLOW_TNL_F_DONT_FRAGMENT: u16 = 1 << 1;
pub const FLOW_TNL_F_CSUM: u16 = 1 << 2;
pub const FLOW_TNL_F_KEY: u16 = 1 << 3;
/// Every `FLOW_TNL_F_*` bit.
pub const FLOW_TNL_F_MASK: u16 = 0xf;
/// The bits OpenFlow's `tun_flags` reads and writes.
pub const FLOW_TNL_PUB_F_MASK: u16 = FLOW_TNL_F_OAM;

/// `nw_frag` bit: the packet is an IP fragment (first or later).
pub const FLOW_NW_FRAG_ANY: u8 = 1 << 0;
/// `nw_frag` bit: the packet is a fragment with a nonzero offset.
pub const FLOW_NW_FRAG_LATER: u8 = 1 << 1;
/// Both `nw_frag` bits.
pub const FLOW_NW_FRAG_MASK: u8 = FLOW_NW_FRAG_ANY | FLOW_NW_FRAG_LATER;

/// The CFI/DEI bit of a TCI; upcalld (like OVS) uses it as "a tag is present".
pub const VLAN_CFI: u16 = 0x1000;
/// The VID bits of a TCI.
pub const VLAN_VID_MASK: u16 = 0x0fff;
/// The PCP bits of a TCI.
pub const VLAN_PCP_MASK: u16 = 0xe000;
/// Shift of the PCP bits in a TCI.
pub const VLAN_PCP_SHIFT: u16 = 13;

/// One VLAN header. `tci` carries `VLAN_CFI` when the header is present.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
pub struct FlowVlan {
    pub tpid: u16,
    pub tci: u16,
}

/// A packet's flow. Field order defines the lookup stages; see the module
/// docs. `pad*` fields are always zero. Equality and hashing go by words
/// (the struct is plain old data, so that agrees with comparing fields, at
/// a fraction of the cost: megaflow masks are compared on every put).
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct Flow {
    // ---- Metadata (stage 1) ----
    // The tunnel the packet came in by (OVS's `struct flow_tnl`); a
    // packet came from a tunnel when `tun_dst` or `tun_ipv6_dst` is set.
    pub tun_id: u64,
    pub tun_src: u32,
    pub tun_dst: u32,
    pub tun_ipv6_src: [u8; 16],
    pub tun_ipv6_dst: [u8; 16],
    /// `FLOW_TNL_F_*` bits.
    pub tun_flags: u16,
    pub tun_tos: u8,
    pub tun_ttl: u8,
    /// The outer UDP ports (never matched by OpenFlow; `tp_dst` says which
    /// port a tunnel sends to).
    pub tun_tp_src: u16,
    pub tun_tp_dst: u16,
    /// VXLAN Group Based Policy extension.
    pub tun_gbp_id: u16,
    pub tun_gbp_flags: u8,
    pub pad_tun: u8,
    /// A kernel key's Geneve options as they came, when they are not what
    /// the TLV map would write (options it does not know, another order):
    /// the id of their layout (`crate::tunnel::geneve_layout`), 0 when
    /// none. OVS keeps such options raw ("udpif") for the same purpose:
    /// the megaflow given back to the datapath has them as its key had.
    pub tun_md_layout: u32,
    /// Which `tun_metadataN` are present (bit N), as OVS's
    /// `tun_metadata.present.map`.
    pub tun_md_present: u64,
    /// Geneve option values, each `tun_metadataN` at the place the TLV
    /// map gave it (`crate::tlv`).
    pub tun_md: [u8; TUN_MD_BYTES],
    pub metadata: u64,
    pub regs: [u32; FLOW_N_REGS],
    pub skb_priority: u32,
    pub pkt_mark: u32,
    pub dp_hash: u32,
    /// OpenFlow (= datapath) input port.
    pub in_port: u32,
    pub recirc_id: u32,
    /// `CS_*` bits: the connection tracker's verdict.
    pub ct_state: u8,
    /// IP protocol of the tracked connection's original direction (OVS's
    /// `ct_nw_proto`; with the `ct_nw_*`/`ct_ipv6_*`/`ct_tp_*` fields, the
    /// original direction's tuple).
    pub ct_nw_proto: u8,
    pub ct_zone: u16,
    pub ct_mark: u32,
    /// Output port of the action set, as OVS's `actset_output`.
    pub actset_output: u32,
    pub ct_label: [u8; 16],
    /// The conjunction a second lookup is for (OVS's `conj_id`): 0 in a
    /// packet's flow; the classifier sets it when clauses of conjunction
    /// `id` all matched and looks up again.
    pub conj_id: u32,
    pub pad_md: u32,

    // ---- L2 (stage 2) ----
    pub dl_dst: [u8; 6],
    pub dl_src: [u8; 6],
    pub dl_type: u16,
    pub pad_l2: u16,
    /// Outermost first.
    pub vlans: [FlowVlan; FLOW_MAX_VLAN_HEADERS],
    pub mpls_lse: [u32; FLOW_MPLS_LSE_SLOTS],

    // ---- L3 (stage 3) ----
    /// IPv4 source, or ARP SPA.
    pub nw_src: u32,
    /// IPv4 destination, or ARP TPA.
    pub nw_dst: u32,
    /// Original direction's IPv4 source of the tracked connection.
    pub ct_nw_src: u32,
    pub ct_nw_dst: u32,
    pub ipv6_src: [u8; 16],
    pub ipv6_dst: [u8; 16],
    /// Original direction's IPv6 source of the tracked connection.
    pub ct_ipv6_src: [u8; 16],
    pub ct_ipv6_dst: [u8; 16],
    pub ipv6_label: u32,
    /// `FLOW_NW_FRAG_*` bits.
    pub nw_frag: u8,
    pub nw_tos: u8,
    pub nw_ttl: u8,
    /// IP protocol, or the low 8 bits of the ARP opcode.
    pub nw_proto: u8,

    // ---- L4 (stage 4) ----
    pub nd_target: [u8; 16],
    /// ARP SHA, or ND source link-layer address.
    pub arp_sha: [u8; 6],
    /// ARP THA, or ND target link-layer address.
    pub arp_tha: [u8; 6],
    /// TCP flags (12 bits). For ND, the type of the first link-layer
    /// address option (OVS's `nd_options_type`).
    pub tcp_flags: u16,
    pub pad_l4: u16,
    /// TCP/UDP/SCTP source port, or ICMP type.
    pub tp_src: u16,
    /// TCP/UDP/SCTP destination port, or ICMP code.
    pub tp_dst: u16,
    /// Original direction's transport source port (or ICMP type) of the
    /// tracked connection.
    pub ct_tp_src: u16,
    pub ct_tp_dst: u16,
    /// IGMP group address. For ND, the word after the ICMPv6 checksum
    /// (NA flags; OVS's `nd_reserved`).
    pub igmp_group_ip4: u32,
    pub pad_end: u32,
}

/// How many bytes the tunnel fields take ([`Flow::tunnel_bytes`]).
pub const TUNNEL_LEN: usize = TUNNEL_BYTES.end - TUNNEL_BYTES.start;

/// Where the tunnel fields lie in a `Flow`'s bytes.
const TUNNEL_BYTES: std::ops::Range<usize> =
    std::mem::offset_of!(Flow, tun_id)..std::mem::offset_of!(Flow, metadata);

/// Size of a `Flow` in 64-bit words.
pub const FLOW_U64S: usize = std::mem::size_of::<Flow>() / 8;

const _: () = assert!(std::mem::size_of::<Flow>().is_multiple_of(8));
const _: () = assert!(std::mem::align_of::<Flow>() == 8);

/// Word offsets where the lookup stages end: metadata, L2, L3 (L4 runs to
/// the end). The classifier builds one index per stage.
pub const FLOW_SEGMENT_ENDS: [usize; 3] = [
    std::mem::offset_of!(Flow, dl_dst) / 8,
    std::mem::offset_of!(Flow, nw_src) / 8,
    std::mem::offset_of!(Flow, nd_target) / 8,
];

const _: () = assert!(std::mem::offset_of!(Flow, dl_dst) % 8 == 0);
const _: () = assert!(std::mem::offset_of!(Flow, nw_src) % 8 == 0);
const _: () = assert!(std::mem::offset_of!(Flow, nd_target) % 8 == 0);

impl Default for Flow {
    fn default() -> Flow {
        Flow::zeroed()
    }
}

impl PartialEq for Flow {
    #[inline]
    fn eq(&self, other: &Flow) -> bool {
        self.words() == other.words()
    }
}

impl Eq for Flow {}

impl std::hash::Hash for Flow {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.as_bytes());
    }
}

impl Flow {
    /// The flow as 64-bit words, for hashing and masking.
    #[inline]
    pub fn words(&self) -> &[u64; FLOW_U64S] {
        bytemuck::cast_ref(self)
    }

    /// The flow's bytes, in memory order (for hashing).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::bytes_of(self)
    }

    /// Mutable view of the flow as 64-bit words.
    #[inline]
    pub fn words_mut(&mut self) -> &mut [u64; FLOW_U64S] {
        bytemuck::cast_mut(self)
    }

    /// `self & mask`, word by word.
    #[inline]
    pub fn masked(&self, mask: &Flow) -> Flow {
        let mut out = *self;
        for (o, m) in out.words_mut().iter_mut().zip(mask.words()) {
            *o &= m;
        }
        out
    }

    /// Bitwise OR of `other` into `self`.
    #[inline]
    pub fn or_with(&mut self, other: &Flow) {
        for (o, m) in self.words_mut().iter_mut().zip(other.words()) {
            *o |= m;
        }
    }

    /// True if every bit is zero.
    pub fn is_zero(&self) -> bool {
        self.words().iter().all(|w| *w == 0)
    }

    /// True if `self` and `other` agree on every bit set in `mask`.
    #[inline]
    pub fn equal_under(&self, other: &Flow, mask: &Flow) -> bool {
        self.words()
            .iter()
            .zip(other.words())
            .zip(mask.words())
            .all(|((a, b), m)| (a ^ b) & m == 0)
    }

    /// True if the packet came from a tunnel (OVS's `flow_tnl_dst_is_set`).
    pub fn tnl_dst_is_set(&self) -> bool {
        self.tun_dst != 0 || self.tun_ipv6_dst != [0; 16]
    }

    /// The tunnel's destination as an IPv6 address (IPv4 mapped), OVS's
    /// `flow_tnl_dst`.
    pub fn tnl_dst(&self) -> std::net::Ipv6Addr {
        if self.tun_dst != 0 {
            std::net::Ipv4Addr::from(self.tun_dst).to_ipv6_mapped()
        } else {
            std::net::Ipv6Addr::from(self.tun_ipv6_dst)
        }
    }

    /// The tunnel fields as bytes (from `tun_id` to `tun_md`), for
    /// comparing, saving and restoring a tunnel whole.
    pub fn tunnel_bytes(&self) -> &[u8] {
        &self.as_bytes()[TUNNEL_BYTES]
    }

    /// Copies `other`'s tunnel fields into `self`.
    pub fn copy_tunnel_from(&mut self, other: &Flow) {
        self.set_tunnel_bytes(other.tunnel_bytes());
    }

    /// Sets the tunnel fields from bytes [`Flow::tunnel_bytes`] gave.
    pub fn set_tunnel_bytes(&mut self, bytes: &[u8]) {
        bytemuck::bytes_of_mut(self)[TUNNEL_BYTES].copy_from_slice(bytes);
    }

    /// Zeroes every tunnel field (a packet leaving by a non-tunnel port
    /// has none).
    pub fn clear_tunnel(&mut self) {
        self.tun_id = 0;
        self.tun_src = 0;
        self.tun_dst = 0;
        self.tun_ipv6_src = [0; 16];
        self.tun_ipv6_dst = [0; 16];
        self.tun_flags = 0;
        self.tun_tos = 0;
        self.tun_ttl = 0;
        self.tun_tp_src = 0;
        self.tun_tp_dst = 0;
        self.tun_gbp_id = 0;
        self.tun_gbp_flags = 0;
        self.tun_md_layout = 0;
        self.tun_md_present = 0;
        self.tun_md = [0; TUN_MD_BYTES];
    }

    /// The outermost VLAN's TCI (0 when untagged), like OVS's `vlan_tci`.
    pub fn vlan_tci(&self) -> u16 {
        self.vlans[0].tci
    }

    pub fn is_ip(&self) -> bool {
        self.dl_type == ETH_TYPE_IP
    }

    pub fn is_ipv6(&self) -> bool {
        self.dl_type == ETH_TYPE_IPV6
    }

    pub fn is_ip_any(&self) -> bool {
        self.is_ip() || self.is_ipv6()
    }

    pub fn is_arp(&self) -> bool {
        self.dl_type == ETH_TYPE_ARP || self.dl_type == ETH_TYPE_RARP
    }

    pub fn is_icmpv4(&self) -> bool {
        self.is_ip() && self.nw_proto == IPPROTO_ICMP
    }

    pub fn is_icmpv6(&self) -> bool {
        self.is_ipv6() && self.nw_proto == IPPROTO_ICMPV6
    }

    /// ICMPv6 neighbor solicitation or advertisement (code 0).
    pub fn is_nd(&self) -> bool {
        self.is_icmpv6()
            && self.tp_dst == 0
            && (self.tp_src == ND_NEIGHBOR_SOLICIT || self.tp_src == ND_NEIGHBOR_ADVERT)
    }

    /// Fields of L4 (ports, ICMP type/code) are meaningful: an IP packet that
    /// is not a later fragment.
    pub fn has_l4(&self) -> bool {
        self.is_ip_any() && self.nw_frag & FLOW_NW_FRAG_LATER == 0
    }
}

/// The mask a datapath flow really has for a megaflow `(flow, wc)`: `wc`
/// plus the shape of the VLAN stack, which a datapath key always pins
/// down (its outer EtherType is exact, so a tagged packet never matches an
/// untagged key, and each tag's TPID and presence are part of the key).
/// OVS leaves these out of the megaflow it prints; we install with them.
pub fn datapath_mask(flow: &Flow, wc: &FlowWildcards) -> FlowWildcards {
    let mut m = *wc;
    pin_vlan_stack(flow, &mut m);
    m
}

/// Makes `wc` a datapath mask in place (see [`datapath_mask`]).
pub fn pin_vlan_stack(flow: &Flow, wc: &mut FlowWildcards) {
    for i in 0..FLOW_MAX_VLAN_HEADERS {
        wc.vlans[i].tci |= VLAN_CFI;
        wc.vlans[i].tpid = u16::MAX;
        if flow.vlans[i].tci & VLAN_CFI == 0 {
            break;
        }
    }
}

/// A wildcard mask over a [`Flow`]: a set bit means "this bit was examined
/// and matters". OVS's `struct flow_wildcards`.
pub type FlowWildcards = Flow;

pub const ETH_TYPE_IP: u16 = 0x0800;
pub const ETH_TYPE_ARP: u16 = 0x0806;
pub const ETH_TYPE_RARP: u16 = 0x8035;
pub const ETH_TYPE_IPV6: u16 = 0x86dd;
pub const ETH_TYPE_VLAN_8021Q: u16 = 0x8100;
pub const ETH_TYPE_VLAN_8021AD: u16 = 0x88a8;
pub const ETH_TYPE_MPLS: u16 = 0x8847;
pub const ETH_TYPE_MPLS_MCAST: u16 = 0x8848;
/// Frames whose length field is below this carry 802.2 LLC; OVS gives them
/// this `dl_type` ("no EtherType").
pub const ETH_TYPE_MIN: u16 = 0x0600;
pub const FLOW_DL_TYPE_NONE: u16 = 0x05ff;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_IGMP: u8 = 2;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;

/// `ct_state` bits (OVS's `CS_*`, the same as the kernel's
/// `OVS_CS_F_*`).
pub const CS_NEW: u8 = 0x01;
pub const CS_ESTABLISHED: u8 = 0x02;
pub const CS_RELATED: u8 = 0x04;
pub const CS_REPLY_DIR: u8 = 0x08;
pub const CS_INVALID: u8 = 0x10;
pub const CS_TRACKED: u8 = 0x20;
pub const CS_SRC_NAT: u8 = 0x40;
pub const CS_DST_NAT: u8 = 0x80;

impl Flow {
    /// Forgets the packet's conntrack state (OVS's `flow_clear_conntrack`,
    /// the `ct_clear` action): every `ct_*` field becomes 0.
    pub fn clear_conntrack(&mut self) {
        self.ct_state = 0;
        self.ct_zone = 0;
        self.ct_mark = 0;
        self.ct_label = [0; 16];
        self.ct_nw_proto = 0;
        self.ct_nw_src = 0;
        self.ct_nw_dst = 0;
        self.ct_ipv6_src = [0; 16];
        self.ct_ipv6_dst = [0; 16];
        self.ct_tp_src = 0;
        self.ct_tp_dst = 0;
    }
}

pub const ND_NEIGHBOR_SOLICIT: u16 = 135;
pub const ND_NEIGHBOR_ADVERT: u16 = 136;

/// True for the EtherTypes of 802.1Q and 802.1ad tags.
pub fn eth_type_vlan(t: u16) -> bool {
    t == ETH_TYPE_VLAN_8021Q || t == ETH_TYPE_VLAN_8021AD
}

/// True for MPLS EtherTypes.
pub fn eth_type_mpls(t: u16) -> bool {
    t == ETH_TYPE_MPLS || t == ETH_TYPE_MPLS_MCAST
}

/// An MPLS label stack entry from its parts (OVS's `set_mpls_lse_values`).
pub fn mpls_lse(label: u32, tc: u8, bos: bool, ttl: u8) -> u32 {
    ((label & 0xf_ffff) << 12) | (u32::from(tc & 7) << 9) | (u32::from(bos) << 8) | u32::from(ttl)
}

impl Flow {
    /// Zeroes the L3 and L4 fields (from `nw_src` on), as OVS's
    /// `flow_push_mpls` does for headers hidden under a new label.
    pub fn clear_l3_l4(&mut self) {
        self.words_mut()[FLOW_SEGMENT_ENDS[1]..].fill(0);
    }

    /// How many label stack entries the flow has (OVS's
    /// `flow_count_mpls_labels`): up to the bottom of the stack, or, when
    /// none of the tracked ones is the bottom, the nonzero ones. 0 for a
    /// packet that is not MPLS.
    pub fn mpls_depth(&self) -> usize {
        if !eth_type_mpls(self.dl_type) {
            return 0;
        }
        let lses = &self.mpls_lse[..FLOW_MAX_MPLS_LABELS];
        match lses.iter().position(|l| l & 0x100 != 0) {
            Some(i) => i + 1,
            None => lses.iter().filter(|l| **l != 0).count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_in_order_and_in_range() {
        assert!(FLOW_SEGMENT_ENDS[0] < FLOW_SEGMENT_ENDS[1]);
        assert!(FLOW_SEGMENT_ENDS[1] < FLOW_SEGMENT_ENDS[2]);
        assert!(FLOW_SEGMENT_ENDS[2] < FLOW_U64S);
    }

    #[test]
    fn masking_and_comparing_under_a_mask() {
        let mut a = Flow {
            nw_src: 0x0a00_0001,
            tp_dst: 80,
            ..Flow::default()
        };
        let mask = Flow {
            nw_src: 0xff00_0000,
            ..Flow::default()
        };
        let m = a.masked(&mask);
        assert_eq!(m.nw_src, 0x0a00_0000);
        assert_eq!(m.tp_dst, 0);
        let b = Flow {
            nw_src: 0x0aff_ffff,
            ..Flow::default()
        };
        assert!(a.equal_under(&b, &mask));
        a.nw_src = 0x0b00_0001;
        assert!(!a.equal_under(&b, &mask));
    }
}
