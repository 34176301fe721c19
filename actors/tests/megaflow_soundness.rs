//! Megaflow soundness (invariant 1 of ARCHITECTURE.md): for random rule
//! sets and flows, every flow inside a computed megaflow — the same bits
//! under the megaflow's mask, anything elsewhere — translates to the same
//! datapath actions. Rules send packets through the connection tracker
//! (`ct` with and without `table=`, `exec`, `nat`, `ct_clear`) and match
//! its verdict; every recirculation a translation forks is checked the
//! same way, resumed with a random conntrack state. Rule sets include
//! conjunctive matches (clauses and `conj_id` rules) and `learn` actions,
//! checked after some packets have taught the tables their rules.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

use actors::tables::Tables;
use actors::xlate::{xlate, XlateConfig};
use messages::field::Field;
use messages::flow::*;
use messages::learn::{Learn, LearnDst, LearnSpec, LearnSrc, Subfield};
use messages::odp::OdpAction;
use messages::ofp::{
    ControllerAction, CtSpec, CtZone, Instructions, Match, NatAction, NatKind, OfAction, Rule,
};
use messages::parse::rules::parse_groups;

/// Small value pools so that rules and flows collide often.
fn ip_pool() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0x0a00_0001u32),
        Just(0x0a00_0102),
        Just(0x0a01_0001),
        Just(0xc0a8_0101),
        Just(0xc0a8_01ff),
        any::<u32>(),
    ]
}

fn port_pool() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(22u16),
        Just(80),
        Just(443),
        Just(8080),
        Just(0x1f90),
        any::<u16>()
    ]
}

fn mac_pool() -> impl Strategy<Value = u128> {
    prop_oneof![
        Just(0x0200_0000_0001u128),
        Just(0x0200_0000_0002),
        Just(0x0300_0000_0001),
        Just(0xffff_ffff_ffff)
    ]
}

#[derive(Clone, Debug)]
enum Cond {
    InPort(u32),
    EthSrc(u128, u128),
    EthDst(u128, u128),
    Vlan(u16),
    Untagged,
    NwSrc(u32, u32),
    NwDst(u32, u32),
    TpDst(u16, u16),
    TpSrc(u16, u16),
    Frag(u8, u8),
    TcpFlags(u16, u16),
    CtState(u8, u8),
    CtZone(u16),
    CtMark(u32, u32),
    ConjId(u32),
}

/// Conntrack states a tracker gives (and none).
fn ct_state_pool() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(0u8),
        Just(CS_TRACKED | CS_NEW),
        Just(CS_TRACKED | CS_ESTABLISHED),
        Just(CS_TRACKED | CS_ESTABLISHED | CS_REPLY_DIR),
        Just(CS_TRACKED | CS_RELATED),
        Just(CS_TRACKED | CS_INVALID),
        Just(CS_TRACKED | CS_NEW | CS_SRC_NAT),
    ]
}

fn prefix_mask() -> impl Strategy<Value = u32> {
    (0u32..=32).prop_map(|n| if n == 0 { 0 } else { u32::MAX << (32 - n) })
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        (1u32..5).prop_map(Cond::InPort),
        (
            mac_pool(),
            prop_oneof![Just(u128::MAX), Just(0x0100_0000_0000u128)]
        )
            .prop_map(|(v, m)| Cond::EthSrc(v, m)),
        (
            mac_pool(),
            prop_oneof![Just(u128::MAX), Just(0x0100_0000_0000u128)]
        )
            .prop_map(|(v, m)| Cond::EthDst(v, m)),
        (1u16..4).prop_map(Cond::Vlan),
        Just(Cond::Untagged),
        (ip_pool(), prefix_mask()).prop_map(|(v, m)| Cond::NwSrc(v, m)),
        (ip_pool(), prefix_mask()).prop_map(|(v, m)| Cond::NwDst(v, m)),
        (
            port_pool(),
            prop_oneof![Just(0xffffu16), Just(0xfff0), Just(0xff00)]
        )
            .prop_map(|(v, m)| Cond::TpDst(v, m)),
        (port_pool(), Just(0xffffu16)).prop_map(|(v, m)| Cond::TpSrc(v, m)),
        (0u8..4, prop_oneof![Just(3u8), Just(1), Just(2)]).prop_map(|(v, m)| Cond::Frag(v, m)),
        (0u16..0x40, 0u16..0x40).prop_map(|(v, m)| Cond::TcpFlags(v, m)),
        (
            ct_state_pool(),
            prop_oneof![Just(0xffu8), Just(CS_TRACKED), Just(0x23), Just(0x3f)]
        )
            .prop_map(|(v, m)| Cond::CtState(v, m)),
        (0u16..3).prop_map(Cond::CtZone),
        (0u32..3, prop_oneof![Just(u32::MAX), Just(1u32)]).prop_map(|(v, m)| Cond::CtMark(v, m)),
    ]
}

