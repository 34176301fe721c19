//! The match part of a rule: its fields and values, checked against their
//! prerequisites and normalized as OVS normalizes a match.

use super::*;

/// The protocol shorthands and what they match: (name, dl_type, nw_proto).
pub(crate) const PROTOCOLS: &[(&str, u16, u8)] = &[
    ("ip", ETH_TYPE_IP, 0),
    ("ipv4", ETH_TYPE_IP, 0),
    ("ip4", ETH_TYPE_IP, 0),
    ("arp", ETH_TYPE_ARP, 0),
    ("icmp", ETH_TYPE_IP, IPPROTO_ICMP),
    ("tcp", ETH_TYPE_IP, IPPROTO_TCP),
    ("udp", ETH_TYPE_IP, IPPROTO_UDP),
    ("sctp", ETH_TYPE_IP, IPPROTO_SCTP),
    ("ipv6", ETH_TYPE_IPV6, 0),
    ("ip6", ETH_TYPE_IPV6, 0),
    ("icmp6", ETH_TYPE_IPV6, IPPROTO_ICMPV6),
    ("tcp6", ETH_TYPE_IPV6, IPPROTO_TCP),
    ("udp6", ETH_TYPE_IPV6, IPPROTO_UDP),
    ("sctp6", ETH_TYPE_IPV6, IPPROTO_SCTP),
    ("rarp", ETH_TYPE_RARP, 0),
    ("mpls", ETH_TYPE_MPLS, 0),
    ("mplsm", ETH_TYPE_MPLS_MCAST, 0),
];

/// Keys `ovs-ofctl` accepts on a rule and that change nothing here.
pub(super) const IGNORED_KEYS: &[&str] = &[
    "send_flow_rem",
    "check_overlap",
    "reset_counts",
    "no_packet_counts",
    "no_byte_counts",
    "no_readonly_table",
    "allow_hidden_fields",
    "importance",
    "duration",
    "n_packets",
    "n_bytes",
    "idle_age",
    "hard_age",
];

/// A match field as the rule wrote it, for prerequisite errors.
pub(super) struct Written<'a> {
    info: &'static FieldInfo,
    at: usize,
    text: &'a str,
}

pub(super) fn item_text<'a>(line: &'a str, kv: &KeyValue<'a>) -> &'a str {
    let end = (kv.value_at + kv.value.len()).max(kv.key_at + kv.key.len());
    &line[kv.key_at..end.min(line.len())]
}

