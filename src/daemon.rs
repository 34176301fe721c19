//! `upcalld run`: the datapath, its ports, the actor pipeline, the control
//! socket and the metrics endpoint, until SIGTERM (or SIGINT). SIGHUP
//! reloads the rules file as one atomic replacement.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actors::dpif_writer::WriterConfig;
use actors::mac_learning::{format_fdb, format_fdb_stats, now_secs};
use actors::pipeline::{Pipeline, PipelineConfig};
use actors::protocol::{ChangePorts, GetSnapshot, GroupMod, GroupModReply, MeterMod, RuleChange};
use actors::revalidator::RevalidatorConfig;
use actors::tables::Tables;
use actors::xlate::native_tunnel::NativeTunnel;
use actors::xlate::XlateConfig;
use anyhow::Context as _;
use messages::dpif::{Dpif, PortKind, PortSpec};
use messages::ofp::Rule;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{Config, DatapathType, FailMode, OnExit};
use crate::control::{self, Body, Command, Reply, Request};
use crate::dpif_kernel::{KernelDpif, KernelDpifConfig};
use crate::dpif_netdev::conntrack::{dump, Conntrack};
use crate::dpif_netdev::{Netdev, NetdevConfig};
use crate::lock;
use crate::netns::Host;
use crate::openflow;
use crate::show;
use messages::dpif::DpifOp;
use messages::unixctl;

/// The rules the demo loads when no rules file is configured: the two
/// hosts can talk, except TCP port 9 (discard), which is dropped.
pub const DEMO_RULES: &str = "\
table=0,priority=200,tcp,tp_dst=9,actions=drop
table=0,priority=100,in_port=1,actions=output:2
table=0,priority=100,in_port=2,actions=output:1
";

/// Parses a rules text (`ovs-ofctl add-flows` syntax); errors read
/// `origin:line:column: ...`.
pub fn parse_rules(text: &str, origin: &str) -> anyhow::Result<Vec<Rule>> {
    messages::parse::rules::parse_rules(text)
        .map_err(|e| anyhow::anyhow!("{}", e.with_file(origin)))
}

/// Reads a rules file, logging the warnings parsing gave.
fn read_rules_file(path: &std::path::Path) -> anyhow::Result<Vec<Rule>> {
    let (rules, warnings) = crate::rules::read_file(path).map_err(anyhow::Error::msg)?;
    for w in warnings {
        tracing::warn!("{w}");
    }
    Ok(rules)
}

/// The demo's two hosts.
fn demo_hosts() -> anyhow::Result<Vec<Host>> {
    let a = Host::create(
        "upcalld-a",
        "upc-a",
        Ipv4Addr::new(10, 99, 0, 1),
        [2, 0, 0, 0, 0x99, 1],
    )
    .context("creating the demo namespace upcalld-a (needs root)")?;
    let b = Host::create(
        "upcalld-b",
        "upc-b",
        Ipv4Addr::new(10, 99, 0, 2),
        [2, 0, 0, 0, 0x99, 2],
    )
    .context("creating the demo namespace upcalld-b")?;
    Ok(vec![a, b])
}

/// What the control socket's handlers need.
struct Ctl {
    pipeline: Rc<Pipeline>,
    dpif: Arc<dyn Dpif>,
    /// The userspace datapath's connection tracker (none on the kernel's).
    conntrack: Option<Arc<Conntrack>>,
    config: Config,
    /// The switch handlers translate for, so that `ctl trace` answers what
    /// they would install.
    xlate: XlateConfig,
    /// What the datapath lacks for conntrack rules, if anything.
    conntrack_missing: Option<String>,
    /// Wakes the OpenFlow port watcher after `add-port`/`del-port`.
    port_events: futures::channel::mpsc::UnboundedSender<()>,
}

/// OVS refuses a rule that sends to a group that does not exist
/// (`OFPBAC_BAD_OUT_GROUP`), or through a meter that does not
/// (`OFPMMFC_INVALID_METER`).
pub fn refuse_missing_groups(rules: &[Rule], tables: &Tables) -> Result<(), String> {
    for r in rules {
        if let Some(m) = r.instructions.meter.filter(|&m| tables.meter(m).is_none()) {
            return Err(format!(
                "table={},priority={}: meter {m} does not exist (OFPMMFC_INVALID_METER): add it first",
                r.table, r.priority
            ));
        }
        if let Some(g) = r
            .groups_used()
            .into_iter()
            .find(|&g| tables.group(g).is_none())
        {
            return Err(format!(
                "table={},priority={}: group {g} does not exist (OFPBAC_BAD_OUT_GROUP): add it first",
                r.table, r.priority
            ));
        }
    }
    Ok(())
}

/// Refuses rules that need conntrack on a datapath that lacks it.
fn refuse_conntrack(rules: &[Rule], missing: Option<&str>) -> Result<(), String> {
    let Some(lacks) = missing else {
        return Ok(());
    };
    match rules.iter().position(Rule::uses_conntrack) {
        Some(i) => Err(format!(
            "rule {} ({}) needs connection tracking (ct, ct_clear or a ct_* match), \
             but the datapath lacks {lacks}",
            i + 1,
            messages::format::ofp_rule::format_rule(&rules[i])
        )),
        None => Ok(()),
    }
}

impl Ctl {
    /// The rule-table's current snapshot.
    async fn snapshot(&self) -> Result<Arc<actors::tables::Tables>, String> {
        self.pipeline
            .rule_table
            .send(GetSnapshot)
            .await
            .map_err(|e| format!("rule-table unavailable: {e}"))
    }

    /// Traces `flow` against the current rules, as `ctl trace` and
    /// `ofproto/trace` both do.
    /// `upcall-show` and `upcall/show`: the pipeline's counters, the
    /// fail mode and whether the switch has failed open now (from the
    /// rules in force), and native tunnelling's counters.
    async fn upcall_show(&self) -> Result<String, String> {
        let failed_open = self.snapshot().await?.fail_open();
        let of = &self.config.openflow;
        Ok(show::upcall_show(
            self.dpif.as_ref(),
            &self.pipeline.stats,
            self.pipeline.ukeys.len(),
            self.config.handlers,
            self.config.revalidators,
        ) + &show::fail_mode_line(
            of.fail_mode == FailMode::Standalone,
            !of.controllers.is_empty(),
            failed_open,
        ) + &show::native_tunnel_lines(self.xlate.native_tunnel.as_deref()))
    }

