//! What crosses the datapath interface: upcalls coming up, flow operations
//! going down, and flows dumped with their statistics. Shared by every
//! datapath backend (the embedded userspace datapath, the kernel's).

use std::sync::Arc;

use crate::flow::{Flow, FlowWildcards};
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
            self.0 = (self.0.rotate_left(8) ^ *b as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let h = ((v >> 64) as u64 ^ v as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 32);
    }
}

/// A map keyed by ufid.
pub type UfidMap<V> = std::collections::HashMap<Ufid, V, std::hash::BuildHasherDefault<UfidHasher>>;
/// A set of ufids.
pub type UfidSet = std::collections::HashSet<Ufid, std::hash::BuildHasherDefault<UfidHasher>>;

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

/// A packet to run `actions` on, as if it arrived with metadata `key`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Execute {
    pub packet: Vec<u8>,
    pub key: Flow,
    pub actions: Arc<OdpActions>,
}

/// One datapath operation. Puts and executes are boxed: an op moves
/// several times on its way (handler, writer queue, batch, datapath),
/// while a flow key takes over 500 bytes.
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
