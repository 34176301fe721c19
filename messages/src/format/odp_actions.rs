//! Datapath actions as `ofproto/trace` prints them after
//! `Datapath actions: ` (OVS's `format_odp_actions`): `drop` for none,
//! otherwise the actions separated by commas.

use std::fmt::Write;

use super::{ipv6, mac};
use crate::flow::{VLAN_CFI, VLAN_PCP_SHIFT, VLAN_VID_MASK};
use crate::odp::*;

/// Formats a list of datapath actions.
pub fn format_odp_actions(actions: &[OdpAction]) -> String {
    if actions.is_empty() {
        return "drop".into();
    }
    let parts: Vec<String> = actions.iter().map(format_odp_action).collect();
    parts.join(",")
}

/// Formats one datapath action.
pub fn format_odp_action(a: &OdpAction) -> String {
    match a {
        OdpAction::Output(p) => p.to_string(),
        OdpAction::PopVlan => "pop_vlan".into(),
        OdpAction::PushVlan { tpid, tci } => {
            let mut s = String::from("push_vlan(");
            if *tpid != 0x8100 {
                let _ = write!(s, "tpid={tpid:#06x},");
            }
            let _ = write!(
                s,
                "vid={},pcp={}",
                tci & VLAN_VID_MASK,
                tci >> VLAN_PCP_SHIFT
            );
            if tci & VLAN_CFI == 0 {
                s.push_str(",cfi=0");
            }
            s.push(')');
            s
        }
        OdpAction::Userspace { pid, userdata } => {
            let mut s = format!("userspace(pid={pid}");
            if let Some(c) = ControllerCookie::decode(userdata) {
                // OVS's `%#"PRIx64`: 0 without its prefix.
                let cookie = if c.rule_cookie == 0 {
                    "0".to_string()
                } else {
                    format!("{:#x}", c.rule_cookie)
                };
                let _ = write!(
                    s,
                    ",controller(reason={},dont_send={},continuation={},recirc_id={},\
                     rule_cookie={cookie},controller_id={},max_len={})",
                    c.reason,
                    c.dont_send as u8,
                    c.continuation as u8,
                    c.recirc_id,
                    c.controller_id,
                    c.max_len
                );
            } else if !userdata.is_empty() {
                s.push_str(",userdata(");
                for b in userdata {
                    let _ = write!(s, "{b:02x}");
                }
                s.push(')');
            }
            s.push(')');
            s
        }
        OdpAction::SetMasked(h) => format!("set({})", format_set_header(h)),
        OdpAction::SetTunnel(t) => format!(
            "set({})",
            super::odp_flow::format_odp_attrs(&[crate::netlink::KeyAttr::Tunnel(t.clone())], None)
        ),
        OdpAction::Ct(ct) => format_ct(ct),
        OdpAction::CtClear => "ct_clear".into(),
        OdpAction::Recirc(id) => format!("recirc({id:#x})"),
        OdpAction::Clone(inner) => format!("clone({})", format_odp_actions(inner)),
        OdpAction::Trunc(n) => format!("trunc({n})"),
        OdpAction::Meter(n) => format!("meter({n})"),
        OdpAction::Hash { alg, basis } => match alg {
            0 => format!("hash(l4({basis}))"),
            1 => format!("hash(sym_l4({basis}))"),
            _ => format!("hash(hash_alg={alg},basis={basis})"),
        },
        OdpAction::CheckPktLen { pkt_len, gt, le } => format!(
            "check_pkt_len(size={pkt_len},gt({}),le({}))",
            format_odp_actions(gt),
            format_odp_actions(le)
        ),
        OdpAction::TnlPush(p) => p.format(),
        OdpAction::TnlPop(port) => format!("tnl_pop({port})"),
        OdpAction::PushMpls { lse, ethertype } => {
            format!(
                "push_mpls({},eth_type={ethertype:#x})",
                format_mpls_lse(*lse)
            )
        }
        OdpAction::PopMpls(ethertype) => format!("pop_mpls(eth_type={ethertype:#x})"),
        OdpAction::SetMpls(lse) => format!("set(mpls({}))", format_mpls_lse(*lse)),
    }
}

/// One label stack entry as OVS's `format_mpls_lse` prints it.
fn format_mpls_lse(lse: u32) -> String {
    format!(
        "label={},tc={},ttl={},bos={}",
        lse >> 12,
        (lse >> 9) & 7,
        lse & 0xff,
        (lse >> 8) & 1
    )
}

