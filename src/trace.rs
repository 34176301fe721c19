//! `upcalld trace`: what OVS's `ofproto/trace` prints, for one flow or for
//! a file of flows (the oracle's TSV format).

use messages::flow::{CS_NEW, CS_TRACKED};
use messages::format::megaflow::format_megaflow;
use messages::format::odp_actions::format_odp_actions;
use messages::format::{ct_state_flags, ipv6};
use messages::group::Group;
use messages::meter::Meter;
use messages::odp::{NatAction, NatAddrs, NatKind};
use messages::parse::flow::parse_trace_flow;
use messages::parse::rules::{parse_group, parse_meter};
use messages::tlv::TlvMap;
use messages::Flow;

use std::collections::{BTreeSet, VecDeque};
use std::fmt::Write;
use std::sync::Arc;

use actors::tables::Tables;
use actors::xlate::{xlate, Recirculation, XlateConfig, XlateError};

/// How many passes one trace follows at most (a pipeline that always
/// recirculates would otherwise never end).
pub const MAX_PASSES: usize = 64;

/// One pass of a trace: the lines `ofproto/trace` prints for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TracePass {
    /// For a recirculated pass, the banner between the `=` rules:
    /// `recirc(0x1) - resume conntrack with …` and the NAT it simulates.
    pub banner: Vec<String>,
    /// The text after `Megaflow: `.
    pub megaflow: String,
    /// The text after `Datapath actions: `.
    pub actions: String,
    /// OVS's `Translation failed (…), packet is dropped.`, if it failed.
    pub failure: Option<String>,
    /// The actions need the slow path (OVS's `SLOW_ACTION`), which OVS
    /// explains after them ([`SLOW_ACTION_NOTE`]).
    pub slow_action: bool,
}

/// What OVS's `ofproto/trace` prints after the datapath actions of a flow
/// handled in the slow path for its actions, one line each.
pub const SLOW_ACTION_NOTE: [&str; 2] = [
    "This flow is handled by the userspace slow path because it:",
    "  - Uses action(s) not supported by datapath.",
];

/// What `ofproto/trace` prints: the first pass, then each recirculation
/// it forked, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceResult {
    /// The first pass's text after `Datapath actions: `.
    pub actions: String,
    /// The first pass's text after `Megaflow: `.
    pub megaflow: String,
    pub passes: Vec<TracePass>,
}

/// Traces one flow in `ofproto/trace` syntax on the switch `cfg` describes.
/// A flow OVS would reject gets OVS's message, after
/// `Bad openflow flow syntax: FLOW: `.
pub fn trace(tables: &Tables, flow_text: &str, cfg: &XlateConfig) -> Result<TraceResult, String> {
    trace_ct(tables, flow_text, cfg, &[])
}

/// [`trace`], resuming each conntrack recirculation with the next state
/// of `ct_next` (`--ct-next`), or OVS's default `trk|new` once they run
/// out.
pub fn trace_ct(
    tables: &Tables,
    flow_text: &str,
    cfg: &XlateConfig,
    ct_next: &[u8],
) -> Result<TraceResult, String> {
    trace_in(&mut tables.clone(), flow_text, cfg, ct_next)
}

