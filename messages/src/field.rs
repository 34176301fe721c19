//! Match fields (OVS's `mf_field`): where each value lives in a [`Flow`]
//! (here), and the one table of their names, NXM/OXM headers, widths,
//! masks, writability and prerequisites ([`table`]).
//!
//! Values travel as `u128` (right-aligned): a MAC is its 48 bits, an IPv6
//! address its 128 bits in network order, a VLAN VID its 12 bits.

use crate::flow::*;

mod table;

pub use table::{
    by_field, by_name, by_subfield_name, ones, prereqs_hold, unmapped_tun_metadata, FieldInfo,
    NxmHeader, Syntax, EXPERIMENTER, FIELDS, NXM_NX, NXM_OF, OXM_OF,
};

/// A match field. Register fields carry their index. From `EthSrc` on,
/// declared in OVS's meta-flow order (`Ord` follows it there).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    InPort,
    Metadata,
    Reg(u8),
    /// `xregN`: 64 bits, `reg(2N)` the high half and `reg(2N+1)` the low.
    XReg(u8),
    /// `xxregN`: 128 bits over `reg(4N)` (highest) to `reg(4N+3)`.
    XxReg(u8),
    /// The output port the action set holds (OVS's `actset_output`;
    /// `port::UNSET` when it has none). Read-only.
    ActsetOutput,
    TunId,
    TunSrc,
    TunDst,
    TunIpv6Src,
    TunIpv6Dst,
    /// The OpenFlow-visible `tun_flags` bits (OAM).
    TunFlags,
    /// Read-only: set by the tunnel a packet came in by.
    TunTos,
    TunTtl,
    TunGbpId,
    TunGbpFlags,
    /// `tun_metadata{idx}`, `len` bytes at `off` of `Flow::tun_md`, as the
    /// TLV map placed it (`crate::tlv`).
    TunMetadata {
        idx: u8,
        off: u8,
        len: u8,
    },
    PktMark,
    SkbPriority,
    /// The conjunction id a rule's second lookup matches (OVS's `conj_id`).
    ConjId,
    RecircId,
    DpHash,
    CtState,
    CtZone,
    CtMark,
    CtLabel,
    /// The tracked connection's original-direction tuple (read-only).
    CtNwSrc,
    CtNwDst,
    CtIpv6Src,
    CtIpv6Dst,
    CtNwProto,
    CtTpSrc,
    CtTpDst,
    EthSrc,
    EthDst,
    EthType,
    /// OpenFlow 1.0's 16-bit TCI, CFI bit meaning "tagged".
    VlanTci,
    /// OXM `vlan_vid`: 12 VID bits plus 0x1000 ("present").
    VlanVid,
    /// NXM `dl_vlan`: just the 12 VID bits of a tagged packet.
    DlVlan,
    VlanPcp,
    MplsLabel,
    MplsTc,
    MplsBos,
    MplsTtl,
    Ipv4Src,
    Ipv4Dst,
    Ipv6Src,
    Ipv6Dst,
    Ipv6Label,
    IpProto,
    /// The 6 DSCP bits (`nw_tos >> 2`).
    IpDscp,
    /// The whole TOS byte's DSCP bits in place (`nw_tos & 0xfc`), NXM `nw_tos`.
    NwTos,
    IpEcn,
    IpTtl,
    IpFrag,
    ArpOp,
    ArpSpa,
    ArpTpa,
    ArpSha,
    ArpTha,
    TcpSrc,
    TcpDst,
    TcpFlags,
    UdpSrc,
    UdpDst,
    SctpSrc,
    SctpDst,
    IcmpType,
    IcmpCode,
    Icmpv6Type,
    Icmpv6Code,
    NdTarget,
    NdSll,
    NdTll,
}

fn mac_to_u128(m: [u8; 6]) -> u128 {
    m.iter().fold(0u128, |acc, b| (acc << 8) | *b as u128)
}