pub(super) fn parse_match_item<'a>(
    fm: &mut FlowMod,
    written: &mut Vec<Written<'a>>,
    line: &'a str,
    kv: KeyValue<'a>,
) -> Res<()> {
    use FlowModCommand::*;
    let key = kv.key;
    let command = fm.command;
    if key == "reset_counts" {
        fm.reset_counts = true;
        return Ok(());
    }
    let rule = fm;
    if let Some(&(_, dl_type, nw_proto)) = PROTOCOLS.iter().find(|(n, _, _)| *n == key) {
        rule.matches.set_field(Field::EthType, u128::from(dl_type));
        if nw_proto != 0 {
            rule.matches.set_field(Field::IpProto, u128::from(nw_proto));
            // A later dl_type may take this protocol's prerequisites away.
            written.push(Written {
                info: field::by_field(Field::IpProto),
                at: kv.key_at,
                text: key,
            });
        }
        return Ok(());
    }
    if key == "eth" || IGNORED_KEYS.contains(&key) {
        return Ok(());
    }
    if let Some(why) = field::unmapped_tun_metadata(key) {
        return Err(err(kv.key_at, why, key, "a mapped tun_metadataN"));
    }
    if let Some(info) = field::by_name(key) {
        let value = if kv.value.is_empty() { "0/0" } else { kv.value };
        let (v, m) = parse_field_value(info, value).map_err(|e| {
            err(
                kv.value_at,
                format!("bad value for {key}"),
                kv.value,
                e.expected,
            )
        })?;
        check_value_fits(info, v, kv.value_at, key, kv.value)?;
        if info.field == Field::SkbPriority {
            return Err(err(
                kv.key_at,
                "skb_priority cannot be matched in OpenFlow 1.3",
                item_text(line, &kv),
                "a field OpenFlow 1.3 can match",
            ));
        }
        if matches!(info.field, Field::TunTos | Field::TunTtl) {
            return Err(err(
                kv.key_at,
                format!("{key} cannot be matched in OpenFlow (it has no NXM or OXM code)"),
                item_text(line, &kv),
                "a field OpenFlow can match",
            ));
        }
        set_match_field(&mut rule.matches, info, v, m);
        written.push(Written {
            info,
            at: kv.key_at,
            text: item_text(line, &kv),
        });
        return Ok(());
    }
    if key.contains('[') {
        let sf = parse_subfield(key).map_err(|e| err(kv.key_at, "bad subfield", key, e))?;
        let bytes = u32::from(sf.info.n_bytes) * 8;
        let value = parse_uint(kv.value, bytes).ok_or_else(|| {
            err(
                kv.value_at,
                format!("bad value for {key}"),
                kv.value,
                "an integer",
            )
        })?;
        if value > ones(sf.n_bits) {
            return Err(err(
                kv.value_at,
                format!("bad value for {key}"),
                kv.value,
                format!("a value that fits into {} bits", sf.n_bits),
            ));
        }
        let mask = ones(sf.n_bits) << sf.ofs;
        let m = &mut rule.matches;
        let f = sf.info.field;
        let old_mask = f.get(&m.mask);
        let old_value = f.get(&m.flow);
        m.set_field_masked(f, (old_value & !mask) | (value << sf.ofs), old_mask | mask);
        written.push(Written {
            info: sf.info,
            at: kv.key_at,
            text: item_text(line, &kv),
        });
        return Ok(());
    }
    if kv.value.is_empty() {
        return Err(err(
            kv.key_at,
            format!("field {key} missing value"),
            key,
            "a match field, a protocol (ip, tcp, ...) or key=value",
        ));
    }
    let bad = |what: &str, expected: &str| {
        err(kv.value_at, format!("invalid {what}"), kv.value, expected)
    };
    // The keywords each command takes, as `ovs-ofctl` takes them.
    let takes = match key {
        "priority" => command != Delete,
        "idle_timeout" | "hard_timeout" => matches!(command, Add | Modify | ModifyStrict),
        "out_port" => matches!(command, Delete | DeleteStrict),
        _ => true,
    };
    if !takes {
        let expected = match key {
            "priority" => "a match field (priority only with --strict)",
            "out_port" => "a match field (out_port only when deleting)",
            _ => "a match field (timeouts only when adding or modifying)",
        };
        return Err(err(
            kv.key_at,
            format!("unknown keyword {key}"),
            item_text(line, &kv),
            expected,
        ));
    }
    match key {
        "table" => {
            let t = parse_decimal(kv.value)
                .filter(|t| *t < N_TABLES as u64)
                .ok_or_else(|| bad("table", "a table number from 0 to 254"))?;
            rule.table = Some(t as u8);
        }
        "priority" => {
            rule.priority = parse_uint(kv.value, 16)
                .ok_or_else(|| bad("priority", "an integer from 0 to 65535"))?
                as u16;
        }
        "out_port" => {
            rule.out_port = Some(
                parse_port(kv.value)
                    .ok_or_else(|| bad("out_port", "a port number or name (LOCAL, CONTROLLER, ...)"))?,
            );
        }
        "idle_timeout" => {
            rule.idle_timeout = parse_uint(kv.value, 16)
                .ok_or_else(|| bad("idle_timeout", "seconds from 0 to 65535"))?
                as u16;
        }
        "hard_timeout" => {
            rule.hard_timeout = parse_uint(kv.value, 16)
                .ok_or_else(|| bad("hard_timeout", "seconds from 0 to 65535"))?
                as u16;
        }
        "cookie" => {
            let cookie = |s: &str| {
                parse_uint(s, 64)
                    .map(|v| v as u64)
                    .ok_or_else(|| bad("cookie", "a 64-bit integer"))
            };
            if let Some((value, mask)) = kv.value.split_once('/') {
                if command == Add {
                    return Err(err(
                        kv.value_at,
                        "flow additions cannot use a cookie mask",
                        kv.value,
                        "a cookie without /mask",
                    ));
                }
                rule.cookie = cookie(value)?;
                rule.cookie_mask = cookie(mask)?;
            } else {
                if matches!(command, Delete | DeleteStrict) {
                    return Err(err(
                        kv.value_at,
                        "cannot set cookie",
                        kv.value,
                        "cookie=VALUE/MASK (a delete selects by cookie, it sets none)",
                    ));
                }
                rule.new_cookie = Some(cookie(kv.value)?);
            }
        }
        _ => {
            return Err(err(
                kv.key_at,
                "unknown field",
                key,
                "a match field, a protocol (ip, tcp, ...), table, priority, cookie, idle_timeout, hard_timeout or out_port",
            ))
        }
    }
    Ok(())
}

