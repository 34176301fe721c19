//! The OpenFlow channel: listeners (`punix:`, `ptcp:`) and controller
//! connections (`unix:`, `tcp:`, with OVS's reconnect backoff), one tokio
//! task per connection on the daemon's actix runtime.
//!
//! A connection decodes messages with `messages::openflow` and turns flow
//! mods into `RuleChange`s for the rule-table actor, the one path for rule
//! changes. Flow mods that arrive together are sent as one `Bundle`
//! change; the connection awaits each change before reading on, so a
//! BARRIER_REPLY (sent after everything before it was awaited) means every
//! earlier flow mod is in a published snapshot.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::fanout::{Fanout, Subscription};
use actors::packet_in::ControllerPacket;
use actors::pinsched::PinSched;
use actors::pipeline::Pipeline;
use actors::protocol::{ChangePorts, GetSnapshot, PushStats, RuleChange, RuleStats, SetFailOpen};
use actors::recirc::FrozenState;
use actors::rule_table::{RemovalReason, RemovedRule};
use actors::stats::PipelineStats;
use actors::tables::{RuleEntry, RuleFilter};
use actors::xlate::{xlate_actions, xlate_resume, XlateConfig};
use futures::StreamExt;
use messages::dpif::{Dpif, DpifOp, Execute, PacketMetadata};
use messages::flow::Flow;
use messages::log_limit::RateLimit as LogLimit;
use messages::ofp::{flow_flags, packet_in_reason, port, Match, Rule};
use messages::openflow::continuation::Resume;
use messages::openflow::{
    self as of, BundleOp, DecodeState, ErrorKind, FlowFormat, FlowMod, FlowModCommand,
    FlowStatsEntry, FlowStatsRequest, MultipartRequest, OfpError, PacketInFormat, PacketOut,
    Request,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::rules::FlowModRequest;

/// Tables a switch offers (OVS: 254, numbered 0..=253).
pub use of::N_TABLES;
/// OVS's inactivity probe interval.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);
/// OVS's reconnect backoff: 1 s doubling to 8 s.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(8);
/// Messages bundled before a commit, at most (OVS has no fixed bound; this
/// bounds the memory one connection can hold).
const MAX_BUNDLE_MSGS: usize = 1 << 20;

/// Where to listen or connect, in OVS's syntax.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `punix:PATH`
    ListenUnix(PathBuf),
    /// `ptcp:PORT[:IP]` (127.0.0.1 unless given)
    ListenTcp(std::net::SocketAddr),
    /// `unix:PATH`
    Unix(PathBuf),
    /// `tcp:IP:PORT`
    Tcp(std::net::SocketAddr),
}

impl Endpoint {
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        let (kind, rest) = s.split_once(':').ok_or_else(|| {
            format!("{s:?}: expected punix:PATH, ptcp:PORT[:IP], unix:PATH or tcp:IP:PORT")
        })?;
        let addr = |ip: &str, port: &str| -> Result<std::net::SocketAddr, String> {
            let ip: std::net::IpAddr = ip
                .parse()
                .map_err(|e| format!("{s:?}: address {ip:?}: {e}"))?;
            let port: u16 = port
                .parse()
                .map_err(|e| format!("{s:?}: port {port:?}: {e}"))?;
            Ok(std::net::SocketAddr::new(ip, port))
        };
        match kind {
            "punix" if !rest.is_empty() => Ok(Endpoint::ListenUnix(rest.into())),
            "unix" if !rest.is_empty() => Ok(Endpoint::Unix(rest.into())),
            "ptcp" => {
                let (port, ip) = rest.split_once(':').unwrap_or((rest, "127.0.0.1"));
                Ok(Endpoint::ListenTcp(addr(ip, port)?))
            }
            "tcp" => {
                let (ip, port) = rest
                    .rsplit_once(':')
                    .ok_or_else(|| format!("{s:?}: expected tcp:IP:PORT"))?;
                Ok(Endpoint::Tcp(addr(ip, port)?))
            }
            _ => Err(format!(
                "{s:?}: expected punix:PATH, ptcp:PORT[:IP], unix:PATH or tcp:IP:PORT"
            )),
        }
    }
}

/// What connections share: the pipeline (rule changes, dumps, packet-ins),
/// the datapath (ports, packet-outs) and the switch's identity.
pub struct Switch {
    pub pipeline: Rc<Pipeline>,
    pub dpif: Arc<dyn Dpif>,
    /// How packet-outs are translated (the handlers' configuration).
    pub xlate: XlateConfig,
    pub datapath_id: u64,
    pub bridge: String,
    pub started: Instant,
    /// Packet-ins per second and burst each connection may send of each
    /// kind (OVS's `controller_rate_limit` / `controller_burst_limit`);
    /// None: no limit.
    pub packet_in_limit: Option<(u32, u32)>,
    pub fail_open: FailOpen,
    /// Ports added, removed or changed (reason, port), for PORT_STATUS.
    pub port_changes: Arc<Fanout<(PortReason, of::PortDesc)>>,
    /// This bridge instance's id, which its continuations carry (OVS's
    /// ofproto UUID): one from another daemon, or from before a restart,
    /// is stale.
    pub instance: [u8; 16],
}

/// A random bridge instance id ([`Switch::instance`]), from the
/// process's randomly keyed hasher.
pub fn new_instance_id() -> [u8; 16] {
    use std::hash::{BuildHasher, Hasher};
    let mut id = [0; 16];
    for (i, half) in id.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(Instant::now().elapsed().as_nanos());
        half.copy_from_slice(&h.finish().to_be_bytes());
    }
    id
}

/// Why a PORT_STATUS is sent (OpenFlow's `ofp_port_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortReason {
    Add = 0,
    Delete = 1,
    Modify = 2,
}

/// How often port states are read besides the events that wake the
/// watcher (rtnetlink link changes, `ctl add-port`/`del-port`): a
/// fallback for what no event tells (a vport another tool changed). Each
/// look dumps the datapath's ports and reads two sysfs files per port on
/// the main thread, so it is rare while link events are heard: once a
/// second it took a third of the main thread's CPU in a burst of upcalls
/// in the kernel VM.
const PORT_POLL: Duration = Duration::from_secs(10);
/// The same when no link events can be heard: the poll is all there is.
const PORT_POLL_WITHOUT_EVENTS: Duration = Duration::from_secs(1);

/// Wakes `events` on every rtnetlink link message of this network
/// namespace (an interface up or down, a carrier change, an interface
/// enslaved to or freed from a kernel datapath), as OVS's netdev-linux
/// hears them, from a thread of its own blocked on the socket. Without
/// the socket, the poll alone tells (logged). The flag returned says
/// whether the events are heard (the thread runs).
fn watch_links(events: futures::channel::mpsc::UnboundedSender<()>) -> Arc<AtomicBool> {
    let hearing = Arc::new(AtomicBool::new(false));
    use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
    const RTMGRP_LINK: u32 = 1;
    let socket = Socket::new(NETLINK_ROUTE).and_then(|mut s| {
        s.bind(&SocketAddr::new(0, RTMGRP_LINK))?;
        Ok(s)
    });
    let socket = match socket {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "no rtnetlink link events: port changes polled once a second");
            return hearing;
        }
    };
    hearing.store(true, Ordering::Relaxed);
    let heard = hearing.clone();
    let spawned = std::thread::Builder::new()
        .name("link-events".into())
        .spawn(move || {
            let mut buf = Vec::with_capacity(1 << 16);
            loop {
                buf.clear();
                match socket.recv(&mut buf, 0) {
                    Ok(_) => {
                        if events.unbounded_send(()).is_err() {
                            heard.store(false, Ordering::Relaxed);
                            return;
                        }
                    }
                    // ENOBUFS: events were lost; the watcher reads every
                    // port anyway.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        let _ = events.unbounded_send(());
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "rtnetlink link events stopped: port changes polled once a second");
                        heard.store(false, Ordering::Relaxed);
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no rtnetlink link events thread: port changes polled once a second");
        hearing.store(false, Ordering::Relaxed);
    }
    hearing
}

/// A port's OFPPC_PORT_DOWN and OFPPS_LINK_DOWN bits, from its network
/// interface: administratively down, or without a carrier (a veth whose
/// peer is down). A port without an interface here (a tunnel vport) is up.
fn port_link_bits(name: &str) -> (u32, u32) {
    let read = |what: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{what}")).ok();
    let Some(flags) = read("flags") else {
        return (0, 0);
    };
    let up =
        u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).is_ok_and(|f| f & 1 != 0);
    // Reading the carrier of an interface that is down fails.
    let carrier = read("carrier").is_some_and(|c| c.trim() == "1");
    (u32::from(!up), u32::from(!carrier))
}

