//! The daemon's configuration (TOML). Every key has a default, and the
//! defaults alone start a demo: two network namespaces joined through the
//! userspace datapath, with rules that connect them.
//!
//! ```toml
//! rules = "/etc/upcalld/rules.of13"   # ovs-ofctl add-flows syntax
//! receivers = 1
//! handlers = 2
//! revalidators = 1
//! flow_limit = 200000
//! max_idle_ms = 10000
//! metrics_addr = "127.0.0.1:9464"
//! control_socket = "/run/upcalld.sock"
//!
//! [control]
//! max_connections = 64     # more at once are answered with an error
//! io_timeout_ms = 10000    # an idle control connection is closed after this
//!
//! [datapath]
//! type = "userspace"       # or "kernel" (the openvswitch module)
//! name = "upcalld"         # the kernel datapath's name
//! upcall_queue_len = 4096
//!
//! [datapath.conntrack]     # the userspace datapath's connection tracker
//! max_connections = 3000000
//! zone_limits = { 5 = 1000 }             # most connections in zone 5
//! timeouts = { tcp_established = 86400, udp_first = 60 }   # seconds, OVS's names
//! zone_timeouts = { 5 = { udp_first = 10 } }  # zone 5's policy (ovs-vsctl add-zone-tp);
//!                          # what it leaves out is `timeouts`'s (the kernel's own
//!                          # defaults on the kernel datapath, which has no udp_first
//!                          # or icmp_reply: cttimeout objects ovs_tp_<id>_<proto>)
//! fragments = { max_frags = 1000, min_v4_frag_size = 1200 }  # reassembly before
//!                          # tracking, as OVS's dpctl/ipf-set-*: v4_enabled, v6_enabled,
//!                          # min_v6_frag_size too
//!
//! [[port]]
//! name = "veth0"
//! type = "system"          # system (AF_PACKET) | internal (tap) | replay
//! number = 1
//! tag = 10                 # VLAN settings for NORMAL, as OVS's Port columns:
//! # trunks = [10, 20]      # tag, trunks, vlan_mode (access | trunk |
//! # vlan_mode = "access"   # native-tagged | native-untagged)
//! ```
//!
//! `NORMAL`'s MAC learning table: `mac_aging_time = 300` (seconds) and
//! `mac_table_size = 8192`, as OVS's `other_config` keys of those names.
//!
//! On the Linux kernel's datapath (the openvswitch module), ports are
//! netdev vports (`system`) or internal ports (`internal`):
//!
//! ```toml
//! [datapath]
//! type = "kernel"
//! name = "upcalld"          # created, or attached to if it exists
//! on_exit = "keep"          # keep (flows go on forwarding) | delete
//! per_cpu_dispatch = true   # falls back to per-vport upcall PIDs
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use actors::xlate::normal::{PortVlan, VlanMode};
use messages::dpif::{PortKind, PortSpec};
use messages::tlv::TlvMap;
use messages::tunnel::{TunnelConfig, TunnelIp, TunnelKey, TunnelKind};

use crate::dpif_netdev::conntrack::ZoneTimeouts;
use serde::Deserialize;

/// Which datapath to drive.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DatapathType {
    /// The embedded userspace datapath.
    #[default]
    Userspace,
    /// The Linux kernel's openvswitch module.
    Kernel,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DatapathConfig {
    #[serde(rename = "type")]
    pub kind: DatapathType,
    /// The kernel datapath's name (created, or attached to if it exists;
    /// also its local port's interface name).
    pub name: String,
    /// Upcalls queued before misses are lost (userspace datapath).
    pub upcall_queue_len: usize,
    /// Exact-match cache entries per port (userspace datapath).
    pub emc_entries: usize,
    /// A megaflow hit enters the exact-match cache one time in this many
    /// (OVS's `emc-insert-inv-prob`); 1 always, 0 never (userspace).
    pub emc_insert_inv_prob: u32,
    /// What becomes of the kernel datapath when the daemon exits.
    pub on_exit: OnExit,
    /// Ask the kernel for per-CPU upcall dispatch (kernel datapath).
    pub per_cpu_dispatch: bool,
    /// The userspace datapath's connection tracker: limits and timeouts.
    pub conntrack: crate::dpif_netdev::conntrack::ConntrackConfig,
}

impl Default for DatapathConfig {
    fn default() -> Self {
        DatapathConfig {
            kind: DatapathType::Userspace,
            name: "upcalld".into(),
            upcall_queue_len: 4096,
            emc_entries: 8192,
            emc_insert_inv_prob: 100,
            on_exit: OnExit::Keep,
            per_cpu_dispatch: true,
            conntrack: Default::default(),
        }
    }
}

/// What becomes of the kernel datapath when the daemon exits.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnExit {
    /// Leave it with its ports and flows: installed flows go on forwarding,
    /// and the next start adopts them (what OVS does).
    #[default]
    Keep,
    /// Delete it, and with it its ports and flows.
    Delete,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PortType {
    System,
    Internal,
    Replay,
    /// Tunnel ports (OVS's Interface types of the same names).
    Vxlan,
    Geneve,
}

/// A key option: a number, or `"flow"`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum NumberOrWord {
    Number(u64),
    Word(String),
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    #[serde(rename = "type", default = "default_port_type")]
    pub kind: PortType,
    pub number: Option<u32>,
    /// The file a replay port plays.
    pub path: Option<PathBuf>,
    /// `NORMAL`'s access or native VLAN (OVS's `tag`).
    pub tag: Option<u16>,
    /// The VLANs a trunk carries (OVS's `trunks`; none listed: all).
    #[serde(default)]
    pub trunks: Vec<u16>,
    /// OVS's `vlan_mode`: access, trunk, native-tagged, native-untagged.
    pub vlan_mode: Option<String>,
    // Tunnel options (OVS's `options:` of a vxlan or geneve Interface).
    /// An address, or `"flow"` (`set_field:…->tun_dst` decides).
    pub remote_ip: Option<String>,
    /// An address, or `"flow"`.
    pub local_ip: Option<String>,
    /// The VNI sent and expected: a number, or `"flow"` (`tun_id`).
    pub key: Option<NumberOrWord>,
    pub in_key: Option<NumberOrWord>,
    pub out_key: Option<NumberOrWord>,
    /// UDP port (default: 4789 for VXLAN, 6081 for Geneve).
    pub dst_port: Option<u16>,
    /// Outer TOS: a number, or `"inherit"`.
    pub tos: Option<NumberOrWord>,
    /// Outer TTL: a number, or `"inherit"` (default 64).
    pub ttl: Option<NumberOrWord>,
    /// UDP checksums on sent packets (default false).
    pub csum: Option<bool>,
    /// Set DF on sent packets (default true).
    pub df_default: Option<bool>,
    /// VXLAN extensions, as OVS's `options:exts`: `"gbp"` (Group Policy).
    pub exts: Option<String>,
}

