//! `Flow` (+ mask) ⇄ flow key attributes, following the kernel's rules.
//!
//! The key decides the *shape* (which attributes exist, how VLAN tags
//! nest); the mask has the same shape with mask values. The kernel refuses
//! a key that lacks a nested attribute its `eth_type`/`proto` implies (an
//! IPv4/TCP key needs `tcp` and `tcp_flags`, ARP needs `arp`), and a mask
//! attribute whose prerequisite is not matched exactly (an `ipv4` mask needs
//! an exact `eth_type` mask, a `tcp` mask an exact `proto` mask). Metadata
//! that is zero in both key and mask is left out (the kernel treats an
//! absent attribute as 0 in the key and wildcarded in the mask).

use netlink_packet_core::DecodeError;

use super::consts::*;
use super::key::{CtTuple4, CtTuple6, KeyAttr, TunnelAttr};
use crate::dpif::PacketMetadata;
use crate::flow::*;
use crate::odp::{ArpKey, EthKey, Ipv4Key, Ipv6Key, NdKey, PortsKey};

const IPV6_LABEL_MASK: u32 = 0x000f_ffff;

/// The mask the kernel will accept for `key`, at least as narrow as
/// `mask`: prerequisites of matched fields become exact (matching a field
/// already implies its prerequisites, so this never changes which packets
/// match), VLAN tags are matched by TPID and presence, the input port is
/// exact (the kernel forces it), and the fragment type is all or nothing.
pub fn kernel_mask(key: &Flow, mask: &Flow) -> Flow {
    let mut m = *mask;
    m.in_port = u32::MAX;
    for (kv, mv) in key.vlans.iter().zip(m.vlans.iter_mut()) {
        if kv.tci & VLAN_CFI == 0 {
            break;
        }
        mv.tpid = u16::MAX;
        mv.tci |= VLAN_CFI;
    }
    if key.vlans[0].tci & VLAN_CFI == 0 && eth_type_vlan(key.dl_type) {
        m.dl_type = u16::MAX;
    }
    if m.nw_frag != 0 {
        m.nw_frag = FLOW_NW_FRAG_MASK;
    }
    let l4 = m.tp_src != 0 || m.tp_dst != 0 || m.tcp_flags != 0;
    let nd =
        key.is_ipv6() && (m.nd_target != [0; 16] || m.arp_sha != [0; 6] || m.arp_tha != [0; 6]);
    if nd {
        m.tp_src |= 0xff;
    }
    if l4 || nd {
        m.nw_proto = u8::MAX;
    }
    let l3 = m.nw_src != 0
        || m.nw_dst != 0
        || m.ipv6_src != [0; 16]
        || m.ipv6_dst != [0; 16]
        || m.ipv6_label != 0
        || m.nw_frag != 0
        || m.nw_tos != 0
        || m.nw_ttl != 0
        || m.nw_proto != 0
        || m.arp_sha != [0; 6]
        || m.arp_tha != [0; 6]
        || m.mpls_lse != [0; FLOW_MPLS_LSE_SLOTS];
    if l3 {
        m.dl_type = u16::MAX;
    }
    m
}

fn odp_frag(nw_frag: u8) -> u8 {
    if nw_frag & FLOW_NW_FRAG_ANY == 0 {
        OVS_FRAG_TYPE_NONE
    } else if nw_frag & FLOW_NW_FRAG_LATER == 0 {
        OVS_FRAG_TYPE_FIRST
    } else {
        OVS_FRAG_TYPE_LATER
    }
}

fn odp_frag_mask(nw_frag_mask: u8) -> u8 {
    if nw_frag_mask != 0 {
        u8::MAX
    } else {
        0
    }
}

/// The key attributes of `key` (no mask): what an upcall carries and what
/// `OVS_FLOW_ATTR_KEY` holds.
pub fn key_to_attrs(key: &Flow) -> Vec<KeyAttr> {
    to_attrs(key, key, false)
}

