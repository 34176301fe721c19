//! Frames built byte by byte, one OVS rule of `miniflow_extract` each.

use super::*;
use crate::wire::{arp, icmpv6, ipv4, ipv6, tcp};

const DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const V4_SRC: u32 = 0x0a00_0001;
const V4_DST: u32 = 0x0a00_0002;

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0x20;
    a[1] = 0x01;
    a[2] = 0x0d;
    a[3] = 0xb8;
    a[15] = last;
    a
}

/// Ethernet header with `ethertype`, then `rest`.
fn eth(ethertype: u16, rest: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST);
    f.extend_from_slice(&SRC);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(rest);
    f
}

fn ipv4_packet(proto: u8, frag_word: u16, l4: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 20];
    ipv4::emit(
        &mut p,
        &ipv4::Ipv4Header {
            tos: 0xb9,
            total_len: (20 + l4.len()) as u16,
            ident: 1,
            frag_word,
            ttl: 63,
            protocol: proto,
            src: V4_SRC,
            dst: V4_DST,
        },
    );
    p.extend_from_slice(l4);
    p
}

fn ipv6_packet(next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0u8; 40];
    ipv6::emit(
        &mut p,
        &ipv6::Ipv6Header {
            traffic_class: 0x2a,
            flow_label: 0xabcde,
            payload_len: payload.len() as u16,
            next_header,
            hop_limit: 255,
            src: v6(1),
            dst: v6(2),
        },
    );
    p.extend_from_slice(payload);
    p
}

fn tcp_segment(src: u16, dst: u16, flags: u16) -> Vec<u8> {
    let mut t = vec![0u8; 20];
    tcp::emit(
        &mut t,
        &tcp::TcpHeader {
            src_port: src,
            dst_port: dst,
            flags,
            ..Default::default()
        },
    );
    t
}

fn ports(src: u16, dst: u16, len: usize) -> Vec<u8> {
    let mut l4 = vec![0u8; len];
    l4[..2].copy_from_slice(&src.to_be_bytes());
    l4[2..4].copy_from_slice(&dst.to_be_bytes());
    l4
}

fn md() -> Flow {
    let mut md = Flow {
        in_port: 3,
        recirc_id: 7,
        skb_priority: 1,
        pkt_mark: 0xbeef,
        dp_hash: 0x1234,
        metadata: 0xfeed,
        tun_id: 42,
        tun_src: 1,
        tun_dst: 2,
        ct_state: 0x21,
        ct_zone: 5,
        ct_mark: 6,
        ct_label: [9; 16],
        ..Flow::default()
    };
    md.regs[3] = 33;
    md
}

/// The L2 part every test frame starts with.
fn l2(dl_type: u16) -> Flow {
    Flow {
        dl_dst: DST,
        dl_src: SRC,
        dl_type,
        ..Flow::default()
    }
}

fn x(frame: &[u8]) -> Flow {
    flow_extract(frame, &Flow::default())
}

#[test]
fn metadata_is_copied_and_a_short_frame_gives_nothing_else() {
    let md = md();
    let f = flow_extract(&[0u8; 13], &md);
    assert_eq!(f, md);
    let f = flow_extract(&eth(0x1234, &[]), &md);
    assert_eq!(f.regs[3], 33);
    assert_eq!((f.in_port, f.ct_zone, f.tun_id), (3, 5, 42));
    assert_eq!(f.dl_type, 0x1234);
}

#[test]
fn metadata_fields_in_md_past_l2_are_not_copied() {
    let md = Flow {
        nw_src: 1,
        tp_dst: 2,
        dl_type: 3,
        ..Flow::default()
    };
    assert_eq!(flow_extract(&[], &md), Flow::default());
}

#[test]
fn unknown_ethertype_stops_at_l2() {
    assert_eq!(x(&eth(0x88cc, &[1, 2, 3, 4])), l2(0x88cc));
}

