//! The Linux kernel datapath (the openvswitch module) behind the `Dpif`
//! interface, over the `ovs_*` generic netlink families.
//!
//! - Control requests (family ids, datapath and vport commands, flow
//!   dumps) ride netlink-proto connections, one socket per family, on a
//!   small tokio runtime thread the dpif owns ([`control`]).
//! - One upcall socket per upcall queue, read directly by the thread that takes
//!   its upcalls, the kernel's socket buffer bounding the backlog
//!   ([`upcall`]).
//!   The datapath is asked for per-CPU upcall dispatch (each CPU's misses
//!   go to queue `cpu % n`); a kernel without it gets per-vport upcall
//!   PIDs instead (each port's misses are spread over all queues).
//! - Flow puts, deletes and executes go in batches, many messages per
//!   `sendmsg`, on netlink-sys sockets of their own, one per thread that
//!   may write at once ([`socket`]).
//! - Revalidators' terse dumps and gets by ufid are read on their own
//!   threads too ([`socket::ReplySocket`]).
//! - Lost upcalls are counted where they happen: socket overruns
//!   (`ENOBUFS`, each one or more upcalls the kernel counts in `n_lost`).

pub mod control;
pub mod cttimeout;
pub mod dump;
pub mod meters;
pub mod socket;
pub mod tunnel_link;
pub mod upcall;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hashbrown::HashMap;
use messages::dpif::{
    DpFlow, DpStats, Dpif, DpifError, DpifOp, FlowPut, FlowStats, PortInfo, PortKind, PortSpec,
    PortStats, PutMode, Ufid, Upcall,
};
use messages::flow::datapath_mask;
use messages::hash::key_ufid;
use messages::netlink::consts::*;
use messages::netlink::tunnel_link::TunnelLink;
use messages::netlink::writer::{MessageWriter, RequestHeader};
use messages::netlink::{
    actions_from_attrs, actions_to_attrs, key_from_attrs, mask_from_attrs, megaflow_to_attrs,
    metadata_to_attrs, parse_upcall, tunnel_kind_of_vport_type, tunnel_vport_options,
    tunnel_vport_type, tunnel_vport_udp_port, tunnel_vport_vxlan_gbp, DpAttr, DpMessage, FlowAttr,
    FlowMessage, OvsAttr, PacketAttr, VportAttr, VportMessage,
};
use messages::odp::OdpActions;
use netlink_packet_core::{Emitable, ParseableParametrized, NLM_F_CREATE, NLM_F_DUMP, NLM_F_ECHO};
use rustc_hash::FxBuildHasher;

use control::{
    ControlAnswer, ControlError, Deferred, FamilyResolver, GenlConnection, NetlinkThread,
};
use dump::DumpCache;
use socket::{request, Answer, BatchSocket, ReplySocket, TxCounters};
use upcall::{UpcallCounters, UpcallSocket};

/// What the datapath's connection tracking supports, found at open as
/// OVS's `check_support` finds it: by putting probe flows (and deleting
/// them) whose key or actions use the feature.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConntrackSupport {
    /// `OVS_KEY_ATTR_CT_STATE`/`ZONE`/`MARK`/`LABELS` in keys.
    pub ct_state: bool,
    /// `OVS_KEY_ATTR_CT_ORIG_TUPLE_IPV4` in keys.
    pub ct_orig_tuple: bool,
    /// `OVS_ACTION_ATTR_CT` with commit, mark and labels.
    pub ct: bool,
    /// `OVS_CT_ATTR_NAT` inside it.
    pub nat: bool,
    pub ct_clear: bool,
    pub recirc: bool,
}

impl ConntrackSupport {
    /// Why conntrack rules cannot run here, if they cannot.
    pub fn missing(&self) -> Option<String> {
        let lacks: Vec<&str> = [
            (self.ct_state, "ct_state keys"),
            (self.ct, "the ct action"),
            (self.nat, "NAT"),
            (self.ct_clear, "ct_clear"),
            (self.recirc, "recirculation"),
        ]
        .iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, what)| *what)
        .collect();
        (!lacks.is_empty()).then(|| lacks.join(", "))
    }
}

/// An exact mask over what a probe flow sets, and over nothing else (so
/// that a probe of an action does not also probe conntrack keys).
fn probe_mask(key: &messages::Flow) -> messages::Flow {
    let mut m = messages::Flow {
        in_port: u32::MAX,
        recirc_id: u32::MAX,
        dl_type: u16::MAX,
        nw_proto: u8::MAX,
        nw_src: u32::MAX,
        nw_dst: u32::MAX,
        nw_frag: messages::flow::FLOW_NW_FRAG_MASK,
        ..messages::Flow::default()
    };
    if key.ct_state != 0 {
        (m.ct_state, m.ct_zone, m.ct_mark, m.ct_label) = (u8::MAX, u16::MAX, u32::MAX, [0xff; 16]);
    }
    if key.ct_nw_proto != 0 {
        (m.ct_nw_proto, m.ct_nw_src, m.ct_nw_dst) = (u8::MAX, u32::MAX, u32::MAX);
        (m.ct_tp_src, m.ct_tp_dst) = (u16::MAX, u16::MAX);
    }
    m
}

/// How misses reach the upcall queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dispatch {
    /// `OVS_DP_F_DISPATCH_UPCALL_PER_CPU`: one PID per CPU.
    PerCpu,
    /// `OVS_VPORT_ATTR_UPCALL_PID` on every port: all queues' PIDs.
    PerVport,
}

/// Which datapath to open and how.
#[derive(Clone, Debug)]
pub struct KernelDpifConfig {
    /// The datapath's name (also its local port's interface name).
    pub name: String,
    /// Number of upcall queues (one upcall socket each, read by one
    /// handler), at least 1.
    pub n_queues: usize,
    /// Try per-CPU upcall dispatch first (falls back to per-vport PIDs).
    pub per_cpu_dispatch: bool,
}

