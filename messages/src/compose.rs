//! `Flow` → frame: builds a packet that has a given flow, like OVS's
//! `flow_compose`, for tests and benchmarks.
//!
//! For every *well-formed* flow `f` (one a real packet could have),
//! `flow_extract(&flow_compose(&f), &f) == f`, and every checksum in the
//! frame is right. Well-formed means: the fields a packet of that kind
//! does not have are zero (e.g. no ports on an ARP flow, no ND fields off
//! ND), VLAN tags are present (`VLAN_CFI`) from the outside in with a VLAN
//! TPID, ICMP types and codes fit in 8 bits, a fragment that is "later" is
//! also "any", an IPv6 later fragment has `nw_proto` 44 and other IPv6
//! flows an `nw_proto` that is not an extension header, and for ND,
//! `tcp_flags` (the type of the first link-layer address option, as OVS
//! keeps it) is 0 only when both addresses are 0. Every flow extracted from
//! a frame of 14 bytes or more is well-formed (the fuzz target checks it).
//! Other flows still give a frame, just not one that extracts back to the
//! same flow.
//!
//! Frames carry no payload past the headers and no padding; an MPLS frame
//! ends with its label stack.

use crate::flow::*;
use crate::wire::icmpv6::{ND_OPT_SOURCE_LLA, ND_OPT_TARGET_LLA};
use crate::wire::{arp, checksum, icmpv4, icmpv6, igmp, ipv4, ipv6, sctp, tcp, udp, vlan};

/// Fragment offset given to "later" fragments (in 8-byte units), as OVS.
const LATER_FRAG_OFFSET: u16 = 100;

/// Builds a frame whose extracted flow is `flow` (see the module docs).
pub fn flow_compose(flow: &Flow) -> Vec<u8> {
    let mut frame = Vec::with_capacity(128);
    frame.extend_from_slice(&flow.dl_dst);
    frame.extend_from_slice(&flow.dl_src);
    for tag in flow.vlans.iter().filter(|v| v.tci & VLAN_CFI != 0) {
        frame.extend_from_slice(&tag.tpid.to_be_bytes());
        frame.extend_from_slice(&(tag.tci & !vlan::TCI_DEI).to_be_bytes());
    }

    if flow.dl_type == FLOW_DL_TYPE_NONE {
        // An 802.3 frame with a plain (non-SNAP) LLC header.
        let llc = [0x42, 0x42, 0x03];
        frame.extend_from_slice(&(llc.len() as u16).to_be_bytes());
        frame.extend_from_slice(&llc);
        return frame;
    }
    frame.extend_from_slice(&flow.dl_type.to_be_bytes());

    match flow.dl_type {
        ETH_TYPE_IP => compose_ipv4(&mut frame, flow),
        ETH_TYPE_IPV6 => compose_ipv6(&mut frame, flow),
        ETH_TYPE_ARP | ETH_TYPE_RARP => {
            let mut a = [0u8; arp::PACKET_LEN];
            arp::emit(
                &mut a,
                flow.nw_proto.into(),
                flow.arp_sha,
                flow.nw_src,
                flow.arp_tha,
                flow.nw_dst,
            );
            frame.extend_from_slice(&a);
        }
        t if eth_type_mpls(t) => {
            let n = flow.mpls_depth();
            for lse in &flow.mpls_lse[..n] {
                frame.extend_from_slice(&lse.to_be_bytes());
            }
        }
        _ => {}
    }
    frame
}

fn has_l4(flow: &Flow) -> bool {
    flow.nw_frag & FLOW_NW_FRAG_LATER == 0
}

fn compose_ipv4(frame: &mut Vec<u8>, flow: &Flow) {
    let l4 = if has_l4(flow) {
        let pseudo = |len: usize| {
            checksum::pseudo_header_v4(flow.nw_src, flow.nw_dst, flow.nw_proto, len as u16)
        };
        compose_l4(flow, pseudo)
    } else {
        Vec::new()
    };
    let mut frag_word = 0;
    if flow.nw_frag & FLOW_NW_FRAG_ANY != 0 {
        frag_word |= ipv4::FLAG_MF;
        if flow.nw_frag & FLOW_NW_FRAG_LATER != 0 {
            frag_word |= LATER_FRAG_OFFSET;
        }
    }
    let mut header = [0u8; ipv4::MIN_HEADER_LEN];
    ipv4::emit(
        &mut header,
        &ipv4::Ipv4Header {
            tos: flow.nw_tos,
            total_len: (ipv4::MIN_HEADER_LEN + l4.len()) as u16,
            ident: 0,
            frag_word,
            ttl: flow.nw_ttl,
            protocol: flow.nw_proto,
            src: flow.nw_src,
            dst: flow.nw_dst,
        },
    );
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&l4);
}

