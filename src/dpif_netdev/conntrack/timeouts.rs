//! How long an idle connection is kept, by protocol and state (OVS's
//! `CT_TM_*` timeouts, with the defaults of its default timeout policy),
//! and the timeout policies of zones (OVS's `CT_Zone` `timeout_policy`,
//! `ovs-vsctl add-zone-tp`).

use std::collections::BTreeMap;

/// A connection's timeout class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timeout {
    TcpFirstPacket,
    TcpOpening,
    TcpEstablished,
    TcpClosing,
    TcpFinWait,
    TcpClosed,
    OtherFirst,
    OtherMultiple,
    OtherBidir,
    IcmpFirst,
    IcmpReply,
}

/// Seconds for each timeout class (OVS's names in the config:
/// `tcp_syn_sent`, `tcp_syn_recv`, `tcp_established`, `tcp_fin_wait`,
/// `tcp_time_wait`, `tcp_close`, `udp_first`, `udp_single`,
/// `udp_multiple`, `icmp_first`, `icmp_reply`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimeoutPolicy {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    pub udp_first: u32,
    pub udp_single: u32,
    pub udp_multiple: u32,
    pub icmp_first: u32,
    pub icmp_reply: u32,
}

impl Default for TimeoutPolicy {
    fn default() -> Self {
        TimeoutPolicy {
            tcp_syn_sent: 30,
            tcp_syn_recv: 30,
            tcp_established: 24 * 60 * 60,
            tcp_fin_wait: 15 * 60,
            tcp_time_wait: 45,
            tcp_close: 30,
            udp_first: 60,
            udp_single: 60,
            udp_multiple: 30,
            icmp_first: 60,
            icmp_reply: 30,
        }
    }
}

impl TimeoutPolicy {
    /// The timeout of `class`, in milliseconds.
    pub fn ms(&self, class: Timeout) -> u64 {
        let s = match class {
            Timeout::TcpFirstPacket => self.tcp_syn_sent,
            Timeout::TcpOpening => self.tcp_syn_recv,
            Timeout::TcpEstablished => self.tcp_established,
            Timeout::TcpClosing => self.tcp_fin_wait,
            Timeout::TcpFinWait => self.tcp_time_wait,
            Timeout::TcpClosed => self.tcp_close,
            Timeout::OtherFirst => self.udp_first,
            Timeout::OtherMultiple => self.udp_single,
            Timeout::OtherBidir => self.udp_multiple,
            Timeout::IcmpFirst => self.icmp_first,
            Timeout::IcmpReply => self.icmp_reply,
        };
        u64::from(s) * 1000
    }
}

/// A zone's timeout policy as configured: the timeouts it sets, the
/// others being the datapath's (`[datapath.conntrack] timeouts`), as an
/// OVS zone policy leaves its unset attributes at the default policy's.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ZoneTimeouts {
    pub tcp_syn_sent: Option<u32>,
    pub tcp_syn_recv: Option<u32>,
    pub tcp_established: Option<u32>,
    pub tcp_fin_wait: Option<u32>,
    pub tcp_time_wait: Option<u32>,
    pub tcp_close: Option<u32>,
    pub udp_first: Option<u32>,
    pub udp_single: Option<u32>,
    pub udp_multiple: Option<u32>,
    pub icmp_first: Option<u32>,
    pub icmp_reply: Option<u32>,
}

impl ZoneTimeouts {
    /// `base` with the timeouts this policy sets.
    pub fn over(&self, base: &TimeoutPolicy) -> TimeoutPolicy {
        TimeoutPolicy {
            tcp_syn_sent: self.tcp_syn_sent.unwrap_or(base.tcp_syn_sent),
            tcp_syn_recv: self.tcp_syn_recv.unwrap_or(base.tcp_syn_recv),
            tcp_established: self.tcp_established.unwrap_or(base.tcp_established),
            tcp_fin_wait: self.tcp_fin_wait.unwrap_or(base.tcp_fin_wait),
            tcp_time_wait: self.tcp_time_wait.unwrap_or(base.tcp_time_wait),
            tcp_close: self.tcp_close.unwrap_or(base.tcp_close),
            udp_first: self.udp_first.unwrap_or(base.udp_first),
            udp_single: self.udp_single.unwrap_or(base.udp_single),
            udp_multiple: self.udp_multiple.unwrap_or(base.udp_multiple),
            icmp_first: self.icmp_first.unwrap_or(base.icmp_first),
            icmp_reply: self.icmp_reply.unwrap_or(base.icmp_reply),
        }
    }
}

/// The datapath's timeout policies by id, as a `ct` action names them
/// (`timeout=ID`, OVS's userspace datapath's names): id 0 is the
/// datapath's default, and each distinct zone policy has the next id, in
/// zone order (zones with equal policies share one, as in OVS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TimeoutPolicies {
    by_id: Vec<TimeoutPolicy>,
    by_zone: BTreeMap<u16, u32>,
}

impl TimeoutPolicies {
    pub fn new(default: &TimeoutPolicy, zones: &BTreeMap<u16, ZoneTimeouts>) -> Self {
        let mut by_id = vec![default.clone()];
        let mut by_zone = BTreeMap::new();
        for (&zone, z) in zones {
            let policy = z.over(default);
            let id = match by_id[1..].iter().position(|p| *p == policy) {
                Some(i) => i + 1,
                None => {
                    by_id.push(policy);
                    by_id.len() - 1
                }
            };
            by_zone.insert(zone, id as u32);
        }
        TimeoutPolicies { by_id, by_zone }
    }

    /// The policy of `id`; the default for an id the datapath does not
    /// have (as OVS's userspace conntrack falls back).
    pub fn get(&self, id: u32) -> &TimeoutPolicy {
        self.by_id.get(id as usize).unwrap_or(&self.by_id[0])
    }

    /// The policy id of each zone that has one.
    pub fn zones(&self) -> &BTreeMap<u16, u32> {
        &self.by_zone
    }
}
