//! The handler actor: translates a batch of upcalls against its current
//! rule snapshot and, for each, has the megaflow installed (`FlowPut`) and
//! the packet run (`Execute`): by the dpif-writer, or (on the kernel
//! datapath) writing the batch to the datapath itself, as OVS's handlers
//! do. The megaflow's
//! ukey is made first ([`crate::ukeys`]): an upcall whose megaflow has one
//! already is a duplicate, and only its packet runs.
//!
//! On the kernel datapath a handler also reads its upcall queue itself
//! (OVS's handler threads: `recv_upcalls` on the handler's own sockets), so
//! that no receiver thread and no message lie between the socket and the
//! translation; otherwise receivers hand it batches.
//!
//! A handler runs on its own arbiter (translation is CPU-bound). A panic
//! while handling a batch loses that batch only: the handler restarts,
//! drops the ukeys it made for the batch, and the datapath upcalls those
//! packets again since no megaflow was put.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use messages::dpif::{
    DpifError, DpifOp, Execute, FlowPut, PacketMetadata, PutMode, Upcall, UpcallKind,
    UPCALL_MAX_BATCH,
};
use messages::flow::pin_vlan_stack;
use messages::odp::{ControllerCookie, OdpActions};
use messages::Megaflow;

use crate::dpif_writer::{write_ops, WriterInlet};
use crate::packet_in::{ControllerPacket, PacketIns};
#[cfg(feature = "fault-injection")]
use crate::protocol::InjectPanics;
use crate::protocol::{
    FlowLimit, Poll, PushStats, RuleStats, SendCredits, SideEffects, SpareOps, SpareUpcalls,
    UpcallBatch,
};
use crate::published::Published;
use crate::rule_table::RuleTable;
use crate::stats::{DropReason, PipelineStats};
use crate::supervisor::guarded;
use crate::tables::Tables;
use crate::ukeys::{SharedMasks, Ukey, UkeyExtra, UkeyMegaflow, Ukeys, NOT_TRANSLATED};
use crate::xlate::{xlate_into, XlateConfig, XlateOutput, TCP_FIN, TCP_RST};
use messages::dpif::{monotonic_ms, Dpif};
use messages::hash::megaflow_ufid;

/// Upcalls a handler may have in flight (received, not yet handled).
pub const WINDOW_UPCALLS: usize = 16 * messages::dpif::UPCALL_MAX_BATCH;

/// Emptied buffers an actor keeps for its next batches.
const MAX_SPARE_BUFFERS: usize = 8;

/// How often a handler sends the rule credits it gathered to the
/// rule-table: often enough for `dump-flows`, rarely enough that the
/// rule-table's thread is not woken for every upcall batch.
const CREDIT_INTERVAL: Duration = Duration::from_millis(10);

/// Longest a handler's read of its upcall queue waits for the first
/// upcall before it looks at its mailbox. While upcalls come, a read ends
/// with the batch; the wait bounds only an idle handler's wake-ups (OVS's
/// handlers sleep until an upcall comes) and how late its mailbox is read
/// then: nothing there is urgent for an idle handler (flow limits, rule
/// credits for `dump-flows`). At 20 ms, each idle handler took about 3 %
/// of a CPU in the kernel VM.
const POLL: Duration = Duration::from_millis(100);

/// A handler's own way to the datapath: where it writes its ops, in
/// batches of `batch_size`, and the upcall queue it reads, if it reads one.
pub struct OwnDatapath {
    pub dpif: Arc<dyn Dpif>,
    pub batch_size: usize,
    /// The upcall queue this handler reads (no receiver feeds it).
    pub queue: Option<usize>,
}

