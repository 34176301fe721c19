//! The datapath interface ([`Dpif`], OVS's `dpif_class`) and what crosses
//! it: upcalls coming up, flow operations going down, and flows dumped with
//! their statistics. Both backends (the embedded userspace datapath, the
//! kernel's) implement it; the actors talk to it. It sits below the slow
//! path, as OVS's `lib/dpif-provider.h` sits below `ofproto/`.
//!
//! Calls are blocking and thread-safe: each receiver reads upcalls on its
//! own thread (receiver `i` reads upcall queue `i`: `recv_upcalls(i, ..)`);
//! the dpif-writer and revalidators call `operate` and `flow_dump` from
//! theirs.
//!
//! `FlowStats::used_ms` is in milliseconds of `CLOCK_MONOTONIC`
//! ([`monotonic_ms`]) for every backend: the kernel reports it so, and
//! revalidators age flows against it.

use std::sync::Arc;
use std::time::Duration;

use crate::flow::{Flow, FlowWildcards, TUNNEL_LEN};
use crate::megaflow::Megaflow;
use crate::odp::OdpActions;

/// A unique flow identifier (OVS's 128-bit UFID).
pub type Ufid = u128;

/// Hashes a ufid for a hash map. Ufids are hashes already, so folding and
/// one multiply suffice (small test ufids still spread).
#[derive(Default, Clone, Copy)]
pub struct UfidHasher(u64);

impl std::hash::Hasher for UfidHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = crate::hash::mix_word(self.0, u64::from(*b));
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = crate::hash::fold_ufid(v);
    }
}

/// A map keyed by ufid.
pub type UfidMap<V> = std::collections::HashMap<Ufid, V, std::hash::BuildHasherDefault<UfidHasher>>;
/// A set of ufids.
pub type UfidSet = std::collections::HashSet<Ufid, std::hash::BuildHasherDefault<UfidHasher>>;

/// Upcalls a receiver reads at once (OVS's `UPCALL_MAX_BATCH`).
pub const UPCALL_MAX_BATCH: usize = 64;

/// Why a datapath call failed.
#[derive(Debug, thiserror::Error)]
pub enum DpifError {
    #[error("datapath I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The datapath answered with an errno (e.g. EEXIST, ENOENT, EINVAL).
    #[error("datapath refused the operation: {0}")]
    Refused(String),
    #[error("no such port {0}")]
    NoSuchPort(u32),
    #[error("datapath is shut down")]
    Closed,
}

/// Datapath-wide counters (what `ovs-dpctl show` prints).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DpStats {
    /// Packets that matched an installed flow.
    pub n_hit: u64,
    /// Packets that matched no flow and were sent up.
    pub n_missed: u64,
    /// Packets that matched no flow and could not be sent up.
    pub n_lost: u64,
    /// Flows currently installed.
    pub n_flows: u64,
}

/// What kind of port to add.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortKind {
    /// An existing Linux network interface (AF_PACKET on the userspace
    /// datapath, a netdev vport on the kernel's).
    System,
    /// A tap device (userspace) or an internal port (kernel), created.
    Internal,
    /// A file of frames fed into the datapath (userspace datapath only).
    Replay { path: std::path::PathBuf },
    /// A tunnel vport: every tunnel port of this type and UDP port sends
    /// and receives through it.
    Tunnel {
        kind: crate::tunnel::TunnelKind,
        udp_port: u16,
        /// VXLAN's Group Policy extension (`exts=gbp`).
        vxlan_gbp: bool,
    },
}

/// A port to add: its name, kind and wanted number (None: next free).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortSpec {
    pub name: String,
    pub kind: PortKind,
    pub number: Option<u32>,
}

/// A port as the datapath reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    pub number: u32,
    pub name: String,
    pub kind: PortKind,
}

/// One port's counters, as `ovs-ofctl dump-ports` reports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub number: u32,
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    /// Received by the port but lost before the datapath saw them (an
    /// AF_PACKET socket's `PACKET_STATISTICS` drops, the interface's own).
    pub rx_dropped: u64,
    pub rx_errors: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
    pub tx_errors: u64,
    /// Since the port was added.
    pub duration: Option<std::time::Duration>,
}

