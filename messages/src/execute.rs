//! Datapath actions applied to a frame, for the userspace datapath: masked
//! header rewrites (OVS's `odp_execute_masked_set_action`), VLAN and
//! MPLS pushes and pops.
//!
//! Rewrites change only the masked bits and keep every checksum right:
//! the IPv4 header checksum, and TCP, UDP (unless 0, "no checksum") and
//! ICMPv6 checksums when an address in their pseudo-header changes. Unlike
//! OVS, upper-layer checksums of later IP fragments are left alone, since
//! those frames carry no upper-layer header. A destination change behind an
//! IPv6 routing header with segments left does not touch the checksum, as
//! the pseudo-header holds the final destination (as in OVS). On error the
//! frame is unchanged.

use crate::extract::{extract_with_layers, FrameLayers};
use crate::flow::*;
use crate::odp::{ArpKey, EthKey, Ipv4Key, Ipv6Key, NdKey, PortsKey, SetHeader};
use crate::wire::icmpv6::{ND_OPT_SOURCE_LLA, ND_OPT_TARGET_LLA};
use crate::wire::{
    checksum, ipv6, ArpPacket, EthernetFrame, Icmpv4Packet, Icmpv6Packet, IgmpPacket, Ipv4Packet,
    Ipv6Packet, NdMessage, SctpPacket, TcpPacket, UdpPacket,
};

