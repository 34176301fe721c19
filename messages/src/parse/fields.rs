//! OVS's names for match fields (`lib/meta-flow.h`): the name and alias
//! that `ovs-ofctl` accepts, the NXM/OXM names that `load:` takes, how a
//! value is written, and what OVS allows (masks, writes, prerequisites).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::field::{prereq_ok, Field, Prereq};
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

/// One match field as OVS names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldInfo {
    /// OVS's name, the one it prints (`eth_src`).
    pub name: &'static str,
    /// The other name OVS accepts (`dl_src`).
    pub alias: Option<&'static str>,
    /// Where the value lives in a `Flow`.
    pub field: Field,
    pub syntax: Syntax,
    /// Width of the value in bytes, as OVS parses it (bounds integers).
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
pub(crate) fn ones(n: u32) -> u128 {
    if n >= 128 {
        u128::MAX
    } else {
        (1u128 << n) - 1
    }
}

#[allow(clippy::too_many_arguments)]
const fn info(
    name: &'static str,
    alias: Option<&'static str>,
    field: Field,
    syntax: Syntax,
    n_bytes: u8,
    n_bits: u16,
    maskable: bool,
    writable: bool,
    prereq: Prereq,
    nxm: Option<&'static str>,
    oxm: Option<&'static str>,
) -> FieldInfo {
    FieldInfo {
        name,
        alias,
        field,
        syntax,
        n_bytes,
        n_bits,
        maskable,
        writable,
        prereq,
        nxm,
        oxm,
    }
}

const fn reg(i: u8, name: &'static str, nxm: &'static str) -> FieldInfo {
    info(
        name,
        None,
        Field::Reg(i),
        Syntax::Hex,
        4,
        32,
        true,
        true,
        Prereq::None,
        Some(nxm),
        None,
    )
}

const fn xreg(i: u8, name: &'static str, oxm: &'static str) -> FieldInfo {
    info(
        name,
        None,
        Field::XReg(i),
        Syntax::Hex,
        8,
        64,
        true,
        true,
        Prereq::None,
        None,
        Some(oxm),
    )
}

const fn xxreg(i: u8, name: &'static str, nxm: &'static str) -> FieldInfo {
    info(
        name,
        None,
        Field::XxReg(i),
        Syntax::Hex,
        16,
        128,
        true,
        true,
        Prereq::None,
        Some(nxm),
        None,
    )
}

use Prereq as P;
use Syntax as S;