/// Ids of the four families in this kernel.
#[derive(Clone, Copy, Debug)]
struct Families {
    datapath: u16,
    vport: u16,
    flow: u16,
    packet: u16,
}

/// Figures of the batch path and upcall reception.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// `sendmsg` calls carrying requests.
    pub sendmsg_calls: u64,
    /// Requests sent (flow puts, deletes, executes, ...).
    pub ops: u64,
    /// `recvmsg` calls reading their answers (an error message per failed
    /// request, and per `sendmsg` the read that finds no more).
    pub recvmsg_calls: u64,
    /// Upcall socket overruns reported as `ENOBUFS`.
    pub upcall_overruns: u64,
    /// Receive calls on the upcall sockets (empty ones included).
    pub upcall_recv_calls: u64,
    /// Waits (`poll`) for an empty upcall socket.
    pub upcall_waits: u64,
    /// Upcalls longer than a receive slot, dropped.
    pub upcalls_truncated: u64,
    /// Upcall messages that could not be decoded.
    pub bad_upcalls: u64,
    /// Dumped flows that could not be decoded (deleted when they have a
    /// UFID, so that their packets come up again).
    pub bad_flows: u64,
}

/// A batch socket and what its writer keeps between batches.
struct TxPath {
    socket: BatchSocket,
    actions: EncodedActions,
}

/// The netlink bytes of the action lists sent on one batch socket, by
/// list. A handler shares each distinct list (a rule set has a handful)
/// among its puts and executes, so a list is encoded once, not twice an
/// upcall.
#[derive(Default)]
struct EncodedActions {
    /// By the list's address; the `Arc` held keeps the address its own.
    by_list: HashMap<usize, (Arc<OdpActions>, Vec<u8>), FxBuildHasher>,
}

impl EncodedActions {
    /// Lists kept before starting over (revalidators' modifies bring
    /// lists of their own).
    const CAPACITY: usize = 1024;

    /// `actions` as the payload of an `OVS_*_ATTR_ACTIONS` attribute.
    fn get(&mut self, actions: &Arc<OdpActions>) -> &[u8] {
        let at = Arc::as_ptr(actions) as usize;
        if !self.by_list.contains_key(&at) && self.by_list.len() >= Self::CAPACITY {
            self.by_list.clear();
        }
        &self
            .by_list
            .entry(at)
            .or_insert_with(|| {
                let attrs = actions_to_attrs(actions);
                let mut bytes = vec![0; attrs.as_slice().buffer_len()];
                attrs.as_slice().emit(&mut bytes);
                (actions.clone(), bytes)
            })
            .1
    }
}

/// The request connections of the control path.
struct Control {
    datapath: GenlConnection<DpMessage>,
    vport: GenlConnection<VportMessage>,
    flow: GenlConnection<FlowMessage>,
}

pub struct KernelDpif {
    name: String,
    dp_ifindex: i32,
    families: Families,
    dispatch: Dispatch,
    control: Control,
    /// One batch socket per thread that may write at once (each handler
    /// writes its own batches, and each revalidator its own): a batch
    /// waits for its answers on the socket it went out on.
    tx: Vec<Mutex<TxPath>>,
    /// Terse dumps and gets by ufid, read on the caller's thread.
    replies: Mutex<ReplySocket>,
    counters: TxCounters,
    queues: Vec<UpcallSocket>,
    queue_pids: Vec<u32>,
    upcall_counters: Arc<UpcallCounters>,
    bad_upcalls: AtomicU64,
    bad_flows: AtomicU64,
    dump_cache: Mutex<DumpCache>,
    closed: AtomicBool,
    conntrack: ConntrackSupport,
    /// The datapath's meters, or why it has none.
    meters: Result<meters::KernelMeters, String>,
    /// Tunnel ports whose device was made over rtnetlink, by name: netdev
    /// vports to the kernel, tunnel ports to us.
    tunnel_links: Mutex<std::collections::BTreeMap<String, TunnelLink>>,
    // Last: dropping it stops the connections above.
    _netlink: NetlinkThread,
}

fn io_err(e: io::Error) -> DpifError {
    DpifError::Io(e)
}

fn refused(what: &str, errno: i32) -> DpifError {
    DpifError::Refused(format!("{what}: {}", io::Error::from_raw_os_error(errno)))
}

fn control_err(e: ControlError) -> DpifError {
    DpifError::Io(io::Error::other(e))
}

/// True if this kernel has the openvswitch module's `ovs_datapath` family.
pub fn kernel_has_ovs() -> io::Result<bool> {
    let netlink = NetlinkThread::start("upcalld-nl-probe")?;
    Ok(FamilyResolver::open(netlink.handle())?
        .resolve(OVS_DATAPATH_FAMILY)?
        .is_some())
}

fn n_cpus() -> usize {
    // Configured, not online, CPUs: the kernel sizes the per-CPU array by
    // its CPU ids, and offline CPUs can come back.
    // SAFETY: sysconf reads no memory of ours (rustix has no sysconf).
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) };
    if n > 0 {
        n as usize
    } else {
        1
    }
}