    async fn trace(&self, flow: &str) -> Result<crate::trace::TraceResult, String> {
        let tables = self.snapshot().await?;
        crate::trace::trace(&tables, flow.trim(), &self.xlate)
    }

    async fn change(&self, change: RuleChange) -> Result<String, String> {
        if let RuleChange::Add(rules) | RuleChange::Replace(rules) = &change {
            refuse_conntrack(rules, self.conntrack_missing.as_deref())?;
            if rules
                .iter()
                .any(|r| !r.groups_used().is_empty() || r.instructions.meter.is_some())
            {
                let tables = self.snapshot().await?;
                refuse_missing_groups(rules, &tables)?;
            }
        }
        let r = self
            .pipeline
            .rule_table
            .send(change)
            .await
            .map_err(|e| format!("rule-table unavailable: {e}"))?;
        Ok(format!(
            "rules version {} ({} rules)\n",
            r.version, r.n_rules
        ))
    }

    /// One `ovs-appctl` command (OVS's unixctl names and output).
    async fn appctl(&self, req: unixctl::Request) -> Result<String, String> {
        let args: Vec<&str> = req.params.iter().map(String::as_str).collect();
        match req.method.as_str() {
            "ofproto/trace" => {
                let flow = match args.as_slice() {
                    [flow] => *flow,
                    [bridge, flow] if *bridge == self.config.bridge.name => *flow,
                    [bridge, _] => return Err(format!("{bridge}: unknown bridge")),
                    _ => return Err("usage: ofproto/trace [BRIDGE] FLOW".into()),
                };
                let r = self.trace(flow).await?;
                Ok(format!(
                    "Flow: {flow}\n\nbridge(\"{}\")\n-------------\n\nFinal flow: unchanged\nMegaflow: {}\nDatapath actions: {}\n",
                    self.config.bridge.name, r.megaflow, r.actions
                ))
            }
            "tnl/neigh/show" | "tnl/arp/show" => Ok(show::tnl_neigh_show(
                self.xlate.native_tunnel.as_deref(),
                &self.config.bridge.name,
            )),
            "tnl/neigh/set" | "tnl/arp/set" | "tnl/neigh/flush" | "tnl/arp/flush"
            | "tnl/neigh/aging" | "tnl/arp/aging" | "ovs/route/add" | "ovs/route/del"
            | "ovs/route/show" | "ovs/route/lookup" => self.underlay_appctl(&req.method, &args),
            "dpctl/dump-flows" => {
                let flows = self.dpif.flow_dump().map_err(|e| e.to_string())?;
                let text = show::dump_dp_flows(&flows);
                if args.contains(&"-m") || args.contains(&"--more") {
                    return Ok(text);
                }
                // Without -m OVS leaves the ufid out.
                Ok(text
                    .lines()
                    .map(|l| l.split_once(", ").map_or(l, |(_, rest)| rest))
                    .fold(String::new(), |acc, l| acc + l + "\n"))
            }
            "dpctl/show" => Ok(show::dpctl_show(
                self.dpif.kind(),
                &self.dpif.stats(),
                &self.dpif.ports(),
            )),
            "upcall/show" => self.upcall_show().await,
            "revalidator/wait" => {
                self.pipeline
                    .revalidate_now()
                    .await
                    .map_err(|e| format!("revalidators unavailable: {e}"))?;
                Ok(String::new())
            }
            "revalidator/purge" => {
                let flows = self.dpif.flow_dump().map_err(|e| e.to_string())?;
                let mut ops: Vec<DpifOp> = flows
                    .into_iter()
                    .map(|f| DpifOp::FlowDel { ufid: f.ufid })
                    .collect();
                let failed = self
                    .dpif
                    .operate(&mut ops)
                    .into_iter()
                    .filter(Result::is_err)
                    .count();
                if failed > 0 {
                    return Err(format!("{failed} datapath flows could not be deleted"));
                }
                Ok(String::new())
            }
            "coverage/show" => Ok(show::coverage_show(
                &self.pipeline.stats,
                &self.dpif.stats(),
            )),
            "vlog/set" | "vlog/list" => Ok(String::new()),
            "version" => Ok(format!(
                "upcalld {} (speaks Open vSwitch 3.1's unixctl and OpenFlow)\n",
                env!("CARGO_PKG_VERSION")
            )),
            "list-commands" => Ok(APPCTL_COMMANDS
                .iter()
                .fold("The available commands are:\n".to_string(), |acc, c| {
                    acc + "  " + c + "\n"
                })),
            "exit" => {
                // The reply goes out first; the signal loop then shuts down.
                let _ = rustix::process::kill_process(
                    rustix::process::getpid(),
                    rustix::process::Signal::TERM,
                );
                Ok(String::new())
            }
            m => Err(format!(
                "\"{m}\" is not a valid command (use list-commands to see a list of valid commands)"
            )),
        }
    }

