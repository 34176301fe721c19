//! The host's IPv4 routes and neighbours over rtnetlink, as OVS's
//! `route-table.c` reads routes: a dump request for each table and the
//! messages a dump or the multicast groups bring, decoded into
//! [`RtnlEvent`]s. No I/O; a malformed message is skipped, never a panic.

use std::net::Ipv4Addr;

/// Multicast groups (`RTMGRP_*`, the old bitmask form a bind takes).
pub const RTMGRP_NEIGH: u32 = 0x4;
pub const RTMGRP_IPV4_ROUTE: u32 = 0x40;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const RTM_GETNEIGH: u16 = 30;
const AF_INET: u8 = 2;
const RTMSG_LEN: usize = 12;
const NDMSG_LEN: usize = 12;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_TABLE: u16 = 15;
const NDA_DST: u16 = 1;
const NDA_LLADDR: u16 = 2;
/// `RT_TABLE_MAIN`: the table OVS's route-table reads unicast routes from.
const RT_TABLE_MAIN: u32 = 254;
const RTN_UNICAST: u8 = 1;
/// Neighbour states whose link-layer address can be used (`NUD_VALID`
/// without `NUD_INCOMPLETE`/`NUD_FAILED`/`NUD_NONE`).
const NUD_USABLE: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;

/// What the host's tables said.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtnlEvent {
    /// A unicast route of the main table appeared (`add`) or went.
    Route {
        add: bool,
        prefix: Ipv4Addr,
        plen: u8,
        gateway: Option<Ipv4Addr>,
        oif: u32,
    },
    /// A neighbour with a usable MAC (`Some`), or one gone or failed.
    Neighbour {
        ip: Ipv4Addr,
        mac: Option<[u8; 6]>,
        ifindex: u32,
    },
    /// The end of a dump.
    Done,
}

/// Which table a dump reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpKind {
    Routes,
    Neighbours,
}

/// An `RTM_GETROUTE` or `RTM_GETNEIGH` dump request for IPv4.
pub fn dump_request(kind: DumpKind, seq: u32) -> Vec<u8> {
    let (ty, body) = match kind {
        DumpKind::Routes => (RTM_GETROUTE, RTMSG_LEN),
        DumpKind::Neighbours => (RTM_GETNEIGH, NDMSG_LEN),
    };
    let len = NLMSG_HDR + body;
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.push(AF_INET);
    m.resize(len, 0);
    m
}

/// The events in one datagram of rtnetlink messages (a dump's part, or
/// multicast notifications). Messages of other kinds or families, and
/// malformed ones, are skipped.
pub fn parse(buf: &[u8]) -> Vec<RtnlEvent> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDR || len > rest.len() {
            break;
        }
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        let body = &rest[NLMSG_HDR..len];
        match ty {
            NLMSG_DONE | NLMSG_ERROR => out.push(RtnlEvent::Done),
            RTM_NEWROUTE | RTM_DELROUTE => {
                out.extend(parse_route(body, ty == RTM_NEWROUTE));
            }
            RTM_NEWNEIGH | RTM_DELNEIGH => {
                out.extend(parse_neighbour(body, ty == RTM_NEWNEIGH));
            }
            _ => {}
        }
        rest = &rest[align(len).min(rest.len())..];
    }
    out
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes after a fixed header: (type, value) pairs.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        v.push((ty, &b[4..len]));
        b = &b[align(len).min(b.len())..];
    }
    v
}

fn ipv4(v: &[u8]) -> Option<Ipv4Addr> {
    let a: [u8; 4] = v.try_into().ok()?;
    Some(Ipv4Addr::from(a))
}

fn u32_of(v: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(v.try_into().ok()?))
}

fn parse_route(body: &[u8], add: bool) -> Option<RtnlEvent> {
    if body.len() < RTMSG_LEN || body[0] != AF_INET {
        return None;
    }
    let plen = body[1];
    let mut table = u32::from(body[4]);
    let rtype = body[7];
    if plen > 32 || rtype != RTN_UNICAST {
        return None;
    }
    let (mut prefix, mut gateway, mut oif) = (Ipv4Addr::UNSPECIFIED, None, None);
    for (ty, v) in attrs(&body[RTMSG_LEN..]) {
        match ty {
            RTA_DST => prefix = ipv4(v)?,
            RTA_GATEWAY => gateway = Some(ipv4(v)?),
            RTA_OIF => oif = Some(u32_of(v)?),
            RTA_TABLE => table = u32_of(v)?,
            _ => {}
        }
    }
    (table == RT_TABLE_MAIN).then_some(RtnlEvent::Route {
        add,
        prefix,
        plen,
        gateway,
        oif: oif?,
    })
}

