//! Rules printed as `ovs-ofctl -O OpenFlow13 --no-stats dump-flows` prints
//! them (OVS's `ofputil_flow_stats_format`, `match_format` and
//! `ofpacts_format`), without the leading space.
//!
//! One known difference: a `mod_nw_ttl:N` rule prints as
//! `set_field:N->nw_ttl` (the parser encodes it as that set-field).

use std::fmt::Write;

use crate::field::Field;
use crate::field::{self, ones, Syntax};
use crate::flow::*;
use crate::learn::{Learn, LearnDst, LearnSrc, Subfield};
use crate::ofp::{
    CtSpec, CtZone, Instructions, Match, NatAction, NatAddrs, NatKind, OfAction, Rule,
    DEFAULT_PRIORITY,
};
use crate::parse::syntax::{
    format_port, frag_name, CT_STATE_NAMES, TCP_FLAG_NAMES, TUN_FLAG_NAMES,
};

/// One rule as a `dump-flows` line.
pub fn format_rule(rule: &Rule) -> String {
    let mut s = String::new();
    if rule.cookie != 0 {
        let _ = write!(s, "cookie={}, ", c_hex(rule.cookie.into()));
    }
    if rule.table != 0 {
        let _ = write!(s, "table={}, ", rule.table);
    }
    if rule.idle_timeout != 0 {
        let _ = write!(s, "idle_timeout={}, ", rule.idle_timeout);
    }
    if rule.hard_timeout != 0 {
        let _ = write!(s, "hard_timeout={}, ", rule.hard_timeout);
    }
    let m = format_match(&rule.matches, rule.priority);
    s.push_str(&m);
    if !m.is_empty() {
        s.push(' ');
    }
    s.push_str("actions=");
    s.push_str(&format_instructions(&rule.instructions));
    s
}

/// A match as OVS prints it, with `priority=` first unless it is the
/// default. Empty for a catch-all at the default priority.
pub fn format_match(m: &Match, priority: u16) -> String {
    let priority = (priority != DEFAULT_PRIORITY).then_some(priority);
    format_match_fields(&m.flow, &m.mask, priority, false)
}

