//! Tunnel ports as OVS's `ofproto/tunnel.c` sees them: how a port's
//! options (`remote_ip`, `key`, `tos`, …) decide the tunnel header of a
//! packet sent out of it, how a received packet's tunnel picks the port it
//! came in by, and what of the tunnel a megaflow must match. Also the
//! Geneve options of a flow in the datapath's form (TLVs), through the TLV
//! map. Pure: no I/O.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, OnceLock};

use crate::flow::*;
use crate::netlink::TunnelAttr;
use crate::tlv::TlvMap;

/// The tunnel protocols upcalld speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelKind {
    Vxlan,
    Geneve,
}

impl TunnelKind {
    /// OVS's name for the port type.
    pub fn name(self) -> &'static str {
        match self {
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
        }
    }

    /// The IANA UDP port, OVS's default `dst_port`.
    pub fn default_port(self) -> u16 {
        match self {
            TunnelKind::Vxlan => 4789,
            TunnelKind::Geneve => 6081,
        }
    }
}

/// An address option: fixed, or taken from the flow (`flow`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunnelIp {
    Fixed(IpAddr),
    Flow,
}

/// A key option (`key`, `in_key`, `out_key`): none, fixed, or `flow`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TunnelKey {
    #[default]
    None,
    Fixed(u64),
    Flow,
}

/// One tunnel port's configuration (OVS's `netdev_tunnel_config` plus the
/// datapath port its packets use).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TunnelConfig {
    pub kind: TunnelKind,
    pub remote_ip: TunnelIp,
    /// `None`: any local address (the route's).
    pub local_ip: Option<TunnelIp>,
    pub in_key: TunnelKey,
    pub out_key: TunnelKey,
    pub dst_port: u16,
    /// `None`: inherit the inner packet's DSCP.
    pub tos: Option<u8>,
    /// `None`: inherit the inner packet's TTL.
    pub ttl: Option<u8>,
    pub csum: bool,
    pub df_default: bool,
    /// `exts=gbp` (VXLAN): its vport sends and takes the Group Policy
    /// extension (`tun_gbp_id`, `tun_gbp_flags`).
    pub vxlan_gbp: bool,
    /// The datapath port (the vport for this type and UDP port) that
    /// sends and receives this port's packets.
    pub odp_port: u32,
}

/// OVS's default tunnel TTL.
pub const DEFAULT_TTL: u8 = 64;

/// The VXLAN Group Policy flags OVS keeps in `tun_gbp_flags`: Don't
/// Learn (0x40) and Policy Applied (0x08).
const VXLAN_GBP_FLAGS: u8 = 0x48;

const IP_ECN_MASK: u8 = 0x03;
const IP_ECN_CE: u8 = 0x03;
const IP_ECN_ECT_0: u8 = 0x02;
const IP_DSCP_MASK: u8 = 0xfc;

fn ipv4_of(a: IpAddr) -> Option<u32> {
    match a {
        IpAddr::V4(v4) => Some(u32::from(v4)),
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(u32::from),
    }
}

fn ipv6_of(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

impl TunnelConfig {
    /// A port of `kind` to `remote_ip` with OVS's defaults.
    pub fn new(kind: TunnelKind, remote_ip: TunnelIp) -> TunnelConfig {
        TunnelConfig {
            kind,
            remote_ip,
            local_ip: None,
            in_key: TunnelKey::None,
            out_key: TunnelKey::None,
            dst_port: kind.default_port(),
            tos: Some(0),
            ttl: Some(DEFAULT_TTL),
            csum: false,
            df_default: true,
            vxlan_gbp: false,
            odp_port: 0,
        }
    }

    /// OVS's `tnl_port_send`: writes into `flow` the tunnel this port
    /// sends with, un-wildcarding what it reads of the inner packet.
    pub fn send(&self, flow: &mut Flow, wc: &mut FlowWildcards) {
        if let Some(TunnelIp::Fixed(a)) = self.local_ip {
            set_tnl_src(flow, a);
        } else if self.local_ip.is_none() {
            set_tnl_src(flow, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        }
        if let TunnelIp::Fixed(a) = self.remote_ip {
            match ipv4_of(a) {
                Some(v4) => {
                    flow.tun_dst = v4;
                    flow.tun_ipv6_dst = [0; 16];
                }
                None => {
                    flow.tun_dst = 0;
                    flow.tun_ipv6_dst = ipv6_of(a);
                }
            }
        }
        flow.tun_tp_dst = self.dst_port;
        // A tunnel sends the options the map writes, in its order.
        flow.tun_md_layout = 0;
        match self.out_key {
            TunnelKey::Flow => {}
            TunnelKey::Fixed(k) => flow.tun_id = k,
            TunnelKey::None => flow.tun_id = 0,
        }
        let ip = flow.is_ip_any();
        match self.ttl {
            None if ip => {
                wc.nw_ttl = 0xff;
                flow.tun_ttl = flow.nw_ttl;
            }
            t => flow.tun_ttl = t.unwrap_or(DEFAULT_TTL),
        }
        match self.tos {
            None if ip => {
                wc.nw_tos |= IP_DSCP_MASK;
                flow.tun_tos = flow.nw_tos & IP_DSCP_MASK;
            }
            t => flow.tun_tos = t.unwrap_or(0),
        }
        // ECN is always inherited; CE goes out as ECT(0).
        if ip {
            wc.nw_tos |= IP_ECN_MASK;
            flow.tun_tos |= if flow.nw_tos & IP_ECN_MASK == IP_ECN_CE {
                IP_ECN_ECT_0
            } else {
                flow.nw_tos & IP_ECN_MASK
            };
        }
        flow.tun_flags &= !(FLOW_TNL_F_MASK & !FLOW_TNL_PUB_F_MASK);
        if self.df_default {
            flow.tun_flags |= FLOW_TNL_F_DONT_FRAGMENT;
        }
        if self.csum {
            flow.tun_flags |= FLOW_TNL_F_CSUM;
        }
        if self.out_key != TunnelKey::None {
            flow.tun_flags |= FLOW_TNL_F_KEY;
        }
    }

    /// Whether a packet that came in on this port's vport with `flow`'s
    /// tunnel is this port's (one of OVS's `tnl_find` match levels): the
    /// key, the remote address (the packet's source) and the local
    /// address (its destination), each unless the port takes it from the
    /// flow.
    pub fn receives(&self, flow: &Flow, key_flow: bool, remote_flow: bool) -> bool {
        if flow.in_port != self.odp_port {
            return false;
        }
        let key_ok = match (key_flow, self.in_key) {
            (true, k) => k == TunnelKey::Flow,
            (false, TunnelKey::Flow) => false,
            (false, TunnelKey::Fixed(k)) => k == flow.tun_id,
            (false, TunnelKey::None) => flow.tun_id == 0,
        };
        let remote_ok = match (remote_flow, self.remote_ip) {
            (true, r) => r == TunnelIp::Flow,
            (false, TunnelIp::Flow) => false,
            (false, TunnelIp::Fixed(a)) => ipv6_of(a) == tnl_src(flow).octets(),
        };
        let local_ok = match self.local_ip {
            None | Some(TunnelIp::Flow) => true,
            Some(TunnelIp::Fixed(a)) => ipv6_of(a) == flow.tnl_dst().octets(),
        };
        key_ok && remote_ok && local_ok
    }

    /// The tunnel options as `ovs-appctl dpif/show` lists them.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.csum {
            parts.push("csum=true".to_string());
        }
        if !self.df_default {
            parts.push("df_default=false".into());
        }
        if self.dst_port != self.kind.default_port() {
            parts.push(format!("dst_port={}", self.dst_port));
        }
        match (self.in_key, self.out_key) {
            (TunnelKey::Flow, TunnelKey::Flow) => parts.push("key=flow".into()),
            (TunnelKey::Fixed(a), TunnelKey::Fixed(b)) if a == b => parts.push(format!("key={a}")),
            (i, o) => {
                for (name, k) in [("in_key", i), ("out_key", o)] {
                    match k {
                        TunnelKey::None => {}
                        TunnelKey::Flow => parts.push(format!("{name}=flow")),
                        TunnelKey::Fixed(v) => parts.push(format!("{name}={v}")),
                    }
                }
            }
        }
        let ip = |t: TunnelIp| match t {
            TunnelIp::Flow => "flow".to_string(),
            TunnelIp::Fixed(a) => a.to_string(),
        };
        if let Some(l) = self.local_ip {
            parts.push(format!("local_ip={}", ip(l)));
        }
        parts.push(format!("remote_ip={}", ip(self.remote_ip)));
        match self.tos {
            None => parts.push("tos=inherit".into()),
            Some(0) => {}
            Some(t) => parts.push(format!("tos={t}")),
        }
        match self.ttl {
            None => parts.push("ttl=inherit".into()),
            Some(DEFAULT_TTL) => {}
            Some(t) => parts.push(format!("ttl={t}")),
        }
        parts.join(", ")
    }
}

