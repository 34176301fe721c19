//! The field table: one entry per name OVS gives a match field
//! (`lib/meta-flow.h`): the name and alias `ovs-ofctl` accepts, the
//! NXM/OXM names `load:` takes and the headers OpenFlow carries, how a
//! value is written, its width, and what OVS allows (masks, writes,
//! prerequisites). Everything else about fields is derived from it: a
//! [`Field`]'s width and prerequisites ([`Field::n_bits`],
//! [`Field::prereq`]), the name and header lookups, the NXM/OXM codec's
//! header list.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use rustc_hash::FxBuildHasher;

use super::{prereq_ok, Field, Prereq};
use crate::flow::{Flow, FLOW_NW_FRAG_LATER, TUN_METADATA_NUM};

/// How a field's value is written and printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// An integer, printed in decimal.
    Decimal,
    /// An integer, printed in hexadecimal.
    Hex,
    /// A MAC address.
    Ethernet,
    /// A dotted IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// An OpenFlow port: a number or a name such as `LOCAL`.
    Port,
    /// `no`, `yes`, `first`, `later`, `not_later`.
    Frag,
    /// TCP flag names (`syn|ack`, `+syn-ack`) or numbers.
    TcpFlags,
    /// Conntrack state flag names (`+trk-new`) or numbers.
    CtState,
    /// Tunnel flag names (`+oam`) or numbers.
    TunFlags,
}

/// NXM class of OpenFlow 1.0's fields (`NXM_OF_*`).
pub const NXM_OF: u16 = 0x0000;
/// NXM class of Nicira's extension fields (`NXM_NX_*`).
pub const NXM_NX: u16 = 0x0001;
/// OXM class of OpenFlow 1.2+'s basic fields (`OXM_OF_*`).
pub const OXM_OF: u16 = 0x8000;
/// OXM class of OpenFlow 1.5's packet registers (`OXM_OF_PKT_REG*`).
pub const OXM_PKT_REGS: u16 = 0x8001;
/// OXM experimenter class (here always ONF's, `ONFOXM_ET_*`).
pub const EXPERIMENTER: u16 = 0xffff;

/// One match field's NXM/OXM header: class, field number, value length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NxmHeader {
    pub class: u16,
    pub field: u8,
    /// Value length in bytes (the mask, when present, has as many).
    pub len: u8,
}

impl NxmHeader {
    pub const fn new(class: u16, field: u8, len: u8) -> Self {
        NxmHeader { class, field, len }
    }

    /// The 32-bit header, with the has-mask bit and doubled length when
    /// `masked`. Experimenter headers carry 4 more bytes (the id).
    pub fn raw(self, masked: bool) -> u32 {
        let extra = if self.class == EXPERIMENTER { 4 } else { 0 };
        let len = u32::from(self.len) * if masked { 2 } else { 1 } + extra;
        (u32::from(self.class) << 16)
            | (u32::from(self.field) << 9)
            | (u32::from(masked) << 8)
            | len
    }
}

/// One match field as OVS names it: one entry of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// OVS's name, the one it prints (`eth_src`).
    pub name: &'static str,
    /// The other name OVS accepts (`dl_src`).
    pub alias: Option<&'static str>,
    /// Where the value lives in a `Flow`.
    pub field: Field,
    pub syntax: Syntax,
    /// Width of the value in bytes, as OVS parses it (bounds integers) and
    /// as NXM/OXM carry it.
    pub n_bytes: u8,
    /// Width of the field in bits (bounds values and subfields).
    pub n_bits: u16,
    /// Whether a match may give an arbitrary bit mask.
    pub maskable: bool,
    /// Whether `set_field` and `load` may write it.
    pub writable: bool,
    /// What a flow must be for the field to exist (OVS's `mf_prereqs`).
    pub prereq: Prereq,
    /// Nicira extension name (`NXM_OF_ETH_SRC`), preferred when printing.
    pub nxm: Option<&'static str>,
    /// OpenFlow 1.2+ name (`OXM_OF_ETH_SRC`).
    pub oxm: Option<&'static str>,
    /// The header of `nxm` (class and number), where upcalld codes it.
    pub nxm_header: Option<NxmHeader>,
    /// The header of `oxm`, where upcalld codes it.
    pub oxm_header: Option<NxmHeader>,
}

