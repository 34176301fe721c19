//! Datapath (ODP) flow syntax, as `ovs-dpctl dump-flows` prints a key and
//! its mask: `in_port(1),eth(src=..,dst=..),eth_type(0x0800),ipv4(...)`.
//!
//! OVS's rules (non-verbose): an attribute whose mask is all zeros is left
//! out, except nested ones (`encap`) and `eth`, which prints as `eth()`;
//! inside an attribute a field with a zero mask is left out and a partial
//! mask prints as `value/mask`; numbers print as C's `%#x` does (`0`, not
//! `0x0`).

use std::fmt::Write;

use crate::flow::Flow;
use crate::netlink::consts::*;
use crate::netlink::{installed_megaflow_attrs, KeyAttr, TunnelAttr};
use crate::parse::syntax::{CT_STATE_NAMES, TCP_FLAG_NAMES};

/// Prints the megaflow `key`/`mask` in ODP syntax, as `ovs-dpctl
/// dump-flows` shows it once the kernel holds it.
pub fn format_odp_flow(key: &Flow, mask: &Flow) -> String {
    let (k, m) = installed_megaflow_attrs(key, mask);
    format_odp_attrs(&k, Some(&m))
}

/// Prints key attributes and, if given, their mask attributes, as OVS's
/// `odp_flow_format` does.
pub fn format_odp_attrs(key: &[KeyAttr], mask: Option<&[KeyAttr]>) -> String {
    let mut s = String::new();
    format_list(&mut s, key, mask);
    s
}

/// C's `%#x`: `0` for zero, `0x…` otherwise.
fn hx(v: impl Into<u128>) -> String {
    let v = v.into();
    if v == 0 {
        "0".to_string()
    } else {
        format!("{v:#x}")
    }
}

fn attr_name(kind: u16) -> String {
    match kind {
        OVS_KEY_ATTR_ENCAP => "encap",
        OVS_KEY_ATTR_PRIORITY => "skb_priority",
        OVS_KEY_ATTR_IN_PORT => "in_port",
        OVS_KEY_ATTR_ETHERNET => "eth",
        OVS_KEY_ATTR_VLAN => "vlan",
        OVS_KEY_ATTR_ETHERTYPE => "eth_type",
        OVS_KEY_ATTR_IPV4 => "ipv4",
        OVS_KEY_ATTR_IPV6 => "ipv6",
        OVS_KEY_ATTR_TCP => "tcp",
        OVS_KEY_ATTR_UDP => "udp",
        OVS_KEY_ATTR_ICMP => "icmp",
        OVS_KEY_ATTR_ICMPV6 => "icmpv6",
        OVS_KEY_ATTR_ARP => "arp",
        OVS_KEY_ATTR_ND => "nd",
        OVS_KEY_ATTR_SKB_MARK => "skb_mark",
        OVS_KEY_ATTR_TUNNEL => "tunnel",
        OVS_KEY_ATTR_SCTP => "sctp",
        OVS_KEY_ATTR_TCP_FLAGS => "tcp_flags",
        OVS_KEY_ATTR_DP_HASH => "dp_hash",
        OVS_KEY_ATTR_RECIRC_ID => "recirc_id",
        OVS_KEY_ATTR_MPLS => "mpls",
        OVS_KEY_ATTR_CT_STATE => "ct_state",
        OVS_KEY_ATTR_CT_ZONE => "ct_zone",
        OVS_KEY_ATTR_CT_MARK => "ct_mark",
        OVS_KEY_ATTR_CT_LABELS => "ct_label",
        OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV4 => "ct_tuple4",
        OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV6 => "ct_tuple6",
        other => return format!("key{other}"),
    }
    .to_string()
}

fn payload(a: &KeyAttr) -> Vec<u8> {
    let mut b = vec![0u8; a.payload_len()];
    a.emit_payload(&mut b);
    b
}

