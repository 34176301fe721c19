//! Text output of `upcalld ctl`: rules with their counters, datapath flows,
//! and the upcall summary, in the spirit of `ovs-ofctl dump-flows`,
//! `ovs-dpctl dump-flows` and `ovs-appctl upcall/show`.

use std::fmt::Write;
use std::sync::Arc;

use actors::protocol::RuleStats;
use actors::stats::{DropReason, PipelineStats, ACTORS};
use actors::tables::RuleEntry;
use messages::dpif::DpFlow;
use messages::dpif::{monotonic_ms, DpStats, Dpif, PortInfo, PortStats};
use messages::format::odp_actions::format_odp_actions;
use messages::format::odp_flow::format_odp_flow;
use messages::format::ofp_rule::{format_instructions, format_match};

/// One line per rule, as `ovs-ofctl dump-flows` prints it.
pub fn dump_flows(rules: &[(Arc<RuleEntry>, RuleStats)]) -> String {
    let mut out = String::new();
    for (entry, stats) in rules {
        let r = &entry.rule;
        let _ = write!(
            out,
            " cookie={:#x}, duration={:.3}s, table={}, n_packets={}, n_bytes={}, ",
            r.cookie,
            entry.added.elapsed().as_secs_f64(),
            r.table,
            stats.n_packets,
            stats.n_bytes
        );
        if r.idle_timeout != 0 {
            let _ = write!(out, "idle_timeout={}, ", r.idle_timeout);
        }
        if r.hard_timeout != 0 {
            let _ = write!(out, "hard_timeout={}, ", r.hard_timeout);
        }
        let m = format_match(&r.matches, r.priority);
        if !m.is_empty() {
            let _ = write!(out, "{m} ");
        }
        let _ = writeln!(out, "actions={}", format_instructions(&r.instructions));
    }
    out
}

/// One line per datapath flow, in ODP syntax as `ovs-dpctl dump-flows -m`
/// prints it: ufid, match, counters, age, actions.
pub fn dump_dp_flows(flows: &[DpFlow]) -> String {
    let now = monotonic_ms();
    let mut out = String::new();
    for f in flows {
        let used = match f.stats.used_ms {
            Some(t) => format!("{:.3}s", now.saturating_sub(t) as f64 / 1000.0),
            None => "never".to_string(),
        };
        let actions = format_odp_actions(&f.actions);
        let _ = writeln!(
            out,
            "ufid:{}, {}, packets:{}, bytes:{}, used:{}, actions:{}",
            ufid_string(f.ufid),
            format_odp_flow(&f.key, &f.mask),
            f.stats.n_packets,
            f.stats.n_bytes,
            used,
            if actions.is_empty() {
                "drop".to_string()
            } else {
                actions
            }
        );
    }
    out
}

/// The upcall summary.
/// Port counters as `ovs-ofctl dump-ports` prints them (a `?` for what a
/// port does not count, as OVS prints it).
pub fn dump_ports(ports: &[PortStats]) -> String {
    let mut out = format!(
        "OFPST_PORT reply (OF1.3) (xid=0x2): {} ports\n",
        ports.len()
    );
    for p in ports {
        let name = if p.number == messages::ofp::port::LOCAL {
            "LOCAL".to_string()
        } else {
            format!("{:>2}", p.number)
        };
        let _ = writeln!(
            out,
            "  port {name}: rx pkts={}, bytes={}, drop={}, errs={}, frame=?, over=?, crc=?",
            p.rx_packets, p.rx_bytes, p.rx_dropped, p.rx_errors
        );
        let _ = writeln!(
            out,
            "           tx pkts={}, bytes={}, drop={}, errs={}, coll=?",
            p.tx_packets, p.tx_bytes, p.tx_dropped, p.tx_errors
        );
        if let Some(d) = p.duration {
            let _ = writeln!(out, "           duration={:.3}s", d.as_secs_f64());
        }
    }
    out
}

