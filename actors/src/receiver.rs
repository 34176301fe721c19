//! The receiver actor: reads upcall batches (up to 64) from the datapath
//! and hands them to handlers, sharded by flow hash so that the upcalls of
//! one flow always meet the same handler.
//!
//! It runs alone on its own arbiter, because reading blocks (briefly: each
//! read waits at most `POLL`, then the actor yields to its mailbox). When a
//! handler's mailbox is full the receiver waits, so pressure backs up into
//! the datapath's upcall queue, where overflow is counted as lost.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use messages::dpif::Upcall;

use crate::dpif::{Dpif, DpifError};
use crate::handler::{UpcallBatch, UpcallHandler};
use crate::stats::{DropReason, PipelineStats};
use crate::supervisor::guarded;

/// Upcalls read at once (OVS's `UPCALL_MAX_BATCH`).
pub const UPCALL_MAX_BATCH: usize = 64;
/// Longest a read waits for the first upcall.
const POLL: Duration = Duration::from_millis(20);
/// Pause before retrying a handler whose mailbox is full.
const BACKOFF: Duration = Duration::from_micros(50);

/// Read the next batch (sent by the receiver to itself).
#[derive(Message)]
#[rtype(result = "()")]
struct Poll;

pub struct Receiver {
    /// Which of the datapath's upcall queues to read.
    queue: usize,
    dpif: Arc<dyn Dpif>,
    handlers: Vec<Addr<UpcallHandler>>,
    stats: Arc<PipelineStats>,
}

impl Receiver {
    pub fn new(
        queue: usize,
        dpif: Arc<dyn Dpif>,
        handlers: Vec<Addr<UpcallHandler>>,
        stats: Arc<PipelineStats>,
    ) -> Self {
        assert!(
            !handlers.is_empty(),
            "a receiver needs at least one handler"
        );
        Receiver {
            queue,
            dpif,
            handlers,
            stats,
        }
    }

    /// Reads one batch and dispatches it. False when the datapath is gone.
    fn poll_once(&mut self) -> bool {
        let mut upcalls = Vec::with_capacity(UPCALL_MAX_BATCH);
        match self
            .dpif
            .recv_upcalls(self.queue, UPCALL_MAX_BATCH, POLL, &mut upcalls)
        {
            Ok(()) => {}
            Err(DpifError::Closed) => return false,
            Err(e) => {
                tracing::warn!(error = %e, "reading upcalls failed");
                // Do not spin on a persistent error.
                std::thread::sleep(POLL);
                return true;
            }
        }
        if upcalls.is_empty() {
            return true;
        }
        let received = Instant::now();
        self.stats
            .upcalls_received
            .fetch_add(upcalls.len() as u64, Ordering::Relaxed);
        let n = self.handlers.len();
        let mut shards: Vec<Vec<Upcall>> = (0..n).map(|_| Vec::new()).collect();
        for up in upcalls {
            shards[(up.ufid % n as u128) as usize].push(up);
        }
        for (i, shard) in shards.into_iter().enumerate() {
            if !shard.is_empty() {
                self.dispatch(
                    i,
                    UpcallBatch {
                        upcalls: shard,
                        received,
                    },
                );
            }
        }
        true
    }

    fn dispatch(&self, handler: usize, mut batch: UpcallBatch) {
        loop {
            match self.handlers[handler].try_send(batch) {
                Ok(()) => return,
                Err(SendError::Full(b)) => {
                    batch = b;
                    std::thread::sleep(BACKOFF);
                }
                Err(SendError::Closed(b)) => {
                    self.stats
                        .count_drop(DropReason::HandlerGone, b.upcalls.len() as u64);
                    return;
                }
            }
        }
    }
}

impl Actor for Receiver {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.notify(Poll);
    }
}

impl Supervised for Receiver {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::info!(queue = self.queue, "receiver restarted");
    }
}

impl Handler<Poll> for Receiver {
    type Result = ();

    fn handle(&mut self, _: Poll, ctx: &mut Context<Self>) {
        let stats = self.stats.clone();
        match guarded("receiver", &stats, ctx, || self.poll_once()) {
            Some(true) => ctx.notify(Poll),
            Some(false) => {
                tracing::info!(queue = self.queue, "datapath closed; receiver stops");
            }
            None => {}
        }
    }
}
