//! The embedded userspace datapath (the default backend): ports, a megaflow
//! cache with an exact-match cache in front, execution of datapath actions
//! on frames, and a bounded upcall queue.
//!
//! Each port with input has one receive thread. A frame is parsed into its
//! flow key, looked up (exact-match cache, then the megaflows), and either
//! run through the megaflow's actions (a hit) or queued as an upcall (a
//! miss; counted as lost when the queue is full). Replay ports wait for room
//! instead of losing packets: a file is not a live link.
//!
//! The parts: [`receive`] (the receive loops: lookup, hits, misses),
//! [`egress`] (actions on frames), [`conntrack`] (the connection tracker
//! that `ct` actions use), [`dpif`] (the `Dpif` calls),
//! [`flow_table`] (the megaflows and the exact-match cache), [`port`] (port
//! I/O), [`upcall_queue`]; this file holds the datapath's state.

pub mod conntrack;
mod dpif;
mod egress;
mod flow_table;
mod meters;
mod port;
mod receive;
#[cfg(test)]
mod tests;
mod tunnel;
mod upcall_queue;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use messages::dpif::{
    monotonic_ms, DpFlow, DpStats, Dpif, DpifError, DpifOp, Execute, FlowPut, FlowStats,
    PacketMetadata, PortInfo, PortKind, PortSpec, PortStats, PutMode, Ufid, Upcall, UpcallKind,
};
use messages::execute::{apply_set_masked, pop_mpls, pop_vlan, push_mpls, push_vlan, set_mpls};
use messages::extract::{flow_extract, flow_extract_into};
use messages::hash::key_ufid;
use messages::odp::{OdpAction, OdpActions, SetHeader};
use messages::threads::start_thread_as;
use messages::Flow;
use parking_lot::{Mutex, RwLock};

use conntrack::{Conntrack, ConntrackConfig, CtCommand, CtMetadata};
use flow_table::FlowEntry;
pub use flow_table::{Emc, FlowTable, PutError};
use port::PortCounters;
pub use port::{parse_tsv, read_replay_file, PortIo, ReplayError, ReplayFrame, MAX_FRAME};
use upcall_queue::UpcallQueue;

use egress::{Egress, Known};
use receive::*;

/// Sizes of the userspace datapath.
#[derive(Clone, Debug)]
pub struct NetdevConfig {
    /// Upcall queues, one per receiver (the `queue` of `recv_upcalls`).
    pub n_upcall_queues: usize,
    /// Upcalls each queue holds before misses are lost.
    pub upcall_queue_len: usize,
    /// Hard limit on installed megaflows.
    pub max_flows: usize,
    /// Entries of each receive loop's exact-match cache.
    pub emc_entries: usize,
    /// A megaflow hit is cached in the exact-match cache one time in this
    /// many (OVS's `emc-insert-inv-prob`); 0 turns the cache off.
    pub emc_insert_inv_prob: u32,
    /// CPUs the port threads may run on (empty: any).
    pub rx_cpus: Vec<usize>,
    /// The connection tracker's limits and timeouts.
    pub conntrack: ConntrackConfig,
}

impl Default for NetdevConfig {
    fn default() -> Self {
        NetdevConfig {
            n_upcall_queues: 1,
            upcall_queue_len: 4096,
            max_flows: 200_000,
            emc_entries: 8192,
            emc_insert_inv_prob: 100,
            rx_cpus: Vec::new(),
            conntrack: ConntrackConfig::default(),
        }
    }
}

struct Port {
    info: PortInfo,
    io: PortIo,
    counters: PortCounters,
    added: std::time::Instant,
}

/// The state shared by the receive threads and the `Dpif` calls.
struct Core {
    flows: RwLock<FlowTable>,
    ports: RwLock<BTreeMap<u32, Arc<Port>>>,
    queues: Vec<UpcallQueue>,
    n_hit: AtomicU64,
    n_missed: AtomicU64,
    n_lost: AtomicU64,
    /// Installed megaflows, kept beside the table so that reading the
    /// datapath's counters takes no lock.
    n_flows: AtomicU64,
    /// Frames read from replay files so far.
    n_replayed: AtomicU64,
    /// Frames output to ports that do not exist.
    n_tx_no_port: AtomicU64,
    /// Frames dropped because an action did not apply to them.
    n_exec_errors: AtomicU64,
    /// Frames dropped for recirculating too often.
    n_recirc_too_deep: AtomicU64,
    emc_entries: usize,
    emc_insert_inv_prob: u32,
    rx_cpus: Vec<usize>,
    conntrack: Arc<Conntrack>,
    meters: meters::Meters,
    /// Frames a meter's band dropped.
    n_metered: AtomicU64,
}

