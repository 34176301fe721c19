//! The actor graph, wired in one place. Read this first.
//!
//! ```text
//!   datapath ──upcalls──► Receiver × R ──UpcallBatch (by flow hash)──► UpcallHandler × N
//!                                                                     │ FlowOps (put + execute)
//!                                                                     ▼
//!   RuleTable ──publishes v──► handlers, revalidators            DpifWriter ──batches──► datapath
//!       ▲  PushStats (by rule id, and group bucket)
//!       └──────────────────────── Revalidator × M ──batches (modify, delete)──► datapath
//!                                   │ FlowLimit ──► handlers
//! ```
//!
//! With `WriterConfig::handlers_write` and `handlers_read` (the kernel
//! datapath), handlers read their own upcall queues, no receiver runs,
//! and handlers write their own puts and executes to the datapath in
//! batches: the writer has nothing to write. Revalidators always write their own
//! modifies and deletes, within their rounds (as OVS's).
//!
//! Every actor runs under actix's `Supervisor`; the CPU-bound and blocking
//! ones (receiver, each handler, each revalidator, the writer) get an arbiter
//! (thread) of their own; the rule-table lives on the arbiter that starts
//! the pipeline. Actors hold each other's addresses; what they say is in
//! [`crate::protocol`]. Beside messages they share: the rules snapshot in
//! force ([`Published`]: the rule-table stores each version there,
//! handlers take the latest at the start of a batch, revalidators at the
//! start of a round), the [`Dpif`] handle
//! (receivers, handlers on the kernel datapath, the writer and
//! revalidators call the datapath), the [`Ukeys`] (handlers make them,
//! the writer and revalidators drop them), what translation shares in its
//! [`XlateConfig`] (NORMAL's MAC table, the recirculation ids), the
//! packet-in and flow-removal fan-outs, the [`PipelineStats`] counters
//! (where the lead revalidator also publishes the flow limit), and the
//! windows that bound the work in flight to each handler and to the writer
//! ([`crate::backpressure`]: a sender waits for room, so an overload backs
//! up into the datapath's upcall queue instead of into mailboxes).

use std::sync::Arc;

use actix::prelude::*;

use crate::backpressure::Window;
use crate::dpif_writer::{DpifWriter, WriterConfig, WriterInlet, WINDOW_OPS};
use crate::handler::{OwnDatapath, UpcallHandler, WINDOW_UPCALLS as HANDLER_WINDOW_UPCALLS};
use crate::packet_in::PacketIns;
#[cfg(feature = "fault-injection")]
use crate::protocol::InjectPanics;
use crate::protocol::{DumpGroupStats, DumpRules, Flush, RevalidateNow, RuleStats, SendCredits};
use crate::published::Published;
use crate::receiver::Receiver;
use crate::revalidator::{Revalidator, RevalidatorConfig};
use crate::rule_table::{FlowRemovals, RuleTable};
use crate::stats::PipelineStats;
use crate::tables::RuleEntry;
use crate::tables::Tables;
use crate::ukeys::Ukeys;
use crate::xlate::XlateConfig;
use messages::dpif::Dpif;
use messages::threads::{start_thread_as, CpuPlacement};

/// How many of each actor, and their settings.
#[derive(Clone, Debug)]
pub struct PipelineConfig {
    pub n_handlers: usize,
    pub n_revalidators: usize,
    /// Receivers; receiver `i` reads the datapath's upcall queue `i`.
    pub n_receivers: usize,
    /// Handler `i` reads upcall queue `i` itself and no receiver runs (OVS's
    /// handlers): with `writer.handlers_write`, the kernel datapath's
    /// choice, where each receiver was a thread hop and a wake-up per batch
    /// (see ARCHITECTURE.md). The datapath then needs a queue per handler.
    pub handlers_read: bool,
    pub writer: WriterConfig,
    pub revalidator: RevalidatorConfig,
    pub xlate: XlateConfig,
    /// Which CPUs each kind of actor thread may run on.
    pub cpus: CpuPlacement,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            n_handlers: 2,
            n_revalidators: 1,
            n_receivers: 1,
            handlers_read: false,
            writer: WriterConfig::default(),
            revalidator: RevalidatorConfig::default(),
            xlate: XlateConfig::default(),
            cpus: CpuPlacement::default(),
        }
    }
}