    /// The `ovs-appctl` commands of the native tunnel's underlay: OVS's
    /// `tnl/neigh/*` (tnl-neigh-cache.c) and `ovs/route/*` (ovs-router.c),
    /// with their arguments, replies and errors.
    fn underlay_appctl(&self, method: &str, args: &[&str]) -> Result<String, String> {
        use std::net::Ipv4Addr;
        let nt = self.xlate.native_tunnel.as_deref().ok_or_else(|| {
            format!("{method}: tunnels are not native here (no [native_tunnel] in the config)")
        })?;
        let dev = underlay_device(&self.config, nt);
        let cidr = |s: &str| -> Option<(Ipv4Addr, u8)> {
            let (a, l) = s.split_once('/')?;
            let l: u8 = l.parse().ok().filter(|l| *l <= 32)?;
            Some((a.parse().ok()?, l))
        };
        let no_mark = |a: &str| {
            if a.starts_with("pkt_mark=") {
                Err(format!("{a}: routes by packet mark are not supported"))
            } else {
                Ok(())
            }
        };
        match (method.split('/').nth(1), method.rsplit('/').next(), args) {
            (Some("neigh" | "arp"), Some("set"), [bridge, ip, mac]) => {
                if *bridge != self.config.bridge.name {
                    return Err(format!("{bridge}: unknown bridge"));
                }
                let ip: Ipv4Addr = ip.parse().map_err(|_| "bad IP address".to_string())?;
                let mac = crate::config::parse_mac(mac).ok_or("bad MAC address")?;
                nt.set(ip, mac);
                Ok("OK\n".into())
            }
            (Some("neigh" | "arp"), Some("flush"), []) => {
                nt.flush();
                Ok("OK\n".into())
            }
            (Some("neigh" | "arp"), Some("aging"), []) => Ok(format!("{}\n", nt.aging_s())),
            (Some("neigh" | "arp"), Some("aging"), [secs]) => {
                let secs: u64 = secs.parse().map_err(|_| "bad aging value".to_string())?;
                nt.set_aging_s(secs)?;
                Ok("OK\n".into())
            }
            (Some("route"), Some("show"), []) => Ok(show::route_show(nt, &dev)),
            (Some("route"), Some("add"), [route, out_dev, rest @ ..]) if rest.len() <= 2 => {
                let (prefix, plen) = cidr(route).ok_or("Invalid parameters")?;
                let mut gateway = None;
                for (i, a) in rest.iter().enumerate() {
                    no_mark(a)?;
                    if i > 0 {
                        return Err("Invalid pkt_mark".into());
                    }
                    gateway = Some(
                        a.parse::<Ipv4Addr>()
                            .map_err(|_| "Invalid pkt_mark or gateway".to_string())?,
                    );
                }
                if *out_dev != dev && *out_dev != self.config.bridge.name {
                    return Err(format!(
                        "Error while inserting route: {out_dev} holds no underlay address (it is on {dev})"
                    ));
                }
                nt.add_route(prefix, plen, gateway)?;
                Ok("OK\n".into())
            }
            (Some("route"), Some("del"), [route, rest @ ..]) if rest.len() <= 1 => {
                let (prefix, plen) = cidr(route).ok_or("Invalid parameters")?;
                if let Some(a) = rest.first() {
                    no_mark(a)?;
                    return Err("Invalid pkt_mark".into());
                }
                nt.del_route(prefix, plen)?;
                Ok("OK\n".into())
            }
            (Some("route"), Some("lookup"), [ip]) => {
                let ip: Ipv4Addr = ip
                    .strip_suffix("/32")
                    .unwrap_or(ip)
                    .parse()
                    .map_err(|_| "Invalid parameters".to_string())?;
                let (next_hop, src) = nt.route(ip).ok_or("Not found")?;
                let gateway = if next_hop == ip {
                    "::".to_string()
                } else {
                    next_hop.to_string()
                };
                Ok(format!("src {src}\ngateway {gateway}\ndev {dev}\n"))
            }
            _ => Err(format!("{method}: wrong number of arguments")),
        }
    }