fn u128_to_mac(v: u128) -> [u8; 6] {
    let b = (v as u64).to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

/// Registers `first..first + n` read as one number, the first the most
/// significant (OVS's `flow_get_xreg`, `flow_get_xxreg`).
fn regs_get(flow: &Flow, first: usize, n: usize) -> u128 {
    flow.regs[first..first + n]
        .iter()
        .fold(0u128, |acc, r| (acc << 32) | *r as u128)
}

fn regs_set(flow: &mut Flow, first: usize, n: usize, v: u128) {
    for (k, r) in flow.regs[first..first + n].iter_mut().enumerate() {
        *r = (v >> (32 * (n - 1 - k))) as u32;
    }
}

/// Prerequisites of a field, as OVS's `mf_prereqs`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prereq {
    None,
    Vlan,
    Mpls,
    Arp,
    Ip,
    Ipv6,
    IpAny,
    Tcp,
    Udp,
    Sctp,
    Icmpv4,
    Icmpv6,
    Nd,
    NdSolicit,
    NdAdvert,
    /// A valid conntrack entry (OVS's `MFP_CT_VALID`): `ct_state` has
    /// `new`, `est` or `rpl`.
    CtValid,
}

impl Field {
    /// Width of the field's value in bits: the widest of its names in the
    /// table.
    pub fn n_bits(self) -> u32 {
        table::field_bits(self)
    }