/// [`trace_ct`] on tables that keep what the trace learned: with
/// `cfg.side_effects` (`upcalld trace --learn`, OVS's `-generate`), the
/// rules each pass's `learn` actions build are added before the next pass
/// and the next flow, as they are for a real packet. Without it a trace
/// changes nothing.
fn trace_in(
    tables: &mut Tables,
    flow_text: &str,
    cfg: &XlateConfig,
    ct_next: &[u8],
) -> Result<TraceResult, String> {
    let flow = parse_trace_flow(flow_text)
        .map_err(|e| format!("Bad openflow flow syntax: {flow_text}: {e}"))?;
    let mut ct_next = ct_next.iter().copied();
    let mut passes = Vec::new();
    let mut queue: VecDeque<(Vec<String>, Flow)> = VecDeque::from([(Vec::new(), flow)]);
    while let Some((banner, flow)) = queue.pop_front() {
        if passes.len() == MAX_PASSES {
            break;
        }
        let out = xlate(tables, &flow, cfg);
        for r in &out.recircs {
            let state = ct_next.next();
            queue.push_back(resume(r, state));
        }
        if cfg.side_effects {
            for learned in out.learned {
                tables.learn(learned);
            }
        }
        passes.push(TracePass {
            banner,
            megaflow: format_megaflow(&flow, &out.wc),
            actions: format_odp_actions(&out.actions),
            failure: out.error.map(|e| {
                let why = match e {
                    XlateError::RecursionTooDeep => "Recursion too deep",
                    XlateError::TooManyResubmits => "Too many resubmits",
                    XlateError::NoRecirculationContext => "No recirculation context",
                    XlateError::TooManyMplsLabels => "Too many MPLS labels",
                    XlateError::InvalidTunnelMetadata => "Invalid Geneve tunnel metadata",
                };
                format!("Translation failed ({why}), packet is dropped.")
            }),
            slow_action: out.slow_action,
        });
    }
    Ok(TraceResult {
        actions: passes[0].actions.clone(),
        megaflow: passes[0].megaflow.clone(),
        passes,
    })
}

/// The flow and banner of a conntrack recirculation, as OVS's
/// `ofproto_trace_recirc_node` makes them: the next `--ct-next` state (or
/// `trk|new`), and NAT simulated by taking the first address and port of
/// its range.
fn resume(r: &Recirculation, state: Option<u8>) -> (Vec<String>, Flow) {
    let mut flow = r.flow;
    let mut head = format!("recirc({:#x})", r.id);
    match state {
        Some(s) => {
            let _ = write!(
                head,
                " - resume conntrack with ct_state={}",
                ct_state_flags(s)
            );
            flow.ct_state = s;
        }
        None => {
            head.push_str(
                " - resume conntrack with default ct_state=trk|new (use --ct-next to customize)",
            );
            flow.ct_state = CS_TRACKED | CS_NEW;
        }
    }
    let mut banner = vec![head];
    if let Some(nat) = &r.nat {
        banner.push("Replacing src/dst IP/ports to simulate NAT:".into());
        banner.push(format!(" Initial flow: {}", ip_flow(&flow, nat)));
        simulate_nat(&mut flow, nat);
        banner.push(format!(" Modified flow: {}", ip_flow(&flow, nat)));
    }
    (banner, flow)
}

fn simulate_nat(flow: &mut Flow, nat: &NatAction) {
    let Some(kind) = nat.kind else { return };
    let src = kind == NatKind::Src;
    match nat.addrs {
        Some(NatAddrs::V4 { min, .. }) if src => flow.nw_src = min,
        Some(NatAddrs::V4 { min, .. }) => flow.nw_dst = min,
        Some(NatAddrs::V6 { min, .. }) if src => flow.ipv6_src = min,
        Some(NatAddrs::V6 { min, .. }) => flow.ipv6_dst = min,
        None => return,
    }
    if let Some((port, _)) = nat.ports.filter(|(p, _)| *p != 0) {
        if src {
            flow.tp_src = port;
        } else {
            flow.tp_dst = port;
        }
    }
}

/// OVS's `oftrace_print_ip_flow`: the addresses and ports, by the NAT
/// range's family (empty for a NAT without a range).
fn ip_flow(flow: &Flow, nat: &NatAction) -> String {
    match nat.addrs {
        Some(NatAddrs::V4 { .. }) => format!(
            "nw_src={},tp_src={},nw_dst={},tp_dst={}",
            std::net::Ipv4Addr::from(flow.nw_src),
            flow.tp_src,
            std::net::Ipv4Addr::from(flow.nw_dst),
            flow.tp_dst
        ),
        Some(NatAddrs::V6 { .. }) => format!(
            "ipv6_src=[{}],tp_src={},ipv6_dst=[{}],tp_dst={}",
            ipv6(&flow.ipv6_src),
            flow.tp_src,
            ipv6(&flow.ipv6_dst),
            flow.tp_dst
        ),
        None => String::new(),
    }
}

