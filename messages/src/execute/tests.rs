//! Each action applied to composed frames: the extracted flow changes
//! exactly as intended and every checksum still verifies.

use super::*;
use crate::compose::flow_compose;
use crate::compose::tests::{l4_kind, raw_flow, well_formed, well_formed_flow, Kind, L4Kind};
use crate::extract::flow_extract;
use crate::wire::{icmpv6, udp};
use proptest::prelude::*;

fn x(frame: &[u8]) -> Flow {
    flow_extract(frame, &Flow::default())
}

fn masked_flow_bytes<const N: usize>(key: [u8; N], mask: [u8; N], old: [u8; N]) -> [u8; N] {
    std::array::from_fn(|i| (key[i] & mask[i]) | (old[i] & !mask[i]))
}

fn flow_of(kind: Kind, frag: impl Strategy<Value = u8>) -> impl Strategy<Value = Flow> {
    (0..=2usize, frag, raw_flow()).prop_map(move |(n, frag, raw)| well_formed(kind, n, frag, &raw))
}

fn ipv4_flow() -> impl Strategy<Value = Flow> {
    (l4_kind(), 0..=2usize, 0..=2u8, raw_flow())
        .prop_map(|(l4, n, frag, raw)| well_formed(Kind::Ipv4(l4), n, frag, &raw))
}

fn ipv6_flow() -> impl Strategy<Value = Flow> {
    (l4_kind(), 0..=2usize, 0..=2u8, raw_flow())
        .prop_map(|(l4, n, frag, raw)| well_formed(Kind::Ipv6(l4), n, frag, &raw))
}

/// A flow with L4 ports of `l4`, over IPv4 or IPv6, maybe a first fragment.
fn ports_flow(l4: L4Kind) -> impl Strategy<Value = Flow> {
    (any::<bool>(), 0..=2usize, 0..=1u8, raw_flow()).prop_map(move |(v6, n, frag, raw)| {
        let kind = if v6 { Kind::Ipv6(l4) } else { Kind::Ipv4(l4) };
        well_formed(kind, n, frag, &raw)
    })
}

fn eth_key() -> impl Strategy<Value = EthKey> {
    (any::<[u8; 6]>(), any::<[u8; 6]>()).prop_map(|(src, dst)| EthKey { src, dst })
}

fn ipv4_key() -> impl Strategy<Value = Ipv4Key> {
    (any::<u32>(), any::<u32>(), any::<u8>(), any::<u8>()).prop_map(|(src, dst, tos, ttl)| {
        Ipv4Key {
            src,
            dst,
            tos,
            ttl,
            ..Ipv4Key::default()
        }
    })
}

fn ipv6_key() -> impl Strategy<Value = Ipv6Key> {
    (
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        any::<u32>(),
        any::<u8>(),
        any::<u8>(),
    )
        .prop_map(|(src, dst, label, tclass, hlimit)| Ipv6Key {
            src,
            dst,
            label: label & 0x000f_ffff,
            tclass,
            hlimit,
            ..Ipv6Key::default()
        })
}

fn ports_key() -> impl Strategy<Value = PortsKey> {
    (any::<u16>(), any::<u16>()).prop_map(|(src, dst)| PortsKey { src, dst })
}

fn arp_key() -> impl Strategy<Value = ArpKey> {
    (
        any::<u32>(),
        any::<u32>(),
        any::<u16>(),
        any::<[u8; 6]>(),
        any::<[u8; 6]>(),
    )
        .prop_map(|(sip, tip, op, sha, tha)| ArpKey {
            sip,
            tip,
            op,
            sha,
            tha,
        })
}

fn nd_key() -> impl Strategy<Value = NdKey> {
    (any::<[u8; 16]>(), any::<[u8; 6]>(), any::<[u8; 6]>()).prop_map(|(target, sll, tll)| NdKey {
        target,
        sll,
        tll,
    })
}