/// A rule: an L3/L4 protocol choice, conditions, priority, actions.
#[derive(Clone, Debug)]
struct RuleSpec {
    table: u8,
    priority: u16,
    proto: u8,
    conds: Vec<Cond>,
    actions: Vec<OfAction>,
    goto: bool,
    /// A clause of a conjunction instead of actions: (id, clause, clauses).
    conj: Option<(u32, u8, u8)>,
    /// A second clause, of another conjunction.
    conj2: Option<(u32, u8, u8)>,
}

fn conjunction() -> impl Strategy<Value = (u32, u8, u8)> {
    (1u32..3, prop_oneof![3 => Just(2u8), 1 => Just(3)])
        .prop_flat_map(|(id, n)| (Just(id), 0..n, Just(n)))
}

/// The advanced tutorial's MAC learning, into table 1 or 2 at a few
/// priorities: match the VLAN and `eth_dst` = this `eth_src`, load the
/// input port into reg0 and output to it.
fn learn_action() -> impl Strategy<Value = OfAction> {
    (
        1u8..3,
        prop_oneof![Just(5u16), Just(15), Just(100)],
        any::<bool>(),
    )
        .prop_map(|(table, priority, output)| {
            let sf = |field, ofs, n_bits| Subfield { field, ofs, n_bits };
            let mut specs = vec![
                LearnSpec {
                    src: LearnSrc::Field(sf(Field::VlanTci, 0, 12)),
                    dst: LearnDst::Match(sf(Field::VlanTci, 0, 12)),
                    n_bits: 12,
                },
                LearnSpec {
                    src: LearnSrc::Field(sf(Field::EthSrc, 0, 48)),
                    dst: LearnDst::Match(sf(Field::EthDst, 0, 48)),
                    n_bits: 48,
                },
                LearnSpec {
                    src: LearnSrc::Field(sf(Field::InPort, 0, 16)),
                    dst: LearnDst::Load(sf(Field::Reg(0), 0, 16)),
                    n_bits: 16,
                },
            ];
            if output {
                specs.push(LearnSpec {
                    src: LearnSrc::Field(sf(Field::InPort, 0, 16)),
                    dst: LearnDst::Output,
                    n_bits: 16,
                });
            }
            OfAction::Learn(Box::new(Learn {
                table,
                priority,
                specs,
                ..Learn::default()
            }))
        })
}

