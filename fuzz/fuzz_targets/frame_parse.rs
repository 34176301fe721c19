//! Arbitrary bytes through `flow_extract`, every wire view, `flow_compose`
//! and the datapath actions. Beyond "no panic", it checks:
//!
//! - extraction is deterministic, copies the metadata, reports ordered
//!   layer offsets, and gives a flow that `flow_compose` reproduces
//!   (`extract(compose(extract(x))) == extract(x)`);
//! - wire setters keep a right checksum right;
//! - a failed action leaves the frame as it was; a successful one changes
//!   the flow exactly as its mask says and keeps right checksums right;
//!   push_vlan then pop_vlan restores the frame.
//!
//! The input is the frame for the extraction checks; for the action checks
//! its first bytes choose the action, key and mask, and the rest is the
//! frame.

#![no_main]

use libfuzzer_sys::arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use messages::compose::flow_compose;
use messages::execute::{apply_set_masked, bad_checksum, pop_vlan, push_vlan};
use messages::extract::{extract_with_layers, flow_extract};
use messages::flow::*;
use messages::odp::*;
use messages::wire;

fuzz_target!(|data: &[u8]| {
    check_extract(data);
    check_views(data);
    let mut u = Unstructured::new(data);
    let action = action(&mut u);
    check_action(u.take_rest(), &action);
});

fn metadata() -> Flow {
    let mut md = Flow {
        in_port: 7,
        recirc_id: 3,
        pkt_mark: 0xabcd,
        ct_state: 0x21,
        tun_id: 99,
        ..Flow::default()
    };
    md.regs[5] = 0x5555;
    md
}

fn check_extract(data: &[u8]) {
    let md = metadata();
    let flow = flow_extract(data, &md);
    assert_eq!(flow, flow_extract(data, &md), "extraction is deterministic");
    let end = std::mem::offset_of!(Flow, dl_dst) / 8;
    assert_eq!(flow.words()[..end], md.words()[..end], "metadata copied");

    let (same, layers) = extract_with_layers(data, &md);
    assert_eq!(same, flow);
    assert_eq!(layers.l3.is_none(), data.len() < 14);
    let offsets = [layers.l2_5, layers.l3, layers.l4, Some(layers.l3_end)];
    let present: Vec<usize> = offsets.iter().flatten().copied().collect();
    assert!(present.windows(2).all(|w| w[0] <= w[1]), "{layers:?}");
    assert!(layers.l3_end <= data.len());
    if layers.l4.is_some() {
        assert!(flow.is_ip_any());
    }

    assert_eq!((flow.pad_l2, flow.pad_l4), (0, 0));
    for (i, vlan) in flow.vlans.iter().enumerate() {
        if vlan.tci & VLAN_CFI != 0 {
            assert!(eth_type_vlan(vlan.tpid));
            assert!(i == 0 || flow.vlans[i - 1].tci & VLAN_CFI != 0);
        } else {
            assert_eq!(*vlan, FlowVlan::default());
        }
    }
    if flow.nw_frag & FLOW_NW_FRAG_LATER != 0 {
        assert_ne!(flow.nw_frag & FLOW_NW_FRAG_ANY, 0);
        assert_eq!((flow.tp_src, flow.tp_dst, flow.tcp_flags), (0, 0, 0));
    }

    // A flow without L2 (from a frame under 14 bytes) has no frame.
    if layers.l3.is_some() {
        let recomposed = flow_compose(&flow);
        assert_eq!(
            flow_extract(&recomposed, &flow),
            flow,
            "compose reproduces the flow"
        );
    }
}

/// Every view over the input and over its tails at typical header offsets:
/// getters never panic, setters keep a right checksum right.
fn check_views(data: &[u8]) {
    for ofs in [0, 14, 18, 22, 34, 54, 62] {
        let Some(buf) = data.get(ofs..) else {
            break;
        };
        touch_views(buf);
        let mut copy = buf.to_vec();
        setters_keep_checksums(&mut copy);
    }
}