/// `ct(...)` as OVS's `format_odp_conntrack_action` prints it: zone only
/// when nonzero, the mark always with its mask, the label's mask only when
/// not all ones.
fn format_ct(ct: &CtAction) -> String {
    let mut s = String::from("ct");
    let mut args = String::new();
    if ct.commit && !ct.force {
        args.push_str("commit,");
    }
    if ct.force {
        args.push_str("force_commit,");
    }
    if ct.zone != 0 {
        let _ = write!(args, "zone={},", ct.zone);
    }
    if let Some((v, m)) = ct.mark {
        let _ = write!(args, "mark={}/{},", hex_or_zero(v), hex_or_zero(m));
    }
    if let Some((v, m)) = ct.labels {
        let _ = write!(args, "label={}", hex128(v));
        if m != u128::MAX {
            let _ = write!(args, "/{}", hex128(m));
        }
        args.push(',');
    }
    if let Some(h) = ct.helper {
        let _ = write!(args, "helper={},", h.name());
    }
    if let Some(t) = &ct.timeout {
        let _ = write!(args, "timeout={t},");
    }
    if let Some(nat) = &ct.nat {
        args.push_str(&format_nat(nat));
    }
    if args.ends_with(',') {
        args.pop();
    }
    if !args.is_empty() {
        let _ = write!(s, "({args})");
    }
    s
}

/// C's `%#x`: `0` for zero, `0x…` otherwise.
fn hex_or_zero(v: u32) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// A 128-bit value as OVS's `ds_put_hex` prints it (no leading zeros).
pub fn hex128(v: u128) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// The `nat(...)` inside a `ct` action (OVS's `format_odp_ct_nat`).
pub fn format_nat(nat: &NatAction) -> String {
    let Some(kind) = nat.kind else {
        return "nat".into();
    };
    let mut s = String::from(match kind {
        NatKind::Src => "nat(src",
        NatKind::Dst => "nat(dst",
    });
    if let Some(addrs) = nat.addrs {
        s.push('=');
        let bracket = nat.ports.is_some();
        match addrs {
            NatAddrs::V4 { min, max } => {
                s.push_str(&ip4(min));
                if max != min && max != 0 {
                    let _ = write!(s, "-{}", ip4(max));
                }
            }
            NatAddrs::V6 { min, max } => {
                let v6 = |a: [u8; 16]| {
                    if bracket {
                        format!("[{}]", ipv6(&a))
                    } else {
                        ipv6(&a)
                    }
                };
                s.push_str(&v6(min));
                if max != min && max != [0; 16] {
                    let _ = write!(s, "-{}", v6(max));
                }
            }
        }
        if let Some((min, max)) = nat.ports {
            let _ = write!(s, ":{min}");
            if max != min && max != 0 {
                let _ = write!(s, "-{max}");
            }
        }
    }
    s.push(',');
    if nat.persistent {
        s.push_str("persistent,");
    }
    if nat.hash {
        s.push_str("hash,");
    }
    if nat.random {
        s.push_str("random,");
    }
    s.pop();
    s.push(')');
    s
}

/// Appends `name=value[/mask],` when the mask is not empty, using `fmt`
/// for both.
fn field<T: PartialEq + Default + Copy>(
    out: &mut String,
    name: &str,
    value: T,
    mask: T,
    full: T,
    fmt: impl Fn(T) -> String,
) {
    if mask == T::default() {
        return;
    }
    let _ = write!(out, "{name}={}", fmt(value));
    if mask != full {
        let _ = write!(out, "/{}", fmt(mask));
    }
    out.push(',');
}

fn ip4(v: u32) -> String {
    std::net::Ipv4Addr::from(v).to_string()
}

/// The header a set action writes, with only its masked fields, as OVS's
/// `format_odp_key_attr` prints a masked key.
pub fn format_set_header(h: &SetHeader) -> String {
    let mut s = String::new();
    let dec8 = |v: u8| v.to_string();
    let hex8 = |v: u8| {
        if v == 0 {
            "0".to_string()
        } else {
            format!("{v:#x}")
        }
    };
    let dec16 = |v: u16| v.to_string();
    let name = match h {
        SetHeader::Ethernet { key, mask } => {
            field(&mut s, "src", key.src, mask.src, [0xff; 6], mac);
            field(&mut s, "dst", key.dst, mask.dst, [0xff; 6], mac);
            "eth"
        }
        SetHeader::Ipv4 { key, mask } => {
            field(&mut s, "src", key.src, mask.src, u32::MAX, ip4);
            field(&mut s, "dst", key.dst, mask.dst, u32::MAX, ip4);
            field(&mut s, "proto", key.proto, mask.proto, 0xff, dec8);
            field(&mut s, "tos", key.tos, mask.tos, 0xff, hex8);
            field(&mut s, "ttl", key.ttl, mask.ttl, 0xff, dec8);
            "ipv4"
        }
        SetHeader::Ipv6 { key, mask } => {
            field(&mut s, "src", key.src, mask.src, [0xff; 16], |v| ipv6(&v));
            field(&mut s, "dst", key.dst, mask.dst, [0xff; 16], |v| ipv6(&v));
            field(&mut s, "label", key.label, mask.label, 0xfffff, |v| {
                format!("{v:#x}")
            });
            field(&mut s, "proto", key.proto, mask.proto, 0xff, dec8);
            field(&mut s, "tclass", key.tclass, mask.tclass, 0xff, hex8);
            field(&mut s, "hlimit", key.hlimit, mask.hlimit, 0xff, dec8);
            "ipv6"
        }
        SetHeader::Tcp { key, mask }
        | SetHeader::Udp { key, mask }
        | SetHeader::Sctp { key, mask } => {
            field(&mut s, "src", key.src, mask.src, u16::MAX, dec16);
            field(&mut s, "dst", key.dst, mask.dst, u16::MAX, dec16);
            match h {
                SetHeader::Tcp { .. } => "tcp",
                SetHeader::Udp { .. } => "udp",
                _ => "sctp",
            }
        }
        SetHeader::Arp { key, mask } => {
            field(&mut s, "sip", key.sip, mask.sip, u32::MAX, ip4);
            field(&mut s, "tip", key.tip, mask.tip, u32::MAX, ip4);
            field(&mut s, "op", key.op, mask.op, u16::MAX, dec16);
            field(&mut s, "sha", key.sha, mask.sha, [0xff; 6], mac);
            field(&mut s, "tha", key.tha, mask.tha, [0xff; 6], mac);
            "arp"
        }
        SetHeader::Nd { key, mask } => {
            field(&mut s, "target", key.target, mask.target, [0xff; 16], |v| {
                ipv6(&v)
            });
            field(&mut s, "sll", key.sll, mask.sll, [0xff; 6], mac);
            field(&mut s, "tll", key.tll, mask.tll, [0xff; 6], mac);
            "nd"
        }
        SetHeader::SkbPriority { key, mask } => {
            return masked_u32("skb_priority", *key, *mask);
        }
        SetHeader::SkbMark { key, mask } => return masked_u32("skb_mark", *key, *mask),
    };
    if s.ends_with(',') {
        s.pop();
    }
    format!("{name}({s})")
}