fn action() -> impl Strategy<Value = OfAction> {
    prop_oneof![
        (1u32..6).prop_map(|p| OfAction::Output {
            port: p,
            max_len: 0
        }),
        Just(OfAction::Output {
            port: messages::ofp::port::IN_PORT,
            max_len: 0
        }),
        mac_pool().prop_map(|v| OfAction::SetField {
            field: Field::EthSrc,
            value: v,
            mask: u128::MAX
        }),
        ip_pool().prop_map(|v| OfAction::SetField {
            field: Field::Ipv4Dst,
            value: v as u128,
            mask: u128::MAX
        }),
        port_pool().prop_map(|v| OfAction::SetField {
            field: Field::TcpDst,
            value: v as u128,
            mask: u128::MAX
        }),
        (1u16..5).prop_map(|v| OfAction::SetField {
            field: Field::VlanVid,
            value: (0x1000 | v) as u128,
            mask: u128::MAX
        }),
        Just(OfAction::PushVlan { tpid: 0x8100 }),
        Just(OfAction::PopVlan),
        Just(OfAction::DecTtl),
        (0u8..3).prop_map(|t| OfAction::Resubmit {
            in_port: None,
            table: Some(t)
        }),
        (
            any::<bool>(),
            0u16..3,
            prop::option::of(0u8..3),
            0u32..3,
            0u8..3
        )
            .prop_map(|(commit, zone, table, mark, nat)| {
                let mut actions = Vec::new();
                match nat {
                    1 => actions.push(OfAction::Nat(NatAction::default())),
                    2 if commit => actions.push(OfAction::Nat(NatAction {
                        kind: Some(NatKind::Src),
                        ..NatAction::default()
                    })),
                    _ => {}
                }
                if commit && mark != 0 {
                    actions.push(OfAction::SetField {
                        field: Field::CtMark,
                        value: mark as u128,
                        mask: u128::MAX,
                    });
                }
                OfAction::Ct(Box::new(CtSpec {
                    commit,
                    force: false,
                    zone: if zone == 2 {
                        CtZone::Field {
                            field: Field::Reg(0),
                            ofs: 0,
                            n_bits: 16,
                        }
                    } else {
                        CtZone::Imm(zone)
                    },
                    table,
                    alg: 0,
                    actions,
                }))
            }),
        Just(OfAction::CtClear),
        (0u32..3).prop_map(|v| OfAction::SetField {
            field: Field::Reg(0),
            value: v as u128,
            mask: u128::MAX
        }),
        learn_action(),
        (0u8..3).prop_map(|t| OfAction::OutputReg {
            field: Field::Reg(0),
            ofs: 0,
            n_bits: 16 + t
        }),
        stack_action(),
        Just(OfAction::Exit),
        (0u32..3).prop_map(OfAction::SetQueue),
        Just(OfAction::PopQueue),
        (0u64..3).prop_map(|t| OfAction::SetTunnel {
            tun_id: t,
            wide: t == 2
        }),
        (1u32..4).prop_map(|p| OfAction::Enqueue { port: p, queue: 1 }),
        (1u32..4).prop_map(|p| OfAction::OutputTrunc {
            port: p,
            max_len: 64
        }),
        (0u16..3).prop_map(|n| OfAction::CheckPktLarger {
            pkt_len: 100 * n,
            dst: Subfield {
                field: Field::Reg(0),
                ofs: 1,
                n_bits: 1
            },
        }),
        prop::collection::vec(clone_inner(), 0..3).prop_map(OfAction::Clone),
        // GROUPS has 1 to 6; 7 does not exist.
        (1u32..8).prop_map(OfAction::Group),
        multipath_action(),
        bundle_action(),
        Just(OfAction::DebugRecirc),
        // A pause ends the pass in a continuation's cookie, whose frozen
        // state (and so id) packets of one megaflow must share.
        Just(OfAction::Controller(ControllerAction {
            pause: true,
            ..ControllerAction::output(u16::MAX)
        })),
        // Three times: most MPLS actions do something only after a push
        // or on an MPLS packet.
        mpls_action(),
        mpls_action(),
        mpls_action(),
    ]
}

/// `multipath` with every hash-field set and algorithm, into reg0 (which
/// output:reg0 and the tables' matches read).
fn multipath_action() -> impl Strategy<Value = OfAction> {
    use messages::multipath::{HashFields, Multipath, MultipathAlgorithm};
    (
        0usize..7,
        0usize..4,
        0u16..3,
        prop_oneof![Just(0u16), Just(2), Just(70)],
    )
        .prop_map(|(f, a, basis, max_link)| {
            OfAction::Multipath(Multipath {
                fields: HashFields::ALL[f],
                basis,
                algorithm: MultipathAlgorithm::ALL[a],
                max_link,
                arg: 4,
                dst: Subfield {
                    field: Field::Reg(0),
                    ofs: 0,
                    n_bits: 16,
                },
            })
        })
}

/// `bundle` over ports 1 to 7, by hrw or active_backup; `bundle_load`
/// into reg0.
fn bundle_action() -> impl Strategy<Value = OfAction> {
    use messages::multipath::{Bundle, BundleAlgorithm, HashFields};
    (
        0usize..7,
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(1u32..8, 1..4),
    )
        .prop_map(|(f, hrw, load, members)| {
            OfAction::Bundle(Box::new(Bundle {
                fields: HashFields::ALL[f],
                basis: 0,
                algorithm: if hrw {
                    BundleAlgorithm::Hrw
                } else {
                    BundleAlgorithm::ActiveBackup
                },
                dst: load.then_some(Subfield {
                    field: Field::Reg(0),
                    ofs: 0,
                    n_bits: 16,
                }),
                members,
            }))
        })
}