fn default_port_type() -> PortType {
    PortType::System
}

impl PortConfig {
    /// The port's VLAN configuration for `NORMAL`.
    pub fn vlan(&self) -> Result<PortVlan, ConfigError> {
        let bad = |e: String| ConfigError::Invalid(format!("port {:?}: {e}", self.name));
        let mode = self
            .vlan_mode
            .as_deref()
            .map(VlanMode::parse)
            .transpose()
            .map_err(bad)?;
        PortVlan::from_config(mode, self.tag, &self.trunks).map_err(bad)
    }

    fn has_vlan_settings(&self) -> bool {
        self.tag.is_some() || !self.trunks.is_empty() || self.vlan_mode.is_some()
    }

    /// True for a tunnel port (`vxlan`, `geneve`).
    pub fn is_tunnel(&self) -> bool {
        matches!(self.kind, PortType::Vxlan | PortType::Geneve)
    }

    fn has_tunnel_options(&self) -> bool {
        self.remote_ip.is_some()
            || self.local_ip.is_some()
            || self.key.is_some()
            || self.in_key.is_some()
            || self.out_key.is_some()
            || self.dst_port.is_some()
            || self.tos.is_some()
            || self.ttl.is_some()
            || self.csum.is_some()
            || self.df_default.is_some()
            || self.exts.is_some()
    }

    /// A tunnel port's configuration, as OVS's `netdev_vport` reads the
    /// Interface options. Its datapath port is its UDP port, as OVS's
    /// userspace datapath numbers `vxlan_sys_4789`.
    pub fn tunnel(&self) -> Result<TunnelConfig, ConfigError> {
        let bad = |e: String| ConfigError::Invalid(format!("port {:?}: {e}", self.name));
        let kind = match self.kind {
            PortType::Vxlan => TunnelKind::Vxlan,
            PortType::Geneve => TunnelKind::Geneve,
            _ => return Err(bad("not a tunnel port".into())),
        };
        let ip = |name: &str, v: &str| -> Result<TunnelIp, ConfigError> {
            if v == "flow" {
                Ok(TunnelIp::Flow)
            } else {
                v.parse::<std::net::IpAddr>()
                    .map(TunnelIp::Fixed)
                    .map_err(|_| bad(format!("{name} = {v:?}: an IP address or \"flow\"")))
            }
        };
        let remote = self
            .remote_ip
            .as_deref()
            .ok_or_else(|| bad("a tunnel port needs `remote_ip`".into()))?;
        let mut t = TunnelConfig::new(kind, ip("remote_ip", remote)?);
        t.local_ip = self
            .local_ip
            .as_deref()
            .map(|v| ip("local_ip", v))
            .transpose()?;
        let key =
            |name: &str, v: &Option<NumberOrWord>| -> Result<Option<TunnelKey>, ConfigError> {
                Ok(match v {
                    None => None,
                    Some(NumberOrWord::Number(n)) => Some(TunnelKey::Fixed(*n)),
                    Some(NumberOrWord::Word(w)) if w == "flow" => Some(TunnelKey::Flow),
                    Some(NumberOrWord::Word(w)) => {
                        Some(TunnelKey::Fixed(parse_u64(w).ok_or_else(|| {
                            bad(format!("{name} = {w:?}: a number or \"flow\""))
                        })?))
                    }
                })
            };
        let both = key("key", &self.key)?;
        t.in_key = key("in_key", &self.in_key)?.or(both).unwrap_or_default();
        t.out_key = key("out_key", &self.out_key)?.or(both).unwrap_or_default();
        if let Some(p) = self.dst_port {
            if p == 0 {
                return Err(bad("dst_port = 0: must be a UDP port".into()));
            }
            t.dst_port = p;
        }
        let byte = |name: &str,
                    v: &Option<NumberOrWord>,
                    default: u8|
         -> Result<Option<u8>, ConfigError> {
            match v {
                None => Ok(Some(default)),
                Some(NumberOrWord::Word(w)) if w == "inherit" => Ok(None),
                Some(NumberOrWord::Number(n)) if *n <= 255 => Ok(Some(*n as u8)),
                Some(other) => Err(bad(format!("{name} = {other:?}: 0 to 255 or \"inherit\""))),
            }
        };
        t.tos = byte("tos", &self.tos, 0)?;
        if t.tos.is_some_and(|v| v & 0x03 != 0) {
            return Err(bad(
                "tos: the ECN bits come from the inner packet; give DSCP bits only".into(),
            ));
        }
        t.ttl = byte("ttl", &self.ttl, messages::tunnel::DEFAULT_TTL)?;
        t.csum = self.csum.unwrap_or(false);
        t.df_default = self.df_default.unwrap_or(true);
        for ext in self.exts.iter().flat_map(|e| e.split(',')).map(str::trim) {
            match (ext, kind) {
                ("gbp", TunnelKind::Vxlan) => t.vxlan_gbp = true,
                ("gbp", _) => return Err(bad("exts = \"gbp\" is VXLAN's".into())),
                (other, _) => {
                    return Err(bad(format!(
                        "exts: unknown extension {other:?} (known: \"gbp\")"
                    )))
                }
            }
        }
        t.odp_port = u32::from(t.dst_port);
        Ok(t)
    }

    pub fn spec(&self) -> Result<PortSpec, ConfigError> {
        if self.has_tunnel_options() && !self.is_tunnel() {
            return Err(ConfigError::Invalid(format!(
                "port {:?}: tunnel options (remote_ip, key, …) need type \"vxlan\" or \"geneve\"",
                self.name
            )));
        }
        let kind = match (self.kind, &self.path) {
            (PortType::System, None) => PortKind::System,
            (PortType::Internal, None) => PortKind::Internal,
            (PortType::Replay, Some(p)) => PortKind::Replay { path: p.clone() },
            (PortType::Vxlan | PortType::Geneve, None) => {
                return Err(ConfigError::Invalid(format!(
                    "port {:?}: a tunnel port is a vport shared by type and UDP port (Config::tunnel_vports)",
                    self.name
                )))
            }
            (PortType::Replay, None) => {
                return Err(ConfigError::Invalid(format!(
                    "port {:?}: a replay port needs `path`",
                    self.name
                )))
            }
            (_, Some(_)) => {
                return Err(ConfigError::Invalid(format!(
                    "port {:?}: only replay ports take `path`",
                    self.name
                )))
            }
        };
        Ok(PortSpec {
            name: self.name.clone(),
            kind,
            number: self.number,
        })
    }
}

