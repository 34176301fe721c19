//! The four families' messages: `ovs_header` plus typed attributes, as
//! payloads of `netlink_packet_generic::GenlMessage`.

use netlink_packet_core::{
    DecodeError, Emitable, NetlinkHeader, NetlinkMessage, NetlinkPayload, Nla, NlaBuffer,
    NlasIterator, Parseable, ParseableParametrized, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};

use super::actions::ActionAttr;
use super::consts::*;
use super::key::KeyAttr;
use super::nla::*;

/// An attribute type of one of the OVS families.
pub trait OvsAttr: Nla + for<'a> Parseable<NlaBuffer<&'a [u8]>> + std::fmt::Debug {
    const FAMILY: &'static str;
    const VERSION: u8;
}

/// A message of an OVS family: the command, `ovs_header.dp_ifindex`
/// (0 for requests not tied to a datapath) and the attributes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OvsMessage<A> {
    pub cmd: u8,
    pub dp_ifindex: i32,
    pub attrs: Vec<A>,
}

impl<A> OvsMessage<A> {
    pub fn new(cmd: u8, dp_ifindex: i32, attrs: Vec<A>) -> Self {
        OvsMessage {
            cmd,
            dp_ifindex,
            attrs,
        }
    }
}

impl<A: OvsAttr> OvsMessage<A> {
    /// The message as a request to family `family_id` with `flags`,
    /// serialized; it asks for an acknowledgement, so that every request
    /// gets exactly one answer.
    pub fn into_request(self, family_id: u16, flags: u16) -> Vec<u8> {
        let mut genl = GenlMessage::from_payload(self);
        genl.set_resolved_family_id(family_id);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
        nl.finalize();
        let mut bytes = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut bytes);
        bytes
    }
}

impl<A: OvsAttr> GenlFamily for OvsMessage<A> {
    fn family_name() -> &'static str {
        A::FAMILY
    }
    fn command(&self) -> u8 {
        self.cmd
    }
    fn version(&self) -> u8 {
        A::VERSION
    }
}

impl<A: OvsAttr> Emitable for OvsMessage<A> {
    fn buffer_len(&self) -> usize {
        4 + self.attrs.as_slice().buffer_len()
    }
    fn emit(&self, buffer: &mut [u8]) {
        buffer[0..4].copy_from_slice(&self.dp_ifindex.to_ne_bytes());
        self.attrs.as_slice().emit(&mut buffer[4..]);
    }
}

impl<A: OvsAttr> ParseableParametrized<[u8], GenlHeader> for OvsMessage<A> {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        if buf.len() < 4 {
            return Err(DecodeError::from(format!(
                "{}: message of {} bytes has no ovs_header",
                A::FAMILY,
                buf.len()
            )));
        }
        let dp_ifindex = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
        Ok(OvsMessage {
            cmd: header.cmd,
            dp_ifindex,
            attrs: parse_list(&buf[4..], A::FAMILY)?,
        })
    }
}

/// `struct ovs_dp_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct OvsDpStats {
    pub n_hit: u64,
    pub n_missed: u64,
    pub n_lost: u64,
    pub n_flows: u64,
}

/// `OVS_DP_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DpAttr {
    Name(String),
    UpcallPid(u32),
    Stats(OvsDpStats),
    UserFeatures(u32),
    MasksCacheSize(u32),
    /// One upcall PID per CPU (per-CPU dispatch).
    PerCpuPids(Vec<u32>),
    Other(u16, Vec<u8>),
}

impl OvsAttr for DpAttr {
    const FAMILY: &'static str = OVS_DATAPATH_FAMILY;
    const VERSION: u8 = OVS_DATAPATH_VERSION;
}