/// Why an action could not be applied to a frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    /// The frame lacks the header the action writes.
    #[error("{action}: the frame has no {header} header: {reason}")]
    NoHeader {
        action: &'static str,
        header: &'static str,
        reason: String,
    },
    /// The mask selects bits that cannot be written.
    #[error("{action}: cannot write {field}: {reason}")]
    BadMask {
        action: &'static str,
        field: &'static str,
        reason: &'static str,
    },
    /// The action sets packet metadata, which is not in the frame.
    #[error("{action}: sets packet metadata, not a header field; the datapath applies it")]
    Metadata { action: &'static str },
    /// A push_vlan TPID that is not 802.1Q's or 802.1ad's.
    #[error("push_vlan: TPID {tpid:#06x} is neither 0x8100 nor 0x88a8")]
    NotVlanTpid { tpid: u16 },
    /// A push_mpls EtherType that is not MPLS's.
    #[error("push_mpls: EtherType {ethertype:#06x} is neither 0x8847 nor 0x8848")]
    NotMplsEthertype { ethertype: u16 },
    /// An action this datapath cannot run.
    #[error("{action}: not supported by this datapath")]
    Unsupported { action: &'static str },
}

fn no_header(
    action: &'static str,
    header: &'static str,
    reason: impl Into<String>,
) -> ExecuteError {
    ExecuteError::NoHeader {
        action,
        header,
        reason: reason.into(),
    }
}

fn masked_u8(key: u8, mask: u8, old: u8) -> u8 {
    (key & mask) | (old & !mask)
}

fn masked_u16(key: u16, mask: u16, old: u16) -> u16 {
    (key & mask) | (old & !mask)
}

fn masked_u32(key: u32, mask: u32, old: u32) -> u32 {
    (key & mask) | (old & !mask)
}

fn masked_bytes<const N: usize>(key: [u8; N], mask: [u8; N], old: [u8; N]) -> [u8; N] {
    std::array::from_fn(|i| (key[i] & mask[i]) | (old[i] & !mask[i]))
}

/// Applies a masked set action to `frame`.
pub fn apply_set_masked(frame: &mut [u8], set: &SetHeader) -> Result<(), ExecuteError> {
    if let SetHeader::Ethernet { key, mask } = set {
        // At the frame's start: nothing to parse.
        return set_ethernet(frame, key, mask);
    }
    let (flow, layers) = extract_with_layers(frame, &Flow::default());
    match set {
        SetHeader::Ethernet { key, mask } => set_ethernet(frame, key, mask),
        SetHeader::Ipv4 { key, mask } => set_ipv4(frame, &flow, &layers, key, mask),
        SetHeader::Ipv6 { key, mask } => set_ipv6(frame, &flow, &layers, key, mask),
        SetHeader::Tcp { key, mask } => set_ports(frame, &flow, &layers, IPPROTO_TCP, key, mask),
        SetHeader::Udp { key, mask } => set_ports(frame, &flow, &layers, IPPROTO_UDP, key, mask),
        SetHeader::Sctp { key, mask } => set_ports(frame, &flow, &layers, IPPROTO_SCTP, key, mask),
        SetHeader::Arp { key, mask } => set_arp(frame, &flow, &layers, key, mask),
        SetHeader::Nd { key, mask } => set_nd(frame, &flow, &layers, key, mask),
        SetHeader::SkbPriority { .. } => Err(ExecuteError::Metadata {
            action: "set skb_priority",
        }),
        SetHeader::SkbMark { .. } => Err(ExecuteError::Metadata {
            action: "set skb_mark",
        }),
    }
}

fn set_ethernet(frame: &mut [u8], key: &EthKey, mask: &EthKey) -> Result<(), ExecuteError> {
    let mut eth = EthernetFrame::new_checked(frame)
        .map_err(|e| no_header("set eth", "Ethernet", e.to_string()))?;
    eth.set_src(masked_bytes(key.src, mask.src, eth.src()));
    eth.set_dst(masked_bytes(key.dst, mask.dst, eth.dst()));
    Ok(())
}

/// The IP header (from L3 to the end of the IP packet) and the L4 offset
/// within it, if `flow` is IP of `dl_type` with a valid header.
fn ip_bounds(
    action: &'static str,
    header: &'static str,
    flow: &Flow,
    layers: &FrameLayers,
    dl_type: u16,
) -> Result<(usize, usize, usize), ExecuteError> {
    if flow.dl_type != dl_type {
        return Err(no_header(
            action,
            header,
            format!("its dl_type is {:#06x}", flow.dl_type),
        ));
    }
    match (layers.l3, layers.l4) {
        (Some(l3), Some(l4)) => Ok((l3, l4, layers.l3_end)),
        _ => Err(no_header(
            action,
            header,
            "the header is truncated or malformed",
        )),
    }
}

/// Updates the L4 checksum that covers pseudo-header bytes changing from
/// `old` to `new`, if the frame has such an L4 header.
fn adjust_l4_checksum(
    frame: &mut [u8],
    flow: &Flow,
    l4: usize,
    end: usize,
    old: &[u8],
    new: &[u8],
) {
    if flow.nw_frag & FLOW_NW_FRAG_LATER != 0 {
        return;
    }
    let Some(segment) = frame.get_mut(l4..end) else {
        return;
    };
    match flow.nw_proto {
        IPPROTO_TCP => {
            if let Ok(mut tcp) = TcpPacket::new_checked(segment) {
                tcp.adjust_checksum(old, new);
            }
        }
        IPPROTO_UDP => {
            if let Ok(mut udp) = UdpPacket::new_checked(segment) {
                udp.adjust_checksum(old, new);
            }
        }
        IPPROTO_ICMPV6 if flow.is_ipv6() => {
            if let Ok(mut icmp) = Icmpv6Packet::new_checked(segment) {
                icmp.adjust_checksum(old, new);
            }
        }
        _ => {}
    }
}

fn set_ipv4(
    frame: &mut [u8],
    flow: &Flow,
    layers: &FrameLayers,
    key: &Ipv4Key,
    mask: &Ipv4Key,
) -> Result<(), ExecuteError> {
    const ACTION: &str = "set ipv4";
    if mask.proto != 0 {
        return Err(read_only(ACTION, "proto"));
    }
    if mask.frag != 0 {
        return Err(read_only(ACTION, "frag"));
    }
    let (l3, l4, end) = ip_bounds(ACTION, "IPv4", flow, layers, ETH_TYPE_IP)?;
    let src = masked_u32(key.src, mask.src, flow.nw_src);
    let dst = masked_u32(key.dst, mask.dst, flow.nw_dst);
    for (old, new) in [(flow.nw_src, src), (flow.nw_dst, dst)] {
        adjust_l4_checksum(frame, flow, l4, end, &old.to_be_bytes(), &new.to_be_bytes());
    }
    let packet = frame.get_mut(l3..end).unwrap_or(&mut []);
    let mut ip =
        Ipv4Packet::new_checked(packet).map_err(|e| no_header(ACTION, "IPv4", e.to_string()))?;
    ip.set_src(src);
    ip.set_dst(dst);
    ip.set_tos(masked_u8(key.tos, mask.tos, ip.tos()));
    ip.set_ttl(masked_u8(key.ttl, mask.ttl, ip.ttl()));
    Ok(())
}

fn read_only(action: &'static str, field: &'static str) -> ExecuteError {
    ExecuteError::BadMask {
        action,
        field,
        reason: "the datapath cannot rewrite it",
    }
}

fn set_ipv6(
    frame: &mut [u8],
    flow: &Flow,
    layers: &FrameLayers,
    key: &Ipv6Key,
    mask: &Ipv6Key,
) -> Result<(), ExecuteError> {
    const ACTION: &str = "set ipv6";
    if mask.proto != 0 {
        return Err(read_only(ACTION, "proto"));
    }
    if mask.frag != 0 {
        return Err(read_only(ACTION, "frag"));
    }
    if mask.label & !ipv6::FLOW_LABEL_MASK != 0 {
        return Err(ExecuteError::BadMask {
            action: ACTION,
            field: "label",
            reason: "the mask has bits beyond the 20-bit flow label",
        });
    }
    let (l3, l4, end) = ip_bounds(ACTION, "IPv6", flow, layers, ETH_TYPE_IPV6)?;
    let src = masked_bytes(key.src, mask.src, flow.ipv6_src);
    let dst = masked_bytes(key.dst, mask.dst, flow.ipv6_dst);
    adjust_l4_checksum(frame, flow, l4, end, &flow.ipv6_src, &src);
    if !layers.ipv6_routing {
        adjust_l4_checksum(frame, flow, l4, end, &flow.ipv6_dst, &dst);
    }
    let packet = frame.get_mut(l3..end).unwrap_or(&mut []);
    let mut ip =
        Ipv6Packet::new_checked(packet).map_err(|e| no_header(ACTION, "IPv6", e.to_string()))?;
    ip.set_src(src);
    ip.set_dst(dst);
    ip.set_traffic_class(masked_u8(key.tclass, mask.tclass, ip.traffic_class()));
    ip.set_flow_label(masked_u32(key.label, mask.label, ip.flow_label()));
    ip.set_hop_limit(masked_u8(key.hlimit, mask.hlimit, ip.hop_limit()));
    Ok(())
}

/// The L4 header of `proto` in a frame of `flow`, as a mutable slice.
fn l4_segment<'a>(
    frame: &'a mut [u8],
    flow: &Flow,
    layers: &FrameLayers,
    action: &'static str,
    header: &'static str,
    proto: u8,
) -> Result<&'a mut [u8], ExecuteError> {
    if !flow.is_ip_any() {
        return Err(no_header(
            action,
            header,
            format!("not an IP frame (dl_type {:#06x})", flow.dl_type),
        ));
    }
    let Some(l4) = layers.l4 else {
        return Err(no_header(
            action,
            header,
            "the IP header is truncated or malformed",
        ));
    };
    if flow.nw_frag & FLOW_NW_FRAG_LATER != 0 {
        return Err(no_header(action, header, "a later IP fragment"));
    }
    if flow.nw_proto != proto {
        return Err(no_header(
            action,
            header,
            format!("the IP protocol is {}", flow.nw_proto),
        ));
    }
    frame
        .get_mut(l4..layers.l3_end)
        .ok_or_else(|| no_header(action, header, "the header is truncated"))
}

