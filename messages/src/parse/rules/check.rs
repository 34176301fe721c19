//! Actions checked against the rule they belong to and encoded (OVS's
//! `ofpacts_check`).

use super::*;
use crate::parse::learn::learn_missing_source;

/// The parts of a rule's match that actions see and change while OVS
/// checks them (`ofpacts_check`): the match's flow, with VLAN pushes and
/// pops applied as they go.
#[derive(Clone)]
pub(super) struct CheckState {
    pub(super) flow: Flow,
    pub(super) table: u8,
    /// Inside `write_actions`, where OVS lets `pop_vlan` and `dec_ttl`
    /// stand without a VLAN or IP match.
    pub(super) in_action_set: bool,
    /// Inside `ct(exec(...))`, the only place `ct_mark` and `ct_label`
    /// may be written.
    pub(super) in_conntrack: bool,
    /// In a group's bucket, which has no match to check prerequisites
    /// against (OVS checks none there).
    pub(super) in_group: bool,
}

impl CheckState {
    /// Refuses an action whose prerequisites the match does not meet;
    /// `lenient` actions pass in the action set.
    fn require(&self, ok: bool, lenient: bool, a: &Located, needs: &str) -> Res<()> {
        if ok || lenient && self.in_action_set || self.in_group {
            Ok(())
        } else {
            Err(inconsistent(a, needs))
        }
    }
}

pub(super) fn inconsistent(a: &Located, needs: &str) -> LineError {
    let name = a.text.split([':', '(', '=']).next().unwrap_or(&a.text);
    err(
        a.at,
        format!("{name}: prerequisites not met"),
        &a.text,
        format!("{needs} in the rule's match"),
    )
}

/// An action OpenFlow's action set has no slot for (see
/// `OfAction::allowed_in_action_set`); OVS's switch refuses the flow mod
/// with `OFPBAC_BAD_TYPE`.
fn not_in_action_set(a: &Located) -> LineError {
    let name = a.text.split([':', '(', '=', ',']).next().unwrap_or(&a.text);
    err(
        a.at,
        format!("disallowed action in action set: write_actions does not take {name} (OFPBAC_BAD_TYPE)"),
        &a.text,
        "outputs (output, CONTROLLER:N, in_port, ...), group, resubmit, ct, ct_clear, set_field, load, move, \
         mod_*, push_vlan/pop_vlan, push_mpls/pop_mpls, set_mpls_*, dec_ttl, dec_mpls_ttl, set_queue, set_tunnel",
    )
}

pub(super) fn check_and_encode(acts: Vec<Located>, rule: &Rule) -> Res<Instructions> {
    let mut state = CheckState {
        flow: rule.matches.flow,
        table: rule.table,
        in_action_set: false,
        in_conntrack: false,
        in_group: false,
    };
    let mut ins = Instructions::default();
    for a in &acts {
        match &a.act {
            Act::ClearActions => ins.clear_actions = true,
            Act::WriteActions(inner) => {
                let mut nested = CheckState {
                    in_action_set: true,
                    ..state.clone()
                };
                let mut out = Vec::new();
                for b in inner {
                    let start = out.len();
                    encode_action(b, &mut nested, &mut out)?;
                    if !out[start..].iter().all(OfAction::allowed_in_action_set) {
                        return Err(not_in_action_set(b));
                    }
                }
                ins.write_actions = Some(out);
            }
            Act::WriteMetadata(v, m) => ins.write_metadata = Some((*v, *m)),
            Act::Meter(m) => ins.meter = Some(*m),
            Act::GotoTable(t) => {
                if *t <= state.table || usize::from(*t) >= N_TABLES {
                    return Err(err(
                        a.at,
                        "goto_table must go to a later table",
                        &a.text,
                        format!("a table after {} and before {}", state.table, N_TABLES),
                    ));
                }
                ins.goto_table = Some(*t);
            }
            _ => encode_action(a, &mut state, &mut ins.apply)?,
        }
    }
    Ok(ins)
}

