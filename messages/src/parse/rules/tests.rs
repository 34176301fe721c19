use super::*;

fn rule(s: &str) -> Rule {
    parse_rule(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn error(s: &str) -> ParseError {
    match parse_rule(s) {
        Ok(r) => panic!("{s}: parsed as {r:?}"),
        Err(e) => e,
    }
}

#[test]
fn table_priority_and_a_prefix() {
    let r = rule("table=2,priority=100,ip,nw_dst=10.0.0.0/8,actions=output:3");
    assert_eq!((r.table, r.priority), (2, 100));
    assert_eq!(r.matches.flow.dl_type, ETH_TYPE_IP);
    assert_eq!(
        (r.matches.flow.nw_dst, r.matches.mask.nw_dst),
        (0x0a00_0000, 0xff00_0000)
    );
    assert_eq!(
        r.instructions.apply,
        vec![OfAction::Output {
            port: 3,
            max_len: 0
        }]
    );
}

#[test]
fn error_message_names_line_column_text_and_expectation() {
    let e = parse_rules("# c\n\npriority=1,ip,nw_dst=10.0.0.300,actions=drop\n")
        .unwrap_err()
        .with_file("rules.of13");
    assert_eq!(
        e.to_string(),
        "rules.of13:3:22: bad value for nw_dst: \"10.0.0.300\": expected an IPv4 address or prefix"
    );
}

#[test]
fn prerequisites_of_match_fields() {
    // Fields without their prerequisites are dropped, as OVS normalizes.
    assert!(rule("priority=1,tp_dst=80,actions=drop")
        .matches
        .mask
        .is_zero());
    assert!(rule("udp,tp_dst=53,actions=drop").matches.mask.tp_dst == 0xffff);
    assert!(
        rule("icmp6,icmp_type=135,nd_target=::1,actions=drop")
            .matches
            .mask
            .nd_target
            == [0xff; 16]
    );
    let na = rule("icmp6,icmp_type=136,nd_sll=00:00:00:00:00:01,actions=drop");
    assert_eq!(na.matches.mask.arp_sha, [0; 6]);
    let nd_code = rule("icmp6,icmp_type=136,nd_target=::1,icmp_code=3,actions=drop");
    assert_eq!(nd_code.matches.mask.nd_target, [0; 16]);
    assert_eq!(
        rule("udp,tcp_flags=+syn,actions=drop")
            .matches
            .mask
            .tcp_flags,
        0
    );
    assert_eq!(rule("nw_frag=first,actions=drop").matches.mask.nw_frag, 0);
    // ICMP type on later fragments stays; ports are refused.
    assert_eq!(
        rule("icmp,nw_frag=later,icmp_type=0,actions=drop")
            .matches
            .mask
            .tp_src,
        0xffff
    );
    let e = error("tcp,nw_frag=later,tp_dst=80,actions=drop");
    assert_eq!(e.what, "tp_dst: prerequisites not met");
    assert_eq!(e.column, 19);
    // A later shorthand's EtherType wins; icmp6's protocol is dropped.
    let m = rule("icmp6,mplsm,actions=drop").matches;
    assert_eq!((m.flow.dl_type, m.mask.nw_proto), (0x8848, 0));
}

#[test]
fn move_copies_subfields_and_prints_back() {
    let r = rule("tcp,actions=move:NXM_NX_REG0[0..7]->NXM_NX_REG1[8..15],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]");
    assert_eq!(
        r.instructions.apply[0],
        OfAction::Move {
            src: Field::Reg(0),
            src_ofs: 0,
            dst: Field::Reg(1),
            dst_ofs: 8,
            n_bits: 8
        }
    );
    assert_eq!(
        crate::format::ofp_rule::format_instructions(&r.instructions),
        "move:NXM_NX_REG0[0..7]->NXM_NX_REG1[8..15],move:NXM_OF_ETH_SRC[]->NXM_OF_ETH_DST[]"
    );
    assert!(error("actions=move:NXM_NX_REG0[0..7]->NXM_NX_REG1[0..3]")
        .what
        .contains("bits wide"));
    assert!(error("arp,actions=move:NXM_OF_IP_SRC[]->NXM_NX_REG0[]")
        .what
        .contains("prerequisites"));
}

#[test]
fn output_to_a_register_and_dec_ttl_with_ids() {
    let r = rule("ip,actions=output:NXM_NX_REG1[0..3],dec_ttl(1,2)");
    assert_eq!(
        r.instructions.apply,
        vec![
            OfAction::OutputReg {
                field: Field::Reg(1),
                ofs: 0,
                n_bits: 4
            },
            OfAction::DecTtlIds(vec![1, 2])
        ]
    );
    assert_eq!(
        crate::format::ofp_rule::format_instructions(&r.instructions),
        "output:NXM_NX_REG1[0..3],dec_ttl(1,2)"
    );
    assert!(
        rule("actions=output:NXM_NX_REG1[]")
            .instructions
            .apply
            .len()
            == 1
    );
    assert!(error("actions=output:OXM_OF_PKT_REG0[]")
        .what
        .contains("wider"));
    assert!(error("ip,actions=dec_ttl(x)")
        .what
        .contains("controller ids"));
}

#[test]
fn vlan_matches_encode_like_ovs() {
    let r = rule("dl_vlan=10,actions=drop");
    assert_eq!(
        (r.matches.flow.vlans[0].tci, r.matches.mask.vlans[0].tci),
        (0x100a, 0x1fff)
    );
    let r = rule("dl_vlan_pcp=4,actions=drop");
    assert_eq!(
        (r.matches.flow.vlans[0].tci, r.matches.mask.vlans[0].tci),
        (0x9000, 0xf000)
    );
    let r = rule("vlan_tci=0x0000/0x1000,actions=drop");
    assert_eq!(
        (r.matches.flow.vlans[0].tci, r.matches.mask.vlans[0].tci),
        (0, 0x1000)
    );
    // OpenFlow 1.3 cannot carry a PCP match without the VID part.
    let r = rule("vlan_tci=0x4000/0xe000,actions=drop");
    assert_eq!(r.matches.mask.vlans[0].tci, 0);
}

#[test]
fn mod_vlan_vid_pushes_unless_the_rule_matches_a_tag() {
    let r = rule("actions=mod_vlan_vid:100,output:1");
    assert_eq!(
        r.instructions.apply[..2],
        [
            OfAction::PushVlan { tpid: 0x8100 },
            OfAction::SetField {
                field: Field::VlanVid,
                value: 0x1064,
                mask: 0x1fff
            }
        ]
    );
    let r = rule("dl_vlan=3,actions=mod_vlan_vid:100,mod_vlan_pcp:2");
    assert_eq!(r.instructions.apply.len(), 2);
    let e = error("ip,actions=strip_vlan");
    assert_eq!(e.what, "strip_vlan: prerequisites not met");
}

#[test]
fn l4_and_l3_rewrites_follow_the_match() {
    let r = rule("udp,actions=mod_tp_dst:53,mod_nw_tos:32");
    assert_eq!(
        r.instructions.apply,
        vec![
            OfAction::SetField {
                field: Field::UdpDst,
                value: 53,
                mask: 0xffff
            },
            OfAction::SetField {
                field: Field::IpDscp,
                value: 8,
                mask: 0x3f
            },
        ]
    );
    error("actions=mod_tp_dst:53");
    error("tcp,nw_frag=later,actions=mod_tp_dst:53");
    error("ipv6,actions=mod_nw_src:1.2.3.4");
    error("actions=set_field:1.2.3.4->ip_src");
}

#[test]
fn set_field_and_load() {
    let r = rule("actions=set_field:5->reg0,load:3->NXM_NX_REG1[0..7],set_field:0x4/0xff->metadata,goto_table:1");
    assert_eq!(
        r.instructions.apply,
        vec![
            OfAction::SetField {
                field: Field::Reg(0),
                value: 5,
                mask: 0xffff_ffff
            },
            OfAction::Load {
                field: Field::Reg(1),
                value: 3,
                mask: 0xff
            },
            OfAction::Load {
                field: Field::Metadata,
                value: 4,
                mask: 0xff
            },
        ]
    );
    assert_eq!(r.instructions.goto_table, Some(1));
    assert_eq!(
        error("actions=load:256->NXM_NX_REG0[0..7]").what,
        "value does not fit into 8 bits"
    );
    assert_eq!(
        error("actions=set_field:1->bogus").what,
        "not a valid OXM field name"
    );
}

#[test]
fn instructions_in_order_only() {
    let r = rule("table=1,actions=output:1,clear_actions,write_actions(output:2),write_metadata:0x5/0xff,goto_table:3");
    assert!(r.instructions.clear_actions);
    assert_eq!(
        r.instructions.write_actions,
        Some(vec![OfAction::Output {
            port: 2,
            max_len: 0
        }])
    );
    assert_eq!(r.instructions.write_metadata, Some((5, 0xff)));
    assert_eq!(
        error("actions=goto_table:2,output:1").what,
        "invalid instruction ordering: apply_actions must appear before goto_table, for OpenFlow 1.1+ compatibility"
    );
    assert_eq!(
        error("table=3,actions=goto_table:2").what,
        "goto_table must go to a later table"
    );
    assert_eq!(
        error("actions=drop,output:1").what,
        "\"drop\" must not be accompanied by any other action or instruction"
    );
}

#[test]
fn ports_and_resubmit() {
    let r = rule("in_port=LOCAL,actions=in_port,output:in_port,IN_PORT,LOCAL,controller,CONTROLLER:100,resubmit(,2),resubmit:3");
    assert_eq!(r.matches.flow.in_port, port::LOCAL);
    let a = &r.instructions.apply;
    assert_eq!(
        a[0],
        OfAction::Output {
            port: port::IN_PORT,
            max_len: 0
        }
    );
    assert_eq!(a[1], a[0]);
    assert_eq!(a[4], OfAction::Controller(ControllerAction::output(65535)));
    assert_eq!(a[5], OfAction::Controller(ControllerAction::output(100)));
    assert_eq!(
        a[6],
        OfAction::Resubmit {
            in_port: None,
            table: Some(2)
        }
    );
    assert_eq!(
        a[7],
        OfAction::Resubmit {
            in_port: Some(3),
            table: None
        }
    );
}

/// What `ovs-ofctl -O OpenFlow13 --no-stats dump-flows` printed for
/// these rules on OVS 3.1.
#[test]
fn conjunction_learn_and_fin_timeout_print_as_ovs_prints_them() {
    let cases = [
        (
            "table=82,priority=71,ct_state=+new-est,ip,reg6=0x284,nw_src=10.0.0.1,actions=conjunction(18,1/2),conjunction(26,1/2)",
            "table=82, priority=71,ct_state=+new-est,ip,reg6=0x284,nw_src=10.0.0.1 actions=conjunction(18,1/2),conjunction(26,1/2)",
        ),
        (
            "table=82,priority=71,conj_id=18,ct_state=+new-est,ip,reg5=0x2,actions=output:2",
            "table=82, priority=71,conj_id=18,ct_state=+new-est,ip,reg5=0x2 actions=output:2",
        ),
        (
            "table=2,actions=learn(table=10,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]),resubmit(,3)",
            "table=2, actions=learn(table=10,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]),resubmit(,3)",
        ),
        (
            "table=10,priority=1,actions=learn(table=20,hard_timeout=300,priority=1,cookie=0x9c5d6b4bd2a7e1f3,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
            "table=10, priority=1 actions=learn(table=20,hard_timeout=300,priority=1,cookie=0x9c5d6b4bd2a7e1f3,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:OXM_OF_IN_PORT[]),output:1",
        ),
        (
            "table=5,priority=7,tcp,actions=learn(table=6,idle_timeout=10,fin_idle_timeout=2,fin_hard_timeout=4,send_flow_rem,delete_learned,limit=5,result_dst=reg3[1],eth_type=0x800,nw_proto=6,NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],ip_src=10.1.2.3,tcp_dst[0..7]=0x12,load:0x5->reg1[2..5]),fin_timeout(idle_timeout=3,hard_timeout=9),output:2",
            "table=5, priority=7,tcp actions=learn(table=6,idle_timeout=10,fin_idle_timeout=2,fin_hard_timeout=4,send_flow_rem,delete_learned,limit=5,result_dst=NXM_NX_REG3[1],eth_type=0x800,nw_proto=6,NXM_OF_IP_DST[]=NXM_OF_IP_SRC[],ip_src=10.1.2.3,NXM_OF_TCP_DST[0..7]=0x12,load:0x5->NXM_NX_REG1[2..5]),fin_timeout(idle_timeout=3,hard_timeout=9),output:2",
        ),
        (
            "table=5,priority=8,tcp,actions=fin_timeout(hard_timeout=9)",
            "table=5, priority=8,tcp actions=fin_timeout(hard_timeout=9)",
        ),
    ];
    for (text, ovs) in cases {
        assert_eq!(crate::format::ofp_rule::format_rule(&rule(text)), ovs);
    }
}

#[test]
fn conjunction_learn_and_fin_timeout_errors() {
    let cases = [
        ("actions=conjunction(1,1/1)", "conjunction must have at least 2 clauses"),
        ("actions=conjunction(1,3/2)", "clause index must be less than or equal to number of clauses"),
        ("actions=conjunction(1,0/2)", "clause index must be positive"),
        ("actions=conjunction(1,1/65)", "conjunction must have at most 64 clauses"),
        ("actions=conjunction(1)", "\"conjunction\" syntax is \"conjunction(id,i/n)\""),
        (
            "actions=conjunction(1,1/2),output:1",
            "\"conjunction\" actions may be used along with \"note\" but not any other kind of action (such as the \"output\" action used here)",
        ),
        ("actions=fin_timeout(idle_timeout=1)", "fin_timeout: prerequisites not met"),
        ("actions=fin_timeout(foo=1)", "invalid key 'foo' in 'fin_timeout' argument"),
        ("actions=learn(table=255)", "table id 255 not valid for `learn' action"),
        ("actions=learn(bogus)", "unknown keyword bogus"),
        ("actions=learn(result_dst=reg0[0..1])", "result_dst in 'learn' action must be a single bit"),
        ("actions=learn(NXM_OF_IP_DST[])", "learn: prerequisites of the learned match not met"),
        ("actions=learn(eth_type=0x800,NXM_OF_IP_DST[])", "learn: prerequisites not met"),
        ("actions=learn(NXM_OF_ETH_DST[]=NXM_OF_IP_SRC[])", "bit widths of NXM_OF_ETH_DST[] (48) and NXM_OF_IP_SRC[] (32) differ"),
        ("actions=learn(load:0x10->reg0[0..3])", "0x10->reg0[0..3]: value does not fit into 4 bits"),
    ];
    for (text, what) in cases {
        assert_eq!(error(text).what, what, "{text}");
    }
    // With the prerequisites there, the learn is fine.
    rule("ip,actions=learn(eth_type=0x800,NXM_OF_IP_DST[])");
}

#[test]
fn missing_actions_and_unknown_names() {
    assert_eq!(error("priority=5").what, "must specify an action");
    assert_eq!(error("bogus=1,actions=drop").what, "unknown field");
    assert_eq!(error("actions=frobnicate").what, "unknown action");
    assert_eq!(
        error("actions=dec_nsh_ttl").what,
        "unsupported action dec_nsh_ttl"
    );
    // What OVS refuses in the smaller actions, with OVS's words.
    for (text, what) in [
        (
            "actions=multipath(eth_src,50,hrw,17,0,NXM_NX_REG0[0..3])",
            "eth_src,50,hrw,17,0,NXM_NX_REG0[0..3]: 4-bit destination field has 16 possible values, less than specified n_links 17",
        ),
        (
            "actions=multipath(eth_src,50,hrw,0,0,NXM_NX_REG0[])",
            "eth_src,50,hrw,0,0,NXM_NX_REG0[]: n_links 0 is not in valid range 1 to 65536",
        ),
        (
            "actions=multipath(eth_dst,50,hrw,2,0,NXM_NX_REG0[])",
            "eth_dst,50,hrw,2,0,NXM_NX_REG0[]: unknown fields `eth_dst'",
        ),
        (
            "actions=multipath(eth_src,50,hrw,2,0)",
            "eth_src,50,hrw,2,0: not enough arguments to multipath action",
        ),
        (
            "actions=bundle(eth_src,0,hrw,ofport,members:1,CONTROLLER)",
            "unsupported controller member",
        ),
        (
            "actions=bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[0..7],members:1)",
            "bundle_load action requires at least 16 bit destination",
        ),
        (
            "actions=bundle(eth_src,0,lacp,ofport,members:1)",
            "eth_src,0,lacp,ofport,members:1: unknown algorithm `lacp'",
        ),
        ("actions=sample(probability=0)", "invalid probability value \"0\""),
        (
            "actions=sample(collector_set_id=1)",
            "non-zero \"probability\" must be specified on sample",
        ),
        ("actions=note:zz", "bad hex digit in `note' argument"),
    ] {
        assert_eq!(error(text).what, what, "{text}");
    }
}

#[test]
fn pipeline_actions_print_back_as_ovs_prints_them() {
    let text = "clone(set_field:0x5->reg0,output:2),push:NXM_NX_REG0[0..15],\
                pop:OXM_OF_PKT_REG1[],exit,output(port=3,max_len=100),\
                check_pkt_larger(200)->NXM_NX_REG0[0],enqueue:4:2,set_queue:7,pop_queue,\
                move:NXM_NX_CT_LABEL[64..75]->OXM_OF_VLAN_VID[]";
    let r = rule(&format!("ip,actions={text}"));
    let printed = crate::format::ofp_rule::format_instructions(&r.instructions);
    assert_eq!(
        printed,
        "clone(set_field:0x5->reg0,output:2),push:NXM_NX_REG0[0..15],\
         pop:OXM_OF_PKT_REG1[],exit,output(port=3,max_len=100),\
         check_pkt_larger(200)->NXM_NX_REG0[0],enqueue:4:2,set_queue:7,pop_queue,\
         move:NXM_NX_CT_LABEL[64..75]->OXM_OF_VLAN_VID[]"
    );
    // What OVS refuses, refused with its reason.
    assert!(error("actions=check_pkt_larger(200)->NXM_NX_REG0[0..1]")
        .what
        .contains("1-bit"));
    assert!(error("actions=output(port=2,max_len=4)")
        .what
        .contains("max_len"));
    assert!(error("actions=output(port=NORMAL,max_len=100)")
        .what
        .contains("unsupported truncate port"));
    assert!(error("actions=pop:NXM_OF_ETH_TYPE[]")
        .what
        .contains("not writable"));
    assert!(error("actions=enqueue:2").what.contains("enqueue"));
}

#[test]
fn extended_registers_and_actset_output_match() {
    let r = rule("xreg1=0x100000002,xxreg3=0x5/0xff,actset_output=UNSET,actions=drop");
    let m = &r.matches;
    assert_eq!((m.flow.regs[2], m.flow.regs[3]), (1, 2));
    assert_eq!((m.flow.regs[15], m.mask.regs[15]), (5, 0xff));
    assert_eq!(m.flow.actset_output, crate::ofp::port::UNSET);
    let printed = crate::format::ofp_rule::format_match_fields(&m.flow, &m.mask, None, false);
    assert_eq!(
        printed,
        "reg2=0x1,reg3=0x2,reg15=0x5/0xff,actset_output=UNSET"
    );
}

#[test]
fn flow_mods_take_the_keywords_ovs_ofctl_takes_for_each_command() {
    use FlowModCommand::*;
    let fm = parse_flow_mod("table=1,cookie=0x10/0xf0,out_port=3,udp,tp_dst=7", Delete).unwrap();
    assert_eq!(
        (fm.table, fm.cookie, fm.cookie_mask, fm.out_port),
        (Some(1), 0x10, 0xf0, Some(3))
    );
    assert!(fm.instructions.is_none());
    let everything = parse_flow_mod("", Delete).unwrap();
    assert_eq!(
        (everything.table, everything.matches),
        (None, Match::catchall())
    );
    assert_eq!(
        parse_flow_mod("priority=5,ip", Delete).unwrap_err().what,
        "unknown keyword priority"
    );
    assert_eq!(
        parse_flow_mod("priority=5,ip", DeleteStrict)
            .unwrap()
            .priority,
        5
    );
    assert_eq!(
        parse_flow_mod("cookie=5", Delete).unwrap_err().what,
        "cannot set cookie"
    );
    assert_eq!(
        parse_flow_mod("out_port=1,actions=drop", Modify)
            .unwrap_err()
            .what,
        "unknown keyword out_port"
    );
    let m = parse_flow_mod("cookie=9,reset_counts,ip,actions=output:2", Modify).unwrap();
    assert_eq!(
        (m.new_cookie, m.reset_counts, m.cookie_mask),
        (Some(9), true, 0)
    );
    assert!(m.instructions.is_some());
    assert_eq!(
        parse_flow_mod("ip", Modify).unwrap_err().what,
        "must specify an action"
    );
    let e = parse_flow_mod("cookie=1/1,actions=drop", Add).unwrap_err();
    assert_eq!(e.what, "flow additions cannot use a cookie mask");
}

#[test]
fn dropped_fields_are_reported_where_they_were_written() {
    let (rule, dropped) =
        parse_rule_noting("priority=7, tp_dst=80,ip,nw_src=1.2.3.4,actions=drop").unwrap();
    assert_eq!(rule.matches.mask.tp_dst, 0);
    assert_eq!(rule.matches.mask.nw_src, u32::MAX);
    assert_eq!(dropped.len(), 1);
    assert_eq!(
        (dropped[0].column, dropped[0].text.as_str()),
        (13, "tp_dst=80")
    );
    assert!(parse_rule_noting("tcp,tp_dst=80,actions=drop")
        .unwrap()
        .1
        .is_empty());
}

#[test]
fn reserved_output_ports_parse() {
    for a in [
        "NORMAL",
        "output:NORMAL",
        "output:normal",
        "FLOOD,ALL,output:TABLE",
    ] {
        assert!(parse_rule(&format!("actions={a}")).is_ok(), "{a}");
    }
}

#[test]
fn groups_parse_print_as_dump_groups_and_errors_say_why() {
    use crate::format::ofp_rule::format_group;
    use crate::group::{GroupType, Selection};
    let g = parse_group(
        "group_id=3,type=select,bucket=weight:100,watch_port:2,actions=output:2,\
         bucket=mod_dl_src:00:00:00:00:00:aa,output:3",
    )
    .unwrap();
    assert_eq!(g.kind, GroupType::Select);
    assert!(matches!(&g.selection, Selection::DpHash { hash_map, .. } if hash_map.len() == 128));
    assert_eq!(
        format_group(&g),
        "group_id=3,type=select,bucket=weight:100,watch_port:2,actions=output:2,\
         bucket=actions=set_field:00:00:00:00:00:aa->eth_src,output:3"
    );
    // As OVS's parse_bucket_str, properties may follow the actions (OVS's
    // ofproto-dpif.at "group stats single bucket"); printed as ovs-ofctl
    // 3.1 dump-groups prints this group.
    let g = parse_group(
        "group_id=1234,type=select,bucket=output:10,weight=2000,bucket=output:11,weight=0,\
         bucket=mod_vlan_vid:5,watch_port=3,actions=output:12",
    )
    .unwrap();
    assert_eq!(
        format_group(&g),
        "group_id=1234,type=select,bucket=weight:2000,actions=output:10,\
         bucket=weight:0,actions=output:11,\
         bucket=watch_port:3,actions=push_vlan:0x8100,set_field:4101->vlan_vid,output:12"
    );
    // Buckets have no match: no prerequisites are checked there.
    let g = parse_group("group_id=1,type=indirect,bucket=set_field:10.0.0.9->ip_dst,output:4");
    assert!(g.is_ok(), "{g:?}");
    let g = parse_group(
        "group_id=1,type=select,selection_method=hash,fields(ip_src,tcp_dst),bucket=output:1",
    )
    .unwrap();
    assert!(matches!(&g.selection, Selection::Hash { fields, .. } if fields.len() == 2));
    // Kept in meta-flow order, each once, as OVS's field bitmap.
    let g = parse_group(
        "group_id=1,type=select,selection_method=hash,fields(tcp_src,ip_src,tcp_src),bucket=output:1",
    )
    .unwrap();
    assert!(matches!(&g.selection, Selection::Hash { fields, .. }
        if fields.iter().map(|f| f.0).collect::<Vec<_>>() == [Field::Ipv4Src, Field::TcpSrc]));
    // OVN's load balancers commit in buckets: `ct` needs no IP match there.
    let g = parse_group(
        "group_id=1,type=select,bucket=ct(commit,table=2,zone=NXM_NX_REG13[0..15],\
         nat(dst=10.0.0.3:8080),exec(load:0x1->NXM_NX_CT_MARK[1]))",
    );
    assert!(g.is_ok(), "{g:?}");
    assert_eq!(
        rule("ip,actions=group:7").instructions.apply,
        [OfAction::Group(7)]
    );
    let bad = |s: &str| parse_group(s).unwrap_err().to_string();
    assert!(bad("type=all,bucket=output:1").contains("must specify a group_id"));
    assert!(bad("group_id=1,type=any,bucket=output:1").contains("invalid group type"));
    assert!(bad("group_id=1,type=ff,bucket=output:1").contains("requires watch_port"));
    assert!(
        bad("group_id=1,type=indirect,bucket=output:1,bucket=output:2").contains("exactly one")
    );
    assert!(bad("group_id=1,type=all,bucket=output:1,frobnicate").contains("unknown action"));
    assert!(bad("group_id=1,type=select,bucket=weight=2").contains("bucket must specify actions"));
    assert!(
        bad("group_id=1,type=all,selection_method=hash,bucket=output:1")
            .contains("only for select")
    );
    assert_eq!(parse_group_id("group_id=5").unwrap(), Some(5));
    assert_eq!(parse_group_id("").unwrap(), None);
    assert!(parse_group_id("group=5").is_err());
}

/// `controller(...)` as OVS's `parse_CONTROLLER` takes it and
/// `format_CONTROLLER` prints it back (checked against ovs-ofctl 3.1).
#[test]
fn controller_actions_parse_and_print_as_ovs() {
    let printed = |acts: &str| {
        crate::format::ofp_rule::format_instructions(&rule(&format!("actions={acts}")).instructions)
    };
    assert_eq!(printed("controller"), "CONTROLLER:65535");
    assert_eq!(printed("controller:100"), "CONTROLLER:100");
    assert_eq!(printed("controller(max_len=64)"), "CONTROLLER:64");
    assert_eq!(
        printed("controller(reason=no_match,id=3,max_len=200)"),
        "controller(reason=no_match,max_len=200,id=3)"
    );
    assert_eq!(
        printed("controller(userdata=01.02.0a,pause,meter_id=5)"),
        "controller(userdata=01.02.0a,pause,meter_id=5)"
    );
    assert_eq!(
        printed("controller(userdata=0102)"),
        "controller(userdata=01.02)"
    );
    assert_eq!(
        printed("controller(reason=invalid_ttl)"),
        "controller(reason=invalid_ttl)"
    );
    let a = &rule("actions=controller(reason=group,id=9)")
        .instructions
        .apply[0];
    let OfAction::Controller(c) = a else {
        panic!("{a:?}")
    };
    assert_eq!((c.reason, c.controller_id), (packet_in_reason::GROUP, 9));
    assert!(error("actions=controller(reason=bogus)")
        .what
        .contains("unknown reason"));
    assert!(error("actions=controller(userdata=1)")
        .what
        .contains("bad hex digit"));
    assert!(error("actions=controller(colour=red)")
        .what
        .contains("unknown key"));
    assert!(error("actions=controller(max_len=70000)")
        .what
        .contains("max_len"));
    // The action set takes an output to CONTROLLER only.
    assert_eq!(
        printed("write_actions(output:CONTROLLER)"),
        "write_actions(CONTROLLER:65535)"
    );
    assert!(error("actions=write_actions(controller(id=7))")
        .what
        .contains("disallowed action in action set"));
}

#[test]
fn the_action_set_takes_what_ovs_lets_it_hold() {
    // Each of these OVS 3.1's switch keeps in `write_actions`.
    for a in [
        "output:1,output:2",
        "CONTROLLER:100",
        "IN_PORT",
        "NORMAL",
        "group:1",
        "resubmit(,2)",
        "resubmit:3",
        "ct(commit)",
        "ct_clear",
        "set_queue:1",
        "set_field:1->reg0",
        "load:1->NXM_NX_REG0[]",
        "move:NXM_NX_REG0[]->NXM_NX_REG1[]",
        "mod_nw_dst:1.1.1.1",
        "mod_vlan_vid:5",
        "push_vlan:0x8100",
        "strip_vlan",
        "push_mpls:0x8847",
        "dec_ttl",
        "dec_ttl(1,2)",
        "set_tunnel:5",
    ] {
        let text = format!("ip,actions=write_actions({a})");
        assert!(parse_rule(&text).is_ok(), "{text}: {:?}", parse_rule(&text));
    }
    // Each of these its switch refuses there with OFPBAC_BAD_TYPE.
    for a in [
        "note:01",
        "learn(table=1)",
        "multipath(eth_src,50,modulo_n,1,0,NXM_NX_REG0[])",
        "exit",
        "clone(output:1)",
        "output:NXM_NX_REG0[]",
        "push:NXM_NX_REG0[]",
        "pop:NXM_NX_REG0[]",
        "controller(id=7)",
        "controller(reason=no_match)",
        "enqueue:1:2",
        "sample(probability=1)",
        "pop_queue",
        "output(port=1,max_len=100)",
        "check_pkt_larger(100)->NXM_NX_REG0[0]",
        "debug_recirc",
        "debug_slow",
        "bundle(eth_src,0,hrw,ofport,members:1)",
        "bundle_load(eth_src,0,hrw,ofport,NXM_NX_REG0[],members:1)",
    ] {
        let e = error(&format!("ip,actions=output:1,write_actions(output:2,{a})"));
        let name = a.split([':', '(', ',']).next().unwrap();
        assert!(
            e.what.contains("disallowed action in action set")
                && e.what.contains(&format!("does not take {name} "))
                && e.what.contains("OFPBAC_BAD_TYPE"),
            "{a}: {e}"
        );
        let at = "ip,actions=output:1,write_actions(output:2,".len() + 1;
        assert_eq!(e.column, at, "{a}: {e}");
    }
    // fin_timeout is refused for the action set, not for its match.
    let e = error("tcp,actions=write_actions(fin_timeout(idle_timeout=5))");
    assert!(e.what.contains("does not take fin_timeout"), "{e}");
}
