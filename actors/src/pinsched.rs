//! The per-controller packet-in rate limit, as OVS's `pinsched`: a token
//! bucket of `burst` packets refilled at `rate` packets a second. While
//! the bucket has a token and nothing waits, a packet-in goes at once
//! (`bypassed`); otherwise it waits in a queue of its input port
//! (`queued`), and the queues are drained round-robin, one port at a
//! time, as tokens come back, so one busy port cannot starve the others.
//! All queues together hold at most `burst` packets: one more drops the
//! oldest packet of the longest queue (`dropped`).
//!
//! Pure: the caller passes the time and writes out what comes back.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// OVS's default rate when a limit is asked for without one.
pub const DEFAULT_RATE: u32 = 1000;
/// The most packets one call of [`PinSched::run`] releases (OVS: 50), so
/// that a connection's other work is not held up by a long backlog.
const RUN_BATCH: usize = 50;

/// What a scheduler did with the packets it was given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PinStats {
    /// Sent at once, the limit not reached.
    pub bypassed: u64,
    /// Queued because the limit was reached.
    pub queued: u64,
    /// Dropped because the queues held `burst` packets already.
    pub dropped: u64,
}

/// One connection's scheduler for one kind of packet-in.
#[derive(Debug)]
pub struct PinSched<T> {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
    queues: BTreeMap<u32, VecDeque<T>>,
    n_queued: usize,
    /// The port whose queue is served next (or the next one after it).
    next_port: u32,
    pub stats: PinStats,
}

/// The limits OVS uses for a configured rate and burst: a rate of 0 is
/// [`DEFAULT_RATE`], a burst of 0 a quarter of the rate, never below 1.
pub fn limits(rate: u32, burst: u32) -> (u32, u32) {
    let rate = if rate == 0 { DEFAULT_RATE } else { rate };
    let burst = if burst == 0 { rate / 4 } else { burst };
    (rate, burst.max(1))
}

impl<T> PinSched<T> {
    /// A scheduler with a full bucket.
    pub fn new(rate: u32, burst: u32, now: Instant) -> PinSched<T> {
        let (rate, burst) = limits(rate, burst);
        PinSched {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
            queues: BTreeMap::new(),
            n_queued: 0,
            next_port: 0,
            stats: PinStats::default(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    fn take_token(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// A packet-in from `port`: `Some` to send now, `None` when it waits
    /// (possibly pushing out an older one).
    pub fn send(&mut self, port: u32, packet: T, now: Instant) -> Option<T> {
        if self.n_queued == 0 && self.take_token(now) {
            self.stats.bypassed += 1;
            return Some(packet);
        }
        if self.n_queued as f64 >= self.burst {
            self.drop_oldest_of_longest();
        }
        self.queues.entry(port).or_default().push_back(packet);
        self.n_queued += 1;
        self.stats.queued += 1;
        None
    }

    fn drop_oldest_of_longest(&mut self) {
        let Some((&port, _)) = self.queues.iter().rev().max_by_key(|(_, q)| q.len()) else {
            return;
        };
        self.pop(port);
        self.stats.dropped += 1;
    }

    fn pop(&mut self, port: u32) -> Option<T> {
        let q = self.queues.get_mut(&port)?;
        let p = q.pop_front();
        if q.is_empty() {
            self.queues.remove(&port);
        }
        self.n_queued -= usize::from(p.is_some());
        p
    }

    /// Releases queued packets for the tokens there are now (at most
    /// [`RUN_BATCH`]), one port after another.
    pub fn run(&mut self, now: Instant, out: &mut Vec<T>) {
        for _ in 0..RUN_BATCH {
            if self.n_queued == 0 || !self.take_token(now) {
                return;
            }
            let port = match self.queues.range(self.next_port..).next() {
                Some((&p, _)) => p,
                None => *self.queues.keys().next().expect("a packet is queued"),
            };
            out.extend(self.pop(port));
            self.next_port = port.wrapping_add(1);
        }
    }

    /// When [`PinSched::run`] will have something to release: `None`
    /// while nothing waits.
    pub fn next_run(&self, now: Instant) -> Option<Instant> {
        if self.n_queued == 0 {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        let have = (self.tokens + elapsed * self.rate).min(self.burst);
        let wait = ((1.0 - have) / self.rate).max(0.0);
        Some(now + Duration::from_secs_f64(wait))
    }

    /// Packets waiting now.
    pub fn backlog(&self) -> usize {
        self.n_queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_ovs() {
        assert_eq!(limits(0, 0), (1000, 250));
        assert_eq!(limits(100, 0), (100, 25));
        assert_eq!(limits(2, 0), (2, 1));
        assert_eq!(limits(500, 7), (500, 7));
    }

    #[test]
    fn a_burst_passes_then_packets_wait_and_leave_at_the_rate() {
        let t0 = Instant::now();
        let mut s = PinSched::new(100, 10, t0);
        for i in 0..10 {
            assert_eq!(s.send(1, i, t0), Some(i), "within the burst");
        }
        assert_eq!(s.send(1, 10, t0), None);
        assert_eq!(s.backlog(), 1);
        // One token every 10 ms.
        let ready = s.next_run(t0).unwrap();
        assert!(ready > t0 + Duration::from_millis(9) && ready <= t0 + Duration::from_millis(11));
        let mut out = Vec::new();
        s.run(t0 + Duration::from_millis(5), &mut out);
        assert!(out.is_empty());
        s.run(t0 + Duration::from_millis(11), &mut out);
        assert_eq!(out, vec![10]);
        assert_eq!(s.next_run(t0 + Duration::from_millis(11)), None);
        assert_eq!(s.send(1, 11, t0 + Duration::from_millis(11)), None);
        // While a packet waits, a new one queues behind it even when the
        // bucket has tokens again.
        assert_eq!(s.send(1, 12, t0 + Duration::from_millis(40)), None);
        s.run(t0 + Duration::from_millis(40), &mut out);
        assert_eq!(out, vec![10, 11, 12]);
        assert_eq!(
            s.stats,
            PinStats {
                bypassed: 10,
                queued: 3,
                dropped: 0
            }
        );
    }

    #[test]
    fn full_queues_drop_the_oldest_of_the_longest_and_ports_take_turns() {
        let t0 = Instant::now();
        let mut s = PinSched::new(100, 4, t0);
        for i in 0..4 {
            s.send(9, i, t0);
        }
        // Port 1 floods; port 2 sends one.
        for i in 10..14 {
            assert_eq!(s.send(1, i, t0), None);
        }
        assert_eq!(s.send(2, 20, t0), None);
        assert_eq!(s.backlog(), 4);
        assert_eq!(s.stats.dropped, 1, "10 made room for 20");
        let mut out = Vec::new();
        s.run(t0 + Duration::from_secs(1), &mut out);
        // Round-robin from port 0: port 1's oldest left, then port 2, then port 1.
        assert_eq!(out, vec![11, 20, 12, 13]);
        assert_eq!(s.backlog(), 0);
    }

    #[test]
    fn run_releases_at_most_a_batch() {
        let t0 = Instant::now();
        let mut s = PinSched::new(1000, 200, t0);
        for i in 0..200 {
            s.send(1, i, t0);
        }
        for i in 0..120 {
            assert_eq!(s.send(u32::from(i % 3 == 0), i, t0), None);
        }
        let mut out = Vec::new();
        s.run(t0 + Duration::from_secs(1), &mut out);
        assert_eq!(out.len(), RUN_BATCH);
        assert_eq!(s.backlog(), 120 - RUN_BATCH);
    }
}
