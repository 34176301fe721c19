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

fn and6(a: [u8; 6], b: [u8; 6]) -> [u8; 6] {
    std::array::from_fn(|i| a[i] & b[i])
}

fn and16(a: [u8; 16], b: [u8; 16]) -> [u8; 16] {
    std::array::from_fn(|i| a[i] & b[i])
}

impl SetHeader {
    /// The same action with the key's unmasked bits cleared, as the
    /// datapath interface carries it (so equal actions compare equal).
    pub fn canonical(self) -> Self {
        use SetHeader::*;
        match self {
            Ethernet { key, mask } => Ethernet {
                key: EthKey {
                    src: and6(key.src, mask.src),
                    dst: and6(key.dst, mask.dst),
                },
                mask,
            },
            Ipv4 { key, mask } => Ipv4 {
                key: Ipv4Key {
                    src: key.src & mask.src,
                    dst: key.dst & mask.dst,
                    proto: key.proto & mask.proto,
                    tos: key.tos & mask.tos,
                    ttl: key.ttl & mask.ttl,
                    frag: key.frag & mask.frag,
                },
                mask,
            },
            Ipv6 { key, mask } => Ipv6 {
                key: Ipv6Key {
                    src: and16(key.src, mask.src),
                    dst: and16(key.dst, mask.dst),
                    label: key.label & mask.label,
                    proto: key.proto & mask.proto,
                    tclass: key.tclass & mask.tclass,
                    hlimit: key.hlimit & mask.hlimit,
                    frag: key.frag & mask.frag,
                },
                mask,
            },
            Tcp { key, mask } => Tcp {
                key: ports_and(key, mask),
                mask,
            },
            Udp { key, mask } => Udp {
                key: ports_and(key, mask),
                mask,
            },
            Sctp { key, mask } => Sctp {
                key: ports_and(key, mask),
                mask,
            },
            Arp { key, mask } => Arp {
                key: ArpKey {
                    sip: key.sip & mask.sip,
                    tip: key.tip & mask.tip,
                    op: key.op & mask.op,
                    sha: and6(key.sha, mask.sha),
                    tha: and6(key.tha, mask.tha),
                },
                mask,
            },
            Nd { key, mask } => Nd {
                key: NdKey {
                    target: and16(key.target, mask.target),
                    sll: and6(key.sll, mask.sll),
                    tll: and6(key.tll, mask.tll),
                },
                mask,
            },
            SkbPriority { key, mask } => SkbPriority {
                key: key & mask,
                mask,
            },
            SkbMark { key, mask } => SkbMark {
                key: key & mask,
                mask,
            },
        }
    }
}

fn ports_and(key: PortsKey, mask: PortsKey) -> PortsKey {
    PortsKey {
        src: key.src & mask.src,
        dst: key.dst & mask.dst,
    }
}