/// Where threads run (`[cpus]`): a starting `placement`, then CPU lists
/// for kinds of threads; a list given replaces the placement's for that
/// kind.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct CpusConfig {
    pub placement: Placement,
    /// The userspace datapath's port (receive) threads.
    pub datapath: Vec<usize>,
    pub receivers: Vec<usize>,
    pub handlers: Vec<usize>,
    pub revalidators: Vec<usize>,
    pub writer: Vec<usize>,
}

/// Where threads run unless `[cpus]` lists CPUs for them.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// On the userspace datapath with two CPUs or more, as OVS pins its
    /// PMD threads: the datapath's port threads and the dpif-writer on
    /// the first CPU, the other threads on the rest
    /// ([`messages::threads::datapath_first`]); otherwise as `none`.
    #[default]
    Auto,
    /// The kernel's scheduler places every thread.
    None,
}

/// CPUs for the datapath's port threads and for the actors.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThreadCpus {
    pub datapath: Vec<usize>,
    pub actors: messages::threads::CpuPlacement,
}

impl CpusConfig {
    /// The CPUs of each kind of thread beside a datapath of `kind`, on a
    /// machine where the process may use `allowed`.
    pub fn resolve(&self, kind: DatapathType, allowed: &[usize]) -> ThreadCpus {
        let mut cpus = match (self.placement, kind) {
            (Placement::Auto, DatapathType::Userspace) => {
                messages::threads::datapath_first(allowed)
                    .map(|(datapath, actors)| ThreadCpus { datapath, actors })
                    .unwrap_or_default()
            }
            _ => ThreadCpus::default(),
        };
        let a = &mut cpus.actors;
        for (given, placed) in [
            (&self.datapath, &mut cpus.datapath),
            (&self.receivers, &mut a.receivers),
            (&self.handlers, &mut a.handlers),
            (&self.revalidators, &mut a.revalidators),
            (&self.writer, &mut a.writer),
        ] {
            if !given.is_empty() {
                placed.clone_from(given);
            }
        }
        cpus
    }
}

/// The demo topology: two namespaces, each with a veth whose other end is a
/// datapath port, and (without a rules file or controllers) rules that join
/// them.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DemoConfig {
    pub enabled: bool,
    /// Send a ping from the first namespace to the second every second.
    pub ping: bool,
}

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            enabled: true,
            ping: true,
        }
    }
}

/// The control socket's connections (`[control]`).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// Connections served at once; more are answered with an error.
    pub max_connections: usize,
    /// Longest wait for a client's next bytes (or for it to take the
    /// reply's), in milliseconds; then the connection is closed.
    pub io_timeout_ms: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        let limits = messages::control::Limits::default();
        ControlConfig {
            max_connections: limits.max_connections,
            io_timeout_ms: limits.io_timeout.as_millis() as u64,
        }
    }
}