/// Applies `set` to the frame of `flow` and checks the result against
/// `want`.
fn check(flow: &Flow, set: SetHeader, want: Flow) -> Result<(), TestCaseError> {
    let mut frame = flow_compose(flow);
    apply_set_masked(&mut frame, &set).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(flow_extract(&frame, flow), want);
    prop_assert_eq!(bad_checksum(&frame), None);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn set_eth(flow in well_formed_flow(), key in eth_key(), mask in eth_key()) {
        let want = Flow {
            dl_src: masked_flow_bytes(key.src, mask.src, flow.dl_src),
            dl_dst: masked_flow_bytes(key.dst, mask.dst, flow.dl_dst),
            ..flow
        };
        check(&flow, SetHeader::Ethernet { key, mask }, want)?;
    }

    #[test]
    fn set_ipv4(flow in ipv4_flow(), key in ipv4_key(), mask in ipv4_key()) {
        let want = Flow {
            nw_src: masked_u32(key.src, mask.src, flow.nw_src),
            nw_dst: masked_u32(key.dst, mask.dst, flow.nw_dst),
            nw_tos: masked_u8(key.tos, mask.tos, flow.nw_tos),
            nw_ttl: masked_u8(key.ttl, mask.ttl, flow.nw_ttl),
            ..flow
        };
        check(&flow, SetHeader::Ipv4 { key, mask }, want)?;
    }

    #[test]
    fn set_ipv6(flow in ipv6_flow(), key in ipv6_key(), mask in ipv6_key()) {
        let want = Flow {
            ipv6_src: masked_flow_bytes(key.src, mask.src, flow.ipv6_src),
            ipv6_dst: masked_flow_bytes(key.dst, mask.dst, flow.ipv6_dst),
            ipv6_label: masked_u32(key.label, mask.label, flow.ipv6_label),
            nw_tos: masked_u8(key.tclass, mask.tclass, flow.nw_tos),
            nw_ttl: masked_u8(key.hlimit, mask.hlimit, flow.nw_ttl),
            ..flow
        };
        check(&flow, SetHeader::Ipv6 { key, mask }, want)?;
    }

    #[test]
    fn set_tcp(flow in ports_flow(L4Kind::Tcp), key in ports_key(), mask in ports_key()) {
        let want = Flow {
            tp_src: masked_u16(key.src, mask.src, flow.tp_src),
            tp_dst: masked_u16(key.dst, mask.dst, flow.tp_dst),
            ..flow
        };
        check(&flow, SetHeader::Tcp { key, mask }, want)?;
    }

    #[test]
    fn set_udp(flow in ports_flow(L4Kind::Udp), key in ports_key(), mask in ports_key()) {
        let want = Flow {
            tp_src: masked_u16(key.src, mask.src, flow.tp_src),
            tp_dst: masked_u16(key.dst, mask.dst, flow.tp_dst),
            ..flow
        };
        check(&flow, SetHeader::Udp { key, mask }, want)?;
    }

    #[test]
    fn set_sctp(flow in ports_flow(L4Kind::Sctp), key in ports_key(), mask in ports_key()) {
        let want = Flow {
            tp_src: masked_u16(key.src, mask.src, flow.tp_src),
            tp_dst: masked_u16(key.dst, mask.dst, flow.tp_dst),
            ..flow
        };
        check(&flow, SetHeader::Sctp { key, mask }, want)?;
    }

    #[test]
    fn set_arp(
        flow in flow_of(Kind::Arp(ETH_TYPE_ARP), Just(0)),
        key in arp_key(),
        mask in arp_key(),
    ) {
        let op = masked_u16(key.op, mask.op, flow.nw_proto.into());
        let want = Flow {
            nw_src: masked_u32(key.sip, mask.sip, flow.nw_src),
            nw_dst: masked_u32(key.tip, mask.tip, flow.nw_dst),
            // Opcodes over 255 do not show in the flow.
            nw_proto: u8::try_from(op).unwrap_or(0),
            arp_sha: masked_flow_bytes(key.sha, mask.sha, flow.arp_sha),
            arp_tha: masked_flow_bytes(key.tha, mask.tha, flow.arp_tha),
            ..flow
        };
        check(&flow, SetHeader::Arp { key, mask }, want)?;
    }

    #[test]
    fn set_nd(
        flow in flow_of(Kind::Ipv6(L4Kind::Nd), 0..=1u8),
        key in nd_key(),
        mask in nd_key(),
    ) {
        let frame = flow_compose(&flow);
        let l4 = &frame[frame.len() - nd_len(&flow)..];
        let nd = NdMessage::new_checked(l4).unwrap();
        let mut want = Flow {
            nd_target: masked_flow_bytes(key.target, mask.target, flow.nd_target),
            ..flow
        };
        // Addresses change only where the message has the option.
        if nd.lla(ND_OPT_SOURCE_LLA).is_some() {
            want.arp_sha = masked_flow_bytes(key.sll, mask.sll, flow.arp_sha);
        }
        if nd.lla(ND_OPT_TARGET_LLA).is_some() {
            want.arp_tha = masked_flow_bytes(key.tll, mask.tll, flow.arp_tha);
        }
        check(&flow, SetHeader::Nd { key, mask }, want)?;
    }

    #[test]
    fn push_then_pop_vlan(flow in well_formed_flow(), tci in any::<u16>(), ad in any::<bool>()) {
        let tpid = if ad { ETH_TYPE_VLAN_8021AD } else { ETH_TYPE_VLAN_8021Q };
        let original = flow_compose(&flow);
        let mut frame = original.clone();
        push_vlan(&mut frame, tpid, tci).unwrap();
        let pushed = flow_extract(&frame, &flow);
        prop_assert_eq!(pushed.vlans[0], FlowVlan { tpid, tci: tci | VLAN_CFI });
        if flow.vlans[0].tci & VLAN_CFI != 0 {
            prop_assert_eq!(pushed.vlans[1], flow.vlans[0]);
        }
        prop_assert_eq!(pushed.dl_src, flow.dl_src);
        pop_vlan(&mut frame).unwrap();
        prop_assert_eq!(frame, original);
    }

    /// A pushed entry sits outside any label stack and inside any VLAN
    /// tags; a set rewrites it; its pop gives back the original frame.
    #[test]
    fn push_set_then_pop_mpls(
        flow in well_formed_flow(),
        lse in any::<u32>(),
        other in any::<u32>(),
        mcast in any::<bool>(),
    ) {
        // An 802.3 frame's length field is no EtherType to pop back to.
        prop_assume!(flow.dl_type >= ETH_TYPE_MIN);
        let ethertype = if mcast { ETH_TYPE_MPLS_MCAST } else { ETH_TYPE_MPLS };
        let original = flow_compose(&flow);
        let mut frame = original.clone();
        push_mpls(&mut frame, lse, ethertype).unwrap();
        let pushed = flow_extract(&frame, &flow);
        prop_assert_eq!(pushed.dl_type, ethertype);
        prop_assert_eq!(pushed.mpls_lse[0], lse);
        prop_assert_eq!(pushed.vlans, flow.vlans);
        if eth_type_mpls(flow.dl_type) && lse & crate::wire::mpls::BOS_MASK == 0 {
            prop_assert_eq!(pushed.mpls_lse[1], flow.mpls_lse[0]);
        }
        set_mpls(&mut frame, other).unwrap();
        prop_assert_eq!(flow_extract(&frame, &flow).mpls_lse[0], other);
        pop_mpls(&mut frame, flow.dl_type).unwrap();
        prop_assert_eq!(frame, original);
    }
}

