//! Bounded work in flight between the stages of the upcall path. A stage
//! takes a [`Permit`] from the next stage's [`Window`] before sending it
//! work and the permit travels with the message; it is given back when the
//! message is dropped (handled, or lost with an actor that died). A stage
//! that finds the window full blocks until room is made, so pressure backs
//! up, stage by stage, into the datapath's upcall queue, where overflow is
//! counted as lost (as a full netlink socket loses upcalls in OVS). Work in
//! flight stays a few batches deep: its buffers are reused while still in
//! cache, instead of a backlog of thousands of ops asking for fresh pages.
//!
//! A window blocks on a condition variable, not by polling the mailbox:
//! the waiting thread costs nothing until the consumer makes room. It is
//! woken once the window has drained to half, not as each message is
//! done: on a shared core, a wakeup per message would switch producer and
//! consumer after every batch; this way each runs several batches at a go
//! while the other still has half a window of work.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// How much work may be in flight to one consumer.
pub struct Window {
    in_flight: Mutex<usize>,
    room: Condvar,
    limit: usize,
    /// Waiters are woken when `in_flight` drops to this.
    low_water: usize,
}

/// `n` units of work in flight; given back when dropped.
pub struct Permit {
    window: Arc<Window>,
    n: usize,
}

impl Window {
    pub fn new(limit: usize) -> Arc<Window> {
        let limit = limit.max(1);
        Arc::new(Window {
            in_flight: Mutex::new(0),
            room: Condvar::new(),
            limit,
            low_water: limit / 2,
        })
    }

    /// Waits until `n` more units fit, then takes them. Work larger than
    /// the whole window goes alone, once nothing else is in flight.
    pub fn acquire(self: &Arc<Self>, n: usize) -> Permit {
        let mut in_flight = self.in_flight.lock();
        while *in_flight > 0 && *in_flight + n > self.limit {
            // Bounded waits only guard against a lost wakeup.
            self.room
                .wait_for(&mut in_flight, Duration::from_millis(100));
        }
        *in_flight += n;
        Permit {
            window: self.clone(),
            n,
        }
    }

    /// Units in flight now.
    pub fn in_flight(&self) -> usize {
        *self.in_flight.lock()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut in_flight = self.window.in_flight.lock();
        *in_flight -= self.n;
        let wake = *in_flight <= self.window.low_water;
        drop(in_flight);
        if wake {
            self.window.room.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::JoinHandle;

    /// A thread taking `n` units of `window`; the flag says it got them.
    fn waiter(window: &Arc<Window>, n: usize) -> (JoinHandle<Permit>, Arc<AtomicBool>) {
        let taken = Arc::new(AtomicBool::new(false));
        let (window, flag) = (window.clone(), taken.clone());
        let handle = std::thread::spawn(move || {
            let p = window.acquire(n);
            flag.store(true, Ordering::SeqCst);
            p
        });
        (handle, taken)
    }

    #[test]
    fn a_full_window_blocks_until_permits_come_back() {
        let window = Window::new(10);
        let first = window.acquire(6);
        let second = window.acquire(4);
        assert_eq!(window.in_flight(), 10);
        let (waiting, taken) = waiter(&window, 5);
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !taken.load(Ordering::SeqCst),
            "took room that was not there"
        );
        drop(second);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!taken.load(Ordering::SeqCst), "4 free units do not fit 5");
        drop(first);
        let third = waiting.join().unwrap();
        assert_eq!(window.in_flight(), 5);
        drop(third);
        assert_eq!(window.in_flight(), 0);
    }

    #[test]
    fn waiters_wake_once_the_window_drained_to_half() {
        let window = Window::new(10);
        let (a, b, c) = (window.acquire(4), window.acquire(4), window.acquire(2));
        let (waiting, taken) = waiter(&window, 2);
        std::thread::sleep(Duration::from_millis(20));
        // Room for 2 now, but 8 in flight is above half: no wakeup yet.
        drop(c);
        std::thread::sleep(Duration::from_millis(20));
        assert!(!taken.load(Ordering::SeqCst), "woken above half");
        drop(b);
        let p = waiting.join().unwrap();
        assert_eq!(window.in_flight(), 6);
        drop((a, p));
        assert_eq!(window.in_flight(), 0);
    }

    #[test]
    fn work_larger_than_the_window_goes_alone() {
        let window = Window::new(4);
        let big = window.acquire(9);
        assert_eq!(window.in_flight(), 9);
        drop(big);
        let _small = window.acquire(3);
        assert_eq!(window.in_flight(), 3);
    }
}