/// OVS's `match_format`, the one printer of matches: rules in dump-flows
/// and megaflows in traces. `f` must already be masked by `w`;
/// `packet_type_eth` prints the `eth` a megaflow carries for its packet
/// type.
pub fn format_match_fields(
    f: &Flow,
    w: &Flow,
    priority: Option<u16>,
    packet_type_eth: bool,
) -> String {
    let mut s = String::new();
    if let Some(priority) = priority {
        let _ = write!(s, "priority={priority},");
    }
    hex32(&mut s, "pkt_mark", f.pkt_mark, w.pkt_mark);
    hex32(&mut s, "recirc_id", f.recirc_id, w.recirc_id);
    hex32(&mut s, "dp_hash", f.dp_hash, w.dp_hash);
    if w.conj_id != 0 {
        let _ = write!(s, "conj_id={},", f.conj_id);
    }
    if w.skb_priority != 0 {
        let _ = write!(s, "skb_priority={},", c_hex(f.skb_priority.into()));
    }
    if w.ct_state != 0 {
        s.push_str("ct_state=");
        flags(
            &mut s,
            CT_STATE_NAMES,
            u32::from(f.ct_state),
            u32::from(w.ct_state),
            0xff,
        );
        s.push(',');
    }
    if w.ct_zone != 0 {
        if w.ct_zone == u16::MAX {
            let _ = write!(s, "ct_zone={},", f.ct_zone);
        } else {
            let _ = write!(
                s,
                "ct_zone={}/{},",
                c_hex(f.ct_zone.into()),
                c_hex(w.ct_zone.into())
            );
        }
    }
    hex32(&mut s, "ct_mark", f.ct_mark, w.ct_mark);
    if w.ct_label != [0; 16] {
        s.push_str("ct_label=");
        hex_bytes(&mut s, &f.ct_label);
        if w.ct_label != [0xff; 16] {
            s.push('/');
            hex_bytes(&mut s, &w.ct_label);
        }
        s.push(',');
    }
    ipv4(&mut s, "ct_nw_src", f.ct_nw_src, w.ct_nw_src);
    ipv6(&mut s, "ct_ipv6_src", f.ct_ipv6_src, w.ct_ipv6_src);
    ipv4(&mut s, "ct_nw_dst", f.ct_nw_dst, w.ct_nw_dst);
    ipv6(&mut s, "ct_ipv6_dst", f.ct_ipv6_dst, w.ct_ipv6_dst);
    if w.ct_nw_proto != 0 {
        let _ = write!(s, "ct_nw_proto={},", f.ct_nw_proto);
        port16(&mut s, "ct_tp_src", f.ct_tp_src, w.ct_tp_src);
        port16(&mut s, "ct_tp_dst", f.ct_tp_dst, w.ct_tp_dst);
    }
    if packet_type_eth {
        s.push_str("eth,");
    }

    let dl_type = f.dl_type;
    let mut skip_type = false;
    let mut skip_proto = false;
    if w.dl_type != 0 {
        skip_type = true;
        let proto = (w.nw_proto != 0).then_some(f.nw_proto);
        let name = match (dl_type, proto) {
            (ETH_TYPE_IP, Some(IPPROTO_ICMP)) => "icmp",
            (ETH_TYPE_IP, Some(IPPROTO_TCP)) => "tcp",
            (ETH_TYPE_IP, Some(IPPROTO_UDP)) => "udp",
            (ETH_TYPE_IP, Some(IPPROTO_SCTP)) => "sctp",
            (ETH_TYPE_IP, _) => "ip",
            (ETH_TYPE_IPV6, Some(IPPROTO_ICMPV6)) => "icmp6",
            (ETH_TYPE_IPV6, Some(IPPROTO_TCP)) => "tcp6",
            (ETH_TYPE_IPV6, Some(IPPROTO_UDP)) => "udp6",
            (ETH_TYPE_IPV6, Some(IPPROTO_SCTP)) => "sctp6",
            (ETH_TYPE_IPV6, _) => "ipv6",
            (ETH_TYPE_ARP, _) => "arp",
            (ETH_TYPE_RARP, _) => "rarp",
            (ETH_TYPE_MPLS, _) => "mpls",
            (ETH_TYPE_MPLS_MCAST, _) => "mplsm",
            _ => "",
        };
        if name.is_empty() {
            skip_type = false;
        } else {
            skip_proto = proto.is_some()
                && !matches!(name, "ip" | "ipv6" | "arp" | "rarp" | "mpls" | "mplsm");
            s.push_str(name);
            s.push(',');
        }
    }
    for (i, (v, m)) in f.regs.iter().zip(w.regs.iter()).enumerate() {
        hex32(&mut s, &format!("reg{i}"), *v, *m);
    }
    format_flow_tunnel(&mut s, f, w);
    hex64(&mut s, "metadata", f.metadata, w.metadata);
    if w.in_port != 0 {
        let _ = write!(s, "in_port={},", format_port(f.in_port));
    }
    if w.actset_output != 0 {
        let _ = write!(s, "actset_output={},", format_port(f.actset_output));
    }
    vlan(&mut s, f.vlans[0].tci, w.vlans[0].tci);
    // Inner tags print only as raw TCIs.
    for i in 1..FLOW_MAX_VLAN_HEADERS {
        let (tci, mask) = (f.vlans[i].tci, w.vlans[i].tci);
        if mask == u16::MAX {
            let _ = write!(s, "vlan_tci{i}=0x{tci:04x},");
        } else if mask != 0 {
            let _ = write!(s, "vlan_tci{i}=0x{tci:04x}/0x{mask:04x},");
        }
    }
    mac(&mut s, "dl_src", f.dl_src, w.dl_src);
    mac(&mut s, "dl_dst", f.dl_dst, w.dl_dst);
    if !skip_type && w.dl_type != 0 {
        let _ = write!(s, "dl_type=0x{dl_type:04x},");
    }
    let arp = dl_type == ETH_TYPE_ARP || dl_type == ETH_TYPE_RARP;
    if dl_type == ETH_TYPE_IPV6 {
        ipv6(&mut s, "ipv6_src", f.ipv6_src, w.ipv6_src);
        ipv6(&mut s, "ipv6_dst", f.ipv6_dst, w.ipv6_dst);
        if w.ipv6_label != 0 {
            // Exact means the whole 32-bit word, as OVS keeps it.
            if w.ipv6_label == u32::MAX {
                let _ = write!(s, "ipv6_label=0x{:05x},", f.ipv6_label);
            } else {
                let _ = write!(
                    s,
                    "ipv6_label=0x{:05x}/0x{:05x},",
                    f.ipv6_label, w.ipv6_label
                );
            }
        }
    } else if arp {
        ipv4(&mut s, "arp_spa", f.nw_src, w.nw_src);
        ipv4(&mut s, "arp_tpa", f.nw_dst, w.nw_dst);
    } else {
        ipv4(&mut s, "nw_src", f.nw_src, w.nw_src);
        ipv4(&mut s, "nw_dst", f.nw_dst, w.nw_dst);
    }
    if !skip_proto && w.nw_proto != 0 {
        let name = if arp { "arp_op" } else { "nw_proto" };
        let _ = write!(s, "{name}={},", f.nw_proto);
    }
    if arp {
        mac(&mut s, "arp_sha", f.arp_sha, w.arp_sha);
        mac(&mut s, "arp_tha", f.arp_tha, w.arp_tha);
    }
    if w.nw_tos & 0xfc != 0 {
        let _ = write!(s, "nw_tos={},", f.nw_tos & 0xfc);
    }
    if w.nw_tos & 0x03 != 0 {
        let _ = write!(s, "nw_ecn={},", f.nw_tos & 0x03);
    }
    if w.nw_ttl != 0 {
        let _ = write!(s, "nw_ttl={},", f.nw_ttl);
    }
    let (lse, lse_mask) = (f.mpls_lse[0], w.mpls_lse[0]);
    if lse_mask & 0xffff_f000 != 0 {
        let _ = write!(s, "mpls_label={},", lse >> 12);
    }
    if lse_mask & 0x0000_0e00 != 0 {
        let _ = write!(s, "mpls_tc={},", (lse >> 9) & 7);
    }
    if lse_mask & 0x0000_00ff != 0 {
        let _ = write!(s, "mpls_ttl={},", lse & 0xff);
    }
    if lse_mask & 0x0000_0100 != 0 {
        let _ = write!(s, "mpls_bos={},", (lse >> 8) & 1);
    }
    for i in 1..FLOW_MAX_MPLS_LABELS {
        let (v, m) = (f.mpls_lse[i], w.mpls_lse[i]);
        match m {
            0 => {}
            u32::MAX => {
                let _ = write!(s, "mpls_lse{i}={v},");
            }
            m => {
                let _ = write!(s, "mpls_lse{i}={v:#010x}/{m:#010x},");
            }
        }
    }
    if w.nw_frag & FLOW_NW_FRAG_MASK != 0 {
        let _ = write!(
            s,
            "nw_frag={},",
            frag_name(f.nw_frag, w.nw_frag).unwrap_or("<error>")
        );
    }
    if dl_type == ETH_TYPE_IP && f.nw_proto == IPPROTO_ICMP {
        port16(&mut s, "icmp_type", f.tp_src, w.tp_src);
        port16(&mut s, "icmp_code", f.tp_dst, w.tp_dst);
    } else if dl_type == ETH_TYPE_IP && f.nw_proto == IPPROTO_IGMP {
        port16(&mut s, "igmp_type", f.tp_src, w.tp_src);
        port16(&mut s, "igmp_code", f.tp_dst, w.tp_dst);
    } else if dl_type == ETH_TYPE_IPV6 && f.nw_proto == IPPROTO_ICMPV6 {
        port16(&mut s, "icmp_type", f.tp_src, w.tp_src);
        port16(&mut s, "icmp_code", f.tp_dst, w.tp_dst);
        ipv6(&mut s, "nd_target", f.nd_target, w.nd_target);
        mac(&mut s, "nd_sll", f.arp_sha, w.arp_sha);
        mac(&mut s, "nd_tll", f.arp_tha, w.arp_tha);
    } else {
        port16(&mut s, "tp_src", f.tp_src, w.tp_src);
        port16(&mut s, "tp_dst", f.tp_dst, w.tp_dst);
    }
    if (dl_type == ETH_TYPE_IP || dl_type == ETH_TYPE_IPV6)
        && f.nw_proto == IPPROTO_TCP
        && w.tcp_flags != 0
    {
        s.push_str("tcp_flags=");
        flags(
            &mut s,
            TCP_FLAG_NAMES,
            u32::from(f.tcp_flags),
            u32::from(w.tcp_flags & 0x0fff),
            0x0fff,
        );
    }
    if s.ends_with(',') {
        s.pop();
    }
    s
}