/// An all-zero mask shaped like `a`.
fn zero_mask(a: &KeyAttr) -> KeyAttr {
    match a {
        KeyAttr::Encap(v) => KeyAttr::Encap(v.iter().map(zero_mask).collect()),
        KeyAttr::Tunnel(v) => KeyAttr::Tunnel(
            v.iter()
                .map(|t| match t {
                    TunnelAttr::Id(_) => TunnelAttr::Id(0),
                    TunnelAttr::Ipv4Src(_) => TunnelAttr::Ipv4Src(0),
                    TunnelAttr::Ipv4Dst(_) => TunnelAttr::Ipv4Dst(0),
                    TunnelAttr::Tos(_) => TunnelAttr::Tos(0),
                    TunnelAttr::Ttl(_) => TunnelAttr::Ttl(0),
                    TunnelAttr::TpSrc(_) => TunnelAttr::TpSrc(0),
                    TunnelAttr::TpDst(_) => TunnelAttr::TpDst(0),
                    TunnelAttr::DontFragment | TunnelAttr::Csum | TunnelAttr::Oam => t.clone(),
                    TunnelAttr::GeneveOpts(v) => TunnelAttr::GeneveOpts(vec![0; v.len()]),
                    TunnelAttr::VxlanGbp(_) => TunnelAttr::VxlanGbp(0),
                    TunnelAttr::Ipv6Src(_) => TunnelAttr::Ipv6Src([0; 16]),
                    TunnelAttr::Ipv6Dst(_) => TunnelAttr::Ipv6Dst([0; 16]),
                    TunnelAttr::Other(k, v) => TunnelAttr::Other(*k, vec![0; v.len()]),
                })
                .collect(),
        ),
        other => KeyAttr::parse_payload(other.kind(), &vec![0u8; other.payload_len()])
            .unwrap_or_else(|_| KeyAttr::Other(other.kind(), vec![0; other.payload_len()])),
    }
}

/// True if every bit of mask attribute `m` is `fill` (0x00 or 0xff), by
/// OVS's per-type rules.
fn mask_is_constant(m: &KeyAttr, fill: u8) -> bool {
    let b = payload(m);
    let all = |s: &[u8]| s.iter().all(|x| *x == fill);
    match m {
        KeyAttr::Encap(_) | KeyAttr::Other(..) => false,
        KeyAttr::TcpFlags(f) => f & 0x0fff == if fill == 0 { 0 } else { 0x0fff },
        KeyAttr::Ipv6(k) => {
            k.label & 0x000f_ffff == if fill == 0 { 0 } else { 0x000f_ffff }
                && all(&b[0..32])
                && all(&b[36..40])
        }
        KeyAttr::Arp(_) => all(&b[..22]),
        _ => all(&b),
    }
}

fn is_exact(m: Option<&KeyAttr>) -> bool {
    m.is_none_or(|m| mask_is_constant(m, 0xff))
}

fn is_nested(kind: u16) -> bool {
    kind == OVS_KEY_ATTR_ENCAP || kind == OVS_KEY_ATTR_TUNNEL
}

fn find(mask: Option<&[KeyAttr]>, kind: u16) -> Option<&KeyAttr> {
    mask.and_then(|m| m.iter().find(|a| a.kind() == kind))
}

fn format_list(s: &mut String, key: &[KeyAttr], mask: Option<&[KeyAttr]>) {
    if key.is_empty() {
        s.push_str("<empty>");
        return;
    }
    let mask = mask.filter(|m| !m.is_empty());
    let mut first = true;
    let mut has_ethtype = false;
    for a in key {
        let kind = a.kind();
        if kind == OVS_KEY_ATTR_ETHERTYPE {
            has_ethtype = true;
        }
        let mut ma = find(mask, kind).cloned();
        let wildcard = mask.is_some() && ma.as_ref().is_none_or(|m| mask_is_constant(m, 0));
        if !wildcard || is_nested(kind) {
            if wildcard && ma.is_none() {
                ma = Some(zero_mask(a));
            }
            if !first {
                s.push(',');
            }
            format_attr(s, a, ma.as_ref());
            first = false;
        } else if kind == OVS_KEY_ATTR_ETHERNET {
            if !first {
                s.push(',');
            }
            s.push_str("eth()");
            first = false;
        }
    }
    if !has_ethtype {
        if let Some(KeyAttr::EtherType(m)) = find(mask, OVS_KEY_ATTR_ETHERTYPE) {
            let _ = write!(s, ",eth_type(0/0x{m:04x})");
        }
    }
}

/// Appends `name=value[/mask],` unless the mask is zero.
fn field(s: &mut String, name: &str, mask_zero: bool, full: bool, value: &str, mask: &str) {
    if mask_zero {
        return;
    }
    let _ = write!(s, "{name}={value}");
    if !full {
        let _ = write!(s, "/{mask}");
    }
    s.push(',');
}

fn mac_str(m: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

fn ip_str(v: u32) -> String {
    std::net::Ipv4Addr::from(v).to_string()
}

/// The name of one bit in a table of flag names.
fn bit_name(names: &'static [(u32, &'static str)], bit: u32) -> Option<&'static str> {
    names.iter().find(|(b, _)| *b == bit).map(|(_, n)| *n)
}