fn touch_views(b: &[u8]) {
    if let Ok(v) = wire::EthernetFrame::new_checked(b) {
        let _ = (v.dst(), v.src(), v.ethertype(), v.payload().len());
    }
    if let Ok(v) = wire::LlcSnapHeader::new_checked(b) {
        let _ = (v.oui(), v.snap_type(), v.payload().len());
    }
    if let Ok(v) = wire::VlanHeader::new_checked(b) {
        let _ = (
            v.tci(),
            v.pcp(),
            v.dei(),
            v.vid(),
            v.ethertype(),
            v.payload().len(),
        );
    }
    if let Ok(v) = wire::MplsLse::new_checked(b) {
        let _ = (
            v.lse(),
            v.label(),
            v.tc(),
            v.bottom_of_stack(),
            v.ttl(),
            v.rest().len(),
        );
    }
    if let Ok(v) = wire::ArpPacket::new_checked(b) {
        let _ = (v.operation(), v.sha(), v.spa(), v.tha(), v.tpa());
    }
    if let Ok(v) = wire::Ipv4Packet::new_checked(b) {
        let _ = (
            v.version(),
            v.header_len(),
            v.tos(),
            v.dscp(),
            v.ecn(),
            v.total_len(),
        );
        let _ = (
            v.ident(),
            v.dont_frag(),
            v.more_frags(),
            v.frag_offset(),
            v.is_fragment(),
        );
        let _ = (v.ttl(), v.protocol(), v.checksum(), v.src(), v.dst());
        let _ = (
            v.options().len(),
            v.payload().len(),
            v.verify_checksum(),
            v.pseudo_header(),
        );
    }
    if let Ok(v) = wire::Ipv6Packet::new_checked(b) {
        let _ = (
            v.version(),
            v.traffic_class(),
            v.flow_label(),
            v.payload_len(),
        );
        let _ = (
            v.next_header(),
            v.hop_limit(),
            v.src(),
            v.dst(),
            v.payload().len(),
        );
    }
    for kind in [0, 43, 44, 51, 60, 6] {
        if let Ok(v) = wire::Ipv6ExtHeader::new_checked(b, kind) {
            let _ = (v.kind(), v.next_header(), v.header_len(), v.routing_type());
            let _ = (v.segments_left(), v.rest().len());
        }
    }
    if let Ok(v) = wire::Ipv6FragmentHeader::new_checked(b) {
        let _ = (
            v.next_header(),
            v.offset_flags(),
            v.frag_offset(),
            v.more_frags(),
        );
        let _ = (v.ident(), v.rest().len());
    }
    if let Ok(v) = wire::TcpPacket::new_checked(b) {
        let _ = (
            v.src_port(),
            v.dst_port(),
            v.seq(),
            v.ack(),
            v.header_len(),
            v.flags(),
        );
        let _ = (
            v.window(),
            v.checksum(),
            v.urgent(),
            v.payload().len(),
            v.verify_checksum(0),
        );
    }
    if let Ok(v) = wire::UdpPacket::new_checked(b) {
        let _ = (
            v.src_port(),
            v.dst_port(),
            v.len(),
            v.is_empty(),
            v.checksum(),
        );
        let _ = (v.payload().len(), v.verify_checksum(0));
    }
    if let Ok(v) = wire::SctpPacket::new_checked(b) {
        let _ = (
            v.src_port(),
            v.dst_port(),
            v.verification_tag(),
            v.checksum(),
        );
        let _ = (v.chunks().len(), v.verify_checksum());
    }
    if let Ok(v) = wire::Icmpv4Packet::new_checked(b) {
        let _ = (v.msg_type(), v.code(), v.checksum(), v.rest_of_header());
        let _ = (v.payload().len(), v.verify_checksum());
    }
    if let Ok(v) = wire::IgmpPacket::new_checked(b) {
        let _ = (
            v.msg_type(),
            v.code(),
            v.checksum(),
            v.group(),
            v.verify_checksum(),
        );
    }
    if let Ok(v) = wire::Icmpv6Packet::new_checked(b) {
        let _ = (v.msg_type(), v.code(), v.checksum(), v.data_word());
        let _ = (v.payload().len(), v.verify_checksum(0));
    }
    if let Ok(v) = wire::NdMessage::new_checked(b) {
        let _ = (v.msg_type(), v.code(), v.flags_word(), v.target());
        for option in v.options() {
            let _ = (option.kind, option.offset, option.bytes.len(), option.lla());
        }
        let _ = (v.lla(1), v.lla(2));
    }
}