/// The `fail mode` line of `upcall-show`: what the switch does without a
/// controller (OVS's `fail_mode`) and, for a standalone switch with
/// controllers, whether it has failed open now (no controller connected
/// for three probe intervals: its rules flushed, NORMAL switching).
pub fn fail_mode_line(standalone: bool, has_controllers: bool, failed_open: bool) -> String {
    let state = match (standalone, has_controllers, failed_open) {
        (false, _, _) => "secure (rules kept while no controller is connected)",
        (true, _, true) => {
            "standalone, failed open (no controller connected: rules flushed, NORMAL switching)"
        }
        (true, false, false) => "standalone (no controllers: priority=0,actions=NORMAL in table 0)",
        (true, true, false) => "standalone, not failed open",
    };
    format!("  fail mode     : {state}\n")
}

/// What native tunnelling counted, for `upcall-show` (nothing when
/// tunnels are not native).
pub fn native_tunnel_lines(nt: Option<&actors::xlate::native_tunnel::NativeTunnel>) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(nt) = nt else {
        return String::new();
    };
    let c = &nt.counters;
    format!(
        "  native tunnel : dropped no_route:{} neighbour_miss:{}, neighbours:{} learned:{} expired:{} arp_requests:{}\n",
        c.no_route.load(Relaxed),
        c.neighbour_miss.load(Relaxed),
        nt.neighbours().len(),
        c.neighbours_learned.load(Relaxed),
        c.neighbours_expired.load(Relaxed),
        c.arp_requests.load(Relaxed)
    )
}

/// `ovs-appctl tnl/neigh/show`: the tunnel neighbour cache (an expired
/// entry not yet removed is `STALE`, as OVS marks it).
pub fn tnl_neigh_show(
    nt: Option<&actors::xlate::native_tunnel::NativeTunnel>,
    bridge: &str,
) -> String {
    let mut out = format!("{:<46}{:<20}Bridge\n", "IP", "MAC");
    out.push_str(&"=".repeat(74));
    out.push('\n');
    for (ip, mac, stale) in nt.map(|n| n.neighbours()).unwrap_or_default() {
        let mac = mac.map(|b| format!("{b:02x}")).join(":");
        let stale = if stale { " STALE" } else { "" };
        let _ = writeln!(out, "{:<46}{mac}   {bridge}{stale}", ip.to_string());
    }
    out
}

/// `ovs-appctl ovs/route/show`: the underlay's own addresses (`local`)
/// and their subnets (`Cached`, as OVS shows the host's routes), then the
/// routes added (`User`), in OVS's order of priority.
pub fn route_show(nt: &actors::xlate::native_tunnel::NativeTunnel, dev: &str) -> String {
    let mut out = String::from("Route Table:\n");
    for &(a, _) in &nt.underlay.addresses {
        let _ = writeln!(out, "Cached: {a}/32 dev {dev} SRC {a} local");
    }
    let mut user = nt.routes();
    user.sort_by_key(|r| std::cmp::Reverse(r.plen));
    for r in &user {
        let gw = r.gateway.map(|g| format!(" GW {g}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "User: {}/{} dev {dev}{gw} SRC {}",
            r.prefix, r.plen, r.src
        );
    }
    let mut cached: Vec<_> = nt
        .underlay
        .addresses
        .iter()
        .map(|&(a, plen)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(plen)).unwrap_or(0);
            (std::net::Ipv4Addr::from(u32::from(a) & mask), plen, None, a)
        })
        .chain(
            nt.host_routes()
                .into_iter()
                .map(|r| (r.prefix, r.plen, r.gateway, r.src)),
        )
        .collect();
    cached.sort_by_key(|&(net, plen, gw, src)| (std::cmp::Reverse(plen), net, gw, src));
    cached.dedup();
    for (net, plen, gateway, src) in cached {
        let gw = gateway.map(|g| format!(" GW {g}")).unwrap_or_default();
        let _ = writeln!(out, "Cached: {net}/{plen} dev {dev}{gw} SRC {src}");
    }
    out
}

