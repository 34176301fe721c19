//! Flow key attributes (`OVS_KEY_ATTR_*`), as the kernel lays them out.
//! The same type carries masks: a mask attribute has the key's layout.
//!
//! Integers follow the uapi: `be16`/`be32` fields are network order on the
//! wire and host order here; `u32`/`u16` attributes are native order.

use netlink_packet_core::{DecodeError, Emitable, Nla, NlaBuffer, Parseable};

use super::consts::*;
use super::nla::*;
use crate::odp::{ArpKey, EthKey, Ipv4Key, Ipv6Key, NdKey, PortsKey};

/// One `OVS_TUNNEL_KEY_ATTR_*` attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TunnelAttr {
    Id(u64),
    Ipv4Src(u32),
    Ipv4Dst(u32),
    Tos(u8),
    Ttl(u8),
    DontFragment,
    Csum,
    TpSrc(u16),
    TpDst(u16),
    Oam,
    /// Geneve options as on the wire: class, type, length in 4-byte
    /// words, then the data, for each option.
    GeneveOpts(Vec<u8>),
    /// VXLAN's Group Based Policy word (`OVS_VXLAN_EXT_GBP` inside
    /// `OVS_TUNNEL_KEY_ATTR_VXLAN_OPTS`): flags << 16 | policy id.
    VxlanGbp(u32),
    Ipv6Src([u8; 16]),
    Ipv6Dst([u8; 16]),
    /// Any other tunnel attribute, kept as received.
    Other(u16, Vec<u8>),
}

/// One `OVS_KEY_ATTR_*` attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyAttr {
    /// The attributes inside a VLAN tag.
    Encap(Vec<KeyAttr>),
    Priority(u32),
    InPort(u32),
    Ethernet(EthKey),
    /// The TCI, `VLAN_CFI` set when a tag is present.
    Vlan(u16),
    EtherType(u16),
    Ipv4(Ipv4Key),
    Ipv6(Ipv6Key),
    Tcp(PortsKey),
    Udp(PortsKey),
    Icmp {
        icmp_type: u8,
        code: u8,
    },
    Icmpv6 {
        icmp_type: u8,
        code: u8,
    },
    Arp(ArpKey),
    Nd(NdKey),
    SkbMark(u32),
    Tunnel(Vec<TunnelAttr>),
    Sctp(PortsKey),
    TcpFlags(u16),
    DpHash(u32),
    RecircId(u32),
    /// Label stack entries, outermost first.
    Mpls(Vec<u32>),
    CtState(u32),
    CtZone(u16),
    CtMark(u32),
    /// The 128-bit label as the kernel stores it (host-order `u128` bytes).
    CtLabels([u8; 16]),
    /// The tracked connection's original direction
    /// (`struct ovs_key_ct_tuple_ipv4`/`_ipv6`).
    CtOrigTuple4(CtTuple4),
    CtOrigTuple6(CtTuple6),
    /// Any attribute this codec does not interpret, kept as received.
    Other(u16, Vec<u8>),
}

/// `struct ovs_key_ct_tuple_ipv4`, ports in host order here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtTuple4 {
    pub src: u32,
    pub dst: u32,
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

/// `struct ovs_key_ct_tuple_ipv6`, ports in host order here.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtTuple6 {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

/// 13 bytes of fields, padded to 16.
const CT_TUPLE4_LEN: usize = 16;
/// 37 bytes of fields, padded to 40.
const CT_TUPLE6_LEN: usize = 40;
const ETH_LEN: usize = 12;
const IPV4_LEN: usize = 12;
const IPV6_LEN: usize = 40;
const PORTS_LEN: usize = 4;
const ICMP_LEN: usize = 2;
/// `struct ovs_key_arp`: 22 bytes of fields, padded to 24.
const ARP_LEN: usize = 24;
const ND_LEN: usize = 28;

fn emit_ports(p: &PortsKey, b: &mut [u8]) {
    b[0..2].copy_from_slice(&p.src.to_be_bytes());
    b[2..4].copy_from_slice(&p.dst.to_be_bytes());
}