    async fn handle(&self, req: Request) -> Result<Reply, String> {
        let text = req.text().to_string();
        let body = text.as_str();
        match (req.command, req.body) {
            (Command::AddFlow | Command::AddFlows, Body::Rules { rules, warnings }) => {
                let output = self.change(RuleChange::Add(rules)).await?;
                Ok(Reply { output, warnings })
            }
            (Command::ReplaceFlows, Body::Rules { rules, warnings }) => {
                let output = self.change(RuleChange::Replace(rules)).await?;
                Ok(Reply { output, warnings })
            }
            (Command::DelFlows, _) => {
                let (change, warnings) = crate::rules::parse_delete(body, req.strict)?;
                let output = self.change(change).await?;
                Ok(Reply { output, warnings })
            }
            (Command::ModFlows, _) => {
                let (change, warnings) = crate::rules::parse_modify(body, req.strict)?;
                let output = self.change(change).await?;
                Ok(Reply { output, warnings })
            }
            (Command::DumpFlows, _) => {
                let rules = self
                    .pipeline
                    .dump_rules()
                    .await
                    .map_err(|e| format!("rule-table unavailable: {e}"))?;
                Ok(show::dump_flows(&rules).into())
            }
            (Command::DumpDpFlows, _) => {
                let flows = self.dpif.flow_dump().map_err(|e| e.to_string())?;
                Ok(show::dump_dp_flows(&flows).into())
            }
            (Command::DumpPorts, _) => Ok(show::dump_ports(&self.dpif.port_stats()).into()),
            (Command::UpcallShow, _) => Ok(self.upcall_show().await?.into()),
            (Command::Trace, _) => {
                let r = self.trace(body).await?;
                Ok(format!(
                    "Megaflow: {}\nDatapath actions: {}\n",
                    r.megaflow, r.actions
                )
                .into())
            }
            (command @ (Command::DumpConntrack | Command::FlushConntrack), _) => {
                let ct = self.conntrack.as_ref().ok_or(
                    "the kernel datapath's connections are in the kernel's conntrack \
                     (conntrack -L); upcalld tracks only on its userspace datapath",
                )?;
                let args = dump::parse_args(body)?;
                if command == Command::FlushConntrack {
                    if args.stats {
                        return Err("flush-conntrack takes only zone=N".into());
                    }
                    ct.flush(args.zone);
                    return Ok(String::new().into());
                }
                let now = messages::dpif::monotonic_ms();
                Ok(ct
                    .entries(args.zone, now)
                    .iter()
                    .map(|e| dump::format_entry(e, args.stats) + "\n")
                    .collect::<String>()
                    .into())
            }
            (Command::IpfGetStatus, _) => {
                let ct = self.conntrack.as_ref().ok_or(
                    "the kernel datapath reassembles fragments in the kernel \
                     (nf_defrag_ipv4/ipv6); upcalld reassembles only on its userspace datapath",
                )?;
                Ok(ct.fragments.status().into())
            }
            (Command::FdbShow, _) => Ok(format_fdb(&self.xlate.mac.entries(now_secs()), |p| {
                if p == messages::ofp::port::LOCAL {
                    "LOCAL".into()
                } else {
                    p.to_string()
                }
            })
            .into()),
            (Command::FdbFlush, _) => {
                // The flush changes the table's generation: revalidators
                // re-translate every flow on their next round.
                self.xlate.mac.flush();
                Ok(String::from("table successfully flushed\n").into())
            }
            (Command::FdbStats, _) => {
                Ok(format_fdb_stats(&self.config.datapath.name, &self.xlate.mac.stats()).into())
            }
            (Command::Revalidate, _) => {
                self.pipeline
                    .revalidate_now()
                    .await
                    .map_err(|e| format!("revalidators unavailable: {e}"))?;
                Ok(String::new().into())
            }
            (Command::AddTlvMap, _) => {
                let reqs = messages::tlv::parse_tlv_requests(body.trim())?;
                messages::tlv::add_global(&reqs).map_err(|e| e.to_string())?;
                // Options a flow skipped as unknown may now be fields its
                // rules match (OVS revalidates on a TLV table change).
                self.pipeline
                    .revalidate_now()
                    .await
                    .map_err(|e| format!("revalidators unavailable: {e}"))?;
                Ok(String::new().into())
            }
            (Command::DumpTlvMap, _) => Ok(messages::tlv::current().dump().into()),
            (Command::DelTlvMap, _) => {
                let unmap: Vec<usize> = if body.trim().is_empty() {
                    messages::tlv::current().iter().map(|(i, _)| i).collect()
                } else {
                    messages::tlv::parse_tlv_requests(body.trim())?
                        .iter()
                        .map(|r| r.index)
                        .collect()
                };
                if let Some(i) = self.snapshot().await?.tlv_field_in_use(&unmap) {
                    return Err(messages::tlv::TlvError::InUse(i).to_string());
                }
                messages::tlv::modify_global(|map| map.delete(&unmap))
                    .map_err(|e| e.to_string())?;
                self.pipeline
                    .revalidate_now()
                    .await
                    .map_err(|e| format!("revalidators unavailable: {e}"))?;
                Ok(String::new().into())
            }
            (c @ (Command::AddFlow | Command::AddFlows | Command::ReplaceFlows), Body::Text(_)) => {
                Err(format!("{}: the request carried no rules", c.name()))
            }
            (c @ (Command::AddGroups | Command::ModGroup), _) => {
                let groups = messages::parse::rules::parse_groups(body)
                    .map_err(|e| format!("request:{e}"))?;
                let mut version = None;
                for g in groups {
                    let change = if c == Command::AddGroups {
                        GroupMod::Add(g)
                    } else {
                        GroupMod::Modify(g)
                    };
                    version = Some(self.group_mod(change).await?.version);
                }
                Ok(version
                    .map_or_else(String::new, |v| format!("rules version {v}\n"))
                    .into())
            }
            (Command::DelGroups, _) => {
                let id = messages::parse::rules::parse_group_id(body.trim())
                    .map_err(|e| format!("request:{e}"))?;
                let r = self.group_mod(GroupMod::Delete(id)).await?;
                Ok(format!(
                    "rules version {} ({} groups, {} rules that sent to them)\n",
                    r.version, r.n_groups, r.n_rules
                )
                .into())
            }
            (c @ (Command::AddMeters | Command::ModMeter), _) => {
                let meters = messages::parse::rules::parse_meters(body)
                    .map_err(|e| format!("request:{e}"))?;
                let mut version = None;
                for m in meters {
                    let change = if c == Command::AddMeters {
                        MeterMod::Add(m)
                    } else {
                        MeterMod::Modify(m)
                    };
                    version = Some(self.meter_mod(change).await?.version);
                }
                Ok(version
                    .map_or_else(String::new, |v| format!("rules version {v}\n"))
                    .into())
            }
            (Command::DelMeters, _) => {
                let id = messages::parse::rules::parse_meter_id(body)
                    .map_err(|e| format!("request:{e}"))?;
                let r = self.meter_mod(MeterMod::Delete(id)).await?;
                Ok(format!(
                    "rules version {} ({} meters, {} rules that used them)\n",
                    r.version,
                    r.deleted.len(),
                    r.n_rules
                )
                .into())
            }
            (c @ (Command::DumpMeters | Command::MeterStats), _) => {
                let id = messages::parse::rules::parse_meter_id(body)
                    .map_err(|e| format!("request:{e}"))?;
                let tables = self.snapshot().await?;
                Ok(if c == Command::DumpMeters {
                    crate::meters::dump_meters(&tables, id)
                } else {
                    crate::meters::meter_stats(&tables, self.dpif.as_ref(), id)
                }
                .into())
            }
            (Command::AddPort, _) => {
                let spec = messages::control::parse_add_port(body)?;
                let n = self
                    .dpif
                    .port_add(&spec)
                    .map_err(|e| format!("add-port {}: {e}", spec.name))?;
                tracing::info!(port = n, name = %spec.name, "port added");
                self.ports_changed(ChangePorts::Add(n)).await?;
                Ok(format!("port {} is OpenFlow port {n}\n", spec.name).into())
            }
            (Command::DelPort, _) => {
                let name = body.trim();
                let p = self
                    .dpif
                    .ports()
                    .into_iter()
                    .find(|p| p.name == name)
                    .ok_or_else(|| format!("del-port: no port named {name:?}"))?;
                if p.number == self.xlate.local_port || matches!(p.kind, PortKind::Tunnel { .. }) {
                    return Err(format!(
                        "del-port: {name} is the bridge's own port or a tunnel vport, not removable"
                    ));
                }
                self.dpif
                    .port_del(p.number)
                    .map_err(|e| format!("del-port {name}: {e}"))?;
                tracing::info!(port = p.number, name, "port removed");
                // Its hosts are flooded to again, as OVS flushes a
                // bundle's MACs when it goes.
                self.xlate.mac.flush_port(p.number);
                self.ports_changed(ChangePorts::Remove(p.number)).await?;
                Ok(String::new().into())
            }
            (Command::DumpGroupStats, _) => {
                let id = messages::parse::rules::parse_group_id(body.trim())
                    .map_err(|e| format!("request:{e}"))?;
                let stats = self
                    .pipeline
                    .dump_group_stats(id)
                    .await
                    .map_err(|e| format!("rule-table unavailable: {e}"))?;
                Ok(stats
                    .iter()
                    .map(|g| format!(" {}\n", messages::format::ofp_rule::format_group_stats(g)))
                    .collect::<String>()
                    .into())
            }
            (Command::DumpGroups, _) => {
                let tables = self.snapshot().await?;
                Ok(tables
                    .groups()
                    .map(|g| format!(" {}\n", messages::format::ofp_rule::format_group(g)))
                    .collect::<String>()
                    .into())
            }
        }
    }

    /// Publishes a change of the ports, then waits for a revalidation
    /// round, so that when `add-port` or `del-port` answers every flow
    /// reflects it; the OpenFlow connections then hear of it (PORT_STATUS).
    async fn ports_changed(&self, change: ChangePorts) -> Result<(), String> {
        self.pipeline
            .rule_table
            .send(change)
            .await
            .map_err(|e| format!("rule-table unavailable: {e}"))?;
        self.pipeline
            .revalidate_now()
            .await
            .map_err(|e| format!("revalidators unavailable: {e}"))?;
        let _ = self.port_events.unbounded_send(());
        Ok(())
    }

