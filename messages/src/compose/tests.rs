//! `flow_extract(flow_compose(f)) == f` over generated well-formed flows.

use super::*;
use crate::execute::bad_checksum;
use crate::extract::flow_extract;
use proptest::prelude::*;

/// The upper layer of a generated IP flow.
#[derive(Clone, Copy, Debug)]
pub(crate) enum L4Kind {
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Igmp,
    Icmpv6,
    Nd,
    /// A protocol OVS extracts nothing from (GRE, ESP, OSPF, PIM...).
    Opaque(u8),
}

/// What a generated frame carries after its Ethernet header and tags.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Kind {
    Ipv4(L4Kind),
    Ipv6(L4Kind),
    Arp(u16),
    Mpls(u16),
    OtherType(u16),
    Llc,
}

pub(crate) fn l4_kind() -> impl Strategy<Value = L4Kind> {
    prop_oneof![
        Just(L4Kind::Tcp),
        Just(L4Kind::Udp),
        Just(L4Kind::Sctp),
        Just(L4Kind::Icmp),
        Just(L4Kind::Igmp),
        Just(L4Kind::Icmpv6),
        Just(L4Kind::Nd),
        prop::sample::select(vec![4u8, 41, 47, 50, 89, 103, 253]).prop_map(L4Kind::Opaque),
    ]
}

pub(crate) fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => l4_kind().prop_map(Kind::Ipv4),
        4 => l4_kind().prop_map(Kind::Ipv6),
        1 => prop::sample::select(vec![ETH_TYPE_ARP, ETH_TYPE_RARP]).prop_map(Kind::Arp),
        1 => prop::sample::select(vec![ETH_TYPE_MPLS, ETH_TYPE_MPLS_MCAST]).prop_map(Kind::Mpls),
        1 => prop::sample::select(vec![0x88cc, 0x0842, 0x22f0, 0x9000, 0xffff])
            .prop_map(Kind::OtherType),
        1 => Just(Kind::Llc),
    ]
}

/// Random bits for every field; [`well_formed`] keeps those that fit.
pub(crate) fn raw_flow() -> impl Strategy<Value = Flow> {
    prop::collection::vec(any::<u8>(), std::mem::size_of::<Flow>())
        .prop_map(|bytes| bytemuck::pod_read_unaligned(&bytes))
}