/// The key and mask attributes for installing a megaflow. The mask is
/// first made acceptable to the kernel with [`kernel_mask`]; the key is
/// sent unmasked, because the kernel checks that the key has every nested
/// attribute its unmasked `eth_type`/`proto` implies (it masks it itself).
pub fn megaflow_to_attrs(key: &Flow, mask: &Flow) -> (Vec<KeyAttr>, Vec<KeyAttr>) {
    let mask = kernel_mask(key, mask);
    // A matched conntrack field needs its key attribute even when the
    // key's value is 0 (`ct_state=-trk`): the kernel refuses a mask
    // attribute the key lacks.
    let mut shape = *key;
    shape.ct_state |= mask.ct_state;
    shape.ct_zone |= mask.ct_zone;
    shape.ct_mark |= mask.ct_mark;
    for (s, m) in shape.ct_label.iter_mut().zip(mask.ct_label) {
        *s |= m;
    }
    shape.ct_nw_proto |= mask.ct_nw_proto;
    (to_attrs(&shape, key, false), to_attrs(&shape, &mask, true))
}

/// The key and mask attributes the kernel reports for a megaflow it holds:
/// both shaped by the masked key, as a flow dump returns them.
pub fn installed_megaflow_attrs(key: &Flow, mask: &Flow) -> (Vec<KeyAttr>, Vec<KeyAttr>) {
    let mask = kernel_mask(key, mask);
    let key = key.masked(&mask);
    (to_attrs(&key, &key, false), to_attrs(&key, &mask, true))
}

/// Builds attributes shaped by `flow` with values from `data` (`flow`
/// itself for a key, the mask for a mask).
fn to_attrs(flow: &Flow, data: &Flow, is_mask: bool) -> Vec<KeyAttr> {
    let mut out = Vec::new();
    push_metadata(&mut out, flow, data, is_mask);
    out.push(KeyAttr::Ethernet(EthKey {
        src: data.dl_src,
        dst: data.dl_dst,
    }));
    push_vlans_and_l3(&mut out, flow, data, is_mask, 0);
    out
}

/// The key attributes of a packet's metadata alone: what an execute
/// carries (the kernel parses the headers from the packet itself, as with
/// OVS's `odp_key_from_dp_packet`).
pub fn metadata_to_attrs(md: &PacketMetadata) -> Vec<KeyAttr> {
    let flow = md.to_flow();
    let mut out = Vec::new();
    push_metadata(&mut out, &flow, &flow, false);
    out
}

/// Appends the metadata attributes, shaped by `flow` with values from
/// `data`.
fn push_metadata(out: &mut Vec<KeyAttr>, flow: &Flow, data: &Flow, is_mask: bool) {
    out.push(KeyAttr::RecircId(data.recirc_id));
    if flow.dp_hash != 0 || (is_mask && data.dp_hash != 0) {
        out.push(KeyAttr::DpHash(data.dp_hash));
    }
    out.push(KeyAttr::Priority(data.skb_priority));
    if flow.tnl_dst_is_set() {
        let map = crate::tlv::current();
        out.push(KeyAttr::Tunnel(if is_mask {
            crate::tunnel::tunnel_mask_attrs(flow, data, &map)
        } else {
            crate::tunnel::tunnel_attrs(data, None, &map)
        }));
    }
    out.push(KeyAttr::InPort(data.in_port));
    out.push(KeyAttr::SkbMark(data.pkt_mark));
    if flow.ct_state != 0 || data.ct_state != 0 {
        out.push(KeyAttr::CtState(data.ct_state as u32));
    }
    if flow.ct_zone != 0 || data.ct_zone != 0 {
        out.push(KeyAttr::CtZone(data.ct_zone));
    }
    if flow.ct_mark != 0 || data.ct_mark != 0 {
        out.push(KeyAttr::CtMark(data.ct_mark));
    }
    if flow.ct_label != [0; 16] || data.ct_label != [0; 16] {
        out.push(KeyAttr::CtLabels(
            u128::from_be_bytes(data.ct_label).to_ne_bytes(),
        ));
    }
    // The original direction's tuple, for a tracked packet (OVS's
    // odp_flow_key_from_flow__: when the key has a ct_nw_proto).
    if flow.ct_nw_proto != 0 {
        if flow.dl_type == ETH_TYPE_IP {
            out.push(KeyAttr::CtOrigTuple4(CtTuple4 {
                src: data.ct_nw_src,
                dst: data.ct_nw_dst,
                src_port: data.ct_tp_src,
                dst_port: data.ct_tp_dst,
                proto: data.ct_nw_proto,
            }));
        } else if flow.dl_type == ETH_TYPE_IPV6 {
            out.push(KeyAttr::CtOrigTuple6(CtTuple6 {
                src: data.ct_ipv6_src,
                dst: data.ct_ipv6_dst,
                src_port: data.ct_tp_src,
                dst_port: data.ct_tp_dst,
                proto: data.ct_nw_proto,
            }));
        }
    }
}

