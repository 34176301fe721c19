//! The embedded userspace datapath (the default backend): ports, a megaflow
//! cache with an exact-match cache in front, execution of datapath actions
//! on frames, and a bounded upcall queue.
//!
//! Each port with input has one receive thread. A frame is parsed into its
//! flow key, looked up (exact-match cache, then the megaflows), and either
//! run through the megaflow's actions (a hit) or queued as an upcall (a
//! miss; counted as lost when the queue is full). Replay ports wait for room
//! instead of losing packets: a file is not a live link.

mod flow_table;
mod port;
mod upcall_queue;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use actors::threads::start_thread_as;
use messages::dpif::{
    monotonic_ms, DpFlow, DpStats, Dpif, DpifError, DpifOp, Execute, FlowPut, FlowStats,
    PacketMetadata, PortInfo, PortKind, PortSpec, PutMode, Ufid, Upcall, UpcallKind,
};
use messages::execute::{apply_set_masked, pop_vlan, push_vlan, ExecuteError};
use messages::extract::{flow_extract, flow_extract_into};
use messages::hash::key_ufid;
use messages::odp::{OdpAction, OdpActions, SetHeader};
use messages::Flow;
use parking_lot::{Mutex, RwLock};

use flow_table::FlowEntry;
pub use flow_table::{Emc, FlowTable, PutError};
pub use port::{parse_tsv, read_replay_file, ReplayError, ReplayFrame};
use port::{PortCounters, PortIo};
use upcall_queue::UpcallQueue;

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
        }
    }
}

struct Port {
    info: PortInfo,
    io: PortIo,
    counters: PortCounters,
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
    emc_entries: usize,
    emc_insert_inv_prob: u32,
    rx_cpus: Vec<usize>,
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
    closed: AtomicBool,
}

impl Netdev {
    pub fn new(config: NetdevConfig) -> Self {
        let queues = (0..config.n_upcall_queues.max(1))
            .map(|_| UpcallQueue::new(config.upcall_queue_len, UPCALL_BURST))
            .collect();
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
                emc_entries: config.emc_entries,
                emc_insert_inv_prob: config.emc_insert_inv_prob,
                rx_cpus: config.rx_cpus,
            }),
            rx_threads: Mutex::new(BTreeMap::new()),
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
                start_thread_as(&name, &core.rx_cpus);
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

/// The ufid of an upcall not computed yet. A receive thread leaves it to
/// the thread that reads the upcall, so that hashing the key does not slow
/// the packet path; a key whose ufid is this value is merely hashed again.
const UFID_LATER: Ufid = 0;

/// Frames processed together (OVS's `NETDEV_MAX_BURST`).
const BURST: usize = 32;

/// Most misses queued as one burst: what a receiver reads at once. A
/// receive loop holds its misses over the next input burst while that
/// still fits, so that a reader takes one whole burst by swapping buffers
/// instead of copying a second one after the first; it never holds them
/// while waiting for input.
const UPCALL_BURST: usize = messages::dpif::UPCALL_MAX_BATCH;

/// Frames read but not yet processed, with their input ports.
type Burst = Vec<(u32, Vec<u8>)>;

/// Whether a receive loop may block waiting for the next frame: only with
/// nothing read and no misses held (held misses would wait for the next
/// input too, up to a poll interval).
fn may_wait(burst: &Burst, rx: &RxState) -> bool {
    burst.is_empty() && rx.misses.is_empty()
}

/// What a receive thread keeps from one burst to the next: its exact-match
/// cache, and the burst's keys, lookup results and upcalls, whose buffers
/// are reused rather than allocated per burst.
struct RxState {
    emc: Emc,
    keys: Vec<Flow>,
    found: Vec<Option<Arc<FlowEntry>>>,
    /// Whether `found[i]` came from the exact-match cache.
    from_emc: Vec<bool>,
    misses: Vec<Upcall>,
}