/// A rule's instructions as OVS prints them: apply-actions first, then the
/// instructions; `drop` when there is nothing at all.
pub fn format_instructions(ins: &Instructions) -> String {
    let mut parts: Vec<String> = ins.meter.iter().map(|m| format!("meter:{m}")).collect();
    parts.extend(ins.apply.iter().map(format_action));
    if ins.clear_actions {
        parts.push("clear_actions".into());
    }
    if let Some(actions) = &ins.write_actions {
        let inner: Vec<String> = actions.iter().map(format_action).collect();
        let inner = if inner.is_empty() {
            "drop".to_string()
        } else {
            inner.join(",")
        };
        parts.push(format!("write_actions({inner})"));
    }
    if let Some((value, mask)) = ins.write_metadata {
        if mask == u64::MAX {
            parts.push(format!("write_metadata:{}", c_hex(value.into())));
        } else {
            parts.push(format!(
                "write_metadata:{}/{}",
                c_hex(value.into()),
                c_hex(mask.into())
            ));
        }
    }
    if let Some(t) = ins.goto_table {
        parts.push(format!("goto_table:{t}"));
    }
    if parts.is_empty() {
        "drop".into()
    } else {
        parts.join(",")
    }
}

/// A `controller` action as OVS's `format_CONTROLLER` prints it: only
/// what differs from the defaults, userdata as dotted hex.
fn format_controller(c: &crate::ofp::ControllerAction) -> String {
    use crate::ofp::{packet_in_reason, NO_METER};
    if c.is_output() {
        return format!("CONTROLLER:{}", c.max_len);
    }
    let mut parts = Vec::new();
    if c.reason != packet_in_reason::ACTION {
        let name = packet_in_reason::NAMES
            .get(usize::from(c.reason))
            .map_or_else(|| c.reason.to_string(), |n| n.to_string());
        parts.push(format!("reason={name}"));
    }
    if c.max_len != u16::MAX {
        parts.push(format!("max_len={}", c.max_len));
    }
    if c.controller_id != 0 {
        parts.push(format!("id={}", c.controller_id));
    }
    if !c.userdata.is_empty() {
        let hex: Vec<String> = c.userdata.iter().map(|b| format!("{b:02x}")).collect();
        parts.push(format!("userdata={}", hex.join(".")));
    }
    if c.pause {
        parts.push("pause".into());
    }
    if c.meter_id != NO_METER {
        parts.push(format!("meter_id={}", c.meter_id));
    }
    format!("controller({})", parts.join(","))
}

