//! What the connection tracker reads from a frame: the connection's key
//! (addresses, ports or ICMP id/type/code, protocol), where the headers
//! are, and a TCP segment's sequence fields. Frames the tracker cannot
//! follow (truncated, bad checksums, later fragments, ICMP errors whose
//! quoted header is unusable) parse to `None`, and the packet is `+inv`,
//! as in OVS's `conn_key_extract`.

use messages::wire::checksum;

const ETH_TYPE_IP: u16 = 0x0800;
const ETH_TYPE_IPV6: u16 = 0x86dd;
pub(super) const IPPROTO_ICMP: u8 = 1;
pub(super) const IPPROTO_TCP: u8 = 6;
pub(super) const IPPROTO_UDP: u8 = 17;
pub(super) const IPPROTO_ICMPV6: u8 = 58;

pub(super) const TCP_FIN: u16 = 0x001;
pub(super) const TCP_SYN: u16 = 0x002;
pub(super) const TCP_RST: u16 = 0x004;
pub(super) const TCP_PSH: u16 = 0x008;
pub(super) const TCP_ACK: u16 = 0x010;
pub(super) const TCP_URG: u16 = 0x020;

/// One end of a connection. IPv4 addresses take the first 4 bytes of
/// `addr`. For ICMP, `port` is the echo id and `icmp_type` the type this
/// end sends (the other end's is its reply type), as OVS keys ICMP.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: [u8; 16],
    pub port: u16,
    pub icmp_type: u8,
    pub icmp_code: u8,
}

/// A connection's key in one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct ConnKey {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub zone: u16,
    pub proto: u8,
    pub ipv6: bool,
}

impl ConnKey {
    /// The key of the other direction.
    pub fn reversed(&self) -> ConnKey {
        ConnKey {
            src: self.dst,
            dst: self.src,
            ..*self
        }
    }

    pub fn is_icmp(&self) -> bool {
        matches!(
            (self.ipv6, self.proto),
            (false, IPPROTO_ICMP) | (true, IPPROTO_ICMPV6)
        )
    }

    /// Whether NAT may rewrite this protocol's ports (or ICMP id).
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, IPPROTO_TCP | IPPROTO_UDP) || self.is_icmp()
    }
}

/// The TCP header fields the window tracking reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSegment {
    pub flags: u16,
    pub seq: u32,
    pub ack: u32,
    pub window: u16,
    pub payload_len: u32,
    /// The window-scale option, in OVS's encoding: `WSCALE_FLAG | shift`
    /// when present (shift at most 14), 0 when absent.
    pub wscale: u8,
}

pub(super) const WSCALE_FLAG: u8 = 0x80;
pub(super) const WSCALE_UNKNOWN: u8 = 0x40;
pub(super) const WSCALE_MASK: u8 = 0x0f;
const TCP_MAX_WSCALE: u8 = 14;

/// A frame as the tracker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CtPacket {
    /// The packet's key; for an ICMP error, the key of the connection it
    /// is about, in the direction of the error (the reverse of the quoted
    /// packet's).
    pub key: ConnKey,
    /// An ICMP error about another connection (`+rel` when tracked).
    pub related: bool,
    pub l3: usize,
    pub l4: usize,
    /// End of the IP packet (link-layer padding excluded).
    pub end: usize,
    pub tcp: Option<TcpSegment>,
    /// For ICMP: a message that may open a connection (echo, timestamp or
    /// information request).
    pub icmp_opens: bool,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Where the L3 header starts and its EtherType, past VLAN tags.
pub(super) fn l3_start(frame: &[u8]) -> Option<(usize, u16)> {
    let mut at = 12;
    let mut ty = be16(frame, at)?;
    while ty == 0x8100 || ty == 0x88a8 {
        at += 4;
        ty = be16(frame, at)?;
    }
    Some((at + 2, ty))
}

/// Parses `frame` for the tracker; `None` if it cannot be tracked.
pub fn parse(frame: &[u8]) -> Option<CtPacket> {
    let (l3, ty) = l3_start(frame)?;
    let mut key = ConnKey::default();
    let (l4, end) = match ty {
        ETH_TYPE_IP => ipv4_header(frame, l3, &mut key, true)?,
        ETH_TYPE_IPV6 => ipv6_header(frame, l3, &mut key, true)?,
        _ => return None,
    };
    let mut pkt = CtPacket {
        key,
        related: false,
        l3,
        l4,
        end,
        tcp: None,
        icmp_opens: false,
    };
    l4_header(frame, &mut pkt, true)?;
    Some(pkt)
}