/// Pushes onto IP and MPLS, pops to IP (recirculating before what needs
/// L3) and to MPLS, sets and TTL decrements of the top entry.
fn mpls_action() -> impl Strategy<Value = OfAction> {
    prop_oneof![
        Just(OfAction::PushMpls {
            ethertype: ETH_TYPE_MPLS
        }),
        Just(OfAction::PopMpls {
            ethertype: ETH_TYPE_IP
        }),
        Just(OfAction::PopMpls {
            ethertype: ETH_TYPE_MPLS
        }),
        (16u32..19).prop_map(OfAction::SetMplsLabel),
        Just(OfAction::SetMplsTtl(9)),
        Just(OfAction::DecMplsTtl),
        (0u8..8).prop_map(|tc| OfAction::SetField {
            field: Field::MplsTc,
            value: tc as u128,
            mask: u128::MAX
        }),
    ]
}

/// Every rule set has these groups: each type, buckets that rewrite,
/// resubmit and chain, select by dp_hash (recirculating), by fields and by
/// the slow-path default (weights that need over 256 hash values).
const GROUPS: &str = "\
group_id=1,type=all,bucket=mod_dl_src:00:00:00:00:00:aa,output:2,bucket=output:3
group_id=2,type=select,bucket=output:1,bucket=set_field:10.0.0.9->ip_dst,output:2,bucket=weight:0,output:4
group_id=3,type=ff,bucket=watch_port:CONTROLLER,output:2,bucket=watch_group:1,resubmit(,1)
group_id=4,type=select,selection_method=hash,fields(ip_src,tcp_dst),bucket=output:1,bucket=output:2
group_id=5,type=indirect,bucket=push_vlan:0x8100,set_field:4196->vlan_vid,group:1
group_id=6,type=select,bucket=weight:1,output:1,bucket=weight:1000,output:3
";

/// `push`/`pop` of fields every packet has, and of a register.
fn stack_action() -> impl Strategy<Value = OfAction> {
    let sf = prop_oneof![
        Just(Subfield {
            field: Field::EthSrc,
            ofs: 0,
            n_bits: 48
        }),
        Just(Subfield {
            field: Field::Reg(0),
            ofs: 0,
            n_bits: 32
        }),
        Just(Subfield {
            field: Field::EthDst,
            ofs: 8,
            n_bits: 16
        }),
    ];
    (any::<bool>(), sf).prop_map(|(push, sf)| {
        if push {
            OfAction::StackPush(sf)
        } else {
            OfAction::StackPop(sf)
        }
    })
}

/// What a `clone` holds: rewrites, outputs, stack, ct_clear.
fn clone_inner() -> impl Strategy<Value = OfAction> {
    prop_oneof![
        (1u32..6).prop_map(|p| OfAction::Output {
            port: p,
            max_len: 0
        }),
        mac_pool().prop_map(|v| OfAction::SetField {
            field: Field::EthSrc,
            value: v,
            mask: u128::MAX
        }),
        Just(OfAction::PushVlan { tpid: 0x8100 }),
        Just(OfAction::PopVlan),
        Just(OfAction::CtClear),
        stack_action(),
        (1u32..4).prop_map(|p| OfAction::OutputTrunc {
            port: p,
            max_len: 64
        }),
        (0u8..3).prop_map(|t| OfAction::Resubmit {
            in_port: None,
            table: Some(t)
        }),
    ]
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        0u8..3,
        1u16..20,
        prop_oneof![Just(0u8), Just(1), Just(2), Just(6), Just(17)],
        prop::collection::vec(cond(), 0..4),
        prop::collection::vec(action(), 0..4),
        any::<bool>(),
        prop::option::weighted(0.3, conjunction()),
        prop::option::weighted(0.2, conjunction()),
        prop::option::weighted(0.2, 1u32..3),
    )
        .prop_map(
            |(table, priority, proto, mut conds, actions, goto, conj, conj2, conj_id)| {
                // Clauses and conj_id rules meet in table 0 at two
                // priorities, with at most one other condition, so that
                // conjunctions complete often.
                let conjunctive = conj.is_some() || conj_id.is_some();
                if conjunctive {
                    conds.truncate(1);
                }
                if let (Some(id), None) = (conj_id, conj) {
                    conds.push(Cond::ConjId(id));
                }
                let (table, priority) = if conjunctive {
                    (0, if priority % 5 == 0 { 210 } else { 200 })
                } else {
                    (table, priority * 10)
                };
                RuleSpec {
                    table,
                    // Distinct priorities per shape are not guaranteed; ties are
                    // fine for soundness.
                    priority,
                    proto,
                    conds,
                    actions,
                    goto,
                    conj,
                    conj2,
                }
            },
        )
}