#[test]
fn mpls_actions_refuse_what_they_cannot_do() {
    let mut frame = flow_compose(&udp_flow());
    assert_eq!(
        push_mpls(&mut frame, 0x100, ETH_TYPE_IP),
        Err(ExecuteError::NotMplsEthertype {
            ethertype: ETH_TYPE_IP
        })
    );
    let before = frame.clone();
    assert!(pop_mpls(&mut frame, ETH_TYPE_IP).is_err());
    assert!(set_mpls(&mut frame, 0x100).is_err());
    assert_eq!(frame, before);
    // An entry cut short is not popped.
    let mut short = frame[..14].to_vec();
    short[12..14].copy_from_slice(&ETH_TYPE_MPLS.to_be_bytes());
    short.extend_from_slice(&[0, 1]);
    assert!(pop_mpls(&mut short, ETH_TYPE_IP).is_err());
}

/// Length of the ICMPv6 part of a composed ND frame.
fn nd_len(flow: &Flow) -> usize {
    let frame = flow_compose(flow);
    let (_, layers) = crate::extract::extract_with_layers(&frame, &Flow::default());
    frame.len() - layers.l4.unwrap()
}

fn udp_flow() -> Flow {
    Flow {
        dl_type: ETH_TYPE_IP,
        nw_src: 0x0a00_0001,
        nw_dst: 0x0a00_0002,
        nw_ttl: 64,
        nw_proto: IPPROTO_UDP,
        tp_src: 1000,
        tp_dst: 53,
        ..Flow::default()
    }
}