fn tcp_flag_name(bit: u32) -> Option<&'static str> {
    bit_name(TCP_FLAG_NAMES, bit)
}

fn ct_state_name(bit: u32) -> Option<&'static str> {
    bit_name(CT_STATE_NAMES, bit)
}

fn tun_flag_name(bit: u32) -> Option<&'static str> {
    Some(match bit {
        1 => "df",
        2 => "csum",
        4 => "key",
        8 => "oam",
        _ => return None,
    })
}

/// OVS's `format_flags`: names joined by `|`, `0` for none.
fn flags(s: &mut String, name: fn(u32) -> Option<&'static str>, mut v: u32) {
    if v == 0 {
        s.push('0');
        return;
    }
    let mut bad = 0;
    let mut parts = Vec::new();
    while v != 0 {
        let bit = v & v.wrapping_neg();
        match name(bit) {
            Some(n) => parts.push(n.to_string()),
            None => bad |= bit,
        }
        v &= !bit;
    }
    if bad != 0 {
        parts.push(format!("{bad:#x}"));
    }
    s.push_str(&parts.join("|"));
}

/// OVS's `format_flags_masked`: `+name`/`-name` per masked bit.
fn flags_masked(
    s: &mut String,
    name: fn(u32) -> Option<&'static str>,
    v: u32,
    mut m: u32,
    max: u32,
) {
    if m == max {
        flags(s, name, v);
        return;
    }
    if m == 0 {
        s.push_str("0/0");
        return;
    }
    while m != 0 {
        let bit = m & m.wrapping_neg();
        s.push(if v & bit != 0 { '+' } else { '-' });
        s.push_str(name(bit).unwrap_or("[Unknown]"));
        m &= !bit;
    }
}

fn u8u(s: &mut String, name: &str, v: u8, m: Option<u8>) {
    field(
        s,
        name,
        m == Some(0),
        m.is_none_or(|m| m == u8::MAX),
        &v.to_string(),
        &hx(m.unwrap_or(0)),
    );
}

fn u8x(s: &mut String, name: &str, v: u8, m: Option<u8>) {
    field(
        s,
        name,
        m == Some(0),
        m.is_none_or(|m| m == u8::MAX),
        &hx(v),
        &hx(m.unwrap_or(0)),
    );
}

fn be16(s: &mut String, name: &str, v: u16, m: Option<u16>) {
    field(
        s,
        name,
        m == Some(0),
        m.is_none_or(|m| m == u16::MAX),
        &v.to_string(),
        &hx(m.unwrap_or(0)),
    );
}

fn ipv4(s: &mut String, name: &str, v: u32, m: Option<u32>) {
    field(
        s,
        name,
        m == Some(0),
        m.is_none_or(|m| m == u32::MAX),
        &ip_str(v),
        &ip_str(m.unwrap_or(0)),
    );
}

fn in6(s: &mut String, name: &str, v: &[u8; 16], m: Option<&[u8; 16]>) {
    field(
        s,
        name,
        m == Some(&[0; 16]),
        m.is_none_or(|m| *m == [0xff; 16]),
        &super::ipv6(v),
        &m.map(super::ipv6).unwrap_or_default(),
    );
}

fn eth(s: &mut String, name: &str, v: &[u8; 6], m: Option<&[u8; 6]>) {
    field(
        s,
        name,
        m == Some(&[0; 6]),
        m.is_none_or(|m| *m == [0xff; 6]),
        &mac_str(v),
        &m.map(mac_str).unwrap_or_default(),
    );
}

fn frag(s: &mut String, v: u8, m: Option<u8>) {
    match m {
        Some(0) => {}
        Some(m) if m != u8::MAX => {
            let _ = write!(s, "error: partial mask not supported for frag ({}),", hx(m));
        }
        _ => {
            let name = match v {
                OVS_FRAG_TYPE_NONE => "no".to_string(),
                OVS_FRAG_TYPE_FIRST => "first".to_string(),
                OVS_FRAG_TYPE_LATER => "later".to_string(),
                other => format!("<error: unknown frag {other}>"),
            };
            let _ = write!(s, "frag={name},");
        }
    }
}

fn chomp(s: &mut String) {
    if s.ends_with(',') {
        s.pop();
    }
}