/// Builds a rule, keeping only conditions whose prerequisites hold.
fn build_rule(s: &RuleSpec) -> Rule {
    let mut m = Match::catchall();
    // proto 2: an MPLS rule.
    let ip = s.proto != 0 && s.proto != 2;
    if s.proto == 2 {
        m.set_field(Field::EthType, ETH_TYPE_MPLS as u128);
    }
    if ip {
        m.set_field(Field::EthType, ETH_TYPE_IP as u128);
        if s.proto != 1 {
            m.set_field(Field::IpProto, s.proto as u128);
        }
    }
    let l4 = s.proto == 6 || s.proto == 17;
    for c in &s.conds {
        match *c {
            Cond::InPort(p) => m.set_field(Field::InPort, p as u128),
            Cond::EthSrc(v, mk) => m.set_field_masked(Field::EthSrc, v, mk),
            Cond::EthDst(v, mk) => m.set_field_masked(Field::EthDst, v, mk),
            Cond::Vlan(v) => m.set_field_masked(Field::VlanTci, (0x1000 | v) as u128, 0x1fff),
            Cond::Untagged => m.set_field_masked(Field::VlanTci, 0, 0x1000),
            Cond::NwSrc(v, mk) if ip => m.set_field_masked(Field::Ipv4Src, v as u128, mk as u128),
            Cond::NwDst(v, mk) if ip => m.set_field_masked(Field::Ipv4Dst, v as u128, mk as u128),
            Cond::TpDst(v, mk) if l4 => m.set_field_masked(Field::TcpDst, v as u128, mk as u128),
            Cond::TpSrc(v, mk) if l4 => m.set_field_masked(Field::TcpSrc, v as u128, mk as u128),
            Cond::Frag(v, mk) if ip => m.set_field_masked(Field::IpFrag, v as u128, mk as u128),
            Cond::TcpFlags(v, mk) if s.proto == 6 => {
                m.set_field_masked(Field::TcpFlags, v as u128, mk as u128)
            }
            Cond::CtState(v, mk) => m.set_field_masked(Field::CtState, v as u128, mk as u128),
            Cond::CtZone(v) => m.set_field(Field::CtZone, v as u128),
            Cond::CtMark(v, mk) => m.set_field_masked(Field::CtMark, v as u128, mk as u128),
            Cond::ConjId(id) if s.conj.is_none() => m.set_field(Field::ConjId, id as u128),
            _ => {}
        }
    }
    let tcp = s.proto == 6 && m.mask.nw_frag & FLOW_NW_FRAG_LATER == 0;
    if let Some((id, clause, n_clauses)) = s.conj {
        let conj = |(id, clause, n_clauses)| OfAction::Conjunction {
            id,
            clause,
            n_clauses,
        };
        let mut apply = vec![conj((id, clause, n_clauses))];
        apply.extend(s.conj2.map(conj));
        return Rule {
            table: s.table,
            priority: s.priority,
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            matches: m,
            instructions: Instructions {
                apply,
                ..Default::default()
            },
        };
    }
    let actions = s
        .actions
        .iter()
        .filter(|a| match a {
            OfAction::SetField { field, .. } => match field {
                Field::Ipv4Dst => ip,
                Field::TcpDst => tcp,
                _ => true,
            },
            // ct needs an IP match (OVS's check_CT).
            OfAction::Ct(_) => ip,
            _ => true,
        })
        .cloned()
        .collect();
    Rule {
        table: s.table,
        priority: s.priority,
        cookie: 0,
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        matches: m,
        instructions: Instructions {
            apply: actions,
            goto_table: (s.goto && s.table < 2).then_some(s.table + 1),
            ..Default::default()
        },
    }
}