/// The trace as text: each pass's `Megaflow:` and `Datapath actions:`
/// lines, recirculated passes under OVS's banner.
pub fn format_trace(r: &TraceResult) -> String {
    let rule = "=".repeat(79);
    let mut s = String::new();
    for (i, p) in r.passes.iter().enumerate() {
        if i > 0 {
            let _ = writeln!(s, "\n{rule}");
            for line in &p.banner {
                let _ = writeln!(s, "{line}");
            }
            let _ = writeln!(s, "{rule}\n");
        }
        let _ = writeln!(s, "Megaflow: {}", p.megaflow);
        let _ = writeln!(s, "Datapath actions: {}", p.actions);
        if let Some(f) = &p.failure {
            let _ = writeln!(s, "{f}");
        }
        if p.slow_action {
            let _ = writeln!(s, "\n{}", SLOW_ACTION_NOTE.join("\n"));
        }
    }
    s
}

/// The switch `upcalld trace` models: a bridge on Open vSwitch's dummy
/// datapath, whose own port (`LOCAL`) is datapath port 100, with the ports
/// `ports` (all port numbers when `None`).
pub fn dummy_bridge(ports: Option<BTreeSet<u32>>) -> XlateConfig {
    const LOCAL: u32 = 100;
    XlateConfig {
        local_port: LOCAL,
        ports: ports.map(|mut p| {
            p.insert(LOCAL);
            Arc::new(p)
        }),
        netdev_max_backlog: netdev_max_backlog(),
        ..XlateConfig::default()
    }
}

/// This host's `net.core.netdev_max_backlog`, as OVS reads it (Linux's
/// default, 1000, when it cannot be read).
fn netdev_max_backlog() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/netdev_max_backlog")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1000)
}

/// The switch `upcalld trace` models, with NORMAL's bridge: the ports
/// (`ports`, else the numbered ports of `config`, if it has any) on OVS's dummy datapath,
/// their VLAN settings from `config`, and a MAC table loaded from
/// `fdb` (`fdb/show` text, with where it came from for errors).
pub fn bridge(
    ports: Option<BTreeSet<u32>>,
    config: Option<&crate::config::Config>,
    fdb: Option<(String, &str)>,
) -> anyhow::Result<XlateConfig> {
    // A configuration without numbered ports (zone policies only, say)
    // leaves every port number existing.
    let ports = ports.or_else(|| {
        let numbered: BTreeSet<u32> = config?.ports.iter().filter_map(|p| p.number).collect();
        (!numbered.is_empty()).then_some(numbered)
    });
    let mut cfg = dummy_bridge(ports);
    if let Some(c) = config {
        cfg.vlans = Arc::new(c.port_vlans()?);
        cfg.mac = Arc::new(c.mac_table());
        cfg.tunnels = Arc::new(c.tunnel_ports()?);
        cfg.native_tunnel = c.native_tunnel()?;
        cfg.zone_timeout_policies = Arc::new(c.zone_timeout_policies()?);
    }
    if let Some((origin, text)) = fdb {
        let entries = actors::mac_learning::parse_fdb(text, messages::ofp::port::LOCAL)
            .map_err(|e| anyhow::anyhow!("{origin}: {e}"))?;
        cfg.mac.load(&entries, actors::mac_learning::now_secs());
    }
    Ok(cfg)
}