fn setters_keep_checksums(b: &mut [u8]) {
    if let Ok(mut v) = wire::Ipv4Packet::new_checked(&mut *b) {
        let good = v.verify_checksum();
        let (src, dst, tos, ttl) = (v.dst(), v.src(), !v.tos(), v.ttl().wrapping_sub(1));
        v.set_src(src);
        v.set_dst(dst);
        v.set_tos(tos);
        v.set_ttl(ttl);
        assert_eq!((v.src(), v.dst(), v.tos(), v.ttl()), (src, dst, tos, ttl));
        assert!(!good || v.verify_checksum());
    }
    if let Ok(mut v) = wire::TcpPacket::new_checked(&mut *b) {
        let good = v.verify_checksum(0);
        let (src, dst) = (v.dst_port(), v.src_port() ^ 0x5a5a);
        v.set_src_port(src);
        v.set_dst_port(dst);
        assert_eq!((v.src_port(), v.dst_port()), (src, dst));
        assert!(!good || v.verify_checksum(0));
    }
    if let Ok(mut v) = wire::UdpPacket::new_checked(&mut *b) {
        let good = v.verify_checksum(0);
        let absent = v.checksum() == 0;
        let port = v.dst_port().wrapping_add(1);
        v.set_src_port(port);
        assert_eq!(v.src_port(), port);
        assert!(!good || v.verify_checksum(0));
        assert!(
            !absent || v.checksum() == 0,
            "an absent checksum stays absent"
        );
    }
    if let Ok(mut v) = wire::SctpPacket::new_checked(&mut *b) {
        let good = v.verify_checksum();
        v.set_dst_port(!v.dst_port());
        assert_eq!(good, v.verify_checksum());
    }
    if let Ok(mut v) = wire::Icmpv4Packet::new_checked(&mut *b) {
        let good = v.verify_checksum();
        v.set_msg_type(v.msg_type() ^ 0x80);
        v.set_code(v.code().wrapping_add(1));
        assert!(!good || v.verify_checksum());
    }
    let icmpv6_good =
        |b: &[u8]| wire::Icmpv6Packet::new_checked(b).is_ok_and(|i| i.verify_checksum(0));
    let good = icmpv6_good(b);
    if let Ok(mut v) = wire::NdMessage::new_checked(&mut *b) {
        let mut target = v.target();
        target[3] ^= 0xff;
        v.set_target(target);
        v.set_lla(1, [0x11; 6]);
        v.set_lla(2, [0x22; 6]);
        assert_eq!(v.target(), target);
        assert!(!good || icmpv6_good(b));
    }
    if let Ok(mut v) = wire::Icmpv6Packet::new_checked(&mut *b) {
        let good = v.verify_checksum(0);
        v.set_msg_type(v.msg_type().wrapping_add(3));
        assert!(!good || v.verify_checksum(0));
    }
}

/// One action to apply, with key and mask drawn from the input.
#[derive(Debug)]
enum Action {
    Set(SetHeader),
    PushVlan { tpid: u16, tci: u16 },
    PopVlan,
}

fn pick<T: Default + for<'a> libfuzzer_sys::arbitrary::Arbitrary<'a>>(u: &mut Unstructured) -> T {
    u.arbitrary().unwrap_or_default()
}

fn eth_key(u: &mut Unstructured) -> EthKey {
    EthKey {
        src: pick(u),
        dst: pick(u),
    }
}

fn ipv4_key(u: &mut Unstructured, writable_only: bool) -> Ipv4Key {
    Ipv4Key {
        src: pick(u),
        dst: pick(u),
        tos: pick(u),
        ttl: pick(u),
        proto: if writable_only { 0 } else { pick(u) },
        frag: if writable_only { 0 } else { pick(u) },
    }
}

fn ipv6_key(u: &mut Unstructured, writable_only: bool) -> Ipv6Key {
    let label: u32 = pick(u);
    Ipv6Key {
        src: pick(u),
        dst: pick(u),
        label: if writable_only {
            label & 0xfffff
        } else {
            label
        },
        tclass: pick(u),
        hlimit: pick(u),
        proto: if writable_only { 0 } else { pick(u) },
        frag: if writable_only { 0 } else { pick(u) },
    }
}

fn ports_key(u: &mut Unstructured) -> PortsKey {
    PortsKey {
        src: pick(u),
        dst: pick(u),
    }
}

fn arp_key(u: &mut Unstructured) -> ArpKey {
    ArpKey {
        sip: pick(u),
        tip: pick(u),
        op: pick(u),
        sha: pick(u),
        tha: pick(u),
    }
}

fn nd_key(u: &mut Unstructured) -> NdKey {
    NdKey {
        target: pick(u),
        sll: pick(u),
        tll: pick(u),
    }
}

fn action(u: &mut Unstructured) -> Action {
    let selector: u8 = pick(u);
    // Mostly masks of writable fields only, sometimes anything.
    let writable_only = selector & 0x80 == 0;
    let set = match selector % 12 {
        0 => SetHeader::Ethernet {
            key: eth_key(u),
            mask: eth_key(u),
        },
        1 => SetHeader::Ipv4 {
            key: ipv4_key(u, true),
            mask: ipv4_key(u, writable_only),
        },
        2 => SetHeader::Ipv6 {
            key: ipv6_key(u, true),
            mask: ipv6_key(u, writable_only),
        },
        3 => SetHeader::Tcp {
            key: ports_key(u),
            mask: ports_key(u),
        },
        4 => SetHeader::Udp {
            key: ports_key(u),
            mask: ports_key(u),
        },
        5 => SetHeader::Sctp {
            key: ports_key(u),
            mask: ports_key(u),
        },
        6 => SetHeader::Arp {
            key: arp_key(u),
            mask: arp_key(u),
        },
        7 => SetHeader::Nd {
            key: nd_key(u),
            mask: nd_key(u),
        },
        8 => SetHeader::SkbPriority {
            key: pick(u),
            mask: pick(u),
        },
        9 => SetHeader::SkbMark {
            key: pick(u),
            mask: pick(u),
        },
        10 => {
            let tpid = if selector & 0x40 == 0 {
                ETH_TYPE_VLAN_8021Q
            } else {
                pick(u)
            };
            return Action::PushVlan { tpid, tci: pick(u) };
        }
        _ => return Action::PopVlan,
    };
    Action::Set(set)
}