fn parse_neighbour(body: &[u8], add: bool) -> Option<RtnlEvent> {
    if body.len() < NDMSG_LEN || body[0] != AF_INET {
        return None;
    }
    let ifindex = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
    let state = u16::from_ne_bytes([body[8], body[9]]);
    let (mut ip, mut mac) = (None, None);
    for (ty, v) in attrs(&body[NDMSG_LEN..]) {
        match ty {
            NDA_DST => ip = Some(ipv4(v)?),
            NDA_LLADDR => mac = <[u8; 6]>::try_from(v).ok(),
            _ => {}
        }
    }
    let usable = add && state & NUD_USABLE != 0;
    Some(RtnlEvent::Neighbour {
        ip: ip?,
        mac: mac.filter(|m| usable && *m != [0; 6]),
        ifindex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(ty: u16, body: &[u8], attrs: &[(u16, &[u8])]) -> Vec<u8> {
        let mut b = body.to_vec();
        for (t, v) in attrs {
            b.extend_from_slice(&((4 + v.len()) as u16).to_ne_bytes());
            b.extend_from_slice(&t.to_ne_bytes());
            b.extend_from_slice(v);
            b.resize(align(b.len()), 0);
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((NLMSG_HDR + b.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&b);
        m
    }

    #[test]
    fn routes_and_neighbours_decode_and_the_rest_is_skipped() {
        // 10.200.0.0/16 via 192.168.79.2 dev 7, main table, unicast.
        let route = msg(
            RTM_NEWROUTE,
            &[AF_INET, 16, 0, 0, 254, 3, 0, RTN_UNICAST, 0, 0, 0, 0],
            &[
                (RTA_DST, &[10, 200, 0, 0]),
                (RTA_GATEWAY, &[192, 168, 79, 2]),
                (RTA_OIF, &7u32.to_ne_bytes()),
            ],
        );
        // The local table's route to our own address: not read.
        let local = msg(
            RTM_NEWROUTE,
            &[AF_INET, 32, 0, 0, 255, 2, 0, 2, 0, 0, 0, 0],
            &[
                (RTA_DST, &[192, 168, 79, 1]),
                (RTA_OIF, &7u32.to_ne_bytes()),
            ],
        );
        let mut nd = vec![AF_INET, 0, 0, 0];
        nd.extend_from_slice(&7u32.to_ne_bytes());
        nd.extend_from_slice(&0x02u16.to_ne_bytes());
        nd.extend_from_slice(&[0, 1]);
        let neigh = msg(
            RTM_NEWNEIGH,
            &nd,
            &[
                (NDA_DST, &[192, 168, 79, 2]),
                (NDA_LLADDR, &[2, 0, 0, 0x79, 0, 2]),
            ],
        );
        let gone = msg(RTM_DELNEIGH, &nd, &[(NDA_DST, &[192, 168, 79, 2])]);
        let truncated = route[..20].to_vec();
        let mut all = [route, local, neigh, gone].concat();
        all.extend_from_slice(&msg(NLMSG_DONE, &[0; 4], &[]));
        all.extend_from_slice(&truncated);
        assert_eq!(
            parse(&all),
            vec![
                RtnlEvent::Route {
                    add: true,
                    prefix: Ipv4Addr::new(10, 200, 0, 0),
                    plen: 16,
                    gateway: Some(Ipv4Addr::new(192, 168, 79, 2)),
                    oif: 7
                },
                RtnlEvent::Neighbour {
                    ip: Ipv4Addr::new(192, 168, 79, 2),
                    mac: Some([2, 0, 0, 0x79, 0, 2]),
                    ifindex: 7
                },
                RtnlEvent::Neighbour {
                    ip: Ipv4Addr::new(192, 168, 79, 2),
                    mac: None,
                    ifindex: 7
                },
                RtnlEvent::Done,
            ]
        );
        assert!(parse(&[1, 2, 3]).is_empty());
        assert_eq!(dump_request(DumpKind::Routes, 1).len(), 28);
    }
}