/// Appends the attributes from VLAN tag `depth` inward: a tag as
/// `eth_type(tpid),vlan(tci),encap(...)`, then `eth_type` and L3/L4.
fn push_vlans_and_l3(
    out: &mut Vec<KeyAttr>,
    flow: &Flow,
    data: &Flow,
    is_mask: bool,
    depth: usize,
) {
    if depth < FLOW_MAX_VLAN_HEADERS {
        let tag = flow.vlans[depth];
        let truncated = tag.tci & VLAN_CFI == 0 && eth_type_vlan(flow.dl_type);
        if tag.tci & VLAN_CFI != 0 || (truncated && depth == 0) {
            let tpid = if truncated { flow.dl_type } else { tag.tpid };
            let tpid = if is_mask {
                if truncated {
                    data.dl_type
                } else {
                    data.vlans[depth].tpid
                }
            } else {
                tpid
            };
            out.push(KeyAttr::EtherType(tpid));
            out.push(KeyAttr::Vlan(if truncated {
                0
            } else {
                data.vlans[depth].tci
            }));
            let mut inner = Vec::new();
            if !truncated {
                push_vlans_and_l3(&mut inner, flow, data, is_mask, depth + 1);
            }
            out.push(KeyAttr::Encap(inner));
            return;
        }
    }
    if flow.dl_type < ETH_TYPE_MIN {
        // 802.2 frames have no EtherType: the key omits it, the mask
        // carries it (exact means "not Ethernet II").
        if is_mask {
            out.push(KeyAttr::EtherType(data.dl_type));
        }
        return;
    }
    out.push(KeyAttr::EtherType(data.dl_type));
    let l3_mask_ok = !is_mask || data.dl_type == u16::MAX;
    let l4_mask_ok = l3_mask_ok && (!is_mask || data.nw_proto == u8::MAX);
    if flow.is_ip() {
        if l3_mask_ok {
            out.push(KeyAttr::Ipv4(Ipv4Key {
                src: data.nw_src,
                dst: data.nw_dst,
                proto: data.nw_proto,
                tos: data.nw_tos,
                ttl: data.nw_ttl,
                frag: if is_mask {
                    odp_frag_mask(data.nw_frag)
                } else {
                    odp_frag(data.nw_frag)
                },
            }));
        }
    } else if flow.is_ipv6() {
        if l3_mask_ok {
            out.push(KeyAttr::Ipv6(Ipv6Key {
                src: data.ipv6_src,
                dst: data.ipv6_dst,
                label: data.ipv6_label & IPV6_LABEL_MASK,
                proto: data.nw_proto,
                tclass: data.nw_tos,
                hlimit: data.nw_ttl,
                frag: if is_mask {
                    odp_frag_mask(data.nw_frag)
                } else {
                    odp_frag(data.nw_frag)
                },
            }));
        }
    } else if flow.is_arp() {
        if l3_mask_ok {
            out.push(KeyAttr::Arp(ArpKey {
                sip: data.nw_src,
                tip: data.nw_dst,
                op: data.nw_proto as u16,
                sha: data.arp_sha,
                tha: data.arp_tha,
            }));
        }
        return;
    } else if eth_type_mpls(flow.dl_type) {
        if l3_mask_ok {
            let n = flow.mpls_depth();
            out.push(KeyAttr::Mpls(data.mpls_lse[..n].to_vec()));
        }
        return;
    } else {
        return;
    }
    if !flow.has_l4() || !l4_mask_ok {
        return;
    }
    let ports = PortsKey {
        src: data.tp_src,
        dst: data.tp_dst,
    };
    match flow.nw_proto {
        IPPROTO_TCP => {
            out.push(KeyAttr::Tcp(ports));
            out.push(KeyAttr::TcpFlags(data.tcp_flags & 0x0fff));
        }
        IPPROTO_UDP => out.push(KeyAttr::Udp(ports)),
        IPPROTO_SCTP => out.push(KeyAttr::Sctp(ports)),
        IPPROTO_ICMP if flow.is_ip() => out.push(KeyAttr::Icmp {
            icmp_type: data.tp_src as u8,
            code: data.tp_dst as u8,
        }),
        IPPROTO_ICMPV6 if flow.is_ipv6() => {
            out.push(KeyAttr::Icmpv6 {
                icmp_type: data.tp_src as u8,
                code: data.tp_dst as u8,
            });
            let nd = flow.tp_src == ND_NEIGHBOR_SOLICIT || flow.tp_src == ND_NEIGHBOR_ADVERT;
            if nd && (!is_mask || data.tp_src & 0xff == 0xff) {
                out.push(KeyAttr::Nd(NdKey {
                    target: data.nd_target,
                    sll: data.arp_sha,
                    tll: data.arp_tha,
                }));
            }
        }
        _ => {}
    }
}