/// A well-formed flow of `kind` with `n_vlans` tags and fragment state
/// `frag` (0 none, 1 first, 2 later), its values taken from `raw`.
pub(crate) fn well_formed(kind: Kind, n_vlans: usize, frag: u8, raw: &Flow) -> Flow {
    let mut f = Flow::default();
    let end = std::mem::offset_of!(Flow, dl_dst) / 8;
    f.words_mut()[..end].copy_from_slice(&raw.words()[..end]);
    f.dl_dst = raw.dl_dst;
    f.dl_src = raw.dl_src;
    for (i, vlan) in f.vlans.iter_mut().enumerate().take(n_vlans) {
        let r = raw.vlans[i];
        vlan.tpid = if r.tpid & 1 == 0 {
            ETH_TYPE_VLAN_8021Q
        } else {
            ETH_TYPE_VLAN_8021AD
        };
        vlan.tci = r.tci | VLAN_CFI;
    }
    let nw_frag = match frag {
        0 => 0,
        1 => FLOW_NW_FRAG_ANY,
        _ => FLOW_NW_FRAG_ANY | FLOW_NW_FRAG_LATER,
    };
    match kind {
        Kind::Ipv4(l4) => {
            f.dl_type = ETH_TYPE_IP;
            f.nw_src = raw.nw_src;
            f.nw_dst = raw.nw_dst;
            f.nw_tos = raw.nw_tos;
            f.nw_ttl = raw.nw_ttl;
            f.nw_frag = nw_frag;
            fill_l4(&mut f, l4, raw);
        }
        Kind::Ipv6(l4) => {
            f.dl_type = ETH_TYPE_IPV6;
            f.ipv6_src = raw.ipv6_src;
            f.ipv6_dst = raw.ipv6_dst;
            f.ipv6_label = raw.ipv6_label & 0x000f_ffff;
            f.nw_tos = raw.nw_tos;
            f.nw_ttl = raw.nw_ttl;
            f.nw_frag = nw_frag;
            fill_l4(&mut f, l4, raw);
            if nw_frag & FLOW_NW_FRAG_LATER != 0 {
                f.nw_proto = crate::wire::ipv6::NEXT_FRAGMENT;
            }
        }
        Kind::Arp(dl_type) => {
            f.dl_type = dl_type;
            f.nw_src = raw.nw_src;
            f.nw_dst = raw.nw_dst;
            f.nw_proto = raw.nw_proto;
            f.arp_sha = raw.arp_sha;
            f.arp_tha = raw.arp_tha;
        }
        Kind::Mpls(dl_type) => {
            f.dl_type = dl_type;
            // 1 to 3 entries (as many as a flow tracks), the last one the
            // bottom of the stack unless all 3 are used without one; then
            // none is 0, since a flow without a bottom counts the nonzero
            // ones (as OVS's `flow_count_mpls_labels`).
            let n = usize::from(raw.tp_src % 3) + 1;
            let bos_last = n < FLOW_MAX_MPLS_LABELS || raw.tp_dst & 1 == 0;
            for i in 0..n {
                let mut lse = raw.mpls_lse[i] & !crate::wire::mpls::BOS_MASK;
                if !bos_last && lse == 0 {
                    lse = 1 << crate::wire::mpls::LABEL_SHIFT;
                }
                if i == n - 1 && bos_last {
                    lse |= crate::wire::mpls::BOS_MASK;
                }
                f.mpls_lse[i] = lse;
            }
        }
        Kind::OtherType(dl_type) => f.dl_type = dl_type,
        Kind::Llc => f.dl_type = FLOW_DL_TYPE_NONE,
    }
    f
}

fn fill_l4(f: &mut Flow, l4: L4Kind, raw: &Flow) {
    f.nw_proto = match l4 {
        L4Kind::Tcp => IPPROTO_TCP,
        L4Kind::Udp => IPPROTO_UDP,
        L4Kind::Sctp => IPPROTO_SCTP,
        L4Kind::Icmp => IPPROTO_ICMP,
        L4Kind::Igmp => IPPROTO_IGMP,
        L4Kind::Icmpv6 | L4Kind::Nd => IPPROTO_ICMPV6,
        L4Kind::Opaque(p) => p,
    };
    if f.nw_frag & FLOW_NW_FRAG_LATER != 0 {
        return;
    }
    match l4 {
        L4Kind::Tcp => {
            f.tp_src = raw.tp_src;
            f.tp_dst = raw.tp_dst;
            f.tcp_flags = raw.tcp_flags & 0x0fff;
        }
        L4Kind::Udp | L4Kind::Sctp => {
            f.tp_src = raw.tp_src;
            f.tp_dst = raw.tp_dst;
        }
        L4Kind::Icmp => {
            f.tp_src = raw.tp_src & 0xff;
            f.tp_dst = raw.tp_dst & 0xff;
        }
        L4Kind::Igmp => {
            f.tp_src = raw.tp_src & 0xff;
            f.tp_dst = raw.tp_dst & 0xff;
            f.igmp_group_ip4 = raw.igmp_group_ip4;
        }
        L4Kind::Icmpv6 => {
            f.tp_src = raw.tp_src & 0xff;
            f.tp_dst = raw.tp_dst & 0xff;
            if crate::wire::icmpv6::is_nd_message(f.tp_src as u8, f.tp_dst as u8) {
                f.tp_dst = 1;
            }
        }
        L4Kind::Nd => {
            f.tp_src = if raw.tp_src & 1 == 0 {
                ND_NEIGHBOR_SOLICIT
            } else {
                ND_NEIGHBOR_ADVERT
            };
            f.nd_target = raw.nd_target;
            f.igmp_group_ip4 = raw.igmp_group_ip4;
            // Each address present or zero; the options type is the first
            // option's, which may carry a zero address.
            let bits = raw.tp_dst;
            f.arp_sha = if bits & 1 != 0 { raw.arp_sha } else { [0; 6] };
            f.arp_tha = if bits & 2 != 0 { raw.arp_tha } else { [0; 6] };
            let any_address = f.arp_sha != [0; 6] || f.arp_tha != [0; 6];
            f.tcp_flags = match (bits >> 2) % 3 {
                0 if any_address => 1,
                t => t,
            };
        }
        L4Kind::Opaque(_) => {}
    }
}

