//! The pipeline's counters: written by the actors, read by `upcall-show`,
//! the metrics exporter and the benchmark. Plain atomics, so counting costs
//! no message and reading never waits on an actor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Why an upcall was not installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// The datapath holds as many flows as the flow limit allows: the
    /// packet is executed but no megaflow is installed.
    FlowLimit,
    /// A `userspace` action upcall: there is no controller to send it to.
    NoController,
    /// A `controller` action's packet whose recirculation id names no
    /// frozen state (the rule behind it is gone): OVS drops it too.
    NoRecircContext,
    /// Lost with a batch whose handler panicked.
    HandlerPanic,
    /// Its handler was gone.
    HandlerGone,
}

impl DropReason {
    pub const ALL: [DropReason; 5] = [
        DropReason::FlowLimit,
        DropReason::NoController,
        DropReason::NoRecircContext,
        DropReason::HandlerPanic,
        DropReason::HandlerGone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DropReason::FlowLimit => "flow_limit",
            DropReason::NoController => "no_controller",
            DropReason::NoRecircContext => "no_recirc_context",
            DropReason::HandlerPanic => "handler_panic",
            DropReason::HandlerGone => "handler_gone",
        }
    }
}

/// The actors whose restarts are counted.
pub const ACTORS: [&str; 5] = [
    "receiver",
    "handler",
    "dpif_writer",
    "rule_table",
    "revalidator",
];

#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Upcalls read from the datapath.
    pub upcalls_received: AtomicU64,
    /// Upcalls translated by a handler.
    pub upcalls_handled: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    /// Upcalls whose megaflow was already installed or on its way.
    pub duplicate_upcalls: AtomicU64,
    /// Ukeys dropped because dumps no longer showed their flows (deleted
    /// behind upcalld's back).
    pub ukeys_missing: AtomicU64,
    /// Flow puts (creations) that reached the datapath and succeeded.
    pub flow_puts: AtomicU64,
    /// Flow modifications that succeeded.
    pub flow_modifies: AtomicU64,
    /// Flow deletions that succeeded.
    pub flow_deletes: AtomicU64,
    /// Datapath operations refused by the datapath.
    pub op_errors: AtomicU64,
    /// Of those, puts, deletes and executes (the rest: modifies).
    pub put_errors: AtomicU64,
    pub delete_errors: AtomicU64,
    pub execute_errors: AtomicU64,
    /// The last refusal, for `upcall-show`.
    pub last_op_error: parking_lot::Mutex<String>,
    /// Packets executed on behalf of upcalls.
    pub executes: AtomicU64,
    /// Batches the dpif-writer sent.
    pub dpif_batches: AtomicU64,
    restarts: [AtomicU64; 5],
    /// Flows in the datapath at the last dump.
    pub dp_flows: AtomicU64,
    /// The dynamic flow limit.
    pub flow_limit: AtomicU64,
    /// CPU time of the last dump and revalidation, in ms (what the
    /// dynamic flow limit follows).
    pub dump_duration_ms: AtomicU64,
    /// Wall time of the same, in ms (what OVS's `upcall/show` reports).
    pub dump_wall_ms: AtomicU64,
    /// CPU time of the same round's reading of the dump alone (on the
    /// kernel, mostly the kernel's work), in ms.
    pub dump_read_ms: AtomicU64,
    /// Revalidation rounds completed (by every revalidator).
    pub revalidation_rounds: AtomicU64,
    /// Flows revalidators translated again (their ukey's rules version or
    /// MAC table generation was not the current one): what a round's cost
    /// grows with, besides reading the dump.
    pub flows_retranslated: AtomicU64,
    /// The rule-table's current version.
    pub rules_version: AtomicU64,
    /// Rules added by `learn` actions.
    pub rules_learned: AtomicU64,
    /// Learned rules not added because the learn's `limit` was reached.
    pub learn_over_limit: AtomicU64,
    /// Rules removed because their idle or hard timeout expired (with the
    /// rules their `delete_learned` took along).
    pub rules_expired: AtomicU64,
    /// What became of the packets `controller` actions sent up.
    pub packet_ins: PacketInStats,
    /// When the dpif-writer last finished a batch: nanoseconds after
    /// [`epoch`], plus one (0: never).
    last_write: AtomicU64,
}

/// Packet-ins, over every OpenFlow connection (one packet counts once for
/// each connection that wants it).
#[derive(Debug, Default)]
pub struct PacketInStats {
    /// Dropped because the connection's queue (`fanout::QUEUE_LEN`) was
    /// full: the connection did not read them fast enough.
    pub queue_full: AtomicU64,
    /// Sent without waiting for the rate limit (all of them when there
    /// is no limit).
    pub bypassed: AtomicU64,
    /// Held back by the rate limit (`actors/src/pinsched.rs`), to be sent
    /// as it allows.
    pub queued: AtomicU64,
    /// Of those, dropped because the limit's queue was full.
    pub rate_dropped: AtomicU64,
}

/// The process's time origin for the timestamps kept in atomics.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

impl PipelineStats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Notes that a batch of datapath operations has just completed.
    pub fn note_write(&self) {
        let ns = epoch().elapsed().as_nanos() as u64;
        self.last_write.store(ns + 1, Ordering::Relaxed);
    }

    /// When the dpif-writer last finished a batch.
    pub fn last_write(&self) -> Option<Instant> {
        let ns = self.last_write.load(Ordering::Relaxed).checked_sub(1)?;
        Some(epoch() + Duration::from_nanos(ns))
    }

    pub fn count_drop(&self, why: DropReason, n: u64) {
        self.dropped[why as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn dropped(&self, why: DropReason) -> u64 {
        self.dropped[why as usize].load(Ordering::Relaxed)
    }

    pub fn count_restart(&self, actor: &str) {
        if let Some(i) = ACTORS.iter().position(|a| *a == actor) {
            self.restarts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn restarts(&self, actor: &str) -> u64 {
        ACTORS
            .iter()
            .position(|a| *a == actor)
            .map_or(0, |i| self.restarts[i].load(Ordering::Relaxed))
    }
}