/// Parses all of `s` as a decimal number, as OVS parses table numbers.
pub(super) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Values wider than the field are refused (OVS would truncate some of
/// them silently); `dl_vlan=0xffff` is OpenFlow 1.0's "no VLAN".
pub(super) fn check_value_fits(
    info: &FieldInfo,
    v: u128,
    at: usize,
    key: &str,
    text: &str,
) -> Res<()> {
    let fits = match info.syntax {
        Syntax::Port | Syntax::Frag | Syntax::TcpFlags | Syntax::CtState | Syntax::TunFlags => true,
        _ if info.field == Field::DlVlan => v <= 0xfff || v == 0xffff,
        _ => v <= info.bit_mask(),
    };
    if fits {
        Ok(())
    } else {
        Err(err(
            at,
            format!("bad value for {key}"),
            text,
            format!(
                "a value that fits the {}-bit field {}",
                info.n_bits, info.name
            ),
        ))
    }
}

/// Adds `info == value/mask` to a rule's match the way OVS's `mf_set`
/// does: a zero mask wildcards the field again, VLAN fields mark the tag
/// present, `nw_tos` matches only its DSCP bits, ICMP type and code use
/// the whole 16-bit port fields.
pub(crate) fn set_match_field(m: &mut Match, info: &FieldInfo, value: u128, mask: u128) {
    let field = info.field;
    if mask == 0 {
        field.set_masked(&mut m.mask, 0, field.full_mask());
        field.set_masked(&mut m.flow, 0, field.full_mask());
        return;
    }
    let exact = mask == exact_mask(info);
    let (v8, v16) = (value as u8, value as u16);
    match field {
        Field::DlVlan => {
            if v16 == 0xffff {
                m.flow.vlans[0].tci = 0;
                m.mask.vlans[0].tci = 0xffff;
            } else {
                let tci = &mut m.flow.vlans[0].tci;
                *tci = (*tci & !VLAN_VID_MASK) | VLAN_CFI | (v16 & VLAN_VID_MASK);
                m.mask.vlans[0].tci |= VLAN_VID_MASK | VLAN_CFI;
            }
        }
        Field::VlanPcp => {
            let tci = &mut m.flow.vlans[0].tci;
            *tci = (*tci & !VLAN_PCP_MASK) | ((v16 & 7) << VLAN_PCP_SHIFT) | VLAN_CFI;
            m.mask.vlans[0].tci |= VLAN_PCP_MASK | VLAN_CFI;
        }
        Field::VlanVid => {
            let vid_mask = if exact { 0x1fff } else { mask as u16 & 0x1fff };
            let tci = &mut m.flow.vlans[0].tci;
            *tci = (*tci & !0x1fff) | (v16 & vid_mask);
            let mt = &mut m.mask.vlans[0].tci;
            *mt = vid_mask | (*mt & VLAN_PCP_MASK);
        }
        Field::VlanTci => {
            let mask = if exact { 0xffff } else { mask as u16 };
            m.flow.vlans[0].tci = v16 & mask;
            m.mask.vlans[0].tci = mask;
        }
        Field::NwTos | Field::IpDscp => {
            let dscp = if field == Field::IpDscp {
                v8 << 2
            } else {
                v8 & 0xfc
            };
            m.flow.nw_tos = (m.flow.nw_tos & 0x03) | dscp;
            m.mask.nw_tos |= 0xfc;
        }
        Field::IpEcn => {
            m.flow.nw_tos = (m.flow.nw_tos & 0xfc) | (v8 & 0x03);
            m.mask.nw_tos |= 0x03;
        }
        Field::IpFrag => {
            let mask = mask as u8 & FLOW_NW_FRAG_MASK;
            m.flow.nw_frag = v8 & mask;
            m.mask.nw_frag = mask;
        }
        Field::TcpFlags => {
            let mask = mask as u16 & 0x0fff;
            m.flow.tcp_flags = v16 & mask;
            m.mask.tcp_flags = mask;
        }
        Field::IcmpType | Field::Icmpv6Type => {
            m.flow.tp_src = u16::from(v8);
            m.mask.tp_src = 0xffff;
        }
        Field::IcmpCode | Field::Icmpv6Code => {
            m.flow.tp_dst = u16::from(v8);
            m.mask.tp_dst = 0xffff;
        }
        Field::ArpOp => {
            m.flow.nw_proto = v8;
            m.mask.nw_proto = 0xff;
        }
        _ if exact => m.set_field(field, value),
        _ => m.set_field_masked(field, value, mask),
    }
}

/// Which fields a rule's dl_type and nw_proto let it match: what OVS keeps
/// when it normalizes a match and encodes it as OXM.
pub(super) fn match_prereq(m: &Match, field: Field) -> Option<&'static str> {
    let f = &m.flow;
    let dl = if m.mask.dl_type == 0xffff {
        f.dl_type
    } else {
        0
    };
    let ip = dl == ETH_TYPE_IP;
    let ip6 = dl == ETH_TYPE_IPV6;
    let arp = dl == ETH_TYPE_ARP || dl == ETH_TYPE_RARP;
    let proto = if m.mask.nw_proto == 0xff {
        f.nw_proto
    } else {
        0
    };
    // Later fragments are refused separately (see `normalize_match`).
    let l4 = true;
    let icmp6 = ip6 && proto == IPPROTO_ICMPV6;
    let nd = icmp6 && f.tp_dst == 0;
    use Field::*;
    let (ok, needs) = match field {
        Ipv4Src | Ipv4Dst | ArpSpa | ArpTpa => (ip || arp, "ip (or dl_type=0x0800), arp or rarp"),
        Ipv6Src | Ipv6Dst | Ipv6Label => (ip6, "ipv6 (or dl_type=0x86dd)"),
        IpProto | ArpOp => (ip || ip6 || arp, "ip, ipv6, arp or rarp"),
        NwTos | IpDscp | IpEcn | IpTtl | IpFrag => (ip || ip6, "ip or ipv6"),
        TcpSrc | TcpDst | UdpSrc | UdpDst | SctpSrc | SctpDst | IcmpType | IcmpCode
        | Icmpv6Type | Icmpv6Code => (
            l4 && ((ip || ip6) && matches!(proto, IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP)
                || ip && proto == IPPROTO_ICMP)
                || icmp6,
            "tcp, udp, sctp, icmp or their IPv6 forms (tcp6, udp6, sctp6, icmp6), and not nw_frag=later",
        ),
        TcpFlags => (l4 && (ip || ip6) && proto == IPPROTO_TCP, "tcp or tcp6, and not nw_frag=later"),
        ArpSha | ArpTha | NdSll | NdTll => {
            let nd_type = if matches!(field, ArpSha | NdSll) {
                ND_NEIGHBOR_SOLICIT
            } else {
                ND_NEIGHBOR_ADVERT
            };
            (
                arp || nd && f.tp_src == nd_type,
                if matches!(field, ArpSha | NdSll) {
                    "arp, or icmp6 with icmp_type=135 and icmp_code=0"
                } else {
                    "arp, or icmp6 with icmp_type=136 and icmp_code=0"
                },
            )
        }
        NdTarget => (
            nd && matches!(f.tp_src, ND_NEIGHBOR_SOLICIT | ND_NEIGHBOR_ADVERT),
            "icmp6 with icmp_type=135 or 136 and icmp_code=0",
        ),
        MplsLabel | MplsTc | MplsBos | MplsTtl => (eth_type_mpls(dl), "mpls or mplsm"),
        // OVS encodes the original direction's ports only beside its
        // protocol.
        CtTpSrc | CtTpDst => (m.mask.ct_nw_proto != 0, "ct_nw_proto"),
        _ => (true, ""),
    };
    (!ok).then_some(needs)
}