/// Applies a trace setup file to the switch a trace models: one command
/// a line, as the daemon's `ctl` takes them (`#` starts a comment).
/// Known: `add-tlv-map MAPPINGS` (as `ovs-ofctl add-tlv-map BRIDGE
/// MAPPINGS`), into `tlv`, the map the trace runs with
/// (`messages::tlv::with_map`); `add-group GROUP` and `add-meter METER`
/// (as `ovs-ofctl add-group BRIDGE GROUP`, `-O OpenFlow13 add-meter
/// BRIDGE METER`), returned for the tables, in order.
pub fn apply_setup(tlv: &mut TlvMap, origin: &str, text: &str) -> anyhow::Result<Setup> {
    let mut setup = Setup::default();
    let groups = &mut setup.groups;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (cmd, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let at = || format!("{origin}:{}", n + 1);
        match cmd {
            "add-tlv-map" => messages::tlv::parse_tlv_requests(arg)
                .and_then(|reqs| tlv.add(&reqs).map_err(String::from))
                .map_err(|e| anyhow::anyhow!("{}: add-tlv-map: {e}", at()))?,
            "add-group" => {
                // Bucket actions may name the tun_metadata mapped so far.
                let map = Arc::new(tlv.clone());
                let g = messages::tlv::with_map(&map, || parse_group(arg))
                    .map_err(|e| anyhow::anyhow!("{}: add-group: {e}", at()))?;
                if groups.iter().any(|h| h.id == g.id) {
                    anyhow::bail!("{}: add-group: group {} already exists", at(), g.id);
                }
                groups.push(g);
            }
            "add-meter" => {
                let m =
                    parse_meter(arg).map_err(|e| anyhow::anyhow!("{}: add-meter: {e}", at()))?;
                if setup.meters.iter().any(|n| n.id == m.id) {
                    anyhow::bail!("{}: add-meter: meter {} already exists", at(), m.id);
                }
                setup.meters.push(m);
            }
            other => anyhow::bail!(
                "{}: unknown setup command {other:?} (known: add-tlv-map, add-group, add-meter)",
                at()
            ),
        }
    }
    Ok(setup)
}

/// What a setup file adds besides TLV mappings, in order.
#[derive(Debug, Default)]
pub struct Setup {
    pub groups: Vec<Group>,
    pub meters: Vec<Meter>,
}

impl Setup {
    /// Adds the groups and meters to `tables`, as the daemon would.
    pub fn apply_to(self, tables: &mut Tables) -> anyhow::Result<()> {
        for g in self.groups {
            tables.add_group(g)?;
        }
        for m in self.meters {
            tables.add_meter(m)?;
        }
        Ok(())
    }
}

/// Parses a port list such as `1-8,12`.
pub fn parse_port_list(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut ports = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("bad port list {s:?}: {t:?} is not a port number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 65535 {
                    return Err(format!("bad port list {s:?}: range {part:?}"));
                }
                ports.extend(a..=b);
            }
            None => {
                ports.insert(num(part)?);
            }
        }
    }
    Ok(ports)
}

