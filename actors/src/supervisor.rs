//! Supervision: every actor runs under actix's `Supervisor`, which restarts
//! an actor whose context *stops*. A panic inside a message handler would
//! instead kill the actor's task for good (actix 0.13 does not catch it), so
//! handlers run their work through [`guarded`], which catches the panic,
//! counts it, and stops the context: the supervisor then restarts the actor
//! with the same mailbox, and only the message being handled is lost.

use std::panic::{catch_unwind, AssertUnwindSafe};

use actix::ActorContext;

use crate::stats::PipelineStats;

/// Runs `work`; if it panics, logs the panic, counts a restart of `actor`
/// and stops `ctx` so that the actor's supervisor restarts it.
pub fn guarded<C: ActorContext, R>(
    actor: &'static str,
    stats: &PipelineStats,
    ctx: &mut C,
    work: impl FnOnce() -> R,
) -> Option<R> {
    match catch_unwind(AssertUnwindSafe(work)) {
        Ok(r) => Some(r),
        Err(payload) => {
            let why = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            tracing::error!(actor, panic = %why, "actor panicked; restarting it");
            stats.count_restart(actor);
            ctx.stop();
            None
        }
    }
}