fn compose_ipv6(frame: &mut Vec<u8>, flow: &Flow) {
    let is_frag = flow.nw_frag & FLOW_NW_FRAG_ANY != 0;
    let upper_proto = if !has_l4(flow) && flow.nw_proto == ipv6::NEXT_FRAGMENT {
        ipv6::NEXT_NONE
    } else {
        flow.nw_proto
    };
    let l4 = if has_l4(flow) {
        let pseudo =
            |len: usize| ipv6::pseudo_header(&flow.ipv6_src, &flow.ipv6_dst, flow.nw_proto, len);
        compose_l4(flow, pseudo)
    } else {
        Vec::new()
    };
    let mut payload = Vec::with_capacity(ipv6::FRAG_HEADER_LEN + l4.len());
    if is_frag {
        let offset = if has_l4(flow) { 0 } else { LATER_FRAG_OFFSET };
        let mut fh = [0u8; ipv6::FRAG_HEADER_LEN];
        ipv6::emit_fragment(&mut fh, upper_proto, offset, true, 0);
        payload.extend_from_slice(&fh);
    }
    payload.extend_from_slice(&l4);
    let mut header = [0u8; ipv6::HEADER_LEN];
    ipv6::emit(
        &mut header,
        &ipv6::Ipv6Header {
            traffic_class: flow.nw_tos,
            flow_label: flow.ipv6_label,
            payload_len: payload.len() as u16,
            next_header: if is_frag {
                ipv6::NEXT_FRAGMENT
            } else {
                upper_proto
            },
            hop_limit: flow.nw_ttl,
            src: flow.ipv6_src,
            dst: flow.ipv6_dst,
        },
    );
    frame.extend_from_slice(&header);
    frame.extend_from_slice(&payload);
}

/// The L4 header of an IP flow with its checksum; `pseudo(len)` is the
/// pseudo-header sum for `len` bytes of L4.
fn compose_l4(flow: &Flow, pseudo: impl Fn(usize) -> u16) -> Vec<u8> {
    match flow.nw_proto {
        IPPROTO_TCP => {
            let mut l4 = vec![0u8; tcp::MIN_HEADER_LEN];
            tcp::emit(
                &mut l4,
                &tcp::TcpHeader {
                    src_port: flow.tp_src,
                    dst_port: flow.tp_dst,
                    flags: flow.tcp_flags,
                    ..tcp::TcpHeader::default()
                },
            );
            if let Ok(mut t) = tcp::TcpPacket::new_checked(&mut l4[..]) {
                t.fill_checksum(pseudo(tcp::MIN_HEADER_LEN));
            }
            l4
        }
        IPPROTO_UDP => {
            let mut l4 = vec![0u8; udp::HEADER_LEN];
            udp::emit(&mut l4, flow.tp_src, flow.tp_dst, udp::HEADER_LEN as u16);
            if let Ok(mut u) = udp::UdpPacket::new_checked(&mut l4[..]) {
                u.fill_checksum(pseudo(udp::HEADER_LEN));
            }
            l4
        }
        IPPROTO_SCTP => {
            let mut l4 = vec![0u8; sctp::HEADER_LEN];
            sctp::emit(&mut l4, flow.tp_src, flow.tp_dst, 0);
            if let Ok(mut s) = sctp::SctpPacket::new_checked(&mut l4[..]) {
                s.fill_checksum();
            }
            l4
        }
        IPPROTO_ICMP => {
            let mut l4 = vec![0u8; icmpv4::HEADER_LEN];
            icmpv4::emit(&mut l4, flow.tp_src as u8, flow.tp_dst as u8, [0; 4]);
            if let Ok(mut i) = icmpv4::Icmpv4Packet::new_checked(&mut l4[..]) {
                i.fill_checksum();
            }
            l4
        }
        IPPROTO_IGMP => {
            let mut l4 = vec![0u8; igmp::HEADER_LEN];
            igmp::emit(
                &mut l4,
                flow.tp_src as u8,
                flow.tp_dst as u8,
                flow.igmp_group_ip4,
            );
            if let Ok(mut g) = igmp::IgmpPacket::new_checked(&mut l4[..]) {
                g.fill_checksum();
            }
            l4
        }
        IPPROTO_ICMPV6 => {
            let mut l4 = vec![0u8; icmpv6::HEADER_LEN];
            let (msg_type, code) = (flow.tp_src as u8, flow.tp_dst as u8);
            icmpv6::emit(&mut l4, msg_type, code, flow.igmp_group_ip4);
            if icmpv6::is_nd_message(msg_type, code) {
                l4.extend_from_slice(&flow.nd_target);
                for (kind, mac) in nd_options(flow) {
                    let mut option = [0u8; icmpv6::ND_OPT_UNIT];
                    icmpv6::emit_lla_option(&mut option, kind, mac);
                    l4.extend_from_slice(&option);
                }
            }
            let len = l4.len();
            if let Ok(mut i) = icmpv6::Icmpv6Packet::new_checked(&mut l4[..]) {
                i.fill_checksum(pseudo(len));
            }
            l4
        }
        _ => Vec::new(),
    }
}

/// The link-layer address options of an ND flow, in an order that
/// reproduces its `tcp_flags` (the type of the first option): that option
/// first, even with a zero address, then the other if its address is set.
fn nd_options(flow: &Flow) -> Vec<(u8, [u8; 6])> {
    let sll = (ND_OPT_SOURCE_LLA, flow.arp_sha);
    let tll = (ND_OPT_TARGET_LLA, flow.arp_tha);
    let (first, second) = match u8::try_from(flow.tcp_flags) {
        Ok(ND_OPT_SOURCE_LLA) => (Some(sll), tll),
        Ok(ND_OPT_TARGET_LLA) => (Some(tll), sll),
        _ => (None, tll),
    };
    let mut options = Vec::with_capacity(2);
    match first {
        Some(opt) => options.push(opt),
        None if sll.1 != [0; 6] => options.push(sll),
        None => {}
    }
    if second.1 != [0; 6] {
        options.push(second);
    }
    options
}

#[cfg(test)]
pub(crate) mod tests;
