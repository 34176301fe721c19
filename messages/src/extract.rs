//! Frame → `Flow`, with the semantics of OVS's `flow_extract`
//! (`miniflow_extract` in lib/flow.c, OVS 3.1).
//!
//! Parsing goes layer by layer and stops at the first header that is
//! missing or malformed, keeping what the earlier layers gave, exactly where
//! OVS stops:
//!
//! - fewer than 14 bytes: metadata only;
//! - up to two VLAN tags are read (TCI with `VLAN_CFI` set as "present"); a
//!   tag needs 6 bytes (tag and the next EtherType), else parsing leaves the
//!   TPID as `dl_type`; a third tag's TPID becomes `dl_type`. This is OVS
//!   with `other_config:vlan-limit=2` (or 0); ovs-vswitchd's default limit
//!   is 1, which [`extract_with_vlan_limit`] reproduces;
//! - an 802.3 length (< 0x0600) gives `dl_type` 0x05ff unless an LLC/SNAP
//!   header with OUI 0 carries an EtherType;
//! - MPLS: the label stack is walked to the bottom, the first 3 entries are
//!   kept (OVS's `FLOW_MAX_MPLS_LABELS`), nothing after the stack is parsed;
//! - IPv4: the header must have IHL ≥ 5, fit the frame, and have a total
//!   length covering it and within the frame, with at most 65535 bytes of
//!   padding after it; otherwise nothing past L2 is kept;
//! - IPv6: the payload length must fit with at most 65535 bytes of padding,
//!   else nothing past L2; a truncated extension header keeps only the
//!   addresses; a later fragment has `nw_proto` 44;
//! - L4 fields come only from a packet that is not a later fragment and
//!   only when the fixed header is all there (TCP 20 bytes regardless of its
//!   data offset, UDP/ICMP/IGMP/ICMPv6 8, SCTP 12). The L4 protocol number
//!   decides, whatever the IP version (ICMP over IPv6 gives type and code);
//! - ICMPv6 NS/NA with code 0 also give `nd_target`, `arp_sha` (SLL) and
//!   `arp_tha` (TLL). As in OVS 3.1, `igmp_group_ip4` then carries the ND
//!   reserved word (NA flags) and `tcp_flags` the type of the first
//!   link-layer address option; a repeated SLL or TLL option voids the
//!   target and both addresses;
//! - ARP/RARP (Ethernet/IPv4 only): addresses always, `nw_proto` the opcode
//!   only when it fits in 8 bits.
//!
//! The metadata segment of the flow (everything before `dl_dst`: in_port,
//! recirc_id, skb_priority, pkt_mark, dp_hash, metadata, registers, tunnel,
//! conntrack fields) is copied verbatim from the caller's `md`.

use crate::flow::*;
use crate::wire::icmpv6::ND_OPT_SOURCE_LLA;
use crate::wire::ipv6::{FRAG_OFFSET_MASK, NEXT_FRAGMENT, NEXT_ROUTING};
use crate::wire::mpls::BOS_MASK;
use crate::wire::{
    ethernet, mpls, vlan, ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv6Packet, IgmpPacket,
    Ipv4Packet, Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet, LlcSnapHeader, NdMessage,
    SctpPacket, TcpPacket, UdpPacket,
};

/// Most link-layer padding OVS accepts after an IP packet (it records the
/// padding's length in 16 bits).
const MAX_L2_PAD: usize = u16::MAX as usize;

/// Where a frame's layers start, as OVS records them in a `dp_packet`
/// while extracting. Offsets are from the start of the frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameLayers {
    /// The MPLS label stack, when `dl_type` is MPLS.
    pub l2_5: Option<usize>,
    /// The L3 header: past Ethernet, VLAN tags, LLC/SNAP and MPLS. `None`
    /// for a frame shorter than an Ethernet header.
    pub l3: Option<usize>,
    /// The L4 header: past the IPv4 header or the IPv6 extension headers;
    /// `None` unless the IP header was valid.
    pub l4: Option<usize>,
    /// End of the IP packet (the frame's length less link-layer padding);
    /// the frame's length when there is no valid IP header.
    pub l3_end: usize,
    /// An IPv6 routing header with segments left was passed: upper-layer
    /// checksums then cover the final destination, not the IPv6 `dst`.
    pub ipv6_routing: bool,
}