/// OVS's fail-open, for `fail_mode = "standalone"`: a switch with
/// controllers that has had none connected for three probe intervals
/// flushes its rules and switches every packet with `NORMAL` through a
/// rule no flow mod sees (OVS's hidden one, above every OpenFlow
/// priority: `SetFailOpen`) until one connects. A switch without
/// controllers has a visible `priority=0,actions=NORMAL` in table 0 from
/// the start, as OVS's bridge adds it (checked on OVS 3.1: `dump-flows`
/// shows it, `del-flows` removes it). `secure` never touches the rules.
pub struct FailOpen {
    standalone: bool,
    /// Controller connections up now.
    connected: Cell<usize>,
    /// Since when none has been (the switch's start, at first).
    alone_since: Cell<Instant>,
    active: Cell<bool>,
}

/// How long a standalone switch waits for a controller before failing
/// open (OVS: three times the longest probe interval).
const FAIL_OPEN_AFTER: Duration = Duration::from_secs(3 * PROBE_INTERVAL.as_secs());

impl FailOpen {
    pub fn new(standalone: bool) -> FailOpen {
        FailOpen {
            standalone,
            connected: Cell::new(0),
            alone_since: Cell::new(Instant::now()),
            active: Cell::new(false),
        }
    }

    /// `priority=0,actions=NORMAL` in table 0.
    pub fn normal_rule() -> Rule {
        messages::parse::rules::parse_rule("table=0,priority=0,actions=NORMAL")
            .expect("a fixed rule parses")
    }

    /// A controller connected: leave fail-open mode before its first
    /// message is read.
    async fn controller_up(&self, switch: &Switch) {
        self.connected.set(self.connected.get() + 1);
        if self.active.replace(false) {
            tracing::info!("controller connected: leaving fail-open mode");
            if let Err(e) = switch.pipeline.rule_table.send(SetFailOpen(false)).await {
                tracing::warn!(error = %e, "fail-open not left");
            }
        }
    }

    fn controller_down(&self) {
        let n = self.connected.get().saturating_sub(1);
        self.connected.set(n);
        if n == 0 {
            self.alone_since.set(Instant::now());
        }
    }

    /// Runs fail-open for a standalone switch (nothing for a secure one).
    async fn run(switch: Rc<Switch>, has_controllers: bool) {
        let fo = &switch.fail_open;
        if !fo.standalone {
            return;
        }
        if !has_controllers {
            if let Err(e) = switch
                .change(RuleChange::Add(vec![Self::normal_rule()]))
                .await
            {
                tracing::warn!(error = %e, "standalone NORMAL rule not added");
            }
            return;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let alone =
                fo.connected.get() == 0 && fo.alone_since.get().elapsed() >= FAIL_OPEN_AFTER;
            if alone && !fo.active.get() {
                tracing::warn!(
                    secs = FAIL_OPEN_AFTER.as_secs(),
                    "no controller connected: failing open (rules flushed, NORMAL switching)"
                );
                fo.active.set(true);
                if let Err(e) = switch.pipeline.rule_table.send(SetFailOpen(true)).await {
                    tracing::warn!(error = %e, "fail-open not entered");
                }
            }
        }
    }
}

impl Switch {
    async fn change(&self, change: RuleChange) -> Result<(), OfpError> {
        self.pipeline
            .rule_table
            .send(change)
            .await
            .map(|_| ())
            .map_err(|e| {
                OfpError::new(
                    ErrorKind::FlowModUnknown,
                    format!("rule-table unavailable: {e}"),
                )
            })
    }

    /// A group mod, through the rule-table like `ctl`'s.
    async fn group_mod(&self, gm: of::GroupModRequest) -> Result<(), OfpError> {
        use actors::protocol::GroupMod;
        use actors::tables::GroupModError;
        let change = match gm {
            of::GroupModRequest::Add(g) => GroupMod::Add(g),
            of::GroupModRequest::Modify(g) => GroupMod::Modify(g),
            of::GroupModRequest::Delete(id) => GroupMod::Delete(id),
        };
        let done = self.pipeline.rule_table.send(change).await.map_err(|e| {
            OfpError::new(
                ErrorKind::GroupInvalid,
                format!("rule-table unavailable: {e}"),
            )
        })?;
        done.map(|_| ()).map_err(|e| {
            let kind = match e {
                GroupModError::Exists(_) => ErrorKind::GroupExists,
                GroupModError::Unknown(_) => ErrorKind::GroupUnknown,
            };
            OfpError::new(kind, e.to_string())
        })
    }

    /// A meter mod, through the rule-table and onto the datapath like
    /// `ctl`'s.
    async fn meter_mod(&self, mm: of::MeterModRequest) -> Result<(), OfpError> {
        use crate::meters::MeterModFailure;
        use actors::protocol::MeterMod;
        use actors::tables::MeterModError;
        let change = match mm {
            of::MeterModRequest::Add(m) => MeterMod::Add(m),
            of::MeterModRequest::Modify(m) => MeterMod::Modify(m),
            of::MeterModRequest::Delete(id) => MeterMod::Delete(id),
        };
        crate::meters::meter_mod(&self.pipeline.rule_table, self.dpif.as_ref(), change)
            .await
            .map(|_| ())
            .map_err(|e| {
                let kind = match &e {
                    MeterModFailure::Refused(MeterModError::Exists(_)) => ErrorKind::MeterExists,
                    MeterModFailure::Refused(MeterModError::Unknown(_)) => ErrorKind::MeterUnknown,
                    MeterModFailure::OutOfBands { .. } => ErrorKind::MeterOutOfBands,
                    _ => ErrorKind::MeterOutOfMeters,
                };
                OfpError::new(kind, e.to_string())
            })
    }

    /// An NXT_TLV_TABLE_MOD on the process's map (the one `ctl
    /// add-tlv-map` changes), then a revalidation round, as OVS
    /// revalidates on a TLV table change. A field that a rule or group
    /// uses is not unmapped (OVS's NXTTMFC_INVALID_TLV_DEL).
    async fn tlv_table_mod(&self, m: of::TlvTableMod) -> Result<(), OfpError> {
        use messages::tlv::{self, TlvError};
        let unmap = match &m {
            of::TlvTableMod::Add(_) => Vec::new(),
            of::TlvTableMod::Delete(fields) => fields.clone(),
            of::TlvTableMod::Clear => tlv::current().iter().map(|(i, _)| i).collect(),
        };
        let result = if let of::TlvTableMod::Add(reqs) = &m {
            tlv::add_global(reqs)
        } else {
            match self.tlv_fields_in_use(&unmap).await? {
                Some(i) => Err(TlvError::InUse(i)),
                None => tlv::modify_global(|map| map.delete(&unmap)),
            }
        };
        result.map_err(|e| {
            let kind = match e {
                TlvError::BadOptLen(_) => ErrorKind::TlvBadOptLen,
                TlvError::BadFieldIdx(_) => ErrorKind::TlvBadFieldIdx,
                TlvError::TableFull { .. } => ErrorKind::TlvTableFull,
                TlvError::AlreadyMapped(_) => ErrorKind::TlvAlreadyMapped,
                TlvError::DupEntry { .. } => ErrorKind::TlvDupEntry,
                TlvError::InUse(_) => ErrorKind::TlvInvalidDel,
            };
            OfpError::new(kind, e.to_string())
        })?;
        self.pipeline.revalidate_now().await.map_err(|e| {
            OfpError::new(
                ErrorKind::TlvBadCommand,
                format!("revalidators unavailable: {e}"),
            )
        })
    }

    /// The first of `fields` (`tun_metadataN` indexes) that a rule or a
    /// group bucket names.
    async fn tlv_fields_in_use(&self, fields: &[usize]) -> Result<Option<usize>, OfpError> {
        if fields.is_empty() {
            return Ok(None);
        }
        let tables = self
            .pipeline
            .rule_table
            .send(actors::protocol::GetSnapshot)
            .await
            .map_err(|e| {
                OfpError::new(
                    ErrorKind::TlvBadCommand,
                    format!("rule-table unavailable: {e}"),
                )
            })?;
        Ok(tables.tlv_field_in_use(fields))
    }

    async fn dump(&self) -> Result<Vec<(Arc<RuleEntry>, RuleStats)>, OfpError> {
        self.pipeline
            .dump_rules()
            .await
            .map_err(|e| OfpError::new(ErrorKind::BadStat, format!("rule-table unavailable: {e}")))
    }