impl ControlConfig {
    pub fn limits(&self) -> messages::control::Limits {
        messages::control::Limits {
            max_connections: self.max_connections,
            io_timeout: Duration::from_millis(self.io_timeout_ms),
            ..messages::control::Limits::default()
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub datapath: DatapathConfig,
    #[serde(rename = "port")]
    pub ports: Vec<PortConfig>,
    /// Rules file (`ovs-ofctl add-flows` syntax), reloaded on SIGHUP.
    pub rules: Option<PathBuf>,
    /// Receivers: each reads one upcall queue of the embedded datapath.
    /// (On the kernel datapath each handler reads an upcall socket of its
    /// own, as OVS's handlers do, and no receiver runs.)
    pub receivers: usize,
    pub handlers: usize,
    pub revalidators: usize,
    /// Most flows the dynamic flow limit allows.
    pub flow_limit: u64,
    /// Where the dynamic flow limit starts.
    pub flow_limit_start: u64,
    pub max_idle_ms: u64,
    pub revalidate_interval_ms: u64,
    /// Most ops per datapath batch. By default 50 on the kernel datapath
    /// (OVS's netlink transaction) and 128 on the userspace one (a whole
    /// handler batch: 64 upcalls, a put and an execute each).
    pub batch_size: Option<usize>,
    /// Longest an op waits for its batch, in microseconds.
    pub batch_latency_us: u64,
    /// Prometheus endpoint; empty to disable.
    pub metrics_addr: String,
    pub control_socket: PathBuf,
    /// Limits of the control socket's connections.
    pub control: ControlConfig,
    pub demo: DemoConfig,
    pub cpus: CpusConfig,
    /// Let the heap use transparent huge pages (see [`crate::memory`]).
    pub transparent_huge_pages: bool,
    /// Seconds a learned MAC lives without traffic (OVS's
    /// `other_config:mac-aging-time`).
    pub mac_aging_time: u64,
    /// Most MACs learned (OVS's `other_config:mac-table-size`).
    pub mac_table_size: usize,
    pub bridge: BridgeConfig,
    pub openflow: OpenFlowConfig,
    /// Geneve option mappings, as `ovs-ofctl add-tlv-map` takes them:
    /// `["{class=0xffff,type=0,len=4}->tun_metadata0"]`.
    pub tlv_map: Vec<String>,
    /// Native (userspace) tunnelling's underlay; absent: tunnel vports
    /// encapsulate through the host's UDP stack (or the kernel's vports).
    pub native_tunnel: Option<NativeTunnelConfig>,
}

/// The underlay of native tunnelling, as OVS configures it around the
/// bridge's own port: `address` is the `LOCAL` port's (OVS: `ip addr add`
/// on the bridge's interface, or `netdev-dummy/ip4addr`), `routes` as
/// `ovs-appctl ovs/route/add`, `neighbours` as `tnl/neigh/set`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct NativeTunnelConfig {
    /// The OpenFlow number of the (internal) port that holds the
    /// address; unset: the bridge's own port, `LOCAL`, as OVS has it.
    pub port: Option<u32>,
    /// `IP/PREFIX`, e.g. `"1.1.2.88/24"`: also a connected route.
    pub address: Vec<String>,
    /// The `LOCAL` port's MAC, the outer source MAC (`aa:55:aa:55:00:00`).
    pub mac: String,
    /// `"PREFIX/LEN"` or `"PREFIX/LEN GATEWAY"`.
    #[serde(default)]
    pub routes: Vec<String>,
    /// `"IP MAC"`.
    #[serde(default)]
    pub neighbours: Vec<String>,
    /// Also take the routes and neighbours of the host's tables through
    /// the underlay port's device (dumped at start, then followed), as
    /// OVS's route-table reads the host's routes.
    #[serde(default)]
    pub host_tables: bool,
}

/// A static neighbour: an underlay address and its MAC.
pub type Neighbour = (std::net::Ipv4Addr, [u8; 6]);

pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut out {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn parse_prefix(s: &str) -> Option<(std::net::Ipv4Addr, u8)> {
    let (a, l) = s.split_once('/')?;
    let l: u8 = l.parse().ok()?;
    (l <= 32).then_some(())?;
    Some((a.parse().ok()?, l))
}

impl NativeTunnelConfig {
    /// The underlay and its static neighbours.
    pub fn underlay(
        &self,
    ) -> Result<(messages::native_tunnel::Underlay, Vec<Neighbour>), ConfigError> {
        use messages::native_tunnel::{Route, Underlay};
        let bad = |what: &str, v: &str, want: &str| {
            ConfigError::Invalid(format!("[native_tunnel] {what} {v:?}: expected {want}"))
        };
        let mut u = Underlay {
            mac: parse_mac(&self.mac)
                .ok_or_else(|| bad("mac", &self.mac, "six hex bytes, aa:55:aa:55:00:00"))?,
            ..Underlay::default()
        };
        for a in &self.address {
            u.addresses.push(
                parse_prefix(a).ok_or_else(|| bad("address", a, "IPv4/PREFIX, 1.1.2.88/24"))?,
            );
        }
        if u.addresses.is_empty() {
            return Err(ConfigError::Invalid(
                "[native_tunnel] address: at least one underlay address is needed".into(),
            ));
        }
        for r in &self.routes {
            let mut w = r.split_whitespace();
            let (prefix, plen) = w
                .next()
                .and_then(parse_prefix)
                .ok_or_else(|| bad("route", r, "PREFIX/LEN [GATEWAY]"))?;
            let gateway = match w.next() {
                None => None,
                Some(g) => Some(
                    g.parse()
                        .map_err(|_| bad("route", r, "PREFIX/LEN [GATEWAY]"))?,
                ),
            };
            if w.next().is_some() {
                return Err(bad("route", r, "PREFIX/LEN [GATEWAY]"));
            }
            let src = u.source_for(gateway).expect("an address exists");
            u.routes.push(Route {
                prefix,
                plen,
                gateway,
                src,
            });
        }
        let mut neighbours = Vec::new();
        for n in &self.neighbours {
            let mut w = n.split_whitespace();
            let parsed = (|| Some((w.next()?.parse().ok()?, parse_mac(w.next()?)?)))();
            match parsed {
                Some(x) if w.next().is_none() => neighbours.push(x),
                _ => return Err(bad("neighbour", n, "IP MAC, 1.1.2.92 f8:bc:12:44:34:b6")),
            }
        }
        Ok((u, neighbours))
    }
}

/// A number in decimal or `0x` hex.
fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The bridge as OpenFlow and `ovs-appctl` name it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BridgeConfig {
    /// The name `ofproto/trace` takes and the default socket is named after.
    pub name: String,
    /// The OpenFlow datapath id, `0x` and up to 16 hex digits.
    pub datapath_id: String,
}

impl Default for BridgeConfig {
    fn default() -> Self {
        BridgeConfig {
            name: "br0".into(),
            datapath_id: "0x0000027563616c6c".into(),
        }
    }
}

impl BridgeConfig {
    pub fn datapath_id(&self) -> Result<u64, ConfigError> {
        let hex = self.datapath_id.trim_start_matches("0x");
        u64::from_str_radix(hex, 16).map_err(|e| {
            ConfigError::Invalid(format!(
                "[bridge] datapath_id = {:?}: {e} (expected 0x and up to 16 hex digits)",
                self.datapath_id
            ))
        })
    }
}

/// What the switch does while no controller is connected (OVS's
/// `fail_mode`).
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FailMode {
    /// Keep the flows as they are.
    #[default]
    Secure,
    /// Fall back to NORMAL switching.
    Standalone,
}

/// The OpenFlow channel.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct OpenFlowConfig {
    /// Where to listen (`punix:PATH`, `ptcp:PORT[:IP]`). Unset:
    /// `punix:/run/upcalld/BRIDGE.mgmt`; empty: nowhere.
    pub listen: Option<Vec<String>>,
    /// Controllers to connect to (`tcp:IP:PORT`, `unix:PATH`).
    pub controllers: Vec<String>,
    pub fail_mode: FailMode,
    /// Packet-ins per second each connection may get, for each of the
    /// two kinds (table misses, other `controller` actions), as OVS's
    /// `controller_rate_limit` (at least 100); unset or 0: no limit, as in
    /// OVS. Over the limit they wait, and the waiting ones are dropped
    /// beyond the burst (`actors/src/pinsched.rs`); both counted.
    pub controller_rate_limit: u32,
    /// Packet-ins that may wait for the rate limit (OVS's
    /// `controller_burst_limit`, at least 25); 0: a quarter of the rate.
    pub controller_burst_limit: u32,
}

impl OpenFlowConfig {
    /// The packet-in rate limit, as (rate, burst), if any.
    pub fn packet_in_limit(&self) -> Option<(u32, u32)> {
        (self.controller_rate_limit > 0).then(|| {
            actors::pinsched::limits(self.controller_rate_limit, self.controller_burst_limit)
        })
    }

    /// OVS's database refuses rates below 100 and bursts below 25.
    fn check(&self) -> Result<(), ConfigError> {
        let (rate, burst) = (self.controller_rate_limit, self.controller_burst_limit);
        if (1..100).contains(&rate) {
            return Err(ConfigError::Invalid(format!(
                "[openflow] controller_rate_limit = {rate}: must be 0 (no limit) or at least 100"
            )));
        }
        if (1..25).contains(&burst) {
            return Err(ConfigError::Invalid(format!(
                "[openflow] controller_burst_limit = {burst}: must be 0 (a quarter of the rate) or at least 25"
            )));
        }
        Ok(())
    }
}

/// The userspace datapath's default batch size (see `Config::batch_size`).
pub const USERSPACE_BATCH_SIZE: usize = 128;

impl Default for Config {
    fn default() -> Self {
        Config {
            datapath: DatapathConfig::default(),
            ports: Vec::new(),
            rules: None,
            receivers: 1,
            handlers: 2,
            revalidators: 1,
            flow_limit: 200_000,
            flow_limit_start: 10_000,
            max_idle_ms: 10_000,
            revalidate_interval_ms: 500,
            batch_size: None,
            batch_latency_us: 1000,
            metrics_addr: "127.0.0.1:9464".into(),
            control_socket: PathBuf::from(DEFAULT_SOCKET),
            control: ControlConfig::default(),
            demo: DemoConfig::default(),
            cpus: CpusConfig::default(),
            transparent_huge_pages: false,
            bridge: BridgeConfig::default(),
            openflow: OpenFlowConfig::default(),
            tlv_map: Vec::new(),
            native_tunnel: None,
            mac_aging_time: actors::mac_learning::DEFAULT_IDLE_TIME,
            mac_table_size: actors::mac_learning::DEFAULT_MAX_ENTRIES,
        }
    }
}

/// Where the control socket is unless configured.
pub const DEFAULT_SOCKET: &str = "/run/upcalld.sock";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The I/O error is part of the message, not a `source`: printed with
    // its chain (`{:#}`) it would appear twice.
    #[error("{path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("bad configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Where the datapath's port threads and the actors run, on this
    /// machine.
    pub fn thread_cpus(&self) -> ThreadCpus {
        self.cpus
            .resolve(self.datapath.kind, &messages::threads::allowed_cpus())
    }

