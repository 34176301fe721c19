//! OVS's userspace ("native") tunnelling, the pure parts: the underlay's
//! routes (`ovs/route/add`), the outer header a tunnel output pushes
//! (`tnl_push(...)`, OVS's `netdev_tnl_*_build_header` and
//! `format_odp_tnl_push_action`), pushing it onto a frame and popping a
//! received one (`tnl_pop(...)`). No I/O: the neighbour cache and the
//! translation that uses these live in `actors/src/xlate/native_tunnel.rs`.

use std::fmt::Write;
use std::net::Ipv4Addr;

use crate::flow::*;
use crate::tlv::TlvMap;
use crate::tunnel::{decap, encap_header, DecapError, TunnelKind};
use crate::wire::checksum;

const ETH_LEN: usize = 14;
const IPV4_LEN: usize = 20;
const UDP_LEN: usize = 8;
const IPPROTO_UDP: u8 = 17;
const IP_DF: u16 = 0x4000;

/// OVS's `tnl_udp_port_min`/`_max`: the outer UDP source port is a hash
/// of the inner flow in this range.
const SRC_PORT_MIN: u32 = 32768;
const SRC_PORT_MAX: u32 = 61000;

/// OVS's `enum ovs_vport_type` numbers, which `tnl_push` prints as `type=`.
pub fn vport_type(kind: TunnelKind) -> u32 {
    match kind {
        TunnelKind::Vxlan => 4,
        TunnelKind::Geneve => 5,
    }
}

/// One route of the underlay (OVS's `ovs-router` entry): packets to
/// `prefix/plen` leave from `src`, to `gateway` if there is one (else to
/// the destination itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Route {
    pub prefix: Ipv4Addr,
    pub plen: u8,
    pub gateway: Option<Ipv4Addr>,
    pub src: Ipv4Addr,
}

impl Route {
    fn covers(&self, a: Ipv4Addr) -> bool {
        let mask = if self.plen == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.plen))
        };
        u32::from(a) & mask == u32::from(self.prefix) & mask
    }
}

/// The underlay as the bridge's own port sees it: its addresses (each a
/// connected route), its MAC, and static routes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Underlay {
    /// Addresses of the bridge's `LOCAL` port, with their prefix lengths.
    pub addresses: Vec<(Ipv4Addr, u8)>,
    /// The `LOCAL` port's MAC: the outer source MAC, and what a received
    /// tunnel packet must be addressed to.
    pub mac: [u8; 6],
    /// Routes added as `ovs/route/add` adds them.
    pub routes: Vec<Route>,
}

/// OVS's priority over routes (`ovs_router_insert__`): a route added by
/// hand ("User") ranks 32 prefix bits above a connected ("Cached") one.
const USER_ROUTE_BONUS: u8 = 32;

/// OVS's `ovs_router_lookup` over the routes of `addresses` (connected),
/// `routes` (added by hand) and `host` (read from the host's table, as
/// connected ones rank): the highest priority covering `dst`; the next
/// hop and source address.
pub fn route_lookup(
    addresses: &[(Ipv4Addr, u8)],
    routes: &[Route],
    host: &[Route],
    dst: Ipv4Addr,
) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let connected = addresses.iter().map(|&(a, plen)| {
        (
            plen,
            Route {
                prefix: a,
                plen,
                gateway: None,
                src: a,
            },
        )
    });
    routes
        .iter()
        .map(|r| (r.plen + USER_ROUTE_BONUS, *r))
        .chain(connected)
        .chain(host.iter().map(|r| (r.plen, *r)))
        .filter(|(_, r)| r.covers(dst))
        .max_by_key(|(priority, _)| *priority)
        .map(|(_, r)| (r.gateway.unwrap_or(dst), r.src))
}

impl Underlay {
    /// [`route_lookup`] over this underlay's addresses and routes.
    pub fn route(&self, dst: Ipv4Addr) -> Option<(Ipv4Addr, Ipv4Addr)> {
        route_lookup(&self.addresses, &self.routes, &[], dst)
    }

    /// The address whose subnet holds `a`, the longest such (OVS's
    /// `ovs_router_get_netdev_source_address`).
    pub fn on_link_source(&self, a: Ipv4Addr) -> Option<Ipv4Addr> {
        self.addresses
            .iter()
            .filter(|&&(x, plen)| {
                Route {
                    prefix: x,
                    plen,
                    gateway: None,
                    src: x,
                }
                .covers(a)
            })
            .max_by_key(|&&(_, plen)| plen)
            .map(|&(x, _)| x)
    }