impl RxState {
    fn new(emc: Emc) -> Self {
        RxState {
            emc,
            keys: Vec::with_capacity(BURST),
            found: Vec::with_capacity(BURST),
            from_emc: Vec::with_capacity(BURST),
            misses: Vec::with_capacity(UPCALL_BURST),
        }
    }
}

impl Core {
    /// A receive loop's state, with its own exact-match cache.
    fn rx_state(&self) -> RxState {
        RxState::new(Emc::new(self.emc_entries, self.emc_insert_inv_prob))
    }

    fn rx_loop(&self, port: &Port, stop: &AtomicBool) {
        let mut rx = self.rx_state();
        let mut burst: Burst = Vec::with_capacity(BURST);
        let mut buf = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            // Wait for one frame, then take whatever else is already there;
            // held misses are queued at once when no frame is there.
            while burst.len() < BURST {
                match port.io.recv(&mut buf, may_wait(&burst, &rx)) {
                    Ok(true) => burst.push((port.info.number, std::mem::take(&mut buf))),
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(port = %port.info.name, error = %e, "receive failed; port stops reading");
                        return;
                    }
                }
            }
            port.counters
                .rx_packets
                .fetch_add(burst.len() as u64, Ordering::Relaxed);
            // A full burst may have more input right behind it.
            let more_input = burst.len() == BURST;
            self.receive(&mut burst, &mut rx);
            self.queue_misses(&mut rx, more_input, &|| false);
        }
    }

    fn replay_loop(&self, number: u32, path: &std::path::Path, stop: &AtomicBool) {
        let frames = match read_replay_file(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "replay file unreadable");
                return;
            }
        };
        tracing::info!(port = number, frames = frames.len(), path = %path.display(), "replaying");
        let keep_waiting = || !stop.load(Ordering::Relaxed);
        self.replay(frames, number, &mut self.rx_state(), &keep_waiting, stop);
    }

    /// Feeds frames in bursts, waiting for room in the upcall queue.
    fn replay(
        &self,
        frames: impl IntoIterator<Item = ReplayFrame>,
        default_port: u32,
        rx: &mut RxState,
        keep_waiting: &dyn Fn() -> bool,
        stop: &AtomicBool,
    ) {
        let mut burst: Burst = Vec::with_capacity(BURST);
        let mut frames = frames.into_iter().peekable();
        while !stop.load(Ordering::Relaxed) {
            burst.extend(
                frames
                    .by_ref()
                    .take(BURST)
                    .map(|f| (f.in_port.unwrap_or(default_port), f.frame)),
            );
            if burst.is_empty() {
                return;
            }
            let n = burst.len() as u64;
            self.receive(&mut burst, rx);
            let more_input = frames.peek().is_some();
            self.queue_misses(rx, more_input, keep_waiting);
            self.n_replayed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The fast path for a burst of frames (emptied): hits run their
    /// megaflow's actions, misses join `rx.misses` (see
    /// [`Core::queue_misses`]).
    fn receive(&self, burst: &mut Burst, rx: &mut RxState) {
        if burst.is_empty() {
            return;
        }
        let now = monotonic_ms();
        let RxState {
            emc,
            keys,
            found,
            from_emc,
            misses,
        } = rx;
        // Extracted in place: the buffer keeps its keys between bursts.
        keys.resize(keys.len().max(burst.len()), Flow::default());
        keys.truncate(burst.len());
        let mut md = Flow::default();
        for ((in_port, frame), key) in burst.iter().zip(keys.iter_mut()) {
            md.in_port = *in_port;
            flow_extract_into(frame, &md, key);
        }
        found.clear();
        found.extend(keys.iter().map(|k| emc.lookup(k)));
        from_emc.clear();
        from_emc.extend(found.iter().map(Option::is_some));
        self.flows.read().lookup_burst(keys, found);
        let mut n_hit = 0;
        credit_hits(burst, keys, found, now);
        let mut egress = Egress::new(self);
        for (i, (_, mut frame)) in burst.drain(..).enumerate() {
            let key = &keys[i];
            match found[i].take() {
                Some(e) => {
                    if !from_emc[i] {
                        emc.maybe_insert(key, &e);
                    }
                    egress.execute(&mut frame, Known::Key(key), &e.actions);
                    n_hit += 1;
                }
                None => misses.push(Upcall {
                    kind: UpcallKind::Miss,
                    packet: frame,
                    // Filled in by the reader (see `recv_upcalls`).
                    ufid: UFID_LATER,
                    key: *key,
                }),
            }
        }
        self.n_hit.fetch_add(n_hit, Ordering::Relaxed);
    }

    /// Queues the misses held in `rx` as upcalls, waiting for room as long
    /// as `keep_waiting` says so; while `more_input` is right behind and
    /// another input burst's misses would still fit in one upcall burst,
    /// holds them instead.
    fn queue_misses(&self, rx: &mut RxState, more_input: bool, keep_waiting: &dyn Fn() -> bool) {
        let misses = &mut rx.misses;
        if misses.is_empty() || (more_input && misses.len() + BURST <= UPCALL_BURST) {
            return;
        }
        self.n_missed
            .fetch_add(misses.len() as u64, Ordering::Relaxed);
        self.queue_upcalls(misses, keep_waiting);
    }

    fn queue_upcalls(&self, upcalls: &mut Vec<Upcall>, keep_waiting: &dyn Fn() -> bool) {
        let lost = if self.queues.len() == 1 {
            self.queues[0].push(upcalls, keep_waiting)
        } else {
            // The queue follows from the ufid, needed here after all.
            for u in upcalls.iter_mut() {
                u.ufid = key_ufid(&u.key);
            }
            let mut lost = 0;
            for (i, q) in self.queues.iter().enumerate() {
                let n = self.queues.len() as u128;
                let (mut mine, rest): (Vec<Upcall>, Vec<Upcall>) =
                    upcalls.drain(..).partition(|u| (u.ufid % n) as usize == i);
                *upcalls = rest;
                lost += q.push(&mut mine, keep_waiting);
            }
            lost
        };
        self.n_lost.fetch_add(lost as u64, Ordering::Relaxed);
    }
}

/// Credits a burst's hits to their megaflows before the packets run, as
/// OVS does, once per run of hits on one megaflow: the packets of a flow
/// tend to arrive together, and each credit costs the megaflow three
/// atomic operations (OVS batches a burst's packets per flow for the same
/// reason).
fn credit_hits(burst: &Burst, keys: &[Flow], found: &[Option<Arc<FlowEntry>>], now_ms: u64) {
    let mut i = 0;
    while i < found.len() {
        let Some(flow) = &found[i] else {
            i += 1;
            continue;
        };
        let (mut packets, mut bytes, mut tcp_flags) = (0, 0, 0);
        while let Some(Some(next)) = found.get(i) {
            if !Arc::ptr_eq(next, flow) {
                break;
            }
            packets += 1;
            bytes += burst[i].1.len() as u64;
            tcp_flags |= keys[i].tcp_flags;
            i += 1;
        }
        flow.hit(packets, bytes, now_ms, tcp_flags);
    }
}

/// What running actions on a burst of packets needs at hand: the ports,
/// read-locked at the burst's first output and held for the rest of it (a
/// lookup per output would take and release the lock, and count a
/// reference, per packet), and the drop counts, added to the datapath's
/// once at the end.
struct Egress<'a> {
    core: &'a Core,
    ports: Option<parking_lot::RwLockReadGuard<'a, BTreeMap<u32, Arc<Port>>>>,
    no_port: u64,
    errors: u64,
}