fn set_tnl_src(flow: &mut Flow, a: IpAddr) {
    match ipv4_of(a) {
        Some(v4) => {
            flow.tun_src = v4;
            flow.tun_ipv6_src = [0; 16];
        }
        None => {
            flow.tun_src = 0;
            flow.tun_ipv6_src = ipv6_of(a);
        }
    }
}

/// The tunnel's source as an IPv6 address (IPv4 mapped).
pub fn tnl_src(flow: &Flow) -> Ipv6Addr {
    if flow.tun_src != 0 {
        std::net::Ipv4Addr::from(flow.tun_src).to_ipv6_mapped()
    } else {
        Ipv6Addr::from(flow.tun_ipv6_src)
    }
}

/// OVS's `tnl_find`: the OpenFlow port among `ports` (by number) that a
/// packet received with `flow`'s tunnel on datapath port `flow.in_port`
/// belongs to. Exact settings win over `flow` ones: a fixed key before
/// `key=flow`, a fixed remote before `remote_ip=flow`.
pub fn tnl_find<'a>(
    ports: impl Iterator<Item = (u32, &'a TunnelConfig)> + Clone,
    flow: &Flow,
) -> Option<u32> {
    for key_flow in [false, true] {
        for remote_flow in [false, true] {
            // Ports naming a local address first, as OVS's IP_SRC_CFG.
            for local_fixed in [true, false] {
                let hit = ports.clone().find(|(_, c)| {
                    matches!(c.local_ip, Some(TunnelIp::Fixed(_))) == local_fixed
                        && c.receives(flow, key_flow, remote_flow)
                });
                if let Some((p, _)) = hit {
                    return Some(p);
                }
            }
        }
    }
    None
}

/// OVS's `tnl_wc_init`: a packet from a tunnel matches its key,
/// addresses, TOS and flags (not TTL or UDP ports), and the inner ECN
/// when the outer header says congestion.
pub fn wc_init(flow: &Flow, wc: &mut FlowWildcards) {
    if !flow.tnl_dst_is_set() {
        return;
    }
    wc.tun_id = u64::MAX;
    if flow.tun_dst != 0 {
        wc.tun_src = u32::MAX;
        wc.tun_dst = u32::MAX;
    } else {
        wc.tun_ipv6_src = [0xff; 16];
        wc.tun_ipv6_dst = [0xff; 16];
    }
    wc.tun_flags = FLOW_TNL_F_DONT_FRAGMENT | FLOW_TNL_F_CSUM | FLOW_TNL_F_KEY;
    wc.tun_tos = u8::MAX;
    wc.tun_ttl = 0;
    wc.tun_tp_src = 0;
    wc.tun_tp_dst = 0;
    // The options' layout is matched exactly, as OVS matches a kernel
    // key's raw options' headers.
    if flow.tun_md_layout != 0 {
        wc.tun_md_layout = u32::MAX;
    }
    if flow.is_ip_any() && flow.tun_tos & IP_ECN_MASK == IP_ECN_CE {
        wc.nw_tos |= IP_ECN_MASK;
    }
}

/// OVS's `tnl_process_ecn`: congestion marked on the outer header is
/// copied into the inner one; `false` (drop) when the inner packet is not
/// ECN capable.
pub fn process_ecn(flow: &mut Flow) -> bool {
    if !flow.tnl_dst_is_set() {
        return true;
    }
    if flow.is_ip_any() && flow.tun_tos & IP_ECN_MASK == IP_ECN_CE {
        if flow.nw_tos & IP_ECN_MASK == 0 {
            return false;
        }
        flow.nw_tos |= IP_ECN_CE;
    }
    true
}