fn m8(key: u8, mask: u8, old: u8) -> u8 {
    (key & mask) | (old & !mask)
}

fn m16(key: u16, mask: u16, old: u16) -> u16 {
    (key & mask) | (old & !mask)
}

fn m32(key: u32, mask: u32, old: u32) -> u32 {
    (key & mask) | (old & !mask)
}

fn mb<const N: usize>(key: [u8; N], mask: [u8; N], old: [u8; N]) -> [u8; N] {
    std::array::from_fn(|i| (key[i] & mask[i]) | (old[i] & !mask[i]))
}

/// The flow after `set`, where the flow shows the change exactly (ND is
/// left out: its addresses change only where the message has options).
fn expected(before: &Flow, set: &SetHeader) -> Option<Flow> {
    let mut f = *before;
    match set {
        SetHeader::Ethernet { key, mask } => {
            f.dl_src = mb(key.src, mask.src, f.dl_src);
            f.dl_dst = mb(key.dst, mask.dst, f.dl_dst);
        }
        SetHeader::Ipv4 { key, mask } => {
            f.nw_src = m32(key.src, mask.src, f.nw_src);
            f.nw_dst = m32(key.dst, mask.dst, f.nw_dst);
            f.nw_tos = m8(key.tos, mask.tos, f.nw_tos);
            f.nw_ttl = m8(key.ttl, mask.ttl, f.nw_ttl);
        }
        SetHeader::Ipv6 { key, mask } => {
            f.ipv6_src = mb(key.src, mask.src, f.ipv6_src);
            f.ipv6_dst = mb(key.dst, mask.dst, f.ipv6_dst);
            f.ipv6_label = m32(key.label, mask.label, f.ipv6_label);
            f.nw_tos = m8(key.tclass, mask.tclass, f.nw_tos);
            f.nw_ttl = m8(key.hlimit, mask.hlimit, f.nw_ttl);
        }
        SetHeader::Tcp { key, mask }
        | SetHeader::Udp { key, mask }
        | SetHeader::Sctp { key, mask } => {
            f.tp_src = m16(key.src, mask.src, f.tp_src);
            f.tp_dst = m16(key.dst, mask.dst, f.tp_dst);
        }
        SetHeader::Arp { key, mask } => {
            f.nw_src = m32(key.sip, mask.sip, f.nw_src);
            f.nw_dst = m32(key.tip, mask.tip, f.nw_dst);
            f.arp_sha = mb(key.sha, mask.sha, f.arp_sha);
            f.arp_tha = mb(key.tha, mask.tha, f.arp_tha);
            return (mask.op == 0).then_some(f);
        }
        _ => return None,
    }
    Some(f)
}

fn check_action(frame: &[u8], action: &Action) {
    let mut after = frame.to_vec();
    let md = Flow::default();
    let flow = flow_extract(frame, &md);
    let checksums_were_right = bad_checksum(frame).is_none();
    match action {
        Action::Set(set) => match apply_set_masked(&mut after, set) {
            Err(_) => assert_eq!(after, frame, "a failed action changes nothing"),
            Ok(()) => {
                if let Some(want) = expected(&flow, set) {
                    assert_eq!(flow_extract(&after, &md), want, "{set:?}");
                }
                if checksums_were_right {
                    assert_eq!(bad_checksum(&after), None, "{set:?}");
                }
            }
        },
        Action::PushVlan { tpid, tci } => match push_vlan(&mut after, *tpid, *tci) {
            Err(_) => assert_eq!(after, frame),
            Ok(()) => {
                let pushed = flow_extract(&after, &md);
                assert_eq!(
                    pushed.vlans[0],
                    FlowVlan {
                        tpid: *tpid,
                        tci: tci | VLAN_CFI
                    }
                );
                pop_vlan(&mut after).expect("a pushed tag pops");
                assert_eq!(after, frame);
            }
        },
        Action::PopVlan => match pop_vlan(&mut after) {
            Err(_) => assert_eq!(after, frame),
            Ok(()) => {
                assert_eq!(after.len() + 4, frame.len());
                let (tpid, tci) = (flow.vlans[0].tpid, flow.vlans[0].tci);
                if frame[14] & 0x10 == 0 {
                    push_vlan(&mut after, tpid, tci).expect("a popped tag pushes back");
                    assert_eq!(after, frame);
                }
            }
        },
    }
}
