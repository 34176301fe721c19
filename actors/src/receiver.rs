//! The receiver actor: reads upcall batches (up to 64) from the datapath
//! and hands them to handlers, sharded by flow hash so that the upcalls of
//! one flow always meet the same handler.
//!
//! It runs alone on its own arbiter, because reading blocks (briefly: each
//! read waits at most `POLL`, then the actor yields to its mailbox). When a
//! handler has a full window of upcalls in flight the receiver waits (see
//! [`crate::backpressure`]).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use messages::dpif::{Upcall, UPCALL_MAX_BATCH};

use crate::backpressure::Window;
use crate::handler::UpcallHandler;
use crate::protocol::{Poll, SpareUpcalls, UpcallBatch};
use crate::stats::{DropReason, PipelineStats};
use crate::supervisor::guarded;
use messages::dpif::{Dpif, DpifError};

/// Longest a read waits for the first upcall.
const POLL: Duration = Duration::from_millis(20);

/// Emptied buffers the receiver keeps for its next batches.
const MAX_SPARE_BUFFERS: usize = 16;

pub struct Receiver {
    /// Which of the datapath's upcall queues to read.
    queue: usize,
    dpif: Arc<dyn Dpif>,
    /// Each handler with its window of upcalls in flight.
    handlers: Vec<(Addr<UpcallHandler>, Arc<Window>)>,
    /// The batch being read, kept between reads.
    read_buf: Vec<Upcall>,
    /// Buffers back from handlers, to fill again.
    spare: Vec<Vec<Upcall>>,
    /// Where handlers return buffers (set once started).
    me: Option<Recipient<SpareUpcalls>>,
    stats: Arc<PipelineStats>,
}

impl Receiver {
    pub fn new(
        queue: usize,
        dpif: Arc<dyn Dpif>,
        handlers: Vec<(Addr<UpcallHandler>, Arc<Window>)>,
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
            read_buf: Vec::with_capacity(UPCALL_MAX_BATCH),
            spare: Vec::new(),
            me: None,
            stats,
        }
    }

    /// Reads one batch and dispatches it. False when the datapath is gone.
    fn poll_once(&mut self) -> bool {
        let mut upcalls = std::mem::take(&mut self.read_buf);
        upcalls.clear();
        let read = self
            .dpif
            .recv_upcalls(self.queue, UPCALL_MAX_BATCH, POLL, &mut upcalls);
        let keep_going = self.dispatch_all(&mut upcalls, read);
        self.read_buf = upcalls;
        keep_going
    }

    /// Shards what was read (emptying `upcalls`) to the handlers. False
    /// when the datapath is gone.
    fn dispatch_all(&mut self, upcalls: &mut Vec<Upcall>, read: Result<(), DpifError>) -> bool {
        match read {
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
        let mut shards: Vec<Vec<Upcall>> = (0..n)
            .map(|_| self.spare.pop().unwrap_or_default())
            .collect();
        if n == 1 {
            // One handler takes the whole batch: swap buffers, move nothing.
            std::mem::swap(&mut shards[0], upcalls);
        } else {
            for up in upcalls.drain(..) {
                shards[(up.ufid % n as u128) as usize].push(up);
            }
        }
        for (i, shard) in shards.into_iter().enumerate() {
            if shard.is_empty() {
                self.keep_spare(shard);
            } else {
                self.dispatch(i, shard, received);
            }
        }
        true
    }

    fn keep_spare(&mut self, buf: Vec<Upcall>) {
        if self.spare.len() < MAX_SPARE_BUFFERS {
            self.spare.push(buf);
        }
    }

    fn dispatch(&self, handler: usize, upcalls: Vec<Upcall>, received: Instant) {
        let (addr, window) = &self.handlers[handler];
        // Waits while the handler has a full window of upcalls.
        let permit = window.acquire(upcalls.len());
        if !addr.connected() {
            self.stats
                .count_drop(DropReason::HandlerGone, upcalls.len() as u64);
            return;
        }
        addr.do_send(UpcallBatch {
            upcalls,
            received,
            return_to: self.me.clone(),
            permit,
        });
    }
}

impl Actor for Receiver {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address().recipient());
        ctx.notify(Poll);
    }
}

impl Supervised for Receiver {
    /// Rebuilt as new after a panic: the batch being read and the spare
    /// buffers are scratch (the upcalls read and not handed on are lost,
    /// counted by the panic); the queue, datapath and handlers are kept.
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::info!(queue = self.queue, "receiver restarted");
        *self = Receiver::new(
            self.queue,
            self.dpif.clone(),
            std::mem::take(&mut self.handlers),
            self.stats.clone(),
        );
    }
}

impl Handler<SpareUpcalls> for Receiver {
    type Result = ();

    fn handle(&mut self, spare: SpareUpcalls, _: &mut Context<Self>) {
        self.keep_spare(spare.0);
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