fn parse_ports(v: &[u8], what: &str) -> Result<PortsKey, DecodeError> {
    let b: [u8; PORTS_LEN] = fixed(v, what)?;
    Ok(PortsKey {
        src: u16::from_be_bytes([b[0], b[1]]),
        dst: u16::from_be_bytes([b[2], b[3]]),
    })
}

fn mac(b: &[u8]) -> [u8; 6] {
    let mut m = [0u8; 6];
    m.copy_from_slice(&b[..6]);
    m
}

fn ip6(b: &[u8]) -> [u8; 16] {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[..16]);
    a
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl KeyAttr {
    /// The attribute's `OVS_KEY_ATTR_*` type.
    pub fn kind(&self) -> u16 {
        match self {
            KeyAttr::Encap(_) => OVS_KEY_ATTR_ENCAP,
            KeyAttr::Priority(_) => OVS_KEY_ATTR_PRIORITY,
            KeyAttr::InPort(_) => OVS_KEY_ATTR_IN_PORT,
            KeyAttr::Ethernet(_) => OVS_KEY_ATTR_ETHERNET,
            KeyAttr::Vlan(_) => OVS_KEY_ATTR_VLAN,
            KeyAttr::EtherType(_) => OVS_KEY_ATTR_ETHERTYPE,
            KeyAttr::Ipv4(_) => OVS_KEY_ATTR_IPV4,
            KeyAttr::Ipv6(_) => OVS_KEY_ATTR_IPV6,
            KeyAttr::Tcp(_) => OVS_KEY_ATTR_TCP,
            KeyAttr::Udp(_) => OVS_KEY_ATTR_UDP,
            KeyAttr::Icmp { .. } => OVS_KEY_ATTR_ICMP,
            KeyAttr::Icmpv6 { .. } => OVS_KEY_ATTR_ICMPV6,
            KeyAttr::Arp(_) => OVS_KEY_ATTR_ARP,
            KeyAttr::Nd(_) => OVS_KEY_ATTR_ND,
            KeyAttr::SkbMark(_) => OVS_KEY_ATTR_SKB_MARK,
            KeyAttr::Tunnel(_) => OVS_KEY_ATTR_TUNNEL,
            KeyAttr::Sctp(_) => OVS_KEY_ATTR_SCTP,
            KeyAttr::TcpFlags(_) => OVS_KEY_ATTR_TCP_FLAGS,
            KeyAttr::DpHash(_) => OVS_KEY_ATTR_DP_HASH,
            KeyAttr::RecircId(_) => OVS_KEY_ATTR_RECIRC_ID,
            KeyAttr::Mpls(_) => OVS_KEY_ATTR_MPLS,
            KeyAttr::CtState(_) => OVS_KEY_ATTR_CT_STATE,
            KeyAttr::CtZone(_) => OVS_KEY_ATTR_CT_ZONE,
            KeyAttr::CtMark(_) => OVS_KEY_ATTR_CT_MARK,
            KeyAttr::CtLabels(_) => OVS_KEY_ATTR_CT_LABELS,
            KeyAttr::CtOrigTuple4(_) => OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV4,
            KeyAttr::CtOrigTuple6(_) => OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV6,
            KeyAttr::Other(k, _) => *k,
        }
    }

    /// Length of the payload in bytes.
    pub fn payload_len(&self) -> usize {
        match self {
            KeyAttr::Encap(v) => v.as_slice().buffer_len(),
            KeyAttr::Tunnel(v) => v.as_slice().buffer_len(),
            KeyAttr::Priority(_)
            | KeyAttr::InPort(_)
            | KeyAttr::SkbMark(_)
            | KeyAttr::DpHash(_)
            | KeyAttr::RecircId(_)
            | KeyAttr::CtState(_)
            | KeyAttr::CtMark(_) => 4,
            KeyAttr::Vlan(_)
            | KeyAttr::EtherType(_)
            | KeyAttr::TcpFlags(_)
            | KeyAttr::CtZone(_) => 2,
            KeyAttr::Ethernet(_) => ETH_LEN,
            KeyAttr::Ipv4(_) => IPV4_LEN,
            KeyAttr::Ipv6(_) => IPV6_LEN,
            KeyAttr::Tcp(_) | KeyAttr::Udp(_) | KeyAttr::Sctp(_) => PORTS_LEN,
            KeyAttr::Icmp { .. } | KeyAttr::Icmpv6 { .. } => ICMP_LEN,
            KeyAttr::Arp(_) => ARP_LEN,
            KeyAttr::Nd(_) => ND_LEN,
            KeyAttr::Mpls(v) => 4 * v.len(),
            KeyAttr::CtLabels(_) => 16,
            KeyAttr::CtOrigTuple4(_) => CT_TUPLE4_LEN,
            KeyAttr::CtOrigTuple6(_) => CT_TUPLE6_LEN,
            KeyAttr::Other(_, v) => v.len(),
        }
    }

    /// Writes the payload into `b` (exactly `payload_len()` bytes).
    pub fn emit_payload(&self, b: &mut [u8]) {
        match self {
            KeyAttr::Encap(v) => v.as_slice().emit(b),
            KeyAttr::Tunnel(v) => v.as_slice().emit(b),
            KeyAttr::Priority(x)
            | KeyAttr::InPort(x)
            | KeyAttr::SkbMark(x)
            | KeyAttr::DpHash(x)
            | KeyAttr::RecircId(x)
            | KeyAttr::CtState(x)
            | KeyAttr::CtMark(x) => b.copy_from_slice(&x.to_ne_bytes()),
            KeyAttr::Vlan(x) | KeyAttr::EtherType(x) | KeyAttr::TcpFlags(x) => {
                b.copy_from_slice(&x.to_be_bytes())
            }
            KeyAttr::CtZone(x) => b.copy_from_slice(&x.to_ne_bytes()),
            KeyAttr::Ethernet(e) => {
                b[0..6].copy_from_slice(&e.src);
                b[6..12].copy_from_slice(&e.dst);
            }
            KeyAttr::Ipv4(k) => {
                b[0..4].copy_from_slice(&k.src.to_be_bytes());
                b[4..8].copy_from_slice(&k.dst.to_be_bytes());
                b[8] = k.proto;
                b[9] = k.tos;
                b[10] = k.ttl;
                b[11] = k.frag;
            }
            KeyAttr::Ipv6(k) => {
                b[0..16].copy_from_slice(&k.src);
                b[16..32].copy_from_slice(&k.dst);
                b[32..36].copy_from_slice(&k.label.to_be_bytes());
                b[36] = k.proto;
                b[37] = k.tclass;
                b[38] = k.hlimit;
                b[39] = k.frag;
            }
            KeyAttr::Tcp(p) | KeyAttr::Udp(p) | KeyAttr::Sctp(p) => emit_ports(p, b),
            KeyAttr::Icmp { icmp_type, code } | KeyAttr::Icmpv6 { icmp_type, code } => {
                b[0] = *icmp_type;
                b[1] = *code;
            }
            KeyAttr::Arp(k) => {
                b[0..4].copy_from_slice(&k.sip.to_be_bytes());
                b[4..8].copy_from_slice(&k.tip.to_be_bytes());
                b[8..10].copy_from_slice(&k.op.to_be_bytes());
                b[10..16].copy_from_slice(&k.sha);
                b[16..22].copy_from_slice(&k.tha);
                b[22..24].fill(0);
            }
            KeyAttr::Nd(k) => {
                b[0..16].copy_from_slice(&k.target);
                b[16..22].copy_from_slice(&k.sll);
                b[22..28].copy_from_slice(&k.tll);
            }
            KeyAttr::Mpls(v) => {
                for (c, lse) in b.chunks_exact_mut(4).zip(v) {
                    c.copy_from_slice(&lse.to_be_bytes());
                }
            }
            KeyAttr::CtLabels(l) => b.copy_from_slice(l),
            KeyAttr::CtOrigTuple4(t) => {
                b[0..4].copy_from_slice(&t.src.to_be_bytes());
                b[4..8].copy_from_slice(&t.dst.to_be_bytes());
                b[8..10].copy_from_slice(&t.src_port.to_be_bytes());
                b[10..12].copy_from_slice(&t.dst_port.to_be_bytes());
                b[12] = t.proto;
                b[13..16].fill(0);
            }
            KeyAttr::CtOrigTuple6(t) => {
                b[0..16].copy_from_slice(&t.src);
                b[16..32].copy_from_slice(&t.dst);
                b[32..34].copy_from_slice(&t.src_port.to_be_bytes());
                b[34..36].copy_from_slice(&t.dst_port.to_be_bytes());
                b[36] = t.proto;
                b[37..40].fill(0);
            }
            KeyAttr::Other(_, v) => b.copy_from_slice(v),
        }
    }

    /// Parses the payload `v` of an attribute of type `kind`.
    pub fn parse_payload(kind: u16, v: &[u8]) -> Result<KeyAttr, DecodeError> {
        Ok(match kind {
            OVS_KEY_ATTR_ENCAP => KeyAttr::Encap(parse_list(v, "OVS_KEY_ATTR_ENCAP")?),
            OVS_KEY_ATTR_PRIORITY => KeyAttr::Priority(u32_ne(v, "OVS_KEY_ATTR_PRIORITY")?),
            OVS_KEY_ATTR_IN_PORT => KeyAttr::InPort(u32_ne(v, "OVS_KEY_ATTR_IN_PORT")?),
            OVS_KEY_ATTR_ETHERNET => {
                let b: [u8; ETH_LEN] = fixed(v, "OVS_KEY_ATTR_ETHERNET")?;
                KeyAttr::Ethernet(EthKey {
                    src: mac(&b[0..]),
                    dst: mac(&b[6..]),
                })
            }
            OVS_KEY_ATTR_VLAN => KeyAttr::Vlan(u16_be(v, "OVS_KEY_ATTR_VLAN")?),
            OVS_KEY_ATTR_ETHERTYPE => KeyAttr::EtherType(u16_be(v, "OVS_KEY_ATTR_ETHERTYPE")?),
            OVS_KEY_ATTR_IPV4 => {
                let b: [u8; IPV4_LEN] = fixed(v, "OVS_KEY_ATTR_IPV4")?;
                KeyAttr::Ipv4(Ipv4Key {
                    src: be32(&b[0..]),
                    dst: be32(&b[4..]),
                    proto: b[8],
                    tos: b[9],
                    ttl: b[10],
                    frag: b[11],
                })
            }
            OVS_KEY_ATTR_IPV6 => {
                let b: [u8; IPV6_LEN] = fixed(v, "OVS_KEY_ATTR_IPV6")?;
                KeyAttr::Ipv6(Ipv6Key {
                    src: ip6(&b[0..]),
                    dst: ip6(&b[16..]),
                    label: be32(&b[32..]),
                    proto: b[36],
                    tclass: b[37],
                    hlimit: b[38],
                    frag: b[39],
                })
            }
            OVS_KEY_ATTR_TCP => KeyAttr::Tcp(parse_ports(v, "OVS_KEY_ATTR_TCP")?),
            OVS_KEY_ATTR_UDP => KeyAttr::Udp(parse_ports(v, "OVS_KEY_ATTR_UDP")?),
            OVS_KEY_ATTR_SCTP => KeyAttr::Sctp(parse_ports(v, "OVS_KEY_ATTR_SCTP")?),
            OVS_KEY_ATTR_ICMP => {
                let b: [u8; ICMP_LEN] = fixed(v, "OVS_KEY_ATTR_ICMP")?;
                KeyAttr::Icmp {
                    icmp_type: b[0],
                    code: b[1],
                }
            }
            OVS_KEY_ATTR_ICMPV6 => {
                let b: [u8; ICMP_LEN] = fixed(v, "OVS_KEY_ATTR_ICMPV6")?;
                KeyAttr::Icmpv6 {
                    icmp_type: b[0],
                    code: b[1],
                }
            }
            OVS_KEY_ATTR_ARP => {
                let b: [u8; ARP_LEN] = fixed(v, "OVS_KEY_ATTR_ARP")?;
                KeyAttr::Arp(ArpKey {
                    sip: be32(&b[0..]),
                    tip: be32(&b[4..]),
                    op: u16::from_be_bytes([b[8], b[9]]),
                    sha: mac(&b[10..]),
                    tha: mac(&b[16..]),
                })
            }
            OVS_KEY_ATTR_ND => {
                let b: [u8; ND_LEN] = fixed(v, "OVS_KEY_ATTR_ND")?;
                KeyAttr::Nd(NdKey {
                    target: ip6(&b[0..]),
                    sll: mac(&b[16..]),
                    tll: mac(&b[22..]),
                })
            }
            OVS_KEY_ATTR_SKB_MARK => KeyAttr::SkbMark(u32_ne(v, "OVS_KEY_ATTR_SKB_MARK")?),
            OVS_KEY_ATTR_TUNNEL => KeyAttr::Tunnel(parse_list(v, "OVS_KEY_ATTR_TUNNEL")?),
            OVS_KEY_ATTR_TCP_FLAGS => KeyAttr::TcpFlags(u16_be(v, "OVS_KEY_ATTR_TCP_FLAGS")?),
            OVS_KEY_ATTR_DP_HASH => KeyAttr::DpHash(u32_ne(v, "OVS_KEY_ATTR_DP_HASH")?),
            OVS_KEY_ATTR_RECIRC_ID => KeyAttr::RecircId(u32_ne(v, "OVS_KEY_ATTR_RECIRC_ID")?),
            OVS_KEY_ATTR_MPLS => {
                if v.is_empty() || !v.len().is_multiple_of(4) {
                    return Err(DecodeError::from(format!(
                        "OVS_KEY_ATTR_MPLS: payload is {} bytes, expected a nonzero multiple of 4",
                        v.len()
                    )));
                }
                KeyAttr::Mpls(v.chunks_exact(4).map(be32).collect())
            }
            OVS_KEY_ATTR_CT_STATE => KeyAttr::CtState(u32_ne(v, "OVS_KEY_ATTR_CT_STATE")?),
            OVS_KEY_ATTR_CT_ZONE => KeyAttr::CtZone(u16_ne(v, "OVS_KEY_ATTR_CT_ZONE")?),
            OVS_KEY_ATTR_CT_MARK => KeyAttr::CtMark(u32_ne(v, "OVS_KEY_ATTR_CT_MARK")?),
            OVS_KEY_ATTR_CT_LABELS => KeyAttr::CtLabels(fixed(v, "OVS_KEY_ATTR_CT_LABELS")?),
            OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV4 => {
                let b: [u8; CT_TUPLE4_LEN] = fixed(v, "OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV4")?;
                KeyAttr::CtOrigTuple4(CtTuple4 {
                    src: be32(&b[0..4]),
                    dst: be32(&b[4..8]),
                    src_port: u16::from_be_bytes([b[8], b[9]]),
                    dst_port: u16::from_be_bytes([b[10], b[11]]),
                    proto: b[12],
                })
            }
            OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV6 => {
                let b: [u8; CT_TUPLE6_LEN] = fixed(v, "OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV6")?;
                KeyAttr::CtOrigTuple6(CtTuple6 {
                    src: ip6(&b[0..]),
                    dst: ip6(&b[16..]),
                    src_port: u16::from_be_bytes([b[32], b[33]]),
                    dst_port: u16::from_be_bytes([b[34], b[35]]),
                    proto: b[36],
                })
            }
            other => KeyAttr::Other(other, v.to_vec()),
        })
    }
}