/// One action as OVS prints it in OpenFlow 1.3.
pub fn format_action(a: &OfAction) -> String {
    match a {
        OfAction::Output { port, .. } if *port < crate::ofp::port::MAX => format!("output:{port}"),
        OfAction::Output { port, .. } => format_port(*port),
        OfAction::Controller(c) => format_controller(c),
        OfAction::SetField { field, value, mask } => {
            let info = field::by_field(*field);
            let mut s = String::from("set_field:");
            field_value(
                &mut s,
                *field,
                *value,
                (*mask != field.full_mask()).then_some(*mask),
            );
            let _ = write!(s, "->{}", info.name);
            s
        }
        OfAction::Load { field, value, mask } => format_load(*field, *value, *mask),
        OfAction::OutputReg { field, ofs, n_bits } => {
            format!("output:{}", subfield(*field, *ofs, *n_bits))
        }
        OfAction::Move {
            src,
            src_ofs,
            dst,
            dst_ofs,
            n_bits,
        } => format!(
            "move:{}->{}",
            subfield(*src, *src_ofs, *n_bits),
            subfield(*dst, *dst_ofs, *n_bits)
        ),
        OfAction::PushVlan { tpid } => format!("push_vlan:{}", c_hex((*tpid).into())),
        OfAction::PopVlan => "pop_vlan".into(),
        OfAction::PushMpls { ethertype } => format!("push_mpls:{ethertype:#06x}"),
        OfAction::PopMpls { ethertype } => format!("pop_mpls:{ethertype:#06x}"),
        OfAction::SetMplsLabel(label) => format!("set_mpls_label({label})"),
        OfAction::SetMplsTc(tc) => format!("set_mpls_tc({tc})"),
        OfAction::SetMplsTtl(ttl) => format!("set_mpls_ttl({ttl})"),
        OfAction::DecMplsTtl => "dec_mpls_ttl".into(),
        OfAction::DecTtl => "dec_ttl".into(),
        OfAction::DecTtlIds(ids) => {
            let ids: Vec<String> = ids.iter().map(u16::to_string).collect();
            format!("dec_ttl({})", ids.join(","))
        }
        OfAction::Resubmit { in_port, table } => match (in_port, table) {
            (Some(p), None) => format!("resubmit:{}", format_port(*p)),
            (p, t) => format!(
                "resubmit({},{})",
                p.map(format_port).unwrap_or_default(),
                t.map(|t| t.to_string()).unwrap_or_default()
            ),
        },
        OfAction::Ct(ct) => format_ct(ct),
        OfAction::CtClear => "ct_clear".into(),
        OfAction::Nat(nat) => format_nat(nat),
        OfAction::Conjunction {
            id,
            clause,
            n_clauses,
        } => format!("conjunction({id},{}/{n_clauses})", u16::from(*clause) + 1),
        OfAction::FinTimeout {
            idle_timeout,
            hard_timeout,
        } => {
            let mut parts = Vec::new();
            if *idle_timeout != 0 {
                parts.push(format!("idle_timeout={idle_timeout}"));
            }
            if *hard_timeout != 0 {
                parts.push(format!("hard_timeout={hard_timeout}"));
            }
            format!("fin_timeout({})", parts.join(","))
        }
        OfAction::Learn(l) => format_learn(l),
        OfAction::Clone(inner) => {
            let inner: Vec<String> = inner.iter().map(format_action).collect();
            format!("clone({})", inner.join(","))
        }
        OfAction::StackPush(sf) => format!("push:{}", sub(sf)),
        OfAction::StackPop(sf) => format!("pop:{}", sub(sf)),
        OfAction::Exit => "exit".into(),
        OfAction::OutputTrunc { port, max_len } => {
            format!("output(port={},max_len={max_len})", format_port(*port))
        }
        OfAction::CheckPktLarger { pkt_len, dst } => {
            format!("check_pkt_larger({pkt_len})->{}", sub(dst))
        }
        OfAction::Enqueue { port, queue } => format!("enqueue:{}:{queue}", format_port(*port)),
        OfAction::SetQueue(q) => format!("set_queue:{q}"),
        OfAction::PopQueue => "pop_queue".into(),
        OfAction::Group(g) => format!("group:{g}"),
        OfAction::Note(bytes) => {
            let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("note:{}", hex.join("."))
        }
        OfAction::Multipath(mp) => format!(
            "multipath({},{},{},{},{},{})",
            mp.fields.name(),
            mp.basis,
            mp.algorithm.name(),
            u32::from(mp.max_link) + 1,
            mp.arg,
            sub(&mp.dst)
        ),
        OfAction::Bundle(b) => format_bundle(b),
        OfAction::Sample(a) => format_sample(a),
        OfAction::DebugRecirc => "debug_recirc".into(),
        OfAction::DebugSlow => "debug_slow".into(),
        // OVS prints the id with C's `%#x`: a bare 0 has no `0x`.
        OfAction::SetTunnel { tun_id, wide } => format!(
            "set_tunnel{}:{}",
            if *wide || *tun_id > u64::from(u32::MAX) {
                "64"
            } else {
                ""
            },
            if *tun_id == 0 {
                "0".to_string()
            } else {
                format!("{tun_id:#x}")
            }
        ),
    }
}

/// `sample(...)` as OVS's `format_SAMPLE`: the ids always, the port and
/// direction when given.
fn format_sample(a: &crate::ofp::SampleAction) -> String {
    use crate::ofp::SampleDirection;
    let mut s = format!(
        "sample(probability={},collector_set_id={},obs_domain_id={},obs_point_id={}",
        a.probability, a.collector_set_id, a.obs_domain_id, a.obs_point_id
    );
    if a.sampling_port != crate::ofp::port::ANY {
        let _ = write!(s, ",sampling_port={}", format_port(a.sampling_port));
    }
    match a.direction {
        SampleDirection::Default => {}
        SampleDirection::Ingress => s.push_str(",ingress"),
        SampleDirection::Egress => s.push_str(",egress"),
    }
    s.push(')');
    s
}

/// `bundle(...)`/`bundle_load(...)` as OVS's `bundle_format`.
fn format_bundle(b: &crate::multipath::Bundle) -> String {
    let mut s = format!(
        "{}({},{},{},ofport,",
        if b.dst.is_some() {
            "bundle_load"
        } else {
            "bundle"
        },
        b.fields.name(),
        b.basis,
        b.algorithm.name()
    );
    if let Some(dst) = &b.dst {
        let _ = write!(s, "{},", sub(dst));
    }
    let members: Vec<String> = b.members.iter().map(|p| format_port(*p)).collect();
    let _ = write!(s, "members:{})", members.join(","));
    s
}

/// A group as OVS's `dump-groups` prints it in OpenFlow 1.3 (and
/// `selection_method`, which OpenFlow 1.5 carries, when one was given).
pub fn format_group(g: &crate::group::Group) -> String {
    use crate::group::{GroupType, GROUP_ANY};
    let mut s = format!("group_id={},type={}", g.id, g.kind.name());
    if let Some(m) = &g.selection_method {
        let _ = write!(s, ",selection_method={m}");
    }
    for b in &g.buckets {
        s.push_str(",bucket=");
        if g.kind == GroupType::Select && b.weight != 1 {
            let _ = write!(s, "weight:{},", b.weight);
        }
        if b.watch_port != crate::ofp::port::ANY {
            let _ = write!(s, "watch_port:{},", format_port(b.watch_port));
        }
        if b.watch_group != GROUP_ANY {
            let _ = write!(s, "watch_group:{},", b.watch_group);
        }
        s.push_str("actions=");
        let acts: Vec<String> = b.actions.iter().map(format_action).collect();
        s.push_str(if acts.is_empty() { "drop" } else { "" });
        s.push_str(&acts.join(","));
    }
    s
}

/// One group's counters as `ovs-ofctl dump-group-stats` prints them.
pub fn format_group_stats(s: &crate::group::GroupStats) -> String {
    let mut out = format!(
        "group_id={},duration={}.{:03}s,ref_count={},packet_count={},byte_count={}",
        s.id,
        s.duration.as_secs(),
        s.duration.subsec_millis(),
        s.ref_count,
        s.packets,
        s.bytes
    );
    for (i, (packets, bytes)) in s.buckets.iter().enumerate() {
        out.push_str(&format!(
            ",bucket{i}:packet_count={packets},byte_count={bytes}"
        ));
    }
    out
}