/// A port's receive thread and the flag that stops it.
struct RxThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

/// The userspace datapath.
pub struct Netdev {
    core: Arc<Core>,
    rx_threads: Mutex<BTreeMap<u32, RxThread>>,
    /// The thread purging fragment lists nothing sent on, and the sender
    /// whose drop stops it.
    fragment_cleaner: Mutex<Option<(std::sync::mpsc::Sender<()>, JoinHandle<()>)>>,
    closed: AtomicBool,
}

/// How often the fragment cleaner looks for lists to purge. OVS's clean
/// thread wakes each minute; a second keeps fragments held no longer
/// than their purge time says, at the cost of a look at one counter.
const FRAGMENT_CLEAN_INTERVAL: Duration = Duration::from_secs(1);

/// Starts the thread that purges `conntrack`'s stale fragment lists (see
/// [`conntrack::ipf::Ipf::purge`]); it stops when the sender is dropped.
fn start_fragment_cleaner(
    conntrack: Arc<Conntrack>,
) -> (std::sync::mpsc::Sender<()>, JoinHandle<()>) {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("ipf-clean".into())
        .spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                stopped.recv_timeout(FRAGMENT_CLEAN_INTERVAL)
            {
                let n = conntrack.fragments.purge(monotonic_ms());
                if n > 0 {
                    tracing::debug!(fragments = n, "purged fragments of lists nothing sent on");
                }
            }
        })
        .expect("spawning the fragment cleaner");
    (stop, handle)
}

impl Netdev {
    pub fn new(config: NetdevConfig) -> Self {
        let queues = (0..config.n_upcall_queues.max(1))
            .map(|_| UpcallQueue::new(config.upcall_queue_len, UPCALL_BURST))
            .collect();
        let conntrack = Arc::new(Conntrack::new(config.conntrack));
        let cleaner = start_fragment_cleaner(conntrack.clone());
        Netdev {
            core: Arc::new(Core {
                flows: RwLock::new(FlowTable::new(config.max_flows)),
                ports: RwLock::new(BTreeMap::new()),
                queues,
                n_hit: AtomicU64::new(0),
                n_missed: AtomicU64::new(0),
                n_lost: AtomicU64::new(0),
                n_flows: AtomicU64::new(0),
                n_replayed: AtomicU64::new(0),
                n_tx_no_port: AtomicU64::new(0),
                n_exec_errors: AtomicU64::new(0),
                n_recirc_too_deep: AtomicU64::new(0),
                emc_entries: config.emc_entries,
                emc_insert_inv_prob: config.emc_insert_inv_prob,
                rx_cpus: config.rx_cpus,
                conntrack,
                meters: meters::Meters::default(),
                n_metered: AtomicU64::new(0),
            }),
            rx_threads: Mutex::new(BTreeMap::new()),
            fragment_cleaner: Mutex::new(Some(cleaner)),
            closed: AtomicBool::new(false),
        }
    }

    /// Feeds `frames` into the datapath from the calling thread, as a replay
    /// port does (waiting for room in the upcall queue rather than losing).
    pub fn inject(&self, frames: &[ReplayFrame], default_port: u32) {
        self.injector(default_port).inject(frames);
    }