/// Reads an IPv4 header at `l3` into `key`; returns where L4 starts and
/// where the packet ends. `outer` checks the header checksum and the total
/// length (a header quoted in an ICMP error is truncated).
fn ipv4_header(frame: &[u8], l3: usize, key: &mut ConnKey, outer: bool) -> Option<(usize, usize)> {
    let h = frame.get(l3..)?;
    if h.len() < 20 {
        return None;
    }
    let ihl = usize::from(h[0] & 0x0f) * 4;
    if ihl < 20 || h.len() < ihl {
        return None;
    }
    let frag = be16(h, 6)?;
    if frag & 0x3fff != 0 {
        // A fragment (more follow, or a later one): tracked only once
        // reassembled (`ipf`), as in OVS.
        return None;
    }
    let end = if outer {
        let total = usize::from(be16(h, 2)?);
        if total < ihl || total > h.len() || !checksum::verify(0, &h[..ihl]) {
            return None;
        }
        l3 + total
    } else {
        frame.len()
    };
    key.ipv6 = false;
    key.proto = h[9];
    key.src.addr[..4].copy_from_slice(&h[12..16]);
    key.dst.addr[..4].copy_from_slice(&h[16..20]);
    Some((l3 + ihl, end))
}

/// Reads an IPv6 header and its extension headers at `l3`; fragments are
/// tracked only once reassembled (`ipf`).
fn ipv6_header(frame: &[u8], l3: usize, key: &mut ConnKey, outer: bool) -> Option<(usize, usize)> {
    let h = frame.get(l3..)?;
    if h.len() < 40 {
        return None;
    }
    let end = if outer {
        let total = 40 + usize::from(be16(h, 4)?);
        if total > h.len() {
            return None;
        }
        l3 + total
    } else {
        frame.len()
    };
    let mut next = h[6];
    let mut at = l3 + 40;
    loop {
        match next {
            // Hop-by-hop, routing, destination options.
            0 | 43 | 60 => {
                let len = (usize::from(*frame.get(at + 1)?) + 1) * 8;
                if at + len > end {
                    return None;
                }
                next = frame[at];
                at += len;
            }
            // Authentication header: length in 4-byte units, minus 2.
            51 => {
                let len = (usize::from(*frame.get(at + 1)?) + 2) * 4;
                if at + len > end {
                    return None;
                }
                next = frame[at];
                at += len;
            }
            44 => return None,
            _ => break,
        }
    }
    key.ipv6 = true;
    key.proto = next;
    key.src.addr.copy_from_slice(&h[8..24]);
    key.dst.addr.copy_from_slice(&h[24..40]);
    Some((at, end))
}

/// Sum of the pseudo-header of the L4 segment of `pkt`.
pub(super) fn pseudo_header(frame: &[u8], pkt: &CtPacket) -> u16 {
    let len = pkt.end - pkt.l4;
    let proto = pkt.key.proto;
    if pkt.key.ipv6 {
        let src: [u8; 16] = frame[pkt.l3 + 8..pkt.l3 + 24]
            .try_into()
            .unwrap_or_default();
        let dst: [u8; 16] = frame[pkt.l3 + 24..pkt.l3 + 40]
            .try_into()
            .unwrap_or_default();
        checksum::pseudo_header_v6(&src, &dst, proto, len as u32)
    } else {
        let src = be32(frame, pkt.l3 + 12).unwrap_or(0);
        let dst = be32(frame, pkt.l3 + 16).unwrap_or(0);
        checksum::pseudo_header_v4(src, dst, proto, len as u16)
    }
}

/// Reads the L4 header of `pkt` into its key. `outer` checks lengths and
/// checksums and follows ICMP errors into the packet they quote.
fn l4_header(frame: &[u8], pkt: &mut CtPacket, outer: bool) -> Option<()> {
    let l4 = frame.get(pkt.l4..pkt.end)?;
    match pkt.key.proto {
        IPPROTO_TCP => {
            let min = if outer { 20 } else { 8 };
            if l4.len() < min {
                return None;
            }
            if outer {
                let hlen = usize::from(l4[12] >> 4) * 4;
                if hlen < 20 || hlen > l4.len() || !checksum::verify(pseudo_header(frame, pkt), l4)
                {
                    return None;
                }
                pkt.tcp = Some(TcpSegment {
                    flags: be16(l4, 12)? & 0x0fff,
                    seq: be32(l4, 4)?,
                    ack: be32(l4, 8)?,
                    window: be16(l4, 14)?,
                    payload_len: (l4.len() - hlen) as u32,
                    wscale: window_scale(&l4[20..hlen]),
                });
            }
            ports(l4, &mut pkt.key)
        }
        IPPROTO_UDP => {
            if l4.len() < 8 {
                return None;
            }
            if outer {
                let len = usize::from(be16(l4, 4)?);
                let csum = be16(l4, 6)?;
                if len < 8 || len > l4.len() {
                    return None;
                }
                let skip = csum == 0 && !pkt.key.ipv6;
                if !skip && !checksum::verify(pseudo_header(frame, pkt), l4) {
                    return None;
                }
            }
            ports(l4, &mut pkt.key)
        }
        IPPROTO_ICMP if !pkt.key.ipv6 => icmp4(frame, pkt, outer),
        IPPROTO_ICMPV6 if pkt.key.ipv6 => icmp6(frame, pkt, outer),
        // Other protocols, SCTP among them, are tracked by addresses alone,
        // as OVS 3.1's userspace tracker has no SCTP (`extract_l4`).
        _ => Some(()),
    }
}