pub struct UpcallHandler {
    pub id: usize,
    /// The snapshot this handler translates against, refreshed from
    /// `published` at the start of each batch.
    tables: Arc<Tables>,
    published: Arc<Published>,
    xlate_cfg: XlateConfig,
    writer: WriterInlet,
    /// Set when this handler writes its own ops (see
    /// [`crate::dpif_writer::WriterConfig::handlers_write`]), and reads its
    /// own upcall queue.
    own: Option<OwnDatapath>,
    /// The batch being read from its own queue, kept between reads.
    read_buf: Vec<Upcall>,
    /// Credited with the packets the handler executes.
    rule_table: Addr<RuleTable>,
    /// Where `controller` actions' packets go.
    packet_ins: Arc<PacketIns>,
    flow_limit: u64,
    /// Megaflows installed or on their way, each with its ukey: the flow
    /// count the limit is checked against.
    ukeys: Arc<Ukeys>,
    /// Ufids of the ukeys made for the batch at hand, dropped if it panics.
    batch_ukeys: Vec<messages::dpif::Ufid>,
    #[cfg(feature = "fault-injection")]
    panics_to_inject: u32,
    /// Op buffers back from the writer, to fill again.
    spare_ops: Vec<Vec<DpifOp>>,
    /// Boxes of ops the writer is done with, to fill again.
    op_boxes: OpBoxes,
    /// The translation of the upcall at hand (its buffers are reused).
    xlate_out: XlateOutput,
    shared_actions: SharedActions,
    /// The masks of the ukeys this handler made, each kept once.
    shared_masks: SharedMasks,
    /// Traffic credited to rules since the last `PushStats`, one entry per
    /// rule.
    credits: Vec<(u64, RuleStats)>,
    stats: Arc<PipelineStats>,
}