fn flow_strategy() -> impl Strategy<Value = Flow> {
    (
        1u32..5,
        mac_pool(),
        mac_pool(),
        prop::option::of(1u16..4),
        prop_oneof![Just(0u8), Just(1), Just(2), Just(6), Just(17)],
        ip_pool(),
        ip_pool(),
        port_pool(),
        port_pool(),
        prop_oneof![Just(0u8), Just(1), Just(3)],
        0u16..0x40,
        (1u8..=255, (ct_state_pool(), 0u16..3, 0u32..3)),
    )
        .prop_map(
            |(in_port, src, dst, vlan, proto, nsrc, ndst, tsrc, tdst, frag, flags, (ttl, ct))| {
                let mut f = Flow {
                    in_port,
                    ct_state: ct.0,
                    ct_zone: ct.1,
                    ct_mark: ct.2,
                    ..Flow::default()
                };
                Field::EthSrc.set(&mut f, src);
                Field::EthDst.set(&mut f, dst);
                if let Some(v) = vlan {
                    f.vlans[0] = FlowVlan {
                        tpid: ETH_TYPE_VLAN_8021Q,
                        tci: 0x1000 | v,
                    };
                }
                if proto == 0 {
                    f.dl_type = 0x88cc;
                    return f;
                }
                // MPLS: one or two labels, the TTL 1 (expiring) or not.
                if proto == 2 {
                    f.dl_type = ETH_TYPE_MPLS;
                    let two = ndst & 1 != 0;
                    f.mpls_lse[0] = mpls_lse(16 + u32::from(tsrc % 3), 0, !two, ttl % 3);
                    if two {
                        f.mpls_lse[1] = mpls_lse(17, 1, true, 64);
                    }
                    return f;
                }
                f.dl_type = ETH_TYPE_IP;
                f.nw_proto = proto;
                f.nw_src = nsrc;
                f.nw_dst = ndst;
                f.nw_ttl = ttl;
                f.nw_frag = frag;
                if frag & FLOW_NW_FRAG_LATER == 0 {
                    f.tp_src = tsrc;
                    f.tp_dst = tdst;
                    if proto == IPPROTO_TCP {
                        f.tcp_flags = flags;
                    }
                }
                f
            },
        )
}

/// A flow that agrees with `f` under `wc` and takes `noise` elsewhere, kept
/// well-formed (a later fragment has no L4 fields).
fn inside(f: &Flow, wc: &Flow, noise: &Flow) -> Flow {
    let mut g = *f;
    for ((o, m), n) in g.words_mut().iter_mut().zip(wc.words()).zip(noise.words()) {
        *o = (*o & m) | (*n & !m);
    }
    // The datapath sees no L3 under a label, no entry below the bottom of
    // the stack, and no label stack without an MPLS EtherType.
    if eth_type_mpls(g.dl_type) {
        g.clear_l3_l4();
        let depth = g.mpls_depth();
        g.mpls_lse[depth..].fill(0);
    } else {
        g.mpls_lse = [0; FLOW_MPLS_LSE_SLOTS];
    }
    g
}

/// Translations that went through a `conj_id` rule, rules learned and
/// recirculations resumed: the property must have met each.
static CONJUNCTIONS: AtomicUsize = AtomicUsize::new(0);
static LEARNED: AtomicUsize = AtomicUsize::new(0);
static RESUMED: AtomicUsize = AtomicUsize::new(0);
static HASHED: AtomicUsize = AtomicUsize::new(0);
/// Translations that pushed, popped or set an MPLS label.
static MPLS: AtomicUsize = AtomicUsize::new(0);