    async fn meter_mod(&self, change: MeterMod) -> Result<actors::protocol::MeterModReply, String> {
        crate::meters::meter_mod(&self.pipeline.rule_table, self.dpif.as_ref(), change)
            .await
            .map_err(|e| e.to_string())
    }

    async fn group_mod(&self, change: GroupMod) -> Result<GroupModReply, String> {
        self.pipeline
            .rule_table
            .send(change)
            .await
            .map_err(|e| format!("rule-table unavailable: {e}"))?
            .map_err(|e| e.to_string())
    }
}

/// The `ovs-appctl` commands the control socket answers.
const APPCTL_COMMANDS: &[&str] = &[
    "coverage/show",
    "dpctl/dump-flows [-m]",
    "dpctl/show",
    "exit",
    "list-commands",
    "ofproto/trace [bridge] flow",
    "ovs/route/add ip/plen bridge [gw]",
    "ovs/route/del ip/plen",
    "ovs/route/lookup ip",
    "ovs/route/show",
    "revalidator/purge",
    "revalidator/wait",
    "tnl/neigh/aging [SECS]",
    "tnl/neigh/flush",
    "tnl/neigh/set BRIDGE IP MAC",
    "tnl/neigh/show",
    "upcall/show",
    "version",
    "vlog/list",
    "vlog/set [spec]",
];

/// The device that holds the native tunnel's underlay address (the
/// bridge's own, or the internal port's), as OVS names a route's.
fn underlay_device(config: &Config, nt: &NativeTunnel) -> String {
    match nt.port {
        None => config.bridge.name.clone(),
        Some(n) => config
            .ports
            .iter()
            .find(|p| p.number == Some(n))
            .map_or_else(|| format!("port{n}"), |p| p.name.clone()),
    }
}

/// The datapath the daemon drives.
enum Backend {
    Userspace(Arc<Netdev>),
    Kernel(Arc<KernelDpif>),
}

impl Backend {
    fn open(config: &Config) -> anyhow::Result<Backend> {
        Ok(match config.datapath.kind {
            DatapathType::Userspace => Backend::Userspace(Arc::new(Netdev::new(NetdevConfig {
                n_upcall_queues: config.receivers,
                upcall_queue_len: config.datapath.upcall_queue_len,
                max_flows: config.flow_limit as usize,
                emc_entries: config.datapath.emc_entries,
                emc_insert_inv_prob: config.datapath.emc_insert_inv_prob,
                rx_cpus: config.thread_cpus().datapath,
                conntrack: config.datapath.conntrack.clone(),
            }))),
            DatapathType::Kernel => {
                let name = &config.datapath.name;
                let kernel = KernelDpif::open(&KernelDpifConfig {
                    name: name.clone(),
                    // One upcall socket per handler: each reads its own.
                    n_queues: config.handlers,
                    per_cpu_dispatch: config.datapath.per_cpu_dispatch,
                })
                .with_context(|| format!("opening kernel datapath {name}"))?;
                // Zones' timeout policies exist before a flow names them.
                crate::dpif_kernel::cttimeout::set_timeout_policies(
                    &config.timeout_policies_by_id(),
                )
                .map_err(anyhow::Error::msg)?;
                tracing::info!(
                    datapath = %name,
                    dispatch = ?kernel.dispatch(),
                    upcall_pids = ?kernel.queue_pids(),
                    "kernel datapath ready"
                );
                Backend::Kernel(Arc::new(kernel))
            }
        })
    }

    fn dpif(&self) -> Arc<dyn Dpif> {
        match self {
            Backend::Userspace(n) => n.clone(),
            Backend::Kernel(k) => k.clone(),
        }
    }

    /// What the datapath lacks for conntrack rules (the kernel's probes at
    /// open), if anything.
    fn conntrack_missing(&self) -> Option<String> {
        match self {
            Backend::Userspace(_) => None,
            Backend::Kernel(k) => k.conntrack().missing(),
        }
    }

    /// Where `userspace` datapath actions send their packets.
    fn upcall_pid(&self) -> u32 {
        match self {
            Backend::Userspace(_) => 0,
            Backend::Kernel(k) => k.queue_pids().first().copied().unwrap_or(0),
        }
    }

    /// Kernel ports get their numbers when added, and a packet that misses
    /// before the pipeline runs just waits in its upcall socket: they are
    /// added first, so translation knows every port. A userspace replay
    /// port starts feeding at once, so there the pipeline comes first.
    fn ports_before_pipeline(&self) -> bool {
        matches!(self, Backend::Kernel(_))
    }

    /// Removes kernel ports the configuration no longer names (a datapath
    /// kept from an earlier run), except the local port.
    fn prune_ports(&self, specs: &[PortSpec]) {
        let Backend::Kernel(k) = self else {
            return;
        };
        for p in k.ports() {
            if p.number != 0 && !specs.iter().any(|s| s.name == p.name) {
                match k.port_del(p.number) {
                    Ok(()) => {
                        tracing::info!(port = p.number, name = %p.name, "port removed: no longer configured")
                    }
                    Err(e) => {
                        tracing::warn!(port = p.number, name = %p.name, error = %e, "removing an unconfigured port failed")
                    }
                }
            }
        }
    }

    /// Stops upcall reception, then leaves the datapath as configured.
    fn close(&self, on_exit: OnExit) {
        match self {
            Backend::Userspace(n) => n.close(),
            Backend::Kernel(k) => {
                k.close();
                match on_exit {
                    OnExit::Keep => tracing::info!(
                        datapath = %k.name(),
                        "kernel datapath kept: its flows go on forwarding"
                    ),
                    OnExit::Delete => match k.destroy() {
                        Ok(()) => tracing::info!(datapath = %k.name(), "kernel datapath deleted"),
                        Err(e) => tracing::warn!(error = %e, "deleting the kernel datapath failed"),
                    },
                }
            }
        }
    }
}