/// Extracts the flow of `frame`, with metadata from `md`.
pub fn flow_extract(frame: &[u8], md: &Flow) -> Flow {
    extract_with_layers(frame, md).0
}

/// [`flow_extract`], also returning where the layers start.
pub fn extract_with_layers(frame: &[u8], md: &Flow) -> (Flow, FrameLayers) {
    extract_with_vlan_limit(frame, md, FLOW_MAX_VLAN_HEADERS)
}

/// [`extract_with_layers`] reading at most `vlan_limit` VLAN tags, like
/// ovs-vswitchd's `other_config:vlan-limit` (0 means as many as a flow
/// holds, 2). The TPID of the first tag past the limit becomes `dl_type`.
pub fn extract_with_vlan_limit(frame: &[u8], md: &Flow, vlan_limit: usize) -> (Flow, FrameLayers) {
    let mut flow = Flow::default();
    let layers = extract_into(frame, md, vlan_limit, &mut flow);
    (flow, layers)
}

/// [`flow_extract`] into `flow` (whatever it held): a receive loop
/// extracts a burst into the same buffer every time, where returning a
/// flow would copy its 264 bytes out and in again.
pub fn flow_extract_into(frame: &[u8], md: &Flow, flow: &mut Flow) {
    extract_into(frame, md, FLOW_MAX_VLAN_HEADERS, flow);
}

fn extract_into(frame: &[u8], md: &Flow, vlan_limit: usize, flow: &mut Flow) -> FrameLayers {
    let vlan_limit = match vlan_limit {
        0 => FLOW_MAX_VLAN_HEADERS,
        n => n.min(FLOW_MAX_VLAN_HEADERS),
    };
    *flow = Flow::default();
    copy_metadata(flow, md);
    let mut layers = FrameLayers {
        l3_end: frame.len(),
        ..FrameLayers::default()
    };
    parse_l2_up(frame, vlan_limit, flow, &mut layers);
    layers
}

fn copy_metadata(flow: &mut Flow, md: &Flow) {
    let end = std::mem::offset_of!(Flow, dl_dst) / 8;
    flow.words_mut()[..end].copy_from_slice(&md.words()[..end]);
}

fn tail(frame: &[u8], ofs: usize) -> &[u8] {
    frame.get(ofs..).unwrap_or(&[])
}

fn be16_at(frame: &[u8], ofs: usize) -> u16 {
    match frame.get(ofs..ofs + 2) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => 0,
    }
}

fn parse_l2_up(frame: &[u8], vlan_limit: usize, flow: &mut Flow, layers: &mut FrameLayers) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return;
    };
    flow.dl_dst = eth.dst();
    flow.dl_src = eth.src();

    // `ofs` walks the frame; it points at an EtherType/TPID field here.
    let mut ofs = 2 * ethernet::ADDR_LEN;
    let mut n_vlans = 0;
    while n_vlans < vlan_limit && eth_type_vlan(be16_at(frame, ofs)) {
        // A tag counts only if the EtherType after it is there too.
        if frame.len() - ofs < vlan::TAG_LEN + 2 {
            break;
        }
        flow.vlans[n_vlans] = FlowVlan {
            tpid: be16_at(frame, ofs),
            tci: be16_at(frame, ofs + 2) | VLAN_CFI,
        };
        ofs += vlan::TAG_LEN;
        n_vlans += 1;
    }

    let type_or_len = be16_at(frame, ofs);
    ofs += 2;
    flow.dl_type = if type_or_len >= ETH_TYPE_MIN {
        type_or_len
    } else {
        match LlcSnapHeader::new_checked(tail(frame, ofs)) {
            Ok(snap) if snap.oui() == [0, 0, 0] => {
                ofs += ethernet::LLC_SNAP_LEN;
                if snap.snap_type() >= ETH_TYPE_MIN {
                    snap.snap_type()
                } else {
                    FLOW_DL_TYPE_NONE
                }
            }
            _ => FLOW_DL_TYPE_NONE,
        }
    };

    if eth_type_mpls(flow.dl_type) {
        layers.l2_5 = Some(ofs);
        let mut count = 0;
        while let Ok(lse) = mpls::MplsLse::new_checked(tail(frame, ofs)) {
            if count < FLOW_MAX_MPLS_LABELS {
                flow.mpls_lse[count] = lse.lse();
            }
            count += 1;
            ofs += mpls::LSE_LEN;
            if lse.lse() & BOS_MASK != 0 {
                break;
            }
        }
    }

    layers.l3 = Some(ofs);
    let l3 = tail(frame, ofs);
    let (l4_ofs, l4) = match flow.dl_type {
        ETH_TYPE_IP => {
            let Some(l4) = parse_ipv4(l3, flow) else {
                return;
            };
            l4
        }
        ETH_TYPE_IPV6 => {
            let Some(l4) = parse_ipv6(l3, flow, layers) else {
                return;
            };
            l4
        }
        ETH_TYPE_ARP | ETH_TYPE_RARP => {
            parse_arp(l3, flow);
            return;
        }
        _ => return,
    };
    layers.l4 = Some(ofs + l4_ofs);
    layers.l3_end = ofs + l4_ofs + l4.len();
    if flow.nw_frag & FLOW_NW_FRAG_LATER == 0 {
        parse_l4(l4, flow);
    }
}

