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
    /// The tunnel the packet is to be sent with by a tunnel port's
    /// output that follows (`OVS_ACTION_ATTR_SET` of
    /// `OVS_KEY_ATTR_TUNNEL`, printed `set(tunnel(…))`).
    SetTunnel(Vec<crate::netlink::TunnelAttr>),
    PushVlan {
        tpid: u16,
        tci: u16,
    },
    PopVlan,
    /// Push an MPLS label stack entry and make the EtherType `ethertype`
    /// (`OVS_ACTION_ATTR_PUSH_MPLS`).
    PushMpls {
        lse: u32,
        ethertype: u16,
    },
    /// Pop the outermost MPLS entry; `ethertype` is the EtherType of what
    /// was under it (`OVS_ACTION_ATTR_POP_MPLS`).
    PopMpls(u16),
    /// Rewrite the outermost MPLS entry whole (`OVS_ACTION_ATTR_SET` of
    /// `OVS_KEY_ATTR_MPLS`, as OVS's `commit_mpls_action` emits it).
    SetMpls(u32),
    /// Send the packet through the connection tracker
    /// (`OVS_ACTION_ATTR_CT`): afterwards its `ct_*` fields hold the
    /// tracker's verdict.
    Ct(CtAction),
    /// Forget the packet's conntrack state (`OVS_ACTION_ATTR_CT_CLEAR`):
    /// `ct_state` and every other `ct_*` field become 0.
    CtClear,
    /// Look the packet up again with this `recirc_id`
    /// (`OVS_ACTION_ATTR_RECIRC`), keeping its metadata and ct fields.
    Recirc(u32),
    /// Run the nested actions on a copy of the packet
    /// (`OVS_ACTION_ATTR_CLONE`).
    Clone(OdpActions),
    /// Truncate the packet to at most this many bytes at the next output
    /// (`OVS_ACTION_ATTR_TRUNC`).
    Trunc(u32),
    /// Run the packet through the datapath's meter N, which drops it if
    /// its band's rate is exceeded (`OVS_ACTION_ATTR_METER`).
    Meter(u32),
    /// Set the packet's `dp_hash` to a hash of its 5-tuple with `basis`
    /// (`OVS_ACTION_ATTR_HASH`); `alg` is an `ovs_hash_alg`, 0 for L4,
    /// 1 for symmetric L4.
    Hash {
        alg: u32,
        basis: u32,
    },
    /// Run `gt` on a packet longer than `pkt_len` bytes, `le` on the others
    /// (`OVS_ACTION_ATTR_CHECK_PKT_LEN`).
    CheckPktLen {
        pkt_len: u16,
        gt: OdpActions,
        le: OdpActions,
    },
    /// Push a whole outer tunnel header and go on with the encapsulated
    /// packet (the userspace datapath's `OVS_ACTION_ATTR_TUNNEL_PUSH`).
    TnlPush(Box<crate::native_tunnel::TnlPush>),
    /// Take a tunnel header off and receive the inner packet on this
    /// tunnel vport (`OVS_ACTION_ATTR_TUNNEL_POP`).
    TnlPop(u32),
}

/// A connection tracker helper (`OVS_CT_ATTR_HELPER`, `alg=` in OpenFlow).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtHelper {
    Ftp,
    Tftp,
}

impl CtHelper {
    /// The helper's name as the datapath knows it.
    pub fn name(self) -> &'static str {
        match self {
            CtHelper::Ftp => "ftp",
            CtHelper::Tftp => "tftp",
        }
    }
}

/// The arguments of a datapath `ct` action, as OVS's
/// `compose_conntrack_action` fills them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct CtAction {
    /// Commit the connection to the tracker (`OVS_CT_ATTR_COMMIT`).
    pub commit: bool,
    /// Commit, first deleting an existing connection tracked in the
    /// opposite direction (`OVS_CT_ATTR_FORCE_COMMIT`, printed
    /// `force_commit`; OVS emits it instead of `commit`).
    pub force: bool,
    /// The conntrack zone (`OVS_CT_ATTR_ZONE`; OVS always sends it).
    pub zone: u16,
    /// `(value, mask)` to write into the connection's mark (committed
    /// connections only). `value` has only masked bits.
    pub mark: Option<(u32, u32)>,
    /// `(value, mask)` to write into the connection's 128-bit label.
    pub labels: Option<(u128, u128)>,
    pub helper: Option<CtHelper>,
    /// A timeout policy's name (`OVS_CT_ATTR_TIMEOUT`).
    pub timeout: Option<String>,
    /// Network address translation (`OVS_CT_ATTR_NAT`).
    pub nat: Option<NatAction>,
}