impl UpcallHandler {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        published: Arc<Published>,
        xlate_cfg: XlateConfig,
        writer: WriterInlet,
        own: Option<OwnDatapath>,
        rule_table: Addr<RuleTable>,
        packet_ins: Arc<PacketIns>,
        flow_limit: u64,
        ukeys: Arc<Ukeys>,
        stats: Arc<PipelineStats>,
    ) -> Self {
        UpcallHandler {
            id,
            tables: published.latest(),
            published,
            xlate_cfg,
            writer,
            own,
            read_buf: Vec::new(),
            rule_table,
            packet_ins,
            flow_limit,
            ukeys,
            batch_ukeys: Vec::new(),
            #[cfg(feature = "fault-injection")]
            panics_to_inject: 0,
            spare_ops: Vec::new(),
            op_boxes: OpBoxes::default(),
            xlate_out: XlateOutput::default(),
            shared_actions: SharedActions::default(),
            shared_masks: SharedMasks::default(),
            credits: Vec::new(),
            stats,
        }
    }

    /// Translates a batch: the ops to write, and the traffic to credit to
    /// rules (the upcalled packets themselves, as OVS counts them).
    fn handle_batch(
        &mut self,
        upcalls: &mut Vec<Upcall>,
        return_to: Recipient<SpareOps>,
    ) -> (Vec<DpifOp>, Recipient<SpareOps>, Vec<(u64, RuleStats)>) {
        self.batch_ukeys.clear();
        // An injected fault strikes halfway through the batch, with ukeys
        // made for the upcalls before it.
        #[cfg(feature = "fault-injection")]
        let panic_at = if self.panics_to_inject > 0 {
            self.panics_to_inject -= 1;
            Some(upcalls.len() / 2)
        } else {
            None
        };
        #[cfg(not(feature = "fault-injection"))]
        let panic_at: Option<usize> = None;
        let mut ops = self.spare_ops.pop().unwrap_or_default();
        ops.reserve(upcalls.len() * 2);
        let mut credits: Vec<(u64, RuleStats)> = Vec::new();
        let mut over_limit = 0;
        let mut duplicates = 0;
        let mut no_controller = 0;
        let mut no_recirc_context = 0;
        let now = monotonic_ms();
        self.published.refresh(&mut self.tables);
        let version = self.tables.version();
        let mut effects = SideEffects::default();
        // The flow count the limit is checked against: as of the batch's
        // start, plus this batch's new ukeys (other threads' changes count
        // from the next batch on; OVS checks a count it refreshes every
        // 100 ms).
        let mut n_flows = self.ukeys.len() as u64;
        // By reference: an upcall is over 300 bytes, not to be moved out
        // only to be read.
        for (i, up) in upcalls.iter_mut().enumerate() {
            if panic_at == Some(i) {
                panic!("injected fault in handler {}", self.id);
            }
            if let UpcallKind::Action { userdata } = &up.kind {
                // A `controller` action's packet: to the connections, with
                // the metadata its translation froze (OVS's
                // `process_upcall` for CONTROLLER_UPCALL).
                match ControllerCookie::decode(userdata) {
                    Some(cookie) => match self.xlate_cfg.recirc.get(cookie.recirc_id) {
                        Some(state) => {
                            let mut key = up.key;
                            state.restore_metadata(&mut key);
                            let delivered = self.packet_ins.deliver(ControllerPacket {
                                cookie,
                                table: state.table,
                                key,
                                userdata: state.userdata.clone(),
                                packet: std::mem::take(&mut up.packet),
                                continuation: cookie.continuation.then(|| state.clone()),
                                odp_port: up.key.in_port,
                            });
                            if delivered.subscribers == 0 {
                                no_controller += 1;
                            }
                            PipelineStats::add(
                                &self.stats.packet_ins.queue_full,
                                delivered.queue_full as u64,
                            );
                        }
                        None => no_recirc_context += 1,
                    },
                    None => no_controller += 1,
                }
                continue;
            }
            // Read before translating: NORMAL's learning during this
            // translation (or another handler's) then makes a revalidator
            // translate the flow again.
            let mac_generation = self.xlate_cfg.mac.generation();
            let out = &mut self.xlate_out;
            xlate_into(&self.tables, &up.key, &self.xlate_cfg, out);
            let packet = RuleStats {
                n_packets: 1,
                n_bytes: up.packet.len() as u64,
            };
            for id in &out.rules {
                add_credit(&mut credits, *id, packet);
            }
            let actions = self.shared_actions.share(&out.actions);
            if n_flows < self.flow_limit {
                // Filled field by field, so that the megaflow's buffer is
                // reused.
                let mut put = self.op_boxes.put_box(actions);
                // Installed with the VLAN stack pinned, as a datapath key is.
                pin_vlan_stack(&up.key, &mut out.wc);
                put.megaflow.set(&up.key, &out.wc);
                put.ufid = megaflow_ufid(&put.megaflow);
                let (masks, recirc) = (&mut self.shared_masks, &self.xlate_cfg.recirc);
                let new = self.ukeys.insert_new(put.ufid, || {
                    let mut ukey = Ukey::installing(
                        now,
                        // A flow waiting for a tunnel neighbour is translated
                        // again by the next round.
                        if out.unresolved {
                            NOT_TRANSLATED
                        } else {
                            (version, mac_generation)
                        },
                        &out.rules,
                        UkeyMegaflow::new(&put.megaflow, masks),
                        actions.clone(),
                    );
                    ukey.set_extra(UkeyExtra {
                        mac_learned: out.mac_learned.clone(),
                        neighbours_seen: out.neighbours_seen.clone(),
                        effects: out.side_effects(),
                        recirc: recirc.hold(up.key.recirc_id, actions),
                    });
                    ukey
                });
                if new {
                    n_flows += 1;
                    self.batch_ukeys.push(put.ufid);
                    share_into(&mut put.actions, actions);
                    put.mode = PutMode::Create;
                    put.reset_stats = false;
                    ops.push(DpifOp::FlowPut(put));
                } else {
                    duplicates += 1;
                    self.op_boxes.puts.push(put);
                }
            } else {
                over_limit += 1;
            }
            effects.learned.append(&mut out.learned);
            if up.key.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
                effects.fin_timeouts.append(&mut out.fin_timeouts);
            }
            if !actions.is_empty() {
                let mut execute = self.op_boxes.execute_box(actions);
                execute.packet = std::mem::take(&mut up.packet);
                execute.metadata = PacketMetadata::of(&up.key);
                execute.mru = up.mru;
                share_into(&mut execute.actions, actions);
                ops.push(DpifOp::Execute(execute));
            }
        }
        upcalls.clear();
        // ARP requests for the tunnel next hops these upcalls missed.
        if let Some(nt) = self.xlate_cfg.native_tunnel.as_deref() {
            for e in nt.solicitations(&self.tables, &self.xlate_cfg, now) {
                ops.push(DpifOp::Execute(Box::new(e)));
            }
        }
        if !effects.is_empty() {
            self.rule_table.do_send(effects);
        }
        self.stats.count_drop(DropReason::FlowLimit, over_limit);
        PipelineStats::add(&self.stats.duplicate_upcalls, duplicates);
        self.stats
            .count_drop(DropReason::NoController, no_controller);
        self.stats
            .count_drop(DropReason::NoRecircContext, no_recirc_context);
        (ops, return_to, credits)
    }
}

