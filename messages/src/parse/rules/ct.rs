//! The conntrack actions: `ct(...)` with its `nat(...)` and `exec(...)`,
//! and `ct_clear` (OVS's `parse_CT`, `parse_NAT`, `check_CT`,
//! `check_NAT` and the nesting rules of `ofpacts_verify_nested`).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::{
    err, inconsistent, parse_action_list, parse_subfield, Act, CheckState, LineError, Located, Res,
};
use crate::field::Field;
use crate::flow::*;
use crate::ofp::{CtSpec, CtZone, NatAction, NatAddrs, NatKind, OfAction};
use crate::parse::syntax::{key_values, parse_uint};

/// `ct(...)` as written: checked against the rule's match later.
#[derive(Clone, Debug)]
pub(super) struct CtArgs {
    commit: bool,
    force: bool,
    table: Option<u8>,
    zone: CtZoneArg,
    alg: u16,
    /// `nat(...)` (as `Act::Nat`) and the `exec(...)` actions, in order.
    actions: Vec<Located>,
}

#[derive(Clone, Debug)]
enum CtZoneArg {
    Imm(u16),
    Field {
        field: Field,
        ofs: u32,
        n_bits: u32,
        at: usize,
        text: String,
    },
}

const CT_ARGS: &str = "commit, force, table=N, zone=N or zone=SUBFIELD, alg=ftp|tftp, \
                       nat[(...)], exec(...)";

/// Parses the argument of `ct(...)`, which starts at `at`.
pub(super) fn parse_ct(arg: &str, at: usize) -> Res<Act> {
    let mut ct = CtArgs {
        commit: false,
        force: false,
        table: None,
        zone: CtZoneArg::Imm(0),
        alg: 0,
        actions: Vec::new(),
    };
    for kv in key_values(arg, at) {
        let (v, v_at) = (kv.value, kv.value_at);
        match kv.key {
            "commit" => ct.commit = true,
            "force" => ct.force = true,
            "table" => {
                let t = super::parse_decimal(v)
                    .filter(|t| *t <= 255)
                    .ok_or_else(|| err(v_at, format!("unknown table {v}"), v, "a table number"))?;
                if t == 255 {
                    return Err(err(
                        v_at,
                        "invalid table 0xff",
                        v,
                        "a table from 0 to 254 (255 means no recirculation)",
                    ));
                }
                ct.table = Some(t as u8);
            }
            "zone" => {
                ct.zone = match parse_uint(v, 16) {
                    Some(z) => CtZoneArg::Imm(z as u16),
                    None => {
                        let sf = parse_subfield(v).map_err(|e| {
                            err(
                                v_at,
                                format!("{v}: neither a zone number nor a subfield"),
                                v,
                                format!("a number from 0 to 65535, or {e}"),
                            )
                        })?;
                        CtZoneArg::Field {
                            field: sf.info.field,
                            ofs: sf.ofs,
                            n_bits: sf.n_bits,
                            at: v_at,
                            text: v.to_string(),
                        }
                    }
                }
            }
            "alg" => {
                ct.alg = match v {
                    "ftp" => 21,
                    "tftp" => 69,
                    _ => {
                        return Err(err(
                            v_at,
                            format!("invalid conntrack helper \"{v}\""),
                            v,
                            "ftp or tftp",
                        ))
                    }
                }
            }
            "nat" => {
                let nat = parse_nat(v, v_at)?;
                ct.actions.push(Located {
                    act: Act::Nat(nat),
                    at: kv.key_at,
                    text: format!("nat({v})"),
                });
            }
            "exec" => ct.actions.extend(parse_action_list(v, v_at, false)?),
            key => {
                return Err(err(
                    kv.key_at,
                    format!("invalid argument to \"ct\" action: `{key}'"),
                    key,
                    CT_ARGS,
                ))
            }
        }
    }
    if ct.force && !ct.commit {
        return Err(err(
            at,
            "\"force\" flag requires \"commit\" flag.",
            arg,
            "ct(commit,force,...)",
        ));
    }
    Ok(Act::Ct(Box::new(ct)))
}