/// Which side of a connection NAT rewrites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatKind {
    Src,
    Dst,
}

/// The address range NAT picks from (both ends inclusive; `max == min`
/// for a single address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NatAddrs {
    V4 { min: u32, max: u32 },
    V6 { min: [u8; 16], max: [u8; 16] },
}

/// The nested `OVS_CT_ATTR_NAT` of a `ct` action. With `kind == None` it is
/// plain `nat`: an established connection's packets get the translation
/// it was committed with, and nothing else happens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct NatAction {
    pub kind: Option<NatKind>,
    pub addrs: Option<NatAddrs>,
    /// `(min, max)` transport ports (`max == min` for a single port).
    pub ports: Option<(u16, u16)>,
    pub persistent: bool,
    /// `hash` and `random` choose how ports are picked (at most one).
    pub hash: bool,
    pub random: bool,
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

/// The userdata of a `userspace` action that sends the packet to the
/// controller: OVS's `user_action_cookie` of type CONTROLLER, byte for
/// byte (48 bytes in the host's byte order, the rule cookie big endian),
/// so that it prints as OVS prints it. The rest of what a packet-in needs
/// (table, registers, userdata) is in the frozen state of `recirc_id`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ControllerCookie {
    /// Translated without side effects (a trace): not to be sent.
    pub dont_send: bool,
    /// The packet-in is a continuation (`controller(pause)`).
    pub continuation: bool,
    /// An `ofp::packet_in_reason`.
    pub reason: u16,
    pub recirc_id: u32,
    pub rule_cookie: u64,
    pub controller_id: u16,
    pub max_len: u16,
}

/// OVS's `USER_ACTION_COOKIE_CONTROLLER`.
const USER_ACTION_COOKIE_CONTROLLER: u16 = 5;
/// `sizeof(struct user_action_cookie)`.
const USER_ACTION_COOKIE_LEN: usize = 48;
/// OVS's `OFPP_NONE` as a 16-bit port.
const OFPP_NONE: u16 = 0xffff;

impl ControllerCookie {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = vec![0u8; USER_ACTION_COOKIE_LEN];
        v[0..2].copy_from_slice(&USER_ACTION_COOKIE_CONTROLLER.to_ne_bytes());
        v[2..4].copy_from_slice(&OFPP_NONE.to_ne_bytes());
        // Bytes 4..20: the bridge's UUID, which one bridge does not need.
        v[20] = self.dont_send as u8;
        v[21] = self.continuation as u8;
        v[22..24].copy_from_slice(&self.reason.to_ne_bytes());
        v[24..28].copy_from_slice(&self.recirc_id.to_ne_bytes());
        v[28..36].copy_from_slice(&self.rule_cookie.to_be_bytes());
        v[36..38].copy_from_slice(&self.controller_id.to_ne_bytes());
        v[38..40].copy_from_slice(&self.max_len.to_ne_bytes());
        v
    }

    /// None for userdata that is not a controller cookie.
    pub fn decode(b: &[u8]) -> Option<ControllerCookie> {
        if b.len() != USER_ACTION_COOKIE_LEN {
            return None;
        }
        let u16_at = |i: usize| u16::from_ne_bytes([b[i], b[i + 1]]);
        if u16_at(0) != USER_ACTION_COOKIE_CONTROLLER {
            return None;
        }
        Some(ControllerCookie {
            dont_send: b[20] != 0,
            continuation: b[21] != 0,
            reason: u16_at(22),
            recirc_id: u32::from_ne_bytes(b[24..28].try_into().ok()?),
            rule_cookie: u64::from_be_bytes(b[28..36].try_into().ok()?),
            controller_id: u16_at(36),
            max_len: u16_at(38),
        })
    }
}

#[cfg(test)]
mod controller_cookie_tests {
    use super::*;

    #[test]
    fn a_controller_cookie_round_trips_and_other_userdata_is_not_one() {
        let c = ControllerCookie {
            dont_send: true,
            continuation: false,
            reason: 6,
            recirc_id: 0x1234_5678,
            rule_cookie: 0xabc,
            controller_id: 7,
            max_len: 128,
        };
        let bytes = c.encode();
        assert_eq!(bytes.len(), 48);
        assert_eq!(&bytes[28..36], &0xabcu64.to_be_bytes());
        assert_eq!(ControllerCookie::decode(&bytes), Some(c));
        assert_eq!(ControllerCookie::decode(&bytes[..40]), None);
        let mut other = bytes.clone();
        other[0..2].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(ControllerCookie::decode(&other), None);
    }
}