    /// All-ones value of the field's width.
    pub fn full_mask(self) -> u128 {
        let n = self.n_bits();
        if n == 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        }
    }

    /// What must be true of a flow for this field to exist: the
    /// prerequisites of the name it prints under.
    pub fn prereq(self) -> Prereq {
        by_field(self).prereq
    }

    /// The field's value in `flow`.
    pub fn get(self, flow: &Flow) -> u128 {
        use Field::*;
        match self {
            InPort => flow.in_port as u128,
            Metadata => flow.metadata as u128,
            Reg(i) => flow.regs[i as usize] as u128,
            XReg(i) => regs_get(flow, 2 * i as usize, 2),
            XxReg(i) => regs_get(flow, 4 * i as usize, 4),
            ActsetOutput => flow.actset_output as u128,
            TunId => flow.tun_id as u128,
            TunSrc => flow.tun_src as u128,
            TunDst => flow.tun_dst as u128,
            TunIpv6Src => u128::from_be_bytes(flow.tun_ipv6_src),
            TunIpv6Dst => u128::from_be_bytes(flow.tun_ipv6_dst),
            TunFlags => (flow.tun_flags & FLOW_TNL_PUB_F_MASK) as u128,
            TunTos => flow.tun_tos as u128,
            TunTtl => flow.tun_ttl as u128,
            TunGbpId => flow.tun_gbp_id as u128,
            TunGbpFlags => flow.tun_gbp_flags as u128,
            TunMetadata { off, len, .. } => {
                let (off, len) = (off as usize, len as usize);
                flow.tun_md[off..off + len]
                    .iter()
                    .fold(0u128, |acc, b| (acc << 8) | *b as u128)
            }
            PktMark => flow.pkt_mark as u128,
            SkbPriority => flow.skb_priority as u128,
            ConjId => flow.conj_id as u128,
            RecircId => flow.recirc_id as u128,
            DpHash => flow.dp_hash as u128,
            CtState => flow.ct_state as u128,
            CtZone => flow.ct_zone as u128,
            CtMark => flow.ct_mark as u128,
            CtLabel => u128::from_be_bytes(flow.ct_label),
            CtNwSrc => flow.ct_nw_src as u128,
            CtNwDst => flow.ct_nw_dst as u128,
            CtIpv6Src => u128::from_be_bytes(flow.ct_ipv6_src),
            CtIpv6Dst => u128::from_be_bytes(flow.ct_ipv6_dst),
            CtNwProto => flow.ct_nw_proto as u128,
            CtTpSrc => flow.ct_tp_src as u128,
            CtTpDst => flow.ct_tp_dst as u128,
            EthSrc => mac_to_u128(flow.dl_src),
            EthDst => mac_to_u128(flow.dl_dst),
            EthType => flow.dl_type as u128,
            VlanTci => flow.vlans[0].tci as u128,
            VlanVid => (flow.vlans[0].tci & (VLAN_VID_MASK | VLAN_CFI)) as u128,
            DlVlan => (flow.vlans[0].tci & VLAN_VID_MASK) as u128,
            VlanPcp => (flow.vlans[0].tci >> VLAN_PCP_SHIFT) as u128,
            MplsLabel => (flow.mpls_lse[0] >> 12) as u128,
            MplsTc => ((flow.mpls_lse[0] >> 9) & 7) as u128,
            MplsBos => ((flow.mpls_lse[0] >> 8) & 1) as u128,
            MplsTtl => (flow.mpls_lse[0] & 0xff) as u128,
            Ipv4Src | ArpSpa => flow.nw_src as u128,
            Ipv4Dst | ArpTpa => flow.nw_dst as u128,
            Ipv6Src => u128::from_be_bytes(flow.ipv6_src),
            Ipv6Dst => u128::from_be_bytes(flow.ipv6_dst),
            Ipv6Label => flow.ipv6_label as u128,
            IpProto => flow.nw_proto as u128,
            IpDscp => (flow.nw_tos >> 2) as u128,
            NwTos => (flow.nw_tos & 0xfc) as u128,
            IpEcn => (flow.nw_tos & 3) as u128,
            IpTtl => flow.nw_ttl as u128,
            IpFrag => flow.nw_frag as u128,
            ArpOp => flow.nw_proto as u128,
            ArpSha | NdSll => mac_to_u128(flow.arp_sha),
            ArpTha | NdTll => mac_to_u128(flow.arp_tha),
            TcpSrc | UdpSrc | SctpSrc => flow.tp_src as u128,
            TcpDst | UdpDst | SctpDst => flow.tp_dst as u128,
            TcpFlags => flow.tcp_flags as u128,
            IcmpType | Icmpv6Type => (flow.tp_src & 0xff) as u128,
            IcmpCode | Icmpv6Code => (flow.tp_dst & 0xff) as u128,
            NdTarget => u128::from_be_bytes(flow.nd_target),
        }
    }

    /// Stores `value` (truncated to the field's width) into `flow`.
    pub fn set(self, flow: &mut Flow, value: u128) {
        self.set_masked(flow, value, self.full_mask());
    }

    /// Stores the bits of `value` selected by `mask` into `flow`, leaving
    /// the other bits of the field unchanged.
    pub fn set_masked(self, flow: &mut Flow, value: u128, mask: u128) {
        let mask = mask & self.full_mask();
        let merged = (self.get(flow) & !mask) | (value & mask);
        self.store(flow, merged);
    }

    fn store(self, flow: &mut Flow, v: u128) {
        use Field::*;
        if matches!(self, VlanTci | VlanVid | DlVlan | VlanPcp) {
            self.store_vlan(flow, v);
            // A tag that appears gets the 802.1Q TPID, as OVS's
            // `flow_fix_vlan_tpid` gives it.
            let tag = &mut flow.vlans[0];
            if tag.tci & VLAN_CFI != 0 && tag.tpid == 0 {
                tag.tpid = ETH_TYPE_VLAN_8021Q;
            }
            return;
        }
        match self {
            InPort => flow.in_port = v as u32,
            Metadata => flow.metadata = v as u64,
            Reg(i) => flow.regs[i as usize] = v as u32,
            XReg(i) => regs_set(flow, 2 * i as usize, 2, v),
            XxReg(i) => regs_set(flow, 4 * i as usize, 4, v),
            ActsetOutput => flow.actset_output = v as u32,
            TunId => flow.tun_id = v as u64,
            TunSrc => flow.tun_src = v as u32,
            TunDst => flow.tun_dst = v as u32,
            TunIpv6Src => flow.tun_ipv6_src = v.to_be_bytes(),
            TunIpv6Dst => flow.tun_ipv6_dst = v.to_be_bytes(),
            TunFlags => {
                flow.tun_flags =
                    (flow.tun_flags & !FLOW_TNL_PUB_F_MASK) | (v as u16 & FLOW_TNL_PUB_F_MASK)
            }
            TunTos => flow.tun_tos = v as u8,
            TunTtl => flow.tun_ttl = v as u8,
            TunGbpId => flow.tun_gbp_id = v as u16,
            TunGbpFlags => flow.tun_gbp_flags = v as u8,
            // Writing an option makes it present, as OVS's
            // `tun_metadata_write`.
            TunMetadata { idx, off, len } => {
                let (off, len) = (off as usize, len as usize);
                let bytes = v.to_be_bytes();
                flow.tun_md[off..off + len].copy_from_slice(&bytes[16 - len..]);
                flow.tun_md_present |= 1 << idx;
            }
            PktMark => flow.pkt_mark = v as u32,
            SkbPriority => flow.skb_priority = v as u32,
            ConjId => flow.conj_id = v as u32,
            RecircId => flow.recirc_id = v as u32,
            DpHash => flow.dp_hash = v as u32,
            CtState => flow.ct_state = v as u8,
            CtZone => flow.ct_zone = v as u16,
            CtMark => flow.ct_mark = v as u32,
            CtLabel => flow.ct_label = v.to_be_bytes(),
            CtNwSrc => flow.ct_nw_src = v as u32,
            CtNwDst => flow.ct_nw_dst = v as u32,
            CtIpv6Src => flow.ct_ipv6_src = v.to_be_bytes(),
            CtIpv6Dst => flow.ct_ipv6_dst = v.to_be_bytes(),
            CtNwProto => flow.ct_nw_proto = v as u8,
            CtTpSrc => flow.ct_tp_src = v as u16,
            CtTpDst => flow.ct_tp_dst = v as u16,
            EthSrc => flow.dl_src = u128_to_mac(v),
            EthDst => flow.dl_dst = u128_to_mac(v),
            EthType => flow.dl_type = v as u16,
            VlanTci | VlanVid | DlVlan | VlanPcp => unreachable!("stored by store_vlan"),
            MplsLabel => {
                flow.mpls_lse[0] = (flow.mpls_lse[0] & 0xfff) | ((v as u32 & 0xfffff) << 12)
            }
            MplsTc => flow.mpls_lse[0] = (flow.mpls_lse[0] & !(7 << 9)) | ((v as u32 & 7) << 9),
            MplsBos => flow.mpls_lse[0] = (flow.mpls_lse[0] & !(1 << 8)) | ((v as u32 & 1) << 8),
            MplsTtl => flow.mpls_lse[0] = (flow.mpls_lse[0] & !0xff) | (v as u32 & 0xff),
            Ipv4Src | ArpSpa => flow.nw_src = v as u32,
            Ipv4Dst | ArpTpa => flow.nw_dst = v as u32,
            Ipv6Src => flow.ipv6_src = v.to_be_bytes(),
            Ipv6Dst => flow.ipv6_dst = v.to_be_bytes(),
            Ipv6Label => flow.ipv6_label = v as u32 & 0xfffff,
            IpProto | ArpOp => flow.nw_proto = v as u8,
            IpDscp => flow.nw_tos = (flow.nw_tos & 3) | ((v as u8) << 2),
            NwTos => flow.nw_tos = (flow.nw_tos & 3) | (v as u8 & 0xfc),
            IpEcn => flow.nw_tos = (flow.nw_tos & 0xfc) | (v as u8 & 3),
            IpTtl => flow.nw_ttl = v as u8,
            IpFrag => flow.nw_frag = v as u8 & FLOW_NW_FRAG_MASK,
            ArpSha | NdSll => flow.arp_sha = u128_to_mac(v),
            ArpTha | NdTll => flow.arp_tha = u128_to_mac(v),
            TcpSrc | UdpSrc | SctpSrc => flow.tp_src = v as u16,
            TcpDst | UdpDst | SctpDst => flow.tp_dst = v as u16,
            TcpFlags => flow.tcp_flags = v as u16 & 0x0fff,
            IcmpType | Icmpv6Type => flow.tp_src = v as u16 & 0xff,
            IcmpCode | Icmpv6Code => flow.tp_dst = v as u16 & 0xff,
            NdTarget => flow.nd_target = v.to_be_bytes(),
        }
    }

    fn store_vlan(self, flow: &mut Flow, v: u128) {
        let tci = &mut flow.vlans[0].tci;
        let v = v as u16;
        *tci = match self {
            Field::VlanTci => v,
            Field::VlanVid => (*tci & VLAN_PCP_MASK) | (v & (VLAN_VID_MASK | VLAN_CFI)),
            Field::DlVlan => (*tci & !VLAN_VID_MASK) | (v & VLAN_VID_MASK),
            _ => (*tci & !VLAN_PCP_MASK) | ((v & 7) << VLAN_PCP_SHIFT),
        };
    }

    /// True if `flow` satisfies this field's prerequisites.
    pub fn prereqs_ok(self, flow: &Flow) -> bool {
        prereq_ok(self.prereq(), flow)
    }
}

