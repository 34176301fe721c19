use super::*;
use crate::field::Field;
use crate::format::ofp_rule::format_rule;
use crate::ofp::{OfAction, Rule};
use crate::parse::rules::parse_rule;

/// Sends `rule` as a flow mod in `version` and decodes it back as the
/// switch would.
fn round_trip(version: u8, rule: &Rule) -> Rule {
    let wire = encode_flow_mod(version, 7, &add_flow_mod(rule)).unwrap();
    assert_eq!(frame_len(&wire), Ok(Some(wire.len())));
    let st = DecodeState {
        flow_mod_table_id: true,
    };
    let (h, req) = decode(&wire, st).unwrap_or_else(|e| panic!("{}: {e}", format_rule(rule)));
    assert_eq!(h.xid, 7);
    let Request::FlowMod(fm) = req else {
        panic!("not a flow mod: {req:?}")
    };
    Rule {
        table: fm.table,
        priority: fm.priority,
        cookie: fm.cookie,
        idle_timeout: fm.idle_timeout,
        hard_timeout: fm.hard_timeout,
        flags: fm.flags,
        matches: fm.matches,
        instructions: fm.instructions,
    }
}

const RULES: &[&str] = &[
    "table=0,priority=324,dl_type=0x86dd,nw_proto=6,tcp_flags=0x010/0x010,actions=set_field:8->reg0,set_field:1->reg1,set_field:0x4772/0xffff->metadata,goto_table:1",
    "table=1,priority=89,dl_type=0x0806,arp_tpa=147.10.4.141,arp_spa=147.10.69.152,arp_tha=64:df:f8:28:3f:83,reg0=0x3/0xf,actions=mod_dl_src:64:df:f8:37:78:b6,output:3",
    "table=1,priority=9,icmp6,icmp_type=136,nd_target=2634:f920:eb21:2841:b955:dd67:57af:6c8c,reg0=0x3/0xf,actions=output:6,output:6",
    "table=1,priority=56,dl_type=0x0800,nw_frag=first,nw_dst=147.10.0.0/16,reg0=0x8/0xf,actions=output:7",
    "priority=5,vlan_tci=0x501e/0xffff,actions=mod_vlan_vid:7,strip_vlan,output:in_port",
    "cookie=0x5,idle_timeout=10,actions=mod_vlan_vid:7",
    "in_port=2,actions=load:3->NXM_NX_REG0[],set_field:0x4/0xff->metadata,goto_table:1",
    "ip,nw_src=10.0.0.0/255.0.255.0,nw_tos=32,actions=dec_ttl,CONTROLLER:128",
    "udp,tp_dst=53,actions=mod_tp_dst:5353,resubmit(,2),resubmit:3",
    "ipv6,ipv6_label=0x12345,actions=move:NXM_NX_REG1[0..7]->NXM_NX_REG2[8..15],output:NXM_NX_REG2[8..15]",
    "dl_vlan=10,dl_vlan_pcp=3,actions=mod_vlan_pcp:5,output:1",
    "icmp,icmp_type=8,icmp_code=0,actions=clear_actions,write_actions(output:4)",
    "dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=NORMAL",
    "ip,actions=ct(commit,zone=5,table=2,exec(set_field:1->ct_mark),nat(src=10.0.0.1-10.0.0.5:1000-2000))",
    "ct_state=+trk+est,ip,actions=ct_clear,ct(zone=NXM_NX_REG1[0..15],nat),output:1",
    "actions=learn(table=10,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]),resubmit(,3)",
    "ip,actions=learn(table=2,idle_timeout=30,hard_timeout=60,fin_idle_timeout=5,fin_hard_timeout=9,priority=7,cookie=0x99,send_flow_rem,delete_learned,eth_type=0x800,NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],NXM_NX_CT_LABEL[]=0x1234567890abcdef1234,load:0x5->NXM_NX_REG2[3..5],output:NXM_OF_IN_PORT[])",
    "actions=learn(table=1,limit=10,result_dst=NXM_NX_REG0[3],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_NX_CT_LABEL[64..95]->NXM_NX_REG3[])",
    "actions=note:01.02.03.04.05.06.07,multipath(symmetric_l3l4+udp,1024,iter_hash,100,8,NXM_NX_REG4[3..12]),resubmit(,1)",
    "ip,actions=bundle_load(nw_src,5,hrw,ofport,NXM_NX_REG1[0..15],members:1,LOCAL,IN_PORT),bundle(eth_src,0,active_backup,ofport,members:4,3,2,1,5)",
    "tcp,actions=push:NXM_NX_REG0[0..15],pop:NXM_NX_REG1[16..31],check_pkt_larger(1500)->NXM_NX_REG2[0],clone(set_field:0x1->reg3,clone(output:4),output:2),output(port=3,max_len=100),exit",
    "actions=set_queue:5,pop_queue,output:3",
    "ip,actions=push:NXM_NX_REG1[0..15],pop:NXM_NX_REG2[8..23],controller(pause,userdata=01.02),output:3",
    "actions=sample(probability=7,collector_set_id=1,obs_domain_id=2,obs_point_id=3,sampling_port=5,ingress),sample(probability=1,collector_set_id=0,obs_domain_id=0,obs_point_id=0),debug_recirc,debug_slow,note:00.00.00.00.00.00",
];