    /// Translates a packet-out's actions and runs them on the datapath.
    async fn packet_out(&self, po: PacketOut) -> Result<(), OfpError> {
        let in_port = po.in_port;
        let valid = in_port < 0xff00
            || in_port >= 0xffff_ff00
                && [port::LOCAL, port::CONTROLLER, port::ANY].contains(&in_port);
        if !valid {
            return Err(OfpError::new(
                ErrorKind::BadPort,
                format!("packet-out in_port {in_port:#x}"),
            ));
        }
        if po.data.is_empty() {
            return Err(OfpError::new(
                ErrorKind::BadPacket,
                "packet-out without a packet",
            ));
        }
        let tables = self.snapshot().await?;
        let md = Flow {
            in_port,
            ..Flow::default()
        };
        let flow = messages::extract::flow_extract(&po.data, &md);
        let out = xlate_actions(&tables, &flow, &self.xlate, &po.actions.apply);
        if out.actions.is_empty() {
            return Ok(());
        }
        // The datapath needs a real port to call the input: the bridge's
        // own, for a packet from the controller (as OVS does).
        let mut metadata = PacketMetadata::of(&flow);
        if in_port >= 0xff00 {
            metadata.in_port = self.xlate.local_port;
        }
        self.execute(po.data, metadata, out.actions, "packet-out")
    }

    /// The published tables a packet-out or resume is translated against.
    async fn snapshot(&self) -> Result<Arc<actors::tables::Tables>, OfpError> {
        self.pipeline
            .rule_table
            .send(GetSnapshot)
            .await
            .map_err(|e| OfpError::new(ErrorKind::BadType, format!("rule-table unavailable: {e}")))
    }

    /// Runs `actions` on `packet` on the datapath; a failure is the
    /// controller's OFPBRC_BAD_PACKET, naming `what` was not executed.
    fn execute(
        &self,
        packet: Vec<u8>,
        metadata: PacketMetadata,
        actions: messages::odp::OdpActions,
        what: &str,
    ) -> Result<(), OfpError> {
        let mut ops = [DpifOp::Execute(Box::new(Execute {
            packet,
            metadata,
            actions: Arc::new(actions),
            mru: 0,
        }))];
        match self.dpif.operate(&mut ops).pop() {
            Some(Err(e)) => Err(OfpError::new(
                ErrorKind::BadPacket,
                format!("{what} not executed: {e}"),
            )),
            _ => Ok(()),
        }
    }

    /// Goes on with a paused pipeline (NXT_RESUME): translates the
    /// packet from the continuation with the metadata the controller sent
    /// back, runs the result on the datapath and credits the rules it went
    /// through (OVS's `nxt_resume`).
    async fn resume(&self, r: Resume) -> Result<(), OfpError> {
        let c = match r.continuation {
            Some(c) if c.bridge == self.instance => c,
            _ => {
                return Err(OfpError::new(
                    ErrorKind::ResumeStale,
                    "the continuation is not from this bridge since the daemon started",
                ))
            }
        };
        let tables = self.snapshot().await?;
        let md = r.metadata.flow;
        let in_port = if c.odp_port != 0 {
            c.odp_port
        } else {
            self.xlate.local_port
        };
        // The packet's own metadata (OVS's `pkt_metadata_from_flow`), on
        // the port it came in on.
        let packet_md = Flow {
            in_port,
            tun_id: md.tun_id,
            tun_src: md.tun_src,
            tun_dst: md.tun_dst,
            pkt_mark: md.pkt_mark,
            ct_state: md.ct_state,
            ct_zone: md.ct_zone,
            ct_mark: md.ct_mark,
            ct_label: md.ct_label,
            ..Flow::default()
        };
        let flow = messages::extract::flow_extract(&r.packet, &packet_md);
        let state = Arc::new(FrozenState::resumed(&c, &md));
        let out = xlate_resume(&tables, &flow, &self.xlate, state);
        let packet = RuleStats {
            n_packets: 1,
            n_bytes: r.packet.len() as u64,
        };
        self.pipeline.rule_table.do_send(PushStats(
            out.rules.iter().map(|id| (*id, packet)).collect(),
        ));
        if out.actions.is_empty() {
            return Ok(());
        }
        self.execute(
            r.packet,
            PacketMetadata::of(&flow),
            out.actions,
            "resumed packet",
        )
    }

    fn ports(&self) -> Vec<of::PortDesc> {
        let mut ports: Vec<of::PortDesc> = self
            .dpif
            .ports()
            .into_iter()
            .filter(|p| p.number != 0)
            .map(|p| {
                let (config, state) = port_link_bits(&p.name);
                of::PortDesc {
                    number: p.number,
                    hw_addr: port_mac(p.number),
                    name: p.name,
                    config,
                    state,
                    curr_speed: 10_000_000,
                }
            })
            .collect();
        ports.push(of::PortDesc {
            number: port::LOCAL,
            name: self.bridge.clone(),
            hw_addr: port_mac(0),
            config: 0,
            state: 0,
            curr_speed: 0,
        });
        ports
    }
}

/// Watches the ports and tells the connections what changed: at once on
/// an event (`events`: rtnetlink, `ctl add-port`/`del-port`), else every
/// `PORT_POLL` (every `PORT_POLL_WITHOUT_EVENTS` while link events are
/// not `heard`).
async fn watch_ports(
    switch: Rc<Switch>,
    mut events: futures::channel::mpsc::UnboundedReceiver<()>,
    heard: Arc<AtomicBool>,
) {
    let mut known: HashMap<u32, of::PortDesc> =
        switch.ports().into_iter().map(|p| (p.number, p)).collect();
    let mut down = BTreeSet::new();
    set_down_ports(&switch, &known, &mut down).await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(if heard.load(Ordering::Relaxed) {
                PORT_POLL
            } else {
                PORT_POLL_WITHOUT_EVENTS
            }) => {}
            Some(()) = events.next() => {
                // A burst of link messages is one look at the ports.
                while events.try_recv().is_ok() {}
            }
        }
        let now: HashMap<u32, of::PortDesc> =
            switch.ports().into_iter().map(|p| (p.number, p)).collect();
        for (n, p) in &now {
            match known.get(n) {
                None => {
                    tracing::info!(port = n, name = %p.name, "port added");
                    switch.port_changes.deliver((PortReason::Add, p.clone()));
                }
                Some(old) if old != p => {
                    tracing::info!(port = n, name = %p.name, config = p.config, state = p.state, "port changed");
                    switch.port_changes.deliver((PortReason::Modify, p.clone()));
                }
                Some(_) => {}
            }
        }
        for (n, p) in &known {
            if !now.contains_key(n) {
                tracing::info!(port = n, name = %p.name, "port removed");
                switch.port_changes.deliver((PortReason::Delete, p.clone()));
            }
        }
        known = now;
        set_down_ports(&switch, &known, &mut down).await;
    }
}

/// Tells the rule-table which ports are down (OFPPC_PORT_DOWN or
/// OFPPS_LINK_DOWN) when that changed from `down`, so that fast-failover
/// groups watching them pick another bucket.
async fn set_down_ports(
    switch: &Switch,
    ports: &HashMap<u32, of::PortDesc>,
    down: &mut BTreeSet<u32>,
) {
    let now: BTreeSet<u32> = ports
        .values()
        .filter(|p| p.config & 1 != 0 || p.state & 1 != 0)
        .map(|p| p.number)
        .collect();
    if now == *down {
        return;
    }
    match switch
        .pipeline
        .rule_table
        .send(ChangePorts::Down(now.clone()))
        .await
    {
        Ok(_) => *down = now,
        Err(e) => tracing::warn!(error = %e, "ports' link states not given to the rule-table"),
    }
}

/// A stable, locally administered MAC for a port.
fn port_mac(n: u32) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0x75, b[0], b[1], b[2], b[3]]
}

/// A listener bound before anything on the host is touched.
enum Listener {
    Unix(std::os::unix::net::UnixListener, PathBuf),
    Tcp(std::net::TcpListener, std::net::SocketAddr),
}

/// The OpenFlow endpoints, claimed: listeners bound (each `punix:` socket
/// locked, created 0600, and removed when this is dropped) and the
/// controllers to connect to. Held until the daemon exits.
#[derive(Default)]
pub struct Bound {
    listeners: Vec<Listener>,
    controllers: Vec<Endpoint>,
    _locks: Vec<crate::lock::Lock>,
    _sockets: Vec<crate::control::SocketFile>,
}

impl Bound {
    pub fn with_controllers(mut self, controllers: Vec<Endpoint>) -> Bound {
        self.controllers.extend(controllers);
        self
    }
}