/// True if `flow` satisfies `p`.
pub fn prereq_ok(p: Prereq, flow: &Flow) -> bool {
    match p {
        Prereq::None => true,
        Prereq::Vlan => flow.vlans[0].tci & VLAN_CFI != 0,
        Prereq::Mpls => eth_type_mpls(flow.dl_type),
        Prereq::Arp => flow.is_arp(),
        Prereq::Ip => flow.is_ip(),
        Prereq::Ipv6 => flow.is_ipv6(),
        Prereq::IpAny => flow.is_ip_any(),
        Prereq::Tcp => flow.is_ip_any() && flow.nw_proto == IPPROTO_TCP,
        Prereq::Udp => flow.is_ip_any() && flow.nw_proto == IPPROTO_UDP,
        Prereq::Sctp => flow.is_ip_any() && flow.nw_proto == IPPROTO_SCTP,
        Prereq::Icmpv4 => flow.is_icmpv4(),
        Prereq::Icmpv6 => flow.is_icmpv6(),
        Prereq::Nd => flow.is_nd(),
        Prereq::NdSolicit => flow.is_nd() && flow.tp_src == ND_NEIGHBOR_SOLICIT,
        Prereq::NdAdvert => flow.is_nd() && flow.tp_src == ND_NEIGHBOR_ADVERT,
        Prereq::CtValid => flow.ct_state & (CS_NEW | CS_ESTABLISHED | CS_REPLY_DIR) != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_and_get_round_trip_per_field() {
        let fields = [
            (Field::EthSrc, 0x0200_0000_00aa_u128),
            (Field::Ipv4Dst, 0x0a09_0909),
            (Field::Ipv6Src, 0x2001_0db8_0000_0000_0000_0000_0000_0001),
            (Field::VlanVid, 0x1000 | 42),
            (Field::VlanPcp, 5),
            (Field::IpDscp, 0x2e),
            (Field::Reg(3), 0xdead_beef),
            (Field::XReg(3), 0x0123_4567_89ab_cdef),
            (Field::XxReg(1), 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210),
            (Field::TcpFlags, 0x012),
        ];
        for (f, v) in fields {
            let mut flow = Flow::default();
            f.set(&mut flow, v);
            assert_eq!(f.get(&flow), v, "{f:?}");
        }
    }

    #[test]
    fn extended_registers_are_views_of_the_32_bit_ones() {
        let mut flow = Flow::default();
        Field::XReg(1).set(&mut flow, 0x1111_1111_2222_2222);
        assert_eq!((flow.regs[2], flow.regs[3]), (0x1111_1111, 0x2222_2222));
        Field::XxReg(0).set_masked(&mut flow, 7 << 64, 0xff << 64);
        assert_eq!(flow.regs[1], 7);
        assert_eq!(Field::XReg(0).get(&flow), 7);
    }

    #[test]
    fn masked_set_keeps_other_bits() {
        let mut flow = Flow {
            metadata: 0xffff_0000,
            ..Flow::default()
        };
        Field::Metadata.set_masked(&mut flow, 0x1234, 0xffff);
        assert_eq!(flow.metadata, 0xffff_1234);
    }
}