impl Nla for DpAttr {
    fn value_len(&self) -> usize {
        match self {
            DpAttr::Name(s) => s.len() + 1,
            DpAttr::UpcallPid(_) | DpAttr::UserFeatures(_) | DpAttr::MasksCacheSize(_) => 4,
            DpAttr::Stats(_) => 32,
            DpAttr::PerCpuPids(v) => 4 * v.len(),
            DpAttr::Other(_, v) => v.len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            DpAttr::Name(_) => OVS_DP_ATTR_NAME,
            DpAttr::UpcallPid(_) => OVS_DP_ATTR_UPCALL_PID,
            DpAttr::Stats(_) => OVS_DP_ATTR_STATS,
            DpAttr::UserFeatures(_) => OVS_DP_ATTR_USER_FEATURES,
            DpAttr::MasksCacheSize(_) => OVS_DP_ATTR_MASKS_CACHE_SIZE,
            DpAttr::PerCpuPids(_) => OVS_DP_ATTR_PER_CPU_PIDS,
            DpAttr::Other(k, _) => *k,
        }
    }
    fn emit_value(&self, b: &mut [u8]) {
        match self {
            DpAttr::Name(s) => emit_string(s, b),
            DpAttr::UpcallPid(x) | DpAttr::UserFeatures(x) | DpAttr::MasksCacheSize(x) => {
                b.copy_from_slice(&x.to_ne_bytes())
            }
            DpAttr::Stats(s) => {
                for (c, x) in b
                    .chunks_exact_mut(8)
                    .zip([s.n_hit, s.n_missed, s.n_lost, s.n_flows])
                {
                    c.copy_from_slice(&x.to_ne_bytes());
                }
            }
            DpAttr::PerCpuPids(v) => emit_u32_list(v, b),
            DpAttr::Other(_, v) => b.copy_from_slice(v),
        }
    }
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for DpAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            OVS_DP_ATTR_NAME => DpAttr::Name(string(v, "OVS_DP_ATTR_NAME")?),
            OVS_DP_ATTR_UPCALL_PID => DpAttr::UpcallPid(u32_ne(v, "OVS_DP_ATTR_UPCALL_PID")?),
            OVS_DP_ATTR_STATS => {
                let b: [u8; 32] = fixed(v, "OVS_DP_ATTR_STATS")?;
                let w = |i: usize| u64_ne(&b[8 * i..8 * i + 8], "OVS_DP_ATTR_STATS");
                DpAttr::Stats(OvsDpStats {
                    n_hit: w(0)?,
                    n_missed: w(1)?,
                    n_lost: w(2)?,
                    n_flows: w(3)?,
                })
            }
            OVS_DP_ATTR_USER_FEATURES => {
                DpAttr::UserFeatures(u32_ne(v, "OVS_DP_ATTR_USER_FEATURES")?)
            }
            OVS_DP_ATTR_MASKS_CACHE_SIZE => {
                DpAttr::MasksCacheSize(u32_ne(v, "OVS_DP_ATTR_MASKS_CACHE_SIZE")?)
            }
            OVS_DP_ATTR_PER_CPU_PIDS => {
                DpAttr::PerCpuPids(u32_list(v, "OVS_DP_ATTR_PER_CPU_PIDS")?)
            }
            other => DpAttr::Other(other, v.to_vec()),
        })
    }
}

/// `OVS_VPORT_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum VportAttr {
    PortNo(u32),
    /// `OVS_VPORT_TYPE_*`.
    Type(u32),
    Name(String),
    Options(Vec<u8>),
    /// Upcall PIDs for misses on this port (per-vport dispatch).
    UpcallPids(Vec<u32>),
    /// `struct ovs_vport_stats`: rx/tx packets, rx/tx bytes, rx/tx errors,
    /// rx/tx dropped.
    Stats([u64; 8]),
    IfIndex(u32),
    Other(u16, Vec<u8>),
}

impl OvsAttr for VportAttr {
    const FAMILY: &'static str = OVS_VPORT_FAMILY;
    const VERSION: u8 = OVS_VPORT_VERSION;
}

impl Nla for VportAttr {
    fn value_len(&self) -> usize {
        match self {
            VportAttr::PortNo(_) | VportAttr::Type(_) | VportAttr::IfIndex(_) => 4,
            VportAttr::Name(s) => s.len() + 1,
            VportAttr::Options(v) | VportAttr::Other(_, v) => v.len(),
            VportAttr::UpcallPids(v) => 4 * v.len(),
            VportAttr::Stats(_) => 64,
        }
    }
    fn kind(&self) -> u16 {
        match self {
            VportAttr::PortNo(_) => OVS_VPORT_ATTR_PORT_NO,
            VportAttr::Type(_) => OVS_VPORT_ATTR_TYPE,
            VportAttr::Name(_) => OVS_VPORT_ATTR_NAME,
            VportAttr::Options(_) => OVS_VPORT_ATTR_OPTIONS,
            VportAttr::UpcallPids(_) => OVS_VPORT_ATTR_UPCALL_PID,
            VportAttr::Stats(_) => OVS_VPORT_ATTR_STATS,
            VportAttr::IfIndex(_) => OVS_VPORT_ATTR_IFINDEX,
            VportAttr::Other(k, _) => *k,
        }
    }
    fn emit_value(&self, b: &mut [u8]) {
        match self {
            VportAttr::PortNo(x) | VportAttr::Type(x) | VportAttr::IfIndex(x) => {
                b.copy_from_slice(&x.to_ne_bytes())
            }
            VportAttr::Name(s) => emit_string(s, b),
            VportAttr::Options(v) | VportAttr::Other(_, v) => b.copy_from_slice(v),
            VportAttr::UpcallPids(v) => emit_u32_list(v, b),
            VportAttr::Stats(s) => {
                for (c, x) in b.chunks_exact_mut(8).zip(s) {
                    c.copy_from_slice(&x.to_ne_bytes());
                }
            }
        }
    }
}

