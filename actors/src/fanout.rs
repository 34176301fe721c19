//! Messages for the OpenFlow connections that want them (OVS's
//! asynchronous messages: packet-ins, flow-removed): each subscriber has a
//! bounded queue; a full one drops the message for that subscriber and
//! counts it, so a slow controller never holds up the sender.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::channel::mpsc;
use parking_lot::Mutex;

/// Messages a subscriber may have queued before more are dropped.
pub const QUEUE_LEN: usize = 1024;

struct Subscriber<T> {
    id: u64,
    queue: mpsc::Sender<Arc<T>>,
    dropped: Arc<AtomicU64>,
}

/// The subscribers of one kind of message.
pub struct Fanout<T> {
    subscribers: Mutex<Vec<Subscriber<T>>>,
    next_id: AtomicU64,
    /// Messages queued for at least one subscriber.
    pub delivered: AtomicU64,
    /// Copies dropped because a subscriber's queue was full.
    pub queue_full: AtomicU64,
}

impl<T> Default for Fanout<T> {
    fn default() -> Self {
        Fanout {
            subscribers: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            queue_full: AtomicU64::new(0),
        }
    }
}

/// What became of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Subscribers there were (0: nobody got it).
    pub subscribers: usize,
    /// Of those, the ones whose full queue dropped it.
    pub queue_full: usize,
}

/// One subscriber's queue; dropping it unsubscribes.
pub struct Subscription<T> {
    id: u64,
    pub queue: mpsc::Receiver<Arc<T>>,
    /// Messages this subscriber lost to a full queue.
    pub dropped: Arc<AtomicU64>,
    from: Arc<Fanout<T>>,
}

impl<T> Drop for Subscription<T> {
    fn drop(&mut self) {
        self.from.subscribers.lock().retain(|s| s.id != self.id);
    }
}

impl<T> Fanout<T> {
    pub fn subscribe(self: &Arc<Self>) -> Subscription<T> {
        // A sender's capacity is the buffer plus one per sender.
        let (tx, rx) = mpsc::channel(QUEUE_LEN - 1);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let dropped = Arc::new(AtomicU64::new(0));
        self.subscribers.lock().push(Subscriber {
            id,
            queue: tx,
            dropped: dropped.clone(),
        });
        Subscription {
            id,
            queue: rx,
            dropped,
            from: self.clone(),
        }
    }

    /// Queues `m` for every subscriber.
    pub fn deliver(&self, m: T) -> Delivery {
        let m = Arc::new(m);
        let mut subs = self.subscribers.lock();
        let mut d = Delivery {
            subscribers: subs.len(),
            queue_full: 0,
        };
        if subs.is_empty() {
            return d;
        }
        for s in subs.iter_mut() {
            if let Err(e) = s.queue.try_send(m.clone()) {
                if e.is_full() {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    self.queue_full.fetch_add(1, Ordering::Relaxed);
                    d.queue_full += 1;
                }
            }
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        d
    }

    pub fn subscribers(&self) -> usize {
        self.subscribers.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[test]
    fn a_full_queue_drops_and_counts_and_unsubscribing_stops_delivery() {
        let fanout = Arc::new(Fanout::<u32>::default());
        assert_eq!(fanout.deliver(1).subscribers, 0, "nobody subscribed");
        let mut sub = fanout.subscribe();
        for i in 0..QUEUE_LEN as u32 + 5 {
            let d = fanout.deliver(i);
            assert_eq!(d.subscribers, 1);
            assert_eq!(d.queue_full, usize::from(i >= QUEUE_LEN as u32));
        }
        assert_eq!(sub.dropped.load(Ordering::Relaxed), 5);
        assert_eq!(fanout.queue_full.load(Ordering::Relaxed), 5);
        let first = futures::executor::block_on(sub.queue.next()).unwrap();
        assert_eq!(*first, 0);
        drop(sub);
        assert_eq!(fanout.subscribers(), 0);
        assert_eq!(fanout.deliver(2).subscribers, 0);
    }
}