impl FieldInfo {
    /// The name `load:` prints for the field: NXM if it has one, else OXM,
    /// else the plain name.
    pub fn subfield_name(&self) -> &'static str {
        self.nxm.or(self.oxm).unwrap_or(self.name)
    }

    /// All-ones value of the field's byte width.
    pub fn byte_mask(&self) -> u128 {
        ones(u32::from(self.n_bytes) * 8)
    }

    /// Width of the whole field as a subfield (`NAME[]`): OVS's `vlan_vid`
    /// is 12 bits there (the "present" bit only travels in values).
    pub fn subfield_bits(&self) -> u32 {
        match self.field {
            Field::VlanVid => 12,
            _ => u32::from(self.n_bits),
        }
    }

    /// All-ones value of the field's bit width.
    pub fn bit_mask(&self) -> u128 {
        ones(u32::from(self.n_bits))
    }

    // The table's vocabulary: an entry starts as `f(name, field, syntax,
    // bytes, bits)` (no alias, no mask, read-only, no prerequisite, no
    // NXM/OXM name) and states what differs.

    const fn alias(mut self, alias: &'static str) -> Self {
        self.alias = Some(alias);
        self
    }

    const fn maskable(mut self) -> Self {
        self.maskable = true;
        self
    }

    const fn writable(mut self) -> Self {
        self.writable = true;
        self
    }

    const fn needs(mut self, prereq: Prereq) -> Self {
        self.prereq = prereq;
        self
    }

    /// An NXM name with its header (`class`, `number`; the length is the
    /// field's bytes).
    const fn nxm(mut self, name: &'static str, class: u16, number: u8) -> Self {
        self.nxm = Some(name);
        self.nxm_header = Some(NxmHeader::new(class, number, self.n_bytes));
        self
    }

    /// An NXM name that subfields may use; upcalld does not code its header.
    const fn nxm_name(mut self, name: &'static str) -> Self {
        self.nxm = Some(name);
        self
    }

    /// An OXM name with its header.
    const fn oxm(mut self, name: &'static str, class: u16, number: u8) -> Self {
        self.oxm = Some(name);
        self.oxm_header = Some(NxmHeader::new(class, number, self.n_bytes));
        self
    }
}

/// True if `flow` meets `p` as OVS's `mf_are_prereqs_ok` judges it: on
/// top of [`prereq_ok`], transport fields do not exist in a later
/// fragment.
pub fn prereqs_hold(p: Prereq, flow: &Flow) -> bool {
    let l4 = matches!(
        p,
        Prereq::Tcp | Prereq::Udp | Prereq::Sctp | Prereq::Icmpv4 | Prereq::Icmpv6
    );
    prereq_ok(p, flow) && !(l4 && flow.nw_frag & FLOW_NW_FRAG_LATER != 0)
}

/// `n` low bits set.
pub fn ones(n: u32) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

/// A table entry: see [`FieldInfo`]'s builder methods.
const fn f(
    name: &'static str,
    field: Field,
    syntax: Syntax,
    n_bytes: u8,
    n_bits: u16,
) -> FieldInfo {
    FieldInfo {
        name,
        alias: None,
        field,
        syntax,
        n_bytes,
        n_bits,
        maskable: false,
        writable: false,
        prereq: Prereq::None,
        nxm: None,
        oxm: None,
        nxm_header: None,
        oxm_header: None,
    }
}

const fn reg(i: u8, name: &'static str, nxm: &'static str) -> FieldInfo {
    f(name, Field::Reg(i), Syntax::Hex, 4, 32)
        .maskable()
        .writable()
        .nxm(nxm, NXM_NX, i)
}

const fn xreg(i: u8, name: &'static str, oxm: &'static str) -> FieldInfo {
    f(name, Field::XReg(i), Syntax::Hex, 8, 64)
        .maskable()
        .writable()
        .oxm(oxm, OXM_PKT_REGS, i)
}

const fn xxreg(i: u8, name: &'static str, nxm: &'static str) -> FieldInfo {
    f(name, Field::XxReg(i), Syntax::Hex, 16, 128)
        .maskable()
        .writable()
        .nxm(nxm, NXM_NX, 111 + i)
}