#[test]
fn notes_keep_the_padding_a_switch_keeps() {
    for (text, kept) in [
        ("actions=note:ab", "note:ab.00.00.00.00.00"),
        ("actions=note:", "note:00.00.00.00.00.00"),
        (
            "actions=note:0102030405060708",
            "note:01.02.03.04.05.06.07.08.00.00.00.00.00.00",
        ),
    ] {
        let rule = parse_rule(text).unwrap();
        assert!(format_rule(&rule).ends_with(kept), "{}", format_rule(&rule));
        assert_eq!(round_trip(OFP10, &rule).instructions, rule.instructions);
    }
}

#[test]
fn flow_mods_round_trip_in_openflow13() {
    for text in RULES {
        let rule = parse_rule(text).unwrap();
        assert_eq!(
            format_rule(&round_trip(OFP13, &rule)),
            format_rule(&rule),
            "{text}"
        );
    }
}

/// `in_port` has a 16-bit NXM header and a 32-bit OXM one: a Nicira action
/// reaching past bit 16 names it by the OXM header, as OVS does, so that
/// the action decodes again (the fuzz target found `load` sent with
/// NXM_OF_IN_PORT and 32 bits).
#[test]
fn nicira_actions_on_all_32_bits_of_in_port_round_trip_in_openflow10() {
    for text in [
        "actions=load:0x10001->OXM_OF_IN_PORT[],output:2",
        "actions=load:0x1->OXM_OF_IN_PORT[],output:2",
        "actions=move:NXM_NX_REG0[]->OXM_OF_IN_PORT[],output:OXM_OF_IN_PORT[]",
        "actions=load:0x7->NXM_OF_IN_PORT[],move:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15]",
    ] {
        let rule = parse_rule(text).unwrap();
        assert_eq!(
            round_trip(OFP10, &rule).instructions,
            rule.instructions,
            "{text}"
        );
    }
}

#[test]
fn flow_mods_round_trip_in_openflow10_with_nxm() {
    for text in RULES {
        let rule = parse_rule(text).unwrap();
        if rule.instructions.write_actions.is_some() || rule.instructions.clear_actions {
            continue;
        }
        let back = round_trip(OFP10, &rule);
        assert_eq!(back.matches, rule.matches, "{text}");
        assert_eq!(back.table, rule.table, "{text}");
    }
}

#[test]
fn mpls_actions_go_out_as_ovs_sends_them() {
    let rule = parse_rule(
        "ip,actions=push_mpls:0x8847,set_mpls_label(10),set_mpls_tc(3),set_mpls_ttl(9),\
         dec_mpls_ttl,output:2,pop_mpls:0x0800,output:3",
    )
    .unwrap();
    // OpenFlow 1.3: label and TC as set_field, as OVS sends them (and
    // `ovs-ofctl dump-flows` then shows them).
    let back = format_rule(&round_trip(OFP13, &rule));
    assert!(
        back.ends_with(
            "actions=push_mpls:0x8847,set_field:10->mpls_label,set_field:3->mpls_tc,\
             set_mpls_ttl(9),dec_mpls_ttl,output:2,pop_mpls:0x0800,output:3"
        ),
        "{back}"
    );
    // OpenFlow 1.0 has Nicira's form of each.
    assert_eq!(round_trip(OFP10, &rule).instructions, rule.instructions);
    // A push of an EtherType that is not MPLS's is refused on decode.
    let mut bad = rule.clone();
    bad.instructions.apply = vec![OfAction::PushMpls { ethertype: 0x0800 }];
    let wire = encode_flow_mod(OFP13, 7, &add_flow_mod(&bad)).unwrap();
    assert!(decode(
        &wire,
        DecodeState {
            flow_mod_table_id: true
        }
    )
    .is_err());
}