fn pipeline_config(config: &Config, backend: &Backend) -> anyhow::Result<PipelineConfig> {
    Ok(PipelineConfig {
        n_handlers: config.handlers,
        n_revalidators: config.revalidators,
        n_receivers: config.receivers,
        // On the kernel each handler reads its own upcall socket, as OVS's
        // (measured: see ARCHITECTURE.md); `receivers` is for the
        // embedded datapath.
        handlers_read: config.datapath.kind == DatapathType::Kernel,
        writer: WriterConfig {
            batch_size: config.batch_size(),
            max_latency: Duration::from_micros(config.batch_latency_us),
            // On the kernel each handler writes its own batches (measured:
            // the one writer was the ceiling; see ARCHITECTURE.md).
            handlers_write: config.datapath.kind == DatapathType::Kernel,
        },
        cpus: config.thread_cpus().actors,
        revalidator: RevalidatorConfig {
            interval: Duration::from_millis(config.revalidate_interval_ms),
            max_idle: config.max_idle(),
            flow_limit: config.flow_limit,
            flow_limit_start: config.flow_limit_start,
            ..RevalidatorConfig::default()
        },
        xlate: XlateConfig {
            // The daemon's are in the rules snapshot (`ChangePorts`).
            ports: None,
            upcall_pid: backend.upcall_pid(),
            // Both datapaths number the bridge's own port 0.
            local_port: 0,
            recirc: Default::default(),
            vlans: Arc::new(config.port_vlans()?),
            mac: Arc::new(config.mac_table()),
            tunnels: Arc::new(config.tunnel_ports()?),
            native_tunnel: config.native_tunnel()?,
            tunnel_receive: true,
            may_learn: false,
            // Handlers snoop (each upcall a packet); revalidators replay.
            snoop_neighbours: false,
            // Real packets learn and trigger fin_timeout.
            side_effects: true,
            linux_queues: config.datapath.kind == DatapathType::Kernel,
            l4_hash_only: config.datapath.kind == DatapathType::Kernel,
            zone_timeout_policies: Arc::new(config.zone_timeout_policies()?),
            timeout_per_protocol: config.datapath.kind == DatapathType::Kernel,
            // No per-packet slow path yet: flows are installed as
            // translated, so the limit would change nothing.
            netdev_max_backlog: 0,
        },
    })
}

/// What the start-up checks claimed, held until the daemon exits.
struct Claimed {
    _locks: Vec<lock::Lock>,
    listener: std::os::unix::net::UnixListener,
    /// The control socket this daemon created (removed when it exits).
    socket: control::SocketFile,
    /// The OpenFlow listeners, bound, and the controllers to connect to.
    openflow: openflow::Bound,
}

/// Every check that can fail and that needs nothing on the host changed:
/// the locks (control socket, demo topology, kernel datapath, network
/// interfaces), the control socket, the metrics address. Run before the
/// datapath, namespaces or veths are created, so that a daemon that cannot
/// start leaves a running one alone.
fn claim(config: &Config) -> anyhow::Result<Claimed> {
    let socket = &config.control_socket;
    let mut locks = vec![lock::acquire(
        &lock::beside(socket),
        &format!("control socket {}", socket.display()),
    )?];
    let dir = std::path::Path::new(lock::LOCK_DIR);
    if config.demo.enabled {
        locks.push(lock::acquire(
            &dir.join("upcalld-demo.lock"),
            "the demo topology (namespaces upcalld-a and upcalld-b)",
        )?);
    }
    // Interfaces, kernel datapaths and UDP ports belong to a network
    // namespace: daemons in two namespaces may use the same names.
    let net = lock::netns_tag()?;
    if config.datapath.kind == DatapathType::Kernel {
        let name = &config.datapath.name;
        locks.push(lock::acquire(
            &dir.join(format!("upcalld-{net}-datapath-{name}.lock")),
            &format!("kernel datapath {name}"),
        )?);
    }
    for p in config.ports.iter().filter(|p| !p.is_tunnel()) {
        if p.kind != crate::config::PortType::Replay {
            locks.push(lock::acquire(
                &dir.join(format!("upcalld-{net}-port-{}.lock", p.name)),
                &format!("port {}", p.name),
            )?);
        }
    }
    // Tunnel ports share a vport per UDP port; the vport is what is claimed.
    for vport in config.tunnel_vports()? {
        locks.push(lock::acquire(
            &dir.join(format!("upcalld-{net}-port-{}.lock", vport.name)),
            &format!("tunnel vport {}", vport.name),
        )?);
    }
    let listener =
        control::bind(socket).with_context(|| format!("control socket {}", socket.display()))?;
    let socket = control::SocketFile(socket.clone());
    let openflow = claim_openflow(config)?;
    if let Some(addr) = config.metrics_socket_addr()? {
        crate::metrics::install(addr)?;
    }
    Ok(Claimed {
        _locks: locks,
        listener,
        socket,
        openflow,
    })
}

/// The OpenFlow endpoints, parsed, with their listeners bound. A
/// configured listener that cannot be had is an error; the default one
/// (`punix:/run/upcalld/BRIDGE.mgmt`) is only warned about.
fn claim_openflow(config: &Config) -> anyhow::Result<openflow::Bound> {
    config.bridge.datapath_id()?;
    let (listen, configured) = config.openflow_listen();
    let parse =
        |s: &String| openflow::Endpoint::parse(s).map_err(|e| anyhow::anyhow!("[openflow] {e}"));
    let listen = listen
        .iter()
        .map(parse)
        .collect::<anyhow::Result<Vec<_>>>()?;
    let controllers = config
        .openflow
        .controllers
        .iter()
        .map(parse)
        .collect::<anyhow::Result<Vec<_>>>()?;
    match openflow::bind(listen) {
        Ok(bound) => Ok(bound.with_controllers(controllers)),
        Err(e) if configured => Err(e.context("OpenFlow")),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no OpenFlow listener (set [openflow] listen)");
            Ok(openflow::Bound::default().with_controllers(controllers))
        }
    }
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(config: Config, config_path: Option<PathBuf>) -> anyhow::Result<()> {
    crate::memory::set_transparent_huge_pages(config.transparent_huge_pages)
        .context("setting transparent huge pages")?;
    // Rules name tun_metadataN through the switch's Geneve TLV map.
    messages::tlv::set_global(Arc::new(config.tlv_map()?));
    // Everything that can be checked without touching the host, first.
    let mut specs: Vec<PortSpec> = Vec::new();
    for p in config.ports.iter().filter(|p| !p.is_tunnel()) {
        let spec = p.spec()?;
        if let PortKind::Replay { path } = &spec.kind {
            crate::dpif_netdev::read_replay_file(path)
                .with_context(|| format!("replay port {:?}", p.name))?;
        }
        specs.push(spec);
    }
    specs.extend(config.tunnel_vports()?);
    // A bridge with controllers starts empty, as OVS's does: they program it.
    let controlled = !config.openflow.controllers.is_empty();
    let rules = match (&config.rules, config.demo.enabled && !controlled) {
        (Some(path), _) => read_rules_file(path)?,
        (None, true) => parse_rules(DEMO_RULES, "demo rules")?,
        (None, false) => Vec::new(),
    };
    let claimed = claim(&config)?;

    // Now the host: the datapath, the demo's namespaces and veths.
    let backend = Arc::new(Backend::open(&config)?);
    let hosts = if config.demo.enabled {
        match demo_hosts() {
            Ok(h) => h,
            Err(e) => {
                backend.close(config.datapath.on_exit);
                return Err(e);
            }
        }
    } else {
        Vec::new()
    };
    let demo_specs = hosts.iter().zip(1u32..).map(|(h, n)| PortSpec {
        name: h.port.clone(),
        kind: PortKind::System,
        number: Some(n),
    });
    let specs: Vec<PortSpec> = demo_specs.chain(specs).collect();

    let on_exit = config.datapath.on_exit;
    let system = actix::System::new();
    let result = system.block_on(serve(
        config,
        config_path,
        backend.clone(),
        specs,
        rules,
        hosts,
        claimed,
    ));
    // A clean shutdown closed the datapath already; a failed start has not.
    if result.is_err() {
        backend.close(on_exit);
    }
    result
}