use Prereq as P;
use Syntax as S;

/// Every field upcalld knows. Where two names share a `Field`, the first
/// one is the name printed for it and gives the `Field` its
/// prerequisites; the `Field`'s width is the widest of its names'.
#[rustfmt::skip]
pub static FIELDS: &[FieldInfo] = &[
    f("in_port", Field::InPort, S::Port, 2, 16).writable().nxm("NXM_OF_IN_PORT", NXM_OF, 0),
    f("in_port_oxm", Field::InPort, S::Port, 4, 32).writable().oxm("OXM_OF_IN_PORT", OXM_OF, 0),
    f("metadata", Field::Metadata, S::Hex, 8, 64).maskable().writable().oxm("OXM_OF_METADATA", OXM_OF, 2),
    reg(0, "reg0", "NXM_NX_REG0"),
    reg(1, "reg1", "NXM_NX_REG1"),
    reg(2, "reg2", "NXM_NX_REG2"),
    reg(3, "reg3", "NXM_NX_REG3"),
    reg(4, "reg4", "NXM_NX_REG4"),
    reg(5, "reg5", "NXM_NX_REG5"),
    reg(6, "reg6", "NXM_NX_REG6"),
    reg(7, "reg7", "NXM_NX_REG7"),
    reg(8, "reg8", "NXM_NX_REG8"),
    reg(9, "reg9", "NXM_NX_REG9"),
    reg(10, "reg10", "NXM_NX_REG10"),
    reg(11, "reg11", "NXM_NX_REG11"),
    reg(12, "reg12", "NXM_NX_REG12"),
    reg(13, "reg13", "NXM_NX_REG13"),
    reg(14, "reg14", "NXM_NX_REG14"),
    reg(15, "reg15", "NXM_NX_REG15"),
    xreg(0, "xreg0", "OXM_OF_PKT_REG0"),
    xreg(1, "xreg1", "OXM_OF_PKT_REG1"),
    xreg(2, "xreg2", "OXM_OF_PKT_REG2"),
    xreg(3, "xreg3", "OXM_OF_PKT_REG3"),
    xreg(4, "xreg4", "OXM_OF_PKT_REG4"),
    xreg(5, "xreg5", "OXM_OF_PKT_REG5"),
    xreg(6, "xreg6", "OXM_OF_PKT_REG6"),
    xreg(7, "xreg7", "OXM_OF_PKT_REG7"),
    xxreg(0, "xxreg0", "NXM_NX_XXREG0"),
    xxreg(1, "xxreg1", "NXM_NX_XXREG1"),
    xxreg(2, "xxreg2", "NXM_NX_XXREG2"),
    xxreg(3, "xxreg3", "NXM_NX_XXREG3"),
    f("actset_output", Field::ActsetOutput, S::Port, 4, 32).oxm("ONFOXM_ET_ACTSET_OUTPUT", EXPERIMENTER, 43),
    f("tun_id", Field::TunId, S::Hex, 8, 64).alias("tunnel_id").maskable().writable().nxm("NXM_NX_TUN_ID", NXM_NX, 16).oxm("OXM_OF_TUNNEL_ID", OXM_OF, 38),
    f("tun_src", Field::TunSrc, S::Ipv4, 4, 32).maskable().writable().nxm("NXM_NX_TUN_IPV4_SRC", NXM_NX, 31),
    f("tun_dst", Field::TunDst, S::Ipv4, 4, 32).maskable().writable().nxm("NXM_NX_TUN_IPV4_DST", NXM_NX, 32),
    f("tun_ipv6_src", Field::TunIpv6Src, S::Ipv6, 16, 128).maskable().writable().nxm("NXM_NX_TUN_IPV6_SRC", NXM_NX, 109),
    f("tun_ipv6_dst", Field::TunIpv6Dst, S::Ipv6, 16, 128).maskable().writable().nxm("NXM_NX_TUN_IPV6_DST", NXM_NX, 110),
    f("tun_gbp_id", Field::TunGbpId, S::Decimal, 2, 16).maskable().writable().nxm("NXM_NX_TUN_GBP_ID", NXM_NX, 38),
    f("tun_gbp_flags", Field::TunGbpFlags, S::Hex, 1, 8).maskable().writable().nxm("NXM_NX_TUN_GBP_FLAGS", NXM_NX, 39),
    f("tun_flags", Field::TunFlags, S::TunFlags, 2, 1).maskable().writable().nxm("NXM_NX_TUN_FLAGS", NXM_NX, 104),
    // Read-only, and with no NXM code: a trace flow sets them, a rule
    // cannot match them.
    f("tun_tos", Field::TunTos, S::Decimal, 1, 8),
    f("tun_ttl", Field::TunTtl, S::Decimal, 1, 8),
    f("pkt_mark", Field::PktMark, S::Hex, 4, 32).maskable().writable().nxm("NXM_NX_PKT_MARK", NXM_NX, 33),
    f("skb_priority", Field::SkbPriority, S::Hex, 4, 32),
    f("conj_id", Field::ConjId, S::Decimal, 4, 32).nxm("NXM_NX_CONJ_ID", NXM_NX, 37),
    f("recirc_id", Field::RecircId, S::Decimal, 4, 32).nxm("NXM_NX_RECIRC_ID", NXM_NX, 36),
    f("dp_hash", Field::DpHash, S::Hex, 4, 32).maskable().nxm("NXM_NX_DP_HASH", NXM_NX, 35),
    f("ct_state", Field::CtState, S::CtState, 4, 32).maskable().nxm("NXM_NX_CT_STATE", NXM_NX, 105),
    f("ct_zone", Field::CtZone, S::Hex, 2, 16).nxm("NXM_NX_CT_ZONE", NXM_NX, 106),
    // Writable only inside ct's exec (checked there).
    f("ct_mark", Field::CtMark, S::Hex, 4, 32).maskable().writable().nxm("NXM_NX_CT_MARK", NXM_NX, 107),
    f("ct_label", Field::CtLabel, S::Hex, 16, 128).maskable().writable().nxm("NXM_NX_CT_LABEL", NXM_NX, 108),
    f("ct_nw_src", Field::CtNwSrc, S::Ipv4, 4, 32).maskable().needs(P::CtValid).nxm("NXM_NX_CT_NW_SRC", NXM_NX, 120),
    f("ct_nw_dst", Field::CtNwDst, S::Ipv4, 4, 32).maskable().needs(P::CtValid).nxm("NXM_NX_CT_NW_DST", NXM_NX, 121),
    f("ct_ipv6_src", Field::CtIpv6Src, S::Ipv6, 16, 128).maskable().needs(P::CtValid).nxm("NXM_NX_CT_IPV6_SRC", NXM_NX, 122),
    f("ct_ipv6_dst", Field::CtIpv6Dst, S::Ipv6, 16, 128).maskable().needs(P::CtValid).nxm("NXM_NX_CT_IPV6_DST", NXM_NX, 123),
    f("ct_nw_proto", Field::CtNwProto, S::Decimal, 1, 8).needs(P::CtValid).nxm("NXM_NX_CT_NW_PROTO", NXM_NX, 119),
    f("ct_tp_src", Field::CtTpSrc, S::Decimal, 2, 16).maskable().needs(P::CtValid).nxm("NXM_NX_CT_TP_SRC", NXM_NX, 124),
    f("ct_tp_dst", Field::CtTpDst, S::Decimal, 2, 16).maskable().needs(P::CtValid).nxm("NXM_NX_CT_TP_DST", NXM_NX, 125),
    f("eth_src", Field::EthSrc, S::Ethernet, 6, 48).alias("dl_src").maskable().writable().nxm("NXM_OF_ETH_SRC", NXM_OF, 2).oxm("OXM_OF_ETH_SRC", OXM_OF, 4),
    f("eth_dst", Field::EthDst, S::Ethernet, 6, 48).alias("dl_dst").maskable().writable().nxm("NXM_OF_ETH_DST", NXM_OF, 1).oxm("OXM_OF_ETH_DST", OXM_OF, 3),
    f("eth_type", Field::EthType, S::Hex, 2, 16).alias("dl_type").nxm("NXM_OF_ETH_TYPE", NXM_OF, 3).oxm("OXM_OF_ETH_TYPE", OXM_OF, 5),
    f("vlan_tci", Field::VlanTci, S::Hex, 2, 16).maskable().writable().nxm("NXM_OF_VLAN_TCI", NXM_OF, 4),
    f("dl_vlan", Field::DlVlan, S::Decimal, 2, 12),
    f("vlan_vid", Field::VlanVid, S::Decimal, 2, 13).maskable().writable().oxm("OXM_OF_VLAN_VID", OXM_OF, 6),
    f("vlan_pcp", Field::VlanPcp, S::Decimal, 1, 3).writable().needs(P::Vlan).oxm("OXM_OF_VLAN_PCP", OXM_OF, 7),
    f("dl_vlan_pcp", Field::VlanPcp, S::Decimal, 1, 3),
    f("mpls_label", Field::MplsLabel, S::Decimal, 4, 20).writable().needs(P::Mpls).oxm("OXM_OF_MPLS_LABEL", OXM_OF, 34),
    f("mpls_tc", Field::MplsTc, S::Decimal, 1, 3).writable().needs(P::Mpls).oxm("OXM_OF_MPLS_TC", OXM_OF, 35),
    f("mpls_bos", Field::MplsBos, S::Decimal, 1, 1).needs(P::Mpls).oxm("OXM_OF_MPLS_BOS", OXM_OF, 36),
    f("mpls_ttl", Field::MplsTtl, S::Decimal, 1, 8).writable().needs(P::Mpls).nxm("NXM_NX_MPLS_TTL", NXM_NX, 30),
    f("ip_src", Field::Ipv4Src, S::Ipv4, 4, 32).alias("nw_src").maskable().writable().needs(P::Ip).nxm("NXM_OF_IP_SRC", NXM_OF, 7).oxm("OXM_OF_IPV4_SRC", OXM_OF, 11),
    f("ip_dst", Field::Ipv4Dst, S::Ipv4, 4, 32).alias("nw_dst").maskable().writable().needs(P::Ip).nxm("NXM_OF_IP_DST", NXM_OF, 8).oxm("OXM_OF_IPV4_DST", OXM_OF, 12),
    f("ipv6_src", Field::Ipv6Src, S::Ipv6, 16, 128).maskable().writable().needs(P::Ipv6).nxm("NXM_NX_IPV6_SRC", NXM_NX, 19).oxm("OXM_OF_IPV6_SRC", OXM_OF, 26),
    f("ipv6_dst", Field::Ipv6Dst, S::Ipv6, 16, 128).maskable().writable().needs(P::Ipv6).nxm("NXM_NX_IPV6_DST", NXM_NX, 20).oxm("OXM_OF_IPV6_DST", OXM_OF, 27),
    f("ipv6_label", Field::Ipv6Label, S::Hex, 4, 20).maskable().writable().needs(P::Ipv6).nxm("NXM_NX_IPV6_LABEL", NXM_NX, 27).oxm("OXM_OF_IPV6_FLABEL", OXM_OF, 28),
    f("nw_proto", Field::IpProto, S::Decimal, 1, 8).alias("ip_proto").needs(P::IpAny).nxm("NXM_OF_IP_PROTO", NXM_OF, 6).oxm("OXM_OF_IP_PROTO", OXM_OF, 10),
    f("nw_tos", Field::NwTos, S::Decimal, 1, 8).writable().needs(P::IpAny).nxm("NXM_OF_IP_TOS", NXM_OF, 5),
    f("ip_dscp", Field::IpDscp, S::Decimal, 1, 6).writable().needs(P::IpAny).oxm("OXM_OF_IP_DSCP", OXM_OF, 8),
    f("nw_ecn", Field::IpEcn, S::Decimal, 1, 2).alias("ip_ecn").writable().needs(P::IpAny).nxm("NXM_NX_IP_ECN", NXM_NX, 28).oxm("OXM_OF_IP_ECN", OXM_OF, 9),
    f("nw_ttl", Field::IpTtl, S::Decimal, 1, 8).writable().needs(P::IpAny).nxm("NXM_NX_IP_TTL", NXM_NX, 29),
    f("ip_frag", Field::IpFrag, S::Frag, 1, 2).alias("nw_frag").maskable().needs(P::IpAny).nxm("NXM_NX_IP_FRAG", NXM_NX, 26),
    f("arp_op", Field::ArpOp, S::Decimal, 2, 16).writable().needs(P::Arp).nxm("NXM_OF_ARP_OP", NXM_OF, 15).oxm("OXM_OF_ARP_OP", OXM_OF, 21),
    f("arp_spa", Field::ArpSpa, S::Ipv4, 4, 32).maskable().writable().needs(P::Arp).nxm("NXM_OF_ARP_SPA", NXM_OF, 16).oxm("OXM_OF_ARP_SPA", OXM_OF, 22),
    f("arp_tpa", Field::ArpTpa, S::Ipv4, 4, 32).maskable().writable().needs(P::Arp).nxm("NXM_OF_ARP_TPA", NXM_OF, 17).oxm("OXM_OF_ARP_TPA", OXM_OF, 23),
    f("arp_sha", Field::ArpSha, S::Ethernet, 6, 48).maskable().writable().needs(P::Arp).nxm("NXM_NX_ARP_SHA", NXM_NX, 17).oxm("OXM_OF_ARP_SHA", OXM_OF, 24),
    f("arp_tha", Field::ArpTha, S::Ethernet, 6, 48).maskable().writable().needs(P::Arp).nxm("NXM_NX_ARP_THA", NXM_NX, 18).oxm("OXM_OF_ARP_THA", OXM_OF, 25),
    f("tcp_src", Field::TcpSrc, S::Decimal, 2, 16).alias("tp_src").maskable().writable().needs(P::Tcp).nxm("NXM_OF_TCP_SRC", NXM_OF, 9).oxm("OXM_OF_TCP_SRC", OXM_OF, 13),
    f("tcp_dst", Field::TcpDst, S::Decimal, 2, 16).alias("tp_dst").maskable().writable().needs(P::Tcp).nxm("NXM_OF_TCP_DST", NXM_OF, 10).oxm("OXM_OF_TCP_DST", OXM_OF, 14),
    f("tcp_flags", Field::TcpFlags, S::TcpFlags, 2, 12).maskable().needs(P::Tcp).nxm("NXM_NX_TCP_FLAGS", NXM_NX, 34).oxm("ONFOXM_ET_TCP_FLAGS", EXPERIMENTER, 42),
    f("udp_src", Field::UdpSrc, S::Decimal, 2, 16).maskable().writable().needs(P::Udp).nxm("NXM_OF_UDP_SRC", NXM_OF, 11).oxm("OXM_OF_UDP_SRC", OXM_OF, 15),
    f("udp_dst", Field::UdpDst, S::Decimal, 2, 16).maskable().writable().needs(P::Udp).nxm("NXM_OF_UDP_DST", NXM_OF, 12).oxm("OXM_OF_UDP_DST", OXM_OF, 16),
    f("sctp_src", Field::SctpSrc, S::Decimal, 2, 16).maskable().writable().needs(P::Sctp).oxm("OXM_OF_SCTP_SRC", OXM_OF, 17),
    f("sctp_dst", Field::SctpDst, S::Decimal, 2, 16).maskable().writable().needs(P::Sctp).oxm("OXM_OF_SCTP_DST", OXM_OF, 18),
    f("icmp_type", Field::IcmpType, S::Decimal, 1, 8).writable().needs(P::Icmpv4).nxm("NXM_OF_ICMP_TYPE", NXM_OF, 13).oxm("OXM_OF_ICMPV4_TYPE", OXM_OF, 19),
    f("icmp_code", Field::IcmpCode, S::Decimal, 1, 8).writable().needs(P::Icmpv4).nxm("NXM_OF_ICMP_CODE", NXM_OF, 14).oxm("OXM_OF_ICMPV4_CODE", OXM_OF, 20),
    f("icmpv6_type", Field::Icmpv6Type, S::Decimal, 1, 8).writable().needs(P::Icmpv6).nxm("NXM_NX_ICMPV6_TYPE", NXM_NX, 21).oxm("OXM_OF_ICMPV6_TYPE", OXM_OF, 29),
    f("icmpv6_code", Field::Icmpv6Code, S::Decimal, 1, 8).writable().needs(P::Icmpv6).nxm("NXM_NX_ICMPV6_CODE", NXM_NX, 22).oxm("OXM_OF_ICMPV6_CODE", OXM_OF, 30),
    f("nd_target", Field::NdTarget, S::Ipv6, 16, 128).maskable().writable().needs(P::Nd).nxm("NXM_NX_ND_TARGET", NXM_NX, 23).oxm("OXM_OF_IPV6_ND_TARGET", OXM_OF, 31),
    f("nd_sll", Field::NdSll, S::Ethernet, 6, 48).maskable().writable().needs(P::NdSolicit).nxm("NXM_NX_ND_SLL", NXM_NX, 24).oxm("OXM_OF_IPV6_ND_SLL", OXM_OF, 32),
    f("nd_tll", Field::NdTll, S::Ethernet, 6, 48).maskable().writable().needs(P::NdAdvert).nxm("NXM_NX_ND_TLL", NXM_NX, 25).oxm("OXM_OF_IPV6_ND_TLL", OXM_OF, 33),

];