/// Parses the argument of `nat(...)` (OVS's `parse_NAT`).
pub(super) fn parse_nat(arg: &str, at: usize) -> Res<NatAction> {
    let mut nat = NatAction::default();
    let mut src_and_dst = false;
    for kv in key_values(arg, at) {
        match kv.key {
            "src" | "dst" => {
                let kind = if kv.key == "src" {
                    NatKind::Src
                } else {
                    NatKind::Dst
                };
                src_and_dst |= nat.kind.is_some_and(|k| k != kind);
                nat.kind = Some(kind);
                if !kv.value.is_empty() {
                    let (addrs, ports) = parse_nat_range(kv.value)
                        .map_err(|e| err(kv.value_at, e, kv.value, "ADDR[-ADDR][:PORT[-PORT]]"))?;
                    nat.addrs = Some(addrs);
                    nat.ports = ports;
                }
            }
            "persistent" => nat.persistent = true,
            "hash" => nat.hash = true,
            "random" => nat.random = true,
            key => {
                return Err(err(
                    kv.key_at,
                    format!("invalid key \"{key}\" in \"nat\" argument"),
                    key,
                    "src[=RANGE], dst[=RANGE], persistent, hash, random",
                ))
            }
        }
    }
    let whole = |what: &str| err(at, what, arg, "nat, or nat(src|dst[=RANGE][,flags])");
    if src_and_dst {
        return Err(whole("May only specify one of \"src\" or \"dst\"."));
    }
    if nat.kind.is_none() && (nat.persistent || nat.hash || nat.random) {
        return Err(whole("Flags allowed only with \"src\" or \"dst\"."));
    }
    if nat.hash && nat.random {
        return Err(whole("Both \"hash\" and \"random\" are not allowed."));
    }
    Ok(nat)
}

/// `ADDR[-ADDR][:PORT[-PORT]]`, IPv6 addresses optionally in brackets
/// (OVS's `str_to_nat_range`).
fn parse_nat_range(s: &str) -> Result<(NatAddrs, Option<(u16, u16)>), String> {
    let invalid = || format!("invalid nat range \"{s}\"");
    let (addrs, rest) = if let Some((a, rest)) = scan_v4(s) {
        match rest.strip_prefix('-') {
            Some(r) => {
                let (b, rest) = scan_v4(r).ok_or_else(invalid)?;
                if b < a {
                    return Err(invalid());
                }
                (NatAddrs::V4 { min: a, max: b }, rest)
            }
            None => (NatAddrs::V4 { min: a, max: a }, rest),
        }
    } else if let Some((a, rest)) = scan_v6(s) {
        match rest.strip_prefix('-') {
            Some(r) => {
                let (b, rest) = scan_v6(r).ok_or_else(invalid)?;
                if b < a {
                    return Err(invalid());
                }
                (NatAddrs::V6 { min: a, max: b }, rest)
            }
            None => (NatAddrs::V6 { min: a, max: a }, rest),
        }
    } else {
        return Err(invalid());
    };
    let (ports, rest) = match rest.strip_prefix(':') {
        Some(r) => {
            let (lo, r) = scan_u16(r).ok_or_else(invalid)?;
            match r.strip_prefix('-') {
                Some(r2) => {
                    let (hi, r3) = scan_u16(r2).ok_or_else(invalid)?;
                    if hi < lo {
                        return Err(invalid());
                    }
                    (Some((lo, hi)), r3)
                }
                None => (Some((lo, lo)), r),
            }
        }
        None => (None, rest),
    };
    if !rest.is_empty() {
        let pos = s.len() - rest.len();
        return Err(format!(
            "garbage ({rest}) after nat range \"{s}\" (pos: {pos})"
        ));
    }
    Ok((addrs, ports))
}

fn scan_v4(s: &str) -> Option<(u32, &str)> {
    let n = s
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let a: Ipv4Addr = s[..n].parse().ok()?;
    Some((u32::from(a), &s[n..]))
}

fn scan_v6(s: &str) -> Option<([u8; 16], &str)> {
    let (inner, rest) = match s.strip_prefix('[') {
        Some(r) => {
            let close = r.find(']')?;
            (&r[..close], &r[close + 1..])
        }
        None => {
            let n = s
                .bytes()
                .take_while(|b| b.is_ascii_hexdigit() || *b == b':' || *b == b'.')
                .count();
            // Without brackets a port cannot follow (its colon would read
            // as part of the address).
            (&s[..n], &s[n..])
        }
    };
    let a: Ipv6Addr = inner.parse().ok()?;
    Some((a.octets(), rest))
}

fn scan_u16(s: &str) -> Option<(u16, &str)> {
    let n = s.bytes().take_while(u8::is_ascii_digit).count();
    let v = s[..n].parse::<u16>().ok()?;
    Some((v, &s[n..]))
}