#[test]
fn udp_without_checksum_stays_without() {
    let mut frame = flow_compose(&udp_flow());
    let csum_at = 14 + 20 + 6;
    frame[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
    let key = Ipv4Key {
        src: 0xc0a8_0001,
        ..Ipv4Key::default()
    };
    let mask = Ipv4Key {
        src: !0,
        ..Ipv4Key::default()
    };
    apply_set_masked(&mut frame, &SetHeader::Ipv4 { key, mask }).unwrap();
    let ports = PortsKey { src: 7, dst: 8 };
    let all = PortsKey { src: !0, dst: !0 };
    apply_set_masked(
        &mut frame,
        &SetHeader::Udp {
            key: ports,
            mask: all,
        },
    )
    .unwrap();
    assert_eq!(&frame[csum_at..csum_at + 2], &[0, 0]);
    let f = x(&frame);
    assert_eq!((f.nw_src, f.tp_src, f.tp_dst), (0xc0a8_0001, 7, 8));
    assert_eq!(bad_checksum(&frame), None);
}

#[test]
fn a_later_fragment_payload_is_not_touched() {
    let flow = Flow {
        nw_frag: FLOW_NW_FRAG_ANY | FLOW_NW_FRAG_LATER,
        nw_proto: IPPROTO_TCP,
        tp_src: 0,
        tp_dst: 0,
        ..udp_flow()
    };
    let mut frame = flow_compose(&flow);
    frame.extend_from_slice(&[0x5a; 24]);
    frame[16..18].copy_from_slice(&44u16.to_be_bytes());
    Ipv4Packet::new_checked(&mut frame[14..])
        .unwrap()
        .fill_checksum();
    let key = Ipv4Key {
        dst: 0x0808_0808,
        ..Ipv4Key::default()
    };
    let mask = Ipv4Key {
        dst: !0,
        ..Ipv4Key::default()
    };
    apply_set_masked(&mut frame, &SetHeader::Ipv4 { key, mask }).unwrap();
    assert_eq!(&frame[34..], &[0x5a; 24]);
    assert!(Ipv4Packet::new_checked(&frame[14..])
        .unwrap()
        .verify_checksum());
    assert_eq!(x(&frame).nw_dst, 0x0808_0808);
}

/// An IPv6/UDP frame behind a routing header with `segments_left`.
fn routed_udp(segments_left: u8) -> Vec<u8> {
    let src = [0x20, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst = [0x20, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let mut payload = vec![IPPROTO_UDP, 0, 0, segments_left, 0, 0, 0, 0];
    let mut l4 = vec![0u8; 8];
    udp::emit(&mut l4, 1, 2, 8);
    let pseudo = ipv6::pseudo_header(&src, &dst, IPPROTO_UDP, 8);
    UdpPacket::new_checked(&mut l4[..])
        .unwrap()
        .fill_checksum(pseudo);
    payload.extend_from_slice(&l4);
    let mut ip = vec![0u8; 40];
    ipv6::emit(
        &mut ip,
        &ipv6::Ipv6Header {
            payload_len: payload.len() as u16,
            next_header: ipv6::NEXT_ROUTING,
            hop_limit: 64,
            src,
            dst,
            ..ipv6::Ipv6Header::default()
        },
    );
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&ETH_TYPE_IPV6.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.extend_from_slice(&payload);
    frame
}

#[test]
fn ipv6_dst_behind_a_routing_header_keeps_the_checksum() {
    let key = Ipv6Key {
        dst: [0xfe; 16],
        ..Ipv6Key::default()
    };
    let mask = Ipv6Key {
        dst: [0xff; 16],
        ..Ipv6Key::default()
    };
    let csum_at = 14 + 40 + 8 + 6;
    let mut routed = routed_udp(1);
    let before = routed[csum_at..csum_at + 2].to_vec();
    apply_set_masked(&mut routed, &SetHeader::Ipv6 { key, mask }).unwrap();
    assert_eq!(routed[csum_at..csum_at + 2], before[..]);
    assert_eq!(x(&routed).ipv6_dst, [0xfe; 16]);

    // With no segments left the destination is final: the checksum follows.
    let mut direct = routed_udp(0);
    apply_set_masked(&mut direct, &SetHeader::Ipv6 { key, mask }).unwrap();
    assert_ne!(direct[csum_at..csum_at + 2], before[..]);
    assert_eq!(bad_checksum(&direct), None);
}

fn no_header_reason(r: Result<(), ExecuteError>) -> String {
    match r {
        Err(ExecuteError::NoHeader { reason, .. }) => reason,
        other => panic!("expected NoHeader, got {other:?}"),
    }
}

#[test]
fn errors_leave_the_frame_unchanged() {
    let v6 = flow_compose(&Flow {
        dl_type: ETH_TYPE_IPV6,
        nw_proto: IPPROTO_ICMPV6,
        tp_src: u16::from(icmpv6::ECHO_REQUEST),
        ..Flow::default()
    });
    let mut frame = v6.clone();
    let all4 = Ipv4Key {
        src: !0,
        ..Ipv4Key::default()
    };
    let r = apply_set_masked(
        &mut frame,
        &SetHeader::Ipv4 {
            key: all4,
            mask: all4,
        },
    );
    assert_eq!(no_header_reason(r), "its dl_type is 0x86dd");
    let ports = PortsKey { src: 1, dst: 1 };
    let r = apply_set_masked(
        &mut frame,
        &SetHeader::Tcp {
            key: ports,
            mask: ports,
        },
    );
    assert_eq!(no_header_reason(r), "the IP protocol is 58");
    let nd = NdKey::default();
    let r = apply_set_masked(&mut frame, &SetHeader::Nd { key: nd, mask: nd });
    assert_eq!(no_header_reason(r), "ICMPv6 type 128 code 0");
    let arp = ArpKey::default();
    assert!(apply_set_masked(
        &mut frame,
        &SetHeader::Arp {
            key: arp,
            mask: arp
        }
    )
    .is_err());
    assert_eq!(
        apply_set_masked(&mut frame, &SetHeader::SkbMark { key: 1, mask: 1 }),
        Err(ExecuteError::Metadata {
            action: "set skb_mark"
        })
    );
    assert_eq!(frame, v6);

    let mut udp = flow_compose(&udp_flow());
    let proto = Ipv4Key {
        proto: 0xff,
        ..Ipv4Key::default()
    };
    assert!(matches!(
        apply_set_masked(
            &mut udp,
            &SetHeader::Ipv4 {
                key: proto,
                mask: proto
            }
        ),
        Err(ExecuteError::BadMask { field: "proto", .. })
    ));
    let label = Ipv6Key {
        label: 0x0010_0000,
        ..Ipv6Key::default()
    };
    assert!(matches!(
        apply_set_masked(
            &mut frame,
            &SetHeader::Ipv6 {
                key: label,
                mask: label
            }
        ),
        Err(ExecuteError::BadMask { field: "label", .. })
    ));

    // A header OVS would not parse (IHL 4) cannot be rewritten.
    udp[14] = 0x44;
    let before = udp.clone();
    let r = apply_set_masked(
        &mut udp,
        &SetHeader::Ipv4 {
            key: all4,
            mask: all4,
        },
    );
    assert_eq!(no_header_reason(r), "the header is truncated or malformed");
    assert_eq!(udp, before);

    let mut later = flow_compose(&Flow {
        nw_frag: FLOW_NW_FRAG_ANY | FLOW_NW_FRAG_LATER,
        ..udp_flow()
    });
    let r = apply_set_masked(
        &mut later,
        &SetHeader::Udp {
            key: ports,
            mask: ports,
        },
    );
    assert_eq!(no_header_reason(r), "a later IP fragment");

    let mut short = vec![0u8; 13];
    let eth = EthKey::default();
    assert!(apply_set_masked(
        &mut short,
        &SetHeader::Ethernet {
            key: eth,
            mask: eth
        }
    )
    .is_err());
    assert!(push_vlan(&mut short, ETH_TYPE_VLAN_8021Q, 0).is_err());
    assert!(pop_vlan(&mut short).is_err());
    assert_eq!(short, vec![0u8; 13]);
}

#[test]
fn vlan_push_and_pop_errors() {
    let mut frame = flow_compose(&udp_flow());
    let before = frame.clone();
    assert_eq!(
        push_vlan(&mut frame, ETH_TYPE_IP, 5),
        Err(ExecuteError::NotVlanTpid { tpid: 0x0800 })
    );
    assert_eq!(
        no_header_reason(pop_vlan(&mut frame)),
        "its EtherType is 0x0800"
    );
    assert_eq!(frame, before);
    // A TPID with no room for the TCI and inner EtherType.
    let mut cut = vec![0u8; 12];
    cut.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    assert_eq!(no_header_reason(pop_vlan(&mut cut)), "the tag is truncated");
}

#[test]
fn push_vlan_writes_the_tag_outside_existing_ones() {
    let mut frame = flow_compose(&udp_flow());
    push_vlan(&mut frame, ETH_TYPE_VLAN_8021Q, VLAN_CFI | 100).unwrap();
    push_vlan(&mut frame, ETH_TYPE_VLAN_8021AD, VLAN_CFI | 200).unwrap();
    assert_eq!(&frame[12..20], &[0x88, 0xa8, 0, 200, 0x81, 0x00, 0, 100]);
    let f = x(&frame);
    assert_eq!(f.vlans[0].tci, VLAN_CFI | 200);
    assert_eq!(f.vlans[1].tci, VLAN_CFI | 100);
    assert_eq!((f.tp_src, f.tp_dst), (1000, 53));
    pop_vlan(&mut frame).unwrap();
    assert_eq!(x(&frame).vlans[0].tci, VLAN_CFI | 100);
}

fn any_set_header() -> impl Strategy<Value = SetHeader> {
    prop_oneof![
        (eth_key(), eth_key()).prop_map(|(key, mask)| SetHeader::Ethernet { key, mask }),
        (ipv4_key(), ipv4_key()).prop_map(|(key, mask)| SetHeader::Ipv4 { key, mask }),
        (ipv6_key(), ipv6_key()).prop_map(|(key, mask)| SetHeader::Ipv6 { key, mask }),
        (ports_key(), ports_key()).prop_map(|(key, mask)| SetHeader::Tcp { key, mask }),
        (ports_key(), ports_key()).prop_map(|(key, mask)| SetHeader::Udp { key, mask }),
        (ports_key(), ports_key()).prop_map(|(key, mask)| SetHeader::Sctp { key, mask }),
        (arp_key(), arp_key()).prop_map(|(key, mask)| SetHeader::Arp { key, mask }),
        (nd_key(), nd_key()).prop_map(|(key, mask)| SetHeader::Nd { key, mask }),
    ]
}

/// The flow after `set` on a frame of `before`, for the actions whose
/// effect the flow shows exactly (ND addresses change only where the
/// message has options, so ND is left out).
fn expected(before: &Flow, set: &SetHeader) -> Option<Flow> {
    let mut f = *before;
    match set {
        SetHeader::Ethernet { key, mask } => {
            f.dl_src = masked_flow_bytes(key.src, mask.src, f.dl_src);
            f.dl_dst = masked_flow_bytes(key.dst, mask.dst, f.dl_dst);
        }
        SetHeader::Ipv4 { key, mask } => {
            f.nw_src = masked_u32(key.src, mask.src, f.nw_src);
            f.nw_dst = masked_u32(key.dst, mask.dst, f.nw_dst);
            f.nw_tos = masked_u8(key.tos, mask.tos, f.nw_tos);
            f.nw_ttl = masked_u8(key.ttl, mask.ttl, f.nw_ttl);
        }
        SetHeader::Ipv6 { key, mask } => {
            f.ipv6_src = masked_flow_bytes(key.src, mask.src, f.ipv6_src);
            f.ipv6_dst = masked_flow_bytes(key.dst, mask.dst, f.ipv6_dst);
            f.ipv6_label = masked_u32(key.label, mask.label, f.ipv6_label);
            f.nw_tos = masked_u8(key.tclass, mask.tclass, f.nw_tos);
            f.nw_ttl = masked_u8(key.hlimit, mask.hlimit, f.nw_ttl);
        }
        SetHeader::Tcp { key, mask }
        | SetHeader::Udp { key, mask }
        | SetHeader::Sctp { key, mask } => {
            f.tp_src = masked_u16(key.src, mask.src, f.tp_src);
            f.tp_dst = masked_u16(key.dst, mask.dst, f.tp_dst);
        }
        SetHeader::Arp { key, mask } => {
            let op = masked_u16(key.op, mask.op, f.nw_proto.into());
            f.nw_src = masked_u32(key.sip, mask.sip, f.nw_src);
            f.nw_dst = masked_u32(key.tip, mask.tip, f.nw_dst);
            f.arp_sha = masked_flow_bytes(key.sha, mask.sha, f.arp_sha);
            f.arp_tha = masked_flow_bytes(key.tha, mask.tha, f.arp_tha);
            // A partly masked opcode depends on old bits the flow may not
            // show (opcodes over 255 show as 0).
            match mask.op {
                0 => {}
                0xffff => f.nw_proto = u8::try_from(op).unwrap_or(0),
                _ => return None,
            }
        }
        _ => return None,
    }
    Some(f)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// What the fuzz target checks: on any frame, a failed action changes
    /// nothing; a successful one changes the flow as its mask says and keeps
    /// right checksums right.
    #[test]
    fn actions_on_any_frame(
        frame in crate::extract::tests::mangled_frame(),
        set in any_set_header(),
    ) {
        let before = x(&frame);
        let checksums_were_right = bad_checksum(&frame).is_none();
        let mut after = frame.clone();
        match apply_set_masked(&mut after, &set) {
            Err(_) => prop_assert_eq!(&after, &frame),
            Ok(()) => {
                if let Some(want) = expected(&before, &set) {
                    prop_assert_eq!(x(&after), want);
                }
                if checksums_were_right {
                    prop_assert_eq!(bad_checksum(&after), None);
                }
            }
        }
    }
}