fn add_ports(dpif: &dyn Dpif, specs: &[PortSpec]) -> anyhow::Result<BTreeSet<u32>> {
    let mut numbers = BTreeSet::new();
    for spec in specs {
        let n = dpif
            .port_add(spec)
            .with_context(|| format!("adding port {:?}", spec.name))?;
        tracing::info!(port = n, name = %spec.name, "port ready");
        numbers.insert(n);
    }
    Ok(numbers)
}

async fn serve(
    config: Config,
    config_path: Option<PathBuf>,
    backend: Arc<Backend>,
    specs: Vec<PortSpec>,
    rules: Vec<Rule>,
    hosts: Vec<Host>,
    claimed: Claimed,
) -> anyhow::Result<()> {
    let dpif = backend.dpif();
    // The ports translation outputs to: the datapath's, and the tunnel
    // ports' OpenFlow numbers (their packets use the vports). Versioned
    // with the rules (`ChangePorts`), as `ctl add-port` changes them.
    let tunnel_numbers: BTreeSet<u32> = config
        .ports
        .iter()
        .filter(|p| p.is_tunnel())
        .filter_map(|p| p.number)
        .collect();
    let conntrack_missing = backend.conntrack_missing();
    refuse_conntrack(&rules, conntrack_missing.as_deref()).map_err(|e| anyhow::anyhow!(e))?;
    let mut tables = Tables::from_rules(rules);
    if backend.ports_before_pipeline() {
        backend.prune_ports(&specs);
        let numbers = add_ports(dpif.as_ref(), &specs)?;
        tables.set_ports(&numbers | &tunnel_numbers);
    }
    let pipeline_cfg = pipeline_config(&config, &backend)?;
    let cpus = &pipeline_cfg.cpus;
    tracing::info!(
        datapath = ?config.thread_cpus().datapath,
        writer = ?cpus.writer,
        receivers = ?cpus.receivers,
        handlers = ?cpus.handlers,
        revalidators = ?cpus.revalidators,
        "thread CPUs (empty: any)"
    );
    // Traces and packet-outs name OpenFlow ports (a tunnel's own), not
    // datapath vports: no `tnl_port_receive` for them, as in OVS.
    let xlate = XlateConfig {
        tunnel_receive: false,
        ..pipeline_cfg.xlate.clone()
    };
    let pipeline = Pipeline::start(dpif.clone(), tables, pipeline_cfg);
    if !backend.ports_before_pipeline() {
        let numbers = add_ports(dpif.as_ref(), &specs)?;
        // Unnumbered ports on the userspace datapath (replay files, whose
        // frames carry their own input ports) leave every port number
        // existing, as for the benchmarks.
        let numbered = specs.iter().all(|s| s.number.is_some());
        if numbered {
            pipeline
                .rule_table
                .send(ChangePorts::Set(&numbers | &tunnel_numbers))
                .await
                .map_err(|e| anyhow::anyhow!("rule-table unavailable: {e}"))?;
        }
    }
    if let Some(nt) = xlate
        .native_tunnel
        .clone()
        .filter(|_| config.native_tunnel.as_ref().is_some_and(|n| n.host_tables))
    {
        let dev = underlay_device(&config, &nt);
        crate::host_tables::follow(nt, dev.clone())
            .with_context(|| format!("reading the host's routes and neighbours of {dev}"))?;
    }
    // Flows left by an earlier run (a kept kernel datapath, a crash) go on
    // forwarding meanwhile; one revalidation round now adopts those the
    // current rules still produce (modified if only their actions changed)
    // and deletes the rest, as OVS does on restart.
    let existing = dpif.flow_dump().map(|f| f.len()).unwrap_or(0);
    if existing > 0 {
        tracing::info!(
            flows = existing,
            "datapath already has flows: revalidating them"
        );
        pipeline
            .revalidate_now()
            .await
            .map_err(|e| anyhow::anyhow!("revalidators unavailable: {e}"))?;
    }
    if let Some(addr) = config.metrics_socket_addr()? {
        actix::spawn(crate::metrics::publish_forever(
            pipeline.stats.clone(),
            dpif.clone(),
            Duration::from_millis(200),
        ));
        if let Backend::Userspace(n) = backend.as_ref() {
            actix::spawn(crate::metrics::publish_conntrack_forever(
                n.conntrack().clone(),
                Duration::from_millis(200),
            ));
            let netdev = n.clone();
            actix::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(200));
                loop {
                    tick.tick().await;
                    crate::metrics::publish_tunnels(&netdev);
                }
            });
        }
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
    }
    let Claimed {
        _locks,
        listener,
        socket,
        openflow: mut of_bound,
    } = claimed;
    let (jobs_tx, mut jobs) = futures::channel::mpsc::unbounded::<control::Job>();
    control::serve(listener, config.control.limits(), jobs_tx)
        .context("starting the control socket's thread")?;
    tracing::info!(socket = %config.control_socket.display(), "control socket ready");

    let stop_pinger = Arc::new(AtomicBool::new(false));
    let hosts: Vec<Arc<Host>> = hosts.into_iter().map(Arc::new).collect();
    let mut pinger = None;
    if config.demo.enabled {
        print_demo_banner(&config);
        if config.demo.ping {
            pinger = start_pinger(hosts.clone(), stop_pinger.clone());
        }
    }

    let rules_path = config.rules.clone();
    let pipeline = Rc::new(pipeline);
    let switch = Rc::new(openflow::Switch {
        pipeline: pipeline.clone(),
        dpif: dpif.clone(),
        xlate: xlate.clone(),
        datapath_id: config.bridge.datapath_id()?,
        bridge: config.bridge.name.clone(),
        started: std::time::Instant::now(),
        packet_in_limit: config.openflow.packet_in_limit(),
        fail_open: openflow::FailOpen::new(config.openflow.fail_mode == FailMode::Standalone),
        port_changes: Default::default(),
        instance: openflow::new_instance_id(),
    });
    let (port_events, port_wakes) = futures::channel::mpsc::unbounded();
    openflow::start(switch, &mut of_bound, port_events.clone(), port_wakes).context("OpenFlow")?;
    let ctl = Rc::new(Ctl {
        pipeline,
        dpif: dpif.clone(),
        conntrack: match backend.as_ref() {
            Backend::Userspace(n) => Some(n.conntrack().clone()),
            Backend::Kernel(_) => None,
        },
        config,
        xlate,
        conntrack_missing,
        port_events,
    });
    let server_ctl = ctl.clone();
    actix::spawn(async move {
        use futures::StreamExt;
        while let Some(job) = jobs.next().await {
            let ctl = server_ctl.clone();
            actix::spawn(async move {
                match job {
                    control::Job::Ctl { request, reply } => {
                        let _ = reply.send(ctl.handle(request).await);
                    }
                    control::Job::Appctl { request, reply } => {
                        let _ = reply.send(ctl.appctl(request).await);
                    }
                }
            });
        }
    });

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&ctl, rules_path.as_deref(), config_path.as_deref()).await,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    stop_pinger.store(true, Ordering::Relaxed);
    if let Some(p) = pinger {
        let _ = p.join();
    }
    let _ = ctl.pipeline.flush().await;
    backend.close(ctl.config.datapath.on_exit);
    drop(socket);
    drop(of_bound);
    drop(hosts);
    actix::System::current().stop();
    Ok(())
}