/// Every rule of the public oracle survives a round trip (skipped when
/// ../shared/oracle is not there).
#[test]
fn oracle_rules_round_trip() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/oracle");
    let Ok(tiers) = std::fs::read_dir(&dir) else {
        eprintln!("skipped: {} is not there", dir.display());
        return;
    };
    let mut n = 0;
    for tier in tiers.flatten() {
        let Ok(cases) = std::fs::read_dir(tier.path()) else {
            continue;
        };
        for case in cases.flatten() {
            let Ok(text) = std::fs::read_to_string(case.path().join("rules.of13")) else {
                continue;
            };
            for line in text
                .lines()
                .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            {
                let Ok(rule) = parse_rule(line) else { continue };
                assert_eq!(
                    format_rule(&round_trip(OFP13, &rule)),
                    format_rule(&rule),
                    "{line}"
                );
                n += 1;
            }
        }
    }
    eprintln!("{n} oracle rules round-tripped");
}

#[test]
fn truncated_and_garbage_messages_are_errors_not_panics() {
    let rule = parse_rule(RULES[0]).unwrap();
    for version in [OFP10, OFP13] {
        let wire = encode_flow_mod(version, 1, &add_flow_mod(&rule)).unwrap();
        for cut in 0..wire.len() {
            let mut m = wire[..cut].to_vec();
            if m.len() >= 4 {
                let len = m.len() as u16;
                m[2..4].copy_from_slice(&len.to_be_bytes());
            }
            let _ = decode(&m, DecodeState::default());
        }
        for i in HEADER_LEN..wire.len() {
            let mut m = wire.clone();
            m[i] ^= 0xff;
            let _ = decode(&m, DecodeState::default());
        }
    }
    assert!(frame_len(&[4, 0, 0, 4, 0, 0, 0, 0]).is_err());
    assert_eq!(frame_len(&[4, 0, 0, 16]), Ok(None));
}

#[test]
fn errors_use_ovs_numbers() {
    let e = OfpError::new(ErrorKind::MatchBadPrereq, "x");
    let m = encode_error(OFP13, 9, &e, &[1, 2, 3]);
    assert_eq!(&m[8..12], &[0, 4, 0, 9]);
    let m = encode_error(OFP10, 9, &e, &[]);
    assert_eq!(&m[8..12], &[0xb0, 0xc2, 0, 0]);
    assert_eq!(&m[16..20], &[0, 1, 1, 4]);
    let e = OfpError::new(ErrorKind::BadType, "x");
    assert_eq!(&encode_error(OFP10, 1, &e, &[])[8..12], &[0, 1, 0, 1]);
}

#[test]
fn versions_negotiate_to_the_highest_common() {
    assert_eq!(negotiate(1 << OFP13), Some(OFP13));
    assert_eq!(
        negotiate((1 << OFP10) | (1 << OFP13) | (1 << 6)),
        Some(OFP13)
    );
    assert_eq!(negotiate((1 << OFP13) | (1 << OFP14)), Some(OFP14));
    assert_eq!(negotiate(1 << 2), None);
    let (_, hello) = decode(&encode_hello(OFP13, 1 << OFP13), DecodeState::default()).unwrap();
    assert_eq!(
        hello,
        Request::Hello {
            versions: 1 << OFP13
        }
    );
}

/// NXT_TLV_TABLE_MOD with its body: header, Nicira vendor and subtype 24,
/// the command, then the mappings as they are on the wire.
fn tlv_table_mod(command: u16, maps: &[u8]) -> Vec<u8> {
    let mut m = vec![OFP10, 4, 0, 0, 0, 0, 0, 7];
    m.extend_from_slice(&NX_VENDOR_ID.to_be_bytes());
    m.extend_from_slice(&24u32.to_be_bytes());
    m.extend_from_slice(&command.to_be_bytes());
    m.extend_from_slice(&[0; 6]);
    m.extend_from_slice(maps);
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    m
}