impl<'a> Egress<'a> {
    fn new(core: &'a Core) -> Self {
        Egress {
            core,
            ports: None,
            no_port: 0,
            errors: 0,
        }
    }

    fn port(&mut self, number: u32) -> Option<&Arc<Port>> {
        let core = self.core;
        self.ports
            .get_or_insert_with(|| core.ports.read())
            .get(&number)
    }

    /// Runs datapath actions on a frame, known by its parsed key (a hit) or
    /// by its metadata alone (an execute).
    fn execute(&mut self, frame: &mut Vec<u8>, mut known: Known<'_>, actions: &OdpActions) {
        for action in actions {
            let applied = match action {
                OdpAction::Output(port) => {
                    match self.port(*port) {
                        Some(p) => p.counters.count_tx(&p.io.send(frame)),
                        None => self.no_port += 1,
                    }
                    Ok(())
                }
                OdpAction::Userspace { userdata, .. } => {
                    let upcall = Upcall {
                        kind: UpcallKind::Action {
                            userdata: userdata.clone(),
                        },
                        packet: frame.clone(),
                        ufid: UFID_LATER,
                        key: known.key(frame),
                    };
                    self.core.queue_upcalls(&mut vec![upcall], &|| false);
                    Ok(())
                }
                OdpAction::SetMasked(SetHeader::SkbPriority { key: v, mask }) => {
                    let md = known.metadata_mut();
                    md.skb_priority = (md.skb_priority & !mask) | (v & mask);
                    Ok(())
                }
                OdpAction::SetMasked(SetHeader::SkbMark { key: v, mask }) => {
                    let md = known.metadata_mut();
                    md.pkt_mark = (md.pkt_mark & !mask) | (v & mask);
                    Ok(())
                }
                OdpAction::SetMasked(header) => {
                    known.headers_changed();
                    apply_set_masked(frame, header)
                }
                OdpAction::PushVlan { tpid, tci } => {
                    known.headers_changed();
                    push_vlan(frame, *tpid, *tci)
                }
                OdpAction::PopVlan => {
                    known.headers_changed();
                    pop_vlan(frame)
                }
                OdpAction::Ct(_) => Err(ExecuteError::Unsupported { action: "ct" }),
                OdpAction::CtClear => Err(ExecuteError::Unsupported { action: "ct_clear" }),
                OdpAction::Recirc(_) => Err(ExecuteError::Unsupported { action: "recirc" }),
            };
            if let Err(e) = applied {
                self.errors += 1;
                tracing::debug!(error = %e, "action not applicable; packet dropped");
                return;
            }
        }
    }
}