impl KernelDpif {
    /// Creates datapath `cfg.name`, or attaches to it if it exists, and
    /// wires the queues' upcall sockets to it.
    pub fn open(cfg: &KernelDpifConfig) -> Result<KernelDpif, DpifError> {
        // Control replies get a runtime thread; upcalls are read by their
        // receivers' threads.
        let netlink = NetlinkThread::start("upcalld-nl-ctl").map_err(io_err)?;
        let runtime = netlink.handle().clone();
        let runtime = &runtime;
        let resolver = FamilyResolver::open(runtime).map_err(io_err)?;
        let resolve = |name: &str| -> Result<u16, DpifError> {
            resolver.resolve(name).map_err(io_err)?.ok_or_else(|| {
                DpifError::Refused(format!(
                    "generic netlink family {name} not found (openvswitch module not loaded?)"
                ))
            })
        };
        let families = Families {
            datapath: resolve(OVS_DATAPATH_FAMILY)?,
            vport: resolve(OVS_VPORT_FAMILY)?,
            flow: resolve(OVS_FLOW_FAMILY)?,
            packet: resolve(OVS_PACKET_FAMILY)?,
        };
        let control = Control {
            datapath: GenlConnection::open(runtime, families.datapath).map_err(io_err)?,
            vport: GenlConnection::open(runtime, families.vport).map_err(io_err)?,
            flow: GenlConnection::open(runtime, families.flow).map_err(io_err)?,
        };
        let upcall_counters = Arc::new(UpcallCounters::default());
        let queues = (0..cfg.n_queues.max(1))
            .map(|_| UpcallSocket::open(upcall_counters.clone()))
            .collect::<io::Result<Vec<_>>>()
            .map_err(io_err)?;
        let queue_pids = queues.iter().map(UpcallSocket::port_id).collect();
        let mut dpif = KernelDpif {
            name: cfg.name.clone(),
            dp_ifindex: 0,
            families,
            dispatch: Dispatch::PerVport,
            control,
            tx: (0..cfg.n_queues.max(1) + 1)
                .map(|_| {
                    BatchSocket::new().map(|socket| {
                        Mutex::new(TxPath {
                            socket,
                            actions: EncodedActions::default(),
                        })
                    })
                })
                .collect::<io::Result<_>>()
                .map_err(io_err)?,
            replies: Mutex::new(ReplySocket::new().map_err(io_err)?),
            counters: TxCounters::default(),
            queues,
            queue_pids,
            upcall_counters,
            bad_upcalls: AtomicU64::new(0),
            bad_flows: AtomicU64::new(0),
            dump_cache: Mutex::new(DumpCache::default()),
            closed: AtomicBool::new(false),
            conntrack: ConntrackSupport::default(),
            meters: Err("not probed".into()),
            tunnel_links: Mutex::default(),
            _netlink: netlink,
        };
        dpif.dp_ifindex = dpif.create_or_attach()?;
        dpif.dispatch = dpif.negotiate_dispatch(cfg.per_cpu_dispatch)?;
        dpif.conntrack = dpif.probe_conntrack();
        dpif.meters = meters::KernelMeters::open(runtime, &resolver, dpif.dp_ifindex);
        match &dpif.meters {
            Ok(m) => tracing::info!(features = ?m.features(), "kernel datapath meters"),
            Err(why) => tracing::warn!(%why, "kernel datapath without meters"),
        }
        Ok(dpif)
    }

    /// The conntrack features the datapath accepted at open.
    pub fn conntrack(&self) -> ConntrackSupport {
        self.conntrack
    }

    /// OVS's probes: one flow per feature, put and deleted at once; a
    /// feature the kernel refuses (EINVAL for an unknown attribute) is
    /// missing.
    fn probe_conntrack(&self) -> ConntrackSupport {
        use messages::flow::*;
        use messages::odp::{CtAction, NatAction, NatAddrs, NatKind, OdpAction};
        let ip = Flow {
            in_port: 0,
            dl_type: ETH_TYPE_IP,
            nw_proto: IPPROTO_TCP,
            nw_src: 0x0a00_0001,
            nw_dst: 0x0a00_0002,
            nw_ttl: 64,
            ..Flow::default()
        };
        let tracked = Flow {
            ct_state: CS_TRACKED | CS_NEW,
            ct_zone: 1,
            ct_mark: 1,
            ct_label: [1; 16],
            ..ip
        };
        let tuple = Flow {
            ct_nw_proto: IPPROTO_TCP,
            ct_nw_src: 0x0a00_0001,
            ct_nw_dst: 0x0a00_0002,
            ct_tp_src: 1,
            ct_tp_dst: 2,
            ..tracked
        };
        let commit = CtAction {
            commit: true,
            zone: 1,
            mark: Some((1, 1)),
            labels: Some((1, 1)),
            ..CtAction::default()
        };
        let nat = CtAction {
            commit: true,
            nat: Some(NatAction {
                kind: Some(NatKind::Src),
                addrs: Some(NatAddrs::V4 {
                    min: 0x0a00_0009,
                    max: 0x0a00_0009,
                }),
                ..NatAction::default()
            }),
            ..CtAction::default()
        };
        let support = ConntrackSupport {
            ct_state: self.probe(&tracked, &[]),
            ct_orig_tuple: self.probe(&tuple, &[]),
            ct: self.probe(&ip, &[OdpAction::Ct(commit)]),
            nat: self.probe(&ip, &[OdpAction::Ct(nat)]),
            ct_clear: self.probe(&ip, &[OdpAction::CtClear]),
            recirc: self.probe(&ip, &[OdpAction::Recirc(1)]),
        };
        tracing::info!(?support, "kernel datapath conntrack support");
        support
    }