/// A datapath.
pub trait Dpif: Send + Sync + 'static {
    /// A short name for logs and metrics ("userspace", "kernel").
    fn kind(&self) -> &'static str;

    /// Waits up to `timeout` for upcalls in upcall queue `queue` and
    /// appends at most `max` of them to `out`. Returning with none is not an
    /// error.
    fn recv_upcalls(
        &self,
        queue: usize,
        max: usize,
        timeout: Duration,
        out: &mut Vec<Upcall>,
    ) -> Result<(), DpifError>;

    /// Carries out a batch of operations; one result per op, in order. The
    /// ops stay with the caller, to reuse their memory (an execute's packet
    /// may be left modified).
    fn operate(&self, ops: &mut [DpifOp]) -> Vec<Result<(), DpifError>>;

    /// Every installed flow with its statistics.
    fn flow_dump(&self) -> Result<Vec<DpFlow>, DpifError>;

    /// Every installed flow's ufid and statistics, without its key, mask
    /// and actions (OVS's terse dump, `OVS_UFID_F_OMIT_*`): what a
    /// revalidation round needs of the flows it has ukeys for. Appended to
    /// `out`. Flows without a ufid are left out.
    fn flow_dump_terse(&self, out: &mut Vec<(Ufid, FlowStats)>) -> Result<(), DpifError>;

    /// One installed flow in full, by ufid; None if there is none.
    fn flow_get(&self, ufid: Ufid) -> Result<Option<DpFlow>, DpifError>;

    fn stats(&self) -> DpStats;

    fn port_add(&self, spec: &PortSpec) -> Result<u32, DpifError>;
    fn port_del(&self, number: u32) -> Result<(), DpifError>;
    fn ports(&self) -> Vec<PortInfo>;
    /// Every port's counters, by port number.
    fn port_stats(&self) -> Vec<PortStats>;

    /// Counters particular to this backend, by name (the kernel's request
    /// batches, and what it sent that could not be decoded), for
    /// `upcall-show` and the metrics. None by default.
    fn backend_counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// What the datapath's meters can do (OVS's `dpif_meter_get_features`);
    /// None when it has none (the default).
    fn meter_features(&self) -> Option<MeterFeatures> {
        None
    }

    /// Creates or replaces datapath meter `id` (the `meter(ID)` action's).
    fn meter_set(&self, id: u32, meter: &crate::meter::Meter) -> Result<(), DpifError> {
        let _ = (id, meter);
        Err(no_meters(self.kind()))
    }

    /// Deletes datapath meter `id`; deleting one that does not exist is
    /// not an error.
    fn meter_del(&self, id: u32) -> Result<(), DpifError> {
        let _ = id;
        Err(no_meters(self.kind()))
    }

    /// What datapath meter `id` counted.
    fn meter_stats(&self, id: u32) -> Result<crate::meter::MeterStats, DpifError> {
        let _ = id;
        Err(no_meters(self.kind()))
    }
}

/// What a datapath's meters can do (OpenFlow's `ofp_meter_features`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MeterFeatures {
    pub max_meters: u32,
    pub max_bands: u8,
}

fn no_meters(kind: &str) -> DpifError {
    DpifError::Refused(format!(
        "the {kind} datapath has no meters (OFPMMFC_OUT_OF_METERS)"
    ))
}

/// Milliseconds of `CLOCK_MONOTONIC`: the clock of `FlowStats::used_ms` for
/// every backend, so that revalidators can age flows from any datapath.
pub fn monotonic_ms() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Why the datapath sent a packet up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpcallKind {
    /// No megaflow matched.
    Miss,
    /// A `userspace` datapath action sent it, with that action's userdata.
    Action { userdata: Vec<u8> },
}

/// One packet sent up by the datapath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upcall {
    pub kind: UpcallKind,
    /// The frame as received.
    pub packet: Vec<u8>,
    /// The datapath's flow key for the packet (metadata included).
    pub key: Flow,
    /// The datapath's identifier of the flow key.
    pub ufid: Ufid,
    /// The largest fragment the packet was reassembled from
    /// (`OVS_PACKET_ATTR_MRU`), 0 if it was not: an execute hands it back
    /// so that the kernel fragments the packet again on output.
    pub mru: u16,
}

impl Upcall {
    /// A miss with no packet and an all-zero key: a placeholder, as an
    /// emptied buffer's slots are.
    pub fn empty() -> Self {
        Upcall {
            kind: UpcallKind::Miss,
            packet: Vec::new(),
            key: Flow::default(),
            ufid: 0,
            mru: 0,
        }
    }
}

/// Packet and byte counters of a datapath flow, with the time (ms, on the
/// datapath's clock) it last matched a packet, if ever.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    pub n_packets: u64,
    pub n_bytes: u64,
    pub used_ms: Option<u64>,
    /// OR of the TCP flags seen.
    pub tcp_flags: u16,
}

/// Whether a `FlowPut` may create a flow, modify one, or both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PutMode {
    Create,
    Modify,
    CreateOrModify,
}

/// A megaflow to install or change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowPut {
    pub ufid: Ufid,
    /// The key under the mask (a datapath mask: see
    /// [`crate::flow::datapath_mask`]).
    pub megaflow: Megaflow,
    /// Shared with the `Execute` of the same upcall.
    pub actions: Arc<OdpActions>,
    pub mode: PutMode,
    /// Zero the flow's statistics (when modifying).
    pub reset_stats: bool,
}