/// A meter's number as OVS prints it (`ofputil_format_meter_id`).
pub fn format_meter_id(id: u32) -> String {
    use crate::meter::{METER_ALL, METER_CONTROLLER, METER_SLOWPATH};
    match id {
        METER_SLOWPATH => "slowpath".into(),
        METER_CONTROLLER => "controller".into(),
        METER_ALL => "all".into(),
        n => n.to_string(),
    }
}

/// A meter as `ovs-ofctl dump-meters` prints it (`ofputil_format_meter_config`):
/// the flags, then one line per band.
pub fn format_meter(m: &crate::meter::Meter) -> String {
    let mut s = format!("meter={} ", format_meter_id(m.id));
    s.push_str(if m.pktps { "pktps " } else { "kbps " });
    if m.burst {
        s.push_str("burst ");
    }
    if m.stats {
        s.push_str("stats ");
    }
    s.push_str("bands=\n");
    for b in &m.bands {
        let _ = write!(s, "type=drop rate={}", b.rate);
        if m.burst {
            let _ = write!(s, " burst_size={}", b.burst_size);
        }
        s.push('\n');
    }
    s
}

/// A meter's statistics as `ovs-ofctl meter-stats` prints them
/// (`ofputil_format_meter_stats`): `flow_count` is the rules that use it.
pub fn format_meter_stats(
    id: u32,
    flow_count: usize,
    duration: std::time::Duration,
    stats: &crate::meter::MeterStats,
) -> String {
    let mut s = format!(
        "meter:{} flow_count:{flow_count} packet_in_count:{} byte_in_count:{} duration:{}.{:03}s bands:\n",
        format_meter_id(id),
        stats.packets_in,
        stats.bytes_in,
        duration.as_secs(),
        duration.subsec_millis()
    );
    for (i, (packets, bytes)) in stats.bands.iter().enumerate() {
        let _ = writeln!(s, "{i}: packet_count:{packets} byte_count:{bytes}");
    }
    s
}

/// OVS's `learn_format`.
fn format_learn(l: &Learn) -> String {
    let mut s = format!("learn(table={}", l.table);
    if l.idle_timeout != 0 {
        let _ = write!(s, ",idle_timeout={}", l.idle_timeout);
    }
    if l.hard_timeout != 0 {
        let _ = write!(s, ",hard_timeout={}", l.hard_timeout);
    }
    if l.fin_idle_timeout != 0 {
        let _ = write!(s, ",fin_idle_timeout={}", l.fin_idle_timeout);
    }
    if l.fin_hard_timeout != 0 {
        let _ = write!(s, ",fin_hard_timeout={}", l.fin_hard_timeout);
    }
    if l.priority != DEFAULT_PRIORITY {
        let _ = write!(s, ",priority={}", l.priority);
    }
    if l.send_flow_rem {
        s.push_str(",send_flow_rem");
    }
    if l.delete_learned {
        s.push_str(",delete_learned");
    }
    if l.cookie != 0 {
        let _ = write!(s, ",cookie={:#x}", l.cookie);
    }
    if l.limit != 0 {
        let _ = write!(s, ",limit={}", l.limit);
    }
    if let Some(r) = &l.result_dst {
        let _ = write!(s, ",result_dst={}", sub(r));
    }
    for spec in &l.specs {
        s.push(',');
        match (spec.src, spec.dst) {
            (LearnSrc::Immediate(v), LearnDst::Match(d)) => {
                let info = field::by_field(d.field);
                if d.ofs == 0 && u16::from(d.n_bits) == info.n_bits {
                    let _ = write!(s, "{}=", info.name);
                    field_value(&mut s, d.field, v, None);
                } else {
                    let _ = write!(s, "{}={}", sub(&d), c_hex(v));
                }
            }
            (LearnSrc::Field(f), LearnDst::Match(d)) => {
                s.push_str(&sub(&d));
                if f.field != d.field || f.ofs != d.ofs {
                    let _ = write!(s, "={}", sub(&f));
                }
            }
            (LearnSrc::Immediate(v), LearnDst::Load(d)) => {
                let _ = write!(s, "load:{}->{}", c_hex(v), sub(&d));
            }
            (LearnSrc::Field(f), LearnDst::Load(d)) => {
                let _ = write!(s, "load:{}->{}", sub(&f), sub(&d));
            }
            (LearnSrc::Field(f), LearnDst::Output) => {
                let _ = write!(s, "output:{}", sub(&f));
            }
            (LearnSrc::Immediate(v), LearnDst::Output) => {
                let _ = write!(s, "output:{}", c_hex(v));
            }
        }
    }
    s.push(')');
    s
}

fn sub(sf: &Subfield) -> String {
    // The whole 32-bit port is OXM_OF_IN_PORT, not NXM's 16 bits.
    if sf.field == Field::InPort && sf.ofs == 0 && sf.n_bits == 32 {
        return "OXM_OF_IN_PORT[]".into();
    }
    subfield(sf.field, sf.ofs, sf.n_bits)
}

/// `ct(...)` as OVS's `format_CT` prints it: a leading `nat` outside the
/// `exec(...)` that holds the other nested actions.
fn format_ct(ct: &CtSpec) -> String {
    let mut s = String::from("ct(");
    if ct.commit {
        s.push_str("commit,");
    }
    if ct.force {
        s.push_str("force,");
    }
    if let Some(t) = ct.table {
        let _ = write!(s, "table={t},");
    }
    match ct.zone {
        CtZone::Field { field, ofs, n_bits } => {
            let _ = write!(s, "zone={},", subfield(field, ofs, n_bits));
        }
        CtZone::Imm(0) => {}
        CtZone::Imm(z) => {
            let _ = write!(s, "zone={z},");
        }
    }
    let mut rest = &ct.actions[..];
    if let Some((OfAction::Nat(nat), tail)) = rest.split_first() {
        s.push_str(&format_nat(nat));
        s.push(',');
        rest = tail;
    }
    if !rest.is_empty() {
        let inner: Vec<String> = rest.iter().map(format_action).collect();
        let _ = write!(s, "exec({}),", inner.join(","));
    }
    match ct.alg {
        0 => {}
        21 => s.push_str("alg=ftp,"),
        69 => s.push_str("alg=tftp,"),
        p => {
            let _ = write!(s, "alg={p},");
        }
    }
    if s.ends_with(',') {
        s.pop();
    }
    s.push(')');
    s
}