#[test]
fn one_and_two_vlan_tags() {
    let mut rest = vec![0x20, 0x0a];
    rest.extend_from_slice(&0x0806u16.to_be_bytes());
    let f = x(&eth(0x8100, &rest));
    let mut want = l2(0x0806);
    want.vlans[0] = FlowVlan {
        tpid: 0x8100,
        tci: 0x200a | VLAN_CFI,
    };
    assert_eq!(f, want);

    // 802.1ad outer, 802.1Q inner; DEI set on the wire reads like absent.
    let rest = [0x10, 0x01, 0x81, 0x00, 0x00, 0x02, 0x88, 0xcc];
    let f = x(&eth(0x88a8, &rest));
    assert_eq!(
        f.vlans[0],
        FlowVlan {
            tpid: 0x88a8,
            tci: 0x1001
        }
    );
    assert_eq!(
        f.vlans[1],
        FlowVlan {
            tpid: 0x8100,
            tci: 0x1002
        }
    );
    assert_eq!(f.dl_type, 0x88cc);
}

#[test]
fn a_third_tag_becomes_the_dl_type() {
    let rest = [0, 1, 0x81, 0x00, 0, 2, 0x81, 0x00, 0, 3, 0x08, 0x00];
    let f = x(&eth(0x8100, &rest));
    assert_eq!(f.vlans[0].tci, 0x1001);
    assert_eq!(f.vlans[1].tci, 0x1002);
    assert_eq!(f.dl_type, 0x8100);
}

#[test]
fn vlan_limit_one_is_ovs_default() {
    let rest = [0x10, 0x01, 0x81, 0x00, 0x00, 0x02, 0x88, 0xcc];
    let frame = eth(0x88a8, &rest);
    let (f, layers) = extract_with_vlan_limit(&frame, &Flow::default(), 1);
    assert_eq!(
        f.vlans[0],
        FlowVlan {
            tpid: 0x88a8,
            tci: 0x1001
        }
    );
    assert_eq!(f.vlans[1], FlowVlan::default());
    assert_eq!(f.dl_type, 0x8100);
    assert_eq!(layers.l3, Some(18));
    for limit in [0, 2, 3] {
        let (f, _) = extract_with_vlan_limit(&frame, &Flow::default(), limit);
        assert_eq!(
            (f.vlans[1].tci, f.dl_type),
            (0x1002, 0x88cc),
            "limit {limit}"
        );
    }
}

#[test]
fn a_tag_without_a_following_ethertype_is_not_parsed() {
    // TPID + TCI but no inner EtherType: the TPID is the dl_type.
    let f = x(&eth(0x8100, &[0x00, 0x05]));
    assert_eq!(f, l2(0x8100));
    let f = x(&eth(0x8100, &[0x00, 0x05, 0x08]));
    assert_eq!(f, l2(0x8100));
}

#[test]
fn llc_frames() {
    // 802.3 length + plain LLC (STP): no EtherType.
    let stp = [0x42, 0x42, 0x03, 0, 0, 0, 0, 0, 0];
    assert_eq!(x(&eth(9, &stp)), l2(FLOW_DL_TYPE_NONE));
    // Too short for LLC/SNAP.
    assert_eq!(x(&eth(3, &[0xaa, 0xaa, 0x03])), l2(FLOW_DL_TYPE_NONE));
    // SNAP with a non-zero OUI.
    let cisco = [0xaa, 0xaa, 0x03, 0, 0, 0x0c, 0x20, 0x00];
    assert_eq!(x(&eth(8, &cisco)), l2(FLOW_DL_TYPE_NONE));
    // SNAP with OUI 0 but a length, not an EtherType, inside.
    let small = [0xaa, 0xaa, 0x03, 0, 0, 0, 0x05, 0xff];
    assert_eq!(x(&eth(8, &small)), l2(FLOW_DL_TYPE_NONE));
}