/// Boxes of puts and executes back from the writer. Filling them again
/// keeps a put's memory going round between the two threads, instead of
/// this thread allocating what the writer frees.
#[derive(Default)]
// The boxes are the point: they are what goes round.
#[allow(clippy::vec_box)]
struct OpBoxes {
    puts: Vec<Box<FlowPut>>,
    executes: Vec<Box<Execute>>,
}

impl OpBoxes {
    /// Boxes of each kind kept: as many as the writer's window holds ops
    /// (a put and an execute per upcall), so that boxes coming back are
    /// kept rather than freed while new ones are allocated.
    const CAPACITY: usize = crate::dpif_writer::WINDOW_OPS / 2;

    /// A box for a put, to be filled: one back from the writer, or a new
    /// one (`actions` serves as its placeholder list).
    fn put_box(&mut self, actions: &Arc<OdpActions>) -> Box<FlowPut> {
        self.puts.pop().unwrap_or_else(|| {
            Box::new(FlowPut {
                ufid: 0,
                megaflow: Megaflow::default(),
                actions: actions.clone(),
                mode: PutMode::Create,
                reset_stats: false,
            })
        })
    }

    /// A box for an execute, to be filled (see [`OpBoxes::put_box`]).
    fn execute_box(&mut self, actions: &Arc<OdpActions>) -> Box<Execute> {
        self.executes.pop().unwrap_or_else(|| {
            Box::new(Execute {
                packet: Vec::new(),
                metadata: PacketMetadata::default(),
                actions: actions.clone(),
                mru: 0,
            })
        })
    }

    /// Keeps the boxes of `ops` (emptied).
    fn take_back(&mut self, ops: &mut Vec<DpifOp>) {
        for op in ops.drain(..) {
            match op {
                DpifOp::FlowPut(b) if self.puts.len() < Self::CAPACITY => self.puts.push(b),
                DpifOp::Execute(b) if self.executes.len() < Self::CAPACITY => self.executes.push(b),
                _ => {}
            }
        }
    }
}

/// The action lists a handler has produced, each kept once. A rule set
/// sends most upcalls to a handful of lists, so sharing them spares an
/// allocation per upcall, and lets the datapath store each list once and
/// recognize it by pointer: the hashing of lists happens here, not on the
/// writer's thread.
#[derive(Default)]
struct SharedActions {
    lists: hashbrown::HashSet<Arc<OdpActions>, rustc_hash::FxBuildHasher>,
}

impl SharedActions {
    /// Lists kept before starting over (a rule set with more distinct
    /// lists merely shares less).
    const CAPACITY: usize = 4096;

    /// `actions` as a shared list.
    fn share(&mut self, actions: &OdpActions) -> &Arc<OdpActions> {
        if self.lists.len() >= Self::CAPACITY && !self.lists.contains(actions) {
            self.lists.clear();
        }
        self.lists
            .get_or_insert_with(actions, |a| Arc::new(a.clone()))
    }
}