/// Binds the listeners of `endpoints` (as the control socket is bound:
/// only a stale socket is replaced); the others are controllers.
pub fn bind(endpoints: Vec<Endpoint>) -> anyhow::Result<Bound> {
    let mut bound = Bound::default();
    for ep in endpoints {
        match ep {
            Endpoint::ListenUnix(path) => {
                let shown = path.display();
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)
                        .map_err(|e| anyhow::anyhow!("punix:{shown}: {}: {e}", dir.display()))?;
                }
                bound._locks.push(crate::lock::acquire(
                    &crate::lock::beside(&path),
                    &format!("OpenFlow socket {shown}"),
                )?);
                let listener = crate::control::bind(&path)
                    .map_err(|e| anyhow::anyhow!("punix:{shown}: {e}"))?;
                bound
                    ._sockets
                    .push(crate::control::SocketFile(path.clone()));
                bound.listeners.push(Listener::Unix(listener, path));
            }
            Endpoint::ListenTcp(addr) => {
                let listener = std::net::TcpListener::bind(addr)
                    .map_err(|e| anyhow::anyhow!("ptcp:{addr}: {e}"))?;
                bound.listeners.push(Listener::Tcp(listener, addr));
            }
            Endpoint::Unix(_) | Endpoint::Tcp(_) => bound.controllers.push(ep),
        }
    }
    Ok(bound)
}

static ACCEPT_LOG: LogLimit = LogLimit::new(5, 20);
/// Connections opened and closed: a peer (or a controller that accepts
/// and hangs up) repeats them at will.
static CONNECTION_LOG: LogLimit = LogLimit::new(20, 40);
/// Error messages from a peer, which may send them by the thousand.
static PEER_ERROR_LOG: LogLimit = LogLimit::new(5, 20);

/// How long an accept loop waits after a failure (out of descriptors, most
/// likely: the failure repeats until something is freed).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

fn accept_failed(e: &std::io::Error) {
    if let Some(dropped) = ACCEPT_LOG.check() {
        tracing::warn!(error = %e, dropped_messages = dropped, "OpenFlow accept failed");
    }
}

/// Starts serving what `bound` holds (listeners and controllers); the
/// locks and socket files stay in it. `port_events` and `port_wakes` are
/// the two ends of the channel that wakes the port watcher (the daemon
/// keeps a sender for `ctl add-port`/`del-port`).
pub fn start(
    switch: Rc<Switch>,
    bound: &mut Bound,
    port_wakes: futures::channel::mpsc::UnboundedSender<()>,
    port_events: futures::channel::mpsc::UnboundedReceiver<()>,
) -> anyhow::Result<()> {
    for l in std::mem::take(&mut bound.listeners) {
        match l {
            Listener::Unix(listener, path) => {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::UnixListener::from_std(listener)?;
                tracing::info!(path = %path.display(), "OpenFlow listening");
                let sw = switch.clone();
                actix::spawn(async move {
                    loop {
                        match listener.accept().await {
                            Ok((s, _)) => {
                                actix::spawn(connection(
                                    sw.clone(),
                                    s,
                                    "unix".into(),
                                    Kind::Service,
                                ));
                            }
                            Err(e) => {
                                accept_failed(&e);
                                tokio::time::sleep(ACCEPT_BACKOFF).await;
                            }
                        }
                    }
                });
            }
            Listener::Tcp(listener, addr) => {
                listener.set_nonblocking(true)?;
                let listener = tokio::net::TcpListener::from_std(listener)?;
                tracing::info!(%addr, "OpenFlow listening");
                let sw = switch.clone();
                actix::spawn(async move {
                    loop {
                        match listener.accept().await {
                            Ok((s, peer)) => {
                                let _ = s.set_nodelay(true);
                                actix::spawn(connection(
                                    sw.clone(),
                                    s,
                                    peer.to_string(),
                                    Kind::Service,
                                ));
                            }
                            Err(e) => {
                                accept_failed(&e);
                                tokio::time::sleep(ACCEPT_BACKOFF).await;
                            }
                        }
                    }
                });
            }
        }
    }
    let controllers = std::mem::take(&mut bound.controllers);
    actix::spawn(FailOpen::run(switch.clone(), !controllers.is_empty()));
    let heard = watch_links(port_wakes);
    actix::spawn(watch_ports(switch.clone(), port_events, heard));
    for ep in controllers {
        actix::spawn(controller(switch.clone(), ep));
    }
    Ok(())
}

/// Keeps a connection to one controller, reconnecting with OVS's backoff.
async fn controller(switch: Rc<Switch>, ep: Endpoint) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let connected = match &ep {
            Endpoint::Tcp(addr) => match tokio::net::TcpStream::connect(addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    if let Some(dropped) = CONNECTION_LOG.check() {
                        tracing::info!(%addr, dropped_messages = dropped, "connected to controller");
                    }
                    switch.fail_open.controller_up(&switch).await;
                    connection(switch.clone(), s, addr.to_string(), Kind::Controller).await;
                    switch.fail_open.controller_down();
                    true
                }
                Err(e) => {
                    tracing::debug!(%addr, error = %e, "controller connection failed");
                    false
                }
            },
            Endpoint::Unix(path) => match tokio::net::UnixStream::connect(path).await {
                Ok(s) => {
                    if let Some(dropped) = CONNECTION_LOG.check() {
                        tracing::info!(path = %path.display(), dropped_messages = dropped, "connected to controller");
                    }
                    switch.fail_open.controller_up(&switch).await;
                    connection(
                        switch.clone(),
                        s,
                        path.display().to_string(),
                        Kind::Controller,
                    )
                    .await;
                    switch.fail_open.controller_down();
                    true
                }
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "controller connection failed");
                    false
                }
            },
            _ => return,
        };
        if connected {
            backoff = BACKOFF_MIN;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A change on its way through the rule-table.
type InFlight = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), OfpError>>>>;

/// Flow mods a connection gathers while a change is applied before it
/// stops reading (memory stays bounded; the peer waits on the socket).
const MAX_PENDING: usize = 8192;

/// Resolves when the change being applied has been; never, without one.
async fn in_flight_done(f: &mut Option<InFlight>) -> Result<(), OfpError> {
    match f {
        Some(fut) => {
            let outcome = fut.await;
            *f = None;
            outcome
        }
        None => std::future::pending().await,
    }
}

/// A bundle being filled.
struct Bundle {
    flags: u16,
    changes: Vec<RuleChange>,
    closed: bool,
}

/// Who opened a connection (OVS's `ofconn_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// To a configured controller: gets packet-ins from the start.
    Controller,
    /// Accepted on a listener (`ovs-ofctl`): gets packet-ins only once it
    /// asks for them with a nonzero `miss_send_len`, as in OVS.
    Service,
}

/// The packet-in rate limit of one connection: as OVS, one scheduler for
/// table misses and one for other `controller` actions.
struct PacketInLimit {
    miss: PinSched<Arc<ControllerPacket>>,
    action: PinSched<Arc<ControllerPacket>>,
}

/// One connection's state.
struct Conn {
    switch: Rc<Switch>,
    kind: Kind,
    version: u8,
    decode: DecodeState,
    miss_send_len: u16,
    config_flags: u16,
    /// NXT_SET_CONTROLLER_ID: this connection gets the packet-ins of
    /// `controller` actions with this id (0 by default, as in OVS).
    controller_id: u16,
    role: u32,
    bundles: HashMap<u32, Bundle>,
    /// Flow mods decoded but not yet sent to the rule-table.
    pending: Vec<RuleChange>,
    /// The flow mods the rule-table is applying: while it does, the
    /// connection reads on and gathers the next ones into one change (at
    /// most [`MAX_PENDING`] before it waits), so that flow mods sent one
    /// at a time are applied in batches.
    in_flight: Option<InFlight>,
    out: Vec<Vec<u8>>,
    /// The packet-ins and removed rules for this connection, while it
    /// wants asynchronous messages.
    packet_ins: Option<Subscription<ControllerPacket>>,
    flow_removals: Option<Subscription<RemovedRule>>,
    port_changes: Option<Subscription<(PortReason, of::PortDesc)>>,
    packet_in_format: PacketInFormat,
    /// How an OpenFlow 1.0 connection wants matches (NXT_SET_FLOW_FORMAT).
    flow_format: FlowFormat,
    rate_limit: Option<PacketInLimit>,
}