#[test]
fn tlv_table_mods_decode_and_bad_ones_get_ovs_errors() {
    let st = DecodeState::default();
    let map = [0xff, 0xff, 0x01, 4, 0, 3, 0, 0];
    let (_, req) = decode(&tlv_table_mod(0, &map), st).unwrap();
    assert_eq!(
        req,
        Request::TlvTableMod(TlvTableMod::Add(vec![crate::tlv::TlvRequest {
            class: 0xffff,
            opt_type: 1,
            len: 4,
            index: 3
        }]))
    );
    let (_, req) = decode(&tlv_table_mod(1, &map), st).unwrap();
    assert_eq!(req, Request::TlvTableMod(TlvTableMod::Delete(vec![3])));
    let kind = |m: Vec<u8>| decode(&m, st).unwrap_err().kind;
    assert_eq!(kind(tlv_table_mod(3, &map)), ErrorKind::TlvBadCommand);
    assert_eq!(kind(tlv_table_mod(0, &map[..6])), ErrorKind::BadLen);
    assert_eq!(
        kind(tlv_table_mod(0, &[0, 1, 1, 6, 0, 0, 0, 0])),
        ErrorKind::TlvBadOptLen
    );
    assert_eq!(
        kind(tlv_table_mod(0, &[0, 1, 1, 4, 0, 64, 0, 0])),
        ErrorKind::TlvBadFieldIdx
    );
    assert_eq!(
        ErrorKind::TlvAlreadyMapped.code(OFP13),
        ErrorCode::Exp(NX_VENDOR_ID, 20)
    );
    assert_eq!(ErrorKind::TlvInvalidDel.code(OFP10), ErrorCode::Nx(1, 537));
}

/// NXAST_MULTIPATH, BUNDLE and SAMPLE that OVS's decoder refuses (a
/// destination too narrow for the links, a CONTROLLER member, probability
/// 0, a bundle_load into fewer than 16 bits) are refused with its errors.
#[test]
fn smaller_actions_ovs_refuses_are_refused_on_decode() {
    use crate::field::Field;
    use crate::learn::Subfield;
    use crate::multipath::{Bundle, BundleAlgorithm, HashFields, Multipath, MultipathAlgorithm};
    use crate::ofp::{port, OfAction, SampleAction, SampleDirection};
    let st = DecodeState::default();
    let wire = |a: OfAction| {
        let mut rule = parse_rule("ip,actions=drop").unwrap();
        rule.instructions.apply = vec![a];
        encode_flow_mod(OFP10, 1, &add_flow_mod(&rule)).unwrap()
    };
    let kind = |a: OfAction| decode(&wire(a), st).map(|_| ()).map_err(|e| e.kind);
    let reg0 = |n_bits| Subfield {
        field: Field::Reg(0),
        ofs: 0,
        n_bits,
    };
    let mp = |max_link, n_bits| {
        OfAction::Multipath(Multipath {
            fields: HashFields::EthSrc,
            basis: 50,
            algorithm: MultipathAlgorithm::Hrw,
            max_link,
            arg: 0,
            dst: reg0(n_bits),
        })
    };
    assert_eq!(kind(mp(15, 4)), Ok(()));
    assert_eq!(kind(mp(16, 4)), Err(ErrorKind::ActionBadArgument));
    let bundle = |members: Vec<u32>, dst| {
        OfAction::Bundle(Box::new(Bundle {
            fields: HashFields::SymmetricL4,
            basis: 0,
            algorithm: BundleAlgorithm::Hrw,
            dst,
            members,
        }))
    };
    assert_eq!(kind(bundle(vec![1, port::LOCAL], None)), Ok(()));
    assert_eq!(
        kind(bundle(vec![1, port::CONTROLLER], None)),
        Err(ErrorKind::ActionBadOutPort)
    );
    assert_eq!(
        kind(bundle(vec![1], Some(reg0(8)))),
        Err(ErrorKind::ActionBadArgument)
    );
    let sample = |probability| {
        OfAction::Sample(SampleAction {
            probability,
            collector_set_id: 1,
            obs_domain_id: 2,
            obs_point_id: 3,
            sampling_port: port::ANY,
            direction: SampleDirection::Egress,
        })
    };
    assert_eq!(kind(sample(1)), Ok(()));
    assert_eq!(kind(sample(0)), Err(ErrorKind::ActionBadArgument));
}

