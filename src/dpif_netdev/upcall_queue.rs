//! The bounded queue between the datapath and the receiver: a missed packet
//! whose queue is full is lost (and counted), as with a full netlink socket.
//!
//! It queues whole bursts: a receive loop hands over its buffer of missed
//! upcalls and takes an emptied one back, and a reader with an empty buffer
//! takes a burst the same way, so that an upcall (over 500 bytes) is not
//! copied into the queue and out of it again.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use messages::dpif::Upcall;
use parking_lot::{Condvar, Mutex};

pub struct UpcallQueue {
    state: Mutex<State>,
    /// Signalled when an upcall is queued.
    queued: Condvar,
    /// Signalled when room is made.
    drained: Condvar,
    capacity: usize,
}

#[derive(Default)]
struct State {
    /// Bursts in arrival order.
    bursts: VecDeque<Vec<Upcall>>,
    /// Upcalls in `bursts`.
    len: usize,
    /// Emptied buffers, for the next bursts.
    spare: Vec<Vec<Upcall>>,
}

/// Emptied buffers kept for reuse.
const MAX_SPARE: usize = 16;

impl UpcallQueue {
    pub fn new(capacity: usize) -> Self {
        UpcallQueue {
            state: Mutex::new(State::default()),
            queued: Condvar::new(),
            drained: Condvar::new(),
            capacity: capacity.max(1),
        }
    }

    /// Queues `upcalls` (emptied), as many as fit; when full, waits for
    /// room as long as `keep_waiting` says so (checked every few
    /// milliseconds). Returns how many were lost.
    pub fn push(&self, upcalls: &mut Vec<Upcall>, keep_waiting: impl Fn() -> bool) -> usize {
        let mut st = self.state.lock();
        let mut lost = 0;
        loop {
            let room = self.capacity.saturating_sub(st.len);
            if upcalls.len() <= room {
                if !upcalls.is_empty() {
                    st.len += upcalls.len();
                    let spare = st.spare.pop().unwrap_or_default();
                    let burst = std::mem::replace(upcalls, spare);
                    st.bursts.push_back(burst);
                }
                break;
            }
            if room > 0 {
                let head: Vec<Upcall> = upcalls.drain(..room).collect();
                st.len += room;
                st.bursts.push_back(head);
            }
            if !keep_waiting() {
                lost = upcalls.len();
                upcalls.clear();
                break;
            }
            self.queued.notify_one();
            self.drained.wait_for(&mut st, Duration::from_millis(5));
        }
        drop(st);
        self.queued.notify_one();
        lost
    }

    /// Moves up to `max` upcalls into `out`, waiting up to `timeout` for the
    /// first one. An empty `out` is swapped for the first burst when the
    /// whole burst fits.
    pub fn pop_batch(&self, max: usize, timeout: Duration, out: &mut Vec<Upcall>) {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while st.len == 0 {
            if self.queued.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let mut taken = 0;
        while taken < max {
            let want = max - taken;
            let Some(front) = st.bursts.front_mut() else {
                break;
            };
            if front.len() > want {
                out.extend(front.drain(..want));
                taken += want;
                break;
            }
            let mut burst = st.bursts.pop_front().unwrap_or_default();
            taken += burst.len();
            if out.is_empty() {
                std::mem::swap(out, &mut burst);
            } else {
                out.append(&mut burst);
            }
            if st.spare.len() < MAX_SPARE {
                st.spare.push(burst);
            }
        }
        st.len -= taken;
        drop(st);
        if taken > 0 {
            self.drained.notify_all();
        }
    }

    pub fn len(&self) -> usize {
        self.state.lock().len
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
    fn bursts_change_hands_without_copies() {
        let q = UpcallQueue::new(64);
        // With room for what follows (buffers that go round grow to a
        // reader's batch).
        let mut burst: Vec<Upcall> = Vec::with_capacity(64);
        burst.extend((0..3).map(upcall));
        let pushed_at = burst.as_ptr();
        q.push(&mut burst, || false);
        assert!(burst.is_empty());
        let mut more: Vec<Upcall> = (3..5).map(upcall).collect();
        q.push(&mut more, || false);
        // The reader's empty buffer, with room of its own.
        let mut out: Vec<Upcall> = Vec::with_capacity(64);
        let reader_buffer = out.as_ptr();
        q.pop_batch(64, Duration::ZERO, &mut out);
        assert_eq!(out.as_ptr(), pushed_at, "the first burst itself");
        assert_eq!(
            out.iter().map(|u| u.ufid).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        // The reader's buffer goes to the next burst pushed.
        let mut next = vec![upcall(5)];
        q.push(&mut next, || false);
        assert!(next.is_empty());
        assert!(next.capacity() >= 2);
        let mut out2 = Vec::new();
        q.pop_batch(64, Duration::ZERO, &mut out2);
        assert_eq!(out2.len(), 1);
        assert_ne!(
            next.as_ptr(),
            reader_buffer,
            "a spare buffer, not the one just queued"
        );
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