/// What a datapath knows of a packet besides its bytes: the metadata part
/// of its flow key. A datapath parses the headers from the packet itself,
/// so an execute carries only this (as OVS's `dpif_execute` sends only a
/// packet's metadata), not a whole key of 264 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketMetadata {
    pub in_port: u32,
    pub skb_priority: u32,
    pub pkt_mark: u32,
    pub recirc_id: u32,
    pub dp_hash: u32,
    /// The tunnel the packet came by, or is to be sent with (after a
    /// `set(tunnel(...))`): the tunnel fields of a flow, as
    /// `Flow::tunnel_bytes` has them.
    pub tunnel: [u8; TUNNEL_LEN],
    pub ct_state: u8,
    pub ct_zone: u16,
    pub ct_mark: u32,
    pub ct_label: [u8; 16],
    /// The tracked connection's original-direction tuple (OVS's
    /// `ct_orig_tuple`), meaningful when `ct_state` has `CS_TRACKED`.
    pub ct_nw_proto: u8,
    pub ct_nw_src: u32,
    pub ct_nw_dst: u32,
    pub ct_ipv6_src: [u8; 16],
    pub ct_ipv6_dst: [u8; 16],
    pub ct_tp_src: u16,
    pub ct_tp_dst: u16,
}

impl Default for PacketMetadata {
    fn default() -> Self {
        PacketMetadata::of(&Flow::default())
    }
}

impl PacketMetadata {
    /// The metadata of a packet whose flow key is `key`.
    pub fn of(key: &Flow) -> Self {
        PacketMetadata {
            in_port: key.in_port,
            skb_priority: key.skb_priority,
            pkt_mark: key.pkt_mark,
            recirc_id: key.recirc_id,
            dp_hash: key.dp_hash,
            tunnel: key.tunnel_bytes().try_into().expect("TUNNEL_LEN"),
            ct_state: key.ct_state,
            ct_zone: key.ct_zone,
            ct_mark: key.ct_mark,
            ct_label: key.ct_label,
            ct_nw_proto: key.ct_nw_proto,
            ct_nw_src: key.ct_nw_src,
            ct_nw_dst: key.ct_nw_dst,
            ct_ipv6_src: key.ct_ipv6_src,
            ct_ipv6_dst: key.ct_ipv6_dst,
            ct_tp_src: key.ct_tp_src,
            ct_tp_dst: key.ct_tp_dst,
        }
    }

    /// Writes the metadata into `key`'s metadata fields.
    pub fn write_to(&self, key: &mut Flow) {
        key.in_port = self.in_port;
        key.skb_priority = self.skb_priority;
        key.pkt_mark = self.pkt_mark;
        key.recirc_id = self.recirc_id;
        key.dp_hash = self.dp_hash;
        key.set_tunnel_bytes(&self.tunnel);
        key.ct_state = self.ct_state;
        key.ct_zone = self.ct_zone;
        key.ct_mark = self.ct_mark;
        key.ct_label = self.ct_label;
        key.ct_nw_proto = self.ct_nw_proto;
        key.ct_nw_src = self.ct_nw_src;
        key.ct_nw_dst = self.ct_nw_dst;
        key.ct_ipv6_src = self.ct_ipv6_src;
        key.ct_ipv6_dst = self.ct_ipv6_dst;
        key.ct_tp_src = self.ct_tp_src;
        key.ct_tp_dst = self.ct_tp_dst;
    }

    /// A flow holding only this metadata: what a packet's headers are
    /// parsed into.
    pub fn to_flow(&self) -> Flow {
        let mut flow = Flow::default();
        self.write_to(&mut flow);
        flow
    }
}

/// A packet to run `actions` on, as if it arrived with `metadata`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execute {
    pub packet: Vec<u8>,
    pub metadata: PacketMetadata,
    pub actions: Arc<OdpActions>,
    /// As [`Upcall::mru`]: the packet's upcall's, or 0.
    pub mru: u16,
}

/// One datapath operation. Puts and executes are boxed: an op moves
/// several times on its way (handler, writer queue, batch, datapath), and
/// the boxes are filled again rather than allocated per upcall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DpifOp {
    FlowPut(Box<FlowPut>),
    FlowDel { ufid: Ufid },
    Execute(Box<Execute>),
}

impl DpifOp {
    pub fn put(put: FlowPut) -> Self {
        DpifOp::FlowPut(Box::new(put))
    }
}

/// A flow installed in the datapath, as a dump returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DpFlow {
    pub ufid: Ufid,
    pub key: Flow,
    pub mask: FlowWildcards,
    pub actions: OdpActions,
    pub stats: FlowStats,
}