fn set_ports(
    frame: &mut [u8],
    flow: &Flow,
    layers: &FrameLayers,
    proto: u8,
    key: &PortsKey,
    mask: &PortsKey,
) -> Result<(), ExecuteError> {
    let (action, header) = match proto {
        IPPROTO_TCP => ("set tcp", "TCP"),
        IPPROTO_UDP => ("set udp", "UDP"),
        _ => ("set sctp", "SCTP"),
    };
    let segment = l4_segment(frame, flow, layers, action, header, proto)?;
    let truncated = |e: crate::wire::WireError| no_header(action, header, e.to_string());
    let src = masked_u16(key.src, mask.src, flow.tp_src);
    let dst = masked_u16(key.dst, mask.dst, flow.tp_dst);
    match proto {
        IPPROTO_TCP => {
            let mut tcp = TcpPacket::new_checked(segment).map_err(truncated)?;
            tcp.set_src_port(src);
            tcp.set_dst_port(dst);
        }
        IPPROTO_UDP => {
            let mut udp = UdpPacket::new_checked(segment).map_err(truncated)?;
            udp.set_src_port(src);
            udp.set_dst_port(dst);
        }
        _ => {
            let mut sctp = SctpPacket::new_checked(segment).map_err(truncated)?;
            if (src, dst) != (sctp.src_port(), sctp.dst_port()) {
                sctp.set_src_port(src);
                sctp.set_dst_port(dst);
            }
        }
    }
    Ok(())
}