fn ports(l4: &[u8], key: &mut ConnKey) -> Option<()> {
    key.src.port = be16(l4, 0)?;
    key.dst.port = be16(l4, 2)?;
    // Port 0 is not a connection's.
    (key.src.port != 0 && key.dst.port != 0).then_some(())
}

/// The type answering an ICMP query type, if it is one.
pub(super) fn icmp4_reply_type(ty: u8) -> Option<u8> {
    Some(match ty {
        8 => 0,
        0 => 8,
        13 => 14,
        14 => 13,
        15 => 16,
        16 => 15,
        _ => return None,
    })
}

pub(super) fn icmp6_reply_type(ty: u8) -> Option<u8> {
    Some(match ty {
        128 => 129,
        129 => 128,
        _ => return None,
    })
}

fn icmp4(frame: &[u8], pkt: &mut CtPacket, outer: bool) -> Option<()> {
    let l4 = &frame[pkt.l4..pkt.end];
    if l4.len() < 8 || (outer && !checksum::verify(0, l4)) {
        return None;
    }
    let (ty, code) = (l4[0], l4[1]);
    if let Some(reply) = icmp4_reply_type(ty) {
        if code != 0 {
            return None;
        }
        let id = be16(l4, 4)?;
        icmp_query_key(&mut pkt.key, id, ty, reply);
        pkt.icmp_opens = matches!(ty, 8 | 13 | 15);
        return Some(());
    }
    // Destination unreachable, source quench, redirect, time exceeded,
    // parameter problem: about the connection of the packet they quote.
    if !outer || !matches!(ty, 3 | 4 | 5 | 11 | 12) {
        return None;
    }
    let mut inner = CtPacket {
        key: ConnKey::default(),
        related: false,
        l3: pkt.l4 + 8,
        l4: 0,
        end: pkt.end,
        tcp: None,
        icmp_opens: false,
    };
    let (inner_l4, _) = ipv4_header(&frame[..pkt.end], inner.l3, &mut inner.key, false)?;
    inner.l4 = inner_l4;
    // The quoted packet was sent by the error's destination.
    if inner.key.src.addr != pkt.key.dst.addr {
        return None;
    }
    l4_header(frame, &mut inner, false)?;
    pkt.key = inner.key.reversed();
    pkt.related = true;
    Some(())
}

fn icmp6(frame: &[u8], pkt: &mut CtPacket, outer: bool) -> Option<()> {
    let l4 = &frame[pkt.l4..pkt.end];
    if l4.len() < 8 || (outer && !checksum::verify(pseudo_header(frame, pkt), l4)) {
        return None;
    }
    let (ty, code) = (l4[0], l4[1]);
    if let Some(reply) = icmp6_reply_type(ty) {
        if code != 0 {
            return None;
        }
        let id = be16(l4, 4)?;
        icmp_query_key(&mut pkt.key, id, ty, reply);
        pkt.icmp_opens = ty == 128;
        return Some(());
    }
    // Destination unreachable, packet too big, time exceeded, parameter
    // problem.
    if !outer || !matches!(ty, 1..=4) {
        return None;
    }
    let mut inner = CtPacket {
        key: ConnKey::default(),
        related: false,
        l3: pkt.l4 + 8,
        l4: 0,
        end: pkt.end,
        tcp: None,
        icmp_opens: false,
    };
    let (inner_l4, _) = ipv6_header(&frame[..pkt.end], inner.l3, &mut inner.key, false)?;
    inner.l4 = inner_l4;
    if inner.key.src.addr != pkt.key.dst.addr {
        return None;
    }
    l4_header(frame, &mut inner, false)?;
    pkt.key = inner.key.reversed();
    pkt.related = true;
    Some(())
}

fn icmp_query_key(key: &mut ConnKey, id: u16, ty: u8, reply: u8) {
    key.src.port = id;
    key.dst.port = id;
    key.src.icmp_type = ty;
    key.dst.icmp_type = reply;
}

/// The window-scale option among TCP `options`, in OVS's encoding.
fn window_scale(options: &[u8]) -> u8 {
    let mut i = 0;
    let mut wscale = 0;
    while i + 3 <= options.len() {
        match options[i] {
            0 => break,
            1 => i += 1,
            kind => {
                if kind == 3 {
                    wscale = options[i + 2].min(TCP_MAX_WSCALE) | WSCALE_FLAG;
                }
                i += usize::from(options[i + 1]).max(2);
            }
        }
    }
    wscale
}