/// The Geneve options of `flow`'s present `tun_metadataN`, in index
/// order, as TLVs (OVS's `tun_metadata_to_geneve_nlattr` for a flow).
pub fn geneve_opts(flow: &Flow, map: &TlvMap) -> Vec<u8> {
    let mut out = Vec::new();
    for (idx, m) in map.iter() {
        if flow.tun_md_present & (1 << idx) == 0 {
            continue;
        }
        out.extend_from_slice(&m.class.to_be_bytes());
        out.push(m.opt_type);
        out.push(m.len / 4);
        let off = m.offset as usize;
        out.extend_from_slice(&flow.tun_md[off..off + m.len as usize]);
    }
    out
}

/// The most option layouts one process tells apart; a key with another
/// one is read as if its options were in the map's order (its megaflow
/// then misses, and its packets go on coming up).
const MAX_GENEVE_LAYOUTS: usize = 1 << 16;

/// Option layouts of datapath keys, by id (1-based): each option's class,
/// type and length in 4-byte words, 4 bytes an option, in the key's order.
#[derive(Default)]
struct Layouts {
    ids: HashMap<Arc<[u8]>, u32>,
    list: Vec<Arc<[u8]>>,
}

fn layouts() -> &'static Mutex<Layouts> {
    static LAYOUTS: OnceLock<Mutex<Layouts>> = OnceLock::new();
    LAYOUTS.get_or_init(Mutex::default)
}

/// The id of the layout with `headers`, given one if new (0 when the
/// table is full).
fn layout_id(headers: &[u8]) -> u32 {
    let Ok(mut l) = layouts().lock() else {
        return 0;
    };
    if let Some(id) = l.ids.get(headers) {
        return *id;
    }
    if l.list.len() >= MAX_GENEVE_LAYOUTS {
        return 0;
    }
    let headers: Arc<[u8]> = headers.into();
    l.list.push(headers.clone());
    let id = l.list.len() as u32;
    l.ids.insert(headers, id);
    id
}

/// The option headers (class, type, length in words; 4 bytes each) of
/// layout `id`.
pub fn geneve_layout(id: u32) -> Option<Arc<[u8]>> {
    let i = (id as usize).checked_sub(1)?;
    layouts().lock().ok()?.list.get(i).cloned()
}

/// One option of a layout.
struct LayoutOption {
    /// Its mapping's index and place in `tun_md`, when the map knows the
    /// option at this length.
    known: Option<(usize, usize)>,
    class: u16,
    opt_type: u8,
    /// Bytes of data.
    len: usize,
}

/// The options of a layout, read with `map`.
fn layout_options(headers: &[u8], map: &TlvMap) -> Vec<LayoutOption> {
    headers
        .chunks_exact(4)
        .map(|h| {
            let (class, opt_type) = (u16::from_be_bytes([h[0], h[1]]), h[2]);
            let len = usize::from(h[3] & 0x1f) * 4;
            let known = map
                .by_option(class, opt_type)
                .filter(|(_, m)| usize::from(m.len) == len)
                .map(|(idx, m)| (idx, usize::from(m.offset)));
            LayoutOption {
                known,
                class,
                opt_type,
                len,
            }
        })
        .collect()
}

/// A datapath key's Geneve options for `flow`: in their layout when
/// `tun_md_layout` names one (an option the map does not know carries
/// zeros; its mask is zero too), else [`geneve_opts`].
pub fn key_geneve_opts(flow: &Flow, map: &TlvMap) -> Vec<u8> {
    let Some(headers) = geneve_layout(flow.tun_md_layout) else {
        return geneve_opts(flow, map);
    };
    let mut out = Vec::with_capacity(headers.len() * 2);
    for (h, o) in headers.chunks_exact(4).zip(layout_options(&headers, map)) {
        out.extend_from_slice(h);
        match o.known {
            Some((idx, off)) if flow.tun_md_present & (1 << idx) != 0 => {
                out.extend_from_slice(&flow.tun_md[off..off + o.len]);
            }
            _ => out.resize(out.len() + o.len, 0),
        }
    }
    out
}

/// The first option of `flow`'s layout that the map does not know and
/// that has the critical bit: OVS drops such a packet ("Invalid Geneve
/// tunnel metadata").
pub fn unknown_critical_option(flow: &Flow, map: &TlvMap) -> Option<(u16, u8)> {
    let headers = geneve_layout(flow.tun_md_layout)?;
    layout_options(&headers, map)
        .into_iter()
        .find(|o| o.known.is_none() && o.opt_type & GENEVE_CRIT_OPT_TYPE != 0)
        .map(|o| (o.class, o.opt_type))
}

/// A datapath key's Geneve options into `flow`: known options into
/// `tun_metadataN` as [`geneve_opts_to_flow`] places them (a known option
/// of another length is an error); when the options are not what
/// [`geneve_opts`] writes back (options the map does not know, critical
/// ones too, or another order), `tun_md_layout` names their layout.
pub fn geneve_key_opts_to_flow(
    opts: &[u8],
    map: &TlvMap,
    flow: &mut Flow,
) -> Result<(), GeneveError> {
    let mut headers = Vec::new();
    let mut rest = opts;
    while !rest.is_empty() {
        let header = rest.get(..4).ok_or(GeneveError::Malformed)?;
        let (class, opt_type) = (u16::from_be_bytes([header[0], header[1]]), header[2]);
        let len = usize::from(header[3] & 0x1f) * 4;
        let data = rest.get(4..4 + len).ok_or(GeneveError::Malformed)?;
        headers.extend_from_slice(&[header[0], header[1], header[2], header[3] & 0x1f]);
        if let Some((idx, m)) = map.by_option(class, opt_type) {
            if usize::from(m.len) != len {
                return Err(GeneveError::WrongLength { class, opt_type });
            }
            let off = usize::from(m.offset);
            flow.tun_md[off..off + len].copy_from_slice(data);
            flow.tun_md_present |= 1 << idx;
        }
        rest = &rest[4 + len..];
    }
    if geneve_opts(flow, map) != opts {
        flow.tun_md_layout = layout_id(&headers);
    }
    Ok(())
}

/// Why a packet's Geneve options cannot be taken in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GeneveError {
    /// The options do not parse (a length past the end).
    Malformed,
    /// An option the TLV map does not know has the critical bit set
    /// (OVS drops such packets).
    UnknownCritical { class: u16, opt_type: u8 },
    /// A known option with another length than its mapping's.
    WrongLength { class: u16, opt_type: u8 },
}