fn vlan_tci(s: &mut String, tci: u16, mask: u16) {
    let vid = |t: u16| t & 0x0fff;
    let pcp = |t: u16| t >> 13;
    if vid(tci) != 0 || vid(mask) != 0 {
        let _ = write!(s, "vid={}", vid(tci));
        if vid(mask) != 0x0fff {
            let _ = write!(s, "/0x{:x}", vid(mask));
        }
        s.push(',');
    }
    if pcp(tci) != 0 || pcp(mask) != 0 {
        let _ = write!(s, "pcp={}", pcp(tci));
        if pcp(mask) != 7 {
            let _ = write!(s, "/0x{:x}", pcp(mask));
        }
        s.push(',');
    }
    if tci & 0x1000 == 0 {
        s.push_str("cfi=0,");
    }
    chomp(s);
}

/// OVS's `format_geneve_opts`: `{class=…,type=…,len=…,DATA}` per
/// option; with a mask, fields it leaves out and `/mask` where partial.
pub(crate) fn geneve_opts(s: &mut String, key: &[u8], mask: Option<&[u8]>) {
    let mut at = 0;
    while at < key.len() {
        let rest = &key[at..];
        if rest.len() < 4 {
            let _ = write!(s, "opt len {} less than minimum 4", rest.len());
            return;
        }
        let data_len = (rest[3] & 0x1f) as usize * 4;
        if 4 + data_len > rest.len() {
            let _ = write!(
                s,
                "opt len {} greater than remaining {}",
                4 + data_len,
                rest.len()
            );
            return;
        }
        let m = mask.and_then(|m| m.get(at..at + 4 + data_len));
        s.push('{');
        let class = u16::from_be_bytes([rest[0], rest[1]]);
        field(
            s,
            "class",
            m.is_some_and(|m| m[0] == 0 && m[1] == 0),
            m.is_none_or(|m| m[0] == 0xff && m[1] == 0xff),
            &hx(class),
            &hx(m.map_or(0, |m| u16::from_be_bytes([m[0], m[1]]))),
        );
        u8x(s, "type", rest[2], m.map(|m| m[2]));
        let len_mask = m.map(|m| if m[3] & 0x1f == 0x1f { 0xff } else { m[3] });
        u8u(s, "len", data_len as u8, len_mask);
        let data = &rest[4..4 + data_len];
        let data_mask = m.map(|m| &m[4..]);
        if data_len > 0 && data_mask.is_none_or(|dm| dm.iter().any(|b| *b != 0)) {
            s.push_str(&put_hex(data));
            if let Some(dm) = data_mask.filter(|dm| dm.iter().any(|b| *b != 0xff)) {
                s.push('/');
                s.push_str(&put_hex(dm));
            }
        } else {
            chomp(s);
        }
        s.push('}');
        at += 4 + data_len;
    }
}

/// OVS's `ds_put_hex`: the bytes as one hex number, `0` for zeros.
fn put_hex(b: &[u8]) -> String {
    let v: String = b
        .iter()
        .skip_while(|x| **x == 0)
        .map(|x| format!("{x:02x}"))
        .collect();
    match v.strip_prefix('0') {
        _ if v.is_empty() => "0".into(),
        Some(rest) => format!("0x{rest}"),
        None => format!("0x{v}"),
    }
}