    /// The source address for a route through `gateway`: the address whose
    /// subnet holds it, else the first.
    pub fn source_for(&self, gateway: Option<Ipv4Addr>) -> Option<Ipv4Addr> {
        let on_link = gateway.and_then(|g| {
            self.addresses.iter().find(|&&(a, plen)| {
                Route {
                    prefix: a,
                    plen,
                    gateway: None,
                    src: a,
                }
                .covers(g)
            })
        });
        on_link.or(self.addresses.first()).map(|&(a, _)| a)
    }

    pub fn has_address(&self, a: Ipv4Addr) -> bool {
        self.addresses.iter().any(|&(x, _)| x == a)
    }
}

/// OVS's `compose_arp` for the request `tnl_send_arp_request` sends on a
/// neighbour miss: broadcast, "who has `target`? tell `sender`" from `mac`.
pub fn arp_request(mac: [u8; 6], sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = Vec::with_capacity(ETH_LEN + 28);
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&ETH_TYPE_ARP.to_be_bytes());
    // Ethernet hardware, IPv4 protocol, their lengths, opcode 1 (request).
    f.extend_from_slice(&[0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// A `tnl_push` action: the whole outer header (Ethernet, IPv4, UDP, and
/// VXLAN or Geneve) with lengths and the UDP source port left to fill per
/// packet, the tunnel vport it is for and the port it leaves by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TnlPush {
    pub tnl_port: u32,
    pub out_port: u32,
    pub kind: TunnelKind,
    pub header: Vec<u8>,
}

/// OVS's `tnl_port_build_header` for a VXLAN or Geneve port: the outer
/// header of a packet with `flow`'s tunnel, from `src` (when the tunnel
/// names none), between the MACs given.
pub fn build_header(
    kind: TunnelKind,
    flow: &Flow,
    src: Ipv4Addr,
    smac: [u8; 6],
    dmac: [u8; 6],
    map: &TlvMap,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(ETH_LEN + IPV4_LEN + UDP_LEN + 8);
    h.extend_from_slice(&dmac);
    h.extend_from_slice(&smac);
    h.extend_from_slice(&ETH_TYPE_IP.to_be_bytes());
    let src = if flow.tun_src != 0 {
        flow.tun_src
    } else {
        u32::from(src)
    };
    let frag = if flow.tun_flags & FLOW_TNL_F_DONT_FRAGMENT != 0 {
        IP_DF
    } else {
        0
    };
    let mut ip = [0u8; IPV4_LEN];
    ip[0] = 0x45;
    ip[1] = flow.tun_tos;
    ip[6..8].copy_from_slice(&frag.to_be_bytes());
    ip[8] = flow.tun_ttl;
    ip[9] = IPPROTO_UDP;
    ip[12..16].copy_from_slice(&src.to_be_bytes());
    ip[16..20].copy_from_slice(&flow.tun_dst.to_be_bytes());
    // The checksum with a zero length; each push adds its length in.
    let csum = checksum::internet(&ip);
    ip[10..12].copy_from_slice(&csum.to_be_bytes());
    h.extend_from_slice(&ip);
    let mut udp = [0u8; UDP_LEN];
    udp[2..4].copy_from_slice(&flow.tun_tp_dst.to_be_bytes());
    if flow.tun_flags & FLOW_TNL_F_CSUM != 0 {
        // OVS's mark for "compute the checksum when pushing".
        udp[6..8].copy_from_slice(&0xffffu16.to_be_bytes());
    }
    h.extend_from_slice(&udp);
    // OVS 3.1's userspace VXLAN has no Group Policy extension.
    h.extend_from_slice(&encap_header(kind, false, flow, map));
    h
}

impl TnlPush {
    /// The outer destination MAC: the next hop's.
    pub fn dst_mac(&self) -> [u8; 6] {
        let mut mac = [0; 6];
        if let Some(h) = self.header.get(..6) {
            mac.copy_from_slice(h);
        }
        mac
    }

    /// As OVS's `format_odp_tnl_push_action` prints it.
    pub fn format(&self) -> String {
        let h = &self.header;
        let mut s = format!(
            "tnl_push(tnl_port({}),header(size={},type={},",
            self.tnl_port,
            h.len(),
            vport_type(self.kind)
        );
        let mac = |b: &[u8]| {
            b.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(":")
        };
        let _ = write!(
            s,
            "eth(dst={},src={},dl_type=0x{:04x}),",
            mac(&h[0..6]),
            mac(&h[6..12]),
            u16::from_be_bytes([h[12], h[13]])
        );
        let ip = &h[ETH_LEN..ETH_LEN + IPV4_LEN];
        let addr = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
        let tos = if ip[1] == 0 {
            "0".to_string()
        } else {
            format!("{:#x}", ip[1])
        };
        let _ = write!(
            s,
            "ipv4(src={},dst={},proto={},tos={tos},ttl={},frag=0x{:x}),",
            addr(&ip[12..16]),
            addr(&ip[16..20]),
            ip[9],
            ip[8],
            u16::from_be_bytes([ip[6], ip[7]])
        );
        let udp = &h[ETH_LEN + IPV4_LEN..ETH_LEN + IPV4_LEN + UDP_LEN];
        let _ = write!(
            s,
            "udp(src={},dst={},csum=0x{:x}),",
            u16::from_be_bytes([udp[0], udp[1]]),
            u16::from_be_bytes([udp[2], udp[3]]),
            u16::from_be_bytes([udp[6], udp[7]])
        );
        let t = &h[ETH_LEN + IPV4_LEN + UDP_LEN..];
        let vni = u32::from_be_bytes([t[4], t[5], t[6], t[7]]) >> 8;
        match self.kind {
            TunnelKind::Vxlan => {
                let flags = u32::from_be_bytes([t[0], t[1], t[2], t[3]]);
                let _ = write!(s, "vxlan(flags={flags:#x},vni={vni:#x})");
            }
            TunnelKind::Geneve => {
                s.push_str("geneve(");
                if t[1] & 0x80 != 0 {
                    s.push_str("oam,");
                }
                if t[1] & 0x40 != 0 {
                    s.push_str("crit,");
                }
                let _ = write!(s, "vni={vni:#x}");
                if t.len() > 8 {
                    s.push_str(",options(");
                    crate::format::odp_flow::geneve_opts(&mut s, &t[8..], None);
                    s.push(')');
                }
                s.push(')');
            }
        }
        let _ = write!(s, "),out_port({}))", self.out_port);
        s
    }

    /// Pushes the header onto `frame` (OVS's `netdev_tnl_push_udp_header`):
    /// IP and UDP lengths, the IP checksum, a UDP source port from
    /// `flow_hash` (the inner packet's 5-tuple hash) and, when the header
    /// asks for one, the UDP checksum.
    pub fn push(&self, frame: &mut Vec<u8>, flow_hash: u32) {
        let inner = frame.len();
        frame.splice(0..0, self.header.iter().copied());
        let ip_len = (frame.len() - ETH_LEN) as u16;
        let udp_len = (frame.len() - ETH_LEN - IPV4_LEN) as u16;
        debug_assert!(frame.len() == inner + self.header.len());
        let ip = &mut frame[ETH_LEN..ETH_LEN + IPV4_LEN];
        ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        let csum = u16::from_be_bytes([ip[10], ip[11]]);
        let csum = checksum::update_u16(csum, 0, ip_len);
        ip[10..12].copy_from_slice(&csum.to_be_bytes());
        let (src, dst) = (
            u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]),
            u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]),
        );
        let port = ((u64::from(flow_hash) * u64::from(SRC_PORT_MAX - SRC_PORT_MIN)) >> 32) as u32
            + SRC_PORT_MIN;
        let l4 = ETH_LEN + IPV4_LEN;
        frame[l4..l4 + 2].copy_from_slice(&(port as u16).to_be_bytes());
        frame[l4 + 4..l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
        if frame[l4 + 6..l4 + 8] != [0, 0] {
            frame[l4 + 6..l4 + 8].copy_from_slice(&[0, 0]);
            let pseudo = checksum::pseudo_header_v4(src, dst, IPPROTO_UDP, udp_len);
            let sum = checksum::combine(pseudo, checksum::ones_sum(&frame[l4..]));
            let mut c = !sum;
            if c == 0 {
                c = 0xffff;
            }
            frame[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
        }
    }
}