/// Every field upcalld parses. Where two names share a `Field`, the first
/// one is the name printed for it.
#[rustfmt::skip]
pub static FIELDS: &[FieldInfo] = &[
    info("in_port", None, Field::InPort, S::Port, 2, 16, false, true, P::None, Some("NXM_OF_IN_PORT"), None),
    info("in_port_oxm", None, Field::InPort, S::Port, 4, 32, false, true, P::None, None, Some("OXM_OF_IN_PORT")),
    info("metadata", None, Field::Metadata, S::Hex, 8, 64, true, true, P::None, None, Some("OXM_OF_METADATA")),
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
    info("actset_output", None, Field::ActsetOutput, S::Port, 4, 32, false, false, P::None, None, Some("ONFOXM_ET_ACTSET_OUTPUT")),
    info("tun_id", Some("tunnel_id"), Field::TunId, S::Hex, 8, 64, true, true, P::None, Some("NXM_NX_TUN_ID"), Some("OXM_OF_TUNNEL_ID")),
    info("tun_src", None, Field::TunSrc, S::Ipv4, 4, 32, true, true, P::None, Some("NXM_NX_TUN_IPV4_SRC"), None),
    info("tun_dst", None, Field::TunDst, S::Ipv4, 4, 32, true, true, P::None, Some("NXM_NX_TUN_IPV4_DST"), None),
    info("tun_ipv6_src", None, Field::TunIpv6Src, S::Ipv6, 16, 128, true, true, P::None, Some("NXM_NX_TUN_IPV6_SRC"), None),
    info("tun_ipv6_dst", None, Field::TunIpv6Dst, S::Ipv6, 16, 128, true, true, P::None, Some("NXM_NX_TUN_IPV6_DST"), None),
    info("tun_gbp_id", None, Field::TunGbpId, S::Decimal, 2, 16, true, true, P::None, Some("NXM_NX_TUN_GBP_ID"), None),
    info("tun_gbp_flags", None, Field::TunGbpFlags, S::Hex, 1, 8, true, true, P::None, Some("NXM_NX_TUN_GBP_FLAGS"), None),
    info("tun_flags", None, Field::TunFlags, S::TunFlags, 2, 1, true, true, P::None, Some("NXM_NX_TUN_FLAGS"), None),
    // Read-only, and with no NXM code: a trace flow sets them, a rule
    // cannot match them.
    info("tun_tos", None, Field::TunTos, S::Decimal, 1, 8, false, false, P::None, None, None),
    info("tun_ttl", None, Field::TunTtl, S::Decimal, 1, 8, false, false, P::None, None, None),
    info("pkt_mark", None, Field::PktMark, S::Hex, 4, 32, true, true, P::None, Some("NXM_NX_PKT_MARK"), None),
    info("skb_priority", None, Field::SkbPriority, S::Hex, 4, 32, false, false, P::None, None, None),
    info("conj_id", None, Field::ConjId, S::Decimal, 4, 32, false, false, P::None, None, None),
    info("recirc_id", None, Field::RecircId, S::Decimal, 4, 32, false, false, P::None, Some("NXM_NX_RECIRC_ID"), None),
    info("dp_hash", None, Field::DpHash, S::Hex, 4, 32, true, false, P::None, Some("NXM_NX_DP_HASH"), None),
    info("ct_state", None, Field::CtState, S::CtState, 4, 32, true, false, P::None, Some("NXM_NX_CT_STATE"), None),
    info("ct_zone", None, Field::CtZone, S::Hex, 2, 16, false, false, P::None, Some("NXM_NX_CT_ZONE"), None),
    // Writable only inside ct's exec (checked there).
    info("ct_mark", None, Field::CtMark, S::Hex, 4, 32, true, true, P::None, Some("NXM_NX_CT_MARK"), None),
    info("ct_label", None, Field::CtLabel, S::Hex, 16, 128, true, true, P::None, Some("NXM_NX_CT_LABEL"), None),
    info("ct_nw_src", None, Field::CtNwSrc, S::Ipv4, 4, 32, true, false, P::CtValid, Some("NXM_NX_CT_NW_SRC"), None),
    info("ct_nw_dst", None, Field::CtNwDst, S::Ipv4, 4, 32, true, false, P::CtValid, Some("NXM_NX_CT_NW_DST"), None),
    info("ct_ipv6_src", None, Field::CtIpv6Src, S::Ipv6, 16, 128, true, false, P::CtValid, Some("NXM_NX_CT_IPV6_SRC"), None),
    info("ct_ipv6_dst", None, Field::CtIpv6Dst, S::Ipv6, 16, 128, true, false, P::CtValid, Some("NXM_NX_CT_IPV6_DST"), None),
    info("ct_nw_proto", None, Field::CtNwProto, S::Decimal, 1, 8, false, false, P::CtValid, Some("NXM_NX_CT_NW_PROTO"), None),
    info("ct_tp_src", None, Field::CtTpSrc, S::Decimal, 2, 16, true, false, P::CtValid, Some("NXM_NX_CT_TP_SRC"), None),
    info("ct_tp_dst", None, Field::CtTpDst, S::Decimal, 2, 16, true, false, P::CtValid, Some("NXM_NX_CT_TP_DST"), None),
    info("eth_src", Some("dl_src"), Field::EthSrc, S::Ethernet, 6, 48, true, true, P::None, Some("NXM_OF_ETH_SRC"), Some("OXM_OF_ETH_SRC")),
    info("eth_dst", Some("dl_dst"), Field::EthDst, S::Ethernet, 6, 48, true, true, P::None, Some("NXM_OF_ETH_DST"), Some("OXM_OF_ETH_DST")),
    info("eth_type", Some("dl_type"), Field::EthType, S::Hex, 2, 16, false, false, P::None, Some("NXM_OF_ETH_TYPE"), Some("OXM_OF_ETH_TYPE")),
    info("vlan_tci", None, Field::VlanTci, S::Hex, 2, 16, true, true, P::None, Some("NXM_OF_VLAN_TCI"), None),
    info("dl_vlan", None, Field::DlVlan, S::Decimal, 2, 12, false, false, P::None, None, None),
    info("vlan_vid", None, Field::VlanVid, S::Decimal, 2, 13, true, true, P::None, None, Some("OXM_OF_VLAN_VID")),
    info("vlan_pcp", None, Field::VlanPcp, S::Decimal, 1, 3, false, true, P::Vlan, None, Some("OXM_OF_VLAN_PCP")),
    info("dl_vlan_pcp", None, Field::VlanPcp, S::Decimal, 1, 3, false, false, P::None, None, None),
    info("mpls_label", None, Field::MplsLabel, S::Decimal, 4, 20, false, true, P::Mpls, None, Some("OXM_OF_MPLS_LABEL")),
    info("mpls_tc", None, Field::MplsTc, S::Decimal, 1, 3, false, true, P::Mpls, None, Some("OXM_OF_MPLS_TC")),
    info("mpls_bos", None, Field::MplsBos, S::Decimal, 1, 1, false, false, P::Mpls, None, Some("OXM_OF_MPLS_BOS")),
    info("mpls_ttl", None, Field::MplsTtl, S::Decimal, 1, 8, false, true, P::Mpls, Some("NXM_NX_MPLS_TTL"), None),
    info("ip_src", Some("nw_src"), Field::Ipv4Src, S::Ipv4, 4, 32, true, true, P::Ip, Some("NXM_OF_IP_SRC"), Some("OXM_OF_IPV4_SRC")),
    info("ip_dst", Some("nw_dst"), Field::Ipv4Dst, S::Ipv4, 4, 32, true, true, P::Ip, Some("NXM_OF_IP_DST"), Some("OXM_OF_IPV4_DST")),
    info("ipv6_src", None, Field::Ipv6Src, S::Ipv6, 16, 128, true, true, P::Ipv6, Some("NXM_NX_IPV6_SRC"), Some("OXM_OF_IPV6_SRC")),
    info("ipv6_dst", None, Field::Ipv6Dst, S::Ipv6, 16, 128, true, true, P::Ipv6, Some("NXM_NX_IPV6_DST"), Some("OXM_OF_IPV6_DST")),
    info("ipv6_label", None, Field::Ipv6Label, S::Hex, 4, 20, true, true, P::Ipv6, Some("NXM_NX_IPV6_LABEL"), Some("OXM_OF_IPV6_FLABEL")),
    info("nw_proto", Some("ip_proto"), Field::IpProto, S::Decimal, 1, 8, false, false, P::IpAny, Some("NXM_OF_IP_PROTO"), Some("OXM_OF_IP_PROTO")),
    info("nw_tos", None, Field::NwTos, S::Decimal, 1, 8, false, true, P::IpAny, Some("NXM_OF_IP_TOS"), None),
    info("ip_dscp", None, Field::IpDscp, S::Decimal, 1, 6, false, true, P::IpAny, None, Some("OXM_OF_IP_DSCP")),
    info("nw_ecn", Some("ip_ecn"), Field::IpEcn, S::Decimal, 1, 2, false, true, P::IpAny, Some("NXM_NX_IP_ECN"), Some("OXM_OF_IP_ECN")),
    info("nw_ttl", None, Field::IpTtl, S::Decimal, 1, 8, false, true, P::IpAny, Some("NXM_NX_IP_TTL"), None),
    info("ip_frag", Some("nw_frag"), Field::IpFrag, S::Frag, 1, 8, true, false, P::IpAny, Some("NXM_NX_IP_FRAG"), None),
    info("arp_op", None, Field::ArpOp, S::Decimal, 2, 16, false, true, P::Arp, Some("NXM_OF_ARP_OP"), Some("OXM_OF_ARP_OP")),
    info("arp_spa", None, Field::ArpSpa, S::Ipv4, 4, 32, true, true, P::Arp, Some("NXM_OF_ARP_SPA"), Some("OXM_OF_ARP_SPA")),
    info("arp_tpa", None, Field::ArpTpa, S::Ipv4, 4, 32, true, true, P::Arp, Some("NXM_OF_ARP_TPA"), Some("OXM_OF_ARP_TPA")),
    info("arp_sha", None, Field::ArpSha, S::Ethernet, 6, 48, true, true, P::Arp, Some("NXM_NX_ARP_SHA"), Some("OXM_OF_ARP_SHA")),
    info("arp_tha", None, Field::ArpTha, S::Ethernet, 6, 48, true, true, P::Arp, Some("NXM_NX_ARP_THA"), Some("OXM_OF_ARP_THA")),
    info("tcp_src", Some("tp_src"), Field::TcpSrc, S::Decimal, 2, 16, true, true, P::Tcp, Some("NXM_OF_TCP_SRC"), Some("OXM_OF_TCP_SRC")),
    info("tcp_dst", Some("tp_dst"), Field::TcpDst, S::Decimal, 2, 16, true, true, P::Tcp, Some("NXM_OF_TCP_DST"), Some("OXM_OF_TCP_DST")),
    info("tcp_flags", None, Field::TcpFlags, S::TcpFlags, 2, 16, true, false, P::Tcp, Some("NXM_NX_TCP_FLAGS"), Some("ONFOXM_ET_TCP_FLAGS")),
    info("udp_src", None, Field::UdpSrc, S::Decimal, 2, 16, true, true, P::Udp, Some("NXM_OF_UDP_SRC"), Some("OXM_OF_UDP_SRC")),
    info("udp_dst", None, Field::UdpDst, S::Decimal, 2, 16, true, true, P::Udp, Some("NXM_OF_UDP_DST"), Some("OXM_OF_UDP_DST")),
    info("sctp_src", None, Field::SctpSrc, S::Decimal, 2, 16, true, true, P::Sctp, None, Some("OXM_OF_SCTP_SRC")),
    info("sctp_dst", None, Field::SctpDst, S::Decimal, 2, 16, true, true, P::Sctp, None, Some("OXM_OF_SCTP_DST")),
    info("icmp_type", None, Field::IcmpType, S::Decimal, 1, 8, false, true, P::Icmpv4, Some("NXM_OF_ICMP_TYPE"), Some("OXM_OF_ICMPV4_TYPE")),
    info("icmp_code", None, Field::IcmpCode, S::Decimal, 1, 8, false, true, P::Icmpv4, Some("NXM_OF_ICMP_CODE"), Some("OXM_OF_ICMPV4_CODE")),
    info("icmpv6_type", None, Field::Icmpv6Type, S::Decimal, 1, 8, false, true, P::Icmpv6, Some("NXM_NX_ICMPV6_TYPE"), Some("OXM_OF_ICMPV6_TYPE")),
    info("icmpv6_code", None, Field::Icmpv6Code, S::Decimal, 1, 8, false, true, P::Icmpv6, Some("NXM_NX_ICMPV6_CODE"), Some("OXM_OF_ICMPV6_CODE")),
    info("nd_target", None, Field::NdTarget, S::Ipv6, 16, 128, true, true, P::Nd, Some("NXM_NX_ND_TARGET"), Some("OXM_OF_IPV6_ND_TARGET")),
    info("nd_sll", None, Field::NdSll, S::Ethernet, 6, 48, true, true, P::NdSolicit, Some("NXM_NX_ND_SLL"), Some("OXM_OF_IPV6_ND_SLL")),
    info("nd_tll", None, Field::NdTll, S::Ethernet, 6, 48, true, true, P::NdAdvert, Some("NXM_NX_ND_TLL"), Some("OXM_OF_IPV6_ND_TLL")),
];

struct Index {
    by_name: HashMap<&'static str, &'static FieldInfo>,
    by_subfield_name: HashMap<&'static str, &'static FieldInfo>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut by_name = HashMap::new();
        let mut by_subfield_name = HashMap::new();
        for f in FIELDS {
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
    let f: &'static FieldInfo = Box::leak(Box::new(info(
        name,
        None,
        field,
        Syntax::Hex,
        len,
        u16::from(len) * 8,
        true,
        true,
        Prereq::None,
        Some(nxm),
        None,
    )));
    made.push(f);
    f
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
    FIELDS
        .iter()
        .find(|f| f.field == field)
        .unwrap_or(&FIELDS[0])
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