impl Nla for KeyAttr {
    fn value_len(&self) -> usize {
        self.payload_len()
    }
    fn kind(&self) -> u16 {
        KeyAttr::kind(self)
    }
    fn emit_value(&self, buffer: &mut [u8]) {
        self.emit_payload(buffer)
    }
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for KeyAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        KeyAttr::parse_payload(buf.kind(), buf.value())
    }
}

impl Nla for TunnelAttr {
    fn value_len(&self) -> usize {
        match self {
            TunnelAttr::Id(_) => 8,
            TunnelAttr::Ipv4Src(_) | TunnelAttr::Ipv4Dst(_) => 4,
            TunnelAttr::Tos(_) | TunnelAttr::Ttl(_) => 1,
            TunnelAttr::DontFragment | TunnelAttr::Csum | TunnelAttr::Oam => 0,
            TunnelAttr::TpSrc(_) | TunnelAttr::TpDst(_) => 2,
            TunnelAttr::GeneveOpts(v) => v.len(),
            // One nested u32 attribute: 4 bytes of header, 4 of value.
            TunnelAttr::VxlanGbp(_) => 8,
            TunnelAttr::Ipv6Src(_) | TunnelAttr::Ipv6Dst(_) => 16,
            TunnelAttr::Other(_, v) => v.len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            TunnelAttr::Id(_) => OVS_TUNNEL_KEY_ATTR_ID,
            TunnelAttr::Ipv4Src(_) => OVS_TUNNEL_KEY_ATTR_IPV4_SRC,
            TunnelAttr::Ipv4Dst(_) => OVS_TUNNEL_KEY_ATTR_IPV4_DST,
            TunnelAttr::Tos(_) => OVS_TUNNEL_KEY_ATTR_TOS,
            TunnelAttr::Ttl(_) => OVS_TUNNEL_KEY_ATTR_TTL,
            TunnelAttr::DontFragment => OVS_TUNNEL_KEY_ATTR_DONT_FRAGMENT,
            TunnelAttr::Csum => OVS_TUNNEL_KEY_ATTR_CSUM,
            TunnelAttr::TpSrc(_) => OVS_TUNNEL_KEY_ATTR_TP_SRC,
            TunnelAttr::TpDst(_) => OVS_TUNNEL_KEY_ATTR_TP_DST,
            TunnelAttr::Oam => OVS_TUNNEL_KEY_ATTR_OAM,
            TunnelAttr::GeneveOpts(_) => OVS_TUNNEL_KEY_ATTR_GENEVE_OPTS,
            TunnelAttr::VxlanGbp(_) => OVS_TUNNEL_KEY_ATTR_VXLAN_OPTS,
            TunnelAttr::Ipv6Src(_) => OVS_TUNNEL_KEY_ATTR_IPV6_SRC,
            TunnelAttr::Ipv6Dst(_) => OVS_TUNNEL_KEY_ATTR_IPV6_DST,
            TunnelAttr::Other(k, _) => *k,
        }
    }
    fn emit_value(&self, b: &mut [u8]) {
        match self {
            TunnelAttr::Id(x) => b.copy_from_slice(&x.to_be_bytes()),
            TunnelAttr::Ipv4Src(x) | TunnelAttr::Ipv4Dst(x) => b.copy_from_slice(&x.to_be_bytes()),
            TunnelAttr::Tos(x) | TunnelAttr::Ttl(x) => b[0] = *x,
            TunnelAttr::DontFragment | TunnelAttr::Csum | TunnelAttr::Oam => {}
            TunnelAttr::TpSrc(x) | TunnelAttr::TpDst(x) => b.copy_from_slice(&x.to_be_bytes()),
            TunnelAttr::GeneveOpts(v) => b.copy_from_slice(v),
            TunnelAttr::VxlanGbp(x) => {
                b[0..2].copy_from_slice(&8u16.to_ne_bytes());
                b[2..4].copy_from_slice(&OVS_VXLAN_EXT_GBP.to_ne_bytes());
                b[4..8].copy_from_slice(&x.to_ne_bytes());
            }
            TunnelAttr::Ipv6Src(a) | TunnelAttr::Ipv6Dst(a) => b.copy_from_slice(a),
            TunnelAttr::Other(_, v) => b.copy_from_slice(v),
        }
    }
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for TunnelAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            OVS_TUNNEL_KEY_ATTR_ID => {
                TunnelAttr::Id(u64::from_be_bytes(fixed(v, "OVS_TUNNEL_KEY_ATTR_ID")?))
            }
            OVS_TUNNEL_KEY_ATTR_IPV4_SRC => TunnelAttr::Ipv4Src(u32::from_be_bytes(fixed(
                v,
                "OVS_TUNNEL_KEY_ATTR_IPV4_SRC",
            )?)),
            OVS_TUNNEL_KEY_ATTR_IPV4_DST => TunnelAttr::Ipv4Dst(u32::from_be_bytes(fixed(
                v,
                "OVS_TUNNEL_KEY_ATTR_IPV4_DST",
            )?)),
            OVS_TUNNEL_KEY_ATTR_TOS => TunnelAttr::Tos(u8_of(v, "OVS_TUNNEL_KEY_ATTR_TOS")?),
            OVS_TUNNEL_KEY_ATTR_TTL => TunnelAttr::Ttl(u8_of(v, "OVS_TUNNEL_KEY_ATTR_TTL")?),
            OVS_TUNNEL_KEY_ATTR_DONT_FRAGMENT => TunnelAttr::DontFragment,
            OVS_TUNNEL_KEY_ATTR_CSUM => TunnelAttr::Csum,
            OVS_TUNNEL_KEY_ATTR_TP_SRC => {
                TunnelAttr::TpSrc(u16_be(v, "OVS_TUNNEL_KEY_ATTR_TP_SRC")?)
            }
            OVS_TUNNEL_KEY_ATTR_TP_DST => {
                TunnelAttr::TpDst(u16_be(v, "OVS_TUNNEL_KEY_ATTR_TP_DST")?)
            }
            OVS_TUNNEL_KEY_ATTR_OAM => TunnelAttr::Oam,
            OVS_TUNNEL_KEY_ATTR_GENEVE_OPTS => TunnelAttr::GeneveOpts(v.to_vec()),
            OVS_TUNNEL_KEY_ATTR_IPV6_SRC => {
                TunnelAttr::Ipv6Src(fixed(v, "OVS_TUNNEL_KEY_ATTR_IPV6_SRC")?)
            }
            OVS_TUNNEL_KEY_ATTR_IPV6_DST => {
                TunnelAttr::Ipv6Dst(fixed(v, "OVS_TUNNEL_KEY_ATTR_IPV6_DST")?)
            }
            OVS_TUNNEL_KEY_ATTR_VXLAN_OPTS => {
                // One nested attribute: OVS_VXLAN_EXT_GBP, a native u32.
                let gbp = v
                    .get(4..8)
                    .filter(|_| {
                        v.len() == 8
                            && u16::from_ne_bytes([v[2], v[3]]) & 0x3fff == OVS_VXLAN_EXT_GBP
                    })
                    .ok_or_else(|| {
                        DecodeError::from(
                            "OVS_TUNNEL_KEY_ATTR_VXLAN_OPTS: expected one OVS_VXLAN_EXT_GBP",
                        )
                    })?;
                TunnelAttr::VxlanGbp(u32::from_ne_bytes([gbp[0], gbp[1], gbp[2], gbp[3]]))
            }
            other => TunnelAttr::Other(other, v.to_vec()),
        })
    }
}

/// Encodes a list of key attributes (the payload of `OVS_FLOW_ATTR_KEY`).
pub fn emit_key_attrs(attrs: &[KeyAttr]) -> Vec<u8> {
    let mut out = vec![0u8; attrs.buffer_len()];
    attrs.emit(&mut out);
    out
}

/// Parses a list of key attributes (the payload of `OVS_FLOW_ATTR_KEY`).
pub fn parse_key_attrs(buf: &[u8]) -> Result<Vec<KeyAttr>, DecodeError> {
    parse_list(buf, "flow key")
}