impl Drop for Egress<'_> {
    fn drop(&mut self) {
        if self.no_port > 0 {
            self.core
                .n_tx_no_port
                .fetch_add(self.no_port, Ordering::Relaxed);
        }
        if self.errors > 0 {
            self.core
                .n_exec_errors
                .fetch_add(self.errors, Ordering::Relaxed);
        }
    }
}

/// What the datapath knows of a frame while running actions on it. Most
/// action lists only rewrite and output, so the flow key is worked out only
/// for an upcall: copied from a hit's key, or parsed from the frame.
enum Known<'a> {
    /// The frame's key, metadata included.
    Key(&'a Flow),
    /// The headers of the key, with metadata that actions changed.
    KeyWith(&'a Flow, PacketMetadata),
    /// The metadata only: the headers are the frame's.
    Metadata(PacketMetadata),
}

impl Known<'_> {
    fn metadata_mut(&mut self) -> &mut PacketMetadata {
        if let Known::Key(k) = *self {
            *self = Known::KeyWith(k, PacketMetadata::of(k));
        }
        match self {
            Known::KeyWith(_, md) | Known::Metadata(md) => md,
            Known::Key(_) => unreachable!("replaced above"),
        }
    }

    /// An action rewrote a header: the key no longer describes the frame.
    fn headers_changed(&mut self) {
        let md = match self {
            Known::Key(k) => PacketMetadata::of(k),
            Known::KeyWith(_, md) | Known::Metadata(md) => *md,
        };
        *self = Known::Metadata(md);
    }

    /// The frame's flow key now.
    fn key(&self, frame: &[u8]) -> Flow {
        match self {
            Known::Key(k) => **k,
            Known::KeyWith(k, md) => {
                let mut key = **k;
                md.write_to(&mut key);
                key
            }
            Known::Metadata(md) => flow_extract(frame, &md.to_flow()),
        }
    }
}

