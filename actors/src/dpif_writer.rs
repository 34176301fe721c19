//! The dpif-writer actor: the writer of the handlers' ops (revalidators
//! write their own, within their rounds). It coalesces the
//! operations that handlers send into batches (at most
//! `batch_size` ops, flushed at the latest `max_latency` after the first op
//! of a batch arrived). It keeps the ukeys true to what it wrote: a put
//! that failed and a delete carried out drop their flow's ukey
//! ([`crate::ukeys`]), so that the next upcall for it installs it.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use messages::dpif::{DpifOp, PutMode, Ufid};

use crate::backpressure::Window;
#[cfg(feature = "fault-injection")]
use crate::protocol::InjectPanics;
use crate::protocol::{FlowOps, Flush, SpareOps};
use crate::stats::PipelineStats;
use crate::supervisor::guarded;
use crate::ukeys::Ukeys;
use messages::dpif::Dpif;

/// Batching bounds, and who writes the handlers' ops.
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    /// Most ops per `Dpif::operate` call (OVS: 50 per transaction).
    pub batch_size: usize,
    /// Handlers write their own puts and executes, in batches of
    /// `batch_size` (OVS's `handle_upcalls`), and the writer nothing: the
    /// kernel datapath's choice, where a put's cost
    /// is the kernel's work on the writing thread and one writer was the
    /// ceiling. The embedded datapath keeps one writer placed beside its
    /// packet threads (see ARCHITECTURE.md).
    pub handlers_write: bool,
    /// Longest an op waits for its batch to fill. It waits only while
    /// handlers have more ops on the way: with none, a partial batch is
    /// written at once, as OVS's handlers write theirs.
    pub max_latency: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            batch_size: 50,
            max_latency: Duration::from_millis(1),
            handlers_write: false,
        }
    }
}

/// Ops handlers may have in flight to the writer (sent, not yet queued):
/// 32 handler batches. Deep enough that a handler seldom waits for a
/// writer that shares its core with the datapath (with 1024, the pinned
/// setup-rate miss pass took 13.5 ms against 10.5); shallow enough that
/// the ops in flight stay a few megabytes.
pub const WINDOW_OPS: usize = 4096;

/// How handlers reach the writer: its address, and the window of ops in
/// flight that they all share.
#[derive(Clone)]
pub struct WriterInlet {
    addr: Addr<DpifWriter>,
    window: Arc<Window>,
}

impl WriterInlet {
    /// Handlers' way to `addr`, through `window`: the one the writer
    /// watches (see [`DpifWriter::new`]).
    pub fn new(addr: Addr<DpifWriter>, window: Arc<Window>) -> Self {
        WriterInlet { addr, window }
    }

    /// Sends `ops`, first waiting while the window is full. False when the
    /// writer is gone (the ops are lost).
    pub fn send(&self, ops: Vec<DpifOp>, return_to: Recipient<SpareOps>) -> bool {
        let permit = self.window.acquire(ops.len());
        if !self.addr.connected() {
            return false;
        }
        self.addr.do_send(FlowOps {
            ops,
            return_to: Some(return_to),
            permit: Some(permit),
        });
        true
    }
}

pub struct DpifWriter {
    dpif: Arc<dyn Dpif>,
    config: WriterConfig,
    /// A ring, so that taking batches from the front moves nothing else.
    pending: VecDeque<DpifOp>,
    ukeys: Arc<Ukeys>,
    /// The batch being written (its buffer is kept).
    batch: Vec<DpifOp>,
    /// Puts and executes written, to go back to a handler with the next
    /// buffer it gets back: the handler fills the same boxes again instead
    /// of allocating on its thread what this one frees.
    done: Vec<DpifOp>,
    flush_timer: Option<SpawnHandle>,
    /// The window handlers send through: while it holds ops, more are on
    /// the way and a partial batch may wait for them.
    inlet: Arc<Window>,
    #[cfg(feature = "fault-injection")]
    panics_to_inject: u32,
    /// Ufids of the batch being written whose puts are not confirmed yet:
    /// lost if the writer panics.
    unconfirmed: Vec<Ufid>,
    stats: Arc<PipelineStats>,
}