    fn probe(&self, key: &messages::Flow, actions: &[messages::odp::OdpAction]) -> bool {
        // "upcalld probe" in ASCII: no megaflow's hash is likely to be it.
        const PROBE_UFID: Ufid = 0x7570_6361_6c6c_6420_7072_6f62_6500_0001;
        let mask = datapath_mask(key, &probe_mask(key));
        let (k, m) = megaflow_to_attrs(key, &mask);
        let put = self.flow_control(
            CMD_NEW,
            vec![
                FlowAttr::Key(k),
                FlowAttr::Mask(m),
                FlowAttr::Actions(actions_to_attrs(actions)),
                FlowAttr::Ufid(PROBE_UFID),
            ],
            NLM_F_CREATE,
        );
        let ok = matches!(put, Ok(Ok(_)));
        if ok {
            let _ = self.flow_control(CMD_DEL, vec![FlowAttr::Ufid(PROBE_UFID)], 0);
        }
        ok
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn kernel_meters(&self) -> Result<&meters::KernelMeters, DpifError> {
        self.meters
            .as_ref()
            .map_err(|why| DpifError::Refused(format!("{why} (OFPMMFC_OUT_OF_METERS)")))
    }

    /// The upcall dispatch the kernel agreed to.
    pub fn dispatch(&self) -> Dispatch {
        self.dispatch
    }

    /// The upcall queues' socket PIDs, queue 0 first.
    pub fn queue_pids(&self) -> &[u32] {
        &self.queue_pids
    }

    pub fn counters(&self) -> KernelCounters {
        KernelCounters {
            sendmsg_calls: self.counters.sendmsg_calls.load(Ordering::Relaxed),
            recvmsg_calls: self.counters.recvmsg_calls.load(Ordering::Relaxed),
            ops: self.counters.ops.load(Ordering::Relaxed),
            upcall_overruns: self.upcall_counters.overruns.load(Ordering::Relaxed),
            upcall_recv_calls: self.upcall_counters.recv_calls.load(Ordering::Relaxed),
            upcall_waits: self.upcall_counters.waits.load(Ordering::Relaxed),
            upcalls_truncated: self.upcall_counters.truncated.load(Ordering::Relaxed),
            bad_upcalls: self.bad_upcalls.load(Ordering::Relaxed),
            bad_flows: self.bad_flows.load(Ordering::Relaxed),
        }
    }

    /// Writes `ops` in batches on a free batch socket (or waits for the
    /// first) and returns one answer per op.
    fn transact(&self, ops: &[DpifOp]) -> Result<Vec<Answer>, DpifError> {
        let free = self.tx.iter().find_map(|s| s.try_lock().ok());
        let mut tx = match free {
            Some(tx) => tx,
            None => self.tx[0].lock().map_err(|_| DpifError::Closed)?,
        };
        let TxPath { socket, actions } = &mut *tx;
        socket
            .transact(
                ops.len(),
                |i, out| self.write_flow_request(&ops[i], actions, out),
                &self.counters,
            )
            .map_err(io_err)
    }

    fn dp_control(
        &self,
        cmd: u8,
        attrs: Vec<DpAttr>,
        flags: u16,
    ) -> Result<ControlAnswer<DpMessage>, DpifError> {
        self.control
            .datapath
            .request(DpMessage::new(cmd, self.dp_ifindex, attrs), flags)
            .map_err(control_err)
    }

    fn vport_control(
        &self,
        cmd: u8,
        attrs: Vec<VportAttr>,
        flags: u16,
    ) -> Result<ControlAnswer<VportMessage>, DpifError> {
        self.control
            .vport
            .request(VportMessage::new(cmd, self.dp_ifindex, attrs), flags)
            .map_err(control_err)
    }

    fn flow_control(
        &self,
        cmd: u8,
        attrs: Vec<FlowAttr>,
        flags: u16,
    ) -> Result<ControlAnswer<FlowMessage>, DpifError> {
        self.control
            .flow
            .request(FlowMessage::new(cmd, self.dp_ifindex, attrs), flags)
            .map_err(control_err)
    }

    fn base_features() -> u32 {
        OVS_DP_F_UNALIGNED | OVS_DP_F_VPORT_PIDS
    }

    fn create_or_attach(&self) -> Result<i32, DpifError> {
        let created = self.dp_control(
            CMD_NEW,
            vec![
                DpAttr::Name(self.name.clone()),
                DpAttr::UpcallPid(self.queue_pids[0]),
                DpAttr::UserFeatures(Self::base_features()),
            ],
            // The kernel answers a NEW with a notification, which reaches
            // the requester only when echo is asked for.
            NLM_F_ECHO,
        )?;
        let replies = match created {
            Ok(r) => r,
            Err(libc::EEXIST) => self
                .dp_control(CMD_GET, vec![DpAttr::Name(self.name.clone())], 0)?
                .map_err(|e| refused("OVS_DP_CMD_GET", e))?,
            Err(e) => return Err(refused("OVS_DP_CMD_NEW", e)),
        };
        replies
            .first()
            .map(|dp| dp.dp_ifindex)
            .ok_or_else(|| DpifError::Refused("datapath command without reply".into()))
    }

    /// Asks for per-CPU dispatch; on refusal (kernels before 5.14) keeps
    /// per-vport PIDs.
    fn negotiate_dispatch(&self, per_cpu: bool) -> Result<Dispatch, DpifError> {
        if per_cpu {
            let n = self.queue_pids.len();
            let pids: Vec<u32> = (0..n_cpus()).map(|cpu| self.queue_pids[cpu % n]).collect();
            let set = self.dp_control(
                CMD_SET,
                vec![
                    DpAttr::Name(self.name.clone()),
                    DpAttr::UserFeatures(Self::base_features() | OVS_DP_F_DISPATCH_UPCALL_PER_CPU),
                    DpAttr::PerCpuPids(pids),
                ],
                0,
            )?;
            if set.is_ok() && self.dp_features()? & OVS_DP_F_DISPATCH_UPCALL_PER_CPU != 0 {
                return Ok(Dispatch::PerCpu);
            }
        }
        self.dp_control(
            CMD_SET,
            vec![
                DpAttr::Name(self.name.clone()),
                DpAttr::UserFeatures(Self::base_features()),
            ],
            0,
        )?
        .map_err(|e| refused("OVS_DP_CMD_SET", e))?;
        for p in self.ports() {
            self.set_port_pids(p.number)?;
        }
        Ok(Dispatch::PerVport)
    }

    fn dp_get(&self) -> Result<DpMessage, DpifError> {
        self.dp_control(CMD_GET, vec![DpAttr::Name(self.name.clone())], 0)?
            .map_err(|e| refused("OVS_DP_CMD_GET", e))?
            .into_iter()
            .next()
            .ok_or_else(|| DpifError::Refused("OVS_DP_CMD_GET without reply".into()))
    }

    fn dp_features(&self) -> Result<u32, DpifError> {
        Ok(self
            .dp_get()?
            .attrs
            .iter()
            .find_map(|a| match a {
                DpAttr::UserFeatures(f) => Some(*f),
                _ => None,
            })
            .unwrap_or(0))
    }

    fn vport_pids(&self) -> Vec<u32> {
        match self.dispatch {
            // Ignored by the kernel in per-CPU mode, but must be nonzero
            // for the port to send upcalls at all.
            Dispatch::PerCpu => vec![self.queue_pids[0]],
            Dispatch::PerVport => self.queue_pids.clone(),
        }
    }

    fn set_port_pids(&self, port: u32) -> Result<(), DpifError> {
        self.vport_control(
            CMD_SET,
            vec![
                VportAttr::PortNo(port),
                VportAttr::UpcallPids(self.vport_pids()),
            ],
            0,
        )?
        .map(|_| ())
        .map_err(|e| refused("OVS_VPORT_CMD_SET", e))
    }

    /// Stops upcall reception: from now on `recv_upcalls` answers
    /// `Closed`, so the receivers stop. Flows, ports and the datapath stay.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Deletes the datapath and with it its ports and flows, and the
    /// tunnel devices made for it (the kernel deletes only the devices of
    /// its own tunnel vports).
    pub fn destroy(&self) -> Result<(), DpifError> {
        let tunnels: Vec<String> = self
            .ports()
            .into_iter()
            .filter(|p| matches!(p.kind, PortKind::Tunnel { .. }))
            .map(|p| p.name)
            .collect();
        self.dp_control(CMD_DEL, vec![DpAttr::Name(self.name.clone())], 0)?
            .map_err(|e| refused("OVS_DP_CMD_DEL", e))?;
        for name in tunnels {
            self.delete_tunnel_link(&name);
        }
        Ok(())
    }

    /// Makes the device of a tunnel port over rtnetlink, as OVS does
    /// (`Ok(true)`: made now, `Ok(false)`: ours from an earlier run), or
    /// says why not, for the module's own tunnel vport to be used instead
    /// (OVS's fallback too).
    fn make_tunnel_link(&self, name: &str, link: &TunnelLink) -> Result<bool, i32> {
        let made = match tunnel_link::create(name, link) {
            Ok(()) => Ok(true),
            // A datapath kept from an earlier run: its device as it is,
            // if it is one made so.
            Err(libc::EEXIST) => match tunnel_link::get(name) {
                Ok(Some(l)) if l == *link => Ok(false),
                _ => Err(libc::EEXIST),
            },
            Err(e) => Err(e),
        }?;
        self.tunnel_links
            .lock()
            .map_err(|_| libc::EIO)?
            .insert(name.to_string(), *link);
        Ok(made)
    }

    /// Deletes device `name` if it is a tunnel device made over
    /// rtnetlink; a failure is logged (the device stays, unused).
    fn delete_tunnel_link(&self, name: &str) {
        if let Ok(mut links) = self.tunnel_links.lock() {
            links.remove(name);
        }
        if let Ok(Some(_)) = tunnel_link::get(name) {
            if let Err(e) = tunnel_link::delete(name) {
                tracing::warn!(name, error = %io::Error::from_raw_os_error(e), "tunnel device not deleted");
            }
        }
    }

    /// Appends `op`'s request to `out`, written in place (see
    /// [`messages::netlink::writer`]): the handlers' hot path.
    fn write_flow_request(&self, op: &DpifOp, encoded: &mut EncodedActions, out: &mut Vec<u8>) {
        let omit =
            (OVS_UFID_F_OMIT_KEY | OVS_UFID_F_OMIT_MASK | OVS_UFID_F_OMIT_ACTIONS).to_ne_bytes();
        let flow = |cmd, flags| RequestHeader {
            family_id: self.families.flow,
            flags,
            cmd,
            version: FlowAttr::VERSION,
            dp_ifindex: self.dp_ifindex,
        };
        match op {
            DpifOp::FlowPut(put) => {
                let FlowPut {
                    ufid,
                    megaflow,
                    actions,
                    mode,
                    reset_stats,
                } = &**put;
                let (cmd, flags) = match mode {
                    PutMode::Create => (CMD_NEW, NLM_F_CREATE),
                    PutMode::CreateOrModify => (CMD_NEW, 0),
                    PutMode::Modify => (CMD_SET, 0),
                };
                let (k, m) = megaflow_to_attrs(&megaflow.key(), &megaflow.mask());
                let mut w = MessageWriter::begin(out, flow(cmd, flags));
                w.key_attrs(OVS_FLOW_ATTR_KEY, &k)
                    .key_attrs(OVS_FLOW_ATTR_MASK, &m)
                    .attr(OVS_FLOW_ATTR_ACTIONS, encoded.get(actions))
                    .attr(OVS_FLOW_ATTR_UFID, &ufid.to_ne_bytes())
                    .attr(OVS_FLOW_ATTR_UFID_FLAGS, &omit);
                if *reset_stats && cmd == CMD_SET {
                    w.attr(OVS_FLOW_ATTR_CLEAR, &[]);
                }
                w.finish();
            }
            DpifOp::FlowDel { ufid } => {
                let mut w = MessageWriter::begin(out, flow(CMD_DEL, 0));
                w.attr(OVS_FLOW_ATTR_UFID, &ufid.to_ne_bytes())
                    .attr(OVS_FLOW_ATTR_UFID_FLAGS, &omit);
                w.finish();
            }
            DpifOp::Execute(e) => {
                let mut w = MessageWriter::begin(
                    out,
                    RequestHeader {
                        family_id: self.families.packet,
                        flags: 0,
                        cmd: OVS_PACKET_CMD_EXECUTE,
                        version: PacketAttr::VERSION,
                        dp_ifindex: self.dp_ifindex,
                    },
                );
                w.attr(OVS_PACKET_ATTR_PACKET, &e.packet)
                    .key_attrs(OVS_PACKET_ATTR_KEY, &metadata_to_attrs(&e.metadata))
                    .attr(OVS_PACKET_ATTR_ACTIONS, encoded.get(&e.actions));
                if e.mru != 0 {
                    w.attr(OVS_PACKET_ATTR_MRU, &e.mru.to_ne_bytes());
                }
                w.finish();
            }
        }
    }

    /// Deletes every flow of the datapath.
    pub fn flow_flush(&self) -> Result<(), DpifError> {
        self.flow_control(CMD_DEL, vec![], 0)?
            .map(|_| ())
            .map_err(|e| refused("OVS_FLOW_CMD_DEL", e))
    }

    fn decode_flow(&self, msg: FlowMessage) -> Result<DpFlow, String> {
        let mut ufid = None;
        let mut key = None;
        let mut mask = None;
        let mut actions = None;
        let mut stats = FlowStats::default();
        for a in msg.attrs {
            match a {
                FlowAttr::Ufid(u) => ufid = Some(u),
                FlowAttr::Key(k) => key = Some(k),
                FlowAttr::Mask(m) => mask = Some(m),
                FlowAttr::Actions(a) => actions = Some(a),
                FlowAttr::Stats { n_packets, n_bytes } => {
                    stats.n_packets = n_packets;
                    stats.n_bytes = n_bytes;
                }
                FlowAttr::Used(u) => stats.used_ms = Some(u),
                FlowAttr::TcpFlags(f) => stats.tcp_flags = f as u16,
                _ => {}
            }
        }
        let key_attrs = key.ok_or("flow without key")?;
        let key = key_from_attrs(&key_attrs).map_err(|e| e.to_string())?;
        // The kernel always matches VLAN TCIs exactly, whatever the mask
        // attributes say, so a flow's real mask pins the VLAN stack's shape.
        let mask = datapath_mask(
            &key,
            &mask_from_attrs(&key, mask.as_deref()).map_err(|e| e.to_string())?,
        );
        let actions =
            actions_from_attrs(&actions.unwrap_or_default()).map_err(|e| e.to_string())?;
        Ok(DpFlow {
            ufid: ufid.unwrap_or_else(|| key_ufid(&key)),
            key,
            mask,
            actions,
            stats,
        })
    }
}

impl Dpif for KernelDpif {
    fn kind(&self) -> &'static str {
        "kernel"
    }