/// The running actors.
pub struct Pipeline {
    pub rule_table: Addr<RuleTable>,
    pub handlers: Vec<Addr<UpcallHandler>>,
    pub writer: Addr<DpifWriter>,
    pub revalidators: Vec<Addr<Revalidator>>,
    pub receivers: Vec<Addr<Receiver>>,
    pub stats: Arc<PipelineStats>,
    /// The ukeys of every megaflow installed or on its way.
    pub ukeys: Arc<Ukeys>,
    /// Where handlers send `controller` actions' packets; the OpenFlow
    /// connections subscribe.
    pub packet_ins: Arc<PacketIns>,
    /// Where the rule-table sends rules removed with `send_flow_rem`; the
    /// OpenFlow connections subscribe.
    pub flow_removals: Arc<FlowRemovals>,
    arbiters: Vec<Arbiter>,
}

impl Pipeline {
    /// Starts every actor on `dpif` with `tables` as the first rules.
    /// Must be called from within a running actix `System`.
    pub fn start(dpif: Arc<dyn Dpif>, tables: Tables, config: PipelineConfig) -> Pipeline {
        let stats = Arc::new(PipelineStats::default());
        let ukeys = Arc::new(Ukeys::default());
        let packet_ins = Arc::new(PacketIns::default());
        let flow_removals = Arc::new(FlowRemovals::default());
        let mut arbiters = Vec::new();
        let mut own_arbiter = |name: String, cpus: &[usize]| {
            let a = Arbiter::new();
            let cpus = cpus.to_vec();
            a.spawn_fn(move || {
                if let Err(e) = start_thread_as(&name, &cpus) {
                    tracing::warn!(thread = name, ?cpus, error = %e, "could not pin thread; it runs unpinned");
                }
            });
            let h = a.handle();
            arbiters.push(a);
            h
        };

        // Ops handlers have sent the writer and it has not queued yet.
        let writer_window = Window::new(WINDOW_OPS);
        let writer = {
            let (dpif, stats, cfg) = (dpif.clone(), stats.clone(), config.writer);
            let (inlet, u) = (writer_window.clone(), ukeys.clone());
            Supervisor::start_in_arbiter(
                &own_arbiter("dpif-writer".into(), &config.cpus.writer),
                move |_| DpifWriter::new(dpif, cfg, stats, inlet, u),
            )
        };

        // The first snapshot, with its lookup indexes built (the
        // rule-table's copy shares them).
        tables.prepare();
        let published = Arc::new(Published::new(Arc::new(tables.clone())));
        let rule_table = {
            let (p, stats, removals) = (published.clone(), stats.clone(), flow_removals.clone());
            Supervisor::start(move |_| RuleTable::new(tables, p, removals, stats))
        };

        let to_writer = WriterInlet::new(writer.clone(), writer_window);
        let handlers: Vec<Addr<UpcallHandler>> = (0..config.n_handlers.max(1))
            .map(|id| {
                // Handlers translate real packets: NORMAL learns from them.
                let x = XlateConfig {
                    may_learn: true,
                    snoop_neighbours: true,
                    ..config.xlate.clone()
                };
                let (t, w, r, s) = (
                    published.clone(),
                    to_writer.clone(),
                    rule_table.clone(),
                    stats.clone(),
                );
                let limit = config
                    .revalidator
                    .flow_limit_start
                    .min(config.revalidator.flow_limit);
                let (u, p) = (ukeys.clone(), packet_ins.clone());
                let own = config.writer.handlers_write.then(|| OwnDatapath {
                    dpif: dpif.clone(),
                    batch_size: config.writer.batch_size.max(1),
                    queue: config.handlers_read.then_some(id),
                });
                Supervisor::start_in_arbiter(
                    &own_arbiter(format!("handler{id}"), &config.cpus.handlers),
                    move |_| UpcallHandler::new(id, t, x, w, own, r, p, limit, u, s),
                )
            })
            .collect();

        let n_revalidators = config.n_revalidators.max(1);
        let revalidators: Vec<Addr<Revalidator>> = (0..n_revalidators)
            .map(|id| {
                let (d, t, x, r) = (
                    dpif.clone(),
                    published.clone(),
                    config.xlate.clone(),
                    rule_table.clone(),
                );
                let (h, c, s) = (handlers.clone(), config.revalidator, stats.clone());
                let u = ukeys.clone();
                Supervisor::start_in_arbiter(
                    &own_arbiter(format!("revalidator{id}"), &config.cpus.revalidators),
                    move |_| Revalidator::new(id, n_revalidators, d, t, x, r, h, c, u, s),
                )
            })
            .collect();

        // One window per handler, shared by the receivers feeding it.
        let handler_windows: Vec<_> = handlers
            .iter()
            .map(|h| (h.clone(), Window::new(HANDLER_WINDOW_UPCALLS)))
            .collect();
        let n_receivers = if config.handlers_read && config.writer.handlers_write {
            0
        } else {
            config.n_receivers.max(1)
        };
        let receivers = (0..n_receivers)
            .map(|q| {
                let (d, h, s) = (dpif.clone(), handler_windows.clone(), stats.clone());
                Supervisor::start_in_arbiter(
                    &own_arbiter(format!("receiver{q}"), &config.cpus.receivers),
                    move |_| Receiver::new(q, d, h, s),
                )
            })
            .collect();

        Pipeline {
            rule_table,
            handlers,
            writer,
            revalidators,
            receivers,
            stats,
            ukeys,
            packet_ins,
            flow_removals,
            arbiters,
        }
    }