/// C's `%#x`, as OVS prints these: `0` for zero.
fn masked_u32(name: &str, key: u32, mask: u32) -> String {
    if mask == u32::MAX {
        format!("{name}({})", hex_or_zero(key))
    } else {
        format!("{name}({}/{})", hex_or_zero(key), hex_or_zero(mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conntrack_actions_print_as_ovs() {
        let ct = CtAction {
            commit: true,
            zone: 5,
            mark: Some((1, 0xff)),
            labels: Some((0x10, u128::MAX)),
            helper: Some(CtHelper::Ftp),
            nat: Some(NatAction {
                kind: Some(NatKind::Src),
                addrs: Some(NatAddrs::V4 {
                    min: 0x0a00_0001,
                    max: 0x0a00_0002,
                }),
                ports: Some((1000, 2000)),
                persistent: true,
                random: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            format_odp_actions(&[OdpAction::Ct(ct), OdpAction::Recirc(1)]),
            "ct(commit,zone=5,mark=0x1/0xff,label=0x10,helper=ftp,\
             nat(src=10.0.0.1-10.0.0.2:1000-2000,persistent,random)),recirc(0x1)"
        );
        let plain = CtAction {
            nat: Some(NatAction::default()),
            ..Default::default()
        };
        assert_eq!(format_odp_action(&OdpAction::Ct(plain)), "ct(nat)");
        assert_eq!(format_odp_action(&OdpAction::Ct(CtAction::default())), "ct");
        let v6 = CtAction {
            force: true,
            commit: true,
            mark: Some((0, 1)),
            labels: Some((0, 0xffff_0000)),
            nat: Some(NatAction {
                kind: Some(NatKind::Dst),
                addrs: Some(NatAddrs::V6 {
                    min: [0x20, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    max: [0x20, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                }),
                ports: Some((80, 80)),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            format_odp_actions(&[OdpAction::Ct(v6), OdpAction::CtClear]),
            "ct(force_commit,mark=0/0x1,label=0/0xffff0000,nat(dst=[2001::1]:80)),ct_clear"
        );
    }

    #[test]
    fn drop_when_empty() {
        assert_eq!(format_odp_actions(&[]), "drop");
    }

    #[test]
    fn masked_sets_print_only_masked_fields() {
        let a = [
            OdpAction::SetMasked(SetHeader::Ethernet {
                key: EthKey {
                    src: [2, 0, 0, 0, 0, 0xaa],
                    dst: [9; 6],
                },
                mask: EthKey {
                    src: [0xff; 6],
                    dst: [0; 6],
                },
            }),
            OdpAction::SetMasked(SetHeader::Ipv4 {
                key: Ipv4Key {
                    dst: 0x0a09_0909,
                    tos: 0xbc,
                    ..Default::default()
                },
                mask: Ipv4Key {
                    dst: u32::MAX,
                    tos: 0xfc,
                    ..Default::default()
                },
            }),
            OdpAction::PushVlan {
                tpid: 0x8100,
                tci: 0x1000 | 10,
            },
            OdpAction::Output(2),
        ];
        assert_eq!(
            format_odp_actions(&a),
            "set(eth(src=02:00:00:00:00:aa)),set(ipv4(dst=10.9.9.9,tos=0xbc/0xfc)),push_vlan(vid=10,pcp=0),2"
        );
    }
}