/// Parses an IPv4 header; returns the L4 offset within `l3` and the L4
/// bytes (padding excluded), or `None` (flow untouched) if OVS would stop.
fn parse_ipv4<'a>(l3: &'a [u8], flow: &mut Flow) -> Option<(usize, &'a [u8])> {
    let ip = Ipv4Packet::new_checked(l3).ok()?;
    if l3.len() - usize::from(ip.total_len()) > MAX_L2_PAD {
        return None;
    }
    flow.nw_src = ip.src();
    flow.nw_dst = ip.dst();
    flow.nw_tos = ip.tos();
    flow.nw_ttl = ip.ttl();
    flow.nw_proto = ip.protocol();
    if ip.is_fragment() {
        flow.nw_frag = FLOW_NW_FRAG_ANY;
        if ip.frag_offset() != 0 {
            flow.nw_frag |= FLOW_NW_FRAG_LATER;
        }
    }
    let header_len = ip.header_len();
    Some((header_len, l3.get(header_len..usize::from(ip.total_len()))?))
}

/// Parses an IPv6 header and its extension headers; returns the L4 offset
/// within `l3` and the L4 bytes, or `None` if OVS would stop (having kept
/// the addresses if the fixed header was good).
fn parse_ipv6<'a>(
    l3: &'a [u8],
    flow: &mut Flow,
    layers: &mut FrameLayers,
) -> Option<(usize, &'a [u8])> {
    let ip = Ipv6Packet::new_checked(l3).ok()?;
    let end = crate::wire::ipv6::HEADER_LEN + usize::from(ip.payload_len());
    if l3.len() - end > MAX_L2_PAD {
        return None;
    }
    flow.ipv6_src = ip.src();
    flow.ipv6_dst = ip.dst();

    let mut proto = ip.next_header();
    let mut frag = 0;
    let mut ofs = crate::wire::ipv6::HEADER_LEN;
    while crate::wire::ipv6::is_ext_header(proto) {
        let rest = l3.get(ofs..end)?;
        if proto == NEXT_FRAGMENT {
            let fh = Ipv6FragmentHeader::new_checked(rest).ok()?;
            ofs += crate::wire::ipv6::FRAG_HEADER_LEN;
            proto = fh.next_header();
            if fh.offset_flags() != 0 {
                frag = FLOW_NW_FRAG_ANY;
                if fh.offset_flags() & FRAG_OFFSET_MASK != 0 {
                    // Only the first fragment has upper-layer headers.
                    frag |= FLOW_NW_FRAG_LATER;
                    proto = NEXT_FRAGMENT;
                    break;
                }
            }
        } else {
            let eh = Ipv6ExtHeader::new_checked(rest, proto).ok()?;
            if proto == NEXT_ROUTING && eh.segments_left() != 0 {
                layers.ipv6_routing = true;
            }
            ofs += eh.header_len();
            proto = eh.next_header();
        }
    }

    flow.ipv6_label = ip.flow_label();
    flow.nw_tos = ip.traffic_class();
    flow.nw_ttl = ip.hop_limit();
    flow.nw_proto = proto;
    flow.nw_frag = frag;
    Some((ofs, l3.get(ofs..end)?))
}