pub(super) fn encode_action(a: &Located, st: &mut CheckState, out: &mut Vec<OfAction>) -> Res<()> {
    let has_vlan = st.flow.vlans[0].tci & VLAN_CFI != 0;
    let is_ip = st.flow.dl_type == ETH_TYPE_IP;
    let is_ip_any = st.flow.is_ip_any();
    match &a.act {
        Act::SetIpv4(..) => st.require(is_ip, false, a, "ip (IPv4)")?,
        Act::SetNwTos(_) | Act::SetNwEcn(_) | Act::SetNwTtl(_) => {
            st.require(is_ip_any, false, a, "ip or ipv6")?
        }
        Act::DecTtl | Act::DecTtlIds(_) => st.require(is_ip_any, true, a, "ip or ipv6")?,
        Act::StripVlan => st.require(
            has_vlan,
            true,
            a,
            "a VLAN tag (dl_vlan=, dl_vlan_pcp= or vlan_tci=0x1000/0x1000)",
        )?,
        Act::SetVlanVid { push_if_needed, .. } | Act::SetVlanPcp { push_if_needed, .. } => {
            st.require(has_vlan || *push_if_needed, false, a, "a VLAN tag")?
        }
        Act::SetField { info, .. } | Act::Load { info, .. }
            if matches!(info.field, Field::CtMark | Field::CtLabel) && !st.in_conntrack =>
        {
            return Err(ct_outside(a))
        }
        Act::Move { dst, .. }
            if matches!(dst.info.field, Field::CtMark | Field::CtLabel) && !st.in_conntrack =>
        {
            return Err(ct_outside(a))
        }
        Act::Ct(ct) => {
            let encoded = ct::encode_ct(a, ct, st)?;
            out.push(encoded);
            return Ok(());
        }
        Act::Nat(_) => {
            return Err(err(
                a.at,
                "Cannot have NAT action outside of \"ct\" action",
                &a.text,
                "nat inside ct(...)",
            ))
        }
        _ => {}
    }
    let f = &mut st.flow;
    let set = |field: Field, value: u128| OfAction::SetField {
        field,
        value,
        mask: field.full_mask(),
    };
    match &a.act {
        Act::Output(p) => {
            let ok = *p < port::MAX
                || matches!(
                    *p,
                    port::IN_PORT
                        | port::TABLE
                        | port::NORMAL
                        | port::FLOOD
                        | port::ALL
                        | port::CONTROLLER
                        | port::LOCAL
                );
            if !ok {
                return Err(err(
                    a.at,
                    "bad output port",
                    &a.text,
                    "a port below 65280 or a reserved port",
                ));
            }
            out.push(OfAction::Output {
                port: *p,
                max_len: 0,
            });
        }
        Act::Controller(c) => out.push(OfAction::Controller(c.clone())),
        Act::SetField { info, value, mask } | Act::Load { info, value, mask } => {
            let needs_tag = info.field == Field::VlanVid && !has_vlan;
            if (!prereqs_hold(info.prereq, f) || needs_tag) && !st.in_group {
                return Err(inconsistent(a, prereq_needs(info.prereq, info.field)));
            }
            if info.field == Field::VlanTci {
                f.vlans[0].tci = *value as u16;
            }
            let (field, value, mask) = (info.field, *value, *mask);
            out.push(if matches!(a.act, Act::Load { .. }) {
                OfAction::Load { field, value, mask }
            } else {
                OfAction::SetField { field, value, mask }
            });
        }
        Act::OutputReg(src) => {
            if !prereqs_hold(src.info.prereq, f) && !st.in_group {
                return Err(inconsistent(
                    a,
                    prereq_needs(src.info.prereq, src.info.field),
                ));
            }
            out.push(OfAction::OutputReg {
                field: src.info.field,
                ofs: src.ofs as u8,
                n_bits: src.n_bits as u8,
            });
        }
        Act::Move { src, dst } => {
            for sf in [src, dst] {
                if !prereqs_hold(sf.info.prereq, f) && !st.in_group {
                    return Err(inconsistent(a, prereq_needs(sf.info.prereq, sf.info.field)));
                }
            }
            out.push(OfAction::Move {
                src: src.info.field,
                src_ofs: src.ofs as u8,
                dst: dst.info.field,
                dst_ofs: dst.ofs as u8,
                n_bits: src.n_bits as u8,
            });
        }
        Act::SetEth(field, mac) => out.push(set(*field, crate::parse::syntax::mac_u128(*mac))),
        Act::SetIpv4(field, ip) => out.push(set(*field, u128::from(*ip))),
        Act::SetNwTos(tos) => out.push(set(Field::IpDscp, u128::from(tos >> 2))),
        Act::SetNwEcn(ecn) => out.push(set(Field::IpEcn, u128::from(*ecn))),
        Act::SetNwTtl(ttl) => out.push(set(Field::IpTtl, u128::from(*ttl))),
        Act::SetTpSrc(p) | Act::SetTpDst(p) => {
            let is_src = matches!(a.act, Act::SetTpSrc(_));
            let field = match f.nw_proto {
                IPPROTO_TCP if f.is_ip_any() => [Field::TcpSrc, Field::TcpDst],
                IPPROTO_UDP if f.is_ip_any() => [Field::UdpSrc, Field::UdpDst],
                IPPROTO_SCTP if f.is_ip_any() => [Field::SctpSrc, Field::SctpDst],
                _ => return Err(inconsistent(a, "tcp, udp or sctp (or their IPv6 forms)")),
            }[usize::from(!is_src)];
            if f.nw_frag & FLOW_NW_FRAG_LATER != 0 {
                return Err(inconsistent(a, "a match that excludes later fragments"));
            }
            out.push(set(field, u128::from(*p)));
        }
        Act::SetVlanVid {
            vid,
            push_if_needed,
        } => {
            if !has_vlan && *push_if_needed {
                out.push(OfAction::PushVlan {
                    tpid: ETH_TYPE_VLAN_8021Q,
                });
            }
            out.push(set(Field::VlanVid, u128::from(VLAN_CFI | vid)));
            f.vlans[0].tci |= VLAN_CFI;
        }
        Act::SetVlanPcp {
            pcp,
            push_if_needed,
        } => {
            if !has_vlan && *push_if_needed {
                out.push(OfAction::PushVlan {
                    tpid: ETH_TYPE_VLAN_8021Q,
                });
            }
            out.push(set(Field::VlanPcp, u128::from(*pcp)));
            f.vlans[0].tci |= VLAN_CFI;
        }
        Act::StripVlan => {
            f.vlans[0] = f.vlans[1];
            f.vlans[1] = FlowVlan::default();
            out.push(OfAction::PopVlan);
        }
        Act::PushVlan(tpid) => {
            if f.vlans[FLOW_MAX_VLAN_HEADERS - 1].tci & VLAN_CFI != 0 {
                return Err(err(
                    a.at,
                    "too many VLAN tags",
                    &a.text,
                    "at most two VLAN headers",
                ));
            }
            f.vlans[1] = f.vlans[0];
            f.vlans[0] = FlowVlan {
                tpid: 0,
                tci: VLAN_CFI,
            };
            out.push(OfAction::PushVlan { tpid: *tpid });
        }
        Act::DecTtl => out.push(OfAction::DecTtl),
        Act::DecTtlIds(ids) => out.push(OfAction::DecTtlIds(ids.clone())),
        // OVS's `check_PUSH_MPLS` and `check_POP_MPLS`: later actions see
        // the new EtherType, and a pushed label's payload is opaque.
        Act::Plain(OfAction::PushMpls { ethertype }) => {
            f.dl_type = *ethertype;
            f.nw_proto = 0;
            out.push(OfAction::PushMpls {
                ethertype: *ethertype,
            });
        }
        Act::Plain(OfAction::PopMpls { ethertype }) => {
            if !eth_type_mpls(f.dl_type) && !st.in_group {
                return Err(inconsistent(a, "mpls or mplsm (or a push_mpls before)"));
            }
            f.dl_type = *ethertype;
            out.push(OfAction::PopMpls {
                ethertype: *ethertype,
            });
        }
        Act::Plain(
            action @ (OfAction::SetMplsLabel(_)
            | OfAction::SetMplsTc(_)
            | OfAction::SetMplsTtl(_)
            | OfAction::DecMplsTtl),
        ) => {
            if !eth_type_mpls(f.dl_type) && !st.in_group {
                return Err(inconsistent(a, "mpls or mplsm (or a push_mpls before)"));
            }
            out.push(action.clone());
        }
        Act::Plain(action) => {
            let tcp = f.is_ip_any() && f.nw_proto == IPPROTO_TCP;
            if matches!(action, OfAction::FinTimeout { .. }) && !tcp {
                return Err(inconsistent(a, "tcp or tcp6"));
            }
            out.push(action.clone())
        }
        Act::Learn(learn) => {
            if let Some(field) = learn_missing_source(learn, f) {
                return Err(inconsistent(a, prereq_needs(field.prereq(), field)));
            }
            out.push(OfAction::Learn(learn.clone()));
        }
        Act::Resubmit { in_port, table } => out.push(OfAction::Resubmit {
            in_port: *in_port,
            table: *table,
        }),
        Act::CtClear => out.push(OfAction::CtClear),
        Act::Clone(inner) => {
            // OVS checks the nested actions on a copy of the state: what
            // they push or pop stays inside.
            let mut nested = st.clone();
            let mut actions = Vec::new();
            for b in inner {
                encode_action(b, &mut nested, &mut actions)?;
            }
            out.push(OfAction::Clone(actions));
        }
        Act::Stack(push, sf) => {
            if !prereqs_hold(sf.info.prereq, f) && !st.in_group {
                return Err(inconsistent(a, prereq_needs(sf.info.prereq, sf.info.field)));
            }
            if !*push {
                writable_dst(a, sf)?;
            }
            out.push(if *push {
                OfAction::StackPush(sf.bits())
            } else {
                OfAction::StackPop(sf.bits())
            });
        }
        Act::CheckPktLarger { pkt_len, dst } => {
            writable_dst(a, dst)?;
            out.push(OfAction::CheckPktLarger {
                pkt_len: *pkt_len,
                dst: dst.bits(),
            });
        }
        Act::OutputTrunc { port, max_len } => out.push(OfAction::OutputTrunc {
            port: *port,
            max_len: *max_len,
        }),
        Act::Enqueue { port, queue } => out.push(OfAction::Enqueue {
            port: *port,
            queue: *queue,
        }),
        // Encoded above.
        Act::Ct(_) | Act::Nat(_) => {}
        Act::ClearActions
        | Act::WriteActions(_)
        | Act::WriteMetadata(..)
        | Act::GotoTable(_)
        | Act::Meter(_) => {
            return Err(err(
                a.at,
                "instruction not allowed here",
                &a.text,
                "actions only, inside write_actions(...)",
            ))
        }
    }
    Ok(())
}

