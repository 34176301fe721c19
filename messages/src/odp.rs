//! Datapath (ODP) actions: what a megaflow does to a packet, in the terms
//! of the OVS datapath interface.

/// The Ethernet header fields a set action can write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EthKey {
    pub src: [u8; 6],
    pub dst: [u8; 6],
}

/// IPv4 header fields a set action can write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ipv4Key {
    pub src: u32,
    pub dst: u32,
    pub proto: u8,
    pub tos: u8,
    pub ttl: u8,
    pub frag: u8,
}

/// IPv6 header fields a set action can write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ipv6Key {
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub label: u32,
    pub proto: u8,
    pub tclass: u8,
    pub hlimit: u8,
    pub frag: u8,
}

/// Transport ports (TCP, UDP, SCTP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PortsKey {
    pub src: u16,
    pub dst: u16,
}

/// ARP fields a set action can write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ArpKey {
    pub sip: u32,
    pub tip: u32,
    pub op: u16,
    pub sha: [u8; 6],
    pub tha: [u8; 6],
}

/// Neighbor discovery fields a set action can write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NdKey {
    pub target: [u8; 16],
    pub sll: [u8; 6],
    pub tll: [u8; 6],
}

/// The header a masked set action writes: the new values and, bit for bit,
/// which of them to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SetHeader {
    Ethernet { key: EthKey, mask: EthKey },
    Ipv4 { key: Ipv4Key, mask: Ipv4Key },
    Ipv6 { key: Ipv6Key, mask: Ipv6Key },
    Tcp { key: PortsKey, mask: PortsKey },
    Udp { key: PortsKey, mask: PortsKey },
    Sctp { key: PortsKey, mask: PortsKey },
    Arp { key: ArpKey, mask: ArpKey },
    Nd { key: NdKey, mask: NdKey },
    SkbPriority { key: u32, mask: u32 },
    SkbMark { key: u32, mask: u32 },
}

/// One datapath action.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OdpAction {
    /// Send the packet out of datapath port N.
    Output(u32),
    /// Send the packet to userspace (an upcall of type ACTION).
    Userspace {
        pid: u32,
        userdata: Vec<u8>,
    },
    /// Rewrite header fields (OVS_ACTION_ATTR_SET_MASKED).
    SetMasked(SetHeader),
    PushVlan {
        tpid: u16,
        tci: u16,
    },
    PopVlan,
}

/// A list of datapath actions. Empty means drop.
pub type OdpActions = Vec<OdpAction>;