/// Makes `slot` (a reused op's list) `shared`, touching the reference
/// counts only when it holds another list: with a handful of lists, most
/// reused ops hold the right one already, and each count changed is an
/// atomic operation that waits for the handler's earlier stores.
fn share_into(slot: &mut Arc<OdpActions>, shared: &Arc<OdpActions>) {
    if !Arc::ptr_eq(slot, shared) {
        *slot = shared.clone();
    }
}

/// Adds `stats` to rule `id`'s entry in `credits`: one entry per rule, so
/// that the rule-table's work scales with the rules hit (a few), not with
/// the upcalls.
fn add_credit(credits: &mut Vec<(u64, RuleStats)>, id: u64, stats: RuleStats) {
    match credits.iter_mut().find(|(r, _)| *r == id) {
        Some((_, total)) => {
            total.n_packets += stats.n_packets;
            total.n_bytes += stats.n_bytes;
        }
        None => credits.push((id, stats)),
    }
}

impl UpcallHandler {
    /// Adds a batch's credits to those not sent yet.
    fn gather_credits(&mut self, batch: Vec<(u64, RuleStats)>) {
        for (id, c) in batch {
            add_credit(&mut self.credits, id, c);
        }
    }

    fn send_credits(&mut self) {
        if !self.credits.is_empty() {
            self.rule_table
                .do_send(PushStats(std::mem::take(&mut self.credits)));
        }
    }
}

impl Actor for UpcallHandler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(CREDIT_INTERVAL, |h, _| h.send_credits());
        if self.own.as_ref().is_some_and(|o| o.queue.is_some()) {
            ctx.notify(Poll);
        }
    }

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        self.send_credits();
        Running::Stop
    }
}

impl Supervised for UpcallHandler {
    /// Rebuilt as new after a panic: translation buffers, op boxes, shared
    /// lists and the batch read are scratch; the handles and the
    /// translation config are kept; the flow limit is read again from
    /// where the lead revalidator publishes it and the rules from where
    /// the rule-table publishes them. The ukeys of the batch lost went
    /// when it panicked; its credits were sent when it stopped.
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::info!(handler = self.id, "handler restarted");
        #[cfg(feature = "fault-injection")]
        let panics_to_inject = self.panics_to_inject;
        *self = UpcallHandler::new(
            self.id,
            self.published.clone(),
            self.xlate_cfg.clone(),
            self.writer.clone(),
            self.own.take(),
            self.rule_table.clone(),
            self.packet_ins.clone(),
            match self.stats.flow_limit.load(Ordering::Relaxed) {
                0 => self.flow_limit, // not published yet
                limit => limit,
            },
            self.ukeys.clone(),
            self.stats.clone(),
        );
        #[cfg(feature = "fault-injection")]
        {
            self.panics_to_inject = panics_to_inject;
        }
    }
}

impl UpcallHandler {
    /// Translates `upcalls` (emptied) and has their ops written, received
    /// at `received`.
    fn take_upcalls(
        &mut self,
        upcalls: &mut Vec<Upcall>,
        received: Instant,
        ctx: &mut Context<Self>,
    ) {
        let n = upcalls.len() as u64;
        let stats = self.stats.clone();
        let me = ctx.address().recipient();
        let handled = guarded("handler", &stats, ctx, || {
            let (mut ops, return_to, credits) = self.handle_batch(upcalls, me);
            if let Some(own) = &self.own {
                for batch in ops.chunks_mut(own.batch_size) {
                    write_ops(&*own.dpif, batch, &self.ukeys, &self.stats);
                }
                self.op_boxes.take_back(&mut ops);
                if self.spare_ops.len() < MAX_SPARE_BUFFERS {
                    self.spare_ops.push(ops);
                }
                (None, credits)
            } else {
                (Some((ops, return_to)), credits)
            }
        });
        upcalls.clear();
        match handled {
            Some((to_writer, credits)) => {
                if let Some((ops, return_to)) = to_writer {
                    let n_ops = ops.len();
                    // Waits while the writer has a full window of ops.
                    if !self.writer.send(ops, return_to) {
                        tracing::warn!(ops = n_ops, "the dpif-writer is gone; ops lost");
                        for ufid in self.batch_ukeys.drain(..) {
                            self.ukeys.remove(ufid);
                        }
                    }
                }
                self.gather_credits(credits);
                stats.upcalls_handled.fetch_add(n, Ordering::Relaxed);
                metrics::histogram!("upcalld_upcall_latency_seconds")
                    .record(received.elapsed().as_secs_f64());
            }
            None => {
                stats.count_drop(DropReason::HandlerPanic, n);
                // Their puts were not written, or not confirmed: their next
                // upcalls install them (or the next dump adopts them).
                for ufid in self.batch_ukeys.drain(..) {
                    self.ukeys.remove(ufid);
                }
            }
        }
    }
}