pub(crate) fn well_formed_flow() -> impl Strategy<Value = Flow> {
    (kind(), 0..=2usize, 0..=2u8, raw_flow())
        .prop_map(|(kind, n_vlans, frag, raw)| well_formed(kind, n_vlans, frag, &raw))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn compose_then_extract_gives_the_flow_back(flow in well_formed_flow()) {
        let frame = flow_compose(&flow);
        prop_assert_eq!(flow_extract(&frame, &flow), flow);
        prop_assert_eq!(bad_checksum(&frame), None);
    }
}

#[test]
fn frames_look_like_the_real_thing() {
    let flow = Flow {
        dl_dst: [0xff; 6],
        dl_src: [2, 0, 0, 0, 0, 1],
        dl_type: ETH_TYPE_IP,
        nw_src: 0x0a00_0001,
        nw_dst: 0x0a00_0002,
        nw_ttl: 64,
        nw_proto: IPPROTO_UDP,
        tp_src: 68,
        tp_dst: 67,
        ..Flow::default()
    };
    let frame = flow_compose(&flow);
    assert_eq!(frame.len(), 14 + 20 + 8);
    assert_eq!(&frame[12..16], &[0x08, 0x00, 0x45, 0x00]);
    assert_eq!(&frame[16..18], &28u16.to_be_bytes(), "IP total length");
    assert_eq!(&frame[38..40], &8u16.to_be_bytes(), "UDP length");
    assert_ne!(&frame[40..42], &[0, 0], "UDP checksum present");
}

#[test]
fn tags_are_written_outermost_first_without_the_present_bit() {
    let mut flow = Flow {
        dl_type: 0x88cc,
        ..Flow::default()
    };
    flow.vlans[0] = FlowVlan {
        tpid: ETH_TYPE_VLAN_8021AD,
        tci: VLAN_CFI | 10,
    };
    flow.vlans[1] = FlowVlan {
        tpid: ETH_TYPE_VLAN_8021Q,
        tci: VLAN_CFI | 0xa014,
    };
    let frame = flow_compose(&flow);
    assert_eq!(
        &frame[12..],
        &[0x88, 0xa8, 0, 10, 0x81, 0x00, 0xa0, 0x14, 0x88, 0xcc]
    );
}

#[test]
fn nd_options_follow_the_options_type() {
    let mut flow = Flow {
        dl_type: ETH_TYPE_IPV6,
        nw_proto: IPPROTO_ICMPV6,
        tp_src: ND_NEIGHBOR_ADVERT,
        arp_sha: [1; 6],
        arp_tha: [2; 6],
        tcp_flags: 2,
        ..Flow::default()
    };
    let frame = flow_compose(&flow);
    let options = &frame[14 + 40 + 24..];
    assert_eq!(options.len(), 16);
    assert_eq!((options[0], options[8]), (2, 1), "TLL first, then SLL");
    flow.tcp_flags = 1;
    let frame = flow_compose(&flow);
    assert_eq!(frame[14 + 40 + 24], 1);
}
