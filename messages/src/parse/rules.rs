//! OpenFlow rules in `ovs-ofctl add-flows` syntax, encoded the way
//! `ovs-ofctl -O OpenFlow13` encodes them (OVS's `parse_ofp_str`,
//! `ofpacts_parse_instructions` and `ofpacts_check`).
//!
//! Where OVS would silently drop part of a rule, this parser refuses it
//! instead: a match field whose prerequisites the rule does not meet
//! (`tp_dst=80` without `tcp`, `udp` or `sctp`) is an error rather than
//! being normalized away.
//!
//! Accepted and ignored, as `ovs-ofctl` ignores them or as they do not
//! change forwarding: the flags `send_flow_rem`, `check_overlap`,
//! `reset_counts`, `no_packet_counts`, `no_byte_counts`,
//! `no_readonly_table`, `allow_hidden_fields`, `importance=`, and the
//! statistics that `dump-flows` prints (`duration`, `n_packets`,
//! `n_bytes`, `idle_age`, `hard_age`). `apply_actions(...)`, which OVS
//! refuses as redundant, is accepted as a spelling of plain actions.

use std::fmt;

mod ct;

use super::fields::{self, ones, prereqs_hold, FieldInfo, Syntax};
use super::syntax::{
    exact_mask, key_values, parse_field_value, parse_ipv4, parse_mac, parse_port, parse_uint,
    scan_uint, KeyValue,
};
use crate::field::{Field, Prereq};
use crate::flow::*;
use crate::ofp::{
    port, Instructions, Match, NatAction, OfAction, Rule, DEFAULT_PRIORITY, N_TABLES,
};

/// A rule that does not parse: where, what, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The file the text came from, if the caller named it.
    pub file: Option<String>,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters) where the offending text starts.
    pub column: usize,
    /// What went wrong, e.g. `bad value for nw_dst`.
    pub what: String,
    /// The offending text.
    pub text: String,
    /// What would have been accepted there.
    pub expected: String,
}

impl ParseError {
    /// Names the file the text came from, for the message.
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        write!(
            f,
            "{}:{}: {}: {:?}: expected {}",
            self.line, self.column, self.what, self.text, self.expected
        )
    }
}

impl std::error::Error for ParseError {}

/// An error located by byte offset in the line being parsed.
struct LineError {
    at: usize,
    what: String,
    text: String,
    expected: String,
}

type Res<T> = Result<T, LineError>;

fn err(at: usize, what: impl Into<String>, text: &str, expected: impl Into<String>) -> LineError {
    LineError {
        at,
        what: what.into(),
        text: text.to_string(),
        expected: expected.into(),
    }
}

impl LineError {
    fn locate(self, line_text: &str, line: usize) -> ParseError {
        let at = self.at.min(line_text.len());
        let column = line_text
            .char_indices()
            .take_while(|(i, _)| *i < at)
            .count()
            + 1;
        ParseError {
            file: None,
            line,
            column,
            what: self.what,
            text: self.text,
            expected: self.expected,
        }
    }
}

/// Parses one rule (one line of an `add-flows` file, without the line
/// break). A `#` starts a comment.
pub fn parse_rule(line: &str) -> Result<Rule, ParseError> {
    let text = strip_comment(line);
    parse_line(text).map_err(|e| e.locate(line, 1))
}

/// Parses a file of rules, one per line; blank lines and `#` comments are
/// skipped. Stops at the first error.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, ParseError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = strip_comment(line);
        if body.trim().is_empty() {
            continue;
        }
        rules.push(parse_line(body).map_err(|e| e.locate(line, i + 1))?);
    }
    Ok(rules)
}

fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("")
}

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
const IGNORED_KEYS: &[&str] = &[
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
struct Written<'a> {
    info: &'static FieldInfo,
    at: usize,
    text: &'a str,
}