/// A tunnel vport's `OVS_VPORT_TYPE_*` for its tunnel type.
pub fn tunnel_vport_type(kind: crate::tunnel::TunnelKind) -> u32 {
    match kind {
        crate::tunnel::TunnelKind::Vxlan => OVS_VPORT_TYPE_VXLAN,
        crate::tunnel::TunnelKind::Geneve => OVS_VPORT_TYPE_GENEVE,
    }
}

/// The tunnel type of an `OVS_VPORT_TYPE_*`, if it is one we make.
pub fn tunnel_kind_of_vport_type(t: u32) -> Option<crate::tunnel::TunnelKind> {
    match t {
        OVS_VPORT_TYPE_VXLAN => Some(crate::tunnel::TunnelKind::Vxlan),
        OVS_VPORT_TYPE_GENEVE => Some(crate::tunnel::TunnelKind::Geneve),
        _ => None,
    }
}

/// `OVS_VPORT_ATTR_OPTIONS` of a tunnel vport: its UDP port
/// (`OVS_TUNNEL_ATTR_DST_PORT`, host order, as OVS's `dpif-netlink` sends it)
/// and, for VXLAN with `exts=gbp`, `OVS_TUNNEL_ATTR_EXTENSION` holding the
/// `OVS_VXLAN_EXT_GBP` flag.
pub fn tunnel_vport_options(udp_port: u16, vxlan_gbp: bool) -> Vec<u8> {
    let mut v = Vec::with_capacity(16);
    v.extend_from_slice(&6u16.to_ne_bytes());
    v.extend_from_slice(&OVS_TUNNEL_ATTR_DST_PORT.to_ne_bytes());
    v.extend_from_slice(&udp_port.to_ne_bytes());
    v.extend_from_slice(&[0, 0]);
    if vxlan_gbp {
        // The nest (8 bytes) around one empty flag attribute (4 bytes),
        // without NLA_F_NESTED, as OVS sends it.
        v.extend_from_slice(&8u16.to_ne_bytes());
        v.extend_from_slice(&OVS_TUNNEL_ATTR_EXTENSION.to_ne_bytes());
        v.extend_from_slice(&4u16.to_ne_bytes());
        v.extend_from_slice(&OVS_VXLAN_EXT_GBP.to_ne_bytes());
    }
    v
}

/// The UDP port in a tunnel vport's `OVS_VPORT_ATTR_OPTIONS`, if given.
pub fn tunnel_vport_udp_port(options: &[u8]) -> Result<Option<u16>, DecodeError> {
    for nla in NlasIterator::new(options) {
        let nla = nla.map_err(|e| {
            DecodeError::from(format!("OVS_VPORT_ATTR_OPTIONS: malformed attribute: {e}"))
        })?;
        if nla.kind() == OVS_TUNNEL_ATTR_DST_PORT {
            return u16_ne(nla.value(), "OVS_TUNNEL_ATTR_DST_PORT").map(Some);
        }
    }
    Ok(None)
}