impl DpifWriter {
    pub fn new(
        dpif: Arc<dyn Dpif>,
        config: WriterConfig,
        stats: Arc<PipelineStats>,
        inlet: Arc<Window>,
        ukeys: Arc<Ukeys>,
    ) -> Self {
        DpifWriter {
            dpif,
            config: WriterConfig {
                batch_size: config.batch_size.max(1),
                ..config
            },
            pending: VecDeque::new(),
            ukeys,
            batch: Vec::new(),
            done: Vec::new(),
            flush_timer: None,
            inlet,
            #[cfg(feature = "fault-injection")]
            panics_to_inject: 0,
            unconfirmed: Vec::new(),
            stats,
        }
    }

    /// Writes every pending op. Guarded: a panic restarts the writer,
    /// which forgets the puts it could not confirm.
    fn write(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.flush_timer.take() {
            ctx.cancel_future(t);
        }
        let stats = self.stats.clone();
        guarded("dpif_writer", &stats, ctx, || {
            self.write_pending(self.pending.len())
        });
    }

    /// Writes the first `n` pending ops in batches of at most `batch_size`.
    fn write_pending(&mut self, n: usize) {
        let mut left = n.min(self.pending.len());
        while left > 0 {
            let k = left.min(self.config.batch_size);
            let mut batch = std::mem::take(&mut self.batch);
            batch.extend(self.pending.drain(..k));
            self.write_batch(&mut batch);
            self.keep_done(&mut batch);
            self.batch = batch;
            left -= k;
        }
    }

    fn write_batch(&mut self, batch: &mut [DpifOp]) {
        self.unconfirmed.clear();
        self.unconfirmed
            .extend(batch.iter().filter_map(|op| match op {
                DpifOp::FlowPut(put) if put.mode == PutMode::Create => Some(put.ufid),
                _ => None,
            }));
        #[cfg(feature = "fault-injection")]
        if self.panics_to_inject > 0 {
            self.panics_to_inject -= 1;
            // Half the batch reaches the datapath, unconfirmed.
            let half = batch.len() / 2;
            let _ = self.dpif.operate(&mut batch[..half]);
            panic!("injected fault in the dpif-writer");
        }
        write_ops(&*self.dpif, batch, &self.ukeys, &self.stats);
        self.unconfirmed.clear();
    }

    /// Keeps the written puts and executes of `batch` (emptied) for
    /// handlers to fill again, up to a few batches' worth.
    fn keep_done(&mut self, batch: &mut Vec<DpifOp>) {
        let room = (4 * self.config.batch_size).saturating_sub(self.done.len());
        self.done.extend(
            batch
                .drain(..)
                .filter(|op| !matches!(op, DpifOp::FlowDel { .. }))
                .take(room),
        );
    }
}

/// Writes `batch` to `dpif` in one `operate` call and keeps the ukeys
/// and counters true to the answers: a failed put, or a delete carried
/// out (or refused: the flow is gone), drops its ukey. Used by the writer, by handlers that write
/// their own batches, and by revalidators.
pub fn write_ops(dpif: &dyn Dpif, batch: &mut [DpifOp], ukeys: &Ukeys, stats: &PipelineStats) {
    metrics::histogram!("upcalld_dpif_batch_size").record(batch.len() as f64);
    PipelineStats::add(&stats.dpif_batches, 1);
    let results = dpif.operate(batch);
    stats.note_write();
    // Counted here and added once per batch: the counters are shared
    // with every thread that reads them.
    let (mut puts, mut modifies, mut deletes, mut executes, mut errors) = (0, 0, 0, 0, 0);
    let (mut put_errors, mut delete_errors, mut execute_errors) = (0, 0, 0);
    let mut last_error = None;
    for (op, result) in batch.iter().zip(results) {
        match (op, result) {
            (DpifOp::FlowPut(put), Ok(())) if put.mode == PutMode::Create => {
                puts += 1;
            }
            (DpifOp::FlowPut(_), Ok(())) => modifies += 1,
            (DpifOp::FlowDel { ufid }, Ok(())) => {
                deletes += 1;
                ukeys.remove(*ufid);
            }
            (DpifOp::Execute(_), Ok(())) => executes += 1,
            (op, Err(e)) => {
                errors += 1;
                match op {
                    // Not installed after all: a later upcall may put
                    // it. (One that was there already, EEXIST, is
                    // adopted again by the next dump.)
                    DpifOp::FlowPut(put) if put.mode == PutMode::Create => {
                        put_errors += 1;
                        ukeys.remove(put.ufid);
                    }
                    // Gone already (ENOENT), or not ours to keep.
                    DpifOp::FlowDel { ufid } => {
                        delete_errors += 1;
                        ukeys.remove(*ufid);
                    }
                    DpifOp::Execute(_) => execute_errors += 1,
                    DpifOp::FlowPut(_) => {}
                }
                tracing::debug!(error = %e, "datapath refused an operation");
                last_error = Some(e);
            }
        }
    }
    if let Some(e) = last_error {
        *stats.last_op_error.lock() = e.to_string();
    }
    for (counter, n) in [
        (&stats.flow_puts, puts),
        (&stats.flow_modifies, modifies),
        (&stats.flow_deletes, deletes),
        (&stats.executes, executes),
        (&stats.op_errors, errors),
        (&stats.put_errors, put_errors),
        (&stats.delete_errors, delete_errors),
        (&stats.execute_errors, execute_errors),
    ] {
        if n > 0 {
            PipelineStats::add(counter, n);
        }
    }
}