fn bad(what: &str, why: impl std::fmt::Display) -> DecodeError {
    DecodeError::from(format!("{what}: {why}"))
}

fn flow_frag(odp: u8) -> Result<u8, DecodeError> {
    match odp {
        OVS_FRAG_TYPE_NONE => Ok(0),
        OVS_FRAG_TYPE_FIRST => Ok(FLOW_NW_FRAG_ANY),
        OVS_FRAG_TYPE_LATER => Ok(FLOW_NW_FRAG_ANY | FLOW_NW_FRAG_LATER),
        other => Err(bad("ip frag", format!("unknown fragment type {other}"))),
    }
}

fn flow_frag_mask(odp_mask: u8) -> u8 {
    let mut m = 0;
    if odp_mask & OVS_FRAG_TYPE_FIRST != 0 {
        m |= FLOW_NW_FRAG_ANY;
    }
    if odp_mask & OVS_FRAG_TYPE_LATER != 0 {
        m |= FLOW_NW_FRAG_LATER;
    }
    m
}

/// Decodes key attributes (from an upcall or a dump) into a `Flow`.
/// Attributes the `Flow` cannot hold (other than tunnel TTL/TOS/flags/ports,
/// which it has no fields for) are refused.
pub fn key_from_attrs(attrs: &[KeyAttr]) -> Result<Flow, DecodeError> {
    let mut flow = Flow::default();
    from_attrs(attrs, &mut flow, None, 0)?;
    Ok(flow)
}

/// Decodes mask attributes into a mask `Flow`. `None` (no
/// `OVS_FLOW_ATTR_MASK`) means every bit of the key is significant.
pub fn mask_from_attrs(key: &Flow, attrs: Option<&[KeyAttr]>) -> Result<Flow, DecodeError> {
    match attrs {
        Some(attrs) => {
            let mut mask = Flow::default();
            from_attrs(attrs, &mut mask, Some(key), 0)?;
            Ok(mask)
        }
        None => {
            let (_, mask) = megaflow_to_attrs(key, &exact_mask());
            let mut m = Flow::default();
            from_attrs(&mask, &mut m, Some(key), 0)?;
            Ok(m)
        }
    }
}