    fn backend_counters(&self) -> Vec<(&'static str, u64)> {
        let c = self.counters();
        vec![
            ("sendmsg_calls", c.sendmsg_calls),
            ("ops", c.ops),
            ("recvmsg_calls", c.recvmsg_calls),
            ("upcall_overruns", c.upcall_overruns),
            ("upcall_recv_calls", c.upcall_recv_calls),
            ("upcall_waits", c.upcall_waits),
            ("upcalls_truncated", c.upcalls_truncated),
            ("bad_upcalls", c.bad_upcalls),
            ("bad_flows", c.bad_flows),
        ]
    }

    fn meter_features(&self) -> Option<messages::dpif::MeterFeatures> {
        self.meters
            .as_ref()
            .ok()
            .map(meters::KernelMeters::features)
    }

    fn meter_set(&self, id: u32, meter: &messages::meter::Meter) -> Result<(), DpifError> {
        self.kernel_meters()?.set(id, meter)
    }

    fn meter_del(&self, id: u32) -> Result<(), DpifError> {
        self.kernel_meters()?.del(id)
    }

    fn meter_stats(&self, id: u32) -> Result<messages::meter::MeterStats, DpifError> {
        self.kernel_meters()?.get(id)
    }

    fn recv_upcalls(
        &self,
        queue: usize,
        max: usize,
        timeout: Duration,
        out: &mut Vec<Upcall>,
    ) -> Result<(), DpifError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(DpifError::Closed);
        }
        let socket = self
            .queues
            .get(queue)
            .ok_or_else(|| DpifError::Refused(format!("no upcall queue {queue}")))?;
        let mut bad = 0;
        let mut keys = Vec::new();
        socket
            .recv(max, timeout, |header, payload| {
                match parse_upcall(header.cmd, payload, &mut keys) {
                    Ok(u) => out.push(u),
                    Err(e) => {
                        tracing::debug!(error = %e, "undecodable upcall");
                        bad += 1;
                    }
                }
            })
            .map_err(io_err)?;
        if bad > 0 {
            self.bad_upcalls.fetch_add(bad, Ordering::Relaxed);
        }
        Ok(())
    }

    fn operate(&self, ops: &mut [DpifOp]) -> Vec<Result<(), DpifError>> {
        match self.transact(ops) {
            Ok(answers) => answers
                .into_iter()
                .zip(ops.iter())
                .map(|(a, op)| {
                    a.map_err(|e| {
                        refused(
                            match op {
                                DpifOp::FlowPut(_) => "flow put",
                                DpifOp::FlowDel { .. } => "flow del",
                                DpifOp::Execute(_) => "execute",
                            },
                            e,
                        )
                    })
                })
                .collect(),
            Err(e) => {
                let msg = e.to_string();
                ops.iter()
                    .map(|_| Err(DpifError::Refused(format!("batch failed: {msg}"))))
                    .collect()
            }
        }
    }

    fn flow_dump(&self) -> Result<Vec<DpFlow>, DpifError> {
        let replies = self
            .control
            .flow
            .request_deferred(
                FlowMessage::new(CMD_GET, self.dp_ifindex, vec![]),
                NLM_F_DUMP,
            )
            .map_err(control_err)?
            .map_err(|e| refused("OVS_FLOW_CMD_GET dump", e))?;
        let mut cache = self.dump_cache.lock().map_err(|_| DpifError::Closed)?;
        cache.begin();
        let mut flows = Vec::with_capacity(replies.len());
        let mut undecodable = Vec::new();
        for reply in replies {
            let Deferred::Received { header, payload } = reply else {
                continue;
            };
            let Some(scan) = dump::scan(&payload) else {
                self.bad_flows.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            if let Some(flow) = cache.get(&scan) {
                flows.push(flow);
                continue;
            }
            let decoded = FlowMessage::parse_with_param(&payload, header)
                .map_err(|e| e.to_string())
                .and_then(|msg| self.decode_flow(msg));
            match decoded {
                Ok(flow) => {
                    cache.insert(&scan, &flow);
                    flows.push(flow);
                }
                Err(why) => {
                    self.bad_flows.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(ufid = ?scan.ufid, %why, "undecodable kernel flow: deleting it");
                    undecodable.extend(scan.ufid);
                }
            }
        }
        cache.end();
        drop(cache);
        // A flow upcalld cannot represent cannot be revalidated: remove it
        // so that its packets come up and get a flow upcalld understands.
        if !undecodable.is_empty() {
            let mut ops: Vec<DpifOp> = undecodable
                .into_iter()
                .map(|ufid| DpifOp::FlowDel { ufid })
                .collect();
            let _ = self.operate(&mut ops);
        }
        Ok(flows)
    }

    fn flow_dump_terse(&self, out: &mut Vec<(Ufid, FlowStats)>) -> Result<(), DpifError> {
        let req = request(
            self.families.flow,
            FlowMessage::new(
                CMD_GET,
                self.dp_ifindex,
                vec![FlowAttr::UfidFlags(
                    OVS_UFID_F_OMIT_KEY | OVS_UFID_F_OMIT_MASK | OVS_UFID_F_OMIT_ACTIONS,
                )],
            ),
            0,
        )
        .into_dump();
        let mut bad = 0;
        let mut replies = self.replies.lock().map_err(|_| DpifError::Closed)?;
        replies
            .exchange(req, |_, payload| match dump::scan(payload) {
                Some(scan) => out.extend(scan.ufid.map(|u| (u, scan.stats))),
                None => bad += 1,
            })
            .map_err(io_err)?
            .map_err(|e| refused("OVS_FLOW_CMD_GET terse dump", e))?;
        self.bad_flows.fetch_add(bad, Ordering::Relaxed);
        Ok(())
    }

    fn flow_get(&self, ufid: Ufid) -> Result<Option<DpFlow>, DpifError> {
        let req = request(
            self.families.flow,
            FlowMessage::new(CMD_GET, self.dp_ifindex, vec![FlowAttr::Ufid(ufid)]),
            0,
        );
        let mut flow = None;
        let mut replies = self.replies.lock().map_err(|_| DpifError::Closed)?;
        let answer = replies
            .exchange(req, |header, payload| {
                flow = Some(
                    FlowMessage::parse_with_param(payload, header)
                        .map_err(|e| e.to_string())
                        .and_then(|msg| self.decode_flow(msg)),
                );
            })
            .map_err(io_err)?;
        match (answer, flow) {
            (Err(libc::ENOENT), _) => Ok(None),
            (Err(e), _) => Err(refused("OVS_FLOW_CMD_GET", e)),
            (Ok(()), None) => Ok(None),
            (Ok(()), Some(Ok(flow))) => Ok(Some(flow)),
            (Ok(()), Some(Err(why))) => {
                self.bad_flows.fetch_add(1, Ordering::Relaxed);
                Err(DpifError::Refused(format!(
                    "flow {ufid:032x} could not be decoded: {why}"
                )))
            }
        }
    }

    fn stats(&self) -> DpStats {
        let Ok(dp) = self.dp_get() else {
            return DpStats::default();
        };
        dp.attrs
            .iter()
            .find_map(|a| match a {
                DpAttr::Stats(s) => Some(DpStats {
                    n_hit: s.n_hit,
                    n_missed: s.n_missed,
                    n_lost: s.n_lost,
                    n_flows: s.n_flows,
                }),
                _ => None,
            })
            .unwrap_or_default()
    }

    fn port_add(&self, spec: &PortSpec) -> Result<u32, DpifError> {
        // A tunnel port's device is made over rtnetlink and attached as a
        // netdev, as OVS does: unlike the module's own Geneve vport, it
        // takes IPv6 datagrams without a UDP checksum, which is what a
        // tunnel without `csum=true` sends over an IPv6 underlay. Where
        // that fails, the module's own VXLAN/Geneve vport (OVS's compat
        // path) makes a metadata-collecting device on the UDP port.
        let mut made_link = false;
        let (vport_type, options) = match spec.kind {
            PortKind::System => (OVS_VPORT_TYPE_NETDEV, None),
            PortKind::Internal => (OVS_VPORT_TYPE_INTERNAL, None),
            PortKind::Replay { .. } => {
                return Err(DpifError::Refused(
                    "replay ports exist only on the userspace datapath".into(),
                ))
            }
            PortKind::Tunnel {
                kind,
                udp_port,
                vxlan_gbp,
            } => {
                let link = TunnelLink {
                    kind,
                    udp_port,
                    vxlan_gbp,
                };
                match self.make_tunnel_link(&spec.name, &link) {
                    Ok(made) => {
                        made_link = made;
                        (OVS_VPORT_TYPE_NETDEV, None)
                    }
                    Err(e) => {
                        tracing::warn!(name = %spec.name, error = %io::Error::from_raw_os_error(e),
                            "tunnel device not made over rtnetlink: the module's tunnel vport instead");
                        (
                            tunnel_vport_type(kind),
                            Some(tunnel_vport_options(udp_port, vxlan_gbp)),
                        )
                    }
                }
            }
        };
        let mut attrs = vec![
            VportAttr::Name(spec.name.clone()),
            VportAttr::Type(vport_type),
            VportAttr::UpcallPids(self.vport_pids()),
        ];
        attrs.extend(options.map(VportAttr::Options));
        if let Some(n) = spec.number {
            attrs.push(VportAttr::PortNo(n));
        }
        let answer = self.vport_control(CMD_NEW, attrs, NLM_F_ECHO);
        if made_link && !matches!(answer, Ok(Ok(_))) {
            self.delete_tunnel_link(&spec.name);
        }
        let replies = match answer? {
            Ok(replies) => replies,
            // Attaching to a datapath that already has this port (a
            // restart): keep it, with its number and its flows. The kernel
            // says EBUSY for a netdev already in a datapath, EEXIST for a
            // taken name or number.
            Err(errno @ (libc::EEXIST | libc::EBUSY)) => {
                return match self.ports().into_iter().find(|p| p.name == spec.name) {
                    Some(p) if spec.number.is_none_or(|n| n == p.number) => Ok(p.number),
                    Some(p) => Err(DpifError::Refused(format!(
                        "port {} exists as number {}, not {:?}",
                        spec.name, p.number, spec.number
                    ))),
                    None => Err(refused(
                        &format!("adding port {} (in another datapath?)", spec.name),
                        errno,
                    )),
                }
            }
            // The module loads `vport-vxlan`/`vport-geneve` on demand and
            // asks for a retry; without them the type stays unknown.
            Err(libc::EAFNOSUPPORT) if matches!(spec.kind, PortKind::Tunnel { .. }) => {
                let kind = tunnel_kind_of_vport_type(vport_type).map_or("tunnel", |k| k.name());
                return Err(DpifError::Refused(format!(
                    "adding tunnel port {}: the kernel has no {kind} vport (module vport-{kind} not loaded?)",
                    spec.name
                )));
            }
            Err(e) => return Err(refused(&format!("adding port {}", spec.name), e)),
        };
        replies
            .into_iter()
            .flat_map(|reply| reply.attrs)
            .find_map(|a| match a {
                VportAttr::PortNo(n) => Some(n),
                _ => None,
            })
            .ok_or_else(|| DpifError::Refused("OVS_VPORT_CMD_NEW reply without port number".into()))
    }

    fn port_del(&self, number: u32) -> Result<(), DpifError> {
        let name = self
            .ports()
            .into_iter()
            .find(|p| p.number == number)
            .map(|p| p.name);
        match self.vport_control(CMD_DEL, vec![VportAttr::PortNo(number)], 0)? {
            Ok(_) => {
                if let Some(name) = name {
                    self.delete_tunnel_link(&name);
                }
                Ok(())
            }
            Err(libc::ENOENT) | Err(libc::ENODEV) => Err(DpifError::NoSuchPort(number)),
            Err(e) => Err(refused("OVS_VPORT_CMD_DEL", e)),
        }
    }

    fn ports(&self) -> Vec<PortInfo> {
        let Ok(Ok(replies)) = self.vport_control(CMD_GET, vec![], NLM_F_DUMP) else {
            return Vec::new();
        };
        let links = self
            .tunnel_links
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default();
        let mut ports: Vec<PortInfo> = replies
            .into_iter()
            .filter(|m| m.dp_ifindex == self.dp_ifindex)
            .filter_map(|m| {
                let mut number = None;
                let mut name = None;
                let mut kind = PortKind::System;
                let mut tunnel = None;
                let mut udp_port = None;
                let mut vxlan_gbp = false;
                for a in m.attrs {
                    match a {
                        VportAttr::PortNo(n) => number = Some(n),
                        VportAttr::Name(s) => name = Some(s),
                        VportAttr::Type(OVS_VPORT_TYPE_INTERNAL) => kind = PortKind::Internal,
                        VportAttr::Type(t) => tunnel = tunnel_kind_of_vport_type(t),
                        VportAttr::Options(o) => {
                            udp_port = tunnel_vport_udp_port(&o).ok().flatten();
                            vxlan_gbp = tunnel_vport_vxlan_gbp(&o).unwrap_or(false);
                        }
                        _ => {}
                    }
                }
                if let (Some(tunnel), Some(udp_port)) = (tunnel, udp_port) {
                    kind = PortKind::Tunnel {
                        kind: tunnel,
                        udp_port,
                        vxlan_gbp,
                    };
                }
                if let Some(link) = name.as_ref().and_then(|n| links.get(n)) {
                    kind = PortKind::Tunnel {
                        kind: link.kind,
                        udp_port: link.udp_port,
                        vxlan_gbp: link.vxlan_gbp,
                    };
                }
                Some(PortInfo {
                    number: number?,
                    name: name?,
                    kind,
                })
            })
            .collect();
        ports.sort_by_key(|p| p.number);
        ports
    }

    /// The counters of each port's network interface (what OVS reports
    /// for a system port), read from sysfs; the datapath itself loses
    /// nothing a port received without counting it in `n_lost`.
    fn port_stats(&self) -> Vec<PortStats> {
        self.ports()
            .into_iter()
            .map(|p| {
                let read = |what: &str| {
                    std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{what}", p.name))
                        .ok()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0)
                };
                PortStats {
                    number: if p.number == 0 {
                        messages::ofp::port::LOCAL
                    } else {
                        p.number
                    },
                    rx_packets: read("rx_packets"),
                    rx_bytes: read("rx_bytes"),
                    rx_dropped: read("rx_dropped"),
                    rx_errors: read("rx_errors"),
                    tx_packets: read("tx_packets"),
                    tx_bytes: read("tx_bytes"),
                    tx_dropped: read("tx_dropped"),
                    tx_errors: read("tx_errors"),
                    duration: None,
                    name: p.name,
                }
            })
            .collect()
    }
}