#[test]
fn snap_encapsulated_ip_is_parsed() {
    let mut rest = vec![0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x00];
    rest.extend_from_slice(&ipv4_packet(IPPROTO_UDP, 0, &ports(1, 2, 8)));
    let len = rest.len() as u16;
    let (f, layers) = extract_with_layers(&eth(len, &rest), &Flow::default());
    assert_eq!(f.dl_type, ETH_TYPE_IP);
    assert_eq!((f.nw_src, f.tp_src, f.tp_dst), (V4_SRC, 1, 2));
    assert_eq!(layers.l3, Some(22));
    assert_eq!(layers.l4, Some(42));
}

#[test]
fn mpls_stack() {
    let lse = |label: u32, bos: bool| ((label << 12) | (u32::from(bos) << 8) | 64).to_be_bytes();
    let mut rest = Vec::new();
    rest.extend_from_slice(&lse(100, false));
    rest.extend_from_slice(&lse(200, true));
    rest.extend_from_slice(&ipv4_packet(IPPROTO_TCP, 0, &tcp_segment(1, 2, 0)));
    let (f, layers) = extract_with_layers(&eth(ETH_TYPE_MPLS, &rest), &Flow::default());
    let mut want = l2(ETH_TYPE_MPLS);
    want.mpls_lse[0] = u32::from_be_bytes(lse(100, false));
    want.mpls_lse[1] = u32::from_be_bytes(lse(200, true));
    assert_eq!(f, want, "nothing after the label stack is parsed");
    assert_eq!(layers.l2_5, Some(14));
    assert_eq!(layers.l3, Some(22));

    // Six entries: the first three are kept, L3 starts after the sixth.
    let mut rest = Vec::new();
    for i in 0..6 {
        rest.extend_from_slice(&lse(i + 1, i == 5));
    }
    let (f, layers) = extract_with_layers(&eth(ETH_TYPE_MPLS_MCAST, &rest), &Flow::default());
    assert_eq!(f.mpls_lse.map(|l| l >> 12), [1, 2, 3, 0]);
    assert_eq!(layers.l3, Some(14 + 24));

    // No bottom of stack and a partial entry: whole entries only.
    let f = x(&eth(ETH_TYPE_MPLS, &[0x00, 0x01, 0x00, 0x40, 0x00, 0x02]));
    assert_eq!(f.mpls_lse, [0x0001_0040, 0, 0, 0]);
}

#[test]
fn ipv4_tcp() {
    let frame = eth(
        ETH_TYPE_IP,
        &ipv4_packet(IPPROTO_TCP, 0, &tcp_segment(1234, 80, 0x0812)),
    );
    let (f, layers) = extract_with_layers(&frame, &Flow::default());
    let want = Flow {
        nw_src: V4_SRC,
        nw_dst: V4_DST,
        nw_tos: 0xb9,
        nw_ttl: 63,
        nw_proto: IPPROTO_TCP,
        tcp_flags: 0x0812,
        tp_src: 1234,
        tp_dst: 80,
        ..l2(ETH_TYPE_IP)
    };
    assert_eq!(f, want);
    assert_eq!(layers.l3, Some(14));
    assert_eq!(layers.l4, Some(34));
    assert_eq!(layers.l3_end, frame.len());
}

#[test]
fn ipv4_header_checks_stop_at_l2() {
    let good = ipv4_packet(IPPROTO_UDP, 0, &ports(1, 2, 8));
    let stop = |mutate: &dyn Fn(&mut Vec<u8>)| {
        let mut p = good.clone();
        mutate(&mut p);
        x(&eth(ETH_TYPE_IP, &p))
    };
    let l2_only = l2(ETH_TYPE_IP);
    assert_eq!(stop(&|p| p.truncate(19)), l2_only, "short header");
    assert_eq!(stop(&|p| p[0] = 0x44), l2_only, "IHL < 5");
    assert_eq!(stop(&|p| p[0] = 0x4f), l2_only, "IHL past the frame");
    assert_eq!(
        stop(&|p| p[2..4].copy_from_slice(&19u16.to_be_bytes())),
        l2_only,
        "total length < header"
    );
    assert_eq!(
        stop(&|p| p[2..4].copy_from_slice(&29u16.to_be_bytes())),
        l2_only,
        "total length > frame"
    );
    let too_much = vec![0; 65536];
    assert_eq!(
        stop(&|p| p.extend_from_slice(&too_much)),
        l2_only,
        "64 KiB of padding"
    );
    // Less padding is fine; the version nibble is not checked.
    let f = stop(&|p| p.extend_from_slice(&too_much[1..]));
    assert_eq!((f.tp_src, f.tp_dst), (1, 2));
    let f = stop(&|p| p[0] = 0x65);
    assert_eq!((f.nw_src, f.tp_src), (V4_SRC, 1));
}