    /// Writes every datapath operation queued so far.
    pub async fn flush(&self) -> Result<(), MailboxError> {
        self.writer.send(Flush).await
    }

    /// Every rule with its statistics, counting every upcall handled so far
    /// (handlers send their credits first, all at once: an idle handler
    /// reading its own upcall queue answers after its wait; a handler that
    /// is gone has none to send).
    pub async fn dump_rules(&self) -> Result<Vec<(Arc<RuleEntry>, RuleStats)>, MailboxError> {
        futures::future::join_all(self.handlers.iter().map(|h| h.send(SendCredits))).await;
        self.rule_table.send(DumpRules).await
    }

    /// Every group's counters (or group `id`'s), with the handlers'
    /// credits in, as `dump_rules`.
    pub async fn dump_group_stats(
        &self,
        id: Option<u32>,
    ) -> Result<Vec<messages::group::GroupStats>, MailboxError> {
        futures::future::join_all(self.handlers.iter().map(|h| h.send(SendCredits))).await;
        self.rule_table.send(DumpGroupStats(id)).await
    }

    /// Runs one revalidation round on every revalidator, then flushes the
    /// operations it produced.
    pub async fn revalidate_now(&self) -> Result<(), MailboxError> {
        for r in &self.revalidators {
            r.send(RevalidateNow).await?;
        }
        self.flush().await
    }

    /// Makes handler `handler` panic on its next `batches` upcall batches.
    #[cfg(feature = "fault-injection")]
    pub fn inject_handler_panics(&self, handler: usize, batches: u32) {
        if let Some(h) = self.handlers.get(handler) {
            h.do_send(InjectPanics { batches });
        }
    }

    /// Makes revalidator `revalidator` panic halfway through its next
    /// `rounds` rounds, with a modify made and not written.
    #[cfg(feature = "fault-injection")]
    pub fn inject_revalidator_panics(&self, revalidator: usize, rounds: u32) {
        if let Some(r) = self.revalidators.get(revalidator) {
            r.do_send(InjectPanics { batches: rounds });
        }
    }

    /// Makes the dpif-writer panic halfway through its next `batches`
    /// batches.
    #[cfg(feature = "fault-injection")]
    pub fn inject_writer_panics(&self, batches: u32) {
        self.writer.do_send(InjectPanics { batches });
    }

    /// Stops every actor's arbiter (the rule-table stops with its system).
    pub fn stop(self) {
        for a in self.arbiters {
            a.stop();
        }
    }
}