/// Whether a tunnel vport's `OVS_VPORT_ATTR_OPTIONS` turn VXLAN's Group
/// Policy extension on.
pub fn tunnel_vport_vxlan_gbp(options: &[u8]) -> Result<bool, DecodeError> {
    let malformed =
        |e| DecodeError::from(format!("OVS_VPORT_ATTR_OPTIONS: malformed attribute: {e}"));
    for nla in NlasIterator::new(options) {
        let nla = nla.map_err(malformed)?;
        if nla.kind() == OVS_TUNNEL_ATTR_EXTENSION {
            for ext in NlasIterator::new(nla.value()) {
                if ext.map_err(malformed)?.kind() == OVS_VXLAN_EXT_GBP {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for VportAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            OVS_VPORT_ATTR_PORT_NO => VportAttr::PortNo(u32_ne(v, "OVS_VPORT_ATTR_PORT_NO")?),
            OVS_VPORT_ATTR_TYPE => VportAttr::Type(u32_ne(v, "OVS_VPORT_ATTR_TYPE")?),
            OVS_VPORT_ATTR_NAME => VportAttr::Name(string(v, "OVS_VPORT_ATTR_NAME")?),
            OVS_VPORT_ATTR_OPTIONS => VportAttr::Options(v.to_vec()),
            OVS_VPORT_ATTR_UPCALL_PID => {
                VportAttr::UpcallPids(u32_list(v, "OVS_VPORT_ATTR_UPCALL_PID")?)
            }
            OVS_VPORT_ATTR_STATS => {
                let b: [u8; 64] = fixed(v, "OVS_VPORT_ATTR_STATS")?;
                let mut s = [0u64; 8];
                for (x, c) in s.iter_mut().zip(b.chunks_exact(8)) {
                    *x = u64_ne(c, "OVS_VPORT_ATTR_STATS")?;
                }
                VportAttr::Stats(s)
            }
            OVS_VPORT_ATTR_IFINDEX => VportAttr::IfIndex(u32_ne(v, "OVS_VPORT_ATTR_IFINDEX")?),
            other => VportAttr::Other(other, v.to_vec()),
        })
    }
}

/// `OVS_FLOW_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum FlowAttr {
    Key(Vec<KeyAttr>),
    Actions(Vec<ActionAttr>),
    /// `struct ovs_flow_stats`: packets, bytes.
    Stats {
        n_packets: u64,
        n_bytes: u64,
    },
    /// OR of the TCP flags seen (low 8 bits).
    TcpFlags(u8),
    /// Last use, ms on the kernel's monotonic clock.
    Used(u64),
    /// In a SET: zero the statistics.
    Clear,
    Mask(Vec<KeyAttr>),
    Probe,
    /// The flow's 128-bit UFID, as 16 bytes in host order.
    Ufid(u128),
    /// `OVS_UFID_F_*`.
    UfidFlags(u32),
    Other(u16, Vec<u8>),
}

impl OvsAttr for FlowAttr {
    const FAMILY: &'static str = OVS_FLOW_FAMILY;
    const VERSION: u8 = OVS_FLOW_VERSION;
}

impl Nla for FlowAttr {
    fn value_len(&self) -> usize {
        match self {
            FlowAttr::Key(v) | FlowAttr::Mask(v) => v.as_slice().buffer_len(),
            FlowAttr::Actions(v) => v.as_slice().buffer_len(),
            FlowAttr::Stats { .. } => 16,
            FlowAttr::TcpFlags(_) => 1,
            FlowAttr::Used(_) => 8,
            FlowAttr::Clear | FlowAttr::Probe => 0,
            FlowAttr::Ufid(_) => 16,
            FlowAttr::UfidFlags(_) => 4,
            FlowAttr::Other(_, v) => v.len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            FlowAttr::Key(_) => OVS_FLOW_ATTR_KEY,
            FlowAttr::Actions(_) => OVS_FLOW_ATTR_ACTIONS,
            FlowAttr::Stats { .. } => OVS_FLOW_ATTR_STATS,
            FlowAttr::TcpFlags(_) => OVS_FLOW_ATTR_TCP_FLAGS,
            FlowAttr::Used(_) => OVS_FLOW_ATTR_USED,
            FlowAttr::Clear => OVS_FLOW_ATTR_CLEAR,
            FlowAttr::Mask(_) => OVS_FLOW_ATTR_MASK,
            FlowAttr::Probe => OVS_FLOW_ATTR_PROBE,
            FlowAttr::Ufid(_) => OVS_FLOW_ATTR_UFID,
            FlowAttr::UfidFlags(_) => OVS_FLOW_ATTR_UFID_FLAGS,
            FlowAttr::Other(k, _) => *k,
        }
    }
    fn emit_value(&self, b: &mut [u8]) {
        match self {
            FlowAttr::Key(v) | FlowAttr::Mask(v) => v.as_slice().emit(b),
            FlowAttr::Actions(v) => v.as_slice().emit(b),
            FlowAttr::Stats { n_packets, n_bytes } => {
                b[0..8].copy_from_slice(&n_packets.to_ne_bytes());
                b[8..16].copy_from_slice(&n_bytes.to_ne_bytes());
            }
            FlowAttr::TcpFlags(x) => b[0] = *x,
            FlowAttr::Used(x) => b.copy_from_slice(&x.to_ne_bytes()),
            FlowAttr::Clear | FlowAttr::Probe => {}
            FlowAttr::Ufid(u) => b.copy_from_slice(&u.to_ne_bytes()),
            FlowAttr::UfidFlags(x) => b.copy_from_slice(&x.to_ne_bytes()),
            FlowAttr::Other(_, v) => b.copy_from_slice(v),
        }
    }
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for FlowAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            OVS_FLOW_ATTR_KEY => FlowAttr::Key(parse_list(v, "OVS_FLOW_ATTR_KEY")?),
            OVS_FLOW_ATTR_MASK => FlowAttr::Mask(parse_list(v, "OVS_FLOW_ATTR_MASK")?),
            OVS_FLOW_ATTR_ACTIONS => FlowAttr::Actions(parse_list(v, "OVS_FLOW_ATTR_ACTIONS")?),
            OVS_FLOW_ATTR_STATS => {
                let b: [u8; 16] = fixed(v, "OVS_FLOW_ATTR_STATS")?;
                FlowAttr::Stats {
                    n_packets: u64_ne(&b[0..8], "OVS_FLOW_ATTR_STATS")?,
                    n_bytes: u64_ne(&b[8..16], "OVS_FLOW_ATTR_STATS")?,
                }
            }
            OVS_FLOW_ATTR_TCP_FLAGS => FlowAttr::TcpFlags(u8_of(v, "OVS_FLOW_ATTR_TCP_FLAGS")?),
            OVS_FLOW_ATTR_USED => FlowAttr::Used(u64_ne(v, "OVS_FLOW_ATTR_USED")?),
            OVS_FLOW_ATTR_CLEAR => FlowAttr::Clear,
            OVS_FLOW_ATTR_PROBE => FlowAttr::Probe,
            OVS_FLOW_ATTR_UFID => {
                FlowAttr::Ufid(u128::from_ne_bytes(fixed(v, "OVS_FLOW_ATTR_UFID")?))
            }
            OVS_FLOW_ATTR_UFID_FLAGS => FlowAttr::UfidFlags(u32_ne(v, "OVS_FLOW_ATTR_UFID_FLAGS")?),
            other => FlowAttr::Other(other, v.to_vec()),
        })
    }
}