/// Serves one OpenFlow connection until it closes.
pub async fn connection<S>(switch: Rc<Switch>, stream: S, peer: String, kind: Kind)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    if let Err(e) = wr
        .write_all(&of::encode_hello(of::OFP14, of::SUPPORTED_VERSIONS))
        .await
    {
        tracing::debug!(%peer, error = %e, "OpenFlow hello not sent");
        return;
    }
    let packet_ins = (kind == Kind::Controller).then(|| switch.pipeline.packet_ins.subscribe());
    let flow_removals =
        (kind == Kind::Controller).then(|| switch.pipeline.flow_removals.subscribe());
    let port_changes = (kind == Kind::Controller).then(|| switch.port_changes.subscribe());
    let rate_limit = switch.packet_in_limit.map(|(rate, burst)| PacketInLimit {
        miss: PinSched::new(rate, burst, Instant::now()),
        action: PinSched::new(rate, burst, Instant::now()),
    });
    let mut conn = Conn {
        switch,
        kind,
        version: 0,
        decode: DecodeState::default(),
        // OVS: 128 for controllers; 0 (no packet-ins) for service
        // connections until they set one.
        miss_send_len: if kind == Kind::Controller { 128 } else { 0 },
        config_flags: 0,
        controller_id: 0,
        role: 0,
        bundles: HashMap::new(),
        pending: Vec::new(),
        in_flight: None,
        out: Vec::new(),
        packet_ins,
        flow_removals,
        port_changes,
        packet_in_format: PacketInFormat::Standard,
        flow_format: FlowFormat::Of10,
        rate_limit,
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk = vec![0u8; 1 << 16];
    let mut probe_sent = false;
    let mut last_heard = tokio::time::Instant::now();
    loop {
        let release_at = conn.next_release();
        let read = tokio::select! {
            r = rd.read(&mut chunk) => r,
            outcome = in_flight_done(&mut conn.in_flight) => {
                conn.applied(outcome);
                conn.start_pending();
                if flush_out(&mut conn, &mut wr).await.is_err() {
                    return;
                }
                continue;
            }
            Some(p) = next_async(&mut conn.packet_ins) => {
                if let Some(m) = conn.packet_in(p) {
                    if wr.write_all(&m).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            _ = sleep_until_some(release_at) => {
                for m in conn.release_packet_ins() {
                    if wr.write_all(&m).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Some(r) = next_async(&mut conn.flow_removals) => {
                if wr.write_all(&conn.flow_removed(&r)).await.is_err() {
                    return;
                }
                continue;
            }
            Some(c) = next_async(&mut conn.port_changes) => {
                let (reason, port) = &*c;
                let m = of::encode_port_status(conn.v(), *reason as u8, port);
                if wr.write_all(&m).await.is_err() {
                    return;
                }
                continue;
            }
            _ = tokio::time::sleep_until(last_heard + PROBE_INTERVAL) => {
                if probe_sent {
                    if let Some(dropped) = CONNECTION_LOG.check() {
                        tracing::info!(%peer, dropped_messages = dropped, "OpenFlow peer silent after an echo request: closing");
                    }
                    return;
                }
                probe_sent = true;
                last_heard = tokio::time::Instant::now();
                if wr.write_all(&of::encode_echo_request(conn.v(), 0)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let n = match read {
            Ok(0) => {
                // What the peer sent before it closed still applies.
                conn.flush_pending().await;
                return;
            }
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "OpenFlow read failed");
                return;
            }
        };
        probe_sent = false;
        last_heard = tokio::time::Instant::now();
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        loop {
            match of::frame_len(&buf[at..]) {
                Ok(Some(len)) => {
                    let msg = buf[at..at + len].to_vec();
                    at += len;
                    if !conn.handle(&msg).await {
                        let _ = flush_out(&mut conn, &mut wr).await;
                        if let Some(dropped) = CONNECTION_LOG.check() {
                            tracing::info!(%peer, dropped_messages = dropped, "OpenFlow connection closed by the switch");
                        }
                        return;
                    }
                    if conn.out.len() > 64 && flush_out(&mut conn, &mut wr).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if let Some(dropped) = CONNECTION_LOG.check() {
                        tracing::warn!(%peer, error = %e, dropped_messages = dropped, "OpenFlow framing broken: closing");
                    }
                    return;
                }
            }
        }
        buf.drain(..at);
        if conn.pending.len() >= MAX_PENDING {
            conn.settle().await;
        }
        conn.start_pending();
        if flush_out(&mut conn, &mut wr).await.is_err() {
            return;
        }
    }
}

/// The next asynchronous message for a connection that wants them; never,
/// for one that does not.
async fn next_async<T>(sub: &mut Option<Subscription<T>>) -> Option<Arc<T>> {
    match sub {
        Some(s) => s.queue.next().await,
        None => std::future::pending().await,
    }
}

/// The meters the rules a change adds or modifies use.
fn meters_named(c: &RuleChange) -> Vec<u32> {
    match c {
        RuleChange::Add(rules) | RuleChange::Replace(rules) => {
            rules.iter().filter_map(|r| r.instructions.meter).collect()
        }
        RuleChange::Modify(_, update) => update.instructions.meter.into_iter().collect(),
        RuleChange::Delete(_) => Vec::new(),
        RuleChange::Bundle(changes) => changes.iter().flat_map(meters_named).collect(),
    }
}

/// The groups the rules a change adds or modifies send to.
fn groups_named(c: &RuleChange) -> Vec<u32> {
    match c {
        RuleChange::Add(rules) | RuleChange::Replace(rules) => {
            rules.iter().flat_map(Rule::groups_used).collect()
        }
        RuleChange::Modify(_, update) => update.instructions.groups_used(),
        RuleChange::Delete(_) => Vec::new(),
        RuleChange::Bundle(changes) => changes.iter().flat_map(groups_named).collect(),
    }
}

/// SET_CONFIG's flag for packet-ins of expired TTLs (OpenFlow 1.1 and
/// 1.2; OVS takes it from 1.0 connections too).
const OFPC_INVALID_TTL_TO_CONTROLLER: u16 = 4;

/// Sleeps until `t`; never, for `None`.
async fn sleep_until_some(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t.into()).await,
        None => std::future::pending().await,
    }
}

/// The metadata a packet-in carries as its match (OVS's
/// `flow_get_metadata`: what of it is set).
fn packet_in_metadata(key: &Flow) -> Match {
    let mut m = Match::default();
    let (f, w) = (&mut m.flow, &mut m.mask);
    if key.metadata != 0 {
        (f.metadata, w.metadata) = (key.metadata, u64::MAX);
    }
    for (i, r) in key.regs.iter().enumerate() {
        if *r != 0 {
            (f.regs[i], w.regs[i]) = (*r, u32::MAX);
        }
    }
    if key.tun_id != 0 {
        (f.tun_id, w.tun_id) = (key.tun_id, u64::MAX);
    }
    if key.tun_src != 0 {
        (f.tun_src, w.tun_src) = (key.tun_src, u32::MAX);
    }
    if key.tun_dst != 0 {
        (f.tun_dst, w.tun_dst) = (key.tun_dst, u32::MAX);
    }
    if key.pkt_mark != 0 {
        (f.pkt_mark, w.pkt_mark) = (key.pkt_mark, u32::MAX);
    }
    if key.ct_state != 0 {
        (f.ct_state, w.ct_state) = (key.ct_state, u8::MAX);
    }
    if key.ct_zone != 0 {
        (f.ct_zone, w.ct_zone) = (key.ct_zone, u16::MAX);
    }
    if key.ct_mark != 0 {
        (f.ct_mark, w.ct_mark) = (key.ct_mark, u32::MAX);
    }
    if key.ct_label != [0; 16] {
        m.flow.ct_label = key.ct_label;
        m.mask.ct_label = [0xff; 16];
    }
    m
}

async fn flush_out<W: AsyncWrite + Unpin>(conn: &mut Conn, wr: &mut W) -> std::io::Result<()> {
    for m in conn.out.drain(..) {
        wr.write_all(&m).await?;
    }
    Ok(())
}

impl Conn {
    fn v(&self) -> u8 {
        if self.version == 0 {
            of::OFP13
        } else {
            self.version
        }
    }

    /// The message that carries `p` to this peer now, if it gets it and
    /// the rate limit lets it go at once (otherwise it waits in the limit's
    /// queue for [`Conn::release_packet_ins`]).
    fn packet_in(&mut self, p: Arc<ControllerPacket>) -> Option<Vec<u8>> {
        // A slave controller gets no packet-ins (OpenFlow 1.3 §6.3.5), a
        // connection only those of its controller id, and expired TTLs
        // only a connection that asked (OVS's default asynchronous
        // configuration leaves them out; OFPC_INVALID_TTL_TO_CONTROLLER,
        // as `ovs-ofctl monitor ... invalid_ttl` sets it, lets them in).
        if self.role == 3 || p.cookie.controller_id != self.controller_id {
            return None;
        }
        if p.cookie.reason == u16::from(packet_in_reason::INVALID_TTL)
            && self.config_flags & OFPC_INVALID_TTL_TO_CONTROLLER == 0
        {
            return None;
        }
        let counts = &self.switch.pipeline.stats.packet_ins;
        let p = match &mut self.rate_limit {
            None => p,
            Some(limit) => {
                let miss = matches!(
                    p.cookie.reason as u8,
                    packet_in_reason::NO_MATCH
                        | packet_in_reason::EXPLICIT_MISS
                        | packet_in_reason::IMPLICIT_MISS
                );
                let sched = if miss {
                    &mut limit.miss
                } else {
                    &mut limit.action
                };
                let dropped = sched.stats.dropped;
                let sent = sched.send(p.key.in_port, p, Instant::now());
                if sent.is_none() {
                    PipelineStats::add(&counts.queued, 1);
                    PipelineStats::add(&counts.rate_dropped, sched.stats.dropped - dropped);
                }
                sent?
            }
        };
        PipelineStats::add(&counts.bypassed, 1);
        Some(self.encode_packet_in(&p))
    }

    /// When packet-ins held by the rate limit may go.
    fn next_release(&self) -> Option<Instant> {
        let limit = self.rate_limit.as_ref()?;
        let now = Instant::now();
        match (limit.miss.next_run(now), limit.action.next_run(now)) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The packet-ins the rate limit lets go now, encoded.
    fn release_packet_ins(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        if let Some(limit) = &mut self.rate_limit {
            let now = Instant::now();
            limit.miss.run(now, &mut out);
            limit.action.run(now, &mut out);
        }
        out.iter().map(|p| self.encode_packet_in(p)).collect()
    }

    /// A packet-in in this connection's version and format.
    fn encode_packet_in(&self, p: &ControllerPacket) -> Vec<u8> {
        let c = p.cookie;
        // A continuation goes with the whole packet, which its resume
        // carries on (OVS sends every packet-in whole).
        let len = match &p.continuation {
            Some(_) => p.packet.len(),
            None => p.packet.len().min(usize::from(c.max_len)),
        };
        let in_port = match p.key.in_port {
            n if n == self.switch.xlate.local_port => port::LOCAL,
            n => n,
        };
        let pin = of::PacketIn {
            reason: packet_in_reason::for_version(c.reason as u8, self.v()),
            table: p.table,
            cookie: c.rule_cookie,
            in_port,
            metadata: packet_in_metadata(&p.key),
            total_len: p.packet.len().min(usize::from(u16::MAX)) as u16,
            data: p.packet[..len].to_vec(),
            userdata: p.userdata.clone(),
            continuation: self.continuation(p),
        };
        of::encode_packet_in(self.v(), &pin, self.packet_in_format)
    }

    /// The NXPINT_CONTINUATION of a paused pipeline's packet-in, for a
    /// connection that takes NXT_PACKET_IN2 (in other formats the
    /// packet-in goes without, and the pipeline is not resumed, as in OVS).
    fn continuation(&self, p: &ControllerPacket) -> Vec<u8> {
        let Some(state) = p.continuation.as_ref() else {
            return Vec::new();
        };
        if self.packet_in_format != PacketInFormat::Nxt2 {
            return Vec::new();
        }
        let c = state.continuation(self.switch.instance, p.odp_port);
        of::continuation::encode_continuation(self.v(), &c).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "continuation not sent: an action cannot be encoded");
            Vec::new()
        })
    }

    /// Sets `miss_send_len`; a service connection subscribes to packet-ins
    /// while it is nonzero.
    fn set_miss_send_len(&mut self, n: u16) {
        self.miss_send_len = n;
        if self.kind == Kind::Service {
            let p = &self.switch.pipeline;
            match (n, self.packet_ins.is_some()) {
                (0, true) => {
                    (self.packet_ins, self.flow_removals, self.port_changes) = (None, None, None)
                }
                (1.., false) => {
                    self.packet_ins = Some(p.packet_ins.subscribe());
                    self.flow_removals = Some(p.flow_removals.subscribe());
                    self.port_changes = Some(self.switch.port_changes.subscribe());
                }
                _ => {}
            }
        }
    }

    fn error(&mut self, xid: u32, err: &OfpError, msg: &[u8]) {
        tracing::debug!(error = %err, "OpenFlow request refused");
        let v = self.v();
        self.out.push(of::encode_error(v, xid, err, msg));
    }

    /// Sends the flow mods gathered so far to the rule-table as one change,
    /// unless one is being applied: they then go together once it is.
    fn start_pending(&mut self) {
        if self.in_flight.is_some() || self.pending.is_empty() {
            return;
        }
        let changes = std::mem::take(&mut self.pending);
        let change = if changes.len() == 1 {
            changes.into_iter().next().expect("one change")
        } else {
            RuleChange::Bundle(changes)
        };
        // Queued for the rule-table now: applied even if the connection
        // closes before the answer.
        let request = self.switch.pipeline.rule_table.send(change);
        self.in_flight = Some(Box::pin(async move {
            request.await.map(|_| ()).map_err(|e| {
                OfpError::new(
                    ErrorKind::FlowModUnknown,
                    format!("rule-table unavailable: {e}"),
                )
            })
        }));
    }

    /// The change being applied has been.
    fn applied(&mut self, outcome: Result<(), OfpError>) {
        if let Err(e) = outcome {
            self.error(0, &e, &[]);
        }
    }

    /// Waits for the change being applied, if any.
    async fn settle(&mut self) {
        if let Some(f) = self.in_flight.take() {
            let outcome = f.await;
            self.applied(outcome);
        }
    }

    /// Every flow mod received so far applied (and published).
    async fn flush_pending(&mut self) {
        self.settle().await;
        self.start_pending();
        self.settle().await;
    }

    /// Handles one message; false closes the connection.
    async fn handle(&mut self, msg: &[u8]) -> bool {
        let xid = of::Header::parse(msg).map_or(0, |h| h.xid);
        let (h, req) = match of::decode(msg, self.decode) {
            Ok(r) => r,
            Err(e) => {
                self.error(xid, &e, msg);
                return true;
            }
        };
        if self.version == 0 && !matches!(req, Request::Hello { .. }) {
            // A peer that skips HELLO speaks its header's version.
            self.version = h.version;
        }
        if !matches!(req, Request::FlowMod(_)) {
            self.flush_pending().await;
        }
        let v = self.v();
        match req {
            Request::Hello { versions } => match of::negotiate(versions) {
                Some(ver) => self.version = ver,
                None => {
                    let e = OfpError::new(
                        ErrorKind::HelloIncompatible,
                        format!("no common version (peer offers {versions:#x})"),
                    );
                    self.version = h.version.min(of::OFP14);
                    self.error(xid, &e, &[]);
                    return false;
                }
            },
            Request::Error { kind, code } => {
                if let Some(dropped) = PEER_ERROR_LOG.check() {
                    tracing::info!(
                        kind,
                        code,
                        dropped_messages = dropped,
                        "OpenFlow peer sent an error"
                    );
                }
            }
            Request::EchoRequest(data) => self.out.push(of::encode_echo_reply(v, xid, &data)),
            Request::EchoReply | Request::Accepted(_) => {}
            Request::FeaturesRequest => {
                let ports = self.switch.ports();
                self.out.push(of::encode_features_reply(
                    v,
                    xid,
                    self.switch.datapath_id,
                    N_TABLES,
                    &ports,
                ));
            }
            Request::GetConfigRequest => self.out.push(of::encode_get_config_reply(
                v,
                xid,
                self.config_flags,
                self.miss_send_len,
            )),
            Request::SetConfig {
                flags,
                miss_send_len,
            } => {
                self.config_flags = flags;
                self.set_miss_send_len(miss_send_len);
            }
            Request::BarrierRequest => self.out.push(of::encode_barrier_reply(v, xid)),
            Request::FlowMod(fm) => {
                let checked =
                    fm.command == FlowModCommand::Add && fm.flags & flow_flags::CHECK_OVERLAP != 0;
                let change = self.flow_mod_change(*fm);
                // A rule may not send to a group that does not exist
                // (OVS's `ofproto_check_ofpacts`): checked against the
                // tables with every earlier change of this connection in
                // them.
                let change = match change {
                    Ok(c) if !groups_named(&c).is_empty() || !meters_named(&c).is_empty() => {
                        self.flush_pending().await;
                        self.check_groups(&groups_named(&c), &meters_named(&c))
                            .await
                            .map(|()| c)
                    }
                    other => other,
                };
                match change {
                    Ok(RuleChange::Add(rules)) if checked => {
                        // After this connection's earlier changes; the
                        // rule-table checks and adds in one step.
                        self.flush_pending().await;
                        if let Err(e) = self.add_unless_overlapping(rules).await {
                            self.error(xid, &e, msg);
                        }
                    }
                    Ok(c) => self.pending.push(c),
                    Err(e) => self.error(xid, &e, msg),
                }
            }
            Request::Multipart(mp) => {
                if let Err(e) = self.multipart(xid, *mp).await {
                    self.error(xid, &e, msg);
                }
            }
            Request::GroupMod(gm) => {
                if let Err(e) = self.switch.group_mod(*gm).await {
                    self.error(xid, &e, msg);
                }
            }
            Request::MeterMod(mm) => {
                // After this connection's earlier flow mods, as a delete
                // takes the rules that use the meter along.
                self.flush_pending().await;
                if let Err(e) = self.switch.meter_mod(*mm).await {
                    self.error(xid, &e, msg);
                }
            }
            Request::RoleRequest {
                role,
                generation_id,
                nicira,
            } => {
                if role > 3 {
                    self.error(xid, &OfpError::new(ErrorKind::RoleBadRole, "role"), msg);
                } else {
                    // NOCHANGE (0) keeps the role; a fresh connection is EQUAL (1).
                    if role != 0 {
                        self.role = role;
                    }
                    let current = if self.role == 0 { 1 } else { self.role };
                    self.out.push(of::encode_role_reply(
                        v,
                        xid,
                        current,
                        generation_id,
                        nicira,
                    ));
                }
            }
            Request::GetAsyncRequest => self.out.push(of::encode_get_async_reply(v, xid)),
            Request::SetFlowFormat(f) => self.flow_format = f,
            Request::SetControllerId(id) => self.controller_id = id,
            Request::SetPacketInFormat(n) => match PacketInFormat::from_nx(n) {
                Some(f) => self.packet_in_format = f,
                None => {
                    let e =
                        OfpError::new(ErrorKind::BadType, format!("unknown packet-in format {n}"));
                    self.error(xid, &e, msg);
                }
            },
            Request::FlowModTableId(on) => self.decode.flow_mod_table_id = on,
            Request::BundleControl { id, op, flags } => {
                if let Err(e) = self.bundle_control(xid, id, op, flags).await {
                    self.error(xid, &e, msg);
                }
            }
            Request::BundleAdd { id, message, .. } => {
                if let Err(e) = self.bundle_add(id, &message) {
                    self.error(xid, &e, msg);
                }
            }
            Request::PacketOut(po) => {
                if let Err(e) = self.switch.packet_out(*po).await {
                    self.error(xid, &e, msg);
                }
            }
            Request::Resume(r) => {
                if let Err(e) = self.switch.resume(*r).await {
                    self.error(xid, &e, msg);
                }
            }
            Request::TlvTableMod(m) => {
                if let Err(e) = self.switch.tlv_table_mod(m).await {
                    self.error(xid, &e, msg);
                }
            }
            Request::TlvTableRequest => self.out.push(of::encode_tlv_table_reply(
                v,
                xid,
                &messages::tlv::current(),
            )),
        }
        true
    }

    /// The rule-table change a flow mod asks for.
    fn flow_mod_change(&self, fm: FlowMod) -> Result<RuleChange, OfpError> {
        fm.check()?;
        // OpenFlow 1.0 sets the cookie and adds a rule when a modify
        // matches none; 1.1+ does neither (OVS's modify_may_add_flow).
        let of10_modify = self.v() == of::OFP10 && fm.cookie_mask == 0;
        let request = FlowModRequest {
            command: fm.command,
            table: (fm.table != 0xff).then_some(fm.table),
            rule: Rule {
                table: fm.rule_table(),
                priority: fm.priority,
                cookie: fm.cookie,
                idle_timeout: fm.idle_timeout,
                hard_timeout: fm.hard_timeout,
                flags: fm.flags & flow_flags::KEPT,
                matches: fm.matches,
                instructions: fm.instructions,
            },
            cookie_filter: (fm.cookie_mask != 0).then_some((fm.cookie, fm.cookie_mask)),
            out_port: Some(fm.out_port),
            new_cookie: of10_modify.then_some(fm.cookie),
            reset_counts: fm.flags & of::flow_flags::RESET_COUNTS != 0,
            modify_may_add: of10_modify,
        };
        Ok(request.into_change())
    }

    /// The published tables a flow mod is checked against.
    async fn flow_mod_snapshot(&self) -> Result<Arc<actors::tables::Tables>, OfpError> {
        self.switch
            .pipeline
            .rule_table
            .send(GetSnapshot)
            .await
            .map_err(|e| {
                OfpError::new(
                    ErrorKind::FlowModUnknown,
                    format!("rule-table unavailable: {e}"),
                )
            })
    }

    /// Refuses a flow mod that names a group the tables do not have, with
    /// OVS's OFPBAC_BAD_OUT_GROUP, or a meter, with OFPMMFC_INVALID_METER.
    async fn check_groups(&self, groups: &[u32], meters: &[u32]) -> Result<(), OfpError> {
        let tables = self.flow_mod_snapshot().await?;
        if let Some(m) = meters.iter().find(|m| tables.meter(**m).is_none()) {
            return Err(OfpError::new(
                ErrorKind::MeterInvalid,
                format!("meter {m} does not exist"),
            ));
        }
        match groups.iter().find(|g| tables.group(**g).is_none()) {
            Some(g) => Err(OfpError::new(
                ErrorKind::ActionBadOutGroup,
                format!("group {g} does not exist"),
            )),
            None => Ok(()),
        }
    }

    /// OVS's `check_overlap`: an add is refused when a rule at its table
    /// and priority could match the same packets (an identical one is
    /// replaced instead). The rule-table checks and adds in one step, so
    /// another connection's add at the same moment is seen.
    async fn add_unless_overlapping(&self, rules: Vec<Rule>) -> Result<(), OfpError> {
        self.switch
            .pipeline
            .rule_table
            .send(actors::protocol::AddUnlessOverlapping(rules))
            .await
            .map_err(|e| {
                OfpError::new(
                    ErrorKind::FlowModUnknown,
                    format!("rule-table unavailable: {e}"),
                )
            })?
            .map(|_| ())
            .map_err(|e| OfpError::new(ErrorKind::FlowModOverlap, e))
    }

    /// A removed rule's FLOW_REMOVED, in this connection's format.
    fn flow_removed(&self, r: &RemovedRule) -> Vec<u8> {
        let v = self.v();
        let format = match v {
            of::OFP10 => self.flow_format,
            _ => FlowFormat::Oxm,
        };
        let rule = &r.entry.rule;
        let e = FlowStatsEntry {
            table: rule.table,
            duration_sec: r.duration.as_secs() as u32,
            duration_nsec: r.duration.subsec_nanos(),
            priority: rule.priority,
            idle_timeout: r.idle_timeout,
            hard_timeout: r.hard_timeout,
            flags: rule.flags,
            idle_age: 0,
            hard_age: 0,
            cookie: rule.cookie,
            packet_count: r.stats.n_packets,
            byte_count: r.stats.n_bytes,
            matches: rule.matches,
            instructions: Default::default(),
        };
        let reason = match r.reason {
            RemovalReason::IdleTimeout => of::RemovedReason::IdleTimeout,
            RemovalReason::HardTimeout => of::RemovedReason::HardTimeout,
            RemovalReason::Delete => of::RemovedReason::Delete,
            RemovalReason::GroupDelete => of::RemovedReason::GroupDelete,
            // OpenFlow 1.4 names it; before, it is a delete.
            RemovalReason::MeterDelete if v >= of::OFP14 => of::RemovedReason::MeterDelete,
            RemovalReason::MeterDelete => of::RemovedReason::Delete,
        };
        of::encode_flow_removed(v, format, &e, reason)
    }

    async fn multipart(&mut self, xid: u32, mp: MultipartRequest) -> Result<(), OfpError> {
        let v = self.v();
        match mp {
            MultipartRequest::Desc => {
                let desc = self.switch.bridge.clone();
                self.out.push(of::encode_desc_reply(v, xid, &desc));
            }
            MultipartRequest::Flow(req) => {
                let entries = self.flow_entries(&req).await?;
                let format = match (v, req.format) {
                    (of::OFP10, f) => f,
                    _ => FlowFormat::Oxm,
                };
                self.out
                    .extend(of::encode_flow_stats_reply(v, xid, format, &entries)?);
            }
            MultipartRequest::Aggregate(req) => {
                let entries = self.flow_entries(&req).await?;
                let packets = entries.iter().map(|e| e.packet_count).sum();
                let bytes = entries.iter().map(|e| e.byte_count).sum();
                self.out.push(of::encode_aggregate_reply(
                    v,
                    xid,
                    req.format,
                    packets,
                    bytes,
                    entries.len() as u32,
                ));
            }
            MultipartRequest::Table => {
                let rules = self.switch.dump().await?;
                let mut active = vec![0u32; usize::from(N_TABLES)];
                for (e, _) in &rules {
                    if let Some(n) = active.get_mut(usize::from(e.rule.table)) {
                        *n += 1;
                    }
                }
                self.out
                    .extend(of::encode_table_stats_reply(v, xid, &active));
            }
            MultipartRequest::PortStats { port: p } => {
                let mut all = self.switch.dpif.port_stats();
                // The bridge's own port is in every port list (as in
                // FEATURES and PORT_DESC), counted or not.
                if !all.iter().any(|s| s.number == port::LOCAL) {
                    all.push(messages::dpif::PortStats {
                        number: port::LOCAL,
                        name: self.switch.bridge.clone(),
                        duration: Some(self.switch.started.elapsed()),
                        ..Default::default()
                    });
                }
                let mut stats: Vec<_> = all
                    .into_iter()
                    .filter(|s| p == port::ANY || p == 0xffff_ffff || s.number == p)
                    .collect();
                stats.sort_by_key(|s| s.number);
                self.out.extend(of::encode_port_stats_reply(v, xid, &stats));
            }
            MultipartRequest::PortDesc => {
                let ports = self.switch.ports();
                self.out.extend(of::encode_port_desc_reply(v, xid, &ports));
            }
            MultipartRequest::GroupDesc => {
                let tables = self
                    .switch
                    .pipeline
                    .rule_table
                    .send(actors::protocol::GetSnapshot)
                    .await
                    .map_err(|e| {
                        OfpError::new(ErrorKind::BadStat, format!("rule-table unavailable: {e}"))
                    })?;
                let groups: Vec<_> = tables.groups().map(|g| &**g).collect();
                self.out
                    .extend(of::encode_group_desc_reply(v, xid, &groups)?);
            }
            MultipartRequest::GroupStats(id) => {
                let stats = self
                    .switch
                    .pipeline
                    .dump_group_stats(id)
                    .await
                    .map_err(|e| {
                        OfpError::new(ErrorKind::BadStat, format!("rule-table unavailable: {e}"))
                    })?;
                self.out
                    .extend(of::encode_group_stats_reply(v, xid, &stats));
            }
            MultipartRequest::GroupFeatures => {
                self.out.push(of::encode_group_features_reply(v, xid));
            }
            MultipartRequest::MeterConfig(id) => {
                let tables = self.flow_mod_snapshot().await?;
                let meters: Vec<_> = tables
                    .meters()
                    .filter(|e| id.is_none_or(|m| m == e.meter.id))
                    .map(|e| &e.meter)
                    .collect();
                self.out
                    .extend(of::encode_meter_config_reply(v, xid, &meters));
            }
            MultipartRequest::MeterStats(id) => {
                let tables = self.flow_mod_snapshot().await?;
                let entries: Vec<_> = tables
                    .meters()
                    .filter(|e| id.is_none_or(|m| m == e.meter.id))
                    .map(|e| of::MeterStatsEntry {
                        id: e.meter.id,
                        flow_count: tables.meter_users(e.meter.id) as u32,
                        duration: e.added.elapsed(),
                        stats: self.switch.dpif.meter_stats(e.dp_id).unwrap_or_else(|_| {
                            messages::meter::MeterStats {
                                bands: vec![(0, 0); e.meter.bands.len()],
                                ..Default::default()
                            }
                        }),
                    })
                    .collect();
                self.out
                    .extend(of::encode_meter_stats_reply(v, xid, &entries));
            }
            MultipartRequest::MeterFeatures => {
                self.out.push(of::encode_meter_features_reply(
                    v,
                    xid,
                    self.switch.dpif.meter_features(),
                ));
            }
            MultipartRequest::TableFeatures => {
                self.out
                    .extend(of::encode_table_features_reply(v, xid, N_TABLES));
            }
            MultipartRequest::Empty(kind) => {
                self.out
                    .push(of::encode_empty_multipart_reply(v, xid, kind));
            }
        }
        Ok(())
    }

    /// The rules a flow stats request selects, as reply entries.
    async fn flow_entries(&self, req: &FlowStatsRequest) -> Result<Vec<FlowStatsEntry>, OfpError> {
        let filter = RuleFilter {
            table: (req.table != 0xff).then_some(req.table),
            matches: req.matches,
            strict: false,
            priority: 0,
            cookie: (req.cookie_mask != 0).then_some((req.cookie, req.cookie_mask)),
            out_port: (req.out_port != port::ANY).then_some(req.out_port),
        };
        let rules = self.switch.dump().await?;
        let now = Instant::now();
        Ok(rules
            .into_iter()
            .filter(|(e, _)| filter.selects(&e.rule))
            .map(|(e, s)| {
                let age = now.saturating_duration_since(e.added);
                let r = &e.rule;
                FlowStatsEntry {
                    table: r.table,
                    duration_sec: age.as_secs() as u32,
                    duration_nsec: age.subsec_nanos(),
                    priority: r.priority,
                    idle_timeout: r.idle_timeout,
                    hard_timeout: r.hard_timeout,
                    flags: r.flags,
                    idle_age: age.as_secs().min(u64::from(u16::MAX)) as u16,
                    hard_age: age.as_secs().min(u64::from(u16::MAX)) as u16,
                    cookie: r.cookie,
                    // OVS's userspace keeps counting when a rule says
                    // no_packet_counts/no_byte_counts, and reports it.
                    packet_count: s.n_packets,
                    byte_count: s.n_bytes,
                    matches: r.matches,
                    instructions: r.instructions.clone(),
                }
            })
            .collect())
    }

    async fn bundle_control(
        &mut self,
        xid: u32,
        id: u32,
        op: BundleOp,
        flags: u16,
    ) -> Result<(), OfpError> {
        let v = self.v();
        match op {
            BundleOp::Open => {
                if self.bundles.contains_key(&id) {
                    return Err(OfpError::new(
                        ErrorKind::BundleExists,
                        format!("bundle {id}"),
                    ));
                }
                self.bundles.insert(
                    id,
                    Bundle {
                        flags,
                        changes: Vec::new(),
                        closed: false,
                    },
                );
            }
            BundleOp::Close => {
                let b = self
                    .bundles
                    .get_mut(&id)
                    .ok_or_else(|| OfpError::new(ErrorKind::BundleBadId, format!("bundle {id}")))?;
                if b.closed {
                    return Err(OfpError::new(
                        ErrorKind::BundleClosed,
                        format!("bundle {id}"),
                    ));
                }
                b.closed = true;
            }
            BundleOp::Commit => {
                let b = self
                    .bundles
                    .remove(&id)
                    .ok_or_else(|| OfpError::new(ErrorKind::BundleBadId, format!("bundle {id}")))?;
                if b.flags != flags {
                    return Err(OfpError::new(
                        ErrorKind::BundleBadFlags,
                        "flags differ from the open",
                    ));
                }
                // All of the bundle becomes one version: atomic and ordered.
                self.switch.change(RuleChange::Bundle(b.changes)).await?;
            }
            BundleOp::Discard => {
                self.bundles
                    .remove(&id)
                    .ok_or_else(|| OfpError::new(ErrorKind::BundleBadId, format!("bundle {id}")))?;
            }
        }
        self.out
            .push(of::encode_bundle_reply(v, xid, id, op, flags));
        Ok(())
    }

    fn bundle_add(&mut self, id: u32, message: &[u8]) -> Result<(), OfpError> {
        let (h, inner) = of::decode(message, self.decode)?;
        if h.version != self.v() {
            return Err(OfpError::new(
                ErrorKind::BundleBadVersion,
                "inner message version",
            ));
        }
        let Request::FlowMod(fm) = inner else {
            return Err(OfpError::new(
                ErrorKind::BundleMsgUnsupported,
                "only flow mods can be bundled",
            ));
        };
        let change = self.flow_mod_change(*fm)?;
        let b = self.bundles.entry(id).or_insert(Bundle {
            flags: 0,
            changes: Vec::new(),
            closed: false,
        });
        if b.closed {
            return Err(OfpError::new(
                ErrorKind::BundleClosed,
                format!("bundle {id}"),
            ));
        }
        if b.changes.len() >= MAX_BUNDLE_MSGS {
            return Err(OfpError::new(
                ErrorKind::BundleMsgFailed,
                "bundle too large",
            ));
        }
        b.changes.push(change);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_like_ovs() {
        assert_eq!(
            Endpoint::parse("punix:/run/upcalld/br0.mgmt"),
            Ok(Endpoint::ListenUnix("/run/upcalld/br0.mgmt".into()))
        );
        assert_eq!(
            Endpoint::parse("ptcp:6653"),
            Ok(Endpoint::ListenTcp("127.0.0.1:6653".parse().unwrap()))
        );
        assert_eq!(
            Endpoint::parse("ptcp:6653:0.0.0.0"),
            Ok(Endpoint::ListenTcp("0.0.0.0:6653".parse().unwrap()))
        );
        assert_eq!(
            Endpoint::parse("tcp:127.0.0.1:6653"),
            Ok(Endpoint::Tcp("127.0.0.1:6653".parse().unwrap()))
        );
        assert!(Endpoint::parse("tcp:6653").is_err());
        assert!(Endpoint::parse("ssl:1.2.3.4:6653").is_err());
    }
}
