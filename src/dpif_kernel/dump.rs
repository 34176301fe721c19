//! Flow dumps without decoding every flow every time.
//!
//! Revalidators dump tersely (ufid and statistics, [`scan`] reads them);
//! full dumps (`dump-dp-flows`, adopting many flows after a restart) show
//! mostly the flows of the last full dump. Decoding a flow's key, mask and actions into `Flow`s
//! costs far more than reading its statistics, so the dpif remembers the
//! decoded form of each flow by UFID, with the attribute bytes it came
//! from: a dumped flow whose key, mask and actions bytes are unchanged is
//! only scanned for its statistics.

use std::collections::HashMap;

use messages::dpif::{DpFlow, FlowStats, Ufid};
use messages::flow::Flow;
use messages::netlink::consts::*;
use messages::odp::OdpActions;
use netlink_packet_core::NlasIterator;

/// Length of `struct ovs_header`, before a flow message's attributes.
const OVS_HEADER_LEN: usize = 4;
/// Length of `struct nlattr`, before an attribute's value.
const NLA_HEADER_LEN: usize = 4;

/// What a first look at a dumped flow message finds: its UFID, its
/// statistics, and where its key, mask and actions are.
pub struct FlowScan<'a> {
    pub ufid: Option<Ufid>,
    pub stats: FlowStats,
    key: &'a [u8],
    mask: &'a [u8],
    actions: &'a [u8],
}

/// Scans the top-level attributes of a flow message's payload (the bytes
/// after the genetlink header). None if they are malformed.
pub fn scan(payload: &[u8]) -> Option<FlowScan<'_>> {
    let mut scan = FlowScan {
        ufid: None,
        stats: FlowStats::default(),
        key: &[],
        mask: &[],
        actions: &[],
    };
    for nla in NlasIterator::new(payload.get(OVS_HEADER_LEN..)?) {
        let nla = nla.ok()?;
        let kind = nla.kind();
        // The value borrowed from the payload itself, not from `nla`.
        let len = nla.length() as usize;
        let v = nla.into_inner().get(NLA_HEADER_LEN..len)?;
        match kind {
            OVS_FLOW_ATTR_UFID => scan.ufid = Some(u128::from_ne_bytes(v.try_into().ok()?)),
            OVS_FLOW_ATTR_KEY => scan.key = v,
            OVS_FLOW_ATTR_MASK => scan.mask = v,
            OVS_FLOW_ATTR_ACTIONS => scan.actions = v,
            OVS_FLOW_ATTR_STATS => {
                let b: &[u8; 16] = v.try_into().ok()?;
                scan.stats.n_packets = u64::from_ne_bytes(b[..8].try_into().ok()?);
                scan.stats.n_bytes = u64::from_ne_bytes(b[8..].try_into().ok()?);
            }
            OVS_FLOW_ATTR_USED => scan.stats.used_ms = Some(u64::from_ne_bytes(v.try_into().ok()?)),
            OVS_FLOW_ATTR_TCP_FLAGS => scan.stats.tcp_flags = *v.first()? as u16,
            _ => {}
        }
    }
    Some(scan)
}

struct Cached {
    /// Key, mask and actions attribute bytes, one after the other.
    raw: Vec<u8>,
    key_len: usize,
    mask_len: usize,
    key: Flow,
    mask: Flow,
    actions: OdpActions,
    /// The dump that last saw this flow.
    generation: u64,
}

impl Cached {
    fn matches(&self, scan: &FlowScan) -> bool {
        let (key, rest) = self.raw.split_at(self.key_len);
        let (mask, actions) = rest.split_at(self.mask_len);
        key == scan.key && mask == scan.mask && actions == scan.actions
    }
}

/// Decoded flows by UFID, as of the last dumps.
#[derive(Default)]
pub struct DumpCache {
    flows: HashMap<Ufid, Cached>,
    generation: u64,
}

impl DumpCache {
    /// Starts a dump: flows not seen by its end are forgotten.
    pub fn begin(&mut self) {
        self.generation += 1;
    }

    /// The flow `scan` describes, if it is decoded already.
    pub fn get(&mut self, scan: &FlowScan) -> Option<DpFlow> {
        let ufid = scan.ufid?;
        let cached = self.flows.get_mut(&ufid)?;
        if !cached.matches(scan) {
            return None;
        }
        cached.generation = self.generation;
        Some(DpFlow {
            ufid,
            key: cached.key,
            mask: cached.mask,
            actions: cached.actions.clone(),
            stats: scan.stats,
        })
    }