/// What the `openflow_decode` fuzz target found the decoder accepting and
/// OVS refusing: each is refused with OVS's error.
#[test]
fn values_ovs_refuses_are_refused() {
    use crate::field::Field;
    use crate::ofp::{port, OfAction};
    let st = DecodeState::default();
    let flow_mod = |actions: Vec<OfAction>, matches: &str| {
        let mut rule = parse_rule(&format!("{matches},actions=drop")).unwrap();
        rule.instructions.apply = actions;
        encode_flow_mod(OFP13, 1, &add_flow_mod(&rule)).unwrap()
    };
    let refused = |wire: &[u8]| decode(wire, st).map(|_| ()).unwrap_err().kind;
    // A port number between OVS's last port (0xfeff) and the reserved ones.
    let out = |port| OfAction::Output { port, max_len: 0 };
    assert_eq!(
        refused(&flow_mod(vec![out(0x0800_0001)], "ip")),
        ErrorKind::ActionBadOutPort
    );
    assert!(decode(&flow_mod(vec![out(0xfeff), out(port::LOCAL)], "ip"), st).is_ok());
    // An OXM in_port there.
    let mut rule = parse_rule("in_port=7,actions=drop").unwrap();
    rule.matches.flow.in_port = 0x0700_0004;
    let wire = encode_flow_mod(OFP13, 1, &add_flow_mod(&rule)).unwrap();
    assert_eq!(refused(&wire), ErrorKind::MatchBadValue);
    // set_field of a VLAN ID wider than 12 bits plus the present bit, or
    // without that bit.
    let vid = |value| OfAction::SetField {
        field: Field::VlanVid,
        value,
        mask: Field::VlanVid.full_mask(),
    };
    for bad in [0xffff, 100] {
        assert_eq!(
            refused(&flow_mod(vec![vid(bad)], "dl_vlan=5")),
            ErrorKind::ActionBadSetArgument,
            "{bad:#x}"
        );
    }
    assert!(decode(&flow_mod(vec![vid(0x1064)], "dl_vlan=5"), st).is_ok());
    // OpenFlow 1.0's ofp_match with an ICMP type above 255 (in tp_src).
    let hex = "010e0060000000140038208f00000000000000000000000000000000000008000001\
               000000fffffffffffffffd08000000000000000000000000000000004f86ffffffffffff\
               0000000000080002000000050010745464fadc36000000000000";
    let wire: Vec<u8> = (0..hex.len() / 2)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    assert_eq!(refused(&wire), ErrorKind::MatchBadValue);
    // Actions whose fields the match does not promise (OVS's
    // OFPBAC_MATCH_INCONSISTENT); a pushed VLAN counts.
    let tcp_src = OfAction::SetField {
        field: Field::TcpSrc,
        value: 22,
        mask: 0xffff,
    };
    assert_eq!(
        refused(&flow_mod(vec![tcp_src.clone()], "udp")),
        ErrorKind::ActionMatchInconsistent
    );
    assert!(decode(&flow_mod(vec![tcp_src], "tcp"), st).is_ok());
    let push = OfAction::PushVlan { tpid: 0x8100 };
    assert_eq!(
        refused(&flow_mod(vec![vid(0x1005)], "ip")),
        ErrorKind::ActionMatchInconsistent
    );
    assert!(decode(&flow_mod(vec![push, vid(0x1005)], "ip"), st).is_ok());
    assert_eq!(
        refused(&flow_mod(vec![OfAction::DecTtl], "arp")),
        ErrorKind::ActionMatchInconsistent
    );
    // OpenFlow 1.0 lets dec_ttl stand there, as OVS does.
    let mut rule = parse_rule("arp,actions=drop").unwrap();
    rule.instructions.apply = vec![OfAction::DecTtl];
    assert!(decode(
        &encode_flow_mod(OFP10, 1, &add_flow_mod(&rule)).unwrap(),
        st
    )
    .is_ok());
    // goto_table must go forward, from the table the rule goes to.
    let (_, Request::FlowMod(fm)) = decode(
        &encode_flow_mod(
            OFP13,
            1,
            &add_flow_mod(&parse_rule("table=3,actions=goto_table:4").unwrap()),
        )
        .unwrap(),
        st,
    )
    .unwrap() else {
        panic!("a flow mod")
    };
    assert!(fm.check().is_ok());
    let back = FlowMod {
        table: 5,
        ..(*fm).clone()
    };
    assert_eq!(back.check().unwrap_err().kind, ErrorKind::InstBadTableId);
    let modify_all = FlowMod {
        table: 0xff,
        command: FlowModCommand::Modify,
        ..(*fm).clone()
    };
    assert!(
        modify_all.check().is_ok(),
        "a modify of every table adds to 0"
    );
    assert_eq!(modify_all.rule_table(), 0);
}

