//! The dpif-writer actor: the one writer of the datapath. It coalesces the
//! operations that handlers and revalidators send into batches (at most
//! `batch_size` ops, flushed at the latest `max_latency` after the first op
//! of a batch arrived), and tracks which megaflows are installed, by ufid,
//! so that the same megaflow is never put twice.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use messages::dpif::{DpifOp, PutMode, Ufid, UfidSet};

use crate::dpif::Dpif;
use crate::stats::PipelineStats;
use crate::supervisor::guarded;

/// Batching bounds.
#[derive(Clone, Copy, Debug)]
pub struct WriterConfig {
    /// Most ops per `Dpif::operate` call (OVS: 50 per transaction).
    pub batch_size: usize,
    /// Longest an op waits for its batch to fill.
    pub max_latency: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            batch_size: 50,
            max_latency: Duration::from_millis(1),
        }
    }
}

/// Operations to carry out, in order.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct FlowOps(pub Vec<DpifOp>);

/// Writes everything pending now; replies once done.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

pub struct DpifWriter {
    dpif: Arc<dyn Dpif>,
    config: WriterConfig,
    pending: Vec<DpifOp>,
    /// Megaflows put (or being put) and not deleted since.
    installed: UfidSet,
    flush_timer: Option<SpawnHandle>,
    stats: Arc<PipelineStats>,
}

impl DpifWriter {
    pub fn new(dpif: Arc<dyn Dpif>, config: WriterConfig, stats: Arc<PipelineStats>) -> Self {
        DpifWriter {
            dpif,
            config: WriterConfig {
                batch_size: config.batch_size.max(1),
                ..config
            },
            pending: Vec::new(),
            installed: UfidSet::default(),
            flush_timer: None,
            stats,
        }
    }

    /// Queues one op, or drops a duplicate put.
    fn enqueue(&mut self, op: DpifOp) {
        if let DpifOp::FlowPut {
            ufid,
            mode: PutMode::Create,
            ..
        } = &op
        {
            if !self.installed.insert(*ufid) {
                PipelineStats::add(&self.stats.duplicate_upcalls, 1);
                return;
            }
        }
        if let DpifOp::FlowDel { ufid } = &op {
            self.installed.remove(ufid);
        }
        self.pending.push(op);
    }

    fn write(&mut self, ctx: &mut Context<Self>) {
        if let Some(t) = self.flush_timer.take() {
            ctx.cancel_future(t);
        }
        while !self.pending.is_empty() {
            let n = self.pending.len().min(self.config.batch_size);
            let batch: Vec<DpifOp> = self.pending.drain(..n).collect();
            self.write_batch(batch);
        }
    }

    fn write_batch(&mut self, batch: Vec<DpifOp>) {
        metrics::histogram!("upcalld_dpif_batch_size").record(batch.len() as f64);
        PipelineStats::add(&self.stats.dpif_batches, 1);
        // What each op was, to count results after `operate` consumed them.
        let kinds: Vec<(u8, Option<Ufid>)> = batch
            .iter()
            .map(|op| match op {
                DpifOp::FlowPut {
                    ufid,
                    mode: PutMode::Create,
                    ..
                } => (0, Some(*ufid)),
                DpifOp::FlowPut { .. } => (1, None),
                DpifOp::FlowDel { .. } => (2, None),
                DpifOp::Execute { .. } => (3, None),
            })
            .collect();
        let results = self.dpif.operate(batch);
        let s = &self.stats;
        for ((kind, ufid), result) in kinds.into_iter().zip(results) {
            match (kind, result) {
                (0, Ok(())) => PipelineStats::add(&s.flow_puts, 1),
                (1, Ok(())) => PipelineStats::add(&s.flow_modifies, 1),
                (2, Ok(())) => PipelineStats::add(&s.flow_deletes, 1),
                (_, Ok(())) => PipelineStats::add(&s.executes, 1),
                (_, Err(e)) => {
                    PipelineStats::add(&s.op_errors, 1);
                    if let Some(ufid) = ufid {
                        // Not installed after all: a later upcall may put it.
                        self.installed.remove(&ufid);
                    }
                    tracing::debug!(error = %e, "datapath refused an operation");
                }
            }
        }
    }
}

impl Actor for DpifWriter {
    type Context = Context<Self>;
}

impl Supervised for DpifWriter {
    fn restarting(&mut self, _: &mut Context<Self>) {
        self.flush_timer = None;
    }
}

impl Handler<FlowOps> for DpifWriter {
    type Result = ();

    fn handle(&mut self, msg: FlowOps, ctx: &mut Context<Self>) {
        let stats = self.stats.clone();
        guarded("dpif_writer", &stats, ctx, || {
            for op in msg.0 {
                self.enqueue(op);
            }
            while self.pending.len() >= self.config.batch_size {
                let batch: Vec<DpifOp> = self.pending.drain(..self.config.batch_size).collect();
                self.write_batch(batch);
            }
        });
        if !self.pending.is_empty() && self.flush_timer.is_none() {
            self.flush_timer = Some(ctx.run_later(self.config.max_latency, |w, ctx| {
                w.flush_timer = None;
                w.write(ctx);
            }));
        }
    }
}

impl Handler<Flush> for DpifWriter {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.write(ctx);
    }
}