#[test]
fn ipv4_padding_is_not_l4() {
    // Total length covers 20 + 4 bytes: the UDP header is cut by it even
    // though the frame has more (padding) bytes.
    let mut p = ipv4_packet(IPPROTO_UDP, 0, &ports(1, 2, 8));
    p[2..4].copy_from_slice(&24u16.to_be_bytes());
    let (f, layers) = extract_with_layers(&eth(ETH_TYPE_IP, &p), &Flow::default());
    assert_eq!((f.nw_proto, f.tp_src, f.tp_dst), (IPPROTO_UDP, 0, 0));
    assert_eq!(layers.l3_end, 14 + 24);
}

#[test]
fn ipv4_options_are_skipped() {
    let mut p = ipv4_packet(IPPROTO_UDP, 0, &[]);
    p[0] = 0x46;
    p.extend_from_slice(&[1, 1, 1, 0]);
    p.extend_from_slice(&ports(7, 8, 8));
    let total = p.len() as u16;
    p[2..4].copy_from_slice(&total.to_be_bytes());
    let f = x(&eth(ETH_TYPE_IP, &p));
    assert_eq!((f.tp_src, f.tp_dst), (7, 8));
}

#[test]
fn ipv4_fragments() {
    let first = x(&eth(
        ETH_TYPE_IP,
        &ipv4_packet(IPPROTO_TCP, ipv4::FLAG_MF, &tcp_segment(1, 2, 2)),
    ));
    assert_eq!(first.nw_frag, FLOW_NW_FRAG_ANY);
    assert_eq!((first.tp_src, first.tp_dst, first.tcp_flags), (1, 2, 2));

    let later = x(&eth(
        ETH_TYPE_IP,
        &ipv4_packet(IPPROTO_TCP, 100, &tcp_segment(1, 2, 2)),
    ));
    assert_eq!(later.nw_frag, FLOW_NW_FRAG_ANY | FLOW_NW_FRAG_LATER);
    assert_eq!(later.nw_proto, IPPROTO_TCP);
    assert_eq!((later.tp_src, later.tp_dst, later.tcp_flags), (0, 0, 0));

    let df = x(&eth(
        ETH_TYPE_IP,
        &ipv4_packet(IPPROTO_TCP, ipv4::FLAG_DF, &tcp_segment(1, 2, 2)),
    ));
    assert_eq!(df.nw_frag, 0);
}

#[test]
fn truncated_l4_headers_leave_l4_fields_zero() {
    let cases = [
        (IPPROTO_TCP, 19),
        (IPPROTO_UDP, 7),
        (IPPROTO_SCTP, 11),
        (IPPROTO_ICMP, 7),
        (IPPROTO_IGMP, 7),
    ];
    for (proto, len) in cases {
        let f = x(&eth(ETH_TYPE_IP, &ipv4_packet(proto, 0, &ports(5, 6, len))));
        let want = Flow {
            nw_src: V4_SRC,
            nw_dst: V4_DST,
            nw_tos: 0xb9,
            nw_ttl: 63,
            nw_proto: proto,
            ..l2(ETH_TYPE_IP)
        };
        assert_eq!(f, want, "protocol {proto}");
    }
}