fn parse_arp(l3: &[u8], flow: &mut Flow) {
    let Ok(arp) = ArpPacket::new_checked(l3) else {
        return;
    };
    flow.nw_src = arp.spa();
    flow.nw_dst = arp.tpa();
    // Only the low 8 bits of the opcode can be matched; a bigger opcode
    // leaves nw_proto 0.
    if let Ok(op) = u8::try_from(arp.operation()) {
        flow.nw_proto = op;
    }
    flow.arp_sha = arp.sha();
    flow.arp_tha = arp.tha();
}

fn parse_l4(l4: &[u8], flow: &mut Flow) {
    match flow.nw_proto {
        IPPROTO_TCP => {
            if let Ok(tcp) = TcpPacket::new_checked(l4) {
                flow.tcp_flags = tcp.flags();
                flow.tp_src = tcp.src_port();
                flow.tp_dst = tcp.dst_port();
            }
        }
        IPPROTO_UDP => {
            if let Ok(udp) = UdpPacket::new_checked(l4) {
                flow.tp_src = udp.src_port();
                flow.tp_dst = udp.dst_port();
            }
        }
        IPPROTO_SCTP => {
            if let Ok(sctp) = SctpPacket::new_checked(l4) {
                flow.tp_src = sctp.src_port();
                flow.tp_dst = sctp.dst_port();
            }
        }
        IPPROTO_ICMP => {
            if let Ok(icmp) = Icmpv4Packet::new_checked(l4) {
                flow.tp_src = icmp.msg_type().into();
                flow.tp_dst = icmp.code().into();
            }
        }
        IPPROTO_IGMP => {
            if let Ok(igmp) = IgmpPacket::new_checked(l4) {
                flow.tp_src = igmp.msg_type().into();
                flow.tp_dst = igmp.code().into();
                flow.igmp_group_ip4 = igmp.group();
            }
        }
        IPPROTO_ICMPV6 => {
            if let Ok(icmp) = Icmpv6Packet::new_checked(l4) {
                flow.tp_src = icmp.msg_type().into();
                flow.tp_dst = icmp.code().into();
                // As in OVS, this holds for ICMPv6 carried over IPv4 too.
                if crate::wire::icmpv6::is_nd_message(icmp.msg_type(), icmp.code()) {
                    parse_nd(l4, icmp.data_word(), flow);
                }
            }
        }
        _ => {}
    }
}

/// The ND part of an NS/NA with code 0 (OVS's `parse_icmpv6`).
fn parse_nd(l4: &[u8], reserved: u32, flow: &mut Flow) {
    flow.igmp_group_ip4 = reserved;
    let Ok(nd) = NdMessage::new_checked(l4) else {
        return;
    };
    let mut sll = [0u8; 6];
    let mut tll = [0u8; 6];
    let mut first_lla_type = 0u8;
    for option in nd.options() {
        // Only 8-byte source/target link-layer address options count.
        let Some(mac) = option.lla() else {
            continue;
        };
        let seen = if option.kind == ND_OPT_SOURCE_LLA {
            &mut sll
        } else {
            &mut tll
        };
        // A second option of a kind already seen (with a nonzero address)
        // makes the message invalid: no target, no addresses. The options
        // type recorded so far stays, as in OVS.
        if *seen != [0; 6] {
            flow.tcp_flags = first_lla_type.into();
            return;
        }
        *seen = mac;
        if first_lla_type == 0 {
            first_lla_type = option.kind;
        }
    }
    flow.nd_target = nd.target();
    flow.arp_sha = sll;
    flow.arp_tha = tll;
    flow.tcp_flags = first_lla_type.into();
}

#[cfg(test)]
pub(crate) mod tests;