/// Checks `ct(...)` against the rule's match and encodes it (OVS's
/// `check_CT`, `check_NAT` and `ofpacts_verify_nested`).
pub(super) fn encode_ct(a: &Located, ct: &CtArgs, st: &mut CheckState) -> Res<OfAction> {
    let f = st.flow;
    let ip_any = f.is_ip_any();
    // A group's bucket has no match to check against; OVS accepts `ct`
    // there (OVN's load balancers commit with nat(dst=) in buckets).
    let bad = !st.in_group
        && (!ip_any
            || f.ct_state & CS_INVALID != 0 && ct.commit
            || ct.alg == 21 && f.nw_proto != IPPROTO_TCP
            || ct.alg == 69 && f.nw_proto != IPPROTO_UDP);
    if bad {
        let needs = if !ip_any {
            "ip or ipv6"
        } else if ct.alg == 21 && f.nw_proto != IPPROTO_TCP {
            "tcp or tcp6 (for alg=ftp)"
        } else if ct.alg == 69 && f.nw_proto != IPPROTO_UDP {
            "udp or udp6 (for alg=tftp)"
        } else {
            "no ct_state=+inv (an invalid packet cannot be committed)"
        };
        return Err(inconsistent(a, needs));
    }
    let zone = match &ct.zone {
        CtZoneArg::Imm(z) => CtZone::Imm(*z),
        CtZoneArg::Field {
            field,
            ofs,
            n_bits,
            at,
            text,
        } => {
            if *n_bits != 16 {
                return Err(err(
                    *at,
                    format!("zone n_bits {n_bits} not within valid range [16..16]"),
                    text,
                    "a 16-bit subfield, e.g. NXM_NX_REG0[0..15]",
                ));
            }
            let info = crate::field::by_field(*field);
            if !crate::field::prereqs_hold(info.prereq, &f) && !st.in_group {
                return Err(inconsistent(a, super::prereq_needs(info.prereq, *field)));
            }
            CtZone::Field {
                field: *field,
                ofs: *ofs as u8,
                n_bits: *n_bits as u8,
            }
        }
    };
    let mut actions = Vec::new();
    for b in &ct.actions {
        if let Act::Nat(nat) = &b.act {
            let family_ok = match nat.addrs {
                Some(NatAddrs::V4 { .. }) => f.dl_type == ETH_TYPE_IP,
                Some(NatAddrs::V6 { .. }) => f.dl_type == ETH_TYPE_IPV6,
                None => true,
            };
            if !family_ok && !st.in_group {
                return Err(inconsistent(
                    b,
                    "the address family of the NAT range (ip or ipv6)",
                ));
            }
            actions.push(OfAction::Nat(nat.clone()));
            continue;
        }
        let dst = match &b.act {
            Act::SetField { info, .. } | Act::Load { info, .. } => Some(info.field),
            Act::Move { dst, .. } => Some(dst.info.field),
            _ => None,
        };
        match dst {
            None => return Err(nested(b)),
            Some(Field::CtMark | Field::CtLabel) => {}
            Some(field) => {
                let name = crate::field::by_field(field).name;
                return Err(err(
                    b.at,
                    format!("ct action doesn't support nested modification of {name}"),
                    &b.text,
                    "set_field, load or move into ct_mark or ct_label",
                ));
            }
        }
        let mut inner = CheckState {
            in_conntrack: true,
            ..st.clone()
        };
        super::encode_action(b, &mut inner, &mut actions)?;
    }
    let bare_nat = actions.iter().all(|x| match x {
        OfAction::Nat(n) => n.kind.is_none(),
        _ => false,
    });
    if !ct.commit && !bare_nat {
        return Err(err(
            a.at,
            "CT action requires commit flag if actions other than NAT without arguments are specified.",
            &a.text,
            "ct(commit,...), or no exec and only a bare nat",
        ));
    }
    Ok(OfAction::Ct(Box::new(CtSpec {
        commit: ct.commit,
        force: ct.force,
        zone,
        table: ct.table,
        alg: ct.alg,
        actions,
    })))
}

/// OVS's `unsupported_nesting`.
fn nested(b: &Located) -> LineError {
    let name = b.text.split([':', '(', '=']).next().unwrap_or(&b.text);
    err(
        b.at,
        format!("ct action doesn't support nested action {name}"),
        &b.text,
        "set_field, load or move into ct_mark or ct_label",
    )
}