impl std::fmt::Display for GeneveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GeneveError::Malformed => write!(f, "malformed Geneve options"),
            GeneveError::UnknownCritical { class, opt_type } => write!(
                f,
                "unknown critical Geneve option class={class:#x},type={opt_type:#x}"
            ),
            GeneveError::WrongLength { class, opt_type } => write!(
                f,
                "Geneve option class={class:#x},type={opt_type:#x} has another length than its mapping"
            ),
        }
    }
}

/// The critical bit of a Geneve option type.
pub const GENEVE_CRIT_OPT_TYPE: u8 = 0x80;

/// Places Geneve options (TLVs) into `flow`'s `tun_metadataN` by the
/// map (OVS's `tun_metadata_from_geneve_nlattr`): unknown options are
/// skipped unless critical.
pub fn geneve_opts_to_flow(opts: &[u8], map: &TlvMap, flow: &mut Flow) -> Result<(), GeneveError> {
    let mut rest = opts;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(GeneveError::Malformed);
        }
        let class = u16::from_be_bytes([rest[0], rest[1]]);
        let opt_type = rest[2];
        let len = (rest[3] & 0x1f) as usize * 4;
        let data = rest.get(4..4 + len).ok_or(GeneveError::Malformed)?;
        match map.by_option(class, opt_type) {
            Some((idx, m)) => {
                if m.len as usize != len {
                    return Err(GeneveError::WrongLength { class, opt_type });
                }
                let off = m.offset as usize;
                flow.tun_md[off..off + len].copy_from_slice(data);
                flow.tun_md_present |= 1 << idx;
            }
            None if opt_type & GENEVE_CRIT_OPT_TYPE != 0 => {
                return Err(GeneveError::UnknownCritical { class, opt_type })
            }
            None => {}
        }
        rest = &rest[4 + len..];
    }
    Ok(())
}

/// OVS's `tun_key_to_attr` for a flow's tunnel sent through a port of
/// `kind` (`None`: any): the attributes of `set(tunnel(…))`.
pub fn tunnel_attrs(flow: &Flow, kind: Option<TunnelKind>, map: &TlvMap) -> Vec<TunnelAttr> {
    let mut t = Vec::new();
    if flow.tun_id != 0 || flow.tun_flags & FLOW_TNL_F_KEY != 0 {
        t.push(TunnelAttr::Id(flow.tun_id));
    }
    if flow.tun_src != 0 {
        t.push(TunnelAttr::Ipv4Src(flow.tun_src));
    }
    if flow.tun_dst != 0 {
        t.push(TunnelAttr::Ipv4Dst(flow.tun_dst));
    }
    if flow.tun_ipv6_src != [0; 16] {
        t.push(TunnelAttr::Ipv6Src(flow.tun_ipv6_src));
    }
    if flow.tun_ipv6_dst != [0; 16] {
        t.push(TunnelAttr::Ipv6Dst(flow.tun_ipv6_dst));
    }
    if flow.tun_tos != 0 {
        t.push(TunnelAttr::Tos(flow.tun_tos));
    }
    t.push(TunnelAttr::Ttl(flow.tun_ttl));
    if flow.tun_flags & FLOW_TNL_F_DONT_FRAGMENT != 0 {
        t.push(TunnelAttr::DontFragment);
    }
    if flow.tun_flags & FLOW_TNL_F_CSUM != 0 {
        t.push(TunnelAttr::Csum);
    }
    if flow.tun_tp_src != 0 {
        t.push(TunnelAttr::TpSrc(flow.tun_tp_src));
    }
    if flow.tun_tp_dst != 0 {
        t.push(TunnelAttr::TpDst(flow.tun_tp_dst));
    }
    if flow.tun_flags & FLOW_TNL_F_OAM != 0 {
        t.push(TunnelAttr::Oam);
    }
    if kind.is_none_or(|k| k == TunnelKind::Vxlan)
        && (flow.tun_gbp_flags != 0 || flow.tun_gbp_id != 0)
    {
        t.push(TunnelAttr::VxlanGbp(
            u32::from(flow.tun_gbp_flags) << 16 | u32::from(flow.tun_gbp_id),
        ));
    }
    // A datapath key (no port kind) keeps its options' layout.
    if kind.is_none() && (flow.tun_md_present != 0 || flow.tun_md_layout != 0) {
        let opts = key_geneve_opts(flow, map);
        if !opts.is_empty() {
            t.push(TunnelAttr::GeneveOpts(opts));
        }
    } else if kind == Some(TunnelKind::Geneve) && flow.tun_md_present != 0 {
        let opts = geneve_opts(flow, map);
        if !opts.is_empty() {
            t.push(TunnelAttr::GeneveOpts(opts));
        }
    }
    t
}

/// The mask attributes of a tunnel key (OVS's `tun_key_to_attr` on a
/// mask): each matched field, flags as flag attributes, Geneve options
/// in the key's layout with exact class, type and length.
pub fn tunnel_mask_attrs(key: &Flow, mask: &Flow, map: &TlvMap) -> Vec<TunnelAttr> {
    let mut t = Vec::new();
    if mask.tun_id != 0 || key.tun_flags & FLOW_TNL_F_KEY != 0 {
        t.push(TunnelAttr::Id(mask.tun_id));
    }
    if mask.tun_src != 0 {
        t.push(TunnelAttr::Ipv4Src(mask.tun_src));
    }
    if mask.tun_dst != 0 {
        t.push(TunnelAttr::Ipv4Dst(mask.tun_dst));
    }
    if mask.tun_ipv6_src != [0; 16] {
        t.push(TunnelAttr::Ipv6Src(mask.tun_ipv6_src));
    }
    if mask.tun_ipv6_dst != [0; 16] {
        t.push(TunnelAttr::Ipv6Dst(mask.tun_ipv6_dst));
    }
    if mask.tun_tos != 0 {
        t.push(TunnelAttr::Tos(mask.tun_tos));
    }
    t.push(TunnelAttr::Ttl(mask.tun_ttl));
    if mask.tun_flags & FLOW_TNL_F_DONT_FRAGMENT != 0 {
        t.push(TunnelAttr::DontFragment);
    }
    if mask.tun_flags & FLOW_TNL_F_CSUM != 0 {
        t.push(TunnelAttr::Csum);
    }
    if mask.tun_tp_src != 0 {
        t.push(TunnelAttr::TpSrc(mask.tun_tp_src));
    }
    if mask.tun_tp_dst != 0 {
        t.push(TunnelAttr::TpDst(mask.tun_tp_dst));
    }
    if mask.tun_flags & FLOW_TNL_F_OAM != 0 {
        t.push(TunnelAttr::Oam);
    }
    if mask.tun_gbp_flags != 0 || mask.tun_gbp_id != 0 {
        t.push(TunnelAttr::VxlanGbp(
            u32::from(mask.tun_gbp_flags) << 16 | u32::from(mask.tun_gbp_id),
        ));
    }
    // Every option of the key gets a mask (zeros where not matched): the
    // kernel wants the mask's options as long as the key's.
    let mut opts = Vec::new();
    for (known, len) in key_options(key, map) {
        opts.extend_from_slice(&[0xff, 0xff, 0xff, 0x1f]);
        match known {
            Some((idx, off)) if mask.tun_md_present & (1 << idx) != 0 => {
                opts.extend_from_slice(&mask.tun_md[off..off + len]);
            }
            _ => opts.resize(opts.len() + len, 0),
        }
    }
    if !opts.is_empty() {
        t.push(TunnelAttr::GeneveOpts(opts));
    }
    t
}