/// `OVS_PACKET_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PacketAttr {
    /// The frame, from the Ethernet header on.
    Packet(Vec<u8>),
    Key(Vec<KeyAttr>),
    Actions(Vec<ActionAttr>),
    Userdata(Vec<u8>),
    Probe,
    Mru(u16),
    /// Length before truncation.
    Len(u32),
    Hash(u64),
    Other(u16, Vec<u8>),
}

impl OvsAttr for PacketAttr {
    const FAMILY: &'static str = OVS_PACKET_FAMILY;
    const VERSION: u8 = OVS_PACKET_VERSION;
}

impl Nla for PacketAttr {
    fn value_len(&self) -> usize {
        match self {
            PacketAttr::Packet(v) | PacketAttr::Userdata(v) | PacketAttr::Other(_, v) => v.len(),
            PacketAttr::Key(v) => v.as_slice().buffer_len(),
            PacketAttr::Actions(v) => v.as_slice().buffer_len(),
            PacketAttr::Probe => 0,
            PacketAttr::Mru(_) => 2,
            PacketAttr::Len(_) => 4,
            PacketAttr::Hash(_) => 8,
        }
    }
    fn kind(&self) -> u16 {
        match self {
            PacketAttr::Packet(_) => OVS_PACKET_ATTR_PACKET,
            PacketAttr::Key(_) => OVS_PACKET_ATTR_KEY,
            PacketAttr::Actions(_) => OVS_PACKET_ATTR_ACTIONS,
            PacketAttr::Userdata(_) => OVS_PACKET_ATTR_USERDATA,
            PacketAttr::Probe => OVS_PACKET_ATTR_PROBE,
            PacketAttr::Mru(_) => OVS_PACKET_ATTR_MRU,
            PacketAttr::Len(_) => OVS_PACKET_ATTR_LEN,
            PacketAttr::Hash(_) => OVS_PACKET_ATTR_HASH,
            PacketAttr::Other(k, _) => *k,
        }
    }
    fn emit_value(&self, b: &mut [u8]) {
        match self {
            PacketAttr::Packet(v) | PacketAttr::Userdata(v) | PacketAttr::Other(_, v) => {
                b.copy_from_slice(v)
            }
            PacketAttr::Key(v) => v.as_slice().emit(b),
            PacketAttr::Actions(v) => v.as_slice().emit(b),
            PacketAttr::Probe => {}
            PacketAttr::Mru(x) => b.copy_from_slice(&x.to_ne_bytes()),
            PacketAttr::Len(x) => b.copy_from_slice(&x.to_ne_bytes()),
            PacketAttr::Hash(x) => b.copy_from_slice(&x.to_ne_bytes()),
        }
    }
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for PacketAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            OVS_PACKET_ATTR_PACKET => PacketAttr::Packet(v.to_vec()),
            OVS_PACKET_ATTR_KEY => PacketAttr::Key(parse_list(v, "OVS_PACKET_ATTR_KEY")?),
            OVS_PACKET_ATTR_ACTIONS => {
                PacketAttr::Actions(parse_list(v, "OVS_PACKET_ATTR_ACTIONS")?)
            }
            OVS_PACKET_ATTR_USERDATA => PacketAttr::Userdata(v.to_vec()),
            OVS_PACKET_ATTR_PROBE => PacketAttr::Probe,
            OVS_PACKET_ATTR_MRU => PacketAttr::Mru(u16_ne(v, "OVS_PACKET_ATTR_MRU")?),
            OVS_PACKET_ATTR_LEN => PacketAttr::Len(u32_ne(v, "OVS_PACKET_ATTR_LEN")?),
            OVS_PACKET_ATTR_HASH => PacketAttr::Hash(u64_ne(v, "OVS_PACKET_ATTR_HASH")?),
            other => PacketAttr::Other(other, v.to_vec()),
        })
    }
}