    /// Remembers `flow`, decoded from the message `scan` looked at.
    pub fn insert(&mut self, scan: &FlowScan, flow: &DpFlow) {
        let Some(ufid) = scan.ufid else {
            return;
        };
        let mut raw = Vec::with_capacity(scan.key.len() + scan.mask.len() + scan.actions.len());
        raw.extend_from_slice(scan.key);
        raw.extend_from_slice(scan.mask);
        raw.extend_from_slice(scan.actions);
        self.flows.insert(
            ufid,
            Cached {
                raw,
                key_len: scan.key.len(),
                mask_len: scan.mask.len(),
                key: flow.key,
                mask: flow.mask,
                actions: flow.actions.clone(),
                generation: self.generation,
            },
        );
    }

    /// Ends a complete dump: forgets the flows it did not see.
    pub fn end(&mut self) {
        let generation = self.generation;
        self.flows.retain(|_, c| c.generation == generation);
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::flow::ETH_TYPE_IP;
    use messages::netlink::{actions_to_attrs, megaflow_to_attrs, FlowAttr, FlowMessage};
    use messages::odp::OdpAction;
    use netlink_packet_core::Emitable;

    fn key() -> Flow {
        Flow {
            in_port: 3,
            dl_type: ETH_TYPE_IP,
            nw_dst: 0x0a00_0001,
            ..Flow::default()
        }
    }

    fn mask() -> Flow {
        Flow {
            in_port: u32::MAX,
            dl_type: u16::MAX,
            nw_dst: u32::MAX,
            ..Flow::default()
        }
    }

    /// A dump reply's payload, as the kernel sends it.
    fn payload(ufid: Ufid, actions: &[OdpAction], n_packets: u64) -> Vec<u8> {
        let (k, m) = megaflow_to_attrs(&key(), &mask());
        let msg = FlowMessage::new(
            CMD_NEW,
            7,
            vec![
                FlowAttr::Ufid(ufid),
                FlowAttr::Key(k),
                FlowAttr::Mask(m),
                FlowAttr::Stats {
                    n_packets,
                    n_bytes: 60 * n_packets,
                },
                FlowAttr::Used(1234),
                FlowAttr::Actions(actions_to_attrs(actions)),
            ],
        );
        let mut bytes = vec![0; msg.buffer_len()];
        msg.emit(&mut bytes);
        bytes
    }

    fn decoded(ufid: Ufid, actions: Vec<OdpAction>) -> DpFlow {
        DpFlow {
            ufid,
            key: key(),
            mask: mask(),
            actions,
            stats: FlowStats::default(),
        }
    }

    #[test]
    fn unchanged_flows_come_from_the_cache_with_fresh_stats() {
        let out2 = vec![OdpAction::Output(2)];
        let mut cache = DumpCache::default();
        cache.begin();
        let p = payload(9, &out2, 1);
        let s = scan(&p).expect("scan");
        assert_eq!(s.ufid, Some(9));
        assert_eq!((s.stats.n_packets, s.stats.used_ms), (1, Some(1234)));
        assert!(cache.get(&s).is_none(), "not decoded yet");
        cache.insert(&s, &decoded(9, out2.clone()));
        cache.end();

        cache.begin();
        let p = payload(9, &out2, 5);
        let hit = cache.get(&scan(&p).unwrap()).expect("cached");
        assert_eq!((hit.key, hit.mask, &hit.actions), (key(), mask(), &out2));
        assert_eq!(hit.stats.n_packets, 5, "statistics come from the dump");
        cache.end();

        // New actions: decoded again.
        cache.begin();
        let p = payload(9, &[OdpAction::Output(3)], 6);
        assert!(cache.get(&scan(&p).unwrap()).is_none());
        cache.end();
        assert!(cache.is_empty(), "a flow missing from a dump is forgotten");
    }

    #[test]
    fn malformed_payloads_scan_to_none() {
        let p = payload(9, &[OdpAction::Output(2)], 1);
        for cut in [0, 3, 7, p.len() - 1] {
            let _ = scan(&p[..cut]);
        }
        assert!(scan(&p[..2]).is_none());
        let mut bad = p.clone();
        // The first attribute's length runs past the end.
        bad[4..6].copy_from_slice(&0xfff0u16.to_ne_bytes());
        assert!(scan(&bad).is_none());
    }
}
