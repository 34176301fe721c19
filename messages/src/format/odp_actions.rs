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
            if !userdata.is_empty() {
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
    }
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

fn masked_u32(name: &str, key: u32, mask: u32) -> String {
    if mask == u32::MAX {
        format!("{name}({key:#x})")
    } else {
        format!("{name}({key:#x}/{mask:#x})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