fn put_error(e: PutError) -> DpifError {
    DpifError::Refused(e.to_string())
}

impl Dpif for Netdev {
    fn kind(&self) -> &'static str {
        "userspace"
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
        let q = &self.core.queues[queue % self.core.queues.len()];
        let from = out.len();
        q.pop_batch(max, timeout, out);
        for up in &mut out[from..] {
            if up.ufid == UFID_LATER {
                up.ufid = key_ufid(&up.key);
            }
        }
        Ok(())
    }

    fn operate(&self, ops: &mut [DpifOp]) -> Vec<Result<(), DpifError>> {
        // Flow changes under one write lock; packets run after it.
        let mut results = Vec::with_capacity(ops.len());
        let mut n_executes = 0;
        {
            let mut flows = self.core.flows.write();
            for op in ops.iter() {
                let result = match op {
                    DpifOp::FlowPut(put) => {
                        let FlowPut {
                            ufid,
                            ref megaflow,
                            ref actions,
                            mode,
                            reset_stats,
                        } = **put;
                        match mode {
                            PutMode::Create => flows.create(ufid, megaflow, actions),
                            PutMode::Modify => flows.modify(ufid, actions, reset_stats),
                            PutMode::CreateOrModify if flows.get(ufid).is_some() => {
                                flows.modify(ufid, actions, reset_stats)
                            }
                            PutMode::CreateOrModify => flows.create(ufid, megaflow, actions),
                        }
                        .map_err(put_error)
                    }
                    DpifOp::FlowDel { ufid } => match flows.delete(*ufid) {
                        Some(_) => Ok(()),
                        None => Err(put_error(PutError::NoSuchFlow(*ufid))),
                    },
                    DpifOp::Execute(_) => {
                        n_executes += 1;
                        Ok(())
                    }
                };
                results.push(result);
            }
            self.core
                .n_flows
                .store(flows.len() as u64, Ordering::Relaxed);
        }
        if n_executes > 0 {
            let mut egress = Egress::new(&self.core);
            for op in ops.iter_mut() {
                if let DpifOp::Execute(e) = op {
                    let Execute {
                        packet,
                        metadata,
                        actions,
                    } = &mut **e;
                    egress.execute(packet, Known::Metadata(*metadata), actions);
                }
            }
        }
        results
    }

    fn flow_dump(&self) -> Result<Vec<DpFlow>, DpifError> {
        Ok(self.core.flows.read().dump())
    }

    fn flow_dump_terse(&self, out: &mut Vec<(Ufid, FlowStats)>) -> Result<(), DpifError> {
        // Under the table's read lock: a copy of two words and the
        // counters per flow, not a flow built in full.
        self.core.flows.read().dump_terse(out);
        Ok(())
    }

    fn flow_get(&self, ufid: Ufid) -> Result<Option<DpFlow>, DpifError> {
        Ok(self.core.flows.read().get_full(ufid))
    }

    fn stats(&self) -> DpStats {
        DpStats {
            n_hit: self.core.n_hit.load(Ordering::Relaxed),
            n_missed: self.core.n_missed.load(Ordering::Relaxed),
            n_lost: self.core.n_lost.load(Ordering::Relaxed),
            n_flows: self.core.n_flows.load(Ordering::Relaxed),
        }
    }

    fn port_add(&self, spec: &PortSpec) -> Result<u32, DpifError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(DpifError::Closed);
        }
        let mut ports = self.core.ports.write();
        if ports.values().any(|p| p.info.name == spec.name) {
            return Err(DpifError::Refused(format!(
                "port {:?} already exists",
                spec.name
            )));
        }
        let number = match spec.number {
            Some(n) if ports.contains_key(&n) => {
                return Err(DpifError::Refused(format!("port number {n} is taken")))
            }
            Some(n) => n,
            None => (1..)
                .find(|n| !ports.contains_key(n))
                .expect("a free port number"),
        };
        let (io, replay) = match &spec.kind {
            PortKind::System => (PortIo::open_packet(&spec.name)?, None),
            PortKind::Internal => (PortIo::open_tap(&spec.name)?, None),
            PortKind::Replay { path } => (PortIo::Replay, Some(path.clone())),
        };
        let port = Arc::new(Port {
            info: PortInfo {
                number,
                name: spec.name.clone(),
                kind: spec.kind.clone(),
            },
            io,
            counters: PortCounters::default(),
        });
        ports.insert(number, port.clone());
        drop(ports);
        self.start_rx(port, replay);
        tracing::info!(port = number, name = %spec.name, kind = ?spec.kind, "port added");
        Ok(number)
    }

    fn port_del(&self, number: u32) -> Result<(), DpifError> {
        let port = self.core.ports.write().remove(&number);
        if port.is_none() {
            return Err(DpifError::NoSuchPort(number));
        }
        if let Some(t) = self.rx_threads.lock().remove(&number) {
            t.stop.store(true, Ordering::Relaxed);
            let _ = t.handle.join();
        }
        Ok(())
    }

    fn ports(&self) -> Vec<PortInfo> {
        self.core
            .ports
            .read()
            .values()
            .map(|p| p.info.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::dpif::Execute;
    use messages::odp::PortsKey;
    use messages::Megaflow;

    /// An IPv4/TCP frame from 10.0.0.1:1000 to 10.0.0.2:80.
    fn tcp_frame() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        f.extend_from_slice(&[
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        f.extend_from_slice(&[
            0x03, 0xe8, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        f
    }

    #[test]
    fn miss_upcall_put_then_hit_with_stats() {
        let dp = Netdev::new(NetdevConfig::default());
        let sink = dp
            .port_add(&PortSpec {
                name: "sink".into(),
                kind: PortKind::Replay {
                    path: "/nonexistent".into(),
                },
                number: Some(2),
            })
            .unwrap();
        let frames = vec![ReplayFrame {
            in_port: Some(1),
            frame: tcp_frame(),
        }];
        dp.inject(&frames, 0);
        let mut ups = Vec::new();
        dp.recv_upcalls(0, 64, Duration::ZERO, &mut ups).unwrap();
        assert_eq!(ups.len(), 1);
        let up = ups.pop().unwrap();
        assert_eq!(
            (up.key.in_port, up.key.tp_dst, up.key.nw_dst),
            (1, 80, 0x0a00_0002)
        );
        // The ufid a reader gets is the key's.
        assert_eq!(up.ufid, key_ufid(&up.key));
        let mask = Flow {
            in_port: u32::MAX,
            dl_type: u16::MAX,
            ..Flow::default()
        };
        let actions = vec![OdpAction::Output(sink)];
        let results = dp.operate(&mut [
            DpifOp::put(FlowPut {
                ufid: 42,
                megaflow: Megaflow::new(&up.key, &mask),
                actions: actions.clone().into(),
                mode: PutMode::Create,
                reset_stats: false,
            }),
            DpifOp::Execute(Box::new(Execute {
                packet: up.packet,
                metadata: PacketMetadata::of(&up.key),
                actions: actions.into(),
            })),
        ]);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        dp.inject(&frames, 0);
        dp.inject(&frames, 0);
        let s = dp.stats();
        assert_eq!((s.n_hit, s.n_missed, s.n_lost, s.n_flows), (2, 1, 0, 1));
        assert_eq!(dp.tx_packets()[&sink], 3);
        dp.operate(&mut [DpifOp::Execute(Box::new(Execute {
            packet: tcp_frame(),
            metadata: PacketMetadata::of(&up.key),
            actions: vec![OdpAction::Output(99), OdpAction::PopVlan].into(),
        }))]);
        assert_eq!(dp.tx_drops(), (1, 1));
        let dump = dp.flow_dump().unwrap();
        assert_eq!(dump[0].stats.n_packets, 2);
        assert_eq!(dump[0].stats.n_bytes, 2 * 54);
        assert_eq!(dump[0].stats.tcp_flags, 0x02);
        assert!(dp.operate(&mut [DpifOp::FlowDel { ufid: 42 }])[0].is_ok());
        assert!(dp.operate(&mut [DpifOp::FlowDel { ufid: 42 }])[0].is_err());
        dp.inject(&frames, 0);
        assert_eq!(dp.stats().n_missed, 2);
    }

    #[test]
    fn userspace_actions_send_up_the_key_as_the_actions_left_it() {
        let dp = Netdev::new(NetdevConfig::default());
        let userspace = |tag: u8| OdpAction::Userspace {
            pid: 0,
            userdata: vec![tag],
        };
        let metadata = PacketMetadata {
            in_port: 7,
            pkt_mark: 1,
            ..PacketMetadata::default()
        };
        let ports = |tp_dst| PortsKey {
            src: 0,
            dst: tp_dst,
        };
        dp.operate(&mut [DpifOp::Execute(Box::new(Execute {
            packet: tcp_frame(),
            metadata,
            actions: vec![
                userspace(1),
                OdpAction::SetMasked(SetHeader::SkbMark {
                    key: 0x50,
                    mask: 0xf0,
                }),
                OdpAction::SetMasked(SetHeader::Tcp {
                    key: ports(443),
                    mask: ports(0xffff),
                }),
                userspace(2),
            ]
            .into(),
        }))]);
        let mut ups = Vec::new();
        dp.recv_upcalls(0, 64, Duration::ZERO, &mut ups).unwrap();
        let seen: Vec<_> = ups
            .iter()
            .map(|u| (u.kind.clone(), u.key.in_port, u.key.pkt_mark, u.key.tp_dst))
            .collect();
        let action = |tag| UpcallKind::Action {
            userdata: vec![tag],
        };
        assert_eq!(
            seen,
            [(action(1), 7, 1, 80), (action(2), 7, 0x51, 443)],
            "parsed from the frame with the metadata as it stood"
        );
        assert_eq!(ups[1].key.nw_dst, 0x0a00_0002);

        // A hit runs the same actions knowing the frame's key.
        let mut key = flow_extract(&tcp_frame(), &metadata.to_flow());
        key.pkt_mark = 1;
        let all = Flow {
            in_port: u32::MAX,
            ..Flow::default()
        };
        let actions: Vec<OdpAction> = vec![
            userspace(3),
            OdpAction::SetMasked(SetHeader::SkbMark {
                key: 0x50,
                mask: 0xf0,
            }),
            userspace(4),
        ];
        dp.operate(&mut [DpifOp::put(FlowPut {
            ufid: 1,
            megaflow: Megaflow::new(&key, &all),
            actions: actions.into(),
            mode: PutMode::Create,
            reset_stats: false,
        })]);
        dp.inject(
            &[ReplayFrame {
                in_port: Some(7),
                frame: tcp_frame(),
            }],
            0,
        );
        ups.clear();
        dp.recv_upcalls(0, 64, Duration::ZERO, &mut ups).unwrap();
        let seen: Vec<_> = ups
            .iter()
            .map(|u| (u.kind.clone(), u.key.pkt_mark, u.key.tp_dst))
            .collect();
        assert_eq!(seen, [(action(3), 0, 80), (action(4), 0x50, 80)]);
    }

    #[test]
    fn a_bursts_hits_are_credited_to_their_megaflows() {
        let dp = Netdev::new(NetdevConfig::default());
        let by_port = Flow {
            in_port: u32::MAX,
            ..Flow::default()
        };
        for port in [1, 2] {
            let key = Flow {
                in_port: port,
                ..Flow::default()
            };
            dp.operate(&mut [DpifOp::put(FlowPut {
                ufid: port as Ufid,
                megaflow: Megaflow::new(&key, &by_port),
                actions: Arc::new(OdpActions::new()),
                mode: PutMode::Create,
                reset_stats: false,
            })]);
        }
        let frame = |port, len| ReplayFrame {
            in_port: Some(port),
            frame: {
                let mut f = tcp_frame();
                f.resize(len, 0);
                f
            },
        };
        // Runs of one flow, broken by another, in one burst.
        dp.inject(&[frame(1, 60), frame(1, 70), frame(2, 80), frame(1, 90)], 0);
        let stats: BTreeMap<Ufid, (u64, u64)> = dp
            .flow_dump()
            .unwrap()
            .iter()
            .map(|f| (f.ufid, (f.stats.n_packets, f.stats.n_bytes)))
            .collect();
        assert_eq!(stats[&1], (3, 220));
        assert_eq!(stats[&2], (1, 80));
        assert_eq!(dp.stats().n_hit, 4);
    }

    #[test]
    fn full_upcall_queue_loses_and_counts() {
        let dp = Netdev::new(NetdevConfig {
            upcall_queue_len: 1,
            ..NetdevConfig::default()
        });
        let mut rx = RxState::new(Emc::new(4, 1));
        let mut burst: Burst = (0..3).map(|_| (1, tcp_frame())).collect();
        dp.core.receive(&mut burst, &mut rx);
        dp.core.queue_misses(&mut rx, false, &|| false);
        let s = dp.stats();
        assert_eq!((s.n_missed, s.n_lost), (3, 2));
    }

    #[test]
    fn a_receive_loop_holding_misses_does_not_wait_for_input() {
        let dp = Netdev::new(NetdevConfig::default());
        let mut rx = dp.core.rx_state();
        assert!(may_wait(&Vec::new(), &rx));
        let mut burst: Burst = (0..BURST).map(|_| (1, tcp_frame())).collect();
        dp.core.receive(&mut burst, &mut rx);
        dp.core.queue_misses(&mut rx, true, &|| false);
        assert_eq!(dp.n_queued_upcalls(), 0, "held for more input");
        assert!(!may_wait(&Vec::new(), &rx));
        // No frame came: the empty burst queues them.
        dp.core.receive(&mut Vec::new(), &mut rx);
        dp.core.queue_misses(&mut rx, false, &|| false);
        assert_eq!(dp.n_queued_upcalls(), BURST);
        assert!(may_wait(&Vec::new(), &rx));
    }

    #[test]
    fn misses_wait_for_the_next_input_burst_only_while_it_fits() {
        let dp = Netdev::new(NetdevConfig::default());
        let mut rx = RxState::new(Emc::new(4, 1));
        let mut burst: Burst = (0..BURST).map(|_| (1, tcp_frame())).collect();
        dp.core.receive(&mut burst, &mut rx);
        dp.core.queue_misses(&mut rx, true, &|| false);
        assert_eq!(dp.n_queued_upcalls(), 0, "held for the next input burst");
        let mut burst: Burst = (0..BURST).map(|_| (1, tcp_frame())).collect();
        dp.core.receive(&mut burst, &mut rx);
        dp.core.queue_misses(&mut rx, true, &|| false);
        assert_eq!(dp.n_queued_upcalls(), 2 * BURST, "a third would not fit");
        let mut burst: Burst = vec![(1, tcp_frame())];
        dp.core.receive(&mut burst, &mut rx);
        dp.core.queue_misses(&mut rx, false, &|| false);
        assert_eq!(dp.n_queued_upcalls(), 2 * BURST + 1, "no input behind it");
        assert_eq!(dp.stats().n_missed, 2 * BURST as u64 + 1);
        let mut out = Vec::new();
        dp.recv_upcalls(0, UPCALL_BURST, Duration::ZERO, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2 * BURST, "one upcall burst, whole");
    }
}