/// An upcall (`OVS_PACKET_CMD_MISS` or `_ACTION`) read straight from its
/// bytes (`payload`: what follows the genetlink header), without building
/// its typed message: the handlers' hot path. `keys` is scratch room for
/// the key's attributes, reused from one upcall to the next (a typed
/// message grew a list of them, and one of its own attributes, for each).
pub fn parse_upcall(
    cmd: u8,
    payload: &[u8],
    keys: &mut Vec<KeyAttr>,
) -> Result<crate::dpif::Upcall, DecodeError> {
    use crate::dpif::{Upcall, UpcallKind};
    let attrs = payload.get(4..).ok_or_else(|| {
        DecodeError::from(format!(
            "{OVS_PACKET_FAMILY}: message of {} bytes has no ovs_header",
            payload.len()
        ))
    })?;
    let (mut packet, mut userdata, mut has_key, mut mru) = (None, Vec::new(), false, 0);
    keys.clear();
    for nla in NlasIterator::new(attrs) {
        let nla = nla.map_err(|e| {
            DecodeError::from(format!("{OVS_PACKET_FAMILY}: malformed attribute: {e}"))
        })?;
        match nla.kind() {
            OVS_PACKET_ATTR_PACKET => packet = Some(nla.value().to_vec()),
            OVS_PACKET_ATTR_USERDATA => userdata = nla.value().to_vec(),
            OVS_PACKET_ATTR_MRU => mru = u16_ne(nla.value(), "OVS_PACKET_ATTR_MRU")?,
            OVS_PACKET_ATTR_KEY => {
                has_key = true;
                for a in NlasIterator::new(nla.value()) {
                    let a = a.map_err(|e| {
                        DecodeError::from(format!("OVS_PACKET_ATTR_KEY: malformed attribute: {e}"))
                    })?;
                    keys.push(
                        KeyAttr::parse(&a)
                            .map_err(|e| DecodeError::from(format!("OVS_PACKET_ATTR_KEY: {e}")))?,
                    );
                }
            }
            _ => {}
        }
    }
    if !has_key {
        return Err(DecodeError::from("upcall without key"));
    }
    let key = super::key_from_attrs(keys)?;
    let kind = match cmd {
        OVS_PACKET_CMD_MISS => UpcallKind::Miss,
        OVS_PACKET_CMD_ACTION => UpcallKind::Action { userdata },
        other => {
            return Err(DecodeError::from(format!(
                "unexpected packet command {other}"
            )))
        }
    };
    Ok(Upcall {
        kind,
        packet: packet.ok_or_else(|| DecodeError::from("upcall without packet"))?,
        ufid: crate::hash::key_ufid(&key),
        key,
        mru,
    })
}

pub type DpMessage = OvsMessage<DpAttr>;
pub type VportMessage = OvsMessage<VportAttr>;
pub type FlowMessage = OvsMessage<FlowAttr>;
pub type PacketMessage = OvsMessage<PacketAttr>;
