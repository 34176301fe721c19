//! Bounded mailboxes between the stages of the upcall path. A stage that
//! finds the next one's mailbox full waits, so that pressure backs up,
//! stage by stage, into the datapath's upcall queue, where overflow is
//! counted as lost (as a full netlink socket loses upcalls in OVS). Work in
//! flight stays a few batches deep: its buffers are reused while still in
//! cache, instead of a backlog of thousands of ops asking for fresh pages.

use std::time::Duration;

use actix::dev::ToEnvelope;
use actix::prelude::*;

/// Pause before retrying an actor whose mailbox is full.
const BACKOFF: Duration = Duration::from_micros(50);

/// Sends `msg` to `to`, waiting while its mailbox is full. Gives the
/// message back if the actor is gone for good.
pub fn send_waiting<A, M>(to: &Addr<A>, mut msg: M) -> Result<(), M>
where
    A: Actor + Handler<M>,
    A::Context: ToEnvelope<A, M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    loop {
        match to.try_send(msg) {
            Ok(()) => return Ok(()),
            Err(SendError::Full(m)) => {
                msg = m;
                std::thread::sleep(BACKOFF);
            }
            Err(SendError::Closed(m)) => return Err(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// Takes its time over each message, behind a one-message mailbox.
    struct Slow {
        seen: Arc<AtomicU32>,
        in_order: Arc<AtomicU32>,
    }

    impl Actor for Slow {
        type Context = Context<Self>;
        fn started(&mut self, ctx: &mut Context<Self>) {
            ctx.set_mailbox_capacity(1);
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Item(u32);

    impl Handler<Item> for Slow {
        type Result = ();
        fn handle(&mut self, item: Item, _: &mut Context<Self>) {
            std::thread::sleep(Duration::from_micros(200));
            if item.0 == self.seen.fetch_add(1, Ordering::SeqCst) {
                self.in_order.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    fn start_slow(sys: &SystemRunner) -> (Addr<Slow>, Arc<AtomicU32>, Arc<AtomicU32>) {
        let seen = Arc::new(AtomicU32::new(0));
        let in_order = Arc::new(AtomicU32::new(0));
        let (s, o) = (seen.clone(), in_order.clone());
        let addr = sys.block_on(async move {
            Slow::start_in_arbiter(&Arbiter::new().handle(), move |_| Slow {
                seen: s,
                in_order: o,
            })
        });
        (addr, seen, in_order)
    }

    #[test]
    fn a_full_mailbox_delays_the_sender_and_loses_nothing() {
        let sys = System::new();
        // Sent without waiting, some of 50 quick messages find the
        // mailbox full...
        let (addr, _, _) = start_slow(&sys);
        let refused = std::thread::spawn(move || {
            (0..50)
                .filter(|i| matches!(addr.try_send(Item(*i)), Err(SendError::Full(_))))
                .count()
        })
        .join()
        .unwrap();
        assert!(
            refused > 0,
            "the mailbox never filled: the test proves nothing"
        );
        // ...and sent waiting, all of them arrive, in order.
        let (addr, seen, in_order) = start_slow(&sys);
        std::thread::spawn(move || {
            for i in 0..50 {
                assert!(send_waiting(&addr, Item(i)).is_ok());
            }
        })
        .join()
        .unwrap();
        sys.block_on(async {
            while seen.load(Ordering::SeqCst) < 50 {
                actix::clock::sleep(Duration::from_millis(1)).await;
            }
        });
        assert_eq!(in_order.load(Ordering::SeqCst), 50);
    }
}