fn format_tunnel(s: &mut String, key: &[TunnelAttr], mask: Option<&[TunnelAttr]>) {
    let mut fl = 0u32;
    let mut mfl = 0u32;
    for t in key {
        let m = mask.map(|m| {
            m.iter()
                .find(|x| std::mem::discriminant(*x) == std::mem::discriminant(t))
        });
        macro_rules! mv {
            ($pat:path) => {
                m.map(|o| match o {
                    Some($pat(x)) => *x,
                    _ => 0,
                })
            };
        }
        match t {
            TunnelAttr::Id(v) => {
                let mm = mv!(TunnelAttr::Id);
                if mm != Some(0) {
                    let _ = write!(s, "tun_id={v:#x}");
                    if let Some(mm) = mm.filter(|mm| *mm != u64::MAX) {
                        let _ = write!(s, "/{}", hx(mm));
                    }
                    s.push(',');
                }
                fl |= 4;
                if mask.is_some() {
                    mfl |= 4;
                }
            }
            TunnelAttr::Ipv4Src(v) => ipv4(s, "src", *v, mv!(TunnelAttr::Ipv4Src)),
            TunnelAttr::Ipv4Dst(v) => ipv4(s, "dst", *v, mv!(TunnelAttr::Ipv4Dst)),
            TunnelAttr::Tos(v) => u8x(s, "tos", *v, mv!(TunnelAttr::Tos)),
            TunnelAttr::Ttl(v) => u8u(s, "ttl", *v, mv!(TunnelAttr::Ttl)),
            TunnelAttr::TpSrc(v) => be16(s, "tp_src", *v, mv!(TunnelAttr::TpSrc)),
            TunnelAttr::TpDst(v) => be16(s, "tp_dst", *v, mv!(TunnelAttr::TpDst)),
            TunnelAttr::Ipv6Src(v) => in6(
                s,
                "ipv6_src",
                v,
                m.map(|o| match o {
                    Some(TunnelAttr::Ipv6Src(x)) => x,
                    _ => &[0; 16],
                }),
            ),
            TunnelAttr::Ipv6Dst(v) => in6(
                s,
                "ipv6_dst",
                v,
                m.map(|o| match o {
                    Some(TunnelAttr::Ipv6Dst(x)) => x,
                    _ => &[0; 16],
                }),
            ),
            TunnelAttr::DontFragment => fl |= 1,
            TunnelAttr::Csum => fl |= 2,
            TunnelAttr::Oam => fl |= 8,
            TunnelAttr::VxlanGbp(v) => {
                let mm = mv!(TunnelAttr::VxlanGbp);
                s.push_str("vxlan(gbp(");
                be16(s, "id", *v as u16, mm.map(|m| m as u16));
                u8x(s, "flags", (*v >> 16) as u8, mm.map(|m| (m >> 16) as u8));
                chomp(s);
                s.push_str(")),");
            }
            TunnelAttr::GeneveOpts(v) => {
                let mm = m.map(|o| match o {
                    Some(TunnelAttr::GeneveOpts(x)) => x.as_slice(),
                    _ => &[],
                });
                s.push_str("geneve(");
                geneve_opts(s, v, mm);
                s.push_str("),");
            }
            TunnelAttr::Other(k, v) => {
                let _ = write!(s, "key{k}({}),", hex::encode(v));
            }
        }
    }
    if let Some(m) = mask {
        for t in m {
            match t {
                TunnelAttr::DontFragment => mfl |= 1,
                TunnelAttr::Csum => mfl |= 2,
                TunnelAttr::Oam => mfl |= 8,
                _ => {}
            }
        }
    }
    if mask.is_none() || mfl != 0 {
        s.push_str("flags(");
        if mask.is_some() {
            flags_masked(s, tun_flag_name, fl, mfl & 0xf, 0xf);
        } else {
            flags(s, tun_flag_name, fl);
        }
        s.push_str("),");
    }
    chomp(s);
}