/// `upcall-show`: the datapath, the upcall path, and each port's drops.
pub fn upcall_show(
    dpif: &dyn Dpif,
    s: &PipelineStats,
    n_ukeys: usize,
    n_handlers: usize,
    n_revalidators: usize,
) -> String {
    let g = PipelineStats::get;
    let (dp_kind, dp, ports) = (dpif.kind(), dpif.stats(), dpif.port_stats());
    let mut out = String::new();
    let _ = writeln!(out, "{dp_kind}@upcalld:");
    let _ = writeln!(
        out,
        "  flows         : (current {}) (limit {})",
        dp.n_flows,
        g(&s.flow_limit)
    );
    let _ = writeln!(
        out,
        "  dump duration : {}ms (cpu; reading the dump {}ms), {}ms (wall)",
        g(&s.dump_duration_ms),
        g(&s.dump_read_ms),
        g(&s.dump_wall_ms)
    );
    let _ = writeln!(
        out,
        "  keys          : {n_ukeys} (dropped as missing from dumps: {})",
        g(&s.ukeys_missing)
    );
    let _ = writeln!(out, "  ufid enabled  : true");
    let _ = writeln!(out, "  handlers      : {n_handlers}");
    let _ = writeln!(
        out,
        "  revalidators  : {n_revalidators} ({} rounds, {} flows translated again)",
        g(&s.revalidation_rounds),
        g(&s.flows_retranslated)
    );
    let _ = writeln!(out, "  rules version : {}", g(&s.rules_version));
    let _ = writeln!(
        out,
        "  datapath      : hit:{} missed:{} lost:{}",
        dp.n_hit, dp.n_missed, dp.n_lost
    );
    if let Some(line) = backend_line(dp_kind, &dpif.backend_counters()) {
        out.push_str(&line);
    }
    let _ = writeln!(
        out,
        "  upcalls       : received:{} handled:{} duplicate:{}",
        g(&s.upcalls_received),
        g(&s.upcalls_handled),
        g(&s.duplicate_upcalls)
    );
    let dropped: Vec<String> = DropReason::ALL
        .iter()
        .map(|r| format!("{}:{}", r.name(), s.dropped(*r)))
        .collect();
    let _ = writeln!(out, "  dropped       : {}", dropped.join(" "));
    let _ = writeln!(
        out,
        "  flow ops      : put:{} modify:{} delete:{} execute:{} errors:{} batches:{}",
        g(&s.flow_puts),
        g(&s.flow_modifies),
        g(&s.flow_deletes),
        g(&s.executes),
        g(&s.op_errors),
        g(&s.dpif_batches)
    );
    let p = &s.packet_ins;
    let _ = writeln!(
        out,
        "  packet-ins    : bypassed:{} queued:{} rate_dropped:{} queue_full:{}",
        g(&p.bypassed),
        g(&p.queued),
        g(&p.rate_dropped),
        g(&p.queue_full)
    );
    if g(&s.op_errors) > 0 {
        let _ = writeln!(
            out,
            "  refused       : puts {} deletes {} executes {} (last: {})",
            g(&s.put_errors),
            g(&s.delete_errors),
            g(&s.execute_errors),
            s.last_op_error.lock()
        );
    }
    let restarts: Vec<String> = ACTORS
        .iter()
        .map(|a| format!("{a}:{}", s.restarts(a)))
        .collect();
    let _ = writeln!(out, "  restarts      : {}", restarts.join(" "));
    for p in &ports {
        let _ = writeln!(
            out,
            "  port {:<8} : rx:{} rx_dropped:{} rx_errors:{} tx:{} tx_dropped:{} tx_errors:{} ({})",
            p.number,
            p.rx_packets,
            p.rx_dropped,
            p.rx_errors,
            p.tx_packets,
            p.tx_dropped,
            p.tx_errors,
            p.name
        );
    }
    out
}

