//! Packets for the controllers: what a `controller` action sent up, on
//! its way from the handlers to the OpenFlow connections that want it.
//!
//! Both datapaths deliver a `controller` action as a `userspace` action
//! upcall whose userdata is a [`ControllerUserdata`]: the first packet of
//! a flow as well as later ones (the handler executes the first packet's
//! actions like any other, and that execution upcalls it), so there is one
//! path for every packet-in. A handler hands the packet to
//! [`PacketIns::deliver`], which copies a reference into the bounded queue
//! of each subscribed connection; a full queue drops the packet for that
//! connection and counts it (OVS's per-controller packet-in queue).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::channel::mpsc;
use messages::flow::Flow;
use parking_lot::Mutex;

/// Packet-ins a connection may have queued before more are dropped.
pub const QUEUE_LEN: usize = 1024;

/// Why the controller gets the packet (OpenFlow's `ofp_packet_in_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerReason {
    /// A table-miss rule (priority 0, matching everything) sent it.
    NoMatch = 0,
    /// Any other `controller` action.
    Action = 1,
}

/// What translation puts in the userdata of the `userspace` action that
/// sends a packet to the controller: the bytes `b"ctrl"`, then `max_len`
/// (big endian), the reason, the table and the rule's cookie (big endian).
/// The datapath hands it back with the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerUserdata {
    pub max_len: u16,
    pub reason: ControllerReason,
    pub table: u8,
    pub cookie: u64,
}

const MAGIC: &[u8; 4] = b"ctrl";
const USERDATA_LEN: usize = 16;

impl ControllerUserdata {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(USERDATA_LEN);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&self.max_len.to_be_bytes());
        v.push(self.reason as u8);
        v.push(self.table);
        v.extend_from_slice(&self.cookie.to_be_bytes());
        v
    }

    /// None for userdata that is not a controller action's.
    pub fn decode(b: &[u8]) -> Option<ControllerUserdata> {
        if b.len() != USERDATA_LEN || &b[..4] != MAGIC {
            return None;
        }
        let reason = match b[6] {
            0 => ControllerReason::NoMatch,
            1 => ControllerReason::Action,
            _ => return None,
        };
        Some(ControllerUserdata {
            max_len: u16::from_be_bytes([b[4], b[5]]),
            reason,
            table: b[7],
            cookie: u64::from_be_bytes(b[8..16].try_into().ok()?),
        })
    }
}

/// A packet for the controllers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerPacket {
    pub userdata: ControllerUserdata,
    /// The datapath's key for the packet as the actions before the
    /// `controller` action left it (its metadata: in_port, tunnel, ct).
    pub key: Flow,
    /// The whole frame; each connection truncates it to `max_len`.
    pub packet: Vec<u8>,
}

struct Subscriber {
    id: u64,
    queue: mpsc::Sender<Arc<ControllerPacket>>,
    dropped: Arc<AtomicU64>,
}

/// The connections that want packet-ins, each with a bounded queue.
#[derive(Default)]
pub struct PacketIns {
    subscribers: Mutex<Vec<Subscriber>>,
    next_id: AtomicU64,
    /// Packets queued for at least one connection.
    pub delivered: AtomicU64,
    /// Copies dropped because a connection's queue was full.
    pub queue_full: AtomicU64,
}

/// One connection's queue of packet-ins; dropping it unsubscribes.
pub struct Subscription {
    id: u64,
    pub queue: mpsc::Receiver<Arc<ControllerPacket>>,
    /// Packets this connection lost to a full queue.
    pub dropped: Arc<AtomicU64>,
    from: Arc<PacketIns>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.from.subscribers.lock().retain(|s| s.id != self.id);
    }
}

impl PacketIns {
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
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

    /// Queues `p` for every subscribed connection. False when there is
    /// none (the packet is then dropped by the caller, counted as having
    /// no controller).
    pub fn deliver(&self, p: ControllerPacket) -> bool {
        let p = Arc::new(p);
        let mut subs = self.subscribers.lock();
        if subs.is_empty() {
            return false;
        }
        for s in subs.iter_mut() {
            if let Err(e) = s.queue.try_send(p.clone()) {
                if e.is_full() {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    self.queue_full.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.delivered.fetch_add(1, Ordering::Relaxed);
        true
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
    fn userdata_round_trips_and_foreign_userdata_is_refused() {
        let u = ControllerUserdata {
            max_len: 128,
            reason: ControllerReason::NoMatch,
            table: 3,
            cookie: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(ControllerUserdata::decode(&u.encode()), Some(u));
        assert_eq!(ControllerUserdata::decode(b"ctrl\xff\xff"), None);
        let mut bad = u.encode();
        bad[6] = 9;
        assert_eq!(ControllerUserdata::decode(&bad), None);
        assert_eq!(ControllerUserdata::decode(&[0u8; 16]), None);
    }

    #[test]
    fn a_full_queue_drops_and_counts_and_unsubscribing_stops_delivery() {
        let pins = Arc::new(PacketIns::default());
        let p = ControllerPacket {
            userdata: ControllerUserdata {
                max_len: 65535,
                reason: ControllerReason::Action,
                table: 0,
                cookie: 0,
            },
            key: Flow::default(),
            packet: vec![1, 2, 3],
        };
        assert!(!pins.deliver(p.clone()), "nobody subscribed");
        let mut sub = pins.subscribe();
        for _ in 0..QUEUE_LEN + 5 {
            assert!(pins.deliver(p.clone()));
        }
        assert_eq!(sub.dropped.load(Ordering::Relaxed), 5);
        assert_eq!(pins.queue_full.load(Ordering::Relaxed), 5);
        let first = futures::executor::block_on(sub.queue.next()).unwrap();
        assert_eq!(first.packet, vec![1, 2, 3]);
        drop(sub);
        assert_eq!(pins.subscribers(), 0);
        assert!(!pins.deliver(p));
    }
}