async fn reload(ctl: &Ctl, rules: Option<&std::path::Path>, config_path: Option<&std::path::Path>) {
    let Some(path) = rules else {
        tracing::info!(config = ?config_path, "SIGHUP: no rules file configured; nothing to reload");
        return;
    };
    match read_rules_file(path) {
        Ok(mut rules) => {
            let empty = rules.is_empty();
            // A standalone switch without controllers keeps the NORMAL
            // rule it started with, as after the file at start-up.
            let of = &ctl.config.openflow;
            if of.fail_mode == FailMode::Standalone && of.controllers.is_empty() {
                rules.push(openflow::FailOpen::normal_rule());
            }
            match ctl.change(RuleChange::Replace(rules)).await {
                Ok(msg) if empty => tracing::warn!(
                    path = %path.display(),
                    "SIGHUP: the rules file has no rules: every rule was removed ({})",
                    msg.trim()
                ),
                Ok(msg) => {
                    tracing::info!(path = %path.display(), "SIGHUP: rules reloaded: {}", msg.trim())
                }
                Err(e) => tracing::error!("SIGHUP: {e}"),
            }
        }
        Err(e) => tracing::error!("SIGHUP: rules not reloaded, the old ones stay: {e:#}"),
    }
}

fn print_demo_banner(config: &Config) {
    let sock = config.control_socket.display();
    tracing::info!(
        "demo: namespaces upcalld-a (10.99.0.1) and upcalld-b (10.99.0.2) are joined through the \
         userspace datapath (ports 1 = upc-a, 2 = upc-b); upcalld-a pings upcalld-b every second"
    );
    tracing::info!(
        "try: upcalld ctl --socket {sock} dump-dp-flows | dump-flows | upcall-show; \
         curl -s http://{}/metrics | grep upcalld_",
        config.metrics_addr
    );
}

/// Pings from the first host to the second every second, logging results.
fn start_pinger(
    hosts: Vec<Arc<Host>>,
    stop: Arc<AtomicBool>,
) -> Option<std::thread::JoinHandle<()>> {
    let (Some(from), Some(to)) = (hosts.first().cloned(), hosts.get(1).cloned()) else {
        return None;
    };
    Some(std::thread::spawn(move || {
        let mut seq = 0u16;
        while !stop.load(Ordering::Relaxed) {
            seq = seq.wrapping_add(1);
            let dst = to.addr;
            let s = seq;
            match from.run(move || crate::netns::ping(dst, 0x5ca1, s, Duration::from_secs(1))) {
                Ok(Ok(Some(rtt))) => {
                    tracing::info!(
                        seq = s,
                        "demo ping {} -> {}: {:.3} ms",
                        from.addr,
                        dst,
                        rtt.as_secs_f64() * 1e3
                    )
                }
                Ok(Ok(None)) => {
                    tracing::info!(seq = s, "demo ping {} -> {}: no reply", from.addr, dst)
                }
                Ok(Err(e)) | Err(e) => tracing::warn!(error = %e, "demo ping failed"),
            }
            for _ in 0..10 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where the kernel's probes found part of conntrack missing, the first
    /// rule that needs it is refused, named with what is missing; rules
    /// without conntrack are taken.
    #[test]
    fn conntrack_rules_are_refused_where_the_datapath_lacks_it() {
        let rules = messages::parse::rules::parse_rules(
            "table=0,priority=10,arp,actions=output:2\n\
             table=0,priority=5,ct_state=-trk,ip,actions=ct(table=1)\n",
        )
        .unwrap();
        let support = crate::dpif_kernel::ConntrackSupport {
            ct_state: true,
            ct_orig_tuple: true,
            ct: true,
            nat: false,
            ct_clear: true,
            recirc: false,
        };
        let lacks = support.missing();
        assert_eq!(lacks.as_deref(), Some("NAT, recirculation"));
        let err = refuse_conntrack(&rules, lacks.as_deref()).unwrap_err();
        assert!(
            err.starts_with("rule 2 (") && err.contains("ct(table=1)"),
            "{err}"
        );
        assert!(
            err.ends_with("but the datapath lacks NAT, recirculation"),
            "{err}"
        );
        assert!(refuse_conntrack(&rules[..1], lacks.as_deref()).is_ok());
        assert!(refuse_conntrack(&rules, None).is_ok());
        assert_eq!(
            crate::dpif_kernel::ConntrackSupport {
                ct_state: true,
                ct_orig_tuple: true,
                ct: true,
                nat: true,
                ct_clear: true,
                recirc: true,
            }
            .missing(),
            None
        );
    }
}