    /// A port that the calling thread drives: each [`Injector::inject`]
    /// feeds frames as a replay port does, and the injector keeps its
    /// receive state (its exact-match cache) from one call to the next,
    /// as a port's receive thread keeps its own.
    pub fn injector(&self, default_port: u32) -> Injector<'_> {
        Injector {
            netdev: self,
            default_port,
            rx: self.core.rx_state(),
        }
    }

    /// The connection tracker that `ct` actions use.
    pub fn conntrack(&self) -> &Arc<Conntrack> {
        &self.core.conntrack
    }

    /// Frames read from replay files and injected so far.
    pub fn n_replayed(&self) -> u64 {
        self.core.n_replayed.load(Ordering::Relaxed)
    }

    /// Frames dropped on output: to ports that do not exist, and because an
    /// action did not apply to them.
    pub fn tx_drops(&self) -> (u64, u64) {
        (
            self.core.n_tx_no_port.load(Ordering::Relaxed),
            self.core.n_exec_errors.load(Ordering::Relaxed),
        )
    }

    /// Each tunnel vport's drop counters, by vport name: what its
    /// receive dropped (malformed headers, unknown critical Geneve
    /// options) and its sends (no remote, host refused).
    pub fn tunnel_drops(&self) -> Vec<(String, [(&'static str, u64); 4])> {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.core
            .ports
            .read()
            .values()
            .filter_map(|p| match &p.io {
                PortIo::Tunnel(v) => Some((
                    p.info.name.clone(),
                    [
                        ("rx_malformed", get(&v.counters.rx_malformed)),
                        (
                            "rx_unknown_critical_option",
                            get(&v.counters.rx_unknown_critical),
                        ),
                        ("tx_no_remote", get(&v.counters.tx_no_remote)),
                        ("tx_unreachable", get(&v.counters.tx_unreachable)),
                    ],
                )),
                _ => None,
            })
            .collect()
    }

    /// Packets dropped for recirculating more often than OVS allows (6).
    pub fn recirc_too_deep(&self) -> u64 {
        self.core.n_recirc_too_deep.load(Ordering::Relaxed)
    }

    /// Upcalls waiting in the queues.
    pub fn n_queued_upcalls(&self) -> usize {
        self.core.queues.iter().map(UpcallQueue::len).sum()
    }

    /// Number of distinct masks among the installed megaflows.
    pub fn n_masks(&self) -> usize {
        self.core.flows.read().n_masks()
    }

    /// Packets sent out of each port so far, by port number.
    pub fn tx_packets(&self) -> BTreeMap<u32, u64> {
        self.core
            .ports
            .read()
            .iter()
            .map(|(n, p)| (*n, p.counters.tx_packets.load(Ordering::Relaxed)))
            .collect()
    }

    /// Stops every receive thread and removes every port.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        let threads = std::mem::take(&mut *self.rx_threads.lock());
        for (_, t) in threads {
            t.stop.store(true, Ordering::Relaxed);
            let _ = t.handle.join();
        }
        if let Some((stop, handle)) = self.fragment_cleaner.lock().take() {
            drop(stop);
            let _ = handle.join();
        }
        self.core.ports.write().clear();
    }

    fn start_rx(&self, port: Arc<Port>, replay: Option<PathBuf>) {
        let stop = Arc::new(AtomicBool::new(false));
        let core = self.core.clone();
        let stop2 = stop.clone();
        let number = port.info.number;
        let name = format!("rx-{}", port.info.name);
        let handle = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                if let Err(e) = start_thread_as(&name, &core.rx_cpus) {
                    tracing::warn!(thread = name, cpus = ?core.rx_cpus, error = %e, "could not pin thread; it runs unpinned");
                }
                match replay {
                    Some(path) => core.replay_loop(number, &path, &stop2),
                    None => core.rx_loop(&port, &stop2),
                }
            })
            .expect("spawning a port thread");
        self.rx_threads
            .lock()
            .insert(number, RxThread { stop, handle });
    }
}

/// See [`Netdev::injector`].
pub struct Injector<'a> {
    netdev: &'a Netdev,
    default_port: u32,
    rx: RxState,
}

impl Injector<'_> {
    /// Feeds `frames` (waiting for room in the upcall queue rather than
    /// losing upcalls); frames without an input port arrive on the
    /// injector's default port.
    pub fn inject(&mut self, frames: &[ReplayFrame]) {
        let netdev = self.netdev;
        let running = || !netdev.closed.load(Ordering::Relaxed);
        netdev.core.replay(
            frames.iter().cloned(),
            self.default_port,
            &mut self.rx,
            &running,
            &netdev.closed,
        );
    }
}

impl Drop for Netdev {
    fn drop(&mut self) {
        self.close();
    }
}