#[test]
fn tcp_data_offset_is_not_checked() {
    let mut t = tcp_segment(1, 2, 0x10);
    t[12] = 0x20; // data offset 2 words
    let f = x(&eth(ETH_TYPE_IP, &ipv4_packet(IPPROTO_TCP, 0, &t)));
    assert_eq!((f.tp_src, f.tp_dst, f.tcp_flags), (1, 2, 0x10));
}

#[test]
fn udp_sctp_icmp_igmp() {
    let f = x(&eth(
        ETH_TYPE_IP,
        &ipv4_packet(IPPROTO_UDP, 0, &ports(53, 5353, 8)),
    ));
    assert_eq!((f.tp_src, f.tp_dst, f.tcp_flags), (53, 5353, 0));
    let f = x(&eth(
        ETH_TYPE_IP,
        &ipv4_packet(IPPROTO_SCTP, 0, &ports(9, 10, 12)),
    ));
    assert_eq!((f.tp_src, f.tp_dst), (9, 10));
    let f = x(&eth(
        ETH_TYPE_IP,
        &ipv4_packet(IPPROTO_ICMP, 0, &[3, 13, 0, 0, 0, 0, 0, 0]),
    ));
    assert_eq!((f.tp_src, f.tp_dst), (3, 13));
    let igmp = [0x16, 0x00, 0, 0, 0xe0, 0, 0, 0xfb];
    let f = x(&eth(ETH_TYPE_IP, &ipv4_packet(IPPROTO_IGMP, 0, &igmp)));
    assert_eq!(
        (f.tp_src, f.tp_dst, f.igmp_group_ip4),
        (0x16, 0, 0xe000_00fb)
    );
}

#[test]
fn ipv6_udp() {
    let frame = eth(ETH_TYPE_IPV6, &ipv6_packet(IPPROTO_UDP, &ports(1, 2, 8)));
    let (f, layers) = extract_with_layers(&frame, &Flow::default());
    let want = Flow {
        ipv6_src: v6(1),
        ipv6_dst: v6(2),
        ipv6_label: 0xabcde,
        nw_tos: 0x2a,
        nw_ttl: 255,
        nw_proto: IPPROTO_UDP,
        tp_src: 1,
        tp_dst: 2,
        ..l2(ETH_TYPE_IPV6)
    };
    assert_eq!(f, want);
    assert_eq!(layers.l4, Some(54));
}

#[test]
fn ipv6_length_checks_stop_at_l2() {
    let good = ipv6_packet(IPPROTO_UDP, &ports(1, 2, 8));
    let mut short = good.clone();
    short.truncate(47);
    assert_eq!(x(&eth(ETH_TYPE_IPV6, &short)), l2(ETH_TYPE_IPV6));
    assert_eq!(x(&eth(ETH_TYPE_IPV6, &good[..39])), l2(ETH_TYPE_IPV6));
    let mut padded = good.clone();
    padded.extend_from_slice(&vec![0; 65536]);
    assert_eq!(x(&eth(ETH_TYPE_IPV6, &padded)), l2(ETH_TYPE_IPV6));
    padded.pop();
    assert_eq!(x(&eth(ETH_TYPE_IPV6, &padded)).tp_dst, 2);
}