/// A mask with every bit set.
fn exact_mask() -> Flow {
    let mut m = Flow::default();
    for w in m.words_mut() {
        *w = u64::MAX;
    }
    m.pad_l2 = 0;
    m.pad_l4 = 0;
    m.pad_end = 0;
    m
}

/// Reads key attributes into `flow`, or mask attributes when `mask_of`
/// is the key they mask.
fn from_attrs(
    attrs: &[KeyAttr],
    flow: &mut Flow,
    mask_of: Option<&Flow>,
    depth: usize,
) -> Result<(), DecodeError> {
    let is_mask = mask_of.is_some();
    let encap = attrs.iter().find_map(|a| match a {
        KeyAttr::Encap(inner) => Some(inner),
        _ => None,
    });
    let mut saw_ethernet = false;
    let mut saw_ethertype = false;
    for attr in attrs {
        match attr {
            KeyAttr::Encap(_) => {}
            KeyAttr::Priority(x) => flow.skb_priority = *x,
            KeyAttr::InPort(x) => flow.in_port = *x,
            KeyAttr::SkbMark(x) => flow.pkt_mark = *x,
            KeyAttr::DpHash(x) => flow.dp_hash = *x,
            KeyAttr::RecircId(x) => flow.recirc_id = *x,
            KeyAttr::CtState(x) => {
                flow.ct_state = u8::try_from(*x)
                    .map_err(|_| bad("OVS_KEY_ATTR_CT_STATE", format!("{x:#x} has unknown bits")))?
            }
            KeyAttr::CtZone(x) => flow.ct_zone = *x,
            KeyAttr::CtMark(x) => flow.ct_mark = *x,
            KeyAttr::CtLabels(l) => flow.ct_label = u128::from_ne_bytes(*l).to_be_bytes(),
            KeyAttr::CtOrigTuple4(t) => {
                (flow.ct_nw_src, flow.ct_nw_dst) = (t.src, t.dst);
                (flow.ct_tp_src, flow.ct_tp_dst) = (t.src_port, t.dst_port);
                flow.ct_nw_proto = t.proto;
            }
            KeyAttr::CtOrigTuple6(t) => {
                (flow.ct_ipv6_src, flow.ct_ipv6_dst) = (t.src, t.dst);
                (flow.ct_tp_src, flow.ct_tp_dst) = (t.src_port, t.dst_port);
                flow.ct_nw_proto = t.proto;
            }
            KeyAttr::Tunnel(t) => {
                if let Some(TunnelAttr::Other(k, _)) =
                    t.iter().find(|a| matches!(a, TunnelAttr::Other(..)))
                {
                    return Err(bad(
                        "OVS_KEY_ATTR_TUNNEL",
                        format!("unsupported tunnel attribute {k}"),
                    ));
                }
                let map = crate::tlv::current();
                match mask_of {
                    None => crate::tunnel::tunnel_from_attrs(t, &map, flow),
                    Some(key) => crate::tunnel::tunnel_mask_from_attrs(t, key, &map, flow),
                }
                .map_err(|e| bad("OVS_KEY_ATTR_TUNNEL", e.to_string()))?;
            }
            KeyAttr::Ethernet(e) => {
                saw_ethernet = true;
                flow.dl_src = e.src;
                flow.dl_dst = e.dst;
            }
            KeyAttr::EtherType(t) => {
                saw_ethertype = true;
                match (encap, depth < FLOW_MAX_VLAN_HEADERS) {
                    (Some(_), true) => flow.vlans[depth].tpid = *t,
                    (Some(_), false) => {
                        return Err(bad(
                            "OVS_KEY_ATTR_ENCAP",
                            format!("more than {FLOW_MAX_VLAN_HEADERS} VLAN tags"),
                        ))
                    }
                    (None, _) => flow.dl_type = *t,
                }
            }
            KeyAttr::Vlan(tci) => {
                if encap.is_none() {
                    return Err(bad("OVS_KEY_ATTR_VLAN", "VLAN without ENCAP"));
                }
                if depth >= FLOW_MAX_VLAN_HEADERS {
                    return Err(bad(
                        "OVS_KEY_ATTR_VLAN",
                        format!("more than {FLOW_MAX_VLAN_HEADERS} VLAN tags"),
                    ));
                }
                flow.vlans[depth].tci = *tci;
            }
            KeyAttr::Ipv4(k) => {
                flow.nw_src = k.src;
                flow.nw_dst = k.dst;
                flow.nw_proto = k.proto;
                flow.nw_tos = k.tos;
                flow.nw_ttl = k.ttl;
                flow.nw_frag = if is_mask {
                    flow_frag_mask(k.frag)
                } else {
                    flow_frag(k.frag)?
                };
            }
            KeyAttr::Ipv6(k) => {
                if !is_mask && k.label & !IPV6_LABEL_MASK != 0 {
                    return Err(bad(
                        "OVS_KEY_ATTR_IPV6",
                        format!("flow label {:#x} wider than 20 bits", k.label),
                    ));
                }
                flow.ipv6_src = k.src;
                flow.ipv6_dst = k.dst;
                flow.ipv6_label = k.label & IPV6_LABEL_MASK;
                flow.nw_proto = k.proto;
                flow.nw_tos = k.tclass;
                flow.nw_ttl = k.hlimit;
                flow.nw_frag = if is_mask {
                    flow_frag_mask(k.frag)
                } else {
                    flow_frag(k.frag)?
                };
            }
            KeyAttr::Tcp(p) | KeyAttr::Udp(p) | KeyAttr::Sctp(p) => {
                flow.tp_src = p.src;
                flow.tp_dst = p.dst;
            }
            KeyAttr::TcpFlags(f) => flow.tcp_flags = f & 0x0fff,
            KeyAttr::Icmp { icmp_type, code } | KeyAttr::Icmpv6 { icmp_type, code } => {
                flow.tp_src = *icmp_type as u16;
                flow.tp_dst = *code as u16;
            }
            KeyAttr::Arp(k) => {
                if !is_mask && k.op > 0xff {
                    return Err(bad(
                        "OVS_KEY_ATTR_ARP",
                        format!("opcode {} does not fit in 8 bits", k.op),
                    ));
                }
                flow.nw_src = k.sip;
                flow.nw_dst = k.tip;
                flow.nw_proto = k.op as u8;
                flow.arp_sha = k.sha;
                flow.arp_tha = k.tha;
            }
            KeyAttr::Nd(k) => {
                flow.nd_target = k.target;
                flow.arp_sha = k.sll;
                flow.arp_tha = k.tll;
            }
            KeyAttr::Mpls(lses) => {
                if lses.len() > FLOW_MAX_MPLS_LABELS {
                    return Err(bad(
                        "OVS_KEY_ATTR_MPLS",
                        format!(
                            "{} labels, at most {FLOW_MAX_MPLS_LABELS} supported",
                            lses.len()
                        ),
                    ));
                }
                flow.mpls_lse[..lses.len()].copy_from_slice(lses);
            }
            KeyAttr::Other(k, _) => {
                return Err(bad("flow key", format!("unsupported attribute type {k}")))
            }
        }
    }
    if let Some(inner) = encap {
        if depth < FLOW_MAX_VLAN_HEADERS && flow.vlans[depth].tci & VLAN_CFI == 0 && !is_mask {
            // A truncated tag: the TPID is the packet's EtherType.
            if !inner.is_empty() {
                return Err(bad(
                    "OVS_KEY_ATTR_ENCAP",
                    "truncated VLAN header with nonempty encap",
                ));
            }
            flow.dl_type = flow.vlans[depth].tpid;
            flow.vlans[depth] = FlowVlan::default();
            return Ok(());
        }
        return from_attrs(inner, flow, mask_of, depth + 1);
    }
    if !is_mask && (depth > 0 || saw_ethernet) && !saw_ethertype {
        flow.dl_type = FLOW_DL_TYPE_NONE;
    }
    Ok(())
}