/// What a `Field` is, from its entries in the table.
#[derive(Clone, Copy)]
struct FieldFacts {
    first: &'static FieldInfo,
    n_bits: u32,
}

struct Index {
    by_name: HashMap<&'static str, &'static FieldInfo>,
    by_subfield_name: HashMap<&'static str, &'static FieldInfo>,
    by_field: HashMap<Field, FieldFacts, FxBuildHasher>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut by_name = HashMap::new();
        let mut by_subfield_name = HashMap::new();
        let mut by_field = HashMap::with_hasher(FxBuildHasher);
        for f in FIELDS {
            let facts = by_field.entry(f.field).or_insert(FieldFacts {
                first: f,
                n_bits: 0,
            });
            facts.n_bits = facts.n_bits.max(u32::from(f.n_bits));
            by_name.insert(f.name, f);
            if let Some(a) = f.alias {
                by_name.insert(a, f);
            }
            for n in [f.nxm, f.oxm].into_iter().flatten() {
                by_subfield_name.insert(n, f);
            }
        }
        Index {
            by_name,
            by_subfield_name,
            by_field,
        }
    })
}

/// The field with this name or alias (`eth_src`, `dl_src`), as a match or
/// `set_field` names it. `tun_metadataN` exists once the TLV map in force
/// ([`crate::tlv::current`]) maps it.
pub fn by_name(name: &str) -> Option<&'static FieldInfo> {
    if let Some(n) = name.strip_prefix("tun_metadata") {
        return tun_metadata_by_index(n);
    }
    index().by_name.get(name).copied()
}