fn set_arp(
    frame: &mut [u8],
    flow: &Flow,
    layers: &FrameLayers,
    key: &ArpKey,
    mask: &ArpKey,
) -> Result<(), ExecuteError> {
    const ACTION: &str = "set arp";
    if !flow.is_arp() {
        return Err(no_header(
            ACTION,
            "ARP",
            format!("its dl_type is {:#06x}", flow.dl_type),
        ));
    }
    let packet = layers
        .l3
        .and_then(|l3| frame.get_mut(l3..))
        .unwrap_or(&mut []);
    let mut arp =
        ArpPacket::new_checked(packet).map_err(|e| no_header(ACTION, "ARP", e.to_string()))?;
    arp.set_operation(masked_u16(key.op, mask.op, arp.operation()));
    arp.set_sha(masked_bytes(key.sha, mask.sha, arp.sha()));
    arp.set_spa(masked_u32(key.sip, mask.sip, arp.spa()));
    arp.set_tha(masked_bytes(key.tha, mask.tha, arp.tha()));
    arp.set_tpa(masked_u32(key.tip, mask.tip, arp.tpa()));
    Ok(())
}

fn set_nd(
    frame: &mut [u8],
    flow: &Flow,
    layers: &FrameLayers,
    key: &NdKey,
    mask: &NdKey,
) -> Result<(), ExecuteError> {
    const ACTION: &str = "set nd";
    if !flow.is_ipv6() {
        return Err(no_header(
            ACTION,
            "neighbor discovery",
            format!("not an IPv6 frame (dl_type {:#06x})", flow.dl_type),
        ));
    }
    let segment = l4_segment(
        frame,
        flow,
        layers,
        ACTION,
        "neighbor discovery",
        IPPROTO_ICMPV6,
    )?;
    if !flow.is_nd() {
        return Err(no_header(
            ACTION,
            "neighbor discovery",
            format!("ICMPv6 type {} code {}", flow.tp_src, flow.tp_dst),
        ));
    }
    let mut nd = NdMessage::new_checked(segment)
        .map_err(|e| no_header(ACTION, "neighbor discovery", e.to_string()))?;
    nd.set_target(masked_bytes(key.target, mask.target, nd.target()));
    // As in OVS, a link-layer address is rewritten only where the message
    // has that option; none is added.
    for (kind, key, mask) in [
        (ND_OPT_SOURCE_LLA, key.sll, mask.sll),
        (ND_OPT_TARGET_LLA, key.tll, mask.tll),
    ] {
        if let Some(old) = nd.lla(kind) {
            nd.set_lla(kind, masked_bytes(key, mask, old));
        }
    }
    Ok(())
}

