//! The datapath interface the actors talk to. Both backends implement it:
//! the embedded userspace datapath and the Linux kernel datapath.
//!
//! Calls are blocking and thread-safe: the receiver reads upcalls on its
//! own thread; the dpif-writer and revalidators call `operate` and
//! `flow_dump` from theirs.

use std::time::Duration;

use messages::dpif::{DpFlow, DpifOp, Upcall};

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

/// A datapath.
pub trait Dpif: Send + Sync + 'static {
    /// A short name for logs and metrics ("userspace", "kernel").
    fn kind(&self) -> &'static str;

    /// Waits up to `timeout` for upcalls meant for `handler` and appends at
    /// most `max` of them to `out`. Returning with none is not an error.
    fn recv_upcalls(
        &self,
        handler: usize,
        max: usize,
        timeout: Duration,
        out: &mut Vec<Upcall>,
    ) -> Result<(), DpifError>;

    /// Carries out a batch of operations; one result per op, in order.
    fn operate(&self, ops: Vec<DpifOp>) -> Vec<Result<(), DpifError>>;

    /// Every installed flow with its statistics.
    fn flow_dump(&self) -> Result<Vec<DpFlow>, DpifError>;

    fn stats(&self) -> DpStats;

    fn port_add(&self, spec: &PortSpec) -> Result<u32, DpifError>;
    fn port_del(&self, number: u32) -> Result<(), DpifError>;
    fn ports(&self) -> Vec<PortInfo>;
}