fn tun_metadata_by_index(n: &str) -> Option<&'static FieldInfo> {
    let idx = n.parse::<usize>().ok().filter(|i| *i < TUN_METADATA_NUM)?;
    if n != idx.to_string() {
        return None;
    }
    let m = crate::tlv::current().get(idx)?;
    Some(tun_metadata_info(Field::TunMetadata {
        idx: idx as u8,
        off: m.offset,
        len: m.len,
    }))
}

/// For a name that would be a `tun_metadataN` the TLV map does not map,
/// why it cannot be used (OVS refuses such rules with
/// `NXFMFC_INVALID_TLV_FIELD`).
pub fn unmapped_tun_metadata(name: &str) -> Option<String> {
    let base = name.split('[').next().unwrap_or(name);
    let n = base
        .strip_prefix("tun_metadata")
        .or_else(|| base.strip_prefix("NXM_NX_TUN_METADATA"))?;
    let idx = n.parse::<usize>().ok().filter(|i| *i < TUN_METADATA_NUM)?;
    crate::tlv::current().get(idx).is_none().then(|| {
        format!(
            "tun_metadata{idx} has no Geneve option mapped to it (map one first: add-tlv-map {{class=…,type=…,len=…}}->tun_metadata{idx})"
        )
    })
}

/// The `FieldInfo` of one placement of a `tun_metadataN` (made once per
/// placement and kept: there are at most a few hundred).
fn tun_metadata_info(field: Field) -> &'static FieldInfo {
    static MADE: Mutex<Vec<&'static FieldInfo>> = Mutex::new(Vec::new());
    let Field::TunMetadata { idx, len, .. } = field else {
        return &FIELDS[0];
    };
    let mut made = MADE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(f) = made.iter().find(|f| f.field == field) {
        return f;
    }
    let name: &'static str = Box::leak(format!("tun_metadata{idx}").into_boxed_str());
    let nxm: &'static str = Box::leak(format!("NXM_NX_TUN_METADATA{idx}").into_boxed_str());
    let info: &'static FieldInfo = Box::leak(Box::new(
        f(name, field, Syntax::Hex, len, u16::from(len) * 8)
            .maskable()
            .writable()
            .nxm_name(nxm),
    ));
    made.push(info);
    info
}

