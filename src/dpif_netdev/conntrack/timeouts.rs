//! How long an idle connection is kept, by protocol and state (OVS's
//! `CT_TM_*` timeouts, with the defaults of its default timeout policy).

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
