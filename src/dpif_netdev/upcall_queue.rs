//! The bounded queue between the datapath and the receiver: a missed packet
//! whose queue is full is lost (and counted), as with a full netlink socket.
//!
//! It queues whole bursts: a receive loop hands over its buffer of missed
//! upcalls and takes an emptied one back, and a reader with an empty buffer
//! takes a burst the same way, so that an upcall (over 300 bytes) is not
//! copied into the queue and out of it again.
//!
//! A receive loop that waits for room (a replay port) is woken once the
//! queue has drained to half, not after every batch a reader takes: each
//! wakeup costs both threads a context switch, and a full queue woken per
//! batch switched the receive loop in and out hundreds of times a second
//! to queue one burst at a time.

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
    /// Waiting writers are woken when the queue holds this many or fewer.
    low_water: usize,
    /// The most upcalls a writer queues at once.
    burst: usize,
    /// Emptied buffers kept for reuse.
    max_spare: usize,
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

impl UpcallQueue {
    /// A queue of `capacity` upcalls, whose writers queue bursts of at
    /// most `burst`. The buffers for a full queue are allocated and
    /// written now, as a netlink socket's buffer exists before the first
    /// upcall: a burst of misses then fills memory already in place
    /// instead of faulting in pages (and growing each buffer from empty)
    /// on the packet path.
    pub fn new(capacity: usize, burst: usize) -> Self {
        let capacity = capacity.max(1);
        let burst = burst.max(1);
        let n_buffers = capacity.div_ceil(burst);
        let spare = (0..n_buffers)
            .map(|_| {
                let mut buf = Vec::with_capacity(burst);
                buf.resize_with(burst, Upcall::empty);
                buf.clear();
                buf
            })
            .collect();
        UpcallQueue {
            state: Mutex::new(State {
                spare,
                ..State::default()
            }),
            queued: Condvar::new(),
            drained: Condvar::new(),
            capacity,
            low_water: capacity / 2,
            burst,
            // Room for every buffer a full queue and its readers hold.
            max_spare: n_buffers + 16,
        }
    }

    /// Queues `upcalls` (emptied). When they do not fit, either waits for
    /// room as long as `keep_waiting` says so (checked every few
    /// milliseconds), or queues as many as fit and loses the rest. Returns
    /// how many were lost.
    pub fn push(&self, upcalls: &mut Vec<Upcall>, keep_waiting: impl Fn() -> bool) -> usize {
        let mut st = self.state.lock();
        let mut lost = 0;
        loop {
            let room = self.capacity.saturating_sub(st.len);
            if upcalls.len() <= room {
                if !upcalls.is_empty() {
                    st.len += upcalls.len();
                    let spare = st
                        .spare
                        .pop()
                        .unwrap_or_else(|| Vec::with_capacity(self.burst));
                    let burst = std::mem::replace(upcalls, spare);
                    st.bursts.push_back(burst);
                }
                break;
            }
            let wait = keep_waiting();
            // A waiting writer queues its burst whole once there is room,
            // unless the burst is larger than the whole queue.
            if room > 0 && (!wait || upcalls.len() > self.capacity) {
                let head: Vec<Upcall> = upcalls.drain(..room).collect();
                st.len += room;
                st.bursts.push_back(head);
            }
            if !wait {
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
    /// first one. Bursts are taken whole: an empty `out` is swapped for the
    /// first one, and a later one is appended only if it fits (a burst is
    /// split only when it alone is larger than `max`).
    pub fn pop_batch(&self, max: usize, timeout: Duration, out: &mut Vec<Upcall>) {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while st.len == 0 {
            if self.queued.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        let mut taken = 0;
        while let Some(front) = st.bursts.front_mut() {
            let want = max - taken;
            if front.len() > want {
                if taken == 0 {
                    out.extend(front.drain(..want));
                    taken = want;
                }
                break;
            }
            let mut burst = st.bursts.pop_front().unwrap_or_default();
            taken += burst.len();
            if out.is_empty() {
                std::mem::swap(out, &mut burst);
            } else {
                out.append(&mut burst);
            }
            if st.spare.len() < self.max_spare {
                st.spare.push(burst);
            }
        }
        st.len -= taken;
        let wake = taken > 0 && st.len <= self.low_water;
        drop(st);
        if wake {
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
            mru: 0,
        }
    }

    #[test]
    fn bounded_and_batched_in_order() {
        let q = UpcallQueue::new(3, 4);
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
        let q = UpcallQueue::new(64, 64);
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
    fn a_writer_gets_back_a_buffer_with_room_for_a_burst() {
        let q = UpcallQueue::new(128, 64);
        let mut taken = Vec::new();
        for _ in 0..3 {
            let mut burst: Vec<Upcall> = (0..2).map(upcall).collect();
            q.push(&mut burst, || false);
            assert!(burst.is_empty() && burst.capacity() >= 64);
            taken.push(burst);
        }
    }

    #[test]
    fn later_bursts_are_taken_only_whole() {
        let q = UpcallQueue::new(256, 64);
        for first in [0, 40, 80] {
            let mut burst: Vec<Upcall> = (first..first + 40).map(upcall).collect();
            q.push(&mut burst, || false);
        }
        let mut out = Vec::new();
        q.pop_batch(64, Duration::ZERO, &mut out);
        assert_eq!(out.len(), 40, "the second burst does not fit whole");
        out.clear();
        q.pop_batch(30, Duration::ZERO, &mut out);
        assert_eq!(out.len(), 30, "a burst larger than the batch is split");
        out.clear();
        q.pop_batch(64, Duration::ZERO, &mut out);
        assert_eq!(
            out.iter().map(|u| u.ufid).collect::<Vec<_>>(),
            (70..120).collect::<Vec<_>>()
        );
    }

    #[test]
    fn push_wait_resumes_when_drained() {
        let q = std::sync::Arc::new(UpcallQueue::new(1, 1));
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