#[cfg(test)]
mod tests {
    use crate::format::ofp_rule::format_rule;
    use crate::parse::rules::{parse_rule, parse_rules};

    /// What `ovs-ofctl -O OpenFlow13 dump-flows` printed for each rule
    /// (OVS 3.1, ovs-peer).
    #[test]
    fn rules_print_as_dump_flows() {
        let cases = [
            (
                "table=0,priority=21,tcp,actions=ct(commit,nat(src=10.0.0.1-10.0.0.5:100-200,random),exec(set_field:0x1/0x3->ct_label,move:NXM_NX_REG0[]->NXM_NX_CT_MARK[]),alg=ftp,zone=NXM_NX_REG1[0..15],table=3)",
                "priority=21,tcp actions=ct(commit,table=3,zone=NXM_NX_REG1[0..15],nat(src=10.0.0.1-10.0.0.5:100-200,random),exec(load:0x1->NXM_NX_CT_LABEL[0..1],move:NXM_NX_REG0[]->NXM_NX_CT_MARK[]),alg=ftp)",
            ),
            (
                "priority=22,tcp6,actions=ct(commit,exec(set_field:1->ct_mark),nat(dst=[fe80::1]:80),zone=5)",
                "priority=22,tcp6 actions=ct(commit,zone=5,exec(set_field:0x1->ct_mark,nat(dst=[fe80::1]:80)))",
            ),
            (
                "priority=23,tcp6,actions=ct(commit,nat(dst=fe80::1-fe80::5),zone=5)",
                "priority=23,tcp6 actions=ct(commit,zone=5,nat(dst=fe80::1-fe80::5))",
            ),
            (
                "priority=24,tcp,actions=ct(force,commit,table=1)",
                "priority=24,tcp actions=ct(commit,force,table=1)",
            ),
            ("priority=26,ip,actions=ct(nat,table=1)", "priority=26,ip actions=ct(table=1,nat)"),
            (
                "priority=27,ip,actions=ct(commit,nat(src,persistent))",
                "priority=27,ip actions=ct(commit,nat(src))",
            ),
            (
                "priority=30,ip,actions=ct(zone=65535,table=2),ct_clear",
                "priority=30,ip actions=ct(table=2,zone=65535),ct_clear",
            ),
            (
                "priority=39,ip,actions=ct(commit,table=1,table=2)",
                "priority=39,ip actions=ct(commit,table=2)",
            ),
            (
                "priority=12,ct_state=+trk-inv,ct_nw_dst=1.2.3.0/24,ip,ct_nw_proto=6,ct_tp_dst=80,ct_tp_src=0x100/0xff00,actions=drop",
                "priority=12,ct_state=-inv+trk,ct_nw_dst=1.2.3.0/24,ct_nw_proto=6,ct_tp_src=0x100/0xff00,ct_tp_dst=80,ip actions=drop",
            ),
            (
                "priority=13,ct_state=+rpl+trk,ct_ipv6_dst=fe80::/64,ipv6,ct_mark=5/0xff,ct_label=0x1/0xf,ct_zone=3,actions=drop",
                "priority=13,ct_state=+rpl+trk,ct_zone=3,ct_mark=0x5/0xff,ct_label=0x1/0xf,ct_ipv6_dst=fe80::/64,ipv6 actions=drop",
            ),
            // The original ports exist only beside the original protocol.
            (
                "priority=13,ct_state=+new,ct_tp_src=5,tcp,actions=drop",
                "priority=13,ct_state=+new,tcp actions=drop",
            ),
            (
                "priority=46,ip,ct_state=0x21/0x3f,actions=drop",
                "priority=46,ct_state=+new-est-rel-rpl-inv+trk,ip actions=drop",
            ),
            ("priority=45,ip,ct_state=trk|new,actions=drop", "priority=45,ct_state=new|trk,ip actions=drop"),
        ];
        for (rule, dumped) in cases {
            let r = parse_rule(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
            assert_eq!(format_rule(&r), dumped, "{rule}");
        }
    }

    #[test]
    fn rules_that_need_the_tracker_say_so() {
        let uses = |r: &str| parse_rule(r).unwrap().uses_conntrack();
        assert!(uses("ip,actions=ct(table=1)"));
        assert!(uses("ip,actions=write_actions(ct_clear)"));
        assert!(uses("ct_state=+trk,actions=drop"));
        assert!(uses("ct_mark=1,actions=drop"));
        assert!(!uses("ip,actions=output:1"));
    }

    /// What OVS refuses, with its reason (ovs-ofctl's message or the
    /// switch's error), located.
    #[test]
    fn refusals_say_why_and_where() {
        let cases = [
            (
                "ip,actions=ct(commit,exec(output:1))",
                "ct action doesn't support nested action output",
                27,
            ),
            (
                "ip,actions=set_field:1->ct_mark",
                "cannot set CT fields outside of ct action",
                12,
            ),
            (
                "udp,actions=ct(commit,alg=ftp)",
                "ct: prerequisites not met",
                13,
            ),
            ("actions=ct(table=1)", "ct: prerequisites not met", 9),
            (
                "ip,actions=ct(exec(set_field:1->ct_mark),table=1)",
                "CT action requires commit flag",
                12,
            ),
            (
                "ip,actions=ct(nat(src=10.0.0.1),table=1)",
                "CT action requires commit flag",
                12,
            ),
            (
                "ip,actions=ct(force,table=1)",
                "\"force\" flag requires \"commit\" flag.",
                15,
            ),
            (
                "ip,actions=ct(commit,exec(set_field:1->ct_zone))",
                "ct_zone is read-only",
                40,
            ),
            (
                "ip,actions=ct(commit,alg=sip)",
                "invalid conntrack helper \"sip\"",
                26,
            ),
            (
                "ip,actions=ct(commit,nat(src=10.0.0.1,dst=10.0.0.2))",
                "May only specify one of \"src\" or \"dst\".",
                26,
            ),
            (
                "ip,actions=ct(commit,nat(src=10.0.0.1,hash,random))",
                "Both \"hash\" and \"random\" are not allowed.",
                26,
            ),
            (
                "ip,actions=ct(commit,nat(foo))",
                "invalid key \"foo\" in \"nat\" argument",
                26,
            ),
            (
                "ip,actions=ct(commit,nat(src=10.0.0.1:80x))",
                "garbage (x) after nat range \"10.0.0.1:80x\" (pos: 11)",
                30,
            ),
            (
                "ip,actions=ct(commit,nat(dst=10.0.0.5-10.0.0.1))",
                "invalid nat range \"10.0.0.5-10.0.0.1\"",
                30,
            ),
            (
                "tcp,actions=ct(commit,nat(dst=[fe80::1]:80))",
                "nat: prerequisites not met",
                23,
            ),
            (
                "ip,actions=ct(zone=70000)",
                "70000: neither a zone number nor a subfield",
                20,
            ),
            ("ip,actions=ct(table=255)", "invalid table 0xff", 21),
            (
                "ip,actions=ct(foo)",
                "invalid argument to \"ct\" action: `foo'",
                15,
            ),
            (
                "ip,actions=ct(commit,zone=NXM_NX_REG1[0..31])",
                "zone n_bits 32 not within valid range [16..16]",
                27,
            ),
            (
                "ip,actions=nat(src=1.1.1.1)",
                "Cannot have NAT action outside of \"ct\" action",
                12,
            ),
            (
                "ip,ct_state=+trk+inv,actions=ct(commit)",
                "ct: prerequisites not met",
                30,
            ),
            (
                "ip,ct_state=+trk,ct_nw_src=1.2.3.4,actions=drop",
                "ct_nw_src: prerequisites not met (OFPBMC_BAD_PREREQ)",
                18,
            ),
            (
                "ct_state=+new,ct_nw_src=1.2.3.4,actions=drop",
                "ct_nw_src: prerequisites not met (OFPBAC_MATCH_INCONSISTENT)",
                15,
            ),
            (
                "ip,ct_state=+est,ct_ipv6_src=::1,actions=drop",
                "ct_ipv6_src: prerequisites not met",
                18,
            ),
            (
                "ip,recirc_id=5,actions=drop",
                "recirc_id: the switch refuses rules that match it",
                4,
            ),
        ];
        let mut wrong = Vec::new();
        for (rule, what, column) in cases {
            match parse_rules(&format!("\n{rule}")) {
                Ok(_) => wrong.push(format!("{rule}: accepted")),
                Err(e) if !e.what.starts_with(what) || (e.line, e.column) != (2, column) => {
                    wrong.push(format!("{rule}: {e} (column {})", e.column))
                }
                Err(_) => {}
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}