/// Why `tnl_pop` dropped a packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PopError {
    /// Not an unfragmented IPv4/UDP frame with options-free IP header.
    Outer(&'static str),
    Decap(DecapError),
}

impl std::fmt::Display for PopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PopError::Outer(why) => write!(f, "tunnel pop: {why}"),
            PopError::Decap(e) => e.fmt(f),
        }
    }
}

/// OVS's `netdev_tnl_ip_extract_tnl_md` and the UDP tunnels' `pop_header`:
/// takes the outer Ethernet, IPv4 and UDP headers and the VXLAN or Geneve
/// header off `frame`, writing the tunnel (addresses, TOS, TTL, ports,
/// flags, key, options by the map) into `md`'s tunnel fields.
pub fn pop(
    kind: TunnelKind,
    frame: &mut Vec<u8>,
    map: &TlvMap,
    md: &mut Flow,
) -> Result<(), PopError> {
    let bad = PopError::Outer;
    let eth = frame.get(..ETH_LEN).ok_or(bad("shorter than Ethernet"))?;
    if u16::from_be_bytes([eth[12], eth[13]]) != ETH_TYPE_IP {
        return Err(bad("not IPv4"));
    }
    let ip = frame
        .get(ETH_LEN..ETH_LEN + IPV4_LEN)
        .ok_or(bad("shorter than an IPv4 header"))?;
    if ip[0] != 0x45 {
        return Err(bad("IPv4 header with options or a wrong version"));
    }
    if checksum::internet(ip) != 0 {
        return Err(bad("bad IPv4 header checksum"));
    }
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return Err(bad("fragment"));
    }
    if ip[9] != IPPROTO_UDP {
        return Err(bad("not UDP"));
    }
    let ip_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    if ip_len < IPV4_LEN + UDP_LEN || ETH_LEN + ip_len > frame.len() {
        return Err(bad("IPv4 length beyond the frame"));
    }
    md.clear_tunnel();
    md.tun_tos = ip[1];
    md.tun_ttl = ip[8];
    md.tun_src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
    md.tun_dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
    if u16::from_be_bytes([ip[6], ip[7]]) & IP_DF != 0 {
        md.tun_flags |= FLOW_TNL_F_DONT_FRAGMENT;
    }
    // Ethernet padding after the IP packet is not the inner frame's.
    frame.truncate(ETH_LEN + ip_len);
    let l4 = ETH_LEN + IPV4_LEN;
    let udp = &frame[l4..l4 + UDP_LEN];
    md.tun_tp_src = u16::from_be_bytes([udp[0], udp[1]]);
    md.tun_tp_dst = u16::from_be_bytes([udp[2], udp[3]]);
    if udp[6..8] != [0, 0] {
        let pseudo = checksum::pseudo_header_v4(
            md.tun_src,
            md.tun_dst,
            IPPROTO_UDP,
            (ip_len - IPV4_LEN) as u16,
        );
        if !checksum::verify(pseudo, &frame[l4..]) {
            return Err(bad("bad UDP checksum"));
        }
        md.tun_flags |= FLOW_TNL_F_CSUM;
    }
    let off = decap(kind, false, &frame[l4 + UDP_LEN..], map, md).map_err(PopError::Decap)?;
    frame.drain(..l4 + UDP_LEN + off);
    Ok(())
}