/// The options of `key` as its datapath key has them, in order: each
/// as (mapping index and place, when the map knows it; data length).
fn key_options(key: &Flow, map: &TlvMap) -> Vec<(Option<(usize, usize)>, usize)> {
    match geneve_layout(key.tun_md_layout) {
        Some(headers) => layout_options(&headers, map)
            .into_iter()
            .map(|o| (o.known, o.len))
            .collect(),
        None => map
            .iter()
            .filter(|(idx, _)| key.tun_md_present & (1 << idx) != 0)
            .map(|(idx, m)| (Some((idx, usize::from(m.offset))), usize::from(m.len)))
            .collect(),
    }
}

/// Fills `flow`'s tunnel from datapath tunnel attributes (a kernel
/// upcall's key); Geneve options go through `map`.
pub fn tunnel_from_attrs(
    attrs: &[TunnelAttr],
    map: &TlvMap,
    flow: &mut Flow,
) -> Result<(), GeneveError> {
    for a in attrs {
        match a {
            TunnelAttr::Id(x) => {
                flow.tun_id = *x;
                flow.tun_flags |= FLOW_TNL_F_KEY;
            }
            TunnelAttr::Ipv4Src(x) => flow.tun_src = *x,
            TunnelAttr::Ipv4Dst(x) => flow.tun_dst = *x,
            TunnelAttr::Ipv6Src(x) => flow.tun_ipv6_src = *x,
            TunnelAttr::Ipv6Dst(x) => flow.tun_ipv6_dst = *x,
            TunnelAttr::Tos(x) => flow.tun_tos = *x,
            TunnelAttr::Ttl(x) => flow.tun_ttl = *x,
            TunnelAttr::DontFragment => flow.tun_flags |= FLOW_TNL_F_DONT_FRAGMENT,
            TunnelAttr::Csum => flow.tun_flags |= FLOW_TNL_F_CSUM,
            TunnelAttr::Oam => flow.tun_flags |= FLOW_TNL_F_OAM,
            TunnelAttr::TpSrc(x) => flow.tun_tp_src = *x,
            TunnelAttr::TpDst(x) => flow.tun_tp_dst = *x,
            TunnelAttr::VxlanGbp(x) => {
                flow.tun_gbp_id = *x as u16;
                flow.tun_gbp_flags = (*x >> 16) as u8;
            }
            TunnelAttr::GeneveOpts(o) => geneve_key_opts_to_flow(o, map, flow)?,
            TunnelAttr::Other(..) => {}
        }
    }
    Ok(())
}

/// Fills a flow mask's tunnel from datapath mask attributes (a kernel
/// flow's mask). The mask's Geneve options have all-ones headers, so their
/// layout is the key's: its layout's options, or its present options in
/// the map's order, as `tunnel_mask_attrs` writes them; an option whose
/// mask is all zeros is not matched (one the map does not know never is).
pub fn tunnel_mask_from_attrs(
    attrs: &[TunnelAttr],
    key: &Flow,
    map: &TlvMap,
    mask: &mut Flow,
) -> Result<(), GeneveError> {
    let (opts, rest): (Vec<&TunnelAttr>, Vec<TunnelAttr>) = (
        attrs
            .iter()
            .filter(|a| matches!(a, TunnelAttr::GeneveOpts(_)))
            .collect(),
        attrs
            .iter()
            .filter(|a| !matches!(a, TunnelAttr::GeneveOpts(_)))
            .cloned()
            .collect(),
    );
    tunnel_from_attrs(&rest, map, mask)?;
    for a in opts {
        let TunnelAttr::GeneveOpts(bytes) = a else {
            continue;
        };
        let mut rest = bytes.as_slice();
        for (known, len) in key_options(key, map) {
            let (header, data) = rest
                .get(..4)
                .zip(rest.get(4..4 + len))
                .ok_or(GeneveError::Malformed)?;
            if header[..3] != [0xff, 0xff, 0xff] {
                // Class and type not matched exactly: not an option of ours.
                return Err(GeneveError::Malformed);
            }
            match known {
                Some((idx, off)) if data.iter().any(|b| *b != 0) => {
                    mask.tun_md[off..off + len].copy_from_slice(data);
                    mask.tun_md_present |= 1 << idx;
                }
                Some(_) => {}
                // An option the map does not know is never matched.
                None if data.iter().any(|b| *b != 0) => return Err(GeneveError::Malformed),
                None => {}
            }
            rest = &rest[4 + len..];
        }
        if !rest.is_empty() {
            return Err(GeneveError::Malformed);
        }
    }
    if key.tun_md_layout != 0 {
        mask.tun_md_layout = u32::MAX;
    }
    Ok(())
}