/// Every field an action can name either goes out under its own header
/// and comes back as itself, or the flow mod is refused naming it: never
/// sent under another field's header (the encoder once fell back to
/// `in_port`'s).
#[test]
fn an_action_on_a_field_without_a_header_is_refused_not_misencoded() {
    let mut refused = Vec::new();
    for info in crate::field::FIELDS {
        let n_bits = crate::field::by_field(info.field).n_bits.min(32) as u8;
        let mv = OfAction::Move {
            src: info.field,
            src_ofs: 0,
            dst: Field::Reg(0),
            dst_ofs: 0,
            n_bits,
        };
        for version in [OFP10, OFP13] {
            let mut wire = Vec::new();
            match actions::encode_action(version, &mv, &mut wire) {
                Ok(()) => {
                    // NXAST_REG_MOVE: the source header follows the
                    // 10-byte Nicira header and three 16-bit fields.
                    let src = u32::from_be_bytes(wire[16..20].try_into().unwrap());
                    let named = nxm::field_for_header(src, None).map(|f| f.field);
                    assert_eq!(named, Some(info.field), "{}", info.name);
                }
                Err(e) => {
                    assert_eq!(e.kind, ErrorKind::ActionBadSetType, "{}", info.name);
                    let first = crate::field::by_field(info.field).name;
                    assert!(e.reason.contains(first), "{}: {}", info.name, e.reason);
                    refused.push(first);
                }
            }
        }
    }
    // Refused: the fields OVS 3.1's meta-flow.h gives no header either
    // ("NXM: none. OXM: none."), and actset_output, whose only header is
    // an experimenter one that a 32-bit field slot cannot carry.
    refused.sort();
    refused.dedup();
    assert_eq!(
        refused,
        [
            "actset_output",
            "dl_vlan",
            "skb_priority",
            "tun_tos",
            "tun_ttl"
        ]
    );
    // As a user writes it: the rule is accepted as text, its OpenFlow
    // encoding is refused with the field's name.
    let rule = parse_rule("actions=move:skb_priority[0..15]->NXM_NX_REG0[0..15],output:1").unwrap();
    for version in [OFP10, OFP13] {
        let e = encode_flow_mod(version, 1, &add_flow_mod(&rule)).unwrap_err();
        assert!(e.reason.contains("skb_priority"), "{e}");
    }
    let stats = FlowStatsEntry {
        table: 0,
        duration_sec: 0,
        duration_nsec: 0,
        priority: rule.priority,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        idle_age: 0,
        hard_age: 0,
        cookie: 0,
        packet_count: 0,
        byte_count: 0,
        matches: rule.matches,
        instructions: rule.instructions.clone(),
    };
    assert!(encode_flow_stats_reply(OFP13, 1, FlowFormat::Oxm, &[stats]).is_err());
}

#[test]
fn write_actions_with_an_action_the_set_cannot_hold_is_refused_on_decode() {
    let st = DecodeState::default();
    let kind = |actions: Vec<OfAction>| {
        let mut rule = parse_rule("ip,actions=drop").unwrap();
        rule.instructions.write_actions = Some(actions);
        let wire = encode_flow_mod(OFP13, 1, &add_flow_mod(&rule)).unwrap();
        decode(&wire, st).map(|_| ()).map_err(|e| e.kind)
    };
    let output = OfAction::Output {
        port: 1,
        max_len: 0,
    };
    assert_eq!(kind(vec![OfAction::Group(1), output.clone()]), Ok(()));
    for refused in [
        OfAction::Exit,
        OfAction::PopQueue,
        OfAction::DebugSlow,
        OfAction::Clone(vec![output.clone()]),
        OfAction::FinTimeout {
            idle_timeout: 5,
            hard_timeout: 0,
        },
    ] {
        assert_eq!(
            kind(vec![output.clone(), refused.clone()]),
            Err(ErrorKind::ActionBadType),
            "{refused:?}"
        );
    }
}
