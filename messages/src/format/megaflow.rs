//! The megaflow as `ofproto/trace` prints it after `Megaflow: ` (OVS's
//! `match_format`): the flow under its wildcards, fields in OVS's order,
//! each only when some bit of it is matched.

use std::fmt::Write;

use super::{ipv4_masked, ipv6_masked, mac_masked, tcp_flags_masked};
use crate::flow::*;
use crate::ofp::port;

/// Formats `flow & wc` as OVS's `match_format` does.
pub fn format_megaflow(flow: &Flow, wc: &FlowWildcards) -> String {
    let f = flow.masked(wc);
    let w = wc;
    let mut s = String::new();
    let put_u32 = |s: &mut String, name: &str, v: u32, m: u32| {
        if m != 0 {
            let _ = write!(s, "{name}={}", c_hex(v as u64));
            if m != u32::MAX {
                let _ = write!(s, "/{}", c_hex(m as u64));
            }
            s.push(',');
        }
    };
    put_u32(&mut s, "pkt_mark", f.pkt_mark, w.pkt_mark);
    put_u32(&mut s, "recirc_id", f.recirc_id, w.recirc_id);
    put_u32(&mut s, "dp_hash", f.dp_hash, w.dp_hash);
    if w.skb_priority != 0 {
        let _ = write!(s, "skb_priority={},", c_hex(f.skb_priority as u64));
    }
    if w.ct_zone != 0 {
        let _ = write!(s, "ct_zone={}", c_hex(f.ct_zone as u64));
        if w.ct_zone != u16::MAX {
            let _ = write!(s, "/{}", c_hex(w.ct_zone as u64));
        }
        s.push(',');
    }
    put_u32(&mut s, "ct_mark", f.ct_mark, w.ct_mark);
    s.push_str("eth,");

    let mut skip_type = false;
    let mut skip_proto = false;
    if w.dl_type != 0 {
        skip_type = true;
        let proto_name = |v6: bool| -> Option<&'static str> {
            if w.nw_proto == 0 {
                return None;
            }
            Some(match (f.nw_proto, v6) {
                (IPPROTO_ICMP, false) => "icmp",
                (IPPROTO_IGMP, false) => "igmp",
                (IPPROTO_ICMPV6, true) => "icmp6",
                (IPPROTO_TCP, false) => "tcp",
                (IPPROTO_TCP, true) => "tcp6",
                (IPPROTO_UDP, false) => "udp",
                (IPPROTO_UDP, true) => "udp6",
                (IPPROTO_SCTP, false) => "sctp",
                (IPPROTO_SCTP, true) => "sctp6",
                _ => return None,
            })
        };
        match f.dl_type {
            ETH_TYPE_IP | ETH_TYPE_IPV6 => {
                let v6 = f.dl_type == ETH_TYPE_IPV6;
                match proto_name(v6) {
                    Some(n) => {
                        skip_proto = true;
                        s.push_str(n);
                    }
                    None => s.push_str(if v6 { "ipv6" } else { "ip" }),
                }
                s.push(',');
            }
            ETH_TYPE_ARP => s.push_str("arp,"),
            ETH_TYPE_RARP => s.push_str("rarp,"),
            ETH_TYPE_MPLS => s.push_str("mpls,"),
            ETH_TYPE_MPLS_MCAST => s.push_str("mplsm,"),
            _ => skip_type = false,
        }
    }
    for (i, (v, m)) in f.regs.iter().zip(w.regs.iter()).enumerate() {
        put_u32(&mut s, &format!("reg{i}"), *v, *m);
    }
    if w.tun_id != 0 {
        let _ = write!(s, "tun_id={}", c_hex(f.tun_id));
        if w.tun_id != u64::MAX {
            let _ = write!(s, "/{}", c_hex(w.tun_id));
        }
        s.push(',');
    }
    if w.metadata != 0 {
        let _ = write!(s, "metadata={}", c_hex(f.metadata));
        if w.metadata != u64::MAX {
            let _ = write!(s, "/{}", c_hex(w.metadata));
        }
        s.push(',');
    }
    if w.in_port != 0 {
        s.push_str("in_port=");
        s.push_str(&port_name(f.in_port));
        s.push(',');
    }
    let (tci, tci_mask) = (f.vlans[0].tci, w.vlans[0].tci);
    if tci_mask != 0 {
        let vid_mask = tci_mask & VLAN_VID_MASK;
        let pcp_mask = tci_mask & VLAN_PCP_MASK;
        let cfi = tci_mask & VLAN_CFI;
        if cfi != 0
            && tci & VLAN_CFI != 0
            && (vid_mask == 0 || vid_mask == VLAN_VID_MASK)
            && (pcp_mask == 0 || pcp_mask == VLAN_PCP_MASK)
            && (vid_mask != 0 || pcp_mask != 0)
        {
            if vid_mask != 0 {
                let _ = write!(s, "dl_vlan={},", tci & VLAN_VID_MASK);
            }
            if pcp_mask != 0 {
                let _ = write!(s, "dl_vlan_pcp={},", tci >> VLAN_PCP_SHIFT);
            }
        } else if tci_mask == u16::MAX {
            let _ = write!(s, "vlan_tci={tci:#06x},");
        } else {
            let _ = write!(s, "vlan_tci={tci:#06x}/{tci_mask:#06x},");
        }
    }
    // Inner tags print only as raw TCIs.
    for i in 1..FLOW_MAX_VLAN_HEADERS {
        let (tci, mask) = (f.vlans[i].tci, w.vlans[i].tci);
        if mask == u16::MAX {
            let _ = write!(s, "vlan_tci{i}={tci:#06x},");
        } else if mask != 0 {
            let _ = write!(s, "vlan_tci{i}={tci:#06x}/{mask:#06x},");
        }
    }
    let put_mac = |s: &mut String, name: &str, v: [u8; 6], m: [u8; 6]| {
        if m != [0; 6] {
            s.push_str(name);
            s.push('=');
            mac_masked(s, v, m);
            s.push(',');
        }
    };
    put_mac(&mut s, "dl_src", f.dl_src, w.dl_src);
    put_mac(&mut s, "dl_dst", f.dl_dst, w.dl_dst);
    if !skip_type && w.dl_type != 0 {
        let _ = write!(s, "dl_type={:#06x},", f.dl_type);
    }
    let put_ip = |s: &mut String, name: &str, v: u32, m: u32| {
        if m != 0 {
            s.push_str(name);
            s.push('=');
            ipv4_masked(s, v, m);
            s.push(',');
        }
    };
    let put_ip6 = |s: &mut String, name: &str, v: [u8; 16], m: [u8; 16]| {
        if m != [0; 16] {
            s.push_str(name);
            s.push('=');
            ipv6_masked(s, v, m);
            s.push(',');
        }
    };
    let is_arp = f.dl_type == ETH_TYPE_ARP || f.dl_type == ETH_TYPE_RARP;
    if f.dl_type == ETH_TYPE_IPV6 {
        put_ip6(&mut s, "ipv6_src", f.ipv6_src, w.ipv6_src);
        put_ip6(&mut s, "ipv6_dst", f.ipv6_dst, w.ipv6_dst);
        if w.ipv6_label != 0 {
            let _ = write!(s, "ipv6_label={:#07x}", f.ipv6_label);
            if w.ipv6_label != u32::MAX {
                let _ = write!(s, "/{:#07x}", w.ipv6_label);
            }
            s.push(',');
        }
    } else if is_arp {
        put_ip(&mut s, "arp_spa", f.nw_src, w.nw_src);
        put_ip(&mut s, "arp_tpa", f.nw_dst, w.nw_dst);
    } else {
        put_ip(&mut s, "nw_src", f.nw_src, w.nw_src);
        put_ip(&mut s, "nw_dst", f.nw_dst, w.nw_dst);
    }
    if !skip_proto && w.nw_proto != 0 {
        let name = if is_arp { "arp_op" } else { "nw_proto" };
        let _ = write!(s, "{name}={},", f.nw_proto);
    }
    if is_arp {
        put_mac(&mut s, "arp_sha", f.arp_sha, w.arp_sha);
        put_mac(&mut s, "arp_tha", f.arp_tha, w.arp_tha);
    }
    if w.nw_tos & 0xfc != 0 {
        let _ = write!(s, "nw_tos={},", f.nw_tos & 0xfc);
    }
    if w.nw_tos & 0x03 != 0 {
        let _ = write!(s, "nw_ecn={},", f.nw_tos & 0x03);
    }
    if w.nw_ttl != 0 {
        let _ = write!(s, "nw_ttl={},", f.nw_ttl);
    }
    let lse_mask = w.mpls_lse[0];
    if lse_mask & 0xfffff000 != 0 {
        let _ = write!(s, "mpls_label={},", f.mpls_lse[0] >> 12);
    }
    if lse_mask & 0x0e00 != 0 {
        let _ = write!(s, "mpls_tc={},", (f.mpls_lse[0] >> 9) & 7);
    }
    if lse_mask & 0xff != 0 {
        let _ = write!(s, "mpls_ttl={},", f.mpls_lse[0] & 0xff);
    }
    if lse_mask & 0x100 != 0 {
        let _ = write!(s, "mpls_bos={},", (f.mpls_lse[0] >> 8) & 1);
    }
    let any = f.nw_frag & FLOW_NW_FRAG_ANY != 0;
    let later = f.nw_frag & FLOW_NW_FRAG_LATER != 0;
    match w.nw_frag & FLOW_NW_FRAG_MASK {
        FLOW_NW_FRAG_MASK => {
            let v = match (any, later) {
                (true, true) => "later",
                (true, false) => "first",
                (false, false) => "no",
                (false, true) => "<error>",
            };
            let _ = write!(s, "nw_frag={v},");
        }
        FLOW_NW_FRAG_ANY => {
            let _ = write!(s, "nw_frag={},", if any { "yes" } else { "no" });
        }
        FLOW_NW_FRAG_LATER => {
            let _ = write!(s, "nw_frag={},", if later { "later" } else { "not_later" });
        }
        _ => {}
    }
    let put_u16 = |s: &mut String, name: &str, v: u16, m: u16| {
        if m != 0 {
            if m == u16::MAX {
                let _ = write!(s, "{name}={v},");
            } else {
                let _ = write!(s, "{name}={v:#x}/{m:#x},");
            }
        }
    };
    if f.dl_type == ETH_TYPE_IP && f.nw_proto == IPPROTO_ICMP {
        put_u16(&mut s, "icmp_type", f.tp_src, w.tp_src);
        put_u16(&mut s, "icmp_code", f.tp_dst, w.tp_dst);
    } else if f.dl_type == ETH_TYPE_IP && f.nw_proto == IPPROTO_IGMP {
        put_u16(&mut s, "igmp_type", f.tp_src, w.tp_src);
        put_u16(&mut s, "igmp_code", f.tp_dst, w.tp_dst);
    } else if f.dl_type == ETH_TYPE_IPV6 && f.nw_proto == IPPROTO_ICMPV6 {
        put_u16(&mut s, "icmp_type", f.tp_src, w.tp_src);
        put_u16(&mut s, "icmp_code", f.tp_dst, w.tp_dst);
        put_ip6(&mut s, "nd_target", f.nd_target, w.nd_target);
        put_mac(&mut s, "nd_sll", f.arp_sha, w.arp_sha);
        put_mac(&mut s, "nd_tll", f.arp_tha, w.arp_tha);
    } else {
        put_u16(&mut s, "tp_src", f.tp_src, w.tp_src);
        put_u16(&mut s, "tp_dst", f.tp_dst, w.tp_dst);
    }
    if f.is_ip_any() && f.nw_proto == IPPROTO_TCP && w.tcp_flags & 0x0fff != 0 {
        s.push_str("tcp_flags=");
        tcp_flags_masked(&mut s, f.tcp_flags, w.tcp_flags & 0x0fff);
        s.push(',');
    }
    if s.ends_with(',') {
        s.pop();
    }
    s
}

/// A number as C's `%#x` prints it: `0` for zero, `0x..` otherwise.
pub fn c_hex(v: u64) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// An OpenFlow port number as OVS prints it (`LOCAL`, `CONTROLLER`, ...).
pub fn port_name(p: u32) -> String {
    match p {
        port::IN_PORT => "IN_PORT".into(),
        port::TABLE => "TABLE".into(),
        port::NORMAL => "NORMAL".into(),
        port::FLOOD => "FLOOD".into(),
        port::ALL => "ALL".into(),
        port::CONTROLLER => "CONTROLLER".into(),
        port::LOCAL => "LOCAL".into(),
        port::ANY => "ANY".into(),
        p => p.to_string(),
    }
}