/// The UDP payload header of a tunnel packet (VXLAN or Geneve), from
/// `flow`'s tunnel: VNI from `tun_id`, VXLAN GBP (with `vxlan_gbp`, a
/// vport with `exts=gbp`, as Linux's VXLAN device sends it), Geneve
/// options by the map and the OAM bit (OVS's `netdev_vxlan_build_header`
/// and `netdev_geneve_build_header`). The inner Ethernet frame follows it.
pub fn encap_header(kind: TunnelKind, vxlan_gbp: bool, flow: &Flow, map: &TlvMap) -> Vec<u8> {
    let vni = ((flow.tun_id as u32) & 0x00ff_ffff) << 8;
    match kind {
        TunnelKind::Vxlan => {
            let mut h = vec![0x08, 0, 0, 0];
            let gbp_flags = flow.tun_gbp_flags & VXLAN_GBP_FLAGS;
            if vxlan_gbp && (flow.tun_gbp_id != 0 || gbp_flags != 0) {
                h[0] |= 0x80;
                h[1] = gbp_flags;
                h[2..4].copy_from_slice(&flow.tun_gbp_id.to_be_bytes());
            }
            h.extend_from_slice(&vni.to_be_bytes());
            h
        }
        TunnelKind::Geneve => {
            let opts = geneve_opts(flow, map);
            let critical = {
                let mut rest = opts.as_slice();
                let mut crit = false;
                while rest.len() >= 4 {
                    crit |= rest[2] & GENEVE_CRIT_OPT_TYPE != 0;
                    let n = 4 + (rest[3] & 0x1f) as usize * 4;
                    rest = rest.get(n..).unwrap_or_default();
                }
                crit
            };
            let mut h = vec![(opts.len() / 4) as u8, 0, 0x65, 0x58];
            if flow.tun_flags & FLOW_TNL_F_OAM != 0 {
                h[1] |= 0x80;
            }
            if critical {
                h[1] |= 0x40;
            }
            h.extend_from_slice(&vni.to_be_bytes());
            h.extend_from_slice(&opts);
            h
        }
    }
}

/// Why a received tunnel packet was dropped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecapError {
    /// Shorter than its header, a wrong version, flags or protocol.
    Malformed(&'static str),
    Geneve(GeneveError),
}

impl std::fmt::Display for DecapError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecapError::Malformed(why) => write!(f, "malformed tunnel header: {why}"),
            DecapError::Geneve(e) => e.fmt(f),
        }
    }
}

