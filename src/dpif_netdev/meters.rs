//! The userspace datapath's meters (OVS's `dp_meter` in dpif-netdev): a
//! token bucket per band for each datapath meter id, behind one mutex, so
//! that every port's thread meters against the same rate.

use std::collections::HashMap;

use messages::meter::{Meter, MeterStats, TokenBuckets};
use parking_lot::Mutex;

#[derive(Default)]
pub(super) struct Meters {
    by_id: Mutex<HashMap<u32, TokenBuckets>>,
}

impl Meters {
    /// Creates or replaces meter `id` (its buckets start full, its counts
    /// at 0, as OVS's do on a modify).
    pub(super) fn set(&self, id: u32, meter: &Meter, now_ms: u64) {
        self.by_id
            .lock()
            .insert(id, TokenBuckets::new(meter, now_ms));
    }

    pub(super) fn delete(&self, id: u32) {
        self.by_id.lock().remove(&id);
    }

    pub(super) fn stats(&self, id: u32) -> Option<MeterStats> {
        self.by_id.lock().get(&id).map(|b| b.stats().clone())
    }

    /// Whether a packet of `len` bytes passes meter `id`; a meter that
    /// does not exist passes every packet, as in OVS's datapaths.
    pub(super) fn admit(&self, id: u32, len: usize, now_ms: u64) -> bool {
        self.by_id
            .lock()
            .get_mut(&id)
            .is_none_or(|b| b.admit(len, now_ms))
    }
}