fn parse_line(line: &str) -> Res<Rule> {
    // OVS takes everything after the first "action" as the actions.
    let Some(action_at) = line.find("action") else {
        return Err(err(
            line.len() - line.trim_start().len(),
            "must specify an action",
            line.trim(),
            "actions=... at the end of the rule",
        ));
    };
    let after = &line[action_at..];
    let Some(eq) = after.find('=') else {
        return Err(err(
            action_at,
            "must specify an action",
            after,
            "actions=...",
        ));
    };
    let actions_at = action_at + eq + 1;
    let actions_text = &line[actions_at..];

    let mut rule = Rule {
        table: 0,
        priority: DEFAULT_PRIORITY,
        cookie: 0,
        idle_timeout: 0,
        hard_timeout: 0,
        matches: Match::catchall(),
        instructions: Instructions::default(),
    };
    let mut written: Vec<Written<'_>> = Vec::new();
    for kv in key_values(&line[..action_at], 0) {
        parse_match_item(&mut rule, &mut written, line, kv)?;
    }
    normalize_match(&mut rule.matches, &written)?;
    check_vlan_pcp(&rule.matches, &written)?;
    rule.instructions = parse_instructions(actions_text, actions_at, &rule)?;
    of13_round_trip(&mut rule.matches);
    Ok(rule)
}

fn item_text<'a>(line: &'a str, kv: &KeyValue<'a>) -> &'a str {
    let end = (kv.value_at + kv.value.len()).max(kv.key_at + kv.key.len());
    &line[kv.key_at..end.min(line.len())]
}

