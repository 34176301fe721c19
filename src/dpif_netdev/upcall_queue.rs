//! The bounded queue between the datapath and the receiver: a missed packet
//! whose queue is full is lost (and counted), as with a full netlink socket.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use messages::dpif::Upcall;
use parking_lot::{Condvar, Mutex};

pub struct UpcallQueue {
    items: Mutex<VecDeque<Upcall>>,
    /// Signalled when an upcall is queued.
    queued: Condvar,
    /// Signalled when room is made.
    drained: Condvar,
    capacity: usize,
}

impl UpcallQueue {
    pub fn new(capacity: usize) -> Self {
        UpcallQueue {
            items: Mutex::new(VecDeque::with_capacity(capacity.min(1 << 16))),
            queued: Condvar::new(),
            drained: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues `upcalls` (emptied), as many as fit; when full, waits for
    /// room as long as `keep_waiting` says so (checked every few
    /// milliseconds). Returns how many were lost.
    pub fn push(&self, upcalls: &mut Vec<Upcall>, keep_waiting: impl Fn() -> bool) -> usize {
        let mut pending = upcalls.drain(..);
        let mut items = self.items.lock();
        let mut lost = 0;
        loop {
            let room = self.capacity.saturating_sub(items.len());
            items.extend(pending.by_ref().take(room));
            if pending.len() == 0 {
                break;
            }
            if !keep_waiting() {
                lost = pending.len();
                break;
            }
            self.queued.notify_one();
            self.drained.wait_for(&mut items, Duration::from_millis(5));
        }
        drop(items);
        self.queued.notify_one();
        lost
    }

    /// Moves up to `max` upcalls into `out`, waiting up to `timeout` for the
    /// first one.
    pub fn pop_batch(&self, max: usize, timeout: Duration, out: &mut Vec<Upcall>) {
        let deadline = Instant::now() + timeout;
        let mut items = self.items.lock();
        while items.is_empty() {
            if self.queued.wait_until(&mut items, deadline).timed_out() {
                break;
            }
        }
        let n = items.len().min(max);
        out.extend(items.drain(..n));
        drop(items);
        if n > 0 {
            self.drained.notify_all();
        }
    }

    pub fn len(&self) -> usize {
        self.items.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::dpif::UpcallKind;
    use messages::Flow;

    fn upcall(n: u8) -> Upcall {
        Upcall {
            kind: UpcallKind::Miss,
            packet: vec![n],
            key: Flow::default(),
            ufid: n as u128,
        }
    }

    #[test]
    fn bounded_and_batched_in_order() {
        let q = UpcallQueue::new(3);
        let mut burst: Vec<Upcall> = (0..4).map(upcall).collect();
        assert_eq!(q.push(&mut burst, || false), 1);
        assert!(burst.is_empty());
        assert_eq!(q.push(&mut vec![upcall(4)], || false), 1);
        let mut out = Vec::new();
        q.pop_batch(2, Duration::ZERO, &mut out);
        assert_eq!(out.iter().map(|u| u.ufid).collect::<Vec<_>>(), vec![0, 1]);
        q.pop_batch(64, Duration::ZERO, &mut out);
        assert_eq!(out.len(), 3);
        q.pop_batch(64, Duration::from_millis(1), &mut out);
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn push_wait_resumes_when_drained() {
        let q = std::sync::Arc::new(UpcallQueue::new(1));
        assert_eq!(q.push(&mut vec![upcall(0)], || false), 0);
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.push(&mut vec![upcall(1)], || true) == 0);
        let mut out = Vec::new();
        while out.len() < 2 {
            q.pop_batch(1, Duration::from_millis(50), &mut out);
        }
        assert!(t.join().unwrap());
        assert_eq!(out[1].ufid, 1);
    }
}