fn format_attr(s: &mut String, a: &KeyAttr, ma: Option<&KeyAttr>) {
    let exact = is_exact(ma);
    let _ = write!(s, "{}(", attr_name(a.kind()));
    macro_rules! m {
        ($pat:pat => $e:expr) => {
            match ma {
                Some($pat) => Some($e),
                _ => None,
            }
        };
    }
    match a {
        KeyAttr::Encap(inner) => {
            let mi = m!(KeyAttr::Encap(v) => v.as_slice());
            match mi {
                Some(mi) if !mi.is_empty() && !inner.is_empty() => format_list(s, inner, Some(mi)),
                _ if !inner.is_empty() => format_list(s, inner, None),
                _ => {}
            }
        }
        KeyAttr::Priority(v) | KeyAttr::SkbMark(v) | KeyAttr::DpHash(v) | KeyAttr::RecircId(v) => {
            s.push_str(&hx(*v));
            if !exact {
                let mv = m!(KeyAttr::Priority(x) | KeyAttr::SkbMark(x) | KeyAttr::DpHash(x) | KeyAttr::RecircId(x) => *x);
                let _ = write!(s, "/{}", hx(mv.unwrap_or(0)));
            }
        }
        KeyAttr::CtMark(v) => {
            if let Some(mv) = m!(KeyAttr::CtMark(x) => *x).filter(|x| *x != 0) {
                s.push_str(&hx(*v));
                if !exact {
                    let _ = write!(s, "/{}", hx(mv));
                }
            }
        }
        KeyAttr::CtZone(v) => {
            if let Some(mv) = m!(KeyAttr::CtZone(x) => *x).filter(|x| *x != 0) {
                s.push_str(&hx(*v));
                if !exact {
                    let _ = write!(s, "/{}", hx(mv));
                }
            }
        }
        KeyAttr::CtState(v) => {
            if !exact {
                let mv = m!(KeyAttr::CtState(x) => *x).unwrap_or(0);
                flags_masked(s, ct_state_name, *v, mv, u32::MAX);
            } else {
                flags(s, ct_state_name, *v);
            }
        }
        KeyAttr::CtLabels(l) => {
            if let Some(ml) = m!(KeyAttr::CtLabels(x) => *x).filter(|x| *x != [0; 16]) {
                s.push_str(&hx(u128::from_ne_bytes(*l)));
                if ml != [0xff; 16] {
                    let _ = write!(s, "/{}", hx(u128::from_ne_bytes(ml)));
                }
            }
        }
        KeyAttr::Tunnel(t) => format_tunnel(s, t, m!(KeyAttr::Tunnel(x) => x.as_slice())),
        KeyAttr::InPort(v) => {
            if exact {
                let _ = write!(s, "{v}");
            } else {
                let mv = m!(KeyAttr::InPort(x) => *x).unwrap_or(0);
                let _ = write!(s, "{v}/{}", hx(mv));
            }
        }
        KeyAttr::Ethernet(k) => {
            let mk = m!(KeyAttr::Ethernet(x) => *x);
            eth(s, "src", &k.src, mk.as_ref().map(|x| &x.src));
            eth(s, "dst", &k.dst, mk.as_ref().map(|x| &x.dst));
            chomp(s);
        }
        KeyAttr::Vlan(tci) => vlan_tci(s, *tci, m!(KeyAttr::Vlan(x) => *x).unwrap_or(u16::MAX)),
        KeyAttr::Mpls(lses) => {
            let ml = m!(KeyAttr::Mpls(x) => x.clone());
            let label = |x: u32| x >> 12;
            let tc = |x: u32| (x >> 9) & 7;
            let ttl = |x: u32| x & 0xff;
            let bos = |x: u32| (x >> 8) & 1;
            match ml.filter(|_| !exact) {
                Some(ml) if ml.len() != lses.len() => {
                    let _ = write!(
                        s,
                        "(key length {} != mask length {})",
                        4 * lses.len(),
                        4 * ml.len()
                    );
                }
                Some(ml) => {
                    for (k, m) in lses.iter().zip(&ml) {
                        let _ = write!(
                            s,
                            "label={}/0x{:x},tc={}/{:x},ttl={}/0x{:x},bos={}/{:x},",
                            label(*k),
                            label(*m),
                            tc(*k),
                            tc(*m),
                            ttl(*k),
                            ttl(*m),
                            bos(*k),
                            bos(*m)
                        );
                    }
                    chomp(s);
                }
                None => {
                    for k in lses {
                        let _ = write!(
                            s,
                            "label={},tc={},ttl={},bos={},",
                            label(*k),
                            tc(*k),
                            ttl(*k),
                            bos(*k)
                        );
                    }
                    chomp(s);
                }
            }
        }
        KeyAttr::EtherType(t) => {
            let _ = write!(s, "0x{t:04x}");
            if !exact {
                let _ = write!(s, "/0x{:04x}", m!(KeyAttr::EtherType(x) => *x).unwrap_or(0));
            }
        }
        // OVS's format_odp_key_attr: the IPv6 tuple names its ports
        // src_port/dst_port, the IPv4 one tp_src/tp_dst.
        KeyAttr::CtOrigTuple4(k) => {
            let mk = m!(KeyAttr::CtOrigTuple4(x) => *x);
            ipv4(s, "src", k.src, mk.map(|m| m.src));
            ipv4(s, "dst", k.dst, mk.map(|m| m.dst));
            u8u(s, "proto", k.proto, mk.map(|m| m.proto));
            be16(s, "tp_src", k.src_port, mk.map(|m| m.src_port));
            be16(s, "tp_dst", k.dst_port, mk.map(|m| m.dst_port));
            chomp(s);
        }
        KeyAttr::CtOrigTuple6(k) => {
            let mk = m!(KeyAttr::CtOrigTuple6(x) => *x);
            in6(s, "src", &k.src, mk.as_ref().map(|m| &m.src));
            in6(s, "dst", &k.dst, mk.as_ref().map(|m| &m.dst));
            u8u(s, "proto", k.proto, mk.map(|m| m.proto));
            be16(s, "src_port", k.src_port, mk.map(|m| m.src_port));
            be16(s, "dst_port", k.dst_port, mk.map(|m| m.dst_port));
            chomp(s);
        }
        KeyAttr::Ipv4(k) => {
            let mk = m!(KeyAttr::Ipv4(x) => *x);
            ipv4(s, "src", k.src, mk.map(|m| m.src));
            ipv4(s, "dst", k.dst, mk.map(|m| m.dst));
            u8u(s, "proto", k.proto, mk.map(|m| m.proto));
            u8x(s, "tos", k.tos, mk.map(|m| m.tos));
            u8u(s, "ttl", k.ttl, mk.map(|m| m.ttl));
            frag(s, k.frag, mk.map(|m| m.frag));
            chomp(s);
        }
        KeyAttr::Ipv6(k) => {
            let mk = m!(KeyAttr::Ipv6(x) => *x);
            in6(s, "src", &k.src, mk.as_ref().map(|m| &m.src));
            in6(s, "dst", &k.dst, mk.as_ref().map(|m| &m.dst));
            let ml = mk.map(|m| m.label);
            field(
                s,
                "label",
                ml == Some(0),
                ml.is_none_or(|m| m & 0x000f_ffff == 0x000f_ffff),
                &hx(k.label),
                &hx(ml.unwrap_or(0)),
            );
            u8u(s, "proto", k.proto, mk.map(|m| m.proto));
            u8x(s, "tclass", k.tclass, mk.map(|m| m.tclass));
            u8u(s, "hlimit", k.hlimit, mk.map(|m| m.hlimit));
            frag(s, k.frag, mk.map(|m| m.frag));
            chomp(s);
        }
        KeyAttr::Tcp(p) | KeyAttr::Udp(p) | KeyAttr::Sctp(p) => {
            let mp = m!(KeyAttr::Tcp(x) | KeyAttr::Udp(x) | KeyAttr::Sctp(x) => *x);
            be16(s, "src", p.src, mp.map(|m| m.src));
            be16(s, "dst", p.dst, mp.map(|m| m.dst));
            chomp(s);
        }
        KeyAttr::TcpFlags(f) => {
            if !exact {
                let mf = m!(KeyAttr::TcpFlags(x) => *x).unwrap_or(0);
                flags_masked(s, tcp_flag_name, *f as u32, (mf & 0x0fff) as u32, 0x0fff);
            } else {
                flags(s, tcp_flag_name, *f as u32);
            }
        }
        KeyAttr::Icmp { icmp_type, code } | KeyAttr::Icmpv6 { icmp_type, code } => {
            let mi = m!(KeyAttr::Icmp { icmp_type, code } | KeyAttr::Icmpv6 { icmp_type, code } => (*icmp_type, *code));
            u8u(s, "type", *icmp_type, mi.map(|m| m.0));
            u8u(s, "code", *code, mi.map(|m| m.1));
            chomp(s);
        }
        KeyAttr::Arp(k) => {
            let mk = m!(KeyAttr::Arp(x) => *x);
            ipv4(s, "sip", k.sip, mk.map(|m| m.sip));
            ipv4(s, "tip", k.tip, mk.map(|m| m.tip));
            be16(s, "op", k.op, mk.map(|m| m.op));
            eth(s, "sha", &k.sha, mk.as_ref().map(|m| &m.sha));
            eth(s, "tha", &k.tha, mk.as_ref().map(|m| &m.tha));
            chomp(s);
        }
        KeyAttr::Nd(k) => {
            let mk = m!(KeyAttr::Nd(x) => *x);
            in6(s, "target", &k.target, mk.as_ref().map(|m| &m.target));
            eth(s, "sll", &k.sll, mk.as_ref().map(|m| &m.sll));
            eth(s, "tll", &k.tll, mk.as_ref().map(|m| &m.tll));
            chomp(s);
        }
        KeyAttr::Other(_, v) => {
            s.push_str(&hex::encode(v));
            if !exact {
                if let Some(m) = ma {
                    let _ = write!(s, "/{}", hex::encode(payload(m)));
                }
            }
        }
    }
    s.push(')');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::*;

    fn tcp() -> Flow {
        Flow {
            in_port: 1,
            dl_src: [0x02, 0, 0, 0, 0, 1],
            dl_dst: [0x02, 0, 0, 0, 0, 2],
            dl_type: ETH_TYPE_IP,
            nw_src: 0x0a00_0001,
            nw_dst: 0x0a00_0002,
            nw_proto: IPPROTO_TCP,
            nw_ttl: 64,
            tp_src: 1,
            tp_dst: 80,
            ..Flow::default()
        }
    }

    fn exact() -> Flow {
        let mut m = Flow::default();
        for w in m.words_mut() {
            *w = u64::MAX;
        }
        m
    }

    #[test]
    fn brief_example_with_partial_dst_mask() {
        let mut mask = exact();
        mask.nw_dst = 0xffff_ff00;
        mask.tcp_flags = 0;
        mask.dp_hash = 0;
        mask.skb_priority = 0;
        mask.pkt_mark = 0;
        assert_eq!(
            format_odp_flow(&tcp(), &mask),
            "recirc_id(0),in_port(1),eth(src=02:00:00:00:00:01,dst=02:00:00:00:00:02),\
             eth_type(0x0800),ipv4(src=10.0.0.1,dst=10.0.0.0/255.255.255.0,proto=6,tos=0,ttl=64,frag=no),\
             tcp(src=1,dst=80)"
        );
    }

    #[test]
    fn wildcarded_eth_prints_eth_and_zero_fields_vanish() {
        let mask = Flow {
            recirc_id: u32::MAX,
            dl_type: u16::MAX,
            nw_frag: FLOW_NW_FRAG_MASK,
            tp_dst: 0xfff0,
            nw_proto: u8::MAX,
            ..Flow::default()
        };
        assert_eq!(
            format_odp_flow(&tcp(), &mask),
            "recirc_id(0),in_port(1),eth(),eth_type(0x0800),ipv4(proto=6,frag=no),tcp(dst=80/0xfff0)"
        );
    }

    #[test]
    fn vlan_tcp_flags_and_metadata() {
        let mut key = tcp();
        key.vlans[0] = FlowVlan {
            tpid: ETH_TYPE_VLAN_8021Q,
            tci: VLAN_CFI | 10,
        };
        key.tcp_flags = 0x012;
        key.recirc_id = 5;
        let mask = Flow {
            recirc_id: u32::MAX,
            dl_type: u16::MAX,
            vlans: [
                FlowVlan {
                    tpid: 0,
                    tci: VLAN_CFI | VLAN_VID_MASK,
                },
                FlowVlan::default(),
            ],
            nw_proto: u8::MAX,
            tcp_flags: 0x012,
            pkt_mark: 0xff,
            ..Flow::default()
        };
        assert_eq!(
            format_odp_flow(&key, &mask),
            "recirc_id(0x5),in_port(1),skb_mark(0/0xff),eth(),eth_type(0x8100),vlan(vid=10),\
             encap(eth_type(0x0800),ipv4(proto=6),tcp_flags(+syn+ack))"
        );
    }

    #[test]
    fn arp_nd_and_ipv6_addresses() {
        let arp = Flow {
            in_port: 2,
            dl_type: ETH_TYPE_ARP,
            nw_src: 0x0a00_0001,
            nw_dst: 0x0a00_0002,
            nw_proto: 1,
            ..Flow::default()
        };
        let mask = Flow {
            dl_type: u16::MAX,
            nw_dst: u32::MAX,
            nw_proto: u8::MAX,
            ..Flow::default()
        };
        assert_eq!(
            format_odp_flow(&arp, &mask),
            "in_port(2),eth(),eth_type(0x0806),arp(tip=10.0.0.2,op=1/0xff)"
        );
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 0x01;
        a[2] = 0x0d;
        a[3] = 0xb8;
        a[15] = 1;
        assert_eq!(crate::format::ipv6(&a), "2001:db8::1");
        assert_eq!(crate::format::ipv6(&[0; 16]), "::");
        let mut l = [0u8; 16];
        l[15] = 1;
        assert_eq!(crate::format::ipv6(&l), "::1");
        let mut m = [0u8; 16];
        m[10] = 0xff;
        m[11] = 0xff;
        m[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(crate::format::ipv6(&m), "::ffff:1.2.3.4");
        let mut c = [0u8; 16];
        c[12..].copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(crate::format::ipv6(&c), "::1.2.3.4");
        assert_eq!(
            crate::format::ipv6(&[0xff; 16]),
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
        );
        let mut e = [0u8; 16];
        e[0] = 0xfe;
        e[1] = 0x80;
        assert_eq!(crate::format::ipv6(&e), "fe80::");
        let mut g = [0u8; 16];
        g[1] = 1;
        g[15] = 1;
        g[7] = 1;
        assert_eq!(crate::format::ipv6(&g), "1:0:0:1::1");
    }

    #[test]
    fn key_without_mask_prints_everything() {
        let s = format_odp_attrs(&crate::netlink::key_to_attrs(&tcp()), None);
        assert!(
            s.starts_with("recirc_id(0),skb_priority(0),in_port(1),skb_mark(0),eth(src="),
            "{s}"
        );
        assert!(s.ends_with("tcp(src=1,dst=80),tcp_flags(0)"), "{s}");
        assert_eq!(format_odp_attrs(&[], None), "<empty>");
    }
}