#[test]
fn ipv6_extension_headers_are_skipped() {
    let mut payload = vec![ipv6::NEXT_ROUTING, 0, 0, 0, 0, 0, 0, 0]; // hop-by-hop
    payload.extend_from_slice(&[ipv6::NEXT_DST_OPTS, 0, 0, 2, 0, 0, 0, 0]); // routing, 2 left
    payload.extend_from_slice(&[ipv6::NEXT_AH, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    payload.extend_from_slice(&[IPPROTO_TCP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // AH, 12 bytes
    payload.extend_from_slice(&tcp_segment(7, 8, 1));
    let frame = eth(ETH_TYPE_IPV6, &ipv6_packet(ipv6::NEXT_HOP_BY_HOP, &payload));
    let (f, layers) = extract_with_layers(&frame, &Flow::default());
    assert_eq!(f.nw_proto, IPPROTO_TCP);
    assert_eq!((f.tp_src, f.tp_dst, f.tcp_flags), (7, 8, 1));
    assert_eq!(f.nw_frag, 0);
    assert_eq!(layers.l4, Some(14 + 40 + 8 + 8 + 16 + 12));
    assert!(layers.ipv6_routing);
}

#[test]
fn a_truncated_extension_header_keeps_only_the_addresses() {
    // A hop-by-hop header claiming 16 bytes with 8 present.
    let payload = [IPPROTO_UDP, 1, 0, 0, 0, 0, 0, 0];
    let f = x(&eth(
        ETH_TYPE_IPV6,
        &ipv6_packet(ipv6::NEXT_HOP_BY_HOP, &payload),
    ));
    let want = Flow {
        ipv6_src: v6(1),
        ipv6_dst: v6(2),
        ..l2(ETH_TYPE_IPV6)
    };
    assert_eq!(f, want);
    // Fewer than 8 bytes of a fragment header.
    let f = x(&eth(
        ETH_TYPE_IPV6,
        &ipv6_packet(NEXT_FRAGMENT, &[17, 0, 0, 1]),
    ));
    assert_eq!(f, want);
}

#[test]
fn ipv6_fragments() {
    let frag = |offset: u16, more: bool| {
        let mut p = vec![0u8; 8];
        ipv6::emit_fragment(&mut p, IPPROTO_UDP, offset, more, 99);
        p.extend_from_slice(&ports(1, 2, 8));
        x(&eth(ETH_TYPE_IPV6, &ipv6_packet(NEXT_FRAGMENT, &p)))
    };
    let first = frag(0, true);
    assert_eq!(first.nw_frag, FLOW_NW_FRAG_ANY);
    assert_eq!(
        (first.nw_proto, first.tp_src, first.tp_dst),
        (IPPROTO_UDP, 1, 2)
    );
    let later = frag(10, false);
    assert_eq!(later.nw_frag, FLOW_NW_FRAG_ANY | FLOW_NW_FRAG_LATER);
    assert_eq!(
        (later.nw_proto, later.tp_src, later.tp_dst),
        (NEXT_FRAGMENT, 0, 0)
    );
    assert_eq!(later.ipv6_label, 0xabcde);
    let atomic = frag(0, false);
    assert_eq!(atomic.nw_frag, 0);
    assert_eq!((atomic.nw_proto, atomic.tp_src), (IPPROTO_UDP, 1));
}

fn nd_frame(msg_type: u8, code: u8, reserved: u32, options: &[(u8, u8, [u8; 6])]) -> Vec<u8> {
    let mut m = vec![0u8; icmpv6::ND_MSG_LEN];
    icmpv6::emit(&mut m, msg_type, code, reserved);
    m[8..24].copy_from_slice(&v6(0x77));
    for (kind, len, mac) in options {
        let mut o = vec![0u8; usize::from(*len).max(1) * 8];
        o[0] = *kind;
        o[1] = *len;
        o[2..8].copy_from_slice(mac);
        m.extend_from_slice(&o);
    }
    eth(ETH_TYPE_IPV6, &ipv6_packet(IPPROTO_ICMPV6, &m))
}

const MAC_A: [u8; 6] = [0xaa, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [0xbb, 0, 0, 0, 0, 2];

#[test]
fn nd_solicit_and_advert() {
    let f = x(&nd_frame(135, 0, 0, &[(1, 1, MAC_A)]));
    assert_eq!((f.tp_src, f.tp_dst), (135, 0));
    assert_eq!(f.nd_target, v6(0x77));
    assert_eq!((f.arp_sha, f.arp_tha), (MAC_A, [0; 6]));
    assert_eq!(f.tcp_flags, 1, "type of the first link-layer option");
    assert_eq!(f.igmp_group_ip4, 0);

    let f = x(&nd_frame(
        136,
        0,
        0xe000_0000,
        &[(2, 1, MAC_B), (1, 1, MAC_A)],
    ));
    assert_eq!((f.arp_sha, f.arp_tha), (MAC_A, MAC_B));
    assert_eq!(f.tcp_flags, 2);
    assert_eq!(f.igmp_group_ip4, 0xe000_0000, "the NA flags word");

    let f = x(&nd_frame(136, 0, 0, &[]));
    assert_eq!((f.nd_target, f.tcp_flags), (v6(0x77), 0));
}

#[test]
fn nd_fields_need_code_zero() {
    let f = x(&nd_frame(135, 1, 0x1234, &[(1, 1, MAC_A)]));
    assert_eq!((f.tp_src, f.tp_dst), (135, 1));
    assert_eq!(f.nd_target, [0; 16]);
    assert_eq!((f.arp_sha, f.tcp_flags, f.igmp_group_ip4), ([0; 6], 0, 0));
}

#[test]
fn nd_options_oddities() {
    // Long link-layer options are not Ethernet addresses; unknown options
    // are skipped.
    let f = x(&nd_frame(
        135,
        0,
        0,
        &[(1, 2, MAC_B), (5, 1, MAC_B), (1, 1, MAC_A)],
    ));
    assert_eq!(f.arp_sha, MAC_A);
    // A zero-length option ends the walk, keeping what came before.
    let f = x(&nd_frame(
        136,
        0,
        0,
        &[(2, 1, MAC_B), (1, 0, MAC_A), (1, 1, MAC_A)],
    ));
    assert_eq!(
        (f.arp_sha, f.arp_tha, f.nd_target),
        ([0; 6], MAC_B, v6(0x77))
    );
    // A repeated SLL voids target and addresses but not the options type.
    let f = x(&nd_frame(135, 0, 0, &[(1, 1, MAC_A), (1, 1, MAC_B)]));
    assert_eq!(
        (f.nd_target, f.arp_sha, f.arp_tha),
        ([0; 16], [0; 6], [0; 6])
    );
    assert_eq!(f.tcp_flags, 1);
    // ...unless the first had an all-zero address.
    let f = x(&nd_frame(135, 0, 0, &[(1, 1, [0; 6]), (1, 1, MAC_B)]));
    assert_eq!((f.nd_target, f.arp_sha, f.tcp_flags), (v6(0x77), MAC_B, 1));
}

#[test]
fn truncated_nd_target_keeps_type_code_and_flags() {
    let mut m = vec![0u8; 20];
    icmpv6::emit(&mut m, 136, 0, 0x4000_0000);
    let f = x(&eth(ETH_TYPE_IPV6, &ipv6_packet(IPPROTO_ICMPV6, &m)));
    assert_eq!(
        (f.tp_src, f.tp_dst, f.igmp_group_ip4),
        (136, 0, 0x4000_0000)
    );
    assert_eq!(f.nd_target, [0; 16]);
}

#[test]
fn icmpv6_needs_eight_bytes() {
    let f = x(&eth(
        ETH_TYPE_IPV6,
        &ipv6_packet(IPPROTO_ICMPV6, &[128, 0, 0, 0, 0, 0, 0]),
    ));
    assert_eq!((f.nw_proto, f.tp_src), (IPPROTO_ICMPV6, 0));
    let f = x(&eth(
        ETH_TYPE_IPV6,
        &ipv6_packet(IPPROTO_ICMPV6, &[128, 0, 0, 0, 0, 1, 0, 1]),
    ));
    assert_eq!((f.tp_src, f.tp_dst, f.igmp_group_ip4), (128, 0, 0));
}

fn arp_frame(ethertype: u16, op: u16) -> Vec<u8> {
    let mut a = vec![0u8; arp::PACKET_LEN];
    arp::emit(&mut a, op, MAC_A, V4_SRC, MAC_B, V4_DST);
    eth(ethertype, &a)
}

#[test]
fn arp_and_rarp() {
    let want = Flow {
        nw_src: V4_SRC,
        nw_dst: V4_DST,
        nw_proto: 1,
        arp_sha: MAC_A,
        arp_tha: MAC_B,
        ..l2(ETH_TYPE_ARP)
    };
    assert_eq!(x(&arp_frame(ETH_TYPE_ARP, 1)), want);
    let rarp = x(&arp_frame(ETH_TYPE_RARP, 3));
    assert_eq!(
        (rarp.nw_proto, rarp.nw_src, rarp.arp_tha),
        (3, V4_SRC, MAC_B)
    );
    // An opcode over 255 leaves nw_proto 0 but keeps the addresses.
    let big = x(&arp_frame(ETH_TYPE_ARP, 0x0101));
    assert_eq!(
        big,
        Flow {
            nw_proto: 0,
            ..want
        }
    );
}

#[test]
fn arp_that_is_not_ethernet_ipv4_or_is_short_stops_at_l2() {
    let mut f = arp_frame(ETH_TYPE_ARP, 1);
    f[14 + 5] = 16; // protocol length
    assert_eq!(x(&f), l2(ETH_TYPE_ARP));
    let f = arp_frame(ETH_TYPE_ARP, 1);
    assert_eq!(x(&f[..f.len() - 1]), l2(ETH_TYPE_ARP));
}

#[test]
fn every_prefix_of_a_frame_parses_without_panicking() {
    let mut tagged = vec![0x20, 0x0a];
    tagged.extend_from_slice(&ETH_TYPE_IPV6.to_be_bytes());
    let frames = [
        nd_frame(136, 0, 0, &[(2, 1, MAC_B), (1, 1, MAC_A)]),
        eth(
            ETH_TYPE_IP,
            &ipv4_packet(IPPROTO_TCP, 0, &tcp_segment(1, 2, 3)),
        ),
        arp_frame(ETH_TYPE_ARP, 2),
        eth(
            ETH_TYPE_VLAN_8021Q,
            &[tagged, ipv6_packet(IPPROTO_UDP, &ports(1, 2, 8))].concat(),
        ),
    ];
    for frame in frames {
        let full = x(&frame);
        for len in 0..frame.len() {
            let f = x(&frame[..len]);
            // A prefix never reveals more than the whole frame did, at L2.
            if len >= 14 {
                assert_eq!((f.dl_src, f.dl_dst), (full.dl_src, full.dl_dst));
            } else {
                assert_eq!(f, Flow::default());
            }
        }
    }
}

/// A composed frame with some bytes overwritten and maybe cut short: close
/// enough to real traffic to reach every parser, broken enough to hit every
/// check.
pub(crate) fn mangled_frame() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    (
        crate::compose::tests::well_formed_flow(),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(flow, edits, cut, do_cut)| {
            let mut frame = crate::compose::flow_compose(&flow);
            for (at, byte) in edits {
                let i = at.index(frame.len());
                frame[i] = byte;
            }
            if do_cut {
                frame.truncate(cut.index(frame.len() + 1));
            }
            frame
        })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2048))]

    /// What the fuzz target checks, on mangled real frames and on noise.
    #[test]
    fn any_frame_extracts_consistently(
        frame in proptest::prop_oneof![
            mangled_frame(),
            proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
        ],
    ) {
        let md = md();
        let (flow, layers) = extract_with_layers(&frame, &md);
        proptest::prop_assert_eq!(flow_extract(&frame, &md), flow);
        let present: Vec<usize> =
            [layers.l2_5, layers.l3, layers.l4, Some(layers.l3_end)].into_iter().flatten().collect();
        proptest::prop_assert!(present.windows(2).all(|w| w[0] <= w[1]), "{:?}", layers);
        proptest::prop_assert!(layers.l3_end <= frame.len());
        if layers.l3.is_some() {
            let again = flow_extract(&crate::compose::flow_compose(&flow), &flow);
            proptest::prop_assert_eq!(again, flow);
        }
    }
}