fn parse_match_item<'a>(
    rule: &mut Rule,
    written: &mut Vec<Written<'a>>,
    line: &'a str,
    kv: KeyValue<'a>,
) -> Res<()> {
    let key = kv.key;
    if let Some(&(_, dl_type, nw_proto)) = PROTOCOLS.iter().find(|(n, _, _)| *n == key) {
        rule.matches.set_field(Field::EthType, u128::from(dl_type));
        if nw_proto != 0 {
            rule.matches.set_field(Field::IpProto, u128::from(nw_proto));
            // A later dl_type may take this protocol's prerequisites away.
            written.push(Written {
                info: fields::by_field(Field::IpProto),
                at: kv.key_at,
                text: key,
            });
        }
        return Ok(());
    }
    if key == "eth" || IGNORED_KEYS.contains(&key) {
        return Ok(());
    }
    if let Some(info) = fields::by_name(key) {
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
    match key {
        "table" => {
            let t = parse_decimal(kv.value)
                .filter(|t| *t < N_TABLES as u64)
                .ok_or_else(|| bad("table", "a table number from 0 to 254"))?;
            rule.table = t as u8;
        }
        "priority" => {
            rule.priority = parse_uint(kv.value, 16)
                .ok_or_else(|| bad("priority", "an integer from 0 to 65535"))?
                as u16;
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
            if kv.value.contains('/') {
                return Err(err(
                    kv.value_at,
                    "flow additions cannot use a cookie mask",
                    kv.value,
                    "a cookie without /mask",
                ));
            }
            rule.cookie = parse_uint(kv.value, 64)
                .ok_or_else(|| bad("cookie", "a 64-bit integer"))? as u64;
        }
        _ => {
            return Err(err(
                kv.key_at,
                "unknown field",
                key,
                "a match field, a protocol (ip, tcp, ...), table, priority, cookie, idle_timeout or hard_timeout",
            ))
        }
    }
    Ok(())
}

/// Parses all of `s` as a decimal number, as OVS parses table numbers.
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Values wider than the field are refused (OVS would truncate some of
/// them silently); `dl_vlan=0xffff` is OpenFlow 1.0's "no VLAN".
fn check_value_fits(info: &FieldInfo, v: u128, at: usize, key: &str, text: &str) -> Res<()> {
    let fits = match info.syntax {
        Syntax::Port | Syntax::Frag | Syntax::TcpFlags | Syntax::CtState => true,
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
fn set_match_field(m: &mut Match, info: &FieldInfo, value: u128, mask: u128) {
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
fn match_prereq(m: &Match, field: Field) -> Option<&'static str> {
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
fn normalize_match(m: &mut Match, written: &[Written<'_>]) -> Res<()> {
    let original = *m;
    check_conntrack_match(&original, written)?;
    for w in written {
        let field = w.info.field;
        if field.get(&original.mask) != 0 && match_prereq(&original, field).is_some() {
            field.set(&mut m.mask, 0);
            field.set(&mut m.flow, 0);
        }
    }
    if m.flow.nw_frag & FLOW_NW_FRAG_LATER == 0 {
        return Ok(());
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
    Ok(())
}

/// What the switch refuses in a match on conntrack fields: the
/// original-direction tuple without a `ct_state` that implies a valid
/// connection (OVS's `is_ct_valid` on a match), or without the IP version
/// it belongs to; and `recirc_id`, which only the switch's own
/// recirculation sets (OFPBRC_EPERM).
fn check_conntrack_match(m: &Match, written: &[Written<'_>]) -> Res<()> {
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
fn check_vlan_pcp(m: &Match, written: &[Written<'_>]) -> Res<()> {
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
fn of13_round_trip(m: &mut Match) {
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

fn of13_vlan_round_trip(m: &mut Match) {
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
struct Subfield {
    info: &'static FieldInfo,
    ofs: u32,
    n_bits: u32,
}

/// Parses `NAME`, `NAME[]`, `NAME[bit]` or `NAME[start..end]` (OVS's
/// `mf_parse_subfield`); NAME is an NXM/OXM name or a field name.
fn parse_subfield(s: &str) -> Result<Subfield, String> {
    let name_len = s.find(['[', '-']).unwrap_or(s.len());
    let name = &s[..name_len];
    let info = fields::by_subfield_name(name)
        .ok_or_else(|| format!("a known field name, not `{name}'"))?;
    let n = u32::from(info.n_bits);
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

// ---- Actions and instructions ----

/// An action or instruction as written, before it is checked against the
/// rule and encoded.
#[derive(Clone, Debug)]
enum Act {
    Output(u32),
    Controller(u16),
    SetField {
        info: &'static FieldInfo,
        value: u128,
        mask: u128,
    },
    Load {
        info: &'static FieldInfo,
        value: u128,
        mask: u128,
    },
    Move {
        src: Subfield,
        dst: Subfield,
    },
    OutputReg(Subfield),
    SetEth(Field, [u8; 6]),
    SetIpv4(Field, u32),
    SetNwTos(u8),
    SetNwEcn(u8),
    SetNwTtl(u8),
    SetTpSrc(u16),
    SetTpDst(u16),
    SetVlanVid {
        vid: u16,
        push_if_needed: bool,
    },
    SetVlanPcp {
        pcp: u8,
        push_if_needed: bool,
    },
    StripVlan,
    PushVlan(u16),
    DecTtl,
    Resubmit {
        in_port: Option<u32>,
        table: Option<u8>,
    },
    ClearActions,
    WriteActions(Vec<Located>),
    WriteMetadata(u64, u64),
    GotoTable(u8),
    Ct(Box<ct::CtArgs>),
    CtClear,
    /// Only valid among `ct`'s nested actions.
    Nat(NatAction),
}

/// An action with the text it came from.
#[derive(Clone, Debug)]
struct Located {
    act: Act,
    at: usize,
    text: String,
}

/// OpenFlow 1.1+ instruction kinds, in the order a rule must give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Inst {
    Apply,
    Clear,
    Write,
    WriteMetadata,
    Goto,
}

impl Inst {
    fn of(act: &Act) -> Inst {
        match act {
            Act::ClearActions => Inst::Clear,
            Act::WriteActions(_) => Inst::Write,
            Act::WriteMetadata(..) => Inst::WriteMetadata,
            Act::GotoTable(_) => Inst::Goto,
            _ => Inst::Apply,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Inst::Apply => "apply_actions",
            Inst::Clear => "clear_actions",
            Inst::Write => "write_actions",
            Inst::WriteMetadata => "write_metadata",
            Inst::Goto => "goto_table",
        }
    }
}

/// Actions OVS knows that have no representation here.
const UNSUPPORTED_ACTIONS: &[&str] = &[
    "group",
    "enqueue",
    "output_reg",
    "bundle",
    "bundle_load",
    "move",
    "push",
    "pop",
    "set_mpls_label",
    "set_mpls_tc",
    "set_mpls_ttl",
    "dec_mpls_ttl",
    "push_mpls",
    "pop_mpls",
    "set_tunnel",
    "set_tunnel64",
    "set_queue",
    "pop_queue",
    "fin_timeout",
    "learn",
    "conjunction",
    "multipath",
    "note",
    "exit",
    "sample",
    "output_trunc",
    "clone",
    "check_pkt_larger",
    "delete_field",
    "encap",
    "decap",
    "dec_nsh_ttl",
    "meter",
];

const SUPPORTED: &str = "an action (output, drop, set_field, load, mod_*, push_vlan, pop_vlan, \
     dec_ttl, resubmit, controller, ct, ct_clear, a port) or instruction (goto_table, write_metadata, \
     write_actions, clear_actions)";

fn parse_instructions(text: &str, base: usize, rule: &Rule) -> Res<Instructions> {
    let acts = parse_action_list(text, base, true)?;
    check_and_encode(acts, rule)
}

/// Parses a list of actions (and, at the top level, instructions) without
/// checking them against the rule yet, as OVS's `ofpacts_parse` does.
fn parse_action_list(text: &str, base: usize, allow_instructions: bool) -> Res<Vec<Located>> {
    let mut acts: Vec<Located> = Vec::new();
    let mut drop_at = None;
    for kv in key_values(text, base) {
        let end = (kv.value_at + kv.value.len() - base).min(text.len());
        let src = &text[kv.key_at - base..end.max(kv.key_at - base + kv.key.len())];
        let name = kv.key.to_ascii_lowercase();
        if name == "drop" {
            drop_at = Some((kv.key_at, src.to_string()));
            continue;
        }
        if name == "apply_actions" {
            acts.extend(parse_action_list(kv.value, kv.value_at, false)?);
            continue;
        }
        let act = parse_action(&name, &kv, src)?;
        acts.push(Located {
            act,
            at: kv.key_at,
            text: src.to_string(),
        });
    }
    if let (Some((at, src)), Some(_)) = (&drop_at, acts.first()) {
        return Err(err(
            *at,
            "\"drop\" must not be accompanied by any other action or instruction",
            src,
            "drop alone, or actions without drop",
        ));
    }
    verify_order(&acts, allow_instructions)?;
    Ok(acts)
}

fn verify_order(acts: &[Located], allow_instructions: bool) -> Res<()> {
    let mut prev: Option<Inst> = None;
    for a in acts {
        let next = Inst::of(&a.act);
        if !allow_instructions && next != Inst::Apply {
            return Err(err(
                a.at,
                format!("{} instruction not allowed here", next.name()),
                &a.text,
                "actions only, inside write_actions(...) or apply_actions(...)",
            ));
        }
        if let Some(inst) = prev {
            let bad = if inst == Inst::Apply {
                next < inst
            } else {
                next <= inst
            };
            if bad {
                let (what, expected) = if next == inst {
                    (
                        format!(
                            "duplicate {} instruction not allowed, for OpenFlow 1.1+ compatibility",
                            inst.name()
                        ),
                        format!("at most one {}", inst.name()),
                    )
                } else {
                    (
                        format!(
                            "invalid instruction ordering: {} must appear before {}, for OpenFlow 1.1+ compatibility",
                            next.name(),
                            inst.name()
                        ),
                        "actions first, then clear_actions, write_actions, write_metadata, goto_table"
                            .to_string(),
                    )
                };
                return Err(err(a.at, what, &a.text, expected));
            }
        }
        prev = Some(next);
    }
    Ok(())
}

fn parse_action(name: &str, kv: &KeyValue<'_>, src: &str) -> Res<Act> {
    let arg = kv.value;
    let at = kv.value_at;
    let invalid = |what: &str, expected: &str| err(at, format!("invalid {what}"), arg, expected);
    let u8_arg = |what: &str| {
        parse_uint(arg, 8)
            .map(|v| v as u8)
            .ok_or_else(|| invalid(what, "an integer from 0 to 255"))
    };
    let u16_arg = |what: &str| {
        parse_uint(arg, 16)
            .map(|v| v as u16)
            .ok_or_else(|| invalid(what, "an integer from 0 to 65535"))
    };
    let act = match name {
        "output" => {
            if arg.contains("port") && arg.contains("max_len") {
                return Err(err(
                    kv.key_at,
                    "unsupported action output_trunc",
                    src,
                    SUPPORTED,
                ));
            }
            match parse_port(arg) {
                Some(p) => output_to(p),
                // A subfield holding the port: output:NXM_NX_REG0[0..15].
                None if arg.contains('[') => {
                    let src =
                        parse_subfield(arg).map_err(|e| err(at, "bad output source", arg, e))?;
                    if src.n_bits > 16 {
                        return Err(err(
                            at,
                            "output source wider than a port",
                            arg,
                            "a subfield of at most 16 bits",
                        ));
                    }
                    Act::OutputReg(src)
                }
                None => {
                    return Err(err(
                        at,
                        "output to unknown port",
                        arg,
                        "a port number or name (LOCAL, IN_PORT, ...), or a subfield",
                    ))
                }
            }
        }
        "controller" => parse_controller(arg, at)?,
        "set_field" => parse_set_field(arg, at)?,
        "load" => parse_load(arg, at)?,
        "move" => parse_move(arg, at)?,
        "mod_dl_src" | "mod_dl_dst" => {
            let mac = parse_mac(arg).ok_or_else(|| invalid("mac address", "a MAC address"))?;
            Act::SetEth(
                if name == "mod_dl_src" {
                    Field::EthSrc
                } else {
                    Field::EthDst
                },
                mac,
            )
        }
        "mod_nw_src" | "mod_nw_dst" => {
            let ip = parse_ipv4(arg).ok_or_else(|| invalid("IP address", "an IPv4 address"))?;
            Act::SetIpv4(
                if name == "mod_nw_src" {
                    Field::Ipv4Src
                } else {
                    Field::Ipv4Dst
                },
                ip,
            )
        }
        "mod_nw_tos" => {
            let tos = u8_arg("TOS")?;
            if tos & 0x03 != 0 {
                return Err(err(
                    at,
                    "not a valid TOS",
                    arg,
                    "a multiple of 4 (the DSCP bits of the TOS byte)",
                ));
            }
            Act::SetNwTos(tos)
        }
        "mod_nw_ecn" => {
            let ecn = u8_arg("ECN")?;
            if ecn > 3 {
                return Err(err(at, "not a valid ECN", arg, "0, 1, 2 or 3"));
            }
            Act::SetNwEcn(ecn)
        }
        "mod_nw_ttl" | "set_nw_ttl" => Act::SetNwTtl(u8_arg("TTL")?),
        "mod_tp_src" => Act::SetTpSrc(u16_arg("source port")?),
        "mod_tp_dst" => Act::SetTpDst(u16_arg("destination port")?),
        "mod_vlan_vid" | "set_vlan_vid" => {
            let vid = u16_arg("VLAN VID")?;
            if vid > VLAN_VID_MASK {
                return Err(err(
                    at,
                    "not a valid VLAN VID",
                    arg,
                    "a VLAN ID from 0 to 4095",
                ));
            }
            Act::SetVlanVid {
                vid,
                push_if_needed: name == "mod_vlan_vid",
            }
        }
        "mod_vlan_pcp" | "set_vlan_pcp" => {
            let pcp = u8_arg("VLAN PCP")?;
            if pcp > 7 {
                return Err(err(
                    at,
                    "not a valid VLAN PCP",
                    arg,
                    "a priority from 0 to 7",
                ));
            }
            Act::SetVlanPcp {
                pcp,
                push_if_needed: name == "mod_vlan_pcp",
            }
        }
        "strip_vlan" | "pop_vlan" => Act::StripVlan,
        "push_vlan" => {
            let tpid = u16_arg("ethertype")?;
            if !eth_type_vlan(tpid) {
                return Err(err(
                    at,
                    "not a valid VLAN ethertype",
                    arg,
                    "0x8100 or 0x88a8",
                ));
            }
            Act::PushVlan(tpid)
        }
        // The controller ids only say whom to tell when the TTL expires;
        // upcalld has no controller connection, so they change nothing.
        "dec_ttl" => {
            let ids_ok =
                arg.is_empty() || arg.split(',').all(|id| id.trim().parse::<u16>().is_ok());
            if !ids_ok {
                return Err(err(
                    at,
                    "bad dec_ttl controller ids",
                    arg,
                    "dec_ttl(ID,ID,...)",
                ));
            }
            Act::DecTtl
        }
        "resubmit" => parse_resubmit(arg, at)?,
        "goto_table" => {
            let t = parse_decimal(arg)
                .filter(|t| *t <= 255)
                .ok_or_else(|| err(at, "unknown table", arg, "a table number"))?;
            Act::GotoTable(t as u8)
        }
        "write_metadata" => {
            let (v, m) = match arg.split_once('/') {
                Some((v, m)) => (v, Some(m)),
                None => (arg, None),
            };
            let num = |s: &str| {
                parse_uint(s, 64).map(|v| v as u64).ok_or_else(|| {
                    invalid("numeric format", "VALUE or VALUE/MASK, 64-bit integers")
                })
            };
            Act::WriteMetadata(num(v)?, m.map(num).transpose()?.unwrap_or(u64::MAX))
        }
        "clear_actions" => Act::ClearActions,
        "ct" => ct::parse_ct(arg, at)?,
        "ct_clear" => Act::CtClear,
        "nat" => Act::Nat(ct::parse_nat(arg, at)?),
        "write_actions" => Act::WriteActions(parse_action_list(arg, at, false)?),
        _ if UNSUPPORTED_ACTIONS.contains(&name) => {
            return Err(err(
                kv.key_at,
                format!("unsupported action {name}"),
                src,
                SUPPORTED,
            ))
        }
        _ => match parse_port(kv.key) {
            Some(p) if arg.is_empty() => output_to(p),
            _ => return Err(err(kv.key_at, "unknown action", kv.key, SUPPORTED)),
        },
    };
    Ok(act)
}

/// `output:CONTROLLER` is the `controller` action with all the packet.
fn output_to(p: u32) -> Act {
    if p == port::CONTROLLER {
        Act::Controller(u16::MAX)
    } else {
        Act::Output(p)
    }
}

fn parse_controller(arg: &str, at: usize) -> Res<Act> {
    if arg.is_empty() {
        return Ok(Act::Controller(u16::MAX));
    }
    if arg.bytes().all(|c| c.is_ascii_digit()) {
        let n = parse_uint(arg, 16)
            .ok_or_else(|| err(at, "invalid max_len", arg, "an integer from 0 to 65535"))?;
        return Ok(Act::Controller(n as u16));
    }
    let mut max_len = u16::MAX;
    for kv in key_values(arg, at) {
        match kv.key {
            "max_len" => {
                max_len = parse_uint(kv.value, 16).ok_or_else(|| {
                    err(
                        kv.value_at,
                        "invalid max_len",
                        kv.value,
                        "an integer from 0 to 65535",
                    )
                })? as u16;
            }
            "reason" | "id" | "userdata" | "pause" | "meter_id" => {
                return Err(err(
                    kv.key_at,
                    format!("unsupported controller option {}", kv.key),
                    kv.key,
                    "controller, controller:MAX_LEN or controller(max_len=N)",
                ))
            }
            other => {
                return Err(err(
                    kv.key_at,
                    "unknown key parsing controller action",
                    other,
                    "max_len=N",
                ))
            }
        }
    }
    Ok(Act::Controller(max_len))
}

/// Splits `VALUE->FIELD`.
fn split_arrow(arg: &str, at: usize) -> Res<(&str, &str, usize)> {
    let Some(i) = arg.find("->") else {
        return Err(err(at, "missing `->'", arg, "VALUE->FIELD"));
    };
    let dst = &arg[i + 2..];
    if dst.is_empty() {
        return Err(err(
            at,
            "missing field name following `->'",
            arg,
            "VALUE->FIELD",
        ));
    }
    Ok((&arg[..i], dst, at + i + 2))
}

fn parse_set_field(arg: &str, at: usize) -> Res<Act> {
    let (value_s, name, name_at) = split_arrow(arg, at)?;
    let info = fields::by_name(name).ok_or_else(|| {
        err(
            name_at,
            "not a valid OXM field name",
            name,
            "a field name such as eth_src, ip_dst, reg0",
        )
    })?;
    if !info.writable {
        return Err(err(
            name_at,
            format!("{name} is read-only"),
            name,
            "a writable field",
        ));
    }
    let (value, mask) = parse_field_value(info, value_s)
        .map_err(|e| err(at, format!("bad value for {name}"), value_s, e.expected))?;
    let valid = match info.field {
        Field::NwTos => value & 0x03 == 0,
        Field::VlanVid => value & u128::from(VLAN_CFI) != 0 && value <= 0x1fff,
        _ => info.syntax == Syntax::Port || value <= info.bit_mask(),
    };
    if !valid {
        let expected = match info.field {
            Field::VlanVid => {
                "a VLAN ID plus 4096 (the \"present\" bit), e.g. 4196 for VLAN 100".to_string()
            }
            Field::NwTos => "a multiple of 4 (the DSCP bits of the TOS byte)".to_string(),
            _ => format!(
                "a value that fits the {}-bit field {}",
                info.n_bits, info.name
            ),
        };
        return Err(err(
            at,
            format!("not a valid value for field {name}"),
            value_s,
            expected,
        ));
    }
    if mask == exact_mask(info) {
        Ok(Act::SetField {
            info,
            value,
            mask: info.field.full_mask(),
        })
    } else {
        // OpenFlow 1.3 has no masked set_field; OVS sends it as `load`.
        Ok(Act::Load {
            info,
            value: value & mask,
            mask,
        })
    }
}

/// `move:SRC->DST`: both subfields, of the same width, DST writable.
fn parse_move(arg: &str, at: usize) -> Res<Act> {
    let (src_s, dst, dst_at) = split_arrow(arg, at)?;
    let src = parse_subfield(src_s).map_err(|e| err(at, "bad move source", src_s, e))?;
    let dst_sf = parse_subfield(dst).map_err(|e| err(dst_at, "bad move destination", dst, e))?;
    if !dst_sf.info.writable {
        return Err(err(
            dst_at,
            format!("destination field {} is not writable", dst_sf.info.name),
            dst,
            "a writable field",
        ));
    }
    if src.n_bits != dst_sf.n_bits {
        return Err(err(
            at,
            format!(
                "source field is {} bits wide but destination is {} bits wide",
                src.n_bits, dst_sf.n_bits
            ),
            arg,
            "subfields of the same width",
        ));
    }
    Ok(Act::Move { src, dst: dst_sf })
}

fn parse_load(arg: &str, at: usize) -> Res<Act> {
    let (value_s, dst, dst_at) = split_arrow(arg, at)?;
    let sf = parse_subfield(dst).map_err(|e| err(dst_at, "bad load destination", dst, e))?;
    let info = sf.info;
    if !info.writable {
        return Err(err(
            dst_at,
            format!("destination field {} is not writable", info.name),
            dst,
            "a writable field",
        ));
    }
    let (value, used) = scan_uint(value_s, u32::from(info.n_bytes) * 8)
        .map_err(|_| err(at, "cannot parse integer value", value_s, "an integer"))?;
    if used != value_s.len() {
        return Err(err(at, "cannot parse integer value", value_s, "an integer"));
    }
    if value > ones(sf.n_bits) {
        return Err(err(
            at,
            format!("value does not fit into {} bits", sf.n_bits),
            value_s,
            format!("a value of at most {} bits", sf.n_bits),
        ));
    }
    if info.syntax == Syntax::Port {
        // NXM_OF_IN_PORT holds a 16-bit port; only whole-port loads map
        // onto upcalld's 32-bit port numbers.
        if sf.n_bits != u32::from(info.n_bits) {
            return Err(err(
                dst_at,
                "unsupported partial load of in_port",
                dst,
                "the whole field",
            ));
        }
        let p = if info.n_bits == 16 && value >= 0xff00 {
            value | 0xffff_0000
        } else {
            value
        };
        return Ok(Act::Load {
            info,
            value: p,
            mask: u128::from(u32::MAX),
        });
    }
    Ok(Act::Load {
        info,
        value: value << sf.ofs,
        mask: ones(sf.n_bits) << sf.ofs,
    })
}

fn parse_resubmit(arg: &str, at: usize) -> Res<Act> {
    let mut parts = arg.splitn(3, ',');
    let port_s = parts.next().unwrap_or("");
    let table_s = parts.next().unwrap_or("");
    let ct_s = parts.next().unwrap_or("");
    let in_port = if port_s.is_empty() {
        None
    } else {
        let p = parse_port(port_s).ok_or_else(|| {
            err(
                at,
                "resubmit to unknown port",
                port_s,
                "a port number or name",
            )
        })?;
        (p != port::IN_PORT).then_some(p)
    };
    let table = if table_s.is_empty() {
        None
    } else {
        let t = parse_decimal(table_s)
            .filter(|t| *t <= 255)
            .ok_or_else(|| err(at, "resubmit to unknown table", table_s, "a table number"))?;
        (t != 255).then_some(t as u8)
    };
    if !ct_s.is_empty() {
        let what = if ct_s == "ct" {
            "unsupported resubmit option"
        } else {
            "unknown parameter"
        };
        return Err(err(at, what, ct_s, "resubmit(PORT,TABLE)"));
    }
    if in_port.is_none() && table.is_none() {
        return Err(err(
            at,
            "at least one \"in_port\" or \"table\" must be specified on resubmit",
            arg,
            "resubmit:PORT, resubmit(PORT,TABLE) or resubmit(,TABLE)",
        ));
    }
    Ok(Act::Resubmit { in_port, table })
}

/// The parts of a rule's match that actions see and change while OVS
/// checks them (`ofpacts_check`): the match's flow, with VLAN pushes and
/// pops applied as they go.
#[derive(Clone)]
struct CheckState {
    flow: Flow,
    table: u8,
    /// Inside `write_actions`, where OVS lets `pop_vlan` and `dec_ttl`
    /// stand without a VLAN or IP match.
    in_action_set: bool,
    /// Inside `ct(exec(...))`, the only place `ct_mark` and `ct_label`
    /// may be written.
    in_conntrack: bool,
}

impl CheckState {
    /// Refuses an action whose prerequisites the match does not meet;
    /// `lenient` actions pass in the action set.
    fn require(&self, ok: bool, lenient: bool, a: &Located, needs: &str) -> Res<()> {
        if ok || lenient && self.in_action_set {
            Ok(())
        } else {
            Err(inconsistent(a, needs))
        }
    }
}

fn inconsistent(a: &Located, needs: &str) -> LineError {
    let name = a.text.split([':', '(', '=']).next().unwrap_or(&a.text);
    err(
        a.at,
        format!("{name}: prerequisites not met"),
        &a.text,
        format!("{needs} in the rule's match"),
    )
}

fn check_and_encode(acts: Vec<Located>, rule: &Rule) -> Res<Instructions> {
    let mut state = CheckState {
        flow: rule.matches.flow,
        table: rule.table,
        in_action_set: false,
        in_conntrack: false,
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
                    encode_action(b, &mut nested, &mut out)?;
                }
                ins.write_actions = Some(out);
            }
            Act::WriteMetadata(v, m) => ins.write_metadata = Some((*v, *m)),
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

fn encode_action(a: &Located, st: &mut CheckState, out: &mut Vec<OfAction>) -> Res<()> {
    let has_vlan = st.flow.vlans[0].tci & VLAN_CFI != 0;
    let is_ip = st.flow.dl_type == ETH_TYPE_IP;
    let is_ip_any = st.flow.is_ip_any();
    match &a.act {
        Act::SetIpv4(..) => st.require(is_ip, false, a, "ip (IPv4)")?,
        Act::SetNwTos(_) | Act::SetNwEcn(_) | Act::SetNwTtl(_) => {
            st.require(is_ip_any, false, a, "ip or ipv6")?
        }
        Act::DecTtl => st.require(is_ip_any, true, a, "ip or ipv6")?,
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
        Act::Controller(max_len) => out.push(OfAction::Controller { max_len: *max_len }),
        Act::SetField { info, value, mask } | Act::Load { info, value, mask } => {
            let needs_tag = info.field == Field::VlanVid && !has_vlan;
            if !prereqs_hold(info.prereq, f) || needs_tag {
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
            if !prereqs_hold(src.info.prereq, f) {
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
                if !prereqs_hold(sf.info.prereq, f) {
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
        Act::SetEth(field, mac) => out.push(set(*field, super::syntax::mac_u128(*mac))),
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
        Act::Resubmit { in_port, table } => out.push(OfAction::Resubmit {
            in_port: *in_port,
            table: *table,
        }),
        Act::CtClear => out.push(OfAction::CtClear),
        // Encoded above.
        Act::Ct(_) | Act::Nat(_) => {}
        Act::ClearActions | Act::WriteActions(_) | Act::WriteMetadata(..) | Act::GotoTable(_) => {
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

fn ct_outside(a: &Located) -> LineError {
    err(
        a.at,
        "cannot set CT fields outside of ct action",
        &a.text,
        "writes to ct_mark and ct_label inside ct(commit,exec(...))",
    )
}

fn prereq_needs(p: Prereq, field: Field) -> &'static str {
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

#[cfg(test)]
mod tests {
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
                OfAction::DecTtl
            ]
        );
        assert_eq!(
            crate::format::ofp_rule::format_action(&r.instructions.apply[0]),
            "output:NXM_NX_REG1[0..3]"
        );
        assert!(error("actions=output:NXM_NX_REG1[]").what.contains("wider"));
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
        assert_eq!(a[4], OfAction::Controller { max_len: 65535 });
        assert_eq!(a[5], OfAction::Controller { max_len: 100 });
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

    #[test]
    fn missing_actions_and_unknown_names() {
        assert_eq!(error("priority=5").what, "must specify an action");
        assert_eq!(error("bogus=1,actions=drop").what, "unknown field");
        assert_eq!(error("actions=frobnicate").what, "unknown action");
        assert_eq!(
            error("actions=learn(table=1)").what,
            "unsupported action learn"
        );
    }
}