/// The field with this NXM or OXM name (`NXM_NX_REG0`, `OXM_OF_METADATA`),
/// or, as OVS also allows in subfields, a plain name.
pub fn by_subfield_name(name: &str) -> Option<&'static FieldInfo> {
    if let Some(n) = name.strip_prefix("NXM_NX_TUN_METADATA") {
        return tun_metadata_by_index(n);
    }
    index()
        .by_subfield_name
        .get(name)
        .copied()
        .or_else(|| by_name(name))
}

/// The field OVS prints for `field`.
pub fn by_field(field: Field) -> &'static FieldInfo {
    if let Field::TunMetadata { .. } = field {
        return tun_metadata_info(field);
    }
    index()
        .by_field
        .get(&field)
        .map_or(&FIELDS[0], |facts| facts.first)
}

/// Width in bits of `field`'s value: the widest of its names (`in_port`
/// is 16 bits, `in_port_oxm` 32).
pub(super) fn field_bits(field: Field) -> u32 {
    match field {
        Field::TunMetadata { len, .. } => u32::from(len) * 8,
        _ => index().by_field.get(&field).map_or(0, |facts| facts.n_bits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_aliases_resolve_to_the_same_field() {
        assert_eq!(by_name("dl_src").map(|f| f.name), Some("eth_src"));
        assert_eq!(by_name("tp_dst").map(|f| f.field), Some(Field::TcpDst));
        assert_eq!(by_name("nw_frag").map(|f| f.name), Some("ip_frag"));
        assert!(by_name("bogus_field").is_none());
        assert_eq!(
            by_subfield_name("NXM_NX_REG3").map(|f| f.field),
            Some(Field::Reg(3))
        );
        assert_eq!(
            by_subfield_name("OXM_OF_METADATA").map(|f| f.field),
            Some(Field::Metadata)
        );
        assert_eq!(
            by_subfield_name("reg2").map(|f| f.field),
            Some(Field::Reg(2))
        );
    }

    #[test]
    fn a_fields_width_and_prerequisites_come_from_its_names() {
        // The widest name: `in_port` is 16 bits, `in_port_oxm` 32.
        assert_eq!(Field::InPort.n_bits(), 32);
        assert_eq!(Field::TcpFlags.n_bits(), 12);
        assert_eq!(Field::IpFrag.n_bits(), 2);
        assert_eq!(Field::VlanVid.n_bits(), 13);
        assert_eq!(Field::XxReg(3).n_bits(), 128);
        let md = Field::TunMetadata {
            idx: 3,
            off: 0,
            len: 5,
        };
        assert_eq!((md.n_bits(), md.prereq()), (40, Prereq::None));
        // The first name's prerequisites: `vlan_pcp` needs a tag,
        // `dl_vlan_pcp` (listed after it) does not.
        assert_eq!(Field::VlanPcp.prereq(), Prereq::Vlan);
        assert_eq!(by_name("dl_vlan_pcp").map(|f| f.prereq), Some(Prereq::None));
        assert_eq!(Field::NdSll.prereq(), Prereq::NdSolicit);
        for f in FIELDS {
            assert!(u32::from(f.n_bits) <= f.field.n_bits(), "{}", f.name);
        }
    }

    #[test]
    fn every_field_in_the_table_prints_under_its_first_name() {
        assert_eq!(by_field(Field::VlanPcp).name, "vlan_pcp");
        assert_eq!(by_field(Field::InPort).name, "in_port");
        assert_eq!(by_field(Field::Reg(15)).subfield_name(), "NXM_NX_REG15");
        assert_eq!(by_field(Field::Metadata).subfield_name(), "OXM_OF_METADATA");
        for f in FIELDS {
            assert!(
                u32::from(f.n_bits) <= u32::from(f.n_bytes) * 8,
                "{}",
                f.name
            );
        }
    }
}