impl Handler<UpcallBatch> for UpcallHandler {
    type Result = ();

    fn handle(&mut self, batch: UpcallBatch, ctx: &mut Context<Self>) {
        let UpcallBatch {
            mut upcalls,
            received,
            return_to,
            permit: _in_flight,
        } = batch;
        self.take_upcalls(&mut upcalls, received, ctx);
        if let Some(to) = return_to {
            to.do_send(SpareUpcalls(upcalls));
        }
    }
}

impl Handler<Poll> for UpcallHandler {
    type Result = ();

    /// Reads a batch (up to 64) from this handler's own upcall queue and
    /// takes it, then polls again after whatever its mailbox holds.
    fn handle(&mut self, _: Poll, ctx: &mut Context<Self>) {
        let Some((dpif, queue)) = self
            .own
            .as_ref()
            .and_then(|o| Some((o.dpif.clone(), o.queue?)))
        else {
            return;
        };
        let mut upcalls = std::mem::take(&mut self.read_buf);
        upcalls.clear();
        let stats = self.stats.clone();
        // A panic in the read restarts the handler, which polls again.
        let Some(read) = guarded("handler", &stats, ctx, || {
            dpif.recv_upcalls(queue, UPCALL_MAX_BATCH, POLL, &mut upcalls)
        }) else {
            return;
        };
        match read {
            Ok(()) if upcalls.is_empty() => {}
            Ok(()) => {
                self.stats
                    .upcalls_received
                    .fetch_add(upcalls.len() as u64, Ordering::Relaxed);
                self.take_upcalls(&mut upcalls, Instant::now(), ctx);
            }
            Err(DpifError::Closed) => {
                tracing::info!(handler = self.id, "datapath closed; handler stops reading");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading upcalls failed");
                // Do not spin on a persistent error.
                std::thread::sleep(POLL);
            }
        }
        self.read_buf = upcalls;
        ctx.notify(Poll);
    }
}

impl Handler<SendCredits> for UpcallHandler {
    type Result = ();

    fn handle(&mut self, _: SendCredits, _: &mut Context<Self>) {
        self.send_credits();
    }
}

impl Handler<SpareOps> for UpcallHandler {
    type Result = ();

    fn handle(&mut self, spare: SpareOps, _: &mut Context<Self>) {
        let mut buf = spare.0;
        self.op_boxes.take_back(&mut buf);
        if self.spare_ops.len() < MAX_SPARE_BUFFERS {
            self.spare_ops.push(buf);
        }
    }
}

impl Handler<FlowLimit> for UpcallHandler {
    type Result = ();

    fn handle(&mut self, msg: FlowLimit, _: &mut Context<Self>) {
        self.flow_limit = msg.limit;
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<InjectPanics> for UpcallHandler {
    type Result = ();

    fn handle(&mut self, msg: InjectPanics, _: &mut Context<Self>) {
        self.panics_to_inject = msg.batches;
    }
}