/// Inserts a VLAN tag with `tpid` and `tci` right after the MAC addresses,
/// outside any tag already there. The CFI/DEI bit of `tci` (OVS's "tag
/// present") is not written to the wire.
pub fn push_vlan(frame: &mut Vec<u8>, tpid: u16, tci: u16) -> Result<(), ExecuteError> {
    if !eth_type_vlan(tpid) {
        return Err(ExecuteError::NotVlanTpid { tpid });
    }
    EthernetFrame::new_checked(&frame[..])
        .map_err(|e| no_header("push_vlan", "Ethernet", e.to_string()))?;
    let at = 2 * crate::wire::ethernet::ADDR_LEN;
    let mut tag = [0u8; 4];
    tag[..2].copy_from_slice(&tpid.to_be_bytes());
    tag[2..].copy_from_slice(&(tci & !VLAN_CFI).to_be_bytes());
    frame.splice(at..at, tag);
    Ok(())
}

/// Where the EtherType that says what follows the L2 headers lies: after
/// the addresses and any VLAN tags (OVS puts an MPLS label stack there).
fn l2_ethertype_at(frame: &[u8], action: &'static str) -> Result<usize, ExecuteError> {
    EthernetFrame::new_checked(frame).map_err(|e| no_header(action, "Ethernet", e.to_string()))?;
    let mut at = 2 * crate::wire::ethernet::ADDR_LEN;
    while at + crate::wire::vlan::TAG_LEN + 2 <= frame.len()
        && eth_type_vlan(u16::from_be_bytes([frame[at], frame[at + 1]]))
    {
        at += crate::wire::vlan::TAG_LEN;
    }
    Ok(at)
}

/// OVS's `push_mpls`: a label stack entry goes in front of the stack (or
/// of the L3 header, for a packet that had none), and the EtherType
/// before it becomes `ethertype`.
pub fn push_mpls(frame: &mut Vec<u8>, lse: u32, ethertype: u16) -> Result<(), ExecuteError> {
    if !eth_type_mpls(ethertype) {
        return Err(ExecuteError::NotMplsEthertype { ethertype });
    }
    let at = l2_ethertype_at(frame, "push_mpls")?;
    frame[at..at + 2].copy_from_slice(&ethertype.to_be_bytes());
    frame.splice(at + 2..at + 2, lse.to_be_bytes());
    Ok(())
}

/// OVS's `pop_mpls`: the outermost label stack entry comes off, and the
/// EtherType before it becomes `ethertype`.
pub fn pop_mpls(frame: &mut Vec<u8>, ethertype: u16) -> Result<(), ExecuteError> {
    let at = l2_ethertype_at(frame, "pop_mpls")?;
    let current = u16::from_be_bytes([frame[at], frame[at + 1]]);
    if !eth_type_mpls(current) {
        return Err(no_header(
            "pop_mpls",
            "MPLS",
            format!("its EtherType is {current:#06x}"),
        ));
    }
    if frame.len() < at + 2 + crate::wire::mpls::LSE_LEN {
        return Err(no_header(
            "pop_mpls",
            "MPLS",
            "the label stack entry is truncated",
        ));
    }
    frame[at..at + 2].copy_from_slice(&ethertype.to_be_bytes());
    frame.drain(at + 2..at + 2 + crate::wire::mpls::LSE_LEN);
    Ok(())
}