/// A ufid as OVS prints it: `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
fn ufid_string(u: messages::dpif::Ufid) -> String {
    let h = format!("{u:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}
/// `ovs-appctl dpctl/show`: the datapath's lookups, flows and ports.
pub fn dpctl_show(dp_kind: &str, dp: &DpStats, ports: &[PortInfo]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{dp_kind}@upcalld:");
    let _ = writeln!(
        out,
        "  lookups: hit:{} missed:{} lost:{}",
        dp.n_hit, dp.n_missed, dp.n_lost
    );
    let _ = writeln!(out, "  flows: {}", dp.n_flows);
    for p in ports {
        let _ = writeln!(out, "  port {}: {}", p.number, p.name);
    }
    out
}

/// `ovs-appctl coverage/show`: upcalld's event counters, named and laid
/// out as OVS's (totals only: upcalld keeps no per-interval rates).
pub fn coverage_show(s: &PipelineStats, dp: &DpStats) -> String {
    let g = PipelineStats::get;
    let mut events: Vec<(String, u64)> = vec![
        ("datapath_hit".into(), dp.n_hit),
        ("datapath_missed".into(), dp.n_missed),
        ("datapath_lost".into(), dp.n_lost),
        ("upcall_received".into(), g(&s.upcalls_received)),
        ("upcall_handled".into(), g(&s.upcalls_handled)),
        ("upcall_duplicate".into(), g(&s.duplicate_upcalls)),
        ("dpif_flow_put".into(), g(&s.flow_puts)),
        ("dpif_flow_modify".into(), g(&s.flow_modifies)),
        ("dpif_flow_del".into(), g(&s.flow_deletes)),
        ("dpif_execute".into(), g(&s.executes)),
        ("dpif_op_error".into(), g(&s.op_errors)),
        ("dpif_batch".into(), g(&s.dpif_batches)),
        ("revalidate_round".into(), g(&s.revalidation_rounds)),
        ("revalidate_retranslate".into(), g(&s.flows_retranslated)),
    ];
    for r in DropReason::ALL {
        events.push((format!("upcall_drop_{}", r.name()), s.dropped(r)));
    }
    let mut out = String::from(
        "Event coverage, avg rate over last: 5 seconds, last minute, last hour,  hash=00000000:\n",
    );
    let mut zero = 0;
    for (name, n) in events {
        if n == 0 {
            zero += 1;
            continue;
        }
        let _ = writeln!(
            out,
            "{name:<24} {:>5.1}/sec {:>9.3}/sec {:>8.4}/sec   total: {n}",
            0.0, 0.0, 0.0
        );
    }
    let _ = writeln!(out, "{zero} events never hit");
    out
}

/// `upcall-show`'s line of the backend's own counters (none: no line).
fn backend_line(dp_kind: &str, counters: &[(&str, u64)]) -> Option<String> {
    if counters.is_empty() {
        return None;
    }
    let counters: Vec<String> = counters.iter().map(|(n, v)| format!("{n}:{v}")).collect();
    Some(format!("  {dp_kind:<13} : {}\n", counters.join(" ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upcall_show_prints_the_backends_own_counters() {
        assert_eq!(
            backend_line("kernel", &[("ops", 7), ("bad_flows", 2)]).as_deref(),
            Some("  kernel        : ops:7 bad_flows:2\n")
        );
        assert_eq!(backend_line("userspace", &[]), None);
        // The userspace datapath counts what its meters dropped.
        let netdev = crate::dpif_netdev::Netdev::new(Default::default());
        let s = upcall_show(&netdev, &PipelineStats::default(), 0, 1, 1);
        assert!(s.starts_with("userspace@upcalld:\n"), "{s}");
        assert!(s.contains("  userspace     : meter_drops:0\n"), "{s}");
    }
}
