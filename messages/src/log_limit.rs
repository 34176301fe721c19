//! Rate-limited log lines, as OVS's `VLOG_*_RL`: a line that a peer can
//! make repeat (a failing `accept`, a bad upcall) is logged at most at a
//! steady rate with a burst allowance, and the next line logged says how
//! many were suppressed meanwhile.

use std::sync::Mutex;
use std::time::Instant;

/// A token bucket: `per_minute` lines a minute, at most `burst` at once.
pub struct RateLimit {
    per_minute: u32,
    burst: u32,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: u32,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub const fn new(per_minute: u32, burst: u32) -> RateLimit {
        RateLimit {
            per_minute,
            burst,
            state: Mutex::new(Bucket {
                tokens: burst,
                last: None,
                suppressed: 0,
            }),
        }
    }

    /// `Some(n)` if a line may be logged now (`n` lines were suppressed
    /// since the last one logged), `None` if it must be suppressed.
    pub fn check(&self) -> Option<u64> {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if let Some(last) = b.last {
            let earned = now.duration_since(last).as_secs_f64() * f64::from(self.per_minute) / 60.0;
            if earned >= 1.0 {
                b.tokens = (u64::from(b.tokens) + earned as u64).min(u64::from(self.burst)) as u32;
                b.last = Some(now);
            }
        } else {
            b.last = Some(now);
        }
        if b.tokens == 0 {
            b.suppressed += 1;
            return None;
        }
        b.tokens -= 1;
        Some(std::mem::take(&mut b.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_lines_are_counted_not_logged() {
        let rl = RateLimit::new(1, 3);
        assert_eq!(rl.check(), Some(0));
        assert_eq!(rl.check(), Some(0));
        assert_eq!(rl.check(), Some(0));
        for _ in 0..1000 {
            assert_eq!(rl.check(), None);
        }
        // A minute later one line passes and reports the 1000.
        rl.state.lock().unwrap().last = Some(Instant::now() - std::time::Duration::from_secs(61));
        assert_eq!(rl.check(), Some(1000));
        assert_eq!(rl.check(), None);
    }
}