/// `nat(...)` as OVS's `format_NAT` prints it (flags only with a range).
fn format_nat(nat: &NatAction) -> String {
    let Some(kind) = nat.kind else {
        return "nat".into();
    };
    let mut s = String::from(match kind {
        NatKind::Src => "nat(src",
        NatKind::Dst => "nat(dst",
    });
    if let Some(addrs) = nat.addrs {
        s.push('=');
        let bracket = nat.ports.is_some_and(|(min, _)| min != 0);
        let v6 = |a: [u8; 16]| {
            if bracket {
                format!("[{}]", super::ipv6(&a))
            } else {
                super::ipv6(&a)
            }
        };
        match addrs {
            NatAddrs::V4 { min, max } => {
                s.push_str(&std::net::Ipv4Addr::from(min).to_string());
                if max != 0 && max != min {
                    let _ = write!(s, "-{}", std::net::Ipv4Addr::from(max));
                }
            }
            NatAddrs::V6 { min, max } => {
                s.push_str(&v6(min));
                if max != [0; 16] && max != min {
                    let _ = write!(s, "-{}", v6(max));
                }
            }
        }
        if let Some((min, max)) = nat.ports.filter(|(min, _)| *min != 0) {
            let _ = write!(s, ":{min}");
            if max != 0 && max != min {
                let _ = write!(s, "-{max}");
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
    }
    if s.ends_with(',') {
        s.pop();
    }
    s.push(')');
    s
}

/// `NAME[]` for a whole field, `NAME[a..b]` or `NAME[a]` for some of it.
fn subfield(field: Field, ofs: u8, n_bits: u8) -> String {
    let info = field::by_field(field);
    let (ofs, n) = (u32::from(ofs), u32::from(n_bits));
    let range = if ofs == 0 && n == info.subfield_bits() {
        "[]".to_string()
    } else if n == 1 {
        format!("[{ofs}]")
    } else {
        format!("[{}..{}]", ofs, ofs + n - 1)
    };
    format!("{}{range}", info.subfield_name())
}

/// `load:VALUE->NAME[a..b]`, one per contiguous run of mask bits, as OVS
/// splits a masked write into REG_LOAD actions.
fn format_load(field: Field, value: u128, mask: u128) -> String {
    let info = field::by_field(field);
    let n_bits = u32::from(info.n_bits);
    let (value, mask) = if info.syntax == Syntax::Port && info.n_bits == 16 {
        // NXM_OF_IN_PORT is OpenFlow 1.0's 16-bit port number.
        (value & 0xffff, mask & 0xffff)
    } else {
        (value, mask)
    };
    let mut loads = Vec::new();
    let mut ofs = 0;
    while ofs < n_bits {
        if mask >> ofs & 1 == 0 {
            ofs += 1;
            continue;
        }
        let mut end = ofs;
        while end < n_bits && end - ofs < 64 && mask >> end & 1 == 1 {
            end += 1;
        }
        let n = end - ofs;
        let v = (value >> ofs) & ones(n);
        let range = if ofs == 0 && n == n_bits {
            "[]".to_string()
        } else if n == 1 {
            format!("[{ofs}]")
        } else {
            format!("[{}..{}]", ofs, end - 1)
        };
        loads.push(format!(
            "load:{}->{}{range}",
            c_hex(v),
            info.subfield_name()
        ));
        ofs = end;
    }
    loads.join(",")
}

/// A field's value (and mask) as OVS's `mf_format` prints it.
fn field_value(s: &mut String, field: Field, value: u128, mask: Option<u128>) {
    let info = field::by_field(field);
    match info.syntax {
        Syntax::Decimal => {
            let _ = write!(s, "{value}");
            if let Some(m) = mask {
                s.push('/');
                hex_value(s, m);
            }
        }
        Syntax::Hex => {
            hex_value(s, value);
            if let Some(m) = mask {
                s.push('/');
                hex_value(s, m);
            }
        }
        Syntax::Ethernet => {
            let mac6 = |v: u128| -> [u8; 6] {
                let b = v.to_be_bytes();
                [b[10], b[11], b[12], b[13], b[14], b[15]]
            };
            eth_masked(s, mac6(value), mac6(mask.unwrap_or(ones(48))));
        }
        Syntax::Ipv4 => ipv4_masked(s, value as u32, mask.map_or(u32::MAX, |m| m as u32)),
        Syntax::Ipv6 => ipv6_masked(
            s,
            value.to_be_bytes(),
            mask.unwrap_or(u128::MAX).to_be_bytes(),
        ),
        Syntax::Port => s.push_str(&format_port(value as u32)),
        Syntax::Frag => {
            s.push_str(frag_name(value as u8, mask.unwrap_or(0xff) as u8).unwrap_or("<error>"))
        }
        Syntax::TcpFlags => flags(
            s,
            TCP_FLAG_NAMES,
            value as u32,
            mask.unwrap_or(0x0fff) as u32,
            0x0fff,
        ),
        Syntax::CtState => flags(
            s,
            CT_STATE_NAMES,
            value as u32,
            mask.unwrap_or(0xff) as u32,
            0xff,
        ),
        Syntax::TunFlags => flags(
            s,
            TUN_FLAG_NAMES,
            value as u32,
            mask.unwrap_or(0x1) as u32,
            0x1,
        ),
    }
}

/// C's `%#x`: `0x` and the digits, but plain `0` for zero. OVS's
/// `ds_put_hex` prints the same.
fn c_hex(v: u128) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

fn hex_value(s: &mut String, v: u128) {
    s.push_str(&c_hex(v));
}

/// OVS's `tun_flags` names, by bit, as `format_flow_tunnel` prints them.
const TUN_FLAG_ALL_NAMES: &[(u32, &str)] =
    &[(0x1, "oam"), (0x2, "df"), (0x4, "csum"), (0x8, "key")];

/// OVS's `format_flow_tunnel`: the tunnel fields of a match, then each
/// `tun_metadataN` matched (`NP` when it must be absent).
fn format_flow_tunnel(s: &mut String, f: &Flow, w: &Flow) {
    hex64(s, "tun_id", f.tun_id, w.tun_id);
    ipv4(s, "tun_src", f.tun_src, w.tun_src);
    ipv4(s, "tun_dst", f.tun_dst, w.tun_dst);
    ipv6(s, "tun_ipv6_src", f.tun_ipv6_src, w.tun_ipv6_src);
    ipv6(s, "tun_ipv6_dst", f.tun_ipv6_dst, w.tun_ipv6_dst);
    port16(s, "tun_gbp_id", f.tun_gbp_id, w.tun_gbp_id);
    if w.tun_gbp_flags != 0 {
        let _ = write!(s, "tun_gbp_flags={},", c_hex(f.tun_gbp_flags.into()));
    }
    if w.tun_tos != 0 {
        let _ = write!(s, "tun_tos={:x},", f.tun_tos);
    }
    if w.tun_ttl != 0 {
        let _ = write!(s, "tun_ttl={},", f.tun_ttl);
    }
    if w.tun_flags & FLOW_TNL_F_MASK != 0 {
        s.push_str("tun_flags=");
        flags(
            s,
            TUN_FLAG_ALL_NAMES,
            u32::from(f.tun_flags & FLOW_TNL_F_MASK),
            u32::from(w.tun_flags & FLOW_TNL_F_MASK),
            u32::from(FLOW_TNL_F_MASK),
        );
        s.push(',');
    }
    if w.tun_md_present == 0 {
        return;
    }
    let map = crate::tlv::current();
    for idx in 0..TUN_METADATA_NUM {
        if w.tun_md_present & (1 << idx) == 0 {
            continue;
        }
        let _ = write!(s, "tun_metadata{idx}");
        let Some(loc) = map.get(idx) else {
            s.push(',');
            continue;
        };
        let range = loc.offset as usize..loc.offset as usize + loc.len as usize;
        let (value, mask) = (&f.tun_md[range.clone()], &w.tun_md[range]);
        if f.tun_md_present & (1 << idx) == 0 {
            s.push_str("=NP");
        } else if mask.iter().any(|b| *b != 0) {
            s.push('=');
            hex_bytes(s, value);
            if mask.iter().any(|b| *b != 0xff) {
                s.push('/');
                hex_bytes(s, mask);
            }
        }
        s.push(',');
    }
}

fn hex_bytes(s: &mut String, bytes: &[u8]) {
    hex_value(
        s,
        bytes
            .iter()
            .fold(0u128, |acc, b| (acc << 8) | u128::from(*b)),
    );
}

fn hex32(s: &mut String, name: &str, v: u32, m: u32) {
    if m != 0 {
        let _ = write!(s, "{name}={}", c_hex(v.into()));
        if m != u32::MAX {
            let _ = write!(s, "/{}", c_hex(m.into()));
        }
        s.push(',');
    }
}

fn hex64(s: &mut String, name: &str, v: u64, m: u64) {
    if m != 0 {
        let _ = write!(s, "{name}={}", c_hex(v.into()));
        if m != u64::MAX {
            let _ = write!(s, "/{}", c_hex(m.into()));
        }
        s.push(',');
    }
}

fn port16(s: &mut String, name: &str, v: u16, m: u16) {
    if m == u16::MAX {
        let _ = write!(s, "{name}={v},");
    } else if m != 0 {
        let _ = write!(s, "{name}={v:#x}/{m:#x},");
    }
}

fn mac(s: &mut String, name: &str, v: [u8; 6], m: [u8; 6]) {
    if m != [0; 6] {
        let _ = write!(s, "{name}=");
        eth_masked(s, v, m);
        s.push(',');
    }
}

fn eth_masked(s: &mut String, v: [u8; 6], m: [u8; 6]) {
    let put = |s: &mut String, a: [u8; 6]| {
        let _ = write!(
            s,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            a[0], a[1], a[2], a[3], a[4], a[5]
        );
    };
    put(s, v);
    if m != [0xff; 6] {
        s.push('/');
        put(s, m);
    }
}

fn ipv4(s: &mut String, name: &str, v: u32, m: u32) {
    if m != 0 {
        let _ = write!(s, "{name}=");
        ipv4_masked(s, v, m);
        s.push(',');
    }
}

fn dotted(s: &mut String, a: u32) {
    let b = a.to_be_bytes();
    let _ = write!(s, "{}.{}.{}.{}", b[0], b[1], b[2], b[3]);
}

fn ipv4_masked(s: &mut String, v: u32, m: u32) {
    dotted(s, v);
    if m != u32::MAX {
        if m.leading_ones() + m.trailing_zeros() == 32 {
            let _ = write!(s, "/{}", m.leading_ones());
        } else {
            s.push('/');
            dotted(s, m);
        }
    }
}

fn ipv6(s: &mut String, name: &str, v: [u8; 16], m: [u8; 16]) {
    if m != [0; 16] {
        let _ = write!(s, "{name}=");
        ipv6_masked(s, v, m);
        s.push(',');
    }
}

/// An IPv6 address as glibc's `inet_ntop` writes it (which prints
/// IPv4-compatible addresses with a dotted tail, unlike Rust's `Display`).
fn ipv6_addr(s: &mut String, a: [u8; 16]) {
    s.push_str(&super::ipv6(&a));
}

fn ipv6_masked(s: &mut String, v: [u8; 16], m: [u8; 16]) {
    ipv6_addr(s, v);
    let mask = u128::from_be_bytes(m);
    if mask != u128::MAX {
        if mask.leading_ones() + mask.trailing_zeros() == 128 {
            let _ = write!(s, "/{}", mask.leading_ones());
        } else {
            s.push('/');
            ipv6_addr(s, m);
        }
    }
}

/// OVS's `match_format` for the outer VLAN: `dl_vlan`/`dl_vlan_pcp` when
/// they say it all, else `vlan_tci`.
fn vlan(s: &mut String, tci: u16, mask: u16) {
    if mask == 0 {
        return;
    }
    let vid_mask = mask & VLAN_VID_MASK;
    let pcp_mask = mask & VLAN_PCP_MASK;
    let cfi = mask & VLAN_CFI != 0 && tci & VLAN_CFI != 0;
    if cfi
        && (vid_mask == 0 || vid_mask == VLAN_VID_MASK)
        && (pcp_mask == 0 || pcp_mask == VLAN_PCP_MASK)
        && (vid_mask != 0 || pcp_mask != 0)
    {
        if vid_mask != 0 {
            let _ = write!(s, "dl_vlan={},", tci & VLAN_VID_MASK);
        }
        if pcp_mask != 0 {
            let _ = write!(s, "dl_vlan_pcp={},", tci >> VLAN_PCP_SHIFT);
        }
    } else if mask == 0xffff {
        let _ = write!(s, "vlan_tci=0x{tci:04x},");
    } else {
        let _ = write!(s, "vlan_tci=0x{tci:04x}/0x{mask:04x},");
    }
}

/// OVS's `format_flags_masked`: names joined by `|` when every bit is
/// matched, else `+name`/`-name` per matched bit.
fn flags(s: &mut String, names: &[(u32, &str)], value: u32, mask: u32, all: u32) {
    let name = |bit: u32| names.iter().find(|(b, _)| *b == bit).map(|(_, n)| *n);
    if mask == all {
        if value == 0 {
            s.push('0');
            return;
        }
        let mut parts = Vec::new();
        let mut unknown = 0;
        for i in 0..32 {
            let bit = 1u32 << i;
            if value & bit != 0 {
                match name(bit) {
                    Some(n) => parts.push(n.to_string()),
                    None => unknown |= bit,
                }
            }
        }
        if unknown != 0 {
            parts.push(format!("{unknown:#x}"));
        }
        s.push_str(&parts.join("|"));
        return;
    }
    if mask == 0 {
        s.push_str("0/0");
        return;
    }
    for i in 0..32 {
        let bit = 1u32 << i;
        if mask & bit != 0 {
            s.push(if value & bit != 0 { '+' } else { '-' });
            s.push_str(name(bit).unwrap_or("[Unknown]"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::rules::parse_rule;
    use std::net::Ipv6Addr;

    fn dump(s: &str) -> String {
        format_rule(&parse_rule(s).unwrap_or_else(|e| panic!("{s}: {e}")))
    }

    #[test]
    fn prints_like_dump_flows() {
        assert_eq!(
            dump("table=0,priority=324,dl_type=0x86dd,nw_proto=6,tcp_flags=0x010/0x010,actions=set_field:8->reg0,set_field:1->reg1,set_field:0x4772/0xffff->metadata,goto_table:1"),
            "priority=324,tcp6,tcp_flags=+ack actions=set_field:0x8->reg0,set_field:0x1->reg1,load:0x4772->OXM_OF_METADATA[0..15],goto_table:1"
        );
        assert_eq!(
            dump("table=1,priority=277,tcp,tcp_flags=+fin,tp_dst=0x8400/0xff00,reg0=0x8/0xf,actions=drop"),
            "table=1, priority=277,tcp,reg0=0x8/0xf,tp_dst=0x8400/0xff00,tcp_flags=+fin actions=drop"
        );
        assert_eq!(
            dump("priority=5,vlan_tci=0x501e/0xffff,actions=mod_vlan_vid:7,strip_vlan,output:in_port"),
            "priority=5,dl_vlan=30,dl_vlan_pcp=2 actions=set_field:4103->vlan_vid,pop_vlan,IN_PORT"
        );
        assert_eq!(
            dump("cookie=0x5,idle_timeout=10,actions=mod_vlan_vid:7"),
            "cookie=0x5, idle_timeout=10, actions=push_vlan:0x8100,set_field:4103->vlan_vid"
        );
        assert_eq!(
            dump("ipv6,ipv6_dst=2001:db8::/32,actions=drop"),
            "ipv6,ipv6_dst=2001:db8::/32 actions=drop"
        );
        assert_eq!(
            dump("ip,nw_src=10.0.0.0/255.0.255.0,actions=drop"),
            "ip,nw_src=10.0.0.0/255.0.255.0 actions=drop"
        );
    }

    #[test]
    fn loads_split_into_contiguous_runs() {
        assert_eq!(
            format_load(Field::Reg(1), 0x5005, 0xf00f),
            "load:0x5->NXM_NX_REG1[0..3],load:0x5->NXM_NX_REG1[12..15]"
        );
        assert_eq!(
            format_load(Field::Reg(0), 3, 0xffff_ffff),
            "load:0x3->NXM_NX_REG0[]"
        );
        assert_eq!(format_load(Field::Reg(0), 0, 1), "load:0->NXM_NX_REG0[0]");
    }

    #[test]
    fn ipv6_addresses_print_as_inet_ntop() {
        let mut s = String::new();
        ipv6_addr(
            &mut s,
            Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0x0102, 0x0304).octets(),
        );
        assert_eq!(s, "::1.2.3.4");
        s.clear();
        ipv6_addr(&mut s, Ipv6Addr::LOCALHOST.octets());
        assert_eq!(s, "::1");
    }
}