/// The puts among `ops` that create a flow.
fn created(ops: &[DpifOp]) -> impl Iterator<Item = Ufid> + '_ {
    ops.iter().filter_map(|op| match op {
        DpifOp::FlowPut(put) if put.mode == PutMode::Create => Some(put.ufid),
        _ => None,
    })
}

impl Actor for DpifWriter {
    type Context = Context<Self>;
}

impl Supervised for DpifWriter {
    /// Rebuilt as new after a panic: the queue, the batch being written
    /// and the buffers are scratch. The puts queued or written unconfirmed
    /// are lost (whether or not they reached the datapath), so their ukeys
    /// go, in the ukeys' owner, and their next upcalls install them (or
    /// the next dump adopts them).
    fn restarting(&mut self, _: &mut Context<Self>) {
        let lost: Vec<Ufid> = created(self.pending.make_contiguous())
            .chain(self.unconfirmed.iter().copied())
            .collect();
        for ufid in lost {
            self.ukeys.remove(ufid);
        }
        tracing::info!(
            lost_puts = self.pending.len() + self.unconfirmed.len(),
            "dpif-writer restarted"
        );
        #[cfg(feature = "fault-injection")]
        let panics_to_inject = self.panics_to_inject;
        *self = DpifWriter::new(
            self.dpif.clone(),
            self.config,
            self.stats.clone(),
            self.inlet.clone(),
            self.ukeys.clone(),
        );
        #[cfg(feature = "fault-injection")]
        {
            self.panics_to_inject = panics_to_inject;
        }
    }
}

impl Handler<FlowOps> for DpifWriter {
    type Result = ();

    fn handle(&mut self, msg: FlowOps, ctx: &mut Context<Self>) {
        let FlowOps {
            mut ops,
            return_to,
            permit,
        } = msg;
        let stats = self.stats.clone();
        let written = guarded("dpif_writer", &stats, ctx, || {
            // Full batches now; a partial one waits for more ops or the
            // latency bound.
            let bs = self.config.batch_size;
            if self.pending.is_empty() {
                // Nothing queued is older: write straight from the
                // message's buffer, which then goes back with the ops
                // written in it.
                let full = ops.len() / bs * bs;
                for batch in ops[..full].chunks_mut(bs) {
                    self.write_batch(batch);
                }
                self.pending.extend(ops.drain(full..));
            } else {
                self.pending.extend(ops.drain(..));
                self.write_pending(self.pending.len() / bs * bs);
            }
        });
        if written.is_none() {
            // The message's own puts not yet queued are lost with it (the
            // queue's and the unconfirmed batch's go at the restart).
            for ufid in created(&ops) {
                self.ukeys.remove(ufid);
            }
            ops.clear();
            return;
        }
        drop(permit);
        if let Some(to) = return_to {
            let n = self.done.len().min(ops.capacity() - ops.len());
            ops.extend(self.done.drain(..n));
            to.do_send(SpareOps(ops));
        }
        if self.pending.is_empty() {
            return;
        }
        if self.inlet.in_flight() == 0 {
            self.write(ctx);
        } else if self.flush_timer.is_none() {
            self.flush_timer = Some(ctx.run_later(self.config.max_latency, |w, ctx| {
                w.flush_timer = None;
                w.write(ctx);
            }));
        }
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<InjectPanics> for DpifWriter {
    type Result = ();

    fn handle(&mut self, msg: InjectPanics, _: &mut Context<Self>) {
        self.panics_to_inject = msg.batches;
    }
}

impl Handler<Flush> for DpifWriter {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.write(ctx);
    }
}