/// Checks one rule set and flow, after the `teachers` have run their
/// `learn` actions, then the recirculations its translation forked
/// (resumed with the states of `resumes`); `Err` names the counterexample.
fn check(
    specs: &[RuleSpec],
    teachers: &[Flow],
    flow: &Flow,
    noises: &[Flow],
    resumes: &[u8],
) -> Result<(), TestCaseError> {
    let mut tables = Tables::from_rules(specs.iter().map(build_rule));
    for g in parse_groups(GROUPS).unwrap() {
        tables.add_group(g).unwrap();
    }
    let learning = XlateConfig {
        side_effects: true,
        ..XlateConfig::default()
    };
    for t in teachers {
        for learned in xlate(&tables, t, &learning).learned {
            tables.learn(learned);
            LEARNED.fetch_add(1, Ordering::Relaxed);
        }
    }
    // One switch: the recirculation ids outlive a translation.
    let cfg = XlateConfig::default();
    let mut pending = vec![*flow];
    let mut resumes = resumes.iter().copied();
    while let Some(f) = pending.pop() {
        let out = check_one(&tables, &cfg, &f, noises)?;
        // A select group's recirculation comes back with a dp_hash.
        for pair in out.actions.windows(2) {
            if let [OdpAction::Hash { .. }, OdpAction::Recirc(id)] = pair {
                let mut g = f;
                g.recirc_id = *id;
                g.dp_hash = noises[0].nw_src.rotate_left(7) | 1;
                pending.push(g);
                HASHED.fetch_add(1, Ordering::Relaxed);
            }
        }
        for r in out.recircs {
            if let Some(state) = resumes.next() {
                let mut g = r.flow;
                g.ct_state = state;
                pending.push(g);
                RESUMED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}

fn check_one(
    tables: &Tables,
    cfg: &XlateConfig,
    flow: &Flow,
    noises: &[Flow],
) -> Result<actors::xlate::XlateOutput, TestCaseError> {
    let out = xlate(tables, flow, cfg);
    if out.actions.iter().any(|a| {
        matches!(
            a,
            OdpAction::PushMpls { .. } | OdpAction::PopMpls(_) | OdpAction::SetMpls(_)
        )
    }) {
        MPLS.fetch_add(1, Ordering::Relaxed);
    }
    let via_conjunction = out.rules.iter().any(|id| {
        tables
            .get(*id)
            .is_some_and(|e| e.rule.matches.mask.conj_id != 0)
    });
    if via_conjunction {
        CONJUNCTIONS.fetch_add(1, Ordering::Relaxed);
    }
    for noise in noises {
        let g = inside(flow, &datapath_mask(flow, &out.wc), noise);
        // A megaflow matches dl_type and nw_frag exactly, so `g` is
        // well-formed whenever `noise` is, except for the L4 fields of a
        // later fragment, which a real packet never has.
        if g.nw_frag & FLOW_NW_FRAG_LATER != 0 && (g.tp_src != 0 || g.tp_dst != 0) {
            continue;
        }
        // Nor has an absent VLAN header any bits (the datapath mask pins
        // which headers are present, not the bits of absent ones).
        if g.vlans
            .iter()
            .any(|v| v.tci & VLAN_CFI == 0 && *v != FlowVlan::default())
        {
            continue;
        }
        let other = xlate(tables, &g, cfg);
        prop_assert_eq!(
            &other.actions,
            &out.actions,
            "flow {:?}\nmegaflow mask {:?}\nother {:?}",
            flow,
            out.wc,
            g
        );
    }
    Ok(out)
}

#[test]
fn flows_inside_a_megaflow_get_its_actions() {
    // Resubmit chains recurse up to 64 deep; unoptimized builds need room.
    let worker = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            let mut runner = TestRunner::new(ProptestConfig {
                cases: 4000,
                ..ProptestConfig::default()
            });
            let strategy = (
                prop::collection::vec(rule_spec(), 1..25),
                prop::collection::vec(flow_strategy(), 0..6),
                flow_strategy(),
                prop::collection::vec(flow_strategy(), 8),
                prop::collection::vec(ct_state_pool(), 6),
            );
            runner
                .run(&strategy, |(specs, teachers, flow, noises, resumes)| {
                    check(&specs, &teachers, &flow, &noises, &resumes)
                })
                .map_err(|e| e.to_string())
        })
        .unwrap();
    if let Err(e) = worker.join().unwrap() {
        panic!("{e}");
    }
    let (conj, learned, resumed, hashed, mpls) = (
        CONJUNCTIONS.load(Ordering::Relaxed),
        LEARNED.load(Ordering::Relaxed),
        RESUMED.load(Ordering::Relaxed),
        HASHED.load(Ordering::Relaxed),
        MPLS.load(Ordering::Relaxed),
    );
    eprintln!(
        "{conj} translations through a conjunction, {learned} rules learned, \
         {resumed} recirculations resumed, {hashed} select groups resumed with a dp_hash, \
         {mpls} with MPLS pushes, pops or sets"
    );
    assert!(
        conj > 0 && learned > 0 && resumed > 0 && hashed > 0 && mpls > 0,
        "{conj} conjunctions, {learned} learned, {resumed} resumed, {hashed} hashed, {mpls} MPLS"
    );
}