/// One tunnel endpoint the bridge terminates (OVS's `tnl-ports` entry):
/// packets to `mac`, `addr`, UDP `port` are popped as vport `odp_port`'s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TnlEndpoint {
    pub mac: [u8; 6],
    pub addr: Ipv4Addr,
    pub udp_port: u16,
    pub odp_port: u32,
}

/// OVS's `tnl_port_map_lookup`: the vport whose endpoint `flow` is
/// addressed to, un-wildcarding what the lookup examined in its stages as
/// OVS's classifier does (one subtable: L2 — destination MAC, VLAN,
/// Ethernet type — then L3 — destination address, protocol, fragment
/// bits — then L4 — the UDP destination port).
pub fn tnl_port_lookup(eps: &[TnlEndpoint], flow: &Flow, wc: &mut Flow) -> Option<u32> {
    if eps.is_empty() {
        return None;
    }
    wc.dl_dst = [0xff; 6];
    wc.vlans[0].tci = u16::MAX;
    wc.dl_type = u16::MAX;
    let l2 = |e: &&TnlEndpoint| {
        e.mac == flow.dl_dst && flow.vlans[0].tci == 0 && flow.dl_type == ETH_TYPE_IP
    };
    if !eps.iter().any(|e| l2(&e)) {
        return None;
    }
    wc.nw_dst = u32::MAX;
    wc.nw_proto = u8::MAX;
    wc.nw_frag = FLOW_NW_FRAG_MASK;
    let l3 = |e: &&TnlEndpoint| {
        l2(e)
            && u32::from(e.addr) == flow.nw_dst
            && flow.nw_proto == IPPROTO_UDP
            && flow.nw_frag == 0
    };
    if !eps.iter().any(|e| l3(&e)) {
        return None;
    }
    let found = eps
        .iter()
        .find(|e| l3(e) && e.udp_port == flow.tp_dst)
        .map(|e| e.odp_port);
    if found.is_some() {
        wc.tp_dst = u16::MAX;
        return found;
    }
    // No match in the last stage: the subtable's ports trie decides how
    // many leading bits of the (source, destination) ports word it took
    // to tell, the longest prefix any endpoint shares with the packet's
    // plus the bit that differs (OVS's `trie_lookup_value`); the source
    // port is not in the mask.
    let value = u32::from(flow.tp_dst);
    let shared = eps
        .iter()
        .map(|e| (value ^ u32::from(e.udp_port)).leading_zeros())
        .max()
        .unwrap_or(0);
    let bits = (shared + 1).min(32);
    wc.tp_dst |= ((u32::MAX << (32 - bits)) & 0xffff) as u16;
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vxlan_header_prints_as_ovs_prints_it() {
        let f = Flow {
            tun_id: 0x7b,
            tun_dst: u32::from(Ipv4Addr::new(1, 1, 2, 92)),
            tun_ttl: 64,
            tun_tp_dst: 4789,
            tun_flags: FLOW_TNL_F_DONT_FRAGMENT | FLOW_TNL_F_KEY,
            ..Flow::default()
        };
        let smac = [0xaa, 0x55, 0xaa, 0x55, 0, 0];
        let dmac = [0xf8, 0xbc, 0x12, 0x44, 0x34, 0xb6];
        let p = TnlPush {
            tnl_port: 4789,
            out_port: 100,
            kind: TunnelKind::Vxlan,
            header: build_header(
                TunnelKind::Vxlan,
                &f,
                Ipv4Addr::new(1, 1, 2, 88),
                smac,
                dmac,
                &TlvMap::default(),
            ),
        };
        // tests/tunnel-push-pop.at, "Check VXLAN tunnel push".
        assert_eq!(
            p.format(),
            "tnl_push(tnl_port(4789),header(size=50,type=4,eth(dst=f8:bc:12:44:34:b6,\
             src=aa:55:aa:55:00:00,dl_type=0x0800),ipv4(src=1.1.2.88,dst=1.1.2.92,proto=17,\
             tos=0,ttl=64,frag=0x4000),udp(src=0,dst=4789,csum=0x0),\
             vxlan(flags=0x8000000,vni=0x7b)),out_port(100))"
        );
    }

    #[test]
    fn push_then_pop_gives_the_frame_and_tunnel_back_and_bad_frames_are_errors() {
        let map = TlvMap::from_text("{class=0xffff,type=0x80,len=4}->tun_metadata0").unwrap();
        for (kind, csum) in [(TunnelKind::Vxlan, false), (TunnelKind::Geneve, true)] {
            let mut f = Flow {
                tun_id: 5,
                tun_dst: 0x0a00_0002,
                tun_ttl: 63,
                tun_tos: 0x10,
                tun_tp_dst: kind.default_port(),
                tun_flags: FLOW_TNL_F_DONT_FRAGMENT
                    | FLOW_TNL_F_KEY
                    | if csum { FLOW_TNL_F_CSUM } else { 0 },
                ..Flow::default()
            };
            crate::field::Field::TunMetadata {
                idx: 0,
                off: 0,
                len: 4,
            }
            .set(&mut f, 0xa);
            let p = TnlPush {
                tnl_port: 1,
                out_port: 2,
                kind,
                header: build_header(kind, &f, Ipv4Addr::new(10, 0, 0, 1), [2; 6], [4; 6], &map),
            };
            let inner: Vec<u8> = (0..60u8).collect();
            let mut frame = inner.clone();
            p.push(&mut frame, 0x1234_5678);
            let mut md = Flow::default();
            let mut popped = frame.clone();
            pop(kind, &mut popped, &map, &mut md).unwrap();
            assert_eq!(popped, inner);
            assert_eq!(
                (md.tun_id, md.tun_src, md.tun_dst, md.tun_ttl, md.tun_tos),
                (5, 0x0a00_0001, 0x0a00_0002, 63, 0x10)
            );
            assert_eq!(md.tun_flags & FLOW_TNL_F_CSUM != 0, csum);
            if kind == TunnelKind::Geneve {
                assert_eq!(md.tun_md_present, 1);
            }
            for n in 0..frame.len() {
                let mut cut = frame[..n].to_vec();
                let _ = pop(kind, &mut cut, &map, &mut Flow::default());
            }
            let mut corrupt = frame.clone();
            corrupt[ETH_LEN + 8] ^= 1;
            assert!(pop(kind, &mut corrupt, &map, &mut Flow::default()).is_err());
        }
    }

    #[test]
    fn routes_take_the_longest_prefix() {
        let u = Underlay {
            addresses: vec![(Ipv4Addr::new(1, 1, 2, 88), 24)],
            mac: [0; 6],
            routes: vec![Route {
                prefix: Ipv4Addr::new(10, 0, 0, 0),
                plen: 8,
                gateway: Some(Ipv4Addr::new(1, 1, 2, 1)),
                src: Ipv4Addr::new(1, 1, 2, 88),
            }],
        };
        assert_eq!(
            u.route(Ipv4Addr::new(1, 1, 2, 92)),
            Some((Ipv4Addr::new(1, 1, 2, 92), Ipv4Addr::new(1, 1, 2, 88)))
        );
        assert_eq!(
            u.route(Ipv4Addr::new(10, 9, 9, 9)),
            Some((Ipv4Addr::new(1, 1, 2, 1), Ipv4Addr::new(1, 1, 2, 88)))
        );
        assert_eq!(u.route(Ipv4Addr::new(9, 9, 9, 9)), None);
        // A route added by hand outranks a connected one up to 32 bits
        // longer, as in OVS's ovs-router.
        let wide = Underlay {
            routes: vec![Route {
                prefix: Ipv4Addr::new(1, 0, 0, 0),
                plen: 8,
                gateway: Some(Ipv4Addr::new(1, 1, 2, 1)),
                src: Ipv4Addr::new(1, 1, 2, 88),
            }],
            ..u
        };
        assert_eq!(
            wide.route(Ipv4Addr::new(1, 1, 2, 92)),
            Some((Ipv4Addr::new(1, 1, 2, 1), Ipv4Addr::new(1, 1, 2, 88)))
        );
        assert_eq!(
            wide.on_link_source(Ipv4Addr::new(1, 1, 2, 7)),
            Some(Ipv4Addr::new(1, 1, 2, 88))
        );
        assert_eq!(wide.on_link_source(Ipv4Addr::new(1, 1, 3, 7)), None);
    }

    #[test]
    fn an_arp_request_is_what_ovs_composes() {
        let f = arp_request(
            [0xaa, 0x55, 0xaa, 0x55, 0, 0],
            Ipv4Addr::new(1, 1, 2, 88),
            Ipv4Addr::new(1, 1, 2, 92),
        );
        let flow = crate::extract::flow_extract(&f, &Flow::default());
        assert_eq!(flow.dl_dst, [0xff; 6]);
        assert_eq!(flow.dl_type, ETH_TYPE_ARP);
        assert_eq!(flow.nw_proto, 1, "an ARP request");
        assert_eq!(flow.arp_sha, [0xaa, 0x55, 0xaa, 0x55, 0, 0]);
        assert_eq!(flow.arp_tha, [0; 6]);
        assert_eq!(Ipv4Addr::from(flow.nw_src), Ipv4Addr::new(1, 1, 2, 88));
        assert_eq!(Ipv4Addr::from(flow.nw_dst), Ipv4Addr::new(1, 1, 2, 92));
    }
}