/// One TSV line per flow: `flow<TAB>actions<TAB>megaflow` of the first
/// pass, or `flow<TAB>ERROR<TAB><TAB>message` for a flow OVS would reject.
/// With `cfg.side_effects`, each flow sees the rules earlier flows learned.
/// As in OVS, the recirculation ids a flow's trace allocated are freed
/// before the next flow (whose equal frozen states then get new ids), so
/// the ids printed are those a fresh OVS prints for the same sequence.
pub fn trace_lines(tables: &Tables, flows: &str, cfg: &XlateConfig) -> String {
    let mut tables = tables.clone();
    let mut out = String::new();
    for line in flows.lines() {
        let flow = line.trim();
        if flow.is_empty() || flow.starts_with('#') {
            continue;
        }
        match trace_in(&mut tables, flow, cfg, &[]) {
            // The slow-path note as OVS's peer script gives it: one
            // column, lines joined by blanks.
            Ok(r) if r.passes[0].slow_action => out.push_str(&format!(
                "{flow}\t{}\t{}\t{}\n",
                r.actions,
                r.megaflow,
                SLOW_ACTION_NOTE.map(str::trim).join(" ")
            )),
            Ok(r) => {
                out.push_str(&format!("{flow}\t{}\t{}\n", r.actions, r.megaflow));
            }
            Err(e) => out.push_str(&format!("{flow}\tERROR\t\t{e}\n")),
        }
        cfg.recirc.free_unheld();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists() {
        assert_eq!(
            parse_port_list("1-3,8")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 8]
        );
        assert!(parse_port_list("1-x").is_err());
        assert!(parse_port_list("5-2").is_err());
    }

    #[test]
    fn a_setup_file_adds_tlv_mappings_and_names_bad_lines() {
        let mut tlv = TlvMap::default();
        apply_setup(
            &mut tlv,
            "setup",
            "# OVN's option\nadd-tlv-map {class=0x102,type=0x80,len=4}->tun_metadata0\n",
        )
        .unwrap();
        assert_eq!(tlv.by_option(0x102, 0x80).map(|(i, _)| i), Some(0));
        let e = apply_setup(&mut tlv, "setup", "\nadd-port foo\n").unwrap_err();
        assert!(
            e.to_string().contains("setup:2: unknown setup command"),
            "{e}"
        );
        let e = apply_setup(&mut tlv, "setup", "add-meter meter=1 kbps\n").unwrap_err();
        assert!(
            e.to_string()
                .contains("setup:1: add-meter: 1:13: must specify bands"),
            "{e}"
        );
        let s = apply_setup(
            &mut tlv,
            "setup",
            "add-meter meter=1 pktps bands=type=drop rate=5\nadd-meter meter=3 kbps bands=type=drop rate=9\n",
        )
        .unwrap();
        let mut tables = Tables::new();
        s.apply_to(&mut tables).unwrap();
        assert_eq!(tables.meter(3).map(|e| e.dp_id), Some(1));
        let e = apply_setup(
            &mut tlv,
            "s",
            "add-tlv-map {class=1,type=1,len=4}->tun_metadata0",
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("s:1: add-tlv-map: tun_metadata0 is already mapped"),
            "{e}"
        );
    }

    #[test]
    fn outputs_to_missing_ports_are_dropped() {
        let rules =
            messages::parse::rules::parse_rules("priority=1,actions=output:2,output:9,LOCAL")
                .unwrap();
        let tables = Tables::from_rules(rules);
        let flow = "in_port=1,dl_type=0x88cc";
        let all = trace(&tables, flow, &dummy_bridge(None)).unwrap();
        assert_eq!(all.actions, "2,9,100");
        let some = dummy_bridge(Some(parse_port_list("1-8").unwrap()));
        assert_eq!(trace(&tables, flow, &some).unwrap().actions, "2,100");
    }
}

#[cfg(test)]
mod flood_tests {
    use super::*;

    fn actions(rules: &str, flow: &str, ports: &str) -> String {
        let rules = messages::parse::rules::parse_rules(rules).unwrap();
        let tables = Tables::from_rules(rules);
        let cfg = dummy_bridge(Some(parse_port_list(ports).unwrap()));
        trace(&tables, flow, &cfg).unwrap().actions
    }

    #[test]
    fn flood_and_all_output_to_every_port_but_the_input() {
        // OVS's flood_packets: every port of the bridge, LOCAL included,
        // except the one the packet came in on.
        for action in ["FLOOD", "ALL", "output:FLOOD", "output:ALL"] {
            let rules = format!("priority=1,actions={action}");
            assert_eq!(
                actions(&rules, "in_port=2,dl_type=0x88cc", "1-4"),
                "1,3,4,100"
            );
            assert_eq!(
                actions(&rules, "in_port=9,dl_type=0x88cc", "1-2"),
                "1,2,100"
            );
        }
    }

    #[test]
    fn output_to_table_goes_through_the_tables_again() {
        let rules =
            "table=0,priority=1,in_port=1,actions=mod_dl_dst:02:00:00:00:00:01,resubmit(,1)\n\
                     table=0,priority=2,in_port=1,dl_dst=02:00:00:00:00:01,actions=output:3\n\
                     table=1,priority=1,actions=output:TABLE\n";
        let out = actions(rules, "in_port=1,dl_type=0x88cc", "1-4");
        assert_eq!(out, "set(eth(dst=02:00:00:00:00:01)),3");
    }
}