/// OVS's `mf_check_dst`: the subfield must be writable.
fn writable_dst(a: &Located, sf: &Subfield) -> Res<()> {
    if sf.info.writable {
        Ok(())
    } else {
        Err(err(
            a.at,
            format!("destination field {} is not writable", sf.info.name),
            &a.text,
            "a writable field",
        ))
    }
}

pub(super) fn ct_outside(a: &Located) -> LineError {
    err(
        a.at,
        "cannot set CT fields outside of ct action",
        &a.text,
        "writes to ct_mark and ct_label inside ct(commit,exec(...))",
    )
}

pub(super) fn prereq_needs(p: Prereq, field: Field) -> &'static str {
    match p {
        _ if field == Field::VlanVid => "a VLAN tag (match one, or push_vlan first)",
        Prereq::Vlan => "a VLAN tag (match one, or push_vlan first)",
        Prereq::None => "nothing more",
        Prereq::Mpls => "mpls",
        Prereq::Arp => "arp or rarp",
        Prereq::Ip => "ip (IPv4)",
        Prereq::Ipv6 => "ipv6",
        Prereq::IpAny => "ip or ipv6",
        Prereq::Tcp => "tcp or tcp6",
        Prereq::Udp => "udp or udp6",
        Prereq::Sctp => "sctp or sctp6",
        Prereq::Icmpv4 => "icmp",
        Prereq::Icmpv6 => "icmp6",
        Prereq::Nd => "icmp6 with icmp_type=135 or 136 and icmp_code=0",
        Prereq::NdSolicit => "icmp6 with icmp_type=135 and icmp_code=0",
        Prereq::NdAdvert => "icmp6 with icmp_type=136 and icmp_code=0",
        Prereq::CtValid => "a tracked connection (ct_state +new, +est or +rpl)",
    }
}