/// Parses a received UDP payload of `kind` (OVS's `netdev_vxlan_pop_header`
/// and `netdev_geneve_pop_header`): fills `flow`'s `tun_id`, flags, GBP
/// (with `vxlan_gbp`), Geneve options (by the map) and returns where the
/// inner Ethernet frame starts. The outer addresses, TOS, TTL and ports
/// are the caller's. A VXLAN header with flags other than the VNI's (and,
/// with `vxlan_gbp`, the Group Policy's) is malformed, as both OVS and
/// Linux drop it.
pub fn decap(
    kind: TunnelKind,
    vxlan_gbp: bool,
    payload: &[u8],
    map: &TlvMap,
    flow: &mut Flow,
) -> Result<usize, DecapError> {
    let bad = DecapError::Malformed;
    match kind {
        TunnelKind::Vxlan => {
            let h = payload.get(..8).ok_or(bad("shorter than a VXLAN header"))?;
            if h[0] & 0x08 == 0 || h[7] != 0 {
                return Err(bad("VXLAN flags without a valid VNI"));
            }
            let gbp = vxlan_gbp && h[0] & 0x80 != 0;
            if gbp {
                // Group Policy: its flags byte (D, A) and the policy id.
                if h[0] & !0x88 != 0 || h[1] & !VXLAN_GBP_FLAGS != 0 {
                    return Err(bad("VXLAN reserved flags set"));
                }
                flow.tun_gbp_flags = h[1];
                flow.tun_gbp_id = u16::from_be_bytes([h[2], h[3]]);
            } else if h[..4] != [0x08, 0, 0, 0] {
                return Err(bad("VXLAN reserved flags set"));
            }
            flow.tun_id = u64::from(u32::from_be_bytes([h[4], h[5], h[6], h[7]]) >> 8);
            flow.tun_flags |= FLOW_TNL_F_KEY;
            Ok(8)
        }
        TunnelKind::Geneve => {
            let h = payload
                .get(..8)
                .ok_or(bad("shorter than a Geneve header"))?;
            if h[0] >> 6 != 0 {
                return Err(bad("Geneve version is not 0"));
            }
            if u16::from_be_bytes([h[2], h[3]]) != 0x6558 {
                return Err(bad("Geneve payload is not Ethernet"));
            }
            let opts_len = (h[0] & 0x3f) as usize * 4;
            let opts = payload
                .get(8..8 + opts_len)
                .ok_or(bad("Geneve options longer than the packet"))?;
            if h[1] & 0x80 != 0 {
                flow.tun_flags |= FLOW_TNL_F_OAM;
            }
            flow.tun_id = u64::from(u32::from_be_bytes([h[4], h[5], h[6], h[7]]) >> 8);
            flow.tun_flags |= FLOW_TNL_F_KEY;
            geneve_opts_to_flow(opts, map, flow).map_err(DecapError::Geneve)?;
            Ok(8 + opts_len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn v4(s: &str) -> IpAddr {
        IpAddr::V4(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn send_fills_the_tunnel_as_ovs_does() {
        let mut cfg = TunnelConfig::new(TunnelKind::Geneve, TunnelIp::Fixed(v4("2.2.2.2")));
        cfg.out_key = TunnelKey::Fixed(5);
        let mut flow = Flow {
            dl_type: ETH_TYPE_IP,
            nw_tos: 0x03,
            ..Flow::default()
        };
        let mut wc = Flow::default();
        cfg.send(&mut flow, &mut wc);
        assert_eq!(
            (flow.tun_dst, flow.tun_id, flow.tun_ttl),
            (0x0202_0202, 5, 64)
        );
        // CE inside goes out as ECT(0); the ECN bits become exact.
        assert_eq!((flow.tun_tos, wc.nw_tos), (IP_ECN_ECT_0, IP_ECN_MASK));
        assert_eq!(flow.tun_flags, FLOW_TNL_F_DONT_FRAGMENT | FLOW_TNL_F_KEY);
        assert_eq!(flow.tun_tp_dst, 6081);
    }

    #[test]
    fn headers_round_trip_and_bad_ones_are_errors_not_panics() {
        let map = TlvMap::from_text("{class=0xffff,type=0,len=4}->tun_metadata0").unwrap();
        let mut f = Flow {
            tun_id: 0x1234,
            tun_gbp_id: 7,
            tun_gbp_flags: 0x08,
            ..Flow::default()
        };
        crate::field::Field::TunMetadata {
            idx: 0,
            off: 0,
            len: 4,
        }
        .set(&mut f, 0xabcd);
        for kind in [TunnelKind::Vxlan, TunnelKind::Geneve] {
            let h = encap_header(kind, true, &f, &map);
            let mut back = Flow::default();
            assert_eq!(decap(kind, true, &h, &map, &mut back), Ok(h.len()));
            assert_eq!(back.tun_id, 0x1234);
            if kind == TunnelKind::Geneve {
                assert_eq!(
                    (back.tun_md_present, &back.tun_md[..4]),
                    (1, &[0, 0, 0xab, 0xcd][..])
                );
            } else {
                assert_eq!((back.tun_gbp_id, back.tun_gbp_flags), (7, 0x08));
            }
            // Every truncation is an error, never a panic.
            for n in 0..h.len() {
                assert!(
                    decap(kind, true, &h[..n], &map, &mut Flow::default()).is_err(),
                    "{kind:?} {n}"
                );
            }
        }
        let mut ipv4 = encap_header(TunnelKind::Geneve, false, &f, &map);
        ipv4[2..4].copy_from_slice(&0x0800u16.to_be_bytes());
        assert!(decap(TunnelKind::Geneve, false, &ipv4, &map, &mut Flow::default()).is_err());
        // Without exts=gbp no GBP is sent, and a header with the G bit
        // (or any flag but I) is malformed, as Linux and OVS say.
        let plain = encap_header(TunnelKind::Vxlan, false, &f, &map);
        assert_eq!(plain[..4], [0x08, 0, 0, 0]);
        let with_gbp = encap_header(TunnelKind::Vxlan, true, &f, &map);
        assert_eq!(with_gbp[..4], [0x88, 0x08, 0, 7]);
        let mut back = Flow::default();
        assert!(decap(TunnelKind::Vxlan, false, &with_gbp, &map, &mut back).is_err());
        let mut reserved = with_gbp.clone();
        reserved[1] |= 0x80;
        assert!(decap(TunnelKind::Vxlan, true, &reserved, &map, &mut back).is_err());
    }

    #[test]
    fn a_kernel_flows_geneve_option_mask_reads_back() {
        use crate::netlink::{key_from_attrs, mask_from_attrs, megaflow_to_attrs};
        let map = std::sync::Arc::new(
            TlvMap::from_text(
                "{class=0xffff,type=0,len=4}->tun_metadata0,{class=0x102,type=0x80,len=8}->tun_metadata2",
            )
            .unwrap(),
        );
        let (f0, f2) = (
            crate::field::Field::TunMetadata {
                idx: 0,
                off: 0,
                len: 4,
            },
            crate::field::Field::TunMetadata {
                idx: 2,
                off: 4,
                len: 8,
            },
        );
        let mut key = Flow {
            tun_dst: 0x0202_0202,
            tun_src: 0x0101_0101,
            tun_ttl: 64,
            tun_flags: FLOW_TNL_F_KEY,
            in_port: 6081,
            dl_type: ETH_TYPE_IP,
            ..Flow::default()
        };
        f0.set(&mut key, 0x1234);
        f2.set(&mut key, 0x0102_0304_0506_0708);
        // Option 0 matched under a mask, option 2 not at all.
        let mut mask = Flow {
            tun_dst: u32::MAX,
            tun_src: u32::MAX,
            in_port: u32::MAX,
            dl_type: u16::MAX,
            ..Flow::default()
        };
        f0.set(&mut mask, 0xff00);
        crate::tlv::with_map(&map, || {
            let (k, m) = megaflow_to_attrs(&key, &mask);
            let back_key = key_from_attrs(&k).unwrap();
            assert_eq!(back_key.tun_md_present, 0b101);
            let back = mask_from_attrs(&back_key, Some(&m)).unwrap();
            assert_eq!(back.tun_md_present, 0b001);
            assert_eq!((f0.get(&back), f2.get(&back)), (0xff00, 0));
            // The mask has both of the key's options (the kernel wants them
            // as long as the key's), the unmatched one zero.
            let opts_len = |attrs: &[crate::netlink::KeyAttr]| {
                attrs.iter().find_map(|a| match a {
                    crate::netlink::KeyAttr::Tunnel(t) => t.iter().find_map(|t| match t {
                        TunnelAttr::GeneveOpts(o) => Some(o.len()),
                        _ => None,
                    }),
                    _ => None,
                })
            };
            assert_eq!(opts_len(&m), opts_len(&k));
            assert_eq!(opts_len(&k), Some(4 + 4 + 4 + 8));
            assert_eq!((back.tun_dst, back.tun_src), (u32::MAX, u32::MAX));
            // A mask whose options do not follow the key's layout is an
            // error naming the attribute, never a panic.
            let mut short = m.clone();
            for a in &mut short {
                if let crate::netlink::KeyAttr::Tunnel(t) = a {
                    for t in t.iter_mut() {
                        if let TunnelAttr::GeneveOpts(o) = t {
                            o.truncate(6);
                        }
                    }
                }
            }
            let err = mask_from_attrs(&back_key, Some(&short)).unwrap_err();
            assert!(err.to_string().contains("OVS_KEY_ATTR_TUNNEL"), "{err}");
        });
    }

    #[test]
    fn receive_prefers_exact_ports_over_flow_ports() {
        let mut fixed = TunnelConfig::new(TunnelKind::Vxlan, TunnelIp::Fixed(v4("1.1.1.1")));
        fixed.odp_port = 4789;
        let mut any = TunnelConfig::new(TunnelKind::Vxlan, TunnelIp::Flow);
        any.odp_port = 4789;
        any.in_key = TunnelKey::Flow;
        let ports = [(10, &fixed), (11, &any)];
        let mut flow = Flow {
            in_port: 4789,
            tun_src: 0x0101_0101,
            tun_dst: 0x0909_0909,
            ..Flow::default()
        };
        assert_eq!(tnl_find(ports.iter().copied(), &flow), Some(10));
        flow.tun_src = 0x0303_0303;
        assert_eq!(tnl_find(ports.iter().copied(), &flow), Some(11));
        flow.in_port = 6081;
        assert_eq!(tnl_find(ports.iter().copied(), &flow), None);
    }

    #[test]
    fn geneve_options_round_trip_and_unknown_critical_ones_are_refused() {
        let map = TlvMap::from_text(
            "{class=0xffff,type=0,len=4}->tun_metadata0,{class=0x102,type=0x80,len=8}->tun_metadata2",
        )
        .unwrap();
        let mut flow = Flow::default();
        let f0 = crate::field::Field::TunMetadata {
            idx: 0,
            off: 0,
            len: 4,
        };
        f0.set(&mut flow, 0x1234);
        let opts = geneve_opts(&flow, &map);
        assert_eq!(opts, [0xff, 0xff, 0, 1, 0, 0, 0x12, 0x34]);
        let mut back = Flow::default();
        geneve_opts_to_flow(&opts, &map, &mut back).unwrap();
        assert_eq!((back.tun_md_present, f0.get(&back)), (1, 0x1234));
        // Unknown: skipped when not critical, refused when critical.
        let unknown = [0, 7, 0x01, 1, 9, 9, 9, 9];
        assert!(geneve_opts_to_flow(&unknown, &map, &mut Flow::default()).is_ok());
        let critical = [0, 7, 0x81, 1, 9, 9, 9, 9];
        assert_eq!(
            geneve_opts_to_flow(&critical, &map, &mut Flow::default()),
            Err(GeneveError::UnknownCritical {
                class: 7,
                opt_type: 0x81
            })
        );
        assert_eq!(
            geneve_opts_to_flow(&[0, 7, 1, 3, 0], &map, &mut Flow::default()),
            Err(GeneveError::Malformed)
        );
    }

    #[test]
    fn a_kernel_keys_unknown_and_reordered_options_keep_their_layout() {
        use crate::netlink::{key_from_attrs, mask_from_attrs, megaflow_to_attrs, KeyAttr};
        let map = std::sync::Arc::new(
            TlvMap::from_text(
                "{class=0xffff,type=0,len=4}->tun_metadata0,{class=0x102,type=0x80,len=8}->tun_metadata2",
            )
            .unwrap(),
        );
        let f0 = crate::field::Field::TunMetadata {
            idx: 0,
            off: 0,
            len: 4,
        };
        let opts_of = |attrs: &[KeyAttr]| {
            attrs.iter().find_map(|a| match a {
                KeyAttr::Tunnel(t) => t.iter().find_map(|t| match t {
                    TunnelAttr::GeneveOpts(o) => Some(o.clone()),
                    _ => None,
                }),
                _ => None,
            })
        };
        let upcall_key = |opts: &[u8]| {
            vec![
                KeyAttr::Tunnel(vec![
                    TunnelAttr::Ipv4Src(0x0101_0101),
                    TunnelAttr::Ipv4Dst(0x0202_0202),
                    TunnelAttr::Ttl(64),
                    TunnelAttr::GeneveOpts(opts.to_vec()),
                ]),
                KeyAttr::InPort(6081),
            ]
        };
        // An option the map does not know (class 7, 8 bytes) before a
        // known one, then the two known ones in the other order.
        let unknown_first = [
            0, 7, 0x01, 2, 9, 9, 9, 9, 9, 9, 9, 9, 0xff, 0xff, 0, 1, 0, 0, 0x12, 0x34,
        ];
        let reordered = [
            1, 2, 0x80, 2, 1, 2, 3, 4, 5, 6, 7, 8, 0xff, 0xff, 0, 1, 0, 0, 0x12, 0x34,
        ];
        let in_map_order = [
            0xff, 0xff, 0, 1, 0, 0, 0x12, 0x34, 1, 2, 0x80, 2, 1, 2, 3, 4, 5, 6, 7, 8,
        ];
        crate::tlv::with_map(&map, || {
            for (raw, unknown_data) in [(&unknown_first[..], true), (&reordered[..], false)] {
                let key = key_from_attrs(&upcall_key(raw)).unwrap();
                assert_ne!(key.tun_md_layout, 0);
                assert_eq!(f0.get(&key), 0x1234);
                // The megaflow: tun_metadata0 matched exactly, the layout
                // pinned as the translation's wildcards pin it.
                let mut mask = Flow {
                    tun_src: u32::MAX,
                    tun_dst: u32::MAX,
                    in_port: u32::MAX,
                    ..Flow::default()
                };
                wc_init(&key, &mut mask);
                assert_eq!(mask.tun_md_layout, u32::MAX);
                f0.set(&mut mask, 0xffff_ffff);
                let (k, m) = megaflow_to_attrs(&key, &mask);
                // The key has the options as they came (unknown data
                // zero), the mask their layout with the unknown data
                // wildcarded.
                let mut want = raw.to_vec();
                if unknown_data {
                    want[4..12].fill(0);
                }
                assert_eq!(opts_of(&k).unwrap(), want);
                let mask_opts = opts_of(&m).unwrap();
                assert_eq!(mask_opts.len(), raw.len());
                // Read back from a dump: the same key and mask.
                let back_key = key_from_attrs(&k).unwrap();
                assert_eq!(back_key.tun_md_layout, key.tun_md_layout);
                let back = mask_from_attrs(&back_key, Some(&m)).unwrap();
                assert_eq!((back.tun_md_layout, f0.get(&back)), (u32::MAX, 0xffff_ffff));
                assert_eq!(back.tun_md_present, 1);
                // Sent through a Geneve port: the map's options, in its
                // order, no layout.
                let mut out = key;
                TunnelConfig::new(TunnelKind::Geneve, TunnelIp::Fixed(v4("3.3.3.3")))
                    .send(&mut out, &mut Flow::default());
                assert_eq!(out.tun_md_layout, 0);
                let sent = tunnel_attrs(&out, Some(TunnelKind::Geneve), &map);
                assert!(sent.contains(&TunnelAttr::GeneveOpts(if unknown_data {
                    in_map_order[..8].to_vec()
                } else {
                    in_map_order.to_vec()
                })));
            }
            // The map's own order needs no layout.
            let key = key_from_attrs(&upcall_key(&in_map_order)).unwrap();
            assert_eq!(key.tun_md_layout, 0);
            // An unknown critical option is taken in, and named for the
            // translation to drop the packet; a mapped one is not.
            let critical = [0, 7, 0x81, 1, 9, 9, 9, 9];
            let key = key_from_attrs(&upcall_key(&critical)).unwrap();
            assert_eq!(unknown_critical_option(&key, &map), Some((7, 0x81)));
            let known = TlvMap::from_text("{class=7,type=0x81,len=4}->tun_metadata1").unwrap();
            assert_eq!(unknown_critical_option(&key, &known), None);
            assert_eq!(unknown_critical_option(&Flow::default(), &map), None);
        });
    }
}