/// Rewrites the outermost label stack entry whole (OVS's `set_mpls_lse`).
pub fn set_mpls(frame: &mut [u8], lse: u32) -> Result<(), ExecuteError> {
    let at = l2_ethertype_at(frame, "set(mpls)")?;
    let current = u16::from_be_bytes([frame[at], frame[at + 1]]);
    if !eth_type_mpls(current) || frame.len() < at + 2 + crate::wire::mpls::LSE_LEN {
        return Err(no_header(
            "set(mpls)",
            "MPLS",
            format!("its EtherType is {current:#06x} or the entry is truncated"),
        ));
    }
    frame[at + 2..at + 6].copy_from_slice(&lse.to_be_bytes());
    Ok(())
}

/// Removes the outermost VLAN tag.
pub fn pop_vlan(frame: &mut Vec<u8>) -> Result<(), ExecuteError> {
    let at = 2 * crate::wire::ethernet::ADDR_LEN;
    let ethertype = EthernetFrame::new_checked(&frame[..])
        .map_err(|e| no_header("pop_vlan", "VLAN", e.to_string()))?
        .ethertype();
    if !eth_type_vlan(ethertype) {
        return Err(no_header(
            "pop_vlan",
            "VLAN",
            format!("its EtherType is {ethertype:#06x}"),
        ));
    }
    // The tag and the EtherType after it must both be there.
    if frame.len() < at + crate::wire::vlan::TAG_LEN + 2 {
        return Err(no_header("pop_vlan", "VLAN", "the tag is truncated"));
    }
    frame.drain(at..at + crate::wire::vlan::TAG_LEN);
    Ok(())
}

/// The first header of `frame` whose checksum is wrong, if any: the IPv4
/// header, then the TCP, UDP, SCTP, ICMP, IGMP or ICMPv6 header. Checksums
/// that cannot be checked from one frame are skipped: those of fragments
/// (they cover the reassembled packet) and those behind an IPv6 routing
/// header with segments left (their pseudo-header has another address).
pub fn bad_checksum(frame: &[u8]) -> Option<&'static str> {
    let (flow, layers) = extract_with_layers(frame, &Flow::default());
    let (Some(l3), Some(l4)) = (layers.l3, layers.l4) else {
        return None;
    };
    let end = layers.l3_end;
    let packet = frame.get(l3..end)?;
    let segment = frame.get(l4..end)?;
    let pseudo = if flow.is_ip() {
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        if !ip.verify_checksum() {
            return Some("ipv4");
        }
        checksum::pseudo_header_v4(
            flow.nw_src,
            flow.nw_dst,
            flow.nw_proto,
            segment.len() as u16,
        )
    } else {
        ipv6::pseudo_header(&flow.ipv6_src, &flow.ipv6_dst, flow.nw_proto, segment.len())
    };
    if flow.nw_frag != 0 || layers.ipv6_routing {
        return None;
    }
    let ok = match flow.nw_proto {
        IPPROTO_TCP => TcpPacket::new_checked(segment).map(|t| t.verify_checksum(pseudo)),
        IPPROTO_UDP => UdpPacket::new_checked(segment).map(|u| u.verify_checksum(pseudo)),
        IPPROTO_SCTP => SctpPacket::new_checked(segment).map(|s| s.verify_checksum()),
        IPPROTO_ICMP => Icmpv4Packet::new_checked(segment).map(|i| i.verify_checksum()),
        IPPROTO_IGMP => IgmpPacket::new_checked(segment).map(|g| g.verify_checksum()),
        IPPROTO_ICMPV6 if flow.is_ipv6() => {
            Icmpv6Packet::new_checked(segment).map(|i| i.verify_checksum(pseudo))
        }
        _ => Ok(true),
    };
    match ok {
        Ok(false) => Some(match flow.nw_proto {
            IPPROTO_TCP => "tcp",
            IPPROTO_UDP => "udp",
            IPPROTO_SCTP => "sctp",
            IPPROTO_ICMP => "icmp",
            IPPROTO_IGMP => "igmp",
            _ => "icmpv6",
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