/// OVS's match normalization: a field whose prerequisites the rule does
/// not match is dropped and the rest installed (ovs-ofctl only logs it),
/// except transport ports and TCP flags on later fragments, which the
/// switch refuses (OFPBMC_BAD_PREREQ).
pub(super) fn normalize_match(
    m: &mut Match,
    written: &[Written<'_>],
    line: &str,
) -> Res<Vec<Dropped>> {
    let original = *m;
    check_conntrack_match(&original, written)?;
    let mut dropped = Vec::new();
    for w in written {
        let field = w.info.field;
        if field.get(&original.mask) == 0 {
            continue;
        }
        if let Some(needs) = match_prereq(&original, field) {
            field.set(&mut m.mask, 0);
            field.set(&mut m.flow, 0);
            dropped.push(Dropped {
                column: line[..w.at.min(line.len())].chars().count() + 1,
                text: w.text.to_string(),
                needs,
            });
        }
    }
    if m.flow.nw_frag & FLOW_NW_FRAG_LATER == 0 {
        return Ok(dropped);
    }
    use Field::*;
    for w in written {
        let field = w.info.field;
        let l4 = matches!(
            field,
            TcpSrc | TcpDst | UdpSrc | UdpDst | SctpSrc | SctpDst | TcpFlags
        );
        if l4 && field.get(&m.mask) != 0 {
            return Err(err(
                w.at,
                format!(
                    "{}: prerequisites not met",
                    w.text.split(['=', ':']).next().unwrap_or(w.text)
                ),
                w.text,
                "no transport ports or TCP flags together with nw_frag=later (a later fragment has no L4 header)".to_string(),
            ));
        }
    }
    Ok(dropped)
}

/// What the switch refuses in a match on conntrack fields: the
/// original-direction tuple without a `ct_state` that implies a valid
/// connection (OVS's `is_ct_valid` on a match), or without the IP version
/// it belongs to; and `recirc_id`, which only the switch's own
/// recirculation sets (OFPBRC_EPERM).
pub(super) fn check_conntrack_match(m: &Match, written: &[Written<'_>]) -> Res<()> {
    use Field::*;
    let (f, w) = (&m.flow, &m.mask);
    let ct_valid = f.ct_state
        & (CS_NEW | CS_ESTABLISHED | CS_RELATED | CS_REPLY_DIR | CS_SRC_NAT | CS_DST_NAT)
        != 0
        || f.ct_state & CS_TRACKED != 0
            && w.ct_state & CS_INVALID != 0
            && f.ct_state & CS_INVALID == 0;
    let dl = if w.dl_type == 0xffff { f.dl_type } else { 0 };
    for wr in written {
        let field = wr.info.field;
        if field.get(w) == 0 {
            continue;
        }
        let name = wr.text.split(['=', ':']).next().unwrap_or(wr.text);
        if field == RecircId {
            return Err(err(
                wr.at,
                "recirc_id: the switch refuses rules that match it (OFPBRC_EPERM)",
                wr.text,
                "no recirc_id: recirculation ids are the switch's own",
            ));
        }
        if !matches!(
            field,
            CtNwSrc | CtNwDst | CtIpv6Src | CtIpv6Dst | CtNwProto | CtTpSrc | CtTpDst
        ) {
            continue;
        }
        if !ct_valid {
            return Err(err(
                wr.at,
                format!("{name}: prerequisites not met (OFPBMC_BAD_PREREQ)"),
                wr.text,
                "a ct_state match implying a tracked connection (+new, +est, +rel, +rpl, +snat, +dnat, or +trk-inv)",
            ));
        }
        let family = match field {
            CtNwSrc | CtNwDst => Some((ETH_TYPE_IP, "ip (dl_type=0x0800)")),
            CtIpv6Src | CtIpv6Dst => Some((ETH_TYPE_IPV6, "ipv6 (dl_type=0x86dd)")),
            _ => None,
        };
        if let Some((_, needs)) = family.filter(|(t, _)| dl != *t) {
            return Err(err(
                wr.at,
                format!("{name}: prerequisites not met (OFPBAC_MATCH_INCONSISTENT)"),
                wr.text,
                format!("{needs} in the rule's match"),
            ));
        }
    }
    Ok(())
}

/// OpenFlow 1.3 sends a PCP match as `vlan_pcp`, which requires the
/// tag-present bit; a match on PCP bits with a nonzero VID and that bit
/// clear is refused by the switch.
pub(super) fn check_vlan_pcp(m: &Match, written: &[Written<'_>]) -> Res<()> {
    let (tci, mask) = (m.flow.vlans[0].tci, m.mask.vlans[0].tci);
    if mask & VLAN_PCP_MASK == 0 || tci & (VLAN_VID_MASK | VLAN_CFI) == 0 || tci & VLAN_CFI != 0 {
        return Ok(());
    }
    let w = written
        .iter()
        .rev()
        .find(|w| matches!(w.info.field, Field::VlanTci | Field::VlanVid))
        .or(written.last());
    let (at, text) = w.map_or((0, ""), |w| (w.at, w.text));
    Err(err(
        at,
        "a VLAN PCP match needs the tag-present bit 0x1000",
        text,
        "vlan_tci with 0x1000 set in value and mask, or dl_vlan/dl_vlan_pcp",
    ))
}

/// The switch holds a match as it decodes it from OpenFlow 1.3, which
/// loses what OXM cannot say; apply that round trip here.
///
/// OpenFlow 1.3 carries the VLAN match as `vlan_vid` (VID and "present"
/// bit, maskable) plus an exact `vlan_pcp` that is sent only when the VID
/// part is nonzero.
pub(super) fn of13_round_trip(m: &mut Match) {
    of13_vlan_round_trip(m);
    // ICMP type and code travel as exact 8-bit fields.
    let f = &m.flow;
    let icmp = f.dl_type == ETH_TYPE_IP && f.nw_proto == IPPROTO_ICMP
        || f.dl_type == ETH_TYPE_IPV6 && f.nw_proto == IPPROTO_ICMPV6;
    if icmp && m.mask.nw_proto == 0xff {
        for (v, mask) in [
            (&mut m.flow.tp_src, &mut m.mask.tp_src),
            (&mut m.flow.tp_dst, &mut m.mask.tp_dst),
        ] {
            if *mask != 0 {
                *v &= 0xff;
                *mask = 0xffff;
            }
        }
    }
}

pub(super) fn of13_vlan_round_trip(m: &mut Match) {
    let tci = m.flow.vlans[0].tci;
    let mask = m.mask.vlans[0].tci;
    let vid = tci & (VLAN_VID_MASK | VLAN_CFI);
    let vid_mask = mask & (VLAN_VID_MASK | VLAN_CFI);
    let (mut new_tci, mut new_mask) = (vid & vid_mask, vid_mask);
    if vid != 0 && mask & VLAN_PCP_MASK != 0 {
        new_tci |= (tci & VLAN_PCP_MASK) | VLAN_CFI;
        new_mask |= VLAN_PCP_MASK | VLAN_CFI;
    }
    m.flow.vlans[0].tci = new_tci;
    m.mask.vlans[0].tci = new_mask;
}

/// A field, or the bits `ofs..ofs+n_bits` of it (`NXM_NX_REG0[0..7]`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Subfield {
    pub(crate) info: &'static FieldInfo,
    pub(crate) ofs: u32,
    pub(crate) n_bits: u32,
}

impl Subfield {
    /// The subfield as actions carry it.
    pub(crate) fn bits(&self) -> crate::learn::Subfield {
        crate::learn::Subfield {
            field: self.info.field,
            ofs: self.ofs as u8,
            n_bits: self.n_bits as u8,
        }
    }
}

/// Parses `NAME`, `NAME[]`, `NAME[bit]` or `NAME[start..end]` (OVS's
/// `mf_parse_subfield`); NAME is an NXM/OXM name or a field name.
pub(crate) fn parse_subfield(s: &str) -> Result<Subfield, String> {
    let name_len = s.find(['[', '-']).unwrap_or(s.len());
    let name = &s[..name_len];
    if let Some(why) = field::unmapped_tun_metadata(name) {
        return Err(why);
    }
    let info =
        field::by_subfield_name(name).ok_or_else(|| format!("a known field name, not `{name}'"))?;
    let n = info.subfield_bits();
    let rest = &s[name_len..];
    let (start, end, used) = if rest.is_empty() {
        (0, n - 1, 0)
    } else if rest.starts_with("[]") {
        (0, n - 1, 2)
    } else {
        let close = rest.find(']').ok_or("[], [bit] or [start..end]")?;
        let inside = &rest[1..close];
        let bits = match inside.split_once("..") {
            Some((a, b)) => a.parse::<u32>().ok().zip(b.parse::<u32>().ok()),
            None => inside.parse::<u32>().ok().map(|a| (a, a)),
        };
        let (a, b) = bits.ok_or("[], [bit] or [start..end]")?;
        (a, b, close + 1)
    };
    if used != rest.len() {
        return Err("nothing after the field's bit range".into());
    }
    if start > end {
        return Err(format!(
            "a start bit not after the end bit ({start} > {end})"
        ));
    }
    if end >= n {
        return Err(format!("bits within the {n}-bit field {}", info.name));
    }
    Ok(Subfield {
        info,
        ofs: start,
        n_bits: end - start + 1,
    })
}