    /// The datapath batch size: as configured, or the datapath's default.
    pub fn batch_size(&self) -> usize {
        self.batch_size.unwrap_or(match self.datapath.kind {
            DatapathType::Kernel => actors::dpif_writer::WriterConfig::default().batch_size,
            DatapathType::Userspace => USERSPACE_BATCH_SIZE,
        })
    }

    /// Reads and checks a configuration file. A file that names no ports
    /// and no `[demo]` gets no demo: the demo is only for the bare defaults.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: shown.clone(),
            error,
        })?;
        Config::parse(&text, &shown)
    }

    pub fn parse(text: &str, path: &str) -> Result<Config, ConfigError> {
        let value: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: path.into(),
                message: e.to_string(),
            })?;
        // Named apart from unknown keys: OVS users look for these.
        for key in ["ipfix", "sflow", "netflow", "flow_sample_collector_set"] {
            if value.contains_key(key) {
                return Err(ConfigError::Invalid(format!(
                    "{path}: [{key}]: upcalld exports no flow samples (no IPFIX, sFlow or \
                     NetFlow); `sample` actions do nothing, as in OVS with no collector set"
                )));
            }
        }
        let has_demo = value.contains_key("demo");
        let mut config: Config =
            value
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: path.into(),
                    message: e.to_string(),
                })?;
        if !has_demo {
            config.demo.enabled = false;
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let invalid = |m: String| Err(ConfigError::Invalid(m));
        if self.receivers == 0 || self.receivers > 64 {
            return invalid(format!("receivers = {}: must be 1 to 64", self.receivers));
        }
        if self.handlers == 0 || self.handlers > 64 {
            return invalid(format!("handlers = {}: must be 1 to 64", self.handlers));
        }
        if self.revalidators == 0 || self.revalidators > 64 {
            return invalid(format!(
                "revalidators = {}: must be 1 to 64",
                self.revalidators
            ));
        }
        if self.batch_size == Some(0) {
            return invalid("batch_size must be at least 1".into());
        }
        if self.flow_limit < 1000 {
            return invalid(format!(
                "flow_limit = {}: must be at least 1000",
                self.flow_limit
            ));
        }
        if self.revalidate_interval_ms == 0 {
            return invalid("revalidate_interval_ms must be at least 1".into());
        }
        self.openflow.check()?;
        self.datapath
            .conntrack
            .fragments
            .check()
            .map_err(ConfigError::Invalid)?;
        if self.datapath.kind == DatapathType::Kernel {
            let name = &self.datapath.name;
            // A network interface name: at most 15 bytes, no '/' or space.
            if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
                return invalid(format!(
                    "datapath.name = {name:?}: must be a network interface name (1 to 15 bytes, no '/' or space)"
                ));
            }
            if self.native_tunnel.is_some() {
                return invalid(
                    "[native_tunnel]: only the userspace datapath tunnels natively (tnl_push/tnl_pop); \
                     the kernel's tunnel vports encapsulate themselves"
                        .into(),
                );
            }
            if let Some(p) = self.ports.iter().find(|p| p.kind == PortType::Replay) {
                return invalid(format!(
                    "port {:?}: replay ports exist only on the userspace datapath",
                    p.name
                ));
            }
        }
        let allowed = messages::threads::allowed_cpus();
        for (role, cpus) in [
            ("datapath", &self.cpus.datapath),
            ("receivers", &self.cpus.receivers),
            ("handlers", &self.cpus.handlers),
            ("revalidators", &self.cpus.revalidators),
            ("writer", &self.cpus.writer),
        ] {
            if let Some(cpu) = cpus.iter().find(|c| !allowed.contains(c)) {
                return invalid(format!(
                    "cpus.{role}: CPU {cpu} is not one this process may run on ({allowed:?})"
                ));
            }
        }
        if self.control.max_connections == 0 || self.control.io_timeout_ms == 0 {
            return invalid(
                "control.max_connections and control.io_timeout_ms must be at least 1".into(),
            );
        }
        if self.datapath.upcall_queue_len == 0 {
            return invalid("datapath.upcall_queue_len must be at least 1".into());
        }
        self.metrics_socket_addr()?;
        for p in &self.ports {
            if p.is_tunnel() {
                p.tunnel()?;
                if p.number.is_none() {
                    return invalid(format!("port {:?}: a tunnel port needs a `number`", p.name));
                }
            } else {
                p.spec()?;
            }
        }
        self.tlv_map()?;
        self.tunnel_vports()?;
        self.port_vlans()?;
        if !(15..=3600).contains(&self.mac_aging_time) {
            return invalid(format!(
                "mac_aging_time = {}: must be 15 to 3600 seconds",
                self.mac_aging_time
            ));
        }
        if self.mac_table_size == 0 {
            return invalid("mac_table_size must be at least 1".into());
        }
        Ok(())
    }

    /// The metrics endpoint's address, if enabled.
    pub fn metrics_socket_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.metrics_addr.is_empty() {
            return Ok(None);
        }
        self.metrics_addr.parse().map(Some).map_err(|e| {
            ConfigError::Invalid(format!("metrics_addr = {:?}: {e}", self.metrics_addr))
        })
    }

    /// The OpenFlow listeners, and whether they were configured (a
    /// default one that cannot bind only warns).
    pub fn openflow_listen(&self) -> (Vec<String>, bool) {
        match &self.openflow.listen {
            Some(l) => (l.clone(), true),
            None => (
                vec![format!("punix:/run/upcalld/{}.mgmt", self.bridge.name)],
                false,
            ),
        }
    }

    /// The VLAN configuration of each numbered port with VLAN settings.
    pub fn port_vlans(&self) -> Result<BTreeMap<u32, PortVlan>, ConfigError> {
        let mut out = BTreeMap::new();
        for p in self.ports.iter().filter(|p| p.has_vlan_settings()) {
            let number = p.number.ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "port {:?}: VLAN settings need the port's `number`",
                    p.name
                ))
            })?;
            out.insert(number, p.vlan()?);
        }
        Ok(out)
    }

    /// The timeout policy id of each conntrack zone with a policy of its
    /// own (`[datapath.conntrack] zone_timeouts`).
    pub fn zone_timeout_policies(&self) -> Result<BTreeMap<u16, u32>, ConfigError> {
        Ok(self.datapath.conntrack.timeout_policies().zones().clone())
    }

    /// Each zone policy by its id, as configured (what it sets, the rest
    /// being the datapath's defaults): what the kernel datapath makes
    /// cttimeout objects of (zones sharing an id share the first's).
    pub fn timeout_policies_by_id(&self) -> BTreeMap<u32, ZoneTimeouts> {
        let ct = &self.datapath.conntrack;
        let mut out = BTreeMap::new();
        for (zone, id) in ct.timeout_policies().zones() {
            if let Some(z) = ct.zone_timeouts.get(zone) {
                out.entry(*id).or_insert_with(|| z.clone());
            }
        }
        out
    }

    /// The tunnel ports, by OpenFlow port number.
    pub fn tunnel_ports(&self) -> Result<BTreeMap<u32, TunnelConfig>, ConfigError> {
        let mut out = BTreeMap::new();
        for p in self.ports.iter().filter(|p| p.is_tunnel()) {
            let number = p.number.ok_or_else(|| {
                ConfigError::Invalid(format!("port {:?}: a tunnel port needs a `number`", p.name))
            })?;
            out.insert(number, p.tunnel()?);
        }
        Ok(out)
    }

    /// The datapath vports the tunnel ports need: one per tunnel type and
    /// UDP port, numbered by the UDP port and named as OVS names them
    /// (`vxlan_sys_4789`, `genev_sys_6081`).
    pub fn tunnel_vports(&self) -> Result<Vec<PortSpec>, ConfigError> {
        let mut out: Vec<PortSpec> = Vec::new();
        for t in self.tunnel_ports()?.values() {
            let prefix = match t.kind {
                TunnelKind::Vxlan => "vxlan_sys",
                TunnelKind::Geneve => "genev_sys",
            };
            let name = format!("{prefix}_{}", t.dst_port);
            let kind = PortKind::Tunnel {
                kind: t.kind,
                udp_port: t.dst_port,
                vxlan_gbp: t.vxlan_gbp,
            };
            match out.iter().find(|s| s.number == Some(t.odp_port)) {
                Some(s) if s.name == name && s.kind == kind => {}
                Some(s) if s.name == name => {
                    return Err(ConfigError::Invalid(format!(
                        "VXLAN ports on UDP port {} share the vport {name}: all of them or none need exts = \"gbp\"",
                        t.dst_port
                    )))
                }
                Some(s) => {
                    return Err(ConfigError::Invalid(format!(
                        "tunnel ports of two types share UDP port {} ({} and {name})",
                        t.dst_port, s.name
                    )))
                }
                None => out.push(PortSpec {
                    name,
                    kind,
                    number: Some(t.odp_port),
                }),
            }
        }
        if let Some(p) = self.ports.iter().find(|p| {
            !p.is_tunnel()
                && p.number
                    .is_some_and(|n| out.iter().any(|s| s.number == Some(n)))
        }) {
            return Err(ConfigError::Invalid(format!(
                "port {:?}: its number is the UDP port of a tunnel vport, which takes that number",
                p.name
            )));
        }
        Ok(out)
    }

    /// Native tunnelling's underlay, if configured.
    pub fn native_tunnel(
        &self,
    ) -> Result<Option<std::sync::Arc<actors::xlate::native_tunnel::NativeTunnel>>, ConfigError>
    {
        let Some(n) = &self.native_tunnel else {
            return Ok(None);
        };
        let (u, neighbours) = n.underlay()?;
        Ok(Some(std::sync::Arc::new(
            actors::xlate::native_tunnel::NativeTunnel::new(u, n.port, &neighbours),
        )))
    }

    /// The Geneve TLV map from `tlv_map` (entries as `add-tlv-map` takes
    /// them).
    pub fn tlv_map(&self) -> Result<TlvMap, ConfigError> {
        TlvMap::from_text(&self.tlv_map.join(","))
            .map_err(|e| ConfigError::Invalid(format!("tlv_map: {e}")))
    }

    /// The bridge's MAC learning table, empty.
    pub fn mac_table(&self) -> actors::mac_learning::MacTable {
        actors::mac_learning::MacTable::new(self.mac_aging_time, self.mac_table_size)
    }

    pub fn max_idle(&self) -> Duration {
        Duration::from_millis(self.max_idle_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_tunnel_config_parses_and_bad_values_are_named() {
        let ok = "[native_tunnel]\naddress = [\"1.1.2.88/24\"]\nmac = \"aa:55:aa:55:00:00\"\n\
                  routes = [\"9.9.0.0/16 1.1.2.1\"]\nneighbours = [\"1.1.2.1 f8:bc:12:44:34:01\"]\n";
        let c = Config::parse(ok, "t.toml").unwrap();
        let nt = c.native_tunnel().unwrap().unwrap();
        assert_eq!(
            nt.underlay.route("9.9.9.9".parse().unwrap()),
            Some(("1.1.2.1".parse().unwrap(), "1.1.2.88".parse().unwrap()))
        );
        assert_eq!(
            nt.neighbour("1.1.2.1".parse().unwrap()),
            Some([0xf8, 0xbc, 0x12, 0x44, 0x34, 0x01])
        );
        for (bad, says) in [
            (
                ok.replace("1.1.2.88/24", "1.1.2.88"),
                "address \"1.1.2.88\"",
            ),
            (ok.replace("aa:55:aa:55:00:00", "aa:55"), "mac \"aa:55\""),
            (ok.replace("9.9.0.0/16 1.1.2.1", "9.9.0.0/16 x"), "route"),
            (ok.replace("1.1.2.1 f8", "1.1.2.1 zz"), "neighbour"),
        ] {
            let e = Config::parse(&bad, "t.toml")
                .and_then(|c| c.native_tunnel().map(|_| ()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(says), "{e}");
        }
        let kernel = format!("{ok}[datapath]\ntype = \"kernel\"\nname = \"dp0\"\n");
        let e = Config::parse(&kernel, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("only the userspace datapath tunnels natively"),
            "{e}"
        );
    }

    #[test]
    fn defaults_run_the_demo() {
        let c = Config::default();
        assert!(c.demo.enabled);
        assert_eq!(c.handlers, 2);
        assert_eq!(
            c.metrics_socket_addr().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
    }

    #[test]
    fn conntrack_zone_tables_parse_and_policies_have_ids() {
        let text = "[datapath.conntrack]\nzone_limits = { 5 = 1000 }\n\
                    zone_timeouts = { 5 = { udp_first = 10 }, 7 = { icmp_first = 3 }, \
                    9 = { udp_first = 10 } }\n";
        let c = Config::parse(text, "t.toml").unwrap();
        assert_eq!(c.datapath.conntrack.zone_limits, [(5, 1000)].into());
        assert_eq!(
            c.zone_timeout_policies().unwrap(),
            [(5, 1), (7, 2), (9, 1)].into()
        );
        let by_id = c.timeout_policies_by_id();
        assert_eq!(by_id.len(), 2);
        assert_eq!(by_id[&2].icmp_first, Some(3));
        assert_eq!(by_id[&1].icmp_first, None);
        let bad = Config::parse("[datapath.conntrack]\nzone_limits = { x = 1 }\n", "t.toml");
        assert!(bad.unwrap_err().to_string().contains("zone \"x\""));
        let bad = Config::parse(
            "[datapath.conntrack]\nzone_timeouts = { 5 = { udp_frist = 10 } }\n",
            "t.toml",
        );
        assert!(bad.unwrap_err().to_string().contains("udp_frist"));
    }

    #[test]
    fn a_file_with_ports_and_no_demo_section_has_no_demo() {
        let c = Config::parse(
            "handlers = 3\n[datapath]\ntype = \"userspace\"\n[[port]]\nname = \"v0\"\nnumber = 1\n[[port]]\nname = \"r\"\ntype = \"replay\"\npath = \"/tmp/x.tsv\"\n",
            "t.toml",
        )
        .unwrap();
        assert!(!c.demo.enabled);
        assert_eq!(c.handlers, 3);
        assert_eq!(c.ports.len(), 2);
        assert_eq!(
            c.ports[1].spec().unwrap().kind,
            PortKind::Replay {
                path: "/tmp/x.tsv".into()
            }
        );
    }

    #[test]
    fn the_example_configurations_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 3, "examples/*.toml: {n}");
        let kernel = Config::load(&dir.join("kernel.toml")).unwrap();
        assert_eq!(kernel.datapath.kind, DatapathType::Kernel);
        assert_eq!(kernel.datapath.on_exit, OnExit::Keep);
        // Batches as large as the datapath takes, unless configured.
        assert_eq!(kernel.batch_size(), 50);
        assert_eq!(Config::default().batch_size(), USERSPACE_BATCH_SIZE);
        let set = Config::parse("batch_size = 7\n", "t.toml").unwrap();
        assert_eq!(set.batch_size(), 7);
        assert!(Config::parse("batch_size = 0\n", "t.toml").is_err());
    }

    #[test]
    fn flow_sampling_export_is_refused_by_name() {
        for text in [
            "[ipfix]\ntargets = [\"127.0.0.1:4739\"]\n",
            "[sflow]\nsampling = 64\n",
        ] {
            let e = Config::parse(text, "t.toml").unwrap_err().to_string();
            assert!(e.contains("exports no flow samples"), "{e}");
        }
    }

    #[test]
    fn cpus_must_be_ones_the_process_may_use() {
        let e = Config::parse("[cpus]\nhandlers = [100000]\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cpus.handlers") && e.contains("100000"), "{e}");
        assert!(Config::parse("[cpus]\nwriters = [0]\n", "t.toml").is_err());
        let e = Config::parse("[cpus]\nplacement = \"spread\"\n", "t.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("placement") && e.contains("spread"), "{e}");
    }

    #[test]
    fn threads_start_from_the_placement_and_lists_replace_its_kinds() {
        let cpus = |text: &str, allowed: &[usize]| {
            let c = Config::parse(text, "t.toml").unwrap();
            c.cpus.resolve(c.datapath.kind, allowed)
        };
        // By default, beside the userspace datapath, as OVS places PMDs.
        let auto = cpus("", &[0, 1, 2]);
        assert_eq!(auto.datapath, [0]);
        assert_eq!(auto.actors.writer, [0]);
        assert_eq!(auto.actors.handlers, [1, 2]);
        assert_eq!(auto.actors.receivers, [1, 2]);
        assert_eq!(auto.actors.revalidators, [1, 2]);
        // One CPU, the kernel datapath, or "none": the kernel places them.
        assert_eq!(cpus("", &[0]), ThreadCpus::default());
        let kernel = "[datapath]\ntype = \"kernel\"\n";
        assert_eq!(cpus(kernel, &[0, 1]), ThreadCpus::default());
        let none = "[cpus]\nplacement = \"none\"\n";
        assert_eq!(cpus(none, &[0, 1]), ThreadCpus::default());
        // A list replaces its kind's CPUs only.
        let given = cpus("[cpus]\nwriter = [1]\nhandlers = [0]\n", &[0, 1]);
        assert_eq!(given.actors.writer, [1]);
        assert_eq!(given.actors.handlers, [0]);
        assert_eq!(given.datapath, [0]);
        assert_eq!(given.actors.receivers, [1]);
        let given = cpus("[cpus]\nplacement = \"none\"\nwriter = [0]\n", &[0, 1]);
        assert_eq!(given.actors.writer, [0]);
        assert!(given.datapath.is_empty() && given.actors.handlers.is_empty());
    }

    #[test]
    fn kernel_datapath_keys() {
        let c = Config::parse(
            "[datapath]\ntype = \"kernel\"\nname = \"dp0\"\non_exit = \"delete\"\nper_cpu_dispatch = false\n[[port]]\nname = \"v0\"\n[[port]]\nname = \"in0\"\ntype = \"internal\"\n",
            "k.toml",
        )
        .unwrap();
        assert_eq!(c.datapath.kind, DatapathType::Kernel);
        assert_eq!(c.datapath.name, "dp0");
        assert_eq!(c.datapath.on_exit, OnExit::Delete);
        assert!(!c.datapath.per_cpu_dispatch);
        assert_eq!(c.ports[1].spec().unwrap().kind, PortKind::Internal);
        assert_eq!(Config::default().datapath.on_exit, OnExit::Keep);
        let e = Config::parse(
            "[datapath]\ntype = \"kernel\"\nname = \"a-name-far-too-long\"\n",
            "k.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("datapath.name"), "{e}");
        let e = Config::parse(
            "[datapath]\ntype = \"kernel\"\n[[port]]\nname = \"r\"\ntype = \"replay\"\npath = \"/tmp/x\"\n",
            "k.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("only on the userspace datapath"), "{e}");
        let e = Config::parse("[datapath]\non_exit = \"maybe\"\n", "k.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("on_exit") || e.contains("maybe"), "{e}");
    }

    #[test]
    fn port_vlan_settings() {
        let c = Config::parse(
            "[[port]]\nname = \"a\"\nnumber = 1\ntag = 10\n[[port]]\nname = \"t\"\nnumber = 3\ntrunks = [10, 20]\n[[port]]\nname = \"n\"\nnumber = 4\ntag = 20\nvlan_mode = \"native-untagged\"\n[[port]]\nname = \"plain\"\nnumber = 5\n",
            "v.toml",
        )
        .unwrap();
        let v = c.port_vlans().unwrap();
        assert_eq!(v[&1].mode, VlanMode::Access);
        assert_eq!(v[&1].vlan, 10);
        assert_eq!(v[&3].mode, VlanMode::Trunk);
        assert_eq!(v[&4].mode, VlanMode::NativeUntagged);
        assert!(!v.contains_key(&5), "no settings: a trunk of all VLANs");
        let e = Config::parse("[[port]]\nname = \"x\"\nnumber = 1\ntag = 5000\n", "v.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"x\"") && e.contains("5000"), "{e}");
        let e = Config::parse("[[port]]\nname = \"x\"\ntag = 5\n", "v.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("need the port's `number`"), "{e}");
        let e = Config::parse(
            "[[port]]\nname = \"x\"\nnumber = 2\nvlan_mode = \"dot1q-tunnel\"\n",
            "v.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("dot1q-tunnel") && e.contains("not supported"),
            "{e}"
        );
        let e = Config::parse("mac_aging_time = 5\n", "v.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("mac_aging_time"), "{e}");
    }

    #[test]
    fn tunnel_ports_read_as_ovs_reads_interface_options() {
        let c = Config::parse(
            r#"
            tlv_map = ["{class=0x102,type=0x80,len=4}->tun_metadata0"]
            [[port]]
            name = "gnv0"
            type = "geneve"
            number = 10
            remote_ip = "flow"
            key = "flow"
            [[port]]
            name = "vx0"
            type = "vxlan"
            number = 11
            remote_ip = "192.0.2.9"
            local_ip = "192.0.2.1"
            out_key = "0x64"
            dst_port = 8472
            tos = "inherit"
            ttl = 10
            csum = true
            df_default = false
            "#,
            "t.toml",
        )
        .unwrap();
        let t = c.tunnel_ports().unwrap();
        assert_eq!(
            (t[&10].remote_ip, t[&10].in_key),
            (TunnelIp::Flow, TunnelKey::Flow)
        );
        let vx = &t[&11];
        assert_eq!(
            (vx.out_key, vx.in_key),
            (TunnelKey::Fixed(0x64), TunnelKey::None)
        );
        assert_eq!(
            (vx.dst_port, vx.tos, vx.ttl, vx.csum, vx.df_default),
            (8472, None, Some(10), true, false)
        );
        let names: Vec<_> = c
            .tunnel_vports()
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.number))
            .collect();
        assert_eq!(
            names,
            [
                ("genev_sys_6081".to_string(), Some(6081)),
                ("vxlan_sys_8472".to_string(), Some(8472))
            ]
        );
        assert_eq!(
            c.tlv_map().unwrap().by_option(0x102, 0x80).map(|(i, _)| i),
            Some(0)
        );

        let bad = |port: &str| {
            Config::parse(&format!("[[port]]\nname = \"t\"\n{port}"), "t.toml")
                .unwrap_err()
                .to_string()
        };
        assert!(bad("type = \"vxlan\"\nnumber = 1").contains("needs `remote_ip`"));
        assert!(bad("type = \"vxlan\"\nremote_ip = \"1.1.1.1\"").contains("needs a `number`"));
        assert!(
            bad("type = \"vxlan\"\nnumber = 1\nremote_ip = \"nowhere\"").contains("an IP address")
        );
        assert!(
            bad("type = \"vxlan\"\nnumber = 1\nremote_ip = \"1.1.1.1\"\ntos = 3").contains("ECN")
        );
        assert!(
            bad("type = \"system\"\nnumber = 1\nremote_ip = \"1.1.1.1\"")
                .contains("tunnel options")
        );
        let shared = Config::parse(
            "[[port]]\nname = \"a\"\ntype = \"vxlan\"\nnumber = 1\nremote_ip = \"1.1.1.1\"\n\
             [[port]]\nname = \"b\"\ntype = \"geneve\"\nnumber = 2\nremote_ip = \"1.1.1.1\"\ndst_port = 4789\n",
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(shared.contains("share UDP port 4789"), "{shared}");

        // exts = "gbp": VXLAN only, on every port of its vport or none.
        let vxlan = |name: &str, n: u32, exts: &str| {
            format!("[[port]]\nname = \"{name}\"\ntype = \"vxlan\"\nnumber = {n}\nremote_ip = \"1.1.1.1\"\n{exts}\n")
        };
        let gbp = Config::parse(&vxlan("a", 1, "exts = \"gbp\""), "t.toml").unwrap();
        assert!(gbp.tunnel_ports().unwrap()[&1].vxlan_gbp);
        assert!(matches!(
            gbp.tunnel_vports().unwrap()[0].kind,
            PortKind::Tunnel {
                vxlan_gbp: true,
                ..
            }
        ));
        assert!(
            bad("type = \"geneve\"\nnumber = 1\nremote_ip = \"1.1.1.1\"\nexts = \"gbp\"")
                .contains("VXLAN's")
        );
        assert!(
            bad("type = \"vxlan\"\nnumber = 1\nremote_ip = \"1.1.1.1\"\nexts = \"gpe\"")
                .contains("unknown extension \"gpe\"")
        );
        let mixed = Config::parse(
            &format!("{}{}", vxlan("a", 1, "exts = \"gbp\""), vxlan("b", 2, "")),
            "t.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(mixed.contains("all of them or none"), "{mixed}");
    }

    #[test]
    fn errors_name_the_file_and_the_key() {
        let e = Config::parse("handlers = \"two\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:"), "{e}");
        assert!(e.contains("handlers"), "{e}");
        let e = Config::parse("handlerz = 2\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("handlerz"), "{e}");
        let e = Config::parse("handlers = 0\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("handlers = 0"), "{e}");
        let e = Config::parse("[[port]]\nname = \"r\"\ntype = \"replay\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs `path`"), "{e}");
        let e = Config::parse("metrics_addr = \"nowhere\"\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics_addr"), "{e}");
    }
}
